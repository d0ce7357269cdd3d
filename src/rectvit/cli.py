"""Command line: ``rectvit inspect | adapt | export | plot | demo``. Benchmarks run from a checkout: ``make bench``.

Errors are one clear line on stderr and exit status 2, never a traceback; a wrong option too.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from .checkpoint import save_checkpoint
from .checkpoint.inspect import _dumps, grid_table, inspect_checkpoint
from .checkpoint.io import HUB_PREFIX
from .checkpoint.layout import Converted, as_converted
from .checkpoint.load import load_converted
from .checkpoint.writer import check_output
from .demo import add_demo_arguments, run_demo
from .errors import RectViTError
from .export import MIN_OPSET, export_onnx
from .factory import create_model, load_model
from .grid import check_img_size, to_size
from .layers import PatchEmbed
from .models import get_model_entry, list_models
from .viz import plot_position_similarity

CKPT_HELP = ".safetensors / .pth / .bin file, an HF or timm folder, or hf-hub:org/name"


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error that says where the options are listed, instead of the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def _size(text: str):
    try:
        return to_size(text, "size")
    except RectViTError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _img_size(text: str):
    try:
        return check_img_size(text, "--img-size")
    except RectViTError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _count(least: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < least:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {least}, got {text!r}")
        return value

    return parse


def _opset(text: str) -> int:
    value = _count(1)(text)
    if value < MIN_OPSET:
        raise argparse.ArgumentTypeError(
            f"opset {value} is below {MIN_OPSET}, the lowest torch's ONNX exporter writes (asked for less, it "
            f"writes {MIN_OPSET} anyway); pass --opset {MIN_OPSET} or higher, or leave it out"
        )
    return value


def _protected(source: str) -> list[str]:
    """The input of a command, as a path the output must not replace (an hf-hub: name is guarded once read)."""
    return [] if source.startswith(HUB_PREFIX) or not os.path.lexists(source) else [source]


def _cmd_inspect(args: argparse.Namespace) -> int:
    info = inspect_checkpoint(args.checkpoint, source_grid=args.source_grid)
    print(_dumps(info) if args.json else info)
    return 0


def _file_classes_and_chans(conv: Converted, model: torch.nn.Module) -> tuple[int, int | None]:
    """The classes and input channels the checkpoint's tensors hold, read where ``model`` keeps them
    (its pretrained cfg's ``classifier`` and ``first_conv``); 0 classes for a file without a classifier."""
    cfg = model.pretrained_cfg
    heads = cfg.get("classifier") or ()
    head = conv.state_dict.get(f"{heads if isinstance(heads, str) else heads[0]}.weight")
    first = conv.state_dict.get(f"{cfg.get('first_conv')}.weight")
    chans = int(first.shape[1]) if isinstance(first, torch.Tensor) and first.dim() == 4 else None
    return (int(head.shape[0]) if isinstance(head, torch.Tensor) else 0), chans


def _cmd_adapt(args: argparse.Namespace) -> int:
    out = check_output(args.output, _protected(args.checkpoint), (".safetensors",))
    if args.model is not None:
        get_model_entry(args.model)  # a misspelt name is named before the file is read
    conv = as_converted(args.checkpoint)
    overrides = {"img_size": args.img_size}
    for key in ("patch_size", "window_size", "num_classes", "in_chans"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.model is not None:
        # what is not asked for stays as the file has it: its classes and channels, not the name's defaults
        with torch.device("meta"):
            classes, chans = _file_classes_and_chans(conv, create_model(args.model))
        overrides.setdefault("num_classes", classes)
        if chans is not None:
            overrides.setdefault("in_chans", chans)
        model = create_model(args.model, **overrides)
        strict = overrides["num_classes"] == classes
        report = load_converted(model, conv, args.source_grid, strict, args.source_window)
    else:
        model = load_model(conv, source_grid=args.source_grid, source_windows=args.source_window, **overrides)
        report = model.load_report
        classes, chans = _file_classes_and_chans(conv, model)
    save_checkpoint(model, out)
    load_model(out)  # the written file reloads on its own, with no arguments
    print(report)
    size = f"{args.img_size[0]}x{args.img_size[1]}"
    name = args.model or model.arch_name or type(model).__name__
    print(f"wrote {out} ({name} at {size}); it reloads with rectvit.load_model")
    for line in _changes(model, classes, chans, args) + _notes(model, report, args):
        print(line)
    return 0


def _changes(model: torch.nn.Module, classes: int, chans: int | None, args: argparse.Namespace) -> list[str]:
    """What the written model takes and gives, beside what the checkpoint did: changed only when asked."""
    lines = []
    if model.num_classes == classes:
        lines.append(f"classes: {classes}, as in the checkpoint")
    else:
        lines.append(
            f"classes: {classes} -> {model.num_classes} (--num-classes: a new, freshly initialised classifier)"
        )
    if chans is not None and model.in_chans != chans:
        lines.append(f"input channels: {chans} -> {model.in_chans} (--in-chans: the first convolution adapted)")
    elif chans is not None:
        lines.append(f"input channels: {chans}, as in the checkpoint")
    return lines


def _notes(model: torch.nn.Module, report, args: argparse.Namespace) -> list[str]:
    notes = []
    if args.source_grid is not None and report.grid_basis != "source_grid argument":
        why = f"the grid came from: {report.grid_basis}" if report.grid_basis else "the checkpoint has no flat table"
        notes.append(f"note: --source-grid was unused ({why}).")
    if args.source_window is not None and not any(
        k.endswith("relative_position_bias_table") for k in model.state_dict()
    ):
        notes.append("note: --source-window was unused: the checkpoint has no relative-position bias tables to read.")
    lost = _pixels_not_seen(model)
    if any(lost):
        embed = model.patch_embed
        tiled = [s - extra for s, extra in zip(embed.img_size, lost)]
        larger = [t + step if extra else t for t, step, extra in zip(tiled, embed.patch_stride, lost)]
        notes.append(
            f"note: {args.img_size[0]}x{args.img_size[1]} is not tiled by the patches: the last {lost[0]} pixel "
            f"row(s) and {lost[1]} column(s) are not seen; --img-size {tiled[0]}x{tiled[1]} or "
            f"{larger[0]}x{larger[1]} is tiled exactly."
        )
    return notes


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
    out = check_output(args.output, _protected(args.source), (".onnx",))
    overrides = {"dynamic_img_size": True} if args.dynamic else {}
    if args.img_size is not None and not args.dynamic:
        overrides["img_size"] = args.img_size  # a static export at this size (the table adapted to it)
    if args.source in list_models() and not os.path.lexists(args.source):
        model = create_model(args.source, **overrides)  # random weights: for trying a deployment pipeline
    else:
        model = load_model(args.source, **overrides)
    print(export_onnx(model, out, args.img_size, dynamic=args.dynamic, batch=args.batch, opset=args.opset))
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
    parser = _Parser(
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
    p.add_argument("--model", help="architecture name (rectvit.list_models()); default: the one the checkpoint records")
    p.add_argument("--img-size", required=True, type=_img_size, metavar="HxW", help="target input size")
    p.add_argument("--patch-size", type=_size, metavar="PxQ", help="target patch size (ViT)")
    p.add_argument("--window-size", type=_size, metavar="HxW", help="target window size (Swin)")
    p.add_argument("--source-grid", type=_size, metavar="HxW", help="the grid of the checkpoint's flat table")
    p.add_argument("--source-window", type=_size, metavar="HxW", help="the window its Swin bias tables had (Swin)")
    p.add_argument(
        "--num-classes", type=_count(0), help="a new classifier size (default: the checkpoint's; a new one is fresh)"
    )
    p.add_argument(
        "--in-chans", type=_count(1), help="input channels (default: the checkpoint's; others adapt the kernel)"
    )
    p.add_argument("-o", "--output", required=True, help="output .safetensors (never the input)")
    p.set_defaults(func=_cmd_adapt)

    p = sub.add_parser(
        "export", help="write an ONNX file (dynamic: any batch and input size; needs onnx, onnxscript, onnxruntime)"
    )
    p.add_argument("source", metavar="CKPT_OR_NAME", help=CKPT_HELP + ", or a model name (random weights)")
    p.add_argument("-o", "--output", required=True, help="output .onnx (never the input)")
    p.add_argument(
        "--dynamic", action="store_true", help="free batch, height and width (checked at unseen sizes before writing)"
    )
    p.add_argument("--img-size", type=_img_size, metavar="HxW", help="input size (static) or example size (dynamic)")
    p.add_argument("--batch", type=_count(1), default=None, help="batch size of a static export (default 1)")
    p.add_argument(
        "--opset", type=_opset, default=None, help=f"ONNX opset, {MIN_OPSET} or higher (default: the exporter's)"
    )
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
