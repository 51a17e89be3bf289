"""EPITOME classifiers (baselines/epitome) and DIFF-EPITOME (baselines/epitome/metric.py).

Fast: the classifiers here are a tiny random BERT (built from a config, with MiniLM's vocabulary) trained for
a step or two; the real MiniLM classifiers are built by `harness epitome train` and reported in
baselines/epitome/README.md.
"""
from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from harness.contract import Turn, ScoredPair
from harness.errors import DataError, HarnessError
from baselines.epitome import metric
from baselines.epitome.metric import DIFF_EPITOME, DIFF_EPITOME_ER, DIFF_EPITOME_EX, DIFF_EPITOME_IP

from baselines.epitome import data, train
from baselines.epitome.model import BiEncoder, Classifier, ClassifierConfig, CrossEncoder, load_original_state, original_model


@pytest.fixture(autouse=True)
def _no_predictor_override():
    yield
    metric.set_predictor(None)
    metric._loaded.clear()


# --------------------------------------------------------------------------- data and split


@pytest.fixture(scope="module")
def rows(data_root):
    return {m: data.load(m, data_root) for m in data.MECHANISMS}


def test_files_as_published(rows):
    for m in data.MECHANISMS:
        assert len(rows[m]) == 3084
        assert [ex.key for ex in rows[m]] == [ex.key for ex in rows["ER"]]  # same pairs, same order
    counts = {m: Counter(ex.level for ex in rows[m]) for m in data.MECHANISMS}
    assert [counts["ER"][l] for l in data.LEVELS] == [2037, 895, 152]
    assert [counts["IP"][l] for l in data.LEVELS] == [1626, 114, 1344]
    assert [counts["EX"][l] for l in data.LEVELS] == [2604, 104, 376]


def test_split_is_the_committed_one_and_deterministic(rows):
    committed = data.load_split()
    assert data.make_split(rows) == committed  # rebuilt from the data and the recorded seed
    assert data.make_split(rows, seed=data.SPLIT_SEED + 1) != committed
    doc = json.loads(data.SPLIT_FILE.read_text())
    assert doc["seed"] == data.SPLIT_SEED and doc["source"] == {f.name: f.sha256 for f in data.DATASET.files}
    assert doc["keys"] == {"train": 2117, "dev": 302, "test": 604}
    ids = [k for name in data.SPLITS for k in doc[name]]
    assert all(re.fullmatch(r"[0-9a-z]+/[0-9a-z]+", k) for k in ids)  # ids only, never text


def test_split_is_disjoint_complete_and_stratified(rows):
    split = data.load_split()
    sets = {name: set(keys) for name, keys in split.items()}
    assert not (sets["train"] & sets["dev"]) and not (sets["train"] & sets["test"]) and not (sets["dev"] & sets["test"])
    assert set.union(*sets.values()) == {ex.key for ex in rows["ER"]}
    for m in data.MECHANISMS:
        parts = data.split_examples(rows[m], split)
        assert {name: len(v) for name, v in parts.items()} == {"train": 2159, "dev": 309, "test": 616}
        overall = Counter(ex.level for ex in rows[m])
        for name, part in parts.items():
            here = Counter(ex.level for ex in part)
            for level in data.LEVELS:
                assert abs(here[level] / len(part) - overall[level] / len(rows[m])) < 0.02, (m, name, level)


def _copy_data(data_root: Path, tmp_path: Path) -> Path:
    shutil.copytree(data_root / "epitome", tmp_path / "epitome")
    return tmp_path


def test_modified_file_is_a_clear_error(data_root, tmp_path):
    root = _copy_data(data_root, tmp_path)
    path = root / "epitome" / "interpretations-reddit.csv"
    path.write_bytes(path.read_bytes().replace(b"Help me", b"Help us", 1))
    with pytest.raises(DataError, match=r"interpretations-reddit\.csv: content differs .*harness epitome fetch"):
        data.load("ER", root)  # any file that differs stops every loader
    path.unlink()
    with pytest.raises(DataError, match=r"interpretations-reddit\.csv: missing EPITOME file.*ESC_HARNESS_DATA"):
        data.load("IP", root)
    with pytest.raises(HarnessError, match="unknown EPITOME mechanism"):
        data.load("XX", root)


