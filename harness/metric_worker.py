"""A child process that loads and computes a run's model-based metrics while the run goes on.

Importing torch and transformers and building a model (BERTScore's encoder, the EPITOME classifiers) takes ~7 s
of Python that holds the GIL, so on a thread it only takes turns with the rest of the run. In a child process
it runs on a core of its own from the start of the run, while this process loads the task, asks the model and
computes the lexical metrics; by the time the first answers are scored the models are usually loaded.

Which metrics: those with `Metric.concurrent` whose values are a function of the pair, the code and `info()`
alone (`cache_identity()` is not None: a predictor swapped in by a test or a notebook lives in this process
only). `$ESC_HARNESS_METRIC_WORKER=0` keeps every metric in this process.

Protocol: the child is a fresh interpreter (`python -c`, this process's sys.path; it inherits no thread and
does not re-run the caller's script) holding one end of a socket pair, spoken as a multiprocessing Connection
(pickled messages). It gets the metric names, calls each one's `prepare()`, then answers ("compute", name, pairs) with ("ok", per-sample values)
or ("error", one line). It ignores Ctrl-C (the run stops it) and ends when the socket closes, so a killed run
leaves no child behind; a finished run stops it at once. A child that dies (out of memory) is a one-line HarnessError; `--resume` continues.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Sequence

from .contract import Metric, MetricValue, ScoredPair
from .errors import HarnessError
from .scoring import MetricWrapper

WORKER_ENV = "ESC_HARNESS_METRIC_WORKER"


def eligible(metric: Metric) -> bool:
    """Computed in the worker: concurrent, per sample, and a function of the pair (see above). A metric that
    cannot say (its resource is missing) is not: the run's checks report it, or leave an optional one out."""
    if not (metric.concurrent and metric.per_sample):
        return False
    try:
        return metric.cache_identity() is not None
    except HarnessError:
        return False


def start(metrics: Sequence[Metric]) -> "MetricWorker | None":
    """A new worker process loading the eligible metrics (None: none eligible, or turned off). It may start
    before the metrics are checked: one whose check fails is simply never asked for."""
    if os.environ.get(WORKER_ENV, "1").strip() == "0":
        return None
    chosen = [m.name for m in metrics if eligible(m)]
    return MetricWorker(chosen) if chosen else None


def attach(metrics: Sequence[Metric], worker: "MetricWorker | None") -> list[Metric]:
    """The metrics, those the worker loads computed by it."""
    if worker is None:
        return list(metrics)
    return [RemoteMetric(m, worker) if m.name in worker.names else m for m in metrics]


class MetricWorker:
    def __init__(self, names: Sequence[str]):
        import json
        import socket
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        self.names = frozenset(names)
        # a fresh interpreter given one end of a socket pair (not multiprocessing's spawn: that re-runs the
        # caller's script as __main__, which a script calling harness.evaluate() without a __main__ guard cannot take)
        ours, theirs = socket.socketpair()
        code = "import sys, json; sys.path[:] = json.loads(sys.argv[1]); from harness.metric_worker import _main; _main()"
        try:
            self._process = subprocess.Popen([sys.executable, "-c", code, json.dumps(sys.path), str(theirs.fileno()), *names],
                                             pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, close_fds=True)
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._lock = threading.Lock()  # one request at a time: the child spreads each over the cores itself

    def compute(self, name: str, pairs: Sequence[ScoredPair]) -> list[float]:
        plain = [ScoredPair(p.response, p.reference, tuple(p.history), dict(p.outcome), dict(p.labels)) for p in pairs]
        with self._lock:
            try:
                self._conn.send(("compute", name, plain))
                status, value = self._conn.recv()
            except (EOFError, OSError):
                try:
                    code = self._process.wait(timeout=5)
                except Exception:
                    code = None
                raise HarnessError(f"the metric worker process stopped (exit code {code}) while computing {name}, "
                                   "e.g. out of memory; finished samples are kept: resume with `harness run --resume RUN_DIR` "
                                   f"(${WORKER_ENV}=0 computes the metrics in the run's own process).") from None
        if status != "ok":
            raise HarnessError(value)
        return value

    def close(self) -> None:
        try:
            self._conn.close()
        except OSError:
            pass
        # it holds nothing worth keeping: stopped at once rather than waited for (its interpreter's exit with torch
        # loaded, or a model still loading that nobody asked for because every value was in the score cache)
        if self._process.poll() is None:
            self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except Exception:  # (a child that ignores SIGTERM: the kernel's SIGKILL)
            self._process.kill()


class RemoteMetric(MetricWrapper):
    """A metric whose compute runs in the worker (which prepares it); everything else is its own."""

    def __init__(self, inner: Metric, worker: MetricWorker):
        super().__init__(inner)
        self.worker = worker

    def prepare(self) -> None:
        pass  # the worker prepares its own copy

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        if not pairs:
            return MetricValue(corpus=0.0, per_sample=[])
        values = self.worker.compute(self.name, pairs)
        return MetricValue(corpus=sum(values) / len(values), per_sample=values)


def _main() -> None:
    """The child: argv = [path, socket fd, metric names...]."""
    import sys
    from multiprocessing.connection import Connection

    _serve(Connection(int(sys.argv[2])), sys.argv[3:])


def _serve(conn: Any, names: list[str]) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the run decides
    from . import registry

    metrics: dict[str, Metric] = {}
    failed: dict[str, str] = {}
    for name in names:
        try:
            metrics[name] = registry.metrics.get(name)
            metrics[name].check()  # (the run checks them too, meanwhile: one that fails is never asked for)
            metrics[name].prepare()
        except HarnessError as exc:
            failed[name] = str(exc)
        except Exception as exc:  # reported when the metric is asked for, as its compute would raise it
            failed[name] = f"{name}: {type(exc).__name__}: {exc}"
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        _, name, pairs = message
        try:
            if name in failed:
                raise HarnessError(failed[name])
            value = metrics[name].compute(pairs)
            reply = ("ok", list(value.per_sample or []))
        except HarnessError as exc:
            reply = ("error", str(exc))
        except Exception as exc:
            reply = ("error", f"{name}: {type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except (OSError, BrokenPipeError):
            return
