"""Image sizes from file headers, without decoding pixels (Pillow reads the header only)."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

from ..errors import RectViTError
from ..grid import Size

__all__ = ["image_size", "ImageSizes"]


def image_size(src: Any) -> Size:
    """``(H, W)`` of an image file: a path, raw bytes (e.g. a shard member) or a binary file object.

    Pillow opens the file lazily, so only the header is read. Needs Pillow (``pip install rectvit[data]``).
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise RectViTError("reading image headers needs Pillow: pip install 'rectvit[data]' (or pillow).") from None
    if isinstance(src, (bytes, bytearray, memoryview)):
        src = io.BytesIO(src)
    elif not isinstance(src, (str, os.PathLike)) and not hasattr(src, "read"):
        raise RectViTError(f"expected a path, bytes or a binary file object, got {type(src).__name__}.")
    try:
        with Image.open(src) as img:
            width, height = img.size
    except (UnidentifiedImageError, OSError) as e:
        raise RectViTError(f"cannot read an image header from {src!r}: {e}") from None
    return (height, width)


class ImageSizes(Sequence):
    """The ``(H, W)`` of each image file in ``paths``, read from its header on first access and kept.

    Give it to ``TokenBudgetBatchSampler(sizes=...)``: headers are read when the first epoch is
    planned, never pixels.
    """

    def __init__(self, paths: Sequence[Any]):
        self.paths = list(paths)
        self._sizes: dict[int, Size] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]
        if i not in self._sizes:
            self._sizes[i] = image_size(self.paths[i])
        return self._sizes[i]
