"""The command line's vocabulary: one option name per concept, defined here once and shared by every
command (the engine's and the plugins').

    --output-dir DIR     where a command writes what it makes (run folders, tables, classifiers, frames)
    --out FILE           the one file a command writes (an A/B sheet, a figure, a leaderboard table): a file, not a folder
                         (the leaderboard's --out also takes a folder: a name without extension)
    --runs-dir DIR       the folder of run folders a command reads (the leaderboard)
    --data-dir DIR       the datasets folder
    --cache FILE / --no-cache    the response cache
    --resamples N        bootstrap resamples behind every interval and paired test (0: none)
    --role NAME=SPEC / --role-args NAME=ARGS    the model of a role (seeker, judge, ...); --seeker and
                         --judge (with --seeker-args, --judge-args) are short forms; --judge repeated is a
                         panel of judges, roles judge, judge2, judge3 ... (--judge-args once per judge, in order)

An old name keeps working for one release, with a deprecation line on stderr.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Callable

import click

from .errors import HarnessError
from .lifecycle import ModelSpec

def _warn(old: str, new: str) -> None:
    click.echo(f"warning: {old} is deprecated and will be removed in the next release; use {new}.", err=True)


def option(*names: str, dest: str, default: Any = None, deprecated: tuple[str, ...] = (), **kw: Any) -> Callable:
    """A click option (valued, not a flag) that also accepts its deprecated names: hidden, with a warning
    when used; given both ways with different values is an error."""

    def decorate(f: Callable) -> Callable:
        olds = [(old, f"_deprecated_{dest}_{i}") for i, old in enumerate(deprecated)]

        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, key in olds:
                value = kwargs.pop(key, None)
                if value is None:
                    continue
                _warn(old, names[0])
                if kwargs.get(dest) is not None and kwargs[dest] != value:
                    raise HarnessError(f"{old} and {names[0]} disagree ({value} vs {kwargs[dest]}); give {names[0]} only.")
                kwargs[dest] = value
            if kwargs.get(dest) is None:
                kwargs[dest] = default
            return f(*args, **kwargs)

        wrapped: Callable = wrapper
        for old, key in olds:
            wrapped = click.option(old, key, hidden=True, default=None, type=kw.get("type"))(wrapped)
        shown = kw.pop("help", "")
        if default is not None:
            shown = f"{shown} [default: {default}]".strip()
        return click.option(*names, dest, default=None, help=shown, **kw)(wrapped)

    return decorate


# --------------------------------------------------------------------------- the shared options

PATH = click.Path(path_type=Path)
FOLDER = click.Path(path_type=Path, file_okay=False)


def output_dir(default: Path | None = None, what: str = "Where the results go", deprecated: tuple[str, ...] = ()) -> Callable:
    return option("--output-dir", dest="output_dir", default=default, deprecated=deprecated, type=FOLDER, help=f"{what}.")


def runs_dir(deprecated: tuple[str, ...] = ()) -> Callable:
    return option("--runs-dir", dest="runs_dir", default=Path("results/runs"), deprecated=deprecated, type=FOLDER,
                  help="Folder holding run folders.")


def data_dir(f: Callable) -> Callable:
    return click.option("--data-dir", type=PATH, default=None,
                        help="Datasets folder [default: $ESC_HARNESS_DATA, else the per-user cache].")(f)


def cache(f: Callable) -> Callable:
    f = click.option("--no-cache", is_flag=True, help="Do not read or write the response cache.")(f)
    return click.option("--cache", "cache_path", type=PATH, help="Response cache file [default: $ESC_HARNESS_CACHE, else the per-user cache].")(f)


def resamples(default: int | None = 1000, what: str = "Bootstrap resamples for the 95% intervals (0: none)", deprecated: tuple[str, ...] = ()) -> Callable:
    """--resamples N (never negative); default None leaves the choice to the command (a resumed run keeps its own)."""
    return option("--resamples", dest="resamples", default=default, deprecated=deprecated, type=click.IntRange(min=0), help=f"{what}.")


def roles(f: Callable) -> Callable:
    """--role NAME=SPEC and --role-args NAME=ARGS (repeatable), with --seeker/--judge as short forms;
    the command receives `roles`: {name: ModelSpec}."""

    @functools.wraps(f)
    def wrapper(*args: Any, role: tuple[str, ...], role_args: tuple[str, ...], seeker: str | None, seeker_args: str | None,
                judge: tuple[str, ...], judge_args: tuple[str, ...], **kwargs: Any) -> Any:
        if judge_args and not judge:
            raise HarnessError("--judge-args given without its model; name the model too (e.g. --role judge=openai:gpt-4o).")
        if len(judge_args) > len(judge):
            raise HarnessError(f"--judge-args given {len(judge_args)} times for {len(judge)} --judge; give it once per judge, "
                               f"in the judges' order (or --role-args judge2=... for one judge).")
        judges = panel_names(len(judge))
        given = [_split_role(text, "--role") for text in role]
        given += [(name, spec) for name, spec in (("seeker", seeker),) if spec]
        given += list(zip(judges, judge))
        arg_texts = [_split_role(text, "--role-args") for text in role_args]
        arg_texts += [(name, text) for name, text in (("seeker", seeker_args),) if text]
        arg_texts += [(name, text) for name, text in zip(judges, judge_args) if text]
        specs: dict[str, str] = {}
        for name, spec in given:
            if name in specs and specs[name] != spec:
                raise HarnessError(f"role '{name}' is given twice ({specs[name]} and {spec}); give it once.")
            specs[name] = spec
        parsed_args: dict[str, dict[str, Any]] = {}
        for name, text in arg_texts:
            if name not in specs:
                option_name = f"--{name}-args" if name in ("seeker", "judge") else f"--role-args {name}=..."
                raise HarnessError(f"{option_name} given without its model; name the model too (e.g. --role {name}=openai:gpt-4o).")
            parsed_args.setdefault(name, {}).update(parse_kv(text, f"--role-args {name}="))
        kwargs["roles"] = {name: ModelSpec.parse(spec, parsed_args.get(name)) for name, spec in specs.items()}
        return f(*args, **kwargs)

    for decl in (
        click.option("--judge-args", hidden=True, multiple=True,
                     help="Short for --role-args judge=ARGS; with several --judge, once per judge in order."),
        click.option("--judge", hidden=False, multiple=True,
                     help="Short for --role judge=SPEC; repeat it for a panel: the second is role judge2, the third judge3 ..."),
        click.option("--seeker-args", hidden=True, help="Short for --role-args seeker=ARGS."),
        click.option("--seeker", hidden=False, help="Short for --role seeker=SPEC."),
        click.option("--role-args", "role_args", multiple=True, help="Options of a role's adapter: NAME=k=v,k2=v2 (repeatable)."),
        click.option("--role", "role", multiple=True, help="The model of a role: NAME=SPEC, e.g. judge=openai:gpt-4o (repeatable) [default: --model]."),
    ):
        wrapper = decl(wrapper)
    return wrapper


def panel_names(count: int, role: str = "judge") -> list[str]:
    """The roles of `count` judges given with --judge: judge, judge2, judge3 ..."""
    return [role if i == 0 else f"{role}{i + 1}" for i in range(count)]


def _split_role(text: str, option_name: str) -> tuple[str, str]:
    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise HarnessError(f"{option_name} '{text}': write NAME=VALUE, e.g. {option_name} judge={'openai:gpt-4o' if option_name == '--role' else 'temperature=0'}.")
    return name.strip(), rest.strip()


# --------------------------------------------------------------------------- values


def parse_kv(text: str | None, option: str = "--model-args") -> dict[str, Any]:
    """`k=v,k2=v2` -> dict; values that read as JSON (numbers, true/false, null, lists) are converted."""
    if not text:
        return {}
    pieces: list[str] = []
    for piece in text.split(","):
        if "=" in piece or not pieces:
            pieces.append(piece)
        else:  # a comma inside a value
            pieces[-1] += "," + piece
    parsed: dict[str, Any] = {}
    for piece in pieces:
        key, sep, value = piece.partition("=")
        if not sep or not key.strip():
            raise HarnessError(f"{option}: '{piece}' is not key=value; write e.g. {option} temperature=0.7,max_tokens=128.")
        try:
            parsed[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key.strip()] = value
    return parsed


def model_spec(spec: str | None, args: str | None, option: str) -> tuple[str, dict[str, Any]]:
    """`openai:gpt-4o` + `temperature=0.7` -> ("openai", {"model": "gpt-4o", "temperature": 0.7})."""
    kwargs = parse_kv(args, option)
    if not spec:
        raise HarnessError(f"{option} given without its model; name the model too (e.g. --{option[2:-5]} openai:gpt-4o).")
    parsed = ModelSpec.parse(spec, kwargs)
    return parsed.model, parsed.model_args


def names(text: str | None) -> list[str] | None:
    """A comma-separated list option (--metrics), None when not given."""
    return [part.strip() for part in text.split(",") if part.strip()] if text else None
