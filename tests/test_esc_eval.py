"""ESC-Eval (`simulators/esc_eval.py`): the dialogue (greeting, rounds, who sees what), the judge's seven
questions, missing scores, the metrics, the cards, and the engine and CLI around a dialogue task."""
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from harness import grading, registry
from harness.grading import graders_of
from harness.cli import main, model_spec
from harness.contract import RunHeader, Sample, SampleRecord, ScoredPair, Summary
from harness.errors import HarnessError
from harness.models.scripted import ScriptedModel
from harness.runner import RoleConfig, RunConfig, run
from role_script import Script
from simulators.esc_eval import GREETING, SEEKER_SYSTEM, ESCEvalTask
from simulators.esc_eval_judge import DIMENSIONS, PROMPT_VERSION, judge_request

DIMS = list(DIMENSIONS)  # fluency, expression, empathy, information, humanoid, skill, overall
METRICS = [f"esc-eval-{d}" for d in DIMS] + ["esc-eval-average", "esc-eval-score"]


CARD = "Age: 34\nGender: Male\nOccupation: CARD-MARKER welder\nProblem: Lost his job and hides it from his family."
SAMPLE = Sample(id="esc-eval/en/high/1", history=(), reference="", labels={"card": CARD, "card_id": 1, "category": "工作学习",
                                                                           "source": "ESconv", "language": "en"})
JUDGE_ANSWERS = ["Score: 4", "3", "I cannot tell.", "Score: 5", "**Score:** 2", "Score: 1/4", "score: 0"]
JUDGE_SCORES = {"fluency": 4, "expression": 3, "empathy": None, "information": None, "humanoid": 2, "skill": 1, "overall": 0}


def texts(request):
    return [(m.role, m.content) for m in request.messages]


def play_and_judge(task, sample, ask):
    """A dialogue played, then graded by the judge as a run does it (the grader the metrics declare)."""
    result = task.play(sample, ask)
    record = SampleRecord(index=0, id=sample.id, history=[], reference="", labels=sample.labels, output="", response="",
                          dialogue=result.turns, outcome=result.outcome)
    (judged,) = grading.grade_records(graders_of(registry.metrics.get(m) for m in METRICS), [record],
                                      {"judge": lambda requests: [ask("judge", r) for r in requests]})
    return result, judged.outcome


# --------------------------------------------------------------------------- one dialogue


def test_dialogue_greeting_rounds_and_who_sees_what():
    task = ESCEvalTask(rounds=2, seeker_temperature=0.5, seeker_max_tokens=99)
    ask = Script(seeker=["  I lost my job.  ", "My wife doesn't know."], model=["That must be hard. ", "Why not?"], judge=JUDGE_ANSWERS)
    result, outcome = play_and_judge(task, SAMPLE, ask)
    assert ask.roles == ["seeker", "model", "seeker", "model"] + ["judge"] * 7 and ask.used_up()
    assert [t.model_dump() for t in result.turns] == [
        {"role": "supporter", "text": GREETING["en"], "details": {"greeting": True}},
        {"role": "seeker", "text": "I lost my job.", "details": {}},
        {"role": "supporter", "text": "That must be hard.", "details": {}},
        {"role": "seeker", "text": "My wife doesn't know.", "details": {}},
        {"role": "supporter", "text": "Why not?", "details": {}},
    ]
    # the seeker model: the card in its system prompt, the supporter's lines as "user", its own as "assistant"
    system = SEEKER_SYSTEM["en"].format(card=CARD)
    first, second = ask.requests("seeker")
    assert texts(first) == [("system", system), ("user", GREETING["en"])]
    assert texts(second) == [("system", system), ("user", GREETING["en"]), ("assistant", "I lost my job."), ("user", "That must be hard.")]
    assert (second.generation.temperature, second.generation.max_tokens) == (0.5, 99)
    # the model under test: no system prompt, never the card, its greeting as its own turn
    first, second = ask.requests("model")
    assert texts(first) == [("assistant", GREETING["en"]), ("user", "I lost my job.")]
    assert texts(second) == [("assistant", GREETING["en"]), ("user", "I lost my job."), ("assistant", "That must be hard."),
                             ("user", "My wife doesn't know.")]
    assert all("CARD-MARKER" not in m.content and m.role != "system" for r in ask.requests("model") for m in r.messages)
    # the judge: once per dimension, in order, on the whole transcript
    assert ask.requests("judge") == [judge_request(d, result.turns, "en") for d in DIMS]
    assert all("Supporter: Why not?" in r.messages[0].content and "CARD-MARKER" not in r.messages[0].content for r in ask.requests("judge"))
    # an unparseable or out-of-range answer is None (missing), never 0
    assert result.outcome == {"language": "en", "rounds": 2}  # the dialogue itself; the grades come after it
    assert outcome == {"judge": JUDGE_SCORES, "judge_raw": dict(zip(DIMS, JUDGE_ANSWERS)), "judge_prompts": PROMPT_VERSION,
                       "language": "en", "rounds": 2}


