"""Swin Transformer v1 and v2 for rectangular inputs, with state dicts in timm's layout.

Shapes: images are ``(B, C, H, W)``; every feature map inside the model is NHWC ``(B, h, w, C)`` so
its grid travels with the tensor. A stage works on windows of ``(wh, ww)`` tokens; a stage whose
grid is smaller than its window along an axis uses the grid as its window on that axis (and does not
shift along it), as timm does. Windows are fixed by ``img_size`` (and ``set_input_size``); with
``dynamic_img_size=True`` any input size runs with those windows, each block padding its grid up to
a multiple of the window and cropping back. The skeleton (stages, blocks, head, resizing) is
``models/_stages.py``; windows, masks and window attention are ``layers/window.py``.

v1 (``SwinTransformer``) keeps a learned relative-position-bias table per block, a
``(2wh-1) * (2ww-1), heads`` parameter; changing the window resamples it as a 2-D grid with
:func:`rectvit.resample.resample_relative_bias_table` (BEiT's geometric interpolation, as timm; or
bicubic, as the Swin paper, with ``bias_interpolation="bicubic"``). v2 (``SwinTransformerV2``)
computes its bias with an MLP over log-spaced relative coordinates, so a new window only rebuilds
the coordinate table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from ..errors import RectViTError
from ..grid import Size, to_size
from ..layers.window import WindowAttention, WindowAttentionV2, fit_window, per_stage, stage_grid_sizes, stage_windows
from ..resample import RELATIVE_BIAS_INTERPOLATIONS
from ._stages import WindowStageModel
from ._util import config_patch_grid, constructor_config, with_defaults
from .registry import register_model

__all__ = ["SwinTransformer", "SwinTransformerV2"]

_ACT_LAYERS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


class SwinTransformer(WindowStageModel):
    """Swin Transformer v1 (Liu et al. 2021) for any ``(H, W)``; timm's constructor and state dict.

    ``img_size`` int or ``(H, W)``; ``window_size`` int, ``(wh, ww)`` or one per stage;
    ``strict_img_size=False`` or ``dynamic_img_size=True`` accept any input size per forward
    (cropped to whole patches, or zero-padded up with rectvit's ``dynamic_img_pad``). Features are
    NHWC. ``bias_interpolation`` says how the relative-position-bias tables follow a window change
    (``set_input_size``, checkpoint loading): ``"geometric"`` (timm's and BEiT's numerics) or
    ``"bicubic"`` (the Swin paper's).
    """

    _no_weight_decay = ("relative_position_bias_table",)

    def __init__(
        self,
        img_size=224,
        patch_size=4,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        embed_dim: int | Sequence[int] = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        head_dim: int | Sequence[int | None] | None = None,
        window_size=7,
        always_partition: bool = False,
        strict_img_size: bool = True,
        dynamic_img_size: bool = False,
        mlp_ratio: float | Sequence[float] = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        bias_interpolation: str = "geometric",
        dynamic_img_pad: bool = False,
    ):
        config = constructor_config(locals())
        if bias_interpolation not in RELATIVE_BIAS_INTERPOLATIONS:
            raise RectViTError(
                f"bias_interpolation must be one of {RELATIVE_BIAS_INTERPOLATIONS}, got {bias_interpolation!r}."
            )
        super().__init__(config)

    def _attention(self, stage: int, dim: int, window: Size) -> nn.Module:
        c = self.model_config
        head_dim = per_stage(c["head_dim"], len(c["depths"]), "head_dim")[stage]
        return WindowAttention(
            dim, c["num_heads"][stage], window, head_dim, c["qkv_bias"], c["attn_drop_rate"], c["proj_drop_rate"],
            c["bias_interpolation"],
        )  # fmt: skip

    @property
    def bias_interpolation(self) -> str:
        """How the relative-position-bias tables follow a window change: ``"geometric"`` (timm's) or
        ``"bicubic"``; set at construction."""
        return self.model_config["bias_interpolation"]

    @classmethod
    def bias_windows(cls, config: dict[str, Any]) -> dict[str, Size]:
        """``{relative_position_bias_table key: window}`` of a model built from ``config``: size arithmetic."""
        c = with_defaults(cls, config)
        depths = c["depths"]
        grids = stage_grid_sizes(config_patch_grid(c), len(depths))
        out = {}
        for i, (depth, grid, window) in enumerate(zip(depths, grids, stage_windows(c["window_size"], len(depths)))):
            win, _ = fit_window(grid, window, False, c["always_partition"])
            out.update({f"layers.{i}.blocks.{j}.attn.relative_position_bias_table": win for j in range(depth)})
        return out


class SwinTransformerV2(WindowStageModel):
    """Swin Transformer v2 (Liu et al. 2022) for any ``(H, W)``; timm's constructor and state dict.

    Cosine window attention with a learned logit scale, a continuous position bias MLP over
    log-spaced coordinates (``pretrained_window_sizes`` sets their scale), and residual post-norm.
    """

    _post_norm = True
    _merge_post_norm = True
    _no_weight_decay = ("cpb_mlp", "logit_scale")
    _stem = r"^absolute_pos_embed|patch_embed"

    def __init__(
        self,
        img_size=224,
        patch_size=4,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        embed_dim: int | Sequence[int] = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size=7,
        always_partition: bool = False,
        strict_img_size: bool = True,
        dynamic_img_size: bool = False,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        act_layer: str = "gelu",
        pretrained_window_sizes=(0, 0, 0, 0),
        dynamic_img_pad: bool = False,
    ):
        config = constructor_config(locals())
        if act_layer not in _ACT_LAYERS:
            raise RectViTError(f"act_layer must be one of {sorted(_ACT_LAYERS)}, got {act_layer!r}.")
        super().__init__(config)

    def _attention(self, stage: int, dim: int, window: Size) -> nn.Module:
        c = self.model_config
        pretrained = c["pretrained_window_sizes"]
        if isinstance(pretrained, (list, tuple)) and len(pretrained) > len(c["depths"]):
            pretrained = pretrained[: len(c["depths"])]  # timm's default lists four stages; extra entries unused
        pretrained = per_stage(pretrained, len(c["depths"]), "pretrained_window_sizes")[stage]
        pretrained = (0, 0) if pretrained in (0, None) else to_size(pretrained, "pretrained_window_sizes")
        return WindowAttentionV2(
            dim, c["num_heads"][stage], window, c["qkv_bias"], c["attn_drop_rate"], c["proj_drop_rate"], pretrained
        )

    def _block_options(self, stage: int, index: int) -> dict[str, Any]:
        return {"act_layer": _ACT_LAYERS[self.model_config["act_layer"]], "init_values": 0.0}


# --------------------------------------------------------------------------------------------------
# Registry: timm's names and configs
# --------------------------------------------------------------------------------------------------

_T = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
_S = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24))
_B = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))

register_model("swin_tiny_patch4_window7_224", SwinTransformer, img_size=224, patch_size=4, window_size=7, **_T)
register_model("swin_small_patch4_window7_224", SwinTransformer, img_size=224, patch_size=4, window_size=7, **_S)
register_model("swin_base_patch4_window7_224", SwinTransformer, img_size=224, patch_size=4, window_size=7, **_B)
register_model("swin_base_patch4_window12_384", SwinTransformer, img_size=384, patch_size=4, window_size=12, **_B)
register_model("swinv2_tiny_window8_256", SwinTransformerV2, img_size=256, window_size=8, **_T)
register_model("swinv2_small_window8_256", SwinTransformerV2, img_size=256, window_size=8, **_S)
register_model("swinv2_tiny_window16_256", SwinTransformerV2, img_size=256, window_size=16, **_T)
