"""`harness train fires-synth`: synthesise the FIRES flexible-thinking data (Wang et al. 2025, section 3.3 and
appendix A) with any teacher model.

For every MESC training instance (the harness's own `mesc` task, train split, in its order) the teacher is
shown the conversation so far, up to 16 evenly spaced keyframes of its video (when the frames were made with
`harness data frames mesc`), MESC's emotion and strategy labels of the turn as hints (the paper's appendix B)
and the therapist's actual reply, and asked for the thinking that preceded the reply. The instructions and
the three hand-written demonstrations (`demonstrations.py`) are ours; appendix A is their model, not their
text. Three variants, each with its own instructions and demonstrations:

    flexible  only the aspects (Visual Scene, Emotion, Situation, Response Strategy) that shaped the reply,
              "Not helpful" for the others, "Unknown" where the conversation does not tell (FIRES)
    fixed     every aspect, every time (the w/o-FleT ablation)
    free      free-form reasoning, no predefined aspects (the w/o-All ablation)

An answer is read with `tasks.prompting.analyse_thinking`'s labels and must keep the format: after an
optional "Thinking process:", only the four aspects' labels (one line each; no preamble, no other label, no
aspect twice), a Response Strategy with content, and for `fixed` every aspect with content (a declined
one, "Not helpful" / "None", breaks it); for `free`, any non-empty text. No variant may hold
<think>/<response> tags or the therapist's reply itself (replies of 5+ words, case-insensitive). A broken
answer is asked again (`--retries`, default 2) at temperature 0.7 with seed = the attempt number (the first
attempt is at temperature 0), so the cache key differs; an instance whose answers all break is dropped and
listed in the manifest. An aspect the flexible answer leaves out altogether counts as declined in the
target (and as "absent" in the statistics).

The kept thinking: for `flexible` the included aspects only, in the order above, on one line
("Visual Scene: ... Emotion: ... Situation: ... Response Strategy: ...", as the paper's case-study
outputs; "Situation: Unknown" is kept); `fixed` all four; `free` the text on one line. Numbering and
markdown are stripped. The target is `data.target_of(thinking, reference)`.

The folder `--out DIR` (see `data.py`): synth.json (the manifest: running / finished / failed with its
one-line error) and data.jsonl (one row per kept instance, appended and fsync'ed as it finishes, in
sample order). The same command again resumes: rows on disk and the dropped instances are not asked
again, and every teacher answer goes through the response cache (`--cache`), so nothing answered is paid
for twice. A truncated last line (a kill mid-write) is cut off and its instance asked again (from the cache
when it was answered); a damaged line elsewhere is one error naming file:line. A folder made with another
teacher, variant, prompt, dataset or setting is refused with one line (the cache options may change). This
machinery is `baselines/teacherjob.py`, shared with `harness train compeer-data`.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import click

from harness import options
from harness.cache import CachedModel
from harness.contract import ChatRequest, GenerationConfig, Message, ModelOutput, Sample
from harness.errors import HarnessError
from harness.lifecycle import Folder, now
from harness.redaction import secrets_of
from harness.runner import load_samples, load_task
from tasks import frames as video_frames
from tasks import prompting

from .. import teacherjob
from . import data
from .data import MANIFEST, ROWS, VARIANTS, SynthManifest, SynthRow
from .demonstrations import Demonstration, resolve

PAPER_TEACHER = "gpt-4o-2024-11-20"  # the teacher of the FIRES data
MAX_FRAMES = video_frames.MAX_FRAMES  # the paper's cap on keyframes per instance (16)
MAX_TOKENS = prompting.THINKING_MAX_TOKENS
RETRY_TEMPERATURE = teacherjob.RETRY_TEMPERATURE
QUOTE_MIN_WORDS = 5  # a gold reply this long found verbatim in an answer breaks it
SPLIT = "train"
LABELS = {"visual_scene": "Visual Scene", "emotion": "Emotion", "situation": "Situation", "response_strategy": "Response Strategy"}
HINT_KEYS = ("client_emotion", "emotion", "strategy")  # MESC's labels that go to the teacher

# --------------------------------------------------------------------------- the prompt

_ROLE = (
    "# Role\n"
    "You reconstruct the inner reasoning of psychotherapists. Given a moment of a counselling session, you work out what an "
    "experienced therapist noticed and weighed just before speaking."
)

_TASK = (
    "# Task\n"
    "You receive part of a session between a client and a therapist: the conversation so far, keyframes from the video of the "
    "session when there are any (attached in time order), a few labels from the dataset, and the reply the therapist actually "
    "gave next. Work out the thinking that most plausibly led the therapist to exactly that reply."
)

_ASPECTS = (
    "Visual Scene: what the keyframes show that matters here - the client's facial expression, gaze, posture, gestures or "
    "actions - and what this suggests about the client's state or the interaction.\n"
    "Emotion: the emotion(s) the client is feeling, judged from the words and the visual cues together.\n"
    "Situation: if the client's emotion is not neutral, what brought it about; if it is neutral, the problem or issue the client "
    "is dealing with.\n"
    "Response Strategy: the approach the therapist takes in the reply and what the reply is meant to achieve."
)

_COMMON_RULES = (
    "- The labels are hints from the dataset's annotators: use them, but name emotions and strategies in your own words, more "
    "precisely where the conversation allows.\n"
    "- Do not repeat or quote the therapist's reply: describe the thinking that comes before it.\n"
    "- Be brief: a phrase or one sentence per point."
)

INSTRUCTIONS = {
    "flexible": "\n\n".join([
        _ROLE,
        _TASK + " The thinking may draw on four aspects:\n" + _ASPECTS,
        "# Requirements\n"
        "- Write four lines, one per aspect, in the order above, each as \"Aspect: value\" with the aspect's name spelt as above. "
        "Write nothing else: no heading, numbering, markdown or closing remark.\n"
        "- Be selective: describe an aspect only if it really shaped this particular reply, and write \"Not helpful\" for the others. "
        "The Response Strategy always shapes the reply: always describe it.\n"
        "- Write \"Unknown\" for an aspect that matters but that the conversation so far does not reveal (e.g. what lies behind the "
        "client's feelings).\n"
        "- When no keyframes are attached, write \"Not helpful\" for the Visual Scene.\n" + _COMMON_RULES,
    ]),
    "fixed": "\n\n".join([
        _ROLE,
        _TASK + " The thinking covers four aspects:\n" + _ASPECTS,
        "# Requirements\n"
        "- Write four lines, one per aspect, in the order above, each as \"Aspect: value\" with the aspect's name spelt as above. "
        "Write nothing else: no heading, numbering, markdown or closing remark.\n"
        "- Describe every aspect, every time, even when it matters little for this reply; never write \"Not helpful\" or \"None\".\n"
        "- Write \"Unknown\" for what the conversation so far does not reveal; when no keyframes are attached, the Visual Scene is "
        "\"Unknown\".\n" + _COMMON_RULES,
    ]),
    "free": "\n\n".join([
        _ROLE,
        _TASK,
        "# Requirements\n"
        "- Write the thinking as a short paragraph of plain prose (two to four sentences), in whatever terms the moment calls for: "
        "no headings, labels, lists, numbering or markdown, and nothing else besides the thinking.\n" + _COMMON_RULES,
    ]),
}


def _distinct(values: Any) -> list[str]:
    items = values if isinstance(values, (list, tuple)) else [values]
    seen: list[str] = []
    for item in items:
        if item not in (None, "") and str(item) not in seen:
            seen.append(str(item))
    return seen


def hints_of(sample: Sample) -> dict[str, Any]:
    """MESC's labels of the instance that the teacher is given: the client's emotion in the last client turn,
    and the therapist's emotion and strategy in the reply (one per merged utterance)."""
    return {k: sample.labels[k] for k in HINT_KEYS if k in sample.labels}


