"""The full default metric suite on a finished MESC run, computed two ways in one process:

  harness          - `harness.runner.score(RUN, every default metric)`, what `harness score RUN` does: read and
                     re-parse the records, every metric, the 95% intervals (default resamples: percentile
                     bootstrap, delete-half jackknife for Dist-n), metric_info, rewrite samples.jsonl and summary.json
  straightforward  - what a researcher writes today: the ESConv reference code's loops (codes_zcj/metric/
                     myMetrics.py: each sample tokenised once with nltk.word_tokenize on lower-cased text,
                     corpus_bleu per order, per-sample ROUGE-L (full LCS table) and METEOR loops, the corpus
                     distinct loop), a per-sample loop for dist-n-response, one plain `bert_score.score` call over
                     all pairs, and each EPITOME classifier run on one pair at a time (as EmpGPT-3's empathy
                     scorer does); no intervals. (F1 is not in the default suite, so it is not timed.)

Both load their models in every round (as a fresh `harness score` or a fresh script would) and start without
the harness's per-process memos; imports and WordNet's first reading (NLTK parses its entries on first use) are
paid once, in a warm-up, outside both timings. torch runs with one intra-op thread both ways (--threads). It
prints each metric group's seconds both ways, the ratio harness / straightforward (below 1: the harness is
faster) and the group's share of the harness's time, the overall ratio, and per metric the largest difference
between the two ways' values: the correctness guard (they must agree, see `TOLERANCE`; exit status 1 if not).

    ESC_HARNESS_DATA=../shared/data python benchmarks/bench_scoring.py [RUN_DIR] [--rounds 1] [--epitome DIR]

Without RUN_DIR it makes the MESC retrieval run first (~1 min). Without built EPITOME classifiers
($ESC_HARNESS_EPITOME or the default tag) it trains throw-away ones for timing only (one step on 32 rows, ~1.5
min): both ways use the same weights, so the timings and the equality check hold; their DIFF-EPITOME values mean
nothing. A round takes ~6 min on 2 busy cores, most of it EPITOME one pair at a time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

WARM_UP_SAMPLES = 8
TOLERANCE = {  # largest |harness - straightforward| accepted, per metric; 1e-9 unless said here
    # bert-score's own call runs float32, batched with padding; the harness float64, each pair alone, rounded
    # to 1e-9. float32 rounding moves a value by < 1e-4 points; pairs off by more are checked separately
    # against bert-score's own value of the pair scored alone (see `check_bertscore`).
    "bertscore-f1-minilm": 1e-4,
}
DEFAULT_TOLERANCE = 1e-9
GROUPS = {  # metric -> the row it is timed in
    **{f"bleu-{n}": "bleu-1..4" for n in range(1, 5)},
    **{f"dist-{n}": "dist-1..3" for n in range(1, 4)},
    **{f"dist-{n}-plain": "dist-1..3-plain" for n in range(1, 4)},
    **{f"dist-{n}-response": "dist-1..3-response" for n in range(1, 4)},
    **{name: "diff-epitome (4 metrics)" for name in ("diff-epitome", "diff-epitome-er", "diff-epitome-ip", "diff-epitome-ex")},
}
TOKENISE, OTHER = "tokenise", "read, parse, write, other"


def metric_names() -> list[str]:
    from tasks import OPTIONAL_RESPONSE_METRICS, RESPONSE_METRICS

    return list(RESPONSE_METRICS) + list(OPTIONAL_RESPONSE_METRICS)


def group_of(metric: str) -> str:
    return GROUPS.get(metric, metric)


# --------------------------------------------------------------------------- inputs


def make_run(folder: Path) -> Path:
    """The MESC retrieval run (scored with one cheap metric: `score` recomputes every metric anyway)."""
    from harness.runner import RunConfig, run

    print("making the MESC retrieval run ...", flush=True)
    config = RunConfig(task="mesc", model="retrieval", output_dir=folder, use_cache=False, metrics=["dist-1"], resamples=0)
    return run(config, progress=False).run_dir


def epitome_folder(given: str | None, scratch: Path) -> tuple[Path, str]:
    """The classifiers to use and what they are; throw-away ones are trained when none is built."""
    from baselines.epitome import train
    from baselines.epitome.metric import MECHANISMS, TrainedClassifiers
    from baselines.epitome.train import classifier_folder

    folder = classifier_folder(given)
    if not TrainedClassifiers(folder).missing():
        return folder, f"built classifiers {folder}"
    if given:
        sys.exit(f"{folder}: no built EPITOME classifiers there.")
    print(f"no EPITOME classifiers built under {folder}: training throw-away ones for timing only ...", flush=True)
    throwaway = scratch / "epitome-throwaway"
    quick = {"out": throwaway, "limit": 32, "max_steps": 1, "eval_splits": (), "log": lambda _: None}
    if hasattr(train, "train_joint"):  # trained together, as `harness epitome train` does by default
        train.train_joint(MECHANISMS, **quick)
    else:
        for mechanism in MECHANISMS:
            train.train_one(mechanism, **quick)
    return throwaway, f"THROW-AWAY classifiers (1 training step; values meaningless, timing and equality valid) {throwaway}"


def read_samples(run_dir: Path, limit: int | None = None) -> list[dict]:
    with open(run_dir / "samples.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows.sort(key=lambda r: r["index"])
    return rows[:limit] if limit else rows


def truncated_run(run_dir: Path, target: Path, n: int) -> Path:
    """A copy of the run holding its first n samples (for the warm-up)."""
    shutil.copytree(run_dir, target)
    rows = read_samples(run_dir, n)
    (target / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    header = json.loads((target / "run.json").read_text())
    header.update({"n_samples": n, "limit": n, "samples_digest": None})
    (target / "run.json").write_text(json.dumps(header), encoding="utf-8")
    return target


# --------------------------------------------------------------------------- timing


class Stopwatch:
    """Exclusive seconds per label of wrapped functions: a wrapped call inside another counts for its own label only."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._inner: list[float] = []

    def wrap(self, label_of, fn):
        def timed(*args, **kwargs):
            label = label_of(*args, **kwargs)
            self._inner.append(0.0)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                inner = self._inner.pop()
                self.seconds[label] += elapsed - inner
                if self._inner:
                    self._inner[-1] += elapsed
        return timed

    def block(self, label: str):
        watch = self

        class Block:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                watch.seconds[label] += time.perf_counter() - self.start

        return Block()


