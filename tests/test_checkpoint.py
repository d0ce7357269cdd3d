"""Checkpoints that never lose their grid: native format, timm layout, grid resolution, faults, adaptation."""

import json
import math
import os
import pickle
import re
import warnings

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import rectvit
from helpers import randomize_
from rectvit import AmbiguousGridError, CheckpointError
from rectvit.resample import resample_grid, resample_patch_embed

timm = pytest.importorskip("timm", reason="timm is the oracle; `make test` installs it")

SMALL = dict(embed_dim=64, depth=2, num_heads=4)


def trained_like(h: int, w: int, dim: int = 64, seed: int = 0, noise: float = 0.05) -> torch.Tensor:
    """A smooth ``(1, h, w, dim)`` table like a trained one: low-frequency functions of (row, col)."""
    g = torch.Generator().manual_seed(seed)
    fy, fx = torch.rand(2, dim, generator=g) * 2 + 0.3
    phase = torch.rand(2, dim, generator=g) * 6.28
    y = torch.arange(h).float()[:, None, None] / h
    x = torch.arange(w).float()[None, :, None] / w
    t = torch.sin(math.pi * (fy * y + fx * x) + phase[0]) + torch.sin(
        math.pi * 1.7 * fy.flip(0) * y + phase[1]
    ) * torch.cos(math.pi * 1.3 * fx.flip(0) * x)
    return (t + noise * torch.randn(t.shape, generator=g)).unsqueeze(0)


def timm_state(grid, prefix_rows=1, dim=64, seed=0, **model_kwargs):
    """A timm ViT state dict whose flat pos_embed holds a trained-like table on ``grid``."""
    img = (grid[0] * 16, grid[1] * 16)
    m = timm.create_model(
        "vit_small_patch16_224", pretrained=False, img_size=img, num_classes=10, **SMALL, **model_kwargs
    )
    sd = randomize_(m, seed).state_dict()
    table = trained_like(*grid, dim=dim, seed=seed)
    sd["pos_embed"] = torch.cat([sd["pos_embed"][:, :prefix_rows], table.reshape(1, -1, dim)], dim=1)
    return sd, table


