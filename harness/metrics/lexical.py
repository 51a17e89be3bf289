"""Lexical metrics exactly as the ESConv reference code computes them (thu-coai/Emotional-Support-Conversation,
codes_zcj/metric/myMetrics.py), which FIRES follows: text lower-cased and tokenised with
`nltk.word_tokenize`, one reference per sample, values x100.

Variants are named apart: `dist-n` is the reference code (its n-gram loop stops one short, so the last
n-gram of every response is never counted); `dist-n-plain` counts every n-gram.
"""
from __future__ import annotations

import warnings
from collections import Counter
from typing import Any, Sequence

from ..contract import Metric, MetricValue, ScoredPair
from . import nltk_data


def tokenize(text: str) -> list[str]:
    import nltk

    nltk_data.activate()
    try:
        return nltk.word_tokenize(text.lower())
    except LookupError:
        nltk_data.require("tokenizers/punkt_tab/english")
        raise


def response_tokens(pair: ScoredPair) -> list[str]:
    """The response's tokens, computed once per pair and shared by every lexical metric and resample."""
    return pair.memo("response_tokens", lambda p: tokenize(p.response))


def reference_tokens(pair: ScoredPair) -> list[str]:
    return pair.memo("reference_tokens", lambda p: tokenize(p.reference))


class _TokenMetric(Metric):
    def check(self) -> None:
        nltk_data.require("tokenizers/punkt_tab/english")

    def info(self) -> dict[str, Any]:
        described = nltk_data.describe()
        return {"tokenizer": f"nltk {described['nltk']} word_tokenize on lower-cased text", "punkt": described["tokenizers/punkt_tab/english"]}


class Bleu(_TokenMetric):
    """Corpus BLEU-n (NLTK corpus_bleu, uniform weights over 1..n, smoothing method3)."""

    bounds = (0.0, 100.0)

    def __init__(self, n: int):
        self.n = n
        self.name = f"bleu-{n}"
        self.order = 90 + 10 * n  # bleu-1 .. bleu-4: 100 .. 130
        self.description = f"corpus BLEU-{n}, NLTK, SmoothingFunction().method3, x100 (ESConv code)"

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

        weights = [1.0 / self.n] * self.n + [0.0] * (4 - self.n)  # the reference passes four weights
        refs = [[reference_tokens(p)] for p in pairs]
        hyps = [response_tokens(p) for p in pairs]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # NLTK warns on zero n-gram counts; method3 handles them
                value = corpus_bleu(refs, hyps, weights=weights, smoothing_function=SmoothingFunction().method3)
        except ZeroDivisionError:  # as the reference: an empty corpus scores 0
            value = 0.0
        return MetricValue(corpus=100 * value)

    def weighted(self, pairs: Sequence[ScoredPair], weights):
        """corpus_bleu's arithmetic on summed per-pair statistics (exactly NLTK's, re-weighted)."""
        import math

        import numpy as np
        from nltk.translate.bleu_score import modified_precision

        stats = np.zeros((len(pairs), 10))  # numerators 1-4, denominators 1-4, hyp length, ref length
        for row, p in enumerate(pairs):
            for order in range(1, 5):
                fraction = modified_precision([reference_tokens(p)], response_tokens(p), order)
                stats[row, order - 1], stats[row, order + 3] = fraction.numerator, fraction.denominator
            stats[row, 8], stats[row, 9] = len(response_tokens(p)), len(reference_tokens(p))
        sums = np.asarray(weights) @ stats
        weights_n = [1.0 / self.n] * self.n + [0.0] * (4 - self.n)
        out = np.zeros(len(sums))
        for b, (num1, num2, num3, num4, den1, den2, den3, den4, hyp_len, ref_len) in enumerate(sums):
            if num1 == 0:
                continue  # NLTK returns 0 without unigram matches
            precisions, k = [], 1
            for num, den in ((num1, den1), (num2, den2), (num3, den3), (num4, den4)):
                if num == 0:  # smoothing method3: 1 / (2^k * denominator)
                    precisions.append(1 / (2**k * den))
                    k += 1
                else:
                    precisions.append(num / den)
            penalty = 1.0 if hyp_len > ref_len else (0.0 if hyp_len == 0 else math.exp(1 - ref_len / hyp_len))
            out[b] = 100 * penalty * math.exp(math.fsum(w * math.log(p) for w, p in zip(weights_n, precisions)))
        return out


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len(a) * len(b)) time, O(len(b)) memory)."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        diagonal = 0
        for j, y in enumerate(b, start=1):
            above = row[j]
            row[j] = diagonal + 1 if x == y else max(row[j], row[j - 1])
            diagonal = above
    return row[len(b)]


def rouge_l_f(response_tokens: Sequence[str], reference_tokens: Sequence[str], beta: float = 1.2) -> float:
    """ESConv's ROUGE-L: P = LCS/|hyp|, R = LCS/|ref|, F = (1+b^2)PR / (R + b^2 P); 0 when P or R is 0."""
    lcs = lcs_length(reference_tokens, response_tokens)
    precision = lcs / max(len(response_tokens), 1e-10)
    recall = lcs / max(len(reference_tokens), 1e-10)
    if precision == 0 or recall == 0:
        return 0.0
    return (1 + beta**2) * precision * recall / (recall + beta**2 * precision)


