"""Image -> patch tokens, channels last: ``(B, C, H, W) -> (B, h, w, D)`` so the grid travels with the tensor."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

try:  # torch >= 2.5; before, is_fx_tracing meant FX symbolic tracing alone
    from torch.fx._symbolic_trace import is_fx_symbolic_tracing
except ImportError:  # pragma: no cover
    from torch.fx._symbolic_trace import is_fx_tracing as is_fx_symbolic_tracing

from ..errors import InputSizeError
from ..grid import Size, padded_size, patch_grid, to_size
from ..resample import resample_patch_embed

__all__ = ["PatchEmbed"]


def check_image_batch(x: torch.Tensor, in_chans: int) -> tuple[int, int]:
    """``(H, W)`` of a ``(B, in_chans, H, W)`` batch; ``InputSizeError`` for another rank or channel count."""
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
    ``strict_img_size`` only ``img_size`` is accepted; otherwise any size whose patches tile it
    (or any size at all with ``dynamic_img_pad``, which zero-pads bottom/right up to the next tiling).

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

    def set_input_size(self, img_size=None, patch_size=None, patch_stride=None) -> None:
        """Change the nominal input size and/or the patch size (kernel PI-resized, FlexiViT style).

        The stride follows a new patch size unless it was given explicitly at construction or here.
        Every size is checked before anything changes, so a bad call leaves the module as it was.
        """
        new_patch = self.patch_size if patch_size is None else to_size(patch_size, "patch_size")
        follows = self.stride_follows_patch and patch_stride is None
        if patch_stride is not None:
            new_stride = to_size(patch_stride, "patch_stride")
        else:
            new_stride = new_patch if follows else self.patch_stride
        new_img = self.img_size if img_size is None else to_size(img_size, "img_size")
        new_grid = self._grid_of(new_img, new_patch, new_stride)
        if new_patch != self.patch_size:
            self.proj = resized_patch_conv(self.proj, new_patch, new_stride)
        self.patch_size, self.patch_stride, self.stride_follows_patch = new_patch, new_stride, follows
        self.proj.stride = new_stride
        self.img_size, self.grid_size = new_img, new_grid

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``InputSizeError`` for anything but a ``(B, in_chans, H, W)`` input of an accepted size."""
        h, w = check_image_batch(x, self.in_chans)
        if self.strict_img_size:
            if (h, w) != self.img_size:
                raise InputSizeError(
                    f"this model takes {self.img_size[0]}x{self.img_size[1]} inputs, got {h}x{w}; call "
                    f"model.set_input_size(img_size=({h}, {w})) or build it with dynamic_img_size=True "
                    "to accept other sizes."
                )
            return  # the nominal size defines the grid, as its convolution covers it
        if self.dynamic_img_pad:
            return
        ph, pw = self.patch_size
        if h < ph or w < pw:
            raise InputSizeError(
                f"input {h}x{w} is smaller than one patch ({ph}x{pw}); use an input of at least "
                f"{max(h, ph)}x{max(w, pw)} or build the model with dynamic_img_pad=True."
            )
        if self.patch_stride == self.patch_size and (h % ph or w % pw):
            ok = (h // ph * ph, w // pw * pw)
            up = padded_size((h, w), self.patch_size)
            raise InputSizeError(
                f"input {h}x{w} is not a multiple of the patch size {ph}x{pw}; crop to "
                f"{ok[0]}x{ok[1]}, pad to {up[0]}x{up[1]}, or build the model with dynamic_img_pad=True."
            )

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-pad bottom/right up to the next size the patches tile exactly."""
        h, w = x.shape[-2:]
        ph, pw = padded_size((h, w), self.patch_size, self.patch_stride)
        if (ph, pw) == (h, w):
            return x
        return F.pad(x, (0, pw - w, 0, ph - h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B, h, w, embed_dim)``."""
        if not is_fx_symbolic_tracing():  # FX cannot trace the size checks; eager calls keep them
            self.check_input(x)
        if self.dynamic_img_pad:
            x = self._pad(x)
        x = self.proj(x)  # (B, D, h, w)
        return x.permute(0, 2, 3, 1)

    def extra_repr(self) -> str:
        return (
            f"img_size={self.img_size}, patch_size={self.patch_size}, patch_stride={self.patch_stride}, "
            f"grid_size={self.grid_size}, dynamic_img_pad={self.dynamic_img_pad}, "
            f"strict_img_size={self.strict_img_size}"
        )
