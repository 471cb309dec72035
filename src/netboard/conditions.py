"""Conditions as data: a small AST parsed from the knowledge-base YAML.

Written in YAML as, for example::

    all:
      - {field: sstr_imaging, is: positive}
      - {field: ki67_percent, lt: 10}
      - not: {fact: extrahepatic_disease}

Nodes carry no behaviour: evaluating them (``engine.evaluate``) and describing
them (``engine.explain``) are separate visitors.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from netboard.errors import Problem

#: Comparison operators and whether they take a list operand.
OPERATORS: dict[str, bool] = {
    "is": False,
    "in": True,
    "lt": False,
    "le": False,
    "gt": False,
    "ge": False,
    "has": False,
    "has_any": True,
    "known": False,
}
NUMERIC_OPERATORS = frozenset({"lt", "le", "gt", "ge"})
#: ``known`` looks at presence itself (never UNKNOWN), so it is not monotone in the data:
#: the KB check allows it in alerts, monitoring and notes, never in rules or criteria.
PRESENCE_OPERATORS = frozenset({"known"})
LIST_OPERATORS = frozenset({"has", "has_any"})


@dataclass(frozen=True, slots=True)
class All:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition


@dataclass(frozen=True, slots=True)
class Compare:
    """``field OP value``; an unknown field makes it UNKNOWN."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class Fact:
    """A named condition defined once in ``facts.yaml``."""

    name: str


@dataclass(frozen=True, slots=True)
class EligibilityIs:
    """The status of an eligibility check (eligible/not_eligible map to TRUE/FALSE)."""

    name: str
    status: str


@dataclass(frozen=True, slots=True)
class Planned:
    """TRUE when the plan holds ``code`` as recommended or consider (alerts, monitoring)."""

    codes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Shared:
    """A sub-condition the engine evaluates once per case however often it appears.

    Never written in YAML: the engine wraps guard conditions in it when it folds them into
    the positive rules of their code.
    """

    key: str
    item: Condition


@dataclass(frozen=True, slots=True)
class Holds:
    """TRUE when ``item`` is TRUE, FALSE otherwise (UNKNOWN counts as not holding).

    Never written in YAML: the knowledge-base loader builds it for the ``unless`` exception
    of a guard, which lifts the guard only when the exception is known to hold.
    """

    item: Condition


Condition = All | AnyOf | Not | Compare | Fact | EligibilityIs | Planned | Shared | Holds

TRUE_CONDITION: Condition = All(())


class ConditionSyntaxError(ValueError):
    """A condition in the knowledge base is malformed."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(map(str, problems)))
        self.problems = problems


def parse_condition(data: Any, where: str = "when") -> Condition:
    """Parse a YAML condition; raise ``ConditionSyntaxError`` naming the path at fault.

    >>> parse_condition({"all": [{"field": "ki67_percent", "lt": 10}]})
    All(items=(Compare(field='ki67_percent', op='lt', value=10),))
    """
    problems: list[Problem] = []
    node = _parse(data, where, problems)
    if problems:
        raise ConditionSyntaxError(problems)
    return node


def _parse(data: Any, where: str, problems: list[Problem]) -> Condition:
    if data == "always":
        return TRUE_CONDITION
    if not isinstance(data, Mapping):
        problems.append(Problem(where, f"a condition must be a mapping, got {data!r}"))
        return TRUE_CONDITION
    keys = set(data)
    if keys in ({"all"}, {"any"}):
        (key,) = keys
        items = data[key]
        if not isinstance(items, list) or not items:
            problems.append(Problem(f"{where}.{key}", "expects a non-empty list"))
            return TRUE_CONDITION
        parsed = tuple(_parse(x, f"{where}.{key}[{i}]", problems) for i, x in enumerate(items))
        return All(parsed) if key == "all" else AnyOf(parsed)
    if keys == {"not"}:
        return Not(_parse(data["not"], f"{where}.not", problems))
    if keys == {"fact"}:
        return Fact(str(data["fact"]))
    if keys == {"planned"}:
        codes = data["planned"]
        codes = codes if isinstance(codes, list) else [codes]
        return Planned(tuple(str(c) for c in codes))
    if keys == {"eligibility", "is"}:
        return EligibilityIs(str(data["eligibility"]), str(data["is"]))
    if "field" in keys and len(keys) == 2:
        (op,) = keys - {"field"}
        if op not in OPERATORS:
            problems.append(
                Problem(where, f"unknown operator {op!r}; use one of {sorted(OPERATORS)}")
            )
            return TRUE_CONDITION
        value = data[op]
        if OPERATORS[op] != isinstance(value, list):
            kind = "a list" if OPERATORS[op] else "a single value"
            problems.append(Problem(where, f"operator {op!r} takes {kind}, got {value!r}"))
            return TRUE_CONDITION
        return Compare(str(data["field"]), op, tuple(value) if isinstance(value, list) else value)
    problems.append(Problem(where, f"unrecognised condition keys {sorted(keys)}"))
    return TRUE_CONDITION


def walk(node: Condition) -> Iterator[Condition]:
    """Every node of a condition tree, depth first.

    >>> [type(n).__name__ for n in walk(Not(Fact("x")))]
    ['Not', 'Fact']
    """
    yield node
    if isinstance(node, All | AnyOf):
        for item in node.items:
            yield from walk(item)
    elif isinstance(node, Not | Shared | Holds):
        yield from walk(node.item)
