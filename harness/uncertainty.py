"""Bootstrap confidence intervals and paired comparisons of two runs.

Both rest on one operation: a metric's value on re-weighted corpora, `weights[b, i]` = how many copies
of pair i corpus b holds. Metrics that average per-sample scores are weighted means; corpus metrics
(BLEU, Dist-n) implement `Metric.weighted` from per-pair sufficient statistics; any other metric falls
back to recomputing on the explicitly resampled corpus (correct, slower).

- Interval: percentile bootstrap over samples (seeded; 1000 resamples by default). Metrics whose value
  depends on the corpus's size (Dist-n: a resample's duplicated responses repeat their n-grams and pull it
  down, so a percentile interval would not even contain the estimate) get a normal interval from the
  delete-half jackknife instead (Shao & Wu 1989): random half-samples without replacement, whose
  variance equals that of the full-size statistic for a mean (finite-population correction 1/2).
- Comparison: paired interval of B - A on the shared samples (the same draws for both runs) and a
  two-sided paired approximate-randomisation test (each sample's two responses swapped at random; the
  corpora keep their size, so it is valid for Dist-n too). A sample without a value in either run (an
  unparseable judge score) is left out of that metric's comparison, so every permuted corpus has values;
  `Comparison.n` says how many samples were compared.
- Range: an interval never leaves the values the metric can take (`Metric.bounds`, e.g. 0-100 for BLEU,
  ROUGE-L, METEOR, F1 and Dist-n): it is clipped into them, and a difference into +-(high - low).

Limits. The normal interval of the jackknife assumes the half-sample values spread roughly normally
around the estimate. Dist-n is a ratio of corpus counts, not a mean: when one response holds much of the
corpus's n-grams (one very long answer among short ones), the half-samples fall into two groups - with
it and without it - and the normal interval is symmetric and very wide (it reached [-97.75, 98.10]).
Clipping keeps such an interval inside the metric's range, but does not make it accurate: an interval
clipped at a bound says the corpus is too small or too uneven for the value to be pinned down, not that
the value lies anywhere in particular. Percentile intervals lie among their resamples' values, which
are in range, so clipping leaves them as they are.
"""
from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence

import numpy as np

from .contract import Metric, ScoredPair

DEFAULT_RESAMPLES = 1000
CONFIDENCE = 0.95


def bootstrap_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) counts: row b says how often each sample appears in bootstrap corpus b."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    # counted by one bincount over (row, sample) cells: the same counts as np.add.at, ten times faster
    cells = (draws + (np.arange(resamples) * n)[:, None]).ravel()
    return np.bincount(cells, minlength=resamples * n).reshape(resamples, n).astype(float)


