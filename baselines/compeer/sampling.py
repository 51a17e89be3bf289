"""COMPEER's sparse sampling of dialogue rounds (section "Emotional Support Conversations Collection", eq. 1).

Adjacent rounds of a dialogue share most of their context, so COMPEER keeps only N_s of a dialogue's N_r
rounds, drawn with a Gaussian preference for the middle of the dialogue (openings and closings are mostly
greetings and goodbyes):

    p(i) = exp(-(i - mu)^2 / (2 sigma^2)) / sum_{j=1..N_r} exp(-(j - mu)^2 / (2 sigma^2)),
    mu = N_r / 2, sigma = N_r / 4,  i = 1..N_r

The paper numbers rounds from 1, and so does everything here: `round_probabilities(n)[i - 1]` is p(i), and
the functions that return rounds give round numbers 1..N_r (as `CerRow.round` in data.py stores them), so round i
of a dialogue is `rounds[i - 1]`; `pick_rounds` and `select_rounds` return the rounds themselves. With
sigma = N_r / 4 the least likely round (the last: exp(-2) relative to the middle) is about 7.4 times less likely
than the most likely one, whatever N_r; no probability is ever 0.

Sampling without replacement. N_s unique rounds are drawn one after another, each from eq. 1 renormalised over
the rounds not drawn yet (successive sampling), and returned in dialogue order (ascending), as the paper orders
its subset "by their original sequence". This is `numpy.random.Generator.choice(N_r, N_s, replace=False, p=p)`:
numpy's docs do not spell the scheme out, but its implementation (numpy/random/_generator.pyx, `choice`) draws
i.i.d. values from p, keeps each value's first occurrence in draw order, zeroes the found ones, renormalises the
cdf and repeats until N_s are found - the first new value among i.i.d. draws is distributed as p renormalised
over the values not found yet, so this is exactly successive renormalised sampling (tests/test_compeer_sampling.py
checks the distribution of the drawn pairs {a, b} against p(a) p(b) / (1 - p(a)) + p(b) p(a) / (1 - p(b))).

Edge cases (one rule each, no error): N_s >= N_r gives every round, in order, and draws nothing; N_r = 0 or
N_s = 0 gives []. A negative N_r or N_s, or one that is not a whole number, is one HarnessError line.

Seeds. `sample_rounds(n, k, seed)` seeds `numpy.random.default_rng(seed)`. `sample_dialogue(dialogue_id, n, k,
seed)` derives the generator's seed from (seed, dialogue id) with sha256 (`stable_seed`), never with Python's
`hash()` (salted per process), so a dialogue's draw is the same in every process and on every machine (with the
same numpy: its generator and `choice` make the draw), and does not depend on which other dialogues are sampled
or in what order.

What a round is. A round is one of the harness's own samples: one supporter response (the target) with the
history before it. COMPEER selects "sentences" and then feeds "the conversation history of sampled sentences"
to its teachers, which is exactly what a sample holds. For MESC (tasks/mesc.py) that is every therapist turn
(consecutive utterances merged) with a non-empty history, as FIRES takes them: ids mesc/<split>/dNNNN/tNN; for
ESConv (tasks/esconv.py) every supporter utterance except a dialogue's first utterance (ids .../dNNNN/uNN, the
default turns=utterance) or every merged supporter turn with a non-empty history (.../dNNNN/tNN,
turns=merged). A dialogue's rounds are its samples, grouped by `tasks.prompting.dialogue_of` (the id without its
last part) and put in dialogue order by the number in the id's last part (t05 -> 5); N_r is their count (so a
seeker turn is never a round of its own: it is part of the next round's history).
"""
from __future__ import annotations

import hashlib
import operator
import re
from functools import lru_cache
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

import numpy as np

from harness.contract import Sample
from harness.errors import HarnessError
from tasks.prompting import dialogue_of

S = TypeVar("S")

SEED_TAG = "compeer-rounds"  # the purpose string hashed into a dialogue's seed (another purpose, another stream)
_TARGET_NUMBER = re.compile(r"(\d+)$")


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise HarnessError(f"{what} must be a whole number, 0 or more, got {value!r}.")
    try:
        number = operator.index(value)
    except TypeError:
        raise HarnessError(f"{what} must be a whole number, 0 or more, got {value!r}.") from None
    if number < 0:
        raise HarnessError(f"{what} must be 0 or more, got {number}.")
    return number


@lru_cache(maxsize=1024)
def _probabilities(n: int) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    i = np.arange(1, n + 1, dtype=np.float64)
    mu, sigma = n / 2.0, n / 4.0
    weights = np.exp(-((i - mu) ** 2) / (2.0 * sigma**2))
    p = weights / weights.sum()
    p.flags.writeable = False  # shared by every draw of an n-round dialogue
    return p


