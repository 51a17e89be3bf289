"""`harness ab`: blinded human A/B rating sheets (export, import, LLM judge)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from harness import options
from harness.errors import HarnessError


@click.group()
def ab() -> None:
    """Blinded A/B rating sheets for two runs: export, import, judge."""


@ab.command("export")
@click.option("--run", "runs", multiple=True, required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Run folder; give exactly two: --run A --run B.")
@click.option("--n", "n", type=int, default=100, show_default=True, help="Rows: samples drawn from those both runs answered.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds which samples are drawn and each row's order.")
@click.option("--criteria", default=None,
              help="'response' (default: \"more supportive, effective and human-preferred\"), 'thinking' (Coherence; Usefulness, "
                   "shows the thinking processes) or your own criteria separated by ';'.")
@click.option("--show", type=click.Choice(["response", "thinking"]), default=None, help="What the rows show [default: as the criteria preset].")
@click.option("--raters", type=int, default=2, show_default=True, help="Rater column blocks in the sheet.")
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False), help="sheet.xlsx (drop-downs) or sheet.csv.")
@click.option("--key", "key_path", type=click.Path(path_type=Path, dir_okay=False), help="Key file [default: <sheet>.key.json].")
@click.option("--force", is_flag=True, help="Replace an existing sheet / key.")
def export_cmd(runs, n, seed, criteria, show, raters, out, key_path, force) -> None:
    """Write a blinded rating sheet of runs A and B, and its key (keep the key from the raters)."""
    from . import ab as ab_sheet

    if len(runs) != 2:
        raise HarnessError(f"give exactly two runs (--run A --run B), got {len(runs)}.")
    result = ab_sheet.export(runs[0], runs[1], out, key_path, n=n, seed=seed, criteria_text=criteria, raters=raters, show=show, force=force)
    key = result.key
    click.echo(f"{result.sheet}: {len(key.rows)} rows (drawn from {key.shared} shared samples, seed {key.seed}), "
               f"{key.raters} rater(s) x {len(key.criteria)} criterion column(s); each cell: win / tie / lose = Response 1 vs Response 2")
    click.echo(f"{result.key_path}: the key (which run is Response 1 on each row); keep it from the raters")


def _percent(value: float | None) -> str:
    return "  n/a" if value is None else f"{100 * value:5.1f}%"


def _interval(bounds: list[float] | None) -> str:
    return f" [{100 * bounds[0]:.1f}, {100 * bounds[1]:.1f}]" if bounds else ""


def _shares(entry: dict[str, Any]) -> str:
    return "  ".join(f"{label} {_percent(entry['rates'][label])}{_interval(entry['intervals'].get(label))}" for label in ("win", "tie", "lose"))


def _stat(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _text_report(result: dict[str, Any]) -> list[str]:
    label_a, label_b = result["labels"]
    lines = [f"A = {label_a} ({result['run_a']['run_id']}), B = {label_b} ({result['run_b']['run_id']}); {result['rows']} rows; "
             f"raters: {', '.join(r['name'] + (' (judge)' if r['judge'] else '') for r in result['raters'])}",
             f"win / tie / lose of A against B, {int(100 * result['confidence'])}% bootstrap intervals over rows ({result['resamples']} resamples, seed {result['seed']})"]
    for entry in result["criteria"]:
        lines.append(f"{entry['criterion']}: {_shares(entry)}")
        agree = entry["agreement"]
        if agree["raters"] >= 2:
            kappa = f"Cohen's kappa {_stat(agree['cohen_kappa'])}, " if "cohen_kappa" in agree else ""
            lines.append(f"  agreement of {agree['raters']} raters: {kappa}Krippendorff's alpha ordinal {_stat(agree['krippendorff_alpha_ordinal'])} "
                         f"(nominal {_stat(agree['krippendorff_alpha_nominal'])})")
        for name, own in entry["per_rater"].items():
            lines.append(f"  {name}: " + "  ".join(f"{label} {_percent(own['rates'][label])}" for label in ("win", "tie", "lose")))
        for judge in entry["judges"]:
            kappas = ", ".join(f"{h} {_stat(k)}" for h, k in judge["cohen_kappa_vs"].items())
            lines.append(f"  judge {judge['name']}: {_shares(judge)}; unparsed {judge['unparsed']}; kappa vs {kappas}; "
                         f"alpha ordinal with the humans {_stat(judge['krippendorff_alpha_ordinal_with_humans'])}")
    lines.append("figure: " + ", ".join(result["figure"]))
    return lines


@ab.command("import")
@click.argument("sheets", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--key", "key_path", required=True, type=click.Path(path_type=Path, dir_okay=False), help="The key written by `harness ab export`.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Figure path without suffix [default: <first sheet>.ab]; writes .png and .pdf.")
@options.resamples(what="Bootstrap resamples (0: no intervals)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--judge-rater", "judge_raters", multiple=True, default=("llm-judge",), show_default=True,
              help="Rater labels that are LLM judges: reported against the humans, may have unparsed (empty) cells.")
@click.option("--label-a", help="Name of run A in the report and figure [default: its model].")
@click.option("--label-b", help="Name of run B [default: its model].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def import_cmd(sheets, key_path, out, resamples, seed, judge_raters, label_a, label_b, as_json) -> None:
    """Un-blind filled sheets: win / tie / lose of run A vs run B per criterion, agreement, figure."""
    from . import ab as ab_sheet

    result = ab_sheet.import_sheets(list(sheets), key_path, out, resamples, seed, judge_raters, (label_a, label_b))
    click.echo(json.dumps(result, indent=2) if as_json else "\n".join(_text_report(result)))


@ab.command("judge")
@click.argument("sheet", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--key", "key_path", required=True, type=click.Path(path_type=Path, dir_okay=False))
@options.roles
@click.option("--rater-name", default="llm-judge", show_default=True, help="Rater label of the judge's columns.")
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False), help="The filled copy (.xlsx or .csv).")
@click.option("--both-orders", is_flag=True, help="Ask each pair in both orders; contradicting verdicts (position bias) count as tie.")
@click.option("--max-tokens", type=int, default=256, show_default=True)
@options.cache
def judge_cmd(sheet, key_path, roles, rater_name, out, both_orders, max_tokens, cache_path, no_cache) -> None:
    """Fill a rater block of SHEET with an LLM judge's win / tie / lose (for Response 1); the judge is
    --judge SPEC (or --role judge=SPEC)."""
    from . import ab as ab_sheet

    others = [name for name in roles if name != "judge"]
    if others:
        raise HarnessError(f"ab judge asks only the judge; drop --role {others[0]}=....")
    if "judge" not in roles:
        raise HarnessError("give the judge: --judge MODEL (or --role judge=MODEL), e.g. --judge openai:gpt-4o.")
    result = ab_sheet.judge(sheet, key_path, roles["judge"], out, rater_name, both_orders, max_tokens, cache_path, not no_cache)
    click.echo(f"{result.out}: {result.filled} cells filled by {rater_name}, {result.unparsed} unparsed (left empty); "
               f"model calls {result.model_calls}, cache hits {result.cache_hits}")
    click.echo(f"{result.log_path}: the judge's raw answers and how each was read")
