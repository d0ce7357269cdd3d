"""Packed batches (rectvit.pack): many input shapes in one forward, attention within each image.

Oracles: timm's dynamic-size models run on each image alone (random non-zero weights; <= 1e-5
float32, hybrid <= 1e-4); AST (not in timm) against its own per-image forward, which
tests/test_hf.py ties to HF. Gradients against the per-image loop (<= 1e-4 relative). DDP: two gloo
processes on 127.0.0.1 against one process.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import timm
import torch
from hypothesis import given
from hypothesis import strategies as st

import rectvit
from helpers import max_diff, packed_and_per_image_grads, param_grads, randomize_
from rectvit.layers import packed as packed_mod
from rectvit.layers.drop import drop_path_per_image
from rectvit.layers.packed import PackedLayout, packed_attention
from rectvit.variable import dynamic_mode, plan_chunks

TOL = 1e-5
HYBRID_TOL = 1e-4

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors"),
    pytest.mark.filterwarnings("ignore:.*is_fx_tracing"),
]

SMALL = dict(embed_dim=32, depth=2, num_heads=2)
# name, constructor overrides, input sizes (all accepted by the model in dynamic mode), tolerance
TIMM_CASES = {
    "vit": ("vit_tiny_patch16_224", dict(patch_size=8, num_classes=5), [(32, 48), (16, 64), (32, 48), (8, 8)], TOL),
    "deit-distilled": (
        "deit_tiny_distilled_patch16_224",
        dict(patch_size=8, num_classes=5),
        [(24, 40), (16, 16), (48, 8)],
        TOL,
    ),
    "deit3": ("deit3_small_patch16_224", dict(patch_size=8, num_classes=4), [(32, 16), (8, 56), (16, 16)], TOL),
    "registers-gap": (
        "vit_base_patch16_reg4_gap_256",
        dict(patch_size=8, num_classes=3, img_size=32),
        [(32, 48), (16, 8), (40, 24)],
        TOL,
    ),
    "dinov2-reg": (
        "vit_small_patch14_reg4_dinov2",
        dict(img_size=56, num_classes=6),
        [(28, 56), (14, 14), (42, 28)],
        TOL,
    ),
    "gap-fc-norm": (
        "vit_medium_patch16_gap_256",
        dict(patch_size=8, num_classes=3, img_size=32),
        [(16, 32), (8, 8), (24, 40)],
        TOL,
    ),
    "hybrid": (
        "vit_tiny_r_s16_p8_224",
        dict(img_size=(64, 64), num_classes=4),
        [(64, 96), (32, 32), (96, 64), (64, 96)],
        HYBRID_TOL,
    ),
}


def _pair(name: str, overrides: dict, seed: int = 0):
    """A randomized timm model (dynamic size) and ours built by the same call with timm's weights."""
    kw = dict(SMALL, dynamic_img_size=True, **overrides)
    theirs = randomize_(timm.create_model(name, **kw), seed=seed).eval()
    ours = rectvit.create_model(name, **kw).eval()
    rectvit.load_checkpoint(ours, theirs.state_dict(), source_grid=ours.grid_size)  # random table: grid given
    return theirs, ours


def _images(sizes, chans=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(chans, h, w, generator=g) for h, w in sizes]


# --------------------------------------------------------------------------------------------------
# Exactness: row i of model(packed) is image i alone


@pytest.mark.parametrize("case", list(TIMM_CASES))
def test_packed_rows_equal_timm_on_each_image_alone(case):
    name, overrides, sizes, tol = TIMM_CASES[case]
    theirs, ours = _pair(name, overrides)
    xs = _images(sizes)
    with torch.no_grad():
        out = ours(rectvit.pack(xs))
        ref = torch.cat([theirs(x[None]) for x in xs])
    assert out.shape == (len(xs), ours.num_classes)
    assert ref.abs().max() > 1e-2  # non-trivial logits
    assert max_diff(out, ref) <= tol


