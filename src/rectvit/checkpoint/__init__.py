"""Checkpoints that never lose their grid: read -> convert layout -> adapt shapes to the model -> load.

Public API: ``load_checkpoint``, ``save_checkpoint``, ``load_model`` and ``LoadReport``. Layouts read:
rectvit (our ``.safetensors`` with metadata; tables stored 2-D), timm (flat ``pos_embed``), and
Hugging Face ViT / DeiT / AST (state dicts or ``save_pretrained`` folders).
"""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..grid import Size
from ..models.registry import build_model
from .adapt import (
    LoadReport,
    adapt_classifier,
    adapt_patch_embed,
    adapt_pos_embed,
    adapt_relative_position_bias,
    architecture_default,
    check_finite,
    check_keys,
)
from .hf import hf_family, hf_grid, hf_model_kwargs, hf_to_timm, is_hf_layout
from .io import RawCheckpoint, read_checkpoint, unwrap_state_dict, write_safetensors
from .timm import flat_pos_embed_to_grid, is_flat_pos_embed, is_timm_config, timm_config_grid, timm_config_model

__all__ = [
    "load_checkpoint",
    "save_checkpoint",
    "load_model",
    "LoadReport",
    "read_checkpoint",
    "convert",
    "Converted",
    "FORMAT_VERSION",
]

FORMAT_VERSION = "1"


@dataclass
class Converted:
    """A checkpoint in timm/rectvit key names, with what it records about itself."""

    layout: str
    state_dict: dict[str, torch.Tensor]
    recorded_grid: Size | None = None  # the position grid an HF or timm config records
    suggested_grid: Size | None = None  # a grid a config suggests without recording it (timm's default size)
    recorded_windows: dict[str, list[int]] = field(default_factory=dict)  # Swin bias-table windows (ours)
    config: dict[str, Any] | None = None  # our metadata's model config
    hf_family: str | None = None
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
        grid, recorded = timm_config_grid(raw.config)
        return Converted("timm", sd, grid if recorded else None, None if recorded else grid, raw=raw)
    if raw.config is not None or is_hf_layout(sd):
        family = hf_family(sd, raw.config)
        sd, dropped = hf_to_timm(sd)
        recorded = hf_grid(family, raw.config) if raw.config else None
        return Converted(f"hf-{family}", sd, recorded, hf_family=family, dropped=dropped, raw=raw)
    table = sd.get("pos_embed")
    if is_flat_pos_embed(sd):
        layout = "timm"
    elif isinstance(table, torch.Tensor) and table.dim() == 4:
        layout = "rectvit"
    else:
        layout = "timm/rectvit (no absolute position table; the layouts agree)"
    return Converted(layout, sd, raw=raw)


def _as_converted(source: Any) -> Converted:
    if isinstance(source, dict):
        return convert(RawCheckpoint(unwrap_state_dict(source, "state dict")))
    if isinstance(source, (str, os.PathLike)):
        return convert(read_checkpoint(source))
    raise CheckpointError(f"expected a checkpoint path, an HF folder or a state dict, got {type(source).__name__}.")


def _drop_derived(sd: dict[str, torch.Tensor], model: nn.Module, report: LoadReport) -> None:
    """Drop buffers the model derives itself (e.g. Swin's relative_position_index, attn_mask)."""
    derived = {name for name, _ in model.named_buffers()} - set(model.state_dict())
    for key in [k for k in sd if k in derived]:
        del sd[key]
        report.dropped.append(key)


def _load_converted(model: nn.Module, conv: Converted, source_grid, strict: bool) -> LoadReport:
    sd = dict(conv.state_dict)
    report = LoadReport(layout=conv.layout, dropped=list(conv.dropped))
    table = sd.get("pos_embed")
    default = architecture_default(model)
    if is_flat_pos_embed(sd):
        suggested = (conv.suggested_grid, "timm config's default input size") if conv.suggested_grid else None
        flat_pos_embed_to_grid(sd, model, report, source_grid, conv.recorded_grid, default, suggested)
    elif isinstance(table, torch.Tensor) and table.dim() == 4:
        report.source_grid, report.grid_basis = (int(table.shape[1]), int(table.shape[2])), "stored 2-D table"
    check_finite(sd, report)
    adapt_pos_embed(sd, model, report)
    adapt_patch_embed(sd, model, report)
    adapt_relative_position_bias(sd, model, report, conv.recorded_windows, default)
    _drop_derived(sd, model, report)
    check_keys(sd, model, strict, report, heads=False)
    adapt_classifier(sd, model, strict, report)
    check_keys(sd, model, strict, report)
    model.load_state_dict(sd, strict=False)
    if conv.raw is not None and conv.raw.path is not None:
        model._rectvit_source = str(conv.raw.path)
    return report


