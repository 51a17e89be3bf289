"""DIFF-EPITOME (Lee et al. 2022, EmpGPT-3 `evaluate.py`; the FIRES paper's DIFF-E.).

Three EPITOME classifiers (Sharma et al. 2020) predict the level 0/1/2 of Emotional Reactions (ER),
Interpretations (IP) and Explorations (EX) of a response given the seeker's last utterance
(the last turn of `ScoredPair.history`). For each mechanism m and sample i, d_m(i) = (level_m(generated) - level_m(reference))^2;
EmpGPT-3 reports the mean over samples per mechanism:

| name | per sample | corpus value |
|---|---|---|
| `diff-epitome-er`, `-ip`, `-ex` | d_m(i) | mean over samples (EmpGPT-3's diff_{ER,IP,EX}_scores averaged) |
| `diff-epitome` | (d_ER(i) + d_IP(i) + d_EX(i)) / 3 (FIRES eq. 4, DE_i) | mean over samples = mean of the three |

Lower is better; values are not x100. The classifiers are never shipped: `harness epitome train` builds them
into `harness.paths.home()/epitome/<tag>/` (default tag `minilm-l6-bi-v2`; `$ESC_HARNESS_EPITOME` picks another tag
or a folder, e.g. the original checkpoints imported with `harness epitome import-original`). The numbers depend on
the classifiers, so `metric_info` records the tag (with a digest of the weights: `<tag>@<8 hex>`, except for the imported
originals, `original`), encoder, architecture, weights' sha256 and each classifier's
accuracy on the held-out EPITOME test split. A DIFF-EPITOME from retrained classifiers is not the papers'
number: compare runs scored with the same classifiers only.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol, Sequence

from harness.contract import Metric, MetricValue, ScoredPair
from harness.errors import HarnessError

MECHANISMS = ("ER", "IP", "EX")


class LevelPredictor(Protocol):
    def predict(self, mechanism: str, seekers: Sequence[str], responses: Sequence[str]) -> list[int]: ...

    def describe(self) -> dict[str, Any]: ...


class TrainedClassifiers:
    """The three classifiers of one folder, loaded on first use; predictions memoised per (seeker, response).

    Where the three share their frozen encoders (`baselines.epitome.model.share`), asking for one mechanism's
    levels computes all three's at once (together cheaper than one on its own); otherwise each runs on its own."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._models: dict[str, Any] = {}
        self._shared: Any = None
        self._memo: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()

    def missing(self) -> list[str]:
        return [m for m in MECHANISMS if not ((self.folder / m / _CONFIG_FILE).is_file() and (self.folder / m / _WEIGHTS_FILE).is_file())]

    def predict(self, mechanism: str, seekers: Sequence[str], responses: Sequence[str]) -> list[int]:
        with self._lock:
            todo = sorted({(s, r) for s, r in zip(seekers, responses) if (mechanism, s, r) not in self._memo})
            if todo:
                for m, levels in self._levels(mechanism, [s for s, _ in todo], [r for _, r in todo]).items():
                    for key, level in zip(todo, levels):
                        self._memo.setdefault((m, *key), int(level))  # a level once given never changes
            return [self._memo[(mechanism, s, r)] for s, r in zip(seekers, responses)]

    def _levels(self, mechanism: str, seekers: Sequence[str], responses: Sequence[str]) -> dict[str, list[int]]:
        """The levels of `mechanism`, and of the other mechanisms too where they come at no extra cost."""
        self._load()
        if self._shared is not None:
            return {m: logits.argmax(dim=-1).tolist() for m, logits in self._shared.logits(seekers, responses).items()}
        return {mechanism: self._models[mechanism].predict(seekers, responses)}

    def _load(self) -> None:
        if self._models:
            return
        from harness.threads import loading

        with loading:
            from baselines.epitome.model import Classifier, share

            self._models = {m: Classifier(self.folder / m) for m in MECHANISMS}
            self._shared = share(self._models)

    def describe(self) -> dict[str, Any]:
        import json

        info: dict[str, Any] = {"classifier": self.folder.name, "folder": str(self.folder)}
        accuracy, macro_f1, sha = {}, {}, {}
        imported = False  # `harness epitome import-original`: its report names the checkpoint
        for m in MECHANISMS:
            path = self.folder / m / "report.json"
            if not path.is_file():
                continue
            report = json.loads(path.read_text())
            info.setdefault("encoder", report.get("encoder"))
            info.setdefault("arch", report.get("arch"))
            if "test" in report:
                accuracy[m] = round(report["test"]["accuracy"], 2)
                macro_f1[m] = round(report["test"]["macro_f1"], 2)
            if report.get("weights_sha256"):
                sha[m] = report["weights_sha256"]
            if report.get("note"):
                info["note"] = report["note"]
            imported = imported or "checkpoint" in report
        if sha and not imported:  # two trainings never share a leaderboard column; imported originals keep the name published files match
            info["classifier"] = f"{self.folder.name}@{weights_digest(sha)}"
        info.update({"test_accuracy": accuracy, "test_macro_f1": macro_f1, "weights_sha256": sha,
                     "test_split": "baselines/epitome/split.json (seed 2020, 20% of EPITOME)"})
        return info


def weights_digest(sha: dict[str, str]) -> str:
    """8 hex digits naming the classifiers' weights together (from each mechanism's weights sha256)."""
    import hashlib

    return hashlib.sha256(" ".join(f"{m}={sha[m]}" for m in sorted(sha)).encode()).hexdigest()[:8]


