"""The GPU rows of issue 18 (packed batches), for a session with a CUDA device; never part of CI.

    PYTHONPATH=src:. python scripts/cuda_pack_bench.py          # AST-Base depth 12, 256 spectrograms

Same as ``python -m bench --device cuda --ast-depth 12 --spectrograms 256``; first checks that packed
attention on CUDA (varlen and nested backends, bf16 and fp32) equals per-image runs, then writes
docs/BENCHMARKS_CUDA.md and prints it. Extra arguments go to ``python -m bench``.
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import rectvit  # noqa: E402


def check_backends() -> None:
    """Packed rows vs each image alone on CUDA, for every attention backend that applies."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = (
        rectvit.create_model(
            "ast_base_patch16_s10_128x1024", depth=2, embed_dim=128, num_heads=2, dynamic_img_size=True
        )
        .to(dev)
        .eval()
    )
    xs = [torch.randn(1, 128, f, device=dev) for f in (1024, 517, 200, 333, 1024)]
    for dtype, backends in ((torch.float32, ("segments", "nested")), (torch.bfloat16, ("varlen", "nested", "auto"))):
        with torch.inference_mode(), torch.autocast("cuda", dtype, enabled=dtype != torch.float32):
            ref = torch.cat([model(x[None]) for x in xs]).float()
            for backend in backends:
                out = model(rectvit.pack(xs, attention=backend)).float()
                tol = 1e-4 if dtype == torch.float32 else 5e-2
                diff = (out - ref).abs().max().item()
                print(f"{'ok  ' if diff <= tol else 'FAIL'} {dtype} {backend}: max |diff| {diff:.2e}", flush=True)


if __name__ == "__main__":
    check_backends()
    from bench.__main__ import main

    main(["--device", "cuda", "--ast-depth", "12", "--spectrograms", "256", *sys.argv[1:]])
