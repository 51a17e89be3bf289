"""Response cache (SQLite): every model call of every role goes through it.

The key names everything that changes an answer - the adapter, its identity (model, base URL, sampling
args...), the messages, the generation settings and, for n > 1, which of the n samples - and nothing
that does not (timeouts, retries, concurrency, API keys). `n` itself is not in the key: choice i of a
request is the same cached sample whether 2 or 4 were asked for, so raising n reuses what exists.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from .contract import ChatModel, ChatRequest, ModelOutput

CACHE_FORMAT = 1


def cache_key(model_name: str, identity: dict[str, Any], request: ChatRequest, index: int) -> str:
    payload = {
        "format": CACHE_FORMAT,
        "model": model_name,
        "identity": identity,
        "messages": [m.model_dump() for m in request.messages],
        "generation": request.generation.model_dump(exclude={"n"}),
        "index": index,
    }
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)")
        self._db.commit()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_many(self, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        now = time.time()
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
                [(k, json.dumps(v, ensure_ascii=False), now) for k, v in items],
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedModel(ChatModel):
    """Wraps an adapter: answers what the cache holds, asks the adapter for the rest, stores it at once."""

    def __init__(self, inner: ChatModel, cache: ResponseCache | None):
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self.batch_size = inner.batch_size
        self.hits = 0
        self.calls = 0  # requests actually sent to the adapter

    def cache_identity(self) -> dict[str, Any]:
        return self.inner.cache_identity()

    def generate(self, requests: Sequence[ChatRequest]) -> list[ModelOutput]:
        if self.cache is None:
            self.calls += len(requests)
            return self.inner.generate(requests)
        identity = self.inner.cache_identity()
        keys = [[cache_key(self.name, identity, r, i) for i in range(r.generation.n)] for r in requests]
        outputs: list[ModelOutput | None] = []
        for request_keys in keys:
            found = [self.cache.get(k) for k in request_keys]
            if all(f is not None for f in found):
                outputs.append(ModelOutput(choices=[f["text"] for f in found], usage=found[0].get("usage", {})))
                self.hits += 1
            else:
                outputs.append(None)
        missing = [i for i, o in enumerate(outputs) if o is None]
        if missing:
            fresh = self.inner.generate([requests[i] for i in missing])
            self.calls += len(missing)
            to_store = []
            for i, out in zip(missing, fresh):
                outputs[i] = out
                for choice_index, (key, text) in enumerate(zip(keys[i], out.choices)):
                    to_store.append((key, {"text": text, "usage": out.usage if choice_index == 0 else {}}))
            self.cache.put_many(to_store)
        return outputs  # type: ignore[return-value]

    def close(self) -> None:
        self.inner.close()
