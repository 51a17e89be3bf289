"""EPITOME data (Sharma et al. 2020): the three CSVs, verified by sha256, and the project's fixed split.

The files are read from `harness.paths.data_root()` (`--data-dir`, else `$ESC_HARNESS_DATA`, else the per-user
cache) under `epitome/`, exactly as the task datasets are. Each row is a (seeker post, response) pair with the
level 0/1/2 of one communication mechanism; the three files hold the same pairs in the same order.

The split (`split.json` beside this file, ids only) is fixed and published: pairs are keyed `sp_id/rp_id`, all
rows of a key (the files repeat 60 pairs, 10 of them with differing levels) fall in one split, and the keys are
stratified by their joint (ER, IP, EX) level, so every mechanism's level distribution is kept in every split.
`make_split` rebuilds it from the data and the recorded seed (`python -m baselines.epitome.data --write-split`).
"""
from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from harness import paths
from harness.contract import DataFile, Dataset
from harness.datafiles import fetch as _fetch_files
from harness.datafiles import sha256_of
from harness.errors import DataError, HarnessError

MECHANISMS = ("ER", "IP", "EX")
MECHANISM_NAMES = {"ER": "emotional reactions", "IP": "interpretations", "EX": "explorations"}
LEVELS = (0, 1, 2)
SOURCE_COMMIT = "0e11f98901527550885dbf253bd2af92dbcec43b"
_RAW = f"https://raw.githubusercontent.com/behavioral-data/Empathy-Mental-Health/{SOURCE_COMMIT}/dataset/"
FILES = {
    "ER": DataFile("emotional-reactions-reddit.csv", _RAW + "emotional-reactions-reddit.csv", "225b28ffdc257f8a997d557eb937e78b68235e6203c87c7e2203d00fef8545cc"),
    "IP": DataFile("interpretations-reddit.csv", _RAW + "interpretations-reddit.csv", "2cedbe4252c919d22a6f46685afa16d3192a91e3306c2d4a386be12a30ad3f29"),
    "EX": DataFile("explorations-reddit.csv", _RAW + "explorations-reddit.csv", "9efa1af8e0537c16894379598f2076cb380ae18aacd9a8d26ebd381f5b7f9645"),
}
DATASET = Dataset(
    folder="epitome",
    files=tuple(FILES[m] for m in MECHANISMS),
    source=f"github.com/behavioral-data/Empathy-Mental-Health @ {SOURCE_COMMIT[:7]}, dataset/*-reddit.csv; Althoff academic license",
)
ROWS_PER_FILE = 3084
COLUMNS = ["sp_id", "rp_id", "seeker_post", "response_post", "level", "rationales"]
SPLITS = ("train", "dev", "test")
SPLIT_FILE = Path(__file__).with_name("split.json")
SPLIT_SEED = 2020
SPLIT_PROPORTIONS = {"train": 0.7, "dev": 0.1, "test": 0.2}


@dataclass(frozen=True)
class Example:
    key: str  # "sp_id/rp_id" (not unique: a few pairs are repeated in the files)
    seeker_post: str
    response_post: str
    level: int
    rationales: tuple[str, ...]  # substrings of the response that show the mechanism


def _how_to_get() -> str:
    return (
        f"get it with `harness epitome fetch`, or point --data-dir / $ESC_HARNESS_DATA at a folder holding "
        f"epitome/ ({DATASET.source})"
    )


def data_dir(root: str | Path | None = None, verify: bool = True) -> Path:
    """The `epitome/` folder under the data root, after checking each CSV's sha256."""
    folder = paths.data_root(root) / DATASET.folder
    if verify:
        for f in DATASET.files:
            path = folder / f.name
            if not path.is_file():
                raise DataError(f"{path}: missing EPITOME file; {_how_to_get()}.")
            actual = sha256_of(path)
            if actual != f.sha256:
                raise DataError(
                    f"{path}: content differs from the published file (sha256 {actual[:12]}..., expected {f.sha256[:12]}...); "
                    f"re-fetch it with `harness epitome fetch --force`. The classifiers' split and reports hold only for the published files."
                )
    return folder


def fetch(root: str | Path | None = None, force: bool = False) -> list[Path]:
    """Download the three CSVs from the source repository at the pinned commit, verifying sha256."""
    return _fetch_files(DATASET, paths.data_root(root), force=force)


def load(mechanism: str, root: str | Path | None = None) -> list[Example]:
    """All rows of one mechanism's CSV, in file order."""
    mechanism = _check_mechanism(mechanism)
    path = data_dir(root) / FILES[mechanism].name
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames != COLUMNS:
            raise DataError(f"{path}: columns {reader.fieldnames}, expected {COLUMNS}.")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                level = int(row["level"])
            except ValueError:
                raise DataError(f"{path}:{line}: level {row['level']!r} is not 0, 1 or 2.") from None
            if level not in LEVELS:
                raise DataError(f"{path}:{line}: level {level} is not 0, 1 or 2.")
            rationales = tuple(r for r in row["rationales"].split("|") if r.strip())
            rows.append(Example(f"{row['sp_id']}/{row['rp_id']}", row["seeker_post"], row["response_post"], level, rationales))
    if len(rows) != ROWS_PER_FILE:
        raise DataError(f"{path}: {len(rows)} rows, expected {ROWS_PER_FILE}.")
    return rows


