"""The ESConv task (tasks/esconv.py): counts, instance building, labels, ids, bad data, one run.

Real data is read from $ESC_HARNESS_DATA (the folder holding esconv/); without it the tests that need it fail.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import datafiles
from harness.contract import Sample, Turn
from harness.errors import DataError, HarnessError
from harness.runner import RunConfig, run
from tasks.esconv import (
    SEEKER,
    SUPPORTER,
    SYSTEM_PROMPT,
    Dialogue,
    ESConvTask,
    Utterance,
    build_instances,
    read_dialogues,
    read_strategies,
)

DIALOGUES = {"train": 910, "val": 195, "test": 195}
EXPECTED = {"train": 12271, "val": 2621, "test": 2801}  # reference code: every sys utterance but a dialogue's first
EXPECTED_MERGED = {"train": 10191, "val": 2156, "test": 2295}  # turns=merged: as MESC / FIRES
FILES = {"train": "train.json", "val": "valid.json", "test": "test.json"}
ID_RE = re.compile(r"^esconv/(train|val|test)/d(\d{4,})/([ut])(\d{2,})$")
STRATEGIES = ("Question", "Restatement or Paraphrasing", "Reflection of feelings", "Self-disclosure",
              "Affirmation and Reassurance", "Providing Suggestions", "Information", "Others")


@pytest.fixture(scope="module")
def folder(data_root) -> Path:
    found, _ = datafiles.resolve(ESConvTask.dataset, "esconv", data_root, allow_modified=False)
    return found


@pytest.fixture(scope="module")
def real(folder) -> dict[str, list[Sample]]:
    task = ESConvTask()
    return {split: task.load(split, folder) for split in task.splits}


def copy_dataset(data_root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "esconv"
    target.mkdir()
    for f in ESConvTask.dataset.files:
        shutil.copyfile(data_root / "esconv" / f.name, target / f.name)
    return target


def load_checked(root: Path, split: str = "test", **args) -> list[Sample]:
    """What the runner does: verify the files, then load."""
    found, _ = datafiles.resolve(ESConvTask.dataset, "esconv", root)
    return ESConvTask(**args).load(split, found)


# --------------------------------------------------------------------------- hand-made dialogue


def U(text: str, speaker: str, strategy: str | None = None) -> Utterance:
    return Utterance(text, speaker, strategy)


TINY = Dialogue(
    index=7, line=8, emotion_type="anxiety", problem_type="job crisis", situation="I may lose my job.", experience_type="Current Experience",
    utterances=(
        U("Hello, how are you?", SUPPORTER, "Question"),  # 0: opens the dialogue -> never a target
        U("Not great.", SEEKER),  # 1
        U("I may lose my job.", SEEKER),  # 2
        U("I'm sorry to hear that.", SUPPORTER, "Reflection of feelings"),  # 3 -> target
        U("What happened?", SUPPORTER, "Question"),  # 4 -> target (utterance mode only)
        U("My boss is unhappy.", SEEKER),  # 5
        U("That sounds hard.", SUPPORTER, "Affirmation and Reassurance"),  # 6 -> target
    ),
)
ABOUT = {"emotion_type": "anxiety", "problem_type": "job crisis", "situation": "I may lose my job.", "experience_type": "Current Experience"}


def test_utterance_mode_follows_the_reference_code():
    samples = build_instances(TINY, "test")
    assert [s.id for s in samples] == ["esconv/test/d0007/u03", "esconv/test/d0007/u04", "esconv/test/d0007/u06"]
    first, second, third = samples
    # the history is packed into alternating turns; the seeker's two utterances form one turn
    assert first.history == (Turn(speaker=SUPPORTER, text="Hello, how are you?"), Turn(speaker=SEEKER, text="Not great. I may lose my job."))
    assert first.reference == "I'm sorry to hear that."
    assert first.labels == {"dialogue_id": 7, "strategy": ["Reflection of feelings"], **ABOUT}
    # a supporter utterance right after another is a target of its own, the first one in its history
    assert second.history == first.history + (Turn(speaker=SUPPORTER, text="I'm sorry to hear that."),)
    assert second.reference == "What happened?"
    assert second.labels["strategy"] == ["Question"]
    assert third.history[-2:] == (Turn(speaker=SUPPORTER, text="I'm sorry to hear that. What happened?"), Turn(speaker=SEEKER, text="My boss is unhappy."))
    assert third.reference == "That sounds hard."


def test_merged_mode_follows_mesc():
    samples = build_instances(TINY, "val", "merged")
    assert [s.id for s in samples] == ["esconv/val/d0007/t02", "esconv/val/d0007/t04"]
    first, second = samples
    assert first.history == (Turn(speaker=SUPPORTER, text="Hello, how are you?"), Turn(speaker=SEEKER, text="Not great. I may lose my job."))
    assert first.reference == "I'm sorry to hear that. What happened?"
    assert first.labels == {"dialogue_id": 7, "strategy": ["Reflection of feelings", "Question"], **ABOUT}
    assert second.history[-1] == Turn(speaker=SEEKER, text="My boss is unhappy.")
    assert second.labels["strategy"] == ["Affirmation and Reassurance"]


def test_no_targets_and_seeker_openers():
    only_seeker = Dialogue(0, 1, (U("Hi.", SEEKER), U("Anyone?", SEEKER)), "sadness", "x", "y")
    assert build_instances(only_seeker, "train") == [] and build_instances(only_seeker, "train", "merged") == []
    opener_only = Dialogue(1, 2, (U("Hello.", SUPPORTER, "Others"), U("Hi.", SEEKER)), "sadness", "x", "y")
    assert build_instances(opener_only, "train") == []
    two_openers = Dialogue(2, 3, (U("Hello.", SUPPORTER, "Others"), U("I'm here.", SUPPORTER, "Others")), "sadness", "x", "y")
    # the reference code's rule is positional: the second supporter utterance has a history
    assert [s.id for s in build_instances(two_openers, "train")] == ["esconv/train/d0002/u01"]
    assert build_instances(two_openers, "train", "merged") == []
    seeker_first = Dialogue(3, 4, (U("I feel down.", SEEKER), U("Why?", SUPPORTER, "Question")), "sadness", "x", "y")
    assert [s.id for s in build_instances(seeker_first, "test")] == ["esconv/test/d0003/u01"]
    assert [s.id for s in build_instances(seeker_first, "test", "merged")] == ["esconv/test/d0003/t01"]


def test_ids_are_stable():
    assert [s.model_dump() for s in build_instances(TINY, "test")] == [s.model_dump() for s in build_instances(TINY, "test")]
    assert build_instances(TINY, "train")[0].id == "esconv/train/d0007/u03"


def test_read_dialogues_normalises_and_checks(tmp_path):
    path = tmp_path / "x.json"
    line = {"emotion_type": "anger", "problem_type": "p", "situation": " a  b ", "dialog": [
        {"text": "  hi\tthere ", "speaker": "usr"}, {"text": "Hello  you", "speaker": "sys", "strategy": "Question"}]}
    path.write_text(json.dumps(line) + "\n\n" + json.dumps(line), encoding="utf-8")  # a blank line between
    dialogues = read_dialogues(path, STRATEGIES)
    assert [(d.index, d.line) for d in dialogues] == [(0, 1), (1, 3)]
    assert dialogues[0].utterances == (Utterance("hi there", SEEKER, None), Utterance("Hello you", SUPPORTER, "Question"))
    assert dialogues[0].situation == "a b" and dialogues[0].experience_type is None


# --------------------------------------------------------------------------- real data


def test_resolve_verifies_pinned_hashes(data_root):
    found, hashes = datafiles.resolve(ESConvTask.dataset, "esconv", data_root, allow_modified=False)
    assert found == data_root / "esconv"
    assert set(hashes) == {"train.json", "valid.json", "test.json", "strategy.json"}
    for f in ESConvTask.dataset.files:
        assert f.url.startswith("https://raw.githubusercontent.com/")
        assert ("72f2ccd4670a83c00611b90febbdf941be38516d" in f.url) != (f.name == "strategy.json")


def test_dialogue_counts(folder):
    strategies = read_strategies(folder / "strategy.json")
    assert strategies == STRATEGIES
    for split, n in DIALOGUES.items():
        dialogues = read_dialogues(folder / FILES[split], strategies)
        assert len(dialogues) == n
        # the reference code's own count (inputters/strat.py, get_len): sys utterances after the first utterance
        assert sum(sum(1 for u in d.utterances[1:] if u.speaker == SUPPORTER) for d in dialogues) == EXPECTED[split]


def test_split_counts(real, folder):
    assert {split: len(samples) for split, samples in real.items()} == EXPECTED
    merged = ESConvTask(turns="merged")
    assert {split: len(merged.load(split, folder)) for split in merged.splits} == EXPECTED_MERGED


def test_data_stats_cli(data_root):
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "data", "stats", "esconv", "--json"], capture_output=True, text=True, check=False,
                          env={**os.environ, "ESC_HARNESS_DATA": str(data_root)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == EXPECTED


def test_ids_unique_well_formed_and_split_tagged(real, folder):
    ids = [s.id for samples in real.values() for s in samples]
    assert len(ids) == len(set(ids))
    for split, samples in real.items():
        for s in samples:
            m = ID_RE.match(s.id)
            assert m and m.group(1) == split and m.group(3) == "u"
            assert int(m.group(2)) == s.labels["dialogue_id"]
    merged = ESConvTask(turns="merged").load("test", folder)
    assert all(ID_RE.match(s.id).group(3) == "t" for s in merged)
    assert len({s.id for s in merged}) == len(merged)


def test_load_is_deterministic_and_returns_fresh_lists(real, folder):
    again = ESConvTask().load("test", folder)
    assert [s.id for s in again] == [s.id for s in real["test"]]
    again.clear()
    assert len(ESConvTask().load("test", folder)) == EXPECTED["test"]


def test_first_test_sample_matches_the_file(real, folder):
    first_line = json.loads((folder / "test.json").read_text(encoding="utf-8").split("\n")[0])
    dialog = first_line["dialog"]
    assert dialog[0]["speaker"] == "sys" and dialog[1]["speaker"] == "usr" and dialog[2]["speaker"] == "sys"
    sample = real["test"][0]
    assert sample.id == "esconv/test/d0000/u02"
    assert sample.history == (Turn(speaker=SUPPORTER, text=dialog[0]["text"]), Turn(speaker=SEEKER, text=dialog[1]["text"]))
    assert sample.reference == dialog[2]["text"]
    assert sample.labels == {"dialogue_id": 0, "strategy": [dialog[2]["strategy"]], "emotion_type": first_line["emotion_type"],
                             "problem_type": first_line["problem_type"], "situation": first_line["situation"],
                             "experience_type": first_line["experience_type"]}


def test_labels_and_histories(real):
    for samples in real.values():
        for s in samples:
            assert len(s.labels["strategy"]) == 1 and s.labels["strategy"][0] in STRATEGIES
            assert s.history and s.reference
            speakers = [t.speaker for t in s.history]
            assert all(a != b for a, b in itertools.pairwise(speakers))  # turns alternate
            assert set(speakers) <= {SEEKER, SUPPORTER}
    emotions = {s.labels["emotion_type"] for s in real["test"]}
    assert {"anxiety", "depression", "sadness"} <= emotions


def test_build_request_and_parse_go_through_prompting(real):
    sample = real["test"][3]
    request = ESConvTask().build_request(sample)
    assert request.messages[0].role == "system" and request.messages[0].content == SYSTEM_PROMPT
    assert [m.content for m in request.messages[1:]] == [t.text for t in sample.history]
    assert [m.role for m in request.messages[1:]] == [{SEEKER: "user", SUPPORTER: "assistant"}[t.speaker] for t in sample.history]
    assert ESConvTask().parse_response("  Hi there.  ").response == "Hi there."

    fires = ESConvTask(prompt="fires")
    request = fires.build_request(sample)
    assert [m.role for m in request.messages] == ["system", "user"]
    assert request.messages[1].content.endswith("\nSupporter:") and request.messages[1].content.startswith(f"{sample.history[0].speaker}: ")
    parsed = fires.parse_response("<think> Emotion: sad. </think><response> I hear you. </response>")
    assert parsed.format_ok and parsed.response == "I hear you." and parsed.thinking == "Emotion: sad."
    assert not fires.parse_response("just text").format_ok


def test_shots_come_from_train_outside_the_dialogue(real, folder):
    task = ESConvTask(shots=2)
    task.load("test", folder)
    sample = real["test"][10]
    request = task.build_request(sample)
    assert "Here are 2 examples" in request.messages[0].content
    demos = [s for s in real["train"] if s.reference in request.messages[0].content]
    assert demos and all(s.id.startswith("esconv/train/") for s in demos)
    assert task.build_request(sample) == request  # deterministic


def test_bad_options():
    with pytest.raises(HarnessError, match="turns must be one of utterance, merged"):
        ESConvTask(turns="both")
    with pytest.raises(HarnessError, match="unknown prompt"):
        ESConvTask(prompt="cot")
    with pytest.raises(HarnessError, match="no split 'dev'"):
        ESConvTask().load("dev", Path("."))


# --------------------------------------------------------------------------- bad data


@pytest.mark.parametrize("name", ["train.json", "valid.json", "test.json", "strategy.json"])
def test_missing_file(name, data_root, tmp_path):
    target = copy_dataset(data_root, tmp_path)
    (target / name).unlink()
    with pytest.raises(DataError) as info:
        load_checked(tmp_path)
    assert str(target / name) in str(info.value) and "harness data fetch esconv" in str(info.value)


def test_load_itself_reports_a_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"test\.json: missing dataset file; get it with `harness data fetch esconv`"):
        ESConvTask().load("test", tmp_path)


def test_corrupted_file(data_root, tmp_path):
    target = copy_dataset(data_root, tmp_path)
    with open(target / "valid.json", "ab") as fh:
        fh.write(b"\n")
    with pytest.raises(DataError) as info:
        load_checked(tmp_path)
    assert "valid.json" in str(info.value) and "sha256" in str(info.value) and "--force" in str(info.value)


@pytest.fixture
def modified(data_root, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(datafiles.ALLOW_MODIFIED_ENV, "1")
    return copy_dataset(data_root, tmp_path)


def edit_line(path: Path, number: int, change) -> None:
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[number - 1] = change(lines[number - 1])
    path.write_text("\n".join(lines), encoding="utf-8")


def edit_dialogue(path: Path, number: int, change) -> None:
    def apply(line: str) -> str:
        obj = json.loads(line)
        change(obj)
        return json.dumps(obj)
    edit_line(path, number, apply)


def test_malformed_json_line(modified, tmp_path):
    path = modified / "test.json"
    edit_line(path, 42, lambda line: line[:-1])  # drop the closing brace
    with pytest.raises(DataError) as info:
        load_checked(tmp_path)
    assert f"{path}:42: invalid JSON" in str(info.value)


def test_blank_lines_keep_line_numbers(modified, tmp_path):
    path = modified / "test.json"
    lines = path.read_text(encoding="utf-8").split("\n")
    lines.insert(3, "")
    lines[9] = "{not json"  # physical line 10
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataError, match=r"test\.json:10: invalid JSON"):
        load_checked(tmp_path)


def test_blank_line_alone_is_harmless(modified, tmp_path):
    path = modified / "test.json"
    path.write_text(path.read_text(encoding="utf-8").replace("\n", "\n\n", 1) + "\n", encoding="utf-8")
    samples = load_checked(tmp_path)
    assert len(samples) == EXPECTED["test"]
    assert samples[-1].id.startswith("esconv/test/d0194/")  # ids count dialogues, not lines


def test_missing_field(modified, tmp_path):
    path = modified / "test.json"
    edit_dialogue(path, 5, lambda obj: obj.pop("situation"))
    with pytest.raises(DataError, match=r"test\.json:5: dialogue lacks situation"):
        load_checked(tmp_path)


def test_unknown_speaker(modified, tmp_path):
    path = modified / "valid.json"
    edit_dialogue(path, 7, lambda obj: obj["dialog"][3].update(speaker="bot"))
    with pytest.raises(DataError, match=r"valid\.json:7: dialog\[3\] must be"):
        load_checked(tmp_path, "val")


def test_unknown_strategy(modified, tmp_path):
    path = modified / "train.json"
    def change(obj):
        k = next(i for i, u in enumerate(obj["dialog"]) if u["speaker"] == "sys")
        obj["dialog"][k]["strategy"] = "Hugging"
    edit_dialogue(path, 100, change)
    with pytest.raises(DataError, match=r"train\.json:100: dialog\[\d+\] has strategy 'Hugging', not one of strategy\.json's"):
        load_checked(tmp_path, "train")


def test_not_an_object(modified, tmp_path):
    edit_line(modified / "test.json", 2, lambda line: "[1, 2]")
    with pytest.raises(DataError, match=r"test\.json:2: expected a JSON object"):
        load_checked(tmp_path)


def test_bad_strategy_file(modified, tmp_path):
    (modified / "strategy.json").write_text('["Question"]', encoding="utf-8")
    with pytest.raises(DataError, match=r"strategy\.json: expected a JSON list of strategy names in brackets"):
        load_checked(tmp_path)
    (modified / "strategy.json").write_text('[\n"[Question]",\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"strategy\.json:3: invalid JSON"):
        load_checked(tmp_path)


def test_empty_file(modified, tmp_path):
    (modified / "test.json").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"test\.json: no dialogues"):
        load_checked(tmp_path)


# --------------------------------------------------------------------------- a run


def test_retrieval_run_finishes(tmp_path, data_root):
    result = run(RunConfig(task="esconv", model="retrieval", limit=10, metrics=["bleu-2", "rouge-l"], output_dir=tmp_path, data_dir=data_root, resamples=0))
    assert result.summary.n == 10
    assert set(result.summary.metrics) == {"bleu-2", "rouge-l"}
    records = [json.loads(line) for line in (result.run_dir / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in records] == [s.id for s in ESConvTask().load("test", data_root / "esconv")[:10]]
    assert all(r["response"] for r in records)
