"""What a flat table's own content says about its grid: the grid score that ranks candidate grids and
bias-table windows, advisory only (docs/checkpoints.md).

A flat ``(1, P + h*w, C)`` table has lost ``(h, w)``. Read row-major on its true grid, a trained table
is often smooth along both axes and breaks at each row end (the last position of a row and the first of
the next are far apart in the image). The **grid score** of a factorisation ``(h, w)`` measures
exactly that, on rows centred by their mean vector:

    grid score = (vertical smoothness + weakest column boundary) / 2 - row-wrap similarity

(mean cosine similarities; see ``grid_score``). The score is advisory only: it ranks the candidate
grids in ``AmbiguousGridError`` and ``rectvit inspect`` and never decides (docs/design.md, invariant
2). Trained tables defeat it: a table periodic along its rows reads, row-major, the same as a banded
table on another grid; on the trained tables of tests/grid_tables/ the margin rule rectvit used to
decide with read held-out tables on wrong grids, and margins wide enough to read no tuning table
wrong resolve almost nothing (docs/checkpoints.md gives the numbers).

A relative-position-bias table's window is ranked the same way and never decided either: a window
``(wh, ww)`` scores the grid score of its ``(2wh-1, 2ww-1)`` relative-offset grid (``rank_windows``).
Strips get no score: 1xN and Nx1 hold the same rows in the same order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import InputSizeError
from ..grid import Size, factorizations, relative_windows, to_size

__all__ = [
    "axis_smoothness",
    "smoothness",
    "grid_score",
    "wrap_similarity",
    "rank_grids",
    "noise_fraction",
    "GridEvidence",
    "grid_evidence",
    "rank_windows",
    "candidate_listing",
]


def _rows(table: torch.Tensor, num_prefix_tokens: int) -> torch.Tensor:
    """A flat ``(1, P + N, C)`` or ``(P + N, C)`` table's ``N`` grid rows as float32 ``(N, C)``."""
    t = table.detach().float()
    if t.dim() == 3:
        if t.shape[0] != 1:
            raise InputSizeError(f"a flat table must have shape (1, P + h*w, C), got {tuple(table.shape)}.")
        t = t[0]
    if t.dim() != 2:
        raise InputSizeError(f"a flat table must have shape (1, P + h*w, C) or (N, C), got {tuple(table.shape)}.")
    return t[num_prefix_tokens:]


def _unit(rows: torch.Tensor) -> torch.Tensor:
    """Rows centred by their mean vector (a component every position shares says nothing) and normalised."""
    return torch.nn.functional.normalize(rows - rows.mean(0, keepdim=True), dim=-1, eps=1e-12)


def _check(n: int, grid, num_prefix_tokens: int) -> Size:
    h, w = to_size(grid, "grid")
    if h * w != n:
        raise InputSizeError(
            f"grid {h}x{w} needs {h * w} position rows, the table has {n} "
            f"(after {num_prefix_tokens} prefix rows); candidate grids: {factorizations(n)}."
        )
    return h, w


def _lag_cos(u: torch.Tensor, lag: int) -> torch.Tensor:
    return (u[:-lag] * u[lag:]).sum(-1)


def _parts(u: torch.Tensor, grid: Size, c1: torch.Tensor | None = None) -> tuple[float, float, float, float]:
    """Under ``grid``, for unit rows ``u``: the mean vertical and horizontal neighbour cosine, the
    lowest per-column mean of horizontal neighbour cosines (the weakest column boundary) and the mean
    row-wrap cosine; ``nan`` where an axis has length 1."""
    h, w = grid
    nan = float("nan")
    if c1 is None:
        c1 = _lag_cos(u, 1) if len(u) > 1 else u.new_zeros(0)
    vert = _lag_cos(u, w).mean().item() if h > 1 else nan
    if w < 2:
        return vert, nan, nan, nan
    pairs = torch.cat([c1, c1.new_zeros(1)]).reshape(h, w)  # (row, column): pair (j, j + 1); last column wraps
    within = pairs[:, :-1]
    wrap = pairs[:-1, -1].mean().item() if h > 1 else nan
    return vert, within.mean().item(), within.mean(0).min().item(), wrap


