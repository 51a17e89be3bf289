"""Lexical metrics (harness/metrics/lexical.py): hand-computed values, and agreement with NLTK called directly.

Every value the harness reports is x100, so hand-computed fractions are multiplied by 100 below.
"""
from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
import itertools
import math
import random

import pytest

from harness.contract import ScoredPair
from harness.errors import HarnessError
from harness.metrics import lexical, nltk_data
from harness.metrics.lexical import (
    BLEU_1,
    BLEU_2,
    BLEU_3,
    BLEU_4,
    DIST_1,
    DIST_1_PLAIN,
    DIST_2,
    DIST_2_PLAIN,
    DIST_3,
    DIST_3_PLAIN,
    DIST_1_RESPONSE,
    DIST_2_RESPONSE,
    DIST_3_RESPONSE,
    LENGTH,
    METEOR,
    ROUGE_L,
    UNIGRAM_F1,
    distinct,
    lcs_length,
    rouge_l_f,
    reference_tokens,
    response_tokens,
    tokenize,
)

BLEUS = {1: BLEU_1, 2: BLEU_2, 3: BLEU_3, 4: BLEU_4}


@pytest.fixture(scope="module", autouse=True)
def nltk_resources():
    """The metrics need punkt_tab and WordNet; without them this fails (with the harness's own message), it does not skip."""
    try:
        BLEU_1.check()
        METEOR.check()
    except HarnessError as exc:
        pytest.fail(f"NLTK data missing, run `harness setup nltk` first: {exc}", pytrace=False)
    nltk_data.activate()


def pair(response: str, reference: str) -> ScoredPair:
    return ScoredPair(response, reference)


def pairs(*texts: tuple[str, str]) -> list[ScoredPair]:
    return [pair(r, ref) for r, ref in texts]


# A realistic small corpus of supporter responses (hypothesis, reference).
CORPUS = [
    ("I'm so sorry to hear that. How long have you been feeling this way?", "That sounds really hard. How long have you felt like this?"),
    ("It sounds like you are under a lot of pressure at work.", "You seem to be under a lot of stress because of your job."),
    ("Have you talked to your friends about it?", "Do you have any friends you could talk to about this?"),
    ("You are not alone.", "Many people go through the same thing, you are not alone."),
    ("What do you think would help you feel better?", "What has helped you in the past when you felt this way?"),
    ("I understand. Breakups are painful.", "I can understand how painful a breakup can be."),
]


# --------------------------------------------------------------------------- tokenize


def test_tokens_are_computed_once_per_pair():
    p = pair("I don't KNOW.", "Fine.")
    assert response_tokens(p) == ["i", "do", "n't", "know", "."] and reference_tokens(p) == ["fine", "."]
    p.response = "changed"  # memoised: the first computation is kept for the pair's life
    assert response_tokens(p) == ["i", "do", "n't", "know", "."]


def test_tokenize_remembers_texts_but_hands_out_copies():
    first = tokenize("You are not alone.")
    first.append("changed by a caller")
    assert tokenize("You are not alone.") == ["you", "are", "not", "alone", "."]


def test_tokenize_lowercases_and_splits_like_word_tokenize():
    assert tokenize("I don't KNOW.") == ["i", "do", "n't", "know", "."]
    assert tokenize("Hello, World!") == ["hello", ",", "world", "!"]
    assert tokenize("") == []


@pytest.mark.parametrize("text", [h for h, _ in CORPUS] + ["She said: \"Can't you SEE?\" (twice)", "It's 5 o'clock... OK?"])
def test_tokenize_equals_nltk_word_tokenize_of_lowercased_text(text):
    import nltk

    assert tokenize(text) == nltk.word_tokenize(text.lower())
    assert all(tok == tok.lower() for tok in tokenize(text))


# --------------------------------------------------------------------------- BLEU


def test_bleu_identical_corpus_is_100():
    ps = pairs(("the cat sat on the mat", "the cat sat on the mat"), ("how are you feeling today", "how are you feeling today"))
    for n, metric in BLEUS.items():
        assert metric.compute(ps).corpus == pytest.approx(100.0), n


