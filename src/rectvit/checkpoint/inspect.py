"""What a checkpoint holds, without building a model: layout, architecture, position tables and their grids."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import torch

from ..errors import AmbiguousGridError
from ..grid import Size, factorizations, grid_evidence, smoothness
from .adapt import resolve_grid
from .hf import hf_family, hf_grid, hf_to_timm, is_hf_layout
from .io import RawCheckpoint, read_checkpoint
from .timm import is_flat_pos_embed

__all__ = ["CheckpointInfo", "TableInfo", "inspect_checkpoint", "grid_table"]


@dataclass
class TableInfo:
    name: str
    shape: tuple[int, ...]
    prefix_rows: int = 0
    grid: Size | None = None
    basis: str = ""
    candidates: list[tuple[Size, float, float]] = field(default_factory=list)  # grid, grid_score, smoothness


@dataclass
class CheckpointInfo:
    path: str
    layout: str
    arch: str
    tables: list[TableInfo]
    prefix_tokens: dict[str, int]
    patch_kernel: tuple[int, ...] | None
    num_params: int
    relative_bias_tables: list[tuple[str, tuple[int, ...]]]
    state_dict: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)  # timm-layout tensors

    def __str__(self) -> str:
        lines = [
            f"checkpoint: {self.path}",
            f"layout: {self.layout}",
            f"architecture: {self.arch}",
            f"parameters: {self.num_params:,}",
            "prefix tokens: " + (", ".join(f"{k} {v}" for k, v in self.prefix_tokens.items() if v) or "none"),
            f"patch kernel: {self.patch_kernel if self.patch_kernel else 'none'}",
        ]
        if not self.tables:
            lines.append("position tables: none (no absolute position table)")
        for t in self.tables:
            if t.grid is not None:
                lines.append(f"position table {t.name} {t.shape}: grid {t.grid[0]}x{t.grid[1]} ({t.basis})")
            else:
                lines.append(f"position table {t.name} {t.shape}: grid unknown, {t.basis}")
            if t.prefix_rows:
                lines.append(f"  {t.prefix_rows} prefix row(s) before the grid rows")
            if t.candidates:
                lines.append("  candidate grids (grid score, smoothness; higher is smoother):")
                lines += [f"    {g[0]}x{g[1]}: {s:.3f}, {m:.3f}" for g, s, m in t.candidates[:8]]
        for name, shape in self.relative_bias_tables:
            side = math.isqrt(shape[0])
            win = f"window {(side + 1) // 2}x{(side + 1) // 2}" if side * side == shape[0] else "window unknown"
            lines.append(f"relative bias table {name} {shape}: {win}")
        return "\n".join(lines)


def _prefix_tokens(sd: dict[str, torch.Tensor]) -> dict[str, int]:
    reg = sd.get("reg_token")
    return {
        "class": int("cls_token" in sd),
        "distillation": int("dist_token" in sd),
        "register": int(reg.shape[1]) if isinstance(reg, torch.Tensor) and reg.dim() == 3 else 0,
    }


def _arch(raw: RawCheckpoint) -> str:
    if "rectvit_format_version" in raw.metadata:
        return raw.metadata.get("arch") or raw.metadata.get("model_class", "unknown")
    if raw.config is not None:
        return f"Hugging Face {raw.config.get('model_type', '?')} ({', '.join(raw.config.get('architectures', []))})"
    return "not recorded (pass --model to adapt)"


def inspect_checkpoint(source: str | os.PathLike, source_grid=None) -> CheckpointInfo:
    """Read ``source`` and describe it; a flat table's grid is resolved only from records or decisive content."""
    raw = read_checkpoint(source)
    sd = raw.state_dict
    recorded = None
    if "rectvit_format_version" in raw.metadata:
        layout = f"rectvit (format {raw.metadata['rectvit_format_version']})"
    elif raw.config is not None or is_hf_layout(sd):
        family = hf_family(sd, raw.config)
        layout = f"hf-{family}"
        sd, _ = hf_to_timm(sd)
        recorded = hf_grid(family, raw.config) if raw.config else None
    else:
        layout = "timm" if is_flat_pos_embed(sd) else "rectvit or timm (no flat position table)"
    tokens = _prefix_tokens(sd)
    tables = []
    table = sd.get("pos_embed")
    if isinstance(table, torch.Tensor) and table.dim() == 4:
        tables.append(TableInfo("pos_embed", tuple(table.shape), 0, (table.shape[1], table.shape[2]), "stored 2-D"))
    elif isinstance(table, torch.Tensor) and table.dim() == 3:
        tables.append(_flat_info(table, sum(tokens.values()), recorded, source_grid))
    weight = sd.get("patch_embed.proj.weight")
    rel = [(k, tuple(v.shape)) for k, v in sd.items() if k.endswith("relative_position_bias_table")]
    return CheckpointInfo(
        path=str(source),
        layout=layout,
        arch=_arch(raw),
        tables=tables,
        prefix_tokens=tokens,
        patch_kernel=tuple(weight.shape) if isinstance(weight, torch.Tensor) else None,
        num_params=sum(v.numel() for v in raw.state_dict.values()),
        relative_bias_tables=rel,
        state_dict=sd,
    )


