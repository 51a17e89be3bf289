"""COMPEER's personality-based conversation rewriting (section "Personality-based Conversation Rewriting"):
DISC profiles of the dialogue participants, KMeans over their embeddings with the elbow rule, a persona drawn
from the participant's own cluster, the rewrite itself and the filter that discards bad rewrites.

The DISC model (Marston 1928) describes observable communication behaviour along four dimensions: Dominance
(directness, taking control), Influence (expressiveness, engaging and persuading others), Steadiness
(patience, calm, accommodation) and Compliance (care, accuracy, following rules and facts; some DISC
literature calls it Conscientiousness, accepted here as a synonym). The paper gives its trait-extraction prompt
only in its supplement; `DISC_PROMPT` and `REWRITE_PROMPT` are ours.

Profiles. A teacher is asked once per participant per dialogue (seeker and supporter), through the harness's
response cache (`baselines.teacherjob.open_teacher`, as every teacher of the recipes), at temperature 0, for five
lines: "Dominance: ...", "Influence: ...", "Steadiness: ...", "Compliance: ..." and "Profile: <one sentence>".
`parse_profile` reads them tolerantly (see its docstring); an answer it cannot read is None and counted in
`Extraction.unreadable` (it is not asked again). What is embedded and clustered is `Profile.text()`, the five
lines as a block.

Clustering. `cluster_profiles` runs scikit-learn KMeans (n_init=10 restarts, random_state=seed: both fixed and
recorded) for every k of `k_range` (default 1..10) up to the number of distinct points, and picks k with
`elbow_k`:

    the elbow rule: put the SSE curve on a unit square (k: (k - k_first) / (k_last - k_first); SSE:
    (SSE - min) / (max - min)), draw the chord from its first point to its last, and take the k whose point
    lies farthest below the chord (the maximum perpendicular distance to it, on the convex side: a
    "kneedle"-like rule). Ties (distances within 1e-12) go to the smaller k. No elbow - fewer than three
    k's, a flat SSE, or no point more than 1e-6 below the chord (a straight line, a concave curve) - gives
    the smallest k of the range (one cluster when the range starts at 1: no evidence of structure).

    The chord rule leans towards the first half of the range. It prefers k - 1 to k roughly when the normalised SSE
    rises by less than one step along the chord (1/9 of the range for 1..10) on going from k to k - 1 clusters.
    In the plane that happens for 6 blobs: six tight blobs evenly spaced on a ring lose only 1/12 of the
    one-cluster SSE when two neighbours merge, so 1..10 gives fewer than 6 and a range reaching well past 6
    (1..15) gives 6; blobs at random places in the plane are often merged too. In high dimensions (the 384 of
    the MiniLM embeddings) random centres are about equidistant, a merge costs about 1/5 of the total with 6
    blobs, and 3, 4 and 6 blobs are found with 1..10 (tests/test_compeer_persona.py).

Personas. `draw_persona` draws, uniformly, a profile of another participant in the participant's own cluster
(the participant's own profile when it is alone in its cluster); the cluster ignores roles (a seeker's persona
may come from a supporter). `augment` plans, per dialogue, what the three variants of the paper's table
produce with an equal number of samples: "persona" (UnifiReward-P, the method: rewrite one participant with a
persona drawn from its cluster), "duplicate" (UnifiReward-D: the original dialogue added again) and "plain"
(UnifiReward-R: the same participant rewritten, without a persona). The rewritten participant is the
supporter by default (the model under training plays the supporter, and the paper's concern is personality
drift against the supporter's strategy labels); `participant="random"` picks one per dialogue from the
dialogue's stable seed, the same one in the persona and the plain variants.

Filter (the paper's "discards rewritten samples with semantic inconsistencies or detectable LLM artifacts"),
`filter_rewrite`, in this order, the first failing rule being the reason:
    1. the rewrite is readable (`parse_rewrite`: exactly the n numbered turns, in order, with the original
       speakers) and no turn is empty;
    2. no turn holds a stock LLM phrase (`LLM_PHRASES`, e.g. "as an AI", "language model", "here is the
       rewritten") that its original turn does not hold (case-insensitive, at word boundaries);
    3. the whole dialogue's length (characters) is within 0.5-2x the original's (`LENGTH_RATIO`): the rewrite
       may change wording and tone, not add or drop content wholesale;
    4. the rewrite is not the original itself (every turn equal after case and spacing), which would be a
       duplicate, not a rewrite (`reject_unchanged`);
    5. every rewritten turn's embedding has cosine >= 0.40 (`MIN_SIMILARITY`) to its original turn's (turns left
       as they were are not encoded). Why 0.40: with all-MiniLM-L6-v2, twelve hand-written style rewrites of
       ESC turns (terse / warm / formal rewordings, "Yes." -> "Yeah, I think so.") scored 0.51-0.81 against
       their originals, and six turns paired with another turn of such dialogues (a shifted or replaced turn)
       scored -0.01-0.25; 0.40 keeps a margin under the first and above the second. A negation or a swapped
       entity keeps a high cosine (0.47-0.66 in the same check): no cosine threshold catches those.
The phrases are English, as the ESConv and MESC dialogues are.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
from sklearn.cluster import KMeans

from harness.contract import ChatModel, ChatRequest, GenerationConfig, Message, Sample, Turn
from harness.errors import HarnessError

from .sampling import rounds_of, stable_seed

Encode = Callable[[Sequence[str]], np.ndarray]
Participant = Literal["seeker", "supporter"]

DIMENSIONS = ("dominance", "influence", "steadiness", "compliance")
FIELDS = (*DIMENSIONS, "summary")
LABELS = {"dominance": "Dominance", "influence": "Influence", "steadiness": "Steadiness", "compliance": "Compliance", "summary": "Profile"}
PARTICIPANTS: tuple[Participant, ...] = ("seeker", "supporter")
MODES = ("persona", "duplicate", "plain")
PROFILE_MAX_TOKENS = 320
N_INIT = 10  # KMeans restarts per k
K_RANGE = range(1, 11)
ELBOW_TOLERANCE = 1e-6  # a point must lie this far below the chord (unit square) to be an elbow
MIN_SIMILARITY = 0.40
LENGTH_RATIO = (0.5, 2.0)
LLM_PHRASES = (
    "as an ai", "i'm an ai", "i am an ai", "just an ai", "ai assistant", "language model", "openai", "chatgpt",
    "i cannot fulfill", "i can't fulfill", "i cannot assist with", "i can't assist with",
    "here is the rewritten", "here's the rewritten", "here is the rewrite", "here's the rewrite",
    "rewritten version", "rewritten dialogue", "rewritten conversation", "persona", "disc profile",
)
SEED_TAG = "compeer-persona"

# --------------------------------------------------------------------------- dialogues


@dataclass(frozen=True)
class Dialogue:
    """A whole dialogue as the rewriting sees it: merged turns (speakers alternate) and who is who."""

    id: str
    turns: tuple[Turn, ...]
    seeker: str  # the seeker's Turn.speaker, e.g. "Seeker" (ESConv), "Client" (MESC)
    supporter: str  # the supporter's, e.g. "Supporter", "Therapist"

    def speaker(self, participant: str) -> str:
        if participant not in PARTICIPANTS:
            raise HarnessError(f"participant '{participant}': choose seeker or supporter.")
        return self.seeker if participant == "seeker" else self.supporter


def dialogue_from_rounds(rounds: Sequence[Sample], seeker: str, supporter: str, dialogue_id: str | None = None) -> Dialogue:
    """A dialogue rebuilt from its rounds (the harness's samples of it, see sampling.py): the last round's history
    and its reply (merged into the last turn when that is the supporter's too). What follows the last supporter
    reply (a closing seeker turn) is not in any sample, so it is not in the dialogue either."""
    ordered = rounds_of(rounds)
    if not ordered:
        raise HarnessError("dialogue_from_rounds needs at least one round.")
    last = ordered[-1]
    turns = list(last.history)
    if turns and turns[-1].speaker == supporter:
        turns[-1] = Turn(speaker=supporter, text=f"{turns[-1].text} {last.reference}".strip())
    else:
        turns.append(Turn(speaker=supporter, text=last.reference))
    return Dialogue(id=dialogue_id or last.id.rsplit("/", 1)[0], turns=tuple(turns), seeker=seeker, supporter=supporter)


def numbered_transcript(turns: Sequence[Turn]) -> str:
    return "\n".join(f"{k}. {t.speaker}: {' '.join(t.text.split())}" for k, t in enumerate(turns, 1))


# --------------------------------------------------------------------------- DISC profiles

DISC_PROMPT = (
    "You profile how people communicate, using the DISC model of behaviour (Marston, 1928). It rates four dimensions of "
    "observable behaviour:\n"
    "- Dominance: how directly and forcefully the person pursues what they want - taking charge, deciding, being blunt.\n"
    "- Influence: how much the person reaches out to others - being expressive, warm, enthusiastic, persuasive, talkative.\n"
    "- Steadiness: how patient and accommodating the person is - calm, supportive, a good listener who avoids conflict.\n"
    "- Compliance: how careful and exact the person is - attentive to facts, details and correctness, measured and reserved.\n"
    "\n"
    "You will read a conversation and describe one of its participants, named in the message. Judge how they express "
    "themselves - their wording, tone and way of interacting - not the problems they talk about.\n"
    "\n"
    "Answer with exactly these five lines, in this order, and nothing else (no heading, list markers or comments):\n"
    "Dominance: <low, moderate or high>, <a few words on how it shows>\n"
    "Influence: <low, moderate or high>, <a few words on how it shows>\n"
    "Steadiness: <low, moderate or high>, <a few words on how it shows>\n"
    "Compliance: <low, moderate or high>, <a few words on how it shows>\n"
    "Profile: <one sentence on this person's overall communication style>"
)

_ROLE_WORDS = {"seeker": "the person seeking support", "supporter": "the person giving support"}


@dataclass(frozen=True)
class Profile:
    """One participant's DISC profile as the teacher wrote it (markdown and list markers removed)."""

    dominance: str
    influence: str
    steadiness: str
    compliance: str
    summary: str  # the "Profile:" sentence

    def text(self) -> str:
        """The five lines, as embedded for clustering and shown as a persona."""
        return "\n".join(f"{LABELS[f]}: {getattr(self, f)}" for f in FIELDS)

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def profile_request(dialogue: Dialogue, participant: str) -> ChatRequest:
    speaker = dialogue.speaker(participant)
    user = (f"Participant to describe: {speaker} ({_ROLE_WORDS[participant]}).\n\n"
            f"Conversation:\n{numbered_transcript(dialogue.turns)}")
    return ChatRequest(messages=(Message(role="system", content=DISC_PROMPT), Message(role="user", content=user)),
                       generation=GenerationConfig(max_tokens=PROFILE_MAX_TOKENS))


_LINE_START = re.compile(r"^[ \t]*(?:(?:[-*+\u2022#>]+|\(?\d+[.)]|\(?[a-eA-E][.)])[ \t]*)*")  # bullets, numbering, headings
_MARKDOWN = re.compile(r"\*\*|__|`+|(?<!\w)[*_](?=\w)|(?<=\w)[*_](?!\w)|^[*_]+|[*_]+$")
_LABEL = re.compile(r"^(?P<label>[^:\uff1a]{1,40}?)\s*[:\uff1a]\s*(?P<value>.*)$")
_INLINE = re.compile(r"(?<=[.;,!?)])[ \t]+(?=(?:\*\*|__)?[ \t]*(?:dominance|influence|steadiness|compliance|conscientiousness|profile|summary)"
                     r"[ \t]*(?:\([a-z]\))?[ \t]*(?:\*\*|__)?[ \t]*[:\uff1a])", re.IGNORECASE)  # "...low. Influence: ..." on one line
_NAMES = {"dominance": "dominance", "influence": "influence", "steadiness": "steadiness", "compliance": "compliance",
          "conscientiousness": "compliance"}
_LETTERS = {"d": "dominance", "i": "influence", "s": "steadiness", "c": "compliance"}
_SUMMARY_WORDS = {"profile", "summary", "overall"}
_SUMMARY_FILLER = _SUMMARY_WORDS | {"communication", "style", "sentence", "one"}


def _strip_markdown(text: str) -> str:
    return re.sub(r"\s+", " ", _MARKDOWN.sub("", text)).strip()


def _field_of(label: str) -> str | None:
    """Which field a line's label names ("Dominance", "**D (Dominance)**", "Conscientiousness", "Overall
    profile"), or None for any other label."""
    words = re.sub(r"[^a-z]+", " ", label.lower()).split()
    if not words:
        return None
    named = {_NAMES[w] for w in words if w in _NAMES}
    if len(named) == 1 and all(w in _NAMES or w in _LETTERS or w in {"level", "score", "trait"} for w in words):
        (found,) = named
        letters = {_LETTERS[w] for w in words if w in _LETTERS}
        return found if letters <= {found} else None
    if not named and len(words) == 1 and words[0] in _LETTERS:
        return _LETTERS[words[0]]
    if not named and set(words) & _SUMMARY_WORDS and set(words) <= _SUMMARY_FILLER:
        return "summary"
    return None


def parse_profile(text: str | None) -> Profile | None:
    """The teacher's five lines, or None when they cannot be read.

    Tolerated: any case; markdown (bold, italics, headings, code marks); list markers and numbering ("1.",
    "-", "a)"); "D (Dominance):", "Dominance (D):", "D:" and "Conscientiousness" for Compliance; "Summary" or
    "Overall profile" for Profile; a full-width colon; the labels inline on one line; a value running over
    several lines (up to a blank line or the next label); text before the first label or after a blank line
    (ignored); a label without content before the real one (a heading "DISC profile:"). Unreadable (None): a
    dimension or the profile missing or empty, or given twice with content; an empty answer; an answer in
    another language (the labels are English)."""
    if not text or not text.strip():
        return None
    body = _INLINE.sub("\n", text.replace("\r\n", "\n").replace("\r", "\n"))
    values: dict[str, list[str]] = {}
    current: str | None = None
    for raw in body.split("\n"):
        line = _LINE_START.sub("", raw).strip()
        if not line or set(line) <= set("`*_-=#"):
            current = None  # a blank line (or a rule / code fence) ends a value
            continue
        match = _LABEL.match(line)
        if match:
            key = _field_of(_strip_markdown(match.group("label")))
            if key is not None:
                if key in values and _strip_markdown(" ".join(values[key])):
                    return None  # given twice (a first one without content, a heading like "DISC profile:", is replaced)
                values[key] = [match.group("value")]
                current = key
                continue
            if len(_strip_markdown(match.group("label")).split()) <= 3:
                current = None  # another label ("Note:", "Here is the profile:"): not part of any value
                continue
        if current is not None:
            values[current].append(line)
    cleaned = {k: _strip_markdown(" ".join(v)).strip(" ;,") for k, v in values.items()}
    if any(not cleaned.get(f) for f in FIELDS):
        return None
    return Profile(**{f: cleaned[f] for f in FIELDS})


@dataclass(frozen=True)
class ProfileRecord:
    dialogue_id: str
    participant: Participant
    speaker: str
    profile: Profile | None  # None: the answer was unreadable
    answer: str  # the teacher's text

    @property
    def key(self) -> str:
        return f"{self.dialogue_id}/{self.participant}"


@dataclass
class Extraction:
    records: list[ProfileRecord]  # one per participant per dialogue, in dialogue order, seeker first
    unreadable: int  # answers parse_profile could not read

    @property
    def readable(self) -> list[ProfileRecord]:
        return [r for r in self.records if r.profile is not None]


def extract_profiles(teacher: ChatModel, dialogues: Sequence[Dialogue], chunk: int = 64) -> Extraction:
    """Ask `teacher` (e.g. the CachedModel of `open_teacher`) for the DISC profile of each dialogue's seeker and
    supporter: one request each, `chunk` requests per `generate` call; unreadable answers are None, counted."""
    wanted = [(d, p) for d in dialogues for p in PARTICIPANTS]
    records: list[ProfileRecord] = []
    for start in range(0, len(wanted), max(1, chunk)):
        part = wanted[start:start + max(1, chunk)]
        outputs = teacher.generate([profile_request(d, p) for d, p in part])
        for (d, p), output in zip(part, outputs):
            records.append(ProfileRecord(d.id, p, d.speaker(p), parse_profile(output.text), output.text))
    return Extraction(records, sum(r.profile is None for r in records))


def embed_profiles(records: Sequence[ProfileRecord], encode: Encode) -> np.ndarray:
    """The embeddings of the readable profiles' `text()`, in order (rows align with `Extraction.readable`)."""
    texts = [r.profile.text() for r in records if r.profile is not None]
    return np.asarray(encode(texts), dtype=np.float64)


# --------------------------------------------------------------------------- clustering


def elbow_k(sse: Sequence[float], ks: Sequence[int]) -> int:
    """The elbow of an SSE curve by the maximum-distance-to-the-chord rule (module docstring): the k farthest
    below the chord joining the first and last points of the curve on the unit square; ties to the smaller k;
    the first k when there is no elbow."""
    values = np.asarray(list(sse), dtype=np.float64)
    kk = list(ks)
    if len(kk) != len(values) or not kk:
        raise HarnessError(f"elbow_k: {len(values)} SSE values for {len(kk)} k's; give one SSE per k (at least one).")
    if any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in kk) or any(b <= a for a, b in zip(kk, kk[1:])):
        raise HarnessError(f"elbow_k: the k's must be whole numbers >= 1 in increasing order, got {kk}.")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise HarnessError("elbow_k: the SSE values must be finite and 0 or more.")
    if len(kk) < 3:
        return int(kk[0])
    lo, hi = float(values.min()), float(values.max())
    if hi - lo <= 1e-12 * max(hi, 1.0):
        return int(kk[0])
    x = (np.asarray(kk, dtype=np.float64) - kk[0]) / (kk[-1] - kk[0])
    y = (values - lo) / (hi - lo)
    dx, dy = x[-1] - x[0], y[-1] - y[0]
    below = (dy * (x - x[0]) - dx * (y - y[0])) / np.hypot(dx, dy)  # > 0: under the chord
    inner = below[1:-1]
    best = float(inner.max())
    if best <= ELBOW_TOLERANCE:
        return int(kk[0])
    return int(kk[1 + int(np.flatnonzero(inner >= best - 1e-12)[0])])


@dataclass
class Clustering:
    k: int  # the elbow's k
    labels: np.ndarray  # one cluster per point, numbered 0.. in order of first appearance
    sse_per_k: dict[int, float]  # KMeans inertia per k tried
    n_init: int = N_INIT
    random_state: int = 0
    ks: list[int] = field(default_factory=list)  # the k's tried (k_range cut at the number of distinct points)

    def summary(self) -> dict[str, Any]:
        return {"k": self.k, "sse_per_k": {str(k): round(v, 6) for k, v in self.sse_per_k.items()}, "n_init": self.n_init,
                "random_state": self.random_state, "sizes": np.bincount(self.labels, minlength=self.k).tolist()}


def _first_appearance(labels: np.ndarray) -> np.ndarray:
    order: dict[int, int] = {}
    for label in labels.tolist():
        order.setdefault(label, len(order))
    return np.array([order[label] for label in labels.tolist()], dtype=np.int64)


def cluster_profiles(embeddings: Any, k_range: Sequence[int] = K_RANGE, seed: int = 0, n_init: int = N_INIT) -> Clustering:
    """KMeans (scikit-learn, n_init restarts, random_state=seed) for each k of k_range not above the number of
    distinct points, k chosen by `elbow_k` on the inertias (SSE). One point: k = 1."""
    points = np.asarray(embeddings, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] == 0:
        raise HarnessError(f"cluster_profiles: expected a (profiles, dimensions) array with at least one profile, got shape {points.shape}.")
    if not np.all(np.isfinite(points)):
        raise HarnessError("cluster_profiles: the embeddings hold NaN or infinite values.")
    wanted = list(k_range)
    if not wanted or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in wanted):
        raise HarnessError(f"cluster_profiles: k_range must hold whole numbers >= 1, got {wanted}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise HarnessError(f"cluster_profiles: the seed must be a whole number, 0 or more, got {seed!r}.")
    distinct = len(np.unique(points, axis=0))
    ks = sorted({int(k) for k in wanted if k <= distinct})
    if not ks:
        raise HarnessError(f"cluster_profiles: {distinct} distinct profiles, fewer than the smallest k ({min(wanted)}); "
                           "give a k_range starting at 1, or more profiles.")
    sse: dict[int, float] = {}
    labels: dict[int, np.ndarray] = {}
    for k in ks:
        model = KMeans(n_clusters=k, n_init=n_init, random_state=int(seed)).fit(points)
        sse[k] = float(model.inertia_)
        labels[k] = model.labels_
    k = elbow_k([sse[k] for k in ks], ks)
    return Clustering(k=k, labels=_first_appearance(labels[k]), sse_per_k=sse, n_init=n_init, random_state=int(seed), ks=ks)


# --------------------------------------------------------------------------- personas


@dataclass(frozen=True)
class PersonaDraw:
    index: int  # the drawn profile's position in `profiles`
    profile: Profile
    own: bool  # True: the participant is alone in its cluster, so its own profile


def _generator(rng: np.random.Generator | int) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, bool) or not isinstance(rng, (int, np.integer)) or rng < 0:
        raise HarnessError(f"draw_persona: rng must be a numpy Generator or a seed (a whole number, 0 or more), got {rng!r}.")
    return np.random.default_rng(int(rng))


