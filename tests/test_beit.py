"""BEiT / BEiT v2: timm 1.0.31 is the oracle (random non-zero weights, rectangular sizes, float32, <= 1e-5).

timm's ``Beit`` has ``set_input_size`` (absolute table bicubic, relative-bias tables by its geometric
``resize_rel_pos_bias_table`` given the old window) but no dynamic size: our dynamic model at an input
size is checked against timm's model after ``set_input_size`` to that size, on the same weights.
"""

from __future__ import annotations

import re

import pytest
import timm
import torch

import rectvit
from helpers import max_diff, randomize_
from rectvit.models.beit import Beit, beit_relative_position_index

TOL = 1e-5
SMALL = dict(depth=2, embed_dim=64, num_heads=2)
NAMES = rectvit.list_models("beit*")

# Per-block tables (v1, v2), one shared table, and the optional absolute table with token pooling.
VARIANTS = [
    ("beit_base_patch16_224", {}),
    ("beitv2_base_patch16_224", {}),
    ("beit_base_patch16_224", dict(use_rel_pos_bias=False, use_shared_rel_pos_bias=True)),
    ("beit_large_patch16_224", dict(use_abs_pos_emb=True, global_pool="token")),
]


def make_pair(name: str, **kw) -> tuple[torch.nn.Module, Beit]:
    theirs = randomize_(timm.create_model(name, **kw)).eval()
    ours = rectvit.create_model(name, **kw).eval()
    load_true(ours, theirs.state_dict(), ours.grid_size)
    return theirs, ours


def load_true(model: Beit, sd: dict[str, torch.Tensor], grid: tuple[int, int]):
    """Load timm's ``sd`` made on the patch grid ``grid``: random tables show neither their grid nor their
    window, so both are named (docs/design.md, invariant 2); BEiT's bias window is the patch grid."""
    return rectvit.load_checkpoint(model, sd, source_grid=grid, source_windows=grid)


def assert_same(theirs, ours, x: torch.Tensor) -> None:
    with torch.no_grad():
        assert max_diff(theirs.forward_features(x), ours.forward_features(x)) <= TOL
        assert max_diff(theirs(x), ours(x)) <= TOL


@pytest.mark.parametrize("name,kw", VARIANTS, ids=lambda v: str(v).replace(" ", ""))
@pytest.mark.parametrize("size", [(64, 160), (112, 48)])
def test_parity_at_rectangular_size(name, kw, size, one_thread):
    theirs, ours = make_pair(name, img_size=size, num_classes=5, **SMALL, **kw)
    assert ours.grid_size == tuple(theirs.patch_embed.grid_size)
    assert_same(theirs, ours, torch.randn(2, 3, *size))


@pytest.mark.parametrize("name", NAMES)
def test_registry_matches_timm_architecture(name):
    with torch.device("meta"):
        theirs = timm.create_model(name, depth=1)
        ours = rectvit.create_model(name, depth=1)
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {
        k: tuple(v.shape) for k, v in theirs.state_dict().items()
    }
    assert ours.img_size == tuple(theirs.patch_embed.img_size) and ours.num_classes == theirs.num_classes
    assert ours.model_config["init_values"] == theirs.blocks[0].init_values


def test_registry_names():
    assert NAMES == [
        "beit_base_patch16_224",
        "beit_base_patch16_384",
        "beit_large_patch16_224",
        "beit_large_patch16_384",
        "beit_large_patch16_512",
        "beitv2_base_patch16_224",
        "beitv2_large_patch16_224",
    ]


def test_relative_position_index_matches_timm():
    from timm.models.beit import gen_relative_position_index

    for window in [(3, 5), (4, 4), (1, 6), (7, 2)]:
        assert torch.equal(beit_relative_position_index(window), gen_relative_position_index(window))


@pytest.mark.parametrize("name,kw", VARIANTS, ids=lambda v: str(v).replace(" ", ""))
def test_set_input_size_matches_timm(name, kw, one_thread):
    theirs, ours = make_pair(name, img_size=(64, 160), **SMALL, **kw)
    for size in [(112, 48), (96, 96)]:  # a chain: each step from the current window
        theirs.set_input_size(img_size=size)
        ours.set_input_size(img_size=size)
        assert ours.grid_size == tuple(theirs.patch_embed.grid_size)
        assert_same(theirs, ours, torch.randn(2, 3, *size))
    rebuilt = Beit(**ours.model_config)
    assert rebuilt.img_size == (96, 96)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}


@pytest.mark.parametrize("name,kw", VARIANTS[1:], ids=lambda v: str(v).replace(" ", ""))
def test_dynamic_size_equals_timm_resized(name, kw, one_thread):
    """One dynamic model (tables on the 4x6 window) against timm resized to each input's grid."""
    theirs, _ = make_pair(name, img_size=(64, 96), **SMALL, **kw)
    dyn = rectvit.create_model(name, img_size=(64, 96), dynamic_img_size=True, **SMALL, **kw).eval()
    weights = theirs.state_dict()
    load_true(dyn, weights, (4, 6))
    for size in [(64, 96), (96, 32), (48, 128)]:
        resized = timm.create_model(name, img_size=(64, 96), **SMALL, **kw).eval()
        resized.load_state_dict(weights)
        resized.set_input_size(img_size=size)
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            assert max_diff(resized(x), dyn(x)) <= TOL
            assert max_diff(resized(x), dyn(x)) <= TOL  # second call: the cached bias
    assert dyn.grid_size == (4, 6)


def test_dynamic_gradients_flow_into_the_tables():
    model = rectvit.create_model("beit_base_patch16_224", img_size=(32, 48), dynamic_img_size=True, **SMALL)
    randomize_(model)
    model(torch.randn(1, 3, 64, 32)).sum().backward()
    assert model.blocks[0].attn.relative_position_bias_table.grad.abs().sum() > 0


