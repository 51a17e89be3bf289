"""`harness train NAME`: recipes join by entry point (here registered in-process), write a checkpoint
folder with its train.json through the same lifecycle as a run (finished / failed with its one line /
running when killed), and record where their data came from."""
import json

import click
import pytest
from click.testing import CliRunner

from harness import registry, store, training
from harness.cli import main
from harness.contract import ON_DISK, TrainRecord
from harness.errors import HarnessError
from harness.hashing import sha256_of


@click.command("toy-sft")
@click.option("--output-dir", type=click.Path(), required=True)
@click.option("--data", "data_file", type=click.Path(), required=True)
@click.option("--lr", type=float, default=1e-5)
@click.option("--fail", is_flag=True)
def toy_recipe(output_dir, data_file, lr, fail):
    """A toy recipe: 'trains' by writing its weights file."""
    folder = training.start("toy-sft", output_dir, config={"lr": lr, "lora_r": 8, "lora_alpha": 16, "source": {"lr": "test"}},
                            base_model={"model": "tiny-base", "weights": "f" * 64}, weights="peft",
                            data=[training.file_source(data_file, rows=2)], reward=None,
                            evaluate={"task": "mesc", "task_args": {"mode": "fires"}})
    with folder.working():
        (folder.path / "adapter_model.safetensors").write_bytes(b"weights")
        if fail:
            raise RuntimeError("out of memory\nsecond line")
        folder.finish()
    click.echo(str(folder.path))


@pytest.fixture
def recipe():
    registry.recipes.register("toy-sft", toy_recipe)
    yield
    registry.recipes._extra.pop("toy-sft", None)


def test_a_recipe_writes_its_training_record(tmp_path, recipe):
    data = tmp_path / "data.jsonl"
    data.write_text('{"a": 1}\n{"a": 2}\n')
    out = CliRunner().invoke(main, ["train", "toy-sft", "--output-dir", str(tmp_path / "ckpt"), "--data", str(data), "--lr", "2e-5"])
    assert out.exit_code == 0, out.output
    folder = tmp_path / "ckpt" / out.output.strip().rpartition("/")[2]
    record = TrainRecord.model_validate_json((folder / "train.json").read_text())
    assert (record.recipe, record.status, record.error, record.weights) == ("toy-sft", "finished", None, "peft")
    assert record.train_id == folder.name and record.finished_at and record.config["lr"] == 2e-5
    assert record.data[0].kind == "file" and record.data[0].sha256 == sha256_of(data) and record.data[0].detail == {"rows": 2}
    assert record.evaluate == {"task": "mesc", "task_args": {"mode": "fires"}} and record.packages["python"]
    assert training.read_record(folder) == record
    assert ON_DISK["train.json"] is TrainRecord


def test_a_crashed_recipe_is_failed_with_its_one_line(tmp_path, recipe):
    data = tmp_path / "d.txt"
    data.write_text("x")
    out = CliRunner().invoke(main, ["train", "toy-sft", "--output-dir", str(tmp_path), "--data", str(data), "--fail"])
    assert out.exit_code != 0
    (folder,) = [p.parent for p in tmp_path.glob("*/train.json")]
    record = training.read_record(folder)
    assert record.status == "failed" and record.error == "RuntimeError: out of memory" and record.finished_at is None


def test_the_group_lists_recipes_and_refuses_unknown_ones(recipe):
    listed = CliRunner().invoke(main, ["train", "--help"])
    assert listed.exit_code == 0 and "toy-sft" in listed.output
    assert "toy-sft" in CliRunner().invoke(main, ["list", "recipes"]).output
    out = CliRunner().invoke(main, ["train", "toy-sfx"])
    assert out.exit_code == 2 and "unknown recipe 'toy-sfx'. Did you mean 'toy-sft'?" in out.stderr


def test_data_provenance_of_runs_and_files(tmp_path):
    from harness.contract import RunHeader

    run_dir = tmp_path / "run1"
    run_dir.mkdir()
    header = RunHeader(run_id="run1", task="mesc", model="retrieval", split="train", seed=0, metrics=[], started_at="t", n_samples=7)
    store.write_json(run_dir / "run.json", header)
    with pytest.raises(HarnessError, match="the run is running; train only on finished runs"):
        training.run_source(run_dir)
    store.write_json(run_dir / "run.json", header.model_copy(update={"status": "finished"}))
    source = training.run_source(run_dir)
    assert (source.kind, source.name, source.detail["task"], source.detail["n_samples"]) == ("run", "run1", "mesc", 7)
    with pytest.raises(HarnessError, match="no such data file"):
        training.file_source(tmp_path / "nope.jsonl")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train.json").write_text(json.dumps({"recipe": "x"}))
    with pytest.raises(HarnessError, match=r"train.json: not a valid train.json \("):
        training.read_record(tmp_path / "bad")
