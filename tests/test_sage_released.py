"""SAGE with the released prompts (`prompts=released,sage_repo=PATH`, simulators/sage_released.py): a fake clone
written here (the released files' names, functions and placeholders, dummy wording of our own), the released
loop's end conditions, change parsing and clamping, the prompt files' hashes in run.json, one-line errors for a
missing or malformed clone, and the leaderboard column shared with the published SAGE numbers."""
import hashlib
import json
from pathlib import Path

import pytest

from baselines import published
from harness import store
from harness.contract import RunHeader, SampleRecord, Sample, Summary
from harness.errors import HarnessError
from harness.runner import RoleConfig, RunConfig, run
from reports.leaderboard import build_tables
from role_script import Script
from simulators import sage_released
from simulators.sage import SageTask
from simulators.sage_released import parse_planning, parse_reply, read_clone, state_name

SIMULATOR = '''import json

target_prompt = """GOAL: talk it through."""


def planning_reply(player_data):
    template = """ANALYSER goal={{target}}
who={{simulator_role}}
scene={{simulator_scene}}
emotion={{emotion}}
history={{dialog_history}}"""
    prompt = template.replace("{{emotion}}", str(player_data["emo_point"]))
    mapping = {"user": "ME", "assistant": "BOT"}
    return prompt, mapping


def player_reply(player_data, planning):
    template = """ACTOR goal={{target}} state={{emotion}} who={{player_type}} scene={{player_topic}}
context={{dialog_history}}
latest={{new_history}}
feel={{planning}}"""
    if not planning:
        prompt = template.replace("{{planning}}", planning["analyse"])
    else:
        prompt = template.replace("{{planning}}", "OBJ:\\n" + planning["TargetCompletion"] + "\\nSUBJ:\\n" + planning["activity"] + planning["analyse"])
    return prompt
'''

NPC = '''def call_npc(player_history):
    role_system = """SUPPORTER: be kind.\\n"""
    return [{"role": "system", "content": role_system}]
'''

SCENE = Sample(id="sage/zh-1", history=(), reference="", labels={
    "player": "PLAYER-CARD", "scene": "SCENE-CARD", "main_cha": "被动型", "cha_group": [], "task": "HIDDEN",
    "first_talk": "最近好烦啊", "scenario_id": "zh-1"})


def fake_clone(root: Path, simulator: str = SIMULATOR, npc: str = NPC) -> Path:
    (root / "SAGE").mkdir(parents=True)
    (root / "SAGE" / "simulator_response.py").write_text(simulator, encoding="utf-8")
    (root / "SAGE" / "npc_response.py").write_text(npc, encoding="utf-8")
    return root


@pytest.fixture
def clone(tmp_path):
    return fake_clone(tmp_path / "digitalhuman")


def analysis(change, i=0):
    return f"Content:\n[content {i}]\nTargetCompletion:\n[tc {i}]\nActivity:\n[act {i}]\nAnalyse:\n[an {i}]\nChange:\n[{change}]"


def answer(message, i=0):
    return f"Thinking:\nplan {i}\nOrigin:\n[draft]\nChange:\n[shorter]\nResponse:\n[“{message}”]"


def agent_script(changes, messages=None):
    messages = messages or [f"reply {i}" for i in range(len(changes))]
    out = []
    for i, (change, message) in enumerate(zip(changes, messages)):
        out += [analysis(change, i), answer(message, i)]
    return out


def task(clone, **kw):
    return SageTask(prompts="released", sage_repo=str(clone), **kw)


# --------------------------------------------------------------------------- the released loop


