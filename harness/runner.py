"""Running a task with a model: a new run, the resumption of an interrupted one, re-scoring a finished
one, and re-grading stored records with another judge. Folders and models follow `lifecycle`."""
from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from . import datafiles, dialogues, grading, metric_worker, paths, registry, scorecache, scoring, store
from .cache import CachedModel, ResponseCache, group_commits
from .contract import DialogueTask, Grader, Metric, ModelContext, RoleRecord, RunHeader, Sample, SampleRecord, ScoredPair, Summary, Task
from .errors import HarnessError
from .contract import SCHEMA_VERSION
from .lifecycle import (ModelSpec, RunFolder, close_models, git_revision, git_revision_later, now, open_cache, open_models, package_versions,
                        unique_models)
from .redaction import is_redacted, redact, secrets_of
from .uncertainty import DEFAULT_RESAMPLES

# Finished samples are scored and written together once a second (FLUSH_SECONDS), or once SCORE_BATCH of them
# wait: a model answering fast (retrieval, cached answers) has its samples scored in a few large batches, which
# the model-based metrics handle far faster than many small ones; a slow one has each answer saved within seconds.
SCORE_BATCH = 1024
FLUSH_SECONDS = 1.0
CALLS_CACHE = "calls.sqlite"  # a dialogue run's own cache when the shared one is off: resuming needs it
RoleConfig = ModelSpec  # a role's model, as the run API has always called it


@dataclass
class RunConfig:
    task: str
    model: str
    split: str = "test"
    task_args: dict[str, Any] = field(default_factory=dict)
    model_args: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None  # None: 0 for a new run, the recorded one on resume
    limit: int | None = None
    metrics: list[str] | None = None  # None: the task's defaults (the recorded ones on resume)
    output_dir: Path = Path("results/runs")
    data_dir: Path | None = None
    cache_path: Path | None = None
    use_cache: bool = True
    resamples: int | None = None  # for the metrics' 95% intervals (0: none); None: DEFAULT_RESAMPLES, or the run's on resume
    # the model of each role besides the model under test (a dialogue's seeker, a grader's judge); a role
    # not given is played by the model under test
    roles: dict[str, ModelSpec] = field(default_factory=dict)
    concurrency: int = 8  # dialogue tasks: dialogues played at once


@dataclass
class RunResult:
    run_dir: Path
    summary: Summary
    model_calls: int
    cache_hits: int
    resumed_samples: int


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


# --------------------------------------------------------------------------- resuming


def _refuse(option: str, recorded: Any, given: Any) -> HarnessError:
    return HarnessError(f"--resume: the run was made with {option} {recorded!r}, not {given!r}; drop {option} or start a new run.")


def _contradicting(recorded: dict[str, Any], given: dict[str, Any]) -> str | None:
    """The first given argument the run did not record with that value (secrets, never stored, are
    filled in instead of compared)."""
    absent = object()
    for key, value in given.items():
        was = recorded.get(key, absent)
        if not is_redacted(was) and was != value:
            return key
    return None


IDENTITY_FREE = ("base_url",)  # identity fields that may change on resume: where the same model is served


