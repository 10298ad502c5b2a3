"""Shared fixtures: tiny models built in the test, never downloaded."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

# PATCHFIELD_TEST_THREADS=1 when several test processes share the cores.
torch.set_num_threads(int(os.environ.get("PATCHFIELD_TEST_THREADS", "2")))


@contextmanager
def single_thread() -> Iterator[None]:
    """One intra-op thread inside the block: on the 2 shared cores, 2 threads per process are many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    """:func:`single_thread` for a whole test."""
    with single_thread():
        yield


def load_gpu_check(monkeypatch):
    """``benchmarks/gpu_check.py`` as a module (registered in ``sys.modules`` for the test's duration)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def tiny_vit(**overrides):
    """A 2-layer, 2-head timm ViT on 32x32 images with 8x8 patches (a 4x4 grid)."""
    from timm.models.vision_transformer import VisionTransformer

    kwargs = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=5)
    kwargs.update(overrides)
    torch.manual_seed(0)
    return VisionTransformer(**kwargs).eval()


def tiny_deit():
    from timm.models.deit import VisionTransformerDistilled

    torch.manual_seed(0)
    return VisionTransformerDistilled(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=5
    ).eval()


def tiny_hf_vit(attn_implementation: str = "sdpa"):
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        image_size=32, patch_size=8, num_labels=5, layer_norm_eps=1e-6,
    )
    torch.manual_seed(0)
    return ViTForImageClassification._from_config(config, attn_implementation=attn_implementation).eval()


@pytest.fixture
def images():
    torch.manual_seed(1)
    return torch.randn(3, 3, 32, 32)
