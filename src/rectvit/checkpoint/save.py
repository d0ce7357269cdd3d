"""Writing rectvit checkpoints: ``.safetensors`` with tables stored 2-D and the model described in metadata."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from .writer import sources_of, write_safetensors

__all__ = ["save_checkpoint", "FORMAT_VERSION"]

FORMAT_VERSION = "1"


def _json_default(value: Any) -> Any:
    """numpy / torch scalars and tuples in a config -> plain JSON values."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} in a model config is not JSON-serialisable")


def save_checkpoint(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model`` as rectvit ``.safetensors``: tables 2-D, metadata with format version, arch and config.

    Swin bias tables' windows are recorded too. Written through ``checkpoint.writer.write_atomic``:
    atomic, with the umask's permissions, and never onto a file the model was loaded from
    (``model.source_files``, by any spelling).
    """
    config = getattr(model, "model_config", None)
    if config is None:
        raise CheckpointError(
            f"{type(model).__name__} has no model_config; save_checkpoint writes rectvit models "
            "(rectvit.create_model / load_model)."
        )
    windows = {
        f"{name}.relative_position_bias_table": [int(v) for v in module.window_size]
        for name, module in model.named_modules()
        if isinstance(getattr(module, "relative_position_bias_table", None), torch.Tensor)
    }
    cls = type(model)
    try:
        config_json = json.dumps(config, default=_json_default)
        cfg_json = json.dumps(getattr(model, "pretrained_cfg", None), default=_json_default)
    except TypeError as e:
        raise CheckpointError(f"cannot record the model config: {e}.") from None
    metadata = {
        "format": "pt",
        "rectvit_format_version": FORMAT_VERSION,
        "arch": getattr(model, "arch_name", "") or "",
        "model_class": f"{cls.__module__}.{cls.__qualname__}",
        "config": config_json,
        "relative_windows": json.dumps(windows),
        "pretrained_cfg": cfg_json,  # timm's data config (tag, mean, std...), restored by load_model
    }
    return write_safetensors(model.state_dict(), path, metadata, protect=sources_of(model))