# --------------------------------------------------------------------------- DIFF-EPITOME against hand-computed levels


class StubLevels:
    """Fixed levels per (mechanism, text); records the seeker texts it is given."""

    def __init__(self, levels):
        self.levels = levels
        self.seekers = []

    def predict(self, mechanism, seekers, responses):
        self.seekers += list(seekers)
        return [self.levels[mechanism][r] for r in responses]

    def describe(self):
        return {"classifier": "stub"}


LEVELS = {  # response A/B/C against reference X/Y/Z
    "ER": {"A": 2, "B": 1, "C": 0, "X": 0, "Y": 1, "Z": 1},  # (2-0)^2=4, 0, 1
    "IP": {"A": 0, "B": 2, "C": 1, "X": 0, "Y": 0, "Z": 2},  # 0, 4, 1
    "EX": {"A": 1, "B": 0, "C": 2, "X": 2, "Y": 0, "Z": 2},  # 1, 0, 0
}
PAIRS = [ScoredPair("A", "X", history=(Turn(speaker="seeker", text="seeker 1"),)), ScoredPair("B", "Y", history=(Turn(speaker="seeker", text="seeker 2"),)), ScoredPair("C", "Z", history=(Turn(speaker="seeker", text="seeker 3"),))]


def test_diff_epitome_hand_computed():
    stub = StubLevels(LEVELS)
    metric.set_predictor(stub)
    er, ip, ex, mean = (m.compute(PAIRS) for m in (DIFF_EPITOME_ER, DIFF_EPITOME_IP, DIFF_EPITOME_EX, DIFF_EPITOME))
    assert er.per_sample == [4.0, 0.0, 1.0] and er.corpus == pytest.approx(5 / 3)
    assert ip.per_sample == [0.0, 4.0, 1.0] and ip.corpus == pytest.approx(5 / 3)
    assert ex.per_sample == [1.0, 0.0, 0.0] and ex.corpus == pytest.approx(1 / 3)
    assert mean.per_sample == pytest.approx([5 / 3, 4 / 3, 2 / 3])  # FIRES eq. 4 per sample
    assert mean.corpus == pytest.approx(11 / 9) == pytest.approx((er.corpus + ip.corpus + ex.corpus) / 3)
    assert set(stub.seekers) == {"seeker 1", "seeker 2", "seeker 3"}  # levels are predicted given the seeker's last turn
    assert DIFF_EPITOME.compute([]).per_sample == []
    assert [m.name for m in (DIFF_EPITOME_ER, DIFF_EPITOME_IP, DIFF_EPITOME_EX, DIFF_EPITOME)] == ["diff-epitome-er", "diff-epitome-ip", "diff-epitome-ex", "diff-epitome"]
    assert all(m.per_sample for m in (DIFF_EPITOME_ER, DIFF_EPITOME))


def test_check_says_to_train_first(monkeypatch, tmp_path):
    monkeypatch.setenv("ESC_HARNESS_HOME", str(tmp_path))
    monkeypatch.delenv(train.ENV, raising=False)
    with pytest.raises(HarnessError, match=r"run `harness epitome train` first"):
        DIFF_EPITOME.check()
    with pytest.raises(HarnessError, match=r"run `harness epitome train` first"):
        train.report()


# --------------------------------------------------------------------------- training, saving, reloading (tiny encoder)




