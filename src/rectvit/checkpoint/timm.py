"""timm -> rectvit state-dict conversion for ViT models.

timm stores a ViT's learned positions flat, ``pos_embed`` ``(1, P + h*w, C)``, where ``P`` is the
number of prefix tokens with a position (0 with ``no_embed_class``). rectvit stores the grid part as
``pos_embed`` ``(1, h, w, C)`` and the prefix rows as ``prefix_pos_embed`` ``(1, P, C)``. Every
other key is the same. A flat table does not know its ``(h, w)``: the grid must be given or
follow from the target model (see ``flat_table_grid``).
"""

from __future__ import annotations

import torch

from ..errors import AmbiguousGridError, CheckpointError
from ..grid import Size, factorizations, to_size

__all__ = ["is_timm_vit", "flat_table_grid", "timm_vit_to_rectvit"]


def is_timm_vit(state_dict: dict[str, torch.Tensor]) -> bool:
    """True for a state dict whose ``pos_embed`` is timm's flat ``(1, P + h*w, C)`` table."""
    table = state_dict.get("pos_embed")
    return isinstance(table, torch.Tensor) and table.dim() == 3


def flat_table_grid(num_positions: int, target_grid: Size, source_grid=None) -> tuple[Size, str]:
    """The ``(h, w)`` of a flat table's ``num_positions`` grid rows, and the basis it was chosen on.

    ``source_grid`` wins when given (and must account for every row). Otherwise the target model's
    grid is used when its count matches. Anything else is ambiguous and raises
    ``AmbiguousGridError`` listing the candidate grids.
    """
    if source_grid is not None:
        grid = to_size(source_grid, "source_grid")
        if grid[0] * grid[1] != num_positions:
            raise CheckpointError(
                f"source_grid {grid[0]}x{grid[1]} has {grid[0] * grid[1]} positions, the checkpoint's table has "
                f"{num_positions}; grids with {num_positions} positions: {factorizations(num_positions)}."
            )
        return grid, "source_grid argument"
    if target_grid[0] * target_grid[1] == num_positions:
        return tuple(target_grid), "target model grid (same position count)"
    cands = factorizations(num_positions)
    raise AmbiguousGridError(
        f"the checkpoint's position table has {num_positions} positions, the model's grid "
        f"{target_grid[0]}x{target_grid[1]} has {target_grid[0] * target_grid[1]}; the table's own (h, w) is "
        f"unknown. Candidate grids: {cands}. Pass source_grid=(h, w) to say which one it was trained on.",
        candidates=cands,
    )


def timm_vit_to_rectvit(
    state_dict: dict[str, torch.Tensor],
    *,
    num_prefix_rows: int,
    target_grid: Size,
    source_grid=None,
) -> tuple[dict[str, torch.Tensor], Size | None, str | None]:
    """Convert a timm ViT state dict to rectvit's layout.

    ``num_prefix_rows`` is the number of prefix tokens with a position row in the flat table (the
    target model's ``num_pos_prefix_tokens``). Returns the new state dict, the source grid of the
    position table (``None`` without a table) and the basis that grid was chosen on. The table keeps
    its source grid here; adapting it to the model is a separate step.
    """
    out = dict(state_dict)
    if not is_timm_vit(state_dict):
        return out, None, None
    flat = out.pop("pos_embed")
    if flat.shape[0] != 1 or flat.shape[1] < num_prefix_rows:
        raise CheckpointError(
            f"pos_embed: expected a flat table (1, {num_prefix_rows} + h*w, C), got {tuple(flat.shape)}."
        )
    num_positions = flat.shape[1] - num_prefix_rows
    grid, basis = flat_table_grid(num_positions, target_grid, source_grid)
    out["pos_embed"] = flat[:, num_prefix_rows:].reshape(1, grid[0], grid[1], flat.shape[-1])
    if num_prefix_rows:
        out["prefix_pos_embed"] = flat[:, :num_prefix_rows]
    return out, grid, basis
