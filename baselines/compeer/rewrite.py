"""`harness train compeer-rewrite`: COMPEER's personality-based conversation rewriting (Wang et al. 2025,
"Personality-based Conversation Rewriting"), and the two variants its reward-model table compares with it, as
a new CER folder: the source rows plus the added ones.

    --mode persona    UnifiReward-P, the paper's method: the DISC profile of each dialogue's seeker and supporter
                      is extracted by the teacher (`persona.extract_profiles`), the profiles are embedded
                      (`embed.default_encoder()`, all-MiniLM-L6-v2) and clustered with KMeans, k by the elbow rule
                      over k = 1..--k-max (`persona.cluster_profiles`); per dialogue a persona is drawn from the
                      rewritten participant's own cluster (`persona.augment`), the teacher rewrites that
                      participant's turns in the persona's style (`persona.rewrite_request`), and the rewrite is
                      read (`parse_rewrite`) and filtered (`filter_rewrite`, --min-similarity)
    --mode plain      UnifiReward-R: the same participant rewritten without a persona (no profiles, no clustering)
    --mode duplicate  UnifiReward-D: every row added again, unchanged (no teacher)

The rewritten participant is the supporter by default (`--participant`; `random` picks one per dialogue from
its seed, the same in persona and plain); the other participant's turns are taken from the original whatever
the teacher wrote (the prompt asks it to copy them word for word), so a rewrite that only touched them is
"unchanged" and dropped.

What a dialogue is here. A CER folder holds only the sampled rounds of each dialogue, each with its history
and original reply. The dialogue rewritten is what those rows hold: the last sampled round's history and its
reply (the turns after it are in no row, so they are not rewritten). Where the rows split a merged turn - in
ESConv's default instances a supporter utterance right after another one has the first in its history - the
turn is cut into the pieces the rows need (segments; two consecutive turns of one speaker), so that every row's
history and reply are whole segments; the rewritten rows join their rewritten segments with a space again.
A dialogue whose rows do not share one history is skipped (reason counted).

Added rows. A kept rewrite yields one new row per source row of the dialogue: id "<row id>#<mode>", the
rewritten history and the rewritten original reply, `augmentation` = the mode, `persona` = the drawn
profile's fields (`Profile.to_dict()`, persona mode), and the rest CARRIED OVER: the teacher's three steps,
its fields, its response, its output and the human annotations. Why carried over rather than generated and
annotated again: the rewrite changes how a participant speaks, never what a turn does - the prompt keeps every
turn's meaning, intent, emotion and support strategy and adds or drops nothing, and the filter discards
rewrites that drift (unreadable, LLM artefacts, a length change beyond 0.5-2x, turns whose embedding moves away
from the original) - which is the paper's "ensuring alignment with the original dialogue intent". The steps
(core issue, stage, emotion, strategy) and the step labels therefore hold for the rewritten context, and the
paper uses the rewrites to add samples to the reward model's training data with the same supervision (its
UnifiReward-D duplicates the same labels; P and R differ from it only in the context's wording). The cost:
a step that quotes the original wording quotes it still, and the preference between the (now rewritten)
original reply and the model's reply is assumed to survive the restyling. A user who wants them generated
afresh runs `compeer-annotate` on the added rows.

Equal sizes. The paper trains the three variants on "an equal number of training samples". Every mode plans
the same thing per dialogue - all its rows once more - so without drops the three add exactly as many rows
(the number of source rows). A dropped rewrite (filter) or a skipped dialogue (no readable profile of the
rewritten participant, rows that do not share a history) is not replaced - replacing it would duplicate another
dialogue's rewrite, a different augmentation; the manifest records the rows added, the dialogues planned /
kept / dropped / skipped and the drop reasons by rule, so the sizes of the variants can be compared (and
equalised by the user, e.g. by training D on the dialogues P kept).

The folder `--out DIR`: cer.json (the CER manifest with `recipe` compeer-rewrite and an `augmentation` record:
mode, participant, the k chosen and its SSE curve, profile counts, the filter's counts by rule, the personas
drawn; running / finished / failed) and data.jsonl (the source rows in their order, then the added rows in
dialogue order), written at the end at once (`data.write_rows`, never half-written). Resuming: every teacher
call goes through the response cache (`--cache`), so running the same command again after a kill asks the
teacher only what it had not answered and rebuilds the folder; a folder made with another teacher, mode or
setting, or from other CER data, is refused with one line.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import click
from pydantic import ValidationError

from harness import options, registry
from harness.cache import CachedModel
from harness.contract import Turn
from harness.errors import HarnessError, first_line
from harness.lifecycle import Folder, now
from harness.redaction import secrets_of

from .. import teacherjob
from . import data, persona
from .data import MANIFEST, ROWS, CerManifest, CerRow
from .embed import default_encoder

RECIPE = "compeer-rewrite"
MODES = persona.MODES  # persona (UnifiReward-P), duplicate (UnifiReward-D), plain (UnifiReward-R)
PARTICIPANTS = (*persona.PARTICIPANTS, "random")
K_MAX = 10  # persona.K_RANGE's end
CHUNK = 64  # rewrite requests per generate call


class RewriteManifest(CerManifest):
    """cer.json of a compeer-rewrite folder: a CER manifest (readers of CER data read it as one) with the record of
    the augmentation."""

    recipe: str = RECIPE


def read_manifest(folder: Path) -> RewriteManifest:
    path = Path(folder) / MANIFEST
    try:
        manifest = RewriteManifest.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValidationError, ValueError, OSError) as exc:
        raise HarnessError(f"{path}: not a valid {MANIFEST} ({first_line(exc)}); give a new or empty --out.") from None
    if manifest.recipe != RECIPE:
        raise HarnessError(f"--out {Path(folder)} holds a {manifest.recipe} dataset, not a {RECIPE} one; give a new or empty folder.")
    return manifest


KIND = teacherjob.Kind(recipe=RECIPE, manifest=MANIFEST, rows=ROWS, read_manifest=read_manifest, parse_row=data.parse_row,
                       data_noun="CER data", job="augmentation")


# --------------------------------------------------------------------------- dialogues from CER rows


def _norm(text: str) -> str:
    return " ".join(text.split())


def _items(row: CerRow, supporter: str) -> list[Turn]:
    """A row's history and its original reply, as turns."""
    return [*row.history, Turn(speaker=supporter, text=row.original)]


