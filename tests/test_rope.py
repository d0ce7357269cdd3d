"""2-D RoPE layer: timm's three schemes as oracles, hand-computed coordinates, and properties.

Properties (hypothesis): a rotated query-key product depends only on the tokens' coordinate
difference; an (h, w) grid and its transpose (w, h) give the same angles with the axes swapped
(timm once swapped H and W in RoPE indexing, visible only on non-square grids).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rectvit.errors import RectViTError
from rectvit.layers import RotaryEmbedding2d, apply_rope
from rectvit.layers.rope import rope_coords


@pytest.fixture(scope="module")
def timm_rope():
    """timm's RoPE module, the oracle (imported per test: the property tests here need none)."""
    return pytest.importorskip("timm.layers.pos_embed_sincos")


pytestmark = pytest.mark.usefixtures("one_thread")

# (constructor keywords, square reference grid?) for every coordinate scheme
SCHEMES = [
    dict(),
    dict(normalize="separate", ref_grid=(6, 4)),
    dict(normalize="max", ref_grid=(6, 4)),
    dict(normalize="min", ref_grid=(6, 4)),
    dict(coords="centered", normalize="separate", freq_scale=2 * math.pi, temperature=100.0),
    dict(coords="centered", normalize="max", freq_scale=2 * math.pi, temperature=100.0),
    dict(coords="centered", normalize="min", freq_scale=2 * math.pi, temperature=100.0),
]


def _cat(rope: RotaryEmbedding2d, grid) -> torch.Tensor:
    sin, cos = rope(grid)
    return torch.cat([sin, cos], dim=-1)


# --------------------------------------------------------------------------------------------------
# timm as the oracle, at rectangular grids


@pytest.mark.parametrize("grid", [(3, 7), (7, 3), (1, 9), (5, 5)])
@pytest.mark.parametrize("indexing", ["ij", "xy"])
def test_axial_matches_timm_cat(grid, indexing, timm_rope):
    for ref in [None, (16, 16), (4, 12)]:
        theirs = timm_rope.RotaryEmbeddingCat(
            dim=32, temperature=100.0, in_pixels=False, ref_feat_shape=ref, grid_indexing=indexing
        )
        ours = RotaryEmbedding2d(
            32, temperature=100.0, normalize="separate" if ref else None, ref_grid=ref, grid_indexing=indexing
        )
        assert torch.equal(_cat(ours, grid), theirs.get_embed(shape=list(grid)))


@pytest.mark.parametrize("grid", [(3, 7), (7, 3), (2, 16)])
@pytest.mark.parametrize("normalize", ["separate", "max", "min"])
def test_dinov3_matches_timm(grid, normalize, timm_rope):
    theirs = timm_rope.RotaryEmbeddingDinoV3(dim=48, temperature=100.0, normalize_coords=normalize)
    ours = RotaryEmbedding2d(
        48, temperature=100.0, freq_scale=2 * math.pi, coords="centered", normalize=normalize, rotate_half=True
    )
    assert torch.equal(_cat(ours, grid), theirs.get_embed(shape=list(grid)))


@pytest.mark.parametrize("grid", [(3, 7), (7, 3)])
def test_mixed_matches_timm(grid, timm_rope):
    theirs = timm_rope.RotaryEmbeddingMixed(dim=64, depth=3, num_heads=2, temperature=10.0, grid_indexing="xy")
    ours = RotaryEmbedding2d(32, "mixed", num_heads=2, depth=3, temperature=10.0, grid_indexing="xy")
    assert ours.freqs.shape == theirs.freqs.shape == (2, 3, 2, 16)
    ours.load_state_dict(theirs.state_dict())  # timm's key: freqs
    with torch.no_grad():
        assert torch.equal(_cat(ours, grid), theirs.get_embed(shape=list(grid)))


def test_apply_matches_timm_both_layouts(timm_rope):
    x = torch.randn(2, 3, 15, 32)
    for half in (False, True):
        rope = RotaryEmbedding2d(32, rotate_half=half)
        sin, cos = rope((3, 5))
        expected = timm_rope.apply_rot_embed_cat(x, torch.cat([sin, cos], -1), half=half)
        assert torch.equal(apply_rope(x, sin, cos, half), expected)


# --------------------------------------------------------------------------------------------------
# Hand-computed coordinates


