"""Model folders on local disk and their fingerprints, shared by the in-process back-ends (hf, vllm).

Nothing here downloads: a hub id is looked up in the local Hugging Face cache only. A fingerprint is the
sha256 of the files that decide a model's answers (weights, config, tokenizer, chat template), so the
response cache never confuses two checkpoints saved under the same path. Hashing many gigabytes takes a
while, so each file's digest is remembered beside the response cache, keyed by its path, size and
modification time (harness.hashing has the hash itself and the in-process memo).

`open_weights` is what both back-ends call: it resolves the model arg (a folder holding train.json is a
trained checkpoint: its base model plus its LoRA weights, or full weights), the always-on `adapter` and
the named `adapters` a request may choose, and `LocalWeights.identity` fingerprints all of them. The
model-arg parsers both share (`as_bool`, `parse_dtype`, `sampling_overrides`) live here too.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import HarnessError
from ..hashing import sha256_of
from ..training import TRAIN_RECORD, read_record

# What decides the answers in a model or adapter folder. Documentation, images, training state
# (optimizer.pt, rng_state.pth) and GGUF files (loaded only when named) are left out.
_RELEVANT_SUFFIXES = {".json", ".jinja", ".safetensors", ".bin", ".model", ".txt", ".py", ".tiktoken", ".vocab"}
_IGNORED_NAMES = ("readme", "license", "notice")
_MEMO_NAME = "fingerprints.json"

DTYPES = {"auto": "auto", "float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16", "half": "float16"}


def as_bool(value: Any) -> bool:
    """A model arg as a boolean: True, or "1" / "true" / "yes" / "on" in any case and spacing."""
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")


def parse_dtype(dtype: Any, adapter_name: str) -> str:
    """The dtype model arg as auto | float32 | bfloat16 | float16 (fp32, bf16, fp16 and half accepted)."""
    key = str(dtype).lower()
    if key not in DTYPES:
        raise HarnessError(f"{adapter_name}: dtype '{dtype}' is not one of auto, float32, bfloat16, float16.")
    return DTYPES[key]


def resolve_model(model: str, adapter_name: str) -> tuple[Path, str | None]:
    """`model` as (local folder, GGUF file name or None): a folder, a .gguf file, or a hub id already in the
    local Hugging Face cache. Never downloads."""
    if not model or not isinstance(model, str):
        raise HarnessError(f"{adapter_name}: give the model, e.g. --model-args model=/path/to/model (a folder, a .gguf file or a hub id in the local Hugging Face cache).")
    path = Path(model).expanduser()
    if path.is_dir():
        return path, None
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return path.parent, path.name
        raise HarnessError(f"{adapter_name}: model '{model}' is a file but not a .gguf file; pass the model folder instead.")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=model, local_files_only=True)), None
    except Exception:  # not a repo id, or not in the cache: both mean "not found here"
        pass
    raise HarnessError(
        f"{adapter_name}: model '{model}' is neither a local folder nor a model in the local Hugging Face cache "
        f"(HF_HOME); nothing is downloaded - copy the model folder to this machine and pass its path."
    )


def model_files(folder: Path, gguf_file: str | None = None) -> list[Path]:
    """The files whose content decides a model's answers."""
    if gguf_file:
        file = folder / gguf_file
        if not file.is_file():
            raise HarnessError(f"GGUF file '{file}' not found; check gguf_file= (a file name inside the model folder).")
        return [file]
    files = []
    for entry in sorted(folder.iterdir()):
        name = entry.name.lower()
        # train.json beside a checkpoint's weights is metadata whose status and times change, never the answers
        if name.startswith(".") or name.startswith(_IGNORED_NAMES) or name == TRAIN_RECORD or entry.suffix.lower() not in _RELEVANT_SUFFIXES:
            continue
        if entry.is_file():
            files.append(entry)
    if not files:
        raise HarnessError(f"{folder}: no model files (config, weights, tokenizer) in this folder; pass the folder that holds config.json and the weights.")
    return files


def fingerprint(files: list[Path]) -> str:
    """sha256 over the names and contents of `files` (each file's digest is memoised on disk)."""
    memo_path = paths.cache_path().parent / _MEMO_NAME
    memo = _read_memo(memo_path)
    changed = False
    outer = hashlib.sha256()
    for file in files:
        stat = file.stat()  # follows hub-cache symlinks to the blobs
        key = str(file.resolve())
        entry = memo.get(key)
        if not entry or entry.get("size") != stat.st_size or entry.get("mtime_ns") != stat.st_mtime_ns:
            entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256_of(file)}
            memo[key] = entry
            changed = True
        outer.update(f"{file.name}\0{entry['sha256']}\n".encode())
    if changed:
        _write_memo(memo_path, memo)
    return outer.hexdigest()


