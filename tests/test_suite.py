"""Many tasks in one command (`harness run --task a,b,c`, `--suite FILE`, `--resume SUITE_DIR`) and the
Python API (`from harness import evaluate`), end to end on the real datasets with the retrieval baseline."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import store
from harness.errors import HarnessError

DATA = Path(os.environ.get("ESC_HARNESS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
FAST = "bleu-2,rouge-l"
ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not (DATA / "mesc").is_dir(), reason="datasets not found (set ESC_HARNESS_DATA)")


def harness(*args: str, cwd: Path, data: Path = DATA) -> subprocess.CompletedProcess:
    env = {**os.environ, "ESC_HARNESS_DATA": str(data)}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def suite_json(folder: Path) -> dict:
    return json.loads((folder / "suite.json").read_text())


def test_several_tasks_one_folder_each_one_table(tmp_path):
    done = harness("run", "--task", "mesc,esconv,emotyda-esc", "--model", "retrieval", "--limit", "4", "--metrics", FAST,
                   "--resamples", "50", "--output-dir", "runs", "--cache", "c.sqlite", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    suite_dir = tmp_path / done.stdout.strip().splitlines()[-1]
    record = suite_json(suite_dir)
    assert [t["task"] for t in record["tasks"]] == ["mesc", "esconv", "emotyda-esc"]
    assert record["status"] == "finished" and all(t["status"] == "finished" for t in record["tasks"])
    # one run folder per task, inside the suite folder, each as a single `harness run` would make it
    runs = store.find_runs(suite_dir)
    assert sorted(store.read_header(r).task for r in runs) == ["emotyda-esc", "esconv", "mesc"]
    for entry in record["tasks"]:
        run_dir = suite_dir / entry["run_dir"]
        header = store.read_header(run_dir)
        assert (header.task, header.limit, header.metrics, header.resamples) == (entry["task"], 4, ["bleu-2", "rouge-l"], 50)
        summary = store.read_summary(run_dir)
        # the combined table shows each task's own numbers
        table = done.stdout
        column = table.splitlines()[0].split().index(entry["task"])
        rouge = next(line for line in table.splitlines() if line.strip().startswith("rouge-l"))
        cells = re.findall(r"\d+\.\d\d \[[^\]]+\]", rouge)
        assert cells[column].startswith(f"{summary.metrics['rouge-l']:.2f} [")


def test_suite_file_options_and_command_line_over_them(tmp_path):
    (tmp_path / "suite.toml").write_text(
        'model = "retrieval"\n[defaults]\nlimit = 3\nmetrics = "bleu-2"\n'
        '[[tasks]]\ntask = "mesc"\n'
        '[[tasks]]\ntask = "mesc"\ntask_args = { prompt = "fires" }\nlimit = 2\nmetrics = ["rouge-l"]\n')
    done = harness("run", "--suite", "suite.toml", "--resamples", "0", "--output-dir", "runs", "--no-cache", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    suite_dir = tmp_path / done.stdout.strip().splitlines()[-1]
    record = suite_json(suite_dir)
    assert record["source"] == "suite.toml" and len(record["source_sha256"]) == 64
    headers = [store.read_header(suite_dir / t["run_dir"]) for t in record["tasks"]]
    assert [(h.task_args, h.limit, h.metrics, h.resamples) for h in headers] == [
        ({}, 3, ["bleu-2"], 0), ({"prompt": "fires"}, 2, ["rouge-l"], 0)]
    assert "mesc[prompt=fires]" in done.stdout.splitlines()[0]  # two columns of one task: told apart by their options
    # the command line applies to every task, over the file
    again = harness("run", "--suite", "suite.toml", "--limit", "1", "--resamples", "0", "--output-dir", "runs2", "--no-cache", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    suite2 = tmp_path / again.stdout.strip().splitlines()[-1]
    assert [store.read_header(suite2 / t["run_dir"]).limit for t in suite_json(suite2)["tasks"]] == [1, 1]


def test_a_failing_task_keeps_the_others_and_the_suite_resumes(tmp_path):
    partial = tmp_path / "data"  # MESC only: ESConv cannot be found there
    partial.mkdir()
    (partial / "mesc").symlink_to(DATA / "mesc")
    done = harness("run", "--task", "mesc,esconv", "--model", "retrieval", "--limit", "3", "--metrics", FAST, "--resamples", "0",
                   "--output-dir", "runs", "--cache", "c.sqlite", cwd=tmp_path, data=partial)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "1 of 2 tasks failed" in done.stderr
    suite_dir = tmp_path / done.stdout.strip().splitlines()[-1]
    record = suite_json(suite_dir)
    assert record["status"] == "failed" and "esconv" in record["error"]
    mesc, esconv = record["tasks"]
    assert mesc["status"] == "finished" and esconv["status"] == "failed" and esconv["error"]
    assert "esconv failed:" in done.stdout
    mesc_summary = (suite_dir / mesc["run_dir"] / "summary.json").read_text()
    # resumed with the data there: the finished task is kept as it is, the failed one runs
    again = harness("run", "--resume", str(suite_dir), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    record = suite_json(suite_dir)
    assert record["status"] == "finished" and [t["status"] for t in record["tasks"]] == ["finished", "finished"]
    assert record["tasks"][0]["run_dir"] == mesc["run_dir"]
    assert (suite_dir / mesc["run_dir"] / "summary.json").read_text() == mesc_summary
    assert len(store.find_runs(suite_dir)) == 2
    assert "esconv: 3 samples; model calls 3" in again.stderr and "mesc: finished before, kept as it is" in again.stderr
    # a suite resumes with what it recorded
    refused = harness("run", "--resume", str(suite_dir), "--limit", "5", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "a suite resumes with what it recorded" in refused.stderr


def test_an_interrupted_task_is_resumed_in_its_own_run_folder(tmp_path):
    """A kill in the middle of a task: the suite's resume carries that run folder on (no second folder)."""
    from harness import suite

    record = suite.plan(["mesc"], options=suite.TaskOptions(limit=3, metrics=["bleu-2"], resamples=0), model="retrieval")
    where = suite.Where(output_dir=tmp_path / "runs", data_dir=DATA, use_cache=False)
    import harness.runner as runner

    real = runner._generate

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    runner._generate = killed
    try:
        with pytest.raises(KeyboardInterrupt):
            suite.run_suite(record, where)
    finally:
        runner._generate = real
    suite_dir = next((tmp_path / "runs").iterdir())
    entry = suite_json(suite_dir)["tasks"][0]
    assert entry["status"] == "running" and entry["run_dir"]
    result = suite.run_suite(None, where, resume=suite_dir)
    assert [o.run_dir.name for o in result.outcomes] == [entry["run_dir"]] and result.outcomes[0].summary.n == 3
    assert len(store.find_runs(suite_dir)) == 1


