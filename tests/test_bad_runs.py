"""Bad run folders and misleading model options end in one line naming the file or option: a truncated or
empty model.safetensors, run.json without kind, weights of another depth, NaN weights,
--weights beside a run folder, a zero-byte .pth, a missing --baseline, a finished pretraining that cannot load."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_vit
from PIL import Image
from safetensors.torch import load_file, save_file

from patchfield.cli import main
from patchfield.errors import InputError
from patchfield.loading import load_run
from patchfield.training import export_run

KW = {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0}


@pytest.fixture
def run(tmp_path: Path) -> Path:
    folder = tmp_path / "vit"
    export_run(folder, tiny_vit(), {"model": "vit_tiny_patch16_224", "kind": "vit", "model_kwargs": KW,
                                    "num_classes": 5, "image_size": 32})
    return folder


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    return tmp_path / "a.png"


def _fails(capsys, argv: list[str], code: int) -> str:
    capsys.readouterr()
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def _edit_info(folder: Path, change) -> None:
    info = json.loads((folder / "run.json").read_text())
    change(info)
    (folder / "run.json").write_text(json.dumps(info))


def _nan(folder: Path) -> None:
    sd = load_file(folder / "model.safetensors")
    sd["blocks.1.mlp.fc1.weight"][0, 0] = math.nan
    save_file(sd, str(folder / "model.safetensors"))


BROKEN = {  # how the folder is broken, the file the message names, words it holds
    "empty-model": (lambda f: (f / "model.safetensors").write_bytes(b""), "model.safetensors", "empty (0 bytes)"),
    "truncated-model": (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:300]),
                        "model.safetensors", "cannot be read"),
    "no-kind": (lambda f: _edit_info(f, lambda i: i.pop("kind")), "run.json", "lacks 'kind'"),
    "kind-bogus": (lambda f: _edit_info(f, lambda i: i.update(kind="bogus")), "run.json", "unknown kind 'bogus'"),
    "deeper": (lambda f: _edit_info(f, lambda i: i["model_kwargs"].update(depth=3)), "model.safetensors",
               "missing keys blocks.2."),
    "wider": (lambda f: _edit_info(f, lambda i: i["model_kwargs"].update(embed_dim=16)), "model.safetensors",
              "shapes differ for"),
    "nan": (_nan, "model.safetensors", "NaN or Inf values in 1 tensor(s): blocks.1.mlp.fc1.weight"),
    "corrupt-run-json": (lambda f: (f / "run.json").write_text('{"format": '), "run.json", "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_run_folder_is_one_line_naming_its_file(run, photo, tmp_path, capsys, case, one_thread):
    breaks, file, words = BROKEN[case]
    breaks(run)
    with pytest.raises(InputError, match=f"{run / file}"):
        load_run(run)
    err = _fails(capsys, ["stats", str(photo), "--model", str(run), "--no-figures", "--out", str(tmp_path / "o")], 1)
    assert str(run / file) in err and words in err
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_weights_beside_a_run_folder_are_refused(run, photo, tmp_path, capsys, one_thread):
    out = tmp_path / "o"
    err = _fails(capsys, ["stats", str(photo), "--model", str(run), "--weights", "/nonexistent.safetensors",
                          "--out", str(out)], 2)
    assert f"--model {run} is a run folder" in err and "leave --weights out" in err
    err = _fails(capsys, ["analyze", str(photo), "--model", "vit_tiny_patch16_224", "--weights", str(run),
                          "--out", str(out)], 2)
    assert f"--weights {run} is a run folder: give it as --model" in err
    assert not out.exists()
    assert main(["stats", str(photo), "--model", str(run), "--no-figures", "--out", str(out)]) == 0
    assert json.loads((out / "stats.json").read_text())["models"][0]["weights"] is None


def test_messages_name_the_empty_file_and_the_missing_folder(run, photo, tmp_path, capsys, one_thread):
    (tmp_path / "zero.pth").write_bytes(b"")
    err = _fails(capsys, ["stats", str(photo), "--model", "vit_tiny_patch16_224", "--weights",
                          str(tmp_path / "zero.pth"), "--out", str(tmp_path / "o")], 2)
    assert f"could not read weights from {tmp_path / 'zero.pth'}: the file is empty (0 bytes)" in err
    err = _fails(capsys, ["analyze", str(photo), "--model", str(tmp_path / "runs" / "vit"), "--out",
                          str(tmp_path / "o")], 2)
    assert f"--model {tmp_path / 'runs' / 'vit'}: no such folder" in err and "--random-weights" not in err
    awd = tmp_path / "awd"
    from patchfield import apply_awd

    export_run(awd, apply_awd(tiny_vit()), {"model": "vit_tiny_patch16_224", "kind": "awd-dip", "model_kwargs": KW,
                                            "num_classes": 5, "image_size": 32})
    err = _fails(capsys, ["analyze", str(photo), "--model", str(awd), "--baseline", str(tmp_path / "missing"),
                          "--out", str(tmp_path / "o")], 2)
    assert f"--baseline {tmp_path / 'missing'}: no such folder" in err and "--random-weights" not in err
    err = _fails(capsys, ["explore", str(photo), "--model", str(awd), "--baseline", str(run), "--baseline-weights",
                          "w.pth", "--out", str(tmp_path / "p.html")], 2)
    assert "leave --baseline-weights w.pth out" in err
    assert not (tmp_path / "o").exists()


def _finished_pretraining(root: Path):
    """A folder `pretrain --quick --patch 8` takes as its finished run (run.json records it)."""
    from patchfield.training.pretrain import QUICK, pretrained_model_kwargs

    cfg = replace(QUICK, root=str(root), patches=(8,), progress=False)
    kwargs = {**pretrained_model_kwargs(cfg, 8), "num_classes": cfg.num_classes}
    torch.manual_seed(0)
    from patchfield.training import build_model

    model = build_model("vit_tiny_patch16_224", "vit", model_kwargs=kwargs)
    record = {"name": "formula-p8", "patch": 8, "source": "formula", "source_top1": 0.25, "train_seconds": 1.0,
              "steps": cfg.steps, "images": cfg.steps * cfg.batch_size, "seed": 0}
    export_run(root / "formula-p8", model, {"model": "vit_tiny_patch16_224", "kind": "vit", "model_kwargs": kwargs,
                                            "num_classes": cfg.num_classes, "image_size": 32, **record,
                                            "pretrain": asdict(cfg)})
    return root / "formula-p8"


def test_pretrain_does_not_take_an_unloadable_run_as_done(tmp_path, capsys, one_thread):
    argv = ["pretrain", "--quick", "--patch", "8", "--out", str(tmp_path), "--no-progress"]
    folder = _finished_pretraining(tmp_path)
    saved = folder.with_name("saved")
    shutil.copytree(folder, saved)
    assert main(argv) == 0 and "source top-1 25.0%" in capsys.readouterr().out  # finished: skipped
    (folder / "model.safetensors").write_bytes(b"")
    err = _fails(capsys, argv, 1)
    assert f"{folder} is recorded as a finished pretraining but cannot be loaded: remove the folder" in err
    assert str(folder / "model.safetensors") in err and "top-1" not in err
    shutil.rmtree(folder)
    shutil.copytree(saved, folder)
    (folder / "run.json").write_text("{not json")
    err = _fails(capsys, argv, 1)
    assert f"{folder / 'run.json'} is not valid JSON" in err


def test_reproduce_checks_its_datasets_before_pretraining(tmp_path, capsys):
    err = _fails(capsys, ["reproduce", "--quick", "--datasets", "synthetic", "bogus", "--out", str(tmp_path / "r")],
                 2)
    assert "--datasets bogus: not data sets the study can run; choose from synthetic, formula" in err
    assert not (tmp_path / "r").exists()  # nothing pretrained
