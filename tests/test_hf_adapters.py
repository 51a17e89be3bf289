"""Adapters per request and trained checkpoints (train.json) as models: the `hf` adapter on a tiny random
Llama with two random LoRA adapters built here, and the refusal of an adapter a model does not have
(through the response cache, as `harness run` asks). Offline, CPU."""
import json
import os
import shutil
from pathlib import Path

import pytest

from harness.cache import CachedModel, ResponseCache, cache_key
from harness.contract import ChatRequest, GenerationConfig, Message, TrainRecord
from harness.errors import HarnessError
from harness.models.scripted import ScriptedModel
from harness.models.weights import fingerprint, model_files, named_adapters
from harness.training import TRAIN_RECORD


def ask(text: str, adapter: str | None = None, **generation) -> ChatRequest:
    return ChatRequest(messages=(Message(role="system", content="Be kind."), Message(role="user", content=text)),
                       generation=GenerationConfig(**{"max_tokens": 8, **generation}), adapter=adapter)


def write_record(folder: Path, weights: str, base: str | None = None, status: str = "finished") -> TrainRecord:
    record = TrainRecord(recipe="fires-sft", train_id=f"t-{folder.name}", config={"lr": 1e-4}, weights=weights,
                         base_model={"model": base} if base else {}, started_at="2026-01-01T00:00:00Z", status=status,
                         finished_at="2026-01-01T01:00:00Z" if status == "finished" else None)
    (folder / TRAIN_RECORD).write_text(record.model_dump_json(indent=2), encoding="utf-8")
    return record


def test_a_model_without_named_adapters_refuses_a_request_naming_one(tmp_path):
    model = CachedModel(ScriptedModel(None, echo=True), ResponseCache(tmp_path / "responses.sqlite"))
    assert model.adapters() == ()
    with pytest.raises(HarnessError) as caught:
        list(model.stream([ask("hello"), ask("hello", adapter="x")]))
    message = str(caught.value)
    assert "'x'" in message and "\n" not in message and "no adapter" in message
    assert model.inner.requests == []  # refused before anything was asked
    [(_, output)] = list(model.stream([ask("hello")]))  # without an adapter it answers as before
    assert output.text == "hello"


# ---------------------------------------------------------------------- hf: a tiny model and two adapters

