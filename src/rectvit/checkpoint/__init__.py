"""Checkpoint loading: read -> convert layout -> adapt shapes to the target model -> load.

Only the ViT timm layout is converted so far; the checkpoint issue grows this into the full pipeline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..grid import Size
from ..resample import resample_grid
from .timm import timm_vit_to_rectvit

__all__ = ["load_checkpoint", "read_state_dict", "LoadReport"]


@dataclass
class LoadReport:
    """What a load did: the source layout, the position grid and its basis, and every adapted tensor."""

    layout: str
    source_grid: Size | None = None
    grid_basis: str | None = None
    adapted: list[tuple[str, tuple, tuple, str]] = field(default_factory=list)  # key, from, to, method
    dropped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"layout: {self.layout}"]
        if self.source_grid is not None:
            lines.append(f"source grid: {self.source_grid[0]}x{self.source_grid[1]} ({self.grid_basis})")
        lines += [f"  {k}: {tuple(a)} -> {tuple(b)} ({m})" for k, a, b, m in self.adapted]
        lines += [f"  dropped: {k}" for k in self.dropped]
        lines += [f"  missing: {k}" for k in self.missing]
        return "\n".join(lines)


def _unwrap(obj: Any) -> dict[str, torch.Tensor]:
    """A plain ``{key: tensor}`` dict from a training checkpoint (``state_dict``/``model`` wrappers, ``module.``)."""
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"expected a state dict of tensors, got {type(obj).__name__}.")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read ``.safetensors`` natively, anything else with ``torch.load(weights_only=True)`` (never runs code)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file not found: {path!r}.")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(path)
        return _unwrap(torch.load(path, map_location="cpu", weights_only=True))
    except CheckpointError:
        raise
    except Exception as e:  # corrupt file, refused pickle, ...
        raise CheckpointError(f"cannot read checkpoint {path!r}: {type(e).__name__}: {e}") from None


def _adapt_pos_grid(sd: dict[str, torch.Tensor], model: nn.Module, report: LoadReport) -> None:
    """Resample a ``(1, h, w, C)`` ``pos_embed`` to the model's table grid."""
    table = sd.get("pos_embed")
    target = getattr(model, "pos_embed", None)
    if not isinstance(table, torch.Tensor) or table.dim() != 4 or not isinstance(target, nn.Parameter):
        return
    new_grid = (int(target.shape[1]), int(target.shape[2]))
    if tuple(table.shape[1:3]) != new_grid:
        sd["pos_embed"] = resample_grid(table, new_grid)
        report.adapted.append(("pos_embed", tuple(table.shape), tuple(sd["pos_embed"].shape), "resample_grid bicubic"))


def _check_keys(sd: dict[str, torch.Tensor], model: nn.Module, strict: bool, report: LoadReport) -> None:
    """Raise ``CheckpointError`` for missing, unexpected or misshapen keys (or drop/report them if not strict)."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    misshapen = [k for k in sd if k in own and tuple(sd[k].shape) != tuple(own[k].shape)]
    if strict and (missing or unexpected or misshapen):
        parts = []
        if missing:
            parts.append(f"missing keys: {missing}")
        if unexpected:
            parts.append(f"unexpected keys: {unexpected}")
        if misshapen:
            shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in misshapen]
            parts.append("misshapen keys: " + "; ".join(shapes))
        raise CheckpointError(
            "checkpoint does not fit the model (" + "; ".join(parts) + "); pass strict=False to load the rest."
        )
    for k in unexpected + misshapen:
        sd.pop(k)
    report.dropped = unexpected + misshapen
    report.missing = missing


def load_checkpoint(
    model: nn.Module,
    source: str | os.PathLike | dict[str, torch.Tensor],
    *,
    source_grid=None,
    strict: bool = True,
) -> LoadReport:
    """Load a state dict or checkpoint file into ``model``, converting timm's layout and adapting the grid.

    ``source_grid=(h, w)`` names the grid of a flat (timm) position table when it differs from the
    model's. Returns a ``LoadReport``.
    """
    sd = _unwrap(source) if isinstance(source, dict) else read_state_dict(source)
    report = LoadReport(layout="rectvit")
    table = sd.get("pos_embed")
    if isinstance(table, torch.Tensor) and table.dim() == 3:
        report.layout = "timm"
        sd, report.source_grid, report.grid_basis = timm_vit_to_rectvit(
            sd,
            num_prefix_rows=getattr(model, "num_pos_prefix_tokens", 0),
            target_grid=model.grid_size,
            source_grid=source_grid,
        )
    elif isinstance(table, torch.Tensor) and table.dim() == 4:
        report.source_grid, report.grid_basis = (int(table.shape[1]), int(table.shape[2])), "stored 2-D table"
    _adapt_pos_grid(sd, model, report)
    _check_keys(sd, model, strict, report)
    model.load_state_dict(sd, strict=strict)
    return report
