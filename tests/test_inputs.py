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


def _swin(**kw):
    small = dict(depths=(1, 1), num_heads=(2, 2), embed_dim=16, window_size=4)
    return rectvit.create_model("swin_tiny_patch4_window7_224", **{**small, "img_size": (32, 64), **kw}).eval()


@pytest.mark.parametrize("build", [_vit, _hybrid, _swin], ids=["vit", "hybrid", "swin"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64, torch.bool])
def test_integer_and_bool_images_are_refused_not_cast(one_thread, build, dtype):
    model = build()
    x = torch.zeros(1, 3, *model.img_size, dtype=dtype)
    with pytest.raises(InputSizeError, match=rf"floating-point image batch \(torch.float32\), got {dtype}.*/ 255"):
        model(x)


@pytest.mark.parametrize("build", [_vit, _hybrid, _swin], ids=["vit", "hybrid", "swin"])
def test_float_images_must_match_the_model_dtype(one_thread, build):
    model = build()
    size = model.img_size
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        match = rf"torch.float32 image batch .* got {dtype}; pass x.to\(torch.float32\)"
        with pytest.raises(InputSizeError, match=match):
            model(torch.zeros(1, 3, *size, dtype=dtype))
    with pytest.raises(InputSizeError, match=r"got torch.float64; pass x.to"):  # meta tensors: the same error
        model.check_input(torch.zeros(1, 3, *size, dtype=torch.float64, device="meta"))
    half = build().to(torch.bfloat16)
    match = r"torch.bfloat16 image batch .* got torch.float32.*model.to\(torch.float32\)"
    with pytest.raises(InputSizeError, match=match):
        half(torch.zeros(1, 3, *size))
    x = torch.randn(1, 3, *size)
    assert half(x.to(torch.bfloat16)).dtype == torch.bfloat16  # the fixes the message names work
    assert model.double()(x.double()).dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts, so any float dtype is fine
        assert build()(x.to(torch.bfloat16)).shape[0] == 1


# ---- sizes the patches do not tile: one rule for every path -----------------------------------------
# Rule (docs/models.md): the grid holds the whole patches that fit, as the convolution takes them; the
# bottom/right remainder is not seen (timm's rule for a nominal size), on every path, static and dynamic.
# dynamic_img_pad=True pads instead. Overlapping strides (AST) count whole patches, as timm and HF do.

NON_MULTIPLE = (100, 64)  # patch 16: a 6x4 grid; the last 4 pixel rows are not seen


def test_non_multiple_sizes_crop_on_every_path_like_the_convolution(one_thread, tmp_path, capsys):
    """The truth: the same model on the input cropped to the whole patches (96x64)."""
    from rectvit.cli import main

    x = torch.randn(2, 3, *NON_MULTIPLE)
    cropped = x[..., :96, :64]
    ref = _vit(img_size=(96, 64))
    with torch.no_grad():
        expected = ref(cropped)
        static = _vit(img_size=NON_MULTIPLE)
        static.load_state_dict(ref.state_dict())
        assert static.grid_size == (6, 4)
        torch.testing.assert_close(static(x), expected, rtol=0, atol=1e-6)
        ref.dynamic_img_size = True
        torch.testing.assert_close(ref(x), expected, rtol=0, atol=1e-6)
        ref.dynamic_img_size = False
        ref.set_input_size(img_size=NON_MULTIPLE)
        assert ref.grid_size == (6, 4)
        torch.testing.assert_close(ref(x), expected, rtol=0, atol=1e-6)
    src = rectvit.save_checkpoint(_vit(img_size=(96, 64)), tmp_path / "m.safetensors")
    assert rectvit.load_model(src, img_size=NON_MULTIPLE).grid_size == (6, 4)
    tiny = rectvit.save_checkpoint(
        rectvit.create_model("vit_tiny_patch16_224", img_size=(96, 64)), tmp_path / "t.safetensors"
    )
    out = tmp_path / "out.safetensors"
    argv = ["adapt", str(tiny), "--model", "vit_tiny_patch16_224", "--img-size", "100x64", "-o", str(out)]
    assert main(argv) == 0
    assert "the last 4 pixel row(s) and 0 column(s) are not seen" in capsys.readouterr().out
    assert rectvit.load_model(out).grid_size == (6, 4)


def test_registered_timm_size_that_patches_do_not_tile_builds_as_timm(one_thread):
    import timm

    kw = dict(depth=1, embed_dim=32, num_heads=2, num_classes=0)
    with torch.device("meta"):
        ours = rectvit.create_model("vit_so400m_patch14_siglip_384", **kw)
        theirs = timm.create_model("vit_so400m_patch14_siglip_384", **kw)
    assert ours.grid_size == tuple(theirs.patch_embed.grid_size) == (27, 27)


