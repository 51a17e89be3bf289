"""COMPEER's controllable empathetic reasoning (Wang et al. 2025, "Controllable Empathetic Reasoning Generation
and Annotation" and Figure 1): the output format, its vocabularies, the system prompts that ask for it, and
its parser. Used by the ``prompt=compeer`` mode of the text tasks (`tasks/prompting.py`) and of the dialogue
tasks (`simulators/esc_eval.py`, `simulators/sage.py`).

The format
----------
The paper decomposes the reasoning into three structured steps, each in natural language, then the reply:

1. Conversation history analysis: the seeker's core issue, and the current stage of the support, one of
   ``exploration`` / ``comforting`` / ``action`` - the three phases of ESConv (Liu et al. 2021, "Towards
   Emotional Support Dialog Systems", ACL), which the paper names as the source.
2. Emotional state analysis: the coarse sentiment (``positive`` / ``negative`` / ``neutral``, the paper's
   three), the fine-grained emotion (free text; the paper's examples are "joy", "fear"), and its intensity.
   The paper gives no scale for the intensity; this harness uses three levels, ``low`` / ``medium`` /
   ``high`` (a word a model writes reliably, and as coarse as the sentiment).
3. Support strategy analysis: one of eight predefined types based on Hill's Helping Skills theory (Hill 2020,
   "Helping Skills: Facilitating Exploration, Insight, and Action", APA). The paper names the theory and two
   examples ("progressive questioning", "emotional mapping") but not the list. THE LIST BELOW IS THIS
   HARNESS'S READING OF HILL, NOT THE PAPER'S TEXT: three skills of Hill's exploration stage, three of the
   insight stage, two of the action stage:

   ======================  ===========  ==========================================================
   strategy                Hill stage   what it is (the paper's examples that map to it)
   ======================  ===========  ==========================================================
   open question           exploration  ask an open question that helps the seeker explore
                                        ("progressive questioning")
   restatement             exploration  repeat or paraphrase the seeker's words
   reflection of feelings  exploration  name the feelings the seeker expresses or implies
                                        ("emotional mapping")
   challenge               insight      gently point out a contradiction or an unhelpful belief
   interpretation          insight      offer a new perspective on why the seeker feels or acts so
   self-disclosure         insight      share a relevant experience, or one's own reaction in the
                                        moment (Hill's disclosure and immediacy, one type here)
   information             action       give facts, resources or knowledge the seeker needs
   direct guidance         action       suggest a concrete step the seeker could take
   ======================  ===========  ==========================================================

   Hill's approval-reassurance (ESConv's "Affirmation and Reassurance") is not among the eight in this
   reading; a model that names it gets ``unknown_strategy``.

The answer asked for (the tags of the FIRES-format modes, so `tasks.prompting.parse_thinking_output` splits
it; the three labelled steps inside the thought, as Figure 1 describes them)::

    <think>
    Step 1 (History): Core issue: ... Stage: exploration
    Step 2 (Emotion): Sentiment: negative; Emotion: anxiety; Intensity: high
    Step 3 (Strategy): Strategy: reflection of feelings. Why: ...
    </think>
    <response> ... </response>

Labels and vocabularies are the English ones above in every language (the prompts say so; the reasoning and
the reply are in the conversation's language). COMPEER's data is bilingual, so the parser also accepts a
documented set of Chinese labels and category names (`CHINESE_LABELS`: 步骤1 / 第一步 / 对话历史分析 ...,
核心问题 / 阶段 / 情感倾向 / 情绪 / 强度 / 策略 / 理由, 探索 / 安慰 / 行动, 积极 / 消极 / 中性, 低 / 中 / 高,
开放式提问 / 复述 / 情感反映 ...): they are read like the English ones, are not a format error, and
``details["labels"]`` says which were used ("en", "zh" or "mixed").

The parser
----------
`parse_compeer_output(text)` never raises. The tags are split by `tasks.prompting.parse_thinking_output`
(so the response is recovered exactly as there: the <response> content, else the text after </think>, else
empty when a <think> never closed, else the whole text), with two additions for this format: an output with
no tag at all but numbered steps is a thought without tags (its response is the text after a "Response:" /
"回复：" label, else empty - never the steps), and a leading "Response:" label is dropped from a response
that had no <response> tag. `format_ok` is True only when the tags are well formed (as for FIRES) and
nothing in `details["malformed"]` was found. `details`:

- ``steps``: each step's text (None when missing), ``steps_present``: three booleans;
- ``core_issue``, ``why`` (free text), ``emotion`` (free text, lower case, its first item), ``stage``,
  ``sentiment``, ``intensity``, ``strategy`` (normalised to the vocabularies above, None when missing or not
  recognised), ``hill_stage`` (of the strategy); ``raw_fields`` holds every value read, as written (markdown removed);
- ``labels``: "en" / "zh" / "mixed" (which labels were read), None when none were;
- ``malformed``: the reasons, in a fixed vocabulary: ``no_think``, ``two_thinks``, ``unclosed_think``,
  ``stray_think_close``, ``no_response_tags``, ``two_responses``, ``unclosed_response``,
  ``stray_response_close``, ``response_before_think``, ``text_outside_tags``, ``empty_response``,
  ``steps_in_response``, ``missing_step_N``, ``empty_step_N``, ``repeated_step_N``, ``steps_out_of_order``,
  ``missing_<field>``, ``unknown_<field>`` (a stage / sentiment / intensity / strategy not in its
  vocabulary), ``several_<field>`` (more than one category named and none first; the earliest is kept),
  ``bad_tags`` (a tag error none of these names), ``parser_error`` (a bug: the text is scored as given).

A field is read from its own step (the labels of step 1 are Core issue and Stage, and so on), from the whole
thought when its step is missing; a missing field is reported only when its step is there. A stage written
without its label ("we are in the exploration stage") is still read, and so is a core issue written as plain
text before step 1's first label; both are listed in ``details["unlabelled"]``. A "Step N" counts as a step's
header where it starts a line or a sentence, or is followed by "(name)" or a colon ("as in step 2, ..." inside
the reasoning is not one); without any numbered header, the steps' names are headers ("Conversation history
analysis:", "对话历史分析：").
"""
from __future__ import annotations

