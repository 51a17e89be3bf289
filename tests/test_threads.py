"""harness/threads.py: metric batches on worker threads (order kept, one torch intra-op thread meanwhile),
metrics beside each other, and errors or interrupts that stop the other parts instead of waiting for them."""
from __future__ import annotations

import threading
import time

import pytest

from harness import scoring, threads
from harness.contract import Metric, MetricValue, ScoredPair
from harness.errors import HarnessError


def test_map_batches_keeps_order_and_spreads_over_the_threads():
    names = set()

    def work(x: int) -> int:
        names.add(threading.current_thread().name)
        time.sleep(0.05)  # long enough that both threads take batches
        return x * x

    assert threads.map_batches(work, list(range(8)), threads=2) == [x * x for x in range(8)]
    assert len(names) == 2 and all(n.startswith("harness-batch") for n in names)


def test_one_thread_runs_in_the_caller(monkeypatch):
    monkeypatch.setenv(threads.THREADS_ENV, "1")
    seen = threads.map_batches(lambda _: threading.current_thread(), [1, 2, 3])
    assert seen == [threading.current_thread()] * 3


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_a_bad_thread_count_is_a_one_line_error(monkeypatch, value):
    monkeypatch.setenv(threads.THREADS_ENV, value)
    with pytest.raises(HarnessError, match=threads.THREADS_ENV):
        threads.map_batches(lambda x: x, [1, 2])


def test_torch_runs_one_intra_op_thread_meanwhile_and_gets_its_count_back():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        inside = threads.map_batches(lambda _: torch.get_num_threads(), [1, 2, 3, 4], threads=2)
        assert inside == [1, 1, 1, 1]
        with threads.one_torch_thread():  # sections nest and overlap: the count comes back after the last
            with threads.one_torch_thread():
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_an_error_is_raised_as_itself_and_stops_the_batches_not_started():
    started = []

    def work(x: int) -> int:
        started.append(x)
        if x == 0:
            raise ValueError("batch 0 is bad")
        time.sleep(0.05)
        return x

    with pytest.raises(ValueError, match="batch 0 is bad"):
        threads.map_batches(work, list(range(20)), threads=2)
    assert len(started) < 5  # the others were cancelled, not computed
    assert threads.map_batches(lambda x: x + 1, [1, 2, 3], threads=2) == [2, 3, 4]  # the next call is not cancelled


def test_beside_runs_the_concurrent_items_on_threads_of_their_own():
    where = {}

    def work(name: str) -> str:
        where[name] = threading.current_thread()
        time.sleep(0.02)
        return name.upper()

    out = threads.beside(["a", "b"], work, ["c", "d"])
    assert sorted(out.values()) == ["A", "B", "C", "D"]
    assert where["c"] is where["d"] is threading.current_thread()
    assert len({where["a"], where["b"], where["c"]}) == 3


def test_an_interrupt_in_the_caller_stops_the_concurrent_work_at_its_next_batch():
    done = []

    def slow_metric(_: str) -> list[int]:
        def batch(i: int) -> int:
            time.sleep(0.05)
            done.append(i)
            return i

        return threads.map_batches(batch, list(range(200)), threads=2)  # 5 s if nothing stops it

    def work(item: str):
        if item == "slow":
            return slow_metric(item)
        time.sleep(0.2)
        raise KeyboardInterrupt

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        threads.beside(["slow"], work, ["interrupted"])
    assert time.monotonic() - start < 2.0 and len(done) < 40


class _Values(Metric):
    per_sample = True

    def __init__(self, name: str, concurrent: bool, fail: bool = False):
        self.name, self.concurrent, self.fail = name, concurrent, fail

    def compute(self, pairs):
        if self.fail:
            raise HarnessError(f"{self.name}: its model folder is missing")
        return MetricValue(corpus=0.0, per_sample=[float(len(p.response)) for p in pairs])


def test_scoring_gives_each_metric_its_own_column_and_raises_a_concurrent_metrics_error():
    pairs = [ScoredPair("ab", "x"), ScoredPair("abcd", "y")]
    rows = scoring.per_sample_scores([_Values("m1", True), _Values("m2", False), _Values("m3", True)], pairs)
    assert rows == [{"m1": 2.0, "m2": 2.0, "m3": 2.0}, {"m1": 4.0, "m2": 4.0, "m3": 4.0}]
    with pytest.raises(HarnessError, match="m3: its model folder is missing"):
        scoring.per_sample_scores([_Values("m1", False), _Values("m3", True, fail=True)], pairs)
