"""Training options beyond the paper's recipe."""

from __future__ import annotations

import pytest
import torch

from patchfield.training import TrainConfig, build_optimizer


def test_optimizer_choice():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    sgd = build_optimizer(model, TrainConfig(model="m", weight_decay=0.1))
    adamw = build_optimizer(model, TrainConfig(model="m", optimizer="adamw", lr=1e-3, weight_decay=0.1))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.9
    assert isinstance(adamw, torch.optim.AdamW)
    # weight decay on the matrix only, not on biases or norms
    assert [g["weight_decay"] for g in adamw.param_groups] == [0.1, 0.0]
    assert [len(g["params"]) for g in adamw.param_groups] == [1, 3]
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(model="m", optimizer="lamb")
