"""A child process that loads and computes a run's model-based metrics while the run goes on.

Importing torch and transformers and building a model (BERTScore's encoder, the EPITOME classifiers) takes ~7 s
of Python that holds the GIL, so on a thread it only takes turns with the rest of the run. In a child process
it runs on a core of its own from the start of the run, while this process loads the task, asks the model and
computes the lexical metrics; by the time the first answers are scored the models are usually loaded.

Which metrics: those with `Metric.concurrent` whose values are a function of the pair, the code and `info()`
alone (`cache_identity()` is not None: a predictor swapped in by a test or a notebook lives in this process
only). `$ESC_HARNESS_METRIC_WORKER=0` keeps every metric in this process.

Protocol (multiprocessing pipe, spawn start: the child never inherits torch's threads): the child gets the
metric names, calls each one's `prepare()`, then answers ("compute", name, pairs) with ("ok", per-sample values)
or ("error", one line). It ignores Ctrl-C (the run stops it) and ends when the pipe closes, so a killed run
leaves no child behind. A child that dies (out of memory) is a one-line HarnessError; `--resume` continues.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Sequence

from .contract import Metric, MetricValue, ScoredPair
from .errors import HarnessError

WORKER_ENV = "ESC_HARNESS_METRIC_WORKER"


def eligible(metric: Metric) -> bool:
    return bool(getattr(metric, "concurrent", False)) and metric.per_sample and metric.cache_identity() is not None


def start(metrics: Sequence[Metric]) -> tuple[list[Metric], "MetricWorker | None"]:
    """The metrics with the eligible ones computed by a new worker process (None: none eligible, or turned off)."""
    if os.environ.get(WORKER_ENV, "1").strip() == "0":
        return list(metrics), None
    chosen = [m for m in metrics if eligible(m)]
    if not chosen:
        return list(metrics), None
    worker = MetricWorker([m.name for m in chosen])
    return [RemoteMetric(m, worker) if m in chosen else m for m in metrics], worker


class MetricWorker:
    def __init__(self, names: Sequence[str]):
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, list(names)), name="harness-metric-worker", daemon=True)
        self._process.start()
        child.close()
        self._lock = threading.Lock()  # one request at a time: the child spreads each over the cores itself
        self._used = False

    def compute(self, name: str, pairs: Sequence[ScoredPair]) -> list[float]:
        plain = [ScoredPair(p.response, p.reference, tuple(p.history), dict(p.outcome), dict(p.labels)) for p in pairs]
        with self._lock:
            self._used = True
            try:
                self._conn.send(("compute", name, plain))
                status, value = self._conn.recv()
            except (EOFError, OSError, BrokenPipeError):
                self._process.join(timeout=5)
                raise HarnessError(f"the metric worker process stopped (exit code {self._process.exitcode}) while computing {name}, "
                                   "e.g. out of memory; finished samples are kept: resume with `harness run --resume RUN_DIR` "
                                   f"(${WORKER_ENV}=0 computes the metrics in the run's own process).") from None
        if status != "ok":
            raise HarnessError(value)
        return value

    def close(self) -> None:
        try:
            self._conn.close()  # the child's recv ends: it exits
        except OSError:
            pass
        if self._used:
            self._process.join(timeout=0.5)
        if self._process.is_alive():  # e.g. still loading a model nobody asked for (every value was in the score cache)
            self._process.terminate()
            self._process.join(timeout=5)


class RemoteMetric(Metric):
    """A metric whose compute runs in the worker; everything else (name, info, check, cache identity) is its own."""

    _SHOWN = ("name", "description", "higher_is_better", "decimals", "order", "bounds", "grader", "per_sample", "size_dependent", "concurrent")

    def __init__(self, inner: Metric, worker: MetricWorker):
        self.inner, self.worker = inner, worker
        for attr in self._SHOWN:
            setattr(self, attr, getattr(inner, attr))

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.__dict__["inner"], attr)

    def check(self) -> None:
        self.inner.check()

    def info(self) -> dict[str, Any]:
        return self.inner.info()

    def cache_identity(self) -> dict[str, Any] | None:
        return self.inner.cache_identity()

    def features(self):
        return self.inner.features()

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        if not pairs:
            return MetricValue(corpus=0.0, per_sample=[])
        values = self.worker.compute(self.name, pairs)
        return MetricValue(corpus=sum(values) / len(values), per_sample=values)


def _serve(conn: Any, names: list[str]) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the run decides
    from . import registry

    metrics: dict[str, Metric] = {}
    failed: dict[str, str] = {}
    for name in names:
        try:
            metrics[name] = registry.metrics.get(name)
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
