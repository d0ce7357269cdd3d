"""Deployment: ``torch.export`` programs and ONNX files whose input size stays free.

A dynamic model (``dynamic_img_size=True``) exports with the batch, height and width symbolic: its
position table is resampled in the graph as tensor math on the symbolic grid
(:func:`rectvit.resample.resample_grid_separable`), so one program serves every size its
:class:`SizeRule` allows. Before a dynamic program or file is handed out it is run at unseen sizes
against the eager model (``check_dynamic``) and refused with a ``RectViTError`` where it fails or
differs (docs/design.md, invariant 7). A static export fixes the input size. ONNX files are written
with torch's dynamo exporter (needs the ``export`` extra: onnx, onnxscript, onnxruntime). Files are
written as ``save_checkpoint`` writes them (``rectvit.checkpoint.writer``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .checkpoint.writer import check_output, sources_of, write_atomic
from .errors import RectViTError
from .grid import Size, check_img_size, to_size

__all__ = [
    "AxisRule",
    "SizeRule",
    "OnnxExport",
    "size_rule",
    "check_sizes",
    "check_dynamic",
    "off_rule_sizes",
    "export_program",
    "export_onnx",
    "MIN_OPSET",
]

INPUT_NAME = "pixel_values"
OUTPUT_NAME = "output"
MIN_OPSET = 18  # the lowest opset torch's dynamo exporter writes; below it torch silently writes 18
TOLERANCE = 1e-4  # of max(1, |eager output|): a program or file that holds differs by float rounding only


@dataclass(frozen=True)
class AxisRule:
    """Sizes one spatial axis accepts in a dynamic export: ``step * k + offset`` for ``k >= min_k``."""

    step: int
    offset: int
    min_k: int

    def size(self, k: int) -> int:
        return self.step * k + self.offset

    def accepts(self, n: int) -> bool:
        return n >= self.size(self.min_k) and (n - self.offset) % self.step == 0

    def __str__(self) -> str:
        off = f" + {self.offset}" if self.offset else ""
        return f"{self.step}·k{off} (k >= {self.min_k}, i.e. >= {self.size(self.min_k)})"


@dataclass(frozen=True)
class SizeRule:
    """The ``(H, W)`` sizes a dynamic export of a model accepts (any batch size)."""

    height: AxisRule
    width: AxisRule

    def accepts(self, size) -> bool:
        h, w = to_size(size, "size")
        return self.height.accepts(h) and self.width.accepts(w)

    def nearest(self, size) -> Size:
        """The accepted size with the most steps that fit in ``size`` (at least the minimum)."""
        out = []
        for n, rule in zip(to_size(size, "size"), (self.height, self.width)):
            k = max((n - rule.offset) // rule.step, rule.min_k)
            out.append(rule.size(k))
        return (out[0], out[1])

    def __str__(self) -> str:
        return f"H = {self.height}, W = {self.width}"


def size_rule(model: nn.Module) -> SizeRule:
    """The sizes a dynamic export of ``model`` holds for; ``RectViTError`` when it cannot be dynamic.

    Per axis, the sizes a grid of ``k >= 2`` patches covers exactly (a side of 1 is specialised by
    torch's tracer): multiples of the patch stride (of backbone reduction x patch for a hybrid);
    ``stride * k + (patch - stride)`` for overlapping patches (AST: 10k + 6); for Swin, sizes whose
    every stage grid is a multiple of that stage's window (patch x lcm over stages of 2^s x window).
    Whether the traced program really holds there is ``check_dynamic``'s to say.
    """
    what = type(model).__name__
    if not getattr(model, "dynamic_img_size", False):
        raise RectViTError(
            f"this {what} is static (dynamic_img_size=False): an export of it holds for "
            f"{_size_text(getattr(model, 'img_size', None))} only. Build or load it with dynamic_img_size=True "
            "(rectvit.create_model(name, dynamic_img_size=True) or rectvit.load_model(path, dynamic_img_size=True)), "
            "or export statically (dynamic=False / no --dynamic)."
        )
    embed = getattr(model, "patch_embed", None)
    if embed is None:
        raise RectViTError(
            f"a dynamic export of {what} is not supported (it has no patch embedding to read its size rule from); "
            "export it statically at each size you need (dynamic=False, img_size=...)."
        )
    if getattr(embed, "dynamic_img_pad", False):
        raise RectViTError(
            f"a dynamic export of a {what} built with dynamic_img_pad=True is not supported (its padding "
            "depends on the size modulo the patch); rebuild it with dynamic_img_pad=False and pad inputs "
            "to a multiple of the patch stride yourself, or export statically."
        )
    patch, stride = embed.patch_size, embed.patch_stride
    ratio = getattr(embed, "feature_ratio", (1, 1))
    windows = _stage_windows(model)
    axes = []
    for axis, (p, s, r) in enumerate(zip(patch, stride, ratio)):
        # a grid of k patches covers exactly (k - 1) * s + p pixels (features for a hybrid)
        tiles = math.lcm(*(2**i * w[axis] for i, w in enumerate(windows))) if windows else 1
        axes.append(AxisRule(step=s * r * tiles, offset=(p - s) * r, min_k=2))
    return SizeRule(axes[0], axes[1])


def _stage_windows(model: nn.Module) -> tuple[Size, ...]:
    """Swin's window per stage (stage ``s`` works on the patch grid halved ``s`` times); ``()`` without windows."""
    windows = getattr(model, "window_size", None)
    if isinstance(windows, tuple) and windows and all(isinstance(w, tuple) and len(w) == 2 for w in windows):
        return windows
    return ()


def _size_text(size) -> str:
    return "its img_size" if size is None else f"{size[0]}x{size[1]}"


def check_sizes(rule: SizeRule, seen: Size, *, one_patch: bool) -> list[Size]:
    """The unseen ``(H, W)`` sizes a dynamic export is checked at before it is handed out.

    A non-square grid, the smallest side (one patch when ``one_patch``: an ONNX file has no guards,
    so it will be run there; a program refuses sides under its rule's ``min_k`` itself) and two
    extreme ratios (13:1 and 1:8), each other than ``seen`` (the example size it was traced at) and a
    few dozen steps of the rule at most.
    """
    low_h, low_w = (1, 1) if one_patch else (rule.height.min_k, rule.width.min_k)
    sizes = []
    for kh, kw in ((3, 5), (low_h, 4), (13, low_w), (2, 16)):
        kh, kw = max(kh, low_h), max(kw, low_w)
        if (rule.height.size(kh), rule.width.size(kw)) == tuple(seen):
            kh += 1
        sizes.append((rule.height.size(kh), rule.width.size(kw)))
    return sizes


def off_rule_sizes(rule: SizeRule) -> list[Size]:
    """A size between the rule's steps (none when every size is on it): an export may refuse it or compute
    what eager computes there (the whole patches that fit), but never something else."""
    extra = (rule.height.step // 2, rule.width.step // 2)
    return [] if extra == (0, 0) else [(rule.height.size(3) + extra[0], rule.width.size(2) + extra[1])]


def check_dynamic(
    model: nn.Module,
    run: Callable[[torch.Tensor], Any],
    sizes: Sequence[Size],
    what: str,
    seen: Size,
    off_rule: Sequence[Size] = (),
) -> None:
    """Run ``run`` (a traced program or an ONNX session) and the eager ``model`` at ``sizes`` (on the
    rule) and ``off_rule``; a ``RectViTError`` at the first size where ``run`` fails (on the rule) or
    differs by more than ``TOLERANCE`` x ``max(1, |eager|)`` (anywhere), saying what to do instead.
    ``what`` names the thing checked in the message; ``seen`` is the size it was traced at."""
    p = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        for i, size in enumerate([*sizes, *off_rule]):
            x = torch.randn(1 + 2 * (i % 2), model.in_chans, *size, dtype=p.dtype, device=p.device)
            on_rule = i < len(sizes)
            problem = _problem(model, run, x, on_rule)
            if problem is not None:
                where = "a size on its rule" if on_rule else "a size off its rule, which it should refuse"
                raise RectViTError(
                    f"refused: the dynamic {what} of {type(model).__name__} does not hold at {size[0]}x{size[1]} "
                    f"(batch {x.shape[0]}), {where}: against the eager model it {problem}. It was traced at "
                    f"{seen[0]}x{seen[1]}, and the trace kept something the model computes from its size fixed. "
                    "Export it statically at each size you need (dynamic=False, img_size=(H, W); CLI: leave out "
                    "--dynamic, pass --img-size HxW), or use torch.compile(model, dynamic=True), which recompiles "
                    "as needed."
                )
    finally:
        model.train(was_training)


def _problem(model: nn.Module, run: Callable[[torch.Tensor], Any], x: torch.Tensor, must_run: bool) -> str | None:
    """How ``run(x)`` falls short of the eager ``model(x)``; ``None`` when it equals it (or, where it need not
    run, refuses the input)."""
    with torch.no_grad():
        want = _flat(model(x))
    try:
        got = _flat(run(x))
    except Exception as e:  # a guard, a shape error in onnxruntime
        return f"fails ({type(e).__name__})" if must_run else None
    if len(got) != len(want) or any(g.shape != w.shape for g, w in zip(got, want)):
        return "gives outputs of other shapes"
    worst = max((g.to(w) - w).abs().max().item() for g, w in zip(got, want))
    scale = max([1.0] + [w.abs().max().item() for w in want])
    return None if worst <= TOLERANCE * scale else f"differs by {worst:.2g}"


def _flat(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flat(o)]
    if hasattr(out, "values"):
        return [t for o in out.values() for t in _flat(o)]
    return [torch.as_tensor(out)]


def _example(model: nn.Module, img_size, batch: int) -> torch.Tensor:
    p = next(model.parameters())
    size = model.img_size if img_size is None else check_img_size(img_size, "img_size")
    return torch.randn(batch, model.in_chans, *size, dtype=p.dtype, device=p.device)


def _dynamic_shapes(rule: SizeRule, example: torch.Tensor) -> tuple[dict[int, Any], ...]:
    from torch.export import Dim

    dims: dict[int, Any] = {0: Dim("batch", min=1, max=1 << 16)}
    for axis, name, r in ((2, "height", rule.height), (3, "width", rule.width)):
        dims[axis] = r.step * Dim(f"{name}_steps", min=r.min_k, max=(1 << 16) // r.step) + r.offset
    return (dims,)


def _check_batch(batch: int | None, dynamic: bool) -> int:
    if batch is None:
        return 2 if dynamic else 1
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise RectViTError(f"batch must be a positive int (the example batch of the export), got {batch!r}.")
    if dynamic and batch < 2:
        raise RectViTError(f"a dynamic export traces with batch >= 2 (1 would be specialised), got batch={batch}.")
    return batch


def export_program(
    model: nn.Module,
    img_size=None,
    *,
    dynamic: bool = True,
    batch: int | None = None,
    path: str | os.PathLike | None = None,
) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model`` in eval mode for ``(B, in_chans, H, W)`` inputs.

    ``dynamic=True``: the batch and the sizes ``size_rule(model)`` allows stay symbolic (the example
    input is ``img_size``, by default the model's, moved onto the rule), and the program is checked
    against eager at unseen sizes (``check_sizes``). ``dynamic=False``: the program takes ``batch``
    (default 1) inputs of ``img_size`` only. ``path``: also write it there (``torch.export.save``, a
    ``.pt2`` file, never onto a file the model was loaded from). Raises ``RectViTError`` when a dynamic
    export is asked of a model that cannot be dynamic, or when the traced program is not dynamic in fact.
    """
    batch = _check_batch(batch, dynamic)
    if path is not None:
        path = check_output(path, sources_of(model), (".pt2",))
    rule = size_rule(model) if dynamic else None
    if rule is not None:
        img_size = rule.nearest(model.img_size if img_size is None else img_size)
    x = _example(model, img_size, batch)
    was_training = model.training
    model.eval()
    try:
        shapes = _dynamic_shapes(rule, x) if rule is not None else None
        with torch.no_grad():
            program = torch.export.export(model, (x,), dynamic_shapes=shapes, strict=False)
    except RectViTError:
        raise
    except Exception as e:
        if rule is None:
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        raise RectViTError(
            f"refused: torch.export cannot trace {type(model).__name__} with a free input size "
            f"({type(e).__name__}: {first[:200]}). Export it statically at each size you need (dynamic=False, "
            "img_size=(H, W); CLI: leave out --dynamic), or use torch.compile(model, dynamic=True)."
        ) from None
    finally:
        model.train(was_training)
    if rule is not None:
        _check_symbolic(program, rule)
        seen = tuple(x.shape[-2:])
        sizes = check_sizes(rule, seen, one_patch=False)
        check_dynamic(model, program.module(), sizes, "torch.export program", seen, off_rule_sizes(rule))
    if path is not None:
        write_atomic(path, lambda tmp: torch.export.save(program, tmp), protect=sources_of(model), suffixes=(".pt2",))
    return program


def _check_symbolic(program: torch.export.ExportedProgram, rule: SizeRule) -> None:
    """Refuse a 'dynamic' program whose input shape came out fixed."""
    node = next(
        n for n in program.graph.nodes if n.op == "placeholder" and n.name in program.graph_signature.user_inputs
    )
    shape = node.meta["val"].shape
    fixed = [
        name for name, d in zip(("batch", "height", "width"), (shape[0], shape[2], shape[3])) if isinstance(d, int)
    ]
    if fixed:
        raise RectViTError(
            f"refused: the traced program fixed the {', '.join(fixed)} of its input, so it would not hold for "
            f"other sizes ({rule}); export statically (dynamic=False) at the sizes you need."
        )


def _fixed_onnx_axes(shape: Sequence[Any]) -> list[str]:
    """Which of an ONNX input's batch, height and width are fixed: ints, and names that are numbers ('224')."""
    named = {"batch": shape[0], "height": shape[2], "width": shape[3]}
    return [name for name, d in named.items() if isinstance(d, int) or str(d).strip().isdigit()]


@dataclass(frozen=True)
class OnnxExport:
    """What ``export_onnx`` wrote."""

    path: Path
    opset: int
    dynamic: bool
    input_shape: tuple  # ints; "B", "H", "W" for the free axes of a dynamic file
    size_rule: SizeRule | None
    checked: tuple[Size, ...] = ()  # the unseen sizes a dynamic file was checked at against eager

    def __str__(self) -> str:
        shape = "(" + ", ".join(str(d) for d in self.input_shape) + ")"
        if not self.dynamic:
            return f"wrote {self.path} (ONNX opset {self.opset}, static: input {INPUT_NAME} {shape} only)"
        checked = ", ".join(f"{h}x{w}" for h, w in self.checked)
        return (
            f"wrote {self.path} (ONNX opset {self.opset}, dynamic: input {INPUT_NAME} {shape}, any batch B, "
            f"{self.size_rule}; equal to eager in onnxruntime at {checked}, sizes it never saw)"
        )


def _check_opset(opset: int | None) -> None:
    if opset is None:
        return
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise RectViTError(
            f"opset must be an int from {MIN_OPSET} (the lowest torch's ONNX exporter writes; below it torch "
            f"would write {MIN_OPSET} instead) to {newest} (the newest this onnx knows), got {opset!r}; leave it "
            "out for the exporter's default."
        )


def _onnx_session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # its own errors come back as exceptions; no log lines on stderr
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {INPUT_NAME: x.detach().cpu().numpy()})[0])


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    img_size=None,
    *,
    dynamic: bool = True,
    batch: int | None = None,
    opset: int | None = None,
    program: torch.export.ExportedProgram | None = None,
) -> OnnxExport:
    """Write ``model`` (eval mode) as an ``.onnx`` file with torch's dynamo exporter; see ``export_program``.

    The input is ``pixel_values`` ``(B, in_chans, H, W)``, the output ``output``. The file records
    the opset (in the model) and, in its metadata, rectvit's version, the model config, the size
    rule and whether it is dynamic. ``opset``: from ``MIN_OPSET``. A dynamic file is run in
    onnxruntime at unseen sizes (``check_sizes``, a one-patch side included) against the eager model
    before it is put in place, and refused where it fails or differs. Written as ``save_checkpoint``
    writes (atomic, the umask's permissions, never onto a file the model was loaded from).
    ``program``: a result of ``export_program(model, ..., dynamic=dynamic)`` to convert instead of
    tracing again.
    """
    try:
        import onnxscript  # noqa: F401  (torch's dynamo exporter needs it)

        if dynamic:
            import onnxruntime  # noqa: F401  (a dynamic file is checked in it before it is written)
    except ImportError as e:
        raise RectViTError(
            f"ONNX export needs onnx and onnxscript, and a dynamic one onnxruntime to check the file ({e.name} is "
            "missing): pip install 'rectvit[export]'."
        ) from None
    _check_opset(opset)
    protect = sources_of(model)
    path = check_output(path, protect, (".onnx",))
    rule = size_rule(model) if dynamic else None
    given = program is not None
    if program is None:
        program = export_program(model, img_size, dynamic=dynamic, batch=batch)  # checked against eager
    seen = tuple(program.example_inputs[0][0].shape[-2:])
    off = off_rule_sizes(rule) if rule is not None else []
    if given and rule is not None:
        _check_symbolic(program, rule)
        check_dynamic(
            model, program.module(), check_sizes(rule, seen, one_patch=False), "torch.export program", seen, off
        )
    onnx_program = torch.onnx.export(
        program,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        opset_version=opset,
        dynamo=True,
        verbose=False,
    )
    onnx_model = onnx_program.model
    opset_used = int(onnx_model.opset_imports[""])
    if opset is not None and opset_used != opset:
        raise RectViTError(
            f"torch's exporter wrote opset {opset_used}, not the {opset} asked for; nothing was written."
        )
    dims = list(onnx_model.graph.inputs[0].shape)
    if dynamic:
        fixed = _fixed_onnx_axes(dims)
        if fixed:
            raise RectViTError(
                f"refused: the ONNX graph came out with a fixed {', '.join(fixed)} (traced at {seen[0]}x{seen[1]}), "
                "so it would not hold at other sizes; export statically (dynamic=False) at the sizes you need."
            )
        shape = ("B", int(dims[1]), "H", "W")
    else:
        shape = tuple(int(d) for d in dims)
    config = getattr(model, "model_config", None)
    onnx_model.metadata_props.update(
        {
            "rectvit.version": __version__,
            "rectvit.architecture": type(model).__name__,
            "rectvit.model_config": json.dumps(config) if config is not None else "",
            "rectvit.dynamic": str(bool(dynamic)).lower(),
            "rectvit.size_rule": str(rule) if rule else f"{shape[2]}x{shape[3]} only",
            "rectvit.opset": str(opset_used),
        }
    )
    checked = tuple(check_sizes(rule, seen, one_patch=True)) if rule is not None else ()

    def verify(tmp: Path) -> None:
        check_dynamic(model, _onnx_session(tmp), checked, "ONNX file (in onnxruntime)", seen, off)

    write_atomic(path, onnx_program.save, protect=protect, suffixes=(".onnx",), verify=verify if dynamic else None)
    return OnnxExport(path, opset_used, dynamic, shape, rule, checked)
