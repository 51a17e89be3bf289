"""In-memory tasks, metrics, a grader and model adapters for the engine tests (tests/test_engine.py): no
dataset file is read (`Dataset(files=())`), so the runner, resume, cache, scoring and dialogue engine are
tested on their own. `register()` puts them in the registries under names no real plugin uses; a CLI-less
subprocess (the kill test) imports this module and calls it too."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

from harness import registry
from harness.contract import (ChatRequest, Dataset, DialogueResult, DialogueTask, DialogueTurn, GenerationConfig, Grader, Message,
                              Metric, MetricValue, ModelOutput, Sample, ScoredPair, Task, Turn)
from harness.models.scripted import ScriptedModel

PREFIX = "engine-test-"
TASK = PREFIX + "single"
DIALOGUE = PREFIX + "dialogue"
LENGTH = PREFIX + "length"  # per sample: characters of the response
QUESTIONS = PREFIX + "questions"  # corpus: responses containing "?"
HELPFUL = PREFIX + "helpful"  # corpus: mean judge rating (grader "rating")
FLAKY = PREFIX + "flaky"
SLOW = PREFIX + "slow"
USAGE = PREFIX + "usage"
RECORDING = PREFIX + "recording"

IN_MEMORY = Dataset(folder="mem", files=(), source="in memory")

# the seeker's last turns of the single-turn task (what the echo model answers)
TEXTS = (
    "I lost my job today.",  # 20 characters
    "Why does nobody call me?",  # 24, a question
    "I cannot sleep at night.",  # 24
    "Is it normal to feel this way?",  # 30, a question
    "My cat is sick.",  # 15
    "What should I do now?",  # 21, a question
)
TOPICS = ("work", "family", "exams", "a breakup", "loneliness")  # the dialogue task's samples


def text_of(i: int) -> str:
    return TEXTS[i] if i < len(TEXTS) else f"Message number {i}."


class MemoryTask(Task):
    """Single-turn: sample i asks the last turn of its history; `size` samples (a task argument)."""

    name = TASK
    dataset = IN_MEMORY
    splits = ("test", "dev")
    default_metrics = (LENGTH, QUESTIONS)

    def __init__(self, size: int = 6):
        self.size = int(size)

    def load(self, split: str, data_dir: Path) -> list[Sample]:
        order = range(self.size) if split == "test" else reversed(range(self.size))
        return [Sample(id=f"mem/{split}/{i}",
                       history=(Turn(speaker="Client", text="Hello."), Turn(speaker="Therapist", text="Hi, what is on your mind?"),
                                Turn(speaker="Client", text=text_of(i))),
                       reference="I hear you.", labels={"i": i}) for i in order]

    def build_request(self, sample: Sample) -> ChatRequest:
        return ChatRequest(messages=(Message(role="system", content="Be kind."), Message(role="user", content=sample.history[-1].text)),
                           generation=GenerationConfig(max_tokens=32))


class MemoryDialogue(DialogueTask):
    """Two rounds of seeker then model; `adapter` (a task argument) is asked of the model's requests."""

    name = DIALOGUE
    dataset = IN_MEMORY
    splits = ("test",)
    default_metrics = (LENGTH,)
    roles = ("seeker",)
    prompt_version = "engine-test-v1"

    def __init__(self, size: int = 5, adapter: str | None = None):
        self.size, self.adapter = int(size), adapter

    def load(self, split: str, data_dir: Path) -> list[Sample]:
        return [Sample(id=f"mem-dialogue/{split}/{i}", history=(Turn(speaker="Client", text=f"I want to talk about {TOPICS[i % len(TOPICS)]}."),),
                       reference="", labels={"topic": TOPICS[i % len(TOPICS)]}) for i in range(self.size)]

    def play(self, sample: Sample, ask) -> DialogueResult:
        topic = sample.labels["topic"]
        turns: list[DialogueTurn] = []
        for round_ in (1, 2):
            seeker = ask("seeker", ChatRequest(messages=(Message(role="user", content=f"Play a seeker, round {round_}: {sample.history[-1].text}"),)))
            turns.append(DialogueTurn(role="seeker", text=seeker.text))
            reply = ask("model", ChatRequest(messages=(Message(role="user", content=f"About {topic}, round {round_}: {seeker.text}"),),
                                             adapter=self.adapter))
            turns.append(DialogueTurn(role="supporter", text=reply.text))
        return DialogueResult(turns=turns, outcome={"rounds": 2, "topic": topic})


class LengthMetric(Metric):
    name = LENGTH
    description = "response length in characters"
    per_sample = True

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        values = [float(len(p.response)) for p in pairs]
        return MetricValue(corpus=sum(values) / len(values) if values else 0.0, per_sample=values)


class QuestionCount(Metric):
    name = QUESTIONS
    description = "responses containing a question mark"

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        return MetricValue(corpus=float(sum("?" in p.response for p in pairs)))


