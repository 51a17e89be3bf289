"""UnifiReward (COMPEER, "RL with UnifiReward" and Figure 4): a generative reward model that judges a supporter's
output in one multi-turn conversation - each of the three reasoning steps in turn, then the response against
the reference - and whose verdicts are parsed into a scalar reward.

The judge conversation (our wording; the paper's prompts are not public), one user turn per round:

    round 1-3   the dialogue so far and the supporter's step k  ->  "True" | "False"
    round 4     the supporter's response and the reference      ->  "better" | "worse" | "equal" | "neither"

Each round's request holds the earlier rounds and the judge's own earlier verdicts (the "multi-turn evaluation"
that lets a later verdict see the earlier ones). Variants (`kind`): `unified` (all four rounds), `prm` (the
three step rounds only) and `orm` (the response round only), for COMPEER Table 1's comparison.

The scalar reward (the paper's three criteria):
- each step: +1 when judged True, -1 when False;
- the response: +1 when it matches or beats the reference ("better" or "equal"), -1 otherwise ("worse", "neither");
- completeness: +1 when the output has all three steps and a response, -1 when any is missing.
A step that is missing from the output is not asked and scores -1; a missing response scores -1. A verdict
that cannot be read scores -1 too (a reward model that cannot say an answer is right does not reward it) and
is counted (`Judged.unreadable`), never silently 0. `unified` ranges over [-5, 5], `prm` [-4, 4], `orm` [-2, 2].

Training data (`sft_rows`): one prompt-completion example per round, the earlier rounds (with the annotated
verdicts) in the prompt and the round's verdict as the completion, so the loss is eq. 4's per-round
cross-entropy of the verdict given the conversation so far.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Sequence

from harness.contract import ChatRequest, GenerationConfig, Message, ModelOutput, Turn
from harness.errors import HarnessError

from . import data

Kind = Literal["unified", "prm", "orm"]
KINDS = ("unified", "prm", "orm")
PROMPT_VERSION = "unifireward-v1"
STEP_NAMES = ("conversation history analysis", "emotional state analysis", "support strategy analysis")
VERDICTS = {"model_better": "better", "both_good": "equal", "original_better": "worse", "neither": "neither"}
GOOD_RESPONSE = ("model_better", "both_good")  # "matches or outperforms the reference"
Answer = Callable[[Sequence[ChatRequest]], list[ModelOutput]]

SYSTEM = (
    "You review the work of an emotional-support counsellor. The counsellor reasons in three steps before replying: "
    "(1) an analysis of the conversation history - the seeker's core issue and the stage of support (exploration, "
    "comforting or action); (2) the seeker's emotional state - sentiment, emotion and intensity; (3) the support "
    "strategy to use. You judge one thing per message. For a reasoning step answer only True (the step is accurate "
    "and fits the conversation) or False. For a response answer only one word: better (the counsellor's response is "
    "better than the reference), equal (both are about equally good), worse (the reference is better) or neither "
    "(neither is acceptable)."
)


def transcript(history: Sequence[Turn]) -> str:
    return "\n".join(f"{t.speaker}: {t.text}" for t in history)


def step_question(k: int, step: str, history: Sequence[Turn] | None) -> str:
    head = f"The conversation so far:\n{transcript(history)}\n\n" if history is not None else ""
    return f"{head}Step {k + 1} ({STEP_NAMES[k]}):\n{step}\n\nIs this step correct? Answer True or False."


def response_question(response: str, reference: str, history: Sequence[Turn] | None) -> str:
    head = f"The conversation so far:\n{transcript(history)}\n\n" if history is not None else ""
    return (f"{head}The counsellor's response:\n{response}\n\nThe reference response:\n{reference}\n\n"
            "Compare them. Answer better, equal, worse or neither.")


@dataclass
class Item:
    """What the judge sees of one output: the dialogue, the output's steps (None: missing) and response."""

    history: Sequence[Turn]
    steps: Sequence[str | None]
    response: str | None
    reference: str


