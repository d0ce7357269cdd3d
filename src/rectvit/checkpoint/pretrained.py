"""timm's pretrained weights for a named tag: where they are, what grid they record, how they load.

A pretrained cfg (``models.pretrained_cfgs.pretrained_cfg_for``, with timm's ``pretrained_cfg_overlay``) names
its weights as timm's ``_resolve_pretrained_source`` reads them: ``source="hf-hub"`` / ``"local-dir"`` first,
then an in-memory ``state_dict``, a local ``file``, the hub repository ``hf_hub_id`` (``hf_hub_filename``,
else ``model.safetensors`` before ``pytorch_model.bin``); timm's ``url``-only weights are not fetched.

The tag records an input size, so the architecture's size arithmetic at that size is a record of the grid
(and of Swin / BEiT bias windows) the weights were trained on (docs/design.md, invariant 2): no
``source_grid`` is needed to adapt them to another ``img_size`` or to ``dynamic_img_size=True``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..errors import CheckpointError
from ..grid import Size
from ..models.registry import get_model_entry
from .adapt import HEAD_PREFIXES, LoadReport
from .hub import hub_weights
from .io import RawCheckpoint, read_checkpoint, unwrap_state_dict
from .layout import Converted, convert
from .load import load_converted

__all__ = ["pretrained_weights", "pretrained_converted", "tag_record", "apply_tag_record", "load_pretrained"]


def _name(cfg: dict[str, Any]) -> str:
    arch, tag = cfg.get("architecture") or "this model", cfg.get("tag") or ""
    return f"{arch}.{tag}" if tag else arch


def pretrained_weights(cfg: dict[str, Any], cache_dir=None) -> RawCheckpoint:
    """Read the weights ``cfg`` names, in timm's order (see the module note); a ``CheckpointError`` saying what to
    download or pass when timm keeps them elsewhere than the hub or has none."""
    source, hub_id = cfg.get("source"), cfg.get("hf_hub_id")
    if source == "hf-hub" and hub_id:
        return _hub(cfg, cache_dir)
    if source == "local-dir":
        if not cfg.get("file"):
            raise CheckpointError(f"{_name(cfg)}: source='local-dir' needs file=FOLDER in pretrained_cfg_overlay.")
        return read_checkpoint(cfg["file"])
    if cfg.get("state_dict") is not None:
        return RawCheckpoint(unwrap_state_dict(cfg["state_dict"], "pretrained_cfg state_dict"))
    if cfg.get("file"):
        return read_checkpoint(cfg["file"])
    if hub_id:
        return _hub(cfg, cache_dir)
    if cfg.get("url"):
        raise CheckpointError(
            f"{_name(cfg)}: timm keeps these weights at {cfg['url']}, not on the Hugging Face hub, and rectvit "
            "downloads only from the hub. Download the file and pass checkpoint_path=PATH (or "
            "pretrained_cfg_overlay=dict(file=PATH))."
        )
    raise CheckpointError(
        f"{_name(cfg)}: timm has no pretrained weights for this tag; rectvit.list_pretrained() names the tags that "
        "have them. Pass pretrained=False for random weights, or checkpoint_path=PATH for weights of your own."
    )


def _hub(cfg: dict[str, Any], cache_dir) -> RawCheckpoint:
    found = hub_weights(cfg["hf_hub_id"], cfg.get("hf_hub_filename"), cache_dir=cache_dir)
    raw = read_checkpoint(found.path)
    raw.hub = found
    return raw


def tag_record(cfg: dict[str, Any]) -> tuple[Size | None, dict[str, Size]]:
    """The position grid and bias windows of weights trained at the cfg's ``input_size``: the registered
    architecture's size arithmetic at that size (``(None, {})`` without an input size or registered name)."""
    arch, size = cfg.get("architecture"), cfg.get("input_size")
    if not arch or size is None:
        return None, {}
    entry = get_model_entry(arch)
    config = {**entry.config, "img_size": (int(size[1]), int(size[2]))}
    table_grid = getattr(entry.cls, "table_grid", None)
    bias_windows = getattr(entry.cls, "bias_windows", None)
    return (table_grid(config) if table_grid else None), (bias_windows(config) if bias_windows else {})


def apply_tag_record(conv: Converted, cfg: dict[str, Any]) -> None:
    """Count the tag's record as the checkpoint's where the file records none (its own record wins)."""
    grid, windows = tag_record(cfg)
    if conv.recorded_grid is None and grid is not None:
        conv.recorded_grid = grid
    for key, window in windows.items():
        conv.recorded_windows.setdefault(key, list(window))


def _keep_missing(conv: Converted, model: nn.Module) -> list[str]:
    """timm's ``pretrained_strict=False``: checkpoint keys the model lacks are dropped (reported), model keys the
    checkpoint lacks keep their init (returned, for the report's ``missing``); shapes must still agree."""
    own = model.state_dict()
    derived = {name for name, _ in model.named_buffers()} - set(own)
    sd = conv.state_dict
    for key in [k for k in sd if k not in own and k not in derived and not k.startswith(HEAD_PREFIXES)]:
        del sd[key]
        conv.dropped.append(key)
    missing = [
        k
        for k in own
        if k not in sd and not k.startswith(HEAD_PREFIXES) and not (k == "prefix_pos_embed" and "pos_embed" in sd)
    ]
    sd.update((k, own[k]) for k in missing)
    return missing


def pretrained_converted(cfg: dict[str, Any], cache_dir=None) -> Converted:
    """The weights ``cfg`` names (``pretrained_weights``), converted, with the tag's record of their grid."""
    conv = convert(pretrained_weights(cfg, cache_dir))
    apply_tag_record(conv, cfg)
    return conv


def load_pretrained(
    model: nn.Module, conv: Converted, cfg: dict[str, Any], strict: bool = True, source_grid=None, source_windows=None
) -> LoadReport:
    """timm's ``load_pretrained`` for rectvit: ``conv`` (``pretrained_converted(cfg)``) adapted to ``model``. A model
    built with another ``num_classes`` than the cfg's keeps its fresh classifier (reported), as in timm;
    ``strict=False`` is timm's ``pretrained_strict=False`` (see ``_keep_missing``)."""
    missing = [] if strict else _keep_missing(conv, model)
    same_head = cfg.get("num_classes") is None or int(getattr(model, "num_classes", -1)) == int(cfg["num_classes"])
    report = load_converted(model, conv, source_grid, strict and same_head, source_windows)
    report.missing.extend(missing)
    return report