def test_bleu_hand_computed_with_brevity_penalty():
    # ref = a b c d e f (6 tokens), hyp = a b c x (4 tokens)
    # p1 = 3/4 (a, b, c), p2 = 2/3 (ab, bc; not cx), p3 = 1/2 (abc; not bcx), p4 = 0/1 -> method3: 1/(2^1 * 1) = 1/2
    # hyp shorter than ref: BP = exp(1 - 6/4) = exp(-1/2)
    ps = pairs(("a b c x", "a b c d e f"))
    bp = math.exp(-0.5)
    expected = {
        1: bp * (3 / 4),
        2: bp * (3 / 4 * 2 / 3) ** (1 / 2),
        3: bp * (3 / 4 * 2 / 3 * 1 / 2) ** (1 / 3),
        4: bp * (3 / 4 * 2 / 3 * 1 / 2 * 1 / 2) ** (1 / 4),
    }
    for n, metric in BLEUS.items():
        assert metric.compute(ps).corpus == pytest.approx(100 * expected[n]), n


def test_bleu_smoothing_method3_geometric_sequence():
    # ref = no yes, hyp = yes no: p1 = 2/2; no bigram/trigram/4-gram matches.
    # Denominators are max(1, #hyp n-grams): bigrams 1 ("yes no"), trigrams/4-grams 0 -> 1.
    # method3 replaces the k-th zero precision with 1/(2^k * denominator): p2 = 1/2, p3 = 1/4, p4 = 1/8.
    # |hyp| = |ref| = 2 -> BP = exp(1 - 2/2) = 1.
    ps = pairs(("yes no", "no yes"))
    assert BLEU_1.compute(ps).corpus == pytest.approx(100.0)
    assert BLEU_2.compute(ps).corpus == pytest.approx(100 * (1 * 1 / 2) ** (1 / 2))  # 70.71
    assert BLEU_3.compute(ps).corpus == pytest.approx(100 * (1 * 1 / 2 * 1 / 4) ** (1 / 3))  # = 50
    assert BLEU_3.compute(ps).corpus == pytest.approx(50.0)
    assert BLEU_4.compute(ps).corpus == pytest.approx(100 * (1 * 1 / 2 * 1 / 4 * 1 / 8) ** (1 / 4))  # 2^-1.5 = 35.36


def test_bleu_is_corpus_level_micro_average_with_smoothing():
    # pair 1: hyp "i am here" (3), ref "i am here for you" (5):
    #   1-grams 3/3, 2-grams 2/2, 3-grams 1/1, 4-grams 0/max(1,0)=0/1
    # pair 2: hyp "that sounds hard" (3), ref "that sounds really hard" (4):
    #   1-grams 3/3, 2-grams 1/2 ("that sounds"), 3-grams 0/1, 4-grams 0/1
    # corpus sums: p1 = 6/6, p2 = 3/4, p3 = 1/2, p4 = 0/2 -> method3 (first zero, k=1): 1/(2*2) = 1/4
    # lengths: hyp 6, ref 9 -> BP = exp(1 - 9/6) = exp(-1/2)
    ps = pairs(("i am here", "i am here for you"), ("that sounds hard", "that sounds really hard"))
    bp = math.exp(-0.5)
    assert BLEU_1.compute(ps).corpus == pytest.approx(100 * bp)
    assert BLEU_2.compute(ps).corpus == pytest.approx(100 * bp * (3 / 4) ** (1 / 2))
    assert BLEU_3.compute(ps).corpus == pytest.approx(100 * bp * (3 / 4 * 1 / 2) ** (1 / 3))
    assert BLEU_4.compute(ps).corpus == pytest.approx(100 * bp * (3 / 4 * 1 / 2 * 1 / 4) ** (1 / 4))
    # micro-average, not the mean of the per-sentence scores
    per_sentence_mean = (BLEU_4.compute(ps[:1]).corpus + BLEU_4.compute(ps[1:]).corpus) / 2
    assert BLEU_4.compute(ps).corpus != pytest.approx(per_sentence_mean)


def test_bleu_longer_hypothesis_has_no_brevity_penalty():
    # hyp = a b c d e (5), ref = a b c (3): p1 = 3/5, p2 = 2/4, BP = 1 (hyp longer)
    ps = pairs(("a b c d e", "a b c"))
    assert BLEU_1.compute(ps).corpus == pytest.approx(100 * 3 / 5)
    assert BLEU_2.compute(ps).corpus == pytest.approx(100 * (3 / 5 * 2 / 4) ** 0.5)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_bleu_equals_nltk_corpus_bleu_with_reference_settings(n):
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

    ps = pairs(*CORPUS)
    expected = corpus_bleu(
        [[reference_tokens(p)] for p in ps],
        [response_tokens(p) for p in ps],
        weights=[1.0 / n] * n + [0.0] * (4 - n),
        smoothing_function=SmoothingFunction().method3,
    )
    assert 0 < expected < 1
    assert BLEUS[n].compute(ps).corpus == pytest.approx(100 * expected, rel=1e-12)


