"""Evaluate a condition against a case with three-valued logic, keeping the residual.

``evaluate`` returns the truth value and, when it is UNKNOWN, the residual
condition (only the undecided parts) and the case fields that would decide it.

Each condition node is compiled once into a closure (one builder per node type, kept in
``BUILDERS``); evaluating a knowledge base's conditions then costs plain function calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from netboard.case import Case, field_paths
from netboard.conditions import (
    All,
    AnyOf,
    Compare,
    Condition,
    EligibilityIs,
    Fact,
    Holds,
    Not,
    Planned,
    Shared,
)
from netboard.engine.derive import COMPUTED, PyOps, unknown_sources
from netboard.fields import Choice, registry
from netboard.kb.model import FactDef, KnowledgeBase
from netboard.logic import Truth


@dataclass(frozen=True, slots=True)
class Result:
    truth: Truth
    residual: Condition | None = None
    unknown: frozenset[str] = frozenset()


TRUE = Result(Truth.TRUE)
FALSE = Result(Truth.FALSE)
#: An open result without its residual or unknown fields (``Context.truth_only``).
OPEN = Result(Truth.UNKNOWN)


@dataclass(slots=True)
class Context:
    """What a condition can see: the case, computed fields, facts, eligibility, the plan."""

    case: Case
    computed: Mapping[str, Any]
    facts: Mapping[str, FactDef]
    eligibility: Mapping[str, str] = field(default_factory=dict)
    eligibility_unknown: Mapping[str, frozenset[str]] = field(default_factory=dict)
    planned: frozenset[str] = frozenset()
    #: the knowledge base (its grading decides which fields a computed field still needs)
    kb: KnowledgeBase | None = None
    _memo: dict[str, Result] = field(default_factory=dict)
    _sources: dict[str, frozenset[str]] = field(default_factory=dict)
    _values: dict[str, Any] = field(default_factory=dict)
    #: > 0 while evaluating inside a fact, whose residual is the fact's own name: the inner
    #: residual would be thrown away, so it is not built.
    _in_fact: int = 0
    #: Only truth values are wanted (the board answer): an open result is ``OPEN``, with no
    #: residual and no unknown fields to gather.
    truth_only: bool = False

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
    if name not in COMPUTED:
        return frozenset({name})
    hit = ctx._sources.get(name)
    if hit is None:
        ops = PyOps(ctx.case.value)
        if ctx.kb is None:
            hit = ops.null_set(COMPUTED[name][1])
        else:
            hit = unknown_sources(ops, ctx.kb, name)
        ctx._sources[name] = hit
    return hit


Evaluator = Callable[[Context], Result]

#: One builder per node type: node -> closure evaluating it against a context.
BUILDERS: dict[type, Callable[[Any], Evaluator]] = {}

_COMPILED: dict[int, tuple[Condition, Evaluator]] = {}


def _builder(kind: type) -> Callable[[Callable[[Any], Evaluator]], Callable[[Any], Evaluator]]:
    def deco(fn: Callable[[Any], Evaluator]) -> Callable[[Any], Evaluator]:
        BUILDERS[kind] = fn
        return fn

    return deco


def compiled(node: Condition) -> Evaluator:
    """The closure for ``node``, built on first use (keyed by the node object itself)."""
    hit = _COMPILED.get(id(node))
    if hit is not None and hit[0] is node:
        return hit[1]
    fn = BUILDERS[type(node)](node)
    _COMPILED[id(node)] = (node, fn)
    return fn


def evaluate(node: Condition, ctx: Context) -> Result:
    """Evaluate ``node`` against ``ctx``; see the module docstring.

    >>> from netboard.case import load_case
    >>> ctx = Context(case=load_case({"ki67_percent": 8}), computed={}, facts={})
    >>> evaluate(Compare("ki67_percent", "lt", 10), ctx).truth
    <Truth.TRUE: 2>
    >>> evaluate(Compare("sstr_imaging", "is", "positive"), ctx).unknown
    frozenset({'sstr_imaging'})
    """
    return compiled(node)(ctx)


_UNKNOWN = Truth.UNKNOWN
_FALSE_T = Truth.FALSE
_TRUE_T = Truth.TRUE


def _junction(items: tuple[Condition, ...], kind: type[All] | type[AnyOf]) -> Evaluator:
    """All and AnyOf differ only in the truth that decides them at once (FALSE for All,
    TRUE for AnyOf) and in their value when every item takes the other one."""
    fns = tuple(compiled(item) for item in items)
    decisive = _FALSE_T if kind is All else _TRUE_T
    decided = FALSE if kind is All else TRUE
    otherwise = TRUE if kind is All else FALSE

    def run(ctx: Context) -> Result:
        open_: list[Result] = []
        for fn in fns:
            r = fn(ctx)
            t = r.truth
            if t is decisive:
                return decided
            if t is _UNKNOWN:
                open_.append(r)
        if not open_:
            return otherwise
        return _combine(open_, kind, ctx)

    return run


@_builder(All)
def _all(node: All) -> Evaluator:
    return _junction(node.items, All)


@_builder(AnyOf)
def _any(node: AnyOf) -> Evaluator:
    return _junction(node.items, AnyOf)


def _combine(open_: list[Result], kind: type[All] | type[AnyOf], ctx: Context) -> Result:
    """Merge the undecided items of a junction: their unknown fields and residuals."""
    if len(open_) == 1:
        return open_[0]
    if ctx.truth_only:
        return OPEN
    unknown = frozenset().union(*(r.unknown for r in open_))
    if ctx._in_fact:
        return Result(_UNKNOWN, None, unknown)
    residuals = tuple(r.residual for r in open_ if r.residual is not None)
    residual = residuals[0] if len(residuals) == 1 else kind(residuals)
    return Result(_UNKNOWN, residual, unknown)


@_builder(Not)
def _not(node: Not) -> Evaluator:
    inner = compiled(node.item)

    def run(ctx: Context) -> Result:
        r = inner(ctx)
        if r.truth is _UNKNOWN:
            if ctx.truth_only:
                return OPEN
            return Result(_UNKNOWN, Not(r.residual) if r.residual else None, r.unknown)
        return FALSE if r.truth is _TRUE_T else TRUE

    return run


def _test(op: str, operand: Any) -> Callable[[Any], bool]:
    """The comparison of ``op`` against a fixed operand, for a known value."""
    if op == "is":
        return lambda v: bool(v == operand)
    if op == "in":
        return lambda v: v in operand
    if op == "lt":
        return lambda v: bool(v < operand)
    if op == "le":
        return lambda v: bool(v <= operand)
    if op == "gt":
        return lambda v: bool(v > operand)
    if op == "ge":
        return lambda v: bool(v >= operand)
    if op == "has":
        return lambda v: operand in v
    if op == "has_any":
        return lambda v: any(x in v for x in operand)
    raise ValueError(f"unknown operator {op!r}")  # pragma: no cover - the KB check rejects it


def compare(op: str, value: Any, operand: Any) -> bool:
    """Apply a comparison operator to a known value.

    >>> compare("has_any", ("liver", "bone"), ("bone", "lung"))
    True
    """
    return _test(op, operand)(value)


@_builder(Compare)
def _compare(node: Compare) -> Evaluator:
    name = node.field
    if node.op == "known":
        wanted = bool(node.value)

        def run_known(ctx: Context) -> Result:
            return TRUE if (ctx._values.get(name) is not None) == wanted else FALSE

        return run_known
    test = _test(node.op, node.value)
    computed = name in COMPUTED
    plain_unknown = frozenset({name})
    spec = registry().spec(name)
    words = [m.value for m in spec.enum] if isinstance(spec, Choice) else []
    holding = [w for w in words if test(w)]
    failing = [w for w in words if not test(w)]

    def run(ctx: Context) -> Result:
        value = ctx._values.get(name)
        if value is None:
            limits = ctx.kb.plausibility.get(name) if ctx.kb is not None and words else None
            if limits:
                # An unknown field ranges only over the values possible given the stated facts.
                if all(implausible(ctx, name, w) for w in failing):
                    return TRUE
                if all(implausible(ctx, name, w) for w in holding):
                    return FALSE
            if ctx.truth_only:
                return OPEN
            return Result(_UNKNOWN, node, sources(name, ctx) if computed else plain_unknown)
        return TRUE if test(value) else FALSE

    return run


def implausible(ctx: Context, field_name: str, value: str) -> bool:
    """Whether the knowledge base rules ``value`` out for ``field_name`` given the stated facts
    (its plausibility condition is FALSE); a value without a condition is always possible."""
    key = f"plausible:{field_name}:{value}"
    hit = ctx._memo.get(key)
    if hit is None:
        assert ctx.kb is not None
        when = ctx.kb.plausibility.get(field_name, {}).get(value)
        ruled_out = when is not None and evaluate(when, ctx).truth is _FALSE_T
        hit = ctx._memo[key] = TRUE if ruled_out else FALSE
    return hit.truth is _TRUE_T


@_builder(Fact)
def _fact(node: Fact) -> Evaluator:
    name = node.name

    def run(ctx: Context) -> Result:
        cached = ctx._memo.get(name)
        if cached is None:
            ctx._in_fact += 1
            try:
                r = evaluate(ctx.facts[name].when, ctx)
            finally:
                ctx._in_fact -= 1
            # Keep the fact's name as the residual: its label reads better than its expansion.
            if r.truth is _UNKNOWN and not ctx.truth_only:
                r = Result(r.truth, node, r.unknown)
            cached = r
            ctx._memo[name] = cached
        return cached

    return run


@_builder(EligibilityIs)
def _eligibility(node: EligibilityIs) -> Evaluator:
    def run(ctx: Context) -> Result:
        status = ctx.eligibility.get(node.name)
        if status is None or status == "undetermined":
            if node.status == "undetermined":
                return TRUE if status == "undetermined" else FALSE
            if ctx.truth_only:
                return OPEN
            return Result(_UNKNOWN, node, ctx.eligibility_unknown.get(node.name, frozenset()))
        return TRUE if status == node.status else FALSE

    return run


@_builder(Planned)
def _planned(node: Planned) -> Evaluator:
    codes = node.codes

    def run(ctx: Context) -> Result:
        return TRUE if any(c in ctx.planned for c in codes) else FALSE

    return run


@_builder(Holds)
def _holds(node: Holds) -> Evaluator:
    inner = compiled(node.item)

    def run(ctx: Context) -> Result:
        return TRUE if inner(ctx).truth is _TRUE_T else FALSE

    return run


@_builder(Shared)
def _shared(node: Shared) -> Evaluator:
    key = f"shared:{node.key}"
    inner = compiled(node.item)

    def run(ctx: Context) -> Result:
        cached = ctx._memo.get(key)
        if cached is None:
            cached = ctx._memo[key] = inner(ctx)
        return cached

    return run
