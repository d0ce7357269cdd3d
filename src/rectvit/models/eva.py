"""RoPE vision transformers: EVA-02, rope-ViT (axial and mixed RoPE), DINOv3 (timm's ``Eva`` family).

State dicts use timm's key names for the same configuration, with ViT's one deliberate difference:
an absolute table (``use_abs_pos_emb``) is ``pos_embed`` ``(1, h, w, C)``, the prefix tokens' rows
(where they have positions) ``prefix_pos_embed`` ``(1, P, C)``. The rotary embedding has no table:
its sin/cos are computed for each input's grid (``rectvit.layers.RotaryEmbedding2d``); only mixed
RoPE's learned frequencies are weights (``rope.freqs``). Everything that decides the rotation at
other grids (type, temperature, reference grid, coordinate normalisation) is in ``model_config``.

Data flow (shapes for a ``(B, in_chans, H, W)`` input on an ``(h, w)`` patch grid)::

    patch_embed        -> (B, h, w, C)
    + absolute table   -> (B, h, w, C)             when the model has one (resampled to (h, w))
    prefix tokens      -> (B, P + h*w, C)          [cls][registers] + patch tokens
    blocks             -> (B, P + h*w, C)          q, k of patch tokens rotated by RoPE(h, w)
    norm, pool, head   -> (B, num_classes)

``torch.jit.script(model)`` compiles ``forward``: RoPE and a resampled table are then computed per call
(the same numbers as the eager caches give) and gradient checkpointing is not applied.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import RectViTError
from ..grid import Size, to_size
from ..layers import DropPath, PatchEmbed
from ..layers.drop import drop_path_per_image
from ..layers.packed import PackedBatch, PackedLayout, PackedTokens, packed_attention, patch_tokens
from ..layers.patch_embed import is_fx_symbolic_tracing
from ..layers.rope import RotaryEmbedding2d, apply_rope, rope_sin_cos
from ..resample import resample_grid
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

__all__ = ["Eva"]

GLOBAL_POOLS = ("token", "avg", "avgmax", "max", "")
ROPE_TYPES = ("cat", "mixed", "dinov3")
_AUTO = "auto"


# One opaque call in an FX graph, so a traced model computes its rotation for each input's grid like the
# eager one (FX wraps by name per module; the table's call is wrapped in _util); TorchScript compiles it.
torch.fx.wrap("rope_sin_cos")


class EvaAttention(nn.Module):
    """``(B, N, C) -> (B, N, C)`` attention whose patch-token queries and keys are rotated by RoPE.

    ``qkv_layout="eva"``: fused ``qkv`` without bias plus ``q_bias``/``v_bias`` (the key has none), or
    ``q_proj``/``k_proj``/``v_proj`` with a bias-free key. ``"rope"``: timm's ``AttentionRope`` keys,
    ``qkv`` with its own bias (or three projections that all have one).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        qkv_fused: bool = True,
        qkv_layout: str = "eva",
        num_prefix_tokens: int = 1,
        scale_norm: bool = False,
        rotate_half: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        if dim % num_heads:
            raise RectViTError(f"embed_dim {dim} must be divisible by num_heads {num_heads}.")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.num_prefix_tokens = num_prefix_tokens
        self.rotate_half = rotate_half
        self.attn_drop = attn_drop
        eva = qkv_layout == "eva"
        self.q_bias = self.v_bias = None
        self.qkv = self.q_proj = self.k_proj = self.v_proj = None
        if qkv_fused:
            self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias and not eva)
            if qkv_bias and eva:
                self.q_bias = nn.Parameter(torch.zeros(dim))
                self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_proj = nn.Linear(dim, dim, bias=qkv_bias)
            self.k_proj = nn.Linear(dim, dim, bias=qkv_bias and not eva)
            self.v_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.norm = nn.LayerNorm(dim, eps=norm_eps) if scale_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, N, C) -> 3 x (B, heads, N, head_dim)``."""
        b, n, _ = x.shape
        if self.qkv is None:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
            return self._heads(q, b, n), self._heads(k, b, n), self._heads(v, b, n)
        bias: torch.Tensor | None = self.qkv.bias
        if self.q_bias is not None:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        return q, k, v

    def _heads(self, t: torch.Tensor, b: int, n: int) -> torch.Tensor:
        return t.reshape(b, n, self.num_heads, -1).transpose(1, 2)

    def _rotate(self, t: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        p = self.num_prefix_tokens
        rotated = apply_rope(t[:, :, p:], rope[0], rope[1], self.rotate_half)
        return torch.cat([t[:, :, :p], rotated], dim=2) if p > 0 else rotated

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None, packed: Any = None
    ) -> torch.Tensor:
        """``x`` ``(B, N, C)``; ``rope`` ``(sin, cos)`` ``(..., N - P, head_dim)`` for the patch tokens.

        With ``packed`` (a ``PackedLayout``; typed ``Any`` for TorchScript, which has no packed path), ``x``
        is a packed ``(T, C)`` sequence, ``rope`` ``(..., T, head_dim)`` for every row (prefix rows: sin 0,
        cos 1), and each image's tokens attend to that image's tokens only.
        """
        if packed is not None and not torch.jit.is_scripting():
            return self._forward_packed(x, rope, packed)
        b, n, c = x.shape
        q, k, v = self._qkv(x)
        if rope is not None:
            q, k = self._rotate(q, rope), self._rotate(k, rope)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        x = self.norm(x.transpose(1, 2).reshape(b, n, c))
        return self.proj_drop(self.proj(x))

    def _forward_packed(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None, layout: PackedLayout
    ) -> torch.Tensor:
        t, c = x.shape
        q, k, v = self._qkv(x.unsqueeze(0))  # (1, heads, T, head_dim)
        if rope is not None:  # every row rotated; prefix rows by the identity
            q = apply_rope(q, rope[0], rope[1], self.rotate_half)
            k = apply_rope(k, rope[0], rope[1], self.rotate_half)
        q, k, v = (u[0].transpose(0, 1) for u in (q, k, v))  # (T, heads, head_dim)
        x = packed_attention(q, k, v, layout, None, self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(self.norm(x.reshape(t, c))))


class Mlp(nn.Module):
    """fc1 -> GELU -> (norm) -> fc2, timm's ``Mlp`` keys (``norm`` is EVA-02's ``scale_mlp``)."""

    def __init__(self, dim: int, hidden: int, scale_norm: bool = False, drop: float = 0.0, norm_eps: float = 1e-6):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.norm = nn.LayerNorm(hidden, eps=norm_eps) if scale_norm else nn.Identity()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x))))))


class GluMlp(nn.Module):
    """SwiGLU with a packed ``fc1`` ``(2 * hidden, dim)``: ``silu(first half) * second half`` (timm's ``GluMlp``)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden * 2)
        self.act = nn.SiLU()
        self.drop1 = nn.Dropout(drop)
        self.norm = nn.Identity()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.fc1(x).chunk(2, dim=-1)
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(gate) * value))))


