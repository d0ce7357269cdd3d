"""Vision Transformer (ViT, DeiT, DeiT-3, DINOv2, AST) with a position grid that is its shape.

State dicts use timm's key names for the same configuration, with one deliberate difference: the
learned position table ``pos_embed`` is a ``(1, h, w, C)`` parameter, and the position vectors of
prefix tokens (class, distillation, registers), where the model has them, live in a separate
``(1, P, C)`` parameter ``prefix_pos_embed``. ``rectvit.checkpoint`` converts timm's flat tables.

Data flow (shapes for a ``(B, in_chans, H, W)`` input on an ``(h, w)`` patch grid)::

    patch_embed        -> (B, h, w, C)           channels last, the grid travels with the tensor
    + position table   -> (B, h, w, C)           resampled to (h, w) when it differs (dynamic mode)
    prefix tokens      -> (B, P + h*w, C)        [cls][dist][registers] + patch tokens
    blocks, norm       -> (B, P + h*w, C)        forward_features
    pool, head         -> (B, num_classes)       forward_head
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import RectViTError
from ..grid import Size
from ..layers import AttentionPoolLatent, Block, PatchEmbed, get_act_layer
from ..layers.packed import PackedBatch, PackedLayout, PackedTokens, patch_tokens
from ..resample import TRACEABLE_INTERPOLATIONS, resample_grid, resample_grid_separable, sincos_2d, sincos_table
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

__all__ = ["VisionTransformer"]

GLOBAL_POOLS = ("token", "token_dist", "avg", "avgmax", "max", "map", "")
POS_EMBEDS = ("learn", "sincos", "none", "")


class VisionTransformer(BlockStack, GridPositions, RectViTModel):
    """A ViT taking ``(B, in_chans, H, W)`` images of any rectangular size the configuration allows.

    Constructor keywords are timm's ``VisionTransformer`` keywords (same names, same defaults), plus:

    - ``patch_stride``: overlapping patches (AST); defaults to ``patch_size``.
    - ``distilled``: a distillation token and ``head_dist`` (DeiT); in eval the two heads' logits are
      averaged; with ``set_distilled_training()`` and in train mode both are returned.
    - ``global_pool="token_dist"``: the mean of the class and distillation tokens (AST).
    - ``head_norm``: a LayerNorm on the pooled vector before the head, kept together with the final
      ``norm`` (AST's ``mlp_head``).
    - ``pos_embed="sincos"``: a fixed 2-D sin-cos table (computed for each grid, never resampled).
    - ``norm_eps``: epsilon of every LayerNorm (1e-6 as timm; 1e-12 for HF-trained models such as AST).
    - ``embed_layer``: the patch embedding class; it must produce ``(B, h, w, C)`` and know its grid
      (see ``rectvit.layers.PatchEmbed``).

    CLIP and SigLIP image towers use the timm keywords too: ``pre_norm`` (LayerNorm ``norm_pre`` before
    the blocks, patch projection without bias), ``act_layer`` by timm's name (``"gelu"``,
    ``"gelu_tanh"``, ``"quick_gelu"``), and ``global_pool="map"``: attention pooling with a learned
    query (``attn_pool``, SigLIP), over the patch tokens unless ``pool_include_prefix``.
    - ``pos_interpolation`` (``"bicubic"`` or ``"bilinear"``) and ``pos_antialias``: how a learned table
      is resampled to another grid, per forward (``dynamic_img_size``) and in ``set_input_size``.
      The default is timm's (antialiased bicubic); HF's ``interpolate_pos_encoding=True`` is
      ``pos_interpolation="bicubic", pos_antialias=False``.
    """

    _stem_pattern = r"^cls_token|dist_token|reg_token|pos_embed|prefix_pos_embed|patch_embed|norm_pre"

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        patch_stride: int | tuple[int, int] | None = None,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "token",
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_norm: bool = False,
        proj_bias: bool = True,
        init_values: float | None = None,
        class_token: bool = True,
        distilled: bool = False,
        reg_tokens: int = 0,
        pos_embed: str = "learn",
        no_embed_class: bool = False,
        pre_norm: bool = False,
        final_norm: bool = True,
        fc_norm: bool | None = None,
        head_norm: bool = False,
        pool_include_prefix: bool = False,
        norm_eps: float = 1e-6,
        act_layer: str = "gelu",
        dynamic_img_size: bool = False,
        dynamic_img_pad: bool = False,
        pos_interpolation: str = "bicubic",
        pos_antialias: bool = True,
        drop_rate: float = 0.0,
        pos_drop_rate: float = 0.0,
        patch_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        embed_layer: Callable[..., nn.Module] = PatchEmbed,
    ):
        super().__init__()
        self.model_config = constructor_config(locals(), skip=("embed_layer",))
        _check_hyperparameters(
            dict(in_chans=in_chans, num_classes=num_classes, embed_dim=embed_dim, depth=depth, num_heads=num_heads),
            dict(mlp_ratio=mlp_ratio, norm_eps=norm_eps),
            dict(
                drop_rate=drop_rate,
                pos_drop_rate=pos_drop_rate,
                proj_drop_rate=proj_drop_rate,
                attn_drop_rate=attn_drop_rate,
                drop_path_rate=drop_path_rate,
            ),
        )
        _check_options(global_pool, pos_embed, class_token, distilled, reg_tokens, patch_drop_rate)
        _check_pos_interpolation(pos_interpolation, pos_antialias)
        use_fc_norm = global_pool in ("avg", "avgmax", "max") if fc_norm is None else fc_norm
        act = get_act_layer(act_layer)

        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.has_class_token = class_token
        self.distilled = distilled
        self.distilled_training = False
        self.num_reg_tokens = reg_tokens
        self.num_prefix_tokens = int(class_token) + int(distilled) + reg_tokens
        self.no_embed_class = no_embed_class
        self.pool_include_prefix = pool_include_prefix
        self.grad_checkpointing = False
        self.pos_embed_type = pos_embed or "none"
        self.pos_interpolation = pos_interpolation
        self.pos_antialias = pos_antialias
        self._pos_cache = GridTableCache()

        self.patch_embed = embed_layer(
            img_size=img_size,
            patch_size=patch_size,
            patch_stride=patch_stride,
            in_chans=in_chans,
            embed_dim=embed_dim,
            bias=not pre_norm,
            dynamic_img_pad=dynamic_img_pad,
            strict_img_size=not dynamic_img_size,
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if distilled else None
        self.reg_token = nn.Parameter(torch.zeros(1, reg_tokens, embed_dim)) if reg_tokens else None
        self._init_pos_tables()
        self.pos_drop = nn.Dropout(pos_drop_rate)
        self.norm_pre = nn.LayerNorm(embed_dim, eps=norm_eps) if pre_norm else nn.Identity()

        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # stochastic depth decay
        self.blocks = nn.Sequential(
            *[
                Block(
                    embed_dim,
                    num_heads,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    qk_norm=qk_norm,
                    proj_bias=proj_bias,
                    init_values=init_values,
                    proj_drop=proj_drop_rate,
                    attn_drop=attn_drop_rate,
                    drop_path=dpr[i],
                    norm_eps=norm_eps,
                    act_layer=act,
                )
                for i in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps) if final_norm and not use_fc_norm else nn.Identity()
        self.attn_pool = (
            AttentionPoolLatent(embed_dim, num_heads, mlp_ratio, norm_eps=norm_eps, act_layer=act)
            if global_pool == "map"
            else None
        )
        self.fc_norm = nn.LayerNorm(embed_dim, eps=norm_eps) if final_norm and use_fc_norm else nn.Identity()
        self.head_norm = nn.LayerNorm(embed_dim, eps=norm_eps) if head_norm else nn.Identity()
        self.head_drop = nn.Dropout(drop_rate)
        self.head = self._make_head(num_classes)
        self.head_dist = self._make_head(num_classes) if self._two_heads else None
        self.init_weights()

    # ----------------------------------------------------------------------------------------------
    # Construction helpers

    @classmethod
    def table_grid(cls, config: dict[str, Any]) -> Size | None:
        """The ``(h, w)`` grid of the position table a model built from ``config`` has: size arithmetic only."""
        c = with_defaults(cls, config)
        return None if (c["pos_embed"] or "none") == "none" else config_patch_grid(c)

    def _make_head(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    @property
    def _two_heads(self) -> bool:
        """DeiT's distilled head: ``head`` on the class token and ``head_dist`` on the distillation token."""
        return self.distilled and self.global_pool == "token"

    @property
    def num_pos_prefix_tokens(self) -> int:
        """Prefix tokens that carry a position vector (0 with ``no_embed_class``)."""
        return 0 if self.no_embed_class else self.num_prefix_tokens

    def _init_pos_tables(self) -> None:
        """Create ``pos_embed`` ``(1, h, w, C)`` for the embedding's grid and ``prefix_pos_embed`` ``(1, P, C)``."""
        h, w = self.patch_embed.grid_size
        c = self.embed_dim
        if self.pos_embed_type == "learn":
            self.pos_embed = nn.Parameter(torch.zeros(1, h, w, c))
        elif self.pos_embed_type == "sincos":
            self.register_buffer("pos_embed", sincos_2d((h, w), c), persistent=False)
        else:
            self.pos_embed = None
        p = self.num_pos_prefix_tokens
        learned = self.pos_embed_type == "learn"
        self.prefix_pos_embed = nn.Parameter(torch.zeros(1, p, c)) if learned and p else None

    @torch.no_grad()
    def init_weights(self) -> None:
        """timm's default initialisation: truncated normal (std .02) tables and linears, tiny prefix tokens."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if isinstance(self.pos_embed, nn.Parameter):
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.prefix_pos_embed is not None:
            nn.init.trunc_normal_(self.prefix_pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        if self.reg_token is not None:
            nn.init.normal_(self.reg_token, std=1e-6)
        if self.dist_token is not None:
            nn.init.trunc_normal_(self.dist_token, std=0.02)

    # ----------------------------------------------------------------------------------------------
    # Sizes

    dynamic_img_size = switch_property("True: any input size per forward (positions resampled); False: img_size only.")

    def set_input_size(self, img_size=None, patch_size=None, patch_stride=None) -> None:
        """Change the nominal input size and/or patch size; the position table is resampled to the new grid.

        Resampling always starts from the table's current grid, so a chain A -> B -> C is the same as
        the two resamplings applied in turn. A new patch size PI-resizes the patch kernel.
        """
        plan = self.patch_embed.plan_input_size(img_size, patch_size, patch_stride)  # checks, new kernel
        new_grid, table = plan["grid_size"], self.pos_embed
        if self.pos_embed_type == "learn" and new_grid != self.grid_size:
            with torch.no_grad():
                resampled = resample_grid(table.detach(), new_grid, self.pos_interpolation, self.pos_antialias).clone()
            table = nn.Parameter(resampled, requires_grad=table.requires_grad)
        elif self.pos_embed_type == "sincos":
            table = sincos_2d(new_grid, self.embed_dim).to(table.device, table.dtype)
        self.patch_embed.apply_input_size(plan)  # nothing from here on can fail
        self.pos_embed = table
        self._pos_cache.clear()
        record_config(self, img_size=self.patch_embed.img_size, patch_size=self.patch_embed.patch_size)
        if not self.patch_embed.stride_follows_patch:
            record_config(self, patch_stride=self.patch_embed.patch_stride)

    # ----------------------------------------------------------------------------------------------
    # Positions and prefix tokens

    def _pos_rule(self) -> tuple[bool, str, bool]:
        return self.pos_embed_type == "sincos", self.pos_interpolation, self.pos_antialias

    def _resample_pos_table(self, table: torch.Tensor, grid: Size) -> torch.Tensor:
        """Sin-cos tables computed; learned ones resampled separably (traceable on a symbolic grid)."""
        if self.pos_embed_type == "sincos":
            return sincos_table(grid[0], grid[1], self.embed_dim, device=table.device).to(table.dtype)
        return resample_grid_separable(table, grid, self.pos_interpolation, self.pos_antialias)

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, h, w, C)`` patch tokens -> ``(B, P + h*w, C)`` tokens with positions and prefix tokens."""
        return self.pos_drop(self._with_positions(x))

    # ----------------------------------------------------------------------------------------------
    # Forward

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, Size]:
        """``(B, in_chans, H, W)`` -> tokens ``(B, P + h*w, C)`` ready for the blocks, and the grid ``(h, w)``."""
        x = self.patch_embed(x)
        grid = (x.shape[1], x.shape[2])  # not int(): keeps sizes symbolic under torch.compile/export
        x = self._pos_embed(x)
        return self.norm_pre(x), grid

    def _block(
        self, blk: nn.Module, x: torch.Tensor, num_queries: int | None = None, packed: PackedLayout | None = None
    ) -> torch.Tensor:
        args = (x,) if num_queries is None else (x, num_queries)  # replaced blocks may take x alone
        if packed is not None:
            args = (x, num_queries, packed)
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(blk, *args, use_reentrant=False)
        return blk(*args)

    @property
    def _head_reads_prefix_only(self) -> bool:
        """True when the head reads nothing but prefix tokens (class / distillation token pooling) and no
        hook on the last block or the final norm expects every token."""
        if self.global_pool not in ("token", "token_dist") or not self.num_prefix_tokens or not len(self.blocks):
            return False
        last = self.blocks[-1]
        watched = (last, self.norm)
        return isinstance(last, Block) and not any(m._forward_hooks or m._forward_pre_hooks for m in watched)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B, P + h*w, C)`` after the final norm (``PackedBatch -> PackedTokens``)."""
        if not torch.jit.is_scripting():
            if isinstance(x, PackedBatch):
                return self._forward_features_packed(x)
        x, _ = self._embed(x)
        for blk in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return self.norm(x)

    def pool(self, x: torch.Tensor, pool_type: str | None = None) -> torch.Tensor:
        """``(B, P + N, C) -> (B, C)`` (or unchanged for ``""``); ``PackedTokens -> (N, C)``."""
        pool_type = self.global_pool if pool_type is None else pool_type
        if not torch.jit.is_scripting():
            if isinstance(x, PackedTokens) and pool_type:
                return self._pool_packed(x, pool_type)
        if pool_type == "map":
            if self.attn_pool is not None:
                return self.attn_pool(x if self.pool_include_prefix else x[:, self.num_prefix_tokens :])
            raise RectViTError("pool_type='map' needs an attention pool; build the model with global_pool='map'.")
        if not pool_type:
            return x
        if pool_type == "token":
            return x[:, 0]
        if pool_type == "token_dist":
            return (x[:, 0] + x[:, 1]) / 2
        if not self.pool_include_prefix:
            x = x[:, self.num_prefix_tokens :]
        if pool_type == "avg":
            return x.mean(dim=1)
        if pool_type == "max":
            return x.amax(dim=1)
        return 0.5 * (x.amax(dim=1) + x.mean(dim=1))  # avgmax

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False):
        """``(B, P + N, C) -> (B, num_classes)`` (``(B, C)`` with ``pre_logits``); ``PackedTokens`` -> ``(N, ...)``."""
        if not torch.jit.is_scripting():
            if isinstance(x, PackedTokens):
                return self._forward_head_packed(x, pre_logits)
        if self.head_dist is not None:  # DeiT's distilled head (kept in step with _two_heads)
            return self._distilled_head(x, pre_logits)
        x = self.pool(x)
        x = self.head_norm(self.fc_norm(x))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def _distilled_head(self, x: torch.Tensor, pre_logits: bool):
        """DeiT: ``head`` on the class token, ``head_dist`` on the distillation token, averaged."""
        x, x_dist = self.head_drop(x[:, 0]), self.head_drop(x[:, 1])
        if pre_logits:
            return (x + x_dist) / 2
        x, x_dist = self.head(x), self.head_dist(x_dist)
        if self.distilled_training and self.training and not torch.jit.is_scripting():
            return x, x_dist  # TorchScript: one return type, the mean
        return (x + x_dist) / 2

    def forward(self, x: torch.Tensor):
        """``(B, in_chans, H, W) -> (B, num_classes)``: ``forward_head(forward_features(x))``.

        When the head reads only prefix tokens, the last block computes only those tokens (their
        attention over all tokens, then their MLP): the same logits up to float rounding, with the
        patch tokens' last-block work avoided. Not when the last block was replaced or a hook watches
        it or the final norm (those see every token, as in ``forward_features``).

        A ``PackedBatch`` (``rectvit.pack``) gives ``(N, num_classes)``, row ``i`` that of image ``i`` alone.
        """
        if torch.jit.is_scripting():
            return self.forward_head(self.forward_features(x))
        if isinstance(x, PackedBatch):
            return self._forward_packed(x)
        if not self._head_reads_prefix_only:
            return self.forward_head(self.forward_features(x))
        x, _ = self._embed(x)
        for blk in self.blocks[:-1]:
            x = self._block(blk, x)
        x = self._block(self.blocks[-1], x, self.num_prefix_tokens)
        return self.forward_head(self.norm(x))

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
        """Features of selected blocks, as timm returns them.

        Maps are ``(B, C, h, w)`` on the input's own grid (``"NCHW"``) or ``(B, h*w, C)`` (``"NLC"``);
        with ``return_prefix_tokens`` each entry is ``(map, prefix (B, P, C))``. Returns the list when
        ``intermediates_only``, else ``(forward_features output, list)``; with ``output_dict`` a dict
        ``{"image_intermediates": maps, "image_intermediates_prefix": prefixes (with
        return_prefix_tokens), "image_features": final (unless intermediates_only)}``.
        """
        if output_fmt not in ("NCHW", "NLC"):
            raise RectViTError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}.")
        if isinstance(x, PackedBatch):
            raise RectViTError(
                "forward_intermediates takes a (B, C, H, W) batch, not a PackedBatch; for per-image maps of a "
                "packed batch use model.forward_features(packed).feature_maps()."
            )
        take = take_indices(len(self.blocks), indices)
        x, (h, w) = self._embed(x)
        blocks = self.blocks[: max(take) + 1] if stop_early else self.blocks
        outs = []
        for i, blk in enumerate(blocks):
            x = self._block(blk, x)
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
    # Packed batches (rectvit.pack): many input shapes in one sequence, attention within each image

    def _embed_packed(self, batch: PackedBatch) -> PackedTokens:
        """Patch embedding per input shape, each image's own position table and prefix tokens, packed."""
        batch.check_each_shape(self.check_input)
        images, groups = batch.images, batch.groups()
        rows: list[Any] = [None] * len(images)
        grids: list[Any] = [None] * len(images)
        for group, x in zip(groups, patch_tokens(self.patch_embed, images, groups)):
            grid = (int(x.shape[1]), int(x.shape[2]))
            for i, t in zip(group, self._pos_embed(x).unbind(0)):
                rows[i], grids[i] = t, grid
        layout = PackedLayout(tuple(grids), self.num_prefix_tokens, batch.attention)
        return PackedTokens(self.norm_pre(torch.cat(rows)), layout)

    def _forward_features_packed(self, batch: PackedBatch) -> PackedTokens:
        x = self._embed_packed(batch)
        tokens = x.tokens
        for blk in self.blocks:
            tokens = self._block(blk, tokens, None, x.layout)
        return x.replace(self.norm(tokens))

    def _pool_packed(self, x: PackedTokens, pool_type: str) -> torch.Tensor:
        if pool_type == "token":
            return x.prefix_tokens()[:, 0]
        if pool_type == "token_dist":
            prefix = x.prefix_tokens()
            return (prefix[:, 0] + prefix[:, 1]) / 2
        return x.pool(pool_type, self.pool_include_prefix)

    def _forward_head_packed(self, x: PackedTokens, pre_logits: bool):
        if self._two_heads:
            return self._distilled_head(x.prefix_tokens(), pre_logits)
        if not self.global_pool:  # no pooling: the head runs on every token
            y = self.head_drop(self.head_norm(self.fc_norm(x.tokens)))
            return x.replace(y if pre_logits else self.head(y))
        y = self.head_drop(self.head_norm(self.fc_norm(self.pool(x))))
        return y if pre_logits else self.head(y)

    def _forward_packed(self, batch: PackedBatch):
        if not self._head_reads_prefix_only:
            return self.forward_head(self._forward_features_packed(batch))
        x = self._embed_packed(batch)
        tokens, layout, p = x.tokens, x.layout, self.num_prefix_tokens
        for blk in self.blocks[:-1]:
            tokens = self._block(blk, tokens, None, layout)
        tokens = self._block(self.blocks[-1], tokens, p, layout)  # (N * P, C): prefix tokens only
        return self.forward_head(self.norm(tokens.reshape(len(layout), p, -1)))

    # ----------------------------------------------------------------------------------------------
    # Training utilities

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new (freshly initialised) head for ``num_classes``; optionally a new pooling."""
        if global_pool is not None:
            _check_options(global_pool, self.pos_embed_type, self.has_class_token, self.distilled, 0, 0.0)
            if global_pool == "map" and self.attn_pool is None:
                raise RectViTError(
                    "reset_classifier cannot add an attention pool; build the model with global_pool='map'."
                )
            if global_pool != "map":
                self.attn_pool = None  # as timm: leaving attention pooling drops its weights
            self.global_pool = global_pool
            record_config(self, global_pool=global_pool, fc_norm=not isinstance(self.fc_norm, nn.Identity))
        self.num_classes = num_classes
        record_config(self, num_classes=num_classes)
        device = next(self.parameters()).device
        self.head = self._make_head(num_classes).to(device).train(self.training)
        self.head_dist = self._make_head(num_classes).to(device).train(self.training) if self._two_heads else None
        for head in (self.head, self.head_dist):
            if isinstance(head, nn.Linear):
                nn.init.trunc_normal_(head.weight, std=0.02)
                nn.init.zeros_(head.bias)

    def set_distilled_training(self, enable: bool = True) -> None:
        """In train mode, return ``(logits, logits_dist)`` instead of their mean (DeiT distillation)."""
        self.distilled_training = enable

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "prefix_pos_embed", "cls_token", "reg_token", "dist_token"}

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the blocks after the deepest of ``indices`` (and the final norm / the head), as timm; returns
        the kept indices (non-negative). ``model_config`` records the result."""
        take = self._prune_blocks(indices, prune_norm)
        if prune_head:
            self.fc_norm, self.head_norm = nn.Identity(), nn.Identity()
            record_config(self, head_norm=False)
            self.reset_classifier(0, None if self.distilled else "")  # a distilled model keeps its token pooling
        if prune_norm and isinstance(self.fc_norm, nn.Identity):
            record_config(self, final_norm=False)
        return take

    def _feature_reduction(self) -> int:
        return max(self.patch_embed.patch_stride)

    def _cfg_fields(self) -> dict[str, Any]:
        return {"first_conv": "patch_embed.proj", "classifier": ("head", "head_dist") if self._two_heads else "head"}


