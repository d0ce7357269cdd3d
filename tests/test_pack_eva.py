"""Packed batches for the EVA family (EVA-02, rope-ViT axial/mixed/_ape, reg1_gap, DINOv3).

Oracles: timm 1.0.31's dynamic-size ``Eva`` run on each image alone (random non-zero weights,
<= 1e-5 float32); gradients against the per-image loop (<= 1e-5 relative to each gradient's
largest entry); stochastic depth against the four per-image outcomes computed from the block's own
sub-modules on the image alone.
"""

from __future__ import annotations

import pytest
import timm
import torch

import rectvit
from helpers import max_diff, packed_and_per_image_grads, randomize_
from rectvit.models.eva import EvaBlock
from rectvit.variable import dynamic_mode, supports_packing

TOL = 1e-5

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:.*is_fx_tracing"),
    pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors"),
]

TINY = dict(embed_dim=64, depth=2, num_heads=2)  # head_dim 32: divisible by 4 for 2-D RoPE
# name, constructor overrides; sizes in patches (rows, cols), repeated shapes included
CASES = {
    "eva02": ("eva02_tiny_patch14_224", dict(num_classes=5)),  # abs table + axial RoPE (ref grid), avg
    "rope-axial": ("vit_small_patch16_rope_224", dict(num_classes=4)),  # class token, token pool
    "rope-ape": ("vit_small_patch16_rope_ape_224", dict(num_classes=4)),  # table without prefix rows
    "rope-mixed": ("vit_small_patch16_rope_mixed_224", dict(num_classes=4)),  # per block/head rotation
    "rope-mixed-ape": ("vit_small_patch16_rope_mixed_ape_224", dict(num_classes=4)),
    "reg1-gap": ("vit_base_patch16_rope_reg1_gap_256", dict(num_classes=3)),  # no class token, 1 register
    "dinov3": ("vit_small_patch16_dinov3", dict(num_classes=3)),  # 4 registers, rotate-half pairs
}
GRIDS = [(2, 5), (3, 2), (1, 1), (2, 5), (4, 1)]


def _patch(name: str) -> int:
    return 14 if "patch14" in name else 16


def _pair(name: str, seed: int = 0, **overrides):
    kw = dict(TINY, dynamic_img_size=True, **overrides)
    theirs = randomize_(timm.create_model(name, **kw), seed=seed).eval()
    ours = rectvit.create_model(name, **kw).eval()
    rectvit.load_checkpoint(ours, theirs.state_dict(), source_grid=ours.grid_size)  # random table: grid given
    return theirs, ours


def _images(name: str, grids=GRIDS, seed: int = 0) -> list[torch.Tensor]:
    g, p = torch.Generator().manual_seed(seed), _patch(name)
    return [torch.randn(3, h * p, w * p, generator=g) for h, w in grids]


# --------------------------------------------------------------------------------------------------
# Exactness: row i of model(packed) is image i alone (timm)


@pytest.mark.parametrize("case", list(CASES))
def test_packed_rows_equal_timm_on_each_image_alone(case):
    name, overrides = CASES[case]
    theirs, ours = _pair(name, **overrides)
    xs = _images(name)
    with torch.no_grad():
        out = ours(rectvit.pack(xs))
        ref = torch.cat([theirs(x[None]) for x in xs])
    assert out.shape == (len(xs), ours.num_classes)
    assert ref.abs().max() > 1e-2  # non-trivial logits
    assert max_diff(out, ref) <= TOL


