"""Command line: ``rectvit inspect | adapt | export | plot | demo``. Benchmarks run from a checkout: ``make bench``.

Errors are one clear line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from .checkpoint import load_checkpoint, save_checkpoint
from .checkpoint.inspect import _dumps, grid_table, inspect_checkpoint
from .demo import add_demo_arguments, run_demo
from .errors import RectViTError
from .export import export_onnx
from .factory import create_model, load_model
from .grid import to_size
from .layers import PatchEmbed
from .models import list_models
from .viz import plot_position_similarity

CKPT_HELP = ".safetensors / .pth / .bin file, an HF or timm folder, or hf-hub:org/name"


def _size(text: str):
    try:
        return to_size(text, "size")
    except RectViTError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _cmd_inspect(args: argparse.Namespace) -> int:
    info = inspect_checkpoint(args.checkpoint, source_grid=args.source_grid)
    print(_dumps(info) if args.json else info)
    return 0


def _cmd_adapt(args: argparse.Namespace) -> int:
    src, out = os.path.abspath(args.checkpoint), os.path.abspath(args.output)
    if src == out or (os.path.exists(out) and os.path.samefile(src, out)):
        raise RectViTError(f"-o {args.output} is the input checkpoint; adapt never overwrites its input.")
    overrides = {"img_size": args.img_size}
    for key in ("patch_size", "window_size", "num_classes", "in_chans"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    model = create_model(args.model, **overrides)
    report = load_checkpoint(
        model,
        args.checkpoint,
        source_grid=args.source_grid,
        source_windows=args.source_window,
        strict=args.num_classes is None,
    )
    model.source_path = src
    save_checkpoint(model, args.output)
    load_model(args.output)  # the written file reloads on its own, with no arguments
    print(report)
    size = f"{args.img_size[0]}x{args.img_size[1]}"
    print(f"wrote {args.output} ({args.model} at {size}); it reloads with rectvit.load_model")
    lost = _pixels_not_seen(model)
    if any(lost):
        print(
            f"note: {size} is not tiled by the patches: the last {lost[0]} pixel row(s) and {lost[1]} column(s) are "
            "not seen (build with dynamic_img_pad=True to pad instead)"
        )
    return 0


def _pixels_not_seen(model) -> tuple[int, int]:
    """Bottom rows and right columns of ``img_size`` that a ViT's whole patches do not cover."""
    embed = getattr(model, "patch_embed", None)
    if not isinstance(embed, PatchEmbed) or embed.dynamic_img_pad:
        return (0, 0)
    return tuple(
        s - ((g - 1) * t + p)
        for s, g, t, p in zip(embed.img_size, embed.grid_size, embed.patch_stride, embed.patch_size)
    )


def _cmd_export(args: argparse.Namespace) -> int:
    out = os.path.abspath(args.output)
    if os.path.exists(args.source) and os.path.exists(out) and os.path.samefile(args.source, out):
        raise RectViTError(f"-o {args.output} is the input checkpoint; export never overwrites its input.")
    overrides = {"dynamic_img_size": True} if args.dynamic else {}
    if args.img_size is not None and not args.dynamic:
        overrides["img_size"] = args.img_size  # a static export at this size (the table adapted to it)
    if args.source in list_models() and not os.path.exists(args.source):
        model = create_model(args.source, **overrides)  # random weights: for trying a deployment pipeline
    else:
        model = load_model(args.source, **overrides)
    print(export_onnx(model, args.output, args.img_size, dynamic=args.dynamic, batch=args.batch, opset=args.opset))
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    info = inspect_checkpoint(args.checkpoint, source_grid=args.source_grid)
    table = grid_table(info)
    path = plot_position_similarity([(os.path.basename(args.checkpoint.rstrip("/")), table)], args.output)
    print(f"wrote {path}: position similarity on the {table.shape[1]}x{table.shape[2]} grid")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rectvit",
        description="Vision transformers whose input shape is a free choice, without losing the position grid.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("inspect", help="describe a checkpoint: layout, position tables and their grids")
    p.add_argument("checkpoint", help=CKPT_HELP)
    p.add_argument("--source-grid", type=_size, metavar="HxW", help="the grid of a flat table, if you know it")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("adapt", help="adapt a checkpoint to a model and input size; write rectvit .safetensors")
    p.add_argument("checkpoint", help=CKPT_HELP)
    p.add_argument("--model", required=True, help="architecture name (rectvit.list_models())")
    p.add_argument("--img-size", required=True, type=_size, metavar="HxW", help="target input size")
    p.add_argument("--patch-size", type=_size, metavar="PxQ", help="target patch size (ViT)")
    p.add_argument("--window-size", type=_size, metavar="HxW", help="target window size (Swin)")
    p.add_argument("--source-grid", type=_size, metavar="HxW", help="the grid of the checkpoint's flat table")
    p.add_argument("--source-window", type=_size, metavar="HxW", help="the window its Swin bias tables had (Swin)")
    p.add_argument("--num-classes", type=int, help="a new classifier size (the old classifier is dropped)")
    p.add_argument("--in-chans", type=int, help="input channels (the patch kernel is adapted)")
    p.add_argument("-o", "--output", required=True, help="output .safetensors (never the input)")
    p.set_defaults(func=_cmd_adapt)

    p = sub.add_parser("export", help="write an ONNX file (dynamic: any batch and input size; needs onnx, onnxscript)")
    p.add_argument("source", metavar="CKPT_OR_NAME", help=CKPT_HELP + ", or a model name (random weights)")
    p.add_argument("-o", "--output", required=True, help="output .onnx (never the input)")
    p.add_argument("--dynamic", action="store_true", help="free batch, height and width (the model in dynamic mode)")
    p.add_argument("--img-size", type=_size, metavar="HxW", help="input size (static) or example size (dynamic)")
    p.add_argument("--batch", type=int, default=None, help="batch size of a static export (default 1)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: torch's exporter's)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("plot", help="draw position similarity on a checkpoint's real grid (needs matplotlib)")
    p.add_argument("checkpoint", help=CKPT_HELP)
    p.add_argument("-o", "--output", required=True, help="output PNG")
    p.add_argument("--source-grid", type=_size, metavar="HxW", help="the grid of a flat table, if you know it")
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser("demo", help="show why the position grid matters, end to end, offline")
    add_demo_arguments(p)
    p.set_defaults(func=_cmd_demo)

    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except RectViTError as e:
        print(f"rectvit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"rectvit {args.command}: error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
