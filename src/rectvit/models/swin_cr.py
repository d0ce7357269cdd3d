"""Swin Transformer V2 CR (timm's ``SwinTransformerV2Cr``): rectangular windows, ``set_input_size``, any input size.

State dicts use timm's keys: ``patch_embed.{proj,norm}``, ``stages.i.downsample.{norm,reduction}``,
``stages.i.blocks.j.{attn.{qkv,proj,meta_mlp.fc1,meta_mlp.fc2,logit_scale},norm1,norm2,norm3,mlp}``,
``head.fc``. The position bias is a function of log-spaced relative coordinates (``meta_mlp``), so it
has no table to resample: a window change rebuilds the coordinates. Every window may be rectangular.

Data flow for a ``(B, in_chans, H, W)`` input (patch grid ``(h, w)``; stage ``i`` works on
``ceil(h / 2^i) x ceil(w / 2^i)``)::

    patch_embed (conv + LayerNorm)  -> (B, h, w, C)
    stages: [PatchMerging] + blocks -> (B, h_i, w_i, C * 2^i)   post-norm residual blocks, shifted windows
    forward_features                -> (B, C_last, h_last, w_last)  (NCHW, as timm)
    head (pool, fc)                 -> (B, num_classes)

A block shifts its tokens, zero-pads bottom/right to whole windows, attends within windows (masked
between regions the shift made neighbours), merges, crops and shifts back: timm's order, so outputs
match at every size. In dynamic mode the windows stay those of the nominal size and the masks are
built for each input's padded size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import InputSizeError, RectViTError
from ..grid import Size, to_size
from ..layers import DropPath, Mlp, PatchEmbed
from ..layers.patch_embed import is_fx_symbolic_tracing
from ._util import constructor_config, record_config, switch_property, take_indices
from .base import RectViTModel
from .registry import register_model
from .swin import ClassifierHead, _shifted_window_mask_like, shifted_window_mask, window_merge, window_partition

__all__ = ["SwinTransformerV2Cr"]

_NORM_EPS = 1e-5  # torch's LayerNorm default, as timm's V2 CR


torch.fx.wrap("_shifted_window_mask_like")  # FX wraps by name per module: the mask stays one opaque call


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def stage_windows(window_size: Any, num_stages: int) -> tuple[Size, ...]:
    """One ``(wh, ww)`` window per stage from an int, an ``(h, w)`` pair (all stages) or one value per stage."""
    if isinstance(window_size, (list, tuple)) and not (
        len(window_size) == 2 and not isinstance(window_size[0], (list, tuple))
    ):
        if len(window_size) != num_stages:
            raise InputSizeError(
                f"window_size: expected one window per stage ({num_stages}), got {len(window_size)}: {window_size!r}."
            )
        return tuple(to_size(w, "window_size") for w in window_size)
    return (to_size(window_size, "window_size"),) * num_stages


def stage_ratios(window_ratio: Any, num_stages: int) -> tuple[int, ...]:
    ratios = tuple(window_ratio) if isinstance(window_ratio, (list, tuple)) else (window_ratio,) * num_stages
    if len(ratios) != num_stages or not all(isinstance(r, int) and r > 0 for r in ratios):
        raise InputSizeError(
            f"window_ratio: expected a positive int or one per stage ({num_stages}), got {window_ratio!r}."
        )
    return ratios


def fit_window(feat: Size, window: Size, shifted: bool, always_partition: bool) -> tuple[Size, Size]:
    """The ``(window, shift)`` a block uses on a stage grid ``feat``: unless ``always_partition``, an axis not
    larger than the window takes the grid as its window and no shift; a shifted block shifts by half a window."""
    if not always_partition:
        window = (min(feat[0], window[0]), min(feat[1], window[1]))
    shift = tuple(w // 2 if shifted and (always_partition or f > w) else 0 for f, w in zip(feat, window))
    return window, (shift[0], shift[1])


def log_relative_coords(window: Size) -> torch.Tensor:
    """``(N*N, 2)``: ``sign(d) * ln(1 + |d|)`` of the ``(dy, dx)`` offset of every token pair in a window."""
    ys, xs = torch.meshgrid(torch.arange(window[0]), torch.arange(window[1]), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()]).float()  # (2, N)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).reshape(-1, 2)
    return torch.sign(rel) * torch.log1p(rel.abs())


class WindowMultiHeadAttention(nn.Module):
    """Cosine attention within windows, a learned per-head temperature, and a meta-MLP position bias."""

    def __init__(self, dim: int, num_heads: int, window_size: Size, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise RectViTError(f"stage width {dim} must be divisible by its num_heads {num_heads}.")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.meta_mlp = Mlp(2, 384, num_heads, act_layer=nn.ReLU)
        self.meta_mlp.drop1 = nn.Dropout(0.125)  # timm's meta-MLP drops its hidden features only
        self.logit_scale = nn.Parameter(torch.full((num_heads,), math.log(10.0)))
        self.set_window_size(window_size)

    def set_window_size(self, window_size: Size) -> None:
        self.window_size: Size = tuple(window_size)
        coords = log_relative_coords(self.window_size).to(self.logit_scale.device, self.logit_scale.dtype)
        self.register_buffer("relative_coordinates_log", coords, persistent=False)

    def position_bias(self) -> torch.Tensor:
        """``(heads, N, N)`` for the current window."""
        n = self.window_size[0] * self.window_size[1]
        return self.meta_mlp(self.relative_coordinates_log).transpose(0, 1).reshape(self.num_heads, n, n)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, nW, N, C) -> (B, nW, N, C)``; ``mask`` ``(nW, N, N)`` between shifted regions."""
        b, nw, n, c = x.shape
        qkv = self.qkv(x).reshape(b * nw, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B * nW, heads, N, head_dim)
        scale = self.logit_scale.clamp(max=math.log(100.0)).exp().reshape(self.num_heads, 1, 1)  # timm's max 1/0.01
        bias = self.position_bias()
        if mask is not None:
            bias = bias + mask.unsqueeze(1)  # (nW, heads, N, N)
        # A full (B * nW, heads, N, N) mask: torch's CPU attention is much slower with a broadcast one.
        bias = bias.expand(b, nw, -1, -1, -1).reshape(b * nw, self.num_heads, n, n)
        x = F.scaled_dot_product_attention(
            F.normalize(q, dim=-1) * scale,
            F.normalize(k, dim=-1),
            v,
            attn_mask=bias,
            scale=1.0,
            dropout_p=self.attn_drop if self.training else 0.0,
        )
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, nw, n, c)))


