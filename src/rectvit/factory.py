"""Names and checkpoints together: ``create_model`` and ``load_model``.

This module sits above ``rectvit.models`` (names -> classes and configs) and ``rectvit.checkpoint``
(files -> adapted weights), which never import each other's model-building code.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .checkpoint.hub import hub_config
from .checkpoint.io import HUB_PREFIX, check_recorded_size, read_checkpoint
from .checkpoint.layout import Converted, as_converted, convert
from .checkpoint.load import check_recorded_depth, check_recorded_shapes, load_converted
from .checkpoint.pretrained import apply_tag_record, load_pretrained, pretrained_converted
from .checkpoint.timm import is_timm_config, timm_config_kwargs
from .errors import CheckpointError, RectViTError
from .grid import to_size
from .models.features import features_only as _features_only
from .models.pretrained_cfgs import pretrained_cfg_for
from .models.registry import build_model, get_model_entry, split_model_name_tag

__all__ = ["create_model", "load_model"]


def create_model(
    name: str,
    pretrained: bool = False,
    *,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    pretrained_strict: bool = True,
    checkpoint_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    source_grid=None,
    source_windows=None,
    strict: bool = True,
    features_only: bool = False,
    out_indices: int | Sequence[int] | None = None,
    feature_cls: str = "getter",
    **overrides: Any,
) -> nn.Module:
    """Build model ``name`` with timm-style keyword ``overrides``; load pretrained weights or ``checkpoint_path``.

    ``name`` may carry a timm pretrained tag (``"vit_base_patch16_224.augreg_in21k"``; none: timm's default
    tag): as in timm, the tag's ``num_classes``, ``in_chans`` and (fixed-size tags) ``img_size`` are the
    defaults that ``overrides`` replace, and ``model.pretrained_cfg`` holds the tag's data fields (``mean``,
    ``std``, ``crop_pct``...) and where its weights are (``hf_hub_id``). A tag timm does not have for the
    architecture is a ``RectViTError``; ``pretrained_cfg_overlay`` replaces fields of the tag's cfg, as timm's.

    ``pretrained=True`` loads the tag's weights the way timm does (``rectvit.checkpoint.pretrained``): from the
    Hugging Face hub through huggingface_hub's cache (``cache_dir``, else ``HF_HUB_CACHE`` or ``HF_HOME``;
    ``HF_HUB_OFFLINE=1`` reads the cache only), or the overlay's ``file`` / ``state_dict``;
    ``pretrained_strict=False`` leaves keys the weights lack at init. ``checkpoint_path`` (a file, a folder or
    ``hf-hub:org/name``) loads those weights instead, with ``strict``. The input size of the tag (one named in
    ``name``, or the one ``pretrained=True`` loads) is the record of the weights' grid, so they adapt to any
    ``img_size`` or ``dynamic_img_size=True`` without ``source_grid``. A ``name`` ``"hf-hub:org/name"`` builds
    the model that repository's config describes (timm's spelling; with ``pretrained=True``: ``load_model``).
    ``features_only=True`` returns a feature net (``rectvit.models.features``) giving the maps of
    ``out_indices`` (timm's defaults: the last 3 ViT blocks, every Swin stage). As in timm, an override
    given as ``None`` counts as not given (``num_classes=None`` keeps the tag's or architecture's default).

    The loaded weights are adapted to the built model (position grid, patch size, channels); the
    load report (with the hub repository, revision and file) is kept on ``model.load_report``.
    """
    if not isinstance(name, str):
        raise RectViTError(f"create_model takes an architecture name (a str from rectvit.list_models()), got {name!r}.")
    flags = dict(pretrained=pretrained, pretrained_strict=pretrained_strict, strict=strict, features_only=features_only)
    for flag, value in flags.items():
        if not isinstance(value, bool):
            raise RectViTError(f"create_model: {flag} must be True or False, got {value!r} ({type(value).__name__}).")
    if (source_grid is not None or source_windows is not None) and checkpoint_path is None and not pretrained:
        raise RectViTError(
            "source_grid / source_windows describe a checkpoint's position tables, but no checkpoint_path was "
            "given; pass checkpoint_path=... (or pretrained=True) too, or drop them."
        )
    if not features_only and out_indices is not None:
        raise RectViTError("out_indices selects the feature maps of features_only=True; pass features_only=True too.")
    given = {k: v for k, v in overrides.items() if v is not None}
    if name.startswith(HUB_PREFIX):
        if pretrained_cfg_overlay or not pretrained_strict or checkpoint_path is not None:
            raise RectViTError(
                f"create_model({name!r}): the repository's config.json is the pretrained cfg and its weights are the "
                "checkpoint, so pretrained_cfg_overlay, pretrained_strict and checkpoint_path do not apply; name "
                "the architecture (and tag) instead to use them."
            )
        model = _hub_model(name, pretrained, cache_dir, source_grid, source_windows, given)
    else:
        arch, tag = split_model_name_tag(name)
        get_model_entry(arch)  # an unknown name first, then what its weights need, then the model
        cfg = pretrained_cfg_for(arch, tag, pretrained_cfg_overlay)
        conv = None
        if checkpoint_path is not None:
            conv = as_converted(checkpoint_path, cache_dir)
            if pretrained or tag:
                apply_tag_record(conv, cfg)
        elif pretrained:
            conv = pretrained_converted(cfg, cache_dir)
        model = _named_model(name, given, cfg)
        if checkpoint_path is not None:
            model.load_report = load_converted(model, conv, source_grid, strict, source_windows)
        elif pretrained:
            model.load_report = load_pretrained(model, conv, cfg, pretrained_strict, source_grid, source_windows)
    if features_only:
        return _features_only(model, out_indices, feature_cls)
    return model


def _named_model(name: str, overrides: dict[str, Any], cfg: dict[str, Any] | None = None) -> nn.Module:
    """Architecture ``name`` built with its pretrained cfg's defaults (``cfg``, else its timm tag's) and
    ``overrides``; ``model.pretrained_cfg`` is that cfg, less an overlay's in-memory ``state_dict``."""
    arch, tag = split_model_name_tag(name)
    entry = get_model_entry(arch)
    cfg = pretrained_cfg_for(arch, tag) if cfg is None else cfg
    model = build_model(entry.cls, entry.config, {**_cfg_defaults(cfg), **overrides}, name)
    model.arch_name = arch
    model.pretrained_cfg = {k: v for k, v in cfg.items() if k != "state_dict"}
    return model


