"""How long `harness run --task mesc --model retrieval` takes on the full test split, and what the harness
machinery (cache, per-batch writes, records, resumability) costs over the bare computation.

Measured side by side in one process, so the ratios hold on a noisy machine:
  bare   - load MESC, fit retrieval, answer every sample, compute every default metric; nothing written
  cold   - runner.run with an empty response cache (model called for every sample)
  warm   - runner.run again: every answer from the cache (zero model calls)
  score  - runner.score on the finished run (recompute all metrics from samples.jsonl)
  cli    - the real command in a fresh process (imports and WordNet's first load included)

    ESC_HARNESS_DATA=../shared/data python benchmarks/bench_run.py [--repeats 3]

With --baseline TREE (a checkout of another revision, e.g. `git archive HEAD | tar -x -C /tmp/base`) it instead
runs the real command in fresh processes, alternately in TREE and in this tree (--repeats times each, with
--no-cache), and prints per tree the median wall time, the largest peak RSS, and whether summary.json and
samples.jsonl are byte-identical between the trees; --no-epitome leaves DIFF-EPITOME out as where the
classifiers are not built. Exit status 1 if the outputs differ.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def bare(data_root: Path) -> float:
    from baselines.retrieval import RetrievalModel
    from harness import datafiles, scoring
    from harness.contract import ModelContext, SampleRecord
    from tasks.mesc import MescTask

    start = time.perf_counter()
    task = MescTask()
    folder, _ = datafiles.resolve(task.dataset, task.name, data_root)
    samples = task.load("test", folder)
    model = RetrievalModel(ModelContext(task=task, split="test", data_dir=folder, seed=0))
    outputs = model.generate([task.build_request(s) for s in samples])
    records = [SampleRecord(index=i, id=s.id, history=list(s.history), reference=s.reference, output=o.text, response=o.text) for i, (s, o) in enumerate(zip(samples, outputs))]
    metrics = scoring.load_metrics(task.default_metrics, task.optional_metrics)
    scoring.rescore(metrics, records)
    return time.perf_counter() - start


def cli_run(tree: Path, out: Path, env: dict[str, str]) -> tuple[float, float, Path]:
    """The real command in a fresh process with `tree`'s code first on the path: (wall s, peak RSS MB, run folder)."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "--task", "mesc", "--model", "retrieval", "--no-cache",
                              "--output-dir", str(out)], cwd=tree, env={**env, "PYTHONPATH": str(tree)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{tree}: harness run failed (status {status})")
    return wall, usage.ru_maxrss / 1024, next(out.iterdir())


def compare_trees(baseline: Path, repeats: int, no_epitome: bool) -> int:
    env = dict(os.environ)
    trees = {"baseline": baseline.resolve(), "this tree": Path(__file__).resolve().parents[1]}
    walls: dict[str, list[float]] = {k: [] for k in trees}
    peaks: dict[str, float] = {k: 0.0 for k in trees}
    with tempfile.TemporaryDirectory() as tmp:
        if no_epitome:
            env["ESC_HARNESS_EPITOME"] = str(Path(tmp) / "no-classifiers")
        folders: dict[str, Path] = {}
        for r in range(repeats):
            for name, tree in trees.items():
                wall, peak, folders[name] = cli_run(tree, Path(tmp) / f"{name.replace(' ', '-')}-{r}", env)
                walls[name].append(wall)
                peaks[name] = max(peaks[name], peak)
        same = {f: (folders["baseline"] / f).read_bytes() == (folders["this tree"] / f).read_bytes() for f in ("summary.json", "samples.jsonl")}
    print(f"harness run --task mesc --model retrieval --no-cache{' (no EPITOME)' if no_epitome else ''}, fresh processes, median of {repeats}:")
    for name in trees:
        print(f"  {name:10s} {statistics.median(walls[name]):6.2f} s   peak RSS {peaks[name]:6.0f} MB")
    print(f"  ratio this/baseline {statistics.median(walls['this tree']) / statistics.median(walls['baseline']):.2f}")
    for f, equal in same.items():
        print(f"  {f}: {'byte-identical' if equal else 'DIFFERS'}")
    return 0 if all(same.values()) else 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to time the real command against")
    parser.add_argument("--no-epitome", action="store_true", help="with --baseline: leave DIFF-EPITOME out")
    args = parser.parse_args()
    if args.baseline is not None:
        raise SystemExit(compare_trees(args.baseline, args.repeats, args.no_epitome))
    from harness import paths
    from harness.runner import RunConfig, run, score

    data_root = paths.data_root()
    # warm-up: imports and WordNet's first load are paid once per process, not per run
    bare(data_root)
    timings: dict[str, list[float]] = {"bare": [], "cold": [], "warm": [], "score": []}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["ESC_HARNESS_CACHE"] = str(Path(tmp) / "cache.sqlite")
            config = RunConfig(task="mesc", model="retrieval", output_dir=Path(tmp) / "runs", data_dir=data_root)
            timings["bare"].append(bare(data_root))
            t = time.perf_counter(); result = run(config, progress=False); timings["cold"].append(time.perf_counter() - t)
            assert result.model_calls == 454
            t = time.perf_counter(); again = run(config, progress=False); timings["warm"].append(time.perf_counter() - t)
            assert again.model_calls == 0
            t = time.perf_counter(); score(result.run_dir); timings["score"].append(time.perf_counter() - t)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "harness.cli", "run", "--task", "mesc", "--model", "retrieval", "--output-dir", tmp,
                        "--cache", str(Path(tmp) / "cache.sqlite")], check=True, capture_output=True)
        timings["cli"] = [time.perf_counter() - t]
    med = {k: statistics.median(v) for k, v in timings.items()}
    print(f"MESC test split (454 samples), median of {args.repeats}, seconds (warm process):")
    for name, value in med.items():
        print(f"  {name:6s} {value:6.2f}")
    print(f"ratio cold/bare  {med['cold'] / med['bare']:.2f}  (harness overhead incl. cache writes, records, per-sample scoring)")
    print(f"ratio warm/cold  {med['warm'] / med['cold']:.2f}  (second identical run, answers from the cache)")
    print(f"ratio score/bare {med['score'] / med['bare']:.2f}  (re-scoring a finished run)")


if __name__ == "__main__":
    main()
