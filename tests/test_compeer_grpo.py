"""COMPEER GRPO on CPU: a tiny policy built here, a scripted judge, the redundancy reweighting, 2 steps; the saved
policy then plays ESC-Eval and SAGE dialogues with scripted seeker and judge, and gets a leaderboard row."""
import json

import pytest
from click.testing import CliRunner

pytest.importorskip("trl")

from test_hf_model import build_text_model  # noqa: E402

from baselines import trainkit  # noqa: E402
from baselines.compeer import data, embed  # noqa: E402
from baselines.compeer.grpo import JudgeReward, compeer_grpo  # noqa: E402
from harness import registry  # noqa: E402
from harness.cli import main  # noqa: E402
from harness.contract import ModelOutput, Turn  # noqa: E402
from harness.training import read_record  # noqa: E402

GOOD = ("<think>\nStep 1 (History): Core issue: exam. Stage: exploration\nStep 2 (Emotion): Sentiment: negative; Emotion: fear; "
        "Intensity: high\nStep 3 (Strategy): Strategy: open question. Why: to learn more\n</think>\n<response> What happened? </response>")


class Stub:
    """Stub embeddings (no MiniLM needed): a text's vector from its words."""

    name = "stub"

    def encode(self, texts):
        import numpy as np

        out = np.zeros((len(texts), 8))
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, sum(map(ord, w)) % 8] += 1
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


def rows(n):
    history = [Turn(speaker="usr", text="I failed my exam."), Turn(speaker="sys", text="That sounds hard."), Turn(speaker="usr", text="My parents will be angry.")]
    return [data.CerRow(id=f"esconv/train/d{i:04d}/t03", source="esconv", dialogue=f"d{i:04d}", round=3, history=history,
                        steps=["a", "b", "c"], response="r", original="What did they say last time?") for i in range(n)]


def test_the_judge_reward_parses_each_completion_and_scores_its_rounds():
    asked = []

    def answer(requests):
        asked.append(len(requests))
        return [ModelOutput(choices=["better" if "Compare them" in r.messages[-1].content else "True"]) for r in requests]

    reward = JudgeReward(answer)
    columns = {"reference": ["ref", "ref"], "history": [["hi"], ["hi"]], "speakers": [["usr"], ["usr"]]}
    assert reward(completions=[GOOD, "no format at all"], **columns) == [5.0, 1.0 - 3 - 1]  # steps 3 + response + complete; vs 3 missing steps, incomplete
    assert asked == [2, 1, 1, 1]  # round by round: round 1 holds both (the broken output has no steps: only its response is asked)


