"""`harness train compeer-grpo`: COMPEER's policy optimisation (eq. 2-3) with TRL's GRPOTrainer, the reward from a
generative judge (UnifiReward, or a PRM + ORM pair for COMPEER-POR) and, for COMPEER-URP, the redundancy-aware
reweighting (eq. 5-7) applied inside each group before the advantages.

Prompts are the harness's own requests in `prompt=compeer` mode for each CER row's history (the task of the row's
source: esconv, mesc), so the policy is trained on the prompt it is evaluated with. The judge is any adapter
(`--judge hf --judge-args model=REWARD_CKPT`, in this process; or an `openai` endpoint serving it), asked in
batches, round by round (`unifireward.judge`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import click

from harness import options, training
from harness.contract import Sample, Turn
from harness.errors import HarnessError

from .. import trainkit
from . import data, settings, unifireward

RECIPE = "compeer-grpo"
SETTINGS = settings.GRPO
VARIANTS = {"UR": "UnifiReward, no reweighting", "URP": "UnifiReward + redundancy reweighting", "POR": "PRM + ORM (two judges)"}


def row_sample(row: data.CerRow) -> Sample:
    return Sample(id=row.id, history=tuple(row.history), reference=row.original)


def grpo_dataset(rows: Sequence[data.CerRow]):
    """Prompts in prompt=compeer mode (each row's own task builds them) and the reward columns."""
    from datasets import Dataset

    from harness.runner import load_task

    tasks: dict[str, Any] = {}
    records = []
    for row in rows:
        if row.source not in tasks:
            tasks[row.source] = load_task(row.source, {"prompt": "compeer"})
        request = tasks[row.source].build_request(row_sample(row))
        records.append({"prompt": [{"role": m.role, "content": m.content} for m in request.messages], "reference": row.original,
                        "history": [t.text for t in row.history], "speakers": [t.speaker for t in row.history]})
    return Dataset.from_list(records)


class JudgeReward:
    """A TRL reward function: each completion parsed in the COMPEER format, judged by the judge model(s), scored."""

    __name__ = "unifireward"

    def __init__(self, answer: unifireward.Answer, orm_answer: unifireward.Answer | None = None):
        self.answer, self.orm_answer = answer, orm_answer

    def __call__(self, prompts=None, completions=None, completion_ids=None, **columns) -> list[float]:
        from baselines.fires.reward import completion_text
        from tasks.compeer_reasoning import parse_compeer_output

        items = []
        for completion, reference, history, speakers in zip(completions, columns["reference"], columns["history"], columns["speakers"]):
            parsed = parse_compeer_output(completion_text(completion))
            steps = list(parsed.details.get("steps") or [None] * data.N_STEPS)
            items.append(unifireward.Item([Turn(speaker=s, text=t) for s, t in zip(speakers, history)], steps, parsed.response or None, reference))
        if self.orm_answer is None:
            judged = unifireward.judge(items, self.answer, "unified")
            rewards = [j.reward for j in judged]
        else:  # COMPEER-POR: the process and the outcome reward models apart, summed
            prm, orm = unifireward.judge(items, self.answer, "prm"), unifireward.judge(items, self.orm_answer, "orm")
            judged = prm + orm
            rewards = [p.reward + o.reward for p, o in zip(prm, orm)]
        log = columns.get("log_metric")
        if callable(log):
            log("judge_unreadable", float(sum(j.unreadable for j in judged)))
        return rewards


def reward_function(judge: JudgeReward, settings: dict[str, Any]) -> Callable[..., list[float]]:
    if not settings["reweight"]:
        return judge
    from baselines.fires.reward import completion_text
    from tasks.compeer_reasoning import parse_compeer_output

    from .embed import default_encoder
    from .reweight import ReweightSettings, trl_reward_wrapper

    # redundancy is measured on the replies (what the seeker reads), not on the reasoning before them
    return trl_reward_wrapper(judge, settings["num_generations"], ReweightSettings(alpha=settings["alpha"], beta=settings["length_beta"]),
                              default_encoder(), text=lambda c: parse_compeer_output(completion_text(c)).response)


def train(data_dir: Path, base: str, judge_spec: str, judge_args: dict[str, Any], output_dir: Path, orm_spec: str | None = None,
          orm_args: dict[str, Any] | None = None, given: dict[str, Any] | None = None, max_steps: int | None = None, limit: int | None = None,
          dtype: str = "auto", trust_remote_code: bool = False, log=click.echo) -> Path:
    from harness.lifecycle import ModelSpec, close_models, open_models

    _, rows = data.read_rows(data_dir)
    rows = rows[:limit] if limit else rows
    chosen = trainkit.with_overrides(SETTINGS, given or {})
    values = trainkit.values(chosen)
    accumulation = trainkit.accumulation_steps(values["batch_size"], values["per_device_batch"], trainkit.processes())
    if (values["per_device_batch"] * accumulation * trainkit.processes()) % values["num_generations"]:
        raise HarnessError(f"batch size {values['batch_size']} is not a multiple of G = {values['num_generations']}.")
    variant = "POR" if orm_spec else ("URP" if values["reweight"] else "UR")
    try:
        from trl import GRPOConfig, GRPOTrainer
    except ImportError as exc:
        raise HarnessError(f"compeer-grpo needs TRL ({exc}); install it with {trainkit.INSTALL}.") from None
    specs = {"judge": ModelSpec.parse(judge_spec, judge_args)}
    if orm_spec:
        specs["orm"] = ModelSpec.parse(orm_spec, orm_args or {})
    judges = open_models(specs, None, None, {"judge": "--judge-args", "orm": "--orm-judge-args"})
    try:
        judge = JudgeReward(judges["judge"].generate, judges["orm"].generate if orm_spec else None)
        policy = trainkit.load_policy(base, dtype, trust_remote_code)
        dataset = grpo_dataset(rows)
        peft_config = trainkit.trained_part(policy, values["lora_rank"], values["lora_alpha"])
        folder = training.start(RECIPE, output_dir, config={**trainkit.record(chosen), "variant": variant, "accumulation_steps": accumulation,
                                                            "devices": trainkit.processes(), "max_steps": max_steps, "limit": limit},
                                base_model=trainkit.base_identity(policy.folder), weights="peft" if peft_config else "full",
                                data=[training.file_source(data.rows_file(data_dir), rows=len(rows))],
                                reward={"judge": {name: {"model": m.name, "identity": m.cache_identity()} for name, m in judges.items()},
                                        "kind": "prm+orm" if orm_spec else "unified", "prompt_version": unifireward.PROMPT_VERSION,
                                        "reweight": values["reweight"] and {"alpha": values["alpha"], "beta": values["length_beta"]}},
                                evaluate={"task": "esc-eval", "task_args": {"prompt": "compeer"}})
        with folder.working():
            config = GRPOConfig(**trainkit.common_training_arguments(values, folder.path, accumulation, max_steps),
                                num_generations=values["num_generations"], beta=values["beta"], loss_type=values["loss_type"],
                                epsilon=values["epsilon"], scale_rewards=values["scale_rewards"], num_iterations=values["num_iterations"],
                                temperature=values["temperature"], top_p=values["top_p"], max_completion_length=values["max_completion_length"],
                                log_completions=False)
            trainer = GRPOTrainer(model=policy.model, reward_funcs=[reward_function(judge, values)], args=config, train_dataset=dataset,
                                  processing_class=policy.processing_class, peft_config=peft_config, callbacks=[trainkit.log_callback(folder.path)])
            trainer.train()
            trainkit.save_trained(trainer, policy, folder.path, adapter=peft_config is not None)
            folder.finish()
    finally:
        close_models(judges)
    log(f"{folder.path}: compeer-grpo finished (COMPEER-{variant}, {len(rows)} prompts); evaluate it with\n"
        f"  harness run --task esc-eval --task-args prompt=compeer --model hf --model-args model={folder.path} --role seeker=... --role judge=...")
    return folder.path


@click.command(RECIPE, help=f"""GRPO of the COMPEER policy with a generative judge (UnifiReward, or PRM + ORM) and the
redundancy-aware reweighting. Variants (COMPEER Tables 2-3): -UR (--set reweight=false), -URP (default), -POR
(--orm-judge). Settings, with their sources (change one with --set NAME=VALUE):

{trainkit.help_lines(SETTINGS)}
""")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True, help="A CER folder (its histories are the prompts).")
@click.option("--base", required=True, help="The policy's base chat model folder (Qwen2.5-VL-7B in the paper).")
@click.option("--judge", "judge_spec", required=True, help="The reward model: e.g. hf (with --judge-args model=REWARD_CKPT).")
@click.option("--judge-args", help="The judge adapter's options, k=v,...")
@click.option("--orm-judge", "orm_spec", help="COMPEER-POR: the outcome reward model (then --judge is the process reward model).")
@click.option("--orm-judge-args", "orm_args", help="The ORM adapter's options.")
@trainkit.recipe_options
def compeer_grpo(data_dir, base, judge_spec, judge_args, orm_spec, orm_args, output_dir, per_device_batch, overrides, max_steps, limit, dtype,
                 trust_remote_code, resume) -> None:
    if resume is not None:
        raise HarnessError("compeer-grpo: --resume is not supported yet; start it again.")
    train(data_dir, base, judge_spec, options.parse_kv(judge_args, "--judge-args"), output_dir, orm_spec, options.parse_kv(orm_args, "--orm-judge-args"),
          trainkit.given_settings(overrides, per_device_batch, SETTINGS), max_steps, limit, dtype, trust_remote_code)
