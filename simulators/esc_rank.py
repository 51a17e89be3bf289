"""ESC-RANK, ESC-Eval's own judge: InternLM2-chat-7B with one LoRA adapter per dimension and language.

    --judge esc-rank --judge-args esc_eval_repo=CLONE,model=INTERNLM2_DIR,adapters_dir=DIR
                                  [,trust_remote_code=true][,parse=original][,engine=vllm][,system=none]

What the user holds (nothing is downloaded, and no ESC-RANK prompt text is part of this repository):
- `esc_eval_repo`: a clone of haidequanbu/ESC-Eval. Its released scorer (`score.py`) holds each dimension's
  rubric (`prompt_EN` / `prompt_ZH`, seven each, in the order of its `key_list`), the words naming the
  dimensions (`dimention_list`), how a transcript becomes one dialogue string (lines joined, speaker names
  replaced) and the text around rubric, dialogue and dimension name; the released transcripts it scored
  (`result/<date>/*.json`) give the speaker labels each line starts with. score.py is read with `ast`
  (never executed) and the prompt is rebuilt in exactly that shape; the sha256 of every file read lands
  in run.json (`roles.judge.facts.files`).
- `adapters_dir`: the 14 released LoRA folders, `fluency diversity empathic suggestion human tech overall`
  (the Chinese ones) and the same names with `_en` (the English ones), as score.py loads them.
- `model`: the InternLM2-chat-7B folder. Its `chat()` (in the folder's own `modeling_internlm2.py`) puts a
  default `meta_instruction` system prompt before the user's message; score.py called `chat()` without
  one, so that default (read from the file, sha256 recorded) is the system message here (`system=none`
  drops it, for a base without that file). InternLM2's architecture lives in the folder's own code:
  `trust_remote_code=true` must be given explicitly; it is never implied.

One base model is loaded with all 14 adapters as named adapters (`hf` by default, `engine=vllm` for vLLM
with one LoRARequest per adapter); each dimension's request names its adapter (`ChatRequest.adapter`:
the folder name, e.g. `empathic_en`), and the engine batches requests grouped by adapter. Decoding is
greedy with up to 1024 new tokens, as InternLM2's `chat()` with `do_sample=False`. Other arguments
(dtype, device, batch_size, threads, max_tokens ...) go to the engine.

Parsing: `parse=harness` (default) reads each answer with the harness's strict `parse_score`;
`parse=original` applies the released rule (`original_parse`: the first of "0".."4" found anywhere in
the answer) so that released score files are reproduced exactly - where that rule finds nothing (the
file's -1) the score is missing, never averaged as -1. The rule is recorded in every record's outcome
(`judge_parse`) and in run.json (`roles.judge.facts.parse`).
"""
from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from harness import registry
from harness.contract import (ChatModel, ChatRequest, DialogueTurn, GenerationConfig, Grader, Message, ModelContext,
                              ModelOutput, SampleRecord)
from harness.errors import HarnessError

from . import esc_eval_judge as judging

SCORER = "score.py"  # the released scorer: rubrics, dimension words, dialogue and prompt construction
TRANSCRIPTS = "result"  # the released transcripts the scorer read: their speaker labels
MODEL_CODE = "modeling_internlm2.py"  # InternLM2's own code: chat()'s default system prompt
CODE_NAMES = tuple(judging.DIMENSIONS.values())  # fluency diversity empathic suggestion human tech overall
_PROMPT_LISTS = {"en": "prompt_EN", "zh": "prompt_ZH"}
MAX_NEW_TOKENS = 1024  # InternLM2 chat()'s default max_new_tokens, which score.py kept
PARSERS = ("harness", "original")
_CLONE_HINT = "clone https://github.com/haidequanbu/ESC-Eval and pass its folder as esc_eval_repo="


def adapter_name(code: str, language: str) -> str:
    """The released folder (and adapter) name: the code name for Chinese, with `_en` for English."""
    return code if judging.normalize_language(language) == "zh" else f"{code}_en"


