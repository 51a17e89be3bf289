"""`harness train compeer-annotate`: rating sheets for COMPEER's CER data (Wang et al. 2025, "Controllable
Empathetic Reasoning Generation and Annotation"), for people, with an LLM rater beside them.

The paper labels each of the three reasoning steps point-wise (True / False) and the pair of responses
pair-wise (four options: the original better, the model's better, both almost equally good, neither
acceptable); two annotators label each example and a third settles their disagreements; a label needs two
annotators who agree.

export: one sheet row per CER row: the history, the three steps and the two responses (the dataset's
    original and the model's) in a seeded random order per row, "Response 1" / "Response 2". Per rater a
    block of Step 1 / Step 2 / Step 3 (True / False) and Preference (the four options, said of Response 1
    and 2). Which response is the model's lives only in the key file, with a sha256 of every shown cell.
    --adjudicate: a sheet of the rows whose stored annotations disagree, asking only the disputed cells
    (the others read "(not asked)"), for a third rater.
import: reads filled copies with the A/B importer's refusal rules (reports/ab.py: wrong key, edited
    content, unknown values, incomplete or repeated raters; every problem in one line, nothing written),
    maps the preferences back to the model response (data.PREFERENCES), stores every rater's labels in
    the rows' annotations and sets the final labels: the label at least two raters agree on (for two
    raters: their common label; after a disagreement, the third rater's when it sides with one of them),
    else None. The updated data.jsonl is written at once. Reports agreement: percent agreement, Cohen's
    kappa (two raters) and Krippendorff's alpha (nominal) per step and for the preference.
judge: an LLM fills one rater block through the harness's adapters and response cache (as `harness ab
    judge`); answers it cannot read are left empty and counted. Judge blocks (--judge-rater, default
    llm-judge) are stored and compared with the people, never counted towards the final labels.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import click
import numpy as np
from pydantic import BaseModel

from harness import lifecycle, options, redaction, store
from harness.contract import ChatRequest, GenerationConfig, Grader, Message
from harness.errors import HarnessError
from reports import ab, agreement

from . import data
from .data import PREFERENCES, CerRow

KEY_KIND = "esc-harness-compeer-annotate-key"
STEP_NAMES = ("history analysis", "emotional state", "support strategy")  # data.N_STEPS steps, in order
STEPS = tuple(f"Step {i}" for i in range(1, data.N_STEPS + 1))
PREFERENCE = "Preference"
CRITERIA = (*STEPS, PREFERENCE)
COLUMNS = ["context", *[f"reasoning step {i}" for i in range(1, data.N_STEPS + 1)], "response 1", "response 2"]
TRUE_FALSE = ab.Scale(("True", "False"))
# the paper's four options, said of the sheet's order (data.PREFERENCES says them of the model response)
SHOWN = ("Response 1 is better", "Response 2 is better", "Both are almost equally good", "Neither is acceptable")
SCALES = {**{step: TRUE_FALSE for step in STEPS}, PREFERENCE: ab.Scale(SHOWN)}
STEP_CODES = {False: 0, True: 1}
QUESTIONS = {  # what raters and the judge are asked of each rating column
    STEPS[0]: "Does it get the conversation so far right: what has happened and what the seeker is struggling with?",
    STEPS[1]: "Does it read the seeker's current emotion, and how strong it is, correctly?",
    STEPS[2]: "Is the support strategy it chooses a sound next move, given the conversation and the first two steps?",
    PREFERENCE: "As the supporter's next turn, which response is better?",
}
JUDGE_RATER = ab.JUDGE_RATER
CLI = "harness train compeer-annotate"


# --------------------------------------------------------------------------- the key (on disk)


class CerKeyRow(BaseModel):
    row: str  # the row id shown in the sheet
    id: str  # the CER row's id
    response_1: Literal["model", "original"]  # which response is shown as Response 1
    sha256: str  # of the row's shown content: json [row id, context, steps..., response 1, response 2]
    cell_sha256: list[str]  # of each shown content cell, to name the edited cell
    asked: list[str] | None = None  # the criteria this row asks (an adjudication sheet); None: all


class CerKey(BaseModel):
    """<sheet>.key.json: what un-blinds a sheet and ties it to its CER rows; never shown to raters."""

    kind: Literal["esc-harness-compeer-annotate-key"] = KEY_KIND
    schema_version: int = 1
    created_at: str
    purpose: Literal["annotate", "adjudicate"]
    data: str  # the data.jsonl the sheet was exported from (the import checks the rows, not the path)
    seed: int
    raters: int  # rater blocks in the exported sheet
    rater_labels: list[str]
    adjudicating: list[str] = []  # adjudicate: the raters whose disagreements the sheet asks about
    sheet: str
    columns: list[str]
    criteria: list[ab.Criterion]
    rows: list[CerKeyRow]


class CerJudgeAnswer(BaseModel):
    row: str
    criterion: str
    raw: str
    value: str | None  # as a sheet cell (True / False, or one of the four options in the sheet's order)


class CerJudgeLog(BaseModel):
    """<filled sheet>.judge.json: what the judge was asked and answered, to audit its block."""

    kind: Literal["esc-harness-compeer-annotate-judge"] = "esc-harness-compeer-annotate-judge"
    created_at: str
    rater: str
    model: str
    model_args: dict[str, Any]  # secrets redacted
    model_identity: dict[str, Any]
    prompt_version: str
    filled: int
    unparsed: int
    model_calls: int
    cache_hits: int
    answers: list[CerJudgeAnswer]


def read_key(path: Path) -> CerKey:
    return store.read_model(path, CerKey, f"no such key file; pass the .key.json written by `{CLI} export`.",
                            f"not a key written by `{CLI} export`")


def _criteria() -> list[ab.Criterion]:
    return [ab.Criterion(name=name, question=QUESTIONS[name]) for name in CRITERIA]


def _asked(key: CerKey) -> dict[str, set[str]] | None:
    if all(r.asked is None for r in key.rows):
        return None
    return {r.row: set(r.asked if r.asked is not None else CRITERIA) for r in key.rows}


# --------------------------------------------------------------------------- labels: votes and consensus


def is_judge(name: str, judge_raters: Sequence[str]) -> bool:
    """A judge's name as stored: its label, or "<sheet>:<label>" where two sheets used the label."""
    return name in judge_raters or name.rpartition(":")[2] in judge_raters


