"""``rectvit demo`` end to end in quick mode: the table, the claim it makes, and the picture."""

from __future__ import annotations

import math

import pytest
import torch

from rectvit import demo

# one demo run for the module; xdist_group keeps the module on one worker, so the run happens once
pytestmark = pytest.mark.xdist_group("demo")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``demo.run`` once, quick, with a spy on the picture call and the caller's torch state around it."""
    import rectvit.viz as viz

    out = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    real, calls = viz.plot_position_similarity, []

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    threads = torch.get_num_threads()
    viz.plot_position_similarity = spy
    torch.set_num_threads(3 if threads != 3 else 1)  # a caller's setting that the demo's own differs from
    try:
        before = torch.get_num_threads()
        torch.manual_seed(1234)
        expected = torch.rand(3)
        torch.manual_seed(1234)
        result = demo.run(seed=0, out=out, quick=True, log=lines.append)
        result["state_after"] = (torch.get_num_threads(), torch.rand(3))
        result["state_expected"] = (before, expected)
    finally:
        viz.plot_position_similarity = real
        torch.set_num_threads(threads)
    result["plot_calls"] = calls
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
    assert lines[-2] == demo.PICTURE_HOW_TO_READ and lines[-2].startswith("how to read it:")  # one line


def test_run_restores_the_callers_threads_and_random_state(quick_run):
    """The global random stream continues as if run had not been called; the thread count is the caller's."""
    _, result, _ = quick_run
    (threads, drawn), (threads_before, expected) = result["state_after"], result["state_expected"]
    assert threads == threads_before and torch.equal(drawn, expected)


def test_picture_marks_the_queries_and_says_what_to_look_for(quick_run):
    """The PNG has a red marker on every tile (viridis has no red) and the demo's one-line note."""
    mpimg = pytest.importorskip("matplotlib.image")
    out, result, _ = quick_run
    ((args, kwargs),) = result["plot_calls"]
    assert kwargs["note"] == demo.PICTURE_NOTE and "\n" not in demo.PICTURE_NOTE
    assert [t.shape[1:3] for _, t in args[0]] == [(8, 32), (16, 32), (16, 32)]
    rgb = mpimg.imread(out / demo.PICTURE_NAME)[..., :3]
    red = (rgb[..., 0] > 0.8) & (rgb[..., 1] < 0.3) & (rgb[..., 2] < 0.3)
    queries = demo.PICTURE_QUERIES[0] * demo.PICTURE_QUERIES[1]
    assert queries <= 6  # few, large maps
    assert red.sum() > 3 * queries * 10, red.sum()  # 3 blocks x the queries, a hollow square of >= 10 pixels each


def test_every_panel_queries_the_same_image_points():
    pytest.importorskip("matplotlib")
    from rectvit.viz import position_similarity_figure

    g = torch.Generator().manual_seed(0)
    tables = [(name, torch.randn(1, h, w, 8, generator=g)) for name, (h, w) in [("a", (8, 32)), ("b", (16, 32))]]
    fig = position_similarity_figure(tables, note="what to look for")
    try:
        assert fig.get_suptitle() == "what to look for"
        # Sampled on the first grid (4 of 8 rows, 6 of 32 columns); the same image points on a 16x32 grid,
        # by hand: row y of 8 has its centre at (y + 0.5) / 8, which lies in row 2y + 1 of 16.
        rows = {(8, 32): [0, 2, 4, 6], (16, 32): [1, 5, 9, 13]}
        cols = [2, 8, 13, 18, 24, 29]
        for sub, (_, table) in zip(fig.subfigs, tables):
            grid = tuple(table.shape[1:3])
            assert sub.get_suptitle().endswith(f"grid {grid[0]}x{grid[1]}")
            tiles = [ax for ax in sub.axes if ax.get_images()]
            assert len(tiles) == 24
            for k, ax in enumerate(tiles):
                y, x = rows[grid][k // 6], cols[k % 6]
                assert ax.get_title() == f"point {k + 1} (row {y}, column {x})"
                (marker,) = ax.get_lines()
                assert marker.get_markeredgecolor() == "red" and tuple(marker.get_xydata()[0]) == (x, y)
                sim = ax.get_images()[0].get_array()
                assert sim[y, x] == pytest.approx(1.0, abs=1e-6)  # the marked cell is the query itself
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


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