ADAPTER_NAMES = tuple(adapter_name(code, language) for language in ("zh", "en") for code in CODE_NAMES)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- reading the clone


@dataclass(frozen=True)
class Part:
    kind: str  # "text" | "rubric" | "dialogue" | "dimension"
    text: str = ""


@dataclass(frozen=True)
class ScorerPrompts:
    """The released scorer's prompt construction, as read from a clone."""

    rubrics: dict[str, dict[str, str]]  # language -> code name -> rubric text
    words: dict[str, str]  # code name -> the word naming the dimension in the question
    joiner: str  # between transcript lines
    replacements: tuple[tuple[str, str], ...]  # applied to the joined dialogue, in order
    template: tuple[Part, ...]  # rubric, dialogue, dimension and the literal text between them
    labels: dict[str, str]  # "supporter" / "seeker" -> the label a transcript line starts with
    files: dict[str, str]  # file (relative to the clone) -> sha256

    def digest(self) -> str:
        return hashlib.sha256("\x00".join(f"{k}={v}" for k, v in sorted(self.files.items())).encode()).hexdigest()

    def dialogue(self, turns: Sequence[DialogueTurn]) -> str:
        lines = []
        for number, turn in enumerate(turns):
            if turn.role not in self.labels:
                raise HarnessError(f"turn {number}: role '{turn.role}' is neither 'seeker' nor 'supporter'; fix the dialogue record.")
            lines.append(self.labels[turn.role] + turn.text)
        text = self.joiner.join(lines)
        for old, new in self.replacements:
            text = text.replace(old, new)
        return text

    def prompt(self, code: str, turns: Sequence[DialogueTurn], language: str) -> str:
        values = {"rubric": self.rubrics[judging.normalize_language(language)][code], "dialogue": self.dialogue(turns).strip(),
                  "dimension": self.words[code]}
        return "".join(part.text if part.kind == "text" else values[part.kind] for part in self.template)


class _Shape(Exception):
    """The clone's file is not in the shape of the released one."""


def _strings(node: ast.AST | None, count: int, what: str) -> list[str]:
    if not isinstance(node, ast.List) or len(node.elts) != count or not all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
        raise _Shape(f"{what} is not a list of {count} strings")
    return [e.value for e in node.elts]  # type: ignore[union-attr]


def _assigned(tree: ast.AST, name: str, augmented: bool = False) -> ast.AST:
    kind = ast.AugAssign if augmented else ast.Assign
    found = [n.value for n in ast.walk(tree) if isinstance(n, kind)
             and any(isinstance(t, ast.Name) and t.id == name for t in ([n.target] if augmented else n.targets))]  # type: ignore[attr-defined]
    if len(found) != 1:
        raise _Shape(f"expected one `{name} {'+=' if augmented else '='} ...`, found {len(found)}")
    return found[0]


def _dimension_variable(tree: ast.AST) -> str:
    """The loop variable of `for i, v in enumerate(dimention_list)`."""
    for node in ast.walk(tree):
        if (isinstance(node, ast.For) and isinstance(node.iter, ast.Call) and isinstance(node.iter.func, ast.Name)
                and node.iter.func.id == "enumerate" and len(node.iter.args) == 1 and isinstance(node.iter.args[0], ast.Name)
                and node.iter.args[0].id == "dimention_list" and isinstance(node.target, ast.Tuple) and len(node.target.elts) == 2
                and isinstance(node.target.elts[1], ast.Name)):
            return node.target.elts[1].id
    raise _Shape("no loop over enumerate(dimention_list)")


def _terms(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _terms(node.left) + _terms(node.right)
    return [node]


def _part(node: ast.AST, dimension: str) -> Part:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return Part("text", node.value)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        return Part("rubric")
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "strip" and not node.args
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "dialogue"):
        return Part("dialogue")
    if isinstance(node, ast.Name) and node.id == dimension:
        return Part("dimension")
    raise _Shape(f"unexpected term in the prompt: {ast.dump(node)[:60]}")


