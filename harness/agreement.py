"""Inter-rater agreement for categorical ratings: Cohen's kappa and Krippendorff's alpha (numpy only).

Ratings are integer category codes 0..k-1 in a float array with NaN for "not rated", so a rater who
skipped an item (an LLM judge whose answer could not be parsed) is handled as missing data, not as a
category.

- Percent agreement: the share of agreeing pairs among all pairs of ratings of one item by two raters
  (for two raters, the share of the items both rated on which they agree).
- Cohen's kappa (two raters, unweighted): (p_o - p_e) / (1 - p_e) on the items both rated, p_e from each
  rater's own marginals (Cohen 1960).
- Krippendorff's alpha: 1 - D_o / D_e from the coincidence matrix (Krippendorff 2011, "Computing
  Krippendorff's alpha-reliability"), any number of raters, missing data allowed; `level` picks the
  difference function: nominal (0/1), ordinal (rank-based, from the marginal frequencies) or interval
  (squared difference of the codes).

All return NaN where the statistic is undefined (no item rated twice; for kappa and alpha also no
variation at all: every rating in one category gives p_e = 1 and D_e = 0).
"""
from __future__ import annotations

import numpy as np

LEVELS = ("nominal", "ordinal", "interval")


def percent_agreement(ratings) -> float:
    """Agreeing pairs / pairs, over the pairs of raters who both rated an item, of a (raters, items) array."""
    data = np.asarray(ratings, dtype=float)
    agreeing = pairs = 0
    for i in range(data.shape[0]):
        for j in range(i + 1, data.shape[0]):
            both = ~np.isnan(data[i]) & ~np.isnan(data[j])
            pairs += int(both.sum())
            agreeing += int((data[i][both] == data[j][both]).sum())
    return agreeing / pairs if pairs else float("nan")


def cohen_kappa(first, second, categories: int) -> float:
    """Unweighted kappa of two raters' codes over the items both rated."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    both = ~np.isnan(a) & ~np.isnan(b)
    if not both.any():
        return float("nan")
    a, b = a[both].astype(int), b[both].astype(int)
    observed = float(np.mean(a == b))
    expected = float(np.dot(np.bincount(a, minlength=categories), np.bincount(b, minlength=categories))) / len(a) ** 2
    if expected >= 1.0:
        return float("nan")
    return (observed - expected) / (1.0 - expected)


def coincidences(ratings, categories: int) -> np.ndarray:
    """(k, k) coincidence matrix of (raters, items) codes: every ordered pair of values from different
    raters of one item, weighted 1 / (m_u - 1) where m_u raters rated item u; items rated once drop out."""
    data = np.asarray(ratings, dtype=float)
    counts = np.stack([(data == c).sum(axis=0) for c in range(categories)], axis=1).astype(float)  # (items, k)
    m = counts.sum(axis=1)
    paired = m >= 2
    counts, m = counts[paired], m[paired]
    scaled = counts / (m - 1)[:, None]
    # sum over items of (c_u c_u^T - diag(c_u)) / (m_u - 1): the diagonal removes a value paired with itself
    return scaled.T @ counts - np.diag(scaled.sum(axis=0))


def squared_differences(level: str, totals: np.ndarray) -> np.ndarray:
    """delta^2 between categories; `totals` are the coincidence marginals n_c (the ordinal metric needs them)."""
    k = len(totals)
    codes = np.arange(k)
    if level == "nominal":
        return (codes[:, None] != codes[None, :]).astype(float)
    if level == "interval":
        return (codes[:, None] - codes[None, :]).astype(float) ** 2
    if level == "ordinal":
        cumulative = np.concatenate([[0.0], np.cumsum(totals)])
        low, high = np.minimum.outer(codes, codes), np.maximum.outer(codes, codes)
        # sum of n_g for g from c to k, minus half the two end categories' own frequencies
        between = cumulative[high + 1] - cumulative[low] - (totals[:, None] + totals[None, :]) / 2
        return between ** 2
    raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")


def krippendorff_alpha(ratings, categories: int, level: str = "nominal") -> float:
    """Alpha of a (raters, items) array of codes 0..categories-1, NaN = missing."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    o = coincidences(ratings, categories)
    totals = o.sum(axis=1)
    n = totals.sum()
    if n < 2:
        return float("nan")
    delta = squared_differences(level, totals)
    expected = float(np.sum(np.outer(totals, totals) * delta))
    if expected == 0.0:
        return float("nan")
    return 1.0 - (n - 1) * float(np.sum(o * delta)) / expected


def alpha_interval(ratings, categories: int, level: str = "ordinal", resamples: int = 1000, seed: int = 0,
                   confidence: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of alpha over items (the columns of a (raters, items) array, drawn with
    replacement); resamples where alpha is undefined are left out; None when none has a value."""
    data = np.asarray(ratings, dtype=float)
    if resamples < 1 or data.shape[1] == 0:
        return None
    rng = np.random.default_rng(seed)
    draws = [krippendorff_alpha(data[:, rng.integers(0, data.shape[1], data.shape[1])], categories, level) for _ in range(resamples)]
    kept = np.array([d for d in draws if not np.isnan(d)])
    if not len(kept):
        return None
    tail = (1.0 - confidence) / 2 * 100
    return float(np.percentile(kept, tail)), float(np.percentile(kept, 100 - tail))
