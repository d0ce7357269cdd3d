"""ViT family parity: timm is the oracle (random non-zero weights, rectangular sizes, float32, <= 1e-5)."""

from __future__ import annotations

import json

import pytest
import timm
import torch

import rectvit
from helpers import max_diff, randomize_, timm_pair
from rectvit.models import get_model_entry
from rectvit.models.vit import VisionTransformer

TOL = 1e-5
SMALL = dict(depth=2, embed_dim=64, num_heads=2)

# One small config per registry family, with rectangular sizes its patch size tiles.
FAMILIES = [
    ("vit_small_patch16_224", [(256, 64), (64, 256)]),
    ("vit_base_patch32_224", [(224, 96)]),
    ("vit_small_patch8_224", [(80, 144)]),
    ("deit_tiny_patch16_224", [(224, 96)]),
    ("deit_small_distilled_patch16_224", [(80, 144), (64, 256)]),
    ("deit3_small_patch16_224", [(256, 64), (80, 144)]),
    ("vit_medium_patch16_gap_256", [(224, 96)]),
    ("vit_base_patch16_reg4_gap_256", [(80, 144), (256, 64)]),
    ("vit_small_patch14_dinov2", [(98, 154)]),
    ("vit_small_patch14_reg4_dinov2", [(154, 56), (56, 252)]),
]


def assert_same(theirs, ours, x: torch.Tensor, tol: float = TOL) -> None:
    with torch.no_grad():
        assert max_diff(theirs.forward_features(x), ours.forward_features(x)) <= tol
        assert max_diff(theirs(x), ours(x)) <= tol


# --------------------------------------------------------------------------------------------------
# Parity at rectangular sizes


@pytest.mark.parametrize(
    "name,size", [(n, s) for n, sizes in FAMILIES for s in sizes], ids=lambda v: str(v).replace(" ", "")
)
def test_family_parity_at_rectangular_size(name, size):
    theirs, ours = timm_pair(name, img_size=size, **SMALL)
    assert ours.img_size == size
    assert ours.grid_size == theirs.patch_embed.grid_size
    assert ours.num_prefix_tokens == theirs.num_prefix_tokens
    x = torch.randn(2, 3, *size)
    assert_same(theirs, ours, x)


def test_real_size_config_parity():
    """vit_small_patch16_224 at full depth and width, built for a rectangular size."""
    theirs, ours = timm_pair("vit_small_patch16_224", img_size=(224, 96))
    assert ours.grid_size == (14, 6)
    assert_same(theirs, ours, torch.randn(1, 3, 224, 96))


VIT_NAMES = [n for n in rectvit.list_models() if get_model_entry(n).cls is VisionTransformer]
VIT_NAMES = [n for n in VIT_NAMES if "_clip_" not in n and "_siglip_" not in n]  # those: test_clip_siglip.py


def test_registry_has_the_vit_names():
    assert len(VIT_NAMES) == 21 and "ast_base_patch16_s10_128x1024" in VIT_NAMES
    assert rectvit.list_models("deit3_*") == ["deit3_base_patch16_224", "deit3_small_patch16_224"]


def test_create_model_overrides_use_timm_keywords():
    kw = dict(img_size=(96, 160), patch_size=(16, 32), in_chans=1, num_classes=7, class_token=False)
    kw.update(
        global_pool="avg", reg_tokens=2, no_embed_class=True, init_values=1e-3, depth=1, embed_dim=32, num_heads=2
    )
    theirs, ours = timm_pair("vit_base_patch16_224", **kw)
    assert ours.grid_size == (6, 5)
    assert_same(theirs, ours, torch.randn(2, 1, 96, 160))


@pytest.mark.parametrize("pool", ["avg", "max", "avgmax", ""])
def test_pooling_variants(pool):
    theirs, ours = timm_pair("vit_small_patch16_224", img_size=(64, 128), global_pool=pool, **SMALL)
    assert_same(theirs, ours, torch.randn(2, 3, 64, 128))


