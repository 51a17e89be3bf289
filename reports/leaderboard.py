"""Leaderboard tables: measured runs and published numbers, one table per task and split.

- Rows: the latest finished run of each model / task options / split (harness/leaderboard.py), then the
  published rows of `baselines/published/*.json` for that task and split, marked as published and grouped
  under their source (one group per published file, in file order: `row_groups`).
- Columns: one per metric *variant*. A measured metric's variant is read from the run's
  `summary.json` `metric_info` (backbone, classifier, judge ... see VARIANT_FIELDS) and from the models
  that played the roles it depends on: every role of a dialogue task (with the version of their
  prompts), and the role of the grader a judged metric declares (`Metric.grader`); runs whose variants
  differ get separate columns `metric [field=value]`.
  A published number joins a measured column only when its file's `match` says the variant is the same
  (baselines/published/__init__.py), else it gets its own column `metric [variant]`: a MiniLM BERTScore
  never sits beside a roberta-large one.
- Cells: value, the run's 95% interval [low, high] where summary.json has one, the best value of each
  column marked and, with a reference model, a dagger where the paired test (harness.uncertainty.compare
  over the samples both runs share) gives p < 0.05.
- Each column's direction (best is highest or lowest), decimals and place among the columns are the
  registered metric's own `higher_is_better`, `decimals` and `order` (harness.contract.Metric); a metric
  not registered here (a published number of a plugin not installed) gets Metric's defaults, and columns
  of equal order keep the order they are first seen in.
- Which columns: with `reported=True` (the command's default) only the metrics the task's papers report
  (the registered task's `reported_metrics` patterns; a task not registered here, or one that declares none,
  shows every column); the others measured are named in the table's notes.
"""
from __future__ import annotations

import csv
import fnmatch
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from harness import registry, scoring, store, uncertainty
from harness.contract import ChatModel, DialogueTask, Metric, MetricValue, ScoredPair, SampleRecord
from harness.errors import HarnessError
from harness.leaderboard import RunEntry, collect_runs

FORMATS = ("md", "csv", "latex", "html")
ALPHA = 0.05  # significance level of the dagger
DAGGER = "\u2020"

# metric_info fields that change what a number means (not only its last decimals)
VARIANT_FIELDS = ("backbone", "num_layers", "idf", "rescale_with_baseline", "classifier", "judge", "simulator", "scale")


@dataclass(frozen=True)
class Display:
    """How a metric's column is shown: read from the registered metric (harness.contract.Metric)."""

    higher_is_better: bool = Metric.higher_is_better
    decimals: int = Metric.decimals
    order: int = Metric.order  # lower comes first among the columns


def display(metric: str) -> Display:
    """The registered metric's direction, decimals and order; Metric's defaults for a name that is not
    registered here (or whose plugin does not load)."""
    try:
        found = registry.metrics.get(metric)
    except Exception:  # not registered, or its plugin is not installed here
        return Display()
    return Display(bool(getattr(found, "higher_is_better", Metric.higher_is_better)),
                   int(getattr(found, "decimals", Metric.decimals)), int(getattr(found, "order", Metric.order)))


def _norm(value: Any) -> str:
    return str(value).strip().lower()


# --------------------------------------------------------------------------- structures


@dataclass
class Column:
    key: tuple  # ("m", metric, signature) for a measured variant, ("p", metric, variant) for a published-only one
    metric: str
    label: str
    variants: list[tuple[str, str]] = field(default_factory=list)  # (who, how it was computed), for the footnotes
    higher_is_better: bool = True
    measured: bool = False  # holds measured values
    decimals: int = Metric.decimals  # shown (and compared for the best) at this precision
    order: int = Metric.order  # the metric's place among the columns (lower first)

    @property
    def arrow(self) -> str:
        return "\u2191" if self.higher_is_better else "\u2193"


