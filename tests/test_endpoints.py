"""The `openai` adapter over several endpoints (one model served by several servers): requests spread within
each endpoint's limit, a dying endpoint's requests move to the others, every sample answered once, the cache
identity that of the model (one endpoint or several), every endpoint down stops the run in one line and
the run resumes. Checked against two tests/fault_server.py servers."""
import json
import socket
import subprocess
import sys
from collections import Counter

import pytest

from fault_server import FaultServer
from harness.cache import ResponseCache
from harness.contract import ChatRequest, GenerationConfig, Message
from harness.errors import HarnessError
from harness.models.openai_api import OpenAIModel, endpoint_urls
from harness.options import parse_kv
from harness.redaction import redact, secrets_of
from harness.runner import RunConfig, run

N = 20  # MESC test samples per run


def request(text: str) -> ChatRequest:
    return ChatRequest(messages=(Message(role="user", content=text),), generation=GenerationConfig())


def prompt_of(body: dict) -> str:
    return json.dumps(body["messages"], sort_keys=True)


def free_port() -> int:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


def config(tmp_path, data_root, urls, **model_args) -> RunConfig:
    args = {"model": "m", "base_url": "|".join(urls), "max_connections": 3, "backoff": 0.01, "down_for": 60, **model_args}
    return RunConfig(task="mesc", model="openai", model_args=args, limit=N, metrics=["bleu-1"], resamples=0,
                     output_dir=tmp_path / "runs", data_dir=data_root, cache_path=tmp_path / "cache.sqlite")


# ----------------------------------------------------------------------------- syntax and secrets


def test_the_ways_to_name_several_endpoints(tmp_path, monkeypatch):
    a, b = "http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1"
    assert endpoint_urls(f"{a}|{b}") == endpoint_urls(f"{a}, {b}/") == endpoint_urls([a, b]) == [a, b]
    # --model-args splits on commas: a comma-separated list and a JSON list both reach the adapter whole
    assert parse_kv(f"model=m,base_url={a},{b},max_connections=4")["base_url"] == f"{a},{b}"
    assert parse_kv(f'model=m,base_url=["{a}","{b}"]')["base_url"] == [a, b]
    listing = tmp_path / "urls.txt"
    listing.write_text(f"# the servers of node 1 and 2\n{a}\n\n{b}  # second node\n")
    assert endpoint_urls(f"@{listing}") == [a, b]
    with pytest.raises(HarnessError, match="lists http://10.0.0.1:8000/v1 twice"):
        endpoint_urls(f"{a}|{a}/")
    with pytest.raises(HarnessError, match=r"base_url=@.*missing.txt: cannot read"):
        endpoint_urls(f"@{tmp_path / 'missing.txt'}")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8001/v1|http://127.0.0.1:8002/v1")
    model = OpenAIModel(None, model="m")
    try:
        assert model.endpoints == ["http://127.0.0.1:8001/v1", "http://127.0.0.1:8002/v1"]
    finally:
        model.close()


def test_secrets_in_any_of_the_urls_are_redacted():
    given = {"base_url": "http://10.0.0.1:8000/v1|http://bob:PW-12345678@10.0.0.2:8000/v1?key=QK-987654"}
    shown = redact(given)["base_url"]
    assert shown == "http://10.0.0.1:8000/v1|http://<redacted>@10.0.0.2:8000/v1?key=<redacted>"
    assert set(secrets_of(given)) >= {"PW-12345678", "QK-987654"}
    model = OpenAIModel(None, model="m", api_key="k-123456", base_url=given["base_url"])
    try:
        assert "PW-12345678" not in repr(model) and "QK-987654" not in repr(model) + json.dumps(model.cache_identity())
        assert model.endpoints == ["http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1"]
    finally:
        model.close()


# ----------------------------------------------------------------------------- spreading and failing over


def test_requests_spread_over_the_endpoints_within_each_limit():
    with FaultServer(delay=0.05) as a, FaultServer(delay=0.05) as b:
        model = OpenAIModel(None, model="m", base_url=f"{a.base_url}|{b.base_url}", max_connections=2)
        try:
            outputs = model.generate([request(f"hello {i}") for i in range(16)])
        finally:
            model.close()
    assert [o.text.endswith(f"hello {i}") for i, o in enumerate(outputs)] == [True] * 16
    assert len(a.answered) + len(b.answered) == 16 and a.answered and b.answered
    assert a.max_in_flight <= 2 and b.max_in_flight <= 2


