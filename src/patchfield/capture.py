"""Capture every layer's and head's attention from timm, Hugging Face, torchvision and open_clip ViTs.

Fused attention kernels (``F.scaled_dot_product_attention``) never materialise the attention
matrix, so capture switches the chosen layers to their explicit path for one forward pass
and reads the softmax output there; every setting and hook is restored afterwards, also
when the forward raises. Layers not asked for keep their fused kernel.

Captured weights are always the softmax before attention dropout, so rows sum to 1 also in
training mode: timm's are read at the input of ``attn_drop``; Hugging Face attention modules
run their captured pass with attention dropout off (the modules in eval mode; the rest of the
model keeps its mode). torchvision and open_clip ViTs (``nn.MultiheadAttention``) and a user's own ViT
(:mod:`patchfield.families`) are read through their :class:`~patchfield.families.ViTFamily`: the
``nn.MultiheadAttention`` modules are asked for ``need_weights=True, average_attn_weights=False`` in the
captured pass, in eval mode (no attention dropout), and their caller gets the output it asked for.

Layer indices are the model's: ``0`` is its first attention layer and a negative index counts
from its last (``-1`` is layer ``L - 1`` of an ``L``-layer model), in ``layers=`` and in
:meth:`AttentionMaps.layer` alike.

Patched models whose forward needs arguments (an AWD-ViT's ``field_mask``/``dropped``) get them
through ``forward_kwargs``; capture refuses such a model without them rather than capture a
forward the model never runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .errors import UsageError
from .families import ViTFamily
from .grid import Grid
from .introspect import (
    find_attention_modules,
    model_family,
    model_grid,
    required_forward_kwargs,
    transformer_blocks,
    unwrap,
)
from .uncertainty import UncertaintyAccumulator

__all__ = [
    "AttentionMaps",
    "BlockNorms",
    "UncertaintyCapture",
    "attention_hooks",
    "block_output_norms",
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
        return model_grid(self.model, (int(images.shape[-2]), int(images.shape[-1])))

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

    def forward(self, images: torch.Tensor, forward_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
        raise NotImplementedError


class _TimmAdapter(_Adapter):
    family = "timm"

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

    def forward(self, images: torch.Tensor, forward_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
        _check_forward_kwargs(self.model, forward_kwargs)
        try:
            return self.model(images, **(forward_kwargs or {}))
        except AssertionError as e:
            raise ValueError(
                f"{type(self.model).__name__} refused images of size {tuple(images.shape[-2:])}: {e}. "
                "Build the model for that size (load_model(name, img_size=S)) or with dynamic_img_size=True."
            ) from e


class _HFAdapter(_Adapter):
    family = "huggingface"

    @contextmanager
    def hooked(self, indices: Sequence[int], callback: LayerCallback) -> Iterator[None]:
        config = self.model.config
        saved = getattr(config, "_attn_implementation", None)
        # attention dropout off in the captured modules (their own flag, read by the functional
        # dropout of transformers 5, and their dropout submodule in older versions), so the weights
        # returned are the softmax itself, rows summing to 1, also in training mode
        modes = [(m, m.training) for i in indices for m in self.modules[i].modules()]
        handles = []
        try:
            _set_hf_attn_implementation(self.model, "eager")
            for module, _ in modes:
                module.training = False
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
            for module, mode in modes:
                module.training = mode
            if saved is not None:
                _set_hf_attn_implementation(self.model, saved)

    def forward(self, images: torch.Tensor, forward_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
        _check_forward_kwargs(self.model, forward_kwargs)
        size = self.model.config.image_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        # transformers < 5 returns weights only when asked; 5.x eager always returns them and
        # asking would install its own output-recording hooks on the model.
        kwargs = {} if _TRANSFORMERS_MAJOR >= 5 else {"output_attentions": True}
        takes = inspect.signature(self.model.forward).parameters
        if tuple(images.shape[-2:]) != size and "interpolate_pos_encoding" in takes:
            kwargs["interpolate_pos_encoding"] = True  # Dinov2 always interpolates and takes no such argument
        if getattr(self.model.config, "mask_ratio", None) is not None and "noise" in takes:
            kwargs["noise"] = self._mae_noise(images)
        kwargs.update(forward_kwargs or {})
        out = self.model(pixel_values=images, **kwargs)
        logits = getattr(out, "logits", None)
        return logits if logits is not None else out.last_hidden_state

    def _mae_noise(self, images: torch.Tensor) -> torch.Tensor:
        """ViTMAE's ``noise``: increasing, so its shuffle keeps the patches in grid order; ``mask_ratio`` must be 0."""
        ratio = float(self.model.config.mask_ratio)
        if ratio > 0:
            raise UsageError(
                f"{type(self.model).__name__} has mask_ratio {ratio}: it drops that share of the patches at random, so "
                "its attention is over no fixed grid; set model.config.mask_ratio = 0.0 to capture all patches"
            )
        n = self.grid(images).n
        return torch.arange(n, device=images.device, dtype=torch.float32).expand(images.shape[0], n)


