"""Pretrained weights as timm users get them: ``create_model("arch.tag", pretrained=True)``, ``hf-hub:`` names,
huggingface_hub's cache, offline mode, and every failure as a clear ``RectViTError``.

No test here touches the network: a Hugging Face cache is built in a temporary folder (the
``models--org--name/{blobs,snapshots,refs}`` layout huggingface_hub reads), ``HF_HUB_OFFLINE`` is on
(``offline`` fixture), and every socket connection attempt is recorded and fails the test (``no_network``,
used by every test here; the subprocess test installs its own). timm's own
``create_model(..., pretrained=True)`` on the same cache, and HF transformers models saved into it, are the
oracles (max abs difference <= 1e-5, float32).
"""

import hashlib
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from timm.models import get_pretrained_cfg

import rectvit
from helpers import randomize_, tiny
from rectvit.models.pretrained_cfgs import known_tags
from rectvit.models.pretrained_tags import HUB_TAGS, TAGS

pytest.importorskip("huggingface_hub", reason="the `hub` extra; `make test` installs it")
import huggingface_hub  # noqa: E402
import huggingface_hub.constants  # noqa: E402  (submodules huggingface_hub loads lazily)
import huggingface_hub.errors  # noqa: E402

TOL = 1e-5
ROOT = Path(__file__).resolve().parents[1]


# ---- an offline hub cache ----


def put_repo(cache: Path, repo: str, files: dict[str, bytes], revision: str = "main", commit: str | None = None) -> str:
    """Files as huggingface_hub caches them: blobs named by their checksum (sha256 for weights, as LFS files;
    git's blob sha1 for JSON), snapshot links per commit, and ``refs/<revision>``. Returns the commit."""
    root = cache / f"models--{repo.replace('/', '--')}"
    commit = commit or hashlib.sha1(f"{repo}@{revision}".encode()).hexdigest()
    for name, data in files.items():
        if name.endswith(".json"):
            digest = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        else:
            digest = hashlib.sha256(data).hexdigest()
        blob = root / "blobs" / digest
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = root / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / revision).write_text(commit)
    return commit


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def put_timm(cache: Path, tmp_path: Path, model: torch.nn.Module, repo: str) -> None:
    """A timm model as ``push_to_hub`` uploads it (``save_for_hf``: config.json + model.safetensors)."""
    folder = tmp_path / repo.replace("/", "--")
    timm.models.save_for_hf(model, folder, safe_serialization=True)
    put_repo(cache, repo, folder_files(folder))


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every socket connection attempt is recorded and refused; a test of this module fails if there was one."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield attempts
    assert not attempts, f"the test tried to reach the network: {attempts[:3]}"