class RougeL(_TokenMetric):
    name = "rouge-l"
    order = 140
    bounds = (0.0, 100.0)
    per_sample = True
    description = "ROUGE-L F (LCS, beta 1.2) per sample, averaged, x100 (ESConv code)"

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        scores = [100 * rouge_l_f(response_tokens(p), reference_tokens(p)) for p in pairs]
        return MetricValue(corpus=_mean(scores), per_sample=scores)


class Meteor(_TokenMetric):
    name = "meteor"
    order = 150
    bounds = (0.0, 100.0)
    per_sample = True
    description = "METEOR, NLTK meteor_score on token lists, per sample, averaged, x100"

    def check(self) -> None:
        super().check()
        nltk_data.require("corpora/wordnet")

    def info(self) -> dict[str, Any]:
        from nltk.corpus import wordnet

        described = nltk_data.describe()
        return {**super().info(), "implementation": f"nltk {described['nltk']} meteor_score", "wordnet": f"{wordnet.get_version()} ({described['corpora/wordnet']})"}

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        from nltk.translate.meteor_score import meteor_score

        nltk_data.activate()
        scores = [100 * meteor_score([reference_tokens(p)], response_tokens(p)) for p in pairs]
        return MetricValue(corpus=_mean(scores), per_sample=scores)


def distinct(token_lists: Sequence[Sequence[str]], n: int, reference_variant: bool) -> float:
    """Corpus-level unique n-grams / all n-grams over all responses."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for tokens in token_lists:
        stop = len(tokens) - n if reference_variant else len(tokens) - n + 1
        for i in range(stop):
            seen.add(tuple(tokens[i : i + n]))
            total += 1
    return len(seen) / total if total else 0.0


class Distinct(_TokenMetric):
    size_dependent = True  # more text repeats more n-grams
    bounds = (0.0, 100.0)  # a share of n-grams, x100: intervals are clipped into it

    def __init__(self, n: int, reference_variant: bool):
        self.n = n
        self.reference_variant = reference_variant
        self.name = f"dist-{n}" if reference_variant else f"dist-{n}-plain"
        self.order = (300 if reference_variant else 330) + 10 * (n - 1)  # dist-1..3: 300..320, -plain: 330..350
        self.description = (
            f"Distinct-{n} over all responses, x100, as the ESConv code (skips each response's last {n}-gram)"
            if reference_variant
            else f"Distinct-{n} over all responses, x100, every {n}-gram counted"
        )

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        return MetricValue(corpus=100 * distinct([response_tokens(p) for p in pairs], self.n, self.reference_variant))

    def weighted(self, pairs: Sequence[ScoredPair], weights):
        """unique = n-grams present in some pair of non-zero weight; total = weighted n-gram count."""
        import numpy as np
        from scipy.sparse import csr_matrix

        ids: dict[tuple[str, ...], int] = {}
        rows, cols, totals = [], [], np.zeros(len(pairs))
        for row, p in enumerate(pairs):
            tokens = response_tokens(p)
            stop = len(tokens) - self.n if self.reference_variant else len(tokens) - self.n + 1
            grams = {tuple(tokens[i : i + self.n]) for i in range(max(stop, 0))}
            totals[row] = max(stop, 0)
            for gram in grams:
                rows.append(row)
                cols.append(ids.setdefault(gram, len(ids)))
        presence = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(pairs), max(len(ids), 1)))
        weights = np.asarray(weights, dtype=float)
        unique = (presence.T @ weights.T > 0).sum(axis=0)  # (B,)
        total = weights @ totals
        return 100 * np.divide(np.asarray(unique, dtype=float).ravel(), total, out=np.zeros(len(weights)), where=total > 0)


class UnigramF1(_TokenMetric):
    name = "f1"
    order = 360
    bounds = (0.0, 100.0)
    per_sample = True
    description = "unigram F1 between response and reference tokens, per sample, averaged, x100 (ESConv code)"

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        scores = []
        for p in pairs:
            common = sum((Counter(response_tokens(p)) & Counter(reference_tokens(p))).values())
            precision = common / max(len(response_tokens(p)), 1e-10)
            recall = common / max(len(reference_tokens(p)), 1e-10)
            scores.append(100 * 2 * precision * recall / max(precision + recall, 1e-10))
        return MetricValue(corpus=_mean(scores), per_sample=scores)


class Length(_TokenMetric):
    name = "length"
    order = 370
    per_sample = True
    description = "mean number of tokens per response"

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        lengths = [float(len(response_tokens(p))) for p in pairs]
        return MetricValue(corpus=_mean(lengths), per_sample=lengths)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


BLEU_1, BLEU_2, BLEU_3, BLEU_4 = (Bleu(n) for n in range(1, 5))
ROUGE_L = RougeL()
METEOR = Meteor()
DIST_1, DIST_2, DIST_3 = (Distinct(n, reference_variant=True) for n in range(1, 4))
DIST_1_PLAIN, DIST_2_PLAIN, DIST_3_PLAIN = (Distinct(n, reference_variant=False) for n in range(1, 4))
UNIGRAM_F1 = UnigramF1()
LENGTH = Length()
