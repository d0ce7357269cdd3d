"""Bad inputs to the ViT family: each a RectViTError subclass whose message names expected and given values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import rectvit
from rectvit.errors import InputSizeError, RectViTError
from rectvit.layers import PatchEmbed

SMALL = dict(depth=1, embed_dim=32, num_heads=2)


def _vit(**kw):
    return rectvit.create_model("vit_small_patch16_224", **{**SMALL, **kw}).eval()


def test_wrong_channel_count():
    model = _vit(img_size=(64, 32))
    with pytest.raises(InputSizeError, match=r"expected 3 input channel\(s\), got 1.*in_chans=1"):
        model(torch.randn(2, 1, 64, 32))


def test_not_an_image_batch():
    with pytest.raises(InputSizeError, match=r"\(B, 3, H, W\).*3-d tensor of shape \(3, 64, 32\).*unsqueeze"):
        _vit(img_size=(64, 32))(torch.randn(3, 64, 32))


def test_wrong_size_in_static_mode_says_how_to_allow_it():
    model = _vit(img_size=(64, 32))
    with pytest.raises(InputSizeError) as e:
        model(torch.randn(1, 3, 32, 64))
    msg = str(e.value)
    assert "64x32" in msg and "32x64" in msg
    assert "set_input_size(img_size=(32, 64))" in msg and "dynamic_img_size=True" in msg
    with pytest.raises(InputSizeError, match="64x32"):  # forward_intermediates goes through the same check
        model.forward_intermediates(torch.randn(1, 3, 32, 64))


def test_non_multiple_size_is_cropped_or_padded():
    """docs/models.md, "Sizes the patches do not tile": whole patches only, as the patch convolution takes
    them (70x37 is seen as its top-left 64x32); with dynamic_img_pad, zero-padded bottom/right instead."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 70, 37)
    model = _vit(img_size=(64, 32), dynamic_img_size=True)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x[:, :, :64, :32].contiguous()), rtol=0, atol=1e-5)
        assert model.forward_features(x).shape == (1, 1 + 4 * 2, 32)
    padded = _vit(img_size=(64, 32), dynamic_img_size=True, dynamic_img_pad=True)
    with torch.no_grad():
        torch.testing.assert_close(padded(x), padded(F.pad(x, (0, 11, 0, 10))), rtol=0, atol=1e-5)
        assert padded.forward_features(x).shape == (1, 1 + 5 * 3, 32)


def test_image_smaller_than_one_patch():
    model = _vit(img_size=(64, 32), dynamic_img_size=True)
    with pytest.raises(InputSizeError, match=r"input 8x32 is smaller than one patch \(16x16\).*at least 16x32"):
        model(torch.randn(1, 3, 8, 32))
    with pytest.raises(InputSizeError, match=r"img_size 8x8 is smaller than one patch \(16x16\)"):
        _vit(img_size=8)
    with pytest.raises(InputSizeError, match="smaller than one patch"):
        _vit(img_size=(64, 32)).set_input_size(img_size=(64, 8))


@pytest.mark.parametrize("bad", [0, -16, (64, 0), (-1, 32)])
def test_zero_or_negative_sizes(bad):
    with pytest.raises(InputSizeError, match="must be positive"):
        _vit(img_size=bad)
    with pytest.raises(InputSizeError, match="must be positive"):
        _vit(img_size=(64, 32)).set_input_size(img_size=bad)
    with pytest.raises(InputSizeError, match="must be positive"):
        _vit(img_size=(64, 32)).set_input_size(patch_size=bad)
    with pytest.raises(InputSizeError, match="must be positive"):
        PatchEmbed(img_size=64, patch_size=bad)


def test_failed_set_input_size_leaves_the_model_usable():
    model = _vit(img_size=(64, 32))
    with pytest.raises(InputSizeError):
        model.set_input_size(img_size=(0, 32))
    with pytest.raises(InputSizeError, match="smaller than one patch"):
        model.set_input_size(img_size=(64, 8), patch_size=(8, 32))
    assert model.patch_size == (16, 16) and model.patch_embed.proj.weight.shape[-2:] == (16, 16)
    assert model.img_size == (64, 32) and model.grid_size == (4, 2)
    assert model(torch.randn(1, 3, 64, 32)).shape == (1, 1000)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(class_token=False), "global_pool='token' reads the class token, but class_token=False"),
        (dict(global_pool="mean"), "global_pool must be one of .* got 'mean'"),
        (dict(pos_embed="rope"), "pos_embed must be one of .* got 'rope'"),
        (dict(distilled=True, reg_tokens=4), "no register tokens, got reg_tokens=4"),
        (dict(distilled=True, global_pool="avg"), "got 'avg'"),
        (dict(num_heads=5), "embed_dim 32 must be divisible by num_heads 5"),
        (dict(pos_embed="sincos", embed_dim=30, num_heads=2), "divisible by 4, got 30"),
    ],
)
def test_bad_options(kw, match):
    with pytest.raises(RectViTError, match=match):
        _vit(img_size=(64, 32), **kw)


