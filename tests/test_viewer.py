"""`harness view` (reports/viewer.py): the page of a MESC run, of dialogue runs (ESC-Eval with a judge panel, SAGE)
and of two runs compared, written through the CLI and rendered in headless Chromium."""
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from browser import chromium as _chromium
from test_leaderboard import make_run, sage_record

HOSTILE = "<script>window.__pwned=1</script><img src=x onerror=alert(1)>"


def _cli(*args):
    out = CliRunner().invoke(main, list(map(str, args)))
    assert out.exit_code == 0, out.output
    return out.stdout.strip().splitlines()


def _mesc(tmp_path, data_root, answer, name):
    lines = _cli("run", "--task", "mesc", "--task-args", "prompt=fixed-cot", "--model", "scripted", "--model-args", f"default={answer}",
                 "--metrics", "rouge-l", "--limit", "4", "--resamples", "10", "--output-dir", tmp_path / name, "--data-dir", data_root)
    return Path(lines[-1])


def _data(html):
    found = re.search(r'<script type="application/json" id="view-data">(.*?)</script>', html, re.S)
    return json.loads(found.group(1))


def _rendered(page: Path, mode: str, n: int) -> str:
    dom, log = _chromium(page)
    assert [line for line in log.splitlines() if ":CONSOLE" in line] == []
    body = dict(re.findall(r'data-(\w+)="([^"]*)"', re.search(r"<body([^>]*)>", dom).group(1)))
    assert body == {"samples": str(n), "mode": mode, "ready": "1"}
    return dom


@pytest.fixture(scope="module")
def mesc_runs(tmp_path_factory, data_root):
    tmp = tmp_path_factory.mktemp("view")
    a = _mesc(tmp, data_root, HOSTILE, "a")  # no <think>/<response>: every sample a format error
    b = _mesc(tmp, data_root, "<think>Emotion: sad. Situation: lost a job.</think><response>That sounds hard.</response>", "b")
    return a, b


def test_mesc_page_holds_every_sample_escaped(mesc_runs):
    a, _ = mesc_runs
    (printed,) = _cli("view", a)
    page = a / "view.html"
    assert printed == str(page)
    html = page.read_text()
    assert HOSTILE not in html and "<img src=x" not in html  # the hostile output is only inside the JSON, escaped
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html) and "<link" not in html
    data = _data(html)
    records = [json.loads(line) for line in (a / "samples.jsonl").read_text().splitlines()]
    samples = data["runs"][0]["samples"]
    assert [s["id"] for s in samples] == [r["id"] for r in sorted(records, key=lambda r: r["index"])] and len(samples) == 4
    assert [s["scores"]["rouge-l"] for s in samples] == [r["scores"]["rouge-l"] for r in sorted(records, key=lambda r: r["index"])]
    assert all(s["format_ok"] is False and s["output"] == HOSTILE for s in samples)
    assert data["runs"][0]["summary"]["format_errors"] == 4

    dom = _rendered(page, "run", 4)
    for s in samples:
        assert f'data-id="{s["id"]}"' in dom
    assert dom.count('class="sample bad"') == 4 and "format error" in dom
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in dom and "<script>window.__pwned" not in dom
    assert "rouge-l" in dom


def test_compare_page_matches_samples_by_id(mesc_runs, tmp_path):
    a, b = mesc_runs
    out = tmp_path / "cmp.html"
    assert _cli("view", a, "--compare", b, "--out", out) == [str(out)]
    data = _data(out.read_text())
    assert [len(r["samples"]) for r in data["runs"]] == [4, 4]
    dom = _rendered(out, "compare", 4)
    first_a, first_b = data["runs"][0]["samples"][0], data["runs"][1]["samples"][0]
    diff = first_a["scores"]["rouge-l"] - first_b["scores"]["rouge-l"]
    assert f"rouge-l A\u2212B {'+' if diff > 0 else ''}{round(diff * 100) / 100:g}" in dom
    assert 'value="diff:rouge-l"' in dom and "That sounds hard." in dom and "\u2713 emotion" in dom


def test_dialogue_pages_show_judges_panel_and_trajectory(tmp_path, data_root):
    seeker = tmp_path / "seeker.json"
    seeker.write_text(json.dumps(["I feel bad, really"] * 10))
    lines = _cli("run", "--task", "esc-eval", "--task-args", "rounds=1", "--model", "scripted", "--model-args", "echo=true",
                 "--seeker", "scripted", "--seeker-args", f"outputs={seeker}", "--judge", "scripted", "--judge-args", "default=Score: 3",
                 "--judge", "scripted", "--judge-args", "default=Score: 1 because", "--limit", "2", "--resamples", "10",
                 "--output-dir", tmp_path / "runs", "--data-dir", data_root)
    esc = Path(lines[-1])
    _cli("view", esc)
    dom = _rendered(esc / "view.html", "run", 2)
    assert dom.count("judge2: judge") == 2 and "Score: 1 because" in dom and "I feel bad, really" in dom
    assert '<td>empathy</td><td>2</td>' in dom  # the panel's mean of 3 and 1

    sage = make_run(tmp_path / "sage", "s", task="sage", records=[sage_record(0, [40, 60, 100], "success"), sage_record(1, [40, 20, 5], "failure")],
                    metrics={"sage-score": 52.5})
    _cli("view", sage)
    dom = _rendered(sage / "view.html", "run", 2)
    assert dom.count('<svg') == 2 and dom.count("<circle") == 6 and '"end":"failure"' in dom.replace("&quot;", '"')


def test_unfinished_and_bad_folders(tmp_path):
    running = make_run(tmp_path, "r", status="running", records=[sage_record(0, [40, 50], "turn_limit")])
    _cli("view", running)
    assert _data((running / "view.html").read_text())["runs"][0]["summary"] is None
    for bad in (tmp_path / "missing", tmp_path):
        out = CliRunner().invoke(main, ["view", str(bad)])
        assert out.exit_code != 0 and len(out.output.strip().splitlines()) == 1 and "Traceback" not in out.output
    (running / "samples.jsonl").write_text("garbage\n{}\n")
    out = CliRunner().invoke(main, ["view", str(running)])
    assert out.exit_code != 0 and "not a valid sample record" in out.output
