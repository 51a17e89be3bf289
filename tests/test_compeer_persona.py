"""COMPEER's personality-based rewriting: DISC profiles (prompt, parsing, extraction through the response cache
with the scripted model), KMeans with the elbow rule, persona draws, the rewrite's parsing and filter, and the
augmentation plan of the three variants (persona / duplicate / plain)."""
import zlib

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from baselines.compeer import persona
from baselines.teacherjob import open_teacher
from baselines.compeer.persona import (
    DISC_PROMPT,
    LLM_PHRASES,
    MIN_SIMILARITY,
    PLAIN_REWRITE_PROMPT,
    REWRITE_PROMPT,
    Dialogue,
    Profile,
    ProfileRecord,
    augment,
    cluster_profiles,
    dialogue_from_rounds,
    draw_persona,
    elbow_k,
    embed_profiles,
    extract_profiles,
    filter_rewrite,
    parse_profile,
    parse_rewrite,
    profile_request,
    rewrite_request,
)
from harness.contract import Sample, Turn
from harness.errors import HarnessError


@pytest.fixture(autouse=True)
def one_thread():
    """KMeans on one thread: the tests' arrays are tiny, and OpenMP threads on a busy machine only slow them."""
    with threadpool_limits(1):
        yield


GOOD = """Dominance: low, rarely steers the conversation and asks rather than tells.
Influence: moderate, friendly and open about feelings.
Steadiness: high, patient and reassuring throughout.
Compliance: moderate, careful to describe events accurately.
Profile: A gentle, patient communicator who shares openly and avoids confrontation."""

PROFILE = Profile(
    dominance="low, rarely steers the conversation and asks rather than tells.",
    influence="moderate, friendly and open about feelings.",
    steadiness="high, patient and reassuring throughout.",
    compliance="moderate, careful to describe events accurately.",
    summary="A gentle, patient communicator who shares openly and avoids confrontation.",
)


def profile_text(tag: str) -> str:
    return "\n".join(f"{name}: {tag} {name.lower()}" for name in ("Dominance", "Influence", "Steadiness", "Compliance", "Profile"))


# --------------------------------------------------------------------------- prompts and parsing


def test_disc_prompt_asks_for_the_parseable_form():
    for label in ("Dominance:", "Influence:", "Steadiness:", "Compliance:", "Profile:"):
        assert label in DISC_PROMPT
    assert "Marston" in DISC_PROMPT
    dialogue = Dialogue("esconv/train/d0001", (Turn(speaker="Seeker", text="I feel  lost."), Turn(speaker="Supporter", text="Tell me more.")),
                        "Seeker", "Supporter")
    request = profile_request(dialogue, "supporter")
    assert request.messages[0].content == DISC_PROMPT and request.generation.temperature == 0
    user = request.messages[1].content
    assert user.startswith("Participant to describe: Supporter (the person giving support).")
    assert "1. Seeker: I feel lost.\n2. Supporter: Tell me more." in user
    with pytest.raises(HarnessError, match="seeker or supporter"):
        profile_request(dialogue, "therapist")


def test_parse_profile_reads_the_form():
    assert parse_profile(GOOD) == PROFILE
    assert parse_profile(GOOD).text() == GOOD
    assert PROFILE.to_dict()["summary"].startswith("A gentle")


@pytest.mark.parametrize("answer", [
    # case, markdown, numbering, headings, bullets
    "1. **DOMINANCE**: low, rarely steers the conversation and asks rather than tells.\n"
    "2. *Influence:* moderate, friendly and open about feelings.\n"
    "### Steadiness: high, patient and reassuring throughout.\n"
    "- compliance: moderate, careful to describe events accurately.\n"
    "**Profile:** A gentle, patient communicator who shares openly and avoids confrontation.",
    # letters, synonyms, a full-width colon
    "D (Dominance): low, rarely steers the conversation and asks rather than tells.\n"
    "Influence (I): moderate, friendly and open about feelings.\n"
    "S\uff1a high, patient and reassuring throughout.\n"
    "Conscientiousness: moderate, careful to describe events accurately.\n"
    "Summary: A gentle, patient communicator who shares openly and avoids confrontation.",
    # a preamble, and a remark after a blank line
    "Here is the DISC profile of the seeker:\n\n" + GOOD + "\n\nLet me know if you need anything else.",
    # another label right after the profile is not part of it
    GOOD + "\nNote: based on a short conversation.",
    # all on one line; a heading that looks like a label
    GOOD.replace("\n", " "),
    GOOD.replace("\n", "; "),
    "Seeker's DISC profile:\n\n" + GOOD,
    "**Profile:**\n" + GOOD,
    # a value over two lines
    GOOD.replace("Influence: moderate, friendly", "Influence: moderate,\nfriendly"),
])
def test_parse_profile_is_tolerant(answer):
    assert parse_profile(answer) == PROFILE


