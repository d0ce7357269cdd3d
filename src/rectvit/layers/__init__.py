"""Model-agnostic building blocks shared by every model family."""

from .drop import DropPath, drop_path
from .layer_scale import LayerScale
from .mlp import Mlp

__all__ = ["DropPath", "drop_path", "LayerScale", "Mlp"]
