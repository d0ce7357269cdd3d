"""``rectvit demo``: why the position grid matters, end to end, offline.

A small ViT is trained on a synthetic spectrogram task at one rectangle (1 x 64 x 256, patch 8,
grid 8 x 32). Each input is noise plus one short chirp; the class is *where* the chirp is: which of
4 frequency bands and which of 4 time segments (16 classes). The chirp has the same pixels wherever
it is, so only the position table tells the model where it is.

The model is then evaluated on fresh data at other rectangles (the bands and segments scale with the
input, the chirp keeps its size) three ways:

- ``rectvit``: saved with ``rectvit.save_checkpoint`` and reloaded with
  ``rectvit.load_model(path, img_size=new)``: the table is resampled on its recorded 8 x 32 grid.
- ``square``: what peers do when the grid is lost: the flat 256-row table is read as 16 x 16
  (``sqrt(256)``) and that square is resampled to the new grid.
- ``none``: no adaptation: the input is center-cropped / zero-padded to the trained size.

The trained model ships inside the package (``rectvit/data/demo_vit.safetensors``);
``scripts/train_demo_model.py`` reproduces it from its seed, and ``rectvit demo --retrain`` trains
it again in the run instead of loading it.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F

from .errors import InputSizeError, RectViTError

__all__ = [
    "TRAIN_SIZE",
    "PATCH",
    "BANDS",
    "SEGMENTS",
    "EVAL_SIZES",
    "METHODS",
    "make_batch",
    "build_model",
    "train_model",
    "shipped_checkpoint",
    "square_assumption_model",
    "crop_or_pad",
    "evaluate",
    "run",
    "add_demo_arguments",
    "run_demo",
]

TRAIN_SIZE = (64, 256)  # (frequency bins, time frames)
PATCH = 8  # grid 8 x 32 = 256 positions, which a square assumption reads as 16 x 16
BANDS, SEGMENTS = 4, 4
NUM_CLASSES = BANDS * SEGMENTS
EVENT = (8, 24)  # chirp height (bins) x width (frames), the same at every input size
NOISE = 0.1
EVAL_SIZES = [(64, 128), (64, 512), (32, 256), (128, 256)]
PICTURE_SIZE = (128, 256)  # the new rectangle whose adapted tables the picture shows
METHODS = ("rectvit", "square", "none")
METHOD_TITLES = {
    "rectvit": "rectvit (recorded grid)",
    "square": "square assumption",
    "none": "no adaptation (crop/pad)",
}
MODEL_CONFIG = dict(
    patch_size=PATCH,
    in_chans=1,
    num_classes=NUM_CLASSES,
    embed_dim=64,
    depth=2,
    num_heads=4,
    mlp_ratio=2.0,
    global_pool="token",
)
TRAIN_SEED = 0  # the seed the shipped checkpoint was trained with
TRAIN_STEPS = 3500
TRAIN_BATCH = 128
TRAIN_LR = 2e-3
CHECKPOINT_NAME = "demo_vit.safetensors"
PICTURE_NAME = "demo_positions.png"
PICTURE_QUERIES = (2, 2)  # rows x columns of marked points in each of the picture's three blocks
PICTURE_NOTE = (
    "Each map: how alike every position is to the marked point (yellow = alike). rectvit keeps the learned "
    "pattern, stretched; the square guess scrambles it."
)
PICTURE_HOW_TO_READ = (
    "how to read it: each map shows which positions the model treats as close to the red-marked point; "
    "top = as trained, middle = rectvit at the new size (the same pattern, stretched), "
    "bottom = the square guess (scrambled stripes)"
)


# --------------------------------------------------------------------------------------------------
# The task


def _chirp() -> torch.Tensor:
    """The event: a rising chirp ``EVENT`` pixels in size (a bright diagonal, a little blurred)."""
    eh, ew = EVENT
    y = torch.arange(eh, dtype=torch.float32)[:, None]
    x = torch.arange(ew, dtype=torch.float32)[None, :]
    line = (eh - 1) * x / (ew - 1)  # the frequency rises across the event
    return torch.exp(-((y - (eh - 1 - line)) ** 2) / 0.8) * 2.5


def make_batch(n: int, size: tuple[int, int], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` inputs ``(n, 1, H, W)`` and labels ``band * SEGMENTS + segment``.

    The bands split the height and the segments the width evenly; the chirp lies wholly inside its
    cell at a random offset, over stationary noise (nothing but the chirp's position tells the class).
    """
    h, w = size
    eh, ew = EVENT
    bh, sw = h // BANDS, w // SEGMENTS
    if bh < eh or sw < ew:
        raise InputSizeError(f"input {h}x{w} is too small: each band/segment cell must hold a {eh}x{ew} chirp")
    x = torch.randn(n, 1, h, w, generator=generator) * NOISE
    band = torch.randint(0, BANDS, (n,), generator=generator)
    seg = torch.randint(0, SEGMENTS, (n,), generator=generator)
    dy = torch.randint(0, bh - eh + 1, (n,), generator=generator)
    dx = torch.randint(0, sw - ew + 1, (n,), generator=generator)
    chirp = _chirp()
    for i in range(n):
        y0, x0 = int(band[i]) * bh + int(dy[i]), int(seg[i]) * sw + int(dx[i])
        x[i, 0, y0 : y0 + eh, x0 : x0 + ew] += chirp
    return x, band * SEGMENTS + seg


