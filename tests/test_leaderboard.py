"""`harness leaderboard`: published numbers as data, variant separation, best marks, intervals, paired
significance against a reference, and the file contracts of md / csv / latex."""
import csv
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from baselines import published
from harness import store, uncertainty
from harness.contract import DialogueTurn, RunHeader, SampleRecord, Summary, Turn
from harness.errors import HarnessError
from harness.leaderboard import collect_runs
from reports.leaderboard import (DAGGER, _StoredScore, build_tables, render_csv, render_latex, render_markdown)
from reports.leaderboard_cli import leaderboard as leaderboard_command

# the papers' text lies beside the data: $ESC_HARNESS_DATA/../papers, else ../shared/papers beside the checkout
_DATA = os.environ.get("ESC_HARNESS_DATA")
PAPERS = Path(_DATA).resolve().parent / "papers" if _DATA else Path(__file__).resolve().parents[2] / "shared" / "papers"


# --------------------------------------------------------------------------- fake run folders


def make_run(root: Path, run_id: str, *, model="scripted", model_args=None, task="mesc", task_args=None, split="test",
             metrics: dict | None = None, intervals: dict | None = None, info: dict | None = None, records=None,
             started="2026-01-01T00:00:00", status="finished", roles=None, **header) -> Path:
    """A run folder written with harness.store and the contract's models, as `harness run` leaves it."""
    folder = root / run_id
    folder.mkdir(parents=True)
    records = records or []
    header = RunHeader(run_id=run_id, task=task, task_args=task_args or {}, model=model, model_args=model_args or {}, split=split, seed=0,
                       metrics=list(metrics or {}), started_at=started, finished_at=started if status == "finished" else None,
                       status=status, n_samples=len(records) or 10, **({"roles": roles} if roles else {}), **header)
    store.write_json(folder / "run.json", header)
    store.rewrite_records(folder, records)
    if status == "finished":
        store.write_json(folder / "summary.json", Summary(n=len(records) or 10, metrics=metrics or {}, intervals=intervals or {},
                                                          metric_info=info or {}))
    return folder


def record(i: int, scores: dict | None = None, response="ok", reference="ref", **extra) -> SampleRecord:
    return SampleRecord(index=i, id=f"t/test/{i:03d}", history=[Turn(speaker="Client", text="hello")], reference=f"{reference} {i}",
                        output=response, response=response, scores=scores or {}, **extra)


def sage_record(i: int, trajectory: list[int], end: str) -> SampleRecord:
    turns = []
    for emotion in trajectory:
        turns += [DialogueTurn(role="seeker", text="...", details={"emotion": emotion}), DialogueTurn(role="supporter", text="...")]
    return SampleRecord(index=i, id=f"sage/test/{i:03d}", history=[], reference="", output="", response="", dialogue=turns,
                        outcome={"final_emotion": trajectory[-1], "end": end, "trajectory": trajectory},
                        scores={"sage-score": float(trajectory[-1])})


def esc_eval_record(i: int, judge: dict) -> SampleRecord:
    return SampleRecord(index=i, id=f"esc-eval/test/en/{i:03d}", history=[], reference="", output="", response="",
                        dialogue=[DialogueTurn(role="seeker", text="hi"), DialogueTurn(role="supporter", text="hello")],
                        outcome={"judge": judge}, scores={f"esc-eval-{k}": float(v) for k, v in judge.items()})


def table_of(tables, task, split="test"):
    return next(t for t in tables if (t.task, t.split) == (task, split))


def row_of(table, label):
    return next(r for r in table.rows if r.label == label)


def cell(table, label, column_label):
    column = next(c for c in table.columns if c.label == column_label)
    return row_of(table, label).cells.get(column.key)


# --------------------------------------------------------------------------- published numbers


