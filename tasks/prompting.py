"""Prompting modes shared by the text ESC tasks (MESC, ESConv, EMOTyDA-ESC).

A task picks its modes with two task options (`--task-args prompt=...,shots=...`):

`prompt`
    ``plain``         the task's own system prompt, the history as chat turns (seeker turns are `user`
                      messages, supporter turns `assistant` messages); the output is the response.
    ``fires``         the FIRES system prompt (Wang et al. 2025, section 3.4.1), for FIRES checkpoints;
                      the history is one `user` message holding a transcript ("Speaker: text" lines ending
                      with "Supporter:", as in the paper's case-study figures); the model answers
                      ``<think> ... </think><response> ... </response>``.
    ``fixed-cot``     the paper's "Fixed CoT" baseline: think about all four aspects (Visual Scene,
                      Emotion, Situation, Response Strategy) in order, then respond; FIRES format,
                      transcript as for ``fires``.
    ``flexible-cot``  the paper's "Flexible CoT" baseline: think only about the aspects that help,
                      then respond; FIRES format, transcript as for ``fires``.
    ``compeer``       COMPEER's controllable empathetic reasoning (Wang et al. 2025; `tasks/compeer_reasoning.py`):
                      three labelled steps (history analysis with the support stage, emotional state,
                      one of eight Hill-based strategies) in ``<think>``, then ``<response>``; this
                      project's own system prompt (the paper's are not public), transcript as for
                      ``fires``, `COMPEER_MAX_TOKENS` (768) new tokens, parsed by
                      `compeer_reasoning.parse_compeer_output`.

`shots` (default 0)
    k demonstrations, each the history of another sample and its reference response, drawn from the
    task's train split by `draw_shots` (deterministic in the run's seed and the sample id; never from the
    evaluated sample's own dialogue). In ``plain`` mode they are appended to the system prompt, so the
    chat turns stay the conversation being answered; in the transcript modes they come first in the
    user message. No demonstration has a gold thinking, so in the FIRES-format modes its reply is shown
    as ``<response> ... </response>`` only, and the prompt says that the thinking is not shown.

Video frames, when a task has them, go on the last `user` message (the one the model answers) in every
mode; demonstrations never carry frames.
"""
from __future__ import annotations

import random
import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.contract import (
    ChatRequest,
    GenerationConfig,
    Message,
    ParsedOutput,
    Sample,
    Task,
    Turn,
)
from harness.errors import HarnessError

from . import OPTIONAL_RESPONSE_METRICS, RESPONSE_METRICS

PROMPT_MODES = ("plain", "fires", "fixed-cot", "flexible-cot", "compeer")
THINKING_MODES = ("fires", "fixed-cot", "flexible-cot")  # answers in the FIRES output format
COMPEER_MODE = "compeer"  # <think> three COMPEER steps </think><response> ... </response> (tasks/compeer_reasoning.py)
ASPECTS = ("visual_scene", "emotion", "situation", "response_strategy")

# Thinking plus response need more room than a bare reply (the plain mode keeps the contract's default).
THINKING_MAX_TOKENS = 512
# A COMPEER answer has three steps with six labelled fields and a free-text "Why" before the reply (the FIRES
# modes: up to four short aspects). A thought cut by max_tokens leaves no reply, scored as an empty response, so
# the budget is 1.5 times THINKING_MAX_TOKENS: an English answer of ~250 words is ~330 tokens, a Chinese one of
# ~400 characters ~300-450 with common tokenizers, and longer-winded general models still fit.
COMPEER_MAX_TOKENS = 768

# Reproduced verbatim from the FIRES paper (section 3.4.1): the FIRES checkpoints were trained with
# exactly this system prompt, so it must not be reworded.
FIRES_SYSTEM_PROMPT = (
    "You are an expert in Emotional Support Conversation. Based on the conversation history, please first "
    "describe the thinking process and then provide an appropriate response."
)


