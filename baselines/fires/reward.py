"""The FIRES GRPO reward (Wang et al. 2025, section 3.4.3) and `harness train fires-reward`, which scores a file with it.

For a completion (the model's whole output), the therapist's gold response (reference) and the seeker's last
utterance (context, as DIFF-EPITOME uses it):

    format_ok      `tasks.prompting.parse_thinking_output(completion).format_ok`: exactly one <think>...</think>
                   then exactly one <response>...</response>, only whitespace around and between, a non-empty
                   response. The response scored below is that parser's `response`.
    rouge_l        ROUGE-L F with beta = 1 (the paper's F1 of the LCS; the evaluation metric `rouge-l` uses 1.2),
                   on [0, 1], on `harness.metrics.lexical.tokenize` tokens of response and reference.
    diff_epitome   DE = (1/3) sum over ER, IP, EX of (level_m(reference | context) - level_m(response | context))^2,
                   levels from the EPITOME classifiers DIFF-EPITOME uses (FIRES eq. 4).
    support_skill  1 if DE <= 1 else 0.
    reward         0 when not format_ok; else w_F * 1 + w_R * rouge_l + w_DE * support_skill (eq. 5),
                   weights (0.1, 1.0, 0.1) by default (section 4.1).

Scoring a batch runs each EPITOME classifier once over the batch's format-ok completions (responses and
references in one call: DIFF-EPITOME's own `baselines.epitome.metric.per_pair`); `TrainedClassifiers` memoises
per (seeker, response), so the references a group of completions shares are encoded once.

`FiresReward.trl_reward_functions()` gives the three components as TRL `GRPOTrainer` reward functions, with the
weights for `GRPOConfig(reward_weights=...)`, so that TRL's weighted sum is `reward` and TRL logs each component.
"""
from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from baselines.epitome.metric import LevelPredictor
from harness.errors import HarnessError

# The project's decisions on the paper's reward (recorded by `FiresReward.describe`).
ROUGE_BETA = 1.0  # "an F1-score based on the LCS" (3.4.3), not the ESConv evaluation code's 1.2
SUPPORT_SKILL_THRESHOLD = 1.0  # r^DE = 1 when DIFF-EPITOME <= 1
TOKENIZER = "harness.metrics.lexical.tokenize"
FORMAT_RULE = "tasks.prompting.parse_thinking_output format_ok"
COMPONENTS = ("format", "rouge_l", "support_skill")  # the TRL reward functions' names, in the weights' order


@dataclass(frozen=True)
class RewardWeights:
    """w^F, w^R, w^DE of eq. 5 (FIRES section 4.1: 0.1, 1, 0.1)."""

    format: float = 0.1
    rouge: float = 1.0
    support_skill: float = 0.1


@dataclass
class RewardBreakdown:
    """One completion's reward and its parts. rouge_l, diff_epitome and support_skill are None when the format is
    not ok (nothing is computed: the reward is 0); with the support-skill reward off (the w/o-SSR ablation)
    diff_epitome is None and support_skill 0.0."""

    reward: float
    format_ok: bool
    rouge_l: float | None
    diff_epitome: float | None
    support_skill: float | None
    response: str  # the parsed response (also when the format is not ok: the parser's best reading)


