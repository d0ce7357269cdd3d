"""Every registered name against timm's architecture of the same name, and the size arithmetic that
checkpoint loading uses (``table_grid`` / ``bias_windows``) against the grids real models build."""

import pytest
import timm
import torch

import rectvit
from rectvit.models import get_model_entry

ALL = rectvit.list_models()
NOT_IN_TIMM = {"ast_base_patch16_s10_128x1024"}  # HF's AST; tests/test_hf.py holds its oracle
IN_TIMM = [n for n in ALL if n not in NOT_IN_TIMM]


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_only_the_known_names_lack_a_timm_counterpart():
    assert {n for n in ALL if n not in timm.list_models()} == NOT_IN_TIMM


@pytest.mark.parametrize("name", IN_TIMM)
def test_registry_matches_timm_architecture(name):
    """The same parameters as timm's model of that name, the flat table split into grid + prefix rows."""
    with torch.device("meta"):
        theirs = timm.create_model(name)
        ours = rectvit.create_model(name)
    t, o = _shapes(theirs), _shapes(ours)
    if "pos_embed" in t:
        flat = t.pop("pos_embed")
        h, w = ours.grid_size
        assert o.pop("pos_embed") == (1, h, w, flat[-1])
        prefix = o.pop("prefix_pos_embed", (1, 0, flat[-1]))
        assert flat == (1, prefix[1] + h * w, flat[-1])
    assert o == t
    assert tuple(ours.img_size) == to_pair(theirs.patch_embed.img_size)
    assert tuple(ours.grid_size) == to_pair(theirs.patch_embed.grid_size)
    assert ours.num_classes == theirs.num_classes
    assert ours.arch_name == name


def to_pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("size", [None, (224, 448)])
def test_size_arithmetic_matches_the_built_model(name, size):
    """``table_grid`` and ``bias_windows`` of a config equal what the model built from it holds."""
    overrides = {} if size is None else {"img_size": size}
    with torch.device("meta"):
        model = rectvit.create_model(name, **overrides)
    cls = get_model_entry(name).cls
    table = getattr(model, "pos_embed", None)
    if isinstance(table, torch.Tensor) and table.dim() == 4:
        assert cls.table_grid(model.model_config) == tuple(table.shape[1:3])
    windows = {
        f"{n}.relative_position_bias_table": tuple(m.window_size)
        for n, m in model.named_modules()
        if isinstance(getattr(m, "relative_position_bias_table", None), torch.Tensor)
    }
    assert (cls.bias_windows(model.model_config) if hasattr(cls, "bias_windows") else {}) == windows
