"""DIFF-EPITOME's classifiers on the MESC test split: the per-mechanism path against the shared one.

The retrieval model's answers and the references of the first N MESC test samples (all 454 by default) are
scored by the built EPITOME classifiers (`harness epitome train`; $ESC_HARNESS_EPITOME picks another tag) in
two ways, alternating, in one process, in the runner's batches of 64 samples:
  per-mechanism - each classifier on its own (`Classifier.logits`), the generated and the reference side in
                  separate calls, with torch's default threads: what DIFF-EPITOME did before the shared path
  ... 1 thread  - the same with one intra-op thread, as the shared path runs on CPU: the gain of sharing alone
  shared        - `SharedBiEncoders.logits`: one call for all three mechanisms and both sides
It prints the times, their ratios, and how far the logits and levels of the two paths differ (levels must
not differ at all). Then, unless --no-cli, the full `harness run --task mesc --model retrieval` in a fresh
process, timed.

    ESC_HARNESS_DATA=../shared/data python benchmarks/bench_epitome.py [--n 454] [--repeats 1] [--no-cli]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

BATCH = 64  # harness.runner.SCORE_BATCH: the samples scored together


def mesc_pairs(n: int) -> tuple[list[str], list[str], list[str]]:
    """(seeker's last turn, retrieval answer, reference) of the first n MESC test samples."""
    from baselines.retrieval import RetrievalModel
    from harness import datafiles, paths
    from harness.contract import ModelContext
    from tasks.mesc import MescTask

    task = MescTask()
    folder, _ = datafiles.resolve(task.dataset, task.name, paths.data_root())
    samples = task.load("test", folder)[:n]
    model = RetrievalModel(ModelContext(task=task, split="test", data_dir=folder, seed=0))
    answers = [o.text for o in model.generate([task.build_request(s) for s in samples])]
    return [s.history[-1].text for s in samples], answers, [s.reference for s in samples]


def chunks(seekers, answers, references):
    for start in range(0, len(seekers), BATCH):
        end = start + BATCH
        yield seekers[start:end], answers[start:end], references[start:end]


def per_mechanism(classifiers, seekers, answers, references) -> dict:
    """Logits per mechanism and side, each classifier on its own, on the unique pairs as the metric's memo gives them."""
    import torch

    out: dict[str, list] = {m: [] for m in classifiers}
    for s, a, r in chunks(seekers, answers, references):
        for m, c in classifiers.items():
            for side in (a, r):
                pairs = sorted(set(zip(s, side)))
                out[m].append(c.logits([p[0] for p in pairs], [p[1] for p in pairs]))
    return {m: torch.cat(v) for m, v in out.items()}


def shared(together, seekers, answers, references) -> dict:
    """The same logits, in the same order, from one shared call per batch of samples."""
    import torch

    out: dict[str, list] = {m: [] for m in together.classifiers}
    for s, a, r in chunks(seekers, answers, references):
        sides = [sorted(set(zip(s, side))) for side in (a, r)]
        pairs = sides[0] + sides[1]
        logits = together.logits([p[0] for p in pairs], [p[1] for p in pairs])
        for m, value in logits.items():
            out[m] += [value[: len(sides[0])], value[len(sides[0]) :]]
    return {m: torch.cat(v) for m, v in out.items()}


def timed(threads: int, fn, *args):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        result = fn(*args)
        return time.perf_counter() - start, result
    finally:
        torch.set_num_threads(before)


def cli_run() -> float:
    """Wall seconds of the full command in a fresh process (imports, model loading, all default metrics)."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "harness.cli", "run", "--task", "mesc", "--model", "retrieval", "--output-dir", tmp],
                       check=True, capture_output=True, env=os.environ)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=454, help="first N MESC test samples")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-cli", action="store_true", help="skip the full `harness run` in a fresh process")
    args = parser.parse_args()
    import torch

    from baselines.epitome.metric import MECHANISMS
    from baselines.epitome.model import Classifier, share
    from baselines.epitome.train import classifier_folder
    from harness import paths

    os.environ.setdefault("ESC_HARNESS_DATA", str(paths.data_root()))
    folder = classifier_folder()
    classifiers = {m: Classifier(folder / m) for m in MECHANISMS}
    together = share(classifiers)
    if together is None:
        sys.exit(f"{folder}: these classifiers cannot share their encoders; DIFF-EPITOME runs each on its own.")
    seekers, answers, references = mesc_pairs(args.n)
    print(f"classifiers {folder} (shared bottom layers: {together.bottom_layers}); {len(seekers)} samples; torch's default threads {torch.get_num_threads()}")

    threads = torch.get_num_threads()
    times: dict[str, list[float]] = {"per-mechanism": [], "per-mechanism, 1 thread": [], "shared": []}
    for _ in range(args.repeats):
        seconds, old = timed(threads, per_mechanism, classifiers, seekers, answers, references)
        times["per-mechanism"].append(seconds)
        times["per-mechanism, 1 thread"].append(timed(1, per_mechanism, classifiers, seekers, answers, references)[0])
        seconds, new = timed(threads, shared, together, seekers, answers, references)
        times["shared"].append(seconds)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"seconds, median of {args.repeats}:")
    for name, value in med.items():
        print(f"  {name:24s} {value:7.2f}  ratio to shared {value / med['shared']:5.2f}")
    for m in MECHANISMS:
        flips = int((old[m].argmax(-1) != new[m].argmax(-1)).sum())
        print(f"  {m}: {len(old[m])} pairs, max |logit difference| {(old[m] - new[m]).abs().max().item():.1e}, levels that differ {flips}")
    if not args.no_cli:
        print(f"harness run --task mesc --model retrieval (fresh process): {cli_run():.1f} s wall")


if __name__ == "__main__":
    main()