def _align(items: Sequence[Turn], segments: list[Turn], split: bool) -> tuple[list[list[int]], bool] | None:
    """Which segments make each item (a turn of a row, or its reply), from the first segment on: an item is one
    or more consecutive segments of its speaker joined with a space. With `split`, a segment that runs past an
    item is cut in two where the item ends (in place). None: the item is not there."""
    groups: list[list[int]] = []
    did_split = False
    i = 0
    for item in items:
        want = _norm(item.text)
        taken: list[int] = []
        acc = ""
        while True:
            if i >= len(segments) or segments[i].speaker != item.speaker:
                return None
            text = segments[i].text
            joined = f"{acc} {text}" if acc else text
            if joined == want:
                taken.append(i)
                i += 1
                break
            if want.startswith(joined + " "):
                taken.append(i)
                acc = joined
                i += 1
                continue
            if split and joined.startswith(want + " "):
                cut = len(want) - (len(acc) + 1 if acc else 0)
                segments[i:i + 1] = [Turn(speaker=item.speaker, text=text[:cut]), Turn(speaker=item.speaker, text=text[cut + 1:])]
                did_split = True
                taken.append(i)
                i += 1
                break
            return None
        groups.append(taken)
    return groups, did_split


@dataclass
class CerDialogue:
    """One dialogue of a CER folder: its rows (in round order), the segments rewritten, and which segments make
    each row's history turns and reply."""

    key: str
    rows: list[CerRow]
    seeker: str
    supporter: str
    segments: list[Turn] = field(default_factory=list)
    groups: list[list[list[int]]] = field(default_factory=list)  # per row, per item (history turns, then the reply)
    problem: str | None = None  # why it cannot be rewritten

    def dialogue(self) -> persona.Dialogue:
        return persona.Dialogue(id=self.key, turns=tuple(self.segments), seeker=self.seeker, supporter=self.supporter)


def roles_of(source: str) -> tuple[str, str]:
    """(seeker, supporter) speaker names of a CER source: the harness task's roles."""
    try:
        roles = getattr(registry.tasks.get(source), "roles", None)
    except HarnessError:
        roles = None
    if roles is None:
        raise HarnessError(f"--data: rows of source '{source}': who speaks as seeker and supporter is not known (the sources of "
                           "`harness train compeer-data` are esconv and mesc); rewrite CER data of those sources.")
    return roles.seeker, roles.supporter