_MIN_COUNT = {"in_chans": 1, "num_classes": 0, "embed_dim": 1, "depth": 0, "num_heads": 1}
_COUNT_HINT = {
    "in_chans": "3 for RGB, 1 for spectrograms",
    "num_classes": "0 for a backbone without head",
    "embed_dim": "e.g. 384 or 768",
    "depth": "the number of transformer blocks, e.g. 12",
    "num_heads": "e.g. 6 or 12",
}


def _check_hyperparameters(counts: dict[str, Any], numbers: dict[str, Any], rates: dict[str, Any]) -> None:
    """Raise ``RectViTError`` for a count that is not an int >= its minimum, ``mlp_ratio <= 0``,
    ``norm_eps < 0``, a drop rate outside [0, 1], or ``embed_dim`` not divisible by ``num_heads``."""
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < _MIN_COUNT[name]:
            raise RectViTError(f"{name} must be an int >= {_MIN_COUNT[name]}, got {value!r}; pass {_COUNT_HINT[name]}.")
    for name, value in {**numbers, **rates}.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise RectViTError(f"{name} must be a number, got {value!r}.")
    if numbers["mlp_ratio"] <= 0:
        raise RectViTError(f"mlp_ratio must be > 0 (MLP width / embed_dim, e.g. 4.0), got {numbers['mlp_ratio']}.")
    if numbers["norm_eps"] < 0:
        raise RectViTError(f"norm_eps must be >= 0, got {numbers['norm_eps']}; timm uses 1e-6.")
    for name, value in rates.items():
        if not 0.0 <= value <= 1.0:
            raise RectViTError(f"{name} is a probability in [0, 1], got {value!r}; pass 0.0 to disable it.")
    dim, heads = counts["embed_dim"], counts["num_heads"]
    if dim % heads:
        fits = [h for h in range(1, min(dim, 64) + 1) if dim % h == 0]
        raise RectViTError(
            f"embed_dim {dim} must be divisible by num_heads {heads} (each head takes embed_dim / num_heads "
            f"channels); use num_heads in {fits} or another embed_dim."
        )