def votes(annotations: data.Annotations, criterion: str, judge_raters: Sequence[str]) -> list[Any]:
    """The people's labels of one criterion of a row (a bool per step, a PREFERENCES value), unrated left out."""
    if criterion == PREFERENCE:
        found = [v for name, v in annotations.preference.items() if not is_judge(name, judge_raters)]
    else:
        i = STEPS.index(criterion)
        found = [steps[i] if i < len(steps) else None for name, steps in annotations.steps.items() if not is_judge(name, judge_raters)]
    return [v for v in found if v is not None]


def consensus(labels: Sequence[Any], min_votes: int = 2) -> Any:
    """The label at least `min_votes` raters gave and more raters than any other gave, else None (the paper keeps
    a label only where at least two annotators agree; `--judges-label` lowers it to one)."""
    counts = Counter(labels).most_common()
    if not counts or counts[0][1] < min_votes or (len(counts) > 1 and counts[1][1] == counts[0][1]):
        return None
    return counts[0][0]


def disputed(annotations: data.Annotations, judge_raters: Sequence[str]) -> list[str]:
    """The criteria of a row that two or more people rated without a consensus."""
    return [c for c in CRITERIA if len(found := votes(annotations, c, judge_raters)) >= 2 and consensus(found) is None]


def finals(annotations: data.Annotations, judge_raters: Sequence[str], min_votes: int = 2) -> tuple[list[bool] | None, str | None]:
    """(final_steps: every step's consensus, or None while one lacks it; final_preference)."""
    steps = [consensus(votes(annotations, step, judge_raters), min_votes) for step in STEPS]
    return (steps if all(s is not None for s in steps) else None), consensus(votes(annotations, PREFERENCE, judge_raters), min_votes)


# --------------------------------------------------------------------------- export


def _content(row: CerRow, model_first: bool) -> list[str]:
    """The shown cells after the row id: context, the steps, Response 1, Response 2."""
    model = ab.clean(row.response) or ab.EMPTY_RESPONSE
    original = ab.clean(row.original) or ab.EMPTY_RESPONSE
    first, second = (model, original) if model_first else (original, model)
    return [ab.clean(ab.render_context(row)), *[ab.clean(step) for step in row.steps], first, second]


def _index(rows: Sequence[CerRow], path: Path) -> dict[str, CerRow]:
    by_id: dict[str, CerRow] = {}
    for row in rows:
        if row.id in by_id:
            raise HarnessError(f"{path}: row id '{row.id}' appears twice; give every CER row its own id.")
        by_id[row.id] = row
    return by_id


def _data_path(folder: Path) -> Path:
    folder = Path(folder)
    return folder if folder.is_file() else folder / data.ROWS