def dialogues_of(rows: Sequence[CerRow], segment: bool = True) -> list[CerDialogue]:
    """The rows grouped by dialogue (in order of first appearance, rows in round order), each with its segments
    (module docstring); `segment=False` only groups them (the duplicate mode needs no speakers)."""
    groups: dict[str, list[CerRow]] = {}
    for row in rows:
        groups.setdefault(row.dialogue, []).append(row)
    roles: dict[str, tuple[str, str]] = {}
    found = []
    for key, members in groups.items():
        members = sorted(members, key=lambda r: r.round)
        sources = {r.source for r in members}
        if len(sources) > 1:
            raise HarnessError(f"--data: dialogue {key} holds rows of {len(sources)} sources ({', '.join(sorted(sources))}); "
                               "a dialogue's rows come from one source.")
        if not segment:
            found.append(CerDialogue(key, members, "", ""))
            continue
        source = members[0].source
        if source not in roles:
            roles[source] = roles_of(source)
        seeker, supporter = roles[source]
        found.append(_segment(CerDialogue(key, members, seeker, supporter)))
    return found


def _segment(d: CerDialogue) -> CerDialogue:
    segments = [Turn(speaker=t.speaker, text=_norm(t.text)) for t in _items(d.rows[-1], d.supporter)]
    for _ in range(10_000):  # each pass either splits a segment or ends; splits are bounded by the text
        changed = False
        for row in d.rows:
            aligned = _align(_items(row, d.supporter), segments, split=True)
            if aligned is None:
                d.problem = f"the history of {row.id} is not the start of {d.rows[-1].id}'s"
                return d
            changed |= aligned[1]
        if not changed:
            break
    d.segments = segments
    d.groups = [_align(_items(row, d.supporter), segments, split=False)[0] for row in d.rows]  # type: ignore[index]
    if any(not s.text for s in segments):
        d.problem = "an empty turn"
    return d


def rewritten_rows(d: CerDialogue, texts: Sequence[str], mode: str, profile: persona.Profile | None) -> list[CerRow]:
    """The dialogue's rows with the rewritten segments: history and original rewritten, the rest carried over."""
    out = []
    for row, groups in zip(d.rows, d.groups):
        items = _items(row, d.supporter)
        new = [item.text if all(texts[k] == d.segments[k].text for k in group) else " ".join(texts[k] for k in group)
               for item, group in zip(items, groups)]
        history = [t.model_copy(update={"text": text}) for t, text in zip(row.history, new[:-1])]
        out.append(_added(row, mode, {"history": history, "original": new[-1], "persona": profile.to_dict() if profile else None}))
    return out


def _added(row: CerRow, mode: str, update: dict[str, Any]) -> CerRow:
    fields = {**row.model_dump(), **{k: v for k, v in update.items() if k != "history"}, "id": f"{row.id}#{mode}", "augmentation": mode}
    if "history" in update:
        fields["history"] = [t.model_dump() for t in update["history"]]
    return CerRow.model_validate(fields)


# --------------------------------------------------------------------------- the filter's rules

_RULES = (("unreadable", re.compile(r"^unreadable")), ("turn_count", re.compile(r"turns, the original has")),
          ("empty_turn", re.compile(r"is empty$")), ("llm_phrase", re.compile(r"LLM phrase")), ("length", re.compile(r"^length ")),
          ("unchanged", re.compile(r"^unchanged")), ("similarity", re.compile(r"cosine")))


def rule_of(reason: str) -> str:
    """The filter rule (persona.filter_rewrite's order) a reason line comes from."""
    for name, pattern in _RULES:
        if pattern.search(reason):
            return name
    return "other"


# --------------------------------------------------------------------------- the augmentation


@dataclass
class Result:
    out: Path
    manifest: RewriteManifest
    calls: int
    hits: int


def _check_settings(mode: str, participant: str, k_max: int, min_similarity: float) -> None:
    if mode not in MODES:
        raise HarnessError(f"--mode '{mode}': choose one of {', '.join(MODES)}.")
    if participant not in PARTICIPANTS:
        raise HarnessError(f"--participant '{participant}': choose one of {', '.join(PARTICIPANTS)}.")
    if k_max < 1:
        raise HarnessError(f"--k-max must be 1 or more, got {k_max}.")
    if not -1.0 <= min_similarity <= 1.0:
        raise HarnessError(f"--min-similarity is a cosine, between -1 and 1; got {min_similarity}.")


