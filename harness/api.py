"""The harness from Python (a notebook, a training loop): the same runs as `harness run`, returning the
typed run header, summary and records instead of printing them.

    from harness import evaluate
    result = evaluate("mesc", "retrieval", limit=20, metrics=["bleu-2", "rouge-l"])
    result.metrics["bleu-2"], result.summary.intervals["bleu-2"], result.records[0].response
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .contract import RunHeader, SampleRecord, Summary
from .errors import HarnessError
from .lifecycle import ModelSpec
from .suite import SuiteResult


@dataclass
class Evaluation:
    """A finished run: where it is, what it recorded, and what it scored."""

    run_dir: Path
    header: RunHeader
    summary: Summary
    records: list[SampleRecord]  # in split order
    model_calls: int = 0  # requests the model answered in this call (the rest came from the cache or the run folder)
    cache_hits: int = 0

    @property
    def metrics(self) -> dict[str, float]:
        return self.summary.metrics

    def frame(self):
        """One row per sample (id, response, reference, format_ok, each per-sample score) as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame([{"id": r.id, "response": r.response, "reference": r.reference, "format_ok": r.format_ok, **r.scores}
                             for r in self.records])


def _roles(roles: dict[str, str | ModelSpec] | None) -> dict[str, ModelSpec]:
    out = {}
    for name, spec in (roles or {}).items():
        if isinstance(spec, ModelSpec):
            out[name] = spec
        elif isinstance(spec, str):
            out[name] = ModelSpec.parse(spec)
        else:
            raise HarnessError(f"roles['{name}']: give a model spec such as 'openai:gpt-4o' or a ModelSpec, not {type(spec).__name__}.")
    return out


def evaluate(task: str, model: str, *, model_args: dict[str, Any] | None = None, task_args: dict[str, Any] | None = None,
             split: str = "test", limit: int | None = None, metrics: Sequence[str] | None = None, seed: int | None = None,
             roles: dict[str, str | ModelSpec] | None = None, output_dir: str | Path = "results/runs",
             data_dir: str | Path | None = None, cache: str | Path | None = None, use_cache: bool = True,
             resamples: int | None = None, concurrency: int = 8, resume: str | Path | None = None,
             progress: bool = False) -> Evaluation:
    """Evaluate `model` (an adapter name, or `adapter:model` such as "openai:gpt-4o") on `task`, exactly as
    `harness run` does with the same options (a run folder under `output_dir`, the response cache, resumable:
    `resume=RUN_DIR` finishes an interrupted run). Bad input raises HarnessError with the CLI's one line."""
    from . import store
    from .runner import RunConfig, run

    spec = ModelSpec.parse(model, model_args)
    config = RunConfig(task=task, model=spec.model, split=split, task_args=dict(task_args or {}), model_args=spec.model_args,
                       seed=seed, limit=limit, metrics=list(metrics) if metrics is not None else None, output_dir=Path(output_dir),
                       data_dir=Path(data_dir) if data_dir is not None else None, cache_path=Path(cache) if cache is not None else None,
                       use_cache=use_cache, resamples=resamples, roles=_roles(roles), concurrency=concurrency)
    if resume is not None:  # what the run recorded; only the arguments given here again are compared
        config.task = config.model = config.split = ""
        config.model_args = dict(model_args or {})
    result = run(config, resume=Path(resume) if resume is not None else None, progress=progress)
    header, records = store.read_run(result.run_dir)
    return Evaluation(result.run_dir, header, result.summary, sorted(records, key=lambda r: r.index), result.model_calls, result.cache_hits)


def evaluate_suite(tasks: Sequence[str] | str | Path, model: str | None = None, *, model_args: dict[str, Any] | None = None,
                   output_dir: str | Path = "results/runs", data_dir: str | Path | None = None, cache: str | Path | None = None,
                   use_cache: bool = True, resume: str | Path | None = None, progress: bool = False, **options: Any) -> SuiteResult:
    """Several tasks with one model, as `harness run --task a,b,c` (a list of names) or `harness run --suite
    FILE` (a path): one run folder per task inside a suite folder; a failing task is recorded in its outcome
    (`result.failed`) and the others still run. `options` (limit, metrics, seed, ...) apply to every task."""
    from . import suite

    where = suite.Where(output_dir=Path(output_dir), data_dir=Path(data_dir) if data_dir is not None else None,
                        cache_path=Path(cache) if cache is not None else None, use_cache=use_cache)
    if resume is not None:
        return suite.run_suite(None, where, resume=Path(resume), model_args=model_args, progress=progress)
    try:
        given = suite.TaskOptions(**options)
    except Exception as exc:  # pydantic's message names the option
        raise HarnessError(f"evaluate_suite: bad option ({str(exc).splitlines()[-1].strip() or exc}); the options are "
                           f"{', '.join(suite.TaskOptions.model_fields)}.") from None
    if isinstance(tasks, (str, Path)) and Path(tasks).suffix == ".toml":
        record = suite.plan(None, Path(tasks), given, model, model_args)
    else:
        record = suite.plan([tasks] if isinstance(tasks, str) else list(tasks), None, given, model, model_args)
    return suite.run_suite(record, where, progress=progress)
