"""What the harness costs over a bare client when a model answers through an OpenAI-compatible server.

The same N MESC test requests (the task's own prompts, temperature 0, seed 0, max_tokens 32) go to one
local llama.cpp server (SmolLM2-135M, xllamacpp, `parallel` slots) in two ways, alternating, in one process:
  harness - harness.runner.run with model `openai` pointed at the server, no response cache
            (requests, retries, per-sample scoring, samples.jsonl, summary - everything a run does)
  bare    - a bare asyncio loop: openai.AsyncOpenAI + a semaphore at the same concurrency, nothing else
and prints both times, the ratio harness/bare and the tokens generated (the same work both ways).

With `--server fault` the server is tests/fault_server.py answering every request after a fixed delay
(no model): the difference is then the harness's own cost alone, without the LLM's noise.

    ESC_HARNESS_DATA=../shared/data python benchmarks/bench_overhead.py [--n 64] [--repeats 3] [--server llama|fault]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

MAX_TOKENS = 32


def requests_for(n: int):
    from harness import datafiles, paths
    from tasks.mesc import MescTask

    task = MescTask()
    folder, _ = datafiles.resolve(task.dataset, task.name, paths.data_root())
    return [task.build_request(s) for s in task.load("test", folder)[:n]]


def bare(base_url: str, key: str, requests, concurrency: int) -> tuple[float, int]:
    """The minimum: the client, a semaphore, gather. Returns (seconds, completion tokens)."""
    import openai

    async def main() -> int:
        client = openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=600)
        semaphore = asyncio.Semaphore(concurrency)

        async def one(request) -> int:
            extra = {"stop": list(request.generation.stop)} if request.generation.stop else {}
            async with semaphore:
                answer = await client.chat.completions.create(
                    model="smollm2", messages=[{"role": m.role, "content": m.content} for m in request.messages],
                    temperature=0.0, top_p=request.generation.top_p, max_tokens=MAX_TOKENS, seed=0, **extra)
            return answer.usage.completion_tokens

        try:
            return sum(await asyncio.gather(*(one(r) for r in requests)))
        finally:
            await client.close()

    start = time.perf_counter()
    tokens = asyncio.run(main())
    return time.perf_counter() - start, tokens


def harness(base_url: str, key: str, n: int, concurrency: int, metrics: list[str] | None, out: Path) -> tuple[float, int]:
    from harness.runner import RunConfig, run

    config = RunConfig(task="mesc", model="openai", limit=n, use_cache=False, metrics=metrics, output_dir=out,
                       model_args={"model": "smollm2", "base_url": base_url, "api_key": key, "max_tokens": MAX_TOKENS,
                                   "temperature": 0.0, "max_connections": concurrency})
    start = time.perf_counter()
    result = run(config, progress=False)
    elapsed = time.perf_counter() - start
    assert result.model_calls == n, result.model_calls
    return elapsed, result.summary.usage.get("completion_tokens", 0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=64, help="MESC test samples")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=4, help="server slots = client concurrency")
    parser.add_argument("--metrics", default="", help="comma-separated; default: the task's (what a real run scores)")
    parser.add_argument("--server", choices=("llama", "fault"), default="llama")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds per request of the fault server")
    args = parser.parse_args()

    metrics = [m for m in args.metrics.split(",") if m] or None
    requests = requests_for(args.n)
    key = "bench-key"
    if args.server == "llama":
        from harness.models.local_llama import LlamaServer, default_gguf

        server = LlamaServer(default_gguf(), n_ctx=2048, parallel=args.parallel, api_key=key)
        what = f"llama.cpp SmolLM2-135M ({server.threads} threads)"
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from fault_server import FaultServer

        server = FaultServer(delay=args.delay)
        server.stop = server.close
        what = f"a fake server answering after {args.delay:g} s (ideal {args.n / args.parallel * args.delay:.2f} s)"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # warm-up, untimed: imports, WordNet, and one pass over every request, so that the server's
            # prompt cache (llama.cpp keeps prompts' KV in RAM) is as warm for the first timed pass as for the rest
            bare(server.base_url, key, requests, args.parallel)
            harness(server.base_url, key, min(args.n, args.parallel), args.parallel, metrics, Path(tmp))
            times: dict[str, list[float]] = {"harness": [], "bare": []}
            tokens: dict[str, list[int]] = {"harness": [], "bare": []}
            for repeat in range(args.repeats):
                for name in (("harness", "bare") if repeat % 2 == 0 else ("bare", "harness")):
                    if name == "bare":
                        seconds, generated = bare(server.base_url, key, requests, args.parallel)
                    else:
                        seconds, generated = harness(server.base_url, key, args.n, args.parallel, metrics, Path(tmp))
                    times[name].append(seconds)
                    tokens[name].append(generated)
                    print(f"  repeat {repeat + 1} {name:7s} {seconds:7.2f} s  {generated} completion tokens  (load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        server.stop()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.n} MESC test requests, max_tokens {MAX_TOKENS}, temperature 0, concurrency {args.parallel}, "
          f"{what} on {os.cpu_count()} CPU cores; median of {args.repeats}:")
    print(f"  harness (runner.run, openai adapter, no cache) {med['harness']:7.2f} s")
    print(f"  bare    (AsyncOpenAI + semaphore)              {med['bare']:7.2f} s")
    print(f"  ratio harness/bare {med['harness'] / med['bare']:.3f}   (extra {med['harness'] - med['bare']:+.2f} s, "
          f"{(med['harness'] - med['bare']) / args.n * 1000:+.1f} ms per request)")


if __name__ == "__main__":
    main()