class _FamilyAdapter(_Adapter):
    """A model read through its :class:`~patchfield.families.ViTFamily` (torchvision, open_clip, registered)."""

    def __init__(self, model: nn.Module, modules: list[nn.Module], family: ViTFamily) -> None:
        super().__init__(model, modules)
        self.spec = family
        self.family = family.name

    def grid(self, images: torch.Tensor) -> Grid:
        return model_grid(self.model, (int(images.shape[-2]), int(images.shape[-1])))

    def num_prefix_tokens(self, tokens: int, grid: Grid) -> int:
        prefix = super().num_prefix_tokens(tokens, grid)
        declared = int(self.spec.num_prefix_tokens(unwrap(self.model)))
        if declared != prefix:
            raise RuntimeError(
                f"{type(self.model).__name__}: attention has {tokens} tokens but its {self.family} family declares "
                f"{declared} prefix tokens and a {grid.height}x{grid.width} grid"
            )
        return prefix

    @contextmanager
    def hooked(self, indices: Sequence[int], callback: LayerCallback) -> Iterator[None]:
        # the captured attention modules run in eval mode (the softmax before attention dropout); each call's
        # own arguments are kept so its caller gets back what it asked for
        modes = [(m, m.training) for i in indices for m in self.modules[i].modules()]
        calls: dict[int, list[tuple[tuple, dict]]] = {}
        handles = []
        try:
            for module, _ in modes:
                module.training = False
            for layer in indices:

                def before(mod, args, kwargs, layer=layer):
                    calls.setdefault(layer, []).append((args, kwargs))
                    return self.spec.capture_call(mod, args, kwargs)

                def after(mod, args, kwargs, out, layer=layer):
                    own_args, own_kwargs = calls[layer].pop()
                    callback(layer, self.spec.attention(mod, args, kwargs, out))
                    return self.spec.caller_output(mod, own_args, own_kwargs, out)

                module = self.modules[layer]
                handles.append(module.register_forward_pre_hook(before, with_kwargs=True))
                handles.append(module.register_forward_hook(after, with_kwargs=True))
            yield
        finally:
            for h in handles:
                h.remove()
            for module, mode in modes:
                module.training = mode

    def forward(self, images: torch.Tensor, forward_kwargs: dict[str, Any] | None = None) -> torch.Tensor:
        _check_forward_kwargs(self.model, forward_kwargs)
        return self.spec.forward(unwrap(self.model), images, **(forward_kwargs or {}))


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


def _adapter(model: nn.Module) -> _Adapter:
    family, modules = find_attention_modules(model)
    if family == "timm":
        return _TimmAdapter(model, modules)
    if family == "huggingface":
        return _HFAdapter(model, modules)
    return _FamilyAdapter(model, modules, model_family(model))


def resolve_layer(index: int, count: int) -> int:
    """The model layer index of ``index`` in a model of ``count`` attention layers (negative: from its last).

    Raises:
        ValueError: ``index`` is outside ``[-count, count)``.
    """
    i = int(index)
    if not -count <= i < count:
        raise ValueError(f"layer {index} is out of range for a model with {count} attention layers")
    return i % count


