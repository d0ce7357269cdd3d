"""Suite-wide settings: Hypothesis profiles, the oracle policy, and shared fixtures (docs/testing.md)."""

import importlib
import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# Property tests draw new examples on every run (make test passes a fresh --hypothesis-seed and prints it;
# a failure prints its reproduce blob). HYPOTHESIS_PROFILE=fixed repeats the same examples on every run.
_COMMON = dict(deadline=None, max_examples=60, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", derandomize=False, **_COMMON)
settings.register_profile("fixed", derandomize=True, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The oracles the parity tests compare against, and what installs them.
ORACLES = {
    "timm": "timm",
    "transformers": "transformers",
    "torchvision": "torchvision",
    "onnx": "the `export` extra",
    "onnxscript": "the `export` extra",
    "onnxruntime": "the `export` extra",
}
# The only skips allowed where oracles are required: tests that need hardware this machine lacks.
ALLOWED_SKIP_PREFIXES = ("no CUDA device",)


def oracles_required() -> bool:
    """True under CI or RECTVIT_REQUIRE_ORACLES (make test sets it): a missing oracle or a skip then fails."""
    values = (os.environ.get(v, "").strip().lower() for v in ("CI", "RECTVIT_REQUIRE_ORACLES"))
    return any(v not in ("", "0", "false", "no") for v in values)


def missing_oracles() -> dict[str, str]:
    """``{module: why it failed to import}`` for each oracle that does not import."""
    missing = {}
    for module in ORACLES:
        try:
            importlib.import_module(module)
        except Exception as e:  # an oracle can fail on import for other reasons than absence (a torch mismatch)
            missing[module] = f"{type(e).__name__}: {e}"
    return missing


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per worker: the workers already fill the cores
        torch.set_num_threads(1)
    if oracles_required() and not hasattr(config, "workerinput"):  # checked once, in the controlling process
        missing = missing_oracles()
        if missing:
            lines = "\n".join(f"  {m} ({ORACLES[m]}): {why}" for m, why in missing.items())
            raise pytest.UsageError(
                "rectvit: the test oracles must all import when CI or RECTVIT_REQUIRE_ORACLES is set, so that no "
                f"parity test passes by skipping; these do not:\n{lines}\n"
                "Install requirements-test.txt (make test builds it), or unset both variables to let them skip."
            )


def _fail_a_forbidden_skip(report, what: str) -> None:
    """Where oracles are required, turn a skipped ``report`` into a failure (CUDA-only tests excepted)."""
    if not (report.skipped and oracles_required()) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    if not reason.startswith(ALLOWED_SKIP_PREFIXES):
        report.outcome = "failed"
        report.longrepr = f"{what} where oracles are required (CI / RECTVIT_REQUIRE_ORACLES): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_a_forbidden_skip(outcome.get_result(), "skipped")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_a_forbidden_skip(outcome.get_result(), "module skipped")


@pytest.fixture(scope="module")
def one_thread():
    """Small models on a shared 2-core machine: intra-op threading costs far more than it saves."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
