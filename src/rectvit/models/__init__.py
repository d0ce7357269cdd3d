"""Model families. Importing a family module registers its names."""

from . import (
    beit,  # noqa: F401
    eva,  # noqa: F401
    hybrid,  # noqa: F401
    swin,  # noqa: F401
    swin_cr,  # noqa: F401
    vit,  # noqa: F401
)
from .registry import get_model_entry, list_models, list_pretrained, register_model

__all__ = ["get_model_entry", "list_models", "list_pretrained", "register_model"]
