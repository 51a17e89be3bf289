"""ESC-Eval's numbers: the judge's mean per dimension (0-4), their average, and that average on the 0-100
scale COMPEER reports (a linear map: 4 -> 100). Dialogues whose score for a dimension is unparseable are
left out of that dimension's mean and counted as missing."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from harness.contract import Metric, MetricValue, ScoredPair
from harness.metrics.outcome import OutcomeMean

from .esc_eval_judge import DIMENSIONS, JUDGE


def _dimension(name: str) -> OutcomeMean:
    return OutcomeMean(f"esc-eval-{name}", lambda o: (o.get("judge") or {}).get(name),
                       f"ESC-Eval {name} (code name '{DIMENSIONS[name]}'): the judge's mean score, 0-4",
                       order=600 + 10 * list(DIMENSIONS).index(name))  # the dimensions in ESC-Eval's order: 600..660


FLUENCY, EXPRESSION, EMPATHY, INFORMATION, HUMANOID, SKILL, OVERALL = (_dimension(d) for d in DIMENSIONS)
_ALL = (FLUENCY, EXPRESSION, EMPATHY, INFORMATION, HUMANOID, SKILL, OVERALL)


class DimensionAverage(Metric):
    """Mean of the seven dimension means (each over the dialogues that have that score); its missing count
    is the dialogues with no score at all."""

    def __init__(self, name: str, scale: float, description: str, order: int = 1000):
        self.name, self.scale, self.description, self.order = name, scale, description, order

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        means = [m.compute(pairs).corpus for m in _ALL]
        present = [x for x in means if not np.isnan(x)]
        unscored = sum(all((p.outcome.get("judge") or {}).get(d) is None for d in DIMENSIONS) for p in pairs)
        return MetricValue(corpus=float(np.mean(present)) * self.scale if present else float("nan"), missing=unscored)

    def weighted(self, pairs: Sequence[ScoredPair], weights: Any) -> Any:
        stacked = np.vstack([m.weighted(pairs, weights) for m in _ALL])
        counts = (~np.isnan(stacked)).sum(axis=0)
        totals = np.nansum(stacked, axis=0)
        return np.divide(totals, counts, out=np.full(stacked.shape[1], np.nan), where=counts > 0) * self.scale


AVERAGE = DimensionAverage("esc-eval-average", 1.0, "ESC-Eval: average of the seven dimension means, 0-4", order=670)
SCORE_100 = DimensionAverage("esc-eval-score", 25.0, "ESC-Eval: average of the seven dimension means on 0-100 (x25), the scale COMPEER reports", order=680)

for _metric in (*_ALL, AVERAGE, SCORE_100):  # every ESC-Eval number reads the judge's grades
    _metric.grader = JUDGE
