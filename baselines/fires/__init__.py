"""The FIRES recipe (Wang et al. 2025, "Flexible Thinking for Multimodal Emotional Support Conversation via
Reinforcement Learning"): synthesise flexible thinking with a teacher (`synth`), SFT cold start (`sft`), GRPO
with the ESC reward (`reward`, `grpo`). Each stage is a `harness train` sub-command; see README.md."""
