"""Peak memory of one call, measured in a fresh subprocess per side.

torch allocates tensors outside Python's allocator, so ``tracemalloc`` does not see them; the
process's resident set does. In the subprocess the case is built (models, weights, inputs), the
kernel's peak-RSS mark is reset (``/proc/self/clear_refs`` = 5, Linux) and the current RSS noted,
then the side's function runs once under ``torch.inference_mode``; the figure is
``VmHWM - VmRSS before`` from ``/proc/self/status``: the memory the call needed on top of what was
already resident. Where the mark cannot be reset, ``getrusage`` ``ru_maxrss`` growth is used
(a lower bound when building the case peaked higher). One warm-up call runs before the
measurement, so one-time allocations (kernel workspaces, caches) are not counted. The subprocess
runs with ``MALLOC_MMAP_THRESHOLD_=65536`` and ``MALLOC_TRIM_THRESHOLD_=0`` so that glibc maps every
tensor-sized block separately and returns it on free: RSS then follows live tensor memory instead
of hiding a call's needs in memory an earlier call freed.

Usage: ``python -m bench.memory '<case json>' <side>`` prints ``{"peak_mib": ..., "method": ...}``.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
from typing import Any

__all__ = ["peak_memory_mib"]


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _measure(case: dict[str, Any], side: str) -> dict[str, Any]:
    import torch

    from .cases import build_case

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
    fn = build_case(case).fns[side]
    with torch.inference_mode():
        fn()  # warm-up: one-time allocations (kernel workspaces, caches) are not the call's working memory
    gc.collect()
    max_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if _reset_peak() and _status_kib("VmHWM") is not None:
        rss = _status_kib("VmRSS")
        with torch.inference_mode():
            fn()
        return {"peak_mib": (_status_kib("VmHWM") - rss) / 1024, "method": "VmHWM-VmRSS"}
    with torch.inference_mode():
        fn()
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - max_before
    return {"peak_mib": grown / 1024, "method": "ru_maxrss growth"}


def peak_memory_mib(case: dict[str, Any], side: str, timeout: float = 600) -> dict[str, Any]:
    """Run :func:`_measure` for ``side`` of ``case`` in a fresh interpreter; ``{"peak_mib", "method"}``."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    paths = [root, os.path.join(root, "src")]
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    # glibc: serve every block over 64 KiB by mmap and unmap it on free, so RSS follows live tensors
    # (otherwise freed memory stays in the heap and a later call's growth is hidden by reuse).
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    env.setdefault("MALLOC_TRIM_THRESHOLD_", "0")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.memory", json.dumps(case), side],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        return {"peak_mib": None, "method": f"failed: {tail[0] if tail else proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(_measure(json.loads(sys.argv[1]), sys.argv[2])))
