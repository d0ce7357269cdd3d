"""Model-agnostic building blocks shared by every model family."""

from .activations import GELUTanh, QuickGELU, get_act_layer
from .attention import Attention
from .attention_pool import AttentionPoolLatent
from .block import Block
from .drop import DropPath, drop_path
from .layer_scale import LayerScale
from .mlp import Mlp
from .packed import PackedBatch, PackedLayout, PackedTokens, pack
from .patch_embed import PatchEmbed
from .rope import RotaryEmbedding2d, apply_rope

__all__ = ["Attention", "Block", "DropPath", "drop_path", "LayerScale", "Mlp", "PatchEmbed"]
__all__ += ["AttentionPoolLatent", "GELUTanh", "QuickGELU", "get_act_layer"]
__all__ += ["RotaryEmbedding2d", "apply_rope"]
__all__ += ["PackedBatch", "PackedLayout", "PackedTokens", "pack"]
