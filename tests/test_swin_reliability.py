"""Swin v1/v2 and v2 CR: the rules the shared skeleton (models/_stages.py, layers/window.py) keeps.

- Sizes the patches do not tile: one rule for static and dynamic models, timm's static rule (crop to
  whole patches). Acceptance: a dynamic model at such a size equals the static model built at it, and
  timm's static model (<= 1e-5), and the dynamic model on the crop.
- ``set_input_size`` beside a forward: the forward sees the old model or the new one, never a mix and
  never a raw error; afterwards the model equals a fresh copy of its own config and state. Forced
  schedules (a hook that resizes between two steps of a forward; a resize between a mask lookup and its
  insert) and real threads, bounded in time.
- The mask cache: keyed by padded size, window and shift; bounded (entries and bytes); entries made under
  inference mode serve autograd; concurrent lookups lose nothing.
- v2 CR: forward_features NCHW as timm; leaving dynamic mode recorded; the window-size guard.
"""

from __future__ import annotations

import copy
import threading
import time

import pytest
import timm
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rectvit
import rectvit.layers.window as window_module
from helpers import max_diff, randomize_, script
from rectvit.layers.window import (
    WINDOW_MASKS,
    WindowAttention,
    WindowAttentionV2,
    WindowMaskCache,
    WindowMultiHeadAttention,
    merge_shifted,
    partition_shifted,
    shifted_window_mask,
)
from rectvit.models._stages import SwinBlock, WindowStageModel
from rectvit.models.swin import SwinTransformer, SwinTransformerV2
from rectvit.models.swin_cr import SwinTransformerV2Cr

TOL = 1e-5
V1, V2, CR = "swin_tiny_patch4_window7_224", "swinv2_tiny_window8_256", "swinv2_cr_tiny_224"
SMALL = dict(embed_dim=16, depths=(2, 2), num_heads=(1, 2), num_classes=5)
NAMES = [V1, V2, CR]

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # torch 2.14 deprecates torch.jit.script
]


def _ours(name: str, **kw) -> torch.nn.Module:
    return randomize_(rectvit.create_model(name, **{**SMALL, **kw})).eval()


def _fresh(model: torch.nn.Module) -> torch.nn.Module:
    """A model rebuilt from ``model``'s recorded config and state: what it must equal once writers stop."""
    fresh = type(model)(**model.model_config).eval()
    fresh.load_state_dict(model.state_dict())
    return fresh


def _stages(model):
    return model.stages if isinstance(model, SwinTransformerV2Cr) else model.layers


def test_one_skeleton_and_one_window_module_serve_all_three():
    for name, attn_cls in [(V1, WindowAttention), (V2, WindowAttentionV2), (CR, WindowMultiHeadAttention)]:
        model = _ours(name, img_size=(32, 48), window_size=4)
        assert isinstance(model, WindowStageModel)
        blocks = [b for s in _stages(model) for b in s.blocks]
        assert blocks and all(type(b) is SwinBlock and type(b.attn) is attn_cls for b in blocks)


