"""`harness compare RUN_A RUN_B`: paired differences of two runs on the samples they share."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from . import scoring, store, uncertainty
from .errors import HarnessError


def compare_runs(run_a: Path, run_b: Path, metric_names: list[str] | None = None, resamples: int = 1000, seed: int = 0) -> dict:
    (header_a, list_a), (header_b, list_b) = store.read_run(run_a), store.read_run(run_b)
    for field in ("task", "split"):
        if getattr(header_a, field) != getattr(header_b, field):
            raise HarnessError(f"the runs differ in {field} ('{getattr(header_a, field)}' vs '{getattr(header_b, field)}'); compare runs of the same task and split.")
    if header_a.task_args != header_b.task_args:
        raise HarnessError(f"the runs used different task options ({header_a.task_args} vs {header_b.task_args}); their samples are not the same prompts.")
    records_a = {r.id: r for r in list_a}
    records_b = {r.id: r for r in list_b}
    shared = sorted(set(records_a) & set(records_b), key=lambda i: records_a[i].index)
    if not shared:
        raise HarnessError(f"{run_a} and {run_b} share no sample; compare runs over the same samples.")
    names = metric_names or [m for m in header_a.metrics if m in header_b.metrics]
    if not names:
        raise HarnessError("the runs have no metric in common; pass --metrics.")
    metrics = scoring.load_metrics(names)
    pairs_a = scoring.pairs_of([records_a[i] for i in shared])
    pairs_b = scoring.pairs_of([records_b[i] for i in shared])
    rows = uncertainty.compare(metrics, pairs_a, pairs_b, resamples, seed)
    return {
        "run_a": header_a.run_id, "run_b": header_b.run_id, "task": header_a.task, "split": header_a.split,
        "shared": len(shared), "only_a": len(records_a) - len(shared), "only_b": len(records_b) - len(shared),
        "resamples": resamples, "seed": seed,
        "metrics": [{**asdict(r), "interval": list(r.interval), "method": uncertainty.interval_method(m)} for r, m in zip(rows, metrics)],
    }
