"""Hostile matrix for flat-table grid resolution (DESIGN invariant 2: never guess).

Acceptance rules, for every case (families below, seeds 0 and 1):

- without a record or ``source_grid``, ``resolve_grid`` raises ``AmbiguousGridError`` whose candidates
  are every factorisation of the row count (none left out), the message leading with the argument to
  pass; it never returns a grid (content is advisory), so no case can load a wrong grid;
- a record, or a ``source_grid``, whose count fits is used as given, whatever the content ranks first
  (the true grid, and another grid of the same count); one whose count does not fit is a
  ``CheckpointError``;
- the ranking is informative: the true grid ranks first on at least the floor stated per family in
  ``RANK_FLOORS`` (a broken scorer falls below them: ``test_a_broken_scorer_falls_below_the_floors``).

Families: trained-like (sums of random low-frequency 2-D sinusoids, small noise), fixed 2-D sin-cos,
noisy (noise as large as the signal), random init (trunc normal 0.02), briefly trained tables of a
toy position task (a few hundred Adam steps), strips 1xN / Nx1 / 2xN / Nx2, transposes and equal
counts (64, 96, 144), channel widths 32..768, 0..5 prefix rows. Genuinely trained tables (small
ViTs, the demo's) are judged in tests/test_grid_tables.py.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from rectvit import AmbiguousGridError, CheckpointError
from rectvit.checkpoint import evidence
from rectvit.checkpoint.adapt import resolve_grid
from rectvit.grid import factorizations
from rectvit.resample import sincos_2d

pytestmark = pytest.mark.xdist_group("grid_matrix")  # one worker builds the matrix once (docs/testing.md)

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


def _squarest(n: int) -> tuple[int, int]:
    h = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return (h, n // h)


SEEDS = (0, 1)
# Share of cases whose true grid the content ranks first, per family (measured: 1.00 clean, sin-cos and
# small-side; 0.93-0.96 noisy; 0.75-0.83 toy-trained; random init and strips carry no evidence of it).
RANK_FLOORS = {"clean": 0.95, "sincos": 0.95, "small-side": 0.9, "noisy": 0.85, "toy-trained": 0.65}


def ranks_first(flat: torch.Tensor, prefix: int, grid: tuple[int, int]) -> bool:
    ranked = evidence.grid_evidence(flat, prefix).ranked
    return bool(ranked) and ranked[0][0] == tuple(grid)


def rank_shares(cases) -> dict[str, float]:
    tally: Counter = Counter()
    for family, grid, flat, prefix in cases:
        tally[family, ranks_first(flat, prefix, grid)] += 1
        tally[family] += 1
    return {f: tally[f, True] / tally[f] for f in {c[0] for c in cases}}


@pytest.fixture(scope="module")
def cases():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [c for seed in SEEDS for c in matrix_cases(seed)]
    finally:
        torch.set_num_threads(threads)


def _candidates(grid):
    n = grid[0] * grid[1]
    return [(_squarest(n), "target model grid"), ((14, 14), "architecture default grid")]


def test_without_a_record_every_case_is_ambiguous_with_every_candidate(cases):
    outcomes = Counter()
    for family, grid, flat, prefix in cases:
        n = grid[0] * grid[1]
        with pytest.raises(AmbiguousGridError) as info:
            resolve_grid(flat, prefix, candidates=_candidates(grid))
        msg = str(info.value)
        assert sorted(info.value.candidates) == factorizations(n), (family, grid)
        assert msg.startswith("pos_embed: pass source_grid=(h, w)"), msg[:80]
        assert all(f"{h}x{w} " in msg for h, w in factorizations(n)), (family, grid)  # none left out
        assert f"{_squarest(n)[0]}x{_squarest(n)[1]} " in msg and "(target model grid" in msg
        outcomes[family] += 1
    print("\nambiguous (no record): " + ", ".join(f"{f} {k}" for f, k in sorted(outcomes.items())))


def test_a_record_or_source_grid_whose_count_fits_is_used_whatever_the_content(cases):
    for _, grid, flat, prefix in cases:
        other = next((g for g in factorizations(grid[0] * grid[1]) if g != tuple(grid)), tuple(grid))
        for g in (tuple(grid), other):  # a truthful record, and one the content may contradict
            assert resolve_grid(flat, prefix, recorded=g) == (g, "grid recorded in the checkpoint")
            assert resolve_grid(flat, prefix, source_grid=g, recorded=grid) == (g, "source_grid argument")


def test_a_record_or_source_grid_whose_count_does_not_fit_is_a_checkpoint_error(cases):
    for _, grid, flat, prefix in cases[::7]:
        wrong = (grid[0] + 1, grid[1])
        with pytest.raises(CheckpointError, match=rf"recorded grid {wrong[0]}x{wrong[1]} has .*source_grid="):
            resolve_grid(flat, prefix, recorded=wrong)
        with pytest.raises(CheckpointError, match=rf"source_grid {wrong[0]}x{wrong[1]} has"):
            resolve_grid(flat, prefix, source_grid=wrong, recorded=grid)


def test_the_ranking_puts_the_true_grid_first_above_each_floor(cases):
    shares = rank_shares(cases)
    print("\ntrue grid ranked first: " + ", ".join(f"{f} {s:.2f}" for f, s in sorted(shares.items())))
    for family, floor in RANK_FLOORS.items():
        assert shares[family] >= floor, (family, shares[family], floor)
    assert shares["strip"] == 0  # a strip is never scored: content cannot orient it


MUTATIONS = ("no row-wrap term", "transposed")


def break_scorer(monkeypatch, mutation: str) -> None:
    """Plant a plausible slip in the grid score: drop the row-wrap term, or score the transposed grid."""
    parts = evidence._parts
    if mutation == "no row-wrap term":
        monkeypatch.setattr(evidence, "_parts", lambda u, g, c1=None: (*parts(u, g, c1)[:3], 0.0))
    else:
        monkeypatch.setattr(evidence, "_parts", lambda u, g, c1=None: parts(u, (g[1], g[0]), None))


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_a_broken_scorer_falls_below_the_floors(cases, monkeypatch, mutation):
    """The ranking floors have teeth: each plausible slip in the scorer fails at least one of them."""
    break_scorer(monkeypatch, mutation)
    shares = rank_shares([c for c in cases if c[0] in RANK_FLOORS])
    assert any(shares[f] < floor for f, floor in RANK_FLOORS.items()), shares


def test_a_one_position_table_has_its_only_grid():
    flat = torch.randn(1, 2, 8, generator=torch.Generator().manual_seed(0))
    assert resolve_grid(flat, 1) == ((1, 1), "the only grid with 1 position")
    with pytest.raises(CheckpointError, match="no grid rows after 2 prefix rows"):
        resolve_grid(flat, 2)
