"""The whole contract of the harness on one screen.

A *task* turns a dataset into `Sample`s and each sample into a `ChatRequest`; a *model adapter*
(`ChatModel`) answers requests; the task parses each answer into a response; *graders* ask a role's
model about each record (an LLM judge) and store what they read in its outcome; *metrics* score the
responses against the references (and read the graders' values); the run folder holds a `RunHeader`
(run.json), one `SampleRecord` per line (samples.jsonl) and a `Summary` (summary.json). A training
recipe writes a `TrainRecord` (train.json) beside its checkpoint. Everything written to disk is a
pydantic model below, so its JSON schema is `Model.model_json_schema()` (see `harness schema`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_serializer

# --------------------------------------------------------------------------- samples


class Turn(BaseModel):
    """One (merged) turn of a dialogue."""

    model_config = ConfigDict(frozen=True)
    speaker: str  # dataset's own role name, e.g. "Client" / "Therapist"
    text: str
    frames: tuple[str, ...] = ()  # image files (relative to the data dir) shown with this turn


class DialogueTurn(BaseModel):
    """One turn of a simulated dialogue (multi-turn tasks: ESC-Eval, SAGE)."""

    role: str  # "supporter" (the model under test) | "seeker" (the simulated user)
    text: str
    details: dict[str, Any] = {}  # per-turn facts, e.g. SAGE seeker turns {"emotion": 45, "change": 5, "thought": ...}


class Sample(BaseModel):
    """One evaluation instance: respond to `history` as the supporter would."""

    model_config = ConfigDict(frozen=True)
    id: str  # stable across runs and machines, e.g. "mesc/test/d0123/t05"
    history: tuple[Turn, ...]
    reference: str
    labels: dict[str, Any] = {}  # e.g. {"emotion": ..., "strategy": ...} of the target turn


# --------------------------------------------------------------------------- model calls


class Message(BaseModel):
    model_config = ConfigDict(frozen=True)
    role: str  # "system" | "user" | "assistant"
    content: str
    images: tuple[str, ...] = ()


class GenerationConfig(BaseModel):
    """Settings that change the answer, hence part of the cache key."""

    model_config = ConfigDict(frozen=True)
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    n: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()


class ChatRequest(BaseModel):
    model_config = ConfigDict(frozen=True)
    messages: tuple[Message, ...]
    generation: GenerationConfig = GenerationConfig()
    # one of the model's named adapters (a LoRA per request, e.g. ESC-RANK's one per dimension); None: the
    # model as loaded. Part of the cache key; an adapter that the model does not have is refused.
    adapter: str | None = None


class ModelOutput(BaseModel):
    choices: list[str]  # n texts; choices[0] is the one scored
    usage: dict[str, int] = {}

    @property
    def text(self) -> str:
        return self.choices[0]


@dataclass
class ModelContext:
    """What an adapter may know about the run it serves (a retrieval model needs the task). Models opened
    outside a run (an A/B judge) get none."""

    task: "Task"
    split: str
    data_dir: Path
    seed: int


class ChatModel(ABC):
    """A model adapter. Constructed as `Adapter(context, **model_args)`."""

    name: ClassVar[str]
    batch_size: ClassVar[int] = 16  # requests handed to `generate` at once; results are saved per batch
    # `stream` calls that may run at once from different threads (simulated dialogues each ask one request
    # at a time): adapters that send requests to a server concurrently take many, in-process ones one
    parallel_calls: ClassVar[int] = 1

    @abstractmethod
    def cache_identity(self) -> dict[str, Any]:
        """Everything about this model that changes its answers (never secrets, timeouts, concurrency)."""

    def adapters(self) -> tuple[str, ...]:
        """Names a request may choose with `ChatRequest.adapter` (hf: its LoRA adapters; vllm: LoRARequests)."""
        return ()

    def grader_for(self, grader: "Grader") -> "Grader":
        """The grader this model is asked with in `grader`'s place. A judge trained on its own prompts
        (ESC-RANK: one LoRA per dimension) brings its own requests and parsing; every other model keeps it."""
        return grader

    def facts(self) -> dict[str, Any]:
        """What run.json records about this model beyond its identity, not part of the cache key (ESC-RANK:
        the prompt files read, with their sha256, and the score parsing rule)."""
        return {}

    @abstractmethod
    def generate(self, requests: Sequence[ChatRequest]) -> list[ModelOutput]:
        """One output per request, in order."""

    def stream(self, requests: Sequence[ChatRequest]) -> Iterator[tuple[int, ModelOutput]]:
        """(position, output) pairs as they finish, in any order. Concurrent adapters override this so
        the runner saves each answer at once; the default answers `batch_size` requests at a time."""
        for start in range(0, len(requests), self.batch_size):
            for offset, output in enumerate(self.generate(requests[start : start + self.batch_size])):
                yield start + offset, output

    def close(self) -> None:  # release servers, GPUs, files
        pass


class StreamingChatModel(ChatModel):
    """An adapter whose natural interface is `stream` (concurrent, or batched out of order);
    `generate` collects it back into request order."""

    @abstractmethod
    def stream(self, requests: Sequence[ChatRequest]) -> Iterator[tuple[int, ModelOutput]]: ...

    def generate(self, requests: Sequence[ChatRequest]) -> list[ModelOutput]:
        outputs: list[ModelOutput | None] = [None] * len(requests)
        for position, output in self.stream(requests):
            outputs[position] = output
        return outputs  # type: ignore[return-value]


# --------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class DataFile:
    name: str  # path inside the dataset folder
    url: str
    sha256: str


@dataclass(frozen=True)
class Dataset:
    folder: str  # sub-folder of the data dir
    files: tuple[DataFile, ...]
    source: str  # human-readable provenance


class Task(ABC):
    """A benchmark. Constructed as `Task(**task_args)`. `default_metrics` are computed by a run;
    `reported_metrics` (patterns) are the ones a leaderboard table shows unless asked for all."""

    name: ClassVar[str]
    dataset: ClassVar[Dataset]
    splits: ClassVar[tuple[str, ...]]
    default_metrics: ClassVar[tuple[str, ...]]
    # defaults that need a resource the user builds once (EPITOME classifiers): left out with a warning
    # when missing, unless asked for by name
    optional_metrics: ClassVar[tuple[str, ...]] = ()
    # the columns the task's papers report, as fnmatch patterns over metric names ("bertscore-f1-*"): what
    # `harness leaderboard` shows by default (--metrics all: every column); () = every column
    reported_metrics: ClassVar[tuple[str, ...]] = ()
    seed: int = 0  # the run's --seed, set by the runner before `load` (e.g. to draw k-shot examples)

    @abstractmethod
    def load(self, split: str, data_dir: Path) -> list[Sample]:
        """Samples of `split`, in a fixed order; `data_dir` is the verified dataset folder."""

    @abstractmethod
    def build_request(self, sample: Sample) -> ChatRequest: ...

    def provenance(self) -> dict[str, Any]:
        """What the task read besides its dataset that changes its requests (files outside the data folder
        and their sha256), once `load` has run; recorded in run.json (`task_provenance`) and checked on
        resume. {} for most tasks."""
        return {}

    def parse_response(self, output: str) -> "ParsedOutput":
        """The response to score, from the raw model output. Never raises: a malformed output is a
        scored sample with `format_ok=False`."""
        return ParsedOutput(response=output.strip())


# a dialogue asks a role ("model" = the model under test, or one of the task's `roles`) one request
Ask = Callable[[str, ChatRequest], ModelOutput]


@dataclass
class DialogueResult:
    turns: list[DialogueTurn]
    outcome: dict[str, Any]  # what the dialogue came to: judge scores, final emotion, how it ended


class DialogueTask(Task):
    """A multi-turn benchmark (ESC-Eval, SAGE): the model under test talks with a simulated seeker and the
    dialogue is scored by a judge or by the seeker itself. Every role is a model adapter chosen by name;
    every call goes through the response cache, so an interrupted run replays finished turns for free."""

    roles: ClassVar[tuple[str, ...]]  # roles besides "model", e.g. ("seeker", "judge")
    prompt_version: ClassVar[str]  # changes whenever a role's prompt changes; recorded in run.json

    def build_request(self, sample: Sample) -> ChatRequest:
        raise TypeError(f"{self.name} is a dialogue task: it is played with `play`, not asked one request.")

    @abstractmethod
    def play(self, sample: Sample, ask: Ask) -> DialogueResult:
        """Run one whole dialogue (blocking; dialogues run concurrently in threads)."""


class ParsedOutput(BaseModel):
    response: str  # what the metrics score
    format_ok: bool = True  # did the output follow the format the prompt asked for
    thinking: str | None = None  # reasoning separated from the response, if any
    details: dict[str, Any] = {}  # task-specific parse facts (e.g. which thinking aspects are covered)


# --------------------------------------------------------------------------- metrics


@dataclass
class ScoredPair:
    """What a metric scores: the response and reference, and the rest of the sample's record as it is (a
    metric reads what it needs: the history's last turn, the outcome of a dialogue or of a grader)."""

    response: str
    reference: str
    history: tuple[Turn, ...] | list[Turn] = ()
    outcome: dict[str, Any] = field(default_factory=dict)  # a dialogue's outcome and the graders' values
    labels: dict[str, Any] = field(default_factory=dict)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def memo(self, key: str, compute: Callable[["ScoredPair"], Any]) -> Any:
        """`compute(self)` once per pair (e.g. tokens shared by all lexical metrics and their resamples)."""
        if key not in self._memo:
            self._memo[key] = compute(self)
        return self._memo[key]


