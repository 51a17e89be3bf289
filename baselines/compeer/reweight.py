"""COMPEER's redundancy-aware reward reweighting (section "Redundancy-based Reward Reweighting", eqs. 5-7) and
`harness train compeer-reweight`, which applies it to a file of groups.

For one GRPO group - G outputs o_1..o_G sampled for one conversation history H (a list of utterances) - with
rewards r_1..r_G:

    s_in(i)   = 1/(G-1) sum_{j != i} cos(o_i, o_j)          in-group redundancy (eq. 6)
    s_hist(i) = 1/|H|   sum_{u in H}  cos(o_i, u)           history redundancy (eq. 6)
    tau       = 1 / (1 + exp(-alpha (L - beta)))            L: the group's mean output length (eq. 7)
    r'_i      = r_i / ((1 + tau s_in(i)) (1 + tau s_hist(i)))                                   (eq. 5)

with alpha = 0.5, beta = 5 (the paper's implementation details) and cosines of all-MiniLM-L6-v2 sentence
embeddings (`embed.SentenceEncoder`; the paper does not name its embedding model). TRL then computes GRPO's
advantages (eq. 3) from the r'. Decisions the paper leaves open, each a setting recorded by `describe`:

- G = 1: s_in = 0 (no other output to be redundant with; eq. 6 would divide by 0). Empty history: s_hist = 0.
  H counts repeated utterances as often as they occur (eq. 6 sums over the utterances of the history).
- L is the mean over the group's G outputs (the outputs tau scales; GRPO compares outputs within a group only).
- Length unit (`length_unit`, default "words"): the paper does not say. "words" counts whitespace-separated words
  (`len(text.split())`). It is the reading under which beta = 5 separates what the paper calls brief responses
  ("hello", "goodbye": 1 word, tau = 0.12) from ordinary ones (a 15-word reply: tau = 0.99). An output carrying
  COMPEER's reasoning steps is far above 5 in any unit (tau = 1); the unit decides short replies, and in a
  language model's sub-word tokens they pass the threshold sooner (tokens outnumber words; a chat template adds
  an end token), in characters almost at once (beta = 5 characters is one short word). Whitespace words rather
  than the harness's NLTK tokens (`harness.metrics.lexical.tokenize`): NLTK counts punctuation ("Goodbye!" is 2
  tokens, "I'm here." 4), which moves short replies toward the threshold for no reason a reader would call
  length; words also need no NLTK data. "tokens" counts a given tokenizer's tokens (a callable returning a
  sequence, or a transformers tokenizer: `encode(text, add_special_tokens=False)`); "characters" counts `len(text)`.
- Negative cosines (`negative_similarity`, default "clip"): s_in and s_hist are max(0, eq. 6's mean). The paper
  states the mechanism "downweights the reward for outputs exhibiting high similarity"; with a negative mean the
  literal formula's factor drops below 1 and *raises* the reward of an output for pointing away from the others
  (and for G = 2, o_2 = -o_1 and tau near 1 the divisor goes to 0). Clipping the mean, not each cosine, keeps
  the paper's value wherever its mean is >= 0, the usual case with MiniLM (unrelated sentences score about
  -0.1..0.1; on benchmarks/bench_compeer_reweight.py's ESConv batch 3 of 256 means are negative, the lowest
  -0.03), so it only removes the bonus. "keep" is eq. 6 as printed.
- Negative rewards (`negative_rewards`, default "paper"): eq. 5 divides every reward by a factor >= 1 (with
  clipped similarities), so a negative reward (UnifiReward's lie in [-5, +5]) moves toward 0: a redundant output
  with a negative reward is penalised *less* than a diverse one - the opposite of the aim, for that output.
  "paper" keeps eq. 5 as printed (a reproduction's default; `describe` records what it does to negative
  rewards); "positive-part" divides only a positive reward and leaves r <= 0 as it is (r' = max(r, 0) / factor
  + min(r, 0)), so redundancy never improves a reward.
- A reward that is None or NaN (TRL: not scorable) stays as it is; its output still counts in the others' s_in.
- The text compared is what the caller gives (the whole output, or its response: `trl_reward_wrapper(text=...)`).

`reweight_group` computes one group straightforwardly (a dot product per pair); `reweight_batch` embeds every text
of a whole batch - all outputs and history utterances of all groups, deduplicated - in one encoder call and
computes every group's terms with numpy matrix products; the two agree to float rounding (tests: 1e-12).
`trl_reward_wrapper` turns a TRL reward function into its reweighted version. `encoder` is an
`embed.SentenceEncoder` or anything with `encode(texts) -> (n, d)` (rows are L2-normalised here again); None is
the process's `embed.default_encoder()`.
"""
from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from harness.errors import HarnessError, first_line

