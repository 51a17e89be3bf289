"""Gathering finished runs into one table (rows: model / task / split; columns: metrics)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import store
from .errors import HarnessError

FORMATS = ("md", "csv", "latex")


def model_label(model: str, model_args: dict) -> str:
    shown = {k: v for k, v in sorted(model_args.items()) if v != "<redacted>"}
    return model + (f"({', '.join(f'{k}={v}' for k, v in shown.items())})" if shown else "")


def collect(runs_root: Path, keep_all: bool = False) -> pd.DataFrame:
    rows = []
    for run_dir in store.find_runs(runs_root):
        header = store.read_header(run_dir)
        if header.status != "finished" or not (run_dir / store.SUMMARY).exists():
            continue
        summary = store.read_summary(run_dir)
        rows.append({"model": model_label(header.model, header.model_args), "task": header.task, "split": header.split,
                     "n": summary.n, **summary.metrics, "run": header.run_id, "_started": header.started_at})
    if not rows:
        raise HarnessError(f"{runs_root}: no finished runs; make one with `harness run --task mesc --model retrieval`.")
    table = pd.DataFrame(rows).sort_values(["task", "split", "model", "_started"], kind="stable")
    if not keep_all:  # the latest run of each model / task / split
        table = table.drop_duplicates(["model", "task", "split"], keep="last")
    return table.drop(columns="_started").reset_index(drop=True)


def render(table: pd.DataFrame, fmt: str) -> str:
    if fmt == "md":
        return table.to_markdown(index=False, floatfmt=".2f") + "\n"
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "latex":
        return table.to_latex(index=False, float_format="%.2f", na_rep="--", escape=True)
    raise HarnessError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}.")