def _dialogue_shape(node: ast.AST) -> tuple[str, tuple[tuple[str, str], ...]]:
    """`JOINER.join(item).replace(A, B).replace(C, D)...` -> (JOINER, ((A, B), (C, D)))."""
    replacements: list[tuple[str, str]] = []
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "replace":
        args = node.args
        if len(args) != 2 or not all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in args):
            raise _Shape("dialogue .replace() does not take two strings")
        replacements.insert(0, (args[0].value, args[1].value))  # type: ignore[union-attr]
        node = node.func.value
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join"
            and isinstance(node.func.value, ast.Constant) and isinstance(node.func.value.value, str)):
        raise _Shape("the dialogue is not STRING.join(lines).replace(...)")
    return node.func.value.value, tuple(replacements)


def _labels(root: Path) -> tuple[dict[str, str], list[Path]]:
    """The speaker labels of the released transcripts the scorer read (`result/<date>/<model>_<lang>.json`:
    {id: ["LABEL：text", ...]}, the assistant side's greeting first, then the seeker): each line's text up to
    and including its full-width colon. Every file must agree."""
    files = sorted((root / TRANSCRIPTS).glob("*/*.json"))
    if not files:
        raise _Shape(f"no {TRANSCRIPTS}/<date>/<model>_<lang>.json transcripts")
    found: set[tuple[str, str]] = set()
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            lines = next(iter(data.values()))
            supporter, seeker = (line[: line.index("：") + 1] for line in lines[:2])
        except (OSError, ValueError, TypeError, AttributeError, StopIteration, json.JSONDecodeError):
            raise _Shape(f"{path.relative_to(root)} is not {{id: [\"LABEL：text\", ...]}} with two speakers") from None
        found.add((supporter, seeker))
    if len(found) != 1:
        raise _Shape(f"the transcripts disagree on the speaker labels ({sorted(found)})")
    supporter, seeker = found.pop()
    return {"supporter": supporter, "seeker": seeker}, files


def _parse(path: Path) -> ast.AST:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError) as exc:
        raise _Shape(f"cannot be read as Python ({type(exc).__name__})") from None


def read_scorer(repo: str | Path | None) -> ScorerPrompts:
    """The scorer's prompt construction from an ESC-Eval clone; one-line errors for a missing clone or a
    file not in the released shape."""
    if not repo:
        raise HarnessError(f"esc-rank: esc_eval_repo= is missing; {_CLONE_HINT}.")
    root = Path(repo).expanduser()
    if not (root / SCORER).is_file():
        raise HarnessError(f"esc-rank: {root} has no {SCORER}: not an ESC-Eval clone; {_CLONE_HINT}.")
    current = SCORER
    try:
        tree = _parse(root / SCORER)
        rubrics = {language: dict(zip(CODE_NAMES, _strings(_assigned(tree, name), 7, name))) for language, name in _PROMPT_LISTS.items()}
        keys = _strings(_assigned(tree, "key_list"), 7, "key_list")
        if tuple(keys) != CODE_NAMES:
            raise _Shape(f"key_list is {keys}, not the seven ESC-RANK code names {list(CODE_NAMES)}")
        words = dict(zip(CODE_NAMES, _strings(_assigned(tree, "dimention_list"), 7, "dimention_list")))
        joiner, replacements = _dialogue_shape(_assigned(tree, "dialogue"))
        variable = _dimension_variable(tree)
        template = tuple(_part(t, variable) for t in _terms(_assigned(tree, "prompt1")) + _terms(_assigned(tree, "prompt1", augmented=True)))
        kinds = [p.kind for p in template if p.kind != "text"]
        if kinds != ["rubric", "dialogue", "dimension"]:
            raise _Shape(f"the prompt's parts are {kinds}, not rubric, dialogue, dimension")
        current = TRANSCRIPTS
        labels, transcripts = _labels(root)
    except _Shape as exc:
        raise HarnessError(f"esc-rank: {root / current} is not the released ESC-Eval file ({exc}); "
                           f"restore it from haidequanbu/ESC-Eval (git checkout -- {current}).") from None
    return ScorerPrompts(rubrics=rubrics, words=words, joiner=joiner, replacements=replacements, template=template, labels=labels,
                         files={path.relative_to(root).as_posix(): sha256_file(path) for path in [root / SCORER, *transcripts]})


