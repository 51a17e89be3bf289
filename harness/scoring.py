"""Scoring responses: per sample as they finish (metrics that average), per corpus at the end."""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from .contract import Metric, SampleRecord, ScoredPair, Summary
from .errors import HarnessError
from . import grading, registry, threads, uncertainty


class MetricWrapper(Metric):
    """A metric standing in for another (the score cache's `CachedMetric`, the metric worker's `RemoteMetric`):
    name, display settings, check, info, cache identity and features are the inner metric's; a subclass
    changes how `compute` gets the values."""

    _SHOWN = ("name", "description", "higher_is_better", "decimals", "order", "bounds", "grader", "per_sample", "size_dependent", "concurrent")

    def __init__(self, inner: Metric):
        self.inner = inner
        for attr in self._SHOWN:  # class-level defaults of Metric would hide the inner metric's values
            setattr(self, attr, getattr(inner, attr))

    def __getattr__(self, attr: str) -> Any:  # a metric's own attributes (members of a panel, a mechanism ...)
        return getattr(self.__dict__["inner"], attr)

    def check(self) -> None:
        self.inner.check()

    def prepare(self) -> None:
        self.inner.prepare()

    def info(self) -> dict[str, Any]:
        return self.inner.info()

    def cache_identity(self) -> dict[str, Any] | None:
        return self.inner.cache_identity()

    def features(self) -> dict[str, Callable[[ScoredPair], Any]]:
        return self.inner.features()


def load_metrics(names: Sequence[str], optional: Sequence[str] = (), built: Sequence[Metric] | None = None) -> list[Metric]:
    """The metrics, each checked before any model is called. A metric named in `optional` whose resource
    is missing (e.g. classifiers not built yet) is left out with a warning instead of stopping the run.
    `built`: the metrics of `names` already made (in that order), to check those rather than new ones."""
    import sys

    metrics, left_out = [], {}
    for position, name in enumerate(names):
        metric = registry.metrics.get(name) if built is None else built[position]
        try:
            metric.check()
        except HarnessError as exc:
            if name not in optional:
                raise
            left_out.setdefault(str(exc), []).append(name)
            continue
        metrics.append(metric)
    for reason, skipped in left_out.items():  # one line per cause, not per metric
        print(f"warning: {', '.join(skipped)} left out: {reason}", file=sys.stderr)
    return metrics


def pairs_of(records: Sequence[SampleRecord]) -> list[ScoredPair]:
    return [ScoredPair(r.response, r.reference, tuple(r.history), dict(r.outcome), dict(r.labels)) for r in records]


def per_sample_scores(metrics: Sequence[Metric], pairs: Sequence[ScoredPair], features: bool = False) -> list[dict[str, float]]:
    """Each per-sample metric's values, `Metric.concurrent` ones each on a thread of its own meanwhile.
    `features`: the corpus metrics' features of the pairs too (`Metric.fill_features`), on this thread while the
    concurrent metrics run - what the summary would otherwise compute alone once the last answer is in."""
    def compute(metric: Metric) -> list[float] | None:
        if not metric.per_sample:
            try:
                metric.fill_features(pairs)
            except Exception:  # (the summary computes them again and reports the failure, once every record is written)
                pass
            return None
        values = metric.compute(pairs).per_sample
        if values is None or len(values) != len(pairs):
            raise HarnessError(f"metric {metric.name} declares per-sample scores but returned {0 if values is None else len(values)} for {len(pairs)} samples.")
        return values

    chosen = [m for m in metrics if m.per_sample]
    here = [m for m in chosen if not m.concurrent] + ([m for m in metrics if not m.per_sample] if features else [])
    columns = threads.beside([m for m in chosen if m.concurrent], compute, here)
    scores: list[dict[str, float]] = [{} for _ in pairs]
    for metric in chosen:
        for row, value in zip(scores, columns[id(metric)]):
            row[metric.name] = value
    return scores


def with_scores(metrics: Sequence[Metric], records: Sequence[SampleRecord], pairs: Sequence[ScoredPair] | None = None) -> list[SampleRecord]:
    """The records with their per-sample metric values (what samples.jsonl stores). `pairs`: the records' own
    (`pairs_of`), given to have the corpus metrics' features computed into them meanwhile, for the summary."""
    rows = per_sample_scores(metrics, pairs if pairs is not None else pairs_of(records), features=pairs is not None)
    return [r.model_copy(update={"scores": row}) for r, row in zip(records, rows)]


