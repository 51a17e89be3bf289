"""Task plugins: one module per benchmark, registered under the `esc_harness.tasks` entry point."""
