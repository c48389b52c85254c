"""Drive training.ipynb in a real Jupyter kernel, cell by cell, found by their ``cell-N`` tags.

One kernel runs many cells (starting a kernel costs seconds); parameters are
overridden the way papermill does it: an extra cell after the parameters cell.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "training.ipynb"
# Fast settings for every kernel test: the tiny model, a few batches per epoch, CPU.
FAST = dict(MODEL_PRESET="tiny", DEVICE="cpu", MAX_BATCHES_PER_EPOCH=5, EVAL_BATCHES=4, SAVE_EVERY_STEPS=0)


def output_text(cell: nbformat.NotebookNode) -> str:
    """Everything a user sees as text in a cell's outputs (streams, text results, errors)."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}\n" + "\n".join(out.traceback))
        elif "text/plain" in out.get("data", {}):
            parts.append(out.data["text/plain"])
    return "".join(parts)


def code_cell(nb: nbformat.NotebookNode, number: int) -> nbformat.NotebookNode:
    """The code cell tagged ``cell-<number>``."""
    for cell in nb.cells:
        if f"cell-{number}" in cell.get("metadata", {}).get("tags", []):
            return cell
    raise KeyError(f"no cell tagged cell-{number}")


class Kernel:
    """A live kernel in the repository root that runs the notebook's cells on demand."""

    def __init__(self, **parameters: Any) -> None:
        self.nb = nbformat.read(NOTEBOOK, as_version=4)
        self.parameters = {**FAST, **parameters}
        # The client writes each executed cell back into its notebook: give it a scratch one.
        self._scratch = nbformat.v4.new_notebook(metadata=self.nb.metadata)
        self.client = NotebookClient(
            self._scratch, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(ROOT)}}
        )
        self._context = self.client.setup_kernel()
        self._context.__enter__()

    def close(self) -> None:
        self._context.__exit__(None, None, None)

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _execute(self, cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
        self._scratch.cells.append(cell)
        return self.client.execute_cell(cell, len(self._scratch.cells) - 1)

    def run(self, number: int, source: str | None = None) -> str:
        """Execute Cell ``number`` (optionally with edited source); returns its text output."""
        return output_text(self.run_cell(number, source))

    def run_cell(self, number: int, source: str | None = None) -> nbformat.NotebookNode:
        """Execute Cell ``number`` (optionally with edited source); returns the executed cell."""
        cell = copy.deepcopy(code_cell(self.nb, number))
        if source is not None:
            cell.source = source
        executed = self._execute(cell)
        if number == 3:  # the parameters cell: apply the overrides right after it
            self.code("\n".join(f"{name} = {value!r}" for name, value in self.parameters.items()))
        return executed

    def run_range(self, first: int, last: int) -> dict[int, str]:
        """Execute Cells first..last in order; returns their outputs by number."""
        return {n: self.run(n) for n in range(first, last + 1)}

    def code(self, source: str) -> str:
        """Execute arbitrary code in the kernel (test set-up and inspection)."""
        return output_text(self._execute(nbformat.v4.new_code_cell(source)))

    def source(self, number: int) -> str:
        return code_cell(self.nb, number).source
