"""The command line: inspect, adapt, plot; errors are one line on stderr and exit 2, never a traceback."""

import os
import re
import struct
import subprocess
import sys

import pytest
import torch

import rectvit
from helpers import randomize_
from rectvit.cli import build_parser, main
from rectvit.resample import resample_grid
from test_checkpoint import SMALL, timm_state, trained_like

timm = pytest.importorskip("timm", reason="timm is the oracle; `make test` installs it")


@pytest.fixture
def flat_16x4(tmp_path):
    sd, table = timm_state((16, 4))
    path = tmp_path / "t164.pth"
    torch.save({"state_dict": sd}, path)
    return path, table


def test_inspect_flat_table_lists_candidates(flat_16x4, capsys):
    path, _ = flat_16x4
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "layout: timm" in out and "prefix tokens: class 1" in out and "patch kernel: (64, 3, 16, 16)" in out
    assert "grid unknown" in out and "--source-grid" in out  # nothing records it; content never decides
    assert re.search(r"^    16x4: \d\.\d{3}$", out, re.M) and "8x8:" in out and "4x16:" in out  # every candidate
    assert f"parameters: {sum(v.numel() for v in torch.load(path)['state_dict'].values()):,}" in out


def test_inspect_unstructured_table_says_to_pass_source_grid(tmp_path, capsys):
    ref = randomize_(timm.create_model("vit_small_patch16_224", img_size=(96, 160), num_classes=3, **SMALL))
    torch.save(ref.state_dict(), tmp_path / "r.pth")
    assert main(["inspect", str(tmp_path / "r.pth")]) == 0
    out = capsys.readouterr().out
    assert "grid unknown" in out and "--source-grid" in out and "6x10" in out
    assert "candidate grids (grid score: advisory" in out and "smoothness" not in out
    assert re.search(r"^    6x10: -?\d\.\d{3}$", out, re.M) and re.search(r"^    1x60: -$", out, re.M)
    assert main(["inspect", str(tmp_path / "r.pth"), "--source-grid", "6x10"]) == 0
    assert "grid 6x10 (source_grid argument)" in capsys.readouterr().out


def test_inspect_lists_a_given_grid_first_whatever_the_content_ranks_first(flat_16x4, capsys):
    path, _ = flat_16x4
    assert main(["inspect", str(path), "--source-grid", "8x8"]) == 0
    out = capsys.readouterr().out
    assert "grid 8x8 (source_grid argument)" in out and "warning" not in out
    assert re.search(r"grid score.*\n    8x8: -?\d\.\d{3}  <- source_grid argument\n    16x4: ", out)


def test_inspect_says_source_grid_is_unused_on_a_2d_table(tmp_path, capsys):
    path = rectvit.save_checkpoint(
        rectvit.create_model("vit_small_patch16_224", img_size=64, **SMALL), tmp_path / "a.safetensors"
    )
    assert main(["inspect", str(path), "--source-grid", "4x4"]) == 0
    out = capsys.readouterr().out
    assert "note: --source-grid is unused: its position table is stored 2-D" in out


def test_adapt_writes_our_format_and_prints_the_report(flat_16x4, tmp_path, capsys):
    path, table = flat_16x4
    out = tmp_path / "out.safetensors"
    argv = ["adapt", str(path), "--model", "vit_small_patch16_224", "--img-size", "128x128", "-o", str(out)]
    # --model builds the registered architecture; this checkpoint is a reduced one -> a clear error, no file
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "another architecture" in err and not out.exists()