def questions(item: Item, kind: Kind) -> list[tuple[str, str]]:
    """(aspect, question) per round the judge is asked, in order; the history goes in the first one only."""
    rounds: list[tuple[str, str]] = []
    if kind in ("unified", "prm"):
        for k, step in enumerate(item.steps):
            if step:
                rounds.append((f"step{k + 1}", step_question(k, step, item.history if not rounds else None)))
    if kind in ("unified", "orm") and item.response:
        rounds.append(("response", response_question(item.response, item.reference, item.history if not rounds else None)))
    return rounds


def conversation(rounds: Sequence[tuple[str, str]], answers: Sequence[str]) -> list[Message]:
    """The judge conversation up to the next question: system, then question / verdict pairs, then the question."""
    messages = [Message(role="system", content=SYSTEM)]
    for (aspect, question), answer in zip(rounds, list(answers) + [None]):
        messages.append(Message(role="user", content=question))
        if answer is not None:
            messages.append(Message(role="assistant", content=answer))
    return messages


# --------------------------------------------------------------------------- verdicts

_TRUE = re.compile(r"^\W*(true|yes|correct|right|正确|对|是)\b", re.IGNORECASE)
_FALSE = re.compile(r"^\W*(false|no|incorrect|wrong|错误|不正确|错|否)\b", re.IGNORECASE)
_PREF = {"better": "model_better", "equal": "both_good", "worse": "original_better", "neither": "neither",
         "更好": "model_better", "相当": "both_good", "更差": "original_better", "都不": "neither"}


def parse_step(text: str) -> bool | None:
    """True / False from a verdict's first word (Chinese 正确 / 错误 too); None when it says neither."""
    t = (text or "").strip()
    t = re.sub(r"^(answer|verdict|judgement|judgment)\s*[:：]\s*", "", t, flags=re.IGNORECASE)
    if _TRUE.match(t) and not _FALSE.match(t):
        return True
    if _FALSE.match(t):
        return False
    return None


def parse_preference(text: str) -> str | None:
    t = (text or "").strip().lower()
    t = re.sub(r"^(answer|verdict|judgement|judgment)\s*[:：]\s*", "", t)
    for word, preference in _PREF.items():
        if t.startswith(word) or re.match(rf"^\W*{re.escape(word)}\b", t):
            return preference
    return None


@dataclass
class Judged:
    """One output's verdicts, raw answers and reward."""

    steps: list[bool | None]  # per step: the verdict (None: missing from the output, or unreadable)
    preference: str | None
    complete: bool
    reward: float
    raw: dict[str, str] = field(default_factory=dict)
    unreadable: int = 0


def reward_of(steps: Sequence[bool | None], preference: str | None, complete: bool, kind: Kind) -> float:
    total = 0.0
    if kind in ("unified", "prm"):
        total += sum(1.0 if s is True else -1.0 for s in steps)
    if kind in ("unified", "orm"):
        total += 1.0 if preference in GOOD_RESPONSE else -1.0
    if kind == "unified":
        total += 1.0 if complete else -1.0
    return total


