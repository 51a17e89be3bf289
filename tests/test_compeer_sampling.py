"""COMPEER's Gaussian sparse sampling of dialogue rounds (eq. 1): the distribution, sampling without
replacement, the edge cases, the seeds, and what a round of the harness's samples is."""
import json
import math
import os
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from baselines.compeer import sampling
from baselines.compeer.sampling import (
    dialogues_of,
    draw_rounds,
    pick_rounds,
    round_probabilities,
    rounds_of,
    sample_dialogue,
    sample_rounds,
    select_rounds,
    stable_seed,
)
from harness.contract import Sample, Turn
from harness.errors import HarnessError

REPO = Path(__file__).resolve().parents[1]

# chi-square critical values at 1 - 1e-3 (df: value), from the chi-square quantile function (scipy.stats.chi2.ppf)
CHI2_999 = {9: 27.877, 19: 43.820}


def eq1(n: int) -> np.ndarray:
    """Eq. 1 written out independently: rounds i = 1..n, mu = n/2, sigma = n/4."""
    w = [math.exp(-((i - n / 2) ** 2) / (2 * (n / 4) ** 2)) for i in range(1, n + 1)]
    return np.array(w) / sum(w)


def test_probabilities_are_eq_1():
    for n in (1, 2, 3, 7, 10, 25, 100):
        p = round_probabilities(n)
        assert p.shape == (n,) and abs(p.sum() - 1) < 1e-12
        assert np.allclose(p, eq1(n), rtol=1e-12, atol=0)
    # N = 4: mu = 2, sigma = 1, rounds 1..4 -> weights e^-1/2, 1, e^-1/2, e^-2 (round 2 is the most likely)
    w = np.array([math.exp(-0.5), 1.0, math.exp(-0.5), math.exp(-2.0)])
    assert np.allclose(round_probabilities(4), w / w.sum())
    # the last round is exp(-2) as likely as the middle one, whatever N (no round is ever impossible)
    for n in (8, 40, 400):
        p = round_probabilities(n)
        assert math.isclose(p[-1] / p[n // 2 - 1], math.exp(-2), rel_tol=1e-12)
    assert round_probabilities(0).shape == (0,)


def test_single_draws_follow_eq_1():
    """100,000 draws of one round of a 10-round dialogue. Each round's frequency is within 5 standard errors
    sqrt(p(1-p)/n) of p (a two-sided 5-sigma band: under 6e-7 per round, under 6e-6 for all ten, by chance), and
    the chi-square statistic is under its 0.999 quantile. The seed is fixed, so the test is deterministic;
    the bounds say why a correct sampler passes with any seed."""
    n_rounds, draws = 10, 100_000
    rng = np.random.default_rng(20250808)
    counts = np.zeros(n_rounds)
    for _ in range(draws):
        (i,) = draw_rounds(rng, n_rounds, 1)
        counts[i - 1] += 1
    p = eq1(n_rounds)
    freq = counts / draws
    se = np.sqrt(p * (1 - p) / draws)
    assert np.all(np.abs(freq - p) <= 5 * se), (freq, p)
    chi2 = float(((counts - draws * p) ** 2 / (draws * p)).sum())
    assert chi2 < CHI2_999[n_rounds - 1], chi2
    assert counts.argmax() == 4  # round 5 = mu = N/2


def test_per_dialogue_seeds_follow_eq_1():
    """One draw from each of 10,000 dialogues (each its own stable seed): the marginal is still eq. 1."""
    n_rounds, dialogues = 20, 10_000
    counts = np.zeros(n_rounds)
    for d in range(dialogues):
        (i,) = sample_dialogue(f"esconv/train/d{d:05d}", n_rounds, 1, seed=3)
        counts[i - 1] += 1
    p = eq1(n_rounds)
    chi2 = float(((counts - dialogues * p) ** 2 / (dialogues * p)).sum())
    assert chi2 < CHI2_999[n_rounds - 1], chi2


def test_without_replacement_is_successive_renormalised_draws():
    """Two rounds of five: the pair {a, b} has probability p(a) p(b) / (1 - p(a)) + p(b) p(a) / (1 - p(b))
    (first a, then b from the rest renormalised, or the other way round). 20,000 draws, chi-square over the
    10 pairs under its 0.999 quantile (df 9)."""
    n_rounds, draws = 5, 20_000
    p = eq1(n_rounds)
    pairs = list(combinations(range(1, n_rounds + 1), 2))
    expected = np.array([p[a - 1] * p[b - 1] / (1 - p[a - 1]) + p[b - 1] * p[a - 1] / (1 - p[b - 1]) for a, b in pairs])
    assert abs(expected.sum() - 1) < 1e-12
    rng = np.random.default_rng(11)
    counts = dict.fromkeys(pairs, 0)
    for _ in range(draws):
        counts[tuple(draw_rounds(rng, n_rounds, 2))] += 1
    observed = np.array([counts[pair] for pair in pairs])
    chi2 = float(((observed - draws * expected) ** 2 / (draws * expected)).sum())
    assert chi2 < CHI2_999[9], chi2
    # drawing both rounds independently from p (with replacement, then dropping doubles) would differ clearly
    naive = np.array([2 * p[a - 1] * p[b - 1] for a, b in pairs])
    naive /= naive.sum()
    assert float(((observed - draws * naive) ** 2 / (draws * naive)).sum()) > CHI2_999[9]  # (about 90 expected)


def test_unique_rounds_in_dialogue_order():
    for n_rounds in range(2, 31):
        for n_samples in range(1, n_rounds):
            for seed in range(3):
                got = sample_rounds(n_rounds, n_samples, seed)
                assert len(got) == n_samples
                assert got == sorted(set(got))  # unique and ascending
                assert 1 <= got[0] and got[-1] <= n_rounds and all(isinstance(i, int) for i in got)


def test_fewer_rounds_than_asked_and_empty_cases():
    assert sample_rounds(4, 4, 0) == [1, 2, 3, 4]
    assert sample_rounds(4, 9, 0) == [1, 2, 3, 4]
    assert sample_rounds(1, 1, 5) == [1]
    assert sample_rounds(0, 3, 0) == [] and sample_rounds(5, 0, 0) == [] and sample_rounds(0, 0, 0) == []
    assert sample_dialogue("mesc/train/d0001", 3, 8, 0) == [1, 2, 3]
    # N_s >= N_r draws nothing: the generator is left untouched
    rng = np.random.default_rng(1)
    before = rng.bit_generator.state
    draw_rounds(rng, 3, 3)
    assert rng.bit_generator.state == before
    for bad in ((-1, 2, 0), (5, -2, 0), (5, 2, -1), (5.0, 2, 0), (5, True, 0), ("5", 2, 0), (5, 2, 1.5)):
        with pytest.raises(HarnessError) as err:
            sample_rounds(*bad)
        assert "\n" not in str(err.value)
    with pytest.raises(HarnessError):
        round_probabilities(-3)


def test_determinism_and_seeds():
    a = sample_rounds(30, 6, 42)
    assert sample_rounds(30, 6, 42) == a
    assert sample_rounds(np.int64(30), np.int64(6), np.int64(42)) == a  # numpy integers are whole numbers too
    assert len({tuple(sample_rounds(30, 6, seed)) for seed in range(10)}) >= 8
    d = sample_dialogue("esconv/train/d0007", 30, 6, 42)
    assert sample_dialogue("esconv/train/d0007", 30, 6, 42) == d
    assert len({tuple(sample_dialogue("esconv/train/d0007", 30, 6, s)) for s in range(10)}) >= 8
    assert len({tuple(sample_dialogue(f"esconv/train/d{k:04d}", 30, 6, 42)) for k in range(10)}) >= 8
    assert stable_seed(42, "esconv/train/d0007") != stable_seed(43, "esconv/train/d0007")
    assert stable_seed(42, "esconv/train/d0007") != stable_seed(42, "esconv/train/d0008")
    assert stable_seed(1, "x") != stable_seed(1, "x", tag="other")


def test_stable_seed_is_sha256_and_the_same_in_another_process():
    # pinned: sha256("compeer-rounds|7|mesc/train/d0012"), its first 8 bytes big-endian
    import hashlib

    digest = hashlib.sha256(b"compeer-rounds|7|mesc/train/d0012").digest()
    assert stable_seed(7, "mesc/train/d0012") == int.from_bytes(digest[:8], "big")
    here = {"seed": stable_seed(7, "mesc/train/d0012"), "rounds": sample_dialogue("mesc/train/d0012", 40, 7, 7)}
    code = ("import json; from baselines.compeer.sampling import stable_seed, sample_dialogue; "
            "print(json.dumps({'seed': stable_seed(7, 'mesc/train/d0012'), 'rounds': sample_dialogue('mesc/train/d0012', 40, 7, 7)}))")
    for hash_seed in ("1", "987"):  # Python's str hash differs between these; the draw must not
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == here


# --------------------------------------------------------------------------- rounds of the harness's samples


def sample(sample_id: str, n_history: int = 1) -> Sample:
    history = tuple(Turn(speaker="Seeker" if k % 2 == 0 else "Supporter", text=f"turn {k}") for k in range(n_history))
    return Sample(id=sample_id, history=history, reference=f"reply of {sample_id}")


def test_rounds_of_orders_one_dialogue_by_target_number():
    ids = ["esconv/train/d0003/u11", "esconv/train/d0003/u02", "esconv/train/d0003/u07"]
    got = rounds_of([sample(i) for i in ids])
    assert [s.id for s in got] == ["esconv/train/d0003/u02", "esconv/train/d0003/u07", "esconv/train/d0003/u11"]
    assert rounds_of([]) == []
    # no number in an id: the given order is kept
    odd = [sample("x/a/first"), sample("x/a/second")]
    assert [s.id for s in rounds_of(odd)] == ["x/a/first", "x/a/second"]
    with pytest.raises(HarnessError, match="one dialogue, got 2"):
        rounds_of([sample("mesc/train/d0001/t01"), sample("mesc/train/d0002/t01")])
    with pytest.raises(HarnessError, match="given twice"):
        rounds_of([sample("mesc/train/d0001/t01"), sample("mesc/train/d0001/t01")])


def test_dialogues_of_and_select_rounds():
    samples = [sample(f"mesc/train/d0001/t{k:02d}") for k in (1, 3, 5, 7, 9, 11, 13, 15)]
    samples += [sample(f"mesc/train/d0000/t{k:02d}") for k in (3, 1)]  # a short dialogue, out of order
    groups = dialogues_of(samples)
    assert list(groups) == ["mesc/train/d0001", "mesc/train/d0000"]
    assert [s.id for s in groups["mesc/train/d0000"]] == ["mesc/train/d0000/t01", "mesc/train/d0000/t03"]
    picked = select_rounds(samples, 3, seed=5)
    first = sample_dialogue("mesc/train/d0001", 8, 3, 5)
    assert [s.id for s in picked[:3]] == [groups["mesc/train/d0001"][i - 1].id for i in first]
    assert [s.id for s in picked[3:]] == ["mesc/train/d0000/t01", "mesc/train/d0000/t03"]  # 2 rounds <= N_s: both
    assert select_rounds(samples, 3, seed=5) == picked
    assert pick_rounds(["a", "b", "c", "d", "e"], "some/dialogue", 2, 0) == [
        "abcde"[i - 1] for i in sample_dialogue("some/dialogue", 5, 2, 0)]
    assert sampling.SEED_TAG == "compeer-rounds"