def reuse_features(pairs: Sequence[ScoredPair], computed: dict[str, ScoredPair], ids: Sequence[str]) -> None:
    """The memos of pairs scored earlier in this process (`computed`: sample id -> its pair) into `pairs`
    (those of the records read back, in `ids` order) where the pair is the same."""
    for pair, sample_id in zip(pairs, ids):
        earlier = computed.get(sample_id)
        if earlier is not None and earlier == pair:  # (the memo is not compared: every field of the pair is)
            pair._memo.update(earlier._memo)


def summarize(metrics: Sequence[Metric], records: Sequence[SampleRecord], pairs: Sequence[ScoredPair] | None = None,
              resamples: int = uncertainty.DEFAULT_RESAMPLES, seed: int = 0) -> Summary:
    """Per-sample metrics: the mean of the stored scores. Corpus metrics: computed over all records.
    Every metric gets a percentile bootstrap interval (resampling samples) unless resamples is 0."""
    if resamples < 0:
        raise HarnessError(f"resamples must be 0 (no intervals) or a positive number, got {resamples}.")
    ordered = sorted(records, key=lambda r: r.index)
    values: dict[str, float] = {}
    missing: dict[str, int] = {}
    corpus_metrics = [m for m in metrics if not m.per_sample]
    if (corpus_metrics or resamples > 0) and pairs is None:
        pairs = pairs_of(ordered)
    for metric in metrics:
        if metric.per_sample:
            column = [r.scores[metric.name] for r in ordered if metric.name in r.scores]
            if len(column) != len(ordered):
                raise HarnessError(f"{len(ordered) - len(column)} samples have no '{metric.name}' score; run `harness score RUN_DIR` to recompute.")
            values[metric.name] = sum(column) / len(column) if column else 0.0
        else:
            value = metric.compute(pairs)
            if value.missing:
                missing[metric.name] = value.missing
            if math.isnan(value.corpus):  # no sample has a value: reported as missing, not as a number
                continue
            values[metric.name] = value.corpus
    usage: dict[str, int] = {}
    for r in ordered:
        for k, v in r.usage.items():
            usage[k] = usage.get(k, 0) + v
    per_sample = {m.name: [r.scores[m.name] for r in ordered] for m in metrics if m.per_sample}
    bounds = uncertainty.intervals(metrics, pairs or [], per_sample, resamples, seed) if resamples > 0 else {}
    bounds = {k: v for k, v in bounds.items() if k in values and all(math.isfinite(x) for x in v)}
    # a judge panel's agreement per aspect (records graded by several judges: `grading` panels)
    agreement = {g.name: found for g in grading.graders_of(metrics)
                 if (found := grading.panel_agreement(g.name, [r.outcome for r in ordered], resamples, seed)) is not None}
    return Summary(n=len(ordered), metrics=values, metric_info={m.name: {"description": m.description, **m.info()} for m in metrics},
                   intervals=bounds, bootstrap={"resamples": resamples, "seed": seed, "confidence": uncertainty.CONFIDENCE,
                              "method": {m.name: uncertainty.interval_method(m) for m in metrics}} if bounds else {},
                   format_errors=sum(not r.format_ok for r in ordered), empty_outputs=sum(not (r.output or "").strip() for r in ordered),
                   usage=usage, missing=missing, agreement=agreement)


def rescore(metrics: Sequence[Metric], records: Sequence[SampleRecord], resamples: int = uncertainty.DEFAULT_RESAMPLES, seed: int = 0) -> tuple[list[SampleRecord], Summary]:
    """Everything recomputed from the stored responses; no model is called."""
    ordered = sorted(records, key=lambda r: r.index)
    pairs = pairs_of(ordered)
    rows = per_sample_scores(metrics, pairs, features=True)
    rescored = [r.model_copy(update={"scores": s}) for r, s in zip(ordered, rows)]
    return rescored, summarize(metrics, rescored, pairs, resamples, seed)
