"""The FIRES recipe end to end on CPU with tiny models built here: fires-synth with a scripted teacher, 2 SFT
steps, 2 GRPO steps with the real reward (tiny EPITOME classifiers), the checkpoint evaluated by `harness run`
and shown in `harness leaderboard` beside the published FIRES rows; a tiny Qwen2.5-VL trained on an image; and
the bad inputs, each one line with nothing written."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("trl")
torch = pytest.importorskip("torch")

from test_hf_model import build_text_model, build_vl_model  # noqa: E402

from baselines import trainkit  # noqa: E402
from baselines.fires import data, grpo, sft  # noqa: E402
from harness.cli import main  # noqa: E402
from harness.contract import Turn  # noqa: E402
from harness.training import read_record  # noqa: E402

THINKING = "Visual Scene: Not helpful\nEmotion: worried\nSituation: Unknown\nResponse Strategy: ask what is behind the worry"
SMALL_SFT = ["--set", "batch_size=4", "--per-device-batch", "2", "--max-steps", "2", "--dtype", "float32"]
SMALL_GRPO = ["--set", "batch_size=4", "--per-device-batch", "4", "--set", "max_completion_length=12", "--max-steps", "2", "--dtype", "float32"]


def invoke(args):
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes is not None else "")


@pytest.fixture(scope="module")
def classifiers(tiny_encoder, data_root, tmp_path_factory) -> Path:
    from baselines.epitome import train

    out = tmp_path_factory.mktemp("epitome") / "tiny"
    train.main(encoder=str(tiny_encoder), arch="bi", out=out, limit=24, epochs=1, batch_size=8, lr=1e-3, train_layers=1,
               eval_splits=(), log=lambda s: None)
    return out


@pytest.fixture
def with_classifiers(classifiers, monkeypatch):
    from baselines.epitome import metric

    monkeypatch.setenv("ESC_HARNESS_EPITOME", str(classifiers))
    metric._loaded.clear()
    yield
    metric._loaded.clear()


@pytest.fixture(scope="module")
def text_model(tmp_path_factory) -> Path:
    return build_text_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def synth(tmp_path_factory, data_root) -> Path:
    out = tmp_path_factory.mktemp("synth") / "flexible"
    code, output = invoke(["train", "fires-synth", "--teacher", "scripted", "--teacher-args", f"default={THINKING}", "--out", str(out),
                           "--limit", "4", "--data-dir", str(data_root), "--frames-dir", "off", "--no-cache"])
    assert code == 0, output
    return out


def _folder(output: str) -> Path:
    return Path(next(line.split(":")[0] for line in output.splitlines() if "finished" in line))


def test_text_recipe_end_to_end(synth, text_model, with_classifiers, tmp_path, data_root):
    manifest, rows = data.read_rows(synth)
    assert manifest.kept == 4 and rows[0].target.startswith("<think> Emotion: worried. Situation: Unknown. Response Strategy: ask")

    code, output = invoke(["train", "fires-sft", "--data", str(synth), "--base", str(text_model), "--output-dir", str(tmp_path / "ckpt"), *SMALL_SFT])
    assert code == 0, output
    sft_dir = _folder(output)
    record = read_record(sft_dir)
    assert (record.recipe, record.status, record.weights) == ("fires-sft", "finished", "peft")
    settings, sources = record.config["settings"], record.config["sources"]
    assert (settings["lora_rank"], settings["lora_alpha"], settings["learning_rate"], settings["epochs"], settings["warmup_ratio"]) == (8, 16, 1e-5, 3, 0.1)
    assert sources["lora_alpha"].startswith("FIRES Table 6") and sources["batch_size"].startswith("command line")
    assert record.config["accumulation_steps"] == 2 and record.evaluate["task_args"] == {"prompt": "fires"}
    assert record.evaluate["command"] == f"harness run --task mesc --task-args prompt=fires --model hf --model-args model={sft_dir}"
    assert record.data[0].sha256 and record.data[0].detail["variant"] == "flexible"
    log = trainkit.read_log(sft_dir)
    assert [e["step"] for e in log if "loss" in e] == [1, 2]
    from safetensors.torch import load_file

    lora_b = [t for k, t in load_file(str(sft_dir / "adapter_model.safetensors")).items() if "lora_B" in k]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)  # SFT moved the adapter (B starts at zero)
    adapter = json.loads((sft_dir / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (8, 16)

    code, output = invoke(["train", "fires-grpo", "--data", str(synth), "--init", str(sft_dir), "--output-dir", str(tmp_path / "ckpt"), *SMALL_GRPO])
    assert code == 0, output
    grpo_dir = _folder(output)
    record = read_record(grpo_dir)
    assert record.base_model["model"] == "init" and record.base_model["merged_from"]["sft_checkpoint"] == str(sft_dir)
    assert (grpo_dir / "init" / "config.json").is_file()
    assert record.reward["weights"] == {"format": 0.1, "rouge": 1.0, "support_skill": 0.1} or record.reward["weights"] == [0.1, 1.0, 0.1]
    assert record.reward["classifier"]  # the EPITOME classifier tag the reward used
    settings = record.config["settings"]
    assert (settings["num_generations"], settings["beta"], settings["loss_type"], settings["temperature"], settings["top_k"]) == (4, 0.001, "grpo", 0.9, 50)
    steps = [e for e in trainkit.read_log(grpo_dir) if "rewards/format/mean" in e]
    assert [e["step"] for e in steps] == [1, 2]
    assert all({"rewards/rouge_l/mean", "rewards/support_skill/mean", "reward", "kl"} <= set(e) for e in steps)
    adapter = json.loads((grpo_dir / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (8, 32)

    # the checkpoint is a model: its train.json gives the base (the merged init) and prompt=fires
    runs = tmp_path / "runs"
    code, output = invoke(["run", "--task", "mesc", "--model", "hf", "--model-args", f"model={grpo_dir},device=cpu,max_tokens=8",
                           "--limit", "2", "--metrics", "rouge-l,bleu-2", "--output-dir", str(runs), "--data-dir", str(data_root), "--no-cache"])
    assert code == 0, output
    header = json.loads(next(runs.glob("*/run.json")).read_text())
    assert header["task_args"] == {"prompt": "fires"} and header["model_identity"]["train_id"] == record.train_id
    code, board = invoke(["leaderboard", "--runs-dir", str(runs), "--no-figures"])
    assert code == 0, board
    mesc = board.split("## mesc (test)")[1].split("\n## ")[0]  # the trained adapter's row beside the published FIRES rows
    assert f"| hf(device=cpu, max_tokens=8, model=fires-grpo {record.train_id}) [prompt=fires] | measured | 2 |" in mesc
    assert "| FIRES | FIRES Table 1, Table 2, Table 4 | 454 |" in mesc and "| FIRES w/o RL | FIRES Table 2 |" in mesc


def test_vision_language_sft_and_grpo_train_the_language_model_on_the_image(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    model_dir = build_vl_model(tmp_path / "tiny-vl")
    image = tmp_path / "frame.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(image)
    dataset = tmp_path / "synth"
    dataset.mkdir()
    rows = [data.SynthRow(id=f"mesc/train/d{i}/t1", variant="flexible", history=[Turn(speaker="Client", text=f"I lost my job {i}")],
                          reference="Tell me more.", images=[str(image)], thinking="Visual Scene: crying Response Strategy: explore",
                          teacher_output="x", target=data.target_of("Visual Scene: crying Response Strategy: explore", "Tell me more."))
            for i in range(4)]
    (dataset / data.ROWS).write_text("".join(r.model_dump_json() + "\n" for r in rows))
    (dataset / data.MANIFEST).write_text(data.SynthManifest(variant="flexible", teacher={"model": "hand"}, prompt_sha256="0" * 64, config={},
                                                            data={}, started_at="now", status="finished", kept=4).model_dump_json())
    messages, images = sft.prompt_messages(rows[0], vision=True)
    assert images == [str(image)] and messages[1]["content"][0]["type"] == "image" and messages[1]["content"][1]["type"] == "text"
    assert messages[0]["content"][0]["text"].startswith("You are an expert in Emotional Support Conversation.")

    seen = []
    policy = trainkit.load_policy(str(model_dir), "float32", image_max_pixels=64 * 64)
    assert policy.vision and policy.processing_class.image_processor.size["longest_edge"] == 64 * 64  # frames resized down to the cap
    import re

    pattern = trainkit.lora_targets(policy.model)
    names = [n for n, m in policy.model.named_modules() if isinstance(m, torch.nn.Linear) and re.fullmatch(pattern, n)]
    assert names and not any("visual" in n for n in names) and not any(n.endswith("lm_head") for n in names)

    from torch.nn.modules.module import register_module_forward_hook

    def spy(module, args, output):  # every vision-tower pass, whatever wraps the model
        if type(module).__name__ == "Qwen2_5_VisionTransformerPretrainedModel":
            seen.append(tuple(args[0].shape))

    handle = register_module_forward_hook(spy)
    try:
        out = sft.train(dataset, str(model_dir), tmp_path / "ckpt", given={"batch_size": 2, "per_device_batch": 2}, max_steps=2, dtype="float32", log=lambda s: None)
    finally:
        handle.remove()
    assert len(seen) == 2  # each of the 2 training steps (one batch of 2 rows) ran the frames through the vision tower
    from safetensors.torch import load_file

    trained = load_file(str(out / "adapter_model.safetensors"))
    assert trained and not any("visual" in k for k in trained)

    class Levels:  # stub classifiers: exact DIFF-EPITOME, no model
        def predict(self, mechanism, seekers, responses):
            return [0 for _ in responses]

        def describe(self):
            return {"classifier": "stub"}

    g = grpo.train(dataset, str(out), tmp_path / "ckpt", given={"batch_size": 4, "per_device_batch": 4, "max_completion_length": 8}, max_steps=2,
                   dtype="float32", classifiers=Levels(), log=lambda s: None)
    assert [e["step"] for e in trainkit.read_log(g) if "rewards/format/mean" in e] == [1, 2]


def test_bad_inputs_are_one_line_and_write_nothing(synth, text_model, tmp_path, monkeypatch):
    out = tmp_path / "ckpt"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / data.MANIFEST).write_text((synth / data.MANIFEST).read_text())
    lines = (synth / data.ROWS).read_text().splitlines()
    (broken / data.ROWS).write_text("\n".join([lines[0], '{"id": "x"', *lines[1:]]) + "\n")
    code, output = invoke(["train", "fires-sft", "--data", str(broken), "--base", str(text_model), "--output-dir", str(out), *SMALL_SFT])
    assert code != 0 and f"{broken / data.ROWS}:2: not a fires-synth row" in output and "Traceback" not in output

    no_template = build_text_model(tmp_path / "no-template", chat_template=None)
    code, output = invoke(["train", "fires-sft", "--data", str(synth), "--base", str(no_template), "--output-dir", str(out), *SMALL_SFT])
    assert code != 0 and "has no chat template" in output

    code, output = invoke(["train", "fires-sft", "--data", str(synth), "--base", str(text_model), "--output-dir", str(out),
                           "--set", "batch_size=30", "--per-device-batch", "4"])
    assert code != 0 and "batch size 30 is not a multiple of per-device batch 4 x 1 device(s)" in output

    monkeypatch.setenv("ESC_HARNESS_EPITOME", str(tmp_path / "not-built"))  # no classifiers there
    from baselines.epitome import metric

    metric._loaded.clear()
    code, output = invoke(["train", "fires-grpo", "--data", str(synth), "--init", str(text_model), "--ablation", "wo-sft", "--output-dir", str(out), *SMALL_GRPO])
    assert code != 0 and "harness epitome train" in output and "Traceback" not in output

    code, output = invoke(["train", "fires-grpo", "--data", str(synth), "--init", str(text_model), "--ablation", "wo-ssr", "--output-dir", str(out), *SMALL_GRPO])
    assert code != 0 and "not a fires-sft checkpoint" in output
    assert not out.exists()  # nothing half-written


def test_ablations_are_switches_recorded_and_checked(synth):
    from baselines.fires import ablations

    row = data.read_rows(synth)[1][0]
    assert ablations.target_without(row, "situation") == "<think> Emotion: worried. Response Strategy: ask what is behind the worry. </think>" \
        f"<response> {row.reference} </response>"
    with pytest.raises(Exception, match="trains on 'fixed' data"):
        ablations.check_data("wo-flet", "flexible", synth)
    with pytest.raises(Exception, match="w/o RL is the fires-sft checkpoint itself"):
        ablations.check("wo-rl", "grpo")
    assert sft.evaluation(frames=False)["task_args"] == {"prompt": "fires", "frames_dir": "off"}


def test_every_stage_documents_the_paper_settings():
    for name, expected in (("fires-sft", ["lora_rank = 8", "lora_alpha = 16", "learning_rate = 1e-05", "warmup_ratio = 0.1", "seed = 42"]),
                           ("fires-grpo", ["num_generations = 4", "beta = 0.001", "lora_alpha = 32", "warmup_ratio = 0.05", "loss_type = 'grpo'"])):
        code, output = invoke(["train", name, "--help"])
        assert code == 0 and all(e in output for e in expected), output
    code, output = invoke(["train", "--help"])
    assert all(n in output for n in ("fires-synth", "fires-sft", "fires-grpo", "fires-reward"))


def test_an_interrupted_sft_resumes_from_its_last_checkpoint(synth, text_model, tmp_path):
    code, output = invoke(["train", "fires-sft", "--data", str(synth), "--base", str(text_model), "--output-dir", str(tmp_path),
                           "--set", "save_steps=1", *SMALL_SFT])
    assert code == 0, output
    folder = _folder(output)
    record = read_record(folder)
    # as a kill leaves it: running, no final adapter, its Trainer checkpoints on disk
    (folder / "train.json").write_text(record.model_copy(update={"status": "running", "finished_at": None}).model_dump_json())
    (folder / "adapter_model.safetensors").unlink()
    assert trainkit.last_checkpoint(folder).endswith("checkpoint-2")
    code, output = invoke(["train", "fires-sft", "--resume", str(folder)])
    assert code == 0, output
    resumed = read_record(folder)
    assert resumed.status == "finished" and resumed.config == record.config and (folder / "adapter_model.safetensors").is_file()
    code, output = invoke(["train", "fires-sft", "--resume", str(folder)])
    assert code != 0 and "has finished; nothing to resume" in output
