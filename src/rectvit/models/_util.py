"""Small helpers shared by the model families."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import RectViTError
from ..grid import Size, padded_size, patch_grid
from ..layers.patch_embed import is_fx_symbolic_tracing
from ..resample import grid_resize, sincos_table


def take_indices(count: int, indices: int | Sequence[int] | None, what: str = "block") -> list[int]:
    """Indices to return from ``count`` blocks/stages: all (None), the last ``n`` (int), or the given ones.

    Negative indices count from the end; the result is sorted (the order outputs come in).
    """
    if indices is None:
        return list(range(count))
    if isinstance(indices, int):
        if not 0 < indices <= count:
            raise RectViTError(f"indices={indices} asks for the last {indices} {what}s; pass 1 to {count}.")
        return list(range(count - indices, count))
    taken = []
    for i in indices:
        j = count + i if i < 0 else i
        if not 0 <= j < count:
            raise RectViTError(
                f"{what} index {i} is out of range for a model of depth {count}; pass {-count} to {count - 1}."
            )
        taken.append(j)
    return sorted(taken)


def json_ready(value: Any) -> Any:
    """Tuples -> lists, recursively, so a model config survives a JSON round trip."""
    if isinstance(value, (tuple, list)):
        return [json_ready(v) for v in value]
    return value


def constructor_config(args: dict[str, Any], skip: Sequence[str] = ()) -> dict[str, Any]:
    """A constructor's keywords from its ``locals()`` (taken first thing), JSON-ready: what ``model_config`` holds.

    ``self``, ``__class__`` and the names in ``skip`` (code such as an embedding class) are left out.
    """
    dropped = {"self", "__class__", *skip}
    return {k: json_ready(v) for k, v in args.items() if k not in dropped}


def record_config(model: Any, **values: Any) -> None:
    """Record changed constructor keywords in ``model.model_config`` (the one way a config changes after
    construction), so ``type(model)(**model.model_config)`` rebuilds the model as it is now."""
    model.model_config.update({k: json_ready(v) for k, v in values.items()})


def with_defaults(cls: type, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` completed with the constructor defaults of ``cls`` (and of its bases, for ``**kwargs``)."""
    full: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.default is not inspect.Parameter.empty:
                full[p.name] = p.default
    return {**full, **config}


def switch_property(doc: str) -> property:
    """``dynamic_img_size`` as the switch it claims to be: it reads and sets ``patch_embed.strict_img_size``
    (the one place the size check looks) and records the change in ``model_config``."""

    def get(self) -> bool:
        return not self.patch_embed.strict_img_size

    def set(self, enable: bool) -> None:
        self.patch_embed.strict_img_size = not enable
        record_config(self, dynamic_img_size=bool(enable))

    return property(get, set, doc=doc)


def config_patch_grid(config: dict[str, Any]) -> Size:
    """The patch grid a (complete) config's ``img_size``, ``patch_size``, ``patch_stride`` and
    ``dynamic_img_pad`` give, as ``layers.PatchEmbed`` computes it."""
    img, patch, stride = config["img_size"], config["patch_size"], config.get("patch_stride")
    if config.get("dynamic_img_pad"):
        img = padded_size(img, patch, stride)
    return patch_grid(img, patch, stride)


def grid_table_like(
    table: torch.Tensor, tokens: torch.Tensor, sincos: bool, interpolation: str = "bicubic", antialias: bool = True
) -> torch.Tensor:
    """The ``(1, h, w, C)`` position table for the grid of ``tokens`` ``(B, h, w, C)``: the stored ``table``
    resampled, or (``sincos``) computed. Models call it as one opaque call in an FX graph (``torch.fx.wrap``),
    so a traced model takes each input's grid like the eager one; TorchScript compiles it."""
    h, w = tokens.shape[1], tokens.shape[2]
    if table.shape[1] == h and table.shape[2] == w:
        return table
    if sincos:
        return sincos_table(h, w, table.shape[-1], device=table.device).to(table.dtype)
    return grid_resize(table, (h, w), interpolation, antialias)


