"""``python -m bench.native_training``: native-resolution training, three ways, on generated text lines.

Data: lines of 1-4 random lowercase words (2-9 letters, 2-3 spaces apart) rendered with Pillow's
bundled font (random size, random margins) at their native width, 32 px high and 64 to at most
1024 px wide (aspect 1:2 up to 1:32; the lines drawn reach about 1:25; widths in whole 8-px
patches); the label is the line's word count, which needs the whole line. The same small ViT
(patch 8, class-token pooling) trains for the same number of steps on the same budget of patch
tokens per step (``--tokens``) with AdamW and a warm-up + cosine schedule; the three ways run
interleaved (a step of each in turn), so other work on the machine slows them alike:

- (a) **rectvit packed**: ``rectvit.data.TokenBudgetBatchSampler`` batches, ``rectvit.pack``,
  images at their native size (no resize, no padding);
- (b) **padding to the longest line**: shuffled lines, a batch grows while batch x longest line fits
  the budget, every line padded (background) to the longest;
- (c) **timm NaFlex**: ``timm.data.create_naflex_loader`` (its training wrapper and collator, no
  augmentation: every line resized, aspect kept, to fill a row of 128, 256 or 512 patches; batch
  sizes of budget / row) and ``timm.models.naflexvit.NaFlexVit`` of the same size.

Reported: held-out accuracy; training images/s end to end (loader + step) and for the model step
alone; the padded fraction of each step's budget (tokens not holding an image); the dropped
fraction (native patches lost to downscaling). ``--quick``: a smoke run under a minute.
``--docs docs/training.md`` rewrites the results block there; ``--plot`` draws the figure.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

import rectvit
from rectvit.data import TokenBudgetBatchSampler

HEIGHT, PATCH, CLASSES = 32, 8, 4
MIN_W, MAX_W = 64, 1024
BEGIN, END = "<!-- native-training:begin -->", "<!-- native-training:end -->"


@dataclass
class Config:
    train_lines: int = 6000
    test_lines: int = 600
    steps: int = 400
    tokens: int = 4096  # patch tokens per step
    embed_dim: int = 96
    depth: int = 4
    num_heads: int = 3
    lr: float = 1e-3
    seed: int = 0
    naflex_seq_lens: tuple[int, ...] = (128, 256, 512)
    pos_embed: str = "learn"  # "learn": a table resampled to each grid (both kinds); "none": no positions


QUICK = Config(
    train_lines=160, test_lines=40, steps=6, tokens=2048, embed_dim=32, depth=1, num_heads=2, naflex_seq_lens=(128, 256)
)


@dataclass
class Result:
    name: str
    accuracy: float = 0.0
    images: int = 0
    seconds: float = 0.0  # training loop, loader included
    step_seconds: float = 0.0  # forward, backward and optimizer step only
    padded: list[float] = field(default_factory=list)  # per step: 1 - image tokens / budget
    dropped: float = 0.0  # native patches lost to downscaling / native patches
    losses: list[float] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds

    @property
    def step_images_per_s(self) -> float:
        return self.images / self.step_seconds


# --------------------------------------------------------------------------------------------------
# Data


def render_lines(n: int, seed: int) -> tuple[list[np.ndarray], list[int]]:
    """``n`` lines as ``(32, W)`` uint8 arrays (text black on white) and their word counts - 1."""
    from PIL import Image, ImageDraw, ImageFont

    rng = random.Random(seed)
    fonts = {s: ImageFont.load_default(size=s) for s in range(16, 25)}
    images, labels = [], []
    while len(images) < n:
        words = rng.randint(1, CLASSES)
        text = (" " * rng.randint(2, 3)).join(
            "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(words)
        )
        font = fonts[rng.randint(16, 24)]
        left, top, right, bottom = font.getbbox(text)
        x0 = rng.randint(2, 200)
        width = PATCH * math.ceil(max(MIN_W, x0 + right + rng.randint(2, 200)) / PATCH)
        if width > MAX_W:
            continue
        img = Image.new("L", (width, HEIGHT), 255)
        y0 = rng.randint(0, max(0, HEIGHT - bottom)) - top // 2
        ImageDraw.Draw(img).text((x0, y0), text, fill=0, font=font)
        images.append(np.array(img))
        labels.append(words - 1)
    return images, labels


def to_tensor(a: np.ndarray) -> torch.Tensor:
    """``(1, H, W)`` in [-1, 1] (mean 0.5, std 0.5, as the NaFlex loader normalises)."""
    return torch.from_numpy(a).float().div_(127.5).sub_(1.0).unsqueeze(0)


def native_tokens(a: np.ndarray) -> int:
    return (a.shape[0] // PATCH) * (a.shape[1] // PATCH)


# --------------------------------------------------------------------------------------------------
# Models and the shared training loop


def _arch(cfg: Config) -> dict:
    """The keywords (timm's names) both model kinds share: patch 8, width, depth, heads, class-token pooling."""
    return dict(
        patch_size=PATCH, embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads, global_pool="token"
    )


def rectvit_model(cfg: Config) -> torch.nn.Module:
    torch.manual_seed(cfg.seed)
    return rectvit.create_model(
        "vit_tiny_patch16_224",
        img_size=(HEIGHT, 512),
        in_chans=1,
        num_classes=CLASSES,
        dynamic_img_size=True,
        pos_embed=cfg.pos_embed,
        **_arch(cfg),
    )


def naflex_model(cfg: Config) -> torch.nn.Module:
    from timm.models.naflexvit import NaFlexVit, NaFlexVitCfg

    torch.manual_seed(cfg.seed)
    nf = NaFlexVitCfg(
        class_token=True,
        reg_tokens=0,
        pos_embed={"learn": "learned"}.get(cfg.pos_embed, cfg.pos_embed),
        pos_embed_grid_size=(HEIGHT // PATCH, 512 // PATCH),
        **_arch(cfg),
    )
    return NaFlexVit(cfg=nf, in_chans=1, num_classes=CLASSES)


def _optimizer(model: torch.nn.Module, cfg: Config):
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.05)
    warm = max(1, cfg.steps // 10)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, cfg.steps - warm)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


@dataclass
class Way:
    """One way to train: its model, its endless training batches ``(inputs, labels, image_tokens,
    native_patches, kept_patches)`` and its held-out batches ``(inputs, labels)``."""

    name: str
    model: torch.nn.Module
    batches: Iterator[tuple]
    test: Callable[[], Iterable[tuple]]


def train(ways: dict[str, Way], cfg: Config, log=print) -> dict[str, Result]:
    """``cfg.steps`` steps of every way, interleaved (a step of each in turn), so that other work on
    the machine slows all ways alike; then each way's held-out accuracy."""
    runs = []
    for way in ways.values():
        way.model.train()
        runs.append((way, *_optimizer(way.model, cfg), Result(way.name), [0, 0]))
    for step in range(cfg.steps):
        if step and step % max(1, cfg.steps // 10) == 0:
            log(f"  step {step}: losses " + ", ".join(f"{r.losses[-1]:.3f}" for *_, r, _ in runs))
        for way, opt, sched, result, native_kept in runs:
            t0 = time.perf_counter()
            inputs, labels, tokens, native, kept = next(way.batches)
            t1 = time.perf_counter()
            loss = F.cross_entropy(way.model(inputs), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            t2 = time.perf_counter()
            result.seconds += t2 - t0
            result.step_seconds += t2 - t1
            result.losses.append(loss.item())
            result.images += len(labels)
            result.padded.append(1 - tokens / cfg.tokens)
            native_kept[0] += native
            native_kept[1] += kept
    for way, _, _, result, (native, kept) in runs:
        result.dropped = max(0.0, 1 - kept / native)
        result.accuracy = accuracy(way.model, way.test())
    return {key: run[3] for key, run in zip(ways, runs)}


def _epochs(make_epoch):
    """Batches of epoch 0, 1, 2, ... without end."""
    epoch = 0
    while True:
        yield from make_epoch(epoch)
        epoch += 1


@torch.no_grad()
def accuracy(model, batches) -> float:
    model.eval()
    right = total = 0
    for inputs, labels in batches:
        right += int((model(inputs).argmax(-1) == labels).sum())
        total += len(labels)
    return right / total


# --------------------------------------------------------------------------------------------------
# The three ways


def packed_way(cfg: Config, train_set, test_set) -> Way:
    images, labels = train_set
    tensors = [to_tensor(a) for a in images]
    sampler = TokenBudgetBatchSampler([a.shape for a in images], max_tokens=cfg.tokens, patch_size=PATCH, seed=cfg.seed)

    def epoch(e):
        sampler.set_epoch(e)
        for batch in sampler:
            tokens = sum(native_tokens(images[i]) for i in batch)
            packed = rectvit.pack([tensors[i] for i in batch])
            yield packed, torch.tensor([labels[i] for i in batch]), tokens, tokens, tokens

    def test():
        test_images, test_labels = test_set
        for chunk in rectvit.variable.plan_chunks([native_tokens(a) for a in test_images], cfg.tokens, 256):
            yield (
                rectvit.pack([to_tensor(test_images[i]) for i in chunk]),
                torch.tensor([test_labels[i] for i in chunk]),
            )

    return Way("(a) rectvit packed, TokenBudgetBatchSampler", rectvit_model(cfg), _epochs(epoch), test)


def _padded(arrays: list[np.ndarray]) -> torch.Tensor:
    """``(B, 1, 32, W_max)``: every line padded on the right with background to the longest."""
    width = max(a.shape[1] for a in arrays)
    out = torch.ones(len(arrays), 1, HEIGHT, width)
    for k, a in enumerate(arrays):
        out[k, :, :, : a.shape[1]] = to_tensor(a)
    return out


def _padded_batches(arrays: list[np.ndarray], order: list[int], budget: int) -> list[list[int]]:
    """Consecutive lines of ``order`` while (lines x the longest line's patches) fits ``budget``."""
    batches, batch, longest = [], [], 0
    for i in order:
        t = native_tokens(arrays[i])
        if batch and (len(batch) + 1) * max(longest, t) > budget:
            batches.append(batch)
            batch, longest = [], 0
        batch.append(i)
        longest = max(longest, t)
    return batches + ([batch] if batch else [])


def padded_way(cfg: Config, train_set, test_set) -> Way:
    images, labels = train_set

    def epoch(e):
        order = np.random.default_rng([cfg.seed, e]).permutation(len(images)).tolist()
        for batch in _padded_batches(images, order, cfg.tokens):
            tokens = sum(native_tokens(images[i]) for i in batch)
            yield _padded([images[i] for i in batch]), torch.tensor([labels[i] for i in batch]), tokens, tokens, tokens

    def test():
        test_images, test_labels = test_set
        for batch in _padded_batches(test_images, list(range(len(test_images))), cfg.tokens):
            yield _padded([test_images[i] for i in batch]), torch.tensor([test_labels[i] for i in batch])

    return Way("(b) padding to the longest line", rectvit_model(cfg), _epochs(epoch), test)


class _Lines(torch.utils.data.Dataset):
    """PIL images with their index as the target (the loop looks labels and native sizes up).

    ``transform``: set by timm's evaluation loader (its training wrapper applies its own).
    """

    def __init__(self, arrays: list[np.ndarray]):
        self.arrays = arrays
        self.transform = None

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i):
        from PIL import Image

        img = Image.fromarray(self.arrays[i])
        return (img if self.transform is None else self.transform(img)), i


def _naflex_loader(arrays, cfg: Config, training: bool):
    import contextlib
    import io

    from timm.data import create_naflex_loader

    seq = max(cfg.naflex_seq_lens)
    with contextlib.redirect_stdout(io.StringIO()):  # the training wrapper prints its schedule
        return create_naflex_loader(
            _Lines(arrays),
            patch_size=PATCH,
            train_seq_lens=cfg.naflex_seq_lens,
            max_seq_len=seq,
            batch_size=cfg.tokens // seq,
            is_training=training,
            no_aug=True,
            mean=(0.5,),
            std=(0.5,),
            channels=1,
            num_workers=0,
            use_prefetcher=False,
            pin_memory=False,
            seed=cfg.seed,
            device=torch.device("cpu"),
        )


def naflex_way(cfg: Config, train_set, test_set) -> Way:
    images, labels = train_set
    loader = _naflex_loader(images, cfg, True)

    def epoch(e):
        loader.dataset.set_epoch(e)
        for inputs, index in loader:
            index = index.tolist()
            valid = inputs["patch_valid"].sum(1).tolist()
            native = [native_tokens(images[i]) for i in index]
            kept = sum(min(v, n) for v, n in zip(valid, native))
            yield inputs, torch.tensor([labels[i] for i in index]), sum(valid), sum(native), kept

    def test():
        for inputs, index in _naflex_loader(test_set[0], cfg, False):
            yield inputs, torch.tensor([test_set[1][i] for i in index.tolist()])

    return Way("(c) timm NaFlex loader + NaFlexViT", naflex_model(cfg), _epochs(epoch), test)


WAYS = {"packed": packed_way, "padded": padded_way, "naflex": naflex_way}


# --------------------------------------------------------------------------------------------------
# Report


def run(cfg: Config, which=tuple(WAYS), log=print) -> tuple[dict[str, Result], dict]:
    t0 = time.perf_counter()
    train_set = render_lines(cfg.train_lines, cfg.seed)
    test_set = render_lines(cfg.test_lines, cfg.seed + 1)
    widths = [a.shape[1] for a in train_set[0]]
    facts = {
        "lines": f"{cfg.train_lines} training, {cfg.test_lines} held out",
        "widths": f"{min(widths)}-{max(widths)} px (median {int(statistics.median(widths))}), {HEIGHT} px high",
        "render_s": round(time.perf_counter() - t0, 1),
        "threads": torch.get_num_threads(),
    }
    log(f"native training: {', '.join(which)}, {cfg.steps} steps of {cfg.tokens} tokens, interleaved")
    results = train({name: WAYS[name](cfg, train_set, test_set) for name in which}, cfg, log)
    for r in results.values():
        log(f"  {r.name}: accuracy {r.accuracy:.3f}, {r.images_per_s:.1f} images/s, loss {r.losses[-1]:.3f}")
    return results, facts


def table(results: dict[str, Result]) -> list[str]:
    """The markdown table of the results (ratios against (a))."""
    lines = [
        "| way | held-out accuracy | images/s (end to end) | images/s (model step) | (a) speed-up "
        "| images/step | padded: mean, median step | steps over 2% padded | dropped |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ours = results.get("packed")
    for r in results.values():
        speed = "–" if ours is None or r is ours else f"{ours.images_per_s / r.images_per_s:.2f}×"
        lines.append(
            f"| {r.name} | {r.accuracy:.3f} | {r.images_per_s:.1f} | {r.step_images_per_s:.1f} | {speed} "
            f"| {r.images / len(r.losses):.1f} | {100 * statistics.mean(r.padded):.1f}%, "
            f"{100 * statistics.median(r.padded):.1f}% | {_over(r)} of {len(r.padded)} | {100 * r.dropped:.1f}% |"
        )
    return lines


def _over(r: Result, limit: float = 0.02) -> int:
    """Steps whose budget was more than ``limit`` padding."""
    return sum(p > limit for p in r.padded)


def against_targets(results: dict[str, Result]) -> str:
    """One line: each target of the issue and what this run measured."""
    a = results.get("packed")
    if a is None:
        return "Targets need way (a)."
    parts = [
        f"padded ≤ 2% per packed step: {len(a.padded) - _over(a)} of {len(a.padded)} steps "
        "(an epoch's last step is partial)"
    ]
    for key, want, label in (("padded", 1.3, "padding to the longest"), ("naflex", 1.0, "timm NaFlex")):
        if key in results:
            r = results[key]
            parts.append(
                f"images/s ≥ {want:.1f}× {label}: {a.images_per_s / r.images_per_s:.2f}×, "
                f"accuracy {a.accuracy:.3f} vs {r.accuracy:.3f}"
            )
    return "Against the targets: " + "; ".join(parts) + "."


def native_rows(report, plan: dict, log) -> None:
    """``make bench`` section (f): ``plan`` = ``{"quick": bool, "overrides": {Config field: value}, "ways": names}``."""
    cfg = replace(QUICK if plan.get("quick") else Config(), **plan.get("overrides", {}))
    results, facts = run(cfg, plan.get("ways", tuple(WAYS)), log=log)
    sec = report.section(
        "(f) Native-resolution training (rectvit.data)",
        f"`bench/native_training.py` (docs/training.md): {facts['lines']} text lines, {facts['widths']}; "
        f"{cfg.steps} steps of {cfg.tokens} patch tokens; ViT patch {PATCH}, width {cfg.embed_dim}, depth "
        f"{cfg.depth}; torch threads: {facts['threads']}. (a) rectvit packed with TokenBudgetBatchSampler, (b) padding "
        "to the longest line, (c) timm's NaFlex loader + NaFlexViT.",
    )
    sec.extra += [against_targets(results), ""] + table(results)


def plot(results: dict[str, Result], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    for r in results.values():
        smooth = np.convolve(r.losses, np.ones(10) / 10, mode="valid") if len(r.losses) >= 10 else r.losses
        left.plot(smooth, label=f"{r.name} (acc {r.accuracy:.2f})")
    left.set(xlabel="step", ylabel="training loss (10-step mean)", title="same steps, same tokens per step")
    left.legend(fontsize=7)
    names = list(results)
    right.bar(names, [results[k].images_per_s for k in names], color=["C0", "C1", "C2"][: len(names)])
    right.set(ylabel="training images/s (end to end)", title="throughput")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_docs(path: str, block: str) -> None:
    text = open(path).read()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} has no {BEGIN} ... {END} block to replace")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    with open(path + ".tmp", "w") as f:
        f.write(head + BEGIN + "\n" + block.rstrip() + "\n" + END + tail)
    import os

    os.replace(path + ".tmp", path)


def main(argv: list[str] | None = None) -> dict[str, Result]:
    p = argparse.ArgumentParser(prog="python -m bench.native_training", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run (tiny model, few lines and steps; < 1 minute)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--tokens", type=int, default=None, help="patch tokens per step")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--pos-embed", choices=("learn", "none"), default=None, help="every model's position table")
    p.add_argument("--only", default="packed,padded,naflex")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--plot", default=None, help="write the figure here (PNG)")
    p.add_argument("--docs", default=None, help="rewrite the results block of this markdown file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    given = {"steps": args.steps, "tokens": args.tokens, "pos_embed": args.pos_embed}
    cfg = replace(QUICK if args.quick else Config(), **{k: v for k, v in given.items() if v})
    results, facts = run(cfg, tuple(s.strip() for s in args.only.split(",") if s.strip()), log=_log)
    lines = table(results)
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": asdict(cfg), "facts": facts, "results": {k: asdict(r) for k, r in results.items()}}, f)
    if args.plot:
        plot(results, args.plot)
    if args.docs:
        command = "python -m bench.native_training " + " ".join(argv if argv is not None else sys.argv[1:])
        note = (
            f"`{command.strip()}`: {facts['lines']} lines, {facts['widths']}; {cfg.steps} steps of {cfg.tokens} "
            f"patch tokens; ViT patch {PATCH}, width {cfg.embed_dim}, depth {cfg.depth}; "
            f"torch threads: {facts['threads']}."
        )
        write_docs(args.docs, note + "\n\n" + against_targets(results) + "\n\n" + "\n".join(lines))
    return results


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
