"""figures.write_paper_figures: the figure pipeline as a library call (the CLI and the demo use it)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import tiny_vit
from PIL import Image

import patchfield as pf
from patchfield.figures import PAPER_FIGURES, write_paper_figures
from patchfield.models import apply_winft
from patchfield.preprocess import Preprocess


def test_tensors_files_and_masks(tmp_path, one_thread):
    model = tiny_vit()
    winft = apply_winft(tiny_vit(), "paper")
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    masks = [torch.zeros(32, 32, dtype=torch.bool), None]
    masks[0][4:28, 8:24] = True
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(photo)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "figs"
    written = write_paper_figures(model, [x[0], x[1], photo, tmp_path / "broken.png"], masks + [None, None], winft,
                                  out, names=["a", "b", "c", "d"], alpha=0.2, beta=0.1, batch_size=3,
                                  only=["fig2_pair", "fig5", "fig13", "fields"], progress=False)
    assert written.failed == ["d"]
    assert written.index["a"] == {n: f"{n}.png" for n in ("fig2_pair_attention", "fig5_indiscriminative",
                                                           "fig13_winft_windows")}
    assert set(written.index["b"]) == {"fig5_indiscriminative", "fig13_winft_windows"}  # no mask: no Fig. 2
    assert set(written.index) == {"a", "b", "c", "dataset", "skipped"}
    assert written.index["skipped"] == [{"image": str(tmp_path / "broken.png"),
                                         "reason": "not an image Pillow can read"}]
    assert json.loads((out / "figures.json").read_text()) == written.index
    assert set(PAPER_FIGURES) >= set(written.index["a"])
    # fields.json: the analysis of exactly the tensors drawn (files through the preprocessing rule)
    xc, _ = Preprocess.for_model(model)(Image.open(photo))
    ref = pf.analyze(model, torch.stack([x[0], x[1], xc]), 0.2, 0.1)
    for j, name in enumerate("abc"):
        record = json.loads((out / name / "fields.json").read_text())
        assert record == written.fields[name]
        expected = ref.to_json(j)
        assert record["windows"] == expected["windows"] and record["dropped"] == expected["dropped"]
        np.testing.assert_allclose(record["column_variance"], expected["column_variance"], rtol=1e-4, atol=1e-9)
    assert written.fields["c"]["image"] == str(photo) and written.fields["a"]["image"] == "a"


def test_user_mistakes(tmp_path):
    model = tiny_vit()
    x = torch.randn(3, 32, 32)
    with pytest.raises(ValueError, match="one mask per image"):
        write_paper_figures(model, [x], [None, None], out=tmp_path)
    with pytest.raises(ValueError, match="normalised \\[3, 32, 32\\]"):
        write_paper_figures(model, [torch.randn(3, 16, 16)], out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="mask of an image tensor"):
        write_paper_figures(model, [x], [np.ones((8, 8))], out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="outside the 4x4 patch grid"):
        write_paper_figures(model, [x], out=tmp_path, patches=[16], progress=False)
    with pytest.raises(ValueError, match="no images"):
        write_paper_figures(model, [], out=tmp_path)