def forget_loaded_models() -> None:
    """The harness keeps models and values per process; a `harness score` command starts without them."""
    from baselines.epitome import metric as epitome_metric
    from harness.metrics import bertscore, lexical

    lexical._tokens.clear()
    lexical._meteor_memo.clear()
    bertscore.clear_memos()
    bertscore._scorers.clear()
    epitome_metric._loaded.clear()


# --------------------------------------------------------------------------- the harness's way


def harness_way(run_dir: Path, names: list[str]) -> tuple[dict[str, float], dict]:
    """Seconds per group of `runner.score` (instrumented, not changed) and its values."""
    from harness import registry, runner, store, uncertainty
    from harness.metrics import lexical

    forget_loaded_models()
    watch = Stopwatch()
    metrics = [registry.metrics.get(n) for n in names]
    patched = [(m, attr) for m in metrics for attr in ("compute", "weighted", "info")]
    for m, attr in patched:  # instance attributes shadow the class's methods for this call only
        setattr(m, attr, watch.wrap(lambda *a, _m=m, **k: group_of(_m.name), getattr(m, attr)))
    original_tokenize, original_weighted_values = lexical.tokenize, uncertainty.weighted_values
    lexical.tokenize = watch.wrap(lambda *a, **k: TOKENISE, original_tokenize)
    uncertainty.weighted_values = watch.wrap(lambda metric, *a, **k: group_of(metric.name), original_weighted_values)
    try:
        start = time.perf_counter()
        summary = runner.score(run_dir, names)
        total = time.perf_counter() - start
    finally:
        lexical.tokenize, uncertainty.weighted_values = original_tokenize, original_weighted_values
        for m, attr in patched:
            delattr(m, attr)
    seconds = dict(watch.seconds)
    seconds[OTHER] = total - sum(seconds.values())
    _, records = store.read_run(run_dir)
    per_sample = {n: [r.scores[n] for r in sorted(records, key=lambda r: r.index)] for n in names if n in records[0].scores}
    return seconds, {"corpus": dict(summary.metrics), "per_sample": per_sample, "intervals": len(summary.intervals)}


