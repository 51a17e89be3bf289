"""ESC-Eval's published files: role cards, example transcripts and their ESC-RANK scores.

Layout (haidequanbu/ESC-Eval, copied under `$ESC_HARNESS_DATA/esc-eval/`):
- `card_high_en.json` / `card_high_zh.json`: the 331 English / 324 Chinese role cards;
  `test_en.json` / `test_zh.json`: the first three cards of each (the repository's demo set).
- `reference/result/2024-06-24/<model>_<lang>.json`: {"0": [...], "1": [...], "2": [...]}, each a
  list of "AI assistant：..." / "ESC-Role：..." strings (full-width colon); dialogue "i" was played
  from card i of `test_<lang>.json`. The first line is ESC-Eval's fixed greeting.
- `reference/score/<model>_<lang>.json`: {"0": {"fluency": 3, "diversity": 3, ...}} on 0-4, with
  the code names; the original scorer writes -1 where it found no digit 0-4 in the judge's answer.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from harness.contract import DialogueTurn
from harness.datafiles import read_text
from harness.errors import DataError, HarnessError

from .esc_eval_judge import CODE_TO_PAPER, normalize_language

FOLDER = "esc-eval"
_SPEAKERS = {"AI assistant": "supporter", "AI assitant": "supporter", "ESC-Role": "seeker"}
# "AI assitant" (sic): the released evaluate.py writes the label with this typo, and some released result files have it
_LINE = re.compile(r"^(AI assistant|AI assitant|ESC-Role)\s*[：:]\s?(.*)$", re.DOTALL)

# the cards' `res` field, in English
CATEGORY_EN = {"家庭生活": "family life", "工作学习": "work and study", "社会与其他": "society and other"}
_CARD_FILES = {("high", "en"): "card_high_en.json", ("high", "zh"): "card_high_zh.json",
               ("test", "en"): "test_en.json", ("test", "zh"): "test_zh.json"}


# --------------------------------------------------------------------------- files


def _folder(data_dir: str | Path) -> Path:
    """The esc-eval dataset folder, given it or the data root that holds it."""
    data_dir = Path(data_dir)
    return data_dir / FOLDER if (data_dir / FOLDER).is_dir() else data_dir


def _read_json(path: Path) -> Any:
    try:
        text = read_text(path, "re-fetch it from haidequanbu/ESC-Eval")
    except FileNotFoundError:
        raise DataError(f"{path}: missing ESC-Eval file; point --data-dir / $ESC_HARNESS_DATA at a folder holding {FOLDER}/ (haidequanbu/ESC-Eval).") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); re-fetch it from haidequanbu/ESC-Eval.") from None


# --------------------------------------------------------------------------- role cards


class Card(BaseModel):
    """One ESC-Eval role card."""

    model_config = ConfigDict(frozen=True)
    id: int
    language: Literal["en", "zh"]
    base: str  # what the role-play model is told: "Age: ...\nGender: ...\nOccupation: ...\nProblem: ..."
    base_zh: str  # the file's `base_biaozhu`: the Chinese annotation (a translation on English cards, == base on Chinese ones)
    category: str  # the file's `res`: 家庭生活 | 工作学习 | 社会与其他
    source: str  # corpus the card was drawn from: ESconv, MHP, ExTES, Psych, EPITOME | PsyQA, smile

    @property
    def category_en(self) -> str:
        return CATEGORY_EN.get(self.category, self.category)

    def profile(self) -> dict[str, str]:
        """{"age", "gender", "occupation", "problem"} parsed from `base` (five English cards put blank
        lines between the fields; a field the card lacks is absent)."""
        keys = {"age": "age", "gender": "gender", "occupation": "occupation", "problem": "problem",
                "年龄": "age", "性别": "gender", "职业": "occupation", "问题": "problem"}
        found: dict[str, str] = {}
        for line in self.base.split("\n"):
            match = re.match(r"^\s*([^:：]+?)\s*[:：]\s*(.*)$", line)
            key = keys.get(match.group(1).lower()) if match else None
            if match and key:
                found[key] = match.group(2).strip()
        return found


def load_cards(data_dir: str | Path, language: str, which: Literal["high", "test"] = "high") -> list[Card]:
    """The role cards of one language, in file order: `which="high"` the full set (331 en / 324 zh),
    `"test"` the repository's three-card demo set. `data_dir` is the esc-eval folder or the data root."""
    language = normalize_language(language)
    if (which, language) not in _CARD_FILES:
        raise HarnessError(f"unknown card set '{which}'; use 'high' (the full set) or 'test' (the three demo cards).")
    path = _folder(data_dir) / _CARD_FILES[(which, language)]
    raw = _read_json(path)
    if not isinstance(raw, list):
        raise DataError(f"{path}: expected a JSON list of role cards, found {type(raw).__name__}; re-fetch it.")
    return [_card(path, number, item, language) for number, item in enumerate(raw)]


def _card(path: Path, number: int, item: Any, language: str) -> Card:
    where = f"{path}: card {number}"
    if not isinstance(item, dict):
        raise DataError(f"{where}: expected an object, found {type(item).__name__}; re-fetch the file.")
    missing = [k for k in ("id", "base", "res", "source", "language") if k not in item]
    if missing:
        raise DataError(f"{where}: missing {', '.join(missing)}; re-fetch the file.")
    stated = normalize_language(str(item["language"]))
    if stated != language:
        raise DataError(f"{where} (id {item['id']}): language '{item['language']}' in the {language} card file; re-fetch the file.")
    if not isinstance(item["id"], int) or not str(item["base"]).strip():
        raise DataError(f"{where}: id must be an integer and base non-empty; re-fetch the file.")
    return Card(id=item["id"], language=language, base=item["base"], base_zh=item.get("base_biaozhu", ""),
                category=item["res"], source=item["source"])


