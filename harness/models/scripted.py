"""Scripted test double: a real registered model that plays given outputs, so runs, simulators and judges
are tested deterministically without a network (after inspect_ai's mockllm).

    --model-args outputs=replies.json        JSON list of strings, played in call order
    --model-args outputs=replies.txt         one reply per line
    --model-args echo=true                   reply with the last user message (a pure function of the request)
    --model-args default="..."               what to say once the script is used up (else it is an error)
    --model-args delay=0.05                  seconds per request (to test interruption)
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

from ..contract import ChatModel, ChatRequest, ModelContext, ModelOutput
from ..datafiles import read_text
from ..errors import HarnessError
from .weights import as_bool


class ScriptedModel(ChatModel):
    """Test double: replays scripted outputs (or echoes the last user message)."""

    name = "scripted"
    batch_size = 4

    def __init__(self, context: ModelContext | None = None, outputs: str | list[str] | None = None, echo: Any = False, default: str | None = None, delay: Any = 0.0):
        self.script = self._read_script(outputs) if isinstance(outputs, str) else list(outputs or [])
        self.echo = as_bool(echo)
        self.default = default
        try:
            self.delay = float(delay)
        except (TypeError, ValueError):
            raise HarnessError(f"scripted: delay must be a number of seconds, e.g. delay=0.05; got '{delay}'.") from None
        if not self.delay >= 0:  # (NaN too)
            raise HarnessError(f"scripted: delay must be 0 or more seconds, got '{delay}'.")
        self.position = 0
        self.requests: list[ChatRequest] = []  # every request received, for assertions

    @staticmethod
    def _read_script(path: str) -> list[str]:
        file = Path(path)
        if not file.is_file():
            raise HarnessError(f"scripted: outputs file '{path}' not found.")
        text = read_text(file, "scripted outputs= takes a UTF-8 file: a JSON list of strings (.json) or one reply per line")
        if file.suffix == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise HarnessError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno}); scripted outputs=FILE.json must hold a JSON list of "
                                   'strings, e.g. ["Hello.", "I hear you."] (or give a .txt file, one reply per line).') from None
            if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
                raise HarnessError(f'{path}: expected a JSON list of strings (scripted outputs=FILE.json), e.g. ["Hello.", "I hear you."].')
            return data
        return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")

    def cache_identity(self) -> dict[str, Any]:
        return {"script": self.script, "echo": self.echo, "default": self.default}

    def _next(self, request: ChatRequest) -> str:
        if self.echo:
            users = [m.content for m in request.messages if m.role == "user"]
            return users[-1] if users else ""
        if self.position < len(self.script):
            self.position += 1
            return self.script[self.position - 1]
        if self.default is not None:
            return self.default
        raise HarnessError(f"scripted: the script has {len(self.script)} outputs and all were used; pass default=... or a longer script.")

    def generate(self, requests: Sequence[ChatRequest]) -> list[ModelOutput]:
        outputs = []
        for request in requests:
            if self.delay:
                time.sleep(self.delay)
            self.requests.append(request)
            outputs.append(ModelOutput(choices=[self._next(request) for _ in range(request.generation.n)]))
        return outputs
