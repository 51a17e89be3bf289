"""Records that contradict themselves are refused, not believed (issue 11): a sample written twice, a
run.json that does not describe its samples.jsonl, a finished folder without its summary, a SAGE file
naming a scenario twice, an empty ESC-Eval source, and an interval outside its metric's range. Runs are
made with the in-memory tasks of tests/engine_fixtures.py (no dataset is read)."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import registry, store
from harness.cli import main
from harness.comparison import compare_runs
from harness.contract import ScoredPair
from harness.errors import HarnessError
from harness.leaderboard import collect_runs
from harness.lifecycle import ModelSpec
from harness.runner import RunConfig, regrade, run, score
from harness.uncertainty import _normal_interval, compare, half_sample_weights, intervals, weighted_values
from reports import ab
from simulators.esc_eval_rescore import _from_run
from simulators.sage_reference import rescore_file

import engine_fixtures as fx
from engine_fixtures import DIALOGUE, LENGTH, QUESTIONS, TASK

fx.register()


@pytest.fixture(autouse=True)
def _fresh_plugins():
    fx.register()
    yield
    fx.register()


def make_run(tmp_path, name="runs", **kw) -> Path:
    base = dict(task=TASK, model="scripted", model_args={"echo": True}, split="test", metrics=[LENGTH, QUESTIONS],
                output_dir=tmp_path / name, data_dir=tmp_path, cache_path=tmp_path / "c.sqlite", resamples=0)
    base.update(kw)
    return run(RunConfig(**base)).run_dir


def seal(run_dir: Path, **update) -> None:
    """run.json with the digest of its records (what the runner writes when it makes a run), then `update`."""
    header = store.read_header(run_dir)
    ids = [r.id for r in sorted(store.read_records(run_dir), key=lambda r: r.index)]
    header = header.model_copy(update={"samples_digest": store.samples_digest(header.task, header.split, ids)})
    store.write_json(run_dir / store.HEADER, header.model_copy(update=update))


def edit_lines(run_dir: Path, edit) -> None:
    path = run_dir / store.SAMPLES
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def change_id(lines: list[str], position: int = 2, new_id: str = "mem/test/elsewhere") -> list[str]:
    record = json.loads(lines[position])
    record["id"] = new_id
    return lines[:position] + [json.dumps(record)] + lines[position + 1:]


# --------------------------------------------------------------------------- 1. one sample, two lines


def test_two_lines_of_one_sample_are_refused_naming_both(tmp_path):
    """Before: the first line was kept and `harness score` rewrote the file without the second, silently."""
    run_dir = make_run(tmp_path)
    edit_lines(run_dir, lambda lines: lines + [lines[2]])  # line 7 repeats line 3 (sample mem/test/2)
    before = (run_dir / store.SAMPLES).read_bytes()
    with pytest.raises(HarnessError) as info:
        store.read_records(run_dir)
    message = str(info.value)
    assert f"{run_dir / store.SAMPLES}:3 and :7 hold sample 'mem/test/2' twice;" in message and "\n" not in message
    out = CliRunner().invoke(main, ["score", str(run_dir)])
    assert out.exit_code == 2 and out.stderr.count("\n") == 1 and "samples.jsonl:3 and :7 hold sample 'mem/test/2' twice" in out.stderr, out.output
    assert (run_dir / store.SAMPLES).read_bytes() == before  # nothing deleted


def test_resume_writes_no_duplicates(tmp_path):
    """The runner's own resume skips finished samples, so its folders read back whole."""
    run_dir = make_run(tmp_path)
    edit_lines(run_dir, lambda lines: lines[:3])
    (run_dir / store.SUMMARY).unlink()
    store.write_json(run_dir / store.HEADER, store.read_header(run_dir).model_copy(update={"status": "running", "finished_at": None}))
    run(RunConfig(task="", model="", split="", data_dir=tmp_path, cache_path=tmp_path / "c.sqlite", resamples=0), resume=run_dir)
    assert [r.id for r in store.read_records(run_dir)] == [f"mem/test/{i}" for i in range(6)]


# --------------------------------------------------------------------------- 2. records that contradict run.json


def test_samples_digest_is_the_canonical_json_of_task_split_and_ids():
    import hashlib

    digest = store.samples_digest("mesc", "test", ["a", "b"])
    assert digest == hashlib.sha256(b'["mesc","test",["a","b"]]').hexdigest()
    assert digest != store.samples_digest("mesc", "test", ["b", "a"]) != store.samples_digest("mesc", "dev", ["a", "b"])


