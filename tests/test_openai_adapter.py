"""The `openai` adapter: concurrency, streaming, retries, n > 1, images, caching and the API key.

Timing and fault behaviour are checked against tests/fault_server.py (deterministic); caching and the key
against a real llama.cpp server (SmolLM2, which here requires the test key, so a success proves it is sent).
"""
import base64
import email.utils
import json
import logging
import socket
import subprocess
import sys
import time
import traceback

import pytest

from fault_server import FaultServer
from harness.contract import ChatRequest, GenerationConfig, Message
from harness.errors import HarnessError
from harness.models.openai_api import OpenAIModel, parse_retry_after
from harness.runner import RunConfig, run

SECRET = "sk-test-SECRET-123"


def request(text="hello", **generation) -> ChatRequest:
    return ChatRequest(messages=(Message(role="system", content="Be kind."), Message(role="user", content=text)),
                       generation=GenerationConfig(**generation))


@pytest.fixture
def adapter():
    opened = []

    def make(**kw):
        kw.setdefault("model", "test-model")
        kw.setdefault("backoff", 0.01)
        model = OpenAIModel(None, **kw)
        opened.append(model)
        return model

    yield make
    for model in opened:
        model.close()


# ----------------------------------------------------------------------------- concurrency and streaming


def test_requests_run_concurrently_up_to_max_connections(adapter):
    with FaultServer(delay=0.3) as server:
        model = adapter(base_url=server.base_url, max_connections=4)
        model.generate([request("warm-up")])  # the client's first call builds its types
        start = time.perf_counter()
        outputs = model.generate([request(f"hello {i}") for i in range(8)])
        elapsed = time.perf_counter() - start
    assert [o.text.endswith(f"hello {i}") for i, o in enumerate(outputs)] == [True] * 8  # in order
    assert 0.55 < elapsed < 1.2, elapsed  # two waves of four, not eight in a row nor all at once
    assert server.max_in_flight == 4


def test_stream_yields_each_answer_when_it_finishes(adapter):
    slow = lambda body: 1.0 if body["messages"][-1]["content"] == "hello 0" else 0.05
    with FaultServer(delay=slow) as server:
        model = adapter(base_url=server.base_url, max_connections=8)
        model.generate([request("warm-up")])
        start = time.perf_counter()
        arrivals = [(position, time.perf_counter() - start) for position, _ in model.stream([request(f"hello {i}") for i in range(5)])]
    assert sorted(p for p, _ in arrivals) == [0, 1, 2, 3, 4]
    assert arrivals[0][0] != 0 and arrivals[0][1] < 0.6  # the fast ones are not held back by the slow one
    assert arrivals[-1][0] == 0 and arrivals[-1][1] >= 1.0


# ----------------------------------------------------------------------------- retries


def test_retries_429_500_503_and_a_timeout_then_succeeds(adapter):
    script = [("status", 429, {"Retry-After": "1"}, {"error": {"message": "rate limited"}}),
              ("status", 500, {}, {"error": {"message": "boom"}}),
              ("status", 503, {}, {"error": {"message": "overloaded"}}),
              ("hang", 5)]
    with FaultServer(script=script) as server:
        model = adapter(base_url=server.base_url, timeout=0.5, max_retries=5)
        start = time.perf_counter()
        [output] = model.generate([request("hi")])
        elapsed = time.perf_counter() - start
        times = [r["time"] for r in server.received]
    assert output.text.endswith("hi") and output.usage == {"prompt_tokens": 11, "completion_tokens": 7}
    assert server.attempts == 5 and model.attempts == 5
    assert times[1] - times[0] >= 0.95  # Retry-After: 1 was honoured (the backoff alone is 0.01 s)
    assert times[4] - times[3] >= 0.45  # the hang was cut at the timeout, then retried
    assert elapsed < 4


def test_retry_after_as_an_http_date_is_honoured(adapter):
    when = email.utils.formatdate(time.time() + 2, usegmt=True)  # second resolution: waits 1-2 s
    with FaultServer(script=[("status", 429, {"Retry-After": when}, {})]) as server:
        model = adapter(base_url=server.base_url)
        model.generate([request()])
        gap = server.received[1]["time"] - server.received[0]["time"]
    assert server.attempts == 2 and 0.9 <= gap < 3


