"""Adapting a converted (rectvit-layout) state dict to a target model, one small function per step.

Steps, in order: resolve the grid of a flat position table (``resolve_grid``, DESIGN invariant 2);
resample position tables to the model's grid; PI-resize the patch kernel; adapt input channels;
resample Swin v1 relative-position-bias tables to the model's windows; handle a classifier of
another size; check every remaining key. Each step records what it did in the ``LoadReport``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import AmbiguousGridError, CheckpointError
from ..grid import Size, factorizations, relative_windows, to_size
from ..resample import resample_grid, resample_patch_embed, resample_relative_bias_table
from .evidence import candidate_listing, grid_evidence, rank_windows
from .hub import HubSource

__all__ = [
    "LoadReport",
    "resolve_grid",
    "adapt_pos_embed",
    "adapt_patch_embed",
    "adapt_input_conv",
    "adapt_relative_position_bias",
    "adapt_classifier",
    "check_keys",
    "check_finite",
]

HEAD_PREFIXES = ("head.", "head_dist.")


@dataclass
class LoadReport:
    """What a load did: the source layout, each adapted tensor (from -> to, method), and the grid basis;
    ``hub``: the hub repository, revision (the commit) and file the weights came from."""

    layout: str
    source_grid: Size | None = None
    grid_basis: str | None = None
    rows: list[tuple[str, tuple, tuple, str, str]] = field(default_factory=list)  # key, from, to, method, basis
    dropped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hub: HubSource | None = None

    def add(self, key: str, old: tuple, new: tuple, method: str, basis: str = "") -> None:
        self.rows.append((key, tuple(old), tuple(new), method, basis))

    def __str__(self) -> str:
        head = f"layout: {self.layout}"
        if self.source_grid is not None:
            head += f"; source grid {self.source_grid[0]}x{self.source_grid[1]} ({self.grid_basis})"
        lines = [head] + ([f"  from {self.hub}"] if self.hub is not None else [])
        if self.rows:
            table = [("tensor", "from -> to", "method", "grid basis")]
            table += [(k, f"{_shape(a)} -> {_shape(b)}", m, g or "-") for k, a, b, m, g in self.rows]
            widths = [max(len(r[i]) for r in table) for i in range(4)]
            lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
        else:
            lines.append("  every tensor loaded as stored")
        lines += [f"  dropped: {k}" for k in self.dropped]
        lines += [f"  left at init (missing): {k}" for k in self.missing]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _shape(s: tuple) -> str:
    return str(tuple(int(d) for d in s))


def _grid_list(grids: list[Size]) -> str:
    return ", ".join(f"{h}x{w}" for h, w in grids)


def resolve_grid(
    flat: torch.Tensor,
    num_prefix_tokens: int,
    *,
    source_grid=None,
    recorded: Size | None = None,
    candidates: list[tuple[Size, str]] = (),
    name: str = "pos_embed",
) -> tuple[Size, str]:
    """The ``(h, w)`` of a flat ``(1, P + h*w, C)`` table and the basis it was chosen on (DESIGN invariant 2).

    In order: an explicit ``source_grid``; the grid the file or its config ``recorded``; the only
    factorisation of the row count (one position). Either must account for every row
    (``CheckpointError`` otherwise). The table's content never decides (docs/checkpoints.md: a
    periodic table and a banded one on another grid hold the same rows): otherwise
    ``AmbiguousGridError``, whose candidates are every factorisation ranked by grid score (advisory),
    ``candidates`` (the target model grid, the architecture default) named among them.
    """
    n = flat.shape[1] - num_prefix_tokens
    if n <= 0:
        raise CheckpointError(
            f"{name}: a flat table {tuple(flat.shape)} has no grid rows after {num_prefix_tokens} prefix rows."
        )
    rows = f"{num_prefix_tokens} prefix row" + ("" if num_prefix_tokens == 1 else "s")
    given = [(source_grid, "source_grid", "source_grid argument")]
    given.append((recorded, "the recorded grid", "grid recorded in the checkpoint"))
    for grid, what, basis in given:
        if grid is None:
            continue
        grid = to_size(grid, what)
        if grid[0] * grid[1] != n:
            raise CheckpointError(
                f"{name}: {what} {grid[0]}x{grid[1]} has {grid[0] * grid[1]} positions, the table has {n} "
                f"(after {rows}); grids with {n} positions: "
                f"{_grid_list(factorizations(n))}. Pass source_grid=(h, w) (CLI: --source-grid HxW) with the grid "
                "it was trained on, or load it into a model with the checkpoint's prefix tokens."
            )
        return grid, basis
    if n == 1:
        return (1, 1), "the only grid with 1 position"
    evidence = grid_evidence(flat, num_prefix_tokens)
    marks = _marks(candidates)
    ranking = f"unranked ({evidence.note})" if evidence.note else "ranked by grid score (advisory, not evidence)"
    raise AmbiguousGridError(
        f"{name}: pass source_grid=(h, w) (CLI: --source-grid HxW), the grid the checkpoint was trained on "
        f"(input size / patch size). The table is flat ({n} positions after {rows}), "
        "nothing records its grid, and rectvit never reads a grid from a table's content (docs/checkpoints.md). "
        f"Candidate grids, {ranking}: {evidence.listing(marks)}.",
        candidates=[g for g, _ in evidence.ranked] + evidence.strips,
    )


def _marks(candidates: list[tuple[Size, str]]) -> dict[Size, str]:
    """``{size: "target model grid, architecture default grid"}``: what each candidate size is, for a listing."""
    marks: dict[Size, str] = {}
    for size, basis in candidates:
        size = tuple(size)
        marks[size] = f"{marks[size]}, {basis}" if size in marks else basis
    return marks


def adapt_pos_embed(sd: dict[str, torch.Tensor], model: nn.Module, report: LoadReport) -> None:
    """Resample a ``(1, h, w, C)`` ``pos_embed`` to the model's table grid (bicubic, antialiased)."""
    table, own = sd.get("pos_embed"), getattr(model, "pos_embed", None)
    if not isinstance(table, torch.Tensor) or not isinstance(own, torch.Tensor) or table.dim() != 4:
        return
    grid = (int(own.shape[1]), int(own.shape[2]))
    if tuple(table.shape[1:3]) != grid:
        sd["pos_embed"] = resample_grid(table, grid)
        report.add("pos_embed", table.shape, sd["pos_embed"].shape, "resample_grid bicubic", report.grid_basis or "")


