"""harness/bert.py: the BERT the model-based metrics run without transformers gives transformers' BertModel's
outputs to the last bit (float32 and float64, with and without padding, layer by layer as the EPITOME
classifiers call it), loads only what it computes exactly, and tokenises as transformers does."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from harness import bert  # noqa: E402


def tiny_config(**changes) -> dict:
    config = dict(model_type="bert", vocab_size=120, hidden_size=24, num_hidden_layers=3, num_attention_heads=4,
                  intermediate_size=40, max_position_embeddings=64, type_vocab_size=2, pad_token_id=0, layer_norm_eps=1e-12)
    config.update(changes)
    return config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(folder, transformers' model) of a random tiny BERT saved as transformers saves it."""
    torch.manual_seed(3)
    cfg = tiny_config()
    reference = transformers.BertModel(transformers.BertConfig(**{k: v for k, v in cfg.items() if k != "model_type"})).eval()
    folder = tmp_path_factory.mktemp("tiny-bert")
    reference.save_pretrained(str(folder))
    return folder, reference


def batch():
    rows = [[2, 17, 33, 90, 5, 3], [2, 44, 3], [2, 8, 8, 8, 3]]
    width = max(map(len, rows))
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_outputs_are_transformers_to_the_last_bit(tiny, dtype):
    folder, reference = tiny
    ours = bert.load(folder)
    assert isinstance(ours, bert.BertEncoder)
    reference, ours = reference.to(dtype), ours.to(dtype)
    ids, mask = batch()
    with torch.inference_mode():
        single = ids[:1]
        assert torch.equal(ours(single, attention_mask=torch.ones_like(single))[0], reference(single, attention_mask=torch.ones_like(single))[0])
        padded_ours = ours(input_ids=ids, attention_mask=mask).last_hidden_state
        padded_theirs = reference(input_ids=ids, attention_mask=mask).last_hidden_state
        keep = mask[..., None].bool()
        assert torch.equal(padded_ours[keep.expand_as(padded_ours)], padded_theirs[keep.expand_as(padded_theirs)])
        # as the EPITOME classifiers call the parts: embeddings, layers with an additive mask, the last attention
        additive = (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
        h_ours, h_theirs = ours.embeddings(ids), reference.embeddings(input_ids=ids)
        assert torch.equal(h_ours, h_theirs)
        for mine, theirs in zip(ours.encoder.layer, reference.encoder.layer):
            out = theirs(h_theirs, additive)
            h_ours, h_theirs = mine(h_ours, additive), out[0] if isinstance(out, tuple) else out
            assert torch.equal(h_ours, h_theirs)
        last_ours = ours.encoder.layer[-1].attention(h_ours, additive)[0]
        last_theirs = reference.encoder.layer[-1].attention(h_theirs, additive)[0]
        assert torch.equal(ours.encoder.layer[-1].feed_forward_chunk(last_ours[:, :1]), reference.encoder.layer[-1].feed_forward_chunk(last_theirs[:, :1]))


def test_building_on_the_meta_device_does_not_import_torch_dynamo(tiny):
    """Random initialisation on the meta device (nn.Embedding's normal_) imports torch._dynamo, ~2 s of a metric
    worker's start: the encoder, loaded or built for the EPITOME classifiers, skips it (a fresh interpreter)."""
    import subprocess
    import sys

    folder, _ = tiny
    code = (
        "import sys, json, torch; from harness import bert; from baselines.epitome.model import BiEncoder, ClassifierConfig\n"
        f"cfg = json.loads({json.dumps(json.dumps(tiny_config()))})\n"
        f"assert bert.load({str(folder)!r}) is not None\n"
        "with torch.device('meta'):\n"
        "    BiEncoder(ClassifierConfig(arch=\"bi\", encoder=cfg, encoder_name=\"tiny\"), bert.BertEncoder(cfg), bert.BertEncoder(cfg))\n"
        "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
    # a real (CPU) build is still randomly initialised, as nn.Embedding is
    torch.manual_seed(0)
    built = bert.BertEncoder(tiny_config())
    assert built.embeddings.word_embeddings.weight.std() > 0.5 and torch.all(built.embeddings.word_embeddings.weight[0] == 0)


def test_truncated_layers_and_meta_construction(tiny):
    folder, reference = tiny
    two = bert.load(folder, num_layers=2)
    assert len(two.encoder.layer) == 2 and two.device.type == "cpu"
    empty = bert.BertEncoder.from_config(tiny_config())
    assert empty.embeddings.word_embeddings.weight.is_meta and not empty.embeddings.position_ids.is_meta
    empty.load_state_dict(reference.state_dict(), assign=True)
    ids, mask = batch()
    with torch.inference_mode():
        assert torch.equal(empty(ids, attention_mask=mask)[0] * mask[..., None], reference(ids, attention_mask=mask)[0] * mask[..., None])


def test_only_what_it_computes_exactly_is_loaded(tiny, tmp_path):
    folder, _ = tiny
    for changes in ({"model_type": "roberta"}, {"hidden_act": "gelu_new"}, {"position_embedding_type": "relative_key"}, {"is_decoder": True}):
        assert not bert.supported(tiny_config(**changes))
        other = tmp_path / next(iter(changes))
        other.mkdir()
        (other / "config.json").write_text(json.dumps(tiny_config(**changes)))
        (other / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
        assert bert.load(other) is None  # the caller uses transformers
    assert bert.load(tmp_path / "nothing-here") is None
    missing = tmp_path / "missing-weights"
    missing.mkdir()
    (missing / "config.json").write_text(json.dumps(tiny_config(num_hidden_layers=5)))  # more layers than the file holds
    (missing / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    assert bert.load(missing) is None


def test_tokenizer_gives_transformers_ids():
    from harness.paths import packaged_minilm

    folder = packaged_minilm("this test", "bertscore")
    theirs = transformers.AutoTokenizer.from_pretrained(str(folder), use_fast=False)
    ours = bert.Tokenizer(folder)
    assert ours.model_max_length == theirs.model_max_length
    texts = ["I hear you.", "  Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \U0001f642 \u65e5\u672c\u8a9e  ", "Don't worry!!! I'm here\u2026",
             "tabs\tand\nnew lines \x07 bell", " ".join(["word"] * 700)]
    for text in texts:
        assert ours.ids(text.strip()) == theirs.encode(text.strip(), add_special_tokens=True, max_length=theirs.model_max_length, truncation=True)
    assert ours.ids_batch(texts) == [ours.ids(t) for t in texts]
    assert (ours.pad_token_id, ours.cls_token_id, ours.sep_token_id) == (theirs.pad_token_id, theirs.cls_token_id, theirs.sep_token_id)
    short = bert.Tokenizer(folder, max_length=8)
    assert short.ids(texts[-1]) == theirs(texts[-1], truncation=True, max_length=8)["input_ids"]