def test_bleu_statistics_are_nltk_modified_precision_counts():
    """The per-pair counts BLEU sums (computed without NLTK's Fractions) are modified_precision's unreduced
    numerator and denominator for each order, on texts with repeated n-grams, shorter than the order, empty."""
    from nltk.translate.bleu_score import modified_precision

    rng = random.Random(7)
    words = ["i", "am", "here", "you", "are", "not", "alone", "."]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 12))) for _ in range(150)] + ["", "i", "i i i i", "here here"]
    for response, reference in zip(texts, reversed(texts)):
        pair = ScoredPair(response=response, reference=reference)
        hypothesis, ref = response_tokens(pair), reference_tokens(pair)
        fractions = [modified_precision([ref], hypothesis, order) for order in range(1, 5)]
        expected = (*(f.numerator for f in fractions), *(f.denominator for f in fractions), len(hypothesis), len(ref))
        assert lexical.bleu_statistics(pair) == expected, (response, reference)


def test_bleu_orders_differ_on_realistic_corpus():
    values = [BLEUS[n].compute(pairs(*CORPUS)).corpus for n in range(1, 5)]
    assert values == sorted(values, reverse=True) and len(set(values)) == 4


def test_bleu_empty_and_disjoint_are_zero():
    for metric in BLEUS.values():
        assert metric.compute([]).corpus == 0.0
        assert metric.compute(pairs(("", "i am here"))).corpus == 0.0
        assert metric.compute(pairs(("apples oranges", "i am here"))).corpus == 0.0
        assert metric.per_sample is False
        assert metric.compute(pairs(*CORPUS)).per_sample is None


# --------------------------------------------------------------------------- ROUGE-L


def _rouge_hand(lcs: int, hyp_len: int, ref_len: int, beta: float = 1.2) -> float:
    p, r = lcs / hyp_len, lcs / ref_len
    return (1 + beta**2) * p * r / (r + beta**2 * p)


def test_rouge_l_hand_computed():
    # hyp "i feel sad today" (4), ref "today i feel very sad" (5): LCS = "i feel sad" = 3
    # P = 3/4, R = 3/5, F = (1 + 1.44) * 0.75 * 0.6 / (0.6 + 1.44 * 0.75) = 1.098 / 1.68 = 0.653571...
    ps = pairs(("i feel sad today", "today i feel very sad"))
    value = ROUGE_L.compute(ps)
    assert value.corpus == pytest.approx(100 * 1.098 / 1.68)
    assert value.per_sample == [pytest.approx(65.35714285714286)]


def test_rouge_l_beta_weighs_recall_so_it_is_asymmetric():
    # swapping hyp and ref: P = 3/5, R = 3/4, F = 2.44 * 0.45 / (0.75 + 1.44 * 0.6) = 1.098 / 1.614
    swapped = ROUGE_L.compute(pairs(("today i feel very sad", "i feel sad today"))).corpus
    assert swapped == pytest.approx(100 * 1.098 / 1.614)
    assert swapped != pytest.approx(ROUGE_L.compute(pairs(("i feel sad today", "today i feel very sad"))).corpus)


def test_rouge_l_per_sample_then_mean():
    ps = pairs(
        ("i feel sad today", "today i feel very sad"),  # 65.357...
        ("you are not alone", "you are not alone"),  # 100
        ("cats", "dogs bark"),  # LCS 0 -> 0
        ("", "dogs bark"),  # empty response -> 0, no division by zero
    )
    value = ROUGE_L.compute(ps)
    expected = [100 * _rouge_hand(3, 4, 5), 100.0, 0.0, 0.0]
    assert value.per_sample == pytest.approx(expected)
    assert value.corpus == pytest.approx(sum(expected) / 4)
    assert ROUGE_L.per_sample is True


def test_rouge_l_f_function_and_empty():
    assert rouge_l_f(list("abc"), list("abc")) == pytest.approx(1.0)
    # hyp a b (2), ref a x b y (4): LCS 2, P = 1, R = 1/2
    assert rouge_l_f(["a", "b"], ["a", "x", "b", "y"]) == pytest.approx(_rouge_hand(2, 2, 4))
    assert rouge_l_f([], []) == 0.0
    assert rouge_l_f(["a"], []) == 0.0
    assert ROUGE_L.compute([]).corpus == 0.0


