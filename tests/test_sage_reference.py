"""SAGE published results: the leaderboard reproduced from the released files, end reasons, the
conversion to harness dialogue records, and the `harness sage rescore` command."""
import json
from fractions import Fraction

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.errors import HarnessError
from simulators.sage_reference import (
    PUBLISHED,
    band,
    half_up,
    read_results,
    rescore_file,
    to_dialogue,
)

# SAGE leaderboard (DeepSeek-V3 as the sentient agent): score, success, failure
LEADERBOARD = {
    "gpt-4.1_result.jsonl": (68.2, 35, 13),
    "claude3.7_result.jsonl": (54.8, 19, 24),
    "deepseek-v3-1227_result.jsonl": (37.6, 5, 39),
    "llama3.3-70b_result.jsonl": (33.3, 7, 47),
    "gpt-4o-0808_result.jsonl": (31.8, 7, 51),
    "openai-o1_result.jsonl": (29.0, 5, 51),
    "qwen2.5-72b_result.jsonl": (19.1, 4, 70),
}


@pytest.fixture(scope="module")
def reference(data_root):
    return data_root / "sage" / "reference"


@pytest.mark.parametrize("name", sorted(LEADERBOARD))
def test_rescore_reproduces_the_published_leaderboard(reference, name):
    result = rescore_file(reference / name)
    assert result.n == 100
    assert (result.score, result.success, result.failure) == LEADERBOARD[name]
    assert abs(result.score_exact - LEADERBOARD[name][0]) <= 0.05 + 1e-9  # rounding, nothing more
    assert sum(result.ends.values()) == 100
    assert PUBLISHED[name][1:] == LEADERBOARD[name]


def test_scores_round_half_up_not_as_python_round():
    # DeepSeek-V3's mean is exactly 37.55: the leaderboard prints 37.6, Python's round() 37.5
    assert round(37.55, 1) == 37.5 and round(33.25, 1) == 33.2 and round(28.95, 1) == 28.9
    assert half_up(Fraction(3755, 100)) == 37.6
    assert half_up(Fraction(3325, 100)) == 33.3
    assert half_up(Fraction(2895, 100)) == 29.0
    assert half_up(Fraction(6814, 100)) == 68.1


def test_end_reasons(reference):
    qwen = rescore_file(reference / "qwen2.5-72b_result.jsonl").ends
    assert qwen == {"success": 4, "failure": 70, "goodbye": 1, "turn_limit": 25}
    gpt41 = rescore_file(reference / "gpt-4.1_result.jsonl").ends
    assert gpt41 == {"success": 35, "failure": 13, "goodbye": 0, "turn_limit": 52}


def test_turn_limit_dialogues_have_ten_agent_turns(reference):
    for name in LEADERBOARD:
        for result in read_results(reference / name):
            turns, outcome = to_dialogue(result)
            if outcome["end"] == "turn_limit":  # the tenth reply is never read by the agent
                assert len(outcome["trajectory"]) == 10 and turns[-1].role == "supporter" and outcome["rounds"] == 10
                assert "emotion" not in turns[-1].details


def test_to_dialogue_first_gpt41_scenario(reference):
    first = read_results(reference / "gpt-4.1_result.jsonl")[0]
    turns, outcome = to_dialogue(first)
    assert outcome == {"final_emotion": 5, "end": "failure", "trajectory": [40, 35, 25, 15, 5], "rounds": 4, "language": "zh"}
    assert [t.role for t in turns] == ["seeker", "supporter"] * 4 + ["seeker"]
    assert turns[0].details == {"emotion": 40, "opening": True}
    # the agent's reaction sits on the reply it reacts to, as in the harness's own SAGE dialogues
    reaction = turns[1].details
    assert reaction["change"] == -5 and reaction["emotion"] == 35 and reaction["band"] == "C"
    assert reaction["thought"].startswith("王小云感到NPC的回复有些表面化")  # section label "心理活动]" removed
    assert reaction["feeling"].startswith("王小云感到有些失望")
    assert turns[2].details["emotion"] == 35 and turns[2].details["reply_plan"].startswith("1. 回复态度偏向")
    assert [t.details["emotion"] for t in turns if t.role == "supporter"] == [35, 25, 15, 5]
    assert turns[-1].text.endswith("再见。")


def test_bands_match_the_published_states(reference):
    for name in LEADERBOARD:
        for result in read_results(reference / name):
            assert result.emo_state == "Emotion-" + band(result.emo_point)


