"""Swin V2 CR: timm 1.0.31 is the oracle (random non-zero weights, rectangular sizes and windows, <= 1e-5)."""

from __future__ import annotations

import pytest
import timm
import torch

import rectvit
from helpers import max_diff, randomize_
from rectvit.layers.window import fit_window, log_relative_coords
from rectvit.models.swin_cr import SwinTransformerV2Cr

TOL = 1e-5
SMALL = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(2, 2, 4, 4))
NAMES = rectvit.list_models("swinv2_cr_*")


def make_pair(name: str, **kw) -> tuple[torch.nn.Module, SwinTransformerV2Cr]:
    theirs = randomize_(timm.create_model(name, **kw)).eval()
    ours = rectvit.create_model(name, **kw).eval()
    rectvit.load_checkpoint(ours, theirs.state_dict())
    return theirs, ours


def assert_same(theirs, ours, x: torch.Tensor) -> None:
    with torch.no_grad():
        assert max_diff(theirs.forward_features(x), ours.forward_features(x)) <= TOL
        assert max_diff(theirs(x), ours(x)) <= TOL


# Default windows (grid / 8, rectangular on a rectangular grid), the extra-norm variant, windows that do
# not tile the stage grids (padding and the shift mask on the padded grid), and always_partition.
CASES = [
    ("swinv2_cr_tiny_224", (128, 64), {}),
    ("swinv2_cr_tiny_ns_224", (96, 224), {}),
    ("swinv2_cr_small_224", (96, 160), dict(window_size=(5, 3))),
    ("swinv2_cr_base_384", (64, 96), dict(always_partition=True)),
    ("swinv2_cr_tiny_224", (64, 128), dict(window_size=[(4, 8), (3, 3), (2, 5), (1, 2)])),
]


@pytest.mark.parametrize("name,size,kw", CASES, ids=lambda v: str(v).replace(" ", ""))
def test_parity_at_rectangular_size(name, size, kw, one_thread):
    theirs, ours = make_pair(name, img_size=size, num_classes=7, **SMALL, **kw)
    windows = [(b.window_size, b.shift_size) for s in ours.stages for b in s.blocks]
    assert windows == [(b.window_size, b.shift_size) for s in theirs.stages for b in s.blocks]
    assert_same(theirs, ours, torch.randn(2, 3, *size))


def test_registry_names():
    assert set(NAMES) == set(timm.list_models("swinv2_cr_*"))
    for n in ("swinv2_cr_tiny_224", "swinv2_cr_small_384", "swinv2_cr_base_ns_224", "swinv2_cr_small_ns_256"):
        assert n in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_registry_matches_timm_architecture(name):
    """Same keys and shapes as timm's model of that name; depths (1, 1, 6, 1) keep the build cheap and still
    place the every-6th-block extra norm of the huge and giant configs."""
    with torch.device("meta"):
        theirs = timm.create_model(name, depths=(1, 1, 6, 1))
        ours = rectvit.create_model(name, depths=(1, 1, 6, 1))
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {
        k: tuple(v.shape) for k, v in theirs.state_dict().items()
    }
    assert ours.img_size == tuple(theirs.img_size) and ours.num_classes == theirs.num_classes
    assert [b.window_size for s in ours.stages for b in s.blocks] == [
        tuple(b.window_size) for s in theirs.stages for b in s.blocks
    ]


@pytest.mark.parametrize(
    "change",
    [
        dict(img_size=(160, 96)),  # windows scale with the grid
        dict(img_size=(96, 128), window_size=(3, 5)),
        dict(window_ratio=4),
        dict(img_size=(64, 160), window_size=[(2, 2), (2, 3), (3, 2), (1, 1)], always_partition=True),
    ],
    ids=str,
)
def test_set_input_size_matches_timm(change, one_thread):
    theirs, ours = make_pair("swinv2_cr_tiny_224", img_size=(128, 64), **SMALL)
    theirs.set_input_size(**change)
    ours.set_input_size(**change)
    assert [b.window_size for s in ours.stages for b in s.blocks] == [
        tuple(b.window_size) for s in theirs.stages for b in s.blocks
    ]
    assert_same(theirs, ours, torch.randn(2, 3, *ours.img_size))
    rebuilt = SwinTransformerV2Cr(**ours.model_config)
    assert [b.window_size for s in rebuilt.stages for b in s.blocks] == [
        b.window_size for s in ours.stages for b in s.blocks
    ]


