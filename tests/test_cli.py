"""The real CLI end to end, as a user runs it (HELM-style smoke test): run -> score -> leaderboard."""
import csv
import json
import os
import subprocess
import sys

import pytest

from harness.cli import parse_kv
from harness.errors import HarnessError


def harness(*args, env=None):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env={**os.environ, **(env or {})})


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    message = "\n".join(line for line in proc.stderr.strip().splitlines() if not line.startswith("warning: "))
    assert len(message.splitlines()) == 1 and message.startswith("error: "), message
    for needle in needles:
        assert needle in message, message


@pytest.mark.slow
def test_run_score_leaderboard(tmp_path, data_root):
    runs = tmp_path / "runs"
    proc = harness("run", "--task", "mesc", "--model", "retrieval", "--limit", "12", "--output-dir", str(runs))
    assert proc.returncode == 0, proc.stderr
    run_dir = proc.stdout.strip().splitlines()[-1]
    summary = json.loads(open(os.path.join(run_dir, "summary.json")).read())
    expected = ["bleu-1", "bleu-2", "bleu-3", "bleu-4", "rouge-l", "meteor", "dist-1", "dist-2", "dist-3", "dist-1-plain", "dist-2-plain", "dist-3-plain",
                "dist-1-response", "dist-2-response", "dist-3-response"]
    expected.append("bertscore-f1-minilm")  # optional default; the install has bert-score and MiniLM
    assert summary["n"] == 12 and list(summary["metrics"]) == expected
    assert "warning: diff-epitome, diff-epitome-er, diff-epitome-ip, diff-epitome-ex left out" in proc.stderr and "harness epitome train" in proc.stderr  # not built here
    assert summary["metric_info"]["meteor"]["wordnet"].startswith("3.0")
    for name, value in summary["metrics"].items():
        assert f"{name}  " in proc.stdout and f"{value:.2f}" in proc.stdout  # the printed table
    assert len(open(os.path.join(run_dir, "samples.jsonl")).read().splitlines()) == 12

    rescored = harness("score", run_dir)
    assert rescored.returncode == 0, rescored.stderr
    assert json.loads(open(os.path.join(run_dir, "summary.json")).read()) == summary

    board = harness("leaderboard", "--runs-dir", str(runs))  # Markdown on stdout
    assert board.returncode == 0, board.stderr
    assert board.stdout.startswith("## mesc (test)") and "| retrieval | measured | 12 |" in board.stdout
    assert f"{summary['metrics']['bleu-2']:.2f} [{summary['intervals']['bleu-2'][0]:.2f}, {summary['intervals']['bleu-2'][1]:.2f}]" in board.stdout
    assert "| FIRES | FIRES Table 1, Table 2, Table 4 | 454 |" in board.stdout  # published rows beside the run
    out = tmp_path / "board"
    board = harness("leaderboard", "--runs-dir", str(runs), "--format", "md,csv,latex", "--output-dir", str(out), "--no-figures")
    assert board.returncode == 0, board.stderr
    assert board.stdout.split() == [str(out / name) for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.tex")]
    for name, marker in (("leaderboard.md", "|"), ("leaderboard.csv", ","), ("leaderboard.tex", "\\begin{tabular}")):
        text = (out / name).read_text()
        assert marker in text and "retrieval" in text and "mesc" in text
        if name != "leaderboard.csv":  # md and latex round to 2 decimals; csv keeps full precision
            assert f"{summary['metrics']['bleu-2']:.2f}" in text
    rows = [r for r in csv.DictReader((out / "leaderboard.csv").open()) if r["kind"] == "measured"]
    assert len(rows) == 1 and (rows[0]["model"], rows[0]["task"], rows[0]["split"], rows[0]["n"]) == ("retrieval", "mesc", "test", "12")
    assert float(rows[0]["bleu-2"]) == pytest.approx(summary["metrics"]["bleu-2"])
    assert float(rows[0]["bleu-2_low"]) == pytest.approx(summary["intervals"]["bleu-2"][0])


def test_data_stats_gives_the_paper_counts(data_root):
    proc = harness("data", "stats", "mesc", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"train": 3721, "val": 445, "test": 454}


def test_list_shows_the_registered_names():
    assert {"mesc"} <= set(line.split()[0] for line in harness("list", "tasks").stdout.splitlines())
    assert {"retrieval", "scripted"} <= set(line.split()[0] for line in harness("list", "models").stdout.splitlines())
    metrics = set(line.split()[0] for line in harness("list", "metrics").stdout.splitlines())
    assert {"bleu-2", "rouge-l", "meteor", "dist-3", "dist-3-plain"} <= metrics


def test_unknown_names_suggest_the_closest(data_root):
    assert_one_line_error(harness("run", "--task", "mesk", "--model", "retrieval"), "unknown task 'mesk'", "Did you mean 'mesc'?")
    assert_one_line_error(harness("run", "--task", "mesc", "--model", "retreival"), "Did you mean 'retrieval'?")
    assert_one_line_error(harness("run", "--task", "mesc", "--model", "retrieval", "--metrics", "blue-2"), "Did you mean 'bleu-2'?")


def test_missing_data_says_how_to_get_it(tmp_path):
    proc = harness("run", "--task", "mesc", "--model", "retrieval", "--output-dir", str(tmp_path / "runs"), env={"ESC_HARNESS_DATA": str(tmp_path / "empty")})
    assert_one_line_error(proc, "MESC.csv: missing dataset file", "harness data fetch mesc")
    assert not (tmp_path / "runs").exists()  # nothing half-written


def test_bad_options_are_one_line_errors(tmp_path, data_root):
    out = ["--output-dir", str(tmp_path / "runs")]
    assert_one_line_error(harness("run", "--task", "mesc", "--model", "retrieval", "--split", "dev", *out), "no split 'dev'", "train, val, test")
    assert_one_line_error(harness("run", "--task", "mesc", "--model", "retrieval", "--limit", "0", *out), "--limit")
    assert_one_line_error(harness("run", "--task", "mesc", "--model", "retrieval", "--model-args", "k=1,oops", *out), "bad --model-args")
    assert_one_line_error(harness("run", "--task", "mesc", "--model", "retrieval", "--split", "train", *out), "corpus_split")
    assert_one_line_error(harness("run", "--task", "mesc"), "--model")
    assert_one_line_error(harness("score", str(tmp_path)), "run.json: not found")
    assert_one_line_error(harness("leaderboard", "--runs-dir", str(tmp_path)), "no finished runs")
    assert_one_line_error(harness("leaderboard", "--runs-dir", str(tmp_path), "--format", "html"), "give --out FILE.html")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_parse_kv():
    assert parse_kv("temperature=0.7,max_tokens=128,name=gpt-4o,stop=[\"a\",\"b\"],flag=true") == {
        "temperature": 0.7, "max_tokens": 128, "name": "gpt-4o", "stop": ["a", "b"], "flag": True}
    assert parse_kv("prompt=hello, world") == {"prompt": "hello, world"}
    with pytest.raises(HarnessError):
        parse_kv("=3")


def test_schema_documents_the_run_folder():
    schemas = json.loads(harness("schema").stdout)
    assert set(schemas) == {"run.json", "samples.jsonl", "summary.json", "train.json"}
    assert schemas["run.json"]["properties"]["status"]["enum"] == ["running", "finished", "failed"]
    assert {"id", "history", "reference", "output", "response", "scores"} <= set(schemas["samples.jsonl"]["properties"])