from ..trainkit import Setting
from .embed import SentenceEncoder, default_encoder, unit_rows

PAPER = "COMPEER, emotional support implementation details (alpha 0.5, beta 5)"
HARNESS = "harness choice (the paper is silent)"
LENGTH_UNITS = ("words", "tokens", "characters")
NEGATIVE_SIMILARITY = ("clip", "keep")
NEGATIVE_REWARDS = ("paper", "positive-part")
METRIC_PREFIX = "compeer"  # log_metric names: compeer/reward_raw, compeer/reward_reweighted, compeer/s_in, ...


@dataclass(frozen=True)
class ReweightSettings:
    """alpha, beta (eq. 7) and the three rules the paper leaves open (see the module docstring)."""

    alpha: float = 0.5
    beta: float = 5.0
    length_unit: str = "words"
    negative_similarity: str = "clip"
    negative_rewards: str = "paper"

    def __post_init__(self):
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise HarnessError(f"reweighting: {name} must be a finite number, got {value!r}.")
        if self.alpha <= 0:
            raise HarnessError(f"reweighting: alpha must be > 0 (eq. 7's steepness), got {self.alpha}.")
        for name, allowed in (("length_unit", LENGTH_UNITS), ("negative_similarity", NEGATIVE_SIMILARITY),
                              ("negative_rewards", NEGATIVE_REWARDS)):
            if getattr(self, name) not in allowed:
                raise HarnessError(f"reweighting: {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}.")


SOURCES = {
    "alpha": PAPER,
    "beta": PAPER,
    "length_unit": HARNESS + ": whitespace words, the unit under which beta = 5 marks a short reply",
    "negative_similarity": HARNESS + ": max(0, mean cosine), so redundancy only ever down-weights",
    "negative_rewards": "COMPEER eq. 5 as printed (negative rewards move toward 0)",
}


def settings_table(settings: ReweightSettings = ReweightSettings()) -> dict[str, Setting]:
    """The settings as trainkit Settings (value and source), for a recipe's settings table."""
    default = ReweightSettings()
    out = {}
    for name, value in asdict(settings).items():
        source = SOURCES[name] if value == getattr(default, name) else f"given (recipe: {getattr(default, name)!r}, {SOURCES[name]})"
        out[f"reweight_{name}"] = Setting(value, source)
    return out


@dataclass(frozen=True)
class Reweighted:
    """One output's reward before and after eq. 5, and the terms that made the factor."""

    reward: float | None
    reweighted: float | None
    s_in: float
    s_hist: float
    tau: float

    @property
    def factor(self) -> float:
        return (1.0 + self.tau * self.s_in) * (1.0 + self.tau * self.s_hist)


@dataclass(frozen=True)
class Group:
    """One prompt's G outputs, its history utterances and the outputs' rewards."""

    outputs: Sequence[str]
    history: Sequence[str]
    rewards: Sequence[float | None]


# --------------------------------------------------------------------------- the pieces of eqs. 5-7