@dataclass
class Cell:
    value: float
    interval: tuple[float, float] | None = None
    best: bool = False
    p_value: float | None = None  # paired test against the reference row

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA


@dataclass
class Row:
    label: str
    kind: str  # "measured" | "published"
    source: str  # "measured", or e.g. "FIRES Table 1"
    n: int | None
    cells: dict[tuple, Cell] = field(default_factory=dict)
    run: RunEntry | None = None
    group: str = ""
    note: str = ""
    reference: bool = False
    shared: int | None = None  # samples shared with the reference run
    origin: Any = None  # a published row's baselines.published.Source (the file it was first read from)


@dataclass
class Table:
    task: str
    split: str
    columns: list[Column]
    rows: list[Row]
    reference: str | None = None  # label of the reference row
    resamples: int = uncertainty.DEFAULT_RESAMPLES
    sources: list[Any] = field(default_factory=list)  # baselines.published.Source of the published rows
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.task}-{self.split}"

    @property
    def measured(self) -> list[Row]:
        return [r for r in self.rows if r.kind == "measured"]


# --------------------------------------------------------------------------- variants


def role_model(entry: RunEntry, role: str) -> str:
    """The model that played `role` (seeker, judge) in a dialogue run; the model under test when the
    run names none (the harness's default)."""
    roles = getattr(entry.header, "roles", None) or {}
    record = roles.get(role)
    if record is None:
        return _norm(entry.header.model_args.get("model") or entry.header.model)
    return _norm(record.model_args.get("model") or record.model)


def signature(entry: RunEntry, metric: str) -> tuple[tuple[str, str], ...]:
    info = entry.summary.metric_info.get(metric, {})
    items = [(k, _norm(info[k])) for k in VARIANT_FIELDS if k in info]
    roles = set(_graded_by(metric))
    dialogue_roles = _dialogue_roles(entry.header.task)
    if dialogue_roles is not None:  # a dialogue's every number depends on who played each role
        roles |= set(dialogue_roles) | set(getattr(entry.header, "roles", None) or {})
    # a grader's role played by a panel (judge, judge2 ...) is one item, the judges' sorted identities:
    # the same panel in any order is the same variant
    for role in sorted(set(_graded_by(metric))):
        panel = panel_of(entry, role)
        if len(panel) > 1:
            roles -= set(panel)
            items.append((f"{role}_panel", "+".join(sorted(judge_identity(entry, r) for r in panel))))
    items += [(role, role_model(entry, role)) for role in sorted(roles) if role not in dict(items)]
    version = getattr(entry.header, "prompt_version", None)
    if version and roles:  # ... and on the roles' prompts
        items.append(("prompt_version", _norm(version)))
    return tuple(items)


def panel_of(entry: RunEntry, role: str) -> list[str]:
    """The roles of `role`'s panel in the run (judge, judge2 ...); [role] for a single judge."""
    from harness.grading import panel_roles

    try:
        return panel_roles(role, list(getattr(entry.header, "roles", None) or {}))
    except HarnessError:
        return [role]


def judge_identity(entry: RunEntry, role: str) -> str:
    """A panel judge as a published table names it: a judge that brings its own prompts (ESC-RANK's adapter
    overrides `grader_for`) by its adapter name, since its `model` argument is only the base weights; any
    other by its model (role_model)."""
    record = (getattr(entry.header, "roles", None) or {}).get(role)
    if record is not None:
        try:
            adapter = registry.models.get(record.model)
        except Exception:  # not registered, or its plugin is not installed here
            adapter = None
        if isinstance(adapter, type) and getattr(adapter, "grader_for", None) is not ChatModel.grader_for:
            return _norm(record.model)
    return role_model(entry, role)


def _dialogue_roles(task: str) -> tuple[str, ...] | None:
    """The roles a dialogue task declares (besides the model under test); None for a single-turn task."""
    try:
        found = registry.tasks.get(task)
    except Exception:  # not registered, or its plugin is not installed here
        return None
    return tuple(found.roles) if isinstance(found, type) and issubclass(found, DialogueTask) else None


