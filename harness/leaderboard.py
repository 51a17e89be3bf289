"""Gathering finished runs for the leaderboard (`harness leaderboard`, built in reports/leaderboard.py).

A run is shown under a label made of its model, its model options (secrets left out) and its task
options, so `--task-args prompt=fires` and the plain prompt are two rows; by default only the latest
run of each label / task / split is kept.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import redaction, store
from .contract import RunHeader, Summary
from .errors import HarnessError


def model_label(model: str, model_args: dict) -> str:
    """`model(k=v, ...)` of the recorded arguments, redacted again (a run.json of an older version may hold a
    URL's password, and its redacted names differ); a secret (REDACTED) is left out."""
    shown = {k: v for k, v in sorted(redaction.redact(model_args).items()) if v != redaction.REDACTED}
    return model + (f"({', '.join(f'{k}={v}' for k, v in shown.items())})" if shown else "")


def run_label(header: RunHeader) -> str:
    args = dict(header.model_args)
    trained = header.model_identity or {}
    if trained.get("train_id") and trained.get("recipe") and "model" in args:  # a checkpoint of `harness train`: its training, not its path
        args["model"] = f"{trained['recipe']} {trained['train_id']}"
    label = model_label(header.model, args)
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
    """Finished runs under `runs_root`, ordered by task, split, label, start. A finished folder that cannot
    be shown (no summary.json, an unreadable file, records that contradict run.json) is left out with one
    warning line on stderr naming it: one bad folder never stops the leaderboard."""
    entries = []
    for run_dir in store.find_runs(runs_root):
        try:
            header = store.read_header(run_dir)
            if header.status != "finished":
                continue
            if not (run_dir / store.SUMMARY).exists():
                print(f"warning: {run_dir} left out: finished but has no {store.SUMMARY}; write it with `harness score {run_dir}`.", file=sys.stderr)
                continue
            header, _ = store.read_run(run_dir)  # refuses records that contradict the header
            summary = store.read_summary(run_dir)
        except HarnessError as exc:
            print(f"warning: {run_dir} left out: {exc}", file=sys.stderr)
            continue
        entries.append(RunEntry(run_dir, header, summary, run_label(header)))
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