def test_adapt_real_architecture(tmp_path, capsys):
    ref = randomize_(timm.create_model("vit_tiny_patch16_224", img_size=(256, 64), num_classes=10))
    with torch.no_grad():
        ref.pos_embed[:, 1:] = trained_like(16, 4, dim=192).reshape(1, 64, 192)
    src = tmp_path / "tiny.pth"
    torch.save(ref.state_dict(), src)
    out = tmp_path / "tiny_128.safetensors"
    argv = ["adapt", str(src), "--model", "vit_tiny_patch16_224", "--img-size", "128x128", "--num-classes", "10"]
    assert main([*argv, "--source-grid", "16x4", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(1, 16, 4, 192) -> (1, 8, 8, 192)" in printed and "source_grid argument" in printed and str(out) in printed
    model = rectvit.load_model(out)
    expect = resample_grid(ref.pos_embed.data[:, 1:].reshape(1, 16, 4, 192), (8, 8))
    torch.testing.assert_close(model.pos_embed.data, expect, atol=0, rtol=0)
    # adapt never overwrites its input
    before = out.read_bytes()
    assert main(["adapt", str(out), "--model", "vit_tiny_patch16_224", "--img-size", "64x64", "-o", str(out)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err and out.read_bytes() == before


def test_swin_checkpoint_without_a_recorded_window(tmp_path, capsys, monkeypatch):
    """A timm Swin state dict records no window (169 rows: 7x7, 1x85 or 85x1): inspect lists the windows that fit,
    ranked by grid score (advisory); adapt refuses in one line that names --source-window, and with it writes a
    file whose window is recorded (docs/checkpoints.md). The architecture is a one-stage swin_tiny (adapt's
    create_model gets its sizes) so that the test stays small; the window path is the same."""
    import functools
    import json

    import rectvit.cli
    from rectvit.resample import resample_relative_bias_table

    small = dict(embed_dim=32, depths=(2,), num_heads=(2,))
    monkeypatch.setattr(rectvit.cli, "create_model", functools.partial(rectvit.create_model, **small))
    ref = randomize_(timm.create_model("swin_tiny_patch4_window7_224", num_classes=10, **small))
    src, out = tmp_path / "swin.pth", tmp_path / "swin_448x224.safetensors"
    torch.save(ref.state_dict(), src)
    key = "layers.0.blocks.0.attn.relative_position_bias_table"
    assert main(["inspect", str(src)]) == 0
    printed = capsys.readouterr().out
    line = next(ln for ln in printed.splitlines() if ln.startswith(f"relative bias table {key} (169, 2): "))
    assert "window not recorded (pass --source-window WHxWW)" in line and "content never decides" in line
    assert re.search(r": 7x7 -?\d\.\d\d, 1x85 -, 85x1 -$", line)
    assert main(["inspect", str(src), "--json"]) == 0
    table = next(t for t in json.loads(capsys.readouterr().out)["relative_bias_tables"] if t["name"] == key)
    assert table["windows"] == [[7, 7], [1, 85], [85, 1]] and table["grid_scores"][1:] == [None, None]
    assert table["recorded"] is False
    argv = ["adapt", str(src), "--model", "swin_tiny_patch4_window7_224", "--img-size", "448x224"]
    argv += ["--window-size", "14x7", "--num-classes", "10", "-o", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {key}: pass source_windows=(wh, ww)" in err and "--source-window" in err
    assert not out.exists()
    assert main([*argv, "--source-window", "7x7"]) == 0
    printed = capsys.readouterr().out
    assert re.search(rf"{re.escape(key)} .*window 7x7 -> 14x7\s+source_windows argument", printed), printed
    model = rectvit.load_model(out)
    expect = resample_relative_bias_table(ref.state_dict()[key], (7, 7), (14, 7))
    torch.testing.assert_close(model.state_dict()[key], expect, atol=0, rtol=0)
    assert main(["inspect", str(out)]) == 0
    assert f"relative bias table {key} (351, 2): window 14x7 (recorded)" in capsys.readouterr().out
    # the same window: the tables load as stored, and --source-window was what let them load
    same = tmp_path / "swin_224x112.safetensors"
    argv = ["adapt", str(src), "--model", "swin_tiny_patch4_window7_224", "--img-size", "224x112", "-o", str(same)]
    assert main(argv) == 2 and "pass source_windows=(wh, ww)" in capsys.readouterr().err
    assert main([*argv, "--source-window", "7"]) == 0
    assert "unused" not in capsys.readouterr().out
    torch.testing.assert_close(rectvit.load_model(same).state_dict()[key], ref.state_dict()[key], atol=0, rtol=0)


def test_plot_draws_the_real_grid(flat_16x4, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path, _ = flat_16x4
    png = tmp_path / "pos.png"
    assert main(["plot", str(path), "-o", str(png)]) == 2  # a flat table: its grid must be named
    assert "pass --source-grid HxW" in capsys.readouterr().err
    assert main(["plot", str(path), "-o", str(png), "--source-grid", "16x4"]) == 0
    assert "16x4 grid" in capsys.readouterr().out
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    assert width > 200 and height > 200


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["inspect", "/no/such/file.pth"], "no such file"),
        (["plot", "/no/such.safetensors", "-o", "x.png"], "no such file"),
        (
            ["adapt", "/no/such.pth", "--model", "vit_tiny_patch16_224", "--img-size", "0x4", "-o", "o.safetensors"],
            "positive",
        ),
        (
            ["adapt", "/no/such.pth", "--model", "nope", "--img-size", "64", "-o", "o.safetensors"],
            "unknown model 'nope'",
        ),
    ],
)
def test_errors_are_one_line_without_traceback(argv, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "rectvit", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and needle in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert [ln for ln in lines if "error:" in ln] == lines[-1:]  # one error line (argparse prints usage above it)


def test_every_subcommand_works_outside_the_repository(tmp_path):
    """The installed entry point offers only commands that work without a checkout (no `bench`)."""
    commands = list(build_parser()._subparsers._group_actions[0].choices)
    assert set(commands) == {"inspect", "adapt", "export", "plot", "demo"}
    script = (
        "import contextlib, io, sys\n"
        "from rectvit.cli import main\n"
        f"for argv in [['--help']] + [[c, '--help'] for c in {commands!r}]:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit as e:\n"
        "            assert e.code == 0, (argv, e.code)\n"
        "    assert 'usage: rectvit' in out.getvalue(), argv\n"
        "    print(argv[0], 'ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [w for c in ["--help", *commands] for w in (c, "ok")]