def _hint_line(hints: dict[str, Any]) -> str:
    parts = []
    for key, what in (("client_emotion", "client's emotion (last client turn)"), ("emotion", "therapist's emotion in the reply"),
                      ("strategy", "therapist's strategy in the reply")):
        values = _distinct(hints.get(key))
        if values:
            parts.append(f"{what}: {', '.join(values)}")
    return "Labels: " + ("; ".join(parts) if parts else "none")


def instance_block(sample: Sample, frames: str) -> str:
    """One instance as the teacher reads it (demonstrations and the new instance alike), ending with the cue."""
    history = "\n".join(f"{t.speaker}: {t.text}" for t in sample.history)
    return "\n".join([_hint_line(hints_of(sample)), f"Keyframes: {frames}", "Conversation history:", history,
                      f"Therapist's response: {sample.reference}", "Thinking process:"])


def system_prompt(variant: str, demos: Sequence[tuple[Sample, Demonstration]]) -> str:
    """The instructions of a variant and its three demonstrations: everything the teacher gets besides the
    instance (`prompt_sha256` is its digest)."""
    blocks = [INSTRUCTIONS[variant], "# Examples"]
    for n, (sample, demo) in enumerate(demos, 1):
        blocks.append(f"## Example {n}\n" + instance_block(sample, "seen when this example was written, not attached here") + "\n"
                      + demo.thinking[variant])
    return "\n\n".join(blocks)


