"""timm drop-in: the conventions timm's own tests/test_models.py relies on, over every rectvit name.

Modelled on timm's test_models.py (forward, backward, default cfgs, intermediates, features, FX),
written for rectvit: every name from ``rectvit.list_models()`` is built tiny (depth 1-3, small
widths, a small rectangular input) and, where timm has the architecture, compared with timm 1.0.31
built from the same call with the same random non-zero weights (<= 1e-5 float32).

Tests that run a model take one name per distinct architecture (``helpers.distinct_names``: names whose
tiny build gives the same class the same keywords run the same code); the cheap name-level checks (default
cfgs here, parameter shapes against timm in tests/test_registry.py) take every name, and
``test_names_collapse_only_onto_the_same_architecture`` checks that the collapse is sound.
"""

from __future__ import annotations

import inspect

import pytest
import timm
import torch
from timm.models._manipulate import group_parameters

import rectvit
from helpers import arch_config, distinct_names, image_batch, init_params, input_errors, randomize_, tiny
from rectvit.models import get_model_entry
from rectvit.models.features import features_only

ALL = rectvit.list_models()
IN_TIMM = set(timm.list_models())
TOL = 1e-5

pytestmark = pytest.mark.usefixtures("one_thread")


DISTINCT = distinct_names(ALL)
DISTINCT_IN_TIMM = [n for n in DISTINCT if n in IN_TIMM]


def _pair(model) -> tuple:
    """A rectvit model and timm's model of the same name and overrides, holding the same weights."""
    ours = randomize_(rectvit.create_model(model, **tiny(model))).eval()
    theirs = timm.create_model(model, pretrained=False, **tiny(model)).eval()
    theirs.load_state_dict(rectvit.to_timm_state_dict(ours), strict=True)
    return ours, theirs


# ------------------------------------------------------------------------------------------------
# create_model / list_models


def test_pretrained_false_is_accepted_and_true_with_a_checkpoint_path_loads_it(tmp_path):
    """(``pretrained=True`` from the hub: tests/test_pretrained.py, offline.)"""
    m = rectvit.create_model("vit_tiny_patch16_224", pretrained=False, **tiny("vit_tiny_patch16_224"))
    assert m.num_classes == 1000
    path = tmp_path / "w.safetensors"
    rectvit.save_checkpoint(m, path)
    again = rectvit.create_model(
        "vit_tiny_patch16_224", pretrained=True, checkpoint_path=path, **tiny("vit_tiny_patch16_224")
    )
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), again.state_dict().values()))


def test_tagged_names_build_the_architecture_and_keep_the_tag():
    m = rectvit.create_model("vit_tiny_patch16_224.augreg_in21k_ft_in1k", **tiny("vit_tiny_patch16_224"))
    t = timm.create_model("vit_tiny_patch16_224.augreg_in21k_ft_in1k", **tiny("vit_tiny_patch16_224"))
    assert m.arch_name == "vit_tiny_patch16_224"
    for key in ("architecture", "tag"):
        assert m.pretrained_cfg[key] == t.pretrained_cfg[key]
    assert (
        rectvit.create_model("deit_tiny_patch16_224", **tiny("deit_tiny_patch16_224")).pretrained_cfg["tag"]
        == (timm.create_model("deit_tiny_patch16_224", **tiny("deit_tiny_patch16_224")).pretrained_cfg["tag"])
    )
    with pytest.raises(rectvit.RectViTError, match="unknown model"):
        rectvit.create_model("no_such_model.tag")


def test_list_models_filters_as_timm():
    ours = set(ALL)

    def timm_list(**kw):
        return [n for n in timm.list_models(**kw) if n.split(".")[0] in ours]

    for kw in (
        dict(filter="vit_*"),
        dict(filter=["deit*", "swin*"]),
        dict(filter="vit_*", exclude_filters=["*dinov2*", "*_384"]),
        dict(filter="*small*", exclude_filters="*r26*"),
        dict(module="vision_transformer"),
        dict(module="deit"),
        dict(module=["vision_transformer_hybrid", "swin_transformer_v2"]),
        dict(module="swin_transformer", filter="*base*"),
    ):
        assert rectvit.list_models(**kw) == timm_list(**kw), kw
    # every name sits in the timm module timm has it in
    from timm.models._registry import _model_to_module

    for name in ALL:
        if name in IN_TIMM:
            assert name in rectvit.list_models(module=_model_to_module[name]), name
    assert rectvit.list_models(module="vit") == [n for n in ALL if get_model_entry(n).module == "vit"]
    assert rectvit.list_models(pretrained=True) == rectvit.list_pretrained() == timm_list(pretrained=True)
    tagged = rectvit.list_models("deit_tiny*", include_tags=True)
    assert tagged == [n for n in timm.list_models("deit_tiny*", include_tags=True) if n.endswith(".fb_in1k")]