def test_no_position_table_and_pre_norm():
    kw = dict(img_size=(64, 128), pos_embed="none", pre_norm=True, **SMALL)
    theirs, ours = timm_pair("vit_small_patch16_224", **kw)
    assert ours.pos_embed is None and ours.patch_embed.proj.bias is None
    assert_same(theirs, ours, torch.randn(2, 3, 64, 128))


# --------------------------------------------------------------------------------------------------
# set_input_size


def test_set_input_size_chain_matches_timm():
    theirs, ours = timm_pair("deit3_small_patch16_224", img_size=(128, 64), **SMALL)
    for size in [(64, 160), (224, 96), (128, 64)]:
        theirs.set_input_size(img_size=size)
        ours.set_input_size(img_size=size)
        assert ours.img_size == size and ours.grid_size == (size[0] // 16, size[1] // 16)
        assert ours.pos_embed.shape[1:3] == ours.grid_size
        assert_same(theirs, ours, torch.randn(2, 3, *size))


@pytest.mark.parametrize(
    "change",
    [dict(img_size=(128, 72), patch_size=(8, 12)), dict(img_size=(96, 96), patch_size=(12, 16)), dict(patch_size=32)],
)
def test_set_input_size_patch_change_matches_timm(change):
    theirs, ours = timm_pair("vit_small_patch16_224", img_size=(128, 64), **SMALL)
    theirs.set_input_size(**change)
    ours.set_input_size(**change)
    assert ours.patch_size == tuple(theirs.patch_embed.patch_size)
    assert ours.grid_size == tuple(theirs.patch_embed.grid_size)
    # The kernel's pseudo-inverse is float64 here and float32 in timm: equal to ~1e-6.
    assert_same(theirs, ours, torch.randn(2, 3, *ours.img_size))


def test_set_input_size_updates_config_and_keeps_requires_grad():
    ours = rectvit.create_model("vit_small_patch16_224", img_size=(64, 64), **SMALL)
    ours.pos_embed.requires_grad_(False)
    ours.set_input_size(img_size=(32, 96), patch_size=8)
    assert not ours.pos_embed.requires_grad
    assert ours.model_config["img_size"] == [32, 96] and ours.model_config["patch_size"] == [8, 8]
    rebuilt = VisionTransformer(**json.loads(json.dumps(ours.model_config)))
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}


# --------------------------------------------------------------------------------------------------
# Dynamic sizes


@pytest.mark.parametrize(
    "name", ["vit_small_patch16_224", "deit_small_distilled_patch16_224", "vit_base_patch16_reg4_gap_256"]
)
def test_dynamic_size_matches_timm(name):
    theirs, ours = timm_pair(name, img_size=(128, 64), dynamic_img_size=True, **SMALL)
    for size in [(128, 64), (64, 192), (48, 48), (208, 32)]:
        assert_same(theirs, ours, torch.randn(2, 3, *size))
    assert ours.grid_size == (8, 4)  # the stored table is untouched


def test_dynamic_img_pad_matches_timm():
    theirs, ours = timm_pair(
        "vit_small_patch16_224", img_size=(128, 64), dynamic_img_size=True, dynamic_img_pad=True, **SMALL
    )
    for size in [(100, 50), (17, 130), (128, 64), (9, 9)]:
        assert_same(theirs, ours, torch.randn(2, 3, *size))
    assert ours.feat_size((100, 50)) == (7, 4)


