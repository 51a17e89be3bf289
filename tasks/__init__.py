"""Task plugins: one module per benchmark, registered under the `esc_harness.tasks` entry point."""

# The metrics every response-generation task reports by default, so all are evaluated the same way.
RESPONSE_METRICS = ("bleu-1", "bleu-2", "bleu-3", "bleu-4", "rouge-l", "meteor", "dist-1", "dist-2", "dist-3", "dist-1-plain", "dist-2-plain", "dist-3-plain")
