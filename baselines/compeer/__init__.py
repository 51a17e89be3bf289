"""The COMPEER recipe (Wang et al. 2025, "COMPEER: Controllable Empathetic Reinforcement Reasoning for Emotional
Support Conversation", arXiv 2508.09521): controllable empathetic reasoning (CER) data with sparse sampling of
dialogue rounds, the UnifiReward process-outcome reward model, GRPO of the supporter with redundancy-aware reward
reweighting (`reweight`, on the sentence embeddings of `embed`), and personality-based dialogue rewriting. Each
stage is a `harness train` sub-command; the parts land over several changes."""
