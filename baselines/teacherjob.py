"""The resumable teacher job: what the recipes that ask a teacher model for one row per instance share
(`harness train fires-synth`, `compeer-data`), and the teacher and folder checks `compeer-rewrite` uses.

A job's folder holds a manifest (a pydantic header with status running / finished / failed, `teacher`,
`prompt_sha256`, `config`, `data` and `dropped`; `harness.lifecycle.Folder` keeps it) and a JSONL file of
rows (a pydantic model with a string key, `id` by default). The parts, parameterised by a `Kind` (the
recipe's name, its file names, its manifest reader and its `parse_row(line, path, number, fix)`):

- the folder: `--out` must be new, empty, or a folder of this kind (`Kind.recorded`); a folder made by
  another teacher, prompt (digest), dataset or setting is refused with one line (`Kind.check_same`; the
  cache options and where a model is served, `IDENTITY_FREE`, may change);
- the rows on disk (`Kind.read_existing_rows`): a last line without its newline (a kill mid-write) is left
  out and cut off before the next row is appended; any other line that is not a row is one error naming
  file:line; a key twice is one error naming both lines; a row that is not an instance of this job is one
  error (`Kind.check_rows`);
- the writer (`RowWriter`): one row per line, appended and fsync'ed before the next instance counts as done;
- the teacher (`open_teacher`): opened through the response cache (`harness.lifecycle.open_models`), recorded
  without secrets (`teacher_record`: model, redacted arguments, redacted cache identity);
- the retries (`retry_generation`): attempt 0 with the request's own generation settings, attempt k at
  temperature 0.7 with seed k, so that every retry has its own cache key;
- the loop (`fill`): the instances not yet settled (neither a row on disk nor a listed drop) are asked a
  batch at a time (the teacher's batch size, at most 64); a broken answer (`Broken`) is asked again up to
  `retries` times, then the instance is dropped and listed in the manifest (`{"id", "reason", "attempts",
  ...}`); rows are written in instance order as soon as they and those before them are settled.

A kill -9 and the same command again: the rows on disk are not asked again, and the answers of the instances
that were in flight come from the cache, so no request is sent to the teacher twice.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, Sequence, TypeVar

from pydantic import BaseModel

from harness import store
from harness.cache import CachedModel
from harness.contract import ChatRequest, GenerationConfig, ModelOutput
from harness.errors import HarnessError
from harness.lifecycle import Folder, ModelSpec, close_models, open_cache, open_models
from harness.redaction import redact
from harness.runner import IDENTITY_FREE

R = TypeVar("R", bound=BaseModel)
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

RETRY_TEMPERATURE = 0.7
MAX_CHUNK = 64  # instances asked at once, at most (the teacher's batch size if smaller)
RESUME_FIX = "fix or delete the line (its instance is asked again), or start over in another --out"


# --------------------------------------------------------------------------- the teacher


def teacher_record(spec: ModelSpec, model: CachedModel) -> dict[str, Any]:
    """What a manifest records of its teacher: the adapter, its arguments and its cache identity, redacted."""
    return {"model": spec.model, "args": redact(spec.model_args), "identity": redact(model.cache_identity())}


@contextmanager
def open_teacher(teacher: str, teacher_args: dict[str, Any] | None, cache_path: Path | None = None,
                 use_cache: bool = True) -> Iterator[tuple[ModelSpec, CachedModel]]:
    """(the teacher's spec, the teacher behind the response cache); the model and the cache closed on exit."""
    spec = ModelSpec.parse(teacher, teacher_args)
    models = open_models({"teacher": spec}, open_cache(cache_path, use_cache), None, {"teacher": "--teacher-args"})
    try:
        yield spec, models["teacher"]
    finally:
        close_models(models)


def retry_generation(first: GenerationConfig, attempt: int) -> GenerationConfig:
    """Attempt 0: `first` (the request's own settings); attempt k: at RETRY_TEMPERATURE with seed k."""
    if attempt == 0:
        return first
    return first.model_copy(update={"temperature": RETRY_TEMPERATURE, "seed": attempt})


def retry_request(request: ChatRequest, attempt: int) -> ChatRequest:
    """`request` as asked at `attempt` (see `retry_generation`)."""
    if attempt == 0:
        return request
    return request.model_copy(update={"generation": retry_generation(request.generation, attempt)})


def generation_record(first: GenerationConfig) -> dict[str, Any]:
    """How the attempts are asked, for a manifest's config."""
    return {"first": first.model_dump(), "retry": {**retry_generation(first, 1).model_dump(), "seed": "the attempt number"}}


def requests_line(calls: int, hits: int) -> str:
    return f"teacher requests this time: {calls + hits} ({hits} from the cache, {calls} asked)"


# --------------------------------------------------------------------------- the folder


@dataclass(frozen=True)
class Kind(Generic[R, M]):
    """A kind of job folder: `recipe` names it in messages ("a fires-synth dataset"), `data_noun` its input
    files ("MESC files"), `job` the work in "the N instances of this <job>"."""

    recipe: str
    manifest: str
    rows: str
    read_manifest: Callable[[Path], M]
    parse_row: Callable[[Any, Path, int, str], R]
    data_noun: str
    job: str = "synthesis"
    key: Callable[[Any], str] = field(default=attrgetter("id"))

    @property
    def dataset(self) -> str:
        return f"a {self.recipe} dataset"

    def recorded(self, out: Path) -> M | None:
        """The manifest of a folder to resume, None for a new or empty one; anything else is one line."""
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise HarnessError(f"--out {out} is a file; give a folder (new, empty, or {self.dataset} to resume).")
        if out.is_dir():
            if (out / self.manifest).exists():
                return self.read_manifest(out)
            if any(p.name != store.LOCK for p in out.iterdir()):
                raise HarnessError(f"--out {out} is a folder that is not {self.dataset} (no {self.manifest}); give a new or empty folder.")
        return None

    def check_same(self, out: Path, recorded: M, given: M) -> None:
        """A folder is resumed only by the command that made it (the cache options aside): the same teacher,
        data, prompt and settings."""
        where = f"--out {out} holds {self.dataset} made with"
        advice = "run the command that made it, or give another --out."
        strip = lambda teacher: {k: v for k, v in (teacher or {}).get("identity", {}).items() if k not in IDENTITY_FREE}
        was_teacher, now_teacher = recorded.teacher or {}, given.teacher or {}
        was, now_is = strip(was_teacher), strip(now_teacher)
        if was_teacher.get("model") != now_teacher.get("model"):
            raise HarnessError(f"{where} another teacher ('{was_teacher.get('model')}', not '{now_teacher.get('model')}'); {advice}")
        if was != now_is:
            fields = ", ".join(sorted(k for k in set(was) | set(now_is) if was.get(k) != now_is.get(k)))
            raise HarnessError(f"{where} another teacher ('{was_teacher.get('model')}' with other {fields}); {advice}")
        if recorded.data != given.data:
            raise HarnessError(f"{where} other {self.data_noun} (sha256 differ); resume it with the same data, or give another --out.")
        if recorded.prompt_sha256 != given.prompt_sha256:
            raise HarnessError(f"{where} another prompt (prompt_sha256 {recorded.prompt_sha256[:12]}..., now {given.prompt_sha256[:12]}...: "
                               f"the instructions or demonstrations changed); give another --out.")
        for key in sorted(set(recorded.config) | set(given.config)):
            if recorded.config.get(key) != given.config.get(key):
                raise HarnessError(f"{where} {key} = {json.dumps(recorded.config.get(key))}, not {json.dumps(given.config.get(key))}; {advice}")

    def read_existing_rows(self, path: Path) -> tuple[list[R], int]:
        """The rows of a rows file being resumed, and the bytes they take: a last line without its newline (a
        kill mid-write) is left out (the writer cuts it off); any other line that is not a row is one error."""
        if not path.is_file():
            return [], 0
        raw = path.read_bytes()
        lines = raw.split(b"\n")
        complete = lines[:-1]  # the part after the last newline is a torn write, if anything
        rows: list[R] = []
        seen: dict[str, int] = {}
        for number, line in enumerate(complete, 1):
            if not line.strip():
                continue
            row = self.parse_row(line, path, number, RESUME_FIX)
            key = self.key(row)
            if key in seen:
                raise HarnessError(f"{path}:{seen[key]} and :{number} both hold {key}; delete one of the lines and run again.")
            seen[key] = number
            rows.append(row)
        good = len(raw) - len(lines[-1])
        return rows, good

    def check_rows(self, path: Path, keys: Sequence[str]) -> tuple[list[R], int]:
        """The rows on disk (`read_existing_rows`), each one of the job's instances (`keys`)."""
        existing, good_bytes = self.read_existing_rows(path)
        wanted = set(keys)
        strangers = [self.key(r) for r in existing if self.key(r) not in wanted]
        if strangers:
            raise HarnessError(f"{path}: holds {strangers[0]}, which is not one of the {len(keys)} instances of this {self.job}; "
                               "restore the file or give another --out.")
        return existing, good_bytes


def make_folder(out: Path) -> None:
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"--out {out}: cannot make the folder ({exc.strerror or exc}); give a folder you can write to.") from None


