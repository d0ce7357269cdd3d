"""Hugging Face vision checkpoints -> timm's key layout, one table row per family.

``FAMILIES`` has a row (``HFFamily``) for each HF family rectvit reads: the config ``model_type`` it
answers to, how its keys look without a config, the prefixes it strips, its key rules, the rectvit class
and keywords its config builds, and the grid (and BEiT's bias windows) its config records.
``from_hf`` runs a state dict and its config through the row once.

Both HF key schemes are read: the saved one (``encoder.layer.N.attention.attention.query``, what
``save_pretrained`` writes and the hub holds) and transformers 5's in-memory one
(``layers.N.attention.q_proj``). The flat position table keeps its HF form ``(1, P + h*w, C)``; the
grid is resolved on load (docs/design.md, invariant 2). CLIP / SigLIP vision towers map onto timm's
CLIP / SigLIP ViT: ``pre_layrnorm`` -> ``norm_pre``, ``post_layernorm`` -> ``norm``, SigLIP's pooling
head -> ``attn_pool`` (its fused ``in_proj`` split into ``q`` and ``kv``), CLIP's bias-free
``visual_projection`` -> ``head`` with a zero bias. HF's BEiT builds every relative-position bias
table on the patch grid of its ``image_size``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, RectViTError
from ..grid import Size, patch_grid, to_size
from ..models.beit import Beit
from ..models.vit import VisionTransformer
from .io import check_recorded_size

__all__ = ["HFFamily", "HFCheckpoint", "FAMILIES", "Rule", "rename", "drop", "fuse", "split", "from_hf", "hf_family"]

Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Rule:
    """A key rule: ``pattern`` (a regular expression matched in full against the key after the family's
    prefix) -> ``targets`` (templates with ``\\1``...). No target drops the key (reported). ``fn`` turns the
    value into one tensor per target. A fusing rule's pattern has a group ``part`` (``q``/``query``...):
    the values of one target are concatenated in ``q, k, v`` order."""

    pattern: re.Pattern
    targets: tuple[str, ...]
    fn: Callable[[torch.Tensor], tuple[torch.Tensor, ...]] | None = None
    fuse: bool = False


def rename(pattern: str, target: str, fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Rule:
    return Rule(re.compile(pattern), (target,), None if fn is None else lambda v: (fn(v),))


def drop(pattern: str) -> Rule:
    return Rule(re.compile(pattern), ())


def fuse(pattern: str, target: str) -> Rule:
    return Rule(re.compile(pattern), (target,), fuse=True)


def split(pattern: str, targets: tuple[str, ...], fn: Callable[[torch.Tensor], tuple[torch.Tensor, ...]]) -> Rule:
    return Rule(re.compile(pattern), targets, fn)


@dataclass(frozen=True)
class HFFamily:
    """One HF family: what identifies it, how its keys become timm's, and what its config records.

    ``detect`` recognises the family's keys when there is no config (rows are tried in order); keys may
    start with one of ``prefixes`` (a task model's backbone, a multimodal model's tower);
    ``kwargs(config, state_dict)`` gives ``model_class``'s keywords (``state_dict`` in timm's names);
    ``grid(config)`` the position grid the config records (``None``: the family has no learned table);
    ``windows`` says that every relative-position bias table was built on that grid.
    """

    name: str
    what: str  # how messages name the checkpoints this row reads
    model_types: tuple[str, ...]
    rules: tuple[Rule, ...]
    model_class: type[nn.Module]
    kwargs: Callable[[dict[str, Any], Tensors], dict[str, Any]]
    grid: Callable[[dict[str, Any]], Size | None]
    detect: Callable[[Collection[str]], bool]
    prefixes: tuple[str, ...] = ()  # the first that a key starts with is stripped before the rules
    windows: bool = False


@dataclass
class HFCheckpoint:
    """An HF state dict in timm's names, with what its config records and builds."""

    family: HFFamily
    state_dict: Tensors
    dropped: list[str]
    recorded_grid: Size | None = None
    recorded_windows: dict[str, list[int]] = field(default_factory=dict)
    config: dict[str, Any] | None = None

    def model_spec(self) -> tuple[type[nn.Module], dict[str, Any]]:
        """``(class, keywords)`` of the model the config describes; a ``CheckpointError`` without a config."""
        if self.config is None:
            raise CheckpointError(f"an HF {self.family.name} state dict without config.json does not say its model.")
        return self.family.model_class, self.family.kwargs(self.config, self.state_dict)


