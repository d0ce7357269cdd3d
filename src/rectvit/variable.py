"""Inference on inputs of different sizes without padding: group by shape, batch each group.

A model in dynamic mode takes any input size its configuration allows (ViT: the position table is
resampled to each input's grid; Swin: every block pads its grid to whole windows and crops back),
so inputs of the same shape can share a batch and none ever needs padding. That is exact, because
no sample's tokens see another sample's or any padding's, and it avoids all the work padding costs.

``forward_variable`` switches a static model into dynamic mode for the call and restores it
afterwards (also when the call fails), so ``forward_variable(model, xs)`` works on any rectvit model
and leaves it as it found it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .errors import InputSizeError, RectViTError

__all__ = ["forward_variable", "group_by_shape", "dynamic_mode"]


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
    """The model's own ``(B, C, H, W)`` input check (raising ``InputSizeError``), if it has one."""
    check = getattr(model, "_check_input", None) or getattr(model, "check_input", None)
    if callable(check):
        return check
    embed = getattr(model, "patch_embed", None)
    check = getattr(embed, "check_input", None)
    return check if callable(check) else None


def _validate(model: nn.Module, inputs: Sequence[Any]) -> None:
    """Raise a ``RectViTError`` naming the first bad input's index, before any forward pass runs."""
    in_chans = getattr(model, "in_chans", None)
    check = _input_checker(model)
    for i, x in enumerate(inputs):
        if not isinstance(x, torch.Tensor):
            raise InputSizeError(f"input {i}: expected a (C, H, W) tensor, got {type(x).__name__}.")
        if x.dim() != 3:
            raise InputSizeError(
                f"input {i}: expected a 3-d (C, H, W) tensor, got a {x.dim()}-d tensor of shape {tuple(x.shape)}; "
                "pass single images without a batch dimension (x[0] or x.squeeze(0))."
            )
        if in_chans is not None and x.shape[0] != in_chans:
            raise InputSizeError(
                f"input {i}: expected {in_chans} channel(s), got {x.shape[0]} (shape {tuple(x.shape)}); "
                f"convert the input or build the model with in_chans={x.shape[0]}."
            )
        if check is not None:
            try:
                check(x.unsqueeze(0))  # a view: checks read shapes only
            except RectViTError as e:
                raise type(e)(f"input {i} (shape {tuple(x.shape)}): {e}") from None


def _split(out: Any, n: int) -> list[Any]:
    """A batched output (tensor, or tuple/list/dict of them) -> ``n`` per-sample outputs."""
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
    except ImportError:  # progress is a nicety: without tqdm, run silently
        return None
    return tqdm(total=total, desc="forward_variable", unit="input")


def forward_variable(
    model: nn.Module,
    inputs: Sequence[torch.Tensor],
    max_batch: int = 8,
    progress: bool = False,
    forward: Callable[[torch.Tensor], Any] | None = None,
) -> list[Any]:
    """Run ``model`` on ``(C, H, W)`` inputs of different sizes, exactly, without padding.

    Inputs are grouped by shape (and dtype/device); each group runs as batches of up to
    ``max_batch``; the result is one output per input, in the order of ``inputs`` (each the
    corresponding row of its batch's output, e.g. ``(num_classes,)`` logits). Outputs equal running
    each input alone through the model in dynamic mode.

    A static model (``dynamic_img_size=False``) is switched to dynamic sizing for the call and
    restored afterwards; ``model.training`` and gradient mode are left to the caller (call
    ``model.eval()`` and wrap in ``torch.inference_mode()`` for inference). ``forward`` replaces
    ``model`` as the function called on each batch (e.g. ``model.forward_features``).

    Every input is checked first: a non-tensor, a tensor that is not 3-d, a wrong channel count or a
    size the model cannot take raises a ``RectViTError`` naming the input's index before any work.
    ``progress=True`` shows a tqdm bar when tqdm is installed.
    """
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise RectViTError(f"max_batch must be a positive int, got {max_batch!r}.")
    inputs = list(inputs)
    fn = model if forward is None else forward
    outputs: list[Any] = [None] * len(inputs)
    with dynamic_mode(model):
        _validate(model, inputs)
        bar = _progress_bar(len(inputs), progress)
        try:
            for group in group_by_shape(inputs):
                for start in range(0, len(group), max_batch):
                    chunk = group[start : start + max_batch]
                    if len(chunk) == 1:
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
