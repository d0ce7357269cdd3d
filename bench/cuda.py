"""``python -m bench --device cuda``: section (c) on a GPU, bf16 autocast, the issue-18 workload.

AST-Base (depth 12 by default) on 256 seeded spectrograms of 200–1024 frames (almost every length
distinct), random weights. Sides, each timed alternately in one process (CUDA-synchronised):

- ``padded bB``: every input zero-padded to 1024 frames, the static model in batches of B (32, 128);
- ``grouped``: ``forward_variable(..., packing=False)``, inputs grouped by shape (before packing);
- ``packed M``: ``forward_variable(..., max_tokens=M, max_batch=len(inputs))`` (varlen attention).

W = FLOPs of the padded batches / FLOPs of the packed forward (torch's FLOP counter). Targets
(issue 18): packed ≥ 0.85 W faster than the best padded batch size, and ≥ 5x faster than grouping.
A training step (forward + backward, padded b32 vs packed) is timed too. Unmeasured until a GPU
session runs it; ``scripts/cuda_pack_bench.py`` is the same entry point.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import rectvit

from .cases import spectrogram_inputs

__all__ = ["run_cuda"]


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _time(fns: dict[str, Callable[[], Any]], warmup: int, runs: int) -> dict[str, list[float]]:
    """Seconds per call, alternating A B A B ..., each call bracketed by CUDA synchronisation."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    _sync()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            _sync()
            t0 = time.perf_counter()
            fn()
            _sync()
            times[k].append(time.perf_counter() - t0)
    return times