# ---- config values ----


def _value(config: dict[str, Any], key: str, default: Any, kind: type = int) -> Any:
    """``config[key]`` (or ``default``) as a positive ``int`` or a ``float``; a ``CheckpointError`` otherwise."""
    value = config.get(key, default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        ok = ok and float(value).is_integer() and value > 0
    if not ok:
        want = "a positive integer" if kind is int else "a number"
        raise CheckpointError(f"HF config.json: {key} must be {want}, got {value!r} ({type(value).__name__}).")
    return kind(value)


def _size_value(config: dict[str, Any], key: str, default: Any) -> Size:
    try:
        return to_size(config.get(key, default), key)
    except RectViTError as e:
        raise CheckpointError(f"HF config.json: {e}") from None


def _mlp_ratio(hidden: int, intermediate: int) -> float:
    """A ratio ``r`` with ``int(hidden * r) == intermediate`` (plain division can land one below)."""
    ratio = intermediate / hidden
    while int(hidden * ratio) < intermediate:
        ratio = math.nextafter(ratio, math.inf)
    return ratio


def _image_size(config: dict[str, Any]) -> Size:
    return check_recorded_size(_size_value(config, "image_size", 224), "HF config.json")


def _ast_size(config: dict[str, Any]) -> Size:
    size = (_value(config, "num_mel_bins", 128), _value(config, "max_length", 1024))
    return check_recorded_size(size, "HF config.json")


def _patch(config: dict[str, Any]) -> Size:
    return _size_value(config, "patch_size", 16)


def _ast_stride(config: dict[str, Any]) -> Size:
    return _value(config, "frequency_stride", 10), _value(config, "time_stride", 10)


def _grid_rule(size: Callable[[dict[str, Any]], Size], stride: Callable[[dict[str, Any]], Size] = _patch):
    """A row's ``grid``: the patch grid of the config's input size, patch size and stride."""

    def grid(config: dict[str, Any]) -> Size:
        try:
            return patch_grid(size(config), _patch(config), stride(config))
        except CheckpointError:
            raise
        except RectViTError as e:
            raise CheckpointError(f"HF config.json: {e}") from None

    return grid


# HF hidden_act -> rectvit act_layer (the same function, not an approximation of it).
_HF_ACTS = {"gelu": "gelu", "quick_gelu": "quick_gelu", "gelu_pytorch_tanh": "gelu_tanh"}


def _body_kwargs(config: dict[str, Any], name: str, eps: float = 1e-12) -> dict[str, Any]:
    """Width, depth, heads, MLP ratio, activation and norm epsilon every row's config states."""
    needed = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    missing = [k for k in needed if k not in config]
    if missing:
        raise CheckpointError(f"HF config.json lacks {missing}; it does not describe a {name} model rectvit can build.")
    act = config.get("hidden_act", "gelu")
    if act not in _HF_ACTS:
        raise CheckpointError(f"HF hidden_act {act!r} is not supported; rectvit reads {sorted(_HF_ACTS)}.")
    hidden = _value(config, "hidden_size", None)
    kwargs = dict(
        embed_dim=hidden,
        depth=_value(config, "num_hidden_layers", None),
        num_heads=_value(config, "num_attention_heads", None),
        mlp_ratio=_mlp_ratio(hidden, _value(config, "intermediate_size", None)),
        norm_eps=_value(config, "layer_norm_eps", eps, float),
    )
    if _HF_ACTS[act] != "gelu":
        kwargs["act_layer"] = _HF_ACTS[act]
    return kwargs


def _classes(state_dict: Tensors) -> int:
    return int(state_dict["head.weight"].shape[0]) if "head.weight" in state_dict else 0


def _vit_kwargs(
    size: Callable[[dict[str, Any]], Size],
    stride: Callable[[dict[str, Any]], Size] = _patch,
    eps: float = 1e-12,
    **fixed: Any,
) -> Callable[[dict[str, Any], Tensors], dict[str, Any]]:
    """A ViT-like row's ``kwargs``: input size, patch (and stride), body, classes, then the row's ``fixed`` ones;
    ``eps`` is the norm epsilon when the config gives none."""

    def kwargs(config: dict[str, Any], state_dict: Tensors) -> dict[str, Any]:
        out = dict(
            img_size=size(config),
            patch_size=_patch(config),
            in_chans=_value(config, "num_channels", 3),
            qkv_bias=bool(config.get("qkv_bias", True)),
            num_classes=_classes(state_dict),
            **_body_kwargs(config, "ViT", eps),
        )
        if stride(config) != out["patch_size"]:
            out["patch_stride"] = stride(config)
        return {**out, **fixed}

    return kwargs


def _ast_kwargs(config: dict[str, Any], state_dict: Tensors) -> dict[str, Any]:
    """A headless ASTModel keeps its pooling (the mean of class and distillation tokens)."""
    base = _vit_kwargs(_ast_size, _ast_stride)(config, state_dict)
    head_norm = "head_norm.weight" in state_dict
    return {**base, "in_chans": 1, "distilled": True, "global_pool": "token_dist", "head_norm": head_norm}


def _deit_kwargs(config: dict[str, Any], state_dict: Tensors) -> dict[str, Any]:
    base = _vit_kwargs(_image_size)(config, state_dict)
    if "dist_token" not in state_dict:
        return base
    if "head.weight" in state_dict and "head_dist.weight" not in state_dict:
        raise CheckpointError(
            "HF DeiTForImageClassification (one classifier on the class token beside a distillation "
            "token) has no rectvit counterpart; load DeiTForImageClassificationWithTeacher or DeiTModel "
            "weights, or load this one's backbone with strict=False into a distilled DeiT."
        )
    return {**base, "distilled": True}


def _clip_kwargs(config: dict[str, Any], state_dict: Tensors) -> dict[str, Any]:
    return _vit_kwargs(_image_size, eps=1e-5, pre_norm=True)(config, state_dict)


def _siglip_kwargs(config: dict[str, Any], state_dict: Tensors) -> dict[str, Any]:
    pool = dict(global_pool="map") if "attn_pool.latent" in state_dict else dict(global_pool="avg", fc_norm=False)
    return _vit_kwargs(_image_size, eps=1e-6, class_token=False, **pool)(config, state_dict)


def _beit_kwargs(config: dict[str, Any], state_dict: Tensors) -> dict[str, Any]:
    body = _body_kwargs(config, "BEiT")
    if "act_layer" in body:
        raise CheckpointError(
            f"HF BEiT hidden_act {config['hidden_act']!r} is not supported; rectvit's BEiT uses exact 'gelu'."
        )
    mean_pooling = bool(config.get("use_mean_pooling", True))
    scale = config.get("layer_scale_init_value", 0.1)
    return dict(
        img_size=_image_size(config),
        patch_size=_patch(config),
        in_chans=int(config.get("num_channels", 3)),
        init_values=float(scale) if scale and scale > 0 else None,
        use_abs_pos_emb=bool(config.get("use_absolute_position_embeddings", False)),
        use_rel_pos_bias=bool(config.get("use_relative_position_bias", False)),
        use_shared_rel_pos_bias=bool(config.get("use_shared_relative_position_bias", False)),
        global_pool="avg" if mean_pooling else "token",
        use_fc_norm=mean_pooling,
        num_classes=_classes(state_dict),
        **body,
    )


# ---- key rules ----

_VIT_RULES = (
    drop(r"pooler\.dense\.(weight|bias)"),
    rename(r"(?:encoder\.layer|layers)\.(\d+)\.layernorm_before\.(weight|bias)", r"blocks.\1.norm1.\2"),
    rename(r"(?:encoder\.layer|layers)\.(\d+)\.layernorm_after\.(weight|bias)", r"blocks.\1.norm2.\2"),
    fuse(
        r"encoder\.layer\.(\d+)\.attention\.attention\.(?P<part>query|key|value)\.(weight|bias)",
        r"blocks.\1.attn.qkv.\3",
    ),
    fuse(r"layers\.(\d+)\.attention\.(?P<part>q|k|v)_proj\.(weight|bias)", r"blocks.\1.attn.qkv.\3"),
    rename(r"encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    rename(r"layers\.(\d+)\.attention\.o_proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    rename(r"encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)", r"blocks.\1.mlp.fc1.\2"),
    rename(r"encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
    rename(r"layers\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)", r"blocks.\1.mlp.\2.\3"),
    rename(r"embeddings\.cls_token", "cls_token"),
    rename(r"embeddings\.distillation_token", "dist_token"),
    rename(r"embeddings\.position_embeddings", "pos_embed"),
    rename(r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    rename(r"layernorm\.(weight|bias)", r"norm.\1"),
    rename(r"(?:cls_)?classifier\.(weight|bias)", r"head.\1"),
    rename(r"classifier\.dense\.(weight|bias)", r"head.\1"),
    rename(r"distillation_classifier\.(weight|bias)", r"head_dist.\1"),
    rename(r"classifier\.layernorm\.(weight|bias)", r"head_norm.\1"),
)


def _split_in_proj(value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    c = value.shape[0] // 3
    return value[:c], value[c:]


_TOWER_RULES = (
    fuse(r"encoder\.layers\.(\d+)\.self_attn\.(?P<part>q|k|v)_proj\.(weight|bias)", r"blocks.\1.attn.qkv.\3"),
    rename(r"embeddings\.class_embedding", "cls_token", lambda v: v.reshape(1, 1, -1)),
    rename(r"embeddings\.position_embedding\.weight", "pos_embed", lambda v: v.unsqueeze(0)),  # flat (1, P+h*w, C)
    drop(r"embeddings\.position_ids"),  # an index buffer older transformers saved
    rename(r"embeddings\.patch_embedding\.(weight|bias)", r"patch_embed.proj.\1"),
    rename(r"pre_layrnorm\.(weight|bias)", r"norm_pre.\1"),
    rename(r"post_layernorm\.(weight|bias)", r"norm.\1"),
    rename(r"encoder\.layers\.(\d+)\.layer_norm([12])\.(weight|bias)", r"blocks.\1.norm\2.\3"),
    rename(r"encoder\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    rename(r"encoder\.layers\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)", r"blocks.\1.mlp.\2.\3"),
    rename(r"head\.probe", "attn_pool.latent"),
    split(r"head\.attention\.in_proj_(weight|bias)", (r"attn_pool.q.\1", r"attn_pool.kv.\1"), _split_in_proj),
    rename(r"head\.attention\.out_proj\.(weight|bias)", r"attn_pool.proj.\1"),
    rename(r"head\.layernorm\.(weight|bias)", r"attn_pool.norm.\1"),
    rename(r"head\.mlp\.(fc1|fc2)\.(weight|bias)", r"attn_pool.mlp.\1.\2"),
    split(r"visual_projection\.weight", ("head.weight", "head.bias"), lambda v: (v, v.new_zeros(v.shape[0]))),
)

_L = r"(?:encoder\.layer|layers)\.(\d+)\."  # saved and in-memory BEiT block names
_BEIT_RULES = (
    drop(r"embeddings\.mask_token"),  # the masked-image-modelling token
    drop(r".*relative_position_index"),
    rename(r"embeddings\.cls_token", "cls_token"),
    rename(r"embeddings\.position_embeddings", "pos_embed"),
    rename(r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    rename(_L + r"layernorm_before\.(weight|bias)", r"blocks.\1.norm1.\2"),
    rename(_L + r"layernorm_after\.(weight|bias)", r"blocks.\1.norm2.\2"),
    rename(_L + r"lambda_([12])", r"blocks.\1.gamma_\2"),
    fuse(_L + r"attention\.attention\.(?P<part>query|key|value)\.weight", r"blocks.\1.attn.qkv.weight"),
    fuse(_L + r"attention\.(?P<part>q|k|v)_proj\.weight", r"blocks.\1.attn.qkv.weight"),
    rename(_L + r"(?:attention\.attention\.query|attention\.q_proj)\.bias", r"blocks.\1.attn.q_bias"),
    rename(_L + r"(?:attention\.attention\.value|attention\.v_proj)\.bias", r"blocks.\1.attn.v_bias"),
    rename(
        _L + r"(?:attention\.)*relative_position_bias\.relative_position_bias_table",
        r"blocks.\1.attn.relative_position_bias_table",
    ),
    rename(_L + r"(?:attention\.output\.dense|attention\.o_proj)\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    rename(_L + r"(?:intermediate\.dense|mlp\.fc1)\.(weight|bias)", r"blocks.\1.mlp.fc1.\2"),
    rename(_L + r"(?:output\.dense|mlp\.fc2)\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
    rename(
        r"(?:encoder\.)?relative_position_bias\.relative_position_bias_table",
        "rel_pos_bias.relative_position_bias_table",
    ),
    rename(r"layernorm\.(weight|bias)", r"norm.\1"),
    rename(r"pooler\.layernorm\.(weight|bias)", r"fc_norm.\1"),
    rename(r"classifier\.(weight|bias)", r"head.\1"),
)


# ---- detection without a config ----


def _ends(*suffixes: str) -> Callable[[Collection[str]], bool]:
    return lambda keys: any(k.endswith(suffixes) for k in keys)


def _starts(prefix: str) -> Callable[[Collection[str]], bool]:
    return lambda keys: any(k.startswith(prefix) for k in keys)


def _is_beit(keys: Collection[str]) -> bool:
    """The ``beit.`` prefix, layer scale ``lambda_1`` or an HF bias module (timm's BEiT keys have none)."""
    return _starts("beit.")(keys) or _ends("lambda_1", "relative_position_bias.relative_position_bias_table")(keys)


def _is_tower(keys: Collection[str]) -> bool:
    return _ends("embeddings.patch_embedding.weight")(keys)  # singular: CLIP / SigLIP


def _is_vit(keys: Collection[str]) -> bool:
    return _ends("embeddings.position_embeddings")(keys)


# Rows in detection order: the first whose ``detect`` holds names a state dict that comes without a config.
FAMILIES: tuple[HFFamily, ...] = (
    HFFamily(
        name="beit",
        what="BeitModel / BeitForImageClassification",
        model_types=("beit",),
        rules=_BEIT_RULES,
        model_class=Beit,
        kwargs=_beit_kwargs,
        grid=_grid_rule(_image_size),
        detect=_is_beit,
        prefixes=("beit.",),
        windows=True,
    ),
    HFFamily(
        name="clip",
        what="CLIPVisionModel / CLIPVisionModelWithProjection",
        model_types=("clip_vision_model",),
        rules=_TOWER_RULES,
        model_class=VisionTransformer,
        kwargs=_clip_kwargs,
        grid=_grid_rule(_image_size),
        detect=lambda k: _is_tower(k) and _ends("embeddings.class_embedding")(k),
        prefixes=("vision_model.",),
    ),
    HFFamily(
        name="siglip",
        what="SiglipVisionModel",
        model_types=("siglip_vision_model",),
        rules=_TOWER_RULES,
        model_class=VisionTransformer,
        kwargs=_siglip_kwargs,
        grid=_grid_rule(_image_size),
        detect=_is_tower,
        prefixes=("vision_model.",),
    ),
    HFFamily(
        name="deit",
        what="DeiTModel / DeiTForImageClassificationWithTeacher",
        model_types=("deit",),
        rules=_VIT_RULES,
        model_class=VisionTransformer,
        kwargs=_deit_kwargs,
        grid=_grid_rule(_image_size),
        detect=lambda k: _starts("deit.")(k) or (_is_vit(k) and _ends("distillation_token")(k)),
        prefixes=("deit.",),
    ),
    HFFamily(
        name="ast",
        what="ASTModel / ASTForAudioClassification",
        model_types=("audio-spectrogram-transformer",),
        rules=_VIT_RULES,
        model_class=VisionTransformer,
        kwargs=_ast_kwargs,
        grid=_grid_rule(_ast_size, _ast_stride),
        detect=_starts("audio_spectrogram_transformer."),
        prefixes=("audio_spectrogram_transformer.",),
    ),
    HFFamily(
        name="vit",
        what="ViTModel / ViTForImageClassification",
        model_types=("vit",),
        rules=_VIT_RULES,
        model_class=VisionTransformer,
        kwargs=_vit_kwargs(_image_size),
        grid=_grid_rule(_image_size),
        detect=_is_vit,
        prefixes=("vit.",),
    ),
)

# Full image-text models: rectvit reads their vision tower, saved on its own.
_FULL_MODELS = {"clip": "CLIPVisionModelWithProjection", "siglip": "SiglipVisionModel"}


def hf_family(keys: Collection[str], config: dict[str, Any] | None = None) -> HFFamily | None:
    """The row for a config's ``model_type``, or (no config) the first row whose keys match; ``None`` when a
    state dict without config matches none. An unsupported ``model_type`` is a ``CheckpointError``."""
    model_type = (config or {}).get("model_type")
    if model_type in _FULL_MODELS:
        raise CheckpointError(
            f"HF model_type {model_type!r} is a full image-text model; rectvit reads its vision tower: save it with "
            f"transformers.{_FULL_MODELS[model_type]}.from_pretrained(path).save_pretrained(out) and load that folder."
        )
    if model_type:
        row = next((r for r in FAMILIES if model_type in r.model_types), None)
        if row is None:
            known = sorted(t for r in FAMILIES for t in r.model_types)
            raise CheckpointError(f"HF model_type {model_type!r} is not supported; rectvit reads {known}.")
        return row
    row = next((r for r in FAMILIES if r.detect(keys)), None)
    if row is None and config is not None:
        return FAMILIES[-1]  # a config without model_type: the plain ViT, as transformers' default
    return row


def _rename(family: HFFamily, state_dict: Tensors) -> tuple[Tensors, list[str]]:
    """``state_dict`` through ``family``'s rules: timm's names and the HF keys dropped."""
    out: Tensors = {}
    dropped: list[str] = []
    fused: dict[str, dict[str, torch.Tensor]] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        body = next((key[len(p) :] for p in family.prefixes if key.startswith(p)), key)
        rule, match = next(((r, m) for r in family.rules if (m := r.pattern.fullmatch(body))), (None, None))
        if rule is None:
            unknown.append(key)
        elif not rule.targets:
            dropped.append(key)
        elif rule.fuse:
            fused.setdefault(match.expand(rule.targets[0]), {})[match.group("part")[0]] = value
        else:
            values = rule.fn(value) if rule.fn else (value,)
            out.update((match.expand(t), v) for t, v in zip(rule.targets, values))
    if unknown:
        raise CheckpointError(
            f"unrecognised keys in an HF {family.name} checkpoint: {unknown[:8]}; rectvit reads {family.what} weights."
        )
    for target, parts in fused.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"HF {family.name} {target}: needs query, key and value; found {sorted(parts)}.")
        out[target] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out, dropped


def from_hf(state_dict: Tensors, config: dict[str, Any] | None = None) -> HFCheckpoint | None:
    """An HF state dict (and its ``config.json``) in timm's names with what the config records; ``None`` when
    the keys are no HF family's and there is no config."""
    family = hf_family(state_dict.keys(), config)
    if family is None:
        return None
    sd, dropped = _rename(family, state_dict)
    hf = HFCheckpoint(family, sd, dropped, config=config)
    if config is not None:
        hf.recorded_grid = family.grid(config)
        if family.windows and hf.recorded_grid is not None:
            grid = list(hf.recorded_grid)
            hf.recorded_windows = {k: grid for k in sd if k.endswith("relative_position_bias_table")}
    return hf
