"""FHIR Bulk Data NDJSON: vignettes written as an export read back to their audit rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from fhir_bundles import TODAY, bundle_for_case
from netboard.batch import audit_row
from netboard.batch.fhir_ndjson import FhirStats, fhir_ndjson_chunks
from netboard.batch.io import audit_chunks
from netboard.case import load_case
from netboard.cli import main
from netboard.kb import KnowledgeBase

VIGNETTES = Path(__file__).resolve().parent.parent / "vignettes"


def vignette_cases() -> list[dict[str, Any]]:
    out = []
    for path in sorted(VIGNETTES.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and isinstance(doc.get("case"), dict) and doc["case"].get("id"):
            out.append(doc["case"])
    return out


def write_export(cases: list[dict[str, Any]], root: Path, kb: KnowledgeBase) -> None:
    """Bulk Data layout: one file per type; Observations split over two files."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for case in cases:
        for entry in bundle_for_case(case, kb=kb)["entry"]:
            res = entry["resource"]
            by_type.setdefault(res["resourceType"], []).append(res)
    root.mkdir(parents=True, exist_ok=True)
    for rtype, resources in by_type.items():
        if rtype == "Observation":
            half = len(resources) // 2
            parts = {"Observation.000": resources[:half], "Observation.001": resources[half:]}
        else:
            parts = {rtype: resources}
        for name, items in parts.items():
            text = "".join(json.dumps(r) + "\n" for r in items)
            (root / f"{name}.ndjson").write_text(text, encoding="utf-8")


def test_vignettes_round_trip(tmp_path: Path, kb: KnowledgeBase) -> None:
    cases = vignette_cases()
    assert len(cases) >= 20
    write_export(cases, tmp_path / "export", kb)
    rows: list[dict[str, Any]] = []
    stats = audit_chunks(
        fhir_ndjson_chunks(tmp_path / "export", kb=kb, today=TODAY, chunk_rows=7),
        kb=kb,
        engine="python",
        on_result=lambda _i, r: rows.extend(r.to_pylist()),
    )
    assert stats.audited == len({c["id"] for c in cases})
    got = {r["id"]: r for r in rows}
    for case in cases:
        assert got[case["id"]] == audit_row(load_case(case), kb), case["id"]


def test_bad_lines_are_reported_and_small_buckets(tmp_path: Path, kb: KnowledgeBase) -> None:
    cases = vignette_cases()[:5]
    root = tmp_path / "export"
    write_export(cases, root, kb)
    with (root / "Condition.ndjson").open("a", encoding="utf-8") as fh:
        fh.write("{broken\n")
        fh.write(json.dumps({"resourceType": "Condition", "id": "x"}) + "\n")
    problems: list[str] = []
    stats = FhirStats()
    from netboard.batch.fhir_ndjson import fhir_ndjson_rows

    rows = list(
        fhir_ndjson_rows(
            root, kb=kb, today=TODAY, on_problem=problems.append, stats=stats, bucket_bytes=2000
        )
    )
    assert sorted(r["id"] for r in rows) == sorted(c["id"] for c in cases)
    assert stats.bad_lines == 2
    assert problems[0].startswith("Condition.ndjson:")
    assert "not valid JSON" in problems[0]
    assert "without a Patient subject" in problems[1]


def test_cli_fhir_ndjson(
    tmp_path: Path, kb: KnowledgeBase, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = vignette_cases()[:4]
    write_export(cases, tmp_path / "export", kb)
    out = tmp_path / "res.parquet"
    args = ["audit", "--fhir-ndjson", str(tmp_path / "export"), "--out", str(out)]
    assert main([*args, "--today", TODAY.isoformat(), "--engine", "python"]) == 0
    assert pq.read_table(out).num_rows == 4
    assert "4 patients audited, 0 lines skipped" in capsys.readouterr().err
    assert main(["audit", "--fhir-ndjson", str(tmp_path / "nothing"), "--out", str(out)]) == 2
