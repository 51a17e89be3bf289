"""SAGE (`simulators/sage.py`): every branch of the sentient agent's state machine, played with a hand-written
`ask` (a script per role, checking who is asked in which order), then end to end through `harness.runner.run`
with the scripted model; the parser, the bands, the metrics and the engine's role handling."""
import json
import sqlite3

import numpy as np
import pytest

from harness import registry, uncertainty
from harness.contract import RunHeader, Sample, SampleRecord, ScoredPair, Summary
from harness.errors import HarnessError
from harness.models.scripted import ScriptedModel
from harness.runner import RoleConfig, RunConfig, run
from role_script import Script
from simulators.sage import (BAND_MOODS, FORMAT_REMINDER, REASON_TASK, REPLY_TASK, SUPPORTER_SYSTEM, SageTask, band,
                             is_chinese, parse_reasoning)

FIRST_SCENARIO = "sage/d3c386e4-1b4d-4568-8abf-4d60a4fec355"  # the first line of the profile file


def reasoning(change, thought="fine", feeling="calm"):
    return f"Thought: {thought}\nFeeling: {feeling}\nChange: {change}"


def seeker_script(changes, replies=None):
    """Reasoning then reply, per round."""
    replies = replies or [f"reply {i}" for i in range(len(changes))]
    out = []
    for i, (change, reply) in enumerate(zip(changes, replies)):
        out += [reasoning(change, thought=f"thought {i}"), reply]
    return out


EN = Sample(id="sage/en-1", history=(), reference="", labels={
    "player": "Name: Sam Lee. A 29-year-old night-shift nurse.",
    "scene": "SCENE-MARKER: Sam's partner moved out last week after five years together.",
    "main_cha": "Reserved", "cha_group": ["anxious", "proud"],
    "task": "HIDDEN-NEED-MARKER: wants to hear that it was not their fault",
    "first_talk": "I don't really know why I'm writing this.", "scenario_id": "en-1"})


@pytest.fixture(scope="module")
def scenarios(data_root):
    return SageTask().load("test", data_root / "sage")


def content(request):
    return "\n".join(m.content for m in request.messages)


# --------------------------------------------------------------------------- the state machine


def test_success_at_100_the_agent_still_says_its_last_words():
    ask = Script(model=[f"support {i}" for i in range(6)], seeker=seeker_script(["+10"] * 6))
    result = SageTask().play(EN, ask)
    assert ask.roles == ["model", "seeker", "seeker"] * 6 and ask.used_up()
    assert result.outcome == {"final_emotion": 100, "end": "success", "trajectory": [40, 50, 60, 70, 80, 90, 100], "rounds": 6,
                              "malformed_steps": 0, "language": "en", "max_turns": 10}
    assert len(result.turns) == 13
    assert (result.turns[-1].role, result.turns[-1].text, result.turns[-1].details) == ("seeker", "reply 5", {"emotion": 100})
    assert result.turns[0].model_dump() == {"role": "seeker", "text": EN.labels["first_talk"], "details": {"emotion": 40, "opening": True}}
    # the reaction is recorded on the supporter turn it reacts to
    assert result.turns[1].details == {"thought": "thought 0", "feeling": "calm", "attempts": 1, "change": 10, "emotion": 50, "band": "B"}
    assert result.turns[11].details == {"thought": "thought 5", "feeling": "calm", "attempts": 1, "change": 10, "emotion": 100, "band": "S"}
    assert [t.details["emotion"] for t in result.turns if t.role == "supporter"] == result.outcome["trajectory"][1:]
    # the last words are asked in the mood of the final band, with the last thought
    last_reply = ask.requests("seeker")[-1]
    assert last_reply.messages[0].content == REPLY_TASK["en"].format(mood=BAND_MOODS["en"]["S"], thought="thought 5")


def test_failure_below_10_and_exactly_10_goes_on():
    ask = Script(model=["a", "b", "c", "d"], seeker=seeker_script(["-10", "-10", "-10", "-1"]))
    result = SageTask().play(EN, ask)
    assert ask.roles == ["model", "seeker", "seeker"] * 4 and ask.used_up()
    assert result.outcome["end"] == "failure" and result.outcome["trajectory"] == [40, 30, 20, 10, 9]
    assert result.outcome["final_emotion"] == 9 and result.outcome["rounds"] == 4
    assert [t.details["band"] for t in result.turns if t.role == "supporter"] == ["C", "C", "C", "F"]
    assert result.turns[-1].role == "seeker" and result.turns[-1].text == "reply 3"  # last words, in band F
    assert ask.requests("seeker")[-1].messages[0].content.startswith(REPLY_TASK["en"].split("{mood}")[0] + BAND_MOODS["en"]["F"])


