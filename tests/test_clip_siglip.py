"""CLIP and SigLIP image towers (ViT family): timm 1.0.31 is the oracle (random non-zero weights, <= 1e-5)."""

from __future__ import annotations

import pytest
import timm
import torch

import rectvit
from helpers import max_diff, randomize_, timm_pair
from rectvit.layers import AttentionPoolLatent, GELUTanh, QuickGELU, get_act_layer
from rectvit.models import get_model_entry
from rectvit.models.vit import VisionTransformer

TOL = 1e-5
SMALL = dict(depth=2, embed_dim=64, num_heads=2)

CLIP_NAMES = rectvit.list_models("vit_*_clip_*")
SIGLIP_NAMES = rectvit.list_models("vit_*_siglip_*")

# (name, rectangular sizes): GELU and QuickGELU CLIP, MAP and GAP SigLIP, tanh-GELU, so400m's mlp_ratio.
CASES = [
    ("vit_base_patch16_clip_224", [(96, 160)]),
    ("vit_base_patch32_clip_quickgelu_224", [(64, 224)]),
    ("vit_large_patch14_clip_224", [(98, 56)]),
    ("vit_base_patch16_siglip_224", [(64, 192), (160, 48)]),
    ("vit_base_patch32_siglip_256", [(96, 64)]),
    ("vit_base_patch16_siglip_gap_224", [(80, 144)]),
    ("vit_so400m_patch14_siglip_224", [(56, 126)]),
]


def assert_same(theirs, ours, x: torch.Tensor) -> None:
    with torch.no_grad():
        assert max_diff(theirs.forward_features(x), ours.forward_features(x)) <= TOL
        assert (
            max_diff(
                theirs.forward_head(theirs.forward_features(x), pre_logits=True), ours.pool(ours.forward_features(x))
            )
            <= TOL
        )
        assert max_diff(theirs(x), ours(x)) <= TOL


@pytest.mark.parametrize("name,size", [(n, s) for n, sizes in CASES for s in sizes], ids=str)
def test_parity_at_rectangular_size(name, size, one_thread):
    theirs, ours = timm_pair(name, img_size=size, num_classes=10, **SMALL)
    assert ours.grid_size == tuple(theirs.patch_embed.grid_size)
    assert ours.num_prefix_tokens == theirs.num_prefix_tokens
    assert_same(theirs, ours, torch.randn(2, 3, *size))


def test_registry_has_the_timm_clip_and_siglip_names():
    timm_names = set(timm.list_models("vit_*_clip_*")) | set(timm.list_models("vit_*_siglip_*"))
    # timm's CLIP/SigLIP names outside VisionTransformer (none today) would need their own family.
    assert set(CLIP_NAMES) | set(SIGLIP_NAMES) == timm_names
    assert {"vit_base_patch16_clip_224", "vit_base_patch32_clip_224", "vit_large_patch14_clip_224"} <= set(CLIP_NAMES)
    for size in (224, 256, 384, 512):
        assert f"vit_base_patch16_siglip_{size}" in SIGLIP_NAMES
        assert f"vit_base_patch16_siglip_gap_{size}" in SIGLIP_NAMES
    assert "vit_so400m_patch14_siglip_384" in SIGLIP_NAMES


@pytest.mark.parametrize("name", CLIP_NAMES + SIGLIP_NAMES)
def test_registry_matches_timm_architecture(name):
    """Same parameters and shapes as timm's model of that name (depth 1 keeps the meta build cheap), same
    activation, norms, pooling, input size and classes."""
    with torch.device("meta"):
        theirs = timm.create_model(name, depth=1)
        ours = rectvit.create_model(name, depth=1)
    t = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    o = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    flat = t.pop("pos_embed")
    h, w = ours.grid_size
    assert o.pop("pos_embed") == (1, h, w, flat[-1])
    prefix = o.pop("prefix_pos_embed", (1, 0, flat[-1]))
    assert flat == (1, prefix[1] + h * w, flat[-1])
    assert o == t
    assert type(ours.blocks[0].mlp.act).__name__ == type(theirs.blocks[0].mlp.act).__name__
    assert ours.blocks[0].norm1.eps == theirs.blocks[0].norm1.eps
    assert type(ours.norm_pre).__name__ == type(theirs.norm_pre).__name__
    assert ours.global_pool == theirs.global_pool
    assert ours.img_size == tuple(theirs.patch_embed.img_size)
    assert ours.num_classes == theirs.num_classes


def test_set_input_size_matches_timm(one_thread):
    for name in ("vit_base_patch16_clip_224", "vit_base_patch16_siglip_224"):
        theirs, ours = timm_pair(name, img_size=(64, 128), **SMALL)
        for size in [(160, 48), (96, 96)]:
            theirs.set_input_size(img_size=size)
            ours.set_input_size(img_size=size)
            assert ours.grid_size == tuple(theirs.patch_embed.grid_size)
            assert_same(theirs, ours, torch.randn(2, 3, *size))
        rebuilt = VisionTransformer(**ours.model_config)
        assert rebuilt.grid_size == ours.grid_size
        assert (rebuilt.attn_pool is not None) == (ours.attn_pool is not None) == ("siglip" in name)


@pytest.mark.parametrize("name", ["vit_base_patch16_clip_quickgelu_224", "vit_base_patch16_siglip_256"])
def test_dynamic_size_matches_timm(name, one_thread):
    theirs, ours = timm_pair(name, img_size=(128, 64), dynamic_img_size=True, **SMALL)
    for size in [(128, 64), (64, 192), (48, 32)]:
        assert_same(theirs, ours, torch.randn(2, 3, *size))


