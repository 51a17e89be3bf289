"""The EPITOME training recipe's parts (baselines/epitome/train.py) against hand computations, the report's JSON,
the tag and digest that keep classifiers of different weights apart, and folders of the first recipe still loading.

Fast: tensors built by hand, and a tiny random BERT trained for a few steps."""
from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from baselines.epitome import data, metric, train
from baselines.epitome.model import Classifier, ClassifierConfig, Encoder


@pytest.fixture(autouse=True)
def _no_predictor_override():
    yield
    metric.set_predictor(None)
    metric._loaded.clear()


# --------------------------------------------------------------------------- loss, weights, calibration by hand


def _nll(logits: list[float], target: int) -> float:
    return -(logits[target] - math.log(sum(math.exp(v) for v in logits)))


def test_class_weights_by_hand():
    import torch

    labels = torch.tensor([0, 0, 0, 1, 2, 2, -100])  # -100: a row of another mechanism
    assert train.class_weights(labels, 0.0) is None  # unweighted
    assert train.class_weights(labels, 1.0).tolist() == pytest.approx([6 / 9, 6 / 3, 6 / 6])  # balanced: n / (3 n_level)
    assert train.class_weights(labels, 0.5).tolist() == pytest.approx([(6 / 9) ** 0.5, 2 ** 0.5, 1.0])
    assert train.class_weights(torch.tensor([0, 0, 2]), 1.0).tolist() == pytest.approx([3 / 6, 3 / 3, 3 / 3])  # absent level counts as one


def test_joint_loss_by_hand():
    """Sum over mechanisms of 0.5 * weighted level CE (mean over labelled rows, weights normalised) + 0.5 * token CE."""
    import torch

    er = [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [1.0, 1.0, 1.0]]
    ip = [[0.0, 3.0, 0.0], [1.0, -1.0, 0.5], [0.3, 0.3, 2.0]]
    er_levels, ip_levels = [0, 2, 1], [1, -100, 2]  # IP has no row at the second input
    w = [0.5, 2.0, 1.0]
    tokens = [[[1.0, -1.0], [0.0, 2.0]], [[0.5, 0.5], [3.0, 0.0]], [[-1.0, 1.0], [0.2, 0.1]]]
    er_tokens, ip_tokens = [[0, 1], [1, -100], [-100, -100]], [[-100, -100], [-100, -100], [-100, -100]]  # IP: no rationale here
    outputs = {"ER": (torch.tensor(er), torch.tensor(tokens)), "IP": (torch.tensor(ip), torch.tensor(tokens))}
    levels = {"ER": torch.tensor(er_levels), "IP": torch.tensor(ip_levels)}
    rationales = {"ER": torch.tensor(er_tokens), "IP": torch.tensor(ip_tokens)}
    weights = {"ER": torch.tensor(w), "IP": None}
    got = train.joint_loss(outputs, levels, rationales, weights, 0.5, 0.5).item()

    er_level = sum(w[y] * _nll(er[i], y) for i, y in enumerate(er_levels)) / sum(w[y] for y in er_levels)
    ip_level = (_nll(ip[0], 1) + _nll(ip[2], 2)) / 2
    er_token = (_nll(tokens[0][0], 0) + _nll(tokens[0][1], 1) + _nll(tokens[1][0], 1)) / 3
    assert got == pytest.approx(0.5 * er_level + 0.5 * er_token + 0.5 * ip_level, rel=1e-6)
    none = {"ER": torch.tensor([-100, -100, -100]), "IP": torch.tensor([-100, -100, -100])}
    assert train.joint_loss(outputs, none, {"ER": torch.tensor(ip_tokens), "IP": torch.tensor(ip_tokens)}, weights, 0.5, 0.5).item() == 0.0  # never nan


def test_macro_f1_is_evaluate_s():
    import torch

    rng = random.Random(0)
    for _ in range(20):
        gold = [rng.choice([0, 0, 0, 1, 2]) for _ in range(40)]
        pred = [rng.choice([0, 1, 2]) for _ in range(40)]
        assert train.macro_f1(torch.tensor(gold), torch.tensor(pred)) == pytest.approx(train.evaluate(gold, pred)["macro_f1"])
    assert train.macro_f1(torch.tensor([0, 0]), torch.tensor([0, 0])) == pytest.approx(100 / 3)  # absent levels score F1 0


