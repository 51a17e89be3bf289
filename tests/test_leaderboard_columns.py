"""`harness leaderboard` by default: each task's table shows the columns its papers report (the task's
`reported_metrics`), `--metrics all` every column; published rows grouped under their source."""
import csv
import fnmatch
import io
import re

from click.testing import CliRunner

from baselines import published
from harness import registry
from reports.leaderboard import build_tables, render_csv, render_latex, render_markdown
from reports.leaderboard_cli import leaderboard as leaderboard_command
from reports.html import render_page
from test_leaderboard import make_run, table_of

RESPONSE_REPORTED = ("bleu-2", "rouge-l", "meteor", "bertscore-f1-*", "dist-3-response", "diff-epitome")
ESC_EVAL_DIMENSIONS = ("fluency", "expression", "empathy", "information", "humanoid", "skill", "overall")

# a MESC run with every default metric and then some: what a table shows of it by default
MESC_METRICS = {"bleu-1": 20.0, "bleu-2": 2.77, "bleu-4": 0.5, "rouge-l": 12.0, "meteor": 8.4, "dist-3": 48.5, "dist-3-plain": 48.4,
                "dist-3-response": 96.3, "bertscore-f1-minilm": 21.3, "bertscore-f1-roberta-large": 85.1, "diff-epitome": 0.93,
                "diff-epitome-er": 0.4}
MINILM = {"backbone": "sentence-transformers/all-MiniLM-L6-v2", "num_layers": 6, "idf": False, "rescale_with_baseline": False}
ROBERTA = {"backbone": "roberta-large", "num_layers": 17, "idf": False, "rescale_with_baseline": False}
MESC_INFO = {"bertscore-f1-minilm": MINILM, "bertscore-f1-roberta-large": ROBERTA, "diff-epitome": {"classifier": "original"}}


def measured_metrics(table):
    return [c.metric for c in table.columns if c.measured]


def test_each_task_declares_the_columns_its_papers_report():
    for name in ("mesc", "esconv", "emotyda-esc"):
        assert registry.tasks.get(name).reported_metrics == RESPONSE_REPORTED, name
    assert registry.tasks.get("esc-eval").reported_metrics == tuple(f"esc-eval-{d}" for d in ESC_EVAL_DIMENSIONS) + ("esc-eval-score",)
    assert registry.tasks.get("sage").reported_metrics == ("sage-score", "sage-success", "sage-failure")


def test_every_published_column_stays_visible_by_default():
    """A paper's column is one its task reports: the default view never hides a published number."""
    checked = 0
    for stem, table in published.load_all():
        patterns = registry.tasks.get(table.task).reported_metrics
        assert patterns, table.task
        for column in table.columns:
            assert any(fnmatch.fnmatchcase(column.metric, p) for p in patterns), (stem, column.key, column.metric)
            checked += 1
    assert checked == 6 + 4 + 4 + 4 + 8 + 3 + 3
    # ... and the built tables keep every published number
    every = {(t.name, r.label, r.source): len(r.cells) for t in build_tables(None, published.load_all()) for r in t.rows}
    shown = {(t.name, r.label, r.source): len(r.cells) for t in build_tables(None, published.load_all(), reported=True) for r in t.rows}
    assert shown == every and len(every) == 13 + 6 + 6 + 4 + 13 + 13 + 7 - 2  # FIRES of Tables 2 and 4 is Table 1's row


def test_a_mesc_table_shows_the_reported_columns_and_names_the_others(tmp_path):
    make_run(tmp_path, "r", model="retrieval", metrics=MESC_METRICS, info=MESC_INFO)
    mesc = table_of(build_tables(tmp_path, reported=True), "mesc")
    # registered order: bleu, rouge, meteor, bertscore (every backbone), dist, diff-epitome
    assert measured_metrics(mesc) == ["bleu-2", "rouge-l", "meteor", "bertscore-f1-minilm", "bertscore-f1-roberta-large",
                                      "dist-3-response", "diff-epitome"]
    hidden = [n for n in mesc.notes if n.startswith("Not shown")]
    assert hidden == ["Not shown (the task's papers do not report them; --metrics all shows every column): "
                      "bleu-1, bleu-4, dist-3, dist-3-plain, diff-epitome-er."]
    everything = table_of(build_tables(tmp_path), "mesc")
    assert sorted(measured_metrics(everything)) == sorted(MESC_METRICS) and not any(n.startswith("Not shown") for n in everything.notes)


def test_dialogue_tables_show_the_papers_columns(tmp_path):
    esc_metrics = {f"esc-eval-{d}": 2.0 for d in ESC_EVAL_DIMENSIONS} | {"esc-eval-average": 2.0, "esc-eval-score": 50.0}
    make_run(tmp_path, "e", model="m", task="esc-eval", metrics=esc_metrics)
    make_run(tmp_path, "s", model="m", task="sage", metrics={"sage-score": 40.0, "sage-success": 1.0, "sage-failure": 2.0, "sage-turns": 7.0})
    make_run(tmp_path, "x", model="m", task="not-a-registered-task", metrics={"zz-a": 1.0, "zz-b": 2.0})
    tables = build_tables(tmp_path, reported=True)
    # the seven dimensions and COMPEER's Average (esc-eval-score); the 0-4 average is not a paper's column
    assert measured_metrics(table_of(tables, "esc-eval")) == [f"esc-eval-{d}" for d in ESC_EVAL_DIMENSIONS] + ["esc-eval-score"]
    assert measured_metrics(table_of(tables, "sage")) == ["sage-score", "sage-success", "sage-failure"]
    assert measured_metrics(table_of(tables, "not-a-registered-task")) == ["zz-a", "zz-b"]  # a task unknown here: every column


