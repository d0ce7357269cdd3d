"""Sizes for a token budget: the largest aspect-preserving patch grid an image may have.

An image ``(H, W)`` scaled by ``s`` has the patch grid ``(floor(s H / p_h), floor(s W / p_w))``
(each side at least ``min_side``). ``size_for_budget`` returns the pixel size of the largest such
grid that holds at most ``max_tokens`` patches with ``s <= max_upscale``: the grid only grows with
``s``, so the largest scale that fits gives the most tokens. Sides are whole patches, so a model
sees every pixel and nothing is padded. All arithmetic is on integers and fractions (exact).
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

from ..errors import InputSizeError
from ..grid import Size, to_size
from .checks import count

__all__ = ["size_for_budget", "grid_tokens", "image_tokens"]


def _upscale_limit(max_upscale) -> Fraction | None:
    """``max_upscale`` as an exact fraction (``None``/``inf``: no limit)."""
    if max_upscale is None or max_upscale == math.inf:
        return None
    if isinstance(max_upscale, bool) or not isinstance(max_upscale, numbers.Real) or not max_upscale > 0:
        raise InputSizeError(
            f"max_upscale must be a positive number (1.0: never enlarge; None: no limit), got {max_upscale!r}."
        )
    return Fraction(max_upscale)


def grid_tokens(size, patch_size) -> int:
    """Patch tokens of an ``(H, W)`` input: ``(H // p_h) * (W // p_w)`` (a model drops partial patches)."""
    (h, w), (ph, pw) = to_size(size, "size"), to_size(patch_size, "patch_size")
    return (h // ph) * (w // pw)


def image_tokens(size, patch_size, resize=None, num_prefix_tokens: int = 0) -> int:
    """Tokens a model makes of an image of ``size`` ``(H, W)``: prefix plus patches, after ``resize``.

    ``resize``: ``None`` or a transform with ``output_size((H, W)) -> (H', W')`` (``ResizeToBudget``).
    Raises ``InputSizeError`` when the (resized) image is smaller than one patch.
    """
    size = to_size(size, "size")
    if resize is not None:
        size = to_size(resize.output_size(size), "resize.output_size(size)")
    patches = grid_tokens(size, patch_size)
    if patches == 0:
        raise InputSizeError(
            f"an image of {size[0]}x{size[1]} is smaller than one patch ({to_size(patch_size, 'patch_size')}); "
            "resize it first (ResizeToBudget(..., min_side=1)) or drop it."
        )
    return num_prefix_tokens + patches


def size_for_budget(size, patch_size, max_tokens: int, max_upscale: float | None = 1.0, min_side: int = 1) -> Size:
    """The largest ``(H', W')``, whole patches, of ``size``'s aspect whose grid has ``<= max_tokens`` patches.

    ``size`` ``(H, W)`` in pixels; ``patch_size`` an int or ``(p_h, p_w)``. The result is
    ``(h * p_h, w * p_w)`` with ``(h, w) = (floor(s H / p_h), floor(s W / p_w))`` for the largest
    scale ``s <= max_upscale`` (``None``: no limit) with ``h * w <= max_tokens``; each grid side is
    at least ``min_side`` patches (which may enlarge an image thinner than ``min_side`` patches past
    ``max_upscale``). The grid's aspect is the image's to within one patch per side:
    ``h / w`` lies strictly between ``(H / p_h) / (W / p_w) * h / (h + 1)`` and ``... * (w + 1) / w``.
    Raises ``InputSizeError`` for bad arguments, or when even ``min_side`` patches per side exceed
    ``max_tokens``.
    """
    (height, width), (ph, pw) = to_size(size, "size"), to_size(patch_size, "patch_size")
    max_tokens = count(max_tokens, "max_tokens", error=InputSizeError)
    min_side = count(min_side, "min_side", error=InputSizeError)
    limit = _upscale_limit(max_upscale)
    if min_side * min_side > max_tokens:
        raise InputSizeError(
            f"min_side={min_side} patches per side needs {min_side * min_side} tokens, more than max_tokens="
            f"{max_tokens}; lower min_side or raise max_tokens."
        )

    def grid_at(s: Fraction) -> tuple[int, int]:
        return max(min_side, math.floor(s * height / ph)), max(min_side, math.floor(s * width / pw))

    def fits(s: Fraction) -> bool:
        h, w = grid_at(s)
        return h * w <= max_tokens and (limit is None or s <= limit)

    # The grid changes only where s * H / p_h or s * W / p_w crosses an integer: at s = k * p_h / H
    # or s = k * p_w / W. On each axis, find the largest k whose breakpoint still fits (fits() is
    # monotone in s); the best grid is the one at the larger of the two breakpoints.
    best = Fraction(0)
    for step in (Fraction(ph, height), Fraction(pw, width)):
        lo, hi = 0, max_tokens + 1  # k = max_tokens + 1 gives that axis more than max_tokens patches
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid * step) else (lo, mid)
        best = max(best, lo * step)
    h, w = grid_at(best)
    return (h * ph, w * pw)
