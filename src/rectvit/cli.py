"""Command line: ``rectvit demo | inspect | adapt | plot | bench``. Errors are one line on stderr, exit 2."""

from __future__ import annotations

import argparse
import sys

from .errors import RectViTError


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rectvit",
        description="Vision transformers whose input shape is a free choice, without losing the position grid.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="show why the position grid matters, end to end, offline")
    from .demo import add_demo_arguments

    add_demo_arguments(demo)
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
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
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"rectvit {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
