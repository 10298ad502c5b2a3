"""Metrics beyond the paper: faithfulness of patch orderings (deletion/insertion) and attention rollout."""

from .faithfulness import (
    METHODS,
    FaithfulnessResult,
    auc,
    baseline_images,
    deletion_insertion,
    dip_ordering,
    evaluate_faithfulness,
    order_by_scores,
    random_ordering,
)
from .rollout import attention_rollout, rollout_scores

__all__ = [
    "METHODS",
    "FaithfulnessResult",
    "attention_rollout",
    "auc",
    "baseline_images",
    "deletion_insertion",
    "dip_ordering",
    "evaluate_faithfulness",
    "order_by_scores",
    "random_ordering",
    "rollout_scores",
]
