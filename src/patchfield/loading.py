"""Load ViTs from local files only: timm names with local weights, Hugging Face directories, run folders.

Nothing here reaches for the network. Weights come from ``.safetensors``, ``.pth``/``.pt``
or ``.bin`` files in timm or Hugging Face key layout, or from a Hugging Face model directory
(``config.json`` plus weights), including a hub cache folder ``models--org--name``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import UsageError
from .introspect import model_grid
from .models import apply_awd, apply_winft, patched_kind  # importing patchfield.models registers awd_/winft_ names
from .runs import MODEL_FILE, RUN_FILE, is_run_directory, read_run_info

__all__ = [
    "build_model", "load_model", "load_run", "load_state_dict", "hf_vit_to_timm", "is_model_directory",
    "is_run_directory",
]

logger = logging.getLogger(__name__)

_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a local file, unwrapping ``model``/``state_dict``/``module.`` wrappers.

    Raises:
        FileNotFoundError: the file is missing (the message says how to give weights).
        ValueError: the file is not a readable checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file {path} does not exist. patchfield never downloads weights: pass a local "
            ".safetensors/.pth/.bin file (timm or Hugging Face layout) or a Hugging Face model directory"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign file
        raise ValueError(f"could not read weights from {path}: {_reason(e, path)}") from e
    for key in ("state_dict", "model", "model_state", "module"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path} holds no state dict of tensors")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    check_finite_weights(sd, path)
    return sd


def _reason(error: BaseException, path: Path) -> str:
    """Why ``path`` could not be read, on one line and never empty (an empty file says so)."""
    try:
        if path.is_file() and path.stat().st_size == 0:
            return "the file is empty (0 bytes): a copy or download that did not finish?"
    except OSError:
        pass
    return " ".join(str(error).split())[:400] or type(error).__name__


def check_finite_weights(sd: dict[str, torch.Tensor], source: str | Path) -> None:
    """``InputError`` naming the tensors of ``sd`` that hold NaN or Inf (a diverged or corrupt checkpoint)."""
    from .errors import InputError

    bad = [k for k, v in sd.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise InputError(f"weights {source} hold NaN or Inf values in {len(bad)} tensor(s): {', '.join(bad[:6])}"
                         + (" ..." if len(bad) > 6 else "") + "; the checkpoint is corrupt or its training diverged")


_HF_LAYER_MAP = [
    # transformers < 5 names, then transformers >= 5 names
    (r"attention\.attention\.query\.", "attn.q."),
    (r"attention\.attention\.key\.", "attn.k."),
    (r"attention\.attention\.value\.", "attn.v."),
    (r"attention\.output\.dense\.", "attn.proj."),
    (r"attention\.q_proj\.", "attn.q."),
    (r"attention\.k_proj\.", "attn.k."),
    (r"attention\.v_proj\.", "attn.v."),
    (r"attention\.o_proj\.", "attn.proj."),
    (r"layernorm_before\.", "norm1."),
    (r"layernorm_after\.", "norm2."),
    (r"intermediate\.dense\.", "mlp.fc1."),
    (r"^output\.dense\.", "mlp.fc2."),
    (r"mlp\.fc1\.", "mlp.fc1."),
    (r"mlp\.fc2\.", "mlp.fc2."),
]


def is_hf_layout(sd: dict[str, torch.Tensor]) -> bool:
    return any(re.match(r"^(vit\.|deit\.)?(encoder\.layer|layers)\.\d+\.", k) for k in sd) and not any(
        k.startswith("blocks.") for k in sd
    )


def hf_vit_to_timm(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert a Hugging Face ``ViTModel``/``ViTForImageClassification`` state dict to timm's layout.

    Separate ``q``/``k``/``v`` projections are concatenated into timm's fused ``qkv``.
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        k = re.sub(r"^(vit|deit|model)\.", "", key)
        if k.startswith("embeddings."):
            k = {
                "embeddings.cls_token": "cls_token",
                "embeddings.position_embeddings": "pos_embed",
                "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
                "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
            }.get(k)
            if k is None:
                continue  # mask token of masked-image-modelling heads
            out[k] = value
            continue
        m = re.match(r"(?:encoder\.layer|layers)\.(\d+)\.(.*)", k)
        if m:
            i, rest = int(m.group(1)), m.group(2)
            for pattern, repl in _HF_LAYER_MAP:
                if re.search(pattern, rest):
                    rest = re.sub(pattern, repl, rest)
                    break
            else:
                raise ValueError(f"unrecognised Hugging Face ViT key {key!r}")
            qm = re.match(r"attn\.([qkv])\.(weight|bias)", rest)
            if qm:
                qkv.setdefault((i, qm.group(2)), {})[qm.group(1)] = value
            else:
                out[f"blocks.{i}.{rest}"] = value
            continue
        if k.startswith("layernorm."):
            out["norm." + k.split(".", 1)[1]] = value
        elif k.startswith("classifier."):
            out["head." + k.split(".", 1)[1]] = value
        elif k.startswith("pooler."):
            continue  # timm ViTs have no pooler
        else:
            raise ValueError(f"unrecognised Hugging Face ViT key {key!r}")
    for (i, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise ValueError(f"layer {i} lacks one of query/key/value {kind}")
        out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def _hf_directory(path: Path) -> Path | None:
    """A directory with ``config.json``, resolving hub cache folders (``models--org--name``)."""
    if not path.is_dir():
        return None
    if (path / "config.json").is_file():
        return path
    snaps = path / "snapshots"
    if snaps.is_dir():
        ref = path / "refs" / "main"
        if ref.is_file() and (snaps / ref.read_text().strip() / "config.json").is_file():
            return snaps / ref.read_text().strip()
        found = sorted(p for p in snaps.iterdir() if (p / "config.json").is_file())
        if found:
            return found[-1]
    return None


def is_model_directory(path: str | Path) -> bool:
    """A folder :func:`load_model` reads without a weights file: a run folder or a Hugging Face model."""
    return is_run_directory(path) or _hf_directory(Path(path)) is not None


def _load_hf(directory: Path) -> nn.Module:
    try:
        from transformers import AutoConfig, AutoModel, AutoModelForImageClassification
    except ImportError as e:
        raise ImportError("loading a Hugging Face model needs transformers: pip install 'patchfield[hf]'") from e
    try:
        config = AutoConfig.from_pretrained(directory, local_files_only=True)
        cls = AutoModelForImageClassification if getattr(config, "architectures", None) and any(
            a.endswith("ForImageClassification") for a in config.architectures
        ) else AutoModel
        model = cls.from_pretrained(directory, local_files_only=True)
    except Exception as e:  # corrupt weights, a pickled .bin refused by weights_only, a broken config.json
        reason = " ".join(str(e).split())
        raise ValueError(f"could not read weights from {directory}: {reason[:400]}") from e
    check_finite_weights(model.state_dict(), directory)
    return model.eval()


def create_timm_model(name: str, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=False, **kwargs)`` (patchfield's timm names registered),
    with a ``ValueError`` for unknown names."""
    import timm

    try:
        return timm.create_model(name, pretrained=False, **kwargs)
    except RuntimeError as e:
        if "Unknown model" in str(e):
            raise ValueError(
                f"unknown model {name!r}: not a timm architecture, a Hugging Face directory or a run folder"
            ) from e
        raise


