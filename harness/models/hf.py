"""Hugging Face transformers in process: chat LLMs and vision-language models (Qwen2.5-VL and other
image-text-to-text models), with LoRA adapters: one always on, or several named ones chosen per request.

    --model-args model=PATH            a model folder, a .gguf file, or a hub id already in the local
                                       Hugging Face cache (nothing is ever downloaded)
                 gguf_file=NAME.gguf   a GGUF file inside the model folder (transformers dequantises it)
                 dtype=auto            auto | float32 | bfloat16 | float16 (part of the cache identity)
                 device=auto           auto | cpu | cuda | cuda:N
                 batch_size=8          prompts per forward batch (never changes the answers)
                 adapter=PATH          a LoRA adapter folder (peft), on for every request
                 adapters=a:PATH;b:PATH  named LoRA adapters (or a JSON object {"a": PATH, ...}); a request
                                       chooses one with ChatRequest.adapter, one without is answered by
                                       the base model (or by adapter= where given)
                 trust_remote_code=false
                 threads=              CPU threads for torch (default: torch's choice; 1 helps on a
                                       crowded machine, where spinning threads stall each other)
                 temperature= top_p= max_tokens= seed= stop=   replace the request's settings

A model folder holding train.json (written by `harness train`) is a trained checkpoint: peft weights load
its base model (train.json's base_model.model) with the folder as adapter=; full weights load the folder.

How answers are made, so that they are comparable and reproducible:
- The model's chat template is always applied (add_generation_prompt=True); a model without one is an
  error, never a silent concatenation of the messages.
- The request's GenerationConfig is the whole specification: the sampling defaults of the model's own
  generation_config.json (temperature, top_p, repetition_penalty...) are not applied, as with vLLM's
  offline engine given explicit SamplingParams. Only its end-of-sequence tokens are kept.
- temperature 0 is greedy decoding. Prompts are batched (grouped by adapter and settings, sorted by
  length, left-padded); the answers do not depend on the batch size or on which prompts share a batch.
- Sampling draws every choice from its own generator, seeded from (seed, choice index, prompt): choice i of
  a request is the same whatever n, the batch size or the batch's other prompts.
- Stop strings end a choice; its text is cut before the first of them. Only new tokens are decoded,
  special tokens skipped. usage counts prompt tokens (image tokens included) and generated tokens.
"""
from __future__ import annotations

import contextlib
import gc
import hashlib
import inspect
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..contract import ChatRequest, GenerationConfig, ModelContext, ModelOutput, StreamingChatModel
from ..errors import HarnessError, first_line
from .images import load_image, resolve_image
from .weights import LocalWeightsModel, as_bool, open_weights, parse_dtype, sampling_overrides

_INSTALL = "pip install '.[hf]'"
_ALWAYS_ON = "default"  # peft's name for the adapter= one


def _import_backend():
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise HarnessError(f"the hf adapter needs torch and transformers ({first_line(exc)}); install them with {_INSTALL}.") from None
    return torch, transformers


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """The text before the earliest stop string (the stop string itself is not part of the answer)."""
    positions = [text.find(s) for s in stops if s]
    positions = [p for p in positions if p >= 0]
    return text[: min(positions)] if positions else text


@dataclass
class _Prompt:
    position: int  # in the requests handed to stream()
    text: str  # the conversation rendered by the chat template
    images: list[Path]
    length: int  # for sorting: tokens (text models) or characters (vision-language models)
    generation: GenerationConfig  # the request's, with the model-arg overrides applied
    adapter: str | None = None  # the named adapter that answers (ChatRequest.adapter)
    seeds: list[int] = field(default_factory=list)  # one per sampled choice


