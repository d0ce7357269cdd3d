"""rectvit: vision transformers whose input shape is a free choice, without losing the position grid."""

from .checkpoint import LoadReport, load_checkpoint, save_checkpoint, to_timm_state_dict
from .checkpoint.evidence import smoothness
from .errors import AmbiguousGridError, CheckpointError, InputSizeError, RectViTError
from .factory import create_model, load_model
from .grid import factorizations, patch_grid, to_size
from .models import list_models, list_pretrained
from .resample import resample_abs_pos_embed, resample_grid, resample_patch_embed, sincos_2d
from .variable import PackedBatch, PackedTokens, forward_variable, pack

__version__ = "0.1.0"

__all__ = [
    "RectViTError",
    "InputSizeError",
    "AmbiguousGridError",
    "CheckpointError",
    "to_size",
    "patch_grid",
    "factorizations",
    "smoothness",
    "resample_grid",
    "resample_abs_pos_embed",
    "resample_patch_embed",
    "sincos_2d",
    "create_model",
    "list_models",
    "list_pretrained",
    "to_timm_state_dict",
    "load_checkpoint",
    "forward_variable",
    "pack",
    "PackedBatch",
    "PackedTokens",
    "load_model",
    "save_checkpoint",
    "LoadReport",
]
