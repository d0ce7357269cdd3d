"""`make demo` / `make test` set-up (scripts/make_venv.py): where torch comes from, what is said before any
download, a true label for the torch build, and no half-built environment after a failure."""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = "http://127.0.0.1:9/whl/cpu"  # the discard port: nothing listens, the connection is refused


@pytest.fixture(scope="module")
def make_venv():
    spec = importlib.util.spec_from_file_location("make_venv", ROOT / "scripts" / "make_venv.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def local_index():
    """A local HTTP server standing in for a reachable CPU index (loopback only)."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/whl/cpu"
    server.shutdown()
    server.server_close()


def test_torch_source_without_a_gpu_prefers_a_reachable_cpu_index(make_venv, local_index):
    index, why = make_venv.torch_index(gpu=False, env={"RECTVIT_CPU_INDEX": local_index})
    assert index == local_index and "CPU-only" in why
    assert make_venv.pip_args(index)[-2:] == ["--extra-index-url", local_index]  # added, the default index kept


def test_torch_source_falls_back_cleanly_when_the_cpu_index_is_unreachable(make_venv):
    index, why = make_venv.torch_index(gpu=False, env={"RECTVIT_CPU_INDEX": UNREACHABLE})
    assert index is None and "did not answer" in why and "falling back to the default package index" in why
    assert make_venv.pip_args(index) == ["--disable-pip-version-check"]


def test_torch_source_with_a_gpu_or_forced(make_venv):
    assert make_venv.torch_index(gpu=True, env={"RECTVIT_CPU_INDEX": UNREACHABLE})[0] is None
    assert make_venv.torch_index(gpu=False, env={"RECTVIT_TORCH_INDEX": "none"})[0] is None
    assert (
        make_venv.torch_index(gpu=True, env={"RECTVIT_TORCH_INDEX": "https://x/whl/cu130"})[0] == "https://x/whl/cu130"
    )


def _item(name: str, version: str, requires=(), url: str = "") -> dict:
    meta = {"name": name, "version": version, "requires_dist": list(requires)}
    return {"metadata": meta, "download_info": {"url": url}}


def test_the_torch_label_is_true_to_the_build(make_venv):
    cuda = _item("torch", "2.14.1", ["nvidia-cublas==13.1.1.3; platform_system == 'Linux'", "sympy>=1.13"])
    assert "CUDA build" in make_venv.torch_build([cuda])
    assert "CPU-only" in make_venv.torch_build([_item("torch", "2.14.1+cpu", ["sympy>=1.13"])])
    assert "CUDA build" in make_venv.torch_build([_item("torch", "2.14.1+cu130")])
    assert "CPU-only" in make_venv.torch_build([_item("torch", "2.13.0", ["sympy"])])  # e.g. macOS wheels
    assert make_venv.torch_build([_item("numpy", "2.4.6")]) == "no torch"


FAKE_PYTHON = """#!/bin/sh
# a venv's python: "-m pip install --dry-run ... --report FILE" writes $FAKE_REPORT there; any other pip
# call echoes its arguments and exits $FAKE_PIP_STATUS; "-c CODE" prints the installed torch
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
    case "$*" in
    *--dry-run*) while [ $# -gt 0 ]; do [ "$1" = "--report" ] && cp "$FAKE_REPORT" "$2"; shift; done; exit 0 ;;
    *) echo "fake pip $*"; exit "${FAKE_PIP_STATUS:-0}" ;;
    esac
