"""Video frames for the multimodal ESC tasks, cut with ffmpeg from the user's own copy of the source videos
(the videos are copyrighted and never distributed; the datasets only give times).

A task describes what it needs as `FrameJob`s: for each sample, the episode and the time span its frames
come from. `prepare` then finds the episode files, runs ffmpeg once per clip (the samples of one dialogue
share a clip: their spans overlap), keeps the I-frames only (`select='eq(pict_type,I)'`, variable frame
rate, as the FIRES paper extracts "key frames"), and stores at most `max_frames` of them per sample,
picked evenly over the span (the paper caps the frames at 16):

    <root>/<job.folder>/frame_00.png ... frame_15.png   (hard links to shared files where possible)
    <root>/<job.folder>/frames.json                     manifest: episode file, span, frame times

The manifest is written last, so a sample with a manifest is done: a rerun skips it (and a run killed
half-way redoes only the unfinished samples). A span that holds no I-frame gets a manifest with no frames;
its sample is evaluated from text alone.

Episode files are found anywhere under the videos folder by a season/episode tag in their name:
``S01E05``, ``s1e5``, ``S01.E05``, ``1x05`` or ``Season 1 Episode 5`` (case-insensitive), with a video suffix
(.mp4, .mkv, .avi, ...). An episode with no file is reported once and its samples are skipped; two files
for one episode are an error (keep one). The times must fit the files: releases at another frame rate
(e.g. PAL speed-up) shift every span.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from harness import paths
from harness.errors import HarnessError

FRAMES_ENV = "ESC_HARNESS_FRAMES"
MAX_FRAMES = 16
MANIFEST = "frames.json"
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".avi", ".m4v", ".mov", ".webm", ".ts", ".wmv", ".mpg", ".mpeg", ".flv"})

_EPISODE_TAGS = (
    re.compile(r"s(\d{1,2})[ ._-]?e(\d{1,3})(?!\d)", re.IGNORECASE),
    re.compile(r"(?<!\d)(\d{1,2})x(\d{1,3})(?!\d)", re.IGNORECASE),
    re.compile(r"season[ ._-]*(\d{1,2})[ ._-]*episode[ ._-]*(\d{1,3})(?!\d)", re.IGNORECASE),
)
_SRT_TIME = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2})(?:[,.](\d{1,3}))?\s*$")
_SHOWINFO = re.compile(r"\bn:\s*(\d+)\s+pts:\s*-?\d+\s+pts_time:\s*(-?[\d.]+(?:e[-+]?\d+)?)")

T = TypeVar("T")


def frames_home() -> Path:
    """Where tasks keep their frames by default: $ESC_HARNESS_FRAMES, else <harness home>/frames (one
    sub-folder per task)."""
    if os.environ.get(FRAMES_ENV):
        return Path(os.environ[FRAMES_ENV]).expanduser()
    return paths.home() / "frames"


def episode_tag(season: int, episode: int) -> str:
    return f"S{season:02d}E{episode:02d}"


def episode_of(name: str) -> tuple[int, int] | None:
    """(season, episode) from a file name, or None."""
    for pattern in _EPISODE_TAGS:
        m = pattern.search(name)
        if m:
            return int(m.group(1)), int(m.group(2))
    return None


def find_episodes(videos_dir: Path) -> dict[tuple[int, int], list[Path]]:
    """{(season, episode): video files} for every video file under `videos_dir` whose name carries a tag."""
    found: dict[tuple[int, int], list[Path]] = {}
    for path in sorted(Path(videos_dir).rglob("*")):
        if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file():
            key = episode_of(path.name)
            if key is not None:
                found.setdefault(key, []).append(path)
    return found


def srt_seconds(text: str) -> float:
    """'HH:MM:SS,mmm' (SRT; '.' accepted for ',') -> seconds. ValueError if malformed."""
    m = _SRT_TIME.match(text or "")
    if not m:
        raise ValueError(f"not an SRT time: {text!r}")
    h, mi, s, ms = m.groups()
    return int(h) * 3600 + int(mi) * 60 + int(s) + int((ms or "0").ljust(3, "0")) / 1000


def pick_evenly(items: Sequence[T], k: int) -> list[T]:
    """At most k items spread evenly over `items`, keeping the first and the last."""
    n = len(items)
    if n <= k:
        return list(items)
    if k <= 1:
        return [items[-1]] if k == 1 else []
    return [items[round(i * (n - 1) / (k - 1))] for i in range(k)]


@dataclass(frozen=True)
class FrameJob:
    """The frames one sample needs."""

    sample_id: str
    folder: str  # relative to the frames root, e.g. "test/d0123/t05"
    clip: str  # samples of one clip share one ffmpeg pass (e.g. "d0123")
    season: int
    episode: int
    start: float  # seconds from the start of the episode file
    end: float  # exclusive


@dataclass
class FramesReport:
    root: Path
    written: int = 0  # samples done now
    already: int = 0  # samples done by an earlier call
    empty: list[str] = field(default_factory=list)  # samples whose span holds no I-frame (text only)
    missing: dict[str, int] = field(default_factory=dict)  # episode tag -> samples skipped for want of its file
    failed: dict[str, str] = field(default_factory=dict)  # clip -> ffmpeg's complaint (its samples skipped)
    unusable: list[str] = field(default_factory=list)  # "sample id: why" for samples the task could not place in time

    def __str__(self) -> str:
        lines = [f"{self.root}: {self.written} sample(s) done now, {self.already} already done"
                 + (f", {len(self.empty)} with no I-frame in their span (text only)" if self.empty else "") + "."]
        if self.missing:
            skipped = sum(self.missing.values())
            lines.append(f"missing episode file(s), {skipped} sample(s) skipped: "
                         + ", ".join(f"{tag} ({n})" for tag, n in sorted(self.missing.items()))
                         + "; add them to the videos folder and run the command again.")
        for clip, why in sorted(self.failed.items()):
            lines.append(f"ffmpeg failed on {clip}: {why}")
        if self.unusable:
            lines.append(f"{len(self.unusable)} sample(s) without usable times or episode, e.g. {self.unusable[0]}")
        return "\n".join(lines)


def load_manifest(folder: Path) -> list[Path] | None:
    """The frame files of a prepared sample folder (those that still exist), or None if it was not prepared."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
        names = [f["file"] for f in manifest["frames"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [Path(folder) / n for n in names if (Path(folder) / n).is_file()]


def _done(folder: Path) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        return all((folder / f["file"]).is_file() for f in manifest["frames"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def ffmpeg_path() -> str:
    found = shutil.which("ffmpeg")
    if not found:
        raise HarnessError("ffmpeg is not installed (or not on PATH); install it, e.g. `apt-get install ffmpeg`, then run the command again.")
    return found


@lru_cache(maxsize=4)
def _vfr_option(ffmpeg: str) -> str:
    """'-fps_mode' (ffmpeg >= 5) or the older spelling '-vsync' of the same setting."""
    try:
        help_text = subprocess.run([ffmpeg, "-hide_banner", "-h", "long"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        help_text = ""
    return "-fps_mode" if "-fps_mode" in help_text else "-vsync"


def iframes(video: Path, start: float, end: float, out_dir: Path) -> list[tuple[float, Path]]:
    """Every I-frame of `video` in [start, end) as PNG files in `out_dir`: [(seconds from the file's start, file)]."""
    ffmpeg = ffmpeg_path()
    command = [
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "info", "-y",
        "-ss", f"{start:.3f}", "-t", f"{max(end - start, 0.001):.3f}", "-i", str(video),
        "-map", "0:v:0", "-vf", "select='eq(pict_type,I)',showinfo", _vfr_option(ffmpeg), "vfr",
        "-start_number", "0", str(out_dir / "i_%05d.png"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, errors="replace", check=False)
    if result.returncode != 0:
        last = [line for line in result.stderr.splitlines() if line.strip()]
        raise RuntimeError(last[-1].strip() if last else f"exit status {result.returncode}")
    frames = []
    for m in _SHOWINFO.finditer(result.stderr):
        path = out_dir / f"i_{int(m.group(1)):05d}.png"
        if path.is_file():
            frames.append((round(start + float(m.group(2)), 3), path))
    return frames


def _place(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # the samples of a clip share most frames: store each once
    except OSError:
        shutil.copyfile(source, target)


def _write_sample(job: FrameJob, video: Path, clip_frames: list[tuple[float, Path]], root: Path, max_frames: int) -> int:
    folder = root / job.folder
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("frame_*.png"):  # leftovers of an interrupted attempt
        old.unlink()
    in_span = [(t, p) for t, p in clip_frames if job.start <= t < job.end]
    chosen = pick_evenly(in_span, max_frames)
    entries = []
    for k, (t, p) in enumerate(chosen):
        name = f"frame_{k:02d}.png"
        _place(p, folder / name)
        entries.append({"file": name, "time": t})
    manifest = {
        "sample": job.sample_id, "video": video.name, "season": job.season, "episode": job.episode,
        "span": [job.start, job.end], "iframes_in_span": len(in_span), "max_frames": max_frames, "frames": entries,
    }
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    os.replace(tmp, folder / MANIFEST)  # last: its presence means the sample is done
    return len(entries)


def prepare(jobs: Sequence[FrameJob], videos_dir: Path, root: Path, max_frames: int = MAX_FRAMES, progress: bool | None = None) -> FramesReport:
    """Extract the frames of every job not done yet (see the module docstring)."""
    from tqdm import tqdm

    root = Path(root)
    report = FramesReport(root)
    todo = []
    for job in jobs:
        if _done(root / job.folder):
            report.already += 1
        else:
            todo.append(job)
    if not todo:
        return report
    videos_dir = Path(videos_dir)
    if not videos_dir.is_dir():
        raise HarnessError(f"{videos_dir}: no such folder of episode videos.")
    episodes = find_episodes(videos_dir)
    if not episodes:
        raise HarnessError(f"{videos_dir}: no video file with a season/episode tag in its name (e.g. 'In.Treatment.S01E05.mkv', 's1e5', '1x05').")
    needed = sorted({(j.season, j.episode) for j in todo})
    doubles = [(k, episodes[k]) for k in needed if len(episodes.get(k, [])) > 1]
    if doubles:
        raise HarnessError("more than one video file for " + "; ".join(f"{episode_tag(*k)}: {', '.join(str(p) for p in v)}" for k, v in doubles)
                           + ". Keep one file per episode under the videos folder.")
    ffmpeg_path()
    clips: dict[str, list[FrameJob]] = {}
    for job in todo:
        key = (job.season, job.episode)
        if key not in episodes:
            tag = episode_tag(*key)
            report.missing[tag] = report.missing.get(tag, 0) + 1
        else:
            clips.setdefault(job.clip, []).append(job)
    root.mkdir(parents=True, exist_ok=True)
    show = sys.stderr.isatty() if progress is None else progress
    with tqdm(total=sum(len(v) for v in clips.values()), desc="frames", unit="sample", disable=not show) as bar:
        for clip, clip_jobs in clips.items():
            video = episodes[(clip_jobs[0].season, clip_jobs[0].episode)][0]
            with tempfile.TemporaryDirectory(prefix=".clip-", dir=root) as work:  # on the same disk: links work
                try:
                    found = iframes(video, min(j.start for j in clip_jobs), max(j.end for j in clip_jobs), Path(work))
                except (RuntimeError, OSError) as exc:
                    report.failed[clip] = f"{video.name}: {exc}"
                    bar.update(len(clip_jobs))
                    continue
                for job in clip_jobs:
                    if _write_sample(job, video, found, root, max_frames) == 0:
                        report.empty.append(job.sample_id)
                    report.written += 1
                    bar.update(1)
    return report
