"""The benchmark sections (a)-(f) and memory, each filling a section of the report from a plan."""

from __future__ import annotations

import json
import statistics
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

import rectvit

from .cases import build_case, max_diff
from .deploy import deploy_plan, deploy_rows
from .harness import Report, Row, Settings, time_alternating
from .memory import peak_memory_mib
from .native_training import native_rows

__all__ = ["default_plan", "run_plan"]

Log = Callable[[str], None]


def _size(s) -> str:
    return f"{s[0]}×{s[1]}"


def _overrides_note(case: dict[str, Any]) -> str:
    o = case.get("overrides")
    return "" if not o else " (" + ", ".join(f"{k}={v}" for k, v in o.items()) + ")"


def _hybrid_cases(quick: bool) -> list[dict[str, Any]]:
    """Rows for the first hybrid (ResNet-stem) ViT that both rectvit and timm know, if any."""
    try:
        import timm

        names = [n for n in rectvit.list_models("vit_*_r*") if timm.is_model(n)]
    except Exception:  # the hybrid family may be absent or half-written
        return []
    if not names:
        return []
    name = sorted(names, key=lambda n: ("tiny" not in n, "small" not in n, n))[0]
    ov = {"depth": 2} if quick else {}
    return [
        dict(kind="forward", model=name, img_size=[224, 224], batch=4, overrides=ov),
        dict(kind="forward", model=name, img_size=[448, 224], batch=2, overrides=ov),
    ]


def _family_cases(quick: bool) -> list[dict[str, Any]]:
    """One row per further family (CLIP / SigLIP towers, BEiT, Swin v2 CR) at a rectangular size, where registered."""
    rows = [
        ("vit_base_patch16_clip_224", [448, 224], 2, {"depth": 2}),
        ("vit_base_patch16_siglip_224", [256, 512], 2, {"depth": 2}),
        ("beitv2_base_patch16_224", [448, 224], 2, {"depth": 2}),
        ("swinv2_cr_tiny_224", [448, 224], 2, {"depths": [1, 1, 1, 1]}),
    ]
    known = set(rectvit.list_models())
    return [
        dict(kind="forward", model=m, img_size=s, batch=b, overrides=ov if quick else {})
        for m, s, b, ov in rows
        if m in known
    ]


def default_plan(
    quick: bool = False, compile_mode: str = "some", ast_depth: int = 2, n_spectrograms: int = 24
) -> dict[str, Any]:
    """What ``python -m bench`` runs. ``quick``: reduced depths and counts for a smoke run."""
    vit = [
        ("vit_tiny_patch16_224", [224, 224], 16),
        ("vit_small_patch16_224", [1024, 128], 4),
        ("vit_base_patch16_224", [1024, 128], 2),
        ("deit_small_distilled_patch16_224", [512, 128], 4),
    ]
    swin = [("swin_tiny_patch4_window7_224", [224, 224], 4), ("swin_tiny_patch4_window7_224", [448, 224], 2)]
    vit_ov = {"depth": 2} if quick else {}
    swin_ov = {"depths": [1, 1, 1, 1]} if quick else {}
    forward = [dict(kind="forward", model=m, img_size=s, batch=b, overrides=vit_ov) for m, s, b in vit]
    forward += [dict(kind="forward", model=m, img_size=s, batch=b, overrides=swin_ov) for m, s, b in swin]
    forward += _hybrid_cases(quick)
    forward += _family_cases(quick)
    if quick:
        forward = [forward[0], forward[4]] + forward[len(vit) + len(swin) :][:1]
    if compile_mode == "all":
        compiled = [dict(c, compile=True) for c in forward]
    elif compile_mode == "some" and not quick:
        compiled = [dict(c, compile=True) for c in forward if c["model"] in ("vit_tiny_patch16_224",)]
    else:
        compiled = []
    dynamic = [
        dict(kind="dynamic", model="vit_base_patch16_224", img_size=[1024, 128], batch=2, overrides=vit_ov),
        dict(
            kind="dynamic",
            model="vit_base_patch16_224",
            img_size=[1024, 128],
            build_size=[224, 224],
            batch=2,
            overrides=vit_ov,
        ),
        dict(kind="dynamic", model="vit_small_patch16_224", img_size=[224, 224], batch=8, overrides=vit_ov),
    ]
    if quick:
        dynamic = dynamic[:2]
    variable = dict(
        kind="variable",
        n=6 if quick else n_spectrograms,
        n_full=2,
        depth=2 if quick else ast_depth,
        seed=0,
    )
    return dict(
        forward=forward,
        compiled=compiled,
        dynamic=dynamic,
        variable=variable,
        resample=dict(embed_dim=768, targets=[[64, 8], [32, 32], [12, 101]], vit="vit_base_patch16_224"),
        memory=dict(
            forward=forward[:1] if quick else [c for c in forward if c["batch"] <= 4 and c["img_size"] != [224, 224]],
            variable=None if quick else variable,
        ),
        deploy=deploy_plan(quick),
        native=dict(quick=quick),
    )


