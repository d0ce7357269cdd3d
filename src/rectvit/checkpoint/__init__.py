"""Checkpoints that never lose their grid: read -> convert layout -> adapt shapes to the model -> load.

Public API: ``load_checkpoint``, ``save_checkpoint``, ``load_model`` and ``LoadReport``. Layouts read:
rectvit (our ``.safetensors`` with metadata; tables stored 2-D), timm (flat ``pos_embed``), and
Hugging Face ViT / DeiT / AST (state dicts or ``save_pretrained`` folders).
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, RectViTError
from .adapt import (
    LoadReport,
    adapt_classifier,
    adapt_patch_embed,
    adapt_pos_embed,
    adapt_relative_position_bias,
    check_finite,
    check_keys,
)
from .hf import hf_family, hf_grid, hf_model_kwargs, hf_to_timm, is_hf_layout
from .io import RawCheckpoint, read_checkpoint, unwrap_state_dict, write_safetensors
from .timm import flat_pos_embed_to_grid, is_flat_pos_embed

__all__ = ["load_checkpoint", "save_checkpoint", "load_model", "LoadReport", "read_checkpoint", "FORMAT_VERSION"]

FORMAT_VERSION = "1"


def _as_raw(source: Any) -> RawCheckpoint:
    if isinstance(source, RawCheckpoint):
        return source
    if isinstance(source, dict):
        return RawCheckpoint(unwrap_state_dict(source, "state dict"))
    if isinstance(source, (str, os.PathLike)):
        return read_checkpoint(source)
    raise CheckpointError(f"expected a checkpoint path, an HF folder or a state dict, got {type(source).__name__}.")


def _recorded_config(raw: RawCheckpoint) -> dict[str, Any] | None:
    if "rectvit_format_version" not in raw.metadata:
        return None
    try:
        return json.loads(raw.metadata.get("config", "{}"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{raw.path}: rectvit metadata 'config' is not valid JSON ({e}).") from None


def _convert(raw: RawCheckpoint, model: nn.Module, source_grid) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """Detect the layout, convert to rectvit's, and record the source grid of the position table."""
    sd = dict(raw.state_dict)
    recorded = None
    if _recorded_config(raw) is not None:
        layout = "rectvit"
    elif raw.config is not None or is_hf_layout(sd):
        family = hf_family(sd, raw.config)
        layout = f"hf-{family}"
        sd, dropped = hf_to_timm(sd)
        recorded = hf_grid(family, raw.config) if raw.config else None
    else:
        table = sd.get("pos_embed")
        if is_flat_pos_embed(sd):
            layout = "timm"
        elif isinstance(table, torch.Tensor) and table.dim() == 4:
            layout = "rectvit"
        else:
            layout = "timm/rectvit (no absolute position table; the layouts agree)"
        dropped = []
    report = LoadReport(layout=layout)
    if layout.startswith("hf-"):
        report.dropped.extend(dropped)
    table = sd.get("pos_embed")
    if is_flat_pos_embed(sd):
        flat_pos_embed_to_grid(sd, model, report, source_grid, recorded)
    elif isinstance(table, torch.Tensor) and table.dim() == 4:
        report.source_grid = (int(table.shape[1]), int(table.shape[2]))
        report.grid_basis = "stored 2-D table"
    return sd, report


def _drop_derived(sd: dict[str, torch.Tensor], model: nn.Module, report: LoadReport) -> None:
    """Drop buffers the model derives itself (e.g. Swin's relative_position_index, attn_mask)."""
    derived = {name for name, _ in model.named_buffers()} - set(model.state_dict())
    for key in [k for k in sd if k in derived]:
        del sd[key]
        report.dropped.append(key)


def _load_raw(model: nn.Module, raw: RawCheckpoint, source_grid, strict: bool) -> LoadReport:
    sd, report = _convert(raw, model, source_grid)
    check_finite(sd, report)
    adapt_pos_embed(sd, model, report)
    adapt_patch_embed(sd, model, report)
    adapt_relative_position_bias(sd, model, report)
    _drop_derived(sd, model, report)
    check_keys(sd, model, strict, report, heads=False)
    adapt_classifier(sd, model, strict, report)
    check_keys(sd, model, strict, report)
    model.load_state_dict(sd, strict=False)
    if raw.path is not None:
        model._rectvit_source = str(raw.path)
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
    return _load_raw(model, _as_raw(source), source_grid, strict)


def save_checkpoint(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model`` as rectvit ``.safetensors``: tables 2-D, metadata with format version, arch and config.

    Atomic (temporary file, then rename); refuses to overwrite the file the model was loaded from.
    """
    config = getattr(model, "model_config", None)
    if config is None:
        raise CheckpointError(
            f"{type(model).__name__} has no model_config; save_checkpoint writes rectvit models "
            "(rectvit.create_model / load_model)."
        )
    cls = type(model)
    metadata = {
        "format": "pt",
        "rectvit_format_version": FORMAT_VERSION,
        "arch": getattr(model, "arch_name", "") or "",
        "model_class": f"{cls.__module__}.{cls.__qualname__}",
        "config": json.dumps(config),
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


def _build(cls: type[nn.Module], config: dict[str, Any], overrides: dict[str, Any], what: str) -> nn.Module:
    try:
        return cls(**{**config, **overrides})
    except TypeError as e:
        raise RectViTError(f"{what}: cannot apply overrides {sorted(overrides)}: {e}") from None


def load_model(path: str | os.PathLike, *, source_grid=None, **overrides: Any) -> nn.Module:
    """The model a checkpoint describes (our metadata, or an HF folder's config.json), ``overrides`` applied.

    Weights are adapted to the overrides (``img_size``, ``patch_size``, ``in_chans``...); a new
    ``num_classes`` leaves the classifier freshly initialised (reported). The report is on
    ``model.load_report``.
    """
    raw = read_checkpoint(path)
    config = _recorded_config(raw)
    if config is not None:
        cls = _model_class(raw.metadata.get("model_class", ""))
        model = _build(cls, config, overrides, str(path))
        model.arch_name = raw.metadata.get("arch", "")
    elif raw.config is not None:
        from ..models.vit import VisionTransformer

        family = hf_family(raw.state_dict, raw.config)
        converted, _ = hf_to_timm(raw.state_dict)
        model = _build(VisionTransformer, hf_model_kwargs(family, raw.config, converted), overrides, str(path))
        model.arch_name = f"hf-{family}"
    else:
        raise CheckpointError(
            f"{path}: holds no rectvit metadata or HF config.json, so it does not say which model it is; "
            "use rectvit.create_model(NAME, checkpoint_path=...) with the architecture's name."
        )
    model.load_report = _load_raw(model, raw, source_grid, strict="num_classes" not in overrides)
    return model
