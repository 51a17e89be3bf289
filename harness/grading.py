"""Model-graded scoring: ask a grader's requests of its role's model, read each answer, store the values.

A grader (contract.Grader) turns an item into one request per aspect and reads one value per answer;
an answer it cannot read is a missing value (None). Answers come through the role's cached model, so a
re-run or a resumed run asks nothing twice. Runs grade each record before scoring it (the values land
in `record.outcome`, where the metrics that declare the grader read them); the A/B judge grades sheet
rows the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .contract import ChatRequest, Grader, Metric, ModelOutput, SampleRecord

# answers a list of requests in order (a CachedModel's `generate`, a RoleClient's `ask_many`)
Answer = Callable[[Sequence[ChatRequest]], list[ModelOutput]]


@dataclass
class Graded:
    values: dict[str, Any]  # aspect -> value, None where the answer could not be read
    raw: dict[str, str]  # aspect -> the model's answer
    usage: dict[str, int] = field(default_factory=dict)

    @property
    def missing(self) -> int:
        return sum(v is None for v in self.values.values())


def graders_of(metrics: Sequence[Metric]) -> list[Grader]:
    """The distinct graders the metrics read (by name, in first-seen order)."""
    found: dict[str, Grader] = {}
    for metric in metrics:
        if metric.grader is not None:
            found.setdefault(metric.grader.name, metric.grader)
    return list(found.values())


def bind(graders: Sequence[Grader], models: dict[str, Any]) -> list[Grader]:
    """Each grader as the model of its role asks it: a judge with prompts of its own (ESC-RANK) replaces
    the grader with its own (`ChatModel.grader_for`); any other model keeps it."""
    return [models[g.role].grader_for(g) if g.role in models else g for g in graders]


def grade(grader: Grader, items: Sequence[Any], answer: Answer) -> list[Graded]:
    """Every aspect of every item, asked in one go (the model batches or sends them concurrently)."""
    asked = [grader.requests(item) for item in items]
    flat = [request for requests in asked for request in requests.values()]
    outputs = iter(answer(flat) if flat else [])
    results = []
    for requests in asked:
        values, raw, usage = {}, {}, {}
        for aspect in requests:
            output = next(outputs)
            raw[aspect] = output.text
            values[aspect] = grader.parse(aspect, output.text)
            for key, value in output.usage.items():
                usage[key] = usage.get(key, 0) + value
        results.append(Graded(values, raw, usage))
    return results


def grade_records(graders: Sequence[Grader], records: Sequence[SampleRecord], answers: dict[str, Answer]) -> list[SampleRecord]:
    """The records with each grader's values merged into their outcome, and its tokens into their usage
    under the role's prefix (`judge_prompt_tokens`)."""
    out = list(records)
    for grader in graders:
        for i, graded in enumerate(grade(grader, out, answers[grader.role])):
            usage = dict(out[i].usage)
            for key, value in graded.usage.items():
                usage[f"{grader.role}_{key}"] = usage.get(f"{grader.role}_{key}", 0) + value
            out[i] = out[i].model_copy(update={"outcome": {**out[i].outcome, **grader.outcome(graded.values, graded.raw)}, "usage": usage})
    return out
