"""ESConv (Liu et al. 2021): supporter responses in crowd-sourced emotional support chats.

Data: the 910 / 195 / 195 dialogue split (train.json, valid.json, test.json: one JSON dialogue per line,
``{emotion_type, problem_type, situation, experience_type, survey_score, ..., dialog: [{text, speaker:
usr|sys, strategy (sys only)}]}``) as carried by github.com/Dantoro/project_therapy (its readme points to
the Hugging Face ``thu-coai/esconv`` dataset), and the strategy list ``strategy.json`` of the ESConv reference
code (thu-coai/Emotional-Support-Conversation). Every supporter strategy must be one of that list's eight.
The sizes are those of the reference code's own split (``_reformat/process.py``: 15 % / 15 % of the 1,300
dialogues shuffled with seed 13); that the dialogues are the same ones cannot be checked offline.

Instances. The ESConv reference code (``codes_zcj/inputters/strat.py``, ``convert_data_to_inputs``) does
*not* merge turns: every ``sys`` utterance except a dialogue's first utterance is a target, its context all
the utterances before it (a supporter utterance right after another one is a target of its own, with the
first in its context); texts are whitespace-normalised (``' '.join(text.split())``). That is the default
here (``turns=utterance``): **train 12,271 / val 2,621 / test 2,801** (the 488 / 101 / 94 dialogues opened by
the supporter lose that opening utterance as a target). ``turns=merged`` builds the instances as MESC and
FIRES do instead: consecutive utterances of one speaker are merged into a turn and every supporter turn with
a non-empty history is a target: **train 10,191 / val 2,156 / test 2,295**.

In both modes the *history* is given as merged turns (consecutive utterances of one speaker joined with a
space), so chat messages alternate between ``user`` (Seeker) and ``assistant`` (Supporter); this changes
only how the reference code's context is packed into messages, not what it holds. Ids are stable:
``esconv/test/d0042/u07`` (dialogue 42 = line 43 of test.json, target utterance 7, both 0-based) in the
default mode, ``esconv/test/d0042/t05`` (merged turn 5) with ``turns=merged``.

Each sample's labels: ``dialogue_id``, ``strategy`` (the target's strategy per utterance: one in the default
mode, one per merged utterance otherwise), and the dialogue's ``emotion_type``, ``problem_type``,
``situation`` and ``experience_type``.

Task options (`--task-args`): ``turns=utterance|merged`` as above; ``prompt=plain|fires|fixed-cot|flexible-cot``
and ``shots=k``: the prompting modes of `tasks/prompting.py`, exactly as for MESC (demonstrations come from
the train split).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.contract import (
    DataFile,
    Dataset,
    Sample,
    Turn,
)
from harness.datafiles import read_text
from harness.errors import DataError, HarnessError

from . import merge_turns
from . import prompting

_DATA_REPO = "https://raw.githubusercontent.com/Dantoro/project_therapy"
_DATA_COMMIT = "72f2ccd4670a83c00611b90febbdf941be38516d"
_DATA_PATH = "datasets/custom_corpus/esconv_data"
_CODE_REPO = "https://raw.githubusercontent.com/thu-coai/Emotional-Support-Conversation"
_CODE_COMMIT = "f262d062ad74cb39b17ea476facc81568ddcba24"

DATASET = Dataset(
    folder="esconv",
    source="ESConv, thu-coai/Emotional-Support-Conversation (CC BY-NC 4.0; cite Liu et al. 2021); split files via github.com/Dantoro/project_therapy",
    files=(
        DataFile("train.json", f"{_DATA_REPO}/{_DATA_COMMIT}/{_DATA_PATH}/train.json", "e401fc5010879dfec7bb716caf072706877a6863dc9d775d39c7296d74feb4fc"),
        DataFile("valid.json", f"{_DATA_REPO}/{_DATA_COMMIT}/{_DATA_PATH}/valid.json", "4458152869827ed82e2f0f4a0cdc3e6c33b224f03353f9f1b4ed93d24730b531"),
        DataFile("test.json", f"{_DATA_REPO}/{_DATA_COMMIT}/{_DATA_PATH}/test.json", "44ee8e25a5cd08149c9c114d9ddb4bdbb7c0d2f8d503b41a35a8fb4a7ce68777"),
        DataFile("strategy.json", f"{_CODE_REPO}/{_CODE_COMMIT}/strategy.json", "79d335ea4d5b2e460cf2f1ffab100b2d7486624f9554de7927713e941458c73c"),
    ),
)

SPLIT_FILES = {"train": "train.json", "val": "valid.json", "test": "test.json"}
SEEKER, SUPPORTER = "Seeker", "Supporter"
_SPEAKERS = {"usr": SEEKER, "sys": SUPPORTER}
TURN_MODES = ("utterance", "merged")
_DIALOGUE_FIELDS = ("emotion_type", "problem_type", "situation")  # required; experience_type is optional

SYSTEM_PROMPT = (
    "You are a supporter in an online emotional support conversation. Read the conversation so far and give "
    "the supporter's next turn: one short, natural reply that supports the seeker emotionally."
)


@dataclass(frozen=True)
class Utterance:
    text: str  # whitespace-normalised
    speaker: str  # SEEKER | SUPPORTER
    strategy: str | None  # None on seeker utterances


@dataclass(frozen=True)
class Dialogue:
    index: int  # 0-based position among the file's dialogues (= line - 1 when the file has no blank line)
    line: int  # line in its file, for messages
    utterances: tuple[Utterance, ...]
    emotion_type: str
    problem_type: str
    situation: str
    experience_type: str | None = None


def normalize(text: str) -> str:
    """As the reference code's `_norm`: strip, and single spaces between words."""
    return " ".join(text.split())