def smooth_bias_tables_(model: torch.nn.Module, seed: int = 0, window=None) -> torch.nn.Module:
    """Give every Swin relative-position-bias table trained-like content: per head a smooth bump and
    ramps over the relative offset (dy, dx), plus a little noise. The content is smooth on the
    ``(2wh-1, 2ww-1)`` offset grid of ``window`` (default: the table's own window; another window of
    the same row count makes content that prefers a wrong window)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            table = getattr(module, "relative_position_bias_table", None)
            if not isinstance(table, torch.Tensor):
                continue
            wh, ww = window or module.window_size
            heads = table.shape[1]
            dy = torch.arange(-wh + 1, wh).float()[:, None, None] / wh
            dx = torch.arange(-ww + 1, ww).float()[None, :, None] / ww
            a, b, c, sy, sx = torch.rand(5, heads, generator=g) + 0.3
            t = a * torch.exp(-(dy**2) / sy - dx**2 / sx) + b * torch.sin(3 * dy + 2 * dx) + c * dx * dy
            table.copy_((t + 0.01 * torch.randn(t.shape, generator=g)).reshape(-1, heads))
    return model


def ours(img_size, **kw):
    return rectvit.create_model("vit_small_patch16_224", img_size=img_size, **{"num_classes": 10, **SMALL, **kw})


# ---- native format ----


def test_save_load_roundtrip_keeps_grid_config_and_outputs(tmp_path):
    model = randomize_(ours((256, 64))).eval()
    path = rectvit.save_checkpoint(model, tmp_path / "m.safetensors")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        assert tuple(f.get_tensor("pos_embed").shape) == (1, 16, 4, 64)  # stored 2-D
    assert meta["rectvit_format_version"] == "1" and meta["arch"] == "vit_small_patch16_224"
    assert json.loads(meta["config"])["img_size"] == [256, 64]
    again = rectvit.load_model(path).eval()
    assert again.grid_size == (16, 4) and type(again) is type(model)
    x = torch.randn(2, 3, 256, 64)
    torch.testing.assert_close(again(x), model(x), atol=0, rtol=0)
    assert "every tensor loaded as stored" in str(again.load_report)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_load_model_override_resamples_on_the_recorded_grid(tmp_path):
    model = randomize_(ours((256, 64)))
    with torch.no_grad():
        model.pos_embed.copy_(trained_like(16, 4))
    path = rectvit.save_checkpoint(model, tmp_path / "m.safetensors")
    small = rectvit.load_model(path, img_size=(128, 128))  # 8x8: the same 64 positions, another grid
    assert small.grid_size == (8, 8)
    torch.testing.assert_close(small.pos_embed.data, resample_grid(model.pos_embed.data, (8, 8)), atol=0, rtol=0)
    assert "grid recorded" in small.load_report.grid_basis or "stored 2-D" in small.load_report.grid_basis
    assert any(r[0] == "pos_embed" for r in small.load_report.rows)


def test_save_refuses_to_overwrite_its_source_and_writes_atomically(tmp_path):
    path = rectvit.save_checkpoint(randomize_(ours(64)), tmp_path / "m.safetensors")
    model = rectvit.load_model(path)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        rectvit.save_checkpoint(model, path)
    assert path.read_bytes() == before
    rectvit.save_checkpoint(model, tmp_path / "other.safetensors")


def test_create_model_checkpoint_path_goes_through_load_checkpoint(tmp_path):
    ref = randomize_(timm.create_model("vit_small_patch16_224", img_size=(224, 96), num_classes=10, **SMALL)).eval()
    torch.save({"state_dict": ref.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    model = ours((224, 96), checkpoint_path=str(tmp_path / "ckpt.pth"), source_grid=(14, 6)).eval()
    x = torch.randn(2, 3, 224, 96)
    torch.testing.assert_close(model(x), ref(x), atol=1e-5, rtol=0)
    assert model.load_report.layout == "timm" and model.load_report.source_grid == (14, 6)


# ---- grid resolution (docs/design.md, invariant 2) ----


@pytest.mark.parametrize("grid,img", [((16, 4), 128), ((28, 7), 224)])
def test_an_unrecorded_flat_table_never_loads_on_the_model_grid(grid, img):
    # 16x4 into an 8x8 model, 28x7 into a 14x14 one: the same count, another grid. Without a record the
    # load stops (content ranks the true grid first, but never decides); with source_grid it is exact.
    sd, table = timm_state(grid)
    model = ours(img)
    before = model.pos_embed.detach().clone()
    with pytest.raises(AmbiguousGridError) as info:
        rectvit.load_checkpoint(model, sd)
    assert info.value.candidates[0] == grid and str(info.value).startswith("pos_embed: pass source_grid=(h, w)")
    assert torch.equal(model.pos_embed.data, before)  # nothing loaded
    report = rectvit.load_checkpoint(model, sd, source_grid=grid)
    assert report.source_grid == grid and report.grid_basis == "source_grid argument"
    torch.testing.assert_close(model.pos_embed.data, resample_grid(table, model.grid_size), atol=1e-6, rtol=0)


def test_source_grid_gives_exactly_resample_grid_of_the_true_table():
    sd, table = timm_state((16, 4))
    model = ours(128)
    report = rectvit.load_checkpoint(model, sd, source_grid=(16, 4))
    assert report.grid_basis == "source_grid argument"
    torch.testing.assert_close(model.pos_embed.data, resample_grid(table, (8, 8)), atol=0, rtol=0)
    with pytest.raises(CheckpointError, match=r"source_grid 8x9 has 72 positions.*has 64.*16x4"):
        rectvit.load_checkpoint(ours(128), sd, source_grid=(8, 9))


def test_a_trained_table_on_the_target_grid_still_needs_its_grid_named():
    # content ranks 16x4 first and the model is 16x4, yet neither is evidence (docs/checkpoints.md)
    sd, table = timm_state((16, 4))
    model = ours((256, 64))
    with pytest.raises(AmbiguousGridError, match=r"ranked by grid score \(advisory, not evidence\): 16x4 \d\.\d\d \("):
        rectvit.load_checkpoint(model, sd)
    assert rectvit.load_checkpoint(model, sd, source_grid=(16, 4)).grid_basis == "source_grid argument"
    torch.testing.assert_close(model.pos_embed.data, table, atol=0, rtol=0)


def test_random_table_of_the_target_count_is_not_loaded_on_the_target_grid():
    # An untrained (random) table says nothing about its grid, and the target grid is no evidence.
    ref = randomize_(timm.create_model("vit_small_patch16_224", img_size=128, num_classes=10, **SMALL))
    model = ours(128)
    with pytest.raises(AmbiguousGridError) as info:
        rectvit.load_checkpoint(model, ref.state_dict())
    msg = str(info.value)
    assert re.search(r"8x8 -?\d\.\d\d \(target model grid\)", msg) and msg.startswith("pos_embed: pass source_grid=")
    assert "grid score" in msg and "1x64 -" in msg and "64x1 -" in msg
    assert sorted(info.value.candidates) == [(1, 64), (2, 32), (4, 16), (8, 8), (16, 4), (32, 2), (64, 1)]
    assert rectvit.load_checkpoint(model, ref.state_dict(), source_grid=(8, 8)).grid_basis == "source_grid argument"


def test_a_trained_default_grid_table_is_not_loaded_as_the_default():
    # A 14x14 (vit_*_224 default) table loaded into a model built at 256x64: the default is a candidate
    # (named in the ranking), not a record; the grid must be given.
    sd, table = timm_state((14, 14))
    model = ours((256, 64))
    with pytest.raises(AmbiguousGridError, match=r"14x14 \d\.\d\d \(architecture default grid\)") as info:
        rectvit.load_checkpoint(model, sd)
    assert info.value.candidates[0] == (14, 14)
    rectvit.load_checkpoint(model, sd, source_grid=(14, 14))
    torch.testing.assert_close(model.pos_embed.data, resample_grid(table, (16, 4)), atol=1e-6, rtol=0)


def test_unrecorded_unmatched_unstructured_table_raises_with_candidates():
    ref = randomize_(timm.create_model("vit_small_patch16_224", img_size=(96, 160), num_classes=10, **SMALL))
    model = ours(128)  # 8x8; the table has 6x10 = 60 positions; the default 14x14 has 196
    with pytest.raises(AmbiguousGridError) as info:
        rectvit.load_checkpoint(model, ref.state_dict())
    assert (6, 10) in info.value.candidates and (10, 6) in info.value.candidates
    assert "source_grid=(h, w)" in str(info.value) and "60 positions" in str(info.value)


def test_own_format_needs_no_argument(tmp_path):
    src = ours((256, 64))
    with torch.no_grad():
        src.pos_embed.copy_(trained_like(16, 4))
    path = rectvit.save_checkpoint(src, tmp_path / "rect.safetensors")
    model = ours(128)
    report = rectvit.load_checkpoint(model, path)
    assert report.layout == "rectvit" and report.source_grid == (16, 4)
    torch.testing.assert_close(model.pos_embed.data, resample_grid(src.pos_embed.data, (8, 8)), atol=0, rtol=0)


# ---- adaptation ----


def test_patch_size_change_pi_resizes_the_kernel():
    ref = randomize_(timm.create_model("vit_small_patch16_224", img_size=128, num_classes=10, **SMALL))
    model = rectvit.create_model("vit_small_patch16_224", img_size=64, patch_size=8, num_classes=10, **SMALL)
    report = rectvit.load_checkpoint(model, ref.state_dict(), source_grid=(8, 8))
    expect = resample_patch_embed(ref.patch_embed.proj.weight.data, (8, 8))
    torch.testing.assert_close(model.patch_embed.proj.weight.data, expect, atol=0, rtol=0)
    assert any("resample_patch_embed" in r[3] for r in report.rows)


@pytest.mark.parametrize("in_chans", [1, 2, 5, 6])
def test_input_channels_adapted_as_timm_adapt_input_conv(in_chans):
    from timm.models import adapt_input_conv

    ref = randomize_(timm.create_model("vit_small_patch16_224", img_size=64, num_classes=10, **SMALL)).eval()
    model = ours(64, in_chans=in_chans).eval()
    report = rectvit.load_checkpoint(model, ref.state_dict(), source_grid=(4, 4))
    w = ref.patch_embed.proj.weight.data
    torch.testing.assert_close(model.patch_embed.proj.weight.data, adapt_input_conv(in_chans, w), atol=1e-7, rtol=0)
    assert any("input channels" in r[3] for r in report.rows)
    if in_chans in (1, 6):  # sum / exact repeats keep the response to an input whose channels are all equal
        x = torch.randn(2, 1, 64, 64)
        same, theirs = model(x.expand(-1, in_chans, -1, -1)), ref(x.expand(-1, 3, -1, -1))
        torch.testing.assert_close(same, theirs, atol=1e-5, rtol=0)


def test_classifier_of_another_size_strict_and_not():
    ref = randomize_(timm.create_model("vit_small_patch16_224", img_size=64, num_classes=10, **SMALL))
    with pytest.raises(CheckpointError, match=r"head.weight: checkpoint \(10, 64\), model \(7, 64\).*strict=False"):
        rectvit.load_checkpoint(ours(64, num_classes=7), ref.state_dict(), source_grid=(4, 4))
    model = rectvit.create_model("vit_small_patch16_224", img_size=64, num_classes=7, **SMALL)
    head_before = model.head.weight.clone()
    report = rectvit.load_checkpoint(model, ref.state_dict(), strict=False, source_grid=(4, 4))
    assert set(report.dropped) == {"head.weight", "head.bias"} and "head.weight" in str(report)
    assert torch.equal(model.head.weight, head_before)
    torch.testing.assert_close(model.blocks[0].attn.qkv.weight.data, ref.blocks[0].attn.qkv.weight.data)


def test_missing_unexpected_misshapen_keys_name_keys_and_shapes():
    sd = randomize_(timm.create_model("vit_small_patch16_224", img_size=64, num_classes=10, **SMALL)).state_dict()
    bad = dict(sd)
    del bad["blocks.1.mlp.fc1.weight"]
    with pytest.raises(CheckpointError, match=r"missing from the checkpoint: \['blocks.1.mlp.fc1.weight'\]"):
        rectvit.load_checkpoint(ours(64), bad, source_grid=(4, 4))
    bad = dict(sd, extra_thing=torch.zeros(3))
    with pytest.raises(CheckpointError, match=r"not in the model: \['extra_thing'\]"):
        rectvit.load_checkpoint(ours(64), bad, source_grid=(4, 4))
    bad = dict(sd)
    bad["blocks.0.mlp.fc1.weight"] = torch.zeros(100, 64)
    with pytest.raises(CheckpointError, match=r"blocks.0.mlp.fc1.weight: checkpoint \(100, 64\), model \(256, 64\)"):
        rectvit.load_checkpoint(ours(64), bad, source_grid=(4, 4))


@pytest.mark.parametrize("wrap", ["state_dict", "model", "module", "module_prefix"])
def test_wrappers_are_unwrapped(wrap, tmp_path):
    ref = randomize_(timm.create_model("vit_small_patch16_224", img_size=64, num_classes=10, **SMALL)).eval()
    sd = ref.state_dict()
    obj = {f"module.{k}": v for k, v in sd.items()} if wrap == "module_prefix" else {wrap: sd, "epoch": 1}
    torch.save(obj, tmp_path / "w.pth")
    model = ours(64).eval()
    rectvit.load_checkpoint(model, tmp_path / "w.pth", source_grid=(4, 4))
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(model(x), ref(x), atol=1e-5, rtol=0)


def test_report_prints_a_table():
    sd, _ = timm_state((16, 4))
    report = rectvit.load_checkpoint(ours(128), sd, source_grid=(16, 4))
    text = str(report)
    assert "tensor" in text and "from -> to" in text and "grid basis" in text
    assert "(1, 16, 4, 64) -> (1, 8, 8, 64)" in text and "source_grid argument" in text


# ---- security and faults ----


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {"w": _Evil(marker)}}, f)
    torch.save({"w": _Evil(marker)}, tmp_path / "evil_zip.pt")
    assert not marker.exists()
    for p in (path, tmp_path / "evil_zip.pt"):
        with pytest.raises(CheckpointError, match="refused.*weights_only=True"):
            rectvit.load_checkpoint(ours(64), p)
    assert not marker.exists()


def test_truncated_and_corrupt_files_are_checkpoint_errors(tmp_path):
    sd = randomize_(ours(64)).state_dict()
    good = tmp_path / "good.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(good))
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    torch.save(sd, tmp_path / "good.pth")
    trunc_pth = tmp_path / "trunc.pth"
    trunc_pth.write_bytes((tmp_path / "good.pth").read_bytes()[:1000])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a checkpoint at all" * 10)
    for p in (trunc, trunc_pth, garbage):
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            rectvit.load_checkpoint(ours(64), p)
    with pytest.raises(CheckpointError, match="no such file"):
        rectvit.load_checkpoint(ours(64), tmp_path / "absent.safetensors")
    with pytest.raises(CheckpointError, match="unknown checkpoint suffix '.txt'"):
        (tmp_path / "x.txt").write_text("hi")
        rectvit.load_checkpoint(ours(64), tmp_path / "x.txt")


def test_nan_in_a_table_is_reported():
    sd = randomize_(timm.create_model("vit_small_patch16_224", img_size=64, num_classes=10, **SMALL)).state_dict()
    sd["pos_embed"][0, 3, 5] = float("nan")
    with pytest.warns(UserWarning, match="pos_embed holds 1 NaN/Inf"):
        report = rectvit.load_checkpoint(ours(64), sd, source_grid=(4, 4))
    assert report.warnings and "NaN/Inf" in str(report)
    with pytest.raises(AmbiguousGridError, match="NaN or Inf"):  # a table with NaN carries no evidence
        rectvit.load_checkpoint(ours(64), sd)


# ---- Swin through the same path ----

SWIN_SMALL = dict(embed_dim=32, depths=(2, 2), num_heads=(2, 4), num_classes=5)


def test_swin_timm_state_dict_loads_with_parity():
    ref = randomize_(timm.create_model("swin_tiny_patch4_window7_224", img_size=(224, 112), **SWIN_SMALL))
    ref = smooth_bias_tables_(ref).eval()  # trained-like bias tables; content still never decides their window
    model = rectvit.create_model("swin_tiny_patch4_window7_224", img_size=(224, 112), **SWIN_SMALL).eval()
    with pytest.raises(
        AmbiguousGridError, match=r"^layers\.0\.blocks\.0\.attn\.relative_position_bias_table: pass source_windows="
    ):
        rectvit.load_checkpoint(model, ref.state_dict())  # 169 rows: 7x7, 1x85 or 85x1, and nothing records it
    report = rectvit.load_checkpoint(model, ref.state_dict(), source_windows=7)
    assert report.layout.startswith("timm/rectvit") and report.source_grid is None
    x = torch.randn(2, 3, 224, 112)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), atol=1e-5, rtol=0)


def test_swin_window_change_resamples_every_bias_table(tmp_path):
    from rectvit.resample import resample_relative_bias_table

    ref = smooth_bias_tables_(randomize_(timm.create_model("swin_tiny_patch4_window7_224", **SWIN_SMALL))).eval()
    sd = ref.state_dict()
    torch.save(sd, tmp_path / "swin.pth")
    model = rectvit.create_model(
        "swin_tiny_patch4_window7_224", img_size=(448, 224), window_size=(14, 7), **SWIN_SMALL
    ).eval()
    report = rectvit.load_checkpoint(model, tmp_path / "swin.pth", source_windows=7)
    keys = [k for k in sd if k.endswith("relative_position_bias_table")]
    assert keys and all(any(r[0] == k for r in report.rows) for k in keys)
    for k in keys:
        torch.testing.assert_close(model.state_dict()[k], resample_relative_bias_table(sd[k], 7, (14, 7)))
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 3, 448, 224))).all()


# ---- strips (a side of 1), patch-size defaults, windows, review fixes ----


def _strip_model(img_size):
    return rectvit.create_model("vit_small_patch16_224", img_size=img_size, num_classes=10, **SMALL)


def test_a_2d_table_is_not_loaded_into_a_strip_model_as_a_strip():
    sd, table = timm_state((4, 8))
    model = _strip_model((16, 512))  # grid 1x32: same 32 positions
    with pytest.raises(AmbiguousGridError, match=r"1x32 - \(target model grid\)"):
        rectvit.load_checkpoint(model, sd)
    assert rectvit.load_checkpoint(model, sd, source_grid=(4, 8)).source_grid == (4, 8)
    torch.testing.assert_close(model.pos_embed.data, resample_grid(table, (1, 32)), atol=1e-6, rtol=0)


def test_a_strip_table_is_not_loaded_into_a_2d_model():
    sd, table = timm_state((4, 8))
    strip = trained_like(1, 32)
    sd["pos_embed"] = torch.cat([sd["pos_embed"][:, :1], strip.reshape(1, 32, -1)], dim=1)
    with pytest.raises(AmbiguousGridError, match="source_grid"):
        rectvit.load_checkpoint(_strip_model((64, 128)), sd)  # 4x8 model: the table is one smooth line
    model = _strip_model((16, 512))
    with pytest.raises(AmbiguousGridError, match="1x32 and 32x1|1x32 -.*32x1 -"):  # 1x32 or 32x1: unknowable
        rectvit.load_checkpoint(model, sd)
    assert rectvit.load_checkpoint(model, sd, source_grid=(1, 32)).source_grid == (1, 32)
    torch.testing.assert_close(model.pos_embed.data, strip, atol=0, rtol=0)


def test_two_row_table_on_its_own_grid_loads_when_named():
    sd, table = timm_state((2, 16))
    model = _strip_model((32, 256))
    with pytest.raises(AmbiguousGridError, match=r"2x16 \d\.\d\d \(target model grid\)"):
        rectvit.load_checkpoint(model, sd)
    assert rectvit.load_checkpoint(model, sd, source_grid=(2, 16)).source_grid == (2, 16)
    torch.testing.assert_close(model.pos_embed.data, table, atol=0, rtol=0)


def test_default_grid_uses_the_registered_patch_size_and_is_only_a_candidate():
    # a random 224/16 table (14x14) into the same architecture built with patch 8: the default grid is
    # 14x14 (named as a candidate), but a random table is no evidence for it
    ref = randomize_(timm.create_model("vit_small_patch16_224", num_classes=10, **SMALL))
    model = rectvit.create_model("vit_small_patch16_224", img_size=64, patch_size=8, num_classes=10, **SMALL)
    with pytest.raises(AmbiguousGridError, match=r"14x14 -?\d\.\d\d \(architecture default grid\)"):
        rectvit.load_checkpoint(model, ref.state_dict())


def test_config_with_numpy_ints_saves_and_files_get_usual_permissions(tmp_path):
    import numpy as np

    model = rectvit.create_model("vit_small_patch16_224", img_size=(np.int64(64), np.int64(32)), **SMALL)
    path = rectvit.save_checkpoint(model, tmp_path / "np.safetensors")
    assert rectvit.load_model(path).img_size == (64, 32)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_hybrid_input_channels_adapt_the_backbone_stem():
    from timm.models import adapt_input_conv

    kw = dict(img_size=(128, 64), num_classes=4, depth=1, embed_dim=64, num_heads=4)
    ref = randomize_(timm.create_model("vit_tiny_r_s16_p8_224", **kw))
    model = rectvit.create_model("vit_tiny_r_s16_p8_224", in_chans=1, **kw)
    report = rectvit.load_checkpoint(model, ref.state_dict(), source_grid=(4, 2))
    stem = [r[0] for r in report.rows if "input channels" in r[3]]
    assert stem, str(report)
    for key in stem:
        torch.testing.assert_close(model.state_dict()[key], adapt_input_conv(1, ref.state_dict()[key]))


SWIN_RECT = dict(embed_dim=32, depths=(2,), num_heads=(2,), num_classes=5)


def test_swin_rectangular_window_recorded_in_our_files(tmp_path):
    from rectvit.resample import resample_relative_bias_table

    src = randomize_(
        rectvit.create_model("swin_tiny_patch4_window7_224", img_size=(64, 192), window_size=(4, 12), **SWIN_RECT)
    )
    path = rectvit.save_checkpoint(src, tmp_path / "w.safetensors")
    model = rectvit.load_model(path, window_size=(12, 4), img_size=(192, 64))  # same 161 rows, transposed window
    key = "layers.0.blocks.0.attn.relative_position_bias_table"
    torch.testing.assert_close(
        model.state_dict()[key], resample_relative_bias_table(src.state_dict()[key], (4, 12), (12, 4))
    )
    assert any(r[0] == key and "recorded" in r[4] for r in model.load_report.rows)


def test_swin_unrecorded_ambiguous_window_raises():
    src = randomize_(
        rectvit.create_model("swin_tiny_patch4_window7_224", img_size=(80, 208), window_size=(5, 13), **SWIN_RECT)
    )
    sd = src.state_dict()  # 9x25 = 225 rows, as a 8x8 window's 15x15 would be; a bare state dict records nothing
    model = rectvit.create_model("swin_tiny_patch4_window7_224", img_size=(96, 96), window_size=6, **SWIN_RECT)
    with pytest.raises(AmbiguousGridError, match="5x13.*8x8|8x8.*5x13"):
        rectvit.load_checkpoint(model, sd)
    same = rectvit.create_model("swin_tiny_patch4_window7_224", img_size=(80, 208), window_size=(5, 13), **SWIN_RECT)
    with pytest.raises(AmbiguousGridError, match=r"5x13 -?\d\.\d\d \(target model window\)"):
        rectvit.load_checkpoint(same, sd)  # the model's own window fits the rows, but it is a candidate, not evidence


def test_swin_window_is_never_decided_by_content_and_the_error_ranks_candidates():
    """A smooth (trained-like) 5x13 table with nothing recording its window is an AmbiguousGridError that leads
    with source_windows and lists every window of its 225 rows, the content's favourite first, the model's and
    the architecture default's windows marked; named, it loads into the transposed window (docs/checkpoints.md)."""
    from rectvit.resample import resample_relative_bias_table

    src = smooth_bias_tables_(
        rectvit.create_model("swin_tiny_patch4_window7_224", img_size=(80, 208), window_size=(5, 13), **SWIN_RECT)
    )
    sd = src.state_dict()
    key = "layers.0.blocks.0.attn.relative_position_bias_table"
    model = rectvit.create_model("swin_tiny_patch4_window7_224", img_size=(96, 96), window_size=(13, 5), **SWIN_RECT)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(AmbiguousGridError) as e:
        rectvit.load_checkpoint(model, sd)
    msg = str(e.value)
    assert msg.startswith(f"{key}: pass source_windows=(wh, ww) (") and "--source-window WHxWW" in msg
    assert "e.g. source_windows=7 for timm's *_window7_* weights" in msg
    fits = [(1, 113), (2, 38), (3, 23), (5, 13), (8, 8), (13, 5), (23, 3), (38, 2), (113, 1)]  # (2a-1)(2b-1) = 225
    assert sorted(e.value.candidates) == fits and e.value.candidates[0] == (5, 13)  # content ranks, first
    assert e.value.candidates[-2:] == [(1, 113), (113, 1)]  # strips: unscored, last
    listing = msg.split("ranked by grid score (advisory, not evidence): ")[1]
    assert listing.startswith("5x13 0.") and "1x113 -, 113x1 -." in listing
    assert re.search(r"13x5 -?\d\.\d\d \(target model window\)", listing)
    assert re.search(r"7x7|architecture default", listing) is None  # 7x7 gives 169 rows: not a candidate here
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # a refused load changes nothing
    report = rectvit.load_checkpoint(model, sd, source_windows=(5, 13))
    row = next(r for r in report.rows if r[0] == key)
    assert "5x13 -> 13x5" in row[3] and row[4] == "source_windows argument"
    torch.testing.assert_close(model.state_dict()[key], resample_relative_bias_table(sd[key], (5, 13), (13, 5)))


