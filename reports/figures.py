"""Leaderboard figures (matplotlib, Agg backend, imported only when figures are made), PNG and PDF.

- `bars-<task>-<split>`: one panel per measured metric column, a bar per row; measured runs with their 95%
  interval as an error bar, published numbers of the same variant as hatched grey bars.
- `radar-esc-eval-<split>`: the seven ESC-Eval dimensions per measured run (0-4), and beside it the
  published ones (their own 0-100 scale: never on the same axes).
- `sage-trajectories-<split>`: the seeker's emotion after each supporter turn, every dialogue (thin) and the
  mean (thick; a dialogue that ended keeps its final emotion, so the mean's last point is sage-score).
- `sage-outcomes-<split>`: success / other end / failure, share of dialogues, measured and published.
- `thinking-<task>-<split>`: FIRES figure 3 for any run in a thinking format: per aspect the share of
  thoughts that include it, split as the paper does (neutral emotion, unknown situation, not included).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from harness import store
from harness.errors import HarnessError

from .leaderboard import Row, Table

ESC_EVAL_DIMENSIONS = ("fluency", "expression", "empathy", "information", "humanoid", "skill", "overall")  # the radar's axes

ASPECTS = ("visual_scene", "emotion", "situation", "response_strategy")
ASPECT_NAMES = {"visual_scene": "Visual Scene", "emotion": "Emotion", "situation": "Situation", "response_strategy": "Response Strategy"}
MEASURED, PUBLISHED, REFERENCE = "#3b6ea8", "#b9b9b9", "#c0392b"
INCLUDED, NOT_INCLUDED, UNKNOWN = "#8e7cc3", "#f1c232", "#6fa8dc"
SUCCESS, OTHER, FAILURE = "#4caf50", "#d0d0d0", "#e05a47"


@dataclass
class FigureInfo:
    name: str  # file stem
    title: str
    caption: str
    table: str  # the table it belongs to (task-split)
    files: dict[str, Path] = field(default_factory=dict)  # extension -> path


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise HarnessError("figures need matplotlib: pip install -e '.[reports]' (or run `harness leaderboard --no-figures`).") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "svg.fonttype": "none", "pdf.fonttype": 42,
                         "figure.dpi": 100, "savefig.dpi": 110, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _save(plt, fig, out_dir: Path, name: str, formats: Sequence[str]) -> dict[str, Path]:
    files = {}
    box = fig.get_tightbbox(fig.canvas.get_renderer()).padded(0.1)  # laid out once for every format
    for ext in formats:
        path = out_dir / f"{name}.{ext}"
        fig.savefig(path, bbox_inches=box)
        files[ext] = path
    plt.close(fig)
    return files


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")


def _short(label: str, width: int = 38) -> str:
    return label if len(label) <= width else label[: width - 1] + "\u2026"


def _row_label(row: Row) -> str:
    if row.kind == "published":
        return _short(f"{row.label} ({row.source})", 46)
    return _short(row.label + (" (ref.)" if row.reference else ""), 46)


# --------------------------------------------------------------------------- per-metric bars


def bars(plt, table: Table, out_dir: Path, formats: Sequence[str]) -> FigureInfo | None:
    from matplotlib.patches import Patch

    columns = [c for c in table.columns if c.measured]
    if not columns:
        return None
    # panels with several rows first (in table order), then those with one: fewer half-empty grid rows
    columns.sort(key=lambda c: sum(c.key in r.cells for r in table.rows) < 2)
    ncols = min(3, len(columns))
    nrows = -(-len(columns) // ncols)
    per_column = [[r for r in table.rows if c.key in r.cells] for c in columns]
    heights = [max(len(rows) for rows in per_column[i * ncols:(i + 1) * ncols]) for i in range(nrows)]
    panel, labels = 2.7, 2.6  # inches: bars, row labels
    width = ncols * (panel + labels)
    height = sum(0.2 * h + 0.85 for h in heights) + 0.6
    fig = plt.figure(figsize=(width, height))
    grid = fig.add_gridspec(nrows, ncols, height_ratios=[0.2 * h + 0.35 for h in heights], hspace=0.5 / (0.2 * sum(heights) / nrows + 0.35) + 0.15,
                            wspace=labels / panel, left=labels / width, right=0.98, top=1 - 0.55 / height, bottom=0.35 / height)
    for index, (column, rows) in enumerate(zip(columns, per_column)):
        ax = fig.add_subplot(grid[index // ncols, index % ncols])
        top = max(heights[index // ncols], 1) - 1
        positions = [top - i for i in range(len(rows))]
        for y, row in zip(positions, rows):
            cell = row.cells[column.key]
            published = row.kind == "published"
            colour = PUBLISHED if published else (REFERENCE if row.reference else MEASURED)
            error = None
            if cell.interval:
                error = [[max(cell.value - cell.interval[0], 0)], [max(cell.interval[1] - cell.value, 0)]]
            ax.barh(y, cell.value, color=colour, hatch="///" if published else None, edgecolor="#333333" if cell.best else "none",
                    linewidth=1.3 if cell.best else 0, xerr=error, error_kw={"elinewidth": 0.9, "capsize": 2, "ecolor": "#222222"}, height=0.72)
            mark = "\u2020" if cell.significant else ""
            ax.text(cell.value if not cell.interval else max(cell.value, cell.interval[1]), y,
                    f" {cell.value:.{column.decimals}f}{mark}", va="center", ha="left", fontsize=7, color="#333333")
        ax.set_title(f"{column.label} {column.arrow}", loc="left")
        ax.set_yticks(positions)
        ax.set_yticklabels([_row_label(r) for r in rows], fontsize=7.5)
        ax.set_ylim(-0.6, top + 0.6)
        ax.margins(x=0.22)
        values = [row.cells[column.key].value for row in rows]
        if min(values) >= 0:
            ax.set_xlim(left=0, right=None if max(values) > 0 else 1)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", color="#eeeeee", linewidth=0.6)
        ax.set_axisbelow(True)
    legend = [Patch(color=MEASURED, label="measured run (95% interval)"), Patch(color=REFERENCE, label="reference run"),
              Patch(facecolor=PUBLISHED, hatch="///", label="published, same metric variant"),
              Patch(facecolor="white", edgecolor="#333333", label="best of the column")]
    fig.legend(handles=legend if table.reference else [legend[0]] + legend[2:], loc="upper left", ncol=4, frameon=False, fontsize=8,
               bbox_to_anchor=(0.0, 1.0))
    name = f"bars-{_slug(table.name)}"
    caption = ("Each panel is one measured metric column of the table: bars are the values, error bars the runs' 95% intervals "
               "(published numbers have none). A framed bar is the column's best; \u2020 marks p < 0.05 against the reference.")
    return FigureInfo(name, f"{table.task} ({table.split}): metrics across models", caption, table.name, _save(plt, fig, out_dir, name, formats))


# --------------------------------------------------------------------------- ESC-Eval radar


def _radar_series(table: Table, measured: bool) -> list[tuple[str, list[float | None]]]:
    series = []
    for row in table.rows:
        if (row.kind == "measured") != measured:
            continue
        values: list[float | None] = []
        for dim in ESC_EVAL_DIMENSIONS:
            cells = [row.cells[c.key] for c in table.columns if c.metric == f"esc-eval-{dim}" and c.measured == measured and c.key in row.cells]
            values.append(cells[0].value if cells else None)
        if any(v is not None for v in values):
            series.append((_row_label(row), values))
    return series


def radar(plt, table: Table, out_dir: Path, formats: Sequence[str]) -> FigureInfo | None:
    import numpy as np

    panels = [(s, scale, title) for s, scale, title in ((_radar_series(table, True), 4.0, "measured (0-4)"), (_radar_series(table, False), 100.0, "published (0-100, own judge and scale)")) if s]
    if not panels:
        return None
    angles = np.linspace(0, 2 * np.pi, len(ESC_EVAL_DIMENSIONS), endpoint=False)
    fig = plt.figure(figsize=(6.2 * len(panels), 5.6))
    for i, (series, scale, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1, projection="polar")
        colours = plt.get_cmap("tab10" if len(series) <= 10 else "tab20")
        for j, (label, values) in enumerate(series):
            points = [v if v is not None else np.nan for v in values]
            closed_a, closed_v = np.append(angles, angles[0]), np.append(points, points[0])
            ax.plot(closed_a, closed_v, color=colours(j % colours.N), linewidth=1.4, label=label, marker="o", markersize=3)
            if len(series) <= 4:
                ax.fill(closed_a, np.nan_to_num(closed_v), color=colours(j % colours.N), alpha=0.06)
        ax.set_xticks(angles)
        ax.set_xticklabels([d.capitalize() for d in ESC_EVAL_DIMENSIONS])
        ax.set_ylim(0, scale)
        ax.set_yticks([scale * k / 4 for k in range(1, 5)])
        ax.set_yticklabels([f"{scale * k / 4:g}" for k in range(1, 5)], fontsize=7, color="#666666")
        ax.set_rlabel_position(360 / len(ESC_EVAL_DIMENSIONS) / 2)
        ax.set_title(title, pad=18)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), fontsize=7, ncol=2, frameon=False)
    fig.suptitle(f"ESC-Eval ({table.split}): the seven judged dimensions", fontsize=11)
    fig.tight_layout()
    name = f"radar-{_slug(table.name)}"
    caption = "Mean judge score per dimension. Measured runs on the harness's 0-4 scale; published numbers on their paper's own scale and judge, on separate axes."
    return FigureInfo(name, f"ESC-Eval ({table.split}): seven dimensions", caption, table.name, _save(plt, fig, out_dir, name, formats))


# --------------------------------------------------------------------------- SAGE


def _trajectories(row: Row) -> list[list[float]]:
    out = []
    for record in store.read_records(row.run.run_dir):
        trajectory = record.outcome.get("trajectory") if record.outcome else None
        if trajectory:
            out.append([float(v) for v in trajectory])
    return out


def carried_mean(trajectories: Sequence[Sequence[float]]) -> list[float]:
    """Mean emotion per turn; a dialogue that ended keeps its final emotion (so the last point is the mean final emotion)."""
    length = max(len(t) for t in trajectories)
    return [sum(t[min(i, len(t) - 1)] for t in trajectories) / len(trajectories) for i in range(length)]


def sage_trajectories(plt, table: Table, out_dir: Path, formats: Sequence[str]) -> FigureInfo | None:
    from matplotlib.ticker import MaxNLocator

    runs = [(row, _trajectories(row)) for row in table.measured]
    runs = [(row, t) for row, t in runs if t]
    if not runs:
        return None
    ncols = min(3, len(runs))
    nrows = -(-len(runs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.2 * nrows), squeeze=False, sharey=True)
    for ax, (row, trajectories) in zip(axes.flat, runs):
        for t in trajectories:
            ax.plot(range(len(t)), t, color="#7f8c8d", alpha=max(0.15, min(0.6, 8 / len(trajectories))), linewidth=0.7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        mean = carried_mean(trajectories)
        ax.plot(range(len(mean)), mean, color=REFERENCE if row.reference else MEASURED, linewidth=2.4, label="mean")
        ax.axhline(100, color=SUCCESS, linestyle="--", linewidth=0.8)
        ax.axhline(10, color=FAILURE, linestyle="--", linewidth=0.8)
        ax.set_ylim(-2, 105)
        ax.set_xlabel("supporter turns so far")
        ax.set_title(f"{_short(row.label, 44)}\n{len(trajectories)} dialogues, mean final emotion {mean[-1]:.2f}", fontsize=9)
        ax.grid(color="#eeeeee", linewidth=0.6)
    for ax in axes[:, 0]:
        ax.set_ylabel("seeker emotion")
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    fig.tight_layout()
    name = f"sage-trajectories-{_slug(table.split)}"
    caption = ("The simulated seeker's emotion after each supporter turn (0 = the starting value): every dialogue in grey, the mean "
               "in colour (a dialogue that ended keeps its final emotion). Dashed: success (100) and failure (10) thresholds.")
    return FigureInfo(name, f"SAGE ({table.split}): emotion trajectories", caption, table.name, _save(plt, fig, out_dir, name, formats))


def _outcome_counts(table: Table, row: Row) -> tuple[int, int, int] | None:
    def value(metric: str) -> float | None:
        for column in table.columns:
            if column.metric == metric and column.key in row.cells:
                return row.cells[column.key].value
        return None

    success, failure = value("sage-success"), value("sage-failure")
    if success is None or failure is None or not row.n:
        return None
    return int(round(success)), int(round(failure)), row.n


def sage_outcomes(plt, table: Table, out_dir: Path, formats: Sequence[str]) -> FigureInfo | None:
    items = [(row, counts) for row in table.rows if (counts := _outcome_counts(table, row))]
    if not items:
        return None
    fig, ax = plt.subplots(figsize=(8.0, 0.3 * len(items) + 1.3))
    labels = []
    for y, (row, (success, failure, n)) in zip(range(len(items))[::-1], items):
        other = max(n - success - failure, 0)
        left = 0.0
        for count, colour, name in ((success, SUCCESS, "success"), (other, OTHER, "other end"), (failure, FAILURE, "failure")):
            share = 100.0 * count / n
            ax.barh(y, share, left=left, color=colour, height=0.7, label=name if y == len(items) - 1 else None,
                    hatch="///" if row.kind == "published" else None, edgecolor="white", linewidth=0.4)
            if share >= 6:
                ax.text(left + share / 2, y, str(count), ha="center", va="center", fontsize=7)
            left += share
        labels.append(_row_label(row))
    ax.set_yticks(range(len(items))[::-1])
    ax.set_yticklabels(labels, fontsize=7.5)
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of dialogues (numbers: counts)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False, fontsize=8)
    ax.set_title(f"SAGE ({table.split}): how the dialogues ended", pad=22)
    fig.tight_layout()
    name = f"sage-outcomes-{_slug(table.split)}"
    caption = ("Success (final emotion >= 100), failure (< 10) and other ends (the seeker left, or the turn limit), as shares of each row's "
               "dialogues; hatched rows are published numbers (their own sentient agent: see the table's columns).")
    return FigureInfo(name, f"SAGE ({table.split}): success and failure", caption, table.name, _save(plt, fig, out_dir, name, formats))


# --------------------------------------------------------------------------- thinking aspects (FIRES figure 3)


def aspect_shares(records: Sequence[Any]) -> tuple[int, dict[str, dict[str, float]]] | None:
    """(thoughts, {aspect: {"included", "neutral", "unknown", "not_included": % of thoughts}}) over the
    records that carry a thought and `parse_details` with `aspects` (FIRES-format runs); None if none do.
    `included` excludes the neutral emotions and unknown situations, which have their own share."""
    details = [r.parse_details for r in records if r.thinking and isinstance(r.parse_details, dict) and isinstance(r.parse_details.get("aspects"), dict)]
    if not details:
        return None
    n = len(details)
    shares: dict[str, dict[str, float]] = {}
    for aspect in ASPECTS:
        included = [d for d in details if d["aspects"].get(aspect)]
        neutral = sum(1 for d in included if aspect == "emotion" and d.get("emotion_neutral"))
        unknown = sum(1 for d in included if aspect == "situation" and d.get("situation_unknown"))
        shares[aspect] = {"included": 100.0 * (len(included) - neutral - unknown) / n, "neutral": 100.0 * neutral / n,
                          "unknown": 100.0 * unknown / n, "not_included": 100.0 * (n - len(included)) / n}
    return n, shares


def thinking(plt, table: Table, out_dir: Path, formats: Sequence[str]) -> FigureInfo | None:
    runs = []
    for row in table.measured:
        found = aspect_shares(store.read_records(row.run.run_dir))
        if found:
            runs.append((row, *found))
    if not runs:
        return None
    ncols = min(3, len(runs))
    nrows = -(-len(runs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, 3.1 * nrows), squeeze=False)
    parts = (("included", INCLUDED, None, "included"), ("neutral", INCLUDED, "////", "emotion neutral"),
             ("unknown", UNKNOWN, None, "situation unknown"), ("not_included", NOT_INCLUDED, None, "not helpful / left out"))
    for ax, (row, n, shares) in zip(axes.flat, runs):
        x = range(len(ASPECTS))
        bottom = [0.0] * len(ASPECTS)
        for key, colour, hatch, label in parts:
            heights = [shares[a][key] for a in ASPECTS]
            ax.bar(x, heights, bottom=bottom, color=colour, hatch=hatch, edgecolor="white", linewidth=0.5, label=label, width=0.66)
            for i, h in enumerate(heights):
                if h >= 7:
                    ax.text(i, bottom[i] + h / 2, f"{h:.0f}%", ha="center", va="center", fontsize=7, color="black")
            bottom = [b + h for b, h in zip(bottom, heights)]
        ax.set_xticks(list(x))
        ax.set_xticklabels([ASPECT_NAMES[a].replace(" ", "\n") for a in ASPECTS], fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_ylabel("% of thoughts")
        ax.set_title(f"{_short(row.label, 44)}\n{n} thoughts", fontsize=9)
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, frameon=False, fontsize=8, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    name = f"thinking-{_slug(table.name)}"
    caption = ("As FIRES figure 3, for the runs in a thinking format: per aspect, the share of thoughts that include it (purple; hatched: "
               "the emotion is neutral; blue: the situation is \"Unknown\") or not (yellow: declined as not helpful, or left out). "
               "Outputs without a thought are not counted.")
    return FigureInfo(name, f"{table.task} ({table.split}): thinking aspects", caption, table.name, _save(plt, fig, out_dir, name, formats))


# --------------------------------------------------------------------------- all


def make_figures(tables: Sequence[Table], out_dir: Path, formats: Sequence[str] = ("png", "pdf")) -> list[FigureInfo]:
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    figures: list[FigureInfo] = []
    for table in tables:
        makers = [bars]
        if table.task == "esc-eval":
            makers.append(radar)
        if table.task == "sage":
            makers += [sage_trajectories, sage_outcomes]
        makers.append(thinking)
        for make in makers:
            info = make(plt, table, out_dir, formats)
            if info is not None:
                figures.append(info)
    return figures
