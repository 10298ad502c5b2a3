"""The example notebooks in examples/ run, offline on the shipped demo models, so they never rot; the committed
copies carry no outputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
pytestmark = pytest.mark.slow


def test_the_four_examples_are_there() -> None:
    assert [p.name for p in NOTEBOOKS] == ["01_quickstart.ipynb", "02_claims_on_your_images.ipynb",
                                           "03_head_statistics.ipynb", "04_train_awd_winft.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code), f"strip the outputs of {path}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    # the kernel inherits this environment (PYTHONPATH included), so it imports the patchfield under test
    env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                                     resources={"metadata": {"path": str(EXAMPLES)}})
    client.execute(env=env)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o for o in outputs if o.output_type == "execute_result" and "text/html" in o.get("data", {})]
    if path.stem in ("01_quickstart", "02_claims_on_your_images", "03_head_statistics"):
        assert any("patchfield" in o["data"]["text/html"] for o in html), "the result should show itself as HTML"
    if path.stem == "01_quickstart":
        assert any("<iframe srcdoc=" in o["data"]["text/html"] for o in html)
    if path.stem in ("01_quickstart", "03_head_statistics"):  # a figure function's result, drawn inline
        assert any("image/png" in o.get("data", {}) for o in outputs)
