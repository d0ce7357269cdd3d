"""The resampling core: parity with timm's functions, hypothesis properties, and bad inputs."""

import random

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

import rectvit
from rectvit import InputSizeError, RectViTError, resample_abs_pos_embed, resample_grid, resample_patch_embed, sincos_2d


@pytest.fixture(scope="module")
def timm_layers():
    """timm's resampling functions, the oracle (imported per test: the property and error tests need no timm)."""
    return pytest.importorskip("timm.layers", reason="timm is the oracle; `make test` installs it")


def _cases(n: int, seed: int, max_side: int = 24):
    rng = random.Random(seed)
    for _ in range(n):
        old = (rng.randint(1, max_side), rng.randint(1, max_side))
        new = (rng.randint(1, max_side), rng.randint(1, max_side))
        yield old, new, rng.randint(0, 5), rng.choice(["bicubic", "bilinear"]), rng.random() < 0.7


# ---- parity with timm (the oracle), >= 50 seeded rectangular cases per function ----


@pytest.mark.parametrize("case", list(_cases(60, seed=1)), ids=str)
def test_abs_pos_embed_matches_timm(case, timm_layers):
    old, new, prefix, mode, aa = case
    flat = torch.randn(1, prefix + old[0] * old[1], 24)
    ours = resample_abs_pos_embed(flat, new, old_size=old, num_prefix_tokens=prefix, interpolation=mode, antialias=aa)
    ref = timm_layers.resample_abs_pos_embed(
        flat, list(new), old_size=list(old), num_prefix_tokens=prefix, interpolation=mode, antialias=aa
    )
    assert ours.shape == (1, prefix + new[0] * new[1], 24)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_equal_count_rectangle_to_square_is_not_a_noop(timm_layers):
    # 16x4 and 8x8 hold 64 positions each: a square-guessing shortcut would return the table as-is.
    flat = torch.randn(1, 1 + 64, 16)
    ours = resample_abs_pos_embed(flat, (8, 8), old_size=(16, 4))
    ref = timm_layers.resample_abs_pos_embed(flat, [8, 8], old_size=[16, 4], num_prefix_tokens=1)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    assert (ours[:, 1:] - flat[:, 1:]).abs().max() > 0.1


@pytest.mark.parametrize("case", list(_cases(60, seed=2)), ids=str)
def test_resample_grid_matches_timm_nhwc(case, timm_layers):
    old, new, _, mode, aa = case
    table = torch.randn(1, old[0], old[1], 12)
    ours = resample_grid(table, new, interpolation=mode, antialias=aa)
    ref = timm_layers.resample_abs_pos_embed_nhwc(table, list(new), interpolation=mode, antialias=aa)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", list(_cases(60, seed=3, max_side=16)), ids=str)
def test_patch_embed_matches_timm(case, timm_layers):
    old, new, _, mode, aa = case
    weight = torch.randn(6, 3, *old)
    ours = resample_patch_embed(weight, new, interpolation=mode, antialias=aa)
    if aa and new[1] == 1 and old[0] != new[0]:
        # timm meets torch's antialiasing bug for width-1 outputs (see test_inputs.py); compare with
        # timm's result for the transposed kernel, which the bug does not touch.
        ref = timm_layers.resample_patch_embed(weight.mT, [new[1], new[0]], interpolation=mode, antialias=aa).mT
    else:
        ref = timm_layers.resample_patch_embed(weight, list(new), interpolation=mode, antialias=aa)
    assert ours.shape == (6, 3, *new)
    torch.testing.assert_close(ours, ref, atol=1e-4 * max(1.0, ref.abs().max().item()), rtol=0)


@pytest.mark.parametrize("old,new", [((16, 16), (8, 32)), ((8, 32), (16, 16)), ((16, 8), (10, 20)), ((4, 12), (12, 4))])
def test_patch_embed_rectangular_both_ways(old, new, timm_layers):
    weight = torch.randn(4, 2, *old)
    ref = timm_layers.resample_patch_embed(weight, list(new))
    torch.testing.assert_close(resample_patch_embed(weight, new), ref, atol=1e-4, rtol=0)


def test_patch_embed_preserves_tokens_when_upsampling():
    # FlexiViT's defining property: <x, w> == <resize(x), w'> for a kernel grown with the input.
    weight = torch.randn(5, 3, 8, 6, dtype=torch.float64).float()
    x = torch.randn(7, 3, 8, 6)
    new = resample_patch_embed(weight, (16, 12))
    x_up = F.interpolate(x, size=(16, 12), mode="bicubic", antialias=True, align_corners=False)
    tok = torch.einsum("bihw,oihw->bo", x, weight)
    tok_up = torch.einsum("bihw,oihw->bo", x_up, new)
    torch.testing.assert_close(tok_up, tok, atol=1e-3, rtol=1e-3)


