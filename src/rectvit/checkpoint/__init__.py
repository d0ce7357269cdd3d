"""Checkpoints that never lose their grid: read -> convert layout -> resolve grid -> adapt -> load.

Modules: ``io`` (files), ``hub`` (the Hugging Face hub), ``pretrained`` (timm's weights for a tag),
``layout`` (detect and convert: ``timm``, ``hf``), ``adapt`` (grid
resolution and shape adaptation), ``load``, ``save``, ``inspect``, ``export_timm`` (back to timm's
flat layout). Building a model from a checkpoint
(``load_model``) is ``rectvit.factory``'s: this package never builds models.
"""

from .adapt import LoadReport
from .export_timm import to_timm_state_dict
from .hub import HubSource
from .io import read_checkpoint
from .layout import Converted, convert
from .load import load_checkpoint
from .save import FORMAT_VERSION, save_checkpoint

__all__ = [
    "load_checkpoint",
    "save_checkpoint",
    "LoadReport",
    "HubSource",
    "read_checkpoint",
    "convert",
    "Converted",
    "FORMAT_VERSION",
    "to_timm_state_dict",
]
