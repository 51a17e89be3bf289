"""`harness leaderboard`: tables (Markdown, CSV, LaTeX), a static HTML page and figures from every finished
run, beside the published numbers of baselines/published/."""
from __future__ import annotations

from pathlib import Path

import click

from harness import options
from harness.errors import HarnessError

from .leaderboard import FORMATS

# --out FILE: the format its extension names
EXTENSIONS = {".md": "md", ".csv": "csv", ".tex": "latex", ".html": "html"}
FILE_NAMES = {"md": "leaderboard.md", "csv": "leaderboard.csv", "latex": "leaderboard.tex", "html": "leaderboard.html"}


def destination(out: Path | None, output_dir: Path | None) -> tuple[Path | None, Path | None]:
    """(file, folder) the command writes: `--out FILE.md|.csv|.tex|.html` is that one file; `--out DIR` (an
    existing folder, or a name without an extension) and `--output-dir DIR` a folder; neither: print."""
    if out is not None and output_dir is not None and out != output_dir:
        raise HarnessError(f"--out {out} and --output-dir {output_dir} disagree; give one of them.")
    if output_dir is not None or out is None:
        folder = output_dir
    elif out.is_dir() or not out.suffix:
        folder = out
    elif out.suffix.lower() in EXTENSIONS:
        if out.exists() and not out.is_file():
            raise HarnessError(f"--out {out}: exists and is not a file; give another file name.")
        return out, None
    else:
        raise HarnessError(f"--out {out}: unknown extension {out.suffix!r}; give a file ending in {', '.join(EXTENSIONS)}, "
                           "or a folder (a name without extension, or --output-dir DIR).")
    if folder is not None and folder.exists() and not folder.is_dir():
        raise HarnessError(f"{folder}: exists and is not a folder; give a folder for the leaderboard files, or --out FILE.md|.csv|.tex|.html.")
    return None, folder


def _formats(text: str | None, file: Path | None, folder: Path | None) -> list[str]:
    chosen = [f.strip() for f in text.split(",") if f.strip()] if text else []
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown:
        raise HarnessError(f"--format: unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)} (comma-separated, e.g. --format md,html).")
    if file is not None:
        implied = EXTENSIONS[file.suffix.lower()]
        if chosen and chosen != [implied]:
            raise HarnessError(f"--format {text} contradicts --out {file} (a {implied} file); drop --format, or give --out DIR for several formats.")
        return [implied]
    if not chosen:
        return list(FORMATS) if folder else ["md"]
    if folder is None and (len(chosen) != 1 or chosen[0] == "html"):
        raise HarnessError("without --out the leaderboard prints one text format (md, csv or latex); give --out FILE.html for the page "
                           "alone, or give --output-dir DIR (or --out DIR) for several formats and the figures.")
    return chosen


def _columns(metrics: str | None) -> tuple[list[str] | None, bool]:
    """(--metrics names or None, whether to keep only the columns each task's papers report)."""
    names = options.names(metrics)
    if names is None:
        return None, True
    return (None, False) if "all" in names else (names, False)


@click.command()
@options.runs_dir(deprecated=("--runs",))
@click.option("--out", type=options.PATH, metavar="FILE|DIR", help="FILE.md, FILE.csv, FILE.tex or FILE.html: write that one file (the format its extension "
              "names; no figures). DIR (an existing folder, or a name without extension): leaderboard.{md,csv,tex,html} and the "
              "figures in it [default: print Markdown].")
@options.output_dir(None, "A folder, as --out DIR (any folder name)")
@click.option("--format", "fmt", help="With --out DIR, comma-separated: md, csv, latex, html [default: all four; without --out: md].")
@click.option("--reference", help="Model (row label, or adapter name when unique) the other runs are tested against: \u2020 = paired p < 0.05.")
@click.option("--metrics", help="Metric columns: comma-separated names, or 'all' [default: the columns each task's papers report].")
@click.option("--published", "published_dir", type=click.Path(path_type=Path, file_okay=False), help="Folder of published-number JSON files [default: baselines/published].")
@click.option("--no-published", is_flag=True, help="Measured runs only.")
@click.option("--figures/--no-figures", default=True, show_default=True, help="With --out DIR: PNG and PDF figures (needs matplotlib).")
@click.option("--all", "keep_all", is_flag=True, help="Every run, not only the latest per model / task options / split.")
@options.resamples(what="Resamples of the paired test behind --reference")
@click.option("--seed", type=int, default=0, show_default=True)
def leaderboard(runs_dir: Path, out: Path | None, output_dir: Path | None, fmt: str | None, reference: str | None, metrics: str | None,
                published_dir: Path | None, no_published: bool, figures: bool, keep_all: bool, resamples: int, seed: int) -> None:
    """One table per task: measured runs (latest per model / task options / split) and published numbers of the
    same metric variant, best values in bold, 95% intervals, paired significance against --reference."""
    from baselines import published as published_numbers
    from harness import store

    from .leaderboard import build_tables, render_csv, render_latex, render_markdown

    file, folder = destination(out, output_dir)
    formats = _formats(fmt, file, folder)
    if resamples < 1:
        raise HarnessError(f"--resamples must be at least 1, got {resamples}.")
    names, reported = _columns(metrics)
    published = [] if no_published else published_numbers.load_all(published_dir)
    tables = build_tables(runs_dir, published, keep_all=keep_all, metrics=names, reported=reported,
                          reference=reference, resamples=resamples, seed=seed)
    if not tables:
        raise HarnessError(f"{runs_dir}: nothing to show (no run or published row has the metrics asked for"
                           + ("" if names else ", or, by default, the columns the task's papers report")
                           + "); give --metrics all, or check the names.")
    renderers = {"md": render_markdown, "csv": render_csv, "latex": render_latex}
    if file is None and folder is None:
        click.echo(renderers[formats[0]](tables), nl=False)
        return
    if file is not None:  # one file; the page without figures (they are files beside it)
        file.parent.mkdir(parents=True, exist_ok=True)
        if formats[0] == "html":
            from .html import render_page

            text = render_page(tables, (), runs_dir)
        else:
            text = renderers[formats[0]](tables)
        store.write_text(file, text)
        click.echo(str(file))
        return
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in formats:
        if name in renderers:
            path = folder / FILE_NAMES[name]
            store.write_text(path, renderers[name](tables))
            written.append(path)
    made = []
    if figures:
        from .figures import make_figures

        made = make_figures(tables, folder)
        written += [p for f in made for p in f.files.values()]
    if "html" in formats:
        from .html import render_page

        path = folder / FILE_NAMES["html"]
        store.write_text(path, render_page(tables, made, runs_dir))
        written.append(path)
    for path in written:
        click.echo(str(path))