def test_goodbye_ends_the_dialogue_and_the_marker_is_stripped():
    # [END] from the model under test is not the agent's goodbye
    ask = Script(model=["Take care [END]", "Bye then"], seeker=seeker_script(["+2", "-3"], ["Thanks.", "I have to go now. Bye [END]"]))
    result = SageTask().play(EN, ask)
    assert ask.roles == ["model", "seeker", "seeker"] * 2 and ask.used_up()
    assert result.outcome["end"] == "goodbye" and result.outcome["trajectory"] == [40, 42, 39] and result.outcome["final_emotion"] == 39
    assert result.turns[-1].text == "I have to go now. Bye" and result.turns[-1].details == {"emotion": 39}
    assert result.turns[1].text == "Take care [END]"


def test_success_wins_over_goodbye():
    ask = Script(model=["x"] * 6, seeker=seeker_script(["+10"] * 6, [f"r{i}" for i in range(5)] + ["Thank you so much [END]"]))
    result = SageTask().play(EN, ask)
    assert result.outcome["end"] == "success" and result.turns[-1].text == "Thank you so much"


@pytest.mark.parametrize("max_turns", [2, 3, 5])
def test_turn_limit_counts_the_agent_turns_with_the_opening(max_turns):
    replies = max_turns - 1
    ask = Script(model=[f"m{i}" for i in range(replies)], seeker=seeker_script(["+1"] * replies))
    result = SageTask(max_turns=max_turns).play(EN, ask)
    # no unscored extra model reply after the agent's last turn
    assert ask.roles == ["model", "seeker", "seeker"] * replies and ask.used_up()
    assert result.outcome["end"] == "turn_limit" and result.outcome["rounds"] == replies and result.outcome["max_turns"] == max_turns
    assert result.outcome["trajectory"] == [40 + i for i in range(max_turns)]
    assert [t.role for t in result.turns] == ["seeker"] + ["supporter", "seeker"] * replies
    assert sum(t.role == "seeker" for t in result.turns) == max_turns


def test_a_stated_change_is_clamped_to_ten_and_recorded():
    ask = Script(model=["a", "b", "c"], seeker=seeker_script(["+25", "-30", "+10"]))
    result = SageTask(max_turns=4).play(EN, ask)
    first, second, third = (t.details for t in result.turns if t.role == "supporter")
    assert (first["change"], first["stated_change"], first["emotion"]) == (10, 25, 50)
    assert (second["change"], second["stated_change"], second["emotion"]) == (-10, -30, 40)
    assert third["change"] == 10 and "stated_change" not in third and third["emotion"] == 50
    assert result.outcome["trajectory"] == [40, 50, 40, 50]


def test_emotion_is_kept_within_0_and_100():
    up = Script(model=["m"] * 7, seeker=seeker_script(["+10"] * 5 + ["+5", "+10"]))
    result = SageTask().play(EN, up)
    assert result.outcome["trajectory"] == [40, 50, 60, 70, 80, 90, 95, 100]  # 95 + 10 stops at 100
    assert result.outcome["end"] == "success" and result.outcome["final_emotion"] == 100
    down = Script(model=["m"] * 4, seeker=seeker_script(["-10"] * 4))
    result = SageTask().play(EN, down)
    assert result.outcome["trajectory"] == [40, 30, 20, 10, 0] and result.outcome["end"] == "failure"


