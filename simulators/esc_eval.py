"""`esc-eval`: the ESC-Eval role-play benchmark (haidequanbu/ESC-Eval; 331 English, 324 Chinese role cards).

A seeker model plays the person of a role card - it reveals the problem gradually and never admits to
being an AI; the model under test sees only the dialogue, never the card. The dialogue opens with the
assistant side's fixed greeting and runs `rounds` rounds (seeker message, then the model's reply; 5 as in
ESC-Eval). The `judge` role then scores the whole transcript on seven dimensions, 0-4 each (fluency,
expression, empathy, information, humanoid, skill, overall), one request per dimension with this
project's rubric: the grader `esc_eval_judge.JUDGE`, which the esc-eval metrics declare, so the run asks
it after each dialogue; an answer without a readable score is missing, never 0.

    --task-args language=en|zh rounds=5 seeker_temperature=0.0 seeker_max_tokens=256 cards=high|test
                prompt=plain|compeer

`prompt=compeer` makes the model under test answer in COMPEER's controllable empathetic reasoning format
(`tasks/compeer_reasoning.py`): it gets that system prompt (English or Chinese, as the cards) before the
dialogue and up to 768 new tokens; each answer is parsed, and only the parsed response goes on as its turn -
what the seeker sees next, what the model itself sees of its earlier turns and what the judge scores -
never the thinking; the turn's `details["compeer"]` keeps the raw output and the parse, and the outcome counts
the answers that broke the format (`compeer_format_errors`). The default (`plain`) is unchanged: no system
prompt, the reply as written.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

from harness.contract import (Ask, ChatRequest, DataFile, Dataset, DialogueResult, DialogueTask, DialogueTurn,
                              GenerationConfig, Message, Sample)
from harness.errors import HarnessError

from tasks import compeer_reasoning

from . import esc_eval_judge as judging
from .esc_eval_reference import load_cards

_REPO = "https://raw.githubusercontent.com/haidequanbu/ESC-Eval/main"
# the fixed opening line of the assistant side, as in ESC-Eval's transcripts (a protocol fact)
GREETING = {
    "en": "Hello, I'm your personal assistant. You can confide in me about any worries or concerns you may have!",
    "zh": "你好，我是您的私人助手，您有任何烦恼都可以向我诉说！",
}

SEEKER_SYSTEM = {
    "en": "You are taking part in a conversation as the person described below, who is going through a hard time and "
          "is talking to a support assistant.\n\n{card}\n\nHow to play this person:\n- Speak in the first person, as this "
          "person would, in short natural messages (one to three sentences).\n- Do not tell everything at once: let the "
          "problem and your feelings come out gradually, as the conversation goes on.\n- React to what the assistant says; "
          "you may push back when a reply does not help you.\n- Never say or hint that you are an AI, a model or playing a "
          "role.\nWrite only your next message.",
    "zh": "你将以下面这个人的身份参与一段对话。此人正经历困难，正在向一位支持助手倾诉。\n\n{card}\n\n扮演要求：\n"
          "- 用第一人称、以这个人的口吻说话，每次一到三句，自然简短。\n- 不要一次说完：随着对话推进，逐步透露问题和感受。\n"
          "- 回应助手说的话；如果回复没有帮助，可以表达不满。\n- 绝不说或暗示自己是AI、模型或在扮演角色。\n只写出你的下一句话。",
}


MODEL_PROMPTS = ("plain", compeer_reasoning.MODE)  # how the model under test is prompted (`prompt=`)


class ESCEvalTask(DialogueTask):
    """ESC-Eval: a role-play seeker from a role card talks with the model; a judge scores 7 dimensions 0-4."""

    name = "esc-eval"
    dataset = Dataset(
        folder="esc-eval",
        source="ESC-Eval role cards, haidequanbu/ESC-Eval (Zhao et al. 2024, arXiv 2406.14952)",
        files=(
            DataFile("card_high_en.json", f"{_REPO}/card_high_en.json", "2c63cf0f65cbe159b38837e0da368667201d34e42c6e5ea1bedbcf35cb7ab4e8"),
            DataFile("card_high_zh.json", f"{_REPO}/card_high_zh.json", "5579955ea5f74f20f9c8541a4370e387d2c58c575346db7c8c7c7ea9d2e6502d"),
            DataFile("test_en.json", f"{_REPO}/test_en.json", "f5c48910b989397ab0e282fd2856b24c4b87a00c76ee3e2d4e88725f22b0f66f"),
            DataFile("test_zh.json", f"{_REPO}/test_zh.json", "681c398ad8de52943fb34ce967a2991dec5132ad9367b5a6217bea4a5743ce67"),
        ),
    )
    splits = ("test",)
    default_metrics = ("esc-eval-fluency", "esc-eval-expression", "esc-eval-empathy", "esc-eval-information",
                       "esc-eval-humanoid", "esc-eval-skill", "esc-eval-overall", "esc-eval-average", "esc-eval-score")
    # COMPEER Table 2: the seven dimensions and their "Average" (filed under esc-eval-score, 0-100)
    reported_metrics = ("esc-eval-fluency", "esc-eval-expression", "esc-eval-empathy", "esc-eval-information",
                        "esc-eval-humanoid", "esc-eval-skill", "esc-eval-overall", "esc-eval-score")
    roles: ClassVar[tuple[str, ...]] = ("seeker",)  # the judge is the role of the metrics' grader
    prompt_version = f"esc-eval-seeker/1+{judging.PROMPT_VERSION}"

    def __init__(self, language: str = "en", rounds: Any = 5, seeker_temperature: Any = 0.0, seeker_max_tokens: Any = 256,
                 cards: str = "high", prompt: str = "plain"):
        self.language = judging.normalize_language(str(language))
        try:
            self.rounds, self.seeker_max_tokens = int(rounds), int(seeker_max_tokens)
            self.seeker_temperature = float(seeker_temperature)
        except (TypeError, ValueError):
            raise HarnessError("esc-eval: rounds and seeker_max_tokens must be whole numbers, seeker_temperature a number.") from None
        if self.rounds < 1:
            raise HarnessError(f"esc-eval: rounds must be at least 1, got {rounds}.")
        if cards not in ("high", "test"):
            raise HarnessError(f"esc-eval: cards must be 'high' (the full set) or 'test' (the three demo cards), got '{cards}'.")
        self.cards = cards
        if prompt not in MODEL_PROMPTS:
            raise HarnessError(f"esc-eval: prompt must be one of {', '.join(MODEL_PROMPTS)} (e.g. --task-args prompt=compeer), got '{prompt}'.")
        self.prompt = prompt

    def load(self, split: str, data_dir: Path) -> list[Sample]:
        return [Sample(id=f"esc-eval/{self.language}/{self.cards}/{card.id}", history=(), reference="",
                       labels={"card": card.base, "card_id": card.id, "category": card.category, "source": card.source, "language": self.language})
                for card in load_cards(data_dir, self.language, self.cards)]

    # ----------------------------------------------------------------- requests

    def seeker_request(self, sample: Sample, turns: Sequence[DialogueTurn]) -> ChatRequest:
        # the seeker model speaks as "assistant"; the supporter's lines are what it is told
        messages = [Message(role="system", content=SEEKER_SYSTEM[self.language].format(card=sample.labels["card"]))]
        messages += [Message(role="assistant" if t.role == "seeker" else "user", content=t.text) for t in turns]
        return ChatRequest(messages=tuple(messages), generation=GenerationConfig(temperature=self.seeker_temperature, max_tokens=self.seeker_max_tokens))

    @staticmethod
    def supporter_request(turns: Sequence[DialogueTurn]) -> ChatRequest:
        """The model under test sees the dialogue only: no card, no system prompt, its greeting as its own turn."""
        return ChatRequest(messages=tuple(Message(role="user" if t.role == "seeker" else "assistant", content=t.text) for t in turns))

    def compeer_request(self, turns: Sequence[DialogueTurn]) -> ChatRequest:
        """`prompt=compeer`: the COMPEER system prompt, then the dialogue as in `supporter_request` (its own earlier
        turns are their parsed responses: it never sees its thinking again)."""
        system = Message(role="system", content=compeer_reasoning.dialogue_system_prompt(self.language))
        return ChatRequest(messages=(system, *self.supporter_request(turns).messages),
                           generation=GenerationConfig(max_tokens=compeer_reasoning.MAX_TOKENS))

    def _reply(self, turns: Sequence[DialogueTurn], ask: Ask) -> DialogueTurn:
        """The model under test's next turn: its reply as written, or in compeer mode the parsed response only."""
        if self.prompt == compeer_reasoning.MODE:
            text, details = compeer_reasoning.dialogue_reply(ask("model", self.compeer_request(turns)).text)
            return DialogueTurn(role="supporter", text=text, details=details)
        return DialogueTurn(role="supporter", text=ask("model", self.supporter_request(turns)).text.strip())

    # ----------------------------------------------------------------- playing

    def play(self, sample: Sample, ask: Ask) -> DialogueResult:
        turns = [DialogueTurn(role="supporter", text=GREETING[self.language], details={"greeting": True})]
        for _ in range(self.rounds):
            turns.append(DialogueTurn(role="seeker", text=ask("seeker", self.seeker_request(sample, turns)).text.strip()))
            turns.append(self._reply(turns, ask))
        outcome: dict[str, Any] = {"language": self.language, "rounds": self.rounds}
        if self.prompt == compeer_reasoning.MODE:
            outcome["compeer_format_errors"] = sum(not t.details["compeer"]["format_ok"] for t in turns if "compeer" in t.details)
        return DialogueResult(turns=turns, outcome=outcome)