def test_published_files_load_and_hold_the_papers_numbers():
    files = dict(published.load_all())
    assert set(files) == {"fires-table1-mesc", "fires-table2-mesc-components", "fires-table4-mesc-aspects", "fires-table5-emotyda-esc",
                          "compeer-table2-esc-eval", "compeer-table3-sage", "sage-leaderboard"}
    t1 = files["fires-table1-mesc"]
    assert (t1.task, t1.split, t1.n, t1.source.table) == ("mesc", "test", 454, "Table 1")
    fires = next(r for r in t1.rows if r.model == "FIRES")
    assert fires.values == {"B-2": 10.18, "R-L": 22.76, "M.": 19.54, "F_BERT": 86.26, "Dist-3": 98.93, "DIFF-E.": 0.7209}
    assert {r.model for r in t1.rows if r.variant} == {"GPT-3.5", "GPT-4", "BlenderBot-Joint", "BBMHR", "SMES"}  # the paper's * rows
    assert t1.column("F_BERT").metric == "bertscore-f1-roberta-large" and t1.column("DIFF-E.").match == {"classifier": "original"}
    assert next(r for r in files["fires-table5-emotyda-esc"].rows if r.model == "FIRES w/o RL").values["DIFF-E."] == 1.04517
    compeer = files["compeer-table2-esc-eval"]
    # the dimensions are on 0-100: never beside a measured 0-4 mean; the Average only beside a run with the same
    # panel and seeker (tests/test_judge_panel.py)
    assert all(c.match is None for c in compeer.columns if c.key != "Average")
    assert compeer.column("Average").match == {"judge_panel": "esc-rank+gpt-4o", "seeker": "esc-role"}
    urp = next(r for r in compeer.rows if r.model == "COMPEER-URP").values
    assert (urp["Fluency"], urp["Humanoid"], urp["Average"]) == (85.66, 88.92, 82.39)
    # the Average column is the mean of the seven dimensions, except three rows the paper prints otherwise
    off = {r.model for r in compeer.rows if abs(sum(v for k, v in r.values.items() if k != "Average") / 7 - r.values["Average"]) > 0.011}
    assert off == {"InternLM3", "COMPEER-UR", "COMPEER-URP"}
    sage = {r.model: (r.values["Score"], r.values["Success"], r.values["Failure"]) for r in files["sage-leaderboard"].rows}
    assert sage["GPT-4.1"] == (68.2, 35, 13) and sage["Qwen2.5-72B"] == (19.1, 4, 70) and len(sage) == 7


def test_sage_leaderboard_is_the_data_readme(data_root):
    readme = (data_root / "README.md").read_text()
    for row in dict(published.load_all())["sage-leaderboard"].rows:
        v = row.values
        assert f"{row.model} {v['Score']:.1f} / {int(v['Success'])} / {int(v['Failure'])}" in readme


@pytest.mark.skipif(not PAPERS.is_dir(), reason="the papers' text is not beside the checkout")
def test_every_transcribed_row_is_in_the_paper_text():
    """Second reading: each row's numbers, in column order, end a line of the paper's text."""
    texts = {"FIRES": (PAPERS / "fires-paper.txt").read_text(), "COMPEER": (PAPERS / "compeer-paper.txt").read_text()}
    number = re.compile(r"(?<![\w.])(-|\d+\.\d+|\d+)(?![\w.])")
    checked = 0
    for stem, table in published.load_all():
        if table.source.short not in texts:
            continue
        lines = [[None if t == "-" else float(t) for t in number.findall(line)] for line in texts[table.source.short].splitlines()]
        for row in table.rows:
            values = [row.values.get(c.key) for c in table.columns]
            assert any(found[-len(values):] == values for found in lines if len(found) >= len(values)), (stem, row.model)
            checked += 1
    assert checked == 13 + 6 + 6 + 4 + 13 + 13