def test_compeer_grpo_trains_a_tiny_policy_that_then_plays_esc_eval_and_sage(tmp_path, data_root, monkeypatch):
    embed.set_default_encoder(Stub())
    registry.recipes.register("compeer-grpo", compeer_grpo)
    try:
        folder = tmp_path / "cer"
        folder.mkdir()
        data.write_rows(folder / data.ROWS, rows(4))
        policy = build_text_model(tmp_path / "policy")
        judge = tmp_path / "judge.json"
        judge.write_text(json.dumps([]))
        out = CliRunner().invoke(main, ["train", "compeer-grpo", "--data", str(folder), "--base", str(policy), "--judge", "scripted",
                                        "--judge-args", "default=True", "--output-dir", str(tmp_path / "ckpt"), "--set", "batch_size=4",
                                        "--per-device-batch", "4", "--set", "max_completion_length=12", "--max-steps", "2", "--dtype", "float32"])
        assert out.exit_code == 0, out.output
    finally:
        registry.recipes._extra.pop("compeer-grpo", None)
        embed.set_default_encoder(None)
    (ckpt,) = [p.parent for p in (tmp_path / "ckpt").glob("*/train.json")]
    record = read_record(ckpt)
    assert (record.recipe, record.weights, record.config["variant"]) == ("compeer-grpo", "full", "URP")
    settings = record.config["settings"]
    assert (settings["num_generations"], settings["learning_rate"], settings["beta"], settings["alpha"], settings["length_beta"]) == (4, 1e-6, 0.0, 0.5, 5.0)
    steps = [e for e in trainkit.read_log(ckpt) if "reward" in e]
    assert [e["step"] for e in steps] == [1, 2]
    assert all(any(k.startswith("reweight") or "s_in" in k for k in e) for e in steps), steps[0]  # the redundancy terms are logged

    # the trained policy is a model: one ESC-Eval dialogue and one SAGE dialogue in the COMPEER reasoning mode
    seeker = tmp_path / "seeker.json"
    seeker.write_text(json.dumps([f"I feel bad {i}" for i in range(10)]))
    runs = tmp_path / "runs"
    out = CliRunner().invoke(main, ["run", "--task", "esc-eval", "--task-args", "cards=test,rounds=1,prompt=compeer", "--limit", "1",
                                    "--model", "hf", "--model-args", f"model={ckpt},device=cpu,max_tokens=8",
                                    "--seeker", "scripted", "--seeker-args", f"outputs={seeker}", "--role", "judge=scripted",
                                    "--role-args", "judge=default=Score: 3", "--no-cache", "--output-dir", str(runs), "--data-dir", str(data_root)])
    assert out.exit_code == 0, out.output
    from test_sage import seeker_script

    from harness.runner import RoleConfig, RunConfig, run

    sage = run(RunConfig(task="sage", task_args={"max_turns": 2, "prompt": "compeer"}, model="hf", model_args={"model": str(ckpt), "device": "cpu", "max_tokens": 8},
                         limit=1, concurrency=1, resamples=0, roles={"seeker": RoleConfig("scripted", {"outputs": seeker_script(["+10", "+10"])})},
                         output_dir=runs, use_cache=False, data_dir=data_root))
    assert json.loads((sage.run_dir / "run.json").read_text())["status"] == "finished"
    board = CliRunner().invoke(main, ["leaderboard", "--runs-dir", str(runs), "--no-figures"])
    assert board.exit_code == 0
    for task in ("esc-eval", "sage"):  # the tiny policy's row in each table, beside the published COMPEER rows
        table = board.stdout.split(f"## {task} (test)")[1].split("\n## ")[0]
        assert f"model=compeer-grpo {record.train_id}" in table and "COMPEER-URP" in table


def test_compeer_sft_teaches_the_rows_whose_steps_are_all_right(tmp_path):
    from baselines.compeer import sft
    from tasks.compeer_reasoning import parse_compeer_output

    cer = rows(4)
    labels = [([True, True, True], "model_better"), ([True, False, True], "model_better"), ([True, True, True], "original_better"), (None, None)]
    cer = [r.model_copy(update={"steps": ["Core issue: exam. Stage: exploration", "Sentiment: negative; Emotion: fear; Intensity: high",
                                          "Strategy: open question. Why: to learn more"],
                                "annotations": data.Annotations(final_steps=s, final_preference=p)}) for r, (s, p) in zip(cer, labels)]
    kept, outputs = sft.targets(cer)
    assert [r.id for r in kept] == [cer[0].id, cer[2].id]
    assert [parse_compeer_output(o).response for o in outputs] == ["r", "What did they say last time?"] and all(parse_compeer_output(o).format_ok for o in outputs)
    folder = tmp_path / "cer"
    folder.mkdir()
    data.write_rows(folder / data.ROWS, cer)
    out = sft.train(folder, str(build_text_model(tmp_path / "policy")), tmp_path / "ckpt", given={"batch_size": 2, "per_device_batch": 2},
                    max_steps=2, dtype="float32", log=lambda s: None)
    record = read_record(out)
    assert (record.recipe, record.weights, record.config["rows"]) == ("compeer-sft", "full", 2)
    assert [e["step"] for e in trainkit.read_log(out) if "loss" in e] == [1, 2]