# ------------------------------------------------------------------------------------------------
# timm's test_models.py checks over every architecture


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ALL)
def test_names_collapse_only_onto_the_same_architecture(name):
    """Each name's tiny build equals its representative's in class, keywords, modules and parameter shapes
    (a head's width aside): the per-architecture tests then cover it."""
    (rep,) = [r for r in DISTINCT if arch_config(r) == arch_config(name)]
    with torch.device("meta"):
        ours, theirs = rectvit.create_model(name, **tiny(name)), rectvit.create_model(rep, **tiny(rep))
    assert type(ours) is type(theirs)
    assert [type(m) for m in ours.modules()] == [type(m) for m in theirs.modules()]
    classifier = ours.pretrained_cfg["classifier"]
    classifier = classifier if isinstance(classifier, tuple) else (classifier,)
    head = {f"{c}.{p}" for c in classifier for p in ("weight", "bias")}
    mine, its = _shapes(ours), _shapes(theirs)
    assert mine.keys() == its.keys()
    assert {k: v for k, v in mine.items() if k not in head} == {k: v for k, v in its.items() if k not in head}
    drop = ("img_size", "num_classes")
    assert {k: v for k, v in ours.model_config.items() if k not in drop} == {
        k: v for k, v in theirs.model_config.items() if k not in drop
    }


@pytest.mark.parametrize("name", DISTINCT)
def test_forward_backward(name):
    """timm's test_model_forward / test_model_backward: shapes, no NaN, every parameter gets a gradient."""
    model = rectvit.create_model(name, pretrained=False, **tiny(name)).eval()
    x = image_batch(model)
    out = model(x)
    assert out.shape == (2, model.num_classes) if model.num_classes else out.shape[0] == 2
    assert not torch.isnan(out).any()

    model = rectvit.create_model(name, pretrained=False, num_classes=42, **tiny(name)).train()
    out = model(x)
    out = torch.cat(out) if isinstance(out, tuple) else out
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing and out.shape[-1] == 42


_CFG_KEYS = (
    "architecture", "tag", "input_size", "fixed_input_size", "interpolation", "crop_pct", "crop_mode",
    "mean", "std", "num_classes", "pool_size", "first_conv", "classifier",
)  # fmt: skip


@pytest.mark.parametrize("name", ALL)
def test_default_cfg(name):
    """pretrained_cfg / default_cfg hold timm's default cfg (hub fields aside); live fields follow the model."""
    with torch.device("meta"):  # no weights needed: names and sizes only
        model = rectvit.create_model(name, **tiny(name, sized=False))
        if name in IN_TIMM:
            theirs = timm.create_model(name, pretrained=False, **tiny(name, sized=False)).pretrained_cfg
    cfg = model.default_cfg
    assert cfg == model.pretrained_cfg
    if name in IN_TIMM:
        # timm's fixed_input_size is a static cfg field (True for DINOv3, which timm builds with
        # dynamic_img_size=True); rectvit reports the model's live switch, so it is compared for static models only
        keys = [k for k in _CFG_KEYS if k != "fixed_input_size" or not model.dynamic_img_size]
        assert {k: cfg[k] for k in keys} == {k: theirs[k] for k in keys}
    sd = model.state_dict()
    names = cfg["classifier"] if isinstance(cfg["classifier"], tuple) else (cfg["classifier"],)
    if model.num_classes:
        assert all(f"{c}.weight" in sd for c in names)
    assert f"{cfg['first_conv']}.weight" in sd
    assert sd[f"{cfg['first_conv']}.weight"].shape[1] == cfg["input_size"][0]

    # live fields: the real rectangular size, the classifier, the data config timm resolves
    with torch.device("meta"):
        model = rectvit.create_model(name, **tiny(name))
    h, w = model.img_size
    assert model.pretrained_cfg["input_size"] == (model.in_chans, h, w)
    model.reset_classifier(7)
    assert model.pretrained_cfg["num_classes"] == 7
    data = timm.data.resolve_data_config(model=model)
    assert data["input_size"] == (model.in_chans, h, w)
    assert data["mean"] == model.pretrained_cfg["mean"]