# --------------------------------------------------------------------------- the straightforward way


def lcs_table(a: list[str], b: list[str]) -> int:
    """Longest common subsequence by the full dynamic-programming table, as the reference code builds it."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = table[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(table[i - 1][j], table[i][j - 1])
    return table[len(a)][len(b)]


def rouge_l(hyp: list[str], ref: list[str], beta: float = 1.2) -> float:
    lcs = lcs_table(ref, hyp)
    precision, recall = lcs / max(len(hyp), 1e-10), lcs / max(len(ref), 1e-10)
    if precision == 0 or recall == 0:
        return 0.0
    return (1 + beta**2) * precision * recall / (recall + beta**2 * precision)


def corpus_distinct(hyps: list[list[str]], n: int, skip_last: bool) -> float:
    grams, total = {}, 0
    for tokens in hyps:
        for i in range(len(tokens) - n if skip_last else len(tokens) - n + 1):
            grams[tuple(tokens[i : i + n])] = 1
            total += 1
    return len(grams) / total if total else 0.0


def response_distinct(tokens: list[str], n: int) -> float:
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def epitome_levels(classifier, seekers: list[str], texts: list[str]) -> list[int]:
    """One forward per (seeker, text), as EmpGPT-3 scores each pair."""
    return [classifier.predict([s], [t])[0] for s, t in zip(seekers, texts)]


def straightforward_way(run_dir: Path, epitome: Path) -> tuple[dict[str, float], dict]:
    import nltk
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu
    from nltk.translate.meteor_score import meteor_score

    watch = Stopwatch()
    corpus: dict[str, float] = {}
    per_sample: dict[str, list[float]] = {}
    with watch.block(OTHER):
        rows = read_samples(run_dir)
        responses, references = [r["response"] for r in rows], [r["reference"] for r in rows]
        seekers = [r["history"][-1]["text"] if r["history"] else "" for r in rows]
    with watch.block(TOKENISE):
        hyps, refs = [], []
        for response, reference in zip(responses, references):
            hyps.append(nltk.word_tokenize(response.lower()))
            refs.append(nltk.word_tokenize(reference.lower()))
    with watch.block("bleu-1..4"):
        for k in range(1, 5):
            corpus[f"bleu-{k}"] = 100 * corpus_bleu([[r] for r in refs], hyps, weights=[1 / k] * k + [0.0] * (4 - k),
                                                    smoothing_function=SmoothingFunction().method3)
    with watch.block("rouge-l"):
        per_sample["rouge-l"] = [100 * rouge_l(h, r) for h, r in zip(hyps, refs)]
    with watch.block("meteor"):
        per_sample["meteor"] = [100 * meteor_score([r], h) for h, r in zip(hyps, refs)]
    with watch.block("dist-1..3"):
        corpus.update({f"dist-{k}": 100 * corpus_distinct(hyps, k, skip_last=True) for k in range(1, 4)})
    with watch.block("dist-1..3-plain"):
        corpus.update({f"dist-{k}-plain": 100 * corpus_distinct(hyps, k, skip_last=False) for k in range(1, 4)})
    with watch.block("dist-1..3-response"):
        for k in range(1, 4):
            per_sample[f"dist-{k}-response"] = [100 * response_distinct(h, k) for h in hyps]
    with watch.block("bertscore-f1-minilm"):
        per_sample["bertscore-f1-minilm"] = plain_bertscore(responses, references)
    with watch.block("diff-epitome (4 metrics)"):
        per_sample.update(diff_epitome(epitome, seekers, responses, references))
    for name, values in per_sample.items():
        corpus[name] = sum(values) / len(values)
    return dict(watch.seconds), {"corpus": corpus, "per_sample": per_sample}


def plain_bertscore(cands: list[str], refs: list[str], batch_size: int = 64) -> list[float]:
    import bert_score
    from transformers.utils import logging as hf_logging

    from harness.metrics.bertscore import BACKBONES

    hf_logging.disable_progress_bar()  # bert-score's loading bar
    backbone = BACKBONES["minilm"]
    _, _, f1 = bert_score.score(cands, refs, model_type=backbone.path(), num_layers=backbone.num_layers, batch_size=batch_size)
    return [100 * v for v in f1.tolist()]


def diff_epitome(folder: Path, seekers: list[str], responses: list[str], references: list[str]) -> dict[str, list[float]]:
    from baselines.epitome.metric import MECHANISMS
    from baselines.epitome.model import Classifier

    out = {}
    for mechanism in MECHANISMS:
        classifier = Classifier(folder / mechanism)
        generated, reference = epitome_levels(classifier, seekers, responses), epitome_levels(classifier, seekers, references)
        out[f"diff-epitome-{mechanism.lower()}"] = [float((g - r) ** 2) for g, r in zip(generated, reference)]
    columns = [out[f"diff-epitome-{m.lower()}"] for m in MECHANISMS]
    out["diff-epitome"] = [sum(values) / len(values) for values in zip(*columns)]
    return out


# --------------------------------------------------------------------------- comparing


def largest_differences(harness: dict, plain: dict) -> dict[str, tuple[str, float]]:
    """Per metric: which values were compared and the largest |difference|."""
    out = {}
    for name, value in plain["corpus"].items():
        kind, diff = "corpus", abs(harness["corpus"][name] - value)
        if name in plain["per_sample"]:
            ours, theirs = harness["per_sample"][name], plain["per_sample"][name]
            kind = f"per sample ({len(theirs)}) and corpus"
            diff = max([diff] + [abs(a - b) for a, b in zip(ours, theirs)]) if len(ours) == len(theirs) else float("inf")
        out[name] = (kind, diff)
    return out


def check_bertscore(harness: dict, plain: dict, responses: list[str], references: list[str]) -> tuple[int, float]:
    """Pairs where bert-score's batched value differs from the harness's by more than float32 rounding are those
    whose batch padding entered bert-score's greedy matching as similarity 0: scored alone (batch size 1, no
    padding) by bert-score itself, they must agree. Returns how many pairs that was and their largest difference."""
    name = "bertscore-f1-minilm"
    ours, theirs = harness["per_sample"][name], plain["per_sample"][name]
    off = [i for i, (a, b) in enumerate(zip(ours, theirs)) if abs(a - b) > TOLERANCE[name]]
    if not off:
        return 0, 0.0
    alone = plain_bertscore([responses[i] for i in off], [references[i] for i in off], batch_size=1)
    return len(off), max(abs(ours[i] - v) for i, v in zip(off, alone))


# --------------------------------------------------------------------------- main


def load_wordnet(rows: list[dict]) -> None:
    """NLTK reads WordNet's entries from disk on first use, once per process: METEOR over every pair once, before
    either way is timed, so that neither pays it (the harness's own per-word memo is not filled by this)."""
    import nltk
    from nltk.translate.meteor_score import meteor_score

    for r in rows:
        meteor_score([nltk.word_tokenize(r["reference"].lower())], nltk.word_tokenize(r["response"].lower()))


def one_round(run_dir: Path, scratch: Path, names: list[str], epitome: Path, harness_first: bool, label: str):
    """Both ways once, on a fresh copy of the run (score rewrites it)."""
    copy = scratch / f"run-{label}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run_dir, copy)
    ways = [("harness", lambda: harness_way(copy, names)), ("straightforward", lambda: straightforward_way(copy, epitome))]
    results = {}
    for way, fn in ways if harness_first else ways[::-1]:
        print(f"  {label}: {way} ...", flush=True)
        results[way] = fn()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", nargs="?", type=Path, help="a finished MESC run (default: make the retrieval run)")
    parser.add_argument("--rounds", type=int, default=1, help="timed rounds, alternating which way runs first")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch's intra-op threads, both ways (on a busy 2-core machine two threads spin-wait for each other)")
    parser.add_argument("--limit", type=int, help="only the run's first N samples (a quick check of the script)")
    parser.add_argument("--epitome", help="EPITOME classifiers (tag or folder; default $ESC_HARNESS_EPITOME or the default tag)")
    args = parser.parse_args()
    import torch

    from harness import paths

    torch.set_num_threads(args.threads)
    os.environ.setdefault("ESC_HARNESS_DATA", str(paths.data_root()))
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        scratch = Path(tmp)
        run_dir = args.run_dir or make_run(scratch / "runs")
        epitome, epitome_note = epitome_folder(args.epitome, scratch)
        os.environ["ESC_HARNESS_EPITOME"] = str(epitome)  # the harness's way reads the same classifiers
        if args.limit:
            run_dir = truncated_run(run_dir, scratch / "first-samples-run", args.limit)
        names = metric_names()
        n = len(read_samples(run_dir))
        print(f"run {run_dir} ({n} samples); EPITOME: {epitome_note}; torch threads {torch.get_num_threads()}")
        one_round(truncated_run(run_dir, scratch / "warm-up-run", WARM_UP_SAMPLES), scratch, names, epitome, True, "warm-up")
        load_wordnet(read_samples(run_dir))
        times: dict[str, dict[str, list[float]]] = {"harness": defaultdict(list), "straightforward": defaultdict(list)}
        for r in range(args.rounds):
            results = one_round(run_dir, scratch, names, epitome, r % 2 == 0, f"round {r + 1}")
            for way, (seconds, _) in results.items():
                for group, value in seconds.items():
                    times[way][group].append(value)
        rows = read_samples(run_dir)
        report(times, results, args.rounds, n, [r["response"] for r in rows], [r["reference"] for r in rows])


def report(times, results, rounds: int, n: int, responses: list[str], references: list[str]) -> None:
    harness, plain = results["harness"][1], results["straightforward"][1]
    med = {way: {g: statistics.median(v) for g, v in groups.items()} for way, groups in times.items()}
    order = [TOKENISE] + list(dict.fromkeys(group_of(m) for m in metric_names())) + [OTHER]
    print(f"\n{n} samples, {len(metric_names())} metrics; seconds, median of {rounds} round(s); ratio = harness / straightforward")
    from harness.uncertainty import DEFAULT_RESAMPLES

    print("harness: runner.score incl. re-parsing, per-sample metrics, corpus metrics, 95% intervals "
          f"({harness['intervals']} metrics, {DEFAULT_RESAMPLES} resamples), metric_info, rewriting the run; models loaded in the round")
    print("straightforward: reference-code loops, one bert_score.score call, EPITOME one pair per forward; models "
          "loaded in the round; no intervals")
    total_h, total_s = sum(med["harness"].values()), sum(med["straightforward"].values())
    print(f"  {'group':28s} {'harness':>9s} {'straightfwd':>11s} {'ratio':>7s} {'of harness':>11s}")
    for group in order:
        h, s = med["harness"].get(group, 0.0), med["straightforward"].get(group, 0.0)
        print(f"  {group:28s} {h:9.2f} {s:11.2f} {h / s if s else float('nan'):7.2f} {100 * h / total_h:10.1f}%")
    print(f"  {'overall':28s} {total_h:9.2f} {total_s:11.2f} {total_h / total_s:7.2f}   (goal <= 0.5)")
    print("\nlargest |harness - straightforward| per metric (values x100 except diff-epitome):")
    failed = []
    for name, (kind, diff) in largest_differences(harness, plain).items():
        tolerance = TOLERANCE.get(name, DEFAULT_TOLERANCE)
        flag = "ok" if diff <= tolerance else ("padding, checked below" if name in TOLERANCE else "DIFFERENT")
        if flag == "DIFFERENT":
            failed.append(name)
        print(f"  {name:22s} {diff:10.3g}  ({kind}; tolerance {tolerance:g}) {flag}")
    if "bertscore-f1-minilm" in plain["per_sample"]:
        count, diff = check_bertscore(harness, plain, responses, references)
        ok = diff <= TOLERANCE["bertscore-f1-minilm"]
        if not ok:
            failed.append("bertscore-f1-minilm")
        print(f"  bertscore-f1-minilm: {count} pairs differ by more than float32 rounding in the batched call; scored alone by "
              f"bert-score they differ by at most {diff:.3g} {'ok' if ok else 'DIFFERENT'}")
    print("values: " + ("all agree" if not failed else f"DIFFER for {', '.join(failed)}"))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