class FiresReward:
    """The FIRES reward. `classifiers` None: the EPITOME classifiers DIFF-EPITOME uses (`baselines.epitome.metric.
    predictor()`: the built default tag, $ESC_HARNESS_EPITOME, or a predictor set with `set_predictor`), looked up
    and checked on first use; `support_skill=False` (w/o-SSR) never loads them and that component is 0."""

    def __init__(self, weights: RewardWeights = RewardWeights(), classifiers: LevelPredictor | None = None, support_skill: bool = True):
        self.weights = weights
        self.support_skill = support_skill
        self._classifiers = classifiers
        self._guard = threading.Lock()
        self._batch: tuple[tuple, list[RewardBreakdown]] | None = None  # the last TRL batch and its breakdowns

    # ----------------------------------------------------------------------- the classifiers

    def classifiers(self) -> LevelPredictor:
        """The LevelPredictor in use (resolved, and checked to be built, on first call)."""
        with self._guard:
            if self._classifiers is None:
                from baselines.epitome import metric

                try:
                    metric.DIFF_EPITOME.check()  # the metric's own check and its one line (run `harness epitome train`)
                except HarnessError as exc:
                    raise HarnessError(f"the FIRES support-skill reward needs DIFF-EPITOME's classifiers: {exc} "
                                       "(the w/o-SSR reward, --no-support-skill, needs none)") from None
                self._classifiers = metric.predictor()
            return self._classifiers

    def classifier_tag(self) -> str | None:
        """The tag DIFF-EPITOME's metric_info records as `classifier` (None with the support-skill reward off)."""
        if not self.support_skill:
            return None
        return self.classifiers().describe().get("classifier")

    # ----------------------------------------------------------------------- scoring

    def score(self, completions: Sequence[str], references: Sequence[str], contexts: Sequence[str]) -> list[RewardBreakdown]:
        from harness.metrics.lexical import rouge_l_f, tokenize
        from tasks.prompting import parse_thinking_output

        if not len(completions) == len(references) == len(contexts):
            raise HarnessError(f"FIRES reward: {len(completions)} completions, {len(references)} references and "
                               f"{len(contexts)} contexts; give one reference and one context per completion.")
        parsed = [parse_thinking_output(c) for c in completions]
        ok = [i for i, p in enumerate(parsed) if p.format_ok]
        rouge = {i: rouge_l_f(tokenize(parsed[i].response), tokenize(references[i]), beta=ROUGE_BETA) for i in ok}
        de = self._diff_epitome([parsed[i].response for i in ok], [references[i] for i in ok], [contexts[i] for i in ok])
        de_of = dict(zip(ok, de)) if de is not None else {}
        w = self.weights
        out = []
        for i, p in enumerate(parsed):
            if not p.format_ok:
                out.append(RewardBreakdown(0.0, False, None, None, None, p.response))
                continue
            support = (1.0 if de_of[i] <= SUPPORT_SKILL_THRESHOLD else 0.0) if self.support_skill else 0.0
            # the same products summed in the same order as TRL's weighted sum of the three functions
            reward = w.format * 1.0 + w.rouge * rouge[i] + w.support_skill * support
            out.append(RewardBreakdown(reward, True, rouge[i], de_of.get(i), support, p.response))
        return out

    def _diff_epitome(self, responses: list[str], references: list[str], contexts: list[str]) -> list[float] | None:
        """DE per pair by DIFF-EPITOME's own per-pair code (`baselines.epitome.metric.per_pair`): each classifier is
        called once for all pairs, both sides together, with the seeker's last utterance as context."""
        if not self.support_skill:
            return None
        if not responses:
            return []
        from baselines.epitome.metric import per_pair
        from harness.contract import ScoredPair, Turn

        pairs = [ScoredPair(response=r, reference=ref, history=(Turn(speaker="seeker", text=c),)) for r, ref, c in zip(responses, references, contexts)]
        return per_pair(pairs, levels=self.classifiers())

    # ----------------------------------------------------------------------- identity

    def describe(self) -> dict[str, Any]:
        """What the reward is, for train.json (JSON-able). Resolves, and checks, the classifiers when the
        support-skill reward is on (so a training never records classifiers that are not built)."""
        return {
            "reward": "fires",
            "weights": asdict(self.weights),
            "format": FORMAT_RULE,
            "rouge_l": {"measure": "LCS F-measure", "beta": ROUGE_BETA, "scale": "0-1", "tokenizer": TOKENIZER},
            "support_skill": self.support_skill,
            "support_skill_threshold": SUPPORT_SKILL_THRESHOLD,
            "diff_epitome": "mean over ER, IP, EX of (level(reference) - level(response))^2 given the seeker's last utterance",
            "classifier": self.classifier_tag(),
        }

    # ----------------------------------------------------------------------- TRL

    def trl_reward_functions(self) -> tuple[list[Callable[..., list[float]]], list[float]]:
        """Reward functions for `GRPOTrainer(reward_funcs=...)` named "format", "rouge_l", "support_skill" (each 0
        when the format is wrong) and their weights for `GRPOConfig(reward_weights=...)`: sum(w * f) = `reward`.

        What this relies on in TRL (1.16, trainer/grpo_trainer.py `_calculate_rewards` and its caller
        `_generate_and_score_completions`): a plain callable is called as `f(prompts=, completions=,
        completion_ids=, **reward_kwargs)`, where reward_kwargs holds every dataset column other than
        "prompt"/"completion"/"completion_ids" as a list with one value per completion (so `reference` and
        `context`), plus trainer_state, log_extra and log_metric; `completions` are the decoded strings, or for a
        conversational dataset one message list per completion ([{"role": "assistant", "content": ...}]); it
        must return one float per completion (None becomes NaN). The functions are called one after the other on
        the same batch (async ones are the exception: these are sync), and the weighted sum is
        `(rewards_per_func * reward_weights).nansum(dim=1)` in float32; its name for logging is `__name__`
        (`get_callable_name`). Hence the breakdown is computed once per batch, memoised on the batch's
        (completions, references, contexts), so the classifiers run once per generation batch.
        """

        def component(name: str, value: Callable[[RewardBreakdown], float]) -> Callable[..., list[float]]:
            def reward_function(prompts=None, completions=None, completion_ids=None, **columns) -> list[float]:
                breakdowns = self._trl_batch(completions, columns)
                if name == "support_skill" and self.support_skill and callable(columns.get("log_metric")):
                    de = [b.diff_epitome for b in breakdowns if b.diff_epitome is not None]
                    if de:
                        columns["log_metric"]("diff_epitome", sum(de) / len(de))
                return [value(b) if b.format_ok else 0.0 for b in breakdowns]

            reward_function.__name__ = reward_function.__qualname__ = name
            return reward_function

        functions = [
            component("format", lambda b: 1.0),
            component("rouge_l", lambda b: b.rouge_l),
            component("support_skill", lambda b: b.support_skill),
        ]
        w = self.weights
        return functions, [w.format, w.rouge, w.support_skill]

    def _trl_batch(self, completions: Any, columns: dict[str, Any]) -> list[RewardBreakdown]:
        missing = [k for k in ("reference", "context") if k not in columns]
        if missing:
            raise HarnessError(f"FIRES reward: the GRPO dataset has no {' and '.join(repr(k) for k in missing)} column "
                               "(one reference and one seeker context per prompt).")
        texts = tuple(completion_text(c) for c in completions or ())
        key = (texts, tuple(columns["reference"]), tuple(columns["context"]))
        with self._guard:
            if self._batch is not None and self._batch[0] == key:
                return self._batch[1]
        breakdowns = self.score(*key)
        with self._guard:
            self._batch = (key, breakdowns)
        return breakdowns


