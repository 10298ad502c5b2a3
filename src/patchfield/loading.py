"""Load ViTs from local files only: timm names with local weights, Hugging Face directories, run folders,
torchvision and open_clip ViTs.

Nothing here reaches for the network. Weights come from ``.safetensors``, ``.pth``/``.pt``
or ``.bin`` files in timm or Hugging Face key layout, or from a Hugging Face model directory
(``config.json`` plus weights), including a hub cache folder ``models--org--name``.
``torchvision:vit_b_16`` (or ``torchvision``, the architecture read from the file) loads a torchvision
state dict; ``open_clip:ViT-B-16`` builds open_clip's model without weights and loads a local open_clip
checkpoint into its image tower, which it returns; an open_clip checkpoint given with a timm CLIP ViT name
(``vit_base_patch16_clip_224``) is converted by timm's own checkpoint filter.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import UnsupportedModelError, UsageError
from .families import TORCHVISION_VITS
from .introspect import EMBEDDING_HEAD_ATTR, model_family, model_grid
from .kinds import KINDS, Kind, as_kind
from .models import patched_kind  # importing patchfield.models registers awd_/winft_ names
from .runs import MODEL_FILE, RUN_FILE, is_run_directory, read_run_info

__all__ = [
    "build_model", "load_model", "load_run", "load_state_dict", "hf_vit_to_timm", "is_model_directory",
    "is_run_directory",
]

logger = logging.getLogger(__name__)

_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a local file, unwrapping ``model``/``state_dict``/``module.`` wrappers.

    ``.safetensors`` files are read by safetensors, TorchScript archives (OpenAI's CLIP ``.pt`` files) by
    ``torch.jit.load`` and every other file by ``torch.load(weights_only=True)``.

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
        elif _is_torchscript(path):  # OpenAI's CLIP files (open_clip's ``pretrained="openai"``)
            sd = dict(torch.jit.load(str(path), map_location="cpu").state_dict())
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


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive (``torch.jit.save``): a zip holding ``constants.pkl`` and ``code/``, which
    ``torch.load(weights_only=True)`` refuses; its tensors are read by ``torch.jit.load`` (no Python pickle)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def _reason(error: BaseException, path: Path) -> str:
    """Why ``path`` could not be read, on one line and never empty (an empty file says so)."""
    try:
        if path.is_file() and path.stat().st_size == 0:
            return "the file is empty (0 bytes): a copy or download that did not finish?"
    except OSError:
        pass
    return " ".join(str(error).split())[:400] or type(error).__name__


def check_finite_weights(sd: dict[str, torch.Tensor], source: str | Path) -> None:
    """``InputError`` naming the tensors of ``sd`` that hold NaN or Inf (a diverged or corrupt checkpoint).

    Attention masks (a name ending in ``mask``, such as a TorchScript CLIP's causal ``attn_mask``) hold -inf by
    design: only NaN is refused there.
    """
    from .errors import InputError

    def broken(key: str, v: torch.Tensor) -> bool:
        if not v.is_floating_point():
            return False
        return bool(torch.isnan(v).any()) if key.endswith("mask") else not bool(torch.isfinite(v).all())

    bad = [k for k, v in sd.items() if broken(k, v)]
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
    tower = getattr(model, "vision_model", None)
    if isinstance(tower, nn.Module) and hasattr(getattr(model, "config", None), "vision_config"):
        logger.info("%s is a %s: patchfield reads its image tower", directory, type(model).__name__)
        model = tower  # CLIPModel, SiglipModel ...: the image tower (no classifier)
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
            directory / hub cache folder, a ``patchfield train`` run folder (its model as trained:
            ViT, AWD-ViT or WinfT), ``torchvision:vit_b_16`` (``vit_b_32``, ``vit_l_16``, ``vit_l_32``,
            ``vit_h_14``; ``torchvision`` alone reads the architecture from the weights) or
            ``open_clip:ViT-B-16`` (any open_clip model name; its image tower is returned).
        weights: a local weights file (timm or Hugging Face key layout), or a Hugging Face
            directory. ``None`` leaves the model randomly initialised.
        img_size: build the timm model for this input size; position embeddings of the
            checkpoint are resampled to it.
        num_classes: classifier size; taken from the checkpoint's head when not given.
        strict: fail on missing or unexpected keys.
        **kwargs: passed to ``timm.create_model`` (torchvision: ``VisionTransformer``; open_clip:
            ``open_clip.create_model``).

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
    if name == "torchvision" or name.startswith("torchvision:") or name in TORCHVISION_VITS:
        return _load_torchvision(name.split(":", 1)[1] if ":" in name else name, sd, weights, img_size,
                                 num_classes, strict, kwargs)
    if name.startswith(("open_clip:", "open-clip:", "openclip:")):
        return _load_open_clip(name.split(":", 1)[1], sd, weights, img_size, strict, kwargs)
    if sd is not None and _is_torchvision_layout(sd):
        raise ValueError(f"weights {weights} are a torchvision ViT state dict: load them with --model "
                         "torchvision:vit_b_16 (the architecture's name), or --model torchvision (read from the file)")
    clip_head = False
    if sd is not None and _is_open_clip_layout(sd):
        sd, clip_head = _open_clip_for_timm(sd)
        if num_classes is None and "visual.proj" in sd:
            num_classes = sd["visual.proj"].shape[1]  # CLIP's projection becomes timm's head
    if sd is not None and is_hf_layout(sd):
        sd = hf_vit_to_timm(sd)
    if num_classes is None and sd is not None and "head.weight" in sd:
        num_classes = sd["head.weight"].shape[0]
    if img_size is not None:
        kwargs["img_size"] = img_size
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    model = create_timm_model(name, **kwargs)
    model_family(model)  # refuses Swin, SAM, PiT, MViT, XCiT and CaiT with the reason
    if sd is not None:
        _load_checked(model, prepare_state_dict(sd, model), weights, name, strict)
    if clip_head or _is_timm_tower_head(name, int(getattr(model, "num_classes", 0) or 0)):
        setattr(model, EMBEDDING_HEAD_ATTR, True)  # CLIP's projection to an embedding, not class logits
    return model.eval()


def _load_checked(model: nn.Module, sd: dict[str, torch.Tensor], weights: Any, name: str, strict: bool) -> None:
    """Load ``sd`` into ``model``; ``ValueError`` listing tensors of another shape, and missing or unexpected
    keys when ``strict``."""
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


def _is_timm_tower_head(name: str, num_classes: int) -> bool:
    """Whether a timm CLIP/SigLIP ViT's head of ``num_classes`` outputs is the image tower's projection to the
    joint embedding: the size of one of the architecture's timm image-tower weights (``openai``, ``laion2b``:
    512 for ViT-B), not of its fine-tuned classifiers (``*_ft_*``: 1000, 11821)."""
    import timm

    arch = name.split(".")[0]
    if num_classes <= 0 or not any(k in arch for k in ("_clip_", "_siglip")):
        return False
    for tagged in timm.list_pretrained(f"{arch}.*"):
        tag = tagged.split(".", 1)[1]
        cfg = timm.models.get_pretrained_cfg(tagged)
        if cfg is not None and "ft" not in tag.split("_") and int(cfg.num_classes or 0) == num_classes:
            return True
    return False


def _is_torchvision_layout(sd: dict[str, torch.Tensor]) -> bool:
    return "conv_proj.weight" in sd and "class_token" in sd and any(k.startswith("encoder.layers.") for k in sd)


def _is_open_clip_layout(sd: dict[str, torch.Tensor]) -> bool:
    """A whole open_clip model's state dict (``visual.*`` keys) or its image tower's alone."""
    return "visual.conv1.weight" in sd or "visual.trunk.patch_embed.proj.weight" in sd or (
        "conv1.weight" in sd and "class_embedding" in sd and any(k.startswith("transformer.resblocks.") for k in sd))


def _open_clip_tower(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The image tower's tensors of an open_clip state dict, with their ``visual.`` prefix."""
    if any(k.startswith("visual.") for k in sd):
        return {k: v for k, v in sd.items() if k.startswith("visual.")}
    return {f"visual.{k}": v for k, v in sd.items()}


