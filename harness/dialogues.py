"""Playing a dialogue task: many dialogues at once, each dialogue's turns in order.

Each dialogue runs in its own worker thread and asks its roles one request at a time through a
`RoleClient`, which gathers the requests of all dialogues waiting on the same model into batches (an
in-process model answers a batch at once; a server model gets them concurrently). Every call goes through
the response cache, so a resumed run replays the finished turns of an unfinished dialogue from the cache
and carries on at its first unanswered call: nothing is asked twice and nothing finished is lost.
"""
from __future__ import annotations

import queue
import sys
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Sequence

from . import grading, scoring, store
from .cache import CachedModel
from .contract import ChatRequest, DialogueTask, Grader, Metric, ModelOutput, Sample, SampleRecord

_STOP = object()


class RoleClient:
    """Thread-safe, blocking `ask(request)` over one model, batching the requests waiting at the moment."""

    def __init__(self, model: CachedModel):
        self.model = model
        self._queue: queue.Queue = queue.Queue()
        self._slots = threading.Semaphore(max(1, model.inner.parallel_calls))
        self._dispatcher = threading.Thread(target=self._dispatch, name=f"role-{model.name}", daemon=True)
        self._dispatcher.start()

    def ask(self, request: ChatRequest) -> ModelOutput:
        return self.ask_many([request])[0]

    def ask_many(self, requests: Sequence[ChatRequest]) -> list[ModelOutput]:
        """All at once (they batch together), answers in request order."""
        futures = []
        for request in requests:
            future: Future = Future()
            self._queue.put((request, future))
            futures.append(future)
        return [future.result() for future in futures]

    def _dispatch(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            self._slots.acquire()  # an in-process model answers one batch at a time; more wait and batch up
            batch = [first]
            while len(batch) < self.model.batch_size:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self._queue.put(_STOP)
                    break
                batch.append(item)
            threading.Thread(target=self._answer, args=(batch,), daemon=True).start()

    def _answer(self, batch: list[tuple[ChatRequest, Future]]) -> None:
        try:
            for position, output in self.model.stream([request for request, _ in batch]):
                batch[position][1].set_result(output)
        except BaseException as exc:  # the dialogues waiting on this batch fail with the model's error
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        finally:
            self._slots.release()

    def close(self) -> None:
        self._queue.put(_STOP)


def play(task: DialogueTask, clients: dict[str, RoleClient], metrics: Sequence[Metric], graders: Sequence[Grader],
         todo: list[tuple[int, Sample]], run_dir: Path, concurrency: int, progress: bool | None) -> None:
    """Play the dialogues of `todo` (at most `concurrency` at once); each finished one is graded, scored and
    written at once. On the first failure no new dialogue starts; the ones under way finish, then the error
    is raised."""
    from tqdm import tqdm

    if not todo:
        return
    show = sys.stderr.isatty() if progress is None else progress
    pending: queue.Queue = queue.Queue()
    for item in todo:
        pending.put(item)
    writer = store.SampleWriter(run_dir)
    write_lock = threading.Lock()
    failed = threading.Event()
    errors: list[BaseException] = []
    bar = tqdm(total=len(todo), desc=f"{task.name} dialogues", unit="dialogue", disable=not show)

    def worker() -> None:
        while not failed.is_set():
            try:
                index, sample = pending.get_nowait()
            except queue.Empty:
                return
            try:
                record = _play_one(task, clients, metrics, graders, index, sample)
                with write_lock:
                    writer.write([record])  # a full disk fails the run like a model error, in one line
                    bar.update(1)
            except BaseException as exc:
                errors.append(exc)
                failed.set()
                return

    # daemon threads: Ctrl-C leaves at once; what is finished is written, the rest is in the cache
    threads = [threading.Thread(target=worker, name=f"dialogue-{i}", daemon=True) for i in range(max(1, min(concurrency, len(todo))))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.2)
    except BaseException:
        failed.set()
        raise
    finally:
        with write_lock:
            writer.close()
        bar.close()
    if errors:
        raise errors[0]


def _play_one(task: DialogueTask, clients: dict[str, RoleClient], metrics: Sequence[Metric], graders: Sequence[Grader],
              index: int, sample: Sample) -> SampleRecord:
    usage: dict[str, int] = {}

    def ask(role: str, request: ChatRequest) -> ModelOutput:
        if role not in clients:
            raise KeyError(f"{task.name} asked for role '{role}'; it declares {('model',) + tuple(task.roles)}")
        output = clients[role].ask(request)
        prefix = "" if role == "model" else f"{role}_"  # the model under test's tokens keep the plain names
        for key, value in output.usage.items():
            usage[prefix + key] = usage.get(prefix + key, 0) + value
        return output

    result = task.play(sample, ask)
    last = next((t.text for t in reversed(result.turns) if t.role == "supporter"), "")
    record = SampleRecord(index=index, id=sample.id, history=list(sample.history), reference=sample.reference, labels=sample.labels,
                          output=last, response=last, usage=usage, dialogue=result.turns, outcome=result.outcome)
    graded = grading.grade_records(graders, [record], {role: client.ask_many for role, client in clients.items()})
    return scoring.with_scores(metrics, graded)[0]
