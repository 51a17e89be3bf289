"""`harness train fires-grpo`: FIRES response-supervision RL (section 3.4.2-3.4.3) with TRL's GRPOTrainer.

The policy starts from the fires-sft checkpoint: its LoRA is merged into the base model, the merged model is
saved under the new checkpoint's `init/` folder (it is the reference model too, as the paper has it: with
peft, TRL's reference is the policy with the new adapter switched off) and a new LoRA (rank 8, alpha 32) is
trained on it. The reward is `baselines.fires.reward.FiresReward` as three TRL reward functions (format,
ROUGE-L, support skill; each logged per step) whose weighted sum is the paper's reward. Prompts are the
harness's MESC requests in prompt=fires mode, as for SFT.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import click

from harness import training
from harness.errors import HarnessError

from .. import trainkit
from . import ablations, data, settings
from .sft import evaluation, prompt_messages

RECIPE = "fires-grpo"
INIT = "init"  # the merged SFT model inside the GRPO checkpoint folder (train.json's base_model.model, relative)


def grpo_dataset(rows: Sequence[data.SynthRow], vision: bool, frames: bool):
    records = []
    for row in rows:
        prompt, images = prompt_messages(row, vision, frames)
        # reward columns: the gold response, and the seeker's last utterance (DIFF-EPITOME's context)
        record: dict[str, Any] = {"prompt": prompt, "reference": row.reference, "context": row.history[-1].text if row.history else ""}
        if vision:
            record["images"] = images
        records.append(record)
    return trainkit.conversation_dataset(records, vision)


def initial_policy(init: str, ablation: str, dtype: str, trust_remote_code: bool, pixels: int | None) -> tuple[trainkit.Policy, dict[str, Any] | None]:
    """The policy GRPO starts from, and (for a fires-sft checkpoint, merged into its base in memory) what
    train.json records of the merge; the merged model is saved by `save_merged` once the folder exists."""
    init_path = Path(init).expanduser()
    if (init_path / training.TRAIN_RECORD).is_file():
        record = training.read_record(init_path)
        if record.recipe != "fires-sft" or record.status != "finished" or record.weights != "peft":
            raise HarnessError(f"--init {init}: a {record.status} {record.recipe} checkpoint; GRPO starts from a finished fires-sft checkpoint.")
        if ablation == "wo-sft":
            raise HarnessError(f"--init {init} is a fires-sft checkpoint, but ablation wo-sft starts GRPO from the base model; give --init BASE.")
        policy = trainkit.load_policy(str(record.base_model["model"]), dtype, trust_remote_code, what="the fires-sft base model", image_max_pixels=pixels)
        from peft import PeftModel

        policy.model = PeftModel.from_pretrained(policy.model, str(init_path)).merge_and_unload()
        return policy, {"sft_checkpoint": str(init_path), "train_id": record.train_id, "base": record.base_model}
    if ablation != "wo-sft":
        raise HarnessError(f"--init {init}: not a fires-sft checkpoint (no train.json); FIRES starts GRPO from its SFT cold start - "
                           f"train one with `harness train fires-sft`, or pass --ablation wo-sft to start from a base model.")
    return trainkit.load_policy(init, dtype, trust_remote_code, what="--init", image_max_pixels=pixels), None


def save_merged(policy: trainkit.Policy, merged_from: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The merged SFT model into folder/init (the base train.json names, relative to the checkpoint folder)."""
    merged = folder / INIT
    policy.model.save_pretrained(str(merged), safe_serialization=True)
    policy.processing_class.save_pretrained(str(merged))
    policy.folder = merged
    return {**trainkit.base_identity(merged), "model": INIT, "merged_from": merged_from}


