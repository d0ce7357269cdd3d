"""Shifted-window attention (Swin v1/v2, Swin v2 CR): window sizes on host ints, partition/merge and masks
as pure functions, one bounded mask cache, and window attention.

Feature maps are NHWC ``(B, H, W, C)``; a window holds ``N = wh * ww`` tokens. Window attention takes
``(num_windows, N, C)`` and a mask ``(nW, N, N)`` repeated over the leading windows (or one per window),
whatever image a window came from. docs/design.md ("Windows") says how the models use these parts.
"""

from __future__ import annotations

import copy
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputSizeError, RectViTError
from ..grid import Size, to_size
from ..resample import resample_relative_bias_table
from .mlp import Mlp

__all__ = [
    "MAX_WINDOW_TOKENS",
    "stage_grid_sizes",
    "stage_windows",
    "per_stage",
    "stage_window_sizes",
    "fit_window",
    "check_window_tokens",
    "window_partition",
    "window_merge",
    "shifted_window_mask",
    "WindowMaskCache",
    "WINDOW_MASKS",
    "window_mask",
    "partition_shifted",
    "merge_shifted",
    "relative_position_index",
    "log_spaced_coords",
    "log_relative_coords",
    "copy_module",
    "WindowAttention",
    "WindowAttentionV2",
    "WindowMultiHeadAttention",
]

# A window of N tokens allocates N x N relative-position indices, biases and masks; 16384 tokens (a
# 128x128 window) already needs 2 GiB for the index alone. Larger windows are refused up front.
MAX_WINDOW_TOKENS = 16384


# --------------------------------------------------------------------------------------------------
# Sizes: plain int arithmetic, done once per set_input_size


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def stage_grid_sizes(patch_grid_size: Size, num_stages: int) -> tuple[Size, ...]:
    """The token grid of every stage: stage ``i`` halves the patch grid ``i`` times, rounding up."""
    h, w = patch_grid_size
    return tuple((_ceil_div(h, 2**i), _ceil_div(w, 2**i)) for i in range(num_stages))


def per_stage(value: Any, num_stages: int, name: str) -> tuple:
    """A scalar repeated per stage, or a per-stage sequence of the right length."""
    if isinstance(value, (list, tuple)):
        if len(value) != num_stages:
            raise InputSizeError(f"{name} needs {num_stages} values (one per stage), got {value!r}.")
        return tuple(value)
    return (value,) * num_stages


