"""Nothing leaked (issue 11): secrets are a closed list of argument names plus key-looking values (never a
substring: max_tokens is recorded as given), URLs lose their credentials wherever arguments are recorded or
printed (run.json, the leaderboard label, an error line), and every file of a run folder gets one mode.
harness/redaction.py's redact / secrets_of / is_redacted is the one place that decides."""
import json
import os
import stat
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness import registry, store
from harness.contract import RunHeader, Summary
from harness.errors import HarnessError
from harness.leaderboard import collect_runs, model_label, run_label
from harness.redaction import REDACTED, error_line, is_redacted, redact, secrets_of
from harness.models.scripted import ScriptedModel
from harness.runner import RunConfig, run

import engine_fixtures as fx
from engine_fixtures import LENGTH, QUESTIONS, TASK

KEYED = "secrets-test-keyed"
PASSWORD = "Pa55-WORD-7781"  # the URL's password
QUERY_KEY = "QK-5551234-qk"  # the URL's ?api_key=
PROXY_PASSWORD = "PROXY-99-pw"  # a URL nested in extra_body
BASE_URL = f"http://alice:{PASSWORD}@llm.example:8000/v1?api_key={QUERY_KEY}&region=eu"
SAFE_URL = f"http://{REDACTED}@llm.example:8000/v1?api_key={REDACTED}&region=eu"
LEAKS = (PASSWORD, QUERY_KEY, PROXY_PASSWORD, "alice:")


class KeyedEcho(ScriptedModel):
    """The echo model taking what a server adapter takes (base_url, api_key, max_tokens, extra_body); with
    `fail` it fails like a client that quotes everything it was given."""

    name = KEYED
    batch_size = 1

    def __init__(self, context=None, base_url=None, api_key=None, max_tokens=None, extra_body=None, fail=False, echo=True):
        super().__init__(context, echo=echo)
        self.base_url, self.api_key, self.max_tokens, self.extra_body, self.fail = base_url, api_key, max_tokens, extra_body, fail

    def generate(self, requests):
        if self.fail:
            raise RuntimeError(f"POST {self.base_url}/chat/completions: 401 (password {PASSWORD} rejected, "
                               f"key {self.api_key}, via {self.extra_body})\ntraceback line 2")
        return super().generate(requests)


@pytest.fixture(autouse=True)
def _plugins():
    fx.register()
    registry.models.register(KEYED, KeyedEcho)


def config(tmp_path, **model_args) -> RunConfig:
    return RunConfig(task=TASK, model=KEYED, model_args={"base_url": BASE_URL, **model_args}, split="test", limit=2,
                     metrics=[LENGTH, QUESTIONS], output_dir=tmp_path / "runs", data_dir=tmp_path, cache_path=tmp_path / "c.sqlite",
                     resamples=0)


def folder_text(run_dir: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in run_dir.iterdir() if p.is_file() and p.suffix in (".json", ".jsonl"))


# --------------------------------------------------------------------------- 1. names, not substrings


@pytest.mark.parametrize("name", ["api_key", "API_KEY", "api-key", "ApiKey", "apikey", "key", "secret", "secret_key", "client_secret",
                                  "password", "passwd", "token", "access_token", "auth_token", "bearer_token", "hf_token", "HF-TOKEN",
                                  "authorization", "Authorization", "auth", "api_token", "openai_api_key", "OPENAI_API_KEY"])
def test_a_secret_name_is_redacted_in_any_spelling(name):
    assert redact({name: "s3cr3t-value", "temperature": 0.5}) == {name: REDACTED, "temperature": 0.5}
    assert secrets_of({name: "s3cr3t-value"}) == ["s3cr3t-value"]


@pytest.mark.parametrize("name", ["max_tokens", "max_tokens_cap", "seeker_max_tokens", "max-tokens", "tokenizer", "keywords",
                                  "monkey", "author", "key_column", "passage", "secretary_prompt"])
def test_a_name_merely_holding_a_secret_word_is_recorded_as_given(name):
    # before: the substring regex key|token|secret|password|auth redacted every one of these
    assert redact({name: 16}) == {name: 16}
    assert secrets_of({name: 16}) == []


