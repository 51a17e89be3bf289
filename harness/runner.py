"""Running a task with a model: a new run or the resumption of an interrupted one."""
from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from . import datafiles, dialogues, paths, registry, scoring, store
from .cache import CachedModel, ResponseCache
from .contract import ChatModel, DialogueTask, ModelContext, RoleRecord, RunHeader, Sample, SampleRecord, Summary, Task
from .errors import HarnessError

SCORE_BATCH = 64  # finished samples scored and written together
FLUSH_SECONDS = 1.0  # ... or after this long, whichever comes first
_SECRET = re.compile(r"key|token|secret|password|auth", re.IGNORECASE)
REDACTED = "<redacted>"
CALLS_CACHE = "calls.sqlite"  # a dialogue run's own cache when the shared one is off: resuming needs it
_RECORDED_PACKAGES = ("esc-harness", "nltk", "numpy", "pandas", "scikit-learn", "pydantic", "torch", "transformers", "peft", "vllm", "openai", "xllamacpp", "bert-score")


@dataclass
class RoleConfig:
    model: str
    model_args: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    task: str
    model: str
    split: str = "test"
    task_args: dict[str, Any] = field(default_factory=dict)
    model_args: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    limit: int | None = None
    metrics: list[str] | None = None  # None: the task's defaults
    output_dir: Path = Path("results/runs")
    data_dir: Path | None = None
    cache_path: Path | None = None
    use_cache: bool = True
    bootstrap: int = 1000  # resamples for the metrics' confidence intervals (0: none)
    # dialogue tasks: the model of each role besides the model under test (a role not given is played by
    # the model under test), and how many dialogues run at once
    roles: dict[str, RoleConfig] = field(default_factory=dict)
    concurrency: int = 8


@dataclass
class RunResult:
    run_dir: Path
    summary: Summary
    model_calls: int
    cache_hits: int
    resumed_samples: int


def redact(args: dict[str, Any]) -> dict[str, Any]:
    return {k: (REDACTED if _SECRET.search(k) else v) for k, v in args.items()}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _RECORDED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def load_task(name: str, task_args: dict[str, Any], seed: int = 0) -> Task:
    try:
        task = registry.tasks.get(name)(**task_args)
    except TypeError as exc:
        raise HarnessError(f"task '{name}': bad --task-args ({exc}).") from None
    task.seed = seed
    return task


def load_samples(task: Task, split: str, data_dir: Path | None, limit: int | None) -> tuple[list[Sample], Path, dict[str, str]]:
    if split not in task.splits:
        raise HarnessError(f"task {task.name} has no split '{split}'; choose one of {', '.join(task.splits)}.")
    folder, hashes = datafiles.resolve(task.dataset, task.name, paths.data_root(data_dir))
    samples = task.load(split, folder)
    if limit is not None:
        if limit < 1:
            raise HarnessError(f"--limit must be a positive number of samples, got {limit}.")
        samples = samples[:limit]
    return samples, folder, hashes


def new_run_dir(output_dir: Path, config: RunConfig) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{config.task}-{config.model}-{config.split}")
    run_dir = output_dir / f"{stamp}-{slug}-{uuid.uuid4().hex[:6]}"
    run_dir.mkdir(parents=True)
    return run_dir


def _config_from_header(header: RunHeader, override: RunConfig | None) -> RunConfig:
    """The recorded configuration; secrets must come again from the command line or the environment."""
    config = RunConfig(task=header.task, model=header.model, split=header.split, task_args=dict(header.task_args),
                       model_args=dict(header.model_args), seed=header.seed, limit=header.limit, metrics=list(header.metrics),
                       roles={name: RoleConfig(r.model, dict(r.model_args)) for name, r in header.roles.items()})
    if override is not None:
        for name in ("task", "model", "split"):
            given = getattr(override, name)
            if given and given != getattr(config, name):
                raise HarnessError(f"--resume: the run was made with {name} '{getattr(config, name)}', not '{given}'; drop --{name} or start a new run.")
        _fill_secrets(config.model_args, override.model_args)
        for name, role in config.roles.items():
            given_role = override.roles.get(name)
            if given_role is not None:
                if given_role.model != role.model:
                    raise HarnessError(f"--resume: the run's {name} is '{role.model}', not '{given_role.model}'; drop --{name} or start a new run.")
                _fill_secrets(role.model_args, given_role.model_args)
            elif role.model == config.model:  # a role played by the model under test takes its secrets too
                _fill_secrets(role.model_args, override.model_args)
        config.data_dir, config.cache_path, config.use_cache, config.bootstrap = override.data_dir, override.cache_path, override.use_cache, override.bootstrap
        config.concurrency = override.concurrency
    missing = [k for k, v in config.model_args.items() if v == REDACTED]
    missing += [f"{k} (--{name}-args)" for name, role in config.roles.items() for k, v in role.model_args.items() if v == REDACTED]
    if missing:
        raise HarnessError(f"--resume: pass the secret model argument(s) {', '.join(missing)} again with --model-args (they are never stored).")
    return config


