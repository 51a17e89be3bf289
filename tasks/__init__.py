"""Task plugins: one module per benchmark, registered under the `esc_harness.tasks` entry point."""
from __future__ import annotations

from typing import Iterable, TypeVar

U = TypeVar("U")


def merge_turns(utterances: Iterable[U]) -> list[list[U]]:
    """Consecutive utterances of one speaker (`.speaker`) become one turn, as FIRES builds MESC."""
    turns: list[list[U]] = []
    for u in utterances:
        if turns and turns[-1][0].speaker == u.speaker:  # type: ignore[attr-defined]
            turns[-1].append(u)
        else:
            turns.append([u])
    return turns


# The metrics every response-generation task reports by default, so all are evaluated the same way.
RESPONSE_METRICS = ("bleu-1", "bleu-2", "bleu-3", "bleu-4", "rouge-l", "meteor", "dist-1", "dist-2", "dist-3", "dist-1-plain", "dist-2-plain", "dist-3-plain",
                    "dist-1-response", "dist-2-response", "dist-3-response")
# Defaults whose resources a user builds once (`harness epitome train`) or installs as extras: left out
# with a warning when missing, so the main job runs on a fresh install.
OPTIONAL_RESPONSE_METRICS = ("bertscore-f1-minilm", "diff-epitome", "diff-epitome-er", "diff-epitome-ip", "diff-epitome-ex")
