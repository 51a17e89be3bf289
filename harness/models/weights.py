"""Model folders on local disk and their fingerprints, shared by the in-process back-ends (hf, vllm).

Nothing here downloads: a hub id is looked up in the local Hugging Face cache only. A fingerprint is the
sha256 of the files that decide a model's answers (weights, config, tokenizer, chat template), so the
response cache never confuses two checkpoints saved under the same path. Hashing many gigabytes takes a
while, so each file's digest is remembered beside the response cache, keyed by its path, size and
modification time.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .. import paths
from ..errors import HarnessError

# What decides the answers in a model or adapter folder. Documentation, images, training state
# (optimizer.pt, rng_state.pth) and GGUF files (loaded only when named) are left out.
_RELEVANT_SUFFIXES = {".json", ".jinja", ".safetensors", ".bin", ".model", ".txt", ".py", ".tiktoken", ".vocab"}
_IGNORED_NAMES = ("readme", "license", "notice")
_MEMO_NAME = "fingerprints.json"


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
        if name.startswith(".") or name.startswith(_IGNORED_NAMES) or entry.suffix.lower() not in _RELEVANT_SUFFIXES:
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
            entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": file_sha256(file)}
            memo[key] = entry
            changed = True
        outer.update(f"{file.name}\0{entry['sha256']}\n".encode())
    if changed:
        _write_memo(memo_path, memo)
    return outer.hexdigest()


def file_sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


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


def local_model_identity(model_id: str, weight_files, dtype: str, gguf_file: str | None, adapter, overrides) -> dict:
    """What makes an in-process model's answers (hf, vllm): weights, adapter, numerics, sampling overrides."""
    identity: dict = {"model": model_id, "weights": fingerprint(weight_files), "dtype": dtype}
    if gguf_file:
        identity["gguf_file"] = gguf_file
    if adapter is not None:
        identity["adapter"] = str(adapter)
        identity["adapter_weights"] = fingerprint(model_files(adapter))
    if overrides:
        identity["overrides"] = dict(overrides)
    return identity
