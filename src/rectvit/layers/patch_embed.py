"""Image -> patch tokens, channels last: ``(B, C, H, W) -> (B, h, w, D)`` so the grid travels with the tensor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

try:  # torch >= 2.5; before, is_fx_tracing meant FX symbolic tracing alone
    from torch.fx._symbolic_trace import is_fx_symbolic_tracing
except ImportError:  # pragma: no cover
    from torch.fx._symbolic_trace import is_fx_tracing as is_fx_symbolic_tracing

from ..errors import InputSizeError
from ..grid import Size, check_img_size, padded_size, patch_grid, to_size
from ..resample import resample_patch_embed

__all__ = ["PatchEmbed"]


def check_image_dtype(x: torch.Tensor, dtype: torch.dtype | None = None) -> None:
    """``InputSizeError`` unless ``x`` is a floating-point image of ``dtype`` (the model's parameter dtype).

    Integer and bool images are refused, never cast: the model cannot know their scaling and
    normalisation. Under ``torch.autocast`` any floating dtype is accepted (autocast casts it).
    """
    if not x.is_floating_point():
        raise InputSizeError(
            f"expected a floating-point image batch{f' ({dtype})' if dtype else ''}, got {x.dtype}; convert it as the "
            "model was trained, e.g. x.float() / 255 followed by the training mean/std normalisation."
        )
    autocast = x.device.type != "meta" and torch.is_autocast_enabled(x.device.type)  # meta has no autocast
    if dtype is not None and x.dtype != dtype and not autocast:
        raise InputSizeError(
            f"expected a {dtype} image batch (the model's parameter dtype), got {x.dtype}; pass x.to({dtype}), "
            f"convert the model with model.to({x.dtype}), or run it under torch.autocast."
        )


def check_image_batch(x: torch.Tensor, in_chans: int, dtype: torch.dtype | None = None) -> tuple[int, int]:
    """``(H, W)`` of a ``(B, in_chans, H, W)`` batch; ``InputSizeError`` for another rank, channel count or
    dtype (see ``check_image_dtype``; ``dtype=None`` accepts any floating dtype)."""
    check_image_dtype(x, dtype)
    if x.dim() != 4:
        raise InputSizeError(
            f"expected an image batch (B, {in_chans}, H, W), got a {x.dim()}-d tensor of shape "
            f"{tuple(x.shape)}; add a batch dimension with x.unsqueeze(0) for one image."
        )
    _, c, h, w = x.shape
    if c != in_chans:
        raise InputSizeError(
            f"expected {in_chans} input channel(s), got {c} (input shape {tuple(x.shape)}); "
            f"build the model with in_chans={c} or convert the input."
        )
    return h, w


def check_scripted_image(
    x: torch.Tensor,
    in_chans: int,
    dtype: torch.dtype,
    img_size: Size,
    strict: bool,
    min_size: Size,
    multiple: Size,
) -> None:
    """``check_input``'s rules as TorchScript compiles them (a scripted model has no Python checks):
    ``InputSizeError`` unless ``x`` is a ``(B, in_chans, H, W)`` batch of ``dtype`` (any floating dtype under
    autocast) and of ``img_size`` (``strict``) or a size at least ``min_size`` and divisible by ``multiple``.
    Shorter messages, the same rules."""
    if not x.is_floating_point():
        raise InputSizeError("expected a floating-point image batch; convert it as the model was trained.")
    if x.dtype != dtype and not (torch.is_autocast_cpu_enabled() or torch.is_autocast_enabled()):
        raise InputSizeError(
            "the image batch's dtype differs from the model's parameters; convert the input (x.to(dtype)) or the "
            "model, or run it under torch.autocast."
        )
    if x.dim() != 4 or x.shape[1] != in_chans:
        raise InputSizeError(
            "expected an image batch (B, " + str(in_chans) + ", H, W), got shape " + str(x.shape) + "."
        )
    h, w = x.shape[2], x.shape[3]
    got = str(h) + "x" + str(w)
    if strict and (h != img_size[0] or w != img_size[1]):
        raise InputSizeError(
            "this scripted model takes "
            + str(img_size[0])
            + "x"
            + str(img_size[1])
            + " inputs, got "
            + got
            + "; script a model built with dynamic_img_size=True to take other sizes."
        )
    if h < min_size[0] or w < min_size[1]:
        raise InputSizeError(
            "input " + got + " is smaller than " + str(min_size[0]) + "x" + str(min_size[1]) + " (one patch)."
        )
    if h % multiple[0] != 0 or w % multiple[1] != 0:
        raise InputSizeError(
            "input " + got + " is not a multiple of the patch size " + str(multiple[0]) + "x" + str(multiple[1]) + "."
        )


def tile_padding(size: int, patch: int, stride: int) -> int:
    """How much to add to one side of ``size`` so that ``patch``-wide steps of ``stride`` tile it exactly
    (``grid.padded_size`` per side; plain int arithmetic, so TorchScript and symbolic sizes take it)."""
    steps = -(-(max(size, patch) - patch) // stride)  # ceil division
    return patch + steps * stride - size


def resized_patch_conv(conv: nn.Conv2d, patch: Size, stride: Size) -> nn.Conv2d:
    """A copy of a patch-projection ``conv`` with a ``patch`` kernel (PI-resized weights) and ``stride``."""
    new = nn.Conv2d(conv.in_channels, conv.out_channels, patch, stride=stride, bias=conv.bias is not None)
    new = new.to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(resample_patch_embed(conv.weight, patch))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    new.weight.requires_grad_(conv.weight.requires_grad)
    if new.bias is not None:
        new.bias.requires_grad_(conv.bias.requires_grad)
    return new


class PatchEmbed(nn.Module):
    """A strided convolution ``proj`` that cuts ``img_size`` into a grid of patches (timm's key names).

    ``patch_stride`` defaults to the patch size; a smaller stride gives overlapping patches (AST:
    16x16 patches at stride 10 make a (12, 101) grid of a 128x1024 spectrogram). With
    ``strict_img_size`` only ``img_size`` is accepted; otherwise any size holding one patch. A size the
    patches do not tile is cropped as the convolution takes it (whole patches only; the bottom/right
    remainder is not seen), unless ``dynamic_img_pad`` zero-pads it up to the next tiling.
    ``norm_layer`` (e.g. ``nn.LayerNorm``, as Swin) normalises the tokens; ``None`` leaves them as they are.

    Any embedding module a ViT takes (see ``VisionTransformer(embed_layer=...)``) offers the same
    interface: ``img_size``, ``patch_size``, ``grid_size``, ``feat_size(img_size)``,
    ``set_input_size(img_size, patch_size)``, ``strict_img_size`` and ``forward -> (B, h, w, D)``.
    """

    def __init__(
        self,
        img_size=224,
        patch_size=16,
        patch_stride=None,
        in_chans: int = 3,
        embed_dim: int = 768,
        bias: bool = True,
        dynamic_img_pad: bool = False,
        strict_img_size: bool = True,
        norm_layer: Callable[[int], nn.Module] | None = None,
    ):
        super().__init__()
        self.patch_size: Size = to_size(patch_size, "patch_size")
        self.stride_follows_patch = patch_stride is None
        self.patch_stride: Size = self.patch_size if patch_stride is None else to_size(patch_stride, "patch_stride")
        self.in_chans = in_chans
        self.dynamic_img_pad = dynamic_img_pad
        self.strict_img_size = strict_img_size
        self.img_size: Size = to_size(img_size, "img_size")
        self.grid_size: Size = self.feat_size(self.img_size)
        self.proj = nn.Conv2d(in_chans, embed_dim, self.patch_size, stride=self.patch_stride, bias=bias)
        self.norm = norm_layer(embed_dim) if norm_layer is not None else nn.Identity()

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    def feat_size(self, img_size) -> Size:
        """The ``(h, w)`` grid this embedding makes of an input of ``img_size`` (after any padding)."""
        return self._grid_of(img_size, self.patch_size, self.patch_stride)

    def _grid_of(self, img_size, patch: Size, stride: Size) -> Size:
        if self.dynamic_img_pad:
            img_size = padded_size(img_size, patch, stride)
        return patch_grid(img_size, patch, stride)

    def plan_input_size(self, img_size=None, patch_size=None, patch_stride=None) -> dict[str, Any]:
        """What ``set_input_size`` would set, every size checked and a new kernel computed, nothing changed.

        The stride follows a new patch size unless it was given explicitly at construction or here.
        """
        new_patch = self.patch_size if patch_size is None else to_size(patch_size, "patch_size")
        follows = self.stride_follows_patch and patch_stride is None
        if patch_stride is not None:
            new_stride = to_size(patch_stride, "patch_stride")
        else:
            new_stride = new_patch if follows else self.patch_stride
        new_img = self.img_size if img_size is None else check_img_size(img_size)  # bounded before allocating
        plan = dict(
            patch_size=new_patch,
            patch_stride=new_stride,
            stride_follows_patch=follows,
            img_size=new_img,
            grid_size=self._grid_of(new_img, new_patch, new_stride),
        )
        if new_patch != self.patch_size:
            plan["proj"] = resized_patch_conv(self.proj, new_patch, new_stride)
        return plan

    def apply_input_size(self, plan: dict[str, Any]) -> None:
        """Take the sizes of a ``plan_input_size`` plan; cannot fail."""
        for name, value in plan.items():
            setattr(self, name, value)
        self.proj.stride = self.patch_stride

    def set_input_size(self, img_size=None, patch_size=None, patch_stride=None) -> None:
        """Change the nominal input size and/or the patch size (kernel PI-resized, FlexiViT style).

        Every size is checked before anything changes, so a bad call leaves the module as it was.
        """
        self.apply_input_size(self.plan_input_size(img_size, patch_size, patch_stride))

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``InputSizeError`` for anything but a ``(B, in_chans, H, W)`` input of an accepted size."""
        h, w = check_image_batch(x, self.in_chans, self.proj.weight.dtype)
        if self.strict_img_size:
            if (h, w) != self.img_size:
                raise InputSizeError(
                    f"this model takes {self.img_size[0]}x{self.img_size[1]} inputs, got {h}x{w}; call "
                    f"model.set_input_size(img_size=({h}, {w})) or build it with dynamic_img_size=True "
                    "to accept other sizes."
                )
            return  # the nominal size defines the grid, as its convolution covers it
        if self.dynamic_img_pad:
            if h < 1 or w < 1:
                raise InputSizeError(
                    f"input {h}x{w} is empty; dynamic_img_pad pads a non-empty image up to whole patches."
                )
            return
        ph, pw = self.patch_size
        if h < ph or w < pw:
            raise InputSizeError(
                f"input {h}x{w} is smaller than one patch ({ph}x{pw}); use an input of at least "
                f"{max(h, ph)}x{max(w, pw)} or build the model with dynamic_img_pad=True."
            )

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-pad bottom/right up to the next size the patches tile exactly."""
        pad_h = tile_padding(x.shape[-2], self.patch_size[0], self.patch_stride[0])
        pad_w = tile_padding(x.shape[-1], self.patch_size[1], self.patch_stride[1])
        if pad_h == 0 and pad_w == 0:
            return x
        return F.pad(x, (0, pad_w, 0, pad_h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B, h, w, embed_dim)``."""
        if torch.jit.is_scripting():
            min_size = (1, 1) if self.dynamic_img_pad else self.patch_size
            check_scripted_image(
                x, self.in_chans, self.proj.weight.dtype, self.img_size, self.strict_img_size, min_size, (1, 1)
            )
        elif not is_fx_symbolic_tracing():  # FX cannot trace the size checks; eager calls keep them
            self.check_input(x)
        if self.dynamic_img_pad:
            x = self._pad(x)
        x = self.proj(x)  # (B, D, h, w)
        return self.norm(x.permute(0, 2, 3, 1))

    def extra_repr(self) -> str:
        return (
            f"img_size={self.img_size}, patch_size={self.patch_size}, patch_stride={self.patch_stride}, "
            f"grid_size={self.grid_size}, dynamic_img_pad={self.dynamic_img_pad}, "
            f"strict_img_size={self.strict_img_size}"
        )