class QuestionShare(Metric):
    """Corpus: % of responses holding '?', from a declared per-pair feature that records each pair it is
    computed for (`calls`), and with `runs`, how many samples the runs there had written by then; `broken`: it fails."""

    name = PREFIX + "question-share"
    description = "share of responses asking a question"

    def __init__(self, broken: bool = False, runs: Path | None = None):
        self.broken, self.calls, self.runs, self.written = broken, [], runs, []

    def _asks(self, pair: ScoredPair) -> bool:
        if self.broken:
            raise RuntimeError("feature boom")
        self.calls.append(pair.response)
        if self.runs is not None:
            self.written.append(sum(len(f.read_text().splitlines()) for f in self.runs.glob("*/samples.jsonl")))
        return "?" in pair.response

    def features(self):
        return {"asks": self._asks}

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        asks = [pair.memo("asks", self._asks) for pair in pairs]
        return MetricValue(corpus=100 * sum(asks) / len(asks))


class RatingGrader(Grader):
    name = "rating"
    role = "judge"
    prompt_version = "engine-test-rating-v1"

    def requests(self, item: Any) -> dict[str, ChatRequest]:
        return {"helpful": ChatRequest(messages=(Message(role="user", content=f"How helpful is this reply? {item.response}"),))}

    def parse(self, aspect: str, answer: str) -> Any:
        found = re.search(r"Rating:\s*(\d+)", answer)
        return int(found.group(1)) if found else None


class HelpfulMetric(Metric):
    name = HELPFUL
    description = "mean judge rating of helpfulness"
    grader = RatingGrader()

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        values = [p.outcome.get("rating", {}).get("helpful") for p in pairs]
        read = [v for v in values if v is not None]
        return MetricValue(corpus=sum(read) / len(read) if read else float("nan"), missing=len(values) - len(read))


class FlakyEcho(ScriptedModel):
    """Echoes `ok` requests, then fails like a server that went away, quoting its key in the error."""

    name = FLAKY
    batch_size = 1  # one request per generate call: exactly `ok` answers come back before the failure

    def __init__(self, context=None, api_key: str | None = None, ok: int = 0):
        super().__init__(context, echo=True)
        self.api_key, self.ok, self.answered = api_key, int(ok), 0

    def cache_identity(self) -> dict[str, Any]:
        return {"echo": True, "server": "flaky-test"}  # never the key

    def generate(self, requests):
        if self.answered + len(requests) > self.ok:
            raise RuntimeError(f"boom {self.api_key}: connection reset")
        self.answered += len(requests)
        return super().generate(requests)


class HealthyEcho(FlakyEcho):
    """The same server back up: the same cache identity, never fails. With `watch` set to a run.json, it notes
    the (status, error) that file says at each call (what a reader sees while the run is worked on)."""

    watch: Path | None = None
    headers_seen: list[tuple[str, Any]] = []

    def __init__(self, context=None, api_key: str | None = None, ok: int = 0):
        super().__init__(context, api_key=api_key, ok=10**9)

    def generate(self, requests):
        if HealthyEcho.watch is not None:
            header = json.loads(HealthyEcho.watch.read_text())
            HealthyEcho.headers_seen.append((header["status"], header["error"]))
        return super().generate(requests)


class SlowEcho(ScriptedModel):
    """Echo, one request at a time with a pause (for the kill test's subprocess)."""

    name = SLOW
    batch_size = 1

    def __init__(self, context=None, delay: float = 0.0):
        super().__init__(context, echo=True, delay=delay)


class FastEcho(SlowEcho):
    """The slow model without its pause (same cache identity), for resuming in the test process."""

    def __init__(self, context=None, delay: float = 0.0):
        super().__init__(context, delay=0.0)


class UsageScripted(ScriptedModel):
    """The scripted model reporting tokens: prompt = words of the last user message, completion = words of the answer."""

    name = USAGE

    def generate(self, requests):
        outputs = super().generate(requests)
        return [ModelOutput(choices=out.choices, usage={"prompt_tokens": len(r.messages[-1].content.split()),
                                                        "completion_tokens": len(out.text.split())})
                for r, out in zip(requests, outputs)]


class RecordingEcho(ScriptedModel):
    """Echo that keeps every request it receives in `RecordingEcho.seen` (for assertions on what was sent)."""

    name = RECORDING
    seen: list[ChatRequest] = []

    def __init__(self, context=None, **kw):
        super().__init__(context, echo=True)

    def generate(self, requests):
        RecordingEcho.seen.extend(requests)
        return super().generate(requests)


def register() -> None:
    registry.tasks.register(TASK, MemoryTask)
    registry.tasks.register(DIALOGUE, MemoryDialogue)
    registry.metrics.register(LENGTH, LengthMetric())
    registry.metrics.register(QUESTIONS, QuestionCount())
    registry.metrics.register(HELPFUL, HelpfulMetric())
    registry.models.register(FLAKY, FlakyEcho)
    registry.models.register(SLOW, SlowEcho)
    registry.models.register(USAGE, UsageScripted)
    registry.models.register(RECORDING, RecordingEcho)
