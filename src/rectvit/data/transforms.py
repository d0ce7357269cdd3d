"""Resizing to a token budget, for tensors and PIL images; usable inside ``torchvision.transforms.v2``.

Both transforms give an image the size ``size_for_budget`` gives it, whatever they crop, so a
``TokenBudgetBatchSampler(..., resize=transform)`` counts every image's tokens before decoding it:
``transform.output_size((H, W))`` is the size ``transform(image)`` will have.

Tensors ``(..., C, H, W)`` (``torchvision.tv_tensors.Image`` included, returned as the same type)
are resized with ``torch.nn.functional.interpolate`` (antialiased bilinear/bicubic, as
``torchvision.transforms.v2.functional.resize``; integer images are resized in float32 and rounded
back); PIL images with ``PIL.Image.resize``. Pillow is imported only when a PIL image is given.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputSizeError
from ..grid import Size, to_size
from .budget import size_for_budget

__all__ = ["ResizeToBudget", "RandomResizedCropToBudget"]

_MODES = ("bilinear", "bicubic", "nearest")


def _image_size(img) -> Size:
    """``(H, W)`` of a ``(..., C, H, W)`` tensor or a PIL image."""
    if isinstance(img, torch.Tensor):
        if img.dim() < 3:
            raise InputSizeError(f"expected a (..., C, H, W) image tensor, got shape {tuple(img.shape)}.")
        return int(img.shape[-2]), int(img.shape[-1])
    if _is_pil(img):
        return img.height, img.width
    raise InputSizeError(
        f"expected a (..., C, H, W) tensor or a PIL image, got {type(img).__name__}; convert it first "
        "(torchvision.transforms.v2.ToImage() makes a tensor)."
    )


def _is_pil(img) -> bool:
    return type(img).__module__.startswith("PIL.")


def _resize(img, size: Size, interpolation: str, box: tuple[int, int, int, int] | None = None):
    """``img`` (or its crop ``box = (top, left, height, width)``) resized to ``size`` ``(H, W)``."""
    if _is_pil(img):
        from PIL import Image

        resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[interpolation]
        if box is not None:  # crop first (resize's own box would filter across the crop's edge)
            img = img.crop((box[1], box[0], box[1] + box[3], box[0] + box[2]))
        return img.resize((size[1], size[0]), resample)
    x = img.as_subclass(torch.Tensor)
    if box is not None:
        x = x[..., box[0] : box[0] + box[2], box[1] : box[1] + box[3]]
    if tuple(x.shape[-2:]) == tuple(size):
        out = x.clone()
    else:
        flat = x.reshape(-1, *x.shape[-3:])
        work = flat if flat.is_floating_point() else flat.float()
        kwargs = {} if interpolation == "nearest" else dict(align_corners=False, antialias=True)
        out = F.interpolate(work, size=size, mode=interpolation, **kwargs)
        if not flat.is_floating_point():
            info = torch.iinfo(flat.dtype)
            out = out.round_().clamp_(info.min, info.max).to(flat.dtype)
        out = out.reshape(*x.shape[:-2], *out.shape[-2:])
    return out if type(img) is torch.Tensor else out.as_subclass(type(img))


class ResizeToBudget(nn.Module):
    """Resize an image to ``size_for_budget(its size, patch_size, max_tokens, max_upscale, min_side)``.

    ``(..., C, H, W)`` tensor or PIL image in, the same kind out, aspect kept to within a patch per
    side, sides whole patches. ``output_size((H, W))`` says the size without an image.
    """

    def __init__(
        self,
        patch_size,
        max_tokens: int,
        max_upscale: float | None = 1.0,
        min_side: int = 1,
        interpolation: str = "bilinear",
    ):
        super().__init__()
        if interpolation not in _MODES:
            raise InputSizeError(f"interpolation must be one of {_MODES}, got {interpolation!r}.")
        self.patch_size = to_size(patch_size, "patch_size")
        self.max_tokens, self.max_upscale, self.min_side = max_tokens, max_upscale, min_side
        self.interpolation = interpolation
        self.output_size((self.patch_size[0], self.patch_size[1]))  # checks the budget arguments now

    def output_size(self, size) -> Size:
        """The ``(H', W')`` an image of ``size`` ``(H, W)`` gets."""
        return size_for_budget(size, self.patch_size, self.max_tokens, self.max_upscale, self.min_side)

    def forward(self, img):
        return _resize(img, self.output_size(_image_size(img)), self.interpolation)

    def extra_repr(self) -> str:
        return (
            f"patch_size={self.patch_size}, max_tokens={self.max_tokens}, max_upscale={self.max_upscale}, "
            f"min_side={self.min_side}, interpolation={self.interpolation!r}"
        )


def _check_range(value: Sequence[float], name: str) -> tuple[float, float]:
    if not isinstance(value, Sequence) or len(value) != 2 or not all(isinstance(v, (int, float)) for v in value):
        raise InputSizeError(f"{name} must be a pair (low, high) of numbers, got {value!r}.")
    lo, hi = float(value[0]), float(value[1])
    if not 0 < lo <= hi:
        raise InputSizeError(f"{name} must satisfy 0 < low <= high, got {value!r}.")
    return lo, hi


class RandomResizedCropToBudget(ResizeToBudget):
    """A random crop, resized to the size ``ResizeToBudget`` gives the whole image.

    The crop covers a fraction of the image's area drawn from ``scale`` and has the image's own
    aspect times a factor drawn log-uniformly from ``ratio`` (``torchvision``'s RandomResizedCrop
    rule, relative to the image's aspect, with its 10 tries and its whole-image fallback). The output
    size depends on the image's size only (``output_size``), so a sampler plans tokens exactly.
    Randomness comes from Python's ``random`` module, as in torchvision (seed workers as usual).
    """

    def __init__(
        self,
        patch_size,
        max_tokens: int,
        scale: Sequence[float] = (0.25, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        max_upscale: float | None = 1.0,
        min_side: int = 1,
        interpolation: str = "bilinear",
    ):
        super().__init__(patch_size, max_tokens, max_upscale, min_side, interpolation)
        self.scale = _check_range(scale, "scale")
        if self.scale[1] > 1:
            raise InputSizeError(f"scale is a fraction of the image's area, at most 1, got {scale!r}.")
        self.ratio = _check_range(ratio, "ratio")

    def crop_box(self, size) -> tuple[int, int, int, int]:
        """A random ``(top, left, height, width)`` crop of an image of ``size`` ``(H, W)``."""
        height, width = to_size(size, "size")
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * random.uniform(*self.scale)
            aspect = (width / height) * math.exp(random.uniform(*log_ratio))  # crop width / height
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                return random.randint(0, height - h), random.randint(0, width - w), h, w
        return 0, 0, height, width

    def forward(self, img):
        size = _image_size(img)
        return _resize(img, self.output_size(size), self.interpolation, self.crop_box(size))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", scale={self.scale}, ratio={self.ratio}"
