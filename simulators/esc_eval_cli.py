"""`harness esc-eval`: the ESC-Eval role-play benchmark's own commands."""
from __future__ import annotations

from pathlib import Path

import click


@click.group("esc-eval")
def esc_eval() -> None:
    """ESC-Eval role-play benchmark: rescore transcripts with a chosen judge."""


@esc_eval.command("rescore")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--judge", required=True, help="The judge model, e.g. openai:gpt-4o or local.")
@click.option("--judge-args", help="Options of the judge's adapter, k=v,k2=v2.")
@click.option("--output-dir", type=click.Path(path_type=Path), default=Path("results/runs"), show_default=True)
@click.option("--cache", "cache_path", type=click.Path(path_type=Path), help="Response cache file [default: $ESC_HARNESS_CACHE, else the per-user cache].")
@click.option("--no-cache", is_flag=True, help="Do not read or write the response cache.")
@click.option("--concurrency", type=int, default=8, show_default=True, help="Dialogues judged at once.")
@click.option("--bootstrap", type=int, default=1000, show_default=True, help="Resamples for the metrics' 95% intervals (0: none).")
def rescore(source: Path, judge: str, judge_args: str | None, output_dir: Path, cache_path: Path | None, no_cache: bool,
            concurrency: int, bootstrap: int) -> None:
    """Judge the dialogues of SOURCE again - a finished esc-eval run folder or a published ESC-Eval
    transcript file (reference/result/<date>/<model>_<en|zh>.json) - into a new run folder."""
    from harness.cli import metric_table, model_spec
    from harness.runner import RoleConfig

    from .esc_eval_rescore import rescore as rescore_source

    name, kwargs = model_spec(judge, judge_args, "--judge-args")
    run_dir, summary = rescore_source(source, RoleConfig(name, kwargs), output_dir, cache_path, not no_cache, concurrency, bootstrap)
    click.echo(f"{summary.n} dialogues re-judged")
    click.echo(metric_table(summary))
    click.echo(str(run_dir))
