"""``rectvit demo`` end to end in quick mode: the table, the claim it makes, and the picture."""

from __future__ import annotations

import math

import pytest
import torch

from rectvit import demo


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    result = demo.run(seed=0, out=out, quick=True, log=lines.append)
    return out, result, lines


def test_table_has_every_rectangle_and_method(quick_run):
    _, result, lines = quick_run
    rows = result["rows"]
    assert set(rows) == {tuple(demo.TRAIN_SIZE), *map(tuple, demo.EVAL_SIZES)}
    for row in rows.values():
        assert set(row) == set(demo.METHODS) == {"rectvit", "square", "none"}
        assert all(0.0 <= v <= 1.0 for v in row.values())
    text = "\n".join(lines)
    for title in demo.METHOD_TITLES.values():
        assert title in text
    for h, w in rows:
        printed = [ln for ln in lines if ln.strip().startswith(f"{h}x{w}")]
        assert len(printed) == 1, f"no table row for {h}x{w}"
        numbers = [float(t) for t in printed[0].split()[-3:]]
        assert numbers == pytest.approx([rows[(h, w)][m] for m in demo.METHODS], abs=5e-4)


def test_model_learned_the_task(quick_run):
    _, result, _ = quick_run
    assert result["rows"][tuple(demo.TRAIN_SIZE)]["rectvit"] >= 0.8


def test_recorded_grid_beats_square_assumption(quick_run):
    """The claim: on every new rectangle (where 8x32 read as 16x16 scrambles) rectvit wins clearly."""
    _, result, _ = quick_run
    train_grid = (demo.TRAIN_SIZE[0] // demo.PATCH, demo.TRAIN_SIZE[1] // demo.PATCH)
    side = math.isqrt(train_grid[0] * train_grid[1])
    assert (side, side) != train_grid
    for size in map(tuple, demo.EVAL_SIZES):
        row = result["rows"][size]
        assert row["rectvit"] >= row["square"] + 0.1, (size, row)
    mean = {m: sum(result["rows"][tuple(s)][m] for s in demo.EVAL_SIZES) / len(demo.EVAL_SIZES) for m in demo.METHODS}
    assert mean["rectvit"] >= mean["none"] + 0.1, mean


def test_picture_is_a_png_named_last(quick_run):
    pytest.importorskip("matplotlib")
    out, result, lines = quick_run
    path = out / demo.PICTURE_NAME
    assert result["picture"] is not None and path.is_file()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(path.resolve()) in lines[-1]


def test_without_matplotlib_the_table_still_prints(tmp_path, monkeypatch):
    real = demo.importlib.util.find_spec
    monkeypatch.setattr(
        demo.importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a)
    )
    monkeypatch.setattr(demo, "EVAL_SIZES", [(64, 128)])
    lines: list[str] = []
    result = demo.run(seed=1, out=tmp_path, quick=True, log=lines.append)
    assert result["picture"] is None and not (tmp_path / demo.PICTURE_NAME).exists()
    assert any(ln.strip().startswith("64x128") for ln in lines)
    assert "pip install 'rectvit[plot]'" in lines[-1]


def test_square_assumption_scrambles_only_the_grid():
    model = demo.build_model()
    sq = demo.square_assumption_model(model, (64, 128))
    assert sq.grid_size == (8, 16)
    for k, v in model.state_dict().items():
        if k != "pos_embed":
            assert torch.equal(sq.state_dict()[k], v)


def test_crop_or_pad():
    x = torch.arange(2 * 6).float().reshape(1, 1, 2, 6)
    y = demo.crop_or_pad(x, (4, 2))
    assert y.shape == (1, 1, 4, 2)
    assert torch.equal(y[0, 0, 1:3], x[0, 0, :, 2:4]) and y[0, 0, 0].abs().sum() == 0


def test_cli_help_documents_the_options(capsys):
    from rectvit.cli import main

    with pytest.raises(SystemExit) as e:
        main(["demo", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for opt in ("--seed", "--out", "--quick", "--retrain"):
        assert opt in text