def _check_mechanism(mechanism: str) -> str:
    m = mechanism.upper()
    if m not in MECHANISMS:
        raise HarnessError(f"unknown EPITOME mechanism '{mechanism}'; one of {', '.join(MECHANISMS)}.")
    return m


# --------------------------------------------------------------------------- the split


def make_split(by_mechanism: dict[str, Sequence[Example]], seed: int = SPLIT_SEED, proportions: dict[str, float] = SPLIT_PROPORTIONS) -> dict[str, list[str]]:
    """Keys per split, stratified by the joint (ER, IP, EX) level of each key's first row.

    Keys are grouped by stratum (strata in sorted order), shuffled within it with one seeded generator, laid end
    to end, and dealt out by a fixed cycle of 10 slots (7 train, 1 dev, 2 test, in a seeded order): every
    stratum, and so every mechanism's level distribution, is split in the proportions up to one key per
    stratum, and rare strata land in different splits.
    """
    keys: list[str] = []
    first: dict[str, list[int]] = {}
    for mechanism in MECHANISMS:
        for ex in by_mechanism[mechanism]:
            if ex.key not in first:
                first[ex.key] = []
                keys.append(ex.key)
    for mechanism in MECHANISMS:
        seen: set[str] = set()
        for ex in by_mechanism[mechanism]:
            if ex.key not in seen:
                seen.add(ex.key)
                first[ex.key].append(ex.level)
    rng = random.Random(seed)
    strata: dict[tuple[int, ...], list[str]] = {}
    for key in keys:
        strata.setdefault(tuple(first[key]), []).append(key)
    ordered: list[str] = []
    for stratum in sorted(strata):
        members = sorted(strata[stratum])
        rng.shuffle(members)
        ordered.extend(members)
    slots = [name for name in SPLITS for _ in range(round(proportions[name] * 10))]
    if len(slots) != 10:
        raise HarnessError(f"split proportions {proportions} must be multiples of 0.1 summing to 1.")
    rng.shuffle(slots)
    split: dict[str, list[str]] = {name: [] for name in SPLITS}
    for i, key in enumerate(ordered):
        split[slots[i % 10]].append(key)
    return {name: sorted(split[name]) for name in SPLITS}


def write_split(root: str | Path | None = None, path: Path = SPLIT_FILE) -> dict:
    data = {m: load(m, root) for m in MECHANISMS}
    split = make_split(data)
    rows = {name: {m: sum(ex.key in set(split[name]) for ex in data[m]) for m in MECHANISMS} for name in SPLITS}
    doc = {
        "description": "Fixed train/dev/test split of EPITOME (Sharma et al. 2020) for the harness's classifiers: "
        "keys sp_id/rp_id, stratified by the joint (ER, IP, EX) level; built by baselines.epitome.data.make_split.",
        "seed": SPLIT_SEED,
        "proportions": SPLIT_PROPORTIONS,
        "source": {f.name: f.sha256 for f in DATASET.files},
        "keys": {name: len(split[name]) for name in SPLITS},
        "rows": {name: rows[name]["ER"] for name in SPLITS},
        **split,
    }
    path.write_text(json.dumps(doc, indent=0) + "\n")
    return doc


def load_split(path: Path = SPLIT_FILE) -> dict[str, list[str]]:
    if not path.is_file():
        raise HarnessError(f"{path}: the EPITOME split file is missing from the installation (reinstall the package).")
    doc = json.loads(path.read_text())
    return {name: list(doc[name]) for name in SPLITS}


def split_examples(examples: Iterable[Example], split: dict[str, list[str]] | None = None) -> dict[str, list[Example]]:
    """Rows of one mechanism per split (file order kept). Every key must be in exactly one split."""
    split = split or load_split()
    where = {key: name for name in SPLITS for key in split[name]}
    out: dict[str, list[Example]] = {name: [] for name in SPLITS}
    missing = set()
    for ex in examples:
        if ex.key not in where:
            missing.add(ex.key)
            continue
        out[where[ex.key]].append(ex)
    if missing:
        raise DataError(f"{len(missing)} EPITOME pairs (e.g. {sorted(missing)[0]}) are in no split of {SPLIT_FILE.name}; the data is not the published one.")
    return out


def load_splits(mechanism: str, root: str | Path | None = None) -> dict[str, list[Example]]:
    return split_examples(load(mechanism, root))


if __name__ == "__main__":  # regenerate split.json (it is committed; this only documents how it was made)
    import sys

    if "--write-split" in sys.argv:
        doc = write_split()
        print({k: doc[k] for k in ("seed", "keys", "rows")})