from collections.abc import Sequence

import re
from typing import TYPE_CHECKING, Any

from harness.contract import ParsedOutput

from .prompting import COMPEER_MAX_TOKENS, parse_thinking_output

if TYPE_CHECKING:
    from .prompting import Roles

MODE = "compeer"

STAGES = ("exploration", "comforting", "action")  # ESConv's three phases (Liu et al. 2021)
SENTIMENTS = ("positive", "negative", "neutral")  # the paper's coarse sentiment
INTENSITIES = ("low", "medium", "high")  # this harness's scale (the paper gives none)
# The harness's reading of Hill (2020), not the paper's text (see the module docstring).
STRATEGIES = ("open question", "restatement", "reflection of feelings", "challenge", "interpretation", "self-disclosure",
              "information", "direct guidance")
HILL_STAGE = {"open question": "exploration", "restatement": "exploration", "reflection of feelings": "exploration",
              "challenge": "insight", "interpretation": "insight", "self-disclosure": "insight",
              "information": "action", "direct guidance": "action"}
PAPER_EXAMPLES = {"progressive questioning": "open question", "emotional mapping": "reflection of feelings"}
STEP_NAMES = ("history", "emotion", "strategy")
FIELDS = ("core_issue", "stage", "sentiment", "emotion", "intensity", "strategy", "why")
STEP_FIELDS = (("core_issue", "stage"), ("sentiment", "emotion", "intensity"), ("strategy", "why"))
CATEGORICAL = ("stage", "sentiment", "intensity", "strategy")

MAX_TOKENS = COMPEER_MAX_TOKENS  # 768, justified in tasks/prompting.py

# --------------------------------------------------------------------------- vocabularies (synonyms)

