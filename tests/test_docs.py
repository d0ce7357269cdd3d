"""The docs' examples run as written: every ```python block of README.md is executed (offline: the hub
download is a folder made here), and what each prints or promises is checked; docs/deploy.md's claim on
sizes off an exported program's rule is checked against the program."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
import torch

import rectvit
from rectvit import resample_grid

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
# every ```python block, less one that a "test_docs: not run here" comment right above it hands to a test
# file it names (a download, checked there on an offline hub cache)
FENCED = re.findall(r"(<!-- test_docs: not run here[^>]*-->\n)?```python\n(.*?)```", README, re.S)
BLOCKS = [code for note, code in FENCED if not note]
HANDED_OVER = [note for note, _ in FENCED if note]


@pytest.fixture
def offline_hub(tmp_path_factory, monkeypatch):
    """``huggingface_hub.snapshot_download`` returning a local HF folder shaped like google/vit-base-patch16-224
    (224x224, patch 16: a recorded 14x14 grid), narrow and shallow; nothing is downloaded."""
    transformers = pytest.importorskip("transformers", reason="HF transformers is the oracle; `make test` installs it")
    hub = pytest.importorskip("huggingface_hub", reason="the `hub` extra; `make test` installs it")
    folder = tmp_path_factory.mktemp("hub") / "google--vit-base-patch16-224"
    cfg = transformers.ViTConfig(
        image_size=224, patch_size=16, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    transformers.ViTForImageClassification(cfg).eval().save_pretrained(folder)
    asked = []

    def snapshot_download(repo_id, **kwargs):
        asked.append(repo_id)
        return str(folder)

    monkeypatch.setattr(hub, "snapshot_download", snapshot_download)
    return asked


def _run_block(code: str, tmp_path, monkeypatch) -> dict:
    monkeypatch.chdir(tmp_path)
    scope: dict = {"__name__": "__readme__"}
    exec(compile(code, "README.md", "exec"), scope)
    return scope


RECIPE = next((i for i, code in enumerate(BLOCKS) if "snapshot_download" in code), None)


def test_the_readme_has_its_examples():
    assert "rectvit.forward_variable" in BLOCKS[0] and RECIPE is not None
    for note in HANDED_OVER:  # a block not run here names the test file that runs its calls instead
        (name,) = re.findall(r"tests/test_\w+\.py", note)
        assert (ROOT / name).is_file(), note


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_every_readme_python_block_runs(index, tmp_path, monkeypatch, offline_hub, capsys, one_thread):
    _run_block(BLOCKS[index], tmp_path, monkeypatch)
    assert capsys.readouterr().out.strip(), "a README example prints its result"
    assert list(tmp_path.iterdir()) == []  # nothing written into the working folder


def test_readme_example_does_what_it_says(tmp_path, monkeypatch, capsys, one_thread):
    scope = _run_block(BLOCKS[0], tmp_path, monkeypatch)
    out = capsys.readouterr().out
    assert "pos_embed  (1, 64, 8, 192) -> (1, 32, 8, 192)" in out and "source_grid argument" in out
    assert out.strip().splitlines()[-1] == "[(10,), (10,), (10,)]"
    model, outs = scope["model"], scope["outs"]
    with torch.no_grad():
        for x, got in zip(scope["spectrograms"], outs):  # each output is the input's own forward
            torch.testing.assert_close(got, model(x[None])[0], atol=1e-5, rtol=0)
    # the flat table was read on the given 64x8 grid and resampled to 32x8, by hand
    torch.testing.assert_close(model.pos_embed, resample_grid(scope["trained"].pos_embed.detach(), (32, 8)))
    assert str(scope["folder"]).startswith(tempfile.gettempdir())  # written to a temporary folder


def test_readme_pretrained_recipe_loads_the_folder(tmp_path, monkeypatch, offline_hub, capsys, one_thread):
    scope = _run_block(BLOCKS[RECIPE], tmp_path, monkeypatch)
    assert offline_hub == ["google/vit-base-patch16-224"]
    assert capsys.readouterr().out.strip() == "(24, 12) (14, 14)"
    model = scope["model"]
    assert model.img_size == (384, 192) and model.load_report.layout == "hf-vit"
    assert "recorded" in model.load_report.grid_basis


@pytest.mark.slow
def test_deploy_md_sizes_off_the_rule():
    """docs/deploy.md: the program guards the rule's lower bound, and runs a size between two sizes on
    the rule (100x64) equal to eager, which leaves out what lies past the last whole patch (96x64)."""
    from rectvit.export import export_program

    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert "100×64" in text and "Guard failed: x.size()[2] >= 32" in text
    model = rectvit.create_model("vit_small_patch16_224", dynamic_img_size=True, depth=1, embed_dim=64, num_heads=2)
    model = model.eval()
    program = export_program(model).module()
    x = torch.randn(1, 3, 100, 64)
    with torch.no_grad():
        torch.testing.assert_close(program(x), model(x[:, :, :96]), atol=1e-5, rtol=0)
        torch.testing.assert_close(program(x), model(x), atol=1e-5, rtol=0)
        with pytest.raises(Exception, match=re.escape("x.size()[2] >= 32")):
            program(torch.randn(1, 3, 20, 64))