@pytest.mark.parametrize("case", ["vit", "deit-distilled", "registers-gap", "dinov2-reg", "hybrid"])
def test_packed_features_maps_and_pre_logits_per_image(case):
    name, overrides, sizes, tol = TIMM_CASES[case]
    theirs, ours = _pair(name, overrides)
    xs = _images(sizes, seed=1)
    p = ours.num_prefix_tokens
    with torch.no_grad():
        feats = ours.forward_features(rectvit.pack(xs))
        tokens, maps = feats.unpack(), feats.feature_maps()
        prefix = feats.prefix_tokens()
        pre = ours.forward_head(feats, pre_logits=True)
        logits = ours.forward_head(feats)
        for i, x in enumerate(xs):
            ref = theirs.forward_features(x[None])[0]
            h, w = ours.feat_size(x.shape[-2:])
            assert max_diff(tokens[i], ref) <= tol
            assert max_diff(maps[i], ref[p:].reshape(h, w, -1)) <= tol
            if p:
                assert max_diff(prefix[i], ref[:p]) <= tol
            assert max_diff(pre[i], theirs.forward_head(ref[None], pre_logits=True)[0]) <= tol
            assert max_diff(logits[i], theirs(x[None])[0]) <= tol


@pytest.mark.parametrize("pool", ["avg", "max", "avgmax", ""])
def test_every_pooling_per_image(pool):
    model = rectvit.create_model(
        "vit_tiny_patch16_224", patch_size=8, class_token=False, global_pool=pool, reg_tokens=2, **SMALL
    )
    model = randomize_(model).eval()
    xs = _images([(16, 24), (8, 8), (32, 16)])
    with torch.no_grad(), dynamic_mode(model):
        out = model(rectvit.pack(xs))
        ref = [model(x[None])[0] for x in xs]
    if pool:
        assert max_diff(out, torch.stack(ref)) <= TOL
    else:  # no pooling: the head on every token, still packed
        for got, want in zip(out.unpack(), ref):
            assert max_diff(got, want) <= TOL


def _tiny_ast(**kw):
    cfg = dict(img_size=(32, 96), num_classes=7, dynamic_img_size=True, **SMALL)
    cfg.update(kw)
    return randomize_(rectvit.create_model("ast_base_patch16_s10_128x1024", **cfg)).eval()


@pytest.mark.parametrize("attention", ["auto", "segments", "nested"])
def test_ast_overlapping_patches(attention):
    model = _tiny_ast()
    xs = [torch.randn(1, 32, f) for f in (96, 57, 200, 96, 16)] + [torch.randn(1, 24, 40)]
    with torch.no_grad():
        out = model(rectvit.pack(xs, attention=attention))
        ref = torch.cat([model(x[None]) for x in xs])
        feats = model.forward_features(rectvit.pack(xs, attention=attention)).unpack()
    assert max_diff(out, ref) <= TOL
    for x, f in zip(xs, feats):
        assert max_diff(f, model.forward_features(x[None])[0]) <= TOL


def test_distilled_training_returns_both_heads_per_image():
    _, model = _pair(*TIMM_CASES["deit-distilled"][:2])
    model.train().set_distilled_training(True)
    xs = _images([(24, 40), (16, 16)])
    with torch.no_grad():
        cls, dist = model(rectvit.pack(xs))
        ref = [model(x[None]) for x in xs]
    assert max_diff(cls, torch.cat([r[0] for r in ref])) <= TOL
    assert max_diff(dist, torch.cat([r[1] for r in ref])) <= TOL


def test_static_model_takes_packs_of_its_size_and_names_other_sizes():
    model = rectvit.create_model("vit_tiny_patch16_224", img_size=(32, 48), patch_size=8, **SMALL).eval()
    xs = _images([(32, 48), (32, 48)])
    with torch.no_grad():
        assert max_diff(model(rectvit.pack(xs)), model(torch.stack(xs))) <= TOL
    with pytest.raises(rectvit.InputSizeError, match="packed image 1 .*dynamic_img_size=True"):
        model(rectvit.pack(_images([(32, 48), (16, 48)])))


def test_forward_intermediates_rejects_a_pack_with_advice():
    model = _tiny_ast()
    with pytest.raises(rectvit.RectViTError, match="feature_maps"):
        model.forward_intermediates(rectvit.pack([torch.randn(1, 32, 96)]))


# --------------------------------------------------------------------------------------------------
# Attention backends


def _layout_and_qkv(grids=((2, 3), (1, 1), (3, 2)), prefix=2, heads=2, d=8):
    layout = PackedLayout(grids, prefix)
    t = layout.total
    g = torch.Generator().manual_seed(0)
    return layout, *(torch.randn(t, heads, d, generator=g) for _ in range(3))