def test_a_bad_published_file_is_one_clear_error(tmp_path):
    good = json.loads((published.FOLDER / "fires-table5-emotyda-esc.json").read_text())
    good["rows"][0]["values"]["BLEU"] = 1.0
    (tmp_path / "bad.json").write_text(json.dumps(good))
    with pytest.raises(HarnessError, match=r"bad\.json: not a valid published-numbers file .*unknown columns \['BLEU'\]"):
        published.load_all(tmp_path)
    with pytest.raises(HarnessError, match="no such folder"):
        published.load_all(tmp_path / "missing")


def test_a_column_claiming_a_measured_metric_needs_its_evidence(tmp_path):
    # every shipped claim carries its reason
    for stem, table in published.load_all():
        for column in table.columns:
            assert column.match is None or len(column.evidence) > 40, (stem, column.key)
    # a claim without one is refused, naming the file and the column
    table = json.loads((published.FOLDER / "fires-table5-emotyda-esc.json").read_text())
    del table["columns"][0]["evidence"]
    (tmp_path / "claim.json").write_text(json.dumps(table))
    with pytest.raises(HarnessError, match=r"claim\.json: .*column 'B-2' claims .*'bleu-2'.* without `evidence`"):
        published.load_all(tmp_path)
    # the same column with match null needs none: its numbers get their own column
    table["columns"][0]["match"] = None
    (tmp_path / "claim.json").write_text(json.dumps(table))
    assert published.load_all(tmp_path)[0][1].columns[0].match is None


def test_published_dist_3_shares_the_per_response_column_never_the_corpus_one(tmp_path):
    t1 = dict(published.load_all())["fires-table1-mesc"]
    assert t1.column("Dist-3").metric == "dist-3-response"
    make_run(tmp_path, "r", model="retrieval", metrics={"dist-3": 48.5, "dist-3-plain": 48.45, "dist-3-response": 96.31})
    mesc = table_of(build_tables(tmp_path, published.load_all()), "mesc")
    assert cell(mesc, "FIRES", "dist-3-response").value == 98.93 and cell(mesc, "retrieval", "dist-3-response").value == 96.31
    for corpus_level in ("dist-3", "dist-3-plain"):
        assert cell(mesc, "retrieval", corpus_level) is not None
        assert all(cell(mesc, r.label, corpus_level) is None for r in mesc.rows if r.kind == "published")


# --------------------------------------------------------------------------- rows


def test_latest_run_per_model_task_options_and_split(tmp_path):
    make_run(tmp_path, "a-old", metrics={"bleu-2": 1.0}, started="2026-01-01T00:00:00")
    make_run(tmp_path, "a-new", metrics={"bleu-2": 2.0}, started="2026-01-02T00:00:00")
    make_run(tmp_path, "a-fires", task_args={"prompt": "fires"}, metrics={"bleu-2": 3.0})
    make_run(tmp_path, "a-running", metrics={"bleu-2": 9.0}, started="2026-01-03T00:00:00", status="running")
    make_run(tmp_path, "a-val", split="val", metrics={"bleu-2": 4.0})
    entries = collect_runs(tmp_path)
    assert sorted((e.label, e.header.split, e.summary.metrics["bleu-2"]) for e in entries) == [
        ("scripted", "test", 2.0), ("scripted", "val", 4.0), ("scripted [prompt=fires]", "test", 3.0)]
    assert len(collect_runs(tmp_path, keep_all=True)) == 4
    tables = build_tables(tmp_path)
    assert [(t.task, t.split) for t in tables] == [("mesc", "test"), ("mesc", "val")]


def test_published_rows_are_marked_and_deduplicated(tmp_path):
    make_run(tmp_path, "r", model="retrieval", metrics={"bleu-2": 2.77}, intervals={"bleu-2": (2.25, 3.31)})
    mesc = table_of(build_tables(tmp_path, published.load_all()), "mesc")
    assert [r.kind for r in mesc.rows][:1] == ["measured"] and all(r.kind == "published" for r in mesc.rows[1:])
    fires = [r for r in mesc.rows if r.label == "FIRES"]
    assert len(fires) == 1 and fires[0].source == "FIRES Table 1, Table 2, Table 4"  # the same numbers in three tables
    assert row_of(mesc, "FIRES w/o Scene").source == "FIRES Table 4"
    text = render_markdown([mesc])
    assert "| retrieval | measured | 454 |" not in text and "| retrieval | measured | 10 | 2.77 [2.25, 3.31] |" in text
    assert "| FIRES | FIRES Table 1, Table 2, Table 4 | 454 | 10.18 |" in text


