"""Where the harness keeps things on disk. No machine-specific path is hard-coded."""
from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "ESC_HARNESS_DATA"
HOME_ENV = "ESC_HARNESS_HOME"
CACHE_ENV = "ESC_HARNESS_CACHE"


def home() -> Path:
    """Per-user folder for fetched data, NLTK data and the response cache."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "esc-harness"


def data_root(explicit: str | Path | None = None) -> Path:
    """--data-dir, else $ESC_HARNESS_DATA, else the per-user cache."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return home() / "data"


def cache_path(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return home() / "responses.sqlite"


def nltk_data_dir() -> Path:
    return home() / "nltk_data"