@dataclass(frozen=True)
class Roles:
    """Who is who in a task's dialogues, and where they talk."""

    seeker: str  # Turn.speaker of the person seeking support, e.g. "Client"
    supporter: str  # Turn.speaker of the person whose reply is generated, e.g. "Therapist"
    setting: str  # where the conversation happens, e.g. "a counselling session"
    video: bool = True  # may samples come with video frames? (False: the CoT prompts say there is no video)


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class PromptOptions:
    prompt: str = "plain"
    shots: int = 0

    @classmethod
    def parse(cls, prompt: Any = "plain", shots: Any = 0, task: str = "task") -> PromptOptions:
        if prompt not in PROMPT_MODES:
            raise HarnessError(f"{task}: unknown prompt '{prompt}'; choose one of {', '.join(PROMPT_MODES)} (e.g. --task-args prompt=flexible-cot).")
        if isinstance(shots, str) and shots.strip().isdigit():
            shots = int(shots)
        if isinstance(shots, bool) or not isinstance(shots, int) or shots < 0:
            raise HarnessError(f"{task}: shots must be a whole number of demonstrations, 0 or more (e.g. --task-args shots=3), got {shots!r}.")
        return cls(prompt, shots)

    @property
    def thinking(self) -> bool:
        """Does the answer hold a thinking before the response (every mode but ``plain``)?"""
        return self.prompt in THINKING_MODES or self.prompt == COMPEER_MODE


# --------------------------------------------------------------------------- demonstrations


def dialogue_of(sample: Sample) -> str:
    """Default dialogue key: the id without its last part ("mesc/train/d0012/t05" -> "mesc/train/d0012")."""
    return sample.id.rsplit("/", 1)[0]


def draw_shots(pool: Sequence[Sample], sample: Sample, k: int, seed: int, dialogue: Callable[[Sample], Hashable] = dialogue_of) -> list[Sample]:
    """k demonstrations from `pool` (the train split) for `sample`: the same for the same (seed, sample id),
    in draw order, never from the sample's own dialogue (so never the sample itself)."""
    if k <= 0:
        return []
    own = dialogue(sample)
    rng = random.Random(f"shots|{seed}|{sample.id}")  # str seeds are hashed with sha512: stable across processes
    chosen: list[Sample] = []
    seen: set[int] = set()
    while len(chosen) < k and len(seen) < len(pool):
        i = rng.randrange(len(pool))
        if i in seen:
            continue
        seen.add(i)
        if dialogue(pool[i]) != own:
            chosen.append(pool[i])
    if len(chosen) < k:
        raise HarnessError(f"shots={k}: only {len(chosen)} demonstrations outside the dialogue of {sample.id} are available; ask for fewer.")
    return chosen


# --------------------------------------------------------------------------- prompts


def _aspect_lines(roles: Roles, flexible: bool) -> str:
    seeker = roles.seeker.lower()
    if roles.video:
        scene_absent = "skip it when no frames are given" if flexible else 'write "None" when no frames are given'
    else:
        scene_absent = "this conversation has no video, so leave it out" if flexible else 'this conversation has no video, so write "None"'
    return "\n".join([
        f"Visual Scene: what the video frames show of the {seeker}'s behaviour, facial expression, posture or gestures ({scene_absent}).",
        f"Emotion: the emotion(s) the {seeker} is feeling, judged from their words and any visual cues.",
        f"Situation: what brought these feelings about, or the problem the {seeker} is facing"
        + (' (write "Unknown" when the conversation does not reveal it yet).' if flexible else "."),
        "Response Strategy: how you will reply and what the reply should achieve.",
    ])