def test_dynamic_cache_same_result_and_invalidated():
    theirs, ours = timm_pair("vit_small_patch16_224", img_size=(128, 64), dynamic_img_size=True, **SMALL)
    x = torch.randn(2, 3, 64, 192)
    with torch.no_grad():
        first = ours(x)
        assert len(ours._pos_cache) == 1
        cached = ours(x)
    assert torch.equal(first, cached)
    recomputed = ours(x)  # with grad: recomputed, not cached
    assert max_diff(first, recomputed.detach()) == 0.0
    # An in-place change (as an optimizer step) must invalidate the cached table.
    with torch.no_grad():
        ours.pos_embed.mul_(-0.5)
        theirs.pos_embed[:, 1:].mul_(-0.5)  # the grid rows; row 0 is the class position
        after = ours(x)
        assert max_diff(after, theirs(x)) <= TOL
        assert max_diff(after, first) > 1e-3
    # load_state_dict writes in place too.
    randomize_(theirs, seed=3)
    rectvit.load_checkpoint(ours, theirs.state_dict(), source_grid=ours.grid_size)
    with torch.no_grad():
        assert max_diff(ours(x), theirs(x)) <= TOL


def test_dynamic_gradients_flow_into_table():
    ours = rectvit.create_model("vit_small_patch16_224", img_size=(64, 64), dynamic_img_size=True, **SMALL)
    with torch.no_grad():
        ours(torch.randn(1, 3, 32, 96))  # fills the cache
    ours(torch.randn(2, 3, 32, 96)).square().sum().backward()
    assert ours.pos_embed.grad is not None and ours.pos_embed.grad.abs().sum() > 0
    # and through an optimizer step the cache follows the parameter
    opt = torch.optim.SGD(ours.parameters(), lr=10.0)
    x = torch.randn(1, 3, 32, 96)
    with torch.no_grad():
        before = ours(x)
    opt.step()
    with torch.no_grad():
        cached = ours(x)
    ours._pos_cache.clear()
    with torch.no_grad():
        fresh = ours(x)
    assert torch.equal(cached, fresh) and not torch.equal(before, fresh)


# --------------------------------------------------------------------------------------------------
# Intermediates


@pytest.mark.parametrize("fmt", ["NCHW", "NLC"])
@pytest.mark.parametrize("name", ["deit_small_distilled_patch16_224", "vit_small_patch14_reg4_dinov2"])
def test_forward_intermediates_match_timm(name, fmt):
    size = (98, 154) if "patch14" in name else (80, 144)
    theirs, ours = timm_pair(name, img_size=size, **dict(SMALL, depth=3))
    x = torch.randn(2, 3, *size)
    for kw in [dict(), dict(indices=2, norm=True), dict(indices=[0, -1], return_prefix_tokens=True)]:
        with torch.no_grad():
            t_final, t_maps = theirs.forward_intermediates(x, output_fmt=fmt, **kw)
            o_final, o_maps = ours.forward_intermediates(x, output_fmt=fmt, **kw)
        assert max_diff(t_final, o_final) <= TOL
        assert len(t_maps) == len(o_maps)
        for t, o in zip(t_maps, o_maps):
            if kw.get("return_prefix_tokens"):
                assert max_diff(t[0], o[0]) <= TOL and max_diff(t[1], o[1]) <= TOL
                assert o[1].shape[1] == ours.num_prefix_tokens
            else:
                assert max_diff(t, o) <= TOL
    with torch.no_grad():
        only = ours.forward_intermediates(x, indices=1, intermediates_only=True, output_fmt=fmt)
    assert isinstance(only, list) and len(only) == 1


def test_forward_intermediates_on_dynamic_grid():
    theirs, ours = timm_pair(
        "vit_small_patch16_224", img_size=(64, 64), dynamic_img_size=True, dynamic_img_pad=True, **SMALL
    )
    x = torch.randn(2, 3, 40, 100)
    with torch.no_grad():
        _, maps = ours.forward_intermediates(x)
        _, t_maps = theirs.forward_intermediates(x)
    assert maps[-1].shape == (2, 64, 3, 7)
    assert max_diff(maps[-1], t_maps[-1]) <= TOL


# --------------------------------------------------------------------------------------------------
# Heads and tokens