def test_malformed_reasoning_is_retried_with_one_more_reminder_each_time_then_recorded():
    seeker = ["I don't know.", "Still thinking...", "hmm, 5", "Whatever.",  # round 1: three unreadable steps
              "no number here", reasoning("+3", thought="better"), "Okay."]  # round 2: the retry succeeds
    ask = Script(model=["first", "second"], seeker=seeker)
    task = SageTask(max_turns=3, retries=2)
    result = task.play(EN, ask)
    assert ask.roles == ["model", "seeker", "seeker", "seeker", "seeker", "model", "seeker", "seeker", "seeker"] and ask.used_up()
    first_round = ask.requests("seeker")[:3]
    assert [len(r.messages) for r in first_round] == [2, 3, 4]
    for reminders, request in enumerate(first_round):
        assert request.messages[:2] == first_round[0].messages[:2]
        assert [m.content for m in request.messages[2:]] == [FORMAT_REMINDER["en"]] * reminders
        assert all(m.role == "user" for m in request.messages[1:])
    assert len(set(first_round)) == 3  # each retry is a different request (the cache would repeat the answer)
    assert result.turns[1].details == {"thought": "hmm, 5", "feeling": "", "attempts": 3, "malformed": True, "raw": "hmm, 5",
                                       "change": 0, "emotion": 40, "band": "B"}
    assert ask.requests("seeker")[3].messages[0].content == REPLY_TASK["en"].format(mood=BAND_MOODS["en"]["B"], thought="hmm, 5")
    assert result.turns[3].details == {"thought": "better", "feeling": "calm", "attempts": 2, "change": 3, "emotion": 43, "band": "B"}
    assert result.outcome["malformed_steps"] == 1 and result.outcome["trajectory"] == [40, 40, 43]
    assert result.outcome["end"] == "turn_limit"


def test_no_retries_marks_the_step_malformed_at_once():
    ask = Script(model=["m"], seeker=["no change line", "fine."])
    result = SageTask(max_turns=2, retries=0).play(EN, ask)
    assert ask.roles == ["model", "seeker", "seeker"] and ask.used_up()
    assert result.turns[1].details["malformed"] is True and result.turns[1].details["attempts"] == 1
    assert result.outcome["malformed_steps"] == 1 and result.outcome["final_emotion"] == 40


def test_requests_of_the_agent_and_the_model_under_test():
    task = SageTask(max_turns=4, agent_temperature=0.7, agent_max_tokens=300, reply_max_tokens=100)
    ask = Script(model=["sup0", "  sup1  ", "sup2"], seeker=seeker_script(["+10", "+10", "-2"], ["reply0", "reply1", "reply2"]))
    task.play(EN, ask)
    reason_2 = ask.requests("seeker")[2]  # the agent reasons about sup1 at emotion 50
    assert reason_2.messages[0].content == REASON_TASK["en"]
    user = reason_2.messages[1].content
    assert "## Your current emotion (0-100)\n50\n" in user
    assert user.endswith("## The conversation so far\nYou: I don't really know why I'm writing this.\nPartner: sup0\nYou: reply0\n\n"
                         "## The partner's latest reply\nsup1")
    assert "## What you secretly want from this conversation\nHIDDEN-NEED-MARKER" in user and "Reserved (anxious, proud)" in user
    assert (reason_2.generation.temperature, reason_2.generation.max_tokens) == (0.7, 300)
    reply_2 = ask.requests("seeker")[3]  # ... then answers at 60, having seen sup1
    assert reply_2.messages[1].content.endswith("## Your current emotion (0-100)\n60\n\n## The conversation so far\n"
                                                "You: I don't really know why I'm writing this.\nPartner: sup0\nYou: reply0\nPartner: sup1")
    assert (reply_2.generation.temperature, reply_2.generation.max_tokens) == (0.7, 100)
    # the model under test: the system prompt and the history, nothing of the scenario
    last = ask.requests("model")[-1]
    assert [(m.role, m.content) for m in last.messages] == [
        ("system", SUPPORTER_SYSTEM["en"]), ("user", "I don't really know why I'm writing this."), ("assistant", "sup0"),
        ("user", "reply0"), ("assistant", "sup1"), ("user", "reply1")]
    assert last.generation.temperature == 0.0
    for request in ask.requests("model"):
        text = content(request)
        for hidden in ("SCENE-MARKER", "HIDDEN-NEED-MARKER", "Sam Lee", "Reserved", "anxious", "Change"):
            assert hidden not in text