def _brute_force_lcs(a: list[str], b: list[str]) -> int:
    def is_subsequence(seq, of):
        it = iter(of)
        return all(x in it for x in seq)

    for k in range(min(len(a), len(b)), 0, -1):
        if any(is_subsequence([a[i] for i in idx], b) for idx in itertools.combinations(range(len(a)), k)):
            return k
    return 0


def test_lcs_length_against_brute_force():
    rng = random.Random(20240531)
    for _ in range(600):
        alphabet = "abcd"[: rng.randint(1, 4)]
        a = [rng.choice(alphabet) for _ in range(rng.randint(0, 8))]
        b = [rng.choice(alphabet) for _ in range(rng.randint(0, 8))]
        expected = _brute_force_lcs(a, b)
        assert lcs_length(a, b) == expected, (a, b)
        assert lcs_length(b, a) == expected, (b, a)


def test_lcs_length_known_values():
    assert lcs_length("ABCBDAB", "BDCABA") == 4  # CLRS example
    assert lcs_length([], ["a"]) == 0
    assert lcs_length(["i", "feel", "sad"], ["today", "i", "feel", "very", "sad"]) == 3


# --------------------------------------------------------------------------- METEOR


def test_meteor_parameters_are_nltk_defaults():
    # The hand-computed values below assume NLTK's defaults: fmean = P*R / (alpha*P + (1-alpha)*R),
    # penalty = gamma * (chunks/matches)^beta, score = (1 - penalty) * fmean.
    from nltk.translate.meteor_score import meteor_score, single_meteor_score

    for fn in (meteor_score, single_meteor_score):
        params = inspect.signature(fn).parameters
        assert params["alpha"].default == 0.9
        assert params["beta"].default == 3.0
        assert params["gamma"].default == 0.5
    source = inspect.getsource(single_meteor_score)
    assert "(precision * recall) / (alpha * precision + (1 - alpha) * recall)" in source
    assert "gamma * frag_frac**beta" in source
    assert "(1 - penalty) * fmean" in source


def test_meteor_identical_six_tokens():
    # P = R = 1 -> fmean = 1; 6 matches in 1 chunk -> penalty = 0.5 * (1/6)^3
    ps = pairs(("I am here for you.", "I am here for you."))
    assert len(response_tokens(ps[0])) == 6
    assert METEOR.compute(ps).corpus == pytest.approx(100 * (1 - 0.5 * (1 / 6) ** 3))  # 99.7685...


def test_meteor_hand_computed_cases():
    # 4 matches in 2 chunks ("you are not" + "alone"): penalty 0.5 * (2/4)^3 = 1/16 -> 93.75
    assert METEOR.compute(pairs(("you are not alone", "alone you are not"))).corpus == pytest.approx(93.75)
    # hyp 3, ref 5, 3 matches in 1 chunk: P = 1, R = 3/5, fmean = 0.6 / (0.9 + 0.06) = 0.625,
    # penalty 0.5 * (1/3)^3 = 1/54
    assert METEOR.compute(pairs(("i am here", "i am here for you"))).corpus == pytest.approx(100 * 0.625 * (1 - 1 / 54))
    # WordNet synonym stage: "hard" ~ "difficult" -> 3 matches, 1 chunk: 1 - 0.5 * (1/3)^3
    assert METEOR.compute(pairs(("that sounds hard", "that sounds difficult"))).corpus == pytest.approx(100 * (1 - 1 / 54))


def test_meteor_equals_nltk_meteor_score():
    from nltk.translate.meteor_score import meteor_score

    ps = pairs(*CORPUS, ("I am feeling sad", "I felt sad"), ("that sounds hard", "that sounds difficult"))
    value = METEOR.compute(ps)
    expected = [100 * meteor_score([reference_tokens(p)], response_tokens(p)) for p in ps]
    assert value.per_sample == pytest.approx(expected, rel=1e-12)
    assert value.corpus == pytest.approx(sum(expected) / len(expected))
    assert len(set(round(v, 6) for v in expected)) > 3  # the corpus is not degenerate
    assert METEOR.per_sample is True


