"""The run folder: run.json (RunHeader), samples.jsonl (SampleRecord per line), summary.json (Summary).

Samples are appended as they finish and flushed, so a kill loses at most the line being written; a
truncated last line is detected and cut off on resume. JSON files are replaced atomically.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence, TypeVar

from pydantic import BaseModel, ValidationError

from .contract import RunHeader, SampleRecord, Summary
from .errors import HarnessError

M = TypeVar("M", bound=BaseModel)

HEADER, SAMPLES, SUMMARY, LOCK = "run.json", "samples.jsonl", "summary.json", ".lock"


def write_json(path: Path, obj: BaseModel) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(obj.model_dump_json(indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


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
    """Records in file order, first occurrence of each id kept. A truncated final line (a kill in the
    middle of a write) is ignored, and cut from the file when `repair` is set; damage elsewhere is an error."""
    path = run_dir / SAMPLES
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # after the last "\n": empty unless the last write was cut
    records: list[SampleRecord] = []
    seen: set[str] = set()
    good_bytes = 0
    for number, line in enumerate(complete, start=1):
        try:
            record = SampleRecord.model_validate_json(line)
        except ValidationError:
            if number == len(complete) and not tail:  # last line, newline written but content cut
                break
            raise HarnessError(f"{path}:{number}: not a valid sample record; the file was edited or damaged - restore it or start a new run.") from None
        good_bytes += len(line) + 1
        if record.id not in seen:
            seen.add(record.id)
            records.append(record)
    if repair and good_bytes != len(raw):
        with open(path, "r+b") as fh:
            fh.truncate(good_bytes)
    return records


class SampleWriter:
    def __init__(self, run_dir: Path):
        self._fh = open(run_dir / SAMPLES, "a", encoding="utf-8")

    def write(self, records: Sequence[SampleRecord]) -> None:
        # one write per batch: a whole line per record, flushed so a kill -9 keeps every finished sample
        self._fh.write("".join(r.model_dump_json() + "\n" for r in records))
        self._fh.flush()

    def close(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()


def rewrite_records(run_dir: Path, records: Sequence[SampleRecord]) -> None:
    path = run_dir / SAMPLES
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".samples.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("".join(r.model_dump_json() + "\n" for r in records))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


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
