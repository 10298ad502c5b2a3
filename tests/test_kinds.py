"""The model kinds: one table, each kind's name round-trips, and each property is what the kind's spelling says."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from conftest import tiny_vit

import patchfield as pf
import patchfield.models as pm
from patchfield.kinds import (
    AWD,
    AWD_DIP,
    KIND_NAMES,
    KINDS,
    VIT,
    WINFT_PAPER,
    WINFT_RESTRICT,
    Kind,
    as_kind,
    kind_by_name,
)
from patchfield.training import TrainConfig

# What every place of the code used to ask of the kind's name, and what its Kind now says.
EXPECTED = {
    #                 patch    mode        attends drops  dip    windows ground truth
    "vit":            (None,    None,       False, False, False, False, False),
    "awd":            ("awd",   None,       True,  False, False, False, True),
    "awd-dip":        ("awd",   None,       True,  True,  True,  False, True),
    "winft-paper":    ("winft", "paper",    False, False, True,  True,  True),
    "winft-restrict": ("winft", "restrict", False, False, True,  True,  True),
}


def test_the_table_holds_the_five_kinds_in_order():
    assert KIND_NAMES == ("vit", "awd", "awd-dip", "winft-paper", "winft-restrict")
    assert KINDS == (VIT, AWD, AWD_DIP, WINFT_PAPER, WINFT_RESTRICT)
    assert pf.KINDS is KINDS and pf.Kind is Kind and pf.kind_by_name("awd") is AWD


@pytest.mark.parametrize("kind", KINDS, ids=KIND_NAMES)
def test_every_kind_round_trips_through_its_name(kind):
    assert kind_by_name(kind.name) is kind and as_kind(kind) is kind and as_kind(kind.name) is kind
    assert str(kind) == kind.name
    assert pickle.loads(pickle.dumps(kind)) is kind and copy.deepcopy(kind) is kind  # one object per kind
    cfg = TrainConfig(model="m", kind=kind.name, groundtruth="gt")
    assert cfg.kind is kind and cfg.to_dict()["kind"] == kind.name
    assert TrainConfig.from_dict(cfg.to_dict()).kind is kind
    assert TrainConfig(model="m", kind=kind, groundtruth="gt").mismatches(cfg) == []


@pytest.mark.parametrize("name", KIND_NAMES)
def test_every_property_is_what_the_old_string_checks_said(name):
    kind = kind_by_name(name)
    got = (kind.patch, kind.winft_mode, kind.attends_fields, kind.drops_patches, kind.dip_fields, kind.learns_windows,
           kind.uses_groundtruth)
    assert got == EXPECTED[name]
    # the string checks the Kind replaced, one by one
    assert kind.attends_fields == (name in ("awd", "awd-dip"))  # needs a store to evaluate; forward(field_mask=)
    assert kind.drops_patches == (name == "awd-dip")  # forward(dropped=)
    assert kind.dip_fields == (name != "awd" and name != "vit")  # attach_fields(dip=), expected_interactions(dip=)
    assert kind.learns_windows == name.startswith("winft")  # window logits and the BCE
    assert kind.uses_groundtruth == (name != "vit")  # --groundtruth to train
    assert kind.winft_mode == (name.split("-", 1)[1] if name.startswith("winft") else None)


def test_an_unknown_name_is_one_line_naming_the_known_kinds():
    for bad in ("cnn", "AWD", "", None):
        with pytest.raises(ValueError, match=r"^unknown kind .*: choose one of vit, awd, awd-dip, winft-paper, "
                                             r"winft-restrict$"):
            kind_by_name(bad)
    with pytest.raises(ValueError, match="unknown kind 'cnn'"):
        TrainConfig(model="m", kind="cnn")


def test_an_inconsistent_kind_is_refused():
    with pytest.raises(ValueError, match="mode"):
        Kind("w", "W", patch="winft", learns_windows=True)
    with pytest.raises(ValueError, match="attend"):
        Kind("a", "A", patch="awd")
    with pytest.raises(ValueError, match="dropping"):
        Kind("a", "A", patch="awd", attends_fields=True, drops_patches=True)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_NAMES)
def test_apply_patches_the_model_the_kind_names(kind):
    model = kind.apply(tiny_vit(depth=1))
    assert pm.patched_kind(model) == kind.patch
    assert getattr(model, "winft_mode", None) == kind.winft_mode


def test_forward_passes_only_the_arguments_the_kind_takes():
    """awd attends within the mask alone (no D), awd-dip also drops D, the plain ViT and WinfT take neither."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    mask = torch.eye(16, dtype=torch.bool).expand(2, 16, 16) | (torch.rand(2, 16, 16) < 0.3)
    dropped = torch.zeros(2, 16, dtype=torch.bool)
    dropped[:, :3] = True
    awd = pm.apply_awd(tiny_vit(depth=1)).eval()
    with torch.no_grad():
        plain, _, _ = AWD.forward(awd, x, mask, dropped)  # dropped ignored
        assert torch.equal(plain, awd(x, field_mask=mask, dropped=None))
        dip, _, counts = AWD_DIP.forward(awd, x, mask, dropped)
        assert torch.equal(dip, awd(x, field_mask=mask, dropped=dropped)) and not torch.equal(dip, plain)
        assert counts.tolist() == mask.sum((1, 2)).float().tolist()
        vit = tiny_vit(depth=1).eval()
        logits, s, counts = VIT.forward(vit, x, mask, dropped)
        assert torch.equal(logits, vit(x)) and s is None and counts.tolist() == [256.0, 256.0]
        winft = pm.apply_winft(tiny_vit(depth=1), "paper").eval()
        _, s, counts = WINFT_PAPER.forward(winft, x, window_logits=True)
        assert s is not None and counts.shape == (2,)
        assert WINFT_PAPER.forward(winft, x)[1] is None
    with pytest.raises(ValueError, match="needs the fields"):
        AWD.forward(awd, x)


def test_winft_kinds_name_modes_the_patch_knows_and_kinds_import_no_timm():
    import subprocess
    import sys

    assert [k.winft_mode for k in KINDS if k.patch == "winft"] == list(pm.MODES)
    code = "import sys, patchfield.kinds; print('timm' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "False"  # command-line parsers read the kinds; the patches (and timm) load when a kind is applied
