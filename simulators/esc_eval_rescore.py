"""Re-judging ESC-Eval transcripts without playing the dialogues again.

The source is a finished `esc-eval` run folder or a published transcript file (ESC-Eval's
`reference/result/<date>/<model>_<lang>.json`). This module only reads the source into records; the
engine's `regrade` writes a new run folder - the source is never changed - whose run.json names the
judge (or the panel of judges: judge, judge2, ...) and the source, and whose samples hold the same
dialogues with the new grades. Judge calls
go through the response cache: re-running the command after a kill asks nothing twice.
"""
from __future__ import annotations

from pathlib import Path

from harness import store
from harness.contract import RunHeader, SampleRecord
from harness.errors import HarnessError
from harness.lifecycle import ModelSpec, now
from harness.runner import RegradeResult, regrade

from .esc_eval import ESCEvalTask
from .esc_eval_reference import read_transcripts


def _from_run(run_dir: Path) -> tuple[RunHeader, list[SampleRecord]]:
    header, records = store.read_run(run_dir)  # refuses records that contradict run.json
    if header.task != ESCEvalTask.name or header.status != "finished":
        raise HarnessError(f"{run_dir}: not a finished esc-eval run (task {header.task}, {header.status}); rescore finished esc-eval runs or published transcript files.")
    missing = [r.id for r in records if not r.dialogue]
    if missing:
        raise HarnessError(f"{run_dir}/{store.SAMPLES}: sample '{missing[0]}' has no dialogue; the run folder is damaged.")
    language = str(header.task_args.get("language", "en"))
    kept = [SampleRecord(index=r.index, id=r.id, history=[], reference="", labels=r.labels, output=r.output, response=r.response,
                         dialogue=r.dialogue, outcome={"language": language, "rounds": sum(t.role == "seeker" for t in r.dialogue or [])})
            for r in records]
    return header, kept


def _from_published(path: Path) -> tuple[RunHeader, list[SampleRecord]]:
    transcripts = read_transcripts(path)
    language = path.stem.rpartition("_")[2]
    if language not in ("en", "zh"):
        raise HarnessError(f"{path}: published ESC-Eval transcript files are named <model>_<en|zh>.json; rename it or pass a run folder.")
    header = RunHeader(run_id="", task=ESCEvalTask.name, task_args={"language": language}, model="published",
                       model_args={"transcripts": path.stem}, split="test", seed=0, metrics=[], started_at=now(), n_samples=len(transcripts))
    records = []
    for index, (key, turns) in enumerate(transcripts.items()):
        last = next((t.text for t in reversed(turns) if t.role == "supporter"), "")
        records.append(SampleRecord(index=index, id=f"esc-eval/published/{path.stem}/{key}", history=[], reference="",
                                    labels={"language": language}, output=last, response=last, dialogue=turns,
                                    outcome={"language": language, "rounds": sum(t.role == "seeker" for t in turns)}))
    return header, records


def rescore(source: Path, judge: ModelSpec | dict[str, ModelSpec], output_dir: Path, cache_path: Path | None = None, use_cache: bool = True,
            resamples: int = 1000, progress: bool | None = None) -> RegradeResult:
    """`judge`: one judge, or a panel {"judge": ..., "judge2": ..., ...} (grading.panel_roles)."""
    judges = dict(judge) if isinstance(judge, dict) else {"judge": judge}
    if source.is_dir():
        header, records = _from_run(source)
    elif source.is_file():
        header, records = _from_published(source)
    else:
        raise HarnessError(f"{source}: no such run folder or transcript file.")
    if not records:  # before any folder is made: a run of no dialogue would look finished
        raise HarnessError(f"{source}: holds no dialogue to re-judge; give a published transcript file or a run folder with dialogues.")
    note = f"re-judged from {source.resolve().name}" + (f" (run {header.run_id})" if header.run_id else "")
    header = header.model_copy(update={"prompt_version": ESCEvalTask.prompt_version})
    return regrade(header, records, list(ESCEvalTask.default_metrics), judges, output_dir, note,
                   cache_path=cache_path, use_cache=use_cache, resamples=resamples, progress=progress)
