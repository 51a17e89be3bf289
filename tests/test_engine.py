"""The engine without a dataset: runner, resume, cache, scoring, model-graded scoring and the dialogue engine,
driven by in-memory tasks (tests/engine_fixtures.py: `Dataset(files=())`, samples built in code) and the
scripted model. Every expected number is worked out by hand from the texts in engine_fixtures."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import registry, store
from harness.contract import RunHeader, SampleRecord, Summary
from harness.errors import HarnessError
from harness.lifecycle import ModelSpec
from harness.runner import RunConfig, regrade, run

import engine_fixtures as fx
from engine_fixtures import DIALOGUE, FLAKY, HELPFUL, LENGTH, QUESTIONS, RECORDING, SLOW, TASK, TEXTS, USAGE

fx.register()

TESTS_DIR = Path(__file__).resolve().parent
# the echo model answers each sample's last turn, so the responses are TEXTS: their lengths in characters
LENGTHS = [20.0, 24.0, 24.0, 30.0, 15.0, 21.0]  # sum 134
QUESTION_MARKS = 3  # TEXTS 1, 3 and 5 are questions
JUDGE_SCRIPT = ["Rating: 4", "Rating: 2", "I cannot rate this.", "Rating: 5"]  # ratings 4, 2, missing, 5: mean 11/3


@pytest.fixture(autouse=True)
def _fresh_plugins():
    """Each test starts from the fixtures' registrations (a test may swap a model for a healthy one)."""
    fx.register()
    yield
    fx.register()


def cfg(tmp_path, **kw) -> RunConfig:
    base = dict(task=TASK, model="scripted", model_args={"echo": True}, split="test", metrics=[LENGTH, QUESTIONS],
                output_dir=tmp_path / "runs", data_dir=tmp_path, cache_path=tmp_path / "c.sqlite", resamples=0)
    base.update(kw)
    return RunConfig(**base)


def resume_cfg(tmp_path, **kw) -> RunConfig:
    base = dict(task="", model="", split="", data_dir=tmp_path, cache_path=tmp_path / "c.sqlite", resamples=0)
    base.update(kw)
    return RunConfig(**base)


def header_of(run_dir) -> RunHeader:
    return RunHeader.model_validate_json((run_dir / "run.json").read_text())


