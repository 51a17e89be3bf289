"""ESC-Eval and SAGE end to end with the real local LLM (SmolLM2-135M on llama.cpp) in every role.

Small on purpose (one dialogue each, short), but real: real dialogues, real judge answers and reactions.
The 135M model rarely follows the judge's or the agent's format; what the test holds the harness to is
that every answer lands somewhere - a score, or a counted missing score / malformed step - never lost.
"""
import json

import pytest

from harness.errors import HarnessError
from harness.runner import RunConfig, run

pytest.importorskip("xllamacpp", reason="needs xllamacpp: bash install.sh")
from harness.models.local_llama import default_gguf  # noqa: E402

try:
    default_gguf()
except HarnessError as exc:
    pytest.skip(str(exc), allow_module_level=True)

pytestmark = pytest.mark.slow
DIMENSIONS = ("fluency", "expression", "empathy", "information", "humanoid", "skill", "overall")


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


def test_esc_eval_with_local_model_in_every_role(tmp_path, data_root):
    result = run(RunConfig(task="esc-eval", model="local", model_args={"max_tokens_cap": 48, "parallel": 2}, task_args={"rounds": 1},
                           limit=1, data_dir=data_root, output_dir=tmp_path / "runs", cache_path=tmp_path / "cache.sqlite", resamples=100))
    (record,) = records(result.run_dir)
    roles = [t["role"] for t in record["dialogue"]]
    assert roles == ["supporter", "seeker", "supporter"]
    assert all(t["text"].strip() for t in record["dialogue"])  # the model really spoke in every turn
    judge = record["outcome"]["judge"]
    assert set(judge) == set(DIMENSIONS) and all(v is None or 0 <= v <= 4 for v in judge.values())
    assert all(record["outcome"]["judge_raw"][d] for d in DIMENSIONS)  # every raw answer is kept
    summary = result.summary
    for d in DIMENSIONS:  # each dimension is either scored or counted missing
        assert (f"esc-eval-{d}" in summary.metrics) != (summary.missing.get(f"esc-eval-{d}", 0) == 1)
    header = json.loads((result.run_dir / "run.json").read_text())
    assert set(header["roles"]) == {"seeker", "judge"} and header["roles"]["judge"]["model"] == "local"
    assert result.model_calls == 2 + 7  # one server serves every role: each call is made once


# The published scenarios run to ~5,000 SmolLM2 tokens per agent prompt (Chinese text), minutes per call on
# two busy cores; the CI test plays one short English scenario of the same shape instead (the real ones
# are played by hand and reported: README, SAGE).
SHORT_SCENARIO = {
    "id": "short-en-1", "player": "Name: Sam\nAge: 29\nJob: nurse\nSpeaks briefly and a little tired.",
    "scene": "Sam worked three night shifts in a row and a colleague took credit for Sam's idea in a meeting.",
    "main_cha": "negative", "cha_group": ["tired", "proud"], "task": "You want someone to acknowledge how unfair it was.",
    "first_talk": "Honestly, this week has been a mess.",
}


def test_sage_with_local_model_in_every_role(tmp_path, monkeypatch):
    (tmp_path / "data" / "sage").mkdir(parents=True)
    (tmp_path / "data" / "sage" / "simulator_profile_withfirsttalk.jsonl").write_text(json.dumps(SHORT_SCENARIO) + "\n")
    monkeypatch.setenv("ESC_HARNESS_ALLOW_MODIFIED_DATA", "1")
    result = run(RunConfig(task="sage", model="local", model_args={"max_tokens_cap": 48, "parallel": 1},
                           task_args={"max_turns": 2, "retries": 1}, limit=1, data_dir=tmp_path / "data", output_dir=tmp_path / "runs",
                           cache_path=tmp_path / "cache.sqlite", resamples=100))
    (record,) = records(result.run_dir)
    outcome = record["outcome"]
    reaction = record["dialogue"][1]["details"]
    assert [t["role"] for t in record["dialogue"]] == ["seeker", "supporter", "seeker"]
    assert reaction["attempts"] in (1, 2) and -10 <= reaction["change"] <= 10
    assert outcome["trajectory"] == [40, reaction["emotion"]] and outcome["final_emotion"] == reaction["emotion"]
    assert outcome["malformed_steps"] == int(reaction.get("malformed", False))
    assert outcome["language"] == "en" and result.summary.metrics["sage-score"] == outcome["final_emotion"]
