"""Lexical metrics exactly as the ESConv reference code computes them (thu-coai/Emotional-Support-Conversation,
codes_zcj/metric/myMetrics.py), which FIRES follows: text lower-cased and tokenised with
`nltk.word_tokenize`, one reference per sample, values x100.

Variants are named apart: `dist-n` is the reference code (its n-gram loop stops one short, so the last
n-gram of every response is never counted); `dist-n-plain` counts every n-gram; both pool all responses
(corpus level). `dist-n-response` is the mean over responses of each response's own distinct ratio (every
n-gram counted, a response with fewer than n tokens counts 0): the variant FIRES Table 1's Dist-3 is
consistent with (evidence in baselines/published/fires-table1-mesc.json).
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from ..contract import Metric, MetricValue, ScoredPair
from . import nltk_data


_tokens: dict[str, list[str]] = {}  # text -> its tokens: a run repeats texts (a retrieval model's answers)
_TOKENS_MAX = 200_000


def tokenize(text: str) -> list[str]:
    """nltk.word_tokenize on the lower-cased text; each distinct text tokenised once per process."""
    tokens = _tokens.get(text)
    if tokens is None:
        tokens = _word_tokenize(text)
        if len(_tokens) >= _TOKENS_MAX:
            _tokens.clear()
        _tokens[text] = tokens
    return list(tokens)  # a copy: the caller may change it, the memo must not


def _word_tokenize(text: str) -> list[str]:
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


def bleu_statistics(pair: ScoredPair) -> tuple[int, ...]:
    """What NLTK's corpus_bleu sums over the pairs: per order 1-4 the clipped n-gram matches (numerators) and
    max(1, hypothesis n-grams) (denominators), then the hypothesis and reference lengths. Computed once per
    pair and shared by BLEU-1..4, their corpus values and every resample."""
    return pair.memo("bleu_statistics", _bleu_statistics)


def _bleu_statistics(pair: ScoredPair) -> tuple[int, ...]:
    # NLTK's modified_precision with one reference, as integer counts (it returns them as an unreduced
    # Fraction): each hypothesis n-gram's count clipped by its count in the reference, over the hypothesis's
    # n-gram count (at least 1). The same integers without building Fractions and NLTK's per-reference
    # Counters: a fifth of the time, which the summary of a run spends after its last answer
    # (tests/test_metrics.py checks them against modified_precision).
    reference, hypothesis = reference_tokens(pair), response_tokens(pair)
    numerators, denominators = [], []
    for order in range(1, 5):
        counts = Counter(zip(*(hypothesis[i:] for i in range(order))))
        in_reference = Counter(zip(*(reference[i:] for i in range(order))))
        numerators.append(sum(min(count, in_reference[gram]) for gram, count in counts.items()))
        denominators.append(max(1, len(hypothesis) - order + 1))
    return (*numerators, *denominators, len(hypothesis), len(reference))


def bleu_from_sums(sums: Sequence[float], n: int) -> float:
    """corpus_bleu (uniform weights over 1..n padded to four, smoothing method3) x100 from summed statistics,
    with NLTK's own arithmetic in its order, so that the value is the one corpus_bleu returns, to the last bit."""
    import math

    hyp_len, ref_len = sums[8], sums[9]
    if sums[0] == 0:
        return 0.0  # NLTK returns 0 without unigram matches (an empty corpus included)
    # the reference passes four weights, 1/n for orders 1..n and 0 after: NLTK's terms w * log(p) of the orders
    # past n are zeros, which leave math.fsum (an exactly rounded sum) unchanged, so only 1..n are computed
    weight, terms, k = 1.0 / n, [], 1
    for order in range(n):
        num, den = sums[order], sums[4 + order]
        if num == 0:  # smoothing method3: the k-th zero precision becomes 1 / (2^k * denominator)
            precision = 1 / (2**k * den)
            k += 1
        else:
            precision = num / den
        terms.append(weight * math.log(precision))
    penalty = 1 if hyp_len > ref_len else (0 if hyp_len == 0 else math.exp(1 - ref_len / hyp_len))
    return 100 * (penalty * math.exp(math.fsum(terms)))


