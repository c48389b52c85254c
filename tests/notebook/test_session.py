"""Cell 35 always reports every variable: new, unchanged, updated or missing, and where it came from."""

from __future__ import annotations

from types import SimpleNamespace

from utils.notebook.session import SESSION_VARIABLES, extract_session_variables

RESULTS = {
    "checkpoint_path": "/c/best.pt",
    "checkpoint_dir": "/c",
    "history": [{"epoch": 0, "val_loss": 2.0}],
    "train_losses": [3.0],
    "val_losses": [2.0],
    "learning_rates": [1e-3],
    "best_epoch": 0,
    "best_val_loss": 2.0,
    "epochs": [0],
    "config": {"model": {}},
}


def _statuses(report):
    return {v.name: v.status for v in report.variables}


class TestExtractSessionVariables:
    def test_fresh_variables_are_new_and_set(self):
        namespace = {"results": dict(RESULTS), "load_report": SimpleNamespace(path="/c/best.pt")}
        report = extract_session_variables(namespace)
        assert set(_statuses(report).values()) == {"new"}
        assert namespace["best_val_loss"] == 2.0 and namespace["checkpoint_config"] == {"model": {}}
        assert namespace["loaded_checkpoint"] == "/c/best.pt"
        assert "Cell 33" in report.source

    def test_second_run_prints_every_variable_as_unchanged(self):
        namespace = {"results": dict(RESULTS), "load_report": SimpleNamespace(path="/c/best.pt")}
        extract_session_variables(namespace)
        report = extract_session_variables(namespace)
        text = "\n".join(report.lines())
        assert set(_statuses(report).values()) == {"unchanged"}
        assert all(name in text for name in SESSION_VARIABLES)
        assert f"0 new, 0 updated, {len(SESSION_VARIABLES) + 1} already present and unchanged" in text

    def test_changed_value_is_updated(self):
        namespace = {"results": dict(RESULTS), "best_epoch": 7}
        report = extract_session_variables(namespace)
        assert _statuses(report)["best_epoch"] == "updated" and namespace["best_epoch"] == 0

    def test_without_cell_34_loaded_checkpoint_is_missing(self):
        report = extract_session_variables({"results": dict(RESULTS)})
        assert _statuses(report)["loaded_checkpoint"] == "missing"

    def test_missing_key_is_reported_not_raised(self):
        results = {k: v for k, v in RESULTS.items() if k != "learning_rates"}
        report = extract_session_variables({"results": results})
        assert _statuses(report)["learning_rates"] == "missing"

    def test_without_cell_33_recovers_from_the_loaded_checkpoint(self):
        calls = []
        namespace = {"load_report": SimpleNamespace(path="/run/ckpt/epoch1.pt")}

        def recover(folder):
            calls.append(str(folder))
            return dict(RESULTS)

        report = extract_session_variables(namespace, recover=recover)
        assert calls == ["/run/ckpt"] and namespace["checkpoint_path"] == "/run/ckpt/epoch1.pt"
        assert "Cell 34" in report.source

    def test_nothing_found_still_prints_each_variable(self):
        def recover(folder):
            raise FileNotFoundError(folder)

        report = extract_session_variables({"CHECKPOINT_DIR": "/nowhere"}, recover=recover)
        text = "\n".join(report.lines())
        assert "nothing found" in text and all(name in text for name in SESSION_VARIABLES)