# Category words as a model may write them: the canonical name, common variants, the paper's examples, and the
# Chinese names (CHINESE_LABELS). Matched case-insensitively, "-"/"_" read as spaces, English as whole words.
STAGE_WORDS = {
    "exploration": ("exploration", "exploring", "explore", "探索"),
    "comforting": ("comforting", "comfort", "安慰", "抚慰", "安抚"),
    "action": ("action", "行动"),
}
SENTIMENT_WORDS = {
    "positive": ("positive", "积极", "正面", "正向"),
    "negative": ("negative", "消极", "负面", "负向"),
    "neutral": ("neutral", "中性", "中立"),
}
INTENSITY_WORDS = {
    "low": ("low", "mild", "slight", "weak", "低", "弱", "轻微", "轻度"),
    "medium": ("medium", "moderate", "mid", "middle", "中等", "中度", "适中", "中"),
    "high": ("high", "strong", "severe", "intense", "extreme", "高", "强烈", "强", "重度"),
}
STRATEGY_WORDS = {
    "open question": ("open question", "open questions", "open ended question", "open ended questions", "progressive questioning",
                      "questioning", "question", "questions", "probing", "开放式提问", "开放式问题", "开放性问题", "渐进式提问",
                      "提问", "追问", "询问"),
    "restatement": ("restatement", "restating", "restate", "paraphrasing", "paraphrase", "复述", "重述", "释义", "转述"),
    "reflection of feelings": ("reflection of feelings", "reflection of feeling", "reflecting feelings", "reflect feelings",
                               "emotional reflection", "feeling reflection", "emotional mapping", "emotion mapping", "reflection",
                               "情感反映", "情绪反映", "感受反映", "情感映射", "情绪映射", "反映"),
    "challenge": ("challenge", "challenging", "confrontation", "confront", "挑战", "质询", "面质", "对质"),
    "interpretation": ("interpretation", "interpreting", "interpret", "reframing", "reframe", "解释", "诠释", "阐释"),
    "self-disclosure": ("self disclosure", "disclosure", "immediacy", "自我表露", "自我暴露", "自我披露", "即时化", "即时性"),
    "information": ("providing information", "information", "informing", "psychoeducation", "提供信息", "信息"),
    "direct guidance": ("direct guidance", "guidance", "providing suggestions", "suggestions", "suggestion", "advice", "advise",
                        "直接指导", "提供建议", "指导", "建议"),
}
WORDS = {"stage": STAGE_WORDS, "sentiment": SENTIMENT_WORDS, "intensity": INTENSITY_WORDS, "strategy": STRATEGY_WORDS}

# Field labels (a label is the word(s) then ":" or "："; markdown bold around it is tolerated).
FIELD_LABELS = {
    "core_issue": ("core issues", "core issue", "core problem", "main issue", "issue", "problem", "核心问题", "主要问题", "问题"),
    "stage": ("support stage", "current stage", "stage", "phase", "支持阶段", "当前阶段", "阶段"),
    "sentiment": ("coarse sentiment", "overall sentiment", "sentiment", "polarity", "情感倾向", "情绪倾向", "情感极性", "情绪极性",
                  "整体情感", "极性"),
    "emotion": ("fine grained emotion", "fine-grained emotion", "fine emotion", "specific emotion", "emotions", "emotion",
                "具体情绪", "细粒度情绪", "情绪"),
    "intensity": ("emotion intensity", "emotional intensity", "sentiment intensity", "intensity", "情绪强度", "情感强度", "强度"),
    "strategy": ("support strategy", "strategy", "支持策略", "策略"),
    "why": ("why", "reason", "rationale", "理由", "原因"),
}
RESPONSE_LABELS = ("response", "reply", "回复", "回应")

# The Chinese labels the parser accepts (documentation; the tables above hold them).
CHINESE_LABELS = {
    "steps": ("步骤1 / 步骤一 / 第1步 / 第一步 (and 2, 3)", "对话历史分析 / 历史分析", "情绪状态分析 / 情绪状态 / 情感状态分析 / 情感状态",
              "支持策略分析 / 策略分析"),
    "fields": {f: tuple(x for x in labels if not x.isascii()) for f, labels in FIELD_LABELS.items()},
    "categories": {f: {c: tuple(w for w in words if not w.isascii()) for c, words in table.items()} for f, table in WORDS.items()},
    "response": ("回复", "回应"),
}

# --------------------------------------------------------------------------- prompts (this project's own wording)

