"""Ground truth at scale (docs/spec.md §6): every image's responsive field from a trained ViT, in shards.

``build_groundtruth`` writes a store (resumable, ``torchrun``-ready), ``GroundTruthStore`` reads it,
``WithFields`` hands training the image, label and decoded field.
"""

from .build import build_groundtruth
from .store import GroundTruthStore, StoreMismatchError, read_shard
from .wrapper import WithFields

__all__ = [
    "GroundTruthStore",
    "StoreMismatchError",
    "WithFields",
    "build_groundtruth",
    "read_shard",
]
