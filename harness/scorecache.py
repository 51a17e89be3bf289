"""Score cache: what metrics compute per pair, kept across runs in the response cache's SQLite file.

A second identical run answers every request from the response cache; this keeps its scoring from loading
BERTScore's encoder, the EPITOME classifiers or WordNet again. Two things are kept, per (metric, pair):

- the per-sample value of a `per_sample` metric (METEOR, BERTScore, DIFF-EPITOME, ROUGE-L ...);
- the per-pair ingredients a corpus metric declares in `Metric.features()` (memo key -> function of the
  pair), which its `compute` and `weighted` read with `pair.memo`.

The key (sha256) names everything that changes a value: the metric's name and class, its `info()` (versions,
variants, the classifiers' weights digest), its `cache_identity()` (what info() does not say), a digest of
the source files of the metric's package folder, the versions of the packages a run records
(`lifecycle.package_versions`: nltk, torch, transformers, bert-score ...) and the pair's content as the
metric may read it (response, reference, history, outcome, labels). A metric whose `cache_identity()` is
None is never cached. Values are JSON (Python's float repr round-trips exactly, NaN included) and a first
run hands the metric its values after the same JSON round trip, so a cached value is the computed one to
the last bit.

Table `scores` (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL, metric TEXT) in the file of
the response cache, through its own connection; `value` is {"score": float} or {"feature": JSON}, `metric`
the metric's name. `--no-cache` turns it off (no table is made). `harness score RUN_DIR` does not use it:
rescoring is the way to recompute every value from the stored responses. An entry that does not read back
as one of those values is never believed: one HarnessError line names the file.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from .cache import BUSY_SECONDS, insert_rows, sqlite_errors
from .contract import Metric, MetricValue, ScoredPair
from .errors import HarnessError
from .scoring import MetricWrapper

SCORE_FORMAT = 1
_CHUNK = 500  # keys per SELECT (SQLite's limit on bound parameters is 999 in old builds)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def pair_digest(pair: ScoredPair) -> str:
    """The pair's content as any metric may read it, once per pair."""
    def digest(p: ScoredPair) -> str:
        history = [t.model_dump() if hasattr(t, "model_dump") else t for t in p.history]
        return _sha256(_canonical({"response": p.response, "reference": p.reference, "history": history,
                                   "outcome": p.outcome, "labels": p.labels}))

    return pair.memo("scorecache/pair", digest)


_code_digests: dict[Path, str] = {}


