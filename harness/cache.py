"""Response cache (SQLite): every model call of every role goes through it.

The key names everything that changes an answer - the adapter, its identity (model, sampling args...;
not the server's address, so the endpoints of one model share it), the messages, the generation settings and, for n > 1, which of the n samples - and nothing
that does not (timeouts, retries, concurrency, API keys). `n` itself is not in the key: choice i of a
request is the same cached sample whether 2 or 4 were asked for, so raising n reuses what exists.

Table `responses` (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL, model TEXT): `value` is
{"text": str, "usage": {...}}, `created` the time it was stored (Unix seconds), `model` the adapter with its
model (`openai:gpt-4o`, `retrieval`: `model_label`) for `harness cache clear --model`; files made before that
column existed gain it on open (ALTER TABLE; their entries keep their hits, with model NULL).

Commits: by default each answer is committed as it arrives. Inside `ResponseCache.grouped()` (the runner's
single-turn loop) answers are buffered and committed together when the consumer calls `flush()` - which the
runner does before it writes the records that count them - and at least every COMMIT_SECONDS; a kill loses
only answers that no record counts yet (asked again on resume).
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from .contract import ChatModel, ChatRequest, Message, ModelOutput, StreamingChatModel
from .errors import HarnessError
from .hashing import sha256_memo

CACHE_FORMAT = 1


def image_fingerprint(path: str) -> str:
    """Images are keyed by content, not path: frames re-extracted into the same folder are new inputs."""
    try:
        stat = os.stat(path)
    except OSError:
        return f"missing:{path}"
    return sha256_memo(path, stat)


_MESSAGE_FIELDS = tuple(Message.model_fields)  # (flat fields: str and tuples of str, so getattr = model_dump)


def cache_key(model_name: str, identity: dict[str, Any], request: ChatRequest, index: int) -> str:
    # the fields read directly rather than by model_dump (a third of the key's cost); the same JSON, the same key
    messages = [{field: getattr(m, field) for field in _MESSAGE_FIELDS} for m in request.messages]
    for message in messages:
        message["images"] = [image_fingerprint(p) for p in message["images"]]
    payload = {
        "format": CACHE_FORMAT,
        "model": model_name,
        "identity": identity,
        "messages": messages,
        "generation": request.generation.model_dump(exclude={"n"}),
        "index": index,
    }
    if request.adapter is not None:  # only when named, so that the keys of requests without one stay as they were
        payload["adapter"] = request.adapter
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


BUSY_SECONDS = 5.0  # how long a cache locked by another process is waited for
COMMIT_SECONDS = 1.0  # inside grouped(): buffered answers are committed at least this often
_CHUNK = 500  # keys per SELECT (old SQLite builds bind at most 999 parameters)


def model_label(name: str, identity: dict[str, Any]) -> str:
    """What the `model` column holds: the adapter name, with its model where the identity names one."""
    model = identity.get("model")
    return f"{name}:{model}" if isinstance(model, str) and model else name


@contextmanager
def sqlite_errors(path: Path, doing: str, what: str = "the response cache", advice: str = "pass another --cache FILE or --no-cache",
                  when_locked: str | None = None, damaged: str | None = None) -> Iterator[None]:
    """SQLite's errors on a cache file as one line naming it (raised outside the except block: no chained
    traceback); the one wording of the response cache, the score cache and the cache commands."""
    problem = None
    try:
        yield
    except sqlite3.OperationalError as exc:
        text = str(exc)
        if "locked" in text or "busy" in text:
            problem = (f"{path}: {what} is locked by another process (waited {BUSY_SECONDS:g} s to {doing} it); "
                       f"{when_locked or 'wait for that process to finish, or ' + advice}.")
        else:
            problem = f"{path}: cannot {doing} {what} ({text}); check the file and its folder, or {advice}."
    except sqlite3.DatabaseError as exc:  # not a database, truncated, malformed
        problem = f"{path}: {damaged or what + ' is damaged'} ({exc}); delete the file (its answers are asked again), or {advice}."
    if problem is not None:
        raise HarnessError(problem)


_ROWS_PER_INSERT = 200  # x 4 columns: within the 999 bound parameters of old SQLite builds


def insert_rows(db: sqlite3.Connection, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """INSERT OR REPLACE many rows as a few multi-row statements rather than `executemany`'s one step per row:
    sqlite3 gives up the GIL around every step, and taking it back waits up to the switch interval (5 ms) while
    another thread runs Python (the openai adapter's event loop): 1-2 ms per stored answer, measured."""
    if not rows:
        return
    row = "(" + ", ".join("?" * len(columns)) + ")"
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[start : start + _ROWS_PER_INSERT]
        db.execute(f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES {', '.join([row] * len(chunk))}",
                   [value for r in chunk for value in r])


class ResponseCache:
    """Every failure of the file (damaged, not a database, locked, a folder, an entry that is not JSON) is
    one HarnessError naming it and what to do: a damaged cache is never believed, nor silently skipped."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._pending: dict[str, tuple[str, float, str | None]] = {}  # key -> (value JSON, created, model), not committed yet
        self._grouping = 0
        self._last_commit = time.monotonic()
        if path.is_dir():
            raise HarnessError(f"{path}: the response cache is a folder, not a file; pass --cache FILE (e.g. {path / 'responses.sqlite'}) or --no-cache.")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = exc.strerror or str(exc)
            if isinstance(exc, (NotADirectoryError, FileExistsError)):
                why += ": a file stands where a folder should be"
            raise HarnessError(f"{path}: cannot make the response cache's folder {path.parent} ({why}); "
                               "pass another --cache FILE or --no-cache.") from None
        try:
            with self._guard("open"):
                self._db = sqlite3.connect(str(path), timeout=BUSY_SECONDS, check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("CREATE TABLE IF NOT EXISTS responses "
                                 "(key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL, model TEXT)")
                self._db.commit()
                self._migrate()
        except HarnessError:
            self.close()
            raise

    def _migrate(self) -> None:
        """A file of the first format (no `model` column) gains it in place; its entries keep their keys."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(responses)")}
        if "model" in columns:
            return
        try:
            self._db.execute("ALTER TABLE responses ADD COLUMN model TEXT")
            self._db.commit()
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):  # (another process migrated it at the same moment: done)
                raise

    def _guard(self, doing: str):
        return sqlite_errors(self.path, doing)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """key -> stored answer, for the keys the cache holds (committed or still buffered), in few queries."""
        wanted = list(dict.fromkeys(keys))
        rows: list[tuple[str, str]] = []
        with self._lock, self._guard("read"):
            for key in wanted:
                if key in self._pending:
                    rows.append((key, self._pending[key][0]))
            rest = [k for k in wanted if k not in self._pending]
            for start in range(0, len(rest), _CHUNK):
                chunk = rest[start : start + _CHUNK]
                rows += self._db.execute(f"SELECT key, value FROM responses WHERE key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        return {key: self._read(key, text) for key, text in rows}

    def _read(self, key: str, text: Any) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except (TypeError, ValueError):
            value = None
        if not isinstance(value, dict) or not isinstance(value.get("text"), str) or not isinstance(value.get("usage", {}), dict):
            raise HarnessError(f"{self.path}: the response cache holds an entry that is not a stored answer (key {key[:12]}...); "
                               "the file was damaged or written by another program - delete it (its answers are asked again), "
                               "or pass another --cache FILE or --no-cache.")
        return value

    def put_many(self, items: Sequence[tuple[str, dict[str, Any]]], model: str | None = None) -> None:
        """Store answers (`model`: their `model_label`): committed at once, or inside `grouped()` buffered
        until the next `flush()` (or COMMIT_SECONDS after the last commit)."""
        now = time.time()
        with self._lock:
            for k, v in items:
                self._pending[k] = (json.dumps(v, ensure_ascii=False), now, model)
            if not self._grouping or time.monotonic() - self._last_commit >= COMMIT_SECONDS:
                self._commit_pending()

    def flush(self) -> None:
        """Commit every buffered answer (one transaction): what the runner calls before it writes records."""
        with self._lock:
            self._commit_pending()

    def _commit_pending(self) -> None:  # (under self._lock)
        if self._pending:
            rows = [(k, value, created, model) for k, (value, created, model) in self._pending.items()]
            with self._guard("write"):
                try:
                    insert_rows(self._db, "responses", ("key", "value", "created", "model"), rows)
                    self._db.commit()
                except sqlite3.Error:
                    try:
                        self._db.rollback()
                    except sqlite3.Error:
                        pass
                    raise
            self._pending.clear()
        self._last_commit = time.monotonic()

    @contextmanager
    def grouped(self) -> Iterator["ResponseCache"]:
        """Answers stored inside are committed by `flush()` (or every COMMIT_SECONDS), not one by one; all of
        them on leaving. The consumer must flush before it counts an answer (writes a record of it)."""
        with self._lock:
            self._grouping += 1
        try:
            yield self
        finally:
            with self._lock:
                self._grouping -= 1
            self.flush()

    def __len__(self) -> int:
        self.flush()
        with self._lock, self._guard("read"):
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                try:
                    self._commit_pending()
                finally:
                    self._db.close()
                    self._db = None


@contextmanager
def group_commits(models: Iterable["CachedModel"]) -> Iterator[Callable[[], None]]:
    """The caches of `models` commit in groups inside; yields the function that commits what they hold
    (call it before writing the records that count those answers)."""
    caches = list({id(m.cache): m.cache for m in models if m.cache is not None}.values())
    with ExitStack() as stack:
        for cache in caches:
            stack.enter_context(cache.grouped())

        def flush() -> None:
            for cache in caches:
                cache.flush()

        yield flush


class CachedModel(StreamingChatModel):
    """Wraps an adapter: answers what the cache holds, asks the adapter for the rest, stores each answer
    as it arrives (committed at once, or with its group: `ResponseCache.grouped`)."""

    def __init__(self, inner: ChatModel, cache: ResponseCache | None):
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self.batch_size = inner.batch_size
        self.hits = 0
        self.calls = 0  # requests actually sent to the adapter

    def cache_identity(self) -> dict[str, Any]:
        return self.inner.cache_identity()

    def adapters(self) -> tuple[str, ...]:
        return self.inner.adapters()

    def grader_for(self, grader):
        return self.inner.grader_for(grader)

    def facts(self) -> dict[str, Any]:
        return self.inner.facts()

    def check_adapters(self, requests: Sequence[ChatRequest]) -> None:
        """A request naming an adapter the model does not have is refused before anything is asked."""
        named = {r.adapter for r in requests if r.adapter is not None}
        if not named:
            return
        have = set(self.inner.adapters())
        unknown = sorted(named - have)
        if unknown:
            offer = f"it has {', '.join(sorted(have))}" if have else "it serves no named adapters (only hf and vllm load several)"
            raise HarnessError(f"model '{self.name}' has no adapter '{unknown[0]}' that a request asked for; {offer}.")

    def stream(self, requests: Sequence[ChatRequest]) -> Iterator[tuple[int, ModelOutput]]:
        """Cached answers first, then the adapter's as they finish, each stored the moment it arrives."""
        self.check_adapters(requests)
        if self.cache is None:
            for position, output in self.inner.stream(requests):
                self.calls += 1
                yield position, output
            return
        identity = self.inner.cache_identity()
        label = model_label(self.name, identity)
        keys = [[cache_key(self.name, identity, r, i) for i in range(r.generation.n)] for r in requests]
        stored = self.cache.get_many([k for request_keys in keys for k in request_keys])  # one query per 500 keys
        found = [[stored.get(k) for k in request_keys] for request_keys in keys]
        missing = [i for i, hits in enumerate(found) if any(h is None for h in hits)]
        for i, hits in enumerate(found):
            if all(h is not None for h in hits):
                self.hits += 1
                yield i, _output(hits)
        if not missing:
            return
        # a request with some of its n choices cached asks the adapter for just the others
        asks = []
        for i in missing:
            lacking = sum(h is None for h in found[i])
            update: dict[str, Any] = {"n": lacking}
            first_missing = next(j for j, h in enumerate(found[i]) if h is None)
            if requests[i].generation.seed is not None and first_missing > 0:
                # choice j is sampled with seed + j (as adapters do for n > 1 by separate requests), so the
                # new choices do not repeat the cached ones
                update["seed"] = requests[i].generation.seed + first_missing
            asks.append(requests[i].model_copy(update={"generation": requests[i].generation.model_copy(update=update)}))
        for ask_position, out in self.inner.stream(asks):
            i = missing[ask_position]
            self.calls += 1
            choices = iter(out.choices)
            to_store = []
            for index, hit in enumerate(found[i]):
                if hit is None:
                    found[i][index] = {"text": next(choices), "usage": {} if to_store else out.usage}
                    to_store.append((keys[i][index], found[i][index]))
            self.cache.put_many(to_store, model=label)
            yield i, _output(found[i])

    def close(self) -> None:
        self.inner.close()


def _output(entries: list[dict[str, Any]]) -> ModelOutput:
    return ModelOutput(choices=[e["text"] for e in entries], usage=next((e["usage"] for e in entries if e.get("usage")), {}))
