"""Section (e): deployment. Compile time and graph counts of dynamic-size models over several sizes
(rectvit vs timm's ``dynamic_img_size=True``), and onnxruntime throughput of rectvit's ONNX export vs
eager torch."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import rectvit

from .harness import Report, Row, Settings, time_alternating

__all__ = ["deploy_plan", "deploy_rows"]

Log = Callable[[str], None]

SIZES = [(224, 160), (128, 512), (320, 96), (160, 224), (512, 64)]


def deploy_plan(quick: bool) -> dict[str, Any]:
    return dict(
        model="vit_small_patch16_224",
        overrides={"depth": 2} if quick else {"depth": 4},
        backend="aot_eager" if quick else "inductor",
        sizes=SIZES,
        onnx=[((224, 224), 4), ((1024, 128), 2)],
    )


def _compile_over_sizes(model: torch.nn.Module, sizes, backend: str) -> tuple[float, int, float]:
    """Seconds for the first call at each size under ``torch.compile(dynamic=True)``, graphs compiled,
    largest difference to eager."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, backend=backend, dynamic=True)
    worst, start = 0.0, time.perf_counter()
    with torch.inference_mode():
        for h, w in sizes:
            x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(h * w))
            out = compiled(x)
            worst = max(worst, (out - model(x)).abs().max().item())
    seconds = time.perf_counter() - start
    graphs = int(counters["stats"]["unique_graphs"])
    torch._dynamo.reset()
    return seconds, graphs, worst


def _compile_rows(report: Report, plan: dict[str, Any], log: Log) -> None:
    import timm

    sec = report.section(
        "(e) Deployment: torch.compile over many sizes, ONNX",
        f"`torch.compile(model, dynamic=True, backend={plan['backend']!r})` of a `dynamic_img_size=True` "
        f"{plan['model']} ({plan['overrides']}), first call at each of {len(plan['sizes'])} sizes "
        f"({', '.join(f'{h}×{w}' for h, w in plan['sizes'])}) under `torch.inference_mode()`: the time is "
        "compilation plus one forward per size, once (no repeats); `graphs` counts compiled graphs "
        "(torch._dynamo's unique_graphs). ONNX rows: rectvit's dynamic export (`rectvit.export.export_onnx`) in "
        "onnxruntime (CPU provider) vs the same model in eager torch, one dynamic file for both sizes.",
        peer_header="timm / torch eager ms",
        ours_header="rectvit / onnxruntime ms",
    )
    ov = plan["overrides"]
    torch.manual_seed(0)
    peer = timm.create_model(plan["model"], pretrained=False, dynamic_img_size=True, **ov).eval()
    ours = rectvit.create_model(plan["model"], dynamic_img_size=True, **ov).eval()
    rectvit.load_checkpoint(ours, peer.state_dict(), source_grid=ours.grid_size)  # random table: grid given
    log(f"(e) compile timm {plan['model']}")
    t_peer, g_peer, d_peer = _compile_over_sizes(peer, plan["sizes"], plan["backend"])
    log(f"(e) compile rectvit {plan['model']}")
    t_ours, g_ours, d_ours = _compile_over_sizes(ours, plan["sizes"], plan["backend"])
    note = (
        f"graphs: timm {g_peer}, rectvit {g_ours}; max \\|compiled − eager\\| timm {d_peer:.1e}, rectvit {d_ours:.1e}"
    )
    sec.rows.append(Row(f"compile, {len(plan['sizes'])} sizes", plan["backend"], [t_peer], [t_ours], note=note))
    sec.extra.append(
        f"Compile over {len(plan['sizes'])} sizes: timm {t_peer:.1f} s ({g_peer} graphs), "
        f"rectvit {t_ours:.1f} s ({g_ours} graphs), ratio {t_peer / t_ours:.2f}×."
    )
    return ours, sec


def _onnx_rows(report: Report, settings: Settings, plan: dict[str, Any], model, sec, log: Log) -> None:
    try:
        import onnxruntime as ort

        from rectvit.export import export_onnx
    except ImportError as e:
        sec.extra.append(f"ONNX rows skipped: {e} (pip install 'rectvit[export]').")
        return
    with tempfile.TemporaryDirectory() as tmp:
        log("(e) ONNX export")
        start = time.perf_counter()
        info = export_onnx(model, Path(tmp) / "m.onnx")
        export_s = time.perf_counter() - start
        session = ort.InferenceSession(str(info.path), providers=["CPUExecutionProvider"])
        for (h, w), batch in plan["onnx"]:
            log(f"(e) onnxruntime {h}x{w}")
            x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(0))
            feed = {"pixel_values": x.numpy()}
            fns = {"peer": lambda x=x: model(x), "ours": lambda feed=feed: session.run(None, feed)[0]}
            times, _, outs = time_alternating(fns, settings.warmup, settings.runs, count_flops=False)
            diff = abs(torch.from_numpy(outs["ours"]) - outs["peer"]).max().item()
            sec.rows.append(
                Row(
                    "onnxruntime vs eager",
                    f"{h}×{w}, batch {batch}",
                    times["peer"],
                    times["ours"],
                    note=f"max \\|Δ\\| {diff:.1e}",
                    peer_label="torch eager",
                )
            )
    sec.extra.append(f"ONNX export (dynamo exporter, opset {info.opset}) took {export_s:.1f} s.")


def deploy_rows(report: Report, settings: Settings, plan: dict[str, Any], log: Log = print) -> None:
    """Fill section (e) of ``report``."""
    model, sec = _compile_rows(report, plan, log)
    _onnx_rows(report, settings, plan, model, sec, log)