# ------------------------------------------------------------------------------------------------


def _forward_rows(report: Report, settings: Settings, cases: list, compiled: list, log: Log) -> None:
    sec = report.section(
        "(a) Forward throughput vs timm",
        "Same architecture, same weights (timm's random-init state dict loaded into rectvit with "
        "`rectvit.load_checkpoint`), same input batch, `torch.inference_mode()`, fp32. "
        "Times are per batch; the ratio is rectvit's throughput over timm's (> 1: rectvit faster). "
        "`max |Δ|`: largest difference of the two models' outputs.",
    )
    for case in cases + compiled:
        name = case["model"] + _overrides_note(case)
        base = f"{_size(case['img_size'])}, batch {case['batch']}, "
        setting = base + ("torch.compile" if case.get("compile") else "eager")
        log(f"(a) {name} {setting}")
        try:
            t0 = time.perf_counter()
            built = build_case(case)
            times, flops, outs = time_alternating(
                built.fns, settings.warmup, settings.runs, count_flops=not case.get("compile")
            )
            note = f"max \\|Δ\\| {max_diff(outs['peer'], outs['ours']):.1e}"
            if case.get("compile"):
                eager = next((r for r in sec.rows if r.name == name and r.setting == base + "eager"), None)
                if eager is not None:
                    flops = {"peer": eager.peer_flops, "ours": eager.ours_flops}
                note += f"; compile + runs {time.perf_counter() - t0:.0f} s"
            sec.rows.append(Row(name, setting, times["peer"], times["ours"], flops["peer"], flops["ours"], note))
        except Exception as e:  # a row that cannot run is reported, not fatal
            log(traceback.format_exc())
            sec.rows.append(Row(name, setting, note=f"failed: {type(e).__name__}: {str(e)[:120]}"))


def _dynamic_rows(report: Report, settings: Settings, cases: list, log: Log) -> None:
    sec = report.section(
        "(b) Dynamic-size overhead",
        "rectvit with `dynamic_img_size=True` vs the static model at the same input size and weights. "
        "Row 1: both built at the input size (the table needs no resampling). Row 2: the dynamic model "
        "is built at 224×224 and runs 1024×128 inputs (its table resampled once, then cached); the "
        "static one had `set_input_size(1024×128)`. The ratio is static time / dynamic time "
        "(1.00 = no overhead); the note gives the overhead.",
        peer_header="static ms",
        ours_header="dynamic ms",
    )
    for case in cases:
        name = case["model"] + _overrides_note(case)
        setting = f"{_size(case['img_size'])}, batch {case['batch']}"
        if case.get("build_size"):
            setting += f", dynamic built at {_size(case['build_size'])}"
        log(f"(b) {name} {setting}")
        built = build_case(case)
        times, flops, outs = time_alternating(built.fns, settings.warmup, settings.runs)
        over = statistics.median(times["ours"]) / statistics.median(times["peer"]) - 1
        note = f"overhead {100 * over:+.1f}%; max \\|Δ\\| {max_diff(outs['peer'], outs['ours']):.1e}"
        sec.rows.append(Row(name, setting, times["peer"], times["ours"], flops["peer"], flops["ours"], note, "static"))


