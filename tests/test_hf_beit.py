"""HF BEiT import: save_pretrained folder / state dict -> rectvit's BEiT -> HF's outputs (HF is the oracle).

At square config sizes only: HF's BEiT reshapes a rectangular window's table as (width, height) and
bilinearly resizes it back, so its own outputs at a rectangular config size are not a trustworthy oracle.
"""

import pytest
import torch

import rectvit
from helpers import randomize_
from rectvit.models.beit import Beit

transformers = pytest.importorskip("transformers", reason="HF transformers is the oracle; `make test` installs it")

TOL = 1e-5
SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)


def _save(model, path):
    model.eval().save_pretrained(path)
    return path


def test_beit_for_image_classification(tmp_path, one_thread):
    cfg = transformers.BeitConfig(
        image_size=64, patch_size=16, num_labels=5, use_relative_position_bias=True, layer_scale_init_value=0.1, **SMALL
    )
    hf = randomize_(transformers.BeitForImageClassification(cfg), seed=1).eval()
    model = rectvit.load_model(_save(hf, tmp_path)).eval()
    assert isinstance(model, Beit) and model.load_report.layout == "hf-beit"
    assert model.global_pool == "avg" and model.blocks[0].attn.relative_position_bias_table.shape == (52, 4)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), hf(pixel_values=x).logits, atol=TOL, rtol=0)
    # transformers 5's in-memory names, into the timm-named architecture
    ours = rectvit.create_model(
        "beitv2_base_patch16_224",
        img_size=64,
        num_classes=5,
        embed_dim=64,
        depth=2,
        num_heads=4,
        mlp_ratio=2,
        norm_eps=1e-12,
    ).eval()
    # a bare state dict records nothing: its 4x4 window (the config's patch grid) is named
    assert rectvit.load_checkpoint(ours, hf.state_dict(), source_windows=(4, 4)).layout == "hf-beit"
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(pixel_values=x).logits, atol=TOL, rtol=0)


def test_beit_model_shared_bias_absolute_table_token_pooling(tmp_path, one_thread):
    cfg = transformers.BeitConfig(
        image_size=48,
        patch_size=16,
        use_absolute_position_embeddings=True,
        use_shared_relative_position_bias=True,
        use_mean_pooling=False,
        **SMALL,
    )
    hf = randomize_(transformers.BeitModel(cfg), seed=2).eval()
    model = rectvit.load_model(_save(hf, tmp_path)).eval()
    assert model.rel_pos_bias is not None and model.pos_embed.shape == (1, 3, 3, 64)
    assert "recorded" in model.load_report.grid_basis
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        ref = hf(pixel_values=x)
        features = model.forward_features(x)
        torch.testing.assert_close(features, ref.last_hidden_state, atol=TOL, rtol=0)
        torch.testing.assert_close(model.forward_head(features, pre_logits=True), ref.pooler_output, atol=TOL, rtol=0)


def test_config_records_the_window_a_bare_state_dict_does_not(tmp_path):
    """HF builds BEiT's bias tables on the patch grid of config.json's image_size (4x4 here), so the folder
    records the window: loading it into a 6x3 model resamples from 4x4, as loading at the config size and
    then set_input_size does. The same weights without their config record nothing: AmbiguousGridError."""
    cfg = transformers.BeitConfig(image_size=64, patch_size=16, use_relative_position_bias=True, **SMALL)
    hf = randomize_(transformers.BeitModel(cfg), seed=3).eval()
    path = _save(hf, tmp_path)
    model = rectvit.load_model(path, img_size=(96, 48)).eval()
    rows = [r for r in model.load_report.rows if r[0].endswith("relative_position_bias_table")]
    assert len(rows) == 2 and all("4x4 -> 6x3" in r[3] and "window recorded" in r[4] for r in rows)
    ref = rectvit.load_model(path).eval()
    ref.set_input_size(img_size=(96, 48))
    assert ref.blocks[0].attn.window_size == (6, 3)
    x = torch.randn(1, 3, 96, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), atol=TOL, rtol=0)
    bare = Beit(**{**ref.model_config, "img_size": (96, 48)})
    with pytest.raises(rectvit.AmbiguousGridError, match="4x4"):
        rectvit.load_checkpoint(bare, hf.state_dict())