def test_calibration_finds_the_rare_level_and_folds_into_the_head():
    import torch

    # level 1 is never the argmax, but its logit is highest on its own rows: an offset of +1 on it recovers them
    logits = torch.tensor([[2.0, 1.5, 0.0], [2.0, 1.4, 0.0], [2.0, 0.2, 0.0], [2.0, 0.1, 0.0], [0.0, 0.0, 3.0]])
    gold = [1, 1, 0, 0, 2]
    assert train.evaluate(gold, logits.argmax(-1).tolist())["per_level"]["1"]["recall"] == 0
    bias = train.calibrate_bias(logits, gold)
    assert bias[0] == 0.0 and 0.6 < bias[1] <= 1.75 and train.evaluate(gold, (logits + torch.tensor(bias)).argmax(-1).tolist())["macro_f1"] == 100
    assert bias == [0.0, 0.75, 0.0]  # of equally good offsets, the smallest shift
    assert train.calibrate_bias(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), [0, 2]) == [0.0, 0.0, 0.0]  # nothing to gain: no shift

    from baselines.epitome.model import ClassificationHead

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.empathy_classifier = ClassificationHead(4, 3, dropout=0.0)

    head = Head().eval()
    x = torch.randn(5, 4)
    before = head.empathy_classifier(x)
    train.fold_bias(head, [0.0, 0.75, -0.5])
    assert torch.allclose(head.empathy_classifier(x), before + torch.tensor([0.0, 0.75, -0.5]))


# --------------------------------------------------------------------------- joint inputs


class _Tok:
    """Whitespace tokenizer: ids are word lengths (enough to tell texts apart), with offsets."""

    pad_token_id = 0

    def __call__(self, texts, truncation=True, max_length=64, return_offsets_mapping=False):
        ids, offsets = [], []
        for t in texts:
            words, pos = [], []
            start = 0
            for w in t.split():
                s = t.index(w, start)
                words.append(len(w) + 1)
                pos.append((s, s + len(w)))
                start = s + len(w)
            ids.append([1] + words[: max_length - 2] + [2])
            offsets.append([(0, 0)] + pos[: max_length - 2] + [(0, 0)])
        out = {"input_ids": ids}
        if return_offsets_mapping:
            out["offset_mapping"] = offsets
        return out


def test_joint_inputs_share_rows_and_split_the_ones_that_differ():
    codec = Encoder(_Tok(), ClassifierConfig(arch="bi", encoder={}, encoder_name="x"))
    ex = lambda key, resp, level, rat=(): data.Example(key, "seeker text", resp, level, rat)  # noqa: E731
    rows = {"ER": [ex("a/1", "so sorry", 1, ("sorry",)), ex("b/2", "on this sub", 0)],
            "IP": [ex("a/1", "so  sorry", 2), ex("b/2", "on this subreddit", 1, ("subreddit",))]}  # whitespace only; one word differs
    inputs = train.joint_inputs(codec, rows)
    assert len(inputs.items) == 3  # a/1 once; b/2 twice
    assert inputs.rows == {"ER": [0, 1], "IP": [0, 2]}
    assert inputs.labels["ER"].tolist() == [1, 0, -100] and inputs.labels["IP"].tolist() == [2, -100, 1]
    assert inputs.rationales["ER"][0] == [-100, 0, 1, -100] and inputs.rationales["IP"][2] == [-100, 0, 0, 1, -100]
    assert inputs.rationales["IP"][1] == [-100] * 5  # no IP row there
    with pytest.raises(Exception, match="same pairs in the same order"):
        train.joint_inputs(codec, {"ER": rows["ER"], "IP": rows["IP"][::-1]})


# --------------------------------------------------------------------------- report --json


