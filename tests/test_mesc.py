"""The MESC task (tasks/mesc.py) and dataset files (harness/datafiles.py).

Real data is read from $ESC_HARNESS_DATA (the folder holding mesc/); without it the tests that need it fail.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from harness import datafiles
from harness.contract import DataFile, Dataset, Sample, Turn
from harness.errors import DataError
from tasks.mesc import (
    CLIENT,
    THERAPIST,
    MescTask,
    Utterance,
    build_instances,
    merge_turns,
    read_dialogues,
    split_assignment,
)

EXPECTED_COUNTS = {"train": 3721, "val": 445, "test": 454}
ID_RE = re.compile(r"^mesc/(train|val|test)/d(\d{4,})/t(\d{2,})$")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def real(data_root) -> dict[str, list[Sample]]:
    folder, _ = datafiles.resolve(MescTask.dataset, "mesc", data_root, allow_modified=False)
    task = MescTask()
    return {split: task.load(split, folder) for split in task.splits}


@pytest.fixture(scope="module")
def real_dialogues(data_root):
    folder = data_root / "mesc"
    dialogues = read_dialogues(folder / "MESC.csv")
    return dialogues, split_assignment(dialogues, folder)


def copy_dataset(data_root: Path, tmp_path: Path) -> Path:
    """A writable copy of the MESC files under tmp_path/mesc/ (copyfile: the copies do not inherit read-only modes)."""
    folder = tmp_path / "mesc"
    folder.mkdir()
    for f in MescTask.dataset.files:
        shutil.copyfile(data_root / "mesc" / f.name, folder / f.name)
    return folder


def load_checked(root: Path, split: str = "test") -> list[Sample]:
    """What the runner does: verify the files, then load."""
    folder, _ = datafiles.resolve(MescTask.dataset, "mesc", root)
    return MescTask().load(split, folder)


def csv_lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as fh:
        text = fh.read()
    assert "\r\n" in text  # MESC.csv uses CRLF line ends
    return text.split("\r\n")


def write_csv_lines(path: Path, lines: list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("\r\n".join(lines))


def edit_cell(line: str, column: str, value: str) -> str:
    header = ["Utterance", "Speaker", "Emotion", "Strategy", "Dialogue_ID", "Utterance_ID", "Season", "Episode", "StartTime", "EndTime"]
    row = next(csv.reader([line]))
    assert len(row) == len(header)
    row[header.index(column)] = value
    return csv_row(row)


def csv_row(row: list[str]) -> str:
    """One CSV record without its line end (the writer's line end makes it quote cells holding a newline)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(row)
    return out.getvalue()[: -len("\r\n")]


# --------------------------------------------------------------------------- instance building (hand-made dialogue)


def U(text: str, speaker: str, emotion: str = "neutral", strategy: str | None = None, line: int = 0) -> Utterance:
    return Utterance(text, speaker, emotion, strategy, line)


TINY = [
    U("Hello.", THERAPIST, "neutral", "Others"),  # turn 0: therapist opens -> not a target
    U("I feel bad.", CLIENT, "sadness"),  # turn 1 (merged with the next)
    U("Really bad.", CLIENT, "depression"),
    U("Why?", THERAPIST, "neutral", "Open question"),  # turn 2 (merged with the next) -> target t02
    U("Tell me.", THERAPIST, "joy", "Communication Skills"),
    U("My dog died.", CLIENT, "sadness"),  # turn 3
    U("I'm sorry.", THERAPIST, "sadness", "Approval"),  # turn 4 -> target t04
]


def test_merge_turns_groups_consecutive_same_speaker():
    turns = merge_turns(TINY)
    assert [[u.text for u in t] for t in turns] == [["Hello."], ["I feel bad.", "Really bad."], ["Why?", "Tell me."], ["My dog died."], ["I'm sorry."]]
    assert [t[0].speaker for t in turns] == [THERAPIST, CLIENT, THERAPIST, CLIENT, THERAPIST]
    assert merge_turns([]) == []


def test_build_instances_targets_histories_and_labels():
    samples = build_instances(7, TINY, "test")
    assert [s.id for s in samples] == ["mesc/test/d0007/t02", "mesc/test/d0007/t04"]

    first, second = samples
    assert first.history == (Turn(speaker=THERAPIST, text="Hello."), Turn(speaker=CLIENT, text="I feel bad. Really bad."))
    assert first.reference == "Why? Tell me."
    assert first.labels == {
        "dialogue_id": 7,
        "emotion": ["neutral", "joy"],
        "strategy": ["Open question", "Communication Skills"],
        "client_emotion": ["sadness", "depression"],
    }

    assert second.history == (
        Turn(speaker=THERAPIST, text="Hello."),
        Turn(speaker=CLIENT, text="I feel bad. Really bad."),
        Turn(speaker=THERAPIST, text="Why? Tell me."),
        Turn(speaker=CLIENT, text="My dog died."),
    )
    assert second.reference == "I'm sorry."
    assert second.labels == {"dialogue_id": 7, "emotion": ["sadness"], "strategy": ["Approval"], "client_emotion": ["sadness"]}


def test_build_instances_first_therapist_turn_after_client_is_target():
    utts = [U("Hi, I am anxious.", CLIENT, "fear"), U("What about?", THERAPIST, "neutral", "Open question")]
    samples = build_instances(123, utts, "val")
    assert [s.id for s in samples] == ["mesc/val/d0123/t01"]
    assert samples[0].history == (Turn(speaker=CLIENT, text="Hi, I am anxious."),)
    assert samples[0].labels["client_emotion"] == ["fear"]


def test_build_instances_no_targets():
    # only a therapist opener, or only a client
    assert build_instances(1, [U("Hello.", THERAPIST, strategy="Others"), U("Hm.", THERAPIST, strategy="Others")], "train") == []
    assert build_instances(2, [U("I talk.", CLIENT), U("And talk.", CLIENT)], "train") == []
    assert build_instances(3, [U("Hello.", THERAPIST, strategy="Others"), U("Hi.", CLIENT)], "train") == []


def test_build_instances_ids_are_stable():
    again = build_instances(7, list(TINY), "test")
    assert [s.model_dump() for s in again] == [s.model_dump() for s in build_instances(7, TINY, "test")]
    assert build_instances(7, TINY, "train")[0].id == "mesc/train/d0007/t02"  # the split is part of the id
    assert build_instances(4321, TINY, "test")[0].id == "mesc/test/d4321/t02"


# --------------------------------------------------------------------------- real data


def test_resolve_verifies_pinned_hashes(data_root):
    folder, hashes = datafiles.resolve(MescTask.dataset, "mesc", data_root, allow_modified=False)
    assert folder == data_root / "mesc"
    assert hashes == {f.name: f.sha256 for f in MescTask.dataset.files}
    assert set(hashes) == {"MESC.csv", "val.json", "test.json", "strategy_definitions.txt"}


def test_split_counts(real, data_root):
    assert {split: len(samples) for split, samples in real.items()} == EXPECTED_COUNTS
    # direct load from data_dir/'mesc' gives the same
    task = MescTask()
    for split, n in EXPECTED_COUNTS.items():
        assert len(task.load(split, data_root / "mesc")) == n


def test_load_is_deterministic_and_returns_fresh_lists(real, data_root):
    again = MescTask().load("test", data_root / "mesc")
    assert [s.id for s in again] == [s.id for s in real["test"]]
    again.clear()  # mutating the returned list must not affect the next load
    assert len(MescTask().load("test", data_root / "mesc")) == EXPECTED_COUNTS["test"]


def test_ids_unique_and_well_formed(real):
    all_ids = [s.id for samples in real.values() for s in samples]
    assert len(all_ids) == len(set(all_ids)) == sum(EXPECTED_COUNTS.values())
    for split, samples in real.items():
        for s in samples:
            m = ID_RE.match(s.id)
            assert m, s.id
            assert m.group(1) == split
            assert int(m.group(2)) == s.labels["dialogue_id"]
            assert int(m.group(3)) == len(s.history)  # t<i> is the index of the target among merged turns
        # samples come in dialogue order, then turn order
        keys = [(s.labels["dialogue_id"], len(s.history)) for s in samples]
        assert keys == sorted(keys)


def test_histories_alternate_and_end_with_client(real):
    for samples in real.values():
        for s in samples:
            assert s.history, s.id
            assert s.history[-1].speaker == CLIENT, s.id
            speakers = [t.speaker for t in s.history] + [THERAPIST]
            assert set(speakers) <= {CLIENT, THERAPIST}
            assert all(a != b for a, b in zip(speakers, speakers[1:])), s.id  # merging guarantees alternation
            assert s.reference.strip() and s.reference == s.reference.strip(), s.id
            assert all(t.text.strip() for t in s.history), s.id


def test_labels_are_per_utterance(real):
    strategies = Counter()
    for samples in real.values():
        for s in samples:
            n = len(s.labels["emotion"])
            assert n >= 1 and len(s.labels["strategy"]) == n, s.id
            assert len(s.labels["client_emotion"]) >= 1
            assert None not in s.labels["strategy"] and "undefined" not in s.labels["strategy"], s.id
            strategies.update(s.labels["strategy"])
    assert "open question" not in strategies
    assert strategies["Open question"] > 2000
    assert len(strategies) == 10  # MESC's ten therapist strategies


def test_consecutive_targets_extend_history(real):
    # within a dialogue, the next target's history = previous history + previous reference + the client turn(s)
    for samples in real.values():
        for a, b in zip(samples, samples[1:]):
            if a.labels["dialogue_id"] != b.labels["dialogue_id"]:
                continue
            assert b.history[: len(a.history)] == a.history
            assert b.history[len(a.history)] == Turn(speaker=THERAPIST, text=a.reference)
            assert len(b.history) == len(a.history) + 2
            assert b.labels["client_emotion"] is not None


def test_lowercase_open_question_is_canonicalised(real, data_root):
    # MESC.csv rows 22560, 22564, 22567 (dialogue 797) say "open question"
    lines = (data_root / "mesc" / "MESC.csv").read_text(encoding="utf-8").splitlines()
    assert ",Therapist,neutral,open question,797," in lines[22560 - 1]
    hits = [s for samples in real.values() for s in samples if "Your son and your daughter-in-law?" in s.reference]
    assert len(hits) == 1
    assert hits[0].labels["dialogue_id"] == 797
    assert "Open question" in hits[0].labels["strategy"]
    assert all("open question" not in s.labels["strategy"] for samples in real.values() for s in samples)


def test_first_train_sample_matches_csv(real):
    # MESC.csv lines 2-3: "I told you.",Client,sadness ... / "Told me what?",Therapist,neutral,Open question, dialogue 0
    first = real["train"][0]
    assert first.id == "mesc/train/d0000/t01"
    assert first.history == (Turn(speaker=CLIENT, text="I told you."),)
    assert first.reference == "Told me what?"
    assert first.labels == {"dialogue_id": 0, "emotion": ["neutral"], "strategy": ["Open question"], "client_emotion": ["sadness"]}


def test_dialogues_per_split(real, real_dialogues):
    dialogues, assignment = real_dialogues
    assert len(dialogues) == 1019
    assert sum(len(u) for u in dialogues.values()) == 28762
    assert Counter(assignment.values()) == {"train": 815, "val": 102, "test": 102}
    with_targets = {split: {s.labels["dialogue_id"] for s in samples} for split, samples in real.items()}
    assert {split: len(ids) for split, ids in with_targets.items()} == {"train": 814, "val": 102, "test": 102}
    for split, ids in with_targets.items():
        assert all(assignment[d] == split for d in ids)
    # the one dialogue without a target: a therapist opener followed only by client utterances
    no_targets = set(dialogues) - set().union(*with_targets.values())
    assert no_targets == {846}
    assert [t[0].speaker for t in merge_turns(dialogues[846])] == [THERAPIST, CLIENT]


def test_therapist_openers_are_not_targets(real, real_dialogues):
    dialogues, assignment = real_dialogues
    openers = Counter(assignment[d] for d, utts in dialogues.items() if utts[0].speaker == THERAPIST)
    assert openers == {"train": 82, "val": 7, "test": 6}  # the data README's counts
    for samples in real.values():
        assert not any(s.id.endswith("/t00") for s in samples)
    # every therapist turn after the first is a target: counts follow from the merged turns
    for split, n in EXPECTED_COUNTS.items():
        targets = sum(
            sum(1 for i, t in enumerate(merge_turns(utts)) if i > 0 and t[0].speaker == THERAPIST)
            for d, utts in dialogues.items()
            if assignment[d] == split
        )
        assert targets == n


def test_build_request_uses_history(real):
    sample = real["test"][5]
    request = MescTask().build_request(sample)
    assert request.messages[0].role == "system"
    assert [m.content for m in request.messages[1:]] == [t.text for t in sample.history]
    assert [m.role for m in request.messages[1:]][-1] == "user"
    assert sample.reference not in [m.content for m in request.messages]


# --------------------------------------------------------------------------- bad data


@pytest.mark.parametrize("name", ["MESC.csv", "val.json", "test.json", "strategy_definitions.txt"])
def test_missing_file(name, data_root, tmp_path, monkeypatch):
    monkeypatch.delenv(datafiles.ALLOW_MODIFIED_ENV, raising=False)
    folder = copy_dataset(data_root, tmp_path)
    (folder / name).unlink()
    with pytest.raises(DataError) as info:
        load_checked(tmp_path)
    message = str(info.value)
    assert str(folder / name) in message
    assert "harness data fetch mesc" in message


def test_missing_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(datafiles.ALLOW_MODIFIED_ENV, raising=False)
    with pytest.raises(DataError, match="harness data fetch mesc"):
        load_checked(tmp_path)


def test_corrupted_file(data_root, tmp_path, monkeypatch):
    monkeypatch.delenv(datafiles.ALLOW_MODIFIED_ENV, raising=False)
    folder = copy_dataset(data_root, tmp_path)
    with open(folder / "test.json", "ab") as fh:
        fh.write(b" ")
    with pytest.raises(DataError) as info:
        load_checked(tmp_path)
    message = str(info.value)
    assert "test.json" in message and "sha256" in message and "--force" in message
    assert datafiles.ALLOW_MODIFIED_ENV in message
    monkeypatch.setenv(datafiles.ALLOW_MODIFIED_ENV, "0")  # "0" does not allow
    with pytest.raises(DataError, match="sha256"):
        load_checked(tmp_path)


def test_modified_data_allowed_records_real_hash(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv(datafiles.ALLOW_MODIFIED_ENV, "1")
    folder = copy_dataset(data_root, tmp_path)
    with open(folder / "test.json", "ab") as fh:
        fh.write(b"\n")  # still valid JSON
    _, hashes = datafiles.resolve(MescTask.dataset, "mesc", tmp_path)
    assert hashes["test.json"] == hashlib.sha256((folder / "test.json").read_bytes()).hexdigest()
    assert hashes["test.json"] != {f.name: f.sha256 for f in MescTask.dataset.files}["test.json"]
    assert len(load_checked(tmp_path, "test")) == EXPECTED_COUNTS["test"]


@pytest.fixture
def modified(data_root, tmp_path, monkeypatch) -> Path:
    """A writable copy of the dataset that may be modified (ESC_HARNESS_ALLOW_MODIFIED_DATA=1)."""
    monkeypatch.setenv(datafiles.ALLOW_MODIFIED_ENV, "1")
    return copy_dataset(data_root, tmp_path)


def test_bad_speaker_reports_physical_line(modified, tmp_path):
    csv_path = modified / "MESC.csv"
    lines = csv_lines(csv_path)
    assert ",Client," in lines[999] or ",Therapist," in lines[999]
    lines[999] = edit_cell(lines[999], "Speaker", "Doctor")  # physical line 1000
    # an utterance spanning two physical lines earlier in the file shifts the Doctor row to line 1001
    lines[2] = edit_cell(lines[2], "Utterance", "Told me\nwhat?")
    write_csv_lines(csv_path, lines)
    with pytest.raises(DataError) as info:
        load_checked(tmp_path)
    message = str(info.value)
    assert f"{csv_path}:1001:" in message
    assert "MESC.csv:1001" in message and "'Doctor'" in message


def test_bad_multiline_row_reports_its_first_line(modified, tmp_path):
    csv_path = modified / "MESC.csv"
    lines = csv_lines(csv_path)
    # the bad row starts on physical line 1000 and spans lines 1000-1001
    lines[999] = edit_cell(edit_cell(lines[999], "Speaker", "Doctor"), "Utterance", "First line\nsecond line")
    write_csv_lines(csv_path, lines)
    with pytest.raises(DataError) as info:
        load_checked(tmp_path)
    assert f"{csv_path}:1000: Speaker is 'Doctor'" in str(info.value)


def test_bad_speaker_line_without_multiline_rows(modified, tmp_path):
    csv_path = modified / "MESC.csv"
    lines = csv_lines(csv_path)
    lines[41] = edit_cell(lines[41], "Speaker", "Doctor")  # physical line 42
    write_csv_lines(csv_path, lines)
    with pytest.raises(DataError, match=r"MESC\.csv:42: Speaker is 'Doctor'"):
        load_checked(tmp_path)


def test_non_integer_dialogue_id(modified, tmp_path):
    csv_path = modified / "MESC.csv"
    lines = csv_lines(csv_path)
    lines[1999] = edit_cell(lines[1999], "Dialogue_ID", "7a")  # physical line 2000
    write_csv_lines(csv_path, lines)
    with pytest.raises(DataError) as info:
        load_checked(tmp_path)
    message = str(info.value)
    assert "MESC.csv:2000:" in message and "Dialogue_ID" in message and "'7a'" in message


def test_utterance_id_out_of_order(modified, tmp_path):
    csv_path = modified / "MESC.csv"
    lines = csv_lines(csv_path)
    lines[499] = edit_cell(lines[499], "Utterance_ID", "99")  # physical line 500
    write_csv_lines(csv_path, lines)
    with pytest.raises(DataError, match=r"MESC\.csv:500: Utterance_ID 99 out of order"):
        load_checked(tmp_path)


@pytest.mark.parametrize("change", ["extra", "short"])
def test_wrong_number_of_cells(change, modified, tmp_path):
    csv_path = modified / "MESC.csv"
    lines = csv_lines(csv_path)
    row = next(csv.reader([lines[299]]))
    row = row + ["surplus"] if change == "extra" else row[:-2]
    lines[299] = csv_row(row)  # physical line 300
    write_csv_lines(csv_path, lines)
    with pytest.raises(DataError, match=r"MESC\.csv:300: (11|8) cells, expected 10"):
        load_checked(tmp_path)


def test_a_blank_line_does_not_shift_the_reported_line(modified, tmp_path):
    csv_path = modified / "MESC.csv"
    lines = csv_lines(csv_path)
    row = next(csv.reader([lines[6]]))
    row[1] = "Doctor"
    lines[6] = csv_row(row)  # physical line 7 before the blank line is inserted ...
    lines.insert(5, "")  # ... and line 8 after it
    write_csv_lines(csv_path, lines)
    with pytest.raises(DataError, match=r"MESC\.csv:8: Speaker is 'Doctor'"):
        load_checked(tmp_path)


def test_load_itself_reports_missing_files_and_unknown_splits(tmp_path):
    from harness.errors import HarnessError

    with pytest.raises(DataError, match="MESC.csv: missing dataset file"):
        MescTask().load("test", tmp_path)
    with pytest.raises(HarnessError, match="no split 'dev'"):
        MescTask().load("dev", tmp_path)


def test_missing_column(modified, tmp_path):
    csv_path = modified / "MESC.csv"
    lines = csv_lines(csv_path)
    assert lines[0].startswith("Utterance,Speaker,Emotion,")
    lines[0] = lines[0].replace(",Emotion,", ",Feeling,")
    write_csv_lines(csv_path, lines)
    with pytest.raises(DataError) as info:
        load_checked(tmp_path)
    message = str(info.value)
    assert "missing column" in message and "Emotion" in message and "MESC.csv:1" in message


def test_header_only_csv(modified, tmp_path):
    csv_path = modified / "MESC.csv"
    write_csv_lines(csv_path, csv_lines(csv_path)[:1] + [""])
    with pytest.raises(DataError, match="no rows"):
        load_checked(tmp_path)


def test_broken_json(modified, tmp_path):
    val = modified / "val.json"
    lines = val.read_text(encoding="utf-8").split("\n")
    assert lines[2].strip().startswith('"problem_type":')
    lines[2] = lines[2].replace('"problem_type":', '"problem_type"')  # line 3: missing ':'
    val.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_checked(tmp_path)
    message = str(info.value)
    assert f"{val}:3:" in message and "invalid JSON" in message


def test_json_dialogue_that_matches_no_csv_dialogue(modified, tmp_path):
    path = modified / "test.json"
    items = json.loads(path.read_text(encoding="utf-8"))
    items[4]["dialog"][0]["emotion"] = "bewilderment"
    path.write_text(json.dumps(items), encoding="utf-8")
    with pytest.raises(DataError, match=r"test\.json: dialogue #4 matches 0 MESC\.csv dialogues"):
        load_checked(tmp_path)


def test_json_not_a_list(modified, tmp_path):
    (modified / "val.json").write_text('{"dialog": []}', encoding="utf-8")
    with pytest.raises(DataError, match=r"val\.json: expected a JSON list"):
        load_checked(tmp_path)


def test_json_dialogue_missing_fields(modified, tmp_path):
    path = modified / "val.json"
    items = json.loads(path.read_text(encoding="utf-8"))
    del items[1]["dialog"][2]["speaker"]
    path.write_text(json.dumps(items), encoding="utf-8")
    with pytest.raises(DataError, match=r"val\.json: dialogue #1 lacks"):
        load_checked(tmp_path)


# --------------------------------------------------------------------------- fetch


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def sources(tmp_path) -> dict[str, Path]:
    src = tmp_path / "src"
    src.mkdir()
    files = {"a.txt": b"first file\n", "b.csv": b"x,y\r\n1,2\r\n"}
    for name, data in files.items():
        (src / name).write_bytes(data)
    return {name: src / name for name in files}


def test_fetch_file_urls_downloads_and_verifies(sources, tmp_path):
    ds = Dataset(folder="demo", source="test", files=tuple(DataFile(n, p.as_uri(), _sha(p.read_bytes())) for n, p in sources.items()))
    root = tmp_path / "root"
    written = datafiles.fetch(ds, root)
    folder = root / "demo"
    assert sorted(written) == sorted(folder / n for n in sources)
    for name, path in sources.items():
        assert (folder / name).read_bytes() == path.read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == sorted(sources)  # no temporary files left
    # verified files are not downloaded again ...
    assert datafiles.fetch(ds, root) == []
    # ... unless changed or forced
    (folder / "a.txt").write_bytes(b"tampered")
    assert datafiles.fetch(ds, root) == [folder / "a.txt"]
    assert (folder / "a.txt").read_bytes() == sources["a.txt"].read_bytes()
    assert sorted(datafiles.fetch(ds, root, force=True)) == sorted(written)
    # and what was fetched resolves
    _, hashes = datafiles.resolve(ds, "demo", root, allow_modified=False)
    assert hashes == {f.name: f.sha256 for f in ds.files}


def test_fetch_wrong_sha256_leaves_nothing(sources, tmp_path):
    good = DataFile("a.txt", sources["a.txt"].as_uri(), _sha(sources["a.txt"].read_bytes()))
    bad = DataFile("b.csv", sources["b.csv"].as_uri(), "0" * 64)
    ds = Dataset(folder="demo", source="test", files=(good, bad))
    root = tmp_path / "root"
    with pytest.raises(DataError) as info:
        datafiles.fetch(ds, root)
    message = str(info.value)
    assert "b.csv" in message and "sha256" in message and "000000000000" in message
    folder = root / "demo"
    assert not (folder / "b.csv").exists()
    assert [p.name for p in folder.iterdir()] == ["a.txt"]  # no partial file, no .part file


def test_fetch_wrong_sha256_keeps_existing_file(sources, tmp_path):
    folder = tmp_path / "root" / "demo"
    folder.mkdir(parents=True)
    (folder / "b.csv").write_bytes(b"old content")
    ds = Dataset(folder="demo", source="test", files=(DataFile("b.csv", sources["b.csv"].as_uri(), "f" * 64),))
    with pytest.raises(DataError, match="sha256"):
        datafiles.fetch(ds, tmp_path / "root", force=True)
    assert (folder / "b.csv").read_bytes() == b"old content"
    assert [p.name for p in folder.iterdir()] == ["b.csv"]


def test_fetch_unreachable_source(tmp_path):
    missing = tmp_path / "nowhere" / "x.txt"
    ds = Dataset(folder="demo", source="test", files=(DataFile("x.txt", missing.as_uri(), "0" * 64),))
    with pytest.raises(DataError) as info:
        datafiles.fetch(ds, tmp_path / "root")
    assert "x.txt" in str(info.value) and "download" in str(info.value)
    assert list((tmp_path / "root" / "demo").iterdir()) == []


def test_fetch_mesc_from_file_urls_then_load(data_root, tmp_path, monkeypatch):
    # the real pinned hashes, fetched from local copies, give the same instances
    monkeypatch.delenv(datafiles.ALLOW_MODIFIED_ENV, raising=False)
    ds = Dataset(
        folder=MescTask.dataset.folder,
        source=MescTask.dataset.source,
        files=tuple(DataFile(f.name, (data_root / "mesc" / f.name).resolve().as_uri(), f.sha256) for f in MescTask.dataset.files),
    )
    written = datafiles.fetch(ds, tmp_path)
    assert sorted(p.name for p in written) == sorted(f.name for f in MescTask.dataset.files)
    assert len(load_checked(tmp_path, "val")) == EXPECTED_COUNTS["val"]
