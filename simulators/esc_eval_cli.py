"""`harness esc-eval`: the ESC-Eval role-play benchmark's own commands."""
from __future__ import annotations

import re
from pathlib import Path

import click

from harness import options


@click.group("esc-eval")
def esc_eval() -> None:
    """ESC-Eval role-play benchmark: rescore transcripts with a chosen judge."""


@esc_eval.command("rescore")
@click.argument("source", type=click.Path(path_type=Path))
@options.roles
@options.output_dir(Path("results/runs"), "Folder the new run folder is made in")
@options.cache
@click.option("--concurrency", type=int, default=None, hidden=True, help="Deprecated: the judge gets the requests of 64 dialogues at once.")
@options.resamples(deprecated=("--bootstrap",))
def rescore(source: Path, roles, output_dir: Path, cache_path: Path | None, no_cache: bool, concurrency: int | None, resamples: int) -> None:
    """Judge the dialogues of SOURCE again - a finished esc-eval run folder or a published ESC-Eval
    transcript file (reference/result/<date>/<model>_<en|zh>.json) - into a new run folder. The judge is
    --judge SPEC (or --role judge=SPEC); --judge repeated is a panel (roles judge, judge2, ...; --judge-args
    once per judge, in order): every judge's scores are kept, the metrics are their mean per dimension."""
    from harness.cli import metric_table
    from harness.errors import HarnessError

    from .esc_eval_rescore import rescore as rescore_source

    if concurrency is not None:
        click.echo("warning: --concurrency is deprecated and ignored: the judge gets the requests of 64 dialogues at once "
                   "(a server adapter sends them with its own concurrency).", err=True)
    others = [name for name in roles if not re.fullmatch(r"judge\d*", name)]
    if others:
        raise HarnessError(f"esc-eval rescore asks only the judges; drop --role {others[0]}=....")
    if "judge" not in roles:
        raise HarnessError("give the judge: --judge MODEL (or --role judge=MODEL), e.g. --judge openai:gpt-4o.")
    result = rescore_source(source, roles, output_dir, cache_path, not no_cache, resamples)
    click.echo(f"{result.summary.n} dialogues re-judged; model calls {result.model_calls}, cache hits {result.cache_hits}")
    click.echo(metric_table(result.summary))
    click.echo(str(result.run_dir))
