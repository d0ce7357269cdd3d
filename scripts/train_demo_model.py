"""Reproduce the checkpoint ``rectvit demo`` ships: ``src/rectvit/data/demo_vit.safetensors``.

Trains the demo ViT (``rectvit.demo.MODEL_CONFIG``) at ``rectvit.demo.TRAIN_SIZE`` on the synthetic
spectrogram task from a seed, writes it with ``rectvit.save_checkpoint`` and prints the demo's accuracy
table for it. The data come from a seeded CPU generator, so any device trains on the same inputs; the
weights match bit for bit only on the same device and torch build (the shipped file was trained on
CUDA, see ``--device``), and the accuracies match to within noise anywhere.

    python scripts/train_demo_model.py                 # CPU: slow (about an hour on 2 cores)
    python scripts/train_demo_model.py --device cuda   # about two minutes (the shipped file: an H200)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from rectvit import demo, save_checkpoint

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "rectvit" / "data" / demo.CHECKPOINT_NAME


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=demo.TRAIN_SEED, help=f"default {demo.TRAIN_SEED}")
    parser.add_argument("--steps", type=int, default=demo.TRAIN_STEPS, help=f"default {demo.TRAIN_STEPS}")
    parser.add_argument("--batch", type=int, default=demo.TRAIN_BATCH, help=f"default {demo.TRAIN_BATCH}")
    parser.add_argument("--lr", type=float, default=demo.TRAIN_LR, help=f"default {demo.TRAIN_LR}")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--eval", type=int, default=1024, help="inputs per rectangle for the table (default 1024)")
    parser.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = demo.train_model(
        seed=args.seed, steps=args.steps, batch=args.batch, lr=args.lr, device=args.device, log=print
    )
    print(f"trained in {time.perf_counter() - t0:.0f} s on {args.device}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    path = save_checkpoint(model, args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    rows, _ = demo.accuracy_table(model, args.eval, 1_000_003 + args.seed, device=args.device)
    for line in demo.format_table(rows):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