_STRATEGY_LINES_EN = (
    "- open question: ask an open question that helps the {seeker} explore further;",
    "- restatement: repeat or paraphrase what the {seeker} said, to show you follow;",
    "- reflection of feelings: name the feelings the {seeker} expresses or implies;",
    "- challenge: gently point out a contradiction or an unhelpful belief;",
    "- interpretation: offer a new perspective on why the {seeker} feels or acts this way;",
    "- self-disclosure: share a relevant experience of your own, or how you feel right now in this conversation;",
    "- information: give facts, resources or knowledge the {seeker} needs;",
    "- direct guidance: suggest a concrete step the {seeker} could take.",
)

FORM = ("<think>\n"
        "Step 1 (History): Core issue: ... Stage: ...\n"
        "Step 2 (Emotion): Sentiment: ...; Emotion: ...; Intensity: ...\n"
        "Step 3 (Strategy): Strategy: ... Why: ...\n"
        "</think>\n"
        "<response> ... </response>")


def _english_prompt(supporter: str, seeker: str, setting: str, given: str, cues: str, language_line: str = "") -> str:
    lines = [
        f"You are the {supporter} in {setting}. You are given {given}. Your task is to write the {supporter}'s next turn.",
        "Before you reply, reason in three steps, in this order:",
        f"Step 1 (History): analyse the conversation history. Name the {seeker}'s core issue, and the current stage of the "
        f"support: exploration (finding out what the problem is), comforting (easing the {seeker}'s feelings) or action "
        "(helping them decide what to do).",
        f"Step 2 (Emotion): analyse the {seeker}'s emotional state{cues}: the overall sentiment (positive, negative or neutral), "
        "the specific emotion (for example sadness, anxiety, anger, shame, joy) and its intensity (low, medium or high).",
        "Step 3 (Strategy): choose the one support strategy, of these eight, that fits best now, and say why:",
        *(line.format(seeker=seeker) for line in _STRATEGY_LINES_EN),
        f"Then write the reply itself: one short, natural turn that supports the {seeker} emotionally, using the strategy you chose.",
    ]
    if language_line:
        lines.append(language_line)
    lines += ["Write the labels and the category names exactly as given here. Answer in exactly this form and add nothing else:", FORM]
    return "\n".join(lines)


def system_prompt(roles: Roles) -> str:
    """The ``prompt=compeer`` system prompt of a text task (MESC, ESConv, EMOTyDA-ESC)."""
    given = "the conversation so far (and frames from its video, when there are any)" if roles.video else "the conversation so far"
    cues = ", judged from their words and any visual cues" if roles.video else ", judged from their words"
    return _english_prompt(roles.supporter.lower(), roles.seeker.lower(), roles.setting, given, cues)


DIALOGUE_SYSTEM_PROMPT = {
    "en": _english_prompt("supporter", "seeker", "an emotional support conversation", "the conversation so far", ", judged from their words",
                          "Write the reasoning and the reply in the language of the conversation."),
    "zh": "\n".join([
        "你是一段情感支持对话中的支持者。你会看到目前为止的对话。你的任务是写出支持者的下一句回复。",
        "回复之前，先按顺序分三步思考：",
        "Step 1 (History)：分析对话历史。指出求助者的核心问题，并判断支持进行到哪个阶段：exploration（探索：弄清问题是什么）、"
        "comforting（安慰：缓解求助者的情绪）或 action（行动：帮助对方决定怎么做）。",
        "Step 2 (Emotion)：根据求助者说的话分析其情绪状态：整体情感倾向（positive、negative 或 neutral）、具体情绪（例如悲伤、焦虑、"
        "愤怒、羞愧、喜悦）及其强度（low、medium 或 high）。",
        "Step 3 (Strategy)：从下面八种支持策略中选出现在最合适的一种，并说明理由：",
        "- open question：提出开放式问题，帮助求助者进一步探索；",
        "- restatement：复述或换个说法重述求助者的话，表明你在认真听；",
        "- reflection of feelings：说出求助者表达或流露出的感受；",
        "- challenge：温和地指出矛盾之处或无益的想法；",
        "- interpretation：提供新的角度，解释求助者为什么会这样感受或这样做；",
        "- self-disclosure：分享你自己的相关经历，或你此刻在这段对话中的感受；",
        "- information：提供求助者需要的事实、资源或知识；",
        "- direct guidance：建议求助者可以采取的具体行动。",
        "然后写出回复本身：一段简短、自然、给求助者情感支持的话，采用你选择的策略。思考内容和回复都用中文。",
        "标签和类别名请严格照这里的英文原样书写。严格按以下格式作答，不要添加任何其他内容：",
        FORM,
    ]),
}


