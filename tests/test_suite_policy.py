"""The suite cannot pass by skipping: under CI or RECTVIT_REQUIRE_ORACLES (make test sets it) a missing
oracle stops the run and a skip fails, except a test that needs a CUDA device on a machine without one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

CASES = """
import pytest

def test_oracle_free():
    assert True

def test_needs_an_oracle():
    pytest.importorskip("no_such_oracle_module", reason="the oracle")

@pytest.mark.skipif(True, reason="no CUDA device: torch.cuda.is_available()")
def test_on_cuda():
    pass
"""

MODULE_SKIP = """
import pytest
pytest.importorskip("no_such_oracle_module")

def test_hidden():
    pass
"""


def _stand_ins(folder: Path, broken: str | None = None) -> Path:
    """Empty modules named as the oracles (fast to import), ``broken`` one that fails to import."""
    import conftest

    folder.mkdir()
    for name in conftest.ORACLES:
        text = f"raise ImportError('{name} stand-in: not installed')\n" if name == broken else ""
        (folder / f"{name}.py").write_text(text)
    return folder


def _pytest(folder: Path, required: bool, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "RECTVIT_REQUIRE_ORACLES", "PYTEST_XDIST_WORKER")}
    if required:
        env["RECTVIT_REQUIRE_ORACLES"] = "1"
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "pytest", str(folder), "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-rfEs"]
    cmd.append("--continue-on-collection-errors")
    return subprocess.run(cmd, capture_output=True, text=True, cwd=folder, env=env, timeout=300)


@pytest.fixture
def suite(tmp_path):
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_cases.py").write_text(CASES)
    (tmp_path / "test_module_skip.py").write_text(MODULE_SKIP)
    return tmp_path


@pytest.mark.slow
def test_skips_are_allowed_only_when_oracles_are_not_required(suite):
    run = _pytest(suite, required=False)
    assert run.returncode == 0, run.stdout
    assert "1 passed, 3 skipped" in run.stdout  # a module-level skip counts as one


@pytest.mark.slow
def test_a_skip_fails_where_oracles_are_required_except_for_cuda(suite, tmp_path_factory):
    run = _pytest(suite, required=True, extra_path=_stand_ins(tmp_path_factory.mktemp("s") / "oracles"))
    assert run.returncode == 1, run.stdout
    out = run.stdout
    assert "FAILED test_cases.py::test_needs_an_oracle" in out
    assert "skipped where oracles are required (CI / RECTVIT_REQUIRE_ORACLES): the oracle" in out
    assert "ERROR test_module_skip.py" in out  # a module-level skip is a collection error
    assert "module skipped where oracles are required" in out and "no_such_oracle_module" in out
    assert "SKIPPED [1] test_cases.py" in out and "no CUDA device" in out  # the one skip allowed
    assert "1 failed, 1 passed, 1 skipped, 1 error" in out


@pytest.mark.slow
def test_a_missing_oracle_stops_the_run_before_any_test(suite, tmp_path_factory):
    broken = _stand_ins(tmp_path_factory.mktemp("s") / "oracles", broken="onnxscript")
    run = _pytest(suite, required=True, extra_path=broken)
    assert run.returncode == 4, run.stdout + run.stderr  # pytest's usage error: nothing ran
    assert "onnxscript (the `export` extra): ImportError: onnxscript stand-in" in run.stderr
    assert "passed" not in run.stdout
