"""Loss normalisation for token-budget batches: every image of the global batch weighs the same."""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..errors import RectViTError

__all__ = ["global_mean"]


def global_mean(losses: torch.Tensor, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """This rank's share of the mean loss over every image of the step, on all ranks: ``(B,)`` -> scalar.

    ``losses``: this rank's per-image losses (e.g. ``cross_entropy(..., reduction="none")``); ranks may
    hold different numbers of images. Returns ``losses.sum() * world / N``, ``N`` the images of all
    ranks (one ``all_reduce`` of the count over ``group``). DDP and FSDP average gradients over the
    ``world`` ranks, so the gradient is that of the mean over all ``N`` images, each weighed alike.
    Without an initialised process group: ``losses.mean()``. The value is a share: for logging, sum
    it over ranks and divide by ``world``.
    """
    if not isinstance(losses, torch.Tensor) or losses.dim() != 1:
        shape = tuple(losses.shape) if isinstance(losses, torch.Tensor) else type(losses).__name__
        raise RectViTError(f"losses must be a (B,) tensor of per-image losses (reduction='none'), got {shape}.")
    if not (dist.is_available() and dist.is_initialized()):
        if losses.numel() == 0:
            raise RectViTError("losses is empty: no image to average over.")
        return losses.mean()
    count = torch.tensor([losses.numel()], dtype=torch.int64, device=losses.device)
    dist.all_reduce(count, group=group)
    total = int(count.item())
    if total == 0:
        raise RectViTError("no rank has an image in this step: nothing to average over.")
    return losses.sum() * (dist.get_world_size(group) / total)
