"""Helpers shared by the test modules (import them with ``from helpers import ...``)."""

import torch


def randomize_(model: torch.nn.Module, seed: int = 0, std: float = 0.02) -> torch.nn.Module:
    """Give every parameter and float buffer random non-zero values (oracles must agree on all of them)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() <= 1 and ("norm" in name or name.endswith("gamma")):
                p.copy_(1.0 + std * 5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * 5 * torch.randn(p.shape, generator=g))
    return model
