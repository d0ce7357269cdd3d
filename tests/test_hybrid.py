"""Hybrid ViT (ResNet-V2 backbone + ViT) parity: timm is the oracle (random non-zero weights, float32, <= 1e-4)."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from timm.models.vision_transformer_hybrid import _resnetv2

import rectvit
from helpers import max_diff, randomize_, timm_pair
from rectvit.errors import InputSizeError, RectViTError
from rectvit.models import get_model_entry
from rectvit.models.hybrid import HybridVisionTransformer, backbone_out_size, make_backbone, same_padding

TOL = 1e-4
SMALL = dict(depth=2, embed_dim=64, num_heads=4)  # small ViT part; the backbone stays as registered
NAMES = ["vit_tiny_r_s16_p8_224", "vit_small_r26_s32_224", "vit_base_r50_s16_224"]
SIZES = [(256, 128), (128, 320), (512, 128), (320, 160)]


pytestmark = pytest.mark.usefixtures("one_thread")


def assert_same(theirs, ours, x: torch.Tensor, tol: float = TOL) -> None:
    with torch.no_grad():
        t_feat, o_feat = theirs.forward_features(x), ours.forward_features(x)
        assert t_feat.abs().max() > 0.1  # non-trivial activations
        assert max_diff(t_feat, o_feat) <= tol
        assert max_diff(theirs.forward_head(t_feat), ours.forward_head(o_feat)) <= tol
        assert max_diff(theirs(x), ours(x)) <= tol


# --------------------------------------------------------------------------------------------------
# Parity at rectangular sizes


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_parity_at_rectangular_size(name, size):
    theirs, ours = timm_pair(name, img_size=size, num_classes=10, **SMALL)
    assert ours.img_size == size
    assert ours.grid_size == tuple(theirs.patch_embed.grid_size)
    assert ours.grid_size[0] != ours.grid_size[1]
    # The flat timm table lands on the real (h, w) grid, row-major.
    h, w = ours.grid_size
    flat = theirs.pos_embed.detach()[:, 1:]
    assert torch.equal(ours.pos_embed.detach(), flat.reshape(1, h, w, -1))
    assert_same(theirs, ours, torch.randn(2, 3, *size))


def test_tiny_real_config_parity():
    """vit_tiny_r_s16_p8_224 at full depth and width, built for a rectangular size."""
    theirs, ours = timm_pair("vit_tiny_r_s16_p8_224", img_size=(256, 128))
    assert ours.grid_size == (8, 4)
    assert_same(theirs, ours, torch.randn(1, 3, 256, 128))


def test_registry_names_match_timm_architectures():
    names = [n for n in rectvit.list_models() if get_model_entry(n).cls is HybridVisionTransformer]
    expected = [f"{n[:-4]}_{s}" for n in NAMES for s in (224, 384)]
    assert sorted(expected) == names


def test_timm_keywords_override():
    kw = dict(in_chans=1, num_classes=7, global_pool="avg", class_token=False, patch_size=2, **SMALL)
    theirs, ours = timm_pair("vit_small_r26_s32_224", img_size=(256, 192), **kw)
    assert ours.grid_size == (4, 3)
    assert_same(theirs, ours, torch.randn(2, 1, 256, 192))


# --------------------------------------------------------------------------------------------------
# set_input_size, dynamic sizes, intermediates


@pytest.mark.parametrize("name", NAMES)
def test_set_input_size_to_transposed_matches_timm(name):
    theirs, ours = timm_pair(name, img_size=(320, 160), **SMALL)
    theirs.set_input_size(img_size=(160, 320))
    ours.set_input_size(img_size=(160, 320))
    assert ours.img_size == (160, 320)
    assert ours.grid_size == tuple(theirs.patch_embed.grid_size)
    assert ours.model_config["img_size"] == [160, 320]
    assert_same(theirs, ours, torch.randn(2, 3, 160, 320))


def test_set_input_size_patch_change_matches_timm():
    theirs, ours = timm_pair("vit_small_r26_s32_224", img_size=(256, 128), **SMALL)
    theirs.set_input_size(img_size=(512, 256), patch_size=2)
    ours.set_input_size(img_size=(512, 256), patch_size=2)
    assert ours.grid_size == (8, 4) and ours.model_config["patch_size"] == [2, 2]
    assert_same(theirs, ours, torch.randn(1, 3, 512, 256))


@pytest.mark.parametrize("name", NAMES)
def test_dynamic_size_matches_timm(name):
    theirs, ours = timm_pair(name, img_size=(256, 128), dynamic_img_size=True, **SMALL)
    for size in [(128, 320), (256, 128)]:
        assert_same(theirs, ours, torch.randn(2, 3, *size))
    assert ours.grid_size == (ours.feat_size((256, 128)))  # the stored table is untouched


def test_dynamic_size_at_odd_sizes_uses_per_input_same_padding():
    """Odd sizes make the strided convs' "same" padding asymmetric and size dependent."""
    theirs, ours = timm_pair("vit_small_r26_s32_224", img_size=(256, 128), dynamic_img_size=True, **SMALL)
    for size in [(161, 317), (97, 33)]:
        assert ours.feat_size(size) == (-(-size[0] // 32), -(-size[1] // 32))
        assert_same(theirs, ours, torch.randn(2, 3, *size))


def test_dynamic_img_pad_pads_the_feature_map_like_timm():
    kw = dict(img_size=(256, 128), dynamic_img_size=True, dynamic_img_pad=True, **SMALL)
    theirs, ours = timm_pair("vit_tiny_r_s16_p8_224", **kw)
    x = torch.randn(2, 3, 100, 140)  # feature map 25x35: not whole 8x8 patches
    assert ours.feat_size((100, 140)) == (4, 5)
    assert_same(theirs, ours, x)


@pytest.mark.parametrize("dynamic", [False, True])
def test_forward_intermediates_on_the_real_grid(dynamic):
    theirs, ours = timm_pair("vit_small_r26_s32_224", img_size=(320, 160), dynamic_img_size=dynamic, **SMALL)
    size = (128, 320) if dynamic else (320, 160)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        o_final, o_maps = ours.forward_intermediates(x, indices=[0, 1])
        t_final, t_maps = theirs.forward_intermediates(x, indices=[0, 1])
    assert [m.shape for m in o_maps] == [(2, 64, *ours.feat_size(size))] * 2
    assert max_diff(o_final, t_final) <= TOL
    for o, t in zip(o_maps, t_maps):
        assert max_diff(o, t) <= TOL


# --------------------------------------------------------------------------------------------------
# Backbone pieces


@pytest.mark.parametrize("same", [True, False])
def test_backbone_matches_timm_resnetv2_and_its_size_arithmetic(same):
    theirs = randomize_(_resnetv2((2, 1), padding_same=same)).eval()
    ours = make_backbone((2, 1), same=same).eval()
    ours.load_state_dict(theirs.state_dict())
    for size in [(64, 96), (33, 70), (17, 5)]:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            t, o = theirs.forward_features(x), ours(x)
        assert o.shape[-2:] == backbone_out_size(size, (2, 1), same)
        assert max_diff(t, o) <= TOL


def test_same_padding_is_tensorflow_same():
    assert same_padding(224, 7, 2) == (2, 3)
    assert same_padding(225, 7, 2) == (3, 3)
    assert same_padding(56, 3, 1) == (1, 1)
    assert same_padding(7, 1, 2) == (0, 0)


# --------------------------------------------------------------------------------------------------
# Config, checkpoints, errors


def test_model_config_rebuilds_the_hybrid():
    theirs, ours = timm_pair("vit_tiny_r_s16_p8_224", img_size=(256, 128), **SMALL)
    ours.set_input_size(img_size=(128, 256))
    config = json.loads(json.dumps(ours.model_config))
    assert config["backbone_layers"] == [] and config["img_size"] == [128, 256]
    rebuilt = HybridVisionTransformer(**config).eval()
    rebuilt.load_state_dict(ours.state_dict())
    x = torch.randn(1, 3, 128, 256)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), ours(x))