def test_think_copied_from_content_is_dropped(reference):
    # Llama3.3-70B's model turns carry `think`, a verbatim copy of the reply: nothing to keep
    results = read_results(reference / "llama3.3-70b_result.jsonl")
    with_think = [t for r in results for t in r.history if t.think is not None]
    assert with_think and all(t.think == t.content for t in with_think)
    assert not any("thinking" in t.details for r in results for t in to_dialogue(r)[0])


def _line(content="你好", final=35):
    return json.dumps(
        {
            "id": "x1",
            "emo_point": final,
            "emo_state": "Emotion-C",
            "history": [
                {"role": "user", "content": content, "emotion-point": 40},
                {"role": "assistant", "content": "我在听。"},
                {"role": "user", "content": "嗯。", "emotion-point": 35, "thinking": "t",
                 "planning": {"activity": "心理活动]\n还行", "analyse": "x]\n一般", "change": -5}},
            ],
        },
        ensure_ascii=False,
    )


def test_lines_split_on_newline_only(tmp_path):
    text = _line(content="第一句\u2028第二句") + "\n" + _line() + "\n"
    assert len(text.splitlines()) == 3  # what str.splitlines would do
    path = tmp_path / "m_result.jsonl"
    path.write_text(text, encoding="utf-8")
    results = read_results(path)
    assert len(results) == 2 and results[0].history[0].content == "第一句\u2028第二句"
    turns, outcome = to_dialogue(results[0])
    assert outcome == {"final_emotion": 35, "end": "goodbye", "trajectory": [40, 35], "rounds": 1, "language": "zh"}
    assert turns[1].details == {"thought": "还行", "feeling": "一般", "change": -5, "emotion": 35, "band": "C"}
    assert turns[2].details == {"emotion": 35, "reply_plan": "t"}


@pytest.mark.parametrize(
    "bad, message",
    [
        ("{not json", "not a JSON object"),
        ('{"id": "x", "emo_point": 5}', "field 'history'"),
        (_line(final=50), "emo_point 50 differs from the last agent emotion-point 35"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, bad, message):
    path = tmp_path / "bad_result.jsonl"
    path.write_text(_line() + "\n" + bad + "\n", encoding="utf-8")
    with pytest.raises(HarnessError) as info:
        read_results(path)
    text = str(info.value)
    assert f"{path}:2:" in text and message in text and "\n" not in text


def test_cli_json_one_file(reference):
    out = CliRunner().invoke(main, ["sage", "rescore", "--json", str(reference / "gpt-4.1_result.jsonl")])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.output)
    assert {k: payload[k] for k in ("score", "success", "failure")} == {"score": 68.2, "success": 35, "failure": 13}
    assert payload["score_exact"] == 68.15 and payload["n"] == 100


def test_cli_json_several_files_keyed_by_name(reference):
    files = [str(reference / n) for n in ("openai-o1_result.jsonl", "qwen2.5-72b_result.jsonl")]
    out = CliRunner().invoke(main, ["sage", "rescore", "--json", *files])
    assert out.exit_code == 0, out.output
    payload = json.loads(out.output)
    assert list(payload) == ["openai-o1_result.jsonl", "qwen2.5-72b_result.jsonl"]
    assert payload["openai-o1_result.jsonl"]["score"] == 29.0
    assert payload["qwen2.5-72b_result.jsonl"]["ends"]["goodbye"] == 1


def test_cli_table(reference):
    out = CliRunner().invoke(main, ["sage", "rescore", *sorted(str(p) for p in reference.glob("*_result.jsonl"))])
    assert out.exit_code == 0, out.output
    lines = out.output.strip().split("\n")
    assert len(lines) == 8 and lines[0].split()[:4] == ["file", "model", "n", "score"]
    assert all(line.split()[-1] == "match" for line in lines[1:])
    gpt41 = next(line for line in lines if line.startswith("gpt-4.1"))
    assert gpt41.split()[1:6] == ["GPT-4.1", "100", "68.2", "35", "13"]


def test_cli_malformed_file_is_one_error_line(tmp_path):
    path = tmp_path / "bad_result.jsonl"
    path.write_text("{oops\n", encoding="utf-8")
    out = CliRunner().invoke(main, ["sage", "rescore", str(path)])
    assert out.exit_code == 2
    assert out.output.strip().startswith(f"error: {path}:1:") and out.output.strip().count("\n") == 0
