"""The life of a run: the models it opens from their specs, and its folder (created with its header,
locked while worked on, records appended, then finished or failed).

Every command that makes a run folder (`run`, `esc-eval rescore`) or opens models (`ab judge`, the
training recipes) goes through here, so a folder's status means the same everywhere:

    running   being worked on, or killed (kill -9, power loss): `--resume` carries on
    finished  complete; summary.json (or the checkpoint) is final
    failed    stopped by an error, whose one line is in `error`; `--resume` tries again
"""
from __future__ import annotations

import json
import platform
import re
import subprocess
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, Sequence, TypeVar

from pydantic import BaseModel

from . import paths, registry, store
from .cache import CachedModel, ResponseCache
from .contract import ChatModel, ModelContext, SampleRecord, Summary, Writer
from .errors import HarnessError
from .redaction import error_line

_RECORDED_PACKAGES = ("esc-harness", "nltk", "numpy", "pandas", "scikit-learn", "pydantic", "torch", "transformers", "peft", "trl",
                      "accelerate", "vllm", "openai", "xllamacpp", "bert-score")

H = TypeVar("H", bound=BaseModel)


# --------------------------------------------------------------------------- provenance


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


def git_revision_later() -> Callable[[], str | None]:
    """git_revision() started now on a thread of its own (two git processes, 10-50 ms) for a caller with other
    work meanwhile; calling the result waits for it."""
    found: list[str | None] = []
    thread = threading.Thread(target=lambda: found.append(git_revision()), name="harness-git-revision", daemon=True)
    thread.start()

    def result() -> str | None:
        thread.join()
        return found[0] if found else None

    return result


def package_versions() -> dict[str, str]:
    return dict(_package_versions())


@lru_cache(maxsize=1)
def _package_versions() -> tuple[tuple[str, str], ...]:
    # read once per process (~30 ms; a run asks twice: run.json and the score cache's key): what a process
    # imported does not change while it runs
    found = {"python": platform.python_version()}
    for name in _RECORDED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return tuple(found.items())


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSpec:
    """A model as the command line names it: an adapter and its arguments (`openai:gpt-4o` is
    adapter `openai` with model=gpt-4o)."""

    model: str
    model_args: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str, args: dict[str, Any] | None = None) -> "ModelSpec":
        name, sep, model = spec.partition(":")
        kwargs = dict(args or {})
        if sep and model:
            kwargs.setdefault("model", model)
        return cls(name, kwargs)

    def key(self) -> str:
        return json.dumps([self.model, self.model_args], sort_keys=True, default=str)


def open_cache(cache_path: Path | None, use_cache: bool) -> ResponseCache | None:
    return ResponseCache(paths.cache_path(cache_path)) if use_cache else None


def open_models(specs: dict[str, ModelSpec], cache: ResponseCache | None, context: ModelContext | None = None,
                option: dict[str, str] | None = None) -> dict[str, CachedModel]:
    """One adapter per distinct spec, behind the response cache: roles played by the same model share it
    (one server, one GPU copy). `option` names the command-line option of each role for error lines.
    On failure whatever was opened is closed again (the cache too)."""
    opened: dict[str, CachedModel] = {}
    by_role: dict[str, CachedModel] = {}
    try:
        for role, spec in specs.items():
            if spec.key() not in opened:
                adapter = registry.models.get(spec.model)
                try:
                    inner: ChatModel = adapter(context, **spec.model_args)
                except TypeError as exc:
                    where = (option or {}).get(role) or ("--model-args" if role == "model" else f"--role-args {role}=...")
                    raise HarnessError(f"model '{spec.model}' ({role}): bad {where} ({exc}).") from None
                opened[spec.key()] = CachedModel(inner, cache)
            by_role[role] = opened[spec.key()]
    except BaseException:
        for model in opened.values():
            model.close()
        if cache is not None:
            cache.close()
        raise
    return by_role


def unique_models(models: dict[str, CachedModel]) -> list[CachedModel]:
    return list({id(m): m for m in models.values()}.values())


def close_models(models: dict[str, CachedModel]) -> None:
    """Every adapter, then every cache they use (once each)."""
    caches: list[ResponseCache] = []
    try:
        for model in unique_models(models):
            try:
                model.close()
            finally:
                if model.cache is not None and all(model.cache is not c for c in caches):
                    caches.append(model.cache)
    finally:
        for cache in caches:
            cache.close()