# --------------------------------------------------------------------------- columns: metric variants


MINILM = {"backbone": "sentence-transformers/all-MiniLM-L6-v2", "num_layers": 6, "idf": False, "rescale_with_baseline": False}
ROBERTA = {"backbone": "roberta-large", "num_layers": 17, "idf": False, "rescale_with_baseline": False}


def test_variants_never_share_a_column(tmp_path):
    make_run(tmp_path, "mini", model="retrieval", metrics={"bleu-2": 3.0, "bertscore-f1-minilm": 21.3, "diff-epitome": 0.93},
             info={"bertscore-f1-minilm": MINILM, "diff-epitome": {"classifier": "minilm-l6-bi"}})
    mesc = table_of(build_tables(tmp_path, published.load_all()), "mesc")
    labels = [c.label for c in mesc.columns]
    # measured MiniLM BERTScore and the paper's roberta-large: two columns, each holding only its own kind
    assert cell(mesc, "retrieval", "bertscore-f1-minilm").value == 21.3
    assert cell(mesc, "FIRES", "bertscore-f1-minilm") is None
    assert cell(mesc, "FIRES", "bertscore-f1-roberta-large [roberta-large]").value == 86.26
    assert cell(mesc, "retrieval", "bertscore-f1-roberta-large [roberta-large]") is None
    # DIFF-EPITOME from retrained classifiers is not the paper's (original EPITOME classifiers)
    assert cell(mesc, "retrieval", "diff-epitome").value == 0.93 and cell(mesc, "FIRES", "diff-epitome") is None
    assert cell(mesc, "FIRES", "diff-epitome [EPITOME RoBERTa]").value == 0.7209
    # the lexical metrics are the harness's own definition: one column
    assert cell(mesc, "FIRES", "bleu-2").value == 10.18 and cell(mesc, "retrieval", "bleu-2").value == 3.0
    # rows FIRES copied from Chu et al. keep their own columns
    assert cell(mesc, "SMES", "bleu-2") is None and cell(mesc, "SMES", "bleu-2 [Chu et al. 2024]").value == 5.13
    assert row_of(mesc, "SMES").n is None
    # the harness's own columns come first, published-only variants after
    first_published = min(i for i, c in enumerate(mesc.columns) if c.key[0] == "p")
    assert all(c.key[0] == "m" for c in mesc.columns[:first_published]) and "bleu-2 [Chu et al. 2024]" in labels[first_published:]


def test_same_variant_shares_the_column(tmp_path):
    make_run(tmp_path, "rl", model="hf", metrics={"bertscore-f1-roberta-large": 85.9, "diff-epitome": 0.8},
             info={"bertscore-f1-roberta-large": ROBERTA, "diff-epitome": {"classifier": "original"}})
    mesc = table_of(build_tables(tmp_path, published.load_all()), "mesc")
    assert cell(mesc, "FIRES", "bertscore-f1-roberta-large").value == 86.26
    assert cell(mesc, "hf", "bertscore-f1-roberta-large").value == 85.9
    assert cell(mesc, "FIRES", "diff-epitome").value == 0.7209 and cell(mesc, "hf", "diff-epitome").value == 0.8
    assert not any(c.label.startswith("diff-epitome [") or c.label.startswith("bertscore-f1-roberta-large [roberta") for c in mesc.columns)