def _free_labels(rows: Sequence[CerRow], n: int) -> list[str]:
    """n labels "rater k" not yet used in the rows' annotations."""
    used = {name for row in rows for name in (*row.annotations.steps, *row.annotations.preference)}
    labels, k = [], 1
    while len(labels) < n:
        if f"rater {k}" not in used:
            labels.append(f"rater {k}")
        k += 1
    return labels


def instructions(purpose: str) -> list[str]:
    lines = [
        f"COMPEER annotation sheet (esc-harness `{CLI}`).",
        "",
        "Each row is one moment of an emotional-support conversation: the conversation so far (context), a supporter's",
        "reasoning before its next reply in three steps, and two candidate next replies of the supporter, numbered",
        "Response 1 and Response 2 in a random order per row (one of them was written by the dataset's supporter).",
        "",
        "Step 1 / Step 2 / Step 3: choose True when that reasoning step is correct, False when it is not:",
        *[f"  Step {i + 1}, {name}: {QUESTIONS[STEPS[i]]}" for i, name in enumerate(STEP_NAMES)],
        "Preference: compare the two responses as the supporter's next turn and choose one of",
        *[f"  {option}" for option in SHOWN],
        "",
        "A rater fills only the columns whose header names them in brackets (e.g. 'Step 1 [rater 1]'), on every row;",
        "you may replace the label inside the brackets by your name (in all four of your columns).",
        "Do not edit the row ids, the context, the steps or the responses, and do not add or delete rows: the importer",
        "checks them. Sorting the rows is fine.",
    ]
    if purpose == "adjudicate":
        lines += ["", "This sheet holds only what earlier raters disagreed on: rate the cells with a drop-down;",
                  f"a cell reading {ab.NOT_ASKED} was agreed on, leave it as it is."]
    return lines


_NOTES = {True: "True: this reasoning step is correct; False: it is not.",
          False: "Of Response 1 and Response 2: " + "; ".join(SHOWN) + "."}


def sheet_writer(path: Path, key: CerKey, header: list[str], rows: list[list[str]]):
    """The sheet's writer: True / False drop-downs on the step cells and the four options on the preference
    cells (only the cells a row asks), the header notes and the instructions."""
    fixed = 1 + len(key.columns)
    rating_columns = list(range(fixed, len(header)))
    asked = _asked(key)
    cells: dict[bool, list[str]] = {True: [], False: []}  # step or preference -> A1 ranges
    for c in rating_columns:
        criterion = CRITERIA[(c - fixed) % len(CRITERIA)]
        is_step = criterion != PREFERENCE
        if asked is None:
            cells[is_step].extend(ab.column_ranges([c], len(rows)))
        else:
            cells[is_step].extend(f"{ab._column_letter(c)}{r}" for r, values in enumerate(rows, start=2) if criterion in asked.get(values[0], ()))
    drop_downs = [ab.DropDown(TRUE_FALSE.options, tuple(cells[True]), "True / False", "Is the reasoning step correct?", _NOTES[True]),
                  ab.DropDown(SHOWN, tuple(cells[False]), "Preference", "Response 1 vs Response 2", _NOTES[False])]
    notes = {c: _NOTES[CRITERIA[(c - fixed) % len(CRITERIA)] != PREFERENCE] for c in rating_columns}
    return ab.sheet_writer(path, header, rows, rating_columns, drop_downs, notes, instructions(key.purpose), author=CLI)


@dataclass
class ExportResult:
    sheet: Path
    key_path: Path
    key: CerKey
    instructions: Path | None  # beside a .csv sheet