@pytest.mark.parametrize("value", ["sk-abcdefghijklmnop1234", "sk-proj-AbCdEf0123456789_xyz", "hf_abcdefghijklmnopqrstuvwx",
                                   "ghp_abcdefghijklmnopqrstuvwxyz0123", "Bearer abc.def-ghi_jkl",
                                   "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"])
def test_a_value_that_looks_like_a_key_is_redacted_whatever_its_name(value):
    assert redact({"model": "m", "header": value}) == {"model": "m", "header": REDACTED}
    assert value in secrets_of({"header": value})


def test_ordinary_values_that_resemble_keys_are_kept():
    args = {"task_name": "task-abcdefghijklmnopqrstuvw", "system": "Bearer responsibilities with care.", "model": "sk-small"}
    assert redact(args) == args and secrets_of(args) == []


# --------------------------------------------------------------------------- 2. URLs


def test_a_url_keeps_scheme_and_host_but_loses_its_credentials_at_any_depth():
    args = {"base_url": BASE_URL, "extra_body": {"proxies": [f"socks5://bob:{PROXY_PASSWORD}@proxy:1080"], "token": "tk-1"},
            "endpoint": "https://api.example/v1?key=K1&access_token=A2&n=3#id_token=F3"}
    shown = redact(args)
    assert shown == {"base_url": SAFE_URL,
                     "extra_body": {"proxies": [f"socks5://{REDACTED}@proxy:1080"], "token": REDACTED},
                     "endpoint": f"https://api.example/v1?key={REDACTED}&access_token={REDACTED}&n=3#id_token={REDACTED}"}
    assert redact(shown) == shown  # redacting twice changes nothing
    assert set(secrets_of(args)) >= {PASSWORD, QUERY_KEY, PROXY_PASSWORD, "tk-1", "K1", "A2", "F3"}
    assert "alice" not in secrets_of(args)  # a user beside a password is a login, not blanked in every error line
    assert secrets_of({"url": "https://TOKEN-123456@git.example/repo"}) == ["TOKEN-123456"]  # a user alone is the token
    assert redact({"base_url": "http://127.0.0.1:8000/v1"}) == {"base_url": "http://127.0.0.1:8000/v1"}


def test_an_error_line_blanks_the_urls_credentials_and_the_given_secrets():
    args = {"base_url": BASE_URL, "api_key": "sk-abcdefghijklmnop1234"}
    exc = RuntimeError(f"POST {BASE_URL}: password {PASSWORD} and key sk-abcdefghijklmnop1234 refused\nline 2")
    line = error_line(exc, secrets_of(args))
    assert not any(leak in line for leak in LEAKS) and "sk-abc" not in line and "\n" not in line
    assert line.startswith("RuntimeError: POST http://<redacted>@llm.example:8000/v1") and "region=eu" in line
    # the URL's form is caught even when the secrets were not handed over
    assert PASSWORD not in error_line(RuntimeError(f"cannot reach {BASE_URL}"))


def test_is_redacted_says_which_recorded_values_must_be_given_again():
    assert is_redacted(REDACTED) and is_redacted(SAFE_URL) and is_redacted({"headers": {"token": REDACTED}}) and is_redacted([SAFE_URL])
    assert not any(is_redacted(v) for v in ("http://llm.example/v1", 16, None, "", {"a": 1}, ["x"]))


# --------------------------------------------------------------------------- 2. a real run, its leaderboard row, its error line


def test_a_run_records_max_tokens_as_given_and_no_credential(tmp_path):
    args = {"max_tokens": 16, "api_key": "sk-abcdefghijklmnop1234", "extra_body": {"proxy": f"http://bob:{PROXY_PASSWORD}@proxy:3128"}}
    result = run(config(tmp_path, **args), progress=False)
    header = RunHeader.model_validate_json((result.run_dir / "run.json").read_text())
    assert header.status == "finished"
    assert header.model_args == {"base_url": SAFE_URL, "max_tokens": 16, "api_key": REDACTED,
                                 "extra_body": {"proxy": f"http://{REDACTED}@proxy:3128"}}
    text = folder_text(result.run_dir)
    assert not any(leak in text for leak in LEAKS) and "sk-abcdefghijklmnop1234" not in text
    label = collect_runs(tmp_path / "runs")[0].label
    assert not any(leak in label for leak in LEAKS) and "max_tokens=16" in label


