"""The `vllm` adapter without vLLM: the pure request building, and VLLMModel driving a fake `vllm` module
that records what the engine is given and answers like vLLM's RequestOutput."""
import base64
import dataclasses
import json
import sys
import types
from pathlib import Path

import pytest

from harness.contract import ChatRequest, GenerationConfig, Message, ModelContext
from harness.errors import HarnessError
from harness.models.vllm_engine import VLLMModel, build_conversation, build_request, lora_rank, sampling_kwargs

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


# ---------------------------------------------------------------------- a fake vllm


@dataclasses.dataclass
class Completion:  # vllm.outputs.CompletionOutput
    index: int
    text: str
    token_ids: list


@dataclasses.dataclass
class RequestOutput:  # vllm.outputs.RequestOutput
    prompt_token_ids: list
    outputs: list


class SamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def __eq__(self, other):
        return isinstance(other, SamplingParams) and other.kwargs == self.kwargs


class LoRARequest:
    def __init__(self, lora_name, lora_int_id, lora_path):
        self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path


class LLM:
    instances: list = []
    refuse: str | None = None  # an error the constructor raises

    def __init__(self, **kwargs):
        if LLM.refuse:
            raise ValueError(LLM.refuse)
        self.kwargs = kwargs
        self.calls = []
        LLM.instances.append(self)

    def chat(self, messages, sampling_params=None, use_tqdm=True, lora_request=None, **kwargs):
        self.calls.append({"messages": messages, "sampling_params": sampling_params, "lora_request": lora_request, **kwargs})
        results = []
        for i, conversation in enumerate(messages):
            params = sampling_params[i] if isinstance(sampling_params, list) else sampling_params
            last = conversation[-1]["content"]
            last = last if isinstance(last, str) else last[-1]["text"]
            completions = [Completion(j, f"reply {j} to {last}", list(range(3 + j))) for j in range(params.kwargs["n"])]
            results.append(RequestOutput(prompt_token_ids=list(range(10 + len(last))), outputs=completions[::-1]))  # any order
        return results


@dataclasses.dataclass
class EngineArgs:
    model: str = ""
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.__version__ = "0.0.fake"
    module.LLM, module.SamplingParams, module.EngineArgs = LLM, SamplingParams, EngineArgs
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = LoRARequest
    lora.request = request
    module.lora = lora
    for name, mod in (("vllm", module), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(LLM, "instances", [])
    monkeypatch.setattr(LLM, "refuse", None)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return module


@pytest.fixture
def model_dir(tmp_path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "README.md").write_text("not part of the fingerprint")
    return folder


@pytest.fixture
def adapter_dir(tmp_path) -> Path:
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": 4, "lora_alpha": 16, "target_modules": ["q_proj"]}))
    (folder / "adapter_model.safetensors").write_bytes(b"lora")
    return folder


def ask(text, images=(), adapter=None, **generation):
    return ChatRequest(messages=(Message(role="system", content="Be kind."), Message(role="user", content=text, images=images)),
                       generation=GenerationConfig(**generation), adapter=adapter)


# ---------------------------------------------------------------------- pure request building


def test_conversation_structure_with_images(tmp_path):
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "a.png").write_bytes(PNG)
    (tmp_path / "b.jpg").write_bytes(b"jpeg bytes")
    request = ChatRequest(messages=(
        Message(role="system", content="You are a counsellor."),
        Message(role="user", content="Look at me.", images=("frames/a.png", str(tmp_path / "b.jpg"))),
        Message(role="assistant", content="I see you."),
        Message(role="user", content="And now?"),
    ))
    conversation = build_conversation(request, data_dir=tmp_path)
    assert [m["role"] for m in conversation] == ["system", "user", "assistant", "user"]
    assert conversation[0]["content"] == "You are a counsellor." and conversation[3]["content"] == "And now?"
    parts = conversation[1]["content"]
    assert [p["type"] for p in parts] == ["image_url", "image_url", "text"] and parts[2]["text"] == "Look at me."
    png_url, jpg_url = parts[0]["image_url"]["url"], parts[1]["image_url"]["url"]
    assert png_url.startswith("data:image/png;base64,") and jpg_url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(png_url.split(",", 1)[1]) == PNG and base64.b64decode(jpg_url.split(",", 1)[1]) == b"jpeg bytes"
    [image_only] = build_conversation(ChatRequest(messages=(Message(role="user", content="", images=("frames/a.png",)),)), tmp_path)
    assert [p["type"] for p in image_only["content"]] == ["image_url"]  # no empty text part
    with pytest.raises(HarnessError, match="not found"):
        build_conversation(ask("x", images=("frames/missing.png",)), data_dir=tmp_path)