def test_architecture_default_window_is_a_marked_candidate():
    """timm's window-7 weights (169 rows: 7x7, 1x85, 85x1) into a window-6 model: the architecture default 7x7 is
    named as what it is and still not used."""
    ref = randomize_(timm.create_model("swin_tiny_patch4_window7_224", **SWIN_RECT))
    model = rectvit.create_model("swin_tiny_patch4_window7_224", img_size=96, window_size=6, **SWIN_RECT)
    with pytest.raises(AmbiguousGridError, match=r"7x7 -?\d\.\d\d \(architecture default window\), 1x85 -, 85x1 -\.$"):
        rectvit.load_checkpoint(model, ref.state_dict())


@pytest.mark.parametrize("how", ["recorded", "source_windows"])
def test_truthful_window_is_used_when_content_prefers_another(how, tmp_path):
    """A 5x13-window model whose bias tables are smooth on the 8x8 window's 15x15 offset grid (225 rows too):
    the content ranks 8x8 first, yet the recorded window or source_windows=(5, 13) is used as given."""
    from rectvit.checkpoint.evidence import rank_windows
    from rectvit.resample import resample_relative_bias_table

    src = rectvit.create_model("swin_tiny_patch4_window7_224", img_size=(80, 208), window_size=(5, 13), **SWIN_RECT)
    smooth_bias_tables_(src, window=(8, 8))
    key = "layers.0.blocks.0.attn.relative_position_bias_table"
    table = src.state_dict()[key]
    assert rank_windows(table)[0][0] == (8, 8)  # the content prefers the wrong window
    if how == "recorded":
        path = rectvit.save_checkpoint(src, tmp_path / "w.safetensors")  # our metadata records 5x13
        model = rectvit.load_model(path, img_size=(96, 96), window_size=6)
        report = model.load_report
        basis = "window recorded in the checkpoint"
    else:
        model = rectvit.create_model("swin_tiny_patch4_window7_224", img_size=(96, 96), window_size=6, **SWIN_RECT)
        report = rectvit.load_checkpoint(model, src.state_dict(), source_windows=(5, 13))
        basis = "source_windows argument"
    row = next(r for r in report.rows if r[0] == key)
    assert "5x13 -> 6x6" in row[3] and row[4] == basis
    torch.testing.assert_close(model.state_dict()[key], resample_relative_bias_table(table, (5, 13), (6, 6)))


