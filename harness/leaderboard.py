"""Gathering finished runs for the leaderboard (`harness leaderboard`, built in reports/leaderboard.py).

A run is shown under a label made of its model, its model options (secrets left out) and its task
options, so `--task-args prompt=fires` and the plain prompt are two rows; by default only the latest
run of each label / task / split is kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import store
from .contract import RunHeader, Summary
from .errors import HarnessError


def model_label(model: str, model_args: dict) -> str:
    shown = {k: v for k, v in sorted(model_args.items()) if v != "<redacted>"}
    return model + (f"({', '.join(f'{k}={v}' for k, v in shown.items())})" if shown else "")


def run_label(header: RunHeader) -> str:
    label = model_label(header.model, header.model_args)
    if header.task_args:
        label += " [" + ", ".join(f"{k}={v}" for k, v in sorted(header.task_args.items())) + "]"
    return label


@dataclass
class RunEntry:
    run_dir: Path
    header: RunHeader
    summary: Summary
    label: str  # row label: run_label, plus the run id where --all keeps several runs of one label


def collect_runs(runs_root: Path, keep_all: bool = False) -> list[RunEntry]:
    """Finished runs under `runs_root` (those with a summary.json), ordered by task, split, label, start."""
    entries = []
    for run_dir in store.find_runs(runs_root):
        header = store.read_header(run_dir)
        if header.status != "finished" or not (run_dir / store.SUMMARY).exists():
            continue
        entries.append(RunEntry(run_dir, header, store.read_summary(run_dir), run_label(header)))
    if not entries:
        raise HarnessError(f"{runs_root}: no finished runs; make one with `harness run --task TASK --model MODEL` (see `harness list tasks`, `harness list models`).")
    entries.sort(key=lambda e: (e.header.task, e.header.split, e.label, e.header.started_at))
    if keep_all:
        counts: dict[tuple, int] = {}
        for e in entries:
            counts[(e.header.task, e.header.split, e.label)] = counts.get((e.header.task, e.header.split, e.label), 0) + 1
        for e in entries:
            if counts[(e.header.task, e.header.split, e.label)] > 1:
                e.label = f"{e.label} <{e.header.run_id}>"
        return entries
    latest: dict[tuple, RunEntry] = {}
    for e in entries:  # sorted by start time within a key: the last one wins
        latest[(e.header.task, e.header.split, e.label)] = e
    return list(latest.values())


def collect(runs_root: Path, keep_all: bool = False) -> pd.DataFrame:
    """The runs as one flat frame (rows model / task / split, columns metrics)."""
    rows = [{"model": e.label, "task": e.header.task, "split": e.header.split, "n": e.summary.n, **e.summary.metrics, "run": e.header.run_id}
            for e in collect_runs(runs_root, keep_all)]
    return pd.DataFrame(rows)
