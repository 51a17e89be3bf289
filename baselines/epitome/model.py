"""EPITOME classifiers: level 0/1/2 of one mechanism from (seeker post, response).

Two architectures, both with the original's 3-way head on the first token (`dense - ReLU - out_proj`) and its
token-level rationale head:

- `bi`: the original (Sharma et al. 2020, `BiEncoderAttentionWithRationaleClassification` in
  behavioral-data/Empathy-Mental-Health `src/models/models.py`): a seeker encoder and a response encoder, the
  response states attend to the seeker states (one head, residual), the head reads the response's first token.
  Parameter names are the original's (`seeker_encoder.roberta.*`, `responder_encoder.roberta.*`, `attn.*`,
  `norm.*`, `empathy_classifier.*`, `rationale_classifier.*`), so the published `finetuned_{ER,IP,EX}.pth`
  state dicts load as they are. One deliberate difference: the seeker's padding is masked out of the attention
  (the original masks nothing, which only matters for padded batches; EmpGPT-3 scores one pair at a time, so
  its numbers equal a masked batch's).
- `cross`: one encoder over `[CLS] seeker [SEP] response [SEP]`.

Any BERT/RoBERTa-style encoder folder works (the packaged all-MiniLM-L6-v2, a roberta-base folder).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from harness import bert
from harness.errors import HarnessError
from harness.threads import map_batches

ARCHS = ("bi", "cross")
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "classifier.json"


@dataclass
class ClassifierConfig:
    arch: str  # "bi" | "cross"
    encoder: dict[str, Any]  # the transformers config of the encoder(s), as a dict
    encoder_name: str  # where the encoder came from, e.g. "sentence-transformers/all-MiniLM-L6-v2"
    mechanism: str = ""
    max_len: int = 64  # tokens per text (the cross-encoder reads 2 * max_len)
    lowercase: bool = True
    dropout: float = 0.1
    attn_heads: int = 1
    num_labels: int = 3
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- the original's modules


class MultiHeadAttention(nn.Module):
    def __init__(self, heads: int, d_model: int, dropout: float = 0.1):
        super().__init__()
        self.d_model, self.d_k, self.h = d_model, d_model // heads, heads
        self.q_linear = nn.Linear(d_model, d_model)
        self.v_linear = nn.Linear(d_model, d_model)
        self.k_linear = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, q, k, v, key_mask=None):
        bs = q.size(0)
        k = self.k_linear(k).view(bs, -1, self.h, self.d_k).transpose(1, 2)
        q = self.q_linear(q).view(bs, -1, self.h, self.d_k).transpose(1, 2)
        v = self.v_linear(v).view(bs, -1, self.h, self.d_k).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.d_k)
        if key_mask is not None:  # (bs, len_k): 0 = padding
            scores = scores.masked_fill(key_mask[:, None, None, :] == 0, -1e9)
        scores = self.dropout(F.softmax(scores, dim=-1))
        concat = torch.matmul(scores, v).transpose(1, 2).contiguous().view(bs, -1, self.d_model)
        return self.out(concat)


class Norm(nn.Module):
    """Unused in the original's forward pass; kept so its state dicts load."""

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))
        self.eps = eps


class ClassificationHead(nn.Module):
    def __init__(self, hidden_size: int, num_labels: int = 3, dropout: float = 0.1):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(self, x):
        return self.out_proj(self.dropout(torch.relu(self.dense(self.dropout(x)))))


