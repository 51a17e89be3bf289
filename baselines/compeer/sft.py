"""`harness train compeer-sft`: COMPEER-SFT (Tables 2-3), the policy fine-tuned on the CER data by supervised
learning only: the prompt is the row's own task request in prompt=compeer mode, the target the three annotated
steps and a response in the COMPEER format (`tasks.compeer_reasoning.render_steps`), loss on the target only.

Which rows teach (the paper gives no rule): rows whose three steps were all judged True; their target response is
the model's when it matches or beats the original (`model_better`, `both_good`), else the original response.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import click

from harness import training
from harness.errors import HarnessError

from .. import trainkit
from . import data, settings
from .grpo import grpo_dataset

RECIPE = "compeer-sft"


def targets(rows: Sequence[data.CerRow]) -> tuple[list[data.CerRow], list[str]]:
    """The rows that teach and their target outputs."""
    from tasks.compeer_reasoning import render_steps

    kept, outputs = [], []
    for row in rows:
        labels = row.annotations
        if labels.final_steps is None or not all(labels.final_steps) or labels.final_preference is None:
            continue
        response = row.response if labels.final_preference in ("model_better", "both_good") else row.original
        kept.append(row)
        outputs.append(render_steps(row.steps, response))
    return kept, outputs


def train(data_dir: Path, base: str, output_dir: Path, given: dict[str, Any] | None = None, max_steps: int | None = None,
          limit: int | None = None, dtype: str = "auto", trust_remote_code: bool = False, log=click.echo) -> Path:
    _, rows = data.read_rows(data_dir)
    rows = rows[:limit] if limit else rows
    kept, outputs = targets(rows)
    if not kept:
        raise HarnessError(f"{data_dir}: no row has all three steps judged True and a preference; annotate the data with "
                           f"`harness train compeer-annotate` first.")
    chosen = trainkit.with_overrides(settings.SFT, given or {})
    values = trainkit.values(chosen)
    accumulation = trainkit.accumulation_steps(values["batch_size"], values["per_device_batch"], trainkit.processes())
    try:
        from trl import SFTConfig, SFTTrainer
    except ImportError as exc:
        raise HarnessError(f"compeer-sft needs TRL ({exc}); install it with {trainkit.INSTALL}.") from None
    policy = trainkit.load_policy(base, dtype, trust_remote_code)
    dataset = grpo_dataset(kept).remove_columns(["reference", "history", "speakers"])
    dataset = dataset.add_column("completion", [[{"role": "assistant", "content": o}] for o in outputs])
    peft_config = trainkit.trained_part(policy, values["lora_rank"], values["lora_alpha"])
    folder = training.start(RECIPE, output_dir, config={**trainkit.record(chosen), "variant": "SFT", "accumulation_steps": accumulation,
                                                        "devices": trainkit.processes(), "max_steps": max_steps, "limit": limit, "rows": len(kept)},
                            base_model=trainkit.base_identity(policy.folder), weights="peft" if peft_config else "full",
                            data=[training.file_source(data.rows_file(data_dir), rows=len(kept))],
                            evaluate={"task": "esc-eval", "task_args": {"prompt": "compeer"}})
    with folder.working():
        config = SFTConfig(**trainkit.common_training_arguments(values, folder.path, accumulation, max_steps), max_length=values["max_length"],
                           completion_only_loss=True, packing=False, loss_type="nll")
        trainer = SFTTrainer(model=policy.model, args=config, train_dataset=dataset, processing_class=policy.processing_class,
                             peft_config=peft_config, callbacks=[trainkit.log_callback(folder.path)])
        trainer.train()
        trainkit.save_trained(trainer, policy, folder.path, adapter=peft_config is not None)
        folder.finish()
    log(f"{folder.path}: compeer-sft finished ({len(kept)} of {len(rows)} rows teach)")
    return folder.path


@click.command(RECIPE, help=f"""COMPEER-SFT: the policy fine-tuned on annotated CER rows by supervised learning only.

Settings, with their sources (change one with --set NAME=VALUE):

{trainkit.help_lines(settings.SFT)}
""")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True, help="An annotated CER folder.")
@click.option("--base", required=True, help="The policy's base chat model folder.")
@trainkit.recipe_options
def compeer_sft(data_dir, base, output_dir, per_device_batch, overrides, max_steps, limit, dtype, trust_remote_code, resume) -> None:
    if resume is not None:
        raise HarnessError("compeer-sft: --resume is not supported yet; start it again.")
    train(data_dir, base, output_dir, trainkit.given_settings(overrides, per_device_batch, settings.SFT), max_steps, limit, dtype, trust_remote_code)