def _check_pos_interpolation(mode: str, antialias: bool) -> None:
    if mode not in TRACEABLE_INTERPOLATIONS or not isinstance(antialias, bool):
        raise RectViTError(
            f"pos_interpolation must be one of {TRACEABLE_INTERPOLATIONS} and pos_antialias a bool, got "
            f"{mode!r} and {antialias!r}; HF's interpolate_pos_encoding is ('bicubic', False), "
            "timm's ('bicubic', True)."
        )


def _check_options(
    global_pool: str, pos_embed: str, class_token: bool, distilled: bool, reg_tokens: int, patch_drop_rate: float
) -> None:
    """Raise ``RectViTError`` for an option combination the model cannot build."""
    if global_pool not in GLOBAL_POOLS:
        raise RectViTError(f"global_pool must be one of {GLOBAL_POOLS}, got {global_pool!r}.")
    if pos_embed not in POS_EMBEDS:
        raise RectViTError(f"pos_embed must be one of {POS_EMBEDS}, got {pos_embed!r}.")
    if global_pool in ("token", "token_dist") and not class_token:
        raise RectViTError(
            f"global_pool={global_pool!r} reads the class token, but class_token=False; "
            "use global_pool='avg' or class_token=True."
        )
    if global_pool == "token_dist" and not distilled:
        raise RectViTError("global_pool='token_dist' averages the class and distillation tokens; pass distilled=True.")
    if distilled and global_pool not in ("token", "token_dist"):
        raise RectViTError(
            f"a distilled model pools its class and distillation tokens (global_pool 'token' or 'token_dist'), "
            f"got {global_pool!r}."
        )
    if distilled and not class_token:
        raise RectViTError("distilled=True needs class_token=True (DeiT's class + distillation tokens).")
    if distilled and reg_tokens:
        raise RectViTError(f"distilled models take no register tokens, got reg_tokens={reg_tokens}.")
    if reg_tokens < 0:
        raise RectViTError(f"reg_tokens must be >= 0, got {reg_tokens}.")
    if patch_drop_rate:
        raise RectViTError(f"patch_drop_rate is not supported, got {patch_drop_rate}; pass 0.")