def prepare_state_dict(sd: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """A local checkpoint in the key layout of ``model``: Hugging Face keys converted, position
    embeddings resampled to the model's grid (timm's ``checkpoint_filter_fn``)."""
    if is_hf_layout(sd):
        sd = hf_vit_to_timm(sd)
    try:
        from timm.models.vision_transformer import checkpoint_filter_fn

        sd = checkpoint_filter_fn(sd, model)
    except (ImportError, KeyError, AttributeError):
        pass
    return sd


def load_model(
    name: str,
    weights: str | Path | None = None,
    *,
    img_size: int | tuple[int, int] | None = None,
    num_classes: int | None = None,
    strict: bool = True,
    **kwargs: Any,
) -> nn.Module:
    """Build a model from local files only, in eval mode.

    Args:
        name: a timm architecture name (``"vit_base_patch16_224"``), a Hugging Face model
            directory / hub cache folder, or a ``patchfield train`` run folder (its model as trained:
            ViT, AWD-ViT or WinfT).
        weights: a local weights file (timm or Hugging Face key layout), or a Hugging Face
            directory. ``None`` leaves the model randomly initialised.
        img_size: build the timm model for this input size; position embeddings of the
            checkpoint are resampled to it.
        num_classes: classifier size; taken from the checkpoint's head when not given.
        strict: fail on missing or unexpected keys.
        **kwargs: passed to ``timm.create_model``.

    Raises:
        FileNotFoundError: a given weights path does not exist.
        ValueError: the checkpoint does not fit the architecture (keys are listed).
    """
    if weights is not None and is_model_directory(name):
        what = "run folder" if is_run_directory(name) else "Hugging Face model directory"
        raise UsageError(f"--model {name} is a {what}: it holds its own weights, and --weights {weights} would be "
                         "ignored; leave --weights out (or give a timm name as --model)")
    if weights is not None and is_run_directory(weights):
        raise UsageError(f"--weights {weights} is a run folder: give it as --model (it holds its model and weights), "
                         "without --weights")
    for candidate in (name, weights):
        if candidate is not None:
            if is_run_directory(candidate):
                return load_run(candidate)[0]
            hf_dir = _hf_directory(Path(candidate))
            if hf_dir is not None:
                return _load_hf(hf_dir)
    if weights is not None and Path(weights).is_dir():
        raise FileNotFoundError(
            f"{weights} is a directory without config.json; give a weights file or a Hugging Face model directory"
        )
    if weights is not None and Path(weights).suffix not in _WEIGHT_SUFFIXES:
        raise ValueError(f"unsupported weights file {weights}: use one of {', '.join(_WEIGHT_SUFFIXES)}")
    sd = load_state_dict(weights) if weights is not None else None
    if sd is not None and is_hf_layout(sd):
        sd = hf_vit_to_timm(sd)
    if num_classes is None and sd is not None and "head.weight" in sd:
        num_classes = sd["head.weight"].shape[0]
    if img_size is not None:
        kwargs["img_size"] = img_size
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    model = create_timm_model(name, **kwargs)
    if sd is not None:
        sd = prepare_state_dict(sd, model)
        own = model.state_dict()
        shapes = [f"{k} {tuple(v.shape)} in the file vs {tuple(own[k].shape)} in the model" for k, v in sd.items()
                  if k in own and v.shape != own[k].shape]
        if shapes:
            raise ValueError(f"weights {weights} do not fit {name} (another width, depth or patch size?): "
                             f"{len(shapes)} tensor(s) differ in shape: {'; '.join(shapes[:4])}"
                             + (" ..." if len(shapes) > 4 else ""))
        result = model.load_state_dict(sd, strict=False)
        if strict and (result.missing_keys or result.unexpected_keys):
            raise ValueError(
                f"weights {weights} do not fit {name}: missing keys {result.missing_keys[:6]}, "
                f"unexpected keys {result.unexpected_keys[:6]}"
                + (" ..." if len(result.missing_keys) + len(result.unexpected_keys) > 12 else "")
            )
    return model.eval()


def _load_weights(model: nn.Module, weights: str | Path) -> None:
    """Load local starting weights; a classifier head of another size is left freshly initialised."""
    sd = prepare_state_dict(load_state_dict(weights), model)
    own = model.state_dict()
    head = [k for k in sd if k.startswith("head.") and k in own and sd[k].shape != own[k].shape]
    if head:
        logger.warning("%s has a classifier head of another size; training a new head", weights)
        sd = {k: v for k, v in sd.items() if k not in head}
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in sd.items() if k in own
              and v.shape != own[k].shape]
    missing = [k for k in own if k not in sd and k not in head]
    unexpected = [k for k in sd if k not in own]
    if shapes or missing or unexpected:
        raise ValueError(
            f"weights {weights} do not fit the model (check --model and --model-kwargs): shapes differ for "
            f"{shapes[:4]}, missing keys {missing[:6]}, unexpected keys {unexpected[:6]}"
        )
    model.load_state_dict(sd, strict=False)


