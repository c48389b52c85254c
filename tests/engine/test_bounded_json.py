"""JSON parsed only within a budget of objects and values (counted before json.loads)."""

from __future__ import annotations

import pytest

from utils.training.engine import bounded_json
from utils.training.engine.bounded_json import JsonBudget, JsonRefused, json_type, parse_bounded_json

SMALL = JsonBudget(containers=4, items=10)


class TestParseBoundedJson:
    def test_within_budget_parses(self):
        assert parse_bounded_json(b'{"a": [1, 2], "b": {"c": null}}', SMALL, "a config") == {
            "a": [1, 2],
            "b": {"c": None},
        }

    def test_too_many_containers_is_refused_without_parsing(self, monkeypatch):
        parsed = []
        monkeypatch.setattr(bounded_json.json, "loads", lambda *a, **k: parsed.append(1))
        with pytest.raises(
            JsonRefused, match=r"refused: a config holds about 5 JSON objects and lists, more than the 4"
        ):
            parse_bounded_json(b"[{},{},{},{}]", SMALL, "a config")
        assert parsed == []

    def test_too_many_values_is_refused(self):
        with pytest.raises(
            JsonRefused, match="refused: a config holds about 11 JSON values, more than the 10"
        ):
            parse_bounded_json(b"[" + b"1," * 10 + b"1]", SMALL, "a config")

    def test_not_json_and_too_deep_are_value_errors(self):
        with pytest.raises(ValueError):
            parse_bounded_json(b"{\xff}", SMALL, "a config")
        deep = b"[" * 100_000 + b"]" * 100_000
        with pytest.raises(ValueError, match="a config is nested too deeply"):
            parse_bounded_json(deep, JsonBudget(containers=200_000, items=10), "a config")


class TestJsonType:
    def test_names(self):
        assert [json_type(v) for v in ({}, [], "x", True, None, 1, 1.5)] == [
            "object",
            "array",
            "string",
            "boolean",
            "null",
            "number",
            "number",
        ]
