"""The import direction of docs/design.md: errors/grid/resample -> layers -> models -> checkpoint ->
factory/CLI -> data. Read from the source (every import statement, function-level ones included), so a lower
layer that imports a higher one fails here even when the import sits inside a function."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "rectvit"

# Rank of each top-level unit; a module may import units of its own rank or lower.
RANKS = {
    "errors": 0,
    "grid": 1,
    "resample": 2,
    "layers": 3,
    "models": 4,
    "checkpoint": 5,
    "variable": 6,
    "viz": 6,
    "factory": 6,
    "export": 7,
    "demo": 7,
    "cli": 8,
    "__main__": 9,
    "__init__": 9,
    "data": 10,  # rectvit.data: training data on top of the public API; nothing in rectvit imports it
}


def _unit(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imported_units(path: Path, text: str | None = None) -> set[str]:
    """Top-level rectvit units the module at ``path`` (source ``text``, default its file) imports."""
    tree = ast.parse(path.read_text() if text is None else text, str(path))
    depth_of_module = len(path.relative_to(PACKAGE).parts) - 1  # 0 for rectvit/x.py, 1 for rectvit/pkg/x.py
    units = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] == "rectvit" and len(parts) > 1:
                    units.add(parts[1])
                continue
            up = node.level - 1  # levels above the module's own package
            if up > depth_of_module:
                continue
            base = list(path.relative_to(PACKAGE).parts[:-1])[: depth_of_module - up]
            target = base + (node.module.split(".") if node.module else [])
            if target:
                units.add(target[0])
            else:  # ``from . import x`` at the package root
                units.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "rectvit" and len(parts) > 1:
                    units.add(parts[1])
    return {u for u in units if u in RANKS}


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def test_every_unit_has_a_rank():
    assert {_unit(p) for p in MODULES} <= set(RANKS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_one_way(path):
    own = RANKS[_unit(path)]
    higher = sorted(u for u in _imported_units(path) if RANKS[u] > own)
    assert not higher, f"{path.relative_to(PACKAGE)} (rank {own}) imports higher layer(s) {higher}"


def test_the_checker_sees_function_level_imports():
    """The rule's own check: imports inside a function, relative or absolute, count."""
    src = "def f():\n    from ..checkpoint import load_checkpoint\n    from rectvit.factory import create_model\n"
    assert _imported_units(PACKAGE / "models" / "probe.py", src) == {"checkpoint", "factory"}
    assert _imported_units(PACKAGE / "probe.py", "from .models import vit\n") == {"models"}
