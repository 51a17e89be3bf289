"""Published SAGE result files: read, rescore, and convert them to the harness's dialogue records.

The SAGE repository (Tencent/digitalhuman, SAGE/dataset/...) ships one JSON-lines file per model under
test, DeepSeek-V3 playing the sentient agent. Each line is one scenario:
`{id, emo_point, emo_state, target, player, scene, character, topic, task, history}` where `history`
alternates `{"role": "user"|"assistant", "content": ...}`; the agent's ("user") turns carry
`emotion-point` (its emotion after reading the previous reply), and all but the first carry `thinking`
(how it plans its reply) and `planning` (its assessment of the reply: `activity` = inner thought,
`analyse` = feeling about the reply, `TargetCompletion`, `content` = what it thinks the reply meant,
`change` = the emotion change). Some model turns ("assistant") carry `think`, which in the published
files is always an exact copy of `content`.

Leaderboard (score = mean final emotion, success = final >= 100, failure = final < 10) is rounded half
up to one decimal: Python's `round()` would print 37.5, 33.2 and 28.9 for DeepSeek-V3, Llama3.3-70B and
o1 (binary floats and half-to-even), not the published 37.6, 33.3 and 29.0.
"""
from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.contract import DialogueTurn
from harness.errors import DataError

SUCCESS_AT = 100  # final emotion >= 100: the agent's need was met
FAILURE_BELOW = 10  # final emotion < 10: the agent gave up

End = Literal["success", "failure", "goodbye", "turn_limit"]

# The published leaderboard (SAGE README / paper), by result file: name, score, success, failure.
PUBLISHED: dict[str, tuple[str, float, int, int]] = {
    "gpt-4.1_result.jsonl": ("GPT-4.1", 68.2, 35, 13),
    "claude3.7_result.jsonl": ("Claude3.7", 54.8, 19, 24),
    "deepseek-v3-1227_result.jsonl": ("DeepSeek-V3", 37.6, 5, 39),
    "llama3.3-70b_result.jsonl": ("Llama3.3-70B", 33.3, 7, 47),
    "gpt-4o-0808_result.jsonl": ("GPT-4o", 31.8, 7, 51),
    "openai-o1_result.jsonl": ("o1", 29.0, 5, 51),
    "qwen2.5-72b_result.jsonl": ("Qwen2.5-72B", 19.1, 4, 70),
}


# --------------------------------------------------------------------------- the published line