def test_sampling_kwargs():
    assert sampling_kwargs(GenerationConfig()) == {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 256}
    greedy = sampling_kwargs(GenerationConfig(n=3, seed=4, top_p=0.5, stop=("\n\n",)))
    assert greedy == {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 256, "stop": ["\n\n"]}
    sampled = sampling_kwargs(GenerationConfig(temperature=0.7, top_p=0.9, max_tokens=64, n=3, seed=5, stop=("###", "User:")))
    assert sampled == {"n": 3, "temperature": 0.7, "top_p": 0.9, "max_tokens": 64, "seed": 5, "stop": ["###", "User:"]}
    assert "seed" not in sampling_kwargs(GenerationConfig(temperature=1.0))


def test_build_request_applies_the_model_arg_overrides():
    conversation, kwargs = build_request(ask("hello", max_tokens=100, temperature=0.5, n=2), overrides={"max_tokens": 8, "seed": 3})
    assert conversation == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hello"}]
    assert kwargs == {"n": 2, "temperature": 0.5, "top_p": 1.0, "max_tokens": 8, "seed": 3}


def test_lora_rank_rounds_up_to_what_vllm_accepts(adapter_dir):
    assert lora_rank(adapter_dir) == 8
    (adapter_dir / "adapter_config.json").write_text(json.dumps({"r": 16, "rank_pattern": {"q_proj": 24}}))
    assert lora_rank(adapter_dir) == 32


# ---------------------------------------------------------------------- the adapter on the fake engine


def test_without_vllm_it_says_how_to_install(monkeypatch, model_dir):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    with pytest.raises(HarnessError, match=r"vLLM is not installed.*pip install '\.\[vllm\]' on a GPU machine"):
        VLLMModel(None, model=str(model_dir))


def test_engine_arguments_and_one_batched_chat_call(fake_vllm, model_dir, tmp_path):
    (tmp_path / "face.png").write_bytes(PNG)
    context = ModelContext(task=None, split="test", data_dir=tmp_path, seed=0)
    model = VLLMModel(context, model=str(model_dir), tensor_parallel_size="2", data_parallel_size=2, dtype="bf16",
                      max_model_len=4096, gpu_memory_utilization=0.8, max_images=4, enforce_eager="true")
    [llm] = LLM.instances
    assert llm.kwargs == {"model": str(model_dir), "tensor_parallel_size": 2, "data_parallel_size": 2, "dtype": "bfloat16",
                          "gpu_memory_utilization": 0.8, "trust_remote_code": False, "max_model_len": 4096,
                          "enforce_eager": True, "limit_mm_per_prompt": {"image": 4}}
    import os
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    requests = [ask("first", max_tokens=16), ask("second", images=("face.png",), max_tokens=16), ask("third", max_tokens=16)]
    outputs = model.generate(requests)
    [call] = llm.calls  # all requests in one engine call; vLLM schedules them
    assert len(call["messages"]) == 3 and call["lora_request"] is None
    assert call["sampling_params"] == SamplingParams(n=1, temperature=0.0, top_p=1.0, max_tokens=16)
    assert call["messages"][1][1]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert [o.choices for o in outputs] == [["reply 0 to first"], ["reply 0 to second"], ["reply 0 to third"]]
    assert outputs[0].usage == {"prompt_tokens": 15, "completion_tokens": 3, "total_tokens": 18}
    identity = model.cache_identity()
    assert identity["model"] == str(model_dir) and identity["dtype"] == "bfloat16" and len(identity["weights"]) == 64
    assert "tensor_parallel_size" not in identity and "adapter" not in identity
    model.close()
    assert model.llm is None


def test_n_choices_sampled_and_greedy(fake_vllm, model_dir):
    model = VLLMModel(None, model=str(model_dir))
    sampled, greedy = model.generate([ask("a", temperature=0.8, top_p=0.95, n=3, seed=11), ask("b", n=3)])
    [call] = LLM.instances[0].calls
    assert call["sampling_params"] == [SamplingParams(n=3, temperature=0.8, top_p=0.95, max_tokens=256, seed=11),
                                       SamplingParams(n=1, temperature=0.0, top_p=1.0, max_tokens=256)]
    assert sampled.choices == ["reply 0 to a", "reply 1 to a", "reply 2 to a"]  # in index order
    assert sampled.usage["completion_tokens"] == 3 + 4 + 5
    assert greedy.choices == ["reply 0 to b"] * 3 and greedy.usage["completion_tokens"] == 3 * 3


