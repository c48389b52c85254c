"""training.ipynb is generated from tools/notebook_cells.py, clean, and made of thin Colab form cells."""

from __future__ import annotations

import ast
import re
import statistics

import nbformat
import pytest

from tools.build_notebook import NOTEBOOK, main, render_notebook
from tools.notebook_cells import FIXED_TITLES
from utils.notebook.train_settings import SETTING_NAMES

TITLE_RE = re.compile(r'^# @title (?P<title>.+) \{ display-mode: "form" \}$')


@pytest.fixture(scope="module")
def notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


@pytest.fixture(scope="module")
def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _cell(code_cells, number):
    return code_cells[number - 1]


class TestBuilder:
    def test_committed_notebook_equals_builder_output(self):
        assert NOTEBOOK.read_text(encoding="utf-8") == render_notebook(), (
            "run: python tools/build_notebook.py"
        )

    def test_check_mode_reports_up_to_date(self, capsys):
        assert main(["--check"]) == 0
        assert "up to date" in capsys.readouterr().out

    def test_notebook_is_valid_and_has_a_python_kernel(self, notebook):
        nbformat.validate(notebook)
        assert notebook.metadata.kernelspec.name == "python3"
        assert notebook.metadata.accelerator == "GPU"


class TestCleanNotebook:
    def test_no_outputs_and_no_execution_counts(self, code_cells):
        assert all(cell.outputs == [] and cell.execution_count is None for cell in code_cells)

    def test_every_code_cell_tagged_with_its_number(self, code_cells):
        for number, cell in enumerate(code_cells, start=1):
            assert f"cell-{number}" in cell.metadata.tags

    def test_only_cell_3_is_the_parameters_cell(self, code_cells):
        tagged = [n for n, c in enumerate(code_cells, start=1) if "parameters" in c.metadata.tags]
        assert tagged == [3]


class TestFormCells:
    def test_every_code_cell_starts_with_a_form_title(self, code_cells):
        for number, cell in enumerate(code_cells, start=1):
            first = cell.source.splitlines()[0]
            assert TITLE_RE.match(first), f"Cell {number}: {first!r}"

    @pytest.mark.parametrize("number", sorted(FIXED_TITLES))
    def test_fixed_cells_have_their_titles(self, code_cells, number):
        first = _cell(code_cells, number).source.splitlines()[0]
        assert TITLE_RE.match(first)["title"] == FIXED_TITLES[number]

    def test_cell_34_header_is_the_designs(self, code_cells):
        header = '# @title 🔧 Optional: Load Model Weights from Checkpoint { display-mode: "form" }'
        assert _cell(code_cells, 34).source.splitlines()[0] == header

    def test_numbered_titles_match_positions(self, code_cells):
        for number, cell in enumerate(code_cells, start=1):
            title = TITLE_RE.match(cell.source.splitlines()[0])["title"]
            assert number == 34 or title.startswith(f"{number}. "), f"Cell {number}: {title!r}"

    def test_settings_are_form_params(self, code_cells):
        for number, cell in enumerate(code_cells, start=1):
            for line in cell.source.splitlines():
                match = re.match(r"^([A-Z][A-Z0-9_]*) = (.+)$", line)
                if match and match[1] != "MANUAL_CHECKPOINT":
                    assert "# @param" in line, f"Cell {number}: {line!r}"

    def test_parameters_cell_has_the_headless_settings(self, code_cells):
        source = _cell(code_cells, 3).source
        for name in ("MODEL_PRESET", "EPOCHS", "CHECKPOINT_DIR", "OUTPUT_DIR", "DEVICE", "RESUME", "SEED"):
            assert re.search(rf"^{name} = .+# @param", source, re.MULTILINE), name


class TestThinCells:
    def test_no_def_or_class_in_cells(self, code_cells):
        for number, cell in enumerate(code_cells, start=1):
            nodes = ast.walk(ast.parse(cell.source))
            defs = [n for n in nodes if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
            assert not defs, f"Cell {number} defines {[d.name for d in defs]}"

    def test_median_cell_is_short(self, code_cells):
        code_lines = [
            sum(1 for line in c.source.splitlines() if line.strip() and not line.lstrip().startswith("#"))
            for c in code_cells
        ]
        assert statistics.median(code_lines) <= 6

    def test_training_settings_reach_the_run_only_through_train_config(self, code_cells):
        # One source of truth: the optimizer, schedule, batches and checkpoints all read train_config,
        # so what a checkpoint stores is what the run used.
        builder = [n for n, c in enumerate(code_cells, start=1) if "train_config_from(globals()" in c.source]
        assert builder == [12]
        for number, cell in enumerate(code_cells, start=1):
            loads = {n.id for n in ast.walk(ast.parse(cell.source)) if isinstance(n, ast.Name)}
            used = loads & (set(SETTING_NAMES.values()) - {"SEED"}) if number != 3 else set()
            if number in (4, 6):  # the set-up cells choose and check the mirror folder before Cell 12
                used -= {"MIRROR_DIR"}
            assert not used, f"Cell {number} reads {sorted(used)} instead of train_config"

    def test_cell_34_is_short_and_calls_the_library(self, code_cells):
        source = _cell(code_cells, 34).source
        assert len(source.splitlines()) <= 20
        assert re.search(r"load_weights_cell\(\s*globals\(\)", source)

    def test_cell_34_has_exactly_one_commented_manual_override(self, code_cells):
        lines = _cell(code_cells, 34).source.splitlines()
        commented = [line for line in lines if re.match(r"^#\s*MANUAL_CHECKPOINT\s*=", line)]
        assert len(commented) == 1
        assert re.match(r'^# MANUAL_CHECKPOINT = ".+\.pt"$', commented[0])
