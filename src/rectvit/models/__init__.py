"""Model families. Importing a family module registers its names."""

from . import (
    eva,  # noqa: F401
    hybrid,  # noqa: F401
    swin,  # noqa: F401
    vit,  # noqa: F401
)
from .registry import create_model, get_model_entry, list_models, register_model

__all__ = ["create_model", "get_model_entry", "list_models", "register_model"]
