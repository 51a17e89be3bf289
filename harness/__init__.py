"""ESC harness: evaluate emotional-support conversation models on every benchmark, one way.

From Python: `from harness import evaluate` (one task) or `evaluate_suite` (several); see harness/api.py.
"""
__version__ = "0.1.0"

__all__ = ["evaluate", "evaluate_suite", "__version__"]


def __getattr__(name: str):
    # the API is imported on first use: `import harness` (the CLI's first step) stays light
    if name in ("evaluate", "evaluate_suite", "Evaluation"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
