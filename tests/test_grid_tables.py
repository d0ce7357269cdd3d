"""Grid resolution on genuinely trained position tables: tests/grid_tables/ (scripts/gen_grid_tables.py).

The fixture holds flat tables of small ViTs trained on absolute, periodic and relative position
tasks at several grids and seeds, their crops and resamples, the trained tables plus periodic,
banded, checkerboard and mixed components, random-init tables with a checkerboard, and the demo's
table with its crops (docs/checkpoints.md). Tuning part: seed 0 and the demo; HELD-OUT part: seeds
1, 2 and 3, on which nothing is tuned.

Acceptance rules (DESIGN invariant 2; content is advisory):

- no table loads on a grid that nothing records: without a record or ``source_grid`` every table is
  an ``AmbiguousGridError`` whose candidates are every factorisation (the true one among them), so
  wrong grids are zero by construction;
- no truthful record is refused: every table loads on its recorded true grid;
- the advisory ranking is informative: the true grid ranks first on at least the share ``RANK_FLOORS``
  states (over all tables and per family; set on the tuning part, met on the held-out part too); a
  broken scorer falls below them.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import rectvit
from rectvit import AmbiguousGridError
from rectvit.checkpoint import evidence
from rectvit.checkpoint.adapt import resolve_grid
from rectvit.grid import factorizations
from test_grid_matrix import MUTATIONS, break_scorer

TABLES = Path(__file__).parent / "grid_tables"
FAMILIES = {"trained", "crop", "resample", "periodic", "banded", "checkerboard", "mixed", "random+checkerboard"}
# Floors for the share of tables whose true grid the grid score ranks first, set from the TUNING part
# (measured there: all 0.55, trained 0.75, crop 0.48, resample 0.88, periodic 1.00, banded 0.75) with a
# margin; the held-out part must meet them too (measured: 0.55, 0.73, 0.76, 0.87, 0.87, 0.62). Tables
# with a checkerboard (0.00) or a mix of components (0.09-0.12) get none: an alias outranks the truth.
RANK_FLOORS = {"all": 0.45, "trained": 0.6, "crop": 0.4, "resample": 0.7, "periodic": 0.75, "banded": 0.5}


def load_part(part: str) -> list[tuple[str, dict, torch.Tensor]]:
    """``(key, info, flat (1, P + h*w, C) float32 table)`` of the tuning or held-out part."""
    with safe_open(str(TABLES / f"{part}.safetensors"), "pt") as f:
        meta = json.loads(f.metadata()["tables"])
        return [(k, meta[k], f.get_tensor(k).float()[None]) for k in sorted(meta)]


@pytest.fixture(scope="module")
def parts():
    return {p: load_part(p) for p in ("tuning", "heldout")}


def ranked_first(cases) -> dict[str, float]:
    """Per family (and ``"all"``): the share of tables whose true grid the grid score ranks first."""
    tally: Counter = Counter()
    for _, info, flat in cases:
        ranked = evidence.grid_evidence(flat, info["prefix"]).ranked
        first = bool(ranked) and list(ranked[0][0]) == info["grid"]
        for key in (info["family"], "all"):
            tally[key] += 1
            tally[key, first] += 1
    return {k: tally[k, True] / tally[k] for k in tally if isinstance(k, str)}


def test_the_split_is_fixed_and_every_family_is_in_both_parts(parts):
    tuning, heldout = parts["tuning"], parts["heldout"]
    assert {i["seed"] for _, i, _ in tuning} == {0} and {i["seed"] for _, i, _ in heldout} == {1, 2, 3}
    assert not {i["base"] for _, i, _ in tuning} & {i["base"] for _, i, _ in heldout}
    for cases in (tuning, heldout):
        assert {i["family"] for _, i, _ in cases} == FAMILIES
        assert {i["task"] for _, i, _ in cases if i["family"] == "trained"} >= {"absolute", "periodic", "relative"}
    trained = [i for _, i, _ in tuning + heldout if i["family"] == "trained" and i["acc"] is not None]
    assert len(trained) == 60 and sum(i["acc"] >= 0.5 for i in trained) >= 55  # 8 classes: chance 0.125
    assert any(k.startswith("demo/") for k, _, _ in tuning)
    for _, info, flat in tuning + heldout:
        assert flat.shape[1] == info["prefix"] + info["grid"][0] * info["grid"][1]


@pytest.mark.parametrize("part", ["tuning", "heldout"])
def test_no_table_loads_on_a_grid_nothing_records(parts, part):
    for key, info, flat in parts[part]:
        n = info["grid"][0] * info["grid"][1]
        with pytest.raises(AmbiguousGridError) as e:
            resolve_grid(flat, info["prefix"])
        assert sorted(e.value.candidates) == factorizations(n), key
        assert str(e.value).startswith("pos_embed: pass source_grid=(h, w)")


@pytest.mark.parametrize("part", ["tuning", "heldout"])
def test_every_truthful_record_is_used(parts, part):
    for key, info, flat in parts[part]:
        grid = tuple(info["grid"])
        assert resolve_grid(flat, info["prefix"], recorded=grid) == (grid, "grid recorded in the checkpoint"), key
        assert resolve_grid(flat, info["prefix"], source_grid=grid) == (grid, "source_grid argument"), key


@pytest.mark.parametrize("part", ["tuning", "heldout"])
def test_the_ranking_puts_the_true_grid_first_above_the_floors(parts, part):
    shares = ranked_first(parts[part])
    print(f"\n{part}, true grid ranked first: " + ", ".join(f"{f} {s:.2f}" for f, s in sorted(shares.items())))
    for family, floor in RANK_FLOORS.items():
        assert shares[family] >= floor, (family, shares[family], floor)


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_a_broken_scorer_falls_below_the_floors(parts, monkeypatch, mutation):
    break_scorer(monkeypatch, mutation)
    shares = ranked_first(parts["heldout"])
    assert all(shares[f] < floor for f, floor in RANK_FLOORS.items()), shares  # measured: every floor fails


# ---- the concrete failures of issue reports, on real files ----


def _demo_table() -> tuple[torch.Tensor, torch.Tensor]:
    from safetensors.torch import load_file

    from rectvit import demo

    sd = load_file(str(demo.shipped_checkpoint()))
    return sd["prefix_pos_embed"], sd["pos_embed"]


def test_the_demo_table_without_a_record_is_ambiguous_not_2x128_or_32x8():
    prefix, table = _demo_table()
    flat = torch.cat([prefix, table.flatten(1, 2)], dim=1)
    with pytest.raises(AmbiguousGridError) as e:
        resolve_grid(flat, 1, candidates=[((16, 16), "target model grid")])
    assert (8, 32) in e.value.candidates and "8x32 " in str(e.value) and "16x16 " in str(e.value)


def _demo_timm_folder(folder: Path, grid: tuple[int, int]) -> torch.Tensor:
    """The demo model in timm's layout, its table cropped to ``grid``, in a timm hub folder recording it."""
    from safetensors.torch import save_file

    from rectvit import demo

    model = rectvit.load_model(demo.shipped_checkpoint())
    sd = rectvit.to_timm_state_dict(model)
    crop = model.pos_embed.detach()[:, : grid[0], : grid[1]]
    sd["pos_embed"] = torch.cat([model.prefix_pos_embed.detach(), crop.flatten(1, 2)], dim=1)
    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / "model.safetensors"))
    size = [grid[0] * demo.PATCH, grid[1] * demo.PATCH]
    config = {
        "architecture": "vit_tiny_patch16_224",
        "num_classes": demo.NUM_CLASSES,
        "model_args": {**demo.MODEL_CONFIG, "img_size": size},
        "pretrained_cfg": {"input_size": [1, *size]},
    }
    (folder / "config.json").write_text(json.dumps(config))
    return crop


