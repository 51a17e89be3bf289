"""`harness train fires-synth`: the FIRES thinking data, made with a scripted teacher on the first MESC train
instances (d0000 t01/t03/t05/t07: "Told me what?", "I'm not sorry at all.", "Like what?", "And it isn't?")."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from baselines.fires import data, demonstrations, synth
from baselines.fires.synth import fires_synth, read_answer
from conftest import default_sigint
from harness import registry
from harness.cli import main
from harness.models.scripted import ScriptedModel

REPO = Path(__file__).resolve().parents[1]
T01, T03, T05, T07 = (f"mesc/train/d0000/t{k:02d}" for k in (1, 3, 5, 7))
GOOD = "Response Strategy: I should listen."


@pytest.fixture(autouse=True)
def recipe(data_root):
    registry.recipes.register("fires-synth", fires_synth)
    yield
    registry.recipes._extra.pop("fires-synth", None)


@pytest.fixture
def teachers(monkeypatch):
    """Every scripted teacher the command opens (they record their requests)."""
    made = []
    original = ScriptedModel.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(ScriptedModel, "__init__", init)
    return made


def invoke(tmp_path, *args, outputs=None, default=None, out="out", teacher_args=None):
    if teacher_args is None:
        pieces = []
        if outputs is not None:
            script = tmp_path / f"script-{len(list(tmp_path.glob('script-*')))}.json"
            script.write_text(json.dumps(outputs))
            pieces.append(f"outputs={script}")
        if default is not None:
            pieces.append(f"default={default}")
        teacher_args = ",".join(pieces)
    argv = ["train", "fires-synth", "--teacher", "scripted", "--out", str(tmp_path / out)]
    if teacher_args:
        argv += ["--teacher-args", teacher_args]
    if "--frames-dir" not in args:
        argv += ["--frames-dir", "off"]
    return CliRunner().invoke(main, argv + list(args))


def rows_of(folder):
    return [data.SynthRow.model_validate_json(line) for line in (folder / data.ROWS).read_text().splitlines()]


def manifest_of(folder):
    return data.read_manifest(folder)


# --------------------------------------------------------------------------- the data


def test_flexible_rows_targets_statistics_and_requests(tmp_path, teachers):
    outputs = [
        "Thinking process:\nVisual Scene: Not helpful\nEmotion: Sadness, masked by irony.\nSituation: Unknown\n"
        "Response Strategy: I should ask her to say what she means.",
        "1. **Visual Scene:** The client is crying.\n2. **Emotion:** Ashamed of crying\n3. Situation: Not helpful\n"
        "4. Response Goal: Reassure her that her tears are welcome",
        "Sure! Here is the thinking.\nVisual Scene: Not helpful\nResponse Strategy: Ask.",  # t05: preamble, broken
        "Visual Scene: Not helpful Emotion: neutral Situation: She expected relief and feels let down. "
        "Response Strategy: I should check the gap between hope and experience.",
        "Emotion: Disappointed\nResponse Strategy: I should invite her to describe it.",  # t05's retry
    ]
    result = invoke(tmp_path, "--limit", "4", outputs=outputs)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out"
    rows = rows_of(folder)
    assert [r.id for r in rows] == [T01, T03, T05, T07] and [r.attempts for r in rows] == [1, 1, 2, 1]
    assert [r.target for r in rows] == [
        "<think> Emotion: Sadness, masked by irony. Situation: Unknown. Response Strategy: I should ask her to say what she means. "
        "</think><response> Told me what? </response>",
        "<think> Visual Scene: The client is crying. Emotion: Ashamed of crying. Response Strategy: Reassure her that her tears are "
        "welcome. </think><response> I'm not sorry at all. </response>",
        "<think> Emotion: Disappointed. Response Strategy: I should invite her to describe it. </think><response> Like what? </response>",
        "<think> Emotion: neutral. Situation: She expected relief and feels let down. Response Strategy: I should check the gap "
        "between hope and experience. </think><response> And it isn't? </response>",
    ]
    assert "Not helpful" not in rows[0].thinking and "Visual Scene" not in rows[0].thinking  # declined aspects are left out
    assert rows[0].teacher_output == outputs[0] and rows[0].aspects["declined"] == ["visual_scene"] and rows[0].aspects["situation_unknown"]
    assert rows[0].labels == {"client_emotion": ["sadness"], "emotion": ["neutral"], "strategy": ["Open question"]}
    assert rows[0].history[0].text == "I told you." and rows[0].reference == "Told me what?" and rows[0].images == []
    assert data.read_rows(folder)[1] == rows

    manifest = manifest_of(folder)
    assert (manifest.status, manifest.variant, manifest.instances, manifest.kept, manifest.dropped, manifest.retries) == \
        ("finished", "flexible", 4, 4, [], 1)
    assert manifest.teacher["model"] == "scripted" and manifest.data["files"]["MESC.csv"].startswith("0d93e6a7")
    assert manifest.config["demonstrations"] == [d.sample_id for d in demonstrations.DEMONSTRATIONS]
    assert manifest.statistics == {
        "rows": 4,
        "visual_scene": {"included": 0.25, "declined": 0.5, "absent": 0.25},
        "emotion": {"included": 1.0, "declined": 0.0, "absent": 0.0, "neutral": 0.25},
        "situation": {"included": 0.5, "declined": 0.25, "absent": 0.25, "unknown": 0.25},
        "response_strategy": {"included": 1.0, "declined": 0.0, "absent": 0.0},
    }
    assert "4 of 4 instances kept, 0 dropped, 1 retry; teacher requests this time: 5 (0 from the cache, 5 asked)" in result.output
    assert "Visual Scene       included 25.0%, declined 50.0%, absent 25.0%" in result.output
    assert result.output.strip().splitlines()[-1] == str(folder)

    (teacher,) = teachers
    requests = teacher.requests
    assert len(requests) == 5
    system, user = requests[0].messages
    assert system.role == "system" and user.role == "user" and not system.images and not user.images
    assert manifest.prompt_sha256 == synth.hashlib.sha256(system.content.encode()).hexdigest()
    for demo in demonstrations.DEMONSTRATIONS:  # the three demonstrations, with their data read by id
        assert demo.thinking["flexible"] in system.content
    assert "Client: And I've been thinking to myself... I've hated myself for 30 years." in system.content
    assert system.content.count("## Example ") == 3 and "Not helpful" in system.content and '"Unknown"' in system.content
    assert user.content == ("# New instance\nLabels: client's emotion (last client turn): sadness; therapist's emotion in the reply: "
                            "neutral; therapist's strategy in the reply: Open question\nKeyframes: none for this instance\n"
                            "Conversation history:\nClient: I told you.\nTherapist's response: Told me what?\nThinking process:")
    assert "therapist's strategy in the reply: Communication Skills" in requests[1].messages[1].content
    assert [(r.generation.temperature, r.generation.seed) for r in requests] == [(0.0, None)] * 4 + [(0.7, 1)]
    assert requests[4].messages == requests[2].messages  # the retry asks the same, at another temperature and seed


def test_a_broken_answer_is_retried_then_dropped_and_counted(tmp_path, teachers):
    outputs = ["Emotion: sad\nResponse: Told me what?",  # t01: a label that is no aspect
               "Response Strategy: I should reassure her.",  # t03
               "Emotion: sad",  # t01 retry 1: no strategy
               "Visual Scene: Not helpful\nResponse Strategy: Not helpful"]  # t01 retry 2: the strategy declined
    result = invoke(tmp_path, "--limit", "2", outputs=outputs)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out"
    assert [r.id for r in rows_of(folder)] == [T03]
    manifest = manifest_of(folder)
    assert (manifest.kept, manifest.retries, manifest.instances) == (1, 2, 2)
    assert manifest.dropped == [{"id": T01, "reason": "the Response Strategy is declined", "attempts": 3}]
    assert "1 of 2 instances kept, 1 dropped, 2 retries" in result.output and f"dropped {T01}: the Response Strategy is declined" in result.output
    assert [(r.generation.temperature, r.generation.seed) for r in teachers[0].requests] == [(0.0, None), (0.0, None), (0.7, 1), (0.7, 2)]
    # resumed: the dropped instance is not asked again
    again = invoke(tmp_path, "--limit", "2", outputs=outputs)
    assert again.exit_code == 0, again.stderr
    assert "teacher requests this time: 0" in again.output and manifest_of(folder).dropped == manifest.dropped


def test_fixed_needs_every_aspect_and_free_takes_prose(tmp_path, teachers):
    fixed = ["Visual Scene: Unknown\nEmotion: Sad\nSituation: Not helpful\nResponse Strategy: I should ask.",  # t01: declined
             "Visual Scene: Unknown\nEmotion: Ashamed\nSituation: She fears she burdened me.\nResponse Strategy: I should reassure her.",
             "Visual Scene: Unknown\nEmotion: Sad\nSituation: Unknown\nResponse Strategy: I should ask."]
    result = invoke(tmp_path, "--limit", "2", "--variant", "fixed", "--retries", "1", outputs=fixed, out="fixed")
    assert result.exit_code == 0, result.output
    rows = rows_of(tmp_path / "fixed")
    assert [r.thinking for r in rows] == ["Visual Scene: Unknown. Emotion: Sad. Situation: Unknown. Response Strategy: I should ask.",
                                          "Visual Scene: Unknown. Emotion: Ashamed. Situation: She fears she burdened me. "
                                          "Response Strategy: I should reassure her."]
    assert [r.attempts for r in rows] == [2, 1] and {r.variant for r in rows} == {"fixed"}
    assert demonstrations.DEMONSTRATIONS[0].thinking["fixed"] in teachers[-1].requests[0].messages[0].content
    assert "never write \"Not helpful\"" in teachers[-1].requests[0].messages[0].content

    free = ["<think> She is testing me. </think>",  # t01: tags
            "She fears she has been a burden. I'm not sorry at all, I should say.",  # t03: quotes the reply
            "**Thinking process:** She is testing me.\n\nI should ask what she means.",
            "She is ashamed of her tears.\n- I should tell her they are welcome."]
    result = invoke(tmp_path, "--limit", "2", "--variant", "free", "--retries", "1", outputs=free, out="free")
    assert result.exit_code == 0, result.output
    rows = rows_of(tmp_path / "free")
    assert [r.target for r in rows] == [
        "<think> She is testing me. I should ask what she means. </think><response> Told me what? </response>",
        "<think> She is ashamed of her tears. I should tell her they are welcome. </think><response> I'm not sorry at all. </response>"]
    system = teachers[-1].requests[0].messages[0].content
    assert demonstrations.DEMONSTRATIONS[2].thinking["free"] in system and "Visual Scene:" not in system
    assert manifest_of(tmp_path / "free").prompt_sha256 != manifest_of(tmp_path / "fixed").prompt_sha256


def test_reading_answers():
    paper_style = ("* Thinking process: 1. Visual Scene: None\n2. Emotion: depressed, guilty\n3. Situation: she blames herself.\n"
                   "4. Response Goal: Therefore, encourage self-forgiveness.")
    assert read_answer("flexible", paper_style, "x").thinking == ("Emotion: depressed, guilty. Situation: she blames herself. "
                                                                 "Response Strategy: Therefore, encourage self-forgiveness.")
    one_line = "1. Visual Scene: None 2. Emotion: sad 3. Situation: Not helpful 4. Response Strategy: Ask."
    assert read_answer("flexible", one_line, "x").thinking == "Emotion: sad. Response Strategy: Ask."
    assert read_answer("fixed", one_line, "x").reason == "Visual Scene declined (fixed describes every aspect)"
    assert read_answer("fixed", "Emotion: sad\nSituation: a\nResponse Strategy: b", "x").reason == "Visual Scene missing (fixed describes every aspect)"
    assert read_answer("flexible", "Emotion: sad\nEmotion: angry\nResponse Strategy: b", "x").reason == "Emotion given twice"
    assert read_answer("flexible", "Emotion: sad\nGoal: calm her\nResponse Strategy: b", "x").reason.startswith("line 2 has the label 'Goal'")
    assert read_answer("flexible", "Emotion: sad\nResponse Strategy: b\nand keep it short.", "x").thinking == \
        "Emotion: sad. Response Strategy: b and keep it short."  # a value may wrap onto the next line
    assert read_answer("flexible", "", "x").reason == "empty answer"
    assert read_answer("free", "Thinking process:", "x").reason == "empty answer"
    long = "You should have come here tonight."
    assert read_answer("flexible", f"Response Strategy: say '{long.upper()}'", long).reason == "quotes the therapist's reply"
    assert read_answer("flexible", "Response Strategy: say 'Told me what?'", "Told me what?").thinking  # short replies may recur


# --------------------------------------------------------------------------- frames


def _frames(root: Path, sample: str, n: int) -> list[str]:
    folder = root / sample.split("/", 1)[1]
    folder.mkdir(parents=True)
    names = [f"frame_{k:02d}.png" for k in range(n)]
    for k, name in enumerate(names):
        (folder / name).write_bytes(b"png %d" % k)
    (folder / "frames.json").write_text(json.dumps({"sample": sample, "frames": [{"file": name, "time": k} for k, name in enumerate(names)]}))
    return [str((folder / name).resolve()) for name in names]


def test_at_most_max_frames_evenly_spaced_go_to_the_teacher(tmp_path, teachers):
    root = tmp_path / "frames"
    many, two = _frames(root, T01, 20), _frames(root, T03, 2)  # t05: no frames
    result = invoke(tmp_path, "--limit", "3", "--frames-dir", str(root), "--max-frames", "4", default=GOOD)
    assert result.exit_code == 0, result.output
    requests = teachers[0].requests
    assert [[m.images for m in r.messages] for r in requests] == [
        [(), tuple(many[k] for k in (0, 6, 13, 19))], [(), tuple(two)], [(), ()]]
    assert "Keyframes: 4 attached to this message, in time order" in requests[0].messages[1].content
    assert "Keyframes: none for this instance" in requests[2].messages[1].content
    rows = rows_of(tmp_path / "out")
    assert rows[0].images == many and rows[0].teacher_images == [many[k] for k in (0, 6, 13, 19)]
    assert (rows[1].images, rows[1].teacher_images, rows[2].images, rows[2].teacher_images) == (two, two, [], [])
    assert manifest_of(tmp_path / "out").config["frames_dir"] == str(root.resolve())
    full = invoke(tmp_path, "--limit", "1", "--frames-dir", str(root), default=GOOD, out="capped")  # default cap: 16
    assert full.exit_code == 0 and len(rows_of(tmp_path / "capped")[0].teacher_images) == 16


# --------------------------------------------------------------------------- resuming


def test_resume_asks_only_the_missing_instances(tmp_path, teachers):
    first = invoke(tmp_path, "--limit", "4", default=GOOD)
    assert first.exit_code == 0 and "teacher requests this time: 4 (0 from the cache, 4 asked)" in first.output
    folder = tmp_path / "out"
    path = folder / data.ROWS
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3]))  # the last row deleted
    again = invoke(tmp_path, "--limit", "4", default=GOOD)
    assert again.exit_code == 0 and "teacher requests this time: 1 (1 from the cache, 0 asked)" in again.output
    assert path.read_text() == "".join(lines)
    # a torn last line (a kill mid-write) is cut off and its instance asked again; here without the cache
    path.write_text("".join(lines[:3]) + lines[3][:40])
    third = invoke(tmp_path, "--limit", "4", "--no-cache", default=GOOD)
    assert third.exit_code == 0 and "teacher requests this time: 1 (0 from the cache, 1 asked)" in third.output
    assert [r.id for r in rows_of(folder)] == [T01, T03, T05, T07] and path.read_text().endswith("\n")
    assert len(teachers[-1].requests) == 1 and "Therapist's response: And it isn't?" in teachers[-1].requests[0].messages[1].content
    finished = invoke(tmp_path, "--limit", "4", default=GOOD)
    assert finished.exit_code == 0 and "teacher requests this time: 0 (0 from the cache, 0 asked)" in finished.output
    assert manifest_of(folder).status == "finished" and manifest_of(folder).kept == 4


def test_a_killed_synthesis_resumes_without_asking_twice(tmp_path):
    script = tmp_path / "cli.py"
    script.write_text("import sys\nfrom harness import cli, registry\nfrom baselines.fires.synth import fires_synth\n"
                      "registry.recipes.register('fires-synth', fires_synth)\ncli.main(sys.argv[1:])\n")
    out, cache = tmp_path / "out", tmp_path / "cache.sqlite"
    argv = [sys.executable, str(script), "train", "fires-synth", "--teacher", "scripted", "--teacher-args", f"default={GOOD},delay=0.3",
            "--out", str(out), "--limit", "8", "--frames-dir", "off", "--cache", str(cache)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    rows = out / data.ROWS
    deadline = time.time() + 30
    while time.time() < deadline and child.poll() is None:
        if rows.is_file() and rows.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert child.returncode == -signal.SIGKILL
    on_disk = rows.read_bytes().count(b"\n")
    assert 2 <= on_disk < 8 and manifest_of(out).status == "running"
    resumed = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    assert f"teacher requests this time: {8 - on_disk} (" in resumed.stdout  # only the instances not on disk were asked
    ids = [r.id for r in rows_of(out)]
    assert len(ids) == 8 == len(set(ids)) and manifest_of(out).status == "finished"
    import sqlite3

    with sqlite3.connect(cache) as db:  # one cached answer per instance: none was asked twice with the same request
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 8


def test_resume_refuses_damage_and_other_settings(tmp_path):
    assert invoke(tmp_path, "--limit", "3", default=GOOD).exit_code == 0
    folder = tmp_path / "out"
    before = (folder / data.MANIFEST).read_text()
    refused = {
        "another teacher": invoke(tmp_path, "--limit", "3", default="Response Strategy: I should nod."),
        "--variant flexible, not fixed": invoke(tmp_path, "--limit", "3", "--variant", "fixed", default=GOOD),
        "limit = 3, not 2": invoke(tmp_path, "--limit", "2", default=GOOD),
        "max_frames = 16, not 8": invoke(tmp_path, "--limit", "3", "--max-frames", "8", default=GOOD),
    }
    for what, result in refused.items():
        assert result.exit_code == 2 and f"--out {folder} holds a fires-synth dataset made with {what}" in result.stderr, (what, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    path = folder / data.ROWS
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "{not json\n" + lines[2])
    damaged = invoke(tmp_path, "--limit", "3", default=GOOD)
    assert damaged.exit_code == 2 and f"{path}:2: not a fires-synth row" in damaged.stderr
    assert (folder / data.MANIFEST).read_text() == before  # refused before anything was written


# --------------------------------------------------------------------------- bad input


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    out = tmp_path / "out"
    cases = {
        "--variant 'flexy': choose one of flexible, fixed, free.": invoke(tmp_path, "--variant", "flexy", default=GOOD),
        "unknown model 'nope'": CliRunner().invoke(main, ["train", "fires-synth", "--teacher", "nope", "--out", str(out), "--frames-dir", "off"]),
        "scripted: outputs file": invoke(tmp_path, teacher_args=f"outputs={tmp_path / 'missing.json'}"),
        "model 'scripted' (teacher): bad --teacher-args": invoke(tmp_path, teacher_args="bogus=1"),
        "missing dataset file": invoke(tmp_path, "--data-dir", str(tmp_path / "empty"), default=GOOD),
        "--limit must be a positive number": invoke(tmp_path, "--limit", "0", default=GOOD),
    }
    monkeypatch.setattr(demonstrations, "DEMONSTRATIONS", (demonstrations.Demonstration("mesc/train/d9999/t01", "none", {}),))
    cases["the demonstration instance mesc/train/d9999/t01 is not in the MESC train split"] = invoke(tmp_path, default=GOOD)
    monkeypatch.undo()
    for message, result in cases.items():
        assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1, (message, result.stderr)
    assert not out.exists()
    (tmp_path / "file").write_text("x")
    as_file = invoke(tmp_path, default=GOOD, out="file")
    assert as_file.exit_code == 2 and "is a file; give a folder" in as_file.stderr
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    other = invoke(tmp_path, default=GOOD, out="other")
    assert other.exit_code == 2 and "not a fires-synth dataset" in other.stderr and os.listdir(tmp_path / "other") == ["notes.txt"]


def test_a_crash_marks_the_dataset_failed(tmp_path):
    result = invoke(tmp_path, "--limit", "4", outputs=[GOOD, GOOD])  # the script runs out on the third request
    assert result.exit_code == 2
    manifest = manifest_of(tmp_path / "out")
    assert manifest.status == "failed" and manifest.error.startswith("scripted: the script has 2 outputs") and "\n" not in manifest.error
    with pytest.raises(data.HarnessError, match="the synthesis is failed"):
        data.read_rows(tmp_path / "out")


def test_help_documents_every_setting():
    result = CliRunner().invoke(main, ["train", "fires-synth", "--help"])
    assert result.exit_code == 0
    for option in ("--teacher", "--teacher-args", "--out", "--variant", "--limit", "--data-dir", "--frames-dir", "--retries",
                   "--max-frames", "--cache", "--no-cache", "gpt-4o-2024-11-20", "16", "w/o-FleT", "w/o-All"):
        assert option in result.output, option
    assert "fires-synth" in CliRunner().invoke(main, ["list", "recipes"]).output