def read_source(folder: Path) -> tuple[CerManifest | None, list[CerRow], str]:
    """The source CER data (finished, with no augmented rows) and its data.jsonl's sha256."""
    folder = Path(folder)
    manifest, rows = data.read_rows(folder)
    path = folder if folder.is_file() else folder / ROWS
    if manifest is not None and manifest.status != "finished":
        raise HarnessError(f"{path.parent / MANIFEST}: the CER data is {manifest.status}; finish it first (run the same "
                           "`harness train compeer-data` command again: it resumes).")
    augmented = [r for r in rows if r.augmentation is not None]
    if augmented:
        raise HarnessError(f"{path}: {augmented[0].id} is an augmented row ('{augmented[0].augmentation}'); rewrite the CER data "
                           "`harness train compeer-data` made, not an augmented folder.")
    seen: set[str] = set()
    for row in rows:
        if row.id in seen:
            raise HarnessError(f"{path}: {row.id} is there twice; each round is one row.")
        seen.add(row.id)
    return manifest, rows, hashlib.sha256(path.read_bytes()).hexdigest()


def prompts_of(mode: str) -> dict[str, str]:
    if mode == "persona":
        return {"disc": persona.DISC_PROMPT, "rewrite": persona.REWRITE_PROMPT}
    if mode == "plain":
        return {"rewrite": persona.PLAIN_REWRITE_PROMPT}
    return {}


def augment_cer(data_folder: Path, out: Path, mode: str, teacher: str | None = None, teacher_args: dict[str, Any] | None = None,
                participant: str = "supporter", seed: int = 0, k_max: int = K_MAX, min_similarity: float = persona.MIN_SIMILARITY,
                cache_path: Path | None = None, use_cache: bool = True) -> Result:
    _check_settings(mode, participant, k_max, min_similarity)
    if mode != "duplicate" and not teacher:
        raise HarnessError(f"--mode {mode} needs --teacher (it {'extracts the DISC profiles and ' if mode == 'persona' else ''}rewrites the dialogues).")
    out, data_folder = Path(out), Path(data_folder)
    source_dir = data_folder.parent if data_folder.is_file() else data_folder
    if out.resolve() == source_dir.resolve():
        raise HarnessError(f"--out {out} is the --data folder; give another folder for the augmented data.")
    source_manifest, rows, rows_sha = read_source(data_folder)
    recorded = KIND.recorded(out)
    dialogues = dialogues_of(rows, segment=mode != "duplicate")
    encoder = default_encoder() if mode != "duplicate" else None
    if encoder is not None:
        encoder.check()
    config = {"mode": mode, "participant": participant, "seed": seed, "k_range": [1, k_max] if mode == "persona" else None,
              "min_similarity": min_similarity if mode != "duplicate" else None,
              "filter": {"length_ratio": list(persona.LENGTH_RATIO), "llm_phrases": list(persona.LLM_PHRASES), "reject_unchanged": True}
              if mode != "duplicate" else None,
              "kmeans": {"n_init": persona.N_INIT, "random_state": seed} if mode == "persona" else None,
              "encoder": encoder.describe() if encoder is not None else None,
              "carried_over": ["steps", "fields", "response", "teacher_output", "annotations"]}
    config = json.loads(json.dumps(config))
    source = {"rows_sha256": rows_sha, "rows": len(rows),
              "recipe": source_manifest.recipe if source_manifest else None,
              "prompt_sha256": source_manifest.prompt_sha256 if source_manifest else None}
    prompt_sha = hashlib.sha256(json.dumps(prompts_of(mode), sort_keys=True).encode("utf-8")).hexdigest()

    def given_manifest(teacher_rec: dict[str, Any]) -> RewriteManifest:
        return RewriteManifest(teacher=teacher_rec, prompt_sha256=prompt_sha, config=config, data={"cer": source},
                               dialogues=len(dialogues), started_at=now())

    def run(model: CachedModel | None, given: RewriteManifest, secrets: Sequence[str]) -> RewriteManifest:
        if recorded is not None:
            KIND.check_same(out, recorded, given)
        teacherjob.make_folder(out)
        header = given if recorded is None else recorded  # (the same settings: check_same)
        folder = Folder(out, MANIFEST, header)
        with folder.working(secrets):
            added, record, dropped = _augment(dialogues, rows, mode, model, participant, seed, k_max, min_similarity,
                                              encoder.encode if encoder is not None else None)
            record["source"] = {"folder": str(source_dir.resolve()), **source}
            data.write_rows(out / ROWS, [*rows, *added])
            folder.finish(rows=len(rows) + len(added), dropped=dropped, augmentation=record)
        return folder.header

    if mode == "duplicate":
        manifest = run(None, given_manifest({}), ())
        return Result(out, manifest, 0, 0)
    with teacherjob.open_teacher(teacher, teacher_args, cache_path, use_cache) as (spec, model):  # type: ignore[arg-type]
        manifest = run(model, given_manifest(teacherjob.teacher_record(spec, model)), secrets_of(spec.model_args))
        return Result(out, manifest, model.calls, model.hits)