def user_prompt(sample: Sample, images: Sequence[str]) -> str:
    frames = f"{len(images)} attached to this message, in time order" if images else "none for this instance"
    return "# New instance\n" + instance_block(sample, frames)


def generation(attempt: int) -> GenerationConfig:
    """Attempt 0 at temperature 0; a retry (attempt k) at RETRY_TEMPERATURE with seed k, so the cache key differs."""
    return teacherjob.retry_generation(GenerationConfig(max_tokens=MAX_TOKENS), attempt)


def build_request(system: str, sample: Sample, images: Sequence[str], attempt: int = 0) -> ChatRequest:
    return ChatRequest(messages=(Message(role="system", content=system), Message(role="user", content=user_prompt(sample, images), images=tuple(images))),
                       generation=generation(attempt))


# --------------------------------------------------------------------------- reading an answer

_CUE = re.compile(r"\A\s*[#*_>\s]*thinking[ \t]+process[ \t]*[*_]*[ \t]*:[ \t]*[*_]*", re.IGNORECASE)
_TAGS = re.compile(r"</?\s*(?:think|response)\s*>", re.IGNORECASE)
_LINE_START = re.compile(r"^[ \t]*(?:(?:[-*\u2022#>]+|\d+[.)])[ \t]*)*")  # bullets, numbering, headings at a line's start
_OTHER_LABEL = re.compile(r"^[*_]*[ \t]*([A-Z][A-Za-z'/-]*(?:[ \t]+[A-Za-z'/-]+){0,2})[ \t]*[*_]*[ \t]*:")  # "Goal:", "Final answer:"
_MARKDOWN = re.compile(r"\*\*|__|`+|(?<!\w)[*_](?=\w)|(?<=\w)[*_](?!\w)")
_NEXT_NUMBER = re.compile(r"\s[1-4][.)]$")  # "Visual Scene: None 2. Emotion: ...": the next item's number


def _clean(text: str, before_label: bool = False) -> str:
    """One line without markdown, bullets, line-start numbering or (before another label) the next item's number."""
    lines = [_LINE_START.sub("", line) for line in text.splitlines()]
    flat = re.sub(r"\s+", " ", " ".join(_MARKDOWN.sub("", line).strip() for line in lines if line.strip())).strip()
    if before_label:
        flat = _NEXT_NUMBER.sub("", flat)
    return flat.strip(" -*")


def _words(text: str) -> list[str]:
    found = (w.strip("'") for w in re.findall(r"[\w']+", text.lower().replace("\u2019", "'")))
    return [w for w in found if w]


def _quotes(answer: str, reference: str) -> bool:
    """The reply's words, in order, in the answer (case, punctuation and spacing aside)."""
    words = _words(reference)
    if len(words) < QUOTE_MIN_WORDS:
        return False
    return f" {' '.join(words)} " in f" {' '.join(_words(answer))} "


@dataclass
class Reading:
    thinking: str | None  # the thinking that enters the target; None: the answer broke the format
    reason: str | None  # why it broke
    aspects: dict[str, Any]  # analyse_thinking of the answer (without the cue)


