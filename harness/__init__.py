"""ESC harness: evaluate emotional-support conversation models on every benchmark, one way."""
__version__ = "0.1.0"
