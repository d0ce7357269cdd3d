"""TorchScript over the Swin paths that test_torchscript.py's one-block-per-stage builds do not reach.

Those builds never shift a window (a stage's second block is the shifted one) and use the default
head. Here every build has two blocks per stage on a grid larger than its window, so the scripted
program builds the shifted-window masks itself (the eager model caches them in a Python dict that
TorchScript cannot hold), at the nominal size and at a second size that pads the grid to whole
windows. Acceptance: the scripted output equals timm's eager output for the same weights and kwargs
(<= 1e-5 float32) at both sizes, and equals our eager output as well.
"""

from __future__ import annotations

import pytest
import timm
import torch

import rectvit
from helpers import randomize_, save_load, script
from rectvit.layers.window import WINDOW_MASKS

TOL = 1e-5
TINY = dict(embed_dim=8, depths=(2, 2), num_heads=(1, 2), img_size=(32, 48))  # grids 8x12 then 4x6
OTHER = (40, 56)  # grids 10x14 and 5x7: padded to whole windows, so the masks differ from the nominal ones

# (registered name, kwargs for both libraries)
V1, V2, CR = "swin_tiny_patch4_window7_224", "swinv2_tiny_window8_256", "swinv2_cr_tiny_224"
CASES = {
    "v1-rect-window-catavgmax": (V1, dict(window_size=(4, 2), head_dim=4, global_pool="catavgmax")),
    "v1-always-partition-no-pool": (V1, dict(window_size=4, always_partition=True, global_pool="")),
    "v2-avgmax": (V2, dict(window_size=4, global_pool="avgmax", pretrained_window_sizes=(3, 3))),
    "v2-rect-window-max-no-classes": (V2, dict(window_size=(2, 4), global_pool="max", num_classes=0, act_layer="silu")),
    "cr-ratio-extra-norm": (CR, dict(window_ratio=2, extra_norm_period=1)),
    "cr-always-partition-rect": (CR, dict(window_size=(4, 8), always_partition=True)),
}

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # torch 2.14 deprecates torch.jit.script
]


def _pair(name: str, **kw):
    ours = randomize_(rectvit.create_model(name, dynamic_img_size=True, **TINY, **kw)).eval()
    theirs = timm.create_model(name, pretrained=False, dynamic_img_size=True, strict_img_size=False, **TINY, **kw)
    theirs.load_state_dict(rectvit.to_timm_state_dict(ours), strict=True)
    return ours, theirs.eval()


@pytest.mark.parametrize("case", CASES)
def test_scripted_shifted_windows_equal_timm_at_two_sizes(case):
    name, kw = CASES[case]
    ours, theirs = _pair(name, **kw)
    assert any(any(b.shift_size) for s in getattr(ours, "layers", getattr(ours, "stages", ())) for b in s.blocks)
    scripted = save_load(script(ours))
    for size in (TINY["img_size"], OTHER):
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            got = scripted(x)
            torch.testing.assert_close(got, theirs(x), atol=TOL, rtol=0)
            torch.testing.assert_close(got, ours(x), atol=TOL, rtol=0)


def test_scripting_after_eager_calls_and_resize_keeps_the_model_as_it_is():
    """A model scripted after eager forwards (masks cached) and a window change runs as the eager one, and
    the eager model's cache keeps serving it (scripting copies nothing back)."""
    model = randomize_(rectvit.create_model(V1, dynamic_img_size=True, window_size=4, **TINY)).eval()
    x = torch.randn(1, 3, *OTHER)
    with torch.no_grad():
        model(x)
        model.set_input_size(window_size=(2, 4))  # resamples every bias table
        want = model(x)
        cached = set(WINDOW_MASKS.keys())
        scripted = script(model)
        torch.testing.assert_close(scripted(x), want, atol=TOL, rtol=0)
        torch.testing.assert_close(scripted.forward_features(x), model.forward_features(x), atol=TOL, rtol=0)
    assert cached and cached <= set(WINDOW_MASKS.keys())


@pytest.mark.parametrize("name", [V1, CR])
def test_scripted_training_step_with_grad_checkpointing_flag_matches_eager(name):
    """TorchScript has no checkpoint: a scripted stage ignores ``grad_checkpointing`` and stores activations;
    outputs and gradients are those of the eager model (which recomputes). Dropout off (V2 CR's meta-MLP
    always drops), so both runs are deterministic."""
    model = randomize_(rectvit.create_model(name, window_size=4, drop_path_rate=0.0, **TINY)).train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    model.set_grad_checkpointing(True)
    scripted = script(model)
    x = torch.randn(2, 3, *TINY["img_size"])
    got = scripted(x)
    (g_got,) = torch.autograd.grad(got.square().sum(), [model.patch_embed.proj.weight])
    want = model(x)
    (g_want,) = torch.autograd.grad(want.square().sum(), [model.patch_embed.proj.weight])
    torch.testing.assert_close(got, want, atol=TOL, rtol=0)
    torch.testing.assert_close(g_got, g_want, atol=1e-4, rtol=1e-4)


def test_scripted_masks_follow_the_input_dtype_and_padded_size():
    """The scripted program builds each mask in the input's dtype, as the eager cache keys it, and for the
    grid of an input that ``dynamic_img_pad`` pads to whole patches first."""
    model = rectvit.create_model(CR, dynamic_img_size=True, dynamic_img_pad=True, window_size=4, **TINY)
    model = randomize_(model).double().eval()
    scripted = script(model)
    x = torch.randn(1, 3, OTHER[0] + 1, OTHER[1] - 3, dtype=torch.float64)  # 41x53: grid 11x14
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), atol=1e-10, rtol=0)


@pytest.mark.parametrize("name", [V1, V2, CR])
def test_scripted_fx_graph_builds_shifted_masks_per_input(name):
    """timm's FX-then-script test on shifted windows: the traced graph calls the wrapped mask and padding
    functions on each input's grid, and TorchScript compiles them, so one scripted graph takes both sizes."""
    fx = pytest.importorskip("torchvision.models.feature_extraction")
    model = randomize_(rectvit.create_model(name, dynamic_img_size=True, window_size=4, **TINY)).eval()
    _, eval_nodes = fx.get_graph_node_names(model)
    assert any("mask" in n for n in eval_nodes)
    scripted = script(fx.create_feature_extractor(model, return_nodes=[eval_nodes[-1]]))
    for size in (TINY["img_size"], OTHER):
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            (got,) = scripted(x).values()
            torch.testing.assert_close(got, model(x), atol=TOL, rtol=0)
