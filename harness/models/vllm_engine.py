"""vLLM's offline engine in process (GPU machines): text chat models, vision-language models, LoRA.

    --model-args model=PATH                a model folder (or .gguf file), or a hub id already in the local
                                           Hugging Face cache; the engine is given the local folder, nothing
                                           is downloaded
                 tensor_parallel_size=1    GPUs per model replica
                 data_parallel_size=1      replicas (only where the installed vLLM runs data parallelism
                                           from one process; else a clear error)
                 dtype=auto                auto | float32 | bfloat16 | float16
                 max_model_len=            context length (default: the model's)
                 gpu_memory_utilization=0.9
                 enforce_eager=false
                 adapter=PATH              a LoRA adapter folder (enable_lora + LoRARequest), on for every request
                 adapters=a:PATH;b:PATH    named LoRA adapters (or a JSON object {"a": PATH, ...}); a request
                                           chooses one with ChatRequest.adapter, one without is answered by
                                           the base model (or by adapter= where given)
                 max_lora_rank=            the engine's LoRA rank (default: the smallest that holds every adapter)
                 max_loras=                adapters on the GPU at once (default: all of them)
                 max_images=               images per prompt the engine accepts (limit_mm_per_prompt)
                 trust_remote_code=false
                 batch_size=               requests per engine call (default: all of them at once; vLLM
                                           schedules them itself - a smaller number only saves answers sooner)
                 temperature= top_p= max_tokens= seed= stop=   replace the request's settings

The requests are turned into vLLM's input by pure functions (`build_conversation`, `sampling_kwargs`,
`build_request`), tested without vLLM. Messages become OpenAI-style chat messages: plain string content,
or content parts (each image as a base64 data URL, then the text if any) when a message carries images; the
engine applies the model's chat template. Temperature 0 is greedy: one choice is generated and repeated
n times (as the hf adapter does). Stop strings are cut from the text by vLLM. Requests naming an adapter
get its LoRARequest (ids 1, 2 ... in name order); `LLM.chat` takes one LoRARequest per call, so the
requests of a call are sent in one `chat` per adapter. A model folder holding train.json is a trained
checkpoint, loaded as the hf adapter does.
"""
from __future__ import annotations

import dataclasses
import gc
import json
import os
from pathlib import Path
from typing import Any, Sequence

from ..contract import ChatModel, ChatRequest, GenerationConfig, ModelContext, ModelOutput
from ..errors import HarnessError, first_line
from .images import data_url, resolve_image
from .weights import LocalWeightsModel, as_bool, open_weights, parse_dtype, sampling_overrides

_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts
_INSTALL = "install it with pip install '.[vllm]' on a GPU machine"
_ALWAYS_ON = "adapter"  # the LoRARequest name of the adapter= one


# ---------------------------------------------------------------------- pure request building


def build_conversation(request: ChatRequest, data_dir: Path | None = None) -> list[dict[str, Any]]:
    """The request's messages as OpenAI-style chat messages for `LLM.chat`."""
    conversation = []
    for message in request.messages:
        if message.images:
            content: Any = [{"type": "image_url", "image_url": {"url": data_url(resolve_image(name, data_dir))}} for name in message.images]
            if message.content:
                content.append({"type": "text", "text": message.content})
        else:
            content = message.content
        conversation.append({"role": message.role, "content": content})
    return conversation


def sampling_kwargs(generation: GenerationConfig) -> dict[str, Any]:
    """Keyword arguments of `vllm.SamplingParams` for these settings. Greedy decoding asks for one choice
    (the adapter repeats it n times)."""
    greedy = generation.temperature <= 0
    kwargs: dict[str, Any] = {
        "n": 1 if greedy else generation.n,
        "temperature": 0.0 if greedy else generation.temperature,
        "top_p": 1.0 if greedy else generation.top_p,
        "max_tokens": generation.max_tokens,
    }
    if generation.seed is not None and not greedy:
        kwargs["seed"] = generation.seed
    if generation.stop:
        kwargs["stop"] = list(generation.stop)
    return kwargs


