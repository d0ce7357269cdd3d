"""Hybrid ViT: a ResNet-V2 (BiT) backbone whose feature map is cut into patches for a ViT.

The backbone is the one timm's hybrids use (``vit_*_r*``): weight-standardised convolutions with
TensorFlow "same" padding, GroupNorm(32) + ReLU, a 7x7/2 stem with a 3x3/2 max-pool, then stages of
non-pre-activation bottlenecks (ResNet v1.5: the stride sits on the 3x3 conv). A ``p x p``
projection turns its feature map into patch tokens; the transformer is ``VisionTransformer``.

State dicts use timm's key names (``patch_embed.backbone.stem.conv.weight``,
``patch_embed.backbone.stages.0.blocks.0.conv1.weight``, ``patch_embed.proj.weight``; a stem-only
backbone, as in ``vit_tiny_r_s16_p8``, is ``patch_embed.backbone.conv.weight``), with the position
table stored as a ``(1, h, w, C)`` grid like every rectvit ViT.

Data flow for a ``(B, in_chans, H, W)`` input::

    stem (conv 7x7/2, norm, max-pool 3x3/2) -> (B, 64, ceil(H/4), ceil(W/4))
    stages (first stride 1, then 2 each)     -> (B, F, fh, fw)    fh = ceil(H / R), R = 4 * 2**(stages-1)
    proj (p x p conv, stride p)              -> (B, C, fh // p, fw // p)
    NHWC                                     -> (B, h, w, C)      then the ViT as usual
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputSizeError, RectViTError
from ..grid import Size, check_img_size, to_size
from ..layers.patch_embed import check_image_batch, check_scripted_image, is_fx_symbolic_tracing, resized_patch_conv
from ._util import record_config, with_defaults
from .registry import register_model
from .vit import VisionTransformer

__all__ = [
    "StdConv2d",
    "GroupNormAct",
    "MaxPool2dSame",
    "Bottleneck",
    "ResNetStem",
    "ResNetV2Backbone",
    "HybridEmbed",
    "HybridVisionTransformer",
    "same_padding",
]

STAGE_CHANNELS = (256, 512, 1024, 2048)
STD_CONV_EPS = 1e-8  # timm's hybrids standardise weights with eps=1e-8 (its StdConv2d default is 1e-6)
GROUP_NORM_EPS = 1e-5


# --------------------------------------------------------------------------------------------------
# Padding arithmetic


def same_padding(length: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow "SAME" padding ``(before, after)`` of one axis: the output has ``ceil(length / stride)`` steps.

    The odd pixel, when the total is odd, goes after (bottom/right), as TensorFlow does.
    """
    reach = (kernel - 1) * dilation + 1
    total = max((math.ceil(length / stride) - 1) * stride + reach - length, 0)
    return total // 2, total - total // 2


def _same_pad_is_static(kernel: Size, stride: Size, dilation: Size) -> bool:
    """ "Same" padding is the same for every input size only for stride 1 and an odd kernel reach."""
    return all(s == 1 and (d * (k - 1)) % 2 == 0 for k, s, d in zip(kernel, stride, dilation))


def _pad_same(x: torch.Tensor, kernel: Size, stride: Size, dilation: Size, value: float = 0.0) -> torch.Tensor:
    """Pad ``(B, C, H, W)`` for a "same" window op on this input's own size."""
    top, bottom = same_padding(x.shape[-2], kernel[0], stride[0], dilation[0])
    left, right = same_padding(x.shape[-1], kernel[1], stride[1], dilation[1])
    if top == 0 and bottom == 0 and left == 0 and right == 0:
        return x
    return F.pad(x, [left, right, top, bottom], value=value)


torch.fx.wrap("_pad_same")  # padding computed from the input's size: one opaque call in an FX graph


def _out_length(length: int, kernel: int, stride: int, same: bool) -> int:
    """Output length of a conv/pool of one axis: "same" padding, or PyTorch's symmetric ``(k - 1) // 2``."""
    if same:
        return math.ceil(length / stride)
    pad = ((stride - 1) + (kernel - 1)) // 2
    return (length + 2 * pad - kernel) // stride + 1


# --------------------------------------------------------------------------------------------------
# Layers


