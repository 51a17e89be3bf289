"""`harness train compeer-data` and `compeer-rewrite`: CER data made with a scripted teacher on the first ESConv
train dialogues (d0000-d0002), then augmented in the three modes with stub sentence embeddings."""
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from baselines.compeer import data, embed, persona, rewrite, sampling
from baselines.compeer.datagen import compeer_data
from baselines.compeer.rewrite import compeer_rewrite
from conftest import default_sigint
from harness import registry
from harness.cli import main
from harness.models.scripted import ScriptedModel
from harness.runner import load_samples, load_task
from tasks import prompting
from tasks.compeer_reasoning import render_output

REPO = Path(__file__).resolve().parents[1]
GOOD = render_output("She fears losing her job.", "exploration", "negative", "anxiety", "high", "open question",
                     "to learn what worries her most", "What makes you think you might lose it?")
GOOD_2 = render_output("Grief and stress.", "comforting", "negative", "sadness", "medium", "reflection of feelings",
                       "she needs to feel heard", "It sounds like this has weighed on you for a long time.")
BAD_TAGS = "Sure! I would say: What happened?"
BAD_STEPS = "<think>Step 1 (History): Core issue: work Stage: exploration</think><response> Tell me more. </response>"


@pytest.fixture(autouse=True)
def recipes(data_root):
    registry.recipes.register("compeer-data", compeer_data)
    registry.recipes.register("compeer-rewrite", compeer_rewrite)
    yield
    registry.recipes._extra.pop("compeer-data", None)
    registry.recipes._extra.pop("compeer-rewrite", None)


@pytest.fixture
def teachers(monkeypatch):
    """Every scripted teacher the commands open (they record their requests)."""
    made = []
    original = ScriptedModel.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(ScriptedModel, "__init__", init)
    return made


def _teacher_args(tmp_path, outputs=None, default=None):
    pieces = []
    if outputs is not None:
        script = tmp_path / f"script-{len(list(tmp_path.glob('script-*')))}.json"
        script.write_text(json.dumps(outputs))
        pieces.append(f"outputs={script}")
    if default is not None:
        pieces.append(f"default={default}")
    return ",".join(pieces)


def make_data(tmp_path, *args, outputs=None, default=None, out="cer"):
    argv = ["train", "compeer-data", "--teacher", "scripted", "--out", str(tmp_path / out), "--source", "esconv"]
    teacher_args = _teacher_args(tmp_path, outputs, default)
    if teacher_args:
        argv += ["--teacher-args", teacher_args]
    if "--limit-dialogues" not in args:
        argv += ["--limit-dialogues", "3"]
    return CliRunner().invoke(main, argv + list(args))


def rows_of(folder):
    return [data.CerRow.model_validate_json(line) for line in (folder / data.ROWS).read_text().splitlines()]


def manifest_of(folder):
    return data.CerManifest.model_validate_json((folder / data.MANIFEST).read_text())


def esconv_rounds(n_dialogues=3, n_s=3, seed=0):
    """The eq. 1 draws of the first dialogues: [(sample, round)], as compeer-data should ask them."""
    task = load_task("esconv", {"prompt": "compeer"})
    samples, _, _ = load_samples(task, "train", None, None)
    groups = sampling.dialogues_of(samples)
    drawn = []
    for key in list(groups)[:n_dialogues]:
        rounds = groups[key]
        drawn += [(rounds[n - 1], n) for n in sampling.sample_dialogue(key, len(rounds), n_s, seed)]
    return task, drawn


# --------------------------------------------------------------------------- compeer-data