def test_distilled_eval_mean_and_training_pair():
    theirs, ours = timm_pair("deit_tiny_distilled_patch16_224", img_size=(64, 128), **SMALL)
    x = torch.randn(2, 3, 64, 128)
    with torch.no_grad():
        feats = ours.forward_features(x)
        mean = (ours.head(feats[:, 0]) + ours.head_dist(feats[:, 1])) / 2
        # forward() computes only the prefix tokens in the last block: equal up to float rounding
        assert max_diff(ours(x), mean) <= 1e-6
        theirs.train().set_distilled_training(True)
        ours.train().set_distilled_training(True)
        t_pair, o_pair = theirs(x), ours(x)
    assert isinstance(o_pair, tuple) and len(o_pair) == 2
    assert max(max_diff(a, b) for a, b in zip(t_pair, o_pair)) <= TOL


def test_prefix_pos_embed_layout():
    """timm's flat table rows land where they belong: prefix rows apart, grid rows in (h, w) order."""
    theirs, ours = timm_pair("deit_tiny_distilled_patch16_224", img_size=(48, 80), **SMALL)
    flat = theirs.pos_embed.detach()
    assert torch.equal(ours.prefix_pos_embed.detach(), flat[:, :2])
    assert torch.equal(ours.pos_embed.detach()[0, 1, 4], flat[0, 2 + 1 * 5 + 4])
    _, reg = timm_pair("vit_small_patch14_reg4_dinov2", img_size=(42, 70), **SMALL)
    assert reg.prefix_pos_embed is None and reg.num_prefix_tokens == 5 and reg.grid_size == (3, 5)


def test_reset_classifier_matches_timm():
    theirs, ours = timm_pair("vit_small_patch16_224", img_size=(64, 128), **SMALL)
    theirs.reset_classifier(5, global_pool="avg")
    ours.reset_classifier(5, global_pool="avg")
    randomize_(theirs, seed=1)
    rectvit.load_checkpoint(ours, theirs.state_dict(), source_grid=ours.grid_size)
    assert_same(theirs, ours, torch.randn(2, 3, 64, 128))
    assert ours.model_config["num_classes"] == 5


def test_grad_checkpointing_same_output_and_grads():
    ours = rectvit.create_model("vit_small_patch16_224", img_size=(64, 32), **SMALL)
    x = torch.randn(2, 3, 64, 32)
    ref = ours(x)
    ref.sum().backward()
    g_ref = ours.patch_embed.proj.weight.grad.clone()
    ours.zero_grad()
    ours.set_grad_checkpointing(True)
    out = ours(x)
    out.sum().backward()
    assert max_diff(ref, out) <= TOL
    assert max_diff(g_ref, ours.patch_embed.proj.weight.grad) <= TOL


def test_sincos_table():
    ours = VisionTransformer(img_size=(64, 128), pos_embed="sincos", **SMALL)
    assert "pos_embed" not in ours.state_dict()
    assert torch.equal(ours.pos_embed, rectvit.sincos_2d((4, 8), 64))
    ours.set_input_size(img_size=(32, 48))
    assert torch.equal(ours.pos_embed, rectvit.sincos_2d((2, 3), 64))
    # dynamic mode computes the table for the input's grid (no resampling of a fixed table)
    dyn = VisionTransformer(img_size=(64, 128), pos_embed="sincos", dynamic_img_size=True, **SMALL).eval()
    static = VisionTransformer(img_size=(48, 96), pos_embed="sincos", **SMALL).eval()
    static.load_state_dict(dyn.state_dict())
    x = torch.randn(1, 3, 48, 96)
    with torch.no_grad():
        assert max_diff(dyn(x), static(x)) == 0.0


# --------------------------------------------------------------------------------------------------
# AST


