"""The score cache (harness/scorecache.py): a second scoring of the same pairs computes nothing and gives the
same values to the last bit; anything that changes a value misses; a damaged entry is one line."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from engine_fixtures import QuestionShare
from harness import scorecache
from harness.contract import Metric, MetricValue, ScoredPair
from harness.errors import HarnessError

DATA = Path(os.environ.get("ESC_HARNESS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


class CountingLength(Metric):
    """Per sample: characters of the response / 3 (not exact in binary), counting the pairs it computes."""

    name = "test-counting-length"
    per_sample = True

    def __init__(self):
        self.computed = 0

    def compute(self, pairs):
        self.computed += len(pairs)
        values = [len(p.response) / 3 for p in pairs]
        return MetricValue(corpus=sum(values) / len(values), per_sample=values)


class Uncacheable(CountingLength):
    name = "test-uncacheable"

    def cache_identity(self):
        return None


def pairs(*responses):
    return [ScoredPair(response=r, reference="ref") for r in responses]


def test_second_scoring_computes_nothing_and_gives_the_same_bits(tmp_path):
    path = tmp_path / "c.sqlite"
    metric = CountingLength()
    first = scorecache.cached([metric], scorecache.ScoreCache(path))[0].compute(pairs("a", "bb", "ccccc"))
    assert metric.computed == 3 and first.per_sample == [1 / 3, 2 / 3, 5 / 3]
    again = scorecache.ScoreCache(path)  # a new process would open it anew
    second = scorecache.cached([metric], again)[0].compute(pairs("a", "bb", "ccccc"))
    assert metric.computed == 3 and again.hits == 3 and again.computed == 0
    assert [v.hex() for v in second.per_sample] == [v.hex() for v in first.per_sample] and second.corpus == first.corpus
    # a changed response misses for that pair only
    third = scorecache.cached([metric], again)[0].compute(pairs("a", "bbb", "ccccc"))
    assert metric.computed == 4 and third.per_sample == [1 / 3, 1.0, 5 / 3]


def test_corpus_features_are_kept_and_read_back(tmp_path):
    path = tmp_path / "c.sqlite"
    metric = QuestionShare()
    wrapped = scorecache.cached([metric], scorecache.ScoreCache(path))[0]
    assert wrapped.compute(pairs("why?", "ok", "how?", "fine")).corpus == 50.0 and len(metric.calls) == 4
    again = scorecache.cached([metric], scorecache.ScoreCache(path))[0]
    assert again.compute(pairs("why?", "ok", "how?", "fine")).corpus == 50.0 and len(metric.calls) == 4


def test_metric_identity_and_opting_out(tmp_path):
    path = tmp_path / "c.sqlite"
    metric = CountingLength()
    scorecache.cached([metric], scorecache.ScoreCache(path))[0].compute(pairs("a"))
    other = CountingLength()
    other.name = "test-counting-length-2"  # another metric (a variant's name) never reads the first one's values
    scorecache.cached([other], scorecache.ScoreCache(path))[0].compute(pairs("a"))
    assert other.computed == 1
    never = Uncacheable()
    for _ in range(2):
        scorecache.cached([never], scorecache.ScoreCache(path))[0].compute(pairs("a"))
    assert never.computed == 2
    assert scorecache.cached([metric], None) == [metric]  # --no-cache: the metrics as they are


def test_a_damaged_entry_is_one_line(tmp_path):
    path = tmp_path / "c.sqlite"
    metric = CountingLength()
    scorecache.cached([metric], scorecache.ScoreCache(path))[0].compute(pairs("a"))
    with sqlite3.connect(path) as db:
        db.execute("UPDATE scores SET value = ?", (json.dumps({"score": "not a number"}),))
    with pytest.raises(HarnessError, match=r"c\.sqlite: the cache holds a score entry that is not a stored score"):
        scorecache.cached([metric], scorecache.ScoreCache(path))[0].compute(pairs("a"))


@pytest.mark.skipif(not (DATA / "mesc").is_dir(), reason="datasets not found (set ESC_HARNESS_DATA)")
def test_a_second_run_reads_its_scores(tmp_path):
    env = {**os.environ, "ESC_HARNESS_DATA": str(DATA)}
    cmd = [sys.executable, "-m", "harness.cli", "run", "--task", "mesc", "--model", "retrieval", "--limit", "6", "--metrics",
           "bleu-2,rouge-l,meteor", "--resamples", "20", "--cache", "c.sqlite", "--output-dir", "runs"]
    summaries = []
    for _ in range(2):
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        summaries.append(json.loads((tmp_path / done.stdout.strip().splitlines()[-1] / "summary.json").read_text()))
    assert summaries[0]["metrics"] == summaries[1]["metrics"] and summaries[0]["intervals"] == summaries[1]["intervals"]
    with sqlite3.connect(tmp_path / "c.sqlite") as db:
        counts = dict(db.execute("SELECT metric, COUNT(*) FROM scores GROUP BY metric").fetchall())
    assert counts["rouge-l"] == 6 and counts["meteor"] == 6  # per-sample values, one per pair


def test_bleu_and_distinct_read_their_statistics_without_tokenising(tmp_path, monkeypatch):
    """BLEU's per-pair n-gram counts and Distinct's n-gram sets are features: a second scoring reads them
    from the cache (no tokeniser call) and gives the same corpus and resampled values to the last bit."""
    import numpy as np

    from harness import registry
    from harness.metrics import lexical

    texts = [("I hear you, that sounds so hard.", "That sounds really hard for you."),
             ("Have you talked to your sister?", "Maybe talk with your sister about it."),
             ("I am sorry.", "I am so sorry to hear that, it sounds hard.")]
    names = ["bleu-2", "dist-3", "dist-3-response"]
    weights = np.array([[1, 0, 2], [0, 3, 0], [1, 1, 1]])

    def scored(cache):
        metrics = scorecache.cached([registry.metrics.get(n) for n in names], cache)
        fresh = [ScoredPair(response=r, reference=ref) for r, ref in texts]
        out = []
        for m in metrics:
            resampled = m.weighted(fresh, weights)  # None: a per-sample metric (resampled from its values)
            out.append((m.compute(fresh).corpus, None if resampled is None else [float(x) for x in resampled]))
        return out

    path = tmp_path / "c.sqlite"
    first = scored(scorecache.ScoreCache(path))
    assert first[0][0] == lexical.Bleu(2).compute([ScoredPair(response=r, reference=ref) for r, ref in texts]).corpus  # as uncached
    assert first[0][1] is not None and first[1][1] is not None  # BLEU and Distinct resample their statistics
    monkeypatch.setattr(lexical, "tokenize", lambda text: pytest.fail(f"tokenised {text!r} again"))
    again = scorecache.ScoreCache(path)
    second = scored(again)
    assert [(c.hex(), w) for c, w in second] == [(c.hex(), w) for c, w in first]
    assert again.computed == 0 and again.hits > 0