def test_lazy_wordnet_gives_nltk_readers_synsets():
    """METEOR's lazily indexed reader against NLTK's full one: every lemma of the index, its inflections, the
    exception lists (irregular forms), adjectives with satellites and unknown words, synsets in the same order."""
    from nltk.corpus import wordnet

    lazy = nltk_data.lazy_wordnet()
    lemmas = list(wordnet._lemma_pos_offset_map)
    assert len(lazy._lemma_pos_offset_map) == len(lemmas) > 140_000
    sample = lemmas[::50] + [w + end for w in lemmas[::400] for end in ("s", "es", "ed", "ing", "er", "est", "ies")]
    irregular = ["geese", "was", "better", "best", "men", "children", "went", "mice", "oxen", "worse"]
    satellites = ["happy", "glad", "quick", "bright", "unbelievable", "new"]
    for word in sample + irregular + satellites + ["i", "the", "n't", "...", "qzxv", ""]:
        assert [s.name() for s in lazy.synsets(word)] == [s.name() for s in wordnet.synsets(word)], word
    assert any(s.pos() == "s" for s in lazy.synsets("glad"))
    assert lazy.get_version() == wordnet.get_version() == "3.0"


def test_meteor_disjoint_and_empty_are_zero():
    assert METEOR.compute(pairs(("apples and oranges", "i miss my dog"))).corpus == 0.0
    assert METEOR.compute(pairs(("", "i miss my dog"))).per_sample == [0.0]
    assert METEOR.compute([]).corpus == 0.0


def test_meteor_info_records_versions():
    info = METEOR.info()
    assert "nltk" in info["implementation"] and "meteor_score" in info["implementation"]
    assert info["wordnet"].startswith("3.0")


# --------------------------------------------------------------------------- Dist-n


def test_dist_1_reference_variant_skips_last_token():
    # responses: "a b c" and "a d"
    # plain:     a b c + a d -> 5 unigrams, unique {a, b, c, d} = 4 -> 80
    # reference: range(3-1)=a b, range(2-1)=a -> 3 unigrams, unique {a, b} = 2 -> 66.67
    ps = pairs(("a b c", "x"), ("a d", "x"))
    assert DIST_1_PLAIN.compute(ps).corpus == pytest.approx(80.0)
    assert DIST_1.compute(ps).corpus == pytest.approx(100 * 2 / 3)


def test_dist_2_reference_variant_skips_last_bigram():
    # responses: "a b a b" and "x y"
    # plain:     ab ba ab + xy -> 4 bigrams, 3 unique -> 75
    # reference: range(4-2)=ab ba, range(2-2)=nothing -> 2 bigrams, 2 unique -> 100
    ps = pairs(("a b a b", "r"), ("x y", "r"))
    assert DIST_2_PLAIN.compute(ps).corpus == pytest.approx(75.0)
    assert DIST_2.compute(ps).corpus == pytest.approx(100.0)


def test_dist_3_reference_variant_skips_last_trigram():
    # "a b c a b c": plain abc bca cab abc -> 3/4 = 75; reference abc bca cab -> 3/3 = 100
    ps = pairs(("a b c a b c", "r"))
    assert DIST_3_PLAIN.compute(ps).corpus == pytest.approx(75.0)
    assert DIST_3.compute(ps).corpus == pytest.approx(100.0)
    # "a b c a b c a": plain abc bca cab abc bca -> 3/5 = 60; reference (4 trigrams) abc bca cab abc -> 3/4 = 75
    ps = pairs(("a b c a b c a", "r"))
    assert DIST_3_PLAIN.compute(ps).corpus == pytest.approx(60.0)
    assert DIST_3.compute(ps).corpus == pytest.approx(75.0)


def test_dist_is_corpus_level_over_responses_only():
    # unigrams over both responses: i am ok i am fine -> 6 total, {i, am, ok, fine} = 4 -> 66.67 (references ignored)
    ps = pairs(("i am ok", "totally different words here"), ("i am fine", "i am ok"))
    assert DIST_1_PLAIN.compute(ps).corpus == pytest.approx(100 * 4 / 6)
    # reference variant: i am + i am -> 4 total, 2 unique -> 50
    assert DIST_1.compute(ps).corpus == pytest.approx(50.0)