def test_recorded_window_that_does_not_fit_is_a_checkpoint_error():
    """A record is used when its count fits and refused when it does not, as a recorded grid is."""
    from rectvit.checkpoint.layout import as_converted
    from rectvit.checkpoint.load import load_converted

    src = randomize_(rectvit.create_model("swin_tiny_patch4_window7_224", img_size=96, window_size=6, **SWIN_RECT))
    model = rectvit.create_model("swin_tiny_patch4_window7_224", img_size=96, window_size=6, **SWIN_RECT)
    conv = as_converted(src.state_dict())
    key = "layers.0.blocks.0.attn.relative_position_bias_table"
    conv.recorded_windows = {key: [7, 7]}  # 169 rows recorded, the table has 121 (6x6)
    fits = r"windows with 121 rows: 1x61, 6x6, 61x1\. Pass source_windows"
    with pytest.raises(
        CheckpointError, match=r"^layers\.0\.blocks\.0.*recorded window 7x7 gives 169 rows, the table has 121; " + fits
    ):
        load_converted(model, conv)


def test_window_of_a_nan_table_is_unranked_and_a_table_no_window_fits_is_refused():
    src = randomize_(rectvit.create_model("swin_tiny_patch4_window7_224", img_size=96, window_size=6, **SWIN_RECT))
    model = rectvit.create_model("swin_tiny_patch4_window7_224", img_size=96, window_size=6, **SWIN_RECT)
    key = "layers.0.blocks.0.attn.relative_position_bias_table"
    sd = src.state_dict()
    sd[key] = sd[key].clone()
    sd[key][5, 0] = float("nan")
    with pytest.warns(UserWarning, match="NaN/Inf"), pytest.raises(AmbiguousGridError) as e:
        rectvit.load_checkpoint(model, sd)
    assert (
        "Candidate windows, unranked (the table holds NaN or Inf values): 1x61 -, 6x6 - (target model window), 61x1 -."
        in str(e.value)
    )
    sd[key] = torch.randn(120, 2)  # an even count: no (2wh-1)(2ww-1)
    with pytest.raises(CheckpointError, match=r"^layers\.0\.blocks\.0\..*no window gives a bias table of 120 rows"):
        rectvit.load_checkpoint(model, sd)
    with pytest.raises(CheckpointError, match="no window gives a bias table of 120 rows"):
        rectvit.load_checkpoint(model, sd, source_windows=6)  # the window fits block 1's table, not this one