@pytest.mark.parametrize("grid", [(4, 32), (5, 28), (7, 32), (8, 32)])
def test_a_demo_crop_whose_file_records_its_grid_loads_on_it(tmp_path, grid):
    # 4x32 was refused ("content decisively contradicts it ... pass source_grid=(16, 8)") before content
    # became advisory; 5x28 and 7x32 crops were read as 35x4 and 28x8 by content alone.
    crop = _demo_timm_folder(tmp_path / "demo", grid)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = rectvit.load_model(tmp_path / "demo")
    assert model.grid_size == grid and model.load_report.grid_basis == "grid recorded in the checkpoint"
    assert not model.load_report.warnings
    torch.testing.assert_close(model.pos_embed.data, crop, atol=0, rtol=0)


@pytest.mark.parametrize("grid", [(14, 14), (8, 8)])
def test_a_checkerboard_table_loads_only_on_a_named_grid(grid):
    # A 14x14 timm state dict (vit_tiny width) with a strong checkerboard component was read as 98x2, an
    # 8x8 one as 32x2.
    timm = pytest.importorskip("timm", reason="timm is the oracle; `make test` installs it")
    from helpers import randomize_

    kw = dict(img_size=(grid[0] * 16, grid[1] * 16), num_classes=3, embed_dim=192, depth=1, num_heads=3)
    theirs = randomize_(timm.create_model("vit_small_patch16_224", **kw)).eval()
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    board = (-1.0) ** (rows + cols)
    with torch.no_grad():
        theirs.pos_embed[:, 1:] += 3 * theirs.pos_embed.std() * board.reshape(1, -1, 1) * torch.randn(192)
    ours = rectvit.create_model("vit_small_patch16_224", **kw).eval()
    with pytest.raises(AmbiguousGridError) as e:
        rectvit.load_checkpoint(ours, theirs.state_dict())
    assert grid in e.value.candidates and len(e.value.candidates) == len(factorizations(grid[0] * grid[1]))
    rectvit.load_checkpoint(ours, theirs.state_dict(), source_grid=grid)
    x = torch.randn(2, 3, *kw["img_size"])
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=0)