def adapt_patch_embed(sd: dict[str, torch.Tensor], model: nn.Module, report: LoadReport) -> None:
    """PI-resize the patch kernel to the model's patch size; adapt the input convolution's channels."""
    own = model.state_dict()
    key = "patch_embed.proj.weight"
    weight = sd.get(key)
    if weight is not None and key in own and weight.dim() == 4 and weight.shape[2:] != own[key].shape[2:]:
        sd[key] = resample_patch_embed(weight, tuple(own[key].shape[2:]))
        report.add(key, weight.shape, sd[key].shape, "resample_patch_embed (FlexiViT pseudo-inverse)")
    in_chans = getattr(model, "in_chans", None)
    for key, weight in list(sd.items()):
        mine = own.get(key)
        is_input_conv = key.startswith("patch_embed.") and weight.dim() == 4 and mine is not None
        if is_input_conv and mine.shape[1] == in_chans != weight.shape[1] and mine.shape[0] == weight.shape[0]:
            sd[key] = adapt_input_conv(weight, in_chans)
            how = "summed to 1 channel" if in_chans == 1 else "channels repeated and rescaled"
            report.add(key, weight.shape, sd[key].shape, f"input channels: {how}")


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """A ``(O, I, kh, kw)`` kernel for ``in_chans`` inputs, as timm's ``adapt_input_conv``.

    One channel: the sum over input channels. More: the channels repeated up to ``in_chans`` and
    scaled by ``I / in_chans``. Both keep the response to an input whose channels are all equal when
    ``in_chans`` is 1 or a multiple of ``I``.
    """
    old = weight.shape[1]
    if in_chans == old:
        return weight
    dtype = weight.dtype
    w = weight.float()
    if in_chans == 1:
        w = w.sum(dim=1, keepdim=True)
    else:
        w = w.repeat(1, math.ceil(in_chans / old), 1, 1)[:, :in_chans] * (old / in_chans)
    return w.to(dtype)