def stage_windows(window_size: Any, num_stages: int, name: str = "window_size") -> tuple[Size, ...]:
    """One ``(wh, ww)`` per stage from an int, an ``(wh, ww)`` pair (two ints are always one window), or a
    sequence with one int or pair per stage."""
    is_seq = isinstance(window_size, (list, tuple))
    if not is_seq or (len(window_size) == 2 and not isinstance(window_size[0], (list, tuple))):
        return (to_size(window_size, name),) * num_stages
    if len(window_size) != num_stages:
        raise InputSizeError(
            f"{name} needs one window per stage ({num_stages} stages), got {len(window_size)}: {window_size!r}; "
            f"pass a single int or (wh, ww) for all stages, or a list of {num_stages}."
        )
    return tuple(to_size(w, f"{name}[{i}]") for i, w in enumerate(window_size))


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
        return stage_windows(window_size, num_stages)
    if window_ratio is not None:
        ratios = per_stage(window_ratio, num_stages, "window_ratio")
        if any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in ratios):
            raise InputSizeError(f"window_ratio must hold positive ints, got {window_ratio!r}.")
        return tuple((max(1, grid[0] // r), max(1, grid[1] // r)) for r in ratios)
    return tuple((max(1, w[0] * grid[0] // ref_grid[0]), max(1, w[1] * grid[1] // ref_grid[1])) for w in ref_windows)


def fit_window(grid: Size, window: Size, shifted: bool, always_partition: bool) -> tuple[Size, Size]:
    """The ``(window, shift)`` a block uses on a stage grid ``grid`` (timm's rule).

    Unless ``always_partition``, an axis whose grid is not larger than the window uses the grid as its
    window and is not shifted. A shifted block shifts by half its window.
    """
    if not always_partition:
        window = (min(grid[0], window[0]), min(grid[1], window[1]))
    shift = tuple(w // 2 if shifted and (always_partition or g > w) else 0 for g, w in zip(grid, window))
    return (window[0], window[1]), (shift[0], shift[1])


def check_window_tokens(grids: Sequence[Size], windows: Sequence[Size], always_partition: bool) -> None:
    """``InputSizeError`` for a window whose ``N x N`` tables would be absurdly large (before allocating)."""
    for i, (grid, window) in enumerate(zip(grids, windows)):
        (wh, ww), _ = fit_window(grid, window, False, always_partition)
        if wh * ww > MAX_WINDOW_TOKENS:
            raise InputSizeError(
                f"stage {i} would use a {wh}x{ww} window ({wh * ww} tokens; its N x N position index, bias and "
                f"mask would not fit), on a {grid[0]}x{grid[1]} grid; windows hold at most {MAX_WINDOW_TOKENS} "
                "tokens: pass a smaller img_size, window_size or a window_ratio."
            )


# --------------------------------------------------------------------------------------------------
# Partition, merge, masks (pure functions of the tensor and host ints)


def pad_to_windows(x: torch.Tensor, window: Size) -> torch.Tensor:
    """Zero-pad ``(B, H, W, C)`` at the bottom/right to ``(B, Hp, Wp, C)``, multiples of ``window``."""
    _, h, w, _ = x.shape
    pad_h = _ceil_div(h, window[0]) * window[0] - h
    pad_w = _ceil_div(w, window[1]) * window[1] - w
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    return x


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
    pos = torch.arange(n)
    if shift == 0:
        return torch.zeros_like(pos)
    return (pos >= n - window).long() + (pos >= n - shift).long()


def shifted_window_mask(
    size: Size, window: Size, shift: Size, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Attention mask ``(nW, N, N)`` of a shifted block on a padded grid ``size`` (``N = wh * ww``).

    0 between tokens of the same region, -100 between tokens of different regions (timm's values).
    """
    rows = _axis_regions(size[0], window[0], shift[0])
    cols = _axis_regions(size[1], window[1], shift[1])
    region = (rows[:, None] * 3 + cols[None, :]).to(device=device, dtype=dtype)  # (Hp, Wp)
    region = window_partition(region[None, :, :, None], window)[..., 0]  # (nW, N)
    differ = region[:, :, None] != region[:, None, :]
    return torch.zeros(differ.shape, device=device, dtype=dtype).masked_fill_(differ, -100.0)


class WindowMaskCache:
    """Shifted-window masks, one per ``(padded size, window, shift, device, dtype)``: a bounded LRU.

    A mask depends on nothing but its key, so an entry can never go stale and every model shares the
    cache. At most ``max_entries`` masks and ``max_bytes`` bytes are kept (least recently used go first;
    a mask larger than ``max_bytes`` is returned but not kept). Masks are built outside inference mode
    and need no grad, so they serve inference, training and autograd alike. Lookups and inserts hold a
    lock: a hit is moved to the end in place and an insert keeps whichever equal mask came first, so
    no thread's entry is lost. Masks are built outside the lock.
    """

    def __init__(self, max_entries: int = 64, max_bytes: int = 256 * 2**20):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, size: Size, window: Size, shift: Size, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (tuple(size), tuple(window), tuple(shift), device, dtype)
        with self._lock:
            mask = self._entries.get(key)
            if mask is not None:
                self._entries.move_to_end(key)
                return mask
        with torch.inference_mode(False), torch.no_grad():
            mask = shifted_window_mask(key[0], key[1], key[2], device, dtype)
        nbytes = mask.numel() * mask.element_size()
        if nbytes > self.max_bytes:
            return mask
        with self._lock:
            kept = self._entries.get(key)
            if kept is not None:
                return kept
            self._entries[key] = mask
            self._bytes += nbytes
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, old = self._entries.popitem(last=False)
                self._bytes -= old.numel() * old.element_size()
        return mask

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def keys(self) -> list[tuple]:
        """The keys held, least recently used first: ``(padded size, window, shift, device, dtype)``."""
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes


WINDOW_MASKS = WindowMaskCache()  # the one mask cache (docs/design.md, "Windows")


def window_mask(x: torch.Tensor, window: Size, shift: Size) -> torch.Tensor:
    """The ``(nW, N, N)`` mask of a block shifted by ``shift`` for the padded ``(B, Hp, Wp, C)`` tensor ``x``.

    Eager: from ``WINDOW_MASKS``. Compiled (``torch.compile``/``torch.export``) and scripted: built in the
    program from the tensor's sizes. An FX graph calls this function as one node, so it caches as eager.
    """
    size = (x.shape[1], x.shape[2])
    if not torch.jit.is_scripting():
        if not torch.compiler.is_compiling():
            return WINDOW_MASKS.get(size, window, shift, x.device, x.dtype)
    return shifted_window_mask(size, window, shift, x.device, x.dtype)


# FX: padding and masks depend on the input's size, so a traced graph calls them as one opaque node each
# (wrapped by name in this module, so every caller of partition_shifted gets them).
torch.fx.wrap("pad_to_windows")
torch.fx.wrap("window_mask")


def partition_shifted(x: torch.Tensor, window: Size, shift: Size) -> tuple[torch.Tensor, torch.Tensor | None, Size]:
    """``(B, H, W, C)`` -> windows ``(B * nW, N, C)``, their mask ``(nW, N, N)`` (None unshifted) and the padded
    size ``(Hp, Wp)``: cyclic shift by ``-shift``, zero-pad bottom/right to whole windows, partition (timm's order)."""
    if shift[0] or shift[1]:
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    x = pad_to_windows(x, window)
    mask: torch.Tensor | None = None
    if shift[0] or shift[1]:
        mask = window_mask(x, window, shift)
    return window_partition(x, window), mask, (x.shape[1], x.shape[2])


def merge_shifted(windows: torch.Tensor, window: Size, shift: Size, padded: Size, size: Size) -> torch.Tensor:
    """Inverse of :func:`partition_shifted`: ``(B * nW, N, C)`` -> ``(B, H, W, C)`` (merge, crop, shift back)."""
    x = window_merge(windows, window, padded)[:, : size[0], : size[1]]
    if shift[0] or shift[1]:
        x = torch.roll(x, shifts=(shift[0], shift[1]), dims=(1, 2))
    return x


# --------------------------------------------------------------------------------------------------
# Relative positions inside a window


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


def log_relative_coords(window: Size) -> torch.Tensor:
    """Swin v2 CR's ``(N*N, 2)``: ``sign(d) * ln(1 + |d|)`` of the ``(dy, dx)`` offset of every token pair."""
    ys, xs = torch.meshgrid(torch.arange(window[0]), torch.arange(window[1]), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()]).float()  # (2, N)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).reshape(-1, 2)
    return torch.sign(rel) * torch.log1p(rel.abs())


# --------------------------------------------------------------------------------------------------
# Window attention


def copy_module(module: nn.Module, **changes: Any) -> nn.Module:
    """A copy of ``module`` sharing its parameters, buffers, children and hooks, with registries of its own,
    and ``changes`` (attributes, parameters, buffers or children) set on the copy only.

    ``set_input_size`` builds its new windows this way: the modules a running forward holds never change.
    """
    new = copy.copy(module)
    for registry in ("_parameters", "_buffers", "_modules", "_non_persistent_buffers_set"):
        new.__dict__[registry] = copy.copy(module.__dict__[registry])
    for name, value in changes.items():
        setattr(new, name, value)
    return new


def _window_softmax(logits: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``softmax(logits + bias + mask)``: ``logits (B*nW, heads, N, N)``, ``bias (heads, N, N)``, ``mask (nW, N, N)``
    (repeated over the leading ``B``; ``nW = B*nW`` for one mask per window) -> ``(B*nW, heads, N, N)``."""
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


def _cosine_logits(q: torch.Tensor, k: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Swin v2's scaled cosine similarity: ``cos(q, k) * exp(min(logit_scale, log 100))`` (scale ``(heads, 1, 1)``)."""
    logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
    return logits * torch.clamp(logit_scale, max=math.log(100.0)).exp()


class _WindowedAttention(nn.Module):
    """What the three window attentions share: ``window_size`` and ``with_window``.

    A subclass sets ``window_size`` and gives ``window_tensors(window)``: the parameters and buffers that
    depend on the window.
    """

    def window_tensors(self, window: Size) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def with_window(self, window: Size) -> nn.Module:
        """This attention for ``window``: itself for its own window, else a copy with the window's tensors
        (learned ones resampled); this module never changes."""
        window = (int(window[0]), int(window[1]))
        if window == self.window_size:
            return self
        return copy_module(self, window_size=window, **self.window_tensors(window))


class WindowAttention(_WindowedAttention):
    """Swin v1 window attention with a learned relative position bias table.

    ``relative_position_bias_table`` is ``((2wh-1) * (2ww-1), heads)``, timm's layout; its 2-D grid is
    ``(2wh-1, 2ww-1)``. A new window resamples it with ``resample_relative_bias_table`` and
    ``bias_interpolation`` (``"geometric"``, timm's; or ``"bicubic"``). Input and output ``(B * nW, wh * ww, C)``.
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
        bias_interpolation: str = "geometric",
    ):
        super().__init__()
        self.window_size = (int(window_size[0]), int(window_size[1]))
        self.num_heads = num_heads
        self.head_dim = head_dim or dim // num_heads
        self.scale = self.head_dim**-0.5
        self.bias_interpolation = bias_interpolation
        wh, ww = self.window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * wh - 1) * (2 * ww - 1), num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(self.window_size), persistent=False)
        self.qkv = nn.Linear(dim, 3 * self.head_dim * num_heads, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(self.head_dim * num_heads, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def window_tensors(self, window: Size) -> dict[str, torch.Tensor]:
        table = self.relative_position_bias_table
        with torch.no_grad():
            new = resample_relative_bias_table(table, self.window_size, window, self.bias_interpolation)
        index = relative_position_index(window).to(self.relative_position_index.device)
        return {
            "relative_position_bias_table": nn.Parameter(new, requires_grad=table.requires_grad),
            "relative_position_index": index,
        }

    def position_bias(self) -> torch.Tensor:
        """``(heads, N, N)`` bias of every token pair in a window."""
        n = self.window_size[0] * self.window_size[1]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bw, n, _ = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        logits = (q * self.scale) @ k.transpose(-2, -1)
        x = _merge_heads(self.attn_drop(_window_softmax(logits, self.position_bias(), mask)), v)
        return self.proj_drop(self.proj(x))


class WindowAttentionV2(_WindowedAttention):
    """Swin v2 window attention: cosine similarity times a learned per-head logit scale, plus a
    continuous position bias ``16 * sigmoid(cpb_mlp(coords))`` over log-spaced relative coordinates.

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
        self.window_size = (int(window_size[0]), int(window_size[1]))
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
        for name, value in self.window_tensors(self.window_size).items():
            self.register_buffer(name, value, persistent=False)

    def window_tensors(self, window: Size) -> dict[str, torch.Tensor]:
        weight = self.proj.weight
        return {
            "relative_coords_table": log_spaced_coords(window, self.pretrained_window_size).to(
                weight.device, weight.dtype
            ),
            "relative_position_index": relative_position_index(window).to(weight.device),
        }

    def position_bias(self) -> torch.Tensor:
        """``(heads, N, N)`` bias ``16 * sigmoid(cpb_mlp(coords))`` of every token pair in a window."""
        n = self.window_size[0] * self.window_size[1]
        table = self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads)
        bias = table[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)
        return 16 * torch.sigmoid(bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bw, n, _ = x.shape
        q, k, v = self._qkv(x).view(bw, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        logits = _cosine_logits(q, k, self.logit_scale)
        x = _merge_heads(self.attn_drop(_window_softmax(logits, self.position_bias(), mask)), v)
        return self.proj_drop(self.proj(x))

    def _qkv(self, x: torch.Tensor) -> torch.Tensor:
        if self.q_bias is None:
            return self.qkv(x)
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        return F.linear(x, self.qkv.weight, bias)


class WindowMultiHeadAttention(_WindowedAttention):
    """Swin v2 CR window attention (timm's name): cosine similarity with a learned per-head logit scale,
    plus a bias ``meta_mlp(coords)`` over the ``ln``-spaced offset of every token pair (no index, no sigmoid).

    Input and output ``(B * nW, wh * ww, C)``. timm's key names: ``qkv`` (with bias), ``proj``,
    ``meta_mlp.fc1``/``fc2``, ``logit_scale`` ``(heads,)``.
    """

    def __init__(self, dim: int, num_heads: int, window_size: Size, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise RectViTError(f"stage width {dim} must be divisible by its num_heads {num_heads}.")
        self.window_size = (int(window_size[0]), int(window_size[1]))
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.meta_mlp = Mlp(2, 384, num_heads, act_layer=nn.ReLU)
        self.meta_mlp.drop1 = nn.Dropout(0.125)  # timm's meta-MLP drops its hidden features only
        self.logit_scale = nn.Parameter(torch.full((num_heads,), math.log(10.0)))
        for name, value in self.window_tensors(self.window_size).items():
            self.register_buffer(name, value, persistent=False)

    def window_tensors(self, window: Size) -> dict[str, torch.Tensor]:
        weight = self.proj.weight
        return {"relative_coordinates_log": log_relative_coords(window).to(weight.device, weight.dtype)}

    def position_bias(self) -> torch.Tensor:
        """``(heads, N, N)`` for the current window."""
        n = self.window_size[0] * self.window_size[1]
        return self.meta_mlp(self.relative_coordinates_log).transpose(0, 1).reshape(self.num_heads, n, n)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bw, n, _ = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        logits = _cosine_logits(q, k, self.logit_scale.view(self.num_heads, 1, 1))
        x = _merge_heads(self.attn_drop(_window_softmax(logits, self.position_bias(), mask)), v)
        return self.proj_drop(self.proj(x))