# --------------------------------------------------------------------------- folders


def new_folder(parent: Path, slug: str) -> Path:
    """`<parent>/<UTC stamp>-<slug>-<random>`, created (never an existing one)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "-", slug)
    folder = Path(parent) / f"{stamp}-{clean}-{uuid.uuid4().hex[:6]}"
    try:
        folder.mkdir(parents=True)
    except OSError as exc:  # a file where a folder should be, no permission, a read-only or full disk
        why = exc.strerror or str(exc)
        if isinstance(exc, (NotADirectoryError, FileExistsError)):
            why += ": a file stands where a folder should be"
        raise HarnessError(f"--output-dir {parent}: cannot make a folder there ({why}); give --output-dir a folder you can write to.") from None
    return folder


_WORKING: list["Folder"] = []  # folders whose `working` block runs, or was left by an interrupt (Ctrl-C)


def working_folder(kind: type | None = None) -> "Folder | None":
    """The folder being worked on, or the one an interrupt (Ctrl-C) left: what the CLI's interrupt line names
    (`kind`: the innermost folder of that class, e.g. the suite around a run)."""
    found = [f for f in _WORKING if kind is None or isinstance(f, kind)]
    return found[-1] if found else None


class Folder(Generic[H]):
    """A folder whose header file (a pydantic model with status, error, finished_at) tells its state."""

    def __init__(self, path: Path, header_name: str, header: H):
        self.path, self.header_name, self.header = Path(path), header_name, header

    def write_header(self, **update: Any) -> H:
        if update:
            self.header = self.header.model_copy(update=update)
        store.write_json(self.path / self.header_name, self.header)
        return self.header

    @contextmanager
    def working(self, secrets: Sequence[str] = ()) -> Iterator["Folder[H]"]:
        """Locked while the block runs and marked running; an exception marks it failed with its one line
        (and is raised again). An interrupt (Ctrl-C) or a kill leaves it running, to be resumed."""
        with store.locked(self.path):
            if getattr(self.header, "status", None) != "running" or getattr(self.header, "error", None):
                self.write_header(status="running", error=None, finished_at=None)
            _WORKING.append(self)
            interrupted = False
            try:
                yield self
            except Exception as exc:
                try:
                    self.write_header(status="failed", error=error_line(exc, secrets))
                except OSError:  # (a full disk) it stays running, to be resumed; the error to tell is the first one
                    pass
                raise
            except KeyboardInterrupt:  # Ctrl-C: it stays running, and the CLI names it (`working_folder`)
                interrupted = True
                raise
            finally:
                if not interrupted:
                    _WORKING.remove(self)

    def finish(self, **update: Any) -> H:
        return self.write_header(**update, status="finished", error=None, finished_at=now())


class RunFolder(Folder):
    """A run folder: run.json, samples.jsonl (appended as samples finish), summary.json."""

    def __init__(self, path: Path, header):
        super().__init__(path, store.HEADER, header)

    @classmethod
    def create(cls, parent: Path, slug: str, header) -> "RunFolder":
        """A new folder under `parent`, its run.json written with `run_id` = the folder's name and the
        header's process as the first of its writers."""
        path = new_folder(parent, slug)
        first = Writer(started_at=header.started_at, git_revision=header.git_revision, packages=header.packages)
        folder = cls(path, header.model_copy(update={"run_id": path.name, "writers": [first]}))
        folder.write_header()
        return folder

    def add_writer(self, changed: dict[str, dict[str, Any]]) -> None:
        """This process, resuming the run with `changed` arguments (redacted), at the end of the writers."""
        writer = Writer(started_at=now(), git_revision=git_revision(), packages=package_versions(), changed=changed)
        self.write_header(writers=[*self.header.writers, writer])

    @classmethod
    def open(cls, path: Path) -> "RunFolder":
        return cls(path, store.read_header(path))

    def records(self, repair: bool = False) -> list[SampleRecord]:
        return store.read_records(self.path, repair=repair)

    def writer(self) -> store.SampleWriter:
        return store.SampleWriter(self.path)

    def finish_with(self, summary: Summary, **update: Any):
        store.write_json(self.path / store.SUMMARY, summary)
        return self.finish(**update)
