"""create_model / load_model argument checks, the order of load checks, and model state that tells the truth."""

import pytest
import timm
import torch

import rectvit
from helpers import randomize_
from rectvit.errors import AmbiguousGridError, CheckpointError, InputSizeError, RectViTError

SMALL = dict(depth=2, embed_dim=32, num_heads=2)


@pytest.mark.parametrize("name", [None, 3, ("vit_small_patch16_224",)])
def test_create_model_needs_a_name(name):
    with pytest.raises(RectViTError, match="architecture name"):
        rectvit.create_model(name)


def test_source_grid_without_a_checkpoint_is_an_error():
    with pytest.raises(RectViTError, match="no checkpoint_path"):
        rectvit.create_model("vit_small_patch16_224", source_grid=(16, 4), **SMALL)


def test_another_architecture_is_named_before_any_grid_question():
    """Wider weights whose flat table is random (no content evidence): the error is the architecture."""
    theirs = timm.create_model("vit_small_patch16_224", img_size=(256, 64), depth=2, embed_dim=64, num_heads=2)
    ours = rectvit.create_model("vit_small_patch16_224", img_size=(128, 128), **SMALL)
    with pytest.raises(CheckpointError, match="another architecture") as err:
        rectvit.load_checkpoint(ours, randomize_(theirs).state_dict())
    assert not isinstance(err.value, AmbiguousGridError) and "embed_dim 32" in str(err.value)
    deeper = timm.create_model("vit_small_patch16_224", img_size=(256, 64), depth=3, embed_dim=32, num_heads=2)
    with pytest.raises(CheckpointError, match="not in the model: \\['blocks.2"):
        rectvit.load_checkpoint(ours, randomize_(deeper).state_dict())


def test_dynamic_img_size_is_the_switch():
    model = rectvit.create_model("vit_small_patch16_224", img_size=(64, 32), **SMALL).eval()
    x = torch.randn(1, 3, 48, 80)
    with pytest.raises(InputSizeError):
        model(x)
    model.dynamic_img_size = True
    assert model(x).shape == (1, 1000) and model.model_config["dynamic_img_size"] is True
    rebuilt = type(model)(**model.model_config)
    assert rebuilt.dynamic_img_size and rebuilt(x).shape == (1, 1000)
    model.dynamic_img_size = False
    with pytest.raises(InputSizeError):
        model(x)


@pytest.mark.parametrize(
    "name,kw",
    [
        ("vit_small_patch16_224", SMALL),
        ("vit_tiny_r_s16_p8_224", SMALL),
        ("swin_tiny_patch4_window7_224", dict(depths=(1, 1), num_heads=(2, 2), embed_dim=16)),
    ],
)
def test_every_model_has_a_public_check_input_and_declared_attributes(name, kw):
    model = rectvit.create_model(name, img_size=(64, 96), **kw)
    model.check_input(torch.randn(2, 3, 64, 96))
    with pytest.raises(InputSizeError):
        model.check_input(torch.randn(2, 1, 64, 96))
    assert model.arch_name == name and model.load_report is None and model.source_path is None


def test_model_config_rebuilds_the_model_after_every_change():
    model = rectvit.create_model("vit_small_patch16_224", img_size=(64, 32), **SMALL)
    model.set_input_size(img_size=(96, 48), patch_size=8)
    model.reset_classifier(7, global_pool="avg")
    rebuilt = type(model)(**model.model_config)
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == {
        k: tuple(v.shape) for k, v in model.state_dict().items()
    }
    assert rebuilt.img_size == (96, 48) and rebuilt.global_pool == "avg"


SWIN = dict(depths=(1, 1), num_heads=(2, 2), embed_dim=16)


def test_swin_windows_of_a_random_timm_state_dict_are_never_guessed_and_can_be_given():
    """169 rows fit 7x7, 1x85 and 85x1: random content decides nothing, so the window must be given."""
    theirs = randomize_(timm.create_model("swin_tiny_patch4_window7_224", img_size=(112, 56), **SWIN)).eval()
    ours = rectvit.create_model("swin_tiny_patch4_window7_224", img_size=(112, 56), **SWIN).eval()
    with pytest.raises(AmbiguousGridError, match="source_windows=\\(wh, ww\\)"):
        rectvit.load_checkpoint(ours, theirs.state_dict())
    report = rectvit.load_checkpoint(ours, theirs.state_dict(), source_windows=7)
    assert report.rows == [] or all("source_windows" in r[4] for r in report.rows)
    x = torch.randn(1, 3, 112, 56)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max() <= 1e-5


def test_given_windows_resample_into_other_windows_like_timm():
    from timm.layers.pos_embed_rel import resize_rel_pos_bias_table

    theirs = randomize_(timm.create_model("swin_tiny_patch4_window7_224", img_size=(112, 56), **SWIN)).eval()
    model = rectvit.create_model("swin_tiny_patch4_window7_224", img_size=(112, 56), window_size=(7, 14), **SWIN)
    report = rectvit.load_checkpoint(model, theirs.state_dict(), source_windows=(7, 7))
    key = "layers.0.blocks.0.attn.relative_position_bias_table"
    assert any(r[0] == key and "7x7 -> 7x14" in r[3] and r[4] == "source_windows argument" for r in report.rows)
    table = theirs.state_dict()[key]
    expected = resize_rel_pos_bias_table(table, (7, 14), (13 * 27, table.shape[1]), old_window_size=(7, 7))
    assert (model.state_dict()[key] - expected).abs().max() <= 1e-5


@pytest.mark.parametrize(
    "windows,match",
    [((5, 5), "has \\[169\\] rows|rows; the checkpoint"), ({"layers.9.x": 7}, "not bias tables")],
)
def test_windows_that_fit_no_table_are_an_error(windows, match):
    theirs = timm.create_model("swin_tiny_patch4_window7_224", img_size=(112, 56), **SWIN)
    ours = rectvit.create_model("swin_tiny_patch4_window7_224", img_size=(112, 56), **SWIN)
    with pytest.raises(CheckpointError, match=match):
        rectvit.load_checkpoint(ours, theirs.state_dict(), source_windows=windows)


def test_a_bad_keyword_error_names_only_the_keywords_the_class_does_not_take():
    """Tag defaults (num_classes, in_chans, img_size) join the overrides; the error must not blame them."""
    with pytest.raises(rectvit.RectViTError, match=r"bad keyword argument\(s\) \['bogus'\]"):
        rectvit.create_model("vit_tiny_patch16_224.augreg_in21k", bogus=1)
