"""harness/metric_worker.py: the model-based metrics computed in a child process give the values the run's own
process gives, a child that dies or a metric that cannot load is one line, and a script that calls the Python
API without a `__main__` guard runs once (the child does not re-run it)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import metric_worker
from harness.contract import ScoredPair
from harness.errors import HarnessError

pytest.importorskip("torch")
DATA = Path(os.environ.get("ESC_HARNESS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_data = pytest.mark.skipif(not (DATA / "mesc").is_dir(), reason="datasets not found (set ESC_HARNESS_DATA)")


def records(run_dir: Path) -> dict[int, dict]:
    return {r["index"]: r["scores"] for r in map(json.loads, (run_dir / "samples.jsonl").read_text().splitlines())}


@needs_data
def test_values_from_the_worker_are_the_in_process_ones(tmp_path, monkeypatch):
    from harness.runner import RunConfig, run

    started = []
    real_start = metric_worker.start
    monkeypatch.setattr(metric_worker, "start", lambda metrics: started.append(real_start(metrics)) or started[-1])
    config = RunConfig(task="mesc", model="retrieval", limit=12, metrics=["bleu-2", "rouge-l", "bertscore-f1-minilm"], resamples=50,
                       use_cache=False, data_dir=DATA, output_dir=tmp_path / "worker")
    remote = run(config, progress=False)
    assert started[-1] is not None and started[-1].names == {"bertscore-f1-minilm"}
    monkeypatch.setenv(metric_worker.WORKER_ENV, "0")
    local = run(RunConfig(**{**config.__dict__, "output_dir": tmp_path / "local"}), progress=False)
    assert started[-1] is None
    assert remote.summary.metrics == local.summary.metrics and remote.summary.intervals == local.summary.intervals
    assert records(remote.run_dir) == records(local.run_dir)
    assert 0 < remote.summary.metrics["bertscore-f1-minilm"] < 100


def test_a_worker_that_dies_is_one_line():
    worker = metric_worker.MetricWorker(["bertscore-f1-minilm"])
    try:
        worker._process.kill()
        worker._process.wait(timeout=10)
        with pytest.raises(HarnessError, match=r"metric worker process stopped \(exit code -9\) while computing bertscore-f1-minilm.*--resume"):
            worker.compute("bertscore-f1-minilm", [ScoredPair("I hear you.", "That sounds hard.")])
    finally:
        worker.close()


def test_a_metric_that_cannot_load_answers_with_its_own_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ESC_HARNESS_EPITOME", str(tmp_path / "no-classifiers"))  # the child inherits it
    worker = metric_worker.MetricWorker(["diff-epitome"])
    try:
        with pytest.raises(HarnessError, match="harness epitome train"):
            worker.compute("diff-epitome", [ScoredPair("I hear you.", "That sounds hard.", ("I lost my job.",))])
    finally:
        worker.close()
    assert worker._process.poll() is not None  # stopped by close()


@needs_data
def test_a_script_without_a_main_guard_runs_once(tmp_path):
    script = tmp_path / "notebook_like.py"
    script.write_text(textwrap.dedent(f"""
        from harness import evaluate
        print("STARTED", flush=True)
        result = evaluate("mesc", "retrieval", limit=4, metrics=["bertscore-f1-minilm"], resamples=20, use_cache=False,
                          data_dir={str(DATA)!r}, output_dir={str(tmp_path / "runs")!r})
        print("SCORE", round(result.summary.metrics["bertscore-f1-minilm"], 6), flush=True)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("STARTED") == 1 and "SCORE" in done.stdout
    assert len(list((tmp_path / "runs").iterdir())) == 1


@needs_data
def test_a_failing_check_stops_the_worker_it_started(tmp_path, monkeypatch):
    """The worker starts before the checks; a metric whose check fails (roberta-large's weights missing) is one
    line, and the worker already loading MiniLM is stopped with it."""
    from harness.runner import RunConfig, run

    monkeypatch.delenv("ESC_HARNESS_ROBERTA_LARGE", raising=False)
    started = []
    real_start = metric_worker.start
    monkeypatch.setattr(metric_worker, "start", lambda metrics: started.append(real_start(metrics)) or started[-1])
    config = RunConfig(task="mesc", model="retrieval", limit=3, metrics=["bertscore-f1-minilm", "bertscore-f1-roberta-large"],
                       use_cache=False, data_dir=DATA, output_dir=tmp_path / "runs")
    with pytest.raises(HarnessError, match="ESC_HARNESS_ROBERTA_LARGE"):
        run(config, progress=False)
    assert started[-1] is not None and started[-1].names == {"bertscore-f1-minilm"}
    assert started[-1]._process.poll() is not None  # stopped, not left loading
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