# --------------------------------------------------------------------------------------------------
# Registry: timm's names and model_args (img_size and num_classes from timm's default configs).

_VIT_S = dict(embed_dim=384, depth=12, num_heads=6)
_VIT_B = dict(embed_dim=768, depth=12, num_heads=12)


def _register(name: str, **config: Any) -> None:
    register_model(name, VisionTransformer, **config)


_register("vit_tiny_patch16_224", patch_size=16, embed_dim=192, depth=12, num_heads=3)
_register("vit_small_patch16_224", patch_size=16, **_VIT_S)
_register("vit_base_patch16_224", patch_size=16, **_VIT_B)
_register("vit_large_patch16_224", patch_size=16, embed_dim=1024, depth=24, num_heads=16)
_register("vit_base_patch16_384", img_size=384, patch_size=16, **_VIT_B)
_register("vit_base_patch32_224", patch_size=32, **_VIT_B)
_register("vit_small_patch8_224", patch_size=8, num_classes=0, **_VIT_S)
_register("deit_tiny_patch16_224", patch_size=16, embed_dim=192, depth=12, num_heads=3)
_register("deit_small_patch16_224", patch_size=16, **_VIT_S)
_register("deit_base_patch16_224", patch_size=16, **_VIT_B)
_register("deit_tiny_distilled_patch16_224", patch_size=16, embed_dim=192, depth=12, num_heads=3, distilled=True)
_register("deit_small_distilled_patch16_224", patch_size=16, distilled=True, **_VIT_S)
_register("deit_base_distilled_patch16_224", patch_size=16, distilled=True, **_VIT_B)
_register("deit3_small_patch16_224", patch_size=16, no_embed_class=True, init_values=1e-6, **_VIT_S)
_register("deit3_base_patch16_224", patch_size=16, no_embed_class=True, init_values=1e-6, **_VIT_B)
_register(
    "vit_medium_patch16_gap_256",
    img_size=256,
    patch_size=16,
    embed_dim=512,
    depth=12,
    num_heads=8,
    class_token=False,
    global_pool="avg",
    qkv_bias=False,
    init_values=1e-6,
    fc_norm=False,
)
_register(
    "vit_base_patch16_reg4_gap_256",
    img_size=256,
    patch_size=16,
    class_token=False,
    no_embed_class=True,
    global_pool="avg",
    reg_tokens=4,
    **_VIT_B,
)
_register("vit_small_patch14_dinov2", img_size=518, patch_size=14, num_classes=0, init_values=1e-5, **_VIT_S)
_register(
    "vit_small_patch14_reg4_dinov2",
    img_size=518,
    patch_size=14,
    num_classes=0,
    init_values=1e-5,
    reg_tokens=4,
    no_embed_class=True,
    **_VIT_S,
)
_register(
    "vit_base_patch14_reg4_dinov2",
    img_size=518,
    patch_size=14,
    num_classes=0,
    init_values=1e-5,
    reg_tokens=4,
    no_embed_class=True,
    **_VIT_B,
)
# AST (Gong et al. 2021; HF ASTForAudioClassification): (B, 1, mel=128, frames=1024) spectrograms,
# 16x16 patches at stride 10 -> a (12, 101) grid; class + distillation tokens whose final-normed
# states are averaged, then LayerNorm + Linear (AST's mlp_head); HF's LayerNorm eps.
_register(
    "ast_base_patch16_s10_128x1024",
    img_size=(128, 1024),
    patch_size=16,
    patch_stride=10,
    in_chans=1,
    num_classes=527,
    distilled=True,
    global_pool="token_dist",
    head_norm=True,
    norm_eps=1e-12,
    **_VIT_B,
)