class PublishedTurn(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    role: Literal["user", "assistant"]
    content: str
    emotion_point: int | None = Field(default=None, alias="emotion-point")
    thinking: str | None = None
    planning: dict[str, Any] | None = None
    think: str | None = None


class PublishedResult(BaseModel):
    """One line of a published `*_result.jsonl`."""

    model_config = ConfigDict(extra="allow")
    id: str
    emo_point: int  # final emotion
    emo_state: str = ""  # band of the final emotion: Emotion-S/A/B/C/F
    topic: str = ""
    task: str = ""  # the agent's hidden need
    character: str = ""  # personality type
    history: list[PublishedTurn]


class RescoreResult(BaseModel):
    """What `harness sage rescore --json` prints per file."""

    n: int
    score: float  # mean final emotion, rounded half up to 1 decimal as the leaderboard prints it
    score_exact: float  # the same mean, unrounded
    success: int
    failure: int
    ends: dict[str, int]  # success / failure / goodbye / turn_limit counts


# --------------------------------------------------------------------------- reading


def read_results(path: str | Path) -> list[PublishedResult]:
    """Every scenario of a published result file, in file order.

    Lines are split on "\\n" only: `str.splitlines` also breaks on U+2028, U+0085 and friends, which
    occur inside the dialogue texts, and would tear records apart.
    """
    return [result for _, result in _numbered_results(path)]


def _numbered_results(path: str | Path) -> list[tuple[int, PublishedResult]]:
    """(line number, scenario) of every result line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; give a SAGE *_result.jsonl file (e.g. $ESC_HARNESS_DATA/sage/reference/).") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as UTF-8 text ({exc}); give a SAGE *_result.jsonl file.") from None
    results = [(number, _parse_line(path, number, line)) for number, line in enumerate(text.split("\n"), 1) if line.strip()]
    if not results:
        raise DataError(f"{path}: holds no result lines; give a SAGE *_result.jsonl file.")
    return results


def _parse_line(path: Path, number: int, line: str) -> PublishedResult:
    where = f"{path}:{number}"
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not a JSON object ({exc.msg} at column {exc.colno}); fix or remove the line.") from None
    if not isinstance(raw, dict):
        raise DataError(f"{where}: expected a JSON object, found {type(raw).__name__}; fix or remove the line.")
    try:
        result = PublishedResult.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise DataError(f"{where}: field '{field}': {first['msg'].lower()}; is this a SAGE result file?") from None
    _check_consistent(where, result)
    return result


def _check_consistent(where: str, result: PublishedResult) -> None:
    """The final emotion must be the agent's last recorded emotion: a rescore must not silently mix them."""
    trajectory = emotion_trajectory(result)
    if not trajectory:
        raise DataError(f"{where}: no agent turn carries an 'emotion-point'; is this a SAGE result file?")
    if trajectory[-1] != result.emo_point:
        raise DataError(
            f"{where}: emo_point {result.emo_point} differs from the last agent emotion-point {trajectory[-1]}; "
            "the file is inconsistent, re-fetch it."
        )


# --------------------------------------------------------------------------- scoring


def emotion_trajectory(result: PublishedResult) -> list[int]:
    """The agent's emotion after each of its turns (the first is the starting 40)."""
    return [t.emotion_point for t in result.history if t.role == "user" and t.emotion_point is not None]


def end_reason(result: PublishedResult) -> End:
    """Why the dialogue stopped.

    The thresholds decide first. Otherwise the released loop lets the model reply after every agent
    turn unless the dialogue is over, so a history that ends on the agent's turn means the agent left
    (said goodbye), and one that ends on the model's reply ran out of turns. In the seven published
    files this gives 322 turn_limit dialogues (all with 10 agent turns) and 1 goodbye (Qwen2.5-72B,
    "...拜拜。" at emotion 30).
    """
    if result.emo_point >= SUCCESS_AT:
        return "success"
    if result.emo_point < FAILURE_BELOW:
        return "failure"
    return "goodbye" if result.history[-1].role == "user" else "turn_limit"


def half_up(value: Fraction, places: int = 1) -> float:
    """Round half away from zero on the exact value (the leaderboard's rounding; values here are >= 0)."""
    scale = 10**places
    scaled = value * scale
    rounded = (scaled.numerator * 2 + scaled.denominator) // (2 * scaled.denominator)
    return rounded / scale


def rescore(results: list[PublishedResult]) -> RescoreResult:
    finals = [r.emo_point for r in results]
    mean = Fraction(sum(finals), len(finals))  # exact, so the half-up rounding is right
    ends = {name: 0 for name in ("success", "failure", "goodbye", "turn_limit")}
    for r in results:
        ends[end_reason(r)] += 1
    return RescoreResult(
        n=len(finals),
        score=half_up(mean),
        score_exact=float(mean),
        success=sum(f >= SUCCESS_AT for f in finals),
        failure=sum(f < FAILURE_BELOW for f in finals),
        ends=ends,
    )


def rescore_file(path: str | Path) -> RescoreResult:
    """The leaderboard numbers of one file; a scenario id on two lines is refused (it would count twice)."""
    numbered = _numbered_results(path)
    seen: dict[str, int] = {}  # id -> line number
    for number, result in numbered:
        if result.id in seen:
            raise DataError(f"{path}:{seen[result.id]} and :{number} hold scenario '{result.id}' twice; "
                            "remove the duplicate line or re-fetch the file.")
        seen[result.id] = number
    return rescore([result for _, result in numbered])


# --------------------------------------------------------------------------- harness record shape

_HEADER = re.compile(r"^[^\]\n]{1,20}\]\s*")  # "心理活动]\n": a section label the original's parser left in


def _clean(text: str | None) -> str | None:
    return _HEADER.sub("", text, count=1).strip() if text else None


def band(emotion: int) -> str:
    """The agent's state band (the file's emo_state without "Emotion-")."""
    for letter, floor in (("S", 100), ("A", 70), ("B", 40), ("C", 10)):
        if emotion >= floor:
            return letter
    return "F"


def _reaction(turn: PublishedTurn) -> dict[str, Any]:
    """The agent's assessment of the reply before `turn`: recorded on that reply, as the harness's own
    SAGE dialogues record it (simulators/sage.py), so published and harness runs read alike."""
    planning = turn.planning or {}
    reaction: dict[str, Any] = {}
    for key, source in (("thought", planning.get("activity")), ("feeling", planning.get("analyse"))):
        if isinstance(source, str) and _clean(source):
            reaction[key] = _clean(source)
    if isinstance(planning.get("change"), int):
        reaction["change"] = planning["change"]
    if turn.emotion_point is not None:
        reaction.update(emotion=turn.emotion_point, band=band(turn.emotion_point))
    return reaction


def _seeker_details(turn: PublishedTurn, opening: bool) -> dict[str, Any]:
    details: dict[str, Any] = {} if turn.emotion_point is None else {"emotion": turn.emotion_point}
    if opening:
        details["opening"] = True
    if turn.thinking:
        details["reply_plan"] = turn.thinking  # how the agent planned this reply (the file's `thinking`)
    return details


def _supporter_details(turn: PublishedTurn) -> dict[str, Any]:
    # `think` is a verbatim copy of the reply in every published file; keep it only if it says more
    return {"thinking": turn.think} if turn.think and turn.think != turn.content else {}


def to_dialogue(result: PublishedResult) -> tuple[list[DialogueTurn], dict[str, Any]]:
    """The published dialogue as harness turns and its outcome.

    "assistant" (the model under test) becomes "supporter", "user" (the agent) "seeker". Seeker turns
    carry {"emotion"} ("opening" on the first, "reply_plan" where the file has `thinking`); the agent's
    reaction to a reply ({"thought", "feeling", "change", "emotion", "band"}) sits on that reply. At
    the turn limit the last reply has no reaction: the released code stops before the agent reads it.
    Outcome: {"final_emotion", "end", "trajectory", "rounds", "language"}.
    """
    turns: list[DialogueTurn] = []
    for t in result.history:
        if t.role == "assistant":
            turns.append(DialogueTurn(role="supporter", text=t.content, details=_supporter_details(t)))
            continue
        if turns and turns[-1].role == "supporter":
            turns[-1] = turns[-1].model_copy(update={"details": {**turns[-1].details, **_reaction(t)}})
        turns.append(DialogueTurn(role="seeker", text=t.content, details=_seeker_details(t, opening=not turns)))
    outcome = {
        "final_emotion": result.emo_point,
        "end": end_reason(result),
        "trajectory": emotion_trajectory(result),
        "rounds": sum(t.role == "supporter" for t in turns),
        "language": "zh",  # SAGE's scenarios and agent are Chinese
    }
    return turns, outcome


def model_label(path: str | Path) -> str:
    """Leaderboard name for a published file, else the file name without `_result.jsonl`."""
    name = Path(path).name
    if name in PUBLISHED:
        return PUBLISHED[name][0]
    return re.sub(r"(_result)?\.jsonl?$", "", name)