class SwiGLU(nn.Module):
    """SwiGLU with separate ``fc1_g``/``fc1_x`` and an optional ``norm`` (timm's ``SwiGLU``)."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        scale_norm: bool = False,
        align_to: int = 0,
        drop: float = 0.0,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        if align_to:
            hidden += -hidden % align_to
        self.fc1_g = nn.Linear(dim, hidden)
        self.fc1_x = nn.Linear(dim, hidden)
        self.act = nn.SiLU()
        self.drop1 = nn.Dropout(drop)
        self.norm = nn.LayerNorm(hidden, eps=norm_eps) if scale_norm else nn.Identity()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.fc1_g(x)) * self.fc1_x(x)
        return self.drop2(self.fc2(self.norm(self.drop1(x))))


class EvaBlock(nn.Module):
    """Pre-norm block, ``x + gamma_1 * attn(norm1(x), rope)``, then ``x + gamma_2 * mlp(norm2(x))`` (timm keys)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool,
        qkv_fused: bool,
        qkv_layout: str,
        mlp_ratio: float,
        swiglu_mlp: bool,
        swiglu_align_to: int,
        scale_mlp: bool,
        scale_attn_inner: bool,
        num_prefix_tokens: int,
        rotate_half: bool,
        init_values: float | None,
        proj_drop: float,
        attn_drop: float,
        drop_path: float,
        norm_eps: float,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = EvaAttention(
            dim,
            num_heads,
            qkv_bias=qkv_bias,
            qkv_fused=qkv_fused,
            qkv_layout=qkv_layout,
            num_prefix_tokens=num_prefix_tokens,
            scale_norm=scale_attn_inner,
            rotate_half=rotate_half,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            norm_eps=norm_eps,
        )
        self.gamma_1 = nn.Parameter(torch.full((dim,), float(init_values))) if init_values is not None else None
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        hidden = int(dim * mlp_ratio)
        if swiglu_mlp and (scale_mlp or swiglu_align_to):
            self.mlp = SwiGLU(dim, hidden, scale_mlp, swiglu_align_to, proj_drop, norm_eps)
        elif swiglu_mlp:
            self.mlp = GluMlp(dim, hidden, proj_drop)
        else:
            self.mlp = Mlp(dim, hidden, scale_mlp, proj_drop, norm_eps)
        self.gamma_2 = nn.Parameter(torch.full((dim,), float(init_values))) if init_values is not None else None
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None, packed: Any = None
    ) -> torch.Tensor:
        """``(B, N, C) -> (B, N, C)``; with ``packed`` (a ``PackedLayout``) a packed ``(T, C) -> (T, C)``
        whose attention stays within each image and whose stochastic depth drops whole images."""
        if packed is not None and not torch.jit.is_scripting():
            return self._forward_packed(x, rope, packed)
        y = self.attn(self.norm1(x), rope)
        x = x + self.drop_path1(y if self.gamma_1 is None else self.gamma_1 * y)
        y = self.mlp(self.norm2(x))
        return x + self.drop_path2(y if self.gamma_2 is None else self.gamma_2 * y)

    def _forward_packed(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None, layout: PackedLayout
    ) -> torch.Tensor:
        lengths = layout.lengths
        y = self.attn(self.norm1(x), rope, layout)
        x = x + drop_path_per_image(self.drop_path1, y if self.gamma_1 is None else self.gamma_1 * y, lengths)
        y = self.mlp(self.norm2(x))
        return x + drop_path_per_image(self.drop_path2, y if self.gamma_2 is None else self.gamma_2 * y, lengths)


