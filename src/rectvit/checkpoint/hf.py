"""Hugging Face ViT / DeiT / AST state dicts -> timm's ViT layout, and model configs from HF config.json.

Both HF key schemes are read: the saved one (``encoder.layer.N.attention.attention.query``, what
``save_pretrained`` writes and the hub holds) and transformers 5's in-memory one
(``layers.N.attention.q_proj``). The flat position table keeps its HF form ``(1, P + h*w, C)``;
``hf_grid`` says which grid the config records for it.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ..errors import CheckpointError, RectViTError
from ..grid import Size, patch_grid, to_size
from .io import check_recorded_size

__all__ = ["is_hf_layout", "hf_family", "hf_to_timm", "hf_model_kwargs", "hf_grid", "HF_BACKBONES"]

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


def is_hf_layout(state_dict: dict[str, torch.Tensor]) -> bool:
    return any(k.endswith("embeddings.position_embeddings") for k in state_dict)


def hf_family(state_dict: dict[str, torch.Tensor], config: dict[str, Any] | None = None) -> str:
    """``"vit"``, ``"deit"`` or ``"ast"``, from the config's ``model_type`` or the key prefixes."""
    model_type = (config or {}).get("model_type")
    if model_type in ("vit", "deit"):
        return model_type
    if model_type == "audio-spectrogram-transformer":
        return "ast"
    if model_type:
        raise CheckpointError(
            f"HF model_type {model_type!r} is not supported; rectvit reads 'vit', 'deit' and "
            "'audio-spectrogram-transformer' checkpoints."
        )
    for family, prefix in HF_BACKBONES.items():
        if any(k.startswith(prefix) for k in state_dict):
            return family
    return "deit" if any(k.endswith("distillation_token") for k in state_dict) else "vit"


def hf_to_timm(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename an HF ViT/DeiT/AST state dict to timm's ViT keys (q, k, v fused into ``qkv``).

    Returns the converted dict and the HF keys that have no timm counterpart and were dropped
    (ViTModel's pooler). Unknown keys are a ``CheckpointError``.
    """
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
    if not isinstance(act, str) or act != "gelu":
        raise CheckpointError(f"HF hidden_act {act!r} is not supported; rectvit's ViT uses exact 'gelu'.")
    hidden = _value(config, "hidden_size", None)
    patch, stride = _hf_patch_and_stride(family, config)
    num_classes = int(state_dict["head.weight"].shape[0]) if "head.weight" in state_dict else 0
    kwargs: dict[str, Any] = dict(
        img_size=hf_img_size(family, config),
        patch_size=patch,
        in_chans=1 if family == "ast" else _value(config, "num_channels", 3),
        embed_dim=hidden,
        depth=_value(config, "num_hidden_layers", None),
        num_heads=_value(config, "num_attention_heads", None),
        mlp_ratio=_value(config, "intermediate_size", None) / hidden,
        qkv_bias=bool(config.get("qkv_bias", True)),
        norm_eps=_value(config, "layer_norm_eps", 1e-12, float),
        num_classes=num_classes,
    )
    if stride != patch:
        kwargs["patch_stride"] = stride
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
