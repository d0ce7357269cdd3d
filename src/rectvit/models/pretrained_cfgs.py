"""timm's pretrained configurations (data-pipeline fields and build defaults) for rectvit's architectures.

Every tag timm has for a rectvit name (``"vit_base_patch16_224.augreg_in21k"``) is in the generated
``pretrained_tags.TAGS``, timm's default tag first; ``pretrained_cfg_for`` turns one into timm's cfg dict
(``tag``, ``mean``, ``std``, ``crop_pct``, ``crop_mode``, ``interpolation``, and the tag's ``num_classes``,
``input_size``, ``fixed_input_size``, which ``create_model`` uses as keyword defaults the way timm does, and
where its weights are: ``hf_hub_id``, with ``hf_hub_filename`` / ``url`` where timm names them).
``RectViTModel.pretrained_cfg`` replaces the fields that follow the model as it is now (``input_size``,
``num_classes``, ``fixed_input_size``, ``first_conv``, ``classifier``, ``pool_size``) with the live ones.
Architectures timm lacks are in ``_CFGS``; names in neither get ``GENERIC`` (ImageNet statistics).
"""

from __future__ import annotations

from typing import Any

from ..errors import RectViTError
from .pretrained_tags import IMAGENET, SOURCES, TAGS

__all__ = [
    "GENERIC",
    "CFG_FIELDS",
    "pretrained_cfg_for",
    "has_pretrained_cfg",
    "has_hub_weights",
    "known_tags",
    "TIMM_MODULES",
]

# The fields of timm's PretrainedCfg: what pretrained_cfg_overlay may set.
CFG_FIELDS = (
    "url", "file", "state_dict", "hf_hub_id", "hf_hub_filename", "source", "architecture", "tag", "custom_load",
    "input_size", "test_input_size", "min_input_size", "fixed_input_size", "interpolation", "crop_pct",
    "test_crop_pct", "crop_mode", "mean", "std", "num_classes", "label_offset", "label_names", "label_descriptions",
    "pool_size", "test_pool_size", "first_conv", "classifier", "license", "description", "origin_url", "paper_name",
    "paper_ids", "notes",
)  # fmt: skip

# AST's AudioSet spectrogram statistics; its feature extractor computes (x - mean) / (2 * std).
AUDIOSET = ((-4.2677393,), (2 * 4.5689974,))

GENERIC: dict[str, Any] = {
    "tag": "",
    "interpolation": "bicubic",
    "crop_pct": 0.9,
    "crop_mode": "center",
    "mean": IMAGENET[0],
    "std": IMAGENET[1],
}


def _cfg(
    tag: str, norm: tuple, crop_pct: float, interpolation: str = "bicubic", crop_mode: str = "center"
) -> dict[str, Any]:
    return {
        **GENERIC,
        "crop_mode": crop_mode,
        "tag": tag,
        "mean": norm[0],
        "std": norm[1],
        "crop_pct": crop_pct,
        "interpolation": interpolation,
    }


# Architectures timm has no pretrained cfg for; timm's own tags (every one, default first) are in TAGS.
_CFGS: dict[str, dict[str, Any]] = {
    "ast_base_patch16_s10_128x1024": _cfg("", AUDIOSET, 1.0, "bilinear"),
}

# timm's module (file) of an architecture, for list_models(module=...): (name pattern, timm module), first match
# wins; hybrid ViTs (rectvit.models.hybrid) are timm's vision_transformer_hybrid whatever their name.
TIMM_MODULES: tuple[tuple[str, str], ...] = (
    ("deit*", "deit"),
    ("swinv2_cr_*", "swin_transformer_v2_cr"),
    ("swinv2_*", "swin_transformer_v2"),
    ("swin_*", "swin_transformer"),
    ("vit_*_rope_*", "eva"),  # timm's RoPE ViTs live in eva.py
    ("vit_*_dinov3*", "eva"),  # as are its DINOv3 ViTs
    ("vit_*", "vision_transformer"),
    ("beit*", "beit"),
    ("eva*", "eva"),
)


def has_pretrained_cfg(arch: str) -> bool:
    return arch in TAGS or arch in _CFGS


def known_tags(arch: str) -> list[str]:
    """timm's pretrained tags for ``arch``, its default first ([] when timm has none)."""
    return [row[0] for row in TAGS.get(arch, ())]


_ROW_TAIL = ("center", "bicubic", True, {})  # crop_mode, interpolation, fixed_input_size, extras when left off


def has_hub_weights(arch: str, tag: str) -> bool:
    """Whether timm keeps weights for ``arch.tag`` on the Hugging Face hub (``pretrained=True`` fetches them)."""
    return bool(pretrained_cfg_for(arch, tag).get("hf_hub_id"))


def _tag_cfg(row: tuple) -> dict[str, Any]:
    tag, num_classes, size, (mean, std), crop_pct, *tail = row
    crop_mode, interpolation, fixed, extras = (*tail, *_ROW_TAIL[len(tail) :])
    return {
        "tag": tag,
        "input_size": (3, size, size) if isinstance(size, int) else tuple(size),
        "fixed_input_size": fixed,
        "interpolation": interpolation,
        "crop_pct": crop_pct,
        "crop_mode": crop_mode,
        "mean": mean,
        "std": std,
        "num_classes": num_classes,
        **extras,
    }


def pretrained_cfg_for(arch: str, tag: str = "", overlay: dict[str, Any] | None = None) -> dict[str, Any]:
    """timm's pretrained cfg of ``arch.tag`` (no tag: timm's default tag) as a dict, ``overlay`` (timm's
    ``pretrained_cfg_overlay``: fields of timm's ``PretrainedCfg``) laid over it.

    An architecture timm has tags for accepts only those (``RectViTError`` otherwise, as timm raises);
    one timm lacks gets its ``_CFGS`` entry or ``GENERIC``, with ``tag`` kept as given.
    """
    cfg = _table_cfg(arch, tag)
    if not overlay:
        return cfg
    if not isinstance(overlay, dict):
        raise RectViTError(f"pretrained_cfg_overlay must be a dict of pretrained cfg fields, got {overlay!r}.")
    unknown = sorted(set(overlay) - set(CFG_FIELDS))
    if unknown:
        raise RectViTError(
            f"pretrained_cfg_overlay: {unknown} are not pretrained cfg fields; timm's are {list(CFG_FIELDS)} "
            "(e.g. file=PATH for a local copy of the weights, hf_hub_id='org/name' for another hub repository)."
        )
    return {**cfg, **overlay}


def _table_cfg(arch: str, tag: str) -> dict[str, Any]:
    rows = TAGS.get(arch)
    if rows:
        row = rows[0] if not tag else next((r for r in rows if r[0] == tag), None)
        if row is None:
            raise RectViTError(
                f"unknown pretrained tag {tag!r} for {arch!r}; timm's tags for it are {known_tags(arch)} "
                f"(the default, {rows[0][0]!r}, is used when the name has no tag)."
            )
        source = {"hf_hub_id": f"timm/{arch}.{row[0]}", **SOURCES.get(f"{arch}.{row[0]}", {})}
        return {"architecture": arch, **_tag_cfg(row), **source}
    cfg = {"architecture": arch, **_CFGS.get(arch, GENERIC)}
    if tag:
        cfg["tag"] = tag
    return cfg