def _hub_model(name, pretrained, cache_dir, source_grid, source_windows, given) -> nn.Module:
    """``create_model("hf-hub:org/name")``: the model the repository's config describes; its weights with
    ``pretrained=True`` (``load_model``), else a fresh model of a timm repository's config."""
    if pretrained:
        return load_model(name, cache_dir=cache_dir, source_grid=source_grid, source_windows=source_windows, **given)
    config = hub_config(name[len(HUB_PREFIX) :], cache_dir=cache_dir)
    if not is_timm_config(config):
        raise CheckpointError(
            f"{name}: an HF transformers config does not say the whole model without its weights (classes, "
            f"pooling); use create_model({name!r}, pretrained=True) or rectvit.load_model({name!r})."
        )
    arch, kwargs, _ = timm_config_kwargs(config)
    model = _named_model(arch, {**kwargs, **given})
    _restore_cfg(model, config.get("pretrained_cfg"), name)
    return model


def _cfg_defaults(cfg: dict[str, Any]) -> dict[str, Any]:
    """The model keywords a pretrained cfg sets unless given, as timm's ``create_model``: ``num_classes``,
    ``in_chans`` (``input_size[0]``) and, for a ``fixed_input_size`` cfg, ``img_size`` (``input_size[1:]``)."""
    out: dict[str, Any] = {}
    if cfg.get("num_classes") is not None and cfg["num_classes"] >= 0:
        out["num_classes"] = cfg["num_classes"]
    if cfg.get("input_size") is not None:
        c, h, w = cfg["input_size"]
        out["in_chans"] = c
        if cfg.get("fixed_input_size"):
            out["img_size"] = h if h == w else (h, w)
    return out


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _restore_cfg(model: nn.Module, recorded: str | dict | None, path) -> None:
    """Put a checkpoint's recorded pretrained cfg (its tag, ``mean``, ``std``... as JSON or a dict) on
    ``model``: the weights' own data config wins over the architecture's default tag."""
    if recorded is None:
        return
    try:
        cfg = json.loads(recorded) if isinstance(recorded, str) else recorded
    except ValueError as e:
        raise CheckpointError(f"{path}: the recorded pretrained_cfg is not valid JSON ({e}).") from None
    if cfg is None:
        return
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: the recorded pretrained_cfg must be a mapping, got {type(cfg).__name__}.")
    model.pretrained_cfg = {**model.pretrained_cfg, **{k: _tuples(v) for k, v in cfg.items()}}