class StdConv2d(nn.Conv2d):
    """A bias-free convolution with weight standardisation (each output filter zero-mean, unit-variance).

    ``same=True``: TensorFlow "same" padding, static (in the conv) when it does not depend on the
    input size, else computed per input in ``forward`` (strided convs). ``same=False``: PyTorch's
    symmetric padding ``((s - 1) + (k - 1)) // 2``.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        same: bool = True,
        eps: float = STD_CONV_EPS,
    ):
        k, s, d = (kernel_size,) * 2, (stride,) * 2, (dilation,) * 2
        self.dynamic_pad = same and not _same_pad_is_static(k, s, d)
        if self.dynamic_pad:
            padding = 0
        elif same:
            padding = d[0] * (k[0] - 1) // 2
        else:
            padding = ((stride - 1) + dilation * (kernel_size - 1)) // 2
        super().__init__(in_chs, out_chs, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=False)
        self.same = same
        self.eps = eps

    def standardized_weight(self) -> torch.Tensor:
        """``(O, I, kh, kw)`` weight with each filter's mean removed and divided by ``sqrt(var + eps)``.

        Computed as a batch norm over a ``(1, O, I*kh*kw)`` view (one "channel" per filter, biased
        variance): the same kernel timm uses, so the result is bit-identical to its ``StdConv2d``.
        """
        filters = self.weight.reshape(1, self.out_channels, -1)
        standardized = F.batch_norm(filters, None, None, training=True, momentum=0.0, eps=self.eps)
        return standardized.reshape_as(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic_pad:
            x = _pad_same(x, self.kernel_size, self.stride, self.dilation)
        return F.conv2d(x, self.standardized_weight(), None, self.stride, self.padding, self.dilation, self.groups)


class GroupNormAct(nn.GroupNorm):
    """GroupNorm (32 groups, timm's eps) followed by ReLU unless ``act=False``; keys ``weight``, ``bias``."""

    def __init__(self, num_channels: int, num_groups: int = 32, act: bool = True, eps: float = GROUP_NORM_EPS):
        super().__init__(num_groups, num_channels, eps=eps)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        return F.relu(x) if self.act else x


class MaxPool2dSame(nn.Module):
    """3x3/2-style max-pooling with "same" padding computed per input (padded with ``-inf``)."""

    def __init__(self, kernel_size: int = 3, stride: int = 2):
        super().__init__()
        self.kernel_size: Size = (kernel_size, kernel_size)
        self.stride: Size = (stride, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _pad_same(x, self.kernel_size, self.stride, (1, 1), value=-math.inf)
        return F.max_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding='same'"


class ResNetStem(nn.Module):
    """``conv`` 7x7/2 -> ``norm`` (GroupNorm + ReLU) -> ``pool`` 3x3/2: ``(B, in, H, W) -> (B, out, ~H/4, ~W/4)``."""

    def __init__(self, in_chans: int = 3, out_chs: int = 64, same: bool = True):
        super().__init__()
        self.conv = StdConv2d(in_chans, out_chs, 7, stride=2, same=same)
        self.norm = GroupNormAct(out_chs)
        self.pool = MaxPool2dSame(3, 2) if same else nn.MaxPool2d(3, 2, padding=1)
        self.same = same
        self.num_features = out_chs
        self.reduction = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.norm(self.conv(x)))


class DownsampleConv(nn.Module):
    """The shortcut projection of a stage's first block: 1x1 conv (strided) + GroupNorm without ReLU."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, same: bool = True):
        super().__init__()
        self.conv = StdConv2d(in_chs, out_chs, 1, stride=stride, same=same)
        self.norm = GroupNormAct(out_chs, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class Bottleneck(nn.Module):
    """Non-pre-activation bottleneck (1x1 -> 3x3 (strided) -> 1x1, width ``out_chs / 4``) with a residual.

    ``(B, in_chs, H, W) -> (B, out_chs, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, same: bool = True):
        super().__init__()
        mid_chs = out_chs // 4
        needs_projection = stride != 1 or in_chs != out_chs
        self.downsample = DownsampleConv(in_chs, out_chs, stride, same) if needs_projection else None
        self.conv1 = StdConv2d(in_chs, mid_chs, 1, same=same)
        self.norm1 = GroupNormAct(mid_chs)
        self.conv2 = StdConv2d(mid_chs, mid_chs, 3, stride=stride, same=same)
        self.norm2 = GroupNormAct(mid_chs)
        self.conv3 = StdConv2d(mid_chs, out_chs, 1, same=same)
        self.norm3 = GroupNormAct(out_chs, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.norm1(self.conv1(x))
        x = self.norm2(self.conv2(x))
        x = self.norm3(self.conv3(x))
        return F.relu(x + shortcut)


class ResNetStage(nn.Module):
    """``depth`` bottlenecks; the first one projects the shortcut and carries the stride."""

    def __init__(self, in_chs: int, out_chs: int, depth: int, stride: int, same: bool = True):
        super().__init__()
        self.blocks = nn.Sequential(
            *[Bottleneck(in_chs if i == 0 else out_chs, out_chs, stride if i == 0 else 1, same) for i in range(depth)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class ResNetV2Backbone(nn.Module):
    """timm's ``ResNetV2(layers, preact=False, stem_type='same', conv_layer=StdConv2dSame)`` without head.

    ``layers`` gives the number of bottlenecks per stage (at most 4 stages, with 256, 512, 1024 and
    2048 channels; every stage after the first halves the resolution).
    ``(B, in_chans, H, W) -> (B, num_features, *backbone_out_size((H, W), layers, same))``.
    """

    def __init__(self, layers: Sequence[int], in_chans: int = 3, same: bool = True):
        super().__init__()
        self.stem = ResNetStem(in_chans, 64, same)
        self.stages = nn.Sequential()
        prev = self.stem.num_features
        for i, (depth, chs) in enumerate(zip(layers, STAGE_CHANNELS)):
            self.stages.add_module(str(i), ResNetStage(prev, chs, depth, stride=1 if i == 0 else 2, same=same))
            prev = chs
        self.num_features = prev
        self.reduction = self.stem.reduction * 2 ** max(len(self.stages) - 1, 0)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
                x = torch.utils.checkpoint.checkpoint(stage, x, use_reentrant=False)
            else:
                x = stage(x)
        return x


def backbone_out_size(img_size: Size, layers: Sequence[int], same: bool = True) -> Size:
    """``(fh, fw)`` of the feature map ``make_backbone(layers, same=same)`` makes of ``img_size``: the stem's
    7x7/2 conv and 3x3/2 pool, then a 3x3/2 conv for every stage after the first."""
    size = img_size
    for kernel, stride in [(7, 2), (3, 2)] + [(3, 2)] * max(len(layers) - 1, 0):
        size = (_out_length(size[0], kernel, stride, same), _out_length(size[1], kernel, stride, same))
    return size


def _block_counts(layers: Sequence[int]) -> tuple[int, ...]:
    """``layers`` as a tuple of ints, or a ``RectViTError`` unless it lists 0 to 4 positive block counts."""
    ok = not isinstance(layers, (str, bytes)) and isinstance(layers, Sequence) and len(layers) <= len(STAGE_CHANNELS)
    if not ok or any(isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1 for n in layers):
        raise RectViTError(
            f"backbone_layers must list 0 to {len(STAGE_CHANNELS)} positive block counts (e.g. (3, 4, 9) for "
            f"R50, (2, 2, 2, 2) for R26, () for the stem alone), got {layers!r}."
        )
    return tuple(int(n) for n in layers)


def make_backbone(layers: Sequence[int], in_chans: int = 3, same: bool = True) -> nn.Module:
    """The backbone timm's ``_resnetv2(layers)`` builds: the full ResNet, or its stem alone when ``layers`` is empty."""
    layers = _block_counts(layers)
    if not layers:
        return ResNetStem(in_chans, 64, same)
    return ResNetV2Backbone(layers, in_chans, same)


# --------------------------------------------------------------------------------------------------
# Patch embedding on the backbone's feature map


class HybridEmbed(nn.Module):
    """Backbone feature map -> ``p x p`` patches -> ``(B, h, w, embed_dim)`` (timm's ``HybridEmbed`` keys).

    Same interface as ``rectvit.layers.PatchEmbed`` (``img_size``, ``patch_size``, ``grid_size``,
    ``feat_size``, ``set_input_size``, ``strict_img_size``), with ``patch_size`` counted in feature-map
    pixels. The grid follows from the backbone's arithmetic, ``feature = ceil(H / R)`` per axis, so it
    is exact for any rectangle. ``dynamic_img_pad`` zero-pads the *feature map* bottom/right up to a
    multiple of the patch (as timm); without it the feature map must be tiled by whole patches.
    """

    def __init__(
        self,
        img_size=224,
        patch_size=1,
        patch_stride=None,
        in_chans: int = 3,
        embed_dim: int = 768,
        bias: bool = True,
        dynamic_img_pad: bool = False,
        strict_img_size: bool = True,
        backbone_layers: Sequence[int] = (3, 4, 9),
        padding_same: bool = True,
    ):
        super().__init__()
        self.backbone = make_backbone(backbone_layers, in_chans, padding_same)
        self.backbone_layers, self.padding_same = tuple(backbone_layers), padding_same
        self.feature_dim: int = self.backbone.num_features
        self.in_chans = in_chans
        self.dynamic_img_pad = dynamic_img_pad
        self.strict_img_size = strict_img_size
        self.stride_follows_patch = True
        self.patch_size: Size = self._check_patch(patch_size, patch_stride)
        self.img_size: Size = to_size(img_size, "img_size")
        self.grid_size: Size = self._checked_grid(self.img_size, self.patch_size, "img_size")
        self.proj = nn.Conv2d(self.feature_dim, embed_dim, self.patch_size, stride=self.patch_size, bias=bias)

    # -- sizes -------------------------------------------------------------------------------------

    @property
    def patch_stride(self) -> Size:
        return self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    @property
    def feature_ratio(self) -> Size:
        """Reduction of the backbone along each axis (its output is ``ceil(H / ratio)``)."""
        return (self.backbone.reduction, self.backbone.reduction)

    def feature_size(self, img_size) -> Size:
        """``(fh, fw)`` of the backbone's feature map for an input of ``img_size``."""
        return backbone_out_size(to_size(img_size, "img_size"), self.backbone_layers, self.padding_same)

    def feat_size(self, img_size) -> Size:
        """The ``(h, w)`` token grid of an input of ``img_size`` (after any feature-map padding)."""
        return self._grid_of(self.feature_size(img_size), self.patch_size)

    def _grid_of(self, feature: Size, patch: Size) -> Size:
        if self.dynamic_img_pad:
            return (math.ceil(feature[0] / patch[0]), math.ceil(feature[1] / patch[1]))
        return (feature[0] // patch[0], feature[1] // patch[1])

    def min_input_size(self, patch: Size | None = None) -> Size:
        """The smallest ``(H, W)`` whose feature map holds one whole patch."""
        patch = self.patch_size if patch is None else patch
        if self.dynamic_img_pad:
            return (1, 1)
        ratio = self.feature_ratio
        return ((patch[0] - 1) * ratio[0] + 1, (patch[1] - 1) * ratio[1] + 1)

    def _check_patch(self, patch_size, patch_stride) -> Size:
        patch = to_size(patch_size, "patch_size")
        if patch_stride is not None and to_size(patch_stride, "patch_stride") != patch:
            raise InputSizeError(
                f"a hybrid's patch projection steps by whole patches: patch_stride must equal patch_size {patch}, "
                f"got {patch_stride!r}; leave patch_stride=None."
            )
        return patch

    def _checked_grid(self, img_size: Size, patch: Size, what: str) -> Size:
        """The grid of ``img_size`` (whole patches of its feature map), or an ``InputSizeError`` when none fits."""
        feature = self.feature_size(img_size)
        h, w = img_size
        if self.dynamic_img_pad and (h < 1 or w < 1):
            raise InputSizeError(
                f"{what} {h}x{w} is empty; dynamic_img_pad pads a non-empty feature map to whole patches."
            )
        if not self.dynamic_img_pad and (feature[0] < patch[0] or feature[1] < patch[1]):
            mh, mw = self.min_input_size(patch)
            raise InputSizeError(
                f"{what} {h}x{w} is too small: the backbone reduces it to a {feature[0]}x{feature[1]} feature map, "
                f"smaller than one {patch[0]}x{patch[1]} patch; the minimum size is {max(h, mh)}x{max(w, mw)} "
                f"(at least {mh}x{mw})."
            )
        return self._grid_of(feature, patch)

    def plan_input_size(self, img_size=None, patch_size=None, patch_stride=None) -> dict[str, Any]:
        """What ``set_input_size`` would set, every size checked and a new projection computed, nothing changed."""
        new_patch = self.patch_size if patch_size is None else to_size(patch_size, "patch_size")
        new_patch = self._check_patch(new_patch, patch_stride)
        new_img = self.img_size if img_size is None else check_img_size(img_size)  # bounded before allocating
        plan = dict(
            patch_size=new_patch, img_size=new_img, grid_size=self._checked_grid(new_img, new_patch, "img_size")
        )
        if new_patch != self.patch_size:
            plan["proj"] = resized_patch_conv(self.proj, new_patch, new_patch)
        return plan

    def apply_input_size(self, plan: dict[str, Any]) -> None:
        """Take the sizes of a ``plan_input_size`` plan; cannot fail."""
        for name, value in plan.items():
            setattr(self, name, value)

    def set_input_size(self, img_size=None, patch_size=None, patch_stride=None) -> None:
        """Change the nominal input size and/or the patch size (projection kernel PI-resized, FlexiViT style).

        Every size is checked before anything changes, so a bad call leaves the module as it was.
        """
        self.apply_input_size(self.plan_input_size(img_size, patch_size, patch_stride))

    # -- forward -----------------------------------------------------------------------------------

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``InputSizeError`` for anything but a ``(B, in_chans, H, W)`` input of an accepted size."""
        h, w = check_image_batch(x, self.in_chans, next(self.backbone.parameters()).dtype)
        if self.strict_img_size and (h, w) != self.img_size:
            raise InputSizeError(
                f"this model takes {self.img_size[0]}x{self.img_size[1]} inputs, got {h}x{w}; call "
                f"model.set_input_size(img_size=({h}, {w})) or build it with dynamic_img_size=True "
                "to accept other sizes."
            )
        self._checked_grid((h, w), self.patch_size, "input")

    def _pad_features(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-pad a ``(B, F, fh, fw)`` feature map bottom/right up to whole patches."""
        pad_h, pad_w = -x.shape[-2] % self.patch_size[0], -x.shape[-1] % self.patch_size[1]
        return F.pad(x, [0, pad_w, 0, pad_h]) if pad_h or pad_w else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B, h, w, embed_dim)``."""
        if torch.jit.is_scripting():  # the shape and nominal-size rules of check_input, as TorchScript compiles them
            dtype = self.proj.weight.dtype  # the model's parameter dtype, as check_input reads it off the backbone
            check_scripted_image(x, self.in_chans, dtype, self.img_size, self.strict_img_size, (1, 1), (1, 1))
        elif not is_fx_symbolic_tracing():  # FX cannot trace the size checks; eager calls keep them
            self.check_input(x)
        x = self.backbone(x)  # (B, F, fh, fw)
        if torch.jit.is_scripting() and not self.dynamic_img_pad:
            if x.shape[-2] < self.patch_size[0] or x.shape[-1] < self.patch_size[1]:
                raise InputSizeError(
                    "input is too small: the backbone reduces it to a feature map smaller than one patch ("
                    + str(self.patch_size[0]) + "x" + str(self.patch_size[1]) + "); see model.min_input_size()."
                )  # fmt: skip
        if self.dynamic_img_pad:
            x = self._pad_features(x)
        x = self.proj(x)  # (B, C, h, w)
        return x.permute(0, 2, 3, 1)

    def extra_repr(self) -> str:
        return (
            f"img_size={self.img_size}, patch_size={self.patch_size}, grid_size={self.grid_size}, "
            f"feature_ratio={self.feature_ratio}, dynamic_img_pad={self.dynamic_img_pad}, "
            f"strict_img_size={self.strict_img_size}"
        )


# --------------------------------------------------------------------------------------------------
# The model


class HybridVisionTransformer(VisionTransformer):
    """``VisionTransformer`` whose patch embedding is a ResNet-V2 backbone plus a ``p x p`` projection.

    Takes every ``VisionTransformer`` keyword (timm's names) plus:

    - ``backbone_layers``: bottlenecks per ResNet stage, ``(3, 4, 9)`` (R50, stride 16),
      ``(2, 2, 2, 2)`` (R26, stride 32) or ``()`` (the stem alone, stride 4).
    - ``padding_same``: TensorFlow "same" padding in the backbone (timm's hybrids; default) or
      PyTorch's symmetric padding.

    ``patch_size`` (default 1) counts feature-map pixels. ``model_config`` rebuilds the model:
    ``HybridVisionTransformer(**model.model_config)``.
    """

    def __init__(
        self,
        backbone_layers: Sequence[int] = (3, 4, 9),
        padding_same: bool = True,
        patch_size: int | tuple[int, int] = 1,
        **kwargs: Any,
    ):
        if "embed_layer" in kwargs:
            raise RectViTError("HybridVisionTransformer builds its own embed_layer; pass backbone_layers instead.")
        layers = _block_counts(backbone_layers)
        embed_layer = partial(HybridEmbed, backbone_layers=layers, padding_same=padding_same)
        super().__init__(patch_size=patch_size, embed_layer=embed_layer, **kwargs)
        record_config(self, backbone_layers=layers, padding_same=bool(padding_same))

    @classmethod
    def table_grid(cls, config: dict[str, Any]) -> Size | None:
        """The position table grid of a model built from ``config``: backbone and patch arithmetic only."""
        c = with_defaults(cls, config)
        if (c["pos_embed"] or "none") == "none":
            return None
        feature = backbone_out_size(to_size(c["img_size"], "img_size"), c["backbone_layers"], c["padding_same"])
        patch = to_size(c["patch_size"], "patch_size")
        if c["dynamic_img_pad"]:
            return (math.ceil(feature[0] / patch[0]), math.ceil(feature[1] / patch[1]))
        return (feature[0] // patch[0], feature[1] // patch[1])

    @torch.no_grad()
    def init_weights(self) -> None:
        """The ViT's initialisation, plus He-normal backbone convolutions and unit GroupNorms (as timm)."""
        super().init_weights()
        for m in self.patch_embed.backbone.modules():
            if isinstance(m, StdConv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        super().set_grad_checkpointing(enable)
        if hasattr(self.patch_embed.backbone, "grad_checkpointing"):
            self.patch_embed.backbone.grad_checkpointing = enable

    def min_input_size(self) -> Size:
        """The smallest ``(H, W)`` input the backbone reduces to at least one patch."""
        return self.patch_embed.min_input_size()

    def _feature_reduction(self) -> int:
        return max(r * p for r, p in zip(self.patch_embed.feature_ratio, self.patch_embed.patch_size))

    def _cfg_fields(self) -> dict[str, Any]:
        stem = "stem.conv" if isinstance(self.patch_embed.backbone, ResNetV2Backbone) else "conv"
        return {**super()._cfg_fields(), "first_conv": f"patch_embed.backbone.{stem}"}


# --------------------------------------------------------------------------------------------------
# Registry: timm's names and model_args (img_size and num_classes from timm's default configs).


def _register(name: str, **config: Any) -> None:
    register_model(name, HybridVisionTransformer, **config)


_TINY = dict(backbone_layers=(), patch_size=8, embed_dim=192, depth=12, num_heads=3)
_SMALL_R26 = dict(backbone_layers=(2, 2, 2, 2), embed_dim=384, depth=12, num_heads=6)
_BASE_R50 = dict(backbone_layers=(3, 4, 9), embed_dim=768, depth=12, num_heads=12)

_register("vit_tiny_r_s16_p8_224", **_TINY)
_register("vit_tiny_r_s16_p8_384", img_size=384, **_TINY)
_register("vit_small_r26_s32_224", **_SMALL_R26)
_register("vit_small_r26_s32_384", img_size=384, **_SMALL_R26)
_register("vit_base_r50_s16_224", num_classes=0, **_BASE_R50)  # timm's default tag is the in21k backbone
_register("vit_base_r50_s16_384", img_size=384, **_BASE_R50)
