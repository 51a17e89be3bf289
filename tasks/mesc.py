"""MESC (Chu et al. 2024): therapist responses in counselling sessions from *In Treatment*.

Instances are built as the FIRES paper builds them: consecutive utterances of one speaker are merged
into a turn, and every therapist turn with a non-empty history is a target, its preceding turns the
history (train 3,721 / val 445 / test 454). MESC.csv holds the clean text and the labels; val.json and
test.json only say which dialogues form those splits (their text carries generated "emotion clues", so
it is never used); the remaining dialogues are the train split.

Task options (`--task-args`):
- ``prompt=plain|fires|fixed-cot|flexible-cot`` and ``shots=k``: the prompting modes of
  `tasks/prompting.py` (default ``plain``, 0 shots: the system prompt below and the history as chat turns;
  demonstrations come from the train split);
- ``frames_dir=DIR``: where `harness data frames mesc --videos DIR` put the video frames (default
  `$ESC_HARNESS_FRAMES/mesc`, else the per-user `<harness home>/frames/mesc`; ``frames_dir=off`` never
  attaches frames). When that folder exists, every sample gets ``labels["frames"]`` = the number of frames
  attached (0: evaluated from text alone), and the frames go on the last user message of the request, in
  every prompting mode.

Frames (`prepare_frames`): a sample's frames come from its episode between the start of its first history
utterance and the start of its target turn (the client's words and the pause before the therapist answers;
nothing of the answer). Where MESC's times run backwards (7 dialogues), the span ends at the latest end of a
history utterance instead. Each utterance keeps its Season, Episode, StartTime and EndTime.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from harness.contract import (
    DataFile,
    Dataset,
    Sample,
    Turn,
)
from harness.datafiles import read_text
from harness.errors import DataError, HarnessError

from . import merge_turns
from . import frames as video_frames
from . import prompting

_REPO = "https://raw.githubusercontent.com/chuyq/MESC"
_DATA_COMMIT = "3fe3e7587577012bedc88de94a1e6d0ca38ae511"
_DEFS_COMMIT = "27ae04bd8fe4c5df0609944678c417d4e8b3e070"

DATASET = Dataset(
    folder="mesc",
    source="github.com/chuyq/MESC; cite Chu et al. 2024",
    files=(
        DataFile("MESC.csv", f"{_REPO}/{_DATA_COMMIT}/MESC.csv", "0d93e6a7df679f9fd46306a20a162b3040e9d9f63cab3ae8e10e0cc4d074fb57"),
        DataFile("val.json", f"{_REPO}/{_DATA_COMMIT}/val.json", "559221b5ba040f62cc3227f9e2f8fa4a989a821872a003005e28b12ea74e5fc7"),
        DataFile("test.json", f"{_REPO}/{_DATA_COMMIT}/test.json", "13795d167c68337303ac3ec9b87be325aa2f3845aaf2af6e2ee33afc82035181"),
        DataFile(
            "strategy_definitions.txt",
            f"{_REPO}/{_DEFS_COMMIT}/Definitions%20of%20Strategies",
            "86bd379f4c1ab8fe9d1e67466a530e8c0b4c12612fc3bedbec516c349c77b276",
        ),
    ),
)

CLIENT, THERAPIST = "Client", "Therapist"
_COLUMNS = ("Utterance", "Speaker", "Emotion", "Strategy", "Dialogue_ID", "Utterance_ID", "Season", "Episode", "StartTime", "EndTime")
_JSON_SPEAKER = {"user": CLIENT, "sys": THERAPIST}
_CLIENT_STRATEGY = "undefined"

SYSTEM_PROMPT = (
    "You are a therapist in a counselling session. Read the conversation so far and give the "
    "therapist's next turn: one short, natural reply that supports the client emotionally."
)


@dataclass(frozen=True)
class Utterance:
    text: str
    speaker: str
    emotion: str
    strategy: str | None  # None on client rows
    line: int  # line in MESC.csv, for error messages
    season: int | None = None  # of "In Treatment"
    episode: int | None = None
    start: str = ""  # StartTime / EndTime as in MESC.csv: SRT "HH:MM:SS,mmm" from the start of the episode
    end: str = ""


def _int_or_none(raw: str) -> int | None:
    try:
        return int(raw)
    except ValueError:
        return None


def _canonical_strategy(raw: str) -> str:
    # MESC.csv spells "Open question" in lower case on a few rows.
    return "Open question" if raw.lower() == "open question" else raw


def read_dialogues(csv_path: Path) -> dict[int, list[Utterance]]:
    """MESC.csv as {Dialogue_ID: utterances in order}; a malformed row is reported with its line."""
    try:
        return _read_dialogues(csv_path)
    except csv.Error as exc:  # e.g. a NUL byte
        raise DataError(f"{csv_path}: unreadable CSV ({exc}); re-fetch it with `harness data fetch mesc --force`.") from None


def _read_dialogues(csv_path: Path) -> dict[int, list[Utterance]]:
    dialogues: dict[int, list[Utterance]] = {}
    with io.StringIO(read_text(csv_path, "re-fetch it with `harness data fetch mesc --force`", newlines=False), newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        missing = [c for c in _COLUMNS if c not in header]
        if missing:
            raise DataError(f"{csv_path}:1: missing column(s) {', '.join(missing)}; expected {', '.join(_COLUMNS)}. Re-fetch with `harness data fetch mesc --force`.")
        end = reader.line_num
        for cells in reader:
            start, end = end + 1, reader.line_num  # a quoted cell may span lines: report where the row starts
            if not cells:  # blank line
                continue
            where = f"{csv_path}:{start}"
            if len(cells) != len(header):
                raise DataError(f"{where}: {len(cells)} cells, expected {len(header)} ({', '.join(header)}).")
            row = dict(zip(header, cells))
            speaker = row["Speaker"].strip()
            if speaker not in (CLIENT, THERAPIST):
                raise DataError(f"{where}: Speaker is '{speaker}', expected Client or Therapist.")
            try:
                dialogue_id, utterance_id = int(row["Dialogue_ID"]), int(row["Utterance_ID"])
            except ValueError:
                raise DataError(f"{where}: Dialogue_ID/Utterance_ID must be integers, got '{row['Dialogue_ID']}'/'{row['Utterance_ID']}'.") from None
            turns = dialogues.setdefault(dialogue_id, [])
            if utterance_id != len(turns):
                raise DataError(f"{where}: Utterance_ID {utterance_id} out of order in dialogue {dialogue_id} (expected {len(turns)}).")
            strategy = _canonical_strategy(row["Strategy"].strip()) if speaker == THERAPIST else None
            turns.append(Utterance(row["Utterance"].strip(), speaker, row["Emotion"].strip(), strategy, start,
                                   _int_or_none(row["Season"]), _int_or_none(row["Episode"]), row["StartTime"].strip(), row["EndTime"].strip()))
    if not dialogues:
        raise DataError(f"{csv_path}: no rows; re-fetch with `harness data fetch mesc --force`.")
    return dialogues


def split_assignment(dialogues: dict[int, list[Utterance]], folder: Path) -> dict[int, str]:
    """{Dialogue_ID: split}: val.json/test.json dialogues are found in MESC.csv by their speaker and
    label sequence (unique for all of them); every other dialogue is train."""
    by_signature: dict[tuple, list[int]] = {}
    for did, utts in dialogues.items():
        sig = tuple((u.speaker, u.emotion, u.strategy) for u in utts)
        by_signature.setdefault(sig, []).append(did)
    assignment = {did: "train" for did in dialogues}
    for split in ("val", "test"):
        path = folder / f"{split}.json"
        try:
            items = json.loads(read_text(path, "re-fetch it with `harness data fetch mesc --force`"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}); re-fetch with `harness data fetch mesc --force`.") from None
        if not isinstance(items, list):
            raise DataError(f"{path}: expected a JSON list of dialogues.")
        for k, item in enumerate(items):
            try:
                sig = tuple(
                    (_JSON_SPEAKER[u["speaker"]], u["emotion"], _canonical_strategy(u["strategy"]) if u["speaker"] == "sys" else None)
                    for u in item["dialog"]
                )
            except (KeyError, TypeError):
                raise DataError(f"{path}: dialogue #{k} lacks dialog[].speaker (user|sys) / emotion / strategy.") from None
            matches = by_signature.get(sig, [])
            if len(matches) != 1:
                raise DataError(f"{path}: dialogue #{k} matches {len(matches)} MESC.csv dialogues (expected exactly 1); the files are from different MESC versions.")
            assignment[matches[0]] = split
    return assignment


def target_turns(turns: list[list[Utterance]]) -> list[int]:
    """Indices of the merged turns that are targets: therapist turns with a non-empty history."""
    return [i for i, turn in enumerate(turns) if turn[0].speaker == THERAPIST and i > 0]


def sample_id(split: str, dialogue_id: int, turn: int) -> str:
    return f"mesc/{split}/d{dialogue_id:04d}/t{turn:02d}"


def build_instances(dialogue_id: int, utts: list[Utterance], split: str) -> list[Sample]:
    turns = merge_turns(utts)
    merged = [Turn(speaker=t[0].speaker, text=" ".join(u.text for u in t)) for t in turns]
    samples = []
    for i in target_turns(turns):
        turn = turns[i]
        samples.append(
            Sample(
                id=sample_id(split, dialogue_id, i),
                history=tuple(merged[:i]),
                reference=merged[i].text,
                labels={
                    "dialogue_id": dialogue_id,
                    "emotion": [u.emotion for u in turn],
                    "strategy": [u.strategy for u in turn],
                    "client_emotion": [u.emotion for u in turns[i - 1]],
                },
            )
        )
    return samples


@lru_cache(maxsize=4)
def _all_samples(folder: Path, _stamp: tuple) -> dict[str, list[Sample]]:  # _stamp: files' mtimes, so edits invalidate
    dialogues = read_dialogues(folder / "MESC.csv")
    assignment = split_assignment(dialogues, folder)
    by_split: dict[str, list[Sample]] = {"train": [], "val": [], "test": []}
    for did in sorted(dialogues):
        split = assignment[did]
        by_split[split].extend(build_instances(did, dialogues[did], split))
    return by_split


def frame_span(history: list[Utterance], target: Utterance) -> tuple[float, float]:
    """Seconds [start, end) of a sample's frames: from the first history utterance's start to the target's
    start; where the times run backwards, to the latest end of a history utterance. ValueError on a bad time."""
    start = min(video_frames.srt_seconds(u.start) for u in history)
    end = video_frames.srt_seconds(target.start)
    if end <= start:
        end = max(video_frames.srt_seconds(u.end) for u in history)
    return start, end


def frame_jobs(folder: Path) -> tuple[list[video_frames.FrameJob], list[str]]:
    """The frames every sample of every split needs, and the samples left out (bad times or episode)."""
    dialogues = read_dialogues(folder / "MESC.csv")
    assignment = split_assignment(dialogues, folder)
    jobs, skipped = [], []
    for did in sorted(dialogues):
        turns = merge_turns(dialogues[did])
        for i in target_turns(turns):
            sid = sample_id(assignment[did], did, i)
            history = [u for turn in turns[:i] for u in turn]
            first = turns[i][0]
            try:
                start, end = frame_span(history, first)
            except ValueError as exc:
                skipped.append(f"{sid}: {exc}")
                continue
            if first.season is None or first.episode is None:
                skipped.append(f"{sid}: no Season/Episode")
                continue
            jobs.append(video_frames.FrameJob(sid, sid.split("/", 1)[1], f"d{did:04d}", first.season, first.episode, start, end))
    return jobs, skipped


def _frames_root(frames_dir) -> tuple[Path | None, bool]:
    """(folder, given explicitly); None when frames are switched off."""
    if frames_dir is None:
        return video_frames.frames_home() / "mesc", False
    if isinstance(frames_dir, bool) or str(frames_dir).strip().lower() in ("", "off", "none", "false", "no"):
        return None, True
    return Path(str(frames_dir)).expanduser(), True


class MescTask(prompting.PromptedTask):
    """MESC therapist-response generation (FIRES instances: 3721/445/454)."""

    name = "mesc"
    dataset = DATASET
    splits = ("train", "val", "test")
    roles = prompting.Roles(seeker=CLIENT, supporter=THERAPIST, setting="a counselling session")
    system_prompt = SYSTEM_PROMPT

    def __init__(self, prompt: str = "plain", shots: int = 0, frames_dir: str | None = None):
        super().__init__(prompt, shots)
        self.frames_root, explicit = _frames_root(frames_dir)
        if explicit and self.frames_root is not None and not self.frames_root.is_dir():
            raise HarnessError(f"mesc: frames_dir {self.frames_root} is not a folder; make the frames with "
                               f"`harness data frames mesc --videos DIR --out {self.frames_root}`, or pass frames_dir=off.")
        self._images: dict[str, tuple[str, ...]] = {}

    def _samples(self, split: str, folder: Path) -> list[Sample]:
        if split not in self.splits:
            raise HarnessError(f"task mesc has no split '{split}'; choose one of {', '.join(self.splits)}.")
        folder = Path(folder)
        missing = [f.name for f in DATASET.files if not (folder / f.name).is_file()]
        if missing:
            raise DataError(f"{folder / missing[0]}: missing dataset file; get it with `harness data fetch mesc`.")
        stamp = tuple(f.stat().st_mtime_ns for f in sorted(folder.glob("*")) if f.is_file())
        return _all_samples(folder, stamp)[split]

    def load(self, split: str, data_dir: Path) -> list[Sample]:
        samples = super().load(split, data_dir)
        if self.frames_root is None or not self.frames_root.is_dir():
            return samples  # no frames anywhere: text only, samples exactly as built
        labelled = []
        for s in samples:
            images = self.images(s)
            labelled.append(s.model_copy(update={"labels": {**s.labels, "frames": len(images)}}))
        return labelled

    def images(self, sample: Sample) -> tuple[str, ...]:
        if self.frames_root is None:
            return ()
        if sample.id not in self._images:
            found = video_frames.load_manifest(self.frames_root / sample.id.split("/", 1)[1]) or []
            self._images[sample.id] = tuple(str(p.resolve()) for p in found)
        return self._images[sample.id]

    def prepare_frames(self, videos_dir: Path, data_dir: Path, out_dir: Path | None = None, progress: bool | None = None) -> video_frames.FramesReport:
        """Cut every sample's frames from the user's In Treatment episodes (see `tasks/frames.py`) into
        `out_dir` (default: this task's frames folder)."""
        root = Path(out_dir) if out_dir is not None else (self.frames_root or _frames_root(None)[0])
        jobs, skipped = frame_jobs(Path(data_dir))
        report = video_frames.prepare(jobs, videos_dir, root, progress=progress)
        report.unusable = skipped
        return report
