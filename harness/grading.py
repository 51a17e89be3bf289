"""Model-graded scoring: ask a grader's requests of its role's model, read each answer, store the values.

A grader (contract.Grader) turns an item into one request per aspect and reads one value per answer;
an answer it cannot read is a missing value (None). Answers come through the role's cached model, so a
re-run or a resumed run asks nothing twice. Runs grade each record before scoring it (the values land
in `record.outcome`, where the metrics that declare the grader read them); the A/B judge grades sheet
rows the same way.

Panels. A grader's role may be played by several models at once: the role itself (`judge`) and the
numbered roles after it (`judge2`, `judge3`, ...; `--judge A --judge B`). Each is asked every aspect with
its own prompts (`bind`); the record's outcome then holds, under the grader's name, the panel's value per
aspect - the mean of the judges' values, a judge's missing value left out of that mean, None only when
every judge's is missing - and under `<name>_panel` each judge's own outcome by role, exactly what a run
with that judge alone would hold (`{"judge_panel": {"judge": {"judge": {...}, "judge_raw": {...}}, "judge2": ...}}`).
`panel_agreement` turns those into Krippendorff's alpha per aspect (summary.json `agreement`).
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from . import agreement
from .contract import ChatRequest, Grader, Metric, ModelOutput, PanelAgreement, SampleRecord
from .errors import HarnessError

PANEL = "_panel"  # outcome key suffix: `<grader name>_panel` holds each judge's own outcome, by role

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


def panel_roles(role: str, given: Iterable[str]) -> list[str]:
    """The roles of `role`'s panel among the given roles: [role] alone, or [role, role2, ..., roleK] when
    numbered roles are given (they must run from 2 without a gap, and `role` itself must be given)."""
    given = list(given)
    numbers = sorted(int(m.group(1)) for name in given if (m := re.fullmatch(re.escape(role) + r"(\d+)", name)))
    if not numbers:
        return [role]
    if numbers != list(range(2, len(numbers) + 2)):
        raise HarnessError(f"the {role} panel's roles are {role}, {role}2, {role}3, ... without a gap; got "
                           f"{', '.join(role + str(n) for n in numbers)}.")
    if role not in given:
        raise HarnessError(f"--role {role}{numbers[0]}=... given without the panel's first {role}; give --{role} MODEL "
                           f"(or --role {role}=MODEL) too.")
    return [role] + [f"{role}{n}" for n in numbers]


class PanelGrader(Grader):
    """One grader asked by several models (roles judge, judge2, ...): a copy of it per role."""

    def __init__(self, members: Sequence[Grader]):
        self.members = list(members)
        self.name, self.role = members[0].name, members[0].role
        self.prompt_version = "+".join(m.prompt_version for m in members)

    @property
    def roles(self) -> list[str]:
        return [m.role for m in self.members]

    def requests(self, item: Any) -> dict[str, ChatRequest]:  # pragma: no cover - graded member by member
        raise TypeError("a panel is graded member by member (grade_records)")

    def parse(self, aspect: str, answer: str) -> Any:  # pragma: no cover
        raise TypeError("a panel is graded member by member (grade_records)")

    def combine(self, graded: Sequence["Graded"]) -> dict[str, Any]:
        """The record's outcome: the mean per aspect (missing values left out) and each judge's own outcome."""
        means: dict[str, Any] = {}
        for aspect in dict.fromkeys(a for g in graded for a in g.values):
            present = [g.values[aspect] for g in graded if g.values.get(aspect) is not None]
            means[aspect] = sum(present) / len(present) if present else None
        return {self.name: means, self.name + PANEL: {m.role: m.outcome(g.values, g.raw) for m, g in zip(self.members, graded)}}


def panels(graders: Sequence[Grader], roles: Iterable[str]) -> list[Grader]:
    """Each grader whose role has numbered roles beside it (judge2 ...) as a panel of copies, one per role."""
    roles = list(roles)
    out: list[Grader] = []
    for grader in graders:
        members = panel_roles(grader.role, roles)
        if len(members) == 1:
            out.append(grader)
            continue
        copies = []
        for role in members:
            member = copy.copy(grader)
            member.role = role
            copies.append(member)
        out.append(PanelGrader(copies))
    return out


def bind(graders: Sequence[Grader], models: dict[str, Any]) -> list[Grader]:
    """Each grader as the model of its role asks it: a judge with prompts of its own (ESC-RANK) replaces
    the grader with its own (`ChatModel.grader_for`); any other model keeps it. A panel's judges are bound
    one by one, each keeping its own role."""
    out: list[Grader] = []
    for g in graders:
        if isinstance(g, PanelGrader):
            out.append(PanelGrader([_in_role(bind([m], models)[0], m.role) for m in g.members]))
        else:
            out.append(models[g.role].grader_for(g) if g.role in models else g)
    return out


def _in_role(grader: Grader, role: str) -> Grader:
    if grader.role == role:
        return grader
    moved = copy.copy(grader)
    moved.role = role
    return moved


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
        members = grader.members if isinstance(grader, PanelGrader) else [grader]
        by_member = [grade(member, out, answers[member.role]) for member in members]
        for i in range(len(out)):
            usage = dict(out[i].usage)
            for member, results in zip(members, by_member):
                for key, value in results[i].usage.items():
                    usage[f"{member.role}_{key}"] = usage.get(f"{member.role}_{key}", 0) + value
            if isinstance(grader, PanelGrader):
                graded = grader.combine([results[i] for results in by_member])
            else:
                graded = grader.outcome(by_member[0][i].values, by_member[0][i].raw)
            out[i] = out[i].model_copy(update={"outcome": {**out[i].outcome, **graded}, "usage": usage})
    return out


def panel_agreement(name: str, outcomes: Sequence[dict[str, Any]], resamples: int = 1000, seed: int = 0,
                    level: str = "ordinal") -> PanelAgreement | None:
    """Krippendorff's alpha between the judges of grader `name`'s panel, per aspect, from the records'
    outcomes (`<name>_panel`); None when no record was graded by a panel. Values must be whole numbers
    0..k (ESC-Eval's 0-4); an aspect with any other value gets no alpha."""
    entries = [o.get(name + PANEL) for o in outcomes]
    if not any(entries):
        return None
    judges = list(dict.fromkeys(role for e in entries if e for role in e))
    aspects = list(dict.fromkeys(a for e in entries if e for own in e.values() for a in (own.get(name) or {})))
    result = PanelAgreement(judges=judges, level=level)  # type: ignore[arg-type]
    for aspect in aspects:
        ratings = np.full((len(judges), len(entries)), np.nan)
        for item, entry in enumerate(entries):
            for rater, role in enumerate(judges):
                value = ((entry or {}).get(role, {}).get(name) or {}).get(aspect)
                if value is not None:
                    ratings[rater, item] = float(value)
        present = ratings[~np.isnan(ratings)]
        result.items[aspect] = int(((~np.isnan(ratings)).sum(axis=0) >= 2).sum())
        if len(present) and (np.any(present < 0) or np.any(present != np.round(present))):
            result.alpha[aspect] = None
            continue
        categories = int(present.max()) + 1 if len(present) else 1
        alpha = agreement.krippendorff_alpha(ratings, categories, level)
        result.alpha[aspect] = None if np.isnan(alpha) else float(alpha)
        if result.alpha[aspect] is not None and resamples > 0:
            interval = agreement.alpha_interval(ratings, categories, level, resamples, seed)
            if interval is not None:
                result.intervals[aspect] = interval
    return result
