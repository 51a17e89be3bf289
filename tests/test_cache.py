import pytest

from harness.cache import CachedModel, ResponseCache, cache_key
from harness.contract import ChatRequest, GenerationConfig, Message
from harness.models.scripted import ScriptedModel


def request(text="hello", **generation):
    return ChatRequest(messages=(Message(role="system", content="be kind"), Message(role="user", content=text)),
                       generation=GenerationConfig(**generation))


def test_key_changes_with_everything_that_changes_the_answer():
    base = cache_key("m", {"model": "a"}, request(), 0)
    assert cache_key("m", {"model": "a"}, request(), 0) == base  # deterministic
    assert cache_key("other", {"model": "a"}, request(), 0) != base  # adapter
    assert cache_key("m", {"model": "b"}, request(), 0) != base  # model identity / args
    assert cache_key("m", {"model": "a"}, request("hello!"), 0) != base  # messages
    assert cache_key("m", {"model": "a"}, request(temperature=0.7), 0) != base  # generation settings
    assert cache_key("m", {"model": "a"}, request(max_tokens=10), 0) != base
    assert cache_key("m", {"model": "a"}, request(seed=1), 0) != base
    assert cache_key("m", {"model": "a"}, request(), 1) != base  # sample index for n > 1


def test_key_ignores_what_does_not_change_the_answer():
    # n is not in the key: choice i is the same cached sample whichever n asked for it
    assert cache_key("m", {}, request(n=4), 2) == cache_key("m", {}, request(n=3), 2)
    # identity dict order does not matter
    assert cache_key("m", {"a": 1, "b": 2}, request(), 0) == cache_key("m", {"b": 2, "a": 1}, request(), 0)


