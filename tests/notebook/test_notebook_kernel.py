"""training.ipynb executed in a real Jupyter kernel with the tiny preset (issues 3, 4 and 5).

Kernels are shared where the tests allow it: one papermill run top to bottom,
one trained session for Cells 33-35 in every situation, one fresh kernel for
"model not found", and two kernels for the resume (the uninterrupted reference
is the shared session's run).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import papermill
import pytest
import torch

from .kernel import FAST, NOTEBOOK, ROOT, Kernel, code_cell, output_text

pytestmark = [pytest.mark.notebook, pytest.mark.slow]

PANELS = ["AVAILABLE CHECKPOINTS", "🔍 Selection Method:", "LOADING MODEL WEIGHTS", "✅ Weights loaded successfully!",
          "CHECKPOINT INFO", "MODEL INFO", "ARCHITECTURE PREVIEW", "NEXT STEPS"]  # fmt: skip
SESSION_NAMES = ["checkpoint_path", "history", "train_losses", "val_losses", "best_epoch", "best_val_loss"]


def _in_order(text: str, markers: list[str]) -> bool:
    positions = [text.find(marker) for marker in markers]
    return -1 not in positions and positions == sorted(positions)


def _final_checkpoint(folder: Path) -> dict:
    """The highest-step checkpoint of a folder, loaded safely."""
    latest = max(folder.glob("checkpoint_*.pt"), key=lambda p: int(re.search(r"step(\d+)", p.name)[1]))
    return torch.load(latest, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------- (a) top to bottom with papermill


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("papermill")
    params = {**FAST, "EPOCHS": 2, "CHECKPOINT_DIR": str(folder / "ckpt"), "OUTPUT_DIR": str(folder / "out"),
              "MIN_LR_RATIO": 0.25, "WARMUP_STEPS": 3}  # fmt: skip
    papermill.execute_notebook(
        str(NOTEBOOK), str(folder / "executed.ipynb"), parameters=params, cwd=str(ROOT), progress_bar=False
    )
    return nbformat.read(folder / "executed.ipynb", as_version=4), folder


class TestWholeRun:
    def test_no_cell_failed(self, executed):
        nb, _ = executed
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
        assert errors == []

    def test_the_stored_training_settings_are_the_ones_used(self, executed):
        _, folder = executed
        saved = _final_checkpoint(folder / "ckpt")
        schedule, training = saved["scheduler_state_dict"]["lr_lambdas"][0], saved["config"]["training"]
        assert (schedule["min_lr_ratio"], schedule["warmup_steps"]) == (0.25, 3)
        assert (training["min_lr_ratio"], training["warmup_steps"]) == (0.25, 3)
        assert training["eval_batches"] == FAST["EVAL_BATCHES"]

    def test_recovery_load_and_session_cells(self, executed):
        nb, _ = executed
        assert "🏆 Best: checkpoint_epoch0001" in output_text(code_cell(nb, 33))
        cell34 = output_text(code_cell(nb, 34))
        assert _in_order(cell34, PANELS) and "From Cell 33 (Checkpoint Recovery)" in cell34
        cell35 = output_text(code_cell(nb, 35))
        assert "Source: Cell 33" in cell35 and all(name in cell35 for name in SESSION_NAMES)

    def test_trained_text_differs_from_the_untrained_sample(self, executed):
        nb, _ = executed
        untrained = output_text(code_cell(nb, 17)).strip()
        generated = output_text(code_cell(nb, 38))
        assert untrained not in generated and "Untrained model, same prompt and seed" in generated

    def test_plots_are_saved_and_shown(self, executed):
        nb, folder = executed
        for name in ("lr_schedule.png", "training_curves.png", "training_dashboard.png", "model.safetensors"):
            assert (folder / "out" / name).stat().st_size > 1000, name
        for number in (19, 33, 37, 40):
            assert any("image/png" in o.get("data", {}) for o in code_cell(nb, number).outputs), number


# ---------------------------------------------------------------- (b, c) Cells 33-35 in one trained session


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """A kernel that ran Cells 1-32 (4 epochs); also the uninterrupted reference for the resume test."""
    folder = tmp_path_factory.mktemp("session")
    kernel = Kernel(
        EPOCHS=4, CHECKPOINT_DIR=str(folder / "ckpt"), OUTPUT_DIR=str(folder / "out"), KEEP_LAST=10
    )
    kernel.run_range(1, 32)
    kernel.folder = folder
    kernel.reference = _final_checkpoint(folder / "ckpt")
    yield kernel
    kernel.close()


def _forget(kernel: Kernel, *names: str) -> None:
    kernel.code("\n".join(f"globals().pop({name!r}, None)" for name in names))


class TestCell34InKernel:
    def test_happy_path_through_cell_33(self, session):
        session.run(33)
        text = session.run(34)
        assert _in_order(text, PANELS) and "From Cell 33 (Checkpoint Recovery)" in text
        assert "Traceback" not in text

    def test_without_cell_33_auto_selects_the_best(self, session):
        _forget(session, "results")
        text = session.run(34)
        assert "🔍 Selection Method: Auto-selected best" in text and "→ [0]" in text
        assert "✅ Weights loaded successfully!" in text

    def test_manual_override_by_uncommenting_the_line(self, session):
        target = sorted((session.folder / "ckpt").glob("checkpoint_epoch0000_*.pt"))[-1]
        source = re.sub(r'^# MANUAL_CHECKPOINT = ".*"$', f"MANUAL_CHECKPOINT = {str(target)!r}",
                        session.source(34), flags=re.MULTILINE)  # fmt: skip
        text = session.run(34, source=source)
        assert "🔍 Selection Method: Manual override" in text
        assert f"📂 Loading checkpoint: {target.name}" in text and "Epoch: 0" in text

    def test_no_checkpoints(self, session, tmp_path):
        _forget(session, "results")
        session.code(f"saved_dir, CHECKPOINT_DIR = CHECKPOINT_DIR, {str(tmp_path / 'empty')!r}")
        text = session.run(34)
        session.code("CHECKPOINT_DIR = saved_dir")
        assert f"❌ No checkpoints found in {tmp_path / 'empty'}/" in text
        assert "Traceback" not in text and "AVAILABLE CHECKPOINTS" not in text

    def test_mismatch_prints_the_panel_and_leaves_the_model_unchanged(self, session):
        _forget(session, "results")
        session.code(
            "import torch\nfrom utils.model import GPT, config_for_preset\n"
            "model = GPT(config_for_preset('tiny', n_layer=3))\n"
            "before = {k: v.clone() for k, v in model.state_dict().items()}"
        )
        text = session.run(34)
        same = session.code("print(all(torch.equal(before[k], v) for k, v in model.state_dict().items()))")
        session.run(13)  # back to the notebook's own model
        assert "❌ ERROR: Model architecture mismatch!" in text and "n_layer: checkpoint 2, model 3" in text
        assert "Traceback" not in text and same.strip() == "True"

    def test_strict_off_loads_what_fits_into_a_bigger_model(self, session):
        _forget(session, "results")
        session.code(
            "import torch\nfrom utils.model import GPT, config_for_preset\n"
            "model = GPT(config_for_preset('tiny', n_layer=3))\n"
            "block_2 = {k: v.clone() for k, v in model.state_dict().items() if '.h.2.' in k}"
        )
        source = re.sub(r"^STRICT = True", "STRICT = False", session.source(34), flags=re.MULTILINE)
        text = session.run(34, source=source)
        kept = session.code("print(all(torch.equal(block_2[k], model.state_dict()[k]) for k in block_2))")
        session.run(13)  # back to the notebook's own model
        assert "PARTIAL LOAD" in text and "🟰 Kept (the file lacks them):" in text
        assert "transformer.h.2.* (12 tensors)" in text and "Traceback" not in text
        assert kept.strip() == "True"


class TestCell35InKernel:
    def test_prints_when_fresh_and_when_already_present(self, session):
        _forget(session, "results", "load_report", *SESSION_NAMES)
        session.run(33)
        fresh = session.run(35)
        again = session.run(35)
        assert "Source: Cell 33" in fresh and all(f"{n}" in fresh for n in SESSION_NAMES)
        assert re.search(r"🆕 best_val_loss\s+new", fresh)
        assert re.search(r"🟰 best_val_loss\s+unchanged", again)
        assert "0 new, 0 updated" in again


class TestAnalysisCellsInKernel:
    def test_compare_checkpoints_leaves_the_model_and_prints_the_table(self, session):
        session.run(33)
        session.run(34)
        session.code("import torch\nkept = {k: v.clone() for k, v in model.state_dict().items()}")
        text = session.run(36)
        same = session.code("print(all(torch.equal(kept[k], v) for k, v in model.state_dict().items()))")
        assert "named by 'best, latest, earliest'" in text and "KL nats/token" in text and "(ref)" in text
        assert "checkpoint_epoch0000_" in text and "Same prompt 'ROMEO:'" in text
        assert same.strip() == "True" and "Traceback" not in text
        rows = session.code(
            "print(len(comparison.rows), comparison.rows[0].agreement, comparison.rows[0].kl)"
        )
        assert rows.split()[1:] == ["1.0", "0.0"] and int(rows.split()[0]) in (2, 3)  # best may be the latest

    def test_which_layers_changed_draws_the_recorded_epochs(self, session):
        session.run(33)
        session.run(34)
        text = session.run(37)
        assert "🧭 Epoch 3 moved most:" in text and "against checkpoint_epoch0000_" in text
        assert (session.folder / "out" / "layer_changes.png").stat().st_size > 10_000
        shape = session.code(
            "print(len(layer_report.paths), sorted(set(map(len, layer_report.table.values()))))"
        )
        assert shape.strip() == "2 [2]" and "Traceback" not in text


def test_model_not_found_in_a_fresh_kernel():
    with Kernel() as kernel:
        text = kernel.run(34)
    assert text.startswith("❌ Model instance not found!")
    assert "Run Cell 13 (Initialize Model)" in text and "Traceback" not in text


# ---------------------------------------------------------------- (d) resume after a kernel restart


def test_resume_after_restart_matches_the_uninterrupted_run(session, tmp_path):
    params = dict(
        EPOCHS=4, CHECKPOINT_DIR=str(tmp_path / "ckpt"), OUTPUT_DIR=str(tmp_path / "out"), KEEP_LAST=10
    )
    with Kernel(**params, EPOCHS_THIS_SESSION=2) as first:
        first.run_range(1, 32)
    assert _final_checkpoint(tmp_path / "ckpt")["epoch"] == 1  # two epochs done, then the "runtime died"
    with Kernel(**params, RESUME="latest") as second:
        outputs = second.run_range(1, 32)
    assert "✅ Complete state" in outputs[25]
    resumed, reference = _final_checkpoint(tmp_path / "ckpt"), session.reference
    assert resumed["global_step"] == reference["global_step"] == 20
    assert torch.equal(resumed["step_losses"], reference["step_losses"])
    weights, expected = resumed["model_state_dict"], reference["model_state_dict"]
    assert weights.keys() == expected.keys() and all(torch.equal(weights[k], expected[k]) for k in weights)
    assert resumed["history"] == reference["history"]


# ---------------------------------------------------------------- (e) Cell 34's PICKER in the trained session

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
CLICK_SECOND = """
import torch
from utils.training.engine.recovery import list_checkpoints
checkpoint_picker.dropdown.value = 1
checkpoint_picker.button.click()
chosen = list_checkpoints(CHECKPOINT_DIR)[1].path
saved = torch.load(chosen, map_location="cpu", weights_only=True)["model_state_dict"]
print(all(torch.equal(saved[k], v.cpu()) for k, v in model.state_dict().items()))
print(load_report is checkpoint_picker.report, Path(load_report.path) == chosen, chosen.name)
print("".join(o["text"] for o in checkpoint_picker.output.outputs))
"""


def _with_picker(kernel: Kernel) -> str:
    """Cell 34 with the PICKER box ticked, as Colab's form writes it."""
    source = kernel.source(34)
    assert "PICKER = False  # @param" in source
    return source.replace("PICKER = False  # @param", "PICKER = True  # @param")


