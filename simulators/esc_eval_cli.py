"""`harness esc-eval`: the ESC-Eval role-play benchmark's own commands."""
from __future__ import annotations

import click


@click.group("esc-eval")
def esc_eval() -> None:
    """ESC-Eval role-play benchmark: rescore transcripts with a chosen judge."""
