"""Training plumbing the in-repo recipes share (FIRES now, COMPEER next): settings with their sources, the
batch arithmetic, loading a policy (text or vision-language chat model) with its processor, the LoRA targets
(language-model linear layers only), a JSONL log of every trainer log entry, checkpoints and resume, and the
checkpoint folder with train.json (`harness.training`). The engine never imports this module; torch,
transformers, peft and trl are imported inside the functions that need them (the `train` extra).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.errors import HarnessError, first_line

INSTALL = "pip install '.[train]'"
LOG_FILE = "log.jsonl"  # one JSON object per trainer log entry (loss, lr, each reward component, ...)
CHECKPOINTS = "checkpoints"  # transformers Trainer checkpoints, for resuming


@dataclass(frozen=True)
class Setting:
    """One training setting and where its value comes from (the paper, the tool it ran on, a harness choice)."""

    value: Any
    source: str
    trl_default: Any = None  # what TRL would use if the setting were left out (None: same as value or n/a)


def with_overrides(settings: Mapping[str, Setting], given: Mapping[str, Any]) -> dict[str, Setting]:
    """The recipe's settings with the user's values (not None) in place, marked as given on the command line."""
    out = dict(settings)
    for name, value in given.items():
        if value is None:
            continue
        if name not in out:
            raise HarnessError(f"unknown setting '{name}'.")
        if value != out[name].value:
            out[name] = Setting(value, f"command line (recipe: {out[name].value!r}, {out[name].source})", out[name].trl_default)
    return out


def values(settings: Mapping[str, Setting]) -> dict[str, Any]:
    return {name: s.value for name, s in settings.items()}


def record(settings: Mapping[str, Setting]) -> dict[str, Any]:
    """train.json's config: every value and, beside it, its source."""
    return {"settings": values(settings), "sources": {name: s.source for name, s in settings.items()}}


def markdown_table(settings: Mapping[str, Setting]) -> str:
    rows = ["| setting | value | source | TRL default |", "|---|---|---|---|"]
    for name, s in settings.items():
        rows.append(f"| `{name}` | `{s.value!r}` | {s.source} | {'' if s.trl_default is None else f'`{s.trl_default!r}`'} |")
    return "\n".join(rows)


def help_lines(settings: Mapping[str, Setting]) -> str:
    """The settings for a command's --help (click keeps \\b paragraphs as they are)."""
    return "\b\n" + "\n".join(f"{name} = {s.value!r}  ({s.source})" for name, s in settings.items())


# --------------------------------------------------------------------------- input files


def jsonl_objects(path: Path, keys: Sequence[str], types: tuple[type, ...], type_name: str):
    """(line number, "file:line", object) for each non-blank line of a JSONL file of objects that hold `keys`,
    each of one of `types`; anything else (not a file, not UTF-8, not JSON, not an object, a missing key or a
    value of another type) is one HarnessError naming the file and line."""
    shape = "{" + ", ".join(f'"{k}"' for k in keys) + "}"
    if not Path(path).is_file():
        raise HarnessError(f"{path}: not a file; give a JSONL file of {shape} lines.")
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise HarnessError(f"{where}: not UTF-8 text.") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise HarnessError(f"{where}: not JSON ({exc.msg}, column {exc.colno}).") from None
            if not isinstance(row, dict):
                raise HarnessError(f"{where}: a JSON object with {', '.join(keys)} expected, got {type(row).__name__}.")
            for key in keys:
                if key not in row:
                    raise HarnessError(f"{where}: missing '{key}' (each line needs {', '.join(keys)}).")
                if not isinstance(row[key], types):
                    raise HarnessError(f"{where}: '{key}' must be a {type_name}, got {type(row[key]).__name__}.")
            yield number, where, row


def versioned_row(model: type, line: str | bytes, path: Path, number: int, what: str, version: int, fix: str) -> Any:
    """One JSONL line as a `model` row of schema `version`; anything else is one error naming file:line and `fix`."""
    from pydantic import ValidationError

    try:
        row = model.model_validate(json.loads(line))
    except (ValidationError, ValueError) as exc:
        raise HarnessError(f"{path}:{number}: not a {what} row ({first_line(exc)}); {fix}.") from None
    if row.schema_version != version:
        raise HarnessError(f"{path}:{number}: schema version {row.schema_version}, this harness reads {version}; {fix}.")
    return row


