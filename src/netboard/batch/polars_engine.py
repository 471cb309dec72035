"""The compiled audit on Polars: the same sqlglot tree, translated node by node to expressions.

No second rulebook and no second compiler: :func:`to_polars` walks the tree that
``compile_audit`` built for SQL engines and maps each node type (the small vocabulary the
compiler emits) to the Polars expression with the same null semantics. Polars' ``&``/``|``
are Kleene's, ``when`` treats a NULL condition as false like SQL ``CASE``, comparisons,
``is_in`` and ``list.contains`` propagate NULL. Each projection layer is one
``with_columns`` on a lazy frame.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from functools import singledispatch
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from netboard.batch.columns import GIVEN, input_columns
from netboard.batch.compile import compile_audit
from netboard.kb import KnowledgeBase

if TYPE_CHECKING:  # pragma: no cover - typing only
    import polars as pl
    import pyarrow as pa

__all__ = ["audit_polars", "run_polars", "to_polars"]


def _pl() -> Any:
    import polars

    return polars


_TYPES: dict[str, Callable[[Any], Any]] = {
    "BOOLEAN": lambda pl: pl.Boolean,
    "INT": lambda pl: pl.Int32,
    "BIGINT": lambda pl: pl.Int64,
    "DOUBLE": lambda pl: pl.Float64,
    "VARCHAR": lambda pl: pl.String,
    "TEXT": lambda pl: pl.String,
}


def _dtype(dt: exp.DataType) -> Any:
    pl = _pl()
    if dt.is_type(exp.DataType.Type.ARRAY, exp.DataType.Type.LIST):
        return pl.List(_dtype(dt.expressions[0]))
    name = dt.sql(dialect="duckdb").upper()
    if name == "INTEGER":
        name = "INT"
    return _TYPES[name](pl)


@singledispatch
def to_polars(node: exp.Expression, element: str | None = None) -> Any:
    """The Polars expression of a compiled node (``element``: the lambda variable in scope)."""
    raise TypeError(f"no Polars translation for {type(node).__name__}: {node.sql()[:80]}")


@to_polars.register
def _column(node: exp.Column, element: str | None = None) -> Any:
    pl = _pl()
    if element is not None and node.name == element:
        return pl.element()
    return pl.col(node.name)


@to_polars.register
def _literal(node: exp.Literal, element: str | None = None) -> Any:
    pl = _pl()
    if node.is_string:
        return pl.lit(node.this, dtype=pl.String)
    text = node.this
    if any(c in text for c in ".eE"):
        return pl.lit(float(text), dtype=pl.Float64)
    return pl.lit(int(text), dtype=pl.Int64)


@to_polars.register
def _boolean(node: exp.Boolean, element: str | None = None) -> Any:
    return _pl().lit(bool(node.this), dtype=_pl().Boolean)


@to_polars.register
def _null(node: exp.Null, element: str | None = None) -> Any:
    return _pl().lit(None)


@to_polars.register
def _paren(node: exp.Paren, element: str | None = None) -> Any:
    return to_polars(node.this, element)


def _binary(fn: Callable[[Any, Any], Any]) -> Callable[[exp.Expression, str | None], Any]:
    def run(node: exp.Expression, element: str | None = None) -> Any:
        return fn(to_polars(node.this, element), to_polars(node.expression, element))

    return run


for _kind, _fn in {
    exp.And: lambda a, b: a & b,
    exp.Or: lambda a, b: a | b,
    exp.EQ: lambda a, b: a == b,
    exp.NEQ: lambda a, b: a != b,
    exp.LT: lambda a, b: a < b,
    exp.LTE: lambda a, b: a <= b,
    exp.GT: lambda a, b: a > b,
    exp.GTE: lambda a, b: a >= b,
    exp.Add: lambda a, b: a + b,
    exp.Mul: lambda a, b: a * b,
    exp.Mod: lambda a, b: a % b,
    exp.BitwiseAnd: lambda a, b: a & b,
    exp.BitwiseOr: lambda a, b: a | b,
    exp.ArrayContains: lambda a, b: a.list.contains(b),
}.items():
    to_polars.register(_kind, _binary(_fn))


@to_polars.register
def _shift(node: exp.BitwiseRightShift, element: str | None = None) -> Any:
    # Bit sets are non-negative, so a right shift is a floor division by a power of two.
    shift = node.expression
    if not isinstance(shift, exp.Literal):  # pragma: no cover - the compiler shifts by constants
        raise TypeError(f"unsupported shift: {node.sql()}")
    return to_polars(node.this, element) // (1 << int(shift.this))


@to_polars.register
def _not(node: exp.Not, element: str | None = None) -> Any:
    return ~to_polars(node.this, element)


@to_polars.register
def _is(node: exp.Is, element: str | None = None) -> Any:
    if not isinstance(node.expression, exp.Null):  # pragma: no cover - the compiler emits IS NULL
        raise TypeError(f"unsupported IS: {node.sql()}")
    return to_polars(node.this, element).is_null()


@to_polars.register
def _in(node: exp.In, element: str | None = None) -> Any:
    values = [
        e.this if e.is_string else float(e.this) if "." in e.this else int(e.this)
        for e in node.expressions
    ]
    return to_polars(node.this, element).is_in(values)


@to_polars.register
def _case(node: exp.Case, element: str | None = None) -> Any:
    pl = _pl()
    ifs: list[exp.If] = node.args.get("ifs") or []
    default = node.args.get("default")
    if not ifs:
        return to_polars(default, element) if default is not None else pl.lit(None)
    chain: Any = pl
    for branch in ifs:
        chain = chain.when(to_polars(branch.this, element)).then(
            to_polars(branch.args["true"], element)
        )
    return chain.otherwise(to_polars(default, element) if default is not None else None)


@to_polars.register
def _coalesce(node: exp.Coalesce, element: str | None = None) -> Any:
    items = [node.this, *node.expressions]
    return _pl().coalesce([to_polars(e, element) for e in items])


@to_polars.register
def _cast(node: exp.Cast, element: str | None = None) -> Any:
    pl = _pl()
    dtype = _dtype(node.to)
    if isinstance(node.this, exp.Null):
        return pl.lit(None, dtype=dtype)
    if isinstance(node.this, exp.Array) and not node.this.expressions:
        return pl.lit([], dtype=dtype)
    return to_polars(node.this, element).cast(dtype)


@to_polars.register
def _array(node: exp.Array, element: str | None = None) -> Any:
    return _pl().concat_list([to_polars(e, element) for e in node.expressions])


@to_polars.register
def _concat(node: exp.ArrayConcat, element: str | None = None) -> Any:
    return _pl().concat_list(
        [to_polars(node.this, element)] + [to_polars(e, element) for e in node.expressions]
    )


def _lambda(node: exp.Expression) -> tuple[str, exp.Expression]:
    fn = node.expression
    if not isinstance(fn, exp.Lambda) or len(fn.expressions) != 1:  # pragma: no cover
        raise TypeError(f"expected a one-argument lambda: {node.sql()}")
    return fn.expressions[0].name, fn.this


@to_polars.register
def _filter(node: exp.ArrayFilter, element: str | None = None) -> Any:
    var, body = _lambda(node)
    pl = _pl()
    arr = to_polars(node.this, element)
    return arr.list.eval(pl.element().filter(to_polars(body, var)))


@to_polars.register
def _transform(node: exp.Transform, element: str | None = None) -> Any:
    var, body = _lambda(node)
    return to_polars(node.this, element).list.eval(to_polars(body, var))


@to_polars.register
def _sort(node: exp.ArraySort, element: str | None = None) -> Any:
    asc = node.args.get("asc")
    descending = isinstance(asc, exp.Boolean) and not asc.this
    return to_polars(node.this, element).list.sort(descending=descending)


@to_polars.register
def _size(node: exp.ArraySize, element: str | None = None) -> Any:
    return to_polars(node.this, element).list.len()


def _prepared(frame: pl.LazyFrame) -> tuple[pl.LazyFrame, bool]:
    """Every input column present and typed (absent: NULL, unknown)."""
    pl = _pl()
    schema = frame.collect_schema()
    given = GIVEN in schema
    fixes = []
    for name, kind in input_columns(given=given).items():
        dtype = {
            "INTEGER": pl.Float64,
            "DOUBLE": pl.Float64,
            "BOOLEAN": pl.Boolean,
            "VARCHAR": pl.String,
            "VARCHAR[]": pl.List(pl.String),
        }[kind]
        have = schema.get(name)
        if have is None:
            fixes.append(pl.lit(None, dtype=dtype).alias(name))
        elif have != dtype:
            fixes.append(pl.col(name).cast(dtype))
    return (frame.with_columns(fixes) if fixes else frame), given


def run_polars(
    frame: pl.LazyFrame | pl.DataFrame,
    kb: KnowledgeBase,
    *,
    only: Collection[str] | None = None,
) -> pl.LazyFrame:
    """The audit of a registry frame, lazily (collect it, or stream it with ``sink_*``).

    ``only``: the result families to compute (``netboard.batch.run.FAMILIES``); None for all.
    """
    from netboard.batch.run import select_outputs

    query = select_outputs(compile_audit(kb), only)
    lazy, given = _prepared(frame.lazy())
    for layer in query.layers:
        lazy = lazy.with_columns([to_polars(e).alias(name) for name, e in layer.columns])
    pl = _pl()
    outputs = []
    for name, e in query.outputs:
        if name == "concordant" and not given:
            outputs.append(pl.lit(None, dtype=pl.Boolean).alias(name))
        else:
            outputs.append(to_polars(e).alias(name))
    return lazy.select(outputs)


def audit_polars(
    table: pa.Table, kb: KnowledgeBase, *, only: Collection[str] | None = None
) -> pa.Table:
    """The audit of one Arrow chunk on Polars, as an Arrow table."""
    pl = _pl()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return run_polars(frame, kb, only=only).collect().to_arrow()
