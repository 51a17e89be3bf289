"""A BERT encoder for inference in plain torch, and its tokenizer through `tokenizers`: what the model-based
metrics (BERTScore-MiniLM, the EPITOME classifiers) run, without importing transformers.

Why: importing transformers' BERT takes ~4 s of single-threaded Python on these machines, more than a third of
the main job's critical path; torch itself and the `tokenizers` package take ~2.5 s together. The modules and
their parameter names are those of transformers' `BertModel` (a checkpoint or state dict loads unchanged), and
each step is the operation transformers runs in eval mode with its default attention (`sdpa`), in the same
order, so the outputs are the same to the last bit: tests/test_bert.py compares them, float32 and float64,
with and without padding. Only what inference needs: absolute positions, GELU, an encoder (no decoder, no
cache, no dropout); `supported(config)` says whether a checkpoint is such a BERT, and callers use
transformers for anything else (RoBERTa, fine-tuning).

- `load(folder, num_layers=None)`: the model of a folder with config.json and model.safetensors, or None
  where it is not a supported BERT.
- `BertEncoder.from_config(config)`: the same architecture with its parameters on the meta device, to
  be filled with `load_state_dict(..., assign=True)` (the EPITOME classifiers' own files).
- `Tokenizer(folder)`: tokenizer.json as transformers' `tokenizer(text, truncation=True, max_length=...)`
  reads it: token ids with the special tokens, cut to the model's maximum length (also as `encode(text, ...)`
  and `tokenizer(texts, ...)`, the calls the metrics make of a transformers tokenizer).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["BertEncoder", "Tokenizer", "load", "supported"]


def supported(config: dict[str, Any]) -> bool:
    """True for a BERT encoder this module computes exactly as transformers does."""
    return (config.get("model_type") == "bert" and config.get("hidden_act", "gelu") == "gelu"
            and config.get("position_embedding_type", "absolute") == "absolute" and not config.get("is_decoder", False)
            and not config.get("add_cross_attention", False) and not config.get("chunk_size_feed_forward", 0)
            and config.get("hidden_size", 0) % max(config.get("num_attention_heads", 1), 1) == 0)


class _Embedding(nn.Embedding):
    """nn.Embedding, not initialised on the meta device: torch's `normal_` there imports torch._dynamo, ~1.9 s of
    the metric worker's start for values that `load_state_dict(..., assign=True)` replaces anyway."""

    def reset_parameters(self) -> None:
        if self.weight.device.type != "meta":
            super().reset_parameters()


class _Embeddings(nn.Module):
    def __init__(self, c: dict[str, Any]):
        super().__init__()
        self.word_embeddings = _Embedding(c["vocab_size"], c["hidden_size"], padding_idx=c.get("pad_token_id", 0))
        self.position_embeddings = _Embedding(c["max_position_embeddings"], c["hidden_size"])
        self.token_type_embeddings = _Embedding(c.get("type_vocab_size", 2), c["hidden_size"])
        self.LayerNorm = nn.LayerNorm(c["hidden_size"], eps=c.get("layer_norm_eps", 1e-12))
        # (real tensors even when the parameters are built on the meta device: they are not in a checkpoint)
        self.register_buffer("position_ids", torch.arange(c["max_position_embeddings"], device="cpu")[None, :], persistent=False)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        positions = self.position_ids[:, : input_ids.shape[1]]
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        hidden = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        return self.LayerNorm(hidden + self.position_embeddings(positions))


class _SelfAttention(nn.Module):
    def __init__(self, c: dict[str, Any]):
        super().__init__()
        self.head_size = c["hidden_size"] // c["num_attention_heads"]
        self.scaling = self.head_size ** -0.5
        self.query = nn.Linear(c["hidden_size"], c["hidden_size"])
        self.key = nn.Linear(c["hidden_size"], c["hidden_size"])
        self.value = nn.Linear(c["hidden_size"], c["hidden_size"])

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        shape = (*hidden.shape[:-1], -1, self.head_size)  # (batch, tokens, heads, head size)
        q, k, v = (proj(hidden).view(shape).transpose(1, 2) for proj in (self.query, self.key, self.value))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, scale=self.scaling, is_causal=False)
        out = out.transpose(1, 2).contiguous()
        return out.reshape(*hidden.shape[:-1], -1).contiguous()


class _AddNorm(nn.Module):
    """dense, then LayerNorm of it plus the residual (BertSelfOutput / BertOutput)."""

    def __init__(self, width_in: int, width: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(width_in, width)
        self.LayerNorm = nn.LayerNorm(width, eps=eps)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(hidden) + residual)


class _Attention(nn.Module):
    def __init__(self, c: dict[str, Any]):
        super().__init__()
        self.self = _SelfAttention(c)
        self.output = _AddNorm(c["hidden_size"], c["hidden_size"], c.get("layer_norm_eps", 1e-12))

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        return self.output(self.self(hidden, mask), hidden), None  # (a tuple, as transformers' BertAttention)


class _Intermediate(nn.Module):
    def __init__(self, c: dict[str, Any]):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["intermediate_size"])

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(hidden))


