"""Spark as the distributed audit engine, with DuckDB's speed on each partition.

Spark does what it is for: reading the registry where it lives, partitioning, scheduling,
retrying failed tasks and writing the result. Each partition is evaluated by the *same*
compiled query as the embedded audit, on DuckDB, over the Arrow batches Spark hands to Python
(``DataFrame.mapInArrow``). The query is rendered once on the driver and shipped to the tasks
as text; a task needs ``netboard``, ``duckdb`` and ``pyarrow`` installed (docs/audit.md,
"Spark on a cluster").

Why not the Spark SQL plan (:func:`netboard.batch.run.run_spark`)? The query has about 880
working columns and 15,000 expression nodes a patient; Spark's code generation gives up on it
and interprets it, about 100 times slower per core than DuckDB (docs/benchmarks.md,
"audit-scale").

With ``validate`` the tasks also check each row exactly as ``netboard audit`` does
(:func:`netboard.batch.io.check_table`): bad rows are left out of the result and come back as
problem lines ``row N: field: message`` in the ``PROBLEM`` column of otherwise empty rows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netboard.batch.columns import GIVEN
from netboard.kb import KnowledgeBase

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pyarrow as pa

__all__ = [
    "PROBLEM",
    "ROW",
    "FileTask",
    "audit_arrow_spark",
    "audit_frame",
    "audit_parquet_files",
    "local_session",
    "plan_file_tasks",
    "result_ddl",
]

#: The column of a problem line in :func:`audit_frame`'s output (NULL on result rows).
PROBLEM = "__netboard_problem"
#: An optional input column: the row number problem lines name (else the place in the task).
ROW = "__netboard_row"
#: Rows per Arrow batch handed between Spark and Python.
ARROW_BATCH_ROWS = 50_000


def result_ddl(only: Collection[str] | None = None, *, problems: bool = True) -> str:
    """The Spark DDL of the result columns of ``only`` (and the problem column)."""
    from netboard.batch.run import output_columns

    parts = []
    for name in output_columns(only):
        kind = "ARRAY<STRING>" if name in ("alerts", "missing") else "STRING"
        if name == "concordant":
            kind = "BOOLEAN"
        parts.append(f"`{name}` {kind}")
    if problems:
        parts.append(f"`{PROBLEM}` STRING")
    return ", ".join(parts)


def _arrow_result_schema(only: Collection[str] | None) -> pa.Schema:
    import pyarrow as pa

    from netboard.batch.reference import result_schema
    from netboard.batch.run import output_columns

    full = result_schema()
    return pa.schema([full.field(n) for n in output_columns(only)])


def partition_auditor(
    sql: str,
    input_schema: pa.Schema,
    only: Collection[str] | None,
    *,
    validate: bool,
    csv_text: bool = False,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function each Spark task runs on its partition's Arrow batches.

    ``sql`` reads the table ``__netboard_chunk`` with ``input_schema`` (the checked input
    layout when ``validate``, else the frame's own schema).
    """
    out_schema = _arrow_result_schema(only)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import duckdb
        import pyarrow as pa

        problems: list[str] = []
        feed: Iterable[pa.RecordBatch] = (_undotted(b, reverse=True) for b in batches)
        if validate:
            feed = _checked(iter(feed), input_schema, csv_text, problems)
        con = duckdb.connect(config={"threads": 1})
        try:
            con.register("__netboard_chunk", pa.RecordBatchReader.from_batches(input_schema, feed))
            reader = con.sql(sql).to_arrow_reader(ARROW_BATCH_ROWS)
            for batch in reader:
                cols = [batch.column(i) for i in range(batch.num_columns)]
                yield pa.RecordBatch.from_arrays(
                    [*cols, pa.nulls(batch.num_rows, pa.string())],
                    schema=out_schema.append(pa.field(PROBLEM, pa.string())),
                )
        finally:
            con.close()
        if problems:
            n = len(problems)
            arrays = [pa.nulls(n, f.type) for f in out_schema]
            yield pa.RecordBatch.from_arrays(
                [*arrays, pa.array(problems, pa.string())],
                schema=out_schema.append(pa.field(PROBLEM, pa.string())),
            )

    return run


