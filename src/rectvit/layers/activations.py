"""Activations by timm's names, so a configuration names them as a string (``act_layer="quick_gelu"``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RectViTError

__all__ = ["QuickGELU", "GELUTanh", "get_act_layer", "ACT_LAYERS"]


class QuickGELU(nn.Module):
    """OpenAI CLIP's ``x * sigmoid(1.702 x)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class GELUTanh(nn.Module):
    """GELU with the tanh approximation (SigLIP's ``gelu_pytorch_tanh``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")


ACT_LAYERS: dict[str, type[nn.Module]] = {
    "gelu": nn.GELU,
    "gelu_tanh": GELUTanh,
    "quick_gelu": QuickGELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
}


def get_act_layer(name: str) -> type[nn.Module]:
    """The activation class for one of timm's names in ``ACT_LAYERS``; ``RectViTError`` for another."""
    try:
        return ACT_LAYERS[name]
    except (KeyError, TypeError):
        raise RectViTError(f"act_layer must be one of {sorted(ACT_LAYERS)}, got {name!r}.") from None
