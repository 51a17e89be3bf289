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