def test_secrets_never_reach_suite_json_and_must_come_back(tmp_path):
    from harness import suite

    record = suite.plan(["mesc"], options=suite.TaskOptions(limit=2, metrics=["bleu-2"], roles={"judge": "openai:gpt-4o"},
                                                           role_args={"judge": {"api_key": "sk-abcdefghijklmnopqrstuvwx"}}),
                        model="openai:m", model_args={"api_key": "sk-zyxwvutsrqponmlkjihgfedc", "base_url": "http://127.0.0.1:9/v1"})
    where = suite.Where(output_dir=tmp_path / "runs", data_dir=DATA, use_cache=False)
    result = suite.run_suite(record, where)  # mesc has no judge: the task fails, with one line and no secret
    text = (result.suite_dir / "suite.json").read_text()
    assert "sk-abcdef" not in text and "sk-zyxw" not in text and "<redacted>" in text
    assert result.failed and "judge" in result.failed[0].entry.error
    with pytest.raises(HarnessError, match="pass the secret argument"):
        suite.run_suite(None, where, resume=result.suite_dir)


@pytest.mark.parametrize("content, message", [
    ("model = \n", "not valid TOML"),
    ("model = 'retrieval'\n", "no [[tasks]]"),
    ("[[tasks]]\ntask = 'mesc'\nlimitt = 3\n", "tasks[1].limitt: Extra inputs are not permitted"),
    ("[[tasks]]\ntask = 'mesc'\nlimit = 'x'\n", "tasks[1].limit"),
    ("[[tasks]]\ntask = 'mescc'\n", "unknown task 'mescc'"),
])
def test_bad_suite_files_are_one_line(tmp_path, content, message):
    (tmp_path / "s.toml").write_text(content)
    done = harness("run", "--suite", "s.toml", "--model", "retrieval", "--output-dir", "runs", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert not (tmp_path / "runs").exists()  # nothing made


def test_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's Python example, executed as it is written."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ESC_HARNESS_DATA", str(DATA))
    monkeypatch.setenv("ESC_HARNESS_CACHE", str(tmp_path / "c.sqlite"))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    result = namespace["result"]
    header, records = store.read_run(result.run_dir)
    assert result.summary == store.read_summary(result.run_dir) and result.records == sorted(records, key=lambda r: r.index)
    assert result.metrics["rouge-l"] == pytest.approx(sum(r.scores["rouge-l"] for r in records) / len(records))
    assert result.frame().shape[0] == header.n_samples == 20
    suite_result = namespace["board"]
    assert [o.entry.task for o in suite_result.outcomes] == ["mesc", "esconv"] and not suite_result.failed


def test_api_matches_the_cli(tmp_path):
    from harness import evaluate

    cli = harness("run", "--task", "esconv", "--model", "retrieval", "--limit", "5", "--metrics", FAST, "--output-dir", "runs",
                  "--no-cache", cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    by_cli = store.read_summary(tmp_path / cli.stdout.strip().splitlines()[-1])
    by_api = evaluate("esconv", "retrieval", limit=5, metrics=FAST.split(","), output_dir=tmp_path / "api", data_dir=DATA, use_cache=False)
    assert by_api.summary.metrics == by_cli.metrics and by_api.summary.intervals == by_cli.intervals
    with pytest.raises(HarnessError, match="unknown task"):
        evaluate("mescc", "retrieval", data_dir=DATA)
