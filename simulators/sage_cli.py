"""`harness sage`: the SAGE sentient-agent benchmark's own commands."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .sage_reference import PUBLISHED, RescoreResult, model_label, rescore_file


@click.group()
def sage() -> None:
    """SAGE sentient-agent benchmark: rescore published result files."""


def _keys(paths: list[Path]) -> list[str]:
    """File names as keys; the path as given where two files share a name."""
    names = [p.name for p in paths]
    return [p.name if names.count(p.name) == 1 else str(p) for p in paths]


def _table(rows: list[tuple[str, Path, RescoreResult]]) -> str:
    header = ("file", "model", "n", "score", "success", "failure", "goodbye", "turn_limit", "published")
    lines = [header]
    for key, path, r in rows:
        published = PUBLISHED.get(path.name)
        check = "-" if published is None else ("match" if published[1:] == (r.score, r.success, r.failure) else "DIFFERS")
        lines.append((key, model_label(path), str(r.n), f"{r.score:.1f}", str(r.success), str(r.failure),
                      str(r.ends["goodbye"]), str(r.ends["turn_limit"]), check))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


@sage.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object for one file, else {file name: object}.")
def rescore(files: tuple[Path, ...], as_json: bool) -> None:
    """Score published SAGE result files (*_result.jsonl): mean final emotion, successes (>= 100),
    failures (< 10).

    `score` is rounded half up to one decimal, as the leaderboard prints it; `score_exact` keeps the
    unrounded mean; `ends` counts why each dialogue stopped (success, failure, goodbye, turn_limit).
    """
    paths = list(files)
    results = [rescore_file(p) for p in paths]  # HarnessError (file:line) on a malformed file
    keys = _keys(paths)
    if as_json:
        if len(results) == 1:
            payload: object = results[0].model_dump()
        else:
            payload = {k: r.model_dump() for k, r in zip(keys, results)}
        click.echo(json.dumps(payload, ensure_ascii=False))
    else:
        click.echo(_table(list(zip(keys, paths, results))))