def test_pretrained_cfg_table_is_timms():
    """Every recorded cfg (names other families register included) holds timm's default cfg fields."""
    from rectvit.models.pretrained_cfgs import _CFGS, pretrained_cfg_for
    from rectvit.models.pretrained_tags import TAGS

    def norm(v):
        return tuple(v) if isinstance(v, (tuple, list)) else v

    keys = ("tag", "mean", "std", "crop_pct", "crop_mode", "interpolation")
    checked = 0
    for name in [*TAGS, *_CFGS]:
        theirs = timm.models.get_pretrained_cfg(name)
        if theirs is None:
            continue
        ours = pretrained_cfg_for(name)
        assert {k: norm(ours[k]) for k in keys} == {k: norm(getattr(theirs, k)) for k in keys}, name
        checked += 1
    assert checked == len(TAGS) + len(_CFGS) - 1  # all but AST

    from timm.models._registry import _model_to_module

    from rectvit.models.registry import ModelEntry

    class _NotHybrid(torch.nn.Module):
        pass

    for name in [*TAGS, *_CFGS]:  # names other families will register: timm's module by name pattern
        if name not in ALL and name in _model_to_module:
            assert ModelEntry(name, _NotHybrid).timm_module == _model_to_module[name], name


def test_ast_cfg_is_its_real_size_and_hf_statistics():
    """AST: (1, 128, 1024) inputs; mean/std are HF's AudioSet statistics ((x - mean) / (2 std))."""
    transformers = pytest.importorskip("transformers")
    fe = transformers.ASTFeatureExtractor()
    model = rectvit.create_model("ast_base_patch16_s10_128x1024", depth=1, embed_dim=32, num_heads=2)
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (1, 128, 1024)
    assert cfg["mean"] == (pytest.approx(fe.mean),) and cfg["std"] == (pytest.approx(2 * fe.std),)
    assert timm.data.resolve_data_config(model=model)["input_size"] == (1, 128, 1024)
    model.set_input_size(img_size=(128, 512))
    assert timm.data.resolve_data_config(model=model)["input_size"] == (1, 128, 512)


@pytest.mark.parametrize("name", DISTINCT)
def test_set_input_size_updates_cfg_and_features(name):
    model = rectvit.create_model(name, **tiny(name)).eval()
    h, w = model.img_size
    model.set_input_size(img_size=(h, 2 * w))
    assert model.pretrained_cfg["input_size"] == (model.in_chans, h, 2 * w)
    out = model.forward_intermediates(image_batch(model, 1), intermediates_only=True)
    assert len(out) == len(model.feature_info)
    if hasattr(model, "stage_grids"):
        grids = list(model.stage_grids())
    else:
        grids = [model.feat_size((h, 2 * w))] * len(out)
    for info, y, grid in zip(model.feature_info, out, grids):
        assert y.shape[1] == info["num_chs"] and tuple(y.shape[2:]) == tuple(grid)


@pytest.mark.parametrize("name", DISTINCT)
def test_feature_info_and_features_only(name):
    """feature_info as timm's; features_only maps on the input's rectangular grid, equal to timm's."""
    if name not in IN_TIMM:
        model = rectvit.create_model(name, **tiny(name))
        stride = max(model.patch_embed.patch_stride)
        assert model.feature_info == [
            {"module": f"blocks.{i}", "num_chs": model.embed_dim, "reduction": stride} for i in range(len(model.blocks))
        ]
        feats = rectvit.create_model(name, features_only=True, **tiny(name))
        x = image_batch(feats.model, 1)
        maps = feats(x)
        assert [m.shape[-2:] for m in maps] == [feats.model.patch_embed.feat_size(x.shape[-2:])] * 3
        return
    ours, theirs = _pair(name)
    assert ours.feature_info == theirs.feature_info
    feats = rectvit.create_model(name, features_only=True, **tiny(name))
    tfeats = timm.create_model(name, features_only=True, **tiny(name))
    assert feats.feature_info.get_dicts() == tfeats.feature_info.get_dicts()
    assert feats.feature_info.channels() == tfeats.feature_info.channels()
    assert feats.feature_info.reduction() == tfeats.feature_info.reduction()

    ours_f = features_only(ours)
    x = image_batch(ours, 2)
    got = ours_f(x)
    fmt = ours_f.output_fmt
    want = theirs.forward_intermediates(x, indices=tfeats.feature_info.out_indices, intermediates_only=True)
    if fmt == "NHWC":  # timm's Swin feature net hooks its NHWC stages; its forward_intermediates gives NCHW
        want = [t.permute(0, 2, 3, 1) for t in want]
    assert len(got) == len(want) == len(tfeats.feature_info)
    for g, t in zip(got, want):
        assert g.shape == t.shape
        torch.testing.assert_close(g, t, atol=TOL, rtol=0)
    assert [tuple(g.shape) for g in got] == [tuple(t.shape) for t in tfeats(x)]


