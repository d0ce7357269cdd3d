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

__all__ = ["similarity_maps", "sample_positions", "plot_position_similarity"]


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


def plot_position_similarity(
    tables: list[tuple[str, torch.Tensor]], path: str | os.PathLike, max_rows: int = 4, max_cols: int = 6
) -> Path:
    """Draw each ``(title, (1, h, w, C) table)`` as a block of similarity maps; write a PNG to ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RectViTError("plotting needs matplotlib: pip install 'rectvit[plot]'.") from None
    fig_w = 11.0
    blocks, heights = [], []
    for title, table in tables:
        h, w = int(table.shape[-3]), int(table.shape[-2])
        aspect = h / w
        # Thin strips get fewer, wider panels; tall grids fewer rows. Panel heights stay within bounds.
        cols = min(w, max_cols if aspect >= 0.25 else 3)
        rows = min(h, max_rows if aspect <= 2 else 3)
        grid = sample_positions((h, w), rows, cols)
        panel_h = min(max((fig_w - 1.5) / cols * aspect, 0.45), 2.6)
        blocks.append((title, (h, w), grid, similarity_maps(table, [p for row in grid for p in row])))
        heights.append(rows * (panel_h + 0.3) + 0.5)
    fig = plt.figure(figsize=(fig_w, sum(heights)), layout="constrained")
    subfigs = fig.subfigures(len(blocks), 1, height_ratios=heights) if len(blocks) > 1 else [fig]
    for sub, (title, (h, w), grid, maps) in zip(subfigs, blocks):
        axes = sub.subplots(len(grid), len(grid[0]), squeeze=False)
        shape_aspect = "equal" if 0.2 <= h / w <= 5 else "auto"  # true cell shape unless a strip would vanish
        for k, (ax, (y, x)) in enumerate(zip([a for row in axes for a in row], [p for row in grid for p in row])):
            im = ax.imshow(
                maps[k].numpy(), vmin=-1, vmax=1, cmap="viridis", aspect=shape_aspect, interpolation="nearest"
            )
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"position ({y}, {x})", fontsize=7, pad=2)
        sub.suptitle(f"{title}: grid {h}x{w}", fontsize=10)
        sub.colorbar(im, ax=axes, shrink=0.9, aspect=30, label="cosine similarity")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
