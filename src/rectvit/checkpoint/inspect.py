"""What a checkpoint holds, without building a model: layout, architecture, position tables and their grids."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import torch

from ..errors import AmbiguousGridError, CheckpointError, RectViTError
from ..grid import Size, relative_windows, to_size
from .adapt import resolve_grid
from .evidence import candidate_listing, grid_evidence, rank_windows
from .io import RawCheckpoint, read_checkpoint
from .layout import convert

__all__ = ["CheckpointInfo", "TableInfo", "inspect_checkpoint", "grid_table"]


@dataclass
class TableInfo:
    name: str
    shape: tuple[int, ...]
    prefix_rows: int = 0
    grid: Size | None = None
    basis: str = ""
    # every factorisation with its grid score (nan for strips): the grid used first, then best score first
    candidates: list[tuple[Size, float]] = field(default_factory=list)


@dataclass
class CheckpointInfo:
    path: str
    layout: str
    arch: str
    tables: list[TableInfo]
    prefix_tokens: dict[str, int]
    patch_kernel: tuple[int, ...] | None
    num_params: int
    # name, shape, windows (the recorded one, or every window that fits with its grid score, best first), recorded
    relative_bias_tables: list[tuple[str, tuple[int, ...], list[tuple[Size, float]], bool]]
    state_dict: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)  # timm-layout tensors
    notes: list[str] = field(default_factory=list)  # e.g. an argument that was not used

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
            lines += _table_lines(t)
        for name, shape, windows, recorded in self.relative_bias_tables:
            if recorded:
                win = f"window {windows[0][0][0]}x{windows[0][0][1]} (recorded)"
            else:
                win = (
                    "window not recorded (pass --source-window WHxWW); windows that fit, by grid score (advisory, "
                    f"content never decides; - for strips): {candidate_listing(windows) or 'none'}"
                )
            lines.append(f"relative bias table {name} {shape}: {win}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _table_lines(t: TableInfo) -> list[str]:
    """A position table's lines: its grid and basis, then every candidate grid, the one used first and marked."""
    if t.grid is not None:
        lines = [f"position table {t.name} {t.shape}: grid {t.grid[0]}x{t.grid[1]} ({t.basis})"]
    else:
        lines = [f"position table {t.name} {t.shape}: grid unknown: {t.basis}"]
    if t.prefix_rows:
        lines.append(f"  {t.prefix_rows} prefix row(s) before the grid rows")
    if t.candidates:
        used = "the grid used first, " if t.grid is not None else ""
        lines.append(
            f"  candidate grids ({used}grid score: advisory, content never decides; - for strips, which it cannot "
            "orient):"
        )
    for g, s in t.candidates:
        score = f"{s:.3f}" if s == s else "-"
        mark = f"  <- {t.basis}" if g == t.grid else ""
        lines.append(f"    {g[0]}x{g[1]}: {score}{mark}")
    return lines


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
    if raw.config is not None and "architecture" in raw.config and "model_type" not in raw.config:
        return f"timm {raw.config['architecture']}"
    if raw.config is not None:
        return f"Hugging Face {raw.config.get('model_type', '?')} ({', '.join(raw.config.get('architectures', []))})"
    return "not recorded (pass --model to adapt)"


