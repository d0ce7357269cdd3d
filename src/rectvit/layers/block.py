"""The pre-norm transformer block (timm's ``Block`` key names)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .attention import Attention
from .drop import DropPath, drop_path_per_image
from .layer_scale import LayerScale
from .mlp import Mlp
from .packed import PackedLayout

__all__ = ["Block"]


class Block(nn.Module):
    """``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``; each branch optionally LayerScaled and path-dropped.

    ``(B, N, C) -> (B, N, C)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        qk_norm: bool = False,
        proj_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        init_values: float | None = None,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
        act_layer: type[nn.Module] = nn.GELU,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(
            dim,
            num_heads,
            qkv_bias=qkv_bias,
            qk_norm=qk_norm,
            proj_bias=proj_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            norm_eps=norm_eps,
        )
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, bias=proj_bias, drop=proj_drop)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, num_queries: int | None = None, packed: Any = None) -> torch.Tensor:
        """``(B, N, C) -> (B, N, C)``; with ``num_queries=m`` only the first ``m`` tokens: ``(B, m, C)``.

        The ``m`` outputs equal the first ``m`` rows of the full block's output (up to float rounding);
        the other tokens' attention queries and MLP are never computed. With ``packed``, ``x`` is a
        packed ``(T, C)`` sequence (``packed`` is a ``PackedLayout``; see ``rectvit.layers.packed``): attention
        stays within each image, stochastic depth drops whole images, and ``num_queries=m`` keeps each
        image's first ``m``. TorchScript compiles the unpacked path only.
        """
        if packed is not None and not torch.jit.is_scripting():
            return self._forward_packed(x, num_queries, packed)
        attn = self.attn(self.norm1(x), num_queries)
        if num_queries is not None:
            x = x[:, :num_queries]
        x = x + self.drop_path1(self.ls1(attn))
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return x

    def _forward_packed(self, x: torch.Tensor, num_queries: int | None, layout: PackedLayout) -> torch.Tensor:
        attn = self.attn(self.norm1(x), num_queries, layout)
        if num_queries is not None:
            x = x[layout.first_rows(num_queries, x.device)]
        lengths = layout.lengths if num_queries is None else (num_queries,) * len(layout)
        x = x + drop_path_per_image(self.drop_path1, self.ls1(attn), lengths)
        x = x + drop_path_per_image(self.drop_path2, self.ls2(self.mlp(self.norm2(x))), lengths)
        return x
