"""Inference on inputs of different sizes without padding: packed sequences, or groups of one shape.

A model in dynamic mode takes any input size its configuration allows (ViT: the position table is
resampled to each input's grid; Swin: every block pads its grid to whole windows and crops back).
``forward_variable`` runs many such inputs exactly, with no padding, in one of two ways:

- **Packing** (ViT family: ViT, DeiT, DeiT-3, registers, DINOv2, AST, hybrid; EVA family: EVA-02,
  rope-ViT, DINOv3): inputs are packed into chunks under a token budget (``rectvit.pack``;
  first-fit decreasing), and each chunk is one forward pass whose attention stays within each
  image. Few forward passes, whatever the mix of shapes.
- **Grouping by shape** (Swin, custom ``forward`` functions, ``packing=False``): inputs of one shape
  share a batch.

Both are exact: no sample's tokens see another sample's or any padding's. ``forward_variable``
switches a static model into dynamic mode for the call and restores it afterwards (also when the
call fails), so ``forward_variable(model, xs)`` works on any rectvit model and leaves it as it found it.

``pack``, ``PackedBatch`` and ``PackedTokens`` live in ``rectvit.layers.packed`` (models use the
types without importing this module); they are re-exported here and from ``rectvit``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .errors import InputSizeError, RectViTError
from .layers import Block
from .layers.packed import PackedBatch, PackedTokens, check_images, pack
from .models.eva import Eva, EvaBlock
from .models.vit import VisionTransformer

__all__ = [
    "forward_variable",
    "group_by_shape",
    "dynamic_mode",
    "pack",
    "plan_chunks",
    "supports_packing",
    "PackedBatch",
    "PackedTokens",
]


def group_by_shape(inputs: Sequence[torch.Tensor]) -> list[list[int]]:
    """Indices of ``inputs`` grouped by ``(shape, dtype, device)``, groups in order of first appearance."""
    groups: dict[tuple, list[int]] = {}
    for i, x in enumerate(inputs):
        groups.setdefault((tuple(x.shape), x.dtype, x.device), []).append(i)
    return list(groups.values())


@contextmanager
def dynamic_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Let ``model`` take any input size inside the block; every switch flipped is restored on exit.

    Switches are the model's ``dynamic_img_size`` and the ``strict_img_size`` of any submodule
    (a ViT's patch embedding). A model that has neither is used as it is.
    """
    saved: list[tuple[Any, str, Any]] = []
    try:
        if getattr(model, "dynamic_img_size", True) is False:
            saved.append((model, "dynamic_img_size", False))
            model.dynamic_img_size = True
        for m in model.modules():
            if getattr(m, "strict_img_size", False) is True:
                saved.append((m, "strict_img_size", True))
                m.strict_img_size = False
        yield model
    finally:
        for obj, name, value in reversed(saved):
            setattr(obj, name, value)


def _input_checker(model: nn.Module) -> Callable[[torch.Tensor], None] | None:
    """The model's own ``(B, C, H, W)`` input check (``RectViTModel.check_input``), if it has one."""
    check = getattr(model, "check_input", None)
    return check if callable(check) else None


def _model_device(model: nn.Module) -> torch.device | None:
    param = next(iter(model.parameters()), None)
    return None if param is None else param.device


def _validate(model: nn.Module, inputs: Sequence[Any]) -> None:
    """Raise a ``RectViTError`` naming the first bad input's index, before any forward pass runs.

    Checked: tensors, 3-d, the model's channel count, one dtype and one device for all (the model's,
    never ``meta``), and every distinct size against the model's own input check.
    """
    check_images(inputs, getattr(model, "in_chans", None), what="input")
    device = _model_device(model)
    if device is not None and device.type != "meta" and inputs[0].device != device:
        raise InputSizeError(
            f"input 0: on device {inputs[0].device}, the model on {device}; move the inputs (x.to({str(device)!r})) "
            "or the model first."
        )
    check = _input_checker(model)
    if check is None:
        return
    seen: set[tuple[int, ...]] = set()
    for i, x in enumerate(inputs):
        if tuple(x.shape) in seen:
            continue
        seen.add(tuple(x.shape))
        try:
            check(x.unsqueeze(0))  # a view: checks read shapes only
        except RectViTError as e:
            raise type(e)(f"input {i} (shape {tuple(x.shape)}): {e}") from None