def _augment(dialogues: list[CerDialogue], rows: list[CerRow], mode: str, model: CachedModel | None, participant: str, seed: int,
             k_max: int, min_similarity: float, encode) -> tuple[list[CerRow], dict[str, Any], list[dict[str, Any]]]:
    """(the added rows, the manifest's augmentation record, the dropped / skipped dialogues)."""
    record: dict[str, Any] = {"mode": mode, "participant": participant, "planned": len(dialogues)}
    dropped: list[dict[str, Any]] = []
    if mode == "duplicate":
        added = [_added(r, mode, {}) for d in dialogues for r in d.rows]
        record.update(kept=len(dialogues), added=len(added), skipped=0, filter=None)
        return added, record, dropped

    usable = [d for d in dialogues if d.problem is None]
    for d in dialogues:
        if d.problem is not None:
            dropped.append({"id": d.key, "reason": f"not rewritten: {d.problem}", "rule": "history_mismatch"})
    assert model is not None and encode is not None
    profiles: Sequence[persona.ProfileRecord] = ()
    labels = None
    if mode == "persona":
        extraction = persona.extract_profiles(model, [d.dialogue() for d in usable], chunk=CHUNK)
        profiles = extraction.readable
        record["profiles"] = {"asked": len(extraction.records), "readable": len(profiles), "unreadable": extraction.unreadable}
        if not profiles:
            raise HarnessError(f"none of the teacher's {len(extraction.records)} DISC profiles could be read (persona.parse_profile); "
                               "check the teacher's answers (the response cache holds them) or use another teacher.")
        clustering = persona.cluster_profiles(persona.embed_profiles(profiles, encode), range(1, k_max + 1), seed)
        labels = clustering.labels
        record["clustering"] = {**clustering.summary(), "ks": clustering.ks}
    plans = persona.augment([d.key for d in usable], mode, seed, participant, profiles, labels)
    asked = [(d, p) for d, p in zip(usable, plans) if p.action == "rewrite"]
    for d, p in zip(usable, plans):
        if p.action == "skip":
            dropped.append({"id": d.key, "reason": f"not rewritten: {p.reason}", "rule": "no_profile"})
    answers: list[str] = []
    requests = [persona.rewrite_request(d.dialogue(), p.participant, p.persona) for d, p in asked]  # type: ignore[arg-type]
    for start in range(0, len(requests), CHUNK):
        answers += [o.text for o in model.generate(requests[start:start + CHUNK])]
    added: list[CerRow] = []
    rules: Counter[str] = Counter()
    kept = 0
    drawn = []
    for (d, p), answer in zip(asked, answers):
        speakers = [t.speaker for t in d.segments]
        texts = persona.parse_rewrite(answer, len(d.segments), speakers)
        who = d.seeker if p.participant == "seeker" else d.supporter
        if texts is not None:  # the other participant's turns stay as they were
            texts = [new if seg.speaker == who else seg.text for seg, new in zip(d.segments, texts)]
        verdict = persona.filter_rewrite(d.segments, texts, encode, min_similarity)
        if p.persona is not None:
            drawn.append({"dialogue": d.key, "participant": p.participant, "persona_of": p.persona_of, "own": p.own_persona,
                          "kept": verdict.keep})
        if not verdict.keep:
            rule = rule_of(verdict.reason)
            rules[rule] += 1
            dropped.append({"id": d.key, "reason": verdict.reason, "rule": rule})
            continue
        kept += 1
        added.extend(rewritten_rows(d, texts, mode, p.persona))  # type: ignore[arg-type]
    order = {d.key: i for i, d in enumerate(dialogues)}
    dropped.sort(key=lambda x: order[x["id"]])
    record.update(kept=kept, added=len(added), skipped=len(dialogues) - len(asked),
                  filter={"asked": len(asked), "kept": kept, "dropped": dict(sorted(rules.items()))})
    if mode == "persona":
        record["personas"] = drawn
        record["own_personas"] = sum(x["own"] for x in drawn)
    return added, record, dropped


