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


def _stand_ins(folder: Path) -> Path:
    """Empty modules named as the oracles: the run below needs them present, not real (fast to import)."""
    import conftest

    folder.mkdir()
    for name in conftest.ORACLES:
        (folder / f"{name}.py").write_text("")
    return folder


def _pytest_required(folder: Path, extra_path: Path) -> subprocess.CompletedProcess:
    """pytest in a subprocess on ``folder`` with RECTVIT_REQUIRE_ORACLES set, ``extra_path`` first on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_XDIST_WORKER")}
    env["RECTVIT_REQUIRE_ORACLES"] = "1"
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


def _skipped_report(reason: str) -> pytest.TestReport:
    return pytest.TestReport("t.py::t", ("t.py", 0, "t"), {}, "skipped", ("t.py", 1, f"Skipped: {reason}"), "call")


def test_skips_are_left_alone_when_oracles_are_not_required(monkeypatch):
    import conftest

    for var in ("CI", "RECTVIT_REQUIRE_ORACLES"):
        monkeypatch.delenv(var, raising=False)
    assert not conftest.oracles_required()
    report = _skipped_report("could not import 'timm'")
    conftest._fail_a_forbidden_skip(report, "skipped")
    assert report.outcome == "skipped"
    for value, required in (("1", True), ("true", True), ("0", False), ("false", False), ("", False)):
        monkeypatch.setenv("CI", value)
        assert conftest.oracles_required() is required, value


@pytest.mark.slow
def test_a_skip_fails_where_oracles_are_required_except_for_cuda(suite, tmp_path_factory):
    run = _pytest_required(suite, _stand_ins(tmp_path_factory.mktemp("s") / "oracles"))
    assert run.returncode == 1, run.stdout
    out = run.stdout
    assert "FAILED test_cases.py::test_needs_an_oracle" in out
    assert "skipped where oracles are required (CI / RECTVIT_REQUIRE_ORACLES): the oracle" in out
    assert "ERROR test_module_skip.py" in out  # a module-level skip is a collection error
    assert "module skipped where oracles are required" in out and "no_such_oracle_module" in out
    assert "SKIPPED [1] test_cases.py" in out and "no CUDA device" in out  # the one skip allowed
    assert "1 failed, 1 passed, 1 skipped, 1 error" in out


def test_a_missing_oracle_stops_the_run_before_any_test(monkeypatch):
    import conftest

    monkeypatch.setenv("RECTVIT_REQUIRE_ORACLES", "1")
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # "import onnxscript" now raises ImportError

    class Config:  # the controlling process's config (no ``workerinput``)
        pass

    with pytest.raises(pytest.UsageError, match=r"onnxscript \(the `export` extra\): ModuleNotFoundError") as e:
        conftest.pytest_configure(Config())
    assert "timm" not in str(e.value).split("do not:")[1]  # only what is missing is listed