def _shows_a_widget(cell) -> bool:
    return any(WIDGET_VIEW in out.get("data", {}) for out in cell.outputs)


def _without_timing(text: str) -> str:
    return re.sub(r"Loaded in .*", "Loaded in <time>", text)


class TestPickerInKernel:
    def test_without_a_front_end_the_text_path_runs_exactly(self, session):
        # nbclient (as papermill) is no front end: PICKER = True prints what PICKER = False prints
        session.code("import os\nos.environ.pop('JPY_SESSION_NAME', None)")
        _forget(session, "checkpoint_picker", "load_report")
        plain = session.run_cell(34)
        plain_path = session.code("print(load_report.path)").strip()
        picked = session.run_cell(34, source=_with_picker(session))
        state = session.code("print(load_report.path, checkpoint_picker)").split()
        assert _without_timing(output_text(picked)) == _without_timing(output_text(plain))
        assert not _shows_a_widget(picked) and state == [plain_path, "None"]

    def test_a_click_loads_the_chosen_checkpoint_and_sets_load_report(self, session):
        session.code("import os\nos.environ['JPY_SESSION_NAME'] = 'training.ipynb'  # as JupyterLab sets it")
        try:
            cell = session.run_cell(34, source=_with_picker(session))
            clicked = session.code("from pathlib import Path\n" + CLICK_SECOND)
            after = session.run(35)
        finally:
            session.code("os.environ.pop('JPY_SESSION_NAME', None)")
        assert _shows_a_widget(cell) and "✅ Weights loaded successfully!" in output_text(cell)
        same_weights, report_line = clicked.splitlines()[:2]
        assert same_weights == "True" and report_line.startswith("True True checkpoint_")
        assert "🔍 Selection Method: Picked in the widget (PICKER)" in clicked and "→ [1]" in clicked
        chosen_name = report_line.split()[-1]
        assert re.search(rf"loaded_checkpoint .*{chosen_name}", after), after


