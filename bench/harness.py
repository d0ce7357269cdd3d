"""Timing, FLOP counting, machine facts and the markdown report: the machinery every section shares."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "Settings",
    "Row",
    "Report",
    "time_alternating",
    "count_flops_of",
    "measure_matmul_peak",
    "machine_info",
]


@dataclass
class Settings:
    warmup: int = 2
    runs: int = 5
    quick: bool = False


# ------------------------------------------------------------------------------------------------
# Timing


def time_alternating(
    fns: dict[str, Callable[[], object]],
    warmup: int,
    runs: int,
    count_flops: bool = True,
    extra_seconds: float = 4.0,
    max_runs_factor: int = 3,
) -> tuple[dict[str, list[float]], dict[str, int | None], dict[str, object]]:
    """Seconds per call of each function, measured in turn (A B A B ...) so machine noise hits all alike.

    Every call runs under ``torch.inference_mode``. ``warmup`` rounds (at least one) run first and are
    not timed; the first of them also counts each function's FLOPs (``count_flops``) and keeps its
    output, returned for correctness checks. After ``runs`` timed rounds, cheap functions get more
    rounds (up to ``max_runs_factor * runs``) while the timed rounds took under ``extra_seconds``, so
    short rows are less at the mercy of a burst of other work. Returns ``(times, flops, outputs)``.
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    flops: dict[str, int | None] = {k: None for k in fns}
    outputs: dict[str, object] = {}
    with torch.inference_mode():
        for k, fn in fns.items():
            if count_flops:
                try:
                    with FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS) as counter:
                        outputs[k] = fn()
                    flops[k] = int(counter.get_total_flops())
                except (AttributeError, AssertionError):  # torch's module tracker fails on some models
                    outputs[k] = fn()  # (timm's AttentionPoolLatent): time it, report no GFLOP/s
            else:
                outputs[k] = fn()
        for _ in range(max(warmup, 1) - 1):
            for fn in fns.values():
                fn()
        spent, done = 0.0, 0
        while done < runs or (done < max_runs_factor * runs and spent < extra_seconds):
            for k, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                dt = time.perf_counter() - t0
                times[k].append(dt)
                spent += dt
            done += 1
    return times, flops, outputs


# ------------------------------------------------------------------------------------------------
# FLOPs


def _sdpa_cpu_flops(q, k, v, *args, out_shape=None, **kwargs) -> int:
    """``QK^T`` and ``AV`` matmuls of CPU flash attention (shapes ``(B, H, L, E)``): 2 FLOPs per MAC."""
    b, h, lq, e = q
    s, ev = k[-2], v[-1]
    return 2 * b * h * lq * s * e + 2 * b * h * lq * s * ev


_CUSTOM_FLOPS = {}
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    _CUSTOM_FLOPS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu_flops


def count_flops_of(fn: Callable[[], object]) -> int:
    """Matmul/conv/attention FLOPs (multiply-adds count 2) of one call, by torch's FLOP counter."""
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS) as counter:
        fn()
    return int(counter.get_total_flops())


def measure_matmul_peak(seconds: float = 3.0) -> float:
    """The machine's fp32 matmul peak in GFLOP/s: the best of repeated large ``torch.mm`` calls.

    Several shapes (square and transformer-like) are tried and the fastest call wins, because on a
    shared machine any single call may be slowed by other work.
    """
    shapes = [(2048, 2048, 2048), (4096, 1024, 4096), (1024, 768, 3072)]
    best = 0.0
    end = time.perf_counter() + seconds
    mats = [(torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)) for m, k, n in shapes]
    for a, b, out in mats:
        torch.mm(a, b, out=out)
    while True:
        for a, b, out in mats:
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            dt = time.perf_counter() - t0
            best = max(best, 2 * a.shape[0] * a.shape[1] * b.shape[1] / dt / 1e9)
        if time.perf_counter() > end:
            return best


# ------------------------------------------------------------------------------------------------
# Machine


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags)
    except OSError:
        pass
    return ""