def half_sample_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) 0/1 rows, each selecting n // 2 samples without replacement."""
    rng = np.random.default_rng(seed)
    chosen = np.argsort(rng.random((resamples, n)), axis=1)[:, : n // 2]
    weights = np.zeros((resamples, n))
    np.put_along_axis(weights, chosen, 1.0, axis=1)
    return weights


def _normal_interval(center: float, replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    spread = z * float(np.std(replicates, ddof=1))
    return center - spread, center + spread


def weighted_values(metric: Metric, pairs: Sequence[ScoredPair], weights: np.ndarray, per_sample: Sequence[float] | None = None) -> np.ndarray:
    if metric.per_sample:
        values = np.asarray(per_sample if per_sample is not None else metric.compute(pairs).per_sample, dtype=float)
        totals = weights.sum(axis=1)
        return np.divide(weights @ values, totals, out=np.zeros(len(weights)), where=totals > 0)
    fast = metric.weighted(pairs, weights)
    if fast is not None:
        return np.asarray(fast, dtype=float)
    out = np.empty(len(weights))
    for b, row in enumerate(weights):  # generic: rebuild each corpus
        corpus = [p for p, copies in zip(pairs, row) for _ in range(int(copies))]
        out[b] = metric.compute(corpus).corpus
    return out


def clip(interval: tuple[float, float], bounds: tuple[float, float] | None) -> tuple[float, float]:
    """`interval` inside `bounds` (None: as it is); a missing value (NaN) stays missing."""
    if bounds is None:
        return interval
    low, high = bounds
    return tuple(float(min(max(v, low), high)) if not np.isnan(v) else float(v) for v in interval)  # type: ignore[return-value]


def _difference_bounds(metric: Metric) -> tuple[float, float] | None:
    """The range of B - A for a metric whose values lie in `bounds`."""
    if metric.bounds is None:
        return None
    width = metric.bounds[1] - metric.bounds[0]
    return -width, width


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    # a resample may have no value at all (every judge score of a dimension missing): it is left out
    low, high = np.nanpercentile(values, [tail, 100 - tail]) if not np.isnan(values).all() else (np.nan, np.nan)
    return float(low), float(high)


def intervals(metrics: Sequence[Metric], pairs: Sequence[ScoredPair], per_sample: dict[str, list[float]],
              resamples: int = DEFAULT_RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE) -> dict[str, tuple[float, float]]:
    if not pairs or resamples <= 0:
        return {}
    boot = bootstrap_weights(len(pairs), resamples, seed)
    half = half_sample_weights(len(pairs), resamples, seed) if any(m.size_dependent for m in metrics) else None
    out = {}
    for m in metrics:
        if m.size_dependent:  # the estimate and the half-samples in one call: a metric's statistics are gathered once
            values = weighted_values(m, pairs, np.vstack([np.ones((1, len(pairs))), half]), per_sample.get(m.name))
            out[m.name] = _normal_interval(float(values[0]), values[1:], confidence)
        else:
            out[m.name] = _percentile_interval(weighted_values(m, pairs, boot, per_sample.get(m.name)), confidence)
        out[m.name] = clip(out[m.name], m.bounds)  # never outside the values the metric can take
    return out


def interval_method(metric: Metric) -> str:
    return "delete-half jackknife, normal" if metric.size_dependent else "percentile bootstrap"


@dataclass
class Comparison:
    metric: str
    a: float
    b: float
    difference: float  # b - a
    interval: tuple[float, float]  # paired bootstrap interval of the difference
    p_value: float  # two-sided paired approximate randomisation
    n: int = 0  # samples both runs have a value for (a missing judge score in either run leaves the sample out)


def has_value(metric: Metric, pairs: Sequence[ScoredPair], per_sample: Sequence[float] | None) -> np.ndarray:
    """Which pairs have a value of `metric`: a per-sample score that is not NaN; for a metric that computes
    from the pairs (`weighted`), its value on each pair alone; any other metric always has one."""
    if per_sample is not None:
        return ~np.isnan(np.asarray(per_sample, dtype=float))
    n, block = len(pairs), 256  # identity rows in blocks: n x n floats would not fit for large splits
    found = []
    for start in range(0, n, block):
        rows = np.zeros((min(block, n - start), n))
        rows[np.arange(len(rows)), np.arange(start, start + len(rows))] = 1.0
        alone = metric.weighted(pairs, rows)
        if alone is None:
            return np.ones(n, dtype=bool)
        found.append(~np.isnan(np.asarray(alone, dtype=float)))
    return np.concatenate(found) if found else np.ones(0, dtype=bool)


def compare(metrics: Sequence[Metric], pairs_a: Sequence[ScoredPair], pairs_b: Sequence[ScoredPair],
            resamples: int = DEFAULT_RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE) -> list[Comparison]:
    """Pairs must be aligned: pairs_a[i] and pairs_b[i] answer the same sample. Each metric is compared on
    the samples both runs have a value for; with none, its row holds NaN."""
    n = len(pairs_a)
    assert n == len(pairs_b) and n > 0
    rows = []
    for metric in metrics:
        per_a = metric.compute(pairs_a).per_sample if metric.per_sample else None
        per_b = metric.compute(pairs_b).per_sample if metric.per_sample else None
        kept = np.flatnonzero(has_value(metric, pairs_a, per_a) & has_value(metric, pairs_b, per_b))
        if len(kept) == 0:
            rows.append(Comparison(metric.name, float("nan"), float("nan"), float("nan"), (float("nan"), float("nan")), float("nan"), 0))
            continue
        if len(kept) < n:
            pairs_a_kept, pairs_b_kept = [pairs_a[i] for i in kept], [pairs_b[i] for i in kept]
            per_a = None if per_a is None else [per_a[i] for i in kept]
            per_b = None if per_b is None else [per_b[i] for i in kept]
        else:
            pairs_a_kept, pairs_b_kept = list(pairs_a), list(pairs_b)
        rows.append(_paired(metric, pairs_a_kept, pairs_b_kept, per_a, per_b, resamples, seed, confidence))
    return rows


def _paired(metric: Metric, pairs_a: list[ScoredPair], pairs_b: list[ScoredPair], per_a: Sequence[float] | None,
            per_b: Sequence[float] | None, resamples: int, seed: int, confidence: float) -> Comparison:
    """The paired interval and randomisation test of one metric over samples that all have values. The
    draws depend only on (n, resamples, seed), so metrics over the same samples share them."""
    n = len(pairs_a)
    ones = np.ones((1, n))
    value_a = float(weighted_values(metric, pairs_a, ones, per_a)[0])
    value_b = float(weighted_values(metric, pairs_b, ones, per_b)[0])
    draws = half_sample_weights(n, resamples, seed) if metric.size_dependent else bootstrap_weights(n, resamples, seed)
    differences = weighted_values(metric, pairs_b, draws, per_b) - weighted_values(metric, pairs_a, draws, per_a)
    swap = np.random.default_rng(seed + 1).integers(0, 2, size=(resamples, n)).astype(float)
    as_a = np.hstack([1 - swap, swap])  # corpus "A" after swapping: A's response unless swapped
    as_b = np.hstack([swap, 1 - swap])
    joined = pairs_a + pairs_b
    per_joined = None if per_a is None else list(per_a) + list(per_b)
    permuted = weighted_values(metric, joined, as_b, per_joined) - weighted_values(metric, joined, as_a, per_joined)
    observed = value_b - value_a
    valid = permuted[~np.isnan(permuted)]  # every sample has a value, so none should be missing; never count one as "not extreme"
    p_value = (np.sum(np.abs(valid) >= abs(observed) - 1e-12) + 1) / (len(valid) + 1)
    interval = _normal_interval(observed, differences, confidence) if metric.size_dependent else _percentile_interval(differences, confidence)
    interval = clip(interval, _difference_bounds(metric))
    return Comparison(metric.name, value_a, value_b, observed, interval, float(p_value), n)