def test_parse_retry_after():
    assert parse_retry_after({"retry-after": "2.5"}) == 2.5
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=1445412470.0) == 10.0
    assert parse_retry_after({"retry-after": "soon"}) is None and parse_retry_after({}) is None


@pytest.mark.parametrize("status", [400, 401, 404])
def test_client_errors_are_not_retried_and_say_what_to_do(adapter, status):
    with FaultServer(default=("status", status, {}, {"error": {"message": f"nope {status}"}})) as server:
        model = adapter(base_url=server.base_url, max_retries=5)
        with pytest.raises(HarnessError) as caught:
            model.generate([request()])
    message = str(caught.value)
    assert server.attempts == 1
    assert "\n" not in message and f"HTTP {status}" in message and f"nope {status}" in message
    assert {400: "max_tokens", 401: "OPENAI_API_KEY", 404: "model=test-model"}[status] in message


def test_exhausted_retries_name_the_status(adapter):
    with FaultServer(default=("status", 503, {}, {"error": {"message": "overloaded"}})) as server:
        model = adapter(base_url=server.base_url, max_retries=2)
        with pytest.raises(HarnessError, match=r"HTTP 503.*gave up after 3 attempts") as caught:
            model.generate([request()])
    assert server.attempts == 3 and "\n" not in str(caught.value)


def test_connection_errors_are_retried_then_reported(adapter):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = adapter(base_url=f"http://127.0.0.1:{port}/v1", max_retries=2)
    with pytest.raises(HarnessError, match=r"connection error.*gave up after 3 attempts"):
        model.generate([request()])
    assert model.attempts == 3


def test_a_failure_is_raised_after_what_finished_and_stops_the_rest(adapter):
    script = [("ok",), ("ok",), ("status", 400, {}, {"error": {"message": "bad"}})]
    with FaultServer(script=script) as server:
        model = adapter(base_url=server.base_url, max_connections=1)
        seen = []
        with pytest.raises(HarnessError, match="HTTP 400"):
            for position, _ in model.stream([request(f"hello {i}") for i in range(5)]):
                seen.append(position)
    assert seen == [0, 1] and server.attempts <= 4  # the answers before were handed over; the rest stopped (one may have started)


# ----------------------------------------------------------------------------- n > 1, images, identity


def test_n_choices_fall_back_to_separate_requests_with_distinct_seeds(adapter):
    with FaultServer(choices_cap=1) as server:  # like llama-cpp-python: ignores n
        model = adapter(base_url=server.base_url)
        [output] = model.generate([request("hi", n=3, seed=7, temperature=0.8)])
        first = [(r["body"].get("n"), r["body"].get("seed")) for r in server.received]
        [again] = model.generate([request("hi", n=3, seed=7, temperature=0.8)])
        second = [(r["body"].get("n"), r["body"].get("seed")) for r in server.received[3:]]
    assert len(output.choices) == 3 and len(set(output.choices)) == 3
    assert first[0] == (3, 7) and sorted(first[1:], key=str) == [(None, 8), (None, 9)]
    assert sorted(second, key=str) == [(None, 7), (None, 8), (None, 9)]  # learnt: no more n=3 asks
    assert again.choices == output.choices
    assert output.usage == {"prompt_tokens": 33, "completion_tokens": 21}  # summed over the requests


def test_n_choices_in_one_request_when_the_server_supports_it(adapter):
    with FaultServer() as server:
        model = adapter(base_url=server.base_url)
        [output] = model.generate([request("hi", n=2, seed=1)])
    assert server.attempts == 1 and len(output.choices) == 2 and model.n_supported is True


def test_images_become_base64_data_url_parts(adapter, tmp_path):
    png = tmp_path / "frame.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(64)))
    with FaultServer() as server:
        model = adapter(base_url=server.base_url)
        model.generate([ChatRequest(messages=(Message(role="user", content="what do you see?", images=(str(png),)),))])
        content = server.received[0]["body"]["messages"][0]["content"]
    assert content == [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()}},
                       {"type": "text", "text": "what do you see?"}]
    with pytest.raises(HarnessError, match="image 'missing.png' not found"):
        model.generate([ChatRequest(messages=(Message(role="user", content="x", images=("missing.png",)),))])