@pytest.mark.parametrize("answer", [
    None, "", "   \n ",
    GOOD.replace("Steadiness: high, patient and reassuring throughout.\n", ""),  # a dimension missing
    GOOD.rsplit("\n", 1)[0],  # no Profile line
    GOOD.replace("Compliance: moderate, careful to describe events accurately.", "Compliance:"),  # empty value
    GOOD + "\nDominance: high",  # a dimension twice
    "The seeker seems calm and patient, rarely dominant, and fairly careful with details.",  # free prose
    "支配性：低，很少主导对话。\n影响力：中等。\n稳定性：高，耐心。\n服从性：中等。\n总结：温和、耐心的沟通者。",  # Chinese
    "Dominance and Influence: both low\nSteadiness: high\nCompliance: moderate\nProfile: calm.",  # two dimensions on one label
])
def test_parse_profile_refuses_unreadable_answers(answer):
    assert parse_profile(answer) is None


# --------------------------------------------------------------------------- extraction through the cache


def rounds(dialogue: int, n: int) -> list[Sample]:
    """ESConv-like samples of one dialogue: seeker / supporter turns, one sample per supporter turn."""
    turns = []
    for k in range(2 * n):
        turns.append(Turn(speaker="Seeker" if k % 2 == 0 else "Supporter", text=f"d{dialogue} turn {k}"))
    return [Sample(id=f"esconv/train/d{dialogue:04d}/t{k:02d}", history=tuple(turns[:k]), reference=turns[k].text)
            for k in range(1, 2 * n, 2)]


def test_dialogue_from_rounds():
    d = dialogue_from_rounds(list(reversed(rounds(3, 3))), "Seeker", "Supporter")
    assert d.id == "esconv/train/d0003" and len(d.turns) == 6
    assert [t.text for t in d.turns] == [f"d3 turn {k}" for k in range(6)]
    assert d.speaker("seeker") == "Seeker" and d.speaker("supporter") == "Supporter"
    # ESConv's utterance mode: a second supporter utterance right after the first joins its turn
    history = (Turn(speaker="Seeker", text="Hi."), Turn(speaker="Supporter", text="Hello."))
    two = dialogue_from_rounds([Sample(id="esconv/train/d0001/u02", history=history, reference="How are you?")], "Seeker", "Supporter")
    assert [t.text for t in two.turns] == ["Hi.", "Hello. How are you?"]
    with pytest.raises(HarnessError):
        dialogue_from_rounds([], "Seeker", "Supporter")


