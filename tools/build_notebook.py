#!/usr/bin/env python3
"""Write training.ipynb from tools/notebook_cells.py, its source of truth.

    python tools/build_notebook.py           # rewrite training.ipynb
    python tools/build_notebook.py --check   # exit 1 when training.ipynb is out of date

Code cells are numbered in order ("Cell N" is the N-th code cell) and tagged
``cell-N``; the parameters cell is also tagged ``parameters`` for papermill.
Outputs are never written, so the committed notebook stays clean.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `tools` importable
    sys.path.insert(0, str(ROOT))

from tools.notebook_cells import CELLS, Cell  # noqa: E402

NOTEBOOK = ROOT / "training.ipynb"
__all__ = ["build_notebook", "render_notebook", "NOTEBOOK"]

METADATA = {
    "accelerator": "GPU",
    "colab": {"provenance": [], "toc_visible": True, "gpuType": "T4"},
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
}


def _code_cell(cell: Cell, number: int) -> nbformat.NotebookNode:
    tags = [f"cell-{number}", *cell.tags]
    node = nbformat.v4.new_code_cell(cell.code.strip("\n"), metadata={"tags": tags, "cellView": "form"})
    node.id = f"cell-{number}"
    return node


def _markdown_cell(text: str, cell_id: str) -> nbformat.NotebookNode:
    node = nbformat.v4.new_markdown_cell(text.strip("\n"))
    node.id = cell_id
    return node


def build_notebook(cells: list[Cell] = CELLS) -> nbformat.NotebookNode:
    """The notebook object: markdown before each code cell, code cells numbered from 1."""
    nb = nbformat.v4.new_notebook(metadata=METADATA)
    number = 0
    for cell in cells:
        if cell.code is None:
            nb.cells.append(_markdown_cell(cell.markdown or "", f"md-{number}-{len(nb.cells)}"))
            continue
        number += 1
        if cell.markdown:
            nb.cells.append(_markdown_cell(cell.markdown, f"md-{number}"))
        nb.cells.append(_code_cell(cell, number))
    nbformat.validate(nb)
    return nb


def render_notebook(cells: list[Cell] = CELLS) -> str:
    """The exact text written to training.ipynb."""
    return nbformat.writes(build_notebook(cells)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only check that training.ipynb is up to date")
    args = parser.parse_args(argv)
    text = render_notebook()
    if args.check:
        current = NOTEBOOK.read_text(encoding="utf-8") if NOTEBOOK.exists() else ""
        if current != text:
            print(f"{NOTEBOOK} is out of date: run `python tools/build_notebook.py`", file=sys.stderr)
            return 1
        print(f"{NOTEBOOK} is up to date")
        return 0
    NOTEBOOK.write_text(text, encoding="utf-8")
    print(f"Wrote {NOTEBOOK}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
