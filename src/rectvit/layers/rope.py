"""2-D rotary position embedding (RoPE) for any ``(h, w)`` patch grid: axial, mixed and DINOv3's scheme.

RoPE has no table to resample: each patch token's query and key are rotated by angles that are
linear in the token's coordinates, so ``q_i . k_j`` depends only on ``coord_i - coord_j``. What a
model sees when the grid changes is therefore decided by how coordinates are made from the grid:

``coords="index"``     token ``(i, j)`` sits at ``(i + offset, j + offset)``
``coords="centered"``  token ``(i, j)`` sits at ``2 * (i + 0.5 + offset) / d_h - 1`` (DINOv3), in [-1, 1]

``normalize`` chooses the denominators ``d`` (and, for index coordinates, rescales to ``ref_grid``):

``None``        index coordinates as they are: a larger grid reaches further out (rope-ViT)
``"separate"``  each axis by its own length: both axes always span the same range, so the aspect
                ratio is NOT encoded (an 8x32 grid looks like a squeezed 16x16 one); DINOv3's default
                and EVA-02's ``ref_feat_shape`` scheme
``"max"``       both axes by the longer side: equal spacing on both axes, the aspect ratio is encoded
``"min"``       both axes by the shorter side: the same, with the shorter side spanning the unit range

Frequencies: ``mode="axial"`` gives each axis half of every head's rotation pairs, at frequencies
``freq_scale / temperature ** (k / n)`` (``n = head_dim // 4``; EVA and rope-ViT ``freq_scale=1``,
DINOv3 ``2*pi``); ``mode="mixed"`` (rope-ViT RoPE-Mixed) learns per-block, per-head 2-D frequency
vectors ``freqs`` ``(2, depth, heads, head_dim // 2)`` (timm's ``rope.freqs``), so one pair may
rotate along a diagonal.

sin/cos are computed for each grid on the fly and cached per ``(grid, device, dtype)`` (and the
frequency parameter's version in mixed mode); the cache is skipped under ``torch.compile`` and under
TorchScript, whose programs compute them per call with ``rope_sin_cos`` (the same numbers, uncached).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import RectViTError
from ..grid import Size, to_size

__all__ = [
    "RotaryEmbedding2d",
    "apply_rope",
    "rope_coords",
    "rope_angles",
    "rope_sin_cos",
    "ROPE_MODES",
    "ROPE_COORDS",
    "ROPE_NORMALIZE",
]

ROPE_MODES = ("axial", "mixed")
ROPE_COORDS = ("index", "centered")
ROPE_NORMALIZE = (None, "separate", "max", "min")


def rope_coords(
    grid: Size,
    coords: str = "index",
    normalize: str | None = None,
    ref_grid: Size | None = None,
    grid_offset: float = 0.0,
    grid_indexing: str = "ij",
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``(h*w, 2)`` coordinates of the tokens of an ``(h, w)`` grid, in row-major token order.

    Channel 0 is the row (height) coordinate and channel 1 the column for ``grid_indexing="ij"``;
    ``"xy"`` swaps the two channels (rope-ViT's layout). See the module docstring for the schemes.
    TorchScript compiles it.
    """
    if coords == "centered" and normalize is None:
        raise RectViTError("centered RoPE coordinates need a normalize scheme: 'separate', 'max' or 'min'.")
    if coords == "index" and normalize is not None and ref_grid is None:
        raise RectViTError("normalized index coordinates are rescaled to a reference grid; pass ref_grid=(h, w).")
    ij = grid_indexing == "ij"
    sizes = [grid[0], grid[1]] if ij else [grid[1], grid[0]]
    refs: list[int] | None = None
    if ref_grid is not None:
        refs = [ref_grid[0], ref_grid[1]] if ij else [ref_grid[1], ref_grid[0]]
    denom: list[float] = []  # empty: index coordinates as they are
    mult: list[int] | None = None
    if normalize is not None:
        if normalize == "separate":
            denom, mult = [float(sizes[0]), float(sizes[1])], refs
        else:
            d = max(sizes) if normalize == "max" else min(sizes)
            denom = [float(d), float(d)]
            if refs is not None:
                r = max(refs) if normalize == "max" else min(refs)
                mult = [r, r]
    axes: list[torch.Tensor] = []
    for k in range(2):
        if coords == "centered":
            axes.append((torch.arange(0.5, sizes[k], device=device, dtype=torch.float32) + grid_offset) / denom[k])
        else:
            a = torch.arange(sizes[k], device=device, dtype=torch.int64).to(torch.float32) + grid_offset
            if mult is not None:
                a = a / denom[k] * mult[k]
            axes.append(a)
    mesh = torch.meshgrid(axes, indexing=grid_indexing)  # spatial layout (h, w) either way
    out = torch.stack(mesh, dim=-1).to(dtype)
    if coords == "centered":
        out = 2.0 * out - 1.0
    return out.reshape(-1, 2)


