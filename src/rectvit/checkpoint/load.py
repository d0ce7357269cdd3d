"""Loading a converted checkpoint into a model: resolve the grid -> adapt shapes -> check keys -> load.

The architecture's defaults (the grid and Swin windows a checkpoint of that architecture most likely
has) are computed from configuration arithmetic (``table_grid`` / ``bias_windows`` of the model's
class over its registered config); they are candidates to score, never evidence.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, RectViTError
from ..grid import Size
from ..models.registry import get_model_entry
from .adapt import (
    HEAD_PREFIXES,
    LoadReport,
    adapt_classifier,
    adapt_patch_embed,
    adapt_pos_embed,
    adapt_relative_position_bias,
    check_finite,
    check_keys,
)
from .layout import Converted, as_converted
from .timm import flat_pos_embed_to_grid, is_flat_pos_embed
from .writer import checkpoint_files, sources_of

__all__ = [
    "load_checkpoint",
    "load_converted",
    "architecture_defaults",
    "check_recorded_depth",
    "check_recorded_shapes",
]

_SIZE_KEYS = ("img_size", "patch_size", "patch_stride", "window_size")


def architecture_defaults(model: nn.Module) -> tuple[Size | None, dict[str, Size]]:
    """``(table grid, {bias-table key: window})`` of the model's architecture at its registered sizes.

    The model's own config with the registry entry's ``img_size``, ``patch_size``/``patch_stride``
    and ``window_size``, put through the class's size arithmetic. ``(None, {})`` for a model that is
    not from the registry.
    """
    name, config = getattr(model, "arch_name", ""), getattr(model, "model_config", None)
    if not name or config is None:
        return None, {}
    try:
        entry = get_model_entry(name)
    except RectViTError:
        return None, {}
    defaults = {k: entry.config[k] for k in _SIZE_KEYS if k in entry.config}
    defaults.setdefault("img_size", 224)
    arch = {**config, **defaults}
    cls = type(model)
    try:
        grid = cls.table_grid(arch) if hasattr(cls, "table_grid") else None
        windows = cls.bias_windows(arch) if hasattr(cls, "bias_windows") else {}
    except RectViTError:
        return None, {}
    return grid, windows


def _drop_derived(sd: dict[str, torch.Tensor], model: nn.Module, report: LoadReport) -> None:
    """Drop buffers the model derives itself (e.g. Swin's relative_position_index, attn_mask)."""
    derived = {name for name, _ in model.named_buffers()} - set(model.state_dict())
    for key in [k for k in sd if k in derived]:
        del sd[key]
        report.dropped.append(key)


def _adapted_later(key: str) -> bool:
    """Keys whose shape loading adapts (position tables, patch kernel, bias tables) or judges apart (heads)."""
    return (
        key in ("pos_embed", "prefix_pos_embed")
        or key.startswith("patch_embed.")
        or key.endswith("relative_position_bias_table")
        or key.startswith(HEAD_PREFIXES)
    )


def _check_architecture(sd: dict[str, torch.Tensor], model: nn.Module) -> None:
    """The checkpoint's body (blocks, norms, widths) must be the model's before any grid question is asked,
    so a checkpoint of another architecture is named as such, not as an ambiguous grid."""
    own = model.state_dict()
    body = {k: v for k, v in sd.items() if not _adapted_later(k)}
    own_body = {k: v for k, v in own.items() if not _adapted_later(k)}
    problems = []
    missing = [k for k in own_body if k not in body]
    unexpected = [k for k in body if k not in own_body]
    misshapen = [k for k in body if k in own_body and body[k].shape != own_body[k].shape]
    table, width = sd.get("pos_embed"), getattr(model, "embed_dim", None)
    if isinstance(table, torch.Tensor) and isinstance(width, int) and table.shape[-1] != width:
        problems.append(f"position table width {table.shape[-1]}, model embed_dim {width}")
    if missing:
        problems.append(f"missing from the checkpoint: {missing[:8]}")
    if unexpected:
        problems.append(f"not in the model: {unexpected[:8]}")
    if misshapen:
        problems += [f"{k}: checkpoint {tuple(body[k].shape)}, model {tuple(own_body[k].shape)}" for k in misshapen[:6]]
    if problems:
        raise CheckpointError(
            "the checkpoint is another architecture than the model: " + "; ".join(problems) + ". Build the model "
            "with the checkpoint's architecture (rectvit inspect CKPT shows its widths and depth)."
        )


_BLOCK = re.compile(r"^blocks\.(\d+)\.")
_STAGE = re.compile(r"^(?:layers|stages)\.(\d+)\.(?:blocks\.(\d+)\.)?")


def check_recorded_depth(config: dict[str, Any], sd: dict[str, torch.Tensor], where: str) -> None:
    """A recorded ``depth`` (or Swin's ``depths``) must count the blocks the tensors hold, checked by
    arithmetic on the key names before any model is built (a claimed depth of 10^6 fails at once)."""
    depth, depths = config.get("depth"), config.get("depths")
    if depth is not None:
        found = {int(m.group(1)) for m in map(_BLOCK.match, sd) if m}
        if depth != len(found):
            raise CheckpointError(
                f"{where}: the recorded config says depth={depth!r}, but the weights hold {len(found)} blocks "
                f"(blocks.0 to blocks.{len(found) - 1}); the config does not describe these weights. Check "
                "the file, or build the model by name: rectvit.create_model(NAME, depth=..., checkpoint_path=...)."
            )
    if isinstance(depths, Sequence) and not isinstance(depths, str):
        stages: dict[int, set[int]] = {}
        for m in filter(None, map(_STAGE.match, sd)):
            blocks = stages.setdefault(int(m.group(1)), set())
            if m.group(2) is not None:
                blocks.add(int(m.group(2)))
        found = [len(stages[i]) for i in sorted(stages)]
        if list(depths) != found:
            raise CheckpointError(
                f"{where}: the recorded config says depths={list(depths)!r} (blocks per stage), but the weights "
                f"hold {found}; the config does not describe these weights. Check the file, or build the model "
                "by name: rectvit.create_model(NAME, depths=..., checkpoint_path=...)."
            )


def check_recorded_shapes(sd: dict[str, torch.Tensor], shadow: nn.Module, where: str) -> None:
    """Every tensor must have the shape of ``shadow`` (the model its recorded config builds, on the meta
    device): same keys, same shapes; a flat timm/HF position table counts by its width alone (its grid
    is resolved when it loads). Derived buffers (Swin's index, masks) are set aside."""
    own = shadow.state_dict()
    derived = {name for name, _ in shadow.named_buffers()} - set(own)
    sd = {k: v for k, v in sd.items() if k not in derived}
    flat = is_flat_pos_embed(sd)
    missing = [k for k in own if k not in sd and not (flat and k == "prefix_pos_embed")]
    unexpected = [k for k in sd if k not in own]
    compared = {k: (-1 if flat and k == "pos_embed" else 0) for k in sd if k in own}  # a flat table: its width
    misshapen = [
        f"{k}: file {tuple(sd[k].shape)}, config {tuple(own[k].shape)}"
        for k, first in compared.items()
        if sd[k].shape[first:] != own[k].shape[first:]
    ]
    problems = []
    if misshapen:
        problems.append("shapes differ: " + "; ".join(misshapen[:6]))
    if missing:
        problems.append(f"the config has {missing[:8]}, the file does not")
    if unexpected:
        problems.append(f"the file has {unexpected[:8]}, the config does not")
    if problems:
        raise CheckpointError(
            f"{where}: the recorded config does not describe these weights (checked before building the model): "
            + " | ".join(problems)
            + ". Check the file, or build the model by name: rectvit.create_model(NAME, checkpoint_path=...)."
        )


def _target_grid(model: nn.Module) -> Size | None:
    own = getattr(model, "pos_embed", None)
    return (int(own.shape[1]), int(own.shape[2])) if isinstance(own, torch.Tensor) and own.dim() == 4 else None


def load_converted(
    model: nn.Module, conv: Converted, source_grid=None, strict: bool = True, source_windows=None
) -> LoadReport:
    """Adapt ``conv`` to ``model`` and load it; the ``LoadReport`` says what was adapted and on what basis."""
    sd = dict(conv.state_dict)
    report = LoadReport(layout=conv.layout, hub=conv.raw.hub if conv.raw else None, dropped=list(conv.dropped))
    table = sd.get("pos_embed")
    default_grid, default_windows = architecture_defaults(model)
    _drop_derived(sd, model, report)
    _check_architecture(sd, model)
    if is_flat_pos_embed(sd):
        candidates = []
        if conv.suggested_grid:
            candidates.append((conv.suggested_grid, "timm config's default input size"))
        if _target_grid(model):
            candidates.append((_target_grid(model), "target model grid"))
        if default_grid:
            candidates.append((default_grid, "architecture default grid"))
        prefix = int(getattr(model, "num_pos_prefix_tokens", 0))
        flat_pos_embed_to_grid(sd, prefix, report, source_grid, conv.recorded_grid, candidates)
    elif isinstance(table, torch.Tensor) and table.dim() == 4:
        report.source_grid, report.grid_basis = (int(table.shape[1]), int(table.shape[2])), "stored 2-D table"
    check_finite(sd, report)
    adapt_pos_embed(sd, model, report)
    adapt_patch_embed(sd, model, report)
    adapt_relative_position_bias(sd, model, report, conv.recorded_windows, default_windows, source_windows)
    check_keys(sd, model, strict, report, heads=False)
    adapt_classifier(sd, model, strict, report)
    check_keys(sd, model, strict, report)
    model.load_state_dict(sd, strict=False)
    if conv.raw is not None and conv.raw.path is not None:
        model.source_path = str(conv.raw.path)
        # every file it came from, over every load: what no writer may replace (checkpoint.writer)
        model.source_files = tuple(dict.fromkeys((*sources_of(model), *checkpoint_files(conv.raw.path))))
    return report


def load_checkpoint(
    model: nn.Module,
    source: str | os.PathLike | dict[str, torch.Tensor] | Any,
    *,
    source_grid=None,
    source_windows=None,
    strict: bool = True,
) -> LoadReport:
    """Load ``source`` (a path, an HF folder or a state dict) into ``model``, adapting it; return a ``LoadReport``.

    The layout (rectvit, timm, HF ViT/DeiT/AST) is detected and converted; a flat position table's
    grid is resolved as docs/design.md's invariant 2 says (``source_grid=(h, w)`` first), and so are
    the windows of Swin bias tables (``source_windows=(wh, ww)`` first); tables, patch kernel, input
    channels and bias tables are adapted to the model. ``strict=False`` drops a classifier of another
    size instead of raising.
    """
    return load_converted(model, as_converted(source), source_grid, strict, source_windows)