def test_success_and_the_requests_built_from_the_clone(clone):
    ask = Script(model=[f"support {i}" for i in range(6)], seeker=agent_script(["+10"] * 6))
    result = task(clone).play(SCENE, ask)
    assert ask.roles == ["model", "seeker", "seeker"] * 6 and ask.used_up()
    assert result.outcome == {"final_emotion": 100, "end": "success", "trajectory": [40, 50, 60, 70, 80, 90, 100], "rounds": 6,
                              "malformed_steps": 0, "language": "zh", "max_turns": 10, "prompts": "released"}
    assert result.turns[1].details == {"thought": "act 0", "feeling": "an 0", "content": "content 0", "target_completion": "tc 0",
                                       "attempts": 1, "change": 10, "emotion": 50, "band": "B"}
    assert result.turns[2].text == "reply 0" and result.turns[2].details["reply_plan"] == "plan 0\nOrigin:\n[draft]\nChange:\n[shorter"
    # the supporter: the clone's system prompt, then the dialogue
    first = ask.requests("model")[0]
    assert [(m.role, m.content) for m in first.messages] == [("system", "SUPPORTER: be kind.\n"), ("user", "最近好烦啊")]
    # the analysis: one user message, the emotion before the change, the whole history dumped as the released code does
    planning = ask.requests("seeker")[0]
    history = json.dumps([{"role": "ME", "content": "最近好烦啊"}, {"role": "BOT", "content": "support 0"}], ensure_ascii=False, indent=2)
    assert [m.role for m in planning.messages] == ["user"]
    assert planning.messages[0].content == ("ANALYSER goal=GOAL: talk it through.\nwho=PLAYER-CARD\nscene=SCENE-CARD\nemotion=40\n"
                                            f"history={history}")
    assert planning.generation.max_tokens == 2048 and planning.generation.temperature == 0.0
    # the reply: the band name after the change, the history but the last two, the last two, the analysis pieces
    reply = ask.requests("seeker")[1].messages[0].content
    assert reply == ("ACTOR goal=GOAL: talk it through. state=Emotion-B who=PLAYER-CARD scene=SCENE-CARD\ncontext=[]\n"
                     f"latest={history}\nfeel=OBJ:\ntc 0\nSUBJ:\nact 0an 0")
    assert "state=Emotion-S" in ask.requests("seeker")[-1].messages[0].content
    assert ask.requests("seeker")[3].messages[0].content.count('"content": "support 1"') == 1  # in `latest`, not in `context`


def test_failure_below_10_after_exactly_10_goes_on(clone):
    ask = Script(model=["a", "b", "c", "d"], seeker=agent_script(["-10", "-10", "-10", "-10"]))
    result = task(clone).play(SCENE, ask)
    assert ask.used_up() and result.outcome["end"] == "failure"
    assert result.outcome["trajectory"] == [40, 30, 20, 10, 0] and result.outcome["final_emotion"] == 0
    assert result.turns[-1].role == "seeker" and "state=Emotion-F" in ask.requests("seeker")[-1].messages[0].content


def test_goodbye_words_end_it_and_thresholds_win(clone):
    ask = Script(model=["a", "b"], seeker=agent_script(["+5", "-5"], ["嗯", "好吧，拜拜"]))
    result = task(clone).play(SCENE, ask)
    assert ask.used_up() and result.outcome["end"] == "goodbye" and result.outcome["trajectory"] == [40, 45, 40]
    assert result.turns[-1].text == "好吧，拜拜"
    # [END] is the harness prompts' marker, not the released code's
    ask = Script(model=["a", "b"], seeker=agent_script(["+1", "+1"], ["bye [END]", "再见啦"]))
    assert task(clone).play(SCENE, ask).outcome["end"] == "goodbye" and ask.used_up()
    ask = Script(model=["x"] * 6, seeker=agent_script(["+10"] * 6, ["嗯"] * 5 + ["谢谢你，再见"]))
    assert task(clone).play(SCENE, ask).outcome["end"] == "success"


@pytest.mark.parametrize("max_turns", [10, 3])
def test_turn_limit_counts_the_opening(clone, max_turns):
    replies = max_turns - 1
    ask = Script(model=[f"m{i}" for i in range(replies)], seeker=agent_script(["+1"] * replies))
    t = task(clone, max_turns=max_turns)
    result = t.play(SCENE, ask)
    assert ask.used_up() and result.outcome["end"] == "turn_limit" and result.outcome["rounds"] == replies
    assert result.outcome["trajectory"] == [40 + i for i in range(max_turns)]
    assert sum(turn.role == "seeker" for turn in result.turns) == max_turns
    assert t.prompt_version == ("sage-released-v1" if max_turns == 10 else "sage-released-v1+max_turns=3")