def test_measured_runs_of_different_variants_get_separate_columns(tmp_path):
    make_run(tmp_path, "a", model="m1", metrics={"diff-epitome": 0.9}, info={"diff-epitome": {"classifier": "minilm-l6-bi"}})
    make_run(tmp_path, "b", model="m2", metrics={"diff-epitome": 0.7}, info={"diff-epitome": {"classifier": "original"}})
    mesc = table_of(build_tables(tmp_path, published.load_all()), "mesc")
    assert cell(mesc, "m1", "diff-epitome [classifier=minilm-l6-bi]").value == 0.9
    assert cell(mesc, "m2", "diff-epitome [classifier=original]").value == 0.7
    assert cell(mesc, "FIRES", "diff-epitome [classifier=original]").value == 0.7209  # the paper's classifiers
    assert cell(mesc, "FIRES", "diff-epitome [classifier=minilm-l6-bi]") is None


def test_dialogue_metrics_match_on_the_simulator(tmp_path):
    deepseek = {"seeker": {"model": "openai", "model_args": {"model": "deepseek-v3-2024-1227"}}}
    make_run(tmp_path / "runs", "s1", model="openai", model_args={"model": "gpt-4.1"}, task="sage", roles=deepseek,
             metrics={"sage-score": 60.0, "sage-success": 30.0, "sage-failure": 10.0})
    make_run(tmp_path / "runs", "s2", model="openai", model_args={"model": "qwen"}, task="sage",  # the model under test plays the seeker too
             metrics={"sage-score": 20.0, "sage-success": 1.0, "sage-failure": 50.0})
    make_run(tmp_path / "runs", "e1", model="openai", model_args={"model": "gpt-4o"}, task="esc-eval",
             metrics={"esc-eval-empathy": 3.1, "esc-eval-score": 72.0})
    shipped = published.load_all()
    tables = build_tables(tmp_path / "runs", shipped)
    sage = table_of(tables, "sage")
    assert cell(sage, "openai(model=gpt-4.1)", "sage-score [seeker=deepseek-v3-2024-1227]").value == 60.0
    assert cell(sage, "openai(model=qwen)", "sage-score [seeker=qwen]").value == 20.0
    # the harness's agent prompts are its own: the published SAGE numbers keep their columns, per agent
    assert cell(sage, "GPT-4.1", "sage-score [DeepSeek-V3 agent, released prompts]").value == 68.2
    assert cell(sage, "COMPEER-URP", "sage-score [GPT-4o agent]").value == 48.93
    assert cell(sage, "GPT-4.1", "sage-score [seeker=deepseek-v3-2024-1227]") is None
    esc = table_of(tables, "esc-eval")
    assert cell(esc, "openai(model=gpt-4o)", "esc-eval-empathy").value == 3.1
    assert cell(esc, "COMPEER-URP", "esc-eval-empathy [ESC-Rank+GPT-4o, 0-100]").value == 88.15
    assert cell(esc, "COMPEER-URP", "esc-eval-score [ESC-Rank+GPT-4o, 0-100]").value == 82.39  # their Average, on 0-100
    assert cell(esc, "COMPEER-URP", "esc-eval-empathy") is None and cell(esc, "COMPEER-URP", "esc-eval-score") is None
    # the roles' prompts are part of the variant too
    make_run(tmp_path / "runs", "s3", model="openai", model_args={"model": "o1"}, task="sage", roles=deepseek, prompt_version="sage-2",
             metrics={"sage-score": 40.0})
    sage = table_of(build_tables(tmp_path / "runs"), "sage")
    assert cell(sage, "openai(model=o1)", "sage-score [seeker=deepseek-v3-2024-1227, prompt_version=sage-2]").value == 40.0
    assert cell(sage, "openai(model=gpt-4.1)", "sage-score [seeker=deepseek-v3-2024-1227, prompt_version=sage-2]") is None
    (tmp_path / "runs" / "s3" / "run.json").unlink()
    # a published file may name the agent a run must have used: then the numbers share its column
    own = json.loads((published.FOLDER / "sage-leaderboard.json").read_text())
    for column in own["columns"]:
        column["match"] = {"seeker": ["DeepSeek-V3-2024-1227", "deepseek-v3-1227"]}
        column["evidence"] = "the run's seeker was the same DeepSeek-V3 release that played the published agent"
    (tmp_path / "pub").mkdir()
    (tmp_path / "pub" / "own.json").write_text(json.dumps(own))
    sage = table_of(build_tables(tmp_path / "runs", published.load_all(tmp_path / "pub")), "sage")
    assert cell(sage, "GPT-4.1", "sage-score [seeker=deepseek-v3-2024-1227]").value == 68.2
    assert cell(sage, "GPT-4.1", "sage-score [seeker=qwen]") is None


