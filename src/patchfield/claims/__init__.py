"""The paper's analysis claims (Sec. 4.2, 4.3) on any model and any data set with object masks.

:func:`measure_claims` runs a model and random-weights controls over ``(image, mask)`` pairs
(:mod:`patchfield.data.masks`) and returns a :class:`ClaimsReport` (JSON, Markdown, CSV, figure);
:func:`claim_measures` is the per-image measure of a batch of responsive fields. Every claim gets two verdicts,
against chance (its null) and against random weights, with Holm-adjusted p-values (docs/claims.md).
"""

from .measures import CLAIMS, MEASURES, claim_measures
from .report import ClaimsReport, claims_table
from .run import measure_claims, random_copy

__all__ = ["CLAIMS", "ClaimsReport", "MEASURES", "claim_measures", "claims_table", "measure_claims", "random_copy"]
