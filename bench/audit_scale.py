"""Cohort audit at scale (issue 17): engines per core, and the audit against a plain copy.

Run with ``python bench/audit_scale.py [--n 1000000] [--sql-sample 20000]``. One run measures,
side by side on the same synthetic Parquet registry:

1. **Engines, per core.** Each reads the registry, checks every row as ``netboard audit``
   does, evaluates every result family and writes a Parquet result, on the 2 cores:
   DuckDB (``audit_chunks``, one single-threaded query per core), Polars (chunk by chunk, its
   own thread pool), and Spark ``local[2]`` evaluating each partition on DuckDB
   (``spark_engine.audit_frame``), timed after the session has started and run once. For the
   record, the plan Spark executes itself (``run.run_spark``, the query in Spark SQL) on a
   sample. Patients per second per core = patients / wall seconds / cores. CPU seconds (the
   process and, for Spark, the JVM and its Python workers) are given too: the machine is
   shared, and CPU time is less sensitive to other work on it than wall time.
2. **End to end.** ``netboard audit REGISTRY --out RESULT`` in its own process against a DuckDB
   copy of the same file (``COPY (FROM read_parquet(...)) TO ... (FORMAT parquet)``), also in
   its own process: wall time and the ratio; also with ``--only rec,elig`` and ``--threads 1``.
3. **Parity on Spark.** The vignettes and 12,000 generated cases through Spark (tasks on
   DuckDB) against ``recommend``, row for row.

Results go to the ``audit-scale`` section of ``docs/benchmarks.md``. Targets (issue 17): Spark
per core at least half of DuckDB's; the audit at most 4x the copy; 1 M patients in 10 s or less.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import ROOT, write_section

NETBOARD = Path(sys.executable).parent / "netboard"
CORES = 2
SPARK_PER_CORE_SHARE = 0.5
COPY_RATIO = 4.0
SECONDS_1M = 10.0
SPARK_FILES = "spark local[2], row groups as tasks, each on DuckDB (file plan, chosen)"
SPARK_FRAME = "spark local[2], Spark reads/writes, partitions on DuckDB via mapInArrow"


def write_registry(path: Path, n: int, row_group: int) -> None:
    """``n`` synthetic patients with ``given`` in row groups of ``row_group`` (not timed)."""
    import pyarrow.parquet as pq

    from netboard.batch.io import input_schema
    from netboard.batch.synth import synth_tables

    schema = input_schema(True)
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for table in synth_tables(n, seed=17, given=True, chunk_rows=250_000):
            writer.write_table(table.select(schema.names).cast(schema), row_group_size=row_group)


def tree_cpu() -> float:
    """CPU seconds of this process and every live descendant (with their reaped children)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = sum(int(x) for x in fields[11:15]) / tick
    me = os.getpid()
    total = 0.0
    for pid in times:
        p = pid
        while p and p != me and p in parents:
            p = parents[p]
        if p == me:
            total += times[pid]
    return total


def timed(fn: Any) -> tuple[float, float, Any]:
    """Wall and CPU seconds (process tree) of ``fn()``, and its value."""
    cpu0, t0 = tree_cpu(), time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, tree_cpu() - cpu0, value


def embedded(registry: Path, out: Path, engine: str) -> int:
    from netboard.batch.io import ResultWriter, audit_chunks, read_registry
    from netboard.kb import load_kb

    kb = load_kb()
    writer = ResultWriter(out)
    stats = audit_chunks(
        read_registry(registry), kb=kb, engine=engine, writer=writer, threads=CORES
    )
    writer.close()
    return stats.audited