def test_dist_empty_and_too_short_are_zero():
    for metric in (DIST_1, DIST_2, DIST_3, DIST_1_PLAIN, DIST_2_PLAIN, DIST_3_PLAIN):
        assert metric.compute([]).corpus == 0.0
        assert metric.compute(pairs(("", "a b c"))).corpus == 0.0
    # a one-token response has one unigram (plain) but none for the reference variant
    assert DIST_1_PLAIN.compute(pairs(("yes", "r"))).corpus == pytest.approx(100.0)
    assert DIST_1.compute(pairs(("yes", "r"))).corpus == 0.0
    # two tokens: one bigram (plain), none (reference)
    assert DIST_2_PLAIN.compute(pairs(("oh no", "r"))).corpus == pytest.approx(100.0)
    assert DIST_2.compute(pairs(("oh no", "r"))).corpus == 0.0
    assert distinct([], 1, reference_variant=False) == 0.0


def test_dist_names_and_flags():
    assert [m.name for m in (DIST_1, DIST_2, DIST_3)] == ["dist-1", "dist-2", "dist-3"]
    assert [m.name for m in (DIST_1_PLAIN, DIST_2_PLAIN, DIST_3_PLAIN)] == ["dist-1-plain", "dist-2-plain", "dist-3-plain"]
    assert DIST_1.reference_variant and not DIST_1_PLAIN.reference_variant
    assert DIST_2.compute(pairs(*CORPUS)).per_sample is None


def test_dist_per_response_hand_computed_with_short_responses():
    # "no no no no": trigrams (no no no) x2 -> 1 unique / 2 = 50; bigrams 1/3; unigrams 1/4
    # "i am ok i am": trigrams i-am-ok, am-ok-i, ok-i-am -> 3/3 = 100; bigrams i-am, am-ok, ok-i, i-am -> 3/4; unigrams 3/5
    # "okay .": 2 tokens -> no trigram: counts 0 for dist-3 (not left out); bigrams 1/1; unigrams 2/2
    # "": counts 0 for every n
    ps = pairs(("no no no no", "r"), ("i am ok i am", "r"), ("Okay.", "r"), ("", "r"))
    three = DIST_3_RESPONSE.compute(ps)
    assert three.per_sample == pytest.approx([50.0, 100.0, 0.0, 0.0])
    assert three.corpus == pytest.approx(150 / 4)
    assert DIST_2_RESPONSE.compute(ps).per_sample == pytest.approx([100 / 3, 75.0, 100.0, 0.0])
    assert DIST_1_RESPONSE.compute(ps).per_sample == pytest.approx([25.0, 60.0, 100.0, 0.0])
    # a response of exactly n tokens has one n-gram: 100 (the reference code's loop would count none)
    assert DIST_3_RESPONSE.compute(pairs(("i see you", "r"))).corpus == pytest.approx(100.0)
    assert DIST_3_RESPONSE.compute([]).corpus == 0.0


def test_dist_per_response_differs_from_corpus_level():
    # two identical responses: each is fully distinct on its own (100), but together half the trigrams repeat
    ps = pairs(("i am here for you", "r"), ("i am here for you", "r"))
    assert DIST_3_RESPONSE.compute(ps).corpus == pytest.approx(100.0)
    assert DIST_3_PLAIN.compute(ps).corpus == pytest.approx(50.0)


def test_dist_per_response_is_a_per_sample_metric_that_says_how_short_responses_count():
    for n, metric in ((1, DIST_1_RESPONSE), (2, DIST_2_RESPONSE), (3, DIST_3_RESPONSE)):
        assert metric.name == f"dist-{n}-response" and metric.per_sample and not metric.size_dependent
        assert metric.bounds == (0.0, 100.0)
        info = metric.info()
        assert info["short_responses"] == f"a response with fewer than {n} tokens counts 0"
        assert "mean over responses" in info["level"] and "tokenizer" in info


# --------------------------------------------------------------------------- unigram F1 and length


def test_unigram_f1_hand_computed():
    # "i am so sorry" vs "i am sorry to hear that": common {i, am, sorry} = 3, P = 3/4, R = 3/6 -> F1 = 0.6
    # "no no no" vs "no": clipped common = min(3, 1) = 1, P = 1/3, R = 1 -> F1 = 0.5
    # "no no no" vs "no no": clipped common = min(3, 2) = 2 (counts, not sets), P = 2/3, R = 1 -> F1 = 0.8
    # disjoint -> 0
    ps = pairs(("I am so sorry", "I am sorry to hear that"), ("no no no", "no"), ("no no no", "no no"), ("hello", "goodbye"))
    value = UNIGRAM_F1.compute(ps)
    assert value.per_sample == pytest.approx([60.0, 50.0, 80.0, 0.0])
    assert value.corpus == pytest.approx(190 / 4)
    assert UNIGRAM_F1.compute(pairs(("", "something"))).per_sample == [0.0]
    assert UNIGRAM_F1.compute([]).corpus == 0.0