def _undotted(batch: pa.RecordBatch, *, reverse: bool = False) -> pa.RecordBatch:
    """Column names with ``.`` as ``:`` and back (``mapInArrow`` cannot resolve dotted names)."""
    names = [n.replace(":", ".") if reverse else n.replace(".", ":") for n in batch.schema.names]
    return batch.rename_columns(names)


def _checked(
    batches: Iterator[pa.RecordBatch], schema: pa.Schema, csv_text: bool, problems: list[str]
) -> Iterator[pa.RecordBatch]:
    """Each batch checked as ``netboard audit`` checks a chunk; problem lines kept aside."""
    import pyarrow as pa

    from netboard.batch.io import check_table

    seen = 0
    for batch in batches:
        table = pa.Table.from_batches([batch])
        numbers: list[int] | None = None
        if ROW in table.column_names:
            numbers = [int(x) for x in table.column(ROW).to_pylist()]
            table = table.drop_columns([ROW])
        chunk = check_table(
            table, csv_text=csv_text, offset=seen, has_given=GIVEN in schema.names, numbers=numbers
        )
        seen += batch.num_rows
        problems.extend(chunk.problems)
        yield from chunk.table.select(schema.names).to_batches()


def audit_frame(
    df: Any,
    kb: KnowledgeBase,
    *,
    only: Collection[str] | None = None,
    validate: bool = True,
    csv_text: bool = False,
) -> Any:
    """The audit of a Spark DataFrame, each partition evaluated on DuckDB (``mapInArrow``).

    Args:
        df: the registry (columns as ``netboard audit`` reads them; with ``validate`` they are
            checked and columns that are not case fields are refused before any task runs).
        kb: the knowledge base (the query is compiled and rendered here, on the driver).
        only: result families (``netboard.batch.run.FAMILIES``); None for all.
        validate: check each row as ``netboard audit`` does; bad rows become problem rows.
        csv_text: the columns are CSV text (strings) to be read as ``netboard audit`` reads CSV.

    Returns:
        A DataFrame with the result columns of ``only`` and :data:`PROBLEM` (NULL on result
        rows; on a problem row every other column is NULL).

    Raises:
        RegistryError: ``validate`` and a column is not a case field, ``labs.FIELD`` or
            ``given``.
    """
    import pyarrow as pa

    from netboard.batch.io import check_columns, input_schema
    from netboard.batch.run import _duckdb_sql, _duckdb_types

    names = [f.name for f in df.schema.fields if f.name != ROW]
    if validate:
        check_columns(names, "registry")
        schema = input_schema(GIVEN in names)
    else:
        from pyspark.sql.pandas.types import to_arrow_schema

        schema = to_arrow_schema(df.select(*names).schema)
        schema = pa.schema([f for f in schema if f.name != ROW])
    sql = _duckdb_sql(kb, "__netboard_chunk", _duckdb_types(schema), only)
    fn = partition_auditor(sql, schema, only, validate=validate, csv_text=csv_text)
    safe = df.toDF(*(f.name.replace(".", ":") for f in df.schema.fields))
    return safe.mapInArrow(fn, result_ddl(only))


_SESSION: list[Any] = []


def local_session(master: str = "local[*]") -> Any:
    """A local Spark session for ``netboard audit --engine spark`` and checks (started once).

    Its Python tasks run this interpreter (``PYSPARK_PYTHON`` unless already set), so they
    find netboard, DuckDB and pyarrow.
    """
    import os
    import sys

    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # a local session stays on loopback

    builder = (
        SparkSession.builder.master(master)
        .appName("netboard-audit")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARROW_BATCH_ROWS))
    )
    return builder.getOrCreate()


def audit_arrow_spark(
    table: pa.Table, kb: KnowledgeBase, *, only: Collection[str] | None = None
) -> pa.Table:
    """The audit of an (already checked) Arrow chunk on the local Spark session."""
    import pyarrow as pa

    from netboard.batch.columns import input_schema

    spark = local_session()
    given = GIVEN in table.column_names
    wanted = input_schema(given=given)
    present = [f for f in wanted if f.name in table.column_names]
    typed = table.select([f.name for f in present]).cast(pa.schema(present))
    df = spark.createDataFrame(typed)
    out = audit_frame(df, kb, only=only, validate=False).drop(PROBLEM)
    result: pa.Table = out.toArrow()
    return result.cast(_arrow_result_schema(only))


