"""Metrics: each registered by name (entry points `esc_harness.metrics`); see `harness list metrics`."""