# CLIP image towers (OpenAI CLIP, OpenCLIP, TinyCLIP): LayerNorm (eps 1e-5) before the blocks, patch
# projection without bias, class-token pooling; num_classes as timm's default config (the image
# projection width, or 1000 for the fine-tuned weights). Rows: name, img_size, patch_size, embed_dim,
# depth, num_heads, num_classes, other keywords.
_CLIP = [
    ("vit_base_patch16_clip_224", 224, 16, 768, 12, 12, 1000, dict()),
    ("vit_base_patch16_clip_384", 384, 16, 768, 12, 12, 1000, dict()),
    ("vit_base_patch16_clip_quickgelu_224", 224, 16, 768, 12, 12, 512, dict(act_layer="quick_gelu")),
    ("vit_base_patch16_plus_clip_240", 240, 16, 896, 12, 14, 640, dict()),
    ("vit_base_patch32_clip_224", 224, 32, 768, 12, 12, 1000, dict()),
    ("vit_base_patch32_clip_256", 256, 32, 768, 12, 12, 512, dict()),
    ("vit_base_patch32_clip_384", 384, 32, 768, 12, 12, 1000, dict()),
    ("vit_base_patch32_clip_448", 448, 32, 768, 12, 12, 1000, dict()),
    ("vit_base_patch32_clip_quickgelu_224", 224, 32, 768, 12, 12, 512, dict(act_layer="quick_gelu")),
    ("vit_betwixt_patch32_clip_224", 224, 32, 640, 12, 10, 512, dict()),
    ("vit_giant_patch14_clip_224", 224, 14, 1408, 40, 16, 1024, dict(mlp_ratio=48 / 11)),
    ("vit_gigantic_patch14_clip_224", 224, 14, 1664, 48, 16, 1280, dict(mlp_ratio=64 / 13)),
    ("vit_gigantic_patch14_clip_378", 378, 14, 1664, 48, 16, 1280, dict(mlp_ratio=64 / 13)),
    (
        "vit_gigantic_patch14_clip_quickgelu_224",
        224,
        14,
        1664,
        48,
        16,
        1280,
        dict(mlp_ratio=64 / 13, act_layer="quick_gelu"),
    ),
    ("vit_huge_patch14_clip_224", 224, 14, 1280, 32, 16, 1000, dict()),
    ("vit_huge_patch14_clip_336", 336, 14, 1280, 32, 16, 1000, dict()),
    ("vit_huge_patch14_clip_378", 378, 14, 1280, 32, 16, 1024, dict()),
    ("vit_huge_patch14_clip_quickgelu_224", 224, 14, 1280, 32, 16, 1024, dict(act_layer="quick_gelu")),
    ("vit_huge_patch14_clip_quickgelu_378", 378, 14, 1280, 32, 16, 1024, dict(act_layer="quick_gelu")),
    ("vit_large_patch14_clip_224", 224, 14, 1024, 24, 16, 1000, dict()),
    ("vit_large_patch14_clip_336", 336, 14, 1024, 24, 16, 1000, dict()),
    ("vit_large_patch14_clip_quickgelu_224", 224, 14, 1024, 24, 16, 768, dict(act_layer="quick_gelu")),
    ("vit_large_patch14_clip_quickgelu_336", 336, 14, 1024, 24, 16, 768, dict(act_layer="quick_gelu")),
    ("vit_medium_patch16_clip_224", 224, 16, 512, 12, 8, 512, dict()),
    ("vit_medium_patch32_clip_224", 224, 32, 512, 12, 8, 512, dict()),
    ("vit_xsmall_patch16_clip_224", 224, 16, 256, 10, 4, 512, dict()),
]
for _name, _img, _patch, _dim, _depth, _heads, _classes, _extra in _CLIP:
    _register(
        _name,
        img_size=_img,
        patch_size=_patch,
        embed_dim=_dim,
        depth=_depth,
        num_heads=_heads,
        num_classes=_classes,
        pre_norm=True,
        norm_eps=1e-5,
        **_extra,
    )