# --- the file plan: Spark schedules row groups, tasks read and write Arrow themselves ---------


@dataclass(frozen=True, slots=True)
class FileTask:
    """One task of :func:`audit_parquet_files`: row groups of one Parquet file."""

    index: int
    path: str
    row_groups: tuple[int, ...]
    first_row: int  # the file row number (from 1) of the first row of the first group
    has_given: bool
    source: str  # the registry as given (its file system, for the task to reopen)


def _filesystem(uri: str) -> tuple[Any, str]:
    """A pyarrow file system and the path in it (local paths, ``file:``, ``hdfs:``, ``s3:``...)."""
    import pyarrow.fs as pafs

    if "://" in uri:
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path
    return pafs.LocalFileSystem(), str(Path(uri).resolve())


def plan_file_tasks(registry: str, rows_per_task: int = 500_000) -> list[FileTask]:
    """Tasks of about ``rows_per_task`` rows: whole row groups of the registry's Parquet files.

    Raises:
        RegistryError: no Parquet file, an unreadable footer, or a column that is not a case
            field, ``labs.FIELD`` or ``given``.
    """
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from netboard.batch.io import RegistryError, check_columns
    from netboard.errors import Problem

    fs, root = _filesystem(registry)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.Directory:
        found = fs.get_file_info(pafs.FileSelector(root, recursive=True))
        files = sorted(
            f.path
            for f in found
            if f.type == pafs.FileType.File
            and f.base_name.lower().endswith((".parquet", ".pq"))
            and not f.base_name.startswith(("_", "."))
        )
    elif info.type == pafs.FileType.File:
        files = [root]
    else:
        raise RegistryError([Problem(registry, "no such file or folder")])
    if not files:
        raise RegistryError([Problem(registry, "no Parquet file in this folder")])
    tasks: list[FileTask] = []
    for path in files:
        try:
            with fs.open_input_file(path) as fh:
                meta = pq.ParquetFile(fh)
                names = pa.Table.from_batches([], schema=meta.schema_arrow).flatten().column_names
                sizes = [meta.metadata.row_group(i).num_rows for i in range(meta.num_row_groups)]
        except (pa.ArrowException, OSError) as exc:
            raise RegistryError([Problem(path, f"not a Parquet file: {exc}")]) from None
        check_columns(names, path)
        group: list[int] = []
        rows = start = 0
        row = 1
        for i, size in enumerate(sizes):
            if group and rows + size > rows_per_task:
                tasks.append(
                    FileTask(len(tasks), path, tuple(group), start, "given" in names, registry)
                )
                group, rows = [], 0
            if not group:
                start = row
            group.append(i)
            rows += size
            row += size
        if group:
            tasks.append(
                FileTask(len(tasks), path, tuple(group), start, "given" in names, registry)
            )
    return tasks