class HFModel(LocalWeightsModel, StreamingChatModel):
    """transformers `generate` in this process (text and vision-language chat models)."""

    name = "hf"
    batch_size = 8

    def __init__(self, context: ModelContext | None = None, model: str | None = None, gguf_file: str | None = None,
                 dtype: str = "auto", device: str = "auto", batch_size: Any = 8, adapter: str | None = None, adapters: Any = None,
                 trust_remote_code: Any = False, threads: Any = None, temperature: Any = None, top_p: Any = None, max_tokens: Any = None,
                 seed: Any = None, stop: Any = None):
        self.data_dir = context.data_dir if context is not None else None
        self.overrides = sampling_overrides("hf", temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed, stop=stop)
        try:
            self.batch_size = int(batch_size)
        except (TypeError, ValueError):
            self.batch_size = 0
        if self.batch_size < 1:
            raise HarnessError(f"hf: batch_size must be a positive number of prompts, got {batch_size!r}.")
        self.dtype_arg = parse_dtype(dtype, "hf")
        self.trust_remote_code = as_bool(trust_remote_code)
        self.weights = open_weights("hf", model, gguf_file=gguf_file, adapter=adapter, adapters=adapters)
        self.model_id, self.folder, self.gguf_file = self.weights.model_id, self.weights.folder, self.weights.gguf_file
        self.adapter, self.named_adapters, self.weight_files = self.weights.adapter, self.weights.adapters, self.weights.files
        if self.adapter is not None and _ALWAYS_ON in self.named_adapters:
            raise HarnessError(f"hf: '{_ALWAYS_ON}' is the name of the adapter= one; give the named adapter another name.")
        self._identity: dict[str, Any] | None = None

        self.torch, transformers = _import_backend()
        if threads not in (None, ""):
            try:
                count = int(threads)
            except (TypeError, ValueError):
                count = 0
            if count < 1:
                raise HarnessError(f"hf: threads must be a positive number, got {threads!r}.")
            self.torch.set_num_threads(count)  # process-wide, as torch has it
        self.device = self._resolve_device(device)
        self._load(transformers)

    # ------------------------------------------------------------------ loading

    def _resolve_device(self, device: str) -> str:
        torch = self.torch
        device = str(device or "auto").lower()
        if device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise HarnessError(f"hf: device={device} but torch sees no CUDA GPU here (torch {torch.__version__}); use device=cpu or a CUDA build of torch.")
            return device
        if device in ("cpu", "mps"):
            return device
        raise HarnessError(f"hf: device '{device}' is not one of auto, cpu, cuda, cuda:N.")

    def _load(self, transformers) -> None:
        torch = self.torch
        kw: dict[str, Any] = {"local_files_only": True, "trust_remote_code": self.trust_remote_code}
        if self.gguf_file:
            kw["gguf_file"] = self.gguf_file
        where = self.folder / self.gguf_file if self.gguf_file else self.folder
        try:
            config = transformers.AutoConfig.from_pretrained(str(self.folder), **kw)
        except Exception as exc:
            raise HarnessError(f"hf: cannot read the model configuration of {where} ({first_line(exc)}); pass a transformers model folder or a GGUF file.") from None
        self.vision = getattr(config, "vision_config", None) is not None
        if self.vision:
            self.processor = self._vision_processor(transformers, config, kw)
            self.tokenizer = self.processor.tokenizer
            template_owner = self.processor
        else:
            try:
                self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.folder), **kw)
            except Exception as exc:
                raise HarnessError(f"hf: cannot load the tokenizer of {where} ({first_line(exc)}).") from None
            self.processor = None
            template_owner = self.tokenizer
        if not getattr(template_owner, "chat_template", None):
            raise HarnessError(f"hf: {where} has no chat template (chat_template.jinja or tokenizer_config.json); the harness never "
                               f"falls back to plain concatenation - use a chat/instruct model or add its chat template to the folder.")
        self.template_owner = template_owner
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            if self.tokenizer.eos_token is None:
                raise HarnessError(f"hf: the tokenizer of {where} has neither a pad nor an end-of-sequence token; add one to its tokenizer_config.json.")
            self.tokenizer.pad_token = self.tokenizer.eos_token

        auto = transformers.AutoModelForImageTextToText if self.vision else transformers.AutoModelForCausalLM
        dtype = self.dtype_arg if self.dtype_arg == "auto" else getattr(torch, self.dtype_arg)
        try:
            # the config read above is handed on: parsing a GGUF file's metadata takes seconds each time
            model = auto.from_pretrained(str(self.folder), config=config, dtype=dtype, **kw)
        except Exception as exc:
            raise HarnessError(f"hf: cannot load the model weights of {where} ({first_line(exc)}).") from None

        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        self.eos_ids = sorted(eos_ids)
        self.pad_id = self.tokenizer.pad_token_id
        # The request's settings are the whole specification: drop the checkpoint's sampling defaults.
        model.generation_config = transformers.GenerationConfig(
            bos_token_id=model.generation_config.bos_token_id, eos_token_id=self.eos_ids or None, pad_token_id=self.pad_id)

        if self.adapter is not None or self.named_adapters:
            model = self._load_adapters(model, where)
        self.model = model.to(self.device).eval()
        self.dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")

    def _load_adapters(self, model, where: Path):
        """The base model wrapped by peft: the adapter= one as peft's "default", then each named one."""
        try:
            from peft import PeftModel
        except ImportError as exc:
            raise HarnessError(f"hf: {'adapter=' if self.adapter is not None else 'adapters='} needs peft ({first_line(exc)}); install it with {_INSTALL}.") from None
        folders = ([(_ALWAYS_ON, self.adapter)] if self.adapter is not None else []) + list(self.named_adapters.items())
        for name, folder in folders:
            try:
                if isinstance(model, PeftModel):
                    model.load_adapter(str(folder), adapter_name=name, is_trainable=False)
                else:
                    model = PeftModel.from_pretrained(model, str(folder), adapter_name=name, is_trainable=False)
            except Exception as exc:
                raise HarnessError(f"hf: cannot load the LoRA adapter {folder} onto {where} ({first_line(exc)}); was it trained on this base model?") from None
        if self.named_adapters:
            model.set_adapter(_ALWAYS_ON if self.adapter is not None else next(iter(self.named_adapters)))
        return model

    def _vision_processor(self, transformers, config, kw: dict[str, Any]):
        return vision_processor(transformers, self.folder, config, kw)

    # ------------------------------------------------------------------ generation (cache_identity, adapters: LocalWeightsModel)


    def stream(self, requests: Sequence[ChatRequest]) -> Iterator[tuple[int, ModelOutput]]:
        """Prompts with the same adapter and settings are batched, longest first, so that little padding is needed."""
        groups: dict[tuple, list[_Prompt]] = defaultdict(list)
        for position, request in enumerate(requests):
            prompt = self._prepare(position, request)
            g = prompt.generation
            groups[(prompt.adapter, g.temperature, g.top_p, g.max_tokens, g.n, g.stop)].append(prompt)
        for prompts in groups.values():
            prompts.sort(key=lambda p: (-p.length, p.position))
            for start in range(0, len(prompts), self.batch_size):
                batch = prompts[start : start + self.batch_size]
                for prompt, output in zip(batch, self._generate_batch(batch)):
                    yield prompt.position, output

    def _prepare(self, position: int, request: ChatRequest) -> _Prompt:
        if request.adapter is not None and request.adapter not in self.named_adapters:
            have = ", ".join(self.named_adapters) or "none (load them with adapters=name:folder;...)"
            raise HarnessError(f"hf: a request asks for the adapter '{request.adapter}' but this model has {have}.")
        generation = request.generation.model_copy(update=self.overrides) if self.overrides else request.generation
        conversation, images = [], []
        for message in request.messages:
            if message.images and not self.vision:
                raise HarnessError(f"hf: {self.model_id} is a text-only model but a {message.role} message carries "
                                   f"{len(message.images)} image(s); use a vision-language model or a text-only task setting.")
            found = [resolve_image(name, self.data_dir) for name in message.images]
            images.extend(found)
            if self.vision:  # processor templates take content parts: the images, then the text
                content: Any = [{"type": "image"} for _ in found] + ([{"type": "text", "text": message.content}] if message.content or not found else [])
            else:
                content = message.content
            conversation.append({"role": message.role, "content": content})
        try:
            text = self.template_owner.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        except Exception as exc:
            raise HarnessError(f"hf: the chat template of {self.model_id} rejects this conversation ({first_line(exc)}); "
                               f"check the roles and their order the template allows.") from None
        if self.vision:
            length = len(text) + 1000 * len(images)
        else:
            length = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        prompt = _Prompt(position, text, images, length, generation, adapter=request.adapter)
        if generation.temperature > 0:
            prompt.seeds = [_choice_seed(generation.seed, index, text, images) for index in range(generation.n)]
        return prompt

    def _generate_batch(self, batch: list[_Prompt]) -> list[ModelOutput]:
        torch = self.torch
        from transformers import GenerationConfig as HFGenerationConfig, LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

        settings = batch[0].generation
        texts = [p.text for p in batch]
        if self.vision:
            images = [load_image(path) for p in batch for path in p.images]
            encoded = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt", add_special_tokens=False)
            encoded = encoded.to(self.device, dtype=getattr(torch, self.dtype))  # pixels in the model's dtype; ids stay integers
        else:
            encoded = self.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False).to(self.device)
        prompt_length = encoded["input_ids"].shape[1]
        sampling = settings.temperature > 0
        rows_per_prompt = settings.n if sampling else 1  # greedy choices are all the same: decode once
        stopper = _subclass(_Stopper, StoppingCriteria)(self.tokenizer, prompt_length, self.eos_ids, settings.stop)
        processors = []
        if sampling:
            # The row sampler draws the token; generate's own sampling then sees a one-hot distribution.
            # temperature/top_k/top_p are neutral here so nothing else reshapes the distribution.
            config = HFGenerationConfig(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, num_return_sequences=rows_per_prompt)
            seeds = [seed for p in batch for seed in p.seeds]  # row order of generate: prompt-major
            processors.append(_subclass(_RowSampler, LogitsProcessor)(seeds, settings.temperature, settings.top_p))
        else:
            config = HFGenerationConfig(do_sample=False)
        config.max_new_tokens = settings.max_tokens
        config.eos_token_id = self.eos_ids or None
        config.pad_token_id = self.pad_id
        with torch.inference_mode(), self._adapter(batch[0].adapter):
            output = self.model.generate(**encoded, generation_config=config, logits_processor=LogitsProcessorList(processors),
                                         stopping_criteria=StoppingCriteriaList([stopper]))
        generated = output[:, prompt_length:].cpu()
        prompt_tokens = encoded["attention_mask"].sum(dim=1).tolist()
        results = []
        for i in range(len(batch)):
            choices, completion_tokens = [], 0
            for j in range(rows_per_prompt):
                row = i * rows_per_prompt + j
                length = stopper.length(row, generated.shape[1])
                text = self.tokenizer.decode(generated[row, :length].tolist(), skip_special_tokens=True)
                choices.append(cut_at_stop(text, settings.stop))
                completion_tokens += length
            if not sampling and settings.n > 1:
                choices, completion_tokens = choices * settings.n, completion_tokens * settings.n
            usage = {"prompt_tokens": int(prompt_tokens[i]), "completion_tokens": int(completion_tokens)}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            results.append(ModelOutput(choices=choices, usage=usage))
        return results

    def _adapter(self, name: str | None):
        """The context a batch is generated in: its named adapter active, or (None) the base model - the
        adapter= one where given. A model without named adapters is left as loaded."""
        if not self.named_adapters:
            return contextlib.nullcontext()
        if name is None and self.adapter is None:
            return self.model.disable_adapter()
        self.model.set_adapter(_ALWAYS_ON if name is None else name)
        return contextlib.nullcontext()

    def close(self) -> None:
        model = getattr(self, "model", None)
        if model is None:
            return
        self.model = None
        del model
        gc.collect()
        if self.device.startswith("cuda"):
            self.torch.cuda.empty_cache()


