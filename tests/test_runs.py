"""Run folders: one low module (patchfield.runs) read by loading and training; no import cycle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from patchfield.runs import MODEL_FILE, RUN_FILE, RUN_FORMAT, is_run_directory, read_run_info


def test_loading_does_not_import_training():
    code = ("import sys, patchfield.loading, patchfield.runs; "
            "print(sorted(m for m in sys.modules if m.startswith('patchfield.training')))")
    src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": src, "PATH": ""})
    assert out.stdout.strip() == "[]"


def test_run_names_are_defined_once():
    """load_run is loading's, the run-folder names are runs'; training's checkpoint module does not hand them on."""
    from patchfield import loading
    from patchfield.training import checkpoint

    assert loading.load_run.__module__ == "patchfield.loading" and read_run_info.__module__ == "patchfield.runs"
    assert not {"load_run", "MODEL_FILE", "RUN_FILE", "RUN_FORMAT"} & set(checkpoint.__all__)


def test_read_run_info(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a finished run"):
        read_run_info(tmp_path)
    (tmp_path / MODEL_FILE).write_bytes(b"")
    (tmp_path / RUN_FILE).write_text("{")
    assert is_run_directory(tmp_path)
    with pytest.raises(ValueError, match="not valid JSON"):
        read_run_info(tmp_path)
    (tmp_path / RUN_FILE).write_text(json.dumps({"format": "other/1"}))
    with pytest.raises(ValueError, match="not a patchfield run description"):
        read_run_info(tmp_path)
    (tmp_path / RUN_FILE).write_text(json.dumps({"format": RUN_FORMAT, "kind": "vit"}))
    assert read_run_info(tmp_path) == {"format": RUN_FORMAT, "kind": "vit"}
