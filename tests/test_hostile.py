"""Hostile matrices: writers, dynamic exports, bounded work, messages a person can act on, and what
`rectvit adapt` keeps. Each class states its acceptance rule above its tests; the truths are the bytes
on disk, the eager model (for exports), the clock (for bounded work) and the checkpoint's own tensors.
"""

import json
import os
import re
import time

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import rectvit
from helpers import randomize_
from rectvit import CheckpointError, InputSizeError, RectViTError
from rectvit.checkpoint.writer import TEMP_MARK, write_atomic
from rectvit.cli import main
from rectvit.export import _fixed_onnx_axes, check_dynamic, check_sizes, export_onnx, export_program, size_rule

timm = pytest.importorskip("timm", reason="timm is the oracle; `make test` installs it")

TINY = dict(depth=1, embed_dim=32, num_heads=2, num_classes=3)
SWIN_TINY = dict(depths=(1, 1), embed_dim=16, num_heads=(1, 2), num_classes=3, window_size=2)


def _tree(root) -> dict[str, bytes | None]:
    """Every entry under ``root`` (folders as None, links by their target), for before/after comparisons."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if os.path.islink(full):
                out[rel] = ("link:" + os.readlink(full)).encode()
            elif os.path.isdir(full):
                out[rel] = None
            else:
                with open(full, "rb") as f:
                    out[rel] = f.read()
    return out


def _hf_folder(root, name="hf", **cfg):
    """A sharded HF save_pretrained folder (index + shards + config.json) with a README beside it."""
    transformers = pytest.importorskip("transformers")
    settings = dict(
        image_size=32, patch_size=16, num_labels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64,
    )  # fmt: skip
    config = transformers.ViTConfig(**{**settings, **cfg})
    folder = root / name
    randomize_(transformers.ViTForImageClassification(config)).save_pretrained(folder, max_shard_size="20KB")
    (folder / "README.md").write_text("weights for a test\n")
    return folder


# ==================================================================================================
# 1. No writer replaces what a model was loaded from.
# Acceptance rule: for every writer (save_checkpoint, export_program(path=), export_onnx, CLI adapt and
# export) and every spelling of any file of the loaded source (HF folder: shards, index, config.json, a
# README, a new name inside it; a single file; relative, absolute and `..` spellings; a symbolic link to
# the file or to its folder; a hard link; the link the model was loaded through), the write is refused
# with a CheckpointError (CLI: exit 2, one line) and every byte and entry under the test folder is as it was.


def _writers():
    return {
        "save_checkpoint": lambda model, src, out: rectvit.save_checkpoint(model, out),
        "export_program": lambda model, src, out: export_program(model, dynamic=False, path=out),
        "export_onnx": lambda model, src, out: export_onnx(model, out, dynamic=False),
        "cli adapt": lambda model, src, out: main(["adapt", str(src), "--img-size", "32x32", "-o", str(out)]),
        "cli export": lambda model, src, out: main(["export", str(src), "-o", str(out)]),
    }


def _hf_targets(tmp_path, folder):
    shard = sorted(folder.glob("model-*.safetensors"))[0]
    os.symlink(shard, tmp_path / "link.safetensors")
    os.symlink(folder, tmp_path / "linkdir")
    os.link(shard, tmp_path / "hard.safetensors")
    return {
        "shard, absolute": shard,
        "shard, relative": os.path.relpath(shard),
        "index": folder / "model.safetensors.index.json",
        "config.json": "hf/config.json",
        "README": folder / "README.md",
        "a new name in the folder": "hf/new.safetensors",
        "the folder itself": "hf",
        "dot-dot spelling": "hf/nowhere/../config.json",
        "symbolic link to a shard": tmp_path / "link.safetensors",
        "through a link to the folder": "linkdir/model.onnx",
        "hard link to a shard": "hard.safetensors",
    }


@pytest.mark.parametrize("writer", list(_writers()))
def test_no_writer_replaces_any_file_of_the_hf_folder_a_model_was_loaded_from(writer, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    folder = _hf_folder(tmp_path)
    model = rectvit.load_model(folder)
    assert {os.path.abspath(p) for p in folder.iterdir()} <= set(model.source_files)  # it records every file
    targets = _hf_targets(tmp_path, folder)
    before = _tree(tmp_path)
    capsys.readouterr()  # transformers' progress bars
    for label, target in targets.items():
        if writer.startswith("cli"):
            assert _writers()[writer](model, folder, target) == 2, label
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and "refusing to overwrite" in err and TEMP_MARK not in err, (label, err)
        else:
            with pytest.raises(CheckpointError, match="refusing to overwrite") as info:
                _writers()[writer](model, folder, target)
            assert TEMP_MARK not in str(info.value), label
        assert _tree(tmp_path) == before, label


@pytest.mark.parametrize("writer", list(_writers()))
def test_no_writer_replaces_the_single_file_a_model_was_loaded_from(writer, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    source = rectvit.save_checkpoint(
        rectvit.create_model("vit_small_patch16_224", img_size=32, **TINY), "w.safetensors"
    )
    os.symlink("w.safetensors", tmp_path / "via.safetensors")
    model = rectvit.load_model("via.safetensors")  # loaded through a link
    os.link(source, tmp_path / "hard.onnx")
    targets = {
        "the link it was loaded through": "via.safetensors",
        "the file behind the link": source,
        "absolute": tmp_path / "w.safetensors",
        "dot spelling": "./w.safetensors",
        "dot-dot spelling": "sub/../w.safetensors",
        "hard link": "hard.onnx",
        "source_path": model.source_path,
    }
    before = _tree(tmp_path)
    for label, target in targets.items():
        if writer.startswith("cli"):
            assert _writers()[writer](model, "via.safetensors", target) == 2, label
            assert "refusing to overwrite" in capsys.readouterr().err, label
        else:
            with pytest.raises(CheckpointError, match="refusing to overwrite"):
                _writers()[writer](model, "via.safetensors", target)
        assert _tree(tmp_path) == before, label


def test_the_guard_covers_every_load_into_a_model(tmp_path):
    first = rectvit.save_checkpoint(
        rectvit.create_model("vit_small_patch16_224", img_size=32, **TINY), tmp_path / "a.safetensors"
    )
    second = rectvit.save_checkpoint(rectvit.load_model(first), tmp_path / "b.safetensors")
    model = rectvit.create_model("vit_small_patch16_224", img_size=32, checkpoint_path=first, **TINY)
    rectvit.load_checkpoint(model, second)
    for target in (first, second):
        with pytest.raises(CheckpointError, match="refusing to overwrite"):
            rectvit.save_checkpoint(model, target)


# ==================================================================================================
# 2. Writes are atomic, follow the umask, and never name a temporary.
# Acceptance rule: under umask u, every writer's file has mode 0o666 & ~u (what a plain new file gets),
# the folder holds only the written file afterwards, and a failed write leaves the previous file and
# an error naming the real path, never the temporary.


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda u: os.umask(u)
    os.umask(old)


def test_every_writer_follows_the_umask(tmp_path, umask, one_thread):
    pytest.importorskip("onnxscript", reason="the `export` extra; `make test` installs it")
    model = randomize_(rectvit.create_model("vit_small_patch16_224", img_size=32, **TINY)).eval()
    program = export_program(model, dynamic=False)
    writers = {
        "m.safetensors": lambda p: rectvit.save_checkpoint(model, p),
        "m.pt2": lambda p: export_program(model, dynamic=False, path=p),
        "m.onnx": lambda p: export_onnx(model, p, dynamic=False, program=program),
    }
    for mask in (0o022, 0o077):
        umask(mask)
        folder = tmp_path / f"u{mask:o}"
        for name, write in writers.items():
            write(folder / name)
            assert (folder / name).stat().st_mode & 0o777 == 0o666 & ~mask, (name, oct(mask))
        assert sorted(p.name for p in folder.iterdir()) == sorted(writers)


def test_a_failed_write_keeps_the_old_file_and_names_the_real_path(tmp_path):
    path = tmp_path / "out.onnx"
    path.write_bytes(b"old")

    def full_disk(tmp):
        tmp.write_bytes(b"half")
        raise OSError(28, "No space left on device", str(tmp))

    with pytest.raises(OSError) as info:
        write_atomic(path, full_disk)
    assert info.value.filename == str(path) and TEMP_MARK not in str(info.value)

    def bad(tmp):
        raise RectViTError("refused: differs")

    with pytest.raises(RectViTError):
        write_atomic(path, lambda tmp: tmp.write_bytes(b"new"), verify=bad)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.onnx"]


def test_the_cli_checks_the_output_before_exporting(tmp_path, capsys):
    (tmp_path / "file").write_bytes(b"x")
    cases = {
        str(tmp_path / "file" / "m.onnx"): "is a file, not a folder",
        str(tmp_path): "is a folder",
        str(tmp_path / "m.safetensors"): "ending in .onnx",
    }
    for out, needle in cases.items():
        start = time.process_time()
        assert main(["export", "vit_base_patch16_224", "-o", out, "--dynamic"]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1 and time.process_time() - start < 2, (out, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# ==================================================================================================
# 3. A dynamic export is dynamic in fact, or refused.
# Acceptance rule: a dynamic export either equals the eager model (<= 1e-4 x max(1, |y|)) at every unseen
# size it is checked at (a non-square grid, the smallest side — one patch for ONNX — and extreme ratios)
# and at further unseen sizes this test adds, or raises RectViTError and writes nothing.

DYNAMIC = {
    "vit": ("vit_small_patch16_224", dict(img_size=(64, 48), reg_tokens=1, **TINY)),
    "hybrid": ("vit_tiny_r_s16_p8_224", dict(img_size=(64, 96), padding_same=False, **TINY)),
    "clip": ("vit_base_patch16_clip_224", dict(img_size=(64, 48), **TINY)),
    "siglip": ("vit_base_patch16_siglip_224", dict(img_size=(64, 48), **TINY)),
    "swin": ("swin_tiny_patch4_window7_224", dict(img_size=(64, 96), **SWIN_TINY)),
    "swinv2_cr": ("swinv2_cr_tiny_224", dict(img_size=(64, 96), **SWIN_TINY)),
}
NOT_DYNAMIC = {
    "eva02": ("eva02_small_patch14_224", dict(img_size=(56, 42), **TINY)),
    "rope": ("vit_base_patch16_rope_224", dict(img_size=(64, 48), **TINY)),
    "rope_mixed": ("vit_base_patch16_rope_mixed_224", dict(img_size=(64, 48), **TINY)),
    "dinov3": ("vit_base_patch16_dinov3", dict(img_size=(64, 48), **TINY)),
    "beit": ("beit_base_patch16_224", dict(img_size=(64, 48), **TINY)),
}


def _dynamic(name, kw):
    model = rectvit.create_model(name, dynamic_img_size=True, **kw)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)  # large enough that a wrong position table shows in the logits
    return model.eval()


def _agrees(model, run, sizes):
    for i, size in enumerate(sizes):
        x = torch.randn(1 + i % 2, model.in_chans, *size)
        with torch.no_grad():
            want = model(x)
            got = run(x)
        assert (got - want).abs().max().item() <= 1e-4 * max(1.0, want.abs().max().item()), size


@pytest.mark.parametrize("family", list(DYNAMIC))
def test_dynamic_exports_that_hold_are_written(family, tmp_path, one_thread):
    model = _dynamic(*DYNAMIC[family])
    rule = size_rule(model)
    program = export_program(model, path=tmp_path / "m.pt2")
    further = [(rule.height.size(4), rule.width.size(3)), (rule.height.size(2), rule.width.size(9))]
    _agrees(model, torch.export.load(tmp_path / "m.pt2").module(), further)
    if family in ("clip", "siglip"):  # ViT and hybrid ONNX: tests/test_deploy.py
        ort = pytest.importorskip("onnxruntime", reason="the `export` extra; `make test` installs it")
        info = export_onnx(model, tmp_path / "m.onnx", program=program)
        assert info.dynamic and len(info.checked) == 4 and min(min(s) for s in info.checked) == 16  # one patch
        assert "(B, 3, H, W)" in str(info) and not re.search(r"\bs\d+\b", str(info))  # no torch symbols
        session = ort.InferenceSession(str(info.path), providers=["CPUExecutionProvider"])
        _agrees(model, lambda x: torch.from_numpy(session.run(None, {"pixel_values": x.numpy()})[0]), further)


@pytest.mark.parametrize("family", list(NOT_DYNAMIC))
def test_dynamic_exports_that_do_not_hold_are_refused(family, tmp_path, one_thread):
    model = _dynamic(*NOT_DYNAMIC[family])
    with pytest.raises(RectViTError, match="refused") as info:
        export_program(model, path=tmp_path / "m.pt2")
    assert "export it statically" in str(info.value).lower()
    if family in ("eva02", "beit"):
        pytest.importorskip("onnxscript", reason="the `export` extra; `make test` installs it")
        with pytest.raises(RectViTError, match="refused"):
            export_onnx(model, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_the_check_refuses_a_run_that_differs_or_fails_at_any_checked_size():
    model = _dynamic(*DYNAMIC["vit"])
    rule = size_rule(model)
    sizes = check_sizes(rule, (64, 48), one_patch=True)
    check_dynamic(model, model, sizes, "program", (64, 48))  # the model itself holds
    for bad in sizes:

        def off(x, bad=bad):
            y = model(x)
            return y + 0.01 if tuple(x.shape[-2:]) == bad else y

        with pytest.raises(RectViTError, match=f"does not hold at {bad[0]}x{bad[1]}.*differs by 0.01"):
            check_dynamic(model, off, sizes, "program", (64, 48))

    def guard(x):
        raise AssertionError("Guard failed")

    with pytest.raises(RectViTError, match="fails \\(AssertionError\\)"):
        check_dynamic(model, guard, sizes, "program", (64, 48))


@pytest.mark.parametrize("seen", [(48, 80), (16, 64), (32, 32)])
def test_checked_sizes_are_unseen_non_square_one_patch_and_extreme(seen):
    rule = size_rule(_dynamic(*DYNAMIC["vit"]))
    for one_patch in (True, False):
        sizes = check_sizes(rule, seen, one_patch=one_patch)
        assert seen not in sizes and any(h != w for h, w in sizes)
        assert max(max(h / w, w / h) for h, w in sizes) >= 6
        assert min(min(s) for s in sizes) == (16 if one_patch else 32)
        assert all(rule.accepts(s) for s in sizes) or one_patch


@pytest.mark.parametrize(
    "shape,fixed",
    [
        (("s77", 3, "16*s24", "16*s78"), []),
        (("s77", 3, "56", "42"), ["height", "width"]),  # names that are numbers: fixed in fact
        ((2, 3, 224, 224), ["batch", "height", "width"]),
        (("batch", 3, "10*s1 + 6", 224), ["width"]),
    ],
)
def test_fixed_onnx_axes_include_number_names(shape, fixed):
    assert _fixed_onnx_axes(shape) == fixed


# ==================================================================================================
# 4. Bounded work before trusting a file or a size.
# Acceptance rule: a recorded config that claims a depth or width its tensors do not have is a
# CheckpointError naming the claim within 2 s, whatever the format (ours, timm's, HF's); an absurd size
# given to create_model, set_input_size or `adapt --img-size` is a RectViTError within 2 s that changes
# nothing. Each format's unmodified file loads (the check refuses only what is wrong). Time is this
# process's CPU time, which other jobs on a shared machine do not inflate (building a claimed depth of
# 10^6 takes minutes of it).


def _rectvit_file(tmp_path, edit):
    path = rectvit.save_checkpoint(
        rectvit.create_model("vit_small_patch16_224", img_size=32, **TINY), tmp_path / "r.safetensors"
    )
    with safe_open(str(path), "pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    config = json.loads(meta["config"])
    edit(config, "rectvit")
    save_file(tensors, str(path), metadata={**meta, "config": json.dumps(config)})
    return path


def _timm_folder(tmp_path, edit):
    ref = timm.create_model("vit_small_patch16_224", img_size=32, **TINY)
    folder = tmp_path / "timm"
    folder.mkdir()
    save_file(ref.state_dict(), str(folder / "model.safetensors"))
    config = {"architecture": "vit_small_patch16_224", "num_classes": 3, "model_args": dict(img_size=32, **TINY)}
    edit(config["model_args"], "timm")
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _hf_config_folder(tmp_path, edit):
    folder = _hf_folder(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    edit(config, "hf")
    (folder / "config.json").write_text(json.dumps(config))
    return folder


_KEYS = {
    "depth": {"rectvit": "depth", "timm": "depth", "hf": "num_hidden_layers"},
    "width": {"rectvit": "embed_dim", "timm": "embed_dim", "hf": "hidden_size"},
    "mlp": {"rectvit": "mlp_ratio", "timm": "mlp_ratio", "hf": "intermediate_size"},
}
_CLAIMS = {
    "depth": (10**6, "depth=1000000|num_hidden_layers|1000000 blocks|depth"),
    "width": (2**20, "shapes differ"),
    "mlp": (10**5, "shapes differ"),
}


@pytest.mark.parametrize("fmt", [_rectvit_file, _timm_folder, _hf_config_folder], ids=["rectvit", "timm", "hf"])
@pytest.mark.parametrize("claim", [None, *_CLAIMS])
def test_a_recorded_config_is_checked_against_the_tensors_before_building(fmt, claim, tmp_path):
    def edit(config, kind):
        if claim is not None:
            value = _CLAIMS[claim][0]
            config[_KEYS[claim][kind]] = value * 64 if (kind == "hf" and claim == "mlp") else value

    path = fmt(tmp_path, edit)
    if claim is None:
        assert rectvit.load_model(path).num_classes == 3  # the unmodified file loads
        return
    start = time.process_time()
    with pytest.raises(CheckpointError, match="does not describe these weights"):
        rectvit.load_model(path)
    assert time.process_time() - start < 2


FAMILIES = {
    "vit": ("vit_small_patch16_224", TINY),
    "hybrid": ("vit_tiny_r_s16_p8_224", TINY),
    "eva02": ("eva02_small_patch14_224", TINY),
    "beit": ("beit_base_patch16_224", TINY),
    "swin": ("swin_tiny_patch4_window7_224", SWIN_TINY),
    "swinv2": ("swinv2_tiny_window8_256", SWIN_TINY),
    "swinv2_cr": DYNAMIC["swinv2_cr"],
}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("size", [(10**6, 10**6), (2_000_000, 64), (20_000, 20_000)])
def test_absurd_sizes_are_refused_before_allocating(family, size):
    name, kw = FAMILIES[family]
    kw = {**kw, "img_size": 64}
    model = rectvit.create_model(name, **kw)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    start = time.process_time()
    with pytest.raises(InputSizeError, match="beyond what rectvit builds a model for"):
        model.set_input_size(img_size=size)
    with pytest.raises(InputSizeError, match="beyond"):
        rectvit.create_model(name, **{**kw, "img_size": size})
    assert time.process_time() - start < 2
    assert model.img_size == (64, 64) and all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_adapt_refuses_an_absurd_size_in_one_line(tmp_path, capsys):
    path = rectvit.save_checkpoint(
        rectvit.create_model("vit_small_patch16_224", img_size=32, **TINY), tmp_path / "r.safetensors"
    )
    with pytest.raises(SystemExit) as info:
        main(["adapt", str(path), "--img-size", "100000x100000", "-o", str(tmp_path / "o.safetensors")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert "beyond what rectvit builds" in err and not (tmp_path / "o.safetensors").exists()


# ==================================================================================================
# 5. Messages a person can act on.
# Acceptance rules: a near-miss name's intended name is the first suggestion; a non-bool given for a flag
# is a RectViTError naming the flag, before anything is built; a bad list_models argument is a
# RectViTError; every CLI usage error is one line on stderr with where to look (no usage block); a link
# loop or a dangling link is named as such; an unused --source-grid / --source-window is said so.


@pytest.mark.parametrize(
    "given,meant",
    [
        ("vit_tiny_patch16", "vit_tiny_patch16_224"),
        ("VIT_TINY_PATCH16_224", "vit_tiny_patch16_224"),
        ("vit-tiny-patch16-224", "vit_tiny_patch16_224"),
        ("Swin-Tiny-Patch4-Window7-224", "swin_tiny_patch4_window7_224"),
        ("vit_small_patch16_244", "vit_small_patch16_224"),
        ("deit_small_patch16", "deit_small_patch16_224"),
        ("eva02_small", "eva02_small_patch14_224"),
        ("vit_base_patch16_clip", "vit_base_patch16_clip_224"),
    ],
)
def test_near_miss_names_suggest_the_intended_name_first(given, meant):
    with pytest.raises(RectViTError, match="unknown model") as info:
        rectvit.create_model(given)
    text = str(info.value)
    first = (
        text.split("[")[1].split(",")[0].strip(" '") if "[" in text else text.split("did you mean ")[1].split("?")[0]
    )
    assert first.strip("'") == meant, text


def _flags(cls):
    from rectvit.models.registry import _parameters

    return sorted(k for k, p in _parameters(cls).items() if isinstance(p.default, bool))


@pytest.mark.parametrize("name,kw", [FAMILIES["vit"], FAMILIES["swin"]], ids=["vit", "swin"])
@pytest.mark.parametrize("value", ["no", "False", 0, 1, 1.0])
def test_non_bools_for_flags_are_refused(name, kw, value):
    flags = _flags(rectvit.models.get_model_entry(name).cls)
    assert "dynamic_img_size" in flags
    for flag in flags:
        with pytest.raises(RectViTError, match=f"{flag} must be True or False, got {value!r}"):
            rectvit.create_model(name, **{**kw, flag: value})
    for flag in ("strict", "features_only", "pretrained"):
        with pytest.raises(RectViTError, match=f"{flag} must be True or False"):
            rectvit.create_model(name, **{flag: value}, **kw)
    assert rectvit.create_model(name, dynamic_img_size=False, **kw).dynamic_img_size is False


def test_load_model_refuses_a_non_bool_flag(tmp_path):
    path = rectvit.save_checkpoint(
        rectvit.create_model("vit_small_patch16_224", img_size=32, **TINY), tmp_path / "r.safetensors"
    )
    with pytest.raises(RectViTError, match="dynamic_img_size must be True or False, got 'no'"):
        rectvit.load_model(path, dynamic_img_size="no")


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(filter=123),
        dict(filter=[1]),
        dict(filter=b"vit_*"),
        dict(filter={"vit_*": 1}),
        dict(module=3),
        dict(exclude_filters=[None]),
        dict(pretrained="yes"),
        dict(include_tags=1),
        dict(name_matches_cfg="no"),
    ],
)
def test_list_models_refuses_bad_arguments(kwargs):
    with pytest.raises(RectViTError, match="list_models: "):
        rectvit.list_models(**kwargs)
    assert rectvit.list_models(["vit_tiny*"]) == rectvit.list_models("vit_tiny*") != []


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["adapt", "x.pth"], "required: --img-size, -o/--output"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["adapt", "x.pth", "--img-size", "abc", "-o", "o.safetensors"], "'HxW'"),
        (["adapt", "x.pth", "--img-size", "64", "-o", "o.safetensors", "--num-classes", "-1"], ">= 0"),
        (["adapt", "x.pth", "--img-size", "64", "-o", "o.safetensors", "--in-chans", "0"], ">= 1"),
        (["export", "vit_tiny_patch16_224", "-o", "x.onnx", "--batch", "0"], ">= 1, got '0'"),
        (["export", "vit_tiny_patch16_224", "-o", "x.onnx", "--batch", "-2"], ">= 1"),
        (["export", "vit_tiny_patch16_224", "-o", "x.onnx", "--opset", "11"], "below 18, the lowest"),
        (["inspect", "x.pth", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_cli_usage_errors_are_one_line_with_a_hint(argv, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "usage:" not in err, err
    assert needle in err and "--help` lists the options" in err, err
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_batch_zero_and_low_opsets_in_python_too(tmp_path):
    model = rectvit.create_model("vit_small_patch16_224", img_size=32, **TINY)
    for bad in (0, -1, True, 1.5):
        with pytest.raises(RectViTError, match="batch must be a positive int"):
            export_program(model, dynamic=False, batch=bad)
    pytest.importorskip("onnx", reason="the `export` extra; `make test` installs it")
    for bad in (7, 11, 17, 10_000):
        with pytest.raises(RectViTError, match="opset must be an int from 18"):
            export_onnx(model, tmp_path / "m.onnx", dynamic=False, opset=bad)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["inspect", "adapt", "export", "plot"])
def test_link_loops_and_dangling_links_are_named(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    os.symlink("b.safetensors", "a.safetensors")
    os.symlink("a.safetensors", "b.safetensors")
    os.symlink("gone.safetensors", "dangling.safetensors")
    extra = {"inspect": [], "adapt": ["--img-size", "32", "-o", "o.safetensors"], "export": ["-o", "o.onnx"]}
    extra["plot"] = ["-o", "o.png"]
    for source, needle in (
        ("a.safetensors", "a loop of symbolic links"),
        ("dangling.safetensors", "a symbolic link to gone.safetensors, which does not exist"),
    ):
        assert main([command, source, *extra[command]]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
    with pytest.raises(CheckpointError, match="a loop of symbolic links"):
        rectvit.load_model("a.safetensors")


def test_adapt_says_which_arguments_were_unused_and_how_to_tile(tmp_path, capsys):
    path = rectvit.save_checkpoint(
        rectvit.create_model("vit_small_patch16_224", img_size=32, **TINY), tmp_path / "r.safetensors"
    )
    out = tmp_path / "o.safetensors"
    argv = ["adapt", str(path), "--img-size", "40x56", "--source-grid", "2x2", "--source-window", "7x7", "-o", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "note: --source-grid was unused" in printed and "stored 2-D table" in printed
    assert "note: --source-window was unused" in printed
    assert "--img-size 32x48 or 48x64 is tiled exactly" in printed and "dynamic_img_pad" not in printed


# ==================================================================================================
# 6. `rectvit adapt` keeps what the checkpoint records.
# Acceptance rule: the written model has the checkpoint's classes and input channels unless
# --num-classes / --in-chans ask otherwise, and the printed lines say which (never a silent change);
# --model may be left out when the file records its architecture.


def _sources(tmp_path):
    ours = rectvit.create_model("vit_small_patch16_224", img_size=32, in_chans=1, **{**TINY, "num_classes": 10})
    hf = _hf_folder(tmp_path, num_channels=1, num_labels=10)
    ref = randomize_(timm.create_model("vit_tiny_patch16_224", in_chans=1, num_classes=10))
    torch.save(ref.state_dict(), tmp_path / "timm.pth")
    return {
        "rectvit": ([str(rectvit.save_checkpoint(ours, tmp_path / "ours.safetensors"))], 32),
        "hf": ([str(hf)], 32),
        "timm + --model": (
            [str(tmp_path / "timm.pth"), "--model", "vit_tiny_patch16_224", "--source-grid", "14x14"],
            224,
        ),
    }


def test_adapt_keeps_classes_and_channels_unless_asked(tmp_path, capsys):
    for label, (source, size) in _sources(tmp_path).items():
        for ask, want in (([], (10, 1)), (["--num-classes", "5"], (5, 1)), (["--in-chans", "3"], (10, 3))):
            out = tmp_path / f"{label.split()[0]}-{len(ask) and ask[0]}.safetensors"
            assert main(["adapt", *source, "--img-size", f"{size}x{size // 2}", *ask, "-o", str(out)]) == 0, label
            printed = capsys.readouterr().out
            model = rectvit.load_model(out)
            assert (model.num_classes, model.in_chans) == want, (label, ask)
            classes = "classes: 10 -> 5" if want[0] == 5 else "classes: 10, as in the checkpoint"
            chans = "input channels: 1 -> 3" if want[1] == 3 else "input channels: 1, as in the checkpoint"
            assert classes in printed and chans in printed, (label, ask, printed)