_REFETCH = "re-fetch it with `harness data fetch esconv --force`"


def read_strategies(path: Path) -> tuple[str, ...]:
    """strategy.json: a JSON list of "[Name]" strings -> the names without brackets."""
    try:
        items = json.loads(read_text(path, _REFETCH))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}); {_REFETCH}.") from None
    if not isinstance(items, list) or not items or not all(isinstance(s, str) and s.startswith("[") and s.endswith("]") for s in items):
        raise DataError(f'{path}: expected a JSON list of strategy names in brackets, e.g. ["[Question]", ...]; {_REFETCH}.')
    return tuple(s[1:-1] for s in items)


def _parse_dialogue(obj: Any, where: str, index: int, line: int, strategies: tuple[str, ...]) -> Dialogue:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object (one dialogue per line), got {type(obj).__name__}.")
    missing = [k for k in (*_DIALOGUE_FIELDS, "dialog") if k not in obj]
    if missing:
        raise DataError(f"{where}: dialogue lacks {', '.join(missing)}.")
    for k in _DIALOGUE_FIELDS:
        if not isinstance(obj[k], str):
            raise DataError(f"{where}: {k} must be a string, got {type(obj[k]).__name__}.")
    dialog = obj["dialog"]
    if not isinstance(dialog, list) or not dialog:
        raise DataError(f"{where}: dialog must be a non-empty list of utterances.")
    utterances = []
    for k, u in enumerate(dialog):
        if not isinstance(u, dict) or not isinstance(u.get("text"), str) or u.get("speaker") not in _SPEAKERS:
            raise DataError(f"{where}: dialog[{k}] must be {{text: str, speaker: usr|sys, strategy (sys only)}}, got {json.dumps(u)[:120]}.")
        speaker = _SPEAKERS[u["speaker"]]
        strategy = None
        if speaker == SUPPORTER:
            strategy = u.get("strategy")
            if strategy not in strategies:
                raise DataError(f"{where}: dialog[{k}] has strategy {strategy!r}, not one of strategy.json's {', '.join(strategies)}.")
        utterances.append(Utterance(normalize(u["text"]), speaker, strategy))
    experience = obj.get("experience_type")
    return Dialogue(index, line, tuple(utterances), obj["emotion_type"], obj["problem_type"], normalize(obj["situation"]),
                    experience if isinstance(experience, str) else None)


def read_dialogues(path: Path, strategies: tuple[str, ...]) -> list[Dialogue]:
    """One dialogue per line (blank lines skipped); a malformed line is reported as file:line."""
    text = read_text(path, _REFETCH)
    dialogues: list[Dialogue] = []
    for lineno, raw in enumerate(text.split("\n"), 1):  # '\n' only: texts may hold other Unicode line separators
        if not raw.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: invalid JSON ({exc.msg}, column {exc.colno}); {_REFETCH}.") from None
        dialogues.append(_parse_dialogue(obj, where, len(dialogues), lineno, strategies))
    if not dialogues:
        raise DataError(f"{path}: no dialogues; {_REFETCH}.")
    return dialogues


