"""The FIRES ablations (Tables 2 and 4) as switches of the stages; each training records which one it is.

| ablation | what changes | where |
|---|---|---|
| `wo-flet` | fixed thinking: every aspect always (fires-synth `--variant fixed`) | synth, then sft / grpo as usual |
| `wo-sft` | GRPO from the base model (`fires-grpo --init BASE`) | grpo |
| `wo-rl` | no GRPO: the fires-sft checkpoint is the model | (evaluate the SFT checkpoint) |
| `wo-ssr` | no support-skill reward (DIFF-EPITOME component off) | grpo |
| `wo-video` | no frames in training or evaluation | sft and grpo |
| `wo-scene`, `wo-emotion`, `wo-situation`, `wo-strategy` | that aspect removed from the synthesised thinking | sft (grpo inherits it) |
| `wo-all` | free thinking without predefined aspects (fires-synth `--variant free`) | synth, then sft / grpo |
"""
from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError

from . import data

ASPECT_ABLATIONS = {"wo-scene": "visual_scene", "wo-emotion": "emotion", "wo-situation": "situation", "wo-strategy": "response_strategy"}
NEEDS_VARIANT = {"wo-flet": "fixed", "wo-all": "free"}
SFT_CHOICES = ("none", "wo-flet", "wo-video", *ASPECT_ABLATIONS, "wo-all")
GRPO_CHOICES = ("none", "wo-flet", "wo-sft", "wo-ssr", "wo-video", *ASPECT_ABLATIONS, "wo-all")


def check(ablation: str, stage: str) -> str:
    choices = SFT_CHOICES if stage == "sft" else GRPO_CHOICES
    if ablation not in choices:
        hint = " (w/o RL is the fires-sft checkpoint itself: evaluate it)" if ablation == "wo-rl" else ""
        raise HarnessError(f"fires-{stage}: unknown ablation '{ablation}'; choose one of {', '.join(choices)}{hint}.")
    return ablation


def check_data(ablation: str, variant: str, where: Path) -> None:
    """The dataset variant an ablation needs (and the full recipe needs the flexible data)."""
    wanted = NEEDS_VARIANT.get(ablation, "flexible")
    if variant != wanted:
        raise HarnessError(f"{where}: a '{variant}' fires-synth dataset, but ablation '{ablation}' trains on '{wanted}' data; "
                           f"make it with `harness train fires-synth --variant {wanted}`.")


def dropped_aspect(ablation: str) -> str | None:
    return ASPECT_ABLATIONS.get(ablation)


def target_without(row: data.SynthRow, aspect: str) -> str:
    """The row's target with one aspect taken out of its thinking (the w/o-aspect ablations of Table 4)."""
    from tasks.prompting import split_aspects

    kept = [text for key, text in split_aspects(row.thinking) if key != aspect]
    return data.target_of(" ".join(kept) if kept else row.thinking, row.reference)
