"""Every resampling in rectvit: absolute position tables, patch kernels, relative-bias tables.

All functions are pure: they take tensors and sizes, compute in float32 (float64 for the
pseudo-inverse), return the input's dtype, and return the input object itself when nothing changes.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from .errors import InputSizeError, RectViTError
from .grid import Size, factorizations, to_size

__all__ = [
    "resample_grid",
    "resample_abs_pos_embed",
    "resample_patch_embed",
    "resample_relative_bias_table",
    "RELATIVE_BIAS_INTERPOLATIONS",
    "sincos_2d",
    "sincos_table",
    "interpolation_matrix",
    "grid_resize",
    "geometric_bias_resize",
    "resample_grid_separable",
    "INTERPOLATIONS",
    "TRACEABLE_INTERPOLATIONS",
]

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area")


def _check_mode(interpolation: str) -> None:
    if interpolation not in INTERPOLATIONS:
        raise RectViTError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}.")


def _interpolate_nchw(x: torch.Tensor, size: Size, interpolation: str, antialias: bool) -> torch.Tensor:
    # One memory layout for every input, so the result never depends on how the caller's tensor is strided.
    x = x.contiguous()
    out_size = [size[0], size[1]]
    if interpolation != "bilinear" and interpolation != "bicubic":
        return F.interpolate(x, size=out_size, mode=interpolation)
    if antialias and size[1] == 1 and x.shape[-2] != size[0]:
        # torch's antialiased kernel for contiguous NCHW is wrong when the output width is 1 and the
        # height changes (torch 2.13/2.14; its channels-last kernel is right): resize along the width.
        x = x.transpose(-1, -2).contiguous()
        out = F.interpolate(x, size=[1, size[0]], mode=interpolation, align_corners=False, antialias=True)
        return out.transpose(-1, -2)
    return F.interpolate(x, size=out_size, mode=interpolation, align_corners=False, antialias=antialias)


def grid_resize(table: torch.Tensor, new_size: Size, interpolation: str, antialias: bool) -> torch.Tensor:
    """``resample_grid`` without its argument checks (TorchScript compiles it): ``(B, h, w, C) -> (B, h', w', C)``."""
    if table.shape[1] == new_size[0] and table.shape[2] == new_size[1]:
        return table
    x = _interpolate_nchw(table.float().permute(0, 3, 1, 2), new_size, interpolation, antialias)
    return x.permute(0, 2, 3, 1).contiguous().to(table.dtype)


def resample_grid(
    table: torch.Tensor, new_size, interpolation: str = "bicubic", antialias: bool = True
) -> torch.Tensor:
    """Resample a grid table ``(B, h, w, C)`` to ``(B, h', w', C)``.

    ``interpolation`` is one of nearest, bilinear, bicubic, area; ``antialias`` applies to
    bilinear and bicubic when shrinking. The same size returns ``table`` itself.
    """
    _check_mode(interpolation)
    if not isinstance(table, torch.Tensor) or table.dim() != 4:
        shape = tuple(table.shape) if isinstance(table, torch.Tensor) else type(table).__name__
        raise InputSizeError(
            f"resample_grid takes a (1, h, w, C) table, got {shape}; "
            "for a flat (1, P + h*w, C) table call resample_abs_pos_embed(..., old_size=(h, w))."
        )
    return grid_resize(table, to_size(new_size, "new_size"), interpolation, antialias)


def resample_abs_pos_embed(
    flat: torch.Tensor,
    new_size,
    *,
    old_size,
    num_prefix_tokens: int = 1,
    interpolation: str = "bicubic",
    antialias: bool = True,
) -> torch.Tensor:
    """Resample a flat table ``(1, P + h*w, C)`` laid out on ``old_size=(h, w)`` to ``new_size``.

    ``old_size`` is required: a flat table does not know its grid. The ``P = num_prefix_tokens``
    prefix rows are copied untouched. Returns ``(1, P + h'*w', C)``.
    """
    if not isinstance(flat, torch.Tensor) or flat.dim() != 3 or flat.shape[0] != 1:
        shape = tuple(flat.shape) if isinstance(flat, torch.Tensor) else type(flat).__name__
        raise InputSizeError(f"resample_abs_pos_embed takes a flat (1, P + h*w, C) table, got {shape}.")
    old_size = to_size(old_size, "old_size")
    new_size = to_size(new_size, "new_size")
    if num_prefix_tokens < 0:
        raise InputSizeError(f"num_prefix_tokens must be >= 0, got {num_prefix_tokens}.")
    n = flat.shape[1] - num_prefix_tokens
    if n != old_size[0] * old_size[1]:
        cands = factorizations(n) if n > 0 else []
        raise InputSizeError(
            f"old_size {old_size[0]}x{old_size[1]} needs {old_size[0] * old_size[1]} position rows, "
            f"the table has {n} after {num_prefix_tokens} prefix rows (shape {tuple(flat.shape)}); "
            f"grids with {n} positions: {cands}."
        )
    if old_size == new_size:
        return flat
    prefix, grid = flat[:, :num_prefix_tokens], flat[:, num_prefix_tokens:]
    grid = grid.reshape(1, old_size[0], old_size[1], -1)
    grid = resample_grid(grid, new_size, interpolation, antialias).reshape(1, -1, flat.shape[-1])
    return torch.cat([prefix, grid], dim=1)


@lru_cache(maxsize=32)
def _pinv_resize_matrix(old: Size, new: Size, interpolation: str, antialias: bool) -> torch.Tensor:
    """``pinv(R.T)`` (new_n, old_n) for the linear map ``R`` that resizes an old kernel to new, in float64."""
    n_old = old[0] * old[1]
    basis = torch.eye(n_old, dtype=torch.float32).reshape(n_old, 1, old[0], old[1])
    resized = _interpolate_nchw(basis, new, interpolation, antialias)  # column i of R, per basis i
    r = resized.reshape(n_old, -1).T.double()  # (new_n, old_n)
    # Singular values below float32 resolution are noise of the float32 resize; drop them as a
    # float32 pseudo-inverse would (keeping them blows the kernel up when one axis shrinks).
    rtol = max(r.shape) * torch.finfo(torch.float32).eps
    return torch.linalg.pinv(r.T, rtol=rtol)


def resample_patch_embed(
    weight: torch.Tensor, new_size, interpolation: str = "bicubic", antialias: bool = True
) -> torch.Tensor:
    """Resize a patch kernel ``(O, I, ph, pw)`` to ``(O, I, ph', pw')`` (FlexiViT pseudo-inverse resize).

    The new kernel ``w'`` keeps token values for resized inputs: ``<x, w> ≈ <resize(x), w'>``.
    """
    _check_mode(interpolation)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise InputSizeError(f"resample_patch_embed takes a (O, I, ph, pw) kernel, got {shape}.")
    new_size = to_size(new_size, "new_size")
    old_size = (int(weight.shape[2]), int(weight.shape[3]))
    if old_size == new_size:
        return weight
    pinv = _pinv_resize_matrix(old_size, new_size, interpolation, antialias).to(weight.device)
    flat = weight.reshape(-1, old_size[0] * old_size[1]).double()
    out = (flat @ pinv.T).reshape(weight.shape[0], weight.shape[1], *new_size)
    return out.to(weight.dtype)


RELATIVE_BIAS_INTERPOLATIONS = ("geometric", "bicubic")


def _geometric_offsets(src: int, dst: int) -> torch.Tensor:
    """BEiT's source positions for one axis of ``src`` relative offsets resized to ``dst`` (timm's numerics).

    The offsets ``0, ±1, ±(1+q), ±(1+q+q²), ...`` grow geometrically; ``q`` in ``[1.01, 1.5]`` is found by
    bisection (to 1e-6) so that the outermost offset reaches ``dst // 2``. Returns ``(src,)`` float32.
    """
    half_src, half_dst = src // 2, dst // 2
    lo, hi = 1.01, 1.5
    q = (lo + hi) / 2.0
    while hi - lo > 1e-6:
        q = (lo + hi) / 2.0
        reach = (1.0 - q**half_src) / (1.0 - q)  # 1 + q + ... + q**(half_src - 1)
        if reach > half_dst:
            hi = q
        else:
            lo = q
    offsets: list[float] = []  # typed and without reversed(): TorchScript compiles it (BEiT's scripted path)
    cur = 1.0
    for i in range(half_src):
        offsets.append(cur)
        cur += q ** (i + 1)
    mirrored = [-offsets[half_src - 1 - i] for i in range(half_src)]
    return torch.tensor(mirrored + [0.0] + offsets, dtype=torch.float32)


def _linear_weights(points: torch.Tensor, dst: int) -> torch.Tensor:
    """``(dst, len(points))`` linear-interpolation weights at the integer offsets ``-(dst//2) .. dst//2``.

    ``points`` are sorted; targets outside their range take the nearest end value.
    """
    n = points.numel()
    half = dst // 2
    target = torch.arange(-half, half + 1, dtype=torch.float32)
    right = torch.searchsorted(points, target).clamp(max=n - 1)
    left = (right - 1).clamp(min=0)
    points, target = points.double(), target.double()
    to_left = (target - points[left]).clamp(min=0)
    to_right = (points[right] - target).clamp(min=0)
    span = to_left + to_right
    on_point = span == 0  # left == right: an end point (or beyond it)
    w_left = torch.where(on_point, torch.full_like(span, 0.5), to_right / span.where(~on_point, 1.0))
    w_right = 1.0 - w_left
    weights = torch.zeros(dst, n, dtype=torch.float64)
    rows = torch.arange(dst)
    weights.index_put_((rows, left), w_left, accumulate=True)
    weights.index_put_((rows, right), w_right, accumulate=True)
    return weights


def _geometric_resize(grid: torch.Tensor, new_grid: Size) -> torch.Tensor:
    """``(sy, sx, heads)`` -> ``(dy, dx, heads)`` by BEiT's geometric resampling (both axes, as timm)."""
    wy = _linear_weights(_geometric_offsets(grid.shape[0], new_grid[0]), new_grid[0])
    wx = _linear_weights(_geometric_offsets(grid.shape[1], new_grid[1]), new_grid[1])
    wy, wx = wy.to(grid.device, torch.float32), wx.to(grid.device, torch.float32)
    return torch.einsum("ys,sth,xt->yxh", wy, grid, wx)


def geometric_bias_resize(table: torch.Tensor, old_window: Size, new_window: Size) -> torch.Tensor:
    """``resample_relative_bias_table(table, old_window, new_window)`` (geometric) without its argument
    checks, for a model's forward (TorchScript compiles it): rows after the ``(2wh-1) * (2ww-1)`` grid rows
    (BEiT's class-token entries) are kept as they are."""
    if old_window[0] == new_window[0] and old_window[1] == new_window[1]:
        return table
    heads, sy, sx = table.shape[1], 2 * old_window[0] - 1, 2 * old_window[1] - 1
    grid = table[: sy * sx].float().reshape(sy, sx, heads)
    out = _geometric_resize(grid, (2 * new_window[0] - 1, 2 * new_window[1] - 1)).reshape(-1, heads)
    return torch.cat([out.to(table.dtype), table[sy * sx :]], dim=0)


def resample_relative_bias_table(
    table: torch.Tensor,
    old_window,
    new_window,
    interpolation: str = "geometric",
    *,
    num_extra_tokens: int = 0,
) -> torch.Tensor:
    """Resample a relative-position-bias table ``((2wh-1) * (2ww-1) + E, heads)`` to a new window.

    The table's first ``(2wh-1) * (2ww-1)`` rows are its 2-D grid ``(2wh-1, 2ww-1)`` of relative
    offsets (row-major); the last ``E = num_extra_tokens`` rows (BEiT's class-token entries) are kept
    as they are. Windows may be rectangular on both sides.

    ``interpolation``:

    - ``"geometric"`` (default): BEiT's and timm's ``resize_rel_pos_bias_table`` numerics (timm's
      torch path, without scipy). Each axis's source offsets are spaced geometrically so the outermost
      reaches the new half-width, and the new integer offsets are read off by linear interpolation.
      As in timm, both axes are remapped once the window changes at all (an axis of unchanged length
      is smoothed slightly).
    - ``"bicubic"``: the grid resized bicubically without antialiasing (the Swin paper's code).

    Returns ``((2wh'-1) * (2ww'-1) + E, heads)`` in the input's dtype; the same window returns ``table``.
    """
    if interpolation not in RELATIVE_BIAS_INTERPOLATIONS:
        raise RectViTError(
            f"interpolation must be one of {RELATIVE_BIAS_INTERPOLATIONS} for a relative-position-bias "
            f"table, got {interpolation!r}."
        )
    old_window = to_size(old_window, "old_window")
    new_window = to_size(new_window, "new_window")
    if isinstance(num_extra_tokens, bool) or not isinstance(num_extra_tokens, int) or num_extra_tokens < 0:
        raise InputSizeError(f"num_extra_tokens must be an int >= 0, got {num_extra_tokens!r}.")
    old_grid = (2 * old_window[0] - 1, 2 * old_window[1] - 1)
    rows = old_grid[0] * old_grid[1] + num_extra_tokens
    if not isinstance(table, torch.Tensor) or table.dim() != 2 or table.shape[0] != rows:
        shape = tuple(table.shape) if isinstance(table, torch.Tensor) else type(table).__name__
        extra = f" + {num_extra_tokens} extra" if num_extra_tokens else ""
        raise InputSizeError(
            f"a relative-position-bias table for window {old_window[0]}x{old_window[1]} has shape "
            f"({old_grid[0]}*{old_grid[1]}{extra}={rows}, heads), got {shape}; "
            "pass the window the table was trained with as old_window."
        )
    if old_window == new_window:
        return table
    if interpolation == "geometric":
        return geometric_bias_resize(table, old_window, new_window)
    new_grid = (2 * new_window[0] - 1, 2 * new_window[1] - 1)
    heads = table.shape[1]
    body, extra_rows = table[: rows - num_extra_tokens], table[rows - num_extra_tokens :]
    grid = body.reshape(1, old_grid[0], old_grid[1], heads)
    out = resample_grid(grid, new_grid, interpolation="bicubic", antialias=False).reshape(-1, heads)
    return torch.cat([out, extra_rows], dim=0) if num_extra_tokens else out


def sincos_2d(grid_size, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """A fixed 2-D sin-cos position table ``(1, h, w, dim)`` for any grid (MoCo v3 / big_vision layout).

    Channels are ``[sin(y), cos(y), sin(x), cos(x)]``, each ``dim // 4`` wide, with frequencies
    ``1 / temperature ** (k / (dim // 4))``; ``dim`` must be divisible by 4.
    """
    h, w = to_size(grid_size, "grid_size")
    if dim <= 0 or dim % 4:
        raise InputSizeError(
            f"sincos_2d needs dim divisible by 4, got {dim}; use an embed_dim like {4 * math.ceil(max(dim, 1) / 4)}."
        )
    return sincos_table(h, w, dim, temperature)


def sincos_table(
    h: int, w: int, dim: int, temperature: float = 10000.0, device: torch.device | None = None
) -> torch.Tensor:
    """``sincos_2d`` without argument checks, for (possibly symbolic) ``h``, ``w``: ``(1, h, w, dim)`` float32."""
    quarter = dim // 4
    omega = 1.0 / torch.pow(temperature, torch.arange(quarter, dtype=torch.float32, device=device) / quarter)
    y = torch.arange(h, dtype=torch.float32, device=device)[:, None, None] * omega  # (h, 1, q)
    x = torch.arange(w, dtype=torch.float32, device=device)[None, :, None] * omega  # (1, w, q)
    y, x = y.expand(h, w, quarter), x.expand(h, w, quarter)
    table = torch.cat([y.sin(), y.cos(), x.sin(), x.cos()], dim=-1)
    return table.unsqueeze(0)


# --------------------------------------------------------------------------------------------------
# Traceable resampling: the same numerics as ``resample_grid`` as plain tensor math on (possibly
# symbolic) sizes, so torch.compile, torch.export and ONNX keep every size free.

TRACEABLE_INTERPOLATIONS = ("bilinear", "bicubic")


def _cubic_aa(x: torch.Tensor) -> torch.Tensor:
    """The cubic kernel of torch's (and PIL's) antialiased resize, ``a = -0.5``."""
    a = -0.5
    x = x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def _cubic_near(x: torch.Tensor, a: float) -> torch.Tensor:
    return ((a + 2) * x - (a + 3)) * x * x + 1


def _cubic_far(x: torch.Tensor, a: float) -> torch.Tensor:
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a


def _cubic_taps(t: torch.Tensor) -> list[torch.Tensor]:
    """Weights of taps ``floor - 1 .. floor + 2`` of torch's plain bicubic (``a = -0.75``) at fraction ``t``."""
    a = -0.75
    return [_cubic_far(t + 1, a), _cubic_near(t, a), _cubic_near(1 - t, a), _cubic_far(2 - t, a)]


def interpolation_matrix(
    in_size: int,
    out_size: int,
    interpolation: str = "bicubic",
    antialias: bool = True,
    device: torch.device | None = None,
) -> torch.Tensor:
    """The ``(out_size, in_size)`` float32 matrix ``R`` of a 1-D resize, as ``F.interpolate`` computes it.

    ``align_corners=False``; ``antialias`` as in ``F.interpolate`` (torch's antialiased kernels, used
    for up- and downsampling alike). Sizes may be symbolic (``torch.compile``/``torch.export``): the
    matrix is built from ``arange`` and elementwise ops only, with no Python value taken from a tensor.
    TorchScript compiles it.
    """
    if interpolation != "bilinear" and interpolation != "bicubic":
        raise RectViTError(
            "traceable resampling supports bilinear and bicubic, got '" + interpolation + "'; "
            "use resample_grid for other modes."
        )
    i = torch.arange(out_size, device=device, dtype=torch.float32)
    j = torch.arange(in_size, device=device, dtype=torch.float32)
    # in/out as tensors: one element per index, summed (keeps symbolic sizes symbolic, exports to ONNX)
    n_in = torch.ones_like(j).sum()
    scale = n_in / torch.ones_like(i).sum()
    if antialias:
        half = 2.0 if interpolation == "bicubic" else 1.0
        stretch = scale.clamp(min=1.0)
        support = half * stretch
        center = (scale * (i + 0.5))[:, None]
        lo = torch.floor(center - support + 0.5).clamp(min=0)
        hi = torch.minimum(torch.floor(center + support + 0.5), n_in)
        x = (j[None, :] - center + 0.5) / stretch
        w = _cubic_aa(x) if interpolation == "bicubic" else (1 - x.abs()).clamp(min=0)
        w = torch.where((j[None, :] >= lo) & (j[None, :] < hi), w, torch.zeros_like(w))
        return w / w.sum(dim=1, keepdim=True)
    src = scale * (i + 0.5) - 0.5
    if interpolation == "bilinear":
        src = src.clamp(min=0)
    f = torch.floor(src)
    t = src - f
    if interpolation == "bicubic":
        offsets, weights = [-1, 0, 1, 2], _cubic_taps(t)
    else:
        offsets, weights = [0, 1], [1 - t, t]
    out = torch.zeros_like(i[:, None] + j[None, :])
    for k, wk in zip(offsets, weights):
        idx = torch.minimum((f + k).clamp(min=0), n_in - 1)
        out = out + torch.where(idx[:, None] == j[None, :], wk[:, None], torch.zeros_like(out))
    return out


def resample_grid_separable(
    table: torch.Tensor, new_size: Size, interpolation: str = "bicubic", antialias: bool = True
) -> torch.Tensor:
    """``resample_grid`` as ``R_h · table · R_wᵀ``: ``(B, h, w, C) -> (B, h', w', C)`` for bilinear/bicubic.

    Equal to ``resample_grid`` up to float rounding (≤ 1e-5 on unit-scale tables) and traceable with
    symbolic ``new_size``: the program ``torch.compile``/``torch.export``/ONNX make of it holds for
    every size, and TorchScript compiles it. Unlike ``resample_grid`` it always computes (the same size
    gives an equal copy).
    """
    h, w = new_size
    rh = interpolation_matrix(table.shape[1], h, interpolation, antialias, device=table.device)
    rw = interpolation_matrix(table.shape[2], w, interpolation, antialias, device=table.device)
    out = torch.einsum("ih,bhwc,jw->bijc", rh, table.float(), rw)
    return out.to(table.dtype)
