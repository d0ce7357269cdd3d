"""The dynamic position path: a cache that never serves a stale table, and the interpolation setting.

Truth for a resampled table is ``rectvit.resample_grid`` (``F.interpolate``) of the parameter as it is
now; HF transformers' ``interpolate_pos_encoding=True`` is the oracle for the HF setting.
"""

import pytest
import torch

import rectvit
from helpers import randomize_

SMALL = dict(embed_dim=32, depth=1, num_heads=2, num_classes=5)
GRID = (2, 6)  # a grid other than the stored (4, 3)


def _model(**kw):
    kw = {**SMALL, **kw}
    return randomize_(rectvit.create_model("vit_small_patch16_224", img_size=(64, 48), dynamic_img_size=True, **kw))


def _x(grid=GRID, batch=2):
    return torch.randn(batch, 3, 16 * grid[0], 16 * grid[1])


def _served(model, grid=GRID):
    """The table the model adds for ``grid`` (filling the cache as a no-grad forward does)."""
    with torch.no_grad():
        return model._cached_pos_table(model.pos_embed, grid).clone()


def _truth(model, grid=GRID):
    table = model.pos_embed.detach()
    return rectvit.resample_grid(table, grid, model.pos_interpolation, model.pos_antialias)


def _assert_fresh(model, stale, grid=GRID):
    served = _served(model, grid)
    assert (served - _truth(model, grid)).abs().max() <= 1e-5
    assert (served - stale).abs().max() > 1e-3  # the change was big enough to see


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.Adam(p, lr=0.05, fused=True),
        lambda p: torch.optim.Adam(p, lr=0.05, foreach=True),
        lambda p: torch.optim.AdamW(p, lr=0.05, fused=True),
        lambda p: torch.optim.SGD(p, lr=5.0, foreach=True),
    ],
    ids=["adam-fused", "adam-foreach", "adamw-fused", "sgd-foreach"],
)
def test_optimizer_steps_invalidate(make_opt):
    # fused kernels do not bump the parameter's version counter: a version key served the old table
    model = _model()
    opt = make_opt(model.parameters())
    stale = _served(model)
    for _ in range(2):
        model(_x()).square().mean().backward()
        opt.step()
        opt.zero_grad()
    _assert_fresh(model, stale)


def test_writes_load_to_and_set_input_size_invalidate():
    model = _model()
    stale = _served(model)
    with torch.no_grad():
        model.pos_embed.mul_(-1.0)  # in place through the parameter
    _assert_fresh(model, stale)

    stale = _served(model)
    model.pos_embed.data.add_(0.5)  # .data writes bypass the version counter, not the content check
    _assert_fresh(model, stale)

    stale = _served(model)
    other = _model()
    randomize_(other, seed=7)
    model.load_state_dict(other.state_dict())
    _assert_fresh(model, stale)

    stale = _served(model)
    model.to(torch.float64)
    served = _served(model)
    assert served.dtype == torch.float64 and (served - _truth(model)).abs().max() <= 1e-6
    model.to(torch.float32)

    stale = _served(model, (3, 3))
    model.set_input_size(img_size=(32, 64))  # the stored grid is now (2, 4): resampled tables differ
    assert model.grid_size == (2, 4)
    _assert_fresh(model, stale, (3, 3))


def test_model_built_and_loaded_in_inference_mode():
    # built inside inference_mode, the parameters have no version counter (a version key crashed)
    ref = _model().eval()
    with torch.inference_mode():
        model = rectvit.create_model("vit_small_patch16_224", img_size=(64, 48), dynamic_img_size=True, **SMALL)
        rectvit.load_checkpoint(model, ref.state_dict())
        model.eval()
        x = _x()
        out = model(x)
        torch.testing.assert_close(out, ref(x), atol=1e-6, rtol=0)
        with torch.no_grad():
            model.pos_embed.mul_(2.0)  # an in-place write inside inference mode is seen too
        with torch.no_grad():
            ref.pos_embed.mul_(2.0)
        torch.testing.assert_close(model(x), ref(x), atol=1e-6, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), atol=1e-6, rtol=0)


def test_table_cached_in_inference_mode_then_used_with_grad():
    model = _model()
    model.pos_embed.requires_grad_(False)  # frozen table: the cached one is served with grad enabled
    x = _x()
    with torch.inference_mode():
        model(x)
    xg = x.clone().requires_grad_(True)
    model(xg).sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------------
# The interpolation setting (issue 17.3)


