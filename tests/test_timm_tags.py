"""timm pretrained tags (``"arch.tag"``): rectvit applies a tag's config the way timm 1.0.31 does.

Oracle: the installed timm. Every (architecture, tag) pair timm has for a rectvit name is checked: the
table (``rectvit.models.pretrained_tags``) against ``timm.models.get_pretrained_cfg``, the model keywords
against timm's own default-keyword rule, and rectvit's model built from the tagged name (on the meta
device, narrow and shallow: the keywords a tag sets are untouched) against the tag's values. One pair per
family and per distinct (num_classes, input_size, fixed_input_size) is also built by
``timm.create_model(name)`` and compared model to model.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import timm
import torch
from timm.models import get_pretrained_cfg
from timm.models._builder import _update_default_model_kwargs
from timm.models._registry import _model_to_module

import rectvit
from helpers import randomize_
from rectvit.factory import _cfg_defaults
from rectvit.models import get_model_entry
from rectvit.models.pretrained_cfgs import known_tags, pretrained_cfg_for

pytestmark = pytest.mark.usefixtures("one_thread")

ARCHS = rectvit.list_models()
IN_TIMM = [a for a in ARCHS if a in _model_to_module]


def _timm_tags(arch: str) -> list[str]:
    """timm's tags for ``arch``, its default first."""
    default = get_pretrained_cfg(arch)
    tags = [n.partition(".")[2] for n in timm.list_models(arch, include_tags=True)]
    return [default.tag] + [t for t in tags if t != default.tag] if default else []


PAIRS = [f"{a}.{t}" for a in IN_TIMM for t in _timm_tags(a)]
DATA_KEYS = ("tag", "mean", "std", "crop_pct", "crop_mode", "interpolation", "test_input_size", "test_crop_pct")


def _small(arch: str) -> dict:
    """Narrow, shallow keywords that leave what a tag sets (num_classes, in_chans, img_size) alone."""
    cls = get_model_entry(arch).cls
    params = {p for k in cls.__mro__ if "__init__" in k.__dict__ for p in inspect.signature(k).parameters}
    if "depths" in params:
        return dict(depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), embed_dim=8)
    return dict(depth=1, embed_dim=32, num_heads=2)


def _norm(v):
    return tuple(_norm(x) for x in v) if isinstance(v, (tuple, list)) else v


def _timm_defaults(cfg: dict) -> dict:
    """The keywords timm's builder derives from a pretrained cfg when none are passed (timm's own code)."""
    kwargs: dict = {}
    _update_default_model_kwargs(cfg, kwargs, None)
    return {k: (v if k != "img_size" else _norm(v)) for k, v in kwargs.items()}


def _size2(v) -> tuple:
    return (v, v) if isinstance(v, int) else tuple(v)


def _data(model_or_cfg, **kw) -> list[dict]:
    """timm's resolve_data_config, at train and at test size."""
    key = "model" if isinstance(model_or_cfg, torch.nn.Module) else "pretrained_cfg"
    return [
        {k: _norm(v) for k, v in timm.data.resolve_data_config(**{key: model_or_cfg}, use_test_size=t).items()}
        for t in (False, True)
    ]


# ------------------------------------------------------------------------------------------------
# the table: every pair, every field


def test_table_holds_every_timm_tag_default_first():
    assert len(PAIRS) >= 279 and len(IN_TIMM) >= 129  # timm 1.0.31: 295 tags over 143 architectures
    for arch in ARCHS:
        assert known_tags(arch) == _timm_tags(arch), arch  # same tags, timm's default first
    ours = rectvit.list_models(include_tags=True)
    untagged = [a for a in ARCHS if a not in _model_to_module]  # names timm lacks stay untagged (AST)
    assert untagged and all(a in ours for a in untagged)
    assert [n for n in ours if n not in untagged] == [
        n for n in timm.list_models(include_tags=True) if n.split(".")[0] in ARCHS
    ]


def test_generated_table_is_what_the_script_makes_from_the_installed_timm():
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("gen_timm_tags", root / "scripts" / "gen_timm_tags.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (root / "src" / "rectvit" / "models" / "pretrained_tags.py").read_text() == gen.render(), (
        "run: python scripts/gen_timm_tags.py"
    )