def supports_packing(model: nn.Module) -> bool:
    """True for models whose ``forward`` takes a ``PackedBatch`` (the ViT and EVA families with their own blocks)."""
    if isinstance(model, Eva):
        return all(isinstance(b, EvaBlock) for b in model.blocks)
    return isinstance(model, VisionTransformer) and all(isinstance(b, Block) for b in model.blocks)


def plan_chunks(tokens: Sequence[int], max_tokens: int | None = None, max_batch: int | None = None) -> list[list[int]]:
    """Indices of items of ``tokens`` sizes, cut into chunks (first-fit decreasing); each chunk sorted.

    At most ``K = max(ceil(T / max_tokens), ceil(N / max_batch))`` chunks for ``N`` items of ``T``
    tokens in all, each with at most ``max_batch`` items. An item goes into the first chunk with
    room for it under ``max_tokens``; when none has room and ``K`` chunks are open, into the lightest
    chunk, which then exceeds ``max_tokens`` by less than that item (items are never split).
    """
    n = len(tokens)
    if n == 0:
        return []
    k = 1 if max_batch is None else math.ceil(n / max_batch)
    if max_tokens is not None:
        k = max(k, math.ceil(sum(tokens) / max_tokens))
    chunks: list[list[int]] = []
    loads: list[int] = []
    for i in sorted(range(n), key=lambda j: -tokens[j]):
        t = tokens[i]
        open_ = [c for c in range(len(chunks)) if max_batch is None or len(chunks[c]) < max_batch]
        fits = [c for c in open_ if max_tokens is None or loads[c] + t <= max_tokens]
        if fits:
            c = fits[0]
        elif len(chunks) < k:
            chunks.append([])
            loads.append(0)
            c = len(chunks) - 1
        else:
            c = min(open_, key=loads.__getitem__)
        chunks[c].append(i)
        loads[c] += t
    return [sorted(c) for c in chunks]


def _tokens_of(model: nn.Module, x: torch.Tensor) -> int:
    """Tokens the model makes of one ``(C, H, W)`` input: prefix plus patch grid."""
    h, w = model.feat_size(tuple(x.shape[-2:]))
    return int(getattr(model, "num_prefix_tokens", 0)) + h * w


def _split(out: Any, n: int) -> list[Any]:
    """A batched output (tensor, or tuple/list/dict of them) -> ``n`` per-sample outputs."""
    if isinstance(out, PackedTokens):
        return out.unpack()
    if isinstance(out, torch.Tensor):
        return list(out.unbind(0)) if out.dim() else [out] * n
    if isinstance(out, (tuple, list)):
        parts = [_split(o, n) for o in out]
        return [type(out)(p[j] for p in parts) for j in range(n)]
    if isinstance(out, dict):
        parts = {k: _split(v, n) for k, v in out.items()}
        return [{k: v[j] for k, v in parts.items()} for j in range(n)]
    raise RectViTError(f"cannot split a model output of type {type(out).__name__} into per-input outputs.")


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress is a nicety: say once how to get it, then run without
        print("forward_variable: progress=True shows a bar when tqdm is installed (pip install tqdm).", file=sys.stderr)
        return None
    return tqdm(total=total, desc="forward_variable", unit="input")


