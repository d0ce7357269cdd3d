"""Regenerate ``tests/grid_tables/``: flat position tables of small trained ViTs, with their true grids.

The grid tests (tests/test_grid_tables.py) judge rectvit's grid evidence on genuinely trained tables,
not on a generator a rule could be tuned to. This script trains small ViTs (rectvit's own
``VisionTransformer``: patch 4, width 32, 2 blocks, max pooling, 1-channel inputs; AdamW, one-cycle
schedule, batch 32) on CPU on three position tasks, each input being noise plus Gaussian blobs:

- ``absolute``: the class is the cell (2 along the short side x 4 along the long side) holding the blob;
- ``periodic``: the class is the blob's phase within a layout that repeats 4 times along the long side
  (4 phases), and which half of the short side it is in: tables periodic along one axis, as the demo's;
- ``relative``: a positive and a negative blob; the class is the direction from one to the other
  (8 sectors): only relative positions matter.

Each is trained at the grids ``GRIDS`` (strips, rectangles, a square) from every seed in ``SEEDS``
(60 models; 55 learn their task, test accuracy 0.62-0.99; five stay near chance and are kept as
what a failed run leaves). Every trained table, rounded to float16 as stored, yields derived tables
(families): a crop, a bicubic resample (rectvit's ``resample_grid``), and the table plus a synthetic
component: periodic along one axis, banded (piecewise constant along one axis), a checkerboard, or a
mix of the three. Random-init tables (timm's trunc-normal 0.02, 192 channels) plus a checkerboard, and
the demo's table (``src/rectvit/data/demo_vit.safetensors``) with its crops and derived tables,
complete the set.

Split (fixed; docs/checkpoints.md): everything from seed 0 and the demo's tables is the TUNING part
(``tuning.safetensors``); seeds 1, 2 and 3 are the HELD-OUT part (``heldout.safetensors``), which no
rule or constant may be tuned on. Each file stores every table flat, ``(P + h*w, C)`` in float16, and
its metadata ``tables`` (JSON) gives per key the true ``grid``, ``prefix`` rows, ``family``, ``what``
was done, ``task``, ``seed``, ``base`` (the trained table it derives from) and the model's accuracy.

    python scripts/gen_grid_tables.py              # about 11 CPU-minutes: 5-6 minutes on 2 quiet cores
    python scripts/gen_grid_tables.py --check      # retrain and compare with the stored files
    python scripts/gen_grid_tables.py --rederive   # the families again from the stored trained tables

Training is deterministic on CPU with one thread per model, for a given torch build.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from multiprocessing import Pool
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "grid_tables"
DEMO = ROOT / "src" / "rectvit" / "data" / "demo_vit.safetensors"

GRIDS = [(4, 32), (8, 32), (6, 10), (14, 14), (16, 8)]
TASKS = ("absolute", "periodic", "relative")
SEEDS = (0, 1, 2, 3)
TUNING_SEEDS = (0,)
PATCH, DIM, DEPTH, HEADS = 4, 32, 2, 2
BATCH = 32
SCHEDULE = {"absolute": (200, 1e-2), "periodic": (200, 1e-2), "relative": (400, 5e-3)}  # steps, peak lr
BLOB_SIGMA = 0.75  # in patches
NOISE = 0.1


# ---- the tasks ----


def _blobs(n: int, size: tuple[int, int], g: torch.Generator) -> torch.Tensor:
    """``n`` blob centres ``(n, 2)`` in patch units (y, x), uniform over the grid ``size``."""
    return torch.rand(n, 2, generator=g) * torch.tensor(size, dtype=torch.float32)


def _render(centres: list[torch.Tensor], signs: list[float], grid: tuple[int, int]) -> torch.Tensor:
    """Images ``(n, 1, h*PATCH, w*PATCH)``: one Gaussian blob per centre (patch units) with its sign."""
    h, w = grid
    yy = (torch.arange(h * PATCH, dtype=torch.float32) + 0.5) / PATCH
    xx = (torch.arange(w * PATCH, dtype=torch.float32) + 0.5) / PATCH
    img = 0
    for c, s in zip(centres, signs):
        dy = (yy[None, :] - c[:, :1]) ** 2  # (n, H)
        dx = (xx[None, :] - c[:, 1:]) ** 2  # (n, W)
        img = img + s * torch.exp(-(dy[:, :, None] + dx[:, None, :]) / (2 * BLOB_SIGMA**2))
    return img.unsqueeze(1)


def make_batch(n: int, grid: tuple[int, int], task: str, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``(n, 1, h*PATCH, w*PATCH)`` and labels in ``range(8)`` of ``task`` at ``grid``."""
    h, w = grid
    long_axis = 1 if w >= h else 0
    a = _blobs(n, grid, g)
    size = torch.tensor(grid, dtype=torch.float32)
    frac = (a / size).clamp(max=1 - 1e-6)  # position in [0, 1) along each axis
    if task == "absolute":
        label = (frac[:, 1 - long_axis] * 2).long() * 4 + (frac[:, long_axis] * 4).long()
        centres, signs = [a], [1.0]
    elif task == "periodic":
        phase = (frac[:, long_axis] * 4) % 1  # 4 repeats of the layout along the long side
        label = (frac[:, 1 - long_axis] * 2).long() * 4 + (phase * 4).long()
        centres, signs = [a], [1.0]
    elif task == "relative":
        b = _blobs(n, grid, g)
        d = b - a
        tiny = d.norm(dim=1) < 1.0  # keep the blobs a patch apart: push b one patch along a random direction
        ang = torch.rand(n, generator=g) * 2 * math.pi
        d = torch.where(tiny[:, None], torch.stack([ang.sin(), ang.cos()], 1), d)
        b = a + d
        angle = torch.atan2(d[:, 0], d[:, 1])
        label = (((angle + math.pi) / (2 * math.pi)) * 8).long().clamp(max=7)
        centres, signs = [a, b], [1.0, -1.0]
    else:
        raise ValueError(task)
    x = _render(centres, signs, grid) + NOISE * torch.randn(n, 1, h * PATCH, w * PATCH, generator=g)
    return x, label