@pytest.mark.parametrize("name", DISTINCT)
def test_features_only_dynamic_and_resized(name):
    feats = rectvit.create_model(name, features_only=True, dynamic_img_size=True, **tiny(name)).eval()
    h, w = feats.model.img_size
    chans = feats.feature_info.channels()
    for size in ((h, w), (2 * h, w), (h, 3 * w)):
        maps = feats(image_batch(feats.model, 1, size))
        ch = 1 if feats.output_fmt == "NCHW" else -1
        assert [m.shape[ch] for m in maps] == chans
    feats = rectvit.create_model(name, features_only=True, **tiny(name)).eval()
    feats.set_input_size(img_size=(2 * h, w))
    full = feats.model
    x = image_batch(full, 1)
    assert x.shape[-2:] == (2 * h, w)
    maps = feats(x)
    assert len(maps) == len(feats.feature_info)


def test_features_only_arguments():
    name = "vit_tiny_patch16_224"
    feats = rectvit.create_model(name, features_only=True, out_indices=(0, -1), depth=4, embed_dim=32, num_heads=2)
    tfeats = timm.create_model(name, features_only=True, out_indices=(0, -1), depth=4, embed_dim=32, num_heads=2)
    assert feats.feature_info.out_indices == tfeats.feature_info.out_indices == (0, 3)
    assert len(feats.model.blocks) == len(tfeats.model.blocks) == 4
    assert type(feats.model.norm) is type(tfeats.model.norm) is torch.nn.Identity
    with pytest.raises(rectvit.RectViTError, match="feature_cls"):
        rectvit.create_model(name, features_only=True, feature_cls="hook", depth=1)
    with pytest.raises(rectvit.RectViTError, match="features_only=True"):
        rectvit.create_model(name, out_indices=(1,), depth=1)
    with pytest.raises(rectvit.RectViTError, match="out of range"):
        rectvit.create_model(name, features_only=True, out_indices=(5,), depth=2)


# ------------------------------------------------------------------------------------------------
# FX (timm's test_model_forward_fx) and eager checks kept


def _vit_like(name: str) -> bool:
    return "depth" in init_params(name)


@pytest.mark.parametrize("name", DISTINCT)
def test_fx_symbolic_trace_equals_eager(name):
    model = randomize_(rectvit.create_model(name, **tiny(name))).eval()
    x = image_batch(model, 2)
    # a wrong size (for a dynamic-size model, which takes any size that holds a patch: under one patch),
    # no batch dimension, a wrong channel count
    wrong = x[:, :, :1, :1] if model.dynamic_img_size else x[:, :, :-1]
    bad = (wrong, x[0], torch.cat([x, x], 1))

    before = input_errors(model, bad)
    gm = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), atol=TOL, rtol=0)
    assert input_errors(model, bad) == before  # eager keeps every input check, word for word, after tracing


@pytest.mark.parametrize("name", DISTINCT)
def test_fx_feature_extractor(name):
    """torchvision's create_feature_extractor (what timm's FX tests and detection code use), dynamic size."""
    fx = pytest.importorskip("torchvision.models.feature_extraction")
    model = randomize_(rectvit.create_model(name, dynamic_img_size=True, **tiny(name))).eval()
    node = "blocks.0" if hasattr(model, "blocks") else "layers.0" if hasattr(model, "layers") else "stages.0"
    extractor = fx.create_feature_extractor(model, return_nodes={node: "feat"})
    h, w = model.img_size
    for size in ((h, w), (2 * h, w)):
        x = image_batch(model, 1, size)
        got = extractor(x)["feat"]
        with torch.no_grad():
            if hasattr(model, "blocks"):
                (want,) = model.forward_intermediates(
                    x, indices=[0], output_fmt="NLC", intermediates_only=True, return_prefix_tokens=True
                )
                want = torch.cat([want[1], want[0]], 1) if isinstance(want, tuple) else want
            else:
                (want,) = model.forward_intermediates(x, indices=[0], output_fmt="NHWC", intermediates_only=True)
        torch.testing.assert_close(got, want, atol=TOL, rtol=0)


