"""Training and evaluation: ViT, AWD-ViT, AWD-ViT + DIP and WinfT (SPEC §7 to §9).

``train(TrainConfig(...))`` runs alone or under ``torchrun``; ``evaluate(model, loader, kind)``
gives top-1, top-5 and ``E_O``; ``load_run(folder)`` rebuilds a trained model.
"""

from .build import build_model, forward_kind, model_grid
from .checkpoint import export_run, load_run, read_run_info
from .config import KINDS, TrainConfig
from .data import EpochBatchSampler, SeededItems, make_loader
from .evaluation import evaluate, evaluate_run
from .loop import accumulate_gradients, build_optimizer, train
from .losses import total_loss
from .schedule import WarmupCosine, build_scheduler, warmup_cosine_lr

__all__ = [
    "KINDS",
    "EpochBatchSampler",
    "SeededItems",
    "TrainConfig",
    "WarmupCosine",
    "accumulate_gradients",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "evaluate_run",
    "export_run",
    "forward_kind",
    "load_run",
    "make_loader",
    "model_grid",
    "read_run_info",
    "total_loss",
    "train",
    "warmup_cosine_lr",
]
