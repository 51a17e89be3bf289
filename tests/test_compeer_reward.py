"""UnifiReward: the judge conversation, verdict parsing, the scalar reward, Table 1's metrics against hand values,
and `compeer-reward` / `compeer-reward-eval` on CPU with a tiny model built here."""
import json

import pytest
from click.testing import CliRunner

from baselines.compeer import data, unifireward as ur
from harness import registry
from harness.cli import main
from harness.contract import ModelOutput, Turn

HISTORY = [Turn(speaker="seeker", text="I failed my exam and my parents will be furious."), Turn(speaker="supporter", text="That sounds hard.")]


def row(i, steps=(True, True, False), preference="model_better"):
    return data.CerRow(id=f"esconv/train/d{i:04d}/t03", source="esconv", dialogue=f"d{i:04d}", round=3, history=HISTORY,
                       steps=[f"Core issue: exam {i}. Stage: exploration", "Sentiment: negative; Emotion: fear; Intensity: high",
                              "Strategy: reflection of feelings"],
                       response="You are scared of how they will react.", original="What happened in the exam?",
                       annotations=data.Annotations(final_steps=list(steps) if steps else None, final_preference=preference))


class Judge:
    """Answers each round from a script keyed by the question, and records the conversations it was shown."""

    def __init__(self, answers):
        self.answers, self.seen = answers, []

    def __call__(self, requests):
        out = []
        for request in requests:
            self.seen.append(request)
            question = request.messages[-1].content
            key = "response" if "Compare them" in question else f"step{question.split('Step ')[1][0]}"
            out.append(ModelOutput(choices=[self.answers[key]]))
        return out


def test_verdicts_parse_in_english_and_chinese_and_unreadable_is_none():
    assert [ur.parse_step(t) for t in ("True", "true.", "Answer: False", "正确", "错误", "No, it misses the stage", "maybe", "")] == \
        [True, True, False, True, False, False, None, None]
    assert [ur.parse_preference(t) for t in ("better", "Equal - both fine", "WORSE", "neither", "Verdict: better", "the first one", "")] == \
        ["model_better", "both_good", "original_better", "neither", "model_better", None, None]


def test_the_reward_adds_the_three_criteria():
    judge = Judge({"step1": "True", "step2": "False", "step3": "True", "response": "equal"})
    item = ur.Item(HISTORY, ["a", "b", "c"], "resp", "ref")
    (j,) = ur.judge([item], judge)
    assert j.steps == [True, False, True] and j.preference == "both_good" and j.complete
    assert j.reward == 1 - 1 + 1 + 1 + 1  # steps, response matches the reference, complete
    # the fourth round carries the judge's own three verdicts, the history only in the first question
    last = judge.seen[-1].messages
    assert [m.role for m in last] == ["system", "user", "assistant", "user", "assistant", "user", "assistant", "user"]
    assert [m.content for m in last if m.role == "assistant"] == ["True", "False", "True"]
    assert "I failed my exam" in last[1].content and "I failed my exam" not in last[3].content
    # a missing step is not asked and scores -1, as does incompleteness; an unreadable verdict is -1 and counted
    judge = Judge({"step1": "hmm", "step3": "True", "response": "worse"})
    (j,) = ur.judge([ur.Item(HISTORY, ["a", None, "c"], "resp", "ref")], judge)
    assert j.steps == [None, None, True] and j.unreadable == 1 and not j.complete
    assert j.reward == -1 - 1 + 1 - 1 - 1
    (p,) = ur.judge([item], Judge({"step1": "True", "step2": "True", "step3": "True"}), kind="prm")
    (o,) = ur.judge([item], Judge({"response": "neither"}), kind="orm")
    assert (p.reward, o.reward, p.preference) == (3, -1, None)


def test_training_examples_are_one_round_each_with_the_annotated_verdicts_before():
    examples, unlabelled = ur.sft_rows([row(1), row(2, steps=None)])
    assert unlabelled == 1 and len(examples) == 4
    assert [e["completion"][0]["content"] for e in examples] == ["True", "True", "False", "better"]
    assert [m["content"] for m in examples[3]["prompt"] if m["role"] == "assistant"] == ["True", "True", "False"]


