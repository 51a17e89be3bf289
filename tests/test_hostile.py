"""Hostile inputs (issue 11, "No traceback, ever"): a damaged response cache, a server answering garbage,
bad scripted-model arguments, an output folder that cannot be made, data files in another encoding, an
internal error. Each row runs the real CLI in a subprocess (so a traceback would be seen) and must end
with exit status 2 and one line `error: ...` naming the file or option (warning lines may come before
it), leaving no run folder half-written (status running with no sample). A full disk mid-run, Ctrl-C
and ESC_HARNESS_DEBUG are checked below the table.
"""
from __future__ import annotations

import errno
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import pytest
from conftest import default_sigint

import engine_fixtures as fx
from harness import registry, store
from harness.cache import ResponseCache
from harness.errors import HarnessError
from harness.runner import RunConfig, run

fx.register()

TESTS = Path(__file__).resolve().parent
# the real CLI, with the in-memory engine task registered first (no dataset, no NLTK: ~1 s a run)
ENGINE_CLI = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(TESTS)!r}); import engine_fixtures; engine_fixtures.register(); "
                                    "from harness.cli import main; main(prog_name='harness')"]
REAL_CLI = [sys.executable, "-m", "harness.cli"]
KEY = "sk-hostile-0123456789abcdefXYZ"  # looks like an OpenAI key: never printed


@dataclass
class Case:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cli: list[str] = field(default_factory=lambda: ENGINE_CLI)


def engine(tmp: Path, *extra: str, model_args: str = "echo=true", model: str = "scripted") -> list[str]:
    return ["run", "--task", fx.TASK, "--model", model, "--model-args", model_args, "--metrics", fx.LENGTH, "--resamples", "0",
            "--output-dir", str(tmp / "runs"), "--cache", str(tmp / "cache.sqlite"), *extra]


# --------------------------------------------------------------------------- the response cache


def cache_garbage(tmp: Path, stack: ExitStack) -> Case:
    (tmp / "cache.sqlite").write_bytes(random.Random(11).randbytes(8192))
    return Case(engine(tmp))


def cache_truncated(tmp: Path, stack: ExitStack) -> Case:
    cache = ResponseCache(tmp / "cache.sqlite")
    cache.put_many([(f"key{i}", {"text": "x" * 200, "usage": {}}) for i in range(300)])
    cache.close()
    os.truncate(tmp / "cache.sqlite", 20000)  # cut mid-file, as a copy that stopped short
    return Case(engine(tmp))


def _seeded_cache(tmp: Path, value: str) -> None:
    """The cache after one real run, every stored answer then replaced by `value`."""
    run(RunConfig(task=fx.TASK, model="scripted", model_args={"echo": "true"}, metrics=[fx.LENGTH], resamples=0,
                  output_dir=tmp / "seed-runs", cache_path=tmp / "cache.sqlite"))
    with sqlite3.connect(tmp / "cache.sqlite") as db:
        db.execute("UPDATE responses SET value = ?", (value,))
    db.close()


def cache_row_not_json(tmp: Path, stack: ExitStack) -> Case:
    _seeded_cache(tmp, "{'text': not json")
    return Case(engine(tmp))


def cache_row_not_an_answer(tmp: Path, stack: ExitStack) -> Case:
    _seeded_cache(tmp, "[1, 2]")
    return Case(engine(tmp))


def cache_locked(tmp: Path, stack: ExitStack) -> Case:
    holder = sqlite3.connect(tmp / "cache.sqlite", isolation_level=None)  # another process's exclusive lock
    holder.execute("CREATE TABLE other (x)")
    holder.execute("BEGIN EXCLUSIVE")
    stack.callback(holder.close)
    return Case(engine(tmp))


def cache_is_a_folder(tmp: Path, stack: ExitStack) -> Case:
    (tmp / "cache.sqlite").mkdir()
    return Case(engine(tmp))


def cache_under_a_file(tmp: Path, stack: ExitStack) -> Case:
    (tmp / "afile").write_text("x")
    return Case(engine(tmp)[:-1] + [str(tmp / "afile" / "cache.sqlite")])


# --------------------------------------------------------------------------- an OpenAI-compatible server answering garbage


