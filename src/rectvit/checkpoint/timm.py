"""timm's layout -> rectvit's: the flat position table becomes a grid.

timm stores a ViT's learned positions flat, ``pos_embed`` ``(1, P + h*w, C)``, where ``P`` is the
number of prefix tokens with a position (0 with ``no_embed_class``). rectvit stores the grid part as
``pos_embed`` ``(1, h, w, C)`` and the prefix rows as ``prefix_pos_embed`` ``(1, P, C)``; every other
key is the same (Swin and hybrid models included). The flat table does not know its ``(h, w)``:
``resolve_grid`` decides it (DESIGN invariant 2).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, RectViTError
from ..grid import Size
from .adapt import LoadReport, resolve_grid

__all__ = ["is_flat_pos_embed", "flat_pos_embed_to_grid", "is_timm_config", "timm_config_model", "recorded_timm_grid"]


def is_timm_config(config: dict[str, Any] | None) -> bool:
    """A timm hub ``config.json`` (``architecture``, ``pretrained_cfg``), not an HF transformers one."""
    return bool(config) and "architecture" in config and "model_type" not in config


def timm_config_model(config: dict[str, Any], **overrides: Any) -> nn.Module:
    """The rectvit model a timm hub ``config.json`` describes: its ``architecture``, ``num_classes``,
    ``model_args`` and ``pretrained_cfg.input_size``, then ``overrides``."""
    from ..models.registry import create_model, list_models

    arch = str(config["architecture"]).split(".")[0]
    if arch not in list_models():
        raise CheckpointError(
            f"timm architecture {arch!r} has no rectvit counterpart; rectvit.list_models() names the ones it has."
        )
    kwargs = dict(config.get("model_args") or {})
    if "num_classes" in config:
        kwargs.setdefault("num_classes", int(config["num_classes"]))
    input_size = (config.get("pretrained_cfg") or {}).get("input_size")
    if input_size and len(input_size) == 3:
        kwargs.setdefault("in_chans", int(input_size[0]))
        kwargs.setdefault("img_size", (int(input_size[1]), int(input_size[2])))
    return create_model(arch, **{**kwargs, **overrides})


def recorded_timm_grid(config: dict[str, Any]) -> Size | None:
    """The position grid a timm hub config records (its model built on the meta device), if any."""
    try:
        with torch.device("meta"):
            table = getattr(timm_config_model(config), "pos_embed", None)
    except (CheckpointError, RectViTError, TypeError, RuntimeError, NotImplementedError):
        return None
    return (int(table.shape[1]), int(table.shape[2])) if isinstance(table, torch.Tensor) and table.dim() == 4 else None


def is_flat_pos_embed(state_dict: dict[str, torch.Tensor]) -> bool:
    table = state_dict.get("pos_embed")
    return isinstance(table, torch.Tensor) and table.dim() == 3


def flat_pos_embed_to_grid(
    sd: dict[str, torch.Tensor],
    model: nn.Module,
    report: LoadReport,
    source_grid=None,
    recorded: Size | None = None,
    default: nn.Module | None = None,
) -> None:
    """Split a flat ``pos_embed`` ``(1, P + h*w, C)`` into ``prefix_pos_embed`` and a ``(1, h, w, C)`` table.

    ``P`` is the model's ``num_pos_prefix_tokens``. The grid comes from ``resolve_grid`` with the
    model's own table grid and the table grid of ``default`` (the architecture at its registered
    defaults, see ``adapt.architecture_default``) as candidates.
    """
    flat = sd.pop("pos_embed")
    prefix = int(getattr(model, "num_pos_prefix_tokens", 0))
    if flat.shape[0] != 1 or flat.shape[1] <= prefix:
        raise CheckpointError(
            f"pos_embed: expected a flat table (1, {prefix} + h*w, C) for this model, got {tuple(flat.shape)}."
        )
    candidates = []
    own = getattr(model, "pos_embed", None)
    if isinstance(own, torch.Tensor) and own.dim() == 4:
        candidates.append(((int(own.shape[1]), int(own.shape[2])), "target model grid"))
    table = getattr(default, "pos_embed", None)
    if isinstance(table, torch.Tensor) and table.dim() == 4:
        candidates.append(((int(table.shape[1]), int(table.shape[2])), "architecture default grid"))
    grid, basis = resolve_grid(flat, prefix, source_grid=source_grid, recorded=recorded, candidates=candidates)
    sd["pos_embed"] = flat[:, prefix:].reshape(1, grid[0], grid[1], flat.shape[-1])
    if prefix:
        sd["prefix_pos_embed"] = flat[:, :prefix]
    report.source_grid, report.grid_basis = grid, basis