def test_swin_v2_half_precision_window_change_and_head_reset_keep_state():
    model = rectvit.create_model(
        "swinv2_tiny_window8_256", img_size=(64, 64), window_size=8, **SWIN_RECT, drop_rate=0.5
    )
    model = model.eval().to(torch.bfloat16)
    model.set_input_size(img_size=(64, 128), window_size=(8, 16))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 128, dtype=torch.bfloat16)).dtype == torch.bfloat16
    model.reset_classifier(3)
    assert not model.head.training and model.head.fc.weight.dtype == torch.bfloat16
    x = torch.randn(1, 3, 64, 128, dtype=torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # dropout stays off in eval after the reset


def test_inspect_reads_no_embed_class_tables(tmp_path):
    from rectvit.checkpoint.inspect import inspect_checkpoint

    ref = randomize_(timm.create_model("deit3_small_patch16_224", img_size=(256, 64), **SMALL))
    with torch.no_grad():
        ref.pos_embed.copy_(trained_like(16, 4).reshape(1, 64, -1))
    torch.save(ref.state_dict(), tmp_path / "d3.pth")
    info = inspect_checkpoint(tmp_path / "d3.pth")  # no record: read with the class token's row, grid unknown
    assert info.tables[0].prefix_rows == 1 and info.tables[0].grid is None and "--source-grid" in info.tables[0].basis
    info = inspect_checkpoint(tmp_path / "d3.pth", source_grid=(4, 16))  # 64 rows: the reading without one
    assert info.tables[0].prefix_rows == 0 and info.tables[0].grid == (4, 16)
    assert info.tables[0].basis == "source_grid argument" and info.tables[0].candidates[0][0] == (4, 16)


# ---- timm hub folders (config.json records the architecture and input size) and hf-hub: names ----


def _timm_hub_folder(folder, grid=(16, 4)):
    from safetensors.torch import save_file

    sd, table = timm_state(grid)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / "model.safetensors"))
    config = {
        "architecture": "vit_small_patch16_224",
        "num_classes": 10,
        "model_args": dict(SMALL),
        "pretrained_cfg": {"input_size": [3, grid[0] * 16, grid[1] * 16], "interpolation": "bicubic"},
    }
    (folder / "config.json").write_text(json.dumps(config))
    return sd, table