def test_ast_grid_and_any_number_of_frames():
    kw = dict(depth=1, embed_dim=32, num_heads=2)
    ast = rectvit.create_model("ast_base_patch16_s10_128x1024", **kw).eval()
    assert ast.img_size == (128, 1024) and ast.grid_size == (12, 101)
    assert ast.pos_embed.shape == (1, 12, 101, 32) and ast.prefix_pos_embed.shape == (1, 2, 32)
    assert ast.patch_embed.proj.stride == (10, 10) and ast.patch_embed.proj.in_channels == 1
    with torch.no_grad():
        assert ast(torch.randn(1, 1, 128, 1024)).shape == (1, 527)
    dyn = rectvit.create_model("ast_base_patch16_s10_128x1024", dynamic_img_size=True, **kw).eval()
    dyn.load_state_dict(ast.state_dict())
    for frames in [16, 100, 333, 1024, 1500]:
        with torch.no_grad():
            _, maps = dyn.forward_intermediates(torch.randn(1, 1, 128, frames), indices=1)
            assert dyn(torch.randn(2, 1, 128, frames)).shape == (2, 527)
        assert maps[0].shape == (1, 32, 12, (frames - 16) // 10 + 1)


def test_ast_patch_embed_is_a_strided_conv():
    from rectvit.layers import PatchEmbed

    pe = PatchEmbed(img_size=(128, 1024), patch_size=16, patch_stride=10, in_chans=1, embed_dim=8)
    randomize_(pe)
    assert pe.grid_size == (12, 101)
    x = torch.randn(2, 1, 128, 1024)
    ref = torch.nn.functional.conv2d(x, pe.proj.weight, pe.proj.bias, stride=10).permute(0, 2, 3, 1)
    assert max_diff(pe(x), ref) <= TOL


def test_ast_matches_hf_ast():
    """The AST head is HF's: final norm, mean of class and distillation tokens, LayerNorm, Linear."""
    from transformers import ASTConfig, ASTForAudioClassification

    cfg = ASTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
        max_length=120, num_mel_bins=48, num_labels=7,
    )  # fmt: skip
    hf = randomize_(ASTForAudioClassification(cfg)).eval()
    ours = rectvit.create_model(
        "ast_base_patch16_s10_128x1024", img_size=(48, 120), depth=2, embed_dim=32, num_heads=2, num_classes=7
    ).eval()
    assert ours.grid_size == (4, 11)
    s = {k.replace("audio_spectrogram_transformer.", ""): v for k, v in hf.state_dict().items()}
    pos = s["embeddings.position_embeddings"]
    sd = {
        "cls_token": s["embeddings.cls_token"],
        "dist_token": s["embeddings.distillation_token"],
        "prefix_pos_embed": pos[:, :2],
        "pos_embed": pos[:, 2:].reshape(1, 4, 11, 32),  # HF's flat rows are (mel, frame) row-major
        "patch_embed.proj.weight": s["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": s["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": s["layernorm.weight"],
        "norm.bias": s["layernorm.bias"],
        "head_norm.weight": s["classifier.layernorm.weight"],
        "head_norm.bias": s["classifier.layernorm.bias"],
        "head.weight": s["classifier.dense.weight"],
        "head.bias": s["classifier.dense.bias"],
    }
    names = dict(norm1="layernorm_before", norm2="layernorm_after", **{"attn.proj": "attention.o_proj"})
    names.update({"mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"})
    for i in range(2):
        for ours_name, hf_name in names.items():
            for p in ("weight", "bias"):
                sd[f"blocks.{i}.{ours_name}.{p}"] = s[f"layers.{i}.{hf_name}.{p}"]
        for p in ("weight", "bias"):
            sd[f"blocks.{i}.attn.qkv.{p}"] = torch.cat([s[f"layers.{i}.attention.{q}_proj.{p}"] for q in "qkv"])
    rectvit.load_checkpoint(ours, sd, source_grid=ours.grid_size)
    frames_by_mel = torch.randn(2, 120, 48)  # HF's (B, frames, mel) input
    with torch.no_grad():
        ref = hf(frames_by_mel).logits
        out = ours(frames_by_mel.transpose(1, 2).unsqueeze(1))  # ours: (B, 1, mel, frames)
    assert max_diff(ref, out) <= TOL


# --------------------------------------------------------------------------------------------------
# Checkpoint conversion and loading


def test_load_from_other_grid_with_source_grid_equals_timm_resize():
    """A table trained on (8, 4) loaded into a (4, 8) model: same count, so the grid must be stated."""
    theirs = randomize_(timm.create_model("vit_small_patch16_224", img_size=(128, 64), **SMALL)).eval()
    sd = {k: v.clone() for k, v in theirs.state_dict().items()}
    ours = rectvit.create_model("vit_small_patch16_224", img_size=(64, 128), **SMALL).eval()
    report = rectvit.load_checkpoint(ours, sd, source_grid=(8, 4))
    assert report.source_grid == (8, 4) and report.rows[0][0] == "pos_embed"
    theirs.set_input_size(img_size=(64, 128))
    assert_same(theirs, ours, torch.randn(2, 3, 64, 128))


def test_load_other_count_without_grid_is_ambiguous():
    theirs = timm.create_model("vit_small_patch16_224", img_size=(128, 64), **SMALL)
    ours = rectvit.create_model("vit_small_patch16_224", img_size=(64, 64), **SMALL)
    with pytest.raises(rectvit.AmbiguousGridError) as e:
        rectvit.load_checkpoint(ours, theirs.state_dict())
    assert (8, 4) in e.value.candidates and (4, 8) in e.value.candidates
    assert "source_grid" in str(e.value) and "32" in str(e.value)
    with pytest.raises(rectvit.CheckpointError, match="source_grid 5x5 has 25 positions.*32"):
        rectvit.load_checkpoint(ours, theirs.state_dict(), source_grid=(5, 5))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_load_from_files(tmp_path, suffix):
    theirs = randomize_(timm.create_model("deit3_small_patch16_224", img_size=(48, 96), **SMALL)).eval()
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in theirs.state_dict().items()}, str(path))
    else:
        torch.save({"model": theirs.state_dict()}, path)
    ours = rectvit.create_model(
        "deit3_small_patch16_224", img_size=(48, 96), checkpoint_path=str(path), source_grid=(3, 6), **SMALL
    )
    assert ours.load_report.layout == "timm"
    assert_same(theirs, ours.eval(), torch.randn(1, 3, 48, 96))


