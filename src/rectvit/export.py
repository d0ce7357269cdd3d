"""Deployment: ``torch.export`` programs and ONNX files whose input size stays free.

A dynamic model (``dynamic_img_size=True``) exports with the batch, height and width symbolic: its
position table is resampled in the graph as tensor math on the symbolic grid
(:func:`rectvit.resample.resample_grid_separable`), so one program serves every size its
:class:`SizeRule` allows. A static export fixes the input size. ONNX files are written with torch's
dynamo exporter (needs the ``export`` extra: onnx, onnxscript; onnxruntime to run them).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from .errors import RectViTError
from .grid import Size, to_size

__all__ = ["AxisRule", "SizeRule", "OnnxExport", "size_rule", "export_program", "export_onnx"]

INPUT_NAME = "pixel_values"
OUTPUT_NAME = "output"


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

    The sizes a grid of ``k >= 2`` patches covers exactly, per axis (a side of 1 is specialised by
    torch's tracer): multiples of the patch stride (of backbone reduction x patch for a hybrid);
    ``stride * k + (patch - stride)`` for overlapping patches (AST: 10k + 6).
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
    if embed is None or not hasattr(model, "pos_embed"):
        raise RectViTError(
            f"a dynamic export of {what} is not supported (its windows/padding depend on the input size in "
            "ways a single traced program cannot express); export it statically at each size you need "
            "(dynamic=False, img_size=...), or use torch.compile(model, dynamic=True), which recompiles as needed."
        )
    if getattr(embed, "dynamic_img_pad", False):
        raise RectViTError(
            f"a dynamic export of a {what} built with dynamic_img_pad=True is not supported (its padding "
            "depends on the size modulo the patch); rebuild it with dynamic_img_pad=False and pad inputs "
            "to a multiple of the patch stride yourself, or export statically."
        )
    patch, stride = embed.patch_size, embed.patch_stride
    ratio = getattr(embed, "feature_ratio", (1, 1))
    axes = []
    for p, s, r in zip(patch, stride, ratio):
        # a grid of k patches covers exactly (k - 1) * s + p pixels (features for a hybrid)
        axes.append(AxisRule(step=s * r, offset=(p - s) * r, min_k=2))
    return SizeRule(axes[0], axes[1])


def _size_text(size) -> str:
    return "its img_size" if size is None else f"{size[0]}x{size[1]}"


def _example(model: nn.Module, img_size, batch: int) -> torch.Tensor:
    p = next(model.parameters())
    size = model.img_size if img_size is None else to_size(img_size, "img_size")
    return torch.randn(batch, model.in_chans, *size, dtype=p.dtype, device=p.device)


def _dynamic_shapes(rule: SizeRule, example: torch.Tensor) -> tuple[dict[int, Any], ...]:
    from torch.export import Dim

    dims: dict[int, Any] = {0: Dim("batch", min=1, max=1 << 16)}
    for axis, name, r in ((2, "height", rule.height), (3, "width", rule.width)):
        dims[axis] = r.step * Dim(f"{name}_steps", min=r.min_k, max=(1 << 16) // r.step) + r.offset
    return (dims,)


def export_program(
    model: nn.Module, img_size=None, *, dynamic: bool = True, batch: int | None = None
) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model`` in eval mode for ``(B, in_chans, H, W)`` inputs.

    ``dynamic=True``: the batch and the sizes ``size_rule(model)`` allows stay symbolic (the example
    input is ``img_size``, by default the model's, moved onto the rule). ``dynamic=False``: the
    program takes ``batch`` (default 1) inputs of ``img_size`` only. Raises ``RectViTError`` when a dynamic export
    is asked of a model that cannot be dynamic, or when the traced program came out static.
    """
    batch = (2 if dynamic else 1) if batch is None else batch
    if batch < 2 and dynamic:
        raise RectViTError(f"a dynamic export traces with batch >= 2 (1 would be specialised), got batch={batch}.")
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
    finally:
        model.train(was_training)
    if rule is not None:
        _check_symbolic(program, rule)
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
            f"the traced program fixed the {', '.join(fixed)} of its input (shape {tuple(shape)}), so it would not "
            f"hold for other sizes ({rule}); export statically (dynamic=False) at the sizes you need."
        )


@dataclass(frozen=True)
class OnnxExport:
    """What ``export_onnx`` wrote."""

    path: Path
    opset: int
    dynamic: bool
    input_shape: tuple  # ints, or names for symbolic axes
    size_rule: SizeRule | None

    def __str__(self) -> str:
        shape = "(" + ", ".join(str(d) for d in self.input_shape) + ")"
        sizes = f"; sizes {self.size_rule}" if self.size_rule else ""
        kind = "dynamic" if self.dynamic else "static"
        return f"wrote {self.path} (ONNX opset {self.opset}, {kind}, input {INPUT_NAME} {shape}{sizes})"


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
    """Write ``model`` (eval mode) as an ONNX file with torch's dynamo exporter; see ``export_program``.

    The input is ``pixel_values`` ``(B, in_chans, H, W)``, the output ``output``. The file records
    the opset (in the model) and, in its metadata, rectvit's version, the model config, the size
    rule and whether it is dynamic. Written to a temporary file, then renamed into place.
    ``program``: a result of ``export_program(model, ..., dynamic=dynamic)`` to convert instead of
    tracing again.
    """
    try:
        import onnxscript  # noqa: F401  (torch's dynamo exporter needs it)
    except ImportError:
        raise RectViTError(
            "ONNX export needs onnx and onnxscript: pip install 'rectvit[export]' (or onnx onnxscript)."
        ) from None
    if program is None:
        program = export_program(model, img_size, dynamic=dynamic, batch=batch)
    rule = size_rule(model) if dynamic else None
    onnx_program = torch.onnx.export(
        program,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        opset_version=opset,
        dynamo=True,
        verbose=False,
    )
    onnx_model = onnx_program.model
    shape = tuple(d if isinstance(d, int) else str(d) for d in onnx_model.graph.inputs[0].shape)
    if dynamic and all(isinstance(d, int) for d in shape):
        raise RectViTError(f"the ONNX graph came out static (input {shape}); export statically (dynamic=False).")
    opset_used = int(onnx_model.opset_imports[""])
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
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    try:
        onnx_program.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return OnnxExport(path, opset_used, dynamic, shape, rule)