# ---- the contract's hand-checkable behaviours ----


@pytest.mark.parametrize("old,new", [((14, 14), (128, 2)), ((2, 256), (16, 16)), ((1, 40), (1, 7)), ((1, 9), (3, 30))])
@pytest.mark.parametrize("mode", rectvit.resample.INTERPOLATIONS)
def test_extreme_ratios(old, new, mode):
    table = torch.randn(1, *old, 8)
    out = resample_grid(table, new, interpolation=mode)
    assert out.shape == (1, *new, 8) and torch.isfinite(out).all()


def test_nearest_and_area_hand_computed():
    table = torch.arange(8.0).reshape(1, 2, 4, 1)  # rows [0 1 2 3], [4 5 6 7]
    area = resample_grid(table, (1, 2), interpolation="area")
    assert area.flatten().tolist() == [(0 + 1 + 4 + 5) / 4, (2 + 3 + 6 + 7) / 4]
    nearest = resample_grid(table, (4, 8), interpolation="nearest")
    assert nearest[0, :, :, 0].tolist() == [[0, 0, 1, 1, 2, 2, 3, 3]] * 2 + [[4, 4, 5, 5, 6, 6, 7, 7]] * 2


def test_bilinear_upsample_hand_computed():
    # A linear ramp stays a linear ramp at the new sample centres (half-pixel convention).
    table = torch.tensor([0.0, 1.0]).reshape(1, 1, 2, 1)
    out = resample_grid(table, (1, 4), interpolation="bilinear", antialias=False)
    assert out.flatten().tolist() == [0.0, 0.25, 0.75, 1.0]


def test_same_size_returns_the_input_object():
    table = torch.randn(1, 3, 5, 4)
    assert resample_grid(table, (3, 5)) is table
    flat = torch.randn(1, 2 + 15, 4)
    assert resample_abs_pos_embed(flat, (3, 5), old_size=(3, 5), num_prefix_tokens=2) is flat
    weight = torch.randn(2, 1, 4, 6)
    assert resample_patch_embed(weight, (4, 6)) is weight


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtype_kept_and_computed_in_float32(dtype):
    table = torch.randn(1, 6, 4, 8)
    out = resample_grid(table.to(dtype), (9, 5))
    assert out.dtype == dtype
    ref = resample_grid(table.to(dtype).float(), (9, 5)).to(dtype)
    assert torch.equal(out, ref)
    assert resample_patch_embed(torch.randn(2, 1, 4, 4, dtype=dtype), (6, 6)).dtype == dtype
    assert resample_abs_pos_embed(torch.randn(1, 25, 8, dtype=dtype), (3, 3), old_size=(4, 6)).dtype == dtype


def test_sincos_2d_hand_computed():
    h, w, dim = 3, 5, 8
    t = sincos_2d((h, w), dim, temperature=100.0)
    assert t.shape == (1, h, w, dim)
    omega = [1.0, 1.0 / 100.0**0.5]
    for y in range(h):
        for x in range(w):
            expect = [torch.sin(torch.tensor(y * o)) for o in omega] + [torch.cos(torch.tensor(y * o)) for o in omega]
            expect += [torch.sin(torch.tensor(x * o)) for o in omega] + [torch.cos(torch.tensor(x * o)) for o in omega]
            torch.testing.assert_close(t[0, y, x], torch.stack(expect))


def test_sincos_2d_is_rectangular_not_square():
    assert not torch.equal(sincos_2d((16, 4), 32).reshape(64, 32), sincos_2d((8, 8), 32).reshape(64, 32))
    # transposing the grid swaps the y and x halves
    a, b = sincos_2d((6, 2), 16), sincos_2d((2, 6), 16)
    torch.testing.assert_close(a.transpose(1, 2), torch.cat([b[..., 8:], b[..., :8]], dim=-1))


# ---- hypothesis properties ----

sides = st.integers(min_value=1, max_value=20)
modes = st.sampled_from(["nearest", "bilinear", "bicubic", "area"])