def _as_turn(group: list[Utterance]) -> Turn:
    return Turn(speaker=group[0].speaker, text=" ".join(u.text for u in group))


def sample_id(split: str, dialogue: int, target: int, turns: str) -> str:
    return f"esconv/{split}/d{dialogue:04d}/{'u' if turns == 'utterance' else 't'}{target:02d}"


def build_instances(dialogue: Dialogue, split: str, turns: str = "utterance") -> list[Sample]:
    """The dialogue's targets in order (see the module docstring for the two modes)."""
    if turns not in TURN_MODES:
        raise HarnessError(f"esconv: turns must be one of {', '.join(TURN_MODES)}, got {turns!r}.")
    utts = dialogue.utterances
    base = {"dialogue_id": dialogue.index}
    about = {"emotion_type": dialogue.emotion_type, "problem_type": dialogue.problem_type,
             "situation": dialogue.situation, "experience_type": dialogue.experience_type}
    groups = merge_turns(utts)
    merged = [_as_turn(g) for g in groups]
    samples = []
    if turns == "merged":
        for i, group in enumerate(groups):
            if i == 0 or group[0].speaker != SUPPORTER:
                continue
            samples.append(Sample(id=sample_id(split, dialogue.index, i, turns), history=tuple(merged[:i]), reference=merged[i].text,
                                  labels={**base, "strategy": [u.strategy for u in group], **about}))
        return samples
    start = 0  # index of the current group's first utterance
    for g, group in enumerate(groups):
        for k in range(len(group)):
            j, u = start + k, group[k]
            if j == 0 or u.speaker != SUPPORTER:
                continue
            # the turns before j, merged: the whole groups before this one, then this group's part before j
            history = tuple(merged[:g]) + ((_as_turn(group[:k]),) if k else ())
            samples.append(Sample(id=sample_id(split, dialogue.index, j, turns), history=history, reference=u.text,
                                  labels={**base, "strategy": [u.strategy], **about}))
        start += len(group)
    return samples


def _stamp(folder: Path, names: tuple[str, ...]) -> tuple:
    stats = [(folder / n).stat() for n in names]
    return tuple((s.st_mtime_ns, s.st_size) for s in stats)


@lru_cache(maxsize=12)
def _split_samples(folder: Path, split: str, turns: str, _stamp: tuple) -> tuple[Sample, ...]:  # _stamp: edits invalidate
    strategies = read_strategies(folder / "strategy.json")
    dialogues = read_dialogues(folder / SPLIT_FILES[split], strategies)
    return tuple(s for d in dialogues for s in build_instances(d, split, turns))


class ESConvTask(prompting.PromptedTask):
    """ESConv supporter-response generation (reference-code instances: 12271/2621/2801; turns=merged: 10191/2156/2295)."""

    name = "esconv"
    dataset = DATASET
    splits = ("train", "val", "test")
    roles = prompting.Roles(seeker=SEEKER, supporter=SUPPORTER, setting="an online emotional support conversation", video=False)
    system_prompt = SYSTEM_PROMPT

    def __init__(self, prompt: str = "plain", shots: int = 0, turns: str = "utterance"):
        super().__init__(prompt, shots)
        if turns not in TURN_MODES:
            raise HarnessError(f"esconv: turns must be one of {', '.join(TURN_MODES)} (e.g. --task-args turns=merged), got {turns!r}.")
        self.turns = turns

    def _samples(self, split: str, folder: Path) -> tuple[Sample, ...]:
        if split not in self.splits:
            raise HarnessError(f"task esconv has no split '{split}'; choose one of {', '.join(self.splits)}.")
        folder = Path(folder)
        names = (SPLIT_FILES[split], "strategy.json")
        for n in names:
            if not (folder / n).is_file():
                raise DataError(f"{folder / n}: missing dataset file; get it with `harness data fetch esconv`.")
        return _split_samples(folder, split, self.turns, _stamp(folder, names))