def _flat_info(flat: torch.Tensor, tokens: int, recorded: Size | None, source_grid) -> TableInfo:
    """The grid of a flat table; ``tokens`` prefix rows unless the count says they carry no position."""
    n = flat.shape[1]
    prefix = tokens
    if recorded is not None and recorded[0] * recorded[1] == n:
        prefix = 0  # no_embed_class: the table covers patch tokens only
    elif tokens and not [g for g in factorizations(n - tokens) if min(g) >= 2] and n > 0:
        prefix = 0
    info = TableInfo("pos_embed", tuple(flat.shape), prefix)
    evidence = grid_evidence(flat, prefix)
    info.candidates = [(g, s, smoothness(flat, g, prefix)) for g, s in evidence.ranked]
    try:
        info.grid, info.basis = resolve_grid(flat, prefix, source_grid=source_grid, recorded=recorded)
    except AmbiguousGridError:
        info.basis = "not recorded and the content is not decisive; pass --source-grid HxW"
    return info


def grid_table(info: CheckpointInfo) -> torch.Tensor:
    """The checkpoint's position table as ``(1, h, w, C)`` (raises if its grid is unknown)."""
    if not info.tables:
        raise AmbiguousGridError(f"{info.path}: holds no absolute position table to draw.", candidates=[])
    t = info.tables[0]
    table = info.state_dict["pos_embed"]
    if table.dim() == 4:
        return table
    if t.grid is None:
        cands = [g for g, _, _ in t.candidates]
        listing = ", ".join(f"{h}x{w}" for h, w in cands[:8])
        raise AmbiguousGridError(
            f"{info.path}: the flat position table's grid is not recorded and its content is not decisive; "
            f"candidates: {listing}. Pass --source-grid HxW.",
            candidates=cands,
        )
    return table[:, t.prefix_rows :].reshape(1, t.grid[0], t.grid[1], -1)


def _dumps(info: CheckpointInfo) -> str:  # machine-readable form for `rectvit inspect --json`
    return json.dumps(
        {
            "path": info.path,
            "layout": info.layout,
            "architecture": info.arch,
            "parameters": info.num_params,
            "prefix_tokens": info.prefix_tokens,
            "patch_kernel": info.patch_kernel,
            "position_tables": [
                {
                    "name": t.name,
                    "shape": t.shape,
                    "grid": t.grid,
                    "basis": t.basis,
                    "candidates": [{"grid": g, "grid_score": s, "smoothness": m} for g, s, m in t.candidates],
                }
                for t in info.tables
            ],
            "relative_bias_tables": [{"name": n, "shape": s} for n, s in info.relative_bias_tables],
        },
        indent=2,
    )
