"""CUDA checks of dtypes and attention paths (run by hand on a GPU machine; never part of CI).

    PYTHONPATH=src python scripts/cuda_check.py     # or: bash scripts/gpu_session.sh (every device check)

Ends by running tests/test_cuda.py (packed backends, autocast, device resampling against the CPU
reference; it needs pytest and hypothesis).
Prints one line per check and exits non-zero if any fails. On a machine without CUDA it runs the
same checks on the CPU (useful only to test this script).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

import rectvit

DEV = torch.device("cuda" if torch.cuda.is_available() else "cpu")
FAILS: list[str] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}", flush=True)
    if not ok:
        FAILS.append(name)


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            base = 1.0 if p.dim() <= 1 and ("norm" in name or name.endswith("gamma")) else 0.0
            p.copy_(base + 0.1 * torch.randn(p.shape, generator=g))
    return model


def pair(name: str, img_size, **kw):
    import timm

    theirs = randomize(timm.create_model(name, pretrained=False, img_size=img_size, **kw)).eval()
    ours = rectvit.create_model(name, img_size=img_size, **kw).eval()
    table = getattr(ours, "pos_embed", None)
    if table is None:  # Swin: timm's keys; random bias tables record no window (rectvit never guesses one)
        ours.load_state_dict(theirs.state_dict())
    else:  # a random flat table records no grid: give it
        rectvit.load_checkpoint(ours, theirs.state_dict(), source_grid=tuple(table.shape[1:3]))
    return theirs.to(DEV), ours.to(DEV)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp(min=1e-6)).item()


def main() -> int:
    print(f"device {DEV} ({torch.cuda.get_device_name() if DEV.type == 'cuda' else 'cpu'}), torch {torch.__version__}")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cases = [
        ("vit_small_patch16_224", (1024, 128), {}),
        ("deit_small_distilled_patch16_224", (512, 128), {}),
        ("vit_base_patch16_reg4_gap_256", (256, 96), dict(depth=4)),
        ("swin_tiny_patch4_window7_224", (448, 224), {}),
        ("swinv2_tiny_window8_256", (256, 512), {}),
        ("vit_small_r26_s32_224", (512, 128), dict(depth=4)),
    ]
    for name, size, kw in cases:
        theirs, ours = pair(name, size, **kw)
        x = torch.randn(2, 3, *size, device=DEV)
        with torch.no_grad():
            ref, out = theirs(x), ours(x)
        check(f"{name} {size} fp32", rel(out, ref) < 1e-4, f"rel {rel(out, ref):.1e}")
        for dtype in (torch.bfloat16, torch.float16):
            with torch.no_grad(), torch.autocast(DEV.type, dtype=dtype):
                ref, out = theirs(x), ours(x)
            check(
                f"{name} autocast {dtype}", out.dtype == ref.dtype and rel(out, ref) < 3e-2, f"rel {rel(out, ref):.1e}"
            )
        for dtype in (torch.bfloat16, torch.float16):
            t16, o16 = theirs.to(dtype), ours.to(dtype)
            with torch.no_grad():
                ref, out = t16(x.to(dtype)), o16(x.to(dtype))
            check(f"{name} .to({dtype})", out.dtype == dtype and rel(out, ref) < 5e-2, f"rel {rel(out, ref):.1e}")
            theirs.float(), ours.float()

    # dynamic mode in half precision: the cached table follows dtype and device
    model = rectvit.create_model("vit_small_patch16_224", img_size=(224, 224), dynamic_img_size=True, depth=2)
    model = randomize(model).eval().to(DEV, torch.float16)
    with torch.no_grad():
        a = model(torch.randn(1, 3, 320, 160, device=DEV, dtype=torch.float16))
        b = model(torch.randn(1, 3, 320, 160, device=DEV, dtype=torch.float16))
    check(
        "dynamic fp16 forward twice (cache)",
        a.dtype == torch.float16 and torch.isfinite(a).all() and torch.isfinite(b).all(),
    )

    # resampling on the device keeps device and dtype
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        t = torch.randn(1, 14, 14, 384, device=DEV, dtype=dtype)
        out = rectvit.resample_grid(t, (64, 8))
        ref = rectvit.resample_grid(t.cpu().float(), (64, 8))
        check(f"resample_grid {dtype}", out.device == t.device and out.dtype == dtype and rel(out.cpu(), ref) < 1e-2)
        w = torch.randn(384, 3, 16, 16, device=DEV, dtype=dtype)
        k = rectvit.resample_patch_embed(w, (8, 24))
        kref = rectvit.resample_patch_embed(w.cpu().float(), (8, 24))
        check(f"resample_patch_embed {dtype}", k.device == w.device and k.dtype == dtype and rel(k.cpu(), kref) < 1e-2)

    # attention: the flash / memory-efficient SDPA kernels accept our q, k, v (fp16, CUDA only)
    if DEV.type == "cuda":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        model = randomize(rectvit.create_model("vit_base_patch16_224", img_size=(1024, 128), depth=2)).eval()
        model = model.to(DEV, torch.float16)
        x = torch.randn(4, 3, 1024, 128, device=DEV, dtype=torch.float16)
        with torch.no_grad():
            outs = {}
            for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH):
                try:
                    with sdpa_kernel(backend):
                        outs[backend.name] = model(x)
                    check(f"SDPA {backend.name}", True)
                except RuntimeError as e:
                    check(f"SDPA {backend.name}", False, str(e).splitlines()[0])
            if len(outs) == 3:
                check("SDPA backends agree", rel(outs["FLASH_ATTENTION"], outs["MATH"]) < 2e-2)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(10):
                model(x)
            torch.cuda.synchronize()
            print(f"info vit_base 1024x128 fp16 batch 4: {(time.perf_counter() - t0) / 10 * 1e3:.2f} ms/forward")

    # variable-size inference on the device
    ast = randomize(rectvit.create_model("ast_base_patch16_s10_128x1024", depth=2)).eval().to(DEV)
    inputs = [torch.randn(1, 128, f, device=DEV) for f in (200, 350, 350, 1024, 777)]
    from rectvit.variable import dynamic_mode

    with torch.no_grad():
        outs = rectvit.forward_variable(ast, inputs)
        with dynamic_mode(ast):
            single = [ast(x[None])[0] for x in inputs]
    diffs = [rel(o.reshape(-1), s.reshape(-1)) for o, s in zip(outs, single)]
    check("forward_variable on device equals per-input runs", max(diffs) < 1e-4, f"max rel {max(diffs):.1e}")

    # the suite's CUDA tests: packed backends, autocast, device resampling against the CPU reference
    import pytest

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "tests"))
    status = pytest.main([str(root / "tests" / "test_cuda.py"), "-q", "-rs", "-p", "no:cacheprovider"])
    check("tests/test_cuda.py", status == 0, f"pytest exit {int(status)}")
    print(f"{'FAILED: ' + ', '.join(FAILS) if FAILS else 'all checks passed'}")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
