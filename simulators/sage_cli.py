"""`harness sage`: the SAGE sentient-agent benchmark's own commands."""
from __future__ import annotations

import click


@click.group()
def sage() -> None:
    """SAGE sentient-agent benchmark: rescore published result files."""