def spark_session() -> Any:
    from netboard.batch.spark_engine import local_session

    spark = local_session(f"local[{CORES}]")
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def spark_files(spark: Any, registry: Path, out: Path) -> int:
    """Spark schedules row groups; tasks read, check, evaluate on DuckDB, write part files."""
    from netboard.batch.spark_engine import audit_parquet_files
    from netboard.kb import load_kb

    rows_per_task = -(-_rows(registry) // CORES)
    _, audited, skipped, _ = audit_parquet_files(
        spark, str(registry), str(out), load_kb(), rows_per_task=rows_per_task
    )
    assert skipped == 0
    return audited


def spark_frame(spark: Any, registry: Path, out: Path) -> int:
    """Spark reads and writes; each partition is evaluated on DuckDB through mapInArrow."""
    from pyspark.sql import functions as F

    from netboard.batch.spark_engine import PROBLEM, audit_frame
    from netboard.kb import load_kb

    size = registry.stat().st_size
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(size // CORES + 1))
    df = spark.read.parquet(str(registry))
    audited = audit_frame(df, load_kb())
    audited.where(F.col(PROBLEM).isNull()).drop(PROBLEM).write.parquet(str(out))
    spark.conf.unset("spark.sql.files.maxPartitionBytes")
    return int(spark.read.parquet(str(out)).count())


def _rows(registry: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(registry).metadata.num_rows)


def spark_sql(spark: Any, registry: Path, out: Path) -> int:
    from netboard.batch.run import run_spark
    from netboard.kb import load_kb

    df = spark.read.parquet(str(registry)).repartition(CORES)
    run_spark(spark, df, load_kb()).write.parquet(str(out))
    return int(spark.read.parquet(str(out)).count())


def child(args: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + sys) of a command in its own process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def duckdb_copy(registry: Path, out: Path) -> tuple[float, float]:
    code = (
        "import duckdb, sys\n"
        'duckdb.sql("COPY (FROM read_parquet(\'" + sys.argv[1] + "\')) TO \'" + sys.argv[2]'
        ' + "\' (FORMAT parquet, COMPRESSION zstd)")\n'
    )
    return child([sys.executable, "-c", code, str(registry), str(out)])


def spark_parity(spark: Any) -> dict[str, tuple[int, int]]:
    """Per Spark plan, (rows compared, rows differing): vignettes and 12,000 generated cases."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "tests" / "batch"))
    from test_parity import build, mismatches, vignettes  # type: ignore[import-not-found]

    from netboard.batch.sample import sample_cases
    from netboard.batch.spark_engine import PROBLEM, audit_frame, audit_parquet_files
    from netboard.kb import load_kb

    kb = load_kb()
    raw = list(vignettes())
    raw += list(sample_cases(6_000, kb, seed=20261121, sparse=0.05))
    raw += list(sample_cases(6_000, kb, seed=20261122, sparse=0.6))
    cohort = build(raw, kb)
    out: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "parity.parquet"
        pq.write_table(cohort.table(), path, row_group_size=3_000)
        audit_parquet_files(spark, str(path), f"{tmp}/files", kb, rows_per_task=6_000)
        out["file plan"] = (
            len(cohort.expected),
            len(mismatches(cohort, pq.read_table(f"{tmp}/files"))),
        )
        spark.conf.set("spark.sql.files.maxPartitionBytes", "256k")
        result = audit_frame(spark.read.parquet(str(path)), kb).toArrow()
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    result = result.filter(pa.compute.is_null(result.column(PROBLEM))).drop_columns([PROBLEM])
    out["DataFrame plan"] = (len(cohort.expected), len(mismatches(cohort, result)))
    return out


def verdict(ok: bool) -> str:
    return "meets" if ok else "**misses**"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--sql-sample", type=int, default=20_000)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    n = args.n
    load_before = os.getloadavg()
    rows: list[tuple[str, int, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        registry = tmp / "registry.parquet"
        write_registry(registry, n, row_group=125_000)
        size_mb = registry.stat().st_size / 1e6
        embedded(registry, tmp / "warm.parquet", "duckdb")  # imports, KB, query rendered
        for engine in ("duckdb", "polars"):
            wall, cpu, done = timed(lambda e=engine: embedded(registry, tmp / f"{e}.parquet", e))
            rows.append((engine, done, wall, cpu))
            print(engine, done, f"{wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)

        t0 = time.perf_counter()
        spark = spark_session()
        small = tmp / "small.parquet"
        write_registry(small, 10_000, row_group=5_000)
        spark_files(spark, small, tmp / "spark-warm")
        spark_frame(spark, small, tmp / "spark-warm-frame")
        startup = time.perf_counter() - t0
        wall, cpu, done = timed(lambda: spark_files(spark, registry, tmp / "spark-files"))
        rows.append((SPARK_FILES, done, wall, cpu))
        print("spark files", done, f"{wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
        wall, cpu, done = timed(lambda: spark_frame(spark, registry, tmp / "spark-frame"))
        rows.append((SPARK_FRAME, done, wall, cpu))
        print("spark frame", done, f"{wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
        sample = tmp / "sample.parquet"
        write_registry(sample, args.sql_sample, row_group=args.sql_sample)
        wall, cpu, done = timed(lambda: spark_sql(spark, sample, tmp / "spark-sql"))
        rows.append(("spark local[2], Spark SQL plan (sample)", done, wall, cpu))
        print("spark sql", done, f"{wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
        parity = spark_parity(spark)
        print("spark parity", parity, flush=True)
        spark.stop()

        e2e: dict[str, tuple[float, float]] = {}
        e2e["copy"] = duckdb_copy(registry, tmp / "copy.parquet")
        base = [str(NETBOARD), "audit", str(registry), "--out", str(tmp / "result.parquet")]
        e2e["audit"] = child(base)
        e2e["audit --only rec,elig"] = child([*base, "--only", "rec,elig"])
        e2e["audit --threads 1"] = child([*base, "--threads", "1"])
        e2e["audit --report"] = child([*base, "--report", str(tmp / "audit.html")])
        for k, (w, c) in e2e.items():
            print(k, f"{w:.1f} s wall, {c:.1f} s CPU", flush=True)
    load_after = os.getloadavg()

    per_core = {name: done / wall / CORES for name, done, wall, _ in rows}
    duck = per_core["duckdb"]
    spark_name = SPARK_FILES
    table = [
        "| engine | patients | wall | CPU | patients/s per core (wall) | patients per CPU-second "
        "| vs DuckDB per core |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, done, wall, cpu in rows:
        table.append(
            f"| {name} | {done:,} | {wall:.1f} s | {cpu:.1f} s | {per_core[name]:,.0f} | "
            f"{done / cpu:,.0f} | {per_core[name] / duck:.2f} |"
        )
    copy_wall = e2e["copy"][0]
    audit_wall = e2e["audit"][0]
    e2e_table = [
        "| command | wall | CPU (user + sys) | wall / copy |",
        "|---|---|---|---|",
    ]
    labels = {
        "copy": "DuckDB copy of the registry (Parquet to Parquet)",
        "audit": "`netboard audit REGISTRY --out RESULT`",
        "audit --only rec,elig": "... `--only rec,elig`",
        "audit --threads 1": "... `--threads 1`",
        "audit --report": "... `--report audit.html`",
    }
    for key, (w, c) in e2e.items():
        e2e_table.append(f"| {labels[key]} | {w:.1f} s | {c:.1f} s | {w / copy_wall:.1f} |")
    spark_share = per_core[spark_name] / duck
    cpu_of = {name: cpu / done for name, done, _, cpu in rows}
    cpu_share = cpu_of["duckdb"] / cpu_of[SPARK_FILES]
    frame_share = per_core[SPARK_FRAME] / duck
    files_total = next(cpu for name, _, _, cpu in rows if name == SPARK_FILES)
    frame_total = next(cpu for name, _, _, cpu in rows if name == SPARK_FRAME)
    sql_share = per_core["spark local[2], Spark SQL plan (sample)"] / duck
    parity_text = "; ".join(
        f"{plan}, {n - bad:,} of {n:,} rows equal" for plan, (n, bad) in parity.items()
    )
    kb_version = _kb_version()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    body = f"""## Cohort audit at scale (`bench/audit_scale.py`, issue 17)

`python bench/audit_scale.py` on the development machine ({machine}), knowledge base
{kb_version}; {n:,} synthetic patients with `given` (`netboard.batch.synth`) in one Parquet
file of {size_mb:.0f} MB (row groups of 125,000). The machine is shared with other work: load
average {load_before[0]:.1f} at the start of the run and {load_after[0]:.1f} at the end, so
wall times are upper bounds; CPU seconds are the steadier figure.

**Engines on the same registry**, each reading the file, checking every row, evaluating every
result family and writing a Parquet result on {CORES} cores. Spark is timed after its start-up
({startup:.0f} s for the JVM, the session and a first 10,000-patient job).

{chr(10).join(table)}

- Spark per core against DuckDB's (file plan): {spark_share:.2f} by wall time, {cpu_share:.2f}
  by CPU time (target >= {SPARK_PER_CORE_SHARE}): {verdict(spark_share >= SPARK_PER_CORE_SHARE)}.
- Why the file plan: of the two plans that evaluate on DuckDB it is the faster in this run,
  {spark_share:.2f} against {frame_share:.2f} of DuckDB per core by wall time (CPU
  {files_total:.1f} s against {frame_total:.1f} s). With `mapInArrow` every row goes through the
  JVM: Spark's Parquet reader makes rows, converts them to Arrow for Python, and the results
  back to rows for its writer; in the file plan Spark schedules row groups and rows stay in
  Arrow (tasks read and write with pyarrow). Spark's own plan of the query (Spark SQL,
  interpreted: too large for code generation) is {sql_share:.3f}x DuckDB per core.
  `mapInArrow` remains the plan for CSV registries and for any Spark DataFrame.
- Parity on Spark (vignettes and 12,000 generated cases, tasks on DuckDB, against
  `recommend`): {parity_text}.

**End to end**, each command in its own process:

{chr(10).join(e2e_table)}

- The audit against the copy: {audit_wall / copy_wall:.1f}x (target <= {COPY_RATIO:.0f}x):
  {verdict(audit_wall / copy_wall <= COPY_RATIO)}.
- {n:,} patients end to end in {audit_wall:.1f} s (target <= {SECONDS_1M:.0f} s for 1 M):
  {verdict(audit_wall <= SECONDS_1M * n / 1_000_000)}.
"""
    write_section(Path(args.out), "audit-scale", body)
    print(body)
    return 0


def _kb_version() -> str:
    from netboard.kb import load_kb

    return load_kb().version


if __name__ == "__main__":
    raise SystemExit(main())