class Eva(BlockStack, GridPositions, RectViTModel):
    """EVA-02 / rope-ViT / DINOv3 taking ``(B, in_chans, H, W)`` inputs of any rectangular size allowed.

    Constructor keywords are timm's ``Eva`` keywords (same names and defaults) with these differences:

    - ``norm_eps`` instead of ``norm_layer`` (1e-6 as timm's LayerNorm; DINOv3 1e-5).
    - ``rope_normalize_coords``: how RoPE coordinates follow the grid (see ``rectvit.layers.rope``):
      ``"auto"`` resolves to timm's behaviour and is recorded resolved in ``model_config``: ``"separate"``
      for EVA-02 (``ref_feat_shape``) and DINOv3, ``None`` (raw patch indices) for rope-ViT. ``"max"``/
      ``"min"`` encode the aspect ratio; index coordinates with a scheme need ``ref_feat_shape``.
    - Not supported (``RectViTError``): attention pooling (``global_pool="map"``), post-norm blocks,
      patch dropout, grouped-query attention, MRoPE, and training-time RoPE coordinate augmentation.
    """

    _stem_pattern = r"^cls_token|reg_token|pos_embed|prefix_pos_embed|patch_embed|norm_pre"

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
        qkv_fused: bool = True,
        mlp_ratio: float = 4.0,
        swiglu_mlp: bool = False,
        swiglu_align_to: int = 0,
        scale_mlp: bool = False,
        scale_attn_inner: bool = False,
        attn_type: str = "eva",
        drop_rate: float = 0.0,
        pos_drop_rate: float = 0.0,
        patch_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_eps: float = 1e-6,
        init_values: float | None = None,
        class_token: bool = True,
        num_reg_tokens: int = 0,
        no_embed_class: bool = False,
        use_abs_pos_emb: bool = True,
        use_rot_pos_emb: bool = False,
        rope_type: str = "cat",
        rope_grid_offset: float = 0.0,
        rope_grid_indexing: str = "ij",
        rope_temperature: float = 10000.0,
        rope_rotate_half: bool = False,
        rope_normalize_coords: str | None = _AUTO,
        use_post_norm: bool = False,
        use_pre_transformer_norm: bool = False,
        use_post_transformer_norm: bool | None = None,
        use_fc_norm: bool | None = None,
        dynamic_img_size: bool = False,
        dynamic_img_pad: bool = False,
        ref_feat_shape: int | tuple[int, int] | None = None,
        head_init_scale: float = 0.001,
    ):
        super().__init__()
        self.model_config = constructor_config(locals())
        _check_options(global_pool, class_token, attn_type, rope_type, use_post_norm, patch_drop_rate, num_reg_tokens)
        fc_norm = global_pool == "avg" if use_fc_norm is None else use_fc_norm
        post_norm = not fc_norm if use_post_transformer_norm is None else use_post_transformer_norm

        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.num_reg_tokens = num_reg_tokens
        self.num_prefix_tokens = int(class_token) + num_reg_tokens
        self.no_embed_class = no_embed_class
        self.grad_checkpointing = False
        self._pos_cache = GridTableCache()

        self.patch_embed = PatchEmbed(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            bias=not use_pre_transformer_norm,
            dynamic_img_pad=dynamic_img_pad,
            strict_img_size=not dynamic_img_size,
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, num_reg_tokens, embed_dim)) if num_reg_tokens else None
        self.dist_token = None  # GridPositions' prefix tokens: class and registers only
        h, w = self.patch_embed.grid_size
        self.pos_embed = nn.Parameter(torch.zeros(1, h, w, embed_dim)) if use_abs_pos_emb else None
        p = self.num_pos_prefix_tokens
        self.prefix_pos_embed = nn.Parameter(torch.zeros(1, p, embed_dim)) if use_abs_pos_emb and p else None
        self.pos_drop = nn.Dropout(pos_drop_rate)

        self.rope = None
        if use_rot_pos_emb:
            self.rope = self._make_rope(
                embed_dim, num_heads, depth, rope_type, rope_temperature, rope_normalize_coords, ref_feat_shape,
                rope_grid_offset, rope_grid_indexing, rope_rotate_half,
            )  # fmt: skip
            record_config(self, rope_normalize_coords=self.rope.normalize)
        self.norm_pre = nn.LayerNorm(embed_dim, eps=norm_eps) if use_pre_transformer_norm else nn.Identity()

        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            EvaBlock(
                embed_dim,
                num_heads,
                qkv_bias=qkv_bias,
                qkv_fused=qkv_fused,
                qkv_layout="rope" if attn_type == "rope" else "eva",
                mlp_ratio=mlp_ratio,
                swiglu_mlp=swiglu_mlp,
                swiglu_align_to=swiglu_align_to,
                scale_mlp=scale_mlp,
                scale_attn_inner=scale_attn_inner,
                num_prefix_tokens=self.num_prefix_tokens,
                rotate_half=rope_rotate_half,
                init_values=init_values,
                proj_drop=proj_drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=dpr[i],
                norm_eps=norm_eps,
            )
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps) if post_norm else nn.Identity()
        self.fc_norm = nn.LayerNorm(embed_dim, eps=norm_eps) if fc_norm else nn.Identity()
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.head_init_scale = head_init_scale
        self.init_weights()

    @staticmethod
    def _make_rope(
        dim, heads, depth, rope_type, temperature, normalize, ref, offset, indexing, rotate_half
    ) -> RotaryEmbedding2d:
        """timm's three RoPE types as one layer: 'cat' (EVA, rope-ViT axial), 'mixed', 'dinov3'."""
        head_dim = dim // heads
        ref = None if ref is None else to_size(ref, "ref_feat_shape")
        if rope_type == "dinov3":
            return RotaryEmbedding2d(
                head_dim, "axial", temperature=temperature, freq_scale=2 * math.pi, coords="centered",
                normalize="separate" if normalize == _AUTO else normalize, grid_offset=offset,
                grid_indexing=indexing, rotate_half=rotate_half,
            )  # fmt: skip
        if normalize == _AUTO:
            normalize = "separate" if ref is not None and rope_type == "cat" else None
        return RotaryEmbedding2d(
            head_dim, "axial" if rope_type == "cat" else "mixed", num_heads=heads, depth=depth,
            temperature=temperature, normalize=normalize, ref_grid=ref if normalize else None,
            grid_offset=offset if rope_type == "cat" else 0.0, grid_indexing=indexing, rotate_half=rotate_half,
        )  # fmt: skip

    @property
    def num_pos_prefix_tokens(self) -> int:
        """Prefix tokens that carry an absolute position vector (0 with ``no_embed_class``)."""
        return 0 if self.no_embed_class else self.num_prefix_tokens

    @torch.no_grad()
    def init_weights(self) -> None:
        """timm's initialisation: truncated normal (std .02) linears and tables, depth-scaled output
        projections, a head scaled by ``head_init_scale``."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for t in (self.pos_embed, self.prefix_pos_embed, self.cls_token, self.reg_token):
            if t is not None:
                nn.init.trunc_normal_(t, std=0.02)
        for i, blk in enumerate(self.blocks):
            blk.attn.proj.weight.div_(math.sqrt(2.0 * (i + 1)))
            blk.mlp.fc2.weight.div_(math.sqrt(2.0 * (i + 1)))
        if self.head_init_scale and isinstance(self.head, nn.Linear):
            self.head.weight.mul_(self.head_init_scale)

    # ----------------------------------------------------------------------------------------------
    # Sizes

    dynamic_img_size = switch_property(
        "True: any input size per forward (RoPE and tables follow); False: img_size only."
    )

    @classmethod
    def table_grid(cls, config: dict[str, Any]) -> Size | None:
        """The absolute table's grid for ``config`` (size arithmetic; None for RoPE-only models)."""
        c = with_defaults(cls, config)
        return config_patch_grid(c) if c["use_abs_pos_emb"] else None

    def set_input_size(self, img_size=None, patch_size=None) -> None:
        """Change the nominal input size and/or patch size; an absolute table is resampled to the new grid.

        RoPE needs nothing: it is computed for whatever grid an input has. Everything that can fail
        (sizes, the new kernel, the new table) is computed before the model changes.
        """
        plan = self.patch_embed.plan_input_size(img_size, patch_size)
        new_grid, table = plan["grid_size"], self.pos_embed
        if table is not None and new_grid != self.grid_size:
            with torch.no_grad():
                resampled = resample_grid(table.detach(), new_grid).clone()
            table = nn.Parameter(resampled, requires_grad=table.requires_grad)
        self.patch_embed.apply_input_size(plan)
        self.pos_embed = table
        self._pos_cache.clear()
        record_config(self, img_size=self.patch_embed.img_size, patch_size=self.patch_embed.patch_size)

    # ----------------------------------------------------------------------------------------------
    # Forward

    def _rope_like(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE's ``(sin, cos)`` for the grid of ``tokens`` ``(B, h, w, C)`` (``self.rope`` caches it in eager mode)."""
        grid = (tokens.shape[1], tokens.shape[2])  # not int(): sizes stay symbolic when traced
        if not torch.jit.is_scripting():
            if is_fx_symbolic_tracing():
                r = self.rope
                return rope_sin_cos(
                    grid, r.head_dim, r.mode, r.temperature, r.freq_scale, r.coords, r.normalize, r.ref_grid,
                    r.grid_offset, r.grid_indexing, r.rotate_half, r.freqs, tokens.device,
                )  # fmt: skip
        return self.rope(grid, tokens.device)

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, Size, tuple[torch.Tensor, torch.Tensor] | None]:
        """``(B, in_chans, H, W)`` -> tokens ``(B, P + h*w, C)``, the grid, and RoPE's ``(sin, cos)``."""
        x = self.patch_embed(x)
        grid = (x.shape[1], x.shape[2])  # not int(): sizes stay symbolic when traced
        rope: tuple[torch.Tensor, torch.Tensor] | None = None
        if self.rope is not None:
            rope = self._rope_like(x)
        x = self._with_positions(x)
        return self.norm_pre(self.pos_drop(x)), grid, rope

    def _mixed_rope(self) -> bool:
        """True when each block has its own RoPE (``rope[0][i]``, ``rope[1][i]``)."""
        if self.rope is not None:
            return self.rope.mode == "mixed"
        return False

    def _block(self, blk: nn.Module, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """One block, gradient-checkpointed when enabled (eager only; TorchScript calls ``blk`` directly)."""
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(blk, x, rope, use_reentrant=False)
        return blk(x, rope)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B, P + h*w, C)`` after the final norm (``PackedBatch -> PackedTokens``)."""
        if not torch.jit.is_scripting():
            if isinstance(x, PackedBatch):
                return self._forward_features_packed(x)
        x, _, rope = self._embed(x)
        mixed = self._mixed_rope()
        for i, blk in enumerate(self.blocks):
            r = rope
            if rope is not None and mixed:
                r = (rope[0][i], rope[1][i])
            if torch.jit.is_scripting():
                x = blk(x, r)
            else:
                x = self._block(blk, x, r)
        return self.norm(x)

    def pool(self, x: torch.Tensor, pool_type: str | None = None) -> torch.Tensor:
        """``(B, P + N, C) -> (B, C)`` (unchanged for ``""``); ``PackedTokens -> (N, C)``."""
        pool_type = self.global_pool if pool_type is None else pool_type
        if not torch.jit.is_scripting():
            if isinstance(x, PackedTokens) and pool_type:
                return self._pool_packed(x, pool_type)
        if pool_type == "":
            return x
        if pool_type == "token":
            return x[:, 0]
        x = x[:, self.num_prefix_tokens :]
        if pool_type == "avg":
            return x.mean(dim=1)
        if pool_type == "max":
            return x.amax(dim=1)
        return 0.5 * (x.amax(dim=1) + x.mean(dim=1))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, P + N, C) -> (B, num_classes)`` (``(B, C)`` with ``pre_logits``); ``PackedTokens`` -> ``(N, ...)``."""
        if not torch.jit.is_scripting():
            if isinstance(x, PackedTokens):
                return self._forward_head_packed(x, pre_logits)
        x = self.head_drop(self.fc_norm(self.pool(x)))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B, num_classes)``; a ``PackedBatch`` (``rectvit.pack``) gives
        ``(N, num_classes)``, row ``i`` that of image ``i`` alone."""
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
        """Features of selected blocks, as timm returns them: ``(B, C, h, w)`` maps on the input's own grid
        (``"NCHW"``) or ``(B, h*w, C)`` (``"NLC"``); with ``return_prefix_tokens`` ``(map, (B, P, C))`` pairs.
        Returns the list when ``intermediates_only``, else ``(forward_features output, list)``; with
        ``output_dict`` a dict as ``VisionTransformer.forward_intermediates`` gives (``image_intermediates``,
        ``image_intermediates_prefix`` with return_prefix_tokens, ``image_features`` unless intermediates_only)."""
        if output_fmt not in ("NCHW", "NLC"):
            raise RectViTError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}.")
        if isinstance(x, PackedBatch):
            raise RectViTError(
                "forward_intermediates takes a (B, C, H, W) batch, not a PackedBatch; for per-image maps of a "
                "packed batch use model.forward_features(packed).feature_maps()."
            )
        take = take_indices(len(self.blocks), indices)
        x, (h, w), rope = self._embed(x)
        mixed = self._mixed_rope()
        outs = []
        for i in range(max(take) + 1 if stop_early else len(self.blocks)):
            x = self._block(self.blocks[i], x, (rope[0][i], rope[1][i]) if rope is not None and mixed else rope)
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

    def _embed_packed(self, batch: PackedBatch) -> tuple[PackedTokens, tuple[torch.Tensor, torch.Tensor] | None]:
        """Patch embedding per input shape, each image's own positions and prefix tokens, packed; and RoPE's
        ``(sin, cos)`` for every packed row: ``(T, head_dim)`` (axial) or ``(depth, heads, T, head_dim)``
        (mixed), each image's patch rows those of its own grid, prefix rows the identity (sin 0, cos 1)."""
        batch.check_each_shape(self.check_input)
        images, groups = batch.images, batch.groups()
        n, p = len(images), self.num_prefix_tokens
        rows: list[Any] = [None] * n
        grids: list[Any] = [None] * n
        sins: list[Any] = [None] * n
        coss: list[Any] = [None] * n
        for group, x in zip(groups, patch_tokens(self.patch_embed, images, groups)):
            grid = (int(x.shape[1]), int(x.shape[2]))
            rope = self.rope(grid, x.device) if self.rope is not None else None
            for i, t in zip(group, self._with_positions(x).unbind(0)):
                rows[i], grids[i] = t, grid
                if rope is not None:
                    sins[i], coss[i] = rope
        layout = PackedLayout(tuple(grids), p, batch.attention)
        tokens = PackedTokens(self.norm_pre(self.pos_drop(torch.cat(rows))), layout)
        if self.rope is None:
            return tokens, None
        if p:
            prefix = sins[0].new_zeros(sins[0].shape[:-2] + (p, sins[0].shape[-1]))
            sins = [u for s in sins for u in (prefix, s)]
            coss = [u for c in coss for u in (prefix + 1.0, c)]
        return tokens, (torch.cat(sins, dim=-2), torch.cat(coss, dim=-2))

    def _forward_features_packed(self, batch: PackedBatch) -> PackedTokens:
        x, rope = self._embed_packed(batch)
        tokens, layout, mixed = x.tokens, x.layout, self._mixed_rope()
        for i, blk in enumerate(self.blocks):
            r = (rope[0][i], rope[1][i]) if rope is not None and mixed else rope
            if self.grad_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(blk, tokens, r, layout, use_reentrant=False)
            else:
                tokens = blk(tokens, r, layout)
        return x.replace(self.norm(tokens))

    def _pool_packed(self, x: PackedTokens, pool_type: str) -> torch.Tensor:
        if pool_type == "token":
            return x.prefix_tokens()[:, 0]
        return x.pool(pool_type)  # patch tokens only, as the unpacked pool

    def _forward_head_packed(self, x: PackedTokens, pre_logits: bool):
        if not self.global_pool:  # no pooling: the head runs on every token
            y = self.head_drop(self.fc_norm(x.tokens))
            return x.replace(y if pre_logits else self.head(y))
        y = self.head_drop(self.fc_norm(self.pool(x)))
        return y if pre_logits else self.head(y)

    # ----------------------------------------------------------------------------------------------
    # Training utilities

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new (freshly initialised) head for ``num_classes``; optionally a new pooling."""
        if global_pool is not None:
            _check_options(global_pool, self.cls_token is not None, "eva", "cat", False, 0.0, 0)
            self.global_pool = global_pool
            record_config(self, global_pool=global_pool, use_fc_norm=not isinstance(self.fc_norm, nn.Identity))
        self.num_classes = num_classes
        record_config(self, num_classes=num_classes)
        device = self.cls_token.device if self.cls_token is not None else next(self.parameters()).device
        self.head = (nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()).to(device)
        self.head.train(self.training)

    def no_weight_decay(self) -> set[str]:
        nwd = {"pos_embed", "prefix_pos_embed", "cls_token", "reg_token"}
        return nwd | ({"rope.freqs"} if self.rope is not None and self.rope.freqs is not None else set())

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the blocks after the deepest of ``indices`` (and the final norm / the head), as timm; returns
        the kept indices (non-negative). ``model_config`` records the result."""
        take = self._prune_blocks(indices, prune_norm)
        if prune_head:
            self.fc_norm = nn.Identity()
            self.reset_classifier(0, "")
        record_config(self, use_post_transformer_norm=not isinstance(self.norm, nn.Identity))
        return take