def export(data_dir: Path, out: Path, key_path: Path | None = None, raters: int | None = None, seed: int = 0,
           adjudicate: bool = False, judge_raters: Sequence[str] = (JUDGE_RATER,), force: bool = False) -> ExportResult:
    raters = raters if raters is not None else (1 if adjudicate else 2)
    key_path = ab.check_outputs(out, key_path, raters, force)
    _, rows = data.read_rows(data_dir)
    source = _data_path(data_dir)
    _index(rows, source)
    if adjudicate:
        chosen = [(row, disputed(row.annotations, judge_raters)) for row in rows]
        chosen = [(row, asked) for row, asked in chosen if asked]
        if not chosen:
            raise HarnessError(f"{source}: no disagreement to adjudicate (no row has two raters without a consensus label); "
                               f"import both raters' sheets first (`{CLI} import`).")
        labels = _free_labels(rows, raters)
        among = sorted({name for row, _ in chosen for name in (*row.annotations.steps, *row.annotations.preference)
                        if not is_judge(name, judge_raters)})
    else:
        chosen = [(row, None) for row in rows]
        labels, among = [f"rater {k}" for k in range(1, raters + 1)], []
    rng = np.random.default_rng(seed)
    model_first = [bool(x) for x in rng.integers(0, 2, size=len(chosen)) == 0]
    width = max(3, len(str(len(chosen))))
    grid_rows, key_rows = [], []
    for number, ((row, asked), first) in enumerate(zip(chosen, model_first), start=1):
        row_id = f"R{number:0{width}d}"
        content = _content(row, first)
        ratings = ["" if asked is None or criterion in asked else ab.NOT_ASKED for _ in labels for criterion in CRITERIA]
        grid_rows.append([row_id, *content, *ratings])
        key_rows.append(CerKeyRow(row=row_id, id=row.id, response_1="model" if first else "original", sha256=ab.sha256([row_id, *content]),
                                  cell_sha256=[ab.sha256(c) for c in content], asked=asked))
    header = [ab.ROW, *COLUMNS, *[ab.rating_header(c, label) for label in labels for c in CRITERIA]]
    key = CerKey(created_at=ab.now(), purpose="adjudicate" if adjudicate else "annotate", data=str(source.resolve()), seed=seed,
                 raters=raters, rater_labels=labels, adjudicating=among, sheet=out.name, columns=COLUMNS, criteria=_criteria(), rows=key_rows)
    files = [(key_path, ab.model_writer(key)), (out, sheet_writer(out, key, header, grid_rows))]
    notes = None
    if out.suffix.lower() == ".csv":  # a CSV has no second sheet: the instructions go beside it
        notes = out.with_name(out.name + ".instructions.txt")
        text = "\n".join(instructions(key.purpose)) + "\n"
        files.append((notes, lambda tmp: tmp.write_text(text, encoding="utf-8")))
    ab.write_all(files)
    return ExportResult(out, key_path, key, notes)


# --------------------------------------------------------------------------- import


def _unblind(key: CerKey, values: dict[str, dict[str, str | None]]) -> dict[str, dict[str, str | None]]:
    """Sheet preferences (of Response 1 / 2) -> data.PREFERENCES (of the model response); steps as they are."""
    model_first = {r.row: r.response_1 == "model" for r in key.rows}
    out = dict(values)
    mapping = {True: dict(zip(SHOWN, PREFERENCES)),
               False: dict(zip(SHOWN, ("original_better", "model_better", "both_good", "neither")))}
    out[PREFERENCE] = {row: None if v is None else mapping[model_first[row]][v] for row, v in values[PREFERENCE].items()}
    return out


def _check_data(key: CerKey, by_id: dict[str, CerRow], source: Path) -> None:
    """The key's rows must still be in the data with the content the sheet showed."""
    problems = []
    for key_row in key.rows:
        row = by_id.get(key_row.id)
        if row is None:
            problems.append(f"{source}: row '{key_row.id}' (sheet row {key_row.row}) is not in the data")
            continue
        content = _content(row, key_row.response_1 == "model")
        if ab.sha256([key_row.row, *content]) != key_row.sha256:
            changed = [name for name, text, digest in zip(key.columns, content, key_row.cell_sha256) if ab.sha256(text) != digest]
            problems.append(f"{source}: row '{key_row.id}' (sheet row {key_row.row}) has another {', '.join(changed)} than the sheet showed")
    if problems:
        raise HarnessError(f"refused, nothing imported: {ab._too_many(problems)}; import into the data the sheet was exported from "
                           "(or export a new sheet).")


def _as_bool(value: str | None) -> bool | None:
    return None if value is None else value == "True"


def _codes(raters: Sequence[ab.Rater], criterion: str, rows: Sequence[str]) -> np.ndarray:
    """(raters, rows) codes: a step False 0 / True 1, a preference its index in data.PREFERENCES; NaN unrated."""
    def code(value: str | None) -> float:
        if value is None:
            return np.nan
        return float(PREFERENCES.index(value)) if criterion == PREFERENCE else float(STEP_CODES[value == "True"])
    return np.array([[code(r.values[criterion][row]) for row in rows] for r in raters], dtype=float).reshape(len(raters), len(rows))


def _categories(criterion: str | None) -> int:
    return len(PREFERENCES) if criterion == PREFERENCE else len(STEP_CODES)


def _agreement_entry(name: str, question: str, codes: np.ndarray, humans: list[str], judges: list[tuple[str, np.ndarray]], k: int) -> dict[str, Any]:
    entry = {"criterion": name, "question": question, "raters": humans,
             "items_rated_twice": int(((~np.isnan(codes)).sum(axis=0) >= 2).sum()),
             "agreement": ab.agreement_of(codes, k, ordinal=False), "judges": []}
    for judge, mine in judges:
        entry["judges"].append({
            "name": judge, "unparsed": int(np.isnan(mine).sum()),
            "percent_agreement_vs": {h: ab._number(agreement.percent_agreement(np.vstack([mine, codes[i]]))) for i, h in enumerate(humans)},
            "cohen_kappa_vs": {h: ab._number(agreement.cohen_kappa(mine, codes[i], k)) for i, h in enumerate(humans)},
        })
    return entry