class RowWriter:
    """Appends one row per line to a rows file, each on disk (fsync) before the next instance is counted done."""

    def __init__(self, path: Path, keep_bytes: int):
        self.path = path
        self._fh = open(path, "ab", buffering=0)
        if os.fstat(self._fh.fileno()).st_size != keep_bytes:
            os.ftruncate(self._fh.fileno(), keep_bytes)  # a torn last line, from a kill mid-write

    def write(self, row: BaseModel) -> None:
        left = memoryview((row.model_dump_json() + "\n").encode("utf-8"))
        try:
            while left:
                written = self._fh.write(left)
                if not written:
                    raise OSError(28, "No space left on device")
                left = left[written:]
            os.fsync(self._fh.fileno())
        except OSError as exc:
            raise HarnessError(f"{self.path}: cannot write a row ({exc.strerror or exc}); the rows before it are kept - "
                               "fix the disk and run the same command again (it resumes).") from None

    def close(self) -> None:
        self._fh.close()


# --------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class Broken:
    """An answer that cannot make a row: why (one line), and what else the drop entry records."""

    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


Counts = Callable[[dict[str, Any], list[dict[str, Any]]], dict[str, Any]]


def fill(dataset: Folder, path: Path, model: CachedModel, items: Sequence[T], key: Callable[[T], str],
         existing: Sequence[R], good_bytes: int, build: Callable[[T, int], ChatRequest],
         read: Callable[[T, ModelOutput, int], R | Broken], retries: int, counts: Counts,
         row_key: Callable[[R], str] = attrgetter("id")) -> list[R]:
    """Asks about every instance of `items` not yet settled and returns all the rows, in instance order.

    `existing` / `good_bytes`: the rows on disk and the bytes they take (`Kind.check_rows`, read while the
    folder is locked); `build(item, attempt)`: the request of an attempt; `read(item, output, attempt)`: a row
    or `Broken`; `counts(rows by key, dropped in instance order)`: the manifest fields to write (after every
    batch and every drop). The drops of the manifest are kept for the instances still in `items`."""
    order = {key(s): i for i, s in enumerate(items)}
    rows: dict[str, R] = {row_key(r): r for r in existing}
    dropped: list[dict[str, Any]] = [d for d in dataset.header.dropped if d.get("id") in order and d.get("id") not in rows]

    def write_counts() -> None:
        dataset.write_header(**counts(rows, sorted(dropped, key=lambda d: order[d["id"]])))

    write_counts()
    done = set(rows) | {d["id"] for d in dropped}
    todo = [s for s in items if key(s) not in done]
    writer = RowWriter(path, good_bytes)
    try:
        chunk = max(1, min(model.batch_size, MAX_CHUNK))
        for start in range(0, len(todo), chunk):
            _chunk(todo[start:start + chunk], model, key, build, read, retries, writer, rows, dropped, write_counts, row_key)
            write_counts()
    finally:
        writer.close()
    kept = sorted(rows.values(), key=lambda r: order[row_key(r)])
    write_counts()
    return kept