class _Holder(nn.Module):
    """`seeker_encoder.roberta.*`: the original wraps each encoder in a model whose base is `.roberta`."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.roberta = encoder


def _init_head(module: nn.Module) -> None:
    for m in module.modules():
        # (not on the meta device, where the weights are loaded next: `normal_` there imports torch._dynamo, ~2 s)
        if isinstance(m, nn.Linear) and m.weight.device.type != "meta":
            m.weight.data.normal_(mean=0.0, std=0.02)
            if m.bias is not None:
                m.bias.data.zero_()


def _encoder_from_config(encoder_config: dict[str, Any]) -> nn.Module:
    from transformers import AutoConfig, AutoModel

    cfg = dict(encoder_config)
    model_type = cfg.pop("model_type")
    return AutoModel.from_config(AutoConfig.for_model(model_type, **cfg))


def _additive_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def encoder_bottom(encoder: nn.Module, input_ids, attention_mask, token_type_ids=None, layers: int = 0) -> torch.Tensor:
    """Hidden states after the embeddings and the first `layers` layers of a BERT/RoBERTa encoder."""
    kwargs = {"input_ids": input_ids} if token_type_ids is None else {"input_ids": input_ids, "token_type_ids": token_type_ids}
    hidden = encoder.embeddings(**kwargs)
    mask = _additive_mask(attention_mask, hidden.dtype)
    for layer in encoder.encoder.layer[:layers]:
        hidden = _layer(layer, hidden, mask)
    return hidden


def encoder_top(encoder: nn.Module, hidden: torch.Tensor, attention_mask, layers: int = 0) -> torch.Tensor:
    """The remaining layers, from the states `encoder_bottom(..., layers)` returned: the last hidden state."""
    mask = _additive_mask(attention_mask, hidden.dtype)
    for layer in encoder.encoder.layer[layers:]:
        hidden = _layer(layer, hidden, mask)
    return hidden


def encoder_first_token(encoder: nn.Module, hidden: torch.Tensor, attention_mask, layers: int = 0) -> torch.Tensor:
    """`encoder_top(...)[:, 0]` for less: the last layer's feed-forward (two thirds of its cost) runs on the first
    token only, the one state a classifier's head reads."""
    mask = _additive_mask(attention_mask, hidden.dtype)
    top = encoder.encoder.layer[layers:]
    if not len(top):
        return hidden[:, 0]
    for layer in top[:-1]:
        hidden = _layer(layer, hidden, mask)
    attended = top[-1].attention(hidden, mask)[0]
    return top[-1].feed_forward_chunk(attended[:, :1])[:, 0]


def _layer(layer: nn.Module, hidden, mask):
    out = layer(hidden, mask)
    return out[0] if isinstance(out, tuple) else out


