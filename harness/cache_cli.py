"""`harness cache stats | prune | clear`: look into and trim the cache file (responses, and any other table
of the file keyed the same way, such as the score cache's `scores`).

Every table with columns (key, value, created) is a cache table: stats, prune and clear cover it by name
without knowing what it holds; a `model` column (responses) or a `metric` column (scores) breaks stats down.
Safe beside a running harness: SQLite in WAL mode lets readers go on while these commands write, and rows are
deleted in small transactions (DELETE_CHUNK), so a run waiting for the write lock waits milliseconds, not
seconds. A file locked for longer than BUSY_SECONDS is one error line, never a traceback.
"""
from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from . import cache as response_cache
from .errors import HarnessError

DELETE_CHUNK = 2000  # rows per delete transaction: a concurrent run never waits long for the write lock
GROUPS = ("model", "metric")  # the column a table's entries are counted by, where it has one
KEY_HOLDS = ("sha256 of the adapter, the model's identity (model, base URL, sampling arguments), the messages "
             "(images by content), the generation settings except n, and the choice index; never API keys, "
             "timeouts, retries or concurrency")


@dataclass
class Group:
    name: str | None  # None: written before the column existed
    entries: int
    oldest: float | None
    newest: float | None


@dataclass
class TableStats:
    table: str
    entries: int
    oldest: float | None
    newest: float | None
    by: str | None = None  # the column of `groups`
    groups: list[Group] = field(default_factory=list)


def _guard(path: Path, doing: str):
    return response_cache.sqlite_errors(path, doing, what="the cache", advice="pass another --cache FILE",
                                        when_locked="try again when it is done writing", damaged="not a usable cache")


@contextmanager
def connect(path: Path, doing: str) -> Iterator[sqlite3.Connection | None]:
    """The existing file (never created here), or None when there is none."""
    if path.is_dir():
        raise HarnessError(f"{path}: a folder, not a cache file; pass --cache FILE.")
    if not path.exists():
        yield None
        return
    db = None
    with _guard(path, doing):
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=response_cache.BUSY_SECONDS)
    try:
        with _guard(path, doing):
            yield db
    finally:
        db.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def cache_tables(db: sqlite3.Connection) -> dict[str, set[str]]:
    """Table name -> its columns, for the tables holding (key, value, created)."""
    names = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    tables = {}
    for name in names:
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({_quote(name)})")}
        if {"key", "value", "created"} <= columns:
            tables[name] = columns
    return tables


def stats(path: Path) -> list[TableStats] | None:
    with connect(path, "read") as db:
        if db is None:
            return None
        found = []
        for table, columns in cache_tables(db).items():
            entries, oldest, newest = db.execute(f"SELECT COUNT(*), MIN(created), MAX(created) FROM {_quote(table)}").fetchone()
            row = TableStats(table, entries, oldest, newest)
            row.by = next((c for c in GROUPS if c in columns), None)
            if row.by is not None:
                row.groups = [Group(*g) for g in db.execute(
                    f"SELECT {row.by}, COUNT(*), MIN(created), MAX(created) FROM {_quote(table)} GROUP BY {row.by} ORDER BY {row.by}")]
            found.append(row)
        return found


def _delete(db: sqlite3.Connection, table: str, where: str, args: tuple) -> int:
    """Rows matching `where`, in transactions of DELETE_CHUNK rows."""
    removed = 0
    while True:
        cursor = db.execute(f"DELETE FROM {_quote(table)} WHERE key IN (SELECT key FROM {_quote(table)} WHERE {where} LIMIT {DELETE_CHUNK})", args)
        db.commit()
        removed += cursor.rowcount
        if cursor.rowcount < DELETE_CHUNK:
            return removed


def prune(path: Path, days: float) -> dict[str, int]:
    """Entries stored more than `days` days ago, removed; table -> how many."""
    if days < 0:
        raise HarnessError(f"--older-than must be a number of days (0 or more), got {days:g}.")
    cutoff = time.time() - days * 86400
    with connect(path, "prune") as db:
        if db is None:
            return {}
        return {table: _delete(db, table, "created < ?", (cutoff,)) for table in cache_tables(db)}