def _graded_by(metric: str) -> tuple[str, ...]:
    """The role whose model grades this metric (a judge), from the registered metric's grader."""
    try:
        grader = getattr(registry.metrics.get(metric), "grader", None)
    except Exception:  # not registered, or its plugin is not installed here
        return ()
    return (grader.role,) if grader is not None else ()


def _matches(match: dict[str, Any], sig: tuple[tuple[str, str], ...]) -> bool:
    have = dict(sig)
    for key, wanted in match.items():
        accepted = {_norm(w) for w in (wanted if isinstance(wanted, list) else [wanted])}
        if key not in have:
            return False
        # a published table names models, not folders: a local path or hub id matches by its last part
        # (`--seeker-args model=/models/ESC-Role` is "esc-role")
        if have[key] not in accepted and have[key].rstrip("/").rsplit("/", 1)[-1] not in accepted:
            return False
    return True


def _sig_text(sig: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sig)


# --------------------------------------------------------------------------- building


def _metric_rank(order: list[str], column: Column) -> tuple[int, int]:
    return (column.order, order.index(column.metric) if column.metric in order else len(order))


def _column(key: tuple, metric: str, label: str, higher_is_better: bool | None = None, measured: bool = False) -> Column:
    """A column shown as the registered metric says (`higher_is_better` given: a published file's own)."""
    shown = display(metric)
    higher = shown.higher_is_better if higher_is_better is None else higher_is_better
    return Column(key, metric, label, higher_is_better=higher, measured=measured, decimals=shown.decimals, order=shown.order)


def reported_patterns(task: str) -> tuple[str, ...]:
    """The registered task's `reported_metrics` (fnmatch patterns); () - every column - for a task not
    registered here (or whose plugin does not load)."""
    try:
        found = registry.tasks.get(task)
    except Exception:  # not registered, or its plugin is not installed here
        return ()
    return tuple(getattr(found, "reported_metrics", ()) or ())


