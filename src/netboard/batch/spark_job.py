"""The cohort audit as a Spark application (``spark-submit``; docs/audit.md, "Spark").

Spark splits the registry (Parquet or CSV, a file or a folder of files) into tasks, schedules
and retries them, and the result is a folder of Parquet files. Each task checks its rows exactly
as ``netboard audit`` does and evaluates them with the compiled query on DuckDB
(:mod:`netboard.batch.spark_engine`). Parquet: Spark schedules row groups and each task reads
and writes Arrow itself (any file system pyarrow reaches: local, ``hdfs://``, ``s3://``, ...);
CSV (or ``--partitions``): Spark reads and writes, tasks evaluate through ``mapInArrow``.

    spark-submit [spark options] spark_job.py REGISTRY --out RESULT_DIR
        [--problems PROBLEMS_DIR] [--only rec,elig] [--kb DIR] [--format parquet|csv]
        [--partitions N]

Exit status: 0 when the audit ran (even with skipped rows), 2 when the input or an option is
unusable (one line per problem on standard error). The result folder is written by Spark's
committer (``_SUCCESS`` marks a complete result); an existing folder is refused.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["main", "run_job"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spark_job.py", description=__doc__.split("\n\n")[0])
    p.add_argument("registry", help="Parquet or CSV registry: a file or a folder (any Spark URI)")
    p.add_argument("--out", required=True, help="result folder (Parquet files)")
    p.add_argument("--problems", help="folder for the problem lines of skipped rows (text)")
    p.add_argument("--only", help="result families: rec,elig,alerts,missing,concordant")
    p.add_argument("--kb", help="knowledge-base directory (default: the packaged one)")
    p.add_argument("--format", choices=["parquet", "csv"], help="default: by extension")
    p.add_argument("--partitions", type=int, help="repartition the registry into N partitions")
    p.add_argument("--show", type=int, default=20, help="problem lines shown on stderr (20)")
    return p


def _format(registry: str, given: str | None) -> str:
    if given:
        return given
    return "csv" if registry.lower().rstrip("/").endswith(".csv") else "parquet"


def read_registry_frame(spark: Any, registry: str, fmt: str) -> Any:
    """The registry as a DataFrame (CSV: every column as text, as ``netboard audit`` reads it),
    with its Parquet row numbers (:data:`netboard.batch.spark_engine.ROW`) when Spark gives them.
    """
    from pyspark.sql import functions as F

    from netboard.batch.spark_engine import ROW

    if fmt == "csv":
        df = (
            spark.read.option("header", True)
            .option("inferSchema", False)
            .option("mode", "PERMISSIVE")
            .option("encoding", "UTF-8")
            .csv(registry)
        )
        return df
    df = spark.read.parquet(registry)
    try:
        return df.select("*", (F.col("_metadata.row_index") + 1).alias(ROW))
    except Exception:  # pragma: no cover - a Spark without Parquet row indexes
        return df


def run_job(
    spark: Any,
    registry: str,
    out: str,
    *,
    problems: str | None = None,
    only: frozenset[str] | None = None,
    kb_dir: str | None = None,
    fmt: str | None = None,
    partitions: int | None = None,
    show: int = 20,
) -> tuple[int, int, list[str]]:
    """Audit ``registry`` into the folder ``out``; (patients audited, rows skipped, first lines).

    A Parquet registry runs on the file plan (``spark_engine.audit_parquet_files``: Spark
    schedules row groups, each task reads, checks, evaluates on DuckDB and writes its part
    file); CSV, or Parquet with ``partitions``, on the DataFrame plan (``audit_frame``: Spark
    reads and writes, each partition is evaluated on DuckDB through ``mapInArrow``).

    Raises:
        RegistryError: a column is not a case field, ``labs.FIELD`` or ``given``.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from netboard.batch.spark_engine import PROBLEM, audit_frame, audit_parquet_files
    from netboard.kb import load_kb

    kb = load_kb(kb_dir)
    kind = _format(registry, fmt)
    if kind == "parquet" and not partitions:
        # Spark schedules row groups; tasks read, check, evaluate and write Arrow themselves.
        _, audited_n, skipped_n, first_lines = audit_parquet_files(
            spark, registry, out, kb, problems=problems, only=only
        )
        return audited_n, skipped_n, first_lines[:show]
    df = read_registry_frame(spark, registry, kind)
    if partitions:
        df = df.repartition(partitions)
    audited = audit_frame(df, kb, only=only, validate=True, csv_text=kind == "csv")
    audited = audited.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        results = audited.where(F.col(PROBLEM).isNull()).drop(PROBLEM)
        results.write.mode("errorifexists").parquet(out)
        lines = audited.where(F.col(PROBLEM).isNotNull()).select(PROBLEM)
        if problems is not None:
            lines.write.mode("errorifexists").text(problems)
        skipped_lines = lines.count()
        first = [r[0] for r in lines.limit(show).collect()] if show else []
        n = spark.read.parquet(out).count()
    finally:
        audited.unpersist()
    return n, skipped_lines, first


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job; exit status as ``netboard audit``."""
    from netboard.errors import ProblemsError

    args = _parser().parse_args(argv)
    only = None
    if args.only:
        from netboard.batch.run import parse_only

        try:
            only = parse_only(args.only)
        except ValueError as exc:
            sys.stderr.write(f"--only: {exc}\n")
            return 2
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("netboard-audit").getOrCreate()
    try:
        audited, skipped, first = run_job(
            spark,
            args.registry,
            args.out,
            problems=args.problems,
            only=only,
            kb_dir=args.kb,
            fmt=args.format,
            partitions=args.partitions,
            show=args.show,
        )
    except ProblemsError as exc:
        for p in exc.problems:
            sys.stderr.write(f"{p}\n")
        return 2
    finally:
        spark.stop()
    for line in first:
        sys.stderr.write(line + "\n")
    where = f" (see {args.problems})" if args.problems else ""
    sys.stderr.write(f"netboard: {audited} patients audited, {skipped} problem lines{where}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