def agreement_report(key: CerKey, raters: Sequence[ab.Rater]) -> list[dict[str, Any]]:
    """Per step, the three steps pooled, and the preference: the people's agreement (percent, Cohen's
    kappa for two, Krippendorff's alpha nominal) and each judge's against every person."""
    rows = [r.row for r in key.rows]
    humans = [r for r in raters if not r.judge]
    judges = [r for r in raters if r.judge]
    entries = []
    for criterion in CRITERIA:
        entries.append(_agreement_entry(criterion, QUESTIONS[criterion], _codes(humans, criterion, rows), [h.name for h in humans],
                                        [(j.name, _codes([j], criterion, rows)[0]) for j in judges], _categories(criterion)))
        if criterion == STEPS[-1]:  # the steps pooled: every (row, step) an item
            pooled = np.hstack([_codes(humans, s, rows) for s in STEPS])
            mine = [(j.name, np.hstack([_codes([j], s, rows)[0] for s in STEPS])) for j in judges]
            entries.append(_agreement_entry("Steps (pooled)", "All three reasoning steps as one set of items", pooled,
                                            [h.name for h in humans], mine, len(STEP_CODES)))
    return entries


def import_sheets(paths: Sequence[Path], key_path: Path, data_dir: Path, out_dir: Path | None = None,
                  judge_raters: Sequence[str] = (JUDGE_RATER,), replace: bool = False, judges_label: bool = False) -> dict[str, Any]:
    if not paths:
        raise HarnessError(f"give at least one filled sheet: {CLI} import sheet.xlsx --key sheet.xlsx.key.json --data DATA_DIR")
    key = read_key(key_path)
    manifest, rows = data.read_rows(data_dir)
    source = _data_path(data_dir)
    target = source if out_dir is None else Path(out_dir) / data.ROWS
    if out_dir is not None and target.resolve() != source.resolve() and target.exists():
        raise HarnessError(f"{target} exists; import into the data folder itself (no --out) or into a new folder.")
    by_id = _index(rows, source)
    _check_data(key, by_id, source)
    raters = ab.collect_raters(paths, key, judge_raters, SCALES, _asked(key), _unblind)
    judges = [*judge_raters, *(r.name for r in raters if r.judge)]
    min_votes = 2
    if judges_label:  # no people: the LLM blocks are the raters, and one block's label is enough
        judges, min_votes = [], 1
    conflicts: list[str] = []
    updated: dict[str, data.Annotations] = {}
    for key_row in key.rows:
        annotations = by_id[key_row.id].annotations.model_copy(deep=True)
        for rater in raters:
            steps = [_as_bool(rater.values[step][key_row.row]) for step in STEPS]
            preference = rater.values[PREFERENCE][key_row.row]
            if all(s is None for s in steps) and preference is None:
                continue  # nothing from this rater here (a judge that could not be read)
            known = rater.name in annotations.steps or rater.name in annotations.preference
            if known and (annotations.steps.get(rater.name), annotations.preference.get(rater.name)) != (steps, preference) and not replace:
                conflicts.append(f"{source}: row '{key_row.id}' already has other labels by '{rater.name}'")
            annotations.steps[rater.name] = steps
            annotations.preference[rater.name] = preference
        annotations.final_steps, annotations.final_preference = finals(annotations, judges, min_votes)
        updated[key_row.id] = annotations
    if conflicts:
        raise HarnessError(f"refused, nothing imported: {ab._too_many(conflicts)}; rename the rater label in the sheet "
                           "(a new rater), or pass --replace to overwrite their earlier labels.")
    new_rows = [row.model_copy(update={"annotations": updated[row.id]}) if row.id in updated else row for row in rows]
    files = [(target, lambda tmp: data.write_rows(tmp, new_rows))]
    if manifest is not None and target.parent.resolve() != source.parent.resolve():
        files.insert(0, (target.parent / data.MANIFEST, ab.model_writer(manifest)))
    ab.write_all(files)
    result: dict[str, Any] = {
        "data": str(target), "purpose": key.purpose, "rows": len(key.rows),
        "raters": [{"name": r.name, "sheet": r.sheet, "judge": r.judge} for r in raters], "judges_label": judges_label,
        "finals": _finals_summary([updated[r.id] for r in key.rows], judges),
    }
    if key.purpose == "annotate":
        result["criteria"] = agreement_report(key, raters)
    else:
        asked = _asked(key) or {}
        result["adjudicated"] = {c: sum(c in asked[r.row] for r in key.rows) for c in CRITERIA}
    return result