def test_timm_hub_folder_records_its_grid(tmp_path):
    sd, table = _timm_hub_folder(tmp_path / "timm_vit")
    ref = timm.create_model("vit_small_patch16_224", img_size=(256, 64), num_classes=10, **SMALL).eval()
    ref.load_state_dict(sd)
    model = rectvit.load_model(tmp_path / "timm_vit").eval()
    assert model.grid_size == (16, 4) and model.load_report.layout == "timm"
    x = torch.randn(1, 3, 256, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), atol=1e-5, rtol=0)
    square = rectvit.load_model(tmp_path / "timm_vit", img_size=128)  # 8x8: same count, the record decides
    assert square.load_report.grid_basis == "grid recorded in the checkpoint"
    torch.testing.assert_close(square.pos_embed.data, resample_grid(table, (8, 8)), atol=1e-6, rtol=0)


def test_hf_hub_name_through_an_offline_cache(tmp_path):
    pytest.importorskip("huggingface_hub")
    import subprocess
    import sys

    snapshot = tmp_path / "cache" / "models--someone--rect-vit" / "snapshots" / ("a" * 40)
    _timm_hub_folder(snapshot)
    (tmp_path / "cache" / "models--someone--rect-vit" / "refs").mkdir()
    (tmp_path / "cache" / "models--someone--rect-vit" / "refs" / "main").write_text("a" * 40)
    code = (
        "import rectvit; m = rectvit.load_model('hf-hub:someone/rect-vit'); print(m.grid_size, m.load_report.layout);"
        "m = rectvit.create_model('vit_small_patch16_224', img_size=(256, 64), num_classes=10, embed_dim=64, depth=2,"
        " num_heads=4, checkpoint_path='hf-hub:someone/rect-vit'); print(m.load_report.grid_basis)"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "cache"), HF_HOME=str(tmp_path / "home"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "(16, 4) timm" in out.stdout and "grid recorded" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "rectvit", "inspect", "hf-hub:someone/absent"], capture_output=True, text=True, env=env
    )
    assert out.returncode == 2 and "is not in the cache" in out.stderr and "Traceback" not in out.stderr