def test_setting_recorded_checked_and_honoured_by_set_input_size(tmp_path):
    hf_like = _model(pos_interpolation="bicubic", pos_antialias=False)
    assert hf_like.model_config["pos_interpolation"] == "bicubic"
    assert hf_like.model_config["pos_antialias"] is False
    rectvit.save_checkpoint(hf_like, tmp_path / "m.safetensors")
    again = rectvit.load_model(tmp_path / "m.safetensors")
    assert (again.pos_interpolation, again.pos_antialias) == ("bicubic", False)
    table = hf_like.pos_embed.detach().clone()
    hf_like.set_input_size(img_size=(32, 96))  # downsampling one axis: antialias matters
    plain = rectvit.resample_grid(table, (2, 6), "bicubic", antialias=False)
    assert torch.equal(hf_like.pos_embed.detach(), plain)
    assert (plain - rectvit.resample_grid(table, (2, 6))).abs().max() > 1e-3
    with pytest.raises(rectvit.RectViTError, match="pos_interpolation"):
        _model(pos_interpolation="area")
    with pytest.raises(rectvit.RectViTError, match="pos_antialias"):
        _model(pos_antialias="yes")


@pytest.fixture(scope="module")
def transformers():
    """HF transformers, the oracle (imported per test: the other tests here need none)."""
    return pytest.importorskip("transformers", reason="HF transformers is the oracle; `make test` installs it")


HF_SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
SIZES = [(48, 112), (96, 32), (32, 128), (80, 48)]  # from a 4x4 grid: up, down and mixed per axis


@pytest.mark.parametrize("family", ["vit", "deit"])
def test_hf_interpolate_pos_encoding_parity(tmp_path, family, transformers):
    if family == "vit":
        cfg = transformers.ViTConfig(image_size=64, patch_size=16, **HF_SMALL)
        hf = transformers.ViTModel(cfg, add_pooling_layer=False)
    else:
        cfg = transformers.DeiTConfig(image_size=64, patch_size=16, num_labels=3, **HF_SMALL)
        hf = transformers.DeiTForImageClassificationWithTeacher(cfg)
    hf = randomize_(hf, seed=11).eval()
    hf.save_pretrained(tmp_path)
    ours = rectvit.load_model(tmp_path, dynamic_img_size=True, pos_interpolation="bicubic", pos_antialias=False)
    timm_like = rectvit.load_model(tmp_path, dynamic_img_size=True).eval()  # the default: timm's resampling
    ours.eval()
    worst_default = 0.0
    for size in SIZES:
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            theirs = hf(pixel_values=x, interpolate_pos_encoding=True)
            if family == "vit":
                mine, default = ours.forward_features(x), timm_like.forward_features(x)
                theirs = theirs.last_hidden_state
            else:
                mine, default = ours(x), timm_like(x)
                theirs = theirs.logits
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)
        worst_default = max(worst_default, (default - theirs).abs().max().item())
    assert worst_default > 1e-4  # the default really is another resampling


FAMILIES = {  # each family's absolute table, on a stored (4, 3) grid
    "vit": ("vit_small_patch16_224", dict(img_size=(64, 48))),
    "beit": ("beit_base_patch16_224", dict(img_size=(64, 48), use_abs_pos_emb=True)),
    "eva": ("eva02_tiny_patch14_224", dict(img_size=(64, 48), patch_size=16, use_abs_pos_emb=True, num_reg_tokens=1)),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_off_the_cpu_tables_are_recomputed_not_cached(family):
    """A cache check would synchronise an accelerator with the host every forward; there is no cache
    (docs/deploy.md "Position cache", the policy of every family with an absolute table)."""
    name, kw = FAMILIES[family]

    def make():
        return rectvit.create_model(name, dynamic_img_size=True, **SMALL, **kw).eval()

    model = make().to("meta")
    with torch.no_grad():
        out = model(_x().to("meta"))
    assert out.device.type == "meta" and len(model._pos_cache) == 0
    cpu = make()
    with torch.no_grad():
        cpu(_x())
    assert len(cpu._pos_cache) == 1


@pytest.mark.parametrize("family", ["beit", "eva"])
def test_compiled_forward_resamples_in_the_graph(family, one_thread):
    """Under torch.compile the cache is bypassed for every family (docs/deploy.md): the table is resampled
    in the graph, with the eager numbers (truth: the eager forward, run after the compiled ones)."""
    name, kw = FAMILIES[family]
    model = randomize_(rectvit.create_model(name, dynamic_img_size=True, **SMALL, **kw)).eval()
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager", dynamic=True)
    xs = [_x(grid) for grid in [(4, 3), GRID, (5, 3)]]
    with torch.no_grad():
        outs = [compiled(x) for x in xs]
        assert len(model._pos_cache) == 0
        for x, out in zip(xs, outs):
            torch.testing.assert_close(out, model(x), atol=1e-5, rtol=0)
