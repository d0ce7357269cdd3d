"""RoPE ViTs (EVA-02, rope-ViT axial/mixed, DINOv3): timm 1.0.31 is the oracle (random non-zero
weights, rectangular sizes, float32, <= 1e-5)."""

from __future__ import annotations

import json

import pytest
import torch

import rectvit
from helpers import distinct_names, max_diff, randomize_, timm_pair
from rectvit.errors import InputSizeError, RectViTError
from rectvit.models import get_model_entry
from rectvit.models.eva import Eva

timm = pytest.importorskip("timm")

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = 1e-5
TINY = dict(depth=1, embed_dim=64, num_heads=2)  # head_dim 32: divisible by 4 for 2-D RoPE

EVA_NAMES = [n for n in rectvit.list_models() if get_model_entry(n).cls is Eva]
EVA_ARCHS = distinct_names(EVA_NAMES)  # parity runs once per architecture (widths and sizes aside)


def _rect(name: str, rows: int = 3, cols: int = 5) -> tuple[int, int]:
    p = 14 if "patch14" in name else 16
    return (rows * p, cols * p)


def assert_same(theirs, ours, x: torch.Tensor, tol: float = TOL) -> None:
    with torch.no_grad():
        assert max_diff(theirs.forward_features(x), ours.forward_features(x)) <= tol
        assert max_diff(theirs(x), ours(x)) <= tol


# --------------------------------------------------------------------------------------------------
# Names and architectures


def test_registry_has_timm_names():
    expected = {
        "eva02_tiny_patch14_224", "eva02_small_patch14_224", "eva02_base_patch14_224", "eva02_large_patch14_224",
        "eva02_tiny_patch14_336", "eva02_small_patch14_336", "eva02_base_patch14_448", "eva02_large_patch14_448",
        "vit_base_patch16_rope_reg1_gap_256",
    }  # fmt: skip
    for size in ("small", "base", "large"):
        expected |= {f"vit_{size}_patch16_rope{v}_224" for v in ("", "_mixed", "_ape", "_mixed_ape")}
        expected |= {f"vit_{size}_patch16_dinov3", f"vit_{size}_patch16_dinov3_qkvb"}
    assert set(EVA_NAMES) == expected
    assert expected <= set(timm.list_models())


@pytest.mark.parametrize("name", EVA_NAMES)
def test_registry_matches_timm_architecture(name):
    """Default configs build timm's parameters (an absolute table split into grid + prefix rows); one
    block stands for all (the blocks are alike, their count is the config's ``depth``)."""
    assert get_model_entry(name).config["depth"] == (24 if "large" in name else 12)
    with torch.device("meta"):
        theirs = timm.create_model(name, depth=1)
        ours = rectvit.create_model(name, depth=1)
    t = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    o = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    if "pos_embed" in t:
        flat = t.pop("pos_embed")
        h, w = ours.grid_size
        assert o.pop("pos_embed") == (1, h, w, flat[-1])
        prefix = o.pop("prefix_pos_embed", (1, 0, flat[-1]))
        assert flat == (1, prefix[1] + h * w, flat[-1])
    assert o == t
    assert ours.img_size == tuple(theirs.patch_embed.img_size)
    assert ours.num_classes == theirs.num_classes
    assert ours.dynamic_img_size == theirs.dynamic_img_size
    assert ours.global_pool == theirs.global_pool


# --------------------------------------------------------------------------------------------------
# Parity


@pytest.mark.parametrize("name", EVA_ARCHS)
def test_parity_at_rectangular_size(name):
    kw = dict(TINY, depth=2) if "mixed" in name else TINY  # mixed: per-block frequencies
    size = _rect(name)
    theirs, ours = timm_pair(name, img_size=size, **kw)
    assert ours.num_prefix_tokens == theirs.num_prefix_tokens
    assert_same(theirs, ours, torch.randn(2, 3, *size))


@pytest.mark.parametrize("name", ["eva02_small_patch14_224", "vit_small_patch16_rope_mixed_ape_224"])
def test_parity_full_width(name):
    size = _rect(name, 8, 3)
    theirs, ours = timm_pair(name, img_size=size, depth=2)
    assert_same(theirs, ours, torch.randn(1, 3, *size))


@pytest.mark.parametrize(
    "name",
    [
        "eva02_tiny_patch14_224",
        "vit_small_patch16_rope_ape_224",
        "vit_small_patch16_rope_mixed_224",
        "vit_small_patch16_dinov3",
        "vit_base_patch16_rope_reg1_gap_256",
    ],
)
def test_dynamic_sizes_match_timm(name):
    kw = dict(TINY, depth=2) if "mixed" in name else TINY
    theirs, ours = timm_pair(name, img_size=_rect(name, 4, 4), dynamic_img_size=True, **kw)
    for rows, cols in [(4, 4), (2, 9), (9, 2), (1, 16), (5, 3)]:
        assert_same(theirs, ours, torch.randn(2, 3, *_rect(name, rows, cols)))