def test_the_command_shows_the_reported_columns_unless_asked(tmp_path):
    make_run(tmp_path, "r", model="retrieval", metrics=MESC_METRICS, info=MESC_INFO)
    cli = CliRunner()

    def header(*args):
        result = cli.invoke(leaderboard_command, ["--runs-dir", str(tmp_path), "--no-published", *args])
        assert result.exit_code == 0, result.output
        line = next(x for x in result.output.splitlines() if x.startswith("| model |"))
        return [h.rsplit(" ", 1)[0] for h in line.strip("| ").split(" | ")[3:]], result.output

    shown, text = header()
    assert "bleu-1" not in shown and "dist-3" not in shown and shown[:3] == ["bleu-2", "rouge-l", "meteor"]
    assert "Not shown (the task's papers do not report them; --metrics all shows every column): bleu-1" in text
    everything, _ = header("--metrics", "all")
    assert "bleu-1" in everything and sorted(everything) == sorted(MESC_METRICS)
    assert header("--metrics", "bleu-1,dist-3")[0] == ["bleu-1", "dist-3"]  # names: as asked, reported or not
    # a run with none of the reported metrics: nothing to show by default, and the error says what to do
    make_run(tmp_path / "only", "b", model="b", metrics={"bleu-1": 1.0})
    bad = cli.invoke(leaderboard_command, ["--runs-dir", str(tmp_path / "only"), "--no-published"])
    assert bad.exit_code != 0 and "columns the task's papers report); give --metrics all" in str(bad.exception)


# --------------------------------------------------------------------------- published rows under their source


def test_published_rows_are_grouped_under_their_source(tmp_path):
    make_run(tmp_path, "r", model="retrieval", metrics={"bleu-2": 2.77})
    tables = build_tables(tmp_path, published.load_all(), reported=True)
    mesc = table_of(tables, "mesc")
    md = render_markdown([mesc])
    headings = re.findall(r"^\| \*(Published: [^*]+)\* \|", md, flags=re.M)
    assert headings == ["Published: FIRES Table 1 (Wang et al. 2025)", "Published: FIRES Table 2 (Wang et al. 2025)",
                        "Published: FIRES Table 4 (Wang et al. 2025)"]
    lines = md.splitlines()
    start = lines.index(next(x for x in lines if x.startswith("| *Published: FIRES Table 2")))
    # a heading row has as many cells as the header; under it, that source's rows up to the next heading
    assert lines[start].count("|") == lines[2].count("|")
    assert lines[start + 1].startswith("| FIRES w/o FleT | FIRES Table 2 |") and lines[start - 1].startswith("| FIRES | FIRES Table 1, Table 2, Table 4 |")
    assert lines[start + 6].startswith("| *Published: FIRES Table 4")
    assert lines[4].startswith("| retrieval | measured |")  # the measured rows come first, under no heading
    # LaTeX: a rule and an italic line per source
    latex = render_latex([mesc])
    assert latex.count("\\multicolumn{") == 3 and f"\\multicolumn{{{3 + len(mesc.columns)}}}{{l}}{{\\textit{{Published: FIRES Table 1 (Wang et al. 2025)}}}} \\\\" in latex
    assert "\\midrule\n\\multicolumn" in latex
    # CSV: no heading lines (every line a row), the group as a column
    rows = list(csv.DictReader(io.StringIO(render_csv([mesc]))))
    assert len(rows) == len(mesc.rows)
    assert {r["model"]: r["group"] for r in rows if r["model"] in ("retrieval", "FIRES", "FIRES w/o FleT", "FIRES w/o Scene")} == {
        "retrieval": "measured", "FIRES": "FIRES Table 1", "FIRES w/o FleT": "FIRES Table 2", "FIRES w/o Scene": "FIRES Table 4"}
    assert next(r for r in rows if r["model"] == "FIRES")["paper_group"] == "Fine-tune"
    # other sources: their first author, "et al."
    assert "Published: COMPEER Table 2 (Wang et al. 2025)" in render_markdown([table_of(tables, "esc-eval")])
    sage = render_markdown([table_of(tables, "sage")])
    assert "Published: COMPEER Table 3 (Wang et al. 2025)" in sage and "Published: SAGE leaderboard (Zhang et al. 2025)" in sage


def test_the_page_puts_each_source_in_its_own_body(tmp_path):
    make_run(tmp_path, "r", model="retrieval", metrics={"bleu-2": 2.77})
    mesc = table_of(build_tables(tmp_path, published.load_all(), reported=True), "mesc")
    html = render_page([mesc])
    table = re.search(r'<table class="lb".*?</table>', html, flags=re.S).group(0)
    bodies = re.findall(r"<tbody>(.*?)</tbody>", table, flags=re.S)
    assert len(bodies) == 4 and 'class="group"' not in bodies[0] and "retrieval" in bodies[0]
    assert [re.match(r'<tr class="group"><td colspan="(\d+)">([^<]+)</td></tr>', b).groups() for b in bodies[1:]] == [
        (str(3 + len(mesc.columns)), f"Published: FIRES Table {n} (Wang et al. 2025)") for n in (1, 2, 4)]
    assert bodies[2].count('<tr class="published">') == 5  # Table 2's five ablations