def _flops(fn: Callable[[], Any]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _peak_mib(fn: Callable[[], Any]) -> float:
    if not torch.cuda.is_available():
        return float("nan")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def run_cuda(
    n: int = 256,
    depth: int = 12,
    pad_batches: tuple[int, ...] = (32, 128),
    budgets: tuple[int, ...] = (16384, 32768, 65536),
    warmup: int = 2,
    runs: int = 5,
    log: Callable[[str], None] = print,
    device: str = "cuda",
    **model_kw: Any,
) -> list[str]:
    """Markdown lines of the GPU table (and notes); raises ``RuntimeError`` without CUDA.

    ``device="cpu"`` (with small ``model_kw``) only dry-runs this code; its figures mean nothing.
    """
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda needs a CUDA device; none is available.")
    dev = torch.device(device)
    torch.manual_seed(0)
    model = rectvit.create_model("ast_base_patch16_s10_128x1024", depth=depth, **model_kw).to(dev).eval()
    xs = [x.to(dev) for x in spectrogram_inputs(n, 4, seed=0)]
    frames = model.img_size[1]
    amp = torch.autocast(dev.type, torch.bfloat16)
    log(f"cuda: AST depth {depth}, {n} inputs, {len({x.shape for x in xs})} distinct shapes")

    def padded(batch: int) -> Callable[[], Any]:
        def run():
            with torch.inference_mode(), amp:
                outs = [
                    model(torch.stack([F.pad(x, (0, frames - x.shape[-1])) for x in xs[s : s + batch]]))
                    for s in range(0, n, batch)
                ]
            return torch.cat(outs)

        return run

    def packed(budget: int) -> Callable[[], Any]:
        def run():
            with torch.inference_mode(), amp:
                return torch.stack(rectvit.forward_variable(model, xs, max_batch=n, max_tokens=budget))

        return run

    def grouped():
        with torch.inference_mode(), amp:
            return torch.stack(rectvit.forward_variable(model, xs, max_batch=max(pad_batches), packing=False))

    fns: dict[str, Callable[[], Any]] = {f"padded b{b}": padded(b) for b in pad_batches}
    fns |= {f"packed {m}": packed(m) for m in budgets}
    fns["grouped"] = grouped
    log("cuda: FLOPs and outputs")
    flops = {k: _flops(fn) for k, fn in fns.items()}
    outs = {k: fn() for k, fn in fns.items()}
    log("cuda: timing")
    times = _time(fns, warmup, runs)
    peaks = {k: _peak_mib(fn) for k, fn in fns.items()}

    gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "none (CPU dry run)"
    best_pad = min((k for k in fns if k.startswith("padded")), key=lambda k: statistics.median(times[k]))
    full = [i for i, x in enumerate(xs) if x.shape[-1] == frames]
    lines = [
        f"GPU: {gpu}, torch {torch.__version__}, bf16 autocast, "
        f"AST-Base depth {depth}, {n} spectrograms of {min(x.shape[-1] for x in xs)}–{frames} frames "
        f"({len({x.shape for x in xs})} distinct shapes). Median of {runs} runs after {warmup} warm-up rounds, "
        f"alternating. W = FLOPs of `{best_pad}` / FLOPs of the packed forward.",
        "",
        "| side | median ms (min–max) | GFLOP | speed-up vs best padded | of W | vs grouped | peak MiB | "
        "max \\|Δ\\| vs best padded (unpadded inputs) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k in fns:
        med = statistics.median(times[k])
        w = flops[best_pad] / flops[k] if k.startswith("packed") else None
        speed = statistics.median(times[best_pad]) / med
        diff = (outs[k][full].float() - outs[best_pad][full].float()).abs().max().item()
        lines.append(
            f"| {k} | {med * 1e3:.1f} ({min(times[k]) * 1e3:.1f}–{max(times[k]) * 1e3:.1f}) | "
            f"{flops[k] / 1e9:.0f} | {speed:.2f}× | {'–' if w is None else f'{speed / w:.2f} W (W {w:.2f})'} | "
            f"{statistics.median(times['grouped']) / med:.2f}× | {peaks[k]:.0f} | {diff:.1e} |"
        )
    lines += ["", *_train_lines(model, xs, frames, amp, budgets[len(budgets) // 2], warmup, runs, log)]
    return lines


def _train_lines(model, xs, frames, amp, budget, warmup, runs, log) -> list[str]:
    """One training step (forward + backward) over all inputs: padded batches of 32 vs packed chunks."""
    log("cuda: training step")
    trainee = copy.deepcopy(model).train()
    trainee.dynamic_img_size = True
    trainee.patch_embed.strict_img_size = False
    labels = (torch.arange(len(xs)) % trainee.num_classes).to(xs[0].device)
    tokens = [trainee.num_prefix_tokens + math.prod(trainee.feat_size(tuple(x.shape[-2:]))) for x in xs]
    chunks = rectvit.variable.plan_chunks(tokens, budget, len(xs))

    def padded():
        trainee.zero_grad(set_to_none=True)
        for s in range(0, len(xs), 32):
            batch = torch.stack([F.pad(x, (0, frames - x.shape[-1])) for x in xs[s : s + 32]])
            with amp:
                loss = F.cross_entropy(trainee(batch).float(), labels[s : s + 32])
            loss.backward()

    def packed():
        trainee.zero_grad(set_to_none=True)
        for c in chunks:
            with amp:
                loss = F.cross_entropy(trainee(rectvit.pack([xs[i] for i in c])).float(), labels[c])
            loss.backward()

    fns = {"train padded b32": padded, f"train packed {budget}": packed}
    flops = {k: _flops(fn) for k, fn in fns.items()}
    times = _time(fns, warmup, runs)
    peaks = {k: _peak_mib(fn) for k, fn in fns.items()}
    pad, pk = fns
    w = flops[pad] / flops[pk]
    speed = statistics.median(times[pad]) / statistics.median(times[pk])
    return [
        "| training step | median ms (min–max) | GFLOP | peak MiB |",
        "|---|---|---|---|",
        *(
            f"| {k} | {statistics.median(t) * 1e3:.1f} ({min(t) * 1e3:.1f}–{max(t) * 1e3:.1f}) | "
            f"{flops[k] / 1e9:.0f} | {peaks[k]:.0f} |"
            for k, t in times.items()
        ),
        "",
        f"Training: packed is {speed:.2f}× the padded step, {speed / w:.2f} W (W {w:.2f}).",
    ]