def test_timm_folder_default_input_size_is_only_a_candidate(tmp_path):
    from safetensors.torch import save_file

    sd, table = timm_state((28, 7))
    folder = tmp_path / "old_timm"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(folder / "model.safetensors"))
    # timm < 1.0 wrote no model_args, and input_size is the architecture's default, not the training size
    config = {
        "architecture": "vit_small_patch16_224",
        "num_classes": 10,
        "pretrained_cfg": {"input_size": [3, 224, 224]},
    }
    (folder / "config.json").write_text(json.dumps(config))
    model = ours(224)
    with pytest.raises(AmbiguousGridError) as info:
        rectvit.load_checkpoint(model, folder)
    assert info.value.candidates[0] == (28, 7)  # ranked first (advisory); the default size is no record
    assert "14x14 " in str(info.value) and "(timm config's default input size, target model grid" in str(info.value)
    assert rectvit.load_checkpoint(model, folder, source_grid=(28, 7)).source_grid == (28, 7)


@pytest.mark.parametrize(
    "config,needle",
    [
        ({"architecture": "vit_small_patch16_224", "model_args": [1, 2]}, "model_args must be a mapping"),
        ({"architecture": "vit_small_patch16_224", "pretrained_cfg": {"input_size": ["a", 1, 2]}}, "malformed"),
        ({"architecture": "resnet50"}, "'resnet50' has no rectvit counterpart"),
    ],
)
def test_malformed_timm_configs_are_checkpoint_errors(tmp_path, config, needle):
    from safetensors.torch import save_file

    save_file({"cls_token": torch.zeros(1, 1, 8)}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=needle):
        rectvit.load_model(tmp_path)


