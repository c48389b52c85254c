"""The engine knows nothing of the notebook, and training code may use the engine but not the reverse.

Static checks over the source of ``utils/training/engine/`` (issue 10, "Design"): no imports of
``utils.notebook`` or of ``utils.training`` outside the engine, and no "Cell N" text (the engine's
errors name what happened and the API fix; the notebook maps them to cell advice). A fresh
interpreter then imports the engine alone.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "utils" / "training" / "engine"
MODULES = sorted(ENGINE.rglob("*.py"))


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ENGINE)))
def test_no_notebook_or_training_imports(path):
    outside = {
        name
        for name in _imported(path)
        if name.startswith("utils.notebook")
        or (name.startswith("utils.training") and not name.startswith("utils.training.engine"))
    }
    assert not outside, f"{path.name} imports {sorted(outside)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ENGINE)))
def test_no_cell_numbers(path):
    found = re.findall(r"Cell \d+", path.read_text(encoding="utf-8"))
    assert not found, f"{path.name} mentions {found}"


def test_the_engine_imports_without_the_training_package():
    code = (
        "import sys, utils.training.engine.loading, utils.training.engine.recovery, utils.training.engine.build\n"
        "print(sorted(m for m in sys.modules if m.startswith(('utils.training.', 'utils.notebook'))"
        " and not m.startswith('utils.training.engine')))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