def test_rows_are_the_eq1_draws_with_the_parsed_steps(tmp_path, teachers):
    result = make_data(tmp_path, "--seed", "7", default=GOOD)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "cer"
    task, drawn = esconv_rounds(seed=7)
    rows = rows_of(folder)
    assert [(r.id, r.round) for r in rows] == [(s.id, n) for s, n in drawn] and len(rows) == 9
    assert [(s.id, n) for s, n in drawn] != [(s.id, n) for s, n in esconv_rounds(seed=0)[1]]  # the seed matters
    first, (sample, _) = rows[0], drawn[0]
    assert (first.source, first.dialogue, first.history, first.original) == \
        ("esconv", "esconv/train/d0000", list(sample.history), sample.reference)
    assert first.steps == ["Core issue: She fears losing her job. Stage: exploration",
                           "Sentiment: negative; Emotion: anxiety; Intensity: high",
                           "Strategy: open question. Why: to learn what worries her most"]
    assert first.fields == {"core_issue": "She fears losing her job", "stage": "exploration", "sentiment": "negative", "emotion": "anxiety",
                            "intensity": "high", "strategy": "open question", "why": "to learn what worries her most"}
    assert first.response == "What makes you think you might lose it?" and first.teacher_output == GOOD
    assert first.annotations == data.Annotations() and first.augmentation is None
    assert data.read_rows(folder)[1] == rows

    (teacher,) = teachers
    assert [r.messages for r in teacher.requests] == [task.build_request(s).messages for s, _ in drawn]  # the task's own request
    assert teacher.requests[0].messages[0].content.startswith("You are the supporter in an online emotional support conversation")
    assert [r.generation for r in teacher.requests] == [task.build_request(s).generation for s, _ in drawn]
    manifest = manifest_of(folder)
    assert (manifest.status, manifest.recipe, manifest.dialogues, manifest.rows, manifest.dropped) == ("finished", "compeer-data", 3, 9, [])
    system = prompting.system_prompt(task.options, task.roles, task.system_prompt)
    assert manifest.prompt_sha256 == hashlib.sha256(json.dumps({"esconv": system}, sort_keys=True).encode()).hexdigest()
    assert manifest.config["rounds_per_dialogue"] == 3 and manifest.config["seed"] == 7 and manifest.config["sources"] == ["esconv"]
    assert manifest.data["esconv"]["files"]["train.json"].startswith("e401fc50") and manifest.teacher["model"] == "scripted"
    assert "9 of 9 sampled rounds kept (3 dialogues" in result.output and "teacher requests this time: 9 (0 from the cache, 9 asked)" in result.output


def test_a_malformed_answer_is_retried_then_dropped_and_counted(tmp_path, teachers):
    outputs = [BAD_TAGS, GOOD, BAD_STEPS,  # the three rounds of d0000
               BAD_TAGS, GOOD_2,  # retry 1 of rounds 1 and 3
               BAD_STEPS]  # retry 2 of round 1: dropped
    result = make_data(tmp_path, "--limit-dialogues", "1", outputs=outputs)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "cer"
    _, drawn = esconv_rounds(1)
    rows = rows_of(folder)
    assert [r.id for r in rows] == [drawn[1][0].id, drawn[2][0].id] and rows[1].fields["strategy"] == "reflection of feelings"
    manifest = manifest_of(folder)
    assert manifest.dropped == [{"id": drawn[0][0].id, "reason": "missing_step_2, missing_step_3", "attempts": 3,
                                 "malformed": ["missing_step_2", "missing_step_3"]}]
    assert manifest.rows == 2 and "2 of 3 sampled rounds kept" in result.output and "1 dropped, 3 retries" in result.output
    assert [(r.generation.temperature, r.generation.seed) for r in teachers[0].requests] == [(0.0, None)] * 3 + [(0.7, 1)] * 2 + [(0.7, 2)]
    assert teachers[0].requests[3].messages == teachers[0].requests[0].messages
    again = make_data(tmp_path, "--limit-dialogues", "1", outputs=outputs)  # the dropped round is not asked again
    assert again.exit_code == 0 and "teacher requests this time: 0" in again.output and manifest_of(folder).dropped == manifest.dropped


def test_resume_asks_only_the_missing_round(tmp_path, teachers):
    assert make_data(tmp_path, "--no-cache", default=GOOD).exit_code == 0
    folder = tmp_path / "cer"
    path = folder / data.ROWS
    lines = path.read_text().splitlines(keepends=True)
    missing = data.CerRow.model_validate_json(lines[4])
    path.write_text("".join(lines[:4] + lines[5:]))  # a row in the middle deleted
    again = make_data(tmp_path, "--no-cache", default=GOOD)
    assert again.exit_code == 0 and "teacher requests this time: 1 (0 from the cache, 1 asked)" in again.output
    (request,) = teachers[-1].requests
    assert request.messages[1].content.endswith(f"{missing.history[-1].speaker}: {missing.history[-1].text}\nSupporter:")
    assert sorted(r.id for r in rows_of(folder)) == sorted(data.CerRow.model_validate_json(x).id for x in lines)
    path.write_text("".join(lines[:8]) + lines[8][:30])  # a torn last line (a kill mid-write): cut off, asked again
    third = make_data(tmp_path, default=GOOD)
    assert third.exit_code == 0 and "teacher requests this time: 1 (" in third.output and path.read_text().endswith("\n")
    assert manifest_of(folder).status == "finished" and len(rows_of(folder)) == 9