def _layer_indices(layers: Sequence[int] | None, count: int) -> list[int]:
    if layers is None:
        return list(range(count))
    out = [resolve_layer(layer, count) for layer in layers]
    if len(set(out)) != len(out):
        raise ValueError(f"layers must not repeat, got {list(layers)}")
    return sorted(out)


def _check_forward_kwargs(model: nn.Module, forward_kwargs: dict[str, Any] | None) -> None:
    missing = [k for k in required_forward_kwargs(model) if k not in (forward_kwargs or {})]
    if missing:
        raise ValueError(
            f"{type(model).__name__} attends only where its forward arguments {missing} say; pass them, e.g. "
            "forward_kwargs={'field_mask': field.mask(), 'dropped': field.dropped} (or {'field_mask': None} "
            "for global attention), so capture sees the forward the model runs"
        )


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
    num_layers: int
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
        model: any ViT :func:`capture_attention` reads.
        callback: receives the layer index and the softmax weights (before attention dropout).
        layers: model layer indices to report (negative counts from the model's last layer); all by default.
    """
    adapter = _adapter(model)
    indices = _layer_indices(layers, len(adapter.modules))
    with adapter.hooked(indices, callback):
        yield adapter


def _run(model, images, layers, forward_kwargs, on_layer: Callable[[int, torch.Tensor, _Session], None]):
    _check_images(images)
    adapter = _adapter(model)
    count = len(adapter.modules)
    session = _Session(type(model).__name__, _layer_indices(layers, count), count)
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
            logits = adapter.forward(images, forward_kwargs)
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
        layers: model layer indices of the captured layers.
        logits: the model's output for the same forward pass.
        num_layers: the model's number of attention layers (``None``: taken as one past the last
            captured layer).
    """

    attn: torch.Tensor
    grid: Grid
    num_prefix_tokens: int
    layers: tuple[int, ...]
    logits: torch.Tensor | None = None
    num_layers: int | None = None

    def patch_block(self, renormalize: bool = False) -> torch.Tensor:
        """``A[..., P:, P:]``, ``[B, L, k, N, N]``; optionally rows rescaled to sum to 1."""
        p = self.num_prefix_tokens
        block = self.attn[..., p:, p:]
        if renormalize:
            block = block / block.sum(-1, keepdim=True).clamp_min(torch.finfo(block.dtype).tiny)
        return block

    def layer(self, index: int) -> torch.Tensor:
        """Attention ``[B, k, T, T]`` of model layer ``index`` (negative counts from the model's last layer).

        Raises:
            KeyError: that layer was not captured (the message names the model layer).
        """
        count = self.num_layers if self.num_layers is not None else (self.layers[-1] + 1 if self.layers else 0)
        asked = int(index)
        layer = asked % count if count and -count <= asked < 0 else asked
        if layer not in self.layers:
            what = f"layer {asked} (the model's layer {layer} of {count})" if asked < 0 else f"layer {asked}"
            raise KeyError(f"{what} was not captured; captured layers: {list(self.layers)}")
        return self.attn[:, self.layers.index(layer)]

    def __getitem__(self, name: str) -> torch.Tensor:
        """TransformerLens-style access: ``maps["blocks.3.attn"]`` → ``[B, k, T, T]``."""
        parts = name.split(".")
        if len(parts) == 3 and parts[0] == "blocks" and parts[2] == "attn":
            return self.layer(int(parts[1]))
        raise KeyError(f"unknown name {name!r}; use 'blocks.<layer>.attn'")

    @property
    def num_heads(self) -> int:
        return self.attn.shape[2]

    def _repr_html_(self) -> str:
        """Jupyter: shape, layers and one attention thumbnail."""
        from .display import attention_html

        return attention_html(self)


def capture_attention(
    model: nn.Module,
    images: torch.Tensor,
    layers: Sequence[int] | None = None,
    *,
    forward_kwargs: dict[str, Any] | None = None,
) -> AttentionMaps:
    """Run ``model`` on a batch and return every chosen layer's and head's attention.

    Args:
        model: a timm VisionTransformer-family model (ViT, DeiT, register tokens, any image
            and patch size, EVA, BEiT), a Hugging Face ViT (ViT, DINOv2, CLIP and SigLIP towers, DeiT,
            BEiT, ViTMAE), a torchvision or open_clip ViT, or a registered
            :class:`~patchfield.families.ViTFamily` (docs/families.md).
        images: ``[B, C, H, W]``, normalised as the model expects.
        layers: model layer indices to keep (negative counts from the model's last layer); all by default.
        forward_kwargs: keyword arguments of the model's forward, e.g. an AWD-ViT's
            ``{"field_mask": field.mask(), "dropped": field.dropped}``.

    Returns:
        :class:`AttentionMaps` with ``attn`` ``[B, L, k, T, T]``: the softmax before attention
        dropout (rows sum to 1 in training mode too).

    Raises:
        TypeError: the model holds no attention this library can read.
        ValueError: a patched model that needs forward arguments (AWD-ViT) did not get them.
        RuntimeError: a chosen layer was not called during the forward.
    """
    store: dict[int, torch.Tensor] = {}

    def keep(layer: int, attn: torch.Tensor, _s: _Session) -> None:
        store[layer] = attn.detach()

    logits, s = _run(model, images, layers, forward_kwargs, keep)
    attn = torch.stack([store[i] for i in s.indices], dim=1)
    return AttentionMaps(attn, s.grid, s.num_prefix_tokens, tuple(s.indices), logits.detach(), s.num_layers)


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
    forward_kwargs: dict[str, Any] | None = None,
) -> UncertaintyCapture:
    """Streaming capture: compute ``U`` layer by layer without holding ``[B, L, k, T, T]``.

    Memory is that of one layer's attention plus four float32 ``[B, k, N, N]`` tensors (the
    first layer's map, Welford's mean and squared deviations, one for the update), so large
    images and batches fit; ``U`` still meets docs/spec.md §2's bound (see :mod:`patchfield.uncertainty`).
    Same arguments as :func:`capture_attention`.
    """
    acc = UncertaintyAccumulator(renormalize=renormalize)

    def update(_layer: int, attn: torch.Tensor, s: _Session) -> None:
        p = s.num_prefix_tokens
        acc.update(attn[..., p:, p:])

    logits, s = _run(model, images, layers, forward_kwargs, update)
    stats = acc.finish()
    return UncertaintyCapture(
        U=stats.U,
        mean_attention=stats.mean,
        layer_variance=stats.layer_variance,
        grid=s.grid,
        num_prefix_tokens=s.num_prefix_tokens,
        layers=tuple(s.indices),
        logits=logits.detach(),
    )


