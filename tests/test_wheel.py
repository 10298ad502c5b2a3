"""The package as PyPI would get it: ``python -m build`` makes an sdist and a wheel that pass ``twine check``;
the wheel (built from the sdist) carries the demo models and the pretrained starts, not their training logs, and
its ``patchfield --help`` and a quickstart (the demo model analysed, the explorer built) run from the installed files
alone (dependencies from this environment)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """sdist + wheel of a clean copy of the sources (no build files land in the checkout)."""
    for module in ("build", "twine"):
        pytest.importorskip(module)
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", ".*.work", ".patchfield.lock"))
    out = tmp_path_factory.mktemp("dist")
    # no isolation: offline, with this environment's setuptools (pyproject.toml's build-system requirement)
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src))
    return out


def test_sdist_and_wheel_pass_twine_check(dist: Path) -> None:
    files = sorted(p.name for p in dist.iterdir())
    assert any(f.endswith(".tar.gz") for f in files) and any(f.endswith(".whl") for f in files), files
    done = _run(sys.executable, "-m", "twine", "check", "--strict", *(str(p) for p in sorted(dist.iterdir())))
    assert done.stdout.count("PASSED") == 2, done.stdout


def test_wheel_carries_models_not_logs(dist: Path) -> None:
    from patchfield._version import __version__

    wheel = next(dist.glob("*.whl"))
    assert wheel.name.startswith(f"patchfield-{__version__}-py3-none-any"), wheel.name
    names = set(zipfile.ZipFile(wheel).namelist())
    for kind in ("vit", "winft"):
        for f in ("model.safetensors", "run.json"):
            assert f"patchfield/assets/demo/{kind}/{f}" in names
    for start in ("formula-p4", "formula-p8"):
        assert f"patchfield/assets/pretrained/{start}/model.safetensors" in names
        assert f"patchfield/assets/pretrained/{start}/run.json" in names
    assert {"patchfield/assets/demo/metrics.json", "patchfield/py.typed", "patchfield/explorer/template.html",
            "patchfield/explorer/explorer.js", "patchfield/explorer/explorer.css"} <= names
    assets = [n for n in names if n.startswith("patchfield/assets/")]
    assert len(assets) == 9, assets  # metrics.json and (weights, run.json) of 2 demo models and 2 starts
    assert not [n for n in names if n.endswith((".jsonl", ".pt", ".lock"))]


def test_installed_wheel_runs(dist: Path, tmp_path: Path) -> None:
    wheel = next(dist.glob("*.whl"))
    target = tmp_path / "site"
    _run(sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", "--target", str(target),
         str(wheel))
    env = {**os.environ, "PYTHONPATH": str(target)}
    # one interpreter: where patchfield came from, its version, its assets, and a quickstart on the demo model
    probe = ("import torch, patchfield as pf; from patchfield.demo import demo_models_dir as d; "
             "from patchfield.training import load_run; print(pf.__file__); print(pf.__version__); "
             "print(sorted(p.name for p in d().rglob('*') if p.is_file())); vit, _ = load_run(d() / 'vit'); "
             "x = torch.zeros(2, 3, 32, 32); res = pf.analyze(vit, x, 0.1, 0.2); "
             "print(tuple(res.U.shape), 'data:image/png;base64,' in res._repr_html_(), "
             "'<iframe srcdoc=' in pf.explore(vit, x[0])._repr_html_())")
    out = _run(sys.executable, "-c", probe, cwd=tmp_path, env=env).stdout.splitlines()
    assert Path(out[0]).is_relative_to(target), out[0]  # the installed copy, not the checkout
    from patchfield._version import __version__

    assert out[1] == __version__
    assert out[2] == str(["metrics.json", "model.safetensors", "model.safetensors", "run.json", "run.json"])
    assert out[3] == "(2, 64, 64) True True"
    script = target / "bin" / "patchfield"  # the console script pip wrote, with this interpreter
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "patchfield"]
    helped = _run(*command, "--help", cwd=tmp_path, env=env).stdout
    assert "analyze" in helped and "claims" in helped
