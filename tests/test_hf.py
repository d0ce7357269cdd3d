"""Hugging Face importers: save_pretrained folder -> rectvit.load_model -> the same outputs (HF is the oracle)."""

import pytest
import torch
import torch.nn.functional as F

import rectvit
from helpers import randomize_


@pytest.fixture(scope="module")
def transformers():
    """HF transformers, the oracle (imported per test: the folder-error test needs none)."""
    return pytest.importorskip("transformers", reason="HF transformers is the oracle; `make test` installs it")


TOL = 1e-5
SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)


def _save(model, tmp_path):
    model.eval()
    model.save_pretrained(tmp_path)
    return tmp_path


@pytest.mark.parametrize("image_size", [64, (96, 48), (32, 128)])
def test_vit_for_image_classification(tmp_path, image_size, transformers):
    cfg = transformers.ViTConfig(image_size=image_size, patch_size=16, num_labels=5, **SMALL)
    hf = randomize_(transformers.ViTForImageClassification(cfg), seed=1).eval()
    model = rectvit.load_model(_save(hf, tmp_path)).eval()
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    assert model.grid_size == (h // 16, w // 16) and model.load_report.layout == "hf-vit"
    assert "recorded" in model.load_report.grid_basis
    x = torch.randn(2, 3, h, w)
    with torch.no_grad():
        torch.testing.assert_close(model(x), hf(pixel_values=x).logits, atol=TOL, rtol=0)


def test_vit_model_backbone_and_pooler_dropped(tmp_path, transformers):
    cfg = transformers.ViTConfig(image_size=(64, 32), patch_size=16, **SMALL)
    hf = randomize_(transformers.ViTModel(cfg), seed=2).eval()
    model = rectvit.load_model(_save(hf, tmp_path)).eval()
    assert model.num_classes == 0 and any("pooler" in k for k in model.load_report.dropped)
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), hf(pixel_values=x).last_hidden_state, atol=TOL, rtol=0)


def test_vit_state_dict_in_memory_into_a_rectangular_model(transformers):
    cfg = transformers.ViTConfig(image_size=(64, 32), patch_size=16, num_labels=5, **SMALL)
    hf = randomize_(transformers.ViTForImageClassification(cfg), seed=3).eval()
    model = rectvit.create_model(
        "vit_base_patch16_224",
        img_size=(64, 32),
        num_classes=5,
        embed_dim=64,
        depth=2,
        num_heads=4,
        mlp_ratio=2,
        norm_eps=1e-12,
    ).eval()
    report = rectvit.load_checkpoint(model, hf.state_dict(), source_grid=(4, 2))  # transformers 5's key names
    assert report.layout == "hf-vit"
    x = torch.randn(1, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), hf(pixel_values=x).logits, atol=TOL, rtol=0)


def test_deit_distilled_with_teacher(tmp_path, transformers):
    cfg = transformers.DeiTConfig(image_size=(48, 80), patch_size=16, num_labels=7, **SMALL)
    hf = randomize_(transformers.DeiTForImageClassificationWithTeacher(cfg), seed=4).eval()
    model = rectvit.load_model(_save(hf, tmp_path)).eval()
    assert model.distilled and model.grid_size == (3, 5) and model.load_report.layout == "hf-deit"
    x = torch.randn(2, 3, 48, 80)
    with torch.no_grad():
        torch.testing.assert_close(model(x), hf(pixel_values=x).logits, atol=TOL, rtol=0)


def _ast(transformers, mel: int, frames: int, seed: int = 5):
    cfg = transformers.ASTConfig(num_mel_bins=mel, max_length=frames, num_labels=6, **SMALL)
    return randomize_(transformers.ASTForAudioClassification(cfg), seed=seed).eval()


def test_headless_ast_model_folder_loads_as_a_backbone(tmp_path, transformers):
    cfg = transformers.ASTConfig(num_mel_bins=48, max_length=120, **SMALL)
    hf = randomize_(transformers.ASTModel(cfg), seed=8).eval()
    model = rectvit.load_model(_save(hf, tmp_path)).eval()
    assert model.num_classes == 0 and model.load_report.layout == "hf-ast"
    spec = torch.randn(2, 120, 48)
    x = spec.transpose(1, 2).unsqueeze(1)
    with torch.no_grad():
        out = hf(spec)
        torch.testing.assert_close(model.forward_features(x), out.last_hidden_state, atol=TOL, rtol=0)
        torch.testing.assert_close(model(x), out.pooler_output, atol=TOL, rtol=0)