def axis_smoothness(table: torch.Tensor, grid, num_prefix_tokens: int = 0) -> tuple[float, float]:
    """Mean cosine similarity of vertically and of horizontally adjacent positions under ``grid``.

    Rows are centred by their mean vector first, so a component shared by every position (common in
    trained tables) does not make every factorisation look smooth. An axis of length 1 has no
    neighbours and scores ``nan``.
    """
    rows = _rows(table, num_prefix_tokens)
    grid = _check(len(rows), grid, num_prefix_tokens)
    vert, horiz, _, _ = _parts(_unit(rows), grid)
    return vert, horiz


def smoothness(table: torch.Tensor, grid, num_prefix_tokens: int = 0) -> float:
    """How smooth a flat table is under ``grid``: the mean of its axes' ``axis_smoothness``.

    Trained tables are smooth along both axes of their true grid; a wrong factorisation puts
    distant positions side by side along at least one axis. (Rankings use ``grid_score``.)
    """
    vals = [v for v in axis_smoothness(table, grid, num_prefix_tokens) if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def wrap_similarity(table: torch.Tensor, grid, num_prefix_tokens: int = 0) -> float:
    """Mean cosine similarity (after centring) of each row's last position and the next row's first."""
    rows = _rows(table, num_prefix_tokens)
    grid = _check(len(rows), grid, num_prefix_tokens)
    if min(grid) < 2:
        return float("nan")
    return _parts(_unit(rows), grid)[3]


def grid_score(table: torch.Tensor, grid, num_prefix_tokens: int = 0) -> float:
    """The grid score of ``grid`` (``nan`` for a strip): how well it explains a flat table.

    ``(vertical smoothness + weakest column boundary) / 2 - row-wrap similarity``, all mean cosine
    similarities of centred rows. The weakest column boundary is the lowest, over the columns ``j``,
    of the mean similarity of positions ``j`` and ``j + 1`` across the rows. On its true grid a
    trained table is smooth along both axes (every column boundary included) and dissimilar across
    each row wrap. A factorisation wider than the truth has true row ends inside its rows (a weak
    column boundary); a narrower one has "row wraps" inside true rows (similar); a misaligned one
    puts distant positions side by side vertically.
    """
    rows = _rows(table, num_prefix_tokens)
    grid = _check(len(rows), grid, num_prefix_tokens)
    if min(grid) < 2:
        return float("nan")
    vert, _, weakest, wrap = _parts(_unit(rows), grid)
    return (vert + weakest) / 2 - wrap


def noise_fraction(table: torch.Tensor, num_prefix_tokens: int = 0) -> float:
    """The fraction of a flat table's (centred) energy that is noise, from consecutive rows' second differences.

    For a smooth table plus iid noise of variance ``s2`` per entry, ``|x[i-1] - 2x[i] + x[i+1]|^2`` is
    about ``6 C s2``; the median over rows ignores the few triples that straddle a row wrap. Smooth
    but fast-varying content counts as noise too. 1.0 for random rows.
    """
    rows = _rows(table, num_prefix_tokens)
    if len(rows) < 3:
        return 1.0
    x = rows - rows.mean(0, keepdim=True)
    energy = x.pow(2).sum(-1).mean().item()
    if energy <= 0:
        return 1.0
    d2 = (x[:-2] - 2 * x[1:-1] + x[2:]).pow(2).sum(-1).median().item()
    return min(1.0, d2 / 6 / energy)


@dataclass(frozen=True)
class GridEvidence:
    """What a flat table's content says about its grid (see ``grid_evidence``).

    ``ranked``: every scored factorisation (both sides >= 2, or the ``grids`` asked for) with its grid
    score, best first; ``strips``: the factorisations with a side of 1, which content cannot tell apart;
    ``sigma`` (each score's noise level) and ``noise`` serve scripts/eval_grid_rules.py, which measures
    content rules built on them (docs/checkpoints.md).
    """

    ranked: list[tuple[Size, float]]
    sigma: dict[Size, float]
    noise: float  # nu, the table's noise fraction
    strips: list[Size]
    note: str = ""  # why the content carries no evidence at all (NaN/Inf values), if so

    def score(self, grid: Size) -> float:
        return dict(self.ranked).get(tuple(grid), float("nan"))

    def listing(self, marks: dict[Size, str] | None = None) -> str:
        """Every candidate, best first, then the strips (see ``candidate_listing``)."""
        return candidate_listing(self.ranked + [(g, math.nan) for g in self.strips], marks)


def candidate_listing(scored: list[tuple[Size, float]], marks: dict[Size, str] | None = None) -> str:
    """``"16x4 0.81, 8x8 0.42 (target model grid), 1x64 -"``: each size with its score in the order given, ``-``
    for no score (a strip, whose orientation is unknowable, or any size of a NaN table); ``marks`` adds a note
    after the sizes it names."""
    marks = marks or {}
    return ", ".join(
        f"{g[0]}x{g[1]} {f'{s:.2f}' if s == s else '-'}" + (f" ({marks[g]})" if g in marks else "") for g, s in scored
    )


def rank_grids(table: torch.Tensor, num_prefix_tokens: int = 0) -> list[tuple[Size, float]]:
    """Every factorisation with both sides >= 2 and its ``grid_score``, best first."""
    return grid_evidence(table, num_prefix_tokens).ranked


def grid_evidence(table: torch.Tensor, num_prefix_tokens: int = 0, grids: list[Size] | None = None) -> GridEvidence:
    """Score ``grids`` (default: every factorisation of the row count with both sides >= 2) and their noise.

    ``sigma`` of an ``(h, w)`` grid is ``sqrt(nu (2 - nu) / C) * sqrt(1/(4 (h-1) w) + 1/(4 h) + 1/(h-1))``:
    the score's standard deviation if each neighbour pair's cosine carried independent noise (its
    ``(h-1) w`` vertical pairs, the ``h`` pairs of one column boundary, the ``h - 1`` row wraps).
    """
    rows = _rows(table, num_prefix_tokens)
    n, dim = rows.shape
    if grids is None:
        grids = [g for g in factorizations(n)] if n > 0 else []
    grids = [tuple(g) for g in grids]
    strips = [g for g in grids if min(g) < 2]
    scored = [g for g in grids if min(g) >= 2]
    if not scored:
        return GridEvidence([], {}, 1.0, strips)
    if not torch.isfinite(rows).all():
        note = "the table holds NaN or Inf values, which carry no evidence"
        return GridEvidence([(g, float("nan")) for g in scored], {g: math.inf for g in scored}, 1.0, strips, note)
    u = _unit(rows)
    c1 = _lag_cos(u, 1)
    nu = noise_fraction(rows)
    pair = math.sqrt(nu * (2 - nu) / max(dim, 1))
    ranked, sigma = [], {}
    for g in scored:
        vert, _, weakest, wrap = _parts(u, g, c1)
        h, w = g
        ranked.append((g, (vert + weakest) / 2 - wrap))
        sigma[g] = pair * math.sqrt(1 / (4 * (h - 1) * w) + 1 / (4 * h) + 1 / (h - 1))
    ranked.sort(key=lambda gs: -gs[1])
    return GridEvidence(ranked, sigma, nu, strips)


def rank_windows(table: torch.Tensor) -> list[tuple[Size, float]]:
    """Every window ``(wh, ww)`` whose relative-offset grid ``(2wh-1, 2ww-1)`` has the rows of a bias table
    ``(rows, heads)``, with that grid's ``grid_score`` (advisory), best first; strips and the windows of a
    table holding NaN/Inf score ``nan`` and come last."""
    fits = relative_windows(table.shape[0])
    if not fits:
        return []
    scores = dict(
        grid_evidence(table.reshape(1, table.shape[0], -1), grids=[(2 * h - 1, 2 * w - 1) for h, w in fits]).ranked
    )
    scored = [((h, w), scores.get((2 * h - 1, 2 * w - 1), math.nan)) for h, w in fits]
    return sorted(scored, key=lambda ws: -ws[1] if ws[1] == ws[1] else math.inf)