@pytest.mark.parametrize("fmt", ["NCHW", "NLC"])
@pytest.mark.parametrize("name", ["vit_base_patch16_clip_224", "vit_base_patch16_siglip_224"])
def test_forward_intermediates_match_timm(name, fmt, one_thread):
    theirs, ours = timm_pair(name, img_size=(96, 160), dynamic_img_size=True, **SMALL)
    x = torch.randn(2, 3, 64, 176)  # another grid than the table's: maps on the real (4, 11) grid
    for kw in [dict(), dict(indices=1, norm=True), dict(indices=[0], return_prefix_tokens=True)]:
        with torch.no_grad():
            t_final, t_maps = theirs.forward_intermediates(x, output_fmt=fmt, **kw)
            o_final, o_maps = ours.forward_intermediates(x, output_fmt=fmt, **kw)
        assert max_diff(t_final, o_final) <= TOL
        assert len(t_maps) == len(o_maps)
        for t, o in zip(t_maps, o_maps):
            t, o = (t, o) if isinstance(o, torch.Tensor) else (t[0], o[0])
            assert max_diff(t, o) <= TOL
        if fmt == "NCHW":
            first = o_maps[0] if isinstance(o_maps[0], torch.Tensor) else o_maps[0][0]
            assert first.shape == (2, 64, 4, 11)


def test_attention_pool_by_hand():
    """The MAP head computed with explicit softmax attention (one head per 16 channels)."""
    torch.manual_seed(1)
    pool = randomize_(AttentionPoolLatent(32, num_heads=2, mlp_ratio=2.0)).eval()
    x = torch.randn(3, 7, 32)
    q = pool.q(pool.latent).reshape(1, 2, 16).transpose(0, 1)  # (heads, 1, 16)
    k, v = pool.kv(x).reshape(3, 7, 2, 2, 16).permute(2, 0, 3, 1, 4)  # (B, heads, N, 16) each
    attn = torch.softmax(q @ k.transpose(-1, -2) / 4.0, dim=-1)
    y = pool.proj((attn @ v).transpose(1, 2).reshape(3, 1, 32))
    y = y + pool.mlp(pool.norm(y))
    with torch.no_grad():
        assert max_diff(pool(x), y[:, 0].detach()) <= 1e-6


def test_activations_by_name():
    x = torch.linspace(-4, 4, 101)
    assert torch.allclose(QuickGELU()(x), x * torch.sigmoid(1.702 * x))
    assert torch.allclose(GELUTanh()(x), 0.5 * x * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (x + 0.044715 * x**3))))
    assert get_act_layer("gelu") is torch.nn.GELU
    with pytest.raises(rectvit.RectViTError, match="act_layer must be one of"):
        VisionTransformer(act_layer="swish", **SMALL)


def test_reset_classifier_map_pool():
    theirs, ours = timm_pair("vit_base_patch16_siglip_224", img_size=(64, 96), **SMALL)
    gap = rectvit.create_model("vit_base_patch16_siglip_gap_224", **SMALL)
    with pytest.raises(rectvit.RectViTError, match="cannot add an attention pool"):
        gap.reset_classifier(5, global_pool="map")
    with pytest.raises(rectvit.RectViTError, match="needs an attention pool"):
        gap.pool(torch.zeros(1, 4, 64), pool_type="map")
    ours.reset_classifier(5, global_pool="avg")
    theirs.reset_classifier(5, global_pool="avg")
    assert ours.attn_pool is None and theirs.attn_pool is None
    assert not any(k.startswith("attn_pool.") for k in ours.state_dict())
    rebuilt = VisionTransformer(**ours.model_config)
    assert set(rebuilt.state_dict()) == set(ours.state_dict())
    ours.head.load_state_dict(theirs.head.state_dict())
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert max_diff(theirs(x), ours(x)) <= TOL


def test_siglip_has_no_class_token_and_errors_are_clear():
    ours = rectvit.create_model("vit_base_patch16_siglip_384", img_size=(64, 96), **SMALL)
    assert ours.cls_token is None and ours.num_prefix_tokens == 0 and ours.prefix_pos_embed is None
    assert get_model_entry("vit_base_patch16_siglip_384").config["img_size"] == 384
    with pytest.raises(rectvit.RectViTError, match="class token"):
        rectvit.create_model("vit_base_patch16_siglip_224", global_pool="token", **SMALL)
    with pytest.raises(rectvit.InputSizeError, match="takes 64x96"):
        ours(torch.randn(1, 3, 96, 64))


@pytest.mark.parametrize("name", ["vit_base_patch16_clip_quickgelu_224", "vit_base_patch32_siglip_256"])
def test_save_and_load_model_round_trip(name, tmp_path):
    """The recorded config rebuilds the tower (act_layer, pre_norm, attention pool) after set_input_size."""
    ours = randomize_(rectvit.create_model(name, img_size=(64, 96), **SMALL)).eval()
    ours.set_input_size(img_size=(96, 64))
    back = rectvit.load_model(rectvit.save_checkpoint(ours, tmp_path / "tower.safetensors")).eval()
    assert back.model_config["act_layer"] == ours.model_config["act_layer"] != "gelu"
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        assert torch.equal(back(x), ours(x))
