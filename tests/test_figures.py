"""Leaderboard figures (PNG + PDF) and the static HTML page, opened in headless Chromium."""
import re
from pathlib import Path

import pytest

from baselines import published
from harness.contract import SampleRecord, Turn
from reports.figures import aspect_shares, carried_mean, make_figures
from reports.html import render_page
from reports.leaderboard import build_tables
from browser import chromium as _chromium
from test_leaderboard import esc_eval_record, make_run, sage_record

pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def thought(i, aspects, neutral=False, unknown=False, thinking="Emotion: sad"):
    details = {"aspects": dict(zip(("visual_scene", "emotion", "situation", "response_strategy"), aspects)), "declined": [], "unknown": [],
               "emotion_neutral": neutral, "situation_unknown": unknown}
    return SampleRecord(index=i, id=f"mesc/test/d{i:04d}/t01", history=[Turn(speaker="Client", text="hi")], reference="r", output="o",
                        response="fine", thinking=thinking, parse_details=details, scores={"rouge-l": float(i)})


THOUGHTS = [
    thought(0, (True, True, True, True)),
    thought(1, (False, True, True, True), neutral=True),
    thought(2, (False, True, True, True), unknown=True),
    thought(3, (False, False, False, True)),
    thought(4, (False, False, False, False), thinking=None),  # no thought at all (format error): not counted
]


def test_aspect_shares_follow_fires_figure_3():
    n, shares = aspect_shares(THOUGHTS)
    assert n == 4
    assert shares["visual_scene"] == {"included": 25.0, "neutral": 0.0, "unknown": 0.0, "not_included": 75.0}
    assert shares["emotion"] == {"included": 50.0, "neutral": 25.0, "unknown": 0.0, "not_included": 25.0}
    assert shares["situation"] == {"included": 50.0, "neutral": 0.0, "unknown": 25.0, "not_included": 25.0}
    assert shares["response_strategy"]["included"] == 100.0
    assert aspect_shares([SampleRecord(index=0, id="x", history=[], reference="", output="", response="")]) is None


def test_carried_mean_keeps_ended_dialogues_at_their_final_emotion():
    assert carried_mean([[40, 50, 100], [40, 30]]) == [40.0, 40.0, 65.0]  # the second dialogue stays at 30
    assert carried_mean([[40, 45, 5]])[-1] == 5


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """Runs of every kind, their tables (with published rows and a reference) and figures."""
    root = tmp_path_factory.mktemp("runs")
    make_run(root, "mesc-a", model="retrieval", metrics={"rouge-l": 1.5, "bleu-2": 3.0}, intervals={"rouge-l": (1.0, 2.0)},
             records=[thought(i, (True, True, True, True)) for i in range(4)])
    make_run(root, "mesc-b", model="scripted", task_args={"prompt": "flexible-cot"}, metrics={"rouge-l": 2.0, "bleu-2": 2.0}, records=THOUGHTS)
    for name, trajectories in (("good", [[40, 60, 100], [40, 50, 55, 70], [40, 45]]), ("poor", [[40, 20, 5], [40, 35, 30, 35], [40, 40]])):
        records = [sage_record(i, t, "success" if t[-1] >= 100 else "failure" if t[-1] < 10 else "turn_limit") for i, t in enumerate(trajectories)]
        finals = [t[-1] for t in trajectories]
        make_run(root, f"sage-{name}", model=name, task="sage", records=records,
                 metrics={"sage-score": sum(finals) / 3, "sage-success": float(sum(f >= 100 for f in finals)), "sage-failure": float(sum(f < 10 for f in finals))},
                 intervals={"sage-score": (min(finals), max(finals))})
    dims = ("fluency", "expression", "empathy", "information", "humanoid", "skill", "overall")
    judge = [dict(zip(dims, (3, 2, 3, 2, 1, 3, 2))), dict(zip(dims, (4, 3, 3, 3, 2, 3, 3)))]
    make_run(root, "esc", model="judged", task="esc-eval", records=[esc_eval_record(i, j) for i, j in enumerate(judge)],
             metrics={f"esc-eval-{d}": sum(j[d] for j in judge) / 2 for d in dims}, intervals={"esc-eval-empathy": (3.0, 3.0)})
    tables = build_tables(root, published.load_all(), reference="retrieval", resamples=100)
    out = tmp_path_factory.mktemp("board")
    figures = make_figures(tables, out)
    return tables, figures, out


def test_figures_are_written_as_png_and_pdf(board):
    tables, figures, out = board
    names = {f.name for f in figures}
    assert names == {"bars-mesc-test", "thinking-mesc-test", "bars-sage-test", "sage-trajectories-test", "sage-outcomes-test",
                     "bars-esc-eval-test", "radar-esc-eval-test"}
    for figure in figures:
        assert set(figure.files) == {"png", "pdf"}
        assert figure.files["png"].read_bytes()[:8] == PNG and figure.files["pdf"].read_bytes()[:5] == b"%PDF-"
        assert figure.files["png"].parent == out and figure.table in {t.name for t in tables}


def check_page(page: Path, tables: int, figures: int) -> list[str]:
    """What is wrong with the page as Chromium renders it: console messages (a JS error shows as
    "Uncaught ..."; the page itself logs nothing), and tables / figures that did not render."""
    dom, log = _chromium(page)
    problems = [line for line in log.splitlines() if ":CONSOLE" in line]
    body = re.search(r"<body([^>]*)>", dom)
    attributes = dict(re.findall(r'data-(\w+)="([^"]*)"', body.group(1) if body else ""))
    if attributes.get("ready") != "1":
        problems.append("the page's load script did not finish")
    if attributes.get("tables") != str(tables) or dom.count('<table class="lb"') != tables:
        problems.append(f"tables: {attributes.get('tables')} rendered, {tables} expected")
    if attributes.get("figures") != str(figures):
        problems.append(f"figures: {attributes.get('figures')} decoded, {figures} expected")
    return problems


def test_html_page_renders_in_headless_chromium(board, tmp_path):
    tables, figures, _ = board
    html = render_page(tables, figures)
    # self-contained: no external resource of any kind
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html) and "<link" not in html and "@import" not in html
    assert html.count('<img alt="') == len(figures) and html.count("data:image/png;base64,") == len(figures)
    page = tmp_path / "leaderboard.html"
    page.write_text(html, encoding="utf-8")
    assert check_page(page, len(tables), len(figures)) == []
    dom, _ = _chromium(page)
    assert all(f'id="table-{t.name}"' in dom for t in tables)
    assert '<td class="num best" data-value="22.76"' in dom  # FIRES's published ROUGE-L is the column's best
    assert "FIRES Table 1, Table 2, Table 4" in dom and "retrieval <em>(reference)</em>" in dom

    # the check catches what it must: a script error, a missing table, an image that does not decode
    broken = tmp_path / "broken.html"
    broken.write_text(html.replace("<script>", "<script>notAFunction();</script><script>", 1), encoding="utf-8")
    assert any("Uncaught ReferenceError" in p for p in check_page(broken, len(tables), len(figures)))
    missing = tmp_path / "missing.html"
    missing.write_text(re.sub(r'<div class="scroll"><table.*?</table></div>', "", html, count=1, flags=re.S), encoding="utf-8")
    assert check_page(missing, len(tables), len(figures)) == [f"tables: {len(tables) - 1} rendered, {len(tables)} expected"]
    bad_image = tmp_path / "bad-image.html"
    bad_image.write_text(html.replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1), encoding="utf-8")
    assert check_page(bad_image, len(tables), len(figures)) == [f"figures: {len(figures) - 1} decoded, {len(figures)} expected"]