def _model_class(name: str) -> type[nn.Module]:
    """A rectvit model class by its dotted name; only classes under ``rectvit.models`` are accepted."""
    module_name, _, cls_name = name.rpartition(".")
    if not module_name.startswith("rectvit.models."):
        raise CheckpointError(f"model_class {name!r} is not a rectvit model class; refusing to import it.")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError):
        raise CheckpointError(f"model_class {name!r} does not exist in this rectvit version.") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise CheckpointError(f"model_class {name!r} is not a model class.")
    return cls


@dataclass
class _Record:
    """The model a checkpoint records: class, constructor keywords, name and pretrained cfg (nothing built)."""

    cls: type[nn.Module]
    config: dict[str, Any]
    arch: str
    pretrained_cfg: dict[str, Any] | None = None  # the architecture tag's, before the file's own
    recorded_cfg: str | dict | None = None  # the file's pretrained cfg (JSON or a dict), restored last
    keep_none: bool = False  # overrides of None count as not given (timm's create_model), except in configs


def _record(conv: Converted, where: str) -> _Record:
    """What ``conv`` records about its model: our metadata, a timm hub config or an HF ``config.json``."""
    raw = conv.raw
    if conv.config is not None:
        if "img_size" in conv.config:
            check_recorded_size(to_size(conv.config["img_size"], "img_size"), f"{where}: rectvit metadata")
        cls = _model_class(raw.metadata.get("model_class", ""))
        return _Record(cls, conv.config, raw.metadata.get("arch", ""), None, raw.metadata.get("pretrained_cfg"))
    if is_timm_config(raw.config):
        name, kwargs, _ = timm_config_kwargs(raw.config)
        arch, tag = split_model_name_tag(name)
        entry, cfg = get_model_entry(arch), pretrained_cfg_for(arch, tag)
        config = {**entry.config, **_cfg_defaults(cfg), **kwargs}  # a recorded None (e.g. init_values) is a value
        return _Record(entry.cls, config, arch, cfg, raw.config.get("pretrained_cfg"), keep_none=True)
    if conv.hf is not None and raw.config is not None:
        cls, kwargs = conv.hf.model_spec()
        return _Record(cls, kwargs, conv.layout)
    raise CheckpointError(
        f"{where}: holds no rectvit metadata or config.json, so it does not say which model it is; "
        "use rectvit.create_model(NAME, checkpoint_path=...) with the architecture's name "
        "(CLI: rectvit adapt CKPT --model NAME)."
    )


def _check_record(record: _Record, conv: Converted, where: str) -> None:
    """A recorded config must describe the tensors, checked before anything is allocated: its depth by
    counting blocks, then every shape against a model built on the meta device (no memory, and quick
    once the depth is known to be the file's)."""
    check_recorded_depth(record.config, conv.state_dict, where)
    with torch.device("meta"):
        shadow = build_model(record.cls, record.config, {}, where)
    check_recorded_shapes(conv.state_dict, shadow, where)


def load_model(
    path: str | os.PathLike | Converted,
    *,
    source_grid=None,
    source_windows=None,
    cache_dir: str | os.PathLike | None = None,
    **overrides: Any,
) -> nn.Module:
    """The model a checkpoint describes (our metadata, an HF or timm folder's config.json), ``overrides`` applied.

    ``path`` is a file, a folder, ``hf-hub:org/name[@revision]`` (through huggingface_hub's cache, or
    ``cache_dir``; ``HF_HUB_OFFLINE=1`` reads the cache only), or a checkpoint already read
    (``rectvit.checkpoint.convert(read_checkpoint(path))``). The recorded config builds the model (a timm
    pretrained tag's defaults never replace it), after it is checked against the tensors' shapes without
    allocating anything (a config claiming another depth or width is a ``CheckpointError``); the recorded
    pretrained cfg (tag, ``mean``, ``std``...) becomes ``model.pretrained_cfg``.

    Weights are adapted to the overrides (``img_size``, ``patch_size``, ``in_chans``...); a new
    ``num_classes`` leaves the classifier freshly initialised (reported). The report is on
    ``model.load_report``.
    """
    conv = path if isinstance(path, Converted) else convert(read_checkpoint(path, cache_dir))
    where = str(conv.raw.path if isinstance(path, Converted) and conv.raw is not None else path)
    record = _record(conv, where)
    if record.keep_none:
        overrides = {k: v for k, v in overrides.items() if v is not None}  # None: not given, as create_model
    _check_record(record, conv, where)
    model = build_model(record.cls, record.config, overrides, where)
    model.arch_name = record.arch
    if record.pretrained_cfg is not None:
        model.pretrained_cfg = record.pretrained_cfg
    _restore_cfg(model, record.recorded_cfg, where)
    strict = "num_classes" not in overrides
    model.load_report = load_converted(model, conv, source_grid, strict, source_windows)
    return model