def test_length_hand_computed():
    # "I don't know." -> i do n't know . (5); "Okay" -> 1; "" -> 0
    value = LENGTH.compute(pairs(("I don't know.", "x"), ("Okay", "x"), ("", "x")))
    assert value.per_sample == [5.0, 1.0, 0.0]
    assert value.corpus == pytest.approx(2.0)
    assert LENGTH.compute([]).corpus == 0.0


# --------------------------------------------------------------------------- registry


def test_registry_returns_the_metric_objects():
    from harness.registry import metrics

    assert metrics.get("bleu-2") is BLEU_2
    assert metrics.get("bleu-2").n == 2
    expected = {
        "bleu-1": BLEU_1, "bleu-2": BLEU_2, "bleu-3": BLEU_3, "bleu-4": BLEU_4,
        "rouge-l": ROUGE_L, "meteor": METEOR,
        "dist-1": DIST_1, "dist-2": DIST_2, "dist-3": DIST_3,
        "dist-1-plain": DIST_1_PLAIN, "dist-2-plain": DIST_2_PLAIN, "dist-3-plain": DIST_3_PLAIN,
        "dist-1-response": DIST_1_RESPONSE, "dist-2-response": DIST_2_RESPONSE, "dist-3-response": DIST_3_RESPONSE,
        "f1": UNIGRAM_F1, "length": LENGTH,
    }  # fmt: skip
    for name, metric in expected.items():
        got = metrics.get(name)
        assert got is metric, name
        assert got.name == name  # the name written in summary.json is the registered name
    assert set(expected) <= set(metrics.names())


def test_registry_unknown_name_suggests_close_match():
    from harness.registry import metrics

    with pytest.raises(HarnessError, match=r"Did you mean 'bleu-2'") as info:
        metrics.get("blue-2")
    assert "unknown metric 'blue-2'" in str(info.value)
    assert "rouge-l" in str(info.value)  # lists the known metrics
    with pytest.raises(HarnessError) as info:
        metrics.get("zzzzzzzz")
    assert "Did you mean" not in str(info.value)


def test_every_metric_module_constant_is_consistent():
    # descriptions and per-sample flags matter to the runner: per-sample metrics return per-sample lists
    ps = pairs(*CORPUS)
    for metric in (BLEU_1, ROUGE_L, METEOR, DIST_1, DIST_3_RESPONSE, UNIGRAM_F1, LENGTH):
        value = metric.compute(ps)
        assert (value.per_sample is not None) == metric.per_sample, metric.name
        if metric.per_sample:
            assert len(value.per_sample) == len(ps)
            assert value.corpus == pytest.approx(sum(value.per_sample) / len(ps))
    assert "tokenizer" in lexical.BLEU_4.info()


def test_nltk_data_is_found_as_nltk_finds_it_without_importing_it(tmp_path):
    """check(), info() and the score cache's key read where NLTK's data is without importing NLTK (~2 s): the
    same folder nltk.data.find gives, in NLTK's search order ($NLTK_DATA first), and NLTK stays unimported."""
    user = tmp_path / "user-nltk-data"
    (user / "tokenizers" / "punkt_tab" / "english").mkdir(parents=True)  # a user's own Punkt, found before ours
    script = textwrap.dedent("""
        import json, sys
        from harness.metrics import nltk_data
        from harness import registry
        ours = {r: str(nltk_data.find(r)) for r in ("corpora/wordnet", "tokenizers/punkt_tab/english")}
        described = nltk_data.describe()
        registry.metrics.get("meteor").check()
        registry.metrics.get("meteor").info()
        imported = "nltk" in sys.modules
        import nltk
        nltk_data.activate()
        theirs = {r: str(nltk.data.find(r)) for r in ours}
        print(json.dumps({"ours": ours, "theirs": theirs, "imported": imported, "described": described}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NLTK_DATA": str(user)})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["ours"] == out["theirs"] and not out["imported"]
    assert out["ours"]["tokenizers/punkt_tab/english"].startswith(str(user))
    assert out["described"]["tokenizers/punkt_tab/english"] == "user-provided NLTK data"
