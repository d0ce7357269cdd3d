"""Error types. Every message says what was expected, what was given and what to do instead."""

from __future__ import annotations

__all__ = ["RectViTError", "InputSizeError", "AmbiguousGridError", "CheckpointError"]


class RectViTError(ValueError):
    """Base class of every error rectvit raises on bad input."""


class InputSizeError(RectViTError):
    """An image, patch, window or grid size that the model or function cannot take."""


class AmbiguousGridError(RectViTError):
    """A flat position table whose (h, w) grid, or a bias table whose window, cannot be determined without guessing.

    ``candidates`` lists the factorisations ``(h, w)`` (or the windows ``(wh, ww)``) that were considered.
    """

    def __init__(self, message: str, candidates: list[tuple[int, int]] | None = None):
        super().__init__(message)
        self.candidates = list(candidates or [])


class CheckpointError(RectViTError):
    """A checkpoint that cannot be read, converted or loaded into the given model."""
