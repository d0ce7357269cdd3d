"""Hugging Face ViT / DeiT / AST and CLIP / SigLIP vision towers -> timm's ViT layout; model configs from config.json.

Both HF key schemes are read: the saved one (``encoder.layer.N.attention.attention.query``, what
``save_pretrained`` writes and the hub holds) and transformers 5's in-memory one
(``layers.N.attention.q_proj``). The flat position table keeps its HF form ``(1, P + h*w, C)``;
``hf_grid`` says which grid the config records for it, ``hf_windows`` which windows BEiT's
relative-bias tables were built for (HF builds them on the patch grid).

CLIP / SigLIP vision towers (``CLIPVisionModel``, ``CLIPVisionModelWithProjection``,
``SiglipVisionModel``; keys with or without ``vision_model.``) map onto timm's CLIP / SigLIP ViT: the
class embedding and flat position table, ``pre_layrnorm`` -> ``norm_pre``, ``post_layernorm`` ->
``norm``, SigLIP's pooling head -> ``attn_pool`` (its fused ``in_proj`` split into ``q`` and ``kv``),
CLIP's bias-free ``visual_projection`` -> ``head`` with a zero bias.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from ..errors import CheckpointError, RectViTError
from ..grid import Size, patch_grid, to_size
from .io import check_recorded_size

__all__ = ["is_hf_layout", "hf_family", "hf_to_timm", "hf_model_kwargs", "hf_grid", "hf_windows", "HF_BACKBONES"]

HF_BACKBONES = {"vit": "vit.", "deit": "deit.", "ast": "audio_spectrogram_transformer."}

# (pattern on the key after the backbone prefix, timm name); \1 is the block index.
_BLOCK_RULES = [
    (r"(?:encoder\.layer|layers)\.(\d+)\.layernorm_before\.(weight|bias)", r"blocks.\1.norm1.\2"),
    (r"(?:encoder\.layer|layers)\.(\d+)\.layernorm_after\.(weight|bias)", r"blocks.\1.norm2.\2"),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (r"layers\.(\d+)\.attention\.o_proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)", r"blocks.\1.mlp.fc1.\2"),
    (r"encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
    (r"layers\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)", r"blocks.\1.mlp.\2.\3"),
    (r"embeddings\.cls_token", "cls_token"),
    (r"embeddings\.distillation_token", "dist_token"),
    (r"embeddings\.position_embeddings", "pos_embed"),
    (r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    (r"layernorm\.(weight|bias)", r"norm.\1"),
]
_QKV = re.compile(
    r"(?:encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)|layers\.(\d+)\.attention\.(q|k|v)_proj)"
    r"\.(weight|bias)"
)
_HEAD_RULES = {
    "classifier.weight": "head.weight",
    "classifier.bias": "head.bias",
    "cls_classifier.weight": "head.weight",
    "cls_classifier.bias": "head.bias",
    "distillation_classifier.weight": "head_dist.weight",
    "distillation_classifier.bias": "head_dist.bias",
    "classifier.layernorm.weight": "head_norm.weight",
    "classifier.layernorm.bias": "head_norm.bias",
    "classifier.dense.weight": "head.weight",
    "classifier.dense.bias": "head.bias",
}
_IGNORED = re.compile(r"(^|\.)pooler\.dense\.(weight|bias)$")

# CLIP / SigLIP vision towers: model_type -> family, and key rules after an optional "vision_model.".
HF_TOWERS = {"clip_vision_model": "clip", "siglip_vision_model": "siglip"}
_TOWER_RULES = [
    (r"embeddings\.patch_embedding\.(weight|bias)", r"patch_embed.proj.\1"),
    (r"pre_layrnorm\.(weight|bias)", r"norm_pre.\1"),
    (r"post_layernorm\.(weight|bias)", r"norm.\1"),
    (r"encoder\.layers\.(\d+)\.layer_norm([12])\.(weight|bias)", r"blocks.\1.norm\2.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (r"encoder\.layers\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)", r"blocks.\1.mlp.\2.\3"),
    (r"head\.probe", "attn_pool.latent"),
    (r"head\.attention\.out_proj\.(weight|bias)", r"attn_pool.proj.\1"),
    (r"head\.layernorm\.(weight|bias)", r"attn_pool.norm.\1"),
    (r"head\.mlp\.(fc1|fc2)\.(weight|bias)", r"attn_pool.mlp.\1.\2"),
]
_TOWER_QKV = re.compile(r"encoder\.layers\.(\d+)\.self_attn\.(q|k|v)_proj\.(weight|bias)")
# HF BEiT (BeitModel / BeitForImageClassification), after an optional "beit."; saved and in-memory names.
_L = r"(?:encoder\.layer|layers)\.(\d+)\."
_BEIT_RULES = [
    (r"embeddings\.cls_token", "cls_token"),
    (r"embeddings\.position_embeddings", "pos_embed"),
    (r"embeddings\.patch_embeddings\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    (_L + r"layernorm_before\.(weight|bias)", r"blocks.\1.norm1.\2"),
    (_L + r"layernorm_after\.(weight|bias)", r"blocks.\1.norm2.\2"),
    (_L + r"lambda_([12])", r"blocks.\1.gamma_\2"),
    (_L + r"(?:attention\.attention\.query|attention\.q_proj)\.bias", r"blocks.\1.attn.q_bias"),
    (_L + r"(?:attention\.attention\.value|attention\.v_proj)\.bias", r"blocks.\1.attn.v_bias"),
    (
        _L + r"(?:attention\.)+relative_position_bias\.relative_position_bias_table",
        r"blocks.\1.attn.relative_position_bias_table",
    ),
    (_L + r"relative_position_bias\.relative_position_bias_table", r"blocks.\1.attn.relative_position_bias_table"),
    (_L + r"(?:attention\.output\.dense|attention\.o_proj)\.(weight|bias)", r"blocks.\1.attn.proj.\2"),
    (_L + r"(?:intermediate\.dense|mlp\.fc1)\.(weight|bias)", r"blocks.\1.mlp.fc1.\2"),
    (_L + r"(?:output\.dense|mlp\.fc2)\.(weight|bias)", r"blocks.\1.mlp.fc2.\2"),
    (
        r"(?:encoder\.)?relative_position_bias\.relative_position_bias_table",
        "rel_pos_bias.relative_position_bias_table",
    ),
    (r"layernorm\.(weight|bias)", r"norm.\1"),
    (r"pooler\.layernorm\.(weight|bias)", r"fc_norm.\1"),
    (r"classifier\.(weight|bias)", r"head.\1"),
]
_BEIT_QKV = re.compile(_L + r"(?:attention\.attention\.(query|key|value)|attention\.(q|k|v)_proj)\.weight")

# HF hidden_act -> rectvit act_layer (the same function, not an approximation of it).
_HF_ACTS = {"gelu": "gelu", "quick_gelu": "quick_gelu", "gelu_pytorch_tanh": "gelu_tanh"}


def is_hf_layout(state_dict: dict[str, torch.Tensor]) -> bool:
    keys = state_dict
    return any(k.endswith("embeddings.position_embeddings") for k in keys) or _is_tower(keys) or _is_beit(keys)


def _is_beit(state_dict: dict[str, torch.Tensor]) -> bool:
    """HF BEiT keys: the ``beit.`` prefix, layer scale ``lambda_1`` or an HF bias module (not timm's keys)."""
    ends = ("lambda_1", "relative_position_bias.relative_position_bias_table")
    return any(k.startswith("beit.") or k.endswith(ends) for k in state_dict)


def _is_tower(state_dict: dict[str, torch.Tensor]) -> bool:
    """A CLIP / SigLIP vision tower's keys (``embeddings.patch_embedding``, singular)."""
    return any(k.endswith("embeddings.patch_embedding.weight") for k in state_dict)


def hf_family(state_dict: dict[str, torch.Tensor], config: dict[str, Any] | None = None) -> str:
    """``"vit"``, ``"deit"`` or ``"ast"``, from the config's ``model_type`` or the key prefixes."""
    model_type = (config or {}).get("model_type")
    if model_type in ("vit", "deit"):
        return model_type
    if model_type in HF_TOWERS:
        return HF_TOWERS[model_type]
    if model_type == "beit":
        return "beit"
    if model_type in ("clip", "siglip"):
        tower = "CLIPVisionModelWithProjection" if model_type == "clip" else "SiglipVisionModel"
        raise CheckpointError(
            f"HF model_type {model_type!r} is a full image-text model; rectvit reads its vision tower: save it "
            f"with transformers.{tower}.from_pretrained(path).save_pretrained(out) and load that folder."
        )
    if model_type == "audio-spectrogram-transformer":
        return "ast"
    if model_type:
        raise CheckpointError(
            f"HF model_type {model_type!r} is not supported; rectvit reads 'vit', 'deit' and "
            "'audio-spectrogram-transformer' checkpoints, and 'clip_vision_model' / 'siglip_vision_model' towers."
        )
    if _is_beit(state_dict):
        return "beit"
    if _is_tower(state_dict):
        return "clip" if any(k.endswith("embeddings.class_embedding") for k in state_dict) else "siglip"
    for family, prefix in HF_BACKBONES.items():
        if any(k.startswith(prefix) for k in state_dict):
            return family
    return "deit" if any(k.endswith("distillation_token") for k in state_dict) else "vit"


def hf_to_timm(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename an HF ViT/DeiT/AST state dict to timm's ViT keys (q, k, v fused into ``qkv``).

    Returns the converted dict and the HF keys that have no timm counterpart and were dropped
    (ViTModel's pooler). Unknown keys are a ``CheckpointError``. CLIP / SigLIP towers: see the module note.
    """
    if _is_tower(state_dict):
        return _tower_to_timm(state_dict)
    if _is_beit(state_dict):
        return _beit_to_timm(state_dict)
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        if _IGNORED.search(key):
            dropped.append(key)
            continue
        if key in _HEAD_RULES:
            out[_HEAD_RULES[key]] = value
            continue
        body = key
        for prefix in HF_BACKBONES.values():
            if body.startswith(prefix):
                body = body[len(prefix) :]
                break
        m = _QKV.fullmatch(body)
        if m:
            idx = m.group(1) or m.group(3)
            part = (m.group(2) or m.group(4))[0]  # q / k / v
            qkv.setdefault((idx, m.group(5)), {})[part] = value
            continue
        for pattern, repl in _BLOCK_RULES:
            if re.fullmatch(pattern, body):
                out[re.sub(pattern, repl, body)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"unrecognised keys in an HF ViT/DeiT/AST checkpoint: {unknown[:8]}.")
    for (idx, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(
                f"HF block {idx}: attention {kind} needs query, key and value; found {sorted(parts)}."
            )
        out[f"blocks.{idx}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out, dropped


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


def _tower_to_timm(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A CLIP / SigLIP vision tower's state dict in timm's ViT key names (see the module note)."""
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        body = key.removeprefix("vision_model.")
        m = _TOWER_QKV.fullmatch(body)
        if m:
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
        elif body == "embeddings.class_embedding":
            out["cls_token"] = value.reshape(1, 1, -1)
        elif body == "embeddings.position_embedding.weight":
            out["pos_embed"] = value.unsqueeze(0)  # flat (1, P + h*w, C); the grid is resolved on load
        elif body == "embeddings.position_ids":
            dropped.append(key)  # an index buffer older transformers saved
        elif body in ("head.attention.in_proj_weight", "head.attention.in_proj_bias"):
            kind = "weight" if body.endswith("weight") else "bias"
            c = value.shape[0] // 3
            out[f"attn_pool.q.{kind}"], out[f"attn_pool.kv.{kind}"] = value[:c], value[c:]
        elif key == "visual_projection.weight":
            out["head.weight"] = value
            out["head.bias"] = value.new_zeros(value.shape[0])  # HF's projection has no bias
        else:
            for pattern, repl in _TOWER_RULES:
                if re.fullmatch(pattern, body):
                    out[re.sub(pattern, repl, body)] = value
                    break
            else:
                unknown.append(key)
    if unknown:
        raise CheckpointError(
            f"unrecognised keys in an HF CLIP / SigLIP vision checkpoint: {unknown[:8]}; rectvit reads "
            "CLIPVisionModel, CLIPVisionModelWithProjection and SiglipVisionModel weights."
        )
    for (idx, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(
                f"HF layer {idx}: attention {kind} needs q, k and v projections; found {sorted(parts)}."
            )
        out[f"blocks.{idx}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out, dropped


def _beit_to_timm(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """An HF BEiT state dict in timm's ``Beit`` key names (query, key and value weights fused into ``qkv``)."""
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        body = key.removeprefix("beit.")
        m = _BEIT_QKV.fullmatch(body)
        if m:
            qkv.setdefault(m.group(1), {})[(m.group(2) or m.group(3))[0]] = value
            continue
        if body == "embeddings.mask_token" or body.endswith("relative_position_index"):
            dropped.append(key)  # masked-image-modelling token; an index buffer
            continue
        for pattern, repl in _BEIT_RULES:
            if re.fullmatch(pattern, body):
                out[re.sub(pattern, repl, body)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(
            f"unrecognised keys in an HF BEiT checkpoint: {unknown[:8]}; rectvit reads BeitModel and "
            "BeitForImageClassification weights."
        )
    for idx, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CheckpointError(f"HF BEiT layer {idx}: attention needs query, key and value; found {sorted(parts)}.")
        out[f"blocks.{idx}.attn.qkv.weight"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out, dropped


def _beit_kwargs(config: dict[str, Any], state_dict: dict[str, torch.Tensor], hidden: int) -> dict[str, Any]:
    """rectvit ``Beit`` keywords for an HF ``BeitConfig``."""
    mean_pooling = bool(config.get("use_mean_pooling", True))
    scale = config.get("layer_scale_init_value", 0.1)
    return dict(
        img_size=hf_img_size("beit", config),
        patch_size=to_size(config.get("patch_size", 16), "patch_size"),
        in_chans=int(config.get("num_channels", 3)),
        embed_dim=hidden,
        depth=int(config["num_hidden_layers"]),
        num_heads=int(config["num_attention_heads"]),
        mlp_ratio=_mlp_ratio(hidden, int(config["intermediate_size"])),
        init_values=float(scale) if scale and scale > 0 else None,
        use_abs_pos_emb=bool(config.get("use_absolute_position_embeddings", False)),
        use_rel_pos_bias=bool(config.get("use_relative_position_bias", False)),
        use_shared_rel_pos_bias=bool(config.get("use_shared_relative_position_bias", False)),
        global_pool="avg" if mean_pooling else "token",
        use_fc_norm=mean_pooling,
        norm_eps=float(config.get("layer_norm_eps", 1e-12)),
        num_classes=int(state_dict["head.weight"].shape[0]) if "head.weight" in state_dict else 0,
    )


def _mlp_ratio(hidden: int, intermediate: int) -> float:
    """A ratio ``r`` with ``int(hidden * r) == intermediate`` (plain division can land one below)."""
    ratio = intermediate / hidden
    while int(hidden * ratio) < intermediate:
        ratio = math.nextafter(ratio, math.inf)
    return ratio


def _hf_patch_and_stride(family: str, config: dict[str, Any]) -> tuple[Size, Size]:
    patch = _size_value(config, "patch_size", 16)
    if family == "ast":
        return patch, (_value(config, "frequency_stride", 10), _value(config, "time_stride", 10))
    return patch, patch


def hf_img_size(family: str, config: dict[str, Any]) -> Size:
    if family == "ast":
        size = (_value(config, "num_mel_bins", 128), _value(config, "max_length", 1024))
    else:
        size = _size_value(config, "image_size", 224)
    return check_recorded_size(size, "HF config.json")


def hf_grid(family: str, config: dict[str, Any]) -> Size:
    """The position grid an HF config records (image size, patch size and strides)."""
    patch, stride = _hf_patch_and_stride(family, config)
    try:
        return patch_grid(hf_img_size(family, config), patch, stride)
    except CheckpointError:
        raise
    except RectViTError as e:
        raise CheckpointError(f"HF config.json: {e}") from None


def hf_windows(family: str, config: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    """``{bias-table key: [wh, ww]}`` an HF config records: HF's BEiT builds every relative-position bias table
    (per block and shared) on the patch grid of its ``image_size``; other families have none.
    ``state_dict`` holds timm's key names (after ``hf_to_timm``)."""
    if family != "beit":
        return {}
    grid = list(hf_grid(family, config))
    return {k: grid for k in state_dict if k.endswith("relative_position_bias_table")}


def hf_model_kwargs(family: str, config: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """rectvit ``VisionTransformer`` keyword arguments for the model an HF config describes."""
    missing = [
        k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size") if k not in config
    ]
    if missing:
        raise CheckpointError(
            f"HF config.json lacks {missing}; it does not describe a {family} model rectvit can build."
        )
    act = config.get("hidden_act", "gelu")
    if act not in _HF_ACTS:
        raise CheckpointError(f"HF hidden_act {act!r} is not supported; rectvit reads {sorted(_HF_ACTS)}.")
    hidden = _value(config, "hidden_size", None)
    if family == "beit":
        if act != "gelu":
            raise CheckpointError(f"HF BEiT hidden_act {act!r} is not supported; rectvit's BEiT uses exact 'gelu'.")
        return _beit_kwargs(config, state_dict, hidden)
    patch, stride = _hf_patch_and_stride(family, config)
    num_classes = int(state_dict["head.weight"].shape[0]) if "head.weight" in state_dict else 0
    kwargs: dict[str, Any] = dict(
        img_size=hf_img_size(family, config),
        patch_size=patch,
        in_chans=1 if family == "ast" else _value(config, "num_channels", 3),
        embed_dim=hidden,
        depth=_value(config, "num_hidden_layers", None),
        num_heads=_value(config, "num_attention_heads", None),
        mlp_ratio=_mlp_ratio(hidden, _value(config, "intermediate_size", None)),
        qkv_bias=bool(config.get("qkv_bias", True)),
        norm_eps=_value(config, "layer_norm_eps", 1e-12, float),
        num_classes=num_classes,
    )
    if stride != patch:
        kwargs["patch_stride"] = stride
    if _HF_ACTS[act] != "gelu":
        kwargs["act_layer"] = _HF_ACTS[act]
    if family == "clip":
        kwargs.update(pre_norm=True, norm_eps=float(config.get("layer_norm_eps", 1e-5)))
    elif family == "siglip":
        pool = dict(global_pool="map") if "attn_pool.latent" in state_dict else dict(global_pool="avg", fc_norm=False)
        kwargs.update(class_token=False, norm_eps=float(config.get("layer_norm_eps", 1e-6)), **pool)
    if family == "ast":  # a headless ASTModel keeps the pooling (mean of class and distillation tokens)
        kwargs.update(distilled=True, global_pool="token_dist", head_norm="head_norm.weight" in state_dict)
    elif family == "deit" and "dist_token" in state_dict:
        if "head.weight" in state_dict and "head_dist.weight" not in state_dict:
            raise CheckpointError(
                "HF DeiTForImageClassification (one classifier on the class token beside a distillation "
                "token) has no rectvit counterpart; load DeiTForImageClassificationWithTeacher or DeiTModel "
                "weights, or load this one's backbone with strict=False into a distilled DeiT."
            )
        kwargs.update(distilled=True)
    return kwargs
