"""The CER data of the COMPEER recipe (Wang et al. 2025): what `harness train compeer-data` writes, people
annotate (`compeer-annotate`), and the reward model and GRPO read. The paper's own CER data was not released;
a user who has it converts it to this shape.

A dataset is a folder:

    cer.json     CerManifest: how it was made (teacher, sources, sampling, counts)
    data.jsonl   one CerRow per sampled round, in dialogue order

A row holds the history, the teacher's three reasoning steps (tasks/compeer_reasoning.py) and new response,
the dataset's original response, and the annotation slots: per step True / False, and the four-way
preference between the original and the model response, per rater, plus the adjudicated label. Preferences
are stored relative to the model response (never to a display order), so a sheet may show the two in any
order. The schema is versioned; readers refuse another version with one line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from harness.contract import Turn
from harness.errors import HarnessError

SCHEMA_VERSION = 1
MANIFEST = "cer.json"
ROWS = "data.jsonl"
N_STEPS = 3  # history analysis, emotional state, support strategy
# the paper's four options, read relative to the model's response
PREFERENCES = ("model_better", "original_better", "both_good", "neither")
Preference = Literal["model_better", "original_better", "both_good", "neither"]


class Annotations(BaseModel):
    """Who said what about a row. `steps[rater]` is one True / False / None (not rated) per step;
    `preference[rater]` one of PREFERENCES or None; `final_*` the adjudicated labels (two raters agreeing, or the
    third rater's call), which training reads."""

    steps: dict[str, list[bool | None]] = {}
    preference: dict[str, Preference | None] = {}
    final_steps: list[bool] | None = None
    final_preference: Preference | None = None


class CerRow(BaseModel):
    schema_version: int = SCHEMA_VERSION
    id: str  # "<source>/<split>/<dialogue>/<round>", e.g. the harness sample id "esconv/train/d0012/t05"
    source: str  # "esconv" | "mesc" | "cer" (imported)
    dialogue: str  # the dialogue's key, e.g. "esconv/train/d0012" (unique across sources)
    round: int  # the round's position in its dialogue (1-based, as eq. 1 indexes rounds)
    history: list[Turn]
    steps: list[str]  # the three reasoning steps' texts, in order
    fields: dict[str, Any] = {}  # what the parser read: stage, sentiment, emotion, intensity, strategy
    response: str  # the teacher's (model's) new response
    original: str  # the dataset's own response in that round
    teacher_output: str = ""
    persona: dict[str, Any] | None = None  # the DISC persona of a rewritten dialogue (augmentation)
    augmentation: str | None = None  # None (original dialogue) | "persona" | "duplicate" | "plain"
    annotations: Annotations = Annotations()


class CerManifest(BaseModel):
    schema_version: int = SCHEMA_VERSION
    recipe: str = "compeer-data"
    teacher: dict[str, Any]
    prompt_sha256: str
    config: dict[str, Any]  # sources, rounds per dialogue (N_s), seed, limit, retries
    data: dict[str, Any]  # the source files' sha256
    dialogues: int = 0
    rows: int = 0
    dropped: list[dict[str, Any]] = []
    augmentation: dict[str, Any] = {}  # compeer-rewrite: mode, k and SSE curve, planned / kept / added rows, filter counts
    started_at: str
    finished_at: str | None = None
    status: Literal["running", "finished", "failed"] = "running"
    error: str | None = None


def parse_row(line: str | bytes, path: Path, number: int, fix: str) -> CerRow:
    from baselines.trainkit import versioned_row

    row = versioned_row(CerRow, line, path, number, "CER", SCHEMA_VERSION, fix)
    if len(row.steps) != N_STEPS:
        raise HarnessError(f"{path}:{number}: {len(row.steps)} reasoning steps, {N_STEPS} expected; {fix}.")
    return row


def rows_file(folder: Path) -> Path:
    """The data.jsonl of a CER folder, or the file itself when a .jsonl is given."""
    folder = Path(folder)
    return folder if folder.is_file() else folder / ROWS


def read_rows(folder: Path) -> tuple[CerManifest | None, list[CerRow]]:
    """The rows of a CER folder (its manifest too when there is one: imported data may come without) or of a
    data.jsonl given directly; a malformed line is one error naming the file and line."""
    path = rows_file(folder)
    if not path.is_file():
        raise HarnessError(f"{path}: no CER data here; make it with `harness train compeer-data`.")
    manifest = None
    if (path.parent / MANIFEST).is_file():
        from baselines.trainkit import versioned_manifest

        manifest = versioned_manifest(CerManifest, path.parent, MANIFEST, "CER", "compeer-data", SCHEMA_VERSION)
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                rows.append(parse_row(line, path, number, "fix or delete the line"))
    if not rows:
        raise HarnessError(f"{path}: no rows.")
    return manifest, rows


def write_rows(path: Path, rows: list[CerRow]) -> None:
    """All rows at once, through a temporary file (never a half-written data.jsonl)."""
    from harness import store

    store.write_text(Path(path), "".join(r.model_dump_json() + "\n" for r in rows))