def _layout(angles: torch.Tensor, rotate_half: bool) -> torch.Tensor:
    """``(..., D/2)`` per-pair values -> ``(..., D)``: ``[a0, a0, a1, a1, ..]``, or ``[a0, a1, .., a0, a1, ..]``
    with ``rotate_half``."""
    return torch.cat([angles, angles], dim=-1) if rotate_half else angles.repeat_interleave(2, dim=-1)


def apply_rope(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor, rotate_half: bool = False) -> torch.Tensor:
    """Rotate ``x`` ``(..., N, D)`` by ``sin``/``cos`` ``(..., N, D)`` (broadcast); the result has ``x``'s dtype.

    Pairs are ``(x0, x1), (x2, x3), ..`` (interleaved) or ``(x_k, x_{k + D/2})`` with ``rotate_half``.
    """
    if rotate_half:
        x1, x2 = x.chunk(2, dim=-1)
        turned = torch.cat([-x2, x1], dim=-1)
    else:
        turned = torch.stack([-x[..., 1::2], x[..., ::2]], dim=-1).reshape(x.shape)
    return (x * cos + turned * sin).to(x.dtype)


def _exponents(head_dim: int, device: torch.device | None) -> torch.Tensor:
    n = head_dim // 4
    return torch.arange(n, device=device, dtype=torch.int64).to(torch.float32) / n


def _axial_freqs(head_dim: int, temperature: float, freq_scale: float, device: torch.device | None) -> torch.Tensor:
    inv = 1.0 / (temperature ** _exponents(head_dim, device))
    return inv if freq_scale == 1.0 else freq_scale * inv