# ---- rectvit inspect: every candidate, the grid used first ----


def test_inspect_lists_every_candidate_and_the_record_first(tmp_path, capsys):
    from rectvit.cli import main

    _demo_timm_folder(tmp_path / "demo", (4, 32))
    assert main(["inspect", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    listed = [ln.strip().split(":")[0] for ln in out.splitlines() if ln.startswith("    ") and "x" in ln]
    assert sorted(tuple(map(int, g.split("x"))) for g in listed) == factorizations(128)  # all 8, none left out
    assert listed[0] == "4x32" and "    4x32: " in out and "<- grid recorded in the checkpoint" in out
    assert "grid 4x32 (grid recorded in the checkpoint)" in out and "warning" not in out


def test_inspect_lists_all_15_candidates_of_a_144_row_table(tmp_path, capsys):
    from rectvit.cli import main

    g = torch.Generator().manual_seed(0)
    torch.save({"pos_embed": torch.randn(1, 145, 16, generator=g), "cls_token": torch.zeros(1, 1, 16)},
               tmp_path / "t.pth")  # fmt: skip
    assert main(["inspect", str(tmp_path / "t.pth")]) == 0
    out = capsys.readouterr().out
    listed = [ln.strip().split(":")[0] for ln in out.splitlines() if ln.startswith("    ") and "x" in ln]
    assert len(listed) == 15 and sorted(tuple(map(int, s.split("x"))) for s in listed) == factorizations(144)
    assert main(["inspect", str(tmp_path / "t.pth"), "--source-grid", "9x16"]) == 0
    out = capsys.readouterr().out
    listed = [ln.strip().split(":")[0] for ln in out.splitlines() if ln.startswith("    ") and "x" in ln]
    assert listed[0] == "9x16" and len(listed) == 15 and "<- source_grid argument" in out
