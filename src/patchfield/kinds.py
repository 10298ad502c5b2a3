"""The model kinds a run trains: plain ViT, AWD-ViT, AWD-ViT + DIP and WinfT in its two modes.

A :class:`Kind` (a layer above :mod:`patchfield.models`, whose patches it applies) is everything the
pipelines need to know about one kind: how its model is patched,
what its forward takes, how its interactions (``E_O``) are counted and what it needs from a
ground-truth store. :data:`KINDS` is the one table of them; a kind's :attr:`Kind.name` is the
``kind`` of ``run.json`` and of ``--kind``, and :func:`kind_by_name` turns it back into the object.
Adding a kind adds a row to :data:`KINDS` (and its expected properties to ``tests/test_kinds.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import torch
from torch import nn

from .interactions import count_interactions
from .introspect import model_grid

__all__ = ["AWD", "AWD_DIP", "KINDS", "KIND_NAMES", "VIT", "WINFT_PAPER", "WINFT_RESTRICT", "Kind", "as_kind",
           "kind_by_name"]


@dataclass(frozen=True)
class Kind:
    """One model kind.

    Attributes:
        name: its name in ``run.json``, ``--kind`` and the study's tables (``"awd-dip"``).
        label: how a reader calls it (``"AWD-ViT + DIP"``).
        patch: the patch of :mod:`patchfield.models` it applies (``"awd"``, ``"winft"``), ``None`` for the
            plain ViT; the value :func:`patchfield.models.patched_kind` reports for its model.
        winft_mode: WinfT's mode (``"paper"``, ``"restrict"``), ``None`` for the other kinds.
        attends_fields: its forward takes ``field_mask`` (the fields of each image, from a ground-truth
            store or :func:`patchfield.awd_forward_kwargs`), so evaluating it needs them too.
        drops_patches: its forward also takes ``dropped`` (the patches ``D`` of DIP, docs/spec.md §5).
        dip_fields: its fields are ``S_p`` with ``D`` dropped (the store read with ``dip=True``) rather than
            the windows alone; they are the masks it attends with or, for WinfT, its BCE targets ``w_gt``.
        learns_windows: it predicts its own windows, trained with the window BCE against ``w_gt`` (Eq. 11).
    """

    name: str
    label: str
    patch: Literal["awd", "winft"] | None = None
    winft_mode: str | None = None
    attends_fields: bool = False
    drops_patches: bool = False
    dip_fields: bool = False
    learns_windows: bool = False

    def __post_init__(self) -> None:
        if (self.patch == "winft") != (self.winft_mode is not None):
            raise ValueError(f"kind {self.name!r}: a WinfT kind needs a mode (patchfield.models.MODES), the others "
                             "none")
        if self.attends_fields != (self.patch == "awd") or self.learns_windows != (self.patch == "winft"):
            raise ValueError(f"kind {self.name!r}: AWD kinds attend within fields, WinfT kinds learn windows")
        if self.drops_patches and not (self.attends_fields and self.dip_fields):
            raise ValueError(f"kind {self.name!r}: dropping patches needs the DIP fields it attends within")

    def __str__(self) -> str:
        return self.name

    def __reduce__(self) -> tuple:
        # a kind of the table unpickles (in a worker process, from a queue) as that very object
        if _BY_NAME.get(self.name) == self:
            return kind_by_name, (self.name,)
        return Kind, tuple(getattr(self, f.name) for f in fields(self))

    @property
    def uses_groundtruth(self) -> bool:
        """Training reads a ground-truth store (the AWD masks or WinfT's ``w_gt``); the plain ViT does not."""
        return self.patch is not None

    def apply(self, model: nn.Module) -> nn.Module:
        """Patch a timm ViT into this kind in place (:func:`patchfield.models.apply_awd`,
        :func:`patchfield.models.apply_winft` in its mode, which checks the mode).

        The patches are imported here, on first use: :mod:`patchfield.models` registers its timm names when
        imported (it imports timm), and the kinds are read by command-line parsers that must not.
        """
        from .models import apply_awd, apply_winft

        if self.patch == "awd":
            return apply_awd(model)
        if self.patch == "winft":
            return apply_winft(model, mode=self.winft_mode)
        return model

    def forward(
        self,
        model: nn.Module,
        images: torch.Tensor,
        field_mask: torch.Tensor | None = None,
        dropped: torch.Tensor | None = None,
        window_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Run a model of this kind on a batch: ``(logits, window_logits or None, interactions [B])``.

        AWD kinds attend within ``field_mask`` (``[B, N, N]``); with :attr:`drops_patches` the patches
        in ``dropped`` are zeroed too. WinfT returns its per-layer window logits when ``window_logits``.
        ``interactions`` are the forward's ``E_O`` summands per image (float, on the model's device):
        the plain ViT ``N²``; the AWD kinds the ones of the mask they attend with (the windows' ``O``,
        or ``Σ_p |S_p|`` with DIP, docs/spec.md §3, §5); WinfT the mean over layers of the ones of its ``W``
        (§8). All counted by :func:`patchfield.interactions.count_interactions`.

        Raises:
            ValueError: an AWD kind without ``field_mask``.
        """
        if self.attends_fields:
            if field_mask is None:
                raise ValueError(f"kind {self.name!r} needs the fields of a ground-truth store")
            logits = model(images, field_mask=field_mask, dropped=dropped if self.drops_patches else None)
            return logits, None, count_interactions(field_mask).float()
        if self.patch == "winft":
            if window_logits:
                logits, s, counts = model(images, return_window_logits=True, return_interactions=True)
                return logits, s, counts
            logits, counts = model(images, return_interactions=True)
            return logits, None, counts
        n = model_grid(model).n
        return model(images), None, torch.full((images.shape[0],), float(n * n), device=images.device)


VIT = Kind("vit", "ViT")
AWD = Kind("awd", "AWD-ViT", patch="awd", attends_fields=True)
AWD_DIP = Kind("awd-dip", "AWD-ViT + DIP", patch="awd", attends_fields=True, drops_patches=True, dip_fields=True)
WINFT_PAPER = Kind("winft-paper", "WinfT (paper mode)", patch="winft", winft_mode="paper", dip_fields=True,
                   learns_windows=True)
WINFT_RESTRICT = Kind("winft-restrict", "WinfT (restrict mode)", patch="winft", winft_mode="restrict",
                      dip_fields=True, learns_windows=True)

#: Every kind, in the order of ``--kind``'s choices.
KINDS: tuple[Kind, ...] = (VIT, AWD, AWD_DIP, WINFT_PAPER, WINFT_RESTRICT)

#: Their names (``--kind``'s choices).
KIND_NAMES: tuple[str, ...] = tuple(k.name for k in KINDS)

_BY_NAME = {k.name: k for k in KINDS}


def kind_by_name(name: str) -> Kind:
    """The kind called ``name`` (as ``run.json`` and ``--kind`` spell it).

    Raises:
        ValueError: no kind has that name (the message lists the known ones).
    """
    kind = _BY_NAME.get(name) if isinstance(name, str) else None
    if kind is None:
        raise ValueError(f"unknown kind {name!r}: choose one of {', '.join(KIND_NAMES)}")
    return kind


def as_kind(kind: Kind | str) -> Kind:
    """``kind`` itself, or the kind of that name (for functions taking either)."""
    return kind if isinstance(kind, Kind) else kind_by_name(kind)