def _dense_reference(q, k, v, layout, m):
    """Each image's attention alone, written out (softmax(q k^T / sqrt(d)) v), queries its first m rows."""
    outs = []
    for s, e in zip(layout.offsets[:-1], layout.offsets[1:]):
        qi = q[s:e] if m is None else q[s : s + m]
        att = torch.einsum("qhd,khd->hqk", qi, k[s:e]) / math.sqrt(q.shape[-1])
        outs.append(torch.einsum("hqk,khd->qhd", att.softmax(-1), v[s:e]))
    return torch.cat(outs)


@pytest.mark.parametrize("backend", ["segments", "nested"])
@pytest.mark.parametrize("m", [None, 2])
def test_backends_equal_hand_written_attention(backend, m):
    layout, q, k, v = _layout_and_qkv()
    layout = PackedLayout(layout.grids, layout.num_prefix, backend)
    qq = q if m is None else q[layout.first_rows(m, q.device)]
    out = packed_attention(qq, k, v, layout, m)
    assert max_diff(out, _dense_reference(q, k, v, layout, m)) <= TOL


@pytest.mark.parametrize("m", [None, 2])
def test_varlen_wiring_with_a_stand_in_kernel(monkeypatch, m):
    """The CUDA varlen path's arguments (cumulative lengths, maxima), checked with a CPU stand-in kernel."""

    def fake_varlen(q, k, v, cu_q, cu_k, max_q, max_k):
        assert cu_q.dtype == cu_k.dtype == torch.int32
        lq = (cu_q[1:] - cu_q[:-1]).tolist()
        lk = (cu_k[1:] - cu_k[:-1]).tolist()
        assert max_q == max(lq) and max_k == max(lk)
        outs = [
            torch.nn.functional.scaled_dot_product_attention(a.transpose(0, 1), b.transpose(0, 1), c.transpose(0, 1))
            for a, b, c in zip(q.split(lq), k.split(lk), v.split(lk))
        ]
        return torch.cat([o.transpose(0, 1) for o in outs])

    monkeypatch.setattr(packed_mod, "_varlen_attn", lambda: fake_varlen)
    layout, q, k, v = _layout_and_qkv()
    qq = q if m is None else q[layout.first_rows(m, q.device)]
    out = packed_mod._varlen(qq, k, v, layout, m)
    assert max_diff(out, _dense_reference(q, k, v, layout, m)) <= TOL


def test_backend_choice_and_errors():
    q = torch.zeros(4, 2, 8)
    assert packed_mod.resolve_backend("auto", q, 0.0) == "segments"  # CPU: fastest measured
    with pytest.raises(rectvit.RectViTError, match="CUDA in float16/bfloat16"):
        packed_mod.resolve_backend("varlen", q, 0.0)
    with pytest.raises(rectvit.RectViTError, match="attention must be one of"):
        rectvit.pack([torch.zeros(3, 8, 8)], attention="flash")


def test_stochastic_depth_drops_whole_images():
    model = rectvit.create_model(
        "vit_tiny_patch16_224", patch_size=8, drop_path_rate=0.5, dynamic_img_size=True, **SMALL
    ).train()
    blk, lengths = model.blocks[1], (5, 3, 9)
    torch.manual_seed(3)
    out = drop_path_per_image(blk.drop_path1, torch.ones(17, 4), lengths)
    per_image = out.split(list(lengths))
    assert all(len(torch.unique(p)) == 1 for p in per_image)
    assert {p[0, 0].item() for p in per_image} <= {0.0, 2.0}


# --------------------------------------------------------------------------------------------------
# Gradients, gradient checkpointing, DDP


def _assert_close_grads(a, b, tol=1e-4):
    assert a.keys() == b.keys()
    for n in a:
        scale = b[n].abs().max().item()
        assert scale > 0, n
        assert (a[n] - b[n]).abs().max().item() <= tol * scale, n


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("case", ["vit", "hybrid"])
def test_gradients_equal_the_per_image_loop(case, checkpointing):
    name, overrides, sizes, _ = TIMM_CASES[case]
    model = randomize_(rectvit.create_model(name, **dict(SMALL, dynamic_img_size=True, **overrides))).train()
    model.set_grad_checkpointing(checkpointing)
    xs = _images(sizes, seed=2)
    target = torch.randn(len(xs), model.num_classes, generator=torch.Generator().manual_seed(5))

    packed, loop = packed_and_per_image_grads(model, xs, target)
    assert "pos_embed" in packed  # the resampled position table is trained too
    _assert_close_grads(packed, loop)


