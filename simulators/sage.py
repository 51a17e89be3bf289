"""`sage`: the SAGE sentient-agent benchmark (Tencent digitalhuman, 100 Chinese scenarios).

A sentient agent plays a person with a scene, a personality and a hidden need. Its emotion starts at 40.
After each reply of the model under test it first reasons about the reply (inner thought, feeling) and
states a change of its emotion, clamped to [-10, +10]; the emotion is kept within [0, 100]. Then it
answers in character, in the mood of its band (S >= 100, A >= 70, B >= 40, C >= 10, F < 10).

The dialogue ends when the emotion reaches 100 (success) or falls below 10 (failure) - the agent still
says its last words - when the agent ends the conversation itself (it marks that with [END]: "goodbye"),
or when the agent has spoken `max_turns` times, its opening included ("turn_limit"; the released code's
10 by default, the paper allows up to 20). The released code then asks the model under test for one more
reply that nothing reads; this task does not ask it, so the scores are the same for one call less. Score = mean final emotion; success and failure are counts.

A reasoning step without a readable change is asked again (`retries` times, with a reminder of the
format); if it still has none the emotion stays where it was and the step is recorded as malformed, so a
dialogue is never lost. The prompts are this project's own, written from the paper's description, in
Chinese and English (the scenario's language is detected unless `language=` is given).

    --task-args max_turns=10 language=auto|zh|en retries=2 agent_temperature=0.0 agent_max_tokens=512
                reply_max_tokens=256 prompt=plain|compeer prompts=harness|released sage_repo=PATH

`prompts=released,sage_repo=PATH` plays the agent with the prompts of the released code instead, read from
the user's clone of Tencent/digitalhuman, and follows the released loop (`simulators/sage_released.py`:
what is read, the rules, the released code's defects worked around); its file hashes go to run.json's
`task_provenance`. The agent's two steps then get `agent_max_tokens` and `reply_max_tokens` of 2048 unless
given (the released reply step writes its analysis before the message).

`prompt=compeer` makes the model under test answer in COMPEER's controllable empathetic reasoning format
(`tasks/compeer_reasoning.py`): that system prompt (in the scenario's language) replaces `SUPPORTER_SYSTEM`,
with up to 768 new tokens; each answer is parsed and only the parsed response goes on as its turn - what the
agent reads, reasons about and answers, and what the model itself sees of its earlier turns - never the
thinking; the turn's `details["compeer"]` keeps the raw output and the parse (beside the agent's reaction),
and the outcome counts the answers that broke the format (`compeer_format_errors`). The default (`plain`) is
unchanged.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

from harness.contract import (Ask, ChatRequest, DataFile, Dataset, DialogueResult, DialogueTask, DialogueTurn,
                              GenerationConfig, Message, Sample)
from harness.datafiles import read_text
from harness.errors import HarnessError
from tasks import compeer_reasoning

from . import sage_released
from .sage_released import ReleasedPrompts

_REPO = "https://raw.githubusercontent.com/Tencent/digitalhuman/6dcfa78b6556e7398a82809e383bd60a67fe19eb/SAGE/profile"
PROFILE_FILE = "simulator_profile_withfirsttalk.jsonl"
START_EMOTION = 40
MAX_STEP = 10
END_MARK = "[END]"


def band(emotion: int) -> str:
    if emotion >= 100:
        return "S"
    if emotion >= 70:
        return "A"
    if emotion >= 40:
        return "B"
    if emotion >= 10:
        return "C"
    return "F"


def is_chinese(text: str) -> bool:
    return len(re.findall(r"[\u4e00-\u9fff]", text)) >= 5


# --------------------------------------------------------------------------- prompts (this project's own)

SUPPORTER_SYSTEM = {
    "en": "You are a warm, emotionally perceptive conversation partner. Listen closely, respond to how the "
          "person feels as well as to what they say, and keep your replies natural and conversational.",
    "zh": "你是一位温暖、善于体察情绪的聊天伙伴。认真倾听，既回应对方说的事，也回应对方的感受，说话自然、口语化。",
}

BAND_MOODS = {
    "en": {
        "S": "You feel fully understood and helped; you are relieved and grateful and ready to wrap up warmly.",
        "A": "You feel fairly good about this conversation: open, cooperative, willing to share more.",
        "B": "You are neither won over nor put off: still guarded, testing whether the other person really gets you.",
        "C": "You are frustrated and unconvinced: your replies are curt, impatient or sarcastic.",
        "F": "You are fed up with this conversation and want to leave it.",
    },
    "zh": {
        "S": "你觉得自己被完全理解、真正得到了帮助，心里松了口气，带着感激准备温和地结束对话。",
        "A": "你对这次聊天感觉不错：愿意敞开心扉，配合对方，愿意多说一些。",
        "B": "你既没有被打动也没有被惹恼：仍有戒心，在试探对方是否真的懂你。",
        "C": "你感到沮丧、不被理解：回话简短、不耐烦，甚至带刺。",
        "F": "你已经受够了这次对话，只想离开。",
    },
}

LABELS = {
    "en": {"persona": "Who you are", "scene": "Your situation", "type": "Your personality type", "goal": "What you secretly want from this conversation",
           "emotion": "Your current emotion (0-100)", "history": "The conversation so far", "you": "You", "partner": "Partner",
           "latest": "The partner's latest reply"},
    "zh": {"persona": "你的人设", "scene": "你的处境", "type": "你的性格类型", "goal": "你在这次对话中没有说出口的需求",
           "emotion": "你当前的情绪值（0-100）", "history": "目前的对话", "you": "你", "partner": "对方", "latest": "对方最新的回复"},
}

REASON_TASK = {
    "en": "You are role-playing the person described below, talking with a chat partner about your situation. You never "
          "reveal that this is a role-play and you never say you are an AI.\nRead the partner's latest reply as this person "
          "would. Does it understand you, does it meet your hidden need, does it fit your personality? Then decide how your "
          "emotion changes, by a whole number from -10 (much worse) to +10 (much better).\n"
          "Answer in exactly three lines:\nThought: <your inner thought about the reply>\nFeeling: <how you feel now>\n"
          "Change: <a whole number from -10 to +10, e.g. +4 or -6>",
    "zh": "你在扮演下面描述的这个人，正在和一位聊天伙伴聊自己的处境。你绝不透露这是角色扮演，也绝不说自己是AI。\n"
          "请以这个人的身份读对方最新的回复：它理解你吗？满足你没说出口的需求了吗？符合你的性格吗？然后判断你的情绪"
          "变化，用-10（变差很多）到+10（变好很多）之间的整数表示。\n"
          "严格按三行作答：\n内心想法：<你对这条回复的内心想法>\n感受：<你现在的感受>\n情绪变化：<-10到+10的整数，如+4或-6>",
}

REPLY_TASK = {
    "en": "You are role-playing the person described below, talking with a chat partner about your situation. Stay in "
          "character: speak as this person would, in their style, in one short message. Do not state your hidden need "
          "outright; let it show gradually. Never say you are an AI or that this is a role-play.\nYour mood now: {mood}\n"
          "Your inner thought just now: {thought}\nIf you want to end the conversation (for instance you say goodbye), "
          "put [END] at the very end of your message.\nWrite only your next message.",
    "zh": "你在扮演下面描述的这个人，正在和一位聊天伙伴聊自己的处境。保持角色：用这个人的口吻和说话风格，只说简短的一段话。"
          "不要直接说出你没说出口的需求，让它慢慢流露。绝不说自己是AI或在角色扮演。\n你现在的心情：{mood}\n"
          "你刚才的内心想法：{thought}\n如果你想结束对话（比如道别），在消息最后加上[END]。\n只写出你的下一句话。",
}

FORMAT_REMINDER = {
    "en": "Your answer had no readable 'Change:' line. Answer again in the three-line format; the last line must be "
          "'Change: ' followed by a whole number from -10 to +10.",
    "zh": "你的回答里没有可读的“情绪变化：”一行。请重新按三行格式作答，最后一行必须是“情绪变化：”加上-10到+10之间的整数。",
}

_SIGN = "+\\-－＋−"  # ASCII, full-width and Unicode minus/plus signs
_CHANGE = re.compile(rf"(?:change|情绪变化|变化)\**\s*[:：]\s*\**\s*([{_SIGN}]?\s*\d+)", re.IGNORECASE)
_LONE_NUMBER = re.compile(rf"^\s*([{_SIGN}]\s*\d+)\s*$", re.MULTILINE)
_THOUGHT = re.compile(r"(?:thought|内心想法)\s*[:：]\s*(.+)", re.IGNORECASE)
_FEELING = re.compile(r"(?:feeling|感受)\s*[:：]\s*(.+)", re.IGNORECASE)


_SIGNS_TO_ASCII = str.maketrans({"－": "-", "−": "-", "＋": "+"})


def parse_reasoning(text: str) -> dict[str, Any]:
    """{"change": int | None, "thought": str, "feeling": str}: the labelled change, else a line holding only a
    signed number; None when there is neither (the step is asked again)."""
    found = _CHANGE.findall(text) or _LONE_NUMBER.findall(text)
    change = int(found[-1].translate(_SIGNS_TO_ASCII).replace(" ", "")) if found else None
    thought, feeling = _THOUGHT.search(text), _FEELING.search(text)
    return {"change": change, "thought": thought.group(1).strip() if thought else text.strip(),
            "feeling": feeling.group(1).strip() if feeling else ""}


MODEL_PROMPTS = ("plain", compeer_reasoning.MODE)  # how the model under test is prompted (`prompt=`)
AGENT_PROMPTS = ("harness", "released")  # whose prompts the agent (and the supporter's system prompt) follow (`prompts=`)
RELEASED_MAX_TOKENS = 2048
_UNSET: Any = object()  # a token limit not given: the mode's default


class SageTask(DialogueTask):
    """SAGE: a sentient agent with a hidden emotion talks with the model; score = mean final emotion."""

    name = "sage"
    dataset = Dataset(
        folder="sage",
        source="SAGE, Tencent/digitalhuman (MIT): SAGE/profile/simulator_profile_withfirsttalk.jsonl",
        files=(DataFile(PROFILE_FILE, f"{_REPO}/{PROFILE_FILE}", "99a2ed2ce2da3702a12c4abb4ccac85703bd1ad2a984012bf81b292458c3ee8b"),),
    )
    splits = ("test",)
    default_metrics = ("sage-score", "sage-success", "sage-failure")
    reported_metrics = ("sage-score", "sage-success", "sage-failure")  # SAGE's leaderboard, COMPEER Table 3
    roles: ClassVar[tuple[str, ...]] = ("seeker",)
    prompt_version = "sage-prompts-v1"

    def __init__(self, max_turns: Any = 10, language: str = "auto", retries: Any = 2, agent_temperature: Any = 0.0,
                 agent_max_tokens: Any = _UNSET, reply_max_tokens: Any = _UNSET, prompt: str = "plain", prompts: str = "harness",
                 sage_repo: Any = None):
        if prompts not in AGENT_PROMPTS:
            raise HarnessError(f"sage: prompts must be harness or released (e.g. --task-args prompts=released,sage_repo=PATH), got '{prompts}'.")
        released = prompts == "released"
        if released and not sage_repo:
            raise HarnessError("sage: prompts=released needs sage_repo=PATH, your clone of the released SAGE code "
                               f"({sage_released.CLONE_HINT}).")
        if sage_repo and not released:
            raise HarnessError("sage: sage_repo= is read with prompts=released only; add prompts=released or drop sage_repo.")
        if released and language == "en":
            raise HarnessError("sage: the released prompts are Chinese; drop language=en with prompts=released.")
        default_agent, default_reply = (RELEASED_MAX_TOKENS, RELEASED_MAX_TOKENS) if released else (512, 256)
        try:
            self.max_turns, self.retries = int(max_turns), int(retries)
            self.agent_temperature = float(agent_temperature)
            self.agent_max_tokens = int(default_agent if agent_max_tokens is _UNSET else agent_max_tokens)
            self.reply_max_tokens = int(default_reply if reply_max_tokens is _UNSET else reply_max_tokens)
        except (TypeError, ValueError):
            raise HarnessError("sage: max_turns, retries, agent_max_tokens and reply_max_tokens must be whole numbers, agent_temperature a number.") from None
        if self.max_turns < 2 or self.retries < 0:
            raise HarnessError(f"sage: need max_turns >= 2 and retries >= 0, got {max_turns} and {retries}.")
        if language not in ("auto", "zh", "en"):
            raise HarnessError(f"sage: language must be auto, zh or en, got '{language}'.")
        self.language = language
        if prompt not in MODEL_PROMPTS:
            raise HarnessError(f"sage: prompt must be one of {', '.join(MODEL_PROMPTS)} (e.g. --task-args prompt=compeer), got '{prompt}'.")
        self.prompt = prompt
        self.prompts, self.sage_repo = prompts, sage_repo
        self._released: ReleasedPrompts | None = None
        if released:  # the released loop's turn limit is part of what the published numbers mean
            suffix = "" if self.max_turns == sage_released.RELEASED_MAX_TURNS else f"+max_turns={self.max_turns}"
            self.prompt_version = sage_released.PROMPT_VERSION + suffix  # type: ignore[misc]

    def released(self) -> ReleasedPrompts:
        """The released prompts, read from the clone once (at `load`, before any model is opened)."""
        if self._released is None:
            self._released = sage_released.read_clone(self.sage_repo)
        return self._released

    def provenance(self) -> dict[str, Any]:
        return self.released().provenance() if self.prompts == "released" else {}

    # ----------------------------------------------------------------- data

    def load(self, split: str, data_dir: Path) -> list[Sample]:
        if self.prompts == "released":
            self.released()  # a missing or malformed clone fails before anything runs
        path = data_dir / PROFILE_FILE
        samples = []
        # split on "\n" only: str.splitlines would break inside texts holding Unicode line separators
        for number, line in enumerate(read_text(path, "restore the file (`harness data fetch sage`)").split("\n"), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                labels = {k: row[k] for k in ("player", "scene", "main_cha", "cha_group", "task", "first_talk")}
                labels["scenario_id"] = row["id"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise HarnessError(f"{path}:{number}: not a SAGE scenario ({exc}); restore the file (`harness data fetch sage`).") from None
            samples.append(Sample(id=f"sage/{row['id']}", history=(), reference="", labels=labels))
        return samples

    def language_of(self, sample: Sample) -> str:
        if self.prompts == "released":
            return "zh"
        if self.language != "auto":
            return self.language
        return "zh" if is_chinese(sample.labels["first_talk"] + sample.labels["player"]) else "en"

    # ----------------------------------------------------------------- requests

    def supporter_request(self, turns: list[DialogueTurn], language: str) -> ChatRequest:
        compeer = self.prompt == compeer_reasoning.MODE  # COMPEER's prompt instead; its earlier turns are their responses only
        if compeer:
            system = compeer_reasoning.dialogue_system_prompt(language)
        else:
            system = self.released().supporter if self.prompts == "released" else SUPPORTER_SYSTEM[language]
        messages = [Message(role="system", content=system)]
        messages += [Message(role="user" if t.role == "seeker" else "assistant", content=t.text) for t in turns]
        extra = {"generation": GenerationConfig(max_tokens=compeer_reasoning.MAX_TOKENS)} if compeer else {}
        return ChatRequest(messages=tuple(messages), **extra)

    def _reply(self, turns: list[DialogueTurn], language: str, ask: Ask) -> DialogueTurn:
        """The model under test's next turn: its reply as written, or in compeer mode the parsed response only."""
        output = ask("model", self.supporter_request(turns, language)).text
        if self.prompt == compeer_reasoning.MODE:
            text, details = compeer_reasoning.dialogue_reply(output)
            return DialogueTurn(role="supporter", text=text, details=details)
        return DialogueTurn(role="supporter", text=output.strip())

    def _card(self, sample: Sample, language: str, emotion: int, turns: list[DialogueTurn]) -> str:
        label = LABELS[language]
        who = {"seeker": label["you"], "supporter": label["partner"]}
        character = sample.labels["main_cha"]
        if sample.labels.get("cha_group"):
            character += " (" + ", ".join(sample.labels["cha_group"]) + ")"
        history = "\n".join(f"{who[t.role]}: {t.text}" for t in turns)
        return (f"## {label['persona']}\n{sample.labels['player']}\n\n## {label['scene']}\n{sample.labels['scene']}\n\n"
                f"## {label['type']}\n{character}\n\n## {label['goal']}\n{sample.labels['task']}\n\n"
                f"## {label['emotion']}\n{emotion}\n\n## {label['history']}\n{history}")

    def reasoning_request(self, sample: Sample, language: str, emotion: int, turns: list[DialogueTurn], reminders: int) -> ChatRequest:
        latest = turns[-1].text
        content = f"{self._card(sample, language, emotion, turns[:-1])}\n\n## {LABELS[language]['latest']}\n{latest}"
        messages = [Message(role="system", content=REASON_TASK[language]), Message(role="user", content=content)]
        # each retry adds one reminder: a different request, so the cache does not hand back the same answer
        messages += [Message(role="user", content=FORMAT_REMINDER[language]) for _ in range(reminders)]
        return ChatRequest(messages=tuple(messages), generation=GenerationConfig(temperature=self.agent_temperature, max_tokens=self.agent_max_tokens))

    def reply_request(self, sample: Sample, language: str, emotion: int, turns: list[DialogueTurn], thought: str) -> ChatRequest:
        system = REPLY_TASK[language].format(mood=BAND_MOODS[language][band(emotion)], thought=thought)
        messages = (Message(role="system", content=system), Message(role="user", content=self._card(sample, language, emotion, turns)))
        return ChatRequest(messages=messages, generation=GenerationConfig(temperature=self.agent_temperature, max_tokens=self.reply_max_tokens))

    # ----------------------------------------------------------------- the state machine

    def reason(self, sample: Sample, language: str, emotion: int, turns: list[DialogueTurn], ask: Ask) -> dict[str, Any]:
        """One reasoning step, asked again while it has no readable change."""
        attempts = []
        for reminders in range(self.retries + 1):
            text = ask("seeker", self.reasoning_request(sample, language, emotion, turns, reminders)).text
            attempts.append(text)
            parsed = parse_reasoning(text)
            if parsed["change"] is not None:
                break
        parsed["attempts"] = len(attempts)
        parsed["raw"] = attempts[-1]
        return parsed

    def play(self, sample: Sample, ask: Ask) -> DialogueResult:
        if self.prompts == "released":
            return self._play_released(sample, ask)
        language = self.language_of(sample)
        emotion = START_EMOTION
        turns = [DialogueTurn(role="seeker", text=sample.labels["first_talk"], details={"emotion": emotion, "opening": True})]
        trajectory = [emotion]
        malformed = 0
        end = "turn_limit"
        agent_turns = 1  # the opening counts, as in the released code
        while agent_turns < self.max_turns:
            turns.append(self._reply(turns, language, ask))
            step = self.reason(sample, language, emotion, turns, ask)
            # the agent's reaction is recorded on the reply it reacts to
            reaction: dict[str, Any] = {"thought": step["thought"], "feeling": step["feeling"], "attempts": step["attempts"]}
            if step["change"] is None:
                malformed += 1
                change = 0
                reaction.update(malformed=True, raw=step["raw"])
            else:
                change = max(-MAX_STEP, min(MAX_STEP, step["change"]))
                if change != step["change"]:
                    reaction["stated_change"] = step["change"]
            emotion = max(0, min(100, emotion + change))
            trajectory.append(emotion)
            reaction.update(change=change, emotion=emotion, band=band(emotion))
            turns[-1] = turns[-1].model_copy(update={"details": {**turns[-1].details, **reaction}})
            if emotion >= 100:
                end = "success"
            elif emotion < 10:
                end = "failure"
            text = ask("seeker", self.reply_request(sample, language, emotion, turns, step["thought"])).text.strip()
            agent_turns += 1
            said_goodbye = END_MARK in text
            turns.append(DialogueTurn(role="seeker", text=text.replace(END_MARK, "").strip(), details={"emotion": emotion}))
            if end in ("success", "failure"):
                break  # the agent's last words, in the mood of its final band
            if said_goodbye:
                end = "goodbye"
                break
        outcome = {"final_emotion": emotion, "end": end, "trajectory": trajectory, "rounds": sum(t.role == "supporter" for t in turns),
                   "malformed_steps": malformed, "language": language, "max_turns": self.max_turns}
        if self.prompt == compeer_reasoning.MODE:
            outcome["compeer_format_errors"] = sum(not t.details["compeer"]["format_ok"] for t in turns if "compeer" in t.details)
        return DialogueResult(turns=turns, outcome=outcome)

    # ----------------------------------------------------------------- the released loop (prompts=released)

    def _agent_request(self, content: str, max_tokens: int, reminders: int = 0) -> ChatRequest:
        messages = [Message(role="user", content=content)]
        messages += [Message(role="user", content=sage_released.REMINDER) for _ in range(reminders)]
        return ChatRequest(messages=tuple(messages), generation=GenerationConfig(temperature=self.agent_temperature, max_tokens=max_tokens))

    def _play_released(self, sample: Sample, ask: Ask) -> DialogueResult:
        """The released loop (simulators/sage_released.py): the same outcome and turn shapes as `play`."""
        prompts = self.released()
        player, scene = sample.labels["player"], sample.labels["scene"]
        emotion = START_EMOTION
        turns = [DialogueTurn(role="seeker", text=sample.labels["first_talk"], details={"emotion": emotion, "opening": True})]
        history: list[tuple[str, str]] = [("user", sample.labels["first_talk"])]  # as the released prompts show it
        trajectory = [emotion]
        malformed = 0
        end = "turn_limit"
        agent_turns = 1  # the opening counts
        while agent_turns < self.max_turns:
            turns.append(self._reply(turns, "zh", ask))
            history.append(("assistant", turns[-1].text))
            attempts = []
            for reminders in range(self.retries + 1):
                request = self._agent_request(prompts.planning_prompt(player, scene, emotion, history), self.agent_max_tokens, reminders)
                attempts.append(ask("seeker", request).text)
                planning = sage_released.parse_planning(attempts[-1])
                if planning["change"] is not None:
                    break
            reaction: dict[str, Any] = {"thought": planning["activity"], "feeling": planning["analyse"], "content": planning["content"],
                                        "target_completion": planning["TargetCompletion"], "attempts": len(attempts)}
            if planning["change"] is None:
                malformed += 1
                change = 0
                reaction.update(malformed=True, raw=attempts[-1])
            else:
                change = planning["change"]
                if change != planning["stated_change"]:
                    reaction["stated_change"] = planning["stated_change"]
            emotion = min(100, emotion + change)  # the released cap; no floor (it ends below 10 before reaching 0)
            trajectory.append(emotion)
            reaction.update(change=change, emotion=emotion, band=band(emotion))
            turns[-1] = turns[-1].model_copy(update={"details": {**turns[-1].details, **reaction}})
            output = ask("seeker", self._agent_request(prompts.reply_prompt(player, scene, emotion, history, planning), self.reply_max_tokens)).text
            plan, text = sage_released.parse_reply(output)
            agent_turns += 1
            turns.append(DialogueTurn(role="seeker", text=text, details={"emotion": emotion, "reply_plan": plan}))
            history.append(("user", text))
            if emotion >= 100:
                end = "success"
            elif emotion < 10:
                end = "failure"
            elif sage_released.said_goodbye(text):
                end = "goodbye"
            if end != "turn_limit":
                break
        outcome = {"final_emotion": emotion, "end": end, "trajectory": trajectory, "rounds": sum(t.role == "supporter" for t in turns),
                   "malformed_steps": malformed, "language": "zh", "max_turns": self.max_turns, "prompts": "released"}
        if self.prompt == compeer_reasoning.MODE:
            outcome["compeer_format_errors"] = sum(not t.details["compeer"]["format_ok"] for t in turns if "compeer" in t.details)
        return DialogueResult(turns=turns, outcome=outcome)