def clear(path: Path, model: str | None = None) -> tuple[dict[str, int], int]:
    """Every entry (model None), or the responses of `model` (a label `openai:gpt-4o` exactly, or an adapter
    name `openai`: all its models). Returns table -> removed, and how many responses have no model recorded."""
    with connect(path, "clear") as db:
        if db is None:
            return {}, 0
        tables = cache_tables(db)
        if model is None:
            return {table: _delete(db, table, "1", ()) for table in tables}, 0
        if "responses" not in tables:
            return {}, 0
        unlabelled = 0
        if "model" in tables["responses"]:
            removed = _delete(db, "responses", "model = ? OR model LIKE ? ESCAPE '\\'", (model, _like_prefix(model) + ":%"))
            unlabelled = db.execute("SELECT COUNT(*) FROM responses WHERE model IS NULL").fetchone()[0]
        else:  # a file no harness of this version has opened yet: no entry says its model
            removed = 0
            unlabelled = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        return {"responses": removed}, unlabelled


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --------------------------------------------------------------------------- printing


def _when(stamp: float | None) -> str:
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if stamp is not None else "-"


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def stats_text(path: Path, found: list[TableStats] | None) -> str:
    if found is None:
        return f"{path}: no cache yet (a run with the cache on makes it)."
    lines = [f"cache {path} ({_size(path) / 1e6:.2f} MB with its write-ahead log)",
             f"response key: {KEY_HOLDS}"]
    if not found:
        lines.append("no cache tables in it")
    for table in found:
        lines.append(f"table {table.table}: {table.entries} entries, oldest {_when(table.oldest)}, newest {_when(table.newest)}")
        if table.groups:
            width = max(len(g.name or "") for g in table.groups)
            width = max(width, len("(not recorded)"), len(table.by or ""))
            lines.append(f"  {table.by:<{width}}  {'entries':>8}  {'oldest':<20}  newest")
            for g in table.groups:
                name = g.name if g.name is not None else "(not recorded)"
                lines.append(f"  {name:<{width}}  {g.entries:>8}  {_when(g.oldest):<20}  {_when(g.newest)}")
    return "\n".join(lines)


def counts_text(removed: dict[str, int]) -> str:
    return ", ".join(f"{table} {n}" for table, n in removed.items()) or "no cache tables"


# --------------------------------------------------------------------------- the commands


def _commands():
    """The `harness cache` group (click imported here: the functions above serve without it)."""
    import click

    from . import options, paths

    where = click.option("--cache", "cache_path", type=options.PATH,
                         help="Cache file [default: $ESC_HARNESS_CACHE, else the per-user cache: what `harness run` uses].")

    @click.group("cache")
    def group() -> None:
        """Look into or trim the response cache (and the score cache in the same file); safe while a run uses it."""

    @group.command("stats")
    @where
    def stats_cmd(cache_path: Path | None) -> None:
        """The file, its size, entries per table and per model (or metric), oldest and newest, what the key holds."""
        path = paths.cache_path(cache_path)
        click.echo(stats_text(path, stats(path)))

    @group.command("prune")
    @where
    @click.option("--older-than", "days", type=float, required=True, help="Remove entries stored more than DAYS days ago.")
    def prune_cmd(cache_path: Path | None, days: float) -> None:
        """Remove entries older than DAYS days (every table of the cache)."""
        path = paths.cache_path(cache_path)
        removed = prune(path, days)
        click.echo(f"{path}: removed {sum(removed.values())} entries older than {days:g} days ({counts_text(removed)}).")

    @group.command("clear")
    @where
    @click.option("--model", help="Only the responses of this model: openai:gpt-4o, or an adapter name (openai) for all its models.")
    def clear_cmd(cache_path: Path | None, model: str | None) -> None:
        """Remove every entry, or with --model that model's responses (asks nothing: it is a cache)."""
        path = paths.cache_path(cache_path)
        removed, unlabelled = clear(path, model)
        what = f"responses of model {model}" if model else "entries"
        note = (f"; {unlabelled} responses were stored before the cache recorded models and are kept "
                "(`harness cache clear` removes everything)") if model and unlabelled else ""
        click.echo(f"{path}: removed {sum(removed.values())} {what} ({counts_text(removed)}){note}.")

    return group


cache_group = _commands()