def tau_of(mean_length: float, settings: ReweightSettings) -> float:
    """eq. 7, computed without overflow for any alpha, beta."""
    z = settings.alpha * (mean_length - settings.beta)
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def output_length(text: str, unit: str, tokenizer: Any = None) -> int:
    if unit == "words":
        return len(text.split())
    if unit == "characters":
        return len(text)
    if tokenizer is None:
        raise HarnessError("reweighting: length_unit 'tokens' needs a tokenizer (give one, or use 'words').")
    if hasattr(tokenizer, "encode"):
        return len(tokenizer.encode(text, add_special_tokens=False))
    return len(tokenizer(text))


def group_tau(outputs: Sequence[str], settings: ReweightSettings, tokenizer: Any = None) -> float:
    lengths = [output_length(o, settings.length_unit, tokenizer) for o in outputs]
    return tau_of(sum(lengths) / len(lengths), settings)


def _similarity(mean: float, settings: ReweightSettings) -> float:
    return max(0.0, mean) if settings.negative_similarity == "clip" else mean


def _apply(reward: float | None, s_in: float, s_hist: float, tau: float, settings: ReweightSettings) -> float | None:
    """eq. 5 (with the negative-reward rule); None and NaN stay as they are."""
    if reward is None or (isinstance(reward, float) and math.isnan(reward)):
        return reward
    reward = float(reward)
    if settings.negative_rewards == "positive-part" and reward <= 0:
        return reward
    return reward / ((1.0 + tau * s_in) * (1.0 + tau * s_hist))


def _check_group(outputs: Sequence[str], history: Sequence[str], rewards: Sequence[Any], where: str = "group") -> None:
    if isinstance(outputs, str) or isinstance(history, str):
        raise HarnessError(f"{where}: outputs and history must be lists of strings, not one string.")
    if not outputs:
        raise HarnessError(f"{where}: no outputs (a group has G >= 1).")
    if len(outputs) != len(rewards):
        raise HarnessError(f"{where}: {len(outputs)} outputs but {len(rewards)} rewards (one reward per output).")
    for kind, texts in (("outputs", outputs), ("history", history)):
        for k, t in enumerate(texts):
            if not isinstance(t, str):
                raise HarnessError(f"{where}: {kind}[{k}] must be a string, got {type(t).__name__}.")


# --------------------------------------------------------------------------- one group, straightforwardly


def reweight_group(outputs: Sequence[str], history: Sequence[str], rewards: Sequence[float | None],
                   settings: ReweightSettings = ReweightSettings(), encoder: SentenceEncoder | None = None,
                   tokenizer: Any = None) -> list[Reweighted]:
    """eqs. 5-7 for one group, one dot product per pair (the reference the batch path is tested against)."""
    outputs, history, rewards = list(outputs), list(history), list(rewards)
    _check_group(outputs, history, rewards)
    encoder = encoder or default_encoder()
    vectors = unit_rows(encoder.encode(outputs + history))
    out_v, hist_v = vectors[: len(outputs)], vectors[len(outputs):]
    tau = group_tau(outputs, settings, tokenizer)
    result = []
    for i, o in enumerate(out_v):
        others = [float(np.dot(o, out_v[j])) for j in range(len(outputs)) if j != i]
        utterances = [float(np.dot(o, u)) for u in hist_v]
        s_in = _similarity(sum(others) / len(others), settings) if others else 0.0
        s_hist = _similarity(sum(utterances) / len(utterances), settings) if utterances else 0.0
        result.append(Reweighted(rewards[i], _apply(rewards[i], s_in, s_hist, tau, settings), s_in, s_hist, tau))
    return result


# --------------------------------------------------------------------------- a whole batch, one encoder call


def _as_group(g: Any) -> Group:
    if isinstance(g, Group):
        return g
    if isinstance(g, Mapping):
        return Group(g["outputs"], g["history"], g["rewards"])
    outputs, history, rewards = g
    return Group(outputs, history, rewards)


