"""The FIRES GRPO reward of one generation batch, computed two ways in one process:

  batched  - `FiresReward.score` on the whole batch: each completion parsed, ROUGE-L (beta 1) on the harness's
             tokens, then each EPITOME classifier once for all format-ok completions, responses and references
             together (`TrainedClassifiers`: memo per (seeker, response), the three mechanisms' shared encoders)
  per-completion - what a reward function written per completion does: for each completion separately, parse,
             ROUGE-L, and each EPITOME classifier run on its one pair (the response, then the reference, one
             forward each, as EmpGPT-3's empathy scorer scores a pair), no memo

The batch is one GRPO step of the paper's setting: 32 prompts x 4 completions = 128, built from the MESC test
split (the harness's MESC task): per prompt (a test sample, reference = its gold response, context = the seeker's
last turn) the completions `<think> ... </think><response> X </response>` with X its own reference, another
sample's reference, its reference with words dropped, and the first half of another sample's reference; every
eighth prompt's last completion has no <think> block (format not ok). Both ways load the classifiers before they
are timed (a training loads them once) and start each round with cold memos (the harness's token memo and the
classifiers' level memo). torch runs with one intra-op thread both ways. It prints each way's seconds (median of
the rounds, alternating which way goes first), the ratio batched / per-completion, and whether the 128 rewards
(and DIFF-EPITOME values) agree exactly; exit status 1 if they do not, or if no classifiers are built.

    ESC_HARNESS_DATA=../shared/data python benchmarks/bench_fires_reward.py [--rounds 3] [--epitome TAG_OR_DIR]

It needs the built EPITOME classifiers (`harness epitome train`; default tag, or $ESC_HARNESS_EPITOME).
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

PROMPTS, COMPLETIONS_PER_PROMPT = 32, 4
THINKING = ("Emotion: the client sounds anxious and hurt. Situation: a conflict at home they keep coming back to. "
            "Response Strategy: reflect the feeling, then ask an open question.")


def batch() -> tuple[list[str], list[str], list[str]]:
    """(completions, references, contexts) of one GRPO step, 128 of each (see the module docstring)."""
    from harness.runner import load_samples, load_task

    task = load_task("mesc", {})
    samples, _, _ = load_samples(task, "test", None, None)
    rng = random.Random(2025)
    chosen = rng.sample([s for s in samples if s.history and s.reference.strip()], PROMPTS)
    others = [s.reference for s in samples]
    completions, references, contexts = [], [], []
    for n, sample in enumerate(chosen):
        words = sample.reference.split()
        dropped = " ".join(w for w in words if rng.random() > 0.3) or words[0]
        other, halved = rng.choice(others), rng.choice(others).split()
        half = " ".join(halved[: max(1, len(halved) // 2)])
        answers = [sample.reference, other, dropped, half]
        for k, answer in enumerate(answers):
            text = f"<think> {THINKING} </think><response> {answer} </response>"
            if k == COMPLETIONS_PER_PROMPT - 1 and n % 8 == 7:
                text = f"{THINKING}\n<response> {answer} </response>"  # no <think> block: format not ok
            completions.append(text)
            references.append(sample.reference)
            contexts.append(sample.history[-1].text)
    return completions, references, contexts


def cold_tokens() -> None:
    from harness.metrics import lexical

    lexical._tokens.clear()


# --------------------------------------------------------------------------- the two ways


def batched_way(folder, completions, references, contexts):
    from baselines.epitome.metric import TrainedClassifiers
    from baselines.fires.reward import FiresReward

    classifiers = TrainedClassifiers(folder)  # a fresh level memo
    classifiers.predict("ER", ["warm-up seeker"], ["warm-up response"])  # loads the weights (untimed)
    reward = FiresReward(classifiers=classifiers)
    cold_tokens()
    start = time.perf_counter()
    out = reward.score(completions, references, contexts)
    return time.perf_counter() - start, [(b.reward, b.diff_epitome) for b in out]


def per_completion_way(folder, completions, references, contexts):
    from baselines.epitome.metric import MECHANISMS
    from baselines.epitome.model import Classifier
    from baselines.fires.reward import ROUGE_BETA, SUPPORT_SKILL_THRESHOLD, RewardWeights
    from harness.metrics.lexical import rouge_l_f, tokenize
    from tasks.prompting import parse_thinking_output

    classifiers = {m: Classifier(folder / m) for m in MECHANISMS}  # loaded untimed
    w = RewardWeights()
    cold_tokens()
    start = time.perf_counter()
    out = []
    for completion, reference, context in zip(completions, references, contexts):
        parsed = parse_thinking_output(completion)
        if not parsed.format_ok:
            out.append((0.0, None))
            continue
        rouge = rouge_l_f(tokenize(parsed.response), tokenize(reference), beta=ROUGE_BETA)
        squared = []
        for m in MECHANISMS:
            generated = classifiers[m].predict([context], [parsed.response])[0]
            gold = classifiers[m].predict([context], [reference])[0]
            squared.append(float((gold - generated) ** 2))
        de = sum(squared) / len(squared)
        support = 1.0 if de <= SUPPORT_SKILL_THRESHOLD else 0.0
        out.append((w.format * 1.0 + w.rouge * rouge + w.support_skill * support, de))
    return time.perf_counter() - start, out


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds, alternating which way runs first")
    parser.add_argument("--epitome", help="EPITOME classifiers (tag or folder; default $ESC_HARNESS_EPITOME or the default tag)")
    args = parser.parse_args()

    from baselines.epitome.metric import TrainedClassifiers
    from baselines.epitome.train import classifier_folder
    from harness import paths

    folder = classifier_folder(args.epitome)
    missing = TrainedClassifiers(folder).missing()
    if missing:
        print(f"no built EPITOME classifiers at {folder} ({', '.join(missing)} missing): run `harness epitome train` first.")
        sys.exit(1)
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("ESC_HARNESS_DATA", str(paths.data_root()))
    completions, references, contexts = batch()
    tag = TrainedClassifiers(folder).describe()["classifier"]
    print(f"{len(completions)} completions ({PROMPTS} prompts x {COMPLETIONS_PER_PROMPT}) from the MESC test split; "
          f"EPITOME classifiers {tag} ({folder}); torch threads {torch.get_num_threads()}")
    ways = [("batched", batched_way), ("per-completion", per_completion_way)]
    seconds: dict[str, list[float]] = {name: [] for name, _ in ways}
    values: dict[str, list] = {}
    for r in range(args.rounds):
        for name, fn in ways if r % 2 == 0 else ways[::-1]:
            took, values[name] = fn(folder, completions, references, contexts)
            seconds[name].append(took)
            print(f"  round {r + 1}: {name:15s} {took:7.3f} s", flush=True)
    med = {name: statistics.median(v) for name, v in seconds.items()}
    print(f"\nseconds, median of {args.rounds} round(s), classifiers loaded outside the timing:")
    print(f"  batched         {med['batched']:7.3f}   (FiresReward.score on the batch)")
    print(f"  per-completion  {med['per-completion']:7.3f}   (parse, ROUGE-L, each classifier on its one pair, per completion)")
    print(f"  ratio batched / per-completion  {med['batched'] / med['per-completion']:.3f}   "
          f"(per-completion / batched {med['per-completion'] / med['batched']:.1f}x)")
    a, b = values["batched"], values["per-completion"]
    differ = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    ok = sum(1 for x in a if x[1] is not None)
    print(f"rewards and DIFF-EPITOME agree exactly: {'yes' if not differ else 'NO'} ({len(a)} completions, {ok} format ok, "
          f"mean reward {sum(x[0] for x in a) / len(a):.4f}; {len(differ)} differ)")
    if differ:
        for i in differ[:5]:
            print(f"  completion {i}: batched {a[i]}, per-completion {b[i]}")
        sys.exit(1)


if __name__ == "__main__":
    main()