class BiEncoder(nn.Module):
    def __init__(self, config: ClassifierConfig, seeker_encoder: nn.Module | None = None, responder_encoder: nn.Module | None = None):
        super().__init__()
        hidden = config.encoder["hidden_size"]
        self.dropout = nn.Dropout(config.dropout)
        self.rationale_classifier = nn.Linear(hidden, 2)
        self.attn = MultiHeadAttention(config.attn_heads, hidden)
        self.norm = Norm(hidden)
        self.empathy_classifier = ClassificationHead(hidden, config.num_labels)
        _init_head(self)
        self.seeker_encoder = _Holder(seeker_encoder if seeker_encoder is not None else _encoder_from_config(config.encoder))
        self.responder_encoder = _Holder(responder_encoder if responder_encoder is not None else _encoder_from_config(config.encoder))

    def encode_seeker(self, input_ids, attention_mask):
        return self.seeker_encoder.roberta(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def forward(self, batch: dict[str, torch.Tensor], seeker_states: torch.Tensor | None = None, bottom: torch.Tensor | None = None, bottom_layers: int = 0):
        """Logits of the level and of each response token being a rationale. `seeker_states` (the frozen seeker
        encoder's output) and `bottom` (the response encoder's states after its first `bottom_layers` layers)
        may be given precomputed; the result is the same in eval mode."""
        if seeker_states is None:
            seeker_states = self.encode_seeker(batch["seeker_input_ids"], batch["seeker_attention_mask"])
        return self.heads(self.trunk(batch, bottom, bottom_layers), batch, seeker_states)

    def trunk(self, batch: dict[str, torch.Tensor], bottom: torch.Tensor | None = None, bottom_layers: int = 0) -> torch.Tensor:
        """The response encoder's last hidden states: what classifiers of several mechanisms trained together share."""
        if bottom is None:
            return self.responder_encoder.roberta(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return encoder_top(self.responder_encoder.roberta, bottom, batch["attention_mask"], bottom_layers)

    def heads(self, rp: torch.Tensor, batch: dict[str, torch.Tensor], seeker_states: torch.Tensor):
        """This mechanism's own part: the response-to-seeker attention, the level head and the rationale head."""
        rp = self._attend(rp, seeker_states, batch["seeker_attention_mask"])
        return self.empathy_classifier(rp[:, 0, :]), self.rationale_classifier(self.dropout(rp))

    def first_token_logits(self, first: torch.Tensor, seeker_states: torch.Tensor, seeker_attention_mask) -> torch.Tensor:
        """`forward`'s level logits from the response encoder's first-token states (batch x hidden) alone: the head
        reads that token only, and the attention treats each response token on its own."""
        return self.empathy_classifier(self._attend(first[:, None, :], seeker_states, seeker_attention_mask)[:, 0])

    def _attend(self, rp: torch.Tensor, seeker_states: torch.Tensor, seeker_attention_mask) -> torch.Tensor:
        """The response states after attending to the seeker's (one head, residual), as the original."""
        return rp + self.dropout(self.attn(rp, seeker_states, seeker_states, key_mask=seeker_attention_mask))

    @property
    def trained_encoder(self) -> nn.Module:
        return self.responder_encoder.roberta

    def freeze_seeker(self) -> None:
        for p in self.seeker_encoder.parameters():
            p.requires_grad = False


class CrossEncoder(nn.Module):
    def __init__(self, config: ClassifierConfig, encoder: nn.Module | None = None):
        super().__init__()
        hidden = config.encoder["hidden_size"]
        self.dropout = nn.Dropout(config.dropout)
        self.rationale_classifier = nn.Linear(hidden, 2)
        self.empathy_classifier = ClassificationHead(hidden, config.num_labels)
        _init_head(self)
        self.encoder = encoder if encoder is not None else _encoder_from_config(config.encoder)

    @property
    def trained_encoder(self) -> nn.Module:
        return self.encoder

    def forward(self, batch: dict[str, torch.Tensor], seeker_states=None, bottom: torch.Tensor | None = None, bottom_layers: int = 0):
        return self.heads(self.trunk(batch, bottom, bottom_layers), batch)

    def trunk(self, batch: dict[str, torch.Tensor], bottom: torch.Tensor | None = None, bottom_layers: int = 0) -> torch.Tensor:
        """The pair encoder's last hidden states (shared by mechanisms trained together)."""
        if bottom is None:
            kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
            if "token_type_ids" in batch:
                kwargs["token_type_ids"] = batch["token_type_ids"]
            return self.encoder(**kwargs).last_hidden_state
        return encoder_top(self.encoder, bottom, batch["attention_mask"], bottom_layers)

    def heads(self, h: torch.Tensor, batch: dict[str, torch.Tensor], seeker_states=None):
        """This mechanism's level and rationale heads."""
        return self.empathy_classifier(h[:, 0, :]), self.rationale_classifier(self.dropout(h))


def build(config: ClassifierConfig, pretrained: str | Path | None = None) -> nn.Module:
    """A classifier; with `pretrained`, its encoder(s) start from that folder's weights."""
    enc = lambda: _load_encoder(pretrained) if pretrained else None  # noqa: E731
    if config.arch == "bi":
        return BiEncoder(config, enc(), enc())
    if config.arch == "cross":
        return CrossEncoder(config, enc())
    raise HarnessError(f"unknown EPITOME classifier architecture '{config.arch}'; one of {', '.join(ARCHS)}.")


def _load_encoder(path: str | Path) -> nn.Module:
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        return AutoModel.from_pretrained(str(path))
    finally:
        hf_logging.enable_progress_bar()


def encoder_config(path: str | Path) -> dict[str, Any]:
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(str(path)).to_dict()
    keep = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in ("architectures", "transformers_version", "torch_dtype", "dtype")}
    return keep


# --------------------------------------------------------------------------- tokenisation


class Encoder:
    """Turns (seeker, response) texts into model inputs, with rationale labels when asked."""

    def __init__(self, tokenizer, config: ClassifierConfig):
        self.tok = tokenizer
        self.config = config

    def _prep(self, text: str) -> str:
        return text.lower() if self.config.lowercase else text

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's input ids, as `encode` gives a bi-encoder's seeker or response."""
        return self.tok([self._prep(t) for t in texts], truncation=True, max_length=self.config.max_len)["input_ids"]

    def encode(self, seekers: Sequence[str], responses: Sequence[str], rationales: Sequence[Sequence[str]] | None = None) -> list[dict[str, list[int]]]:
        seekers = [self._prep(s) for s in seekers]
        responses = [self._prep(r) for r in responses]
        L = self.config.max_len
        items: list[dict[str, list[int]]] = []
        if self.config.arch == "bi":
            sp = self.tok(seekers, truncation=True, max_length=L)
            rp = self.tok(responses, truncation=True, max_length=L, return_offsets_mapping=rationales is not None)
            for i in range(len(responses)):
                item = {"seeker_input_ids": sp["input_ids"][i], "input_ids": rp["input_ids"][i]}
                if rationales is not None:
                    spans = _spans(responses[i], rationales[i], self.config.lowercase)
                    item["rationale_labels"] = [
                        -100 if (s == e) else int(_overlaps(s, e, spans)) for (s, e) in rp["offset_mapping"][i]
                    ]
                items.append(item)
        else:
            enc = self.tok(seekers, responses, truncation="longest_first", max_length=2 * L, return_offsets_mapping=rationales is not None)
            for i in range(len(responses)):
                item = {"input_ids": enc["input_ids"][i]}
                if "token_type_ids" in enc:
                    item["token_type_ids"] = enc["token_type_ids"][i]
                if rationales is not None:
                    spans = _spans(responses[i], rationales[i], self.config.lowercase)
                    seq = enc.sequence_ids(i)
                    item["rationale_labels"] = [
                        int(_overlaps(s, e, spans)) if sid == 1 and s != e else -100 for sid, (s, e) in zip(seq, enc["offset_mapping"][i])
                    ]
                items.append(item)
        return items

    def collate(self, items: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        pad = self.tok.pad_token_id
        out: dict[str, torch.Tensor] = {}
        for name, fill in (("input_ids", pad), ("token_type_ids", 0), ("rationale_labels", -100)):
            if name in items[0]:
                out[name] = _pad([it[name] for it in items], fill)
        out["attention_mask"] = _pad([[1] * len(it["input_ids"]) for it in items], 0)
        if "seeker_input_ids" in items[0]:
            out["seeker_input_ids"] = _pad([it["seeker_input_ids"] for it in items], pad)
            out["seeker_attention_mask"] = _pad([[1] * len(it["seeker_input_ids"]) for it in items], 0)
        return out


def _pad(rows: Sequence[Sequence[int]], fill: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([list(r) + [fill] * (width - len(r)) for r in rows], dtype=torch.long)


def _spans(response: str, rationales: Sequence[str], lowercase: bool) -> list[tuple[int, int]]:
    spans = []
    for r in rationales:
        r = r.strip()
        if lowercase:
            r = r.lower()
        if not r:
            continue
        start = response.find(r)
        while start != -1:
            spans.append((start, start + len(r)))
            start = response.find(r, start + 1)
    return spans


def _overlaps(s: int, e: int, spans: Sequence[tuple[int, int]]) -> bool:
    return any(s < b and a < e for a, b in spans)


# --------------------------------------------------------------------------- saving and loading


def save(model: nn.Module, tokenizer, config: ClassifierConfig, folder: Path) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=1) + "\n")
    tokenizer.save_pretrained(str(folder / "tokenizer"))


class Classifier:
    """A trained classifier loaded from its folder: `predict(seekers, responses) -> levels`."""

    def __init__(self, folder: str | Path, device: str | None = None):
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
            raise HarnessError(f"{folder}: no EPITOME classifier here ({CONFIG_FILE} and {WEIGHTS_FILE} expected); run `harness epitome train` first.")
        self.folder = folder
        self.config = ClassifierConfig(**json.loads((folder / CONFIG_FILE).read_text()))
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # a bi-encoder over BERT (the classifiers `harness epitome train` makes) runs on harness.bert: transformers'
        # BertModel operations without importing transformers (~4 s); anything else (the original RoBERTa
        # checkpoints, a cross-encoder) on transformers
        light = self.config.arch == "bi" and bert.supported(self.config.encoder) and (folder / "tokenizer" / "tokenizer.json").is_file()
        if light:
            with torch.device("meta"):  # every weight is loaded next (a missing one is an error): nothing to initialise
                self.model = BiEncoder(self.config, bert.BertEncoder(self.config.encoder), bert.BertEncoder(self.config.encoder))
        else:
            with _weights_not_initialised():  # as above: random init was ~2 s of a 3 s load
                self.model = build(self.config)
        missing, unexpected = self.model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)), strict=False, assign=light)
        missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
        if missing or unexpected:
            raise HarnessError(f"{folder / WEIGHTS_FILE}: weights do not fit the {self.config.arch} architecture (missing {missing[:3]}, unexpected {unexpected[:3]}); retrain with `harness epitome train`.")
        self.model.to(self.device).eval()
        if light:
            self.tokenizer = bert.Tokenizer(folder / "tokenizer", self.config.max_len)  # single texts, as a bi-encoder's inference asks
        else:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(str(folder / "tokenizer"))
        self.encoder = Encoder(self.tokenizer, self.config)

    @torch.no_grad()
    def logits(self, seekers: Sequence[str], responses: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        return predict_logits(self.model, self.encoder, seekers, responses, batch_size, self.device)

    def predict(self, seekers: Sequence[str], responses: Sequence[str], batch_size: int = 64) -> list[int]:
        if not len(responses):
            return []
        return self.logits(seekers, responses, batch_size).argmax(dim=-1).tolist()


@torch.no_grad()
def predict_logits(model: nn.Module, encoder: Encoder, seekers: Sequence[str], responses: Sequence[str], batch_size: int = 64, device: str = "cpu") -> torch.Tensor:
    """Logits in input order; batches are formed by length so little padding is computed."""
    was_training = model.training
    model.eval()
    items = encoder.encode(seekers, responses)
    order = sorted(range(len(items)), key=lambda i: (len(items[i]["input_ids"]), len(items[i].get("seeker_input_ids", ()))))
    out = torch.empty(len(items), model.empathy_classifier.out_proj.out_features)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = {k: v.to(device) for k, v in encoder.collate([items[i] for i in idx]).items()}
        logits, _ = model(batch)
        out[idx] = logits.float().cpu()
    model.train(was_training)
    return out


# --------------------------------------------------------------------------- several mechanisms at once


class SharedBiEncoders:
    """Bi-encoder classifiers of several mechanisms scored together, running once what they share.

    Their seeker encoder is frozen in training, so it is the same in every mechanism: each unique seeker text
    is encoded once. Their response encoders share the frozen embeddings and bottom layers (only the top
    `train_layers` are trained): each unique response runs those once, then each mechanism's top layers, which
    do not see the seeker, keep only the first token's state; the response-to-seeker attention and the head run
    per pair from that state. The logits equal each classifier's own `logits` up to float rounding. Build it
    with `share`, which checks the weights rather than trusting the training settings.
    """

    def __init__(self, classifiers: dict[str, Classifier], bottom_layers: int):
        self.classifiers = classifiers
        self.bottom_layers = bottom_layers
        self.first = next(iter(classifiers.values()))

    def logits(self, seekers: Sequence[str], responses: Sequence[str], batch_size: int = 16) -> dict[str, torch.Tensor]:
        """Per mechanism, the logits of each (seeker, response) pair, in input order.

        Small batches of texts sorted by length: on CPU, less padding saves more than bigger matrix products
        would. On CPU the batches are shared out between worker threads of one intra-op thread each
        (`harness.threads.map_batches`): several intra-op threads have little to share in such batches, and on a
        busy machine OpenMP threads spin-waiting for each other made two threads 5-10x slower than one (2 cores).
        Each batch is computed as one thread alone would, so the logits do not depend on the thread count.
        """
        threads = None if torch.device(self.first.device).type == "cpu" else 1
        with torch.inference_mode():
            return self._logits(seekers, responses, batch_size, threads)

    def _logits(self, seekers: Sequence[str], responses: Sequence[str], batch_size: int, threads: int | None) -> dict[str, torch.Tensor]:
        seeker_texts, seeker_of = _unique(seekers)
        response_texts, response_of = _unique(responses)
        seeker_states = self._seeker_states(seeker_texts, batch_size, threads)
        first_tokens = self._first_tokens(response_texts, batch_size, threads)
        order = sorted(range(len(responses)), key=lambda i: len(seeker_states[seeker_of[i]]))
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)][::-1]  # the longest first

        def heads(idx: list[int]) -> dict[str, torch.Tensor]:
            states, mask = _stack([seeker_states[seeker_of[i]] for i in idx])
            rows = torch.tensor([response_of[i] for i in idx], device=states.device)
            return {m: c.model.first_token_logits(first_tokens[m][rows], states, mask).float().cpu() for m, c in self.classifiers.items()}

        out = {m: torch.empty(len(responses), c.config.num_labels) for m, c in self.classifiers.items()}
        for idx, logits in zip(batches, map_batches(heads, batches, threads)):
            for m in out:
                out[m][idx] = logits[m]
        return out

    def _seeker_states(self, texts: Sequence[str], batch_size: int, threads: int | None) -> list[torch.Tensor]:
        """Per text, the seeker encoder's states of its tokens (tokens x hidden)."""
        def encode(batch) -> list[torch.Tensor]:
            idx, input_ids, mask = batch
            hidden = self.first.model.encode_seeker(input_ids, mask)
            return [hidden[row, : int(mask[row].sum())] for row in range(len(idx))]

        states: list[torch.Tensor] = [None] * len(texts)  # type: ignore[list-item]
        batches = self._batches(texts, batch_size)
        for (idx, _, _), rows in zip(batches, map_batches(encode, batches, threads)):
            for i, row in zip(idx, rows):
                states[i] = row
        return states

    def _first_tokens(self, texts: Sequence[str], batch_size: int, threads: int | None) -> dict[str, torch.Tensor]:
        """Per mechanism, each text's first-token state out of its response encoder (texts x hidden)."""
        def encode(batch) -> dict[str, torch.Tensor]:
            _, input_ids, mask = batch
            bottom = encoder_bottom(self.first.model.trained_encoder, input_ids, mask, None, self.bottom_layers)
            return {m: encoder_first_token(c.model.trained_encoder, bottom, mask, self.bottom_layers) for m, c in self.classifiers.items()}

        hidden_size = self.first.config.encoder["hidden_size"]
        out = {m: torch.empty(len(texts), hidden_size, device=self.first.device) for m in self.classifiers}
        batches = self._batches(texts, batch_size)
        for (idx, _, _), states in zip(batches, map_batches(encode, batches, threads)):
            for m in out:
                out[m][idx] = states[m]
        return out

    def _batches(self, texts: Sequence[str], batch_size: int) -> list[tuple[list[int], torch.Tensor, torch.Tensor]]:
        """(positions, input ids, attention mask) of the texts in batches of similar length, the longest first."""
        ids = self.first.encoder.token_ids(texts)
        pad = self.first.tokenizer.pad_token_id
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        batches = []
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            rows = [ids[i] for i in idx]
            batches.append((idx, _pad(rows, pad).to(self.first.device), _pad([[1] * len(r) for r in rows], 0).to(self.first.device)))
        return batches[::-1]


def share(classifiers: dict[str, Classifier]) -> SharedBiEncoders | None:
    """The classifiers as one `SharedBiEncoders`, or None where they cannot share their encoders (another
    architecture, other tokenisation, a seeker encoder or response embeddings that differ, e.g. the original
    checkpoints, fine-tuned in full): then each must run on its own."""
    first, *rest = classifiers.values()
    if any(c.config.arch != "bi" or not _same_inputs(first, c) for c in classifiers.values()):
        return None
    last = first.model.trained_encoder.encoder.layer[-1]
    if not (hasattr(last, "attention") and hasattr(last, "feed_forward_chunk")):
        return None  # not a BERT-style layer that `encoder_first_token` can split
    if not all(_same_weights(first.model.seeker_encoder, c.model.seeker_encoder) for c in rest):
        return None
    responders = [c.model.trained_encoder for c in classifiers.values()]
    if not all(_same_weights(responders[0].embeddings, r.embeddings) for r in responders[1:]):
        return None
    shared = 0
    for layers in zip(*(r.encoder.layer for r in responders)):
        if not all(_same_weights(layers[0], layer) for layer in layers[1:]):
            break
        shared += 1
    return SharedBiEncoders(classifiers, shared)


def _same_inputs(a: Classifier, b: Classifier) -> bool:
    """Same encoder configuration, truncation, casing, device and tokenizer files: the same texts give the same inputs."""
    def settings(c: Classifier) -> dict[str, Any]:
        return {**asdict(c.config), "mechanism": None, "extra": None, "device": c.device}

    return settings(a) == settings(b) and _same_files(a.folder / "tokenizer", b.folder / "tokenizer")


def _same_files(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir())
    return names == sorted(p.name for p in b.iterdir()) and all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _weights_not_initialised():
    """transformers' own context for building a model whose weights are loaded afterwards (torch's and its own
    init functions do nothing meanwhile; process-wide: callers hold `harness.threads.loading`)."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # another transformers layout: initialise as usual
        from contextlib import nullcontext

        return nullcontext()
    return no_init_weights()


def _unique(texts: Sequence[str]) -> tuple[list[str], list[int]]:
    """The distinct texts and, per input text, its position among them."""
    index: dict[str, int] = {}
    positions = [index.setdefault(t, len(index)) for t in texts]
    return list(index), positions


def _stack(rows: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-text states padded with zeros into one batch, and its attention mask."""
    states = torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True)
    lengths = torch.tensor([len(r) for r in rows], device=states.device)
    mask = (torch.arange(states.shape[1], device=states.device)[None, :] < lengths[:, None]).long()
    return states, mask