def read_answer(variant: str, answer: str, reference: str) -> Reading:
    """The kept thinking of a teacher's answer, or why it breaks the format (see the module docstring)."""
    body = _CUE.sub("", answer or "", count=1).strip()
    aspects = prompting.analyse_thinking(body)

    def broken(reason: str) -> Reading:
        return Reading(None, reason, aspects)

    if not body:
        return broken("empty answer")
    if _TAGS.search(body):
        return broken("holds <think>/<response> tags")
    if _quotes(body, reference):
        return broken("quotes the therapist's reply")
    if variant == "free":
        thinking = _clean(body)
        return Reading(thinking, None, aspects) if thinking else broken("empty answer")
    seen_label = False
    for number, line in enumerate(body.splitlines(), 1):
        text = _LINE_START.sub("", line).strip()
        if not text:
            continue
        if prompting._LABEL.match(text):
            seen_label = True
            continue
        other = _OTHER_LABEL.match(text)
        if other:
            return broken(f"line {number} has the label '{other.group(1).strip()}', not one of the four aspects")
        if not seen_label:
            return broken("text before the first aspect")
    values: dict[str, str] = {}
    matches = list(prompting._LABEL.finditer(body))
    for match, following in zip(matches, matches[1:] + [None]):
        key = prompting._aspect_key(match.group(1))
        if key in values:
            return broken(f"{LABELS[key]} given twice")
        values[key] = _clean(body[match.end(): following.start() if following else None], before_label=following is not None)
    if not aspects["aspects"]["response_strategy"]:
        return broken("no Response Strategy" if "response_strategy" not in values else "the Response Strategy is declined")
    if variant == "fixed":
        lacking = [a for a in prompting.ASPECTS if not aspects["aspects"][a]]
        if lacking:
            how = "declined" if lacking[0] in aspects["declined"] else "missing"
            return broken(f"{LABELS[lacking[0]]} {how} (fixed describes every aspect)")
    kept = [a for a in prompting.ASPECTS if aspects["aspects"][a]]
    return Reading(" ".join(f"{LABELS[a]}: {_sentence(values[a])}" for a in kept), None, aspects)


def _sentence(value: str) -> str:
    """A value ends with a full stop (as in the paper's outputs, "Emotion: sad. Situation: ..."), so that the
    one-line thinking reads as sentences."""
    return value if value[-1:] in ".!?" else value + "."


# --------------------------------------------------------------------------- statistics (figure 3)


def statistics(rows: Sequence[SynthRow]) -> dict[str, Any]:
    """Shares of the kept rows (4 decimals), from each row's `aspects` (analyse_thinking of the teacher's
    answer): per aspect `included` (with content; an "Unknown" situation and a neutral emotion count as
    included), `declined` ("Not helpful", "None", ...), `absent` (not labelled at all); `neutral` (emotion) and
    `unknown` (situation) are parts of `included`."""
    n = len(rows)
    share = lambda count: round(count / n, 4) if n else 0.0
    out: dict[str, Any] = {"rows": n}
    for aspect in prompting.ASPECTS:
        included = sum(bool(r.aspects.get("aspects", {}).get(aspect)) for r in rows)
        declined = sum(aspect in r.aspects.get("declined", []) for r in rows)
        entry = {"included": share(included), "declined": share(declined), "absent": share(n - included - declined)}
        if aspect == "emotion":
            entry["neutral"] = share(sum(bool(r.aspects.get("emotion_neutral")) and bool(r.aspects.get("aspects", {}).get("emotion")) for r in rows))
        if aspect == "situation":
            entry["unknown"] = share(sum(bool(r.aspects.get("situation_unknown")) and bool(r.aspects.get("aspects", {}).get("situation")) for r in rows))
        out[aspect] = entry
    return out


def _percent(x: float) -> str:
    return f"{100 * x:.1f}%"


def summary_lines(manifest: SynthManifest, calls: int, hits: int) -> list[str]:
    retries = manifest.retries
    lines = [f"fires-synth ({manifest.variant}): {manifest.kept} of {manifest.instances} instances kept, {len(manifest.dropped)} dropped, "
             f"{retries} {'retry' if retries == 1 else 'retries'}; {teacherjob.requests_line(calls, hits)}"]
    stats = manifest.statistics
    if stats.get("rows") and manifest.variant != "free":
        for aspect in prompting.ASPECTS:
            entry = stats[aspect]
            extra = ""
            if "neutral" in entry:
                extra = f" (neutral {_percent(entry['neutral'])})"
            if "unknown" in entry:
                extra = f" (unknown {_percent(entry['unknown'])})"
            absent = f", absent {_percent(entry['absent'])}" if entry["absent"] else ""
            lines.append(f"  {LABELS[aspect]:<18} included {_percent(entry['included'])}{extra}, declined {_percent(entry['declined'])}{absent}")
    for drop in manifest.dropped[:3]:
        lines.append(f"  dropped {drop['id']}: {drop['reason']}")
    if len(manifest.dropped) > 3:
        lines.append(f"  ... and {len(manifest.dropped) - 3} more dropped (see {MANIFEST})")
    return lines


# --------------------------------------------------------------------------- the dataset folder