def test_headless_deit_model_folder_loads_as_a_backbone(tmp_path, transformers):
    cfg = transformers.DeiTConfig(image_size=(48, 80), patch_size=16, **SMALL)
    hf = randomize_(transformers.DeiTModel(cfg), seed=9).eval()
    model = rectvit.load_model(_save(hf, tmp_path)).eval()
    assert model.num_classes == 0 and model.distilled
    x = torch.randn(2, 3, 48, 80)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), hf(pixel_values=x).last_hidden_state, atol=TOL, rtol=0)


def test_ast_at_its_own_length(tmp_path, transformers):
    hf = _ast(transformers, 48, 120)
    model = rectvit.load_model(_save(hf, tmp_path)).eval()
    assert model.grid_size == ((48 - 16) // 10 + 1, (120 - 16) // 10 + 1) == (4, 11)
    assert model.load_report.layout == "hf-ast"
    spec = torch.randn(2, 120, 48)  # HF: (B, frames, mel)
    with torch.no_grad():
        ours = model(spec.transpose(1, 2).unsqueeze(1))  # rectvit: (B, 1, mel, frames), frequency is the height
        torch.testing.assert_close(ours, hf(spec).logits, atol=TOL, rtol=0)


def _hf_ast_at(transformers, hf, frames: int):
    """HF's AST for ``frames`` frames holding ``hf``'s weights, its position table resampled by hand on the
    true (4, 11) grid (torch's bicubic, antialiased: timm's rule): the reference for another length."""
    native = hf.audio_spectrogram_transformer.embeddings.position_embeddings.data  # (1, 2 + 4*11, C)
    width = (frames - 16) // 10 + 1
    grid = native[:, 2:].reshape(1, 4, 11, -1).permute(0, 3, 1, 2)
    new = F.interpolate(grid, size=(4, width), mode="bicubic", align_corners=False, antialias=True)
    other = _ast(transformers, 48, frames, seed=7)
    other.load_state_dict({k: v for k, v in hf.state_dict().items() if "position_embeddings" not in k}, strict=False)
    table = torch.cat([native[:, :2], new.permute(0, 2, 3, 1).reshape(1, 4 * width, -1)], dim=1)
    other.audio_spectrogram_transformer.embeddings.position_embeddings.data.copy_(table)
    return other


def test_ast_at_half_the_frames_equals_hf_with_the_table_resampled_on_its_true_grid(tmp_path, transformers):
    hf = _ast(transformers, 48, 120)
    folder = _save(hf, tmp_path / "native")
    short = _hf_ast_at(transformers, hf, 60)
    model = rectvit.load_model(folder, img_size=(48, 60)).eval()
    assert model.grid_size == (4, 5)
    spec = torch.randn(2, 60, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(spec.transpose(1, 2).unsqueeze(1)), short(spec).logits, atol=TOL, rtol=0)


def test_ast_any_frames_in_dynamic_mode(tmp_path, transformers):
    hf = _ast(transformers, 48, 120)
    model = rectvit.load_model(_save(hf, tmp_path), dynamic_img_size=True).eval()
    with torch.no_grad():
        for frames in (37, 120, 333):
            spec = torch.randn(1, frames, 48)
            ref = (hf if frames == 120 else _hf_ast_at(transformers, hf, frames))(spec).logits
            torch.testing.assert_close(model(spec.transpose(1, 2).unsqueeze(1)), ref, atol=TOL, rtol=0)


def test_hf_folder_errors(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert", "hidden_size": 8}')
    torch.save({"x": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(rectvit.CheckpointError, match="model_type 'bert' is not supported"):
        rectvit.load_model(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(rectvit.CheckpointError, match="config.json"):
        rectvit.load_model(empty)


def test_deit_without_teacher_is_a_clear_error(tmp_path, transformers):
    cfg = transformers.DeiTConfig(image_size=32, patch_size=16, num_labels=3, **SMALL)
    hf = transformers.DeiTForImageClassification(cfg)
    with pytest.raises(rectvit.CheckpointError, match="DeiTForImageClassificationWithTeacher"):
        rectvit.load_model(_save(hf, tmp_path))