def inspect_checkpoint(source: str | os.PathLike, source_grid=None) -> CheckpointInfo:
    """Read ``source`` and describe it; a flat table's grid is resolved only from ``source_grid`` or a record."""
    raw = read_checkpoint(source)
    conv = convert(raw)
    sd = conv.state_dict
    layout = conv.layout
    if layout == "rectvit" and "rectvit_format_version" in raw.metadata:
        layout = f"rectvit (format {raw.metadata['rectvit_format_version']})"
    tokens = _prefix_tokens(sd)
    tables, notes = [], []
    table = sd.get("pos_embed")
    if isinstance(table, torch.Tensor) and table.dim() == 3:
        tables.append(_flat_info(table, sum(tokens.values()), conv.recorded_grid, source_grid))
    elif isinstance(table, torch.Tensor) and table.dim() == 4:
        tables.append(TableInfo("pos_embed", tuple(table.shape), 0, (table.shape[1], table.shape[2]), "stored 2-D"))
    if source_grid is not None and not (isinstance(table, torch.Tensor) and table.dim() == 3):
        where = (
            "its position table is stored 2-D (the grid is its shape)" if tables else "it has no flat position table"
        )
        notes.append(f"--source-grid is unused: {where}.")
    weight = sd.get("patch_embed.proj.weight")
    rel = []
    for key, value in sd.items():
        if key.endswith("relative_position_bias_table") and value.dim() == 2:
            recorded = conv.recorded_windows.get(key)
            rows = value.shape[0]
            rows -= 3 if rows > 3 and not relative_windows(rows) else 0  # BEiT's 3 class-token rows after the grid
            windows = [(tuple(recorded), math.nan)] if recorded else rank_windows(value[:rows])
            rel.append((key, tuple(value.shape), windows, bool(recorded)))
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
        notes=notes,
    )


def _flat_info(flat: torch.Tensor, tokens: int, recorded: Size | None, source_grid) -> TableInfo:
    """The grid of a flat table whose prefix tokens may or may not have position rows (``no_embed_class``).

    The reading (prefix rows present or not) is the one a given or recorded grid fits, else the
    usual one (prefix rows present). Its candidates are every factorisation with its grid score, the
    grid used (if any) first, then by score.
    """
    n = flat.shape[1]
    readings = [p for p in dict.fromkeys((tokens, 0)) if n - p > 0]
    wanted = source_grid if source_grid is not None else recorded
    if wanted is not None:
        h, w = to_size(wanted, "source_grid")
        readings = [p for p in readings if n - p == h * w] or readings
    info = TableInfo("pos_embed", tuple(flat.shape), readings[0])
    evidence = grid_evidence(flat, info.prefix_rows)
    candidates = list(evidence.ranked) + [(g, float("nan")) for g in evidence.strips]
    try:
        info.grid, info.basis = resolve_grid(flat, info.prefix_rows, source_grid=source_grid, recorded=recorded)
    except AmbiguousGridError:
        info.basis = "not recorded; pass --source-grid HxW (the grid it was trained on)"
    except CheckpointError as e:
        info.basis = str(e)
    info.candidates = sorted(candidates, key=lambda gs: gs[0] != info.grid)  # stable: the rest keep their order
    return info


def grid_table(info: CheckpointInfo) -> torch.Tensor:
    """The checkpoint's position table as ``(1, h, w, C)`` (raises if its grid is unknown)."""
    if not info.tables:
        raise RectViTError(
            f"{info.path}: holds no absolute position table to draw (Swin models have relative-position tables only)."
        )
    t = info.tables[0]
    table = info.state_dict["pos_embed"]
    if table.dim() == 4:
        return table
    if t.grid is None:
        cands = [g for g, _ in t.candidates]
        listing = ", ".join(f"{h}x{w}" for h, w in cands)
        raise AmbiguousGridError(
            f"{info.path}: pass --source-grid HxW (Python: source_grid=(h, w)): the flat position table's grid is "
            f"not recorded, and rectvit never reads it from the content. Candidate grids (best grid score first, "
            f"advisory): {listing}.",
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
                    "candidates": [{"grid": g, "grid_score": s if s == s else None} for g, s in t.candidates],
                }
                for t in info.tables
            ],
            "relative_bias_tables": [
                {
                    "name": n,
                    "shape": s,
                    "windows": [g for g, _ in w],
                    "grid_scores": [x if x == x else None for _, x in w],
                    "recorded": r,
                }
                for n, s, w, r in info.relative_bias_tables
            ],
            "notes": info.notes,
        },
        indent=2,
    )
