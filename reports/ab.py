"""Blinded human A/B rating sheets for two runs (the FIRES human evaluation: figure 5, table 3).

export: n samples both runs answered, drawn with a seed; per row the dialogue context and the two runs'
    responses (or thinking processes) in a random order per row, "Response 1" / "Response 2". Every
    criterion x rater has a column of win / tie / lose: the verdict for Response 1 against Response 2.
    Which run is Response 1 lives only in the key file (with the seed and a sha256 of every shown cell).
import: reads filled copies, refuses any sheet whose rows or texts differ from the export or whose
    ratings are missing or invalid (listing the cells), un-blinds with the key and reports win / tie /
    lose rates of run A against run B with bootstrap intervals, inter-rater agreement and a figure.
judge: fills a rater block with an LLM judge through the harness's adapters and response cache.

A rater is one block of criterion columns headed "<criterion> [<rater>]". A sheet may hold several
blocks (raters sharing one file) and several sheets may be imported together (raters each filling a
copy); a block left entirely empty is an unused slot. The same rater label in two sheets means two
raters (reported as "<sheet>:<label>"), unless the two blocks are identical, which is a copy imported twice.

The sheet machinery (grids, drop-downs, rating scales, the import's refusal rules, asking a judge) takes any
key of the ABKey's shape; COMPEER's annotation sheets (baselines/compeer/annotate.py) use it with their own.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from pydantic import BaseModel

from harness import grading, lifecycle, redaction, store, uncertainty
from harness.contract import ChatRequest, GenerationConfig, Grader, Message, RunHeader, SampleRecord
from harness.errors import HarnessError

from . import agreement

LABELS = ("win", "tie", "lose")
CODES = {"lose": 0, "tie": 1, "win": 2}  # ordered: lose < tie < win (the ordinal alpha needs the order)
FLIP = {"win": "lose", "tie": "tie", "lose": "win"}
SHEET = "ratings"  # the worksheet that holds the rows; the workbook's other sheet is the instructions
ROW = "row"
KEY_KIND = "esc-harness-ab-key"
JUDGE_RATER = "llm-judge"
EXCEL_CELL_LIMIT = 32767  # characters; longer text is cut (and the cut text is what gets hashed)
MAX_LISTED = 20  # offending cells named in one error line
NO_THINKING = "(no thinking process in this output)"
EMPTY_RESPONSE = "(empty response)"
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # control characters an .xlsx cannot hold
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: os.umask can only be read by setting it
_RATING_HEADER = re.compile(r"^(?P<criterion>.+?) \[(?P<rater>[^\[\]]+)\]$")
NOT_ASKED = "(not asked)"  # what a sheet shows in a rating cell it does not ask for (a row asks only some criteria)


@dataclass(frozen=True)
class Scale:
    """The values one rating column takes; a cell is read ignoring case and surrounding spaces and stored
    as the option's own spelling."""

    options: tuple[str, ...]

    def read(self, text: str) -> str | None:
        value = text.strip().lower()
        return next((option for option in self.options if option.lower() == value), None)

    def describe(self) -> str:
        if all(" " not in option for option in self.options):
            return "/".join(self.options)
        return "one of " + ", ".join(f"'{option}'" for option in self.options)


VERDICTS = Scale(LABELS)


# --------------------------------------------------------------------------- the key (on disk)


class Criterion(BaseModel):
    name: str  # the column header's criterion part, e.g. "Coherence"
    question: str  # what raters (and the judge) are asked


class RunRef(BaseModel):
    run_id: str
    path: str
    model: str
    model_args: dict[str, Any] = {}  # as recorded in run.json (secrets already redacted there)
    task: str
    task_args: dict[str, Any] = {}
    split: str


class KeyRow(BaseModel):
    row: str  # the row id shown in the sheet
    sample_id: str
    response_1: Literal["a", "b"]  # which run's output is shown as Response 1 (and thinking 1)
    sha256: str  # of the row's shown content: json [row id, context, texts...]
    cell_sha256: list[str]  # of each shown content cell, to name the edited cell


class ABKey(BaseModel):
    """<sheet>.key.json: everything that un-blinds a sheet; never shown to raters."""

    kind: Literal["esc-harness-ab-key"] = KEY_KIND
    schema_version: int = 1
    created_at: str
    run_a: RunRef
    run_b: RunRef
    seed: int
    requested_n: int
    shared: int  # samples both runs answered (the pool the rows were drawn from)
    shows: Literal["response", "thinking"]
    criteria: list[Criterion]
    raters: int  # rater blocks in the exported sheet
    sheet: str  # file name the sheet was exported as (copies may be renamed)
    columns: list[str]  # content column headers after "row"
    rows: list[KeyRow]


class JudgeVerdict(BaseModel):
    row: str
    criterion: str
    order: Literal["12", "21"]  # "21": the judge saw Response 2 first (--both-orders); verdict is for Response 1
    raw: str
    verdict: Literal["win", "tie", "lose"] | None


class JudgeLog(BaseModel):
    """<filled sheet>.judge.json: what the judge was asked and answered, to audit its column."""

    kind: Literal["esc-harness-ab-judge"] = "esc-harness-ab-judge"
    created_at: str
    rater: str
    model: str
    model_args: dict[str, Any]  # secrets redacted
    model_identity: dict[str, Any]
    prompt_version: str
    both_orders: bool
    filled: int
    unparsed: int
    model_calls: int
    cache_hits: int
    answers: list[JudgeVerdict]


# --------------------------------------------------------------------------- criteria

PRESETS: dict[str, tuple[list[Criterion], str]] = {
    "response": ([Criterion(name="more supportive, effective and human-preferred",
                            question="Which response is more supportive, effective and human-preferred?")], "response"),
    # FIRES appendix C: thinking processes judged on two dimensions
    "thinking": ([Criterion(name="Coherence", question="Which thinking process is more logical and relevant to the conversational context?"),
                  Criterion(name="Usefulness", question="Which thinking process is more helpful for its final response?")], "thinking"),
}


