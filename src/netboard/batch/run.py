"""Run the compiled cohort audit on an engine: DuckDB (embedded default), Polars, Spark.

Every engine runs the query of :func:`netboard.batch.compile.compile_audit`; the result has
exactly the columns of :func:`netboard.batch.result_columns`. Engines are imported lazily.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from netboard.batch.columns import GIVEN, input_columns
from netboard.batch.compile import AuditQuery, Layer, _alias, col, compile_audit
from netboard.kb import KnowledgeBase

if TYPE_CHECKING:  # pragma: no cover - typing only
    import duckdb
    import pyarrow as pa

__all__ = [
    "CARRY",
    "EMBEDDED",
    "ENGINES",
    "FAMILIES",
    "audit_arrow",
    "audit_expression",
    "audit_stream",
    "output_columns",
    "parse_only",
    "run_duckdb",
    "run_spark",
    "select_outputs",
]

#: The embedded engines ``audit_arrow`` accepts; the first is the default (see
#: docs/benchmarks.md, "audit-engine"). ``spark`` is accepted too when pyspark is installed.
EMBEDDED = ("duckdb", "polars")


def _spark_installed() -> bool:
    import importlib.util
    import shutil

    return importlib.util.find_spec("pyspark") is not None and shutil.which("java") is not None


#: Every engine ``audit_arrow`` can run here.
ENGINES = (*EMBEDDED, "spark") if _spark_installed() else EMBEDDED

_VIEWS = itertools.count()
_CHUNK = "__netboard_chunk"

#: Input types an engine may hold that need no cast (e.g. ``ecog`` as DOUBLE or BIGINT).
_COMPATIBLE = {
    "INTEGER": {"INTEGER", "BIGINT", "SMALLINT", "TINYINT", "DOUBLE", "FLOAT", "HUGEINT"},
    "DOUBLE": {"DOUBLE", "FLOAT", "INTEGER", "BIGINT", "SMALLINT", "TINYINT", "DECIMAL"},
}


def _normalised_source(table: str, present: Mapping[str, str]) -> tuple[exp.Expression | str, bool]:
    """``table`` with every input column present and typed; also whether ``given`` is there.

    A column the registry lacks is NULL (unknown); a column of another type is cast.
    """
    wanted = input_columns(given=GIVEN in present)
    fixes: dict[str, exp.Expression] = {}
    for name, kind in wanted.items():
        have = present.get(name)
        ok = have is not None and (
            have == kind or have.split("(")[0] in _COMPATIBLE.get(kind, set())
        )
        if not ok:
            value = exp.null() if have is None else col(name)
            fixes[name] = _alias(exp.cast(value, kind), name)
    if not fixes:
        return table, GIVEN in present
    keep = [col(n) for n in present if n not in fixes]
    select = exp.select(*keep, *fixes.values()).from_(exp.to_table(table, quoted=True))
    return exp.Subquery(this=select, alias=exp.TableAlias(this=exp.to_identifier("src"))), (
        GIVEN in present
    )


def run_duckdb(
    con: duckdb.DuckDBPyConnection, source: str | duckdb.DuckDBPyRelation, kb: KnowledgeBase
) -> duckdb.DuckDBPyRelation:
    """The audit of a registry table, view or relation on a DuckDB connection (lazy relation).

    Columns the registry lacks count as unknown; ``concordant`` is NULL without ``given``.
    """
    if isinstance(source, str):
        name = source
        rel = con.sql(exp.select(exp.Star()).from_(exp.to_table(name)).sql(dialect="duckdb"))
    else:
        rel = source
        name = f"__netboard_src_{next(_VIEWS)}"
        rel.create_view(name, replace=True)
    present = {c: str(t) for c, t in zip(rel.columns, rel.types, strict=True)}
    table, given = _normalised_source(name, present)
    return con.sql(compile_audit(kb).expression(table, given=given).sql(dialect="duckdb"))


# --- part of the output (``--only``) ------------------------------------------------------

#: The result column families ``--only`` takes (``id`` is always written).
FAMILIES = ("rec", "elig", "alerts", "missing", "concordant")


def family_of(column: str) -> str:
    """The family of a result column: ``id``, ``rec``, ``elig``, ``alerts``, ...

    >>> family_of("rec.prrt"), family_of("missing"), family_of("id")
    ('rec', 'missing', 'id')
    """
    return column.split(".", 1)[0]


def parse_only(text: str) -> frozenset[str]:
    """The families of an ``--only`` value such as ``rec,elig``.

    Raises:
        ValueError: an empty list or a word that is not a family (the message names it).
    """
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words:
        raise ValueError(f"expected one or more of {', '.join(FAMILIES)}")
    for word in words:
        if word not in FAMILIES:
            raise ValueError(f"{word!r} is not a result family: use {', '.join(FAMILIES)}")
    return frozenset(words)


def output_columns(only: Collection[str] | None = None) -> list[str]:
    """The result columns of the families in ``only`` (all when None), ``id`` first."""
    from netboard.batch import result_columns

    return [c for c in result_columns() if only is None or family_of(c) in {"id", *only}]


def _refs(e: exp.Expression) -> set[str]:
    return {c.name for c in e.find_all(exp.Column)}


def select_outputs(query: AuditQuery, only: Collection[str] | None) -> AuditQuery:
    """``query`` with only the outputs of the families in ``only`` and the layers they need.

    Working columns no kept output reads (directly or through other working columns) are
    dropped, so a query for ``elig`` alone computes no rule step and no ``missing`` count.
    """
    if only is None:
        return query
    outputs = tuple((n, e) for n, e in query.outputs if family_of(n) in {"id", *only})
    needed: set[str] = set()
    for _, e in outputs:
        needed |= _refs(e)
    layers: list[Layer] = []
    for layer in reversed(query.layers):
        kept = tuple((n, e) for n, e in layer.columns if n in needed)
        for _, e in kept:
            needed |= _refs(e)
        if kept:
            layers.append(Layer(layer.name, kept))
    return AuditQuery(query.kb_version, tuple(reversed(layers)), outputs)


def audit_expression(
    kb: KnowledgeBase,
    table: str,
    present: Mapping[str, str],
    *,
    only: Collection[str] | None = None,
    carry: Sequence[str] = (),
) -> exp.Query:
    """The audit query over ``table`` (columns ``present``: name -> SQL type).

    ``carry``: input columns passed through as ``CARRY + name`` after the result columns
    (the report reads them beside each result row).
    """
    source, given = _normalised_source(table, present)
    query = select_outputs(compile_audit(kb), only).expression(source, given=given)
    assert isinstance(query, exp.Select)
    if carry:
        query = query.select(*(_alias(col(name), CARRY + name) for name in carry), copy=False)
    return query


#: Prefix of the input columns an audit query carries through (``carry``).
CARRY = "__in."


# --- embedded engines ---------------------------------------------------------------------


def audit_arrow(
    table: pa.Table | pa.RecordBatch,
    kb: KnowledgeBase,
    *,
    engine: str = "duckdb",
    only: Collection[str] | None = None,
) -> pa.Table:
    """The audit of one chunk of a registry (an Arrow table or record batch).

    Args:
        table: registry rows (columns as in ``netboard.batch.columns``).
        kb: the knowledge base.
        engine: ``duckdb`` (default), ``polars``, or ``spark`` (a local session, started
            once per process, evaluating each partition on DuckDB; see
            :mod:`netboard.batch.spark_engine`).
        only: result families to compute (see :data:`FAMILIES`); None for all.
    """
    import pyarrow as pa

    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if engine == "duckdb":
        import duckdb

        con = duckdb.connect()
        try:
            con.register(_CHUNK, table)
            return con.sql(
                _duckdb_sql(kb, _CHUNK, _duckdb_types(table.schema), only)
            ).to_arrow_table()
        finally:
            con.close()
    if engine == "polars":
        from netboard.batch.polars_engine import audit_polars

        return audit_polars(table, kb, only=only)
    if engine == "spark" and "spark" in ENGINES:
        from netboard.batch.spark_engine import audit_arrow_spark

        return audit_arrow_spark(table, kb, only=only)
    raise ValueError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")


def _duckdb_types(schema: pa.Schema) -> dict[str, str]:
    """DuckDB's type name for each column of an Arrow schema."""
    import duckdb

    con = duckdb.connect()
    try:
        con.register(_CHUNK, schema.empty_table())
        rel = con.table(_CHUNK)
        return {c: str(t) for c, t in zip(rel.columns, rel.types, strict=True)}
    finally:
        con.close()


