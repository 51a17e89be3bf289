"""COMPEER's redundancy-aware reward reweighting (eqs. 5-7) of one GRPO batch, computed two ways in one process:

  batched   - `baselines.compeer.reweight.reweight_batch`: every text of the batch (all completions and all
              history utterances of all groups, deduplicated) embedded in ONE encoder call (texts batched by token
              length, no padding), then every group's s_in and s_hist from numpy matrix products
  per-pair  - what a straightforward implementation does: for each completion, for each of its group's other
              completions and each history utterance, the pair's two texts embedded together (the
              sentence-transformers recipe: tokenised with padding, mean-pooled over the attention mask,
              normalised) and their cosine taken, one pair at a time, no memo; then the same eq. 5

The batch is the paper's GRPO setting: 32 prompts x 4 completions (group size 4), each prompt an ESConv test sample
with at least 10 history utterances, its history the last 10. Its completions: the gold response, another
sample's gold response, the gold response with about a third of its words dropped, and the seeker's last
utterance (redundant with the history); rewards drawn from UnifiReward's range, whole numbers in [-5, 5]. Both
ways use the same loaded all-MiniLM-L6-v2 (loaded outside the timing, as a training loads it once), the batched
way with a cold memo each round; torch runs with one intra-op thread both ways (--threads). It prints each way's
seconds (median of the rounds, alternating which way goes first), the ratio batched / per-pair, and the largest
difference between the two ways' s_in, s_hist and reweighted rewards; exit status 1 if one exceeds 1e-6.

    ESC_HARNESS_DATA=../shared/data python benchmarks/bench_compeer_reweight.py [--rounds 1] [--threads 1]

One round takes about 2 minutes on 2 busy cores, nearly all of it the per-pair way (1,664 pairs, one model call
each); the batched way embeds the batch's 399 distinct texts once.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

PROMPTS, COMPLETIONS_PER_PROMPT, HISTORY = 32, 4, 10
TOLERANCE = 1e-6


def batch():
    """The 32 groups (see the module docstring)."""
    from baselines.compeer.reweight import Group
    from harness.runner import load_samples, load_task
    from tasks.esconv import SEEKER

    task = load_task("esconv", {})
    samples, _, _ = load_samples(task, "test", None, None)
    rng = random.Random(2025)
    usable = [s for s in samples if len(s.history) >= HISTORY and s.reference.strip()]
    chosen = rng.sample(usable, PROMPTS)
    others = [s.reference for s in samples if s.reference.strip()]
    groups = []
    for sample in chosen:
        history = [t.text for t in sample.history[-HISTORY:]]
        words = sample.reference.split()
        dropped = " ".join(w for w in words if rng.random() > 0.3) or words[0]
        seeker = next((t.text for t in reversed(sample.history) if t.speaker == SEEKER), history[-1])
        outputs = [sample.reference, rng.choice(others), dropped, seeker]
        groups.append(Group(outputs, history, [float(rng.randint(-5, 5)) for _ in outputs]))
    return groups


# --------------------------------------------------------------------------- the two ways


def batched_way(encoder, groups, settings):
    from baselines.compeer.reweight import reweight_batch

    encoder.clear()  # a cold memo: every text is embedded in this call
    start = time.perf_counter()
    out = reweight_batch(groups, settings, encoder)
    took = time.perf_counter() - start
    return took, [(r.s_in, r.s_hist, r.reweighted) for g in out for r in g]


def per_pair_way(encoder, groups, settings):
    import numpy as np
    import torch

    from baselines.compeer.reweight import group_tau

    tokenizer, model = encoder._load()  # the same weights, used directly

    def cosine(a: str, b: str) -> float:
        enc = tokenizer([a, b], padding=True, truncation=True, max_length=encoder.max_length, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**enc)[0]
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        x, y = pooled.double().numpy()
        return float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)))

    start = time.perf_counter()
    out = []
    for g in groups:
        tau = group_tau(list(g.outputs), settings)
        for i, (o, reward) in enumerate(zip(g.outputs, g.rewards)):
            ins = [cosine(o, other) for j, other in enumerate(g.outputs) if j != i]
            hist = [cosine(o, u) for u in g.history]
            s_in = max(0.0, sum(ins) / len(ins)) if ins else 0.0
            s_hist = max(0.0, sum(hist) / len(hist)) if hist else 0.0
            out.append((s_in, s_hist, reward / ((1 + tau * s_in) * (1 + tau * s_hist))))
    return time.perf_counter() - start, out


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1, help="timed rounds, alternating which way runs first")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads, both ways")
    args = parser.parse_args()

    from baselines.compeer.embed import SentenceEncoder
    from baselines.compeer.reweight import ReweightSettings, reweight_batch
    from harness import paths

    os.environ.setdefault("ESC_HARNESS_DATA", str(paths.data_root()))
    settings = ReweightSettings()  # the paper's alpha 0.5, beta 5; words; negative mean cosines clipped
    encoder = SentenceEncoder(threads=args.threads)
    encoder.encode(["warm-up"])  # loads the weights (untimed)
    import torch

    groups = batch()
    texts = {t for g in groups for t in (*g.outputs, *g.history)}
    pairs = sum(len(g.outputs) * (len(g.outputs) - 1 + len(g.history)) for g in groups)
    print(f"{sum(len(g.outputs) for g in groups)} completions ({PROMPTS} prompts x {COMPLETIONS_PER_PROMPT}) with {HISTORY}-utterance "
          f"histories from the ESConv test split: {pairs} pairs, {len(texts)} distinct texts; encoder {encoder.name}; "
          f"torch threads {torch.get_num_threads()}")
    ways = [("batched", batched_way), ("per-pair", per_pair_way)]
    seconds: dict[str, list[float]] = {name: [] for name, _ in ways}
    values: dict[str, list] = {}
    for r in range(args.rounds):
        for name, fn in ways if r % 2 == 0 else ways[::-1]:
            took, values[name] = fn(encoder, groups, settings)
            seconds[name].append(took)
            print(f"  round {r + 1}: {name:9s} {took:7.3f} s", flush=True)
    med = {name: statistics.median(v) for name, v in seconds.items()}
    print(f"\nseconds, median of {args.rounds} round(s), the model loaded outside the timing:")
    print(f"  batched   {med['batched']:7.3f}   (reweight_batch: one encoder call on the distinct texts, numpy products)")
    print(f"  per-pair  {med['per-pair']:7.3f}   (each pair's two texts embedded together, one pair at a time)")
    print(f"  ratio batched / per-pair  {med['batched'] / med['per-pair']:.4f}   (per-pair / batched {med['per-pair'] / med['batched']:.1f}x)")
    a, b = values["batched"], values["per-pair"]
    worst = {key: max(abs(x[k] - y[k]) for x, y in zip(a, b)) for k, key in enumerate(("s_in", "s_hist", "reweighted"))}
    ok = all(v <= TOLERANCE for v in worst.values())
    print(f"values agree to {TOLERANCE:g}: {'yes' if ok else 'NO'} (largest differences: "
          + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()) + ")")
    kept = [r for g in reweight_batch(groups, ReweightSettings(negative_similarity="keep"), encoder) for r in g]  # memo warm
    print(f"batch: mean tau {sum(r.tau for r in kept) / len(kept):.4f}, mean s_in {sum(x[0] for x in a) / len(a):.4f}, "
          f"mean s_hist {sum(x[1] for x in a) / len(a):.4f}; negative mean cosines before clipping: "
          f"s_in {sum(r.s_in < 0 for r in kept)}/{len(kept)} (lowest {min(r.s_in for r in kept):.4f}), "
          f"s_hist {sum(r.s_hist < 0 for r in kept)}/{len(kept)} (lowest {min(r.s_hist for r in kept):.4f})")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