def test_misshapen_and_missing_keys_are_named():
    theirs = timm.create_model("vit_small_patch16_224", img_size=(64, 64), num_classes=10, **SMALL)
    ours = rectvit.create_model("vit_small_patch16_224", img_size=(64, 64), num_classes=7, **SMALL)
    sd = theirs.state_dict()
    with pytest.raises(rectvit.CheckpointError, match=r"head.weight: checkpoint \(10, 64\), model \(7, 64\)"):
        rectvit.load_checkpoint(ours, sd, source_grid=(4, 4))
    report = rectvit.load_checkpoint(ours, sd, strict=False, source_grid=(4, 4))
    assert set(report.dropped) == {"head.weight", "head.bias"} and report.missing == ["head.weight", "head.bias"]
    del sd["norm.bias"]  # anything but the classifier is an error, even with strict=False
    with pytest.raises(rectvit.CheckpointError, match="missing from the checkpoint: \\['norm.bias'\\]"):
        rectvit.load_checkpoint(ours, sd, strict=False, source_grid=(4, 4))


def test_rectvit_layout_round_trip():
    ours = randomize_(rectvit.create_model("vit_base_patch16_reg4_gap_256", img_size=(64, 32), **SMALL)).eval()
    other = rectvit.create_model("vit_base_patch16_reg4_gap_256", img_size=(64, 32), **SMALL).eval()
    report = rectvit.load_checkpoint(other, ours.state_dict())
    assert report.layout == "rectvit" and report.source_grid == (4, 2)
    x = torch.randn(1, 3, 64, 32)
    with torch.no_grad():
        assert torch.equal(ours(x), other(x))


def test_dynamic_after_set_input_size_matches_timm():
    theirs, ours = timm_pair("vit_base_patch16_reg4_gap_256", img_size=(64, 128), dynamic_img_size=True, **SMALL)
    theirs.set_input_size(img_size=(160, 48))
    ours.set_input_size(img_size=(160, 48))
    assert ours.grid_size == (10, 3)
    for size in [(160, 48), (32, 224)]:
        assert_same(theirs, ours, torch.randn(2, 3, *size))