def test_a_sealed_finished_run_reads_back_and_old_or_running_folders_pass(tmp_path):
    run_dir = make_run(tmp_path)
    seal(run_dir)
    header, records = store.read_run(run_dir)
    assert header.samples_digest and len(records) == 6
    store.write_json(run_dir / store.HEADER, header.model_copy(update={"samples_digest": None, "task": DIALOGUE}))
    assert len(store.read_run(run_dir)[1]) == 6  # written before the digest existed: believed
    seal(run_dir, status="running")
    edit_lines(run_dir, lambda lines: lines[:3])
    assert len(store.read_run(run_dir)[1]) == 3  # a running folder is checked by the runner on resume


def refused_naming_run_json(run_dir: Path):
    return pytest.raises(HarnessError, match=rf"^{run_dir / store.HEADER}: its task/split \(.*\) does not match the records in samples\.jsonl "
                                             r"\(edited or from another run\); restore the folder or re-run\.$")


def test_an_edited_task_is_refused_by_every_reader(tmp_path, capsys):
    """Before: `harness score`, the leaderboard, `harness compare` and `ab export` believed run.json's task."""
    good, bad = make_run(tmp_path), make_run(tmp_path)
    seal(good)
    seal(bad, task=DIALOGUE)
    with refused_naming_run_json(bad):
        store.read_run(bad)
    with refused_naming_run_json(bad):
        score(bad, resamples=0)
    out = CliRunner().invoke(main, ["score", str(bad)])
    assert out.exit_code == 2 and out.stderr.count("\n") == 1 and f"{bad / store.HEADER}: its task/split ({DIALOGUE}/test)" in out.stderr, out.output
    capsys.readouterr()
    entries = collect_runs(tmp_path / "runs")  # the leaderboard leaves it out with one warning and goes on
    assert [e.run_dir for e in entries] == [good]
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {bad} left out: {bad / store.HEADER}: its task/split")
    with refused_naming_run_json(bad):
        compare_runs(good, bad, resamples=10)
    with refused_naming_run_json(bad):
        ab.shared_records(bad, good)


def test_an_edited_split_or_sample_count_is_refused(tmp_path):
    run_dir = make_run(tmp_path)
    seal(run_dir, split="dev")
    with refused_naming_run_json(run_dir):
        store.read_run(run_dir)
    seal(run_dir, n_samples=7)
    with pytest.raises(HarnessError, match=rf"^{run_dir / store.HEADER}: says 7 samples but samples\.jsonl holds 6"):
        store.read_run(run_dir)


def test_a_changed_record_id_is_refused(tmp_path):
    run_dir = make_run(tmp_path)
    seal(run_dir)
    edit_lines(run_dir, change_id)
    with refused_naming_run_json(run_dir):
        store.read_run(run_dir)
    with refused_naming_run_json(run_dir):
        score(run_dir, resamples=0)
    edit_lines(run_dir, lambda lines: lines[:5])  # a record dropped (the changed one kept out of it)
    seal(run_dir)
    edit_lines(run_dir, lambda lines: lines[:4])
    with refused_naming_run_json(run_dir):
        store.read_run(run_dir)


def test_esc_eval_rescore_refuses_a_run_whose_records_changed(tmp_path):
    """Before: `esc-eval rescore RUN_DIR` re-judged the dialogues of an edited folder as if they were the run's."""
    run_dir = make_run(tmp_path, task=DIALOGUE, metrics=[LENGTH], roles={"seeker": ModelSpec("scripted", {"echo": True})})
    store.write_json(run_dir / store.HEADER, store.read_header(run_dir).model_copy(update={"task": "esc-eval"}))
    seal(run_dir)  # a finished esc-eval run, as far as its folder can tell
    header, records = _from_run(run_dir)
    assert len(records) == 5 and all(r.dialogue for r in records)
    edit_lines(run_dir, lambda lines: change_id(lines, 1, "esc-eval/other/9"))
    with refused_naming_run_json(run_dir):
        _from_run(run_dir)


# --------------------------------------------------------------------------- 3. finished without summary.json


def test_a_finished_run_without_summary_is_left_out_with_a_warning(tmp_path, capsys):
    """Before: left out silently."""
    good, broken = make_run(tmp_path), make_run(tmp_path)
    (broken / store.SUMMARY).unlink()
    capsys.readouterr()
    assert [e.run_dir for e in collect_runs(tmp_path / "runs")] == [good]
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {broken} left out: finished but has no summary.json")
    assert f"harness score {broken}" in warnings[0]


# --------------------------------------------------------------------------- 4. SAGE: one scenario, two lines


