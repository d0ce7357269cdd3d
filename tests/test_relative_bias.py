"""Relative-position-bias tables: BEiT's geometric interpolation as timm's ``resize_rel_pos_bias_table``
(the oracle), rectangular windows on both sides, a hand-computed case, and bicubic as the option."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import rectvit
from rectvit.errors import InputSizeError
from rectvit.resample import resample_relative_bias_table

pytest.importorskip("timm")

TOL = 1e-5

pytestmark = pytest.mark.usefixtures("one_thread")


def maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def _timm_resize(table, old, new, extra=0):
    from timm.layers.pos_embed_rel import resize_rel_pos_bias_table

    new_rows = (2 * new[0] - 1) * (2 * new[1] - 1) + extra
    return resize_rel_pos_bias_table(table, new, (new_rows, table.shape[1]), old_window_size=old)


@pytest.mark.parametrize("old,new", [(7, 14), (7, 12), (12, 7), (8, 8), (1, 3), (6, 7)])
def test_geometric_bias_resample_matches_timm_square(old, new):
    torch.manual_seed(old * 100 + new)
    table = torch.randn((2 * old - 1) ** 2, 3)
    from timm.layers.pos_embed_rel import resize_rel_pos_bias_table

    # the square source as timm's checkpoint filter infers it (no old window given)
    expected = resize_rel_pos_bias_table(table, (new, new), ((2 * new - 1) ** 2, 3))
    assert maxdiff(resample_relative_bias_table(table, old, new), expected) <= TOL
    # BEiT's class-token rows (E = 3) stay as they are
    with_extra = torch.cat([table, torch.randn(3, 3)])
    out = resample_relative_bias_table(with_extra, old, new, num_extra_tokens=3)
    expected = resize_rel_pos_bias_table(with_extra, (new, new), ((2 * new - 1) ** 2 + 3, 3))
    assert maxdiff(out, expected) <= TOL and torch.equal(out[-3:], with_extra[-3:])


@pytest.mark.parametrize("old,new", [((7, 7), (14, 7)), ((7, 14), (7, 7)), ((4, 12), (12, 4)), ((3, 5), (2, 9))])
def test_geometric_bias_resample_rectangles_match_timm_with_old_window(old, new):
    torch.manual_seed(1)
    table = torch.randn((2 * old[0] - 1) * (2 * old[1] - 1), 4, dtype=torch.float64)
    out = resample_relative_bias_table(table, old, new)
    assert out.dtype == torch.float64 and out.shape == ((2 * new[0] - 1) * (2 * new[1] - 1), 4)
    assert maxdiff(out, _timm_resize(table.float(), old, new).double()) <= TOL


def test_geometric_bias_resample_rectangle_by_hand():
    # window (3, 2) -> (4, 5): table grid 5x3 -> 7x9. Rows: half-width 2 -> 3 needs q = 2, clamped to
    # BEiT's 1.5, so the source offsets are -2.5, -1, 0, 1, 2.5: target -2 is 0.5 from -2.5 and 1 from -1,
    # and targets -3 and 3 take the end rows.
    # Columns: half-width 1 has offsets -1, 0, 1 whatever q is; targets beyond them take the end columns.
    table = torch.randn(5 * 3, 2)
    grid = table.reshape(5, 3, 2)
    rows = [grid[0], grid[0] * 2 / 3 + grid[1] / 3, grid[1], grid[2], grid[3], grid[3] / 3 + grid[4] * 2 / 3, grid[4]]
    expected = torch.stack([torch.stack([r[0]] * 4 + [r[1]] + [r[2]] * 4) for r in rows])  # (7, 9, 2)
    out = resample_relative_bias_table(table, (3, 2), (4, 5))
    assert maxdiff(out, expected.reshape(-1, 2)) <= TOL
    # and a 1x1 window (one offset) becomes a constant table
    one = torch.randn(1, 3)
    assert torch.equal(resample_relative_bias_table(one, 1, (2, 3)), one.expand(3 * 5, 3))


def test_bias_resample_rejects_bad_arguments():
    table = torch.randn(13 * 13, 3)
    with pytest.raises(rectvit.RectViTError, match=r"geometric.*bicubic.*'area'"):
        resample_relative_bias_table(table, 7, 8, "area")
    with pytest.raises(InputSizeError, match=r"13\*13 \+ 2 extra=171"):
        resample_relative_bias_table(table, 7, 8, num_extra_tokens=2)
    with pytest.raises(InputSizeError, match=r"window 8x8.*\(15\*15=225, heads\), got \(169, 3\)"):
        resample_relative_bias_table(table, 8, 7)


def test_bicubic_option_is_the_swin_papers_resize():
    table = torch.randn(13 * 13, 3)
    assert resample_relative_bias_table(table, 7, 7, "bicubic") is table
    assert resample_relative_bias_table(table, 7, 7) is table
    out = resample_relative_bias_table(table.double(), 7, (4, 9), "bicubic")
    expected = F.interpolate(table.T.reshape(1, 3, 13, 13), size=(7, 17), mode="bicubic", align_corners=False)
    assert out.dtype == torch.float64 and maxdiff(out.float(), expected.reshape(3, -1).T) <= 1e-6
