"""Re-judging ESC-Eval transcripts without playing the dialogues again.

The source is a finished `esc-eval` run folder or a published transcript file (ESC-Eval's
`reference/result/<date>/<model>_<lang>.json`). The result is a new run folder - the source is never
changed - whose run.json names the judge and the source, and whose samples hold the same dialogues with
the new judge's scores. Judge calls go through the response cache: re-running the command after a kill
asks nothing twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from harness import dialogues, scoring, store
from harness.contract import Ask, DialogueResult, DialogueTask, DialogueTurn, RoleRecord, RunHeader, Sample, Summary
from harness.errors import HarnessError
from harness.runner import (RoleConfig, RunConfig, close_models, git_revision, new_run_dir, now, open_models,
                            package_versions, redact)

from .esc_eval import ESCEvalTask, judge
from .esc_eval_reference import read_transcripts


class _Rejudge(DialogueTask):
    """The stored dialogues, judged again: `play` asks only the judge."""

    roles: ClassVar[tuple[str, ...]] = ("judge",)

    def __init__(self, language: str, stored: dict[str, list[DialogueTurn]]):
        self.name, self.language, self.stored = ESCEvalTask.name, language, stored
        self.prompt_version = ESCEvalTask.prompt_version
        self.dataset, self.splits, self.default_metrics = ESCEvalTask.dataset, ESCEvalTask.splits, ESCEvalTask.default_metrics

    def load(self, split: str, data_dir: Path) -> list[Sample]:  # the samples come from the source
        raise NotImplementedError

    def play(self, sample: Sample, ask: Ask) -> DialogueResult:
        turns = self.stored[sample.id]
        outcome = judge(turns, self.language, lambda request: ask("judge", request))
        return DialogueResult(turns=turns, outcome={**outcome, "language": self.language, "rounds": sum(t.role == "seeker" for t in turns)})


@dataclass
class _Source:
    header: RunHeader  # what the new run inherits (task, model, split, ...)
    samples: list[Sample]
    stored: dict[str, list[DialogueTurn]]
    language: str


def _from_run(run_dir: Path) -> _Source:
    header = store.read_header(run_dir)
    if header.task != ESCEvalTask.name or header.status != "finished":
        raise HarnessError(f"{run_dir}: not a finished esc-eval run (task {header.task}, {header.status}); rescore finished esc-eval runs or published transcript files.")
    records = store.read_records(run_dir)
    missing = [r.id for r in records if not r.dialogue]
    if missing:
        raise HarnessError(f"{run_dir}/{store.SAMPLES}: sample '{missing[0]}' has no dialogue; the run folder is damaged.")
    samples = [Sample(id=r.id, history=(), reference="", labels=r.labels) for r in records]
    language = str(header.task_args.get("language", "en"))
    return _Source(header, samples, {r.id: list(r.dialogue or []) for r in records}, language)


def _from_published(path: Path) -> _Source:
    stored = {f"esc-eval/published/{path.stem}/{key}": turns for key, turns in read_transcripts(path).items()}
    language = path.stem.rpartition("_")[2]
    if language not in ("en", "zh"):
        raise HarnessError(f"{path}: published ESC-Eval transcript files are named <model>_<en|zh>.json; rename it or pass a run folder.")
    header = RunHeader(run_id="", task=ESCEvalTask.name, task_args={"language": language}, model="published",
                       model_args={"transcripts": path.stem}, split="test", seed=0, metrics=[], started_at=now(), n_samples=len(stored))
    samples = [Sample(id=key, history=(), reference="", labels={"language": language}) for key in stored]
    return _Source(header, samples, stored, language)


def rescore(source: Path, judge_role: RoleConfig, output_dir: Path, cache_path: Path | None = None, use_cache: bool = True,
            concurrency: int = 8, bootstrap: int = 1000, progress: bool | None = None) -> tuple[Path, Summary]:
    if source.is_dir():
        found = _from_run(source)
    elif source.is_file():
        found = _from_published(source)
    else:
        raise HarnessError(f"{source}: no such run folder or transcript file.")
    task = _Rejudge(found.language, found.stored)
    metrics = scoring.load_metrics(list(ESCEvalTask.default_metrics))
    base = found.header
    config = RunConfig(task=base.task, model=base.model, split=base.split, seed=base.seed, output_dir=output_dir,
                       cache_path=cache_path, use_cache=use_cache)
    models = open_models(config, task, source, {"judge": RoleConfig(judge_role.model, judge_role.model_args)})
    try:
        run_dir = new_run_dir(output_dir, config)
        roles = {**base.roles, "judge": RoleRecord(model=judge_role.model, model_args=redact(judge_role.model_args),
                                                    model_identity=models["judge"].cache_identity())}
        header = base.model_copy(update={
            "run_id": run_dir.name, "metrics": [m.name for m in metrics], "roles": roles, "prompt_version": task.prompt_version,
            "source": f"re-judged from {source.resolve().name}" + (f" (run {base.run_id})" if base.run_id else ""),
            "git_revision": git_revision(), "packages": package_versions(), "started_at": now(), "finished_at": None,
            "status": "running", "n_samples": len(found.samples)})
        store.write_json(run_dir / store.HEADER, header)
        with store.locked(run_dir):
            dialogues_todo = list(enumerate(found.samples))
            client = dialogues.RoleClient(models["judge"])
            try:
                dialogues.play(task, {"judge": client}, metrics, dialogues_todo, run_dir, concurrency, progress)
            finally:
                client.close()
            records = store.read_records(run_dir)
            summary = scoring.summarize(metrics, records, resamples=bootstrap, seed=base.seed)
            store.write_json(run_dir / store.SUMMARY, summary)
            store.write_json(run_dir / store.HEADER, header.model_copy(update={"finished_at": now(), "status": "finished"}))
    finally:
        close_models(models)
    return run_dir, summary