def test_cache_identity_names_what_changes_answers_and_nothing_else(adapter):
    model = adapter(base_url="HTTP://LocalHost:8000/v1/", api_key=SECRET, timeout=5, max_connections=3, max_retries=9,
                    temperature=0.7, max_tokens=64, extra_body={"top_k": 20})
    identity = model.cache_identity()
    # the model's, not the address's: where it is served (one server or several) does not change its answers
    assert identity == {"model": "test-model", "temperature": 0.7, "max_tokens": 64, "extra_body": {"top_k": 20}}
    several = adapter(base_url="http://127.0.0.1:8000/v1|http://127.0.0.2:8000/v1", temperature=0.7, max_tokens=64, extra_body={"top_k": 20})
    assert several.cache_identity() == identity
    assert SECRET not in repr(model) and SECRET not in repr(vars(model)) and SECRET not in json.dumps(identity)


def test_sampling_overrides_replace_the_task_settings(adapter):
    with FaultServer() as server:
        model = adapter(base_url=server.base_url, temperature=0.5, top_p=0.9, max_tokens=12, seed=3, extra_body={"top_k": 5})
        model.generate([request("hi", temperature=0.0, max_tokens=256, seed=0, stop=("\n",))])
        body = server.received[0]["body"]
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"], body["top_k"], body["stop"]) == (0.5, 0.9, 12, 3, 5, ["\n"])


def test_max_tokens_cap_bounds_what_the_task_asks(adapter):
    with FaultServer() as server:
        model = adapter(base_url=server.base_url, max_tokens_cap=128)
        model.generate([request("long", max_tokens=1000), request("short", max_tokens=16)])
        asked = sorted(r["body"]["max_tokens"] for r in server.received)
    assert asked == [16, 128] and model.cache_identity()["max_tokens_cap"] == 128