def _fake_report(folder: Path, m: str, gold: list[int], pred: list[int], seconds: float, joint: list[str] | None, **extra) -> None:
    (folder / m).mkdir(parents=True, exist_ok=True)
    result = {"mechanism": m, "arch": "bi", "encoder": "x", "train_seconds": seconds, "test": {**train.evaluate(gold, pred), "predictions": pred},
              "dev": train.evaluate(gold[:4], pred[:4]), "weights_sha256": f"{m}" * 16, **extra}
    if joint:
        result["joint"] = {"mechanisms": joint, "train_seconds": seconds, "wall_seconds": seconds + 60}
    (folder / m / "report.json").write_text(json.dumps(result))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=120)


def test_report_json_numbers_from_a_known_confusion(tmp_path):
    folder = tmp_path / "epitome" / "some-tag"
    gold = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    er = [0, 0, 0, 1, 1, 0, 2, 2, 2, 0]  # level 0: 3 of 4, level 1: 1 of 2, level 2: 3 of 4
    ip = [0, 0, 0, 0, 0, 0, 2, 2, 2, 2]  # level 1 never predicted
    _fake_report(folder, "ER", gold, er, 300.0, ["ER", "IP", "EX"])
    _fake_report(folder, "IP", gold, ip, 300.0, ["ER", "IP", "EX"])
    _fake_report(folder, "EX", gold, gold, 300.0, ["ER", "IP", "EX"])
    proc = _cli("epitome", "report", "--json", str(folder))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)  # JSON only on stdout
    assert summary["tag"] == "some-tag" and set(summary["mechanisms"]) == {"ER", "IP", "EX"}
    assert summary["train_seconds"] == 300.0 and summary["wall_seconds"] == 360.0  # one joint training, counted once
    s = summary["mechanisms"]["ER"]
    assert s["accuracy"] == pytest.approx(70.0) and s["recall"] == pytest.approx({"0": 75.0, "1": 50.0, "2": 75.0})
    assert s["per_level"]["1"]["precision"] == pytest.approx(50.0) and s["per_level"]["0"]["precision"] == pytest.approx(60.0)
    assert s["per_level"]["0"]["support"] == 4
    f1 = [2 * 0.6 * 0.75 / 1.35, 0.5, 2 * 1.0 * 0.75 / 1.75]  # level 0: P 3/5 R 3/4; level 1: P 1/2 R 1/2; level 2: P 1 R 3/4
    assert s["macro_f1"] == pytest.approx(100 * sum(f1) / 3)
    assert s["confusion_matrix"] == [[3, 1, 0], [1, 1, 0], [1, 0, 3]]
    assert summary["mechanisms"]["IP"]["recall"]["1"] == 0.0 and summary["all_levels_predicted"] is False
    assert s["trained_with"] == ["ER", "IP", "EX"] and s["dev"]["n"] == 4

    _fake_report(folder, "IP", gold, gold, 100.0, None)  # trained on its own (the first recipe's reports have no "joint")
    summary = train.report(folder)
    assert summary["all_levels_predicted"] is True and summary["train_seconds"] == 400.0 and summary["wall_seconds"] is None