def test_chinese_scenarios_get_chinese_prompts_unless_language_is_forced(scenarios):
    assert len(scenarios) == 100 and scenarios[0].id == FIRST_SCENARIO
    assert {SageTask().language_of(s) for s in scenarios} == {"zh"}
    assert SageTask().language_of(EN) == "en" and SageTask(language="zh").language_of(EN) == "zh"
    sample = scenarios[0]
    ask = Script(model=["我在听。"], seeker=["没想好", "内心想法：还行\n感受：平静\n情绪变化：+4", "嗯。"])
    result = SageTask(max_turns=2).play(sample, ask)
    assert result.outcome["language"] == "zh" and result.outcome["trajectory"] == [40, 44]
    assert ask.requests("model")[0].messages[0].content == SUPPORTER_SYSTEM["zh"]
    assert ask.requests("model")[0].messages[1].content == sample.labels["first_talk"]
    retry = ask.requests("seeker")[1]
    assert retry.messages[0].content == REASON_TASK["zh"] and retry.messages[2].content == FORMAT_REMINDER["zh"]
    assert "## 你当前的情绪值（0-100）\n40" in retry.messages[1].content and sample.labels["task"] in retry.messages[1].content
    assert result.turns[1].details["thought"] == "还行" and result.turns[1].details["feeling"] == "平静"
    assert ask.requests("seeker")[2].messages[0].content == REPLY_TASK["zh"].format(mood=BAND_MOODS["zh"]["B"], thought="还行")

    forced = Script(model=["I'm listening."], seeker=[reasoning("+4"), "ok"])
    result = SageTask(max_turns=2, language="en").play(sample, forced)
    assert result.outcome["language"] == "en"
    assert forced.requests("model")[0].messages[0].content == SUPPORTER_SYSTEM["en"]
    assert forced.requests("seeker")[0].messages[0].content == REASON_TASK["en"]
    assert "## Who you are\n" in forced.requests("seeker")[0].messages[1].content


def test_chinese_detection_needs_five_han_characters():
    assert not is_chinese("我很难过 okay") and is_chinese("我真的很难过")
    assert SageTask().language_of(EN.model_copy(update={"labels": {**EN.labels, "first_talk": "我很难过"}})) == "en"


# --------------------------------------------------------------------------- parsing and bands


@pytest.mark.parametrize("text, change, thought, feeling", [
    ("Thought: they get it\nFeeling: relieved\nChange: +4", 4, "they get it", "relieved"),
    ("Thought: meh\nFeeling: bored\nChange: -6", -6, "meh", "bored"),
    ("thought: x\nfeeling: y\nchange: 0", 0, "x", "y"),
    ("Thought: a\nFeeling: b\n**Change:** +5", 5, "a", "b"),
    ("Thought: a\nFeeling: b\nEmotion change: + 3", 3, "a", "b"),
    ("Change: +2\nThought: on second look\nChange: -7", -7, "on second look", ""),  # the last labelled change
    ("内心想法：他根本没听我说\n感受：烦躁\n情绪变化：-6", -6, "他根本没听我说", "烦躁"),
    ("内心想法：好一些了\n感受：平静\n情绪变化：+3", 3, "好一些了", "平静"),
    ("内心想法：唉\n感受：失望\n情绪变化：－3", -3, "唉", "失望"),  # full-width minus
    ("内心想法：唉\n感受：失望\n变化: 2", 2, "唉", "失望"),
    ("I feel slightly worse.\n-4", -4, "I feel slightly worse.\n-4", ""),  # a lone signed number line
    ("Not sure at all\n  +7  \n", 7, "Not sure at all\n  +7", ""),
])
def test_parse_reasoning(text, change, thought, feeling):
    assert parse_reasoning(text) == {"change": change, "thought": thought, "feeling": feeling}


@pytest.mark.parametrize("text", ["", "I don't know how I feel.", "Thought: hmm\nFeeling: unsure", "It was a 5 out of 10 reply", "7"])
def test_parse_reasoning_without_a_change_is_none(text):
    assert parse_reasoning(text)["change"] is None


def test_parse_reasoning_full_width_plus_unicode_minus_and_bold_label():
    assert parse_reasoning("内心想法：好多了\n感受：轻松\n情绪变化：＋3")["change"] == 3
    assert parse_reasoning("Thought: no\nChange: −3")["change"] == -3
    assert parse_reasoning("**Thought**: ok\n**Change**: +3")["change"] == 3


@pytest.mark.parametrize("emotion, expected", [(100, "S"), (99, "A"), (70, "A"), (69, "B"), (40, "B"), (39, "C"), (10, "C"), (9, "F"), (0, "F")])
def test_band_boundaries(emotion, expected):
    assert band(emotion) == expected


@pytest.mark.parametrize("kwargs", [{"max_turns": "ten"}, {"max_turns": 1}, {"retries": -1}, {"retries": "two"}, {"language": "fr"},
                                    {"agent_temperature": "hot"}, {"agent_max_tokens": None}, {"reply_max_tokens": "x"}])
def test_bad_task_args_raise(kwargs):
    with pytest.raises(HarnessError, match="sage"):
        SageTask(**kwargs)


# --------------------------------------------------------------------------- metrics


def pairs(finals):
    return [ScoredPair("", "", outcome={"final_emotion": f}) for f in finals]