def test_a_plain_http_client_skips_the_ca_bundle_but_still_verifies_tls(monkeypatch):
    """An http:// server gets a TLS context holding no CA (loading the bundle was most of a client's start),
    which still requires and verifies certificates: a redirect to https fails closed. https endpoints, and
    any endpoint behind a proxy from the environment, keep the client's own verified context."""
    import ssl

    import openai

    from harness.models import openai_api

    made = []
    real = openai.DefaultAsyncHttpxClient
    monkeypatch.setattr(openai, "DefaultAsyncHttpxClient", lambda **kw: made.append(kw) or real(**kw))
    for variable in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    key = openai_api._Secret("k")
    client = openai_api._make_client(key, "http://127.0.0.1:8000/v1", timeout=7.0)
    assert len(made) == 1 and client.timeout == 7.0
    context = made[0]["verify"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.get_ca_certs() == [] and context.cert_store_stats()["x509_ca"] == 0
    openai_api._make_client(key, "https://api.example.org/v1", timeout=7.0)
    monkeypatch.setenv("HTTPS_PROXY", "https://proxy.example.org:3128")
    openai_api._make_client(key, "http://127.0.0.1:8000/v1", timeout=7.0)
    assert len(made) == 1  # neither made its own context


def test_a_remote_endpoint_without_a_key_is_refused(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(HarnessError, match="OPENAI_API_KEY"):
        OpenAIModel(None, model="m", base_url="https://api.example.com/v1")
    with pytest.raises(HarnessError, match="model=gpt-4o-mini"):
        OpenAIModel(None, base_url="http://127.0.0.1:1/v1")


def test_the_key_is_not_in_an_error_even_when_the_server_echoes_it(adapter, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    echo = {"error": {"message": f"Incorrect API key provided: {SECRET}. Bearer {SECRET}"}}
    with FaultServer(default=("status", 401, {}, echo)) as server:
        model = adapter(base_url=server.base_url, api_key=SECRET)
        with pytest.raises(HarnessError) as caught:
            model.generate([request()])
        sent = server.received[0]["headers"].get("authorization")
    assert sent == f"Bearer {SECRET}"  # the key is used...
    shown = [str(caught.value), repr(caught.value), "".join(traceback.format_exception(caught.value)), caplog.text, *capfd.readouterr()]
    assert all(SECRET not in text for text in shown)  # ...and shown nowhere
    assert "HTTP 401" in str(caught.value) and "<redacted>" in str(caught.value)
    assert caught.value.__context__ is None and caught.value.__cause__ is None  # no chain back to the request's headers


def test_the_cli_reports_a_401_in_one_line_without_the_key(tmp_path, data_root):
    echo = {"error": {"message": f"Incorrect API key provided: {SECRET}"}}
    with FaultServer(default=("status", 401, {}, echo)) as server:
        done = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--task", "mesc", "--model", "openai", "--limit", "2",
                               "--model-args", f"model=m,base_url={server.base_url},api_key={SECRET}", "--output-dir", str(tmp_path / "runs")],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert SECRET not in done.stdout + done.stderr
    [line] = [l for l in done.stderr.splitlines() if l.strip() and not l.startswith("warning: ")]
    assert line.startswith("error: openai:") and "HTTP 401" in line
    leaks = [str(p) for p in tmp_path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaks == []


# ----------------------------------------------------------------------------- against a real llama.cpp server


@pytest.fixture(scope="module")
def llama():
    pytest.importorskip("xllamacpp", reason="needs xllamacpp: bash install.sh")
    from harness.models.local_llama import LlamaServer, default_gguf

    try:
        gguf = default_gguf()
    except HarnessError as exc:
        pytest.skip(str(exc))
    server = LlamaServer(gguf, n_ctx=1024, parallel=4, api_key=SECRET)  # answers only with the key
    yield server
    server.stop()


def llama_config(tmp_path, data_root, llama, **model_args):
    args = {"model": "smollm2", "base_url": llama.base_url, "max_tokens": 12, "max_connections": 4, **model_args}
    quick = {"bootstrap": 0} if "bootstrap" in RunConfig.__dataclass_fields__ else {}  # no confidence intervals needed here
    return RunConfig(task="mesc", model="openai", model_args=args, limit=5, metrics=["bleu-1", "rouge-l"],
                     output_dir=tmp_path / "runs", data_dir=data_root, **quick)


def outputs_of(run_dir):
    """Outputs in sample order (samples.jsonl is in the order the answers finished)."""
    records = sorted((json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()), key=lambda r: r["index"])
    return [r["output"] for r in records]


def test_a_second_identical_run_makes_no_model_call(tmp_path, data_root, llama):
    config = llama_config(tmp_path, data_root, llama, api_key=SECRET)
    first = run(config, progress=False)
    second = run(config, progress=False)
    assert (first.model_calls, second.model_calls, second.cache_hits) == (5, 0, 5)
    assert outputs_of(first.run_dir) == outputs_of(second.run_dir) and all(outputs_of(first.run_dir))
    usage = [json.loads(line)["usage"] for line in (first.run_dir / "samples.jsonl").read_text().splitlines()]
    assert all(u["prompt_tokens"] > 0 and 0 < u["completion_tokens"] <= 12 for u in usage)


def test_the_key_is_nowhere_on_disk_or_in_logs(tmp_path, data_root, llama, caplog, capfd, monkeypatch):
    caplog.set_level(logging.DEBUG)
    by_arg = run(llama_config(tmp_path, data_root, llama, api_key=SECRET), progress=False)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    config = llama_config(tmp_path, data_root, llama)
    config.cache_path = tmp_path / "second-cache.sqlite"  # a fresh cache: the env key is really used
    by_env = run(config, progress=False)
    assert by_arg.model_calls == by_env.model_calls == 5  # both reached the server, which demands the key
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".sqlite") for p in files) and any(p.name == "run.json" for p in files)
    leaks = [str(p) for p in files if SECRET.encode() in p.read_bytes()]
    assert leaks == []
    header = json.loads((by_arg.run_dir / "run.json").read_text())
    assert header["model_args"]["api_key"] == "<redacted>" and "api_key" not in json.dumps(header["model_identity"])
    out, err = capfd.readouterr()
    assert SECRET not in caplog.text and SECRET not in out and SECRET not in err


def test_the_real_server_answers_n_choices(adapter, llama):
    model = adapter(base_url=llama.base_url, api_key=SECRET, max_tokens=8)
    [output] = model.generate([request("I feel lonely.", n=2, temperature=1.0, seed=1)])
    assert len(output.choices) == 2 and all(output.choices)
