"""`harness train compeer-data`: build COMPEER's CER data (Wang et al. 2025, "Construction of the CER Dataset")
with any teacher model: sparse rounds of ESConv and MESC dialogues, each answered by the teacher with the three
reasoning steps and a new response (the format of `tasks/compeer_reasoning.py`), ready for people to annotate
(`harness train compeer-annotate`).

Collection. The paper pools open emotional-support corpora (SoulChat, ESConv, MESC, AvaMERG); the harness has
ESConv and MESC (`--source`, default both), each's train split as the harness's own task loads it
(`load_task(source, {"prompt": "compeer"})`: ESConv's default instances, one per supporter utterance; MESC's, one
per merged therapist turn). The paper's quality filter - Qwen2.5-72B removing dialogues with semantic
incoherence, an artificial style or non-dialogue content, "over 23%" of its pool - is NOT reproduced: it
targets LLM-generated corpora, and ESConv (crowd-sourced chats) and MESC (TV-series counselling sessions) are
human dialogues.

Sparse sampling (eq. 1). A dialogue's rounds are its samples in dialogue order (`sampling.dialogues_of`); N_s
of its N_r rounds are drawn without replacement from the Gaussian over rounds (mu = N_r / 2, sigma = N_r / 4),
seeded per dialogue from (`--seed`, dialogue id) (`sampling.sample_dialogue`), so the draw of a dialogue does not
depend on the others or on `--limit-dialogues`; a dialogue of N_s rounds or fewer gives all of them. The paper
does not give N_s: `--rounds-per-dialogue` defaults to 3 (a harness choice: with ESConv's ~13 supporter
utterances per dialogue it keeps about a quarter of the rounds, and the middle ones, as eq. 1 intends).
`--limit-dialogues N` takes the first N dialogues of each source.

Generation. Each sampled round is asked with exactly the request the task builds in prompt=compeer mode
(`task.build_request(sample)`: the COMPEER system prompt, the history as a transcript ending with the
supporter's cue, and for MESC the frames the task attaches when they were made), so the teacher writes the three
steps and a new response just as a model under evaluation would. The paper's generators were GPT-4o and
Qwen2.5-VL (e.g. `--teacher openai:gpt-4o` or a local vllm / hf vision-language model). An answer is read with
`parse_compeer_output`; one that is not well formed (`format_ok` False) is asked again (`--retries`, default 2)
at temperature 0.7 with seed = the attempt number, then the round is dropped and listed in the manifest with
the parser's `malformed` codes as its reason.

A row (`data.CerRow`): id = the sample id; source; dialogue = the dialogue key ("esconv/train/d0012": unique
across sources, so a held-out split by dialogue never mixes two); round = the round's position in its dialogue
(1-based, as eq. 1 counts); the history; steps = the three steps' texts; fields = what the parser read (core
issue, stage, sentiment, emotion, intensity, strategy, why); response = the teacher's reply; original = the
dataset's own reply; teacher_output = the answer as given; empty annotations. The frames a MESC teacher saw are
recorded in the manifest's config (the folder), not per row.

The folder `--out DIR` (`data.py`): cer.json (the manifest: running / finished / failed with its one-line
error; teacher without secrets, prompt digest of the system prompts, every setting, the source files' sha256,
the dialogues and rows, the dropped rounds) and data.jsonl (one row per kept round, appended and fsync'ed as it
is settled, in source / dialogue / round order; a row deleted by hand and asked again is appended at the end).
The same command again resumes (`baselines/teacherjob.py`, as `fires-synth` does): rows on disk and dropped
rounds are not asked again; every answer goes through the response cache (`--cache`), so after a kill -9 nothing
answered is asked twice; a torn last line is cut off and asked again (from the cache); a damaged line elsewhere
is one error naming file:line; a folder made with another teacher, prompt, dataset or setting is refused with
one line.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import click

from harness import options
from harness.cache import CachedModel
from harness.contract import ChatRequest, ModelOutput, Sample
from harness.errors import HarnessError
from harness.lifecycle import Folder, now
from harness.redaction import secrets_of
from harness.runner import load_samples, load_task
from tasks import compeer_reasoning, prompting

from .. import teacherjob
from . import data, sampling
from .data import MANIFEST, ROWS, CerManifest, CerRow

SOURCES = ("esconv", "mesc")
SPLIT = "train"
TASK_ARGS = {"prompt": prompting.COMPEER_MODE}
ROUNDS_PER_DIALOGUE = 3  # N_s: not given in the paper (a harness choice, see the module docstring)
PAPER_TEACHERS = ("GPT-4o", "Qwen2.5-VL")


def read_manifest(folder: Path) -> CerManifest:
    from baselines.trainkit import versioned_manifest

    return versioned_manifest(CerManifest, folder, MANIFEST, "CER", "compeer-data", data.SCHEMA_VERSION)


KIND = teacherjob.Kind(recipe="compeer-data", manifest=MANIFEST, rows=ROWS, read_manifest=read_manifest, parse_row=data.parse_row,
                       data_noun="source files", job="CER dataset")


def parse_sources(text: str | Sequence[str]) -> list[str]:
    """`esconv,mesc` -> ["esconv", "mesc"] (order kept, repeats dropped); an unknown name is one line."""
    names = [s.strip().lower() for s in (text.split(",") if isinstance(text, str) else text)]
    names = list(dict.fromkeys(s for s in names if s))
    if not names:
        raise HarnessError(f"--source: give one or more of {', '.join(SOURCES)}, comma-separated.")
    unknown = [s for s in names if s not in SOURCES]
    if unknown:
        raise HarnessError(f"--source '{unknown[0]}': choose from {', '.join(SOURCES)} (comma-separated).")
    return names


# --------------------------------------------------------------------------- the rounds


@dataclass(frozen=True)
class Instance:
    source: str
    sample: Sample
    dialogue: str  # the dialogue key (sampling's grouping: the id without its last part)
    round: int  # 1-based position of the round in its dialogue

    @property
    def id(self) -> str:
        return self.sample.id


@dataclass
class Plan:
    instances: list[Instance]
    tasks: dict[str, Any]  # source -> the task (prompt=compeer)
    systems: dict[str, str]  # source -> the system prompt its requests carry
    files: dict[str, dict[str, str]]  # source -> its files' sha256
    frames: dict[str, str | None]  # source -> the frames folder its task attaches (MESC), else None
    generation: dict[str, Any]  # source -> the first attempt's generation settings
    dialogues: dict[str, int]  # source -> dialogues sampled


def plan(sources: Sequence[str], rounds_per_dialogue: int, seed: int, limit_dialogues: int | None,
         data_dir: Path | None) -> Plan:
    """Every sampled round of every source, in source / dialogue / round order."""
    found = Plan([], {}, {}, {}, {}, {}, {})
    for source in sources:
        task = load_task(source, dict(TASK_ARGS))
        samples, _, hashes = load_samples(task, SPLIT, data_dir, None)
        groups = sampling.dialogues_of(samples)
        keys = list(groups)[:limit_dialogues] if limit_dialogues is not None else list(groups)
        for key in keys:
            rounds = groups[key]
            for number in sampling.sample_dialogue(str(key), len(rounds), rounds_per_dialogue, seed):
                found.instances.append(Instance(source, rounds[number - 1], str(key), number))
        found.tasks[source] = task
        found.systems[source] = prompting.system_prompt(task.options, task.roles, task.system_prompt)
        found.files[source] = hashes
        root = getattr(task, "frames_root", None)
        found.frames[source] = str(Path(root).resolve()) if root is not None and Path(root).is_dir() else None
        probe = task.build_request(samples[0]) if samples else None
        found.generation[source] = teacherjob.generation_record(probe.generation) if probe is not None else None
        found.dialogues[source] = len(keys)
    return found


def prompt_digest(systems: dict[str, str]) -> str:
    """sha256 of the system prompts the requests carry, per source (JSON, keys sorted)."""
    return hashlib.sha256(json.dumps(systems, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def read_answer(instance: Instance, text: str) -> CerRow | teacherjob.Broken:
    """The CER row of a teacher's answer, or why it breaks the format (the parser's `malformed` codes)."""
    parsed = compeer_reasoning.parse_compeer_output(text)
    details = parsed.details
    steps = details.get("steps") or []
    if not parsed.format_ok or len(steps) != data.N_STEPS or any(not s for s in steps) or not parsed.response.strip():
        codes = list(details.get("malformed") or []) or ["malformed"]
        return teacherjob.Broken(", ".join(codes), {"malformed": codes})
    sample = instance.sample
    return CerRow(id=sample.id, source=instance.source, dialogue=instance.dialogue, round=instance.round, history=list(sample.history),
                  steps=[s.strip() for s in steps], fields={f: details.get(f) for f in compeer_reasoning.FIELDS},
                  response=parsed.response.strip(), original=sample.reference, teacher_output=text)


# --------------------------------------------------------------------------- the job


@dataclass
class Result:
    out: Path
    manifest: CerManifest
    instances: int  # rounds sampled
    calls: int  # requests the teacher answered this time
    hits: int  # requests the cache answered
    retries: int  # retry requests this time


def generate(teacher: str, teacher_args: dict[str, Any], out: Path, sources: str | Sequence[str] = SOURCES,
             rounds_per_dialogue: int = ROUNDS_PER_DIALOGUE, seed: int = 0, limit_dialogues: int | None = None,
             retries: int = 2, data_dir: Path | None = None, cache_path: Path | None = None, use_cache: bool = True) -> Result:
    names = parse_sources(sources)
    if rounds_per_dialogue < 1:
        raise HarnessError(f"--rounds-per-dialogue must be 1 or more, got {rounds_per_dialogue}.")
    if limit_dialogues is not None and limit_dialogues < 1:
        raise HarnessError(f"--limit-dialogues must be a positive number of dialogues, got {limit_dialogues}.")
    if retries < 0:
        raise HarnessError(f"--retries must be 0 or more, got {retries}.")
    out = Path(out)
    recorded = KIND.recorded(out)
    found = plan(names, rounds_per_dialogue, seed, limit_dialogues, data_dir)
    config = {"sources": names, "split": SPLIT, "task_args": TASK_ARGS, "rounds_per_dialogue": rounds_per_dialogue, "seed": seed,
              "sampling": "eq. 1 (mu = N_r/2, sigma = N_r/4), N_s rounds without replacement, seeded per dialogue "
                          "(baselines/compeer/sampling.py sample_dialogue)",
              "limit_dialogues": limit_dialogues, "retries": retries, "generation": found.generation, "frames_dir": found.frames,
              "quality_filter": None}
    config = json.loads(json.dumps(config))  # as cer.json gives it back, to compare on resume
    retried = 0
    with teacherjob.open_teacher(teacher, teacher_args, cache_path, use_cache) as (spec, model):
        given = CerManifest(teacher=teacherjob.teacher_record(spec, model), prompt_sha256=prompt_digest(found.systems), config=config,
                            data={s: {"split": SPLIT, "files": found.files[s]} for s in names},
                            dialogues=sum(found.dialogues.values()), started_at=now())
        ids = [i.id for i in found.instances]
        if recorded is not None:
            KIND.check_same(out, recorded, given)
            KIND.check_rows(out / ROWS, ids)  # a damaged file is refused before anything is written
        teacherjob.make_folder(out)
        header = given if recorded is None else recorded.model_copy(update={"dialogues": given.dialogues})
        dataset = Folder(out, MANIFEST, header)
        with dataset.working(secrets_of(spec.model_args)):
            retried = _work(dataset, model, found, retries)
        return Result(out, dataset.header, len(found.instances), model.calls, model.hits, retried)


def _work(dataset: Folder, model: CachedModel, found: Plan, retries: int) -> int:
    path = dataset.path / ROWS
    existing, good_bytes = KIND.check_rows(path, [i.id for i in found.instances])  # again, now that the folder is locked
    retried = 0

    def build(instance: Instance, attempt: int) -> ChatRequest:
        nonlocal retried
        retried += attempt > 0
        return teacherjob.retry_request(found.tasks[instance.source].build_request(instance.sample), attempt)

    def read(instance: Instance, output: ModelOutput, attempt: int) -> CerRow | teacherjob.Broken:
        return read_answer(instance, output.text)

    def counts(rows: dict[str, CerRow], dropped: list[dict[str, Any]]) -> dict[str, Any]:
        return {"rows": len(rows), "dropped": dropped}

    teacherjob.fill(dataset, path, model, found.instances, lambda i: i.id, existing, good_bytes, build, read, retries, counts)
    dataset.finish()
    return retried


def summary_lines(result: Result) -> list[str]:
    manifest = result.manifest
    lines = [f"compeer-data: {manifest.rows} of {result.instances} sampled rounds kept ({manifest.dialogues} dialogues, "
             f"{manifest.config.get('rounds_per_dialogue')} rounds each at most), {len(manifest.dropped)} dropped, "
             f"{result.retries} {'retry' if result.retries == 1 else 'retries'}; {teacherjob.requests_line(result.calls, result.hits)}"]
    try:
        _, rows = data.read_rows(result.out)
    except HarnessError:
        rows = []
    for field in ("stage", "strategy"):
        counted = Counter(str(r.fields.get(field)) for r in rows)
        if counted:
            lines.append(f"  {field}: " + ", ".join(f"{k} {v}" for k, v in counted.most_common()))
    for drop in manifest.dropped[:3]:
        lines.append(f"  dropped {drop['id']}: {drop['reason']}")
    if len(manifest.dropped) > 3:
        lines.append(f"  ... and {len(manifest.dropped) - 3} more dropped (see {MANIFEST})")
    return lines


# --------------------------------------------------------------------------- the command


@click.command("compeer-data")
@click.option("--teacher", required=True,
              help="The teacher model, ADAPTER[:MODEL] as for `harness run --model` (the paper's generators: GPT-4o, e.g. "
                   "openai:gpt-4o, and Qwen2.5-VL, e.g. through vllm or hf).")
@click.option("--teacher-args", help="The teacher adapter's options, k=v,k2=v2 (as --model-args).")
@click.option("--out", type=options.PATH, required=True,
              help=f"The CER folder: {MANIFEST} (how it was made, counts, dropped rounds) and {ROWS} (one row per kept round). "
                   "The same command on the same folder resumes it.")
@click.option("--source", "sources", default=",".join(SOURCES), show_default=True,
              help=f"The dialogue datasets whose train splits are sampled, comma-separated: {', '.join(SOURCES)} (the paper also used "
                   "SoulChat and AvaMERG, which the harness does not have). Its quality filter (Qwen2.5-72B) is not reproduced: "
                   "both are human dialogues.")
@click.option("--rounds-per-dialogue", type=int, default=ROUNDS_PER_DIALOGUE, show_default=True,
              help="N_s of eq. 1: rounds sampled per dialogue (Gaussian over rounds, mu = N_r/2, sigma = N_r/4, without replacement). "
                   "The paper does not give N_s; 3 is a harness choice.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="The sampling seed; each dialogue's draw is seeded from (seed, dialogue id), whatever the other dialogues.")
@click.option("--limit-dialogues", type=int, help="Only the first N dialogues of each source [default: all].")
@click.option("--retries", type=int, default=2, show_default=True,
              help="Extra teacher calls for an answer that breaks the COMPEER format (temperature 0.7, seed = attempt); then the round is "
                   "dropped and listed in the manifest with the parser's malformed codes.")
@options.data_dir
@options.cache
def compeer_data(teacher, teacher_args, out, sources, rounds_per_dialogue, seed, limit_dialogues, retries, data_dir, cache_path, no_cache) -> None:
    """COMPEER: build the CER data - sparse rounds of ESConv / MESC with a teacher's three reasoning steps and new response.

    Per dialogue of each source's train split, N_s rounds are drawn with eq. 1; for each, the teacher gets the
    task's own prompt=compeer request (the COMPEER system prompt and the history) and writes the three steps
    (history, emotion, strategy) and a reply. Malformed answers are retried, then dropped and counted. The rows
    go to `harness train compeer-annotate`; the run resumes where it stopped, and every answer is cached."""
    result = generate(teacher, options.parse_kv(teacher_args, "--teacher-args"), out, sources, rounds_per_dialogue, seed, limit_dialogues,
                      retries, data_dir, cache_path, not no_cache)
    for line in summary_lines(result):
        click.echo(line)
    click.echo(str(result.out))