# --------------------------------------------------------------------------- the original checkpoints

ORIGINAL_SHA256 = {  # as EmpGPT-3's modules/empathy_scorer.py pins them (its ER entry has none)
    "EX": "4f43ceb2526e008a2093856208abb878f14236dd54e4fdcdfdd4ccbeb9c08178",
    "IP": "e80d1bcfb75f7046961ed71cfd2eada2d939f7f1191e169b0b4aa68e9b6054dc",
}


def load_original_state(path: Path) -> dict[str, torch.Tensor]:
    """A `finetuned_{ER,IP,EX}.pth` state dict (torch.save of the original model's state_dict())."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is the user's file
        raise HarnessError(f"{path}: not a loadable state dict of the original EPITOME classifier ({type(exc).__name__}: {exc}).") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise HarnessError(f"{path}: expected a state dict, found {type(state).__name__}.")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    return {k: v for k, v in state.items() if not k.endswith(("position_ids",))}


def original_model(roberta_base: str | Path, state: dict[str, torch.Tensor], mechanism: str) -> tuple[nn.Module, ClassifierConfig]:
    cfg = encoder_config(roberta_base)
    if cfg.get("model_type") != "roberta" or cfg.get("hidden_size") != 768:
        raise HarnessError(f"{roberta_base}: not a roberta-base folder (model_type {cfg.get('model_type')}, hidden size {cfg.get('hidden_size')}); the original EPITOME classifiers are two roberta-base encoders.")
    config = ClassifierConfig(arch="bi", encoder=cfg, encoder_name="roberta-base (original EPITOME checkpoint)", mechanism=mechanism, max_len=64, lowercase=True, dropout=0.1)
    model = BiEncoder(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise HarnessError(f"the checkpoint does not match the original bi-encoder: missing {missing[:5]}, unexpected {unexpected[:5]}.")
    return model.eval(), config
