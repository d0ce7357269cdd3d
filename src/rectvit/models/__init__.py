"""Model families. Importing a family module registers its names."""

from . import (
    hybrid,  # noqa: F401
    swin,  # noqa: F401
    vit,  # noqa: F401
)
from .registry import get_model_entry, list_models, list_pretrained, register_model

__all__ = ["get_model_entry", "list_models", "list_pretrained", "register_model"]
