"""`harness train compeer-reward` (train UnifiReward, or the PRM / ORM of Table 1, with TRL's SFTTrainer) and
`harness train compeer-reward-eval` (COMPEER Table 1's columns for any judge model on held-out annotated rows).

The reward model is trained in full (the language model and, for a vision-language base, the merger; the vision
tower frozen), as the paper's implementation details say; the checkpoint folder holds full weights with
train.json, so `--model hf --model-args model=DIR` (or vllm) serves it as a judge like any model.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import click

from harness import options, training
from harness.errors import HarnessError

from .. import trainkit
from . import data, settings, unifireward

RECIPE = "compeer-reward"
HELD_OUT = "held_out.jsonl"  # the rows kept out of training, in the checkpoint folder (for compeer-reward-eval)


def split_held_out(rows: list[data.CerRow], n: int, seed: int) -> tuple[list[data.CerRow], list[data.CerRow]]:
    """(train, held out): whole dialogues, in an order drawn from (seed, dialogue id), held out until >= n rows."""
    if n <= 0:
        return rows, []
    order = sorted({r.dialogue for r in rows}, key=lambda d: hashlib.sha256(f"{seed}|{d}".encode()).hexdigest())
    held: set[str] = set()
    count = 0
    for dialogue in order:
        if count >= n:
            break
        held.add(dialogue)
        count += sum(r.dialogue == dialogue for r in rows)
    if len(held) == len(order):
        raise HarnessError(f"--set held_out={n}: that holds out every dialogue; keep fewer rows out.")
    return [r for r in rows if r.dialogue not in held], [r for r in rows if r.dialogue in held]


def train(data_dir: Path, base: str, output_dir: Path, given: dict[str, Any] | None = None, max_steps: int | None = None,
          limit: int | None = None, dtype: str = "auto", trust_remote_code: bool = False, log=click.echo) -> Path:
    _, rows = data.read_rows(data_dir)
    chosen = trainkit.with_overrides(settings.REWARD, given or {})
    values = trainkit.values(chosen)
    kind = values["kind"]
    if kind not in unifireward.KINDS:
        raise HarnessError(f"--set kind={kind}: one of {', '.join(unifireward.KINDS)}.")
    accumulation = trainkit.accumulation_steps(values["batch_size"], values["per_device_batch"], trainkit.processes())
    train_rows, held_out = split_held_out(rows[:limit] if limit else rows, int(values["held_out"]), values["seed"])
    examples, unlabelled = unifireward.sft_rows(train_rows, kind)
    if not examples:
        raise HarnessError(f"{data_dir}: no annotated rows to train on ({unlabelled} rows lack final labels); annotate them with "
                           f"`harness train compeer-annotate`.")
    try:
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer
    except ImportError as exc:
        raise HarnessError(f"compeer-reward needs TRL ({exc}); install it with {trainkit.INSTALL}.") from None
    policy = trainkit.load_policy(base, dtype, trust_remote_code)
    trainkit.freeze_vision_tower(policy.model)
    if policy.vision:  # text-only judge conversations: the vision model still takes content blocks
        for example in examples:
            for message in example["prompt"] + example["completion"]:
                message["content"] = [{"type": "text", "text": message["content"]}]
    folder = training.start(RECIPE, output_dir, config={**trainkit.record(chosen), "accumulation_steps": accumulation, "devices": trainkit.processes(),
                                                        "max_steps": max_steps, "limit": limit, "examples": len(examples),
                                                        "unlabelled_rows": unlabelled, "held_out_rows": len(held_out),
                                                        "prompt_version": unifireward.PROMPT_VERSION},
                            base_model=trainkit.base_identity(policy.folder), weights="full",
                            data=[training.file_source(data.rows_file(data_dir), rows=len(train_rows))],
                            evaluate={"judge_kind": kind,
                                      "command": "harness train compeer-reward-eval --data CHECKPOINT/held_out.jsonl --judge hf --judge-args model=CHECKPOINT"})
    with folder.working():
        if held_out:
            data.write_rows(folder.path / HELD_OUT, held_out)
        config = SFTConfig(**trainkit.common_training_arguments(values, folder.path, accumulation, max_steps), max_length=values["max_length"],
                           completion_only_loss=True, packing=False, loss_type="nll")
        trainer = SFTTrainer(model=policy.model, args=config, train_dataset=Dataset.from_list(examples), processing_class=policy.processing_class,
                             callbacks=[trainkit.log_callback(folder.path)])
        trainer.train()
        trainkit.save_trained(trainer, policy, folder.path, adapter=False)
        folder.finish()
    log(f"{folder.path}: compeer-reward finished ({kind}, {len(examples)} judge rounds from {len(train_rows)} rows, {len(held_out)} held out)")
    return folder.path


@click.command(RECIPE, help=f"""Train COMPEER's generative reward model on annotated CER data (TRL SFTTrainer).

