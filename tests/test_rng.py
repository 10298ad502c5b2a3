"""Library code never leaves the caller's global random generators reseeded."""

from __future__ import annotations

import random

import numpy as np
import torch

from patchfield.training import TrainConfig, train
from patchfield.training.checkpoint import isolated_rng

TINY = {"patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_ratio": 2.0, "img_size": 16}


def _draws() -> tuple[list[float], list[float], float]:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random()


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def test_isolated_rng_restores_on_error():
    _seed_all(5)
    expected = _draws()
    _seed_all(5)
    try:
        with isolated_rng():
            _seed_all(0)
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert _draws() == expected


def test_train_leaves_the_callers_rng_alone(tmp_path, one_thread):
    _seed_all(123)
    expected = _draws()
    _seed_all(123)
    cfg = TrainConfig(model="vit_tiny_patch16_224", model_kwargs=TINY, data_kwargs={"num_images": 16},
                      out=str(tmp_path / "run"), steps=2, batch_size=8, warmup_steps=1, checkpoint_every=2,
                      progress=False)
    assert train(cfg)["step"] == 2
    assert _draws() == expected
