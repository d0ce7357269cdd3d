"""Measure content rules for a flat table's grid on the trained tables of ``tests/grid_tables/``.

For each rule, on the tuning and the held-out part: how many tables it reads as a wrong grid, leaves
ambiguous, or reads correctly (overall and per family). A rule here *decides* a grid from the
table's content alone; docs/checkpoints.md says why rectvit ships none (content is advisory: it only
ranks the candidates). The rules are all built on the grid score (``rectvit.checkpoint.evidence``):

- ``R0 margin x1``: the rule rectvit used to ship: the best 2-D grid when its score is at least
  ``max(0.2, 5 sigma)`` and it beats every other by ``max(0.1, 5 sigma_diff)``;
- ``R0 margin xS``: the same with every constant (0.2, 0.1, 5) multiplied by ``S``; ``S`` = the
  smallest factor on a grid of factors that reads no tuning table wrong is chosen on the TUNING part
  only and then applied once to the held-out part;
- ``R1 sole support``: R0, and no other 2-D grid scores above 0 (the decided grid is the only reading
  the content supports at all).

    python scripts/eval_grid_rules.py
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import torch
from safetensors import safe_open

from rectvit.checkpoint.evidence import grid_evidence

TABLES = Path(__file__).resolve().parents[1] / "tests" / "grid_tables"
BASE = (0.2, 0.1, 5.0)  # MIN_SCORE, MIN_MARGIN, K_NOISE of the rule rectvit used to ship
FACTORS = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)


def load(part: str) -> list[tuple[str, dict, torch.Tensor]]:
    with safe_open(str(TABLES / f"{part}.safetensors"), "pt") as f:
        meta = json.loads(f.metadata()["tables"])
        return [(k, meta[k], f.get_tensor(k).float()) for k in sorted(meta)]


def decide(ev, scale: float = 1.0, sole: bool = False):
    """The grid a margin rule with constants ``BASE * scale`` decides, or None."""
    if not ev.ranked:
        return None
    min_score, min_margin, k = (c * scale for c in BASE)
    best, top = ev.ranked[0]
    if not top >= max(min_score, k * ev.sigma[best]):
        return None
    for g, s in ev.ranked[1:]:
        if top - s < max(min_margin, k * math.hypot(ev.sigma[best], ev.sigma[g])):
            return None
        if sole and s > 0:
            return None
    return best


def tally(cases, rule) -> tuple[Counter, list]:
    out, wrong = Counter(), []
    for key, info, ev in cases:
        got = rule(ev)
        outcome = "ambiguous" if got is None else ("correct" if list(got) == info["grid"] else "wrong")
        out[info["family"], outcome] += 1
        out["all", outcome] += 1
        if outcome == "wrong":
            wrong.append((key, info["grid"], got))
    return out, wrong


def counts(t: Counter, family: str) -> str:
    return "  ".join(f"{o} {t[family, o]:4d}" for o in ("wrong", "ambiguous", "correct"))


def main() -> int:
    parts = {p: [(k, i, grid_evidence(t[None], i["prefix"])) for k, i, t in load(p)] for p in ("tuning", "heldout")}
    for part, cases in parts.items():
        first = sum(bool(ev.ranked) and list(ev.ranked[0][0]) == i["grid"] for _, i, ev in cases)
        print(f"{part}: {len(cases)} tables; the true grid ranks first on {first} ({first / len(cases):.0%})")
    rules = {"R0 margin x1": lambda ev: decide(ev), "R1 sole support": lambda ev: decide(ev, sole=True)}
    tuned = next((s for s in FACTORS if not tally(parts["tuning"], lambda ev, s=s: decide(ev, s))[1]), None)
    if tuned is not None:
        rules[f"R0 margin x{tuned:g} (tuned)"] = lambda ev: decide(ev, tuned)
    else:
        print(f"no factor in {FACTORS} reads every tuning table right or ambiguous")
    for name, rule in rules.items():
        for part, cases in parts.items():
            t, wrong = tally(cases, rule)
            print(f"{name:26s} {part:8s} {counts(t, 'all')}")
            families = sorted({f for f, _ in t if f != "all"})
            for f in families:
                print(f"    {f:22s} {counts(t, f)}")
            for key, grid, got in wrong[:6]:
                print(f"    wrong: {key} (true {grid[0]}x{grid[1]}) read as {got[0]}x{got[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
