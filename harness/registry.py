"""Name -> plugin registries, filled from entry points so third-party packages add their own.

Entry points are read once and loaded lazily: listing names imports nothing heavy.
"""
from __future__ import annotations

import difflib
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

from .errors import HarnessError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, group: str):
        self.kind = kind  # "task", "model", "metric"
        self.group = group
        self._entries: dict[str, Any] | None = None
        self._extra: dict[str, Any] = {}

    def _all(self) -> dict[str, Any]:
        if self._entries is None:
            self._entries = {ep.name: ep for ep in entry_points(group=self.group)}
        return {**self._entries, **self._extra}

    def register(self, name: str, obj: Any) -> None:
        """Register in-process (tests, notebooks); entry points are the way for packages."""
        self._extra[name] = obj

    def names(self) -> list[str]:
        return sorted(self._all())

    def get(self, name: str) -> T:
        entries = self._all()
        if name not in entries:
            known = self.names()
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise HarnessError(
                f"unknown {self.kind} '{name}'.{hint} Known {self.kind}s: {', '.join(known) or '(none)'}"
                f" (see `harness list {self.kind}s`)."
            )
        obj = entries[name]
        if isinstance(obj, EntryPoint):  # not yet imported
            obj = obj.load()
            self._extra[name] = obj
        return obj


tasks: Registry = Registry("task", "esc_harness.tasks")
models: Registry = Registry("model", "esc_harness.models")
metrics: Registry = Registry("metric", "esc_harness.metrics")
# click commands that tasks and tools add to `harness` (e.g. `harness sage rescore`), loaded on first use
commands: Registry = Registry("command", "esc_harness.commands")
# training recipes: click commands run as `harness train NAME` (harness/training.py has what they share)
recipes: Registry = Registry("recipe", "esc_harness.train")