def draw_persona(cluster_labels: Sequence[int], profiles: Sequence[Profile], participant_index: int,
                 rng: np.random.Generator | int) -> PersonaDraw:
    """A persona for participant `participant_index`: a profile drawn uniformly from the others in its cluster,
    or its own when it is alone there. Deterministic in the seed (or the Generator's state)."""
    labels = np.asarray(cluster_labels)
    if labels.ndim != 1 or len(labels) != len(profiles):
        raise HarnessError(f"draw_persona: {len(labels)} cluster labels for {len(profiles)} profiles; give one label per profile.")
    if not 0 <= participant_index < len(profiles):
        raise HarnessError(f"draw_persona: participant {participant_index} is not one of the {len(profiles)} profiles.")
    generator = _generator(rng)
    mates = [int(j) for j in np.flatnonzero(labels == labels[participant_index]) if j != participant_index]
    if not mates:
        return PersonaDraw(participant_index, profiles[participant_index], True)
    j = mates[int(generator.integers(len(mates)))]
    return PersonaDraw(j, profiles[j], False)


# --------------------------------------------------------------------------- rewriting

_REWRITE_COMMON = (
    "Rules:\n"
    "- Keep what every turn does: its meaning and intent, the emotion it shows, and the support strategy behind it (a "
    "question stays a question, a reflection of feelings stays a reflection, a suggestion stays a suggestion). Add no new "
    "facts, events or advice and leave none out.\n"
    "- Keep each turn about as long as it was.\n"
    "- Copy the other participant's turns word for word.\n"
    "- Keep the same number of turns, in the same order, with the same speakers; never merge or split turns.\n"
    "- Make it sound like a real person talking; never mention a persona, a personality model, a rewrite or yourself.\n"
    "Answer with the conversation only: one line per turn, numbered and labelled as given (\"1. Speaker: text\"), "
    "nothing before or after it."
)

