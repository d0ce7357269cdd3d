"""TorchScript over every rectvit name, as timm's test_models.py scripts every model.

timm's ``test_model_forward_torchscript`` scripts a model and runs one forward; its
``test_model_forward_fx_torchscript`` scripts the FX feature extractor of a model. Here both run over
one name per distinct architecture (built tiny, see ``helpers.tiny`` and ``helpers.distinct_names``;
tests/test_timm_dropin.py checks that every other name builds the same architecture), with stricter
acceptance rules:

- the scripted model's output equals the eager model's (<= 1e-5 float32) and, where timm has the
  architecture, timm's eager output for the same weights;
- a model built with ``dynamic_img_size=True`` gives, scripted, the eager output at a second,
  rectangular size as well (one scripted program for every size);
- ``torch.jit.save`` / ``torch.jit.load`` keep the program (nothing in it calls back into Python);
- scripting leaves the eager model's input checks as they were.
"""

from __future__ import annotations

import pytest
import timm
import torch

import rectvit
from helpers import distinct_names, image_batch, input_errors, randomize_, save_load, script, tiny

ALL = rectvit.list_models()
DISTINCT = distinct_names(ALL)
IN_TIMM = set(timm.list_models())
TOL = 1e-5

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # torch 2.14 deprecates torch.jit.script
]


def _other_size(model) -> tuple[int, int]:
    """A second size for a dynamic model: taller than the nominal one, and never square."""
    h, w = model.img_size
    return (h + h // 2, w) if h + h // 2 != w else (2 * h, w)


@pytest.mark.parametrize("name", DISTINCT)
def test_scripted_model_equals_eager_and_timm(name):
    model = randomize_(rectvit.create_model(name, **tiny(name))).eval()
    x = image_batch(model, 2)
    scripted = script(model)
    with torch.no_grad():
        got, want = scripted(x), model(x)
    assert got.shape == (2, model.num_classes or model.head_hidden_size)  # num_classes=0: pooled features
    torch.testing.assert_close(got, want, atol=TOL, rtol=0)
    if name in IN_TIMM:
        theirs = timm.create_model(name, pretrained=False, **tiny(name)).eval()
        theirs.load_state_dict(rectvit.to_timm_state_dict(model), strict=True)
        with torch.no_grad():
            torch.testing.assert_close(got, theirs(x), atol=TOL, rtol=0)


@pytest.mark.parametrize("name", DISTINCT)
def test_scripted_dynamic_model_takes_every_size_and_survives_save_load(name):
    """Scripted after eager forwards at both sizes (every eager cache filled: positions, masks, bias tables,
    RoPE), as a model is usually validated before it is exported."""
    model = randomize_(rectvit.create_model(name, dynamic_img_size=True, **tiny(name))).eval()
    xs = [image_batch(model, 1, size) for size in (model.img_size, _other_size(model))]
    with torch.no_grad():
        want = [model(x) for x in xs]
    loaded = save_load(script(model))
    for x, w in zip(xs, want):
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x), atol=TOL, rtol=0)
            torch.testing.assert_close(model(x), w, atol=0, rtol=0)  # the eager model still the same


@pytest.mark.parametrize("name", DISTINCT)
def test_fx_feature_extractor_scripts(name):
    """timm's test_model_forward_fx_torchscript: the FX graph of the whole forward, scripted."""
    fx = pytest.importorskip("torchvision.models.feature_extraction")
    model = randomize_(rectvit.create_model(name, **tiny(name))).eval()
    _, eval_nodes = fx.get_graph_node_names(model)
    extractor = fx.create_feature_extractor(model, return_nodes=[eval_nodes[-1]])
    scripted = script(extractor)
    x = image_batch(model, 1)
    with torch.no_grad():
        (got,) = scripted(x).values()
        torch.testing.assert_close(got, model(x), atol=TOL, rtol=0)