@pytest.mark.parametrize("case", ["eva02", "rope-mixed-ape", "dinov3"])
def test_packed_features_maps_and_pre_logits_per_image(case):
    name, overrides = CASES[case]
    theirs, ours = _pair(name, **overrides)
    xs = _images(name, seed=1)
    p = ours.num_prefix_tokens
    with torch.no_grad():
        feats = ours.forward_features(rectvit.pack(xs))
        assert isinstance(feats, rectvit.PackedTokens)
        tokens, maps, prefix = feats.unpack(), feats.feature_maps(), feats.prefix_tokens()
        pre = ours.forward_head(feats, pre_logits=True)
        for i, x in enumerate(xs):
            ref = theirs.forward_features(x[None])[0]
            h, w = ours.feat_size(x.shape[-2:])
            assert max_diff(tokens[i], ref) <= TOL
            assert max_diff(maps[i], ref[p:].reshape(h, w, -1)) <= TOL
            assert max_diff(prefix[i], ref[:p]) <= TOL
            assert max_diff(pre[i], theirs.forward_head(ref[None], pre_logits=True)[0]) <= TOL


@pytest.mark.parametrize("pool", ["token", "avg", "max", "avgmax", ""])
def test_every_pooling_and_no_head_per_image(pool):
    name = "vit_small_patch16_rope_mixed_ape_224"
    theirs, ours = _pair(name, num_classes=0 if pool == "avg" else 3, global_pool=pool, num_reg_tokens=2)
    xs = _images(name, GRIDS[:3], seed=2)
    with torch.no_grad():
        out = ours(rectvit.pack(xs))
        ref = [theirs(x[None])[0] for x in xs]
    if pool:
        assert max_diff(out, torch.stack(ref)) <= TOL
    else:  # no pooling: the head on every token, still packed
        assert isinstance(out, rectvit.PackedTokens)
        for got, want in zip(out.unpack(), ref):
            assert max_diff(got, want) <= TOL


def test_class_token_off_with_registers_and_nested_backend():
    name = "eva02_tiny_patch14_224"
    theirs, ours = _pair(name, num_classes=4, class_token=False, num_reg_tokens=3)
    xs = _images(name, seed=3)
    with torch.no_grad():
        ref = torch.cat([theirs(x[None]) for x in xs])
        for attention in ("segments", "nested"):
            assert max_diff(ours(rectvit.pack(xs, attention=attention)), ref) <= TOL


# --------------------------------------------------------------------------------------------------
# Training: gradients and stochastic depth


@pytest.mark.parametrize("case, checkpointing", [("rope-mixed-ape", False), ("eva02", True), ("dinov3", False)])
def test_gradients_equal_the_per_image_loop(case, checkpointing):
    name, overrides = CASES[case]
    model = randomize_(rectvit.create_model(name, **dict(TINY, dynamic_img_size=True, **overrides))).train()
    model.set_grad_checkpointing(checkpointing)
    xs = _images(name, seed=4)
    target = torch.randn(len(xs), model.num_classes, generator=torch.Generator().manual_seed(5))

    packed, loop = packed_and_per_image_grads(model, xs, target)
    assert packed.keys() == loop.keys()
    if "mixed" in case:
        assert "rope.freqs" in packed  # the learned rotation is trained through the packed path
    if model.pos_embed is not None:
        assert "pos_embed" in packed
    for n in packed:
        scale = loop[n].abs().max().item()
        assert scale > 0, n
        assert (packed[n] - loop[n]).abs().max().item() <= TOL * max(scale, 1.0), n


def test_stochastic_depth_drops_whole_images():
    """Each image's block output is one of the four outcomes (each branch kept x2 or dropped), the
    same for all its tokens; over seeds both outcomes of a branch occur."""
    name = "vit_small_patch16_rope_mixed_224"
    model = randomize_(rectvit.create_model(name, drop_path_rate=1.0 / 3, dynamic_img_size=True, **TINY)).train()
    blk = model.blocks[1]  # drop probability 1/3 (keep 2/3, kept branches x1.5)
    assert isinstance(blk, EvaBlock)
    xs = _images(name, GRIDS[:3], seed=6)
    packed = rectvit.pack(xs)
    tokens, rope = model._embed_packed(packed)
    layout = tokens.layout
    r = (rope[0][1], rope[1][1])
    ins = tokens.tokens.split(list(layout.lengths))
    candidates = []
    with torch.no_grad():
        for t, x in zip(ins, xs):
            sin, cos = model.rope(model.feat_size(x.shape[-2:]))
            a = blk.gamma_1 * blk.attn.eval()(blk.norm1(t[None]), (sin[1], cos[1]))[0]
            outs = []
            for m1 in (0.0, 1.5):
                y = t + m1 * a
                f = blk.gamma_2 * blk.mlp(blk.norm2(y))
                outs += [y + m2 * f for m2 in (0.0, 1.5)]
            candidates.append(outs)
        blk.train()
        seen = set()
        for seed in range(8):
            torch.manual_seed(seed)
            out = blk(tokens.tokens, r, layout).split(list(layout.lengths))
            for o, cands in zip(out, candidates):
                hits = [k for k, c in enumerate(cands) if max_diff(o, c) <= TOL]
                assert len(hits) == 1, hits
                seen.add(hits[0])
    assert len(seen) >= 3


