"""timm's default pretrained configurations (data-pipeline fields) for the architectures rectvit registers.

Only the fields that describe how an input is prepared and which tag timm picks by default are
recorded here; the fields that follow the model as it is now (``input_size``, ``num_classes``,
``fixed_input_size``, ``first_conv``, ``classifier``, ``pool_size``) are read off the model by
``RectViTModel.pretrained_cfg``. Names missing from this table get ``GENERIC`` (ImageNet statistics).
"""

from __future__ import annotations

from typing import Any

__all__ = ["GENERIC", "pretrained_cfg_for", "has_pretrained_cfg", "TIMM_MODULES"]

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
INCEPTION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
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


_CFGS: dict[str, dict[str, Any]] = {
    "ast_base_patch16_s10_128x1024": _cfg("", AUDIOSET, 1.0, "bilinear"),
    "deit3_base_patch16_224": _cfg("fb_in1k", IMAGENET, 0.9),
    "deit3_small_patch16_224": _cfg("fb_in1k", IMAGENET, 0.9),
    "deit_base_distilled_patch16_224": _cfg("fb_in1k", IMAGENET, 0.9),
    "deit_base_patch16_224": _cfg("fb_in1k", IMAGENET, 0.9),
    "deit_small_distilled_patch16_224": _cfg("fb_in1k", IMAGENET, 0.9),
    "deit_small_patch16_224": _cfg("fb_in1k", IMAGENET, 0.9),
    "deit_tiny_distilled_patch16_224": _cfg("fb_in1k", IMAGENET, 0.9),
    "deit_tiny_patch16_224": _cfg("fb_in1k", IMAGENET, 0.9),
    "swin_base_patch4_window12_384": _cfg("ms_in22k_ft_in1k", IMAGENET, 1.0),
    "swin_base_patch4_window7_224": _cfg("ms_in22k_ft_in1k", IMAGENET, 0.9),
    "swin_small_patch4_window7_224": _cfg("ms_in22k_ft_in1k", IMAGENET, 0.9),
    "swin_tiny_patch4_window7_224": _cfg("ms_in1k", IMAGENET, 0.9),
    "swinv2_small_window8_256": _cfg("ms_in1k", IMAGENET, 0.9),
    "swinv2_tiny_window16_256": _cfg("ms_in1k", IMAGENET, 0.9),
    "swinv2_tiny_window8_256": _cfg("ms_in1k", IMAGENET, 0.9),
    "vit_base_patch14_reg4_dinov2": _cfg("lvd142m", IMAGENET, 1.0),
    "vit_base_patch16_224": _cfg("augreg2_in21k_ft_in1k", INCEPTION, 0.9),
    "vit_base_patch16_384": _cfg("augreg_in21k_ft_in1k", INCEPTION, 1.0),
    "vit_base_patch16_reg4_gap_256": _cfg("untrained", INCEPTION, 0.9),
    "vit_base_patch32_224": _cfg("augreg_in21k_ft_in1k", INCEPTION, 0.9),
    "vit_base_r50_s16_224": _cfg("orig_in21k", INCEPTION, 0.9),
    "vit_base_r50_s16_384": _cfg("orig_in21k_ft_in1k", INCEPTION, 1.0),
    "vit_large_patch16_224": _cfg("augreg_in21k_ft_in1k", INCEPTION, 0.9),
    "vit_medium_patch16_gap_256": _cfg("sw_in12k_ft_in1k", INCEPTION, 0.95),
    "vit_small_patch14_dinov2": _cfg("lvd142m", IMAGENET, 1.0),
    "vit_small_patch14_reg4_dinov2": _cfg("lvd142m", IMAGENET, 1.0),
    "vit_small_patch16_224": _cfg("augreg_in21k_ft_in1k", INCEPTION, 0.9),
    "vit_small_patch8_224": _cfg("dino", IMAGENET, 0.9),
    "vit_small_r26_s32_224": _cfg("augreg_in21k_ft_in1k", INCEPTION, 0.9),
    "vit_small_r26_s32_384": _cfg("augreg_in21k_ft_in1k", INCEPTION, 1.0),
    "vit_tiny_patch16_224": _cfg("augreg_in21k_ft_in1k", INCEPTION, 0.9),
    "vit_tiny_r_s16_p8_224": _cfg("augreg_in21k_ft_in1k", INCEPTION, 0.9),
    "vit_tiny_r_s16_p8_384": _cfg("augreg_in21k_ft_in1k", INCEPTION, 1.0),
    # Names the BEiT, CLIP/SigLIP, Swin v2 CR and EVA-02 families register (one table for timm's cfgs).
    "beit_base_patch16_224": _cfg("in22k_ft_in22k_in1k", INCEPTION, 0.9),
    "beit_base_patch16_384": _cfg("in22k_ft_in22k_in1k", INCEPTION, 1.0),
    "beit_large_patch16_224": _cfg("in22k_ft_in22k_in1k", INCEPTION, 0.9),
    "beit_large_patch16_384": _cfg("in22k_ft_in22k_in1k", INCEPTION, 1.0),
    "beit_large_patch16_512": _cfg("in22k_ft_in22k_in1k", INCEPTION, 1.0),
    "beitv2_base_patch16_224": _cfg("in1k_ft_in22k_in1k", IMAGENET, 0.9),
    "beitv2_large_patch16_224": _cfg("in1k_ft_in22k_in1k", IMAGENET, 0.95),
    "eva02_base_patch14_224": _cfg("mim_in22k", CLIP, 0.9),
    "eva02_base_patch14_448": _cfg("mim_in22k_ft_in22k_in1k", CLIP, 1.0, crop_mode="squash"),
    "eva02_large_patch14_224": _cfg("mim_in22k", CLIP, 0.9),
    "eva02_large_patch14_448": _cfg("mim_in22k_ft_in22k_in1k", CLIP, 1.0, crop_mode="squash"),
    "eva02_small_patch14_224": _cfg("mim_in22k", CLIP, 0.9),
    "eva02_small_patch14_336": _cfg("mim_in22k_ft_in1k", CLIP, 1.0),
    "eva02_tiny_patch14_224": _cfg("mim_in22k", CLIP, 0.9),
    "eva02_tiny_patch14_336": _cfg("mim_in22k_ft_in1k", CLIP, 1.0),
    "swinv2_cr_base_ns_224": _cfg("untrained", IMAGENET, 0.9),
    "swinv2_cr_huge_224": _cfg("untrained", IMAGENET, 0.9),
    "swinv2_cr_huge_384": _cfg("untrained", IMAGENET, 1.0),
    "swinv2_cr_small_ns_224": _cfg("sw_in1k", IMAGENET, 0.9),
    "swinv2_cr_small_ns_256": _cfg("untrained", IMAGENET, 1.0),
    "swinv2_cr_tiny_ns_224": _cfg("sw_in1k", IMAGENET, 0.9),
    "vit_base_patch16_clip_224": _cfg("laion2b_ft_in12k_in1k", CLIP, 0.95),
    "vit_base_patch16_clip_384": _cfg("laion2b_ft_in12k_in1k", CLIP, 1.0, crop_mode="squash"),
    "vit_base_patch16_clip_quickgelu_224": _cfg("metaclip_2pt5b", CLIP, 1.0),
    "vit_base_patch16_plus_clip_240": _cfg("laion400m_e32", CLIP, 1.0),
    "vit_base_patch16_rope_reg1_gap_256": _cfg("sbb_in1k", INCEPTION, 0.95),
    "vit_base_patch16_siglip_224": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_base_patch16_siglip_256": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_base_patch16_siglip_384": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_base_patch16_siglip_512": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_base_patch16_siglip_gap_224": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_base_patch16_siglip_gap_256": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_base_patch16_siglip_gap_384": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_base_patch16_siglip_gap_512": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_base_patch32_clip_224": _cfg("laion2b_ft_in12k_in1k", CLIP, 0.9),
    "vit_base_patch32_clip_256": _cfg("datacompxl", CLIP, 1.0),
    "vit_base_patch32_clip_384": _cfg("laion2b_ft_in12k_in1k", CLIP, 1.0),
    "vit_base_patch32_clip_448": _cfg("laion2b_ft_in12k_in1k", CLIP, 1.0),
    "vit_base_patch32_clip_quickgelu_224": _cfg("laion400m_e32", CLIP, 0.9),
    "vit_base_patch32_siglip_256": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_base_patch32_siglip_gap_256": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_betwixt_patch32_clip_224": _cfg("tinyclip_laion400m", CLIP, 0.9),
    "vit_giant_patch14_clip_224": _cfg("laion2b", CLIP, 1.0),
    "vit_giantopt_patch16_siglip_256": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_giantopt_patch16_siglip_384": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_giantopt_patch16_siglip_gap_256": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_giantopt_patch16_siglip_gap_384": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_gigantic_patch14_clip_224": _cfg("laion2b", CLIP, 1.0),
    "vit_gigantic_patch14_clip_378": _cfg("metaclip2_worldwide", CLIP, 1.0, crop_mode="squash"),
    "vit_gigantic_patch14_clip_quickgelu_224": _cfg("metaclip_2pt5b", CLIP, 1.0),
    "vit_huge_patch14_clip_224": _cfg("laion2b_ft_in12k_in1k", CLIP, 1.0),
    "vit_huge_patch14_clip_336": _cfg("laion2b_ft_in12k_in1k", CLIP, 1.0, crop_mode="squash"),
    "vit_huge_patch14_clip_378": _cfg("dfn5b", CLIP, 1.0),
    "vit_huge_patch14_clip_quickgelu_224": _cfg("dfn5b", CLIP, 1.0),
    "vit_huge_patch14_clip_quickgelu_378": _cfg("dfn5b", CLIP, 1.0),
    "vit_large_patch14_clip_224": _cfg("laion2b_ft_in12k_in1k", INCEPTION, 1.0),
    "vit_large_patch14_clip_336": _cfg("laion2b_ft_in12k_in1k", INCEPTION, 1.0, crop_mode="squash"),
    "vit_large_patch14_clip_quickgelu_224": _cfg("dfn2b", CLIP, 1.0),
    "vit_large_patch14_clip_quickgelu_336": _cfg("openai", CLIP, 1.0),
    "vit_large_patch16_siglip_256": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_large_patch16_siglip_384": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_large_patch16_siglip_512": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_large_patch16_siglip_gap_256": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_large_patch16_siglip_gap_384": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_large_patch16_siglip_gap_512": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_medium_patch16_clip_224": _cfg("tinyclip_yfcc15m", CLIP, 0.9),
    "vit_medium_patch32_clip_224": _cfg("tinyclip_laion400m", CLIP, 0.9),
    "vit_so400m_patch14_siglip_224": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_so400m_patch14_siglip_378": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_so400m_patch14_siglip_384": _cfg("webli", INCEPTION, 0.9),
    "vit_so400m_patch14_siglip_gap_224": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_so400m_patch14_siglip_gap_378": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_so400m_patch14_siglip_gap_384": _cfg("webli", INCEPTION, 1.0),
    "vit_so400m_patch14_siglip_gap_448": _cfg("pali_mix", INCEPTION, 1.0),
    "vit_so400m_patch14_siglip_gap_896": _cfg("pali_pt", INCEPTION, 1.0),
    "vit_so400m_patch16_siglip_256": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_so400m_patch16_siglip_384": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_so400m_patch16_siglip_512": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_so400m_patch16_siglip_gap_256": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_so400m_patch16_siglip_gap_384": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_so400m_patch16_siglip_gap_512": _cfg("v2_webli", INCEPTION, 0.9),
    "vit_xsmall_patch16_clip_224": _cfg("tinyclip_yfcc15m", CLIP, 0.9),
    # Swin v2 CR, rope-ViT and DINOv3 names (timm 1.0.31's default cfgs)
    "swinv2_cr_base_224": _cfg("untrained", IMAGENET, 0.9),
    "swinv2_cr_base_384": _cfg("untrained", IMAGENET, 1.0),
    "swinv2_cr_giant_224": _cfg("untrained", IMAGENET, 0.9),
    "swinv2_cr_giant_384": _cfg("untrained", IMAGENET, 1.0),
    "swinv2_cr_large_224": _cfg("untrained", IMAGENET, 0.9),
    "swinv2_cr_large_384": _cfg("untrained", IMAGENET, 1.0),
    "swinv2_cr_small_224": _cfg("sw_in1k", IMAGENET, 0.9),
    "swinv2_cr_small_384": _cfg("untrained", IMAGENET, 1.0),
    "swinv2_cr_tiny_224": _cfg("untrained", IMAGENET, 0.9),
    "swinv2_cr_tiny_384": _cfg("untrained", IMAGENET, 1.0),
    "vit_base_patch16_dinov3": _cfg("lvd1689m", IMAGENET, 1.0),
    "vit_base_patch16_dinov3_qkvb": _cfg("lvd1689m", IMAGENET, 1.0),
    "vit_base_patch16_rope_224": _cfg("naver_in1k", IMAGENET, 0.9),
    "vit_base_patch16_rope_ape_224": _cfg("naver_in1k", IMAGENET, 0.9),
    "vit_base_patch16_rope_mixed_224": _cfg("naver_in1k", IMAGENET, 0.9),
    "vit_base_patch16_rope_mixed_ape_224": _cfg("naver_in1k", IMAGENET, 0.9),
    "vit_large_patch16_dinov3": _cfg("lvd1689m", IMAGENET, 1.0),
    "vit_large_patch16_dinov3_qkvb": _cfg("lvd1689m", IMAGENET, 1.0),
    "vit_large_patch16_rope_224": _cfg("naver_in1k", IMAGENET, 0.9),
    "vit_large_patch16_rope_ape_224": _cfg("naver_in1k", IMAGENET, 0.9),
    "vit_large_patch16_rope_mixed_224": _cfg("naver_in1k", IMAGENET, 0.9),
    "vit_large_patch16_rope_mixed_ape_224": _cfg("naver_in1k", IMAGENET, 0.9),
    "vit_small_patch16_dinov3": _cfg("lvd1689m", IMAGENET, 1.0),
    "vit_small_patch16_dinov3_qkvb": _cfg("lvd1689m", IMAGENET, 1.0),
    "vit_small_patch16_rope_224": _cfg("naver_in1k", IMAGENET, 0.9),
    "vit_small_patch16_rope_ape_224": _cfg("naver_in1k", IMAGENET, 0.9),
    "vit_small_patch16_rope_mixed_224": _cfg("naver_in1k", IMAGENET, 0.9),
    "vit_small_patch16_rope_mixed_ape_224": _cfg("naver_in1k", IMAGENET, 0.9),
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
    return arch in _CFGS


def pretrained_cfg_for(arch: str, tag: str = "") -> dict[str, Any]:
    """The static fields of ``arch``'s default pretrained cfg (``GENERIC`` when unknown), ``tag`` kept when given."""
    cfg = {"architecture": arch, **_CFGS.get(arch, GENERIC)}
    if tag:
        cfg["tag"] = tag
    return cfg
