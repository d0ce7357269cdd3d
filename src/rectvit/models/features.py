"""``create_model(..., features_only=True)``: a model wrapped to return its feature maps, as timm's feature nets.

ViT and hybrid models give the outputs of selected blocks as ``(B, C, h, w)`` maps on the input's own
grid (timm's ``FeatureGetterNet``); Swin gives its stage outputs ``(B, h_i, w_i, C_i)`` channels-last
as timm's Swin feature net does (pass ``output_fmt="NCHW"`` for channels-first). The wrapped model is
pruned to the deepest block asked for, so a detection or segmentation backbone carries no unused
blocks or head. ``feature_info`` describes the returned levels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import RectViTError
from ._util import take_indices

__all__ = ["FeatureInfo", "FeatureGetterNet", "features_only"]

FEATURE_CLS = ("getter", "list")


class FeatureInfo:
    """The levels a feature net returns: timm's ``FeatureInfo`` (``channels()``, ``reduction()``,
    ``module_name()``, ``get_dicts()``, ``get(key)``), each level a dict with ``index``."""

    def __init__(self, feature_info: Sequence[dict[str, Any]], out_indices: Sequence[int]):
        self.out_indices = tuple(out_indices)
        self.info = [{**dict(feature_info[i]), "index": i} for i in self.out_indices]

    def get(self, key: str, idx: int | Sequence[int] | None = None):
        if idx is None:
            return [f[key] for f in self.info]
        if isinstance(idx, int):
            return self.info[idx][key]
        return [self.info[i][key] for i in idx]

    def get_dicts(self, keys: Sequence[str] | None = None, idx: int | Sequence[int] | None = None):
        picked = self.info if idx is None else [self.info[idx]] if isinstance(idx, int) else [self.info[i] for i in idx]
        out = [f if keys is None else {k: f[k] for k in keys} for f in picked]
        return out[0] if isinstance(idx, int) else out

    def channels(self, idx: int | Sequence[int] | None = None):
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None):
        return self.get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None):
        return self.get("module", idx)

    def __getitem__(self, item: int) -> dict[str, Any]:
        return self.info[item]

    def __len__(self) -> int:
        return len(self.info)


class FeatureGetterNet(nn.Module):
    """``model.forward_intermediates(x, indices=out_indices, intermediates_only=True)`` as a module.

    ``(B, in_chans, H, W)`` -> a list of maps, one per ``out_indices`` entry, in ``output_fmt``
    (``"NCHW"``: ``(B, C, h, w)`` on the input's own grid). The model is pruned to the deepest level
    (and its final norm dropped unless ``norm=True``); ``set_input_size`` and ``dynamic_img_size``
    reach the model through ``self.model``.
    """

    def __init__(
        self,
        model: nn.Module,
        out_indices: int | Sequence[int],
        output_fmt: str = "NCHW",
        norm: bool = False,
        prune: bool = True,
    ):
        super().__init__()
        levels = len(model.feature_info)
        if prune and hasattr(model, "prune_intermediate_layers"):
            kept = model.prune_intermediate_layers(out_indices, prune_norm=not norm)
        else:
            kept = take_indices(levels, out_indices, "feature level")
        self.feature_info = FeatureInfo(model.feature_info, kept)
        self.model = model
        self.out_indices = tuple(kept)
        self.output_fmt = output_fmt
        self.norm = norm

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model.forward_intermediates(
            x, indices=self.out_indices, norm=self.norm, output_fmt=self.output_fmt, intermediates_only=True
        )

    def set_input_size(self, *args: Any, **kwargs: Any) -> None:
        """The wrapped model's ``set_input_size``."""
        self.model.set_input_size(*args, **kwargs)


def features_only(
    model: nn.Module,
    out_indices: int | Sequence[int] | None = None,
    feature_cls: str = "getter",
    output_fmt: str | None = None,
    norm: bool = False,
) -> FeatureGetterNet:
    """Wrap ``model`` as a feature net (timm's ``features_only=True``); ``out_indices`` default as timm:
    the last 3 blocks of a ViT, every stage of a Swin."""
    if feature_cls not in FEATURE_CLS:
        raise RectViTError(
            f"feature_cls {feature_cls!r} is not supported; rectvit's feature nets are {FEATURE_CLS} "
            "(both call forward_intermediates)."
        )
    if not hasattr(model, "forward_intermediates") or not hasattr(model, "feature_info"):
        raise RectViTError(
            f"{type(model).__name__} has no forward_intermediates/feature_info; features_only needs both."
        )
    if out_indices is None:
        out_indices = model.default_out_indices()
    fmt = getattr(model, "feature_fmt", "NCHW") if output_fmt is None else output_fmt
    return FeatureGetterNet(model, out_indices, output_fmt=fmt, norm=norm)