Each annotated row becomes a multi-turn judge conversation (the three reasoning steps, then the response against
the original), one training example per round. Settings, with their sources (change one with --set NAME=VALUE):

{trainkit.help_lines(settings.REWARD)}
""")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True, help="A CER folder (or data.jsonl) with final annotations.")
@click.option("--base", required=True, help="The base chat model folder (Qwen2.5-VL-7B in the paper).")
@trainkit.recipe_options
def compeer_reward(data_dir, base, output_dir, per_device_batch, overrides, max_steps, limit, dtype, trust_remote_code, resume) -> None:
    if resume is not None:
        raise HarnessError("compeer-reward: --resume is not supported for full-weight reward training yet; start it again.")
    train(data_dir, base, output_dir, trainkit.given_settings(overrides, per_device_batch, settings.REWARD), max_steps, limit, dtype, trust_remote_code)


@click.command("compeer-reward-eval")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True, help="Held-out annotated CER rows (a folder or a .jsonl).")
@click.option("--judge", "judge_spec", required=True, help="The judge model: an adapter spec, e.g. hf (with --judge-args model=CKPT) or openai:gpt-4o.")
@click.option("--judge-args", help="The judge adapter's options, k=v,...")
@click.option("--kind", type=click.Choice(unifireward.KINDS), default="unified", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@options.cache
def compeer_reward_eval(data_dir, judge_spec, judge_args, kind, as_json, cache_path, no_cache) -> None:
    """COMPEER Table 1 for one judge: per step weighted-F1 and recall of the False class, and the response's four-way
    weighted-F1 and accuracy, on held-out annotated rows (the judge sees each row's steps and response)."""
    import json

    from harness.lifecycle import ModelSpec, close_models, open_cache, open_models

    _, rows = data.read_rows(data_dir)
    rows = [r for r in rows if r.annotations.final_steps is not None or r.annotations.final_preference is not None]
    if not rows:
        raise HarnessError(f"{data_dir}: no rows with final annotations to evaluate on.")
    models = open_models({"judge": ModelSpec.parse(judge_spec, options.parse_kv(judge_args, "--judge-args"))}, open_cache(cache_path, not no_cache),
                         None, {"judge": "--judge-args"})
    try:
        items = [unifireward.Item(r.history, r.steps, r.response, r.original) for r in rows]
        judged = unifireward.judge(items, models["judge"].generate, kind)
    finally:
        close_models(models)
    report = {"judge": judge_spec, "kind": kind, **unifireward.evaluate(rows, judged, kind)}
    if as_json:
        click.echo(json.dumps(report, indent=1))
        return
    click.echo(f"{report['rows']} held-out rows, judge {judge_spec} ({kind}); unreadable verdicts {report['unreadable']}")
    for k in range(data.N_STEPS):
        step = report.get(f"step{k + 1}")
        if step:
            click.echo(f"  step {k + 1}: weighted-F1 {step['weighted_f1']:.2f}  recall(False) {step['false_recall']:.2f}  (n {step['n']})")
    if "response" in report:
        click.echo(f"  response: weighted-F1 {report['response']['weighted_f1']:.2f}  accuracy {report['response']['accuracy']:.2f}  (n {report['response']['n']})")
