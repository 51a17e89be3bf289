"""Reports show a metric as the metric itself declares (harness.contract.Metric `higher_is_better`,
`decimals`, `order`): a third-party metric registered in-process is shown right with no change to reports."""
from typing import Sequence

import pytest

from harness import registry
from harness.contract import Metric, MetricValue, ScoredPair
from reports.leaderboard import build_tables, render_markdown
from test_leaderboard import cell, make_run, table_of

NAME = "acme-errors"


class AcmeErrors(Metric):
    """Errors per response: fewer is better, shown with three decimals, before every other column."""

    name = NAME
    higher_is_better = False
    decimals = 3
    order = 5

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        return MetricValue(corpus=0.0)


@pytest.fixture
def acme():
    registry.metrics.register(NAME, AcmeErrors())
    yield
    registry.metrics._extra.pop(NAME, None)  # leave the registry as the other tests expect it


def test_a_registered_metric_declares_its_direction_decimals_and_order(tmp_path, acme):
    make_run(tmp_path, "a", model="a", metrics={"bleu-2": 5.0, NAME: 0.12345})
    make_run(tmp_path, "b", model="b", metrics={"bleu-2": 4.0, NAME: 0.5})
    mesc = table_of(build_tables(tmp_path), "mesc")
    assert [c.label for c in mesc.columns] == [NAME, "bleu-2"]  # order 5 comes before bleu-2's
    assert cell(mesc, "a", NAME).best and not cell(mesc, "b", NAME).best  # lowest is best
    assert cell(mesc, "a", "bleu-2").best and not cell(mesc, "b", "bleu-2").best
    text = render_markdown([mesc])
    assert f"{NAME} \u2193" in text and "bleu-2 \u2191" in text
    assert "| a | measured | 10 | **0.123** | **5.00** |" in text
    assert "| b | measured | 10 | 0.500 | 4.00 |" in text


def test_an_unregistered_metric_gets_the_defaults_and_follows_in_first_seen_order(tmp_path):
    make_run(tmp_path, "a", model="a", metrics={"zz-unknown": 0.12345, "bleu-2": 5.0})
    make_run(tmp_path, "b", model="b", metrics={"zz-unknown": 0.5, "bleu-2": 4.0})
    mesc = table_of(build_tables(tmp_path), "mesc")
    assert [c.label for c in mesc.columns] == ["bleu-2", "zz-unknown"]
    assert cell(mesc, "b", "zz-unknown").best  # higher is better by default
    text = render_markdown([mesc])
    assert "zz-unknown \u2191" in text and "| b | measured | 10 | 4.00 | **0.50** |" in text
