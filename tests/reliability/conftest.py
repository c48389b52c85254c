"""Shared fixtures: the bad-input corpus, built once per session (one-thread torch: tests/conftest.py)."""

from __future__ import annotations

import pytest

from .corpus import build_corpus
from .report import FIGURES


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """Every case of corpus.CASE_NAMES, written under one temporary folder."""
    root = tmp_path_factory.mktemp("corpus")
    return build_corpus(root)


@pytest.fixture(autouse=True)
def no_payload_ran(request):
    """After every test that used the corpus: no malicious payload created its file."""
    yield
    if "corpus" in request.fixturenames:
        cases = request.getfixturevalue("corpus")
        ran = [case.name for case in cases.values() if case.sentinel is not None and case.sentinel.exists()]
        assert not ran, f"malicious payload ran for {ran}"


def pytest_terminal_summary(terminalreporter):
    """The figures docs/reliability.md quotes: inputs, faults and fuzz examples, and their outcomes."""
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for section, figures in FIGURES.items():
        terminalreporter.write_line(f"{section}:")
        for label, value in figures.items():
            terminalreporter.write_line(f"    {label}: {value}")