fi
[ "$1" = "-c" ] && echo "$FAKE_TORCH" && exit 0
exit 3
"""


def test_build_says_what_and_how_large_before_downloading(make_venv, tmp_path, monkeypatch, capfd):
    wheel = tmp_path / "torch-2.14.1-cp311-none-linux_x86_64.whl"
    nvidia = tmp_path / "nvidia_cublas-13-py3-none-linux_x86_64.whl"
    for path, size in ((wheel, 600_000_000), (nvidia, 2_200_000_000)):
        with open(path, "wb") as f:
            f.truncate(size)  # sparse: the size is what counts
    report = {
        "install": [
            _item("torch", "2.14.1", ["nvidia-cublas==13"], wheel.as_uri()),
            _item("nvidia-cublas", "13", (), nvidia.as_uri()),
        ]
    }
    (tmp_path / "report.json").write_text(json.dumps(report))

    def fake_create(target, with_pip=True):
        (Path(target) / "bin").mkdir(parents=True)
        (Path(target) / "bin" / "python").write_text(FAKE_PYTHON)
        (Path(target) / "bin" / "python").chmod(0o755)

    monkeypatch.setattr(make_venv.venv, "create", fake_create)
    monkeypatch.setenv("FAKE_REPORT", str(tmp_path / "report.json"))
    monkeypatch.setenv("FAKE_TORCH", "2.14.1+cu130 13.0")
    monkeypatch.setenv("RECTVIT_CPU_INDEX", UNREACHABLE)
    monkeypatch.delenv("RECTVIT_TORCH_INDEX", raising=False)
    monkeypatch.setattr(make_venv, "has_nvidia_gpu", lambda: False)
    target = tmp_path / "env"
    argv = [str(target), str(ROOT / "requirements-demo.txt"), "--why", "the demo"]

    monkeypatch.setenv("FAKE_PIP_STATUS", "1")  # the install fails: nothing is left behind
    assert make_venv.main(argv) == 1 and not target.exists()
    assert "failed" in capfd.readouterr().out

    monkeypatch.setenv("FAKE_PIP_STATUS", "0")
    monkeypatch.setattr(make_venv.subprocess, "run", _editable_install_skipped(make_venv.subprocess.run))
    assert make_venv.main(argv) == 0
    out = capfd.readouterr().out.splitlines()
    steps = [ln.split()[1] for ln in out if ln.startswith("rectvit: [")]
    assert steps == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"], out
    said = "\n".join(out)
    before = said[: said.index("[3/4]")]  # what is printed before pip downloads anything
    assert "falling back to the default package index" in before
    assert "torch 2.14.1 (CUDA build" in before and "2 packages, about 2.80 GB to download" in before
    assert "NVIDIA/CUDA libraries 2.2 GB" in before and "nvidia-cublas 2200 MB, torch 600 MB" in before
    assert "fake pip -m pip install --disable-pip-version-check -r" in said  # pip's own output shown
    assert "[4/4] installed torch 2.14.1+cu130 (CUDA 13.0 build)" in said
    assert (target / ".ready").is_file()

    assert make_venv.main(argv) == 0  # built once: later runs reuse it
    assert capfd.readouterr().out.startswith("rectvit: using ")


def _editable_install_skipped(run):
    def wrapped(cmd, *args, **kwargs):
        if "-e" in cmd:  # the editable install of this checkout: not into a fake environment
            return subprocess.CompletedProcess(cmd, 0)
        return run(cmd, *args, **kwargs)

    return wrapped


@pytest.mark.slow
def test_plan_only_with_the_cpu_index_unreachable_resolves_and_labels_truly():
    """The real resolution (pip's dry run, metadata only) of the demo environment, the CPU index unreachable."""
    env = {**os.environ, "RECTVIT_CPU_INDEX": UNREACHABLE}
    env.pop("RECTVIT_TORCH_INDEX", None)
    cmd = [sys.executable, str(ROOT / "scripts" / "make_venv.py"), "--plan-only", str(ROOT / "requirements-demo.txt")]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "did not answer" in out and "falling back to the default package index" in out
    label = next(ln for ln in out.splitlines() if "torch 2.13.0" in ln)
    assert ("CPU-only" in label) == ("+cpu" in label.split("torch ")[1].split()[0])
    assert " packages, about " in out and " GB to download" in out


def test_make_passes_the_suite_settings_to_pytest():
    if shutil.which("make") is None:
        pytest.fail("make is not installed; the README's set-up needs it")
    run = subprocess.run(
        ["make", "--no-print-directory", "-n", "-C", str(ROOT), "test", "PYTEST_ARGS=tests/x.py", "HYPOTHESIS_SEED=7"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    line = next(ln for ln in run.stdout.splitlines() if " -m pytest " in ln)
    for part in ("RECTVIT_REQUIRE_ORACLES=1", "-n auto", "--durations=25", "--hypothesis-seed=7", "tests/x.py"):
        assert part in line, (part, line)
    assert "scripts/make_venv.py" in run.stdout and "requirements-test.txt" in run.stdout
