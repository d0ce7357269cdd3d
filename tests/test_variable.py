"""forward_variable: exact per-input results without padding, order, grouping, errors, restored state."""

from __future__ import annotations

import sys
import types

import pytest
import torch

import rectvit
from rectvit.variable import dynamic_mode, group_by_shape

TOL = 1e-5


def _tiny_vit(**kw):
    cfg = dict(img_size=(32, 48), embed_dim=32, depth=2, num_heads=2, num_classes=5)
    cfg.update(kw)
    return rectvit.create_model("vit_tiny_patch16_224", patch_size=8, **cfg).eval()


def _tiny_ast(**kw):
    cfg = dict(img_size=(32, 96), embed_dim=32, depth=2, num_heads=2, num_classes=7)
    cfg.update(kw)
    return rectvit.create_model("ast_base_patch16_s10_128x1024", **cfg).eval()


def _tiny_swin(**kw):
    cfg = dict(img_size=(64, 32), embed_dim=16, depths=(1, 1), num_heads=(2, 2), window_size=4, num_classes=3)
    cfg.update(kw)
    return rectvit.create_model("swin_tiny_patch4_window7_224", **cfg).eval()


def _alone(model, xs):
    """Each input through the model on its own, in dynamic mode."""
    with dynamic_mode(model):
        return [model(x.unsqueeze(0))[0] for x in xs]


def _inputs(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g) for s in shapes]


VIT_SHAPES = [(3, 32, 48), (3, 16, 64), (3, 32, 48), (3, 48, 16), (3, 16, 64), (3, 32, 48), (3, 8, 8)]
AST_SHAPES = [(1, 32, 96), (1, 32, 57), (1, 16, 200), (1, 32, 96), (1, 32, 57), (1, 32, 16)]
SWIN_SHAPES = [(3, 64, 32), (3, 32, 64), (3, 64, 32), (3, 36, 20), (3, 4, 4), (3, 32, 64)]


@pytest.mark.parametrize(
    "make, shapes",
    [(_tiny_vit, VIT_SHAPES), (_tiny_ast, AST_SHAPES), (_tiny_swin, SWIN_SHAPES)],
    ids=["vit", "ast-overlapping", "swin"],
)
@pytest.mark.parametrize("max_batch", [1, 2, 8])
def test_equals_per_input_runs_in_order(make, shapes, max_batch):
    model = make()
    xs = _inputs(shapes)
    with torch.no_grad():
        outs = rectvit.forward_variable(model, xs, max_batch=max_batch)
        ref = _alone(model, xs)
    assert len(outs) == len(xs)
    for i, (o, r) in enumerate(zip(outs, ref)):
        assert o.shape == r.shape, i
        assert (o - r).abs().max().item() <= TOL, i


def test_dynamic_model_and_features_forward():
    model = _tiny_vit(dynamic_img_size=True, global_pool="avg", class_token=False)
    xs = _inputs([(3, 32, 48), (3, 16, 32), (3, 32, 48)])
    with torch.no_grad():
        feats = rectvit.forward_variable(model, xs, forward=model.forward_features)
    assert [tuple(f.shape) for f in feats] == [(24, 32), (8, 32), (24, 32)]
    with torch.no_grad():
        ref = model.forward_features(xs[1].unsqueeze(0))[0]
    assert torch.allclose(feats[1], ref, atol=TOL)


def test_grouping_count_and_batch_sizes():
    model = _tiny_vit()
    xs = _inputs(VIT_SHAPES)
    assert group_by_shape(xs) == [[0, 2, 5], [1, 4], [3], [6]]
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    with torch.no_grad():
        rectvit.forward_variable(model, xs, max_batch=2, packing=False)
    # groups in order of first appearance, each cut into chunks of at most max_batch
    assert seen == [(2, 3, 32, 48), (1, 3, 32, 48), (2, 3, 16, 64), (1, 3, 48, 16), (1, 3, 8, 8)]


def test_distinguishes_dtype():
    xs = [torch.zeros(3, 16, 16), torch.zeros(3, 16, 16, dtype=torch.float64)]
    assert group_by_shape(xs) == [[0], [1]]


@pytest.mark.parametrize("make", [_tiny_vit, _tiny_swin], ids=["vit", "swin"])
def test_static_model_is_restored(make):
    model = make()
    assert model.dynamic_img_size is False
    with torch.no_grad():
        rectvit.forward_variable(model, _inputs([(3, 16, 16), (3, 32, 32)]))
    assert model.dynamic_img_size is False
    for m in model.modules():
        assert getattr(m, "strict_img_size", True) is True
    with pytest.raises(rectvit.InputSizeError):  # still static
        model(torch.zeros(1, 3, 16, 16))