def resume_config(header: RunHeader, given: RunConfig) -> tuple[RunConfig, dict[str, dict[str, Any]]]:
    """The recorded configuration, and the model arguments given anew. An option given again must say what
    the run recorded (else one line refuses it); a model argument may change only where the model's answers
    do not (a key, the server's address: `check_identities` compares the reopened models); secrets, never
    stored, must come again from the command line or the environment."""
    if header.schema_version != SCHEMA_VERSION:
        raise HarnessError(f"--resume: run.json has schema version {header.schema_version}, this harness writes {SCHEMA_VERSION}; "
                           f"resume it with the harness version that started it, or start a new run.")
    for name, option in (("task", "--task"), ("model", "--model"), ("split", "--split")):
        value = getattr(given, name)
        if value and value != getattr(header, name):
            raise HarnessError(f"--resume: the run was made with {name} '{getattr(header, name)}', not '{value}'; drop {option} or start a new run.")
    if given.seed is not None and given.seed != header.seed:
        raise _refuse("--seed", header.seed, given.seed)
    if given.limit is not None and given.limit != header.limit:
        raise _refuse("--limit", header.limit, given.limit)
    if given.metrics is not None and list(given.metrics) != list(header.metrics):
        raise _refuse("--metrics", ",".join(header.metrics), ",".join(given.metrics))
    recorded_resamples = header.resamples if header.resamples is not None else DEFAULT_RESAMPLES
    if given.resamples is not None and given.resamples != recorded_resamples:
        raise _refuse("--resamples", recorded_resamples, given.resamples)
    key = _contradicting(header.task_args, given.task_args)
    if key is not None:
        raise _refuse(f"--task-args {key}=", header.task_args.get(key), given.task_args[key])
    config = RunConfig(task=header.task, model=header.model, split=header.split, task_args=dict(header.task_args),
                       model_args=dict(header.model_args), seed=header.seed, limit=header.limit, metrics=list(header.metrics),
                       roles={name: ModelSpec(r.model, dict(r.model_args)) for name, r in header.roles.items()},
                       output_dir=given.output_dir, data_dir=given.data_dir, cache_path=given.cache_path, use_cache=given.use_cache,
                       resamples=recorded_resamples, concurrency=given.concurrency)
    changed: dict[str, dict[str, Any]] = {}  # role -> arguments given anew
    _take(config.model_args, given.model_args, "model", changed)
    for name, role in config.roles.items():
        given_role = given.roles.get(name)
        if given_role is not None:
            if given_role.model != role.model:
                raise HarnessError(f"--resume: the run's {name} is '{role.model}', not '{given_role.model}'; drop --role {name}=... or start a new run.")
            _take(role.model_args, given_role.model_args, name, changed)
        elif role.model == config.model and role.model_args == header.model_args:  # played by the model under test: as it is now
            config.roles[name] = ModelSpec(role.model, dict(config.model_args))
        elif role.model == config.model:  # the same adapter with other arguments takes its secrets
            _fill_secrets(role.model_args, given.model_args)
    missing = [k for k, v in config.model_args.items() if is_redacted(v)]
    missing += [f"{k} (--role-args {name}=...)" for name, role in config.roles.items() for k, v in role.model_args.items() if is_redacted(v)]
    if missing:
        raise HarnessError(f"--resume: pass the secret model argument(s) {', '.join(missing)} again with --model-args (they are never stored).")
    return config, changed


def _take(recorded: dict[str, Any], given: dict[str, Any], role: str, changed: dict[str, dict[str, Any]]) -> None:
    """Arguments given on resume replace the recorded ones; those that differ (not secrets coming back)
    are noted for the folder's writers list, redacted."""
    for key, value in given.items():
        was = recorded.get(key)
        if not is_redacted(was) and was != value:
            changed.setdefault(role, {})[key] = value
        recorded[key] = value


def check_identities(header: RunHeader, models: dict[str, CachedModel], changed: dict[str, dict[str, Any]]) -> None:
    """A resumed run's models must answer as the recorded ones did: same identity, except where the same
    model is served from (IDENTITY_FREE)."""
    recorded = {"model": header.model_identity, **{name: r.model_identity for name, r in header.roles.items()}}
    strip = lambda d: {k: v for k, v in d.items() if k not in IDENTITY_FREE}
    for role, identity in recorded.items():
        if role not in models or not identity:
            continue
        now_is, was = strip(redact(models[role].cache_identity())), strip(identity)  # recorded identities are redacted
        if now_is != was:
            fields = sorted(k for k in set(now_is) | set(was) if now_is.get(k) != was.get(k))
            option = "--model-args" if role == "model" else f"--role-args {role}="
            given = ",".join(f"{k}={v}" for k, v in redact(changed.get(role, {})).items())
            raise HarnessError(f"--resume: {option} {given or '(the model itself)'} changes what the {role} answers "
                               f"({', '.join(fields)} differ from the recorded run); drop it or start a new run.")