def _check_options(global_pool, class_token, attn_type, rope_type, post_norm, patch_drop_rate, reg_tokens) -> None:
    if global_pool not in GLOBAL_POOLS:
        raise RectViTError(
            f"global_pool must be one of {GLOBAL_POOLS}, got {global_pool!r} "
            "(attention pooling 'map' is not supported)."
        )
    if global_pool == "token" and not class_token:
        raise RectViTError("global_pool='token' reads the class token, but class_token=False; use 'avg'.")
    if attn_type not in ("eva", "rope"):
        raise RectViTError(f"attn_type must be 'eva' or 'rope', got {attn_type!r}.")
    if rope_type not in ROPE_TYPES:
        raise RectViTError(f"rope_type must be one of {ROPE_TYPES}, got {rope_type!r}.")
    if post_norm:
        raise RectViTError("use_post_norm=True (post-norm EVA blocks) is not supported; pass False.")
    if patch_drop_rate:
        raise RectViTError(f"patch_drop_rate is not supported, got {patch_drop_rate}; pass 0.")
    if reg_tokens < 0:
        raise RectViTError(f"num_reg_tokens must be >= 0, got {reg_tokens}.")


# --------------------------------------------------------------------------------------------------
# Registry: timm 1.0.31's names and model_args (img_size and num_classes from timm's default configs).