# --------------------------------------------------------------------------- best, intervals, rendering


def test_best_is_marked_per_column_and_lower_is_better_where_it_should(tmp_path):
    info = {"diff-epitome": {"classifier": "minilm-l6-bi"}}
    make_run(tmp_path, "a", model="a", metrics={"bleu-2": 5.0, "diff-epitome": 0.9, "dist-3": 50.004}, info=info)
    make_run(tmp_path, "b", model="b", metrics={"bleu-2": 4.0, "diff-epitome": 0.6, "dist-3": 49.996}, info=info)
    make_run(tmp_path, "s", model="s", task="sage", metrics={"sage-failure": 3.0, "sage-success": 2.0})
    make_run(tmp_path, "t", model="t", task="sage", metrics={"sage-failure": 7.0, "sage-success": 9.0})
    tables = build_tables(tmp_path)
    mesc, sage = table_of(tables, "mesc"), table_of(tables, "sage")
    assert cell(mesc, "a", "bleu-2").best and not cell(mesc, "b", "bleu-2").best
    assert cell(mesc, "b", "diff-epitome").best and not cell(mesc, "a", "diff-epitome").best  # lower is better
    assert cell(mesc, "a", "dist-3").best and cell(mesc, "b", "dist-3").best  # 50.00 both, as shown: a tie
    assert cell(sage, "s", "sage-failure [seeker=s]").best and cell(sage, "t", "sage-success [seeker=t]").best
    text = render_markdown(tables)
    assert "| a | measured | 10 | **5.00** | 50.00" not in text  # dist-3 is bold too
    assert re.search(r"\| a \| measured \| 10 \| \*\*5\.00\*\* \| \*\*50\.00\*\* \| 0\.9000 \|", text), text
    assert re.search(r"\| b \| measured \| 10 \| 4\.00 \| \*\*50\.00\*\* \| \*\*0\.6000\*\* \|", text), text
    assert "diff-epitome \u2193" in text and "bleu-2 \u2191" in text
    assert "\\textbf{0.6000}" in render_latex(tables)


def test_intervals_render_in_every_format(tmp_path):
    make_run(tmp_path, "a", model="a_b", metrics={"rouge-l": 12.09, "bleu-2": 2.77}, intervals={"rouge-l": (11.2101, 13.0449)})
    tables = build_tables(tmp_path)
    md = render_markdown(tables)
    assert "| **2.77** | **12.09** [11.21, 13.04] |" in md  # an interval where summary.json has one; else the value alone
    rows = list(csv.DictReader(io.StringIO(render_csv(tables))))
    assert rows[0]["model"] == "a_b" and float(rows[0]["rouge-l"]) == 12.09
    assert float(rows[0]["rouge-l_low"]) == 11.2101 and float(rows[0]["rouge-l_high"]) == 13.0449 and rows[0]["bleu-2_low"] == ""
    latex = render_latex(tables)
    assert "{\\scriptsize [11.21, 13.04]}" in latex and "a\\_b" in latex and "\\begin{tabular}" in latex and "\\bottomrule" in latex


# --------------------------------------------------------------------------- significance


