"""Video frames (tasks/frames.py, MescTask.prepare_frames, `harness data frames`) on a video this test makes.

The fake episode is 40 s at 10 frames/s with an I-frame exactly every 10 frames (GOP 10, no scene-cut
keyframes), so its I-frames sit at 0 s, 1 s, ..., 39 s; a tiny MESC-like dataset puts samples on it.
"""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import registry
from harness.cli import main
from harness.errors import HarnessError
from tasks import frames as vf
from tasks.mesc import MescTask, Utterance, frame_jobs, frame_span


def _ffmpeg() -> str:
    found = shutil.which("ffmpeg")
    if not found:
        pytest.fail("ffmpeg is needed for the frame tests: install it (install.sh does: apt-get install ffmpeg)")
    return found


def make_video(path: Path, seconds: int = 40) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=64x48:rate=10",
                    "-c:v", "libx264", "-g", "10", "-keyint_min", "10", "-sc_threshold", "0", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def iframe_times(video: Path) -> set[float]:
    probe = subprocess.run([shutil.which("ffprobe") or "ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "frame=pts_time,pict_type",
                            "-of", "csv=p=0", str(video)], capture_output=True, text=True, check=True).stdout
    times = set()
    for line in probe.splitlines():
        cells = [c for c in line.split(",") if c]
        if len(cells) >= 2 and cells[1] == "I":
            times.add(round(float(cells[0]), 3))
    return times


