"""The flexible-thinking dataset that `harness train fires-synth` writes and `fires-sft` / `fires-grpo` read.

A dataset is a folder:

    synth.json     SynthManifest: how it was made (teacher, prompt digest, variant, counts, figure-3 statistics)
    data.jsonl     one SynthRow per kept MESC training instance, in the task's sample order

`SynthRow.target` is the SFT target, `<think> THINKING </think><response> GOLD </response>`; `images` are the
frames the harness attaches to the sample at evaluation (`--task mesc --task-args prompt=fires`), so the model
is trained on exactly the prompt it is evaluated with; `teacher_images` are the (at most 16) frames the
teacher saw. The schema is versioned (`SCHEMA_VERSION`); readers refuse another version with one line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from harness.contract import Turn
from harness.errors import HarnessError

SCHEMA_VERSION = 1
MANIFEST = "synth.json"
ROWS = "data.jsonl"
# flexible: the FIRES data (only the helpful aspects); fixed: all four aspects always (the w/o-FleT ablation);
# free: thinking with no predefined aspects (the w/o-All ablation)
VARIANTS = ("flexible", "fixed", "free")
Variant = Literal["flexible", "fixed", "free"]


class SynthRow(BaseModel):
    """One training instance with its synthesised thinking."""

    schema_version: int = SCHEMA_VERSION
    id: str  # the MESC sample id, e.g. "mesc/train/d0012/t05"
    variant: Variant
    history: list[Turn]
    reference: str  # the therapist's gold response
    labels: dict[str, Any] = {}  # MESC's emotion and strategy of the target turn (the teacher's hints)
    images: list[str] = []  # frames attached at evaluation (absolute paths, as the task gives them)
    teacher_images: list[str] = []  # the keyframes the teacher saw (at most 16)
    thinking: str  # the thinking as it enters the target (declined aspects left out, for "flexible")
    teacher_output: str  # the teacher's answer as given
    target: str  # "<think> thinking </think><response> reference </response>"
    aspects: dict[str, Any] = {}  # tasks.prompting.analyse_thinking(teacher's thinking)
    attempts: int = 1  # teacher calls made for this row (1 + retries)


class SynthManifest(BaseModel):
    """synth.json: the dataset's provenance and statistics."""

    schema_version: int = SCHEMA_VERSION
    recipe: str = "fires-synth"
    variant: Variant
    teacher: dict[str, Any]  # {"model": adapter name, "identity": cache identity (no secrets)}
    prompt_sha256: str  # digest of the instructions and demonstrations sent to the teacher
    config: dict[str, Any]  # every setting (split, limit, retries, max frames, generation)
    data: dict[str, Any]  # the MESC files' sha256 and the split
    instances: int = 0  # training instances asked about
    kept: int = 0
    dropped: list[dict[str, Any]] = []  # {"id", "reason"} of every instance whose answers all broke the format
    retries: int = 0  # extra teacher calls made after a broken answer
    statistics: dict[str, Any] = {}  # figure 3: share of kept rows including / declining each aspect, neutral, unknown
    started_at: str
    finished_at: str | None = None
    status: Literal["running", "finished", "failed"] = "running"
    error: str | None = None


def read_manifest(folder: Path) -> SynthManifest:
    from baselines.trainkit import versioned_manifest

    return versioned_manifest(SynthManifest, folder, MANIFEST, "fires-synth", "fires-synth", SCHEMA_VERSION)


def read_rows(folder: Path, require_finished: bool = True) -> tuple[SynthManifest, list[SynthRow]]:
    """The manifest and rows of a dataset folder (or of the folder holding a data.jsonl given directly);
    a malformed line is one error naming the file and line."""
    folder = Path(folder)
    if folder.is_file():
        folder = folder.parent
    manifest = read_manifest(folder)
    if require_finished and manifest.status != "finished":
        raise HarnessError(f"{folder / MANIFEST}: the synthesis is {manifest.status}; finish it first (run the same "
                           f"`harness train fires-synth` command again: it resumes).")
    path = folder / ROWS
    if not path.is_file():
        raise HarnessError(f"{path}: missing; remake the dataset with `harness train fires-synth`.")
    rows: list[SynthRow] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                rows.append(parse_row(line, path, number, "fix or delete the line, or remake the dataset"))
    if not rows:
        raise HarnessError(f"{path}: no rows; nothing to train on.")
    return manifest, rows


def parse_row(line: str | bytes, path: Path, number: int, fix: str) -> SynthRow:
    """One data.jsonl line as a row; anything else is one error naming file:line and `fix`."""
    from baselines.trainkit import versioned_row

    return versioned_row(SynthRow, line, path, number, "fires-synth", SCHEMA_VERSION, fix)


def target_of(thinking: str, response: str) -> str:
    """The FIRES output format, as the paper's case-study outputs show it."""
    return f"<think> {thinking.strip()} </think><response> {response.strip()} </response>"
