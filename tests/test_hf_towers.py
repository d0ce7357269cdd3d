"""HF CLIP / SigLIP vision towers: save_pretrained folder -> rectvit.load_model -> HF's outputs (HF is the oracle).

HF's CLIP ``last_hidden_state`` is the last block's output *before* ``post_layernorm`` (timm's
``norm``); its ``pooler_output`` is ``post_layernorm`` of the class token. SigLIP's
``last_hidden_state`` is after ``post_layernorm`` and its ``pooler_output`` is the attention-pool head.
"""

import pytest
import torch

import rectvit
from helpers import randomize_

transformers = pytest.importorskip("transformers", reason="HF transformers is the oracle; `make test` installs it")

TOL = 1e-5
SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)


def _save(model, path):
    model.eval().save_pretrained(path)
    return path


def _last_hidden_before_norm(model, x: torch.Tensor) -> torch.Tensor:
    """``(B, P + h*w, C)``: the last block's tokens, prefix first (HF CLIP's last_hidden_state)."""
    out = model.forward_intermediates(
        x, indices=1, output_fmt="NLC", return_prefix_tokens=True, intermediates_only=True
    )
    maps, prefix = out[0]
    return torch.cat([prefix, maps], dim=1)


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_clip_vision_model(tmp_path, act, one_thread):
    cfg = transformers.CLIPVisionConfig(image_size=64, patch_size=16, hidden_act=act, **SMALL)
    hf = randomize_(transformers.CLIPVisionModel(cfg), seed=1).eval()
    model = rectvit.load_model(_save(hf, tmp_path)).eval()
    report = model.load_report
    assert report.layout == "hf-clip" and report.source_grid == (4, 4) and "recorded" in report.grid_basis
    assert model.grid_size == (4, 4) and model.num_prefix_tokens == 1 and model.num_classes == 0
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = hf(pixel_values=x)
        torch.testing.assert_close(_last_hidden_before_norm(model, x), ref.last_hidden_state, atol=TOL, rtol=0)
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        torch.testing.assert_close(pooled, ref.pooler_output, atol=TOL, rtol=0)
        torch.testing.assert_close(model(x), ref.pooler_output, atol=TOL, rtol=0)


def test_clip_vision_model_with_projection(tmp_path, one_thread):
    cfg = transformers.CLIPVisionConfig(image_size=96, patch_size=32, projection_dim=24, **SMALL)
    hf = randomize_(transformers.CLIPVisionModelWithProjection(cfg), seed=2).eval()
    model = rectvit.load_model(_save(hf, tmp_path)).eval()
    assert model.num_classes == 24 and torch.equal(model.head.bias, torch.zeros(24))
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        ref = hf(pixel_values=x)
        torch.testing.assert_close(model(x), ref.image_embeds, atol=TOL, rtol=0)
        torch.testing.assert_close(_last_hidden_before_norm(model, x), ref.last_hidden_state, atol=TOL, rtol=0)
    # In-memory state dict (transformers 5 keeps "vision_model.") into the timm-named model.
    ours = rectvit.create_model(
        "vit_base_patch32_clip_quickgelu_224",
        img_size=96,
        num_classes=24,
        embed_dim=64,
        depth=2,
        num_heads=4,
        mlp_ratio=2,
    ).eval()
    # a bare state dict records nothing: the config's 3x3 grid (96 / 32) is named
    assert rectvit.load_checkpoint(ours, hf.state_dict(), source_grid=(3, 3)).layout == "hf-clip"
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref.image_embeds, atol=TOL, rtol=0)