def build_table(task: str, split: str, entries: Sequence[RunEntry], published: Sequence[tuple[str, Any]],
                metrics: Sequence[str] | None = None, reported: Sequence[str] = ()) -> Table:
    """One table from the measured runs of (task, split) and the published tables (file stem, PublishedTable).
    `metrics`: only these columns; `reported`: only metrics matching one of these patterns (() = all)."""
    columns: dict[tuple, Column] = {}
    seen_order: list[str] = []
    wanted = set(metrics) if metrics else None
    hidden: list[str] = []  # metrics left out by `reported`, named in the notes

    def keep(metric: str) -> bool:
        if wanted is not None and metric not in wanted:
            return False
        if reported and not any(fnmatch.fnmatchcase(metric, pattern) for pattern in reported):
            if metric not in hidden:
                hidden.append(metric)
            return False
        return True

    # measured columns: one per (metric, variant signature)
    sigs: dict[str, set] = {}
    for e in entries:
        for metric in e.summary.metrics:
            if keep(metric):
                sigs.setdefault(metric, set()).add(signature(e, metric))
                if metric not in seen_order:
                    seen_order.append(metric)
    rows: list[Row] = []
    for e in entries:
        row = Row(e.label, "measured", "measured", e.summary.n, run=e)
        for metric, value in e.summary.metrics.items():
            if not keep(metric) or value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            sig = signature(e, metric)
            key = ("m", metric, sig)
            if key not in columns:
                several = len(sigs[metric]) > 1
                columns[key] = _column(key, metric, f"{metric} [{_sig_text(sig)}]" if several and sig else metric, measured=True)
            note = ("measured", _sig_text(sig))
            if note not in columns[key].variants:
                columns[key].variants.append(note)
            interval = e.summary.intervals.get(metric)
            if interval and any(x is None or math.isnan(x) for x in interval):
                interval = None  # no resample had a value (every judge score missing)
            row.cells[key] = Cell(float(value), tuple(interval) if interval else None)
        rows.append(row)

    # published rows
    sources = []
    by_identity: dict[tuple, Row] = {}
    for stem, table in published:
        if table.task != task or table.split != split:
            continue
        used = False
        for prow in table.rows:
            cells: dict[tuple, Cell] = {}
            for col_key, value in prow.values.items():
                if value is None:
                    continue
                pcol = table.column(col_key)
                if not keep(pcol.metric):
                    continue
                key = _published_column(columns, pcol, prow.variant)
                if pcol.metric not in seen_order:
                    seen_order.append(pcol.metric)
                column = columns[key]
                desc = (f"{table.source.short} {table.source.table}", prow.note if prow.variant else pcol.definition or pcol.variant)
                if desc not in column.variants:
                    column.variants.append(desc)
                cells[key] = Cell(float(value))
            if not cells:
                continue
            used = True
            label = prow.model
            source = f"{table.source.short} {table.source.table}"
            same = by_identity.get((table.source.short, label))
            if same is not None and all(same.cells.get(k) and same.cells[k].value == c.value for k, c in cells.items()):
                if source not in same.source:
                    same.source += f", {table.source.table}"
                continue
            row = Row(label, "published", source, None if prow.variant else table.n, cells, group=prow.group, note=prow.note,
                      origin=table.source)
            by_identity.setdefault((table.source.short, label), row)
            rows.append(row)
        if used and table.source not in sources:
            sources.append(table.source)
    # the harness's own definitions first (measured, or published with the same definition), then the
    # published-only variants, grouped by variant
    ordered = sorted(columns.values(), key=lambda c: (c.key[0] == "p", c.key[2] if c.key[0] == "p" else "", _metric_rank(seen_order, c), c.label))
    notes = panel_notes(entries)
    if hidden:
        notes.append(f"Not shown (the task's papers do not report them; --metrics all shows every column): {', '.join(hidden)}.")
    result = Table(task, split, ordered, rows, sources=sources, notes=notes)
    mark_best(result)
    return result


def source_heading(source: Any) -> str:
    """A published group's heading: "Published: FIRES Table 1 (Wang et al. 2025)"."""
    names = source.authors.replace(" et al.", "").replace(" and ", ", ").split(", ")
    who = names[0] + (" et al." if len(names) > 1 or "et al." in source.authors else "")
    return f"Published: {source.short} {source.table} ({who} {source.year})"


def row_groups(table: Table) -> list[tuple[Any, list[Row]]]:
    """The table's rows in runs of one origin: (None, the measured rows), then (Source, its published rows)
    per published file, in order."""
    groups: list[tuple[Any, list[Row]]] = []
    last: tuple | None = None
    for row in table.rows:
        origin = row.origin if row.kind == "published" else None
        if groups and last == (row.kind, origin):
            groups[-1][1].append(row)
        else:
            groups.append((origin, [row]))
        last = (row.kind, origin)
    return groups


def panel_notes(entries: Sequence[RunEntry]) -> list[str]:
    """One note per run graded by a judge panel: who judged, and their agreement per aspect (summary.json
    `agreement`: Krippendorff's alpha with its bootstrap interval over the samples)."""
    notes = []
    for e in entries:
        for name, found in (getattr(e.summary, "agreement", None) or {}).items():
            judges = ", ".join(f"{role}={judge_identity(e, role)}" for role in found.judges)
            parts = []
            for aspect, alpha in found.alpha.items():
                if alpha is None:
                    parts.append(f"{aspect} undefined")
                    continue
                low_high = found.intervals.get(aspect)
                parts.append(f"{aspect} {alpha:.2f}" + (f" [{low_high[0]:.2f}, {low_high[1]:.2f}]" if low_high else ""))
            notes.append(f"{e.label}: {name} panel of {len(found.judges)} ({judges}), the metrics are the judges' mean per sample; "
                         f"Krippendorff's alpha ({found.level}) between them: " + "; ".join(parts) + ".")
    return notes