def test_too_small_input_names_the_minimum_size():
    ours = rectvit.create_model("vit_tiny_r_s16_p8_224", img_size=(256, 128), dynamic_img_size=True, **SMALL)
    assert ours.min_input_size() == (29, 29)  # stride-4 stem, 8x8 patches: ceil(29 / 4) = 8
    with pytest.raises(InputSizeError, match=r"minimum size is 29x64"):
        ours(torch.randn(1, 3, 28, 64))
    with pytest.raises(InputSizeError, match=r"minimum size is 29x29"):
        rectvit.create_model("vit_tiny_r_s16_p8_224", img_size=(16, 16), **SMALL)


def test_feature_map_the_patches_do_not_tile_is_cropped_like_timm():
    """A 25x35 feature map holds 3x4 whole 8x8 patches: the projection takes them and drops the rest, as
    timm's conv does (docs/models.md, "Sizes the patches do not tile"; hybrids apply it to the feature map)."""
    theirs, ours = timm_pair("vit_tiny_r_s16_p8_224", img_size=(256, 128), dynamic_img_size=True, **SMALL)
    assert ours.feat_size((100, 140)) == (3, 4)
    assert_same(theirs, ours, torch.randn(2, 3, 100, 140))


def test_bad_inputs_raise_clear_errors():
    ours = rectvit.create_model("vit_small_r26_s32_224", img_size=(256, 128), **SMALL)
    with pytest.raises(InputSizeError, match=r"set_input_size"):
        ours(torch.randn(1, 3, 128, 256))
    with pytest.raises(InputSizeError, match=r"in_chans=1"):
        ours(torch.randn(1, 1, 256, 128))
    with pytest.raises(InputSizeError, match=r"unsqueeze"):
        ours(torch.randn(3, 256, 128))
    with pytest.raises(InputSizeError, match=r"patch_stride"):
        rectvit.create_model("vit_small_r26_s32_224", patch_stride=2, **SMALL)
    with pytest.raises(RectViTError, match=r"backbone_layers"):
        rectvit.create_model("vit_small_r26_s32_224", backbone_layers=(1, 1, 1, 1, 1), **SMALL)
    before = ours.grid_size
    with pytest.raises(InputSizeError):
        ours.set_input_size(img_size=(0, 64))
    assert ours.grid_size == before and ours.img_size == (256, 128)