def test_extract_profiles_through_the_response_cache(tmp_path):
    dialogues = [dialogue_from_rounds(rounds(d, 2), "Seeker", "Supporter") for d in (1, 2)]
    script = [profile_text("a"), "I cannot tell from this conversation.", GOOD, profile_text("b")]
    cache = tmp_path / "teacher.sqlite"
    with open_teacher("scripted", {"outputs": script}, cache_path=cache) as (_, teacher):
        got = extract_profiles(teacher, dialogues, chunk=3)
        asked = teacher.inner.requests
        assert (teacher.calls, teacher.hits) == (4, 0)
    assert [(r.dialogue_id, r.participant, r.speaker) for r in got.records] == [
        ("esconv/train/d0001", "seeker", "Seeker"), ("esconv/train/d0001", "supporter", "Supporter"),
        ("esconv/train/d0002", "seeker", "Seeker"), ("esconv/train/d0002", "supporter", "Supporter")]
    assert got.unreadable == 1 and got.records[1].profile is None and got.records[1].answer == script[1]
    assert got.records[2].profile == PROFILE and got.records[0].profile.dominance == "a dominance"
    assert [r.key for r in got.readable] == ["esconv/train/d0001/seeker", "esconv/train/d0002/seeker", "esconv/train/d0002/supporter"]
    assert [r.messages[1].content.split("\n")[0] for r in asked] == [
        "Participant to describe: Seeker (the person seeking support).", "Participant to describe: Supporter (the person giving support)."] * 2
    assert all(r.messages[0].content == DISC_PROMPT for r in asked)
    assert "1. Seeker: d2 turn 0" in asked[2].messages[1].content
    # the same teacher again: every answer from the cache, nothing asked
    with open_teacher("scripted", {"outputs": script}, cache_path=cache) as (_, teacher):
        again = extract_profiles(teacher, dialogues)
        assert (teacher.calls, teacher.hits) == (0, 4) and teacher.inner.requests == []
    assert again.records == got.records and again.unreadable == 1
    # the embeddings of the readable profiles, in order
    seen: list[list[str]] = []
    vectors = embed_profiles(got.records, lambda texts: seen.append(list(texts)) or np.eye(len(texts), 5))
    assert vectors.shape == (3, 5) and seen == [[r.profile.text() for r in got.readable]]


# --------------------------------------------------------------------------- the elbow


def test_elbow_rule():
    ks = list(range(1, 11))
    assert elbow_k([100, 30, 10, 9, 8, 7, 6, 5, 4, 3], ks) == 3
    assert elbow_k([100, 60, 30, 8, 7, 6, 5, 4, 3, 2], ks) == 4
    assert elbow_k([40, 22, 12, 7, 4.5, 4.2, 4.0, 3.9], [1, 2, 3, 4, 6, 8, 12, 16]) == 4  # uneven k's: the unit square uses k itself
    # the farthest point below the chord, not the steepest drop: [1, 0.5, 1/6, 0] is 1/6 below at k = 2 and 3 -> tie -> the smaller
    assert elbow_k([6, 3, 1, 0], [1, 2, 3, 4]) == 2
    # no elbow -> the first k: a straight line (exact or in floats), a concave curve, a flat one, too few points
    assert elbow_k(list(range(10, 0, -1)), ks) == 1
    assert elbow_k(np.linspace(7.3, 0.2, 10).tolist(), ks) == 1
    assert elbow_k([10, 9.9, 9.7, 9.0, 5.0, 0.0], [1, 2, 3, 4, 5, 6]) == 1
    assert elbow_k([5.0] * 6, [2, 3, 4, 5, 6, 7]) == 2
    assert elbow_k([3.0, 1.0], [1, 2]) == 1 and elbow_k([3.0], [4]) == 4
    for sse, kk in (([1, 2], [1, 2, 3]), ([], []), ([3, 2, 1], [1, 3, 2]), ([3, 2, 1], [0, 1, 2]), ([3, -1, 0], [1, 2, 3]),
                    ([3, float("nan"), 1], [1, 2, 3])):
        with pytest.raises(HarnessError):
            elbow_k(sse, kk)