def _fill_secrets(recorded: dict[str, Any], given: dict[str, Any]) -> None:
    recorded.update({k: v for k, v in given.items() if recorded.get(k) == REDACTED})


def _role_configs(task: Task, config: RunConfig) -> dict[str, RoleConfig]:
    """Every role of a dialogue task with its model; roles not given are played by the model under test."""
    if not isinstance(task, DialogueTask):
        if config.roles:
            raise HarnessError(f"task {task.name} is single-turn; --{next(iter(config.roles))} applies to dialogue tasks only.")
        return {"model": RoleConfig(config.model, config.model_args)}
    unknown = [name for name in config.roles if name not in task.roles]
    if unknown:
        raise HarnessError(f"task {task.name} has no role '{unknown[0]}'; its roles are {', '.join(task.roles)}.")
    roles = {"model": RoleConfig(config.model, config.model_args)}
    for name in task.roles:
        roles[name] = config.roles.get(name) or RoleConfig(config.model, dict(config.model_args))
    for role in roles.values():
        registry.models.get(role.model)  # an unknown model name fails before anything is loaded
    return roles


def run(config: RunConfig, resume: Path | None = None, progress: bool | None = None) -> RunResult:
    if resume is not None:
        header = store.read_header(resume)
        config = _config_from_header(header, config)
        run_dir = resume
    task = load_task(config.task, config.task_args, config.seed)
    roles = _role_configs(task, config)
    metrics = scoring.load_metrics(config.metrics or task.default_metrics, () if config.metrics else task.optional_metrics)  # fails early if e.g. WordNet is missing
    metric_names = [m.name for m in metrics]
    samples, data_folder, hashes = load_samples(task, config.split, config.data_dir, config.limit)

    if resume is not None and header.data != hashes:
        raise HarnessError(f"--resume: the dataset files changed since {run_dir} was started; resume with the same data or start a new run.")
    models = open_models(config, task, data_folder, roles)  # before any folder is made: bad model args leave nothing behind
    model = models["model"]
    dialogue_task = task if isinstance(task, DialogueTask) else None
    try:
        if resume is None:
            run_dir = new_run_dir(Path(config.output_dir), config)
            header = RunHeader(
                run_id=run_dir.name, task=config.task, task_args=config.task_args, model=config.model,
                model_args=redact(config.model_args), model_identity=model.cache_identity(), split=config.split,
                seed=config.seed, limit=config.limit, metrics=metric_names, data=hashes, git_revision=git_revision(),
                packages=package_versions(), started_at=now(), n_samples=len(samples),
                roles={name: RoleRecord(model=role.model, model_args=redact(role.model_args), model_identity=models[name].cache_identity())
                       for name, role in roles.items() if name != "model"},
                prompt_version=dialogue_task.prompt_version if dialogue_task else None,
            )
            store.write_json(run_dir / store.HEADER, header)
        if dialogue_task and not config.use_cache:
            calls = ResponseCache(run_dir / CALLS_CACHE)
            for m in unique_models(models):
                m.cache = calls
        with store.locked(run_dir):
            done = {r.id: r for r in store.read_records(run_dir, repair=True)}
            ids = {s.id for s in samples}
            stray = [i for i in done if i not in ids]
            if stray:
                raise HarnessError(f"{run_dir}: holds sample '{stray[0]}' which this task/split does not produce; the run belongs to other data.")
            todo = [(i, s) for i, s in enumerate(samples) if s.id not in done]
            if dialogue_task:
                clients = {m_id: dialogues.RoleClient(m) for m_id, m in {id(m): m for m in models.values()}.items()}
                try:
                    dialogues.play(dialogue_task, {name: clients[id(m)] for name, m in models.items()}, metrics, todo, run_dir,
                                   config.concurrency, progress)
                finally:
                    for client in clients.values():
                        client.close()
            else:
                _generate(task, model, metrics, todo, run_dir, config.seed, progress)
            records = store.read_records(run_dir)
            if len(records) != len(samples):
                raise HarnessError(f"{run_dir}: {len(records)} of {len(samples)} samples written; resume with `harness run --resume {run_dir}`.")
            summary = scoring.summarize(metrics, records, resamples=config.bootstrap, seed=config.seed)
            store.write_json(run_dir / store.SUMMARY, summary)
            store.write_json(run_dir / store.HEADER, header.model_copy(update={"finished_at": now(), "status": "finished"}))
    finally:
        close_models(models)
    unique = unique_models(models)
    return RunResult(run_dir, summary, sum(m.calls for m in unique), sum(m.hits for m in unique), len(done))


def unique_models(models: dict[str, CachedModel]) -> list[CachedModel]:
    return list({id(m): m for m in models.values()}.values())