REWRITE_PROMPT = (
    "You rewrite conversations so that one participant speaks in a different personal style while the conversation "
    "itself stays the same.\n"
    "You receive a conversation with numbered turns, the participant to rewrite, and a persona: a description of how "
    "that person communicates along the DISC dimensions (Dominance, Influence, Steadiness, Compliance). Rewrite each turn "
    "of that participant so that it sounds like someone with this persona - their directness, warmth, patience and "
    "precision, their choice of words and tone.\n" + _REWRITE_COMMON
)

PLAIN_REWRITE_PROMPT = (
    "You rewrite conversations in new words while the conversation itself stays the same.\n"
    "You receive a conversation with numbered turns and the participant to rewrite. Reword each turn of that "
    "participant.\n" + _REWRITE_COMMON
)


def rewrite_request(dialogue: Dialogue, participant: str, persona: Profile | None = None) -> ChatRequest:
    """The request that rewrites `participant`'s turns of `dialogue`: with the persona (REWRITE_PROMPT) or, when
    None, without one (PLAIN_REWRITE_PROMPT, the UnifiReward-R variant). Temperature 0; room for the dialogue
    about twice over."""
    speaker = dialogue.speaker(participant)
    parts = [f"Participant to rewrite: {speaker}"]
    if persona is not None:
        parts.append(f"Persona:\n{persona.text()}")
    parts.append(f"Conversation ({len(dialogue.turns)} turns):\n{numbered_transcript(dialogue.turns)}")
    chars = sum(len(t.text) + len(t.speaker) + 6 for t in dialogue.turns)
    generation = GenerationConfig(max_tokens=min(8192, 128 + chars // 2))  # ~4 characters a token, twice over
    return ChatRequest(messages=(Message(role="system", content=PLAIN_REWRITE_PROMPT if persona is None else REWRITE_PROMPT),
                                 Message(role="user", content="\n\n".join(parts))), generation=generation)


_TURN_LINE = re.compile(r"^[ \t>]*(?:\*\*|__)?[ \t]*\[?(\d{1,4})[\].):]?(?:\*\*|__)?(?:[ \t]+|$)(.*)$")
_SPEAKER = re.compile(r"^(?:\*\*|__)?[ \t]*([^:\uff1a*_]{1,40}?)[ \t]*(?:\*\*|__)?[ \t]*[:\uff1a][ \t]*(?:\*\*|__)?[ \t]*(.*)$")


def parse_rewrite(text: str | None, n_turns: int, speakers: Sequence[str] | None = None) -> list[str] | None:
    """The rewritten turns' texts, or None when the answer is not the n numbered turns.

    Each turn is a line "k. Speaker: text" (also "k)", "[k]", "k:", bold markers), k = 1..n once each, in order;
    a turn's text runs on over the following lines up to a blank line or the next turn (a line starting with a
    number but without "Speaker:" is such text). With `speakers`, turn k's
    speaker must be speakers[k-1] (case aside); without, any "Name:" of up to 40 characters is taken as the
    speaker. Lines before turn 1 or after a blank line are not part of any turn (ignored). None: a number
    missing, repeated, out of order or beyond n; a turn without text; a speaker that differs."""
    if not text or n_turns < 1:
        return None
    if speakers is not None and len(speakers) != n_turns:
        raise HarnessError(f"parse_rewrite: {len(speakers)} speakers for {n_turns} turns.")
    turns: list[list[str]] = []
    open_turn = False
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.strip()
        if not line or set(line) <= set("`*_-="):
            open_turn = False
            continue
        numbered = _TURN_LINE.match(line)
        said = _SPEAKER.match(numbered.group(2)) if numbered else None
        if numbered and said:  # "k. Speaker: text" (a line only starting with a number is a turn's text)
            number = int(numbered.group(1))
            if number != len(turns) + 1 or number > n_turns:
                return None
            who, what = said.group(1).strip(), said.group(2)
            if speakers is not None and who.casefold() != speakers[number - 1].strip().casefold():
                return None
            turns.append([what])
            open_turn = True
            continue
        if open_turn:
            turns[-1].append(line)
    if len(turns) != n_turns:
        return None
    out = [re.sub(r"\s+", " ", _MARKDOWN.sub("", " ".join(parts))).strip() for parts in turns]
    return None if any(not t for t in out) else out


class Verdict(NamedTuple):
    keep: bool
    reason: str  # "ok", or the first rule that failed (one line)


def _norm(text: str) -> str:
    return " ".join(text.replace("\u2019", "'").casefold().split())


def _phrase(phrase: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + re.escape(_norm(phrase)) + r"(?!\w)")


def filter_rewrite(original: Sequence[str | Turn], rewritten: Sequence[str] | None, encode: Encode,
                   min_similarity: float = MIN_SIMILARITY, length_ratio: tuple[float, float] = LENGTH_RATIO,
                   phrases: Sequence[str] = LLM_PHRASES, reject_unchanged: bool = True) -> Verdict:
    """Keep a rewrite or not, by the rules of the module docstring, in their order (the first failing one is the
    reason). `original`: the dialogue's turns (or texts); `rewritten`: `parse_rewrite`'s turns (None:
    unreadable); `encode`: texts -> embeddings (e.g. SentenceEncoder(...).encode); rows are L2-normalised here."""
    before = [t.text if isinstance(t, Turn) else str(t) for t in original]
    if rewritten is None:
        return Verdict(False, "unreadable rewrite (not the numbered turns of the dialogue)")
    after = [str(t) for t in rewritten]
    if len(after) != len(before):
        return Verdict(False, f"{len(after)} turns, the original has {len(before)}")
    for k, t in enumerate(after, 1):
        if not t.strip():
            return Verdict(False, f"turn {k} is empty")
    patterns = [(p, _phrase(p)) for p in phrases]
    for k, (old, new) in enumerate(zip(before, after), 1):
        old_n, new_n = _norm(old), _norm(new)
        for phrase, pattern in patterns:
            if pattern.search(new_n) and not pattern.search(old_n):
                return Verdict(False, f"turn {k} holds the LLM phrase '{phrase}'")
    total_before, total_after = sum(len(t) for t in before), sum(len(t) for t in after)
    ratio = total_after / total_before if total_before else (1.0 if not total_after else float("inf"))
    lo, hi = length_ratio
    if not lo <= ratio <= hi:
        return Verdict(False, f"length {ratio:.2f}x the original's, outside {lo:g}-{hi:g}x")
    changed = [k for k, (old, new) in enumerate(zip(before, after)) if _norm(old) != _norm(new)]
    if not changed:
        return Verdict(False, "unchanged: the rewrite is the original dialogue") if reject_unchanged else Verdict(True, "ok")
    vectors = np.asarray(encode([before[k] for k in changed] + [after[k] for k in changed]), dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] != 2 * len(changed):
        raise HarnessError(f"filter_rewrite: the encoder gave shape {vectors.shape} for {2 * len(changed)} texts.")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    cosines = (unit[:len(changed)] * unit[len(changed):]).sum(axis=1)
    for k, cosine in zip(changed, cosines):
        if cosine < min_similarity:
            return Verdict(False, f"turn {k + 1}: cosine {cosine:.2f} to the original, under {min_similarity:.2f}")
    return Verdict(True, "ok")


# --------------------------------------------------------------------------- the augmentation plan


@dataclass(frozen=True)
class AugmentPlan:
    dialogue_id: str
    mode: str  # "persona" | "duplicate" | "plain"
    action: str  # "rewrite" | "duplicate" | "skip"
    participant: Participant | None = None  # whose turns are rewritten
    persona: Profile | None = None  # mode "persona": the drawn profile
    persona_of: str | None = None  # whose profile it is ("<dialogue id>/<participant>")
    own_persona: bool = False  # the participant was alone in its cluster
    reason: str | None = None  # why a dialogue is skipped


def augment(dialogue_ids: Sequence[str], mode: str, seed: int, participant: str = "supporter",
            profiles: Sequence[ProfileRecord] = (), labels: Sequence[int] | None = None) -> list[AugmentPlan]:
    """What each dialogue adds to the training data in `mode` (module docstring), one plan per dialogue, in order.

    profiles / labels (mode "persona" only): the readable profiles that were clustered and their cluster labels,
    aligned. participant: "supporter" (default), "seeker", or "random" (one per dialogue, from its stable seed).
    A dialogue whose participant has no readable profile is "skip" in mode "persona" (no cluster to draw from).
    Deterministic in (seed, dialogue id), whatever the other dialogues."""
    if mode not in MODES:
        raise HarnessError(f"augmentation mode '{mode}': choose one of {', '.join(MODES)}.")
    if participant not in (*PARTICIPANTS, "random"):
        raise HarnessError(f"participant '{participant}': choose seeker, supporter or random.")
    pool = [r for r in profiles if r.profile is not None]
    if len(pool) != len(profiles):
        raise HarnessError("augment: give the readable profiles only (Extraction.readable), in the order they were clustered.")
    if mode == "persona":
        if labels is None or len(labels) != len(pool):
            raise HarnessError(f"augment: mode persona needs one cluster label per profile ({len(pool)} profiles, "
                               f"{'no' if labels is None else len(labels)} labels).")
    where = {r.key: i for i, r in enumerate(pool)}
    plans: list[AugmentPlan] = []
    for dialogue_id in dialogue_ids:
        if mode == "duplicate":
            plans.append(AugmentPlan(dialogue_id, mode, "duplicate"))
            continue
        rng = np.random.default_rng(stable_seed(seed, dialogue_id, tag=SEED_TAG))
        who: Participant = PARTICIPANTS[int(rng.integers(2))] if participant == "random" else participant  # type: ignore[assignment]
        if mode == "plain":
            plans.append(AugmentPlan(dialogue_id, mode, "rewrite", who))
            continue
        index = where.get(f"{dialogue_id}/{who}")
        if index is None:
            plans.append(AugmentPlan(dialogue_id, mode, "skip", who, reason=f"no readable DISC profile of the {who}"))
            continue
        drawn = draw_persona(labels, [r.profile for r in pool], index, rng)  # type: ignore[arg-type,misc]
        plans.append(AugmentPlan(dialogue_id, mode, "rewrite", who, drawn.profile, pool[drawn.index].key, drawn.own))
    return plans