# --------------------------------------------------------------------------- transcripts and scores


def read_transcripts(path: str | Path) -> dict[str, list[DialogueTurn]]:
    """{dialogue id: turns}; "AI assistant" = supporter, "ESC-Role" = seeker; the opening assistant
    line (ESC-Eval's fixed greeting, not written by the model under test) is marked {"greeting": True}."""
    path = Path(path)
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected {{id: [lines]}}, found {type(raw).__name__}; is this an ESC-Eval result file?")
    return {str(key): _dialogue(path, str(key), lines) for key, lines in raw.items()}


def _dialogue(path: Path, key: str, lines: Any) -> list[DialogueTurn]:
    if not isinstance(lines, list) or not lines:
        raise DataError(f"{path}: dialogue '{key}' is not a non-empty list of lines; is this an ESC-Eval result file?")
    turns = []
    for number, line in enumerate(lines):
        match = _LINE.match(line) if isinstance(line, str) else None
        if match is None:
            raise DataError(
                f"{path}: dialogue '{key}' line {number} does not start with 'AI assistant：' or 'ESC-Role：' "
                f"({str(line)[:40]!r}); is this an ESC-Eval result file?"
            )
        role = _SPEAKERS[match.group(1)]
        details = {"greeting": True} if number == 0 and role == "supporter" else {}
        turns.append(DialogueTurn(role=role, text=match.group(2).strip(), details=details))
    return turns


def read_scores(path: str | Path) -> dict[str, dict[str, int | None]]:
    """{dialogue id: {paper dimension name: 0-4, or None where the original scorer wrote -1}}."""
    path = Path(path)
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected {{id: {{dimension: score}}}}, found {type(raw).__name__}; is this an ESC-Eval score file?")
    return {str(key): _scores(path, str(key), item) for key, item in raw.items()}


def _scores(path: Path, key: str, item: Any) -> dict[str, int | None]:
    if not isinstance(item, dict):
        raise DataError(f"{path}: dialogue '{key}' is not an object of scores; is this an ESC-Eval score file?")
    missing = [code for code in CODE_TO_PAPER if code not in item]
    if missing:
        raise DataError(f"{path}: dialogue '{key}' lacks {', '.join(missing)}; is this an ESC-Eval score file?")
    scores: dict[str, int | None] = {}
    for code, paper in CODE_TO_PAPER.items():
        value = item[code]
        if not isinstance(value, int) or isinstance(value, bool) or not -1 <= value <= 4:
            raise DataError(f"{path}: dialogue '{key}' {code} = {value!r}, expected an integer 0-4 (or -1); is this an ESC-Eval score file?")
        scores[paper] = None if value == -1 else value  # -1 = no score found: missing, never a number
    return scores


class ReferenceRun(BaseModel):
    """One published ESC-Eval example run: a model's transcripts in one language and their ESC-RANK scores."""

    name: str  # file stem, e.g. "llama3_en"
    model: str  # "llama3", "Qwen_7B"
    language: Literal["en", "zh"]
    date: str  # the result folder, "2024-06-24"
    dialogues: dict[str, list[DialogueTurn]]
    scores: dict[str, dict[str, int | None]]
    card_ids: dict[str, int]  # dialogue id -> role card id (dialogue i was played from test_<lang>.json card i)


def load_reference_runs(data_dir: str | Path) -> list[ReferenceRun]:
    """Every published transcript file paired with its score file, sorted by name."""
    folder = _folder(data_dir)
    result_files = sorted((folder / "reference" / "result").glob("*/*.json"))
    if not result_files:
        raise DataError(f"{folder / 'reference' / 'result'}: no ESC-Eval result files; point --data-dir / $ESC_HARNESS_DATA at a folder holding {FOLDER}/reference/.")
    return [_reference_run(folder, path) for path in result_files]


def _reference_run(folder: Path, path: Path) -> ReferenceRun:
    model, _, lang = path.stem.rpartition("_")
    language = normalize_language(lang)
    dialogues = read_transcripts(path)
    scores = read_scores(folder / "reference" / "score" / path.name)
    if set(scores) != set(dialogues):
        raise DataError(f"{path}: dialogue ids {sorted(dialogues)} differ from the score file's {sorted(scores)}; re-fetch both.")
    cards = load_cards(folder, language, which="test")
    card_ids = {key: cards[int(key)].id for key in dialogues if key.isdigit() and int(key) < len(cards)}
    return ReferenceRun(name=path.stem, model=model, language=language, date=path.parent.name,
                        dialogues=dialogues, scores=scores, card_ids=card_ids)


def mean_scores(scores: dict[str, dict[str, int | None]]) -> dict[str, float | None]:
    """Per dimension, the 0-4 mean over the dialogues that have a score (None if none has)."""
    means: dict[str, float | None] = {}
    for paper in CODE_TO_PAPER.values():
        values = [s[paper] for s in scores.values() if s.get(paper) is not None]
        means[paper] = sum(values) / len(values) if values else None  # type: ignore[arg-type]
    return means