def _open_clip_for_timm(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """An open_clip checkpoint's image tower for timm's ``checkpoint_filter_fn`` (which converts ``visual.*``
    keys into timm's CLIP ViTs), and whether its head is CLIP's projection to an embedding."""
    tower = _open_clip_tower(sd)
    return tower, "visual.proj" in tower or "visual.head.proj.weight" in tower


def _torchvision_arch(sd: dict[str, torch.Tensor]) -> str:
    """The torchvision builder name of the ViT whose state dict is ``sd``."""
    patch, hidden = int(sd["conv_proj.weight"].shape[-1]), int(sd["conv_proj.weight"].shape[0])
    layers = len({k.split(".")[2] for k in sd if k.startswith("encoder.layers.")})
    for name, cfg in TORCHVISION_VITS.items():
        if (cfg["patch_size"], cfg["hidden_dim"], cfg["num_layers"]) == (patch, hidden, layers):
            return name
    raise ValueError(f"the torchvision ViT in the weights (patch {patch}, width {hidden}, {layers} layers) is none of "
                     f"{', '.join(TORCHVISION_VITS)}: give its architecture, load_model('torchvision:NAME', weights, "
                     "num_heads=..., hidden_dim=..., ...)")


def _load_torchvision(arch: str, sd: dict[str, torch.Tensor] | None, weights: Any, img_size: Any,
                      num_classes: int | None, strict: bool, kwargs: dict[str, Any]) -> nn.Module:
    """torchvision's ``VisionTransformer`` of ``arch`` (``""``/``"torchvision"``: read from ``sd``), built for
    the checkpoint's image size (from its position embedding) or ``img_size`` (position embedding resampled)."""
    from torchvision.models.vision_transformer import VisionTransformer, interpolate_embeddings

    if sd is not None and not _is_torchvision_layout(sd):
        raise ValueError(f"weights {weights} are not a torchvision ViT state dict (no conv_proj/class_token/encoder "
                         "keys): give a timm name, a Hugging Face directory or open_clip:NAME for them")
    if arch in ("", "torchvision"):
        if sd is None:
            raise ValueError("--model torchvision reads the architecture from --weights: give the weights, or name "
                             f"the architecture ({', '.join('torchvision:' + n for n in TORCHVISION_VITS)})")
        arch = _torchvision_arch(sd)
    if arch not in TORCHVISION_VITS and not kwargs:
        raise ValueError(f"unknown torchvision ViT {arch!r}; use one of {', '.join(TORCHVISION_VITS)}")
    cfg = {**TORCHVISION_VITS.get(arch, {}), **kwargs}
    if "image_size" in cfg and img_size is None:
        img_size = cfg.pop("image_size")
    cfg.pop("image_size", None)
    size = img_size
    if sd is not None and size is None:
        grid = math.isqrt(int(sd["encoder.pos_embedding"].shape[1]) - 1)
        size = grid * int(sd["conv_proj.weight"].shape[-1])  # the size the checkpoint was trained at (SWAG: 384 ...)
    size = 224 if size is None else size
    if not isinstance(size, int):
        h, w = size
        if h != w:
            raise ValueError(f"torchvision ViTs take square images; got image size {h}x{w}")
        size = int(h)
    if num_classes is None and sd is not None and "heads.head.weight" in sd:
        num_classes = int(sd["heads.head.weight"].shape[0])
    if sd is not None and "heads.pre_logits.weight" in sd:
        cfg.setdefault("representation_size", int(sd["heads.pre_logits.weight"].shape[0]))
    try:
        model = VisionTransformer(image_size=size, num_classes=num_classes or 1000, **cfg)
    except (TypeError, AssertionError) as e:
        raise ValueError(f"cannot build torchvision:{arch} for image size {size}: {e}") from e
    if sd is not None:
        sd = dict(sd)
        if int(sd["encoder.pos_embedding"].shape[1]) != model.encoder.pos_embedding.shape[1]:
            sd = dict(interpolate_embeddings(size, model.patch_size, sd))
        _load_checked(model, sd, weights, f"torchvision:{arch}", strict)
    return model.eval()


class _DropMessage(logging.Filter):
    """Drops log records whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.prefix)


def _load_open_clip(arch: str, sd: dict[str, torch.Tensor] | None, weights: Any, img_size: Any, strict: bool,
                    kwargs: dict[str, Any]) -> nn.Module:
    """open_clip's model ``arch`` built without weights (``open_clip.create_model(arch, pretrained=None)``),
    the image tower of a local open_clip checkpoint loaded into it; returns the image tower."""
    try:
        import open_clip
    except ImportError as e:
        raise ImportError("open_clip models need open_clip: pip install 'patchfield[openclip]'") from e
    if arch.startswith("hf-hub:"):
        raise ValueError(f"open_clip:{arch} downloads from the Hugging Face hub and patchfield never downloads: "
                         "give the model's name (open_clip:ViT-B-16) and its local checkpoint with --weights")
    if not arch.startswith("local-dir:") and arch not in open_clip.list_models():
        near = [n for n in open_clip.list_models() if arch.lower().replace("_", "-") in n.lower()][:6]
        raise ValueError(f"unknown open_clip model {arch!r}" + (f"; did you mean {', '.join(near)}?" if near else
                                                                  "; open_clip.list_models() names them"))
    if img_size is not None:
        kwargs["force_image_size"] = img_size
    quiet = _DropMessage("No pretrained weights loaded")  # open_clip's warning; the checkpoint is loaded below
    logging.getLogger().addFilter(quiet)
    try:
        clip = open_clip.create_model(arch, pretrained=None, pretrained_image=False, pretrained_text=False, **kwargs)
    finally:
        logging.getLogger().removeFilter(quiet)
    tower = clip.visual
    if sd is not None:
        if not _is_open_clip_layout(sd):
            raise ValueError(f"weights {weights} are not an open_clip checkpoint (no visual.conv1 / visual.trunk "
                             "keys): give the open_clip model's own state dict")
        sd = _open_clip_tower(sd)
        from open_clip.model import resize_pos_embed

        resize_pos_embed(sd, clip)  # to --image-size, in place
        sd = {k[len("visual."):]: v for k, v in sd.items()}
        _load_checked(tower, sd, weights, f"open_clip:{arch}", strict)
    trunk = getattr(tower, "trunk", None)
    if trunk is not None and hasattr(trunk, "patch_embed"):  # a timm ViT inside open_clip (SigLIP ...)
        cfg = dict(getattr(tower, "preprocess_cfg", None) or {})
        trunk.pretrained_cfg = {**dict(getattr(trunk, "pretrained_cfg", None) or {}), "crop_pct": 1.0,
                                **{k: cfg[k] for k in ("mean", "std", "interpolation") if k in cfg}}
        logger.info("open_clip:%s: its image tower is the timm model %s; patchfield reads that", arch,
                    type(trunk).__name__)
        return trunk.eval()
    if model_family(tower) is None:
        raise UnsupportedModelError(f"open_clip:{arch}'s image tower is a {type(tower).__name__}, not a ViT "
                                    "patchfield reads")
    return tower.eval()


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
    kind: Kind | str,
    *,
    num_classes: int | None = None,
    image_size: int | None = None,
    weights: str | Path | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """A timm ViT for ``kind`` (a :class:`~patchfield.kinds.Kind` or its name: ``vit``, ``awd``, ...).

    Args:
        name: timm architecture name.
        kind: the training kind; its :meth:`~patchfield.kinds.Kind.apply` patches the model (AWD kinds
            :func:`patchfield.models.apply_awd`, WinfT kinds :func:`patchfield.models.apply_winft` in their mode).
        num_classes: classifier size.
        image_size: input size (position embeddings of ``weights`` are resampled to it).
        weights: optional local starting weights.
        model_kwargs: extra ``timm.create_model`` arguments (``patch_size``, ``embed_dim``, ...).
    """
    kind = as_kind(kind)
    kwargs = dict(model_kwargs or {})
    if num_classes is not None:
        kwargs["num_classes"] = int(num_classes)
    if image_size is not None:
        kwargs["img_size"] = int(image_size)
    model = create_timm_model(name, **kwargs)
    model_grid(model)  # raises for a model that is not a timm ViT
    made = patched_kind(model)
    if made is not None and made != kind.patch:
        wanted = " or ".join(k.name for k in KINDS if k.patch == made)
        raise ValueError(f"{name} builds a {made} model but --kind is {kind.name!r}: pass --kind {wanted}")
    if weights is not None:
        _load_weights(model, weights)
    return kind.apply(model)


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

    try:
        info = read_run_info(run_dir)
    except FileNotFoundError:
        raise
    except ValueError as e:  # run.json is corrupt (the message names it): the file's fault, not the command's
        raise InputError(one_line(e)) from e
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