_SQL: dict[tuple[int, str], tuple[KnowledgeBase, str]] = {}


def _duckdb_sql(
    kb: KnowledgeBase,
    chunk: str,
    present: Mapping[str, str],
    only: Collection[str] | None = None,
    carry: Sequence[str] = (),
) -> str:
    """The rendered DuckDB query for a chunk schema (rendering takes a fifth of a second)."""
    key = (id(kb), repr((chunk, sorted(present.items()), sorted(only or ()), list(carry))))
    hit = _SQL.get(key)
    if hit is None or hit[0] is not kb:
        query = audit_expression(kb, chunk, present, only=only, carry=carry)
        if len(_SQL) >= 16:
            _SQL.clear()
        hit = _SQL[key] = (kb, query.sql(dialect="duckdb"))
    return hit[1]


def default_threads() -> int:
    """Threads for the embedded audit: every core this process may use."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class _Feed:
    """Record batches for DuckDB to pull; an error raised while producing them is kept."""

    def __init__(self, batches: Iterable[pa.RecordBatch]) -> None:
        self.batches = batches
        self.error: BaseException | None = None

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            yield from self.batches
        except BaseException as exc:
            self.error = exc
            raise


def audit_stream(
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    kb: KnowledgeBase,
    *,
    only: Collection[str] | None = None,
    carry: Sequence[str] = (),
    threads: int | None = None,
    batch_rows: int = 50_000,
) -> Iterator[pa.RecordBatch]:
    """The DuckDB audit of a stream of record batches, as a stream of result batches.

    One query is planned for the whole stream (planning the large query costs about half a
    second) and DuckDB evaluates it on ``threads`` threads (default: every core), pulling the
    input batches as it goes, so memory holds a few batches whatever the stream's length.
    Results come in input order. An exception raised by ``batches`` is re-raised as is.
    """
    import duckdb
    import pyarrow as pa

    feed = _Feed(batches)
    con = duckdb.connect(config={"threads": threads or default_threads()})
    try:
        sql = _duckdb_sql(kb, _CHUNK, _duckdb_types(schema), only, carry)
        con.register(_CHUNK, pa.RecordBatchReader.from_batches(schema, iter(feed)))
        try:
            reader = con.sql(sql).to_arrow_reader(batch_rows)
            yield from reader
        except duckdb.Error:
            if feed.error is not None:
                raise feed.error from None
            raise
        if feed.error is not None:
            raise feed.error
    finally:
        con.close()


def run_spark(
    spark: Any, df: Any, kb: KnowledgeBase, *, only: Collection[str] | None = None
) -> Any:
    """The audit of a Spark DataFrame as one Spark SQL query (the ``spark`` dialect).

    This is the plan Spark executes itself; the query is too large for Spark's code
    generation, so it runs interpreted, far slower than DuckDB (docs/benchmarks.md). The
    distributed audit (:func:`netboard.batch.spark_engine.audit_frame`) evaluates each
    partition on DuckDB instead; this plan is kept for comparison and for checks.

    Args:
        spark: a ``pyspark.sql.SparkSession``.
        df: the registry as a Spark DataFrame.
        kb: the knowledge base.
        only: result families to compute; None for all.
    """
    name = f"netboard_src_{next(_VIEWS)}"
    present = {f.name: _spark_type(f.dataType.simpleString()) for f in df.schema.fields}
    df.createOrReplaceTempView(name)
    query = audit_expression(kb, name, present, only=only)
    return spark.sql(query.sql(dialect="spark"))


def _spark_type(simple: str) -> str:
    """A Spark simple type string as the DuckDB type name ``input_columns`` uses."""
    return {
        "string": "VARCHAR",
        "double": "DOUBLE",
        "float": "FLOAT",
        "int": "INTEGER",
        "bigint": "BIGINT",
        "boolean": "BOOLEAN",
        "array<string>": "VARCHAR[]",
    }.get(simple, simple.upper())
