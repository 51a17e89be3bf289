"""Every COMPEER training setting with its source: the paper (arXiv 2508.09521v1, "Implementation Details" of the
reward model and of the emotional-support model), else a harness choice, marked as such. `trl_default` is TRL
1.16's value where it differs (read in trl/trainer/{sft,grpo,base}_config.py). `python -m
baselines.compeer.settings` prints the tables the README holds."""
from __future__ import annotations

from baselines.trainkit import Setting, markdown_table

REWARD_PAPER = "COMPEER, reward model implementation details"
POLICY_PAPER = "COMPEER, emotional support implementation details"
HARNESS = "harness choice (the paper is silent)"

REWARD = {
    "kind": Setting("unified", "COMPEER Figure 4 (UnifiReward); prm / orm for Table 1's separate models"),
    "trainable": Setting("language model + merger (full weights)", REWARD_PAPER + ": visual encoder frozen, language model and adapter fully trainable"),
    "learning_rate": Setting(1e-5, REWARD_PAPER, 2e-5),
    "batch_size": Setting(64, REWARD_PAPER + " (per-device x accumulation x devices, checked)"),
    "per_device_batch": Setting(4, HARNESS),
    "epochs": Setting(3, "transformers' default (the paper is silent)"),
    "warmup_ratio": Setting(0.0, "transformers' default (the paper is silent)"),
    "lr_scheduler": Setting("linear", "transformers' default (the paper is silent)"),
    "weight_decay": Setting(0.0, "transformers' default"),
    "max_grad_norm": Setting(1.0, "transformers' default"),
    "max_length": Setting(None, HARNESS + ": no truncation (a judge conversation must keep its verdict)", 1024),
    "loss": Setting("each round's verdict given the conversation so far (prompt-completion per round)", "COMPEER eq. 4"),
    "held_out": Setting(0, "COMPEER holds out 574 CER samples; give --set held_out=N (rows, split by dialogue)"),
    "seed": Setting(42, HARNESS),
    "gradient_checkpointing": Setting(True, "TRL default (GPU only)"),
    "logging_steps": Setting(1, HARNESS + " (every step into log.jsonl)", 10),
    "save_steps": Setting(50, HARNESS + " (checkpoints for --resume)"),
}

GRPO = {
    "num_generations": Setting(4, f"{POLICY_PAPER} (group size G)", 8),
    "learning_rate": Setting(1e-6, POLICY_PAPER),
    "batch_size": Setting(32, POLICY_PAPER + ": completions per optimiser step, as TRL counts them (8 prompts x G 4)"),
    "per_device_batch": Setting(4, HARNESS + "; a multiple of G on one device"),
    "beta": Setting(0.0, "COMPEER eq. 2 has no KL term (TRL's default is the same; no reference model is kept)"),
    "loss_type": Setting("grpo", "COMPEER eq. 2: the mean over the G outputs of each output's clipped objective (per-sequence)", "dapo"),
    "epsilon": Setting(0.2, "TRL default (eq. 2 clips at 1 +- epsilon; the paper gives no value)"),
    "scale_rewards": Setting("group", "COMPEER eq. 3: advantages standardised within the group"),
    "num_iterations": Setting(1, "TRL default (one update per generation)"),
    "temperature": Setting(1.0, "TRL default (the paper is silent)"),
    "top_p": Setting(1.0, "TRL default (the paper is silent)"),
    "max_completion_length": Setting(768, "harness choice: the compeer prompt mode's max tokens (three steps and a reply)", 512),
    "reweight": Setting(True, "COMPEER-URP (eq. 5-7); --set reweight=false gives COMPEER-UR"),
    "alpha": Setting(0.5, POLICY_PAPER + " (alpha of eq. 7)"),
    "length_beta": Setting(5.0, POLICY_PAPER + " (beta of eq. 7)"),
    "lora_rank": Setting(0, "0 = full fine-tuning of the language model, vision tower frozen, as the paper's reward model (it does not say for the policy)"),
    "lora_alpha": Setting(0, "with lora_rank > 0: LoRA alpha (0 = 2 x rank)"),
    "epochs": Setting(1, HARNESS),
    "warmup_ratio": Setting(0.0, "transformers' default"),
    "lr_scheduler": Setting("linear", "transformers' default"),
    "weight_decay": Setting(0.0, "transformers' default"),
    "max_grad_norm": Setting(1.0, "transformers' default"),
    "seed": Setting(42, HARNESS),
    "gradient_checkpointing": Setting(True, "TRL default (GPU only)"),
    "logging_steps": Setting(1, HARNESS + " (every step into log.jsonl)", 10),
    "save_steps": Setting(50, HARNESS + " (checkpoints)"),
}


SFT = {
    "learning_rate": Setting(1e-5, "as the reward model (the paper gives no SFT settings for COMPEER-SFT)", 2e-5),
    "batch_size": Setting(32, "as the policy's GRPO batch (the paper is silent)"),
    "per_device_batch": Setting(4, HARNESS),
    "epochs": Setting(3, "transformers' default (the paper is silent)"),
    "targets": Setting("rows whose three steps are all judged True; the model's response when it matches or beats the original, else the original",
                       HARNESS + ": supervised learning on the CER annotations"),
    "lora_rank": Setting(0, "0 = full fine-tuning of the language model, vision tower frozen (as the reward model)"),
    "lora_alpha": Setting(0, "with lora_rank > 0 (0 = 2 x rank)"),
    "warmup_ratio": Setting(0.0, "transformers' default"),
    "lr_scheduler": Setting("linear", "transformers' default"),
    "weight_decay": Setting(0.0, "transformers' default"),
    "max_grad_norm": Setting(1.0, "transformers' default"),
    "max_length": Setting(None, HARNESS + ": no truncation", 1024),
    "seed": Setting(42, HARNESS),
    "gradient_checkpointing": Setting(True, "TRL default (GPU only)"),
    "logging_steps": Setting(1, HARNESS + " (every step into log.jsonl)", 10),
    "save_steps": Setting(50, HARNESS + " (checkpoints)"),
}


if __name__ == "__main__":
    print("UnifiReward (compeer-reward)\n\n" + markdown_table(REWARD) + "\n\nPolicy GRPO (compeer-grpo)\n\n" + markdown_table(GRPO) + "\n\nCOMPEER-SFT (compeer-sft)\n\n" + markdown_table(SFT))

