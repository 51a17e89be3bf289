"""Headless Chromium for the tests of the HTML pages (the leaderboard page, the run viewer)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def chromium(page: Path) -> tuple[str, str]:
    """(the DOM after the page's scripts ran, Chromium's log: console messages show as ':CONSOLE' lines)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (install.sh installs it)")
    proc = subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0",
                           "--virtual-time-budget=5000", "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr
