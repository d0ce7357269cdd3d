"""What every rectvit model declares, whatever its family."""

from __future__ import annotations

import inspect
import typing
from typing import Any

import torch
from torch import nn

from ..grid import Size, to_size
from .pretrained_cfgs import pretrained_cfg_for

__all__ = ["RectViTModel"]


class RectViTModel(nn.Module):
    """Base of every rectvit model: the attributes the factory, checkpoints and tools read.

    - ``model_config``: the constructor keywords, JSON-ready; ``type(model)(**model.model_config)``
      rebuilds the model as it is now (kept current with ``models._util.record_config``).
    - ``arch_name``: the registered name the model was built from ("" when built from its class).
    - ``load_report``: what the last checkpoint load adapted and on what basis (``None`` before one).
    - ``source_path``: the file the weights were loaded from; ``save_checkpoint`` never overwrites it.
    - ``pretrained_cfg`` / ``default_cfg``: timm's data-config dict; ``feature_info``: timm's list of
      ``{"module", "num_chs", "reduction"}`` per feature level (both follow the model as it is now).
    """

    # No class-level annotations: TorchScript reads them as attribute types and cannot parse these.
    # model_config (a dict) is set by every constructor.
    arch_name = ""
    load_report = None
    source_path = None
    _pretrained_cfg = None
    feature_fmt = "NCHW"  # the layout of features_only maps (timm's per family)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # torch.jit.script compiles a module's properties; ours are Python API (configs, switches that
        # record their change), never read on a forward path, so TorchScript leaves them out.
        cls.__jit_unused_properties__ = [n for n, v in inspect.getmembers(cls) if isinstance(v, property)]
        # FX writes the root forward's annotations into the code it generates, and a string annotation
        # (``from __future__ import annotations``) becomes a name nothing defines when that code is scripted.
        if "forward" in cls.__dict__:
            try:
                cls.forward.__annotations__ = typing.get_type_hints(cls.forward)
            except (NameError, TypeError):  # a subclass naming a type only under TYPE_CHECKING: keep its strings
                pass

    # -- sizes: every family cuts its input with a patch embedding ``patch_embed`` (``layers.PatchEmbed`` or
    # one with its interface), which holds the nominal size, the patch size, the grid and the input check.

    @property
    def img_size(self) -> Size:
        """The nominal input size ``(H, W)``."""
        return self.patch_embed.img_size

    @property
    def patch_size(self) -> Size:
        return self.patch_embed.patch_size

    @property
    def grid_size(self) -> Size:
        """The patch grid ``(h, w)`` of ``img_size``."""
        return self.patch_embed.grid_size

    def feat_size(self, img_size) -> Size:
        """The ``(h, w)`` token grid of an input of ``img_size``."""
        return self.patch_embed.feat_size(to_size(img_size, "img_size"))

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``InputSizeError`` for anything but a ``(B, in_chans, H, W)`` batch of a size this model takes."""
        self.patch_embed.check_input(x)

    @classmethod
    def table_grid(cls, config: dict[str, Any]) -> Size | None:
        """The ``(h, w)`` of the absolute position table a model built from ``config`` has (None: no table)."""
        return None

    # -- timm conventions ----------------------------------------------------------------------------

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of storing them (the forward
        reads ``grad_checkpointing``; families whose stages hold the flag override this)."""
        self.grad_checkpointing = enable

    def get_classifier(self) -> nn.Module:
        """The classifier (``nn.Identity`` without classes); ``head`` unless a family says otherwise."""
        return self.head

    def _cfg_fields(self) -> dict[str, Any]:
        """The pretrained-cfg fields read off the model as it is now (``first_conv``, ``classifier``...);
        families override what differs from timm's usual names."""
        return {"first_conv": "patch_embed.proj", "classifier": "head"}

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """timm's pretrained cfg: the architecture's data fields (``mean``, ``std``, ``crop_pct``,
        ``interpolation``, ``tag``...) plus the live ones: ``input_size = (in_chans, H, W)`` of the model's
        own ``img_size``, ``num_classes``, ``fixed_input_size``, ``first_conv``, ``classifier``, ``pool_size``."""
        cfg = self._pretrained_cfg if self._pretrained_cfg is not None else pretrained_cfg_for(self.arch_name)
        h, w = self.img_size
        live = {
            "input_size": (int(self.in_chans), int(h), int(w)),
            "fixed_input_size": not self.dynamic_img_size,
            "num_classes": int(self.num_classes),
            "pool_size": None,
        }
        return {**cfg, **live, **self._cfg_fields()}

    @pretrained_cfg.setter
    def pretrained_cfg(self, cfg: dict[str, Any]) -> None:
        self._pretrained_cfg = dict(cfg)

    @property
    def default_cfg(self) -> dict[str, Any]:
        """timm's older name for ``pretrained_cfg``."""
        return self.pretrained_cfg

    @default_cfg.setter
    def default_cfg(self, cfg: dict[str, Any]) -> None:
        self._pretrained_cfg = dict(cfg)

    def default_out_indices(self) -> int | tuple[int, ...]:
        """The feature levels ``features_only`` returns by default (timm's: the last 3 blocks of a ViT)."""
        return 3
