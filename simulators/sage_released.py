"""SAGE with the released prompts (`--task-args prompts=released,sage_repo=PATH`): the sentient agent's two
steps and the supporter's system prompt are read at run time from the user's clone of the released code
(github.com/Tencent/digitalhuman, folder SAGE/); none of their text is kept in this repository.

What is read, and the shape expected (SAGE/ as a fork of Tencent/digitalhuman carries it, zzjweb/digitalhuman
@ 3a66ddd; this project's SAGE data is pinned at Tencent/digitalhuman @ 6dcfa78, whose code was not at hand):

- `SAGE/simulator_response.py`: the module-level string `target_prompt` (the conversation goal); in
  `planning_reply` the string `template` (the emotion-analysis step, placeholders `{{target}}`,
  `{{simulator_role}}`, `{{simulator_scene}}`, `{{emotion}}`, `{{dialog_history}}`) and the dict `mapping`
  (speaker names of "user" and "assistant" in the dumped history); in `player_reply` the string `template`
  (the in-character reply step, placeholders `{{target}}`, `{{emotion}}`, `{{player_type}}`,
  `{{player_topic}}`, `{{dialog_history}}`, `{{new_history}}`, `{{planning}}`) and the expression that
  fills `{{planning}}` from the analysis (string pieces joined with `planning[...]` fields).
- `SAGE/npc_response.py`: in `call_npc` the string `role_system` (the supporter's system prompt).

The files are parsed (Python's `ast`), never run. The sha256 of each file read is recorded in run.json
(`task_provenance`). How the released loop uses them (SAGE/test_npc.py, simulator_response.py):

- The analysis prompt gets the emotion *before* the change as a number and the whole history (the
  latest reply included) as a JSON list of `{"role": <mapping>, "content"}` (indent 2, non-ASCII kept);
  it is sent as one user message.
- Its answer: full-width colons become ASCII and `*` is dropped; the fields are the text after the last
  `Content:`, `TargetCompletion:`, `Activity:`, `Analyse:`, `Change:` labels; the change is the first
  `[+-]?\\d+` after the last `Change:` (the whole answer where there is none), clamped to [-10, +10];
  emotion = min(100, emotion + change) (no floor: it cannot fall below 0 before the dialogue ends below 10).
- The reply prompt gets the band name (`Emotion-S/A/B/C/F`: >= 100, 70, 40, 10, else F), the history but
  the last two messages, the last two (the agent's previous turn and the reply), and the analysis; the
  agent's message is the text after the last `Response:` (brackets and curly quotes stripped), its plan
  the text between `Thinking:` and `Response:`.
- The dialogue stops after the agent's turn when its emotion is >= 100 or < 10, or its message holds
  "再见" or "拜拜"; at most 10 agent turns with the opening (`max_turns`).

Defects of the released code worked around (it does not run as shipped):

- `player_init` reads `role["topic"]`, which neither released profile file has (KeyError): the topic is
  read by no prompt, so it is left out.
- `planning_reply` reads `player_data["target"]` (never set: KeyError) to index `target_prompt`, a string
  (TypeError). The line before has already put the whole `target_prompt` into `{{target}}`, so that is the
  text used (the published result files carry `target: "eq"`, the only goal there is).
- `call_llm` is a stub; the agent is the `seeker` role's model.
- An analysis without a number is asked again forever (same prompt, 3 s apart): with a cache that never
  ends, so the harness asks `retries` more times with a reminder of its own appended, then keeps the
  emotion and records the step as malformed.
- After the 10th agent turn the released loop asks the model under test for one more reply that nothing
  reads; it is not asked here (same scores).
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

PROMPT_VERSION = "sage-released-v1"  # this adaptation of the released loop; the files' own hashes are in run.json
RELEASED_MAX_TURNS = 10
SIMULATOR_FILE = "SAGE/simulator_response.py"
NPC_FILE = "SAGE/npc_response.py"
PLANNING_FIELDS = ("{{target}}", "{{simulator_role}}", "{{simulator_scene}}", "{{emotion}}", "{{dialog_history}}")
REPLY_FIELDS = ("{{target}}", "{{emotion}}", "{{player_type}}", "{{player_topic}}", "{{dialog_history}}", "{{new_history}}", "{{planning}}")
PLANNING_KEYS = ("content", "TargetCompletion", "activity", "analyse")
GOODBYE_WORDS = ("再见", "拜拜")
MAX_STEP = 10
CLONE_HINT = "git clone https://github.com/Tencent/digitalhuman and give its path"
# the harness's own wording (the released code has no reminder: it asks the same prompt again)
REMINDER = "上面的回答里没有可读的情绪变化数值。请按要求的输出格式重新作答，并在最后的 Change: 之后只写一个 -10 到 +10 之间的整数。"

_NUMBER = re.compile(r"[+-]?\d+")


def state_name(emotion: int) -> str:
    """The released code's band name of an emotion."""
    for name, floor in (("S", 100), ("A", 70), ("B", 40), ("C", 10)):
        if emotion >= floor:
            return f"Emotion-{name}"
    return "Emotion-F"