def test_metrics_on_hand_made_outcomes():
    finals = pairs([100, 5, 40, 100])
    score, success, failure = (registry.metrics.get(n) for n in ("sage-score", "sage-success", "sage-failure"))
    assert score.compute(finals).corpus == pytest.approx(61.25) and score.compute(finals).missing == 0
    assert success.compute(finals).corpus == 2 and failure.compute(finals).corpus == 1
    assert failure.compute(pairs([10, 9, 0])).corpus == 2 and success.compute(pairs([99, 100])).corpus == 1  # thresholds
    weights = np.array([[1, 1, 1, 1], [2, 0, 0, 2], [0, 4, 0, 0], [0, 1, 3, 0], [1, 0, 0, 0], [0, 2, 1, 0]], dtype=float)
    assert score.weighted(finals, weights) == pytest.approx([61.25, 100, 5, 31.25, 100, 50 / 3])
    assert success.weighted(finals, weights) == pytest.approx([2, 4, 0, 0, 1, 0])  # counts in the re-weighted corpus
    assert failure.weighted(finals, weights) == pytest.approx([1, 0, 4, 1, 0, 2])
    for metric in (score, success, failure):  # unit weights: the plain value
        assert metric.weighted(finals, np.ones((1, 4)))[0] == pytest.approx(metric.compute(finals).corpus)
    bounds = uncertainty.intervals([score, success, failure], finals, {}, resamples=500, seed=0)
    assert 5 <= bounds["sage-score"][0] < 61.25 < bounds["sage-score"][1] <= 100
    assert 0 <= bounds["sage-success"][0] < 2 < bounds["sage-success"][1] <= 4
    assert 0 <= bounds["sage-failure"][0] < 1 < bounds["sage-failure"][1] <= 4
    assert uncertainty.intervals([score], finals, {}, resamples=500, seed=0) == {"sage-score": bounds["sage-score"]}  # seeded


# --------------------------------------------------------------------------- end to end through the runner


def sage_config(tmp_path, data_root, seeker_outputs, **kw):
    base = dict(task="sage", model="scripted", model_args={"default": "I hear you."}, limit=1, concurrency=1, resamples=100,
                roles={"seeker": RoleConfig("scripted", {"outputs": seeker_outputs})}, output_dir=tmp_path / "runs",
                cache_path=tmp_path / "calls.sqlite", data_dir=data_root)
    base.update(kw)
    return RunConfig(**base)