def cot_system_prompt(roles: Roles, flexible: bool) -> str:
    """The Fixed CoT / Flexible CoT instructions (our wording of the paper's two baselines)."""
    supporter, seeker = roles.supporter.lower(), roles.seeker.lower()
    if flexible:
        how = ("First think it through, but only about those of the four aspects below that really help with this "
               "particular reply; leave the others out and keep this order:")
        form = "<think> Aspect: ... Aspect: ... </think><response> ... </response>"
        naming = "Start each aspect you include with its name and a colon. Answer in exactly this form and add nothing else:"
    else:
        how = "First think it through, covering all four aspects below, one after the other in this order:"
        form = "<think> Visual Scene: ... Emotion: ... Situation: ... Response Strategy: ... </think><response> ... </response>"
        naming = "Start each aspect with its name and a colon. Answer in exactly this form and add nothing else:"
    given = "the conversation so far (and frames from its video, when there are any)" if roles.video else "the conversation so far"
    return "\n".join([
        f"You are the {supporter} in {roles.setting}. You are given {given}. Your task is to write the {supporter}'s next turn.",
        how,
        _aspect_lines(roles, flexible),
        f"Then write the reply itself: one short, natural turn that supports the {seeker} emotionally.",
        naming,
        form,
    ])


def system_prompt(options: PromptOptions, roles: Roles, plain_system: str) -> str:
    if options.prompt == "plain":
        return plain_system
    if options.prompt == "fires":
        return FIRES_SYSTEM_PROMPT
    if options.prompt == COMPEER_MODE:
        from . import compeer_reasoning  # (it builds on this module's parser)

        return compeer_reasoning.system_prompt(roles)
    return cot_system_prompt(roles, flexible=options.prompt == "flexible-cot")


def transcript(history: Sequence[Turn], roles: Roles) -> str:
    """'Speaker: text' per turn, then the supporter's name as the cue for the reply."""
    return "\n".join([f"{t.speaker}: {t.text}" for t in history] + [f"{roles.supporter}:"])


def _demonstrations(demos: Sequence[Sample], roles: Roles, thinking: bool) -> str:
    blocks = []
    for n, demo in enumerate(demos, 1):
        reply = f"<response> {demo.reference} </response>" if thinking else demo.reference
        blocks.append(f"Example {n}:\n{transcript(demo.history, roles)} {reply}")
    return "\n\n".join(blocks)


def _demo_intro(k: int, roles: Roles, thinking: bool) -> str:
    supporter = roles.supporter.lower()
    what = (f"{k} examples from other conversations, each ending with the {supporter}'s actual reply" if k > 1
            else f"an example from another conversation, ending with the {supporter}'s actual reply")
    if thinking:
        return f"Here are {what} (only the reply is shown, not the thinking behind it; your answer still needs both):"
    return f"Here are {what}:"


def build_request(options: PromptOptions, roles: Roles, plain_system: str, history: Sequence[Turn],
                  demos: Sequence[Sample] = (), images: Sequence[str] = ()) -> ChatRequest:
    """The request for one sample in the chosen mode (see the module docstring)."""
    system = system_prompt(options, roles, plain_system)
    if options.prompt == "plain":
        if demos:
            system += "\n\n" + _demo_intro(len(demos), roles, False) + "\n\n" + _demonstrations(demos, roles, False)
        role = {roles.seeker: "user", roles.supporter: "assistant"}
        turns = [Message(role="system", content=system)]
        turns += [Message(role=role.get(t.speaker, "user"), content=t.text) for t in history]
        generation = GenerationConfig()
    else:
        text = transcript(history, roles)
        if demos:
            text = (_demo_intro(len(demos), roles, True) + "\n\n" + _demonstrations(demos, roles, True)
                    + "\n\nNow the conversation to answer:\n" + text)
        turns = [Message(role="system", content=system), Message(role="user", content=text)]
        generation = GenerationConfig(max_tokens=COMPEER_MAX_TOKENS if options.prompt == COMPEER_MODE else THINKING_MAX_TOKENS)
    if images:
        last_user = max((i for i, m in enumerate(turns) if m.role == "user"), default=len(turns) - 1)
        turns[last_user] = turns[last_user].model_copy(update={"images": tuple(images)})
    return ChatRequest(messages=tuple(turns), generation=generation)


# --------------------------------------------------------------------------- parsing