def reweight_batch(groups: Sequence[Group | tuple | Mapping], settings: ReweightSettings = ReweightSettings(),
                   encoder: SentenceEncoder | None = None, tokenizer: Any = None) -> list[list[Reweighted]]:
    """eqs. 5-7 for every group of a batch: one encoder call on the batch's distinct texts, then all pairs' cosines
    as one matrix product (outputs x distinct texts) and each output's sums over its group's other outputs and its
    history as a product with count matrices (a text occurring twice counts twice, as in `reweight_group`)."""
    groups = [_as_group(g) for g in groups]
    for n, g in enumerate(groups):
        _check_group(list(g.outputs), list(g.history), list(g.rewards), where=f"group {n}")
    if not groups:
        return []
    encoder = encoder or default_encoder()
    index: dict[str, int] = {}
    for g in groups:
        for t in (*g.outputs, *g.history):
            index.setdefault(t, len(index))
    vectors = unit_rows(encoder.encode(list(index)))  # ONE call, distinct texts
    out_cols = np.array([index[t] for g in groups for t in g.outputs])
    group_of = np.repeat(np.arange(len(groups)), [len(g.outputs) for g in groups])
    n_texts = len(index)
    in_counts = np.zeros((len(groups), n_texts))  # group x text: how often the text is one of its outputs
    hist_counts = np.zeros((len(groups), n_texts))  # ... one of its history utterances
    np.add.at(in_counts, (group_of, out_cols), 1.0)
    hist_rows = [k for k, g in enumerate(groups) for _ in g.history]
    hist_cols = [index[t] for g in groups for t in g.history]
    if hist_cols:
        np.add.at(hist_counts, (np.array(hist_rows), np.array(hist_cols)), 1.0)
    others = in_counts[group_of]  # output x text: its group's outputs ...
    others[np.arange(len(out_cols)), out_cols] -= 1.0  # ... less itself (an identical twin still counts)
    cos = vectors[out_cols] @ vectors.T  # output x text
    n_others = np.array([len(g.outputs) - 1 for g in groups], dtype=float)[group_of]
    n_hist = np.array([len(g.history) for g in groups], dtype=float)[group_of]
    sum_in = (cos * others).sum(axis=1)
    sum_hist = (cos * hist_counts[group_of]).sum(axis=1)
    s_in = np.divide(sum_in, n_others, out=np.zeros_like(sum_in), where=n_others > 0)
    s_hist = np.divide(sum_hist, n_hist, out=np.zeros_like(sum_hist), where=n_hist > 0)
    if settings.negative_similarity == "clip":
        s_in, s_hist = np.maximum(s_in, 0.0), np.maximum(s_hist, 0.0)
    taus = [group_tau(list(g.outputs), settings, tokenizer) for g in groups]
    result, k = [], 0
    for n, g in enumerate(groups):
        row = []
        for reward in g.rewards:
            a, b = float(s_in[k]), float(s_hist[k])
            row.append(Reweighted(reward, _apply(reward, a, b, taus[n], settings), a, b, taus[n]))
            k += 1
        result.append(row)
    return result


# --------------------------------------------------------------------------- identity