def _read_memo(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_memo(path: Path, memo: dict) -> None:
    """Best effort (a lost memo only costs a re-hash); atomic so a reader never sees half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo, indent=0, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


def adapter_folder(adapter: str, adapter_name: str) -> Path:
    """A LoRA adapter folder (as peft's save_pretrained writes it)."""
    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise HarnessError(f"{adapter_name}: adapter '{adapter}' is not a LoRA adapter folder (no adapter_config.json there); pass the folder peft's save_pretrained wrote.")
    return path


def sampling_overrides(adapter_name: str, **given) -> dict:
    """Sampling settings given as model args (they replace the request's), validated and normalised."""
    out: dict = {}
    for key, value in given.items():
        if value is None:
            continue
        try:
            if key in ("temperature", "top_p"):
                out[key] = float(value)
            elif key in ("max_tokens", "seed"):
                out[key] = int(value)
            elif key == "stop":
                out[key] = (value,) if isinstance(value, str) else tuple(str(s) for s in value)
            else:  # pragma: no cover - callers pass known names
                raise KeyError(key)
        except (TypeError, ValueError):
            raise HarnessError(f"{adapter_name}: model arg {key}={value!r} is not valid; e.g. temperature=0.7, top_p=0.9, max_tokens=128, seed=1, stop='###'.") from None
    if out.get("max_tokens", 1) < 1:
        raise HarnessError(f"{adapter_name}: max_tokens must be at least 1, got {out['max_tokens']}.")
    return out


def local_model_identity(model_id: str, weight_files, dtype: str, gguf_file: str | None, adapter, overrides,
                         adapters: dict[str, Path] | None = None, trained: dict[str, str] | None = None) -> dict:
    """What makes an in-process model's answers (hf, vllm): weights, adapters, numerics, sampling overrides,
    and the training run that made a checkpoint. Keys appear only when used, so that a model loaded as
    before keeps its identity (and its cached answers)."""
    identity: dict = {"model": model_id, "weights": fingerprint(weight_files), "dtype": dtype}
    if gguf_file:
        identity["gguf_file"] = gguf_file
    if adapter is not None:
        identity["adapter"] = str(adapter)
        identity["adapter_weights"] = fingerprint(model_files(adapter))
    if adapters:  # by name and content (a request's adapter name is in its cache key)
        identity["adapters"] = {name: fingerprint(model_files(folder)) for name, folder in adapters.items()}
    if trained:
        identity.update(trained)
    if overrides:
        identity["overrides"] = dict(overrides)
    return identity


def named_adapters(value: Any, adapter_name: str) -> dict[str, Path]:
    """The `adapters` model arg as {name: LoRA folder}, sorted by name. Accepted: a dict, a JSON object
    ('{"empathy": "/ckpt/a", "safety": "/ckpt/b"}') or 'empathy:/ckpt/a;safety:/ckpt/b'."""
    if value is None or value == "" or value == {}:
        return {}
    example = 'e.g. adapters=empathy:/ckpt/a;safety:/ckpt/b or adapters={"empathy": "/ckpt/a"}'
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                raise HarnessError(f"{adapter_name}: adapters= is not a valid JSON object; {example}.") from None
        else:
            pairs: dict[str, str] = {}
            for piece in filter(None, (p.strip() for p in text.split(";"))):
                name, sep, folder = (part.strip() for part in piece.partition(":"))
                if not sep or not name or not folder:
                    raise HarnessError(f"{adapter_name}: adapters= entry '{piece}' is not name:folder; {example}.")
                if name in pairs:
                    raise HarnessError(f"{adapter_name}: adapters= names '{name}' twice; give each adapter one name.")
                pairs[name] = folder
            value = pairs
    if not isinstance(value, dict) or not all(isinstance(k, str) and k.strip() and isinstance(v, (str, Path)) for k, v in value.items()):
        raise HarnessError(f"{adapter_name}: adapters= must name LoRA folders; {example}.")
    return {name.strip(): adapter_folder(str(value[name]), adapter_name) for name in sorted(value, key=str.strip)}


def trained_checkpoint(model: str, adapter_name: str) -> tuple[str, Path | None, dict[str, str]]:
    """A model arg naming a folder with train.json (written by `harness train`) is that training's result:
    returns (the model to load, its LoRA adapter folder or None, identity facts of the training). For
    peft weights the model is the record's base model (a relative path is read from the checkpoint folder)
    and the folder itself is the adapter; for full weights the folder is the model. Any other model arg
    comes back as it is, with no adapter and no facts."""
    folder = Path(model).expanduser() if model else None
    if folder is None or not (folder / TRAIN_RECORD).is_file():
        return model, None, {}
    path = folder / TRAIN_RECORD
    record = read_record(folder)
    if record.status != "finished":
        why = f" ({record.error.strip().splitlines()[0]})" if record.error and record.error.strip() else ""
        raise HarnessError(f"{path}: training did not finish; its status is '{record.status}'{why} - finish (or resume) the "
                           f"training, or load another checkpoint.")
    trained = {"train_id": record.train_id, "recipe": record.recipe}
    if record.weights == "full":
        return model, None, trained
    base = record.base_model.get("model")
    if not isinstance(base, str) or not base.strip():
        raise HarnessError(f"{path}: base_model.model is missing; a peft checkpoint must name the model its adapter was trained on.")
    beside = folder / Path(base).expanduser()
    if not Path(base).expanduser().is_absolute() and beside.exists():
        base = os.path.normpath(beside)
    return base, adapter_folder(str(folder), adapter_name), trained


@dataclass
class LocalWeights:
    """What an in-process back-end loads (hf, vllm), resolved and checked before anything heavy is imported."""

    model_id: str  # the model arg, or a trained checkpoint's base model
    folder: Path
    gguf_file: str | None
    adapter: Path | None  # always on: adapter=, or the folder of a peft checkpoint
    adapters: dict[str, Path]  # named, chosen per request (ChatRequest.adapter); sorted by name
    files: list[Path]  # the base weights' files
    trained: dict[str, str]  # train_id and recipe of a checkpoint with train.json; else empty

    def identity(self, dtype: str, overrides: dict) -> dict:
        return local_model_identity(self.model_id, self.files, dtype, self.gguf_file, self.adapter, overrides, self.adapters, self.trained)


class LocalWeightsModel:
    """Mixed into the in-process back-ends (before ChatModel): the cache identity and the named adapters of
    `self.weights` (from `open_weights`), with the back-end's resolved `dtype` and sampling `overrides`."""

    weights: LocalWeights
    dtype: str
    overrides: dict
    _identity: dict | None = None

    def cache_identity(self) -> dict[str, Any]:
        if self._identity is None:
            self._identity = self.weights.identity(self.dtype, self.overrides)
        return self._identity

    def adapters(self) -> tuple[str, ...]:
        return tuple(self.weights.adapters)


def open_weights(adapter_name: str, model: Any, gguf_file: str | None = None, adapter: str | None = None, adapters: Any = None) -> LocalWeights:
    """The model arg (folder, .gguf file, hub id in the local cache, or trained checkpoint with train.json),
    `adapter` and `adapters` of an in-process back-end, as local files; one-line errors."""
    given = str(model) if model is not None else ""
    model_id, trained_adapter, trained = trained_checkpoint(given, adapter_name)
    if trained_adapter is not None and adapter:
        raise HarnessError(f"{adapter_name}: {given} is a trained LoRA adapter (train.json) that brings its base model; "
                           f"drop adapter=, or give model= the base model and adapter= the folder.")
    try:
        folder, found_gguf = resolve_model(model_id, adapter_name)
    except HarnessError:
        if trained_adapter is None:
            raise
        raise HarnessError(f"{adapter_name}: the base model '{model_id}' named in {Path(given) / TRAIN_RECORD} is neither a folder "
                           f"(relative paths are read from the checkpoint folder) nor a model in the local Hugging Face cache; "
                           f"copy it to this machine or correct base_model.model.") from None
    if gguf_file and found_gguf and gguf_file != found_gguf:
        raise HarnessError(f"{adapter_name}: model is the GGUF file '{found_gguf}' but gguf_file is '{gguf_file}'; give one of them.")
    gguf_file = gguf_file or found_gguf
    always_on = trained_adapter or (adapter_folder(adapter, adapter_name) if adapter else None)
    named = named_adapters(adapters, adapter_name)
    files = model_files(folder, gguf_file)  # fails early on a missing GGUF file
    return LocalWeights(model_id, folder, gguf_file, always_on, named, files, trained)
