"""Speed-up of concurrent dialogues over sequential ones, against the local llama.cpp server.

The same N ESC-Eval dialogues (English cards, `rounds` rounds, every role played by SmolLM2-135M through
the `openai` adapter pointed at one llama.cpp server with `parallel` slots, no response cache: every call
is made) are run with --concurrency 1 and with --concurrency C, alternating, in one process, and the
times and their ratio are printed. The answers are greedy, so both ways do nearly the same work (the
completion tokens are printed to show it; llama.cpp's parallel slots are not bit-reproducible).

With `--server fault` the server is tests/fault_server.py answering every request after a fixed delay
(as a remote API does; each answer distinct): the ideal speed-up is then min(C, N), and the gap to it is
the harness's own cost. On a CPU-bound llama.cpp server the gain is bounded by the cores: concurrent
requests share the same threads (continuous batching helps decoding, not the prompt-heavy judge calls).

    ESC_HARNESS_DATA=../shared/data python benchmarks/bench_dialogues.py [--n 8] [--concurrency 8] [--rounds 1] [--server llama|fault]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

MAX_TOKENS = 48


def play(base_url: str, key: str, n: int, rounds: int, concurrency: int, parallel: int, out: Path) -> tuple[float, int, int]:
    """(seconds, model calls, completion tokens of all roles) of one run."""
    from harness.runner import RunConfig, run

    args = {"model": "smollm2", "base_url": base_url, "api_key": key, "max_tokens": MAX_TOKENS, "temperature": 0.0,
            "max_connections": parallel}
    config = RunConfig(task="esc-eval", model="openai", model_args=args, task_args={"rounds": rounds}, limit=n,
                       use_cache=False, output_dir=out, resamples=0, concurrency=concurrency)
    start = time.perf_counter()
    result = run(config, progress=False)
    elapsed = time.perf_counter() - start
    tokens = sum(v for k, v in result.summary.usage.items() if k.endswith("completion_tokens"))
    return elapsed, result.model_calls, tokens


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=8, help="dialogues (ESC-Eval English cards)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=4, help="server slots = the adapter's connections")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads [default: the idle cores]")
    parser.add_argument("--server", choices=("llama", "fault"), default="llama")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds per request of the fault server")
    args = parser.parse_args()

    key = "bench-key"
    if args.server == "llama":
        from harness.models.local_llama import LlamaServer, default_gguf

        server = LlamaServer(default_gguf(), n_ctx=4096, parallel=args.parallel, api_key=key, threads=args.threads)
        what = f"llama.cpp SmolLM2-135M, {args.parallel} slots ({server.threads} threads)"
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from fault_server import FaultServer

        class DistinctAnswers(FaultServer):
            """Every answer names the whole request, so no two dialogues share a call (as with a real model)."""

            def completion(self, body):
                answer = super().completion(body)
                digest = hashlib.sha256(json.dumps(body.get("messages"), sort_keys=True).encode()).hexdigest()[:12]
                answer["choices"][0]["message"]["content"] = f"answer {digest}"
                return answer

        server = DistinctAnswers(delay=args.delay)
        server.stop = server.close
        what = f"a fake server answering after {args.delay:g} s"
    times: dict[int, list[float]] = {1: [], args.concurrency: []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            play(server.base_url, key, 1, args.rounds, 1, args.parallel, Path(tmp))  # warm-up: imports, server caches
            for repeat in range(args.repeats):
                order = (1, args.concurrency) if repeat % 2 == 0 else (args.concurrency, 1)
                for concurrency in order:
                    seconds, calls, tokens = play(server.base_url, key, args.n, args.rounds, concurrency, args.parallel, Path(tmp))
                    times[concurrency].append(seconds)
                    print(f"  repeat {repeat + 1} concurrency {concurrency:2d}: {seconds:7.2f} s  {calls} calls  {tokens} completion tokens"
                          f"  (load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        server.stop()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.n} ESC-Eval dialogues x {args.rounds} round(s) (+7 judge calls each), max_tokens {MAX_TOKENS}, {what}, "
          f"{os.cpu_count()} CPU cores; median of {args.repeats}:")
    print(f"  sequential (concurrency 1)  {med[1]:7.2f} s")
    print(f"  concurrent (concurrency {args.concurrency}) {med[args.concurrency]:7.2f} s")
    print(f"  speed-up {med[1] / med[args.concurrency]:.2f}x")


if __name__ == "__main__":
    main()
