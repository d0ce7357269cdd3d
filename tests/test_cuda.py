"""CUDA paths against the CPU reference: packed attention backends, autocast, device resampling.

The reference is the same model (same weights) run in float32 on the CPU, which the rest of the suite
checks against timm and HF. On CUDA: float32 with TF32 off must match it to 1e-4; bfloat16/float16 under
autocast to a relative 3e-2 (packed: 5e-2) of the output's scale. Where torch sees no CUDA device
every test here skips with the reason "no CUDA device" (the one skip CI allows); scripts/gpu_session.sh
runs this file on a GPU machine. ``RECTVIT_CUDA_TEST_DEVICE=cpu`` runs the same comparisons on the CPU
(the CUDA-only backends skip), which checks this file itself.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch

import rectvit
from helpers import randomize_

DEV = torch.device(os.environ.get("RECTVIT_CUDA_TEST_DEVICE", "cuda"))
ON_CUDA = DEV.type == "cuda"

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(ON_CUDA and not torch.cuda.is_available(), reason="no CUDA device: torch.cuda.is_available()"),
]

FP32_TOL = 1e-4
HALF_REL = 3e-2
PACKED_HALF_REL = 5e-2

# one tiny build per family (a rectangular nominal size each)
FAMILIES = {
    "vit": ("vit_small_patch16_224", dict(depth=2, embed_dim=64, num_heads=2, img_size=(64, 128))),
    "deit-distilled": ("deit_small_distilled_patch16_224", dict(depth=2, embed_dim=64, num_heads=2, img_size=(96, 48))),
    "hybrid": ("vit_small_r26_s32_224", dict(depth=2, embed_dim=64, num_heads=2, img_size=(128, 64))),
    "swin": ("swin_tiny_patch4_window7_224", dict(depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), img_size=(112, 224))),
    "swinv2": ("swinv2_tiny_window8_256", dict(depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), img_size=(128, 256))),
    "beit": ("beit_base_patch16_224", dict(depth=2, embed_dim=64, num_heads=2, img_size=(64, 128))),
    "eva02": ("eva02_tiny_patch14_224", dict(depth=2, embed_dim=64, num_heads=2, img_size=(56, 112))),
    "rope-mixed": ("vit_small_patch16_rope_mixed_224", dict(depth=2, embed_dim=64, num_heads=2, img_size=(64, 128))),
}


@pytest.fixture(autouse=True)
def _no_tf32():
    """float32 on CUDA means float32: TF32 matmuls would miss the 1e-4 bound by design."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _rel(got: torch.Tensor, ref: torch.Tensor) -> float:
    """Max abs difference relative to the reference's scale (float32, on the CPU)."""
    got, ref = got.detach().float().cpu(), ref.detach().float().cpu()
    return ((got - ref).abs().max() / ref.abs().max().clamp(min=1e-6)).item()


def _cpu_and_device(name: str, **kw) -> tuple[torch.nn.Module, torch.nn.Module]:
    cpu = randomize_(rectvit.create_model(name, **kw), seed=1).eval()
    return cpu, copy.deepcopy(cpu).to(DEV)


def _autocast_dtypes() -> list[torch.dtype]:
    if not ON_CUDA:
        return [torch.bfloat16]  # the CPU's autocast dtype
    return [torch.bfloat16, torch.float16] if torch.cuda.is_bf16_supported() else [torch.float16]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_float32_and_autocast_equal_the_cpu_reference(family):
    name, kw = FAMILIES[family]
    cpu, dev = _cpu_and_device(name, **kw)
    x = torch.randn(2, cpu.in_chans, *cpu.img_size)
    with torch.no_grad():
        ref = cpu(x)
        got = dev(x.to(DEV))
        assert got.device.type == DEV.type and got.dtype == torch.float32
        assert (got.cpu() - ref).abs().max().item() <= FP32_TOL
        for dtype in _autocast_dtypes():
            with torch.autocast(DEV.type, dtype=dtype):
                half = dev(x.to(DEV))
            assert half.dtype in (dtype, torch.float32) and torch.isfinite(half).all()
            assert _rel(half, ref) <= HALF_REL, (dtype, _rel(half, ref))