@dataclass
class MetricValue:
    corpus: float  # the number reported (x100 where the papers do)
    per_sample: list[float] | None = None  # where the corpus value is a mean over samples
    missing: int = 0  # samples without a value (e.g. an unparseable judge score): left out, never 0


class Metric(ABC):
    name: str  # as registered and as written in summary.json
    description: str = ""
    # how reports show it: direction, decimals, and its place among the columns (lower comes first)
    higher_is_better: bool = True
    decimals: int = 2
    order: int = 1000
    # the range the value can take (e.g. (0, 100)); intervals are clipped into it
    bounds: tuple[float, float] | None = None
    # the model-graded scorer whose values (in each record's outcome) this metric reads; the run asks it
    # with the model of its role before scoring
    grader: "Grader | None" = None
    # True when the reported value is the mean of per-sample values: samples are then scored as they
    # finish (the scores land in samples.jsonl) and the summary averages them.
    per_sample: bool = False
    # True when the value changes with the corpus's size (Dist-n): resampling with duplicates would lower
    # it, so its interval comes from half-samples drawn without replacement instead.
    size_dependent: bool = False
    # True when compute() may run on a thread of its own beside the other metrics' (its heavy work is in torch,
    # which releases the GIL, and it guards its own shared state): a model-based metric's loading and encoding
    # then overlap the rest of the scoring.
    concurrent: bool = False

    def check(self) -> None:
        """Raise HarnessError before a run starts if a resource (e.g. WordNet) is missing."""

    def prepare(self) -> None:
        """Load what compute needs (a model, data) ahead of the first pairs; a run calls it for `concurrent`
        metrics in its metric worker process (harness/metric_worker.py) while the model answers."""

    def info(self) -> dict[str, Any]:
        """Versions and variants that change the value; recorded in summary.json."""
        return {}

    @abstractmethod
    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue: ...

    def weighted(self, pairs: Sequence[ScoredPair], weights: Any) -> Any:
        """Values on re-weighted corpora (numpy (B, n) copies of each pair -> (B,)), for bootstrap
        intervals and paired tests; None: the harness recomputes on each resampled corpus instead."""
        return None

    # The score cache (harness.scorecache) keeps per-pair values across runs, so that a second identical run
    # loads no metric model: a per_sample metric's values as they are, a corpus metric's `features`. Its key
    # holds the name, class, info(), cache_identity(), the metric's code and the installed packages.
    def cache_identity(self) -> dict[str, Any] | None:
        """What changes the per-pair values that info() does not say (e.g. a weights file's hash); None:
        never cache this metric (its values are not a function of the pair, the code and info() alone)."""
        return {}

    def features(self) -> dict[str, Callable[[ScoredPair], Any]]:
        """A corpus metric's per-pair ingredients worth keeping across runs: memo key -> function of the pair,
        read in compute/weighted as `pair.memo(key, function)`. Values are JSON, and the metric gets them back
        as JSON gives them (lists, not tuples), on a first run too."""
        return {}

    def fill_features(self, pairs: Sequence[ScoredPair]) -> None:
        """Each feature of each pair into the pair's memo (the score cache's wrapper reads and stores them)."""
        for key, function in self.features().items():
            for pair in pairs:
                pair.memo(key, function)