@pytest.mark.parametrize("name", PAIRS)
def test_tag_cfg_and_build_match_timm(name):
    arch, _, tag = name.partition(".")
    theirs = get_pretrained_cfg(name).to_dict()
    ours = pretrained_cfg_for(arch, tag)
    keys = ("architecture", "input_size", "fixed_input_size", "num_classes") + DATA_KEYS
    assert {k: _norm(ours.get(k)) for k in keys} == {k: _norm(theirs.get(k)) for k in keys}
    assert _data(ours) == _data(theirs)
    expected = _timm_defaults(theirs)  # timm's rule on timm's cfg
    assert {k: (_size2(v) if k == "img_size" else v) for k, v in _cfg_defaults(ours).items()} == expected

    with torch.device("meta"):
        model = rectvit.create_model(name, **_small(arch))
    assert model.num_classes == expected["num_classes"]
    assert model.in_chans == expected["in_chans"]
    assert model.img_size == expected.get("img_size", model.img_size)
    assert _data(model) == _data(theirs)  # live input_size == the tag's, data fields the tag's
    cfg = model.pretrained_cfg
    assert cfg == model.default_cfg and cfg["tag"] == tag and cfg["num_classes"] == theirs["num_classes"]


def test_names_without_tag_get_timms_default_tag():
    for arch in IN_TIMM:
        theirs = get_pretrained_cfg(arch).to_dict()
        with torch.device("meta"):
            model = rectvit.create_model(arch, **_small(arch))
        assert model.pretrained_cfg["tag"] == theirs["tag"] == known_tags(arch)[0], arch
        assert (model.num_classes, model.in_chans) == (theirs["num_classes"], theirs["input_size"][0]), arch
        assert _data(model) == _data(theirs), arch


def _representative() -> list[str]:
    """One pair per (timm module, rectvit class) and per distinct (num_classes, input_size, fixed_input_size)."""
    picks: dict = {}
    for name in PAIRS:
        arch, _, tag = name.partition(".")
        cfg = pretrained_cfg_for(arch, tag)
        picks.setdefault((_model_to_module[arch], get_model_entry(arch).cls), name)
        picks.setdefault((cfg["num_classes"], cfg["input_size"], cfg["fixed_input_size"]), name)
    return sorted(set(picks.values()))


def _timm_img_size(model) -> tuple:
    pe = getattr(model, "patch_embed", None)
    return tuple(getattr(pe, "img_size", None) or model.img_size)


@pytest.mark.parametrize("name", _representative())
def test_tagged_models_built_by_timm_and_rectvit_agree(name):
    arch = name.partition(".")[0]
    with torch.device("meta"):
        ours = rectvit.create_model(name, **_small(arch))
        theirs = timm.create_model(name, pretrained=False, **_small(arch))
    first_conv = dict(theirs.named_modules())[theirs.pretrained_cfg["first_conv"]]
    assert ours.num_classes == theirs.num_classes
    assert ours.in_chans == first_conv.weight.shape[1]
    assert tuple(ours.img_size) == _timm_img_size(theirs)
    assert _data(ours) == _data(theirs)
    if isinstance(getattr(theirs, "pos_embed", None), torch.Tensor) and isinstance(ours.pos_embed, torch.Tensor):
        h, w = ours.grid_size
        assert ours.pos_embed.shape[1:3] == (h, w)
        assert tuple(theirs.patch_embed.grid_size) == (h, w)


# ------------------------------------------------------------------------------------------------
# keywords, sizes, errors


def test_explicit_keywords_win_over_the_tag():
    name = "vit_base_patch16_224.augreg_in21k"  # 21843 classes, (3, 224, 224), fixed
    kw = dict(depth=1, embed_dim=32, num_heads=2, num_classes=10, in_chans=1, img_size=(64, 96))
    ours, theirs = rectvit.create_model(name, **kw), timm.create_model(name, **kw)
    assert ours.num_classes == theirs.num_classes == 10
    assert ours.in_chans == theirs.patch_embed.proj.weight.shape[1] == 1
    assert ours.img_size == tuple(theirs.patch_embed.img_size) == (64, 96)
    assert ours.pretrained_cfg["tag"] == "augreg_in21k"
    assert ours.pretrained_cfg["input_size"] == (1, 64, 96)  # live: the model as built
    for k in ("num_classes", "in_chans", "img_size"):  # each one alone
        one = {k: kw[k]}
        got = rectvit.create_model(name, depth=1, embed_dim=32, num_heads=2, **one)
        assert getattr(got, k) == (kw[k] if k != "num_classes" else 10)
        assert got.num_classes == (10 if k == "num_classes" else 21843)


