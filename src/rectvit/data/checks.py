"""Argument checks shared by ``rectvit.data``: each raises a ``RectViTError`` that names the argument."""

from __future__ import annotations

import numbers

import torch.distributed as dist

from ..errors import RectViTError

__all__ = ["count", "world"]


def count(value, name: str, minimum: int = 1, error: type[RectViTError] = RectViTError) -> int:
    """``value`` as an int ``>= minimum`` (bools refused), else ``error`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise error(f"{name} must be {kind}, got {value!r}.")
    return int(value)


def world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """``(num_replicas, rank)``, each defaulting to the initialised process group's (else 1 and 0), checked."""
    initialised = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    num_replicas, rank = count(num_replicas, "num_replicas"), count(rank, "rank", minimum=0)
    if rank >= num_replicas:
        raise RectViTError(f"rank must be in [0, num_replicas={num_replicas}), got {rank}.")
    return num_replicas, rank