# ---------------------------------------------------------------------- helpers


def _choice_seed(seed: int | None, index: int, text: str, images: list[Path]) -> int:
    """Seed of one sampled choice: a function of the request's seed, the choice index and the prompt."""
    base = seed if seed is not None else int.from_bytes(os.urandom(8), "big")  # no seed: not reproducible, as asked
    key = json.dumps([base, index, text, [str(p) for p in images]], ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") & ((1 << 63) - 1)


def _read_chat_template(folder: Path) -> str | None:
    jinja, legacy = folder / "chat_template.jinja", folder / "chat_template.json"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    if legacy.is_file():
        try:
            return json.loads(legacy.read_text(encoding="utf-8")).get("chat_template")
        except (ValueError, AttributeError):
            return None
    return None


def vision_processor(transformers, folder: Path, config, kw: dict[str, Any], who: str = "hf"):
    """AutoProcessor where it loads (it needs torchvision for the video processor of many VL models);
    else the model's processor class built from its tokenizer and the PIL image processor."""
    reason = "it gave no image processor"
    try:
        processor = transformers.AutoProcessor.from_pretrained(str(folder), **kw)
        if getattr(processor, "image_processor", None) is not None and getattr(processor, "tokenizer", None) is not None:
            return processor
    except Exception as exc:
        reason = first_line(exc)
    try:
        from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

        class_name = PROCESSOR_MAPPING_NAMES.get(config.model_type)
        processor_class = getattr(transformers, class_name) if class_name else None
        if processor_class is None:
            raise ValueError(f"no processor class is known for model type '{config.model_type}'")
        image_processor = transformers.AutoImageProcessor.from_pretrained(str(folder), **kw)  # falls back to the PIL backend
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), **kw)
        processor = _without_video(processor_class)(image_processor=image_processor, tokenizer=tokenizer,
                                                    chat_template=_read_chat_template(Path(folder)) or tokenizer.chat_template)
    except Exception as exc:
        raise HarnessError(f"{who}: cannot build the image processor of {folder}: AutoProcessor failed ({reason}) and so did "
                           f"the PIL fallback ({first_line(exc)}); install torchvision matching your torch, or use another model.") from None
    return processor