# The classifiers' folder layout, spelled out here because the training and model code import torch at once: a
# run whose DIFF-EPITOME values are all in the score cache checks and describes the classifiers without loading
# torch. The same as train.classifier_folder, train.ENV/DEFAULT_TAG and model.CONFIG_FILE/WEIGHTS_FILE
# (tests/test_scorecache.py compares them).
_FOLDER_ENV = "ESC_HARNESS_EPITOME"
_DEFAULT_TAG = "minilm-l6-bi-v2"
_CONFIG_FILE, _WEIGHTS_FILE = "classifier.json", "model.safetensors"


def classifier_folder() -> Path:
    """The classifiers in use: $ESC_HARNESS_EPITOME (a tag under the harness's home, or a folder), else the default tag."""
    import os

    from harness import paths

    value = os.environ.get(_FOLDER_ENV) or _DEFAULT_TAG
    p = Path(value).expanduser()
    if p.is_absolute() or (len(p.parts) > 1) or str(value).startswith("."):
        return p
    return paths.home() / "epitome" / str(value)


_override: LevelPredictor | None = None
_loaded: dict[Path, TrainedClassifiers] = {}
_guard = threading.Lock()


def set_predictor(predictor: LevelPredictor | None) -> None:
    """Use `predictor` instead of the trained classifiers (tests, notebooks); None restores them."""
    global _override
    _override = predictor


def predictor() -> LevelPredictor:
    if _override is not None:
        return _override
    folder = classifier_folder()
    with _guard:
        if folder not in _loaded:
            _loaded[folder] = TrainedClassifiers(folder)
        return _loaded[folder]


def _check() -> None:
    if _override is not None:
        return
    import importlib.util

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:  # found, not imported (seconds)
        raise HarnessError("DIFF-EPITOME needs torch and transformers: install the harness with its [epitome] extra.")
    p = predictor()
    assert isinstance(p, TrainedClassifiers)
    missing = p.missing()
    if missing:
        raise HarnessError(
            f"the EPITOME classifiers '{p.folder.name}' are not built ({', '.join(missing)} missing under {p.folder}); "
            f"run `harness epitome train` first (or set $ESC_HARNESS_EPITOME to a built tag or folder)."
        )


def squared_differences(mechanism: str, pairs: Sequence[ScoredPair], levels: LevelPredictor | None = None) -> list[float]:
    """(level(response) - level(reference))^2 per pair, by `levels` (default: the classifiers in use)."""
    # one call for both sides, so that each seeker text is encoded once
    seekers = [pair.history[-1].text if pair.history else "" for pair in pairs]  # the turn being answered
    predicted = (levels or predictor()).predict(mechanism, seekers * 2, [pair.response for pair in pairs] + [pair.reference for pair in pairs])
    generated, reference = predicted[: len(pairs)], predicted[len(pairs) :]
    return [float((g - r) ** 2) for g, r in zip(generated, reference)]


def per_pair(pairs: Sequence[ScoredPair], mechanisms: Sequence[str] = MECHANISMS, levels: LevelPredictor | None = None) -> list[float]:
    """DIFF-EPITOME of each pair: the mean of its squared level differences over `mechanisms` (FIRES eq. 4, DE_i)."""
    columns = [squared_differences(m, pairs, levels) for m in mechanisms]
    return [sum(col[i] for col in columns) / len(columns) for i in range(len(pairs))]


class DiffEpitome(Metric):
    per_sample = True
    concurrent = True  # torch classifiers behind a lock (TrainedClassifiers): overlaps BERTScore and the lexical metrics
    higher_is_better = False  # a squared level difference from the reference
    decimals = 4

    def __init__(self, mechanism: str | None):
        self.mechanism = mechanism
        self.mechanisms = (mechanism,) if mechanism else MECHANISMS
        self.name = f"diff-epitome-{mechanism.lower()}" if mechanism else "diff-epitome"
        self.order = 400 + (10 * (MECHANISMS.index(mechanism) + 1) if mechanism else 0)  # diff-epitome, -er, -ip, -ex: 400..430
        self.description = (
            f"DIFF-EPITOME {mechanism}: mean over samples of (level(response) - level(reference))^2, levels 0-2 by the EPITOME {mechanism} classifier given the seeker's last turn (EmpGPT-3)"
            if mechanism
            else "DIFF-EPITOME: mean of the ER, IP and EX squared level differences (per sample as FIRES eq. 4, averaged over samples)"
        )

    def check(self) -> None:
        _check()

    def prepare(self) -> None:
        found = predictor()
        if isinstance(found, TrainedClassifiers):
            with found._lock:
                found._load()

    def info(self) -> dict[str, Any]:
        return predictor().describe()

    def cache_identity(self) -> dict[str, Any] | None:
        """Values of the trained classifiers (named in info() by their weights' sha256) are kept in the score cache;
        those of a predictor set in their place (tests, notebooks) are not."""
        return None if _override is not None else {}

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        if not pairs:
            return MetricValue(corpus=0.0, per_sample=[])
        values = per_pair(pairs, self.mechanisms)
        return MetricValue(corpus=sum(values) / len(values), per_sample=values)


DIFF_EPITOME = DiffEpitome(None)
DIFF_EPITOME_ER = DiffEpitome("ER")
DIFF_EPITOME_IP = DiffEpitome("IP")
DIFF_EPITOME_EX = DiffEpitome("EX")
