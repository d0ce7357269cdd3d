"""Position-similarity pictures (as the ViT paper's position-embedding figure), on the real grid.

For a grid of sample positions, the cosine similarity of that position's vector to every other
position, each drawn as a small ``(h, w)`` map with the table's own aspect ratio. matplotlib is
imported here only (the ``plot`` extra).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import RectViTError

__all__ = [
    "similarity_maps",
    "sample_positions",
    "query_positions",
    "position_similarity_figure",
    "plot_position_similarity",
]


def sample_positions(grid: tuple[int, int], max_rows: int = 4, max_cols: int = 6) -> list[list[tuple[int, int]]]:
    """Evenly spread sample positions: ``rows x cols`` of them, each axis at most its length."""
    h, w = grid
    rows, cols = min(h, max_rows), min(w, max_cols)
    ys = [round((i + 0.5) * h / rows - 0.5) for i in range(rows)]
    xs = [round((j + 0.5) * w / cols - 0.5) for j in range(cols)]
    return [[(y, x) for x in xs] for y in ys]


def similarity_maps(table: torch.Tensor, positions: list[tuple[int, int]]) -> torch.Tensor:
    """``(len(positions), h, w)`` cosine similarities of each position's vector to all of a ``(1, h, w, C)`` table."""
    t = table.detach().float()
    if t.dim() == 4:
        t = t[0]
    if t.dim() != 3:
        raise RectViTError(f"similarity_maps takes a (1, h, w, C) or (h, w, C) table, got {tuple(table.shape)}.")
    flat = torch.nn.functional.normalize(t.reshape(-1, t.shape[-1]), dim=-1)
    idx = torch.tensor([y * t.shape[1] + x for y, x in positions])
    return (flat[idx] @ flat.T).reshape(len(positions), t.shape[0], t.shape[1])


DEFAULT_NOTE = (
    "Each map: how alike every position's vector is to the marked point's (cosine similarity; yellow = alike); "
    "point K marks the same image point in every block."
)


def query_positions(grid: tuple[int, int], reference: list[list[tuple[int, int]]], reference_grid) -> list[list]:
    """The cells of ``grid`` at the same image points as the ``reference`` cells of ``reference_grid``.

    A reference cell's centre, as a fraction of the image's height and width, picks the cell of
    ``grid`` that holds it; so the queries of tables on different grids look at the same place.
    """
    (h, w), (rh, rw) = grid, reference_grid
    return [
        [(min(int((y + 0.5) / rh * h), h - 1), min(int((x + 0.5) / rw * w), w - 1)) for y, x in row]
        for row in reference
    ]


def position_similarity_figure(
    tables: list[tuple[str, torch.Tensor]], max_rows: int = 4, max_cols: int = 6, note: str | None = None
):
    """A matplotlib figure with one block of similarity maps per ``(title, (1, h, w, C) table)``.

    The query positions are sampled on the first table's grid and mapped to the same image points on
    the others (``query_positions``); map ``point K`` queries the same point in every block, marked with a
    red square. ``note`` (default ``DEFAULT_NOTE``) is one line of text at the top saying what to see.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RectViTError("plotting needs matplotlib: pip install 'rectvit[plot]'.") from None
    fig_w = 11.0
    h0, w0 = int(tables[0][1].shape[-3]), int(tables[0][1].shape[-2])
    # Thin strips get fewer, wider panels; tall grids fewer rows. Panel heights stay within bounds.
    cols = min(w0, max_cols if h0 / w0 >= 0.25 else 3)
    rows = min(h0, max_rows if h0 / w0 <= 2 else 3)
    reference = sample_positions((h0, w0), rows, cols)
    blocks, heights = [], []
    for title, table in tables:
        h, w = int(table.shape[-3]), int(table.shape[-2])
        grid = query_positions((h, w), reference, (h0, w0))
        panel_h = min(max((fig_w - 1.5) / cols * h / w, 0.45), 2.6)
        blocks.append((title, (h, w), grid, similarity_maps(table, [p for row in grid for p in row])))
        heights.append(rows * (panel_h + 0.3) + 0.5)
    fig = plt.figure(figsize=(fig_w, sum(heights) + 0.4), layout="constrained")
    fig.suptitle(DEFAULT_NOTE if note is None else note, fontsize=9)
    subfigs = fig.subfigures(len(blocks), 1, squeeze=False, height_ratios=heights)[:, 0]
    for sub, (title, (h, w), grid, maps) in zip(subfigs, blocks):
        axes = sub.subplots(len(grid), len(grid[0]), squeeze=False)
        shape_aspect = "equal" if 0.2 <= h / w <= 5 else "auto"  # true cell shape unless a strip would vanish
        for k, (ax, (y, x)) in enumerate(zip([a for row in axes for a in row], [p for row in grid for p in row])):
            im = ax.imshow(
                maps[k].numpy(), vmin=-1, vmax=1, cmap="viridis", aspect=shape_aspect, interpolation="nearest"
            )
            ax.plot(x, y, marker="s", markersize=6, markerfacecolor="none", markeredgecolor="red", markeredgewidth=1.5)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"point {k + 1} (row {y}, column {x})", fontsize=8, pad=2)
        sub.suptitle(f"{title}: grid {h}x{w}", fontsize=11)
        sub.colorbar(im, ax=axes, shrink=0.9, aspect=30, label="likeness to the marked point")
    return fig


def plot_position_similarity(
    tables: list[tuple[str, torch.Tensor]],
    path: str | os.PathLike,
    max_rows: int = 4,
    max_cols: int = 6,
    note: str | None = None,
) -> Path:
    """Draw ``position_similarity_figure(tables, ...)`` and write it as a PNG to ``path``."""
    fig = position_similarity_figure(tables, max_rows, max_cols, note)
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
