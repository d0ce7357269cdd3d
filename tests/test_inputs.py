"""Inputs a newcomer hands over: memory layouts, dtypes, sizes the patches do not tile, failed resizes.

Acceptance rules: resampling gives the same numbers for every memory layout of its input and equals
an independent separable reference; every bad image, size or option is a ``RectViTError`` naming
what was expected and what was given; a failed ``set_input_size`` leaves the model as it was.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import rectvit
from rectvit import InputSizeError, resample_abs_pos_embed, resample_grid, resample_patch_embed

# ---- resampling is independent of the input's memory layout --------------------------------------


def _kernel(x: float, mode: str) -> float:
    """PIL-style antialiasing filters as torch uses them: triangle, or Keys cubic with a = -0.5."""
    x = abs(x)
    if mode == "bilinear":
        return max(0.0, 1.0 - x)
    a = -0.5
    if x < 1:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _aa_matrix(n_in: int, n_out: int, mode: str) -> torch.Tensor:
    """``(n_out, n_in)`` float64 matrix of an antialiased 1-D resize (align_corners=False), written from
    the filter's definition: support widened by the scale when shrinking, weights normalised to sum 1."""
    scale = n_in / n_out
    stretch = max(scale, 1.0)
    support = (1.0 if mode == "bilinear" else 2.0) * stretch
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        center = scale * (i + 0.5)
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), n_in)
        w = torch.tensor([_kernel((j - center + 0.5) / stretch, mode) for j in range(lo, hi)], dtype=torch.float64)
        m[i, lo:hi] = w / w.sum()
    return m