def build_model(
    name: str,
    kind: str,
    *,
    num_classes: int | None = None,
    image_size: int | None = None,
    weights: str | Path | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """A timm ViT for ``kind`` (``vit``, ``awd``, ``awd-dip``, ``winft-paper``, ``winft-restrict``).

    Args:
        name: timm architecture name.
        kind: the training kind; AWD kinds get :func:`patchfield.models.apply_awd`, WinfT kinds
            :func:`patchfield.models.apply_winft` in the kind's mode.
        num_classes: classifier size.
        image_size: input size (position embeddings of ``weights`` are resampled to it).
        weights: optional local starting weights.
        model_kwargs: extra ``timm.create_model`` arguments (``patch_size``, ``embed_dim``, ...).
    """
    kwargs = dict(model_kwargs or {})
    if num_classes is not None:
        kwargs["num_classes"] = int(num_classes)
    if image_size is not None:
        kwargs["img_size"] = int(image_size)
    model = create_timm_model(name, **kwargs)
    model_grid(model)  # raises for a model that is not a timm ViT
    made = patched_kind(model)
    if made is not None and not kind.startswith(made):
        wanted = "awd or awd-dip" if made == "awd" else "winft-paper or winft-restrict"
        raise ValueError(f"{name} builds a {made} model but --kind is {kind!r}: pass --kind {wanted}")
    if weights is not None:
        _load_weights(model, weights)
    if kind in ("awd", "awd-dip"):
        model = apply_awd(model)
    elif kind.startswith("winft"):
        model = apply_winft(model, mode=kind.split("-", 1)[1])
    elif kind != "vit":
        raise ValueError(f"unknown kind {kind!r}")
    return model


#: run.json's entries :func:`load_run` needs, with their types.
_RUN_KEYS: dict[str, type | tuple[type, ...]] = {"model": str, "kind": str, "num_classes": int}


def load_run(run_dir: str | Path, device: str | torch.device | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the trained model of a run folder, in eval mode: ``(model, run.json contents)``.

    Raises:
        InputError: ``run.json`` lacks an entry the model needs, or ``model.safetensors`` is unreadable
            (truncated, empty), holds NaN or Inf, or does not fit the model run.json describes; the message
            names the file.
    """
    from safetensors.torch import load_file

    from .errors import InputError, one_line

    info = read_run_info(run_dir)
    run_file, model_file = Path(run_dir) / RUN_FILE, Path(run_dir) / MODEL_FILE
    bad = [k for k, t in _RUN_KEYS.items() if not isinstance(info.get(k), t) or isinstance(info.get(k), bool)]
    if bad:
        raise InputError(f"{run_file} lacks {', '.join(repr(k) for k in bad)} (or gives the wrong type): not a "
                         "complete `patchfield train` run description; train the run again or restore its run.json")
    try:
        model = build_model(
            info["model"], info["kind"], num_classes=info["num_classes"], image_size=info.get("image_size"),
            model_kwargs=info.get("model_kwargs") or {},
        )
    except (ValueError, TypeError) as e:  # an unknown kind or timm name, model_kwargs timm does not take
        raise InputError(f"{run_file} describes a model that cannot be built: {one_line(e)}") from e
    try:
        sd = load_file(str(model_file))
    except Exception as e:  # safetensors' own error type: truncated, empty or foreign file
        raise InputError(f"{model_file} cannot be read ({_reason(e, model_file)}): the run folder is incomplete "
                         "or corrupt; train it again (--resume rewrites it where checkpoint.pt is kept)") from e
    check_finite_weights(sd, model_file)
    own = model.state_dict()
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in sd.items()
              if k in own and v.shape != own[k].shape]
    missing, unexpected = [k for k in own if k not in sd], [k for k in sd if k not in own]
    differ = [f"{what} {', '.join(items[:3])}{' ...' if len(items) > 3 else ''}" for what, items in
              (("shapes differ for", shapes), ("missing keys", missing), ("unexpected keys", unexpected)) if items]
    if differ:
        raise InputError(f"{model_file} does not fit the model {run_file} describes ({info['model']}, kind "
                         f"{info['kind']}): {'; '.join(differ)}; the two files are from different runs")
    model.load_state_dict(sd)
    if device is not None:
        model.to(device)
    return model.eval(), info