def _finals_summary(annotations: Sequence[data.Annotations], judges: Sequence[str]) -> dict[str, Any]:
    return {
        "steps": sum(a.final_steps is not None for a in annotations),
        "preference": sum(a.final_preference is not None for a in annotations),
        "preference_counts": {p: sum(a.final_preference == p for a in annotations) for p in PREFERENCES},
        "disputed_rows": sum(bool(disputed(a, judges)) for a in annotations),
    }


# --------------------------------------------------------------------------- LLM judge

PROMPT_VERSION = "compeer-annotate-v1"
JUDGE_SYSTEM = (
    "You are an experienced counsellor who reviews emotional-support conversations between a help-seeker and a "
    "supporter. You check one thing at a time and answer strictly in the requested format. Neither the order nor "
    "the length of the texts may sway you."
)
_PICKS = {"1": SHOWN[0], "2": SHOWN[1], "both": SHOWN[2], "neither": SHOWN[3]}


def parse_step(text: str) -> str | None:
    """True / False from a judge's answer about a step, or None."""
    found = ab.marked_answer(text, "true|false|incorrect|correct")
    return None if found is None else ("True" if found in ("true", "correct") else "False")


def parse_preference(text: str) -> str | None:
    """One of the four options (of the sheet's order) from a judge's answer, or None."""
    found = ab.marked_answer(text, r"response\s*[12]|[12]|both|neither")
    return None if found is None else _PICKS[found[-1] if found.startswith("response") else found]


def _steps_text(steps: Sequence[str]) -> str:
    return "\n".join(f"Step {i + 1} ({STEP_NAMES[i]}): {text}" for i, text in enumerate(steps))


def step_request(index: int, context: str, steps: Sequence[str], max_tokens: int, seed: int) -> ChatRequest:
    user = (
        f"Conversation so far:\n{context}\n\nThe supporter's reasoning before its next reply, in three steps:\n{_steps_text(steps)}\n\n"
        f"Judge Step {index + 1} ({STEP_NAMES[index]}) only. {QUESTIONS[STEPS[index]]}\n"
        "Give at most two sentences of reasoning, then end with one line of the form\nVerdict: True|False"
    )
    return ChatRequest(messages=(Message(role="system", content=JUDGE_SYSTEM), Message(role="user", content=user)),
                       generation=GenerationConfig(temperature=0.0, max_tokens=max_tokens, seed=seed))


def preference_request(context: str, first: str, second: str, max_tokens: int, seed: int) -> ChatRequest:
    user = (
        f"Conversation so far:\n{context}\n\nTwo candidate next replies of the supporter:\n\nResponse 1:\n{first}\n\nResponse 2:\n{second}\n\n"
        f"{QUESTIONS[PREFERENCE]} Answer\n  1 if Response 1 is better,\n  2 if Response 2 is better,\n"
        "  both if both are almost equally good,\n  neither if neither is acceptable.\n"
        "Give at most two sentences of reasoning, then end with one line of the form\nVerdict: 1|2|both|neither"
    )
    return ChatRequest(messages=(Message(role="system", content=JUDGE_SYSTEM), Message(role="user", content=user)),
                       generation=GenerationConfig(temperature=0.0, max_tokens=max_tokens, seed=seed))


@dataclass
class JudgeItem:
    """What the judge sees of one sheet row, and which criteria it is asked."""

    row: str
    context: str
    steps: list[str]
    first: str
    second: str
    asked: list[str]


class CerJudge(Grader):
    """One request per asked criterion of a sheet row: each step on its own (the steps, not the responses,
    are shown), the preference on the two responses alone (so the steps cannot tell which one is the model's)."""

    name = "compeer-annotate"
    role = "judge"
    prompt_version = PROMPT_VERSION

    def __init__(self, max_tokens: int, seed: int):
        self.max_tokens, self.seed = max_tokens, seed

    def requests(self, item: JudgeItem) -> dict[str, ChatRequest]:
        asked = {}
        for criterion in item.asked:
            if criterion == PREFERENCE:
                asked[criterion] = preference_request(item.context, item.first, item.second, self.max_tokens, self.seed)
            else:
                asked[criterion] = step_request(STEPS.index(criterion), item.context, item.steps, self.max_tokens, self.seed)
        return asked

    def parse(self, aspect: str, answer: str) -> str | None:
        return parse_preference(answer) if aspect == PREFERENCE else parse_step(answer)


