"""Swin v1/v2: parity with timm (the oracle) at square and rectangular sizes, resizing, dynamic sizes, errors."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import rectvit
from helpers import randomize_
from rectvit.errors import InputSizeError
from rectvit.layers.window import WINDOW_MASKS, shifted_window_mask, window_mask
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
    timm_kw.pop("bias_interpolation", None)  # ours only; timm always resamples geometrically
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
    ours, _ = make_pair(False, img_size=(224, 224), bias_interpolation="bicubic", **SMALL)
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
    fresh = SwinTransformer(img_size=(224, 224), bias_interpolation="bicubic", **{**SMALL, "window_size": (14, 7)})
    fresh.eval()
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
    WINDOW_MASKS.clear()
    for size in [(160, 288), (96, 64), (32, 32), (224, 224)]:
        assert_parity(ours, ref, size, batch=1)
    keys = {(k[0], k[1], k[2]) for k in WINDOW_MASKS.keys()}
    assert ((42, 77), (7, 7), (3, 3)) in keys  # stage 0 of 160x288: 40x72 padded to multiples of 7
    assert ((56, 56), (7, 7), (3, 3)) in keys and len(keys) >= 3  # one mask per padded size, window and shift


def test_mask_cache_is_keyed_by_window_and_shift():
    """One padded size, two windows: each model gets the mask of its own window (the truth: the mask built
    without the cache), and a window change needs no cache clearing."""
    a = SwinTransformer(img_size=(32, 32), dynamic_img_size=True, **{**SMALL, "window_size": (4, 2)}).eval()
    b = SwinTransformer(img_size=(32, 32), dynamic_img_size=True, **{**SMALL, "window_size": (2, 4)}).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 32, 32)  # stage 0: an 8x8 grid, a multiple of both windows
    WINDOW_MASKS.clear()
    with torch.no_grad():
        for model in (a, b, a):
            model(x)
    cached = {k[:3] for k in WINDOW_MASKS.keys()}
    for window, shift in [((4, 2), (2, 1)), ((2, 4), (1, 2))]:
        assert ((8, 8), window, shift) in cached  # both models' stage-0 masks, side by side
        mask = window_mask(torch.zeros(1, 8, 8, 1), window, shift)
        assert torch.equal(mask, shifted_window_mask((8, 8), window, shift))
        assert mask.shape == (8, 8, 8)  # 8 windows of 8 tokens for both: only the window tells them apart
    assert not torch.equal(shifted_window_mask((8, 8), (4, 2), (2, 1)), shifted_window_mask((8, 8), (2, 4), (1, 2)))
    a.set_input_size(window_size=(2, 4))  # tables resampled; the masks of (2, 4) are already cached
    fresh = SwinTransformer(**a.model_config).eval()
    fresh.load_state_dict(a.state_dict())
    with torch.no_grad():
        assert torch.equal(a(x), fresh(x))


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
    with pytest.raises(
        InputSizeError, match=r"takes 224x224 inputs, got 320x192.*set_input_size\(img_size=\(320, 192\)\)"
    ):
        m(torch.randn(1, 3, 320, 192))
    with pytest.raises(InputSizeError, match=r"expected 3 input channel\(s\), got 1.*in_chans=1"):
        m(torch.randn(1, 1, 224, 224))
    with pytest.raises(InputSizeError, match=r"\(B, 3, H, W\)"):
        m(torch.randn(3, 224, 224))

    dyn = SwinTransformer(img_size=(224, 224), dynamic_img_size=True, **SMALL).eval()
    with pytest.raises(InputSizeError, match=r"input 2x224 is smaller than one patch \(4x4\).*at least 4x224"):
        dyn(torch.randn(1, 3, 2, 224))

    with pytest.raises(InputSizeError, match=r"window_size needs one window per stage \(2 stages\), got 3"):
        m.set_input_size(window_size=[7, 7, 7])
    with pytest.raises(InputSizeError, match=r"window_size\[1\] must be positive, got 0"):
        m.set_input_size(window_size=[(7, 7), (0, 7)])
    with pytest.raises(InputSizeError, match=r"img_size 2x2 is smaller than one patch \(4x4\)"):
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
    m = SwinTransformer(img_size=(224, 224), bias_interpolation="bicubic", **SMALL).eval()
    table = m.layers[1].blocks[0].attn.relative_position_bias_table.detach().clone()
    m.set_input_size(img_size=(48, 224), window_size=7)  # stage 1 grid 6x28: window (6, 7), no shift along H
    assert m.window_size == ((7, 7), (6, 7)) and m.layers[1].blocks[1].shift_size == (0, 3)
    new = m.layers[1].blocks[0].attn.relative_position_bias_table.detach()
    expected = F.interpolate(table.T.reshape(1, 4, 13, 13), size=(11, 13), mode="bicubic", align_corners=False)
    assert maxdiff(new, expected.reshape(4, -1).T) <= 1e-6
    with torch.no_grad():
        assert torch.isfinite(m(torch.randn(1, 3, 48, 224))).all()


# ---- relative-bias tables: BEiT's geometric interpolation, as timm ----


def test_bias_interpolation_is_checked():
    with pytest.raises(rectvit.RectViTError, match=r"bias_interpolation.*'linear'"):
        SwinTransformer(bias_interpolation="linear", **SMALL)


def test_v1_set_input_size_scaled_windows_match_timm():
    ours, ref = make_pair(False, img_size=(224, 224), **SMALL)
    ours.set_input_size(img_size=(448, 224))
    ref.set_input_size(img_size=(448, 224))
    assert ours.window_size == ((14, 7), (14, 7))
    assert_parity(ours, ref, (448, 224), batch=1)


def test_v1_checkpoint_into_other_window_matches_timm():
    from timm.models.swin_transformer import checkpoint_filter_fn

    src = randomize_(TimmSwin(img_size=(224, 224), **SMALL), seed=3)
    kw = dict(SMALL, img_size=(224, 448), window_size=(7, 14))
    ref = TimmSwin(**kw).eval()
    ref.load_state_dict(checkpoint_filter_fn(src.state_dict(), ref))
    # a random table cannot show its window (candidates are not evidence): the caller names it
    ours = rectvit.create_model("swin_tiny_patch4_window7_224", **kw).eval()
    report = rectvit.load_checkpoint(ours, src.state_dict(), source_windows=7)
    assert any("geometric" in row[3] for row in report.rows)
    x = torch.randn(1, 3, 224, 448)
    with torch.no_grad():
        assert maxdiff(ours(x), ref(x)) <= TOL
    # plain bicubic stays one keyword away
    bicubic = rectvit.create_model("swin_tiny_patch4_window7_224", bias_interpolation="bicubic", **kw)
    rectvit.load_checkpoint(bicubic, src.state_dict(), source_windows=7)
    key = "layers.0.blocks.0.attn.relative_position_bias_table"
    expected = resample_relative_bias_table(src.state_dict()[key], 7, (7, 14), "bicubic")
    assert torch.equal(bicubic.state_dict()[key], expected)


# ---- Swin on the shared layers; one pure window function ----


def test_uses_the_shared_patch_embedding_and_one_switch():
    from rectvit.layers import PatchEmbed

    m = SwinTransformer(img_size=(64, 96), **SMALL)
    assert type(m.patch_embed) is PatchEmbed and isinstance(m.patch_embed.norm, torch.nn.LayerNorm)
    assert m.patch_embed.strict_img_size and not m.dynamic_img_size
    m.dynamic_img_size = True  # the property is the embedding's switch, recorded in the config
    assert not m.patch_embed.strict_img_size and m.model_config["dynamic_img_size"]
    with torch.no_grad():
        assert m(torch.randn(1, 3, 32, 48)).shape == (1, 10)
    for block in m.modules():
        assert not hasattr(block, "grid") and not hasattr(block, "target_window")


@pytest.mark.parametrize(
    "grid,window_size,window_ratio",
    [((56, 112), None, None), ((28, 14), None, None), ((3, 200), None, None), ((56, 56), (5, 9), None),
     ((56, 56), [(5, 9), 4], None), ((40, 72), None, 8), ((40, 72), None, [4, 100]), ((40, 72), 6, 3)],
)  # fmt: skip
def test_stage_window_sizes_match_timm(grid, window_size, window_ratio):
    from timm.models.swin_transformer import calc_stage_window_sizes

    from rectvit.layers.window import stage_window_sizes

    ref = ((7, 7), (6, 9))
    ours = stage_window_sizes(grid, ref, (56, 56), window_size, window_ratio)
    theirs = calc_stage_window_sizes(grid, ref, (56, 56), window_size=window_size, window_ratio=window_ratio)
    assert ours == tuple(tuple(w) for w in theirs)


# ---- set_input_size checks everything before changing anything ----


def _snapshot(m, x):
    with torch.no_grad():
        out = m(x)
    state = {k: v.clone() for k, v in m.state_dict().items()}
    return out, state, json.dumps(m.model_config), m.img_size, m.patch_size, m.window_size


def _assert_unchanged(m, x, snap):
    out, state, config, img, patch, windows = snap
    assert (m.img_size, m.patch_size, m.window_size) == (img, patch, windows)
    assert json.dumps(m.model_config) == config
    now = m.state_dict()
    assert now.keys() == state.keys() and all(torch.equal(now[k], v) for k, v in state.items())
    for block in (b for s in m.layers for b in s.blocks):  # index buffers follow the windows they belong to
        n = block.window_size[0] * block.window_size[1]
        assert block.attn.relative_position_index.shape == (n, n)
    with torch.no_grad():
        assert torch.equal(m(x), out)


@pytest.mark.parametrize("cls", [SwinTransformer, SwinTransformerV2], ids=["v1", "v2"])
def test_failed_set_input_size_changes_nothing(cls, monkeypatch):
    m = cls(img_size=(64, 96), **SMALL).eval()
    x = torch.randn(1, 3, 64, 96)
    snap = _snapshot(m, x)
    bad = [
        (dict(img_size=10_000_000), r"img_size 10000000x10000000 is beyond what rectvit builds a model for"),
        (dict(img_size=(65_536, 96)), r"stage 0 would use a 7168x7 window.*smaller img_size"),  # 7 * 16384 // 16
        (dict(img_size=(64, 96), window_size=200, always_partition=True), r"200x200 window"),
        (dict(img_size=(128, 96), window_size=[7, 7, 7]), r"one window per stage"),
        (dict(img_size=(128, 96), window_size=0), r"window_size must be positive"),
        (dict(img_size=(128, 96), window_ratio=[2, 0]), r"window_ratio must hold positive ints"),
        (dict(img_size=(128, 96), patch_size=0), r"patch_size must be positive"),
        (dict(img_size=(2, 2)), r"smaller than one patch"),
        (dict(patch_size=128), r"img_size 64x96 is smaller than one patch \(128x128\)"),
    ]
    for kwargs, match in bad:
        with pytest.raises(InputSizeError, match=match):
            m.set_input_size(**kwargs)
        _assert_unchanged(m, x, snap)

    # An allocation failing half-way (here: the third block's new tables) leaves the model as it was too.
    calls = []
    attn_cls = type(m.layers[0].blocks[0].attn)
    original = attn_cls.window_tensors

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("out of memory (simulated)")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(attn_cls, "window_tensors", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        m.set_input_size(img_size=(128, 96), patch_size=8, window_size=(4, 3))
    _assert_unchanged(m, x, snap)
    monkeypatch.undo()

    # and so does a failing patch-kernel resize, which comes after every table is computed
    import rectvit.layers.patch_embed as pe

    monkeypatch.setattr(pe, "resized_patch_conv", lambda *a: (_ for _ in ()).throw(RuntimeError("simulated")))
    with pytest.raises(RuntimeError, match="simulated"):
        m.set_input_size(img_size=(128, 96), patch_size=8, window_size=(4, 3))
    _assert_unchanged(m, x, snap)
    monkeypatch.undo()
    m.set_input_size(img_size=(128, 96), patch_size=8, window_size=(4, 3))  # the same call works
    assert m.window_size == ((4, 3), (4, 3)) and m.patch_size == (8, 8) and m.grid_size == (16, 12)


# ---- empty batches ----


@pytest.mark.parametrize("cls", [SwinTransformer, SwinTransformerV2], ids=["v1", "v2"])
def test_empty_batch_gives_empty_outputs(cls):
    m = cls(img_size=(64, 96), **SMALL).eval()
    dyn = cls(img_size=(64, 96), dynamic_img_size=True, **SMALL).eval()
    with torch.no_grad():
        for model, size, grids in [(m, (64, 96), [(16, 24), (8, 12)]), (dyn, (36, 20), [(9, 5), (5, 3)])]:
            x = torch.randn(0, 3, *size)
            assert model(x).shape == (0, 10)
            assert model.forward_features(x).shape == (0, *grids[-1], 64)
            final, maps = model.forward_intermediates(x)
            assert final.shape == (0, *grids[-1], 64)
            assert [tuple(t.shape) for t in maps] == [(0, 32, *grids[0]), (0, 64, *grids[1])]
            # an empty batch beside a full one changes nothing for the full one
            full = torch.randn(2, 3, *size)
            assert torch.equal(model(torch.cat([x, full])), model(full))


# ---- timm's conventions ----


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_training_conventions_match_timm(v2):
    ours, ref = make_pair(v2, img_size=(64, 96), **SMALL)
    assert ours.no_weight_decay() == ref.no_weight_decay() and ours.no_weight_decay()
    for coarse in (False, True):
        assert ours.group_matcher(coarse) == ref.group_matcher(coarse)
    assert ours.get_classifier() is ours.head.fc and isinstance(ref.get_classifier(), type(ours.get_classifier()))
    ours.reset_classifier(0)
    assert isinstance(ours.get_classifier(), torch.nn.Identity)


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_grad_checkpointing_gives_the_same_gradients(v2):
    ours, _ = make_pair(v2, img_size=(64, 96), **{**SMALL, "drop_path_rate": 0.2})
    ours.train()  # stochastic depth on: the recomputation must replay the same random masks
    x = torch.randn(2, 3, 64, 96)

    def grads(enable):
        ours.set_grad_checkpointing(enable)
        ours.zero_grad()
        torch.manual_seed(5)
        ours(x).square().sum().backward()
        return {n: p.grad.clone() for n, p in ours.named_parameters() if p.grad is not None}

    plain, checkpointed = grads(False), grads(True)
    assert all(s.grad_checkpointing for s in ours.layers)
    assert plain.keys() == checkpointed.keys() and len(plain) == len(list(ours.parameters()))
    for name, g in plain.items():
        torch.testing.assert_close(checkpointed[name], g, atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
@pytest.mark.parametrize("indices,prune_norm", [([0], False), (1, True), (1, False)])
def test_prune_intermediate_layers_matches_timm(v2, indices, prune_norm):
    ours, ref = make_pair(v2, img_size=(64, 96), **SMALL)
    assert ours.prune_intermediate_layers(indices, prune_norm=prune_norm) == ref.prune_intermediate_layers(
        indices, prune_norm=prune_norm
    )
    assert len(ours.layers) == len(ref.layers) and ours.num_features == ref.num_features
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert maxdiff(ours(x), ref(x)) <= TOL
        final, maps = ours.forward_intermediates(x, indices=indices)
        ref_final, ref_maps = ref.forward_intermediates(x, indices=indices)
        assert maxdiff(final, ref_final) <= TOL and len(maps) == len(ref_maps)
        assert all(maxdiff(m, r) <= TOL for m, r in zip(maps, ref_maps))


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_set_input_size_takes_timms_parameters_in_order(v2):
    import inspect

    ours, ref = make_pair(v2, img_size=(64, 96), **SMALL)
    timm_params = list(inspect.signature(ref.set_input_size).parameters)
    assert list(inspect.signature(ours.set_input_size).parameters)[: len(timm_params)] == timm_params
    ours.set_input_size((128, 96), 8)  # the second positional is the patch size, as in timm
    ref.set_input_size((128, 96), 8)
    assert ours.patch_size == (8, 8) and ours.grid_size == (16, 12)
    assert ours.window_size == tuple(tuple(s.blocks[0].window_size) for s in ref.layers)
    assert [f["reduction"] for f in ours.feature_info] == [f["reduction"] for f in ref.feature_info] == [8, 16]
    assert_parity(ours, ref, (128, 96), batch=1)
    ours.set_input_size(strict_img_size=False)  # ours only: the switch dynamic_img_size reads
    assert ours.dynamic_img_size and ours.model_config["strict_img_size"] is False
    with torch.no_grad():
        assert ours(torch.randn(1, 3, 64, 40)).shape == (1, 10)


def test_check_input_is_public_and_raises_what_forward_raises():
    m = SwinTransformer(img_size=(64, 96), **SMALL).eval()
    m.check_input(torch.randn(2, 3, 64, 96))  # a good batch passes
    m.check_input(torch.randn(0, 3, 64, 96))
    for bad, match in [
        (torch.randn(1, 3, 96, 64), r"takes 64x96 inputs, got 96x64"),
        (torch.randn(1, 1, 64, 96), r"expected 3 input channel\(s\), got 1"),
        (torch.randn(3, 64, 96), r"\(B, 3, H, W\)"),
    ]:
        with pytest.raises(InputSizeError, match=match):
            m.check_input(bad)
        with pytest.raises(InputSizeError, match=match):
            m(bad)
    m.dynamic_img_size = True
    m.check_input(torch.randn(1, 3, 66, 96))  # cropped to whole patches (docs/models.md)
    m.check_input(torch.randn(1, 3, 96, 64))
    with pytest.raises(InputSizeError, match=r"input 3x96 is smaller than one patch"):
        m.check_input(torch.randn(1, 3, 3, 96))


def test_constructor_refuses_windows_too_large_to_allocate():
    with pytest.raises(InputSizeError, match=r"stage 0 would use a 200x100 window \(20000 tokens"):
        SwinTransformer(img_size=(800, 400), window_size=(200, 100), depths=(1,), num_heads=(1,), embed_dim=8)
    m = SwinTransformer(img_size=(64, 96), **{**SMALL, "window_size": 1000})  # grids clip it: allowed
    assert m.window_size == ((16, 24), (8, 12))
    with pytest.raises(InputSizeError, match=r"stage 0 would use a 1000x1000 window"):
        m.set_input_size(always_partition=True)  # unclipped, the same window is refused
