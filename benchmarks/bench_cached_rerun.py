"""A second identical `local` run (every answer in the response cache) as a fraction of the first's time.

    ESC_HARNESS_DATA=../shared/data python benchmarks/bench_cached_rerun.py [--limit 20] [--repeats 2]
        [--metrics bleu-2,rouge-l]

Each repeat uses a fresh, empty cache file: the real command `harness run --task mesc --model local --limit N`
runs twice in fresh processes, one after the other - the first asks SmolLM2-135M (llama.cpp) and computes
every metric, the second finds every answer in the response cache and every per-pair value in the score
cache. Printed: each run's wall time (median of the repeats), the ratio second / first, and whether the two
runs' metric values (corpus values, intervals, per-sample scores) are identical. Default metrics: the task's
(DIFF-EPITOME included where the classifiers are built); --metrics picks others. Exit status 1 if the values
differ or the second run asked the model.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(out: Path, cache: Path, limit: int, metrics: str | None) -> tuple[float, Path, int]:
    """(wall s, run folder, model calls as the command reports them) of the real command in a fresh process."""
    command = [sys.executable, "-m", "harness.cli", "run", "--task", "mesc", "--model", "local", "--limit", str(limit),
               "--output-dir", str(out), "--cache", str(cache)]
    if metrics:
        command += ["--metrics", metrics]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"harness run failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    calls = re.search(r"model calls (\d+)", done.stdout + done.stderr)
    if calls is None:
        raise SystemExit(f"harness run did not report its model calls: {(done.stdout + done.stderr).strip()[-300:]}")
    return wall, next(out.iterdir()), int(calls.group(1))


def values(run_dir: Path) -> tuple[dict, dict, dict]:
    """(corpus values, intervals, per-sample scores by sample index) of a finished run (samples.jsonl holds the
    records in the order they finished: a first run's order is the server's, a cached run's the requests')."""
    summary = json.loads((run_dir / "summary.json").read_text())
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines() if line.strip()]
    return summary["metrics"], summary["intervals"], {r["index"]: r["scores"] for r in records}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--metrics", default=None, help="metric names [default: the task's]")
    args = parser.parse_args()
    firsts: list[float] = []
    seconds: list[float] = []
    identical = True
    calls_again = 0
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "cache.sqlite"
            first, first_dir, _ = one_run(Path(tmp) / "first", cache, args.limit, args.metrics)
            second, second_dir, calls = one_run(Path(tmp) / "second", cache, args.limit, args.metrics)
            identical &= values(first_dir) == values(second_dir)
            calls_again += calls
            firsts.append(first)
            seconds.append(second)
            print(f"  repeat {r + 1}: first {first:6.2f} s  second {second:5.2f} s  ({second / first:.1%})", flush=True)
    what = args.metrics or "the default metrics"
    print(f"harness run --task mesc --model local --limit {args.limit}, {what}, fresh processes, median of {args.repeats}:")
    print(f"  first run  {statistics.median(firsts):6.2f} s")
    print(f"  second run {statistics.median(seconds):6.2f} s (every answer cached; model calls: {calls_again})")
    print(f"  ratio second/first {statistics.median(seconds) / statistics.median(firsts):.1%}")
    print(f"  values: {'identical' if identical else 'DIFFER'}")
    sys.exit(0 if identical and calls_again == 0 else 1)


if __name__ == "__main__":
    main()
