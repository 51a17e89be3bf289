"""The run folder: run.json (RunHeader), samples.jsonl (SampleRecord per line), summary.json (Summary).

Samples are appended as they finish and flushed, so a kill loses at most the line being written; a
truncated last line is detected and cut off on resume. JSON files are replaced atomically.

One file mode for everything the harness writes into a run folder (run.json, summary.json, samples.jsonl,
its rewrite, the lock): 0o666 & ~umask, what a plain `open` makes (0644 under umask 022, 0600 under 077),
so a replaced file never ends up stricter or looser than an appended one. calls.sqlite is sqlite's own.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence, TypeVar

from pydantic import BaseModel, ValidationError

from .contract import RunHeader, SampleRecord, Summary
from .errors import HarnessError

M = TypeVar("M", bound=BaseModel)

HEADER, SAMPLES, SUMMARY, LOCK = "run.json", "samples.jsonl", "summary.json", ".lock"


def _replace_with(path: Path, text: str) -> None:
    """Write `text` to a new temporary file beside `path` and move it over `path` (atomic). The temporary
    file is made like `open` makes a file (0o666 & ~umask, not mkstemp's 0600): the module's one mode."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            break
        except FileExistsError:  # (a name already taken: draw another)
            continue
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: BaseModel) -> None:
    _replace_with(Path(path), obj.model_dump_json(indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    """The whole file at once: written beside it, synced, then moved over it (never half-written)."""
    _replace_with(Path(path), text)


def read_model(path: Path, model: type[M], missing: str, invalid: str, advice: str = "") -> M:
    """A JSON file of a pydantic model, or one error line: `{path}: {missing}` when there is no file,
    `{path}: {invalid} ({field}: {problem}){advice}` when it does not validate."""
    try:
        return model.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"{path}: {missing}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise HarnessError(f"{path}: {invalid} ({'.'.join(map(str, first['loc']))}: {first['msg']}){advice}.") from None


def _read_model(path: Path, model: type[M]) -> M:
    return read_model(path, model, f"not found; is {path.parent} a run folder written by `harness run`?", f"not a valid {path.name}")


def read_header(run_dir: Path) -> RunHeader:
    return _read_model(run_dir / HEADER, RunHeader)


def read_summary(run_dir: Path) -> Summary:
    return _read_model(run_dir / SUMMARY, Summary)


def read_records(run_dir: Path, repair: bool = False) -> list[SampleRecord]:
    """Records in file order. A truncated final line (a kill in the middle of a write) is ignored, and cut
    from the file when `repair` is set; damage elsewhere is an error, and so are two lines of one sample
    (the runner never writes a sample twice: which line is the right one cannot be told)."""
    path = run_dir / SAMPLES
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # after the last "\n": empty unless the last write was cut
    records: list[SampleRecord] = []
    seen: dict[str, int] = {}  # id -> line number
    good_bytes = 0
    for number, line in enumerate(complete, start=1):
        try:
            record = SampleRecord.model_validate_json(line)
        except ValidationError:
            if number == len(complete) and not tail:  # last line, newline written but content cut
                break
            raise HarnessError(f"{path}:{number}: not a valid sample record; the file was edited or damaged - restore it or start a new run.") from None
        if record.id in seen:
            raise HarnessError(f"{path}:{seen[record.id]} and :{number} hold sample '{record.id}' twice; the file was edited or "
                               "merged - restore it (or delete the wrong line) or start a new run.")
        seen[record.id] = number
        good_bytes += len(line) + 1
        records.append(record)
    if repair and good_bytes != len(raw):
        with open(path, "r+b") as fh:
            fh.truncate(good_bytes)
    return records


def samples_digest(task: str, split: str, ids: Sequence[str]) -> str:
    """sha256 (hex) of the canonical JSON of [task, split, ids]: what run.json's `samples_digest` holds, the
    ids in split order."""
    canonical = json.dumps([task, split, list(ids)], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def check_records(run_dir: Path, header: RunHeader, records: Sequence[SampleRecord]) -> None:
    """A finished folder's records must be the samples its header names (`samples_digest` over task, split
    and the ids in index order, and `n_samples` of them), else one error line naming run.json. Folders
    written before the digest existed (None) pass; so do running ones (the runner checks their ids against
    the task when it resumes them)."""
    if header.samples_digest is None or header.status != "finished":
        return
    ids = [r.id for r in sorted(records, key=lambda r: r.index)]
    where = f"{run_dir / HEADER}"
    if samples_digest(header.task, header.split, ids) != header.samples_digest:
        raise HarnessError(f"{where}: its task/split ({header.task}/{header.split}) does not match the records in {SAMPLES} "
                           "(edited or from another run); restore the folder or re-run.")
    if len(records) != header.n_samples:
        raise HarnessError(f"{where}: says {header.n_samples} samples but {SAMPLES} holds {len(records)} (edited or from another run); "
                           "restore the folder or re-run.")


def read_run(run_dir: Path) -> tuple[RunHeader, list[SampleRecord]]:
    """run.json and samples.jsonl, checked against each other (`check_records`): what every reader of a
    run folder uses."""
    header = read_header(run_dir)
    records = read_records(run_dir)
    check_records(run_dir, header, records)
    return header, records


class SampleWriter:
    """Appends whole lines to samples.jsonl. A failed write (a full disk) is one HarnessError naming the
    file; what it left of its batch is cut off again (a torn line is also cut by `read_records(repair=True)`),
    and the writer refuses further batches, so a resume carries on from whole records."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / SAMPLES
        # unbuffered: each batch goes to the file at once, and a failed one leaves nothing queued to be flushed later
        self._fh = open(self.path, "ab", buffering=0)  # (created 0o666 & ~umask, like _replace_with's)
        self._error: HarnessError | None = None

    def write(self, records: Sequence[SampleRecord]) -> None:
        # one write per batch: a whole line per record, on disk (not in a buffer) so a kill -9 keeps every finished sample
        if self._error is not None:
            raise self._error
        data = memoryview("".join(r.model_dump_json() + "\n" for r in records).encode("utf-8"))
        start = None
        try:
            start = os.fstat(self._fh.fileno()).st_size
            while data:
                written = self._fh.write(data)
                if not written:  # (nothing taken: no room)
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                data = data[written:]
        except OSError as exc:
            self._error = self._failure(exc)
            if start is not None:
                try:
                    os.ftruncate(self._fh.fileno(), start)  # (a truncation frees space: it works on a full disk)
                except OSError:
                    pass
        if self._error is not None:
            raise self._error

    def _failure(self, exc: OSError) -> HarnessError:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        return HarnessError(f"{self.path}: cannot write the finished samples ({exc.strerror or exc}); the samples written before are kept - "
                            f"{'free some disk space' if full else 'check the disk'}, then resume with `harness run --resume {self.path.parent}`.")

    def close(self) -> None:
        try:
            if self._error is None:
                try:
                    os.fsync(self._fh.fileno())
                except OSError as exc:
                    self._error = self._failure(exc)
                    raise self._error from None
        finally:
            self._fh.close()


def rewrite_records(run_dir: Path, records: Sequence[SampleRecord]) -> None:
    _replace_with(Path(run_dir) / SAMPLES, "".join(r.model_dump_json() + "\n" for r in records))


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """One process at a time per run folder."""
    with open(run_dir / LOCK, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HarnessError(f"{run_dir}: another harness process is working on this run; wait for it to finish.") from None
        yield


def find_runs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob(f"**/{HEADER}"))
