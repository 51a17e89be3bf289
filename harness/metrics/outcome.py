"""Metrics of simulated dialogues: a mean or a count of one value of each dialogue's outcome.

A dialogue without the value (an unparseable judge score) is left out of the mean and counted as
missing, never scored 0.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..contract import Metric, MetricValue, ScoredPair

Extract = Callable[[dict[str, Any]], float | None]


class OutcomeMean(Metric):
    """Mean over dialogues of `extract(outcome)` times `scale`."""

    def __init__(self, name: str, extract: Extract, description: str, scale: float = 1.0, *,
                 higher_is_better: bool = True, decimals: int = 2, order: int = 1000):
        self.name, self.extract, self.description, self.scale = name, extract, description, scale
        self.higher_is_better, self.decimals, self.order = higher_is_better, decimals, order

    def _values(self, pairs: Sequence[ScoredPair]) -> np.ndarray:
        found = [self.extract(p.outcome) for p in pairs]
        return np.array([np.nan if v is None else float(v) for v in found], dtype=float)

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        values = self._values(pairs)
        present = ~np.isnan(values)
        mean = float(values[present].mean()) * self.scale if present.any() else float("nan")
        return MetricValue(corpus=mean, missing=int((~present).sum()))

    def weighted(self, pairs: Sequence[ScoredPair], weights: Any) -> Any:
        values = self._values(pairs)
        present = ~np.isnan(values)
        totals = weights[:, present].sum(axis=1)
        sums = weights[:, present] @ values[present]
        return np.divide(sums, totals, out=np.full(len(weights), np.nan), where=totals > 0) * self.scale


class OutcomeCount(Metric):
    """How many dialogues satisfy `test(outcome)` (SAGE reports successes and failures as counts)."""

    def __init__(self, name: str, test: Callable[[dict[str, Any]], bool], description: str, *,
                 higher_is_better: bool = True, decimals: int = 2, order: int = 1000):
        self.name, self.test, self.description = name, test, description
        self.higher_is_better, self.decimals, self.order = higher_is_better, decimals, order

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        return MetricValue(corpus=float(sum(bool(self.test(p.outcome)) for p in pairs)))

    def weighted(self, pairs: Sequence[ScoredPair], weights: Any) -> Any:
        hits = np.array([bool(self.test(p.outcome)) for p in pairs], dtype=float)
        return weights @ hits
