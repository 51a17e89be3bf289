"""Judge panels (issue 15): several judges per ESC-Eval run (`--judge A --judge B`: roles judge, judge2), every
judge's scores kept, the metrics on the judges' mean, their agreement (Krippendorff's alpha) in summary.json and
the leaderboard notes, and COMPEER Table 2's Average beside a run only when made with its panel and seeker."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from baselines import published
from harness import grading, store
from harness.agreement import krippendorff_alpha
from harness.cli import main
from harness.contract import PanelAgreement, RunHeader, Summary
from harness.errors import HarnessError
from reports.leaderboard import build_tables, footnotes
from simulators.esc_eval_judge import DIMENSIONS

from test_leaderboard import cell, make_run, table_of

DIMS = list(DIMENSIONS)  # fluency, expression, empathy, information, humanoid, skill, overall

# two scripted judges, three dialogues, seven dimensions each (in that order)
A = ["Score: 3", "Score: 2", "Score: 4", "Score: 1", "Score: 3", "Score: 0", "Score: 3"] * 3
B = ["Score: 1", "Score: 2", "no idea", "Score: 3", "Score: 4", "Score: 0", "Score: 1"] * 3
B[7] = "Score: 2"  # dialogue 1's fluency
A[18] = "nope"  # dialogue 2's humanoid: judge A's score is missing, the panel's is judge B's alone


def _write(tmp_path: Path) -> dict[str, Path]:
    files = {"seeker": tmp_path / "seeker.json", "a": tmp_path / "a.json", "b": tmp_path / "b.json"}
    files["seeker"].write_text(json.dumps([f"I feel bad number {i}, really" for i in range(15)]))
    files["a"].write_text(json.dumps(A))
    files["b"].write_text(json.dumps(B))
    return files


def _run(tmp_path: Path, data_root: Path, *judges: str) -> Path:
    files = _write(tmp_path)
    judge_options = []
    for name in judges:
        judge_options += ["--judge", "scripted", "--judge-args", f"outputs={files[name]}"]
    out = CliRunner().invoke(main, ["run", "--task", "esc-eval", "--model", "scripted", "--model-args", "echo=true",
                                    "--seeker", "scripted", "--seeker-args", f"outputs={files['seeker']}", *judge_options,
                                    "--task-args", "cards=test", "--concurrency", "1", "--no-cache", "--resamples", "200",
                                    "--output-dir", str(tmp_path / "runs"), "--data-dir", str(data_root)])
    assert out.exit_code == 0, out.output
    return Path(out.stdout.strip().splitlines()[-1])


def _records(run_dir: Path) -> list[dict]:
    return sorted((json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()), key=lambda r: r["index"])


def _scores(answers: list[str], dialogue: int) -> dict:
    from simulators.esc_eval_judge import parse_score

    return {d: parse_score(answers[7 * dialogue + i]) for i, d in enumerate(DIMS)}


# --------------------------------------------------------------------------- Krippendorff's alpha by hand


def test_ordinal_alpha_of_a_small_case_by_hand():
    """Two raters, items (0,0), (1,1), (2,1) and one item rated once (drops out). Coincidences o00=2, o11=2,
    o12=o21=1; n0=2, n1=3, n2=1, n=6. Ordinal delta^2: d01=(5-2.5)^2=6.25, d12=(4-2)^2=4, d02=(6-1.5)^2=20.25.
    Observed: 2*1*4 = 8; expected: 2*(2*3*6.25 + 3*1*4 + 2*1*20.25) = 180; alpha = 1 - 5*8/180 = 7/9."""
    ratings = np.array([[0, 1, 2, 3], [0, 1, 1, np.nan]])
    assert krippendorff_alpha(ratings, 4, "ordinal") == pytest.approx(7 / 9)
    found = grading.panel_agreement("judge", [{"judge_panel": {"judge": {"judge": {"x": a}}, "judge2": {"judge": {"x": b}}}}
                                              for a, b in ((0, 0), (1, 1), (2, 1), (3, None))], resamples=0)
    assert found.alpha == {"x": pytest.approx(7 / 9)} and found.items == {"x": 3} and found.intervals == {}
    assert grading.panel_agreement("judge", [{"judge": {"x": 1}}]) is None  # one judge: no agreement


# --------------------------------------------------------------------------- a panel run end to end


def test_two_judge_panel_run_keeps_every_judge_and_scores_their_mean(tmp_path, data_root):
    run_dir = _run(tmp_path, data_root, "a", "b")
    header = RunHeader.model_validate_json((run_dir / "run.json").read_text())
    assert list(header.roles) == ["seeker", "judge", "judge2"]
    assert header.roles["judge"].model_args["outputs"].endswith("a.json") and header.roles["judge2"].model_args["outputs"].endswith("b.json")
    records = _records(run_dir)
    for i, record in enumerate(records):
        own = record["outcome"]["judge_panel"]
        assert own["judge"]["judge"] == _scores(A, i) and own["judge2"]["judge"] == _scores(B, i)  # every judge's scores, kept
        assert own["judge"]["judge_raw"]["fluency"] == A[7 * i] and own["judge2"]["judge_raw"]["empathy"] == B[7 * i + 2]
        assert "judge_prompts" in own["judge2"]
    # the panel's value: the mean of the judges' scores, a missing one left out (by hand)
    assert [r["outcome"]["judge"]["fluency"] for r in records] == [2.0, 2.5, 2.0]
    assert [r["outcome"]["judge"]["empathy"] for r in records] == [4, 4, 4]  # judge B never gave one
    assert [r["outcome"]["judge"]["humanoid"] for r in records] == [3.5, 3.5, 4]  # dialogue 2: judge B's alone
    summary = Summary.model_validate_json((run_dir / "summary.json").read_text())
    average = (6.5 / 3 + 2 + 4 + 2 + 11 / 3 + 0 + 2) / 7
    assert summary.metrics == pytest.approx({"esc-eval-fluency": 6.5 / 3, "esc-eval-expression": 2.0, "esc-eval-empathy": 4.0,
                                             "esc-eval-information": 2.0, "esc-eval-humanoid": 11 / 3, "esc-eval-skill": 0.0,
                                             "esc-eval-overall": 2.0, "esc-eval-average": average, "esc-eval-score": 25 * average})
    assert summary.missing == {}
    # agreement per dimension, in summary.json
    found = summary.agreement["judge"]
    assert found.judges == ["judge", "judge2"] and found.level == "ordinal"
    assert found.alpha["fluency"] == pytest.approx(krippendorff_alpha([[3, 3, 3], [1, 2, 1]], 5, "ordinal"))
    assert found.alpha["humanoid"] == pytest.approx(krippendorff_alpha([[3, 3, np.nan], [4, 4, 4]], 5, "ordinal"))
    assert found.alpha["skill"] is None and found.alpha["expression"] is None  # no variation at all: undefined
    assert found.items["empathy"] == 0 and found.alpha["empathy"] is None  # judge B never scored it
    assert found.items["humanoid"] == 2 and "fluency" in found.intervals
    raw = json.loads((run_dir / "summary.json").read_text())
    assert set(raw["agreement"]["judge"]) == {"judges", "level", "alpha", "intervals", "items"}
    assert PanelAgreement.model_json_schema()["properties"]["alpha"]


def test_a_single_judge_run_is_as_before(tmp_path, data_root):
    run_dir = _run(tmp_path, data_root, "a")
    raw = json.loads((run_dir / "run.json").read_text())
    assert list(raw["roles"]) == ["seeker", "judge"]
    assert "agreement" not in json.loads((run_dir / "summary.json").read_text())
    outcome = _records(run_dir)[0]["outcome"]
    assert outcome["judge"] == _scores(A, 0) and "judge_panel" not in outcome and outcome["judge_raw"]["fluency"] == "Score: 3"


def test_panel_options_and_their_errors(tmp_path, data_root):
    with pytest.raises(HarnessError, match="without a gap"):
        grading.panel_roles("judge", ["judge", "judge3"])
    with pytest.raises(HarnessError, match="without the panel's first judge"):
        grading.panel_roles("judge", ["judge2"])
    assert grading.panel_roles("judge", ["seeker", "judge", "judge2", "judge3"]) == ["judge", "judge2", "judge3"]
    out = CliRunner().invoke(main, ["run", "--task", "esc-eval", "--model", "scripted", "--judge", "scripted", "--judge-args", "default=1",
                                    "--judge-args", "default=2", "--output-dir", str(tmp_path / "runs"), "--data-dir", str(data_root)])
    assert out.exit_code != 0 and "--judge-args given 2 times for 1 --judge" in out.output
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- rescore with a panel


def test_rescore_with_a_panel(tmp_path, data_root):
    source = _run(tmp_path, data_root, "a")
    files = _write(tmp_path)
    out = CliRunner().invoke(main, ["esc-eval", "rescore", str(source), "--judge", "scripted", "--judge-args", f"outputs={files['a']}",
                                    "--judge", "scripted", "--judge-args", f"outputs={files['b']}", "--no-cache", "--resamples", "0",
                                    "--output-dir", str(tmp_path / "rescored")])
    assert out.exit_code == 0, out.output
    rescored = Path(out.stdout.strip().splitlines()[-1])
    header = RunHeader.model_validate_json((rescored / "run.json").read_text())
    assert set(header.roles) == {"seeker", "judge", "judge2"} and header.source.startswith("re-judged from")
    records = _records(rescored)
    assert [r["outcome"]["judge"]["fluency"] for r in records] == [2.0, 2.5, 2.0]
    assert records[2]["outcome"]["judge_panel"]["judge"]["judge"]["humanoid"] is None
    summary = Summary.model_validate_json((rescored / "summary.json").read_text())
    assert summary.metrics["esc-eval-humanoid"] == pytest.approx(11 / 3) and summary.agreement["judge"].judges == ["judge", "judge2"]
    # a panel run re-judged by one judge drops the second judge from run.json
    again = CliRunner().invoke(main, ["esc-eval", "rescore", str(rescored), "--judge", "scripted", "--judge-args", f"outputs={files['b']}",
                                      "--no-cache", "--resamples", "0", "--output-dir", str(tmp_path / "single")])
    assert again.exit_code == 0, again.output
    single = Path(again.stdout.strip().splitlines()[-1])
    assert set(json.loads((single / "run.json").read_text())["roles"]) == {"seeker", "judge"}
    assert "agreement" not in json.loads((single / "summary.json").read_text())


# --------------------------------------------------------------------------- the leaderboard's column rule

ESC_ROLE = {"model": "hf", "model_args": {"model": "/models/ESC-Role"}}
ESC_RANK = {"model": "esc-rank", "model_args": {"model": "/models/internlm2-chat-7b", "adapters_dir": "/models/ESC-RANK"}}
GPT4O = {"model": "openai", "model_args": {"model": "gpt-4o"}}
MINI = {"model": "openai", "model_args": {"model": "gpt-4o-mini"}}


def test_compeer_average_shares_a_column_only_with_its_panel_and_seeker(tmp_path):
    runs = tmp_path / "runs"
    metrics = {"esc-eval-empathy": 3.2, "esc-eval-score": 80.0}
    make_run(runs, "panel", model="m-panel", task="esc-eval", roles={"seeker": ESC_ROLE, "judge": ESC_RANK, "judge2": GPT4O}, metrics=metrics)
    make_run(runs, "reversed", model="m-reversed", task="esc-eval", roles={"seeker": ESC_ROLE, "judge": GPT4O, "judge2": ESC_RANK}, metrics=metrics)
    make_run(runs, "other-panel", model="m-other", task="esc-eval", roles={"seeker": ESC_ROLE, "judge": ESC_RANK, "judge2": MINI}, metrics=metrics)
    make_run(runs, "single", model="m-single", task="esc-eval", roles={"seeker": ESC_ROLE, "judge": ESC_RANK}, metrics=metrics)
    make_run(runs, "other-seeker", model="m-seeker", task="esc-eval", roles={"seeker": GPT4O, "judge": ESC_RANK, "judge2": GPT4O}, metrics=metrics)
    # the panel's agreement lands in the table's notes
    summary = Summary(n=10, metrics=metrics, agreement={"judge": PanelAgreement(judges=["judge", "judge2"], alpha={"fluency": 0.5, "skill": None},
                                                                                intervals={"fluency": (0.25, 0.75)}, items={"fluency": 10, "skill": 10})})
    store.write_json(runs / "panel" / "summary.json", summary)
    esc = table_of(build_tables(runs, published.load_all()), "esc-eval")
    shared = [c for c in esc.columns if c.metric == "esc-eval-score" and "COMPEER-URP" in [r.label for r in esc.rows if c.key in r.cells]]
    assert len(shared) == 1 and shared[0].measured  # the Average joined a measured column ...
    holders = {r.label for r in esc.rows if shared[0].key in r.cells}
    assert {"m-panel", "m-reversed", "COMPEER-URP"} <= holders  # ... the panel's, in either order
    assert not holders & {"m-other", "m-single", "m-seeker"}  # another panel, one judge, another seeker: never
    assert dict(shared[0].key[2])["judge_panel"] == "esc-rank+gpt-4o"
    # the dimensions (0-100 there, 0-4 here) never share a column
    assert cell(esc, "COMPEER-URP", "esc-eval-empathy [ESC-Rank+GPT-4o, 0-100]").value == 88.15
    assert all(not c.measured for c in esc.columns if c.metric == "esc-eval-empathy" and any(r.label == "COMPEER-URP" and c.key in r.cells for r in esc.rows))
    notes = " ".join(footnotes(esc))
    assert "judge panel of 2 (judge=esc-rank, judge2=gpt-4o)" in notes and "fluency 0.50 [0.25, 0.75]; skill undefined" in notes


def test_without_the_panel_the_average_keeps_its_own_column(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "single", model="m-single", task="esc-eval", roles={"seeker": ESC_ROLE, "judge": GPT4O}, metrics={"esc-eval-score": 70.0})
    esc = table_of(build_tables(runs, published.load_all()), "esc-eval")
    assert cell(esc, "COMPEER-URP", "esc-eval-score [ESC-Rank+GPT-4o, 0-100]").value == 82.39
    assert cell(esc, "m-single", "esc-eval-score").value == 70.0 and cell(esc, "COMPEER-URP", "esc-eval-score") is None
