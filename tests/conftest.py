import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test gets its own response cache; NLTK data and datasets stay where the machine has them."""
    monkeypatch.setenv("ESC_HARNESS_CACHE", str(tmp_path / "responses.sqlite"))
    monkeypatch.delenv("ESC_HARNESS_ALLOW_MODIFIED_DATA", raising=False)


@pytest.fixture(scope="session", autouse=True)
def _no_user_frames(tmp_path_factory):
    """Frames a developer extracted into the default folder must not change the samples tests see."""
    os.environ["ESC_HARNESS_FRAMES"] = str(tmp_path_factory.mktemp("frames") / "none")  # never created


@pytest.fixture(scope="session", autouse=True)
def _no_user_epitome_classifiers(tmp_path_factory):
    """Classifiers a developer built must not change which default metrics the tests see."""
    os.environ["ESC_HARNESS_EPITOME"] = str(tmp_path_factory.mktemp("epitome") / "not-built")


# The project's layout keeps the datasets beside the checkout, in ../shared/data.
_BESIDE_CHECKOUT = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = os.environ.get("ESC_HARNESS_DATA") or (str(_BESIDE_CHECKOUT) if _BESIDE_CHECKOUT.is_dir() else "")
    if not root:
        pytest.fail("set ESC_HARNESS_DATA to the datasets folder (../shared/data in this project's layout)")
    os.environ["ESC_HARNESS_DATA"] = root  # for the CLI subprocesses too
    return Path(root)


def default_sigint() -> None:
    """`preexec_fn` for a child that stands for a user's process: SIGINT unblocked and at its default, as in a
    fresh terminal. Without it the child inherits whatever the long pytest process has (a library's thread may
    leave SIGINT blocked or ignored), and a Ctrl-C test would measure pytest's state instead of the harness's."""
    import signal

    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> Path:
    """A random 2-layer BERT with MiniLM's vocabulary and tokenizer, for the EPITOME tests: trains in seconds."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from baselines.epitome import train

    folder = tmp_path_factory.mktemp("enc") / "tiny-bert"
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=256)).save_pretrained(str(folder))
    minilm, _, _ = train.resolve_encoder("minilm")
    AutoTokenizer.from_pretrained(minilm).save_pretrained(str(folder))
    return folder
