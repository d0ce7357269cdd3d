"""``python -m bench.positions``: the aspect-ratio study of docs/POSITIONS.md.

Small ViTs of one size are trained with one budget on a position-dependent task at one rectangle,
each with a different position encoding, then evaluated at other sizes and aspect ratios (1:1 to
1:16 and 16:1, larger and smaller than the training input).

The task (after ``rectvit.demo``): 1-channel inputs of noise plus one 8x8 chirp; the class is which
of 4 x 4 cells (4 bands of the height x 4 segments of the width) holds it. The cells scale with the
input and the chirp does not, so the answer is the chirp's position *relative to the input's extent*.

Encodings (four trained models: the learned rows share one, and so do the three RoPE rows of each
kind, whose coordinate rules agree at the training grid and differ only at other grids):

- learned table + bicubic / + bilinear: a learned ``(1, h, w, C)`` table resampled to each grid
- sin-cos (fixed): the 2-D sin-cos table computed for each grid (patch-index coordinates)
- RoPE axial / mixed, with coordinates as patch indices (``none``), normalised per axis
  (``separate``, aspect ratio not encoded) or by the longer side (``max``, aspect encoded)

Trained weights are cached in ``bench/positions_weights.safetensors`` (rebuilt with ``--retrain``,
or when the cached run's settings differ). Results go to ``bench/positions_results.json``, the table
into docs/POSITIONS.md (between its result markers) and the plot to ``docs/positions.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import rectvit
from rectvit.layers.rope import rope_coords
from rectvit.models.registry import build_model, get_model_entry
from rectvit.resample import resample_grid

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "bench" / "positions_weights.safetensors"
RESULTS = ROOT / "bench" / "positions_results.json"
DOC = ROOT / "docs" / "POSITIONS.md"
PLOT = ROOT / "docs" / "positions.png"
START, END = "<!-- results:start -->", "<!-- results:end -->"

TRAIN_SIZE = (32, 128)  # H x W, 1:4; patch 8 -> grid 4 x 16
PATCH = 8
BANDS = SEGMENTS = 4
NUM_CLASSES = BANDS * SEGMENTS
EVENT = 8  # the chirp is 8 x 8 pixels at every input size
NOISE = 0.1
# (H, W): the training rectangle, then wider, squarer, taller; smaller and larger
EVAL_SIZES = [
    (32, 128),
    (64, 256),
    (32, 64),
    (32, 256),
    (32, 512),
    (64, 1024),
    (32, 32),
    (64, 64),
    (128, 128),
    (64, 32),
    (128, 32),
    (512, 32),
    (1024, 64),
]
MODEL = dict(embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, patch_size=PATCH, in_chans=1)
MODEL.update(num_classes=NUM_CLASSES, global_pool="token", dynamic_img_size=True)
TRAIN = dict(steps=4000, batch=32, lr=2e-3, seed=0)

# name -> (trained model, how it is used at other grids: a learned table's resampling or RoPE's
# coordinate normalisation). At the training grid the three RoPE rules give the same coordinates (the
# patch indices), so each RoPE kind is trained once and the rules differ only at other grids.
ROWS = {
    "learned + bicubic": ("learned", "bicubic"),
    "learned + bilinear": ("learned", "bilinear"),
    "sin-cos (fixed)": ("sincos", None),
    "RoPE axial, none": ("axial", "none"),
    "RoPE axial, separate": ("axial", "separate"),
    "RoPE axial, max": ("axial", "max"),
    "RoPE mixed, none": ("mixed", "none"),
    "RoPE mixed, separate": ("mixed", "separate"),
    "RoPE mixed, max": ("mixed", "max"),
}


def build(key: str, use: str | None = None) -> torch.nn.Module:
    """Model ``key`` at the training size, accepting any size (dynamic); ``use`` is RoPE's normalisation."""
    if key in ("learned", "sincos"):
        pos = "learn" if key == "learned" else "sincos"
        return rectvit.create_model("vit_tiny_patch16_224", img_size=TRAIN_SIZE, pos_embed=pos, **MODEL)
    grid = (TRAIN_SIZE[0] // PATCH, TRAIN_SIZE[1] // PATCH)
    name = f"vit_small_patch16_rope{'_mixed' if key == 'mixed' else ''}_224"
    entry = get_model_entry(name)
    overrides = dict(
        img_size=TRAIN_SIZE,
        init_values=None,  # None is a value here: create_model, as timm's, would drop it as "not given"
        rope_normalize_coords=None if use in (None, "none") else use,
        ref_feat_shape=grid,  # the training grid: there, every rule's coordinates are the patch indices
        **MODEL,
    )
    return build_model(entry.cls, entry.config, overrides, name)


# --------------------------------------------------------------------------------------------------
# The task


def _chirp() -> torch.Tensor:
    i = torch.arange(EVENT, dtype=torch.float32)
    return torch.exp(-((i[:, None] - (EVENT - 1 - i[None, :])) ** 2) / 0.8) * 2.5  # a rising diagonal


def make_batch(n: int, size: tuple[int, int], g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, 1, H, W)`` inputs and labels ``band * SEGMENTS + segment`` (the chirp lies inside its cell)."""
    h, w = size
    ch, cw = h // BANDS, w // SEGMENTS
    x = torch.randn(n, 1, h, w, generator=g) * NOISE
    band = torch.randint(0, BANDS, (n,), generator=g)
    seg = torch.randint(0, SEGMENTS, (n,), generator=g)
    dy = torch.randint(0, ch - EVENT + 1, (n,), generator=g)
    dx = torch.randint(0, cw - EVENT + 1, (n,), generator=g)
    chirp = _chirp()
    for i in range(n):
        y0, x0 = int(band[i]) * ch + int(dy[i]), int(seg[i]) * cw + int(dx[i])
        x[i, 0, y0 : y0 + EVENT, x0 : x0 + EVENT] += chirp
    return x, band * SEGMENTS + seg


def train(key: str, steps: int, batch: int, lr: float, seed: int, log: Callable[[str], None]) -> dict:
    """Train model ``key`` from ``seed`` on the training rectangle (AdamW, warm-up, cosine); its state dict."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)  # the same data for every encoding
    model = build(key).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    t0, running = time.perf_counter(), None
    for step in range(steps):
        x, y = make_batch(batch, TRAIN_SIZE, g)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if (step + 1) % max(1, steps // 5) == 0:
            log(f"  {key}: step {step + 1}/{steps}  loss {running:.3f}  ({time.perf_counter() - t0:.0f} s)")
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------------------------------
# Evaluation


def at_size(models: dict, key: str, use: str | None, size: tuple[int, int]) -> torch.nn.Module:
    """Trained model ``key`` for inputs of ``size``: a learned table resampled with ``use`` (bicubic: the
    dynamic default), RoPE with the normalisation ``use``."""
    model = models[key]
    if key == "sincos" or use == "bicubic" or (key != "learned" and use == "none"):
        return model
    adapted = build(key, use).eval()
    adapted.load_state_dict(model.state_dict())
    if key == "learned":
        grid = (size[0] // PATCH, size[1] // PATCH)
        with torch.no_grad():
            adapted.pos_embed = torch.nn.Parameter(resample_grid(model.pos_embed, grid, interpolation=use))
    return adapted


@torch.no_grad()
def evaluate(model: torch.nn.Module, size: tuple[int, int], n: int, seed: int, batch: int = 128) -> float:
    g = torch.Generator().manual_seed(seed)
    correct = 0
    for start in range(0, n, batch):
        x, y = make_batch(min(batch, n - start), size, g)
        correct += int((model(x).argmax(-1) == y).sum())
    return correct / n


def _ratio(size) -> str:
    h, w = size
    return f"{h // math.gcd(h, w)}:{w // math.gcd(h, w)}"


def _label(size) -> str:
    return f"{size[0]}x{size[1]} ({_ratio(size)})"


# --------------------------------------------------------------------------------------------------
# Output


def table_lines(results: dict) -> list[str]:
    sizes = [tuple(s) for s in results["sizes"]]
    acc = results["accuracy"]
    lines = ["| input H×W (ratio) | grid | " + " | ".join(ROWS) + " |", "| --- | --- |" + " --- |" * len(ROWS)]
    for i, s in enumerate(sizes):
        cells = []
        best = max(acc[r][i] for r in ROWS)
        for r in ROWS:
            v = acc[r][i]
            cells.append(f"**{v:.2f}**" if v == best else f"{v:.2f}")
        mark = " (train)" if s == TRAIN_SIZE else ""
        lines.append(f"| {_label(s)}{mark} | {s[0] // PATCH}×{s[1] // PATCH} | " + " | ".join(cells) + " |")
    others = [i for i, s in enumerate(sizes) if s != TRAIN_SIZE]
    means = [sum(acc[r][i] for i in others) / len(others) for r in ROWS]
    lines.append("| mean, all but the training size | | " + " | ".join(f"{m:.2f}" for m in means) + " |")
    return lines


def write_doc(results: dict) -> None:
    s = results["settings"]
    block = [
        START,
        f"Settings: {s['steps']} steps × batch {s['batch']} (AdamW, lr {s['lr']}, seed {s['seed']}), "
        f"{s['n_eval']} fresh inputs per size (seed {s['eval_seed']}); parameters per model: "
        + ", ".join(f"{k} {v}" for k, v in results["params"].items())
        + f"; training {results['train_seconds']:.0f} s (when the weights were trained), evaluation "
        f"{results['eval_seconds']:.0f} s "
        f"({results['threads']} thread(s)). Chance is {1 / NUM_CLASSES:.2f}; the best cell of each row is bold.",
        "",
        *table_lines(results),
        "",
        "![accuracy per input size and position encoding](positions.png)",
        END,
    ]
    text = DOC.read_text() if DOC.exists() else f"# Positions at other aspect ratios\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    DOC.write_text(head + "\n".join(block) + tail)


def write_plot(results: dict) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    sizes = [tuple(s) for s in results["sizes"]]
    fig = plt.figure(figsize=(15, 6))
    spec = fig.add_gridspec(3, 2, width_ratios=[2.3, 1])
    ax = fig.add_subplot(spec[:, 0])
    for r in ROWS:
        style = "--" if "mixed" in r else (":" if r.startswith(("learned", "sin")) else "-")
        ax.plot(range(len(sizes)), results["accuracy"][r], style, marker="o", ms=3, label=r)
    ax.set_xticks(range(len(sizes)), [_label(s) for s in sizes], rotation=55, ha="right", fontsize=8)
    ax.axhline(1 / NUM_CLASSES, color="grey", lw=0.8)
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"trained at {TRAIN_SIZE[0]}x{TRAIN_SIZE[1]} ({_ratio(TRAIN_SIZE)}), evaluated at other sizes")
    ax.legend(fontsize=7, ncol=3, loc="upper right")
    # What each normalisation does to the coordinates of a 4 x 16 grid (centred, DINOv3 style).
    for row, norm in enumerate(["separate", "max", "min"]):
        bx = fig.add_subplot(spec[row, 1])
        c = rope_coords((4, 16), "centered", norm)
        bx.scatter(c[:, 1], -c[:, 0], s=10)
        bx.set_aspect("equal")
        bx.set_xlim(-1.2, 7.2)
        bx.set_ylim(-1.3, 1.3)
        bx.set_title(f"RoPE coordinates of a 4x16 grid, normalize={norm!r}", fontsize=8)
        bx.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)
    return PLOT


# --------------------------------------------------------------------------------------------------
# The run


def run(retrain: bool = False, n_eval: int = 256, threads: int = 1, log: Callable[[str], None] = print) -> dict:
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(threads)
    settings = dict(TRAIN, model=MODEL, train_size=list(TRAIN_SIZE))
    keys = list(dict.fromkeys(k for k, _ in ROWS.values()))
    cached, previous = {}, {}
    if WEIGHTS.exists() and not retrain:
        flat = load_file(str(WEIGHTS))
        previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        meta = previous.get("settings", {})
        if {k: meta.get(k) for k in settings} == json.loads(json.dumps(settings)):
            for key in keys:
                sd = {n.split("/", 1)[1]: v for n, v in flat.items() if n.startswith(key + "/")}
                if sd:
                    cached[key] = sd
    t0 = time.perf_counter()
    states = {}
    for key in keys:
        if key in cached:
            states[key] = cached[key]
            continue
        log(f"training {key} ({TRAIN['steps']} steps) ...")
        states[key] = train(key, log=log, **TRAIN)
    train_seconds = time.perf_counter() - t0
    if len(cached) < len(keys):
        flat = {f"{k}/{n}": v.contiguous() for k, sd in states.items() for n, v in sd.items()}
        save_file(flat, str(WEIGHTS))
    models = {}
    for key in keys:
        models[key] = build(key).eval()
        models[key].load_state_dict(states[key])

    t1 = time.perf_counter()
    eval_seed = 1_000_003
    acc = {r: [] for r in ROWS}
    for i, size in enumerate(EVAL_SIZES):
        for r, (key, use) in ROWS.items():
            acc[r].append(evaluate(at_size(models, key, use, size), size, n_eval, eval_seed + i))
        log(f"{_label(size):>20}: " + "  ".join(f"{acc[r][-1]:.2f}" for r in ROWS))
    results = dict(
        settings=dict(settings, n_eval=n_eval, eval_seed=eval_seed),
        sizes=[list(s) for s in EVAL_SIZES],
        accuracy=acc,
        params={k: sum(p.numel() for p in m.parameters()) for k, m in models.items()},
        train_seconds=train_seconds if len(cached) < len(keys) else previous.get("train_seconds", 0.0),
        eval_seconds=time.perf_counter() - t1,
        threads=threads,
    )
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    write_doc(results)
    plot = write_plot(results)
    log("\n".join(table_lines(results)))
    log(f"wrote {RESULTS.name}, {DOC.name}" + (f", {plot.name}" if plot else " (no matplotlib: no plot)"))
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.positions", description=__doc__.split("\n\n")[0])
    p.add_argument("--retrain", action="store_true", help="train every model again instead of using the cache")
    p.add_argument("--n-eval", type=int, default=256, help="fresh inputs per size and row (default 256)")
    p.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("POSITIONS_THREADS", 1)),
        help="torch threads (default 1: fastest for models this small)",
    )
    a = p.parse_args(argv)
    run(retrain=a.retrain, n_eval=a.n_eval, threads=a.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
