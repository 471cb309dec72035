"""Run the compiled cohort audit on an engine: DuckDB (embedded default), Polars, Spark.

Every engine runs the query of :func:`netboard.batch.compile.compile_audit`; the result has
exactly the columns of :func:`netboard.batch.result_columns`. Engines are imported lazily.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from netboard.batch.columns import GIVEN, input_columns
from netboard.batch.compile import _alias, col, compile_audit
from netboard.kb import KnowledgeBase

if TYPE_CHECKING:  # pragma: no cover - typing only
    import duckdb
    import pyarrow as pa

__all__ = ["EMBEDDED", "ENGINES", "audit_arrow", "run_duckdb", "run_spark"]

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


def _normalised_source(table: str, present: dict[str, str]) -> tuple[exp.Expression | str, bool]:
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


def audit_arrow(
    table: pa.Table | pa.RecordBatch, kb: KnowledgeBase, *, engine: str = "duckdb"
) -> pa.Table:
    """The audit of one chunk of a registry (an Arrow table or record batch).

    Args:
        table: registry rows (columns as in ``netboard.batch.columns``).
        kb: the knowledge base.
        engine: ``duckdb`` (default), ``polars``, or ``spark`` (a local session, started
            once per process; meant for checks, not for speed: Spark pays seconds a query).
    """
    import pyarrow as pa

    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if engine == "duckdb":
        import duckdb

        con = duckdb.connect()
        try:
            con.register(_CHUNK, table)
            rel = con.table(_CHUNK)
            present = {c: str(t) for c, t in zip(rel.columns, rel.types, strict=True)}
            return con.sql(_duckdb_sql(kb, _CHUNK, present)).to_arrow_table()
        finally:
            con.close()
    if engine == "polars":
        from netboard.batch.polars_engine import audit_polars

        return audit_polars(table, kb)
    if engine == "spark" and "spark" in ENGINES:
        return _audit_spark(table, kb)
    raise ValueError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")


_SQL: dict[tuple[int, str], tuple[KnowledgeBase, str]] = {}


def _duckdb_sql(kb: KnowledgeBase, chunk: str, present: dict[str, str]) -> str:
    """The rendered DuckDB query for a chunk schema (rendering takes a third of a second)."""
    key = (id(kb), repr(sorted(present.items())))
    hit = _SQL.get(key)
    if hit is None or hit[0] is not kb:
        table, given = _normalised_source(chunk, present)
        sql = compile_audit(kb).expression(table, given=given).sql(dialect="duckdb")
        if len(_SQL) >= 16:
            _SQL.clear()
        hit = _SQL[key] = (kb, sql)
    return hit[1]


def run_spark(spark: Any, df: Any, kb: KnowledgeBase) -> Any:
    """The audit of a Spark DataFrame (same query, rendered in the ``spark`` dialect).

    Args:
        spark: a ``pyspark.sql.SparkSession``.
        df: the registry as a Spark DataFrame.
        kb: the knowledge base.
    """
    name = f"netboard_src_{next(_VIEWS)}"
    present = {f.name: _spark_type(f.dataType.simpleString()) for f in df.schema.fields}
    df.createOrReplaceTempView(name)
    table, given = _normalised_source(name, present)
    query = compile_audit(kb).expression(table, given=given)
    return spark.sql(query.sql(dialect="spark"))


def _audit_spark(table: pa.Table, kb: KnowledgeBase) -> pa.Table:
    import pyarrow as pa
    from pyspark.sql import SparkSession

    from netboard.batch.columns import input_schema, spark_ddl

    spark = (
        SparkSession.builder.master("local[*]")
        .appName("netboard-audit")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .getOrCreate()
    )
    names = list(input_columns(given=GIVEN in table.column_names))
    present = [n for n in names if n in table.column_names]
    ddl = ", ".join(
        part
        for part in spark_ddl(given=GIVEN in table.column_names).split(", ")
        if part.split(" ", 1)[0].strip("`") in present
    )
    # Registry readers give ecog as a double; Spark's row check wants the declared INT.
    schema = input_schema(given=GIVEN in table.column_names)
    typed = table.select(present).cast(pa.schema([schema.field(n) for n in present]))
    rows = [tuple(r[n] for n in present) for r in typed.to_pylist()]
    df = spark.createDataFrame(rows, schema=ddl)
    return run_spark(spark, df, kb).toArrow()


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
