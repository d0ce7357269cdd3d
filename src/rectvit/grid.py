"""Sizes, grids and factorisations; grid evidence from a flat table's content.

Every size in rectvit is an ``(H, W)`` pair of positive ints. ``to_size`` is the one place that turns
user input (an int, a pair, an ``"HxW"`` string) into such a pair, with an ``InputSizeError`` that
names the argument, the value given and the accepted forms.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .errors import InputSizeError

__all__ = [
    "Size",
    "to_size",
    "patch_grid",
    "padded_size",
    "factorizations",
    "relative_windows",
    "axis_smoothness",
    "smoothness",
    "grid_score",
    "wrap_similarity",
    "rank_grids",
    "GridEvidence",
    "grid_evidence",
]

Size = tuple[int, int]


def _as_int(value, name: str, given) -> int:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, torch.SymInt)):  # SymInt: traced sizes
        if isinstance(value, float) and value.is_integer():
            raise InputSizeError(
                f"{name} must hold integers, got the float {value!r} in {given!r}; pass int({value!r})."
            )
        raise InputSizeError(f"{name} must hold integers, got {value!r} ({type(value).__name__}) in {given!r}.")
    value = value if isinstance(value, torch.SymInt) else int(value)
    if value <= 0:
        raise InputSizeError(f"{name} must be positive, got {value} in {given!r}; every side needs at least 1.")
    return value


def to_size(size, name: str = "size") -> Size:
    """Parse ``size`` into ``(H, W)``: an int (square), a pair ``(H, W)`` or a string ``"HxW"``."""
    given = size
    if isinstance(size, str):
        parts = size.lower().replace("×", "x").replace(",", "x").split("x")
        try:
            size = [int(p.strip()) for p in parts]
        except ValueError:
            raise InputSizeError(
                f"{name} must be written as 'HxW' (e.g. '128x1024') or a single int, got {given!r}."
            ) from None
        if len(size) == 1:
            size = size * 2
    elif isinstance(size, torch.Tensor):
        size = size.tolist()
    if isinstance(size, numbers.Number) and not isinstance(size, bool):
        h = _as_int(size, name, given)
        return (h, h)
    if not isinstance(size, Sequence) or isinstance(size, (str, bytes)):
        raise InputSizeError(
            f"{name} must be an int, an (H, W) pair or an 'HxW' string, got {given!r} ({type(given).__name__})."
        )
    if len(size) != 2:
        raise InputSizeError(f"{name} must have 2 values (H, W), got {len(size)}: {given!r}.")
    return (_as_int(size[0], name, given), _as_int(size[1], name, given))


def patch_grid(img_size, patch_size, stride=None) -> Size:
    """The ``(h, w)`` grid a patch embedding makes of ``img_size``; ``stride`` defaults to the patch size.

    Overlapping strides count whole patches only: ``(128, 1024)``, patch 16, stride 10 -> ``(12, 101)``.
    """
    img = to_size(img_size, "img_size")
    patch = to_size(patch_size, "patch_size")
    step = patch if stride is None else to_size(stride, "patch_stride")
    if img[0] < patch[0] or img[1] < patch[1]:
        raise InputSizeError(
            f"img_size {img[0]}x{img[1]} is smaller than one patch ({patch[0]}x{patch[1]}); "
            f"use an input of at least {max(img[0], patch[0])}x{max(img[1], patch[1])}."
        )
    return ((img[0] - patch[0]) // step[0] + 1, (img[1] - patch[1]) // step[1] + 1)


def padded_size(img_size, patch_size, stride=None) -> Size:
    """The smallest size >= ``img_size`` whose patches tile it exactly (what ``dynamic_img_pad`` pads to)."""
    img = to_size(img_size, "img_size")
    patch = to_size(patch_size, "patch_size")
    step = patch if stride is None else to_size(stride, "patch_stride")
    out = []
    for s, p, t in zip(img, patch, step):
        s = max(s, p)
        out.append(p + math.ceil((s - p) / t) * t)
    return (out[0], out[1])


def factorizations(n: int) -> list[Size]:
    """Every ``(h, w)`` with ``h * w == n``, ordered by ``h``."""
    n = _as_int(n, "token count", n)
    return [(h, n // h) for h in range(1, n + 1) if n % h == 0]


def relative_windows(rows: int) -> list[Size]:
    """Every window ``(wh, ww)`` whose relative-position table has ``(2wh-1)(2ww-1) == rows`` rows."""
    return [((a + 1) // 2, (rows // a + 1) // 2) for a in range(1, rows + 1, 2) if rows % a == 0 and (rows // a) % 2]


def _grid_rows(table: torch.Tensor, grid: Size, num_prefix_tokens: int) -> torch.Tensor:
    """A flat ``(1, P + h*w, C)`` or ``(h*w, C)`` table as ``(h, w, C)`` float32."""
    t = table.detach().float()
    if t.dim() == 3:
        if t.shape[0] != 1:
            raise InputSizeError(f"a flat table must have shape (1, P + h*w, C), got {tuple(table.shape)}.")
        t = t[0]
    if t.dim() != 2:
        raise InputSizeError(f"a flat table must have shape (1, P + h*w, C) or (N, C), got {tuple(table.shape)}.")
    t = t[num_prefix_tokens:]
    h, w = to_size(grid, "grid")
    if h * w != t.shape[0]:
        raise InputSizeError(
            f"grid {h}x{w} needs {h * w} position rows, the table has {t.shape[0]} "
            f"(after {num_prefix_tokens} prefix rows); candidate grids: {factorizations(t.shape[0])}."
        )
    return t.reshape(h, w, -1)


def axis_smoothness(table: torch.Tensor, grid, num_prefix_tokens: int = 0) -> tuple[float, float]:
    """Mean cosine similarity of vertically and of horizontally adjacent positions under ``grid``.

    The mean position vector is subtracted first, so a component shared by every position (common
    in trained tables) does not make every factorisation look smooth. An axis of length 1 has no
    neighbours and scores ``nan``.
    """
    g = _grid_rows(table, grid, num_prefix_tokens)
    g = g - g.mean(dim=(0, 1), keepdim=True)
    g = torch.nn.functional.normalize(g, dim=-1, eps=1e-12)
    vert = (g[1:] * g[:-1]).sum(-1).mean().item() if g.shape[0] > 1 else float("nan")
    horiz = (g[:, 1:] * g[:, :-1]).sum(-1).mean().item() if g.shape[1] > 1 else float("nan")
    return vert, horiz


def smoothness(table: torch.Tensor, grid, num_prefix_tokens: int = 0) -> float:
    """One score of how well ``grid`` explains a flat table: the mean of its axes' smoothness.

    Trained tables are smooth along both axes of their true grid; a wrong factorisation puts
    distant positions side by side along at least one axis and scores lower.
    """
    vals = [v for v in axis_smoothness(table, grid, num_prefix_tokens) if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def grid_score(table: torch.Tensor, grid, num_prefix_tokens: int = 0) -> float:
    """Evidence that ``grid`` is a flat table's true grid: ``smoothness`` minus the similarity across row wraps.

    Read row-major on its true grid, the last position of a row and the first of the next are far
    apart in the image (dissimilar), while neighbours along both axes are similar. A factorisation
    narrower than the truth also looks smooth, but its "row wraps" fall inside true rows and stay
    similar, which this score subtracts. Grids with a side of 1 have no wraps and score ``nan``.
    """
    wrap = wrap_similarity(table, grid, num_prefix_tokens)
    return float("nan") if math.isnan(wrap) else smoothness(table, grid, num_prefix_tokens) - wrap


def wrap_similarity(table: torch.Tensor, grid, num_prefix_tokens: int = 0) -> float:
    """Mean cosine similarity (after centring) of each row's last position and the next row's first."""
    g = _grid_rows(table, grid, num_prefix_tokens)
    if min(g.shape[:2]) < 2:
        return float("nan")
    g = g - g.mean(dim=(0, 1), keepdim=True)
    return torch.nn.functional.cosine_similarity(g[:-1, -1], g[1:, 0], dim=-1, eps=1e-12).mean().item()


def rank_grids(table: torch.Tensor, num_prefix_tokens: int = 0) -> list[tuple[Size, float]]:
    """Every factorisation with both sides >= 2 and its ``grid_score``, best first."""
    n = table.shape[-2] - num_prefix_tokens
    scored = [(g, grid_score(table, g, num_prefix_tokens)) for g in factorizations(n) if min(g) >= 2]
    return sorted(scored, key=lambda gs: -gs[1])


# Content evidence thresholds (grid_score units). A table is "structured" when its best grid scores
# at least STRUCTURED_MIN and 4 noise levels; a candidate is contradicted when a structured table's
# best grid beats it by more than CONTRADICTION_MARGIN; a content choice needs DECISIVE_MARGIN.
# A strip candidate (1 x N) is contradicted by a structured 2-D table; a 2-D candidate by a table
# whose rows form one smooth line with no row breaks.
STRUCTURED_MIN = 0.25
CONTRADICTION_MARGIN = 0.02
DECISIVE_MARGIN = 0.05
LINE_MIN = 0.5  # consecutive-row smoothness above which an unstructured table is read as a strip


@dataclass(frozen=True)
class GridEvidence:
    """What a flat table's content says about its grid (see ``grid_evidence``)."""

    ranked: list[tuple[Size, float]]  # every factorisation with both sides >= 2, best grid_score first
    noise: float  # the score's noise level for unstructured rows of this width and count
    line: float = float("nan")  # smoothness of consecutive rows: a 1 x N (or N x 1) table's only axis
    wraps: dict[Size, float] | None = None  # wrap_similarity of each ranked grid

    @property
    def structured(self) -> bool:
        """True when the best 2-D grid's score is well above what random rows would reach."""
        return bool(self.ranked) and self.ranked[0][1] >= max(STRUCTURED_MIN, 4 * self.noise)

    @property
    def looks_1d(self) -> bool:
        """True when consecutive rows are smooth but no 2-D grid fits: a strip, 1 x N or N x 1."""
        return not self.structured and self.line >= LINE_MIN

    def score(self, grid: Size) -> float:
        return dict(self.ranked).get(tuple(grid), float("nan"))

    def contradicts(self, grid: Size) -> bool:
        """True when the content clearly prefers another grid to ``grid``."""
        if min(grid) < 2:
            return self.structured  # a strip candidate, but a 2-D grid clearly fits
        if self.looks_1d and (self.wraps or {}).get(tuple(grid), 1.0) >= LINE_MIN:
            return True  # a 2-D candidate whose row ends run smoothly on: the table is one line
        return self.structured and self.score(grid) < self.ranked[0][1] - CONTRADICTION_MARGIN

    def decisive(self) -> Size | None:
        """The best grid when it wins clearly on a structured table, else None (a strip's orientation
        cannot be told from its content)."""
        if not self.structured:
            return None
        if len(self.ranked) == 1 or self.ranked[0][1] - self.ranked[1][1] >= DECISIVE_MARGIN:
            return self.ranked[0][0]
        return None


def grid_evidence(table: torch.Tensor, num_prefix_tokens: int = 0) -> GridEvidence:
    """Rank a flat table's factorisations by ``grid_score`` and estimate the score's noise level.

    The noise level is that of the row-wrap term for independent random rows:
    ``1 / sqrt(C * (h - 1))`` for the best grid's ``h`` rows and ``C`` channels. ``line`` is the
    smoothness of the rows read as one line (1 x N).
    """
    n = table.shape[-2] - num_prefix_tokens
    line = smoothness(table, (1, n), num_prefix_tokens) if n > 1 else float("nan")
    ranked = rank_grids(table, num_prefix_tokens)
    if not ranked:
        return GridEvidence([], float("nan"), line)
    h = ranked[0][0][0]
    wraps = {g: wrap_similarity(table, g, num_prefix_tokens) for g, _ in ranked}
    return GridEvidence(ranked, 1.0 / math.sqrt(table.shape[-1] * (h - 1)), line, wraps)
