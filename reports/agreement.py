"""Inter-rater agreement: the one implementation lives in `harness.agreement` (the engine reports a judge
panel's Krippendorff's alpha in summary.json); this module keeps the reports' import path."""
from harness.agreement import (LEVELS, coincidences, cohen_kappa, krippendorff_alpha, percent_agreement,  # noqa: F401
                               squared_differences)

__all__ = ["LEVELS", "coincidences", "cohen_kappa", "krippendorff_alpha", "percent_agreement", "squared_differences"]