def adapt_relative_position_bias(
    sd: dict[str, torch.Tensor],
    model: nn.Module,
    report: LoadReport,
    recorded: dict[str, list[int]] | None = None,
    default_windows: dict[str, Size] | None = None,
    source_windows=None,
) -> None:
    """Resample Swin v1 ``relative_position_bias_table`` ``((2wh-1)(2ww-1), heads)`` to the model's windows.

    BEiT's tables carry ``num_extra_bias_rows`` class-token rows after the grid (an attribute of the
    module holding the table); they are split off to find the window and kept as they are.

    A flat table does not know its window either (``(4, 12)`` and ``(12, 4)`` give the same count):
    the window comes from ``source_windows`` (one ``(wh, ww)`` for every table whose rows it fits, or
    ``{key: (wh, ww)}``), else ``recorded`` (our metadata, a timm or HF config, a named tag's input size),
    else the only window that fits (see ``_table_window``). The table's content never decides, as for a
    position grid; the model's own window and the architecture default's (``default_windows``) are
    candidates, never evidence.
    """
    own = model.state_dict()
    given = _given_windows(_bias_table_rows(sd, model), source_windows)
    for key, table in list(sd.items()):
        if not key.endswith("relative_position_bias_table") or key not in own or table.dim() != 2:
            continue
        module = model.get_submodule(key.rsplit(".", 1)[0])
        new_win = tuple(getattr(module, "window_size", None) or ())
        if len(new_win) != 2 or table.shape[1] != own[key].shape[1]:
            continue  # left to check_keys, which names both shapes
        extra = int(getattr(module, "num_extra_bias_rows", 0))  # BEiT's class-token rows, kept as they are
        candidates = [(new_win, "target model window")]
        if (default_windows or {}).get(key):
            candidates.append((tuple(default_windows[key]), "architecture default window"))
        if key in given:
            old_win, basis = given[key], "source_windows argument"
        else:
            grid_rows = table[: table.shape[0] - extra]
            old_win, basis = _table_window(key, grid_rows, candidates, (recorded or {}).get(key), extra)
        if old_win != new_win:
            mode = getattr(module, "bias_interpolation", None) or getattr(model, "bias_interpolation", "geometric")
            sd[key] = resample_relative_bias_table(table, old_win, new_win, mode, num_extra_tokens=extra)
            windows = f"{old_win[0]}x{old_win[1]} -> {new_win[0]}x{new_win[1]}"
            method = f"resample_relative_bias_table ({mode}), window {windows}"
            report.add(key, table.shape, sd[key].shape, method, basis)


def _bias_table_rows(sd: dict[str, torch.Tensor], model: nn.Module) -> dict[str, int]:
    """``{key: rows of the relative-offset grid}`` of the checkpoint's bias tables (BEiT's extra rows left out)."""
    rows = {}
    for key, table in sd.items():
        if key.endswith("relative_position_bias_table") and table.dim() == 2:
            try:
                module = model.get_submodule(key.rsplit(".", 1)[0])
            except AttributeError:
                module = None
            rows[key] = table.shape[0] - int(getattr(module, "num_extra_bias_rows", 0))
    return rows


def _given_windows(rows: dict[str, int], source_windows) -> dict[str, Size]:
    """``{bias-table key: window}`` from a ``source_windows`` argument; a window that fits no table is an error."""
    if source_windows is None:
        return {}
    if isinstance(source_windows, dict):
        given = {k: to_size(w, f"source_windows[{k!r}]") for k, w in source_windows.items()}
        unknown = [k for k in given if k not in rows]
        if unknown:
            raise CheckpointError(
                f"source_windows names {unknown[:4]}, which are not bias tables of the checkpoint; "
                f"its tables are e.g. {list(rows)[:4]}."
            )
    else:
        window = to_size(source_windows, "source_windows")
        given = {k: window for k, n in rows.items() if window in relative_windows(n)}
        if rows and not given:
            counts = sorted(set(rows.values()))
            raise CheckpointError(
                f"source_windows {window[0]}x{window[1]} gives {(2 * window[0] - 1) * (2 * window[1] - 1)} table "
                f"rows; the checkpoint's bias tables have {counts} rows (windows "
                f"{', '.join(f'{h}x{w}' for r in counts for h, w in relative_windows(r))})."
            )
    for key, window in given.items():
        if window not in relative_windows(rows[key]):
            raise CheckpointError(
                f"source_windows gives {key} the window {window[0]}x{window[1]}, which does not fit its "
                f"{rows[key]} rows; windows that fit: {relative_windows(rows[key])}."
            )
    return given


