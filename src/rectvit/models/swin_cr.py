"""Swin Transformer V2 CR (timm's ``SwinTransformerV2Cr``): rectangular windows, ``set_input_size``, any input size.

State dicts use timm's keys: ``patch_embed.{proj,norm}``, ``stages.i.downsample.{norm,reduction}``,
``stages.i.blocks.j.{attn.{qkv,proj,meta_mlp.fc1,meta_mlp.fc2,logit_scale},norm1,norm2,norm3,mlp}``,
``head.fc``. The position bias is a function of log-spaced relative coordinates (``meta_mlp``), so it
has no table to resample: a window change rebuilds the coordinates. Every window may be rectangular.

Data flow for a ``(B, in_chans, H, W)`` input (patch grid ``(h, w)``; stage ``i`` works on
``ceil(h / 2^i) x ceil(w / 2^i)``)::

    patch_embed (conv + LayerNorm)  -> (B, h, w, C)
    stages: [PatchMerging] + blocks -> (B, h_i, w_i, C * 2^i)   post-norm residual blocks, shifted windows
    forward_features                -> (B, C_last, h_last, w_last)  (NCHW, as timm)
    head (pool, fc)                 -> (B, num_classes)

The skeleton (blocks, stages, head, resizing) is ``models/_stages.py``, the windows, masks and the
attention ``layers/window.py``, shared with Swin v1/v2: a block shifts its tokens, zero-pads
bottom/right to whole windows, attends within windows (masked between regions the shift made
neighbours), merges, crops and shifts back, timm's order, so outputs match at every size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..grid import Size
from ..layers.window import WindowMultiHeadAttention
from ._stages import WindowStageModel
from ._util import constructor_config
from .registry import register_model

__all__ = ["SwinTransformerV2Cr"]


class SwinTransformerV2Cr(WindowStageModel):
    """Swin V2 CR taking ``(B, in_chans, H, W)`` inputs; timm's constructor keywords and defaults.

    ``window_size``: an int or ``(h, w)`` for every stage, or one per stage; by default each stage's
    window is the patch grid divided by ``window_ratio`` (8), so a rectangular grid gets rectangular
    windows. ``dynamic_img_size=True`` (or ``strict_img_size=False``) accepts any size holding one patch,
    cropped to whole patches as the patch convolution takes them (``dynamic_img_pad``: zero-padded up
    instead). ``forward_features`` gives NCHW maps, as timm's.
    """

    stages_name = "stages"
    feature_fmt = "NCHW"  # forward_features and features_only maps, as timm's Swin V2 CR
    _post_norm = True
    _final_norm = False  # the stages end in norm3 instead

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 4,
        window_size: Any = None,
        window_ratio: int | Sequence[int] = 8,
        always_partition: bool = False,
        strict_img_size: bool = True,
        dynamic_img_size: bool = False,
        dynamic_img_pad: bool = False,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        mlp_ratio: float = 4.0,
        init_values: float | None = 0.0,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        extra_norm_period: int = 0,
        extra_norm_stage: bool = False,
        global_pool: str = "avg",
    ):
        super().__init__(constructor_config(locals()))

    def _attention(self, stage: int, dim: int, window: Size) -> nn.Module:
        c = self.model_config
        return WindowMultiHeadAttention(dim, c["num_heads"][stage], window, c["attn_drop_rate"], c["proj_drop_rate"])

    def _block_options(self, stage: int, index: int) -> dict[str, Any]:
        """timm's extra norm: every ``extra_norm_period``-th block, and the last block of the last stage (of
        every stage with ``extra_norm_stage``)."""
        c = self.model_config
        period, depth = c["extra_norm_period"], c["depths"][stage]
        last_stage = stage == len(c["depths"]) - 1
        extra = bool(period and (index + 1) % period == 0) or (
            (c["extra_norm_stage"] or last_stage) and index + 1 == depth
        )
        return {"init_values": c["init_values"], "extra_norm": extra}

    def set_input_size(self, img_size=None, window_size=None, window_ratio=None, always_partition=None) -> None:
        """New nominal size and/or windows, with timm's parameters and order: ``window_size`` (int, ``(h, w)`` or one
        per stage) wins over ``window_ratio`` (grid divisor); with neither, every stage's window scales with the
        patch grid. See ``WindowStageModel.set_input_size``."""
        super().set_input_size(img_size, None, window_size, window_ratio, always_partition)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, H, W) -> (B, C_last, h_last, w_last)`` (NCHW, as timm)."""
        if torch.jit.is_scripting():  # a scripted model is a snapshot: nothing resizes it
            embed = self.patch_embed
            stages = self.stages
        else:
            embed, stages = self._parts()
        return stages(embed(x)).permute(0, 3, 1, 2)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, C, h, w) -> (B, num_classes)`` (pooled ``(B, C)`` with ``pre_logits``)."""
        return self.head(x.permute(0, 2, 3, 1), pre_logits=pre_logits)


# --------------------------------------------------------------------------------------------------
# Registry: timm's names and model_args.

_T = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
_S = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24))
_B = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))
_L = dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48))
_H = dict(embed_dim=352, depths=(2, 2, 18, 2), extra_norm_period=6)
_G = dict(embed_dim=512, depths=(2, 2, 42, 2), num_heads=(16, 32, 64, 128), extra_norm_period=6)


def _register(name: str, **config: Any) -> None:
    register_model(name, SwinTransformerV2Cr, **config)


for _size in (224, 384):
    _register(f"swinv2_cr_tiny_{_size}", img_size=_size, **_T)
    _register(f"swinv2_cr_small_{_size}", img_size=_size, **_S)
    _register(f"swinv2_cr_base_{_size}", img_size=_size, **_B)
    _register(f"swinv2_cr_large_{_size}", img_size=_size, **_L)
    _register(f"swinv2_cr_giant_{_size}", img_size=_size, **_G)
_register("swinv2_cr_huge_224", img_size=224, num_heads=(8, 16, 32, 64), **_H)
_register("swinv2_cr_huge_384", img_size=384, num_heads=(11, 22, 44, 88), **_H)
_register("swinv2_cr_tiny_ns_224", img_size=224, extra_norm_stage=True, **_T)
_register("swinv2_cr_small_ns_224", img_size=224, extra_norm_stage=True, **_S)
_register("swinv2_cr_small_ns_256", img_size=256, extra_norm_stage=True, **_S)
_register("swinv2_cr_base_ns_224", img_size=224, extra_norm_stage=True, **_B)