def _timm_labelled_mask(size, window, shift):
    """The mask as timm builds it (region labels by slices of the padded grid, then -100 between labels)."""
    labels = torch.zeros(size)
    axes = []
    for n, w, s in zip(size, window, shift):
        axes.append([slice(0, n)] if s == 0 else [slice(0, n - w), slice(n - w, n - s), slice(n - s, n)])
    count = 0
    for rows in axes[0]:
        for cols in axes[1]:
            labels[rows, cols] = count
            count += 1
    (hp, wp), (wh, ww) = size, window
    windows = labels.view(hp // wh, wh, wp // ww, ww).permute(0, 2, 1, 3).reshape(-1, wh * ww)
    differ = windows[:, None, :] != windows[:, :, None]
    return torch.zeros(differ.shape).masked_fill(differ, -100.0)


@settings(max_examples=40, deadline=None)
@given(
    grid=st.tuples(st.integers(1, 13), st.integers(1, 13)),
    window=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    shifted=st.booleans(),
    batch=st.integers(0, 2),
)
def test_partition_merge_and_masks_by_property(grid, window, shifted, batch):
    """Any grid, window and shift: partition then merge gives the input back; windows hold the padded grid's
    tokens in row-major window order; the mask equals timm's slice-labelled one; attention given one mask
    per window equals attention given the per-image masks."""
    shift = (window[0] // 2, window[1] // 2) if shifted else (0, 0)
    x = torch.randn(batch, *grid, 6)
    windows, mask, padded = partition_shifted(x, window, shift)
    assert padded == (-(-grid[0] // window[0]) * window[0], -(-grid[1] // window[1]) * window[1])
    n_windows = (padded[0] // window[0]) * (padded[1] // window[1])
    assert windows.shape == (batch * n_windows, window[0] * window[1], 6)
    assert torch.equal(merge_shifted(windows, window, shift, padded, grid), x)
    if not any(shift):
        assert mask is None
        return
    assert torch.equal(mask, _timm_labelled_mask(padded, window, shift))
    if batch:
        attn = WindowAttention(6, 2, window).eval()
        with torch.no_grad():
            per_image = attn(windows, mask)
            per_window = attn(windows, mask.repeat(batch, 1, 1))
        assert torch.equal(per_image, per_window)


# ---- sizes the patches do not tile ----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [(226, 230), (35, 53), (7, 5)], ids=str)
def test_size_not_a_patch_multiple_is_cropped_static_and_dynamic_as_timm(name, size):
    kw = dict(window_size=4, img_size=size)
    static = _ours(name, **kw)
    dynamic = _ours(name, **kw, dynamic_img_size=True)  # the same windows; any size per forward
    dynamic.load_state_dict(static.state_dict())
    theirs = timm.create_model(name, pretrained=False, **SMALL, **kw).eval()
    theirs.load_state_dict(rectvit.to_timm_state_dict(static))
    x = torch.randn(2, 3, *size)
    crop = x[:, :, : size[0] // 4 * 4, : size[1] // 4 * 4]
    with torch.no_grad():
        want = theirs(x)
        assert max_diff(static(x), want) <= TOL
        assert max_diff(dynamic(x), want) <= TOL
        assert torch.equal(dynamic(x), dynamic(crop.contiguous()))
        assert max_diff(script(dynamic)(x), want) <= TOL  # the scripted check keeps the rule
    dynamic.check_input(x)
    with pytest.raises(rectvit.InputSizeError, match="smaller than one patch"):
        dynamic(x[:, :, :3])


# ---- set_input_size beside a forward: forced schedules --------------------------------------------

# (name, built with, the change a hook makes in the middle of a forward at the built size)
RESIZES = [
    (V1, dict(img_size=(32, 48), window_size=(4, 2)), dict(img_size=(48, 32), window_size=(2, 4))),  # tables
    (V1, dict(img_size=(32, 48), window_size=4, dynamic_img_size=True), dict(patch_size=8)),
    (V2, dict(img_size=(32, 48), window_size=(4, 2)), dict(window_size=(2, 4), always_partition=True)),
    (CR, dict(img_size=(32, 48), window_size=(4, 2), dynamic_img_size=True), dict(img_size=(64, 32))),
]


@pytest.mark.parametrize("name,built,change", RESIZES, ids=lambda v: str(v).replace(" ", ""))
@pytest.mark.parametrize("where", ["patch_embed", "stage 1", "block 1"])
def test_resize_inside_a_forward_finishes_on_the_old_model(name, built, change, where):
    model = _ours(name, **built)
    old = copy.deepcopy(model)
    x = torch.randn(2, 3, *built["img_size"])
    target = {
        "patch_embed": model.patch_embed,
        "stage 1": _stages(model)[1],
        "block 1": _stages(model)[0].blocks[1],
    }[where]
    fired = []

    def resize(module, args):
        if not fired:
            fired.append(1)
            model.set_input_size(**change)

    handle = target.register_forward_pre_hook(resize)
    with torch.no_grad():
        got = model(x)
    handle.remove()
    assert fired
    with torch.no_grad():
        assert torch.equal(got, old(x))  # the whole forward ran on the model as it was
        size = model.img_size
        y = torch.randn(1, 3, *size)
        assert torch.equal(model(y), _fresh(model)(y))  # and the model is now its new self, nothing mixed
    assert model.model_config != old.model_config


def test_resize_between_a_mask_lookup_and_its_insert_leaves_no_stale_mask(monkeypatch):
    """A writer runs between a forward's mask lookup and its insert (forced: inside the mask builder). The
    new window gives masks of the same shape (8 windows of 8 tokens on an 8x8 grid), so only a cache keyed
    by window tells them apart."""
    model = _ours(V1, img_size=(32, 32), window_size=(4, 2), dynamic_img_size=True)
    old = copy.deepcopy(model)
    x = torch.randn(1, 3, 32, 32)
    build = window_module.shifted_window_mask
    fired = []

    def racing_build(*args, **kwargs):
        if not fired:
            fired.append(1)
            model.set_input_size(window_size=(2, 4))
        return build(*args, **kwargs)

    WINDOW_MASKS.clear()
    monkeypatch.setattr(window_module, "shifted_window_mask", racing_build)
    with torch.no_grad():
        got = model(x)
    monkeypatch.undo()
    assert fired
    fresh = _fresh(model)
    with torch.no_grad():
        assert torch.equal(got, old(x))
        for size in [(32, 32), (32, 32), (48, 40)]:
            y = torch.randn(1, 3, *size)
            assert torch.equal(model(y), fresh(y))


def test_failed_resize_of_v2_cr_changes_nothing(monkeypatch):
    model = _ours(CR, img_size=(32, 48), window_size=(4, 2))
    before = copy.deepcopy(model)
    x = torch.randn(1, 3, 32, 48)
    calls = []
    attn_cls = type(_stages(model)[0].blocks[0].attn)
    original = attn_cls.window_tensors

    def failing(self, window):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("out of memory (simulated)")
        return original(self, window)

    monkeypatch.setattr(attn_cls, "window_tensors", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        model.set_input_size(img_size=(64, 48), window_size=(2, 4))
    monkeypatch.undo()
    with pytest.raises(rectvit.InputSizeError, match="one window per stage"):
        model.set_input_size(window_size=[(2, 2)] * 3)
    assert model.model_config == before.model_config and model.window_size == before.window_size
    with torch.no_grad():
        assert torch.equal(model(x), before(x))


# ---- set_input_size beside a forward: real threads --------------------------------------------------


@pytest.mark.parametrize("name", [V2, CR])
def test_threads_forward_while_another_resizes(name):
    """Two threads run forwards while a third switches the windows back and forth for about a second.
    Acceptance: every forward returns exactly the output of the model before or after a switch (both are
    computed beforehand), no forward raises, and afterwards the model equals a fresh copy."""
    model = _ours(name, img_size=(32, 48), window_size=(4, 2), dynamic_img_size=True)
    changes = [dict(window_size=(2, 4)), dict(window_size=(4, 2))]
    refs = [copy.deepcopy(model)]
    model.set_input_size(**changes[0])
    refs.append(copy.deepcopy(model))
    model.set_input_size(**changes[1])
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        want = [r(x) for r in refs]
    assert max_diff(want[0], want[1]) > 1e-3  # the two models differ, so a mix would show

    deadline = time.monotonic() + 1.0
    errors, outputs, switches = [], [], [0]

    def reader():
        try:
            while time.monotonic() < deadline:
                with torch.no_grad():
                    outputs.append(model(x))
        except Exception as e:  # noqa: BLE001 - any exception is a failure, reported below
            errors.append(e)

    def writer():
        try:
            while time.monotonic() < deadline:
                model.set_input_size(**changes[switches[0] % 2])
                switches[0] += 1
                time.sleep(0.001)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=f) for f in (reader, reader, writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:3]
    assert switches[0] > 10 and len(outputs) > 10
    for out in outputs:
        assert min(max_diff(out, w) for w in want) <= 1e-6
    with torch.no_grad():
        assert torch.equal(model(x), _fresh(model)(x))


# ---- the mask cache --------------------------------------------------------------------------------


def test_mask_cache_is_bounded_in_entries_and_bytes(monkeypatch):
    """v2 CR in dynamic mode at many sizes: the one cache keeps at most its bound, outputs stay timm's."""
    name = CR
    kw = dict(img_size=(32, 48), window_size=(4, 2), dynamic_img_size=True)
    ours = _ours(name, **kw)
    theirs = timm.create_model(name, pretrained=False, **SMALL, **kw).eval()
    theirs.load_state_dict(rectvit.to_timm_state_dict(ours))
    monkeypatch.setattr(WINDOW_MASKS, "max_entries", 3)
    WINDOW_MASKS.clear()
    for size in [(32, 48), (40, 48), (48, 40), (56, 24), (24, 56), (64, 64)]:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            assert max_diff(ours(x), theirs(x)) <= TOL
        assert 0 < len(WINDOW_MASKS) <= 3
    cache = WindowMaskCache(max_entries=100, max_bytes=5000)
    for size in [(8, 8), (16, 8), (16, 16)]:  # H * W * N floats: 2, 4 and 8 KiB; the last alone is over budget
        mask = cache.get(size, (4, 2), (2, 1), torch.device("cpu"), torch.float32)
        assert torch.equal(mask, shifted_window_mask(size, (4, 2), (2, 1)))
        assert cache.nbytes <= 5000
    assert [k[0] for k in cache.keys()] == [(16, 8)]


def test_mask_cache_keys_hold_window_shift_device_and_dtype():
    cache = WindowMaskCache()
    cpu = torch.device("cpu")
    cases = [((8, 8), (4, 2), (2, 1)), ((8, 8), (2, 4), (1, 2)), ((8, 8), (4, 4), (2, 2)), ((8, 8), (4, 2), (2, 0))]
    for size, window, shift in cases:
        for dtype in (torch.float32, torch.float64):
            got = cache.get(size, window, shift, cpu, dtype)
            assert got.dtype == dtype and torch.equal(got, shifted_window_mask(size, window, shift, cpu, dtype))
    assert len(cache) == 2 * len(cases)
    again = cache.get((8, 8), (4, 2), (2, 1), cpu, torch.float32)
    assert again is cache.get((8, 8), (4, 2), (2, 1), cpu, torch.float32)  # a hit returns the kept tensor
    assert cache.keys()[-1][:3] == ((8, 8), (4, 2), (2, 1))  # and is the most recently used


def test_masks_made_under_inference_mode_serve_training():
    model = _ours(V1, img_size=(32, 32), window_size=4, dynamic_img_size=True, drop_path_rate=0.0)
    x = torch.randn(2, 3, 32, 32)
    WINDOW_MASKS.clear()
    with torch.inference_mode():
        model(x)
    assert len(WINDOW_MASKS) > 0
    model.train()
    model(x).square().sum().backward()  # masks from the cache in an autograd graph
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    WINDOW_MASKS.clear()
    model.zero_grad()
    model(x).square().sum().backward()  # masks built afresh
    for n, p in model.named_parameters():
        assert torch.equal(p.grad, grads[n]), n


def test_mask_cache_under_concurrent_lookups_loses_nothing():
    cache = WindowMaskCache(max_entries=8)
    cpu = torch.device("cpu")
    keys = [((8 * (1 + i % 4), 8), (4, 2), (2, 1)) for i in range(12)] + [((8, 16), (2, 4), (1, 2))] * 4
    errors = []

    def worker(offset):
        try:
            for i in range(60):
                size, window, shift = keys[(i + offset) % len(keys)]
                mask = cache.get(size, window, shift, cpu, torch.float32)
                assert torch.equal(mask, shifted_window_mask(size, window, shift))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors and not any(t.is_alive() for t in threads)
    assert len(cache) == len(set(cache.keys())) <= 8
    assert cache.nbytes == sum(cache.get(*k[:3], cpu, torch.float32).numel() * 4 for k in cache.keys())


# ---- v2 CR: layout, recorded switch, guard ----------------------------------------------------------


def test_v2_cr_forward_features_is_nchw_as_timm():
    ours = _ours(CR, img_size=(32, 48), window_size=(4, 2))
    theirs = timm.create_model(CR, pretrained=False, **SMALL, img_size=(32, 48), window_size=(4, 2)).eval()
    theirs.load_state_dict(rectvit.to_timm_state_dict(ours))
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        feats, want = ours.forward_features(x), theirs.forward_features(x)
        assert feats.shape == want.shape == (2, 32, 4, 6)  # (B, C, h, w)
        assert max_diff(feats, want) <= TOL
        assert max_diff(ours.forward_head(feats), theirs.forward_head(want)) <= TOL
        assert max_diff(ours.forward_head(feats, pre_logits=True), theirs.forward_head(want, pre_logits=True)) <= TOL
        final, _ = ours.forward_intermediates(x)
        assert max_diff(final, theirs.forward_intermediates(x)[0]) <= TOL
    v1 = _ours(V1, img_size=(32, 48), window_size=4)
    assert v1.forward_features(x).shape == (2, 4, 6, 32)  # v1/v2: NHWC, as timm's


@pytest.mark.parametrize("cls", [SwinTransformer, SwinTransformerV2, SwinTransformerV2Cr])
@pytest.mark.parametrize("built", [dict(dynamic_img_size=True), dict(strict_img_size=False)], ids=str)
def test_leaving_dynamic_mode_is_recorded(cls, built):
    model = cls(img_size=(32, 48), window_size=4, **SMALL, **built)
    assert model.dynamic_img_size
    model.dynamic_img_size = False
    rebuilt = cls(**model.model_config)
    assert not rebuilt.dynamic_img_size
    with pytest.raises(rectvit.InputSizeError, match="takes 32x48 inputs"):
        rebuilt(torch.randn(1, 3, 48, 32))
    model.dynamic_img_size = True
    assert cls(**model.model_config).dynamic_img_size


@pytest.mark.parametrize("name", NAMES)
def test_windows_too_large_to_allocate_are_refused_before_allocating(name):
    with pytest.raises(rectvit.InputSizeError, match=r"stage 0 would use a 150x150 window \(22500 tokens"):
        rectvit.create_model(name, **SMALL, img_size=(32, 48), window_size=150, always_partition=True)
    model = _ours(name, img_size=(32, 48), window_size=4)
    with pytest.raises(rectvit.InputSizeError, match=r"window.*tokens.*smaller img_size"):
        model.set_input_size(window_size=150, always_partition=True)
    assert model.window_size == ((4, 4), (4, 4))


def test_compiled_v2_cr_builds_its_masks_in_the_graph():
    """v2 CR under torch.compile (eager backend: dynamo's tracing alone, one full graph): the mask is built in
    the graph, not read from the eager cache. tests/test_deploy.py compiles v1 over many sizes."""
    model = _ours(CR, img_size=(32, 48), window_size=(4, 2))
    compiled = torch.compile(model, backend="eager", fullgraph=True, dynamic=False)
    x = torch.randn(1, 3, 32, 48)
    WINDOW_MASKS.clear()
    with torch.no_grad():
        got = compiled(x)
        assert len(WINDOW_MASKS) == 0
        assert max_diff(got, model(x)) <= TOL
    assert len(WINDOW_MASKS) > 0  # eager: from the cache
