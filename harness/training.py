"""What the engine gives a training recipe: a checkpoint folder with its training record (train.json),
the provenance of its data, and the same lifecycle as a run folder.

A recipe is a click command registered under the `esc_harness.train` entry points; `harness train NAME`
runs it. It calls `start(...)` with its full configuration, works inside `folder.working()` (a crash
marks the folder failed with its one-line error; a kill leaves it running), writes its weights into
`folder.path` (a peft adapter, or full weights) and calls `folder.finish()`. The finished folder is a
model: `harness run --model hf --model-args model=DIR` loads the base the record names plus these
weights, and evaluates it with the task options the record suggests (`evaluate`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Sequence

from . import store
from .contract import DataSource, TrainRecord
from .errors import HarnessError
from .hashing import sha256_of
from .lifecycle import Folder, git_revision, new_folder, now, package_versions

TRAIN_RECORD = "train.json"


class TrainFolder(Folder):
    """A checkpoint folder and its train.json."""

    def __init__(self, path: Path, record: TrainRecord):
        super().__init__(path, TRAIN_RECORD, record)

    @classmethod
    def open(cls, path: Path) -> "TrainFolder":
        return cls(path, read_record(path))


def read_record(folder: Path) -> TrainRecord:
    return store.read_model(Path(folder) / TRAIN_RECORD, TrainRecord, f"not found; is {folder} a checkpoint folder written by `harness train`?",
                            f"not a valid {TRAIN_RECORD}")


def start(recipe: str, output_dir: Path, config: dict[str, Any], base_model: dict[str, Any], weights: Literal["peft", "full"],
          data: Sequence[DataSource] = (), reward: dict[str, Any] | None = None, evaluate: dict[str, Any] | None = None) -> TrainFolder:
    """A new checkpoint folder under `output_dir`, its train.json written (status running)."""
    path = new_folder(output_dir, f"{recipe}-{Path(str(base_model.get('model', 'model'))).name}")
    record = TrainRecord(recipe=recipe, train_id=path.name, config=config, base_model=base_model, weights=weights, data=list(data),
                         reward=reward, evaluate=evaluate or {}, git_revision=git_revision(), packages=package_versions(), started_at=now())
    folder = TrainFolder(path, record)
    folder.write_header()
    return folder


def run_source(run_dir: Path, **detail: Any) -> DataSource:
    """A finished run folder as training data: its run id, task, model and split."""
    header = store.read_header(Path(run_dir))
    if header.status == "finished":
        header, _ = store.read_run(Path(run_dir))  # its records must be the samples it names
    if header.status != "finished":
        raise HarnessError(f"{run_dir}: the run is {header.status}; train only on finished runs (finish it with `harness run --resume {run_dir}`).")
    return DataSource(kind="run", name=header.run_id, detail={"task": header.task, "model": header.model, "split": header.split,
                                                              "n_samples": header.n_samples, **detail})


def file_source(path: Path, **detail: Any) -> DataSource:
    """A data file as training data: its path as given and its sha256."""
    file = Path(path)
    if not file.is_file():
        raise HarnessError(f"{file}: no such data file.")
    return DataSource(kind="file", name=str(path), sha256=sha256_of(file), detail=detail)


def suggested_task_args(model_args: dict[str, Any], task: str) -> tuple[dict[str, Any], Path] | None:
    """The task options a checkpoint's train.json asks to be evaluated with (`evaluate.task_args`, e.g. FIRES's
    prompt=fires), when `model_args["model"]` is a checkpoint folder trained for `task`; else None."""
    model = model_args.get("model")
    folder = Path(str(model)).expanduser() if model else None
    if folder is None or not (folder / TRAIN_RECORD).is_file():
        return None
    evaluate = read_record(folder).evaluate
    if evaluate.get("task") != task or not isinstance(evaluate.get("task_args"), dict):
        return None
    return dict(evaluate["task_args"]), folder / TRAIN_RECORD
