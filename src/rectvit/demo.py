"""``rectvit demo``: why the position grid matters, end to end, offline.

Until the full demo (a trained spectrogram model evaluated at other rectangles) lands, this runs the
resampling core on a smooth, trained-like 16x4 position table: rectvit resamples it on its recorded
grid, while the square assumption reads the same 64 rows as 8x8 and scrambles it.
"""

from __future__ import annotations

import argparse
import math

import torch


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def _smooth_table(h: int, w: int, dim: int, seed: int) -> torch.Tensor:
    """A trained-like table ``(1, h, w, dim)``: low-frequency functions of (row, column)."""
    g = torch.Generator().manual_seed(seed)
    freq = torch.rand(dim, 2, generator=g) * 1.5 + 0.2
    phase = torch.rand(dim, generator=g) * 2 * math.pi
    y = torch.arange(h, dtype=torch.float32)[:, None, None] / h * math.pi
    x = torch.arange(w, dtype=torch.float32)[None, :, None] / w * math.pi
    return torch.sin(y * freq[:, 0] * 2 + x * freq[:, 1] * 2 + phase).unsqueeze(0)


def run_demo(args: argparse.Namespace) -> int:
    from .grid import smoothness
    from .resample import resample_abs_pos_embed, resample_grid

    true_grid, target = (16, 4), (32, 8)
    table = _smooth_table(*true_grid, 64, args.seed)
    flat = table.reshape(1, -1, table.shape[-1])
    truth = resample_grid(_smooth_table(*target, 64, args.seed), target)  # the same functions, sampled finer
    ours = resample_abs_pos_embed(flat, target, old_size=true_grid, num_prefix_tokens=0)
    square = resample_abs_pos_embed(flat, target, old_size=(8, 8), num_prefix_tokens=0)
    ref = truth.reshape(1, -1, 64)
    cos = lambda a, b: torch.nn.functional.cosine_similarity(a, b, dim=-1).mean().item()
    print(f"a trained-like {true_grid[0]}x{true_grid[1]} position table (64 rows), resized to {target[0]}x{target[1]}:")
    true_s, square_s = smoothness(flat, true_grid), smoothness(flat, (8, 8))
    print(f"  smoothness on its true grid 16x4: {true_s:.3f}   read as 8x8: {square_s:.3f}")
    print(f"  rectvit (recorded grid 16x4): cosine to the true finer table {cos(ours, ref):.3f}")
    print(f"  square assumption (8x8):      cosine to the true finer table {cos(square, ref):.3f}")
    return 0
