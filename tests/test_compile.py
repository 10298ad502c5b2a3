"""`train --compile`: the compiled forward trains to the same parameters, keeps the checkpoint's keys, and resumes.

The ``eager`` backend runs dynamo's graph capture without code generation (seconds); inductor itself is
checked by ``benchmarks/gpu_check.py`` on a GPU.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from patchfield.training import TrainConfig, train

TINY = {"patch_size": 8, "embed_dim": 16, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0, "img_size": 16}


def _config(out, **kw) -> TrainConfig:
    base = dict(model="vit_tiny_patch16_224", model_kwargs=TINY, data_kwargs={"num_images": 32}, out=str(out),
                steps=4, batch_size=8, warmup_steps=1, lr=0.05, checkpoint_every=2, log_every=1, progress=False,
                device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def test_compiled_training_equals_eager_and_resumes(tmp_path, one_thread):
    train(_config(tmp_path / "eager"))
    train(_config(tmp_path / "compiled", compile="eager", stop_after_steps=2))  # "killed" after its checkpoint
    done = train(_config(tmp_path / "compiled", compile="eager", resume=True))
    assert done["finished"]
    a, b = load_file(tmp_path / "eager" / "model.safetensors"), load_file(tmp_path / "compiled" / "model.safetensors")
    assert a.keys() == b.keys()  # no "_orig_mod." prefixes: the module was compiled in place
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=0, atol=1e-6), k
    ckpt = torch.load(tmp_path / "compiled" / "checkpoint.pt", weights_only=True)
    assert set(ckpt["model"]) == set(a)


def test_unknown_backend_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="is not a torch.compile backend; choose one of .*inductor"):
        train(_config(tmp_path / "x", compile="no_such_backend"))
    assert not (tmp_path / "x").exists()


def test_cli_option(tmp_path):
    import argparse

    from patchfield.cli.train import config_from_args, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    common = ["train", "--model", "vit_tiny_patch16_224", "--out", str(tmp_path)]
    assert config_from_args(parser.parse_args(common)).compile is None
    assert config_from_args(parser.parse_args([*common, "--compile"])).compile == "inductor"
    assert config_from_args(parser.parse_args([*common, "--compile", "aot_eager"])).compile == "aot_eager"