def dialogue_system_prompt(language: str) -> str:
    """The ``prompt=compeer`` system prompt of the model under test in a dialogue task (ESC-Eval, SAGE)."""
    return DIALOGUE_SYSTEM_PROMPT["zh" if language == "zh" else "en"]


def render_output(core_issue: str, stage: str, sentiment: str, emotion: str, intensity: str, strategy: str, why: str, response: str) -> str:
    """An answer in the canonical form (demonstrations, tests, synthesised targets); it parses with format_ok."""
    return render_steps([f"Core issue: {core_issue} Stage: {stage}", f"Sentiment: {sentiment}; Emotion: {emotion}; Intensity: {intensity}",
                         f"Strategy: {strategy}. Why: {why}"], response)


def render_steps(steps: Sequence[str], response: str) -> str:
    """The canonical answer from the three steps' texts (as `parse_compeer_output` returns them in details["steps"])."""
    heads = ("Step 1 (History)", "Step 2 (Emotion)", "Step 3 (Strategy)")
    body = "\n".join(f"{head}: {step.strip()}" for head, step in zip(heads, steps))
    return f"<think>\n{body}\n</think>\n<response> {response.strip()} </response>"


# --------------------------------------------------------------------------- parsing

_NUMBERS = {"1": 1, "2": 2, "3": 3, "one": 1, "two": 2, "three": 3, "一": 1, "二": 2, "三": 3}
_MD = r"[*_#`]*"
_LEAD = r"[ \t]*[-*#_`>]*[ \t]*"  # bullets, markdown before a header
# A numbered header is "Step N" / "步骤N" / "第N步", optionally "(name)", then ":" "." "-" or nothing. It counts as a
# header when it starts a line or a sentence, or is followed by a "(name)" or a colon (so "as in step 2, ..." in
# the reasoning is not one).
_EN_STEP = re.compile(rf"{_LEAD}(?<![A-Za-z])step[ \t]*(1|2|3|one|two|three)(?![0-9A-Za-z])[ \t]*(\([^)\n]{{0,80}}\)|（[^）\n]{{0,80}}）)?"
                      rf"[ \t]*{_MD}[ \t]*([:：.\-–—]?)[ \t]*{_MD}", re.IGNORECASE)
_ZH_STEP = re.compile(rf"{_LEAD}(?:步骤[ \t]*([123一二三])|第[ \t]*([123一二三])[ \t]*步)[ \t]*(（[^）\n]{{0,80}}）|\([^)\n]{{0,80}}\))?"
                      rf"[ \t]*{_MD}[ \t]*([:：.、]?)[ \t]*{_MD}")
_NAMED_STEPS = (
    (1, r"(?:conversation[ \t]+)?history[ \t]+analysis", False), (2, r"emotional[ \t]+state(?:[ \t]+analysis)?", False),
    (3, r"(?:support[ \t]+)?strategy[ \t]+analysis", False),
    (1, r"对话历史分析|历史分析", True), (2, r"情绪状态分析|情感状态分析|情绪状态|情感状态", True), (3, r"支持策略分析|策略分析", True),
)
_NAMED_STEP = [(n, re.compile(rf"(?:^|(?<=[.。!?！？;；>]))[ \t]*[-*#_`>]*[ \t]*(?:{p})[ \t]*{_MD}[ \t]*(?:[:：]|$)[ \t]*{_MD}",
                              re.IGNORECASE | re.MULTILINE), zh)
               for n, p, zh in _NAMED_STEPS]
_UNLABELLED_STAGE = re.compile(r"(?<![a-z])(exploration|exploring|comforting|comfort|action)[ \t]+(?:stage|phase)(?![a-z])|(探索|安慰|抚慰|安抚|行动)阶段",
                               re.IGNORECASE)


