"""The FIRES GRPO reward (baselines/fires/reward.py) against hand-computed values: the format gate, ROUGE-L with
beta 1, DIFF-EPITOME from stub levels and its threshold, the TRL reward functions, batching of the classifiers,
the w/o-SSR ablation, and `harness train fires-reward`."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import harness.cli
from baselines.epitome import metric
from baselines.fires.reward import FiresReward, RewardBreakdown, RewardWeights, fires_reward
from harness import registry
from harness.contract import ScoredPair, Turn
from harness.errors import HarnessError
from harness.metrics.lexical import rouge_l_f, tokenize


class StubLevels:
    """Levels (ER, IP, EX) per response text (0 for any other text); counts calls per mechanism."""

    def __init__(self, levels: dict[str, tuple[int, int, int]]):
        self.levels = levels
        self.calls = {m: 0 for m in metric.MECHANISMS}
        self.seekers: list[str] = []

    def predict(self, mechanism, seekers, responses):
        assert len(seekers) == len(responses)
        self.calls[mechanism] += 1
        self.seekers += list(seekers)
        index = metric.MECHANISMS.index(mechanism)
        return [self.levels.get(r, (0, 0, 0))[index] for r in responses]

    def describe(self):
        return {"classifier": "stub@0000"}


class NeverCalled:
    def predict(self, mechanism, seekers, responses):
        raise AssertionError("the classifiers must not be called")

    def describe(self):
        raise AssertionError("the classifiers must not be described")


@pytest.fixture(autouse=True)
def _no_predictor_override():
    yield
    metric.set_predictor(None)
    metric._loaded.clear()


def ok(response: str, thinking: str = "Emotion: sad.") -> str:
    return f"<think> {thinking} </think><response> {response} </response>"


REF = "i feel sad today"  # tokens: i feel sad today
LEVELS = {
    REF: (0, 0, 0),
    "one each": (1, 1, 1),  # DE = (1 + 1 + 1) / 3 = 1 -> support 1
    "two on er": (2, 0, 0),  # DE = 4 / 3 -> support 0
    "one on ip": (0, 1, 0),  # DE = 1 / 3
}


# --------------------------------------------------------------------------- the format gate


@pytest.mark.parametrize("completion", [
    "i feel sad today",  # no tags
    "<response> i feel sad today </response>",  # no thinking
    "<think> t </think> i feel sad today",  # no response tags
    "<think> t </think><response> i feel sad today",  # response never closed
    "Sure! " + ok(REF),  # text before
    ok(REF) + " hope this helps",  # text after
    "<think> t </think> so: <response> i feel sad today </response>",  # text between
    ok(REF) + "<response> again </response>",  # two response blocks
    "<think> t </think><think> u </think><response> i feel sad today </response>",  # two think blocks
    "<think> a <think> b </think> </think><response> i feel sad today </response>",  # nested think
    "<think> t </think><response> i <response> feel </response> sad </response>",  # nested response
    "<think> t <response> x </think><response> i feel sad today </response>",  # a response tag inside the thought
    "<think> t </think><response>   </response>",  # empty response
    "",
])
def test_a_bad_format_gets_nothing(completion):
    stub = StubLevels(LEVELS)
    (b,) = FiresReward(classifiers=stub).score([completion], [REF], ["I lost my job."])
    assert (b.reward, b.format_ok, b.rouge_l, b.diff_epitome, b.support_skill) == (0.0, False, None, None, None)
    assert stub.calls == {"ER": 0, "IP": 0, "EX": 0}  # nothing to classify
    functions, _ = FiresReward(classifiers=stub).trl_reward_functions()
    assert [f(prompts=["p"], completions=[completion], completion_ids=[[1]], reference=[REF], context=["c"]) for f in functions] == [[0.0]] * 3


def test_whitespace_around_and_between_the_blocks_is_fine():
    (b,) = FiresReward(classifiers=StubLevels(LEVELS)).score(["\n <think>t</think>\n\n<response>i feel sad today</response>\n"], [REF], ["c"])
    assert b.format_ok and b.response == REF and b.rouge_l == 1.0


# --------------------------------------------------------------------------- the components


def test_a_copy_of_the_reference_gets_everything():
    stub = StubLevels(LEVELS)
    (b,) = FiresReward(classifiers=stub).score([ok(REF)], [REF], ["I lost my job."])
    assert (b.format_ok, b.rouge_l, b.diff_epitome, b.support_skill, b.response) == (True, 1.0, 0.0, 1.0, REF)
    assert b.reward == 0.1 * 1.0 + 1.0 * 1.0 + 0.1 * 1.0 == pytest.approx(1.2)
    assert set(stub.seekers) == {"I lost my job."}  # levels are predicted given the context


def test_rouge_l_is_the_lcs_f1_not_the_metric_beta():
    # response: i am very sad today (5 tokens); reference: i feel sad today (4); LCS i, sad, today = 3
    # P = 3/5, R = 3/4; F1 = 2PR / (P + R) = 2 * 3 / (5 + 4) = 2/3
    # beta 1.2 (the evaluation metric): (1 + 1.44) * 0.45 / (0.75 + 1.44 * 0.6) = 1.098 / 1.614 = 0.6803
    (b,) = FiresReward(classifiers=StubLevels(LEVELS)).score([ok("i am very sad today")], [REF], ["c"])
    assert b.rouge_l == pytest.approx(2 / 3)
    assert rouge_l_f(tokenize("i am very sad today"), tokenize(REF)) == pytest.approx(1.098 / 1.614)
    assert abs(b.rouge_l - 1.098 / 1.614) > 0.01
    assert b.reward == pytest.approx(0.1 + 2 / 3 + 0.1)  # DE 0 (unknown text: levels 0, as the reference)


def test_rouge_l_uses_the_harness_tokens():
    # nltk.word_tokenize on lower-cased text: "Today." -> today .; reference i feel sad today
    # response "I feel SAD Today." -> i feel sad today . (5), LCS 4: P 4/5, R 1, F1 = 8 / 9
    (b,) = FiresReward(classifiers=StubLevels(LEVELS)).score([ok("I feel SAD Today.")], [REF], ["c"])
    assert b.rouge_l == pytest.approx(8 / 9)


@pytest.mark.parametrize("response, de, support", [
    ("one each", 1.0, 1.0),  # at the threshold: rewarded
    ("two on er", 4 / 3, 0.0),  # just above: not
    ("one on ip", 1 / 3, 1.0),
])
def test_the_support_skill_threshold(response, de, support):
    (b,) = FiresReward(classifiers=StubLevels(LEVELS)).score([ok(response)], [REF], ["c"])
    assert b.diff_epitome == pytest.approx(de) and b.support_skill == support
    assert b.rouge_l == 0.0  # no token in common with the reference
    assert b.reward == 0.1 * 1.0 + 1.0 * 0.0 + 0.1 * support


def test_de_is_diff_epitomes_per_sample_value():
    stub = StubLevels({**LEVELS, "another ref": (2, 2, 1), "x": (0, 2, 2)})
    responses, references, contexts = ["one each", "two on er", "x", "one on ip"], [REF, REF, "another ref", "another ref"], ["a", "b", "c", "d"]
    got = FiresReward(classifiers=stub).score([ok(r) for r in responses], references, contexts)
    metric.set_predictor(stub)
    pairs = [ScoredPair(r, ref, history=(Turn(speaker="Client", text=c),)) for r, ref, c in zip(responses, references, contexts)]
    assert [b.diff_epitome for b in got] == metric.DIFF_EPITOME.compute(pairs).per_sample
    assert [b.diff_epitome for b in got] == pytest.approx([1.0, 4 / 3, (4 + 0 + 1) / 3, (4 + 1 + 1) / 3])


def test_weights_are_applied():
    w = RewardWeights(format=0.5, rouge=2.0, support_skill=0.25)
    (b,) = FiresReward(w, classifiers=StubLevels(LEVELS)).score([ok("i am very sad today")], [REF], ["c"])
    assert b.reward == 0.5 * 1.0 + 2.0 * b.rouge_l + 0.25 * 1.0


# --------------------------------------------------------------------------- batching and TRL


BATCH = [ok(REF), ok("one each"), "no tags at all", ok("two on er"), ok("i am very sad today"), ok(REF) + " trailing"]
REFS = [REF] * len(BATCH)
CONTEXTS = ["c1", "c1", "c2", "c2", "c3", "c3"]


def test_the_classifiers_run_once_per_mechanism_for_a_batch():
    stub = StubLevels(LEVELS)
    got = FiresReward(classifiers=stub).score(BATCH, REFS, CONTEXTS)
    assert stub.calls == {"ER": 1, "IP": 1, "EX": 1}
    assert [b.format_ok for b in got] == [True, True, False, True, True, False]
    assert [b.support_skill for b in got] == [1.0, 1.0, None, 0.0, 1.0, None]
    assert [b.reward for b in got][2] == 0.0 and got[5].reward == 0.0


def _weighted(functions, weights, completions, **columns):
    values = [f(prompts=["p"] * len(completions), completions=completions, completion_ids=[[0]] * len(completions), **columns)
              for f in functions]
    return values, [sum(w * v[i] for w, v in zip(weights, values)) for i in range(len(completions))]


@pytest.mark.parametrize("conversational", [False, True])
def test_trl_functions_sum_to_the_reward_and_share_one_scoring(conversational):
    stub = StubLevels(LEVELS)
    reward = FiresReward(classifiers=stub)
    functions, weights = reward.trl_reward_functions()
    assert [f.__name__ for f in functions] == ["format", "rouge_l", "support_skill"] and weights == [0.1, 1.0, 0.1]
    completions = [[{"role": "assistant", "content": c}] for c in BATCH] if conversational else list(BATCH)
    logged = []
    values, summed = _weighted(functions, weights, completions, reference=REFS, context=CONTEXTS, trainer_state=None,
                               log_extra=lambda *a: None, log_metric=lambda name, value: logged.append((name, value)))
    assert stub.calls == {"ER": 1, "IP": 1, "EX": 1}  # the three functions, one classifier run
    expected = FiresReward(classifiers=StubLevels(LEVELS)).score(BATCH, REFS, CONTEXTS)
    assert summed == [b.reward for b in expected]  # exactly: the same products in the same order
    assert values[0] == [1.0, 1.0, 0.0, 1.0, 1.0, 0.0] and values[2] == [1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    assert values[1] == [b.rouge_l or 0.0 for b in expected]
    assert logged == [("diff_epitome", pytest.approx((0 + 1 + 4 / 3 + 0) / 4))]
    import torch  # TRL's own sum: (rewards_per_func * reward_weights).nansum(dim=1), float32

    trl = (torch.tensor(values, dtype=torch.float32).T * torch.tensor(weights)).nansum(dim=1)
    assert trl.tolist() == pytest.approx([b.reward for b in expected], abs=1e-6)
    # a new batch: one more run
    _weighted(functions, weights, completions[:2], reference=REFS[:2], context=["other", "other"])
    assert stub.calls == {"ER": 2, "IP": 2, "EX": 2}


def test_trl_content_parts_and_missing_columns():
    reward = FiresReward(classifiers=StubLevels(LEVELS))
    functions, _ = reward.trl_reward_functions()
    parts = [[{"role": "assistant", "content": [{"type": "text", "text": ok(REF)}]}]]
    assert functions[1](prompts=["p"], completions=parts, completion_ids=[[0]], reference=[REF], context=["c"]) == [1.0]
    with pytest.raises(HarnessError, match="no 'context' column"):
        functions[0](prompts=["p"], completions=[ok(REF)], completion_ids=[[0]], reference=[REF])


def test_lengths_must_match():
    with pytest.raises(HarnessError, match="one reference and one context per completion"):
        FiresReward(classifiers=StubLevels(LEVELS)).score([ok(REF)], [REF, REF], ["c"])
    assert FiresReward(classifiers=NeverCalled()).score([], [], []) == []


# --------------------------------------------------------------------------- w/o-SSR, identity, the default classifiers


def test_without_support_skill_the_classifiers_are_never_used():
    reward = FiresReward(classifiers=NeverCalled(), support_skill=False)
    got = reward.score([ok(REF), ok("two on er"), "bad"], [REF] * 3, ["c"] * 3)
    assert [(b.reward, b.rouge_l, b.diff_epitome, b.support_skill) for b in got] == [
        (0.1 * 1.0 + 1.0 * 1.0 + 0.1 * 0.0, 1.0, None, 0.0), (0.1 + 0.0 + 0.0, 0.0, None, 0.0), (0.0, None, None, None)]
    functions, weights = reward.trl_reward_functions()
    _, summed = _weighted(functions, weights, [ok(REF)], reference=[REF], context=["c"], log_metric=lambda *a: pytest.fail("logged"))
    assert summed == [got[0].reward]
    assert reward.describe()["classifier"] is None and reward.describe()["support_skill"] is False
    # nor are the default ones looked for (none are built under the tests' EPITOME home)
    assert FiresReward(support_skill=False).score([ok(REF)], [REF], ["c"])[0].reward == got[0].reward


def test_describe():
    d = FiresReward(classifiers=StubLevels(LEVELS)).describe()
    assert d["weights"] == {"format": 0.1, "rouge": 1.0, "support_skill": 0.1}
    assert d["rouge_l"] == {"measure": "LCS F-measure", "beta": 1.0, "scale": "0-1", "tokenizer": "harness.metrics.lexical.tokenize"}
    assert d["support_skill_threshold"] == 1.0 and d["support_skill"] is True and d["classifier"] == "stub@0000"
    assert json.loads(json.dumps(d)) == d


def test_the_default_classifiers_are_diff_epitomes():
    stub = StubLevels(LEVELS)
    metric.set_predictor(stub)
    reward = FiresReward()
    assert reward.describe()["classifier"] == metric.DIFF_EPITOME.info()["classifier"] == "stub@0000"
    assert reward.score([ok("two on er")], [REF], ["c"])[0].diff_epitome == pytest.approx(4 / 3)


def test_unbuilt_classifiers_say_to_train_them():
    reward = FiresReward()  # conftest points $ESC_HARNESS_EPITOME at a folder that is never built
    assert reward.score(["bad format"], [REF], ["c"])[0].reward == 0.0  # nothing to classify: not looked up
    with pytest.raises(HarnessError, match=r"run `harness epitome train` first") as exc:
        reward.score([ok(REF)], [REF], ["c"])
    assert "\n" not in str(exc.value) and "--no-support-skill" in str(exc.value)
    with pytest.raises(HarnessError, match=r"run `harness epitome train` first"):
        FiresReward().describe()


# --------------------------------------------------------------------------- harness train fires-reward


@pytest.fixture
def command():
    registry.recipes.register("fires-reward", fires_reward)
    yield
    registry.recipes._extra.pop("fires-reward", None)


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _invoke(*args):
    return CliRunner().invoke(harness.cli.main, ["train", "fires-reward", *args])


ROWS = [{"completion": ok(REF), "reference": REF, "context": "c1"},
        {"completion": ok("two on er"), "reference": REF, "context": "c1", "extra": 1},
        {"completion": "no tags", "reference": REF, "context": "c2"}]


def test_the_command_prints_json_lines_and_the_means(command, tmp_path):
    metric.set_predictor(StubLevels(LEVELS))
    out = _invoke("--input", str(_write(tmp_path / "in.jsonl", ROWS)), "--json")
    assert out.exit_code == 0, out.output
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert lines[:3] == [
        {"line": 1, "reward": 0.1 * 1.0 + 1.0 * 1.0 + 0.1 * 1.0, "format_ok": True, "rouge_l": 1.0, "diff_epitome": 0.0, "support_skill": 1.0},
        {"line": 2, "reward": 0.1, "format_ok": True, "rouge_l": 0.0, "diff_epitome": pytest.approx(4 / 3), "support_skill": 0.0},
        {"line": 3, "reward": 0.0, "format_ok": False, "rouge_l": None, "diff_epitome": None, "support_skill": None},
    ]
    assert lines[3] == {"n": 3, "mean": {"reward": pytest.approx((1.2 + 0.1) / 3), "format_ok": pytest.approx(2 / 3), "rouge_l": 0.5,
                                         "diff_epitome": pytest.approx(2 / 3), "support_skill": 0.5}}
    table = _invoke("--input", str(tmp_path / "in.jsonl"))
    assert table.exit_code == 0, table.output
    rows = table.stdout.splitlines()
    assert rows[0].split() == ["line", "reward", "format_ok", "rouge_l", "diff_epitome", "support_skill"]
    assert rows[1].split() == ["1", "1.2000", "yes", "1.0000", "0.0000", "1.0000"]
    assert rows[3].split() == ["3", "0.0000", "no", "-", "-", "-"]
    assert rows[4].split() == ["mean", "(3)", "0.4333", "0.6667", "0.5000", "0.6667", "0.5000"]


def test_the_command_without_support_skill_needs_no_classifiers(command, tmp_path):
    out = _invoke("--input", str(_write(tmp_path / "in.jsonl", ROWS)), "--json", "--no-support-skill")
    assert out.exit_code == 0, out.output
    first = json.loads(out.stdout.splitlines()[0])
    assert first == {"line": 1, "reward": 0.1 + 1.0 + 0.0, "format_ok": True, "rouge_l": 1.0, "diff_epitome": None, "support_skill": 0.0}


@pytest.mark.parametrize("lines, where, says", [
    ([ROWS[0], "{not json"], ":2:", "not JSON"),
    ([ROWS[0], "", {"completion": "x", "reference": "y"}], ":3:", "missing 'context'"),
    ([{"completion": "x", "reference": 3, "context": "c"}], ":1:", "'reference' must be a string, got int"),
    ([ROWS[0], "[1, 2]"], ":2:", "a JSON object"),
    ([], "", "no lines to score"),
    (["", "  "], "", "no lines to score"),
])
def test_the_command_refuses_bad_input_in_one_line(command, tmp_path, lines, where, says):
    path = _write(tmp_path / "in.jsonl", lines)
    out = _invoke("--input", str(path))
    assert out.exit_code == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and out.stderr.startswith(f"error: {path}{where}") and says in out.stderr


def test_the_command_refuses_a_missing_file_and_unbuilt_classifiers(command, tmp_path):
    out = _invoke("--input", str(tmp_path))
    assert out.exit_code == 2 and out.stderr == f"error: {tmp_path}: not a file; give a JSONL file of {{\"completion\", \"reference\", \"context\"}} lines.\n"
    out = _invoke("--input", str(_write(tmp_path / "in.jsonl", ROWS)))
    assert out.exit_code == 2 and out.stderr.count("\n") == 1 and "run `harness epitome train` first" in out.stderr


def test_breakdown_fields():
    assert list(RewardBreakdown.__dataclass_fields__) == ["reward", "format_ok", "rouge_l", "diff_epitome", "support_skill", "response"]