def forward_variable(
    model: nn.Module,
    inputs: Sequence[torch.Tensor],
    max_batch: int = 8,
    progress: bool = False,
    forward: Callable[[Any], Any] | None = None,
    max_tokens: int | None = None,
    packing: bool | None = None,
) -> list[Any]:
    """Run ``model`` on ``(C, H, W)`` inputs of different sizes, exactly, without padding.

    Returns one output per input, in the order of ``inputs``, **without the batch dimension**: e.g.
    ``(num_classes,)`` logits for each input (``torch.stack(outs)`` gives ``(N, num_classes)``),
    ``(P + h*w, C)`` tokens with ``forward=model.forward_features``. Outputs equal running each input
    alone through the model in dynamic mode.

    With packing (the default for ViT- and EVA-family models; ``packing=False`` turns it off) inputs are
    packed into chunks of at most ``max_batch`` inputs and about ``max_tokens`` tokens (first-fit
    decreasing, see ``plan_chunks``): with ``T`` tokens in all the blocks run at most
    ``max(ceil(T / max_tokens), ceil(N / max_batch))`` times. Without packing (Swin, a custom
    ``forward``) inputs are grouped by shape and each group runs in batches of up to ``max_batch``.

    A static model (``dynamic_img_size=False``) is switched to dynamic sizing for the call and
    restored afterwards; ``model.training`` and gradient mode are left to the caller (call
    ``model.eval()`` and wrap in ``torch.inference_mode()`` for inference). ``forward`` replaces
    ``model`` as the function called on each batch (e.g. ``model.forward_features``); it is given a
    ``PackedBatch`` when packing, else a ``(B, C, H, W)`` tensor. By default packing is used when
    ``forward`` is ``None`` or ``model.forward_features``.

    Every input is checked first: a non-tensor, a tensor that is not 3-d, a wrong channel count,
    inputs of different dtypes or devices (or not on the model's device), or a size the model cannot
    take raises a ``RectViTError`` naming the input's index before any work. ``progress=True`` shows
    a tqdm bar when tqdm is installed (else says once how to get it).
    """
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise RectViTError(f"max_batch must be a positive int, got {max_batch!r}.")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise RectViTError(f"max_tokens must be a positive int or None, got {max_tokens!r}.")
    inputs = list(inputs)
    if not inputs:
        return []
    if packing is None:
        packing = supports_packing(model) and (forward is None or forward == model.forward_features)
    elif packing and not supports_packing(model):
        raise RectViTError(
            f"{type(model).__name__} does not take packed batches; pass packing=None or False to group inputs by shape."
        )
    fn = model if forward is None else forward
    outputs: list[Any] = [None] * len(inputs)
    with dynamic_mode(model):
        _validate(model, inputs)
        if packing:
            chunks = plan_chunks([_tokens_of(model, x) for x in inputs], max_tokens, max_batch)
        else:
            chunks = _shape_chunks(model, inputs, max_batch, max_tokens)
        bar = _progress_bar(len(inputs), progress)
        try:
            for chunk in chunks:
                if packing:
                    batch = pack([inputs[i] for i in chunk])
                elif len(chunk) == 1:
                    batch = inputs[chunk[0]].unsqueeze(0)
                else:
                    batch = torch.stack([inputs[i] for i in chunk])
                for i, out in zip(chunk, _split(fn(batch), len(chunk))):
                    outputs[i] = out
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    return outputs


def _shape_chunks(
    model: nn.Module, inputs: list[torch.Tensor], max_batch: int, max_tokens: int | None
) -> list[list[int]]:
    """Groups of one shape, in order of first appearance, cut into batches of at most ``max_batch``
    (and, where the model says how many tokens an input makes, about ``max_tokens`` tokens)."""
    chunks = []
    for group in group_by_shape(inputs):
        size = max_batch
        if max_tokens is not None and hasattr(model, "feat_size"):
            size = max(1, min(max_batch, max_tokens // _tokens_of(model, inputs[group[0]])))
        chunks.extend(group[start : start + size] for start in range(0, len(group), size))
    return chunks