def round_probabilities(n_rounds: int) -> np.ndarray:
    """Eq. 1 for a dialogue of `n_rounds` rounds: element i - 1 is p(i) (the paper's rounds are 1..N_r),
    mu = N_r / 2, sigma = N_r / 4; sums to 1. Empty for 0 rounds."""
    return _probabilities(_count(n_rounds, "the number of rounds")).copy()


def draw_rounds(rng: np.random.Generator, n_rounds: int, n_samples: int) -> list[int]:
    """N_s unique round numbers (1..N_r) from `rng`, by successive renormalised draws from eq. 1, in dialogue
    order; every round (drawing nothing) when N_s >= N_r; [] when either is 0 (see the module docstring)."""
    n = _count(n_rounds, "the number of rounds")
    k = _count(n_samples, "the number of rounds to sample")
    if n == 0 or k == 0:
        return []
    if k >= n:
        return list(range(1, n + 1))
    picked = rng.choice(n, size=k, replace=False, p=_probabilities(n))  # choice copies p before zeroing drawn rounds
    return sorted(int(x) + 1 for x in picked)


def sample_rounds(n_rounds: int, n_samples: int, seed: int) -> list[int]:
    """`draw_rounds` with `numpy.random.default_rng(seed)`: the same rounds for the same arguments."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise HarnessError(f"the sampling seed must be a whole number, 0 or more, got {seed!r}.")
    return draw_rounds(np.random.default_rng(int(seed)), n_rounds, n_samples)


def stable_seed(*parts: Any, tag: str = SEED_TAG) -> int:
    """A 64-bit seed from `tag` and `parts` (their str(), joined with '|') by sha256: the same in every process
    (Python's `hash()` of a str is salted per process, so it is never used)."""
    text = "|".join([tag, *(str(p) for p in parts)])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def sample_dialogue(dialogue_id: str, n_rounds: int, n_samples: int, seed: int) -> list[int]:
    """The round numbers (1..N_r) kept of dialogue `dialogue_id` under the run's `seed`: `sample_rounds` seeded
    with `stable_seed(seed, dialogue_id)`, so independent of the other dialogues and of the process."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise HarnessError(f"the sampling seed must be a whole number, got {seed!r}.")
    return sample_rounds(n_rounds, n_samples, stable_seed(int(seed), dialogue_id))


# --------------------------------------------------------------------------- rounds of the harness's samples


def _target_number(sample: Sample) -> int | None:
    match = _TARGET_NUMBER.search(sample.id.rsplit("/", 1)[-1])
    return int(match.group(1)) if match else None


def rounds_of(samples: Sequence[Sample], dialogue: Callable[[Sample], Hashable] = dialogue_of) -> list[Sample]:
    """The rounds of one dialogue: its samples in dialogue order (by the number ending the id's last part,
    "t05" -> 5; in the given order when an id has no such number). Samples of two dialogues, or one id twice,
    are one HarnessError line."""
    items = list(samples)
    if not items:
        return []
    keys = {dialogue(s) for s in items}
    if len(keys) > 1:
        shown = sorted(str(k) for k in keys)
        raise HarnessError(f"rounds_of takes the samples of one dialogue, got {len(keys)} ({', '.join(shown[:3])}{', ...' if len(shown) > 3 else ''}); "
                           "group them with dialogues_of first.")
    seen: set[str] = set()
    for s in items:
        if s.id in seen:
            raise HarnessError(f"sample {s.id} is given twice; each round of a dialogue is one sample.")
        seen.add(s.id)
    numbers = [_target_number(s) for s in items]
    if any(n is None for n in numbers):
        return items
    return [s for _, s in sorted(zip(numbers, items), key=lambda pair: pair[0])]  # stable: equal numbers keep their order


def dialogues_of(samples: Sequence[Sample], dialogue: Callable[[Sample], Hashable] = dialogue_of) -> dict[Hashable, list[Sample]]:
    """{dialogue key: its rounds (`rounds_of`)}, the dialogues in order of first appearance."""
    groups: dict[Hashable, list[Sample]] = {}
    for s in samples:
        groups.setdefault(dialogue(s), []).append(s)
    return {key: rounds_of(group, dialogue) for key, group in groups.items()}


def pick_rounds(rounds: Sequence[S], dialogue_id: str, n_samples: int, seed: int) -> list[S]:
    """The rounds kept of one dialogue (given in dialogue order), in dialogue order (`sample_dialogue`)."""
    return [rounds[i - 1] for i in sample_dialogue(dialogue_id, len(rounds), n_samples, seed)]


def select_rounds(samples: Sequence[Sample], n_samples: int, seed: int,
                  dialogue: Callable[[Sample], Hashable] = dialogue_of) -> list[Sample]:
    """COMPEER's sparse subset of a split: for every dialogue (in order of first appearance) N_s of its rounds,
    in dialogue order (all of them when it has N_s or fewer)."""
    kept: list[Sample] = []
    for key, rounds in dialogues_of(samples, dialogue).items():
        kept.extend(pick_rounds(rounds, str(key), n_samples, seed))
    return kept
