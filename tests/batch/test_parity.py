"""The compiled cohort audit equals ``recommend``, field for field, on every engine.

Every public vignette (``../shared/cases``), every own vignette (``tests/vignettes``) and
12,000 seeded generated cases (sparse ones included: missing information is the hard part)
run through each compiled engine in one query; each result row must equal
:func:`netboard.batch.audit_row`, the reference derived from ``recommend``.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import SHARED
from netboard.batch import audit_row, result_columns
from netboard.case import Case, load_case
from netboard.kb import KnowledgeBase
from netboard.vocab import Intervention

pa = pytest.importorskip("pyarrow")
pytest.importorskip("duckdb")
pytest.importorskip("sqlglot")

from netboard.batch.columns import case_row, input_schema, spark_ddl  # noqa: E402
from netboard.batch.run import EMBEDDED, audit_arrow  # noqa: E402
from netboard.batch.sample import sample_cases  # noqa: E402

VIGNETTES = Path(__file__).resolve().parent.parent / "vignettes"
GENERATED = 12_000


@dataclass(frozen=True)
class Cohort:
    raw: list[dict[str, Any]]
    cases: list[Case]
    givens: list[list[str] | None]
    expected: list[dict[str, Any]]

    def table(self, *, given: bool = True) -> Any:
        rows = [case_row(c, g) for c, g in zip(self.cases, self.givens, strict=True)]
        for i, row in enumerate(rows):
            row["id"] = f"row-{i}"  # unique ids: rows are matched by id, never by position
            if not given:
                del row["given"]
        return pa.Table.from_pylist(rows, schema=input_schema(given=given))


def vignettes() -> Iterator[dict[str, Any]]:
    for folder in (SHARED / "cases", VIGNETTES):
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            if isinstance(doc, dict) and "case" in doc:
                yield doc["case"]


def givens_for(n: int, seed: int = 11) -> list[list[str] | None]:
    rng = random.Random(seed)
    codes = [c.value for c in Intervention]
    return [
        None if rng.random() < 0.25 else rng.sample(codes, k=rng.randint(0, 3)) for _ in range(n)
    ]


def build(raw: list[dict[str, Any]], kb: KnowledgeBase) -> Cohort:
    cases = [load_case(c) for c in raw]
    givens = givens_for(len(cases))
    expected = []
    for i, (case, given) in enumerate(zip(cases, givens, strict=True)):
        row = audit_row(case, kb, given)
        row["id"] = f"row-{i}"
        expected.append(row)
    return Cohort(raw, cases, givens, expected)


@pytest.fixture(scope="module")
def vignette_cohort(kb: KnowledgeBase) -> Cohort:
    raw = list(vignettes())
    assert len(raw) >= 70, "the public and own vignettes were not found"
    return build(raw, kb)


@pytest.fixture(scope="module")
def generated_cohort(kb: KnowledgeBase) -> Cohort:
    # Half very sparse (fields present with probability 5-100 %), half mostly complete.
    raw = list(sample_cases(GENERATED // 2, kb, seed=20261121, sparse=0.05))
    raw += list(sample_cases(GENERATED - len(raw), kb, seed=20261122, sparse=0.6))
    return build(raw, kb)


def mismatches(cohort: Cohort, result: Any) -> list[str]:
    assert result.column_names == result_columns()
    got = {row["id"]: row for row in result.to_pylist()}
    assert len(got) == len(cohort.expected)
    problems = []
    for i, want in enumerate(cohort.expected):
        have = got[want["id"]]
        diff = {k: (want[k], have[k]) for k in result_columns() if want[k] != have[k]}
        if diff:
            lines = [f"case {i}: {cohort.raw[i]!r} given={cohort.givens[i]!r}"]
            lines += [f"    {k}: recommend {w!r}, batch {h!r}" for k, (w, h) in diff.items()]
            problems.append("\n".join(lines))
    return problems


def check(cohort: Cohort, result: Any) -> None:
    problems = mismatches(cohort, result)
    assert not problems, f"{len(problems)} of {len(cohort.expected)} rows differ:\n" + "\n".join(
        problems[:10]
    )


@pytest.mark.parametrize("engine", EMBEDDED)
def test_vignettes_agree_with_recommend(
    engine: str, vignette_cohort: Cohort, kb: KnowledgeBase
) -> None:
    check(vignette_cohort, audit_arrow(vignette_cohort.table(), kb, engine=engine))


@pytest.mark.parametrize("engine", EMBEDDED)
def test_generated_cases_agree_with_recommend(
    engine: str, generated_cohort: Cohort, kb: KnowledgeBase
) -> None:
    assert len(generated_cohort.cases) >= 10_000
    check(generated_cohort, audit_arrow(generated_cohort.table(), kb, engine=engine))


@pytest.mark.parametrize("engine", EMBEDDED)
def test_without_given_concordance_is_null(
    engine: str, vignette_cohort: Cohort, kb: KnowledgeBase
) -> None:
    result = audit_arrow(vignette_cohort.table(given=False), kb, engine=engine)
    assert result.column("concordant").null_count == result.num_rows
    nulled = Cohort(
        vignette_cohort.raw,
        vignette_cohort.cases,
        [None] * len(vignette_cohort.cases),
        [{**row, "concordant": None} for row in vignette_cohort.expected],
    )
    check(nulled, result)


def test_generated_cases_cover_every_outcome(generated_cohort: Cohort) -> None:
    """The generated cases reach every status, eligibility outcome and concordance value."""
    seen: set[tuple[str, Any]] = set()
    for row in generated_cohort.expected:
        for key, value in row.items():
            if key.startswith(("rec.", "elig.")):
                seen.add((key.split(".")[0], value))
        seen.add(("concordant", row["concordant"]))
    for status in ("recommended", "consider", "not_recommended", "contraindicated", None):
        assert ("rec", status) in seen
    for status in ("eligible", "not_eligible", "undetermined"):
        assert ("elig", status) in seen
    assert {("concordant", True), ("concordant", False), ("concordant", None)} <= seen
    assert sum(1 for r in generated_cohort.expected if len(r["missing"]) >= 10) > 1000


def _spark_ready() -> bool:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return False
    return shutil.which("java") is not None


@pytest.mark.spark
@pytest.mark.skipif(not _spark_ready(), reason="pyspark or java is not installed")
def test_spark_agrees_with_recommend_on_the_vignettes(
    vignette_cohort: Cohort, kb: KnowledgeBase
) -> None:
    from pyspark.sql import SparkSession

    from netboard.batch.run import run_spark

    spark = (
        SparkSession.builder.master("local[1]")
        .appName("netboard-parity")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .getOrCreate()
    )
    try:
        table = vignette_cohort.table()
        rows = [tuple(r.values()) for r in table.to_pylist()]
        df = spark.createDataFrame(rows, schema=spark_ddl())
        rows = [r.asDict() for r in run_spark(spark, df, kb).collect()]
    finally:
        spark.stop()
    result = pa.Table.from_pylist(rows)
    check(vignette_cohort, result)


@pytest.mark.spark
def test_spark_accepts_a_registry_with_ecog_as_double(kb: KnowledgeBase) -> None:
    """Registry readers give ecog as a double; the Spark path must still take it."""
    import pyarrow as pa

    from netboard.batch.run import ENGINES, audit_arrow

    if "spark" not in ENGINES:
        pytest.skip("pyspark or java is not installed")
    table = pa.table({"id": ["p1"], "ecog": pa.array([1.0], pa.float64())})
    out = audit_arrow(table, kb, engine="spark")
    assert out.column("id").to_pylist() == ["p1"]


@pytest.mark.spark
@pytest.mark.skipif(not _spark_ready(), reason="pyspark or java is not installed")
@pytest.mark.parametrize("plan", ["files", "frame"])
@pytest.mark.parametrize("cohort_name", ["vignette_cohort", "generated_cohort"])
def test_spark_on_duckdb_partitions_agrees_with_recommend(
    cohort_name: str, plan: str, request: pytest.FixtureRequest, kb: KnowledgeBase, tmp_path: Path
) -> None:
    """The distributed plans: Spark schedules a Parquet registry, tasks check and evaluate on
    DuckDB; ``files``: tasks read row groups and write part files; ``frame``: Spark reads and
    hands partitions over ``mapInArrow``."""
    import pyarrow.parquet as pq

    from netboard.batch.spark_engine import (
        PROBLEM,
        audit_frame,
        audit_parquet_files,
        local_session,
    )

    cohort: Cohort = request.getfixturevalue(cohort_name)
    registry = tmp_path / "registry.parquet"
    pq.write_table(cohort.table(), registry, row_group_size=3_000)
    spark = local_session("local[2]")
    if plan == "files":
        rows, audited, skipped, _ = audit_parquet_files(
            spark, str(registry), str(tmp_path / "out"), kb, rows_per_task=5_000
        )
        assert (rows, audited, skipped) == (len(cohort.cases),) * 2 + (0,)
        assert (tmp_path / "out" / "_SUCCESS").exists()
        check(cohort, pq.read_table(tmp_path / "out"))
        return
    spark.conf.set("spark.sql.files.maxPartitionBytes", "256k")  # several partitions
    try:
        df = spark.read.parquet(str(registry))
        result = audit_frame(df, kb).toArrow()
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    assert result.column(PROBLEM).null_count == result.num_rows
    check(cohort, result.drop_columns([PROBLEM]))
