"""SAGE's leaderboard numbers: mean final emotion, successes (final >= 100), failures (final < 10)."""
from __future__ import annotations

from harness.metrics.outcome import OutcomeCount, OutcomeMean

SAGE_SCORE = OutcomeMean("sage-score", lambda o: o.get("final_emotion"), "SAGE: mean final emotion of the sentient agent (0-100)",
                         order=500)
SAGE_SUCCESS = OutcomeCount("sage-success", lambda o: o.get("final_emotion", 0) >= 100, "SAGE: dialogues ending at emotion 100 (count)",
                            decimals=0, order=510)
SAGE_FAILURE = OutcomeCount("sage-failure", lambda o: o.get("final_emotion", 100) < 10, "SAGE: dialogues ending below emotion 10 (count)",
                            higher_is_better=False, decimals=0, order=520)
