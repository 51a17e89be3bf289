"""Published numbers, kept as data: one JSON file per source table, read by `harness leaderboard`.

A file is a `PublishedTable` (schema below; `python -c "from baselines.published import schema; schema()"`
prints it as JSON Schema):

```json
{
  "source": {"short": "FIRES", "paper": "...", "authors": "...", "venue": "...", "year": 2025, "table": "Table 1",
             "arxiv": "2508.09521", "url": "https://...", "notes": "..."},
  "task": "mesc", "split": "test", "n": 454,
  "columns": [{"key": "B-2", "metric": "bleu-2", "variant": "ESConv reference code", "match": {},
               "definition": "..."}],
  "rows": [{"model": "GPT-4o (3-shot)", "group": "Few-shot", "values": {"B-2": 4.87, "M.": null}}]
}
```

- `columns[].metric` is the harness metric the number is an instance of (`bleu-2`, `sage-score`,
  `esc-eval-empathy`...), `variant` a short label of how it was computed (judge, backbone, scale) and
  `match` decides whether it may share a column with a measured run:
  `{}` = the harness computes it the same way whatever the run (the lexical metrics, which follow the
  ESConv reference code as the papers do); `{"backbone": "roberta-large"}` = only with a run whose
  `summary.json` `metric_info[metric]` (or, for `seeker` / `judge`, `run.json` `roles`) says so;
  `null` = never (a different scale or judge): the number gets its own column `metric [variant]`.
- `columns[].evidence` is required wherever `match` is not null: the reason to believe the numbers are
  that metric (what was computed on which outputs and what it gave, or what the paper states). A column
  whose variant cannot be pinned down keeps `match: null` and says why in `evidence` or `definition`.
- `rows[].values` holds the numbers exactly as printed (null for the paper's "-"); `rows[].variant`
  marks a row whose numbers were computed differently from the columns' (e.g. copied from another
  paper): they then go to their own columns, never beside measured values.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness import store
from harness.errors import HarnessError

FOLDER = Path(__file__).resolve().parent


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")
    short: str  # what the tables call the source, e.g. "FIRES"
    paper: str  # title
    authors: str  # first author et al.
    venue: str = ""
    year: int
    table: str  # "Table 1", "leaderboard" ...
    arxiv: str | None = None  # arXiv id, e.g. "2508.09521"
    url: str | None = None
    notes: str = ""  # how the numbers were obtained, anything unusual about them

    def cite(self) -> str:
        where = f"arXiv:{self.arxiv}" if self.arxiv else (self.venue or self.url or "")
        return f"{self.authors} ({self.year}), {self.table}" + (f", {where}" if where else "")


class PublishedColumn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str  # the paper's column header, e.g. "B-2"
    metric: str  # harness metric name the number is an instance of, e.g. "bleu-2"
    variant: str  # short label of how it was computed, e.g. "roberta-large", "ESC-Rank+GPT-4o, 0-100"
    match: dict[str, Any] | None = Field(default_factory=dict)  # see the module docstring
    definition: str = ""  # the long description (judge, scale, implementation) for footnotes
    evidence: str = ""  # why the numbers are instances of `metric` as the harness computes it (required with a match)
    higher_is_better: bool | None = None  # None: as the registered harness metric (its `higher_is_better`)

    @model_validator(mode="after")
    def _claims_have_evidence(self) -> "PublishedColumn":
        if self.match is not None and not self.evidence.strip():
            raise ValueError(f"column '{self.key}' claims to share the measured column of '{self.metric}' (match {self.match}) "
                             "without `evidence`; say what shows the numbers are computed that way, or set match to null")
        return self


class PublishedRow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str  # as the paper names it
    group: str = ""  # the paper's block, e.g. "Few-shot", "Fine-tune", "ablation"
    values: dict[str, float | None]  # column key -> number as printed; null = not reported
    variant: str | None = None  # set when this row's numbers were computed differently (e.g. "Chu et al. 2024")
    note: str = ""


class PublishedTable(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: Source
    task: str  # harness task name: mesc, emotyda-esc, esconv, esc-eval, sage
    split: str = "test"
    n: int | None = None  # evaluated samples / dialogues, where the paper says
    columns: list[PublishedColumn]
    rows: list[PublishedRow]
    notes: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> "PublishedTable":
        keys = [c.key for c in self.columns]
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate column keys: {sorted(k for k in set(keys) if keys.count(k) > 1)}")
        for row in self.rows:
            unknown = set(row.values) - set(keys)
            if unknown:
                raise ValueError(f"row '{row.model}' has values for unknown columns {sorted(unknown)}")
        return self

    def column(self, key: str) -> PublishedColumn:
        return next(c for c in self.columns if c.key == key)


def load(path: str | Path) -> PublishedTable:
    return store.read_model(Path(path), PublishedTable,
                            "no such published-numbers file; give a JSON file in the PublishedTable format (baselines/published/__init__.py).",
                            "not a valid published-numbers file", "; fix it against the PublishedTable schema in baselines/published/__init__.py")


def load_all(folder: str | Path | None = None) -> list[tuple[str, PublishedTable]]:
    """(file stem, table) for every *.json in `folder` (default: the files shipped here), sorted by name."""
    root = Path(folder) if folder else FOLDER
    if not root.is_dir():
        raise HarnessError(f"{root}: no such folder of published numbers; give a folder of PublishedTable JSON files.")
    return [(p.stem, load(p)) for p in sorted(root.glob("*.json"))]


def schema() -> None:
    print(json.dumps(PublishedTable.model_json_schema(), indent=2))
