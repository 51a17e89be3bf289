"""What the harness costs over a bare client when a model answers through an OpenAI-compatible server.

The same N MESC test requests (the task's own prompts, temperature 0, seed 0, max_tokens 32) go to one
local llama.cpp server (SmolLM2-135M, xllamacpp, `parallel` slots) in four ways, alternating, in one process:
  harness - harness.runner.run with model `openai` pointed at the server, no response cache
            (requests, retries, per-sample scoring, samples.jsonl, summary - everything a run does)
  cached  - the same with the response cache on, a fresh cache file each repeat: every request a miss,
            every answer stored (grouped commits: one per flush of records, at least one a second)
  cached1 - the same, committing each answer on its own (COMMIT_SECONDS = 0: how the cache worked before)
  bare    - a bare asyncio loop: openai.AsyncOpenAI + a semaphore at the same concurrency, nothing else
  bare+   - the same with the client made as the harness makes it (a plain-HTTP server's client does not load
            the CA bundle: ~25 ms of a run's start), so that harness/bare+ is the harness's machinery alone
and prints the times, the ratios to bare and the tokens generated (the same work every way).

Where the harness's own time goes (cProfile of the `cached` arm's main thread, 256 requests, `--server fault
--metrics bleu-2`, 2 cores; the adapter's event loop thread is the openai adapter's own):
  per answer, before grouped commits: ResponseCache.put_many 1.3 ms (the SQLite commit, an fsync, 0.9 ms;
      the insert 0.3 ms), one SELECT per key 0.015 ms, cache_key 0.05 ms (pydantic dumps + sha256),
      to_record (SampleRecord validation) 0.08 ms, SampleWriter.write 0.02 ms (one write per batch of 64)
  per answer, now: put_many 0.1 ms (buffered; 15 commits for 256 answers), lookups one query per 500
      keys, the rest as above: about 0.3 ms of the harness's own per answer in all
  per run: the corpus metric at the end (bleu-2's tokenising, 1.5-2 ms per sample: the metric's cost,
      not the engine's), the score cache's metric digest (package versions, now read once per process),
      git revision 14 ms, run.json/summary.json written atomically a few ms

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


class FaultProcess:
    """tests/fault_server.py in a process of its own, as a real server is: its threads do not compete with
    the client's for this process's GIL; a listen backlog of 128 takes a burst of `--parallel` new
    connections (the default 5 drops some of 16 at once: connection resets); TCP_NODELAY, because the
    handler writes headers and body apart and Nagle's algorithm with delayed ACKs would add 40 ms to each answer."""

    def __init__(self, delay: float):
        import subprocess

        tests = Path(__file__).resolve().parents[1] / "tests"
        code = ("import sys, http.server; sys.path.insert(0, sys.argv[1]); http.server.ThreadingHTTPServer.request_queue_size = 128; http.server.BaseHTTPRequestHandler.disable_nagle_algorithm = True; "
                "from fault_server import FaultServer; s = FaultServer(delay=float(sys.argv[2])); print(s.base_url, flush=True); "
                "sys.stdin.read(); s.close()")
        self.process = subprocess.Popen([sys.executable, "-c", code, str(tests), str(delay)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        self.base_url = self.process.stdout.readline().strip()
        if not self.base_url:
            raise SystemExit("the fault server did not start")

    def stop(self) -> None:
        self.process.stdin.close()  # it exits when its stdin closes
        self.process.wait(timeout=10)


def bare(base_url: str, key: str, requests, concurrency: int, harness_client: bool = False) -> tuple[float, int]:
    """The minimum: the client, a semaphore, gather. Returns (seconds, completion tokens). `harness_client`: the
    client made as the harness makes it (for a plain-HTTP server, without loading the CA bundle: ~25 ms), so
    that the ratio to it is the harness's own machinery alone."""
    import openai

    async def main() -> int:
        if harness_client:
            from harness.models.openai_api import _Secret, _make_client

            client = _make_client(_Secret(key), base_url, timeout=600)
        else:
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


def harness(base_url: str, key: str, n: int, concurrency: int, metrics: list[str] | None, out: Path,
            cache: Path | None = None) -> tuple[float, int]:
    """`cache`: a response cache file (a fresh one each time: every request a miss, every answer written)."""
    from harness.runner import RunConfig, run

    config = RunConfig(task="mesc", model="openai", limit=n, use_cache=cache is not None, cache_path=cache, metrics=metrics, output_dir=out,
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
        server = FaultProcess(args.delay)
        what = f"a fake server answering after {args.delay:g} s (ideal {args.n / args.parallel * args.delay:.2f} s)"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # warm-up, untimed: imports, WordNet, and one pass over every request, so that the server's
            # prompt cache (llama.cpp keeps prompts' KV in RAM) is as warm for the first timed pass as for the rest
            bare(server.base_url, key, requests, args.parallel)
            harness(server.base_url, key, min(args.n, args.parallel), args.parallel, metrics, Path(tmp))
            arms = ("harness", "cached", "cached1", "bare", "bare+")
            times: dict[str, list[float]] = {name: [] for name in arms}
            tokens: dict[str, list[int]] = {name: [] for name in arms}
            for repeat in range(args.repeats):
                for name in (arms if repeat % 2 == 0 else arms[::-1]):
                    if name.startswith("bare"):
                        seconds, generated = bare(server.base_url, key, requests, args.parallel, harness_client=name == "bare+")
                    elif name.startswith("cached"):  # a fresh cache file: all misses, every answer stored
                        import harness.cache as response_cache

                        grouped = response_cache.COMMIT_SECONDS
                        response_cache.COMMIT_SECONDS = grouped if name == "cached" else 0.0
                        try:
                            seconds, generated = harness(server.base_url, key, args.n, args.parallel, metrics, Path(tmp),
                                                         cache=Path(tmp) / f"{name}-{repeat}.sqlite")
                        finally:
                            response_cache.COMMIT_SECONDS = grouped
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
    print(f"  harness (runner.run, openai adapter, no cache)    {med['harness']:7.2f} s")
    print(f"  cached  (the same, a fresh response cache)        {med['cached']:7.2f} s")
    print(f"  cached1 (the same, one commit per answer)         {med['cached1']:7.2f} s")
    print(f"  bare    (AsyncOpenAI + semaphore)                 {med['bare']:7.2f} s")
    print(f"  bare+   (the same, the client made as the harness makes it)  {med['bare+']:7.2f} s")
    for base in ("bare", "bare+"):
        for name in ("harness", "cached", "cached1"):
            print(f"  ratio {name}/{base} {med[name] / med[base]:.3f}   (extra {med[name] - med[base]:+.2f} s, "
                  f"{(med[name] - med[base]) / args.n * 1000:+.1f} ms per request)")


if __name__ == "__main__":
    main()
