"""`harness` command line."""
from __future__ import annotations

import json
import os
import sys

# OpenMP threads (torch's CPU kernels: BERTScore, EPITOME) spin while waiting by default, which on a busy
# 2-core machine made a MESC run 1.2-1.5x slower; they must be told before torch is first imported
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from pathlib import Path
from typing import Any

import click

from . import __version__, datafiles, options, paths, registry
from .errors import HarnessError
from .options import model_spec, names, parse_kv  # noqa: F401  (plugins' commands use them from here)


def _exit_now(code: Any) -> None:
    """The process's exit once a command has finished: other threads joined, atexit handlers run (servers
    stopped, caches closed), output flushed, then no interpreter teardown - freeing the modules and objects of
    a run (NLTK, scipy, sklearn, the samples) took ~0.8 s, a twentieth of the main job, for nothing."""
    import atexit
    import threading

    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    try:
        shutdown = getattr(threading, "_shutdown", None)  # what a normal exit does first: wait for non-daemon threads
        if shutdown is not None:
            shutdown()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe (`harness ... | head`)
                pass
        os._exit(code or 0)


class _Group(click.Group):
    """User errors become one line on stderr and exit status 2, never a traceback; so does any other
    exception (an internal error, to be reported), unless $ESC_HARNESS_DEBUG=1. Ctrl-C exits with 130,
    naming the run folder to resume."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HarnessError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            from .lifecycle import RunFolder, working_folder

            folder = working_folder()  # the folder Ctrl-C left (still running, to be resumed)
            from .suite import SuiteFolder

            if isinstance(folder, SuiteFolder) or isinstance(working_folder(SuiteFolder), SuiteFolder):
                folder = working_folder(SuiteFolder)  # a run of a suite: the suite resumes it
                click.echo(f"interrupted; finished samples and tasks are saved - continue with `harness run --resume {folder.path}`.", err=True)
            elif isinstance(folder, RunFolder):
                click.echo(f"interrupted; finished samples are saved - continue with `harness run --resume {folder.path}`.", err=True)
            else:
                click.echo(f"interrupted; {folder.path} is left unfinished." if folder is not None else "interrupted.", err=True)
            sys.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own (usage errors, --help, an exit asked for): click reports them
        except Exception as exc:
            if os.environ.get("ESC_HARNESS_DEBUG", "") not in ("", "0"):  # =1: the traceback, for a bug report
                raise
            from .redaction import error_line

            click.echo(f"error: internal error ({error_line(exc)}); please report it with the command you ran "
                       "(ESC_HARNESS_DEBUG=1 shows the traceback).", err=True)
            sys.exit(2)

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if args is not None or prog_name is not None or complete_var is not None or not standalone_mode or extra:
            return self._main(args, prog_name, complete_var, standalone_mode, **extra)  # from Python (CliRunner): as click
        try:  # the process's entry point (the `harness` script, python -m harness.cli)
            self._main()
        except SystemExit as done:
            _exit_now(done.code)

    def _main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None, standalone_mode: bool = True,
              **extra: Any) -> Any:
        """Usage errors (an unknown option, a bad value) are one line too, with where to read more."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `harness` or a group alone: its help, as click shows it
                click.echo(exc.format_message(), err=True)
                sys.exit(exc.exit_code)
            where = exc.ctx.command_path if exc.ctx is not None else "harness"
            click.echo(f"error: {exc.format_message()} (see `{where} --help`)", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("interrupted.", err=True)
            sys.exit(130)
        sys.exit(result if isinstance(result, int) else 0)

    # sub-commands of tasks and tools come from the esc_harness.commands entry points, imported lazily
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(registry.commands.names()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        found = super().get_command(ctx, name)
        if found is None and name in registry.commands.names():
            found = registry.commands.get(name)
        return found


def metric_table(summary) -> str:
    """Each metric with its interval, and how many samples had no value for it (unparseable judge scores)."""
    rows = []
    for name, value in summary.metrics.items():
        low_high = summary.intervals.get(name)
        rows.append((name, f"{value:.2f}" + (f"  [{low_high[0]:.2f}, {low_high[1]:.2f}]" if low_high else "")))
    for name, count in summary.missing.items():
        shown = next((i for i, (row_name, _) in enumerate(rows) if row_name == name), None)
        note = f"  ({count} of {summary.n} missing)"
        if shown is None:
            rows.append((name, f"--{note}"))
        else:
            rows[shown] = (name, rows[shown][1] + note)
    if summary.format_errors:
        rows.append(("format errors", f"{summary.format_errors} of {summary.n} outputs did not follow the requested format (still scored)"))
    if summary.empty_outputs:
        rows.append(("empty outputs", f"{summary.empty_outputs} of {summary.n} outputs were empty (scored as \"\")"))
    return _table(rows)


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="harness")
def main() -> None:
    """Evaluate emotional-support conversation models on every ESC benchmark, one way."""


@main.command()
@click.option("--task", help="Task name (see `harness list tasks`), or several: mesc,esconv,emotyda-esc (a suite).")
@click.option("--suite", "suite_file", type=click.Path(path_type=Path, dir_okay=False),
              help="A suite file (TOML) listing tasks with their options; see `harness run --help`.")
@click.option("--model", help="Model adapter name (see `harness list models`).")
@click.option("--model-args", help="Adapter options, k=v,k2=v2.")
@click.option("--task-args", help="Task options, k=v,k2=v2.")
@click.option("--split", default=None, help="Split to evaluate [default: test].")
@click.option("--limit", type=int, default=None, help="Evaluate only the first N samples of the split.")
@click.option("--seed", type=int, default=None, help="Seed of the run [default: 0; on --resume, the run's].")
@click.option("--metrics", help="Comma-separated metric names [default: the task's].")
@options.output_dir(Path("results/runs"), "Folder the run folder is made in")
@options.data_dir
@options.cache
@options.resamples(None, "Bootstrap resamples for the 95% intervals (0: none) [default: 1000; on --resume, the run's]", deprecated=("--bootstrap",))
@click.option("--resume", type=click.Path(path_type=Path, file_okay=False), help="Finish an interrupted (or failed) run folder.")
@options.roles
@click.option("--concurrency", type=int, default=8, show_default=True, help="Dialogue tasks: dialogues played at once.")
def run(task, suite_file, model, model_args, task_args, split, limit, seed, metrics, output_dir, data_dir, cache_path, no_cache, resamples,
        resume, roles, concurrency) -> None:
    """Evaluate MODEL on TASK; writes a run folder and prints its metrics.

    A model is an adapter name, optionally with its model: `openai:gpt-4o` is `openai` with model=gpt-4o.
    Roles besides the model under test (a dialogue's seeker, the judge of judged metrics) are played by
    --model unless given with --role NAME=SPEC.

    Several tasks (--task a,b,c, or --suite FILE) make a suite folder with one run folder per task, print
    one table and exit 1 if any task failed (the others' results are kept); --resume SUITE_DIR carries on
    every unfinished task. Options given on the command line apply to every task, over the suite file's.
    A suite file (TOML):

    \b
    model = "openai:gpt-4o"
    [defaults]
    limit = 100
    [[tasks]]
    task = "mesc"
    task_args = { prompt = "fires" }
    [[tasks]]
    task = "esc-eval"
    roles = { seeker = "openai:gpt-4o" }"""
    from .runner import RunConfig, run as run_task

    tasks = names(task) or []
    if suite_file is not None and tasks:
        raise HarnessError("give --task or --suite, not both.")
    if resume is None and not (len(tasks) > 1 or suite_file) and not (task and model):
        raise HarnessError("give --task and --model (or --resume RUN_DIR); e.g. harness run --task mesc --model retrieval")
    if concurrency < 1:
        raise HarnessError(f"--concurrency must be at least 1, got {concurrency}.")
    if len(tasks) > 1 or suite_file is not None or (resume is not None and _is_suite(resume)):
        return _run_suite(tasks, suite_file, model, model_args, task_args, split, limit, seed, metrics, output_dir, data_dir,
                          cache_path, no_cache, resamples, resume, roles, concurrency)
    model_name, model_kwargs = model_spec(model, model_args, "--model-args") if model else ("", parse_kv(model_args))
    task_kwargs = parse_kv(task_args, "--task-args")
    if resume is None and task_args is None:  # a trained checkpoint says how it is evaluated (FIRES: prompt=fires)
        from .training import suggested_task_args

        suggested = suggested_task_args(model_kwargs, task)
        if suggested:
            task_kwargs, record = suggested
            click.echo(f"task args from {record}: " + ",".join(f"{k}={v}" for k, v in task_kwargs.items()), err=True)
    config = RunConfig(
        task=task or "", model=model_name, split=split or ("" if resume else "test"), task_args=task_kwargs,
        model_args=model_kwargs, seed=seed, limit=limit, metrics=names(metrics), output_dir=output_dir, data_dir=data_dir,
        cache_path=cache_path, use_cache=not no_cache, resamples=resamples, roles=roles, concurrency=concurrency,
    )
    result = run_task(config, resume=resume)
    click.echo(f"{result.summary.n} samples; model calls {result.model_calls}, cache hits {result.cache_hits}"
               + (f", {result.resumed_samples} samples already done" if resume else ""))
    click.echo(metric_table(result.summary))
    click.echo(str(result.run_dir))


def _is_suite(path: Path) -> bool:
    from .suite import is_suite

    return is_suite(path)


def _run_suite(tasks, suite_file, model, model_args, task_args, split, limit, seed, metrics, output_dir, data_dir, cache_path, no_cache,
               resamples, resume, roles, concurrency) -> int:
    from . import suite

    where = suite.Where(output_dir=output_dir, data_dir=data_dir, cache_path=cache_path, use_cache=not no_cache)
    model_kwargs = parse_kv(model_args, "--model-args")
    record = None
    if resume is None:
        given = {k: v for k, v in (("split", split), ("task_args", parse_kv(task_args, "--task-args") if task_args else None),
                                   ("limit", limit), ("seed", seed), ("metrics", names(metrics)), ("resamples", resamples),
                                   ("concurrency", concurrency if concurrency != 8 else None)) if v is not None}
        given["roles"] = {n: r.model for n, r in roles.items()} if roles else None
        given["role_args"] = {n: r.model_args for n, r in roles.items() if r.model_args} if roles else None
        record = suite.plan(tasks, suite_file, suite.TaskOptions(**{k: v for k, v in given.items() if v is not None}), model, model_kwargs)
        roles = {}
    else:
        if tasks or suite_file or model or task_args or split or limit is not None or seed is not None or metrics or resamples is not None:
            raise HarnessError(f"--resume {resume}: a suite resumes with what it recorded; give only --model-args / --role-args "
                               "(secrets, a new server address), --data-dir and --cache.")

    def report(outcome) -> None:
        where_to = f" {outcome.run_dir}" if outcome.run_dir else ""
        if outcome.summary is None:
            click.echo(f"{outcome.entry.task}: failed: {outcome.entry.error}{where_to}", err=True)
        elif outcome.kept:
            click.echo(f"{outcome.entry.task}: finished before, kept as it is{where_to}", err=True)
        else:
            click.echo(f"{outcome.entry.task}: {outcome.summary.n} samples; model calls {outcome.model_calls}, "
                       f"cache hits {outcome.cache_hits}{where_to}", err=True)

    result = suite.run_suite(record, where, resume=resume, model_args=model_kwargs, roles=roles, report=report)
    click.echo(suite.combined_table(result.outcomes))
    click.echo(str(result.suite_dir))
    if result.failed:
        click.echo(f"{len(result.failed)} of {len(result.outcomes)} tasks failed; the others are saved - "
                   f"continue with `harness run --resume {result.suite_dir}`.", err=True)
        return 1
    return 0


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--metrics", help="Comma-separated metric names [default: those of the run].")
@options.resamples(deprecated=("--bootstrap",))
def score(run_dir: Path, metrics: str | None, resamples: int) -> None:
    """Recompute the metrics of a finished run from its stored outputs (no model call)."""
    from .runner import score as score_run

    summary = score_run(run_dir, names(metrics), resamples)
    click.echo(metric_table(summary))


@main.command()
@click.argument("run_a", type=click.Path(path_type=Path, file_okay=False))
@click.argument("run_b", type=click.Path(path_type=Path, file_okay=False))
@click.option("--metrics", help="Comma-separated metric names [default: those both runs have].")
@options.resamples(what="Resamples of the paired interval and randomisation test")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare(run_a: Path, run_b: Path, metrics: str | None, resamples: int, seed: int, as_json: bool) -> None:
    """B - A per metric on the samples both runs share: paired 95% interval and paired randomisation p-value."""
    from .comparison import compare_runs

    result = compare_runs(run_a, run_b, names(metrics), resamples, seed)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{result['shared']} shared samples; B - A with paired 95% interval and p-value")
    click.echo(_table([(r["metric"], f"A {r['a']:.2f}  B {r['b']:.2f}  diff {r['difference']:+.2f}  [{r['interval'][0]:+.2f}, {r['interval'][1]:+.2f}]  p={r['p_value']:.4f}")
                       for r in result["metrics"]]))


@main.command("list")
@click.argument("kind", type=click.Choice(["tasks", "models", "metrics", "recipes"]))
def list_(kind: str) -> None:
    """Registered tasks, models, metrics or training recipes."""
    reg = {"tasks": registry.tasks, "models": registry.models, "metrics": registry.metrics, "recipes": registry.recipes}[kind]
    rows = []
    for name in reg.names():
        try:
            obj = reg.get(name)
        except Exception as exc:  # a plugin that fails to import must not hide the others
            rows.append((name, f"(unavailable: {type(exc).__name__}: {exc})"))
            continue
        doc = getattr(obj, "description", "") or next(iter((obj.__doc__ or "").strip().splitlines()), "")
        rows.append((name, doc))
    click.echo(_table(rows))


@main.group()
def data() -> None:
    """Datasets: statistics and fetching."""


@data.command()
@click.argument("task")
@options.data_dir
@click.option("--json", "as_json", is_flag=True, help="Print {split: instances} as JSON.")
def stats(task: str, data_dir: Path | None, as_json: bool) -> None:
    """Number of instances per split."""
    from .runner import load_samples, load_task

    t = load_task(task, {})
    counts = {split: len(load_samples(t, split, data_dir, None)[0]) for split in t.splits}
    click.echo(json.dumps(counts) if as_json else _table([(k, str(v)) for k, v in counts.items()]))


@data.command()
@click.argument("task")
@options.data_dir
@click.option("--force", is_flag=True, help="Download again even if the files are there and intact.")
def fetch(task: str, data_dir: Path | None, force: bool) -> None:
    """Download a task's files from their source and check their sha256."""
    t = registry.tasks.get(task)
    root = paths.data_root(data_dir)
    written = datafiles.fetch(t.dataset, root, force=force)
    click.echo(f"{root / t.dataset.folder}: {len(written)} file(s) downloaded, all {len(t.dataset.files)} verified.")


@data.command("frames")
@click.argument("task")
@click.option("--videos", required=True, type=click.Path(path_type=Path, file_okay=False), help="Folder holding your copy of the source videos.")
@options.output_dir(None, "Where the frames go [default: the task's per-user frames folder]", deprecated=("--out",))
@options.data_dir
def frames(task: str, videos: Path, output_dir: Path | None, data_dir: Path | None) -> None:
    """Extract each sample's video frames from your own copy of a task's videos (resumable)."""
    from .runner import load_task

    t = load_task(task, {})
    prepare = getattr(t, "prepare_frames", None)  # the hook of tasks whose samples have video
    if prepare is None:
        raise HarnessError(f"task {task} has no video frames (its samples are text only); nothing to extract.")
    folder, _ = datafiles.resolve(t.dataset, task, paths.data_root(data_dir))
    click.echo(str(prepare(videos, folder, output_dir)))


from .cache_cli import cache_group  # noqa: E402  (harness cache stats | prune | clear)

main.add_command(cache_group)


@main.group()
def setup() -> None:
    """One-time setup of offline resources."""


@setup.command("nltk")
@click.option("--wordnet-dir", type=click.Path(path_type=Path, file_okay=False), default=None, help="WordNet 3.0 database folder [default: Debian's].")
def setup_nltk(wordnet_dir: Path | None) -> None:
    """WordNet (for METEOR) and Punkt (for tokenising) without the NLTK downloader."""
    from .metrics import nltk_data

    target = nltk_data.install(wordnet_dir or nltk_data.DEBIAN_WORDNET)
    click.echo(f"NLTK data ready in {target}: {json.dumps(nltk_data.describe())}")


class _Recipes(click.Group):
    """`harness train NAME`: the recipes come from the esc_harness.train entry points, imported on use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return registry.recipes.names()

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return registry.recipes.get(name)  # an unknown name: one line with "did you mean"


@main.group(cls=_Recipes)
def train() -> None:
    """Training recipes (FIRES, COMPEER, ...): each writes a checkpoint folder with its train.json,
    which `harness run --model hf --model-args model=DIR` evaluates like any model."""


@main.command()
def schema() -> None:
    """JSON schemas of the files in a run folder."""
    from .contract import ON_DISK

    click.echo(json.dumps({name: model.model_json_schema() for name, model in ON_DISK.items()}, indent=2))


if __name__ == "__main__":
    main()