def _published_column(columns: dict[tuple, Column], pcol: Any, row_variant: str | None) -> tuple:
    """The column a published number goes to, created if need be."""
    metric = pcol.metric
    higher = pcol.higher_is_better  # None: as the registered metric
    if row_variant is None and pcol.match is not None:
        measured = [c for c in columns.values() if c.measured and c.metric == metric]
        if pcol.match == {}:
            if len(measured) == 1:
                return measured[0].key
            key = ("m", metric, ())  # the harness's own definition: the plain column
            if key not in columns:
                columns[key] = _column(key, metric, metric, higher)
            return key
        for column in measured:
            if _matches(pcol.match, column.key[2]):
                return column.key
    variant = row_variant or pcol.variant
    key = ("p", metric, variant)
    if key not in columns:
        columns[key] = _column(key, metric, f"{metric} [{variant}]", higher)
    return key


def mark_best(table: Table) -> None:
    """Bold the best value of each column, compared at the precision shown (ties are all marked)."""
    for column in table.columns:
        cells = [r.cells[column.key] for r in table.rows if column.key in r.cells]
        if not cells:
            continue
        shown = [round(c.value, column.decimals) for c in cells]
        best = max(shown) if column.higher_is_better else min(shown)
        for cell, value in zip(cells, shown):
            cell.best = value == best


def build_tables(runs_root: Path | None, published: Sequence[tuple[str, Any]] = (), keep_all: bool = False,
                 metrics: Sequence[str] | None = None, reference: str | None = None,
                 resamples: int = uncertainty.DEFAULT_RESAMPLES, seed: int = 0, reported: bool = False) -> list[Table]:
    """Every table: one per task / split that has measured runs or published rows. `reported`: each task's
    table keeps only the columns its papers report (the task's `reported_metrics`)."""
    entries = collect_runs(runs_root, keep_all) if runs_root is not None else []
    keys: list[tuple[str, str]] = []
    for e in entries:
        if (e.header.task, e.header.split) not in keys:
            keys.append((e.header.task, e.header.split))
    for _, table in published:
        if (table.task, table.split) not in keys:
            keys.append((table.task, table.split))
    tables = [build_table(task, split, [e for e in entries if (e.header.task, e.header.split) == (task, split)], published, metrics,
                          reported_patterns(task) if reported else ())
              for task, split in keys]
    tables = [t for t in tables if t.rows and t.columns]
    if reference:
        found = [t for t in tables if _reference_row(t, reference) is not None]
        if not found:
            labels = sorted({r.label for t in tables for r in t.measured})
            raise HarnessError(f"--reference {reference}: no measured run of that model; measured rows: {', '.join(labels) or '(none)'}.")
        for t in found:
            significance(t, _reference_row(t, reference), resamples, seed)
    return tables


def _reference_row(table: Table, reference: str) -> Row | None:
    rows = [r for r in table.measured if r.label == reference]
    if not rows:
        rows = [r for r in table.measured if reference in (r.run.header.model, r.label.split(" [")[0], r.run.header.model_args.get("model"))]
    if len(rows) > 1:
        raise HarnessError(f"--reference {reference} is ambiguous in the {table.task} ({table.split}) table: "
                           f"{'; '.join(r.label for r in rows)}; give the full row label.")
    return rows[0] if rows else None


# --------------------------------------------------------------------------- significance


class _StoredScore(Metric):
    """A per-sample metric read back from samples.jsonl `scores` (no model is loaded, nothing recomputed)."""

    per_sample = True

    def __init__(self, name: str):
        self.name = name

    def compute(self, pairs: Sequence[ScoredPair]) -> MetricValue:
        values = [p.outcome["__stored_scores__"][self.name] for p in pairs]
        return MetricValue(corpus=sum(values) / len(values) if values else 0.0, per_sample=values)


