"""Locating, verifying and fetching dataset files (the task declares them; this module knows no task)."""
from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from .contract import Dataset, DataFile
from .errors import DataError
from .hashing import sha256_memo, sha256_of  # (baselines import sha256_of from here too)

ALLOW_MODIFIED_ENV = "ESC_HARNESS_ALLOW_MODIFIED_DATA"


def _how_to_get(dataset: Dataset, task_name: str) -> str:
    return (
        f"get it with `harness data fetch {task_name}`, or point --data-dir / $ESC_HARNESS_DATA "
        f"at a folder holding {dataset.folder}/ ({dataset.source})"
    )


def resolve(dataset: Dataset, task_name: str, root: Path, allow_modified: bool | None = None) -> tuple[Path, dict[str, str]]:
    """The dataset folder under `root`, after checking every file against its pinned sha256.

    Returns the folder and {file: sha256}. A modified file is an error unless explicitly allowed
    (then its real hash is recorded in the run, so nobody mistakes it for the published data).
    """
    if allow_modified is None:
        allow_modified = os.environ.get(ALLOW_MODIFIED_ENV, "") not in ("", "0")
    folder = root / dataset.folder
    hashes: dict[str, str] = {}
    for f in dataset.files:
        path = folder / f.name
        if not path.is_file():
            raise DataError(f"{path}: missing dataset file; {_how_to_get(dataset, task_name)}.")
        actual = sha256_memo(path)  # (a process running several tasks or runs over the same files hashes them once)
        if actual != f.sha256 and not allow_modified:
            raise DataError(
                f"{path}: content differs from the published file (sha256 {actual[:12]}..., expected "
                f"{f.sha256[:12]}...); re-fetch it with `harness data fetch {task_name} --force`, or set "
                f"{ALLOW_MODIFIED_ENV}=1 to evaluate on modified data on purpose."
            )
        hashes[f.name] = actual
    return folder, hashes


def read_text(path: str | Path, advice: str, newlines: bool = True) -> str:
    """A UTF-8 text file's content, or one DataError naming the file, the line and the byte offset where it
    stops being UTF-8 (a file saved as UTF-16 or Latin-1), then `advice` (what to do, e.g. re-fetch it).

    Newlines are translated as text mode does (\r\n and \r become \n); `newlines=False` keeps them as
    they are, for csv (read it with `io.StringIO(text, newline="")`, as `open(..., newline="")` would).
    A missing file raises FileNotFoundError as `open` does (callers say what a missing file means); any
    other failure to read is a DataError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc}); {advice}.") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        looks = " (it looks like UTF-16)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}){looks}; {advice}.") from None
    return text.replace("\r\n", "\n").replace("\r", "\n") if newlines else text


def fetch(dataset: Dataset, root: Path, force: bool = False) -> list[Path]:
    """Download each file from its source URL, check its sha256, then move it into place atomically."""
    folder = root / dataset.folder
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for f in dataset.files:
        target = folder / f.name
        if target.is_file() and not force and sha256_of(target) == f.sha256:
            continue
        written.append(_download(f, target))
    return written


def _download(f: DataFile, target: Path) -> Path:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(f.url, timeout=60) as resp:
                    shutil.copyfileobj(resp, out)
            except OSError as exc:
                raise DataError(f"{f.name}: download from {f.url} failed ({exc}); check the network or copy the file by hand into {target.parent}.") from None
        actual = sha256_of(Path(tmp))
        if actual != f.sha256:
            raise DataError(f"{f.name}: downloaded file from {f.url} has sha256 {actual[:12]}..., expected {f.sha256[:12]}...; the source changed or the download was corrupted, nothing was written.")
        os.replace(tmp, target)
        return target
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