@pytest.mark.parametrize(
    "name, size, patch",
    [
        ("vit_base_patch16_384.augreg_in1k", 384, 16),
        ("vit_small_patch14_dinov2.lvd142m", 518, 14),
        ("eva02_tiny_patch14_336.mim_in22k_ft_in1k", 336, 14),
        ("beit_large_patch16_512.in22k_ft_in22k_in1k", 512, 16),  # relative positions: grid only
        ("vit_base_patch16_siglip_512.v2_webli", 512, 16),
        ("vit_so400m_patch14_siglip_gap_896.pali_pt", 896, 14),
    ],
)
def test_tag_sizes_set_img_size_and_the_position_grid(name, size, patch):
    arch = name.partition(".")[0]
    with torch.device("meta"):
        ours = rectvit.create_model(name, **_small(arch))
        theirs = timm.create_model(name, **_small(arch))
        wider = rectvit.create_model(name, img_size=(size // 2, size), **_small(arch))
    g = size // patch
    assert ours.img_size == (size, size) and ours.grid_size == (g, g)
    assert tuple(theirs.patch_embed.grid_size) == (g, g)
    if theirs.pos_embed is not None:
        assert ours.pos_embed.shape[1:3] == (g, g)
        assert theirs.pos_embed.shape[1] - theirs.num_prefix_tokens * (not theirs.no_embed_class) == g * g
    assert wider.img_size == (size // 2, size) and wider.grid_size == (g // 2, g)


def test_unknown_tag_is_a_clear_error_as_timm_refuses_it():
    with pytest.raises(RuntimeError, match="Invalid pretrained tag"):
        timm.create_model("vit_tiny_patch16_224.augreg_in99k")
    with pytest.raises(rectvit.RectViTError, match=r"unknown pretrained tag 'augreg_in99k'.*'augreg_in21k'"):
        rectvit.create_model("vit_tiny_patch16_224.augreg_in99k")
    with pytest.raises(rectvit.RectViTError, match="unknown model"):
        rectvit.create_model("no_such_model.augreg_in21k")
    # an architecture timm has no cfgs for (AST) keeps any tag, as timm does for unregistered cfgs
    ast = rectvit.create_model("ast_base_patch16_s10_128x1024.mine", depth=1, embed_dim=32, num_heads=2)
    assert ast.pretrained_cfg["tag"] == "mine" and ast.pretrained_cfg["input_size"] == (1, 128, 1024)


def test_set_input_size_on_a_tagged_model_updates_input_size_and_keeps_the_tag():
    model = rectvit.create_model("vit_small_patch16_224.dino", depth=1, embed_dim=32, num_heads=2)
    model.set_input_size(img_size=(112, 336))
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (3, 112, 336) and cfg["tag"] == "dino" and cfg["num_classes"] == 0
    assert _norm(cfg["mean"]) == get_pretrained_cfg("vit_small_patch16_224.dino").mean  # not the default tag's
    assert timm.data.resolve_data_config(model=model)["input_size"] == (3, 112, 336)


# ------------------------------------------------------------------------------------------------
# weights: timm's tagged model in and out, checkpoints with their own config

TINY = dict(depth=1, embed_dim=32, num_heads=2)


def test_timm_tagged_state_dict_round_trip():
    name = "vit_tiny_patch16_224.augreg_in21k"  # 21843 classes
    theirs = randomize_(timm.create_model(name, **TINY)).eval()
    ours = rectvit.create_model(name, **TINY).eval()
    report = rectvit.load_checkpoint(ours, theirs.state_dict(), source_grid=theirs.patch_embed.grid_size)
    assert report is not None and ours.num_classes == 21843
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max() <= 1e-5
    back = rectvit.to_timm_state_dict(ours)
    sd = theirs.state_dict()
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)


def test_pretrained_with_checkpoint_path_applies_the_tag(tmp_path):
    name = "vit_tiny_patch16_224.augreg_in21k"
    src = randomize_(rectvit.create_model(name, **TINY))
    path = tmp_path / "w.safetensors"
    rectvit.save_checkpoint(src, path)
    got = rectvit.create_model(name, pretrained=True, checkpoint_path=path, **TINY)
    assert got.num_classes == 21843 and got.pretrained_cfg["tag"] == "augreg_in21k"
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), got.state_dict().values()))
    # the default tag (1000 classes) does not fit these weights: a clear error, not a silent new head
    with pytest.raises(rectvit.RectViTError):
        rectvit.create_model("vit_tiny_patch16_224", pretrained=True, checkpoint_path=path, **TINY)