_TAG = re.compile(r"</?\s*(?:think|response)\s*>", re.IGNORECASE)
_WELL_FORMED = re.compile(r"\A\s*<think>(.*?)</think>\s*<response>(.*?)</response>\s*\Z", re.IGNORECASE | re.DOTALL)
_BOLD = r"(?:\*\*|__|\*)?"
_LABEL = re.compile(
    rf"{_BOLD}[ \t]*\b(visual[ \t]+scene|emotions?|situation|response[ \t]+(?:strategy|goal))[ \t]*{_BOLD}[ \t]*:[ \t]*{_BOLD}",
    re.IGNORECASE,
)
_DECLINED = ("not helpful", "none", "n/a", "na", "not applicable", "not available", "no frames", "no video", "omitted", "")


def _aspect_key(label: str) -> str:
    word = re.sub(r"\s+", " ", label.lower())
    if word.startswith("visual"):
        return "visual_scene"
    if word.startswith("emotion"):
        return "emotion"
    if word == "situation":
        return "situation"
    return "response_strategy"  # "response strategy", or "response goal" as in the paper's appendix A example


def _plain_value(value: str) -> str:
    """Lower-case words of an aspect's value, without markdown, punctuation or the next item's number."""
    words = re.sub(r"\s+", " ", re.sub(r"[*_#`\"'().,;:!\-]+", " ", value)).strip().lower()
    return re.sub(r"(?:^|\s)\d+$", "", words).strip()


def split_aspects(thinking: str | None) -> list[tuple[str, str]]:
    """The thought cut at its aspect labels: (aspect key, "Label: value" text) in order; text before the first
    label is left out (the FIRES training ablations remove one aspect's segment)."""
    text = thinking or ""
    matches = list(_LABEL.finditer(text))
    return [(_aspect_key(m.group(1)), text[m.start(): nxt.start() if nxt else None].strip()) for m, nxt in zip(matches, matches[1:] + [None])]


def analyse_thinking(thinking: str | None) -> dict[str, Any]:
    """Which of the four aspects a thought covers, read from its "Aspect:" labels (case-insensitive, markdown
    bold, numbering and extra spaces tolerated; the first label of each aspect counts).

    - ``aspects[a]``: the aspect is there with some content; an aspect left out, or labelled but declined
      ("Not helpful", "None", "N/A"), is False and, when declined, listed in ``declined``;
    - ``emotion_neutral``: the Emotion value starts with "neutral"; ``situation_unknown``: the Situation
      value starts with "unknown" (the FIRES figure 3 categories); ``unknown`` lists every aspect whose value
      starts with "unknown".
    """
    values: dict[str, str] = {}
    matches = list(_LABEL.finditer(thinking or ""))
    for m, nxt in zip(matches, matches[1:] + [None]):
        key = _aspect_key(m.group(1))
        if key not in values:
            values[key] = (thinking or "")[m.end(): nxt.start() if nxt else None]
    plain = {k: _plain_value(v) for k, v in values.items()}
    declined = [a for a in ASPECTS if a in plain and (plain[a] in _DECLINED or plain[a].startswith("not helpful"))]
    return {
        "aspects": {a: a in plain and a not in declined for a in ASPECTS},
        "declined": declined,
        "unknown": [a for a in ASPECTS if plain.get(a, "").startswith("unknown")],
        "emotion_neutral": plain.get("emotion", "").split(" ")[0] == "neutral",
        "situation_unknown": plain.get("situation", "").startswith("unknown"),
    }


def _strip_tags(text: str) -> str:
    return _TAG.sub(" ", text).strip()


