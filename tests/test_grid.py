"""Sizes, patch grids, factorisations; the grid score and its noise level (checkpoint/evidence.py)."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rectvit import InputSizeError, RectViTError
from rectvit.checkpoint.evidence import axis_smoothness, grid_score, rank_grids, smoothness
from rectvit.grid import factorizations, padded_size, patch_grid, to_size


@pytest.mark.parametrize(
    "given_,expected",
    [
        (224, (224, 224)),
        ((128, 1024), (128, 1024)),
        ([64, 32], (64, 32)),
        ("128x1024", (128, 1024)),
        ("64X16", (64, 16)),
        ("96", (96, 96)),
        (torch.Size([3, 5]), (3, 5)),
        (torch.tensor([7, 2]), (7, 2)),
    ],
)
def test_to_size_accepts(given_, expected):
    assert to_size(given_) == expected


@pytest.mark.parametrize(
    "bad,pattern",
    [
        (0, "positive, got 0"),
        (-4, "positive, got -4"),
        ((16, -1), "positive, got -1"),
        ((0, 8), "positive, got 0"),
        (2.5, "integers, got 2.5"),
        ((16.0, 8), "float 16.0"),
        ((1, 2, 3), "2 values .*got 3"),
        ((5,), "2 values .*got 1"),
        ("12x", "'HxW'.*'12x'"),
        ("axb", "'HxW'.*'axb'"),
        (None, "an int, an \\(H, W\\) pair.*None"),
        (True, "got True \\(bool\\)"),
    ],
)
def test_to_size_rejects_with_clear_message(bad, pattern):
    with pytest.raises(InputSizeError, match=pattern) as info:
        to_size(bad, "img_size")
    assert "img_size" in str(info.value)
    assert isinstance(info.value, RectViTError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "img,patch,stride,grid",
    [
        ((128, 1024), 16, 10, (12, 101)),
        (224, 16, None, (14, 14)),
        ((256, 64), 16, None, (16, 4)),
        ((1024, 128), (16, 16), (10, 10), (101, 12)),
        ((80, 144), (8, 16), None, (10, 9)),
        ((16, 16), 16, None, (1, 1)),
        ((230, 230), 16, None, (14, 14)),
    ],
)
def test_patch_grid(img, patch, stride, grid):
    assert patch_grid(img, patch, stride) == grid


def test_patch_grid_smaller_than_a_patch():
    with pytest.raises(InputSizeError, match=r"img_size 8x64 is smaller than one patch \(16x16\).*at least 16x64"):
        patch_grid((8, 64), 16)


@given(h=st.integers(1, 300), w=st.integers(1, 300), p=st.integers(1, 32), s=st.integers(1, 32))
def test_prop_padded_size_tiles_exactly(h, w, p, s):
    ph, pw = padded_size((h, w), p, s)
    assert ph >= max(h, p) and pw >= max(w, p)
    assert (ph - p) % s == 0 and (pw - p) % s == 0
    assert ph - s < max(h, p) or ph == p  # the smallest such size


@given(n=st.integers(1, 5000))
def test_prop_factorizations(n):
    fs = factorizations(n)
    assert all(h * w == n for h, w in fs)
    assert len(set(fs)) == sum(1 for d in range(1, n + 1) if n % d == 0) == len(fs)


def _trained_like(h, w, dim=32, seed=0):
    """Smooth in (row, col): low-frequency 2-D functions, as trained position tables are."""
    g = torch.Generator().manual_seed(seed)
    fy, fx = torch.rand(2, dim, generator=g) * 2 + 0.3
    phase = torch.rand(dim, generator=g) * 6.28
    y = torch.arange(h).float()[:, None, None] / h
    x = torch.arange(w).float()[None, :, None] / w
    return torch.sin(math.pi * (fy * y + fx * x) + phase).reshape(1, h * w, dim)


def test_smoothness_hand_computed():
    # rows vary only along x: vertical neighbours identical (cos 1); horizontal neighbours orthogonal.
    t = torch.zeros(2, 2, 2)
    t[:, 0, 0] = 1.0
    t[:, 1, 1] = 1.0  # after centring: [.5,-.5] and [-.5,.5] -> cos -1 horizontally
    vert, horiz = axis_smoothness(t.reshape(1, 4, 2), (2, 2))
    assert vert == pytest.approx(1.0) and horiz == pytest.approx(-1.0)
    assert smoothness(t.reshape(1, 4, 2), (2, 2)) == pytest.approx(0.0)
    assert math.isnan(axis_smoothness(t.reshape(1, 4, 2), (1, 4))[0])


@pytest.mark.parametrize("true_grid", [(16, 4), (4, 16), (28, 7), (7, 28), (12, 101), (8, 8), (14, 14), (6, 50)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_true_grid_ranks_first(true_grid, seed):
    flat = _trained_like(*true_grid, seed=seed)
    ranked = rank_grids(flat)
    assert ranked[0][0] == true_grid
    assert all(min(g) >= 2 for g, _ in ranked)


def test_wrong_equal_count_grid_is_less_smooth():
    flat = _trained_like(16, 4)
    assert smoothness(flat, (16, 4)) > smoothness(flat, (8, 8)) + 0.05
    assert grid_score(flat, (16, 4)) > grid_score(flat, (8, 8)) + 0.1
    assert math.isnan(grid_score(flat, (1, 64)))


def test_grid_score_hand_computed():
    # 2x2 grid, rows [a, b], [c, d]; after centring the wrap pair is (b, c).
    t = torch.tensor([[1.0, 0.0], [1.0, 0.2], [-1.0, -0.2], [-1.0, 0.0]]).reshape(1, 4, 2)
    c = t[0] - t[0].mean(0)
    cos = torch.nn.functional.cosine_similarity
    vert = (cos(c[0], c[2], dim=0) + cos(c[1], c[3], dim=0)) / 2
    horiz = (cos(c[0], c[1], dim=0) + cos(c[2], c[3], dim=0)) / 2
    expect = (vert + horiz) / 2 - cos(c[1], c[2], dim=0)
    assert grid_score(t, (2, 2)) == pytest.approx(expect.item(), abs=1e-6)


def test_smoothness_with_prefix_rows_and_bad_grid():
    flat = torch.cat([torch.randn(1, 2, 32) * 10, _trained_like(16, 4)], dim=1)
    assert smoothness(flat, (16, 4), num_prefix_tokens=2) == pytest.approx(smoothness(_trained_like(16, 4), (16, 4)))
    with pytest.raises(InputSizeError, match=r"grid 8x9 needs 72.*has 64.*\(16, 4\)"):
        smoothness(flat, (8, 9), num_prefix_tokens=2)


# ---- the grid score's parts, its noise level, the window ranking (checkpoint/evidence.py) ----


def test_grid_score_uses_the_weakest_column_boundary_hand_computed():
    g = torch.Generator().manual_seed(3)
    t = torch.randn(2, 3, 5, generator=g)  # 2x3 grid of 5-channel rows
    c = t.reshape(6, 5) - t.reshape(6, 5).mean(0)
    c = c.reshape(2, 3, 5)
    cos = torch.nn.functional.cosine_similarity
    vert = cos(c[0], c[1], dim=-1).mean()
    col0 = cos(c[:, 0], c[:, 1], dim=-1).mean()  # boundary between columns 0 and 1, over both rows
    col1 = cos(c[:, 1], c[:, 2], dim=-1).mean()
    wrap = cos(c[0, 2], c[1, 0], dim=0)
    expect = (vert + torch.minimum(col0, col1)) / 2 - wrap
    assert grid_score(t.reshape(1, 6, 5), (2, 3)) == pytest.approx(expect.item(), abs=1e-6)


def test_noise_fraction_of_random_smooth_and_half_noise_tables():
    from rectvit.checkpoint.evidence import noise_fraction

    g = torch.Generator().manual_seed(0)
    assert noise_fraction(torch.randn(1, 200, 64, generator=g)) > 0.9
    smooth = _trained_like(16, 16, dim=64)
    assert noise_fraction(smooth) < 0.05
    noisy = smooth + smooth.std() * torch.randn(smooth.shape, generator=g)  # noise energy = signal energy
    assert 0.3 < noise_fraction(noisy) < 0.7


def test_candidate_listing_by_hand():
    from rectvit.checkpoint.evidence import GridEvidence, candidate_listing

    listing = candidate_listing([((16, 4), 0.814), ((8, 8), -0.4249), ((1, 64), math.nan)], {(8, 8): "target grid"})
    assert listing == "16x4 0.81, 8x8 -0.42 (target grid), 1x64 -"
    ev = GridEvidence([((16, 4), 0.5)], {(16, 4): 0.01}, 0.1, [(1, 64), (64, 1)])
    assert ev.listing({(64, 1): "default"}) == "16x4 0.50, 1x64 -, 64x1 - (default)"


def test_strips_get_no_score():
    from rectvit.checkpoint.evidence import grid_evidence

    line = _trained_like(1, 64)  # one smooth line: 1x64 or 64x1, unknowable
    ev = grid_evidence(line)
    assert set(ev.strips) == {(1, 64), (64, 1)} and all(min(g) >= 2 for g, _ in ev.ranked)
    prime = grid_evidence(_trained_like(1, 61))
    assert prime.ranked == [] and prime.strips == [(1, 61), (61, 1)]
    nan = _trained_like(16, 4).clone()
    nan[0, 3, 0] = float("nan")
    ev = grid_evidence(nan)
    assert "NaN" in ev.note and all(math.isnan(s) for _, s in ev.ranked)


def test_rank_windows_scores_each_window_by_its_offset_grid():
    """Each window that fits a bias table's rows scores the grid score of its (2wh-1, 2ww-1) offset grid
    (computed here with ``grid_score``); best first, strips last with no score."""
    from rectvit.checkpoint.evidence import rank_windows

    dy = torch.arange(-4, 5).float()[:, None, None] / 5  # window 5x13: a 9x25 relative grid
    dx = torch.arange(-12, 13).float()[None, :, None] / 13
    smooth = (torch.exp(-(dy**2) - dx**2) + torch.sin(3 * dy + torch.tensor([1.0, 2.0, 3.0]) * dx)).reshape(225, 3)
    ranked = rank_windows(smooth)
    windows = [(1, 113), (2, 38), (3, 23), (5, 13), (8, 8), (13, 5), (23, 3), (38, 2), (113, 1)]
    assert sorted(w for w, _ in ranked) == windows
    scored = [(w, s) for w, s in ranked if min(w) > 1]
    expect = sorted(
        ((w, grid_score(smooth[None], (2 * w[0] - 1, 2 * w[1] - 1))) for w in windows if min(w) > 1),
        key=lambda ws: -ws[1],
    )
    assert [w for w, _ in scored] == [w for w, _ in expect]
    assert [s for _, s in scored] == pytest.approx([s for _, s in expect], abs=1e-6)
    assert ranked[0][0] == (5, 13)  # advisory, but a smooth table's own window ranks first
    assert [w for w, _ in ranked[-2:]] == [(1, 113), (113, 1)] and all(math.isnan(s) for _, s in ranked[-2:])
    nan = smooth.clone()
    nan[7, 1] = float("inf")
    assert all(math.isnan(s) for _, s in rank_windows(nan)) and sorted(w for w, _ in rank_windows(nan)) == windows