# ---------------------------------------------------------------- (f) ASYNC_SAVE with a mirror; a disconnect


def test_after_a_disconnect_the_mirror_alone_resumes_and_recovers_the_run(session, tmp_path):
    local, mirror = tmp_path / "ckpt", tmp_path / "mirror"
    params = dict(EPOCHS=4, CHECKPOINT_DIR=str(local), OUTPUT_DIR=str(tmp_path / "out"), KEEP_LAST=10,
                  ASYNC_SAVE=True, MIRROR_DIR=str(mirror))  # fmt: skip
    with Kernel(**params, EPOCHS_THIS_SESSION=2) as first:
        outputs = first.run_range(1, 32)
    assert f"copied to {mirror} in the background" in outputs[4] and "write speed ~" in outputs[6]
    assert "+ snapshot for background saves" in outputs[21]
    assert "Saves: in the background (ASYNC_SAVE)" in outputs[26] and "Mirror: one copy of" in outputs[26]
    assert f"☁️  Mirror {mirror}: 2 file(s) copied and verified" in outputs[32]
    kept = sorted(p.name for p in local.glob("*.pt"))
    assert kept == sorted(p.name for p in mirror.glob("*.pt")) and len(kept) == 2
    assert all((local / n).read_bytes() == (mirror / n).read_bytes() for n in kept)
    shutil.rmtree(local)  # the runtime is recycled: its disk is gone, the mirror (Drive) is not
    with Kernel(**params, RESUME="latest") as second:
        outputs = second.run_range(1, 35)
        second.code(
            "import time, torch\nfrom pathlib import Path\nfrom utils.training.engine.async_save import BackgroundWriter\n"
            f"slow = lambda path, s: time.sleep(0.5) or torch.save(s, path) or path\n"
            f"BackgroundWriter().save(Path({str(tmp_path / 'x.pt')!r}), {{'x': torch.ones(1)}}, slow)"
        )
        waited = second.run(33)
    assert "Fresh runtime:" in outputs[4] and "checkpoint(s) were copied back" in outputs[4]
    assert "✅ Complete state" in outputs[25] and "✅ Weights loaded successfully!" in outputs[34]
    resumed, reference = _final_checkpoint(local), session.reference
    assert (
        resumed["global_step"] == reference["global_step"] == 20
        and resumed["history"] == reference["history"]
    )
    assert torch.equal(resumed["step_losses"], reference["step_losses"])
    weights, expected = resumed["model_state_dict"], reference["model_state_dict"]
    assert all(torch.equal(weights[k], expected[k]) for k in expected)
    assert "🏆 Best: checkpoint_epoch000" in outputs[33] and "📈 History: 4 epochs recovered" in outputs[33]
    assert waited.startswith("⏳ Waiting for x.pt") and "✅ Done after" in waited
