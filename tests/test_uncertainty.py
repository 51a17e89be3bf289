import json
import subprocess
import sys

import numpy as np
import pytest

from harness import registry
from harness.contract import Metric, MetricValue, ScoredPair
from harness.metrics.lexical import tokenize
from harness.uncertainty import bootstrap_weights, compare, half_sample_weights, intervals, weighted_values

TEXTS = [
    ("i hear how hard this week has been for you .", "that sounds like a really hard week ."),
    ("what happened next ?", "and then what happened ?"),
    ("you feel nobody listens to you .", "it feels like nobody listens ."),
    ("tell me more .", "can you say more about that ?"),
    ("you are angry at him .", "you sound angry with him ."),
    ("tell me more .", "what do you mean ?"),
    ("", "okay ."),
    ("that must hurt a lot", "it hurts ."),
]


def pairs():
    return [ScoredPair(h, r) for h, r in TEXTS]


def expand(ps, row):
    return [p for p, copies in zip(ps, row) for _ in range(int(copies))]


@pytest.mark.parametrize("name", ["bleu-1", "bleu-2", "bleu-3", "bleu-4", "dist-1", "dist-2", "dist-3", "dist-1-plain", "dist-2-plain", "dist-3-plain"])
def test_fast_weighted_values_equal_recomputing_on_the_resampled_corpus(name):
    metric = registry.metrics.get(name)
    ps = pairs()
    rng = np.random.default_rng(3)
    weights = np.vstack([rng.integers(0, 4, size=len(ps)) for _ in range(25)] + [np.ones(len(ps)), np.eye(len(ps))[1]]).astype(float)
    fast = metric.weighted(ps, weights)
    slow = [metric.compute(expand(ps, row)).corpus for row in weights]
    assert fast == pytest.approx(slow, abs=1e-9)


def test_bootstrap_weights_are_seeded_resamples_of_size_n():
    w = bootstrap_weights(7, 50, seed=1)
    assert w.shape == (50, 7) and (w.sum(axis=1) == 7).all()
    assert (w == bootstrap_weights(7, 50, seed=1)).all() and not (w == bootstrap_weights(7, 50, seed=2)).all()
    # row b counts the seeded generator's b-th row of draws (what every published interval was computed from)
    draws = np.random.default_rng(1).integers(0, 7, size=(50, 7))
    assert w.tolist() == [[float(list(row).count(i)) for i in range(7)] for row in draws]
    h = half_sample_weights(8, 20, seed=0)
    assert set(np.unique(h)) == {0.0, 1.0} and (h.sum(axis=1) == 4).all()


def test_interval_of_a_mean_metric_is_the_percentile_of_resampled_means():
    metric = registry.metrics.get("rouge-l")
    ps = pairs()
    values = metric.compute(ps).per_sample
    got = intervals([metric], ps, {"rouge-l": values}, resamples=400, seed=5)["rouge-l"]
    means = bootstrap_weights(len(ps), 400, 5) @ np.array(values) / len(ps)
    assert got == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    constant = intervals([metric], ps, {"rouge-l": [7.0] * len(ps)}, resamples=100, seed=0)["rouge-l"]
    assert constant == pytest.approx((7.0, 7.0))


def test_half_sample_spread_matches_the_bootstrap_for_a_mean():
    """For a mean, the delete-half jackknife's variance equals the full-size one: both intervals agree."""
    rng = np.random.default_rng(0)
    values = rng.normal(50, 10, size=400)
    boot = bootstrap_weights(400, 2000, 1) @ values / 400
    half = half_sample_weights(400, 2000, 1) @ values / 200
    assert np.std(half, ddof=1) == pytest.approx(np.std(boot, ddof=1), rel=0.1)


def test_size_dependent_metrics_get_intervals_that_contain_the_estimate():
    metric = registry.metrics.get("dist-2")
    rng = np.random.default_rng(0)
    vocabulary = [f"w{i}" for i in range(40)]
    texts = [" ".join(rng.choice(vocabulary, size=8)) for _ in range(60)]
    ps = [ScoredPair(t, "x") for t in texts]
    value = metric.compute(ps).corpus
    low, high = intervals([metric], ps, {}, resamples=300, seed=0)["dist-2"]
    assert low < value < high
    # a percentile bootstrap would not: duplicated responses repeat n-grams and lower Dist-n
    resampled = weighted_values(metric, ps, bootstrap_weights(len(ps), 300, 0))
    assert np.percentile(resampled, 97.5) < value