class Bleu(_TokenMetric):
    """Corpus BLEU-n (NLTK corpus_bleu, uniform weights over 1..n, smoothing method3)."""

    bounds = (0.0, 100.0)

    def __init__(self, n: int):
        self.n = n
        self.name = f"bleu-{n}"
        self.order = 90 + 10 * n  # bleu-1 .. bleu-4: 100 .. 130
        self.description = f"corpus BLEU-{n}, NLTK, SmoothingFunction().method3, x100 (ESConv code)"

    def features(self) -> dict[str, Any]:
        # kept in the score cache: a second identical run neither tokenises nor imports NLTK
        return {"bleu_statistics": _bleu_statistics}

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        # corpus_bleu's sums from the shared per-pair statistics: integers, so summed exactly in any order
        sums = [sum(column) for column in zip(*(bleu_statistics(p) for p in pairs))] or [0] * 10
        return MetricValue(corpus=bleu_from_sums(sums, self.n))

    def weighted(self, pairs: Sequence[ScoredPair], weights):
        """corpus_bleu's arithmetic on re-weighted sums of the per-pair statistics."""
        import numpy as np

        stats = np.array([bleu_statistics(p) for p in pairs], dtype=float).reshape(len(pairs), 10)
        sums = np.asarray(weights) @ stats  # integer counts times integer weights: exact in float64
        return np.array([bleu_from_sums(row, self.n) for row in sums.tolist()])  # (Python floats: the same values, faster)


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
        described = nltk_data.describe()  # (the version from data.adj's header: info() never loads WordNet)
        return {**super().info(), "implementation": f"nltk {described['nltk']} meteor_score", "wordnet": f"{nltk_data.wordnet_version()} ({described['corpora/wordnet']})"}

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        from nltk.translate.meteor_score import meteor_score

        nltk_data.activate()
        stemmer, wordnet = _meteor_lookups()
        scores = [100 * meteor_score([reference_tokens(p)], response_tokens(p), stemmer=stemmer, wordnet=wordnet) for p in pairs]
        return MetricValue(corpus=_mean(scores), per_sample=scores)


class _MemoStemmer:
    """NLTK's default Porter stemmer (meteor_score's), each word stemmed once per process: a pure function of the word."""

    def __init__(self) -> None:
        from nltk.stem.porter import PorterStemmer

        self._stemmer = PorterStemmer()
        self._stems: dict[str, str] = {}

    def stem(self, word: str) -> str:
        if word not in self._stems:
            self._stems[word] = self._stemmer.stem(word)
        return self._stems[word]


class _MemoWordNet:
    """WordNet as meteor_score asks it (`synsets(word)`), each word looked up once per process: the same synsets
    in the same order, so the same matches. Stemming and these look-ups (morphology, index) were most of METEOR's time."""

    def __init__(self, wordnet: Any) -> None:
        self._wordnet = wordnet
        self._synsets: dict[str, list[Any]] = {}

    def synsets(self, word: str) -> list[Any]:
        if word not in self._synsets:
            self._synsets[word] = self._wordnet.synsets(word)
        return self._synsets[word]


_meteor_memo: list[tuple[_MemoStemmer, _MemoWordNet]] = []