def test_one_round_and_five_by_default():
    ask = Script(seeker=["s"], model=["m"], judge=["Score: 2"] * 7)
    assert len(play_and_judge(ESCEvalTask(rounds=1), SAMPLE, ask)[0].turns) == 3 and ask.used_up()
    ask = Script(seeker=[f"s{i}" for i in range(5)], model=[f"m{i}" for i in range(5)], judge=["Score: 2"] * 7)
    result, _ = play_and_judge(ESCEvalTask(), SAMPLE, ask)
    assert ask.roles == ["seeker", "model"] * 5 + ["judge"] * 7 and ask.used_up()
    assert [t.text for t in result.turns][-2:] == ["s4", "m4"] and result.outcome["rounds"] == 5


def test_chinese_dialogue(data_root):
    task = ESCEvalTask(language="chinese", rounds=1)
    assert task.language == "zh"
    (sample, *_) = task.load("test", data_root / "esc-eval")
    ask = Script(seeker=["我最近压力很大。"], model=["我在听。"], judge=["评分：3"] * 6 + ["评分：３"])
    result, outcome = play_and_judge(task, sample, ask)
    assert result.turns[0].text == GREETING["zh"] == "你好，我是您的私人助手，您有任何烦恼都可以向我诉说！"
    assert ask.requests("seeker")[0].messages[0].content == SEEKER_SYSTEM["zh"].format(card=sample.labels["card"])
    assert sample.labels["card"].startswith("年龄：")
    assert ask.requests("judge") == [judge_request(d, result.turns, "zh") for d in DIMS]
    assert "求助者：我最近压力很大。" in ask.requests("judge")[0].messages[0].content
    assert outcome["judge"] == dict.fromkeys(DIMS, 3) and outcome["language"] == "zh"


@pytest.mark.parametrize("language, cards, count", [("en", "high", 331), ("zh", "high", 324), ("en", "test", 3), ("zh", "test", 3)])
def test_card_counts(data_root, language, cards, count):
    samples = ESCEvalTask(language=language, cards=cards).load("test", data_root / "esc-eval")
    assert len(samples) == count == len({s.id for s in samples})
    assert all(s.id == f"esc-eval/{language}/{cards}/{s.labels['card_id']}" and s.labels["card"] and s.labels["language"] == language
               for s in samples)


@pytest.mark.parametrize("kwargs", [{"language": "fr"}, {"rounds": 0}, {"rounds": "five"}, {"seeker_max_tokens": "x"},
                                    {"seeker_temperature": "hot"}, {"cards": "all"}])
def test_bad_task_args_raise(kwargs):
    with pytest.raises(HarnessError):
        ESCEvalTask(**kwargs)


# --------------------------------------------------------------------------- metrics


def judged(*rows):
    return [ScoredPair("", "", outcome={"judge": dict(zip(DIMS, row))}) for row in rows]