def _variable_rows(report: Report, settings: Settings, case: dict[str, Any], log: Log) -> dict[str, Any]:
    log(f"(c) AST variable-length, {case['n']} inputs, depth {case['depth']}")
    built = build_case(case)
    frames = built.facts["frames"]
    full = built.facts["full"]
    train_keys = ("train_padded", "train_packed")
    forward_fns = {k: f for k, f in built.fns.items() if k not in train_keys}
    times, flops, outs = time_alternating(forward_fns, settings.warmup, settings.runs)
    log("(c) training step, padded vs packed")
    train_fns = {k: built.fns[k] for k in train_keys}
    t_times, t_flops, _ = time_alternating(train_fns, settings.warmup, settings.runs)
    depth = built.facts["depth"]
    depth_note = "the real AST-Base config (12 blocks)" if depth == 12 else f"AST-Base with depth reduced to {depth}"
    groups = len(rectvit.variable.group_by_shape([torch.empty(1, 128, f) for f in frames]))
    budget = case.get("max_tokens")
    sec = report.section(
        "(c) Variable-length spectrograms (AST)",
        f"`ast_base_patch16_s10_128x1024` ({depth_note}, random weights shared by all sides), "
        f"{len(frames)} single-channel inputs 128 high, {min(frames)}–{max(frames)} frames wide "
        f"(seeded; {len(full)} are exactly 1024 frames; {groups} distinct shapes). "
        "Peers' way: pad every input to 1024 frames and run the fixed-size model in batches of 8. "
        "rectvit: `rectvit.forward_variable(model, inputs, max_batch=8"
        + ("" if budget is None else f", max_tokens={budget}")
        + ")`, which packs the inputs (`rectvit.pack`: one token sequence per chunk of up to 8 inputs, "
        "attention within each input, no padding). Times are for all inputs; the ratio is the other "
        "side's time / forward_variable time. **W** = FLOPs of the padded batches / FLOPs of the "
        "packed forward (the work padding adds; torch's FLOP counter), the ceiling of the speed-up; "
        "the note gives the speed-up as a fraction of W (target ≥ 0.95 W forward, ≥ 0.85 W training). "
        "`max |Δ|` compares outputs of the inputs that needed no padding (index "
        f"{', '.join(map(str, full))}); against grouping by shape it compares all outputs.",
        peer_header="other side ms",
        ours_header="rectvit packed ms",
    )

    def of_w(t_other, t_ours, f_other, f_ours) -> str:
        if not f_other or not f_ours:
            return ""
        w = f_other / f_ours
        speed = statistics.median(t_other) / statistics.median(t_ours)
        fast = min(t_other) / min(t_ours)
        return f"W {w:.2f}; speed-up {speed / w:.2f} W (mins {fast / w:.2f} W); "

    labels = {
        "hf": "HF transformers AST, padded",
        "ours_padded": "rectvit static AST, padded",
        "ours_grouped": "rectvit forward_variable grouped by shape (packing=False)",
    }
    for k, label in labels.items():
        if k not in times:
            continue
        only = None if k == "ours_grouped" else full
        note = of_w(times[k], times["ours"], flops[k], flops["ours"]) if k == "ours_padded" else ""
        note += f"max \\|Δ\\| {max_diff(outs['ours'], outs[k], only):.1e}"
        sec.rows.append(Row(label, f"{len(frames)} inputs", times[k], times["ours"], flops[k], flops["ours"], note, k))
    note = of_w(t_times["train_padded"], t_times["train_packed"], t_flops["train_padded"], t_flops["train_packed"])
    sec.rows.append(
        Row(
            "training step (forward + backward), rectvit padded vs packed",
            f"{len(frames)} inputs, chunks of 8",
            t_times["train_padded"],
            t_times["train_packed"],
            t_flops["train_padded"],
            t_flops["train_packed"],
            note.rstrip("; "),
            "train_padded",
        )
    )
    sec.extra.append(
        "Frames per input: " + ", ".join(map(str, frames)) + ". GFLOP/s counts each side's own work "
        "(the padded side computes the padding too), so the speed-up comes from work avoided."
    )
    return case


def _resample_rows(report: Report, settings: Settings, plan: dict[str, Any], log: Log) -> None:
    import timm
    from timm.layers import resample_abs_pos_embed

    c = plan["embed_dim"]
    sec = report.section(
        "(d) Cost of resampling position tables (ViT-B)",
        f"A 14×14×{c} table (ViT-B/16 at 224²) resampled bicubically with antialiasing: timm's "
        "`resample_abs_pos_embed` on the flat `(1, 1 + 196, C)` table vs `rectvit.resample_grid` on the "
        "`(1, 14, 14, C)` grid. `set_input_size`: the whole model switched between 224² and 1024×128 "
        "(one switch per call; timm's `VisionTransformer.set_input_size` vs ours).",
        peer_header="timm ms",
        ours_header="rectvit ms",
    )
    g = torch.Generator().manual_seed(0)
    table = torch.randn(1, 14, 14, c, generator=g)
    flat = torch.cat([torch.randn(1, 1, c, generator=g), table.reshape(1, 196, c)], dim=1)
    for target in plan["targets"]:
        target = tuple(target)
        log(f"(d) resample 14x14 -> {target}")
        fns = {
            "peer": lambda t=target: resample_abs_pos_embed(flat, list(t), old_size=[14, 14], num_prefix_tokens=1),
            "ours": lambda t=target: rectvit.resample_grid(table, t),
        }
        runs = max(settings.runs, 20) if not settings.quick else settings.runs
        times, _, outs = time_alternating(fns, settings.warmup, runs, count_flops=False)
        diff = (outs["peer"][:, 1:].reshape(outs["ours"].shape) - outs["ours"]).abs().max().item()
        sec.rows.append(
            Row("resample 14×14 →", _size(target), times["peer"], times["ours"], note=f"max \\|Δ\\| {diff:.1e}")
        )
    log("(d) set_input_size")
    torch.manual_seed(0)
    ov = plan.get("overrides", {"depth": 2} if settings.quick else {})
    peer = timm.create_model(plan["vit"], pretrained=False, **ov).eval()
    ours = rectvit.create_model(plan["vit"], **ov).eval()
    sizes = [(1024, 128), (224, 224)]
    state = {"peer": 0, "ours": 0}

    def switch(model, key):
        state[key] += 1
        model.set_input_size(img_size=sizes[state[key] % 2 - 1])

    fns = {"peer": lambda: switch(peer, "peer"), "ours": lambda: switch(ours, "ours")}
    runs = max(settings.runs, 20) if not settings.quick else settings.runs
    times, _, _ = time_alternating(fns, settings.warmup, runs, count_flops=False)
    sec.rows.append(Row(f"set_input_size, {plan['vit']}", "224² ↔ 1024×128", times["peer"], times["ours"]))


