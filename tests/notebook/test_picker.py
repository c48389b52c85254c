"""Cell 34's PICKER widget: when it shows, what a click does, and that the text path stays the record."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import IPython
import pytest

from utils.notebook import picker as picker_module
from utils.notebook.picker import (
    CHOOSE_FIRST,
    CheckpointPicker,
    can_show_picker,
    has_widget_frontend,
    option_label,
)
from utils.training.engine.recovery import list_checkpoints


def output_text(picker: CheckpointPicker, stream: str = "stdout") -> str:
    return "".join(o["text"] for o in picker.output.outputs if o.get("name") == stream)


@pytest.fixture
def kernel_shell(monkeypatch):
    """get_ipython() answers an IPython kernel's shell; no front end marker is set."""
    monkeypatch.setattr(IPython, "get_ipython", lambda: SimpleNamespace(kernel=object()))
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)


@pytest.fixture
def listing(checkpoint_dir):
    return list_checkpoints(checkpoint_dir)


class FakeLoad:
    """Stands in for load_weights' loader: records the indexes, prints a line, returns a result."""

    def __init__(self, result="report", error: Exception | None = None):
        self.calls: list[int] = []
        self.result, self.error = result, error
        self.disabled_during: list[bool] = []
        self.picker: CheckpointPicker | None = None

    def __call__(self, index, out):
        self.calls.append(index)
        if self.picker is not None:
            self.disabled_during.append(self.picker.button.disabled)
        out(f"loaded [{index}]")
        if self.error is not None:
            raise self.error
        return f"{self.result} {index}" if self.result else None


def make_picker(listing, selected=0, report="report 0", load=None, namespace=None):
    load = load or FakeLoad()
    picker = CheckpointPicker(listing, selected, report, load, namespace)
    load.picker = picker
    return picker, load


class TestHasWidgetFrontend:
    def test_plain_python_has_none(self, monkeypatch):
        monkeypatch.setattr(IPython, "get_ipython", lambda: None)
        monkeypatch.setenv("JPY_SESSION_NAME", "/nb/training.ipynb")
        assert has_widget_frontend({}) is False

    def test_terminal_ipython_has_none(self, monkeypatch):
        monkeypatch.setattr(IPython, "get_ipython", lambda: SimpleNamespace())
        monkeypatch.setenv("JPY_SESSION_NAME", "/nb/training.ipynb")
        assert has_widget_frontend({}) is False

    def test_a_kernel_without_a_session_has_none(self, kernel_shell):
        # papermill and nbclient: a kernel, but no Jupyter server session, Colab or VS Code
        assert has_widget_frontend({}) is False

    def test_a_jupyter_server_session(self, kernel_shell, monkeypatch):
        monkeypatch.setenv("JPY_SESSION_NAME", "/nb/training.ipynb")
        assert has_widget_frontend({}) is True

    def test_colab(self, kernel_shell, monkeypatch):
        monkeypatch.setitem(sys.modules, "google.colab", SimpleNamespace())
        assert has_widget_frontend({}) is True

    def test_vs_code(self, kernel_shell):
        assert has_widget_frontend({"__vsc_ipynb_file__": "/nb/training.ipynb"}) is True


class TestCanShowPicker:
    def test_front_end_and_ipywidgets(self, kernel_shell, monkeypatch):
        monkeypatch.setenv("JPY_SESSION_NAME", "/nb/training.ipynb")
        assert can_show_picker({}) is True

    def test_without_ipywidgets(self, kernel_shell, monkeypatch):
        monkeypatch.setenv("JPY_SESSION_NAME", "/nb/training.ipynb")
        monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets -> ImportError
        assert can_show_picker({}) is False

    def test_without_a_front_end(self, kernel_shell):
        assert can_show_picker({}) is False


class TestOptionLabel:
    def test_epoch_step_losses_and_name(self, listing):
        label = option_label(1, listing[1])
        assert label == f"[1] Epoch 2 | Step 30 | train_loss=2.8000 | val_loss=2.7000 | {listing[1].name}"

    def test_unknown_values_read_n_a(self, listing):
        info = SimpleNamespace(epoch=None, global_step=None, train_loss=None, val_loss=None, name="w.pt")
        assert option_label(3, info) == "[3] Epoch n/a | Step n/a | train_loss=n/a | val_loss=n/a | w.pt"


class TestCheckpointPicker:
    def test_lists_every_checkpoint_with_the_selected_one_preselected(self, listing):
        picker, _ = make_picker(listing, selected=2)
        assert picker.dropdown.options == tuple((option_label(i, info), i) for i, info in enumerate(listing))
        assert picker.dropdown.value == 2 and picker.dropdown.label.endswith(listing[2].name)
        assert picker.button.description == "Load" and picker.report == "report 0"
        assert picker.widget.children[1] is picker.output

    def test_a_selection_that_is_not_listed_preselects_nothing(self, listing):
        picker, load = make_picker(listing, selected=None)
        assert picker.dropdown.value is None
        picker.button.click()
        assert load.calls == [] and output_text(picker) == CHOOSE_FIRST + "\n"

    def test_click_loads_the_chosen_entry_and_sets_load_report(self, listing):
        namespace = {"load_report": "report 0"}
        picker, load = make_picker(listing, namespace=namespace)
        picker.dropdown.value = 1
        picker.button.click()
        assert load.calls == [1] and output_text(picker) == "loaded [1]\n"
        assert picker.report == namespace["load_report"] == "report 1"

    def test_each_click_replaces_the_previous_panels(self, listing):
        picker, _ = make_picker(listing)
        for index in (1, 2):
            picker.dropdown.value = index
            picker.button.click()
        assert output_text(picker) == "loaded [2]\n"

    def test_a_failed_load_keeps_the_report_of_what_the_model_holds(self, listing):
        namespace = {"load_report": "report 0"}
        picker, load = make_picker(listing, load=FakeLoad(result=None), namespace=namespace)
        picker.dropdown.value = 2
        picker.button.click()
        assert load.calls == [2] and picker.report == namespace["load_report"] == "report 0"

    def test_the_button_is_disabled_while_loading(self, listing):
        picker, load = make_picker(listing)
        picker.button.click()
        assert load.disabled_during == [True] and picker.button.disabled is False

    def test_an_unexpected_error_is_shown_in_the_output(self, listing):
        namespace = {"load_report": "report 0"}
        picker, _ = make_picker(listing, load=FakeLoad(error=KeyError("boom")), namespace=namespace)
        picker.button.click()
        assert "KeyError: 'boom'" in output_text(picker, "stderr") and "Traceback" in output_text(
            picker, "stderr"
        )
        assert picker.button.disabled is False and namespace["load_report"] == "report 0"

    def test_show_displays_the_widget(self, listing, monkeypatch):
        shown = []
        monkeypatch.setattr(picker_module, "display", shown.append)
        picker, _ = make_picker(listing)
        picker.show()
        assert shown == [picker.widget]