def load_checkpoint(
    model: nn.Module,
    source: str | os.PathLike | dict[str, torch.Tensor],
    *,
    source_grid=None,
    strict: bool = True,
) -> LoadReport:
    """Load ``source`` (a path, an HF folder or a state dict) into ``model``, adapting it; return a ``LoadReport``.

    The layout (rectvit, timm, HF ViT/DeiT/AST) is detected and converted; a flat position table's
    grid is resolved as DESIGN invariant 2 says (``source_grid=(h, w)`` first); tables, patch kernel,
    input channels and Swin bias tables are adapted to the model. ``strict=False`` drops a
    classifier of another size instead of raising.
    """
    return _load_converted(model, _as_converted(source), source_grid, strict)


def _json_default(value: Any) -> Any:
    """numpy / torch scalars and tuples in a config -> plain JSON values."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} in a model config is not JSON-serialisable")


def save_checkpoint(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model`` as rectvit ``.safetensors``: tables 2-D, metadata with format version, arch and config.

    Swin bias tables' windows are recorded too. Atomic (temporary file, then rename); refuses to
    overwrite the file the model was loaded from.
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
    except TypeError as e:
        raise CheckpointError(f"cannot record the model config: {e}.") from None
    metadata = {
        "format": "pt",
        "rectvit_format_version": FORMAT_VERSION,
        "arch": getattr(model, "arch_name", "") or "",
        "model_class": f"{cls.__module__}.{cls.__qualname__}",
        "config": config_json,
        "relative_windows": json.dumps(windows),
    }
    return write_safetensors(model.state_dict(), path, metadata, protect=getattr(model, "_rectvit_source", None))


def _model_class(name: str) -> type[nn.Module]:
    """A rectvit model class by its dotted name; only classes under ``rectvit.models`` are accepted."""
    module_name, _, cls_name = name.rpartition(".")
    if not module_name.startswith("rectvit.models."):
        raise CheckpointError(f"model_class {name!r} is not a rectvit model class; refusing to import it.")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError):
        raise CheckpointError(f"model_class {name!r} does not exist in this rectvit version.") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise CheckpointError(f"model_class {name!r} is not a model class.")
    return cls


def load_model(path: str | os.PathLike, *, source_grid=None, **overrides: Any) -> nn.Module:
    """The model a checkpoint describes (our metadata, an HF or timm folder's config.json), ``overrides`` applied.

    ``path`` is a file, a folder, or ``hf-hub:org/name`` (through huggingface_hub's cache).

    Weights are adapted to the overrides (``img_size``, ``patch_size``, ``in_chans``...); a new
    ``num_classes`` leaves the classifier freshly initialised (reported). The report is on
    ``model.load_report``.
    """
    conv = convert(read_checkpoint(path))
    if conv.config is not None:
        cls = _model_class(conv.raw.metadata.get("model_class", ""))
        model = build_model(cls, conv.config, overrides, str(path))
        model.arch_name = conv.raw.metadata.get("arch", "")
    elif is_timm_config(conv.raw.config):
        model = timm_config_model(conv.raw.config, **overrides)
    elif conv.raw.config is not None:
        from .hf import hf_model_class

        kwargs = hf_model_kwargs(conv.hf_family, conv.raw.config, conv.state_dict)
        model = build_model(hf_model_class(conv.hf_family), kwargs, overrides, str(path))
        model.arch_name = f"hf-{conv.hf_family}"
    else:
        raise CheckpointError(
            f"{path}: holds no rectvit metadata or config.json, so it does not say which model it is; "
            "use rectvit.create_model(NAME, checkpoint_path=...) with the architecture's name."
        )
    model.load_report = _load_converted(model, conv, source_grid, strict="num_classes" not in overrides)
    return model
