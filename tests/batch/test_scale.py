"""Issue 17: the streamed multi-threaded audit, ``--only``, and Spark evaluating on DuckDB.

No timing here (speed is measured in ``bench/audit_scale.py``): only that each faster path
gives exactly the rows of the reference paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from netboard.batch import result_columns
from netboard.batch.compile import compile_audit
from netboard.batch.io import CHUNK_ROWS, audit_chunks, read_registry
from netboard.batch.run import (
    FAMILIES,
    audit_arrow,
    output_columns,
    parse_only,
    select_outputs,
)
from netboard.batch.synth import synth_table, write_synth
from netboard.cli import main
from netboard.kb import KnowledgeBase


class Collect:
    """A writer stand-in that keeps what it is given (schema as ResultWriter's)."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.tables: list[pa.Table] = []

    def write(self, table: pa.Table) -> None:
        self.tables.append(table)

    def table(self) -> pa.Table:
        return pa.concat_tables(self.tables)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scale") / "reg.parquet"
    write_synth(path, 30_000, seed=17, given=True, chunk_rows=7_000)
    return path


def _chunked(registry: Path, kb: KnowledgeBase) -> pa.Table:
    """The audit chunk by chunk, one query per chunk (the path parity is proven on)."""
    from netboard.batch.reference import result_schema

    parts = [
        audit_arrow(c.table, kb).select(result_columns()).cast(result_schema())
        for c in read_registry(registry, chunk_rows=7_000)
    ]
    return pa.concat_tables(parts)


def test_streamed_audit_equals_one_query_per_chunk(registry: Path, kb: KnowledgeBase) -> None:
    from netboard.batch.reference import result_schema

    want = _chunked(registry, kb)
    for threads in (1, 2):
        sink = Collect(result_schema())
        stats = audit_chunks(
            read_registry(registry, chunk_rows=7_000),
            kb=kb,
            engine="duckdb",
            writer=sink,  # type: ignore[arg-type]
            threads=threads,
        )
        got = sink.table()
        assert stats.audited == stats.rows == 30_000
        # Same rows in the same order (input order is kept on every thread count).
        assert got.column("id").to_pylist() == want.column("id").to_pylist()
        assert got.equals(want), f"threads={threads}"


def test_report_inputs_travel_with_their_rows(registry: Path, kb: KnowledgeBase) -> None:
    seen: list[tuple[pa.Table, pa.Table]] = []
    audit_chunks(
        read_registry(registry, chunk_rows=5_000),
        kb=kb,
        engine="duckdb",
        on_result=lambda i, r: seen.append((i, r)),
        threads=2,
    )
    source = pq.read_table(registry)
    sites = dict(zip(source["id"].to_pylist(), source["primary_site"].to_pylist(), strict=True))
    for inputs, result in seen:
        assert inputs.num_rows == result.num_rows
        assert inputs["primary_site"].to_pylist() == [sites[i] for i in result["id"].to_pylist()]


@pytest.mark.parametrize(
    "only", [{"rec"}, {"elig"}, {"alerts"}, {"missing"}, {"concordant"}, {"rec", "elig"}]
)
@pytest.mark.parametrize("engine", ["duckdb", "polars"])
def test_only_gives_the_same_columns_as_the_whole_query(
    kb: KnowledgeBase, only: set[str], engine: str
) -> None:
    table = synth_table(3_000, seed=4, given=True)
    full = audit_arrow(table, kb, engine=engine)
    part = audit_arrow(table, kb, engine=engine, only=only)
    names = output_columns(only)
    assert part.column_names == names
    for name in names:
        assert part.column(name).to_pylist() == full.column(name).to_pylist(), name


def test_only_compiles_only_what_it_needs(kb: KnowledgeBase) -> None:
    whole = compile_audit(kb)
    size = sum(len(layer.columns) for layer in whole.layers)
    elig = select_outputs(whole, {"elig"})
    rec = select_outputs(whole, {"rec"})
    assert [n for n, _ in elig.outputs] == output_columns({"elig"})
    assert sum(len(layer.columns) for layer in elig.layers) < size / 5
    assert sum(len(layer.columns) for layer in rec.layers) < size
    assert not any(layer.name.startswith(("labels", "counts")) for layer in rec.layers)
    assert select_outputs(whole, None) is whole


def test_parse_only() -> None:
    assert parse_only("rec, elig") == {"rec", "elig"}
    assert parse_only(",".join(FAMILIES)) == set(FAMILIES)
    with pytest.raises(ValueError, match="'recs' is not a result family"):
        parse_only("recs")
    with pytest.raises(ValueError, match="expected one or more"):
        parse_only(" , ")


def test_cli_only_and_threads(
    registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.parquet"
    args = ["audit", str(registry), "--out", str(out), "--only", "rec,elig", "--threads", "2"]
    assert main(args) == 0
    got = pq.read_table(out)
    assert got.column_names == output_columns({"rec", "elig"})
    assert got.num_rows == 30_000
    assert main(["audit", str(registry), "--out", str(out), "--only", "rex"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .startswith("netboard: --only: 'rex' is not a result family")
    )


def test_chunk_size_default_is_bounded() -> None:
    assert CHUNK_ROWS <= 100_000


# --- Spark: each partition on DuckDB --------------------------------------------------------


def _spark() -> Any:
    from netboard.batch.run import ENGINES

    if "spark" not in ENGINES:
        pytest.skip("pyspark or java is not installed")
    from netboard.batch.spark_engine import local_session

    return local_session("local[2]")


@pytest.mark.spark
def test_spark_reads_a_registry_checks_rows_and_agrees(
    tmp_path: Path, kb: KnowledgeBase, registry: Path
) -> None:
    """Spark reads the Parquet registry itself; tasks check rows and evaluate on DuckDB."""
    from netboard.batch.spark_engine import PROBLEM, audit_frame

    spark = _spark()
    small = tmp_path / "small.parquet"
    table = pq.read_table(registry).slice(0, 4_000)
    bad = table.slice(10, 1).set_column(
        table.schema.get_field_index("ki67_percent"), "ki67_percent", pa.array([250.0])
    )
    pq.write_table(pa.concat_tables([table, bad]), small)
    df = spark.read.parquet(str(small))
    out = audit_frame(df, kb, only={"rec", "elig", "alerts"})
    rows = out.toArrow()
    problems = [p for p in rows.column(PROBLEM).to_pylist() if p is not None]
    assert len(problems) == 1
    assert "ki67_percent" in problems[0]
    result = rows.filter(pa.compute.is_null(rows.column(PROBLEM))).drop_columns([PROBLEM])
    want = audit_arrow(table, kb, only={"rec", "elig", "alerts"})
    by_id = {r["id"]: r for r in want.to_pylist()}
    got = result.to_pylist()
    assert len(got) == 4_000
    assert all(r == by_id[r["id"]] for r in got)


@pytest.mark.spark
def test_spark_submit_job_writes_the_result_and_names_bad_rows(
    tmp_path: Path, kb: KnowledgeBase
) -> None:
    """The cluster entry point, run as a cluster runs it: ``spark-submit spark_job.py``."""
    import os
    import subprocess
    import sys

    _spark()
    import pyspark

    import netboard.batch.spark_job as job

    table = synth_table(1_500, seed=8, given=True)
    bad = table.slice(5, 1).set_column(
        table.schema.get_field_index("ki67_percent"), "ki67_percent", pa.array([250.0])
    )
    registry = tmp_path / "reg.parquet"
    pq.write_table(pa.concat_tables([table, bad]), registry)
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    out, problems = tmp_path / "result", tmp_path / "problems"
    done = subprocess.run(
        [
            str(submit),
            "--master",
            "local[2]",
            "--conf",
            "spark.ui.enabled=false",
            str(job.__file__),
            str(registry),
            "--out",
            str(out),
            "--problems",
            str(problems),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"},
        check=False,
    )
    output = done.stdout + done.stderr  # the JVM passes the driver's stderr on either
    tail = "\n".join(output.splitlines()[-40:])
    assert done.returncode == 0, tail
    assert "netboard: 1500 patients audited, 1 problem lines" in output, tail
    assert (out / "_SUCCESS").exists()
    lines = "".join(p.read_text("utf-8") for p in problems.glob("part-*"))
    assert lines == "row 1501: ki67_percent: 250 is outside the possible range 0-100\n"
    got = pq.read_table(out).sort_by("id")
    want = audit_arrow(table, kb).sort_by("id")
    assert got.column_names == result_columns()
    assert got.to_pylist() == want.to_pylist()


@pytest.mark.spark
def test_spark_job_reads_csv_as_netboard_audit_does(tmp_path: Path, kb: KnowledgeBase) -> None:
    from netboard.batch.io import read_registry
    from netboard.batch.spark_job import run_job

    spark = _spark()
    registry = tmp_path / "reg.csv"
    write_synth(registry, 800, seed=6, given=True)
    with registry.open("a", encoding="utf-8") as fh:
        columns = registry.read_text("utf-8").splitlines()[0].count(",") + 1
        fh.write("bad,,,ileon" + "," * (columns - 4) + "\n")
    audited, skipped, first = run_job(
        spark, str(registry), str(tmp_path / "out"), only=frozenset({"rec", "elig"})
    )
    assert (audited, skipped) == (800, 1)
    assert first[0].startswith("primary_site:") or "primary_site" in first[0]
    local = next(iter(read_registry(registry, chunk_rows=10_000)))
    want = audit_arrow(local.table, kb, only={"rec", "elig"}).sort_by("id")
    got = pq.read_table(tmp_path / "out").sort_by("id")
    assert got.to_pylist() == want.to_pylist()
