"""TorchScript for BEiT and EVA beyond the registered names (tests/test_torchscript.py covers those).

The configurations here take paths no registered name takes: BEiT's absolute table, shared bias table
and q/v-bias-free attention; EVA without prefix tokens, with registers and an absolute table, rope-style
unfused projections, max/avgmax pooling, scale norms and SwiGLU. Acceptance rule: the scripted
program (saved and loaded) equals the eager model (<= 1e-5 float32) at the nominal size and at a second,
rectangular size, and equals timm 1.0.31 with the same weights at the nominal size; gradients through the
scripted program equal eager ones (resampled bias tables, learned RoPE frequencies). Scripting leaves the
eager caches in use.
"""

from __future__ import annotations

import pytest
import timm
import torch
from timm.models.beit import gen_relative_position_index

import rectvit
from helpers import image_batch, randomize_, save_load, script, tiny
from rectvit.layers.rope import RotaryEmbedding2d, rope_coords
from rectvit.models.beit import beit_relative_position_index

TOL = 1e-5

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::DeprecationWarning")]

CASES = {
    "beit_abs_shared_noqkvbias": (
        "beit_base_patch16_224",
        dict(use_abs_pos_emb=True, use_rel_pos_bias=False, use_shared_rel_pos_bias=True, qkv_bias=False),
    ),
    "beit_abs_and_per_block_token_pool": (
        "beit_base_patch16_224",
        dict(use_abs_pos_emb=True, global_pool="token", init_values=0.0),
    ),
    "eva_no_prefix_avgmax_scale_norms": (
        "eva02_tiny_patch14_224",
        dict(class_token=False, global_pool="avgmax", scale_attn_inner=True, scale_mlp=True, swiglu_align_to=8),
    ),
    "eva_regs_abs_table_unfused_rope_max": (
        "vit_base_patch16_rope_224",
        dict(num_reg_tokens=2, use_abs_pos_emb=True, qkv_fused=False, global_pool="max", use_pre_transformer_norm=True),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_scripted_variant_equals_eager_at_two_sizes_and_timm(case):
    name, kw = CASES[case]
    kw = {**tiny(name), **kw}
    model = randomize_(rectvit.create_model(name, dynamic_img_size=True, **kw)).eval()
    loaded = save_load(script(model))
    h, w = model.img_size
    for size in ((h, w), (2 * h, w + w // 2)):
        x = image_batch(model, 2, size)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x), atol=TOL, rtol=0)
    theirs = timm.create_model(name, pretrained=False, **kw).eval()
    theirs.load_state_dict(rectvit.to_timm_state_dict(model), strict=True)
    x = image_batch(model, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), theirs(x), atol=TOL, rtol=0)


@pytest.mark.parametrize("name", ["beit_base_patch16_224", "vit_base_patch16_rope_mixed_224"])
def test_scripted_gradients_equal_eager_at_another_size(name):
    """Training through the scripted program: resampled bias tables and mixed RoPE's frequencies learn
    as in eager mode (nothing computed under no-grad or served from a cache)."""
    model = randomize_(rectvit.create_model(name, dynamic_img_size=True, **tiny(name))).train()
    scripted = script(model)
    h, w = model.img_size
    x = image_batch(model, 2, (2 * h, w))
    grads = []
    for m in (model, scripted):
        model.zero_grad()
        m(x).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    eager, scripted_grads = grads
    assert eager.keys() == scripted_grads.keys()
    learned = "rope.freqs" if "rope" in name else "blocks.0.attn.relative_position_bias_table"
    assert learned in eager and eager[learned].abs().sum() > 0
    for n in eager:
        torch.testing.assert_close(scripted_grads[n], eager[n], atol=TOL, rtol=0)


def test_eager_caches_still_serve_after_scripting():
    beit = randomize_(
        rectvit.create_model("beit_base_patch16_224", dynamic_img_size=True, **tiny("beit_base_patch16_224"))
    )
    eva = randomize_(
        rectvit.create_model(
            "vit_base_patch16_rope_ape_224", dynamic_img_size=True, **tiny("vit_base_patch16_rope_ape_224")
        )
    )
    for model in (beit.eval(), eva.eval()):
        script(model)
        h, w = model.img_size
        x = image_batch(model, 1, (2 * h, w))
        with torch.no_grad():
            first, second = model(x), model(x)
        assert torch.equal(first, second)
    assert len(beit.blocks[0].attn._cache) == 1
    assert len(eva.rope._cache) == 1 and len(eva._pos_cache) == 1


@pytest.mark.parametrize("window", [(1, 1), (2, 5), (4, 3), (3, 3)])
def test_beit_index_is_timms(window):
    """The (scriptable) index against timm's gen_relative_position_index, rectangular windows included."""
    assert torch.equal(beit_relative_position_index(window), gen_relative_position_index(window))


def test_rope_coords_scripted_equal_and_bad_schemes_are_clear_errors():
    scripted = torch.jit.script(rope_coords)
    for args in [
        ((3, 5), "index", None, None, 0.5, "xy"),
        ((3, 5), "centered", "max"),
        ((4, 2), "index", "min", (8, 6)),
    ]:
        assert torch.equal(scripted(*args), rope_coords(*args))
    with pytest.raises(rectvit.RectViTError, match="centered RoPE coordinates need a normalize scheme"):
        rope_coords((2, 3), "centered")
    with pytest.raises(rectvit.RectViTError, match="pass ref_grid"):
        rope_coords((2, 3), "index", "separate")
    rope = RotaryEmbedding2d(8, "mixed", num_heads=2, depth=3)
    sin, cos = script(rope)((2, 3))
    want = rope((2, 3))
    assert torch.equal(sin, want[0]) and torch.equal(cos, want[1]) and sin.shape == (3, 2, 6, 8)