def _meteor_lookups() -> tuple[_MemoStemmer, _MemoWordNet]:
    """The process-wide stemmer and WordNet of METEOR (vocabulary-sized: a few MB for a large corpus)."""
    if not _meteor_memo:
        _meteor_memo.append((_MemoStemmer(), _MemoWordNet(nltk_data.lazy_wordnet())))
    return _meteor_memo[0]


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

    def features(self) -> dict[str, Any]:
        return {self._memo_key: self._ngrams}  # kept in the score cache: a second identical run does not tokenise

    @property
    def _memo_key(self) -> str:
        return f"distinct-{self.n}-{'reference' if self.reference_variant else 'plain'}"

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        # = distinct() over the pairs' tokens: the union of their n-gram sets over the sum of their n-gram counts
        total = sum(self.ngrams(p)[1] for p in pairs)
        unique = len(set().union(*(self._gram_tuples(p) for p in pairs)))
        return MetricValue(corpus=100 * (unique / total if total else 0.0))

    def _gram_tuples(self, pair: ScoredPair) -> tuple[tuple[str, ...], ...]:
        """`ngrams(pair)`'s n-grams as tuples (hashable), once per pair: the corpus value and the resamples use them."""
        return pair.memo(self._memo_key + "/tuples", lambda p: tuple(map(tuple, self.ngrams(p)[0])))

    def ngrams(self, pair: ScoredPair) -> tuple[list[list[str]], int]:
        """The pair's distinct n-grams (in order of first occurrence, as lists: a JSON value the score cache
        keeps) and how many n-grams it counts, once per pair (for the corpus value and every resample)."""
        return pair.memo(self._memo_key, self._ngrams)

    def _ngrams(self, pair: ScoredPair) -> tuple[list[list[str]], int]:
        tokens = response_tokens(pair)
        stop = max(len(tokens) - self.n if self.reference_variant else len(tokens) - self.n + 1, 0)
        return [list(gram) for gram in dict.fromkeys(tuple(tokens[i : i + self.n]) for i in range(stop))], stop

    def weighted(self, pairs: Sequence[ScoredPair], weights):
        """unique = n-grams present in some pair of non-zero weight; total = weighted n-gram count."""
        import numpy as np
        from scipy.sparse import csr_matrix

        ids: dict[tuple[str, ...], int] = {}
        rows, cols, totals = [], [], np.zeros(len(pairs))
        for row, p in enumerate(pairs):
            totals[row] = self.ngrams(p)[1]
            for gram in self._gram_tuples(p):
                rows.append(row)
                cols.append(ids.setdefault(gram, len(ids)))
        presence = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(pairs), max(len(ids), 1)))
        weights = np.asarray(weights, dtype=float)
        unique = (presence.T @ weights.T > 0).sum(axis=0)  # (B,)
        total = weights @ totals
        return 100 * np.divide(np.asarray(unique, dtype=float).ravel(), total, out=np.zeros(len(weights)), where=total > 0)


def distinct_in_response(tokens: Sequence[str], n: int) -> float:
    """One response's distinct n-grams / its n-grams (every n-gram counted); 0 with fewer than n tokens."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


class DistinctPerResponse(_TokenMetric):
    """Mean over responses of each response's Distinct-n: how repetitive a response is within itself, not
    how much the responses repeat each other (corpus `dist-n`). Not size-dependent: a per-sample mean."""

    bounds = (0.0, 100.0)
    per_sample = True

    def __init__(self, n: int):
        self.n = n
        self.name = f"dist-{n}-response"
        self.order = 352 + n  # after the corpus variants (300..350)
        self.description = (f"Distinct-{n} of each response (unique / all {n}-grams, every {n}-gram counted), averaged over "
                            f"responses, x100; a response with fewer than {n} tokens counts 0")

    def info(self) -> dict[str, Any]:
        return {**super().info(), "level": "mean over responses of each response's distinct ratio",
                "ngrams": f"every {self.n}-gram of a response", "short_responses": f"a response with fewer than {self.n} tokens counts 0"}

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        scores = [100 * distinct_in_response(response_tokens(p), self.n) for p in pairs]
        return MetricValue(corpus=_mean(scores), per_sample=scores)


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
DIST_1_RESPONSE, DIST_2_RESPONSE, DIST_3_RESPONSE = (DistinctPerResponse(n) for n in range(1, 4))
UNIGRAM_F1 = UnigramF1()
LENGTH = Length()