class GridTableCache:
    """Resampled copies of a ``(1, h, w, C)`` table, one per target grid, served only while the table
    still holds the values they were made from.

    Every lookup compares the table with a copy of it taken when the entries were made (one
    elementwise pass over the table, small next to a forward), so any change is seen: optimizer steps
    (fused and foreach kernels included, which do not bump ``_version``), ``load_state_dict``, ``.to()``,
    ``.data`` writes, and tables created under ``torch.inference_mode()`` (which have no version
    counter). Nothing in the key depends on grad or inference mode.
    """

    def __init__(self, max_entries: int = 32):
        self.max_entries = max_entries
        self._source: torch.Tensor | None = None  # the table the entries were made from
        self._entries: dict[tuple, torch.Tensor] = {}

    def _is_source(self, table: torch.Tensor) -> bool:
        src = self._source
        return (
            src is not None
            and src.shape == table.shape
            and src.dtype == table.dtype
            and src.device == table.device
            and torch.equal(src, table)
        )

    def get(self, table: torch.Tensor, grid: Size, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        if not self._is_source(table):
            self._entries.clear()
            self._source = table.detach().clone()
        key = (tuple(grid), table.dtype, table.device)
        out = self._entries.pop(key, None)
        if out is None:
            if len(self._entries) >= self.max_entries:
                self._entries.pop(next(iter(self._entries)))  # the least recently used
            out = make()
        self._entries[key] = out  # most recently used last
        return out

    def clear(self) -> None:
        self._entries.clear()
        self._source = None

    def __len__(self) -> int:
        return len(self._entries)


# FX wraps by name per module: GridPositions calls it here, so this one registration keeps every family's
# table one opaque call in a traced graph (a traced model takes each input's grid like the eager one).
torch.fx.wrap("grid_table_like")


class BlockStack:
    """timm's training conventions of a model that is one stack of ``blocks`` over ``patch_embed`` tokens
    (ViT, BEiT, EVA): parameter groups, feature levels and block pruning. A family names its stem's
    parameters in ``_stem_pattern`` and may override ``_feature_reduction`` (the token grid's step)."""

    _stem_pattern = r"^patch_embed"

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's parameter groups (layer-wise LR decay): the embedding "stem", then one group per block."""
        return {"stem": self._stem_pattern, "blocks": [(r"^blocks\.(\d+)", None), (r"^norm", (99999,))]}

    def _feature_reduction(self) -> int:
        return max(self.patch_embed.patch_size)

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """timm's feature levels: one per block, ``{"module": "blocks.i", "num_chs": embed_dim, "reduction": r}``
        (``r``: the step of the token grid, ``_feature_reduction()``)."""
        r = self._feature_reduction()
        return [{"module": f"blocks.{i}", "num_chs": self.embed_dim, "reduction": r} for i in range(len(self.blocks))]

    def _prune_blocks(self, indices: int | Sequence[int], prune_norm: bool) -> list[int]:
        """``prune_intermediate_layers``' common part: keep the blocks up to the deepest of ``indices`` (recorded
        as ``depth``) and, with ``prune_norm``, drop the final norm; returns the kept indices (non-negative).
        The family then prunes its head and records its norm flags."""
        take = take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[: max(take) + 1]
        record_config(self, depth=len(self.blocks))
        if prune_norm:
            self.norm = nn.Identity()
        return take


class GridPositions:
    """The absolute ``(1, h, w, C)`` position table and the prefix tokens of a token model (ViT, BEiT, EVA).

    The model holds ``pos_embed`` (``(1, h, w, C)`` or None), ``_pos_cache`` (a ``GridTableCache``),
    ``cls_token``, ``dist_token``, ``reg_token`` and ``prefix_pos_embed`` (each a tensor or None) and
    ``dynamic_img_size``. A family states how its table is resampled by overriding ``_resample_pos_table``
    (eager and TorchScript) and ``_pos_rule`` (the same rule as ``grid_table_like`` arguments, for FX).
    """

    @property
    def grid_size(self) -> Size:
        """``(h, w)``: the absolute table's grid (read off the table) when there is one, else the patch grid."""
        if self.pos_embed is not None:
            return (int(self.pos_embed.shape[1]), int(self.pos_embed.shape[2]))
        return self.patch_embed.grid_size

    def _pos_rule(self) -> tuple[bool, str, bool]:
        """``(sincos, interpolation, antialias)``: the default is ``resample_grid``'s bicubic with antialias."""
        return False, "bicubic", True

    def _resample_pos_table(self, table: torch.Tensor, grid: Size) -> torch.Tensor:
        """``table`` ``(1, h, w, C)`` on ``grid`` (no cache); the default is ``resample_grid(table, grid)``."""
        _, interpolation, antialias = self._pos_rule()
        return grid_resize(table, grid, interpolation, antialias)

    def _pos_table_like(self, tokens: torch.Tensor) -> torch.Tensor:
        """The ``(1, h, w, C)`` table for the grid of ``tokens`` ``(B, h, w, C)``: the stored one, resampled
        or computed as needed.

        Eager on CPU: resampled tables are cached per grid unless gradients must flow into ``pos_embed``;
        on accelerators they are recomputed (a cache check would synchronise with the host every forward).
        ``torch.compile``/``torch.export``: a dynamic model always resamples, as tensor math on the symbolic
        grid. FX: one opaque ``grid_table_like`` call. TorchScript: recomputed for every grid but the stored one.
        """
        table = self.pos_embed
        grid = (tokens.shape[1], tokens.shape[2])  # not int(): sizes stay symbolic when traced
        if not torch.jit.is_scripting():
            if is_fx_symbolic_tracing():
                sincos, interpolation, antialias = self._pos_rule()
                return grid_table_like(table, tokens, sincos, interpolation, antialias)
            return self._cached_pos_table(table, grid)
        if table.shape[1] == grid[0] and table.shape[2] == grid[1]:
            return table
        return self._resample_pos_table(table, grid)

    def _cached_pos_table(self, table: torch.Tensor, grid: Size) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return self._resample_pos_table(table, grid) if self.dynamic_img_size else table
        if tuple(table.shape[1:3]) == tuple(grid):
            return table
        if (torch.is_grad_enabled() and table.requires_grad) or table.device.type != "cpu":
            return self._resample_pos_table(table, grid)  # accelerators: recomputing beats a cache check's sync
        return self._pos_cache.get(table, grid, lambda: self._resample_pos_table(table.detach(), grid))

    def _prefix_tokens(self, batch: int) -> torch.Tensor | None:
        """``(B, P, C)``: class, distillation and register tokens, in that order, with their positions."""
        tokens: list[torch.Tensor] = []
        if self.cls_token is not None:
            tokens.append(self.cls_token)
        if self.dist_token is not None:
            tokens.append(self.dist_token)
        if self.reg_token is not None:
            tokens.append(self.reg_token)
        if len(tokens) == 0:
            return None
        prefix = torch.cat(tokens, dim=1)
        if self.prefix_pos_embed is not None:
            prefix = prefix + self.prefix_pos_embed
        return prefix.expand(batch, -1, -1)

    def _with_positions(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, h, w, C)`` patch tokens -> ``(B, P + h*w, C)``: the position table added, prefix tokens in front."""
        b = x.shape[0]
        if self.pos_embed is not None:
            x = x + self._pos_table_like(x)
        x = x.flatten(1, 2)
        prefix = self._prefix_tokens(b)
        if prefix is not None:
            x = torch.cat([prefix, x], dim=1)
        return x


def intermediates_output(
    outs: list[torch.Tensor],
    grid: Size,
    num_prefix_tokens: int,
    last: torch.Tensor,
    norm: Callable[[torch.Tensor], torch.Tensor],
    output_fmt: str,
    return_prefix_tokens: bool,
    output_dict: bool,
    intermediates_only: bool,
):
    """What a token model's ``forward_intermediates`` returns, as timm returns it, from the selected blocks'
    ``(B, P + h*w, C)`` outputs ``outs``, the grid ``(h, w)``, the last block's output and the final norm.

    Maps are ``(B, C, h, w)`` (``"NCHW"``) or ``(B, h*w, C)`` (``"NLC"``); with ``return_prefix_tokens``
    each comes with its ``(B, P, C)`` prefix tokens; ``output_dict`` gives timm's dict.
    """
    h, w = grid
    p = num_prefix_tokens
    prefixes = [y[:, :p] for y in outs]
    maps = [y[:, p:] for y in outs]
    if output_fmt == "NCHW":
        maps = [y.reshape(y.shape[0], h, w, -1).permute(0, 3, 1, 2).contiguous() for y in maps]
    if output_dict:
        out = {"image_intermediates": maps}
        if return_prefix_tokens and p:
            out["image_intermediates_prefix"] = prefixes
        if not intermediates_only:
            out["image_features"] = norm(last)
        return out
    if return_prefix_tokens and p:
        maps = list(zip(maps, prefixes))
    if intermediates_only:
        return maps
    return norm(last), maps