def describe(settings: ReweightSettings = ReweightSettings(), encoder: SentenceEncoder | None = None) -> dict[str, Any]:
    """What the reweighting is, for train.json (JSON-able): the settings, their sources and what each rule does."""
    encoder = encoder or default_encoder()
    if callable(getattr(encoder, "check", None)):
        encoder.check()  # never record an encoder that is not there
    said = encoder.describe() if callable(getattr(encoder, "describe", None)) else {"encoder": getattr(encoder, "name", type(encoder).__name__)}
    unit = {"words": "whitespace-separated words (len(text.split()))", "tokens": "the given tokenizer's tokens (no special tokens)",
            "characters": "characters (len(text))"}[settings.length_unit]
    return {
        "reweighting": "compeer redundancy-aware, eq. 5: r / ((1 + tau s_in) (1 + tau s_hist))",
        **asdict(settings),
        "sources": dict(SOURCES),
        "tau": f"1 / (1 + exp(-{settings.alpha} (L - {settings.beta}))), L = the group's mean output length in {unit}",
        "similarity": "cosine of unit sentence embeddings; s_in over the group's other outputs (0 when G = 1), "
                      "s_hist over the history's utterances (0 when empty)",
        "negative_similarity_rule": ("s = max(0, mean cosine): redundancy never raises a reward" if settings.negative_similarity == "clip"
                                     else "eq. 6 as printed: a negative mean cosine makes the factor < 1 (raises |r|)"),
        "negative_rewards_rule": ("eq. 5 as printed: a negative reward is divided too, so it moves toward 0 (a redundant output "
                                  "with a negative reward is penalised less)" if settings.negative_rewards == "paper"
                                  else "only a positive reward is divided; r <= 0 is kept"),
        "unscorable": "a None / NaN reward stays as it is",
        **said,
    }


# --------------------------------------------------------------------------- TRL


def trl_reward_wrapper(reward_fn: Callable[..., Sequence[float | None]], num_generations: int,
                       settings: ReweightSettings = ReweightSettings(), encoder: SentenceEncoder | None = None, *,
                       tokenizer: Any = None, text: Callable[[Any], str] | None = None, history_column: str = "history",
                       name: str | None = None) -> Callable[..., list[float | None]]:
    """A TRL `GRPOTrainer` reward function: `reward_fn`'s rewards reweighted within each group (eq. 5), so that TRL
    computes the advantages (eq. 3) from the reweighted rewards.

    How TRL 1.16 lays a batch out (trl/trainer/grpo_trainer.py): `_get_train_sampler` returns a `RepeatSampler`
    with `mini_repeat_count=self.num_generations` (trl/trainer/utils.py `RepeatSampler.__iter__` yields each prompt
    index `mini_repeat_count` times in a row), `get_train_dataloader` cuts that stream into per-process batches of
    `per_device_train_batch_size * steps_per_generation` rows, and `_generate_and_score_completions` generates one
    completion per row and calls `_calculate_rewards`, which calls a plain callable as `f(prompts=, completions=,
    completion_ids=, **reward_kwargs)` with this process's rows - reward_kwargs: every dataset column other than
    prompt / completion / completion_ids as one list entry per row, plus `trainer_state`, `log_extra` and
    `log_metric` (`self._log_metric(name, value)`: a scalar, averaged over the logging step). The advantages then
    use `rewards.view(-1, num_generations)`: a group is a block of `num_generations` consecutive completions.
    A process sees whole groups only when its batch is a multiple of num_generations; a block whose rows differ in
    history (or prompt) means it does not, and is refused with one line rather than reweighted across prompts.
    (In evaluation TRL groups by `num_generations_eval`: wrap with that number for an eval reward.)

    `text(completion) -> str` picks the compared text (default: the completion's assistant text, as FIRES's
    reward reads it; None, e.g. no parsable response, is compared as ""). The history is the `history_column` column: a list of utterance strings per row. Logged
    through `log_metric` when TRL passes it: compeer/reward_raw, compeer/reward_reweighted, compeer/s_in,
    compeer/s_hist, compeer/tau (batch means; rewards over the scorable ones)."""
    if isinstance(num_generations, bool) or not isinstance(num_generations, int) or num_generations < 1:
        raise HarnessError(f"reweighting: num_generations must be a positive whole number, got {num_generations!r}.")
    if inspect.iscoroutinefunction(reward_fn) or inspect.iscoroutinefunction(getattr(reward_fn, "__call__", None)):
        raise HarnessError("reweighting: the wrapped reward function is async; wrap a plain (sync) reward function.")
    if text is None:
        from ..fires.reward import completion_text as text
    base = getattr(reward_fn, "__name__", None) or type(reward_fn).__name__

    def reward_function(prompts=None, completions=None, **columns) -> list[float | None]:
        completions = list(completions or [])
        raw = list(reward_fn(prompts=prompts, completions=completions, **columns))
        n, size = len(completions), num_generations
        if len(raw) != n:
            raise HarnessError(f"reweighting: the reward function '{base}' returned {len(raw)} rewards for {n} completions.")
        if history_column not in columns:
            raise HarnessError(f"reweighting: the GRPO dataset has no '{history_column}' column (each row's history utterances, "
                               "a list of strings).")
        histories = list(columns[history_column])
        if len(histories) != n:
            raise HarnessError(f"reweighting: {len(histories)} '{history_column}' values for {n} completions.")
        if n % size:
            raise HarnessError(f"reweighting: {n} completions on this process is not a multiple of num_generations = {size}; make "
                               "per_device_train_batch_size x steps_per_generation a multiple of it so that each process holds whole groups.")
        groups = []
        for start in range(0, n, size):
            block = range(start, start + size)
            history = _history(histories[start], start, history_column)
            for k in block[1:]:
                differs = "histories" if _history(histories[k], k, history_column) != history else None
                differs = differs or (None if _same(prompts, start, k) else "prompts")
                if differs:
                    raise HarnessError(f"reweighting: completions {start} and {k} are in one group of {size} but answer different "
                                       f"{differs}: TRL's groups must be whole on each process (per_device_train_batch_size x "
                                       "steps_per_generation a multiple of num_generations) and num_generations must be TRL's.")
            groups.append(Group([text(completions[k]) or "" for k in block], history, [raw[k] for k in block]))
        results = [r for g in reweight_batch(groups, settings, encoder, tokenizer=tokenizer) for r in g]
        log = columns.get("log_metric")
        if callable(log):
            scorable = [r for r in results if r.reward is not None and not math.isnan(float(r.reward))]
            if scorable:
                log(f"{METRIC_PREFIX}/reward_raw", sum(float(r.reward) for r in scorable) / len(scorable))
                log(f"{METRIC_PREFIX}/reward_reweighted", sum(float(r.reweighted) for r in scorable) / len(scorable))
            log(f"{METRIC_PREFIX}/s_in", sum(r.s_in for r in results) / len(results))
            log(f"{METRIC_PREFIX}/s_hist", sum(r.s_hist for r in results) / len(results))
            log(f"{METRIC_PREFIX}/tau", sum(r.tau for r in results) / len(results))
        return [r.reweighted for r in results]

    reward_function.__name__ = reward_function.__qualname__ = name or f"{base}_reweighted"
    return reward_function