@dataclass(frozen=True)
class ReleasedPrompts:
    """The prompt texts and fill-in rules read from a clone."""

    root: Path
    hashes: dict[str, str]  # file (relative to the clone) -> sha256
    target: str
    planning: str
    reply: str
    speakers: dict[str, str]  # "user" / "assistant" -> name in the dumped history
    planning_parts: tuple[tuple[str, str], ...]  # ("text", piece) | ("field", planning key), joined in order
    supporter: str

    def provenance(self) -> dict[str, Any]:
        return {"sage_repo": str(self.root), "files": dict(self.hashes)}

    # ------------------------------------------------------------- prompts

    def _dump(self, history: list[tuple[str, str]]) -> str:
        return json.dumps([{"role": self.speakers[role], "content": text} for role, text in history], ensure_ascii=False, indent=2)

    def planning_prompt(self, player: str, scene: str, emotion: int, history: list[tuple[str, str]]) -> str:
        prompt = (self.planning.replace("{{emotion}}", str(emotion)).replace("{{simulator_role}}", player)
                  .replace("{{simulator_scene}}", scene).replace("{{target}}", self.target))
        return prompt.replace("{{dialog_history}}", self._dump(history))

    def reply_prompt(self, player: str, scene: str, emotion: int, history: list[tuple[str, str]], planning: dict[str, Any]) -> str:
        analysis = "".join(value if kind == "text" else str(planning.get(value, "")) for kind, value in self.planning_parts)
        prompt = self.reply.replace("{{planning}}", analysis)
        prompt = (prompt.replace("{{target}}", self.target).replace("{{emotion}}", state_name(emotion))
                  .replace("{{player_type}}", player).replace("{{player_topic}}", scene))
        return prompt.replace("{{dialog_history}}", self._dump(history[:-2])).replace("{{new_history}}", self._dump(history[-2:]))


# --------------------------------------------------------------------------- parsing the answers (the released rules)


def _field(text: str, label: str, until: str | None) -> str:
    part = text.split(label)[-1]
    if until is not None:
        part = part.split(until)[0]
    return part.strip("\n").strip("[").strip("]")


def parse_planning(text: str) -> dict[str, Any]:
    """The analysis fields and `change` (clamped; None when no number is found) and `stated_change`."""
    text = text.replace("：", ":").replace("*", "")
    planning: dict[str, Any] = {
        "activity": _field(text, "Activity:", "Analyse:\n"),
        "TargetCompletion": _field(text, "TargetCompletion:", "Activity:\n"),
        "content": _field(text, "Content:", "TargetCompletion:\n"),
        "analyse": _field(text, "Analyse:", "Change:\n"),
    }
    found = _NUMBER.findall(_field(text, "Change:", None))
    stated = int(found[0]) if found else None
    planning["stated_change"] = stated
    planning["change"] = None if stated is None else max(-MAX_STEP, min(MAX_STEP, stated))
    return planning


def parse_reply(text: str) -> tuple[str, str]:
    """(plan, message) of the in-character reply step."""
    plan = text.split("Response:")[0].split("Thinking:\n")[-1].strip("\n").strip("[").strip("]")
    message = text.split("Response:")[-1].strip("\n").strip("[").strip("]").strip("“").strip("”")
    return plan, message


def said_goodbye(message: str) -> bool:
    return any(word in message for word in GOODBYE_WORDS)


# --------------------------------------------------------------------------- reading the clone


def _bad(file: str, expected: str) -> HarnessError:
    return HarnessError(f"sage: {file}: expected {expected}; sage_repo= must be a clone of the released SAGE code ({CLONE_HINT}).")


def _source(root: Path, relative: str) -> tuple[ast.Module, str]:
    path = root / relative
    if not path.is_file():
        raise HarnessError(f"sage: {path}: no such file; sage_repo= must be a clone of the released SAGE code holding {relative} ({CLONE_HINT}).")
    data = path.read_bytes()
    try:
        tree = ast.parse(data.decode("utf-8"), filename=str(path))
    except UnicodeDecodeError:
        raise _bad(str(path), "UTF-8 Python source") from None
    except SyntaxError as exc:
        raise _bad(str(path), f"Python source (syntax error at line {exc.lineno})") from None
    return tree, hashlib.sha256(data).hexdigest()