def read_run(run_dir):
    header = RunHeader.model_validate_json((run_dir / "run.json").read_text())
    records = [SampleRecord.model_validate_json(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    summary = Summary.model_validate_json((run_dir / "summary.json").read_text())
    return header, records, summary


def test_run_end_to_end_success_then_replayed_from_the_cache(tmp_path, data_root):
    script = seeker_script(["+10"] * 6)
    first = run(sage_config(tmp_path, data_root, script))
    header, records, summary = read_run(first.run_dir)
    assert (first.model_calls, first.cache_hits) == (18, 0)  # 6 replies, 6 reasoning steps, 6 agent replies
    assert header.status == "finished" and header.prompt_version == "sage-prompts-v1" and header.n_samples == 1
    assert json.loads(header.model_dump_json())["roles"] == {"seeker": {
        "model": "scripted", "model_args": {"outputs": script}, "model_identity": {"script": script, "echo": False, "default": None}}}
    assert header.model_identity == {"script": [], "echo": False, "default": "I hear you."}
    (record,) = records
    assert record.id == FIRST_SCENARIO and record.output == record.response == "I hear you."
    assert record.outcome["end"] == "success" and record.outcome["final_emotion"] == 100 and record.outcome["language"] == "zh"
    assert record.outcome["trajectory"] == [40, 50, 60, 70, 80, 90, 100]
    assert [t.role for t in record.dialogue] == ["seeker"] + ["supporter", "seeker"] * 6
    assert record.dialogue[-1].text == "reply 5" and record.dialogue[1].details["emotion"] == 50
    assert summary.n == 1 and summary.metrics == {"sage-score": 100.0, "sage-success": 1.0, "sage-failure": 0.0}
    assert summary.intervals["sage-score"] == (100.0, 100.0) and summary.missing == {}

    again = run(sage_config(tmp_path, data_root, script))
    assert (again.model_calls, again.cache_hits) == (0, 18)
    assert read_run(again.run_dir)[1][0].dialogue == record.dialogue


def test_run_without_cache_keeps_its_own_calls_and_counts_malformed_steps(tmp_path, data_root):
    script = ["???", "!!!", "...", "whatever", reasoning("-4"), "fine"]  # round 1 malformed after 3 attempts
    result = run(sage_config(tmp_path, data_root, script, task_args={"max_turns": 3}, use_cache=False))
    header, (record,), summary = read_run(result.run_dir)
    assert header.task_args == {"max_turns": 3}
    assert record.outcome["end"] == "turn_limit" and record.outcome["malformed_steps"] == 1
    assert record.outcome["trajectory"] == [40, 40, 36] and record.dialogue[1].details["malformed"] is True
    assert summary.metrics == {"sage-score": 36.0, "sage-success": 0.0, "sage-failure": 0.0}
    assert result.model_calls == 8 and not (tmp_path / "calls.sqlite").exists()
    with sqlite3.connect(result.run_dir / "calls.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 8  # 2 replies + 4 reasoning + 2 agent replies
    # an interrupted --no-cache run replays the dialogue from its own calls
    interrupt(result.run_dir)
    resumed = run(RunConfig(task="", model="", split="", data_dir=data_root, use_cache=False, resamples=100), resume=result.run_dir)
    assert (resumed.model_calls, resumed.cache_hits, resumed.resumed_samples) == (0, 8, 0)
    assert read_run(result.run_dir)[1] == [record] and read_run(result.run_dir)[2] == summary


def interrupt(run_dir, keep=0):
    """As if killed after `keep` finished dialogues, before the summary."""
    lines = (run_dir / "samples.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "samples.jsonl").write_text("".join(lines[:keep]))
    (run_dir / "summary.json").unlink()


def test_a_role_not_given_is_played_by_the_model_under_test(tmp_path, data_root):
    result = run(sage_config(tmp_path, data_root, [], roles={}, model_args={"default": "Change: +10"}, task_args={"max_turns": 3}))
    header, (record,), summary = read_run(result.run_dir)
    assert header.roles["seeker"].model == "scripted" and header.roles["seeker"].model_args == {"default": "Change: +10"}
    assert record.outcome["trajectory"] == [40, 50, 60] and summary.metrics["sage-score"] == 60.0
    assert result.model_calls == 6


@pytest.mark.parametrize("task, roles, message", [
    ("sage", {"judge": RoleConfig("scripted")}, "no role 'judge'"),
    ("sage", {"critic": RoleConfig("scripted")}, "no role 'critic'"),
    ("mesc", {"seeker": RoleConfig("scripted")}, "single-turn"),
    ("sage", {"seeker": RoleConfig("no-such-model")}, "unknown model"),
])
def test_bad_roles_raise_before_a_run_folder_is_made(tmp_path, data_root, task, roles, message):
    with pytest.raises(HarnessError, match=message):
        run(sage_config(tmp_path, data_root, [], task=task, roles=roles))
    assert not (tmp_path / "runs").exists()


def test_bad_task_args_through_the_runner(tmp_path, data_root):
    for task_args, message in (({"max_turns": 1}, "max_turns >= 2"), ({"rounds": 5}, "bad --task-args")):
        with pytest.raises(HarnessError, match=message):
            run(sage_config(tmp_path, data_root, [], task_args=task_args))
    assert not (tmp_path / "runs").exists()


class KeyedScripted(ScriptedModel):
    """The scripted model with an API key, as a server adapter has."""

    name = "scripted-keyed"

    def __init__(self, context=None, api_key=None, **kwargs):
        super().__init__(context, **kwargs)


def test_resume_a_run_whose_seeker_is_the_keyed_model_under_test(tmp_path, data_root, monkeypatch):
    monkeypatch.setitem(registry.models._extra, "scripted-keyed", KeyedScripted)
    keyed = {"api_key": "sk-secret", "default": "Change: +1"}
    first = run(sage_config(tmp_path, data_root, [], model="scripted-keyed", model_args=keyed, roles={}, limit=2, task_args={"max_turns": 2}))
    assert read_run(first.run_dir)[0].roles["seeker"].model_args == {"api_key": "<redacted>", "default": "Change: +1"}
    interrupt(first.run_dir, keep=1)
    resumed = run(RunConfig(task="", model="", split="", data_dir=data_root, model_args={"api_key": "sk-secret"},
                            cache_path=tmp_path / "calls.sqlite", resamples=100), resume=first.run_dir)
    assert (resumed.model_calls, resumed.resumed_samples) == (0, 1)