PAIRS = judged(
    # fluency, expression, empathy, information, humanoid, skill, overall
    (4, 3, None, 2, 4, 1, 3),
    (2, 3, None, 0, 4, 3, 2),
    (3, None, None, 4, 1, 2, 4),
)


def test_metrics_on_hand_made_outcomes():
    values = {name: registry.metrics.get(name).compute(PAIRS) for name in METRICS}
    means = {name: v.corpus for name, v in values.items()}
    assert math.isnan(means.pop("esc-eval-empathy"))
    assert means == pytest.approx({"esc-eval-fluency": 3, "esc-eval-expression": 3, "esc-eval-information": 2, "esc-eval-humanoid": 3,
                                   "esc-eval-skill": 2, "esc-eval-overall": 3, "esc-eval-average": 16 / 6, "esc-eval-score": 16 / 6 * 25})
    assert values["esc-eval-expression"].missing == 1 and values["esc-eval-empathy"].missing == 3 and values["esc-eval-fluency"].missing == 0
    # weighted: unit weights give the plain value; a corpus of two copies of dialogue 3 has no expression score
    weights = np.array([[1, 1, 1], [0, 0, 2], [2, 1, 0]], dtype=float)
    for name in METRICS:
        if name != "esc-eval-empathy":
            assert registry.metrics.get(name).weighted(PAIRS, weights)[0] == pytest.approx(means[name])
    average = registry.metrics.get("esc-eval-average").weighted(PAIRS, weights)
    assert average[1] == pytest.approx((3 + 4 + 1 + 2 + 4) / 5)
    assert average[2] == pytest.approx(((10 / 3) + 3 + (4 / 3) + 4 + (5 / 3) + (8 / 3)) / 6)
    assert registry.metrics.get("esc-eval-score").weighted(PAIRS, weights)[1] == pytest.approx(14 / 5 * 25)
    assert math.isnan(registry.metrics.get("esc-eval-expression").weighted(PAIRS, weights)[1])


def test_a_missing_judge_outcome_is_missing_not_zero():
    pairs = PAIRS + [ScoredPair("", "", outcome={})]
    fluency = registry.metrics.get("esc-eval-fluency").compute(pairs)
    assert fluency.corpus == pytest.approx(3) and fluency.missing == 1
    unscored = judged((None,) * 7)
    average = registry.metrics.get("esc-eval-average").compute(PAIRS + unscored)
    assert average.corpus == pytest.approx(16 / 6) and average.missing == 1  # dialogues without any score
    assert math.isnan(registry.metrics.get("esc-eval-score").compute(unscored).corpus)


# --------------------------------------------------------------------------- end to end through the runner


def esc_config(tmp_path, data_root, **kw):
    base = dict(task="esc-eval", model="scripted", model_args={"echo": True}, limit=2, concurrency=1, resamples=100,
                task_args={"rounds": 1}, output_dir=tmp_path / "runs", cache_path=tmp_path / "cache.sqlite", data_dir=data_root)
    base.update(kw)
    return RunConfig(**base)


