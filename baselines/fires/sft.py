"""`harness train fires-sft`: the FIRES cold start (section 3.4.1) - LoRA SFT on the synthesised
`<think>...</think><response>GOLD</response>` targets, loss on the assistant turn only.

The prompt of every training row is the request the harness sends at evaluation (`--task mesc --task-args
prompt=fires`: the FIRES system prompt, the history as one transcript message, the frames on that message
before its text, as the hf adapter places them), so the checkpoint is trained on exactly what it is
evaluated with. Settings: `baselines/fires/settings.py` (each with its source).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import click

from harness import training
from harness.errors import HarnessError

from .. import trainkit
from . import ablations, data, settings

RECIPE = "fires-sft"


def prompt_messages(row: data.SynthRow, vision: bool, frames: bool = True) -> tuple[list[dict[str, Any]], list[str]]:
    """The evaluation request of the row's instance as chat messages, and its images. Vision-language models get
    content blocks on every message (images first on the message that has them); text models get strings."""
    from tasks import mesc, prompting

    images = list(row.images) if frames and vision else []
    request = prompting.build_request(prompting.PromptOptions("fires"), mesc.MescTask.roles, mesc.MescTask.system_prompt,
                                      row.history, (), images)
    messages = []
    for message in request.messages:
        if vision:
            content: Any = [{"type": "image", "text": None} for _ in message.images] + [{"type": "text", "text": message.content}]
        else:
            content = message.content
        messages.append({"role": message.role, "content": content})
    return messages, images


def completion_message(text: str, vision: bool) -> list[dict[str, Any]]:
    return [{"role": "assistant", "content": [{"type": "text", "text": text}] if vision else text}]


def sft_dataset(rows: Sequence[data.SynthRow], vision: bool, frames: bool, drop_aspect: str | None):
    records = []
    for row in rows:
        prompt, images = prompt_messages(row, vision, frames)
        target = ablations.target_without(row, drop_aspect) if drop_aspect else row.target
        record: dict[str, Any] = {"prompt": prompt, "completion": completion_message(target, vision)}
        if vision:
            record["images"] = images
        records.append(record)
    return trainkit.conversation_dataset(records, vision)


def train(data_dir: Path, base: str, output_dir: Path, ablation: str = "none", given: dict[str, Any] | None = None,
          max_steps: int | None = None, limit: int | None = None, dtype: str = "auto", trust_remote_code: bool = False,
          resume: Path | None = None, log=click.echo) -> Path:
    ablation = ablations.check(ablation, "sft")
    manifest, rows = data.read_rows(data_dir)
    ablations.check_data(ablation, manifest.variant, data_dir)
    if limit:
        rows = rows[:limit]
    chosen = trainkit.with_overrides(settings.SFT, given or {})
    values = trainkit.values(chosen)
    accumulation = trainkit.accumulation_steps(values["batch_size"], values["per_device_batch"], trainkit.processes())
    frames = ablation != "wo-video"

    try:
        from trl import SFTConfig, SFTTrainer
    except ImportError as exc:
        raise HarnessError(f"fires-sft needs TRL ({exc}); install it with {trainkit.INSTALL}.") from None
    policy = trainkit.load_policy(base, dtype, trust_remote_code, image_max_pixels=values["image_max_pixels"])
    dataset = sft_dataset(rows, policy.vision, frames, ablations.dropped_aspect(ablation))
    lora = trainkit.lora_config(policy.model, values["lora_rank"], values["lora_alpha"], values["lora_dropout"])

    if resume is not None:
        folder = training.TrainFolder.open(Path(resume))
    else:
        folder = training.start(RECIPE, output_dir, config={**trainkit.record(chosen), "ablation": ablation, "accumulation_steps": accumulation,
                                                            "devices": trainkit.processes(), "max_steps": max_steps, "limit": limit,
                                                            "frames": frames, "cli": {"data": str(data_dir), "base": base}},
                                base_model=trainkit.base_identity(policy.folder), weights="peft",
                                data=[training.file_source(Path(data_dir) / data.ROWS, variant=manifest.variant, rows=len(rows),
                                                           teacher=manifest.teacher.get("model"), prompt_sha256=manifest.prompt_sha256)],
                                evaluate=evaluation(frames))
    with folder.working():
        folder.write_header(evaluate=evaluation(frames, folder.path))
        config = SFTConfig(
            **trainkit.common_training_arguments(values, folder.path, accumulation, max_steps),
            max_length=values["max_length"],
            truncation_mode="keep_start",  # image tokens sit in the prompt: never cut from the left
            completion_only_loss=True,  # loss on the assistant turn only
            packing=False,
            loss_type="nll",
        )
        trainer = SFTTrainer(model=policy.model, args=config, train_dataset=dataset, processing_class=policy.processing_class,
                             peft_config=lora, callbacks=[trainkit.log_callback(folder.path)])
        trainer.train(resume_from_checkpoint=trainkit.last_checkpoint(folder.path) if resume is not None else None)
        trainkit.save_trained(trainer, policy, folder.path, adapter=True)
        folder.finish()
    log(f"{folder.path}: fires-sft finished ({len(rows)} rows, ablation {ablation}); evaluate it with\n  {folder.header.evaluate['command']}")
    return folder.path


def evaluation(frames: bool, folder: Path | None = None) -> dict[str, Any]:
    """How the checkpoint is evaluated: the FIRES prompt mode on MESC (frames off for the w/o-Video ablation),
    and the command that does it (for the checkpoint `folder`)."""
    task_args = {"prompt": "fires"} if frames else {"prompt": "fires", "frames_dir": "off"}
    args = ",".join(f"{k}={v}" for k, v in task_args.items())
    where = str(folder) if folder is not None else "CHECKPOINT"
    return {"task": "mesc", "task_args": task_args, "command": f"harness run --task mesc --task-args {args} --model hf --model-args model={where}"}


@click.command(RECIPE, help=f"""LoRA SFT cold start of FIRES on a fires-synth dataset (FIRES section 3.4.1).

The prompt is the harness's MESC request in prompt=fires mode; the target is the synthesised thinking and the
gold response; loss on the assistant turn only; LoRA on the language model's linear layers (vision tower and
merger frozen). Writes a checkpoint folder (train.json, adapter, log.jsonl) that `harness run --model hf
--model-args model=DIR` evaluates. Settings, with their sources (change one with --set NAME=VALUE):

{trainkit.help_lines(settings.SFT)}
""")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), help="A fires-synth dataset folder.")
@click.option("--base", help="The base chat model folder (Qwen2.5-VL-7B-Instruct in the paper; any chat model).")
@click.option("--ablation", type=click.Choice(ablations.SFT_CHOICES), default="none", show_default=True,
              help="Which FIRES ablation this training is (Tables 2 and 4); recorded in train.json.")
@trainkit.recipe_options
def fires_sft(data_dir, base, ablation, output_dir, per_device_batch, overrides, max_steps, limit, dtype, trust_remote_code, resume) -> None:
    given = trainkit.given_settings(overrides, per_device_batch, settings.SFT)
    if resume is not None:
        recorded = trainkit.resume_arguments(resume, RECIPE)
        data_dir, base, ablation = Path(recorded["cli"]["data"]), recorded["cli"]["base"], recorded["ablation"]
        given, max_steps, limit = recorded["settings"], recorded["max_steps"], recorded["limit"]
    if data_dir is None or base is None:
        raise HarnessError("fires-sft needs --data (a fires-synth folder) and --base (a chat model folder), or --resume FOLDER.")
    train(data_dir, base, output_dir, ablation, given, max_steps, limit, dtype, trust_remote_code, resume)
