"""Message helpers for values read from files."""

from __future__ import annotations

from utils.training.engine.text import json_type


class TestJsonType:
    def test_every_json_type_by_its_json_name(self):
        values = ({}, [], "x", True, None, 1, 1.5)
        assert [json_type(v) for v in values] == [
            "object",
            "array",
            "string",
            "boolean",
            "null",
            "number",
            "number",
        ]
