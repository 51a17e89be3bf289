"""`harness leaderboard`: tables (Markdown, CSV, LaTeX), a static HTML page and figures from every finished
run, beside the published numbers of baselines/published/."""
from __future__ import annotations

from pathlib import Path

import click

from harness import options
from harness.errors import HarnessError

from .leaderboard import FORMATS


def _formats(text: str | None, out: Path | None) -> list[str]:
    if not text:
        return list(FORMATS) if out else ["md"]
    chosen = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown:
        raise HarnessError(f"--format: unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)} (comma-separated, e.g. --format md,html).")
    if out is None and (len(chosen) != 1 or chosen[0] == "html"):
        raise HarnessError("without --output-dir DIR the leaderboard prints one text format (md, csv or latex); give --output-dir DIR for several formats or html.")
    return chosen


@click.command()
@options.runs_dir(deprecated=("--runs",))
@options.output_dir(None, "Write leaderboard.{md,csv,tex,html} and the figures into this folder [default: print Markdown]", deprecated=("--out",))
@click.option("--format", "fmt", help="Comma-separated: md, csv, latex, html [default: all four with --output-dir, else md].")
@click.option("--reference", help="Model (row label, or adapter name when unique) the other runs are tested against: \u2020 = paired p < 0.05.")
@click.option("--metrics", help="Only these metric columns (comma-separated names).")
@click.option("--published", "published_dir", type=click.Path(path_type=Path, file_okay=False), help="Folder of published-number JSON files [default: baselines/published].")
@click.option("--no-published", is_flag=True, help="Measured runs only.")
@click.option("--figures/--no-figures", default=True, show_default=True, help="With --output-dir: PNG and PDF figures (needs matplotlib).")
@click.option("--all", "keep_all", is_flag=True, help="Every run, not only the latest per model / task options / split.")
@options.resamples(what="Resamples of the paired test behind --reference")
@click.option("--seed", type=int, default=0, show_default=True)
def leaderboard(runs_dir: Path, output_dir: Path | None, fmt: str | None, reference: str | None, metrics: str | None, published_dir: Path | None,
                no_published: bool, figures: bool, keep_all: bool, resamples: int, seed: int) -> None:
    """One table per task: measured runs (latest per model / task options / split) and published numbers of the
    same metric variant, best values in bold, 95% intervals, paired significance against --reference."""
    from baselines import published as published_numbers

    from .leaderboard import build_tables, render_csv, render_latex, render_markdown

    formats = _formats(fmt, output_dir)
    if resamples < 1:
        raise HarnessError(f"--resamples must be at least 1, got {resamples}.")
    published = [] if no_published else published_numbers.load_all(published_dir)
    tables = build_tables(runs_dir, published, keep_all=keep_all, metrics=options.names(metrics),
                          reference=reference, resamples=resamples, seed=seed)
    if not tables:
        raise HarnessError(f"{runs_dir}: nothing to show (no run or published row has the metrics asked for); drop --metrics or check the names.")
    renderers = {"md": ("leaderboard.md", render_markdown), "csv": ("leaderboard.csv", render_csv), "latex": ("leaderboard.tex", render_latex)}
    if output_dir is None:
        click.echo(renderers[formats[0]][1](tables), nl=False)
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in formats:
        if name in renderers:
            path = output_dir / renderers[name][0]
            path.write_text(renderers[name][1](tables), encoding="utf-8")
            written.append(path)
    made = []
    if figures:
        from .figures import make_figures

        made = make_figures(tables, output_dir)
        written += [p for f in made for p in f.files.values()]
    if "html" in formats:
        from .html import render_page

        path = output_dir / "leaderboard.html"
        path.write_text(render_page(tables, made, runs_dir), encoding="utf-8")
        written.append(path)
    for path in written:
        click.echo(str(path))