# --------------------------------------------------------------------------------------------------
# Sizes, bad inputs, forward_variable


def test_static_model_takes_packs_of_its_size_and_names_other_sizes():
    model = rectvit.create_model("vit_small_patch16_rope_224", img_size=(32, 48), **TINY).eval()
    xs = [torch.randn(3, 32, 48), torch.randn(3, 32, 48)]
    with torch.no_grad():
        assert max_diff(model(rectvit.pack(xs)), model(torch.stack(xs))) <= TOL
    with pytest.raises(rectvit.InputSizeError, match="packed image 1 .*dynamic_img_size=True"):
        model(rectvit.pack([torch.randn(3, 32, 48), torch.randn(3, 16, 48)]))


@pytest.mark.parametrize(
    "size, chans, fragments",
    [
        ((8, 48), 3, ["packed image 2", "8x48", "smaller than one patch"]),
        ((32, 48), 1, ["packed image", "3 input channel", "got 1"]),
    ],
)
def test_model_checks_every_packed_size_before_any_work(size, chans, fragments):
    model = rectvit.create_model("eva02_tiny_patch14_224", patch_size=16, dynamic_img_size=True, **TINY).eval()
    calls = []
    model.patch_embed.register_forward_pre_hook(lambda m, a: calls.append(1))
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(chans, h, w, generator=g) for h, w in [(32, 48), (16, 16), size, (16, 32)]]
    with pytest.raises(rectvit.InputSizeError) as e:
        model(rectvit.pack(xs))
    for f in fragments:
        assert f in str(e.value), (f, str(e.value))
    assert calls == []


def test_forward_intermediates_rejects_a_pack_with_advice():
    model = rectvit.create_model("vit_small_patch16_dinov3", **TINY)
    with pytest.raises(rectvit.RectViTError, match="feature_maps"):
        model.forward_intermediates(rectvit.pack([torch.randn(3, 32, 32)]))


def test_forward_variable_packs_eva_in_one_pass_and_groups_beit_by_shape():
    name = "vit_small_patch16_rope_mixed_ape_224"
    model = randomize_(rectvit.create_model(name, img_size=(32, 48), num_classes=3, **TINY)).eval()
    assert supports_packing(model)
    xs = _images(name)
    runs = []
    model.blocks[0].register_forward_pre_hook(lambda m, a: runs.append(1))
    with torch.no_grad():
        outs = rectvit.forward_variable(model, xs)
        feats = rectvit.forward_variable(model, xs, forward=model.forward_features)
        assert len(runs) == 2  # one packed pass each, though the inputs have four shapes
        with dynamic_mode(model):
            for x, o, f in zip(xs, outs, feats):
                assert max_diff(o, model(x[None])[0]) <= TOL
                assert max_diff(f, model.forward_features(x[None])[0]) <= TOL
    assert model.dynamic_img_size is False  # restored

    model.blocks[1] = torch.nn.Identity()  # not an EvaBlock: no packed path
    assert not supports_packing(model)
    beit = rectvit.create_model("beit_base_patch16_224", img_size=32, **TINY)
    assert not supports_packing(beit)
    with pytest.raises(rectvit.RectViTError, match="packing"):
        rectvit.forward_variable(beit, [torch.zeros(3, 32, 32)], packing=True)