# --------------------------------------------------------------------------- model-graded scoring


class Grader(ABC):
    """Asks the model of `role` about each item (a SampleRecord in a run) and reads one value from each
    answer. An answer that does not parse is a missing value (None), never a 0. Every call goes through
    the response cache, so a killed run resumes without asking twice."""

    name: str  # key of the values in the record's outcome
    role: str = "judge"  # the run role whose model answers (`--role judge=...`)
    prompt_version: str = ""  # changes whenever a prompt text changes

    @abstractmethod
    def requests(self, item: Any) -> dict[str, ChatRequest]:
        """aspect (a dimension, a criterion) -> the request asking for it."""

    @abstractmethod
    def parse(self, aspect: str, answer: str) -> Any:
        """The value of one answer, or None when it cannot be read safely."""

    def outcome(self, values: dict[str, Any], raw: dict[str, str]) -> dict[str, Any]:
        """What lands in the record's outcome."""
        return {self.name: values, f"{self.name}_raw": raw}


# --------------------------------------------------------------------------- run records (on disk)

SCHEMA_VERSION = 1
Status = Literal["running", "finished", "failed"]  # a killed run stays "running" and resumes


class RoleRecord(BaseModel):
    """A role of a dialogue task and the model that played it."""

    model: str
    model_args: dict[str, Any] = {}  # secrets redacted
    model_identity: dict[str, Any] = {}
    facts: dict[str, Any] = {}  # the adapter's `facts()`: e.g. ESC-RANK's prompt files (sha256) and parse rule

    @model_serializer(mode="wrap")
    def _without_empty_facts(self, handler: Any) -> dict[str, Any]:
        """A role whose adapter reports no facts is written as before (run.json unchanged for it)."""
        data = handler(self)
        if not data.get("facts"):
            data.pop("facts", None)
        return data