def judge(sheet_path: Path, key_path: Path, spec: lifecycle.ModelSpec, out: Path, rater: str = JUDGE_RATER,
          max_tokens: int = 256, cache_path: Path | None = None, use_cache: bool = True) -> ab.JudgeResult:
    ab._sheet_format(out)
    ab.check_rater_name(rater)
    key = read_key(key_path)
    sheet, problems = ab.read_sheet(sheet_path, key, ratings=False)
    if problems:
        raise HarnessError(f"refused: {ab._too_many(problems)}")
    block = ab._judge_block(sheet, key, rater)
    asked = _asked(key)
    items = []
    for key_row in key.rows:
        r = sheet.rows[key_row.row]
        cells = [sheet.grid.get(r, c) for c in range(1, 1 + len(key.columns))]
        wanted = [c for c in CRITERIA if asked is None or c in asked[key_row.row]]
        items.append(JudgeItem(key_row.row, cells[0], cells[1:1 + len(STEPS)], cells[-2], cells[-1], wanted))
    answered = ab.ask_judge(spec, CerJudge(max_tokens, key.seed), items, cache_path, use_cache)
    answers, values = [], {}
    for item, graded in zip(items, answered.graded):
        for criterion, value in graded.values.items():
            answers.append(CerJudgeAnswer(row=item.row, criterion=criterion, raw=graded.raw[criterion], value=value))
            values[(item.row, criterion)] = value
    header, grid_rows, _ = ab._filled_grid(sheet, key, block, values, rater)
    if asked is not None:  # the judge's cells a row does not ask read as the sheet's others do
        mine = {header.index(ab.rating_header(c, rater)): c for c in CRITERIA}
        for values_row in grid_rows:
            for c, criterion in mine.items():
                if criterion not in asked[values_row[0]]:
                    values_row[c] = ab.NOT_ASKED
    unparsed = sum(v is None for v in values.values())
    log = CerJudgeLog(created_at=ab.now(), rater=rater, model=spec.model, model_args=redaction.redact(spec.model_args),
                      model_identity=answered.identity, prompt_version=PROMPT_VERSION, filled=len(values) - unparsed, unparsed=unparsed,
                      model_calls=answered.calls, cache_hits=answered.hits, answers=answers)
    log_path = out.with_name(out.name + ".judge.json")
    ab.write_all([(out, sheet_writer(out, key, header, grid_rows)), (log_path, ab.model_writer(log))])
    return ab.JudgeResult(out, log_path, len(values) - unparsed, unparsed, answered.calls, answered.hits)


# --------------------------------------------------------------------------- the command line


@click.group("compeer-annotate")
def compeer_annotate() -> None:
    """Annotation sheets for COMPEER's CER data: export for people, import their labels (with agreement),
    adjudicate disagreements, and let an LLM fill a rater block."""


@compeer_annotate.command("export")
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False), help="sheet.xlsx (drop-downs) or sheet.csv.")
@click.option("--key", "key_path", type=click.Path(path_type=Path, dir_okay=False), help="Key file [default: <sheet>.key.json].")
@click.option("--raters", type=int, default=None, help="Rater column blocks [default: 2; 1 with --adjudicate].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds each row's order of the two responses.")
@click.option("--adjudicate", is_flag=True, help="Only the rows and cells whose stored labels disagree, for a third rater.")
@click.option("--judge-rater", "judge_raters", multiple=True, default=(JUDGE_RATER,), show_default=True,
              help="Rater labels that are LLM judges: their labels never make a disagreement.")
@click.option("--force", is_flag=True, help="Replace an existing sheet / key.")
def export_cmd(data_dir, out, key_path, raters, seed, adjudicate, judge_raters, force) -> None:
    """Write a rating sheet of the CER rows in DATA_DIR and its key (keep the key from the raters)."""
    result = export(data_dir, out, key_path, raters, seed, adjudicate, judge_raters, force)
    key = result.key
    what = "rows with disagreements" if adjudicate else "rows"
    click.echo(f"{result.sheet}: {len(key.rows)} {what}, {key.raters} rater block(s) ({', '.join(key.rater_labels)}) of "
               f"{', '.join(CRITERIA)}; responses in a random order per row (seed {key.seed})")
    click.echo(f"{result.key_path}: the key (which response is the model's on each row); keep it from the raters")
    if result.instructions:
        click.echo(f"{result.instructions}: the instructions for the raters")


def _stat(value: float | None, percent: bool = False) -> str:
    return "n/a" if value is None else (f"{100 * value:.1f}%" if percent else f"{value:.3f}")