@pytest.fixture
def offline(monkeypatch, tmp_path, no_network):
    """``HF_HUB_OFFLINE`` on, huggingface_hub's cache in ``tmp_path / "hub"``, no network."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_the_guard_sees_a_connection(no_network):
    with pytest.raises(OSError, match="network access"):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    with socket.socket() as sock, pytest.raises(OSError, match="network access"):
        sock.connect(("127.0.0.1", 9))
    assert len(no_network) == 2
    no_network.clear()


# ---- timm's tags: the same repository and file as timm, for every tag ----


class _Missing(Exception):
    pass


def _timm_downloads(name: str, monkeypatch) -> list[tuple]:
    """The (repo, filename, revision) timm's pretrained loading asks huggingface_hub for, each answered
    'not there', and the source kind timm resolves."""
    from timm.models import _builder, _hub

    calls = []

    def fake(repo_id, filename, revision=None, cache_dir=None, **kw):
        calls.append((repo_id, filename, revision))
        raise huggingface_hub.errors.LocalEntryNotFoundError("absent")

    monkeypatch.setattr(_hub, "hf_hub_download", fake)
    load_from, loc = _builder._resolve_pretrained_source(get_pretrained_cfg(name).to_dict())
    if load_from != "hf-hub":
        return [load_from]
    with pytest.raises(huggingface_hub.errors.LocalEntryNotFoundError):
        _hub.load_state_dict_from_hf(*loc) if isinstance(loc, tuple) else _hub.load_state_dict_from_hf(loc)
    return ["hf-hub", *calls]


def _our_downloads(name: str, monkeypatch) -> list[tuple]:
    from rectvit.checkpoint.pretrained import pretrained_weights
    from rectvit.models.pretrained_cfgs import pretrained_cfg_for

    calls = []

    def fake(repo_id, filename, revision=None, cache_dir=None, **kw):
        calls.append((repo_id, filename, revision))
        raise huggingface_hub.errors.LocalEntryNotFoundError("absent")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    arch, _, tag = name.partition(".")
    try:
        pretrained_weights(pretrained_cfg_for(arch, tag))
    except rectvit.CheckpointError as e:
        if not calls:
            return ["none" if "no pretrained weights" in str(e) else "url"]
    return ["hf-hub", *calls]


def test_every_tag_resolves_to_timms_repository_and_file(monkeypatch):
    """For every tag timm has for a rectvit name: the same source kind, and (hub weights) the same files asked
    for in the same order (model.safetensors before pytorch_model.bin) from the same repository and revision."""
    names = [f"{arch}.{tag}" for arch in TAGS for tag in known_tags(arch)]
    hub = 0
    for name in names + list(TAGS):  # bare names: the default tag's weights
        theirs = _timm_downloads(name, monkeypatch)
        ours = _our_downloads(name, monkeypatch)
        assert ours == (theirs if theirs[0] == "hf-hub" else ["none"]), name
        hub += theirs[0] == "hf-hub" and "." in name
    assert hub == HUB_TAGS == len(rectvit.list_pretrained())
    assert hub > 250  # timm 1.0.31: 279 of 295 tags


def test_list_pretrained_is_timms():
    ours = set(rectvit.list_models())

    def theirs(**kw):
        return [n for n in timm.list_models(**kw) if n.split(".")[0] in ours]

    for kw in (
        dict(pretrained=True),
        dict(pretrained=True, include_tags=False),
        dict(pretrained=True, filter="vit_*clip*"),
        dict(pretrained=True, filter="swinv2_cr*"),
    ):
        assert rectvit.list_models(**kw) == theirs(**kw), kw
    assert rectvit.list_pretrained("deit*") == [n for n in timm.list_pretrained("deit*") if n.split(".")[0] in ours]


# ---- one name per family: timm's pretrained=True on the same cache is the oracle ----

FAMILIES = {
    "vit": "vit_base_patch16_224.augreg2_in21k_ft_in1k",
    "deit": "deit_tiny_distilled_patch16_224.fb_in1k",
    "dinov2": "vit_small_patch14_reg4_dinov2.lvd142m",
    "clip": "vit_base_patch16_clip_224.openai",
    "siglip": "vit_base_patch16_siglip_224.webli",
    "hybrid": "vit_tiny_r_s16_p8_224.augreg_in21k",
    "swin": "swin_tiny_patch4_window7_224.ms_in1k",
    "swinv2": "swinv2_tiny_window8_256.ms_in1k",
    "swinv2_cr": "swinv2_cr_tiny_ns_224.sw_in1k",
    "beit": "beit_base_patch16_224.in22k_ft_in22k_in1k",
    "eva02": "eva02_tiny_patch14_224.mim_in22k",
    "rope": "vit_base_patch16_rope_224.naver_in1k",
    "dinov3": "vit_small_patch16_dinov3.lvd1689m",
}
SWIN = ("swin", "swinv2", "swinv2_cr")


def _small(name: str) -> dict:
    kw = tiny(name.partition(".")[0], sized=False)
    if "depth" in kw:
        kw["depth"] = 2
    return kw


def _sizes(name: str, cfg_size: tuple[int, int]) -> list[tuple[int, int]]:
    """Other sizes the architecture takes: for Swin twice the width (windows fit); else 3/4 x 5/4 and 1/2 x 1 of the
    tag's size in whole tokens."""
    h, w = cfg_size
    if name.startswith("swin"):
        return [(h, 2 * w)]
    model = rectvit.create_model(name, img_size=(h, w), **_small(name))
    m = h // model.grid_size[0]  # pixels per token (the hybrid's backbone reduces before its patches)
    return [((h // m * 3 // 4) * m, (w // m * 5 // 4) * m), ((h // m // 2) * m, w)]


def _out(model, x):
    with torch.no_grad():
        return model.eval()(x)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_pretrained_equals_timms_on_the_same_cache(family, offline, tmp_path, one_thread):
    name = FAMILIES[family]
    arch = name.partition(".")[0]
    small = _small(name)
    source = randomize_(timm.create_model(name, **small), seed=3)
    put_timm(offline, tmp_path, source, f"timm/{name}")
    c, h, w = get_pretrained_cfg(name).input_size

    theirs = timm.create_model(name, pretrained=True, **small)
    ours = rectvit.create_model(name, pretrained=True, **small)
    report = ours.load_report
    assert report.hub.repo_id == f"timm/{name}" and report.hub.filename == "model.safetensors"
    assert report.hub.commit == hashlib.sha1(f"timm/{name}@main".encode()).hexdigest()
    assert f"hf-hub:timm/{name}@{report.hub.commit} model.safetensors" in str(report)
    if getattr(ours, "pos_embed", None) is not None:  # a learned table: the tag's input size records its grid
        assert "recorded" in report.grid_basis and report.source_grid == ours.grid_size
    x = torch.randn(2, c, h, w)
    assert (_out(ours, x) - _out(theirs, x)).abs().max() <= TOL

    # the same weights through hf-hub: (timm's config.json in the repository)
    hub = rectvit.load_model(f"hf-hub:timm/{name}")
    assert hub.load_report.hub.repo_id == f"timm/{name}" and hub.load_report.hub.filename == "model.safetensors"
    assert (_out(hub, x) - _out(ours, x)).abs().max() <= TOL
    via_name = rectvit.create_model(f"hf-hub:timm/{name}", pretrained=True)
    assert (_out(via_name, x) - _out(ours, x)).abs().max() <= TOL

    # other input sizes: adapted by the tag's record, as timm adapts them
    for size in _sizes(arch, (h, w))[:1]:
        theirs = timm.create_model(name, pretrained=True, img_size=size, **small)
        ours = rectvit.create_model(name, pretrained=True, img_size=size, **small)
        x = torch.randn(1, c, *size)
        assert (_out(ours, x) - _out(theirs, x)).abs().max() <= TOL
    if family in SWIN or family == "beit":  # timm builds neither with dynamic_img_size
        return
    # dynamic: any size per forward
    theirs = timm.create_model(name, pretrained=True, dynamic_img_size=True, **small)
    ours = rectvit.create_model(name, pretrained=True, dynamic_img_size=True, **small)
    for size in _sizes(arch, (h, w)):
        x = torch.randn(1, c, *size)
        assert (_out(ours, x) - _out(theirs, x)).abs().max() <= TOL, size


# ---- HF transformers repositories through hf-hub: (the HF model is the oracle) ----

HF_SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
RECT = dict(image_size=(64, 48))  # HF's CLIP, SigLIP and BEiT take square configs only
# repository: (transformers model class, its config class, config keywords, what is compared)
HF_REPOS = {
    "google/vit-base-patch16-224": ("ViTForImageClassification", "ViTConfig", dict(num_labels=5, **RECT), "logits"),
    "facebook/deit-tiny-distilled-patch16-224": (
        "DeiTForImageClassificationWithTeacher", "DeiTConfig", dict(num_labels=4, **RECT), "logits",
    ),
    "MIT/ast-finetuned-audioset-10-10-0.4593": (
        "ASTForAudioClassification", "ASTConfig", dict(num_mel_bins=32, max_length=40, num_labels=3), "audio",
    ),
    "openai/clip-vit-base-patch16": (
        "CLIPVisionModelWithProjection", "CLIPVisionConfig", dict(image_size=64, projection_dim=8), "image_embeds",
    ),
    "google/siglip-base-patch16-224": ("SiglipVisionModel", "SiglipVisionConfig", dict(image_size=64), "pooler_output"),
    "microsoft/beit-base-patch16-224": (
        "BeitForImageClassification", "BeitConfig", dict(image_size=64, num_labels=5, use_relative_position_bias=True),
        "logits",
    ),
}  # fmt: skip


def _hf_and_ours(hf, model, config, output: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The HF model's output and ours on one random input (AST: HF's (B, frames, mel), ours (B, 1, mel, frames))."""
    with torch.no_grad():
        if output == "audio":
            spec = torch.randn(2, config.max_length, config.num_mel_bins)
            return hf(spec).logits, model(spec.transpose(1, 2).unsqueeze(1))
        size = config.image_size if isinstance(config.image_size, tuple) else (config.image_size,) * 2
        x = torch.randn(2, 3, *size)
        if output == "pooler_output":
            return hf(pixel_values=x).pooler_output, model.forward_head(model.forward_features(x), pre_logits=True)
        return getattr(hf(pixel_values=x), output), model(x)


@pytest.mark.parametrize("repo", sorted(HF_REPOS))
def test_hf_repository_through_hf_hub(repo, offline, tmp_path, one_thread):
    transformers = pytest.importorskip("transformers", reason="HF transformers is the oracle")
    model_cls, config_cls, kwargs, output = HF_REPOS[repo]
    config = getattr(transformers, config_cls)(**kwargs, **HF_SMALL)
    hf = randomize_(getattr(transformers, model_cls)(config), seed=7).eval()
    hf.save_pretrained(tmp_path / "saved")
    put_repo(offline, repo, folder_files(tmp_path / "saved"))
    model = rectvit.load_model(f"hf-hub:{repo}").eval()
    assert model.load_report.hub.repo_id == repo and model.load_report.layout.startswith("hf-")
    theirs, ours = _hf_and_ours(hf, model, config, output)
    assert (ours - theirs).abs().max() <= TOL
    again = rectvit.create_model(f"hf-hub:{repo}", pretrained=True).eval()  # timm's spelling: the same weights
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))


# ---- timm's keywords and the record of a named tag ----

VIT = "vit_base_patch16_224.augreg2_in21k_ft_in1k"
VIT_SMALL = dict(depth=2, embed_dim=32, num_heads=2)


def _vit_repo(cache: Path, tmp_path: Path, seed: int = 3, name: str = VIT) -> torch.nn.Module:
    source = randomize_(timm.create_model(name, **VIT_SMALL), seed=seed).eval()
    put_timm(cache, tmp_path / f"s{seed}", source, f"timm/{name}")
    return source


def test_overlay_file_loads_a_local_copy_as_timm(offline, tmp_path):
    source = randomize_(timm.create_model(VIT, **VIT_SMALL), seed=4)
    path = tmp_path / "local.pth"
    torch.save(source.state_dict(), path)
    kw = dict(pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), img_size=(160, 288), **VIT_SMALL)
    theirs = timm.create_model(VIT, **kw)
    ours = rectvit.create_model(VIT, **kw)
    assert ours.load_report.hub is None and "recorded" in ours.load_report.grid_basis
    assert ours.pretrained_cfg["file"] == str(path)
    x = torch.randn(1, 3, 160, 288)
    assert (_out(ours, x) - _out(theirs, x)).abs().max() <= TOL
    sd = {k: v.clone() for k, v in source.state_dict().items()}  # an in-memory state dict, as timm's overlay
    mem = rectvit.create_model(VIT, pretrained=True, pretrained_cfg_overlay=dict(state_dict=sd), **VIT_SMALL)
    assert "state_dict" not in mem.pretrained_cfg  # tensors stay out of the recorded cfg
    with pytest.raises(rectvit.RectViTError, match="not pretrained cfg fields.*file=PATH"):
        rectvit.create_model(VIT, pretrained=True, pretrained_cfg_overlay=dict(path="x"), **VIT_SMALL)


@pytest.mark.parametrize(
    "kw",
    [dict(num_classes=7), dict(in_chans=1), dict(patch_size=8, img_size=(112, 224)), dict(in_chans=5, img_size=96)],
    ids=["num_classes", "in_chans1", "patch_size", "in_chans5"],
)
def test_timm_adaptations_of_pretrained_weights(kw, offline, tmp_path):
    """What timm adapts when the model differs from the tag: a fresh classifier for other classes, summed or
    repeated input channels, and (rectvit's) a PI-resized patch kernel, each equal to timm's result."""
    _vit_repo(offline, tmp_path)
    theirs = timm.create_model(VIT, pretrained=True, **VIT_SMALL, **kw).eval()
    ours = rectvit.create_model(VIT, pretrained=True, **VIT_SMALL, **kw).eval()
    size = kw.get("img_size", 224)
    x = torch.randn(1, kw.get("in_chans", 3), *((size, size) if isinstance(size, int) else size))
    with torch.no_grad():
        if "num_classes" in kw:  # the classifiers are fresh (each library's init): compare what feeds them
            assert ours.num_classes == 7 and "head.weight" in ours.load_report.dropped
            ours_out = ours.forward_head(ours.forward_features(x), pre_logits=True)
            theirs_out = theirs.forward_head(theirs.forward_features(x), pre_logits=True)
        else:
            ours_out, theirs_out = ours(x), theirs(x)
    assert (ours_out - theirs_out).abs().max() <= TOL


def test_pretrained_strict_false_leaves_what_the_weights_lack_at_init(offline, tmp_path):
    source = randomize_(timm.create_model(VIT, **VIT_SMALL), seed=5)
    sd = {k: v for k, v in source.state_dict().items() if k != "blocks.1.norm2.weight"}
    sd["extra.weight"] = torch.ones(3)
    folder = tmp_path / "partial"
    folder.mkdir()
    from safetensors.torch import save_file

    save_file(sd, str(folder / "model.safetensors"))
    put_repo(offline, f"timm/{VIT}", {"model.safetensors": (folder / "model.safetensors").read_bytes()})
    with pytest.raises(rectvit.CheckpointError, match="blocks.1.norm2.weight"):
        rectvit.create_model(VIT, pretrained=True, **VIT_SMALL)
    with pytest.raises(RuntimeError):  # timm refuses too
        timm.create_model(VIT, pretrained=True, **VIT_SMALL)
    fresh = rectvit.create_model(VIT, **VIT_SMALL).state_dict()["blocks.1.norm2.weight"]
    ours = rectvit.create_model(VIT, pretrained=True, pretrained_strict=False, **VIT_SMALL)
    report = ours.load_report
    assert "blocks.1.norm2.weight" in report.missing and "extra.weight" in report.dropped
    assert torch.equal(ours.state_dict()["blocks.1.norm2.weight"], fresh)  # its init (every init is ones)
    theirs = timm.create_model(VIT, pretrained=True, pretrained_strict=False, **VIT_SMALL)
    x = torch.randn(1, 3, 224, 224)
    assert (_out(ours, x) - _out(theirs, x)).abs().max() <= TOL


def test_revisions_and_cache_dir(offline, tmp_path, monkeypatch):
    own = tmp_path / "own_cache"
    main = randomize_(timm.create_model(VIT, **VIT_SMALL), seed=6)
    v2 = randomize_(timm.create_model(VIT, **VIT_SMALL), seed=7)
    for model, revision in ((main, "main"), (v2, "v2")):
        folder = tmp_path / revision
        timm.models.save_for_hf(model, folder, safe_serialization=True)
        put_repo(own, f"timm/{VIT}", folder_files(folder), revision=revision)
    commit = (own / f"models--timm--{VIT}" / "refs" / "v2").read_text()
    x = torch.randn(1, 3, 224, 224)
    for rev in ("v2", commit):
        overlay = dict(hf_hub_id=f"timm/{VIT}@{rev}")
        kw = dict(pretrained=True, pretrained_cfg_overlay=overlay, cache_dir=own, **VIT_SMALL)
        ours = rectvit.create_model(VIT, **kw)
        assert (ours.load_report.hub.revision, ours.load_report.hub.commit) == (rev, commit)
        assert (_out(ours, x) - _out(timm.create_model(VIT, **kw), x)).abs().max() <= TOL
        assert (_out(ours, x) - _out(v2, x)).abs().max() <= TOL
        hub = rectvit.load_model(f"hf-hub:timm/{VIT}@{rev}", cache_dir=own)
        assert hub.load_report.hub.commit == commit and torch.equal(_out(hub, x), _out(ours, x))
    default = rectvit.create_model(VIT, pretrained=True, cache_dir=own, **VIT_SMALL)
    assert (_out(default, x) - _out(main, x)).abs().max() <= TOL
    with pytest.raises(rectvit.CheckpointError, match="not in the cache"):  # HF_HUB_CACHE (offline) is empty
        rectvit.create_model(VIT, pretrained=True, **VIT_SMALL)


def test_a_named_tag_records_the_grid_of_a_checkpoint_path(tmp_path):
    """A flat table from timm with random values: content cannot tell 14x14 from 7x28, the named tag can."""
    name = "vit_base_patch16_224.augreg_in21k"
    source = randomize_(timm.create_model(name, **VIT_SMALL), seed=8).eval()
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    ours = rectvit.create_model(name, checkpoint_path=path, img_size=(96, 320), **VIT_SMALL)
    assert ours.load_report.source_grid == (14, 14)
    assert "recorded" in ours.load_report.grid_basis
    theirs = timm.create_model(name, checkpoint_path=None, img_size=(96, 320), **VIT_SMALL)
    theirs.load_state_dict(
        timm.models.vision_transformer.checkpoint_filter_fn(source.state_dict(), theirs)
    )  # timm's resampling of a square table
    x = torch.randn(1, 3, 96, 320)
    assert (_out(ours, x) - _out(theirs, x)).abs().max() <= TOL
    with pytest.raises(rectvit.AmbiguousGridError):  # no tag named: nothing records the grid
        rectvit.create_model("vit_base_patch16_224", checkpoint_path=path, num_classes=21843, **VIT_SMALL)


def test_a_named_tag_records_the_swin_window_of_a_checkpoint_path(tmp_path):
    """A timm Swin state dict records no window (169 rows: 7x7, 1x85 or 85x1); the named tag's input size does
    (the architecture's windows at 224), so its tables resample from 7x7 to (7, 14) as timm's own filter does."""
    from timm.models.swin_transformer import checkpoint_filter_fn

    name, small = "swin_tiny_patch4_window7_224.ms_in1k", dict(embed_dim=32, depths=(2, 2), num_heads=(2, 4))
    source = randomize_(timm.create_model(name, **small), seed=8).eval()
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    kw = dict(img_size=(224, 448), window_size=(7, 14), **small)
    ours = rectvit.create_model(name, checkpoint_path=path, **kw).eval()
    rows = [r for r in ours.load_report.rows if r[0].endswith("relative_position_bias_table")]
    assert len(rows) == 4 and all("7x7 -> 7x14" in r[3] and r[4] == "window recorded in the checkpoint" for r in rows)
    theirs = timm.create_model(name, **kw).eval()
    theirs.load_state_dict(checkpoint_filter_fn(source.state_dict(), theirs))  # timm's resize of the bias tables
    x = torch.randn(1, 3, 224, 448)
    assert (_out(ours, x) - _out(theirs, x)).abs().max() <= TOL
    with pytest.raises(rectvit.AmbiguousGridError, match="pass source_windows=.*7x7 -?[0-9.]+ \\(architecture default"):
        rectvit.create_model("swin_tiny_patch4_window7_224", checkpoint_path=path, **kw)  # no tag: nothing records it


# ---- failures: what to install, download or pass ----


def test_without_huggingface_hub(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(rectvit.CheckpointError, match=r"pip install 'rectvit\[hub\]'.*checkpoint_path=PATH"):
        rectvit.create_model(VIT, pretrained=True, **VIT_SMALL)
    with pytest.raises(rectvit.CheckpointError, match=r"pip install 'rectvit\[hub\]'"):
        rectvit.load_model("hf-hub:google/vit-base-patch16-224")


def test_offline_with_nothing_cached(offline):
    with pytest.raises(rectvit.CheckpointError) as e:
        rectvit.create_model(VIT, pretrained=True, **VIT_SMALL)
    msg = str(e.value)
    assert f"hf-hub:timm/{VIT}" in msg and "model.safetensors or pytorch_model.bin" in msg
    assert (
        str(offline) in msg
        and "HF_HUB_OFFLINE is set" in msg
        and "checkpoint_path=PATH" in msg
        and "hf download" in msg
    )
    with pytest.raises(rectvit.CheckpointError, match="config.json is not in the cache"):
        rectvit.load_model("hf-hub:someone/absent")


def test_unknown_tag_no_weights_and_url_only(offline):
    with pytest.raises(rectvit.RectViTError, match="unknown pretrained tag 'nope'.*augreg2_in21k_ft_in1k"):
        rectvit.create_model("vit_base_patch16_224.nope", pretrained=True)
    with pytest.raises(rectvit.CheckpointError, match="no pretrained weights.*list_pretrained"):
        rectvit.create_model("swinv2_cr_tiny_224.untrained", pretrained=True)
    url = "https://dl.fbaipublicfiles.com/deit/deit_3_base_224_1k.pth"
    with pytest.raises(rectvit.CheckpointError, match="not on the Hugging Face hub.*file=PATH") as e:
        rectvit.create_model(VIT, pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id=None, url=url))
    assert url in str(e.value)


@pytest.mark.parametrize("damage", ["flipped", "truncated"])
def test_checksum_or_size_mismatch(offline, tmp_path, damage):
    _vit_repo(offline, tmp_path)
    link = next((offline / f"models--timm--{VIT}" / "snapshots").glob("*/model.safetensors"))
    blob = Path(os.path.realpath(link))
    data = bytearray(blob.read_bytes())
    if damage == "flipped":
        data[-1] ^= 1
    else:
        data = data[: len(data) // 2]
    blob.write_bytes(bytes(data))
    with pytest.raises(rectvit.CheckpointError, match="does not match the hub's checksum.*Delete") as e:
        rectvit.create_model(VIT, pretrained=True, **VIT_SMALL)
    assert f"{len(data)} bytes" in str(e.value)
    with pytest.raises(rectvit.CheckpointError, match="does not match the hub's checksum"):
        rectvit.load_model(f"hf-hub:timm/{VIT}")


def test_hf_home_and_offline_from_the_environment(tmp_path):
    """A fresh process: HF_HOME names the cache (``$HF_HOME/hub``) and HF_HUB_OFFLINE=1 keeps it off the network."""
    home = tmp_path / "home"
    source = _vit_repo(home / "hub", tmp_path)
    x = torch.randn(1, 3, 224, 224)
    torch.save({"x": x, "y": _out(source, x)}, tmp_path / "xy.pt")
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise SystemExit('network access')\n"
        "socket.socket.connect = refuse; socket.create_connection = refuse\n"
        "import torch, rectvit\n"
        f"m = rectvit.create_model({VIT!r}, pretrained=True, depth=2, embed_dim=32, num_heads=2).eval()\n"
        f"xy = torch.load({str(tmp_path / 'xy.pt')!r})\n"
        "print((m(xy['x']) - xy['y']).abs().max().item() <= 1e-5, m.load_report.hub)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(home), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT / "src"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("True hf-hub:timm/" + VIT), out.stdout


def test_docs_state_the_generated_count():
    """README and docs give the count of tags with hub weights that the generated table holds."""
    total = sum(len(rows) for rows in TAGS.values())
    for doc in ("README.md", "docs/checkpoints.md", "docs/models.md"):
        found = re.findall(r"(\d+)\s+of\s+the\s+(\d+)", (ROOT / doc).read_text())
        assert found and set(found) == {(str(HUB_TAGS), str(total))}, doc