def _comparable_metric(name: str, records_a: Sequence[SampleRecord], records_b: Sequence[SampleRecord]) -> Metric | None:
    if any(name in r.scores for r in records_a) and any(name in r.scores for r in records_b):
        return _StoredScore(name)  # tested over the samples both runs have a score for (a judge may fail to score some)
    try:
        metric = registry.metrics.get(name)
    except Exception:  # not installed here: no test for it
        return None
    if getattr(metric, "per_sample", False):
        return None  # would need recomputing (a model) and no score is stored
    return metric


class _RunSamples:
    """A run's records and, made once when first needed, their scored pairs (tokenising is the slow part)."""

    def __init__(self, entry: RunEntry):
        self.records = {r.id: r for r in store.read_records(entry.run_dir)}
        self._pairs: dict[str, ScoredPair] | None = None

    def pairs(self, ids: Sequence[str], tokens: bool) -> list[ScoredPair]:
        records = [self.records[i] for i in ids]
        if not tokens:
            out = scoring.pairs_of(records)
        else:
            if self._pairs is None:
                ordered = list(self.records.values())
                self._pairs = dict(zip((r.id for r in ordered), scoring.pairs_of(ordered)))
            out = [self._pairs[i] for i in ids]
        for pair, record in zip(out, records):
            pair.outcome["__stored_scores__"] = record.scores
        return out


def paired_p_values(reference: RunEntry, other: RunEntry, metric_names: Iterable[str], resamples: int = uncertainty.DEFAULT_RESAMPLES,
                    seed: int = 0, cache: dict[Path, _RunSamples] | None = None) -> tuple[int, dict[str, float]]:
    """(shared samples, {metric: two-sided p}) of `other` against `reference` over the samples both have
    (harness.uncertainty.compare: paired approximate randomisation). Per-sample metrics use the scores
    stored in samples.jsonl; corpus metrics (BLEU, Dist-n) are recomputed from the responses; a metric
    that is neither stored nor recomputable here is left out."""
    cache = {} if cache is None else cache
    for entry in (reference, other):
        if entry.run_dir not in cache:
            cache[entry.run_dir] = _RunSamples(entry)
    records_a, records_b = cache[reference.run_dir].records, cache[other.run_dir].records
    shared = sorted((i for i in set(records_a) & set(records_b) if records_a[i].reference == records_b[i].reference),
                    key=lambda i: records_a[i].index)
    if not shared:
        return 0, {}
    a = [records_a[i] for i in shared]
    b = [records_b[i] for i in shared]
    metrics = [m for m in (_comparable_metric(name, a, b) for name in metric_names) if m is not None]
    groups: dict[tuple[str, ...], list[Metric]] = {}  # metrics tested over the same samples share one call
    for metric in metrics:
        if isinstance(metric, _StoredScore):
            ids = tuple(i for i in shared if metric.name in records_a[i].scores and metric.name in records_b[i].scores)
        else:
            ids = tuple(shared)
        if ids:
            groups.setdefault(ids, []).append(metric)
    p_values: dict[str, float] = {}
    for ids, group in groups.items():
        tokens = any(not isinstance(m, _StoredScore) for m in group)
        rows = uncertainty.compare(group, cache[reference.run_dir].pairs(ids, tokens), cache[other.run_dir].pairs(ids, tokens), resamples, seed)
        p_values.update({r.metric: r.p_value for r in rows})
    return len(shared), p_values


def significance(table: Table, reference: Row, resamples: int = uncertainty.DEFAULT_RESAMPLES, seed: int = 0) -> None:
    table.reference, table.resamples = reference.label, resamples
    reference.reference = True
    table.rows.remove(reference)
    table.rows.insert(0, reference)  # the reference heads the table
    cache: dict[Path, _RunSamples] = {}
    for row in table.measured:
        if row is reference:
            continue
        keys = [k for k in row.cells if k in reference.cells and k[0] == "m"]
        shared, p_values = paired_p_values(reference.run, row.run, sorted({k[1] for k in keys}), resamples, seed, cache)
        row.shared = shared
        for key in keys:
            if key[1] in p_values:
                row.cells[key].p_value = p_values[key[1]]


