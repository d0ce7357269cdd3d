"""BEiT / BEiT v2 with relative-position bias on rectangular windows, ``set_input_size`` and any input size.

State dicts use timm's ``Beit`` keys: every block's ``attn.relative_position_bias_table``
``((2h-1)(2w-1) + 3, heads)`` (or one shared ``rel_pos_bias.relative_position_bias_table``), whose
window is the patch grid ``(h, w)`` and whose last 3 rows are the class token's entries
(class -> patch, patch -> class, class -> class); ``attn.q_bias`` / ``attn.v_bias`` (the key has no
bias); LayerScale as ``gamma_1`` / ``gamma_2``. The optional absolute table follows the ViT
convention: ``pos_embed`` ``(1, h, w, C)`` and the class row in ``prefix_pos_embed`` ``(1, 1, C)``.

Data flow for a ``(B, in_chans, H, W)`` input on an ``(h, w)`` patch grid::

    patch_embed            -> (B, h, w, C)
    [+ pos_embed]          -> (B, h, w, C)        resampled to (h, w) when it differs
    [cls] + patches        -> (B, 1 + h*w, C)
    blocks (+ rel. bias)   -> (B, 1 + h*w, C)      bias tables resampled to the (h, w) window when it differs
    norm, pool, head       -> (B, num_classes)

A table on another window than the input's grid (dynamic mode) is resampled with BEiT's geometric
interpolation (``resample.resample_relative_bias_table``), the class rows kept as they are.
Eager models cache resampled tables per grid; ``torch.jit.script(model)`` compiles ``forward``, which
then resamples per call (same numbers) and ignores gradient checkpointing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import RectViTError
from ..grid import Size
from ..layers import DropPath, Mlp, PatchEmbed
from ..layers.patch_embed import is_fx_symbolic_tracing
from ..resample import geometric_bias_resize, resample_grid, resample_relative_bias_table
from ._util import (
    BlockStack,
    GridPositions,
    GridTableCache,
    config_patch_grid,
    constructor_config,
    intermediates_output,
    record_config,
    switch_property,
    take_indices,
    with_defaults,
)
from .base import RectViTModel
from .registry import register_model

__all__ = ["Beit"]

NUM_CLS_ROWS = 3  # class -> patch, patch -> class, class -> class
GLOBAL_POOLS = ("avg", "token", "")


def beit_relative_position_index(window: Size, device: torch.device | None = None) -> torch.Tensor:
    """``(1 + N, 1 + N)`` index into a BEiT table: patch pairs as Swin's (offset ``(dy, dx)`` at row
    ``(dy + wh - 1) * (2ww - 1) + dx + ww - 1``), then the 3 class-token rows. TorchScript compiles it."""
    wh, ww = window[0], window[1]
    n, m = wh * ww, (2 * wh - 1) * (2 * ww - 1)
    ys = torch.arange(wh, device=device)[:, None].expand(wh, ww).flatten()  # (N,) row of each token
    xs = torch.arange(ww, device=device)[None, :].expand(wh, ww).flatten()
    dy = ys[:, None] - ys[None, :] + (wh - 1)  # 0 .. 2wh-2
    dx = xs[:, None] - xs[None, :] + (ww - 1)  # 0 .. 2ww-2
    index = torch.full((n + 1, n + 1), m, dtype=torch.long, device=device)  # class -> patch
    index[1:, 1:] = dy * (2 * ww - 1) + dx
    index[1:, 0] = m + 1  # patch -> class
    index[0, 0] = m + 2
    return index


def _table_rows(window: Size) -> int:
    return (2 * window[0] - 1) * (2 * window[1] - 1) + NUM_CLS_ROWS


def resize_beit_table(table: torch.Tensor, old_window: Size, new_window: Size) -> torch.Tensor:
    """A BEiT table ``((2h-1)(2w-1) + 3, heads)`` for ``old_window`` resampled to ``new_window`` (geometric)."""
    return resample_relative_bias_table(
        table, old_window, new_window, interpolation="geometric", num_extra_tokens=NUM_CLS_ROWS
    )


def _gather_bias(table: torch.Tensor, grid: Size) -> torch.Tensor:
    """``(1, heads, 1 + h*w, 1 + h*w)`` bias of a table for the ``grid`` window."""
    n = grid[0] * grid[1] + 1
    bias = table[beit_relative_position_index(grid, table.device).view(-1)].view(n, n, -1)
    return bias.permute(2, 0, 1).unsqueeze(0)


def _relative_bias_like(table: torch.Tensor, window: Size, h: int, w: int) -> torch.Tensor:
    """The ``(1, heads, 1 + h*w, 1 + h*w)`` bias of ``table`` (made for ``window``) on an ``(h, w)`` grid,
    uncached: one opaque call in an FX graph (a traced model resamples for each input's grid like the eager
    one), and the TorchScript path (same numbers as the eager, cached one)."""
    return _gather_bias(geometric_bias_resize(table, window, (h, w)), (h, w))


torch.fx.wrap("_relative_bias_like")


class _RelativeBiasTable(nn.Module):
    """Holds ``relative_position_bias_table`` for ``window_size`` and gives the ``(1, heads, 1+N, 1+N)`` bias
    for any grid (the table resampled to the grid's window when it differs, cached under no-grad).

    ``num_extra_bias_rows`` and ``bias_interpolation`` tell checkpoint loading how to resample the table.
    """

    num_extra_bias_rows = NUM_CLS_ROWS
    bias_interpolation = "geometric"
    __jit_ignored_attributes__ = ["_cache", "_indices"]  # eager caches; a scripted module computes per call

    def __init__(self, window_size: Size | None, num_heads: int):
        super().__init__()
        self.window_size = None if window_size is None else tuple(window_size)
        rows = 0 if window_size is None else _table_rows(self.window_size)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(rows, num_heads)) if rows else None
        self._indices = {}  # {(window, device): index}; no annotation: TorchScript reads those of __init__
        self._cache = GridTableCache()

    def _index(self, window: Size, device: torch.device) -> torch.Tensor:
        key = (window, device)
        if key not in self._indices:
            self._indices[key] = beit_relative_position_index(window, device)
        return self._indices[key]

    def _gather(self, table: torch.Tensor, window: Size) -> torch.Tensor:
        n = window[0] * window[1] + 1
        bias = table[self._index(window, table.device).view(-1)].view(n, n, -1)
        return bias.permute(2, 0, 1).unsqueeze(0)

    def bias_for(self, grid: Size) -> torch.Tensor:
        """``relative_bias(grid)``, traceable by FX (where ``grid`` holds symbolic sizes); computed per call
        under TorchScript."""
        if torch.jit.is_scripting():
            return _relative_bias_like(self.relative_position_bias_table, self.window_size, grid[0], grid[1])
        if is_fx_symbolic_tracing():
            return _relative_bias_like(self.relative_position_bias_table, self.window_size, grid[0], grid[1])
        return self.relative_bias(grid)

    def relative_bias(self, grid: Size) -> torch.Tensor:
        """``(1, heads, 1 + h*w, 1 + h*w)`` for tokens on an ``(h, w)`` grid."""
        table = self.relative_position_bias_table
        if grid == self.window_size:
            return self._gather(table, grid)
        if torch.is_grad_enabled() and table.requires_grad:
            return self._gather(resize_beit_table(table, self.window_size, grid), grid)
        return self._cache.get(
            table, grid, lambda: self._gather(resize_beit_table(table.detach(), self.window_size, grid), grid)
        )

    def set_window_size(self, window_size: Size) -> None:
        """Resample the table (geometric, class rows kept) to a new window."""
        window_size = tuple(window_size)
        if window_size == self.window_size:
            return
        old = self.relative_position_bias_table
        with torch.no_grad():
            table = resize_beit_table(old.detach(), self.window_size, window_size)
        self.relative_position_bias_table = nn.Parameter(table.clone(), requires_grad=old.requires_grad)
        self.window_size = window_size
        self._cache.clear()


class RelativePositionBias(_RelativeBiasTable):
    """One table shared by every block (``use_shared_rel_pos_bias``; key ``rel_pos_bias.*``)."""

    def forward(self, grid: Size) -> torch.Tensor:
        return self.bias_for(grid)


class BeitAttention(_RelativeBiasTable):
    """``(B, 1 + N, C) -> (B, 1 + N, C)`` self-attention with BEiT's q/v biases and relative-position bias."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        window_size: Size | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ):
        if dim % num_heads:
            raise RectViTError(f"embed_dim {dim} must be divisible by num_heads {num_heads}.")
        super().__init__(window_size, num_heads)  # no table without a window (use_rel_pos_bias=False)
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, grid: Size, shared_bias: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        bias: torch.Tensor | None = None
        if self.q_bias is not None:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        mask: torch.Tensor | None = None
        if self.relative_position_bias_table is not None:
            mask = self.bias_for(grid)
        if shared_bias is not None:
            mask = shared_bias if mask is None else mask + shared_bias
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


class BeitBlock(nn.Module):
    """Pre-norm block; LayerScale as ``gamma_1`` / ``gamma_2`` parameters (timm's keys)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        mlp_ratio: float = 4.0,
        window_size: Size | None = None,
        init_values: float | None = None,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = BeitAttention(dim, num_heads, qkv_bias, window_size, attn_drop, proj_drop)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.gamma_1 = nn.Parameter(torch.full((dim,), float(init_values))) if init_values else None
        self.gamma_2 = nn.Parameter(torch.full((dim,), float(init_values))) if init_values else None

    def forward(self, x: torch.Tensor, grid: Size, shared_bias: torch.Tensor | None = None) -> torch.Tensor:
        y = self.attn(self.norm1(x), grid, shared_bias)
        x = x + self.drop_path1(y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.mlp(self.norm2(x))
        return x + self.drop_path2(y if self.gamma_2 is None else self.gamma_2 * y)


class Beit(BlockStack, GridPositions, RectViTModel):
    """BEiT taking ``(B, in_chans, H, W)`` inputs of any rectangular size the configuration allows.

    Constructor keywords are timm's ``Beit`` keywords (same names and defaults), plus ``norm_eps``,
    ``dynamic_img_size`` and ``dynamic_img_pad`` (which timm's BEiT lacks): in dynamic mode every input
    size on the patch grid is accepted, the absolute table (if any) is resampled bicubically and the
    relative-bias tables geometrically to the input's grid; ``final_norm=False`` drops the final norm
    (what ``prune_intermediate_layers(prune_norm=True)`` leaves).
    """

    _stem_pattern = r"^cls_token|pos_embed|prefix_pos_embed|patch_embed|rel_pos_bias"

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        qkv_bias: bool = True,
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        pos_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        init_values: float | None = None,
        use_abs_pos_emb: bool = True,
        use_rel_pos_bias: bool = False,
        use_shared_rel_pos_bias: bool = False,
        head_init_scale: float = 0.001,
        use_fc_norm: bool | None = None,
        norm_eps: float = 1e-6,
        dynamic_img_size: bool = False,
        dynamic_img_pad: bool = False,
        final_norm: bool = True,
    ):
        super().__init__()
        self.model_config = constructor_config(locals())
        if global_pool not in GLOBAL_POOLS:
            raise RectViTError(f"global_pool must be one of {GLOBAL_POOLS}, got {global_pool!r}.")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.num_prefix_tokens = self.num_pos_prefix_tokens = 1
        self.grad_checkpointing = False
        self._pos_cache = GridTableCache()

        self.patch_embed = PatchEmbed(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            dynamic_img_pad=dynamic_img_pad,
            strict_img_size=not dynamic_img_size,
        )
        grid = self.patch_embed.grid_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, *grid, embed_dim)) if use_abs_pos_emb else None
        self.prefix_pos_embed = nn.Parameter(torch.zeros(1, 1, embed_dim)) if use_abs_pos_emb else None
        self.dist_token = self.reg_token = None  # GridPositions' prefix tokens: the class token only
        self.pos_drop = nn.Dropout(pos_drop_rate)
        self.rel_pos_bias = RelativePositionBias(grid, num_heads) if use_shared_rel_pos_bias else None
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            [
                BeitBlock(
                    embed_dim,
                    num_heads,
                    qkv_bias=qkv_bias,
                    mlp_ratio=mlp_ratio,
                    window_size=grid if use_rel_pos_bias else None,
                    init_values=init_values,
                    proj_drop=proj_drop_rate,
                    attn_drop=attn_drop_rate,
                    drop_path=dpr[i],
                    norm_eps=norm_eps,
                )
                for i in range(depth)
            ]
        )
        fc_norm = global_pool == "avg" if use_fc_norm is None else use_fc_norm
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps) if final_norm and not fc_norm else nn.Identity()
        self.fc_norm = nn.LayerNorm(embed_dim, eps=norm_eps) if fc_norm else nn.Identity()
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights(head_init_scale)

    dynamic_img_size = switch_property("True: any input size per forward (tables resampled); False: img_size only.")

    @classmethod
    def table_grid(cls, config: dict[str, Any]) -> Size | None:
        """The absolute table's grid for ``config`` (size arithmetic; None without an absolute table)."""
        c = with_defaults(cls, config)
        return config_patch_grid(c) if c["use_abs_pos_emb"] else None

    @classmethod
    def bias_windows(cls, config: dict[str, Any]) -> dict[str, Size]:
        """``{bias-table key: window}`` for ``config``: BEiT's windows are the patch grid."""
        c = with_defaults(cls, config)
        grid = config_patch_grid(c)
        if c["use_shared_rel_pos_bias"]:
            return {"rel_pos_bias.relative_position_bias_table": grid}
        if c["use_rel_pos_bias"]:
            return {f"blocks.{i}.attn.relative_position_bias_table": grid for i in range(c["depth"])}
        return {}

    @torch.no_grad()
    def _init_weights(self, head_init_scale: float) -> None:
        """timm's BEiT initialisation: truncated normal (std .02), residual projections scaled by depth."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for t in (self.pos_embed, self.prefix_pos_embed, self.cls_token):
            if t is not None:
                nn.init.trunc_normal_(t, std=0.02)
        for i, blk in enumerate(self.blocks):
            blk.attn.proj.weight.div_((2.0 * (i + 1)) ** 0.5)
            blk.mlp.fc2.weight.div_((2.0 * (i + 1)) ** 0.5)
        if isinstance(self.head, nn.Linear) and head_init_scale:
            self.head.weight.mul_(head_init_scale)

    # ----------------------------------------------------------------------------------------------
    # Sizes

    def set_input_size(self, img_size=None, patch_size=None) -> None:
        """Change the nominal input size and/or patch size: the absolute table is resampled (bicubic) and every
        relative-bias table geometrically to the new grid, from their current grid."""
        self.patch_embed.set_input_size(img_size=img_size, patch_size=patch_size)
        grid = self.patch_embed.grid_size
        if self.pos_embed is not None and tuple(self.pos_embed.shape[1:3]) != grid:
            old = self.pos_embed
            with torch.no_grad():
                table = resample_grid(old.detach(), grid)
            self.pos_embed = nn.Parameter(table.clone(), requires_grad=old.requires_grad)
        for m in self.modules():
            if isinstance(m, _RelativeBiasTable) and m.relative_position_bias_table is not None:
                m.set_window_size(grid)
        self._pos_cache.clear()
        record_config(self, img_size=self.patch_embed.img_size, patch_size=self.patch_embed.patch_size)

    # ----------------------------------------------------------------------------------------------
    # Forward

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, Size]:
        """``(B, in_chans, H, W)`` -> ``(B, 1 + h*w, C)`` tokens and the grid ``(h, w)``."""
        x = self.patch_embed(x)
        grid = (x.shape[1], x.shape[2])  # not int(): sizes stay symbolic when traced
        return self.pos_drop(self._with_positions(x)), grid

    def _block(self, blk: nn.Module, x: torch.Tensor, grid: Size, shared: torch.Tensor | None) -> torch.Tensor:
        """One block, gradient-checkpointed when enabled (eager only; TorchScript calls ``blk`` directly)."""
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(blk, x, grid, shared, use_reentrant=False)
        return blk(x, grid, shared)

    def _shared_bias(self, grid: Size) -> torch.Tensor | None:
        return self.rel_pos_bias(grid) if self.rel_pos_bias is not None else None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B, 1 + h*w, C)`` after the final norm."""
        x, grid = self._embed(x)
        shared = self._shared_bias(grid)
        for blk in self.blocks:
            if torch.jit.is_scripting():
                x = blk(x, grid, shared)
            else:
                x = self._block(blk, x, grid, shared)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, 1 + N, C) -> (B, num_classes)`` (``(B, C)`` with ``pre_logits``)."""
        if self.global_pool == "avg":
            x = x[:, self.num_prefix_tokens :].mean(dim=1)
        elif self.global_pool == "token":
            x = x[:, 0]
        x = self.head_drop(self.fc_norm(x))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        return_prefix_tokens: bool = False,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
        output_dict: bool = False,
    ):
        """Features of selected blocks as timm returns them: ``(B, C, h, w)`` maps on the input's own grid
        (``"NCHW"``) or ``(B, h*w, C)`` (``"NLC"``); with ``return_prefix_tokens``, ``(map, (B, 1, C))`` pairs;
        with ``output_dict`` a dict as ``VisionTransformer.forward_intermediates`` gives."""
        if output_fmt not in ("NCHW", "NLC"):
            raise RectViTError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}.")
        take = take_indices(len(self.blocks), indices)
        x, (h, w) = self._embed(x)
        blocks = self.blocks[: max(take) + 1] if stop_early else self.blocks
        shared = self._shared_bias((h, w))
        outs = []
        for i, blk in enumerate(blocks):
            x = self._block(blk, x, (h, w), shared)
            if i in take:
                outs.append(self.norm(x) if norm else x)
        return intermediates_output(
            outs,
            (h, w),
            self.num_prefix_tokens,
            x,
            self.norm,
            output_fmt,
            return_prefix_tokens,
            output_dict,
            intermediates_only,
        )

    # ----------------------------------------------------------------------------------------------
    # Training utilities

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None:
            if global_pool not in GLOBAL_POOLS:
                raise RectViTError(f"global_pool must be one of {GLOBAL_POOLS}, got {global_pool!r}.")
            self.global_pool = global_pool
            record_config(self, global_pool=global_pool, use_fc_norm=not isinstance(self.fc_norm, nn.Identity))
        self.num_classes = num_classes
        record_config(self, num_classes=num_classes)
        device = self.cls_token.device
        self.head = (nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()).to(device)
        self.head.train(self.training)

    def no_weight_decay(self) -> set[str]:
        names = {"pos_embed", "prefix_pos_embed", "cls_token"}
        return names | {n for n, _ in self.named_parameters() if "relative_position_bias_table" in n}

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the blocks after the deepest of ``indices`` (and the final norm / the head), as timm; returns
        the kept indices (non-negative). ``model_config`` records the result."""
        take = self._prune_blocks(indices, prune_norm)
        if prune_head:
            self.fc_norm = nn.Identity()
            self.reset_classifier(0, "")
        record_config(
            self, final_norm=not isinstance(self.norm, nn.Identity) or not isinstance(self.fc_norm, nn.Identity)
        )
        return take


# --------------------------------------------------------------------------------------------------
# Registry: timm's names and model_args.

_BASE = dict(patch_size=16, embed_dim=768, depth=12, num_heads=12, use_abs_pos_emb=False, use_rel_pos_bias=True)
_LARGE = dict(patch_size=16, embed_dim=1024, depth=24, num_heads=16, use_abs_pos_emb=False, use_rel_pos_bias=True)


def _register(name: str, **config: Any) -> None:
    register_model(name, Beit, **config)


_register("beit_base_patch16_224", init_values=0.1, **_BASE)
_register("beit_base_patch16_384", img_size=384, init_values=0.1, **_BASE)
_register("beit_large_patch16_224", init_values=1e-5, **_LARGE)
_register("beit_large_patch16_384", img_size=384, init_values=1e-5, **_LARGE)
_register("beit_large_patch16_512", img_size=512, init_values=1e-5, **_LARGE)
_register("beitv2_base_patch16_224", init_values=1e-5, **_BASE)
_register("beitv2_large_patch16_224", init_values=1e-5, **_LARGE)
