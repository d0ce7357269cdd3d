"""The stage-model skeleton of Swin v1/v2 and Swin v2 CR: blocks of (shifted) window attention, patch
merging, stages, the pooled head, and ``WindowStageModel``, the base both model files build on.

A model is ``patch_embed -> stages -> norm -> head``; every feature map inside is NHWC ``(B, h, w, C)``.
A family states its attention (``_attention``), its block options (``_block_options``) and a few class
attributes; the base builds the stages, resizes them (``set_input_size``) and gives timm's conventions:
``forward_intermediates``, ``feature_info``, ``prune_intermediate_layers``, ``group_matcher``, the head.
docs/design.md ("Windows") describes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import RectViTError
from ..grid import Size, to_size
from ..layers import DropPath, Mlp, PatchEmbed
from ..layers.window import (
    check_window_tokens,
    copy_module,
    fit_window,
    merge_shifted,
    partition_shifted,
    per_stage,
    stage_grid_sizes,
    stage_window_sizes,
)
from ._util import record_config, take_indices
from .base import RectViTModel

__all__ = ["SwinBlock", "PatchMerging", "SwinStage", "ClassifierHead", "WindowStageModel"]

_POOL_TYPES = ("", "avg", "max", "avgmax", "catavgmax")


class SwinBlock(nn.Module):
    """One block on ``(B, H, W, C)``: (shifted) window attention ``attn`` and an MLP, each residual.

    Pre-norm (v1: ``x + attn(norm1(x))``) or residual post-norm (v2, v2 CR: ``x + norm1(attn(x))``, norm
    weights starting at ``init_values``); ``extra_norm`` adds v2 CR's ``norm3`` after the block.
    """

    def __init__(
        self,
        dim: int,
        attn: nn.Module,
        window: Size,
        shift: Size,
        shifted: bool,
        mlp_ratio: float = 4.0,
        act_layer: type[nn.Module] = nn.GELU,
        proj_drop: float = 0.0,
        drop_path: float = 0.0,
        post_norm: bool = False,
        init_values: float | None = None,
        extra_norm: bool = False,
    ):
        super().__init__()
        self.window_size, self.shift_size = window, shift
        self.shifted = shifted
        self.post_norm = post_norm
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attn
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=proj_drop)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm3 = nn.LayerNorm(dim) if extra_norm else nn.Identity()
        if init_values is not None:
            with torch.no_grad():
                self.norm1.weight.fill_(init_values)
                self.norm2.weight.fill_(init_values)

    def with_window(self, grid: Size, window: Size, always_partition: bool) -> nn.Module:
        """This block on a stage grid ``grid`` with target ``window``: itself when nothing changes, else a copy
        (sharing every parameter but resampled ones); this block never changes."""
        win, shift = fit_window(grid, window, self.shifted, always_partition)
        attn = self.attn.with_window(win)
        if attn is self.attn and (win, shift) == (self.window_size, self.shift_size):
            return self
        return copy_module(self, window_size=win, shift_size=shift, attn=attn)

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` -> ``(B, H, W, C)``: shift, pad to windows, attend, merge, crop, shift back."""
        _, h, w, _ = x.shape
        windows, mask, padded = partition_shifted(x, self.window_size, self.shift_size)
        windows = self.attn(windows, mask)
        return merge_shifted(windows, self.window_size, self.shift_size, padded, (h, w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.post_norm:
            x = x + self.drop_path1(self.norm1(self._attention(x)))
            x = x + self.drop_path2(self.norm2(self.mlp(x)))
        else:
            x = x + self.drop_path1(self._attention(self.norm1(x)))
            x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return self.norm3(x)


class PatchMerging(nn.Module):
    """``(B, H, W, C)`` -> ``(B, ceil(H/2), ceil(W/2), out_dim)``: concatenate each 2x2 neighbourhood.

    Odd sides are zero-padded first. Channel order is timm's and the original Swin's:
    ``[(0,0), (1,0), (0,1), (1,1)]`` as ``(row, col)`` offsets. v1 and v2 CR normalise the 4C
    concatenation before the reduction, v2 (``post_norm``) normalises the reduced output.
    """

    def __init__(self, dim: int, out_dim: int, post_norm: bool = False):
        super().__init__()
        self.post_norm = post_norm
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)
        self.norm = nn.LayerNorm(out_dim if post_norm else 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, _ = x.shape
        x = nn.functional.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        if self.post_norm:
            return self.norm(self.reduction(x))
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """``downsample`` (patch merging, or identity for stage 0), then ``blocks`` alternating plain and
    shifted windows; NHWC in and out."""

    def __init__(self, downsample: nn.Module, blocks: Sequence[nn.Module]):
        super().__init__()
        self.grad_checkpointing = False
        self.downsample = downsample
        self.blocks = nn.Sequential(*blocks)

    def with_windows(self, grid: Size, window: Size, always_partition: bool) -> nn.Module:
        """This stage with every block on ``grid`` and ``window`` (``SwinBlock.with_window``); itself if unchanged."""
        blocks = [block.with_window(grid, window, always_partition) for block in self.blocks]
        if all(new is old for new, old in zip(blocks, self.blocks)):
            return self
        return copy_module(self, blocks=copy_module(self.blocks, **{str(i): b for i, b in enumerate(blocks)}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if not torch.jit.is_scripting():  # TorchScript has no checkpoint: a scripted stage never recomputes
            if self.grad_checkpointing and torch.is_grad_enabled():
                for block in self.blocks:  # activations recomputed in the backward pass
                    x = checkpoint(block, x, use_reentrant=False)
                return x
        return self.blocks(x)


class ClassifierHead(nn.Module):
    """Global pooling of NHWC features, dropout, and the ``fc`` classifier (timm's ``head.fc``)."""

    def __init__(self, in_features: int, num_classes: int, pool_type: str = "avg", drop_rate: float = 0.0):
        super().__init__()
        if pool_type not in _POOL_TYPES:
            raise RectViTError(f"global_pool must be one of {_POOL_TYPES}, got {pool_type!r}.")
        self.pool_type = pool_type
        self.drop = nn.Dropout(drop_rate)
        self.num_features = in_features * (2 if pool_type == "catavgmax" else 1)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` -> ``(B, C)`` (or ``(B, 2C)`` for catavgmax; unchanged for '')."""
        if self.pool_type == "":
            return x
        avg, mx = x.mean(dim=(1, 2)), x.amax(dim=(1, 2))
        return {"avg": avg, "max": mx, "avgmax": 0.5 * (avg + mx), "catavgmax": torch.cat([avg, mx], -1)}[
            self.pool_type
        ]

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.pool(x))
        return x if pre_logits else self.fc(x)


class WindowStageModel(RectViTModel):
    """Base of the Swin models: ``patch_embed`` (with LayerNorm), stages of window-attention blocks named
    ``stages_name`` (timm's key prefix), a final ``norm`` (identity without ``_final_norm``) and a pooled head.

    A family records its constructor keywords (``model_config``), passes them to ``__init__`` and gives
    ``_attention(stage, dim, window)`` and ``_block_options(stage, index)``. Its ``forward_features`` takes
    ``patch_embed`` and the stages together from ``_parts()``: ``set_input_size`` builds new ones (copies
    sharing every parameter but resampled ones) and installs both in one assignment, so a forward that
    runs meanwhile sees the old model or the new one, never a mix.
    """

    stages_name = "layers"
    feature_fmt = "NHWC"  # forward_features and features_only maps, as timm's Swin
    _post_norm = False  # residual post-norm blocks (v2, v2 CR)
    _merge_post_norm = False  # patch merging normalises after its reduction (v2)
    _final_norm = True  # a LayerNorm after the last stage (timm's ``norm``)
    _no_weight_decay = ()  # parameter-name parts, as timm
    _stem = r"^patch_embed"

    def __init__(self, config: dict[str, Any]):
        super().__init__()
        self.model_config = config
        depths, num_stages = config["depths"], len(config["depths"])
        if len(config["num_heads"]) != num_stages:
            raise RectViTError(
                f"num_heads {tuple(config['num_heads'])} needs one entry per stage of depths {tuple(depths)}."
            )
        self.in_chans = config["in_chans"]
        self.num_classes = config["num_classes"]
        self.global_pool = config["global_pool"]
        self.always_partition = bool(config["always_partition"])
        dims = _stage_dims(config["embed_dim"], num_stages)
        self._dims = dims
        self.embed_dim = dims[0]
        self.num_features = self.head_hidden_size = dims[-1]
        dynamic = config["dynamic_img_size"] or not config["strict_img_size"]
        self.patch_embed = PatchEmbed(
            config["img_size"], config["patch_size"], in_chans=self.in_chans, embed_dim=dims[0],
            dynamic_img_pad=config["dynamic_img_pad"], strict_img_size=not dynamic, norm_layer=nn.LayerNorm,
        )  # fmt: skip
        grid = self.patch_embed.grid_size
        window_size, window_ratio = config["window_size"], config.get("window_ratio")
        if window_size is None and window_ratio is None:
            raise RectViTError("pass window_size (an int, (wh, ww) or one per stage) or window_ratio (a grid divisor).")
        windows = stage_window_sizes(grid, ((1, 1),) * num_stages, grid, window_size, window_ratio)
        grids = stage_grid_sizes(grid, num_stages)
        check_window_tokens(grids, windows, self.always_partition)
        self._ref_windows: tuple[Size, ...] = windows
        self._ref_grid: Size = grid
        self.add_module(self.stages_name, self._make_stages(dims, grids, windows))
        self.norm = nn.LayerNorm(dims[-1]) if self._final_norm else nn.Identity()
        self.head = ClassifierHead(self.num_features, self.num_classes, self.global_pool, config["drop_rate"])
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _attention(self, stage: int, dim: int, window: Size) -> nn.Module:
        """The window attention of a block of ``stage`` (width ``dim``) for ``window``."""
        raise NotImplementedError

    def _block_options(self, stage: int, index: int) -> dict[str, Any]:
        """``SwinBlock`` keywords of block ``index`` of ``stage`` beyond the shared ones."""
        return {}

    def _make_stages(self, dims: list[int], grids: Sequence[Size], windows: Sequence[Size]) -> nn.Sequential:
        c = self.model_config
        depths = c["depths"]
        mlp_ratios = per_stage(c["mlp_ratio"], len(depths), "mlp_ratio")
        total = sum(depths)
        rates = [c["drop_path_rate"] * i / max(total - 1, 1) for i in range(total)]  # stochastic depth decay
        stages = []
        for i, depth in enumerate(depths):
            blocks = []
            for j in range(depth):
                window, shift = fit_window(grids[i], windows[i], j % 2 == 1, self.always_partition)
                blocks.append(
                    SwinBlock(
                        dims[i],
                        self._attention(i, dims[i], window),
                        window,
                        shift,
                        j % 2 == 1,
                        mlp_ratio=mlp_ratios[i],
                        proj_drop=c["proj_drop_rate"],
                        drop_path=rates[sum(depths[:i]) + j],
                        post_norm=self._post_norm,
                        **self._block_options(i, j),
                    )  # fmt: skip
                )
            merge = PatchMerging(dims[i - 1], dims[i], self._merge_post_norm) if i > 0 else nn.Identity()
            stages.append(SwinStage(merge, blocks))
        return nn.Sequential(*stages)

    # ---- sizes ---------------------------------------------------------------------------------

    def _parts(self) -> tuple[nn.Module, nn.Sequential]:
        """``(patch_embed, stages)`` from one read of the model's children (eager; see the class docstring)."""
        children = self._modules
        return children["patch_embed"], children[self.stages_name]

    @property
    def dynamic_img_size(self) -> bool:
        """Whether any input size holding one patch is accepted; ``patch_embed.strict_img_size`` is the switch.
        Setting it records ``strict_img_size`` and ``dynamic_img_size``, so a rebuilt model keeps it."""
        return not self.patch_embed.strict_img_size

    @dynamic_img_size.setter
    def dynamic_img_size(self, value: bool) -> None:
        self.patch_embed.strict_img_size = not value
        record_config(self, strict_img_size=not value, dynamic_img_size=bool(value))

    @property
    def num_layers(self) -> int:
        """The number of stages (timm's name)."""
        return len(self._parts()[1])

    @property
    def window_size(self) -> tuple[Size, ...]:
        """The window ``(wh, ww)`` each stage uses at ``img_size`` (clipped to grids smaller than it)."""
        return tuple(tuple(stage.blocks[0].window_size) if len(stage.blocks) else (0, 0) for stage in self._parts()[1])

    def stage_grids(self, img_size=None) -> tuple[Size, ...]:
        """The token grid of every stage for ``img_size`` (default: the model's)."""
        size = self.img_size if img_size is None else to_size(img_size, "img_size")
        return stage_grid_sizes(self.patch_embed.feat_size(size), self.num_layers)

    def set_input_size(
        self,
        img_size=None,
        patch_size=None,
        window_size=None,
        window_ratio: int | Sequence[int] | None = None,
        always_partition: bool | None = None,
        strict_img_size: bool | None = None,
    ) -> None:
        """Change the nominal input size, patch size and/or windows, with timm's parameters and order.

        ``window_size``: an int or ``(wh, ww)`` for all stages, or one per stage; else ``window_ratio``
        divides the patch grid; else each stage's window scales with the patch grid (timm's rule), so
        pass the old window to keep it. Explicit windows become the reference for later calls. A new
        ``patch_size`` PI-resizes the patch kernel; a new window resamples v1 bias tables and rebuilds
        coordinate tables. ``strict_img_size=False`` accepts any input size.

        Everything is checked and built first (new modules for whatever changes); then ``patch_embed``
        and the stages are replaced in one assignment. A failed call leaves the model as it was, and a
        forward running meanwhile finishes on the old modules.
        """
        embed_plan = self.patch_embed.plan_input_size(img_size, patch_size)  # sizes checked, new kernel made
        grid = embed_plan["grid_size"]
        windows = stage_window_sizes(grid, self._ref_windows, self._ref_grid, window_size, window_ratio)
        partition = self.always_partition if always_partition is None else bool(always_partition)
        grids = stage_grid_sizes(grid, len(windows))
        check_window_tokens(grids, windows, partition)
        _, stages = self._parts()
        resized = [stage.with_windows(g, w, partition) for stage, g, w in zip(stages, grids, windows)]
        if any(new is not old for new, old in zip(resized, stages)):
            stages = copy_module(stages, **{str(i): s for i, s in enumerate(resized)})
        embed = copy_module(self.patch_embed)
        embed.apply_input_size(embed_plan)
        if strict_img_size is not None:
            embed.strict_img_size = bool(strict_img_size)
        self._modules = {**self._modules, "patch_embed": embed, self.stages_name: stages}  # the one swap
        if window_size is not None or window_ratio is not None:
            self._ref_windows, self._ref_grid = windows, grid
        self.always_partition = partition
        strict = embed.strict_img_size
        record_config(
            self, img_size=embed.img_size, patch_size=embed.patch_size, window_size=windows,
            always_partition=partition, strict_img_size=strict, dynamic_img_size=not strict,
        )  # fmt: skip

    # ---- timm's conventions --------------------------------------------------------------------

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """timm's feature levels, one per stage of the full model: ``{"num_chs", "reduction", "module"}``."""
        r = max(self.patch_size)
        return [dict(num_chs=d, reduction=r * 2**i, module=f"{self.stages_name}.{i}") for i, d in enumerate(self._dims)]

    def default_out_indices(self) -> tuple[int, ...]:
        return tuple(range(self.num_layers))

    def _cfg_fields(self) -> dict[str, Any]:
        return {"first_conv": "patch_embed.proj", "classifier": "head.fc", "pool_size": self.stage_grids()[-1]}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of storing them."""
        for stage in self._parts()[1]:
            stage.grad_checkpointing = enable

    def get_classifier(self) -> nn.Module:
        """The classifier ``head.fc`` (``nn.Identity`` without classes)."""
        return self.head.fc

    def no_weight_decay(self) -> set[str]:
        """Names of parameters to train without weight decay (timm's: the position-bias parameters)."""
        return {n for n, _ in self.named_parameters() if any(k in n for k in self._no_weight_decay)}

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's parameter groups (stem, then per stage or per block) for layer-wise learning rates."""
        name = self.stages_name
        blocks = [(rf"^{name}\.(\d+).downsample", (0,)), (rf"^{name}\.(\d+)\.\w+\.(\d+)", None)]
        if self._final_norm:
            blocks.append((r"^norm", (99999,)))
        return dict(stem=self._stem, blocks=rf"^{name}\.(\d+)" if coarse else blocks)

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last of ``indices`` (and the final norm and head, as timm).

        Returns the kept indices. A pruned model's ``model_config`` still describes the full model.
        """
        stages = self._parts()[1]
        take = take_indices(len(stages), indices, "stage")
        last = max(take)
        prune_end = last < len(stages) - 1
        if prune_norm or prune_end:
            self.norm = nn.Identity()  # sized for the last stage, applied only after it
        setattr(self, self.stages_name, stages[: last + 1])
        self._ref_windows = self._ref_windows[: last + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[last]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier with one for ``num_classes`` (0: none), optionally a new pooling."""
        pool = self.global_pool if global_pool is None else global_pool
        head = ClassifierHead(self.num_features, num_classes, pool, self.head.drop.p)
        if isinstance(head.fc, nn.Linear):
            nn.init.trunc_normal_(head.fc.weight, std=0.02)
            nn.init.zeros_(head.fc.bias)
        weight = self.patch_embed.proj.weight
        self.head = head.to(weight.device, weight.dtype).train(self.training)
        self.head_hidden_size = self.head.num_features
        self.num_classes, self.global_pool = num_classes, pool
        record_config(self, num_classes=num_classes, global_pool=pool)

    # ---- forward -------------------------------------------------------------------------------

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> normalised last-stage features ``(B, h, w, C')`` (NHWC, as timm's Swin)."""
        if torch.jit.is_scripting():  # a scripted model is a snapshot: nothing resizes it
            embed = self.patch_embed
            stages = self.layers
        else:
            embed, stages = self._parts()
        return self.norm(stages(embed(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, h, w, C')`` -> logits ``(B, num_classes)``, or pooled features if ``pre_logits``."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ):
        """Per-stage feature maps, each ``(B, C_i, h_i, w_i)`` (NCHW) or ``(B, h_i, w_i, C_i)`` (NHWC).

        ``indices``: the last n stages (int), the given stages (sequence), or all (None). ``norm``
        applies the final norm to the last stage's map. Returns the maps, or ``(final features, maps)``
        (the final features as ``forward_features`` gives them) unless ``intermediates_only``.
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise RectViTError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}.")
        embed, stages = self._parts()
        take = take_indices(len(stages), indices, "stage")
        last = len(stages) - 1
        run = stages[: max(take) + 1] if stop_early else stages
        x = embed(x)
        maps = []
        for i, stage in enumerate(run):
            x = stage(x)
            if i in take:
                y = self.norm(x) if norm and i == last else x
                maps.append(y.permute(0, 3, 1, 2).contiguous() if output_fmt == "NCHW" else y)
        if intermediates_only:
            return maps
        if len(run) == len(stages):
            x = self.norm(x)
        return (x if self.feature_fmt == "NHWC" else x.permute(0, 3, 1, 2)), maps


def _stage_dims(embed_dim: int | Sequence[int], num_stages: int) -> list[int]:
    """Channels per stage: given, or ``embed_dim`` doubled at every stage."""
    if isinstance(embed_dim, (list, tuple)):
        return list(per_stage(embed_dim, num_stages, "embed_dim"))
    return [embed_dim * 2**i for i in range(num_stages)]