def _function(tree: ast.Module, name: str, file: Path) -> ast.FunctionDef:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise _bad(str(file), f"a function `{name}`")


def _assigned(body: ast.AST, name: str, top_level: bool = False) -> list[ast.expr]:
    nodes = body.body if top_level else list(ast.walk(body))  # type: ignore[attr-defined]
    return [n.value for n in nodes if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in n.targets)]


def _string(body: ast.AST, name: str, where: str, file: Path, top_level: bool = False) -> str:
    for value in _assigned(body, name, top_level):
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return value.value
    raise _bad(str(file), f"a string assigned to `{name}` {where}")


def _with_fields(text: str, fields: tuple[str, ...], what: str, file: Path) -> str:
    missing = [f for f in fields if f not in text]
    if missing:
        raise _bad(str(file), f"{what} with the placeholders {', '.join(fields)} (missing {', '.join(missing)})")
    return text


def _speakers(func: ast.FunctionDef, file: Path) -> dict[str, str]:
    for value in _assigned(func, "mapping"):
        try:
            mapping = ast.literal_eval(value)
        except ValueError:
            continue
        if isinstance(mapping, dict) and all(isinstance(mapping.get(k), str) for k in ("user", "assistant")):
            return {"user": mapping["user"], "assistant": mapping["assistant"]}
    raise _bad(str(file), "a dict `mapping` with string names for \"user\" and \"assistant\" in planning_reply")


def _operands(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _operands(node.left) + _operands(node.right)
    return [node]


def _planning_parts(func: ast.FunctionDef, file: Path) -> tuple[tuple[str, str], ...]:
    """The expression `template.replace("{{planning}}", ...)` that joins text pieces and analysis fields."""
    for node in ast.walk(func):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "replace" and len(node.args) == 2):
            continue
        first, second = node.args
        if not (isinstance(first, ast.Constant) and first.value == "{{planning}}"):
            continue
        parts: list[tuple[str, str]] = []
        for operand in _operands(second):
            if isinstance(operand, ast.Constant) and isinstance(operand.value, str):
                parts.append(("text", operand.value))
            elif (isinstance(operand, ast.Subscript) and isinstance(operand.value, ast.Name) and operand.value.id == "planning"
                  and isinstance(operand.slice, ast.Constant) and operand.slice.value in PLANNING_KEYS):
                parts.append(("field", operand.slice.value))
            else:
                parts = []
                break
        if any(kind == "text" for kind, _ in parts) and any(kind == "field" for kind, _ in parts):
            return tuple(parts)
    raise _bad(str(file), "in player_reply a call template.replace(\"{{planning}}\", <text pieces + planning[...] fields>)")


def clone_folder(sage_repo: str | Path) -> Path:
    """The clone's root (the folder holding SAGE/); the SAGE folder itself is accepted too."""
    path = Path(sage_repo).expanduser()
    if not path.is_dir():
        raise HarnessError(f"sage: sage_repo={sage_repo}: no such folder; {CLONE_HINT}.")
    if not (path / "SAGE").is_dir() and path.name == "SAGE":
        path = path.parent
    return path.resolve()


def read_clone(sage_repo: str | Path) -> ReleasedPrompts:
    """The released prompts, or one HarnessError line naming the file and what was expected."""
    root = clone_folder(sage_repo)
    simulator, simulator_hash = _source(root, SIMULATOR_FILE)
    npc, npc_hash = _source(root, NPC_FILE)
    sim_file, npc_file = root / SIMULATOR_FILE, root / NPC_FILE
    target = _string(simulator, "target_prompt", "at module level", sim_file, top_level=True)
    planning_func = _function(simulator, "planning_reply", sim_file)
    reply_func = _function(simulator, "player_reply", sim_file)
    planning = _with_fields(_string(planning_func, "template", "in planning_reply", sim_file), PLANNING_FIELDS, "planning_reply's template", sim_file)
    reply = _with_fields(_string(reply_func, "template", "in player_reply", sim_file), REPLY_FIELDS, "player_reply's template", sim_file)
    supporter = _string(_function(npc, "call_npc", npc_file), "role_system", "in call_npc", npc_file)
    return ReleasedPrompts(root=root, hashes={SIMULATOR_FILE: simulator_hash, NPC_FILE: npc_hash}, target=target, planning=planning,
                           reply=reply, speakers=_speakers(planning_func, sim_file), planning_parts=_planning_parts(reply_func, sim_file),
                           supporter=supporter)