def sage_line(scenario: str, final: int) -> str:
    return json.dumps({"id": scenario, "emo_point": final, "emo_state": "Emotion-C", "history": [
        {"role": "user", "content": "你好", "emotion-point": 40},
        {"role": "assistant", "content": "我在听。"},
        {"role": "user", "content": "嗯。", "emotion-point": final, "thinking": "t", "planning": {"change": final - 40}}]}, ensure_ascii=False)


def test_sage_rescore_refuses_a_scenario_given_twice(tmp_path):
    """Before: the scenario was counted twice (n = 3, score 33.3 instead of n = 2, 30.0)."""
    path = tmp_path / "m_result.jsonl"
    path.write_text(sage_line("a", 20) + "\n" + sage_line("b", 40) + "\n" + "\n", encoding="utf-8")
    assert (rescore_file(path).n, rescore_file(path).score) == (2, 30.0)
    path.write_text(sage_line("a", 20) + "\n" + sage_line("b", 40) + "\n" + "\n" + sage_line("b", 40) + "\n", encoding="utf-8")
    with pytest.raises(HarnessError) as info:
        rescore_file(path)
    assert str(info.value).startswith(f"{path}:2 and :4 hold scenario 'b' twice;") and "\n" not in str(info.value)
    out = CliRunner().invoke(main, ["sage", "rescore", str(path)])
    assert out.exit_code == 2 and out.output.strip().count("\n") == 0 and f"{path}:2 and :4" in out.output


# --------------------------------------------------------------------------- 5. nothing to re-judge


@pytest.mark.parametrize("content", ["{}", "[]"])
def test_esc_eval_rescore_of_an_empty_source_makes_no_folder(tmp_path, content):
    """Before: `{}` made a finished run of n = 0 (`[]` was already refused as not a transcript file)."""
    source = tmp_path / "model_en.json"
    source.write_text(content)
    out_dir = tmp_path / "out"
    out = CliRunner().invoke(main, ["esc-eval", "rescore", str(source), "--judge", "scripted", "--output-dir", str(out_dir),
                                    "--cache", str(tmp_path / "c.sqlite")])
    assert out.exit_code == 2 and out.stderr.startswith(f"error: {source}") and out.stderr.count("\n") == 1, out.output
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_regrade_of_no_records_makes_no_folder(tmp_path):
    """Before: a finished run of n = 0."""
    run_dir = make_run(tmp_path)
    with pytest.raises(HarnessError, match="no records"):
        regrade(store.read_header(run_dir), [], [fx.HELPFUL], {"judge": ModelSpec("scripted", {"default": "Rating: 3"})},
                tmp_path / "regraded", "re-graded from nothing", cache_path=tmp_path / "c.sqlite", resamples=0)
    assert not (tmp_path / "regraded").exists()


# --------------------------------------------------------------------------- 6. intervals stay in range


def dominated_corpus() -> list[ScoredPair]:
    """20 short answers and one of 600 distinct words: half-samples with it and without it differ wildly."""
    short = ["ok .", "i see .", "ok .", "yes .", "i see ."] * 4
    return [ScoredPair(t, "x") for t in short + [" ".join(f"word{i}" for i in range(600))]]


@pytest.mark.parametrize("name", ["dist-1", "dist-2", "dist-3", "dist-2-plain"])
def test_a_jackknife_interval_never_leaves_the_metric_range(name):
    """Before: the normal interval of the half-samples, (27.1, 165.3) for dist-1, was reported as it was."""
    metric = registry.metrics.get(name)
    ps = dominated_corpus()
    value = metric.compute(ps).corpus
    raw = _normal_interval(value, weighted_values(metric, ps, half_sample_weights(len(ps), 300, 0)), 0.95)
    assert raw[1] > 100  # what the method gives
    low, high = intervals([metric], ps, {}, resamples=300, seed=0)[name]
    assert 0 <= low <= value <= high <= 100 and high == 100 and low == pytest.approx(raw[0])
    difference = compare([metric], ps, [ScoredPair("ok .", "x")] * len(ps), resamples=300, seed=0)[0]
    assert -100 <= difference.interval[0] <= difference.interval[1] <= 100


def test_bounded_metrics():
    for name in ("bleu-1", "bleu-4", "rouge-l", "meteor", "f1", "dist-1", "dist-3", "dist-1-plain", "dist-3-plain", "dist-3-response"):
        assert registry.metrics.get(name).bounds == (0.0, 100.0), name
    assert registry.metrics.get("length").bounds is None  # tokens: no upper bound
