"""The dialogue engine: role batching, faults mid-run, kill -9 and resume (through the `sage` task)."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from harness import registry
from harness.cache import CachedModel
from harness.contract import ChatRequest, Message, ModelOutput
from harness.dialogues import RoleClient
from harness.errors import HarnessError
from harness.models.scripted import ScriptedModel
from harness.runner import RoleConfig, RunConfig, run

# every reasoning step says +5: from 40, three reactions end at 55 (max_turns=4: opening + 3 agent replies)
SEEKER = {"default": "Thought: fine\nChange: +5"}
CALLS_PER_DIALOGUE = 9  # 3 rounds x (model reply, reasoning, agent reply)


class SlowEcho(ScriptedModel):
    """Echo with a pause per generate call, recording the batches it was handed."""

    name = "slow-echo"
    batch_size = 4
    parallel_calls = 1

    def __init__(self, context=None, **kw):
        super().__init__(context, echo=True)
        self.batches = []

    def generate(self, requests):
        self.batches.append(len(requests))
        time.sleep(0.05)
        return super().generate(requests)


def test_role_client_batches_concurrent_requests_and_keeps_answers_apart():
    model = SlowEcho()
    client = RoleClient(CachedModel(model, None))
    answers = {}

    def ask(i):
        answers[i] = client.ask(ChatRequest(messages=(Message(role="user", content=f"question {i}"),))).text

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    assert answers == {i: f"question {i}" for i in range(12)}
    assert sum(model.batches) == 12 and max(model.batches) > 1 and max(model.batches) <= 4


class FailingAfter(ScriptedModel):
    """Echoes, then fails like a server that went down: every call after the first `ok` raises."""

    name = "failing-after"
    calls = 0

    def __init__(self, context=None, ok=0, **kw):
        super().__init__(context, echo=True)
        self.ok = int(ok)

    def cache_identity(self):
        return {"echo": True}  # the same answers as a healthy echo model: a resume may use either

    def generate(self, requests):
        FailingAfter.calls += len(requests)
        if FailingAfter.calls > self.ok:
            raise HarnessError("failing-after: HTTP 503 (the server went away)")
        return super().generate(requests)


def sage_config(tmp_path, data_root, model, model_args, **kw):
    base = dict(task="sage", model=model, model_args=model_args, task_args={"max_turns": 4}, limit=6,
                roles={"seeker": RoleConfig("scripted", dict(SEEKER))}, output_dir=tmp_path / "runs", data_dir=data_root,
                cache_path=tmp_path / "cache.sqlite", resamples=200, concurrency=3)
    base.update(kw)
    return RunConfig(**base)


def test_server_fault_mid_run_loses_no_finished_work(tmp_path, data_root):
    registry.models.register("failing-after", FailingAfter)
    FailingAfter.calls = 0
    reference = run(sage_config(tmp_path / "ref", data_root, "scripted", {"echo": True}))
    with pytest.raises(HarnessError, match="503"):
        run(sage_config(tmp_path, data_root, "failing-after", {"ok": 8}))
    run_dir = next((tmp_path / "runs").iterdir())
    written = (run_dir / "samples.jsonl").read_text().splitlines() if (run_dir / "samples.jsonl").exists() else []
    assert len(written) < 6 and not (run_dir / "summary.json").exists()
    header = json.loads((run_dir / "run.json").read_text())
    assert header["status"] == "failed" and "503" in header["error"] and "\n" not in header["error"]
    # the healthy model has the same cache identity; finished dialogues are kept and the model answers the rest
    registry.models.register("failing-after", lambda context, ok=0: FailingAfter(context, ok=10**6))
    resumed = run(RunConfig(task="", model="", split="", data_dir=data_root, cache_path=tmp_path / "cache.sqlite"), resume=run_dir)
    assert resumed.resumed_samples == len(written)
    header = json.loads((run_dir / "run.json").read_text())
    assert (header["status"], header["error"]) == ("finished", None)
    assert json.loads((run_dir / "summary.json").read_text())["metrics"] == json.loads((reference.run_dir / "summary.json").read_text())["metrics"]
    finals = [json.loads(line)["outcome"]["final_emotion"] for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert finals == [55] * 6


def _answered(run_dir) -> int:
    """Calls answered so far, from the run's own calls cache (--no-cache)."""
    try:
        with sqlite3.connect(run_dir / "calls.sqlite", timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


@pytest.mark.slow
def test_kill_9_mid_dialogues_then_resume_asks_only_what_was_never_answered(tmp_path, data_root):
    env = {**os.environ, "ESC_HARNESS_DATA": str(data_root)}
    common = ["--task", "sage", "--task-args", "max_turns=4", "--limit", "12", "--seeker", "scripted",
              "--seeker-args", f"default={SEEKER['default']},delay=0.02", "--concurrency", "4", "--no-cache", "--resamples", "200"]
    cli = [sys.executable, "-m", "harness.cli", "run"]
    reference = subprocess.run(cli + common + ["--model", "scripted", "--model-args", "echo=true", "--output-dir", str(tmp_path / "ref")],
                               env=env, capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr
    ref_dir = reference.stdout.strip().splitlines()[-1]

    proc = subprocess.Popen(cli + common + ["--model", "scripted", "--model-args", "echo=true,delay=0.05", "--output-dir", str(tmp_path / "runs")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    samples = []
    while time.time() < deadline:  # kill once dialogues are finished AND others are half-played
        samples = list((tmp_path / "runs").glob("*/samples.jsonl"))
        if samples and len(samples[0].read_text().splitlines()) >= 3 and _answered(samples[0].parent) > 12 * CALLS_PER_DIALOGUE // 2:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert samples, "the run never finished a dialogue"
    run_dir = samples[0].parent
    written = len(samples[0].read_text().splitlines())
    assert 3 <= written < 12 and not (run_dir / "summary.json").exists()
    answered = _answered(run_dir)
    assert answered >= written * CALLS_PER_DIALOGUE

    resumed = subprocess.run(cli + ["--resume", str(run_dir), "--no-cache", "--resamples", "200"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    # nothing answered before the kill is asked again
    assert f"model calls {12 * CALLS_PER_DIALOGUE - answered}," in resumed.stdout
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len({r["id"] for r in records}) == len(records) == 12
    assert json.loads((run_dir / "summary.json").read_text()) == json.loads((tmp_path / "ref" / ref_dir.split("/")[-1] / "summary.json").read_text())