@pytest.mark.parametrize("family", ["vit", "eva02"])
def test_dynamic_size_on_the_device_follows_dtype_and_size(family):
    """A dynamic model resamples its table on the device, for each new size and after a dtype change."""
    name, kw = FAMILIES[family]
    cpu, dev = _cpu_and_device(name, dynamic_img_size=True, **kw)
    h, w = cpu.img_size
    with torch.no_grad():
        for size in ((h, w), (2 * h, w), (h // 2 + 16, 3 * w // 2)):
            x = torch.randn(1, cpu.in_chans, *size)
            ref = cpu(x)
            assert (dev(x.to(DEV)).cpu() - ref).abs().max().item() <= FP32_TOL, size
        if ON_CUDA:
            half = copy.deepcopy(dev).half()
            for _ in range(2):  # the second call reads the cached table, which must be float16 too
                out = half(x.to(DEV, torch.float16))
                assert out.dtype == torch.float16 and _rel(out, ref) <= HALF_REL


def _packed_model() -> tuple[torch.nn.Module, torch.nn.Module]:
    kw = dict(depth=2, embed_dim=128, num_heads=2, dynamic_img_size=True)
    return _cpu_and_device("ast_base_patch16_s10_128x1024", **kw)


SPECTROGRAMS = (1024, 517, 200, 333, 1024)


@pytest.mark.parametrize("backend", ["segments", "nested", "auto"])
def test_packed_float32_backends_equal_the_cpu_reference(backend):
    cpu, dev = _packed_model()
    xs = [torch.randn(1, 128, f) for f in SPECTROGRAMS]
    with torch.no_grad():
        ref = torch.cat([cpu(x[None]) for x in xs])
        got = dev(rectvit.pack([x.to(DEV) for x in xs], attention=backend))
    assert got.shape == ref.shape and (got.cpu() - ref).abs().max().item() <= FP32_TOL


@pytest.mark.parametrize("backend", ["varlen", "nested", "auto"])
def test_packed_half_precision_backends_equal_the_cpu_reference(backend):
    """varlen (Flash attention on sequence offsets) runs only on CUDA in float16/bfloat16."""
    if backend == "varlen" and not ON_CUDA:
        pytest.skip("no CUDA device: attention='varlen' is CUDA-only")
    cpu, dev = _packed_model()
    xs = [torch.randn(1, 128, f) for f in SPECTROGRAMS]
    with torch.no_grad():
        ref = torch.cat([cpu(x[None]) for x in xs])
        for dtype in _autocast_dtypes():
            with torch.inference_mode(), torch.autocast(DEV.type, dtype=dtype):
                got = dev(rectvit.pack([x.to(DEV) for x in xs], attention=backend))
            assert got.shape == ref.shape and _rel(got, ref) <= PACKED_HALF_REL, (dtype, _rel(got, ref))


def test_packed_gradients_on_the_device_equal_the_cpu_reference():
    cpu, dev = _packed_model()
    cpu.train(), dev.train()
    xs = [torch.randn(1, 128, f) for f in SPECTROGRAMS[:3]]
    target = torch.randn(len(xs), cpu.num_classes)
    (cpu(rectvit.pack(xs)) * target).sum().backward()
    (dev(rectvit.pack([x.to(DEV) for x in xs])) * target.to(DEV)).sum().backward()
    for (n, a), (_, b) in zip(cpu.named_parameters(), dev.named_parameters()):
        scale = a.grad.abs().max().clamp(min=1e-6)
        assert ((b.grad.cpu() - a.grad).abs().max() / scale).item() <= 1e-3, n


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_resampling_on_the_device_keeps_device_and_dtype(dtype):
    table = torch.randn(1, 14, 14, 64).to(dtype)
    flat = torch.randn(1, 1 + 6 * 10, 64).to(dtype)
    kernel = torch.randn(32, 3, 16, 16).to(dtype)
    tol = FP32_TOL if dtype == torch.float32 else 1e-2
    cases = [
        (lambda t: rectvit.resample_grid(t, (64, 8)), table),
        (lambda t: rectvit.resample_abs_pos_embed(t, (9, 4), old_size=(6, 10), num_prefix_tokens=1), flat),
        (lambda t: rectvit.resample_patch_embed(t, (8, 24)), kernel),
    ]
    for fn, t in cases:
        ref = fn(t.float())
        got = fn(t.to(DEV))
        assert got.device.type == DEV.type and got.dtype == dtype
        assert _rel(got, ref) <= tol


def test_forward_variable_on_the_device_equals_the_cpu_reference():
    cpu, dev = _packed_model()
    inputs = [torch.randn(1, 128, f) for f in (200, 350, 350, 1024, 777)]
    with torch.no_grad():
        ref = rectvit.forward_variable(cpu, inputs)
        got = rectvit.forward_variable(dev, [x.to(DEV) for x in inputs])
    for g, r in zip(got, ref):
        assert g.device.type == DEV.type and (g.cpu() - r).abs().max().item() <= FP32_TOL