def _fill_secrets(recorded: dict[str, Any], given: dict[str, Any]) -> None:
    recorded.update({k: v for k, v in given.items() if is_redacted(recorded.get(k))})


# --------------------------------------------------------------------------- roles


def role_specs(task: Task, graders: Sequence[Grader], config: RunConfig) -> dict[str, ModelSpec]:
    """Every role of the run with its model: "model" (under test), a dialogue task's roles, and the roles
    of the graders its metrics read. Roles not given are played by the model under test."""
    declared = list(task.roles) if isinstance(task, DialogueTask) else []
    declared += [g.role for g in graders if g.role not in declared]
    # a grader's role may be a panel: judge, judge2, judge3 ... (grading.panel_roles)
    declared += [r for g in graders for r in grading.panel_roles(g.role, config.roles)[1:] if r not in declared]
    unknown = [name for name in config.roles if name not in declared]
    if unknown:
        if not declared:
            raise HarnessError(f"task {task.name} is single-turn and none of its metrics asks a {unknown[0]}; "
                               f"--{unknown[0]} applies to dialogue tasks and judged metrics only.")
        raise HarnessError(f"task {task.name} has no role '{unknown[0]}'; its roles are {', '.join(declared)}.")
    roles = {"model": ModelSpec(config.model, config.model_args)}
    for name in declared:
        roles[name] = config.roles.get(name) or ModelSpec(config.model, dict(config.model_args))
    for role in roles.values():
        registry.models.get(role.model)  # an unknown model name fails before anything is loaded
    return roles


def _all_secrets(roles: dict[str, ModelSpec]) -> list[str]:
    return [s for spec in roles.values() for s in secrets_of(spec.model_args)]


# --------------------------------------------------------------------------- a run


def run(config: RunConfig, resume: Path | None = None, progress: bool | None = None,
        on_folder: Callable[[Path], None] | None = None) -> RunResult:
    """`on_folder` is told the new run folder as soon as it exists (a suite records it, to resume it)."""
    folder = RunFolder.open(resume) if resume is not None else None
    changed: dict[str, dict[str, Any]] = {}
    if folder is not None:
        config, changed = resume_config(folder.header, config)
    seed = config.seed if config.seed is not None else 0
    resamples = config.resamples if config.resamples is not None else DEFAULT_RESAMPLES
    if resamples < 0:
        raise HarnessError(f"--resamples must be 0 (no intervals) or a positive number, got {resamples}.")
    task = load_task(config.task, config.task_args, seed)
    names = config.metrics or task.default_metrics
    built = [registry.metrics.get(n) for n in names]
    roles = role_specs(task, grading.graders_of(built), config)  # before any warning
    # BERTScore's and EPITOME's models load in a process of their own from here on (harness/metric_worker.py),
    # started before the checks below: importing NLTK for them alone takes seconds
    worker = metric_worker.start(built)
    try:
        # fails early if e.g. WordNet is missing
        metrics = scoring.load_metrics(names, () if config.metrics else task.optional_metrics, built)
        return _run(config, folder, changed, seed, resamples, task, roles, metric_worker.attach(metrics, worker), resume,
                    on_folder, progress)
    finally:
        if worker is not None:
            worker.close()