class BlockNorms:
    """L2 norms of every token at every block output, collected during forwards (see :func:`block_output_norms`)."""

    def __init__(self, count: int) -> None:
        self._norms: list[torch.Tensor | None] = [None] * count

    def record(self, index: int, out) -> None:
        hidden = out[0] if isinstance(out, (tuple, list)) else out
        if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3:
            raise RuntimeError(f"block {index} returned {type(hidden).__name__}, expected tokens [B, T, D]")
        self._norms[index] = torch.linalg.vector_norm(hidden.detach().float(), dim=-1)

    def result(self) -> torch.Tensor:
        """``[B, blocks, T]`` float32 norms of the last forward."""
        missing = [i for i, n in enumerate(self._norms) if n is None]
        if missing:
            raise RuntimeError(f"blocks {missing} were not called in the forward pass")
        return torch.stack(self._norms, dim=1)


@contextmanager
def block_output_norms(model: nn.Module) -> Iterator[BlockNorms]:
    """Record the token norms at every block output during forwards inside the block (hooks removed on exit).

    >>> from timm.models.vision_transformer import VisionTransformer
    >>> m = VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=4, num_heads=2).eval()
    >>> with block_output_norms(m) as norms:
    ...     _ = m(torch.zeros(2, 3, 32, 32))
    >>> tuple(norms.result().shape)  # [B, blocks, T]: 1 class token + 16 patches
    (2, 4, 17)
    """
    blocks = transformer_blocks(model)
    norms = BlockNorms(len(blocks))
    handles = [b.register_forward_hook(lambda _m, _i, out, i=i: norms.record(i, out)) for i, b in enumerate(blocks)]
    try:
        yield norms
    finally:
        for h in handles:
            h.remove()