KIND = teacherjob.Kind(recipe="fires-synth", manifest=MANIFEST, rows=ROWS, read_manifest=data.read_manifest, parse_row=data.parse_row,
                       data_noun="MESC files", job="synthesis")


def read_existing_rows(path: Path) -> tuple[list[SynthRow], int]:
    """The rows of a data.jsonl being resumed, and the bytes they take: a last line without its newline (a
    kill mid-write) is left out (the caller cuts it off); any other line that is not a row is one error."""
    return KIND.read_existing_rows(path)


def _check_same(out: Path, recorded: SynthManifest, given: SynthManifest) -> None:
    """A folder is resumed only by the command that made it (the cache options aside)."""
    if recorded.variant != given.variant:
        raise HarnessError(f"--out {out} holds a fires-synth dataset made with --variant {recorded.variant}, not {given.variant}; "
                           "run the command that made it, or give another --out.")
    KIND.check_same(out, recorded, given)


# --------------------------------------------------------------------------- the synthesis


@dataclass
class Result:
    out: Path
    manifest: SynthManifest
    calls: int  # requests the teacher answered this time
    hits: int  # requests the cache answered


def synthesise(teacher: str, teacher_args: dict[str, Any], out: Path, variant: str = "flexible", limit: int | None = None,
               data_dir: Path | None = None, frames_dir: str | None = None, retries: int = 2, max_frames: int = MAX_FRAMES,
               cache_path: Path | None = None, use_cache: bool = True) -> Result:
    if variant not in VARIANTS:
        raise HarnessError(f"--variant '{variant}': choose one of {', '.join(VARIANTS)}.")
    if retries < 0:
        raise HarnessError(f"--retries must be 0 or more, got {retries}.")
    if max_frames < 0:
        raise HarnessError(f"--max-frames must be 0 or more, got {max_frames}.")
    out = Path(out)
    recorded: SynthManifest | None = KIND.recorded(out)
    task = load_task("mesc", {} if frames_dir is None else {"frames_dir": frames_dir})
    samples, folder, hashes = load_samples(task, SPLIT, data_dir, limit)
    demos = resolve(task.load(SPLIT, folder), folder)
    system = system_prompt(variant, demos)
    frames_root = task.frames_root if task.frames_root is not None and task.frames_root.is_dir() else None
    config = {"split": SPLIT, "limit": limit, "retries": retries, "max_frames": max_frames,
              "frames_dir": str(frames_root.resolve()) if frames_root else None,
              "generation": teacherjob.generation_record(generation(0)),
              "demonstrations": [d.sample_id for _, d in demos]}
    config = json.loads(json.dumps(config))  # as synth.json gives it back (lists, not tuples), to compare on resume
    with teacherjob.open_teacher(teacher, teacher_args, cache_path, use_cache) as (spec, model):
        given = SynthManifest(variant=variant, teacher=teacherjob.teacher_record(spec, model),
                              prompt_sha256=hashlib.sha256(system.encode("utf-8")).hexdigest(), config=config,
                              data={"split": SPLIT, "files": hashes}, instances=len(samples), started_at=now())
        if recorded is not None:
            _check_same(out, recorded, given)
            _check_rows(out / ROWS, samples, variant)  # a damaged file is refused before anything is written
        teacherjob.make_folder(out)
        header = given if recorded is None else recorded.model_copy(update={"instances": len(samples)})
        dataset = Folder(out, MANIFEST, header)
        with dataset.working(secrets_of(spec.model_args)):
            _work(dataset, model, system, task, samples, variant, retries, max_frames)
        return Result(out, dataset.header, model.calls, model.hits)


def _check_rows(path: Path, samples: Sequence[Sample], variant: str) -> tuple[list[SynthRow], int]:
    """The rows on disk (see `read_existing_rows`), each an instance of this synthesis and of its variant."""
    existing, good_bytes = KIND.check_rows(path, [s.id for s in samples])
    wrong = [r for r in existing if r.variant != variant]
    if wrong:
        raise HarnessError(f"{path}: {wrong[0].id} is a '{wrong[0].variant}' row in a '{variant}' dataset; restore the file or give another --out.")
    return existing, good_bytes