def test_a_killed_run_resumes_without_asking_twice(tmp_path):
    script = tmp_path / "cli.py"
    script.write_text("import sys\nfrom harness import cli, registry\nfrom baselines.compeer.datagen import compeer_data\n"
                      "registry.recipes.register('compeer-data', compeer_data)\ncli.main(sys.argv[1:])\n")
    out, cache = tmp_path / "out", tmp_path / "cache.sqlite"
    argv = [sys.executable, str(script), "train", "compeer-data", "--teacher", "scripted", "--teacher-args", f"default={GOOD},delay=0.2",
            "--out", str(out), "--source", "esconv", "--limit-dialogues", "3", "--cache", str(cache)]
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
    assert 2 <= on_disk < 9 and manifest_of(out).status == "running"
    resumed = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    assert f"teacher requests this time: {9 - on_disk} (" in resumed.stdout  # only the rounds not on disk were asked
    ids = [r.id for r in rows_of(out)]
    assert len(ids) == 9 == len(set(ids)) and manifest_of(out).status == "finished"
    with sqlite3.connect(cache) as db:  # one cached answer per round: none was asked twice
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 9


# --------------------------------------------------------------------------- compeer-rewrite

ROLES = {"d0000": ("driver", "listener"), "d0001": ("driver", "talker"), "d0002": ("talker", "listener")}  # seeker, supporter
CENTRES = {"driver": 0, "talker": 1, "listener": 2}


def profile_answer(kind: str, who: str) -> str:
    return (f"**Dominance:** {'high' if kind == 'driver' else 'low'}, direct\nInfluence: {'high' if kind == 'talker' else 'low'}, lively\n"
            f"Steadiness: {'high' if kind == 'listener' else 'low'}, calm\nCompliance: moderate, careful\n"
            f"Profile: a {kind} ({who}).")