def _without_video(processor_class):
    """The processor class without its video processor (which needs torchvision), for image-only use."""
    if "video_processor" not in inspect.signature(processor_class.__init__).parameters:
        return processor_class

    class ImageOnlyProcessor(processor_class):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            super().__init__(image_processor=image_processor, tokenizer=tokenizer, video_processor=None, chat_template=chat_template, **kwargs)

    ImageOnlyProcessor.__name__ = ImageOnlyProcessor.__qualname__ = f"{processor_class.__name__}ImageOnly"
    return ImageOnlyProcessor


class _Stopper:
    """Stopping criterion that also records how many tokens each row generated: a row ends at an
    end-of-sequence token or once its decoded text holds a stop string."""

    def __init__(self, tokenizer, prompt_length: int, eos_ids: list[int], stops: Sequence[str]):
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.eos_ids = eos_ids
        self.stops = [s for s in stops if s]
        self.lengths: dict[int, int] = {}  # row -> generated tokens when it ended

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        generated = input_ids[:, self.prompt_length :]
        steps = generated.shape[1]
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if self.eos_ids:
            done |= torch.isin(generated[:, -1], torch.tensor(self.eos_ids, device=input_ids.device))
        for row in range(input_ids.shape[0]):
            if row in self.lengths:
                done[row] = True
                continue
            if not done[row] and self.stops:
                text = self.tokenizer.decode(generated[row].tolist(), skip_special_tokens=True)
                done[row] = any(s in text for s in self.stops)
            if done[row]:
                self.lengths[row] = steps
        return done

    def length(self, row: int, generated: int) -> int:
        return self.lengths.get(row, generated)