def _work(dataset: Folder, model: CachedModel, system: str, task, samples: Sequence[Sample], variant: str, retries: int, max_frames: int) -> None:
    path = dataset.path / ROWS
    existing, good_bytes = _check_rows(path, samples, variant)  # again, now that the folder is locked
    seen: dict[str, tuple[list[str], list[str]]] = {}

    def frames(sample: Sample) -> tuple[list[str], list[str]]:
        """(the frames the task attaches, the keyframes the teacher sees), read once per instance."""
        if sample.id not in seen:
            found = list(task.images(sample))
            seen[sample.id] = (found, video_frames.pick_evenly(found, max_frames))
        return seen[sample.id]

    def build(sample: Sample, attempt: int) -> ChatRequest:
        return build_request(system, sample, frames(sample)[1], attempt)

    def read(sample: Sample, output: ModelOutput, attempt: int) -> SynthRow | teacherjob.Broken:
        reading = read_answer(variant, output.text, sample.reference)
        if reading.thinking is None:
            return teacherjob.Broken(reading.reason or "broken answer")
        images, shown = frames(sample)
        return SynthRow(id=sample.id, variant=variant, history=list(sample.history), reference=sample.reference,
                        labels=hints_of(sample), images=images, teacher_images=shown, thinking=reading.thinking,
                        teacher_output=output.text, target=data.target_of(reading.thinking, sample.reference),
                        aspects=reading.aspects, attempts=attempt + 1)

    def counts(rows: dict[str, SynthRow], dropped: list[dict[str, Any]]) -> dict[str, Any]:
        return {"kept": len(rows), "dropped": dropped,
                "retries": sum(r.attempts - 1 for r in rows.values()) + sum(d.get("attempts", 1) - 1 for d in dropped)}

    kept = teacherjob.fill(dataset, path, model, samples, lambda s: s.id, existing, good_bytes, build, read, retries, counts)
    dataset.finish(statistics=statistics(kept))


# --------------------------------------------------------------------------- the command


@click.command("fires-synth")
@click.option("--teacher", required=True,
              help=f"The teacher model, ADAPTER[:MODEL] as for `harness run --model` (e.g. openai:{PAPER_TEACHER}, the FIRES paper's "
                   "teacher; any adapter works, e.g. vllm or hf with a local vision-language model).")
@click.option("--teacher-args", help="The teacher adapter's options, k=v,k2=v2 (as --model-args).")
@click.option("--out", type=options.PATH, required=True,
              help=f"The dataset folder: {MANIFEST} (how it was made, counts, figure-3 statistics) and {ROWS} (one row per kept "
                   "instance). The same command on the same folder resumes it.")
@click.option("--variant", default="flexible", show_default=True,
              help="flexible: only the helpful aspects (FIRES); fixed: all four aspects always (w/o-FleT ablation); free: free-form "
                   "thinking, no aspects (w/o-All ablation).")
@click.option("--limit", type=int, help="Only the first N MESC training instances [default: all 3,721].")
@options.data_dir
@click.option("--frames-dir", help="The MESC frames folder made by `harness data frames mesc`, or 'off' for text only "
                                   "[default: $ESC_HARNESS_FRAMES/mesc, else the per-user frames folder; text only where none].")
@click.option("--retries", type=int, default=2, show_default=True,
              help="Extra teacher calls for an answer that breaks the format (temperature 0.7, seed = attempt); then the instance is "
                   "dropped and listed in the manifest.")
@click.option("--max-frames", type=int, default=MAX_FRAMES, show_default=True,
              help="Keyframes per instance sent to the teacher, evenly spaced over the frames the task attaches (the paper's cap: 16).")
@options.cache
def fires_synth(teacher, teacher_args, out, variant, limit, data_dir, frames_dir, retries, max_frames, cache_path, no_cache) -> None:
    """FIRES stage 1: synthesise flexible-thinking data for MESC's training instances with a teacher model.

    For every MESC train instance the teacher sees the conversation, up to --max-frames keyframes, MESC's
    emotion and strategy labels as hints and the therapist's actual reply, and writes the thinking that
    preceded the reply. Each kept row's target is `<think> THINKING </think><response> REPLY </response>`,
    for `harness train fires-sft`. Broken answers are retried, then dropped and counted; the run resumes
    where it stopped, and every teacher answer is cached."""
    result = synthesise(teacher, options.parse_kv(teacher_args, "--teacher-args"), out, variant, limit, data_dir, frames_dir, retries,
                        max_frames, cache_path, not no_cache)
    for line in summary_lines(result.manifest, result.calls, result.hits):
        click.echo(line)
    click.echo(str(result.out))
