"""ESC-Eval's seven judge dimensions: the harness's own rubrics, judge requests and a strict score parser.

ESC-Eval (arXiv 2406.14952) rates a whole role-play transcript on seven dimensions, each 0-4. The
paper's names and the code names used in ESC-RANK's adapters and score files (ESC-Eval issue #4):
fluency = fluency, expression = diversity, empathy = empathic, information = suggestion,
humanoid = human, skill = tech, overall = overall.

The rubrics below are written for this harness from the paper's dimension definitions; they are not
ESC-RANK's training prompts, so a judge prompted with them is "an LLM judge with the ESC-Eval
dimensions", not ESC-RANK. Change any text here and the golden digest test fails: bump
PROMPT_VERSION, since cached judge answers and recorded runs depend on the exact prompt.

Parsing. The original scorer (score.py) loops over the labels "0".."4" in that order and takes the
first one that occurs *anywhere* in the output, so it returns the smallest digit 0-4 present: "10"
reads as 0, "Score: 3 (scale 0-4)" as 0; with no digit 0-4 it stores -1, which a plain mean then
counts as a score. `parse_score` instead accepts an explicit score ("Score: N", "评分：N", "N/4",
"N out of 4") or a lone number as the whole answer, and returns None (missing, never 0) for anything
outside 0-4, non-integers, or conflicting candidates. `original_parse` keeps the old behaviour for
comparison only.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from typing import Any

from harness.contract import ChatRequest, DialogueTurn, GenerationConfig, Grader, Message, SampleRecord
from harness.errors import HarnessError

PROMPT_VERSION = "esc-eval-judge/1"

# paper name -> ESC-Eval code name, in the paper's order
DIMENSIONS: dict[str, str] = {
    "fluency": "fluency",
    "expression": "diversity",
    "empathy": "empathic",
    "information": "suggestion",
    "humanoid": "human",
    "skill": "tech",
    "overall": "overall",
}
CODE_TO_PAPER: dict[str, str] = {code: paper for paper, code in DIMENSIONS.items()}
LANGUAGES = ("en", "zh")
_LANGUAGE_ALIASES = {"en": "en", "english": "en", "zh": "zh", "chinese": "zh", "cn": "zh", "ch": "zh"}


@dataclass(frozen=True)
class Rubric:
    title: str  # the dimension's name as the judge reads it
    definition: str  # what is rated
    levels: tuple[str, str, str, str, str]  # meaning of 0, 1, 2, 3, 4


RUBRICS: dict[str, dict[str, Rubric]] = {
    "en": {
        "fluency": Rubric(
            "Fluency",
            "Whether each supporter reply reads naturally and is complete, and whether the replies follow "
            "on logically from what the seeker said, across the whole conversation. A reply cut off "
            "mid-sentence, garbled, or in a language other than the seeker's is a fluency problem.",
            (
                "The supporter's replies are mostly unreadable or make no sense.",
                ("Replies are often broken or cut off AND the conversation does not hang together: replies "
                "ignore or misread what the seeker said."),
                ("One of the two kinds of problem: either some replies are broken, cut off or in the wrong "
                "language, or some replies do not follow from the seeker's messages."),
                "Replies are clear, complete and on topic; at most small slips.",
                ("Every reply is well formed and the dialogue flows naturally, each reply picking up exactly "
                "what the seeker just said."),
            ),
        ),
        "expression": Rubric(
            "Expression",
            "How varied the supporter's language is, in form (sentence structures, openings, length, ways "
            "of asking and reflecting) and in content (angles, topics, ideas), instead of repeating one "
            "template turn after turn.",
            (
                "The supporter's replies are mostly unreadable or make no sense.",
                ("Repetitive in both form and content: the same phrasing and the same points come back in "
                "turn after turn."),
                ("Varied in one respect only: either the wording is formulaic or the content keeps circling "
                "the same points."),
                "Reasonably varied wording and content; some repetition.",
                ("Fresh throughout: wording, structure and content adapt to each turn, with no noticeable "
                "template."),
            ),
        ),
        "empathy": Rubric(
            "Empathy",
            "Whether the supporter recognises and soothes the seeker's feelings, and helps the seeker make "
            "sense of those feelings and of the situation behind them.",
            (
                ("The supporter says something hurtful, dismissive or blaming that is likely to make the "
                "seeker feel worse."),
                "Neither emotional comfort nor any help in understanding the feelings or the situation.",
                ("Only one of the two: comfort without helping the seeker understand, or analysis without "
                "warmth."),
                "Both comfort and some help in understanding the situation, adequately done.",
                ("Warm and personal, like a caring friend: names the feelings accurately, validates them, and "
                "helps the seeker see what lies behind them."),
            ),
        ),
        "information": Rubric(
            "Information",
            "How useful the supporter's suggestions and information are: relevant to the seeker's actual "
            "problem, concrete and feasible. Consider both how many suggestions are given over the "
            "conversation and how many of them are sound.",
            (
                "Suggestions that are wrong or could harm the seeker.",
                "No suggestions, or none of them would help.",
                "Few useful suggestions: most are generic or miss the core of the problem.",
                "Several sound, relevant suggestions, alongside some generic or weak ones.",
                "Many concrete, feasible suggestions, all well matched to the seeker's problem.",
            ),
        ),
        "humanoid": Rubric(
            "Humanoid",
            "How much the supporter sounds like a caring person rather than an AI system. Machine-like "
            "signs: saying it is an AI or a language model, report-style numbered lists and headings, "
            "canned disclaimers, stiff template phrases.",
            (
                "The supporter's replies are mostly unreadable or make no sense.",
                ("Plainly machine-like: it says it is an AI or language model, or answers with formatted "
                "lists and templates throughout."),
                "Several clear machine-like signs (more than two).",
                "One or two machine-like signs; otherwise it talks like a person.",
                "Talks like a person throughout; no machine-like sign.",
            ),
        ),
        "skill": Rubric(
            "Skill",
            "The supporter's emotional-support skills. Count which of these five it shows: (a) comforting "
            "the seeker's emotions; (b) giving effective suggestions; (c) companionship, encouragement or "
            "appreciation; (d) responding to every question or concern the seeker raised; (e) recommending "
            "professional help where the seeker's distress is serious (e.g. signs of a mental-health "
            "condition or self-harm), or another outstanding support skill.",
            (
                "At most one of the five skills.",
                "Two of the five skills.",
                "Three of the five skills.",
                "Four of the five skills.",
                "All five skills.",
            ),
        ),
        "overall": Rubric(
            "Overall",
            "Imagine you are the distressed person in this conversation. How much would you want to talk "
            "to this supporter?",
            (
                "I would not want to talk to it again.",
                "Indifferent: it neither helped nor bothered me.",
                "Acceptable: I might use it again.",
                "I would turn to it when I feel stressed.",
                "I would use it myself and recommend it to friends.",
            ),
        ),
    },
    "zh": {
        "fluency": Rubric(
            "流畅性",
            "支持者的每条回复是否自然、完整，以及整段对话中各条回复是否顺着求助者的话合乎逻辑地展开。"
            "回复中途截断、语句混乱，或使用了与求助者不同的语言，都属于流畅性问题。",
            (
                "支持者的回复大多无法读懂或毫无意义。",
                "回复经常残缺或截断，并且对话前后不连贯：回复忽视或误解了求助者的话。",
                "只存在其中一类问题：要么部分回复残缺、截断或语言不对，要么部分回复没有接上求助者的话。",
                "回复清楚、完整、切题；至多有小瑕疵。",
                "每条回复都表达完好，对话自然流畅，每条回复都准确承接求助者刚说的内容。",
            ),
        ),
        "expression": Rubric(
            "表达多样性",
            "支持者的语言是否丰富多样：形式上（句式、开头方式、长短、提问和回应的方式）与内容上（角度、话题、想法），"
            "而不是每一轮都套用同一个模板。",
            (
                "支持者的回复大多无法读懂或毫无意义。",
                "形式和内容都很重复：同样的说法、同样的观点一轮又一轮地出现。",
                "只在一个方面有变化：要么措辞套路化，要么内容总在同几个点上打转。",
                "措辞和内容较为多样；有少量重复。",
                "自始至终都很新鲜：措辞、结构和内容随每一轮调整，看不出模板痕迹。",
            ),
        ),
        "empathy": Rubric(
            "共情",
            "支持者是否识别并安抚求助者的情绪，并帮助求助者理解这些情绪以及背后的处境。",
            (
                "支持者说了伤人、轻视或指责的话，可能让求助者感觉更糟。",
                "既没有情绪上的安慰，也没有帮助求助者理解自己的情绪或处境。",
                "只做到其中一项：有安慰但没有帮助理解，或有分析但缺乏温度。",
                "既有安慰，也在一定程度上帮助求助者理解处境，做得合格。",
                "温暖而贴心，像一位关心人的朋友：准确说出对方的感受并给予认可，帮助求助者看清感受背后的原因。",
            ),
        ),
        "information": Rubric(
            "信息与建议",
            "支持者给出的建议和信息是否有用：是否针对求助者的实际问题、是否具体可行。"
            "既要考虑整段对话中建议的数量，也要考虑其中靠谱的有多少。",
            (
                "建议是错误的，或可能对求助者造成伤害。",
                "没有建议，或者所有建议都没有帮助。",
                "有用的建议很少：大多空泛，或没有触及问题的核心。",
                "有若干靠谱、切题的建议，同时也夹杂一些空泛或薄弱的建议。",
                "有许多具体可行的建议，且都与求助者的问题高度契合。",
            ),
        ),
        "humanoid": Rubric(
            "拟人性",
            "支持者说话有多像一个关心人的真人，而不像一个人工智能系统。机器化的迹象包括：自称人工智能或语言模型、"
            "报告式的编号列表和小标题、套话式的免责声明、生硬的模板语句。",
            (
                "支持者的回复大多无法读懂或毫无意义。",
                "明显像机器：自称人工智能或语言模型，或通篇使用格式化列表和模板作答。",
                "有多处明显的机器化迹象（超过两处）。",
                "有一到两处机器化迹象；其余部分像真人说话。",
                "自始至终像真人说话；没有机器化迹象。",
            ),
        ),
        "skill": Rubric(
            "支持技巧",
            "支持者的情感支持技巧。数一数下面五项中它做到了几项：(a) 安抚求助者的情绪；(b) 给出有效的建议；"
            "(c) 陪伴、鼓励或肯定；(d) 回应了求助者提出的每一个问题或担忧；"
            "(e) 在求助者困扰严重时（如有心理疾病或自伤的迹象）建议寻求专业帮助，或展现其他突出的支持技巧。",
            (
                "五项中至多做到一项。",
                "五项中做到两项。",
                "五项中做到三项。",
                "五项中做到四项。",
                "五项全部做到。",
            ),
        ),
        "overall": Rubric(
            "总体评价",
            "设想你就是这段对话中正在经历困扰的人。你有多愿意和这位支持者交谈？",
            (
                "我不想再和它交谈。",
                "无所谓：它既没帮到我，也没让我反感。",
                "还可以：我也许会再用它。",
                "我感到有压力时会找它聊聊。",
                "我自己会用，还会推荐给朋友。",
            ),
        ),
    },
}

_SPEAKERS = {"en": {"seeker": "Seeker", "supporter": "Supporter"}, "zh": {"seeker": "求助者", "supporter": "支持者"}}
_SEPARATOR = {"en": ": ", "zh": "："}

_TEMPLATE = {
    "en": (
        "You are rating an emotional-support conversation between a seeker (a person in distress) and a "
        "supporter (the system being evaluated). Rate only the supporter, and only on the dimension below.\n\n"
        "Dimension: {title}\n{definition}\n\nScale:\n{levels}\n\nConversation:\n{transcript}\n\n"
        "Give the supporter's {title} score as one whole number from 0 to 4. Answer with one line in exactly "
        "this form and nothing else:\nScore: N"
    ),
    "zh": (
        "你将评估一段情感支持对话：求助者是一位正在经历困扰的人，支持者是被评估的系统。只对支持者打分，"
        "并且只看下面这一个维度。\n\n维度：{title}\n{definition}\n\n评分标准：\n{levels}\n\n对话：\n{transcript}\n\n"
        "请给出支持者在「{title}」上的得分，为 0 到 4 之间的一个整数。只回答一行，严格按下面的格式，"
        "不要写其他内容：\n评分：N"
    ),
}


# --------------------------------------------------------------------------- names


def normalize_language(language: str) -> str:
    found = _LANGUAGE_ALIASES.get(language.strip().lower())
    if found is None:
        raise HarnessError(f"unknown ESC-Eval language '{language}'; use one of: en, zh.")
    return found


def normalize_dimension(dimension: str) -> str:
    """Paper name for a paper or code name ("empathic" -> "empathy")."""
    name = dimension.strip().lower()
    if name in DIMENSIONS:
        return name
    if name in CODE_TO_PAPER:
        return CODE_TO_PAPER[name]
    raise HarnessError(
        f"unknown ESC-Eval dimension '{dimension}'; use one of: {', '.join(DIMENSIONS)} "
        f"(or the code names {', '.join(CODE_TO_PAPER)})."
    )


# --------------------------------------------------------------------------- prompts


def render_transcript(turns: Sequence[DialogueTurn], language: str) -> str:
    """One line per turn, "Seeker: ..." / "Supporter: ..." (EN) or "求助者：..." / "支持者：..." (ZH).
    The opening greeting is kept: the judge sees the whole dialogue, as ESC-RANK did."""
    language = normalize_language(language)
    lines = []
    for number, turn in enumerate(turns):
        speaker = _SPEAKERS[language].get(turn.role)
        if speaker is None:
            raise HarnessError(f"turn {number}: role '{turn.role}' is neither 'seeker' nor 'supporter'; fix the dialogue record.")
        lines.append(f"{speaker}{_SEPARATOR[language]}{turn.text.strip()}")
    return "\n".join(lines)


def judge_prompt(dimension: str, turns: Sequence[DialogueTurn], language: str) -> str:
    dimension, language = normalize_dimension(dimension), normalize_language(language)
    if not turns:
        raise HarnessError("cannot judge an empty dialogue; the dialogue record has no turns.")
    rubric = RUBRICS[language][dimension]
    levels = "\n".join(f"{score}{_SEPARATOR[language]}{text}" for score, text in enumerate(rubric.levels))
    return _TEMPLATE[language].format(
        title=rubric.title, definition=rubric.definition, levels=levels, transcript=render_transcript(turns, language)
    )


def judge_request(dimension: str, turns: Sequence[DialogueTurn], language: str, max_tokens: int = 32) -> ChatRequest:
    """One user message (no system prompt: some judges, e.g. ESC-RANK's InternLM2 chat, were trained
    without one), greedy decoding; the answer should be "Score: N" / "评分：N"."""
    return ChatRequest(
        messages=(Message(role="user", content=judge_prompt(dimension, turns, language)),),
        generation=GenerationConfig(temperature=0.0, top_p=1.0, max_tokens=max_tokens),
    )


def prompts_digest() -> str:
    """sha256 over every rubric and template: the golden test pins it, so a prompt edit is deliberate."""
    digest = hashlib.sha256(PROMPT_VERSION.encode())
    for language in LANGUAGES:
        digest.update(_TEMPLATE[language].encode())
        for dimension in DIMENSIONS:
            rubric = RUBRICS[language][dimension]
            digest.update("\x00".join((rubric.title, rubric.definition, *rubric.levels)).encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------- parsing

_NUMBER = r"(-?\d+(?:\.\d+)?)"
_RANGE = rf"(?:\s*(?:-|~|to|到|至)\s*{_NUMBER})?"  # "Score: 3-4": a range is two candidates
_EXPLICIT = (
    # "Score: 3", "score is 3", "Rating = 3", "score (0-4): 3", "评分：3", "得分为 3"
    re.compile(
        rf"(?:score|rating|评分|得分|分数|打分)\s*(?:\([^)]*\))?\s*(?:is|of|为|是)?\s*[:=]?\s*{_NUMBER}{_RANGE}",
        re.IGNORECASE,
    ),
    # "3/4", "3 / 4", "3 out of 4"
    re.compile(rf"{_NUMBER}\s*(?:/|out of)\s*4(?![\d.])", re.IGNORECASE),
)
_LONE = re.compile(rf"^\W*{_NUMBER}\s*分?\W*$")  # "3", "3.", "**3**", "3分", "(3)"
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)


def _as_score(number: str) -> int | None:
    value = float(number)
    if value != int(value) or not 0 <= value <= 4:
        return None
    return int(value)


def _explicit_candidates(text: str) -> list[str]:
    found: list[str] = []
    for pattern in _EXPLICIT:
        for match in pattern.finditer(text):
            found.extend(g for g in match.groups() if g is not None)
    return found


def parse_score(text: str | None) -> int | None:
    """The judge's 0-4 score, or None when the answer does not state one unambiguously.

    Explicit forms first ("Score: N", "评分：N", "N/4", "N out of 4"); else the whole answer, or its first
    line, must be a lone number. Any candidate that is not an integer in 0-4, or candidates that disagree, give None:
    an unparseable answer is a missing score, never a 0.
    """
    if not text:
        return None
    # NFKC folds full-width digits and colons ("评分：３" -> "评分:3"); markdown emphasis is noise
    clean = unicodedata.normalize("NFKC", _THINK.sub(" ", text)).replace("*", "").replace("_", " ").strip()
    candidates = _explicit_candidates(clean)
    if not candidates:
        # the whole answer, or its first line followed by an explanation ("3\n\nThe replies are ...")
        lone = _LONE.match(clean) or _LONE.match(clean.split("\n", 1)[0])
        candidates = [lone.group(1)] if lone else []
    scores = {_as_score(c) for c in candidates}
    if len(scores) != 1 or None in scores:
        return None
    return scores.pop()


def original_parse(text: str) -> int:
    """ESC-Eval's score.py, kept for comparison and documentation only: the first label of
    "0".."4", in that order, that occurs anywhere in the output (i.e. the smallest digit 0-4
    present), else -1."""
    for label in ("0", "1", "2", "3", "4"):
        if label in text:
            return int(label)
    return -1


# --------------------------------------------------------------------------- the judge as a grader


class ESCEvalJudge(Grader):
    """The `judge` role scores a finished dialogue on the seven dimensions, one request each; the values
    land in the record's outcome as {"judge": {dimension: 0-4 or None}, "judge_raw": {...}}."""

    name = "judge"
    role = "judge"
    prompt_version = PROMPT_VERSION

    def requests(self, item: SampleRecord) -> dict[str, ChatRequest]:
        language = item.labels.get("language") or item.outcome.get("language") or "en"
        return {dimension: judge_request(dimension, item.dialogue or [], str(language)) for dimension in DIMENSIONS}

    def parse(self, aspect: str, answer: str) -> int | None:
        return parse_score(answer)

    def outcome(self, values: dict[str, Any], raw: dict[str, str]) -> dict[str, Any]:
        return {"judge": values, "judge_raw": raw, "judge_prompts": PROMPT_VERSION}


JUDGE = ESCEvalJudge()