# Model and data of the DDP test: run by both worker processes and by the single-process reference.
_DDP_COMMON = textwrap.dedent(
    """
    import torch, rectvit

    def ddp_model():
        torch.manual_seed(0)
        model = rectvit.create_model(
            "vit_tiny_patch16_224", patch_size=8, num_classes=3, dynamic_img_size=True, depth=1, embed_dim=32,
            num_heads=2,
        )
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.1)
        return model.train()

    def ddp_data():
        g = torch.Generator().manual_seed(7)
        xs = [torch.randn(3, h, w, generator=g) for h, w in [(16, 24), (8, 40), (32, 16), (16, 16)]]
        return xs, torch.tensor([0, 2, 1, 2])
    """
)

_DDP_WORKER = _DDP_COMMON + textwrap.dedent(
    """
    import os, sys, torch.distributed as dist
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo", rank=rank, world_size=2, init_method="tcp://127.0.0.1:" + os.environ["PORT"])
    model = torch.nn.parallel.DistributedDataParallel(ddp_model())
    xs, target = ddp_data()
    mine = slice(rank * 2, rank * 2 + 2)  # two images per process, one packed minibatch each
    out = model(rectvit.pack(xs[mine]))
    torch.nn.functional.cross_entropy(out, target[mine]).backward()
    if rank == 0:
        torch.save({n: p.grad for n, p in model.module.named_parameters()}, sys.argv[1])
    dist.barrier()  # neither rank tears down gloo while the other still talks to it
    dist.destroy_process_group()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_gloo_processes_average_to_single_process_gradients(tmp_path):
    here = os.path.dirname(os.path.abspath(__file__))
    src = os.path.join(os.path.dirname(here), "src")
    out = tmp_path / "grads.pt"
    env = dict(os.environ, PORT=str(_free_port()), PYTHONPATH=src, OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _DDP_WORKER, str(out)],
            env=dict(env, RANK=str(r)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for r in range(2)
    ]
    try:
        logs = [p.communicate(timeout=120)[0].decode() for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 for p in procs), logs
    assert len(ddp_grads := torch.load(out, weights_only=True)) > 0
    ddp = ddp_grads

    common: dict = {}
    exec(_DDP_COMMON, common)
    model = common["ddp_model"]()
    xs, target = common["ddp_data"]()
    torch.nn.functional.cross_entropy(model(rectvit.pack(xs)), target).backward()
    _assert_close_grads({n: g for n, g in ddp.items() if g is not None}, param_grads(model))


# --------------------------------------------------------------------------------------------------
# Bad input: a RectViTError naming the index, before any work


@pytest.mark.parametrize(
    "images, fragments",
    [
        ([], ["at least one", "empty"]),
        ([torch.zeros(3, 8, 8), torch.zeros(1, 8, 8)], ["image 1", "3 channel", "got 1"]),
        ([torch.zeros(3, 8, 8), torch.zeros(3, 8, 8, dtype=torch.float64)], ["image 1", "float64", "float32"]),
        ([torch.zeros(3, 8, 8), torch.zeros(3, 8, 8, device="meta")], ["image 1", "meta"]),
        ([torch.zeros(3, 8, 8), torch.zeros(1, 3, 8, 8)], ["image 1", "3-d (C, H, W)"]),
        ([torch.zeros(3, 8, 8), "x"], ["image 1", "str"]),
        ([torch.zeros(3, 0, 8)], ["image 0", "non-zero"]),
    ],
    ids=["empty", "channels", "dtypes", "devices", "ndim", "type", "zero-size"],
)
def test_pack_rejects_bad_images(images, fragments):
    with pytest.raises(rectvit.RectViTError) as e:
        rectvit.pack(images)
    for f in fragments:
        assert f in str(e.value), (f, str(e.value))


@pytest.mark.parametrize(
    "size, chans, fragments",
    [
        ((4, 48), 3, ["packed image 2", "4x48", "smaller than one patch"]),
        ((32, 48), 1, ["packed image", "3 input channel", "got 1"]),
    ],
)
def test_model_checks_every_packed_size_before_any_work(size, chans, fragments):
    model = rectvit.create_model("vit_tiny_patch16_224", patch_size=8, dynamic_img_size=True, **SMALL).eval()
    calls = []
    model.patch_embed.register_forward_pre_hook(lambda m, a: calls.append(1))
    xs = _images([(32, 48), (16, 16), size, (8, 8)], chans=chans)
    with pytest.raises(rectvit.InputSizeError) as e:
        model(rectvit.pack(xs))
    for f in fragments:
        assert f in str(e.value), (f, str(e.value))
    assert calls == []


# --------------------------------------------------------------------------------------------------
# forward_variable with packing


def test_forward_variable_packs_under_a_token_budget_exactly_and_in_order():
    model = _tiny_ast()
    frames = [200, 57, 96, 120, 16, 300, 96, 45]
    xs = [torch.randn(1, 32, f) for f in frames]
    runs = []
    model.blocks[0].register_forward_pre_hook(lambda m, a: runs.append(1))
    tokens = [model.num_prefix_tokens + math.prod(model.feat_size((32, f))) for f in frames]
    budget = 60
    with torch.no_grad():
        outs = rectvit.forward_variable(model, xs, max_tokens=budget, max_batch=64)
        ref = [model(x[None])[0] for x in xs]
    runs = runs[: -len(xs)]  # the reference runs above
    assert len(runs) <= math.ceil(sum(tokens) / budget) + 1
    assert len(runs) < len(set(frames))  # fewer passes than shape groups
    for o, r in zip(outs, ref):
        assert max_diff(o, r) <= TOL


def test_forward_variable_packed_features_and_static_model_restored():
    model = rectvit.create_model("vit_tiny_patch16_224", img_size=(32, 48), patch_size=8, **SMALL).eval()
    xs = _images([(32, 48), (16, 64), (8, 8)])
    with torch.no_grad():
        feats = rectvit.forward_variable(model, xs, forward=model.forward_features)
        with dynamic_mode(model):
            ref = [model.forward_features(x[None])[0] for x in xs]
    for f, r in zip(feats, ref):
        assert max_diff(f, r) <= TOL
    assert model.dynamic_img_size is False and model.patch_embed.strict_img_size is True


@pytest.mark.parametrize(
    "second, fragments",
    [
        (torch.zeros(3, 16, 16, dtype=torch.float64), ["input 1", "float64"]),
        (torch.zeros(3, 16, 16, device="meta"), ["input 1", "meta"]),
    ],
)
def test_forward_variable_checks_dtype_and_device_up_front(second, fragments):
    model = rectvit.create_model("vit_tiny_patch16_224", patch_size=8, **SMALL).eval()
    calls = []
    model.register_forward_pre_hook(lambda m, a: calls.append(1))
    for packing in (True, False):
        with pytest.raises(rectvit.RectViTError) as e:
            rectvit.forward_variable(model, [torch.zeros(3, 16, 16), second], packing=packing)
        for f in fragments:
            assert f in str(e.value), (f, str(e.value))
    assert calls == []


def test_forward_variable_refuses_packing_for_swin():
    swin = rectvit.create_model(
        "swin_tiny_patch4_window7_224", img_size=(32, 32), embed_dim=16, depths=(1, 1), num_heads=(2, 2), window_size=4
    )
    with pytest.raises(rectvit.RectViTError, match="packing"):
        rectvit.forward_variable(swin, [torch.zeros(3, 32, 32)], packing=True)


@given(
    tokens=st.lists(st.integers(1, 300), min_size=1, max_size=40),
    max_tokens=st.one_of(st.none(), st.integers(1, 1000)),
    max_batch=st.integers(1, 12),
)
def test_plan_chunks_properties(tokens, max_tokens, max_batch):
    chunks = plan_chunks(tokens, max_tokens, max_batch)
    flat = sorted(i for c in chunks for i in c)
    assert flat == list(range(len(tokens)))  # every item exactly once
    k = math.ceil(len(tokens) / max_batch)
    if max_tokens is not None:
        k = max(k, math.ceil(sum(tokens) / max_tokens))
    assert len(chunks) <= k  # hence at most ceil(T / M) + 1 forward passes when max_batch is not binding
    for c in chunks:
        assert len(c) <= max_batch and c == sorted(c)
        load = sum(tokens[i] for i in c)
        if max_tokens is not None and load > max_tokens:
            assert load - max(tokens[i] for i in c) < max_tokens  # over budget by less than one item


def test_dynamic_img_pad_pads_each_packed_image():
    model = rectvit.create_model(
        "vit_tiny_patch16_224", patch_size=8, dynamic_img_size=True, dynamic_img_pad=True, **SMALL
    )
    model = randomize_(model).eval()
    xs = _images([(30, 45), (8, 8), (17, 9), (30, 45)])
    with torch.no_grad():
        out = model(rectvit.pack(xs))
        ref = torch.cat([model(x[None]) for x in xs])
    assert max_diff(out, ref) <= TOL
