"""BERTScore-MiniLM on the MESC test split: bert-score's own batched call (the value of a pair depends on
its batch) against the harness's batch-independent scoring (each pair on its own, float64), side by side in
one process, alternating; prints the times, their ratio and how far the two sets of values are apart.

    ESC_HARNESS_DATA=../shared/data python benchmarks/bench_bertscore.py [--rounds 2] [--limit N]
"""
from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()

    from baselines.retrieval import RetrievalModel
    from harness import paths
    from harness.contract import ModelContext
    from harness.metrics import bertscore
    from harness.runner import load_samples, load_task

    task = load_task("mesc", {})
    samples, folder, _ = load_samples(task, "test", paths.data_root(None), args.limit)
    model = RetrievalModel(ModelContext(task=task, split="test", data_dir=folder, seed=0))
    cands = [o.text for o in model.generate([task.build_request(s) for s in samples])]
    refs = [s.reference for s in samples]
    backbone = bertscore.BACKBONES["minilm"]
    from bert_score import BERTScorer

    scorer = BERTScorer(model_type=backbone.path(), num_layers=backbone.num_layers, idf=False, rescale_with_baseline=False,
                        batch_size=bertscore.BATCH_SIZE, use_fast_tokenizer=False)
    scorer.score(cands[:4], refs[:4])  # load and warm up both paths
    bertscore.score_pairs(backbone, cands[:4], refs[:4])

    times: dict[str, list[float]] = {"bert-score batched": [], "harness per pair": []}
    for _ in range(args.rounds):
        start = time.perf_counter()
        _, _, batched = scorer.score(cands, refs, batch_size=bertscore.BATCH_SIZE)
        times["bert-score batched"].append(time.perf_counter() - start)
        bertscore.clear_memos()
        start = time.perf_counter()
        per_pair = bertscore.score_pairs(backbone, cands, refs)
        times["harness per pair"].append(time.perf_counter() - start)
    old = [100 * x for x in batched.tolist()]
    new = [f for _, _, f in per_pair]
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{len(cands)} pairs, {args.rounds} rounds (median seconds)")
    for name, value in med.items():
        print(f"  {name:20s} {value:7.2f} s")
    print(f"  ratio per pair / batched: {med['harness per pair'] / med['bert-score batched']:.2f}x")
    print(f"  mean F1: batched {sum(old) / len(old):.6f}, per pair {sum(new) / len(new):.6f}; "
          f"largest per-sample difference {max(abs(a - b) for a, b in zip(old, new)):.4f} points")


if __name__ == "__main__":
    main()