def _register(name: str, **config: Any) -> None:
    register_model(name, Eva, **config)


_EVA02 = dict(patch_size=14, mlp_ratio=4 * 2 / 3, swiglu_mlp=True, use_rot_pos_emb=True, ref_feat_shape=(16, 16))
_EVA02_T = dict(embed_dim=192, depth=12, num_heads=3, **_EVA02)
_EVA02_S = dict(embed_dim=384, depth=12, num_heads=6, **_EVA02)
_EVA02_B = dict(embed_dim=768, depth=12, num_heads=12, qkv_fused=False, scale_mlp=True, **_EVA02)
_EVA02_L = dict(embed_dim=1024, depth=24, num_heads=16, qkv_fused=False, scale_mlp=True, **_EVA02)
_register("eva02_tiny_patch14_224", img_size=224, num_classes=0, **_EVA02_T)
_register("eva02_small_patch14_224", img_size=224, num_classes=0, **_EVA02_S)
_register("eva02_base_patch14_224", img_size=224, num_classes=0, **_EVA02_B)
_register("eva02_large_patch14_224", img_size=224, num_classes=0, **_EVA02_L)
_register("eva02_tiny_patch14_336", img_size=336, **_EVA02_T)
_register("eva02_small_patch14_336", img_size=336, **_EVA02_S)
_register("eva02_base_patch14_448", img_size=448, **_EVA02_B)
_register("eva02_large_patch14_448", img_size=448, **_EVA02_L)