def machine_info() -> dict[str, str]:
    import timm

    return {
        "CPU": _cpu_model(),
        "CPU flags": _cpu_flags() or "n/a",
        "cores (os.cpu_count)": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "date (UTC)": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
    }


# ------------------------------------------------------------------------------------------------
# Report


@dataclass
class Row:
    """One comparison: peer and rectvit on the same work."""

    name: str
    setting: str
    peer: list[float] | None = None  # seconds per call
    ours: list[float] | None = None
    peer_flops: int | None = None
    ours_flops: int | None = None
    note: str = ""
    peer_label: str = "timm"


def _fmt_times(ts: list[float] | None) -> str:
    if not ts:
        return "–"
    med = statistics.median(ts) * 1e3
    digits = 2 if med < 10 else 1 if med < 100 else 0
    return f"{med:.{digits}f} ({min(ts) * 1e3:.{digits}f}–{max(ts) * 1e3:.{digits}f})"


def _fmt_gflops(flops: int | None, ts: list[float] | None, peak: float) -> str:
    if not flops or not ts:
        return "–"
    g = flops / statistics.median(ts) / 1e9
    return f"{g:.0f} ({100 * g / peak:.0f}%)"


def ratio(row: Row) -> float | None:
    """Throughput of rectvit over the peer's (> 1: rectvit is faster)."""
    if not row.peer or not row.ours:
        return None
    return statistics.median(row.peer) / statistics.median(row.ours)


def ratio_of_mins(row: Row) -> float | None:
    """The same ratio from the fastest run of each side (least disturbed by other work)."""
    if not row.peer or not row.ours:
        return None
    return min(row.peer) / min(row.ours)


@dataclass
class Section:
    title: str
    intro: str = ""
    rows: list[Row] = field(default_factory=list)
    peer_header: str = "peer"
    ours_header: str = "rectvit"
    extra: list[str] = field(default_factory=list)  # free markdown after the table


class Report:
    def __init__(self, header: str, machine: dict[str, str], peak: float):
        self.header = header
        self.machine = machine
        self.peak = peak
        self.sections: list[Section] = []

    def section(self, title: str, intro: str = "", peer_header: str = "timm ms", ours_header: str = "rectvit ms"):
        s = Section(title, intro, peer_header=peer_header, ours_header=ours_header)
        self.sections.append(s)
        return s

    def markdown(self) -> str:
        out = [self.header.rstrip(), "", "## Machine", "", "| | |", "|---|---|"]
        for k, v in self.machine.items():
            out.append(f"| {k} | {v} |")
        out.append(f"| fp32 matmul peak (measured, best torch.mm) | {self.peak:.0f} GFLOP/s |")
        for s in self.sections:
            out += ["", f"## {s.title}", ""]
            if s.intro:
                out += [s.intro.strip(), ""]
            if s.rows:
                out += [
                    f"| model | setting | {s.peer_header} median (min–max) | {s.ours_header} median (min–max) "
                    "| ratio rectvit/peer (medians) | ratio of mins | peer GFLOP/s (% peak) | rectvit GFLOP/s (% peak) "
                    "| runs | note |",
                    "|---|---|---|---|---|---|---|---|---|---|",
                ]
                for r in s.rows:
                    q, qm = ratio(r), ratio_of_mins(r)
                    out.append(
                        f"| {r.name} | {r.setting} | {_fmt_times(r.peer)} | {_fmt_times(r.ours)} | "
                        f"{'–' if q is None else f'{q:.3f}'} | {'–' if qm is None else f'{qm:.3f}'} | "
                        f"{_fmt_gflops(r.peer_flops, r.peer, self.peak)} | "
                        f"{_fmt_gflops(r.ours_flops, r.ours, self.peak)} | {len(r.ours or [])} | {r.note} |"
                    )
            if s.extra:
                out += [""] + s.extra
        return "\n".join(out) + "\n"

    def write(self, path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            f.write(self.markdown())
        os.replace(tmp, path)
