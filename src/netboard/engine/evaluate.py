"""Evaluate a condition against a case with three-valued logic, keeping the residual.

``evaluate`` returns the truth value and, when it is UNKNOWN, the residual
condition (only the undecided parts) and the case fields that would decide it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from netboard.case import Case, field_paths
from netboard.conditions import All, AnyOf, Compare, Condition, EligibilityIs, Fact, Not, Planned
from netboard.kb.schema import COMPUTED_SOURCES, FactDef
from netboard.logic import Truth


@dataclass(frozen=True, slots=True)
class Result:
    truth: Truth
    residual: Condition | None = None
    unknown: frozenset[str] = frozenset()


TRUE = Result(Truth.TRUE)
FALSE = Result(Truth.FALSE)


@dataclass(slots=True)
class Context:
    """What a condition can see: the case, computed fields, facts, eligibility, the plan."""

    case: Case
    computed: Mapping[str, Any]
    facts: Mapping[str, FactDef]
    eligibility: Mapping[str, str] = field(default_factory=dict)
    eligibility_unknown: Mapping[str, frozenset[str]] = field(default_factory=dict)
    planned: frozenset[str] = frozenset()
    _memo: dict[str, Result] = field(default_factory=dict)
    _values: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # One flat lookup table (case fields, labs.*, computed fields) for the hot path.
        self._values = {name: self.case.value(name) for name in field_paths()}
        self._values.update(self.computed)

    def value(self, name: str) -> Any:
        return self._values.get(name)


def sources(name: str, ctx: Context) -> frozenset[str]:
    """The case fields behind a field name that are themselves unknown.

    Once the grade is known, only the stated differentiation can still decide NET versus NEC.
    """
    if name in ("who_2019", "differentiation_inferred") and ctx.value("grade") is not None:
        return frozenset({"differentiation"}) if ctx.case.differentiation is None else frozenset()
    if name in COMPUTED_SOURCES:
        return frozenset(s for s in COMPUTED_SOURCES[name] if ctx.case.value(s) is None)
    return frozenset({name})


#: One evaluator per node type (a plain table: cheaper than singledispatch on the hot path).
EVALUATORS: dict[type, Callable[[Any, Context], Result]] = {}


def _register(
    kind: type,
) -> Callable[[Callable[[Any, Context], Result]], Callable[[Any, Context], Result]]:
    def deco(fn: Callable[[Any, Context], Result]) -> Callable[[Any, Context], Result]:
        EVALUATORS[kind] = fn
        return fn

    return deco


def evaluate(node: Condition, ctx: Context) -> Result:
    """Evaluate ``node``; see the module docstring."""
    return EVALUATORS[type(node)](node, ctx)


@_register(All)
def _all(node: All, ctx: Context) -> Result:
    open_: list[Result] = []
    for item in node.items:
        r = evaluate(item, ctx)
        if r.truth is Truth.FALSE:
            return FALSE
        if r.truth is Truth.UNKNOWN:
            open_.append(r)
    return _combine(open_, All)


@_register(AnyOf)
def _any(node: AnyOf, ctx: Context) -> Result:
    open_: list[Result] = []
    for item in node.items:
        r = evaluate(item, ctx)
        if r.truth is Truth.TRUE:
            return TRUE
        if r.truth is Truth.UNKNOWN:
            open_.append(r)
    if not open_:
        return FALSE
    return _combine(open_, AnyOf)


def _combine(open_: list[Result], kind: type[All] | type[AnyOf]) -> Result:
    if not open_:
        return TRUE
    unknown = frozenset().union(*(r.unknown for r in open_))
    residuals = tuple(r.residual for r in open_ if r.residual is not None)
    residual = residuals[0] if len(residuals) == 1 else kind(residuals)
    return Result(Truth.UNKNOWN, residual, unknown)


@_register(Not)
def _not(node: Not, ctx: Context) -> Result:
    r = evaluate(node.item, ctx)
    if r.truth is Truth.UNKNOWN:
        return Result(Truth.UNKNOWN, Not(r.residual) if r.residual else None, r.unknown)
    return FALSE if r.truth is Truth.TRUE else TRUE


@_register(Compare)
def _compare(node: Compare, ctx: Context) -> Result:
    value = ctx.value(node.field)
    if node.op == "known":
        return TRUE if (value is not None) == bool(node.value) else FALSE
    if value is None:
        return Result(Truth.UNKNOWN, node, sources(node.field, ctx))
    return TRUE if compare(node.op, value, node.value) else FALSE


def compare(op: str, value: Any, operand: Any) -> bool:
    """Apply a comparison operator to a known value.

    >>> compare("has_any", ("liver", "bone"), ("bone", "lung"))
    True
    """
    if op == "is":
        return bool(value == operand)
    if op == "in":
        return value in operand
    if op == "lt":
        return bool(value < operand)
    if op == "le":
        return bool(value <= operand)
    if op == "gt":
        return bool(value > operand)
    if op == "ge":
        return bool(value >= operand)
    if op == "has":
        return operand in value
    if op == "has_any":
        return any(x in value for x in operand)
    raise ValueError(f"unknown operator {op!r}")  # pragma: no cover - the KB check rejects it


@_register(Fact)
def _fact(node: Fact, ctx: Context) -> Result:
    cached = ctx._memo.get(node.name)
    if cached is None:
        r = evaluate(ctx.facts[node.name].when, ctx)
        # Keep the fact's name as the residual: its label reads better than its expansion.
        cached = Result(r.truth, node, r.unknown) if r.truth is Truth.UNKNOWN else r
        ctx._memo[node.name] = cached
    return cached


@_register(EligibilityIs)
def _eligibility(node: EligibilityIs, ctx: Context) -> Result:
    status = ctx.eligibility.get(node.name)
    if status is None or status == "undetermined":
        if node.status == "undetermined":
            return TRUE if status == "undetermined" else FALSE
        return Result(Truth.UNKNOWN, node, ctx.eligibility_unknown.get(node.name, frozenset()))
    return TRUE if status == node.status else FALSE


@_register(Planned)
def _planned(node: Planned, ctx: Context) -> Result:
    return TRUE if any(c in ctx.planned for c in node.codes) else FALSE