@pytest.mark.parametrize("name", ["deit_small_distilled_patch16_224", "vit_medium_patch16_gap_256"])
def test_pre_logits_match_timm(name):
    theirs, ours = timm_pair(name, img_size=(48, 112), **SMALL)
    x = torch.randn(2, 3, 48, 112)
    with torch.no_grad():
        t = theirs.forward_head(theirs.forward_features(x), pre_logits=True)
        o = ours.forward_head(ours.forward_features(x), pre_logits=True)
    assert o.shape == (2, 64) and max_diff(t, o) <= TOL


@pytest.mark.parametrize(
    "name,kw,prefix",
    [
        ("vit_small_patch16_224", {}, 1),
        ("deit_small_distilled_patch16_224", {}, 2),
        ("ast_base_patch16_s10_128x1024", {}, 2),
    ],
)
def test_last_block_computes_only_the_tokens_the_head_reads(name, kw, prefix):
    theirs_name = None if name.startswith("ast") else name
    size = (128, 160) if name.startswith("ast") else (64, 96)
    ours = randomize_(rectvit.create_model(name, img_size=size, **SMALL, **kw)).eval()
    seen = []
    handle = ours.blocks[-1].mlp.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    x = torch.randn(2, ours.in_chans, *size)
    with torch.no_grad():
        out = ours(x)
        full = ours.forward_head(ours.forward_features(x))
    handle.remove()
    assert seen[0] == prefix and seen[1] > prefix  # forward: prefix tokens only; forward_features: all
    assert max_diff(out, full) <= 1e-5
    if theirs_name:
        theirs = randomize_(timm.create_model(theirs_name, img_size=size, **SMALL)).eval()
        rectvit.load_checkpoint(ours, theirs.state_dict(), source_grid=ours.grid_size)
        with torch.no_grad():
            assert max_diff(ours(x), theirs(x)) <= TOL


def test_avg_pool_models_keep_every_token():
    ours = rectvit.create_model("vit_medium_patch16_gap_256", img_size=(64, 96), **SMALL).eval()
    seen = []
    ours.blocks[-1].mlp.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    with torch.no_grad():
        ours(torch.randn(1, 3, 64, 96))
    assert seen == [4 * 6]


def test_pos_cache_is_a_bounded_lru():
    from rectvit.models._util import GridTableCache as _GridTableCache

    cache, table, made = _GridTableCache(max_entries=3), torch.zeros(1, 2, 2, 4), []

    def get(grid):
        return cache.get(table, grid, lambda: made.append(grid) or torch.zeros(1, *grid, 4))

    for grid in [(1, 1), (1, 2), (1, 3), (1, 1), (1, 4)]:  # (1, 1) was used again: (1, 2) is evicted
        get(grid)
    assert len(cache) == 3 and made == [(1, 1), (1, 2), (1, 3), (1, 4)]
    get((1, 1))
    get((1, 2))
    assert made[-1] == (1, 2) and len(cache) == 3
    table.add_(1.0)  # an in-place write makes every entry stale
    get((1, 1))
    assert made[-1] == (1, 1) and len(cache) == 1


def test_replaced_or_hooked_last_block_sees_every_token():
    ours = randomize_(rectvit.create_model("vit_small_patch16_224", img_size=(64, 96), **SMALL)).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        full = ours.forward_head(ours.forward_features(x))
        seen = []
        handle = ours.norm.register_forward_hook(lambda m, args, out: seen.append(out.shape[1]))
        assert max_diff(ours(x), full) <= 1e-6
        handle.remove()
        assert seen == [1 + 4 * 6]  # a hook on the final norm gets every token, as forward_features gives
        ours.blocks[-1] = torch.nn.Identity()  # layer dropping: a block that takes x alone
        assert ours(x).shape == (2, 1000) and ours.forward_features(x).shape == (2, 25, 64)