# --------------------------------------------------------------------------- rendering


def cell_numbers(column: Column, cell: Cell) -> tuple[str, str | None]:
    """A cell's value and its interval ("[low, high]", or None) at the column's decimals: what every format prints."""
    places = column.decimals
    bounds = f"[{cell.interval[0]:.{places}f}, {cell.interval[1]:.{places}f}]" if cell.interval else None
    return f"{cell.value:.{places}f}", bounds


def footnotes(table: Table) -> list[str]:
    notes = [
        "Bold: best value of the column (\u2193: lower is better). [low, high]: the run's 95% interval (summary.json). "
        "Published rows: numbers as printed in the source, no interval; -- : not reported, or a different metric variant.",
    ]
    if table.reference:
        shared = "; ".join(f"{r.label}: {r.shared}" for r in table.measured if r.shared is not None)
        notes.append(f"{DAGGER}: differs from the reference {table.reference} at p < {ALPHA} (two-sided paired approximate "
                     f"randomisation over the samples both runs share, {table.resamples} resamples"
                     + (f"; shared samples - {shared}" if shared else "") + ").")
    grouped: dict[str, list[str]] = {}  # columns described alike share one note
    for column in table.columns:
        grouped.setdefault(describe_variants(column.variants), []).append(column.label)
    for text, labels in grouped.items():
        notes.append(f"{', '.join(labels)}: {text}")
    for source in table.sources:
        notes.append(f"{source.short} {source.table}: {source.authors} ({source.year}), \"{source.paper}\""
                     + (f", arXiv:{source.arxiv}" if source.arxiv else f", {source.venue}" if source.venue else "")
                     + (f". {source.notes}" if source.notes else ""))
    notes.extend(table.notes)
    return notes


def describe_variants(variants: Sequence[tuple[str, str]]) -> str:
    """"measured: x; FIRES Table 1, FIRES Table 2: how" - sources that say the same thing merged."""
    by_text: dict[str, list[str]] = {}
    for who, text in variants:
        by_text.setdefault(text, [])
        if who not in by_text[text]:
            by_text[text].append(who)
    return "; ".join(", ".join(whos) + (f": {text}" if text else "") for text, whos in by_text.items())


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(tables: Sequence[Table]) -> str:
    """One table per task and split; the published rows of each source under a row naming it."""
    out = []
    for table in tables:
        out.append(f"## {table.task} ({table.split})\n")
        header = ["model", "source", "n"] + [f"{c.label} {c.arrow}" for c in table.columns]
        out.append("| " + " | ".join(_md_escape(h) for h in header) + " |")
        out.append("|" + "|".join(["---", "---", "---:"] + ["---:"] * len(table.columns)) + "|")
        for origin, rows in row_groups(table):
            if origin is not None:
                out.append(f"| *{_md_escape(source_heading(origin))}* |" + " |" * (2 + len(table.columns)))
            out.extend(_md_row(table, row) for row in rows)
        out.append("")
        out.extend(f"- {_md_escape(n)}" for n in footnotes(table))
        out.append("")
    return "\n".join(out)


def _md_row(table: Table, row: Row) -> str:
    cells = [_md_escape(row.label + (" (reference)" if row.reference else "")), _md_escape(row.source), "" if row.n is None else str(row.n)]
    for column in table.columns:
        cell = row.cells.get(column.key)
        if cell is None:
            cells.append("--")
            continue
        value, interval = cell_numbers(column, cell)
        text = f"**{value}**" if cell.best else value
        if interval:
            text += f" {interval}"
        if cell.significant:
            text += f" {DAGGER}"
        cells.append(text)
    return "| " + " | ".join(cells) + " |"


