from pathlib import Path

import pytest

from baselines.retrieval import RetrievalModel
from harness.contract import ChatRequest, Dataset, Message, ModelContext, Sample, Task, Turn
from harness.errors import HarnessError


class ToyTask(Task):
    name = "toy"
    dataset = Dataset(folder="toy", files=(), source="tests")
    splits = ("train", "test")
    default_metrics = ("rouge-l",)
    train = [
        Sample(id="t0", history=(Turn(speaker="C", text="my dog died yesterday"),), reference="I am so sorry about your dog."),
        Sample(id="t1", history=(Turn(speaker="C", text="work is stressful and my boss yells"),), reference="That sounds exhausting."),
        Sample(id="t2", history=(Turn(speaker="C", text="my dog died yesterday"),), reference="A later duplicate context."),
    ]

    def load(self, split, data_dir):
        return list(self.train) if split == "train" else []

    def build_request(self, sample):
        return ChatRequest(messages=(Message(role="system", content="ignored by retrieval"),) + tuple(Message(role="user", content=t.text) for t in sample.history))


def ask(model, text):
    return model.generate([ChatRequest(messages=(Message(role="system", content="x"), Message(role="user", content=text)))])[0].text


def test_returns_the_response_of_the_most_similar_training_context():
    model = RetrievalModel(ModelContext(task=ToyTask(), split="test", data_dir=Path("."), seed=0))
    assert ask(model, "my boss yells at work") == "That sounds exhausting."
    # ties (t0 and t2 have the same context) go to the earliest training sample: deterministic
    assert ask(model, "my dog died") == "I am so sorry about your dog."


def test_the_system_prompt_is_not_part_of_the_similarity():
    model = RetrievalModel(ModelContext(task=ToyTask(), split="test", data_dir=Path("."), seed=0))
    req = ChatRequest(messages=(Message(role="system", content="work is stressful and my boss yells"), Message(role="user", content="my dog died")))
    assert model.generate([req])[0].text == "I am so sorry about your dog."


def test_refuses_to_retrieve_from_the_evaluated_split():
    with pytest.raises(HarnessError, match="corpus_split"):
        RetrievalModel(ModelContext(task=ToyTask(), split="train", data_dir=Path("."), seed=0))


def test_identity_changes_with_the_corpus():
    a = RetrievalModel(ModelContext(task=ToyTask(), split="test", data_dir=Path("."), seed=0)).cache_identity()
    other = ToyTask()
    other.train = ToyTask.train[:2]
    b = RetrievalModel(ModelContext(task=other, split="test", data_dir=Path("."), seed=0)).cache_identity()
    assert a["corpus_sha256"] != b["corpus_sha256"]