def code_digest(cls: type) -> str:
    """sha256 over the Python files of the folder that defines `cls` (a metric's package: its helpers and
    model code too), once per process: a changed implementation never reads an old value."""
    try:
        folder = Path(inspect.getsourcefile(cls) or "").resolve().parent
    except TypeError:  # defined where no file is (an interactive session)
        return "no source"
    if folder not in _code_digests:
        digest = hashlib.sha256()
        for path in sorted(folder.glob("*.py")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        _code_digests[folder] = digest.hexdigest()
    return _code_digests[folder]


def metric_digest(metric: Metric) -> str | None:
    """What changes the metric's per-pair values, as one digest; None: the metric is not cached."""
    extra = metric.cache_identity()
    if extra is None:
        return None
    from .lifecycle import package_versions  # (lifecycle opens the caches: imported when used)

    cls = type(metric)
    return _sha256(_canonical({"format": SCORE_FORMAT, "metric": metric.name, "class": f"{cls.__module__}.{cls.__qualname__}",
                               "info": metric.info(), "identity": extra, "code": code_digest(cls), "packages": package_versions()}))


class ScoreCache:
    """The `scores` table of one cache file. The connection opens on first use; `hits` and `computed` count
    values read and values computed (per sample and per feature) since it was made."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self.hits = 0
        self.computed = 0

    def _guard(self, doing: str):
        return sqlite_errors(self.path, doing, what="the cache")

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            with self._guard("open"):
                db = sqlite3.connect(str(self.path), timeout=BUSY_SECONDS, check_same_thread=False)
                try:
                    db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL, metric TEXT)")
                    db.commit()
                except BaseException:
                    db.close()
                    raise
                self._db = db
        return self._db

    def get_many(self, keys: Sequence[str], slot: str) -> dict[str, Any]:
        """key -> the stored value of `slot` ("score" or "feature") for the keys that have one."""
        wanted = sorted(set(keys))
        rows: list[tuple[str, str]] = []
        with self._lock, self._guard("read"):
            db = self._connection()
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                rows += db.execute(f"SELECT key, value FROM scores WHERE key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        return {key: self._read(key, text, slot) for key, text in rows}

    def _read(self, key: str, text: Any, slot: str) -> Any:
        try:
            entry = json.loads(text)
        except (TypeError, ValueError):
            entry = None
        ok = isinstance(entry, dict) and list(entry) == [slot]
        if ok and slot == "score":
            ok = isinstance(entry[slot], (int, float)) and not isinstance(entry[slot], bool)
        if not ok:
            raise HarnessError(f"{self.path}: the cache holds a score entry that is not a stored {slot} (key {key[:12]}...); the file was damaged "
                               "or written by another program - delete it (its answers are asked again), or pass another --cache FILE or --no-cache.")
        return entry[slot]

    def put_many(self, rows: Sequence[tuple[str, str, Any]], slot: str) -> None:
        """(key, metric name, value) rows, in one transaction."""
        if not rows:
            return
        now = time.time()
        with self._lock, self._guard("write"):
            db = self._connection()
            try:
                insert_rows(db, "scores", ("key", "value", "created", "metric"),
                            [(key, json.dumps({slot: value}), now, metric) for key, metric, value in rows])
                db.commit()
            except sqlite3.Error:
                try:
                    db.rollback()
                except sqlite3.Error:
                    pass
                raise

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _round_trip(value: Any) -> Any:
    """The value as the cache gives it back (JSON): what a first run hands the metric too."""
    return json.loads(json.dumps(value))


class CachedMetric(MetricWrapper):
    """A metric behind the score cache: per-sample values and declared features are read where the cache has
    them and computed (then stored) for the other pairs only. Everything else is the metric's own."""

    def __init__(self, inner: Metric, cache: ScoreCache):
        super().__init__(inner)
        self.cache = cache
        self._digest: str | None | bool = False  # False: not computed yet (info() may be costly)

    def digest(self) -> str | None:
        if self._digest is False:
            self._digest = metric_digest(self.inner)
        return self._digest  # type: ignore[return-value]

    def _key(self, slot: str, pair: ScoredPair) -> str:
        return _sha256(f"{self.digest()}:{slot}:{pair_digest(pair)}")

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        if self.digest() is None:
            return self.inner.compute(pairs)
        if not self.per_sample:
            self.fill_features(pairs)
            return self.inner.compute(pairs)
        keys = [self._key("score", p) for p in pairs]
        found = self.cache.get_many(keys, "score")
        todo = [i for i, k in enumerate(keys) if k not in found]
        self.cache.hits += len(pairs) - len(todo)
        if todo:
            # a per-sample value depends on its pair alone (the contract of per_sample), so the pairs missing
            # from the cache are computed on their own
            computed = self.inner.compute([pairs[i] for i in todo]).per_sample
            if computed is None or len(computed) != len(todo):
                raise HarnessError(f"metric {self.name} declares per-sample scores but returned {0 if computed is None else len(computed)} "
                                   f"for {len(todo)} samples.")
            self.cache.computed += len(todo)
            new = {keys[i]: _round_trip(float(v)) for i, v in zip(todo, computed)}
            self.cache.put_many([(k, self.name, v) for k, v in new.items()], "score")
            found.update(new)
        values = [found[k] for k in keys]
        return MetricValue(corpus=sum(values) / len(values) if values else 0.0, per_sample=values)

    def weighted(self, pairs: Sequence[ScoredPair], weights: Any) -> Any:
        if not self.per_sample:
            self.fill_features(pairs)
        return self.inner.weighted(pairs, weights)

    def fill_features(self, pairs: Sequence[ScoredPair]) -> None:
        """Each declared feature of each pair into the pair's memo: from the cache, or computed and stored
        (a metric that is not cached: computed only)."""
        if self.digest() is None:
            super().fill_features(pairs)
            return
        for name, function in self.inner.features().items():
            lacking = [p for p in pairs if name not in p._memo]
            if not lacking:
                continue
            slot = f"feature:{name}"
            keys = [self._key(slot, p) for p in lacking]
            found = self.cache.get_many(keys, "feature")
            new: dict[str, Any] = {}
            for pair, key in zip(lacking, keys):
                if key not in found and key not in new:
                    new[key] = _round_trip(function(pair))
                pair._memo[name] = found[key] if key in found else new[key]  # the value `pair.memo(name, ...)` returns
            self.cache.hits += len(lacking) - len(new)
            self.cache.computed += len(new)
            self.cache.put_many([(k, self.name, v) for k, v in new.items()], "feature")


def cached(metrics: Sequence[Metric], cache: ScoreCache | None) -> list[Metric]:
    """The metrics behind `cache` (as they are without one)."""
    if cache is None:
        return list(metrics)
    return [m if isinstance(m, CachedMetric) else CachedMetric(m, cache) for m in metrics]


def beside(response_cache: Any) -> ScoreCache | None:
    """The score cache in the response cache's file (None when the response cache is off: --no-cache)."""
    return ScoreCache(response_cache.path) if response_cache is not None else None