class RunHeader(BaseModel):
    """run.json"""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    task: str
    task_args: dict[str, Any] = {}
    model: str
    model_args: dict[str, Any] = {}  # secrets redacted
    model_identity: dict[str, Any] = {}
    split: str
    seed: int
    limit: int | None = None
    metrics: list[str]
    data: dict[str, str] = {}  # dataset file -> sha256
    task_provenance: dict[str, Any] = {}  # what the task read besides its dataset (Task.provenance: e.g. prompt files -> sha256)
    git_revision: str | None = None
    packages: dict[str, str] = {}
    started_at: str
    finished_at: str | None = None
    status: Status = "running"
    error: str | None = None  # the one-line error of a failed run
    n_samples: int  # samples this run covers (after --limit)
    roles: dict[str, RoleRecord] = {}  # dialogue tasks: seeker, judge ... (the model under test is `model`)
    prompt_version: str | None = None  # dialogue tasks: version of the roles' prompts
    source: str | None = None  # outputs not made by `model` here: a re-judged run or published transcripts
    resamples: int | None = None  # bootstrap resamples of the summary's intervals (kept on resume)
    # sha256 over (task, split, the sample ids in split order): every reader checks the records against it
    samples_digest: str | None = None
    writers: list["Writer"] = []  # every process that wrote into the folder: the first run, then each resume


class Writer(BaseModel):
    """One process that wrote into a run folder (the run, or a resume), and what it brought."""

    started_at: str
    git_revision: str | None = None
    packages: dict[str, str] = {}
    changed: dict[str, dict[str, Any]] = {}  # role -> arguments given anew that do not change answers (a new base URL), redacted