def test_state_restored_after_failure():
    model = _tiny_vit()

    def boom(x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        rectvit.forward_variable(model, _inputs([(3, 16, 16)]), forward=boom)
    assert model.dynamic_img_size is False and model.patch_embed.strict_img_size is True


def _no_forward(model):
    calls = []
    model.register_forward_pre_hook(lambda m, a: calls.append(1))
    return calls


@pytest.mark.parametrize(
    "make, bad, index, fragments",
    [
        (_tiny_vit, (1, 32, 48), 2, ["input 2", "3 channel", "got 1"]),
        (_tiny_vit, (3, 4, 48), 2, ["input 2", "4x48", "smaller than one patch"]),
        (_tiny_ast, (1, 8, 96), 2, ["input 2", "8x96", "smaller than one patch"]),
        (_tiny_swin, (3, 2, 32), 2, ["input 2", "2x32", "smaller than one patch"]),
        (_tiny_swin, (2, 32, 32), 2, ["input 2", "3 channel", "got 2"]),
    ],
)
def test_bad_input_names_index_before_any_work(make, bad, index, fragments):
    model = make()
    c = model.in_chans
    good = (c, 32, 48) if make is not _tiny_ast else (1, 32, 96)
    if make is _tiny_swin:
        good = (3, 32, 32)
    xs = _inputs([good, good, bad, good])
    calls = _no_forward(model)
    with pytest.raises(rectvit.RectViTError) as e:
        rectvit.forward_variable(model, xs)
    msg = str(e.value)
    for f in fragments:
        assert f in msg, (f, msg)
    assert calls == []
    assert model.dynamic_img_size is False


def test_size_the_patches_do_not_tile_is_cropped():
    """docs/models.md, "Sizes the patches do not tile": 35x53 is seen as its top-left 32x48 (8x8 patches),
    which is the static model's own size: the static forward on the crop is the truth."""
    model = _tiny_vit()
    crop = _inputs([(3, 32, 48)])[0]
    odd = torch.cat([torch.cat([crop, torch.randn(3, 32, 5)], 2), torch.randn(3, 3, 53)], 1)
    with torch.no_grad():
        outs = rectvit.forward_variable(model, [odd, crop])
        ref = model(crop.unsqueeze(0))[0]
    assert outs[0].shape == ref.shape
    assert (outs[0] - ref).abs().max().item() <= TOL and (outs[1] - ref).abs().max().item() <= TOL


@pytest.mark.parametrize(
    "bad, fragment",
    [(torch.zeros(1, 3, 32, 48), "3-d (C, H, W)"), (torch.zeros(32, 48), "2-d"), ([1, 2], "list")],
)
def test_wrong_ndim_or_type(bad, fragment):
    model = _tiny_vit()
    with pytest.raises(rectvit.InputSizeError, match="input 1") as e:
        rectvit.forward_variable(model, [torch.zeros(3, 32, 48), bad])
    assert fragment in str(e.value)


def test_bad_max_batch():
    with pytest.raises(rectvit.RectViTError, match="max_batch"):
        rectvit.forward_variable(_tiny_vit(), [torch.zeros(3, 32, 48)], max_batch=0)


def test_empty_inputs():
    assert rectvit.forward_variable(_tiny_vit(), []) == []


def test_progress_bar_with_tqdm(capsys):
    pytest.importorskip("tqdm")
    model = _tiny_vit()
    with torch.no_grad():
        outs = rectvit.forward_variable(model, _inputs(VIT_SHAPES), progress=True)
    assert len(outs) == len(VIT_SHAPES)
    err = capsys.readouterr().err
    assert "forward_variable" in err and f"{len(VIT_SHAPES)}/{len(VIT_SHAPES)}" in err


def test_progress_without_tqdm_says_how_to_get_the_bar(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with torch.no_grad():
        outs = rectvit.forward_variable(_tiny_vit(), _inputs(VIT_SHAPES[:2]), progress=True)
    assert len(outs) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "pip install tqdm" in lines[0], captured.err
    assert captured.out == ""
    with torch.no_grad():
        rectvit.forward_variable(_tiny_vit(), _inputs(VIT_SHAPES[:2]), progress=False)
    assert capsys.readouterr().err == ""  # nothing without progress=True


def test_tuple_outputs_are_split():
    model = _tiny_vit(distilled=True).train()
    model.set_distilled_training(True)
    for m in model.modules():  # train mode without dropout: deterministic
        assert not isinstance(m, torch.nn.Dropout) or m.p == 0.0
    xs = _inputs([(3, 32, 48), (3, 16, 16), (3, 32, 48)])
    with torch.no_grad():
        outs = rectvit.forward_variable(model, xs)
        with dynamic_mode(model):
            ref = [tuple(t[0] for t in model(x.unsqueeze(0))) for x in xs]
    for o, r in zip(outs, ref):
        assert isinstance(o, tuple) and len(o) == 2
        assert torch.allclose(o[0], r[0], atol=TOL) and torch.allclose(o[1], r[1], atol=TOL)


def test_exported():
    assert "forward_variable" in rectvit.__all__
    assert isinstance(rectvit.forward_variable, types.FunctionType)
