"""Reports built from runs: leaderboards, figures, human A/B rating sheets."""