def blobs(centres, per: int, spread: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.asarray(centres, dtype=np.float64)
    points = np.concatenate([c + spread * rng.standard_normal((per, centres.shape[1])) for c in centres])
    return points[rng.permutation(len(points))]


def ring(k: int, radius: float = 10.0) -> list[tuple[float, float]]:
    return [(radius * np.cos(2 * np.pi * j / k), radius * np.sin(2 * np.pi * j / k)) for j in range(k)]


@pytest.mark.parametrize("k", [3, 4, 6])
def test_clusters_in_high_dimensions(k):
    """Unit-length random centres in 384 dimensions (as MiniLM embeddings), 20 points each, spread 0.02 per axis
    (a radius of about 0.4, centres about 1.4 apart): the default range 1..10 finds k, and the labels are the blobs."""
    rng = np.random.default_rng(k)
    centres = rng.standard_normal((k, 384))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    points = blobs(centres, 20, 0.02, seed=k)
    got = cluster_profiles(points, seed=0)
    assert got.k == k and got.ks == list(range(1, 11)) and (got.n_init, got.random_state) == (10, 0)
    assert sorted(got.sse_per_k) == list(range(1, 11)) and got.sse_per_k[1] > got.sse_per_k[k] > 0
    nearest = np.argmin(((points[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    assert len({(int(a), int(b)) for a, b in zip(nearest, got.labels)}) == k  # one label per blob, one blob per label
    assert got.labels[0] == 0 and set(got.labels.tolist()) == set(range(k))  # numbered in order of first appearance
    assert got.summary()["sizes"] == [20] * k


@pytest.mark.parametrize("k", [3, 4])
def test_clusters_in_the_plane(k):
    points = blobs(ring(k), 25, 0.5, seed=k)
    assert cluster_profiles(points, seed=1).k == k


def test_six_clusters_in_the_plane_need_a_wider_range():
    """The documented bias of the chord rule: six equally spaced blobs on a ring are found with k in 1..15; with
    1..10 the elbow lands earlier (merging two neighbours adds 1/12 of the one-cluster SSE, less than the chord's
    1/9 per step)."""
    points = blobs(ring(6), 25, 0.5, seed=6)
    assert cluster_profiles(points, k_range=range(1, 16), seed=0).k == 6
    assert cluster_profiles(points, seed=0).k < 6


def test_clustering_small_and_odd_inputs():
    points = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [9.0, 0.0], [5.0, 5.0]])  # 3 distinct points
    got = cluster_profiles(points)
    assert got.ks == [1, 2, 3] and len(got.labels) == 5 and got.k in (1, 2, 3)
    assert got.labels[0] == got.labels[1] and got.labels[2] == got.labels[4]
    one = cluster_profiles([[1.0, 2.0, 3.0]])
    assert one.k == 1 and one.labels.tolist() == [0] and one.ks == [1]
    same = cluster_profiles(points, seed=4)
    assert same.labels.tolist() == cluster_profiles(points, seed=4).labels.tolist() and same.random_state == 4
    for bad, kwargs in (([], {}), (np.zeros((0, 3)), {}), ([1.0, 2.0], {}), ([[1.0, float("nan")]], {}),
                        (points, {"k_range": range(5, 11)}), (points, {"k_range": [0, 1]}), (points, {"seed": -1})):
        with pytest.raises(HarnessError):
            cluster_profiles(bad, **kwargs)


# --------------------------------------------------------------------------- personas


def test_draw_persona_from_the_same_cluster():
    labels = [0, 0, 1, 1, 1, 2]
    profiles = [Profile(*(f"p{j}",) * 5) for j in range(6)]
    for seed in range(20):
        first = draw_persona(labels, profiles, 0, seed)
        assert (first.index, first.own) == (1, False) and first.profile is profiles[1]
        alone = draw_persona(labels, profiles, 5, seed)
        assert (alone.index, alone.own) == (5, True)
    drawn = [draw_persona(labels, profiles, 2, seed).index for seed in range(40)]
    assert set(drawn) == {3, 4}  # never the participant's own, both mates in turn
    assert [draw_persona(labels, profiles, 2, seed).index for seed in range(40)] == drawn  # deterministic in the seed
    a, b = np.random.default_rng(9), np.random.default_rng(9)
    assert [draw_persona(labels, profiles, 3, a).index for _ in range(10)] == [draw_persona(labels, profiles, 3, b).index for _ in range(10)]
    for args in ((labels[:5], profiles, 0, 0), (labels, profiles, 6, 0), (labels, profiles, 0, -1), (labels, profiles, 0, 1.5)):
        with pytest.raises(HarnessError):
            draw_persona(*args)


# --------------------------------------------------------------------------- rewriting

DIALOGUE = Dialogue("esconv/train/d0009", (
    Turn(speaker="Seeker", text="I failed my driving test again and I feel stupid."),
    Turn(speaker="Supporter", text="I'm sorry, that sounds frustrating. How many times have you taken it?"),
    Turn(speaker="Seeker", text="Three times now."),
    Turn(speaker="Supporter", text="Many people need several tries. What made this one hard?"),
), "Seeker", "Supporter")
SPEAKERS = [t.speaker for t in DIALOGUE.turns]
REWRITE = ["I failed my driving test again and I feel stupid.",
           "Oh no, I'm so sorry, that must be really frustrating! How many times have you tried so far?",
           "Three times now.",
           "Honestly, loads of people need a few attempts. What made this one tough for you?"]
ANSWER = "\n".join(f"{k}. {s}: {t}" for k, (s, t) in enumerate(zip(SPEAKERS, REWRITE), 1))


def test_rewrite_prompts_and_requests():
    for prompt in (REWRITE_PROMPT, PLAIN_REWRITE_PROMPT):
        assert "same number of turns" in prompt and "word for word" in prompt and "strategy" in prompt
    assert "persona" in REWRITE_PROMPT and "DISC" in REWRITE_PROMPT and "DISC" not in PLAIN_REWRITE_PROMPT
    with_persona = rewrite_request(DIALOGUE, "supporter", PROFILE)
    assert with_persona.messages[0].content == REWRITE_PROMPT
    user = with_persona.messages[1].content
    assert user.startswith("Participant to rewrite: Supporter\n\nPersona:\n" + PROFILE.text())
    assert "Conversation (4 turns):\n1. Seeker: I failed my driving test" in user
    plain = rewrite_request(DIALOGUE, "seeker")
    assert plain.messages[0].content == PLAIN_REWRITE_PROMPT and "Persona" not in plain.messages[1].content
    assert plain.messages[1].content.startswith("Participant to rewrite: Seeker")
    assert 128 < plain.generation.max_tokens <= 8192 and plain.generation.temperature == 0


def test_parse_rewrite():
    assert parse_rewrite(ANSWER, 4, SPEAKERS) == REWRITE
    assert parse_rewrite(ANSWER, 4) == REWRITE
    bold = ANSWER.replace("2. Supporter:", "**2. Supporter:**").replace("4. Supporter:", "4) **Supporter:**")
    assert parse_rewrite(bold, 4, SPEAKERS) == REWRITE
    framed = "Here is the rewritten conversation:\n\n" + ANSWER + "\n\nI kept every turn's intent."
    assert parse_rewrite(framed, 4, SPEAKERS) == REWRITE
    wrapped = ANSWER.replace("How many times have you tried so far?", "How many times\nhave you tried so far?")
    assert parse_rewrite(wrapped, 4, SPEAKERS) == REWRITE
    numeric = ANSWER.replace("Three times now.", "Three times now,\n3 times in a row.")
    assert parse_rewrite(numeric, 4, SPEAKERS)[2] == "Three times now, 3 times in a row."
    lines = ANSWER.split("\n")
    for broken in ("\n".join(lines[:3]),  # a turn missing
                   "\n".join(lines + ["5. Seeker: Thanks."]),  # one too many
                   "\n".join([lines[0], lines[2], lines[1], lines[3]]),  # out of order
                   "\n".join([lines[0], lines[0]] + lines[2:]),  # a number twice
                   ANSWER.replace("3. Seeker:", "3. Supporter:"),  # another speaker
                   ANSWER.replace("3. Seeker: Three times now.", "3. Seeker:"),  # an empty turn
                   " ".join(REWRITE), "", None):
        assert parse_rewrite(broken, 4, SPEAKERS) is None
    with pytest.raises(HarnessError):
        parse_rewrite(ANSWER, 4, SPEAKERS[:3])


def bag_of_words(texts):
    """Stub encoder: hashed bag of words (64 dimensions), so rewordings that share words are close."""
    out = np.zeros((len(texts), 64))
    for i, text in enumerate(texts):
        for word in text.lower().replace(",", " ").replace(".", " ").replace("?", " ").replace("!", " ").split():
            out[i, zlib.crc32(word.encode()) % 64] += 1
    return out


def fixed(vectors: dict[str, list[float]]):
    """Stub encoder with chosen vectors (a text not listed is a KeyError)."""
    return lambda texts: np.array([vectors[t] for t in texts], dtype=np.float64)


def test_filter_keeps_a_faithful_rewrite():
    assert filter_rewrite(DIALOGUE.turns, REWRITE, bag_of_words) == (True, "ok")
    keep, reason = filter_rewrite([t.text for t in DIALOGUE.turns], parse_rewrite(ANSWER, 4, SPEAKERS), bag_of_words)
    assert keep and reason == "ok"


def test_filter_rejects():
    turns = DIALOGUE.turns
    cases = {
        "unreadable rewrite": None,
        "3 turns, the original has 4": REWRITE[:3],
        "turn 3 is empty": [REWRITE[0], REWRITE[1], "  ", REWRITE[3]],
        "turn 2 holds the LLM phrase 'as an ai'": [REWRITE[0], "As an AI, I understand. " + REWRITE[1], REWRITE[2], REWRITE[3]],
        "turn 4 holds the LLM phrase 'language model'": REWRITE[:3] + ["I'm just a language model, but " + REWRITE[3]],
        "turn 1 holds the LLM phrase 'here is the rewritten'": ["Here is the rewritten turn: " + REWRITE[0]] + REWRITE[1:],
        "turn 2 holds the LLM phrase 'persona'": [REWRITE[0], REWRITE[1] + " (warm persona)", REWRITE[2], REWRITE[3]],
        "length 3.16x the original's, outside 0.5-2x": [REWRITE[0], REWRITE[1] * 5, REWRITE[2], REWRITE[3]],
        "length 0.17x the original's, outside 0.5-2x": ["Failed.", "Sorry.", "Three.", "What was hard?"],
        "unchanged: the rewrite is the original dialogue": [t.text.upper() for t in turns],
    }
    for expected, rewritten in cases.items():
        keep, reason = filter_rewrite(turns, rewritten, bag_of_words)
        assert not keep and reason.startswith(expected), (expected, reason)
        assert "\n" not in reason
    # an LLM phrase the original turn already holds is the dialogue's own words
    ai = ["I asked ChatGPT about it and it didn't help.", "What did it say?"]
    assert filter_rewrite(ai, ["I even asked ChatGPT about it, and it didn't help at all.", "Oh? What did it tell you?"], bag_of_words).keep
    assert not filter_rewrite(ai, [ai[0], "What did ChatGPT say?"], bag_of_words).keep
    assert "chatgpt" in LLM_PHRASES and "as an ai" in LLM_PHRASES
    # a word that merely contains a phrase is not it ("as an aide")
    assert filter_rewrite(["I work as a nurse."], ["I work as an aide."], fixed({"I work as a nurse.": [1, 0], "I work as an aide.": [1, 0]})).keep
    assert filter_rewrite(turns, [t.text for t in turns], bag_of_words, reject_unchanged=False) == (True, "ok")


def test_filter_similarity_threshold():
    """Cosine >= MIN_SIMILARITY keeps a turn, below drops the rewrite; turns left as they were are not encoded."""
    assert MIN_SIMILARITY == 0.40
    original = ["I lost my job.", "That is hard."]
    angle = lambda c: [c, float(np.sqrt(1 - c * c))]
    for cosine, keep in ((0.40, True), (0.41, True), (0.39, False), (-0.5, False)):
        encode = fixed({"I lost my job.": [1, 0], "I just lost my job.": angle(cosine)})
        verdict = filter_rewrite(original, ["I just lost my job.", "That is hard."], encode)
        assert verdict.keep is keep, (cosine, verdict)
        if not keep:
            assert verdict.reason == f"turn 1: cosine {cosine:.2f} to the original, under 0.40"
    # not normalised by the encoder: normalised here; a zero vector has cosine 0
    scaled = fixed({"I lost my job.": [10, 0], "I just lost my job.": [3, 0.1]})
    assert filter_rewrite(original, ["I just lost my job.", "That is hard."], scaled).keep
    zero = fixed({"I lost my job.": [0, 0], "I just lost my job.": [1, 0]})
    assert not filter_rewrite(original, ["I just lost my job.", "That is hard."], zero).keep
    assert filter_rewrite(original, ["I just lost my job.", "That is hard."], fixed({"I lost my job.": [1, 0], "I just lost my job.": [0, 1]}),
                          min_similarity=0.0).keep
    with pytest.raises(HarnessError, match="encoder gave shape"):
        filter_rewrite(original, ["I just lost my job.", "That is hard."], lambda texts: np.zeros((1, 2)))


# --------------------------------------------------------------------------- the augmentation plan


def pool(n_dialogues: int, labels_of):
    records, labels = [], []
    for d in range(n_dialogues):
        for participant in ("seeker", "supporter"):
            records.append(ProfileRecord(f"d{d}", participant, participant.title(), Profile(*(f"{d}-{participant}",) * 5), "..."))
            labels.append(labels_of(d, participant))
    return records, labels


def test_augment_duplicate_and_plain():
    ids = [f"d{d}" for d in range(6)]
    assert [(p.dialogue_id, p.action, p.participant) for p in augment(ids, "duplicate", seed=0)] == [(i, "duplicate", None) for i in ids]
    plain = augment(ids, "plain", seed=0)
    assert all(p.action == "rewrite" and p.participant == "supporter" and p.persona is None for p in plain)
    assert {p.participant for p in augment(ids, "plain", seed=0, participant="seeker")} == {"seeker"}
    many = [f"d{d}" for d in range(40)]
    random = augment(many, "plain", seed=1, participant="random")
    assert {p.participant for p in random} == {"seeker", "supporter"}
    assert augment(many, "plain", seed=1, participant="random") == random
    assert augment(many[::-1], "plain", seed=1, participant="random") == random[::-1]  # per dialogue, not per position


def test_augment_persona():
    records, labels = pool(8, lambda d, p: (d % 2) if p == "supporter" else 2)  # supporters in 2 clusters, seekers in a third
    ids = [f"d{d}" for d in range(8)] + ["d99"]
    plans = augment(ids, "persona", seed=3, profiles=records, labels=labels)
    assert [p.mode for p in plans] == ["persona"] * 9
    for plan in plans[:8]:
        d = int(plan.dialogue_id[1:])
        assert plan.action == "rewrite" and plan.participant == "supporter" and not plan.own_persona
        source = int(plan.persona_of.split("/")[0][1:])
        assert plan.persona_of.endswith("/supporter") and source % 2 == d % 2 and source != d  # same cluster, not its own
        assert plan.persona == records[2 * source + 1].profile
    assert plans[8].action == "skip" and plans[8].reason == "no readable DISC profile of the supporter"
    assert augment(ids, "persona", seed=3, profiles=records, labels=labels) == plans
    assert augment(ids[3:5], "persona", seed=3, profiles=records, labels=labels) == plans[3:5]  # independent of the others
    assert len({p.persona_of for p in (augment(["d0"], "persona", seed=s, profiles=records, labels=labels)[0] for s in range(20))}) > 1
    seekers = augment(ids[:8], "persona", seed=3, participant="seeker", profiles=records, labels=labels)
    assert all(p.persona_of.endswith("/seeker") and p.persona_of != f"{p.dialogue_id}/seeker" for p in seekers)
    # random participants: the same ones in the persona and the plain variants
    both = augment(ids[:8], "persona", seed=5, participant="random", profiles=records, labels=labels)
    assert [p.participant for p in both] == [p.participant for p in augment(ids[:8], "plain", seed=5, participant="random")]
    # alone in its cluster: its own profile, said so
    lonely, lonely_labels = pool(2, lambda d, p: 2 * d + (p == "supporter"))
    solo = augment(["d1"], "persona", seed=0, profiles=lonely, labels=lonely_labels)[0]
    assert solo.own_persona and solo.persona_of == "d1/supporter" and solo.persona == lonely[3].profile


def test_augment_refuses():
    records, labels = pool(2, lambda d, p: 0)
    with pytest.raises(HarnessError, match="choose one of persona, duplicate, plain"):
        augment(["d0"], "rewrite", seed=0)
    with pytest.raises(HarnessError, match="seeker, supporter or random"):
        augment(["d0"], "plain", seed=0, participant="both")
    with pytest.raises(HarnessError, match="one cluster label per profile"):
        augment(["d0"], "persona", seed=0, profiles=records)
    with pytest.raises(HarnessError, match="one cluster label per profile"):
        augment(["d0"], "persona", seed=0, profiles=records, labels=labels[:-1])
    unreadable = records + [ProfileRecord("d5", "seeker", "Seeker", None, "?")]
    with pytest.raises(HarnessError, match="readable profiles only"):
        augment(["d0"], "persona", seed=0, profiles=unreadable, labels=labels + [0])
    assert persona.MODES == ("persona", "duplicate", "plain")