def versioned_manifest(model: type, folder: Path, name: str, what: str, recipe: str, version: int) -> Any:
    """A dataset folder's manifest file `name` as `model` of schema `version`; one error line saying how to make it."""
    from pydantic import ValidationError

    path = Path(folder) / name
    if not path.is_file():
        raise HarnessError(f"{folder}: not a {what} dataset ({name} missing); make one with `harness train {recipe}`.")
    try:
        manifest = model.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValidationError, ValueError) as exc:
        raise HarnessError(f"{path}: not a valid {name} ({first_line(exc)}); remake the dataset with `harness train {recipe}`.") from None
    if manifest.schema_version != version:
        raise HarnessError(f"{path}: schema version {manifest.schema_version}, this harness reads {version}; remake it with this version.")
    return manifest


# --------------------------------------------------------------------------- batch arithmetic


def processes() -> int:
    """Training processes (GPUs) of this launch: accelerate / torchrun set WORLD_SIZE; 1 otherwise."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def accumulation_steps(batch_size: int, per_device: int, devices: int) -> int:
    """batch = per-device batch x accumulation x devices, with a whole number of accumulation steps."""
    if batch_size < 1 or per_device < 1:
        raise HarnessError(f"batch size {batch_size} and per-device batch {per_device} must be positive.")
    step = per_device * devices
    if batch_size % step:
        raise HarnessError(f"batch size {batch_size} is not a multiple of per-device batch {per_device} x {devices} device(s) = {step}; "
                           f"choose --per-device-batch so that it divides {batch_size // devices if batch_size % devices == 0 else batch_size} "
                           f"(or launch on a number of devices that divides the batch).")
    return batch_size // step


# --------------------------------------------------------------------------- the policy


@dataclass
class Policy:
    model: Any
    processing_class: Any  # a tokenizer (text models) or a processor (vision-language models)
    vision: bool
    folder: Path


def load_policy(model: str, dtype: str = "auto", trust_remote_code: bool = False, what: str = "--base",
                image_max_pixels: int | None = None) -> Policy:
    """A chat model and its tokenizer or processor from a local folder (never downloaded); one line when it
    cannot be loaded or has no chat template. `image_max_pixels` caps each image's size (a vision model's
    processor resizes larger frames down to it, keeping the aspect ratio)."""
    from harness.models.weights import resolve_model

    folder, gguf = resolve_model(model, what)
    if gguf:
        raise HarnessError(f"{what} {model}: a GGUF file cannot be trained; give a transformers model folder.")
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise HarnessError(f"training needs torch and transformers ({first_line(exc)}); install them with {INSTALL}.") from None
    kw: dict[str, Any] = {"local_files_only": True, "trust_remote_code": trust_remote_code}
    try:
        config = transformers.AutoConfig.from_pretrained(str(folder), **kw)
    except Exception as exc:
        raise HarnessError(f"{what} {folder}: cannot read the model configuration ({first_line(exc)}).") from None
    vision = getattr(config, "vision_config", None) is not None
    try:
        if vision:
            from harness.models.hf import vision_processor

            processing = vision_processor(transformers, folder, config, kw, who=what)
            tokenizer = processing.tokenizer
            images = processing.image_processor
            size = getattr(images, "size", None)
            if image_max_pixels and size is not None and "longest_edge" in size:  # a dict, or transformers' SizeDict
                size["longest_edge"] = int(image_max_pixels)
                if getattr(images, "max_pixels", None) is not None:
                    images.max_pixels = int(image_max_pixels)
        else:
            processing = tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), **kw)
    except Exception as exc:
        raise HarnessError(f"{what} {folder}: cannot load its {'processor' if vision else 'tokenizer'} ({first_line(exc)}).") from None
    if not getattr(processing, "chat_template", None) and not getattr(tokenizer, "chat_template", None):
        raise HarnessError(f"{what} {folder}: the model has no chat template; the recipe trains chat turns (system, user, assistant) "
                           f"- use a chat/instruct model or add its chat template to the folder.")
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise HarnessError(f"{what} {folder}: the tokenizer has neither a pad nor an end-of-sequence token.")
        tokenizer.pad_token = tokenizer.eos_token
    auto = transformers.AutoModelForImageTextToText if vision else transformers.AutoModelForCausalLM
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    try:
        loaded = auto.from_pretrained(str(folder), config=config, dtype=torch_dtype, **kw)
    except Exception as exc:
        raise HarnessError(f"{what} {folder}: cannot load the weights ({first_line(exc)}).") from None
    return Policy(loaded, processing, vision, folder)


_VISION_PARTS = ("visual", "vision", "merger", "multi_modal_projector", "mm_projector", "image_newline")


def lora_targets(model: Any) -> str:
    """A peft target_modules regex for the language model's linear layers only: the vision tower and the
    merger / projector stay frozen (LlamaFactory's and ms-swift's defaults for Qwen2.5-VL), lm_head too."""
    import torch

    leaves = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                     if isinstance(module, torch.nn.Linear) and not any(part in name.split(".") or part in name for part in _VISION_PARTS)
                     and not name.endswith("lm_head")})
    if not leaves:
        raise HarnessError("the model has no linear layers outside its vision tower to put LoRA on.")
    vision = "|".join(_VISION_PARTS)
    return rf"^(?!.*(?:{vision})).*\.(?:{'|'.join(map(re.escape, leaves))})$"


def lora_config(model: Any, r: int, alpha: int, dropout: float):
    try:
        from peft import LoraConfig
    except ImportError as exc:
        raise HarnessError(f"LoRA training needs peft ({first_line(exc)}); install it with {INSTALL}.") from None
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none", task_type="CAUSAL_LM", target_modules=lora_targets(model))


def freeze_vision_tower(model: Any) -> None:
    """Everything trainable except the vision encoder; its merger (the adapter to the language model) trains."""
    for name, parameter in model.named_parameters():
        parts = name.split(".")
        if ("visual" in parts or "vision_tower" in parts) and "merger" not in parts:
            parameter.requires_grad_(False)


def trained_part(policy: "Policy", lora_rank: int, lora_alpha: int, lora_dropout: float = 0.0):
    """What a recipe trains: LoRA on the language model (rank > 0: the peft config to hand to TRL; alpha 0 means
    2 x rank), else None after freezing the vision encoder (full fine-tuning of the rest)."""
    if lora_rank:
        return lora_config(policy.model, lora_rank, lora_alpha or 2 * lora_rank, lora_dropout)
    freeze_vision_tower(policy.model)
    return None


def save_trained(trainer: Any, policy: "Policy", folder: Path, adapter: bool) -> None:
    """The result into the checkpoint folder: the LoRA adapter (on train.json's base model), or full weights with
    the tokenizer / processor, which `--model hf --model-args model=DIR` loads either way."""
    if adapter:
        save_adapter(trainer.model, folder)
        return
    trainer.save_model(str(folder))
    policy.processing_class.save_pretrained(str(folder))


def conversation_dataset(records: Sequence[dict[str, Any]], vision: bool):
    """A datasets.Dataset of TRL conversational rows; a vision model's "images" column (file paths) is decoded to
    images lazily, as rows are read."""
    from datasets import Dataset, Image, Sequence as Many

    dataset = Dataset.from_list(list(records))
    return dataset.cast_column("images", Many(Image())) if vision else dataset


# --------------------------------------------------------------------------- logging and checkpoints


def log_callback(folder: Path):
    """A transformers TrainerCallback appending every log entry (with step and epoch) to folder/log.jsonl."""
    from transformers import TrainerCallback

    path = Path(folder) / LOG_FILE

    class JsonlLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                entry = {"step": state.global_step, "epoch": state.epoch, **{k: v for k, v in logs.items() if isinstance(v, (int, float, str))}}
                with path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(entry) + "\n")

    return JsonlLog()


def read_log(folder: Path) -> list[dict[str, Any]]:
    path = Path(folder) / LOG_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def last_checkpoint(folder: Path) -> str | None:
    """The newest Trainer checkpoint under folder/checkpoints (what `--resume` continues from)."""
    from transformers.trainer_utils import get_last_checkpoint

    where = Path(folder) / CHECKPOINTS
    return get_last_checkpoint(str(where)) if where.is_dir() else None


def save_adapter(model: Any, folder: Path) -> None:
    """The LoRA adapter (adapter_config.json + adapter_model.safetensors) into the checkpoint folder itself,
    which `--model hf --model-args model=DIR` loads on top of train.json's base model."""
    model.save_pretrained(str(folder), safe_serialization=True)


def base_identity(folder: Path) -> dict[str, Any]:
    """train.json's base_model: the folder and a fingerprint of its weight files."""
    from harness.models.weights import fingerprint, model_files

    return {"model": str(folder), "weights": fingerprint(model_files(Path(folder)))}


def common_training_arguments(settings: Mapping[str, Any], out: Path, accumulation: int, steps: int | None) -> dict[str, Any]:
    """TrainingArguments shared by the recipes' SFT and GRPO configs, set explicitly (not left to defaults)."""
    import torch

    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    args: dict[str, Any] = {
        "output_dir": str(Path(out) / CHECKPOINTS),
        "per_device_train_batch_size": settings["per_device_batch"],
        "gradient_accumulation_steps": accumulation,
        "learning_rate": settings["learning_rate"],
        "num_train_epochs": settings["epochs"],
        "warmup_steps": settings["warmup_ratio"],  # transformers 5: a float in [0, 1) is a ratio of the total steps
        "lr_scheduler_type": settings["lr_scheduler"],
        "weight_decay": settings["weight_decay"],
        "max_grad_norm": settings["max_grad_norm"],
        "seed": settings["seed"],
        "data_seed": settings["seed"],
        "logging_steps": settings["logging_steps"],
        "save_strategy": "steps",
        "save_steps": settings["save_steps"],
        "save_total_limit": 2,
        "report_to": [],
        "bf16": bf16,
        "gradient_checkpointing": bool(settings.get("gradient_checkpointing")) and torch.cuda.is_available(),
        "dataloader_num_workers": 0,
        "remove_unused_columns": False,
        "use_cpu": not torch.cuda.is_available(),
    }
    # DeepSpeed (ZeRO-2, the paper's GRPO setting) comes from the accelerate config the run is launched with
    # (configs/accelerate/), never from here: one place decides it
    if steps:
        args["max_steps"] = steps
    return args


def parse_overrides(items, settings: Mapping[str, Setting]) -> dict[str, Any]:
    """--set NAME=VALUE pairs, each value read as JSON when it parses (numbers, true/false, lists), else text."""
    given: dict[str, Any] = {}
    for item in items or ():
        name, sep, text = str(item).partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in settings:
            known = ", ".join(settings)
            raise HarnessError(f"--set {item}: give NAME=VALUE with NAME one of {known}.")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        if isinstance(value, list):
            value = tuple(value)
        given[name] = value
    return given


def resume_arguments(folder: Path, recipe: str) -> dict[str, Any]:
    """What a checkpoint folder was started with, to resume it with the same settings."""
    from harness.training import read_record

    record = read_record(Path(folder))
    if record.recipe != recipe:
        raise HarnessError(f"{folder}: a {record.recipe} checkpoint, not {recipe}; resume it with `harness train {record.recipe} --resume`.")
    if record.status == "finished":
        raise HarnessError(f"{folder}: this training has finished; nothing to resume.")
    config = dict(record.config)
    config["settings"] = {k: tuple(v) if isinstance(v, list) else v for k, v in config.get("settings", {}).items()}
    return config


def recipe_options(f):
    """The options every training stage has (its own: --data, the model, --ablation), in one place."""
    import click

    for option in reversed([
        click.option("--output-dir", type=click.Path(path_type=Path), default=Path("checkpoints"), show_default=True,
                     help="The checkpoint folder is made in here."),
        click.option("--per-device-batch", type=int, default=None, help="Per-device batch; accumulation = batch / (this x devices)."),
        click.option("--set", "overrides", multiple=True, help="Change a setting: NAME=VALUE (recorded as a command-line choice)."),
        click.option("--max-steps", type=int, default=None, help="Stop after N optimiser steps (smoke tests)."),
        click.option("--limit", type=int, default=None, help="Use the first N rows of the data only."),
        click.option("--dtype", default="auto", show_default=True, help="auto | bfloat16 | float32"),
        click.option("--trust-remote-code", is_flag=True, help="Let transformers run the model folder's own code."),
        click.option("--resume", type=click.Path(path_type=Path, file_okay=False), default=None,
                     help="Continue an interrupted checkpoint folder of this stage from its last checkpoint, with its recorded settings."),
    ]):
        f = option(f)
    return f


def given_settings(overrides, per_device_batch: int | None, settings: Mapping[str, Setting]) -> dict[str, Any]:
    given = parse_overrides(overrides, settings)
    if per_device_batch is not None:
        given["per_device_batch"] = per_device_batch
    return given