def completion_text(completion: Any) -> str:
    """The model's output: a string as given; a conversational completion (a list of messages) is its assistant
    messages' content joined (content given as parts: their "text" parts). A tokenizer whose response schema
    moves <think> into a separate field would break the format check: FIRES's Qwen2.5-VL has none."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    texts = []
    for message in completion:
        if message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content") or ""
        if not isinstance(content, str):
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type", "text") == "text")
        texts.append(content)
    return "\n".join(texts)


# --------------------------------------------------------------------------- harness train fires-reward

KEYS = ("completion", "reference", "context")
SHOWN = ("reward", "format_ok", "rouge_l", "diff_epitome", "support_skill")


def read_rows(path: Path) -> list[dict[str, str]]:
    """The JSONL rows {"completion", "reference", "context"}; any problem is one HarnessError naming file:line."""
    from baselines.trainkit import jsonl_objects

    rows = [{"line": number, **{k: row[k] for k in KEYS}} for number, _, row in jsonl_objects(path, KEYS, (str,), "string")]
    if not rows:
        raise HarnessError(f"{path}: no lines to score (empty file).")
    return rows


def means(breakdowns: Sequence[RewardBreakdown]) -> dict[str, float | None]:
    """reward over all lines, format_ok as the share of ok lines, the others over the lines where computed."""
    out: dict[str, float | None] = {}
    for key in SHOWN:
        values = [float(getattr(b, key)) for b in breakdowns if getattr(b, key) is not None]
        out[key] = sum(values) / len(values) if values else None
    return out


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


@click.command("fires-reward")
@click.option("--input", "input_file", type=click.Path(path_type=Path), required=True,
              help='JSONL file, one {"completion", "reference", "context"} per line.')
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, then one with the means.")
@click.option("--no-support-skill", is_flag=True, help="Without the support-skill reward (the w/o-SSR ablation): no EPITOME classifiers needed.")
def fires_reward(input_file: Path, as_json: bool, no_support_skill: bool) -> None:
    """Score completions with the FIRES GRPO reward (format, ROUGE-L, support skill) and print each line's parts."""
    rows = read_rows(input_file)
    reward = FiresReward(support_skill=not no_support_skill)
    breakdowns = reward.score([r["completion"] for r in rows], [r["reference"] for r in rows], [r["context"] for r in rows])
    mean = means(breakdowns)
    if as_json:
        for row, b in zip(rows, breakdowns):
            click.echo(json.dumps({"line": row["line"], **{k: getattr(b, k) for k in SHOWN}}))
        click.echo(json.dumps({"mean": mean, "n": len(rows)}))
        return
    header = ("line",) + SHOWN
    table = [[str(row["line"])] + [_cell(getattr(b, k)) for k in SHOWN] for row, b in zip(rows, breakdowns)]
    table.append([f"mean ({len(rows)})"] + [_cell(mean[k]) for k in SHOWN])
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]
    click.echo("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for r in table:
        click.echo("  ".join(c.rjust(w) for c, w in zip(r, widths)))
