"""Step one of loading: detect a checkpoint's layout and rename its keys to rectvit's (timm's) names.

``convert`` returns a ``Converted``: the state dict in timm/rectvit key names plus what the file
records about itself (a position grid from an HF or timm config, Swin windows and the model config
from our metadata). Nothing here looks at a model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import CheckpointError
from ..grid import Size
from .hf import HFCheckpoint, from_hf
from .io import RawCheckpoint, read_checkpoint, unwrap_state_dict
from .timm import is_flat_pos_embed, is_tag_repository, is_timm_config, timm_config_grid

__all__ = ["Converted", "convert", "as_converted"]


@dataclass
class Converted:
    """A checkpoint in timm/rectvit key names, with what it records about itself."""

    layout: str
    state_dict: dict[str, torch.Tensor]
    recorded_grid: Size | None = None  # the position grid an HF or timm config records
    suggested_grid: Size | None = None  # a grid a config suggests without recording it (timm's default size)
    recorded_windows: dict[str, list[int]] = field(default_factory=dict)  # bias-table windows (ours, HF BEiT's)
    config: dict[str, Any] | None = None  # our metadata's model config
    hf: HFCheckpoint | None = None  # an HF checkpoint's family row and config (what model it describes)
    dropped: list[str] = field(default_factory=list)
    raw: RawCheckpoint | None = None


def _metadata_json(raw: RawCheckpoint, key: str, default: Any) -> Any:
    try:
        return json.loads(raw.metadata.get(key, json.dumps(default)))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{raw.path}: rectvit metadata {key!r} is not valid JSON ({e}).") from None


def convert(raw: RawCheckpoint) -> Converted:
    """Detect a checkpoint's layout and rename its keys to timm's (rectvit's) names."""
    sd = dict(raw.state_dict)
    if "rectvit_format_version" in raw.metadata:
        return Converted(
            "rectvit",
            sd,
            recorded_windows=_metadata_json(raw, "relative_windows", {}),
            config=_metadata_json(raw, "config", {}),
            raw=raw,
        )
    if is_timm_config(raw.config):
        grid, windows, recorded = timm_config_grid(raw.config)
        if raw.hub is not None and is_tag_repository(raw.config, raw.hub.repo_id):
            recorded = True  # timm's own repository of the tag: its input size is the tag's record
        windows = {k: list(w) for k, w in windows.items()} if recorded else {}
        return Converted("timm", sd, grid if recorded else None, None if recorded else grid, windows, raw=raw)
    hf = from_hf(sd, raw.config)
    if hf is not None:
        return Converted(
            f"hf-{hf.family.name}",
            hf.state_dict,
            hf.recorded_grid,
            recorded_windows=hf.recorded_windows,
            hf=hf,
            dropped=hf.dropped,
            raw=raw,
        )
    table = sd.get("pos_embed")
    if is_flat_pos_embed(sd):
        layout = "timm"
    elif isinstance(table, torch.Tensor) and table.dim() == 4:
        layout = "rectvit"
    else:
        layout = "timm/rectvit (no absolute position table; the layouts agree)"
    return Converted(layout, sd, raw=raw)


def as_converted(source: Any, cache_dir: str | os.PathLike | None = None) -> Converted:
    """``convert`` a path, an HF/timm folder, ``hf-hub:org/name`` (``cache_dir``: huggingface_hub's cache) or an
    in-memory state dict."""
    if isinstance(source, dict):
        return convert(RawCheckpoint(unwrap_state_dict(source, "state dict")))
    if isinstance(source, (str, os.PathLike)):
        return convert(read_checkpoint(source, cache_dir))
    raise CheckpointError(f"expected a checkpoint path, an HF folder or a state dict, got {type(source).__name__}.")
