"""The COMPEER recipe chained on CPU, each stage reading what the previous one wrote: compeer-data (scripted
teacher) -> an LLM rater labels the rows (compeer-annotate judge, import --judges-label) -> compeer-reward (a tiny
reward model, 2 steps, rows held out) -> compeer-reward-eval on the held-out rows -> compeer-grpo with that reward
model as the in-process judge and the redundancy reweighting (2 steps) -> the policy plays an ESC-Eval dialogue."""
import json

import pytest
from click.testing import CliRunner

pytest.importorskip("trl")

from test_compeer_grpo import Stub  # noqa: E402
from test_hf_model import build_text_model  # noqa: E402

from baselines import trainkit  # noqa: E402
from baselines.compeer import annotate, data, embed  # noqa: E402
from harness import registry  # noqa: E402
from harness.cli import main  # noqa: E402
from harness.lifecycle import ModelSpec  # noqa: E402
from harness.training import read_record  # noqa: E402
from tasks.compeer_reasoning import render_output  # noqa: E402

COMMANDS = ("compeer-data", "compeer-reward", "compeer-reward-eval", "compeer-grpo")


@pytest.fixture
def commands():
    from baselines.compeer.datagen import compeer_data
    from baselines.compeer.grpo import compeer_grpo
    from baselines.compeer.reward import compeer_reward, compeer_reward_eval

    for name, command in zip(COMMANDS, (compeer_data, compeer_reward, compeer_reward_eval, compeer_grpo)):
        registry.recipes.register(name, command)
    embed.set_default_encoder(Stub())
    yield
    embed.set_default_encoder(None)
    for name in COMMANDS:
        registry.recipes._extra.pop(name, None)


def invoke(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result


def test_the_recipe_chained_from_data_to_an_esc_eval_dialogue(commands, tmp_path, data_root):
    answer = render_output("the exam.", "exploration", "negative", "fear", "high", "open question", "to hear more", "What happened then?")
    cer = tmp_path / "cer"
    invoke(["train", "compeer-data", "--teacher", "scripted", "--teacher-args", f"default={answer}", "--out", str(cer), "--source", "esconv",
            "--limit-dialogues", "3", "--data-dir", str(data_root), "--no-cache"])
    manifest, rows = data.read_rows(cer)
    assert manifest.status == "finished" and len(rows) == 9 and all(r.response == "What happened then?" for r in rows)

    # no people: an LLM rater fills the sheet and its labels become the final ones
    sheets = tmp_path / "sheets"
    sheets.mkdir()
    exported = annotate.export(cer, sheets / "cer.xlsx", raters=1, seed=0)
    script = tmp_path / "rater.json"
    verdicts = []
    for i, key_row in enumerate(exported.key.rows):
        model_first = key_row.response_1 == "model"
        preference = ("Response 1" if model_first else "Response 2") if i % 3 else ("Response 2" if model_first else "Response 1")
        verdicts += ["Verdict: True", "Verdict: True" if i % 2 else "Verdict: False", "Verdict: True", f"Verdict: {preference}"]
    script.write_text(json.dumps(verdicts))
    annotate.judge(exported.sheet, exported.key_path, ModelSpec("scripted", {"outputs": str(script)}), sheets / "judged.xlsx")
    annotate.import_sheets([sheets / "judged.xlsx"], exported.key_path, cer, judges_label=True)
    _, rows = data.read_rows(cer)
    assert all(r.annotations.final_steps is not None and r.annotations.final_preference in ("model_better", "original_better") for r in rows)

    base = build_text_model(tmp_path / "tiny")
    invoke(["train", "compeer-reward", "--data", str(cer), "--base", str(base), "--output-dir", str(tmp_path / "rm"), "--set", "batch_size=4",
            "--per-device-batch", "2", "--set", "held_out=3", "--max-steps", "2", "--dtype", "float32"])
    (reward_model,) = [p.parent for p in (tmp_path / "rm").glob("*/train.json")]
    assert read_record(reward_model).config["held_out_rows"] == 3
    report = json.loads(invoke(["train", "compeer-reward-eval", "--data", str(reward_model / "held_out.jsonl"), "--judge", "hf",
                                "--judge-args", f"model={reward_model},device=cpu", "--json", "--no-cache"]).stdout)
    assert report["rows"] == 3 and {"step1", "step2", "step3", "response"} <= set(report)

    invoke(["train", "compeer-grpo", "--data", str(cer), "--base", str(base), "--judge", "hf", "--judge-args", f"model={reward_model},device=cpu",
            "--output-dir", str(tmp_path / "policy"), "--set", "batch_size=4", "--per-device-batch", "4", "--set", "max_completion_length=12",
            "--max-steps", "2", "--dtype", "float32"])
    (policy,) = [p.parent for p in (tmp_path / "policy").glob("*/train.json")]
    record = read_record(policy)
    assert record.reward["judge"]["judge"]["identity"]["train_id"] == read_record(reward_model).train_id  # the trained reward model judged
    logged = [e for e in trainkit.read_log(policy) if "reward" in e]
    assert len(logged) == 2 and all("compeer/reward_raw" in e and "compeer/s_in" in e for e in logged)

    seeker = tmp_path / "seeker.json"
    seeker.write_text(json.dumps(["I feel bad."]))
    invoke(["run", "--task", "esc-eval", "--task-args", "cards=test,rounds=1,prompt=compeer", "--limit", "1", "--model", "hf",
            "--model-args", f"model={policy},device=cpu,max_tokens=8", "--seeker", "scripted", "--seeker-args", f"outputs={seeker}",
            "--role", "judge=scripted", "--role-args", "judge=default=Score: 3", "--no-cache", "--output-dir", str(tmp_path / "runs"),
            "--data-dir", str(data_root)])