def _run(config: RunConfig, folder: RunFolder | None, changed: dict[str, dict[str, Any]], seed: int, resamples: int, task: Task,
         roles: dict[str, ModelSpec], metrics: list[Metric], resume: Path | None, on_folder: Callable[[Path], None] | None,
         progress: bool | None) -> RunResult:
    revision = git_revision_later()  # (its git processes run while the samples load)
    graders = grading.graders_of(metrics)
    samples, data_folder, hashes = load_samples(task, config.split, config.data_dir, config.limit)
    if folder is not None and folder.header.data != hashes:
        raise HarnessError(f"--resume: the dataset files changed since {folder.path} was started; resume with the same data or start a new run.")
    provenance = task.provenance()
    if folder is not None and folder.header.task_provenance != provenance:
        raise HarnessError(f"--resume: what the task read besides its data changed since {folder.path} was started (run.json task_provenance); "
                           "resume with the same files or start a new run.")
    dialogue_task = task if isinstance(task, DialogueTask) else None
    context = ModelContext(task=task, split=config.split, data_dir=data_folder, seed=seed)
    # before any folder is made: bad model args leave nothing behind
    response_cache = open_cache(config.cache_path, config.use_cache)
    models = open_models(roles, response_cache, context)
    score_cache = scorecache.beside(response_cache)  # the same file's `scores` table; None with --no-cache
    metrics = scorecache.cached(metrics, score_cache)  # a second identical run computes (and loads) nothing
    graders = grading.bind(grading.panels(graders, roles), models)  # a judge with its own prompts (ESC-RANK) asks them
    digest = store.samples_digest(config.task, config.split, [s.id for s in samples])
    try:
        if folder is not None:
            check_identities(folder.header, models, changed)  # before anything is written
            if folder.header.samples_digest not in (None, digest):
                raise HarnessError(f"{folder.path}/run.json: the run's samples are not those of {config.task}/{config.split} here "
                                   f"(edited, or another run's folder); restore it or start a new run.")
        else:
            header = RunHeader(
                run_id="", task=config.task, task_args=config.task_args, model=config.model,
                model_args=redact(config.model_args), model_identity=redact(models["model"].cache_identity()), split=config.split,
                seed=seed, limit=config.limit, metrics=[m.name for m in metrics], data=hashes, task_provenance=provenance, git_revision=revision(),
                packages=package_versions(), started_at=now(), n_samples=len(samples),
                roles={name: RoleRecord(model=role.model, model_args=redact(role.model_args), model_identity=redact(models[name].cache_identity()),
                                        facts=models[name].facts())
                       for name, role in roles.items() if name != "model"},
                prompt_version=dialogue_task.prompt_version if dialogue_task else None, resamples=resamples, samples_digest=digest,
            )
            folder = RunFolder.create(config.output_dir, f"{config.task}-{config.model}-{config.split}", header)
            if on_folder is not None:
                on_folder(folder.path)
        if dialogue_task and not config.use_cache:
            calls = ResponseCache(folder.path / CALLS_CACHE)
            for m in unique_models(models):
                m.cache = calls
        with folder.working(_all_secrets(roles)):
            if resume is not None:
                folder.add_writer({role: redact(args) for role, args in changed.items()})
            done = {r.id: r for r in folder.records(repair=True)}
            ids = {s.id for s in samples}
            stray = [i for i in done if i not in ids]
            if stray:
                raise HarnessError(f"{folder.path}: holds sample '{stray[0]}' which this task/split does not produce; the run belongs to other data.")
            todo = [(i, s) for i, s in enumerate(samples) if s.id not in done]
            scored: dict[str, ScoredPair] = {}
            if dialogue_task:
                clients = {id(m): dialogues.RoleClient(m) for m in unique_models(models)}
                try:
                    dialogues.play(dialogue_task, {name: clients[id(m)] for name, m in models.items()}, metrics, graders, todo,
                                   folder.path, config.concurrency, progress)
                finally:
                    for client in clients.values():
                        client.close()
            else:
                scored = _generate(task, models, metrics, graders, todo, folder.path, seed, progress)
            records = sorted(folder.records(), key=lambda r: r.index)
            if len(records) != len(samples):
                raise HarnessError(f"{folder.path}: {len(records)} of {len(samples)} samples written; resume with `harness run --resume {folder.path}`.")
            pairs = scoring.pairs_of(records)
            scoring.reuse_features(pairs, scored, [r.id for r in records])  # (computed while the answers came in)
            summary = scoring.summarize(metrics, records, pairs, resamples=resamples, seed=seed)
            folder.finish_with(summary)
    finally:
        if score_cache is not None:
            score_cache.close()
        close_models(models)
    unique = unique_models(models)
    return RunResult(folder.path, summary, sum(m.calls for m in unique), sum(m.hits for m in unique), len(done))