def test_coordinates_by_hand():
    ij = rope_coords((2, 3)).tolist()
    assert ij == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]  # token k = (k // w, k % w)
    assert rope_coords((2, 3), grid_indexing="xy").tolist() == [[c, r] for r, c in ij]
    sep = rope_coords((2, 4), "centered", "separate")
    assert torch.allclose(sep[::4, 0], torch.tensor([-0.5, 0.5]))
    assert torch.allclose(sep[:4, 1], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    mx = rope_coords((2, 4), "centered", "max")  # both axes by 4: equal spacing 0.5
    assert torch.allclose(mx[::4, 0], torch.tensor([-0.75, -0.25]))
    assert torch.allclose(mx[:4, 1], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    mn = rope_coords((2, 4), "centered", "min")  # both axes by 2: spacing 1
    assert torch.allclose(mn[::4, 0], torch.tensor([-0.5, 0.5]))
    assert torch.allclose(mn[:4, 1], torch.tensor([-0.5, 0.5, 1.5, 2.5]))
    # index coordinates rescaled to a reference grid (EVA-02's ref_feat_shape): 4 rows -> 8, 2 cols -> 6
    ref = rope_coords((4, 2), "index", "separate", ref_grid=(8, 6))
    assert torch.allclose(ref[::2, 0], torch.tensor([0.0, 2.0, 4.0, 6.0]))
    assert torch.allclose(ref[:2, 1], torch.tensor([0.0, 3.0]))
    # "max" keeps equal spacing on both axes: 4x2 grid vs a 8x6 reference, factor 8/4 on both
    mref = rope_coords((4, 2), "index", "max", ref_grid=(8, 6))
    assert torch.allclose(mref[::2, 0], torch.tensor([0.0, 2.0, 4.0, 6.0]))
    assert torch.allclose(mref[:2, 1], torch.tensor([0.0, 2.0]))


def test_separate_forgets_the_aspect_ratio_and_max_keeps_it():
    """'separate' maps 8x32 and 32x8 onto the same square of coordinates; 'max' keeps their shapes."""
    for normalize, encodes in [("separate", False), ("max", True), ("min", True)]:
        a = rope_coords((8, 32), "centered", normalize)
        span = (a.amax(0) - a.amin(0)).tolist()
        assert (abs(span[0] - span[1]) > 0.5) == encodes, (normalize, span)
        step = [a[32, 0] - a[0, 0], a[1, 1] - a[0, 1]]  # one row down, one column right
        assert (abs(step[0] - step[1]) < 1e-6) == encodes


def test_axial_angles_by_hand():
    rope = RotaryEmbedding2d(8, temperature=100.0)  # 2 frequencies per axis: 1, 1/10
    a = rope.angles((2, 3))
    assert a.shape == (6, 4)
    assert torch.allclose(a[5], torch.tensor([1.0, 0.1, 2.0, 0.2]))  # token (1, 2)
    sin, cos = rope((2, 3))
    assert torch.allclose(sin[5], torch.tensor([1.0, 1.0, 0.1, 0.1, 2.0, 2.0, 0.2, 0.2]).sin())


# --------------------------------------------------------------------------------------------------
# Properties


def _rope_for(scheme: int, mode: str, half: bool, indexing: str) -> RotaryEmbedding2d:
    kw = dict(SCHEMES[scheme])
    if mode == "mixed":
        kw.update(num_heads=2, depth=2)
        half = False
    return RotaryEmbedding2d(16, mode, rotate_half=half, grid_indexing=indexing, **kw)


@given(
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    scheme=st.integers(0, len(SCHEMES) - 1),
    mode=st.sampled_from(["axial", "mixed"]),
    half=st.booleans(),
    indexing=st.sampled_from(["ij", "xy"]),
    data=st.data(),
)
def test_products_depend_only_on_the_position_difference(h, w, scheme, mode, half, indexing, data):
    torch.manual_seed(h * 10 + w)
    rope = _rope_for(scheme, mode, half, indexing)
    sin, cos = rope((h, w), dtype=torch.float64)
    q, k = torch.randn(2, 16, dtype=torch.float64).unbind(0)

    def product(p1, p2):  # same q content at p1, same k content at p2
        i, j = p1[0] * w + p1[1], p2[0] * w + p2[1]
        qr = apply_rope(q.expand(sin.shape[:-2] + (16,)), sin[..., i, :], cos[..., i, :], rope.rotate_half)
        kr = apply_rope(k.expand(sin.shape[:-2] + (16,)), sin[..., j, :], cos[..., j, :], rope.rotate_half)
        return (qr * kr).sum(-1)

    pos = st.tuples(st.integers(0, h - 1), st.integers(0, w - 1))
    a, b = data.draw(pos), data.draw(pos)
    s0 = data.draw(st.integers(-min(a[0], b[0]), h - 1 - max(a[0], b[0])))
    s1 = data.draw(st.integers(-min(a[1], b[1]), w - 1 - max(a[1], b[1])))
    c, d = (a[0] + s0, a[1] + s1), (b[0] + s0, b[1] + s1)
    assert torch.allclose(product(a, b), product(c, d), atol=1e-5)


@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    scheme=st.integers(0, len(SCHEMES) - 1),
    indexing=st.sampled_from(["ij", "xy"]),
)
def test_transposed_grid_swaps_the_axes(h, w, scheme, indexing):
    """Token (i, j) of an (h, w) grid and token (j, i) of the (w, h) grid get the same angles with the
    two axes' halves exchanged (a reference grid transposes with the grid)."""
    kw = dict(SCHEMES[scheme])
    ours = RotaryEmbedding2d(16, grid_indexing=indexing, **kw)
    if kw.get("ref_grid"):
        kw["ref_grid"] = kw["ref_grid"][::-1]
    transposed = RotaryEmbedding2d(16, grid_indexing=indexing, **kw)
    a = ours.angles((h, w)).reshape(h, w, 2, 4)
    t = transposed.angles((w, h)).reshape(w, h, 2, 4).transpose(0, 1).flip(2)
    assert torch.allclose(a, t, atol=1e-6)
    if h != w:  # the grids differ, so the embedding must too (an H/W mix-up would not notice)
        assert not torch.allclose(ours.angles((h, w)), transposed.angles((w, h)))


# --------------------------------------------------------------------------------------------------
# Cache, gradients, modes, compile


def test_cache_per_grid_and_bounded():
    rope = RotaryEmbedding2d(16, max_cache=3)
    first = rope((3, 4))
    assert rope((3, 4))[0] is first[0] and len(rope._cache) == 1
    for g in [(1, 2), (2, 2), (5, 1), (3, 4)]:
        rope(g)
    assert len(rope._cache) == 3
    assert torch.equal(rope((3, 4))[0], first[0])


def test_inference_mode_entries_are_usable_with_autograd():
    rope = RotaryEmbedding2d(16, "mixed", num_heads=2, depth=1)
    rope.freqs.requires_grad_(False)
    with torch.inference_mode():
        sin, cos = rope((2, 3))
    x = torch.randn(1, 2, 6, 16, requires_grad=True)
    s2, c2 = rope((2, 3))
    assert s2 is sin and not sin.is_inference()
    apply_rope(x, s2[0], c2[0]).sum().backward()  # inference tensors would refuse to be saved
    assert x.grad is not None


def test_mixed_frequencies_learn_and_the_cache_follows_them():
    rope = RotaryEmbedding2d(16, "mixed", num_heads=2, depth=2)
    x = torch.randn(1, 2, 6, 16)
    sin, cos = rope((2, 3))
    apply_rope(x, sin[0], cos[0]).square().sum().backward()
    assert rope.freqs.grad is not None and rope.freqs.grad.abs().sum() > 0
    with torch.no_grad():
        before = rope((2, 3))[0].clone()
        torch.optim.SGD(rope.parameters(), lr=1.0).step()
        after = rope((2, 3))[0]
        rope.clear_cache()
        assert torch.equal(after, rope((2, 3))[0]) and not torch.equal(before, after)


def test_to_double_and_devices_recompute():
    rope = RotaryEmbedding2d(16, "mixed", num_heads=1, depth=1).double()
    assert rope((2, 2))[0].dtype == torch.float64
    assert rope((2, 2), dtype=torch.float32)[0].dtype == torch.float32


def test_compiles_without_graph_breaks():
    rope = RotaryEmbedding2d(16, normalize="max", ref_grid=(4, 4))

    def f(x):
        sin, cos = rope((x.shape[2], x.shape[3]))
        return apply_rope(x.flatten(2).transpose(1, 2), sin, cos)

    x = torch.randn(1, 16, 3, 5)
    compiled = torch.compile(f, fullgraph=True, backend="eager")
    assert torch.allclose(compiled(x), f(x))


def test_bad_options_are_clear_errors():
    with pytest.raises(RectViTError, match="divisible by 4"):
        RotaryEmbedding2d(18)
    with pytest.raises(RectViTError, match="normalize scheme"):
        RotaryEmbedding2d(16, coords="centered")
    with pytest.raises(RectViTError, match="ref_grid"):
        RotaryEmbedding2d(16, normalize="max")
    with pytest.raises(RectViTError, match="mode"):
        RotaryEmbedding2d(16, "spiral")
    with pytest.raises(RectViTError, match="interleaved"):
        RotaryEmbedding2d(16, "mixed", rotate_half=True)
    with pytest.raises(RectViTError, match="grid_indexing"):
        RotaryEmbedding2d(16, grid_indexing="hw")