# --------------------------------------------------------------------------------------------------
# The model


def build_model(img_size=TRAIN_SIZE) -> torch.nn.Module:
    from .factory import create_model

    return create_model("vit_tiny_patch16_224", img_size=img_size, **MODEL_CONFIG)


def train_model(
    seed: int = TRAIN_SEED,
    steps: int = TRAIN_STEPS,
    batch: int = TRAIN_BATCH,
    lr: float = TRAIN_LR,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] | None = None,
) -> torch.nn.Module:
    """Train the demo ViT at ``TRAIN_SIZE`` from ``seed`` (AdamW, warm-up then cosine decay); returns it on CPU.

    The data come from a CPU generator seeded with ``seed``, so every device sees the same inputs.
    """
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = build_model().to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    t0, running = time.perf_counter(), None
    for step in range(steps):
        x, y = make_batch(batch, TRAIN_SIZE, g)
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if log and ((step + 1) % max(1, steps // 10) == 0 or step + 1 == steps):
            log(f"  step {step + 1}/{steps}  loss {running:.3f}  ({time.perf_counter() - t0:.0f} s)")
    return model.cpu().eval()


def shipped_checkpoint() -> Path:
    """The path of the demo checkpoint inside the package."""
    return Path(str(resources.files("rectvit") / "data" / CHECKPOINT_NAME))


# --------------------------------------------------------------------------------------------------
# The three ways to use the model at a new rectangle


def square_assumption_model(model: torch.nn.Module, img_size) -> torch.nn.Module:
    """The trained model at ``img_size`` as a peer adapts it once the grid is lost.

    The flat table of N positions is read as sqrt(N) x sqrt(N) and that square is resampled to the
    new grid (with the same resampling function rectvit uses: only the assumed grid differs).
    """
    from .resample import resample_grid

    table = model.pos_embed.detach()
    n, c = table.shape[1] * table.shape[2], table.shape[3]
    side = math.isqrt(n)
    if side * side != n:
        raise RectViTError(f"the trained grid has {n} positions, not a perfect square")
    square = table.reshape(1, side, side, c)
    new = build_model(img_size)
    state = {k: v for k, v in model.state_dict().items()}
    state["pos_embed"] = resample_grid(square, new.grid_size)
    new.load_state_dict(state)
    return new.eval()


def crop_or_pad(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Center-crop or zero-pad ``(B, C, H, W)`` to ``size`` on each axis."""
    for axis, target in ((2, size[0]), (3, size[1])):
        have = x.shape[axis]
        if have > target:
            start = (have - target) // 2
            x = x.narrow(axis, start, target)
        elif have < target:
            before = (target - have) // 2
            pad = [0, 0, 0, 0]
            pad[(3 - axis) * 2 : (3 - axis) * 2 + 2] = [before, target - have - before]
            x = F.pad(x, pad)
    return x


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    size: tuple[int, int],
    n: int,
    seed: int,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch: int = 256,
) -> float:
    """Accuracy on ``n`` fresh inputs of ``size`` drawn from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, n, batch):
        x, y = make_batch(min(batch, n - start), size, g)
        if transform is not None:
            x = transform(x)
        correct += int((model(x.to(device)).argmax(-1).cpu() == y).sum())
    return correct / n


# --------------------------------------------------------------------------------------------------
# The run


def _fmt_size(size) -> str:
    return f"{size[0]}x{size[1]}"


def accuracy_table(
    model: torch.nn.Module, n_eval: int, seed: int, device: str | torch.device = "cpu"
) -> tuple[dict[tuple[int, int], dict[str, float]], dict[str, torch.Tensor]]:
    """Accuracy of each method at the trained size and every ``EVAL_SIZES`` rectangle, plus the tables to draw.

    At the trained size no method adapts anything (a peer loads a table whose token count matches as
    it is), so that row is the trained model once. ``rectvit`` saves the model with
    ``save_checkpoint`` into a temporary folder and reloads it with ``load_model(path, img_size=...)``.
    """
    from .checkpoint import save_checkpoint
    from .factory import load_model

    model = model.cpu().eval()
    rows: dict[tuple[int, int], dict[str, float]] = {}
    tables = {"trained": model.pos_embed.detach().clone()}
    with tempfile.TemporaryDirectory(prefix="rectvit-demo-") as tmp:
        ckpt = save_checkpoint(model, Path(tmp) / "demo_model.safetensors")
        ref = evaluate(model.to(device), TRAIN_SIZE, n_eval, seed)
        model.cpu()
        rows[tuple(TRAIN_SIZE)] = {m: ref for m in METHODS}
        for i, size in enumerate(EVAL_SIZES, start=1):
            s = seed + 7919 * i
            ours = load_model(ckpt, img_size=size).eval()
            square = square_assumption_model(model, size)
            if tuple(size) == PICTURE_SIZE:
                tables["rectvit"] = ours.pos_embed.detach().clone()
                tables["square"] = square.pos_embed.detach().clone()
            rows[tuple(size)] = {
                "rectvit": evaluate(ours.to(device), size, n_eval, s),
                "square": evaluate(square.to(device), size, n_eval, s),
                "none": evaluate(model.to(device), size, n_eval, s, transform=lambda x: crop_or_pad(x, TRAIN_SIZE)),
            }
            model.cpu()
    return rows, tables


def format_table(rows: dict[tuple[int, int], dict[str, float]]) -> list[str]:
    """The accuracy table as lines of text."""
    lines = [f"accuracy ({NUM_CLASSES} classes, chance {1 / NUM_CLASSES:.2f}):"]
    lines.append(f"  {'input (HxW)':<14}{'grid':<8}" + "".join(f"{METHOD_TITLES[m]:>28}" for m in METHODS))
    for size, row in rows.items():
        g = (size[0] // PATCH, size[1] // PATCH)
        label = _fmt_size(size) + (" *" if tuple(size) == TRAIN_SIZE else "")
        lines.append(f"  {label:<14}{_fmt_size(g):<8}" + "".join(f"{row[m]:>28.3f}" for m in METHODS))
    lines.append("  * the trained size: nothing to adapt, every method is the trained model")
    new = [s for s in rows if tuple(s) != TRAIN_SIZE]
    if new:
        mean = {m: sum(rows[s][m] for s in new) / len(new) for m in METHODS}
        lines.append(
            "  mean over the new rectangles: " + ", ".join(f"{METHOD_TITLES[m]} {mean[m]:.3f}" for m in METHODS)
        )
    return lines


def run(
    seed: int = 0,
    out: str | os.PathLike = ".",
    quick: bool = False,
    retrain: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Run the demo; return ``{"rows": {size: {method: accuracy}}, "picture": path or None, ...}``.

    ``quick`` evaluates fewer inputs per rectangle (for tests). ``retrain`` trains the model in this
    run instead of loading the shipped checkpoint. Nothing is read from earlier runs: the checkpoint
    the ``rectvit`` method reloads is written to a temporary folder and removed. torch's thread count
    and global random state are as they were afterwards.
    """
    threads = torch.get_num_threads()
    try:  # the caller's thread count and random state are theirs: both are restored on the way out
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _run(seed, Path(out), quick, retrain, log)
    finally:
        torch.set_num_threads(threads)


def _run(seed: int, out: Path, quick: bool, retrain: bool, log: Callable[[str], None]) -> dict:
    from .errors import CheckpointError
    from .factory import load_model

    t0 = time.perf_counter()
    n_eval = 192 if quick else 512
    eval_seed = 1_000_003 + seed  # never the training stream

    h, w = TRAIN_SIZE
    grid = (h // PATCH, w // PATCH)
    side = math.isqrt(grid[0] * grid[1])
    log(
        f"task: 1 x {h} x {w} spectrograms (frequency x time), noise plus one {EVENT[0]}x{EVENT[1]} chirp; "
        f"class = which of {BANDS} frequency bands x {SEGMENTS} time segments holds it ({NUM_CLASSES} classes)"
    )
    if retrain:
        log(f"training a ViT (patch {PATCH}, grid {grid[0]}x{grid[1]}) from seed {TRAIN_SEED} ...")
        model = train_model(log=log)
        source = "trained in this run"
    else:
        path = shipped_checkpoint()
        if not path.is_file():
            raise CheckpointError(f"{path} is missing; run `rectvit demo --retrain` or scripts/train_demo_model.py")
        model = load_model(path).eval()
        source = f"shipped checkpoint {path.name} (scripts/train_demo_model.py, seed {TRAIN_SEED})"
    log(f"model: ViT patch {PATCH}, position grid {grid[0]}x{grid[1]} = {grid[0] * grid[1]} positions; {source}")
    log(
        f"evaluating on {n_eval} fresh inputs per rectangle (seed {seed}); the square assumption reads "
        f"the {grid[0] * grid[1]} positions as {side}x{side}"
    )

    rows, tables = accuracy_table(model, n_eval, eval_seed)

    log("")
    for line in format_table(rows):
        log(line)

    # The picture.
    picture = None
    ph, pw = PICTURE_SIZE
    pg = (ph // PATCH, pw // PATCH)
    if importlib.util.find_spec("matplotlib") is None:
        log("")
        log(f"picture skipped: matplotlib is not installed; pip install 'rectvit[plot]' to get {PICTURE_NAME}")
    else:
        from .viz import plot_position_similarity

        picture = plot_position_similarity(
            [
                (f"as trained, at {h}x{w}", tables["trained"]),
                (f"rectvit, used at {ph}x{pw}", tables["rectvit"]),
                (f"the square guess ({side}x{side}), used at {ph}x{pw}", tables["square"]),
            ],
            out / PICTURE_NAME,
            *PICTURE_QUERIES,
            note=PICTURE_NOTE,
        )
        log("")
        log(f"done in {time.perf_counter() - t0:.0f} s")
        log(PICTURE_HOW_TO_READ)
        log(
            f"position maps (trained grid {grid[0]}x{grid[1]}; at {ph}x{pw} the grid is {pg[0]}x{pg[1]}) "
            f"written to {picture.resolve()}"
        )
    return {
        "rows": rows,
        "methods": METHODS,
        "train_size": TRAIN_SIZE,
        "eval_sizes": list(EVAL_SIZES),
        "n_eval": n_eval,
        "picture": picture,
        "seconds": time.perf_counter() - t0,
    }


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Load a small ViT trained on a synthetic spectrogram task at 64x256 (grid 8x32), evaluate it at "
        "other rectangles with rectvit's adaptation, the square assumption peers fall back to, and no "
        f"adaptation, print the accuracy table and write {PICTURE_NAME}. Offline; under a minute on 2 cores."
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the fresh evaluation data (default 0)")
    parser.add_argument(
        "--out", metavar="DIR", default=".", help=f"folder for {PICTURE_NAME} (default: the working folder)"
    )
    parser.add_argument("--quick", action="store_true", help="evaluate fewer inputs per rectangle (for tests)")
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="train the model in this run, as scripts/train_demo_model.py does, instead of loading the shipped one "
        "(slow on CPU: tens of minutes)",
    )


def run_demo(args: argparse.Namespace) -> int:
    run(seed=args.seed, out=args.out, quick=args.quick, retrain=args.retrain)
    return 0
