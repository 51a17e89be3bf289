"""`harness ab`: blinded human A/B rating sheets (export, import, LLM judge)."""
from __future__ import annotations

import click


@click.group()
def ab() -> None:
    """Blinded A/B rating sheets for two runs: export, import, judge."""
