"""Hostile matrix for flat-table grid resolution (DESIGN invariant 2: never guess).

Acceptance rule, for every case: ``resolve_grid`` returns the true grid or raises
``AmbiguousGridError`` -- never another grid (asserted: zero wrong). The target model grid (the most
square factorisation, what peers assume) and an architecture default are passed as candidates in
every case; they must never decide. Clean trained-like 2-D tables with both sides >= 4 must resolve
without arguments in >= 90% of cases (the rate is printed and asserted).

Families: trained-like (sums of random low-frequency 2-D sinusoids, small noise), fixed 2-D sin-cos,
noisy (noise as large as the signal), random init (trunc normal 0.02), briefly trained tables of a
toy position task (a few hundred Adam steps), strips 1xN / Nx1 / 2xN / Nx2, transposes and equal
counts (64, 96, 144), channel widths 32..768, 0..5 prefix rows.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from rectvit import AmbiguousGridError
from rectvit.checkpoint.adapt import resolve_grid
from rectvit.resample import sincos_2d

CLEAN_GRIDS = [
    (4, 4), (5, 5), (8, 8), (14, 14), (16, 16), (24, 24), (32, 32),
    (16, 4), (4, 16), (28, 7), (7, 28), (8, 32), (32, 8), (12, 101), (6, 50), (10, 9), (9, 10),
    (4, 24), (24, 4), (6, 16), (16, 6), (8, 12), (12, 8), (9, 16), (16, 9), (6, 24), (24, 6),
    (8, 18), (18, 8), (5, 13), (13, 5), (4, 7), (20, 6), (3, 32), (32, 3), (3, 5), (2, 2),
]  # fmt: skip
SMALL_SIDE = [(2, 32), (32, 2), (2, 16), (16, 2), (3, 8), (8, 3), (2, 48), (48, 2)]
STRIPS = [(1, 64), (64, 1), (1, 32), (32, 1), (1, 96), (1, 100), (100, 1), (1, 196)]
WIDTHS = [32, 64, 192, 384, 768]
PREFIX = [0, 1, 2, 5]


def smooth_table(h: int, w: int, dim: int, seed: int, noise: float = 0.02, waves: int = 6) -> torch.Tensor:
    """``(h*w, dim)``: per channel a sum of ``waves`` random 2-D sinusoids of at most ~1.5 cycles per
    side (what trained tables look like), plus iid noise of ``noise`` times the signal's std."""
    g = torch.Generator().manual_seed(seed)
    fy = torch.rand(waves, dim, generator=g) * 1.5
    fx = torch.rand(waves, dim, generator=g) * 1.5
    amp = torch.randn(waves, dim, generator=g)
    phase = torch.rand(waves, dim, generator=g) * 2 * math.pi
    y = (torch.arange(h).float() + 0.5)[:, None, None, None] / h
    x = (torch.arange(w).float() + 0.5)[None, :, None, None] / w
    t = (amp * torch.sin(2 * math.pi * (fy * y + fx * x) + phase)).sum(2).reshape(h * w, dim)
    return t + noise * t.std() * torch.randn(t.shape, generator=g)


def strip_table(n: int, dim: int, seed: int, noise: float = 0.02) -> torch.Tensor:
    """A smooth 1-D table of ``n`` rows (a 1xN or Nx1 model's: the flat rows are the same)."""
    return smooth_table(1, n, dim, seed, noise)