class SwinV2CrBlock(nn.Module):
    """Post-norm block: ``x + norm1(attn(x))``, ``x + norm2(mlp(x))``, then ``norm3`` (extra norm, optional)."""

    __jit_ignored_attributes__ = ["_masks"]  # the eager mask cache; a scripted block builds its masks per call

    def __init__(
        self,
        dim: int,
        num_heads: int,
        feat_size: Size,
        window_size: Size,
        shifted: bool,
        always_partition: bool = False,
        mlp_ratio: float = 4.0,
        init_values: float | None = 0.0,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        extra_norm: bool = False,
    ):
        super().__init__()
        self.shifted = shifted
        self.window_size, self.shift_size = fit_window(feat_size, window_size, shifted, always_partition)
        self.attn = WindowMultiHeadAttention(dim, num_heads, self.window_size, attn_drop, proj_drop)
        self.norm1 = nn.LayerNorm(dim, eps=_NORM_EPS)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop)
        self.norm2 = nn.LayerNorm(dim, eps=_NORM_EPS)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm3 = nn.LayerNorm(dim, eps=_NORM_EPS) if extra_norm else nn.Identity()
        if init_values is not None:
            with torch.no_grad():
                self.norm1.weight.fill_(init_values)
                self.norm2.weight.fill_(init_values)
        self._masks: dict[tuple, torch.Tensor] = {}

    def set_input_size(self, feat_size: Size, window_size: Size, always_partition: bool) -> None:
        self.window_size, self.shift_size = fit_window(feat_size, window_size, self.shifted, always_partition)
        self.attn.set_window_size(self.window_size)
        self._masks.clear()

    def _mask(self, size: Size, x: torch.Tensor) -> torch.Tensor | None:
        if self.shift_size[0] == 0 and self.shift_size[1] == 0:
            return None
        if torch.jit.is_scripting():  # the cache is a Python dict: TorchScript builds the mask per call
            return shifted_window_mask(size, self.window_size, self.shift_size, x.device, x.dtype)
        if is_fx_symbolic_tracing():  # sizes are symbolic: the mask is computed per input in the traced graph
            return _shifted_window_mask_like(x, self.window_size, self.shift_size)
        key = (size, self.window_size, self.shift_size, x.device, x.dtype)
        if key not in self._masks:
            self._masks[key] = shifted_window_mask(size, self.window_size, self.shift_size, x.device, x.dtype)
        return self._masks[key]

    def _window_attention(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C) -> (B, H, W, C)``: shift, pad, attend in windows, merge, crop, shift back (timm's order)."""
        b, h, w, c = x.shape
        sh, sw = self.shift_size
        if sh or sw:
            x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))
        wh, ww = self.window_size
        hp, wp = _ceil_div(h, wh) * wh, _ceil_div(w, ww) * ww
        x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
        windows = window_partition(x, self.window_size).view(b, -1, wh * ww, c)
        windows = self.attn(windows, self._mask((hp, wp), x))
        x = window_merge(windows.reshape(-1, wh * ww, c), self.window_size, (hp, wp))[:, :h, :w]
        if sh or sw:
            x = torch.roll(x, shifts=(sh, sw), dims=(1, 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.norm1(self._window_attention(x)))
        x = x + self.drop_path2(self.norm2(self.mlp(x)))
        return self.norm3(x)


class PatchMerging(nn.Module):
    """``(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C)``: 2x2 neighbours concatenated (zero-padded), norm, linear."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=_NORM_EPS)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        h, w = x.shape[1:3]
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))


class SwinV2CrStage(nn.Module):
    """``[PatchMerging]`` then blocks alternating plain / shifted windows; NHWC in and out."""

    def __init__(
        self,
        dim: int,
        depth: int,
        downscale: bool,
        num_heads: int,
        feat_size: Size,
        window_size: Size,
        drop_path: Sequence[float],
        extra_norm_period: int,
        extra_norm_stage: bool,
        **block: Any,
    ):
        super().__init__()
        self.downsample = PatchMerging(dim) if downscale else nn.Identity()
        dim = dim * 2 if downscale else dim
        self.grad_checkpointing = False

        def extra_norm(i: int) -> bool:
            return bool(extra_norm_period and (i + 1) % extra_norm_period == 0) or (extra_norm_stage and i + 1 == depth)

        self.blocks = nn.Sequential(
            *[
                SwinV2CrBlock(
                    dim,
                    num_heads,
                    feat_size,
                    window_size,
                    i % 2 == 1,
                    drop_path=drop_path[i],
                    extra_norm=extra_norm(i),
                    **block,
                )
                for i in range(depth)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if torch.jit.is_scripting():  # TorchScript has no checkpoint: a scripted stage never recomputes
            return self.blocks(x)
        for blk in self.blocks:
            x = (
                checkpoint(blk, x, use_reentrant=False)
                if self.grad_checkpointing and torch.is_grad_enabled()
                else blk(x)
            )
        return x


class SwinTransformerV2Cr(RectViTModel):
    """Swin V2 CR taking ``(B, in_chans, H, W)`` inputs; timm's constructor keywords and defaults.

    ``window_size``: an int or ``(h, w)`` for every stage, or one per stage; by default each stage's
    window is the patch grid divided by ``window_ratio`` (8), so a rectangular grid gets rectangular
    windows. ``dynamic_img_size=True`` (or ``strict_img_size=False``) accepts any size holding one patch,
    cropped to whole patches as the patch convolution takes them (``dynamic_img_pad``: zero-padded up
    instead). Plus rectvit's ``dynamic_img_pad``.
    """

    dynamic_img_size = switch_property("True: any size holding one patch, per forward; False: img_size only.")

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 4,
        window_size: Any = None,
        window_ratio: int | Sequence[int] = 8,
        always_partition: bool = False,
        strict_img_size: bool = True,
        dynamic_img_size: bool = False,
        dynamic_img_pad: bool = False,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        mlp_ratio: float = 4.0,
        init_values: float | None = 0.0,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        extra_norm_period: int = 0,
        extra_norm_stage: bool = False,
        global_pool: str = "avg",
    ):
        super().__init__()
        self.model_config = constructor_config(locals())
        if len(num_heads) != len(depths):
            raise RectViTError(f"num_heads {tuple(num_heads)} needs one entry per stage of depths {tuple(depths)}.")
        self.num_classes = num_classes
        self.in_chans = in_chans
        dynamic = dynamic_img_size or not strict_img_size
        self.always_partition = always_partition
        self.embed_dim = embed_dim
        self.num_features = self.head_hidden_size = int(embed_dim * 2 ** (len(depths) - 1))
        self.patch_embed = PatchEmbed(  # the LayerNorm is timm's patch_embed.norm
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            dynamic_img_pad=dynamic_img_pad,
            strict_img_size=not dynamic,
            norm_layer=nn.LayerNorm,
        )
        grid = self.patch_embed.grid_size
        if window_size is None:
            windows = tuple(
                (max(1, grid[0] // r), max(1, grid[1] // r)) for r in stage_ratios(window_ratio, len(depths))
            )
        else:
            windows = stage_windows(window_size, len(depths))
        self._ref_windows, self._ref_grid = windows, grid
        rates = [drop_path_rate * i / max(sum(depths) - 1, 1) for i in range(sum(depths))]  # stochastic depth
        dpr = [rates[sum(depths[:i]) : sum(depths[: i + 1])] for i in range(len(depths))]
        self.stages = nn.Sequential(
            *[
                SwinV2CrStage(
                    embed_dim * 2 ** max(i - 1, 0),
                    depth,
                    i > 0,
                    heads,
                    self._stage_grid(grid, i),
                    windows[i],
                    dpr[i],
                    extra_norm_period,
                    extra_norm_stage or i + 1 == len(depths),
                    always_partition=always_partition,
                    mlp_ratio=mlp_ratio,
                    init_values=init_values,
                    proj_drop=proj_drop_rate,
                    attn_drop=attn_drop_rate,
                )
                for i, (depth, heads) in enumerate(zip(depths, num_heads))
            ]
        )
        self.head = ClassifierHead(self.num_features, num_classes, global_pool, drop_rate)

    @staticmethod
    def _stage_grid(grid: Size, stage: int) -> Size:
        scale = 2**stage
        return (_ceil_div(grid[0], scale), _ceil_div(grid[1], scale))

    # ----------------------------------------------------------------------------------------------
    # Sizes

    def _scaled_windows(self, grid: Size) -> tuple[Size, ...]:
        return tuple(
            (max(1, w[0] * grid[0] // self._ref_grid[0]), max(1, w[1] * grid[1] // self._ref_grid[1]))
            for w in self._ref_windows
        )

    def set_input_size(self, img_size=None, window_size=None, window_ratio=None, always_partition=None) -> None:
        """New nominal size and/or windows, as timm: ``window_size`` (int, ``(h, w)`` or one per stage) wins over
        ``window_ratio`` (grid divisor); with neither, every stage's window scales with the patch grid."""
        n = len(self.stages)
        windows = stage_windows(window_size, n) if window_size is not None else None
        ratios = stage_ratios(window_ratio, n) if window_ratio is not None and windows is None else None
        if img_size is not None:
            self.patch_embed.set_input_size(img_size=img_size)
        grid = self.patch_embed.grid_size
        if windows is None and ratios is not None:
            windows = tuple((max(1, grid[0] // r), max(1, grid[1] // r)) for r in ratios)
        if windows is None:
            windows = self._scaled_windows(grid)
        else:
            self._ref_windows, self._ref_grid = windows, grid
        if always_partition is not None:
            self.always_partition = always_partition
        for i, stage in enumerate(self.stages):
            for blk in stage.blocks:
                blk.set_input_size(self._stage_grid(grid, i), windows[i], self.always_partition)
        record_config(
            self,
            img_size=self.patch_embed.img_size,
            window_size=[list(w) for w in windows],
            always_partition=self.always_partition,
        )

    # ----------------------------------------------------------------------------------------------
    # Forward

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B, C_last, h_last, w_last)``."""
        return self.stages(self.patch_embed(x)).permute(0, 3, 1, 2)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, C, h, w) -> (B, num_classes)`` (pooled ``(B, C)`` with ``pre_logits``)."""
        return self.head(x.permute(0, 2, 3, 1), pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ):
        """Stage outputs ``(B, C_i, h_i, w_i)`` on the input's own grid, as timm returns them (``"NHWC"``:
        ``(B, h_i, w_i, C_i)``, the stages' own layout)."""
        if output_fmt not in ("NCHW", "NHWC"):
            raise RectViTError(f"output_fmt must be 'NCHW' or 'NHWC' for Swin V2 CR, got {output_fmt!r}.")
        take = take_indices(len(self.stages), indices, "stage")
        x = self.patch_embed(x)
        stages = self.stages[: max(take) + 1] if stop_early else self.stages
        outs = []
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take:
                outs.append(x.permute(0, 3, 1, 2) if output_fmt == "NCHW" else x)
        if intermediates_only:
            return outs
        return x.permute(0, 3, 1, 2), outs

    # ----------------------------------------------------------------------------------------------
    # Training utilities

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        pool = self.head.pool_type if global_pool is None else global_pool
        device = self.patch_embed.proj.weight.device
        self.head = ClassifierHead(self.num_features, num_classes, pool, self.head.drop.p).to(device)
        self.head.train(self.training)
        self.num_classes = num_classes
        record_config(self, num_classes=num_classes, global_pool=pool)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def no_weight_decay(self) -> set[str]:
        """timm's (none: V2 CR's position bias is an MLP, weight-decayed like the rest)."""
        return set()

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's parameter groups (stem, then per stage or per block) for layer-wise learning rates."""
        blocks = [(r"^stages\.(\d+).downsample", (0,)), (r"^stages\.(\d+)\.\w+\.(\d+)", None)]
        return dict(stem=r"^patch_embed", blocks=r"^stages\.(\d+)" if coarse else blocks)

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last of ``indices`` (and the head, as timm; V2 CR has no final norm to
        prune). Returns the kept indices. A pruned model's ``model_config`` still describes the full model."""
        take = take_indices(len(self.stages), indices, "stage")
        last = max(take)
        prune_end = last < len(self.stages) - 1
        self.stages = self.stages[: last + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[last]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take

    def stage_grids(self, img_size=None) -> tuple[Size, ...]:
        """The token grid of every stage for ``img_size`` (default: the model's)."""
        grid = self.patch_embed.feat_size(to_size(self.img_size if img_size is None else img_size, "img_size"))
        return tuple(self._stage_grid(grid, i) for i in range(len(self.stages)))

    def default_out_indices(self) -> tuple[int, ...]:
        """``features_only`` returns every stage by default, as timm."""
        return tuple(range(len(self.stages)))

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """timm's feature levels: one per stage, ``{"num_chs", "reduction": patch * 2**i, "module": "stages.i"}``."""
        r = max(self.patch_size)
        return [
            {"num_chs": int(self.embed_dim * 2**i), "reduction": r * 2**i, "module": f"stages.{i}"}
            for i in range(len(self.stages))
        ]

    def _cfg_fields(self) -> dict[str, Any]:
        return {"first_conv": "patch_embed.proj", "classifier": "head.fc", "pool_size": self.stage_grids()[-1]}


# --------------------------------------------------------------------------------------------------
# Registry: timm's names and model_args.

_T = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
_S = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24))
_B = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))
_L = dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48))
_H = dict(embed_dim=352, depths=(2, 2, 18, 2), extra_norm_period=6)
_G = dict(embed_dim=512, depths=(2, 2, 42, 2), num_heads=(16, 32, 64, 128), extra_norm_period=6)


def _register(name: str, **config: Any) -> None:
    register_model(name, SwinTransformerV2Cr, **config)


for _size in (224, 384):
    _register(f"swinv2_cr_tiny_{_size}", img_size=_size, **_T)
    _register(f"swinv2_cr_small_{_size}", img_size=_size, **_S)
    _register(f"swinv2_cr_base_{_size}", img_size=_size, **_B)
    _register(f"swinv2_cr_large_{_size}", img_size=_size, **_L)
    _register(f"swinv2_cr_giant_{_size}", img_size=_size, **_G)
_register("swinv2_cr_huge_224", img_size=224, num_heads=(8, 16, 32, 64), **_H)
_register("swinv2_cr_huge_384", img_size=384, num_heads=(11, 22, 44, 88), **_H)
_register("swinv2_cr_tiny_ns_224", img_size=224, extra_norm_stage=True, **_T)
_register("swinv2_cr_small_ns_224", img_size=224, extra_norm_stage=True, **_S)
_register("swinv2_cr_small_ns_256", img_size=256, extra_norm_stage=True, **_S)
_register("swinv2_cr_base_ns_224", img_size=224, extra_norm_stage=True, **_B)
