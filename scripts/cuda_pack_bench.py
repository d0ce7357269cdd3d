"""The GPU rows of issue 18 (packed batches), for a session with a CUDA device; never part of CI.

    PYTHONPATH=src:. python scripts/cuda_pack_bench.py          # AST-Base depth 12, 256 spectrograms

Same as ``python -m bench --device cuda --ast-depth 12 --spectrograms 256``; first runs the packed tests of
tests/test_cuda.py (varlen, nested and segments backends, bf16 and fp32, against the CPU reference) and
stops if any fails, then writes docs/BENCHMARKS_CUDA.md and prints it. Extra arguments go to
``python -m bench``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def check_backends() -> int:
    """Packed attention on CUDA (varlen, nested, segments; float32 and half precision) against the CPU
    reference: the packed tests of tests/test_cuda.py. Returns pytest's exit status."""
    import pytest

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(root, "tests"))
    return int(
        pytest.main([os.path.join(root, "tests", "test_cuda.py"), "-k", "packed", "-q", "-p", "no:cacheprovider"])
    )


if __name__ == "__main__":
    if check_backends() != 0:
        sys.exit("packed attention on CUDA differs from the CPU reference (tests/test_cuda.py -k packed); no benchmark")
    from bench.__main__ import main

    main(["--device", "cuda", "--ast-depth", "12", "--spectrograms", "256", *sys.argv[1:]])
