"""rectvit -> timm's layout: the one key that differs is the position table, which timm stores flat.

``to_timm_state_dict(model)`` gives a state dict that ``timm.create_model(arch, img_size=model.img_size,
...)`` loads with ``strict=True``: ``pos_embed`` ``(1, P + h*w, C)`` is the prefix rows
(``prefix_pos_embed``) followed by the model's ``(h, w)`` grid flattened row-major, on the grid the
model records; every other key is already timm's. Loading it back with
``rectvit.load_checkpoint(model, sd, source_grid=model.grid_size)`` restores identical tensors.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import CheckpointError

__all__ = ["to_timm_state_dict", "grid_to_flat_pos_embed"]


def grid_to_flat_pos_embed(pos_embed: torch.Tensor, prefix_pos_embed: torch.Tensor | None = None) -> torch.Tensor:
    """``(1, h, w, C)`` grid (and ``(1, P, C)`` prefix rows) -> timm's flat ``(1, P + h*w, C)`` table."""
    if pos_embed.dim() != 4 or pos_embed.shape[0] != 1:
        raise CheckpointError(f"pos_embed: expected a (1, h, w, C) grid table, got {tuple(pos_embed.shape)}.")
    flat = pos_embed.reshape(1, pos_embed.shape[1] * pos_embed.shape[2], pos_embed.shape[3])
    if prefix_pos_embed is None:
        return flat
    if prefix_pos_embed.dim() != 3 or prefix_pos_embed.shape[-1] != flat.shape[-1]:
        raise CheckpointError(
            f"prefix_pos_embed: expected (1, P, {flat.shape[-1]}), got {tuple(prefix_pos_embed.shape)}."
        )
    return torch.cat([prefix_pos_embed, flat], dim=1)


def to_timm_state_dict(model: nn.Module | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A rectvit model's (or state dict's) weights in timm's layout: a new dict, tensors detached.

    ``pos_embed`` becomes flat on the recorded grid (see the module docstring); ``prefix_pos_embed``
    is folded into it. Build the timm model at the same size (``img_size=model.img_size``) to load it.
    """
    sd = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    out = {k: v.detach() for k, v in sd.items() if k != "prefix_pos_embed"}
    table = sd.get("pos_embed")
    if isinstance(table, torch.Tensor) and table.dim() == 4:
        out["pos_embed"] = grid_to_flat_pos_embed(table.detach(), sd.get("prefix_pos_embed"))
    elif "prefix_pos_embed" in sd:
        raise CheckpointError("prefix_pos_embed without a (1, h, w, C) pos_embed grid: not a rectvit state dict.")
    return out
