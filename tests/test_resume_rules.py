"""One run never mixes two settings (issue 11): on --resume, what changes answers or scores is refused in
one line and leaves the folder as it was; what cannot change them (a new key, the server's address) is
allowed and recorded in the folder's writers; the resamples are the run's; another schema is refused."""
import json

import pytest

import engine_fixtures as fx
from engine_fixtures import LENGTH, QUESTIONS, TASK
from harness import registry, store
from harness.contract import RunHeader, Summary
from harness.errors import HarnessError
from harness.models.scripted import ScriptedModel
from harness.runner import RunConfig, run

SERVED = "resume-test-served"


class ServedEcho(ScriptedModel):
    """An echo model reached at a base URL with a key: the URL and key do not change its answers, max_tokens does."""

    name = SERVED

    def __init__(self, context=None, base_url="http://127.0.0.1:1/v1", api_key=None, max_tokens=16, **kw):
        super().__init__(context, echo=True)
        self.base_url, self.max_tokens = base_url, int(max_tokens)

    def cache_identity(self):
        return {**super().cache_identity(), "base_url": self.base_url, "max_tokens": self.max_tokens}


@pytest.fixture(autouse=True)
def plugins():
    fx.register()
    registry.models.register(SERVED, ServedEcho)
    yield


def first_run(tmp_path, **kw):
    config = RunConfig(task=TASK, model=SERVED, model_args={"base_url": "http://127.0.0.1:1/v1", "api_key": "k-1", "max_tokens": 16},
                       metrics=[LENGTH, QUESTIONS], output_dir=tmp_path / "runs", data_dir=tmp_path, cache_path=tmp_path / "c.sqlite",
                       limit=3, **kw)
    return run(config).run_dir


def resume(tmp_path, run_dir, **kw):
    config = RunConfig(task="", model="", split="", data_dir=tmp_path, cache_path=tmp_path / "c.sqlite", **kw)
    return run(config, resume=run_dir)


def snapshot(run_dir):
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".lock"}


def test_an_argument_that_changes_answers_is_refused_and_the_folder_left_alone(tmp_path):
    run_dir = first_run(tmp_path)
    before = snapshot(run_dir)
    with pytest.raises(HarnessError) as caught:
        resume(tmp_path, run_dir, model_args={"api_key": "k-1", "max_tokens": 999})
    assert str(caught.value) == ("--resume: --model-args max_tokens=999 changes what the model answers (max_tokens differ from the "
                                 "recorded run); drop it or start a new run.")
    assert snapshot(run_dir) == before


def test_a_new_key_and_a_new_address_are_allowed_and_recorded(tmp_path):
    run_dir = first_run(tmp_path)
    resumed = resume(tmp_path, run_dir, model_args={"api_key": "k-2", "base_url": "http://127.0.0.1:2/v1"})
    header = RunHeader.model_validate_json((run_dir / "run.json").read_text())
    assert resumed.summary.n == 3 and header.status == "finished"
    assert len(header.writers) == 2 and header.writers[0].started_at == header.started_at
    assert header.writers[1].changed == {"model": {"base_url": "http://127.0.0.1:2/v1"}}  # the key is a secret coming back
    assert header.writers[1].git_revision == header.git_revision and header.writers[1].packages
    assert "k-2" not in (run_dir / "run.json").read_text()


def test_resamples_are_recorded_kept_and_never_negative(tmp_path):
    run_dir = first_run(tmp_path, resamples=50)
    header = store.read_header(run_dir)
    assert header.resamples == 50 and Summary.model_validate_json((run_dir / "summary.json").read_text()).bootstrap["resamples"] == 50
    resume(tmp_path, run_dir, model_args={"api_key": "k-1"})  # not given: the run's own
    assert json.loads((run_dir / "summary.json").read_text())["bootstrap"]["resamples"] == 50
    with pytest.raises(HarnessError, match=r"--resume: the run was made with --resamples 50, not 1000; drop --resamples"):
        resume(tmp_path, run_dir, model_args={"api_key": "k-1"}, resamples=1000)
    with pytest.raises(HarnessError, match="--resamples must be 0"):
        first_run(tmp_path / "neg", resamples=-1)
    assert not (tmp_path / "neg" / "runs").exists()


def test_another_schema_version_is_refused(tmp_path):
    run_dir = first_run(tmp_path)
    header = store.read_header(run_dir)
    store.write_json(run_dir / "run.json", header.model_copy(update={"schema_version": 99}))
    with pytest.raises(HarnessError, match="run.json has schema version 99, this harness writes 1"):
        resume(tmp_path, run_dir, model_args={"api_key": "k-1"})


def test_a_header_edited_to_other_samples_is_refused_on_resume(tmp_path):
    run_dir = first_run(tmp_path)
    header = store.read_header(run_dir)
    store.write_json(run_dir / "run.json", header.model_copy(update={"split": "dev", "status": "running"}))
    with pytest.raises(HarnessError, match=r"run.json: the run's samples are not those of engine-test-single/dev here"):
        resume(tmp_path, run_dir, model_args={"api_key": "k-1"})


def test_empty_outputs_are_counted(tmp_path):
    config = RunConfig(task=TASK, model="scripted", model_args={"outputs": ["fine", "  ", "", "ok"]}, metrics=[LENGTH],
                       output_dir=tmp_path / "runs", data_dir=tmp_path, use_cache=False, limit=4, resamples=0)
    summary = run(config).summary
    assert (summary.empty_outputs, summary.format_errors, summary.n) == (2, 0, 4)


def test_credentials_in_a_model_identity_never_reach_run_json(tmp_path):
    config = RunConfig(task=TASK, model=SERVED, model_args={"base_url": "http://user:PW-123456@127.0.0.1:1/v1?api_key=QK-987"},
                       metrics=[LENGTH], output_dir=tmp_path / "runs", data_dir=tmp_path, use_cache=False, limit=2, resamples=0)
    run_dir = run(config).run_dir
    text = (run_dir / "run.json").read_text()
    assert "PW-123456" not in text and "QK-987" not in text
    assert store.read_header(run_dir).model_identity["base_url"] == "http://<redacted>@127.0.0.1:1/v1?api_key=<redacted>"
    # resuming with the full URL again is the same model
    resume(tmp_path, run_dir, model_args={"base_url": "http://user:PW-123456@127.0.0.1:1/v1?api_key=QK-987"}, use_cache=False)