def parse_criteria(text: str | None) -> tuple[list[Criterion], str]:
    """A preset name ("response", default; "thinking") or criteria separated by ';' (commas may occur
    inside one, as in the default). Returns the criteria and what the rows show."""
    text = (text or "response").strip()
    if text in PRESETS:
        criteria, shows = PRESETS[text]
        return [c.model_copy() for c in criteria], shows
    names = [piece.strip() for piece in text.split(";") if piece.strip()]
    for name in names:
        if "[" in name or "]" in name or len(name) > 120:
            raise HarnessError(f"--criteria: '{name}' must be at most 120 characters without '[' or ']' (they delimit the rater in column headers).")
    if not names or len(set(n.lower() for n in names)) != len(names):
        raise HarnessError("--criteria: give distinct criteria separated by ';', or a preset: response, thinking.")
    return [Criterion(name=n, question=f"Which response is better on: {n}?") for n in names], "response"


def content_columns(shows: str) -> list[str]:
    if shows == "thinking":  # usefulness is judged against the final response, so both are shown
        return ["context", "thinking 1", "response 1", "thinking 2", "response 2"]
    return ["context", "response 1", "response 2"]


def rating_header(criterion: str, rater: str) -> str:
    return f"{criterion} [{rater}]"


# --------------------------------------------------------------------------- small helpers


now = lifecycle.now


def clean(text: str | None) -> str:
    """What a cell can hold and give back unchanged: one line-break convention, no control characters,
    at most Excel's cell limit."""
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    text = _ILLEGAL.sub("\ufffd", text)
    if len(text) > EXCEL_CELL_LIMIT:
        text = text[: EXCEL_CELL_LIMIT - 20] + " [... cut for Excel]"
    return text


def sha256(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, ensure_ascii=False).encode("utf-8")).hexdigest()


def render_context(record: SampleRecord) -> str:
    return "\n".join(f"{turn.speaker}: {turn.text}" for turn in record.history)


def default_key_path(sheet: Path) -> Path:
    return sheet.with_name(sheet.name + ".key.json")


def _sheet_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".xlsx", ".csv"):
        raise HarnessError(f"{path}: a rating sheet is an .xlsx workbook or a .csv file; name it so.")
    return suffix[1:]


def _column_letter(index: int) -> str:
    """0-based column index -> Excel letters (A, B, ..., Z, AA, ...)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def write_all(files: Sequence[tuple[Path, Callable[[Path], None]]]) -> None:
    """Write every file to a temporary file beside it, then rename them all: a failure leaves no
    half-written file and no file of the set without the others (sheet without key, PNG without PDF)."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, write in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.close(fd)
            staged.append((tmp, path))
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; a sheet is meant to be handed on
            write(Path(tmp))
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)


def model_writer(model: BaseModel) -> Callable[[Path], None]:
    return lambda tmp: tmp.write_text(model.model_dump_json(indent=2) + "\n", encoding="utf-8")


def _too_many(problems: list[str]) -> str:
    shown = "; ".join(problems[:MAX_LISTED])
    return shown + (f"; ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else "")


# --------------------------------------------------------------------------- grids: xlsx / csv cells


@dataclass
class Grid:
    """A sheet's cells as text, header first; "" for an empty cell."""

    path: Path
    cells: list[list[str]]

    def ref(self, row: int, col: int) -> str:
        return f"{self.path}!{_column_letter(col)}{row + 1}"

    def get(self, row: int, col: int) -> str:
        line = self.cells[row]
        return line[col] if col < len(line) else ""

    @property
    def width(self) -> int:
        return max((len(line) for line in self.cells), default=0)


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).replace("\r\n", "\n").replace("\r", "\n")


def read_grid(path: Path) -> Grid:
    fmt = _sheet_format(path)
    if not path.is_file():
        raise HarnessError(f"{path}: no such sheet file.")
    if fmt == "csv":
        with open(path, encoding="utf-8-sig", newline="") as fh:
            rows = [[_cell_text(v) for v in line] for line in csv.reader(fh)]
        return Grid(path, rows)
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=False)
    except Exception as exc:  # openpyxl raises zip, XML and its own errors for a damaged file
        raise HarnessError(f"{path}: not a readable .xlsx workbook ({type(exc).__name__}); use the exported file.") from None
    try:
        if SHEET not in workbook.sheetnames:
            raise HarnessError(f"{path}: no worksheet '{SHEET}'; rate in the exported workbook without renaming its sheets.")
        rows = [[_cell_text(v) for v in line] for line in workbook[SHEET].iter_rows(values_only=True)]
    finally:
        workbook.close()
    return Grid(path, rows)


def _instructions(criteria: Sequence[Criterion], shows: str) -> list[str]:
    item = "thinking process (with the response it led to)" if shows == "thinking" else "response"
    lines = [
        "Blinded A/B rating sheet (esc-harness `harness ab`).",
        "",
        f"Each row shows a conversation (context) and two candidate supporter {item}s, numbered 1 and 2 in a random order per row.",
        "In each rating column choose, from the drop-down, the verdict for Response 1 compared with Response 2:",
        "  win  = Response 1 is better on the criterion",
        "  tie  = both are equally good (or equally bad)",
        "  lose = Response 2 is better on the criterion",
        "",
        "Criteria:",
        *[f"  {c.name}: {c.question}" for c in criteria],
        "",
        "A rater fills only the columns headed with their rater label in brackets, for every row.",
        "You may replace the label inside the brackets with your name (in all of your columns).",
        "Do not edit the row ids, the context or the responses, do not add or delete rows: the importer checks them.",
        "Sorting the rows is fine.",
    ]
    return lines


@dataclass(frozen=True)
class DropDown:
    """An .xlsx list validation: the cells (A1 ranges) that offer `options`, with the message shown on
    entering a cell and on refusing a value."""

    options: tuple[str, ...]
    cells: tuple[str, ...]
    title: str  # of the error box
    prompt_title: str  # of the input message
    message: str  # both boxes' text (the input message is cut at Excel's 255 characters)


def column_ranges(columns: Sequence[int], rows: int) -> tuple[str, ...]:
    """The data cells of each column (row 2 to rows + 1), as A1 ranges."""
    return tuple(f"{_column_letter(c)}2:{_column_letter(c)}{rows + 1}" for c in columns) if rows else ()


