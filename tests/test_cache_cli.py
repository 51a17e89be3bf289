"""`harness cache stats | prune | clear` against cache files filled here, an old-format file and a locked one."""
import sqlite3
import time

import pytest
from click.testing import CliRunner

from harness import cache as response_cache
from harness import cache_cli
from harness.cache import CachedModel, ResponseCache, cache_key
from harness.cli import main
from harness.contract import ChatRequest, GenerationConfig, Message
from harness.models.scripted import ScriptedModel

DAY = 86400


def request(text):
    return ChatRequest(messages=(Message(role="user", content=text),), generation=GenerationConfig())


def fill(path, now):
    """responses: 3 of openai:gpt-4o (one 10 days old), 2 of openai:gpt-4o-mini, 1 of retrieval (40 days old);
    scores: 2 (one 10 days old)."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL, model TEXT)")
    db.execute("CREATE TABLE scores (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL, metric TEXT)")
    db.execute("CREATE TABLE notes (name TEXT)")  # not a cache table: never touched
    db.execute("INSERT INTO notes VALUES ('keep')")
    rows = [("a", now - 10 * DAY, "openai:gpt-4o"), ("b", now - 1, "openai:gpt-4o"), ("c", now, "openai:gpt-4o"),
            ("d", now - 2 * DAY, "openai:gpt-4o-mini"), ("e", now - 3, "openai:gpt-4o-mini"), ("f", now - 40 * DAY, "retrieval")]
    db.executemany("INSERT INTO responses VALUES (?, '{\"text\": \"x\", \"usage\": {}}', ?, ?)", rows)
    db.executemany("INSERT INTO scores VALUES (?, '{\"score\": 0.5}', ?, 'meteor')", [("s1", now - 10 * DAY), ("s2", now)])
    db.commit()
    db.close()


def invoke(*args):
    result = CliRunner().invoke(main, ["cache", *args])
    return result.exit_code, result.output


def counts(path, table):
    db = sqlite3.connect(path)
    try:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        db.close()


def test_stats_counts_every_cache_table_and_each_model(tmp_path):
    path = tmp_path / "c.sqlite"
    now = time.time()
    fill(path, now)
    found = {t.table: t for t in cache_cli.stats(path)}
    assert set(found) == {"responses", "scores"}  # `notes` has no (key, value, created)
    responses = found["responses"]
    assert (responses.entries, responses.oldest, responses.newest) == (6, now - 40 * DAY, now)
    assert responses.by == "model"
    assert [(g.name, g.entries, g.oldest, g.newest) for g in responses.groups] == [
        ("openai:gpt-4o", 3, now - 10 * DAY, now), ("openai:gpt-4o-mini", 2, now - 2 * DAY, now - 3), ("retrieval", 1, now - 40 * DAY, now - 40 * DAY)]
    assert found["scores"].by == "metric" and [(g.name, g.entries) for g in found["scores"].groups] == [("meteor", 2)]
    code, out = invoke("stats", "--cache", str(path))
    assert code == 0, out
    assert "table responses: 6 entries" in out and "table scores: 2 entries" in out
    assert "openai:gpt-4o-mini" in out and "never API keys" in out


def test_stats_uses_the_runs_default_path(tmp_path, monkeypatch):
    monkeypatch.setenv("ESC_HARNESS_CACHE", str(tmp_path / "env.sqlite"))
    fill(tmp_path / "env.sqlite", time.time())
    code, out = invoke("stats")
    assert code == 0 and str(tmp_path / "env.sqlite") in out and "6 entries" in out


def test_prune_removes_what_is_older_than_days(tmp_path):
    path = tmp_path / "c.sqlite"
    fill(path, time.time())
    code, out = invoke("prune", "--older-than", "5", "--cache", str(path))
    assert code == 0, out
    assert "removed 3 entries older than 5 days (responses 2, scores 1)" in out  # a (10 d), f (40 d); s1 (10 d)
    assert counts(path, "responses") == 4 and counts(path, "scores") == 1 and counts(path, "notes") == 1
    code, out = invoke("prune", "--older-than", "-1", "--cache", str(path))
    assert code != 0 and "--older-than" in out and "Traceback" not in out


def test_prune_deletes_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_cli, "DELETE_CHUNK", 2)
    path = tmp_path / "c.sqlite"
    fill(path, time.time())
    assert cache_cli.prune(path, 0) == {"responses": 6, "scores": 2}


def test_clear_model_leaves_other_models(tmp_path):
    path = tmp_path / "c.sqlite"
    fill(path, time.time())
    code, out = invoke("clear", "--model", "openai:gpt-4o", "--cache", str(path))
    assert code == 0 and "removed 3 responses of model openai:gpt-4o" in out, out
    db = sqlite3.connect(path)
    assert sorted(r[0] for r in db.execute("SELECT key FROM responses")) == ["d", "e", "f"]
    db.close()
    assert counts(path, "scores") == 2  # --model applies to responses only
    assert cache_cli.clear(path, "openai") == ({"responses": 2}, 0)  # an adapter name: all of its models
    assert cache_cli.clear(path, "retr%") == ({"responses": 0}, 0)  # no wildcard
    code, out = invoke("clear", "--cache", str(path))
    assert code == 0 and "removed 3 entries (responses 1, scores 2)" in out, out
    assert counts(path, "notes") == 1


def test_old_format_file_is_migrated_in_place_and_keeps_its_hits(tmp_path):
    path = tmp_path / "old.sqlite"
    inner = ScriptedModel(outputs=["first answer"])
    key = cache_key(inner.name, inner.cache_identity(), request("hi"), 0)
    db = sqlite3.connect(path)  # the schema of CACHE_FORMAT 1 before the model column
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)")
    db.execute("INSERT INTO responses VALUES (?, '{\"text\": \"old answer\", \"usage\": {}}', ?)", (key, time.time()))
    db.commit()
    db.close()
    # commands read an old file as it is: its entries have no model
    assert cache_cli.clear(path, "scripted") == ({"responses": 0}, 1)
    model = CachedModel(inner, ResponseCache(path))
    assert model.generate([request("hi")])[0].text == "old answer" and (model.hits, model.calls) == (1, 0)
    model.generate([request("new")])
    model.cache.close()
    db = sqlite3.connect(path)
    assert [r[1] for r in db.execute("PRAGMA table_info(responses)")] == ["key", "value", "created", "model"]
    assert sorted(db.execute("SELECT model FROM responses"), key=str) == [("scripted",), (None,)]
    db.close()
    code, out = invoke("clear", "--model", "scripted", "--cache", str(path))
    assert "removed 1 responses of model scripted" in out and "1 responses were stored before" in out, out
    again = CachedModel(ScriptedModel(outputs=["first answer"]), ResponseCache(path))  # a migrated file opens as it is
    assert again.generate([request("hi")])[0].text == "old answer"
    again.cache.close()


def test_commands_on_a_locked_cache_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(response_cache, "BUSY_SECONDS", 0.2)
    path = tmp_path / "c.sqlite"
    fill(path, time.time())
    ResponseCache(path).close()  # WAL, as every cache the harness opened
    holder = sqlite3.connect(path)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    holder.execute("INSERT INTO responses VALUES ('z', '{}', 0, 'm')")
    try:
        code, out = invoke("stats", "--cache", str(path))
        assert code == 0 and "6 entries" in out  # readers go on beside a writer (WAL)
        for args in (("prune", "--older-than", "1"), ("clear",), ("clear", "--model", "retrieval")):
            code, out = invoke(*args, "--cache", str(path))
            assert code != 0 and "Traceback" not in out, out
            assert out.strip().count("\n") == 0 and "locked by another process" in out and str(path) in out, out
    finally:
        holder.rollback()
        holder.close()


def test_not_a_cache_and_no_cache(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    code, out = invoke("stats", "--cache", str(bad))
    assert code != 0 and "not a usable cache" in out and out.strip().count("\n") == 0, out
    code, out = invoke("clear", "--cache", str(tmp_path / "none.sqlite"))
    assert code == 0 and "removed 0 entries" in out
    assert not (tmp_path / "none.sqlite").exists()  # the commands never create a cache
    code, out = invoke("stats", "--cache", str(tmp_path))
    assert code != 0 and "a folder" in out