def test_table1_metrics_against_hand_values():
    rows = [row(1, (True, True, True), "model_better"), row(2, (False, True, True), "original_better"),
            row(3, (True, False, True), "both_good"), row(4, (False, True, False), "neither")]
    judged = [ur.Judged([True, True, True], "model_better", True, 0), ur.Judged([True, True, False], "original_better", True, 0),
              ur.Judged([True, False, True], "model_better", True, 0), ur.Judged([False, None, False], "neither", True, 0, unreadable=1)]
    report = ur.evaluate(rows, judged)
    # step 1: gold T F T F, pred T T T F -> False recall 1/2; weighted F1 = (2 * F1(True) + 2 * F1(False)) / 4
    f1_true, f1_false = 2 * (2 / 3) * 1 / (2 / 3 + 1), 2 * 1 * 0.5 / 1.5
    assert report["step1"]["false_recall"] == pytest.approx(50.0)
    assert report["step1"]["weighted_f1"] == pytest.approx(100 * (f1_true + f1_false) / 2)
    # step 2: gold T T F T, pred T T F unreadable: the unreadable verdict is its own (wrong) class
    assert report["step2"]["false_recall"] == pytest.approx(100.0)
    assert report["response"]["accuracy"] == pytest.approx(75.0) and report["unreadable"] == 1


@pytest.fixture
def commands():
    from baselines.compeer.reward import compeer_reward, compeer_reward_eval

    registry.recipes.register("compeer-reward", compeer_reward)
    registry.recipes.register("compeer-reward-eval", compeer_reward_eval)
    yield
    registry.recipes._extra.pop("compeer-reward", None)
    registry.recipes._extra.pop("compeer-reward-eval", None)


def test_reward_model_trains_and_is_evaluated_as_any_judge(commands, tmp_path):
    pytest.importorskip("trl")
    from test_hf_model import build_text_model

    from harness.training import read_record

    folder = tmp_path / "cer"
    folder.mkdir()
    data.write_rows(folder / data.ROWS, [row(i, (True, i % 2 == 0, True), "model_better" if i % 3 else "neither") for i in range(6)])
    base = build_text_model(tmp_path / "tiny")
    result = CliRunner().invoke(main, ["train", "compeer-reward", "--data", str(folder), "--base", str(base), "--output-dir", str(tmp_path / "ckpt"),
                                       "--set", "batch_size=4", "--per-device-batch", "2", "--set", "held_out=2", "--max-steps", "2", "--dtype", "float32"])
    assert result.exit_code == 0, result.output
    (ckpt,) = [p.parent for p in (tmp_path / "ckpt").glob("*/train.json")]
    record = read_record(ckpt)
    assert (record.recipe, record.weights, record.status) == ("compeer-reward", "full", "finished")
    assert record.config["settings"]["learning_rate"] == 1e-5 and record.config["held_out_rows"] == 2
    _, held = data.read_rows(ckpt / "held_out.jsonl")
    assert len(held) == 2
    # the trained folder is a model: the hf adapter serves it as the judge (a random tiny model: verdicts unreadable, counted)
    result = CliRunner().invoke(main, ["train", "compeer-reward-eval", "--data", str(ckpt / "held_out.jsonl"), "--judge", "hf",
                                       "--judge-args", f"model={ckpt},device=cpu", "--json", "--no-cache"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows"] == 2 and report["unreadable"] == 8 and report["step1"]["n"] == 2
    # a scripted judge that is always right scores 100
    answers = tmp_path / "answers.json"
    script = [str(r.annotations.final_steps[k]) for k in range(3) for r in held]  # asked round by round, all rows each round
    answers.write_text(json.dumps(script))
    result = CliRunner().invoke(main, ["train", "compeer-reward-eval", "--data", str(ckpt / "held_out.jsonl"), "--judge", "scripted",
                                       "--judge-args", f"outputs={answers}", "--kind", "prm", "--json", "--no-cache"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["step1"]["weighted_f1"] == 100.0 and report["unreadable"] == 0