def build_request(request: ChatRequest, data_dir: Path | None = None, overrides: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(conversation, SamplingParams kwargs) of one request; `overrides` are the model-arg sampling settings."""
    generation = request.generation.model_copy(update=overrides) if overrides else request.generation
    return build_conversation(request, data_dir), sampling_kwargs(generation)


def lora_rank(adapter: Path) -> int:
    """The smallest max_lora_rank vLLM accepts that holds the adapter's rank (r and any rank_pattern)."""
    try:
        config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
        ranks = [int(config.get("r") or 8), *(int(r) for r in (config.get("rank_pattern") or {}).values())]
    except (OSError, ValueError, TypeError) as exc:
        raise HarnessError(f"vllm: cannot read {adapter / 'adapter_config.json'} ({first_line(exc)}); pass a folder written by peft's save_pretrained.") from None
    rank = max(ranks)
    for allowed in _LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise HarnessError(f"vllm: the adapter's LoRA rank {rank} is above the largest vLLM supports ({_LORA_RANKS[-1]}).")


# ---------------------------------------------------------------------- the adapter


def _import_vllm():
    try:
        import vllm
    except ImportError as exc:
        raise HarnessError(f"vLLM is not installed here ({first_line(exc)}); {_INSTALL} (it needs a CUDA GPU).") from None
    return vllm


class VLLMModel(LocalWeightsModel, ChatModel):
    """vLLM's offline `LLM` engine: all requests of a call go to `LLM.chat` at once (one call per adapter)."""

    name = "vllm"

    def __init__(self, context: ModelContext | None = None, model: str | None = None, tensor_parallel_size: Any = 1,
                 data_parallel_size: Any = 1, dtype: str = "auto", max_model_len: Any = None, gpu_memory_utilization: Any = 0.9,
                 enforce_eager: Any = False, adapter: str | None = None, adapters: Any = None, max_lora_rank: Any = None,
                 max_loras: Any = None, max_images: Any = None, trust_remote_code: Any = False, batch_size: Any = None,
                 temperature: Any = None, top_p: Any = None, max_tokens: Any = None, seed: Any = None, stop: Any = None):
        self.data_dir = context.data_dir if context is not None else None
        self.overrides = sampling_overrides("vllm", temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed, stop=stop)
        self.dtype_arg = parse_dtype(dtype, "vllm")
        tp = self._positive("tensor_parallel_size", tensor_parallel_size)
        dp = self._positive("data_parallel_size", data_parallel_size)
        self.batch_size = self._positive("batch_size", batch_size) if batch_size not in (None, "", 0, "0") else 1_000_000_000
        self.weights = open_weights("vllm", model, adapter=adapter, adapters=adapters)
        self.model_id, self.folder, self.gguf_file = self.weights.model_id, self.weights.folder, self.weights.gguf_file
        self.adapter, self.named_adapters, self.weight_files = self.weights.adapter, self.weights.adapters, self.weights.files
        self._identity: dict[str, Any] | None = None

        vllm = _import_vllm()
        engine_args: dict[str, Any] = {
            "model": str(self.folder / self.gguf_file) if self.gguf_file else str(self.folder),
            "tensor_parallel_size": tp,
            "dtype": self.dtype_arg,
            "gpu_memory_utilization": float(gpu_memory_utilization),
            "trust_remote_code": as_bool(trust_remote_code),
        }
        if dp > 1:
            self._check_data_parallel(vllm, dp)
            engine_args["data_parallel_size"] = dp
        if max_model_len not in (None, ""):
            engine_args["max_model_len"] = self._positive("max_model_len", max_model_len)
        if as_bool(enforce_eager):
            engine_args["enforce_eager"] = True
        if max_images not in (None, ""):
            engine_args["limit_mm_per_prompt"] = {"image": self._positive("max_images", max_images, allow_zero=True)}
        self.lora_request = None  # the adapter= one: every request without a named adapter
        self.lora_requests: dict[str, Any] = {}  # the named ones
        folders = [*self.named_adapters.values(), *([self.adapter] if self.adapter is not None else [])]
        if folders:
            rank = max(lora_rank(folder) for folder in folders)
            if max_lora_rank not in (None, ""):
                asked = self._positive("max_lora_rank", max_lora_rank)
                if asked not in _LORA_RANKS or asked < rank:
                    raise HarnessError(f"vllm: max_lora_rank={asked} must be one of {', '.join(map(str, _LORA_RANKS))} and at least "
                                       f"the adapters' rank ({rank}).")
                rank = asked
            slots = self._positive("max_loras", max_loras) if max_loras not in (None, "") else len(folders)
            engine_args.update(enable_lora=True, max_loras=slots, max_lora_rank=rank)
            from vllm.lora.request import LoRARequest

            # ids 1, 2 ... in name order (stable whatever order the adapters were given in), then adapter=
            self.lora_requests = {name: LoRARequest(name, i, str(folder)) for i, (name, folder) in enumerate(self.named_adapters.items(), start=1)}
            if self.adapter is not None:
                if _ALWAYS_ON in self.lora_requests:  # vLLM tells LoRARequests apart by name
                    raise HarnessError(f"vllm: '{_ALWAYS_ON}' is the name of the adapter= one; give the named adapter another name.")
                self.lora_request = LoRARequest(_ALWAYS_ON, len(self.lora_requests) + 1, str(self.adapter))
        self.engine_args = engine_args
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the engine reads the local folder only
        try:
            self.llm = vllm.LLM(**engine_args)
        except Exception as exc:
            if dp > 1 and "data_parallel" in str(exc):
                raise HarnessError(f"vllm: this vLLM ({getattr(vllm, '__version__', '?')}) refuses data_parallel_size={dp} in one process "
                                   f"({first_line(exc)}); use tensor_parallel_size, or start one harness run per GPU group.") from exc
            raise HarnessError(f"vllm: the engine did not start for {self.model_id} ({first_line(exc)}).") from exc
        self.SamplingParams = vllm.SamplingParams
        resolved = getattr(getattr(getattr(self.llm, "llm_engine", None), "model_config", None), "dtype", None)
        self.dtype = str(resolved).removeprefix("torch.") if resolved is not None else self.dtype_arg

    @staticmethod
    def _positive(name: str, value: Any, allow_zero: bool = False) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = -1
        if number < (0 if allow_zero else 1):
            raise HarnessError(f"vllm: {name} must be a {'non-negative' if allow_zero else 'positive'} whole number, got {value!r}.")
        return number

    @staticmethod
    def _check_data_parallel(vllm, dp: int) -> None:
        engine_args = getattr(vllm, "EngineArgs", None)
        fields = {f.name for f in dataclasses.fields(engine_args)} if engine_args is not None and dataclasses.is_dataclass(engine_args) else set()
        if "data_parallel_size" not in fields:
            raise HarnessError(f"vllm: this vLLM ({getattr(vllm, '__version__', '?')}) has no data_parallel_size (asked for {dp}); "
                               f"upgrade vLLM, use tensor_parallel_size, or start one harness run per GPU.")

    def lora_request_of(self, request: ChatRequest) -> Any:
        """The LoRARequest that answers `request`: its named adapter's, else the adapter= one (or None)."""
        if request.adapter is None:
            return self.lora_request
        if request.adapter not in self.lora_requests:
            have = ", ".join(self.lora_requests) or "none (load them with adapters=name:folder;...)"
            raise HarnessError(f"vllm: a request asks for the adapter '{request.adapter}' but this model has {have}.")
        return self.lora_requests[request.adapter]

    def generate(self, requests: Sequence[ChatRequest]) -> list[ModelOutput]:
        if not requests:
            return []
        loras = [self.lora_request_of(r) for r in requests]
        built = [build_request(r, self.data_dir, self.overrides) for r in requests]
        # one engine call per LoRARequest (LLM.chat takes one); a single call where all share it, as before
        groups: dict[int, list[int]] = {}
        for position, lora in enumerate(loras):
            groups.setdefault(lora.lora_int_id if lora is not None else 0, []).append(position)
        results: list[Any] = [None] * len(requests)
        for positions in groups.values():
            for position, result in zip(positions, self._chat([built[i] for i in positions], loras[positions[0]])):
                results[position] = result
        outputs = []
        for request, (_, kwargs), result in zip(requests, built, results):
            completions = sorted(result.outputs, key=lambda c: getattr(c, "index", 0))
            choices = [c.text for c in completions]
            completion_tokens = sum(len(c.token_ids) for c in completions)
            wanted = (request.generation.model_copy(update=self.overrides) if self.overrides else request.generation).n
            if kwargs["n"] == 1 and wanted > 1:  # greedy: the one choice, n times
                choices, completion_tokens = choices * wanted, completion_tokens * wanted
            prompt_tokens = len(result.prompt_token_ids or [])
            outputs.append(ModelOutput(choices=choices, usage={"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                                               "total_tokens": prompt_tokens + completion_tokens}))
        return outputs

    def _chat(self, built: list[tuple[list[dict[str, Any]], dict[str, Any]]], lora_request: Any) -> list[Any]:
        """One `LLM.chat` call: the conversations, their SamplingParams (one shared where all are alike), the LoRA."""
        conversations = [conversation for conversation, _ in built]
        params = [self.SamplingParams(**kwargs) for _, kwargs in built]
        same = all(kwargs == built[0][1] for _, kwargs in built)
        call: dict[str, Any] = {"sampling_params": params[0] if same else params, "use_tqdm": False}
        if lora_request is not None:
            call["lora_request"] = lora_request
        try:
            results = self.llm.chat(conversations, **call)
        except Exception as exc:
            hint = "; pass max_images=N for prompts with more images" if "image" in str(exc).lower() else ""
            raise HarnessError(f"vllm: generation failed ({first_line(exc)}){hint}.") from exc
        if len(results) != len(built):
            raise HarnessError(f"vllm: the engine answered {len(results)} of {len(built)} requests.")
        return results

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        self.llm = None
        shutdown = getattr(getattr(llm, "llm_engine", None), "shutdown", None)
        if callable(shutdown):
            try:
                shutdown()
            except Exception:
                pass
        del llm
        gc.collect()