# SigLIP image towers: no class token, attention pooling (global_pool="map") or, for the "_gap"
# names, average pooling without fc_norm; no classifier. Rows: name, img_size, patch_size,
# embed_dim, depth, num_heads, other keywords.
_SIGLIP = [
    ("vit_base_patch16_siglip_224", 224, 16, 768, 12, 12, dict()),
    ("vit_base_patch16_siglip_256", 256, 16, 768, 12, 12, dict()),
    ("vit_base_patch16_siglip_384", 384, 16, 768, 12, 12, dict()),
    ("vit_base_patch16_siglip_512", 512, 16, 768, 12, 12, dict()),
    ("vit_base_patch16_siglip_gap_224", 224, 16, 768, 12, 12, dict()),
    ("vit_base_patch16_siglip_gap_256", 256, 16, 768, 12, 12, dict()),
    ("vit_base_patch16_siglip_gap_384", 384, 16, 768, 12, 12, dict()),
    ("vit_base_patch16_siglip_gap_512", 512, 16, 768, 12, 12, dict()),
    ("vit_base_patch32_siglip_256", 256, 32, 768, 12, 12, dict(act_layer="gelu_tanh")),
    ("vit_base_patch32_siglip_gap_256", 256, 32, 768, 12, 12, dict(act_layer="gelu_tanh")),
    ("vit_giantopt_patch16_siglip_256", 256, 16, 1536, 40, 16, dict(act_layer="gelu_tanh")),
    ("vit_giantopt_patch16_siglip_384", 384, 16, 1536, 40, 16, dict(act_layer="gelu_tanh")),
    ("vit_giantopt_patch16_siglip_gap_256", 256, 16, 1536, 40, 16, dict(act_layer="gelu_tanh")),
    ("vit_giantopt_patch16_siglip_gap_384", 384, 16, 1536, 40, 16, dict(act_layer="gelu_tanh")),
    ("vit_large_patch16_siglip_256", 256, 16, 1024, 24, 16, dict()),
    ("vit_large_patch16_siglip_384", 384, 16, 1024, 24, 16, dict()),
    ("vit_large_patch16_siglip_512", 512, 16, 1024, 24, 16, dict(act_layer="gelu_tanh")),
    ("vit_large_patch16_siglip_gap_256", 256, 16, 1024, 24, 16, dict()),
    ("vit_large_patch16_siglip_gap_384", 384, 16, 1024, 24, 16, dict()),
    ("vit_large_patch16_siglip_gap_512", 512, 16, 1024, 24, 16, dict(act_layer="gelu_tanh")),
    ("vit_so400m_patch14_siglip_224", 224, 14, 1152, 27, 16, dict(mlp_ratio=3.7362)),
    ("vit_so400m_patch14_siglip_378", 378, 14, 1152, 27, 16, dict(mlp_ratio=3.7362)),
    ("vit_so400m_patch14_siglip_384", 384, 14, 1152, 27, 16, dict(mlp_ratio=3.7362)),
    ("vit_so400m_patch14_siglip_gap_224", 224, 14, 1152, 27, 16, dict(mlp_ratio=3.7362)),
    ("vit_so400m_patch14_siglip_gap_378", 378, 14, 1152, 27, 16, dict(mlp_ratio=3.7362)),
    ("vit_so400m_patch14_siglip_gap_384", 384, 14, 1152, 27, 16, dict(mlp_ratio=3.7362)),
    ("vit_so400m_patch14_siglip_gap_448", 448, 14, 1152, 27, 16, dict(mlp_ratio=3.7362)),
    ("vit_so400m_patch14_siglip_gap_896", 896, 14, 1152, 27, 16, dict(mlp_ratio=3.7362)),
    ("vit_so400m_patch16_siglip_256", 256, 16, 1152, 27, 16, dict(mlp_ratio=3.7362, act_layer="gelu_tanh")),
    ("vit_so400m_patch16_siglip_384", 384, 16, 1152, 27, 16, dict(mlp_ratio=3.7362, act_layer="gelu_tanh")),
    ("vit_so400m_patch16_siglip_512", 512, 16, 1152, 27, 16, dict(mlp_ratio=3.7362, act_layer="gelu_tanh")),
    ("vit_so400m_patch16_siglip_gap_256", 256, 16, 1152, 27, 16, dict(mlp_ratio=3.7362, act_layer="gelu_tanh")),
    ("vit_so400m_patch16_siglip_gap_384", 384, 16, 1152, 27, 16, dict(mlp_ratio=3.7362, act_layer="gelu_tanh")),
    ("vit_so400m_patch16_siglip_gap_512", 512, 16, 1152, 27, 16, dict(mlp_ratio=3.7362, act_layer="gelu_tanh")),
]
for _name, _img, _patch, _dim, _depth, _heads, _extra in _SIGLIP:
    _pool = dict(global_pool="avg", fc_norm=False) if "_gap_" in _name else dict(global_pool="map")
    _register(
        _name,
        img_size=_img,
        patch_size=_patch,
        embed_dim=_dim,
        depth=_depth,
        num_heads=_heads,
        num_classes=0,
        class_token=False,
        **_pool,
        **_extra,
    )