def test_changes_are_clamped_and_the_emotion_capped_at_100(clone):
    ask = Script(model=["m"] * 4, seeker=agent_script(["+25", "-30", "+10"]))
    result = task(clone, max_turns=4).play(SCENE, ask)
    first, second, third = (t.details for t in result.turns if t.role == "supporter")
    assert (first["change"], first["stated_change"], first["emotion"]) == (10, 25, 50)
    assert (second["change"], second["stated_change"], second["emotion"]) == (-10, -30, 40)
    assert third["change"] == 10 and "stated_change" not in third
    ask = Script(model=["m"] * 7, seeker=agent_script(["+10"] * 5 + ["+8", "+10"]))
    result = task(clone).play(SCENE, ask)
    assert ask.used_up() and result.outcome["trajectory"][-3:] == [90, 98, 100] and result.outcome["end"] == "success"
    assert result.turns[-2].details["change"] == 10  # the change as stated, the emotion capped


@pytest.mark.parametrize("text, change, stated", [
    ("Change:\n[+3]", 3, 3),
    ("Change：\n-5", -5, -5),  # full-width colon
    ("**Change:** +7 (a lot)", 7, 7),  # bold dropped
    ("Change: 4 then 9", 4, 4),  # the first number after the label
    ("Change: first\nChange: -12", -10, -12),  # the last label, clamped
    ("1. I feel better by 6", 1, 1),  # no label: the first number of the whole answer, as released
    ("Change: －5", 5, 5),  # a full-width minus is no sign to the released rule
    ("Change: none", None, None),
])
def test_change_parsing_follows_the_released_rule(text, change, stated):
    parsed = parse_planning(text)
    assert (parsed["change"], parsed["stated_change"]) == (change, stated)


def test_reply_parsing_and_band_names():
    assert parse_reply("Thinking:\n[a]\nResponse:\n[“嗯嗯”]") == ("a", "嗯嗯")
    assert parse_reply("just words") == ("just words", "just words")
    assert [state_name(e) for e in (100, 99, 70, 69, 40, 39, 10, 9, 0)] == [
        "Emotion-S", "Emotion-A", "Emotion-A", "Emotion-B", "Emotion-B", "Emotion-C", "Emotion-C", "Emotion-F", "Emotion-F"]


def test_an_analysis_without_a_number_is_asked_again_then_recorded(clone):
    ask = Script(model=["m1", "m2"], seeker=["no", "still no", "nope", answer("嗯"), analysis("-5"), answer("哦")])
    result = task(clone, max_turns=3).play(SCENE, ask)
    assert ask.used_up() and result.outcome["malformed_steps"] == 1 and result.outcome["trajectory"] == [40, 40, 35]
    retries = ask.requests("seeker")[:3]
    assert [len(r.messages) for r in retries] == [1, 2, 3] and retries[2].messages[1].content == sage_released.REMINDER
    assert result.turns[1].details["malformed"] is True and result.turns[1].details["raw"] == "nope"


# --------------------------------------------------------------------------- through the runner: run.json


def released_config(tmp_path, data_root, clone, seeker_outputs, **kw):
    base = dict(task="sage", model="scripted", model_args={"default": "我在听。"}, limit=1, concurrency=1, resamples=0,
                roles={"seeker": RoleConfig("scripted", {"outputs": seeker_outputs})}, output_dir=tmp_path / "runs",
                cache_path=tmp_path / "calls.sqlite", data_dir=data_root,
                task_args={"prompts": "released", "sage_repo": str(clone)})
    base.update(kw)
    return RunConfig(**base)