def test_bad_intermediate_requests():
    model = _vit(img_size=(64, 32), depth=2)
    x = torch.randn(1, 3, 64, 32)
    with pytest.raises(RectViTError, match="indices=3 .* 1 to 2"):
        model.forward_intermediates(x, indices=3)
    with pytest.raises(RectViTError, match="block index 5 is out of range .* depth 2"):
        model.forward_intermediates(x, indices=[5])
    with pytest.raises(RectViTError, match="output_fmt must be 'NCHW' or 'NLC', got 'NHWC'"):
        model.forward_intermediates(x, output_fmt="NHWC")


def test_unknown_keyword_is_a_rectvit_error():
    with pytest.raises(RectViTError, match="bad keyword"):
        rectvit.create_model("vit_small_patch16_224", not_a_kwarg=1)


# Constructor values a ViT or hybrid cannot be built with: each a RectViTError naming the keyword, the
# value given and what to pass, raised before any layer is allocated.
BAD_VALUES = [
    (dict(in_chans=0), r"in_chans must be an int >= 1, got 0; pass 3 for RGB"),
    (dict(in_chans=2.0), r"in_chans must be an int >= 1, got 2.0"),
    (dict(depth=-1), r"depth must be an int >= 0, got -1"),
    (dict(num_classes=-3), r"num_classes must be an int >= 0, got -3; pass 0 for a backbone"),
    (dict(embed_dim=0), r"embed_dim must be an int >= 1, got 0"),
    (dict(num_heads=0), r"num_heads must be an int >= 1, got 0"),
    (dict(num_heads=5), r"embed_dim 32 must be divisible by num_heads 5 .* num_heads in \[1, 2, 4, 8, 16, 32\]"),
    (dict(mlp_ratio=-1.0), r"mlp_ratio must be > 0 .* got -1.0"),
    (dict(norm_eps=-1e-6), r"norm_eps must be >= 0"),
    (dict(drop_rate=-0.1), r"drop_rate is a probability in \[0, 1\], got -0.1"),
    (dict(pos_drop_rate=1.5), r"pos_drop_rate is a probability in \[0, 1\], got 1.5"),
    (dict(proj_drop_rate=-1), r"proj_drop_rate is a probability"),
    (dict(attn_drop_rate=2.0), r"attn_drop_rate is a probability"),
    (dict(drop_path_rate=-0.5), r"drop_path_rate is a probability"),
    (dict(drop_path_rate="0.1"), r"drop_path_rate must be a number, got '0.1'"),
]


@pytest.mark.parametrize("name", ["vit_small_patch16_224", "vit_tiny_r_s16_p8_224"], ids=["vit", "hybrid"])
@pytest.mark.parametrize("kw,match", BAD_VALUES, ids=[str(kw) for kw, _ in BAD_VALUES])
def test_bad_constructor_values(name, kw, match):
    with pytest.raises(RectViTError, match=match):
        rectvit.create_model(name, img_size=(64, 32), **{**SMALL, **kw})


@pytest.mark.parametrize("layers", ["349", (3, 0), (3, 4, 9, 2, 2), (3, 2.5), (True,)])
def test_bad_backbone_layers(layers):
    with pytest.raises(RectViTError, match=r"backbone_layers must list 0 to 4 positive block counts"):
        rectvit.create_model("vit_tiny_r_s16_p8_224", backbone_layers=layers, **SMALL)


def test_backbone_layers_none_is_refused_by_the_class_and_not_given_to_create_model():
    """create_model drops keywords given as None (timm's rule); the constructor itself refuses None."""
    cls = rectvit.models.get_model_entry("vit_tiny_r_s16_p8_224").cls
    with pytest.raises(RectViTError, match=r"backbone_layers must list 0 to 4 positive block counts"):
        cls(backbone_layers=None, **SMALL)
    model = rectvit.create_model("vit_tiny_r_s16_p8_224", backbone_layers=None, **SMALL)
    default = rectvit.models.get_model_entry("vit_tiny_r_s16_p8_224").config["backbone_layers"]
    assert tuple(model.model_config["backbone_layers"]) == tuple(default) == ()  # R-Ti/16: stem only


def test_zero_depth_and_zero_classes_are_valid_models():
    model = _vit(img_size=(32, 32), depth=0, num_classes=0)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 32)


def test_adapt_cli_refuses_a_negative_class_count(tmp_path, capsys):
    """``adapt --num-classes -3`` wrote a headless model; it is now a usage error, one line, exit 2."""
    from rectvit.cli import main

    src = rectvit.save_checkpoint(_vit(img_size=(32, 32)), tmp_path / "in.safetensors")
    out = tmp_path / "out.safetensors"
    argv = ["adapt", str(src), "--model", "vit_small_patch16_224", "--img-size", "32x32", "-o", str(out)]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--num-classes", "-3"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--num-classes: expected a whole number >= 0, got '-3'" in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not out.exists()


def test_dynamic_img_pad_refuses_an_empty_input():
    """Padding makes any non-empty size tile; an empty one is refused (it gave logits from zero padding)."""
    model = rectvit.create_model(
        "vit_tiny_patch16_224", img_size=(32, 64), dynamic_img_size=True, dynamic_img_pad=True, **SMALL
    )
    for size in ((32, 0), (0, 17)):
        with pytest.raises(InputSizeError, match="empty"):
            model(torch.randn(1, 3, *size))
    assert model(torch.randn(1, 3, 5, 17)).shape == (1, 1000)
