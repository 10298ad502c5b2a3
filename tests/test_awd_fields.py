"""An AWD-ViT analysed on images outside its store: its fields come from its baseline ViT (``awd_forward_kwargs``,
``patchfield analyze --baseline``), exactly as a ground-truth store holds them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_vit
from PIL import Image

from patchfield import analyze, apply_awd, awd_forward_kwargs, load_model
from patchfield.cli import main
from patchfield.data import SyntheticShapes
from patchfield.groundtruth import build_groundtruth
from patchfield.images import read_image
from patchfield.kinds import kind_by_name
from patchfield.preprocess import Preprocess
from patchfield.training import export_run

KW = {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0}


def test_awd_forward_kwargs_are_what_the_store_gives(tmp_path, one_thread):
    base = tiny_vit()
    ds = SyntheticShapes(12, image_size=32, num_classes=4, seed=3)
    store = build_groundtruth(base, ds, tmp_path / "gt", alpha=0.1, beta=0.3, batch_size=12, shard_size=12,
                              progress=False)
    images, _ = ds.batch(range(12))
    mask, dropped = store.masks(range(12))
    dip = awd_forward_kwargs(base, images, 0.1, 0.3, "awd-dip")
    assert torch.equal(dip["field_mask"], mask) and torch.equal(dip["dropped"], dropped)
    assert dropped.any() and not dropped.all()  # β = 0.3 drops some patches
    windows, _ = store.masks(range(12), dip=False)
    win = awd_forward_kwargs(base, images, 0.1, 0.3, "awd")
    assert torch.equal(win["field_mask"], windows) and win["dropped"] is None
    assert int(win["field_mask"].sum()) > int(dip["field_mask"].sum())  # D's columns are out of S_p only
    # with them, an AWD-ViT runs the forward of its training and evaluation (Kind.forward on the store's fields)
    awd = apply_awd(tiny_vit())
    for kind, kwargs, store_mask, store_dropped in (("awd-dip", dip, mask, dropped), ("awd", win, windows, None)):
        logits, _, _ = kind_by_name(kind).forward(awd, images, store_mask, store_dropped)
        torch.testing.assert_close(awd(images, **kwargs), logits, rtol=0, atol=0)
    with pytest.raises(ValueError, match="kind"):
        awd_forward_kwargs(base, images, 0.1, 0.3, "winft-paper")


@pytest.fixture
def awd_run(tmp_path: Path) -> dict[str, Path]:
    """A baseline ViT run folder, its store, an AWD+DIP run folder trained on it (by record), and two photos."""
    base = tiny_vit()
    export_run(tmp_path / "vit", base, {"model": "vit_tiny_patch16_224", "kind": "vit", "model_kwargs": KW,
                                        "num_classes": 5, "image_size": 32})
    ds = SyntheticShapes(4, image_size=32, num_classes=4, seed=1)
    build_groundtruth(base, ds, tmp_path / "gt", alpha=0.1, beta=0.2, batch_size=4, shard_size=4, progress=False)
    torch.manual_seed(7)
    awd = apply_awd(tiny_vit())
    with torch.no_grad():
        for p in awd.parameters():
            p.add_(0.05 * torch.randn_like(p))  # not the baseline's weights
    export_run(tmp_path / "awd", awd, {"model": "vit_tiny_patch16_224", "kind": "awd-dip", "model_kwargs": KW,
                                       "num_classes": 5, "image_size": 32, "groundtruth": str(tmp_path / "gt")})
    rng = np.random.default_rng(0)
    files = []
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
        files.append(tmp_path / f"{name}.png")
    return {"root": tmp_path, "vit": tmp_path / "vit", "awd": tmp_path / "awd", "gt": tmp_path / "gt",
            "files": files}


def _reference(run: dict[str, Path], alpha: float, beta: float) -> tuple[list[dict], list[dict]]:
    """fields.json records of the photos computed with the library: with the baseline's fields, and globally."""
    model, baseline = load_model(str(run["awd"])), load_model(str(run["vit"]))
    pre = Preprocess.for_model(model)
    x = torch.stack([pre(read_image(f))[0] for f in run["files"]])
    kwargs = awd_forward_kwargs(baseline, x, 0.1, 0.2, "awd-dip")  # the store's rates
    fielded = analyze(model, x, alpha, beta, forward_kwargs=kwargs)
    globally = analyze(model, x, alpha, beta, forward_kwargs={"field_mask": None})
    return ([json.loads(json.dumps(fielded.to_json(i))) for i in range(len(x))],
            [json.loads(json.dumps(globally.to_json(i))) for i in range(len(x))])


def _records(out: Path) -> list[dict]:
    recs = [json.loads((out / name / "fields.json").read_text()) for name in ("a", "b")]
    return [{k: v for k, v in r.items() if k != "image"} for r in recs]