def _label_key(label: str) -> str:
    return re.sub(r"[ \t_-]+", " ", label.lower()).strip()


def _label_regex(labels: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(_label_key(x)).replace(r"\ ", r"[ \t_-]+") for x in sorted(labels, key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z]){_MD}[ \t]*({alternatives})[ \t]*{_MD}[ \t]*[:：][ \t]*{_MD}", re.IGNORECASE)


_STEP_LABELS = [_label_regex(tuple(x for f in fields for x in FIELD_LABELS[f])) for fields in STEP_FIELDS]
_LABEL_FIELD = {_label_key(x): f for f, labels in FIELD_LABELS.items() for x in labels}
_RESPONSE_LABEL = re.compile(rf"(?<![A-Za-z]){_MD}[ \t]*(?:{'|'.join(RESPONSE_LABELS)})[ \t]*{_MD}[ \t]*[:：][ \t]*{_MD}", re.IGNORECASE)
_LEADING_RESPONSE_LABEL = re.compile(rf"\A\s*{_MD}[ \t]*(?:{'|'.join(RESPONSE_LABELS)})[ \t]*{_MD}[ \t]*[:：][ \t]*{_MD}\s*", re.IGNORECASE)


def _normal(value: str) -> str:
    """Lower case, markdown, quotes, brackets and leading numbering removed, "-"/"_" as spaces, spaces collapsed."""
    value = re.sub(r"[*#`\"'“”‘’「」『』\[\]【】]+", " ", value.lower())
    value = re.sub(r"[_\-–—]+", " ", value)
    value = re.sub(r"^\s*(?:\d+[.)、]|[(（]\d+[)）])\s*", "", value)
    return re.sub(r"\s+", " ", value).strip()


def _word_pattern(word: str) -> str:
    body = re.escape(word.replace("-", " ")).replace(r"\ ", " ")
    return rf"(?<![a-z]){body}(?![a-z])" if word.isascii() else body


_WORD_RE = {field: [(canon, re.compile("|".join(_word_pattern(w) for w in sorted(words, key=len, reverse=True))))
                    for canon, words in table.items()] for field, table in WORDS.items()}


def normalise(field: str, value: str | None) -> tuple[str | None, list[str]]:
    """A stage / sentiment / intensity / strategy value as its canonical name, and the categories it names in
    order. A value that starts with a category's word is that category; else the category named earliest."""
    if not value:
        return None, []
    text = _normal(value)
    found = []
    for canon, pattern in _WORD_RE[field]:
        m = pattern.search(text)
        if m:
            found.append((m.start(), canon))
    found.sort()
    return (found[0][1] if found else None), [c for _, c in found]


def _starts_with_category(field: str, value: str) -> bool:
    text = _normal(value)
    return any(pattern.match(text) for _, pattern in _WORD_RE[field])


def _clean(value: str) -> str:
    value = re.sub(r"[*_`#]+", "", value)
    return re.sub(r"\s+", " ", value).strip(" \t\n;；,，.。:：-")


def _fields_in(text: str, labels: re.Pattern[str]) -> dict[str, tuple[str, bool]]:
    """field -> (value, Chinese label?) for the labels of one step in `text`: the first label of each field with a
    non-empty value; a later label of a field already read is part of its value ("Core issue: her problem: ...")."""
    matches = list(labels.finditer(text))
    chosen: dict[str, re.Match[str]] = {}
    for m, nxt in zip(matches, matches[1:] + [None]):
        field = _LABEL_FIELD.get(_label_key(m.group(1)))
        if field and field not in chosen and _clean(text[m.end(): nxt.start() if nxt else None]):
            chosen[field] = m
    order = sorted(chosen.items(), key=lambda item: item[1].start())
    found: dict[str, tuple[str, bool]] = {}
    for (field, m), nxt in zip(order, order[1:] + [None]):
        found[field] = (_clean(text[m.end(): nxt[1].start() if nxt else None]), not m.group(1).isascii())
    return found


def _header_ok(text: str, m: re.Match[str], name: str | None, punct: str) -> bool:
    before = text[: m.start()].rstrip(" \t")
    return bool(name) or punct in (":", "：") or not before or before[-1] in "\n.。!?！？;；>"