@pytest.mark.parametrize("name", ["eva02_tiny_patch14_224", "vit_small_patch16_rope_mixed_ape_224"])
def test_set_input_size_matches_timm(name):
    theirs, ours = timm_pair(name, img_size=_rect(name, 4, 4), **dict(TINY, depth=2))
    for rows, cols in [(2, 6), (7, 3)]:
        size = _rect(name, rows, cols)
        theirs.set_input_size(img_size=size)
        ours.set_input_size(img_size=size)
        assert ours.img_size == size and ours.model_config["img_size"] == list(size)
        if ours.pos_embed is not None:
            assert tuple(ours.pos_embed.shape[1:3]) == (rows, cols)
        assert_same(theirs, ours, torch.randn(2, 3, *size))


@pytest.mark.parametrize("fmt", ["NCHW", "NLC"])
@pytest.mark.parametrize("name", ["vit_small_patch16_rope_mixed_224", "vit_small_patch16_dinov3"])
def test_forward_intermediates_match_timm(name, fmt):
    size = _rect(name, 2, 7)
    theirs, ours = timm_pair(name, img_size=size, **dict(TINY, depth=3))
    x = torch.randn(2, 3, *size)
    for kw in [dict(), dict(indices=2, norm=True), dict(indices=[0, -1], return_prefix_tokens=True)]:
        with torch.no_grad():
            t_final, t_maps = theirs.forward_intermediates(x, output_fmt=fmt, **kw)
            o_final, o_maps = ours.forward_intermediates(x, output_fmt=fmt, **kw)
        assert max_diff(t_final, o_final) <= TOL and len(t_maps) == len(o_maps)
        for t, o in zip(t_maps, o_maps):
            pairs = zip(t, o) if kw.get("return_prefix_tokens") else [(t, o)]
            for a, b in pairs:
                assert max_diff(a, b) <= TOL
    with torch.no_grad():
        maps = ours.forward_intermediates(x, indices=1, stop_early=True, intermediates_only=True)
    assert maps[0].shape == (2, 64, 2, 7)  # the real (h, w) grid


def test_reset_classifier_and_pre_logits_match_timm():
    theirs, ours = timm_pair("vit_small_patch16_rope_224", img_size=(48, 80), **TINY)
    for m in (theirs, ours):
        m.reset_classifier(7, global_pool="avg")
    randomize_(theirs, seed=5)
    rectvit.load_checkpoint(ours, theirs.state_dict(), source_grid=ours.grid_size)  # random tables: grid given
    x = torch.randn(2, 3, 48, 80)
    assert_same(theirs, ours, x)
    with torch.no_grad():
        assert max_diff(theirs.forward_head(theirs.forward_features(x), pre_logits=True),
                         ours.forward_head(ours.forward_features(x), pre_logits=True)) <= TOL  # fmt: skip


# --------------------------------------------------------------------------------------------------
# RoPE settings travel with the model


def test_rope_settings_recorded_and_rebuilt():
    ours = rectvit.create_model("eva02_tiny_patch14_224", img_size=(56, 98), **TINY)
    cfg = ours.model_config
    assert cfg["ref_feat_shape"] == [16, 16] and cfg["rope_normalize_coords"] == "separate"
    assert rectvit.create_model("vit_small_patch16_rope_224", **TINY).model_config["rope_normalize_coords"] is None
    assert rectvit.create_model("vit_small_patch16_dinov3", **TINY).model_config["rope_normalize_coords"] == "separate"
    ours.set_input_size(img_size=(28, 140))
    rebuilt = Eva(**json.loads(json.dumps(ours.model_config))).eval()
    rebuilt.load_state_dict(randomize_(ours).state_dict())
    x = torch.randn(1, 3, 28, 140)
    with torch.no_grad():
        assert torch.equal(ours.eval()(x), rebuilt(x))


def test_save_and_load_model_round_trip(tmp_path):
    ours = randomize_(rectvit.create_model("vit_small_patch16_rope_mixed_ape_224", img_size=(32, 96), **TINY)).eval()
    path = rectvit.save_checkpoint(ours, tmp_path / "m.safetensors")
    back = rectvit.load_model(path).eval()
    x = torch.randn(1, 3, 32, 96)
    with torch.no_grad():
        assert torch.equal(ours(x), back(x))
    assert back.load_report.source_grid == (2, 6)