@pytest.fixture(scope="module")
def tiny_classifiers(tiny_encoder, data_root, tmp_path_factory) -> Path:
    """Each mechanism trained on its own, in full (embeddings too), as for a roberta-base folder with --separate."""
    out = tmp_path_factory.mktemp("home") / "epitome" / "tiny-bert-bi"
    train.main(encoder=str(tiny_encoder), arch="bi", out=out, limit=24, epochs=1, batch_size=8, lr=1e-3, joint=False,
               eval_splits=("test",), log=lambda s: None)
    return out


def test_tiny_training_writes_weights_and_report_and_reloads(tiny_classifiers):
    folder = tiny_classifiers
    summary = json.loads((folder / "report.json").read_text())
    assert set(summary["mechanisms"]) == set(data.MECHANISMS)
    assert "| ER | 616 |" in (folder / "report.md").read_text()
    er = json.loads((folder / "ER" / "report.json").read_text())
    assert er["settings"]["seed"] == train.SEED and er["train_rows"] == 24 and er["tag"] == "tiny-bert-bi"
    assert er["test"]["n"] == 616 and sum(map(sum, er["test"]["confusion_matrix"]["matrix"])) == 616
    assert len(er["weights_sha256"]) == 64
    test = data.load_splits("ER")["test"]
    reloaded = Classifier(folder / "ER").predict([e.seeker_post for e in test], [e.response_post for e in test], batch_size=50)
    assert reloaded == er["test"]["predictions"]  # same predictions after saving and loading


def test_training_is_reproducible(tiny_encoder, data_root):
    kwargs = dict(encoder=str(tiny_encoder), out=None, limit=16, epochs=1, batch_size=8, lr=1e-3, train_layers=1, eval_splits=("test",), log=lambda s: None)
    first = train.train_one("IP", arch="cross", **kwargs)  # the bottom layer frozen and cached, as for MiniLM
    second = train.train_one("IP", arch="cross", **kwargs)
    assert first["settings"]["train_layers"] == 1 and first["settings"]["seed"] == train.SEED
    assert first["test"]["predictions"] == second["test"]["predictions"]
    assert first["history"][0]["train_loss"] == second["history"][0]["train_loss"]


@pytest.fixture(scope="module")
def tiny_shared_classifiers(tiny_encoder, data_root, tmp_path_factory) -> Path:
    """As `harness epitome train` builds MiniLM's: embeddings and bottom layer frozen, only the top layer trained,
    shared by the three mechanisms (trained together)."""
    out = tmp_path_factory.mktemp("home") / "epitome" / "tiny-bert-bi-top1"
    train.main(encoder=str(tiny_encoder), arch="bi", out=out, limit=24, epochs=1, batch_size=8, lr=1e-3, train_layers=1,
               eval_splits=(), log=lambda s: None)
    return out


def _repeating_pairs():
    """EPITOME test pairs, each seeker twice and each response twice, in other pairs, of many lengths."""
    test = data.load_splits("ER")["test"][:40]
    return [e.seeker_post for e in test] * 2, [e.response_post for e in test] + [e.response_post for e in reversed(test)]


def test_shared_path_gives_each_classifiers_logits(tiny_shared_classifiers, tiny_classifiers, tiny_encoder, tmp_path):
    import torch

    from baselines.epitome.model import share

    seekers, responses = _repeating_pairs()
    classifiers = {m: Classifier(tiny_shared_classifiers / m) for m in data.MECHANISMS}
    together = share(classifiers)
    assert together is not None and together.bottom_layers == 2  # trained together: the whole encoder is shared
    threads = torch.get_num_threads()
    shared = together.logits(seekers, responses)
    assert torch.get_num_threads() == threads  # restored
    for m, c in classifiers.items():
        assert torch.allclose(shared[m], c.logits(seekers, responses), atol=1e-5), m
    # trained one at a time with the bottom layer frozen: they share that layer only
    separate = tmp_path / "tiny-bert-bi-separate"
    train.main(encoder=str(tiny_encoder), arch="bi", out=separate, limit=16, epochs=1, batch_size=8, lr=1e-3, train_layers=1, joint=False,
               eval_splits=(), log=lambda s: None)
    classifiers = {m: Classifier(separate / m) for m in data.MECHANISMS}
    together = share(classifiers)
    assert together is not None and together.bottom_layers == 1
    shared = together.logits(seekers, responses)
    for m, c in classifiers.items():
        assert torch.allclose(shared[m], c.logits(seekers, responses), atol=1e-5), m
    # response encoders fine-tuned in full (embeddings too) share nothing: each classifier runs on its own
    assert share({m: Classifier(tiny_classifiers / m) for m in data.MECHANISMS}) is None