@given(h=sides, w=sides, c=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_prop_identity(h, w, c, seed):
    table = torch.randn(1, h, w, c, generator=torch.Generator().manual_seed(seed))
    assert resample_grid(table, (h, w)) is table


@given(h=sides, w=sides, nh=sides, nw=sides, p=st.integers(0, 6), seed=st.integers(0, 2**16))
def test_prop_prefix_rows_untouched_and_shape(h, w, nh, nw, p, seed):
    flat = torch.randn(1, p + h * w, 5, generator=torch.Generator().manual_seed(seed))
    out = resample_abs_pos_embed(flat, (nh, nw), old_size=(h, w), num_prefix_tokens=p)
    assert out.shape == (1, p + nh * nw, 5)
    assert torch.equal(out[:, :p], flat[:, :p])


@given(h=sides, w=sides, nh=sides, nw=sides, mode=modes, seed=st.integers(0, 2**16))
def test_prop_transpose_commutes(h, w, nh, nw, mode, seed):
    table = torch.randn(1, h, w, 3, generator=torch.Generator().manual_seed(seed))
    a = resample_grid(table.transpose(1, 2), (nw, nh), interpolation=mode)
    b = resample_grid(table, (nh, nw), interpolation=mode).transpose(1, 2)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@given(h=sides, w=sides, nh=sides, nw=sides, mode=modes, value=st.floats(-10, 10, allow_nan=False))
def test_prop_constant_stays_constant(h, w, nh, nw, mode, value):
    out = resample_grid(torch.full((1, h, w, 2), value), (nh, nw), interpolation=mode)
    assert out.shape == (1, nh, nw, 2)
    torch.testing.assert_close(out, torch.full_like(out, value), atol=1e-4, rtol=1e-5)


@given(h=sides, w=sides, nh=sides, nw=sides, dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32]))
def test_prop_dtype_and_shape(h, w, nh, nw, dtype):
    out = resample_grid(torch.randn(1, h, w, 3).to(dtype), (nh, nw))
    assert out.dtype == dtype and out.shape == (1, nh, nw, 3)


# ---- bad inputs: the documented error type, naming expected and given ----


def test_old_size_is_required():
    with pytest.raises(TypeError):
        resample_abs_pos_embed(torch.randn(1, 65, 8), (8, 8))  # no square guess


def test_old_size_must_match_the_table():
    with pytest.raises(InputSizeError, match=r"old_size 8x7 needs 56.*has 64.*\(16, 4\)"):
        resample_abs_pos_embed(torch.randn(1, 65, 8), (8, 8), old_size=(8, 7))


@pytest.mark.parametrize("bad", [0, -3, (4, 0), (2, 3, 4), (2.5, 4), "8by8", (True, 4), None])
def test_bad_sizes(bad):
    with pytest.raises(InputSizeError) as info:
        resample_grid(torch.randn(1, 4, 4, 2), bad)
    msg = str(info.value)
    assert "new_size" in msg and (repr(bad) in msg or str(bad) in msg), msg


def test_bad_table_shapes_and_modes():
    with pytest.raises(InputSizeError, match=r"\(1, h, w, C\).*\(1, 16, 8\).*resample_abs_pos_embed"):
        resample_grid(torch.randn(1, 16, 8), (4, 4))
    with pytest.raises(InputSizeError, match=r"\(1, P \+ h\*w, C\).*\(16, 8\)"):
        resample_abs_pos_embed(torch.randn(16, 8), (4, 4), old_size=(4, 4))
    with pytest.raises(InputSizeError, match=r"\(O, I, ph, pw\).*\(3, 16, 16\)"):
        resample_patch_embed(torch.randn(3, 16, 16), (8, 8))
    with pytest.raises(RectViTError, match=r"one of .*bicubic.*'cubic'"):
        resample_grid(torch.randn(1, 4, 4, 2), (8, 8), interpolation="cubic")
    with pytest.raises(InputSizeError, match=r"divisible by 4, got 30"):
        sincos_2d((4, 4), 30)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_width_one_columns_resample_like_rows(mode):
    # torch's antialiased kernels mishandle a (h, 1) -> (h', 1) resize; ours must equal the row case.
    col = torch.randn(1, 7, 1, 4)
    row = col.transpose(1, 2)
    out = resample_grid(col, (20, 1), interpolation=mode)
    torch.testing.assert_close(out, resample_grid(row, (1, 20), interpolation=mode).transpose(1, 2))
    ramp = torch.arange(7.0).reshape(1, 7, 1, 1)
    assert resample_grid(ramp, (13, 1), interpolation=mode).flatten().diff().gt(0).all()  # increasing, not constant