def sheet_writer(path: Path, header: list[str], rows: list[list[str]], rating_columns: Sequence[int],
                 drop_downs: Sequence[DropDown], header_notes: dict[int, str], instructions: Sequence[str],
                 author: str = "harness ab") -> Callable[[Path], None]:
    """Writes a rating sheet: .xlsx with the drop-downs, a comment on the rating headers (`header_notes`:
    column -> text) and an instructions sheet, or .csv (UTF-8 with BOM, so Excel reads the accents)."""
    if _sheet_format(path) == "csv":
        def write_csv(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8-sig", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(header)
                writer.writerows(rows)
        return write_csv
    return lambda tmp: _build_workbook(header, rows, rating_columns, drop_downs, header_notes, instructions, author).save(tmp)


def grid_writer(path: Path, header: list[str], rows: list[list[str]], rating_columns: list[int],
                criteria: Sequence[Criterion], shows: str) -> Callable[[Path], None]:
    """The A/B sheet: a win/tie/lose drop-down on every rating cell, the direction on every rating header."""
    direction = "Verdict for Response 1 compared with Response 2: win = Response 1 better, tie = equal, lose = Response 2 better."
    drop_down = DropDown(LABELS, column_ranges(rating_columns, len(rows)), "win / tie / lose", "Response 1 vs Response 2", direction)
    return sheet_writer(path, header, rows, rating_columns, [drop_down] if rating_columns else [],
                        {c: direction for c in rating_columns}, _instructions(criteria, shows))


def _build_workbook(header, rows, rating_columns, drop_downs, header_notes, instructions, author):
    from openpyxl import Workbook
    from openpyxl.comments import Comment
    from openpyxl.styles import Alignment, Font
    from openpyxl.worksheet.datavalidation import DataValidation

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = SHEET
    for r, values in enumerate([header, *rows], start=1):
        for c, value in enumerate(values, start=1):
            cell = sheet.cell(row=r, column=c, value=value if value != "" else None)
            if isinstance(value, str) and value:
                cell.data_type = "s"  # a response starting with '=' or reading '#N/A' is text, not a formula
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    for c in range(1, len(header) + 1):
        sheet.cell(row=1, column=c).font = Font(bold=True)
        rating = (c - 1) in rating_columns
        sheet.column_dimensions[_column_letter(c - 1)].width = 8 if c == 1 else 22 if rating else (60 if c == 2 else 48)
    for c, note in header_notes.items():
        sheet.cell(row=1, column=c + 1).comment = Comment(note, author)
    for drop_down in drop_downs:
        if not drop_down.cells:
            continue
        validation = DataValidation(type="list", formula1='"' + ",".join(drop_down.options) + '"', allow_blank=True, showErrorMessage=True,
                                    errorStyle="stop", errorTitle=drop_down.title, error=drop_down.message,
                                    showInputMessage=True, promptTitle=drop_down.prompt_title, prompt=drop_down.message[:255])
        for cells in drop_down.cells:
            validation.add(cells)
        sheet.add_data_validation(validation)
    sheet.freeze_panes = "B2"
    notes = workbook.create_sheet("instructions")
    for r, line in enumerate(instructions, start=1):
        notes.cell(row=r, column=1, value=line).data_type = "s"
    notes.column_dimensions["A"].width = 120
    return workbook


# --------------------------------------------------------------------------- export


@dataclass
class ExportResult:
    sheet: Path
    key_path: Path
    key: ABKey


def _run_ref(run_dir: Path, header: RunHeader | None = None) -> RunRef:
    header = header or store.read_header(run_dir)
    return RunRef(run_id=header.run_id, path=str(run_dir.resolve()), model=header.model, model_args=redaction.redact(header.model_args),
                  task=header.task, task_args=header.task_args, split=header.split)


def shared_records(run_a: Path, run_b: Path) -> tuple[RunRef, RunRef, list[tuple[SampleRecord, SampleRecord]]]:
    """Both runs' records of the samples they share, in run A's order; refuses runs of other data."""
    (header_a, records_a), (header_b, list_b) = store.read_run(run_a), store.read_run(run_b)  # refuses records that contradict run.json
    ref_a, ref_b = _run_ref(run_a, header_a), _run_ref(run_b, header_b)
    for name in ("task", "split"):
        if getattr(ref_a, name) != getattr(ref_b, name):
            raise HarnessError(f"the runs differ in {name} ('{getattr(ref_a, name)}' in {run_a} vs '{getattr(ref_b, name)}' in {run_b}); "
                               "rate runs of the same task and split.")
    records_b = {r.id: r for r in list_b}
    pairs = [(r, records_b[r.id]) for r in records_a if r.id in records_b]
    if not pairs:
        raise HarnessError(f"{run_a} and {run_b} share no sample; rate runs over the same samples.")
    for a, b in pairs:
        # task options such as prompt=fires change the prompt, not the dialogue; other data would
        if [t.model_dump() for t in a.history] != [t.model_dump() for t in b.history]:
            raise HarnessError(f"sample {a.id} has a different dialogue history in {run_a} and {run_b}; the runs were made on different data.")
    return ref_a, ref_b, pairs


def _shown_texts(record: SampleRecord, shows: str) -> list[str]:
    response = clean(record.response) or EMPTY_RESPONSE
    if shows == "thinking":
        return [clean(record.thinking) or NO_THINKING, response]
    return [response]


def _check_thinking(pairs, run_a: Path, run_b: Path) -> None:
    for side, run in ((0, run_a), (1, run_b)):
        if not any((pair[side].thinking or "").strip() for pair in pairs):
            raise HarnessError(f"{run} has no thinking process in any shared sample; --criteria thinking needs runs whose "
                               "outputs were parsed into thinking (e.g. --task-args prompt=fires).")


def draw_rows(count: int, n: int, seed: int) -> tuple[list[int], list[bool]]:
    """Which of `count` shared samples become rows (in row order) and, per row, whether run A is Response 1."""
    if n < 1:
        raise HarnessError(f"--n must be a positive number of rows, got {n}.")
    rng = np.random.default_rng(seed)
    picked = rng.choice(count, size=min(n, count), replace=False)
    a_first = rng.integers(0, 2, size=len(picked)) == 0
    return [int(i) for i in picked], [bool(x) for x in a_first]


def check_outputs(out: Path, key_path: Path | None, raters: int, force: bool) -> Path:
    """Refuses a sheet name of another format, a key that is the sheet, a sheet or key that exists (it may
    hold ratings) unless forced, and a rater count outside 1..50; returns the key's path."""
    _sheet_format(out)
    key_path = key_path or default_key_path(out)
    if key_path.resolve() == out.resolve():
        raise HarnessError(f"--key {key_path} is the sheet itself; keep the key in its own file.")
    for path in (out, key_path):
        if path.exists() and not force:
            raise HarnessError(f"{path} exists (maybe already rated); choose another --out/--key or pass --force to replace it.")
    if not 1 <= raters <= 50:
        raise HarnessError(f"--raters must be between 1 and 50, got {raters}.")
    return key_path


def export(run_a: Path, run_b: Path, out: Path, key_path: Path | None = None, n: int = 100, seed: int = 0,
           criteria_text: str | None = None, raters: int = 2, show: str | None = None, force: bool = False) -> ExportResult:
    key_path = check_outputs(out, key_path, raters, force)
    criteria, shows = parse_criteria(criteria_text)
    shows = show or shows
    ref_a, ref_b, pairs = shared_records(run_a, run_b)
    if shows == "thinking":
        _check_thinking(pairs, run_a, run_b)
    picked, a_first = draw_rows(len(pairs), n, seed)
    width = max(3, len(str(len(picked))))
    columns = content_columns(shows)
    rows, key_rows = [], []
    for number, (index, first) in enumerate(zip(picked, a_first), start=1):
        a, b = pairs[index]
        row_id = f"R{number:0{width}d}"
        one, two = (a, b) if first else (b, a)
        content = [clean(render_context(a)), *_shown_texts(one, shows), *_shown_texts(two, shows)]
        rows.append([row_id, *content, *[""] * (len(criteria) * raters)])
        key_rows.append(KeyRow(row=row_id, sample_id=a.id, response_1="a" if first else "b",
                               sha256=sha256([row_id, *content]), cell_sha256=[sha256(c) for c in content]))
    header = [ROW, *columns, *[rating_header(c.name, f"rater {r}") for r in range(1, raters + 1) for c in criteria]]
    key = ABKey(created_at=now(), run_a=ref_a, run_b=ref_b, seed=seed, requested_n=n, shared=len(pairs), shows=shows,
                criteria=criteria, raters=raters, sheet=out.name, columns=columns, rows=key_rows)
    rating_columns = list(range(1 + len(columns), len(header)))
    write_all([(key_path, model_writer(key)), (out, grid_writer(out, header, rows, rating_columns, criteria, shows))])
    return ExportResult(out, key_path, key)


def read_key(path: Path) -> ABKey:
    return store.read_model(path, ABKey, "no such key file; pass the .key.json written by `harness ab export`.",
                            "not a key written by `harness ab export`")


# --------------------------------------------------------------------------- reading a filled sheet


@dataclass
class Block:
    """One rater's columns in one sheet."""

    label: str
    columns: list[int]  # one per criterion, in the key's order
    values: dict[str, dict[str, str | None]] = field(default_factory=dict)  # criterion -> row id -> verdict for Response 1


@dataclass
class Sheet:
    grid: Grid
    rows: dict[str, int]  # row id -> grid row
    blocks: list[Block]


def _layout(grid: Grid, key: ABKey, problems: list[str]) -> list[Block]:
    """Check the header against the key; the rater blocks it holds."""
    if not grid.cells:
        problems.append(f"{grid.path}: the sheet is empty")
        return []
    fixed = [ROW, *key.columns]
    for c, want in enumerate(fixed):
        if grid.get(0, c).strip() != want:
            problems.append(f"{grid.ref(0, c)}: header '{grid.get(0, c)}' should be '{want}'")
    if problems:
        return []
    names = [c.name for c in key.criteria]
    last = max((c for c in range(grid.width) if any(grid.get(r, c).strip() for r in range(len(grid.cells)))), default=-1)
    blocks: list[Block] = []
    for start in range(len(fixed), last + 1, len(names)):
        parsed = [_RATING_HEADER.match(grid.get(0, c).strip()) for c in range(start, start + len(names))]
        labels = {m.group("rater").strip() for m in parsed if m}
        for offset, (m, name) in enumerate(zip(parsed, names)):
            if not m or m.group("criterion") != name or len(labels) != 1:
                problems.append(f"{grid.ref(0, start + offset)}: header '{grid.get(0, start + offset)}' should be "
                                f"'{rating_header(name, '<rater>')}' (criteria in the exported order, one rater label per block)")
        if labels and len(labels) == 1:
            blocks.append(Block(label=labels.pop(), columns=list(range(start, start + len(names)))))
    seen: set[str] = set()
    for block in blocks:
        if block.label in seen:
            problems.append(f"{grid.ref(0, block.columns[0])}: rater '{block.label}' has two blocks in this sheet; give each rater one label")
        seen.add(block.label)
    return blocks


def _rows(grid: Grid, key: ABKey, problems: list[str]) -> dict[str, int]:
    """Row id -> grid row, checking every shown cell against the key's hashes."""
    by_id = {r.row: r for r in key.rows}
    found: dict[str, int] = {}
    width = 1 + len(key.columns)
    edited: list[str] = []
    edited_rows: set[str] = set()
    for r in range(1, len(grid.cells)):
        if not any(v.strip() for v in grid.cells[r]):
            continue  # blank rows spreadsheets leave behind
        row_id = grid.get(r, 0).strip()
        if row_id not in by_id:
            problems.append(f"{grid.ref(r, 0)}: row id '{row_id}' is not in the key (changed row id, or a sheet of another export)")
            continue
        if row_id in found:
            problems.append(f"{grid.ref(r, 0)}: row {row_id} appears again (first at row {found[row_id] + 1}); delete the duplicate")
            continue
        found[row_id] = r
        content = [grid.get(r, c) for c in range(1, width)]
        if sha256([row_id, *content]) != by_id[row_id].sha256:
            edited_rows.add(row_id)
            for c, (text, digest) in enumerate(zip(content, by_id[row_id].cell_sha256), start=1):
                if sha256(text) != digest:
                    edited.append(f"{grid.ref(r, c)}: the {key.columns[c - 1]} of row {row_id} differs from the export; restore it")
    if len(key.rows) > 1 and len(edited_rows) > len(key.rows) / 2:  # hardly an edit: likely another export's sheet
        edited.insert(0, f"{grid.path}: {len(edited_rows)} of {len(key.rows)} rows differ from the export; "
                         "is the sheet from another export (other runs or data, or another --seed)?")
    problems.extend(edited)
    missing = [r.row for r in key.rows if r.row not in found]
    if missing:
        problems.append(f"{grid.path}: row(s) {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''} of the export are missing; restore them")
    return found


def _ratings(grid: Grid, key: ABKey, rows: dict[str, int], block: Block, may_skip: bool, problems: list[str],
             scales: dict[str, Scale] | None = None, asked: dict[str, set[str]] | None = None) -> None:
    """Fill block.values; a block is all empty (unused), or complete - unless it is a judge's (may_skip).
    `scales`: criterion -> the values its cells take (default win/tie/lose); `asked`: row id -> the
    criteria that row asks (default all); a cell not asked is None and must stay empty or NOT_ASKED."""
    empty: list[str] = []
    for criterion, c in zip(key.criteria, block.columns):
        scale = (scales or {}).get(criterion.name, VERDICTS)
        column: dict[str, str | None] = {}
        for row_id, r in rows.items():
            raw = grid.get(r, c)
            value = scale.read(raw)
            if asked is not None and criterion.name not in asked.get(row_id, ()):
                column[row_id] = None
                if raw.strip() not in ("", NOT_ASKED):
                    problems.append(f"{grid.ref(r, c)}: row {row_id} does not ask for {criterion.name}; clear the cell")
            elif value is not None:
                column[row_id] = value
            elif raw.strip() == "":
                column[row_id] = None
                empty.append(grid.ref(r, c))
            else:
                problems.append(f"{grid.ref(r, c)}: '{raw}' is not {scale.describe()}")
        block.values[criterion.name] = column
    filled = any(v is not None for column in block.values.values() for v in column.values())
    if filled and empty and not may_skip:
        problems.extend(f"{ref}: empty; rater '{block.label}' must rate every row (or leave all of their columns empty)" for ref in empty)


def read_sheet(path: Path, key: ABKey, judge_raters: Sequence[str] = (JUDGE_RATER,), ratings: bool = True,
               scales: dict[str, Scale] | None = None, asked: dict[str, set[str]] | None = None) -> tuple[Sheet, list[str]]:
    """The sheet and the problems found (nothing is raised here, so all sheets' problems are listed at once).
    `key` is an ABKey or a key of the same shape (columns, criteria with names, rows with their hashes)."""
    grid = read_grid(path)
    problems: list[str] = []
    blocks = _layout(grid, key, problems)
    rows = _rows(grid, key, problems) if not problems else {}
    if ratings and rows:
        for block in blocks:
            _ratings(grid, key, rows, block, block.label in judge_raters, problems, scales, asked)
    return Sheet(grid, rows, blocks), problems


# --------------------------------------------------------------------------- import: raters, rates, agreement


@dataclass
class Rater:
    name: str
    sheet: str
    judge: bool
    values: dict[str, dict[str, str | None]]  # criterion -> row id -> verdict for RUN A against run B


def unblind(key: ABKey, values: dict[str, dict[str, str | None]]) -> dict[str, dict[str, str | None]]:
    """Sheet verdicts (Response 1 vs 2) -> run A vs run B."""
    a_first = {r.row: r.response_1 == "a" for r in key.rows}
    return {criterion: {row: (v if v is None or a_first[row] else FLIP[v]) for row, v in column.items()}
            for criterion, column in values.items()}


def collect_raters(paths: Sequence[Path], key: ABKey, judge_raters: Sequence[str] = (JUDGE_RATER,),
                   scales: dict[str, Scale] | None = None, asked: dict[str, set[str]] | None = None,
                   unblind_with: Callable[[Any, dict[str, dict[str, str | None]]], dict[str, dict[str, str | None]]] = unblind) -> list[Rater]:
    """Every filled rater block of every sheet, un-blinded (`unblind_with`, by default win/tie/lose for
    Response 1 -> for run A); refuses (listing every offending cell) if any sheet is damaged, so nothing is
    half-imported. `scales` and `asked` as for read_sheet."""
    resolved = [p.resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise HarnessError("the same sheet is given twice; pass each filled copy once.")
    problems: list[str] = []
    found: list[tuple[Path, Block]] = []
    for path in paths:
        sheet, sheet_problems = read_sheet(path, key, judge_raters, scales=scales, asked=asked)
        problems.extend(sheet_problems)
        found.extend((path, b) for b in sheet.blocks if any(v is not None for col in b.values.values() for v in col.values()))
    problems.extend(_duplicated_blocks(found))
    if problems:
        raise HarnessError(f"refused, nothing imported: {_too_many(problems)}")
    if not found:
        raise HarnessError(f"{', '.join(map(str, paths))}: no ratings yet; fill the {'win/tie/lose' if scales is None else 'rating'} columns first.")
    labels = [b.label for _, b in found]
    def sheet_name(path: Path) -> str:  # the file name, or the whole path where two folders hold one name
        return path.name if len({q for q, _ in found if q.name == path.name}) == 1 else str(path)

    return [Rater(name=b.label if labels.count(b.label) == 1 else f"{sheet_name(p)}:{b.label}",
                  sheet=str(p), judge=b.label in judge_raters, values=unblind_with(key, b.values)) for p, b in found]


def _duplicated_blocks(found: list[tuple[Path, Block]]) -> list[str]:
    problems = []
    for i, (path_i, block_i) in enumerate(found):
        for path_j, block_j in found[i + 1:]:
            if block_i.label == block_j.label and block_i.values == block_j.values:
                problems.append(f"{path_j}: rater '{block_j.label}' repeats the ratings of {path_i} (the same copy imported twice?); "
                                "drop one, or rename the rater label if they really are two raters")
    return problems


def _codes(raters: Sequence[Rater], criterion: str, rows: Sequence[str]) -> np.ndarray:
    """(raters, rows) codes lose 0 / tie 1 / win 2, NaN for not rated."""
    return np.array([[np.nan if r.values[criterion][row] is None else CODES[r.values[criterion][row]] for row in rows]
                     for r in raters], dtype=float).reshape(len(raters), len(rows))


def rates(codes: np.ndarray, resamples: int, seed: int) -> dict[str, Any]:
    """Win / tie / lose shares of all ratings (the mean of the raters' rates when none is missing), with
    percentile bootstrap intervals over rows: a row's ratings move together, rows being the sampled unit."""
    rated = (~np.isnan(codes)).sum(axis=0).astype(float)
    out: dict[str, Any] = {"ratings": int(rated.sum()), "rates": {}, "counts": {}, "intervals": {}}
    weights = uncertainty.bootstrap_weights(codes.shape[1], resamples, seed) if resamples > 0 and codes.shape[1] else None
    for label in LABELS:
        hits = (codes == CODES[label]).sum(axis=0).astype(float)
        out["counts"][label] = int(hits.sum())
        out["rates"][label] = float(hits.sum() / rated.sum()) if rated.sum() else None
        if weights is not None and rated.sum():
            denominators = weights @ rated
            values = np.divide(weights @ hits, denominators, out=np.zeros(len(weights)), where=denominators > 0)
            out["intervals"][label] = list(uncertainty._percentile_interval(values, uncertainty.CONFIDENCE))
    return out


def _number(value: float) -> float | None:
    return None if value is None or np.isnan(value) else float(value)


def agreement_of(codes: np.ndarray, categories: int = len(LABELS), ordinal: bool = True) -> dict[str, Any]:
    """(raters, items) codes 0..categories-1, NaN = not rated. Percent agreement (of rater pairs) and
    nominal alpha for two or more raters, kappa for exactly two; ordinal alpha too where the codes are
    ordered (win > tie > lose: a win/lose disagreement weighs more than win/tie)."""
    k = categories
    result: dict[str, Any] = {"raters": int(codes.shape[0])}
    if codes.shape[0] >= 2:
        result["percent_agreement"] = _number(agreement.percent_agreement(codes))
        if ordinal:
            result["krippendorff_alpha_ordinal"] = _number(agreement.krippendorff_alpha(codes, k, "ordinal"))
        result["krippendorff_alpha_nominal"] = _number(agreement.krippendorff_alpha(codes, k, "nominal"))
    if codes.shape[0] == 2:
        result["cohen_kappa"] = _number(agreement.cohen_kappa(codes[0], codes[1], k))
    return result


def analyse(key: ABKey, raters: Sequence[Rater], resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per criterion: rates of run A vs run B from the human raters (the judges' when there are none),
    agreement among them, and each judge's rates and kappa with every human."""
    rows = [r.row for r in key.rows]
    humans = [r for r in raters if not r.judge]
    judges = [r for r in raters if r.judge] if humans else []
    primary = humans or [r for r in raters if r.judge]
    criteria = []
    for criterion in key.criteria:
        codes = _codes(primary, criterion.name, rows)
        entry = {"criterion": criterion.name, "question": criterion.question, "raters": [r.name for r in primary],
                 **rates(codes, resamples, seed), "agreement": agreement_of(codes),
                 "per_rater": {r.name: rates(_codes([r], criterion.name, rows), 0, seed) for r in primary}, "judges": []}
        for judge in judges:
            mine = _codes([judge], criterion.name, rows)
            entry["judges"].append({
                "name": judge.name, **rates(mine, resamples, seed), "unparsed": int(np.isnan(mine).sum()),
                "cohen_kappa_vs": {h.name: _number(agreement.cohen_kappa(mine[0], _codes([h], criterion.name, rows)[0], len(LABELS)))
                                   for h in humans},
                "krippendorff_alpha_ordinal_with_humans": _number(agreement.krippendorff_alpha(np.vstack([codes, mine]), len(LABELS), "ordinal")),
            })
        criteria.append(entry)
    return {"run_a": key.run_a.model_dump(), "run_b": key.run_b.model_dump(), "rows": len(rows), "shows": key.shows,
            "raters": [{"name": r.name, "sheet": r.sheet, "judge": r.judge} for r in raters],
            "resamples": resamples, "seed": seed, "confidence": uncertainty.CONFIDENCE, "criteria": criteria}


def import_sheets(paths: Sequence[Path], key_path: Path, figure: Path | None = None, resamples: int = 1000, seed: int = 0,
                  judge_raters: Sequence[str] = (JUDGE_RATER,), labels: tuple[str | None, str | None] = (None, None)) -> dict[str, Any]:
    if not paths:
        raise HarnessError("give at least one filled sheet: harness ab import sheet.xlsx --key sheet.xlsx.key.json")
    key = read_key(key_path)
    raters = collect_raters(paths, key, judge_raters)
    result = analyse(key, raters, resamples, seed)
    base = figure or paths[0].with_name(paths[0].stem + ".ab")
    if base.suffix.lower() in (".png", ".pdf"):
        base = base.with_suffix("")
    same = key.run_a.model == key.run_b.model  # e.g. two checkpoints through one adapter: the run ids tell them apart
    label_a = labels[0] or (key.run_a.run_id if same else key.run_a.model)
    label_b = labels[1] or (key.run_b.run_id if same else key.run_b.model)
    result["labels"] = [label_a, label_b]
    result["figure"] = [str(p) for p in plot(result, label_a, label_b, base)]
    return result


# --------------------------------------------------------------------------- figure


COLOURS = {"win": "#4c9f70", "tie": "#c9c9c9", "lose": "#d1495b"}


def plot(result: dict[str, Any], label_a: str, label_b: str, base: Path) -> list[Path]:
    """Horizontal stacked win / tie / lose bars (as FIRES figure 5), one per criterion (and judge); PNG + PDF."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bars = []  # (label, rates, is a judge's)
    for entry in result["criteria"]:
        bars.append((textwrap.fill(entry["criterion"], 28), entry["rates"], False))
        bars.extend((textwrap.fill(f"{entry['criterion']} ({j['name']})", 28), j["rates"], True) for j in entry["judges"])
    figure = Figure(figsize=(7.5, 1.2 + 0.62 * len(bars)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    legend = {"win": f"win ({label_a} better)", "tie": "tie", "lose": f"lose ({label_b} better)"}
    for y, (_, shares, by_judge) in enumerate(bars):
        left = 0.0
        for label in LABELS:
            share = 100 * (shares.get(label) or 0.0)
            # a judge's bar is hatched and paler: it is set beside the humans', not one of them
            axes.barh(y, share, left=left, color=COLOURS[label], edgecolor="white", height=0.62, label=legend[label] if y == 0 else None,
                      alpha=0.55 if by_judge else 1.0, hatch="//" if by_judge else None)
            if share >= 6:
                axes.text(left + share / 2, y, f"{share:.0f}%", ha="center", va="center", fontsize=9)
            left += share
    axes.set_yticks(range(len(bars)), [name for name, _, _ in bars], fontsize=9)
    axes.invert_yaxis()
    axes.set_xlim(0, 100)
    axes.set_xlabel("% of ratings")
    raters = ", ".join(result["criteria"][0]["raters"]) if result["criteria"] else ""
    judges = ", ".join(j["name"] for j in result["criteria"][0]["judges"]) if result["criteria"] else ""
    axes.set_title(f"{label_a} vs {label_b}\n{result['rows']} rows; rated by {raters}" + (f"; judge: {judges} (hatched)" if judges else ""), fontsize=10)
    figure.legend(*axes.get_legend_handles_labels(), loc="outside lower center", ncols=3, frameon=False, fontsize=9)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    written = [base.with_name(f"{base.name}.{fmt}") for fmt in ("png", "pdf")]
    write_all([(path, lambda tmp, fmt=path.suffix[1:]: figure.savefig(tmp, format=fmt, dpi=200)) for path in written])
    return written


# --------------------------------------------------------------------------- LLM judge

PROMPT_VERSION = "ab-judge-v1"
JUDGE_SYSTEM = (
    "You are an expert in emotional support conversations and counselling. You compare two candidate replies "
    "of the supporter (the therapist) to the same conversation, on one criterion only. Be impartial: neither "
    "the order in which the replies are shown nor their length may influence your verdict."
)
_MARK = r"(?:verdict|answer|rating|judg(?:e)?ment)\s*(?:is)?\s*[:=\-]?\s*[*_\"'`\[(]*\s*"  # "Verdict: ", "The answer is **"
_BETTER = re.compile(r"\b(?:response|thinking process|thinking)\s*([12])\s*(?:is|was)?\s*(?:clearly\s+|slightly\s+|much\s+)?(?:better|wins|preferred|stronger|superior)\b", re.IGNORECASE)
_THINK = re.compile(r"<think>.*?(</think>|$)", re.IGNORECASE | re.DOTALL)


def _side(texts: list[str], shows: str, number: int) -> str:
    if shows == "thinking":
        return f"Thinking process {number}:\n{texts[0]}\n\nResponse {number} (written after that thinking):\n{texts[1]}"
    return f"Response {number}:\n{texts[0]}"


def judge_request(criterion: Criterion, shows: str, context: str, first: list[str], second: list[str], max_tokens: int, seed: int) -> ChatRequest:
    item = "thinking process" if shows == "thinking" else "response"
    user = (
        f"Conversation so far:\n{context}\n\n{_side(first, shows, 1)}\n\n{_side(second, shows, 2)}\n\n"
        f"Criterion: {criterion.name}. {criterion.question}\n"
        f"Answer \"win\" if {item} 1 is better on this criterion, \"lose\" if {item} 2 is better, "
        "\"tie\" if they are equally good or equally bad.\n"
        "Give at most two sentences of reasoning, then end with one line of the form\nVerdict: win|tie|lose"
    )
    return ChatRequest(messages=(Message(role="system", content=JUDGE_SYSTEM), Message(role="user", content=user)),
                       generation=GenerationConfig(temperature=0.0, max_tokens=max_tokens, seed=seed))


def marked_answer(text: str, choices: str) -> str | None:
    """The answer word of a judge's reply, lower-cased, or None: the last "Verdict: X" (also "Answer:",
    "Rating:", "Judgement:"), else a last line that is just X. `choices` is a regex alternation
    ("win|tie|lose"); a <think> section is not read."""
    text = _THINK.sub(" ", text or "")
    marked = re.findall(_MARK + f"({choices})\\b", text, re.IGNORECASE)
    if marked:
        return marked[-1].lower()
    lines = [line for line in text.splitlines() if line.strip()]
    bare = re.match(r"^[\s*_\"'`.\[\]()]*(" + choices + r")[\s*_\"'`.!\[\]()]*$", lines[-1], re.IGNORECASE) if lines else None
    return bare.group(1).lower() if bare else None


def parse_verdict(text: str) -> str | None:
    """win / tie / lose (for Response 1) from a judge's answer, or None when it cannot be read safely.
    In order: the last "Verdict: X" (also "Answer:", "Rating:"); a last line that is just a verdict word;
    "Response 1 is better" / "Response 2 wins" when only one side is named so. A verdict word elsewhere
    is not enough ("Response 2 wins" names "win" for the wrong side), so such answers stay unparsed."""
    verdict = marked_answer(text, "win|tie|lose")
    if verdict is not None:
        return verdict
    sides = set(_BETTER.findall(_THINK.sub(" ", text or "")))
    if len(sides) == 1:
        return "win" if sides.pop() == "1" else "lose"
    return None


def _row_texts(grid: Grid, r: int, shows: str) -> tuple[str, list[str], list[str]]:
    """Context and the two sides' shown texts of grid row r."""
    cells = [grid.get(r, c) for c in range(1, 1 + len(content_columns(shows)))]
    per_side = 2 if shows == "thinking" else 1
    return cells[0], cells[1 : 1 + per_side], cells[1 + per_side :]


def _combine(first: str | None, swapped: str | None) -> str | None:
    """Both orders asked: agreeing verdicts stand; contradicting ones (position bias) are a tie."""
    if first is None or swapped is None:
        return None
    return first if first == swapped else "tie"


@dataclass
class SheetRow:
    """What the judge sees of one sheet row: the context and the two sides' texts."""

    row: str
    context: str
    first: list[str]
    second: list[str]


class PairwiseJudge(Grader):
    """The A/B judge as a grader: one request per criterion (and order) of a sheet row; each answer is
    read as win / tie / lose for Response 1 (an answer about the swapped order is flipped back), or None."""

    name = "ab"
    role = "judge"
    prompt_version = PROMPT_VERSION

    def __init__(self, criteria: Sequence[Criterion], shows: str, both_orders: bool, max_tokens: int, seed: int):
        self.criteria, self.shows, self.both_orders, self.max_tokens, self.seed = list(criteria), shows, both_orders, max_tokens, seed

    def requests(self, item: SheetRow) -> dict[str, ChatRequest]:
        asked = {}
        for criterion in self.criteria:
            asked[f"{criterion.name}|12"] = judge_request(criterion, self.shows, item.context, item.first, item.second, self.max_tokens, self.seed)
            if self.both_orders:
                asked[f"{criterion.name}|21"] = judge_request(criterion, self.shows, item.context, item.second, item.first, self.max_tokens, self.seed)
        return asked

    def parse(self, aspect: str, answer: str) -> str | None:
        verdict = parse_verdict(answer)
        if verdict is not None and aspect.endswith("|21"):
            verdict = FLIP[verdict]  # the judge saw the sides swapped; store the verdict for Response 1
        return verdict


@dataclass
class JudgeResult:
    out: Path
    log_path: Path
    filled: int
    unparsed: int
    model_calls: int
    cache_hits: int


def judge(sheet_path: Path, key_path: Path, spec: lifecycle.ModelSpec, out: Path, rater: str = JUDGE_RATER,
          both_orders: bool = False, max_tokens: int = 256, cache_path: Path | None = None, use_cache: bool = True) -> JudgeResult:
    _sheet_format(out)
    check_rater_name(rater)
    key = read_key(key_path)
    sheet, problems = read_sheet(sheet_path, key, ratings=False)
    if problems:
        raise HarnessError(f"refused: {_too_many(problems)}")
    block = _judge_block(sheet, key, rater)
    grader = PairwiseJudge(key.criteria, key.shows, both_orders, max_tokens, key.seed)
    rows = [SheetRow(key_row.row, *_row_texts(sheet.grid, sheet.rows[key_row.row], key.shows)) for key_row in key.rows]
    asked = ask_judge(spec, grader, rows, cache_path, use_cache)
    answers, verdicts = _verdicts(rows, asked.graded)
    header, grid_rows, rating_columns = _filled_grid(sheet, key, block, verdicts, rater)
    unparsed = sum(v is None for v in verdicts.values())
    log = JudgeLog(created_at=now(), rater=rater, model=spec.model, model_args=redaction.redact(spec.model_args), model_identity=asked.identity,
                   prompt_version=PROMPT_VERSION, both_orders=both_orders, filled=len(verdicts) - unparsed, unparsed=unparsed,
                   model_calls=asked.calls, cache_hits=asked.hits, answers=answers)
    log_path = out.with_name(out.name + ".judge.json")
    write_all([(out, grid_writer(out, header, grid_rows, rating_columns, key.criteria, key.shows)), (log_path, model_writer(log))])
    return JudgeResult(out, log_path, len(verdicts) - unparsed, unparsed, asked.calls, asked.hits)


def check_rater_name(rater: str) -> None:
    if not rater.strip() or "[" in rater or "]" in rater:
        raise HarnessError(f"--rater-name '{rater}': give a non-empty name without '[' or ']'.")


@dataclass
class Asked:
    graded: list[grading.Graded]
    identity: dict[str, Any]  # the judge's cache identity, secrets redacted
    calls: int
    hits: int


def ask_judge(spec: lifecycle.ModelSpec, grader: Grader, items: Sequence[Any], cache_path: Path | None, use_cache: bool) -> Asked:
    """Every item graded by the judge `spec` through the response cache (a re-judged sheet is free)."""
    # a judge serves no run, so it gets no task context
    models = lifecycle.open_models({"judge": spec}, lifecycle.open_cache(cache_path, use_cache), None, {"judge": "--judge-args"})
    model = models["judge"]
    try:
        graded = grading.grade(grader, items, model.generate)
        identity = redaction.redact(model.cache_identity())
    finally:
        lifecycle.close_models(models)
    return Asked(graded, identity, model.calls, model.hits)


def _judge_block(sheet: Sheet, key: ABKey, rater: str) -> Block | None:
    """The existing empty block labelled `rater` to fill, or None to append one; a rated one is refused."""
    for block in sheet.blocks:
        if block.label == rater:
            if any(sheet.grid.get(r, c).strip() not in ("", NOT_ASKED) for r in sheet.rows.values() for c in block.columns):
                raise HarnessError(f"{sheet.grid.path}: rater '{rater}' already has ratings; pass another --rater-name or judge the exported sheet.")
            return block
    return None


def _verdicts(rows: Sequence[SheetRow], graded: Sequence[grading.Graded]) -> tuple[list[JudgeVerdict], dict[tuple[str, str], str | None]]:
    answers, by_cell = [], {}
    for row, result in zip(rows, graded):
        for aspect, verdict in result.values.items():
            criterion, _, order = aspect.rpartition("|")
            answers.append(JudgeVerdict(row=row.row, criterion=criterion, order=order, raw=result.raw[aspect], verdict=verdict))
            by_cell.setdefault((row.row, criterion), []).append(verdict)
    verdicts = {cell: (found[0] if len(found) == 1 else _combine(*found)) for cell, found in by_cell.items()}
    return answers, verdicts


def _filled_grid(sheet: Sheet, key: ABKey, block: Block | None, verdicts, rater: str):
    """The output table: the input's rows (in its order) and blocks, plus the judge's block."""
    grid = sheet.grid
    fixed = 1 + len(key.columns)
    blocks = [(b.label, b.columns) for b in sheet.blocks]
    width = fixed + len(key.criteria) * len(blocks)
    if block is None:
        blocks.append((rater, list(range(width, width + len(key.criteria)))))
        width += len(key.criteria)
    header = [grid.get(0, c) for c in range(fixed)] + [""] * (width - fixed)
    for label, columns in blocks:
        for criterion, c in zip(key.criteria, columns):
            header[c] = rating_header(criterion.name, label)
    rows = []
    for row_id, r in sorted(sheet.rows.items(), key=lambda item: item[1]):
        values = [grid.get(r, c) for c in range(width)]
        for label, columns in blocks:
            if label == rater:
                for criterion, c in zip(key.criteria, columns):
                    values[c] = verdicts.get((row_id, criterion.name)) or ""
        rows.append(values)
    return header, rows, list(range(fixed, width))