def summary_lines(result: Result) -> list[str]:
    m = result.manifest
    a = m.augmentation
    source_rows = a.get("source", {}).get("rows", 0)
    lines = [f"compeer-rewrite ({a.get('mode')}): {a.get('added', 0)} rows added to {source_rows} ({a.get('kept', 0)} of {a.get('planned', 0)} "
             f"dialogues augmented, {len(m.dropped)} not); {teacherjob.requests_line(result.calls, result.hits)}"]
    if a.get("clustering"):
        c = a["clustering"]
        lines.append(f"  DISC profiles: {a['profiles']['readable']} of {a['profiles']['asked']} readable; k = {c['k']} "
                     f"(elbow over k = {c['ks'][0]}..{c['ks'][-1]}), cluster sizes {c['sizes']}")
    if a.get("filter") and a["filter"]["dropped"]:
        lines.append("  filter dropped: " + ", ".join(f"{k} {v}" for k, v in a["filter"]["dropped"].items()))
    for drop in m.dropped[:3]:
        lines.append(f"  dropped {drop['id']}: {drop['reason']}")
    if len(m.dropped) > 3:
        lines.append(f"  ... and {len(m.dropped) - 3} more (see {MANIFEST})")
    return lines


# --------------------------------------------------------------------------- the command


@click.command("compeer-rewrite")
@click.option("--data", "data_folder", type=options.PATH, required=True,
              help="The CER folder to augment (made by `harness train compeer-data`; its rows are kept and others added).")
@click.option("--teacher", help="The model that extracts the DISC profiles and rewrites, ADAPTER[:MODEL] as for `harness run --model` "
                                "(the paper: GPT-4o, e.g. openai:gpt-4o). Needed for --mode persona and plain; duplicate asks none.")
@click.option("--teacher-args", help="The teacher adapter's options, k=v,k2=v2 (as --model-args).")
@click.option("--out", type=options.PATH, required=True,
              help=f"The new CER folder: {MANIFEST} (mode, teacher, k and SSE curve, filter counts) and {ROWS} (the source rows, then "
                   "the added ones). The same command again rebuilds it from the response cache.")
@click.option("--mode", required=True, type=click.Choice(MODES),
              help="persona: rewrite with a DISC persona from the participant's cluster (UnifiReward-P, the paper's method); plain: "
                   "rewrite without a persona (UnifiReward-R); duplicate: add the rows again unchanged (UnifiReward-D).")
@click.option("--participant", default="supporter", show_default=True, type=click.Choice(PARTICIPANTS),
              help="Whose turns are rewritten; random: one per dialogue, from its seed (the same in persona and plain).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds KMeans (random_state), the persona draws and the random participant.")
@click.option("--k-max", type=int, default=K_MAX, show_default=True,
              help="KMeans is run for k = 1..K_MAX (at most the number of distinct profiles); k is the elbow of the SSE curve.")
@click.option("--min-similarity", type=float, default=persona.MIN_SIMILARITY, show_default=True,
              help="The filter's least cosine (all-MiniLM-L6-v2) between a rewritten turn and its original; the filter also drops "
                   "unreadable rewrites, LLM phrases, a length outside 0.5-2x and unchanged dialogues.")
@options.cache
def compeer_rewrite(data_folder, teacher, teacher_args, out, mode, participant, seed, k_max, min_similarity, cache_path, no_cache) -> None:
    """COMPEER: augment CER data by personality-based conversation rewriting (or the plain / duplicate variants).

    persona: DISC profiles of every dialogue's participants are extracted, embedded and clustered (elbow
    rule); each dialogue's supporter (by default) is rewritten in the style of a persona from its own cluster,
    and rewrites that drift are filtered out. Each kept rewrite adds the dialogue's rows again with the
    rewritten history and original reply; the reasoning steps, the teacher's response and the annotations are
    carried over (the rewrite keeps every turn's intent, emotion and strategy)."""
    result = augment_cer(data_folder, out, mode, teacher, options.parse_kv(teacher_args, "--teacher-args") if teacher_args else None,
                         participant, seed, k_max, min_similarity, cache_path, not no_cache)
    for line in summary_lines(result):
        click.echo(line)
    click.echo(str(result.out))