def _generate(task: Task, models: dict[str, CachedModel], metrics: Sequence[Metric], graders: Sequence[Grader],
              todo: list[tuple[int, Sample]], run_dir: Path, seed: int, progress: bool | None) -> dict[str, ScoredPair]:
    """Answers, grades and scores `todo`, writing each batch; returns the scored pairs by sample id, holding the
    corpus metrics' features (computed while the model answered), for the summary."""
    from tqdm import tqdm

    scored: dict[str, ScoredPair] = {}
    if not todo:
        return scored
    model = models["model"]
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
    answers = {name: m.generate for name, m in models.items()}
    # one cache commit per flush, not per answer; `commit` before a record is written keeps every counted answer on disk
    with group_commits(unique_models(models)) as commit:

        def flush() -> None:
            # graders, and model-based metrics (BERTScore, EPITOME), handle a batch far faster than one sample at a time
            graded = grading.grade_records(graders, pending, answers)
            pairs = scoring.pairs_of(graded)
            records = scoring.with_scores(metrics, graded, pairs)
            commit()
            writer.write(records)
            scored.update((r.id, p) for r, p in zip(records, pairs))
            pending.clear()

        try:
            with tqdm(total=len(todo), desc=f"{task.name} x {model.name}", unit="sample", disable=not show) as bar:
                for position, output in model.stream(requests):
                    index, sample = todo[position]
                    pending.append(to_record(index, sample, output.text, task, output.usage))
                    # saved within seconds of finishing; answers are in the response cache meanwhile (committed
                    # at least every second), so a kill before a flush costs few model calls on resume
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
    return scored


def to_record(index: int, sample: Sample, output: str, task: Task, usage: dict[str, int] | None = None) -> SampleRecord:
    parsed = task.parse_response(output)
    return SampleRecord(index=index, id=sample.id, history=list(sample.history), reference=sample.reference, labels=sample.labels,
                        output=output, response=parsed.response, format_ok=parsed.format_ok, thinking=parsed.thinking,
                        parse_details=parsed.details, usage=usage or {})


# --------------------------------------------------------------------------- after a run


def score(run_dir: Path, metric_names: list[str] | None = None, resamples: int = DEFAULT_RESAMPLES) -> Summary:
    """Recompute responses and metrics of a finished run from its stored outputs; no model is called
    (judged metrics read the grades stored in the records)."""
    with store.locked(run_dir):
        header, records = store.read_run(run_dir)  # refuses records that contradict run.json
        task = load_task(header.task, header.task_args, header.seed)
        names = metric_names or header.metrics
        metrics = scoring.load_metrics(names)
        if len(records) != header.n_samples:
            raise HarnessError(f"{run_dir}: {len(records)} of {header.n_samples} samples are done; finish it with `harness run --resume {run_dir}` first.")
        reparsed = []
        for r in records:
            parsed = task.parse_response(r.output)
            reparsed.append(r.model_copy(update={"response": parsed.response, "format_ok": parsed.format_ok,
                                                 "thinking": parsed.thinking, "parse_details": parsed.details}))
        rescored, summary = scoring.rescore(metrics, reparsed, resamples=resamples, seed=header.seed)
        store.rewrite_records(run_dir, rescored)
        store.write_json(run_dir / store.SUMMARY, summary)
        if names != header.metrics:
            RunFolder(run_dir, header).write_header(metrics=list(names))
    return summary