def train_table(job: tuple[str, tuple[int, int], int]) -> tuple[str, tuple[int, int], int, torch.Tensor, float]:
    """Train one ViT on ``(task, grid, seed)``; return its flat ``(1 + h*w, C)`` table and test accuracy."""
    import rectvit

    task, grid, seed = job
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(10_000 * seed + 100 * TASKS.index(task) + GRIDS.index(grid))
    model = rectvit.create_model(
        "vit_tiny_patch16_224",
        img_size=(grid[0] * PATCH, grid[1] * PATCH),
        patch_size=PATCH,
        in_chans=1,
        num_classes=8,
        embed_dim=DIM,
        depth=DEPTH,
        num_heads=HEADS,
        mlp_ratio=2.0,
        global_pool="max",
    )
    steps, lr = SCHEDULE[task]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    for _ in range(steps):
        x, y = make_batch(BATCH, grid, task, g)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        x, y = make_batch(512, grid, task, g)
        acc = (model(x).argmax(-1) == y).float().mean().item()
        flat = torch.cat([model.prefix_pos_embed[0], model.pos_embed[0].reshape(-1, DIM)])
    return task, grid, seed, flat.clone(), acc


# ---- derived tables ----


def _rms(t: torch.Tensor) -> float:
    return (t - t.mean(0)).pow(2).sum(-1).mean().sqrt().item()