def open_models(config: RunConfig, task: Task, data_folder: Path, roles: dict[str, RoleConfig]) -> dict[str, CachedModel]:
    """One adapter per distinct (model, args): roles played by the same model share it (one server, one GPU copy)."""
    context = ModelContext(task=task, split=config.split, data_dir=data_folder, seed=config.seed)
    cache = ResponseCache(paths.cache_path(config.cache_path)) if config.use_cache else None
    opened: dict[str, CachedModel] = {}
    by_role: dict[str, CachedModel] = {}
    try:
        for name, role in roles.items():
            key = json.dumps([role.model, role.model_args], sort_keys=True, default=str)
            if key not in opened:
                adapter = registry.models.get(role.model)
                try:
                    inner: ChatModel = adapter(context, **role.model_args)
                except TypeError as exc:
                    option = "--model-args" if name == "model" else f"--{name}-args"
                    raise HarnessError(f"model '{role.model}' ({name}): bad {option} ({exc}).") from None
                opened[key] = CachedModel(inner, cache)
            by_role[name] = opened[key]
    except BaseException:
        for m in opened.values():
            m.close()
        if cache is not None:
            cache.close()
        raise
    return by_role


def close_models(models: dict[str, CachedModel]) -> None:
    caches = []
    for m in unique_models(models):
        try:
            m.close()
        finally:
            if m.cache is not None and all(m.cache is not c for c in caches):
                caches.append(m.cache)
    for cache in caches:
        cache.close()


def _generate(task: Task, model: CachedModel, metrics, todo: list[tuple[int, Sample]], run_dir: Path, seed: int, progress: bool | None) -> None:
    from tqdm import tqdm

    if not todo:
        return
    show = sys.stderr.isatty() if progress is None else progress
    requests = []
    for _, sample in todo:
        request = task.build_request(sample)
        if request.generation.seed is None:  # the run's seed reaches every sampling adapter
            request = request.model_copy(update={"generation": request.generation.model_copy(update={"seed": seed})})
        requests.append(request)
    writer = store.SampleWriter(run_dir)
    pending: list[SampleRecord] = []
    last_flush = time.monotonic()

    def flush() -> None:
        # model-based metrics (BERTScore, EPITOME) score a batch far faster than one sample at a time
        scores = scoring.per_sample_scores(metrics, scoring.pairs_of(pending))
        writer.write([r.model_copy(update={"scores": sc}) for r, sc in zip(pending, scores)])
        pending.clear()

    try:
        with tqdm(total=len(todo), desc=f"{task.name} x {model.name}", unit="sample", disable=not show) as bar:
            for position, output in model.stream(requests):
                index, sample = todo[position]
                pending.append(to_record(index, sample, output.text, task, output.usage))
                # saved within seconds of finishing; answers are in the response cache meanwhile, so a kill
                # before a flush costs no model call on resume
                if len(pending) >= SCORE_BATCH or time.monotonic() - last_flush > FLUSH_SECONDS:
                    flush()
                    last_flush = time.monotonic()
                bar.update(1)
    finally:
        try:
            if pending:
                flush()
        finally:
            writer.close()


def to_record(index: int, sample: Sample, output: str, task: Task, usage: dict[str, int] | None = None) -> SampleRecord:
    parsed = task.parse_response(output)
    return SampleRecord(index=index, id=sample.id, history=list(sample.history), reference=sample.reference, labels=sample.labels,
                        output=output, response=parsed.response, format_ok=parsed.format_ok, thinking=parsed.thinking,
                        parse_details=parsed.details, usage=usage or {})


def score(run_dir: Path, metric_names: list[str] | None = None, bootstrap: int = 1000) -> Summary:
    """Recompute responses and metrics of a finished run from its stored outputs; no model is called."""
    header = store.read_header(run_dir)
    task = load_task(header.task, header.task_args, header.seed)
    names = metric_names or header.metrics
    metrics = scoring.load_metrics(names)
    with store.locked(run_dir):
        records = store.read_records(run_dir)
        if len(records) != header.n_samples:
            raise HarnessError(f"{run_dir}: {len(records)} of {header.n_samples} samples are done; finish it with `harness run --resume {run_dir}` first.")
        reparsed = []
        for r in records:
            parsed = task.parse_response(r.output)
            reparsed.append(r.model_copy(update={"response": parsed.response, "format_ok": parsed.format_ok,
                                                 "thinking": parsed.thinking, "parse_details": parsed.details}))
        rescored, summary = scoring.rescore(metrics, reparsed, resamples=bootstrap, seed=header.seed)
        store.rewrite_records(run_dir, rescored)
        store.write_json(run_dir / store.SUMMARY, summary)
        if names != header.metrics:
            store.write_json(run_dir / store.HEADER, header.model_copy(update={"metrics": list(names)}))
    return summary