def render_csv(tables: Sequence[Table]) -> str:
    """One CSV for all tables (task and split columns tell them apart); full precision; `<col>_low`,
    `<col>_high` the interval, `<col>_p` the paired p-value against the reference. No heading lines, so
    every line is a row: `group` is what the other formats head the row's group with ("measured", or the
    published file's source, e.g. "FIRES Table 1"), `paper_group` the row's group inside its source's table."""
    header = ["model", "kind", "source", "group", "paper_group", "task", "split", "n", "run"]
    value_columns: list[str] = []
    for table in tables:
        for column in table.columns:
            for name in (column.label, f"{column.label}_low", f"{column.label}_high") + ((f"{column.label}_p",) if table.reference else ()):
                if name not in value_columns:
                    value_columns.append(name)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header + value_columns, lineterminator="\n")
    writer.writeheader()
    for table in tables:
        for row in table.rows:
            group = f"{row.origin.short} {row.origin.table}" if row.kind == "published" and row.origin is not None else row.kind
            line: dict[str, Any] = {"model": row.label, "kind": row.kind, "source": row.source, "group": group, "paper_group": row.group,
                                    "task": table.task, "split": table.split,
                                    "n": "" if row.n is None else row.n, "run": row.run.header.run_id if row.run else ""}
            for column in table.columns:
                cell = row.cells.get(column.key)
                if cell is None:
                    continue
                line[column.label] = repr(cell.value)
                if cell.interval:
                    line[f"{column.label}_low"], line[f"{column.label}_high"] = repr(cell.interval[0]), repr(cell.interval[1])
                if cell.p_value is not None:
                    line[f"{column.label}_p"] = repr(cell.p_value)
            writer.writerow(line)
    return buffer.getvalue()


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\u2191": r"$\uparrow$", "\u2193": r"$\downarrow$", DAGGER: r"$^\dagger$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def render_latex(tables: Sequence[Table]) -> str:
    """One booktabs tabular per table, in a table float with its footnotes as the caption; the published rows
    of each source under an italic line naming it."""
    out = ["% generated by `harness leaderboard`; needs \\usepackage{booktabs}", ""]
    for table in tables:
        out.append("\\begin{table}[t]\n\\centering\\small")
        out.append("\\begin{tabular}{ll r" + "r" * len(table.columns) + "}\n\\toprule")
        out.append(" & ".join(["Model", "Source", "$n$"] + [latex_escape(f"{c.label} {c.arrow}") for c in table.columns]) + " \\\\\n\\midrule")
        for number, (origin, rows) in enumerate(row_groups(table)):
            if number:
                out.append("\\midrule")
            if origin is not None:  # a published file's rows, under its source
                out.append(f"\\multicolumn{{{3 + len(table.columns)}}}{{l}}{{\\textit{{{latex_escape(source_heading(origin))}}}}} \\\\")
            out.extend(_latex_row(table, row) for row in rows)
        out.append("\\bottomrule\n\\end{tabular}")
        out.append("\\caption{" + latex_escape(f"{table.task} ({table.split}). " + " ".join(footnotes(table)[:2])) + "}")
        out.append(f"\\label{{tab:{table.name}}}\n\\end{{table}}\n")
    return "\n".join(out)


def _latex_row(table: Table, row: Row) -> str:
    cells = [latex_escape(row.label + (" (reference)" if row.reference else "")), latex_escape(row.source), "" if row.n is None else str(row.n)]
    for column in table.columns:
        cell = row.cells.get(column.key)
        if cell is None:
            cells.append("--")
            continue
        value, interval = cell_numbers(column, cell)
        text = f"\\textbf{{{value}}}" if cell.best else value
        if cell.significant:
            text += "$^\\dagger$"
        if interval:
            text += f" {{\\scriptsize {interval}}}"
        cells.append(text)
    return " & ".join(cells) + " \\\\"
