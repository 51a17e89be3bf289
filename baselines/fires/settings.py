"""Every FIRES training setting with its source: the paper's Table 6 (appendix E) and section 3.4, the tools the
paper ran on where it is silent (its README: SFT on LlamaFactory, GRPO on ms-swift 3.4), else a harness choice.
Each TRL default that differs is set explicitly; `trl_default` says what TRL 1.16 would have used (read in
trl/trainer/{sft,grpo,base}_config.py of the pinned version). The README's table is generated from here
(`python -m baselines.fires.settings`)."""
from __future__ import annotations

from baselines.trainkit import Setting, markdown_table

PAPER = "FIRES Table 6"
LLAMAFACTORY = "LlamaFactory default (the paper's SFT tool)"
SWIFT = "ms-swift 3.4 GRPO default (the paper's GRPO tool)"
HARNESS = "harness choice (the paper is silent)"

SFT = {
    "lora_rank": Setting(8, PAPER),
    "lora_alpha": Setting(16, f"{PAPER} (= LlamaFactory's 2 x rank)"),
    "lora_dropout": Setting(0.0, LLAMAFACTORY),
    "lora_target": Setting("language-model linear layers", f"{LLAMAFACTORY}: lora_target all, vision tower and projector frozen"),
    "batch_size": Setting(32, PAPER + " (per-device x accumulation x devices, checked)"),
    "per_device_batch": Setting(4, HARNESS + "; any divisor of 32 / devices gives the same batch"),
    "learning_rate": Setting(1e-5, PAPER, 2e-5),
    "epochs": Setting(3, PAPER),
    "warmup_ratio": Setting(0.1, PAPER, 0),
    "lr_scheduler": Setting("cosine", "LlamaFactory's example SFT configs (lr_scheduler_type cosine)", "linear"),
    "weight_decay": Setting(0.0, LLAMAFACTORY),
    "max_grad_norm": Setting(1.0, LLAMAFACTORY),
    "max_length": Setting(None, "harness choice: no truncation (cutting through a row's image tokens breaks it; LlamaFactory's "
                                "cutoff_len 2048 cannot hold 16 frames of ~750 tokens, so the paper must have changed one of the two)", 1024),
    "image_max_pixels": Setting(768 * 768, "LlamaFactory image_max_pixels default (frames are resized down to it)"),
    "loss": Setting("assistant turn only (prompt-completion, completion_only_loss)", "LlamaFactory default (train_on_prompt false)"),
    "seed": Setting(42, "FIRES appendix E (one run, seed 42)"),
    "system_prompt": Setting("FIRES section 3.4.1", "FIRES section 3.4.1 (tasks.prompting.FIRES_SYSTEM_PROMPT)"),
    "gradient_checkpointing": Setting(True, "TRL default (GPU only)"),
    "deepspeed": Setting(None, "FIRES Table 6: none for SFT (launch with configs/accelerate/multi-gpu.yaml)"),
    "logging_steps": Setting(1, HARNESS + " (every step into log.jsonl)", 10),
    "save_steps": Setting(50, HARNESS + " (checkpoints for --resume)"),
}

GRPO = {
    "num_generations": Setting(4, f"{PAPER} (G)", 8),
    "beta": Setting(0.001, f"{PAPER} (beta)", 0.0),
    "loss_type": Setting("grpo", SWIFT + ": per-sequence normalised loss", "dapo"),
    "use_bias_correction_kl": Setting(False, SWIFT + ": plain k3 KL estimate", True),
    "scale_rewards": Setting("group", SWIFT + ": advantages scaled by the group's std (paper eq. 1)"),
    "epsilon": Setting(0.2, SWIFT),
    "num_iterations": Setting(1, SWIFT + " (one update per generation: pi_old = pi)"),
    "temperature": Setting(0.9, SWIFT, 1.0),
    "top_p": Setting(0.9, SWIFT, 1.0),
    "top_k": Setting(50, SWIFT, 0),
    "max_completion_length": Setting(512, SWIFT),
    "image_max_pixels": Setting(768 * 768, "as fires-sft (the policy sees the frames as in its cold start; saved with init/)"),
    "lora_rank": Setting(8, PAPER),
    "lora_alpha": Setting(32, f"{PAPER} (= ms-swift's GRPO LoRA alpha)"),
    "lora_dropout": Setting(0.05, SWIFT),
    "lora_target": Setting("language-model linear layers", f"{SWIFT}: all-linear with freeze_vit and freeze_aligner"),
    "batch_size": Setting(32, PAPER + ": completions per optimiser step (TRL and ms-swift count completions: 8 prompts x G 4)"),
    "per_device_batch": Setting(4, HARNESS + "; must be a multiple of G on one device"),
    "learning_rate": Setting(1e-5, PAPER, 1e-6),
    "epochs": Setting(3, PAPER),
    "warmup_ratio": Setting(0.05, PAPER, 0),
    "lr_scheduler": Setting("cosine", "ms-swift default (lr_scheduler_type cosine)", "linear"),
    "weight_decay": Setting(0.1, "ms-swift default", 0.0),
    "max_grad_norm": Setting(1.0, "ms-swift default"),
    "reward_weights": Setting((0.1, 1.0, 0.1), "FIRES section 3.4.3 (format, ROUGE-L, support skill)"),
    "seed": Setting(42, "FIRES appendix E"),
    "deepspeed": Setting("zero2", f"{PAPER} (launch with `accelerate launch --config_file configs/accelerate/zero2.yaml`)"),
    "use_vllm": Setting(False, HARNESS + " (TRL's vLLM generation, colocate or server, is opt-in: --use-vllm)"),
    "gradient_checkpointing": Setting(True, "TRL default (GPU only)"),
    "logging_steps": Setting(1, HARNESS + " (every step into log.jsonl)", 10),
    "save_steps": Setting(50, HARNESS + " (checkpoints for --resume)"),
}

if __name__ == "__main__":
    print("SFT cold start\n\n" + markdown_table(SFT) + "\n\nGRPO\n\n" + markdown_table(GRPO))
