"""Multi-head self-attention over a token sequence (timm's ``qkv`` / ``proj`` key names)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RectViTError
from .packed import PackedLayout, packed_attention

__all__ = ["Attention"]


class Attention(nn.Module):
    """``(B, N, C) -> (B, N, C)`` self-attention through ``F.scaled_dot_product_attention``."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        qk_norm: bool = False,
        proj_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        norm_eps: float = 1e-6,
    ):
        super().__init__()
        if dim % num_heads:
            raise RectViTError(f"embed_dim {dim} must be divisible by num_heads {num_heads}.")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)

    def _split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, N, C) -> 3 x (B, heads, N, head_dim)``."""
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        return self.q_norm(q), self.k_norm(k), v

    def _split_heads_queries(self, x: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries of the first ``m`` tokens only, keys and values of all: ``(B, heads, m | N, head_dim)``."""
        b, n, c = x.shape
        w, bias = self.qkv.weight, self.qkv.bias
        q = F.linear(x[:, :m], w[:c], None if bias is None else bias[:c])
        kv = F.linear(x, w[c:], None if bias is None else bias[c:])
        q = q.reshape(b, m, self.num_heads, self.head_dim).transpose(1, 2)
        k, v = kv.reshape(b, n, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        return self.q_norm(q), self.k_norm(k), v

    def forward(self, x: torch.Tensor, num_queries: int | None = None, packed: Any = None) -> torch.Tensor:
        """``(B, N, C) -> (B, N, C)``; with ``num_queries=m``, only the first ``m`` tokens attend: ``(B, m, C)``.

        With ``packed`` (a ``PackedLayout``; typed ``Any`` for TorchScript, which has no packed path),
        ``x`` is a packed ``(T, C)`` sequence and each image's tokens attend to that image's tokens only:
        ``(T, C)``, or ``(N * m, C)`` (the first ``m`` of each image).
        """
        if packed is not None and not torch.jit.is_scripting():
            return self._forward_packed(x, num_queries, packed)
        b, n, c = x.shape
        if num_queries is None:
            q, k, v = self._split_heads(x)
        else:
            q, k, v = self._split_heads_queries(x, num_queries)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        x = x.transpose(1, 2).reshape(b, q.shape[2], c)
        return self.proj_drop(self.proj(x))

    def _forward_packed(self, x: torch.Tensor, num_queries: int | None, layout: PackedLayout) -> torch.Tensor:
        t, c = x.shape
        heads, d = self.num_heads, self.head_dim
        if num_queries is None:
            q, k, v = self.qkv(x).reshape(t, 3, heads, d).unbind(1)
        else:
            w, bias = self.qkv.weight, self.qkv.bias
            rows = x[layout.first_rows(num_queries, x.device)]
            q = F.linear(rows, w[:c], None if bias is None else bias[:c]).reshape(-1, heads, d)
            k, v = F.linear(x, w[c:], None if bias is None else bias[c:]).reshape(t, 2, heads, d).unbind(1)
        dropout = self.attn_drop if self.training else 0.0
        x = packed_attention(self.q_norm(q), self.k_norm(k), v, layout, num_queries, dropout)
        return self.proj_drop(self.proj(x.reshape(-1, c)))