def test_run_records_the_released_files_hashes(tmp_path, data_root, clone):
    result = run(released_config(tmp_path, data_root, clone, agent_script(["+10"] * 6)))
    header = RunHeader.model_validate_json((result.run_dir / "run.json").read_text())
    files = {name: hashlib.sha256((clone / name).read_bytes()).hexdigest() for name in ("SAGE/simulator_response.py", "SAGE/npc_response.py")}
    assert header.task_provenance == {"sage_repo": str(clone.resolve()), "files": files}
    assert header.prompt_version == "sage-released-v1" and header.task_args == {"prompts": "released", "sage_repo": str(clone)}
    (record,) = [SampleRecord.model_validate_json(line) for line in (result.run_dir / "samples.jsonl").read_text().splitlines()]
    assert record.outcome["end"] == "success" and record.outcome["prompts"] == "released"
    assert json.loads((result.run_dir / "summary.json").read_text())["metrics"]["sage-score"] == 100.0
    # resuming after the prompt files changed is refused: the dialogue would mix two prompts
    (result.run_dir / "summary.json").unlink()
    (result.run_dir / "samples.jsonl").write_text("")
    (clone / "SAGE" / "npc_response.py").write_text(NPC.replace("be kind", "be brief"), encoding="utf-8")
    with pytest.raises(HarnessError, match="task_provenance"):
        run(RunConfig(task="", model="", split="", data_dir=data_root, cache_path=tmp_path / "calls.sqlite"), resume=result.run_dir)


def test_the_default_reads_no_clone_and_records_nothing(tmp_path, data_root):
    assert SageTask().provenance() == {} and SageTask().prompt_version == "sage-prompts-v1"
    result = run(released_config(tmp_path, data_root, None, ["Thought: t\nFeeling: f\nChange: +10", "r"] * 6, task_args={}))
    header = RunHeader.model_validate_json((result.run_dir / "run.json").read_text())
    assert header.task_provenance == {} and header.prompt_version == "sage-prompts-v1"


# --------------------------------------------------------------------------- one-line errors


def one_line(excinfo):
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_a_missing_clone_fails_before_any_folder_is_made(tmp_path, data_root):
    with pytest.raises(HarnessError) as bad:
        run(released_config(tmp_path, data_root, tmp_path / "nowhere", []))
    assert "sage_repo=" in one_line(bad) and "nowhere" in one_line(bad) and "git clone https://github.com/Tencent/digitalhuman" in one_line(bad)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"prompts": "released"}, "prompts=released needs sage_repo=PATH"),
    ({"sage_repo": "/x"}, "sage_repo= is read with prompts=released only"),
    ({"prompts": "paper"}, "prompts must be harness or released"),
    ({"prompts": "released", "sage_repo": "/x", "language": "en"}, "released prompts are Chinese"),
])
def test_bad_task_args(kwargs, message):
    with pytest.raises(HarnessError) as bad:
        SageTask(**kwargs)
    assert message in one_line(bad)


def _drop(text, old, new=""):
    assert old in text
    return text.replace(old, new)


@pytest.mark.parametrize("simulator, npc, file, expected", [
    (SIMULATOR, None, "npc_response.py", "no such file"),
    (None, NPC, "simulator_response.py", "no such file"),
    (_drop(SIMULATOR, "{{new_history}}"), NPC, "simulator_response.py", "player_reply's template with the placeholders"),
    (_drop(SIMULATOR, "scene={{simulator_scene}}"), NPC, "simulator_response.py", "missing {{simulator_scene}}"),
    (_drop(SIMULATOR, 'target_prompt = """GOAL: talk it through."""'), NPC, "simulator_response.py", "`target_prompt` at module level"),
    (_drop(SIMULATOR, "def planning_reply", "def other_reply"), NPC, "simulator_response.py", "a function `planning_reply`"),
    (_drop(SIMULATOR, 'mapping = {"user": "ME", "assistant": "BOT"}', "mapping = {}"), NPC, "simulator_response.py", "a dict `mapping`"),
    (_drop(SIMULATOR, '"OBJ:\\n" + planning["TargetCompletion"] + "\\nSUBJ:\\n" + planning["activity"] + planning["analyse"]', "planning"),
     NPC, "simulator_response.py", 'template.replace("{{planning}}"'),
    (SIMULATOR + "\ndef broken(:\n", NPC, "simulator_response.py", "Python source (syntax error at line"),
    (SIMULATOR, _drop(NPC, "role_system =", "system ="), "npc_response.py", "a string assigned to `role_system` in call_npc"),
])
def test_a_missing_or_malformed_prompt_file_is_one_line_naming_it(tmp_path, simulator, npc, file, expected):
    root = tmp_path / "clone"
    (root / "SAGE").mkdir(parents=True)
    for name, text in (("simulator_response.py", simulator), ("npc_response.py", npc)):
        if text is not None:
            (root / "SAGE" / name).write_text(text, encoding="utf-8")
    with pytest.raises(HarnessError) as bad:
        read_clone(root)
    message = one_line(bad)
    assert f"SAGE/{file}" in message and expected in message, message