def t(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


# (dialogue, speaker, emotion, strategy, season, episode, start, end)
ROWS = [
    # dialogue 0 (train, S01E01): targets t01 (span 1.5-3.2 s) and t03 (span 1.5-35 s)
    (0, "Client", "sadness", "undefined", 1, 1, 1.5, 3.0),
    (0, "Therapist", "neutral", "Open question", 1, 1, 3.2, 3.9),
    (0, "Client", "anger", "undefined", 1, 1, 4.0, 30.0),
    (0, "Therapist", "neutral", "Approval", 1, 1, 35.0, 36.0),
    # dialogue 1 (test, S01E02, no video file): target t01
    (1, "Client", "fear", "undefined", 1, 2, 10.0, 12.0),
    (1, "Therapist", "neutral", "Reflection of feelings", 1, 2, 12.5, 13.0),
    # dialogue 2 (val, S01E01): target t01 whose span 36.1-36.8 s holds no I-frame
    (2, "Client", "joy", "undefined", 1, 1, 36.1, 36.6),
    (2, "Therapist", "joy", "Approval", 1, 1, 36.8, 37.5),
]


@pytest.fixture
def dataset(tmp_path) -> Path:
    folder = tmp_path / "data" / "mesc"
    folder.mkdir(parents=True)
    with open(folder / "MESC.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\r\n")
        w.writerow(["Utterance", "Speaker", "Emotion", "Strategy", "Dialogue_ID", "Utterance_ID", "Season", "Episode", "StartTime", "EndTime"])
        counters: dict[int, int] = {}
        for did, speaker, emotion, strategy, season, episode, start, end in ROWS:
            uid = counters.get(did, 0)
            counters[did] = uid + 1
            w.writerow([f"utterance {did}.{uid}", speaker, emotion, strategy, did, uid, season, episode, t(start), t(end)])

    def as_json(did: int) -> list[dict]:
        dialog = [{"text": "x", "speaker": "user" if sp == "Client" else "sys", "emotion": em, "strategy": st}
                  for d, sp, em, st, *_ in ROWS if d == did]
        return [{"problem_type": "x", "situation": "x", "dialog": dialog}]

    (folder / "test.json").write_text(json.dumps(as_json(1)), encoding="utf-8")
    (folder / "val.json").write_text(json.dumps(as_json(2)), encoding="utf-8")
    (folder / "strategy_definitions.txt").write_text("none\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def episode(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "In.Treatment.S01E01.720p.mp4")


@pytest.fixture
def videos(tmp_path, episode) -> Path:
    folder = tmp_path / "videos" / "season 1"
    folder.mkdir(parents=True)
    shutil.copyfile(episode, folder / episode.name)
    return tmp_path / "videos"


def manifest(root: Path, sample: str) -> dict:
    return json.loads((root / sample / vf.MANIFEST).read_text())


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize("name,key", [
    ("In.Treatment.S01E05.720p.mkv", (1, 5)), ("in_treatment_s1e5.mp4", (1, 5)), ("In Treatment - 2x13 - Mia.avi", (2, 13)),
    ("InTreatment.S03.E07.mp4", (3, 7)), ("In Treatment Season 2 Episode 31.mp4", (2, 31)), ("In.Treatment.1080p.mp4", None),
])
def test_episode_names(name, key):
    assert vf.episode_of(name) == key


def test_srt_times_and_even_picks():
    assert vf.srt_seconds("00:00:54,097") == pytest.approx(54.097)
    assert vf.srt_seconds("01:02:03.5") == pytest.approx(3723.5)
    with pytest.raises(ValueError):
        vf.srt_seconds("54,097")
    assert vf.pick_evenly(list(range(33)), 16) == [round(i * 32 / 15) for i in range(16)]
    assert vf.pick_evenly([1, 2], 16) == [1, 2]
    assert vf.pick_evenly(list(range(5)), 1) == [4]


# --------------------------------------------------------------------------- extraction


def test_extract_spans_cap_iframes_and_missing_episode(dataset, videos, episode, tmp_path):
    out = tmp_path / "frames"
    report = MescTask(frames_dir="off").prepare_frames(videos, dataset, out, progress=False)
    assert (report.written, report.already) == (3, 0)
    assert report.missing == {"S01E02": 1}  # reported once, its sample skipped
    assert report.empty == ["mesc/val/d0002/t01"]
    assert "S01E02 (1)" in str(report) and "3 sample(s) done now" in str(report)
    assert not (out / "test" / "d0001" / "t01").exists()

    keys = iframe_times(episode)
    assert keys == {float(s) for s in range(40)}  # the test video's I-frames, independently of the harness
    short = manifest(out, "train/d0000/t01")
    assert short["span"] == [1.5, 3.2] and short["video"] == episode.name
    assert [f["time"] for f in short["frames"]] == [2.0, 3.0]  # only the I-frames inside [1.5, 3.2)
    long = manifest(out, "train/d0000/t03")
    times = [f["time"] for f in long["frames"]]
    assert long["iframes_in_span"] == 33 and len(times) == 16  # 2 s .. 34 s, capped at 16
    assert times == [float(2 + round(i * 32 / 15)) for i in range(16)] and set(times) <= keys
    assert manifest(out, "val/d0002/t01")["frames"] == []
    for sample in ("train/d0000/t01", "train/d0000/t03"):
        files = sorted((out / sample).glob("frame_*.png"))
        assert [f.name for f in files] == [f["file"] for f in manifest(out, sample)["frames"]]
        assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no work folders left


def test_rerun_is_idempotent_and_resumes(dataset, videos, tmp_path):
    out = tmp_path / "frames"
    task = MescTask(frames_dir="off")
    task.prepare_frames(videos, dataset, out, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = task.prepare_frames(videos, dataset, out, progress=False)
    assert (again.written, again.already, again.missing) == (0, 3, {"S01E02": 1})
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps  # nothing rewritten
    # a sample whose files went missing (an interrupted run) is redone, and only it
    (out / "train/d0000/t03/frame_05.png").unlink()
    redo = task.prepare_frames(videos, dataset, out, progress=False)
    assert (redo.written, redo.already) == (1, 2)
    assert len(list((out / "train/d0000/t03").glob("frame_*.png"))) == 16
    # the missing episode arrives: only its sample is done
    make_video(videos / "In Treatment 1x02.mp4", seconds=14)
    last = task.prepare_frames(videos, dataset, out, progress=False)
    assert (last.written, last.already, last.missing) == (1, 3, {})
    assert [f["time"] for f in manifest(out, "test/d0001/t01")["frames"]] == [10.0, 11.0, 12.0]


def test_video_folder_problems(dataset, videos, episode, tmp_path, monkeypatch):
    task = MescTask(frames_dir="off")
    with pytest.raises(HarnessError, match="no video file with a season/episode tag"):
        task.prepare_frames(tmp_path / "data", dataset, tmp_path / "f1", progress=False)
    shutil.copyfile(episode, videos / "in_treatment_s01e01.mkv")
    with pytest.raises(HarnessError, match="more than one video file for S01E01"):
        task.prepare_frames(videos, dataset, tmp_path / "f2", progress=False)
    monkeypatch.setattr(vf.shutil, "which", lambda name: None)
    (videos / "in_treatment_s01e01.mkv").unlink()
    with pytest.raises(HarnessError, match="ffmpeg is not installed"):
        task.prepare_frames(videos, dataset, tmp_path / "f3", progress=False)


def test_broken_video_is_reported_not_fatal(dataset, tmp_path):
    videos = tmp_path / "broken"
    videos.mkdir()
    (videos / "S01E01.mp4").write_bytes(b"not a video")
    report = MescTask(frames_dir="off").prepare_frames(videos, dataset, tmp_path / "frames", progress=False)
    assert report.written == 0 and set(report.failed) == {"d0000", "d0002"}
    assert "ffmpeg failed on d0000: S01E01.mp4" in str(report)


# --------------------------------------------------------------------------- the task uses them


def test_task_attaches_frames_in_every_mode(dataset, videos, tmp_path, monkeypatch):
    out = tmp_path / "frames"
    MescTask().prepare_frames(videos, dataset, out, progress=False)
    for mode in ("plain", "fires", "fixed-cot", "flexible-cot"):
        task = MescTask(prompt=mode, frames_dir=str(out))
        train = task.load("train", dataset)
        assert [s.labels["frames"] for s in train] == [2, 16]
        request = task.build_request(train[1])
        images = [m.images for m in request.messages]
        assert images[-1] == tuple(str((out / "train/d0000/t03" / f"frame_{k:02d}.png").resolve()) for k in range(16))
        assert request.messages[-1].role == "user" and not any(images[:-1]), mode
        # no frames (missing episode; empty span): text only, flagged
        test = task.load("test", dataset)
        assert test[0].labels["frames"] == 0 and not any(m.images for m in task.build_request(test[0]).messages)
        val = task.load("val", dataset)
        assert val[0].labels["frames"] == 0 and not any(m.images for m in task.build_request(val[0]).messages)
    # frames switched off, or no frames in the default folder: labels exactly as built, no images
    monkeypatch.setenv(vf.FRAMES_ENV, str(tmp_path / "no-frames-here"))
    for task in (MescTask(frames_dir="off"), MescTask()):
        sample = task.load("train", dataset)[1]
        assert "frames" not in sample.labels and not any(m.images for m in task.build_request(sample).messages)
    with pytest.raises(HarnessError, match="frames_dir .* is not a folder"):
        MescTask(frames_dir=str(tmp_path / "typo"))


def test_default_frames_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(vf.FRAMES_ENV, raising=False)
    monkeypatch.setenv("ESC_HARNESS_HOME", str(tmp_path / "home"))
    assert MescTask().frames_root == tmp_path / "home" / "frames" / "mesc"
    monkeypatch.setenv(vf.FRAMES_ENV, str(tmp_path / "big-disk"))
    assert MescTask().frames_root == tmp_path / "big-disk" / "mesc"


# --------------------------------------------------------------------------- command line


def test_cli_frames(dataset, videos, tmp_path, monkeypatch):
    monkeypatch.setenv("ESC_HARNESS_ALLOW_MODIFIED_DATA", "1")  # the fake dataset is not the published one
    monkeypatch.setenv(vf.FRAMES_ENV, str(tmp_path / "home" / "frames"))
    runner = CliRunner()
    args = ["data", "frames", "mesc", "--videos", str(videos), "--data-dir", str(dataset.parent)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    default = tmp_path / "home" / "frames" / "mesc"
    assert "3 sample(s) done now" in result.output and "S01E02 (1)" in result.output and str(default) in result.output
    assert len(manifest(default, "train/d0000/t03")["frames"]) == 16
    result = runner.invoke(main, args + ["--output-dir", str(tmp_path / "elsewhere")])
    assert result.exit_code == 0 and (tmp_path / "elsewhere" / "train/d0000/t01" / vf.MANIFEST).is_file()
    assert "0 sample(s) done now, 3 already done" in runner.invoke(main, args).output

    class TextOnly(MescTask):
        """A task without frames."""

        prepare_frames = None

    registry.tasks.register("text-only-test", TextOnly)
    result = runner.invoke(main, ["data", "frames", "text-only-test", "--videos", str(videos)])
    assert result.exit_code == 2 and "has no video frames" in result.output


def test_samples_without_usable_times_are_reported(dataset, videos, tmp_path):
    csv_path = dataset / "MESC.csv"
    text = csv_path.read_text(encoding="utf-8").replace("00:00:10,000", "soon")  # dialogue 1's client start
    csv_path.write_text(text, encoding="utf-8")
    jobs, unusable = frame_jobs(dataset)
    assert [j.sample_id for j in jobs] == ["mesc/train/d0000/t01", "mesc/train/d0000/t03", "mesc/val/d0002/t01"]
    assert unusable == ["mesc/test/d0001/t01: not an SRT time: 'soon'"]
    report = MescTask(frames_dir="off").prepare_frames(videos, dataset, tmp_path / "frames", progress=False)
    assert report.missing == {} and report.written == 3
    assert "1 sample(s) without usable times or episode, e.g. mesc/test/d0001/t01" in str(report)


def test_frame_span_rules():
    def u(start: str, end: str) -> Utterance:
        return Utterance("x", "Client", "neutral", None, 0, 1, 1, start, end)

    history = [u("00:01:00,000", "00:01:05,000"), u("00:01:06,000", "00:01:09,500")]
    assert frame_span(history, u("00:01:10,250", "00:01:12,000")) == (60.0, 70.25)  # up to the target's start
    assert frame_span(history, u("00:00:30,000", "00:00:31,000")) == (60.0, 69.5)  # times run backwards