class _RowSampler:
    """Logits processor that samples every row with its own generator and returns a one-hot score, so a
    row's draws never depend on the other rows of the batch."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float):
        self.seeds = seeds
        self.temperature = temperature
        self.top_p = top_p
        self.generators: list[Any] = []

    def __call__(self, input_ids, scores):
        import torch

        if not self.generators:
            self.generators = [torch.Generator(device=scores.device).manual_seed(s) for s in self.seeds]
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            drop = (sorted_probs.cumsum(dim=-1) - sorted_probs) >= self.top_p  # the mass before the token reaches top_p
            drop[:, 0] = False
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs.masked_fill(drop, 0.0))
        tokens = torch.cat([torch.multinomial(probs[row], 1, generator=self.generators[row]) for row in range(probs.shape[0])])
        chosen = torch.full_like(scores, float("-inf"))
        chosen.scatter_(1, tokens.unsqueeze(1), 0.0)
        return chosen


_SUBCLASSES: dict[tuple[type, type], type] = {}


def _subclass(own: type, base: type) -> type:
    """`own` as a subclass of a transformers base class (imported lazily, hence not at module level)."""
    if (own, base) not in _SUBCLASSES:
        _SUBCLASSES[(own, base)] = type(own.__name__, (own, base), {})
    return _SUBCLASSES[(own, base)]
