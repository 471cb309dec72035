"""Compile the knowledge base's condition tree to one SELECT: the cohort audit as columns.

The per-patient engine (``engine.recommend``) and this compiler read the same rulebook: the
condition AST of ``facts.yaml``, the eligibility criteria, the rules with their guards folded
in by ``recommend``'s own plan, and the alerts. Nothing clinical is restated here.

Three-valued logic maps onto SQL as is: a condition compiles to a BOOLEAN whose NULL is
UNKNOWN, and SQL's AND/OR/NOT are Kleene's. What ``evaluate`` adds to UNKNOWN, the case fields
that would decide it, compiles to a second expression per node: a BIGINT bit set over
:func:`netboard.case.field_paths`, 0 wherever the truth is decided (union is ``|``). Rule
conditions, guard sets, facts and criteria are columns computed once and shared by reference.
``missing`` then counts, per field, the distinct "what it decides" labels whose bit set holds
the field, exactly as ``recommend`` fills its ``decides`` map, and orders fields by that count.

Why the column-wise forms equal ``recommend``'s loops:

* ``rec.CODE``: ``_choose`` keeps, per (code, phase), the best decided candidate and the best
  open branch of each polarity ranking above it, so the best status it keeps is the best status
  of *any* candidate of the group; across phases, the best over every candidate of the code.
* the plan (``Planned``) as alerts see it: a code is offered when some positive step for it is
  TRUE or an open branch; ``recommend`` keeps exactly those (a positive branch it drops ranks
  below a decided positive of the same code) and marks the alerts that need a branch.
* alerts: one per code, the most severe rule that holds, sorted by (severity, code).
* facts and guards are memoised per case in ``evaluate``; a fact is a projected column here.
  A fact that reads the plan or an eligibility status would depend on when it was first
  evaluated, so such a knowledge base is refused (``UnsupportedKnowledgeBase``).

The query is a chain of projection layers (CTEs) over the input table; see
:class:`AuditQuery`. Engines: ``netboard.batch.run`` (DuckDB, Spark) and
``netboard.batch.polars_engine``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import singledispatch
from typing import Any, cast

from sqlglot import exp

from netboard.case import field_paths
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
    walk,
)
from netboard.engine.derive import COMPUTED, unknown_sources
from netboard.engine.reads import static_fields
from netboard.engine.recommend import SEVERITY_ORDER, compile_plan
from netboard.fields import Choice, registry
from netboard.kb.model import KnowledgeBase
from netboard.vocab import (
    STATUS_RANK,
    EligibilityName,
    EligibilityStatus,
    Intervention,
    Severity,
    Status,
)

__all__ = [
    "INPUT",
    "AuditQuery",
    "Layer",
    "UnsupportedKnowledgeBase",
    "compile_audit",
    "compile_computed",
    "compile_conditions",
    "field_bit",
    "fields_of",
    "mask",
    "mask_of",
    "open_fields",
    "truth",
    "truth_of",
]

#: The placeholder table name the compiled query reads; ``AuditQuery.sql`` replaces it.
INPUT = "__netboard_input__"

#: Bit of each case field path in the unknown-field sets.
_BITS: dict[str, int] = {name: i for i, name in enumerate(field_paths())}
assert len(_BITS) < 63, "unknown-field sets are BIGINT bit sets"


def field_bit(name: str) -> int:
    """The bit of a case field in an unknown-field set.

    >>> field_bit("id"), field_bit("age_years")
    (1, 2)
    """
    return 1 << _BITS[name]


class UnsupportedKnowledgeBase(ValueError):
    """The knowledge base uses a shape the column-wise compilation cannot reproduce exactly."""


# --- phases: what a condition can see when recommend evaluates it ---------------------------

#: Eligibility criteria: no eligibility status and no plan yet.
CRITERIA = "criteria"
#: Rules, guards and soft guards: eligibility known, no plan yet.
RULES = "rules"
#: Alerts: eligibility and the decided plan known.
ALERTS = "alerts"


@dataclass(frozen=True, slots=True)
class Layer:
    """One projection step: ``SELECT *, expr AS name, ... FROM previous``."""

    name: str
    columns: tuple[tuple[str, exp.Expression], ...]


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """The compiled cohort audit: projection layers over the input, then the result columns.

    ``layers`` add working columns (computed fields, facts, criteria, guards, steps, labels);
    ``outputs`` are the result columns (``netboard.batch.result_columns()``), ``concordant``
    last, which needs the optional ``given`` input column.
    """

    kb_version: str
    layers: tuple[Layer, ...]
    outputs: tuple[tuple[str, exp.Expression], ...]

    def expression(self, table: str | exp.Expression = INPUT, *, given: bool = True) -> exp.Query:
        """The SELECT as a sqlglot tree reading ``table`` (a name or a subquery expression).

        Without ``given`` the ``concordant`` column is NULL.
        """
        source: exp.Expression = (
            exp.to_table(table, quoted=True) if isinstance(table, str) else table
        )
        query: exp.Select | None = None
        ctes: list[exp.CTE] = []
        previous = source
        for layer in self.layers:
            select = exp.select(exp.Star(), *(_alias(e, n) for n, e in layer.columns)).from_(
                previous.copy()
            )
            ctes.append(exp.CTE(this=select, alias=exp.TableAlias(this=_ident(layer.name))))
            previous = exp.to_table(layer.name, quoted=True)
        outputs = [
            _alias(
                e if given or name != "concordant" else exp.cast(exp.null(), "BOOLEAN"),
                name,
            )
            for name, e in self.outputs
        ]
        query = exp.select(*outputs).from_(previous)
        query.set("with_", exp.With(expressions=ctes))
        return query

    def sql(
        self,
        table: str = INPUT,
        dialect: str = "duckdb",
        *,
        given: bool = True,
        pretty: bool = False,
    ) -> str:
        """The query as SQL text for ``dialect`` (any sqlglot dialect: duckdb, spark, ...).

        >>> from netboard.kb import load_kb
        >>> compile_audit(load_kb()).sql("registry").startswith("WITH")
        True
        """
        return self.expression(table, given=given).sql(dialect=dialect, pretty=pretty)


_CACHE: dict[int, tuple[KnowledgeBase, AuditQuery]] = {}


def compile_conditions(kb: KnowledgeBase, named: Mapping[str, Condition]) -> AuditQuery:
    """Compile single conditions (as rules see them) over the input table.

    The outputs are ``id``, then for each name its truth (BOOLEAN, NULL: UNKNOWN) and
    ``NAME.unknown``: the bit set of the case fields that would decide it (see
    :func:`fields_of`). For tests and ad-hoc cohort questions.
    """
    return _Compiler(kb).conditions(named)


def compile_computed(kb: KnowledgeBase, names: Sequence[str]) -> AuditQuery:
    """The computed fields ``names`` (``engine.derive.COMPUTED``) as columns over the input.

    >>> from netboard.kb import load_kb
    >>> "_d_c_who_2019" in compile_computed(load_kb(), ["who_2019"]).sql("registry")
    True
    """
    ops = SqlOps()

    def value_of(name: str) -> Callable[[], exp.Expression]:
        return lambda: COMPUTED[name][0](ops, kb)

    for name in names:
        ops.let(f"c_{name}", value_of(name))
    outputs = tuple((name, col(ops.lets[f"c_{name}"][0])) for name in names)
    return AuditQuery(kb.version, tuple(ops.layers("derive")), outputs)


def fields_of(bits: int | None) -> tuple[str, ...]:
    """The case fields of an unknown-field bit set, in contract order.

    >>> fields_of(field_bit("ki67_percent") | field_bit("sex"))
    ('sex', 'ki67_percent')
    """
    return tuple(name for name, i in _BITS.items() if bits and bits >> i & 1)


def compile_audit(kb: KnowledgeBase, *, dialect: str = "duckdb") -> AuditQuery:
    """Compile ``kb`` into the cohort-audit query (cached per knowledge base).

    ``dialect`` is accepted for symmetry with ``AuditQuery.sql``: the tree is dialect-neutral
    and rendered per dialect there.

    Raises:
        UnsupportedKnowledgeBase: a fact reads the plan or an eligibility status.
    """
    del dialect
    hit = _CACHE.get(id(kb))
    if hit is not None and hit[0] is kb:
        return hit[1]
    query = _Compiler(kb).build()
    _CACHE[id(kb)] = (kb, query)
    return query


# --- small sqlglot helpers -------------------------------------------------------------------

_SAFE = re.compile(r"[^0-9A-Za-z_]")


def _ident(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def col(name: str) -> exp.Column:
    """A (quoted) column reference."""
    return exp.Column(this=_ident(name))


def _alias(e: exp.Expression, name: str) -> exp.Alias:
    return exp.Alias(this=e, alias=_ident(name))


_ATOMS = (exp.Column, exp.Literal, exp.Boolean, exp.Null, exp.Paren, exp.Func, exp.Case)


def _p(e: exp.Expression) -> exp.Expression:
    """Parenthesise a compound operand (sqlglot renders trees without precedence)."""
    return e if isinstance(e, _ATOMS) else exp.Paren(this=e)


def lit(value: Any) -> exp.Expression:
    """A literal: bool, number or string."""
    if value is None:
        return exp.null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int | float):
        return exp.Literal.number(value)
    return exp.Literal.string(str(value))


TRUE_SQL = exp.Boolean(this=True)
FALSE_SQL = exp.Boolean(this=False)
ZERO = exp.Literal.number(0)


def _and(items: Sequence[exp.Expression]) -> exp.Expression:
    if not items:
        return TRUE_SQL.copy()
    out = _p(items[0])
    for item in items[1:]:
        out = exp.And(this=out, expression=_p(item))
    return out if len(items) == 1 else exp.Paren(this=out)


def _or(items: Sequence[exp.Expression]) -> exp.Expression:
    if not items:
        return FALSE_SQL.copy()
    out = _p(items[0])
    for item in items[1:]:
        out = exp.Or(this=out, expression=_p(item))
    return out if len(items) == 1 else exp.Paren(this=out)


def _not(e: exp.Expression) -> exp.Expression:
    return exp.Not(this=_p(e))


def _is_null(e: exp.Expression) -> exp.Expression:
    return exp.Is(this=_p(e), expression=exp.null())


def _is_true(e: exp.Expression) -> exp.Expression:
    """``e IS TRUE`` written portably: COALESCE(e, FALSE)."""
    return exp.Coalesce(this=e, expressions=[FALSE_SQL.copy()])


def _case(whens: Iterable[tuple[exp.Expression, exp.Expression]], default: Any = None) -> exp.Case:
    out = exp.Case()
    for cond, then in whens:
        out = out.when(cond, then)
    if default is not None:
        out = out.else_(default if isinstance(default, exp.Expression) else lit(default))
    return out


def _bor(items: Sequence[exp.Expression]) -> exp.Expression:
    """Bitwise OR of bit sets (0 for none)."""
    if not items:
        return ZERO.copy()
    out = _p(items[0])
    for item in items[1:]:
        out = exp.BitwiseOr(this=out, expression=_p(item))
    return out if len(items) == 1 else exp.Paren(this=out)


def _add(items: Sequence[exp.Expression]) -> exp.Expression:
    if not items:
        return ZERO.copy()
    out = _p(items[0])
    for item in items[1:]:
        out = exp.Add(this=out, expression=_p(item))
    return exp.Paren(this=out) if len(items) > 1 else out


def _is_zero(e: exp.Expression) -> bool:
    return isinstance(e, exp.Literal) and not e.is_string and e.this == "0"


def _when_unknown(t: exp.Expression, m: exp.Expression) -> exp.Expression:
    """``m`` where ``t`` is UNKNOWN, else the empty set."""
    if _is_zero(m):
        return ZERO.copy()
    return _case([(_is_null(t), m)], ZERO.copy())


def _array(items: Sequence[exp.Expression]) -> exp.Expression:
    return exp.Array(expressions=list(items))


def _drop_nulls(array: exp.Expression) -> exp.Expression:
    x = exp.to_identifier("x")
    return exp.ArrayFilter(
        this=array,
        expression=exp.Lambda(this=_not(_is_null(exp.Column(this=x.copy()))), expressions=[x]),
    )


def _contains(array: exp.Expression, value: exp.Expression) -> exp.Expression:
    return exp.ArrayContains(this=array, expression=value)


# --- the two visitors: truth and unknown-field set ------------------------------------------


@dataclass
class Scope:
    """What a compiled condition refers to: columns already computed in earlier layers.

    ``unknown`` maps a field name (case field or computed field) to its column holding the
    field's unknown set where the field is NULL (else 0); ``nodes`` maps a condition (by
    value) to the columns of its truth and, once computed, its unknown set.
    """

    phase: str
    computed: Mapping[str, str]
    unknown: Mapping[str, str]
    facts: Mapping[str, tuple[str, str | None]]
    eligibility: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    planned: Mapping[str, str] = field(default_factory=dict)
    nodes: Mapping[Condition, tuple[str, str | None]] = field(default_factory=dict)
    #: the knowledge base's plausible values: field -> value -> when it is possible
    plausibility: Mapping[str, Mapping[str, Condition]] = field(default_factory=dict)


def truth(node: Condition, scope: Scope) -> exp.Expression:
    """The condition as a SQL BOOLEAN (NULL: UNKNOWN), as ``evaluate`` would decide it."""
    hit = scope.nodes.get(node)
    if hit is not None:
        return col(hit[0])
    return truth_of(node, scope)


def mask(node: Condition, scope: Scope) -> exp.Expression:
    """The case fields ``evaluate`` names as unknown, as a BIGINT bit set; 0 unless UNKNOWN."""
    hit = scope.nodes.get(node)
    if hit is not None and hit[1] is not None:
        return col(hit[1])
    return mask_of(node, scope)


def open_fields(node: Condition, scope: Scope) -> exp.Expression:
    """``mask`` without its final zeroing: exact where ``node`` is UNKNOWN, else arbitrary.

    A node held in a truth column takes its mask in a later layer as
    ``CASE WHEN t IS NULL THEN open_fields ELSE 0 END``.
    """
    if isinstance(node, All | AnyOf):
        return _bor([m for m in (mask(x, scope) for x in node.items) if not _is_zero(m)])
    return mask(node, scope)


@singledispatch
def truth_of(node: Any, scope: Scope) -> exp.Expression:
    """The truth compiler, one handler per condition node type."""
    raise TypeError(f"no compiler for {type(node).__name__}")  # pragma: no cover


@singledispatch
def mask_of(node: Any, scope: Scope) -> exp.Expression:
    """The unknown-set compiler, one handler per condition node type."""
    raise TypeError(f"no compiler for {type(node).__name__}")  # pragma: no cover


@truth_of.register
def _truth_all(node: All, scope: Scope) -> exp.Expression:
    return _and([truth(x, scope) for x in node.items])


@truth_of.register
def _truth_any(node: AnyOf, scope: Scope) -> exp.Expression:
    return _or([truth(x, scope) for x in node.items])


@mask_of.register
def _mask_all(node: All | AnyOf, scope: Scope) -> exp.Expression:
    # Items are exact (0 unless UNKNOWN); a decided junction may still hold UNKNOWN items
    # (All FALSE, AnyOf TRUE), so the union counts only where the junction is UNKNOWN.
    return _when_unknown(truth(node, scope), open_fields(node, scope))


mask_of.register(AnyOf, _mask_all)


@truth_of.register
def _truth_not(node: Not, scope: Scope) -> exp.Expression:
    return _not(truth(node.item, scope))


@mask_of.register
def _mask_not(node: Not, scope: Scope) -> exp.Expression:
    return mask(node.item, scope)


_COMPARISONS: dict[str, Callable[..., exp.Expression]] = {
    "is": exp.EQ,
    "lt": exp.LT,
    "le": exp.LTE,
    "gt": exp.GT,
    "ge": exp.GTE,
}


def _field(name: str, scope: Scope) -> exp.Expression:
    return col(scope.computed.get(name, name))


def _plausible(node: Compare, scope: Scope, stated: exp.Expression) -> exp.Expression:
    """``stated`` where the field is known; where it is unknown, the truth over the values the
    knowledge base still holds possible (``engine.evaluate``'s rule, column-wise)."""
    limits = scope.plausibility.get(node.field)
    spec = registry().spec(node.field)
    if not limits or node.op == "known" or not isinstance(spec, Choice):
        return stated
    words = [m.value for m in spec.enum]
    operand = node.value if isinstance(node.value, tuple) else (node.value,)
    holding = [w for w in words if w in operand]
    failing = [w for w in words if w not in operand]

    def ruled_out(word: str) -> exp.Expression:
        when = limits.get(word)
        if when is None:
            return FALSE_SQL.copy()
        return exp.Coalesce(this=_not(truth(when, scope)), expressions=[FALSE_SQL.copy()])

    return _case(
        [
            (_not(_is_null(_field(node.field, scope))), stated),
            (_and([ruled_out(w) for w in failing]), TRUE_SQL.copy()),
            (_and([ruled_out(w) for w in holding]), FALSE_SQL.copy()),
        ]
    )


@truth_of.register
def _truth_compare(node: Compare, scope: Scope) -> exp.Expression:
    return _plausible(node, scope, _stated_compare(node, scope))


def _stated_compare(node: Compare, scope: Scope) -> exp.Expression:
    value = _field(node.field, scope)
    op = node.op
    if op == "known":
        present = _not(_is_null(value))
        return present if node.value else _is_null(value)
    if op in _COMPARISONS:
        return _COMPARISONS[op](this=value, expression=lit(node.value))
    if op == "in":
        return exp.In(this=value, expressions=[lit(v) for v in node.value])
    if op == "has":
        return _contains(value, lit(node.value))
    if op == "has_any":
        return _or([_contains(value.copy(), lit(v)) for v in node.value])
    raise ValueError(f"unknown operator {op!r}")  # pragma: no cover - the KB check rejects it


@mask_of.register
def _mask_compare(node: Compare, scope: Scope) -> exp.Expression:
    if node.op == "known":
        return ZERO.copy()
    if node.field in scope.plausibility:
        return _when_unknown(truth(node, scope), col(scope.unknown[node.field]))
    return col(scope.unknown[node.field])


@truth_of.register
def _truth_fact(node: Fact, scope: Scope) -> exp.Expression:
    return col(scope.facts[node.name][0])


@mask_of.register
def _mask_fact(node: Fact, scope: Scope) -> exp.Expression:
    m = scope.facts[node.name][1]
    if m is None:  # pragma: no cover - layers are built in dependency order
        raise RuntimeError(f"fact {node.name!r} has no unknown-set column yet")
    return col(m)


@truth_of.register
def _truth_eligibility(node: EligibilityIs, scope: Scope) -> exp.Expression:
    undetermined = EligibilityStatus.UNDETERMINED.value
    known = scope.eligibility.get(node.name) if scope.phase != CRITERIA else None
    if known is None:
        # No status yet (evaluated before eligibility): asking for "undetermined" is FALSE.
        return FALSE_SQL.copy() if node.status == undetermined else exp.cast(exp.null(), "BOOLEAN")
    status = col(known[0])
    if node.status == undetermined:
        return exp.EQ(this=status, expression=lit(undetermined))
    return _case(
        [(exp.EQ(this=status.copy(), expression=lit(undetermined)), exp.null())],
        exp.EQ(this=status, expression=lit(node.status)),
    )


@mask_of.register
def _mask_eligibility(node: EligibilityIs, scope: Scope) -> exp.Expression:
    known = scope.eligibility.get(node.name) if scope.phase != CRITERIA else None
    if known is None or node.status == EligibilityStatus.UNDETERMINED.value:
        return ZERO.copy()
    return col(known[1])


@truth_of.register
def _truth_planned(node: Planned, scope: Scope) -> exp.Expression:
    if scope.phase != ALERTS:
        return FALSE_SQL.copy()  # the plan is decided only after the rules
    return _or([_is_true(col(scope.planned[c])) for c in node.codes if c in scope.planned])


@mask_of.register
def _mask_planned(node: Planned, scope: Scope) -> exp.Expression:
    return ZERO.copy()


@truth_of.register
def _truth_holds(node: Holds, scope: Scope) -> exp.Expression:
    return _is_true(truth(node.item, scope))


@mask_of.register
def _mask_holds(node: Holds, scope: Scope) -> exp.Expression:
    return ZERO.copy()


@truth_of.register
def _truth_shared(node: Shared, scope: Scope) -> exp.Expression:
    return truth(node.item, scope)


@mask_of.register
def _mask_shared(node: Shared, scope: Scope) -> exp.Expression:
    return mask(node.item, scope)


def _refs(node: Condition) -> Iterator[Fact | EligibilityIs | Planned]:
    for n in walk(node):
        if isinstance(n, Fact | EligibilityIs | Planned):
            yield n


# --- the compiler ----------------------------------------------------------------------------


class SqlOps:
    """The computations of :mod:`netboard.engine.derive` on sqlglot expressions.

    ``let`` turns a named intermediate into a column of an earlier projection layer (its depth
    is one more than the deepest column it reads), so a shared intermediate such as the grade
    is computed once per row.
    """

    def __init__(self) -> None:
        self.lets: dict[str, tuple[str, exp.Expression, int]] = {}

    def field(self, name: str) -> exp.Expression:
        return col(name)

    def lit(self, value: Any) -> exp.Expression:
        return lit(value)

    def null(self) -> exp.Expression:
        return exp.null()

    def is_null(self, x: exp.Expression) -> exp.Expression:
        return _is_null(x.copy())

    def _cmp(self, kind: type[exp.Binary], a: exp.Expression, b: exp.Expression) -> exp.Expression:
        return cast(exp.Expression, kind(this=_p(a.copy()), expression=_p(b.copy())))

    def eq(self, a: exp.Expression, b: exp.Expression) -> exp.Expression:
        return self._cmp(exp.EQ, a, b)

    def lt(self, a: exp.Expression, b: exp.Expression) -> exp.Expression:
        return self._cmp(exp.LT, a, b)

    def le(self, a: exp.Expression, b: exp.Expression) -> exp.Expression:
        return self._cmp(exp.LTE, a, b)

    def ge(self, a: exp.Expression, b: exp.Expression) -> exp.Expression:
        return self._cmp(exp.GTE, a, b)

    def in_(self, x: exp.Expression, values: Sequence[Any]) -> exp.Expression:
        return exp.In(this=_p(x.copy()), expressions=[lit(v) for v in values])

    def and_(self, *xs: exp.Expression) -> exp.Expression:
        return _and([x.copy() for x in xs])

    def or_(self, *xs: exp.Expression) -> exp.Expression:
        return _or([x.copy() for x in xs])

    def not_(self, x: exp.Expression) -> exp.Expression:
        return _not(x.copy())

    def case(
        self,
        whens: Sequence[tuple[exp.Expression, exp.Expression]],
        default: exp.Expression | None = None,
    ) -> exp.Expression:
        out = _case([(c.copy(), v.copy()) for c, v in whens])
        return out if default is None else out.else_(default.copy())

    def concat(self, a: exp.Expression, b: exp.Expression) -> exp.Expression:
        return exp.ArrayConcat(this=a.copy(), expressions=[b.copy()])

    def empty_list(self) -> exp.Expression:
        return exp.cast(_array([]), "VARCHAR[]")

    def is_true(self, x: exp.Expression) -> exp.Expression:
        return _is_true(x.copy())

    def let(self, name: str, build: Callable[[], exp.Expression]) -> exp.Expression:
        if name not in self.lets:
            e = build()
            reads = {c.name for c in e.find_all(exp.Column)}
            depth = 1 + max((d for n, _, d in self.lets.values() if n in reads), default=0)
            self.lets[name] = (f"_d_{_SAFE.sub('_', name)}", e, depth)
        return col(self.lets[name][0])

    def lookup(self, x: exp.Expression, table: Mapping[Any, Any]) -> exp.Expression:
        return _case(
            [
                (_is_true(exp.EQ(this=_p(x.copy()), expression=lit(k))), lit(v))
                for k, v in table.items()
            ]
        )

    def null_set(self, fields: Sequence[str]) -> exp.Expression:
        return _bor([_case([(_is_null(col(f)), lit(field_bit(f)))], ZERO.copy()) for f in fields])

    def layers(self, prefix: str) -> list[Layer]:
        """The let columns as projection layers, shallowest first."""
        depths = sorted({d for _, _, d in self.lets.values()})
        return [
            Layer(
                f"{prefix}_{d}",
                tuple((n, e) for n, e, depth in self.lets.values() if depth == d),
            )
            for d in depths
        ]


class _Compiler:
    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        self.plan = compile_plan(kb)
        self.layers: list[Layer] = []
        self.names: dict[str, int] = defaultdict(int)

    def name(self, kind: str, text: str) -> str:
        base = f"_{kind}_{_SAFE.sub('_', text)}"
        self.names[base] += 1
        n = self.names[base]
        return base if n == 1 else f"{base}_{n}"

    def layer(self, name: str, columns: Iterable[tuple[str, exp.Expression]]) -> None:
        cols = tuple(columns)
        if cols:
            self.layers.append(Layer(name, cols))

    # -- computed fields: engine.derive's computations on SQL expressions ---------------------

    def computed(self) -> tuple[dict[str, str], dict[str, str]]:
        kb = self.kb
        ops = SqlOps()
        computed: dict[str, str] = {}
        unknown: dict[str, str] = {}

        def value_of(name: str) -> Callable[[], exp.Expression]:
            return lambda: COMPUTED[name][0](ops, kb)

        def unknown_of(name: str) -> Callable[[], exp.Expression]:
            return lambda: _when_unknown(col(computed[name]), unknown_sources(ops, kb, name))

        for name in COMPUTED:
            ops.let(f"c_{name}", value_of(name))
            computed[name] = ops.lets[f"c_{name}"][0]
        for name in COMPUTED:
            ops.let(f"u_{name}", unknown_of(name))
            unknown[name] = ops.lets[f"u_{name}"][0]
        self.layers.extend(ops.layers("derive"))
        # Unknown sets where a case field is NULL: the field itself. A computed field named
        # like a case field (grade) is the one conditions read, so its set wins.
        cols: list[tuple[str, exp.Expression]] = []
        for path in field_paths():
            if path == "id":
                continue
            cols.append((f"_uf_{path}", _when_unknown(col(path), lit(field_bit(path)))))
            unknown.setdefault(path, f"_uf_{path}")
        self.layer("unknown_fields", cols)
        return computed, unknown

    # -- facts, criteria, guards, steps, alerts ----------------------------------------------

    def conditions_layers(
        self,
        nodes: Mapping[str, Condition],
        scope: Scope,
        layer: str,
    ) -> dict[str, tuple[str, str]]:
        """Truth columns of ``nodes`` in one layer, their unknown sets in the next."""
        truths = [(self.name("t", key), node) for key, node in nodes.items()]
        self.layer(layer, [(t, truth(node, scope)) for t, node in truths])
        masks = []
        out: dict[str, tuple[str, str]] = {}
        for (key, node), (t, _) in zip(nodes.items(), truths, strict=True):
            m = self.name("m", key)
            masks.append((m, _when_unknown(col(t), open_fields(node, scope))))
            out[key] = (t, m)
        self.layer(f"{layer}_unknown", masks)
        return out

    def prefix(self) -> tuple[dict[str, str], dict[str, str], dict[str, tuple[str, str | None]]]:
        """Layers shared by every query: computed fields, then facts by dependency depth."""
        kb = self.kb
        for fact in kb.facts.values():
            for ref in _refs(fact.when):
                if isinstance(ref, EligibilityIs | Planned):
                    raise UnsupportedKnowledgeBase(
                        f"fact {fact.name!r} reads {type(ref).__name__}: its value would depend "
                        "on when recommend first evaluates it"
                    )
        computed, unknown = self.computed()
        facts: dict[str, tuple[str, str | None]] = {}
        scope = Scope(RULES, computed, unknown, facts, plausibility=self.kb.plausibility)
        depth: dict[str, int] = {}

        def depth_of(name: str) -> int:
            if name not in depth:
                inner = [
                    depth_of(r.name) for r in _refs(kb.facts[name].when) if isinstance(r, Fact)
                ]
                depth[name] = 1 + max(inner, default=0)
            return depth[name]

        for name in kb.facts:
            depth_of(name)
        levels = range(1, max(depth.values(), default=0) + 1)
        # Truths level by level (a fact reads only shallower facts), then unknown sets.
        for level in levels:
            cols: list[tuple[str, exp.Expression]] = []
            new: dict[str, tuple[str, str | None]] = {}
            for name, fact in kb.facts.items():
                if depth[name] == level:
                    t = self.name("t_fact", name)
                    cols.append((t, truth(fact.when, scope)))
                    new[name] = (t, None)
            self.layer(f"facts_{level}", cols)
            facts.update(new)
        for level in levels:
            cols = []
            done: dict[str, tuple[str, str | None]] = {}
            for name, fact in kb.facts.items():
                if depth[name] == level:
                    t = facts[name][0]
                    m = self.name("m_fact", name)
                    cols.append((m, _when_unknown(col(t), open_fields(fact.when, scope))))
                    done[name] = (t, m)
            self.layer(f"facts_{level}_unknown", cols)
            facts.update(done)
        return computed, unknown, facts

    def conditions(self, named: Mapping[str, Condition]) -> AuditQuery:
        """``id``, then per name its truth (BOOLEAN) and ``NAME.unknown`` (bit set)."""
        computed, unknown, facts = self.prefix()
        scope = Scope(RULES, computed, unknown, facts, plausibility=self.kb.plausibility)
        cols = self.conditions_layers(named, scope, "conditions")
        outputs: list[tuple[str, exp.Expression]] = [("id", col("id"))]
        for name, (t, m) in cols.items():
            outputs += [(name, col(t)), (f"{name}.unknown", col(m))]
        return AuditQuery(self.kb.version, tuple(self.layers), tuple(outputs))

    def build(self) -> AuditQuery:
        kb, plan = self.kb, self.plan
        computed, unknown, facts = self.prefix()

        # 1. Eligibility criteria (no status yet), then each set's status and unknown fields.
        crit_scope = Scope(CRITERIA, computed, unknown, facts, plausibility=self.kb.plausibility)
        named = {
            f"crit_{es.name.value}_{c.name}": c.when for es in kb.eligibility for c in es.criteria
        }
        crit = self.conditions_layers(named, crit_scope, "criteria")
        # label -> (truth column, unknown-set column, skip column or None)
        notes: dict[str, list[tuple[str, str, str | None]]] = defaultdict(list)
        note_fields: dict[str, set[str]] = defaultdict(set)
        cols: list[tuple[str, exp.Expression]] = []
        eligibility: dict[str, tuple[str, str]] = {}
        for es in kb.eligibility:
            pairs = [crit[f"crit_{es.name.value}_{c.name}"] for c in es.criteria]
            for c, (t, m) in zip(es.criteria, pairs, strict=True):
                if c.check:
                    continue  # checked before treatment: not missing information
                label = f"{es.title} ({c.name})"
                notes[label].append((t, m, None))
                note_fields[label] |= static_fields(c.when, kb)
            status, u = self.name("elig", es.name.value), self.name("u_elig", es.name.value)
            # A pre-treatment check not yet stated is confirmed before treatment, not a fork.
            all_met = _and(
                [
                    exp.Coalesce(this=col(t), expressions=[TRUE_SQL.copy()]) if c.check else col(t)
                    for c, (t, _) in zip(es.criteria, pairs, strict=True)
                ]
            )
            cols += [
                (
                    status,
                    _case(
                        [
                            (_is_null(all_met), lit(EligibilityStatus.UNDETERMINED.value)),
                            (all_met.copy(), lit(EligibilityStatus.ELIGIBLE.value)),
                        ],
                        lit(EligibilityStatus.NOT_ELIGIBLE.value),
                    ),
                ),
                # eligibility_unknown, as EligibilityIs sees it: only while undetermined.
                (
                    u,
                    _when_unknown(
                        all_met.copy(),
                        _bor(
                            [
                                col(m)
                                for c, (_, m) in zip(es.criteria, pairs, strict=True)
                                if not c.check
                            ]
                        ),
                    ),
                ),
            ]
            eligibility[es.name.value] = (status, u)
        self.layer("eligibility", cols)

        # 2. Every rule's condition once (guards are rules too), then each code's guard set,
        # then every (rule, code) step with its guards folded in as recommend's plan has them.
        scope = Scope(
            RULES,
            computed,
            unknown,
            facts,
            eligibility=eligibility,
            plausibility=self.kb.plausibility,
        )
        whens: dict[Condition, str] = {}
        for rule in kb.rules:
            whens.setdefault(rule.when, f"when_{rule.id}")
        rule_cols = self.conditions_layers({k: c for c, k in whens.items()}, scope, "rules")
        nodes: dict[Condition, tuple[str, str | None]] = {c: rule_cols[k] for c, k in whens.items()}
        scope = replace(scope, nodes=nodes)
        guard_sets: dict[Condition, str] = {}
        for step in plan.steps:
            cond = step.condition
            if isinstance(cond, All) and len(cond.items) == 2 and isinstance(cond.items[1], Not):
                guard_sets.setdefault(cond.items[1].item, f"guards_{step.rule.id}_{step.code}")
        gs_cols = self.conditions_layers({k: c for c, k in guard_sets.items()}, scope, "guard_sets")
        nodes.update({c: gs_cols[k] for c, k in guard_sets.items()})
        soft = {g.id: _is_true(col(nodes[g.when][0])) for g in plan.soft_guards}
        cols = []
        steps: list[tuple[str, str | None]] = []
        for step in plan.steps:
            key = f"{step.rule.id}_{step.code}"
            t = self.name("t_step", key)
            cols.append((t, truth(step.condition, scope)))
            skip: str | None = None
            if step.soft_ids:
                skip = self.name("skip", key)
                cols.append((skip, _or([soft[i].copy() for i in sorted(step.soft_ids)])))
            steps.append((t, skip))
        self.layer("steps", cols)
        cols = []
        for step, (t, skip) in zip(plan.steps, steps, strict=True):
            m = self.name("m_step", f"{step.rule.id}_{step.code}")
            cols.append((m, _when_unknown(col(t), open_fields(step.condition, scope))))
            notes[step.label].append((t, m, skip))
            note_fields[step.label] |= static_fields(step.condition, kb)
        self.layer("steps_unknown", cols)

        # rec.CODE: the best status of any candidate; the plan: a positive step that holds.
        cols = []
        offered: dict[str, str] = {}
        rec: dict[str, str] = {}
        by_code: dict[str, list[tuple[int, exp.Expression, exp.Expression]]] = defaultdict(list)
        for step, (t, skip) in zip(plan.steps, steps, strict=True):
            branch = step.rule.on_unknown == "branch"
            # A candidate: TRUE, or UNKNOWN kept as a branch; skipped when a soft guard holds.
            cand: exp.Expression = exp.Coalesce(this=col(t), expressions=[lit(branch)])
            holds = _is_true(col(t))
            if skip is not None:
                cand = _and([_not(col(skip)), cand])
                holds = _and([_not(col(skip)), holds])
            by_code[step.code].append((STATUS_RANK[step.rule.status], cand, holds))
        statuses = list(Status)
        for code in Intervention:
            entries = by_code.get(code.value, [])
            whens_rec = []
            for st in statuses:
                hits = [c for r, c, _ in entries if r == STATUS_RANK[st]]
                if hits:
                    whens_rec.append((_or(hits), lit(st.value)))
            rec[code.value] = self.name("rec", code.value)
            cols.append(
                (
                    rec[code.value],
                    _case(whens_rec) if whens_rec else exp.cast(exp.null(), "VARCHAR"),
                )
            )
            # Offered: planned, or on an open branch (an option's alerts travel with it).
            offers = [c for r, c, _ in entries if statuses[r].positive]
            if offers:
                offered[code.value] = self.name("offered", code.value)
                cols.append((offered[code.value], _or(offers)))
        self.layer("plan", cols)

        # 3. Alerts: the plan is known now. An alert holds when it holds with every option
        # offered, branches included (recommend marks those that need a branch `applies_if`).
        scope = Scope(
            ALERTS,
            computed,
            unknown,
            facts,
            eligibility=eligibility,
            planned=offered,
            plausibility=self.kb.plausibility,
        )
        cols = [(self.name("t_alert", a.id), truth(a.when, scope)) for a in plan.alerts]
        self.layer("alerts", cols)
        alert_cols = [
            (t, a.code.value, SEVERITY_ORDER[a.severity])
            for (t, _), a in zip(cols, plan.alerts, strict=True)
        ]
        cols_m = []
        for (t, _), a in zip(cols, plan.alerts, strict=True):
            if a.severity is Severity.CRITICAL:
                m = self.name("m_alert", a.id)
                cols_m.append((m, _when_unknown(col(t), open_fields(a.when, scope))))
                label = f"the {a.code.value.replace('_', ' ')} alert"
                notes[label].append((t, m, None))
                note_fields[label] |= static_fields(a.when, kb)
        self.layer("alerts_unknown", cols_m)

        # missing: per "what it decides" label, the union of its open results' fields; per
        # field, the number of labels naming it; fields by that count, then contract order.
        cols = []
        label_cols: dict[str, str] = {}
        for label, parts in notes.items():
            terms: list[exp.Expression] = []
            for _t, m, skip in parts:
                # A step skipped by a soft guard is never evaluated, so it notes nothing.
                term: exp.Expression = col(m)
                if skip is not None:
                    term = _case([(col(skip), ZERO.copy())], term)
                terms.append(term)
            label_cols[label] = self.name("label", label)
            cols.append((label_cols[label], _bor(terms)))
        self.layer("labels", cols)
        cols = []
        counts: dict[str, str] = {}
        for f in sorted({f for fs in note_fields.values() for f in fs}, key=_BITS.__getitem__):
            shift = lit(_BITS[f])
            terms = [
                exp.BitwiseAnd(
                    this=exp.Paren(
                        this=exp.BitwiseRightShift(
                            this=col(label_cols[lab]), expression=shift.copy()
                        )
                    ),
                    expression=lit(1),
                )
                for lab, fs in note_fields.items()
                if f in fs
            ]
            counts[f] = self.name("n", f)
            cols.append((counts[f], _add(terms)))
        self.layer("counts", cols)

        # Result columns.
        outputs: list[tuple[str, exp.Expression]] = [("id", col("id"))]
        outputs += [(f"rec.{code.value}", col(rec[code.value])) for code in Intervention]
        for name in EligibilityName:
            e = eligibility.get(name.value)
            outputs.append(
                (f"elig.{name.value}", col(e[0]) if e else exp.cast(exp.null(), "VARCHAR"))
            )
        outputs.append(("alerts", self.alert_list(alert_cols)))
        outputs.append(("missing", self.missing_list(counts)))
        # concordant: every given code is recommended or consider (given: contract codes).
        good = [lit(st.value) for st in Status if st.positive]
        every = _and(
            [
                _or(
                    [
                        _not(_contains(col("given"), lit(c.value))),
                        _is_true(
                            exp.In(this=col(rec[c.value]), expressions=[x.copy() for x in good])
                        ),
                    ]
                )
                for c in Intervention
            ]
        )
        concordant = _case(
            [(_is_null(col("given")), exp.cast(exp.null(), "BOOLEAN"))], _is_true(every)
        )
        outputs.append(("concordant", concordant))
        return AuditQuery(kb.version, tuple(self.layers), tuple(outputs))

    @staticmethod
    def alert_list(alert_cols: Sequence[tuple[str, str, int]]) -> exp.Expression:
        """Alert codes in answer order: (severity of the most severe rule that holds, code)."""
        by_code: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
        for t, code, sev in alert_cols:
            by_code[code][sev].append(t)
        items = []
        for sev in sorted({s for _, _, s in alert_cols}):
            for code in sorted(by_code):
                if sev not in by_code[code]:
                    continue
                holds = _or([_is_true(col(t)) for t in by_code[code][sev]])
                earlier = [
                    _is_true(col(t)) for s, ts in by_code[code].items() if s < sev for t in ts
                ]
                cond = _and([holds, _not(_or(earlier))]) if earlier else holds
                items.append(_case([(cond, lit(code))]))
        return _drop_nulls(_array(items)) if items else exp.cast(_array([]), "VARCHAR[]")

    @staticmethod
    def missing_list(counts: Mapping[str, str]) -> exp.Expression:
        """Fields with a count, by count (descending) then contract order, as one sort key."""
        if not counts:
            return exp.cast(_array([]), "VARCHAR[]")
        keys = [
            _case(
                [
                    (
                        exp.GT(this=col(n), expression=ZERO.copy()),
                        exp.Add(
                            this=exp.Mul(this=col(n), expression=lit(64)),
                            expression=lit(63 - _BITS[f]),
                        ),
                    )
                ]
            )
            for f, n in counts.items()
        ]
        k = exp.to_identifier("k")
        kcol = exp.Column(this=k.copy())
        name = _case(
            [
                (
                    exp.EQ(
                        this=exp.Mod(this=kcol.copy(), expression=lit(64)),
                        expression=lit(63 - _BITS[f]),
                    ),
                    lit(f),
                )
                for f in counts
            ]
        )
        ordered = exp.ArraySort(this=_drop_nulls(_array(keys)), asc=FALSE_SQL.copy())
        return exp.Transform(this=ordered, expression=exp.Lambda(this=name, expressions=[k]))