def test_max_tokens_16_and_512_are_two_leaderboard_rows(tmp_path):
    run(config(tmp_path, max_tokens=16), progress=False)
    run(config(tmp_path, max_tokens=512), progress=False)
    labels = sorted(e.label for e in collect_runs(tmp_path / "runs"))
    # before: max_tokens was redacted, so both runs had one label and the later hid the earlier
    assert len(labels) == 2 and "max_tokens=16" in labels[0] and "max_tokens=512" in labels[1]
    assert not any(leak in label for label in labels for leak in LEAKS)


def test_a_failed_runs_error_line_holds_no_credential(tmp_path):
    args = {"api_key": "sk-abcdefghijklmnop1234", "extra_body": {"proxy": f"http://bob:{PROXY_PASSWORD}@proxy:3128"}, "fail": True}
    with pytest.raises(RuntimeError):
        run(config(tmp_path, **args), progress=False)
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    header = RunHeader.model_validate_json((run_dir / "run.json").read_text())
    assert header.status == "failed" and header.error.startswith("RuntimeError: POST http://<redacted>@llm.example:8000/v1")
    assert not any(leak in header.error for leak in LEAKS) and "sk-abcdefghijklmnop1234" not in header.error
    assert not any(leak in folder_text(run_dir) for leak in LEAKS)


def test_the_label_of_a_run_json_written_by_an_older_version_is_redacted_again(tmp_path):
    folder = tmp_path / "runs" / "old"
    folder.mkdir(parents=True)
    old_args = {"base_url": BASE_URL, "api_key": REDACTED, "max_tokens": REDACTED, "temperature": 0.2}  # as the substring rule wrote it
    store.write_json(folder / "run.json", RunHeader(run_id="old", task="mesc", model="openai", model_args=old_args, split="test", seed=0,
                                                    metrics=[], started_at="2026-01-01T00:00:00", finished_at="2026-01-01T00:00:00",
                                                    status="finished", n_samples=1))
    store.write_json(folder / "summary.json", Summary(n=1, metrics={}))
    (entry,) = collect_runs(tmp_path / "runs")
    assert entry.label == f"openai(base_url={SAFE_URL}, temperature=0.2)"
    assert model_label("m", {"auth": "x", "headers": {"Authorization": "Bearer abcdefgh123"}}) == f"m(headers={{'Authorization': '{REDACTED}'}})"
    assert run_label(entry.header) == entry.label


def test_resume_asks_for_a_partly_redacted_url_again_and_takes_it(tmp_path):
    with pytest.raises(RuntimeError):
        run(config(tmp_path, fail=True), progress=False)
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    given = RunConfig(task="", model="", split="", data_dir=tmp_path, cache_path=tmp_path / "c.sqlite", resamples=0)
    with pytest.raises(HarnessError, match="base_url"):
        run(given, resume=run_dir, progress=False)  # the recorded URL lost its password: it must come again
    registry.models.register(KEYED, type("Healthy", (KeyedEcho,), {"__init__": lambda self, context=None, fail=False, **kw:
                                                                  KeyedEcho.__init__(self, context, **kw)}))
    given.model_args = {"base_url": BASE_URL}
    assert run(given, resume=run_dir, progress=False).summary.n == 2


# --------------------------------------------------------------------------- 3. one file mode


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_every_file_of_a_run_folder_gets_the_mode_open_would_give(tmp_path, mask, mode):
    with umask(mask):
        result = run(config(tmp_path, max_tokens=16), progress=False)
        records = store.read_records(result.run_dir)
        store.rewrite_records(result.run_dir, records)  # (what a regrade does)
    modes = {name: stat.S_IMODE((result.run_dir / name).stat().st_mode) for name in ("run.json", "summary.json", "samples.jsonl")}
    # before: run.json and summary.json (and a rewritten samples.jsonl) were mkstemp's 0600 whatever the umask
    assert modes == dict.fromkeys(modes, mode)
    assert not [p.name for p in result.run_dir.iterdir() if p.name.endswith(".tmp")]  # no temporary file left behind