def records_of(run_dir) -> list[SampleRecord]:
    return [SampleRecord.model_validate_json(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


def summary_json(run_dir) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def only_folder(parent: Path) -> Path:
    folders = [p for p in parent.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


# --------------------------------------------------------------------------- 1. a single-turn run


def test_single_turn_run_writes_the_hand_computed_values(tmp_path):
    result = run(cfg(tmp_path))
    header = header_of(result.run_dir)
    assert (header.status, header.error, header.n_samples) == ("finished", None, 6)
    assert header.finished_at and header.run_id == result.run_dir.name and result.run_dir.parent == tmp_path / "runs"
    assert (header.task, header.model, header.model_args, header.split, header.seed, header.limit) == (TASK, "scripted", {"echo": True}, "test", 0, None)
    assert header.metrics == [LENGTH, QUESTIONS]
    assert header.data == {} and header.roles == {} and header.prompt_version is None and header.source is None
    assert header.model_identity == {"script": [], "echo": True, "default": None}

    records = records_of(result.run_dir)
    assert [r.index for r in records] == [0, 1, 2, 3, 4, 5]
    assert [r.id for r in records] == [f"mem/test/{i}" for i in range(6)]
    assert [r.output for r in records] == [r.response for r in records] == list(TEXTS)
    assert [r.scores for r in records] == [{LENGTH: v} for v in LENGTHS]  # per-sample metrics only
    assert all(r.labels == {"i": r.index} and r.reference == "I hear you." and len(r.history) == 3 for r in records)

    summary = Summary.model_validate_json((result.run_dir / "summary.json").read_text())
    assert summary.n == 6
    assert summary.metrics == {LENGTH: pytest.approx(134 / 6), QUESTIONS: 3.0}
    assert summary.intervals == {} and summary.bootstrap == {}  # resamples=0: no intervals
    assert (summary.format_errors, summary.usage, summary.missing) == (0, {}, {})
    assert summary.metric_info[LENGTH]["description"] == "response length in characters"
    assert (result.model_calls, result.cache_hits, result.resumed_samples) == (6, 0, 0)

    again = run(cfg(tmp_path))  # the same run again, the same cache: every answer is a hit
    assert again.run_dir != result.run_dir
    assert (again.model_calls, again.cache_hits, again.resumed_samples) == (0, 6, 0)
    assert [r.output for r in records_of(again.run_dir)] == list(TEXTS)
    assert summary_json(again.run_dir) == summary_json(result.run_dir)


def test_limit_seed_and_bootstrap_intervals(tmp_path):
    fx.RecordingEcho.seen = []
    result = run(cfg(tmp_path, model=RECORDING, model_args={}, limit=4, seed=3, resamples=200))
    # the model is asked the last turn of the first 4 samples, with the task's settings and the run's seed
    assert [[(m.role, m.content) for m in r.messages] for r in fx.RecordingEcho.seen] == [
        [("system", "Be kind."), ("user", text)] for text in TEXTS[:4]]
    assert [(r.generation.seed, r.generation.max_tokens) for r in fx.RecordingEcho.seen] == [(3, 32)] * 4
    header = header_of(result.run_dir)
    assert (header.n_samples, header.limit, header.seed) == (4, 4, 3)
    summary = result.summary
    assert summary.metrics == {LENGTH: 24.5, QUESTIONS: 2.0}  # (20+24+24+30)/4; TEXTS 1 and 3
    assert set(summary.intervals) == {LENGTH, QUESTIONS}
    low, high = summary.intervals[LENGTH]
    assert 20.0 <= low <= 24.5 <= high <= 30.0  # a mean of resampled lengths stays within them
    low, high = summary.intervals[QUESTIONS]
    assert 0.0 <= low <= 2.0 <= high <= 4.0
    assert (summary.bootstrap["resamples"], summary.bootstrap["seed"]) == (200, 3)
    # the same seed: the same resamples, every answer from the cache
    again = run(cfg(tmp_path, model=RECORDING, model_args={}, limit=4, seed=3, resamples=200))
    assert (again.model_calls, again.cache_hits, again.summary) == (0, 4, summary)
    # another seed is another request (the seed is part of the cache key) and other resamples
    other = run(cfg(tmp_path, model=RECORDING, model_args={}, limit=4, seed=4, resamples=200))
    assert (other.model_calls, other.cache_hits) == (4, 0)
    assert other.summary.metrics == summary.metrics and other.summary.bootstrap["seed"] == 4


def test_the_summary_follows_the_split_order_not_the_file_order(tmp_path):
    """A dialogue run writes its records as the dialogues finish; the summary (and its intervals, which resample
    by position) must be that of the split order all the same."""
    made = run(cfg(tmp_path, resamples=200))
    lines = (made.run_dir / "samples.jsonl").read_text().splitlines()
    (made.run_dir / "samples.jsonl").write_text("".join(line + "\n" for line in reversed(lines)))
    (made.run_dir / "summary.json").unlink()
    store.write_json(made.run_dir / "run.json", header_of(made.run_dir).model_copy(update={"status": "running", "finished_at": None}))
    resumed = run(resume_cfg(tmp_path, resamples=200), resume=made.run_dir)
    assert (resumed.resumed_samples, resumed.model_calls, resumed.cache_hits) == (6, 0, 0)
    assert [r.index for r in records_of(made.run_dir)] == [5, 4, 3, 2, 1, 0]
    assert resumed.summary == made.summary and set(made.summary.intervals) == {LENGTH, QUESTIONS}


# --------------------------------------------------------------------------- 2. a failing model, then resume


@pytest.mark.parametrize("use_cache", [False, True])
def test_corpus_features_are_computed_once_as_the_answers_come_in(tmp_path, monkeypatch, use_cache):
    """Each batch's pairs get the corpus metrics' features when the batch is scored, before it is written; the
    summary reuses them (with 200 resamples, which re-read each pair) and computes only those of samples from
    an earlier session."""
    from harness import runner

    monkeypatch.setattr(runner, "SCORE_BATCH", 2)
    metric = fx.QuestionShare(runs=tmp_path / "runs")
    registry.metrics.register(fx.QuestionShare.name, metric)
    result = run(cfg(tmp_path, metrics=[LENGTH, fx.QuestionShare.name], use_cache=use_cache, resamples=200))
    assert sorted(metric.calls) == sorted(TEXTS)  # once per pair, none again in the summary
    assert metric.written == [0, 0, 2, 2, 4, 4]  # batch by batch, not once all six were written
    assert summary_json(result.run_dir)["metrics"][fx.QuestionShare.name] == 50.0

    metric.calls.clear()  # a run stopped after two answers, then resumed
    failing = cfg(tmp_path / "again", model=FLAKY, model_args={"ok": 2}, metrics=[LENGTH, fx.QuestionShare.name], use_cache=use_cache)
    with pytest.raises(RuntimeError, match="boom"):
        run(failing)
    registry.models.register(FLAKY, fx.HealthyEcho)
    resumed = run(resume_cfg(tmp_path / "again", use_cache=use_cache), resume=only_folder(tmp_path / "again" / "runs"))
    assert summary_json(resumed.run_dir)["metrics"][fx.QuestionShare.name] == 50.0
    # the first session's two pairs: computed again by the summary without a cache, read from the score cache with one
    assert len(metric.calls) == (6 if use_cache else 8) and sorted(set(metric.calls)) == sorted(TEXTS)


def test_a_failing_corpus_feature_fails_the_summary_after_every_record_is_written(tmp_path):
    registry.metrics.register(fx.QuestionShare.name, fx.QuestionShare(broken=True))
    with pytest.raises(RuntimeError, match="feature boom"):
        run(cfg(tmp_path, metrics=[LENGTH, fx.QuestionShare.name], use_cache=False))
    run_dir = only_folder(tmp_path / "runs")
    assert len(records_of(run_dir)) == 6 and header_of(run_dir).status == "failed"
    assert "feature boom" in header_of(run_dir).error and not (run_dir / "summary.json").exists()


def test_a_failing_model_marks_the_run_failed_without_its_secret_and_resume_finishes_it(tmp_path):
    reference = run(cfg(tmp_path / "ref", resamples=200))
    failing = cfg(tmp_path, model=FLAKY, model_args={"api_key": "secret-XYZ", "ok": 2}, resamples=200)
    with pytest.raises(RuntimeError, match="boom"):
        run(failing)
    run_dir = only_folder(tmp_path / "runs")
    header = header_of(run_dir)
    assert header.status == "failed" and header.finished_at is None
    assert header.error == "RuntimeError: boom <redacted>: connection reset"  # one line, the key blanked
    assert "\n" not in header.error and "secret-XYZ" not in header.error
    assert header.model_args == {"api_key": "<redacted>", "ok": 2}
    for path in run_dir.iterdir():
        assert b"secret-XYZ" not in path.read_bytes(), path.name
    written = records_of(run_dir)
    assert [r.index for r in written] == [0, 1]  # the two answers before the failure are kept
    assert not (run_dir / "summary.json").exists()

    # the secret is never stored: a resume without it is refused (and changes nothing)
    with pytest.raises(HarnessError, match="api_key") as caught:
        run(resume_cfg(tmp_path, resamples=200), resume=run_dir)
    assert "\n" not in str(caught.value) and header_of(run_dir).status == "failed"

    registry.models.register(FLAKY, fx.HealthyEcho)  # the server is back: same cache identity
    fx.HealthyEcho.watch, fx.HealthyEcho.headers_seen = run_dir / "run.json", []
    try:
        resumed = run(resume_cfg(tmp_path, model_args={"api_key": "secret-XYZ"}, resamples=200), resume=run_dir)
    finally:
        fx.HealthyEcho.watch = None
    # while it is worked on again the run is running, its old error gone (a kill now must not leave "failed")
    assert fx.HealthyEcho.headers_seen == [("running", None)] * 4
    assert resumed.run_dir == run_dir
    assert (resumed.resumed_samples, resumed.model_calls, resumed.cache_hits) == (len(written), 4, 0)
    header = header_of(run_dir)
    assert (header.status, header.error) == ("finished", None) and header.finished_at
    assert header.model_args == {"api_key": "<redacted>", "ok": 2}
    records = records_of(run_dir)
    assert sorted(r.id for r in records) == sorted(f"mem/test/{i}" for i in range(6)) and len(records) == 6
    assert summary_json(run_dir) == summary_json(reference.run_dir)
    for path in run_dir.iterdir():
        assert b"secret-XYZ" not in path.read_bytes(), path.name


# --------------------------------------------------------------------------- 3. kill -9, then resume

KILLED_RUN = r"""
import sys
tests, out, data, cache = sys.argv[1:5]
sys.path.insert(0, tests)
import engine_fixtures as fx
from harness import runner
fx.register()
runner.FLUSH_SECONDS = 0.1  # write finished samples often, so the kill lands between writes
runner.run(runner.RunConfig(task=fx.TASK, model=fx.SLOW, model_args={"delay": 0.05}, task_args={"size": 30},
                            metrics=[fx.LENGTH, fx.QUESTIONS], output_dir=out, data_dir=data, cache_path=cache, resamples=100),
           progress=False)
"""


def test_kill_9_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path):
    n = 30
    reference = run(cfg(tmp_path / "ref", task_args={"size": n}, resamples=100))
    cache = tmp_path / "kill.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(TESTS_DIR), str(tmp_path / "runs"), str(tmp_path), str(cache)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    samples = None
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            found = list((tmp_path / "runs").glob("*/samples.jsonl"))
            if found and found[0].read_bytes().count(b"\n") >= 1:
                samples = found[0]
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert samples is not None, "the run never wrote a sample"
    run_dir = samples.parent
    header = header_of(run_dir)
    assert (header.status, header.error, header.finished_at) == ("running", None, None)  # a kill leaves it running
    assert not (run_dir / "summary.json").exists()
    written = len(store.read_records(run_dir))  # a line cut by the kill is not counted
    assert 1 <= written < n

    registry.models.register(SLOW, fx.FastEcho)  # the same answers without the pause
    resumed = run(resume_cfg(tmp_path, cache_path=cache, resamples=100), resume=run_dir)
    assert resumed.resumed_samples == written
    assert resumed.model_calls + resumed.cache_hits == n - written  # finished samples are not asked again
    header = header_of(run_dir)
    assert (header.status, header.error) == ("finished", None)
    ids = [r.id for r in records_of(run_dir)]
    assert len(ids) == len(set(ids)) == n
    assert summary_json(run_dir) == summary_json(reference.run_dir)


# --------------------------------------------------------------------------- 4. resume refusals


def test_resume_refuses_options_that_contradict_the_run_and_accepts_the_same_ones(tmp_path):
    made = run(cfg(tmp_path, limit=3, seed=1, task_args={"size": 6}, use_cache=False))
    run_dir = made.run_dir
    assert made.summary.metrics == {LENGTH: pytest.approx(68 / 3), QUESTIONS: 1.0}  # 20, 24, 24; one question
    # as a kill leaves it: one sample written, no summary, still running
    first = (run_dir / "samples.jsonl").read_text().splitlines()[0]
    (run_dir / "samples.jsonl").write_text(first + "\n")
    (run_dir / "summary.json").unlink()
    store.write_json(run_dir / "run.json", header_of(run_dir).model_copy(update={"status": "running", "finished_at": None}))
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}

    base = dict(use_cache=False)
    refusals = [
        (dict(limit=2), "--limit 3"),
        (dict(seed=2), "--seed 1"),
        (dict(metrics=[LENGTH]), "--metrics"),
        (dict(metrics=[QUESTIONS, LENGTH]), "--metrics"),  # the order is part of the run
        (dict(task_args={"size": 5}), "--task-args size="),
        (dict(model_args={"echo": False}), "--model-args echo="),
        (dict(split="dev"), "--split"),
        (dict(task=DIALOGUE), "--task"),
        (dict(model=USAGE), "--model"),
    ]
    for given, option in refusals:
        with pytest.raises(HarnessError) as caught:
            run(resume_cfg(tmp_path, **{**base, **given}), resume=run_dir)
        message = str(caught.value)
        assert option in message and "\n" not in message, (given, message)
        assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before, given  # refused before touching anything

    same = resume_cfg(tmp_path, task=TASK, model="scripted", split="test", limit=3, seed=1, metrics=[LENGTH, QUESTIONS],
                      task_args={"size": 6}, model_args={"echo": True}, use_cache=False)
    resumed = run(same, resume=run_dir)
    assert (resumed.resumed_samples, resumed.model_calls) == (1, 2)
    header = header_of(run_dir)
    assert (header.status, header.n_samples, header.limit, header.seed) == ("finished", 3, 3, 1)
    assert [r.index for r in records_of(run_dir)] == [0, 1, 2]
    assert resumed.summary == made.summary
    # nothing given: the recorded configuration (a finished run is summarised again, nothing asked)
    again = run(resume_cfg(tmp_path, use_cache=False), resume=run_dir)
    assert (again.resumed_samples, again.model_calls, again.cache_hits) == (3, 0, 0)
    assert again.summary == made.summary and header_of(run_dir).status == "finished"


# --------------------------------------------------------------------------- 5. model-graded scoring


def judged(tmp_path, judge_script=JUDGE_SCRIPT, **kw) -> RunConfig:
    base = dict(task_args={"size": 4}, metrics=[LENGTH, HELPFUL], roles={"judge": ModelSpec("scripted", {"outputs": list(judge_script)})})
    base.update(kw)
    return cfg(tmp_path, **base)


def test_a_judged_metric_reads_the_graders_values_and_counts_the_unparseable(tmp_path):
    result = run(judged(tmp_path))
    summary = result.summary
    assert summary.metrics == {LENGTH: 24.5, HELPFUL: pytest.approx(11 / 3)}  # (4 + 2 + 5) / 3
    assert summary.missing == {HELPFUL: 1}
    records = records_of(result.run_dir)
    assert [r.outcome for r in records] == [
        {"rating": {"helpful": 4}, "rating_raw": {"helpful": "Rating: 4"}},
        {"rating": {"helpful": 2}, "rating_raw": {"helpful": "Rating: 2"}},
        {"rating": {"helpful": None}, "rating_raw": {"helpful": "I cannot rate this."}},
        {"rating": {"helpful": 5}, "rating_raw": {"helpful": "Rating: 5"}},
    ]
    assert [r.scores for r in records] == [{LENGTH: v} for v in LENGTHS[:4]]
    header = header_of(result.run_dir)
    assert set(header.roles) == {"judge"} and header.metrics == [LENGTH, HELPFUL]
    judge = header.roles["judge"]
    assert (judge.model, judge.model_args) == ("scripted", {"outputs": JUDGE_SCRIPT})
    assert judge.model_identity == {"script": JUDGE_SCRIPT, "echo": False, "default": None}
    assert (result.model_calls, result.cache_hits) == (8, 0)  # 4 answers, 4 judgements

    again = run(judged(tmp_path))  # same cache: neither the model nor the judge is asked
    assert (again.model_calls, again.cache_hits) == (0, 8)
    assert summary_json(again.run_dir) == summary_json(result.run_dir)
    assert [r.outcome for r in records_of(again.run_dir)] == [r.outcome for r in records]


def test_judge_tokens_are_counted_under_the_roles_prefix(tmp_path):
    script = ["Rating: 4", "Rating: 2 of 5", "unsure", "Rating: 5"]
    config = judged(tmp_path, model=USAGE, roles={"judge": ModelSpec(USAGE, {"outputs": script})})
    result = run(config)
    # model: prompt = completion = words of the text (5, 5, 5, 7); judge: prompt "How helpful is this reply? <text>"
    # (10, 10, 10, 12 words), completion the words of its answer (2, 4, 1, 2)
    assert [r.usage for r in records_of(result.run_dir)] == [
        {"prompt_tokens": p, "completion_tokens": p, "judge_prompt_tokens": jp, "judge_completion_tokens": jc}
        for p, jp, jc in ((5, 10, 2), (5, 10, 4), (5, 10, 1), (7, 12, 2))]
    assert result.summary.usage == {"prompt_tokens": 22, "completion_tokens": 22, "judge_prompt_tokens": 42, "judge_completion_tokens": 9}
    assert result.summary.metrics[HELPFUL] == pytest.approx(11 / 3) and result.summary.missing == {HELPFUL: 1}
    again = run(config)  # the cache keeps the tokens it was answered with
    assert (again.model_calls, again.summary.usage) == (0, result.summary.usage)


def test_a_role_a_single_turn_task_does_not_have_is_refused_in_one_line(tmp_path):
    seeker = {"seeker": ModelSpec("scripted", {"echo": True})}
    with pytest.raises(HarnessError) as caught:
        run(cfg(tmp_path, metrics=[LENGTH, HELPFUL], roles=seeker))  # a judged metric: its role is judge
    message = str(caught.value)
    assert "no role 'seeker'" in message and "judge" in message and "\n" not in message
    with pytest.raises(HarnessError) as caught:
        run(cfg(tmp_path, roles=seeker))  # no judged metric: no role at all
    message = str(caught.value)
    assert "single-turn" in message and "seeker" in message and "\n" not in message
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing left behind


# --------------------------------------------------------------------------- 6. the dialogue engine

DIALOGUE_ROLES = {"seeker": ModelSpec("scripted", {"default": "I feel alone."}), "judge": ModelSpec("scripted", {"default": "Rating: 3"})}
# "About <topic>, round 2: I feel alone." for work, family, exams, a breakup, loneliness
DIALOGUE_LENGTHS = [34.0, 36.0, 35.0, 39.0, 40.0]  # mean 36.8


def dialogue_cfg(tmp_path, **kw) -> RunConfig:
    base = dict(task=DIALOGUE, task_args={"size": 5}, metrics=[LENGTH, HELPFUL], roles=dict(DIALOGUE_ROLES), concurrency=3)
    base.update(kw)
    return cfg(tmp_path, **base)


def test_concurrent_dialogues_are_played_graded_and_scored(tmp_path):
    result = run(dialogue_cfg(tmp_path))
    records = sorted(records_of(result.run_dir), key=lambda r: r.index)
    assert [r.index for r in records] == [0, 1, 2, 3, 4]
    for record, topic, length in zip(records, fx.TOPICS, DIALOGUE_LENGTHS):
        assert record.id == f"mem-dialogue/test/{record.index}"
        assert [(t.role, t.text) for t in record.dialogue] == [
            ("seeker", "I feel alone."), ("supporter", f"About {topic}, round 1: I feel alone."),
            ("seeker", "I feel alone."), ("supporter", f"About {topic}, round 2: I feel alone.")]
        assert record.output == record.response == f"About {topic}, round 2: I feel alone."
        assert record.outcome == {"rounds": 2, "topic": topic, "rating": {"helpful": 3}, "rating_raw": {"helpful": "Rating: 3"}}
        assert record.scores == {LENGTH: length}
    assert result.summary.metrics == {LENGTH: pytest.approx(36.8), HELPFUL: 3.0} and result.summary.missing == {}
    header = header_of(result.run_dir)
    assert (header.status, header.error, header.n_samples, header.prompt_version) == ("finished", None, 5, "engine-test-v1")
    assert set(header.roles) == {"seeker", "judge"}
    assert header.roles["seeker"].model_args == {"default": "I feel alone."}
    assert header.roles["judge"].model_args == {"default": "Rating: 3"}
    assert (result.model_calls, result.cache_hits) == (25, 0)  # 10 replies, 10 seeker turns, 5 judgements

    again = run(dialogue_cfg(tmp_path))  # every turn and judgement replayed from the cache
    assert (again.model_calls, again.cache_hits) == (0, 25)
    assert summary_json(again.run_dir) == summary_json(result.run_dir)


def test_a_request_for_an_adapter_the_model_lacks_fails_the_dialogue_run_in_one_line(tmp_path):
    with pytest.raises(HarnessError) as caught:
        run(dialogue_cfg(tmp_path, task_args={"size": 5, "adapter": "lora-x"}))
    message = str(caught.value)
    assert "lora-x" in message and "\n" not in message
    run_dir = only_folder(tmp_path / "runs")
    header = header_of(run_dir)
    assert (header.status, header.error, header.finished_at) == ("failed", message, None)
    assert not (run_dir / "samples.jsonl").exists() or not (run_dir / "samples.jsonl").read_text()
    assert not (run_dir / "summary.json").exists()


def test_a_dialogue_run_without_the_shared_cache_resumes_from_its_own_calls_cache(tmp_path):
    """--no-cache: a dialogue run keeps its calls in the run folder (calls.sqlite), so a resume replays the
    turns of the dialogue that broke off instead of asking them again."""
    reference = run(dialogue_cfg(tmp_path / "ref", concurrency=1, use_cache=False, resamples=200))
    # one dialogue at a time: dialogues 0 and 1 finish (2 model replies each), dialogue 2's first reply fails
    failing = dialogue_cfg(tmp_path, model=FLAKY, model_args={"ok": 4}, concurrency=1, use_cache=False, resamples=200)
    with pytest.raises(RuntimeError, match="boom"):
        run(failing)
    run_dir = only_folder(tmp_path / "runs")
    assert header_of(run_dir).status == "failed" and not (tmp_path / "c.sqlite").exists()
    assert sorted(r.index for r in records_of(run_dir)) == [0, 1]
    # 2 x (2 seeker turns, 2 replies, 1 judgement) + dialogue 2's first seeker turn
    with sqlite3.connect(run_dir / "calls.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 11
    registry.models.register(FLAKY, fx.HealthyEcho)
    resumed = run(resume_cfg(tmp_path, use_cache=False, concurrency=1, resamples=200), resume=run_dir)
    # dialogue 2: its first seeker turn replayed, 2 replies + 1 seeker turn + 1 judgement asked; 3 and 4: 5 calls each
    assert (resumed.resumed_samples, resumed.model_calls, resumed.cache_hits) == (2, 14, 1)
    assert header_of(run_dir).status == "finished"
    assert summary_json(run_dir) == summary_json(reference.run_dir)


# --------------------------------------------------------------------------- 7. regrade

NEW_JUDGE = ModelSpec("scripted", {"outputs": ["Rating: 1", "Rating: 1", "Rating: 2", "Rating: 5"]})  # mean 9/4


def test_regrade_writes_a_new_run_with_the_new_judges_grades_and_leaves_the_source_alone(tmp_path):
    source = run(judged(tmp_path))
    before = {p.name: p.read_bytes() for p in source.run_dir.iterdir()}
    source_header = store.read_header(source.run_dir)
    source_records = store.read_records(source.run_dir)
    result = regrade(source_header, source_records, [HELPFUL], {"judge": NEW_JUDGE}, tmp_path / "regraded", "re-judged in a test",
                     cache_path=tmp_path / "c.sqlite", resamples=0, progress=False)
    assert {p.name: p.read_bytes() for p in source.run_dir.iterdir()} == before  # the source is never changed
    assert result.run_dir.parent == tmp_path / "regraded" and result.run_dir != source.run_dir
    header = header_of(result.run_dir)
    assert (header.source, header.status, header.error) == ("re-judged in a test", "finished", None)
    assert header.run_id == result.run_dir.name != source_header.run_id
    assert (header.task, header.model, header.split, header.seed, header.n_samples) == (TASK, "scripted", "test", 0, 4)
    assert header.metrics == [HELPFUL]
    assert header.roles["judge"].model_args == NEW_JUDGE.model_args
    records = records_of(result.run_dir)
    assert [r.output for r in records] == [r.output for r in source_records]
    assert [r.outcome for r in records] == [{"rating": {"helpful": v}, "rating_raw": {"helpful": f"Rating: {v}"}} for v in (1, 1, 2, 5)]
    assert result.summary.metrics == {HELPFUL: 2.25} and result.summary.missing == {}
    assert summary_json(result.run_dir)["metrics"] == {HELPFUL: 2.25}
    assert (result.model_calls, result.cache_hits) == (4, 0)


def test_regrade_keeps_each_records_position_in_the_split(tmp_path):
    """A dialogue run's samples.jsonl holds its records in the order the dialogues finished, not in index
    order; re-grading must keep each sample's index (its place in the task's split order)."""
    source = run(judged(tmp_path))
    source_records = store.read_records(source.run_dir)
    shuffled = list(reversed(source_records))  # as a concurrent dialogue run may have written them
    result = regrade(store.read_header(source.run_dir), shuffled, [HELPFUL], {"judge": NEW_JUDGE}, tmp_path / "regraded",
                     "re-judged in a test", cache_path=tmp_path / "c.sqlite", resamples=0, progress=False)
    assert {r.id: r.index for r in records_of(result.run_dir)} == {r.id: r.index for r in source_records}


def test_the_cli_refuses_a_resume_whose_limit_contradicts_the_run(tmp_path):
    from click.testing import CliRunner

    from harness.cli import main

    common = ["--output-dir", str(tmp_path / "runs"), "--data-dir", str(tmp_path), "--cache", str(tmp_path / "c.sqlite")]
    made = CliRunner().invoke(main, ["run", "--task", TASK, "--model", "scripted", "--model-args", "echo=true", "--limit", "3",
                                     "--metrics", LENGTH, "--resamples", "0", *common])
    assert made.exit_code == 0, made.output
    run_dir = only_folder(tmp_path / "runs")
    before = (run_dir / "run.json").read_text()
    refused = CliRunner().invoke(main, ["run", "--resume", str(run_dir), "--limit", "2", *common])
    assert refused.exit_code == 2 and refused.stderr.splitlines() == [
        "error: --resume: the run was made with --limit 3, not 2; drop --limit or start a new run."]
    assert (run_dir / "run.json").read_text() == before
    again = CliRunner().invoke(main, ["run", "--resume", str(run_dir), "--limit", "3", *common])
    assert again.exit_code == 0 and "3 samples" in again.stdout


def test_a_regrade_that_fails_leaves_a_failed_folder_not_a_running_one(tmp_path):
    source = run(judged(tmp_path))
    with pytest.raises(RuntimeError, match="boom"):
        regrade(store.read_header(source.run_dir), store.read_records(source.run_dir), [HELPFUL], {"judge": ModelSpec(FLAKY, {"ok": 0})},
                tmp_path / "regraded", "note", use_cache=False, resamples=0, progress=False)
    header = header_of(only_folder(tmp_path / "regraded"))
    assert (header.status, header.error) == ("failed", "RuntimeError: boom None: connection reset")
