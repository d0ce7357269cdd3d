"""Attention pooling with a learned latent query (SigLIP's MAP head; timm's ``AttentionPoolLatent`` keys)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RectViTError
from .mlp import Mlp

__all__ = ["AttentionPoolLatent"]


class AttentionPoolLatent(nn.Module):
    """``(B, N, C) -> (B, C)``: one learned query attends over the tokens, then a residual MLP.

    Keys: ``latent`` ``(1, 1, C)``, ``q`` and ``kv`` (query and key/value projections), ``proj``,
    ``norm`` and ``mlp`` (``fc1``/``fc2``). It has no position table, so any token count is accepted.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        norm_eps: float = 1e-6,
        act_layer: type[nn.Module] = nn.GELU,
    ):
        super().__init__()
        if dim % num_heads:
            raise RectViTError(f"attention pool: embed_dim {dim} must be divisible by num_heads {num_heads}.")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.latent = nn.Parameter(torch.zeros(1, 1, dim))
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer)
        nn.init.trunc_normal_(self.latent, std=dim**-0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, C) -> (B, C)``."""
        b, n, c = x.shape
        q = self.q(self.latent).reshape(1, 1, self.num_heads, self.head_dim).transpose(1, 2).expand(b, -1, -1, -1)
        k, v = self.kv(x).reshape(b, n, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)  # (B, heads, 1, head_dim)
        x = self.proj(x.transpose(1, 2).reshape(b, 1, c))
        x = x + self.mlp(self.norm(x))
        return x[:, 0]