def _history(value: Any, row: int, column: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(u, str) for u in value):
        raise HarnessError(f"reweighting: row {row}'s '{column}' must be a list of utterance strings, got {type(value).__name__}.")
    return list(value)


def _same(prompts: Any, a: int, b: int) -> bool:
    """Whether rows a and b have the same prompt (True when there are no prompts or they cannot be compared)."""
    if prompts is None:
        return True
    try:
        return bool(prompts[a] == prompts[b])
    except Exception:
        return True


# --------------------------------------------------------------------------- harness train compeer-reweight

KEYS = ("outputs", "history", "rewards")
SHOWN = ("reward", "reweighted", "s_in", "s_hist", "tau")


def read_groups(path: Path) -> list[tuple[int, Group]]:
    """(line number, group) of each JSONL line {"outputs", "history", "rewards"}; any problem is one HarnessError
    line naming file:line."""
    from baselines.trainkit import jsonl_objects

    groups = []
    for number, where, row in jsonl_objects(path, KEYS, (list,), "list"):
        for key in ("outputs", "history"):
            for k, t in enumerate(row[key]):
                if not isinstance(t, str):
                    raise HarnessError(f"{where}: {key}[{k}] must be a string, got {type(t).__name__}.")
        for k, r in enumerate(row["rewards"]):
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r):
                raise HarnessError(f"{where}: rewards[{k}] must be a finite number, got {json.dumps(r)}.")
        if not row["outputs"]:
            raise HarnessError(f"{where}: 'outputs' is empty (a group has at least one output).")
        if len(row["outputs"]) != len(row["rewards"]):
            raise HarnessError(f"{where}: {len(row['outputs'])} outputs but {len(row['rewards'])} rewards (one reward per output).")
        groups.append((number, Group(row["outputs"], row["history"], [float(r) for r in row["rewards"]])))
    if not groups:
        raise HarnessError(f"{path}: no groups to reweight (empty file).")
    return groups


