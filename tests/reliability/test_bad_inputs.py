"""Every corpus case (tests/reliability/corpus.py) against listing, metadata, loading and resume.

For each case: the listing never crashes and names each skipped file with a reason;
loading raises one of the project's own errors whose message names the file, the
problem and the fix, and leaves the model bit-for-bit unchanged; a malicious
payload never runs (checked after every test by conftest.no_payload_ran).
"""

from __future__ import annotations

import re

import pytest
import torch

from utils.notebook.panels import render_load_error, render_load_report
from utils.training import build_optimizer, restore_training_state
from utils.training.engine.errors import CheckpointError
from utils.training.engine.loading import load_model_weights
from utils.training.engine.metadata import read_checkpoint_metadata
from utils.training.engine.recovery import latest_checkpoint, list_checkpoints, recover_training_results

from .corpus import CASE_NAMES, ERROR_NAMES, LOADABLE_NAMES, fresh_model, make_payload
from .report import count, note

SECTION = "bad-input corpus (tests/reliability/corpus.py)"


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def assert_unchanged(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert list(after) == list(before)
    changed = [name for name, tensor in before.items() if not torch.equal(after[name], tensor)]
    assert not changed, f"a failed load changed {changed}"


def assert_helpful(error: CheckpointError, case) -> None:
    """The message names the file, says what was wrong (the case's regex) and what to do."""
    text = str(error)
    assert case.path.name in text, text
    assert re.search(case.problem, error.problem, re.IGNORECASE), error.problem
    assert error.fix and f"Fix: {error.fix}" in text, text


class TestListCheckpoints:
    @pytest.mark.parametrize("name", CASE_NAMES)
    def test_never_crashes_and_names_each_skipped_file(self, corpus, name):
        case = corpus[name]
        note(
            SECTION,
            "cases",
            f"{len(CASE_NAMES)} ({len(ERROR_NAMES)} must be refused, {len(LOADABLE_NAMES)} must load)",
        )
        lines = []
        listed = list_checkpoints(case.folder, on_skip=lines.append)
        count(SECTION, "list_checkpoints calls, none crashed")
        assert [info.path for info in listed] == ([case.path] if case.listed else [])
        if case.listed:
            assert lines == []
            return
        # the skipped thing is the file, or the "folder" itself when it is a file
        subject = case.path if case.folder.is_dir() else case.folder
        on_disk = subject.exists() or subject.is_symlink()
        assert len(lines) == (1 if on_disk else 0), lines
        assert all(line.startswith(f"Skipped {subject.name}: ") and len(line) > 30 for line in lines)

    def test_a_path_that_is_a_file_is_reported_not_raised(self, corpus):
        lines = []
        assert list_checkpoints(corpus["folder-that-is-a-file"].folder, on_skip=lines.append) == []
        assert lines == ["Skipped folder-that-is-a-file: is a file, not a folder"]


class TestLatestCheckpointAndRecovery:
    @pytest.mark.parametrize("name", CASE_NAMES)
    def test_only_listed_files_are_offered(self, corpus, name):
        case = corpus[name]
        latest = latest_checkpoint(case.folder)
        assert (latest.path if latest else None) == (case.path if case.listed else None)
        if case.listed:
            assert recover_training_results(case.folder)["checkpoint_path"] == str(case.path)
        else:
            with pytest.raises(
                CheckpointError, match="no valid checkpoint|holds no checkpoint|does not exist"
            ):
                recover_training_results(case.folder)


class TestReadCheckpointMetadata:
    @pytest.mark.parametrize("name", CASE_NAMES)
    def test_reads_or_raises_our_error_naming_the_file(self, corpus, name):
        case = corpus[name]
        if case.listed:
            assert read_checkpoint_metadata(case.path).kind in ("full", "legacy", "bare")
            return
        with pytest.raises(CheckpointError) as caught:
            read_checkpoint_metadata(case.path)
        assert case.path.name in str(caught.value) and caught.value.problem


class TestLoadModelWeightsOnBadInput:
    @pytest.mark.parametrize("name", ERROR_NAMES)
    def test_raises_our_error_and_leaves_the_model_unchanged(self, corpus, name):
        case = corpus[name]
        model = fresh_model().train()
        before = snapshot(model)
        with pytest.raises(case.errors) as caught:
            load_model_weights(model, case.path, "cpu")
        assert_helpful(caught.value, case)
        assert_unchanged(model, before)
        assert model.training  # not switched to eval by a failed load
        count(SECTION, "load_model_weights refusals: own error, file + problem + fix named, model unchanged")

    @pytest.mark.parametrize("name", ERROR_NAMES)
    def test_the_error_panel_names_the_file(self, corpus, name):
        case = corpus[name]
        with pytest.raises(CheckpointError) as caught:
            load_model_weights(fresh_model(), case.path, "cpu")
        panel = render_load_error(caught.value, next_candidate_name="checkpoint_epoch0001_step000024.pt")
        assert "❌" in panel and case.path.name in panel


class TestLoadModelWeightsOnOddButValidInput:
    @pytest.mark.parametrize("name", LOADABLE_NAMES)
    def test_loads_every_tensor_from_the_file(self, corpus, name):
        case = corpus[name]
        model = fresh_model()
        report = load_model_weights(model, case.path, "cpu")
        stored = torch.load(case.path, weights_only=True)["model_state_dict"]
        for tensor_name, tensor in model.state_dict().items():
            assert torch.equal(tensor, stored[tensor_name].to(tensor.dtype).nan_to_num()) or (
                torch.equal(tensor.nan_to_num(), stored[tensor_name].float().nan_to_num())
            )
        assert report.verified is True and report.name == case.path.name
        count(SECTION, "odd but valid files loaded and verified")

    def test_nan_and_inf_tensors_are_named_in_a_warning(self, corpus):
        case = corpus["nan-and-inf-weights"]
        report = load_model_weights(fresh_model(), case.path, "cpu")
        assert sorted(report.nonfinite_tensors) == sorted(case.notes["nonfinite"])
        warning = " ".join(report.warnings)
        assert all(name in warning for name in case.notes["nonfinite"]) and "NaN or Inf" in warning
        assert all(name in render_load_report(report) for name in case.notes["nonfinite"])

    @pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
    def test_half_precision_converts_and_says_so(self, corpus, dtype):
        report = load_model_weights(fresh_model(), corpus[f"{dtype}-weights-for-float32-model"].path, "cpu")
        tensors = len(report.dtype_conversions)
        assert tensors > 0 and all(c[1:] == (dtype, "float32") for c in report.dtype_conversions)
        assert f"Dtype conversions: {tensors} tensors {dtype} → float32" in render_load_report(report)

    def test_odd_characters_in_folder_and_file_names_work(self, corpus):
        case = corpus["path-with-spaces-and-non-ascii"]
        assert " " in str(case.path) and not str(case.path).isascii()
        assert [info.path for info in list_checkpoints(case.folder)] == [case.path]
        assert load_model_weights(fresh_model(), str(case.path), "cpu").verified


class TestRestoreTrainingStateOnBadInput:
    @pytest.mark.parametrize("name", ERROR_NAMES)
    def test_resume_raises_our_error_and_changes_nothing(self, corpus, name):
        case = corpus[name]
        model = fresh_model()
        optimizer = build_optimizer(model, 1e-3, 0.1)
        before = snapshot(model)
        with pytest.raises(CheckpointError) as caught:
            restore_training_state(case.path, model, optimizer)
        assert case.path.name in str(caught.value)
        assert_unchanged(model, before)
        assert optimizer.state_dict()["state"] == {}
        count(SECTION, "restore_training_state refusals: own error, model and optimizer unchanged")


class TestMaliciousPayload:
    def test_the_payload_is_live_when_unpickled_without_protection(self, tmp_path):
        """Control: the corpus's payload really creates its file when a reader trusts it."""
        sentinel = tmp_path / "ran"
        torch.save({"model_state_dict": {}, "x": make_payload(sentinel)}, tmp_path / "evil.pt")
        torch.load(tmp_path / "evil.pt", weights_only=False)
        assert sentinel.exists()

    @pytest.mark.parametrize("name", [n for n in CASE_NAMES if n.startswith("malicious")])
    def test_no_reader_runs_it(self, corpus, name):
        case = corpus[name]
        list_checkpoints(case.folder, on_skip=None)
        latest_checkpoint(case.folder)
        with pytest.raises(CheckpointError):
            read_checkpoint_metadata(case.path) if not case.listed else load_model_weights(
                fresh_model(), case.path
            )
        with pytest.raises(CheckpointError, match="run code"):
            load_model_weights(fresh_model(), case.path, "cpu")
        assert not case.sentinel.exists()
        count(SECTION, "malicious files read by listing, metadata and loader; payload never ran")