@pytest.mark.parametrize("fmt", ["NCHW", "NLC"])
def test_forward_intermediates_match_timm(fmt, one_thread):
    theirs, ours = make_pair("beitv2_base_patch16_224", img_size=(64, 176), **dict(SMALL, depth=3))
    x = torch.randn(2, 3, 64, 176)
    for kw in [dict(), dict(indices=2, norm=True), dict(indices=[0, -1], return_prefix_tokens=True)]:
        with torch.no_grad():
            t_final, t_maps = theirs.forward_intermediates(x, output_fmt=fmt, **kw)
            o_final, o_maps = ours.forward_intermediates(x, output_fmt=fmt, **kw)
        assert max_diff(t_final, o_final) <= TOL and len(t_maps) == len(o_maps)
        for t, o in zip(t_maps, o_maps):
            if kw.get("return_prefix_tokens"):
                assert max_diff(t[0], o[0]) <= TOL and max_diff(t[1], o[1]) <= TOL
            else:
                assert max_diff(t, o) <= TOL
    assert o_maps[0][0].shape == ((2, 64, 4, 11) if fmt == "NCHW" else (2, 44, 64))


def test_load_timm_weights_of_another_window_resamples_geometrically(one_thread):
    """timm weights on the architecture's default 14x14 window: nothing records it and random tables do
    not show it, so the default is a candidate, not evidence (docs/design.md, invariant 2) and the load
    is refused; named, the tables loaded into a 112x48 model equal timm's own resize."""
    theirs, _ = make_pair("beit_base_patch16_224", **SMALL)
    ours = rectvit.create_model("beit_base_patch16_224", img_size=(112, 48), **SMALL).eval()
    with pytest.raises(rectvit.AmbiguousGridError, match=r"14x14 -?\d\.\d\d \(architecture default window\)"):
        rectvit.load_checkpoint(ours, theirs.state_dict())
    report = load_true(ours, theirs.state_dict(), (14, 14))
    rows = [r for r in report.rows if r[0].endswith("relative_position_bias_table")]
    assert len(rows) == 2 and "geometric" in rows[0][3] and "14x14 -> 7x3" in rows[0][3]
    assert "source_windows argument" in rows[0][4]
    theirs.set_input_size(img_size=(112, 48))
    assert_same(theirs, ours, torch.randn(2, 3, 112, 48))


def test_transposed_window_is_not_guessed():
    """(2h-1)(2w-1) is the same for 4x10 and 10x4: a flat table with nothing recording its window, loaded
    into a model of neither window, is an AmbiguousGridError that leads with source_windows and lists every
    window of its rows (the architecture default 14x14 does not fit), the 3 class-token rows set aside."""
    theirs, _ = make_pair("beit_base_patch16_224", img_size=(64, 160), **SMALL)
    ours = rectvit.create_model("beit_base_patch16_224", img_size=(96, 96), **SMALL)
    with pytest.raises(rectvit.AmbiguousGridError) as e:
        rectvit.load_checkpoint(ours, theirs.state_dict())
    msg = str(e.value)
    assert msg.startswith("blocks.0.attn.relative_position_bias_table: pass source_windows=(wh, ww) (")
    assert "133 rows (and 3 class-token rows)" in msg and "source_windows=14 for BEiT weights" in msg
    assert sorted(e.value.candidates) == [(1, 67), (4, 10), (10, 4), (67, 1)]  # (2h-1)(2w-1) = 133
    assert re.search(r"4x10 -?\d\.\d\d", msg) and re.search(r"10x4 -?\d\.\d\d", msg) and "1x67 -" in msg


def test_save_and_load_model_round_trip(tmp_path):
    ours = randomize_(rectvit.create_model("beit_base_patch16_224", img_size=(64, 160), **SMALL)).eval()
    path = rectvit.save_checkpoint(ours, tmp_path / "beit.safetensors")
    back = rectvit.load_model(path).eval()
    x = torch.randn(1, 3, 64, 160)
    with torch.no_grad():
        assert torch.equal(back(x), ours(x))
    other = rectvit.load_model(path, img_size=(160, 64))  # transposed: the recorded window decides
    assert any("window recorded" in r[4] for r in other.load_report.rows)


def test_bad_inputs_are_clear_errors():
    ours = rectvit.create_model("beit_base_patch16_224", img_size=(64, 96), **SMALL)
    with pytest.raises(rectvit.InputSizeError, match="takes 64x96"):
        ours.check_input(torch.randn(1, 3, 96, 64))
    with pytest.raises(rectvit.InputSizeError, match="input channel"):
        ours(torch.randn(1, 1, 64, 96))
    with pytest.raises(rectvit.InputSizeError, match="batch dimension"):
        ours(torch.randn(3, 64, 96))
    # A size the patches do not tile is cropped as the patch convolution takes it (docs/models.md):
    # 70x99 is seen as its top-left 64x96.
    dyn = randomize_(
        rectvit.create_model("beit_base_patch16_224", img_size=(64, 96), dynamic_img_size=True, **SMALL)
    ).eval()
    odd = torch.randn(1, 3, 70, 99)
    with torch.no_grad():
        assert max_diff(dyn(odd), dyn(odd[:, :, :64, :96].contiguous())) <= TOL
    with pytest.raises(rectvit.InputSizeError, match="smaller than one patch"):
        dyn(torch.randn(1, 3, 70, 8))
    with pytest.raises(rectvit.RectViTError, match="global_pool"):
        rectvit.create_model("beit_base_patch16_224", global_pool="map", **SMALL)