PROMPTS = ["hi", "I lost my job", "My mother is sick and I am scared.", "How are you coping with all of this?"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The tiny model of test_hf_model and two LoRA adapters with different random weights."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    import torch
    import transformers
    from test_hf_model import build_text_model

    root = tmp_path_factory.mktemp("adapters")
    base = build_text_model(root / "base")
    folders = {}
    for seed, name in ((1, "a"), (2, "b")):
        torch.manual_seed(seed)
        lora = peft.get_peft_model(transformers.AutoModelForCausalLM.from_pretrained(base),
                                   peft.LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        lora.save_pretrained(root / name)
        folders[name] = root / name
    return root, base, folders


def open_hf(model, **kwargs):
    from harness.models.hf import HFModel

    return HFModel(None, model=str(model), dtype="float32", device="cpu", batch_size=4, threads=1, **kwargs)


@pytest.fixture(scope="module")
def plain(built):
    model = open_hf(built[1])
    yield model
    model.close()


@pytest.fixture(scope="module")
def multi(built):
    _, base, folders = built
    model = open_hf(base, adapters={"b": str(folders["b"]), "a": str(folders["a"])})
    yield model
    model.close()


def texts(model, adapter, prompts=PROMPTS):
    return [o.text for o in model.generate([ask(p, adapter) for p in prompts])]


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_named_adapters_answer_per_request_in_a_mixed_batch(multi, plain):
    assert multi.adapters() == ("a", "b") and plain.adapters() == ()
    mixed = [ask(PROMPTS[0], "a"), ask(PROMPTS[1], "b"), ask(PROMPTS[2]), ask(PROMPTS[3], "a")]
    together = multi.generate(mixed)
    alone = [multi.generate([request])[0] for request in mixed]
    assert [o.choices for o in together] == [o.choices for o in alone]
    assert [o.usage for o in together] == [o.usage for o in alone]
    by = {name: texts(multi, name) for name in ("a", "b", None)}
    assert by["a"] != by["b"] and by["a"] != by[None] and by["b"] != by[None]  # each adapter changes the answers
    assert by[None] == texts(plain, None)  # no adapter: the base model itself
    with pytest.raises(HarnessError, match="adapter 'c'"):
        multi.generate([ask("hi", "c")])


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_named_adapters_in_the_identity_and_the_cache_key(multi, plain, built, tmp_path):
    _, _, folders = built
    identity, base = multi.cache_identity(), plain.cache_identity()
    assert set(base) == {"model", "weights", "dtype"}  # loaded without adapters: as before
    assert identity["adapters"] == {name: fingerprint(model_files(folders[name])) for name in ("a", "b")}
    assert {k: v for k, v in identity.items() if k != "adapters"} == base
    keys = {name: cache_key("hf", identity, ask("hi", name), 0) for name in ("a", "b", None)}
    assert len(set(keys.values())) == 3
    cached = CachedModel(multi, ResponseCache(tmp_path / "responses.sqlite"))
    with pytest.raises(HarnessError, match=r"has no adapter 'c'.*it has a, b"):
        list(cached.stream([ask("hi", "a"), ask("hi", "c")]))
    assert cached.calls == 0
    first = dict(cached.stream([ask("hi", "a"), ask("hi", "b")]))
    again = dict(cached.stream([ask("hi", "a"), ask("hi", "b")]))
    assert cached.calls == 2 and cached.hits == 2 and again == first


def test_the_adapters_arg_from_the_command_line(built):
    _, _, folders = built
    a, b = str(folders["a"]), str(folders["b"])
    expected = {"a": Path(a), "b": Path(b)}
    assert named_adapters(f"b:{b};a:{a}", "hf") == expected
    assert named_adapters(json.dumps({"a": a, "b": b}), "hf") == expected
    assert named_adapters({"b": b, "a": Path(a)}, "hf") == expected and list(named_adapters({"b": b, "a": a}, "hf")) == ["a", "b"]
    assert named_adapters(None, "hf") == {} and named_adapters("", "hf") == {}
    for bad, match in ((f"a={a}", "not name:folder"), (f"a:{a};a:{b}", "twice"), ("{not json", "not a valid JSON"),
                       (["a"], "must name"), ({"a": 1}, "must name"), (f"c:{folders['a'].parent / 'base'}", "not a LoRA adapter folder")):
        with pytest.raises(HarnessError, match=match):
            named_adapters(bad, "hf")


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_adapter_stays_on_beside_named_ones(built, multi):
    _, base, folders = built
    model = open_hf(base, adapter=str(folders["a"]), adapters={"b": str(folders["b"])})
    try:
        assert model.adapters() == ("b",)
        assert texts(model, None) == texts(multi, "a")  # adapter= answers the requests without a name
        assert texts(model, "b") == texts(multi, "b")
        identity = model.cache_identity()
        assert identity["adapter"] == str(folders["a"]) and set(identity["adapters"]) == {"b"}
    finally:
        model.close()


# ---------------------------------------------------------------------- hf: a folder with train.json is a model


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_a_peft_checkpoint_loads_its_base_model_and_itself(built, multi, tmp_path):
    root, base, folders = built
    checkpoint = root / "checkpoint-peft"
    if not checkpoint.exists():
        shutil.copytree(folders["a"], checkpoint)
    record = write_record(checkpoint, "peft", base=os.path.relpath(base, checkpoint))  # relative: read from the folder
    trained = open_hf(checkpoint)
    by_hand = open_hf(base, adapter=str(checkpoint))
    try:
        assert texts(trained, None) == texts(by_hand, None) == texts(multi, "a")
        identity = trained.cache_identity()
        assert identity["train_id"] == record.train_id and identity["recipe"] == "fires-sft"
        assert identity["adapter_weights"] == by_hand.cache_identity()["adapter_weights"] == fingerprint(model_files(folders["a"]))
        assert identity["weights"] == by_hand.cache_identity()["weights"]
        assert {k: v for k, v in identity.items() if k not in ("train_id", "recipe", "model")} == \
               {k: v for k, v in by_hand.cache_identity().items() if k != "model"}
    finally:
        trained.close()
        by_hand.close()
    # train.json is not part of the fingerprint: finishing again (new times) leaves the cached answers valid
    assert TRAIN_RECORD not in [f.name for f in model_files(checkpoint)]
    before = fingerprint(model_files(checkpoint))
    record.finished_at = "2026-02-02T00:00:00Z"
    (checkpoint / TRAIN_RECORD).write_text(record.model_dump_json(), encoding="utf-8")
    assert fingerprint(model_files(checkpoint)) == before


def test_an_unfinished_or_broken_checkpoint_is_refused_in_one_line(built, tmp_path):
    root, base, folders = built
    checkpoint = tmp_path / "checkpoint-running"
    shutil.copytree(folders["a"], checkpoint)
    write_record(checkpoint, "peft", base=str(base), status="running")
    with pytest.raises(HarnessError, match=r"training did not finish; its status is 'running'") as caught:
        open_hf(checkpoint)
    assert "\n" not in str(caught.value)
    (checkpoint / TRAIN_RECORD).write_text(json.dumps({"recipe": "fires-sft"}), encoding="utf-8")
    with pytest.raises(HarnessError, match=r"train.json: not a valid train.json \(train_id: Field required\)"):
        open_hf(checkpoint)
    write_record(checkpoint, "peft", base=str(tmp_path / "nowhere"))
    with pytest.raises(HarnessError, match="the base model .* named in .*train.json is neither a folder"):
        open_hf(checkpoint)
    write_record(checkpoint, "peft", base=str(base))
    with pytest.raises(HarnessError, match="drop adapter="):
        open_hf(checkpoint, adapter=str(folders["b"]))


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_a_full_weights_checkpoint_is_the_folder_itself(built, plain, tmp_path):
    _, base, _ = built
    checkpoint = tmp_path / "checkpoint-full"
    shutil.copytree(base, checkpoint)
    record = write_record(checkpoint, "full")
    model = open_hf(checkpoint)
    try:
        assert texts(model, None) == texts(plain, None)
        identity = model.cache_identity()
        assert identity["model"] == str(checkpoint) and identity["train_id"] == record.train_id and identity["recipe"] == "fires-sft"
        assert identity["weights"] == plain.cache_identity()["weights"]  # the same files, train.json left out
        assert "adapter" not in identity
    finally:
        model.close()