def test_lora_adapter(fake_vllm, model_dir, adapter_dir):
    plain = VLLMModel(None, model=str(model_dir))
    adapted = VLLMModel(None, model=str(model_dir), adapter=str(adapter_dir))
    llm = LLM.instances[1]
    assert (llm.kwargs["enable_lora"], llm.kwargs["max_loras"], llm.kwargs["max_lora_rank"]) == (True, 1, 8)
    adapted.generate([ask("hi")])
    request = llm.calls[0]["lora_request"]
    assert (request.lora_name, request.lora_int_id, request.lora_path) == ("adapter", 1, str(adapter_dir))
    assert adapted.cache_identity()["adapter"] == str(adapter_dir) and len(adapted.cache_identity()["adapter_weights"]) == 64
    assert adapted.cache_identity()["weights"] == plain.cache_identity()["weights"]
    assert adapted.cache_identity() != plain.cache_identity()
    with pytest.raises(HarnessError, match="not a LoRA adapter folder"):
        VLLMModel(None, model=str(model_dir), adapter=str(model_dir))


def make_adapter(folder: Path, rank: int, content: bytes) -> Path:
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "lora_alpha": 16, "target_modules": ["q_proj"]}))
    (folder / "adapter_model.safetensors").write_bytes(content)
    return folder


def test_named_adapters_per_request(fake_vllm, model_dir, tmp_path):
    a, b = make_adapter(tmp_path / "a", 4, b"lora a"), make_adapter(tmp_path / "b", 16, b"lora b")
    plain = VLLMModel(None, model=str(model_dir))
    model = VLLMModel(None, model=str(model_dir), adapters=f"b:{b};a:{a}")  # the command line's form
    llm = LLM.instances[1]
    assert (llm.kwargs["enable_lora"], llm.kwargs["max_loras"], llm.kwargs["max_lora_rank"]) == (True, 2, 16)
    assert model.adapters() == ("a", "b") and plain.adapters() == ()
    outputs = model.generate([ask("one", adapter="a"), ask("two", adapter="b"), ask("three"), ask("four", adapter="a")])
    assert [o.text for o in outputs] == ["reply 0 to one", "reply 0 to two", "reply 0 to three", "reply 0 to four"]
    # LLM.chat takes one LoRARequest: one call per adapter, ids 1, 2 in name order, the base model without one
    calls = [([m[-1]["content"] for m in c["messages"]], c["lora_request"]) for c in llm.calls]
    assert [texts for texts, _ in calls] == [["one", "four"], ["two"], ["three"]]
    assert [(r.lora_name, r.lora_int_id, r.lora_path) for _, r in calls[:2]] == [("a", 1, str(a)), ("b", 2, str(b))]
    assert calls[2][1] is None
    identity = model.cache_identity()
    assert set(identity["adapters"]) == {"a", "b"} and all(len(v) == 64 for v in identity["adapters"].values())
    assert identity["adapters"]["a"] != identity["adapters"]["b"]
    assert {k: v for k, v in identity.items() if k != "adapters"} == plain.cache_identity() and "adapters" not in plain.cache_identity()
    same = VLLMModel(None, model=str(model_dir), adapters={"a": str(a), "b": str(b)}, max_lora_rank=64, max_loras=1)
    assert same.cache_identity() == identity  # the engine's LoRA settings never change the answers
    assert (LLM.instances[2].kwargs["max_lora_rank"], LLM.instances[2].kwargs["max_loras"]) == (64, 1)
    with pytest.raises(HarnessError, match="adapter 'c'"):
        model.generate([ask("x", adapter="c")])
    with pytest.raises(HarnessError, match="max_lora_rank=8 must be one of .* at least the adapters' rank \\(16\\)"):
        VLLMModel(None, model=str(model_dir), adapters={"a": str(a), "b": str(b)}, max_lora_rank=8)


