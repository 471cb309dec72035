"""Cohort audit end to end (issue 5): ``python bench/audit_e2e.py [--sizes 1000000,10000000]``.

For each size: ``netboard synth`` writes a Parquet registry, then ``netboard audit REGISTRY
--out RESULT`` runs in its own process; its wall time and peak resident memory (the child's
``ru_maxrss``) are recorded. Also measured: ``recommend`` patient by patient in one process on
a sample (the ratio against the compiled engine), and Spark local mode on a sample with its
start-up cost stated apart. Results go to the ``audit-e2e`` section of ``docs/benchmarks.md``.

Targets (issue 5): 1 M-patient Parquet to result <= 10 s; memory bounded on 10 M patients.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import ROOT, write_section

NETBOARD = Path(sys.executable).parent / "netboard"
TARGET_1M_SECONDS = 10.0


_MEASURE = (
    "import resource, subprocess, sys\n"
    "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def run_child(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one netboard command in its own process.

    A small wrapper process runs the command as its only child, so the peak it reports is
    that command's own, not the largest of everything this script started.
    """
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(NETBOARD), *args],
        check=True,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - t0
    return seconds, int(out.stdout.strip()) / 1024


def per_patient_recommend(n: int) -> float:
    """Patients per second through ``recommend`` one by one (the reference engine)."""
    from netboard.batch.reference import audit_python
    from netboard.batch.synth import synth_table
    from netboard.kb import load_kb

    table = synth_table(n, seed=9)
    kb = load_kb()
    t0 = time.perf_counter()
    audit_python(table, kb)
    return n / (time.perf_counter() - t0)


def spark_local(n: int) -> dict[str, Any] | None:
    """Spark local mode on a sample: the first call pays the session start-up, the second not."""
    from netboard.batch.run import ENGINES, audit_arrow
    from netboard.batch.synth import synth_table
    from netboard.kb import load_kb

    if "spark" not in ENGINES:
        return None
    kb = load_kb()
    table = synth_table(n, seed=11)
    t0 = time.perf_counter()
    audit_arrow(table.slice(0, 10), kb, engine="spark")
    start = time.perf_counter() - t0
    t1 = time.perf_counter()
    rows = audit_arrow(table, kb, engine="spark").num_rows
    seconds = time.perf_counter() - t1
    return {"startup_s": start, "rows": rows, "seconds": seconds, "per_s": rows / seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--sample", type=int, default=5000)
    parser.add_argument("--spark-sample", type=int, default=50000)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))

    rows: list[str] = []
    one_million: float | None = None
    largest_per_s = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            registry = Path(tmp) / f"registry-{n}.parquet"
            synth_s, _ = run_child(["synth", "--n", str(n), "--out", str(registry), "--given"])
            audit_s, peak_mb = run_child(
                ["audit", str(registry), "--out", str(Path(tmp) / f"result-{n}.parquet")]
            )
            size_mb = registry.stat().st_size / 1e6
            print(f"{n}: synth {synth_s:.1f} s, audit {audit_s:.1f} s, peak {peak_mb:.0f} MB")
            if n == 1_000_000:
                one_million = audit_s
            largest_per_s = n / audit_s
            rows.append(
                f"| {n:,} | {size_mb:.0f} MB | {synth_s:.1f} s | {audit_s:.1f} s | "
                f"{n / audit_s:,.0f} | {peak_mb:,.0f} MB |"
            )
            registry.unlink()
    reference = per_patient_recommend(args.sample)
    spark = spark_local(args.spark_sample)
    print("recommend one by one", reference, "spark", spark)

    verdict = (
        "n/a"
        if one_million is None
        else ("meets" if one_million <= TARGET_1M_SECONDS else "**misses**")
    )
    spark_line = (
        "PySpark is not installed."
        if spark is None
        else (
            f"Spark local mode (`local[*]`, 2 cores), {spark['rows']:,} patients: the first "
            f"call, 10 patients, took {spark['startup_s']:.1f} s (JVM and session start-up, "
            f"paid once per run); then {spark['seconds']:.1f} s for the sample "
            f"({spark['per_s']:,.0f} patients/s, input conversion included)."
        )
    )
    body = f"""## Cohort audit end to end (`bench/audit_e2e.py`)

`netboard synth` writes a Parquet registry, then `netboard audit REGISTRY --out RESULT`
(default engine DuckDB, chunks of 100,000 rows) runs in its own process: wall time and peak
resident memory of that process. 2 cores.

| patients | registry | synth | audit end to end | patients/s | peak memory |
|---|---|---|---|---|---|
{chr(10).join(rows)}

- 1 M-patient Parquet to result: target <= {TARGET_1M_SECONDS:.0f} s: {verdict}.
- Memory: the registry is read and audited chunk by chunk; compare the peak of the two rows
  (ten times the patients) to see how far it stays bounded.
- `recommend` patient by patient in one process (the reference engine, {args.sample:,}
  patients): {reference:,.0f} patients/s; the compiled audit end to end is
  {largest_per_s / reference:.0f}x that.
- {spark_line}
"""
    write_section(Path(args.out), "audit-e2e", body)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