def _headers(text: str) -> tuple[list[tuple[int, int, int]], set[str]]:
    """(step number, start, end) of the step headers in order, and the languages of the headers found. Numbered
    headers ("Step 1", "步骤1", "第一步") win; named ones ("Conversation history analysis:") only when there are none."""
    numbered = [(_NUMBERS[m.group(1).lower()], m.start(), m.end(), "en") for m in _EN_STEP.finditer(text)
                if _header_ok(text, m, m.group(2), m.group(3))]
    numbered += [(_NUMBERS[m.group(1) or m.group(2)], m.start(), m.end(), "zh") for m in _ZH_STEP.finditer(text)
                 if _header_ok(text, m, m.group(3), m.group(4))]
    found = numbered or [(n, m.start(), m.end(), "zh" if zh else "en") for n, pattern, zh in _NAMED_STEP for m in pattern.finditer(text)]
    found.sort(key=lambda h: h[1])
    kept: list[tuple[int, int, int, str]] = []
    for h in found:  # overlapping matches (one header read twice): keep the first
        if kept and h[1] < kept[-1][2]:
            continue
        kept.append(h)
    return [(n, s, e) for n, s, e, _ in kept], {lang for *_, lang in kept}


def analyse_reasoning(thinking: str | None) -> dict[str, Any]:
    """The three steps and their fields in a thought (see the module docstring); never raises on a string."""
    text = thinking or ""
    headers, languages = _headers(text)
    malformed: list[str] = []
    steps: list[str | None] = [None, None, None]
    seen: list[int] = []
    for (n, _, end), nxt in zip(headers, headers[1:] + [None]):
        if n in seen:
            if f"repeated_step_{n}" not in malformed:
                malformed.append(f"repeated_step_{n}")
            continue
        seen.append(n)
        steps[n - 1] = text[end: nxt[1] if nxt else None].strip()
    if seen != sorted(seen):
        malformed.append("steps_out_of_order")
    present = [bool(s and _clean(s)) for s in steps]
    for n in range(3):
        if steps[n] is None:
            malformed.append(f"missing_step_{n + 1}")
        elif not present[n]:
            malformed.append(f"empty_step_{n + 1}")

    values: dict[str, Any] = dict.fromkeys(FIELDS)
    raw: dict[str, str] = {}
    unlabelled: list[str] = []
    for n, fields in enumerate(STEP_FIELDS):
        where = (steps[n] or "") if present[n] else text  # a missing step's fields: wherever the thought has them
        for field, (value, zh) in _fields_in(where, _STEP_LABELS[n]).items():
            if field in fields:
                raw[field] = value
                languages.add("zh" if zh else "en")
        if n == 0 and present[0]:
            if "stage" not in raw:  # "... we are in the exploration stage"
                m = _UNLABELLED_STAGE.search(where)
                if m:
                    raw["stage"] = m.group(1) or m.group(2)
                    unlabelled.append("stage")
            if "core_issue" not in raw:  # natural language before the first label
                first = _STEP_LABELS[0].search(where)
                lead = _clean(where[: first.start() if first else None])
                if lead:
                    raw["core_issue"] = lead
                    unlabelled.append("core_issue")
        for field in fields:
            value = raw.get(field)
            if field in CATEGORICAL:
                canon, named = normalise(field, value)
                values[field] = canon
                if value and canon is None:
                    malformed.append(f"unknown_{field}")
                elif len(set(named)) > 1 and not _starts_with_category(field, value or ""):
                    malformed.append(f"several_{field}")
            elif field == "emotion" and value:
                first_item = re.split(r"[,;/、，；(（]|\band\b|\bwith\b|和|与|及", value, maxsplit=1)[0]
                values[field] = _clean(first_item).lower() or _clean(value).lower()
            else:
                values[field] = value
            if not value and present[n] and field != "why":
                malformed.append(f"missing_{field}")
    labels = None if not languages else ("mixed" if len(languages) > 1 else next(iter(languages)))
    return {
        "steps": steps, "steps_present": present,
        **values, "hill_stage": HILL_STAGE.get(values["strategy"] or ""),
        "raw_fields": raw, "unlabelled": unlabelled, "labels": labels, "malformed": malformed,
    }


