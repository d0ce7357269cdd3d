"""Model names -> (model class, default config), timm's names and configs where the architecture is the same."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import RectViTError

__all__ = ["register_model", "build_model", "list_models", "get_model_entry", "ModelEntry"]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    cls: type[nn.Module]
    config: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, cls: type[nn.Module], **config: Any) -> None:
    """Register ``name`` as ``cls(**config)``; overrides given to ``create_model`` win over ``config``."""
    if name in _REGISTRY:
        raise RectViTError(f"model name {name!r} is registered twice.")
    _REGISTRY[name] = ModelEntry(name, cls, dict(config))


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style ``pattern`` (e.g. ``"vit_*"``), sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def get_model_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = [n for n in _REGISTRY if name.split("_")[0] in n][:8]
        raise RectViTError(
            f"unknown model {name!r}; expected a name from rectvit.list_models() such as {close or list_models()[:8]}."
        ) from None


def build_model(cls: type[nn.Module], config: dict[str, Any], overrides: dict[str, Any], what: str) -> nn.Module:
    """``cls(**config, **overrides)``; a keyword the class does not take is a ``RectViTError`` naming ``what``."""
    try:
        return cls(**{**config, **overrides})
    except TypeError as e:
        raise RectViTError(f"{what}: bad keyword argument(s) {sorted(overrides)}: {e}") from None