# ------------------------------------------------------------------------------------------------
# Training utilities against timm (ViT and hybrid)

VIT_IN_TIMM = [n for n in DISTINCT_IN_TIMM if _vit_like(n)]


def _timm_intermediates(model, x, **kw):
    """timm's ``forward_intermediates(..., output_dict=True)``; timm's Eva and Beit have no ``output_dict``,
    so for them the same dict is assembled from timm's tuple/list form (the values are still timm's)."""
    if "output_dict" in inspect.signature(model.forward_intermediates).parameters:
        return model.forward_intermediates(x, output_dict=True, **kw)
    out = model.forward_intermediates(x, **kw)
    final, maps = out
    d = {}
    if kw.get("return_prefix_tokens") and maps and isinstance(maps[0], tuple):
        d["image_intermediates"] = [m for m, _ in maps]
        d["image_intermediates_prefix"] = [p for _, p in maps]
    else:
        d["image_intermediates"] = maps
    d["image_features"] = final
    return d


@pytest.mark.parametrize("name", VIT_IN_TIMM)
def test_group_matcher_no_weight_decay_prune_as_timm(name):
    ours, theirs = _pair(name)
    rename = {"prefix_pos_embed": "pos_embed"}
    mine = {k: sorted({rename.get(p, p) for p in v}) for k, v in group_parameters(ours, ours.group_matcher()).items()}
    assert mine == {k: sorted(v) for k, v in group_parameters(theirs, theirs.group_matcher()).items()}
    assert {rename.get(n, n) for n in ours.no_weight_decay()} >= set(theirs.no_weight_decay()) & {
        n for n, _ in theirs.named_parameters()
    }

    x = image_batch(ours, 1)
    for kw in (dict(indices=1), dict(indices=[0, 1], norm=True), dict(indices=2, return_prefix_tokens=True)):
        got = ours.forward_intermediates(x, output_dict=True, **kw)
        want = _timm_intermediates(theirs, x, **kw)
        assert got.keys() == want.keys()
        for key in want:
            g, t = got[key], want[key]
            for a, b in zip(g if isinstance(g, list) else [g], t if isinstance(t, list) else [t]):
                torch.testing.assert_close(a, b, atol=TOL, rtol=0)
        only = ours.forward_intermediates(x, output_dict=True, intermediates_only=True, **kw)
        assert "image_features" not in only

    assert ours.prune_intermediate_layers(1, prune_norm=True) == theirs.prune_intermediate_layers(1, prune_norm=True)
    assert len(ours.blocks) == len(theirs.blocks) == 3
    torch.testing.assert_close(ours(x), theirs(x), atol=TOL, rtol=0)
    assert ours.pretrained_cfg["num_classes"] == 0
    again = type(ours)(**ours.model_config)  # the pruned model's config rebuilds it
    again.load_state_dict(ours.state_dict())


# ------------------------------------------------------------------------------------------------
# rectvit -> timm's flat layout


@pytest.mark.parametrize("name", DISTINCT_IN_TIMM)
def test_to_timm_state_dict_round_trip(name):
    ours, theirs = _pair(name)  # strict=True load inside
    x = image_batch(ours, 2)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), ours(x), atol=TOL, rtol=0)
    sd = rectvit.to_timm_state_dict(ours)
    if "pos_embed" in sd and hasattr(ours, "prefix_pos_embed"):
        h, w = ours.grid_size
        grid = ours.pos_embed.detach().reshape(1, h * w, -1)
        prefix = ours.prefix_pos_embed
        expect = grid if prefix is None else torch.cat([prefix.detach(), grid], 1)
        assert torch.equal(sd["pos_embed"], expect)
    back = rectvit.create_model(name, **tiny(name))
    kw = {"source_grid": ours.grid_size} if "pos_embed" in sd else {}
    windows = {
        f"{n}.relative_position_bias_table": tuple(m.window_size)
        for n, m in ours.named_modules()
        if isinstance(getattr(m, "relative_position_bias_table", None), torch.Tensor)
    }
    if windows and "source_windows" in inspect.signature(rectvit.load_checkpoint).parameters:
        kw["source_windows"] = windows  # a flat state dict does not record Swin bias-table windows
    rectvit.load_checkpoint(back, sd, **kw)
    for (k, a), (k2, b) in zip(ours.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
