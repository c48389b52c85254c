"""Cell 34's PICKER in a real browser: JupyterLab on 127.0.0.1, headless Chromium driven by Playwright.

A person's path through the widget: open a copy of the notebook next to a tiny
run's three checkpoints, run the real Cells 1-13, 33 and 34 (``PICKER`` ticked,
fast settings, no training: the checkpoints are made here with the engine),
choose the second checkpoint in the dropdown, click "Load", wait for its panels
in the page, then run a cell that prints a checksum of ``model``'s weights and
the file ``load_report`` names, and compare with the file's own. The screenshot
the README shows is taken here.

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it); Playwright
drives it through ``executable_path`` and never downloads a browser.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import shutil

import nbformat
import pytest
import torch

from tests.notebook.kernel import FAST, NOTEBOOK, ROOT, code_cell
from utils.model import GPT, config_for_preset
from utils.training.engine.checkpoint import save_checkpoint
from utils.training.engine.recovery import list_checkpoints

from .lab import JupyterLab

pytestmark = [pytest.mark.notebook, pytest.mark.slow, pytest.mark.browser]

SCREENSHOT = ROOT / "docs" / "images" / "checkpoint_picker.png"
CELLS = [*range(1, 14), 33, 34]  # the set-up the model needs, then recovery and loading
RUN_TIMEOUT_MS = 240_000  # the cells, on two busy cores
UI_TIMEOUT_MS = 60_000
# (epoch, global_step, train_loss, val_loss): listed best first as epochs 2, 1, 0
RUNS = [(0, 5, 4.1, 3.9), (1, 10, 3.2, 3.0), (2, 15, 2.6, 2.4)]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("Chromium is not installed: apt-get install -y chromium (.ci/run does it)")
    return path


def weights_sha256(state_dict) -> str:
    """One checksum of every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


CHECK_CELL = f"""
import hashlib
from pathlib import Path

import torch

{inspect.getsource(weights_sha256)}
print("weights", weights_sha256(model.state_dict()), "load_report", Path(load_report.path).name)
"""


def make_checkpoints(folder):
    """Three checkpoints of the tiny preset (as Cell 13 builds it), each with different weights."""
    config = config_for_preset(FAST["MODEL_PRESET"])
    torch.manual_seed(0)
    model = GPT(config)
    for epoch, step, train_loss, val_loss in RUNS:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.01)
        save_checkpoint(
            folder, model, None, epoch=epoch, global_step=step, retention=None,
            metrics={"train_loss": train_loss, "val_loss": val_loss, "learning_rate": 1e-3},
            config={"model": config.to_dict()}, when=dt.datetime(2025, 1, 1, 0, 0, epoch),
        )  # fmt: skip
    return list_checkpoints(folder)


def make_notebook(path, checkpoint_dir, output_dir) -> None:
    """The real notebook's Cells 1-13, 33 and 34 (PICKER ticked), the test's parameters, a check cell."""
    source = nbformat.read(NOTEBOOK, as_version=4)
    parameters = {**FAST, "CHECKPOINT_DIR": str(checkpoint_dir), "OUTPUT_DIR": str(output_dir)}
    cells = []
    for number in CELLS:
        cell = nbformat.v4.new_code_cell(code_cell(source, number).source)
        if number == 34:
            assert "PICKER = False  # @param" in cell.source
            cell.source = cell.source.replace("PICKER = False  # @param", "PICKER = True  # @param")
        cells.append(cell)
        if number == 3:  # papermill's way: the overrides right after the parameters cell
            cells.append(nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in parameters.items())))
    cells.append(nbformat.v4.new_code_cell(CHECK_CELL.strip()))
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata=source.metadata), path)


@pytest.fixture
def lab(tmp_path):
    """JupyterLab serving a folder with the notebook copy, the project's code and three checkpoints."""
    root = tmp_path / "lab"
    root.mkdir()
    (root / "utils").symlink_to(ROOT / "utils")  # Cell 1 finds the code here and installs nothing
    listing = make_checkpoints(root / "checkpoints")
    make_notebook(root / "picker.ipynb", root / "checkpoints", root / "outputs")
    with JupyterLab(root, tmp_path / "jupyter") as server:
        server.listing = listing
        yield server


@pytest.fixture
def page(lab, monkeypatch):
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")  # the system Chromium, never a download
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(UI_TIMEOUT_MS)
            yield page
        finally:
            lab.track_processes()  # the kernel, before the browser (and then the server) goes
            browser.close()


def _run_command(page, command: str) -> None:
    page.evaluate("command => window.jupyterapp.commands.execute(command)", command)


def _select_last_cell(page) -> None:
    page.evaluate(
        "() => { const nb = window.jupyterapp.shell.currentWidget.content;"
        " nb.activeCellIndex = nb.widgets.length - 1; }"
    )


def _notebook_text(page) -> str:
    return page.locator(".jp-Notebook").inner_text()


def save_screenshot(page) -> None:
    """The notebook panel (no file browser, no status bar: nothing that changes between runs), the
    picker's row at the top and the clicked checkpoint's panels under it."""
    _run_command(page, "application:toggle-left-area")
    page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").wait_for(state="detached")
    page.evaluate(
        "() => { const row = document.querySelector('.widget-dropdown');"
        " row.scrollIntoView({block: 'start'}); row.closest('.jp-WindowedPanel-outer').scrollBy(0, -12); }"
    )
    page.mouse.move(0, 0)  # no hover highlight
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.locator(".jp-NotebookPanel").screenshot(path=str(SCREENSHOT), animations="disabled")


def test_pick_the_second_checkpoint_and_load_it(lab, page):
    from playwright.sync_api import expect

    second = lab.listing[1]
    expected = weights_sha256(torch.load(second.path, weights_only=True)["model_state_dict"])
    page.goto(lab.url("lab/tree/picker.ipynb"))
    page.wait_for_function(
        "() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'",
        timeout=UI_TIMEOUT_MS,
    )
    _select_last_cell(page)
    _run_command(page, "notebook:run-all-above")  # Cells 1-34; the check cell waits for the click
    dropdown = page.locator(".widget-dropdown select")
    try:
        dropdown.wait_for(state="visible", timeout=RUN_TIMEOUT_MS)
    except Exception as error:
        raise AssertionError(
            f"no picker after the cells ran; the page shows:\n{_notebook_text(page)}"
        ) from error
    assert "✅ Weights loaded successfully!" in _notebook_text(page)  # the text panels come first

    dropdown.select_option(index=1)
    page.locator("button.widget-button", has_text="Load").click()
    panels = page.locator(".widget-output")
    for text in ("🔍 Selection Method: Picked in the widget (PICKER)", f"📂 Loading checkpoint: {second.name}",
                 "✅ Weights loaded successfully!", "NEXT STEPS"):  # fmt: skip
        expect(panels).to_contain_text(text, timeout=UI_TIMEOUT_MS)

    save_screenshot(page)

    _select_last_cell(page)
    _run_command(page, "notebook:run-cell")
    check = page.locator(".jp-Cell").last.locator(".jp-OutputArea")
    expect(check).to_contain_text("load_report", timeout=UI_TIMEOUT_MS)
    assert check.inner_text().split() == ["weights", expected, "load_report", second.name]