def test_report_errors_are_one_line(tmp_path):
    proc = _cli("epitome", "report", "--json", str(tmp_path / "nothing-here"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and "harness epitome train" in proc.stderr
    (tmp_path / "bad" / "ER").mkdir(parents=True)
    (tmp_path / "bad" / "ER" / "report.json").write_text("{not json")
    proc = _cli("epitome", "report", str(tmp_path / "bad"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "unreadable report" in proc.stderr


# --------------------------------------------------------------------------- tag and digest


def test_new_default_tag():
    assert train.DEFAULT_TAG == "minilm-l6-bi-v2" != "minilm-l6-bi"  # the first recipe's tag
    assert train.classifier_tag("minilm-l6", "bi", joint=False) == "minilm-l6-bi-v2-separate"


def test_metric_info_names_the_weights_but_keeps_original(tmp_path):
    gold = [0, 1, 2]
    for name in ("a", "b"):
        for m in data.MECHANISMS:
            _fake_report(tmp_path / name, m, gold, gold, 1.0, None, weights_sha256=(name + m) * 8)
    a, b = (metric.TrainedClassifiers(tmp_path / n).describe()["classifier"] for n in ("a", "b"))
    assert a.startswith("a@") and len(a) == 10 and b.startswith("b@") and a[2:] != b[2:]
    assert metric.weights_digest({"ER": "1", "IP": "2"}) == metric.weights_digest({"IP": "2", "ER": "1"})
    # `harness epitome import-original`'s folder keeps the plain name the published files match ({"classifier": "original"})
    for m in data.MECHANISMS:
        _fake_report(tmp_path / "original", m, gold, gold, 1.0, None, checkpoint={"file": f"finetuned_{m}.pth", "sha256": "0" * 64})
    assert metric.TrainedClassifiers(tmp_path / "original").describe()["classifier"] == "original"


# --------------------------------------------------------------------------- tiny trainings




def test_epoch_selection_restores_the_best_epoch(tiny_encoder, data_root):
    results = train.train_joint(("ER", "EX"), str(tiny_encoder), "bi", None, limit=32, epochs=3, batch_size=8, lr=3e-3, train_layers=1,
                                select_epoch=True, class_weight_power=1.0, eval_splits=("dev",), log=lambda s: None)
    er = results["ER"]
    history = er["history"]
    best = max(history, key=lambda e: e["dev_mean_macro_f1"])  # the first of equals
    assert er["selected_epoch"] == best["epoch"] and results["EX"]["selected_epoch"] == best["epoch"]
    for m in ("ER", "EX"):
        assert results[m]["dev"]["macro_f1"] == pytest.approx(best[f"dev_{m}"]["macro_f1"])  # the weights are that epoch's
    assert er["class_weights"] is not None and er["joint"]["mechanisms"] == ["ER", "EX"]
    assert er["train_seconds"] == results["EX"]["train_seconds"]  # one training


def test_calibrated_classifier_saves_its_offsets(tiny_encoder, data_root, tmp_path):
    out = tmp_path / "tiny-cal"
    results = train.train_joint(("IP",), str(tiny_encoder), "bi", out, limit=24, epochs=1, batch_size=8, lr=1e-3, calibrate=True,
                                eval_splits=("dev", "test"), log=lambda s: None)
    ip = results["IP"]
    assert ip["calibration_bias"][0] == 0.0 and len(ip["calibration_bias"]) == 3
    dev = data.load_splits("IP")["dev"]
    gold = [e.level for e in dev]
    assert train.evaluate(gold, Classifier(out / "IP").predict([e.seeker_post for e in dev], [e.response_post for e in dev]))["macro_f1"] == pytest.approx(ip["dev"]["macro_f1"])


def test_first_recipe_folder_still_loads_and_reports(tiny_encoder, data_root, tmp_path):
    """A folder as `harness epitome train` wrote it before the joint recipe (one training per mechanism, its report
    without `joint`, its classifier.json without the new settings) loads, predicts and reports as before."""
    import torch
    from transformers import AutoTokenizer

    from baselines.epitome.model import build, encoder_config, save

    folder = tmp_path / "minilm-l6-bi"
    for m in data.MECHANISMS:
        torch.manual_seed(1)
        config = ClassifierConfig(arch="bi", encoder=encoder_config(tiny_encoder), encoder_name="tiny", mechanism=m,
                                  extra={"training": {"lr": 1e-4, "train_layers": 2, "seed": 12}, "split": "split.json", "split_seed": 2020})
        save(build(config, pretrained=tiny_encoder), AutoTokenizer.from_pretrained(str(tiny_encoder)), config, folder / m)
        gold = [0, 1, 2]
        _fake_report(folder, m, gold, gold, 420.0, None)
    levels = Classifier(folder / "ER").predict(["I lost my job."], ["I'm so sorry. What happened?"])
    assert len(levels) == 1 and levels[0] in (0, 1, 2)
    assert train.report(folder)["train_seconds"] == 3 * 420.0
    info = metric.TrainedClassifiers(folder).describe()
    assert info["classifier"].startswith("minilm-l6-bi@")  # the old tag, now with its weights' digest: never the new column