def _server(stack: ExitStack, body: bytes) -> str:
    """A loopback server answering every POST with 200 and `body`; its base URL, with credentials in it."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    stack.callback(httpd.server_close)
    stack.callback(httpd.shutdown)
    return f"http://someone:pass-w0rd-9@127.0.0.1:{httpd.server_address[1]}/v1"


def openai_not_json(tmp: Path, stack: ExitStack) -> Case:
    url = _server(stack, b'{"id": "chatcmpl-1", "choices": [')  # a cut answer
    return Case(engine(tmp, model="openai", model_args=f"model=m,base_url={url},max_retries=0"))


def openai_not_a_completion(tmp: Path, stack: ExitStack) -> Case:
    url = _server(stack, b'[1, 2]')
    return Case(engine(tmp, model="openai", model_args=f"model=m,base_url={url},max_retries=0"))


# --------------------------------------------------------------------------- the scripted model's arguments


def scripted_delay_not_a_number(tmp: Path, stack: ExitStack) -> Case:
    return Case(engine(tmp, model_args="echo=true,delay=abc"))


def scripted_delay_negative(tmp: Path, stack: ExitStack) -> Case:
    return Case(engine(tmp, model_args="echo=true,delay=-1"))


def scripted_outputs_not_json(tmp: Path, stack: ExitStack) -> Case:
    (tmp / "replies.json").write_text('["Hello.", "I hear', encoding="utf-8")
    return Case(engine(tmp, model_args=f"outputs={tmp / 'replies.json'}"))


def scripted_outputs_not_strings(tmp: Path, stack: ExitStack) -> Case:
    (tmp / "replies.json").write_text('[1, 2]', encoding="utf-8")
    return Case(engine(tmp, model_args=f"outputs={tmp / 'replies.json'}"))


def scripted_outputs_latin1(tmp: Path, stack: ExitStack) -> Case:
    (tmp / "replies.txt").write_bytes("Hello.\nThat sounds hard, José.\n".encode("latin-1"))
    return Case(engine(tmp, model_args=f"outputs={tmp / 'replies.txt'}"))


# --------------------------------------------------------------------------- the output folder


def output_dir_under_a_file(tmp: Path, stack: ExitStack) -> Case:
    (tmp / "afile").write_text("x")
    argv = engine(tmp)
    argv[argv.index("--output-dir") + 1] = str(tmp / "afile" / "runs")
    return Case(argv)


def output_dir_not_writable(tmp: Path, stack: ExitStack) -> Case:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere (test_an_unwritable_output_dir covers it in-process)")
    locked = tmp / "runs"
    locked.mkdir()
    locked.chmod(0o500)
    stack.callback(locked.chmod, 0o700)
    return Case(engine(tmp))


# --------------------------------------------------------------------------- data files in another encoding


def _data_copy(tmp: Path, task: str, name: str, transform: Callable[[bytes], bytes]) -> Path:
    """A data root whose `task` folder links the published files, except `name`, written transformed."""
    dataset = registry.tasks.get(task).dataset
    source = Path(os.environ["ESC_HARNESS_DATA"]) / dataset.folder
    folder = tmp / "data" / dataset.folder
    folder.mkdir(parents=True)
    for f in dataset.files:
        target = folder / f.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if f.name == name:
            target.write_bytes(transform((source / f.name).read_bytes()))
        else:
            target.symlink_to(source / f.name)
    return tmp / "data"


def _utf16(data: bytes) -> bytes:
    return data.decode("utf-8").encode("utf-16")


def _cp1252(data: bytes) -> bytes:
    return data.decode("utf-8").encode("cp1252", errors="replace")


def _stats(task: str, name: str, transform: Callable[[bytes], bytes]) -> Callable[[Path, ExitStack], Case]:
    def setup(tmp: Path, stack: ExitStack) -> Case:
        root = _data_copy(tmp, task, name, transform)
        return Case(["data", "stats", task, "--data-dir", str(root)], env={"ESC_HARNESS_ALLOW_MODIFIED_DATA": "1"}, cli=REAL_CLI)

    return setup


# --------------------------------------------------------------------------- anything else


def internal_error(tmp: Path, stack: ExitStack) -> Case:
    # an adapter failing with an exception the harness does not know (a RuntimeError quoting its key)
    return Case(engine(tmp, model=fx.FLAKY, model_args=f"ok=0,api_key={KEY}"))


@dataclass
class Row:
    id: str
    setup: Callable[[Path, ExitStack], Case]
    expect: tuple[str, ...]  # substrings of the error line
    absent: tuple[str, ...] = ()  # never on stderr


ROWS = [
    Row("cache-garbage", cache_garbage, ("cache.sqlite: the response cache is damaged", "delete the file", "--no-cache")),
    Row("cache-truncated", cache_truncated, ("cache.sqlite: the response cache is damaged", "delete the file")),
    Row("cache-row-not-json", cache_row_not_json, ("cache.sqlite: the response cache holds an entry that is not a stored answer", "delete it")),
    Row("cache-row-not-an-answer", cache_row_not_an_answer, ("cache.sqlite: the response cache holds an entry that is not a stored answer",)),
    Row("cache-locked", cache_locked, ("cache.sqlite: the response cache is locked by another process (waited 5 s", "another --cache")),
    Row("cache-is-a-folder", cache_is_a_folder, ("cache.sqlite: the response cache is a folder", "--cache FILE")),
    Row("cache-under-a-file", cache_under_a_file, ("afile/cache.sqlite: cannot make the response cache's folder", "--cache")),
    Row("openai-200-not-json", openai_not_json, ("openai: http://127.0.0.1:", "answered with a body that is not JSON", "/v1"), ("pass-w0rd-9", "someone")),
    Row("openai-200-not-a-completion", openai_not_a_completion, ("answered JSON that is not a chat completion", "base_url"), ("pass-w0rd-9",)),
    Row("scripted-delay-abc", scripted_delay_not_a_number, ("scripted: delay must be a number of seconds", "'abc'")),
    Row("scripted-delay-negative", scripted_delay_negative, ("scripted: delay must be 0 or more seconds",)),
    Row("scripted-outputs-not-json", scripted_outputs_not_json, ("replies.json:1: not valid JSON", "outputs=")),
    Row("scripted-outputs-not-strings", scripted_outputs_not_strings, ("replies.json: expected a JSON list of strings",)),
    Row("scripted-outputs-latin1", scripted_outputs_latin1, ("replies.txt:2: not UTF-8 text (byte 0xe9 at offset", "outputs=")),
    Row("output-dir-under-a-file", output_dir_under_a_file, ("--output-dir", "afile/runs: cannot make a folder there")),
    Row("output-dir-not-writable", output_dir_not_writable, ("--output-dir", "cannot make a folder there (Permission denied)")),
    Row("mesc-csv-utf16", _stats("mesc", "MESC.csv", _utf16), ("mesc/MESC.csv:1: not UTF-8 text (byte 0xff at offset 0) (it looks like UTF-16)",
                                                             "harness data fetch mesc")),
    Row("mesc-json-cp1252", _stats("mesc", "val.json", _cp1252), ("mesc/val.json:", "not UTF-8 text (byte 0x", "at offset")),
    Row("esc-eval-cards-utf16", _stats("esc-eval", "card_high_en.json", _utf16), ("esc-eval/card_high_en.json:1: not UTF-8 text (byte 0xff at offset 0)",)),
    Row("sage-profiles-cp1252", _stats("sage", "simulator_profile_withfirsttalk.jsonl", _cp1252),
        ("simulator_profile_withfirsttalk.jsonl:", "not UTF-8 text", "at offset")),
    Row("internal-error", internal_error, ("error: internal error (RuntimeError: boom", "please report it with the command you ran"), (KEY,)),
]


def half_written(root: Path) -> list[Path]:
    """Run folders left "running" without a single sample."""
    found = []
    for header in root.glob("**/run.json"):
        status = json.loads(header.read_text(encoding="utf-8")).get("status")
        samples = header.parent / "samples.jsonl"
        if status == "running" and (not samples.exists() or not samples.read_bytes().strip()):
            found.append(header.parent)
    return found


def assert_one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_a_hostile_input_is_one_error_line(row: Row, tmp_path: Path, data_root: Path):
    with ExitStack() as stack:
        case = row.setup(tmp_path, stack)
        env = {k: v for k, v in os.environ.items() if k != "ESC_HARNESS_DEBUG"}
        done = subprocess.run([*case.cli, *case.argv], capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**env, **case.env})
    assert done.returncode == 2, (done.returncode, done.stderr)
    line = assert_one_error_line(done.stderr)
    for needle in row.expect:
        assert needle in line, line
    for secret in row.absent:
        assert secret not in done.stderr + done.stdout
    assert half_written(tmp_path) == []


# --------------------------------------------------------------------------- the rest, in-process or not a status-2 error


class FullDisk:
    """The writer's file, out of space after `room` more bytes (a write that does not fit writes what fits)."""

    def __init__(self, real, room: int):
        self.real, self.room = real, room

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) <= self.room:
            self.room -= len(data)
            return self.real.write(data)
        if self.room:
            self.real.write(data[: self.room])  # a torn line
            self.room = 0
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_full_disk_mid_run_is_one_line_and_resume_finishes_it(tmp_path, monkeypatch):
    def config(out: str) -> RunConfig:
        return RunConfig(task=fx.TASK, model="scripted", model_args={"echo": "true"}, task_args={"size": 6}, metrics=[fx.LENGTH],
                         resamples=0, output_dir=tmp_path / out)

    uninterrupted = run(config("clean")).summary
    one_batch = sum(len(r.model_dump_json()) + 1 for r in store.read_records(next((tmp_path / "clean").iterdir()))[:2])
    real_init = store.SampleWriter.__init__

    def out_of_space(self, run_dir):
        real_init(self, run_dir)
        self._fh = FullDisk(self._fh, room=one_batch + 40)  # the second batch is torn, then the disk is full

    with monkeypatch.context() as patch:
        patch.setattr("harness.runner.SCORE_BATCH", 2)
        patch.setattr(store.SampleWriter, "__init__", out_of_space)
        with pytest.raises(HarnessError) as failed:
            run(config("runs"))
    message = str(failed.value)
    folder = next((tmp_path / "runs").iterdir())
    assert "\n" not in message and message.startswith(f"{folder / 'samples.jsonl'}: cannot write the finished samples (No space left on device)")
    assert f"free some disk space, then resume with `harness run --resume {folder}`" in message
    header = store.read_header(folder)
    assert header.status == "failed" and header.error == message
    assert len(store.read_records(folder)) == 2 and (folder / "samples.jsonl").read_bytes().endswith(b"\n")  # the torn line cut again
    resumed = run(config("ignored"), resume=folder)
    assert resumed.resumed_samples == 2 and resumed.summary.n == 6
    assert resumed.summary.metrics == uninterrupted.metrics
    assert store.read_header(folder).status == "finished"