# ---- records and explicit grids are used, whatever the content ranks first (DESIGN invariant 2) ----


def test_an_hf_config_record_is_used_whatever_the_content_ranks_first(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTConfig(
        image_size=(256, 64), patch_size=16, num_labels=3, hidden_size=64, num_hidden_layers=1,
        num_attention_heads=4, intermediate_size=128,
    )  # fmt: skip
    hf = randomize_(transformers.ViTForImageClassification(cfg))
    table = trained_like(16, 4)
    with torch.no_grad():
        pos = hf.vit.embeddings.position_embeddings
        pos.copy_(torch.cat([pos[:, :1], table.reshape(1, 64, -1)], dim=1))
    hf.save_pretrained(tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    config["image_size"] = 128  # the record says 8x8, the content ranks 16x4 first: the record is used
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = rectvit.load_model(tmp_path / "hf")
    report = model.load_report
    assert report.source_grid == (8, 8) and report.grid_basis == "grid recorded in the checkpoint"
    assert not report.warnings and "16x4" not in str(report)  # nothing recommends a grid content cannot establish
    torch.testing.assert_close(model.pos_embed.data, table.reshape(1, 8, 8, -1), atol=0, rtol=0)
    model = rectvit.load_model(tmp_path / "hf", source_grid=(16, 4))  # an explicit grid overrides the record
    torch.testing.assert_close(model.pos_embed.data, resample_grid(table, (8, 8)), atol=1e-6, rtol=0)
    config["image_size"] = [256, 64]  # an honest record loads as before
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    assert rectvit.load_model(tmp_path / "hf").load_report.grid_basis == "grid recorded in the checkpoint"
    config["image_size"] = [256, 80]  # 16x5 = 80 positions: a record whose count does not fit is an error
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"recorded grid 16x5 has 80 positions, the table has 64"):
        rectvit.load_model(tmp_path / "hf")


def test_a_timm_config_record_is_used_whatever_the_content_ranks_first(tmp_path):
    sd, table = _timm_hub_folder(tmp_path / "timm_vit", grid=(16, 4))
    config = json.loads((tmp_path / "timm_vit" / "config.json").read_text())
    config["model_args"] = dict(SMALL, img_size=[128, 128])  # records 8x8
    (tmp_path / "timm_vit" / "config.json").write_text(json.dumps(config))
    report = rectvit.load_checkpoint(ours(128), tmp_path / "timm_vit")
    assert report.source_grid == (8, 8) and report.grid_basis == "grid recorded in the checkpoint"
    assert not report.warnings
    report = rectvit.load_checkpoint(ours(128), tmp_path / "timm_vit", source_grid=(16, 4))  # explicit wins
    assert report.source_grid == (16, 4) and not report.warnings


def test_an_explicit_source_grid_loads_as_given_without_a_content_warning():
    sd, table = timm_state((16, 4))
    model = ours(128)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = rectvit.load_checkpoint(model, sd, source_grid=(8, 8))
    assert report.grid_basis == "source_grid argument" and not report.warnings
    torch.testing.assert_close(model.pos_embed.data, table.reshape(1, 8, 8, -1), atol=0, rtol=0)


def test_one_name_for_the_score_in_errors():
    ref = randomize_(timm.create_model("vit_small_patch16_224", img_size=(96, 160), num_classes=10, **SMALL))
    with pytest.raises(AmbiguousGridError) as info:
        rectvit.load_checkpoint(ours(128), ref.state_dict())
    msg = str(info.value)
    assert "Candidate grids, ranked by grid score (advisory, not evidence): " in msg and "smoothness" not in msg
    assert "never reads a grid from a table's content" in msg
