"""Sizes, grids and factorisations (a flat table's grid evidence lives in ``checkpoint/evidence.py``).

Every size in rectvit is an ``(H, W)`` pair of positive ints. ``to_size`` is the one place that turns
user input (an int, a pair, an ``"HxW"`` string) into such a pair, with an ``InputSizeError`` that
names the argument, the value given and the accepted forms.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from .errors import InputSizeError

__all__ = [
    "Size",
    "to_size",
    "patch_grid",
    "padded_size",
    "factorizations",
    "relative_windows",
    "check_img_size",
    "MAX_SIDE",
    "MAX_AREA",
]

Size = tuple[int, int]

# The largest nominal input size a model is built or resized to (docs/checkpoints.md, "Bounds"): tables,
# masks and windows scale with it, so anything beyond is refused before a byte is allocated.
MAX_SIDE = 1 << 20  # pixels a side: long strips (hours of audio frames) pass, the area bounds memory
MAX_AREA = 1 << 28  # pixels in all: 16384 x 16384


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


def check_img_size(size, name: str = "img_size") -> Size:
    """``to_size(size)``, refused (``InputSizeError``) beyond ``MAX_SIDE`` a side or ``MAX_AREA`` in all.

    For nominal sizes, which allocate position tables, windows and masks; an input passed to a
    forward is already in memory and is not bounded here.
    """
    h, w = to_size(size, name)
    if h > MAX_SIDE or w > MAX_SIDE or h * w > MAX_AREA:
        raise InputSizeError(
            f"{name} {h}x{w} is beyond what rectvit builds a model for (sides up to {MAX_SIDE} pixels, "
            f"{MAX_AREA} pixels in all); its tables would not fit in memory. Pass a smaller {name}."
        )
    return (h, w)
