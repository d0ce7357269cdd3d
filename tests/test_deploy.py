"""Free shapes under torch.compile, torch.export and ONNX (issue 13).

Truths: eager forwards of the same model (compile, export, onnxruntime ≤ 1e-4), ``resample_grid``
(``F.interpolate``) for the traceable resampling, and graph counts from a counting backend plus
``torch._dynamo.explain``. Models are tiny (depth 1, width 32) so tracing stays quick on 2 cores.
"""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import rectvit
from helpers import randomize_
from rectvit.export import export_onnx, export_program, size_rule
from rectvit.resample import interpolation_matrix, resample_grid_separable

TINY = dict(depth=1, embed_dim=32, num_heads=2, num_classes=5)
TOL = 1e-4
MODES = [("bicubic", True), ("bicubic", False), ("bilinear", True), ("bilinear", False)]


# --------------------------------------------------------------------------------------------------
# 13.2: resampling as R_h · table · R_wᵀ


@given(st.integers(1, 12), st.integers(1, 12), st.integers(1, 24), st.integers(1, 24), st.sampled_from(MODES))
def test_separable_resampling_equals_resample_grid(h, w, new_h, new_w, mode):
    table = torch.randn(1, h, w, 3, generator=torch.Generator().manual_seed(h * 100 + w))
    ours = resample_grid_separable(table, (new_h, new_w), *mode)
    torch.testing.assert_close(ours, rectvit.resample_grid(table, (new_h, new_w), *mode), atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", MODES)
def test_interpolation_matrix_is_linear_map_of_f_interpolate(mode):
    # rows of R are F.interpolate of unit vectors (1-D resize along the width), up and down
    for n_in, n_out in [(7, 3), (3, 11), (5, 5), (1, 4), (6, 1)]:
        basis = torch.eye(n_in).reshape(n_in, 1, 1, n_in)
        cols = torch.nn.functional.interpolate(basis, size=(1, n_out), mode=mode[0], antialias=mode[1])
        torch.testing.assert_close(
            interpolation_matrix(n_in, n_out, *mode), cols.reshape(n_in, n_out).T, atol=1e-6, rtol=0
        )


# --------------------------------------------------------------------------------------------------
# 13.1: torch.compile


def _vit(**kw):
    m = rectvit.create_model("vit_small_patch16_224", img_size=(64, 48), **{**TINY, **kw})
    return randomize_(m).eval()


def _count_graphs(model, sizes, modes=(torch.inference_mode, torch.no_grad)):
    """Run ``torch.compile(model, dynamic=True)`` (eager backend counting graphs) at ``sizes`` under each
    of ``modes`` in turn; returns the number of graphs and the largest difference to eager."""
    torch._dynamo.reset()
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    compiled = torch.compile(model, backend=backend, dynamic=True)
    worst = 0.0
    for mode in modes:
        with mode():
            for size in sizes:
                x = torch.randn(2, 3, *size)
                worst = max(worst, (compiled(x) - model(x)).abs().max().item())
    return len(graphs), worst


def _graph_breaks(model, x):
    torch._dynamo.reset()
    with torch.no_grad():
        return torch._dynamo.explain(model)(x).graph_break_count


def test_compile_dynamic_vit_two_graphs_no_breaks(one_thread):
    # the first size is not square: a square one lets torch's duck sizing tie H to W (one more graph)
    model = _vit(dynamic_img_size=True, reg_tokens=1, class_token=True)
    sizes = [(64, 48), (32, 96), (48, 48), (112, 32), (80, 64), (32, 512)]
    graphs, worst = _count_graphs(model, sizes)
    assert graphs <= 2 and worst <= TOL
    assert _graph_breaks(model, torch.randn(2, 3, 32, 96)) == 0


def test_compile_static_vit_one_graph(one_thread):
    graphs, worst = _count_graphs(_vit(), [(64, 48)] * 3, modes=(torch.inference_mode,))
    assert graphs == 1 and worst <= TOL
    assert _graph_breaks(_vit(), torch.randn(2, 3, 64, 48)) == 0


def _hybrid():
    # symmetric padding keeps the traced size arithmetic short (TF "same" padding traces too, slower)
    model = rectvit.create_model(
        "vit_tiny_r_s16_p8_224", img_size=(64, 96), dynamic_img_size=True, padding_same=False, **TINY
    )
    return randomize_(model).eval()


def test_compile_dynamic_hybrid(one_thread):
    model = _hybrid()
    sizes = [(64, 96), (96, 64), (128, 64), (64, 160), (192, 96)]
    graphs, worst = _count_graphs(model, sizes, modes=(torch.inference_mode,))
    assert graphs == 1 and worst <= TOL  # one graph for the whole forward: no graph break


def test_compile_dynamic_swin_at_window_multiples(one_thread):
    model = rectvit.create_model(
        "swin_tiny_patch4_window7_224",
        img_size=(32, 48),
        window_size=2,
        dynamic_img_size=True,
        depths=(2,),
        embed_dim=16,
        num_heads=(1,),
        num_classes=3,
    )
    model = randomize_(model).eval()
    sizes = [(32, 48), (48, 32), (64, 64), (32, 96), (96, 40)]
    graphs, worst = _count_graphs(model, sizes, modes=(torch.inference_mode,))
    assert graphs == 1 and worst <= TOL


# --------------------------------------------------------------------------------------------------
# 13.3: torch.export, and 13.4: ONNX from the same programs

UNSEEN = [(32, 512), (512, 48), (96, 80), (48, 32)]


def _ort(path):
    ort = pytest.importorskip("onnxruntime", reason="the `export` extra; `make test` installs it")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _check_program_and_onnx(model, program, tmp_path, sizes, in_chans=3, onnx=True):
    module = program.module()
    session = None
    if onnx:
        pytest.importorskip("onnxscript", reason="the `export` extra; `make test` installs it")
        info = export_onnx(model, tmp_path / "m.onnx", program=program)
        assert info.dynamic and info.opset >= 18
        session = _ort(info.path)
    for i, size in enumerate(sizes):
        x = torch.randn(1 + i % 3, in_chans, *size)
        with torch.no_grad():
            want = model(x)
            assert (module(x) - want).abs().max() <= TOL, size
        if session is not None:
            got = session.run(None, {"pixel_values": x.numpy()})[0]
            assert np.abs(got - want.numpy()).max() <= TOL, size


@pytest.mark.parametrize("at_stored_grid", [True, False])
def test_export_and_onnx_vit(tmp_path, one_thread, at_stored_grid):
    model = _vit(dynamic_img_size=True)
    program = export_program(model, (64, 48) if at_stored_grid else (48, 96))
    _check_program_and_onnx(model, program, tmp_path, UNSEEN, onnx=at_stored_grid)


def test_export_and_onnx_deit(tmp_path, one_thread):
    model = rectvit.create_model("deit_small_distilled_patch16_224", img_size=(48, 64), dynamic_img_size=True, **TINY)
    model = randomize_(model).eval()
    _check_program_and_onnx(model, export_program(model), tmp_path, UNSEEN)


def test_export_and_onnx_ast_frames_axis(tmp_path, one_thread):
    model = rectvit.create_model("ast_base_patch16_s10_128x1024", img_size=(56, 206), dynamic_img_size=True, **TINY)
    model = randomize_(model).eval()
    assert str(size_rule(model)).startswith("H = 10·k + 6")
    # frames (width) free: 10k + 6; the mel axis too
    _check_program_and_onnx(model, export_program(model), tmp_path, [(56, 1016), (56, 36), (56, 516), (26, 96)], 1)


def test_export_and_onnx_hybrid(tmp_path, one_thread):
    model = _hybrid()
    assert str(size_rule(model)).startswith("H = 32·k")
    _check_program_and_onnx(model, export_program(model), tmp_path, [(64, 512), (512, 64), (96, 64), (160, 128)])


def test_static_onnx_and_cli(tmp_path, one_thread, capsys):
    from rectvit.cli import main

    model = _vit()
    rectvit.save_checkpoint(model, tmp_path / "m.safetensors")
    assert main(["export", str(tmp_path / "m.safetensors"), "-o", str(tmp_path / "m.onnx")]) == 0
    assert "static" in capsys.readouterr().out
    import onnx

    proto = onnx.load(str(tmp_path / "m.onnx"))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["rectvit.dynamic"] == "false" and int(meta["rectvit.opset"]) >= 18
    x = torch.randn(1, 3, 64, 48)
    got = _ort(tmp_path / "m.onnx").run(None, {"pixel_values": x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(got - model(x).numpy()).max() <= TOL


# --------------------------------------------------------------------------------------------------
# 13.5: what cannot be dynamic is an error, not a static file labelled dynamic


def test_models_that_cannot_be_dynamic_are_clear_errors(tmp_path):
    with pytest.raises(rectvit.RectViTError, match="dynamic_img_size=True"):
        export_program(_vit())  # a static model
    with pytest.raises(rectvit.RectViTError, match="dynamic_img_pad"):
        export_program(_vit(dynamic_img_size=True, dynamic_img_pad=True))
    from rectvit.cli import main

    assert main(["export", "vit_tiny_patch16_224", "-o", str(tmp_path / "x.onnx"), "--batch", "1", "--dynamic"]) == 2
    assert not (tmp_path / "x.onnx").exists()