def _paired_runs(tmp_path, n=40):
    rng = np.random.default_rng(5)
    base = rng.uniform(10, 20, n)
    make_run(tmp_path, "ref", model="ref", metrics={"rouge-l": float(base.mean())},
             records=[record(i, {"rouge-l": float(v)}) for i, v in enumerate(base)])
    better = base + 3 + rng.normal(0, 0.5, n)  # clearly better on every sample
    make_run(tmp_path, "better", model="better", metrics={"rouge-l": float(better.mean())},
             records=[record(i, {"rouge-l": float(v)}) for i, v in enumerate(better)])
    same = base + rng.normal(0, 0.5, n)  # noise around the reference
    make_run(tmp_path, "same", model="same", metrics={"rouge-l": float(same.mean())},
             records=[record(i, {"rouge-l": float(v)}) for i, v in enumerate(same)])
    part = base[:10] + 5  # shares only 10 samples with the reference
    make_run(tmp_path, "part", model="part", metrics={"rouge-l": float(part.mean())},
             records=[record(i, {"rouge-l": float(v)}) for i, v in enumerate(part)])
    return base, better, same


def test_significance_marks_against_the_reference(tmp_path):
    base, better, same = _paired_runs(tmp_path)
    tables = build_tables(tmp_path, reference="ref", resamples=500)
    mesc = table_of(tables, "mesc")
    assert mesc.reference == "ref" and row_of(mesc, "ref").reference
    assert cell(mesc, "ref", "rouge-l").p_value is None
    assert cell(mesc, "better", "rouge-l").significant and not cell(mesc, "same", "rouge-l").significant
    assert (row_of(mesc, "better").shared, row_of(mesc, "part").shared) == (40, 10)
    # the p-values are harness.uncertainty's paired test on the stored per-sample scores
    from harness.contract import ScoredPair

    def pairs(values):
        return [ScoredPair("", "", outcome={"__stored_scores__": {"rouge-l": float(v)}}) for v in values]

    expected = uncertainty.compare([_StoredScore("rouge-l")], pairs(base), pairs(same), 500, 0)[0].p_value
    assert cell(mesc, "same", "rouge-l").p_value == pytest.approx(expected) and expected > 0.05
    md = render_markdown(tables)
    assert md.splitlines()[4].startswith("| ref (reference) | measured | 40 |")  # the reference heads the table
    assert re.search(rf"\| better \| measured \| 40 \| {better.mean():.2f} {DAGGER} \|", md), md
    assert f"| same | measured | 40 | {same.mean():.2f} |" in md
    assert "shared samples - better: 40; part: 10; same: 40" in md
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO(render_csv(tables)))}
    assert float(rows["better"]["rouge-l_p"]) < 0.05 and rows["ref"]["rouge-l_p"] == ""


def test_a_judge_score_missing_in_either_run_leaves_that_sample_out(tmp_path):
    a_scores = [1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0]
    b_scores = [3.0, 4.0, 3.0, None, 3.0, 4.0, 3.0, 4.0]  # the judge gave no score to sample 3
    roles = {"seeker": {"model": "hf", "model_args": {"model": "esc-role"}}, "judge": {"model": "hf", "model_args": {"model": "esc-rank"}}}
    make_run(tmp_path, "a", model="a", task="esc-eval", metrics={"esc-eval-empathy": 1.5}, roles=roles,
             records=[esc_eval_record(i, {"empathy": v}) for i, v in enumerate(a_scores)])
    make_run(tmp_path, "b", model="b", task="esc-eval", metrics={"esc-eval-empathy": 3.43}, roles=roles,
             records=[esc_eval_record(i, {"empathy": v} if v is not None else {}) for i, v in enumerate(b_scores)])
    esc = table_of(build_tables(tmp_path, reference="a", resamples=300), "esc-eval")
    from harness.contract import ScoredPair

    def pairs(values):
        return [ScoredPair("", "", outcome={"__stored_scores__": {"esc-eval-empathy": v}}) for v in values]

    kept = [i for i, v in enumerate(b_scores) if v is not None]
    expected = uncertainty.compare([_StoredScore("esc-eval-empathy")], pairs([a_scores[i] for i in kept]), pairs([b_scores[i] for i in kept]), 300, 0)[0]
    got = cell(esc, "b", "esc-eval-empathy")  # same seeker and judge: one column
    assert row_of(esc, "b").shared == 8 and got.p_value == pytest.approx(expected.p_value) and got.significant


