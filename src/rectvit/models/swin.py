"""Swin Transformer v1 and v2 for rectangular inputs, with state dicts in timm's layout.

Shapes: images are ``(B, C, H, W)``; every feature map inside the model is NHWC ``(B, h, w, C)`` so
its grid travels with the tensor. A stage works on windows of ``(wh, ww)`` tokens; a stage whose
grid is smaller than its window along an axis uses the grid as its window on that axis (and does not
shift along it), as timm does. Windows are fixed by ``img_size`` (and ``set_input_size``); with
``dynamic_img_size=True`` any input size runs with those windows, each block padding its grid up to
a multiple of the window and cropping back, with attention masks built for the padded size and
cached per size.

v1 (``SwinTransformer``) keeps a learned relative-position-bias table per block, a
``(2wh-1) * (2ww-1), heads`` parameter; changing the window resamples it as a 2-D grid with
:func:`rectvit.resample.resample_relative_bias_table` (BEiT's geometric interpolation, as timm; or
bicubic, as the Swin paper, with ``bias_interpolation="bicubic"``). v2 (``SwinTransformerV2``)
computes its bias with an MLP over log-spaced relative coordinates, so a new window only rebuilds
the coordinate table.
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
from ..grid import Size, check_img_size, patch_grid, to_size
from ..layers import DropPath, Mlp, PatchEmbed
from ..layers.patch_embed import check_image_batch, check_scripted_image, is_fx_symbolic_tracing
from ..resample import RELATIVE_BIAS_INTERPOLATIONS, resample_relative_bias_table
from ._util import constructor_config, record_config, take_indices, with_defaults
from .base import RectViTModel
from .registry import register_model

__all__ = ["SwinTransformer", "SwinTransformerV2", "stage_grid_sizes", "stage_window_sizes"]

_ACT_LAYERS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}
_POOL_TYPES = ("", "avg", "max", "avgmax", "catavgmax")
_MASK_CACHE_SIZE = 8
# A window of N tokens allocates N x N relative-position indices, biases and masks; 16384 tokens (a
# 128x128 window) already needs 2 GiB for the index alone. Larger windows are refused up front.
_MAX_WINDOW_TOKENS = 16384


# --------------------------------------------------------------------------------------------------
# Size bookkeeping (pure functions)
# --------------------------------------------------------------------------------------------------


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def stage_grid_sizes(patch_grid_size: Size, num_stages: int) -> tuple[Size, ...]:
    """The token grid of every stage: stage ``i`` halves the patch grid ``i`` times, rounding up."""
    return tuple((_ceil_div(patch_grid_size[0], 2**i), _ceil_div(patch_grid_size[1], 2**i)) for i in range(num_stages))


def _stage_windows(window_size: Any, num_stages: int, name: str = "window_size") -> tuple[Size, ...]:
    """Expand a window spec to one ``(wh, ww)`` per stage.

    Accepts an int, an ``(wh, ww)`` pair (two ints are always one window), or a sequence with one
    int or pair per stage.
    """
    is_seq = isinstance(window_size, (list, tuple))
    if not is_seq or (len(window_size) == 2 and not isinstance(window_size[0], (list, tuple))):
        return (to_size(window_size, name),) * num_stages
    if len(window_size) != num_stages:
        raise InputSizeError(
            f"{name} needs one window per stage ({num_stages} stages), got {len(window_size)}: {window_size!r}; "
            f"pass a single int or (wh, ww) for all stages, or a list of {num_stages}."
        )
    return tuple(to_size(w, f"{name}[{i}]") for i, w in enumerate(window_size))


def _stage_values(value: Any, num_stages: int, name: str) -> tuple:
    """A scalar repeated per stage, or a per-stage sequence of the right length."""
    if isinstance(value, (list, tuple)):
        if len(value) != num_stages:
            raise InputSizeError(f"{name} needs {num_stages} values (one per stage), got {value!r}.")
        return tuple(value)
    return (value,) * num_stages


def stage_window_sizes(
    grid: Size,
    ref_windows: Sequence[Size],
    ref_grid: Size,
    window_size: Any = None,
    window_ratio: int | Sequence[int] | None = None,
) -> tuple[Size, ...]:
    """One target window ``(wh, ww)`` per stage for the patch grid ``grid`` (timm's ``calc_stage_window_sizes``).

    ``window_size`` (an int or ``(wh, ww)`` for all stages, or one per stage) wins; else
    ``window_ratio`` (a positive int, or one per stage) divides ``grid``; else every reference window
    scales with ``grid / ref_grid``, keeping its window-to-grid ratio. Windows are at least 1.
    """
    num_stages = len(ref_windows)
    if window_size is not None:
        return _stage_windows(window_size, num_stages)
    if window_ratio is not None:
        ratios = _stage_values(window_ratio, num_stages, "window_ratio")
        if any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in ratios):
            raise InputSizeError(f"window_ratio must hold positive ints, got {window_ratio!r}.")
        return tuple((max(1, grid[0] // r), max(1, grid[1] // r)) for r in ratios)
    return tuple((max(1, w[0] * grid[0] // ref_grid[0]), max(1, w[1] * grid[1] // ref_grid[1])) for w in ref_windows)


def _fit_window(grid: Size, window: Size, shifted: bool, always_partition: bool) -> tuple[Size, Size]:
    """The ``(window, shift)`` a block uses on ``grid``.

    Unless ``always_partition``, an axis whose grid is not larger than the window uses the grid as
    its window and is not shifted. A shifted block shifts by half its window.
    """
    if always_partition:
        win = window
        shift = (window[0] // 2, window[1] // 2) if shifted else (0, 0)
        return win, shift
    win = (min(grid[0], window[0]), min(grid[1], window[1]))
    shift = tuple(0 if (not shifted or g <= w) else w // 2 for g, w in zip(grid, win))
    return win, (shift[0], shift[1])


def _checked_patch_grid(img_size: Size, patch_size: Size, what: str) -> Size:
    """``patch_grid`` of ``img_size``, as an ``InputSizeError`` naming stage 0 when it holds no patch."""
    (h, w), (ph, pw) = img_size, patch_size
    if h < ph or w < pw:
        raise InputSizeError(
            f"{what} {h}x{w} is smaller than one patch ({ph}x{pw}): stage 0 (patch embedding) would have "
            f"an empty grid; use {'an img_size' if what == 'img_size' else 'an input'} of at least "
            f"{max(h, ph)}x{max(w, pw)}."
        )
    return patch_grid(img_size, patch_size)


def _check_window_tokens(grids: Sequence[Size], windows: Sequence[Size], always_partition: bool) -> None:
    """``InputSizeError`` for a window whose ``N x N`` tables would be absurdly large (before allocating)."""
    for i, (grid, window) in enumerate(zip(grids, windows)):
        win, _ = _fit_window(grid, window, False, always_partition)
        if win[0] * win[1] > _MAX_WINDOW_TOKENS:
            raise InputSizeError(
                f"stage {i} would use a {win[0]}x{win[1]} window ({win[0] * win[1]} tokens; its N x N position "
                f"index, bias and mask would not fit), on a {grid[0]}x{grid[1]} grid; windows hold at most "
                f"{_MAX_WINDOW_TOKENS} tokens: pass a smaller img_size, window_size or a window_ratio."
            )


# --------------------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------------------


def _pad_to_windows(x: torch.Tensor, window: Size) -> torch.Tensor:
    """Zero-pad ``(B, H, W, C)`` at the bottom/right to ``(B, Hp, Wp, C)``, multiples of ``window``."""
    _, h, w, _ = x.shape
    pad_h = _ceil_div(h, window[0]) * window[0] - h
    pad_w = _ceil_div(w, window[1]) * window[1] - w
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    return x


torch.fx.wrap("_pad_to_windows")  # FX: padding from the input's size, one opaque call


def window_partition(x: torch.Tensor, window: Size) -> torch.Tensor:
    """``(B, Hp, Wp, C)`` -> ``(B * nW, wh * ww, C)``, windows in row-major order within each image."""
    b, h, w, c = x.shape
    wh, ww = window
    x = x.view(b, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b * (h // wh) * (w // ww), wh * ww, c)


def window_merge(windows: torch.Tensor, window: Size, size: Size) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, wh * ww, C)`` -> ``(B, Hp, Wp, C)``."""
    wh, ww = window
    h, w = size
    c = windows.shape[-1]
    b = windows.shape[0] // ((h // wh) * (w // ww))  # explicit sizes: an empty batch has no -1 to infer
    x = windows.view(b, h // wh, w // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def _axis_regions(n: int, window: int, shift: int) -> torch.Tensor:
    """Region id (0, 1, 2) of each of ``n`` positions along one axis after a cyclic shift.

    Rolling by ``-shift`` brings the first ``shift`` positions to the end, so the last window mixes
    tokens that were not neighbours: ``[n - window, n - shift)`` and ``[n - shift, n)`` are regions of
    their own. Without a shift the whole axis is one region.
    """
    ids = torch.zeros(n, dtype=torch.long)
    if shift:
        ids[n - window : n - shift] = 1
        ids[n - shift :] = 2
    return ids


def shifted_window_mask(
    size: Size, window: Size, shift: Size, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Attention mask ``(nW, N, N)`` of a shifted block on a padded grid ``size`` (``N = wh * ww``).

    0 between tokens of the same region, -100 between tokens of different regions. TorchScript compiles it.
    """
    rows = _axis_regions(size[0], window[0], shift[0])
    cols = _axis_regions(size[1], window[1], shift[1])
    region = (rows[:, None] * 3 + cols[None, :]).to(device=device, dtype=dtype)  # (Hp, Wp)
    region = window_partition(region[None, :, :, None], window)[..., 0]  # (nW, N)
    differ = region[:, :, None] != region[:, None, :]
    return torch.zeros(differ.shape, device=device, dtype=dtype).masked_fill_(differ, -100.0)


def _shifted_window_mask_like(x: torch.Tensor, window: Size, shift: Size) -> torch.Tensor:
    """``shifted_window_mask`` for the padded ``(B, Hp, Wp, C)`` tensor ``x``: one opaque call in an FX graph."""
    return shifted_window_mask((x.shape[1], x.shape[2]), window, shift, x.device, x.dtype)


torch.fx.wrap("_shifted_window_mask_like")


def relative_position_index(window: Size) -> torch.Tensor:
    """``(N, N)`` index into a ``(2wh-1, 2ww-1)`` table, flattened row-major, of every token pair."""
    wh, ww = window
    ys, xs = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()  # (N,)
    dy = ys[:, None] - ys[None, :] + (wh - 1)  # 0 .. 2wh-2
    dx = xs[:, None] - xs[None, :] + (ww - 1)  # 0 .. 2ww-2
    return dy * (2 * ww - 1) + dx


def log_spaced_coords(window: Size, pretrained_window: Size = (0, 0)) -> torch.Tensor:
    """Swin v2's ``(1, 2wh-1, 2ww-1, 2)`` relative coordinates, log-spaced into about [-1, 1].

    Offsets are divided by ``pretrained_window - 1`` (or ``window - 1`` when no pretrained window is
    given; at least 1), scaled to [-8, 8] and mapped by ``sign(t) * log2(|t| + 1) / 3``.
    """
    norm = pretrained_window if pretrained_window[0] > 0 else window
    dy = torch.arange(-(window[0] - 1), window[0], dtype=torch.float32) / max(norm[0] - 1, 1)
    dx = torch.arange(-(window[1] - 1), window[1], dtype=torch.float32) / max(norm[1] - 1, 1)
    coords = torch.stack(torch.meshgrid(dy, dx, indexing="ij"), dim=-1) * 8  # (2wh-1, 2ww-1, 2)
    coords = torch.sign(coords) * torch.log2(coords.abs() + 1.0) / math.log2(8)
    return coords.unsqueeze(0)


def _window_softmax(logits: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Attention weights over windows: ``softmax(logits + bias + mask)``.

    ``logits (B*nW, heads, N, N)``, ``bias (heads, N, N)``, ``mask (nW, N, N)`` -> ``(B*nW, heads, N, N)``.
    """
    bw, heads, n, _ = logits.shape
    logits = logits + bias.unsqueeze(0)
    if mask is not None:
        nw = mask.shape[0]
        logits = (logits.view(bw // nw, nw, heads, n, n) + mask[None, :, None]).view(bw, heads, n, n)
    return logits.softmax(dim=-1)


def _merge_heads(attn: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``attn (B*nW, heads, N, N)`` applied to ``v (B*nW, heads, N, d)`` -> ``(B*nW, N, heads*d)``."""
    bw, heads, n, d = v.shape
    return (attn @ v).transpose(1, 2).reshape(bw, n, heads * d)


# --------------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------------


class WindowAttention(nn.Module):
    """Swin v1 window attention with a learned relative position bias table.

    ``relative_position_bias_table`` is ``((2wh-1) * (2ww-1), heads)``, timm's layout; its 2-D grid is
    ``(2wh-1, 2ww-1)``. Input and output ``(B * nW, wh * ww, C)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: Size,
        head_dim: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ):
        super().__init__()
        self.window_size = window_size
        self.num_heads = num_heads
        self.head_dim = head_dim or dim // num_heads
        self.scale = self.head_dim**-0.5
        wh, ww = window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * wh - 1) * (2 * ww - 1), num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)
        self.qkv = nn.Linear(dim, 3 * self.head_dim * num_heads, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(self.head_dim * num_heads, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def position_bias(self) -> torch.Tensor:
        """``(heads, N, N)`` bias of every token pair in a window."""
        n = self.window_size[0] * self.window_size[1]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, -1).permute(2, 0, 1)

    def window_tensors(self, window_size: Size, interpolation: str = "geometric") -> dict[str, torch.Tensor]:
        """The resampled table and new index for ``window_size`` (see ``resample_relative_bias_table``).

        Changes nothing: ``load_window`` installs them. Empty for the current window.
        """
        if window_size == self.window_size:
            return {}
        with torch.no_grad():
            table = resample_relative_bias_table(
                self.relative_position_bias_table, self.window_size, window_size, interpolation
            )
        index = relative_position_index(window_size).to(self.relative_position_index.device)
        return {"table": table, "index": index}

    def load_window(self, window_size: Size, tensors: dict[str, torch.Tensor]) -> None:
        """Install what ``window_tensors(window_size)`` returned."""
        if not tensors:
            return
        grad = self.relative_position_bias_table.requires_grad
        self.relative_position_bias_table = nn.Parameter(tensors["table"], requires_grad=grad)
        self.register_buffer("relative_position_index", tensors["index"], persistent=False)
        self.window_size = window_size

    def set_window_size(self, window_size: Size, interpolation: str = "geometric") -> None:
        """Resample the table to the new window and rebuild the index."""
        self.load_window(window_size, self.window_tensors(window_size, interpolation))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bw, n, _ = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        logits = (q * self.scale) @ k.transpose(-2, -1)
        x = _merge_heads(self.attn_drop(_window_softmax(logits, self.position_bias(), mask)), v)
        return self.proj_drop(self.proj(x))


class WindowAttentionV2(nn.Module):
    """Swin v2 window attention: cosine similarity times a learned per-head logit scale, plus a
    continuous position bias from ``cpb_mlp`` over log-spaced relative coordinates.

    Input and output ``(B * nW, wh * ww, C)``. timm's key names: ``logit_scale``, ``cpb_mlp``, ``qkv``
    (no bias), ``q_bias``, ``v_bias`` (the key bias is zero and not stored), ``proj``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: Size,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        pretrained_window_size: Size = (0, 0),
    ):
        super().__init__()
        self.window_size = window_size
        self.pretrained_window_size = pretrained_window_size
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.logit_scale = nn.Parameter(torch.full((num_heads, 1, 1), math.log(10.0)))
        self.cpb_mlp = nn.Sequential(
            nn.Linear(2, 512, bias=True), nn.ReLU(inplace=True), nn.Linear(512, num_heads, bias=False)
        )
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self._register(self._window_buffers(window_size))

    def _window_buffers(self, window_size: Size) -> dict[str, torch.Tensor]:
        weight = self.proj.weight
        coords = log_spaced_coords(window_size, self.pretrained_window_size).to(weight.device, weight.dtype)
        return {
            "relative_coords_table": coords,
            "relative_position_index": relative_position_index(window_size).to(weight.device),
        }

    def _register(self, buffers: dict[str, torch.Tensor]) -> None:
        for name, value in buffers.items():
            self.register_buffer(name, value, persistent=False)

    def window_tensors(self, window_size: Size, interpolation: str = "geometric") -> dict[str, torch.Tensor]:
        """New coordinate table and index for ``window_size`` (nothing learned depends on the window, so
        ``interpolation`` is unused). Changes nothing; empty for the current window."""
        return {} if window_size == self.window_size else self._window_buffers(window_size)

    def load_window(self, window_size: Size, tensors: dict[str, torch.Tensor]) -> None:
        """Install what ``window_tensors(window_size)`` returned."""
        if tensors:
            self._register(tensors)
            self.window_size = window_size

    def set_window_size(self, window_size: Size, interpolation: str = "geometric") -> None:
        """Rebuild the coordinate table and index."""
        self.load_window(window_size, self.window_tensors(window_size))

    def position_bias(self) -> torch.Tensor:
        """``(heads, N, N)`` bias ``16 * sigmoid(cpb_mlp(coords))`` of every token pair in a window."""
        n = self.window_size[0] * self.window_size[1]
        table = self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads)
        bias = table[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)
        return 16 * torch.sigmoid(bias)

    def _qkv(self, x: torch.Tensor) -> torch.Tensor:
        if self.q_bias is None:
            return self.qkv(x)
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        return F.linear(x, self.qkv.weight, bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bw, n, c = x.shape
        q, k, v = self._qkv(x).view(bw, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        logits = logits * torch.clamp(self.logit_scale, max=math.log(100.0)).exp()
        x = _merge_heads(self.attn_drop(_window_softmax(logits, self.position_bias(), mask)), v)
        return self.proj_drop(self.proj(x))


# --------------------------------------------------------------------------------------------------
# Blocks, merging, stages
# --------------------------------------------------------------------------------------------------

_BlockPlan = tuple[Size, Size, dict[str, torch.Tensor]]  # window, shift, new attention tensors


class SwinBlock(nn.Module):
    """One Swin block on ``(B, H, W, C)``: (shifted) window attention and an MLP, each residual.

    v1 normalises before each branch (``x + attn(norm1(x))``), v2 after (``x + norm1(attn(x))``; its
    norms start at zero, so every branch starts as identity, as in timm).
    """

    __jit_ignored_attributes__ = ["_masks"]  # the eager mask cache; a scripted block builds its masks per call

    def __init__(
        self,
        dim: int,
        num_heads: int,
        grid: Size,
        window_size: Size,
        shifted: bool,
        v2: bool,
        always_partition: bool = False,
        head_dim: int | None = None,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        act_layer: type[nn.Module] = nn.GELU,
        pretrained_window_size: Size = (0, 0),
    ):
        super().__init__()
        self.shifted = shifted
        self.post_norm = v2
        self.window_size, self.shift_size = _fit_window(grid, window_size, shifted, always_partition)
        self._masks: dict[tuple, torch.Tensor] = {}

        self.norm1 = nn.LayerNorm(dim)
        if v2:
            self.attn = WindowAttentionV2(
                dim, num_heads, self.window_size, qkv_bias, attn_drop, proj_drop, pretrained_window_size
            )
        else:
            self.attn = WindowAttention(dim, num_heads, self.window_size, head_dim, qkv_bias, attn_drop, proj_drop)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=proj_drop)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if v2:
            for norm in (self.norm1, self.norm2):
                nn.init.zeros_(norm.weight)
                nn.init.zeros_(norm.bias)

    def plan_input_size(
        self, grid: Size, window_size: Size, always_partition: bool, interpolation: str = "geometric"
    ) -> _BlockPlan:
        """The window, shift and attention tensors for a new stage grid and target window; changes nothing."""
        window, shift = _fit_window(grid, window_size, self.shifted, always_partition)
        return window, shift, self.attn.window_tensors(window, interpolation)

    def apply_input_size(self, plan: _BlockPlan) -> None:
        """Install a ``plan_input_size`` result; drop cached masks."""
        self.window_size, self.shift_size, tensors = plan
        self.attn.load_window(self.window_size, tensors)
        self._masks.clear()

    def attn_mask(self, padded: Size, ref: torch.Tensor) -> torch.Tensor | None:
        """The ``(nW, N, N)`` mask for a padded grid, cached per size, device and dtype; None if unshifted."""
        if self.shift_size[0] == 0 and self.shift_size[1] == 0:
            return None
        if torch.jit.is_scripting():  # the cache is a Python dict: TorchScript builds the mask per call
            return shifted_window_mask(padded, self.window_size, self.shift_size, ref.device, ref.dtype)
        if is_fx_symbolic_tracing():  # sizes are symbolic: computed per input in the traced graph, not cached
            return _shifted_window_mask_like(ref, self.window_size, self.shift_size)
        if torch.compiler.is_compiling():  # traced: built in the graph, so symbolic sizes stay free
            return shifted_window_mask(padded, self.window_size, self.shift_size, ref.device, ref.dtype)
        key = (padded, ref.device, ref.dtype)
        mask = self._masks.get(key)
        if mask is None:
            if len(self._masks) >= _MASK_CACHE_SIZE:
                self._masks.pop(next(iter(self._masks)))
            mask = shifted_window_mask(padded, self.window_size, self.shift_size, ref.device, ref.dtype)
            self._masks[key] = mask
        return mask

    def _window_attention(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` -> ``(B, H, W, C)``: shift, pad to windows, attend, merge, crop, unshift."""
        _, h, w, _ = x.shape
        sh, sw = self.shift_size
        if sh or sw:
            x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))
        x = _pad_to_windows(x, self.window_size)
        padded = (x.shape[1], x.shape[2])
        windows = self.attn(window_partition(x, self.window_size), mask=self.attn_mask(padded, x))
        x = window_merge(windows, self.window_size, padded)[:, :h, :w]
        if sh or sw:
            x = torch.roll(x, shifts=(sh, sw), dims=(1, 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.post_norm:
            x = x + self.drop_path1(self.norm1(self._window_attention(x)))
            return x + self.drop_path2(self.norm2(self.mlp(x)))
        x = x + self.drop_path1(self._window_attention(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """``(B, H, W, C)`` -> ``(B, ceil(H/2), ceil(W/2), out_dim)``: concatenate each 2x2 neighbourhood.

    Odd sides are zero-padded first. Channel order is timm's and the original Swin's:
    ``[(0,0), (1,0), (0,1), (1,1)]`` as ``(row, col)`` offsets. v1 normalises the 4C concatenation
    before the reduction, v2 normalises the reduced output.
    """

    def __init__(self, dim: int, out_dim: int, v2: bool):
        super().__init__()
        self.post_norm = v2
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)
        self.norm = nn.LayerNorm(out_dim if v2 else 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, _ = x.shape
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        if self.post_norm:
            return self.norm(self.reduction(x))
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """Optional patch merging, then ``depth`` blocks alternating plain and shifted windows."""

    __jit_unused_properties__ = ["window_size"]  # Python API; TorchScript would compile it

    def __init__(
        self,
        dim: int,
        out_dim: int,
        depth: int,
        grid: Size,
        downsample: bool,
        drop_path: list[float],
        **block_kwargs: Any,
    ):
        super().__init__()
        self.grad_checkpointing = False
        self.downsample = PatchMerging(dim, out_dim, block_kwargs["v2"]) if downsample else nn.Identity()
        self.blocks = nn.Sequential(
            *[
                SwinBlock(out_dim, grid=grid, shifted=i % 2 == 1, drop_path=drop_path[i], **block_kwargs)
                for i in range(depth)
            ]
        )

    @property
    def window_size(self) -> Size:
        """The window of the stage's blocks (they share it)."""
        return self.blocks[0].window_size if len(self.blocks) else (0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if torch.jit.is_scripting():  # TorchScript has no checkpoint: a scripted stage never recomputes
            return self.blocks(x)
        if not (self.grad_checkpointing and torch.is_grad_enabled()):
            return self.blocks(x)
        for block in self.blocks:  # activations recomputed in the backward pass
            x = checkpoint(block, x, use_reentrant=False)
        return x


# --------------------------------------------------------------------------------------------------
# Head
# --------------------------------------------------------------------------------------------------


class ClassifierHead(nn.Module):
    """Global pooling of NHWC features, dropout, and the ``fc`` classifier (timm's ``head.fc``)."""

    def __init__(self, in_features: int, num_classes: int, pool_type: str = "avg", drop_rate: float = 0.0):
        super().__init__()
        if pool_type not in _POOL_TYPES:
            raise RectViTError(f"global_pool must be one of {_POOL_TYPES}, got {pool_type!r}.")
        self.pool_type = pool_type
        self.drop = nn.Dropout(drop_rate)
        self.num_features = in_features * (2 if pool_type == "catavgmax" else 1)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` -> ``(B, C)`` (or ``(B, 2C)`` for catavgmax; unchanged for '')."""
        if self.pool_type == "":
            return x
        avg, mx = x.mean(dim=(1, 2)), x.amax(dim=(1, 2))
        return {"avg": avg, "max": mx, "avgmax": 0.5 * (avg + mx), "catavgmax": torch.cat([avg, mx], -1)}[
            self.pool_type
        ]

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.pool(x))
        return x if pre_logits else self.fc(x)


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


class _SwinBase(RectViTModel):
    """What Swin v1 and v2 share: the one constructor path, sizes, windows, input checks, forward paths
    and the head. Subclasses record their constructor keywords and pass the per-stage block options."""

    _v2 = False
    _no_weight_decay = ("relative_position_bias_table",)  # parameter-name parts, as timm
    _stem = r"^patch_embed"

    feature_fmt = "NHWC"  # features_only maps, as timm's Swin feature net

    def default_out_indices(self) -> tuple[int, ...]:
        return tuple(range(self.num_layers))

    def _cfg_fields(self) -> dict[str, Any]:
        return {"first_conv": "patch_embed.proj", "classifier": "head.fc", "pool_size": self.stage_grids()[-1]}

    @classmethod
    def bias_windows(cls, config: dict[str, Any]) -> dict[str, Size]:
        """``{relative_position_bias_table key: window}`` of a v1 model built from ``config``: size arithmetic."""
        if cls._v2:
            return {}
        c = with_defaults(cls, config)
        depths = c["depths"]
        grids = stage_grid_sizes(patch_grid(c["img_size"], c["patch_size"]), len(depths))
        windows = _stage_windows(c["window_size"], len(depths))
        out = {}
        for i, (depth, grid, window) in enumerate(zip(depths, grids, windows)):
            win, _ = _fit_window(grid, window, False, c["always_partition"])
            out.update({f"layers.{i}.blocks.{j}.attn.relative_position_bias_table": win for j in range(depth)})
        return out

    def __init__(self, config: dict[str, Any], block_kwargs: list[dict[str, Any]]):
        super().__init__()
        self.model_config = config
        depths = config["depths"]
        num_stages = len(depths)
        if len(config["num_heads"]) != num_stages:
            raise RectViTError(f"num_heads needs one value per stage ({num_stages}), got {tuple(config['num_heads'])}.")
        self.in_chans = config["in_chans"]
        self.num_classes = config["num_classes"]
        self.global_pool = config["global_pool"]
        self.always_partition = bool(config["always_partition"])
        self.output_fmt = "NHWC"
        self.num_layers = num_stages
        dims = self._stage_dims(config["embed_dim"], num_stages)
        self.embed_dim = dims[0]
        self.num_features = self.head_hidden_size = dims[-1]
        windows = _stage_windows(config["window_size"], num_stages)
        self.patch_embed = self._make_patch_embed(config, dims[0])
        self._ref_windows: tuple[Size, ...] = windows
        self._ref_grid: Size = self.grid_size
        _check_window_tokens(stage_grid_sizes(self.grid_size, num_stages), windows, self.always_partition)
        self.layers = self._make_stages(config, dims, windows, block_kwargs)
        self.feature_info = [
            dict(num_chs=d, reduction=max(self.patch_size) * 2**i, module=f"layers.{i}") for i, d in enumerate(dims)
        ]
        self.norm = nn.LayerNorm(self.num_features)
        self.head = ClassifierHead(self.num_features, self.num_classes, self.global_pool, config["drop_rate"])
        self._init_weights()

    @staticmethod
    def _stage_dims(embed_dim: int | Sequence[int], num_stages: int) -> list[int]:
        """Channels per stage: given, or ``embed_dim`` doubled at every stage."""
        if isinstance(embed_dim, (list, tuple)):
            return list(_stage_values(embed_dim, num_stages, "embed_dim"))
        return [embed_dim * 2**i for i in range(num_stages)]

    @staticmethod
    def _make_patch_embed(config: dict[str, Any], dim: int) -> PatchEmbed:
        img_size, patch_size = to_size(config["img_size"], "img_size"), to_size(config["patch_size"], "patch_size")
        _checked_patch_grid(img_size, patch_size, "img_size")
        dynamic = config["dynamic_img_size"] or not config["strict_img_size"]
        return PatchEmbed(
            img_size, patch_size, in_chans=config["in_chans"], embed_dim=dim, strict_img_size=not dynamic,
            norm_layer=nn.LayerNorm,
        )  # fmt: skip

    def _make_stages(
        self, config: dict[str, Any], dims: list[int], windows: tuple[Size, ...], block_kwargs: list[dict[str, Any]]
    ) -> nn.Sequential:
        depths, num_stages = config["depths"], len(dims)
        mlp_ratios = _stage_values(config["mlp_ratio"], num_stages, "mlp_ratio")
        total = sum(depths)
        rates = [config["drop_path_rate"] * i / max(total - 1, 1) for i in range(total)]  # stochastic depth decay
        grids = stage_grid_sizes(self.grid_size, num_stages)
        stages = []
        for i in range(num_stages):
            start = sum(depths[:i])
            stages.append(
                SwinStage(
                    dims[max(i - 1, 0)],
                    dims[i],
                    depths[i],
                    grids[i],
                    downsample=i > 0,
                    drop_path=rates[start : start + depths[i]],
                    num_heads=config["num_heads"][i],
                    window_size=windows[i],
                    v2=self._v2,
                    always_partition=self.always_partition,
                    mlp_ratio=mlp_ratios[i],
                    qkv_bias=config["qkv_bias"],
                    proj_drop=config["proj_drop_rate"],
                    attn_drop=config["attn_drop_rate"],
                    **block_kwargs[i],
                )
            )
        return nn.Sequential(*stages)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # ---- sizes ---------------------------------------------------------------------------------

    @property
    def dynamic_img_size(self) -> bool:
        """Whether any input size (a multiple of the patch size) is accepted; ``patch_embed.strict_img_size``
        is the switch (``set_input_size(strict_img_size=...)`` changes it)."""
        return not self.patch_embed.strict_img_size

    @dynamic_img_size.setter
    def dynamic_img_size(self, value: bool) -> None:
        self.patch_embed.strict_img_size = not value
        record_config(self, strict_img_size=not value, dynamic_img_size=bool(value))

    @property
    def bias_interpolation(self) -> str:
        """How v1 relative-position-bias tables follow a window change: ``"geometric"`` (timm's) or
        ``"bicubic"``; set at construction. v2 has no tables to resample."""
        return self.model_config.get("bias_interpolation", "geometric")

    @property
    def window_size(self) -> tuple[Size, ...]:
        """The window ``(wh, ww)`` each stage uses at ``img_size`` (clipped to grids smaller than it)."""
        return tuple(stage.window_size for stage in self.layers)

    def stage_grids(self, img_size=None) -> tuple[Size, ...]:
        """The token grid of every stage for ``img_size`` (default: the model's)."""
        size = self.img_size if img_size is None else to_size(img_size, "img_size")
        return stage_grid_sizes(_checked_patch_grid(size, self.patch_size, "img_size"), self.num_layers)

    def _describe_stages(self, img_size: Size) -> str:
        parts = [
            f"stage {i}: grid {g[0]}x{g[1]}, window {s.window_size[0]}x{s.window_size[1]}"
            for i, (g, s) in enumerate(zip(self.stage_grids(img_size), self.layers))
        ]
        return "; ".join(parts)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``InputSizeError`` for a batch this model cannot take, before any work is done.

        ``x`` must be ``(B, in_chans, H, W)`` with ``(H, W) == img_size`` (static) or, with
        ``dynamic_img_size``, a multiple of the patch size holding at least one patch. The forward
        paths call it; ``rectvit.forward_variable`` calls it for every input up front.
        """
        if is_fx_symbolic_tracing():  # FX cannot trace the size checks; eager calls keep them
            return
        h, w = check_image_batch(x, self.in_chans, self.patch_embed.proj.weight.dtype)
        _checked_patch_grid((h, w), self.patch_size, "input")
        ph, pw = self.patch_size
        if self.dynamic_img_size:
            if h % ph or w % pw:
                fit = (_ceil_div(h, ph) * ph, _ceil_div(w, pw) * pw)
                raise InputSizeError(
                    f"input {h}x{w} is not a multiple of the patch size {ph}x{pw}: stage 0 (patch embedding) "
                    f"would drop pixels; pad or resize it to {fit[0]}x{fit[1]} (or {h // ph * ph}x{w // pw * pw})."
                )
        elif (h, w) != self.img_size:
            ih, iw = self.img_size
            raise InputSizeError(
                f"input {h}x{w} does not match this static model's img_size {ih}x{iw} "
                f"({self._describe_stages(self.img_size)}); call model.set_input_size(img_size=({h}, {w})) "
                "first, or build the model with dynamic_img_size=True to take any size per forward."
            )

    def set_input_size(
        self,
        img_size=None,
        patch_size=None,
        window_size=None,
        window_ratio: int | Sequence[int] | None = None,
        always_partition: bool | None = None,
        strict_img_size: bool | None = None,
    ) -> None:
        """Change the nominal input size, patch size and/or windows, with timm's parameters and order.

        ``window_size``: an int or ``(wh, ww)`` for all stages, or one per stage. Without it (and
        without ``window_ratio``, which divides the patch grid to give each stage's window), each
        stage's window scales with the patch grid so its window-to-grid ratio is kept, as in timm:
        ``set_input_size(img_size=(448, 224))`` on a 224, window-7 model gives windows ``(14, 7)``; pass
        ``window_size=7`` to keep the windows. Explicit windows become the reference for later
        calls. A new ``patch_size`` PI-resizes the patch kernel. A v1 window change resamples every
        relative-position-bias table (geometrically, as timm, unless the model was built with
        ``bias_interpolation="bicubic"``); a v2 one rebuilds the coordinate tables. A stage whose grid
        is smaller than its window uses the grid. ``strict_img_size=False`` accepts any input size.

        Everything is checked and every new table computed before the model changes, so a call that
        fails (a bad size or window, a window too large to allocate) leaves the model as it was.
        """
        new_img = self.img_size if img_size is None else check_img_size(img_size)  # bounded before allocating
        new_patch = self.patch_size if patch_size is None else to_size(patch_size, "patch_size")
        grid = _checked_patch_grid(new_img, new_patch, "img_size")
        windows = stage_window_sizes(grid, self._ref_windows, self._ref_grid, window_size, window_ratio)
        partition = self.always_partition if always_partition is None else bool(always_partition)
        grids = stage_grid_sizes(grid, self.num_layers)
        _check_window_tokens(grids, windows, partition)
        plans = [
            [block.plan_input_size(g, win, partition, self.bias_interpolation) for block in stage.blocks]
            for stage, g, win in zip(self.layers, grids, windows)
        ]
        # Nothing has changed so far; the patch embedding changes all or nothing, then the blocks.
        self.patch_embed.set_input_size(img_size=new_img, patch_size=new_patch)
        if strict_img_size is not None:
            self.patch_embed.strict_img_size = bool(strict_img_size)
        for stage, stage_plans in zip(self.layers, plans):
            for block, plan in zip(stage.blocks, stage_plans):
                block.apply_input_size(plan)
        if window_size is not None or window_ratio is not None:
            self._ref_windows, self._ref_grid = windows, grid
        self.always_partition = partition
        for i, info in enumerate(self.feature_info):
            info["reduction"] = max(new_patch) * 2**i
        record_config(
            self,
            img_size=new_img,
            patch_size=new_patch,
            window_size=windows,
            always_partition=partition,
            strict_img_size=not self.dynamic_img_size,
            dynamic_img_size=self.dynamic_img_size,
        )

    # ---- timm's training conventions ----------------------------------------------------------

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of storing them."""
        for stage in self.layers:
            stage.grad_checkpointing = enable

    def get_classifier(self) -> nn.Module:
        """The classifier ``head.fc`` (``nn.Identity`` without classes)."""
        return self.head.fc

    def no_weight_decay(self) -> set[str]:
        """Names of parameters to train without weight decay (timm's: the position-bias parameters)."""
        return {n for n, _ in self.named_parameters() if any(k in n for k in self._no_weight_decay)}

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's parameter groups (stem, then per stage or per block) for layer-wise learning rates."""
        blocks = [(r"^layers\.(\d+).downsample", (0,)), (r"^layers\.(\d+)\.\w+\.(\d+)", None), (r"^norm", (99999,))]
        return dict(stem=self._stem, blocks=r"^layers\.(\d+)" if coarse else blocks)

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last of ``indices`` (and the final norm and head, as timm).

        Returns the kept indices. A pruned model's ``model_config`` still describes the full model.
        """
        take = take_indices(self.num_layers, indices, "stage")
        last = max(take)
        prune_end = last < self.num_layers - 1
        if prune_norm or prune_end:
            self.norm = nn.Identity()  # sized for the last stage, applied only after it
        self.layers = self.layers[: last + 1]
        self.num_layers = last + 1
        self._ref_windows = self._ref_windows[: last + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[last]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take

    # ---- forward -------------------------------------------------------------------------------

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier with one for ``num_classes`` (0: none), optionally a new pooling."""
        pool = self.global_pool if global_pool is None else global_pool
        head = ClassifierHead(self.num_features, num_classes, pool, self.head.drop.p)
        if isinstance(head.fc, nn.Linear):
            nn.init.trunc_normal_(head.fc.weight, std=0.02)
            nn.init.zeros_(head.fc.bias)
        weight = self.patch_embed.proj.weight
        self.head = head.to(weight.device, weight.dtype).train(self.training)
        self.head_hidden_size = self.head.num_features
        self.num_classes, self.global_pool = num_classes, pool
        record_config(self, num_classes=num_classes, global_pool=pool)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> normalised last-stage features ``(B, h, w, C')`` (NHWC, like timm)."""
        if torch.jit.is_scripting():  # check_input's rules, as TorchScript compiles them
            pe = self.patch_embed
            dtype = pe.proj.weight.dtype
            check_scripted_image(x, pe.in_chans, dtype, pe.img_size, pe.strict_img_size, pe.patch_size, pe.patch_size)
        else:
            self.check_input(x)
        return self.norm(self.layers(self.patch_embed(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, h, w, C')`` -> logits ``(B, num_classes)``, or pooled features if ``pre_logits``."""
        return self.head(x, pre_logits=pre_logits)

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
        """Per-stage feature maps, each ``(B, C_i, h_i, w_i)`` (NCHW) or ``(B, h_i, w_i, C_i)`` (NHWC).

        ``indices``: the last n stages (int), the given stages (sequence), or all (None). ``norm``
        applies the final norm to the last stage's map. Returns the maps, or ``(final features
        NHWC, maps)`` unless ``intermediates_only``.
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise RectViTError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}.")
        take = take_indices(self.num_layers, indices, "stage")
        self.check_input(x)
        last = self.num_layers - 1
        stages = self.layers[: max(take) + 1] if stop_early else self.layers
        x = self.patch_embed(x)
        maps = []
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take:
                y = self.norm(x) if norm and i == last else x
                maps.append(y.permute(0, 3, 1, 2).contiguous() if output_fmt == "NCHW" else y)
        if intermediates_only:
            return maps
        if len(stages) == self.num_layers:
            x = self.norm(x)
        return x, maps


class SwinTransformer(_SwinBase):
    """Swin Transformer v1 (Liu et al. 2021) for any ``(H, W)``; timm's constructor and state dict.

    ``img_size`` int or ``(H, W)``; ``window_size`` int, ``(wh, ww)`` or one per stage;
    ``strict_img_size=False`` or ``dynamic_img_size=True`` accept any input size per forward (a
    multiple of the patch size). Features are NHWC. ``bias_interpolation`` says how the
    relative-position-bias tables follow a window change (``set_input_size``, checkpoint loading):
    ``"geometric"`` (timm's and BEiT's numerics) or ``"bicubic"`` (the Swin paper's).
    """

    def __init__(
        self,
        img_size=224,
        patch_size=4,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        embed_dim: int | Sequence[int] = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        head_dim: int | Sequence[int | None] | None = None,
        window_size=7,
        always_partition: bool = False,
        strict_img_size: bool = True,
        dynamic_img_size: bool = False,
        mlp_ratio: float | Sequence[float] = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        bias_interpolation: str = "geometric",
    ):
        config = constructor_config(locals())
        if bias_interpolation not in RELATIVE_BIAS_INTERPOLATIONS:
            raise RectViTError(
                f"bias_interpolation must be one of {RELATIVE_BIAS_INTERPOLATIONS}, got {bias_interpolation!r}."
            )
        head_dims = _stage_values(head_dim, len(depths), "head_dim")
        super().__init__(config, [dict(head_dim=d) for d in head_dims])


class SwinTransformerV2(_SwinBase):
    """Swin Transformer v2 (Liu et al. 2022) for any ``(H, W)``; timm's constructor and state dict.

    Cosine window attention with a learned logit scale, a continuous position bias MLP over
    log-spaced coordinates (``pretrained_window_sizes`` sets their scale), and residual post-norm.
    """

    _v2 = True
    _no_weight_decay = ("cpb_mlp", "logit_scale")
    _stem = r"^absolute_pos_embed|patch_embed"

    def __init__(
        self,
        img_size=224,
        patch_size=4,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        embed_dim: int | Sequence[int] = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size=7,
        always_partition: bool = False,
        strict_img_size: bool = True,
        dynamic_img_size: bool = False,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        act_layer: str = "gelu",
        pretrained_window_sizes=(0, 0, 0, 0),
    ):
        config = constructor_config(locals())
        if act_layer not in _ACT_LAYERS:
            raise RectViTError(f"act_layer must be one of {sorted(_ACT_LAYERS)}, got {act_layer!r}.")
        pretrained = pretrained_window_sizes
        if isinstance(pretrained, (list, tuple)) and len(pretrained) > len(depths):
            pretrained = pretrained[: len(depths)]  # timm's default lists four stages; extra entries unused
        pretrained = _stage_values(pretrained, len(depths), "pretrained_window_sizes")
        pretrained = [(0, 0) if p in (0, None) else to_size(p, "pretrained_window_sizes") for p in pretrained]
        super().__init__(config, [dict(act_layer=_ACT_LAYERS[act_layer], pretrained_window_size=p) for p in pretrained])


# --------------------------------------------------------------------------------------------------
# Registry: timm's names and configs
# --------------------------------------------------------------------------------------------------

_T = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
_S = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24))
_B = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))

register_model("swin_tiny_patch4_window7_224", SwinTransformer, img_size=224, patch_size=4, window_size=7, **_T)
register_model("swin_small_patch4_window7_224", SwinTransformer, img_size=224, patch_size=4, window_size=7, **_S)
register_model("swin_base_patch4_window7_224", SwinTransformer, img_size=224, patch_size=4, window_size=7, **_B)
register_model("swin_base_patch4_window12_384", SwinTransformer, img_size=384, patch_size=4, window_size=12, **_B)
register_model("swinv2_tiny_window8_256", SwinTransformerV2, img_size=256, window_size=8, **_T)
register_model("swinv2_small_window8_256", SwinTransformerV2, img_size=256, window_size=8, **_S)
register_model("swinv2_tiny_window16_256", SwinTransformerV2, img_size=256, window_size=16, **_T)
