"""Cohort-audit benchmark: rule evaluation throughput of the compiled engines (issue 5).

Run with ``python bench/audit.py [--sizes 1000000,10000000] [--engines duckdb,polars]``.
Patients come from ``netboard.batch.synth`` (independent, plausible field mixes) and are held
in memory as Arrow chunks; only the audit itself is timed (all rules: ``rec.*``, ``elig.*``,
``alerts``, ``missing``, ``concordant``), chunk by chunk as ``netboard audit`` streams them.
Results go to the ``audit-engine`` section of ``docs/benchmarks.md``.

Target (issue 5): >= 5 M patients/s on the embedded engine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import write_section  # noqa: E402

from netboard.batch.run import audit_arrow  # noqa: E402
from netboard.kb import load_kb  # noqa: E402

TARGET_PER_S = 5_000_000


def chunks(n: int, chunk_rows: int) -> list[Any]:
    """``n`` synthetic patients as Arrow tables of ``chunk_rows`` (generation is not timed)."""
    from netboard.batch.synth import synth_tables

    return list(synth_tables(n, seed=5, given=True, chunk_rows=chunk_rows))


def bench_engine(engine: str, tables: list[Any]) -> dict[str, float]:
    kb = load_kb()
    audit_arrow(tables[0].slice(0, 100), kb, engine=engine)  # warm: compile and render once
    t0 = time.perf_counter()
    rows = 0
    for table in tables:
        out = audit_arrow(table, kb, engine=engine)
        rows += out.num_rows
    seconds = time.perf_counter() - t0
    return {"rows": rows, "seconds": seconds, "per_s": rows / seconds}


def bench_fixed_cost(engine: str, tables: list[Any]) -> float:
    """Seconds for a 100-row chunk: the per-query floor (planning a large expression tree)."""
    kb = load_kb()
    small = tables[0].slice(0, 100)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        audit_arrow(small, kb, engine=engine)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--engines", default="duckdb,polars")
    parser.add_argument("--chunk-rows", type=int, default=1_000_000)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    engines = [e for e in args.engines.split(",") if e]
    results: dict[str, Any] = {}
    for n in sizes:
        tables = chunks(n, min(args.chunk_rows, n))
        for engine in engines:
            r = bench_engine(engine, tables)
            r["floor_s"] = bench_fixed_cost(engine, tables)
            results[f"{engine}/{n}"] = r
            print(engine, n, json.dumps(r), flush=True)
        del tables

    kb = load_kb()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = [
        "## Cohort audit: rule evaluation (issue 5)",
        "",
        f"`python bench/audit.py` on the development machine ({machine}), knowledge base",
        f"{kb.version}. Synthetic patients (`netboard.batch.synth`) in memory as Arrow chunks of",
        f"{args.chunk_rows:,} rows; timed: `audit_arrow` on every chunk, all rules (`rec.*`,",
        "`elig.*`, `alerts`, `missing`, `concordant`), result materialised as Arrow.",
        "",
        "| engine | patients | seconds | patients/s | per-query floor | target | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, r in results.items():
        engine, n = key.split("/")
        verdict = "meets" if r["per_s"] >= TARGET_PER_S else "MISSES"
        lines.append(
            f"| {engine} | {int(n):,} | {r['seconds']:.1f} | {r['per_s']:,.0f} | "
            f"{r['floor_s']:.2f} s | >= {TARGET_PER_S:,}/s | {verdict} |"
        )
    lines += [
        "",
        "DuckDB is the default embedded engine: it is the faster one on chunks of a million",
        "rows and passes the parity test (tests/batch/test_parity.py), as does Polars, whose",
        "per-query floor is lower (no planning of one large SQL statement). Spark runs the same",
        "query rendered by sqlglot (parity checked on the vignettes, `-m spark`).",
        "",
        "The target is missed by a factor of about 40. Where the time goes: the knowledge base",
        "compiles to about 880 working columns a patient in 26 projection layers (computed",
        "fields, 70 facts, 24 criteria, 76 rule conditions, 18 guard sets, 141 rule steps, 24",
        "alerts, the `missing` counts), each with its three-valued truth and, for `missing`,",
        "the bit set of the fields that would decide it: about 15,000 expression nodes a",
        "patient. At roughly a billion node evaluations a second on two cores that is about",
        "100,000 patients a second, far from the memory-bandwidth bound measured for ten",
        "boolean rules (ecosystem notes 4.3-4.4). Evaluating each distinct rule-relevant profile",
        "once (numbers reduced to the intervals between the knowledge base's cut-offs) would",
        "not help on this registry: 99.8 % of a million synthetic patients have a distinct",
        "profile. The per-query floor is planning that tree; chunks of a million rows amortise",
        "it.",
    ]
    write_section(Path(args.out), "audit-engine", "\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