def test_cli_analyzes_an_awd_run_with_its_baselines_fields(awd_run, one_thread):
    out = awd_run["root"] / "out"
    files = [str(f) for f in awd_run["files"]]
    rc = main(["analyze", *files, "--model", str(awd_run["awd"]), "--baseline", str(awd_run["vit"]),
               "--alpha", "0.3", "--beta", "0.1", "--no-figures", "--out", str(out)])
    assert rc == 0
    fielded, globally = _reference(awd_run, 0.3, 0.1)
    got = _records(out)
    assert got == fielded  # the store's α, β (0.1, 0.2) for the fields; --alpha/--beta (0.3, 0.1) for the analysis
    assert got != globally and got[0]["alpha"] == 0.3
    # the store gone: its rates must be given, and then give the same records
    shutil.rmtree(awd_run["gt"])
    again = awd_run["root"] / "again"
    assert main(["analyze", *files, "--model", str(awd_run["awd"]), "--baseline", str(awd_run["vit"]),
                 "--alpha", "0.3", "--beta", "0.1", "--fields-alpha", "0.1", "--fields-beta", "0.2", "--no-figures",
                 "--out", str(again)]) == 0
    assert _records(again) == fielded


def test_cli_awd_misuse_is_one_line(awd_run, tmp_path, capsys, one_thread):
    files = [str(f) for f in awd_run["files"]]

    def fails(*args: str) -> str:
        capsys.readouterr()
        assert main(["analyze", *files, "--no-figures", "--out", str(tmp_path / "o"), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Traceback" not in err
        return err

    assert "--baseline" in fails("--model", str(awd_run["awd"]))
    assert "for AWD-ViT models only" in fails("--model", str(awd_run["vit"]), "--baseline", str(awd_run["vit"]))
    other = tiny_vit(patch_size=4)
    export_run(tmp_path / "p4", other, {"model": "vit_tiny_patch16_224", "kind": "vit",
                                        "model_kwargs": {**KW, "patch_size": 4}, "num_classes": 5, "image_size": 32})
    assert "8x8 patch grid" in fails("--model", str(awd_run["awd"]), "--baseline", str(tmp_path / "p4"))
    # another ViT of the same grid runs, with a warning that its fields are not the AWD-ViT's training fields
    export_run(tmp_path / "other", tiny_vit(embed_dim=16), {"model": "vit_tiny_patch16_224", "kind": "vit",
                                                           "model_kwargs": {**KW, "embed_dim": 16}, "num_classes": 5,
                                                           "image_size": 32})
    capsys.readouterr()
    assert main(["analyze", *files, "--no-figures", "--out", str(tmp_path / "w"), "--model", str(awd_run["awd"]),
                 "--baseline", str(tmp_path / "other")]) == 0
    assert "not the ViT whose ground truth trained" in capsys.readouterr().err
    assert main(["analyze", *files, "--no-figures", "--out", str(tmp_path / "w2"), "--model", str(awd_run["awd"]),
                 "--baseline", str(awd_run["vit"])]) == 0
    assert "not the ViT" not in capsys.readouterr().err
    shutil.rmtree(awd_run["gt"])
    assert "--fields-alpha" in fails("--model", str(awd_run["awd"]), "--baseline", str(awd_run["vit"]))
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_cli_explores_an_awd_run_with_its_baselines_fields(awd_run, capsys, one_thread):
    from patchfield import block_output_norms, capture_attention
    from patchfield.explorer import write_explorer
    from patchfield.introspect import patch_size_of

    page = awd_run["root"] / "page.html"
    image = awd_run["files"][0]
    assert main(["explore", str(image), "--model", str(awd_run["awd"]), "--baseline", str(awd_run["vit"]),
                 "--full-attention", "yes", "--out", str(page)]) == 0
    model, baseline = load_model(str(awd_run["awd"])), load_model(str(awd_run["vit"]))
    x, crop = Preprocess.for_model(model)(read_image(image))
    x = x[None]
    kwargs = awd_forward_kwargs(baseline, x, 0.1, 0.2, "awd-dip")
    pages = {}
    for name, fk in (("fielded", kwargs), ("global", {"field_mask": None})):
        with torch.no_grad(), block_output_norms(model) as norms:
            maps = capture_attention(model, x, forward_kwargs=fk)
        block = norms.result()[0, :, maps.num_prefix_tokens:]
        if name == "fielded":  # attention of the forward within the fields: zero outside S_p in every layer
            assert (maps.patch_block()[0][..., ~kwargs["field_mask"][0]] == 0).all()
        pages[name] = awd_run["root"] / f"{name}.html"
        write_explorer(pages[name], maps, crop, 0, 0.1, 0.2, full_attention=True, model_name=str(awd_run["awd"]),
                       title=f"patchfield explorer: {image.name}", patch_size=patch_size_of(model),
                       norms=block[-1], norm_block=block.shape[0] - 1)
    assert page.read_bytes() == pages["fielded"].read_bytes() != pages["global"].read_bytes()
    capsys.readouterr()
    assert main(["explore", str(image), "--model", str(awd_run["awd"]), "--out", str(page)]) == 2
    assert "--baseline" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["stats", "{img}", "--out", "{o}"],
    ["claims", "--data", "synthetic", "--out", "{o}"],
    ["faithfulness", "{img}", "--out", "{o}"],
    ["groundtruth", "--data", "synthetic", "--alpha", "0.1", "--beta", "0", "--out", "{o}"],
    ["figures", "{img}", "--out", "{o}"],
], ids=lambda a: a[0])
def test_commands_without_fields_refuse_an_awd_run_in_one_line(awd_run, tmp_path, capsys, argv, one_thread):
    argv = [a.format(img=awd_run["files"][0], o=tmp_path / "o") for a in argv]
    assert main([*argv, "--model", str(awd_run["awd"])]) == 2
    err = capsys.readouterr().err.strip()
    assert "is an AWD-ViT" in err and "--baseline" in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