def rope_angles(
    coords: torch.Tensor,
    head_dim: int,
    mode: str,
    temperature: float,
    freq_scale: float,
    freqs: torch.Tensor | None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Rotation angles per pair for ``(h*w, 2)`` token ``coords`` (in the result's dtype):
    ``(h*w, head_dim // 2)`` (axial) or ``(depth, heads, h*w, head_dim // 2)`` (mixed, from ``freqs``)."""
    dtype = coords.dtype
    if mode == "axial":  # [axis-0 frequencies, axis-1 frequencies]
        if freq_scale == 1.0:
            return (coords[:, :, None] * _axial_freqs(head_dim, temperature, freq_scale, device).to(dtype)).flatten(1)
        periods = temperature ** _exponents(head_dim, device).to(dtype)  # DINOv3's rounding order
        return (freq_scale * coords[:, :, None] / periods).flatten(1)
    if freqs is None:
        raise RectViTError("mixed RoPE needs its learned frequencies (freqs), got None.")
    f = freqs.to(dtype)
    return coords[:, 0, None] * f[0].unsqueeze(-2) + coords[:, 1, None] * f[1].unsqueeze(-2)


def rope_sin_cos(
    grid: Size,
    head_dim: int,
    mode: str,
    temperature: float,
    freq_scale: float,
    coords: str,
    normalize: str | None,
    ref_grid: Size | None,
    grid_offset: float,
    grid_indexing: str,
    rotate_half: bool,
    freqs: torch.Tensor | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``RotaryEmbedding2d(...)(grid, device, dtype)`` as one uncached function of its settings (TorchScript
    compiles it; FX traces call it as one opaque call). ``device``/``dtype`` default as the module's."""
    if freqs is not None and device is None:
        device = freqs.device
    if dtype is None:
        dtype = torch.float64 if freqs is not None and freqs.dtype == torch.float64 else torch.float32
    c = rope_coords(grid, coords, normalize, ref_grid, grid_offset, grid_indexing, device).to(dtype)
    a = rope_angles(c, head_dim, mode, temperature, freq_scale, freqs, device)
    return _layout(a.sin(), rotate_half), _layout(a.cos(), rotate_half)


class RotaryEmbedding2d(nn.Module):
    """sin/cos of 2-D rotary embeddings for any ``(h, w)`` grid.

    ``forward(grid)`` returns ``(sin, cos)``, each ``(h*w, head_dim)`` (axial) or
    ``(depth, heads, h*w, head_dim)`` (mixed; block ``i`` uses ``[i]``), in float32 (float64 when the
    frequencies are float64). Only mixed mode has a parameter, ``freqs``; axial frequencies are
    derived from the configuration and never stored.
    """

    __jit_ignored_attributes__ = ["_cache"]  # the eager cache; a scripted module computes per call

    def __init__(
        self,
        head_dim: int,
        mode: str = "axial",
        num_heads: int = 1,
        depth: int = 1,
        temperature: float = 10000.0,
        freq_scale: float = 1.0,
        coords: str = "index",
        normalize: str | None = None,
        ref_grid: int | tuple[int, int] | None = None,
        grid_offset: float = 0.0,
        grid_indexing: str = "ij",
        rotate_half: bool = False,
        max_cache: int = 16,
    ):
        super().__init__()
        _check_rope_options(head_dim, mode, coords, normalize, ref_grid, grid_indexing, rotate_half)
        self.head_dim = head_dim
        self.mode = mode
        self.num_heads = num_heads
        self.depth = depth
        self.temperature = float(temperature)
        self.freq_scale = float(freq_scale)
        self.coords = coords
        self.normalize = normalize
        self.ref_grid = None if ref_grid is None else to_size(ref_grid, "ref_grid")
        self.grid_offset = float(grid_offset)
        self.grid_indexing = grid_indexing
        self.rotate_half = rotate_half
        self.max_cache = max_cache
        self._cache = {}  # {(grid, device, dtype[, freqs version]): (sin, cos)}; no annotation (TorchScript)
        self.freqs = nn.Parameter(self._init_mixed_freqs()) if mode == "mixed" else None

    def _init_mixed_freqs(self) -> torch.Tensor:
        """rope-ViT's initialisation: axial magnitudes, each head and block turned by a random angle."""
        mag = 1.0 / self.temperature ** (torch.arange(0, self.head_dim, 4, dtype=torch.float32) / self.head_dim)
        theta = torch.rand(self.depth, self.num_heads, 1) * 2 * math.pi
        fx = torch.cat([mag * torch.cos(theta), mag * torch.cos(theta + math.pi / 2)], dim=-1)
        fy = torch.cat([mag * torch.sin(theta), mag * torch.sin(theta + math.pi / 2)], dim=-1)
        return torch.stack([fx, fy])  # (2, depth, heads, head_dim // 2)

    def axial_freqs(self, device: torch.device | None = None) -> torch.Tensor:
        """``(head_dim // 4,)`` float32 frequencies of each axis in axial mode."""
        return _axial_freqs(self.head_dim, self.temperature, self.freq_scale, device)

    def grid_coords(self, grid: Size, device: torch.device | None = None) -> torch.Tensor:
        """``(h*w, 2)`` float32 coordinates of the grid's tokens (see ``rope_coords``)."""
        return rope_coords(
            grid, self.coords, self.normalize, self.ref_grid, self.grid_offset, self.grid_indexing, device
        )

    def angles(
        self, grid: Size, device: torch.device | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Rotation angles per pair: ``(h*w, head_dim // 2)`` (axial) or ``(depth, heads, h*w, head_dim // 2)``."""
        c = self.grid_coords(grid, device).to(dtype)
        return rope_angles(c, self.head_dim, self.mode, self.temperature, self.freq_scale, self.freqs, device)

    def _compute(
        self, grid: Size, device: torch.device | None, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return rope_sin_cos(
            grid, self.head_dim, self.mode, self.temperature, self.freq_scale, self.coords, self.normalize,
            self.ref_grid, self.grid_offset, self.grid_indexing, self.rotate_half, self.freqs, device, dtype,
        )  # fmt: skip

    def forward(
        self, grid: Size, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sin, cos)`` for ``grid`` ``(h, w)``, on ``device`` (the frequencies' device by default).

        Cached per grid in eager mode; under TorchScript computed on every call."""
        grid = (int(grid[0]), int(grid[1]))
        freqs = self.freqs
        if freqs is not None:
            device = freqs.device if device is None else device
            if dtype is None:
                dtype = torch.float64 if freqs.dtype == torch.float64 else torch.float32
        if dtype is None:
            dtype = torch.float32
        if torch.jit.is_scripting():
            return self._compute(grid, device, dtype)
        return self._cached(grid, device, dtype)

    def _cached(self, grid: Size, device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``_compute`` through the per-grid cache (eager only: TorchScript cannot compile it)."""
        learning = self.freqs is not None and self.freqs.requires_grad and torch.is_grad_enabled()
        if learning or torch.compiler.is_compiling():
            return self._compute(grid, device, dtype)
        key = (grid, torch.device(device) if device is not None else torch.device("cpu"), dtype)
        if self.freqs is not None:
            key += (self.freqs.data_ptr(), self.freqs._version)
        out = self._cache.pop(key, None)
        if out is None:
            if self.freqs is not None:  # entries of older frequencies are stale
                self._cache = {k: v for k, v in self._cache.items() if k[3:] == key[3:]}
            if len(self._cache) >= self.max_cache:
                self._cache.pop(next(iter(self._cache)))  # the least recently used
            with torch.inference_mode(False), torch.no_grad():  # normal tensors, usable in any mode
                out = self._compute(grid, device, dtype)
        self._cache[key] = out
        return out

    def clear_cache(self) -> None:
        self._cache.clear()

    def _apply(self, fn, *args, **kwargs):
        self._cache.clear()  # .to() / .half() / .cuda(): entries were made for the old device or values
        return super()._apply(fn, *args, **kwargs)

    def config(self) -> dict:
        """The settings that decide the embedding at every grid (what a checkpoint must remember)."""
        return dict(
            mode=self.mode,
            temperature=self.temperature,
            freq_scale=self.freq_scale,
            coords=self.coords,
            normalize=self.normalize,
            ref_grid=None if self.ref_grid is None else list(self.ref_grid),
            grid_offset=self.grid_offset,
            grid_indexing=self.grid_indexing,
            rotate_half=self.rotate_half,
        )

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items())


def _check_rope_options(head_dim, mode, coords, normalize, ref_grid, grid_indexing, rotate_half) -> None:
    if mode not in ROPE_MODES:
        raise RectViTError(f"RoPE mode must be one of {ROPE_MODES}, got {mode!r}.")
    if coords not in ROPE_COORDS:
        raise RectViTError(f"RoPE coords must be one of {ROPE_COORDS}, got {coords!r}.")
    if normalize not in ROPE_NORMALIZE:
        raise RectViTError(f"RoPE normalize must be one of {ROPE_NORMALIZE}, got {normalize!r}.")
    if grid_indexing not in ("ij", "xy"):
        raise RectViTError(
            f"RoPE grid_indexing must be 'ij' (row, column) or 'xy' (column, row), got {grid_indexing!r}."
        )
    if head_dim % 4:
        raise RectViTError(
            f"2-D RoPE needs a head dimension divisible by 4 (two axes, pairs of channels), got {head_dim}; "
            "change embed_dim or num_heads."
        )
    if coords == "centered" and normalize is None:
        raise RectViTError("centered RoPE coordinates need a normalize scheme: 'separate', 'max' or 'min'.")
    if coords == "centered" and ref_grid is not None:
        raise RectViTError("centered RoPE coordinates span [-1, 1] by themselves; pass ref_grid=None.")
    if coords == "index" and normalize is not None and ref_grid is None:
        raise RectViTError(
            f"normalized index coordinates (normalize={normalize!r}) are rescaled to a reference grid; pass "
            "ref_grid=(h, w), e.g. the training grid."
        )
    if mode == "mixed" and rotate_half:
        raise RectViTError("mixed RoPE uses interleaved pairs; pass rotate_half=False.")
