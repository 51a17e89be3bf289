"""`harness view RUN_DIR`: one offline HTML page to read a run's samples (`--compare RUN_B`: two runs side by side)."""
from __future__ import annotations

from pathlib import Path

import click

from harness import store


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="The page to write [default: RUN_DIR/view.html].")
@click.option("--compare", "compare", type=click.Path(path_type=Path), help="A second run folder, shown beside RUN_DIR on their shared samples.")
def view(run_dir: Path, out: Path | None, compare: Path | None) -> None:
    """Write one self-contained HTML page (no network) with every sample of a run: history, reference, response,
    thinking, scores, dialogues and judges; filter, sort, and compare with a second run."""
    from harness.errors import HarnessError

    from .viewer import render

    page = render(run_dir, compare)
    out = out or Path(run_dir) / "view.html"
    if out.is_dir():
        raise HarnessError(f"--out {out}: is a folder; give a file name such as {out / 'view.html'}.")
    try:
        store.write_text(out, page)
    except OSError as exc:
        raise HarnessError(f"--out {out}: cannot write the page ({exc.strerror or exc}).") from None
    click.echo(str(out))