def test_corpus_metrics_are_recomputed_for_the_test(tmp_path):
    """BLEU has no per-sample score: the paired test recomputes it from the stored responses."""
    refs = [f"i feel so alone since my mother left number {i}" for i in range(30)]
    good = [SampleRecord(index=i, id=f"x/{i}", history=[], reference=r, output=r, response=r) for i, r in enumerate(refs)]
    bad = [SampleRecord(index=i, id=f"x/{i}", history=[], reference=r, output="what", response="what") for i, r in enumerate(refs)]
    make_run(tmp_path, "good", model="good", metrics={"bleu-2": 100.0}, records=good)
    make_run(tmp_path, "bad", model="bad", metrics={"bleu-2": 0.1}, records=bad)
    mesc = table_of(build_tables(tmp_path, reference="good", resamples=200), "mesc")
    assert cell(mesc, "bad", "bleu-2").p_value < 0.05


def test_reference_must_name_one_measured_run(tmp_path):
    make_run(tmp_path, "a", model="hf", model_args={"model": "x"}, metrics={"bleu-2": 1.0})
    make_run(tmp_path, "b", model="hf", model_args={"model": "y"}, metrics={"bleu-2": 2.0})
    with pytest.raises(HarnessError, match="--reference gpt: no measured run of that model; measured rows: hf\\(model=x\\), hf\\(model=y\\)"):
        build_tables(tmp_path, reference="gpt")
    with pytest.raises(HarnessError, match="ambiguous"):
        build_tables(tmp_path, reference="hf")
    assert table_of(build_tables(tmp_path, reference="hf(model=x)"), "mesc").reference == "hf(model=x)"


# --------------------------------------------------------------------------- command


def test_command_writes_the_formats_and_prints_one(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "a", model="retrieval", metrics={"bleu-2": 2.77, "rouge-l": 12.0}, intervals={"bleu-2": (2.25, 3.31)})
    cli = CliRunner()
    printed = cli.invoke(leaderboard_command, ["--runs-dir", str(runs), "--no-published"])
    assert printed.exit_code == 0, printed.output
    assert printed.output.startswith("## mesc (test)") and "| retrieval | measured | 10 | **2.77** [2.25, 3.31] |" in printed.output
    out = tmp_path / "board"
    made = cli.invoke(leaderboard_command, ["--runs-dir", str(runs), "--output-dir", str(out), "--format", "md,csv,latex", "--no-figures", "--metrics", "bleu-2"])
    assert made.exit_code == 0, made.output
    assert made.output.split() == [str(out / "leaderboard.md"), str(out / "leaderboard.csv"), str(out / "leaderboard.tex")]
    rows = list(csv.DictReader((out / "leaderboard.csv").open()))
    measured = [r for r in rows if r["kind"] == "measured"]
    assert len(measured) == 1 and measured[0]["bleu-2"] == "2.77" and "rouge-l" not in rows[0]
    assert {r["model"] for r in rows if r["kind"] == "published"} >= {"FIRES", "GPT-4o (3-shot)"}  # published rows by default
    for args, message in ((["--format", "html"], "without --out the leaderboard prints one text format"), (["--format", "pdf", "--output-dir", str(out)], "unknown format(s) pdf"),
                          (["--metrics", "nope"], "nothing to show")):
        bad = cli.invoke(leaderboard_command, ["--runs-dir", str(runs), *args])
        assert bad.exit_code != 0 and isinstance(bad.exception, HarnessError) and message in str(bad.exception), (args, bad.output)
