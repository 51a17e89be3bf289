import json
import os
import signal
import subprocess
import sys
import time

import pytest

from harness import store
from harness.contract import RunHeader, SampleRecord, Summary
from harness.errors import HarnessError
from harness.runner import RunConfig, redact, run, score


def config(tmp_path, data_root, **kw):
    base = dict(task="mesc", model="retrieval", split="test", limit=20, output_dir=tmp_path / "runs", data_dir=data_root)
    base.update(kw)
    return RunConfig(**base)


def lines(run_dir):
    return (run_dir / "samples.jsonl").read_text().splitlines()


def test_run_folder_contract(tmp_path, data_root):
    result = run(config(tmp_path, data_root, metrics=["bleu-2", "rouge-l", "dist-3"]))
    header = RunHeader.model_validate_json((result.run_dir / "run.json").read_text())
    assert (header.task, header.model, header.split, header.limit, header.status) == ("mesc", "retrieval", "test", 20, "finished")
    assert header.data["MESC.csv"].startswith("0d93e6a7") and header.packages["nltk"] and header.finished_at
    records = [SampleRecord.model_validate_json(l) for l in lines(result.run_dir)]
    assert [r.index for r in records] == list(range(20))
    assert all(r.response and r.reference and r.history for r in records)
    assert all(set(r.scores) == {"rouge-l"} for r in records)  # per-sample metrics only
    summary = Summary.model_validate_json((result.run_dir / "summary.json").read_text())
    assert summary.n == 20 and set(summary.metrics) == {"bleu-2", "rouge-l", "dist-3"}
    assert summary.metrics["rouge-l"] == pytest.approx(sum(r.scores["rouge-l"] for r in records) / 20)


def test_second_identical_run_makes_no_model_call(tmp_path, data_root):
    first = run(config(tmp_path, data_root, metrics=["bleu-2"]))
    second = run(config(tmp_path, data_root, metrics=["bleu-2"]))
    assert (first.model_calls, first.cache_hits) == (20, 0)
    assert (second.model_calls, second.cache_hits) == (0, 20)
    assert [json.loads(l)["output"] for l in lines(first.run_dir)] == [json.loads(l)["output"] for l in lines(second.run_dir)]


def test_resume_after_a_torn_write_equals_an_uninterrupted_run(tmp_path, data_root):
    kw = dict(model="scripted", model_args={"echo": True}, use_cache=False, metrics=["bleu-2", "rouge-l", "dist-2", "f1"])
    full = run(config(tmp_path, data_root, **kw))
    crashed = run(config(tmp_path, data_root, **kw))
    # simulate a kill in the middle of writing sample 8, before the summary
    kept = lines(crashed.run_dir)[:7]
    (crashed.run_dir / "samples.jsonl").write_text("\n".join(kept) + "\n" + lines(crashed.run_dir)[7][:40])
    (crashed.run_dir / "summary.json").unlink()
    header = store.read_header(crashed.run_dir)
    store.write_json(crashed.run_dir / "run.json", header.model_copy(update={"status": "running", "finished_at": None}))
    resumed = run(RunConfig(task="", model="", split="", data_dir=data_root, use_cache=False), resume=crashed.run_dir)
    assert resumed.resumed_samples == 7 and resumed.model_calls == 13
    ids = [json.loads(l)["id"] for l in lines(crashed.run_dir)]
    assert len(ids) == len(set(ids)) == 20
    assert json.loads((crashed.run_dir / "summary.json").read_text()) == json.loads((full.run_dir / "summary.json").read_text())


def test_damage_before_the_last_line_is_an_error_not_a_silent_loss(tmp_path, data_root):
    result = run(config(tmp_path, data_root, metrics=["bleu-2"]))
    text = lines(result.run_dir)
    text[3] = "{not json"
    (result.run_dir / "samples.jsonl").write_text("\n".join(text) + "\n")
    with pytest.raises(HarnessError, match=r"samples.jsonl:4"):
        run(RunConfig(task="", model="", split="", data_dir=data_root), resume=result.run_dir)


def test_resume_refuses_a_different_task_or_model(tmp_path, data_root):
    result = run(config(tmp_path, data_root, metrics=["bleu-2"]))
    with pytest.raises(HarnessError, match="model 'retrieval'"):
        run(RunConfig(task="", model="scripted", split="", data_dir=data_root), resume=result.run_dir)


def test_score_recomputes_without_calling_the_model(tmp_path, data_root):
    result = run(config(tmp_path, data_root, metrics=["bleu-2", "rouge-l"]))
    original = json.loads((result.run_dir / "summary.json").read_text())
    records = [json.loads(l) for l in lines(result.run_dir)]
    for r in records:
        r["scores"] = {"rouge-l": -1.0}
    (result.run_dir / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (result.run_dir / "summary.json").unlink()
    summary = score(result.run_dir)
    assert json.loads(summary.model_dump_json()) == original
    assert json.loads((result.run_dir / "summary.json").read_text()) == original
    # a new metric can be added after the fact
    assert "meteor" in score(result.run_dir, ["bleu-2", "rouge-l", "meteor"]).metrics
    assert store.read_header(result.run_dir).metrics == ["bleu-2", "rouge-l", "meteor"]


def test_secrets_are_redacted_from_the_header():
    assert redact({"api_key": "sk-123", "base_url": "http://x", "auth_token": "t", "temperature": 0.5}) == {
        "api_key": "<redacted>", "base_url": "http://x", "auth_token": "<redacted>", "temperature": 0.5}


def test_kill_9_mid_run_then_resume(tmp_path, data_root):
    """A real kill -9 of the CLI while it writes, then --resume: the same summary as an uninterrupted run, to
    the last digit - BERTScore included, though the resumed run scores its samples in other batches."""
    env = {**os.environ, "ESC_HARNESS_DATA": str(data_root)}
    args = ["--task", "mesc", "--model", "scripted", "--model-args", "echo=true,delay=0.1", "--limit", "60",
            "--metrics", "bleu-2,rouge-l,dist-3,bertscore-f1-minilm", "--no-cache"]
    cli = [sys.executable, "-m", "harness.cli", "run"]
    reference = subprocess.run(cli + args + ["--model-args", "echo=true", "--output-dir", str(tmp_path / "ref")], env=env, capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr
    ref_dir = reference.stdout.strip().splitlines()[-1]

    proc = subprocess.Popen(cli + args + ["--output-dir", str(tmp_path / "runs")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    samples = []
    while time.time() < deadline:
        samples = list((tmp_path / "runs").glob("*/samples.jsonl"))
        if samples and len(samples[0].read_text().splitlines()) >= 12:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert samples, "the run never wrote a sample"
    run_dir = samples[0].parent
    written = len(lines(run_dir))
    assert 12 <= written < 60 and not (run_dir / "summary.json").exists()

    resumed = subprocess.run(cli + ["--resume", str(run_dir), "--no-cache"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"model calls {60 - written}," in resumed.stdout  # finished samples are not asked again
    ids = [json.loads(l)["id"] for l in lines(run_dir)]
    assert len(ids) == len(set(ids)) == 60
    assert json.loads((run_dir / "summary.json").read_text()) == json.loads((tmp_path / "ref" / ref_dir.split("/")[-1] / "summary.json").read_text())