def test_clip_other_size_resamples_the_recorded_grid(tmp_path):
    cfg = transformers.CLIPVisionConfig(image_size=64, patch_size=16, **SMALL)
    hf = randomize_(transformers.CLIPVisionModel(cfg), seed=3).eval()
    model = rectvit.load_model(_save(hf, tmp_path), img_size=(96, 48)).eval()
    assert model.grid_size == (6, 3) and model.load_report.source_grid == (4, 4)
    assert any(r[0] == "pos_embed" and r[1][1:3] == (4, 4) and r[2][1:3] == (6, 3) for r in model.load_report.rows)
    # the reference: HF's tower with its 4x4 table resampled by hand to 6x3 (torch's antialiased bicubic, the
    # rule rectvit and timm load with) in place of HF's own interpolation
    embeddings = hf.embeddings
    table = embeddings.position_embedding.weight.detach()[None]  # (1, 1 + 16, C)
    grid = table[:, 1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(grid, size=(6, 3), mode="bicubic", align_corners=False, antialias=True)
    resampled = torch.cat([table[:, :1], grid.permute(0, 2, 3, 1).reshape(1, 18, -1)], dim=1)
    embeddings.interpolate_pos_encoding = lambda tokens, height, width: resampled
    x = torch.randn(2, 3, 96, 48)
    with torch.no_grad():
        ref = hf(pixel_values=x, interpolate_pos_encoding=True)
        torch.testing.assert_close(model(x), ref.pooler_output, atol=TOL, rtol=0)


@pytest.mark.parametrize("use_head", [True, False])
def test_siglip_vision_model(tmp_path, use_head, one_thread):
    cfg = transformers.SiglipVisionConfig(image_size=64, patch_size=16, vision_use_head=use_head, **SMALL)
    hf = randomize_(transformers.SiglipVisionModel(cfg), seed=4).eval()
    model = rectvit.load_model(_save(hf, tmp_path)).eval()
    report = model.load_report
    assert report.layout == "hf-siglip" and report.source_grid == (4, 4) and "recorded" in report.grid_basis
    assert model.num_prefix_tokens == 0 and model.global_pool == ("map" if use_head else "avg")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = hf(pixel_values=x)
        features = model.forward_features(x)
        torch.testing.assert_close(features, ref.last_hidden_state, atol=TOL, rtol=0)
        if use_head:
            pooled = model.forward_head(features, pre_logits=True)
            torch.testing.assert_close(pooled, ref.pooler_output, atol=TOL, rtol=0)


def test_siglip_intermediate_size_that_division_rounds_down(tmp_path):
    """hidden 56, intermediate 115: 56 * (115 / 56) is 114.99999999999999; the MLP must still be 115 wide."""
    cfg = transformers.SiglipVisionConfig(
        image_size=32, patch_size=16, hidden_size=56, num_hidden_layers=1, num_attention_heads=4, intermediate_size=115
    )
    hf = randomize_(transformers.SiglipVisionModel(cfg), seed=5).eval()
    model = rectvit.load_model(_save(hf, tmp_path)).eval()
    assert model.blocks[0].mlp.fc1.out_features == 115 and model.attn_pool.mlp.fc1.out_features == 115
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), hf(pixel_values=x).last_hidden_state, atol=TOL, rtol=0)


def test_full_clip_model_folder_is_a_clear_error(tmp_path):
    text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    cfg = transformers.CLIPConfig(text_config=text, vision_config=dict(image_size=32, patch_size=16, **text))
    _save(transformers.CLIPModel(cfg), tmp_path)
    with pytest.raises(rectvit.CheckpointError, match="CLIPVisionModelWithProjection.from_pretrained"):
        rectvit.load_model(tmp_path)


def test_unsupported_activation_and_unknown_keys_are_named(tmp_path):
    cfg = transformers.SiglipVisionConfig(image_size=32, patch_size=16, hidden_act="relu", **SMALL)
    _save(transformers.SiglipVisionModel(cfg), tmp_path / "relu")
    with pytest.raises(rectvit.CheckpointError, match="hidden_act 'relu'"):
        rectvit.load_model(tmp_path / "relu")
    sd = transformers.SiglipVisionModel(cfg).state_dict()
    sd["vision_model.extra.weight"] = torch.zeros(1)
    model = rectvit.create_model("vit_base_patch16_siglip_224", img_size=32, embed_dim=64, depth=2, num_heads=4)
    with pytest.raises(rectvit.CheckpointError, match="extra.weight"):
        rectvit.load_checkpoint(model, sd)


@pytest.mark.parametrize("tower", ["clip", "siglip"])
@pytest.mark.parametrize("size", [(96, 128), (48, 112), (32, 32)])
def test_other_sizes_with_hf_interpolation(tmp_path, tower, size, one_thread):
    """HF's interpolate_pos_encoding=True (bicubic, no antialiasing) at other, rectangular sizes equals a dynamic
    rectvit model with pos_antialias=False; the default (antialiased, as timm) differs when shrinking."""
    if tower == "clip":
        cfg = transformers.CLIPVisionConfig(image_size=64, patch_size=16, **SMALL)
        hf = randomize_(transformers.CLIPVisionModel(cfg), seed=6).eval()
    else:
        cfg = transformers.SiglipVisionConfig(image_size=64, patch_size=16, **SMALL)
        hf = randomize_(transformers.SiglipVisionModel(cfg), seed=6).eval()
    path = _save(hf, tmp_path)
    model = rectvit.load_model(path, dynamic_img_size=True, pos_antialias=False).eval()
    assert model.grid_size == (4, 4)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        ref = hf(pixel_values=x, interpolate_pos_encoding=True)
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        torch.testing.assert_close(pooled, ref.pooler_output, atol=TOL, rtol=0)
        if size == (32, 32):  # shrinking: the antialiased default is another (timm's) resampling
            default = rectvit.load_model(path, dynamic_img_size=True).eval()
            alt = default.forward_head(default.forward_features(x), pre_logits=True)
            assert (alt - ref.pooler_output).abs().max() > 1e-4