def test_compare_identical_runs_and_a_clearly_better_one():
    ps = pairs() * 6
    metrics = [registry.metrics.get(n) for n in ("bleu-2", "rouge-l", "dist-2")]
    same = compare(metrics, ps, ps, resamples=200, seed=0)
    for row in same:
        assert row.difference == 0 and row.interval == pytest.approx((0.0, 0.0)) and row.p_value == 1.0
    better = [ScoredPair(p.reference, p.reference) for p in ps]
    rows = {r.metric: r for r in compare(metrics, ps, better, resamples=200, seed=0)}
    assert rows["rouge-l"].b == pytest.approx(100) and rows["rouge-l"].difference > 0
    assert rows["rouge-l"].interval[0] > 0 and rows["rouge-l"].p_value < 0.01
    assert rows["bleu-2"].interval[0] > 0 and rows["bleu-2"].p_value < 0.01


class _Score(Metric):
    """A per-sample metric reading a stored score; None (an unparseable judge answer) is missing (NaN)."""

    name, per_sample = "score", True

    def compute(self, pairs):
        values = [np.nan if p.outcome.get("score") is None else float(p.outcome["score"]) for p in pairs]
        present = [v for v in values if not np.isnan(v)]
        return MetricValue(corpus=float(np.mean(present)) if present else float("nan"), per_sample=values)


def scored(values):
    return [ScoredPair("r", "ref", outcome={"score": v}) for v in values]


def exact_randomisation_p(a, b):
    """Two-sided paired randomisation p over all 2^n swaps (the approximate test estimates this)."""
    import itertools

    a, b = np.asarray(a, float), np.asarray(b, float)
    observed = abs(b.mean() - a.mean())
    hits = [abs(np.where(s, a, b).mean() - np.where(s, b, a).mean()) >= observed - 1e-12 for s in itertools.product([0, 1], repeat=len(a))]
    return float(np.mean(hits))


def test_compare_leaves_out_samples_missing_in_either_run():
    a = [3, 2, None, 4, 1, 3, 2, None, 4, 3]
    b = [4, 3, 4, None, 2, 3, 4, 1, 4, 4]
    kept = [i for i in range(10) if a[i] is not None and b[i] is not None]  # 7 samples scored by both
    (full,) = compare([_Score()], scored(a), scored(b), resamples=4000, seed=0)
    (filtered,) = compare([_Score()], scored([a[i] for i in kept]), scored([b[i] for i in kept]), resamples=4000, seed=0)
    assert full.n == filtered.n == 7
    assert (full.a, full.b, full.p_value, full.interval) == (filtered.a, filtered.b, filtered.p_value, filtered.interval)
    assert full.a == pytest.approx(np.mean([a[i] for i in kept])) and full.b == pytest.approx(np.mean([b[i] for i in kept]))
    # the permutations are over samples that have both values: the p-value estimates the exact one, not less
    exact = exact_randomisation_p([a[i] for i in kept], [b[i] for i in kept])
    assert full.p_value == pytest.approx(exact, abs=0.02)


def test_compare_of_a_judge_mean_with_missing_scores_uses_the_samples_both_have():
    from harness.metrics.outcome import OutcomeMean

    metric = OutcomeMean("judged", lambda o: o.get("score"), "a judge's mean")
    a, b = [3, None, 2, 4, 1, 2], [4, 4, None, 4, 3, 3]
    (row,) = compare([metric], scored(a), scored(b), resamples=2000, seed=1)
    assert row.n == 4 and row.a == pytest.approx(2.5) and row.b == pytest.approx(3.5)
    assert row.p_value == pytest.approx(exact_randomisation_p([3, 4, 1, 2], [4, 4, 3, 3]), abs=0.03)
    (none,) = compare([metric], scored([None, 1]), scored([2, None]), resamples=50, seed=0)
    assert none.n == 0 and np.isnan(none.p_value) and np.isnan(none.difference)


def harness(*args):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True)


def test_cli_compare_and_its_refusals(tmp_path, data_root):
    runs = {}
    for model, args, split in (("retrieval", [], "test"), ("scripted", ["--model-args", "echo=true"], "test"), ("scripted", ["--model-args", "echo=true"], "val")):
        proc = harness("run", "--task", "mesc", "--model", model, *args, "--split", split, "--limit", "30", "--metrics", "bleu-2,rouge-l,dist-2",
                       "--output-dir", str(tmp_path / "runs"), "--bootstrap", "200")
        assert proc.returncode == 0, proc.stderr
        runs[(model, split)] = proc.stdout.strip().splitlines()[-1]
        assert "[" in proc.stdout  # intervals printed
    out = harness("compare", runs[("retrieval", "test")], runs[("scripted", "test")], "--json", "--resamples", "200")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["shared"] == 30 and [m["metric"] for m in result["metrics"]] == ["bleu-2", "rouge-l", "dist-2"]
    for m in result["metrics"]:
        assert m["difference"] == pytest.approx(m["b"] - m["a"]) and m["interval"][0] <= m["difference"] <= m["interval"][1]
        assert 0 < m["p_value"] <= 1
    refused = harness("compare", runs[("scripted", "test")], runs[("scripted", "val")])
    assert refused.returncode == 2 and "differ in split" in refused.stderr and "Traceback" not in refused.stderr