def _layouts(table: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same ``(B, h, w, C)`` values in four memory layouts."""
    b, h, w, c = table.shape
    return {
        "contiguous": table.contiguous(),
        "permuted": table.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1),  # NCHW storage
        "channels_last": table.contiguous(memory_format=torch.channels_last),
        "transposed": table.transpose(1, 2).contiguous().transpose(1, 2),
    }


def test_issue_case_width_one_output_is_layout_independent():
    """The reported case: a permuted (1, 2, 24, C) table resized to (48, 1) was 0.48 off the contiguous one."""
    torch.manual_seed(0)
    table = torch.randn(1, 2, 24, 8)
    outs = {k: resample_grid(t, (48, 1)) for k, t in _layouts(table).items()}
    ref = torch.einsum("oh,bhwc,pw->bopc", _aa_matrix(2, 48, "bicubic"), table.double(), _aa_matrix(24, 1, "bicubic"))
    for name, out in outs.items():
        torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=0, msg=name)


SIDE = st.integers(1, 9) | st.just(1)  # sides of 1 often: where torch's kernels went wrong
MODES = st.sampled_from(["nearest", "bilinear", "bicubic", "area"])


@settings(max_examples=80, deadline=None)
@given(h=SIDE, w=SIDE, nh=SIDE, nw=SIDE, c=st.integers(1, 5), mode=MODES, aa=st.booleans(), seed=st.integers(0, 99))
@example(h=3, w=5, nh=7, nw=1, c=4, mode="bilinear", aa=True, seed=0)  # width-1 outputs: torch's bug
@example(h=5, w=1, nh=2, nw=1, c=3, mode="bicubic", aa=True, seed=1)
@example(h=1, w=1, nh=4, nw=1, c=2, mode="bicubic", aa=True, seed=2)
def test_resample_grid_layouts_agree_and_match_reference(h, w, nh, nw, c, mode, aa, seed):
    table = torch.randn(1, h, w, c, generator=torch.Generator().manual_seed(seed))
    outs = {k: resample_grid(t, (nh, nw), interpolation=mode, antialias=aa) for k, t in _layouts(table).items()}
    base = outs["contiguous"]
    for name, out in outs.items():
        assert torch.equal(out, base), (name, (h, w), (nh, nw))
    if aa and mode in ("bilinear", "bicubic"):
        ref = torch.einsum("oh,bhwc,pw->bopc", _aa_matrix(h, nh, mode), table.double(), _aa_matrix(w, nw, mode))
        torch.testing.assert_close(base.double(), ref, atol=2e-5, rtol=0)


@settings(max_examples=60, deadline=None)
@given(h=SIDE, w=SIDE, nh=SIDE, nw=SIDE, prefix=st.integers(0, 2), mode=MODES, aa=st.booleans())
@example(h=2, w=24, nh=48, nw=1, prefix=1, mode="bicubic", aa=True)
def test_resample_abs_pos_embed_layouts_agree(h, w, nh, nw, prefix, mode, aa):
    c = 6
    values = torch.randn(1, prefix + h * w, c, generator=torch.Generator().manual_seed(h * 131 + w))
    strided = torch.randn(1, c, prefix + h * w).transpose(1, 2)  # channels-first storage
    strided.copy_(values)
    padded = torch.randn(1, prefix + h * w, 2 * c)[..., ::2]  # every other channel of a wider tensor
    padded.copy_(values)
    kw = dict(old_size=(h, w), num_prefix_tokens=prefix, interpolation=mode, antialias=aa)
    base = resample_abs_pos_embed(values, (nh, nw), **kw)
    for out in (resample_abs_pos_embed(strided, (nh, nw), **kw), resample_abs_pos_embed(padded, (nh, nw), **kw)):
        assert torch.equal(out, base)


@settings(max_examples=50, deadline=None)
@given(ph=st.integers(1, 6), pw=st.integers(1, 6), nh=st.integers(1, 6), nw=st.integers(1, 6), aa=st.booleans())
def test_resample_patch_embed_layouts_agree(ph, pw, nh, nw, aa):
    weight = torch.randn(4, 3, ph, pw, generator=torch.Generator().manual_seed(ph * 7 + pw))
    base = resample_patch_embed(weight, (nh, nw), antialias=aa)
    for other in (
        weight.contiguous(memory_format=torch.channels_last),
        weight.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2),
    ):
        assert torch.equal(resample_patch_embed(other, (nh, nw), antialias=aa), base)


# ---- image dtypes: one rule for ViT, hybrid and (through the shared check) Swin ----------------------

SMALL = dict(depth=1, embed_dim=32, num_heads=2)


def _vit(**kw):
    return rectvit.create_model("vit_small_patch16_224", **{**SMALL, "img_size": (32, 48), **kw}).eval()


def _hybrid(**kw):
    return rectvit.create_model("vit_tiny_r_s16_p8_224", **{**SMALL, "img_size": (32, 64), **kw}).eval()


@pytest.mark.parametrize("build", [_vit, _hybrid], ids=["vit", "hybrid"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64, torch.bool])
def test_integer_and_bool_images_are_refused_not_cast(one_thread, build, dtype):
    model = build()
    x = torch.zeros(1, 3, *model.img_size, dtype=dtype)
    with pytest.raises(InputSizeError, match=rf"floating-point image batch \(torch.float32\), got {dtype}.*/ 255"):
        model(x)


@pytest.mark.parametrize("build", [_vit, _hybrid], ids=["vit", "hybrid"])
def test_float_images_must_match_the_model_dtype(one_thread, build):
    model = build()
    size = model.img_size
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        match = rf"torch.float32 image batch .* got {dtype}; pass x.to\(torch.float32\)"
        with pytest.raises(InputSizeError, match=match):
            model(torch.zeros(1, 3, *size, dtype=dtype))
    half = build().to(torch.bfloat16)
    match = r"torch.bfloat16 image batch .* got torch.float32.*model.to\(torch.float32\)"
    with pytest.raises(InputSizeError, match=match):
        half(torch.zeros(1, 3, *size))
    x = torch.randn(1, 3, *size)
    assert half(x.to(torch.bfloat16)).dtype == torch.bfloat16  # the fixes the message names work
    assert model.double()(x.double()).dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts, so any float dtype is fine
        assert build()(x.to(torch.bfloat16)).shape == (1, 1000)


def test_swin_integer_images_are_refused_by_the_shared_check(one_thread):
    swin = rectvit.create_model(
        "swin_tiny_patch4_window7_224", img_size=(32, 32), embed_dim=32, depths=(1, 1), num_heads=(2, 2), window_size=4
    ).eval()
    with pytest.raises(InputSizeError, match=r"floating-point image batch, got torch.uint8"):
        swin(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