def test_adapter_beside_named_adapters_and_a_trained_checkpoint(fake_vllm, model_dir, adapter_dir, tmp_path):
    from harness.contract import TrainRecord

    b = make_adapter(tmp_path / "b", 8, b"lora b")
    model = VLLMModel(None, model=str(model_dir), adapter=str(adapter_dir), adapters={"b": str(b)})
    model.generate([ask("plain"), ask("named", adapter="b")])
    calls = LLM.instances[0].calls
    assert [(c["lora_request"].lora_name, c["lora_request"].lora_int_id) for c in calls] == [("adapter", 2), ("b", 1)]
    # a folder with train.json (peft) is its base model with itself as adapter=
    checkpoint = make_adapter(tmp_path / "checkpoint", 4, b"trained lora")
    record = TrainRecord(recipe="fires-sft", train_id="t1", config={}, weights="peft", base_model={"model": "../model"},
                         started_at="2026-01-01T00:00:00Z", status="finished")
    (checkpoint / "train.json").write_text(record.model_dump_json())
    trained = VLLMModel(None, model=str(checkpoint))
    llm = LLM.instances[1]
    assert llm.kwargs["model"] == str(model_dir) and llm.kwargs["enable_lora"] is True
    trained.generate([ask("hi")])
    assert llm.calls[0]["lora_request"].lora_path == str(checkpoint)
    identity = trained.cache_identity()
    assert (identity["train_id"], identity["recipe"], identity["adapter"]) == ("t1", "fires-sft", str(checkpoint))
    assert len(identity["adapter_weights"]) == 64 and identity["weights"] == model.cache_identity()["weights"]
    (checkpoint / "train.json").write_text(record.model_copy(update={"status": "failed", "error": "CUDA out of memory\nmore"}).model_dump_json())
    with pytest.raises(HarnessError, match=r"training did not finish; its status is 'failed' \(CUDA out of memory\)"):
        VLLMModel(None, model=str(checkpoint))
    assert len(LLM.instances) == 2  # refused before the engine starts


def test_model_arg_overrides_and_batch_size(fake_vllm, model_dir):
    model = VLLMModel(None, model=str(model_dir), max_tokens=5, temperature=0.3, seed=2, stop="###", batch_size=2)
    outputs = list(model.stream([ask(str(i)) for i in range(5)]))
    llm = LLM.instances[0]
    assert [len(c["messages"]) for c in llm.calls] == [2, 2, 1]
    assert llm.calls[0]["sampling_params"] == SamplingParams(n=1, temperature=0.3, top_p=1.0, max_tokens=5, seed=2, stop=["###"])
    assert [position for position, _ in outputs] == [0, 1, 2, 3, 4]
    assert model.cache_identity()["overrides"] == {"max_tokens": 5, "temperature": 0.3, "seed": 2, "stop": ("###",)}


def test_data_parallel_needs_a_vllm_that_runs_it(fake_vllm, model_dir, monkeypatch):
    monkeypatch.setattr(fake_vllm, "EngineArgs", type("EngineArgs", (), {}))  # an old vLLM without the field
    with pytest.raises(HarnessError, match="has no data_parallel_size"):
        VLLMModel(None, model=str(model_dir), data_parallel_size=2)
    monkeypatch.setattr(fake_vllm, "EngineArgs", EngineArgs)
    monkeypatch.setattr(LLM, "refuse", "LLM(data_parallel_size=2) is not supported for single-process usage and may hang.")
    with pytest.raises(HarnessError, match="refuses data_parallel_size=2 in one process"):
        VLLMModel(None, model=str(model_dir), data_parallel_size=2)
    monkeypatch.setattr(LLM, "refuse", "CUDA out of memory")
    with pytest.raises(HarnessError, match="the engine did not start.*CUDA out of memory"):
        VLLMModel(None, model=str(model_dir))


def test_bad_arguments_are_one_line_errors(fake_vllm, model_dir, tmp_path):
    with pytest.raises(HarnessError, match="neither a local folder"):
        VLLMModel(None, model=str(tmp_path / "absent"))
    with pytest.raises(HarnessError, match="tensor_parallel_size must be a positive"):
        VLLMModel(None, model=str(model_dir), tensor_parallel_size=0)
    with pytest.raises(HarnessError, match="dtype"):
        VLLMModel(None, model=str(model_dir), dtype="int4")
    with pytest.raises(HarnessError, match="give the model"):
        VLLMModel(None)
    assert LLM.instances == []  # nothing started


def test_a_run_with_the_vllm_model(fake_vllm, model_dir, tmp_path, data_root):
    from harness.runner import RunConfig, run

    config = RunConfig(task="mesc", model="vllm", model_args={"model": str(model_dir), "max_tokens": 8}, limit=3,
                       metrics=["bleu-2"], output_dir=tmp_path / "runs", data_dir=data_root)
    result = run(config)
    header = json.loads((result.run_dir / "run.json").read_text())
    assert header["status"] == "finished" and header["model_identity"]["weights"]
    [llm] = LLM.instances
    assert len(llm.calls) == 1 and len(llm.calls[0]["messages"]) == 3
    records = [json.loads(line) for line in (result.run_dir / "samples.jsonl").read_text().splitlines()]
    assert all(r["output"].startswith("reply 0 to ") and r["usage"]["completion_tokens"] == 3 for r in records)
