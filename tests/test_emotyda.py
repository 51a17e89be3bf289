"""The EMOTyDA-ESC task (tasks/emotyda_esc.py): the stated rule and its readings, instance building, MELD's
mojibake repair, ids, bad data, one run.

Real data is read from $ESC_HARNESS_DATA (the folder holding emotyda/); without it the tests that need it fail.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tasks.emotyda_esc as emotyda
from harness import datafiles
from harness.contract import Sample, Turn
from harness.errors import DataError, HarnessError
from harness.runner import RunConfig, run
from tasks.emotyda_esc import (
    MOJIBAKE,
    SEEKER,
    SOURCES,
    SUPPORTER,
    SYSTEM_PROMPT,
    Dialogue,
    EmotydaEscTask,
    Utterance,
    build_instances,
    count_instances,
    decode_mojibake,
    make_rule,
    read_iemocap,
    read_meld,
    repair_mojibake,
    script_of,
)

EXPECTED = {"train": 1366, "test": 304}  # the default rule; test = IEMOCAP session 5
ID_RE = re.compile(r"^emotyda-esc/(train|test)/(Ses0[1-5][FM]_\w+?|meld-d\d{4})/([tu])(\d{2,})$")


@pytest.fixture(scope="module")
def folder(data_root) -> Path:
    found, _ = datafiles.resolve(EmotydaEscTask.dataset, "emotyda-esc", data_root, allow_modified=False)
    return found


@pytest.fixture(scope="module")
def real(folder) -> dict[str, list[Sample]]:
    task = EmotydaEscTask()
    return {split: task.load(split, folder) for split in task.splits}


def copy_dataset(data_root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "emotyda"
    target.mkdir()
    for f in EmotydaEscTask.dataset.files:
        shutil.copyfile(data_root / "emotyda" / f.name, target / f.name)
    return target


def load_checked(root: Path, split: str = "test", **args) -> list[Sample]:
    found, _ = datafiles.resolve(EmotydaEscTask.dataset, "emotyda-esc", root)
    return EmotydaEscTask(**args).load(split, found)


# --------------------------------------------------------------------------- hand-made dialogues


def U(speaker: str, text: str, emotion: str = "neu", act: str = "s", uid: str = "") -> Utterance:
    return Utterance(speaker, text, emotion, act, uid or text, 0)


DYAD = Dialogue("iemocap", "Ses05F_impro99", (
    U("F", "I lost my job.", "sad", "s", "F000"),  # t0
    U("M", "Oh no.", "neu", "b", "M000"),  # t1: backchannel -> never a target
    U("F", "I don't know what to do.", "fru", "s", "F001"),  # t2 (merged with the next)
    U("F", "Everything is falling apart.", "sad", "s", "F002"),
    U("M", "We'll figure it out.", "neu", "s", "M001"),  # t3: answers a negative turn -> target
    U("M", "Together.", "hap", "o", "M002"),
    U("F", "Thanks.", "xxx", "a", "F003"),  # t4: answered turn not negative -> not a target under context=negative
    U("M", "Hello there!", "hap", "g", "M003"),  # t5: greeting -> never
    U("F", "Ugh.", "ang", "s", "F004"),  # t6: negative -> never
    U("M", "Calm down, it's fine.", "xxx", "c", "M004"),  # t7: target (unlabelled xxx kept by default)
))


def test_default_rule_on_a_dyad():
    samples = build_instances(DYAD, "test")
    assert [s.id for s in samples] == ["emotyda-esc/test/Ses05F_impro99/t03", "emotyda-esc/test/Ses05F_impro99/t07"]
    first, second = samples
    assert first.history == (
        Turn(speaker=SEEKER, text="I lost my job."),
        Turn(speaker=SUPPORTER, text="Oh no."),
        Turn(speaker=SEEKER, text="I don't know what to do. Everything is falling apart."),
    )
    assert first.reference == "We'll figure it out. Together."
    assert first.labels == {
        "corpus": "iemocap", "dialogue": "Ses05F_impro99", "speaker": "M", "utterance_ids": ["M001", "M002"],
        "emotion": ["neu", "hap"], "dialogue_act": ["s", "o"], "context_emotion": ["fru", "sad"],
    }
    assert second.reference == "Calm down, it's fine." and second.labels["context_emotion"] == ["ang"]
    assert second.history[-1] == Turn(speaker=SEEKER, text="Ugh.")


def test_the_rule_options_on_a_dyad():
    ids = lambda **args: [s.id.rsplit("/", 1)[1] for s in build_instances(DYAD, "test", make_rule(**args))]
    assert ids(unlabelled="drop") == ["t03"]  # the xxx target goes
    assert ids(context="any") == ["t03", "t04", "t07"]  # the paper's two filters only
    assert ids(context="any", unlabelled="drop") == ["t03"]
    assert ids(negative="ang") == ["t07"]  # only anger is negative: t2 (fru, sad) no longer answers distress, t6's answer does
    assert ids(negative="ang,sad,fru,fea,dis", context="any") == ids(context="any")
    # utterances, not turns: M001 answers F002 (sad); M002 answers M001 (neu) -> not under context=negative
    assert ids(merge=False) == ["u04", "u09"]
    assert ids(merge="false", context="any") == ["u04", "u05", "u06", "u09"]


def test_speaker_names_in_a_multi_party_history():
    party = Dialogue("meld", "meld-d0001", (
        U("Ross", "I'm so sad.", "sadness"), U("Rachel", "Why?", "surprise", "q"), U("Ross", "She left.", "sadness"),
        U("Joey", "Let's get pizza.", "joy", "s"),
    ))
    sample = build_instances(party, "train", make_rule(context="any"))[-1]
    assert sample.id == "emotyda-esc/train/meld-d0001/t03"
    assert [t.speaker for t in sample.history] == ["Seeker (Ross)", "Seeker (Rachel)", "Seeker (Ross)"]
    rachel = build_instances(party, "train", make_rule(context="any"))[0]  # Rachel answers Ross alone
    assert rachel.labels["speaker"] == "Rachel" and [t.speaker for t in rachel.history] == [SEEKER]
    ross = build_instances(party, "train", make_rule(context="any", negative="none"))[1]
    assert ross.labels["speaker"] == "Ross" and [t.speaker for t in ross.history] == [SUPPORTER, SEEKER]


def test_first_turn_is_never_a_target():
    alone = Dialogue("iemocap", "Ses01F_impro01", (U("F", "Hi.", "neu", "s"),))
    assert build_instances(alone, "test", make_rule(context="any")) == []


def test_ids_are_stable():
    assert [s.model_dump() for s in build_instances(DYAD, "test")] == [s.model_dump() for s in build_instances(DYAD, "test")]
    assert build_instances(DYAD, "train")[0].id == "emotyda-esc/train/Ses05F_impro99/t03"


# --------------------------------------------------------------------------- MELD mojibake


FOLD = {"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2026": "...", "\u2014": "--", "\u2013": "-", "\u00a0": " "}


def test_repair_table_is_what_the_bytes_encode():
    for sequence, repaired in MOJIBAKE.items():
        assert any(ord(c) > 127 for c in sequence)
        intended = decode_mojibake(sequence)  # Mac Roman -> UTF-8 (-> cp1252 for C1 controls)
        assert FOLD.get(intended, intended) == repaired, sequence


def test_repair_examples():
    assert repair_mojibake("my company\u00ac\u00eds transition") == "my company's transition"
    assert repair_mojibake("So\u00ac\u00d6 So\u00ac\u00d6here") == "So... So...here"
    assert repair_mojibake("hear\u00ac\u00f3\u00ac\u00f3Mother") == "hear----Mother"
    assert repair_mojibake("Nestl\u221a\u00a9? Adi\u221a\u2265s. It\u201a\u00c4\u00f4s") == "Nestl\u00e9? Adi\u00f3s. It's"
    assert repair_mojibake("\u00ac\u00ecHey\u00ac\u00ee") == '"Hey"'
    assert repair_mojibake("plain ASCII, caf\u00e9") == "plain ASCII, caf\u00e9"  # nothing else is touched


def test_every_non_ascii_run_of_meld_is_in_the_table(folder):
    text = (folder / "MELD.csv").read_text(encoding="utf-8")
    runs = set(re.findall(r"[^\x00-\x7f]+", text))
    keys = "|".join(re.escape(k) for k in sorted(MOJIBAKE, key=len, reverse=True))
    for r in runs:
        assert re.fullmatch(f"(?:{keys})+", r), f"unlisted mojibake {r!r}"
    assert sum(text.count(k) for k in MOJIBAKE) == 3941
    repaired = repair_mojibake(text)
    assert set(re.findall(r"[^\x00-\x7f]", repaired)) == {"\u00e9", "\u00f3"}  # only real letters remain


def test_loaded_meld_text_is_repaired(folder):
    dialogues = read_meld(folder / "MELD.csv")
    assert len(dialogues) == 1038 and sum(len(d.utterances) for d in dialogues) == 9989
    first = dialogues[0].utterances[0]
    assert first.text == "also I was the point person on my company's transition from the KL-5 to GR-6 system."
    assert (first.speaker, first.emotion, first.act, first.uid, first.line) == ("Chandler", "neutral", "s", "0", 2)
    for d in dialogues:
        for u in d.utterances:
            assert not re.search("[\u00ac\u221a\u201a\u00c4]", u.text + u.speaker)


# --------------------------------------------------------------------------- real data


def test_resolve_verifies_pinned_hashes(data_root):
    found, hashes = datafiles.resolve(EmotydaEscTask.dataset, "emotyda-esc", data_root, allow_modified=False)
    assert found == data_root / "emotyda"
    assert set(hashes) == {"MELD.csv", *(f"iemocap_session{s}.csv" for s in range(1, 6))}
    assert all("0cfc16905597cc3a4bc7a4dc1a81a38486623669/Dataset/" in f.url for f in EmotydaEscTask.dataset.files)


def test_default_counts(real):
    assert {split: len(samples) for split, samples in real.items()} == EXPECTED
    assert {s.labels["corpus"] for s in real["test"]} == {"iemocap"}
    assert all(s.labels["dialogue"].startswith("Ses05") for s in real["test"])
    train_dialogues = {s.labels["dialogue"] for s in real["train"]}
    assert not any(d.startswith("Ses05") for d in train_dialogues)  # train = the other files
    assert {s.labels["corpus"] for s in real["train"]} == {"iemocap", "meld"}
    # IEMOCAP's scripted scenes are played in every session: none of them may feed retrieval or demonstrations
    assert {script_of(s.labels["dialogue"]) for s in real["test"]} - {None} == {
        "script01_1", "script01_2", "script01_3", "script02_1", "script02_2", "script03_1", "script03_2"}
    assert all(script_of(s.labels["dialogue"]) is None for s in real["train"])


def test_data_stats_cli(data_root):
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "data", "stats", "emotyda-esc", "--json"], capture_output=True, text=True, check=False,
                          env={**os.environ, "ESC_HARNESS_DATA": str(data_root)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == EXPECTED


def _docstring_readings() -> list[tuple[str, dict, int, int]]:
    """The readings table of the module docstring: (source, task args, merged count, utterance count)."""
    rows = []
    for line in emotyda.__doc__.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6 or not cells[0] or cells[0] in ("source", "---"):
            continue
        source = cells[0].split(" ")[0]
        args: dict = {"context": cells[1].split(" ")[0]}
        if cells[2] != "n/a":
            args["unlabelled"] = cells[2]
        negative = cells[3].split(" (")[0]
        if negative == "default + surprise":
            args["negative"] = ",".join(emotyda.DEFAULT_NEGATIVE) + ",surprise"
        elif negative != "default":
            args["negative"] = negative
        rows.append((source, args, int(cells[4].strip("*").replace(",", "")), int(cells[5].replace(",", ""))))
    return rows


def test_the_documented_readings(folder):
    rows = _docstring_readings()
    assert len(rows) == 12 and rows[0] == ("iemocap5", {"context": "negative", "unlabelled": "keep"}, 304, 325)
    for source, args, turns, utts in rows:
        for merge, expected in ((True, turns), (False, utts)):
            assert count_instances(folder, SOURCES[source], make_rule(merge=merge, **args)) == expected, (source, args, merge)


def test_counting_equals_loading(folder):
    for args in ({}, {"merge": False, "context": "any", "unlabelled": "drop"}):
        assert len(EmotydaEscTask(**args).load("test", folder)) == count_instances(folder, SOURCES["iemocap5"], make_rule(**args))


def test_ids_unique_well_formed(real, folder):
    ids = [s.id for samples in real.values() for s in samples]
    assert len(ids) == len(set(ids))
    for split, samples in real.items():
        for s in samples:
            m = ID_RE.match(s.id)
            assert m and m.group(1) == split and m.group(2) == s.labels["dialogue"] and m.group(3) == "t"
    unmerged = EmotydaEscTask(merge=False).load("test", folder)
    assert all(ID_RE.match(s.id).group(3) == "u" for s in unmerged) and len({s.id for s in unmerged}) == len(unmerged)


def test_labels_obey_the_rule(real):
    negative = set(emotyda.DEFAULT_NEGATIVE)
    for samples in real.values():
        for s in samples:
            assert s.history and s.reference
            assert not negative & set(s.labels["emotion"])
            assert not {"b", "g"} & set(s.labels["dialogue_act"])
            assert negative & set(s.labels["context_emotion"])
            assert len(s.labels["emotion"]) == len(s.labels["dialogue_act"]) == len(s.labels["utterance_ids"])
            assert s.history[-1].speaker.startswith(SEEKER)  # merged turns: the answered turn is another speaker's
            speakers = [t.speaker for t in s.history]
            assert all(a != b for a, b in itertools.pairwise(speakers))


def test_first_test_sample_matches_the_file(real, folder):
    sample = real["test"][0]
    assert sample.id == "emotyda-esc/test/Ses05F_impro01/t03"
    assert sample.reference.startswith("I mean, there's really nothing I can do for you in this line.")
    assert sample.labels["utterance_ids"] == ["Ses05F_impro01_M001"] and sample.labels["speaker"] == "M"
    assert sample.history[0] == Turn(speaker=SEEKER, text="Hi, I need an ID.")
    assert sample.history[2].text.startswith("No. Okay, I'm sorry")  # the unsegmented FXX0 row joins F's turn
    assert sample.labels["context_emotion"] == ["-", "fru"]


def test_sources_and_options(folder):
    meld = EmotydaEscTask(source="meld")
    assert len(meld.load("test", folder)) == 999
    train = meld.load("train", folder)
    assert {s.labels["corpus"] for s in train} == {"iemocap"}
    assert len(train) == 1142 and any(script_of(s.labels["dialogue"]) for s in train)  # no scene to hide from MELD
    assert script_of("Ses05M_script01_1b") == "script01_1" and script_of("Ses05F_impro01") is None and script_of("meld-d0001") is None
    with pytest.raises(HarnessError, match="no train split"):
        EmotydaEscTask(source="all").load("train", folder)
    with pytest.raises(HarnessError, match="unknown source 'iemocap6'"):
        EmotydaEscTask(source="iemocap6")
    with pytest.raises(HarnessError, match="unknown emotion label.*'angry'"):
        EmotydaEscTask(negative="ang,angry")
    with pytest.raises(HarnessError, match="context must be negative or any"):
        EmotydaEscTask(context="all")
    with pytest.raises(HarnessError, match="unlabelled must be keep or drop"):
        EmotydaEscTask(unlabelled="yes")
    with pytest.raises(HarnessError, match="merge must be true or false"):
        EmotydaEscTask(merge="maybe")
    with pytest.raises(HarnessError, match="no split 'val'"):
        EmotydaEscTask().load("val", folder)
    assert make_rule(negative=["ang", "sad"]).negative == frozenset({"ang", "sad"})
    assert make_rule(negative="ang+sad|fea").negative == frozenset({"ang", "sad", "fea"})
    assert make_rule(negative="none").negative == frozenset()


def test_build_request_and_parse_go_through_prompting(real):
    sample = real["test"][5]
    request = EmotydaEscTask().build_request(sample)
    assert request.messages[0].content == SYSTEM_PROMPT
    assert [m.role for m in request.messages[1:]] == [{SEEKER: "user", SUPPORTER: "assistant"}[t.speaker] for t in sample.history]
    assert request.messages[-1].role == "user"
    fires = EmotydaEscTask(prompt="fires")
    text = fires.build_request(sample).messages[1].content
    assert text.endswith("\nSupporter:") and text.startswith(f"{sample.history[0].speaker}: ")
    parsed = fires.parse_response("<think> Situation: a queue. </think><response> That sounds tiring. </response>")
    assert parsed.format_ok and parsed.response == "That sounds tiring." and parsed.details["aspects"]["situation"]


def test_shots_come_from_the_train_split(real, folder):
    task = EmotydaEscTask(shots=1)
    task.load("test", folder)
    request = task.build_request(real["test"][0])
    demos = [s for s in real["train"] if s.reference in request.messages[0].content]
    assert demos and all(s.id.startswith("emotyda-esc/train/") for s in demos)


# --------------------------------------------------------------------------- bad data


@pytest.mark.parametrize("name", ["MELD.csv", "iemocap_session5.csv"])
def test_missing_file(name, data_root, tmp_path):
    target = copy_dataset(data_root, tmp_path)
    (target / name).unlink()
    with pytest.raises(DataError) as info:
        load_checked(tmp_path)
    assert str(target / name) in str(info.value) and "harness data fetch emotyda-esc" in str(info.value)


def test_load_itself_reports_a_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"iemocap_session5\.csv: missing dataset file; get it with `harness data fetch emotyda-esc`"):
        EmotydaEscTask().load("test", tmp_path)


def test_corrupted_file(data_root, tmp_path):
    target = copy_dataset(data_root, tmp_path)
    with open(target / "MELD.csv", "ab") as fh:
        fh.write(b"\r\n")
    with pytest.raises(DataError) as info:
        load_checked(tmp_path)
    assert "MELD.csv" in str(info.value) and "sha256" in str(info.value) and "--force" in str(info.value)


@pytest.fixture
def modified(data_root, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(datafiles.ALLOW_MODIFIED_ENV, "1")
    return copy_dataset(data_root, tmp_path)


def read_lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as fh:
        return fh.read().split("\r\n")


def write_lines(path: Path, lines: list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("\r\n".join(lines))


def edit_row(path: Path, line: int, change) -> None:
    """Rewrite the CSV row on physical `line` (1-based; these files have one row per line, CRLF)."""
    lines = read_lines(path)
    row = next(csv.reader([lines[line - 1]]))
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(change(row))
    lines[line - 1] = out.getvalue()
    write_lines(path, lines)


def test_bad_turn_id(modified, tmp_path):
    path = modified / "iemocap_session5.csv"
    edit_row(path, 100, lambda row: ["Session5_x_F000", *row[1:]])
    with pytest.raises(DataError, match=r"iemocap_session5\.csv:100: TURN 'Session5_x_F000' is not an IEMOCAP turn id"):
        load_checked(tmp_path)


def test_turn_of_another_session(modified, tmp_path):
    path = modified / "iemocap_session5.csv"
    edit_row(path, 7, lambda row: [row[0].replace("Ses05", "Ses02"), *row[1:]])
    with pytest.raises(DataError, match=r"iemocap_session5\.csv:7: TURN 'Ses02.*belongs to session 2"):
        load_checked(tmp_path)


def test_unknown_emotion_and_act(modified, tmp_path):
    path = modified / "iemocap_session5.csv"
    edit_row(path, 30, lambda row: [*row[:3], "happy"])
    with pytest.raises(DataError, match=r"iemocap_session5\.csv:30: emotion 'happy' is not one of"):
        load_checked(tmp_path)
    edit_row(path, 30, lambda row: [row[0], row[1], "question", "neu"])
    with pytest.raises(DataError, match=r"iemocap_session5\.csv:30: dialogue act 'question' is not one of"):
        load_checked(tmp_path)


def test_wrong_number_of_cells(modified, tmp_path):
    path = modified / "iemocap_session5.csv"
    edit_row(path, 55, lambda row: row[:3])
    with pytest.raises(DataError, match=r"iemocap_session5\.csv:55: 3 cells, expected 4"):
        load_checked(tmp_path)


def test_missing_column(modified, tmp_path):
    path = modified / "iemocap_session5.csv"
    edit_row(path, 1, lambda row: ["TURN", "UTTERANCE", "ACT", "EMOTION"])
    with pytest.raises(DataError, match=r"iemocap_session5\.csv:1: missing column\(s\) DA"):
        load_checked(tmp_path)


def test_meld_errors_in_the_train_split(modified, tmp_path):
    path = modified / "MELD.csv"
    edit_row(path, 500, lambda row: [*row[:4], "x9", *row[5:]])
    with pytest.raises(DataError, match=r"MELD\.csv:500: Dialogue_ID/Utterance_ID must be integers, got 'x9'"):
        load_checked(tmp_path, "train")
    edit_row(path, 500, lambda row: [*row[:4], "49", "0", *row[6:]])  # row 500 is utterance 4 of dialogue 49
    with pytest.raises(DataError, match=r"MELD\.csv:500: Utterance_ID 0 out of order in dialogue 49"):
        load_checked(tmp_path, "train")


def test_a_blank_line_does_not_shift_reported_lines(modified, tmp_path):
    path = modified / "iemocap_session5.csv"
    lines = read_lines(path)
    lines.insert(10, "")
    write_lines(path, lines)
    assert len(load_checked(tmp_path)) == EXPECTED["test"]
    edit_row(path, 20, lambda row: [*row[:3], "happy"])
    with pytest.raises(DataError, match=r"iemocap_session5\.csv:20: emotion 'happy'"):
        load_checked(tmp_path)


def test_reader_accepts_its_own_output(tmp_path):
    path = tmp_path / "iemocap_session1.csv"
    path.write_text("TURN,UTTERANCE,DA,EMOTION\r\nSes01F_impro01_F000,Hi.,g,neu\r\nSes01F_impro01_M000,\"Hey,  you.\",s,hap\r\n", encoding="utf-8")
    (dialogue,) = read_iemocap(path, 1)
    assert dialogue.name == "Ses01F_impro01"
    assert [(u.speaker, u.text, u.line) for u in dialogue.utterances] == [("F", "Hi.", 2), ("M", "Hey, you.", 3)]


# --------------------------------------------------------------------------- a run


def test_retrieval_run_finishes(tmp_path, data_root):
    result = run(RunConfig(task="emotyda-esc", model="retrieval", limit=10, metrics=["bleu-2", "rouge-l"], output_dir=tmp_path, data_dir=data_root, resamples=0))
    assert result.summary.n == 10
    records = [json.loads(line) for line in (result.run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in records] == [s.id for s in EmotydaEscTask().load("test", data_root / "emotyda")[:10]]
    assert all(r["response"] for r in records)