def adapter_folders(adapters_dir: str | Path | None) -> dict[str, Path]:
    """{adapter name: folder} for the 14 released adapters; one line naming what is missing."""
    if not adapters_dir:
        raise HarnessError("esc-rank: adapters_dir= is missing; pass the folder holding the 14 ESC-RANK LoRA folders "
                           f"({', '.join(ADAPTER_NAMES)}).")
    root = Path(adapters_dir).expanduser()
    if not root.is_dir():
        raise HarnessError(f"esc-rank: adapters_dir {root} is not a folder; download the ESC-RANK adapters into one "
                           f"({', '.join(ADAPTER_NAMES)}).")
    missing = [name for name in ADAPTER_NAMES if not (root / name / "adapter_config.json").is_file()]
    if missing:
        raise HarnessError(f"esc-rank: {root} lacks the ESC-RANK adapter folder(s) {', '.join(missing)} (each with adapter_config.json); "
                           f"download all 14 released adapters into it.")
    return {name: root / name for name in ADAPTER_NAMES}


def chat_system_prompt(model_dir: Path) -> tuple[str, str]:
    """InternLM2 chat()'s default `meta_instruction` from the model folder's own code, and that file's sha256."""
    path = model_dir / MODEL_CODE
    if not path.is_file():
        raise HarnessError(f"esc-rank: {model_dir} has no {MODEL_CODE}, whose chat() gives ESC-RANK's system prompt; "
                           f"pass the InternLM2-chat-7B folder as model=, or system=none to ask without one.")
    try:
        tree = _parse(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == "chat":
                args = node.args.args + node.args.kwonlyargs
                defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + list(node.args.defaults) + list(node.args.kw_defaults)
                for arg, default in zip(args, defaults):
                    if arg.arg == "meta_instruction" and isinstance(default, ast.Constant) and isinstance(default.value, str):
                        return default.value, sha256_file(path)
        raise _Shape("no chat(..., meta_instruction='...') default")
    except _Shape as exc:
        raise HarnessError(f"esc-rank: {path} is not InternLM2's model code ({exc}); restore the model folder, or pass system=none.") from None


# --------------------------------------------------------------------------- the grader


class ESCRankJudge(Grader):
    """The esc-eval metrics' `judge` grader as ESC-RANK asks it: the released prompt of each dimension, sent
    to that dimension's adapter; values and outcome keys as `esc_eval_judge.JUDGE` (paper names)."""

    name = "judge"
    role = "judge"

    def __init__(self, prompts: ScorerPrompts, parse: str = "harness", system: str | None = None, max_tokens: int = MAX_NEW_TOKENS):
        if parse not in PARSERS:
            raise HarnessError(f"esc-rank: parse must be one of {', '.join(PARSERS)} (e.g. parse=original), got '{parse}'.")
        self.prompts, self.parse_rule, self.system, self.max_tokens = prompts, parse, system, max_tokens
        self.prompt_version = f"esc-rank/{prompts.digest()[:16]}"

    def request(self, dimension: str, turns: Sequence[DialogueTurn], language: str) -> ChatRequest:
        code = judging.DIMENSIONS[judging.normalize_dimension(dimension)]
        if not turns:
            raise HarnessError("cannot judge an empty dialogue; the dialogue record has no turns.")
        messages = ([Message(role="system", content=self.system)] if self.system is not None else [])
        messages.append(Message(role="user", content=self.prompts.prompt(code, turns, language)))
        return ChatRequest(messages=tuple(messages), generation=GenerationConfig(temperature=0.0, top_p=1.0, max_tokens=self.max_tokens),
                           adapter=adapter_name(code, language))

    def requests(self, item: SampleRecord) -> dict[str, ChatRequest]:
        language = str(item.labels.get("language") or item.outcome.get("language") or "en")
        return {dimension: self.request(dimension, item.dialogue or [], language) for dimension in judging.DIMENSIONS}

    def parse(self, aspect: str, answer: str) -> int | None:
        if self.parse_rule == "original":
            score = judging.original_parse(answer or "")
            return None if score < 0 else score  # the released file's -1: missing, never averaged
        return judging.parse_score(answer)

    def outcome(self, values: dict[str, Any], raw: dict[str, str]) -> dict[str, Any]:
        return {"judge": values, "judge_raw": raw, "judge_prompts": self.prompt_version, "judge_parse": self.parse_rule}


# --------------------------------------------------------------------------- the model


class ESCRankModel(ChatModel):
    """`--judge esc-rank`: the base model with the 14 adapters on an engine (hf or vllm), and the grader that
    asks it in the released prompt format."""

    name = "esc-rank"

    def __init__(self, context: ModelContext | None = None, esc_eval_repo: str | None = None, model: str | None = None,
                 adapters_dir: str | None = None, trust_remote_code: Any = False, parse: str = "harness", engine: str = "hf",
                 system: str = "internlm2", **engine_args: Any):
        from harness.models.weights import as_bool

        for taken in ("adapter", "adapters"):
            if taken in engine_args:
                raise HarnessError(f"esc-rank: {taken}= is set by esc-rank itself (the 14 folders of adapters_dir=); drop it.")
        if engine not in ("hf", "vllm"):
            raise HarnessError(f"esc-rank: engine must be hf or vllm, got '{engine}'.")
        if system not in ("internlm2", "none"):
            raise HarnessError(f"esc-rank: system must be internlm2 (chat()'s default, from the model folder) or none, got '{system}'.")
        if not model:
            raise HarnessError("esc-rank: model= is missing; pass the InternLM2-chat-7B folder (internlm/internlm2-chat-7b).")
        prompts = read_scorer(esc_eval_repo)
        folders = adapter_folders(adapters_dir)
        model_dir = Path(model).expanduser()
        system_text, system_file = (None, None) if system == "none" else chat_system_prompt(model_dir)
        max_tokens = int(engine_args["max_tokens"]) if engine_args.get("max_tokens") not in (None, "") else MAX_NEW_TOKENS
        self.judge = ESCRankJudge(prompts, str(parse), system_text, max_tokens)
        self._facts = {"esc_eval_repo": str(Path(esc_eval_repo).expanduser().resolve()), "files": dict(prompts.files),  # type: ignore[arg-type]
                       "system": {"file": MODEL_CODE, "sha256": system_file} if system_file else None,
                       "parse": self.judge.parse_rule, "prompt_version": self.judge.prompt_version, "engine": engine,
                       "adapters": {name: str(folder) for name, folder in folders.items()}}
        self.inner: ChatModel = registry.models.get(engine)(context, model=str(model_dir), adapters={k: str(v) for k, v in folders.items()},
                                                            trust_remote_code=as_bool(trust_remote_code), **engine_args)
        self.batch_size = self.inner.batch_size
        self.parallel_calls = self.inner.parallel_calls

    def cache_identity(self) -> dict[str, Any]:
        return {"esc_rank": True, **self.inner.cache_identity()}

    def adapters(self) -> tuple[str, ...]:
        return self.inner.adapters()

    def facts(self) -> dict[str, Any]:
        return dict(self._facts)

    def grader_for(self, grader: Grader) -> Grader:
        if isinstance(grader, judging.ESCEvalJudge):
            return self.judge
        raise HarnessError(f"esc-rank judges ESC-Eval dialogues only (the esc-eval metrics), not the '{grader.name}' grader; "
                           f"use another judge model for it.")

    def generate(self, requests: Sequence[ChatRequest]) -> list[ModelOutput]:
        return self.inner.generate(requests)

    def stream(self, requests: Sequence[ChatRequest]) -> Iterator[tuple[int, ModelOutput]]:
        return self.inner.stream(requests)

    def close(self) -> None:
        self.inner.close()
