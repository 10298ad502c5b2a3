"""The command line answers ``--help`` without importing the model and plotting libraries."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import patchfield as pf

HEAVY = ("timm", "transformers", "matplotlib", "open_clip")

# every `--help` in one fresh interpreter: what it prints, and which heavy modules it imported
_SCRIPT = """
import contextlib, io, json, sys
from patchfield.cli import build_parser, main
helps = dict()
commands = sorted(build_parser()._subparsers._group_actions[0].choices)
for argv in [["--help"]] + [[c, "--help"] for c in commands]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(argv)
        except SystemExit as e:
            helps[" ".join(argv)] = (e.code, out.getvalue())
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
print(json.dumps({{"helps": helps, "heavy": heavy, "commands": commands}}))
"""


def test_help_imports_no_model_or_plotting_library():
    out = subprocess.run([sys.executable, "-c", _SCRIPT.format(heavy=set(HEAVY))], check=True,
                         capture_output=True, text=True, timeout=300).stdout
    got = json.loads(out.splitlines()[-1])
    assert got["heavy"] == []
    assert {"analyze", "claims", "train", "pretrain", "reproduce"} <= set(got["commands"])
    assert all(code == 0 for code, _ in got["helps"].values())
    assert "usage: patchfield [-h]" in got["helps"]["--help"][1]
    assert "--alpha" in got["helps"]["analyze --help"][1]


def test_lazy_package_exports_every_public_name():
    import patchfield.training as training

    for package in (pf, training):
        assert sorted(package.__all__) == sorted(package._EXPORTS)
        assert set(package.__all__) <= set(dir(package))
        for name in package.__all__:
            assert name == "KINDS" or getattr(package, name).__name__ == name
    from patchfield import Grid, analyze  # noqa: F401  (the `from` form)

    assert pf.grid.Grid is pf.Grid  # a submodule reached as an attribute
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = pf.no_such_name