def stub_embed(texts):
    """Profiles: one of three far-apart centres (by the kind in their Profile line) plus a little noise; other
    texts: a bag of words (so a reworded turn stays close to its original)."""
    out = np.zeros((len(texts), 64))
    for i, text in enumerate(texts):
        noise = np.frombuffer(hashlib.sha256(text.encode()).digest(), dtype=np.uint8)[:64 // 2].astype(float) / 2550.0
        if text.startswith("Dominance:"):
            kind = next(k for k in CENTRES if f"Profile: a {k} " in text)
            out[i, 40 + CENTRES[kind]] = 10.0
            out[i, :32] += noise
        else:
            for word in text.lower().replace(",", " ").replace(".", " ").split():
                out[i, hashlib.sha256(word.encode()).digest()[0] % 40] += 1.0
    return out


@pytest.fixture
def stub_encoder():
    embed.set_default_encoder(embed.SentenceEncoder(embed=stub_embed, name="stub bag of words"))
    yield
    embed.set_default_encoder(None)


def rewrite_answer(d: rewrite.CerDialogue, change) -> str:
    """A numbered rewrite: the supporter's segments through `change`, the seeker's as they were."""
    return "\n".join(f"{k}. {t.speaker}: {change(t.text) if t.speaker == d.supporter else t.text}" for k, t in enumerate(d.segments, 1))


def run_rewrite(tmp_path, mode, out, outputs=None, default=None, *args, teacher=True):
    argv = ["train", "compeer-rewrite", "--data", str(tmp_path / "cer"), "--out", str(tmp_path / out), "--mode", mode]
    if teacher:
        argv += ["--teacher", "scripted", "--teacher-args", _teacher_args(tmp_path, outputs, default)]
    return CliRunner().invoke(main, argv + list(args))


@pytest.fixture
def cer(tmp_path):
    assert make_data(tmp_path, default=GOOD).exit_code == 0
    _, rows = data.read_rows(tmp_path / "cer")
    return rows, rewrite.dialogues_of(rows)


def test_persona_mode_clusters_draws_from_the_cluster_and_filters(tmp_path, teachers, stub_encoder, cer):
    rows, dialogues = cer
    assert [d.key.rsplit("/", 1)[1] for d in dialogues] == list(ROLES)
    assert any(len(g) > 1 for groups in dialogues[2].groups for g in groups)  # d0002's rows split a merged supporter turn
    profiles = [profile_answer(ROLES[d][i], f"{d} {p}") for d in ROLES for i, p in enumerate(("seeker", "supporter"))]
    warm = lambda text: "Well, " + text
    answers = [rewrite_answer(dialogues[0], warm),
               rewrite_answer(dialogues[1], lambda text: "As an AI, I think " + text),  # an LLM artefact: filtered out
               rewrite_answer(dialogues[2], warm)]
    result = run_rewrite(tmp_path, "persona", "p", profiles + answers)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "p"
    out_rows = rows_of(folder)
    added = out_rows[len(rows):]
    assert out_rows[:len(rows)] == rows and len(added) == 6  # d0000 and d0002: three rows each
    assert [r.id for r in added] == [f"{r.id}#persona" for r in rows if r.dialogue != dialogues[1].key]
    assert {r.augmentation for r in added} == {"persona"}
    # the supporter of d0000 (a listener) gets the other listener's profile (d0002's supporter), and back
    assert added[0].persona == persona.parse_profile(profiles[5]).to_dict() and added[3].persona == persona.parse_profile(profiles[1]).to_dict()
    source = {r.id: r for r in rows}
    for row in added:
        was = source[row.id.removesuffix("#persona")]
        assert (row.steps, row.fields, row.response, row.annotations, row.round, row.dialogue) == \
            (was.steps, was.fields, was.response, was.annotations, was.round, was.dialogue)  # carried over
        assert row.original == "Well, " + was.original
        assert [t.text for t in row.history if t.speaker == "Seeker"] == [t.text for t in was.history if t.speaker == "Seeker"]
    merged = next(r for r in added if r.dialogue == dialogues[2].key and r.round == 16)
    was = source[merged.id.removesuffix("#persona")]
    assert merged.history[8].text == " ".join("Well, " + piece for piece in
                                              [dialogues[2].segments[k].text for k in dialogues[2].groups[1][8]])
    assert was.history[8].text == " ".join(dialogues[2].segments[k].text for k in dialogues[2].groups[1][8])

    manifest = rewrite.RewriteManifest.model_validate_json((folder / data.MANIFEST).read_text())
    a = manifest.augmentation
    vectors = stub_embed([persona.parse_profile(p).text() for p in profiles])
    assert a["clustering"]["k"] == 3 == persona.cluster_profiles(vectors, range(1, 11), 0).k and a["clustering"]["sizes"] == [2, 2, 2]
    assert a["clustering"]["ks"] == [1, 2, 3, 4, 5, 6] and len(a["clustering"]["sse_per_k"]) == 6
    assert a["profiles"] == {"asked": 6, "readable": 6, "unreadable": 0}
    assert (a["planned"], a["kept"], a["added"], a["filter"]) == (3, 2, 6, {"asked": 3, "kept": 2, "dropped": {"llm_phrase": 1}})
    assert manifest.dropped == [{"id": dialogues[1].key, "reason": "turn 1 holds the LLM phrase 'as an ai'", "rule": "llm_phrase"}]
    assert (manifest.status, manifest.recipe, manifest.rows, manifest.config["mode"]) == ("finished", "compeer-rewrite", 15, "persona")
    assert [p["persona_of"] for p in a["personas"]] == [f"{dialogues[2].key}/supporter", f"{dialogues[2].key}/seeker", f"{dialogues[0].key}/supporter"]
    assert data.read_rows(folder)[1] == out_rows  # a CER folder like any other
    requests = teachers[1].requests  # (teachers[0] made the CER data)
    assert [r.messages[0].content for r in requests] == [persona.DISC_PROMPT] * 6 + [persona.REWRITE_PROMPT] * 3
    assert "Persona:\nDominance: low, direct" in requests[6].messages[1].content
    assert "filter dropped: llm_phrase 1" in result.output and "k = 3" in result.output
    again = run_rewrite(tmp_path, "persona", "p", profiles + answers)  # the same command again: from the cache
    assert again.exit_code == 0 and "teacher requests this time: 9 (9 from the cache, 0 asked)" in again.output
    assert rows_of(folder) == out_rows


def test_plain_and_duplicate_modes(tmp_path, teachers, stub_encoder, cer):
    rows, dialogues = cer
    answers = [rewrite_answer(d, lambda text: text + " Okay.") for d in dialogues]
    plain = run_rewrite(tmp_path, "plain", "r", answers)
    assert plain.exit_code == 0, plain.output
    added = rows_of(tmp_path / "r")[len(rows):]
    assert len(added) == len(rows) == 9 and {r.augmentation for r in added} == {"plain"} and {r.persona is None for r in added} == {True}
    assert [r.messages[0].content for r in teachers[1].requests] == [persona.PLAIN_REWRITE_PROMPT] * 3
    assert "Persona:" not in teachers[1].requests[0].messages[1].content and added[0].original == rows[0].original + " Okay."

    duplicate = run_rewrite(tmp_path, "duplicate", "d", teacher=False)
    assert duplicate.exit_code == 0, duplicate.output
    added = rows_of(tmp_path / "d")[len(rows):]
    assert len(added) == 9 and [r.model_copy(update={"id": r.id.removesuffix("#duplicate"), "augmentation": None}) for r in added] == rows
    assert {r.augmentation for r in added} == {"duplicate"} and len(teachers) == 2  # no teacher opened
    manifest = rewrite.RewriteManifest.model_validate_json((tmp_path / "d" / data.MANIFEST).read_text())
    assert (manifest.augmentation["added"], manifest.teacher, manifest.rows) == (9, {}, 18)


# --------------------------------------------------------------------------- bad input


def test_bad_input_is_one_line_and_writes_nothing(tmp_path, stub_encoder):
    unknown = make_data(tmp_path, "--source", "esconv,soulchat", default=GOOD, out="never")
    assert unknown.exit_code == 2 and "--source 'soulchat': choose from esconv, mesc" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1 and not (tmp_path / "never").exists()

    assert make_data(tmp_path, default=GOOD).exit_code == 0
    folder = tmp_path / "cer"
    before = (folder / data.MANIFEST).read_text()
    other = make_data(tmp_path, default=GOOD_2)  # resumed with another teacher
    assert other.exit_code == 2 and f"--out {folder} holds a compeer-data dataset made with another teacher ('scripted' with other default)" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1 and (folder / data.MANIFEST).read_text() == before
    setting = make_data(tmp_path, "--rounds-per-dialogue", "2", default=GOOD)
    assert setting.exit_code == 2 and "made with rounds_per_dialogue = 3, not 2" in setting.stderr

    again = run_rewrite(tmp_path, "plain", "r", default="1. Seeker: x")
    assert again.exit_code == 0, again.output  # (every rewrite unreadable: nothing added, all counted)
    assert rewrite.RewriteManifest.model_validate_json((tmp_path / "r" / data.MANIFEST).read_text()).augmentation["filter"]["dropped"] == {"unreadable": 3}
    refused = run_rewrite(tmp_path, "plain", "r", default="another")
    assert refused.exit_code == 2 and "holds a compeer-rewrite dataset made with another teacher" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    path = folder / data.ROWS
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "{not json\n" + "".join(lines[2:]))
    damaged = run_rewrite(tmp_path, "persona", "p", default="x")
    assert damaged.exit_code == 2 and f"{path}:2: not a CER row" in damaged.stderr and len(damaged.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "p").exists()
    resumed = make_data(tmp_path, default=GOOD)  # compeer-data refuses it too, before writing
    assert resumed.exit_code == 2 and f"{path}:2: not a CER row" in resumed.stderr and (folder / data.MANIFEST).read_text() == before
    cases = {
        "--mode persona needs --teacher": run_rewrite(tmp_path, "persona", "p", teacher=False),
        "--out": CliRunner().invoke(main, ["train", "compeer-rewrite", "--data", str(folder), "--out", str(folder), "--mode", "duplicate"]),
        "--k-max must be 1 or more": run_rewrite(tmp_path, "persona", "p", None, "x", "--k-max", "0"),
        "--rounds-per-dialogue must be 1 or more": make_data(tmp_path, "--rounds-per-dialogue", "0", default=GOOD, out="never"),
    }
    for message, result in cases.items():
        assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1, (message, result.stderr)
    assert not (tmp_path / "p").exists() and not (tmp_path / "never").exists()


def test_help_documents_every_setting():
    data_help = CliRunner().invoke(main, ["train", "compeer-data", "--help"]).output
    for option in ("--teacher", "--teacher-args", "--out", "--source", "--rounds-per-dialogue", "--seed", "--limit-dialogues", "--retries",
                   "--data-dir", "--cache", "--no-cache", "GPT-4o", "Qwen2.5-VL", "not reproduced"):
        assert option in data_help, option
    rewrite_help = CliRunner().invoke(main, ["train", "compeer-rewrite", "--help"]).output
    for option in ("--data", "--teacher", "--teacher-args", "--out", "--mode", "--participant", "--seed", "--k-max", "--min-similarity",
                   "--cache", "--no-cache", "UnifiReward-P", "UnifiReward-R", "UnifiReward-D"):
        assert option in rewrite_help, option