def _memory_rows(report: Report, plan: dict[str, Any], log: Log) -> None:
    """``plan``: ``{"forward": [cases], "variable": case or None}``."""
    sec = report.section(
        "Peak memory",
        "Extra resident memory of one call, peer vs rectvit, each measured in a fresh subprocess "
        "(`python -m bench.memory`): the case is built and run once, the kernel's peak-RSS mark reset "
        "(`/proc/self/clear_refs`), and the figure is peak RSS (`VmHWM`) minus the RSS before the call. "
        "`tracemalloc` cannot see torch's allocations, hence RSS. One warm-up call runs first, so the "
        "figure is a steady-state call's working memory (one-time workspaces and caches excluded); the "
        "subprocess sets `MALLOC_MMAP_THRESHOLD_=65536` and `MALLOC_TRIM_THRESHOLD_=0` so glibc returns "
        "every freed tensor to the OS and RSS follows live tensor memory.",
    )
    sec.extra.append("| case | peer | peer MiB | rectvit MiB | rectvit/peer |")
    sec.extra.append("|---|---|---|---|---|")
    cases = [(c, "peer", "timm", "ours") for c in plan.get("forward", []) if not c.get("compile")]
    if plan.get("variable"):
        v = plan["variable"]
        cases.append((v, "hf", "HF AST, padded", "ours"))
        cases.append((v, "ours_padded", "rectvit static AST, padded", "ours"))
        cases.append((v, "train_padded", "training step, padded (rectvit: packed)", "train_packed"))
    cache: dict[tuple[str, str], dict[str, Any]] = {}

    def measure(case: dict[str, Any], side: str) -> dict[str, Any]:
        key = (json.dumps(case, sort_keys=True), side)
        if key not in cache:
            cache[key] = peak_memory_mib(case, side)
        return cache[key]

    for case, side, peer_name, ours_side in cases:
        label = (
            f"(a) {case['model']} {_size(case['img_size'])} b{case['batch']}"
            if case["kind"] == "forward"
            else f"(c) AST depth {case['depth']}, {case['n']} inputs"
        )
        log(f"memory {label} {side}")
        p, o = measure(case, side), measure(case, ours_side)
        if p["peak_mib"] is None or o["peak_mib"] is None:
            sec.extra.append(f"| {label} | {peer_name} | {p['method']} | {o['method']} | – |")
            continue
        q = o["peak_mib"] / p["peak_mib"] if p["peak_mib"] > 0 else float("nan")
        sec.extra.append(f"| {label} | {peer_name} | {p['peak_mib']:.0f} | {o['peak_mib']:.0f} | {q:.2f} |")


def run_plan(report: Report, settings: Settings, plan: dict[str, Any], log: Log = print) -> None:
    """Run every section the plan names, adding them to ``report`` in order."""
    if plan.get("forward") or plan.get("compiled"):
        _forward_rows(report, settings, plan.get("forward", []), plan.get("compiled", []), log)
    if plan.get("dynamic"):
        _dynamic_rows(report, settings, plan["dynamic"], log)
    if plan.get("variable"):
        _variable_rows(report, settings, plan["variable"], log)
    if plan.get("resample"):
        _resample_rows(report, settings, plan["resample"], log)
    if plan.get("memory"):
        _memory_rows(report, plan["memory"], log)
    if plan.get("deploy"):
        deploy_rows(report, settings, plan["deploy"], log)
    if plan.get("native"):
        native_rows(report, plan["native"], log)