def test_load_timm_224_checkpoint_into_rectangular_model():
    """A timm checkpoint's flat 7x7 table, loaded into a (256, 128) model, is timm's own resample of it.
    (A random table records no grid and is no evidence for the architecture's default 7x7: it is given.)"""
    from timm.layers import resample_abs_pos_embed

    source = randomize_(timm.create_model("vit_small_r26_s32_224", **SMALL)).eval()
    ours = rectvit.create_model("vit_small_r26_s32_224", img_size=(256, 128), **SMALL).eval()
    with pytest.raises(rectvit.AmbiguousGridError, match=r"7x7 -?\d\.\d\d \(architecture default grid\)"):
        rectvit.load_checkpoint(ours, source.state_dict())
    report = rectvit.load_checkpoint(ours, source.state_dict(), source_grid=(7, 7))
    assert "7x7" in str(report)
    ref = timm.create_model("vit_small_r26_s32_224", img_size=(256, 128), **SMALL).eval()
    state = source.state_dict()
    state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], (8, 4), old_size=(7, 7), num_prefix_tokens=1)
    ref.load_state_dict(state)
    assert_same(ref, ours, torch.randn(2, 3, 256, 128))


def test_save_and_load_model_round_trip(tmp_path):
    ours = randomize_(rectvit.create_model("vit_tiny_r_s16_p8_224", img_size=(256, 128), **SMALL)).eval()
    path = tmp_path / "hybrid.safetensors"
    rectvit.save_checkpoint(ours, path)
    loaded = rectvit.load_model(path).eval()
    assert isinstance(loaded, HybridVisionTransformer) and loaded.grid_size == (8, 4)
    x = torch.randn(1, 3, 256, 128)
    with torch.no_grad():
        assert torch.equal(loaded(x), ours(x))
    moved = rectvit.load_model(path, img_size=(128, 256))
    assert moved.grid_size == (4, 8)


def test_dynamic_img_pad_takes_inputs_under_one_patch_as_timm():
    """With dynamic_img_pad the feature map is padded up to whole patches, so any non-empty input works
    (it was refused with 'the minimum size is 20x20 (at least 1x1)'); timm is the oracle."""
    kw = dict(img_size=(64, 96), dynamic_img_size=True, dynamic_img_pad=True, **SMALL)
    theirs, ours = timm_pair("vit_small_r26_s32_224", **kw)
    for size in ((20, 20), (1, 45), (33, 1)):
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            assert max_diff(theirs(x), ours(x)) <= TOL
    with pytest.raises(InputSizeError, match="at least 1"):
        ours(torch.randn(1, 3, 0, 20))