def test_dynamic_size_matches_timm(one_thread):
    theirs, ours = make_pair("swinv2_cr_tiny_224", img_size=(128, 64), dynamic_img_size=True, **SMALL)
    for size in [(128, 64), (64, 192), (96, 40), (36, 28)]:  # windows fixed at 4x2; masks per padded size
        assert_same(theirs, ours, torch.randn(2, 3, *size))


def test_forward_intermediates_match_timm(one_thread):
    theirs, ours = make_pair("swinv2_cr_tiny_ns_224", img_size=(96, 160), **SMALL)
    x = torch.randn(2, 3, 96, 160)
    for kw in [dict(), dict(indices=2), dict(indices=[0, -1], stop_early=True)]:
        with torch.no_grad():
            t_final, t_maps = theirs.forward_intermediates(x, **kw)
            o_final, o_maps = ours.forward_intermediates(x, **kw)
        assert len(t_maps) == len(o_maps)
        for t, o in zip(t_maps, o_maps):
            assert max_diff(t, o) <= TOL
    assert o_maps[0].shape == (2, 32, 24, 40)
    with pytest.raises(rectvit.RectViTError, match="NCHW"):
        ours.forward_intermediates(x, output_fmt="NLC")


def test_window_rules_and_coordinates_by_hand():
    assert fit_window((3, 20), (7, 7), shifted=True, always_partition=False) == ((3, 7), (0, 3))
    assert fit_window((3, 20), (7, 7), shifted=True, always_partition=True) == ((7, 7), (3, 3))
    assert fit_window((8, 8), (1, 4), shifted=True, always_partition=False) == ((1, 4), (0, 2))
    coords = log_relative_coords((1, 3))  # offsets (0, dx) for dx in [0,-1,-2 | 1,0,-1 | 2,1,0]
    dx = torch.tensor([0, -1, -2, 1, 0, -1, 2, 1, 0], dtype=torch.float32)
    assert torch.allclose(coords[:, 1], torch.sign(dx) * torch.log(1 + dx.abs()))
    assert torch.equal(coords[:, 0], torch.zeros(9))


def test_round_trip_and_bad_inputs(tmp_path):
    ours = randomize_(rectvit.create_model("swinv2_cr_tiny_224", img_size=(64, 96), **SMALL)).eval()
    ours.set_input_size(img_size=(96, 64), window_size=(3, 2))
    back = rectvit.load_model(rectvit.save_checkpoint(ours, tmp_path / "cr.safetensors")).eval()
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        assert torch.equal(back(x), ours(x))
    with pytest.raises(rectvit.InputSizeError, match="takes 96x64"):
        ours.check_input(torch.randn(1, 3, 64, 96))
    with pytest.raises(rectvit.InputSizeError, match="batch dimension"):
        ours(torch.randn(3, 96, 64))
    # A size the 4x4 patches do not tile is cropped as the patch convolution takes it (docs/models.md,
    # "Sizes the patches do not tile"): 66x99 is seen as its top-left 64x96.
    dyn = randomize_(
        rectvit.create_model("swinv2_cr_tiny_224", img_size=(64, 96), dynamic_img_size=True, **SMALL)
    ).eval()
    odd = torch.randn(1, 3, 66, 99)
    with torch.no_grad():
        torch.testing.assert_close(dyn(odd), dyn(odd[:, :, :64, :96].contiguous()), rtol=0, atol=1e-5)
    with pytest.raises(rectvit.InputSizeError, match="smaller than one patch"):
        dyn(torch.randn(1, 3, 3, 96))
    with pytest.raises(rectvit.InputSizeError, match="one window per stage"):
        ours.set_input_size(window_size=[(2, 2), (2, 2), (2, 2)])
    with pytest.raises(rectvit.RectViTError, match="one entry per stage"):
        rectvit.create_model("swinv2_cr_tiny_224", depths=(1, 1), num_heads=(2, 2, 2))
