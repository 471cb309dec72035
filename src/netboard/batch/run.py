"""Run the compiled cohort audit on an engine: DuckDB (embedded default), Polars, Spark.

Every engine runs the query of :func:`netboard.batch.compile.compile_audit`; the result has
exactly the columns of :func:`netboard.batch.result_columns`. Engines are imported lazily.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
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
    "audit_tables",
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


class _Stopped(Exception):
    """Another thread of :func:`audit_tables` failed or the caller stopped: wind down."""


def audit_tables(
    tables: Iterable[pa.Table],
    schema: pa.Schema,
    kb: KnowledgeBase,
    *,
    consume: Callable[[pa.Table], None],
    only: Collection[str] | None = None,
    carry: Sequence[str] = (),
    threads: int | None = None,
    piece_rows: int = 25_000,
) -> None:
    """The DuckDB audit of a stream of tables on ``threads`` cores, results in input order.

    Each of ``threads`` workers (default: every core) runs *one* DuckDB query, single-threaded,
    over the pieces (``piece_rows``) dealt to it in turn: planning the large query costs about
    half a second, so it is paid once per worker, not once per chunk. A single-threaded query
    keeps its input order, and dealing the pieces in turn lets ``consume`` receive the result
    of every piece in input order (DuckDB's own parallel plan does not keep the order of this
    query). ``tables`` is read on the calling thread (a signal handler's exception lands
    there) and ``consume`` runs on one background thread, so reading, evaluation and writing
    overlap. Every queue is bounded: memory holds a few pieces per worker.

    Raises:
        whatever ``tables``, the query or ``consume`` raised (the first of them).
    """
    import collections
    import queue
    import threading

    import duckdb
    import pyarrow as pa

    workers = threads or default_threads()
    sql = _duckdb_sql(kb, _CHUNK, _duckdb_types(schema), only, carry)
    stop = threading.Event()
    errors: list[BaseException] = []
    inputs: list[queue.Queue[pa.Table | None]] = [queue.Queue(maxsize=2) for _ in range(workers)]
    results: list[queue.Queue[pa.RecordBatch | None]] = [
        queue.Queue(maxsize=4) for _ in range(workers)
    ]
    order: queue.Queue[tuple[int, int] | None] = queue.Queue()

    def fail(exc: BaseException) -> None:
        if not isinstance(exc, _Stopped):
            errors.append(exc)
        stop.set()

    def put(q: queue.Queue[Any], item: Any) -> None:
        while True:
            if stop.is_set():
                raise _Stopped
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def get(q: queue.Queue[Any]) -> Any:
        while True:
            if stop.is_set():
                raise _Stopped
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue

    def evaluate(k: int) -> None:
        def feed() -> Iterator[pa.RecordBatch]:
            while (piece := get(inputs[k])) is not None:
                yield from piece.to_batches()

        con = duckdb.connect(config={"threads": 1})
        try:
            con.register(_CHUNK, pa.RecordBatchReader.from_batches(schema, feed()))
            for batch in con.sql(sql).to_arrow_reader(piece_rows):
                put(results[k], batch)
            put(results[k], None)
        except BaseException as exc:
            if not stop.is_set():  # else: stopped on purpose, or another thread's error
                fail(exc)
        finally:
            con.close()

    def deliver() -> None:
        held: list[collections.deque[pa.RecordBatch]] = [
            collections.deque() for _ in range(workers)
        ]
        try:
            while (item := get(order)) is not None:
                k, need = item
                parts: list[pa.RecordBatch] = []
                while need:
                    if not held[k]:
                        batch = get(results[k])
                        if batch is None:
                            raise RuntimeError("an audit worker ended before its input")
                        held[k].append(batch)
                    batch = held[k].popleft()
                    if batch.num_rows > need:
                        held[k].appendleft(batch.slice(need))
                        batch = batch.slice(0, need)
                    parts.append(batch)
                    need -= batch.num_rows
                consume(pa.Table.from_batches(parts))
        except BaseException as exc:
            if not stop.is_set():
                fail(exc)

    threads_ = [
        threading.Thread(target=evaluate, args=(k,), name=f"netboard-duckdb-{k}", daemon=True)
        for k in range(workers)
    ]
    threads_.append(threading.Thread(target=deliver, name="netboard-write", daemon=True))
    for t in threads_:
        t.start()
    try:
        dealt = 0
        for table in tables:
            for start in range(0, table.num_rows, piece_rows):
                piece = table.slice(start, piece_rows)
                k = dealt % workers
                put(inputs[k], piece)
                order.put((k, piece.num_rows))
                dealt += 1
        for q in inputs:
            put(q, None)
        order.put(None)
        while threads_[-1].is_alive():
            threads_[-1].join(timeout=0.2)  # short waits: signals reach this thread
    except _Stopped:
        pass
    finally:
        stop.set()
        for t in threads_:
            t.join()
    if errors:
        raise errors[0]


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