class SampleRecord(BaseModel):
    """One line of samples.jsonl"""

    index: int  # position in the task's split order
    id: str
    history: list[Turn]
    reference: str
    labels: dict[str, Any] = {}
    output: str  # raw model text
    response: str  # what was scored
    format_ok: bool = True
    thinking: str | None = None
    parse_details: dict[str, Any] = {}
    usage: dict[str, int] = {}  # tokens, as the adapter reported them
    scores: dict[str, float] = {}  # per-sample values of the metrics that have them
    # multi-turn tasks: the whole dialogue, and what it came to (SAGE {"final_emotion", "end",
    # "trajectory"}; ESC-Eval {"judge": {dimension: 0-4 or None}, "judge_raw": {...}}; graded by a panel of
    # judges: {"judge": {dimension: the judges' mean}, "judge_panel": {role: that judge's own outcome}})
    dialogue: list[DialogueTurn] | None = None
    outcome: dict[str, Any] = {}


class PanelAgreement(BaseModel):
    """How far the judges of a panel agree (summary.json `agreement`, keyed by the grader's name): several
    models in one grader's role (`--judge A --judge B`: roles judge, judge2, ...), each asked every aspect of
    every item. Per aspect, Krippendorff's alpha (harness.agreement) over the items, the judges as raters and
    a missing score as missing data, with a percentile bootstrap interval over items."""

    judges: list[str]  # the panel's roles in order (judge, judge2, ...); run.json `roles` names their models
    level: Literal["nominal", "ordinal", "interval"] = "ordinal"
    alpha: dict[str, float | None] = {}  # aspect -> alpha; None where undefined (no item rated twice, no variation)
    intervals: dict[str, tuple[float, float]] = {}  # aspect -> 95% bootstrap interval (resampling items)
    items: dict[str, int] = {}  # aspect -> items that at least two judges scored


class Summary(BaseModel):
    """summary.json"""

    schema_version: int = SCHEMA_VERSION
    n: int
    metrics: dict[str, float]
    metric_info: dict[str, dict[str, Any]] = Field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = {}  # percentile bootstrap interval per metric
    bootstrap: dict[str, Any] = {}  # {"resamples": ..., "seed": ..., "confidence": ...}
    format_errors: int = 0  # samples whose output did not follow the requested format (still scored)
    empty_outputs: int = 0  # samples whose model output was empty or whitespace only (scored as "")
    usage: dict[str, int] = {}  # token usage summed over samples
    missing: dict[str, int] = {}  # per metric: samples left out for want of a value (unparseable judge scores)
    # grader name -> the agreement of its judge panel; only runs graded by a panel have it (left out otherwise,
    # so a single-judge run's summary.json is as before)
    agreement: dict[str, PanelAgreement] = {}

    @model_serializer(mode="wrap")
    def _without_empty_agreement(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if not data.get("agreement"):
            data.pop("agreement", None)
        return data


# --------------------------------------------------------------------------- training records (on disk)


class DataSource(BaseModel):
    """What a training set was built from: a run folder (its id) or a file (its sha256)."""

    kind: Literal["run", "file"]
    name: str  # run id, or the file's path as given
    sha256: str | None = None  # files: content hash
    detail: dict[str, Any] = {}  # e.g. the run's task and model, the rows used


class TrainRecord(BaseModel):
    """train.json, written by `harness train NAME` into the checkpoint folder. A folder holding it is a
    model: `--model hf --model-args model=DIR` loads `base_model` and these weights."""

    schema_version: int = SCHEMA_VERSION
    recipe: str  # e.g. "fires-sft"
    train_id: str
    config: dict[str, Any]  # every setting, with where each value comes from where the recipe records it
    base_model: dict[str, Any]  # {"model": path or hub id, "weights": fingerprint, ...}
    weights: Literal["peft", "full"]  # a peft adapter (adapter_config.json) or full weights in the folder
    data: list[DataSource] = []
    reward: dict[str, Any] | None = None  # identity of the reward (functions, weights, a reward model)
    evaluate: dict[str, Any] = {}  # {"task": ..., "task_args": {...}}: how to evaluate the result
    git_revision: str | None = None
    packages: dict[str, str] = {}
    started_at: str
    finished_at: str | None = None
    status: Status = "running"
    error: str | None = None


ON_DISK: dict[str, type[BaseModel]] = {
    "run.json": RunHeader,
    "samples.jsonl": SampleRecord,
    "summary.json": Summary,
    "train.json": TrainRecord,
}
# (a dialogue task's calls cache, calls.sqlite, sits beside them when the run is made with --no-cache)
