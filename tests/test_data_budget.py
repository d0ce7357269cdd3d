"""size_for_budget against a brute-force oracle (every grid an aspect-preserving scale can reach), plus
its stated properties: fits the budget, whole patches, maximal, aspect to within a patch per side,
never past max_upscale; bad arguments as InputSizeError."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rectvit import InputSizeError
from rectvit.data import grid_tokens, image_tokens, size_for_budget


def _reachable_grids(height, width, ph, pw, max_tokens, max_upscale, min_side):
    """Every grid (h, w) with h * w <= max_tokens that some scale 0 <= s <= max_upscale gives.

    Side h is given by the scales [h p / H, (h + 1) p / H) (or [0, (min_side + 1) p / H) for the
    clamped side min_side); a grid is reachable when its two intervals and [0, max_upscale] meet.
    """

    def interval(k, p, n):
        lo = Fraction(0) if k == min_side else Fraction(k * p, n)
        return lo, Fraction((k + 1) * p, n)

    top = math.inf if max_upscale is None else Fraction(max_upscale)
    out = []
    for h in range(min_side, max_tokens + 1):
        for w in range(min_side, max_tokens // h + 1):
            (a0, a1), (b0, b1) = interval(h, ph, height), interval(w, pw, width)
            lo, hi = max(a0, b0, 0), min(a1, b1)
            if lo < hi and lo <= top:
                out.append((h, w))
    return out


sizes = st.tuples(st.integers(1, 1500), st.integers(1, 1500))
patches = st.tuples(st.integers(1, 24), st.integers(1, 24))
upscales = st.sampled_from([None, 0.25, 0.5, 1.0, 1.5, 3.0])


@settings(max_examples=150, deadline=None)
@given(sizes, patches, st.integers(1, 160), upscales, st.integers(1, 3))
def test_equals_the_largest_reachable_grid(size, patch, max_tokens, max_upscale, min_side):
    if min_side * min_side > max_tokens:
        with pytest.raises(InputSizeError, match="min_side"):
            size_for_budget(size, patch, max_tokens, max_upscale, min_side)
        return
    out = size_for_budget(size, patch, max_tokens, max_upscale, min_side)
    grids = _reachable_grids(*size, *patch, max_tokens, max_upscale, min_side)
    best = max(grids, key=lambda g: g[0] * g[1])
    # the reachable grids form a chain (both sides grow with the scale): the largest is unique
    assert sum(g[0] * g[1] == best[0] * best[1] for g in grids) == 1
    assert out == (best[0] * patch[0], best[1] * patch[1])


@settings(max_examples=200, deadline=None)
@given(sizes, patches, st.integers(1, 4000), upscales)
def test_properties(size, patch, max_tokens, max_upscale):
    (height, width), (ph, pw) = size, patch
    out = size_for_budget(size, patch, max_tokens, max_upscale)
    assert out[0] % ph == 0 and out[1] % pw == 0
    h, w = out[0] // ph, out[1] // pw
    assert h * w <= max_tokens and grid_tokens(out, patch) == h * w
    # never enlarged past max_upscale, except a side forced up to one patch
    if max_upscale is not None:
        assert h == 1 or out[0] <= max_upscale * height
        assert w == 1 or out[1] <= max_upscale * width
    # aspect: h / w within (h / (h + 1), (w + 1) / w) of (H / ph) / (W / pw), unless a side was clamped
    if out[0] <= height * (max_upscale or math.inf) and h > 1 and w > 1:
        q = Fraction(h, w) / (Fraction(height, ph) / Fraction(width, pw))
        assert Fraction(h, h + 1) < q < Fraction(w + 1, w)
    # maximal: one more patch on either side (any larger grid of this aspect has one) does not fit
    s_next = min(Fraction((h + 1) * ph, height), Fraction((w + 1) * pw, width))
    bigger = (max(1, math.floor(s_next * height / ph)), max(1, math.floor(s_next * width / pw)))
    assert bigger[0] * bigger[1] > max_tokens or (max_upscale is not None and s_next > Fraction(max_upscale))


def test_hand_computed_cases():
    # 1024x128 at patch 16 is a 64x8 grid (512 tokens): within a budget of 512, unchanged
    assert size_for_budget((1024, 128), 16, 512) == (1024, 128)
    # budget 128 = a quarter: scale 1/2 gives 32x4
    assert size_for_budget((1024, 128), 16, 128) == (512, 64)
    # a line 32x1000 at patch 8 is 4x125; budget 100: s = 0.5 gives 2x62 = 124 (too many), so the
    # largest scale below it, s = 62/125, gives 1x62
    assert size_for_budget((32, 1000), 8, 100) == (8, 496)
    # upscaling: 20x20 at patch 10 is 2x2; with max_upscale=2 and budget 16 -> 4x4 = 40x40
    assert size_for_budget((20, 20), 10, 16, max_upscale=2.0) == (40, 40)
    assert size_for_budget((20, 20), 10, 16, max_upscale=1.0) == (20, 20)
    assert size_for_budget((20, 20), 10, 16, max_upscale=None) == (40, 40)
    # smaller than a patch: min_side keeps one patch per side
    assert size_for_budget((5, 300), 16, 100) == (16, 16 * 18)
    # unbounded: the row stays 1 patch (5/16 * s < 2 up to s = 6.4) while the width reaches 100 patches
    assert size_for_budget((5, 300), 16, 100, max_upscale=None) == (16, 1600)


def test_image_tokens_counts_prefix_and_resize():
    assert image_tokens((32, 100), 8) == 4 * 12
    assert image_tokens((32, 100), 8, num_prefix_tokens=1) == 1 + 4 * 12

    class Half:
        def output_size(self, size):
            return (size[0] // 2, size[1] // 2)

    assert image_tokens((32, 100), 8, resize=Half()) == 2 * 6
    with pytest.raises(InputSizeError, match="smaller than one patch"):
        image_tokens((4, 100), 8)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(size=(0, 10)), "positive"),
        (dict(size="axb"), "HxW"),
        (dict(patch_size=0), "positive"),
        (dict(max_tokens=0), "max_tokens"),
        (dict(max_tokens=2.5), "max_tokens"),
        (dict(max_tokens=True), "max_tokens"),
        (dict(max_upscale=0), "max_upscale"),
        (dict(max_upscale=-1.0), "max_upscale"),
        (dict(max_upscale="2"), "max_upscale"),
        (dict(min_side=0), "min_side"),
        (dict(min_side=4, max_tokens=15), "min_side"),
    ],
)
def test_bad_arguments(kwargs, fragment):
    args = dict(size=(100, 200), patch_size=16, max_tokens=64) | kwargs
    with pytest.raises(InputSizeError, match=fragment):
        size_for_budget(args.pop("size"), args.pop("patch_size"), **args)
