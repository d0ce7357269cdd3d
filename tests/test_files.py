"""Checkpoint files that cannot be lost or misread: protected sources, bad targets, shard indexes that
point outside their folder, killed saves, tensors of the wrong kind, absurd or malformed configs."""

import json
import os
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import save_file

import rectvit
from helpers import randomize_
from rectvit import CheckpointError
from rectvit.checkpoint import io as ckpt_io
from rectvit.checkpoint import writer as ckpt_writer
from test_checkpoint import ours, timm_state

timm = pytest.importorskip("timm", reason="timm is the oracle; `make test` installs it")

HF_SMALL = dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=128)


def _hf_folder(tmp_path, image_size=(64, 32)):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ViTConfig(image_size=image_size, patch_size=16, num_labels=3, **HF_SMALL)
    folder = tmp_path / "hf"
    randomize_(transformers.ViTForImageClassification(cfg)).save_pretrained(folder)
    return folder


# ---- where a save may write ----


def test_save_refuses_every_file_of_the_hf_folder_it_was_loaded_from(tmp_path):
    folder = _hf_folder(tmp_path)
    model = rectvit.load_model(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    for target in (folder / "model.safetensors", folder / "new.safetensors"):
        with pytest.raises(CheckpointError, match="refusing to overwrite the checkpoint the model was loaded from"):
            rectvit.save_checkpoint(model, target)
    os.link(folder / "model.safetensors", tmp_path / "hardlink.safetensors")  # the same file by another name
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        rectvit.save_checkpoint(model, tmp_path / "hardlink.safetensors")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    rectvit.save_checkpoint(model, tmp_path / "elsewhere.safetensors")


def test_save_onto_a_folder_or_under_a_file_is_a_checkpoint_error(tmp_path):
    model = ours(64)
    (tmp_path / "dir.safetensors").mkdir()
    with pytest.raises(CheckpointError, match="is a folder"):
        rectvit.save_checkpoint(model, tmp_path / "dir.safetensors")
    (tmp_path / "file.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="is a file, not a folder"):
        rectvit.save_checkpoint(model, tmp_path / "file.safetensors" / "deeper" / "out.safetensors")
    assert (tmp_path / "file.safetensors").read_bytes() == b"x"


_KILLED_SAVE = """
import os, signal, sys, torch
import safetensors.torch
from rectvit.checkpoint.writer import write_safetensors
path = sys.argv[1]
write_safetensors({"w": torch.ones(4)}, path)
print("first written", flush=True)
def dying_save(tensors, filename, metadata=None):
    with open(filename, "wb") as f:
        f.write(b"half a file")
        f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
safetensors.torch.save_file = dying_save
write_safetensors({"w": torch.zeros(4)}, path)
"""


def test_a_killed_save_keeps_the_previous_file_and_the_next_save_removes_its_temporary(tmp_path):
    path = tmp_path / "out.safetensors"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", _KILLED_SAVE, str(path)], capture_output=True, text=True, env=env)
    assert out.returncode == -9 and "first written" in out.stdout, out.stderr
    left = [p.name for p in tmp_path.iterdir() if p.name != "out.safetensors"]
    assert len(left) == 1 and left[0].startswith(".out.safetensors.rectvit-partial-") and left[0].endswith(".tmp")
    assert torch.equal(rectvit.checkpoint.read_checkpoint(path).state_dict["w"], torch.ones(4))  # intact
    fresh = tmp_path / ".other.safetensors.rectvit-partial-1-abc.tmp"  # pid 1 is alive: a save in progress
    fresh.write_bytes(b"busy")
    ckpt_writer.write_safetensors({"w": torch.full((4,), 2.0)}, tmp_path / "second.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == [fresh.name, "out.safetensors", "second.safetensors"]
    old = time.time() - 2 * 3600
    os.utime(fresh, (old, old))  # abandoned for two hours: stale whoever wrote it
    ckpt_writer.write_safetensors({"w": torch.full((4,), 3.0)}, tmp_path / "third.safetensors")
    assert not fresh.exists()


# ---- reading ----


def test_a_shard_index_naming_a_path_outside_its_folder_is_refused_before_opening_anything(tmp_path, monkeypatch):
    folder = _hf_folder(tmp_path)
    weights = folder / "model.safetensors"
    os.replace(weights, folder / "model-00001-of-00001.safetensors")
    outside = tmp_path / "outside.safetensors"
    save_file({"x": torch.zeros(1)}, str(outside))
    opened = []
    real = ckpt_io._read_safetensors
    monkeypatch.setattr(ckpt_io, "_read_safetensors", lambda p: opened.append(p) or real(p))
    for bad in ("../outside.safetensors", str(outside), "sub/../../outside.safetensors", "config.json"):
        index = {"weight_map": {"a": "model-00001-of-00001.safetensors", "b": bad}}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
        with pytest.raises(CheckpointError, match="refused — shard .* is not a .safetensors file directly inside"):
            rectvit.load_model(folder)
        assert opened == []
    index = {"weight_map": {"a": "model-00001-of-00001.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert rectvit.load_model(folder).grid_size == (4, 2)


@pytest.mark.parametrize(
    "key,value",
    [
        ("pos_embed", lambda t: (t * 1000).to(torch.int32)),
        ("pos_embed", lambda t: t > 0),
        ("blocks.0.attn.qkv.weight", lambda t: t.to(torch.complex64)),
        ("cls_token", lambda t: t.to(torch.int64)),
    ],
)
@pytest.mark.parametrize("via", ["dict", "pth", "safetensors"])
def test_int_bool_complex_tensors_where_floats_belong_are_checkpoint_errors(key, value, via, tmp_path):
    sd, _ = timm_state((4, 4))
    sd[key] = value(sd[key])
    source = sd
    if via == "pth":
        torch.save(sd, tmp_path / "x.pth")
        source = tmp_path / "x.pth"
    elif via == "safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "x.safetensors"))
        source = tmp_path / "x.safetensors"
    with pytest.raises(CheckpointError, match=f"{key} \\(.*\\) must hold real floating-point values"):
        rectvit.load_checkpoint(ours(64), source, source_grid=(4, 4))


def test_integer_buffers_stay_allowed():
    sd, _ = timm_state((4, 4))
    sd["some.relative_position_index"] = torch.zeros(4, 4, dtype=torch.long)
    sd["norm.num_batches_tracked"] = torch.tensor(3)
    ckpt_io.check_dtypes(sd)  # no error: integer buffers are integers


def test_a_text_file_is_not_a_checkpoint_and_unsafe_loading_is_never_suggested(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_text("this is not a checkpoint\n")
    with pytest.raises(CheckpointError, match="not a checkpoint") as info:
        rectvit.load_checkpoint(ours(64), junk)
    assert "weights_only=False" not in str(info.value)
    evil = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "f": os.system}, evil)
    with pytest.raises(CheckpointError, match="refused") as info:
        rectvit.load_checkpoint(ours(64), evil)
    assert "weights_only=False" not in str(info.value) and "`False`" not in str(info.value)
    out = subprocess.run([sys.executable, "-m", "rectvit", "inspect", str(junk)], capture_output=True, text=True)
    assert out.returncode == 2 and "not a checkpoint" in out.stderr and "weights_only=False" not in out.stderr


# ---- configs ----


@pytest.mark.parametrize(
    "edit,needle",
    [
        (lambda c: c.update(image_size=10_000_000), "input size of 10000000x10000000 pixels"),
        (lambda c: c.update(image_size=[64, 10_000_000]), "input size of 64x10000000 pixels"),
        (lambda c: c.update(image_size="big"), "image_size must be written as 'HxW'"),
        (lambda c: c.update(hidden_size="64"), r"hidden_size must be a positive integer, got '64' \(str\)"),
        (lambda c: c.update(layer_norm_eps="tiny"), "layer_norm_eps must be a number"),
        (lambda c: c.update(num_hidden_layers=1.5), "num_hidden_layers must be a positive integer"),
        (lambda c: c.update(patch_size=None), "patch_size must be an int"),
    ],
)
def test_malformed_or_absurd_hf_config_values_are_checkpoint_errors(tmp_path, edit, needle):
    folder = _hf_folder(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=needle):
        rectvit.load_model(folder)
    assert time.perf_counter() - start < 10  # refused before allocating anything of that size


def test_a_json_list_as_config_is_a_checkpoint_error(tmp_path):
    folder = _hf_folder(tmp_path)
    (folder / "config.json").write_text("[1, 2, 3]")
    with pytest.raises(CheckpointError, match="must hold a JSON object of settings, got a JSON list"):
        rectvit.load_model(folder)


@pytest.mark.parametrize(
    "config",
    [
        {"model_args": {"img_size": 10_000_000}},
        {"pretrained_cfg": {"input_size": [3, 10_000_000, 224]}},
    ],
)
def test_absurd_timm_config_sizes_are_checkpoint_errors(tmp_path, config):
    save_file({"cls_token": torch.zeros(1, 1, 8)}, str(tmp_path / "model.safetensors"))
    config = {"architecture": "vit_small_patch16_224", "num_classes": 10, **config}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="input size of 10000000x"):
        rectvit.load_model(tmp_path)


def test_hf_config_with_sane_values_still_loads(tmp_path):
    folder = _hf_folder(tmp_path)
    model = rectvit.load_model(folder)
    assert model.grid_size == (4, 2) and "recorded" in model.load_report.grid_basis