def random_init(n: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.init.trunc_normal_(torch.empty(n, dim), std=0.02, generator=g)


def toy_trained(grids: list[tuple[int, int]], dim: int, seed: int, steps: int = 300) -> list[torch.Tensor]:
    """Tables after ``steps`` Adam steps (written out: no optimizer import cost) of a tiny position
    task, all trained at once: from (table row + a random image token) a per-table linear read-out
    predicts a few random Fourier features of the row's (y, x). Tables start as timm's: trunc normal 0.02."""
    g = torch.Generator().manual_seed(seed)
    counts = [h * w for h, w in grids]
    table = torch.nn.init.trunc_normal_(torch.empty(sum(counts), dim), std=0.02, generator=g)
    heads = torch.randn(dim, len(grids) * 8, generator=g) / math.sqrt(dim)
    which = torch.repeat_interleave(torch.arange(len(grids)), torch.tensor(counts))
    weight = (1.0 / torch.tensor(counts, dtype=torch.float32))[which][:, None]
    targets = []
    for h, w in grids:
        yy, xx = torch.meshgrid(torch.arange(h) / h, torch.arange(w) / w, indexing="ij")
        freq = torch.randn(2, 4, generator=g) * 2.0
        arg = 2 * math.pi * (yy.reshape(-1, 1) * freq[0] + xx.reshape(-1, 1) * freq[1])
        targets.append(torch.cat([arg.sin(), arg.cos()], dim=1))
    target = torch.cat(targets)
    params = [table.requires_grad_(), heads.requires_grad_()]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    lr, b1, b2 = 3e-3, 0.9, 0.999
    for i in range(1, steps + 1):
        x = table + 0.5 * torch.randn(table.shape, generator=g)
        pred = (x @ heads).reshape(-1, len(grids), 8)[torch.arange(len(which)), which]
        loss = ((pred - target).pow(2) * weight).sum()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, gr, mi, vi in zip(params, grads, m, v):
                mi.mul_(b1).add_(gr, alpha=1 - b1)
                vi.mul_(b2).addcmul_(gr, gr, value=1 - b2)
                p.sub_(lr * (mi / (1 - b1**i)) / ((vi / (1 - b2**i)).sqrt() + 1e-8))
    return list(table.detach().split(counts))


def _with_prefix(rows: torch.Tensor, prefix: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 99)
    cls = torch.randn(prefix, rows.shape[1], generator=g) * rows.std()
    return torch.cat([cls, rows]).unsqueeze(0)


def _squarest(n: int) -> tuple[int, int]:
    h = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return (h, n // h)


def matrix_cases(seed: int = 0) -> list[tuple[str, tuple[int, int], torch.Tensor, int]]:
    """``(family, true grid, flat (1, P + h*w, C) table, P)`` for every case of the matrix."""
    cases = []
    k = 1000 * seed
    for grid in CLEAN_GRIDS:
        for _ in range(3):
            k += 1
            dim, prefix = WIDTHS[k % len(WIDTHS)], PREFIX[k % len(PREFIX)]
            rows = smooth_table(*grid, dim, seed=k)
            cases.append(("clean", grid, _with_prefix(rows, prefix, k), prefix))
        if grid[0] * grid[1] * 4 <= 4096:
            dim = 4 * (8 + 8 * (k % 4))
            cases.append(("sincos", grid, _with_prefix(sincos_2d(grid, dim).reshape(-1, dim), 1, k), 1))
        k += 1
        dim = WIDTHS[k % len(WIDTHS)]
        cases.append(("noisy", grid, _with_prefix(smooth_table(*grid, dim, k, noise=1.0), 1, k), 1))
        cases.append(("random", grid, _with_prefix(random_init(grid[0] * grid[1], dim, k), 1, k), 1))
    for grid in SMALL_SIDE:
        for j in range(2):
            k += 1
            dim = WIDTHS[k % len(WIDTHS)]
            cases.append(("small-side", grid, _with_prefix(smooth_table(*grid, dim, k), j, k), j))
        cases.append(("noisy", grid, _with_prefix(smooth_table(*grid, 64, k, noise=1.0), 1, k), 1))
    for grid in STRIPS:
        for j in range(2):
            k += 1
            dim = WIDTHS[k % len(WIDTHS)]
            cases.append(("strip", grid, _with_prefix(strip_table(grid[0] * grid[1], dim, k), j, k), j))
        cases.append(("random", grid, _with_prefix(random_init(grid[0] * grid[1], 64, k), 1, k), 1))
    toy = [(8, 8), (16, 4), (4, 16), (32, 2), (2, 32), (8, 12), (12, 8), (12, 12), (9, 16), (16, 9), (7, 28), (1, 64)]
    for dim in (32, 64):
        k += 1
        for grid, table in zip(toy, toy_trained(toy, dim, k)):
            cases.append(("toy-trained", grid, _with_prefix(table, 1, k), 1))
    return cases


def run_matrix(cases, resolve=resolve_grid):
    """Resolve every case with the target (squarest) and a default grid as candidates; tally outcomes."""
    tally: Counter = Counter()
    wrong, outcomes = [], []
    for family, grid, flat, prefix in cases:
        n = grid[0] * grid[1]
        candidates = [(_squarest(n), "target model grid"), ((14, 14), "architecture default grid")]
        try:
            got, basis = resolve(flat, prefix, candidates=candidates)
        except AmbiguousGridError:
            outcome = "ambiguous"
        else:
            outcome = "correct" if tuple(got) == tuple(grid) else "wrong"
            if outcome == "wrong":
                wrong.append((family, grid, got, basis))
        tally[family, outcome] += 1
        outcomes.append(outcome)
    return tally, wrong, outcomes


def _summary(tally) -> str:
    families = sorted({f for f, _ in tally})
    lines = [f"{'family':12s} correct ambiguous wrong"]
    for f in families:
        lines.append(f"{f:12s} {tally[f, 'correct']:7d} {tally[f, 'ambiguous']:9d} {tally[f, 'wrong']:5d}")
    tot = [sum(v for (_, o), v in tally.items() if o == x) for x in ("correct", "ambiguous", "wrong")]
    lines.append(f"{'total':12s} {tot[0]:7d} {tot[1]:9d} {tot[2]:5d}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def results():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cases = matrix_cases()
        return cases, *run_matrix(cases)
    finally:
        torch.set_num_threads(threads)


def test_never_a_wrong_grid(results):
    cases, tally, wrong, _ = results
    print("\n" + _summary(tally))
    assert not wrong, f"{len(wrong)} wrong grids: {wrong[:10]}"


def test_clean_2d_tables_resolve_without_arguments(results):
    cases, _, _, outcomes = results
    clean = [o for (f, g, _, _), o in zip(cases, outcomes) if f == "clean" and min(g) >= 4]
    rate = clean.count("correct") / len(clean)
    print(f"\nclean trained-like 2-D tables (both sides >= 4): {clean.count('correct')}/{len(clean)} = {rate:.1%}")
    assert rate >= 0.9


def test_uninformative_tables_and_strips_never_resolve(results):
    """Random-init tables and strips carry no evidence of their grid: always AmbiguousGridError."""
    _, tally, _, _ = results
    for family in ("random", "strip"):
        assert tally[family, "correct"] == 0 and tally[family, "wrong"] == 0, family
