"""Stochastic depth."""

from __future__ import annotations

import torch
from torch import nn


def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False) -> torch.Tensor:
    """Zero whole samples with probability ``drop_prob`` and rescale the rest (identity in eval)."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty([x.shape[0]] + [1] * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def drop_path_per_image(drop: nn.Module, x: torch.Tensor, lengths: tuple[int, ...]) -> torch.Tensor:
    """``drop`` (a ``DropPath`` or an identity) on a packed ``(T, C)`` branch: whole images are dropped
    (``lengths`` tokens each, in order), not single tokens, as the unpacked block drops whole samples."""
    if not isinstance(drop, DropPath) or not drop.training or drop.drop_prob == 0.0:
        return drop(x)
    keep = 1.0 - drop.drop_prob
    mask = x.new_empty(len(lengths)).bernoulli_(keep) / keep
    return x * mask.repeat_interleave(torch.tensor(lengths, device=x.device), output_size=x.shape[0])[:, None]
