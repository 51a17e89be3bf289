"""The three hand-written demonstrations that `harness train fires-synth` shows the teacher (FIRES section 3.3:
three classic instances, annotated by hand, that stress different thinking aspects so that the teacher does
not fall into one fixed pattern).

Only the MESC sample ids and our own thinking text live here; the conversation and the therapist's reply
are read from the user's copy of MESC at run time (`resolve`), so no dataset text is committed. Each
demonstration has one thinking per variant:

    flexible  only the aspects that shaped the reply, "Not helpful" for the rest, "Unknown" where the
              conversation does not tell (the FIRES data)
    fixed     all four aspects, always with content (the w/o-FleT ablation)
    free      free-form reasoning with no predefined aspects (the w/o-All ablation)

The three flexible ones differ on purpose:

1. mesc/train/d0000/t11 - the visual scene (the client on her feet, about to leave) drives a short
   instruction to sit; the situation is not what the reply needs.
2. mesc/train/d0022/t05 - the emotion under the client's scorn drives an interpretation; no visual cue needed.
3. mesc/train/d0207/t01 - the cause of the client's self-hatred is Unknown, so the strategy is to explore it.

The keyframes of these instances are not shown to the teacher (the user may have none); what the visual
lines say is what the conversation itself makes plain (tears, standing up to leave).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from harness.contract import Sample
from harness.errors import HarnessError


@dataclass(frozen=True)
class Demonstration:
    sample_id: str  # a MESC train sample
    focus: str  # what it shows the teacher (documentation only; never sent)
    thinking: Mapping[str, str]  # variant -> our thinking text, in the format that variant asks for


DEMONSTRATIONS: tuple[Demonstration, ...] = (
    Demonstration(
        sample_id="mesc/train/d0000/t11",
        focus="visual scene and emotion shape the reply; situation not helpful",
        thinking={
            "flexible": (
                "Visual Scene: The client is still on her feet and tearful, hovering as if she is about to walk out instead of settling in.\n"
                "Emotion: Overwhelmed and embarrassed by her own distress; her brief yes does not match how she looks.\n"
                "Situation: Not helpful\n"
                "Response Strategy: I should give a short, calm instruction that gets her to stay and sit, so she feels the session can hold "
                "her distress; questions about what happened can wait."
            ),
            "fixed": (
                "Visual Scene: The client is still on her feet and tearful, hovering as if she is about to walk out instead of settling in.\n"
                "Emotion: Overwhelmed and embarrassed by her own distress; her brief yes does not match how she looks.\n"
                "Situation: She nearly cancelled, feels the session is already a failure and keeps apologising for coming.\n"
                "Response Strategy: I should give a short, calm instruction that gets her to stay and sit, so she feels the session can hold "
                "her distress; questions about what happened can wait."
            ),
            "free": (
                "She says she is fine, but she is standing, in tears and half on her way out, apologising for having come at all. "
                "This is not the moment for questions. First she has to stay: a brief, steady instruction to sit down tells her that "
                "she is welcome here in this state and that the room can take it."
            ),
        },
    ),
    Demonstration(
        sample_id="mesc/train/d0022/t05",
        focus="emotion (hurt beneath the scorn) drives an interpretation; visual scene not helpful",
        thinking={
            "flexible": (
                "Visual Scene: Not helpful\n"
                "Emotion: Scorn and irritation on the surface; beneath them hurt, and a hint of shame at having let the people close to him down.\n"
                "Situation: Coming back from clinical death, he found that his family mostly wanted a mystical story he could not give them.\n"
                "Response Strategy: I should tentatively name the feeling his anger covers, as a question he can accept or push back on, "
                "so he can look at it without having to defend himself."
            ),
            "fixed": (
                "Visual Scene: He talks with a mocking, dismissive edge that sits oddly with how serious his story is.\n"
                "Emotion: Scorn and irritation on the surface; beneath them hurt, and a hint of shame at having let the people close to him down.\n"
                "Situation: Coming back from clinical death, he found that his family mostly wanted a mystical story he could not give them.\n"
                "Response Strategy: I should tentatively name the feeling his anger covers, as a question he can accept or push back on, "
                "so he can look at it without having to defend himself."
            ),
            "free": (
                "The contempt for the tunnel question is loud, but it sounds like a defence. When he came back from dying, the people "
                "closest to him wanted something he could not give, and part of him may feel he failed them. I can put that feeling "
                "into words for him, carefully and as a question, so that he can consider it rather than fight it."
            ),
        },
    ),
    Demonstration(
        sample_id="mesc/train/d0207/t01",
        focus="situation Unknown, so the strategy is to explore; visual scene and emotion not helpful",
        thinking={
            "flexible": (
                "Visual Scene: Not helpful\n"
                "Emotion: Not helpful\n"
                "Situation: Unknown\n"
                "Response Strategy: I should ask an open question about where this long self-hatred comes from, taking the wish to stop "
                "seriously and learning what lies behind it before offering anything."
            ),
            "fixed": (
                "Visual Scene: Unknown\n"
                "Emotion: Weary and low, with a new resolve to be done with hating themself.\n"
                "Situation: Unknown\n"
                "Response Strategy: I should ask an open question about where this long self-hatred comes from, taking the wish to stop "
                "seriously and learning what lies behind it before offering anything."
            ),
            "free": (
                "The client has just said something heavy and new: thirty years of self-hatred and a wish to be done with it. Nothing "
                "so far says where that hatred comes from, and I cannot help with it until I know. A simple open question that invites "
                "the client to tell me is the first step."
            ),
        },
    ),
)


def resolve(pool: Sequence[Sample], data_folder: Path | str, demonstrations: Sequence[Demonstration] | None = None) -> list[tuple[Sample, Demonstration]]:
    """Each demonstration (default: DEMONSTRATIONS) with its MESC train sample (history and reply come from the
    user's data); a demo id that the data does not hold is one error naming it."""
    demonstrations = DEMONSTRATIONS if demonstrations is None else demonstrations
    by_id = {s.id: s for s in pool}
    missing = [d.sample_id for d in demonstrations if d.sample_id not in by_id]
    if missing:
        raise HarnessError(f"fires-synth: the demonstration instance {missing[0]} is not in the MESC train split of {data_folder}; "
                           f"the demonstrations need the published MESC files (`harness data fetch mesc --force`).")
    return [(by_id[d.sample_id], d) for d in demonstrations]
