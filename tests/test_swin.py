"""Swin v1/v2: parity with timm (the oracle) at square and rectangular sizes, resizing, dynamic sizes, errors."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import rectvit
from conftest import randomize_
from rectvit.errors import InputSizeError
from rectvit.models.swin import SwinTransformer, SwinTransformerV2
from rectvit.resample import resample_relative_bias_table

timm = pytest.importorskip("timm")
from timm.models.swin_transformer import SwinTransformer as TimmSwin  # noqa: E402
from timm.models.swin_transformer_v2 import SwinTransformerV2 as TimmSwinV2  # noqa: E402

TOL = 1e-5
SMALL = dict(embed_dim=32, depths=(2, 2), num_heads=(2, 4), num_classes=10, window_size=7)
CLASSES = {False: (SwinTransformer, TimmSwin), True: (SwinTransformerV2, TimmSwinV2)}


pytestmark = pytest.mark.usefixtures("one_thread")


def make_pair(v2: bool, seed: int = 0, **kw):
    """A timm model with random non-zero weights and ours loaded from its state dict, both in eval mode."""
    ours_cls, timm_cls = CLASSES[v2]
    timm_kw = dict(kw)
    if timm_kw.pop("dynamic_img_size", False):
        timm_kw["strict_img_size"] = False
    ref = randomize_(timm_cls(**timm_kw), seed=seed).eval()
    ours = ours_cls(**kw).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


def maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def assert_parity(ours, ref, size, batch: int = 2) -> None:
    """Logits, forward_features and every forward_intermediates map agree with timm at ``size``."""
    x = torch.randn(batch, ours.in_chans, *size)
    with torch.no_grad():
        assert maxdiff(ours(x), ref(x)) <= TOL
        assert maxdiff(ours.forward_features(x), ref.forward_features(x)) <= TOL
        final, maps = ours.forward_intermediates(x)
        ref_final, ref_maps = ref.forward_intermediates(x)
        assert maxdiff(final, ref_final) <= TOL
        assert len(maps) == len(ref_maps) == len(ours.layers)
        for i, (m, r) in enumerate(zip(maps, ref_maps)):
            grid = ours.stage_grids(size)[i]
            assert tuple(m.shape[-2:]) == grid  # the real rectangular shape of every stage
            assert maxdiff(m, r) <= TOL
        nhwc = ours.forward_intermediates(x, indices=1, norm=True, output_fmt="NHWC", intermediates_only=True)
        ref_last = ref.forward_intermediates(x, indices=1, norm=True, intermediates_only=True)[0]
        assert maxdiff(nhwc[0], ref_last.permute(0, 2, 3, 1)) <= TOL


# Tall, wide, strip-like and tiny-height sizes: (48, 320) makes stage 1 a 6x40 grid, smaller than the
# window along H, so that stage uses a (6, 7) window and shifts only along W.
SIZES = [(448, 224), (224, 448), (320, 192), (384, 128), (48, 320)]


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
@pytest.mark.parametrize("size", [None, *SIZES], ids=lambda s: "square" if s is None else f"{s[0]}x{s[1]}")
def test_parity_with_timm(v2, size):
    if size is None:
        size = (256, 256) if v2 else (224, 224)
    ours, ref = make_pair(v2, img_size=size, **SMALL)
    assert ours.img_size == size and ours.grid_size == (size[0] // 4, size[1] // 4)
    assert_parity(ours, ref, size)


def test_clipped_window_is_grid_along_short_axis():
    ours = SwinTransformer(img_size=(48, 320), **SMALL)
    assert ours.window_size == ((7, 7), (6, 7))
    table = ours.layers[1].blocks[0].attn.relative_position_bias_table
    assert table.shape == ((2 * 6 - 1) * (2 * 7 - 1), 4)
    assert ours.layers[1].blocks[1].shift_size == (0, 3)


@pytest.mark.parametrize(
    "name,v2,size", [("swin_tiny_patch4_window7_224", False, (224, 160)), ("swinv2_tiny_window8_256", True, (256, 192))]
)
def test_registry_config_parity(name, v2, size):
    ref = randomize_(timm.create_model(name, pretrained=False, img_size=size), seed=1).eval()
    ours = rectvit.create_model(name, img_size=size).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        assert maxdiff(ours(x), ref(x)) <= TOL
    assert ours.window_size == tuple(tuple(s.blocks[0].window_size) for s in ref.layers)


def test_registry_names_and_overrides():
    names = rectvit.list_models("swin*")
    for name in [
        "swin_tiny_patch4_window7_224",
        "swin_small_patch4_window7_224",
        "swin_base_patch4_window7_224",
        "swin_base_patch4_window12_384",
        "swinv2_tiny_window8_256",
        "swinv2_small_window8_256",
        "swinv2_tiny_window16_256",
    ]:
        assert name in names
    m = rectvit.create_model("swin_base_patch4_window12_384", depths=(1, 1), num_heads=(2, 4), embed_dim=16)
    assert m.img_size == (384, 384) and m.window_size == ((12, 12), (12, 12))


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_set_input_size_same_window_matches_timm(v2):
    base = (256, 256) if v2 else (224, 224)
    ours, ref = make_pair(v2, img_size=base, **SMALL)
    tables = {k: v.clone() for k, v in ours.state_dict().items()}
    for size in [(320, 192), (128, 384)]:
        ours.set_input_size(img_size=size, window_size=7)
        ref.set_input_size(img_size=size, window_size=7)
        assert ours.img_size == size and ours.window_size == ((7, 7), (7, 7))
        assert all(torch.equal(v, tables[k]) for k, v in ours.state_dict().items())  # no table changed
        assert_parity(ours, ref, size, batch=1)


def test_set_input_size_default_scales_windows_like_timm():
    ours, ref = make_pair(True, img_size=(224, 224), **SMALL)
    ours.set_input_size(img_size=(448, 224))
    ref.set_input_size(img_size=(448, 224))
    assert ours.window_size == ((14, 7), (14, 7))
    assert ours.window_size == tuple(tuple(s.blocks[0].window_size) for s in ref.layers)
    assert_parity(ours, ref, (448, 224), batch=1)


def test_v2_window_change_matches_timm():
    ours, ref = make_pair(True, img_size=(224, 224), **SMALL)
    ours.set_input_size(img_size=(448, 224), window_size=(14, 7))
    ref.set_input_size(img_size=(448, 224), window_size=(14, 7))
    assert ours.layers[0].blocks[0].attn.relative_coords_table.shape == (1, 27, 13, 2)
    assert_parity(ours, ref, (448, 224), batch=1)


def test_v1_window_change_resamples_tables_bicubically():
    ours, _ = make_pair(False, img_size=(224, 224), **SMALL)
    x224 = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        before = ours(x224)
    old = {n: p.detach().clone() for n, p in ours.named_parameters() if n.endswith("relative_position_bias_table")}
    assert len(old) == 4

    ours.set_input_size(img_size=(448, 224), window_size=(14, 7))
    assert ours.window_size == ((14, 7), (14, 7))
    new = {n: p for n, p in ours.named_parameters() if n.endswith("relative_position_bias_table")}
    for name, table in old.items():
        heads = table.shape[1]
        grid = table.T.reshape(1, heads, 13, 13)  # the table's 2-D form (2*7-1, 2*7-1)
        expected = F.interpolate(grid, size=(27, 13), mode="bicubic", align_corners=False)
        expected = expected.reshape(heads, 27 * 13).T
        assert new[name].shape == (27 * 13, heads)
        assert maxdiff(new[name].detach(), expected) <= 1e-6
    index = ours.layers[0].blocks[0].attn.relative_position_index
    assert index.shape == (14 * 7, 14 * 7) and int(index.max()) == 27 * 13 - 1
    with torch.no_grad():
        out = ours(torch.randn(1, 3, 448, 224))
        assert torch.isfinite(out).all()

    # Same window again: nothing is resampled; outputs are bit-equal to a model built at that window.
    state = {k: v.clone() for k, v in ours.state_dict().items()}
    ours.set_input_size(img_size=(224, 224), window_size=(14, 7))
    assert all(torch.equal(v, state[k]) for k, v in ours.state_dict().items())
    fresh = SwinTransformer(img_size=(224, 224), **{**SMALL, "window_size": (14, 7)}).eval()
    fresh.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(ours(x224), fresh(x224))

    # And a model whose window never changed gives bit-equal outputs after an image-size-only change.
    keep, _ = make_pair(False, img_size=(224, 224), **SMALL)
    keep.set_input_size(img_size=(320, 192), window_size=7)
    keep.set_input_size(img_size=(224, 224), window_size=7)
    with torch.no_grad():
        assert torch.equal(keep(x224), before)


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_dynamic_sizes_match_timm(v2):
    ours, ref = make_pair(v2, img_size=(224, 224), dynamic_img_size=True, **SMALL)
    assert ours.dynamic_img_size and ref.dynamic_img_size
    # 32x32 makes 8x8 and 4x4 grids: smaller than the window, padded to it (timm's dynamic behaviour).
    for size in [(160, 288), (96, 64), (32, 32), (224, 224)]:
        assert_parity(ours, ref, size, batch=1)
    shifted = ours.layers[0].blocks[1]
    assert len(shifted._masks) >= 3  # one cached mask per padded size
    sizes = {key[0] for key in shifted._masks}
    assert (42, 77) in sizes  # 40x72 padded to multiples of 7


def test_mask_cache_follows_window_changes():
    ours = SwinTransformer(img_size=(224, 224), dynamic_img_size=True, **SMALL).eval()
    with torch.no_grad():
        ours(torch.randn(1, 3, 96, 96))
    assert ours.layers[0].blocks[1]._masks
    ours.set_input_size(window_size=(8, 4))
    assert not ours.layers[0].blocks[1]._masks
    with torch.no_grad():
        assert torch.isfinite(ours(torch.randn(1, 3, 96, 96))).all()


@pytest.mark.parametrize("pool", ["avg", "max", "avgmax", ""])
def test_head_pooling_and_reset_classifier(pool):
    ours, ref = make_pair(False, img_size=(128, 96), **{**SMALL, "global_pool": pool})
    x = torch.randn(2, 3, 128, 96)
    with torch.no_grad():
        feats = ours.forward_features(x)
        assert feats.shape == (2, 16, 12, 64)  # NHWC
        assert maxdiff(ours.forward_head(feats), ref.forward_head(feats)) <= TOL
        assert maxdiff(ours.forward_head(feats, pre_logits=True), ref.forward_head(feats, pre_logits=True)) <= TOL
    ours.reset_classifier(3, global_pool="avg")
    assert ours(x).shape == (2, 3) and ours.model_config["num_classes"] == 3
    ours.reset_classifier(0)
    assert ours(x).shape == (2, 64)


@pytest.mark.parametrize("cls", [SwinTransformer, SwinTransformerV2])
def test_model_config_round_trip(cls):
    m = cls(img_size=(128, 96), **SMALL)
    m.set_input_size(img_size=(192, 96), window_size=(6, 3))
    config = json.loads(json.dumps(m.model_config))
    rebuilt = cls(**config)
    assert rebuilt.img_size == (192, 96) and rebuilt.window_size == m.window_size
    rebuilt.load_state_dict(m.state_dict(), strict=True)


def test_errors_name_the_values():
    m = SwinTransformer(img_size=(224, 224), **SMALL).eval()
    with pytest.raises(InputSizeError, match=r"320x192.*224x224.*stage 1: grid 28x28, window 7x7.*set_input_size"):
        m(torch.randn(1, 3, 320, 192))
    with pytest.raises(InputSizeError, match=r"expected 3 input channel\(s\), got 1.*in_chans=1"):
        m(torch.randn(1, 1, 224, 224))
    with pytest.raises(InputSizeError, match=r"\(B, 3, H, W\)"):
        m(torch.randn(3, 224, 224))

    dyn = SwinTransformer(img_size=(224, 224), dynamic_img_size=True, **SMALL).eval()
    with pytest.raises(InputSizeError, match=r"input 226x224.*patch size 4x4.*stage 0.*228x224"):
        dyn(torch.randn(1, 3, 226, 224))
    with pytest.raises(InputSizeError, match=r"input 2x224.*smaller than one patch.*stage 0.*4x224"):
        dyn(torch.randn(1, 3, 2, 224))

    with pytest.raises(InputSizeError, match=r"window_size needs one window per stage \(2 stages\), got 3"):
        m.set_input_size(window_size=[7, 7, 7])
    with pytest.raises(InputSizeError, match=r"window_size\[1\] must be positive, got 0"):
        m.set_input_size(window_size=[(7, 7), (0, 7)])
    with pytest.raises(InputSizeError, match=r"img_size 2x2 is smaller than one patch \(4x4\).*stage 0"):
        m.set_input_size(img_size=(2, 2))
    assert m.img_size == (224, 224) and m.window_size == ((7, 7), (7, 7))  # failed calls changed nothing
    with pytest.raises(InputSizeError, match=r"window_size must be positive"):
        SwinTransformerV2(img_size=64, window_size=-1, depths=(1,), num_heads=(1,), embed_dim=8)


def test_relative_bias_table_resampler():
    table = torch.randn(13 * 13, 3)
    assert resample_relative_bias_table(table, 7, 7) is table
    out = resample_relative_bias_table(table, 7, (4, 9), "bicubic")
    expected = F.interpolate(table.T.reshape(1, 3, 13, 13), size=(7, 17), mode="bicubic", align_corners=False)
    assert maxdiff(out, expected.reshape(3, -1).T) <= 1e-6
    with pytest.raises(InputSizeError, match=r"window 8x8.*\(15\*15=225, heads\), got \(169, 3\)"):
        resample_relative_bias_table(table, 8, 7)


def test_v1_stage_grid_smaller_than_window_clips_and_resamples():
    m = SwinTransformer(img_size=(224, 224), **SMALL).eval()
    table = m.layers[1].blocks[0].attn.relative_position_bias_table.detach().clone()
    m.set_input_size(img_size=(48, 224), window_size=7)  # stage 1 grid 6x28: window (6, 7), no shift along H
    assert m.window_size == ((7, 7), (6, 7)) and m.layers[1].blocks[1].shift_size == (0, 3)
    new = m.layers[1].blocks[0].attn.relative_position_bias_table.detach()
    expected = F.interpolate(table.T.reshape(1, 4, 13, 13), size=(11, 13), mode="bicubic", align_corners=False)
    assert maxdiff(new, expected.reshape(4, -1).T) <= 1e-6
    with torch.no_grad():
        assert torch.isfinite(m(torch.randn(1, 3, 48, 224))).all()