def test_one_mechanism_asked_scores_all_three(tiny_shared_classifiers, monkeypatch):
    predictor = metric.TrainedClassifiers(tiny_shared_classifiers)
    seekers, responses = _repeating_pairs()
    predictor.predict("ER", seekers, responses)
    monkeypatch.setattr(predictor._shared, "logits", lambda *a, **k: pytest.fail("IP and EX should come from the memo"))
    for m in data.MECHANISMS:
        assert predictor.predict(m, seekers, responses) == Classifier(tiny_shared_classifiers / m).predict(seekers, responses)


def test_cached_bottom_layers_give_the_full_forward():
    """Training runs the frozen bottom layers once; in eval mode bottom + top is exactly the full encoder."""
    import torch

    from baselines.epitome.model import encoder_bottom

    torch.manual_seed(3)
    for arch, cls in (("bi", BiEncoder), ("cross", CrossEncoder)):
        model = cls(ClassifierConfig(arch=arch, encoder={**_roberta_config(hidden=24), "num_hidden_layers": 3}, encoder_name="x")).eval()
        batch = {"seeker_input_ids": torch.tensor([[0, 5, 2, 1], [0, 5, 6, 2]]), "seeker_attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]]),
                 "input_ids": torch.tensor([[0, 7, 2, 1, 1], [0, 7, 8, 9, 2]]), "attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])}
        with torch.no_grad():
            bottom = encoder_bottom(model.trained_encoder, batch["input_ids"], batch["attention_mask"], None, 2)
            assert torch.allclose(model(batch)[0], model(batch, bottom=bottom, bottom_layers=2)[0], atol=1e-6)


def test_diff_epitome_with_trained_classifiers(tiny_classifiers, monkeypatch):
    monkeypatch.setenv(train.ENV, str(tiny_classifiers))
    for m in (DIFF_EPITOME_ER, DIFF_EPITOME):
        m.check()
    pairs = [ScoredPair("I'm so sorry, that sounds awful. How are you coping?", "That must be so hard.", history=(Turn(speaker="seeker", text="My dog died yesterday."),)),
             ScoredPair("ok", "Have you tried talking to someone about it?", history=(Turn(speaker="seeker", text="I can't sleep."),))]
    values = DIFF_EPITOME.compute(pairs)
    assert len(values.per_sample) == 2 and all(0 <= v <= 4 for v in values.per_sample)
    same = DIFF_EPITOME_EX.compute([ScoredPair("same text", "same text", history=(Turn(speaker="seeker", text="x"),))])
    assert same.per_sample == [0.0]
    info = DIFF_EPITOME.info()
    assert info["classifier"] == f"tiny-bert-bi@{metric.weights_digest(info['weights_sha256'])}" and set(info["test_accuracy"]) == set(data.MECHANISMS)
    assert info["arch"] == "bi" and len(info["weights_sha256"]) == 3


# --------------------------------------------------------------------------- the original architecture's parameter names


def _roberta_config(hidden=768, layers=1):
    return {"model_type": "roberta", "vocab_size": 60, "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 12,
            "intermediate_size": 64, "max_position_embeddings": 70, "type_vocab_size": 1, "pad_token_id": 1}


def test_bi_encoder_has_the_original_parameter_names():
    """As in behavioral-data/Empathy-Mental-Health src/models/models.py (BiEncoderAttentionWithRationaleClassification)."""
    model = BiEncoder(ClassifierConfig(arch="bi", encoder=_roberta_config(hidden=24), encoder_name="tiny"))
    keys = set(model.state_dict())
    heads = {k for k in keys if not k.startswith(("seeker_encoder.roberta.", "responder_encoder.roberta."))}
    assert heads == {
        "rationale_classifier.weight", "rationale_classifier.bias",
        "attn.q_linear.weight", "attn.q_linear.bias", "attn.v_linear.weight", "attn.v_linear.bias",
        "attn.k_linear.weight", "attn.k_linear.bias", "attn.out.weight", "attn.out.bias",
        "norm.alpha", "norm.bias",
        "empathy_classifier.dense.weight", "empathy_classifier.dense.bias",
        "empathy_classifier.out_proj.weight", "empathy_classifier.out_proj.bias",
    }
    for side in ("seeker_encoder", "responder_encoder"):
        for name in ("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight", "embeddings.token_type_embeddings.weight",
                     "embeddings.LayerNorm.weight", "encoder.layer.0.attention.self.query.weight", "encoder.layer.0.attention.output.dense.weight",
                     "encoder.layer.0.attention.output.LayerNorm.bias", "encoder.layer.0.intermediate.dense.weight",
                     "encoder.layer.0.output.dense.weight", "encoder.layer.0.output.LayerNorm.weight", "pooler.dense.weight"):
            assert f"{side}.roberta.{name}" in keys
    assert isinstance(CrossEncoder(ClassifierConfig(arch="cross", encoder=_roberta_config(hidden=24), encoder_name="tiny")), CrossEncoder)


def test_original_checkpoint_loads(tmp_path):
    import torch

    base = tmp_path / "roberta-base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps(_roberta_config()))
    torch.manual_seed(1)
    source = BiEncoder(ClassifierConfig(arch="bi", encoder=_roberta_config(), encoder_name="x")).eval()
    state = {f"module.{k}": v for k, v in source.state_dict().items()}  # as saved from DataParallel, with old buffers
    state["module.seeker_encoder.roberta.embeddings.position_ids"] = torch.arange(70)[None]
    torch.save(state, tmp_path / "finetuned_ER.pth")
    model, config = original_model(base, load_original_state(tmp_path / "finetuned_ER.pth"), "ER")
    batch = {"seeker_input_ids": torch.tensor([[0, 5, 6, 2]]), "seeker_attention_mask": torch.ones(1, 4, dtype=torch.long),
             "input_ids": torch.tensor([[0, 7, 8, 9, 2]]), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    with torch.no_grad():
        assert torch.equal(model(batch)[0], source(batch)[0])
    assert config.arch == "bi" and config.max_len == 64 and config.lowercase
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(HarnessError, match="not a loadable state dict"):
        load_original_state(tmp_path / "bad.pth")
    torch.save({"something.else": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(HarnessError, match="does not match the original bi-encoder"):
        original_model(base, load_original_state(tmp_path / "other.pth"), "ER")


def test_padding_does_not_change_predictions():
    """The seeker's padding is masked out of the response-to-seeker attention: a padded batch equals one pair at a time."""
    import torch

    torch.manual_seed(2)
    model = BiEncoder(ClassifierConfig(arch="bi", encoder=_roberta_config(hidden=24), encoder_name="x")).eval()
    one = {"seeker_input_ids": torch.tensor([[0, 5, 2]]), "seeker_attention_mask": torch.ones(1, 3, dtype=torch.long),
           "input_ids": torch.tensor([[0, 7, 2]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    padded = {"seeker_input_ids": torch.tensor([[0, 5, 2, 1, 1], [0, 5, 6, 7, 2]]), "seeker_attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]),
              "input_ids": torch.tensor([[0, 7, 2, 1], [0, 7, 8, 2]]), "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])}
    with torch.no_grad():
        assert torch.allclose(model(one)[0][0], model(padded)[0][0], atol=1e-5)