def test_cached_model_calls_the_adapter_only_for_misses(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    inner = ScriptedModel(outputs=["one", "two", "three"])
    model = CachedModel(inner, cache)
    assert [o.text for o in model.generate([request("a"), request("b")])] == ["one", "two"]
    assert (model.calls, model.hits) == (2, 0)
    # a new process with the same cache file: hits for a and b, one call for c
    again = CachedModel(ScriptedModel(outputs=["one", "two", "three"]), ResponseCache(tmp_path / "c.sqlite"))
    outputs = again.generate([request("a"), request("c"), request("b")])
    assert [o.text for o in outputs] == ["one", "one", "two"]  # the scripted double restarts its script
    assert (again.calls, again.hits) == (1, 2)


def test_n_samples_are_cached_per_index(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    first = CachedModel(ScriptedModel(outputs=["x", "y"]), cache)
    assert first.generate([request(n=2)])[0].choices == ["x", "y"]
    second = CachedModel(ScriptedModel(outputs=["x", "y"]), cache)  # same identity, fresh script position
    assert second.generate([request(n=2)])[0].choices == ["x", "y"]  # hit
    assert second.calls == 0
    result = second.generate([request(n=3)])[0].choices
    assert result == ["x", "y", "x"]  # indices 0-1 from the cache; only index 2 asked for (n=1: the script's first)
    assert second.inner.requests[-1].generation.n == 1
    # with a seed, the re-asked choice 2 is sampled with seed + 2, not the seed that made choice 0
    third = CachedModel(ScriptedModel(outputs=["a", "b", "c"]), cache)
    third.generate([request(n=2, seed=5)])
    third.generate([request(n=3, seed=5)])
    assert third.inner.requests[-1].generation.seed == 7 and third.inner.requests[-1].generation.n == 1
    assert second.calls == 1


def test_no_cache_always_calls(tmp_path):
    model = CachedModel(ScriptedModel(echo=True), None)
    model.generate([request("a")])
    model.generate([request("a")])
    assert model.calls == 2


def test_images_are_keyed_by_content_not_path(tmp_path):
    from harness.contract import Message

    image = tmp_path / "frame_00.png"
    image.write_bytes(b"first")

    def with_image(path):
        return ChatRequest(messages=(Message(role="user", content="look", images=(str(path),)),))

    before = cache_key("m", {}, with_image(image), 0)
    copy = tmp_path / "elsewhere.png"
    copy.write_bytes(b"first")
    assert cache_key("m", {}, with_image(copy), 0) == before  # same pixels, other path: same answer
    image.write_bytes(b"second frame")  # re-extracted in place
    assert cache_key("m", {}, with_image(image), 0) != before


# --------------------------------------------------------------------------- batched lookups, grouped commits


def committed(path):
    """What a fresh connection (another process, or this one after a kill) reads: key -> answer text."""
    import json
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return {k: json.loads(v)["text"] for k, v in db.execute("SELECT key, value FROM responses")}
    finally:
        db.close()


def test_lookups_are_one_query_for_many_requests(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    model = CachedModel(ScriptedModel(echo=True), cache)
    model.generate([request(str(i)) for i in range(5)])
    statements = []
    cache._db.set_trace_callback(statements.append)
    outputs = model.generate([request(str(i)) for i in range(7)])  # 5 hits, 2 misses
    assert [o.text for o in outputs] == [str(i) for i in range(7)] and (model.hits, model.calls) == (5, 7)
    assert sum(s.startswith("SELECT") for s in statements) == 1
    assert cache.get_many(["nope"]) == {} and cache.get("nope") is None


def test_each_answer_is_committed_at_once_outside_a_group(tmp_path):
    path = tmp_path / "c.sqlite"
    model = CachedModel(ScriptedModel(echo=True), ResponseCache(path))
    for position, output in model.stream([request("a"), request("b")]):
        assert output.text in committed(path).values()  # what a caller (dialogues, teachers) is handed is on disk


def test_grouped_commits_wait_for_flush(tmp_path, monkeypatch):
    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path)
    model = CachedModel(ScriptedModel(echo=True), cache)
    with cache.grouped():
        model.generate([request("a"), request("b")])
        assert committed(path) == {}  # buffered: not yet committed ...
        assert [o.text for o in model.generate([request("a")])] == ["a"] and model.calls == 2  # ... but answered from the buffer
        cache.flush()
        assert sorted(committed(path).values()) == ["a", "b"]
        monkeypatch.setattr("harness.cache.COMMIT_SECONDS", 0.0)  # a second since the last commit: committed at once
        model.generate([request("c")])
        assert sorted(committed(path).values()) == ["a", "b", "c"]
        monkeypatch.setattr("harness.cache.COMMIT_SECONDS", 3600.0)
        model.generate([request("d")])
    assert sorted(committed(path).values()) == ["a", "b", "c", "d"]  # leaving the group commits the rest


def test_a_group_is_stored_in_few_statements(tmp_path):
    """450 buffered answers go in as multi-row INSERTs of 200 rows (not one statement step per row: each step
    gives up the GIL), and each reads back whole."""
    path = tmp_path / "c.sqlite"
    cache = ResponseCache(path)
    model = CachedModel(ScriptedModel(echo=True), cache)
    statements = []
    cache._db.set_trace_callback(statements.append)
    with cache.grouped():
        model.generate([request(f"answer {i} \u00e9\U0001f642") for i in range(450)])
    inserts = [s for s in statements if s.startswith("INSERT")]
    assert len(inserts) == 3
    assert sorted(committed(path).values()) == sorted(f"answer {i} \u00e9\U0001f642" for i in range(450))


def test_model_is_stored_beside_each_key(tmp_path):
    import sqlite3

    from harness.cache import model_label

    assert model_label("openai", {"model": "gpt-4o", "base_url": "x"}) == "openai:gpt-4o" and model_label("retrieval", {}) == "retrieval"
    path = tmp_path / "c.sqlite"
    CachedModel(ScriptedModel(echo=True), ResponseCache(path)).generate([request("a")])
    db = sqlite3.connect(path)
    assert db.execute("SELECT model FROM responses").fetchall() == [("scripted",)]
    db.close()


def test_runner_commits_every_answer_before_its_record(tmp_path, data_root, monkeypatch):
    """At every write of samples.jsonl, each record the file then holds has its answer committed: a kill at
    any moment (here: the state right after each write, as a fresh connection sees it) loses nothing a record
    counts. A crash in the second write leaves the first batch's answers committed."""
    import json

    from harness import runner, store
    from harness.runner import RunConfig, run

    monkeypatch.setattr(runner, "SCORE_BATCH", 4)
    monkeypatch.setattr(runner, "FLUSH_SECONDS", 3600.0)
    monkeypatch.setattr("harness.cache.COMMIT_SECONDS", 3600.0)  # only the runner's flush commits
    path = tmp_path / "c.sqlite"
    real_write = store.SampleWriter.write
    checked = []

    def write(self, records):
        if len(checked) == 2:
            raise KeyboardInterrupt  # killed before the third batch reaches the file
        before = committed(path)
        real_write(self, records)
        on_file = [json.loads(l)["output"] for l in self.path.read_text().splitlines()]
        assert len(before) == len(on_file)  # the answers of this batch and the earlier ones, and no more
        assert sorted(before.values()) == sorted(on_file)
        checked.append(len(on_file))

    monkeypatch.setattr(store.SampleWriter, "write", write)
    config = RunConfig(task="mesc", model="scripted", model_args={"echo": True}, limit=10, metrics=["bleu-2"],
                       output_dir=tmp_path / "runs", data_dir=data_root, cache_path=path)
    with pytest.raises(KeyboardInterrupt):
        run(config, progress=False)
    assert checked == [4, 8]
    assert len(committed(path)) >= 8  # the interrupted batch's answers are flushed on the way out too
    monkeypatch.setattr(store.SampleWriter, "write", real_write)
    (run_dir,) = (tmp_path / "runs").iterdir()
    resumed = run(RunConfig(task="mesc", model="scripted", model_args={"echo": True}, output_dir=tmp_path / "runs",
                            data_dir=data_root, cache_path=path), resume=run_dir, progress=False)
    assert (resumed.model_calls, resumed.cache_hits) == (0, 2)  # nothing asked twice