def _component(kind: str, grid: tuple[int, int], dim: int, g: torch.Generator) -> tuple[torch.Tensor, str]:
    """A synthetic ``(h, w, dim)`` component of unit RMS (per position) and a description of it."""
    h, w = grid
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    axis = int(torch.randint(0, 2, (1,), generator=g))
    coord, length = (yy, h) if axis == 0 else (xx, w)
    if kind == "periodic":
        period = int(torch.randint(2, max(3, min(9, length // 2 + 1)), (1,), generator=g))
        phase = torch.rand(2, dim, generator=g) * 2 * math.pi
        arg = 2 * math.pi * coord[..., None].float() / period
        c = torch.sin(arg + phase[0]) + torch.cos(arg + phase[1])
        what = f"period {period} along {'yx'[axis]}"
    elif kind == "banded":
        band = int(torch.randint(2, max(3, min(6, length // 2 + 1)), (1,), generator=g))
        vectors = torch.randn((length + band - 1) // band, dim, generator=g)
        c = vectors[coord // band]
        what = f"bands of {band} along {'yx'[axis]}"
    elif kind == "checkerboard":
        c = ((-1.0) ** (yy + xx))[..., None] * torch.randn(dim, generator=g)
        what = "checkerboard"
    else:
        raise ValueError(kind)
    c = c - c.reshape(-1, dim).mean(0)
    return c / max(_rms(c.reshape(-1, dim)), 1e-12), what


def derived(base_key: str, flat: torch.Tensor, grid: tuple[int, int]) -> list[tuple[str, dict, torch.Tensor]]:
    """``(key, info, flat table)`` of every family derived from one trained table (itself included): one
    crop, one bicubic resample, and the table plus a periodic, a banded, a checkerboard component or a mix."""
    from rectvit.resample import resample_grid

    g = torch.Generator().manual_seed(hash_key(base_key))
    h, w = grid
    prefix, rows = flat[:1], flat[1:]
    table = rows.reshape(h, w, -1)
    dim = table.shape[-1]
    out = [(base_key, {"family": "trained", "grid": [h, w], "what": "as trained"}, flat)]

    def add(family: str, new: torch.Tensor, what: str) -> None:
        nh, nw = new.shape[:2]
        info = {"family": family, "grid": [nh, nw], "what": what}
        out.append((f"{base_key}/{family}", info, torch.cat([prefix, new.reshape(nh * nw, dim)])))

    def pick(options: list) -> tuple:
        return options[int(torch.randint(0, len(options), (1,), generator=g))]

    def amplitude() -> float:
        return round(0.5 + torch.rand(1, generator=g).item(), 2)  # 0.5 to 1.5 times the table's RMS

    ch, cw = pick(
        [(max(2, (h + 1) // 2), w), (h, max(2, (3 * w + 3) // 4)), (max(2, (3 * h + 3) // 4), max(2, w // 2))]
    )
    y0 = int(torch.randint(0, h - ch + 1, (1,), generator=g))
    x0 = int(torch.randint(0, w - cw + 1, (1,), generator=g))
    add("crop", table[y0 : y0 + ch, x0 : x0 + cw], f"rows {y0}:{y0 + ch}, cols {x0}:{x0 + cw}")
    sy, sx = pick([(1.25, 1.0), (1.0, 0.75), (0.75, 1.25), (0.75, 0.75)])
    size = (max(2, round(h * sy)), max(2, round(w * sx)))
    add("resample", resample_grid(table[None], size)[0], f"bicubic {h}x{w} -> {size[0]}x{size[1]}")
    scale = _rms(rows)
    for family in ("periodic", "banded", "checkerboard"):
        c, what = _component(family, grid, dim, g)
        amp = amplitude()
        add(family, table + amp * scale * c, f"{what}, {amp} x the table's RMS")
    mix = [(*_component(kind, grid, dim, g), amplitude()) for kind in ("periodic", "checkerboard", "banded")]
    add("mixed", table + scale * sum(a * c for c, _, a in mix), "; ".join(f"{w_}, {a} x RMS" for _, w_, a in mix))
    return out


def hash_key(key: str) -> int:
    """A stable seed from a key (Python's ``hash`` of a str varies between runs)."""
    return int.from_bytes(key.encode(), "little") % (2**61 - 1)


def random_init_checkerboards(seed: int) -> list[tuple[str, dict, torch.Tensor]]:
    """Untrained tables (timm's trunc normal 0.02, a class row first) plus a strong checkerboard."""
    out = []
    for grid in ((14, 14), (8, 8)):
        key = f"random/{grid[0]}x{grid[1]}/s{seed}"
        g = torch.Generator().manual_seed(hash_key(key))
        flat = torch.nn.init.trunc_normal_(torch.empty(1 + grid[0] * grid[1], DIM * 6), std=0.02, generator=g)
        c, what = _component("checkerboard", grid, DIM * 6, g)
        flat[1:] += 2 * _rms(flat[1:]) * c.reshape(-1, DIM * 6)
        out.append((key, {"family": "random+checkerboard", "grid": list(grid), "what": f"{what}, 2 x RMS"}, flat))
    return out


def demo_tables() -> list[tuple[str, dict, torch.Tensor]]:
    """The demo checkpoint's trained 8x32 table and its derived tables (the issue's concrete failures)."""
    sd = load_file(str(DEMO))
    table = sd["pos_embed"][0]
    flat = torch.cat([sd["prefix_pos_embed"][0], table.reshape(-1, table.shape[-1])])
    out = derived("demo/8x32", flat, (8, 32))
    extra = [(4, 32), (5, 28), (7, 32), (8, 16), (6, 24)]  # the crops among them
    for ch, cw in extra:
        key = f"demo/8x32/crop/{ch}x{cw}"
        out.append((key, {"family": "crop", "grid": [ch, cw], "what": f"rows 0:{ch}, cols 0:{cw}"},
                    torch.cat([flat[:1], table[:ch, :cw].reshape(ch * cw, -1)])))  # fmt: skip
    for info in (i for _, i, _ in out):
        info.update(task="demo (chirp band x time segment)", seed=0, acc=None)
    return out


def train_all(workers: int) -> list[tuple[str, tuple[int, int], int, torch.Tensor, float]]:
    jobs = [(task, grid, seed) for seed in SEEDS for task in TASKS for grid in GRIDS]
    t0 = time.perf_counter()
    with Pool(workers) as pool:
        trained = pool.map(train_table, jobs, chunksize=1)
    print(f"trained {len(jobs)} models in {time.perf_counter() - t0:.0f} s")
    return trained


def stored_trained() -> list[tuple[str, tuple[int, int], int, torch.Tensor, float]]:
    """The trained tables (and accuracies) of the stored files, to derive the families again without training."""
    out = []
    for part in ("tuning", "heldout"):
        with safe_open(str(OUT / f"{part}.safetensors"), "pt") as f:
            meta = json.loads(f.metadata()["tables"])
            for key, info in meta.items():
                if info["family"] == "trained" and info["task"] in TASKS:
                    out.append(
                        (info["task"], tuple(info["grid"]), info["seed"], f.get_tensor(key).float(), info["acc"])
                    )
    return out


def build(trained) -> dict[str, tuple[dict, torch.Tensor]]:
    tables = {}
    for task, grid, seed, flat, acc in sorted(trained, key=lambda t: (t[2], TASKS.index(t[0]), GRIDS.index(t[1]))):
        base = f"{task}/{grid[0]}x{grid[1]}/s{seed}"
        print(f"  {base:24s} accuracy {acc:.2f}")
        flat = flat.to(torch.float16).float()  # the stored table: the families derive from it exactly
        for key, info, t in derived(base, flat, grid):
            tables[key] = ({**info, "task": task, "seed": seed, "base": base, "acc": round(acc, 3)}, t)
    for seed in SEEDS:
        for key, info, t in random_init_checkerboards(seed):
            tables[key] = ({**info, "task": "none (random init)", "seed": seed, "base": key, "acc": None}, t)
    for key, info, t in demo_tables():
        tables[key] = ({**info, "base": "demo/8x32"}, t)
    return tables


def split(tables: dict) -> dict[str, dict]:
    parts = {"tuning": {}, "heldout": {}}
    for key, (info, t) in tables.items():
        parts["tuning" if info["seed"] in TUNING_SEEDS else "heldout"][key] = (info, t)
    return parts


def write(tables: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, part in split(tables).items():
        tensors = {k: t.to(torch.float16).contiguous() for k, (_, t) in part.items()}
        meta = {k: {**info, "prefix": 1} for k, (info, _) in part.items()}
        save_file(tensors, str(OUT / f"{name}.safetensors"), metadata={"tables": json.dumps(meta, sort_keys=True)})
        size = (OUT / f"{name}.safetensors").stat().st_size
        print(f"wrote {OUT / name}.safetensors: {len(tensors)} tables, {size / 1e6:.2f} MB")


def check(tables: dict) -> int:
    bad = 0
    for name, part in split(tables).items():
        stored = load_file(str(OUT / f"{name}.safetensors"))
        for k, (_, t) in part.items():
            if k not in stored or not torch.equal(stored[k], t.to(torch.float16)):
                bad += 1
                print(f"differs: {name}/{k}")
        bad += len(set(stored) - set(part))
    print("identical" if not bad else f"{bad} tables differ")
    return int(bad > 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="training processes, 1 thread each (default 2)")
    parser.add_argument("--check", action="store_true", help="compare with the stored files instead of writing")
    parser.add_argument(
        "--rederive", action="store_true", help="derive the families from the stored trained tables (no training)"
    )
    args = parser.parse_args(argv)
    tables = build(stored_trained() if args.rederive else train_all(args.workers))
    if args.check:
        return check(tables)
    write(tables)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
