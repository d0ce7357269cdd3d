"""Model-agnostic building blocks shared by every model family."""

from .attention import Attention
from .block import Block
from .drop import DropPath, drop_path
from .layer_scale import LayerScale
from .mlp import Mlp
from .packed import PackedBatch, PackedLayout, PackedTokens, pack
from .patch_embed import PatchEmbed

__all__ = [
    "Attention",
    "Block",
    "DropPath",
    "drop_path",
    "LayerScale",
    "Mlp",
    "PatchEmbed",
    "PackedBatch",
    "PackedLayout",
    "PackedTokens",
    "pack",
]
