"""Packaging promises: public names, error hierarchy, lazy extras, console entry points."""

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

import rectvit

ROOT = Path(__file__).resolve().parents[1]


def test_errors_hierarchy_and_exports():
    for name in ("InputSizeError", "AmbiguousGridError", "CheckpointError"):
        cls = getattr(rectvit, name)
        assert issubclass(cls, rectvit.RectViTError) and issubclass(cls, ValueError)
    err = rectvit.AmbiguousGridError("x", candidates=[(16, 4), (8, 8)])
    assert err.candidates == [(16, 4), (8, 8)]


def test_runtime_dependencies_are_only_torch_safetensors_numpy():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip() for d in meta["dependencies"]}
    assert names == {"torch", "safetensors", "numpy"}
    assert {"test", "plot", "progress"} <= set(meta["optional-dependencies"])
    assert meta["scripts"]["rectvit"] == "rectvit.cli:main"


def test_import_pulls_in_no_extra():
    # torch itself may import some of these (it imports tqdm); count only what rectvit adds.
    code = (
        "import sys, torch; before = set(sys.modules);"
        "import rectvit; rectvit.list_models(); rectvit.create_model;"
        "extras = ('timm', 'transformers', 'matplotlib', 'tqdm', 'huggingface_hub');"
        "bad = [m for m in extras if m in sys.modules and m not in before];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("argv", [["-m", "rectvit", "--help"], ["-m", "rectvit", "demo", "--help"]])
def test_python_dash_m_help(argv):
    out = subprocess.run([sys.executable, *argv], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: rectvit" in out.stdout


def test_console_script_installed():
    script = Path(sys.executable).with_name("rectvit")
    if not script.exists():
        pytest.skip("rectvit is not installed in this interpreter's environment (make test installs it)")
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "demo" in out.stdout


def _name(requirement: str) -> str:
    for sep in ("==", ">=", "<=", "~=", "<", ">", ";", "["):
        requirement = requirement.split(sep)[0]
    return requirement.strip().lower().replace("_", "-")


def test_test_extra_matches_the_pinned_test_requirements():
    """pip install -e '.[test]' gets what make test pins (runtime and build tools aside), each pin allowed."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extra = {_name(r): r for r in meta["optional-dependencies"]["test"]}
    pins = {}
    for line in (ROOT / "requirements-test.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_name(name)] = version.strip()
    runtime = {_name(r) for r in meta["dependencies"]} | {"setuptools", "wheel", "execnet"}  # execnet: xdist's own
    assert set(extra) == set(pins) - runtime
    for name, requirement in extra.items():  # every lower bound admits the pinned version
        if ">=" in requirement:
            low = tuple(int(p) for p in requirement.split(">=")[1].split("."))
            pinned = tuple(int(p) for p in pins[name].split(".")[: len(low)])
            assert pinned >= low, (requirement, pins[name])
    for extra_name in ("export", "plot", "progress", "hub"):  # the extras the suite exercises are in it
        assert {_name(r) for r in meta["optional-dependencies"][extra_name]} <= set(extra), extra_name
