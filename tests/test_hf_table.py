"""checkpoint/hf.py as one table: a row per HF family, one pass per load, and a new family is a new row."""

import pytest
import torch

import rectvit
from helpers import randomize_
from rectvit.checkpoint import hf
from rectvit.models.vit import VisionTransformer

transformers = pytest.importorskip("transformers", reason="HF transformers is the oracle; `make test` installs it")

SMALL = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)


def test_a_load_converts_once(tmp_path, monkeypatch):
    """``create_model(checkpoint_path=HF folder)`` and ``load_model`` run the family's rules once per load."""
    cfg = transformers.ViTConfig(image_size=(64, 32), patch_size=16, num_labels=3, **SMALL)
    randomize_(transformers.ViTForImageClassification(cfg)).save_pretrained(tmp_path)
    calls = []
    rename = hf._rename
    monkeypatch.setattr(hf, "_rename", lambda *a: calls.append(a[0].name) or rename(*a))
    model = rectvit.load_model(tmp_path)
    assert calls == ["vit"] and model.load_report.layout == "hf-vit"
    calls.clear()
    rectvit.create_model(
        "vit_base_patch16_224", checkpoint_path=tmp_path, img_size=(64, 32), num_classes=3, embed_dim=32, depth=1,
        num_heads=2, mlp_ratio=2, norm_eps=1e-12,
    )  # fmt: skip
    assert calls == ["vit"]


def test_rows_are_one_per_family():
    names = [row.name for row in hf.FAMILIES]
    assert sorted(names) == ["ast", "beit", "clip", "deit", "siglip", "vit"]
    types = [t for row in hf.FAMILIES for t in row.model_types]
    assert len(types) == len(set(types))
    assert hf.hf_family([], {"model_type": "siglip_vision_model"}).name == "siglip"
    with pytest.raises(rectvit.CheckpointError, match="model_type 'qwen2_vl' is not supported.*'vit'"):
        hf.hf_family([], {"model_type": "qwen2_vl"})


def test_a_new_family_is_a_row(monkeypatch):
    """A family the table lacks (keys ``tower.*``, config ``model_type`` "toy") reads through ``from_hf`` and
    ``load_checkpoint`` once a row names its rules: nothing else changes."""
    ref = rectvit.create_model("vit_base_patch16_224", img_size=32, num_classes=0, embed_dim=32, depth=1, num_heads=2)
    randomize_(ref)
    ours = {f"tower.{k.replace('blocks.', 'layer.')}": v for k, v in ref.state_dict().items()}
    flat = torch.cat([ref.prefix_pos_embed, ref.pos_embed.flatten(1, 2)], dim=1)[0]
    ours["tower.pos"] = flat  # (P + h*w, C), as many towers store it
    del ours["tower.pos_embed"], ours["tower.prefix_pos_embed"]
    ours["tower.unused_buffer"] = torch.zeros(1)
    row = hf.HFFamily(
        "toy",
        "ToyVisionModel",
        ("toy",),
        (
            hf.drop(r"unused_buffer"),
            hf.rename(r"pos", "pos_embed", lambda v: v.unsqueeze(0)),
            hf.rename(r"layer\.(.*)", r"blocks.\1"),
            hf.rename(r"(cls_token|norm\.(?:weight|bias)|patch_embed\.proj\.(?:weight|bias))", r"\1"),
        ),
        VisionTransformer,
        lambda config, sd: {},
        lambda config: (config["image_size"] // 16,) * 2,
        lambda keys: any(k.startswith("tower.") for k in keys),
        prefixes=("tower.",),
    )
    monkeypatch.setattr(hf, "FAMILIES", (*hf.FAMILIES, row))
    converted = hf.from_hf(ours, {"model_type": "toy", "image_size": 32})
    assert converted.family is row and converted.recorded_grid == (2, 2)
    assert converted.dropped == ["tower.unused_buffer"]
    target = rectvit.create_model(
        "vit_base_patch16_224", img_size=32, num_classes=0, embed_dim=32, depth=1, num_heads=2
    )
    report = rectvit.load_checkpoint(target, ours, source_grid=(2, 2))  # no config: detected by its keys
    assert report.layout == "hf-toy"
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), target.state_dict().values()))
    with pytest.raises(rectvit.CheckpointError, match=r"unrecognised keys in an HF toy checkpoint: \['tower.x'\]"):
        hf.from_hf({**ours, "tower.x": flat}, None)