def test_load_model_keeps_the_checkpoints_recorded_config(tmp_path):
    """A checkpoint's own config is the truth for its weights: no tag default replaces it."""
    src = randomize_(rectvit.create_model("vit_tiny_patch16_224.augreg_in21k", num_classes=7, **TINY)).eval()
    path = tmp_path / "w.safetensors"
    rectvit.save_checkpoint(src, path)
    got = rectvit.load_model(path).eval()
    assert got.num_classes == 7 and got.img_size == (224, 224)
    assert got.pretrained_cfg == src.pretrained_cfg  # the tag's data fields (and tag) came back
    dino = rectvit.create_model("vit_small_patch16_224.dino", **TINY)  # ImageNet statistics, not the default's
    rectvit.save_checkpoint(dino, tmp_path / "dino.safetensors")
    again = rectvit.load_model(tmp_path / "dino.safetensors", img_size=(112, 224))
    assert again.pretrained_cfg == {**dino.pretrained_cfg, "input_size": (3, 112, 224)}
    assert _data(again)[0]["mean"] == get_pretrained_cfg("vit_small_patch16_224.dino").mean
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(got(x), src(x))


def test_load_model_of_a_timm_folder_keeps_its_recorded_config(tmp_path):
    pytest.importorskip("huggingface_hub")
    from timm.models import save_for_hf

    name = "vit_small_patch16_224.dino"  # 0 classes, ImageNet statistics (the default tag: 1000, Inception)
    theirs = randomize_(timm.create_model(name, **TINY)).eval()
    save_for_hf(theirs, tmp_path / "m", safe_serialization=True)
    recorded = json.loads((tmp_path / "m" / "config.json").read_text())
    assert recorded["num_classes"] == 0 and recorded["pretrained_cfg"]["tag"] == "dino"
    ours = rectvit.load_model(tmp_path / "m").eval()
    assert ours.num_classes == 0
    assert _data(ours) == _data(theirs)  # the recorded tag's statistics, not the default tag's
    assert ours.pretrained_cfg["tag"] == "dino"
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max() <= 1e-5


def test_keywords_given_as_none_count_as_not_given_as_in_timm():
    """timm's create_model drops ``None`` keywords (train scripts pass ``num_classes=args.num_classes``)."""
    name = "vit_tiny_patch16_224.augreg_in21k"
    kw = dict(depth=1, num_classes=None, img_size=None, drop_rate=None)
    ours, theirs = rectvit.create_model(name, **kw), timm.create_model(name, **kw)
    assert ours.num_classes == theirs.num_classes == 21843
    assert ours.img_size == tuple(theirs.patch_embed.img_size) == (224, 224)


def test_load_model_keeps_a_recorded_none_in_timm_model_args(tmp_path):
    """timm merges a folder's ``model_args`` after dropping the caller's None keywords, so a recorded
    ``"init_values": null`` (no layer scale) reaches the model; load_model must do the same."""
    from safetensors.torch import save_file

    args = dict(depth=1, embed_dim=32, num_heads=2, init_values=None)
    theirs = randomize_(timm.models.vision_transformer.VisionTransformer(no_embed_class=True, **args)).eval()
    assert not any("ls1" in k for k in theirs.state_dict())
    folder = tmp_path / "deit3"
    folder.mkdir()
    config = {"architecture": "deit3_small_patch16_224", "num_classes": 1000, "model_args": args}
    (folder / "config.json").write_text(json.dumps(config))
    save_file(dict(theirs.state_dict()), folder / "model.safetensors")
    ours = rectvit.load_model(folder, source_grid=(14, 14)).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max() <= 1e-5
