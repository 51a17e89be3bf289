"""Simulated seekers and judges used by multi-turn tasks (ESC-Eval, SAGE)."""
