"""The one device parser: accepted names, one-line errors, and the index a CUDA process takes (no GPU needed)."""

from __future__ import annotations

import pytest
import torch

from patchfield.devices import parse_device, resolve_device


def _fake_cuda(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_cpu_and_errors_without_cuda(monkeypatch):
    _fake_cuda(monkeypatch, 0)
    assert parse_device("cpu") == torch.device("cpu")
    assert parse_device(" cpu ") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match="CUDA is not available on this machine; use --device cpu") as e:
            parse_device(name)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="is not a device: use cpu, cuda, cuda:N or mps"):
        parse_device("gpu")
    with pytest.raises(ValueError, match="is not a device"):
        parse_device("cuda:x")
    with pytest.raises(ValueError, match="not meta"):
        parse_device("meta")
    with pytest.raises(ValueError, match="the CPU has no index"):
        parse_device("cpu:3")


def test_cuda_names_and_index_range(monkeypatch):
    _fake_cuda(monkeypatch, 2)
    assert parse_device("cuda") == torch.device("cuda")  # no index: resolve_device picks one
    assert parse_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"has 2 CUDA device\(s\), cuda:0 to cuda:1"):
        parse_device("cuda:2")


def test_resolve_takes_the_local_rank(monkeypatch):
    """`train --device cuda` under torchrun: each process its own GPU (set_device needs an index)."""
    _fake_cuda(monkeypatch, 2)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device(None) == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device(None) == torch.device("cuda", 1)
    assert resolve_device("cuda", rank=3) == torch.device("cuda", 1)  # modulo the device count
    assert resolve_device("cuda:0") == torch.device("cuda", 0)  # an explicit index wins
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("LOCAL_RANK", "x")
    with pytest.raises(ValueError, match="LOCAL_RANK"):
        resolve_device("cuda")


def test_mps_where_torch_has_it(monkeypatch):
    mps = getattr(torch.backends, "mps", None)
    if mps is not None:
        monkeypatch.setattr(mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match="MPS .* not available"):
        parse_device("mps")
    if mps is not None:
        monkeypatch.setattr(mps, "is_available", lambda: True)
        assert parse_device("mps") == torch.device("mps")


def test_distributed_env_sets_the_indexed_device(monkeypatch):
    """The training set-up asks set_device for cuda:<LOCAL_RANK>, never a bare "cuda"."""
    from patchfield.utils import distributed

    _fake_cuda(monkeypatch, 2)
    seen = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: seen.append(d))
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.distributed_env("cuda") as env:
        assert env.device == torch.device("cuda", 1) and not env.distributed and not env.created
    assert seen == [torch.device("cuda", 1)]


def test_cli_reports_a_missing_device_in_one_line(monkeypatch, tmp_path, capsys):
    from patchfield.cli import main

    _fake_cuda(monkeypatch, 0)
    code = main(["train", "--model", "vit_tiny_patch16_224", "--device", "cuda:0", "--out", str(tmp_path / "r"),
                 "--steps", "1", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "CUDA is not available" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


def test_a_callers_process_group_is_left_alone(tmp_path, monkeypatch, one_thread):
    """distributed_env destroys only a group it created: train() under the caller's group leaves it standing."""
    import torch.distributed as dist

    from patchfield.training import TrainConfig, train
    from patchfield.utils.distributed import all_reduce_sum, distributed_env

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        with distributed_env("cpu") as env:
            assert not env.created and env.world_size == 1 and env.rank == 0
            assert torch.equal(all_reduce_sum(torch.ones(2), env), torch.ones(2))
        assert dist.is_initialized()
        train(TrainConfig(model="vit_tiny_patch16_224", out=str(tmp_path / "run"), steps=1, batch_size=4,
                          warmup_steps=0, data_kwargs={"num_images": 8}, progress=False, device="cpu",
                          model_kwargs={"patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2,
                                        "img_size": 16}))
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()