def _load_tokenizer(folder: Path) -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise HarnessError(f"--tokenizer needs transformers ({first_line(exc)}); install it with pip install '.[train]'.") from None
    try:
        return transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise HarnessError(f"--tokenizer {folder}: cannot load a tokenizer there ({first_line(exc)}).") from None


@click.command("compeer-reweight")
@click.option("--input", "input_file", type=click.Path(path_type=Path), required=True,
              help='JSONL file, one group per line: {"outputs": [...], "history": [...], "rewards": [...]}.')
@click.option("--json", "as_json", is_flag=True, help="One JSON object per output instead of the table.")
@click.option("--alpha", type=float, default=ReweightSettings.alpha, show_default=True, help="eq. 7's steepness (> 0).")
@click.option("--beta", type=float, default=ReweightSettings.beta, show_default=True, help="eq. 7's length threshold.")
@click.option("--length-unit", type=click.Choice(LENGTH_UNITS), default=ReweightSettings.length_unit, show_default=True,
              help="Unit of the mean output length L ('tokens' needs --tokenizer).")
@click.option("--tokenizer", "tokenizer_dir", type=click.Path(path_type=Path), help="A local tokenizer folder for --length-unit tokens.")
@click.option("--negative-similarity", type=click.Choice(NEGATIVE_SIMILARITY), default=ReweightSettings.negative_similarity,
              show_default=True, help="clip: s = max(0, mean cosine); keep: eq. 6 as printed.")
@click.option("--negative-rewards", type=click.Choice(NEGATIVE_REWARDS), default=ReweightSettings.negative_rewards,
              show_default=True, help="paper: eq. 5 on every reward (negative ones move toward 0); positive-part: only r > 0 divided.")
def compeer_reweight(input_file: Path, as_json: bool, alpha: float, beta: float, length_unit: str, tokenizer_dir: Path | None,
                     negative_similarity: str, negative_rewards: str) -> None:
    """Reweight GRPO groups' rewards by redundancy (COMPEER eqs. 5-7) and print each output's reward, reweighted
    reward, in-group and history redundancy and tau."""
    settings = ReweightSettings(alpha, beta, length_unit, negative_similarity, negative_rewards)
    if length_unit == "tokens" and tokenizer_dir is None:
        raise HarnessError("--length-unit tokens needs --tokenizer FOLDER (a local tokenizer); or use words / characters.")
    if length_unit != "tokens" and tokenizer_dir is not None:
        raise HarnessError(f"--tokenizer is only used with --length-unit tokens (given: {length_unit}).")
    rows = read_groups(input_file)
    tokenizer = _load_tokenizer(tokenizer_dir) if tokenizer_dir is not None else None
    results = reweight_batch([g for _, g in rows], settings, tokenizer=tokenizer)
    if as_json:
        for (number, _), group in zip(rows, results):
            for k, r in enumerate(group):
                click.echo(json.dumps({"line": number, "output": k, **{key: getattr(r, key) for key in SHOWN}}))
        return
    header = ("line", "output") + SHOWN
    table = [[str(number), str(k)] + [f"{getattr(r, key):.4f}" for key in SHOWN]
             for (number, _), group in zip(rows, results) for k, r in enumerate(group)]
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]
    click.echo("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for r in table:
        click.echo("  ".join(c.rjust(w) for c, w in zip(r, widths)))