def text_report(result: dict[str, Any]) -> list[str]:
    names = ", ".join(r["name"] + (" (judge)" if r["judge"] else "") for r in result["raters"])
    lines = [f"{result['data']}: {result['rows']} rows of a{'n adjudication' if result['purpose'] == 'adjudicate' else 'n annotation'} "
             f"sheet imported; raters: {names}"]
    for entry in result.get("criteria", []):
        agree = entry["agreement"]
        if agree["raters"] >= 2:
            kappa = f", Cohen's kappa {_stat(agree['cohen_kappa'])}" if "cohen_kappa" in agree else ""
            lines.append(f"{entry['criterion']}: agreement {_stat(agree['percent_agreement'], True)} on {entry['items_rated_twice']} items{kappa}, "
                         f"Krippendorff's alpha (nominal) {_stat(agree['krippendorff_alpha_nominal'])}")
        else:
            lines.append(f"{entry['criterion']}: one rater, no agreement to report")
        for judge_entry in entry["judges"]:
            versus = ", ".join(f"{h} {_stat(p, True)} / kappa {_stat(judge_entry['cohen_kappa_vs'][h])}"
                               for h, p in judge_entry["percent_agreement_vs"].items())
            lines.append(f"  judge {judge_entry['name']}: unparsed {judge_entry['unparsed']}" + (f"; agreement vs {versus}" if versus else ""))
    if "adjudicated" in result:
        lines.append("adjudicated cells: " + ", ".join(f"{c} {n}" for c, n in result["adjudicated"].items()))
    final = result["finals"]
    lines.append(f"final labels: steps on {final['steps']} of {result['rows']} rows, preference on {final['preference']} "
                 f"({', '.join(f'{p} {n}' for p, n in final['preference_counts'].items())})")
    if final["disputed_rows"]:
        lines.append(f"{final['disputed_rows']} row(s) still disagree: `{CLI} export --adjudicate` makes the sheet for a third rater")
    return lines


@compeer_annotate.command("import")
@click.argument("sheets", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--key", "key_path", required=True, type=click.Path(path_type=Path, dir_okay=False), help=f"The key written by `{CLI} export`.")
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path), help="The CER folder the sheet was exported from.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), help="Write the annotated data here [default: update --data].")
@click.option("--judge-rater", "judge_raters", multiple=True, default=(JUDGE_RATER,), show_default=True,
              help="Rater labels that are LLM judges: stored, compared with the people, may have empty cells, never counted in the final labels.")
@click.option("--replace", is_flag=True, help="Overwrite a rater's earlier labels on a row (else refused).")
@click.option("--judges-label", is_flag=True, help="Without people: the LLM judges' blocks set the final labels (one block's label is enough; "
                                                   "several blocks need a majority). Recorded in each row's rater names.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def import_cmd(sheets, key_path, data_dir, out_dir, judge_raters, replace, judges_label, as_json) -> None:
    """Read filled sheets into the CER rows' annotations, set the final labels and report agreement."""
    result = import_sheets(list(sheets), key_path, data_dir, out_dir, judge_raters, replace, judges_label)
    click.echo(json.dumps(result, indent=2) if as_json else "\n".join(text_report(result)))


@compeer_annotate.command("judge")
@click.argument("sheet", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--key", "key_path", required=True, type=click.Path(path_type=Path, dir_okay=False))
@options.roles
@click.option("--rater-name", default=JUDGE_RATER, show_default=True, help="Rater label of the judge's columns.")
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False), help="The filled copy (.xlsx or .csv).")
@click.option("--max-tokens", type=int, default=256, show_default=True)
@options.cache
def judge_cmd(sheet, key_path, roles, rater_name, out, max_tokens, cache_path, no_cache) -> None:
    """Fill a rater block of SHEET with an LLM judge's True / False per step and its preference; the judge
    is --judge SPEC (or --role judge=SPEC)."""
    others = [name for name in roles if name != "judge"]
    if others:
        raise HarnessError(f"compeer-annotate judge asks only the judge; drop --role {others[0]}=....")
    if "judge" not in roles:
        raise HarnessError("give the judge: --judge MODEL (or --role judge=MODEL), e.g. --judge openai:gpt-4o.")
    result = judge(sheet, key_path, roles["judge"], out, rater_name, max_tokens, cache_path, not no_cache)
    click.echo(f"{result.out}: {result.filled} cells filled by {rater_name}, {result.unparsed} unparsed (left empty); "
               f"model calls {result.model_calls}, cache hits {result.cache_hits}")
    click.echo(f"{result.log_path}: the judge's raw answers and how each was read")
