"""What every rectvit model declares, whatever its family."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..grid import Size

__all__ = ["RectViTModel"]


class RectViTModel(nn.Module):
    """Base of every rectvit model: the attributes the factory, checkpoints and tools read.

    - ``model_config``: the constructor keywords, JSON-ready; ``type(model)(**model.model_config)``
      rebuilds the model as it is now (kept current with ``models._util.record_config``).
    - ``arch_name``: the registered name the model was built from ("" when built from its class).
    - ``load_report``: what the last checkpoint load adapted and on what basis (``None`` before one).
    - ``source_path``: the file the weights were loaded from; ``save_checkpoint`` never overwrites it.
    """

    model_config: dict[str, Any]
    arch_name: str = ""
    load_report: Any = None
    source_path: str | None = None

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ``RectViTError`` for anything this model cannot take as a ``(B, C, H, W)`` batch."""
        raise NotImplementedError

    @classmethod
    def table_grid(cls, config: dict[str, Any]) -> Size | None:
        """The ``(h, w)`` of the absolute position table a model built from ``config`` has (None: no table)."""
        return None