def train(data_dir: Path, init: str, output_dir: Path, ablation: str = "none", given: dict[str, Any] | None = None,
          max_steps: int | None = None, limit: int | None = None, dtype: str = "auto", trust_remote_code: bool = False,
          use_vllm: bool = False, vllm_mode: str = "colocate", classifiers: Any = None, resume: Path | None = None, log=click.echo) -> Path:
    from .reward import FiresReward, RewardWeights

    ablation = ablations.check(ablation, "grpo")
    manifest, rows = data.read_rows(data_dir)
    ablations.check_data(ablation, manifest.variant, data_dir)
    if limit:
        rows = rows[:limit]
    chosen = trainkit.with_overrides(settings.GRPO, {**(given or {}), "use_vllm": use_vllm or None})
    values = trainkit.values(chosen)
    accumulation = trainkit.accumulation_steps(values["batch_size"], values["per_device_batch"], trainkit.processes())
    if (values["per_device_batch"] * accumulation * trainkit.processes()) % values["num_generations"]:
        raise HarnessError(f"batch size {values['batch_size']} is not a multiple of G = {values['num_generations']} completions per prompt.")
    frames = ablation != "wo-video"
    reward = FiresReward(RewardWeights(*values["reward_weights"]), classifiers=classifiers, support_skill=ablation != "wo-ssr")
    reward_funcs, reward_weights = reward.trl_reward_functions()
    try:
        from trl import GRPOConfig, GRPOTrainer
    except ImportError as exc:
        raise HarnessError(f"fires-grpo needs TRL ({exc}); install it with {trainkit.INSTALL}.") from None
    if reward.support_skill:
        reward.classifiers()  # a missing EPITOME classifier is one line now, not after the first generation

    if resume is not None:
        folder = training.TrainFolder.open(Path(resume))
        merged = folder.path / INIT
        policy = trainkit.load_policy(str(merged) if merged.is_dir() else init, dtype, trust_remote_code, image_max_pixels=values["image_max_pixels"])
        merged_from = None
    else:
        policy, merged_from = initial_policy(init, ablation, dtype, trust_remote_code, values["image_max_pixels"])
        folder = training.start(RECIPE, output_dir, config={**trainkit.record(chosen), "ablation": ablation, "accumulation_steps": accumulation,
                                                            "devices": trainkit.processes(), "max_steps": max_steps, "limit": limit, "frames": frames,
                                                            "vllm_mode": vllm_mode if use_vllm else None,
                                                            "cli": {"data": str(data_dir), "init": init}},
                                weights="peft",
                                data=[training.file_source(Path(data_dir) / data.ROWS, variant=manifest.variant, rows=len(rows),
                                                           teacher=manifest.teacher.get("model"), prompt_sha256=manifest.prompt_sha256)],
                                base_model=trainkit.base_identity(policy.folder) if merged_from is None else {"model": INIT},
                                reward=reward.describe(), evaluate=evaluation(frames))
    with folder.working():
        folder.write_header(evaluate=evaluation(frames, folder.path))
        if merged_from is not None:
            folder.write_header(base_model=save_merged(policy, merged_from, folder.path))
        dataset = grpo_dataset(rows, policy.vision, frames)
        lora = trainkit.lora_config(policy.model, values["lora_rank"], values["lora_alpha"], values["lora_dropout"])
        args = trainkit.common_training_arguments(values, folder.path, accumulation, max_steps)
        config = GRPOConfig(
            **args,
            num_generations=values["num_generations"],
            beta=values["beta"],
            loss_type=values["loss_type"],
            use_bias_correction_kl=values["use_bias_correction_kl"],
            scale_rewards=values["scale_rewards"],
            epsilon=values["epsilon"],
            num_iterations=values["num_iterations"],
            temperature=values["temperature"],
            top_p=values["top_p"],
            top_k=values["top_k"],
            max_completion_length=values["max_completion_length"],
            reward_weights=list(reward_weights),
            use_vllm=values["use_vllm"],
            vllm_mode=vllm_mode,
            log_completions=False,
        )
        trainer = GRPOTrainer(model=policy.model, reward_funcs=reward_funcs, args=config, train_dataset=dataset,
                              processing_class=policy.processing_class, peft_config=lora, callbacks=[trainkit.log_callback(folder.path)])
        trainer.train(resume_from_checkpoint=trainkit.last_checkpoint(folder.path) if resume is not None else None)
        trainkit.save_trained(trainer, policy, folder.path, adapter=True)
        folder.finish()
    log(f"{folder.path}: fires-grpo finished ({len(rows)} prompts, ablation {ablation}); evaluate it with\n  "
        f"{folder.header.evaluate['command']}")
    return folder.path


@click.command(RECIPE, help=f"""GRPO of FIRES with the ESC reward (FIRES sections 3.4.2-3.4.3) on TRL's GRPOTrainer.

--init is the fires-sft checkpoint (merged into its base under OUT/init, which is also the reference model), or
a base model with --ablation wo-sft. Reward: 0 unless the completion is exactly <think>...</think>
<response>...</response>; else 0.1 + ROUGE-L F1 (beta 1, [0, 1], harness tokens) + 0.1 x [DIFF-EPITOME <= 1]
(`harness train fires-reward` shows it for any completion). Settings, with their sources (change one with
--set NAME=VALUE); every TRL default that differs is set explicitly:

{trainkit.help_lines(settings.GRPO)}
""")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), help="A fires-synth dataset folder (its prompts and gold responses).")
@click.option("--init", help="The fires-sft checkpoint folder (or, with --ablation wo-sft, a base chat model folder).")
@click.option("--ablation", type=click.Choice(ablations.GRPO_CHOICES), default="none", show_default=True,
              help="Which FIRES ablation this training is (Tables 2 and 4); recorded in train.json.")
@click.option("--use-vllm", is_flag=True, help="Generate with vLLM inside TRL (needs vllm; see the README).")
@click.option("--vllm-mode", type=click.Choice(["colocate", "server"]), default="colocate", show_default=True,
              help="colocate: vLLM in the training processes; server: a `trl vllm-serve` process.")
@trainkit.recipe_options
def fires_grpo(data_dir, init, ablation, use_vllm, vllm_mode, output_dir, per_device_batch, overrides, max_steps, limit, dtype,
               trust_remote_code, resume) -> None:
    given = trainkit.given_settings(overrides, per_device_batch, settings.GRPO)
    if resume is not None:
        recorded = trainkit.resume_arguments(resume, RECIPE)
        data_dir, init, ablation = Path(recorded["cli"]["data"]), recorded["cli"]["init"], recorded["ablation"]
        given, max_steps, limit = recorded["settings"], recorded["max_steps"], recorded["limit"]
        use_vllm, vllm_mode = bool(given.get("use_vllm")), recorded.get("vllm_mode") or "colocate"
    if data_dir is None or init is None:
        raise HarnessError("fires-grpo needs --data (a fires-synth folder) and --init (the fires-sft checkpoint), or --resume FOLDER.")
    train(data_dir, init, output_dir, ablation, given, max_steps, limit, dtype, trust_remote_code, use_vllm, vllm_mode, resume=resume)