def test_normalisation_choice_matters_only_off_the_reference_shape():
    """EVA-02 rescales index coordinates to its 16x16 reference: per axis ("separate", timm) or by the
    longer side ("max", aspect kept). On a square grid the two agree; on a rectangle they differ."""
    sep = randomize_(rectvit.create_model("eva02_tiny_patch14_224", dynamic_img_size=True, **TINY)).eval()
    mx = rectvit.create_model("eva02_tiny_patch14_224", dynamic_img_size=True, rope_normalize_coords="max", **TINY)
    mx.load_state_dict(sep.state_dict())
    mx.eval()
    with torch.no_grad():
        sq = torch.randn(1, 3, 56, 56)
        assert torch.equal(sep(sq), mx(sq))
        rect = torch.randn(1, 3, 28, 112)
        assert max_diff(sep(rect), mx(rect)) > 1e-4


def test_rope_cache_serves_repeated_grids_and_gradients_reach_mixed_freqs():
    ours = rectvit.create_model("vit_small_patch16_rope_mixed_224", dynamic_img_size=True, **dict(TINY, depth=2))
    x = torch.randn(1, 3, 32, 96)
    ours(x).square().sum().backward()
    assert ours.rope.freqs.grad is not None and ours.rope.freqs.grad.abs().sum() > 0
    assert len(ours.rope._cache) == 0  # learning: computed, not cached
    with torch.no_grad():
        a = ours(x)
        b = ours(x)
    assert torch.equal(a, b) and len(ours.rope._cache) == 1


def test_forward_variable_equals_one_by_one():
    model = randomize_(rectvit.create_model("vit_small_patch16_rope_mixed_224", **dict(TINY, depth=2))).eval()
    xs = [torch.randn(3, 32, 96), torch.randn(3, 128, 16), torch.randn(3, 48, 48)]
    outs = rectvit.forward_variable(model, xs)
    for x, out in zip(xs, outs):
        dyn = rectvit.create_model("vit_small_patch16_rope_mixed_224", dynamic_img_size=True, **dict(TINY, depth=2))
        dyn.load_state_dict(model.state_dict())
        with torch.no_grad():
            assert max_diff(dyn.eval()(x[None])[0], out) <= TOL


# --------------------------------------------------------------------------------------------------
# Bad input


def test_check_input_errors():
    ours = rectvit.create_model("vit_small_patch16_rope_224", img_size=(32, 64), **TINY)
    with pytest.raises(InputSizeError, match="input channel"):
        ours(torch.randn(1, 1, 32, 64))
    with pytest.raises(InputSizeError, match="set_input_size"):
        ours.check_input(torch.randn(1, 3, 64, 32))
    with pytest.raises(InputSizeError, match="batch"):
        ours(torch.randn(3, 32, 64))
    dyn = rectvit.create_model("vit_small_patch16_dinov3", **TINY).eval()
    with pytest.raises(InputSizeError, match="smaller than one patch"):
        dyn(torch.randn(1, 3, 8, 64))
    x = torch.randn(1, 3, 40, 64)  # not tiled by 16x16 patches: cropped like the convolution (docs/models.md)
    with torch.no_grad():
        torch.testing.assert_close(dyn(x), dyn(x[..., :32, :]), rtol=0, atol=1e-6)


def test_bad_options_are_clear_errors():
    with pytest.raises(RectViTError, match="map"):
        rectvit.create_model("vit_small_patch16_rope_224", global_pool="map", **TINY)
    with pytest.raises(RectViTError, match="divisible by 4"):
        rectvit.create_model("vit_small_patch16_rope_224", embed_dim=36, num_heads=2, depth=1)
    with pytest.raises(RectViTError, match="ref_grid"):
        rectvit.create_model("vit_small_patch16_rope_224", rope_normalize_coords="max", **TINY)
    with pytest.raises(RectViTError, match="post-norm"):
        rectvit.create_model("eva02_tiny_patch14_224", use_post_norm=True, **TINY)


# --------------------------------------------------------------------------------------------------
# The aspect-ratio study (bench/positions.py): its task and models


def test_position_study_task_and_models():
    positions = pytest.importorskip("bench.positions")
    g = torch.Generator().manual_seed(0)
    for size in [(32, 128), (512, 32)]:
        x, y = positions.make_batch(16, size, g)
        h, w = size
        cells = x.reshape(16, 4, h // 4, 4, w // 4).sum((2, 4)).flatten(1)  # (band, segment) sums
        assert torch.equal(cells.argmax(1), y)  # the label is the cell that holds the chirp
    models = {key: positions.build(key).eval() for key, _ in positions.ROWS.values()}
    x = torch.randn(1, 1, 512, 32)
    outs = {}
    for row, (key, use) in positions.ROWS.items():
        with torch.no_grad():
            outs[row] = positions.at_size(models, key, use, (512, 32))(x)
        assert outs[row].shape == (1, 16)
    assert positions.at_size(models, "learned", "bilinear", (512, 32)).pos_embed.shape[1:3] == (64, 4)
    for kind in ("axial", "mixed"):  # one trained model, three coordinate rules: three answers off the grid
        a, b, c = (outs[f"RoPE {kind}, {use}"] for use in ("none", "separate", "max"))
        assert not torch.allclose(a, b) and not torch.allclose(b, c)
