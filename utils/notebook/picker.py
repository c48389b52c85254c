"""Cell 34's ``PICKER``: a dropdown of the listed checkpoints and a Load button, under the text panels.

The approved design rejected widgets as the default (they need a dependency and
their output cannot be copied as text), so the text panels stay the record: the
cell prints them first, as always, and the picker is an extra. A click loads
the chosen file through the very function the text cell uses
(``load_weights.load_selection``, handed in as ``load``), and prints the same
panels into the picker's output area.

The widget is shown only where a front end will draw it (see
:func:`has_widget_frontend`); ``ipywidgets`` is imported only then, so the
notebook never requires it.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

from IPython.display import display

__all__ = ["CheckpointPicker", "can_show_picker", "has_widget_frontend", "option_label"]

# load(index into the listing, out) -> the LoadReport, or None when the load failed (a panel said why)
LoadFunction = Callable[[int, Callable[[str], None]], Any]
CHOOSE_FIRST = "Choose a checkpoint in the list, then click Load."


def has_widget_frontend(namespace: MutableMapping[str, Any] | None = None) -> bool:
    """Whether a notebook front end that draws widgets is attached to this kernel.

    A kernel cannot ask its front end, and nbclient (papermill, the kernel tests)
    answers widget messages as a front end would, so the signal is where the
    kernel runs: an IPython kernel (not plain Python or terminal IPython), and
    one of Colab, a Jupyter server session (JupyterLab, Notebook 7 and VS Code
    set ``JPY_SESSION_NAME`` for the kernel of an open notebook) or VS Code's
    own launcher (``__vsc_ipynb_file__``). Anything else gets the text panels.

    Args:
        namespace: the notebook's ``globals()`` (for VS Code's marker).

    Returns:
        True when a widget shown now will be drawn for a person to click.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a runtime requirement
        return False
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    if "google.colab" in sys.modules or os.environ.get("JPY_SESSION_NAME"):
        return True
    return "__vsc_ipynb_file__" in (namespace or {})


def can_show_picker(namespace: MutableMapping[str, Any] | None = None) -> bool:
    """A widget front end is attached (:func:`has_widget_frontend`) and ``ipywidgets`` imports."""
    if not has_widget_frontend(namespace):
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _loss(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _count(value: int | None) -> str:
    return "n/a" if value is None else str(value)


def option_label(index: int, info: Any) -> str:
    """One dropdown entry: position, epoch, step, losses and file name (as AVAILABLE CHECKPOINTS lists them).

    Args:
        index: the entry's position in the listing (best first).
        info: a listing entry (``epoch``, ``global_step``, ``train_loss``, ``val_loss``, ``name``).
    """
    return (
        f"[{index}] Epoch {_count(info.epoch)} | Step {_count(info.global_step)} | "
        f"train_loss={_loss(info.train_loss)} | val_loss={_loss(info.val_loss)} | {info.name}"
    )


class CheckpointPicker:
    """The dropdown, the Load button and the output area; ``report`` is what the model holds.

    Attributes:
        dropdown: ``ipywidgets.Dropdown``; its value is the index into the listing.
        button: ``ipywidgets.Button`` "Load".
        output: ``ipywidgets.Output``: the panels of the last click.
        report: the ``LoadReport`` of the weights the model holds (the cell's load, then each
            successful click); None when nothing was loaded.
        widget: the box holding the three, which :meth:`show` displays.
    """

    def __init__(
        self,
        checkpoints: Sequence[Any],
        selected_index: int | None,
        report: Any,
        load: LoadFunction,
        namespace: MutableMapping[str, Any] | None = None,
    ) -> None:
        """Build the widgets (imports ipywidgets).

        Args:
            checkpoints: the listing, best first, as the text panel shows it.
            selected_index: the entry the cell loaded (preselected), or None when it is not listed.
            report: the cell's ``LoadReport`` (or None when its load failed).
            load: loads entry ``index`` and prints its panels through ``out``.
            namespace: the notebook's ``globals()``; each successful click sets its ``load_report``.
        """
        import ipywidgets as widgets

        self.report = report
        self._load = load
        self._namespace = namespace
        options = [(option_label(i, info), i) for i, info in enumerate(checkpoints)]
        # The dropdown takes the row's width and shrinks below its longest entry, so the button stays in view.
        self.dropdown = widgets.Dropdown(
            options=options, value=selected_index, description="Checkpoint:",
            style={"description_width": "initial"},
            layout=widgets.Layout(flex="1 1 auto", width="auto", min_width="0"),
        )  # fmt: skip
        self.button = widgets.Button(
            description="Load", button_style="primary", tooltip="Load the chosen checkpoint into `model`",
            layout=widgets.Layout(flex="0 0 auto"),
        )  # fmt: skip
        self.output = widgets.Output()
        self.button.on_click(self._on_click)
        row = widgets.HBox([self.dropdown, self.button], layout=widgets.Layout(width="100%"))
        self.widget = widgets.VBox([row, self.output])

    def show(self) -> None:
        """Display the picker under the cell's text panels."""
        display(self.widget)

    def _write(self, text: str) -> None:
        # Appending to the widget's own outputs (not print inside ``with output``) works from a
        # click handler in every front end, and without a kernel in the unit tests.
        self.output.append_stdout(text + "\n")

    def _on_click(self, _button: Any = None) -> None:
        self.output.outputs = ()
        index = self.dropdown.value
        if index is None:
            self._write(CHOOSE_FIRST)
            return
        self.button.disabled = True  # greyed out while it loads (the kernel handles one click at a time)
        try:
            report = self._load(index, self._write)
        except Exception:  # a bug, not an expected failure: show it where the user clicked
            self.output.append_stderr(traceback.format_exc())
            return
        finally:
            self.button.disabled = False
        if report is not None:  # a failed load changed nothing: the model still holds self.report
            self.report = report
            if self._namespace is not None:
                self._namespace["load_report"] = report