def parse_thinking_output(output: str) -> ParsedOutput:
    """Split a ``<think> ... </think><response> ... </response>`` answer. `format_ok` only for exactly one think
    block then one response block, nothing around them but whitespace, and a non-empty response. Anything
    else is still scored: the response is the <response> content (up to </response> or the end), else the text
    after the last </think>, else empty when a <think> never closed (no reply was given), else (no tag at all)
    the whole output; tags are removed. `details` always holds `analyse_thinking` of the thought (all aspects
    False when there is none). Never raises."""
    text = output or ""
    counts = [len(re.findall(p, text, re.IGNORECASE)) for p in (r"<think>", r"</think>", r"<response>", r"</response>")]
    strict = _WELL_FORMED.match(text)
    if strict and counts == [1, 1, 1, 1] and strict.group(2).strip():
        thinking, response, ok = strict.group(1).strip(), strict.group(2).strip(), True
    else:
        ok = False
        lower = text.lower()
        think_open, think_close, resp_open = lower.find("<think>"), lower.rfind("</think>"), lower.find("<response>")
        if resp_open >= 0:
            end = lower.find("</response>", resp_open)
            response = _strip_tags(text[resp_open + len("<response>"): end if end >= 0 else None])
        elif think_close >= 0:
            response = _strip_tags(text[think_close + len("</think>"):])
        elif think_open >= 0:  # a thought that never closed (often cut by max_tokens): no reply was given
            response = ""
        else:  # the format was ignored altogether: the whole text is the reply
            response = _strip_tags(text)
        if think_open >= 0:
            stops = [i for i in (lower.find("</think>", think_open), lower.find("<response>", think_open)) if i >= 0]
            thinking = _strip_tags(text[think_open + len("<think>"): min(stops) if stops else None])
        elif think_close >= 0:
            thinking = _strip_tags(text[:think_close])
        else:
            thinking = None
    return ParsedOutput(response=response, format_ok=ok, thinking=thinking, details=analyse_thinking(thinking))


def parse_output(options: PromptOptions, output: str) -> ParsedOutput:
    if options.prompt == COMPEER_MODE:
        from . import compeer_reasoning

        return compeer_reasoning.parse_compeer_output(output)
    if options.thinking:
        return parse_thinking_output(output)
    return ParsedOutput(response=output.strip())


class PromptedTask(Task):
    """A response-generation task prompted through this module (MESC, ESConv, EMOTyDA-ESC). Subclasses set
    `roles` and `system_prompt` and implement `_samples(split, folder)`; demonstrations (`shots=k`) come
    from their train split, loaded once."""

    roles: ClassVar[Roles]
    system_prompt: ClassVar[str]
    default_metrics = RESPONSE_METRICS + OPTIONAL_RESPONSE_METRICS
    optional_metrics = OPTIONAL_RESPONSE_METRICS
    # FIRES Tables 1, 2, 4, 5: B-2, R-L, METEOR, F_BERT (any backbone), Dist-3 (per response), DIFF-EPITOME
    reported_metrics = ("bleu-2", "rouge-l", "meteor", "bertscore-f1-*", "dist-3-response", "diff-epitome")

    def __init__(self, prompt: str = "plain", shots: int = 0):
        self.options = PromptOptions.parse(prompt, shots, task=self.name)
        self._data_folder: Path | None = None
        self._shot_pool: list[Sample] | None = None

    def _samples(self, split: str, folder: Path) -> Sequence[Sample]:
        raise NotImplementedError

    def load(self, split: str, data_dir: Path) -> list[Sample]:
        samples = list(self._samples(split, data_dir))
        self._data_folder = Path(data_dir)
        return samples

    def images(self, sample: Sample) -> tuple[str, ...]:
        """Image files shown with the sample (video frames); none by default."""
        return ()

    def _demonstrations(self, sample: Sample) -> list[Sample]:
        if not self.options.shots:
            return []
        if self._shot_pool is None:
            from harness import paths

            folder = self._data_folder or paths.data_root() / self.dataset.folder
            self._shot_pool = list(self._samples("train", folder))
        return draw_shots(self._shot_pool, sample, self.options.shots, self.seed)

    def build_request(self, sample: Sample) -> ChatRequest:
        return build_request(self.options, self.roles, self.system_prompt, sample.history, self._demonstrations(sample), self.images(sample))

    def parse_response(self, output: str) -> ParsedOutput:
        return parse_output(self.options, output)
