"""CPU work spread over the machine's cores, for the model-based metrics (BERTScore, the EPITOME classifiers).

On CPU, torch runs each operation on an intra-op pool of OpenMP threads. For the small matrices of a metric's
batch (a few sentences of 10-60 tokens) those threads spend much of their time meeting at barriers, and on a
busy machine they spin-wait for a core: measured on 2 shared cores, two intra-op threads encoded MiniLM batches
2.4x *slower* than one. Splitting the batches between worker threads that each run one intra-op thread keeps
every core on useful work instead (torch releases the GIL inside its operations).

- `map_batches(fn, batches)`: `fn` over the batches on `workers()` threads, results in order, torch's intra-op
  count set to one meanwhile (process-wide, as torch has it; the previous count comes back when the last such
  section ends). Each batch is computed as one thread alone would compute it, so results do not depend on the
  number of workers.
- `beside(concurrent, fn, rest)`: `fn` of each `concurrent` item on a thread of its own while this thread does
  `rest` (the scoring runs `Metric.concurrent` metrics so: a model's loading and encoding overlap the lexical
  metrics).
- `loading`: the lock to hold while importing torch / transformers or building a model on such a thread.

An error or a Ctrl-C in one place stops the others at their next batch (`Cancelled`), so an interrupted run
exits within a batch instead of finishing every metric first.
"""
from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

THREADS_ENV = "ESC_HARNESS_THREADS"  # worker threads for the metrics [default: the usable cores]

# transformers resolves its module attributes lazily, and two threads resolving them at once fail
# ("cannot import name 'AutoTokenizer'"): imports of torch / transformers and model builds on a metric's thread
# hold this lock.
loading = threading.RLock()


class Cancelled(Exception):
    """Raised in a batch that starts after another part of the same work failed or was interrupted."""


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def workers() -> int:
    """Worker threads for metric batches: $ESC_HARNESS_THREADS, else the usable cores."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return usable_cores()
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        from .errors import HarnessError

        raise HarnessError(f"${THREADS_ENV}={value!r}: give a whole number of threads, at least 1 (or unset it to use every core).")
    return count


_lock = threading.Lock()
_sections = 0
_before = 0
_stop = threading.local()  # .event: the cancellation event of the work this thread belongs to


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch's intra-op threads set to one while any such section runs (sections may nest and overlap)."""
    global _sections, _before
    torch = sys.modules.get("torch")
    if torch is None:  # torch not imported: nothing to set (callers import it first)
        yield
        return
    with _lock:
        if _sections == 0:
            _before = torch.get_num_threads()
            torch.set_num_threads(1)
        _sections += 1
    try:
        yield
    finally:
        with _lock:
            _sections -= 1
            if _sections == 0:
                torch.set_num_threads(_before)


def _event() -> threading.Event:
    """The cancellation event of the work this thread is part of; a new one for work started at the top."""
    return getattr(_stop, "event", None) or threading.Event()


def _in(event: threading.Event, fn: Callable[[T], R]) -> Callable[[T], R]:
    """fn run on a pool thread as part of the work `event` cancels: nested map_batches see the same event, and
    an error here stops the other parts at their next batch."""
    def call(item: T) -> R:
        if event.is_set():
            raise Cancelled()
        _stop.event = event
        try:
            return fn(item)
        except BaseException:
            event.set()
            raise
        finally:
            _stop.event = None

    return call


def _first_error(futures: Sequence[Future]) -> BaseException | None:
    """The first error that is not a `Cancelled` (the cause, not its echo), else the first `Cancelled`."""
    errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
    return next((e for e in errors if not isinstance(e, Cancelled)), errors[0] if errors else None)


def _settle(pool: ThreadPoolExecutor, futures: Sequence[Future], event: threading.Event, failed: bool) -> None:
    """After the caller's part: on failure cancel what has not started and stop the rest at its next batch;
    in any case wait for what runs, so nothing computes on after this returns."""
    if failed:
        event.set()
        for future in futures:
            future.cancel()
    pool.shutdown(wait=True)


def map_batches(fn: Callable[[T], R], batches: Sequence[T], threads: int | None = None) -> list[R]:
    """[fn(b) for b in batches], run on `threads` (default `workers()`) threads, each with one torch intra-op
    thread. Inference only: torch's grad mode is per thread, so each worker enters inference mode itself."""
    count = min(len(batches), threads or workers())
    torch = sys.modules.get("torch")
    event = _event()

    def one(batch: T) -> R:
        if event.is_set():
            raise Cancelled()
        if torch is None:
            return fn(batch)
        with torch.inference_mode():
            return fn(batch)

    with one_torch_thread():
        if count <= 1:
            return [one(b) for b in batches]
        pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="harness-batch")
        futures = [pool.submit(_in(event, one), b) for b in batches]
        failed = True
        try:
            for future in futures:
                if future.exception() is not None:
                    break
            error = _first_error(futures)
            if error is not None:
                raise error
            failed = False
            return [f.result() for f in futures]
        finally:
            _settle(pool, futures, event, failed)


def beside(concurrent: Sequence[T], fn: Callable[[T], R], rest: Sequence[T]) -> dict[int, R]:
    """id(item) -> fn(item) for every item: each of `concurrent` on a thread of its own while this thread does
    `rest` in order. The first error (of `rest` first, then of `concurrent` in order) is raised once all stopped."""
    results: dict[int, R] = {}
    if not concurrent:
        for item in rest:
            results[id(item)] = fn(item)
        return results
    event = _event()
    pool = ThreadPoolExecutor(max_workers=len(concurrent), thread_name_prefix="harness-metric")
    futures = [pool.submit(_in(event, fn), item) for item in concurrent]
    failed = True
    try:
        for item in rest:
            if event.is_set():  # a concurrent part failed: its error is raised below
                break
            results[id(item)] = fn(item)
        for future in futures:
            future.exception()  # waits
        error = _first_error(futures)
        if error is not None:
            raise error
        failed = False
    finally:
        _settle(pool, futures, event, failed)
    for item, future in zip(concurrent, futures):
        results[id(item)] = future.result()
    return results