def _table_window(
    key: str, table: torch.Tensor, candidates: list[tuple[Size, str]], recorded, extra: int = 0
) -> tuple[Size, str]:
    """The window ``(wh, ww)`` a bias table's ``(2wh-1)(2ww-1)`` grid rows were trained with, and the basis.

    A recorded window (``CheckpointError`` when it does not fit the rows), else the only window that
    fits. Otherwise ``AmbiguousGridError``: the windows that fit, ranked by the content's grid score
    (advisory; docs/checkpoints.md), ``candidates`` (the model's window, the architecture default's)
    named among them. ``extra``: class-token rows set aside after the grid rows (BEiT), for the message.
    """
    rows = table.shape[0]
    fits = relative_windows(rows)
    after = f" (and {extra} class-token rows)" if extra else ""
    if not fits:
        raise CheckpointError(
            f"{key}: no window gives a bias table of {rows} rows{after} ((2wh-1)(2ww-1) rows, an odd count); the "
            "checkpoint is not a bias table of this architecture. Build the model with the checkpoint's architecture."
        )
    if recorded is not None:
        window = to_size(recorded, "the recorded window")
        if window not in fits:
            raise CheckpointError(
                f"{key}: the recorded window {window[0]}x{window[1]} gives {(2 * window[0] - 1) * (2 * window[1] - 1)} "
                f"rows, the table has {rows}{after}; windows with {rows} rows: {_grid_list(fits) or 'none'}. Pass "
                "source_windows=(wh, ww) (CLI: --source-window WHxWW) with the window it was trained on."
            )
        return window, "window recorded in the checkpoint"
    if len(fits) == 1:
        return fits[0], "the only window with this many rows"
    ranked = rank_windows(table)
    unranked = not torch.isfinite(table).all()
    ranking = (
        "unranked (the table holds NaN or Inf values)" if unranked else "ranked by grid score (advisory, not evidence)"
    )
    example = (
        "source_windows=14 for BEiT weights trained at 224x224 with patch 16 (its window is the patch grid)"
        if extra
        else "source_windows=7 for timm's *_window7_* weights"
    )
    raise AmbiguousGridError(
        f"{key}: pass source_windows=(wh, ww) (create_model / load_model / load_checkpoint; CLI: --source-window "
        f"WHxWW), the window the checkpoint was trained with, e.g. {example}. The bias table has {rows} rows{after}, "
        "nothing records its window, and rectvit never reads a window from a table's content (docs/checkpoints.md). "
        f"Candidate windows, {ranking}: {candidate_listing(ranked, _marks(candidates))}.",
        candidates=[w for w, _ in ranked],
    )


def adapt_classifier(sd: dict[str, torch.Tensor], model: nn.Module, strict: bool, report: LoadReport) -> None:
    """A classifier of another size: a ``CheckpointError`` under ``strict``, else dropped (model keeps its init)."""
    own = model.state_dict()
    bad = [k for k in sd if k.startswith(HEAD_PREFIXES) and k in own and sd[k].shape != own[k].shape]
    absent = [k for k in sd if k.startswith(HEAD_PREFIXES) and k not in own]
    if not bad and not absent:
        return
    if strict:
        shapes = "; ".join(f"{k}: checkpoint {_shape(sd[k].shape)}, model {_shape(own[k].shape)}" for k in bad)
        shapes += "".join(f"; {k}: checkpoint {_shape(sd[k].shape)}, model has none" for k in absent)
        raise CheckpointError(
            f"the classifier does not fit the model ({shapes}); pass strict=False to load everything else and "
            "keep the model's freshly initialised classifier, or build the model with the checkpoint's num_classes."
        )
    for k in bad + absent:
        report.add(
            k, sd.pop(k).shape, own[k].shape if k in own else (), "dropped: classifier of another size (strict=False)"
        )
        report.dropped.append(k)


def check_keys(
    sd: dict[str, torch.Tensor], model: nn.Module, strict: bool, report: LoadReport, heads: bool = True
) -> None:
    """Every remaining key must exist in the model with the same shape, and every model key must be given.

    A checkpoint without a classifier (e.g. a backbone) leaves the model's head at its init when not
    ``strict`` (reported); every other gap is a ``CheckpointError`` naming the keys and shapes.
    ``heads=False`` checks everything but the classifier (so body mismatches are named first).
    """
    own = model.state_dict()
    considered = [k for k in own if heads or not k.startswith(HEAD_PREFIXES)]
    missing = [k for k in considered if k not in sd and (strict or not k.startswith(HEAD_PREFIXES))]
    unexpected = [k for k in sd if k not in own and (heads or not k.startswith(HEAD_PREFIXES))]
    misshapen = [
        k for k in sd if k in own and sd[k].shape != own[k].shape and (heads or not k.startswith(HEAD_PREFIXES))
    ]
    if missing or unexpected or misshapen:
        parts = []
        if missing:
            parts.append(f"missing from the checkpoint: {missing[:12]}")
        if unexpected:
            parts.append(f"not in the model: {unexpected[:12]}")
        if misshapen:
            shapes = [f"{k}: checkpoint {_shape(sd[k].shape)}, model {_shape(own[k].shape)}" for k in misshapen[:12]]
            parts.append("shapes differ: " + "; ".join(shapes))
        raise CheckpointError(
            "the checkpoint does not fit the model: " + " | ".join(parts) + ". Build the model with the "
            "checkpoint's architecture (rectvit inspect CKPT shows it), or convert the checkpoint first."
        )
    if heads:
        report.missing.extend(k for k in own if k not in sd)


def check_finite(sd: dict[str, torch.Tensor], report: LoadReport) -> None:
    """Report (and warn about) tensors holding NaN or Inf; they load as they are."""
    for key, value in sd.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            bad = int((~torch.isfinite(value)).sum())
            msg = f"{key} holds {bad} NaN/Inf value(s) of {value.numel()}"
            report.warnings.append(msg)
            warnings.warn(f"rectvit: {msg}", stacklevel=3)
