"""Where the time of `harness run --task mesc --model retrieval` (default metrics, 1000-resample intervals) goes.

Runs the job in this process, as the CLI does (`runner.run`, no response cache, a temporary run folder), with
timers around each phase; prints seconds and share of the wall time per phase, and the peak RSS:

  imports         harness itself (torch, transformers, nltk, sklearn count to the phase that first imports them)
  task load       MESC test and train splits (the retrieval corpus)
  retrieval       fitting TF-IDF and answering
  load metrics    each metric's check() (resources found, nothing computed)
  wordnet         METEOR's WordNet reader and first look-ups
  bertscore load  its float64 encoder (harness.metrics.bertscore.scorer);  bertscore  the rest of BERTScore
  epitome load    the three classifiers;  epitome  their predictions
  meteor / lexical / other metrics   per-sample scoring of the rest
  metric info     metric_info of summary.json
  intervals       the bootstrap / jackknife intervals
  writing         samples.jsonl and summary.json

    ESC_HARNESS_DATA=../shared/data python benchmarks/profile_main_job.py [--no-epitome] [--cprofile FILE]

--no-epitome points $ESC_HARNESS_EPITOME at an empty folder, so the run leaves DIFF-EPITOME out as it does
where the classifiers are not built. --cprofile also writes cProfile's stats and prints the 25 slowest
functions by cumulative time (profiling roughly doubles the times). Phases are inclusive of what they call;
a phase nested in another (wordnet in meteor, bertscore load in bertscore) is subtracted from its parent.
Here BERTScore and DIFF-EPITOME run in this process ($ESC_HARNESS_METRIC_WORKER=0; the real command runs them in a
worker process, harness/metric_worker.py), on threads of their own beside the lexical metrics (harness/threads.py), so
their phases overlap the others' (a phase waiting for the model-loading lock counts that wait too); the
last lines give the CPU time of all threads against the wall time.
"""
from __future__ import annotations

import argparse
import functools
import os
import resource
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

_start = time.perf_counter()
_spent: dict[str, float] = defaultdict(float)
_local = threading.local()  # .stack: the phases open on this thread (metrics run beside each other: harness.threads)


def _stack() -> list[str]:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


def _timed(owner, attr: str, phase: str) -> None:
    """Wrap owner.attr so its time counts to `phase` (minus the phases it calls)."""
    original = getattr(owner, attr)
    if getattr(original, "_profiled", False):
        return

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        _stack = globals()["_stack"]()
        if _stack and _stack[-1] == phase:  # recursion into the same phase: counted once
            return original(*args, **kwargs)
        _stack.append(phase)
        begin = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - begin
            _stack.pop()
            _spent[phase] += elapsed
            if _stack:
                _spent[_stack[-1]] -= elapsed

    wrapper._profiled = True  # type: ignore[attr-defined]
    setattr(owner, attr, wrapper)


def _import(phase: str, module: str) -> None:
    begin = time.perf_counter()
    __import__(module)
    _spent[phase] += time.perf_counter() - begin


def instrument(with_epitome: bool) -> None:
    from baselines import retrieval
    from harness import runner, scoring, store, uncertainty
    from harness.metrics import bertscore, lexical, nltk_data
    from harness import registry
    from tasks import mesc

    _timed(mesc.MescTask, "load", "task load")
    _timed(retrieval.RetrievalModel, "__init__", "retrieval")
    _timed(retrieval.RetrievalModel, "generate", "retrieval")
    _timed(scoring, "load_metrics", "load metrics")
    _timed(nltk_data, "lazy_wordnet", "wordnet") if hasattr(nltk_data, "lazy_wordnet") else None
    import nltk.corpus.util

    _timed(nltk.corpus.util.LazyCorpusLoader, "_LazyCorpusLoader__load", "wordnet")  # NLTK's own full reader, if loaded
    _timed(bertscore, "scorer", "bertscore load")
    _timed(bertscore.BertScore, "compute", "bertscore")
    _timed(lexical.Meteor, "compute", "meteor")
    for cls in (lexical.RougeL, lexical.DistinctPerResponse, lexical.UnigramF1, lexical.Length):
        _timed(cls, "compute", "lexical")
    _timed(lexical, "_word_tokenize", "lexical")
    if with_epitome:
        from baselines.epitome import metric as epitome

        _timed(epitome.TrainedClassifiers, "_load", "epitome load")
        _timed(epitome.TrainedClassifiers, "_levels", "epitome")  # once for the four diff-epitome metrics (they wait on its lock)
    for name in registry.metrics.names() if hasattr(registry.metrics, "names") else ():
        metric = registry.metrics.get(name)
        _timed(type(metric), "info", "metric info")
    _timed(uncertainty, "intervals", "intervals")
    _timed(store.SampleWriter, "write", "writing")
    _timed(store, "write_json", "writing")
    _timed(runner, "run", "run (rest)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-epitome", action="store_true", help="leave DIFF-EPITOME out (classifiers 'not built')")
    parser.add_argument("--cprofile", type=Path, default=None, help="also write cProfile stats here")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    if args.no_epitome:
        os.environ["ESC_HARNESS_EPITOME"] = str(Path(tmp.name) / "no-classifiers")
    # every phase in this process, where its timers are (the real command loads and computes BERTScore and
    # EPITOME in a worker process meanwhile: bench_run.py --baseline times that)
    os.environ["ESC_HARNESS_METRIC_WORKER"] = "0"
    _import("imports", "harness.cli")
    _import("imports", "harness.runner")
    from harness import paths
    from harness.runner import RunConfig

    instrument(with_epitome=not args.no_epitome)
    profiler = None
    if args.cprofile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    from harness import runner

    config = RunConfig(task="mesc", model="retrieval", output_dir=Path(tmp.name) / "runs", data_dir=paths.data_root(), use_cache=False)
    begin = time.perf_counter()
    result = runner.run(config, progress=False)
    run_wall = time.perf_counter() - begin
    if profiler is not None:
        import pstats

        profiler.disable()
        profiler.dump_stats(str(args.cprofile))
        pstats.Stats(str(args.cprofile)).sort_stats("cumulative").print_stats(25)
    wall = time.perf_counter() - _start
    # imports the run itself triggered (torch, transformers, nltk, sklearn) count to the phase that asked for
    # them; `python` start-up before this script is not counted
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"harness run --task mesc --model retrieval{'' if not args.no_epitome else ' (no EPITOME)'}: {len(result.summary.metrics)} metrics, "
          f"{result.summary.n} samples; wall {wall:.2f} s (run {run_wall:.2f} s), peak RSS {peak_mb:.0f} MB, {os.cpu_count()} CPUs")
    print(f"  {'phase':16s} {'seconds':>8s} {'share':>6s}")
    counted = sum(_spent.values())
    for phase, seconds in sorted(_spent.items(), key=lambda kv: -kv[1]):
        print(f"  {phase:16s} {seconds:8.2f} {100 * seconds / wall:5.1f}%")
    if counted <= wall:
        print(f"  {'not timed':16s} {wall - counted:8.2f} {100 * (wall - counted) / wall:5.1f}%")
    else:  # BERTScore and DIFF-EPITOME run on threads of their own beside the lexical metrics
        print(f"  (phases on the metric threads overlap the others: {counted:.2f} s counted in {wall:.2f} s of wall time)")
    print(f"  CPU time {time.process_time():.2f} s (all threads): {time.process_time() / wall:.2f} cores busy on average")
    tmp.cleanup()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