_register(
    "vit_base_patch16_rope_reg1_gap_256",
    img_size=256, patch_size=16, embed_dim=768, depth=12, num_heads=12, qkv_fused=True, qkv_bias=True,
    init_values=1e-5, class_token=False, num_reg_tokens=1, use_rot_pos_emb=True, use_abs_pos_emb=False,
    ref_feat_shape=(16, 16),
)  # fmt: skip

# rope-ViT (Heo et al. 2024): DeiT-III-style ViTs, axial RoPE (temperature 100) or mixed (10), 'xy' axes.
_SIZES = dict(small=(384, 6, 12), base=(768, 12, 12), large=(1024, 16, 24))
for _size, (_dim, _heads, _depth) in _SIZES.items():
    for _mixed in (False, True):
        for _ape in (False, True):
            _name = f"vit_{_size}_patch16_rope{'_mixed' if _mixed else ''}{'_ape' if _ape else ''}_224"
            _extra = dict(rope_type="mixed") if _mixed else {}
            if _ape:
                _extra["no_embed_class"] = True
            _register(
                _name, img_size=224, patch_size=16, embed_dim=_dim, depth=_depth, num_heads=_heads, mlp_ratio=4,
                attn_type="rope", qkv_bias=True, init_values=1e-5, class_token=True, global_pool="token",
                use_abs_pos_emb=_ape, use_rot_pos_emb=True, rope_grid_indexing="xy",
                rope_temperature=10.0 if _mixed else 100.0, **_extra,
            )  # fmt: skip

# DINOv3 (Simeoni et al. 2025): 4 registers, centered coordinates normalised per axis, rotate-half pairs.
_DINOV3 = dict(
    img_size=256, patch_size=16, num_classes=0, dynamic_img_size=True, init_values=1e-5, rope_type="dinov3",
    rope_temperature=100, rope_rotate_half=True, use_rot_pos_emb=True, use_abs_pos_emb=False, num_reg_tokens=4,
    use_fc_norm=False, norm_eps=1e-5,
)  # fmt: skip
for _size, (_dim, _heads, _depth) in _SIZES.items():
    _register(f"vit_{_size}_patch16_dinov3", embed_dim=_dim, depth=_depth, num_heads=_heads, qkv_bias=False, **_DINOV3)
    _register(
        f"vit_{_size}_patch16_dinov3_qkvb", embed_dim=_dim, depth=_depth, num_heads=_heads, qkv_bias=True, **_DINOV3
    )
