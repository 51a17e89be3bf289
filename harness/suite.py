"""Several tasks with one model in one command: a suite folder holding one run folder per task.

    harness run --task mesc,esconv,emotyda-esc --model M   the same options for every task
    harness run --suite suite.toml [--model M]             each task with its own options (SUITE_FILE below)
    harness run --resume SUITE_DIR                         every unfinished task carries on, finished ones stay

suite.json (`SuiteRecord`) lists the tasks with their options and, once started, each task's run folder
(inside the suite folder, so `harness leaderboard --runs-dir` finds them) and its state. A task that fails
is recorded with its one line and the others go on; the command then exits 1.
"""
from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from . import registry, store
from .contract import SCHEMA_VERSION, Status, Summary
from .errors import HarnessError
from .lifecycle import Folder, ModelSpec, new_folder, now
from .redaction import error_line, is_redacted, redact, secrets_of

SUITE = "suite.json"
SUITE_FILE = """\
# suite.toml: the tasks of one evaluation, each with its options (all optional but `task`)
model = "retrieval"                  # the model under test, as --model names it (--model wins)
model_args = {}                      # as --model-args (--model-args wins, key by key)

[defaults]                           # every task's options unless it sets its own
limit = 100

[[tasks]]
task = "mesc"
task_args = { prompt = "fires" }     # as --task-args
metrics = ["bleu-2", "rouge-l"]      # as --metrics [default: the task's]

[[tasks]]
task = "esc-eval"
roles = { seeker = "openai:gpt-4o", judge = "openai:gpt-4o" }   # as --role NAME=SPEC
role_args = { judge = { temperature = 0 } }                     # as --role-args NAME=k=v
"""
TaskState = Literal["pending", "running", "finished", "failed"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskOptions(_Strict):
    """What a task of a suite runs with (as `harness run`'s options name them)."""

    split: str | None = None  # None: test
    task_args: dict[str, Any] = {}
    limit: int | None = None
    seed: int | None = None
    metrics: list[str] | None = None  # None: the task's defaults
    resamples: int | None = None
    roles: dict[str, str] = {}  # role -> model spec (openai:gpt-4o)
    role_args: dict[str, dict[str, Any]] = {}  # role -> adapter arguments (secrets redacted in suite.json)
    concurrency: int | None = None

    @field_validator("metrics", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value


class SuiteTask(TaskOptions):
    """One task of suite.json: its options, and where it stands."""

    task: str
    run_dir: str | None = None  # the task's run folder, inside the suite folder (None until it starts)
    status: TaskState = "pending"
    error: str | None = None  # the one line that stopped it


class SuiteRecord(BaseModel):
    """suite.json"""

    schema_version: int = SCHEMA_VERSION
    suite_id: str
    source: str  # "--task a,b,c", or the suite file as given
    source_sha256: str | None = None  # of the suite file
    model: str
    model_args: dict[str, Any] = {}  # secrets redacted
    tasks: list[SuiteTask]
    started_at: str
    finished_at: str | None = None
    status: Status = "running"  # finished: every task finished; failed: one or more failed (see their errors)
    error: str | None = None


class _SuiteFile(_Strict):
    model: str | None = None
    model_args: dict[str, Any] = {}
    defaults: TaskOptions = TaskOptions()
    tasks: list[SuiteTask] = []


# --------------------------------------------------------------------------- planning


def read_suite_file(path: Path) -> tuple[_SuiteFile, str]:
    """The suite file (TOML), checked: one line naming the file and the key at fault."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise HarnessError(f"--suite {path}: cannot read it ({exc.strerror or exc}); give the path of a suite file (TOML).") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise HarnessError(f"{path}: not UTF-8 text (byte {exc.start}); a suite file is TOML, e.g.\n{SUITE_FILE}") from None
    except tomllib.TOMLDecodeError as exc:
        raise HarnessError(f"{path}: not valid TOML ({exc}); fix it (see `harness run --help` for the format).") from None
    try:
        parsed = _SuiteFile.model_validate(data)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "(top)"
        where = re.sub(r"^tasks\.(\d+)", lambda m: f"tasks[{int(m.group(1)) + 1}]", where)  # the 1st [[tasks]], not the 0th
        raise HarnessError(f"{path}: {where}: {problem['msg']}; the keys are model, model_args, [defaults] and [[tasks]] "
                           f"with task, split, task_args, limit, seed, metrics, resamples, roles, role_args, concurrency.") from None
    if not parsed.tasks:
        raise HarnessError(f"{path}: no [[tasks]]; list at least one, e.g. [[tasks]] task = \"mesc\".")
    return parsed, hashlib.sha256(raw).hexdigest()


def plan(tasks: Sequence[str] | None = None, suite_file: Path | None = None, options: TaskOptions | None = None,
         model: str | None = None, model_args: dict[str, Any] | None = None) -> SuiteRecord:
    """The suite to run: the named tasks with `options`, or a suite file's tasks with its options and
    `options` over them (what the command line gives applies to every task). Names are checked here, before
    anything is made."""
    given = options.model_dump(exclude_unset=True) if options is not None else {}
    if suite_file is not None:
        parsed, digest = read_suite_file(suite_file)
        base = parsed.defaults.model_dump(exclude_unset=True)
        entries = [SuiteTask.model_validate({**base, **t.model_dump(exclude_unset=True), **given}) for t in parsed.tasks]
        model = model or parsed.model
        model_args = {**parsed.model_args, **(model_args or {})}
        source = str(suite_file)
    else:
        names = list(tasks or [])
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise HarnessError(f"--task names {twice[0]} twice; give each task once (a suite file can list one task with several option sets).")
        entries = [SuiteTask(task=name, **given) for name in names]
        digest, source = None, "--task " + ",".join(names)
    if not model:
        raise HarnessError("give --model (or `model = ...` in the suite file); e.g. --model retrieval.")
    spec = ModelSpec.parse(model, model_args)
    registry.models.get(spec.model)  # an unknown name: one line with "did you mean"
    for entry in entries:
        registry.tasks.get(entry.task)
    return SuiteRecord(suite_id="", source=source, source_sha256=digest, model=spec.model, model_args=spec.model_args,
                       tasks=entries, started_at=now())


# --------------------------------------------------------------------------- running


class SuiteFolder(Folder):
    def __init__(self, path: Path, header: SuiteRecord):
        super().__init__(path, SUITE, header)

    @classmethod
    def open(cls, path: Path) -> "SuiteFolder":
        header = store.read_model(Path(path) / SUITE, SuiteRecord, missing="not found; is it a suite folder made by `harness run --task A,B`?",
                                  invalid=f"not a valid {SUITE}", advice="; restore it or start the suite again")
        if header.schema_version != SCHEMA_VERSION:
            raise HarnessError(f"{path}/{SUITE}: schema version {header.schema_version}, this harness writes {SCHEMA_VERSION}; "
                               "resume it with the harness version that started it.")
        return cls(Path(path), header)


def is_suite(path: Path) -> bool:
    return (Path(path) / SUITE).is_file()


@dataclass
class TaskOutcome:
    entry: SuiteTask
    run_dir: Path | None
    summary: Summary | None  # None: the task failed (entry.error says why)
    model_calls: int = 0
    cache_hits: int = 0
    kept: bool = False  # finished before this call (a resumed suite reads it back)


@dataclass
class SuiteResult:
    suite_dir: Path
    outcomes: list[TaskOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[TaskOutcome]:
        return [o for o in self.outcomes if o.summary is None]


@dataclass
class Where:
    """Where a suite's runs read and write (not recorded: a resume may give other places)."""

    output_dir: Path = Path("results/runs")
    data_dir: Path | None = None
    cache_path: Path | None = None
    use_cache: bool = True


def run_suite(record: SuiteRecord | None, where: Where, resume: Path | None = None, model_args: dict[str, Any] | None = None,
              roles: dict[str, ModelSpec] | None = None, progress: bool | None = None,
              report: Callable[[TaskOutcome], None] | None = None) -> SuiteResult:
    """Every task of the suite, one after the other, each in its own run folder; a failing task is recorded
    and the next one starts. On `resume`, finished tasks are read back, the others carried on (their run
    folder resumed) or started; `model_args` and `roles` given then must not change what the models answer
    (the runs' resume rules) and bring back the secrets suite.json never holds."""
    from .runner import RunConfig, run as run_task

    if resume is not None:
        folder = SuiteFolder.open(resume)
    else:
        assert record is not None
        recorded = record.model_copy(update={"model_args": redact(record.model_args),
                                             "tasks": [t.model_copy(update={"role_args": {n: redact(a) for n, a in t.role_args.items()}})
                                                       for t in record.tasks]})
        path = new_folder(where.output_dir, f"suite-{record.model}")
        folder = SuiteFolder(path, recorded.model_copy(update={"suite_id": path.name}))
        folder.write_header()
    given_args = dict(model_args or {}) if resume is not None else dict(record.model_args)
    given_roles = dict(roles or {})
    secrets = secrets_of(given_args) + [s for spec in given_roles.values() for s in secrets_of(spec.model_args)]
    if record is not None:
        secrets += [s for t in record.tasks for a in t.role_args.values() for s in secrets_of(a)]
    header: SuiteRecord = folder.header
    if resume is not None:  # secrets are never stored: they must come back before anything starts
        _with_secrets(header.model_args, given_args, "--model-args")
        for entry in header.tasks:
            for name, args in entry.role_args.items():
                if name not in given_roles:
                    _with_secrets(args, {}, f"--role-args {name}=")
    result = SuiteResult(folder.path)
    with folder.working(secrets):
        for i, entry in enumerate(header.tasks):
            original = record.tasks[i] if record is not None else entry  # with its secrets, on a new suite
            outcome = _finished(folder.path, entry)
            if outcome is None:
                _set(folder, i, status="running", error=None)

                def created(run_dir: Path, i: int = i) -> None:
                    _set(folder, i, run_dir=run_dir.name)

                try:
                    task_roles = {name: ModelSpec.parse(spec, original.role_args.get(name)) for name, spec in original.roles.items()}
                    task_roles.update(given_roles)
                    if folder.header.tasks[i].run_dir is not None:  # started before: carry it on
                        config = RunConfig(task="", model="", split="", model_args=given_args, roles=given_roles,
                                           output_dir=folder.path, data_dir=where.data_dir, cache_path=where.cache_path,
                                           use_cache=where.use_cache, concurrency=entry.concurrency or 8)
                        done = run_task(config, resume=folder.path / folder.header.tasks[i].run_dir, progress=progress)
                    else:
                        config = RunConfig(task=entry.task, model=header.model, split=entry.split or "test",
                                           task_args=dict(entry.task_args), model_args=_with_secrets(header.model_args, given_args, "--model-args"),
                                           seed=entry.seed, limit=entry.limit, metrics=entry.metrics, output_dir=folder.path,
                                           data_dir=where.data_dir, cache_path=where.cache_path, use_cache=where.use_cache,
                                           resamples=entry.resamples, concurrency=entry.concurrency or 8,
                                           roles={n: ModelSpec(s.model, _with_secrets(s.model_args, {}, f"--role-args {n}="))
                                                  for n, s in task_roles.items()})
                        done = run_task(config, progress=progress, on_folder=created)
                    _set(folder, i, status="finished", run_dir=done.run_dir.name)
                    outcome = TaskOutcome(folder.header.tasks[i], done.run_dir, done.summary, done.model_calls, done.cache_hits)
                except Exception as exc:  # noqa: BLE001 - one task's failure (or a bug in it) must not stop the others
                    if isinstance(exc, HarnessError) is False and _debug():
                        raise
                    _set(folder, i, status="failed", error=error_line(exc, secrets))
                    run_dir = folder.header.tasks[i].run_dir
                    outcome = TaskOutcome(folder.header.tasks[i], folder.path / run_dir if run_dir else None, None)
            result.outcomes.append(outcome)
            if report is not None:
                report(outcome)
        failed = result.failed
        if failed:
            folder.write_header(status="failed", finished_at=None,
                                error=f"{len(failed)} of {len(result.outcomes)} tasks failed ({', '.join(o.entry.task for o in failed)}); "
                                      f"resume with `harness run --resume {folder.path}`.")
        else:
            folder.finish()
    return result


def _debug() -> bool:
    import os

    return os.environ.get("ESC_HARNESS_DEBUG", "") not in ("", "0")


def _set(folder: SuiteFolder, index: int, **update: Any) -> None:
    tasks = list(folder.header.tasks)
    tasks[index] = tasks[index].model_copy(update=update)
    folder.write_header(tasks=tasks)


def _finished(suite_dir: Path, entry: SuiteTask) -> TaskOutcome | None:
    """A task whose run folder is finished, read back (None: it is still to do)."""
    if entry.run_dir is None or entry.status != "finished":
        return None
    run_dir = suite_dir / entry.run_dir
    try:
        header = store.read_header(run_dir)
        if header.status != "finished":
            return None
        return TaskOutcome(entry, run_dir, store.read_summary(run_dir), kept=True)
    except HarnessError:
        return None  # (damaged since: resuming it says what is wrong)


def _with_secrets(recorded: dict[str, Any], given: dict[str, Any], option: str) -> dict[str, Any]:
    """Recorded arguments with the given ones over them; a secret still redacted must be given again."""
    merged = {**recorded, **given}
    missing = [k for k, v in merged.items() if is_redacted(v)]
    if missing:
        raise HarnessError(f"pass the secret argument(s) {', '.join(missing)} again with {option} (they are never stored).")
    return merged


# --------------------------------------------------------------------------- the combined table


def combined_table(outcomes: Sequence[TaskOutcome]) -> str:
    """Metrics as rows, tasks as columns (value and 95% interval); a failed task's column says so."""
    heads = [_column_name(o, outcomes) for o in outcomes]
    metrics: list[str] = []
    for o in outcomes:
        metrics += [m for m in (o.summary.metrics if o.summary else {}) if m not in metrics]
    rows = [["samples", *[str(o.summary.n) if o.summary else "failed" for o in outcomes]]]
    for name in metrics:
        cells = []
        for o in outcomes:
            value = o.summary.metrics.get(name) if o.summary else None
            interval = o.summary.intervals.get(name) if o.summary else None
            cells.append("" if value is None else f"{value:.2f}" + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else ""))
        rows.append([name, *cells])
    widths = [max(len(r[c]) for r in [["", *heads], *rows]) for c in range(len(heads) + 1)]
    line = lambda cells: "  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    out = [line(["", *heads]), *(line(r) for r in rows)]
    for o in outcomes:
        if o.summary is None:
            out.append(f"  {_column_name(o, outcomes)} failed: {o.entry.error}")
    return "\n".join(out)


def _column_name(outcome: TaskOutcome, outcomes: Sequence[TaskOutcome]) -> str:
    name = outcome.entry.task
    if sum(o.entry.task == name for o in outcomes) > 1 and outcome.entry.task_args:
        name += "[" + ",".join(f"{k}={v}" for k, v in sorted(outcome.entry.task_args.items())) + "]"
    return name
