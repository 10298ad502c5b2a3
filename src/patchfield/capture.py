"""Capture every layer's and head's attention from timm and Hugging Face ViTs.

Fused attention kernels (``F.scaled_dot_product_attention``) never materialise the attention
matrix, so capture switches the chosen layers to their explicit path for one forward pass
and reads the softmax output there; every setting and hook is restored afterwards, also
when the forward raises. Layers not asked for keep their fused kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from .grid import Grid
from .uncertainty import UncertaintyAccumulator

__all__ = [
    "AttentionMaps",
    "UncertaintyCapture",
    "attention_hooks",
    "capture_attention",
    "capture_uncertainty",
    "find_attention_modules",
]

LayerCallback = Callable[[int, torch.Tensor], None]


class _Adapter:
    """What capture needs to know about one model family."""

    family = ""

    def __init__(self, model: nn.Module, modules: list[nn.Module]) -> None:
        self.model = model
        self.modules = modules

    def grid(self, images: torch.Tensor) -> Grid:
        raise NotImplementedError

    def num_prefix_tokens(self, tokens: int, grid: Grid) -> int:
        prefix = tokens - grid.n
        if prefix < 0:
            raise RuntimeError(
                f"{type(self.model).__name__}: attention over {tokens} tokens is fewer than the "
                f"{grid.n} patches of a {grid.height}x{grid.width} grid; this model is not supported"
            )
        return prefix

    @contextmanager
    def hooked(self, indices: Sequence[int], callback: LayerCallback) -> Iterator[None]:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class _TimmAdapter(_Adapter):
    family = "timm"

    def grid(self, images: torch.Tensor) -> Grid:
        pe = self.model.patch_embed
        size = (int(images.shape[-2]), int(images.shape[-1]))
        dynamic = getattr(pe, "dynamic_img_size", False) or getattr(pe, "dynamic_img_pad", False)
        if dynamic and hasattr(pe, "dynamic_feat_size"):
            return Grid(*pe.dynamic_feat_size(size))
        ph, pw = pe.patch_size
        return Grid(size[0] // ph, size[1] // pw)

    def num_prefix_tokens(self, tokens: int, grid: Grid) -> int:
        declared = getattr(self.model, "num_prefix_tokens", None)
        prefix = super().num_prefix_tokens(tokens, grid)
        if declared is not None and declared != prefix:
            raise RuntimeError(
                f"{type(self.model).__name__}: attention has {tokens} tokens but the model declares "
                f"{declared} prefix tokens and a {grid.height}x{grid.width} grid"
            )
        return prefix

    @contextmanager
    def hooked(self, indices: Sequence[int], callback: LayerCallback) -> Iterator[None]:
        saved = [(m, m.fused_attn) for m in (self.modules[i] for i in indices)]
        handles = []
        try:
            for layer, (module, _) in zip(indices, saved):
                module.fused_attn = False

                def hook(_mod, inputs, _out, layer=layer):
                    callback(layer, inputs[0])

                handles.append(module.attn_drop.register_forward_hook(hook))
            yield
        finally:
            for h in handles:
                h.remove()
            for module, fused in saved:
                module.fused_attn = fused

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        try:
            return self.model(images)
        except AssertionError as e:
            raise ValueError(
                f"{type(self.model).__name__} refused images of size {tuple(images.shape[-2:])}: {e}. "
                "Build the model for that size (load_model(name, img_size=S)) or with dynamic_img_size=True."
            ) from e


class _HFAdapter(_Adapter):
    family = "huggingface"

    def _patch_size(self) -> tuple[int, int]:
        ps = self.model.config.patch_size
        return (ps, ps) if isinstance(ps, int) else tuple(ps)

    def grid(self, images: torch.Tensor) -> Grid:
        ph, pw = self._patch_size()
        return Grid(int(images.shape[-2]) // ph, int(images.shape[-1]) // pw)

    @contextmanager
    def hooked(self, indices: Sequence[int], callback: LayerCallback) -> Iterator[None]:
        config = self.model.config
        saved = getattr(config, "_attn_implementation", None)
        handles = []
        try:
            _set_hf_attn_implementation(self.model, "eager")
            for layer in indices:

                def hook(_mod, _inputs, out, layer=layer):
                    weights = out[1] if isinstance(out, tuple) and len(out) > 1 else None
                    if not isinstance(weights, torch.Tensor):
                        raise RuntimeError(
                            f"{type(self.model).__name__}: attention layer {layer} returned no weights even "
                            "with eager attention; this transformers version is not supported"
                        )
                    callback(layer, weights)

                handles.append(self.modules[layer].register_forward_hook(hook))
            yield
        finally:
            for h in handles:
                h.remove()
            if saved is not None:
                _set_hf_attn_implementation(self.model, saved)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = self.model.config.image_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        # transformers < 5 returns weights only when asked; 5.x eager always returns them and
        # asking would install its own output-recording hooks on the model.
        kwargs = {} if _TRANSFORMERS_MAJOR >= 5 else {"output_attentions": True}
        if tuple(images.shape[-2:]) != size:
            kwargs["interpolate_pos_encoding"] = True
        out = self.model(pixel_values=images, **kwargs)
        logits = getattr(out, "logits", None)
        return logits if logits is not None else out.last_hidden_state


def _transformers_major() -> int:
    try:
        from importlib.metadata import version

        return int(version("transformers").split(".")[0])
    except Exception:
        return 0


_TRANSFORMERS_MAJOR = _transformers_major()


def _set_hf_attn_implementation(model: nn.Module, name: str) -> None:
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(name)
    else:  # older transformers
        model.config._attn_implementation = name


def _is_hf(model: nn.Module) -> bool:
    return any(c.__module__.startswith("transformers.") for c in type(model).__mro__)


def find_attention_modules(model: nn.Module) -> tuple[str, list[nn.Module]]:
    """Return the model family (``"timm"`` or ``"huggingface"``) and its attention modules in order.

    Raises:
        TypeError: when no attention this library can read is found; the message names the class.
    """
    if _is_hf(model):
        inner = [m for m in model.modules() if type(m).__name__.endswith("SelfAttention")]
        modules = inner or [
            m for m in model.modules() if type(m).__name__.endswith("Attention") and hasattr(m, "config")
        ]
        if modules and hasattr(getattr(model, "config", None), "patch_size"):
            return "huggingface", modules
        raise TypeError(
            f"cannot capture attention from {type(model).__name__}: no ViT-style attention modules found. "
            "Supported Hugging Face models: ViTModel, ViTForImageClassification and kin."
        )
    root = getattr(model, "blocks", model)  # not an attention-pooling head
    modules = [
        m for m in root.modules()
        if hasattr(m, "fused_attn") and isinstance(getattr(m, "attn_drop", None), nn.Module)
    ]
    if modules and hasattr(model, "patch_embed"):
        return "timm", modules
    raise TypeError(
        f"cannot capture attention from {type(model).__name__}: it is neither a timm VisionTransformer-family "
        "model (attention modules with `fused_attn` and `attn_drop`, and a `patch_embed`) nor a Hugging Face ViT"
    )


def _adapter(model: nn.Module) -> _Adapter:
    family, modules = find_attention_modules(model)
    return (_TimmAdapter if family == "timm" else _HFAdapter)(model, modules)


def _layer_indices(layers: Sequence[int] | None, count: int) -> list[int]:
    if layers is None:
        return list(range(count))
    out = []
    for layer in layers:
        i = int(layer)
        if not -count <= i < count:
            raise ValueError(f"layer {layer} is out of range for a model with {count} attention layers")
        out.append(i % count)
    if len(set(out)) != len(out):
        raise ValueError(f"layers must not repeat, got {list(layers)}")
    return sorted(out)


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(
            f"images must be a [B, C, H, W] tensor; got {getattr(images, 'shape', type(images).__name__)}"
            " (add a batch dimension with images[None] for one image)"
        )


@dataclass
class _Session:
    """Bookkeeping shared by both capture paths."""

    model_name: str
    indices: list[int]
    grid: Grid | None = None
    num_prefix_tokens: int | None = None
    seen: int = 0


@contextmanager
def attention_hooks(
    model: nn.Module, callback: LayerCallback, layers: Sequence[int] | None = None
) -> Iterator[_Adapter]:
    """Call ``callback(layer, attn)`` with each chosen layer's attention ``[B, k, T, T]`` during forwards.

    The model's attention settings and hooks are restored on exit, also after an exception.

    Args:
        model: a timm VisionTransformer-family model or a Hugging Face ViT.
        callback: receives the layer index and the softmax weights (before attention dropout).
        layers: indices of the layers to report (negative counts from the end); all by default.
    """
    adapter = _adapter(model)
    indices = _layer_indices(layers, len(adapter.modules))
    with adapter.hooked(indices, callback):
        yield adapter


def _run(model, images, layers, on_layer: Callable[[int, torch.Tensor, _Session], None]):
    _check_images(images)
    adapter = _adapter(model)
    session = _Session(type(model).__name__, _layer_indices(layers, len(adapter.modules)))
    grid = adapter.grid(images)

    def callback(layer: int, attn: torch.Tensor) -> None:
        if attn.dim() != 4 or attn.shape[-1] != attn.shape[-2] or attn.shape[0] != images.shape[0]:
            raise RuntimeError(
                f"{session.model_name}: layer {layer} produced attention of shape {tuple(attn.shape)}, "
                f"expected [B={images.shape[0]}, k, T, T]"
            )
        if session.num_prefix_tokens is None:
            session.num_prefix_tokens = adapter.num_prefix_tokens(attn.shape[-1], grid)
            session.grid = grid
        session.seen += 1
        on_layer(layer, attn, session)

    with adapter.hooked(session.indices, callback):
        with torch.inference_mode(not torch.is_grad_enabled()):
            logits = adapter.forward(images)
    if session.seen != len(session.indices):
        raise RuntimeError(
            f"captured {session.seen} of {len(session.indices)} attention layers from {session.model_name}; "
            "its attention modules were not called in the forward pass (a compiled or scripted model?). "
            "Capture from the plain eager nn.Module."
        )
    return logits, session


@dataclass
class AttentionMaps:
    """Attention of every captured layer and head for a batch of images.

    Attributes:
        attn: ``[B, L, k, T, T]`` softmax weights, ``T = P + N``.
        grid: the patch grid ``(gh, gw)``.
        num_prefix_tokens: ``P``: class, distillation and register tokens.
        layers: indices of the captured layers in the model.
        logits: the model's output for the same forward pass.
    """

    attn: torch.Tensor
    grid: Grid
    num_prefix_tokens: int
    layers: tuple[int, ...]
    logits: torch.Tensor | None = None

    def patch_block(self, renormalize: bool = False) -> torch.Tensor:
        """``A[..., P:, P:]``, ``[B, L, k, N, N]``; optionally rows rescaled to sum to 1."""
        p = self.num_prefix_tokens
        block = self.attn[..., p:, p:]
        if renormalize:
            block = block / block.sum(-1, keepdim=True).clamp_min(torch.finfo(block.dtype).tiny)
        return block

    def layer(self, index: int) -> torch.Tensor:
        """Attention ``[B, k, T, T]`` of model layer ``index`` (negative counts from the end)."""
        if index < 0:
            index = self.layers[-1] + 1 + index if self.layers else index
        if index not in self.layers:
            raise KeyError(f"layer {index} was not captured; captured layers: {list(self.layers)}")
        return self.attn[:, self.layers.index(index)]

    def __getitem__(self, name: str) -> torch.Tensor:
        """TransformerLens-style access: ``maps["blocks.3.attn"]`` → ``[B, k, T, T]``."""
        parts = name.split(".")
        if len(parts) == 3 and parts[0] == "blocks" and parts[2] == "attn":
            return self.layer(int(parts[1]))
        raise KeyError(f"unknown name {name!r}; use 'blocks.<layer>.attn'")

    @property
    def num_heads(self) -> int:
        return self.attn.shape[2]


def capture_attention(
    model: nn.Module, images: torch.Tensor, layers: Sequence[int] | None = None
) -> AttentionMaps:
    """Run ``model`` on a batch and return every chosen layer's and head's attention.

    Args:
        model: a timm VisionTransformer-family model (ViT, DeiT, register tokens, any image
            and patch size) or a Hugging Face ``ViTModel``/``ViTForImageClassification``.
        images: ``[B, C, H, W]``, normalised as the model expects.
        layers: layer indices to keep (negative counts from the end); all by default.

    Returns:
        :class:`AttentionMaps` with ``attn`` ``[B, L, k, T, T]``.

    Raises:
        TypeError: the model holds no attention this library can read.
        RuntimeError: a chosen layer was not called during the forward.
    """
    store: dict[int, torch.Tensor] = {}

    def keep(layer: int, attn: torch.Tensor, _s: _Session) -> None:
        store[layer] = attn.detach()

    logits, s = _run(model, images, layers, keep)
    attn = torch.stack([store[i] for i in s.indices], dim=1)
    return AttentionMaps(attn, s.grid, s.num_prefix_tokens, tuple(s.indices), logits.detach())


@dataclass
class UncertaintyCapture:
    """Result of :func:`capture_uncertainty`.

    Attributes:
        U: uncertainty map ``[B, N, N]``.
        mean_attention: ``E_A`` on the patch block, ``[B, k, N, N]``.
        layer_variance: ``𝒰``, ``[B, k, N, N]``.
        grid, num_prefix_tokens, layers, logits: as in :class:`AttentionMaps`.
    """

    U: torch.Tensor
    mean_attention: torch.Tensor
    layer_variance: torch.Tensor
    grid: Grid
    num_prefix_tokens: int
    layers: tuple[int, ...]
    logits: torch.Tensor


def capture_uncertainty(
    model: nn.Module,
    images: torch.Tensor,
    layers: Sequence[int] | None = None,
    *,
    renormalize: bool = False,
) -> UncertaintyCapture:
    """Streaming capture: compute ``U`` layer by layer without holding ``[B, L, k, T, T]``.

    Memory is that of one layer's attention plus two ``[B, k, N, N]`` accumulators, so large
    images and batches fit. Same arguments as :func:`capture_attention`.
    """
    acc = UncertaintyAccumulator(renormalize=renormalize)

    def update(_layer: int, attn: torch.Tensor, s: _Session) -> None:
        p = s.num_prefix_tokens
        acc.update(attn[..., p:, p:])

    logits, s = _run(model, images, layers, update)
    return UncertaintyCapture(
        U=acc.result(),
        mean_attention=acc.mean,
        layer_variance=acc.layer_variance(),
        grid=s.grid,
        num_prefix_tokens=s.num_prefix_tokens,
        layers=tuple(s.indices),
        logits=logits.detach(),
    )