class _Layer(nn.Module):
    def __init__(self, c: dict[str, Any]):
        super().__init__()
        self.attention = _Attention(c)
        self.intermediate = _Intermediate(c)
        self.output = _AddNorm(c["intermediate_size"], c["hidden_size"], c.get("layer_norm_eps", 1e-12))

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.feed_forward_chunk(self.attention(hidden, mask)[0])

    def feed_forward_chunk(self, attended: torch.Tensor) -> torch.Tensor:
        return self.output(self.intermediate(attended), attended)


class _Stack(nn.Module):
    def __init__(self, c: dict[str, Any], layers: int):
        super().__init__()
        self.layer = nn.ModuleList(_Layer(c) for _ in range(layers))


class _Pooler(nn.Module):
    def __init__(self, c: dict[str, Any]):
        super().__init__()
        self.dense = nn.Linear(c["hidden_size"], c["hidden_size"])


class _Output(tuple):
    """What callers read of transformers' model output: `[0]` and `.last_hidden_state`."""

    @property
    def last_hidden_state(self) -> torch.Tensor:
        return self[0]


class BertEncoder(nn.Module):
    def __init__(self, config: dict[str, Any], num_layers: int | None = None, pooler: bool = True):
        super().__init__()
        if not supported(config):
            raise ValueError("not a BERT encoder harness.bert computes (see supported())")
        self.config = dict(config)
        self.embeddings = _Embeddings(config)
        self.encoder = _Stack(config, config["num_hidden_layers"] if num_layers is None else num_layers)
        if pooler:  # unused here; kept so that a state dict with it loads strictly
            self.pooler = _Pooler(config)

    @classmethod
    def from_config(cls, config: dict[str, Any], num_layers: int | None = None, pooler: bool = True) -> "BertEncoder":
        """Parameters on the meta device (nothing allocated or initialised): fill them with
        `load_state_dict(state, assign=True)`."""
        with torch.device("meta"):
            return cls(config, num_layers, pooler)

    @property
    def device(self) -> torch.device:
        return self.embeddings.word_embeddings.weight.device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> _Output:
        hidden = self.embeddings(input_ids, token_type_ids)
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            # padding: transformers' sdpa mask, True where a query may attend (a key that is not padding)
            mask = attention_mask.bool()[:, None, None, :].expand(-1, 1, input_ids.shape[1], -1)
        for layer in self.encoder.layer:
            hidden = layer(hidden, mask)
        return _Output((hidden,))


def _state_dict(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    prefix = "bert."  # a BertFor... checkpoint holds the encoder under bert.
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def load(folder: str | Path, num_layers: int | None = None) -> BertEncoder | None:
    """The BERT of a model folder (config.json, model.safetensors) in eval mode on the CPU, keeping its first
    `num_layers` layers; None where the folder holds another kind of model or other weights."""
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or not supported(config) or not (folder / "model.safetensors").is_file():
        return None
    state = _state_dict(folder)
    model = BertEncoder.from_config(config, num_layers, pooler="pooler.dense.weight" in state)
    wanted = set(model.state_dict())
    state = {k: v for k, v in state.items() if k in wanted}
    if set(state) != wanted:  # weights of another layout: let transformers read them
        return None
    model.load_state_dict(state, assign=True)
    return model.eval()


class Tokenizer:
    """A model folder's tokenizer.json, read by `tokenizers` as transformers reads it for one text:
    special tokens added, cut to `max_length` (tokenizer_config.json's model_max_length unless given)."""

    def __init__(self, folder: str | Path, max_length: int | None = None):
        import tokenizers

        folder = Path(folder)
        self.backend = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.backend.no_padding()
        self.backend.no_truncation()
        settings: dict[str, Any] = {}
        if (folder / "tokenizer_config.json").is_file():
            settings = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        self.model_max_length = max_length if max_length is not None else settings.get("model_max_length")
        if self.model_max_length is not None and self.model_max_length < 10**9:
            self.backend.enable_truncation(int(self.model_max_length))
        self.pad_token_id = self.backend.token_to_id(settings.get("pad_token", "[PAD]"))
        self.cls_token_id = self.backend.token_to_id(settings.get("cls_token", "[CLS]"))
        self.sep_token_id = self.backend.token_to_id(settings.get("sep_token", "[SEP]"))

    def ids(self, text: str) -> list[int]:
        return self.backend.encode(text).ids

    def ids_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch(texts)]

    # the two transformers-tokenizer calls the metrics make (bert-score's sent_encode; a classifier's batch of
    # single texts), so that either tokenizer serves them; anything else they could ask is refused
    def encode(self, text: str, add_special_tokens: bool = True, max_length: int | None = None, truncation: bool = True) -> list[int]:
        self._only_as_set(add_special_tokens and truncation, max_length)
        return self.ids(text)

    def __call__(self, texts: list[str], truncation: bool = True, max_length: int | None = None,
                 return_offsets_mapping: bool = False) -> dict[str, list[list[int]]]:
        self._only_as_set(truncation and not return_offsets_mapping, max_length)
        return {"input_ids": self.ids_batch(list(texts))}

    def _only_as_set(self, supported: bool, max_length: int | None) -> None:
        if not supported or max_length not in (None, self.model_max_length):
            raise ValueError("harness.bert.Tokenizer encodes single texts with special tokens, cut to its own max_length")