def test_dynamic_img_pad_pads_on_every_path(one_thread):
    x = torch.randn(1, 3, *NON_MULTIPLE)
    static = _vit(img_size=NON_MULTIPLE, dynamic_img_pad=True)
    assert static.grid_size == (7, 4) and static.forward_features(x).shape == (1, 1 + 28, 32)
    dynamic = _vit(img_size=(96, 64), dynamic_img_size=True, dynamic_img_pad=True)
    assert dynamic.forward_features(x).shape == (1, 1 + 28, 32)
    resized = _vit(img_size=(96, 64), dynamic_img_pad=True)
    resized.set_input_size(img_size=NON_MULTIPLE)
    assert resized.grid_size == (7, 4)
    y = static(x)
    static.set_input_size(img_size=(112, 64))  # the same 7x4 grid: the padding is zeros at the bottom
    torch.testing.assert_close(y, static(torch.nn.functional.pad(x, (0, 0, 0, 12))))


def test_overlapping_strides_count_whole_patches(one_thread):
    # AST's own size: 16x16 patches at stride 10 over 128x1024 leave 2 and 8 pixels, as in HF and timm.
    ast = rectvit.create_model("ast_base_patch16_s10_128x1024", **SMALL)
    assert ast.grid_size == (12, 101)
    ast.set_input_size(img_size=(64, 101))
    assert ast.grid_size == (5, 9)


def test_hybrid_follows_the_same_rule(one_thread):
    # stem-only backbone (reduction 4) and 8x8 patches: 100x64 -> a 25x16 feature map -> 3x2 whole patches.
    model = _hybrid(img_size=NON_MULTIPLE)
    assert model.grid_size == (3, 2)
    x = torch.randn(1, 3, *NON_MULTIPLE)
    with torch.no_grad():  # the truth: the projection of the feature map cropped to whole 8x8 patches
        features = model.patch_embed.backbone(x)
        assert features.shape[-2:] == (25, 16)
        expected = model.patch_embed.proj(features[..., :24, :16]).permute(0, 2, 3, 1)
        torch.testing.assert_close(model.patch_embed(x), expected, rtol=0, atol=1e-6)
    assert _hybrid(img_size=NON_MULTIPLE, dynamic_img_pad=True).grid_size == (4, 2)


# ---- a failed set_input_size changes nothing -----------------------------------------------------------


def _state(model):
    return (
        model.img_size,
        model.grid_size,
        model.patch_size,
        model.patch_embed.grid_size,
        model.patch_embed.proj.stride,
        {k: v.clone() for k, v in model.state_dict().items()},
        dict(model.model_config),
    )


def _assert_same_state(before, after):
    *sizes_b, sd_b, cfg_b = before
    *sizes_a, sd_a, cfg_a = after
    assert sizes_a == sizes_b and cfg_a == cfg_b
    assert sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_b)


@pytest.mark.parametrize("build", [_vit, _hybrid], ids=["vit", "hybrid"])
@pytest.mark.parametrize("pos_embed", ["learn", "sincos"])
def test_absurd_size_leaves_model_unchanged(one_thread, build, pos_embed):
    """1e7 x 1e7 pixels: refused before anything is allocated; img_size, grid, tables and outputs stay as they were."""
    model = build(pos_embed=pos_embed)
    x = torch.randn(1, 3, *model.img_size)
    with torch.no_grad():
        out = model(x)
    before = _state(model)
    with pytest.raises(InputSizeError, match="beyond what rectvit builds a model for"):
        model.set_input_size(img_size=(10**7 // 32 * 32, 10**7 // 32 * 32))
    _assert_same_state(before, _state(model))
    with torch.no_grad():
        assert torch.equal(model(x), out)


def test_long_strip_is_a_size_not_an_absurdity(one_thread):
    """The bound is on area (memory), not on one side: 16 x 200000 pixels (a long spectrogram strip, 12500
    patches) builds and runs; the same area squared up past 2^28 pixels is refused."""
    model = rectvit.create_model("vit_tiny_patch16_224", img_size=(16, 200_000), in_chans=1, num_classes=0, depth=1)
    assert model.grid_size == (1, 12500)
    with torch.no_grad():
        assert model(torch.randn(1, 1, 16, 200_000)).shape == (1, 192)
    with pytest.raises(InputSizeError, match="beyond what rectvit builds a model for"):
        model.set_input_size(img_size=(16_400, 16_400))


@pytest.mark.parametrize("build", [_vit, _hybrid], ids=["vit", "hybrid"])
def test_failure_after_the_new_kernel_is_computed_changes_nothing(one_thread, build, monkeypatch):
    """A failure in the table resize, after the new size and kernel were planned, leaves the model as it was."""
    from rectvit.models import vit as vit_module

    model = build()
    x = torch.randn(1, 3, *model.img_size)
    with torch.no_grad():
        out = model(x)
    before, proj = _state(model), model.patch_embed.proj

    def fail(*args, **kwargs):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(vit_module, "resample_grid", fail)
    new_patch = (4, 4) if build is _vit else (2, 2)
    with pytest.raises(RuntimeError, match="simulated"):
        model.set_input_size(img_size=(64, 128), patch_size=new_patch)
    assert model.patch_embed.proj is proj
    _assert_same_state(before, _state(model))
    with torch.no_grad():
        assert torch.equal(model(x), out)
