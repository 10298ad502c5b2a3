"""Training and evaluation: ViT, AWD-ViT, AWD-ViT + DIP and WinfT (docs/spec.md §7 to §9).

The pipeline on the command line (``torchrun --nproc_per_node K -m patchfield train ...`` for K
processes; nccl on GPUs, gloo on CPUs)::

    patchfield train --model vit_base_patch16_224 --weights in21k.safetensors --data imagefolder \\
        --data-root /data/imagenet --out runs/vit
    patchfield groundtruth --model vit_base_patch16_224 --weights runs/vit/model.safetensors \\
        --data imagefolder --data-root /data/imagenet --split train --alpha 0.1 --beta 0.2 --out gt/train
    patchfield train --model vit_base_patch16_224 --weights in21k.safetensors --kind awd-dip \\
        --groundtruth gt/train --data imagefolder --data-root /data/imagenet --out runs/awd_dip
    patchfield evaluate runs/awd_dip --data imagefolder --data-root /data/imagenet --groundtruth gt/val

Kinds (:data:`patchfield.kinds.KINDS`): ``vit``; ``awd`` (attention inside each image's window, docs/spec.md
§7); ``awd-dip`` (inside
``S_p``, and the patches in ``D`` zeroed at every block, §4, §5); ``winft-paper`` and
``winft-restrict`` (window-free attention trained with ``L_total = λ1·L_CE + λ2·L_BCE`` against
the store's ``w_gt``, §8; masked logits become 0 in paper mode, −∞ in restrict mode). The AWD
and WinfT kinds need a ground-truth store of the training images (fields of a well-trained
ViT); the AWD kinds also need one of the evaluated images, WinfT needs none at inference.

Defaults are the paper's ImageNet recipe (:class:`TrainConfig`, docs/spec.md §9): SGD, momentum 0.9,
lr 0.01, 500 linear warm-up steps then a cosine to 0, 15 epochs; the paper's batch of 512 is
``--batch-size × --accum-steps × processes``. On a GPU the forward runs under bf16 autocast.

A run folder holds ``checkpoint.pt`` (resumable, replaced atomically every
``--checkpoint-every`` steps and at the end), ``log.jsonl`` (step, epoch, loss, ce, bce,
accuracy of the training batches, lr, eo, images, images_per_s), and at the end
``model.safetensors`` (the model's state dict alone, timm key layout: ``patchfield.load_model``
reads it) with ``run.json`` (timm name, kind, kwargs, classes, image size, grid, store).
``--resume`` continues exactly: the data order of every epoch is fixed by the seed, every
item's random augmentation is seeded by ``(seed, epoch, index)`` whichever worker renders it,
and the checkpoint holds the model, optimiser, scheduler, step and every process's RNG states,
so a killed and resumed run ends with the parameters of an uninterrupted one.

In Python: ``train(TrainConfig(...))``, ``evaluate(model, loader, kind)`` (top-1, top-5, ``E_O``),
``patchfield.loading.load_run(folder)``.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

# names load with their submodule on first use: the command line's parsers read ``training.config``
# without importing timm (``build``) or the training loop
_EXPORTS = {
    "build_model": "build",
    "export_run": "checkpoint",
    "TrainConfig": "config",
    "EpochBatchSampler": "data", "SeededItems": "data", "make_loader": "data",
    "evaluate": "evaluation", "evaluate_run": "evaluation",
    "accumulate_gradients": "loop", "build_optimizer": "loop", "train": "loop",
    "total_loss": "losses",
    "WarmupCosine": "schedule", "build_scheduler": "schedule", "warmup_cosine_lr": "schedule",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .build import build_model
    from .checkpoint import export_run
    from .config import TrainConfig
    from .data import EpochBatchSampler, SeededItems, make_loader
    from .evaluation import evaluate, evaluate_run
    from .loop import accumulate_gradients, build_optimizer, train
    from .losses import total_loss
    from .schedule import WarmupCosine, build_scheduler, warmup_cosine_lr

__all__ = [
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
    "make_loader",
    "total_loss",
    "train",
    "warmup_cosine_lr",
]