def run_file_task(
    task: FileTask, sql: str, out: str, problems: str | None, only: Collection[str] | None
) -> tuple[int, int, int, list[str]]:
    """One task: read its row groups, check, evaluate on DuckDB, write its part files.

    The part file is written under a temporary name and renamed, so a retried or speculative
    attempt leaves one whole file. Returns (rows read, audited, skipped, first problem lines).
    """
    import uuid

    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from netboard.batch.io import check_table, input_schema

    fs, path = _filesystem(task.source)[0], task.path
    out_fs, out_dir = _filesystem(out)
    schema = input_schema(task.has_given)
    lines: list[str] = []
    counts = [0, 0]  # rows, skipped

    def feed() -> Iterator[pa.RecordBatch]:
        with fs.open_input_file(path) as fh:
            pf = pq.ParquetFile(fh)
            offset = task.first_row - 1
            for g in task.row_groups:
                table = pf.read_row_group(g).flatten()
                chunk = check_table(table, offset=offset, has_given=task.has_given)
                offset += table.num_rows
                counts[0] += chunk.rows
                counts[1] += chunk.skipped
                lines.extend(chunk.problems)
                yield from chunk.table.select(schema.names).cast(schema).to_batches()

    name = f"part-{task.index:05d}.parquet"
    tmp = f"{out_dir}/.{name}.{uuid.uuid4().hex}.tmp"
    audited = 0
    con = duckdb.connect(config={"threads": 1})
    try:
        con.register("__netboard_chunk", pa.RecordBatchReader.from_batches(schema, feed()))
        reader = con.sql(sql).to_arrow_reader(ARROW_BATCH_ROWS)
        out_schema = _arrow_result_schema(only)
        with (
            out_fs.open_output_stream(tmp) as sink,
            pq.ParquetWriter(sink, out_schema, compression="zstd") as writer,
        ):
            for batch in reader:
                audited += batch.num_rows
                writer.write_batch(batch.cast(out_schema))
        out_fs.move(tmp, f"{out_dir}/{name}")
    except BaseException:
        with contextlib.suppress(OSError):
            out_fs.delete_file(tmp)
        raise
    finally:
        con.close()
    if problems is not None and lines:
        p_fs, p_dir = _filesystem(problems)
        p_tmp = f"{p_dir}/.part-{task.index:05d}.{uuid.uuid4().hex}.tmp"
        with p_fs.open_output_stream(p_tmp) as sink:
            sink.write("".join(line + "\n" for line in lines).encode("utf-8"))
        p_fs.move(p_tmp, f"{p_dir}/part-{task.index:05d}.txt")
    return counts[0], audited, counts[1], lines[:20]


def audit_parquet_files(
    spark: Any,
    registry: str,
    out: str,
    kb: KnowledgeBase,
    *,
    problems: str | None = None,
    only: Collection[str] | None = None,
    rows_per_task: int = 500_000,
) -> tuple[int, int, int, list[str]]:
    """The audit of a Parquet registry with Spark scheduling row groups as tasks.

    Spark partitions the work (whole row groups, about ``rows_per_task`` rows a task),
    schedules and retries the tasks; each task reads its row groups with Arrow, checks them,
    evaluates them with one DuckDB query and writes its own part file of ``out`` (then
    ``_SUCCESS``). No row passes through the JVM, which is where the ``mapInArrow`` plan
    spends most of its time (docs/benchmarks.md, "audit-scale").

    Returns (rows read, patients audited, rows skipped, first problem lines).

    Raises:
        RegistryError: as :func:`plan_file_tasks`; OutputError: ``out`` exists.
    """
    from netboard.batch.io import input_schema
    from netboard.batch.outputs import OutputError
    from netboard.batch.run import _duckdb_sql, _duckdb_types
    from netboard.errors import Problem

    tasks = plan_file_tasks(registry, rows_per_task)
    out_fs, out_dir = _filesystem(out)
    import pyarrow.fs as pafs

    folders = [(out_fs, out_dir, "--out")]
    if problems:
        folders.append((*_filesystem(problems), "--problems"))
    for fs, folder, option in folders:
        if fs.get_file_info(folder).type != pafs.FileType.NotFound:
            raise OutputError([Problem(option, f"{folder} exists: give a new folder")])
    out_fs.create_dir(out_dir)
    if problems:
        p_fs, p_dir = _filesystem(problems)
        p_fs.create_dir(p_dir)
    sqls = {
        given: _duckdb_sql(kb, "__netboard_chunk", _duckdb_types(input_schema(given)), only)
        for given in {t.has_given for t in tasks}
    }
    only_list = sorted(only) if only is not None else None

    def run(items: Iterator[FileTask]) -> Iterator[tuple[int, int, int, list[str]]]:
        for t in items:
            yield run_file_task(t, sqls[t.has_given], out, problems, only_list)

    done = spark.sparkContext.parallelize(tasks, len(tasks)).mapPartitions(run).collect()
    with out_fs.open_output_stream(f"{out_dir}/_SUCCESS"):
        pass
    rows = sum(d[0] for d in done)
    audited = sum(d[1] for d in done)
    skipped = sum(d[2] for d in done)
    first = [line for d in done for line in d[3]][:20]
    return rows, audited, skipped, first