@pytest.mark.parametrize("name", DISTINCT)
def test_scripting_keeps_eager_input_checks_and_the_scripted_model_checks_too(name):
    """Eager: the same InputSizeError, word for word, after scripting. Scripted: every input eager refuses
    for its shape, channels, dtype or (static model) size is refused as an InputSizeError raised inside
    TorchScript (``torch.jit.Error`` naming it), and the nominal size runs."""
    model = rectvit.create_model(name, **tiny(name)).eval()
    x = image_batch(model, 1)
    h, w = model.img_size
    p = model.patch_embed.patch_size
    bad = (x[0], torch.cat([x, x], 1), x.long(), x.double())
    if not model.dynamic_img_size:  # other sizes: refused by static models only (DINOv3 is registered dynamic)
        bad += (x[:, :, : h - p[0]], image_batch(model, 1, (h, w + p[1])))

    before = input_errors(model, bad)
    scripted = script(model)
    assert input_errors(model, bad) == before
    for b in bad:
        with pytest.raises(torch.jit.Error, match="InputSizeError"):
            scripted(b)
    assert scripted(x).shape[0] == 1


@pytest.mark.parametrize("name", DISTINCT)
def test_scripted_dynamic_model_refuses_a_size_under_one_patch(name):
    """The smallest size eager refuses (one row short of one patch; a hybrid's through its backbone)."""
    model = rectvit.create_model(name, dynamic_img_size=True, **tiny(name)).eval()
    scripted = script(model)
    low = model.min_input_size() if hasattr(model, "min_input_size") else model.patch_embed.patch_size
    small = image_batch(model, 1, (low[0] - 1, 4 * low[1]))
    with pytest.raises(rectvit.InputSizeError):
        model(small)
    with pytest.raises(torch.jit.Error, match="InputSizeError"):
        scripted(small)


# Real configurations at timm's torchscript sizes (TARGET_JIT_SIZE 128, MAX_JIT_SIZE 320; every rectvit
# cfg has fixed_input_size, so timm's test takes the default input size): one name per family.
REAL = [
    "vit_base_patch16_224",
    "deit_small_distilled_patch16_224",
    "vit_small_r26_s32_224",
    "swin_tiny_patch4_window7_224",
    "swinv2_tiny_window8_256",
    "swinv2_cr_tiny_ns_224",
    "beit_base_patch16_224",
    "eva02_tiny_patch14_224",
    "vit_base_patch16_rope_mixed_224",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL)
def test_real_size_model_scripts_and_equals_timm(name):
    model = randomize_(rectvit.create_model(name)).eval()
    c, h, w = model.pretrained_cfg["input_size"]
    assert model.pretrained_cfg["fixed_input_size"] and max(h, w) <= 320  # timm's rule picks this size
    x = torch.randn(1, c, h, w)
    theirs = timm.create_model(name, pretrained=False).eval()
    theirs.load_state_dict(rectvit.to_timm_state_dict(model), strict=True)
    with torch.no_grad():
        got = script(model)(x)
        torch.testing.assert_close(got, theirs(x), atol=TOL, rtol=0)


def test_a_subclass_naming_a_type_only_for_type_checkers_still_defines():
    """Resolving forward annotations (for FX code that TorchScript compiles) must not break a subclass whose
    annotation names a type imported only under TYPE_CHECKING: its string annotations are kept."""
    namespace: dict = {}
    exec(
        "from __future__ import annotations\n"
        "import torch\n"
        "from rectvit.models.vit import VisionTransformer\n"
        "class MyViT(VisionTransformer):\n"
        "    def forward(self, x: torch.Tensor | PackedBatch) -> torch.Tensor:\n"
        "        return super().forward(x)\n",
        namespace,
    )
    model = namespace["MyViT"](img_size=(32, 48), patch_size=16, depth=1, embed_dim=32, num_heads=2).eval()
    assert model.forward.__annotations__["x"] == "torch.Tensor | PackedBatch"
    assert model(torch.randn(1, 3, 32, 48)).shape == (1, 1000)
