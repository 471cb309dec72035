"""Reading one knowledge-base file: problems are collected with the file and key named."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, TypeVar

from netboard.conditions import (
    Condition,
    ConditionSyntaxError,
    parse_condition,
)
from netboard.errors import Problem

E = TypeVar("E", bound=StrEnum)


class Reader:
    """Collects problems while reading one file's entries."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def fail(self, where: str, message: str) -> None:
        self.problems.append(Problem(f"{self.file}:{where}", message))

    def mapping(
        self, data: Any, where: str, allowed: Iterable[str], required: Iterable[str]
    ) -> bool:
        if not isinstance(data, Mapping):
            self.fail(where, f"expected a mapping, got {type(data).__name__}")
            return False
        allowed_set = set(allowed)
        for key in data:
            if key not in allowed_set:
                self.fail(
                    f"{where}.{key}", f"unknown key; allowed: {', '.join(sorted(allowed_set))}"
                )
        ok = True
        for key in required:
            if key not in data:
                self.fail(where, f"missing required key {key!r}")
                ok = False
        return ok

    def enum(self, enum: type[E], value: Any, where: str) -> E | None:
        if isinstance(value, str) and value in enum._value2member_map_:
            return enum(value)
        self.fail(where, f"{value!r} is not a {enum.__name__} code")
        return None

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(where, "expected non-empty text")
            return ""
        return " ".join(value.split())

    def ids(self, value: Any, where: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            self.fail(where, "expected a list of ids")
            return ()
        return tuple(value)

    def condition(self, value: Any, where: str) -> Condition:
        try:
            return parse_condition(value, where)
        except ConditionSyntaxError as exc:
            for p in exc.problems:
                self.fail(p.field, p.message)
            return parse_condition({"all": [{"field": "id", "is": "__invalid__"}]})


def entries(data: Any, reader: Reader) -> list[Any]:
    if not isinstance(data, list):
        reader.fail("(top)", "expected a list of entries")
        return []
    return data