def test_the_sage_folder_itself_is_accepted(clone):
    assert read_clone(clone / "SAGE").root == clone.resolve() == read_clone(clone).root


# --------------------------------------------------------------------------- the leaderboard column


def make_run(root, run_id, *, seeker, prompt_version, model="gpt-4.1", task_args=None, score=60.0):
    folder = root / run_id
    folder.mkdir(parents=True)
    header = RunHeader(run_id=run_id, task="sage", task_args=task_args or {}, model="openai", model_args={"model": model}, split="test",
                       seed=0, metrics=["sage-score", "sage-success", "sage-failure"], started_at="2026-01-01T00:00:00",
                       finished_at="2026-01-01T00:00:00", status="finished", n_samples=100, prompt_version=prompt_version,
                       roles={"seeker": {"model": "openai", "model_args": {"model": seeker}}})
    store.write_json(folder / "run.json", header)
    store.rewrite_records(folder, [])
    store.write_json(folder / "summary.json", Summary(n=100, metrics={"sage-score": score, "sage-success": 30.0, "sage-failure": 10.0}))


def test_released_runs_with_deepseek_v3_share_the_published_column_and_no_other(tmp_path):
    released = {"prompts": "released", "sage_repo": "/clone"}
    make_run(tmp_path, "same", seeker="deepseek-ai/DeepSeek-V3", prompt_version="sage-released-v1", task_args=released, score=61.0)
    make_run(tmp_path, "other-agent", seeker="qwen2.5-72b", prompt_version="sage-released-v1", task_args=released, score=62.0, model="o1")
    make_run(tmp_path, "harness-prompts", seeker="deepseek-v3", prompt_version="sage-prompts-v1", score=63.0, model="claude")
    make_run(tmp_path, "twenty-turns", seeker="deepseek-v3", prompt_version="sage-released-v1+max_turns=20",
             task_args={**released, "max_turns": 20}, score=64.0, model="llama")
    make_run(tmp_path, "alias", seeker="deepseek-chat", prompt_version="sage-released-v1", task_args=released, score=65.0, model="qwen")
    table = next(t for t in build_tables(tmp_path, published.load_all()) if t.task == "sage")

    def column_of(run_id):
        row = next(r for r in table.rows if r.run is not None and r.run.header.run_id == run_id)
        return next(k for k in row.cells if k[1] == "sage-score")

    published_gpt41 = next(r for r in table.rows if r.kind == "published" and r.label == "GPT-4.1" and r.source == "SAGE leaderboard")
    (shared,) = [k for k in published_gpt41.cells if k[1] == "sage-score"]
    assert shared == column_of("same") and shared[0] == "m"  # beside the measured run, in one column
    assert published_gpt41.cells[shared].value == 68.2
    for run_id in ("other-agent", "harness-prompts", "twenty-turns", "alias"):
        assert column_of(run_id) != shared, run_id
    # the published numbers have no column of their own any more, and COMPEER's GPT-4o-agent numbers keep theirs
    labels = [c.label for c in table.columns]
    assert "sage-score [DeepSeek-V3 agent, released prompts]" not in labels and "sage-score [GPT-4o agent]" in labels
