"""Retrieval baseline: answer with the supporter response of the most similar training context.

Similarity is TF-IDF cosine over the dialogue history (the request's non-system messages, rendered by the
task exactly as for any other model). Deterministic: ties go to the earliest training sample. No GPU,
no network.
"""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

from harness.contract import ChatModel, ChatRequest, ModelContext, ModelOutput
from harness.errors import HarnessError


def history_text(request: ChatRequest) -> str:
    return "\n".join(m.content for m in request.messages if m.role != "system")


class RetrievalModel(ChatModel):
    """TF-IDF nearest training context -> its reference response (needs no GPU, network or key)."""

    name = "retrieval"
    batch_size = 512

    def __init__(self, context: ModelContext | None, corpus_split: str = "train"):
        if context is None:
            raise HarnessError("retrieval answers a task's samples from its training split; it serves runs only (`harness run --model retrieval`), not a judge or a tool.")
        from sklearn.feature_extraction.text import TfidfVectorizer

        if context.split == corpus_split:
            raise HarnessError(f"retrieval: evaluating on '{context.split}' while retrieving from it would return each reference itself; evaluate another split or pass --model-args corpus_split=...")
        task = context.task
        corpus = task.load(corpus_split, context.data_dir)
        if not corpus:
            raise HarnessError(f"retrieval: the '{corpus_split}' split of {task.name} is empty.")
        self._responses = [s.reference for s in corpus]
        texts = [history_text(task.build_request(s)) for s in corpus]
        self._vectorizer = TfidfVectorizer()
        self._matrix = self._vectorizer.fit_transform(texts)  # rows are L2-normalised: dot = cosine
        fingerprint = hashlib.sha256("\x1e".join(t + "\x1f" + r for t, r in zip(texts, self._responses)).encode()).hexdigest()
        self._identity = {"task": task.name, "corpus_split": corpus_split, "corpus_sha256": fingerprint, "vectorizer": "sklearn TfidfVectorizer()"}

    def cache_identity(self) -> dict[str, Any]:
        return self._identity

    def generate(self, requests: Sequence[ChatRequest]) -> list[ModelOutput]:
        queries = self._vectorizer.transform([history_text(r) for r in requests])
        similarity = (queries @ self._matrix.T).toarray()
        best = similarity.argmax(axis=1)  # first maximum: ties go to the earliest training sample
        return [ModelOutput(choices=[self._responses[i]] * r.generation.n) for i, r in zip(best, requests)]
