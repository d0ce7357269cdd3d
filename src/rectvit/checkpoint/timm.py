"""timm's layout -> rectvit's: the flat position table becomes a grid.

timm stores a ViT's learned positions flat, ``pos_embed`` ``(1, P + h*w, C)``, where ``P`` is the
number of prefix tokens with a position (0 with ``no_embed_class``). rectvit stores the grid part as
``pos_embed`` ``(1, h, w, C)`` and the prefix rows as ``prefix_pos_embed`` ``(1, P, C)``; every other
key is the same (Swin and hybrid models included). The flat table does not know its ``(h, w)``:
``resolve_grid`` finds it from an argument or a record (docs/design.md, invariant 2).
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import CheckpointError, RectViTError
from ..grid import Size, to_size
from ..models.pretrained_cfgs import known_tags, pretrained_cfg_for
from ..models.registry import get_model_entry, list_models
from .adapt import LoadReport, resolve_grid
from .io import check_recorded_size

__all__ = [
    "is_flat_pos_embed",
    "flat_pos_embed_to_grid",
    "is_timm_config",
    "is_tag_repository",
    "timm_config_kwargs",
    "timm_config_grid",
]


def is_timm_config(config: dict[str, Any] | None) -> bool:
    """A timm hub ``config.json`` (``architecture``, ``pretrained_cfg``), not an HF transformers one."""
    return bool(config) and "architecture" in config and "model_type" not in config


def timm_config_kwargs(config: dict[str, Any]) -> tuple[str, dict[str, Any], bool]:
    """``(architecture, create_model kwargs, whether the input size is recorded)`` of a timm config.

    The size counts as recorded when ``model_args`` names ``img_size`` or ``pretrained_cfg.input_size``
    differs from the architecture's registered size; an ``input_size`` equal to the registered default
    is what timm writes for any weights of that architecture, so it only makes a candidate.
    """
    where = "timm config.json"
    arch = str(config.get("architecture", "")).split(".")[0]
    if arch not in list_models():
        raise CheckpointError(
            f"timm architecture {arch!r} has no rectvit counterpart; rectvit.list_models() names the ones it has."
        )
    kwargs = config.get("model_args") or {}
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{where}: model_args must be a mapping of keyword arguments, got {kwargs!r}.")
    kwargs = dict(kwargs)
    recorded = "img_size" in kwargs
    try:
        if recorded:
            check_recorded_size(to_size(kwargs["img_size"], "model_args.img_size"), where)
        if config.get("num_classes") is not None:
            kwargs.setdefault("num_classes", int(config["num_classes"]))
        input_size = (config.get("pretrained_cfg") or {}).get("input_size")
        if input_size is not None and "img_size" not in kwargs:
            c, h, w = (int(v) for v in input_size)
            check_recorded_size((h, w), where)
            kwargs.setdefault("in_chans", c)
            kwargs["img_size"] = (h, w)
            default = get_model_entry(arch).config.get("img_size", 224)
            recorded = (h, w) != (tuple(default) if isinstance(default, (list, tuple)) else (default, default))
    except (TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{where}: num_classes / pretrained_cfg.input_size are malformed ({e}).") from None
    return arch, kwargs, recorded


def is_tag_repository(config: dict[str, Any], repo_id: str) -> bool:
    """Whether ``repo_id`` is the hub repository timm keeps its tag's weights in (``timm/ARCH.TAG``), for the
    tag this timm config names: then its ``input_size`` is the tag's, a record of the weights' grid."""
    arch, _, name_tag = str(config.get("architecture", "")).partition(".")
    tag = (config.get("pretrained_cfg") or {}).get("tag") or name_tag
    if not tag or arch not in list_models() or tag not in known_tags(arch):
        return False
    return pretrained_cfg_for(arch, tag).get("hf_hub_id") == repo_id


def timm_config_grid(config: dict[str, Any]) -> tuple[Size | None, dict[str, Size], bool]:
    """The position grid and bias-table windows of the model a timm hub config describes (the architecture's
    size arithmetic on its config), and whether the config records its size (see ``timm_config_kwargs``) or
    merely suggests it."""
    try:
        arch, kwargs, recorded = timm_config_kwargs(config)
        entry = get_model_entry(arch)
        table_grid = getattr(entry.cls, "table_grid", None)
        bias_windows = getattr(entry.cls, "bias_windows", None)
        config = {**entry.config, **kwargs}
        grid = table_grid(config) if table_grid else None
        return grid, (bias_windows(config) if bias_windows else {}), recorded
    except RectViTError:
        return None, {}, False


def is_flat_pos_embed(state_dict: dict[str, torch.Tensor]) -> bool:
    table = state_dict.get("pos_embed")
    return isinstance(table, torch.Tensor) and table.dim() == 3


def flat_pos_embed_to_grid(
    sd: dict[str, torch.Tensor],
    prefix: int,
    report: LoadReport,
    source_grid=None,
    recorded: Size | None = None,
    candidates: list[tuple[Size, str]] = (),
) -> None:
    """Split a flat ``pos_embed`` ``(1, prefix + h*w, C)`` into ``prefix_pos_embed`` and a ``(1, h, w, C)`` table.

    ``prefix`` is the target model's ``num_pos_prefix_tokens``. The grid comes from ``resolve_grid``
    (``source_grid``, then ``recorded``; ``candidates`` are grids the error names, never evidence).
    """
    flat = sd.pop("pos_embed")
    if flat.shape[0] != 1 or flat.shape[1] <= prefix:
        raise CheckpointError(
            f"pos_embed: expected a flat table (1, {prefix} + h*w, C) for this model, got {tuple(flat.shape)}."
        )
    grid, basis = resolve_grid(flat, prefix, source_grid=source_grid, recorded=recorded, candidates=candidates)
    sd["pos_embed"] = flat[:, prefix:].reshape(1, grid[0], grid[1], flat.shape[-1])
    if prefix:
        sd["prefix_pos_embed"] = flat[:, :prefix]
    report.source_grid, report.grid_basis = grid, basis