def test_an_unwritable_output_dir(tmp_path, monkeypatch):
    real_mkdir = Path.mkdir
    locked = tmp_path / "locked"

    def mkdir(self, *args, **kwargs):
        if locked in self.parents:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(HarnessError) as refused:
        run(RunConfig(task=fx.TASK, model="scripted", model_args={"echo": "true"}, metrics=[fx.LENGTH], resamples=0, output_dir=locked / "runs"))
    assert str(refused.value) == (f"--output-dir {locked / 'runs'}: cannot make a folder there (Permission denied); "
                                  "give --output-dir a folder you can write to.")


def test_esc_harness_debug_shows_the_traceback(tmp_path):
    done = subprocess.run([*ENGINE_CLI, *engine(tmp_path, model=fx.FLAKY, model_args="ok=0")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ESC_HARNESS_DEBUG": "1"})
    assert done.returncode == 1 and "Traceback" in done.stderr and "RuntimeError: boom" in done.stderr


def test_ctrl_c_names_the_run_folder_to_resume(tmp_path):
    argv = engine(tmp_path, "--task-args", "size=60", model=fx.SLOW, model_args="delay=0.05")
    proc = subprocess.Popen([*ENGINE_CLI, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
    try:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size for p in (tmp_path / "runs").glob("*/samples.jsonl")):  # the first batch is saved
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    folder = next((tmp_path / "runs").iterdir())
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines() == [f"interrupted; finished samples are saved - continue with `harness run --resume {folder}`."]
    assert store.read_header(folder).status == "running" and store.read_records(folder)
