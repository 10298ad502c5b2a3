"""The paper's claims measured at small scale: analysis claims (Sec. 4.2, 4.3) and the table study."""

from .claims import ClaimMeasures, measure_claims, patch_object_mask, summarize

__all__ = ["ClaimMeasures", "measure_claims", "patch_object_mask", "summarize"]