def read_run(run_dir):
    header = RunHeader.model_validate_json((run_dir / "run.json").read_text())
    records = [SampleRecord.model_validate_json(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    summary = Summary.model_validate_json((run_dir / "summary.json").read_text())
    return header, records, summary


def test_run_end_to_end_with_missing_judge_scores(tmp_path, data_root):
    # dialogue 1 then dialogue 2, the seven dimensions in order; empathy is never readable, one overall is out of range
    judge = ["Score: 4", "Score: 3", "no idea", "Score: 2", "3", "Score: 1", "Score: 4",
             "Score: 2", "Score: 3", "Hard to say.", "Score: 4", "Score: 3", "Score: 2", "Score: 5"]
    seeker = {"outputs": ["I can't sleep.", "My boss yells at me."]}
    result = run(esc_config(tmp_path, data_root, roles={"seeker": RoleConfig("scripted", seeker),
                                                         "judge": RoleConfig("scripted", {"outputs": judge})}))
    header, records, summary = read_run(result.run_dir)
    assert header.prompt_version == ESCEvalTask.prompt_version == f"esc-eval-seeker/1+{PROMPT_VERSION}"
    roles = json.loads(header.model_dump_json())["roles"]
    assert roles == {"seeker": {"model": "scripted", "model_args": seeker, "model_identity": {"script": seeker["outputs"], "echo": False, "default": None}},
                     "judge": {"model": "scripted", "model_args": {"outputs": judge}, "model_identity": {"script": judge, "echo": False, "default": None}}}
    assert header.model_args == {"echo": True} and header.metrics == METRICS
    assert [r.id for r in records] == ["esc-eval/en/high/32025", records[1].id] and records[1].index == 1
    # the model under test echoes the seeker; the record's output is its last reply
    assert [t.text for t in records[0].dialogue] == [GREETING["en"], "I can't sleep.", "I can't sleep."]
    assert records[1].output == "My boss yells at me."
    assert records[0].outcome["judge"] == {"fluency": 4, "expression": 3, "empathy": None, "information": 2, "humanoid": 3, "skill": 1, "overall": 4}
    assert records[1].outcome["judge"]["overall"] is None and records[1].outcome["judge_raw"]["overall"] == "Score: 5"
    average = (3 + 3 + 3 + 3 + 1.5 + 4) / 6  # empathy has no value, overall only dialogue 1's
    assert summary.metrics == pytest.approx({"esc-eval-fluency": 3, "esc-eval-expression": 3, "esc-eval-information": 3, "esc-eval-humanoid": 3,
                                             "esc-eval-skill": 1.5, "esc-eval-overall": 4, "esc-eval-average": average, "esc-eval-score": average * 25})
    assert "esc-eval-empathy" not in summary.metrics and "esc-eval-empathy" not in summary.intervals
    assert summary.missing == {"esc-eval-empathy": 2, "esc-eval-overall": 1}
    assert summary.intervals["esc-eval-expression"] == (3.0, 3.0)
    assert (result.model_calls, result.cache_hits) == (2 * (1 + 1 + 7), 0)


def test_a_role_not_given_is_played_by_the_model_under_test(tmp_path, data_root):
    result = run(esc_config(tmp_path, data_root, model_args={"default": "Score: 2"}, roles={"seeker": RoleConfig("scripted", {"default": "Hi."})}))
    header, records, summary = read_run(result.run_dir)
    assert header.roles["judge"].model == "scripted" and header.roles["judge"].model_args == {"default": "Score: 2"}
    assert header.roles["judge"].model_identity == header.model_identity
    assert records[0].outcome["judge"] == dict.fromkeys(DIMS, 2) and records[0].output == "Score: 2"
    assert summary.metrics["esc-eval-average"] == 2 and summary.metrics["esc-eval-score"] == 50 and summary.missing == {}


def test_bad_args_and_roles_raise_before_a_run_folder_is_made(tmp_path, data_root):
    for kw, message in (({"task_args": {"rounds": 0}}, "rounds"), ({"task_args": {"language": "fr"}}, "language"),
                        ({"roles": {"critic": RoleConfig("scripted")}}, "no role 'critic'"),
                        ({"task": "mesc", "task_args": {}, "roles": {"judge": RoleConfig("scripted")}}, "single-turn")):
        with pytest.raises(HarnessError, match=message):
            run(esc_config(tmp_path, data_root, **kw))
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- the command line


def test_cli_run_prints_the_metrics(tmp_path, data_root):
    out = CliRunner().invoke(main, ["run", "--task", "esc-eval", "--model", "scripted", "--model-args", "default=I am here for you.",
                                    "--seeker", "scripted", "--seeker-args", "default=I feel low.", "--judge", "scripted",
                                    "--judge-args", "default=Score: 3", "--limit", "2", "--output-dir", str(tmp_path / "runs"),
                                    "--cache", str(tmp_path / "cache.sqlite"), "--data-dir", str(data_root)])
    assert out.exit_code == 0, out.output
    lines = out.stdout.strip().splitlines()
    head, rows, run_dir = lines[0], lines[1:-1], lines[-1]
    calls, hits = (int(x) for x in head.removeprefix("2 samples; model calls ").split(", cache hits "))
    # each request is either asked or found; the two cards' seeker prompts differ (10 calls), while the model's and the
    # judge's requests are the same in both dialogues (5 + 7 at least once; twice when both dialogues ask at the same moment)
    assert calls + hits == 2 * (5 + 5 + 7) and 22 <= calls
    printed = {row.split()[0]: row.split()[1] for row in rows}
    assert printed == {**{f"esc-eval-{d}": "3.00" for d in DIMS}, "esc-eval-average": "3.00", "esc-eval-score": "75.00"}
    assert re.search(r"^  esc-eval-score +75\.00  \[75\.00, 75\.00\]$", out.stdout, re.MULTILINE)
    summary = json.loads((tmp_path / "runs" / run_dir.split("/")[-1] / "summary.json").read_text())
    assert summary["n"] == 2 and summary["missing"] == {}


def test_cli_shows_unparseable_judge_answers_as_missing_never_zero(tmp_path, data_root):
    out = CliRunner().invoke(main, ["run", "--task", "esc-eval", "--task-args", "rounds=1", "--model", "scripted", "--model-args", "echo=true",
                                    "--seeker", "scripted", "--seeker-args", "default=Hi.", "--judge", "scripted", "--judge-args",
                                    "default=I would rather not rate this.", "--limit", "1", "--output-dir", str(tmp_path / "runs"),
                                    "--data-dir", str(data_root)])
    assert out.exit_code == 0, out.output
    rows = {line.split()[0]: line.split(None, 1)[1] for line in out.stdout.strip().splitlines()[1:-1]}
    assert rows == dict.fromkeys(METRICS, "--  (1 of 1 missing)")
    summary = json.loads((Path(out.stdout.strip().splitlines()[-1]) / "summary.json").read_text())
    assert summary["metrics"] == {} and summary["missing"] == dict.fromkeys(METRICS, 1)


class KeyedScripted(ScriptedModel):
    """The scripted model with an API key, as a server adapter has."""

    name = "scripted-keyed"

    def __init__(self, context=None, api_key=None, **kwargs):
        super().__init__(context, **kwargs)
        self.api_key = api_key


def test_cli_seeker_secret_is_never_written_and_no_cache_keeps_the_calls(tmp_path, data_root, monkeypatch):
    monkeypatch.setitem(registry.models._extra, "scripted-keyed", KeyedScripted)
    secret = "sk-SEEKER-SECRET-4242"
    out = CliRunner().invoke(main, ["run", "--task", "esc-eval", "--task-args", "rounds=1", "--model", "scripted", "--model-args", "echo=true",
                                    "--seeker", "scripted-keyed", "--seeker-args", f"api_key={secret},default=Hello there.",
                                    "--judge", "scripted", "--judge-args", "default=Score: 1", "--limit", "1", "--no-cache",
                                    "--output-dir", str(tmp_path / "runs"), "--data-dir", str(data_root)])
    assert out.exit_code == 0, out.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    header = json.loads((run_dir / "run.json").read_text())
    assert header["roles"]["seeker"]["model"] == "scripted-keyed"
    assert header["roles"]["seeker"]["model_args"] == {"api_key": "<redacted>", "default": "Hello there."}
    assert header["roles"]["judge"]["model_args"] == {"default": "Score: 1"}
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"run.json", "samples.jsonl", "summary.json", "calls.sqlite"}
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
    assert secret not in out.output
    assert not (tmp_path / "responses.sqlite").exists()  # --no-cache: the shared cache is not touched


def test_cli_role_errors_are_one_line(tmp_path, data_root):
    for args, message in ((["--task", "esc-eval", "--seeker-args", "default=x"], "--seeker-args given without its model"),
                          (["--task", "mesc", "--judge", "scripted"], "single-turn")):
        out = CliRunner().invoke(main, ["run", "--model", "scripted", *args, "--output-dir", str(tmp_path / "runs"), "--data-dir", str(data_root)])
        assert out.exit_code == 2 and out.stderr.startswith("error: ") and message in out.stderr, out.output


@pytest.mark.parametrize("spec, args, expected", [
    ("openai:gpt-4o", "temperature=0.7", ("openai", {"model": "gpt-4o", "temperature": 0.7})),
    ("openai:gpt-4o", "model=gpt-4.1", ("openai", {"model": "gpt-4.1"})),  # an explicit model argument wins
    ("vllm:Qwen/Qwen2.5-7B-Instruct", None, ("vllm", {"model": "Qwen/Qwen2.5-7B-Instruct"})),
    ("openai:ft:gpt-4o:org:abc", None, ("openai", {"model": "ft:gpt-4o:org:abc"})),
    ("scripted", "default=Score: 3", ("scripted", {"default": "Score: 3"})),
    ("openai:", None, ("openai", {})),
])
def test_model_spec(spec, args, expected):
    assert model_spec(spec, args, "--judge-args") == expected


def test_model_spec_needs_the_model():
    with pytest.raises(HarnessError, match="--judge-args given without its model"):
        model_spec(None, "default=1", "--judge-args")


def test_scripted_run_gives_the_summary_it_gave_before_the_engine_moved_onto_graders(tmp_path, data_root):
    """Three demo cards, a scripted seeker and judge, one dialogue at a time: every value below was computed
    by hand and is what the harness printed before the ESC-Eval judge became a grader (issue 10)."""
    seeker = [f"I feel bad number {i}, really" for i in range(15)]
    judge = ["Score: 3", "Score: 2", "4", "Score: 1", "no idea", "Score: 0", "Score: 3"] * 3
    judge[9] = "Score: 10"  # dialogue 2's empathy: out of range, so missing
    (tmp_path / "seeker.json").write_text(json.dumps(seeker))
    (tmp_path / "judge.json").write_text(json.dumps(judge))
    out = CliRunner().invoke(main, ["run", "--task", "esc-eval", "--model", "scripted", "--model-args", "echo=true",
                                    "--seeker", "scripted", "--seeker-args", f"outputs={tmp_path / 'seeker.json'}",
                                    "--role", f"judge=scripted", "--role-args", f"judge=outputs={tmp_path / 'judge.json'}",
                                    "--task-args", "cards=test", "--concurrency", "1", "--no-cache", "--output-dir", str(tmp_path / "runs"),
                                    "--data-dir", str(data_root)])
    assert out.exit_code == 0, out.output
    run_dir = Path(out.stdout.strip().splitlines()[-1])
    summary = Summary.model_validate_json((run_dir / "summary.json").read_text())
    assert summary.metrics == pytest.approx({"esc-eval-fluency": 3.0, "esc-eval-expression": 2.0, "esc-eval-empathy": 4.0,
                                             "esc-eval-information": 1.0, "esc-eval-skill": 0.0, "esc-eval-overall": 3.0,
                                             "esc-eval-average": 13 / 6, "esc-eval-score": 25 * 13 / 6}, abs=1e-12)
    assert summary.missing == {"esc-eval-empathy": 1, "esc-eval-humanoid": 3}
    assert summary.intervals["esc-eval-average"] == pytest.approx((1.8, 13 / 6))  # dialogue 2 alone: (3+2+1+0+3)/5
    header = RunHeader.model_validate_json((run_dir / "run.json").read_text())
    assert list(header.roles) == ["seeker", "judge"] and header.status == "finished"