def judge(items: Sequence[Item], answer: Answer, kind: Kind = "unified", max_tokens: int = 8) -> list[Judged]:
    """Every item's rounds, asked round by round: all items' k-th round in one batch (the judge's own earlier
    verdicts in each conversation), so a batch of outputs costs four model calls of len(items) requests."""
    if kind not in KINDS:
        raise HarnessError(f"UnifiReward: unknown kind '{kind}'; one of {', '.join(KINDS)}.")
    plans = [questions(item, kind) for item in items]
    answers: list[list[str]] = [[] for _ in items]
    generation = GenerationConfig(temperature=0.0, max_tokens=max_tokens)
    for k in range(max((len(p) for p in plans), default=0)):
        todo = [i for i, plan in enumerate(plans) if len(plan) > k]
        requests = [ChatRequest(messages=tuple(conversation(plans[i][: k + 1], answers[i])), generation=generation) for i in todo]
        for i, output in zip(todo, answer(requests)):
            answers[i].append(output.text.strip())
    out = []
    for item, plan, said in zip(items, plans, answers):
        raw = {aspect: text for (aspect, _), text in zip(plan, said)}
        steps: list[bool | None] = []
        unreadable = 0
        if kind in ("unified", "prm"):
            for k in range(data.N_STEPS):
                text = raw.get(f"step{k + 1}")
                verdict = parse_step(text) if text is not None else None
                unreadable += text is not None and verdict is None
                steps.append(verdict)
        preference = None
        if "response" in raw:
            preference = parse_preference(raw["response"])
            unreadable += preference is None
        complete = all(s for s in item.steps) and len(item.steps) == data.N_STEPS and bool(item.response)
        out.append(Judged(steps, preference, complete, reward_of(steps, preference, complete, kind), raw, unreadable))
    return out


# --------------------------------------------------------------------------- training data


def sft_rows(rows: Sequence[data.CerRow], kind: Kind = "unified") -> tuple[list[dict[str, Any]], int]:
    """Prompt-completion examples (one per round) from annotated rows, and how many rows had no final labels
    (left out). The verdicts in the prompts are the annotated ones (teacher forcing)."""
    examples, unlabelled = [], 0
    for row in rows:
        labels = row.annotations
        if (kind != "orm" and labels.final_steps is None) or (kind != "prm" and labels.final_preference is None):
            unlabelled += 1
            continue
        item = Item(row.history, row.steps, row.response, row.original)
        plan = questions(item, kind)
        truth = {f"step{k + 1}": str(bool(v)) for k, v in enumerate(labels.final_steps or [])}
        if labels.final_preference is not None:
            truth["response"] = VERDICTS[labels.final_preference]
        said: list[str] = []
        for k, (aspect, _) in enumerate(plan):
            messages = conversation(plan[: k + 1], said)
            examples.append({"prompt": [{"role": m.role, "content": m.content} for m in messages],
                             "completion": [{"role": "assistant", "content": truth[aspect]}]})
            said.append(truth[aspect])
    return examples, unlabelled


# --------------------------------------------------------------------------- evaluation (COMPEER Table 1)


def evaluate(rows: Sequence[data.CerRow], judged: Sequence[Judged], kind: Kind = "unified") -> dict[str, Any]:
    """Per step: weighted-F1 and recall of the False class; the response's four-way label: weighted-F1 and
    accuracy (x100, as Table 1). An unreadable verdict counts as wrong (its own class), never dropped."""
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    report: dict[str, Any] = {"rows": len(rows), "unreadable": sum(j.unreadable for j in judged)}
    for k in range(data.N_STEPS if kind != "orm" else 0):
        pairs = [(r.annotations.final_steps[k], j.steps[k]) for r, j in zip(rows, judged)
                 if r.annotations.final_steps is not None and k < len(j.steps)]
        if not pairs:
            continue
        gold = [str(g) for g, _ in pairs]
        pred = [str(p) if p is not None else "unreadable" for _, p in pairs]
        report[f"step{k + 1}"] = {
            "n": len(pairs),
            "weighted_f1": 100 * f1_score(gold, pred, average="weighted", zero_division=0),
            "false_recall": 100 * recall_score(gold, pred, labels=["False"], average="macro", zero_division=0),
        }
    pairs = [(r.annotations.final_preference, j.preference) for r, j in zip(rows, judged) if r.annotations.final_preference is not None]
    if pairs and kind != "prm":
        gold = [g for g, _ in pairs]
        pred = [p or "unreadable" for _, p in pairs]
        report["response"] = {"n": len(pairs), "weighted_f1": 100 * f1_score(gold, pred, average="weighted", zero_division=0),
                              "accuracy": 100 * accuracy_score(gold, pred)}
    return report