def _tag_problems(text: str, response: str, base_ok: bool) -> list[str]:
    lower = text.lower()
    counts = {t: lower.count(t) for t in ("<think>", "</think>", "<response>", "</response>")}
    if not any(counts.values()):
        return []  # no tag at all: said by the caller
    problems = []
    # per tag: (none at all, opened twice, never closed, closed more often than opened)
    for tag, codes in (("think", ("no_think", "two_thinks", "unclosed_think", "stray_think_close")),
                       ("response", ("no_response_tags", "two_responses", "unclosed_response", "stray_response_close"))):
        opened, closed = counts[f"<{tag}>"], counts[f"</{tag}>"]
        if opened == 0 and closed == 0:
            problems.append(codes[0])
        elif opened > 1:
            problems.append(codes[1])
        elif opened == 1 and closed == 0:
            problems.append(codes[2])
        elif closed > opened:
            problems.append(codes[3])
    if counts["<think>"] and counts["<response>"] and lower.find("<response>") < lower.find("<think>"):
        problems.append("response_before_think")
    rest = re.sub(r"<think>.*?</think>|<response>.*?</response>", " ", text, flags=re.IGNORECASE | re.DOTALL)
    rest = re.sub(r"<think>.*?(?=<response>|\Z)|<response>.*\Z", " ", rest, flags=re.IGNORECASE | re.DOTALL)
    if re.sub(r"</?(?:think|response)>", " ", rest, flags=re.IGNORECASE).strip():
        problems.append("text_outside_tags")
    if not response:
        problems.append("empty_response")
    if not base_ok and not problems:
        problems.append("bad_tags")
    return problems


def parse_compeer_output(text: str) -> ParsedOutput:
    """Split and read a COMPEER answer (see the module docstring). Never raises."""
    try:
        return _parse(text if isinstance(text, str) else "")
    except Exception as exc:  # a bug here must not lose a sample: score the text as given, flag it
        return ParsedOutput(response=(text or "").strip() if isinstance(text, str) else "", format_ok=False, thinking=None,
                            details={"malformed": ["parser_error"], "error": f"{type(exc).__name__}: {exc}"})


def _parse(text: str) -> ParsedOutput:
    base = parse_thinking_output(text)
    thinking, response = base.thinking, base.response
    lower = text.lower()
    tagged = any(t in lower for t in ("<think>", "</think>", "<response>", "</response>"))
    problems: list[str] = []
    if not tagged:
        if _headers(text)[0]:  # the steps without tags: a thought; the reply only after a "Response:" label
            labels = list(_RESPONSE_LABEL.finditer(text))
            after = labels[-1] if labels else None
            thinking = text[: after.start()].strip() if after else text.strip()
            response = text[after.end():].strip() if after else ""
        problems.append("no_think")
        problems.append("no_response_tags")
        if not response:
            problems.append("empty_response")
    else:
        if "<response>" not in lower:
            response = _LEADING_RESPONSE_LABEL.sub("", response, count=1).strip()
        problems = _tag_problems(text, response, base.format_ok)
    details = analyse_reasoning(thinking)
    if thinking is None and response and _headers(response)[0]:
        problems.append("steps_in_response")
    details["malformed"] = problems + details["malformed"]
    ok = base.format_ok and not details["malformed"]
    return ParsedOutput(response=response, format_ok=ok, thinking=thinking, details=details)


def turn_details(output: str, parsed: ParsedOutput) -> dict[str, Any]:
    """What a dialogue turn of the model under test keeps in compeer mode: the raw output and its parse (the
    turn's text is `parsed.response` only)."""
    return {"compeer": {"output": output, "format_ok": parsed.format_ok, "thinking": parsed.thinking, "parse": parsed.details}}


def dialogue_reply(output: str) -> tuple[str, dict[str, Any]]:
    """(the reply that goes on in the dialogue, the turn's details) for one compeer-mode answer."""
    parsed = parse_compeer_output(output)
    return parsed.response, turn_details(output, parsed)