def test_a_rate_limited_endpoint_is_retried_in_place_then_left(caplog):
    limited = ("status", 429, {}, {"error": {"message": "slow down"}})
    with FaultServer(default=limited) as a, FaultServer() as b:
        model = OpenAIModel(None, model="m", base_url=f"{a.base_url}|{b.base_url}", max_connections=1, max_retries=2, backoff=0.01)
        try:
            [output] = model.generate([request("hi")])  # the first request goes to a (both idle: the first listed)
        finally:
            model.close()
    assert output.text.endswith("hi")
    assert (a.attempts, len(b.answered)) == (3, 1)  # a: the try and its 2 retries; then b


def test_an_endpoint_dying_mid_run_loses_no_sample_and_answers_each_once(tmp_path, data_root):
    with FaultServer(delay=0.05, kill_after=6) as a, FaultServer(delay=0.05) as b:
        first = run(config(tmp_path, data_root, [a.base_url, b.base_url]), progress=False)
        assert a.attempts >= 6  # it died mid-run, with requests in flight
        got = records(first.run_dir)
        assert len(got) == N and len({r["id"] for r in got}) == N and all(r["output"] for r in got)
        answered = Counter(prompt_of(body) for body in a.answered + b.answered)
        assert len(answered) == N  # every sample answered...
        received_by_a_unanswered = {prompt_of(r["body"]) for r in a.received} - {prompt_of(body) for body in a.answered}
        assert received_by_a_unanswered and received_by_a_unanswered <= {prompt_of(body) for body in b.answered}  # ...those in flight at the death by b
        assert set(answered.values()) == {1}  # and none twice
        assert a.max_in_flight <= 3 and b.max_in_flight <= 3
        cache = ResponseCache(tmp_path / "cache.sqlite")
        try:
            assert len(cache) == N  # each answer stored once
        finally:
            cache.close()
        # the cache identity is the model's: a second run over b alone is all cache hits
        before = b.attempts
        second = run(config(tmp_path, data_root, [b.base_url]), progress=False)
        assert (second.model_calls, second.cache_hits, b.attempts - before) == (0, N, 0)
        assert sorted(r["output"] for r in records(second.run_dir)) == sorted(r["output"] for r in got)


def test_every_endpoint_down_stops_in_one_line_and_the_run_resumes(tmp_path, data_root):
    dead = [f"http://127.0.0.1:{free_port()}/v1", f"http://127.0.0.1:{free_port()}/v1"]
    args = f"model=m,base_url={'|'.join(dead)},max_retries=1,backoff=0.01,max_connections=2"
    command = [sys.executable, "-m", "harness.cli", "run", "--task", "mesc", "--model", "openai", "--limit", "4",
               "--metrics", "bleu-1", "--resamples", "0", "--output-dir", str(tmp_path / "runs"), "--cache", str(tmp_path / "c.sqlite")]
    done = subprocess.run([*command, "--model-args", args], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "gave up" in line]
    assert len(lines) == 1 and lines[0].count("connection error") == 2 and all(url in lines[0] for url in dead) and "resume" in lines[0]
    assert "every endpoint" in lines[0]
    [run_dir] = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    with FaultServer() as a, FaultServer() as b:
        resumed = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--resume", str(run_dir), "--cache", str(tmp_path / "c.sqlite"),
                                  "--model-args", f"base_url={a.base_url}|{b.base_url}"], capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr
        assert len(a.answered) + len(b.answered) == 4
    got = records(run_dir)
    assert len(got) == 4 and len({r["id"] for r in got}) == 4


def test_a_failing_endpoint_leaves_the_rotation_and_comes_back(caplog):
    import time

    failing = [("status", 503, {}, {"error": {"message": "overloaded"}})] * 2
    with FaultServer(script=failing) as a, FaultServer() as b:
        model = OpenAIModel(None, model="m", base_url=f"{a.base_url}|{b.base_url}", max_connections=1, down_after=2, down_for=0.3)
        try:
            for i in range(2):  # each tries a first (both idle), fails there, moves to b
                model.generate([request(f"first {i}")])
            assert (a.attempts, len(b.answered)) == (2, 2)
            for i in range(3):  # a is out of rotation: b alone
                model.generate([request(f"while down {i}")])
            assert (a.attempts, len(b.answered)) == (2, 5)
            time.sleep(0.4)
            model.generate([request("back")])  # a's probe answers: back in rotation
        finally:
            model.close()
    assert (a.attempts, len(a.answered), len(b.answered)) == (3, 1, 5)
    assert "out of rotation" in caplog.text and "back in rotation" in caplog.text
