"""Task plugins: one module per benchmark, registered under the `esc_harness.tasks` entry point."""

# The metrics every response-generation task reports by default, so all are evaluated the same way.
RESPONSE_METRICS = ("bleu-1", "bleu-2", "bleu-3", "bleu-4", "rouge-l", "meteor", "dist-1", "dist-2", "dist-3", "dist-1-plain", "dist-2-plain", "dist-3-plain")
# Defaults whose resources a user builds once (`harness epitome train`) or installs as extras: left out
# with a warning when missing, so the main job runs on a fresh install.
OPTIONAL_RESPONSE_METRICS = ("bertscore-f1-minilm", "diff-epitome", "diff-epitome-er", "diff-epitome-ip", "diff-epitome-ex")