def _chunk(part: Sequence[T], model: CachedModel, key: Callable[[T], str], build: Callable[[T, int], ChatRequest],
           read: Callable[[T, ModelOutput, int], Any], retries: int, writer: RowWriter, rows: dict[str, Any],
           dropped: list[dict[str, Any]], write_counts: Callable[[], None], row_key: Callable[[Any], str]) -> None:
    """Asks about a few instances at once (the teacher's batch), retries the broken answers, and writes each
    instance's row (or its drop) in instance order as soon as it and those before it are settled."""
    settled: list[tuple[str, Any] | None] = [None] * len(part)
    written = 0

    def commit() -> None:
        nonlocal written
        while written < len(part) and settled[written] is not None:
            what, item = settled[written]  # type: ignore[misc]
            if what == "row":
                writer.write(item)
                rows[row_key(item)] = item
            else:
                dropped.append(item)
                write_counts()
            written += 1

    pending = list(range(len(part)))
    for attempt in range(retries + 1):
        if not pending:
            break
        requests = [build(part[i], attempt) for i in pending]
        broken: list[int] = []
        for position, output in model.stream(requests):
            i = pending[position]
            result = read(part[i], output, attempt)
            if not isinstance(result, Broken):
                settled[i] = ("row", result)
            elif attempt == retries:
                settled[i] = ("drop", {"id": key(part[i]), "reason": result.reason, "attempts": attempt + 1, **result.detail})
            else:
                broken.append(i)
            commit()
        pending = sorted(broken)
    commit()