@dataclass
class RegradeResult:
    run_dir: Path
    summary: Summary
    model_calls: int
    cache_hits: int


def regrade(source: RunHeader, records: Sequence[SampleRecord], metric_names: Sequence[str], roles: dict[str, ModelSpec],
            output_dir: Path, source_note: str, cache_path: Path | None = None, use_cache: bool = True, resamples: int = DEFAULT_RESAMPLES,
            batch: int = 64, progress: bool | None = None) -> RegradeResult:
    """Grade stored records again with the graders of `metric_names`, each asked with the model of its
    role, into a new run folder (the source is never changed). The new run inherits the source's task,
    model and split; its records keep their outputs and dialogues, with new grades and this run's usage."""
    from tqdm import tqdm

    if not records:
        raise HarnessError(f"{source_note}: there is nothing to grade (no records); give a run folder or file that holds dialogues.")
    metrics = scoring.load_metrics(list(metric_names))
    graders = grading.graders_of(metrics)
    if not graders:
        raise HarnessError(f"none of the metrics {', '.join(metric_names)} is graded by a model; use `harness score RUN_DIR` to rescore.")
    graders = grading.panels(graders, roles)  # judge, judge2 ...: a panel
    wanted = {member.role for g in graders for member in getattr(g, "members", [g])}
    unknown = sorted(set(roles) - wanted)
    if unknown:
        raise HarnessError(f"no grader asks a '{unknown[0]}'; the roles to give are {', '.join(sorted(wanted))}.")
    missing = sorted(wanted - set(roles))
    if missing:
        raise HarnessError(f"give the model of the {missing[0]} (--role {missing[0]}=MODEL, e.g. --role {missing[0]}=openai:gpt-4o).")
    models = open_models(dict(roles), open_cache(cache_path, use_cache))
    try:
        graders = grading.bind(graders, models)  # a judge with its own prompts (ESC-RANK) asks them
        # the source's own panel judges (judge2 ...) did not grade this run
        kept = {name: r for name, r in source.roles.items() if not any(re.fullmatch(re.escape(g.role) + r"\d+", name) for g in graders)}
        recorded = {**kept, **{name: RoleRecord(model=spec.model, model_args=redact(spec.model_args), model_identity=redact(models[name].cache_identity()),
                                                        facts=models[name].facts())
                                       for name, spec in roles.items()}}
        header = source.model_copy(update={
            "run_id": "", "metrics": [m.name for m in metrics], "roles": recorded, "source": source_note,
            "git_revision": git_revision(), "packages": package_versions(), "started_at": now(), "finished_at": None,
            "status": "running", "error": None, "n_samples": len(records), "resamples": resamples,
            "samples_digest": store.samples_digest(source.task, source.split, [r.id for r in sorted(records, key=lambda r: r.index)])})
        folder = RunFolder.create(output_dir, f"{source.task}-{source.model}-{source.split}", header)
        answers = {name: m.generate for name, m in models.items()}
        show = sys.stderr.isatty() if progress is None else progress
        with folder.working(_all_secrets(roles)):
            writer = folder.writer()
            try:
                with tqdm(total=len(records), desc=f"re-grading {source.task}", unit="sample", disable=not show) as bar:
                    for start in range(0, len(records), batch):
                        # each record keeps its place in the split (a dialogue run's file order is the finishing order)
                        chunk = [r.model_copy(update={"usage": {}, "scores": {}}) for r in records[start : start + batch]]
                        writer.write(scoring.with_scores(metrics, grading.grade_records(graders, chunk, answers)))
                        bar.update(len(chunk))
            finally:
                writer.close()
            summary = scoring.summarize(metrics, folder.records(), resamples=resamples, seed=source.seed)
            folder.finish_with(summary)
    finally:
        close_models(models)
    unique = unique_models(models)
    return RegradeResult(folder.path, summary, sum(m.calls for m in unique), sum(m.hits for m in unique))
