"""The FHIR bundles in examples/fhir: what they map to, what they report, and the CLI on them."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ANSWER_KEYS
from netboard.case import load_case
from netboard.engine.recommend import recommend
from netboard.fhir import FhirCase, read_fhir
from netboard.kb import KnowledgeBase

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "fhir"
NETBOARD = Path(sys.executable).parent / "netboard"
TODAY = dt.date(2025, 1, 15)


def reasons(fc: FhirCase) -> dict[str, str]:
    return {u.resource: u.reason for u in fc.unmapped}


def test_the_sigmoid_bundle_reads_as_the_sigmoid_case(kb: KnowledgeBase) -> None:
    fc = read_fhir(str(EXAMPLES / "sigmoid.json"), kb=kb, today=TODAY)
    assert fc.case == {
        "id": "example-sigmoid-g2",
        "age_years": 62,
        "sex": "male",
        "primary_site": "sigmoid_colon",
        "differentiation": "well",
        "ki67_percent": 8,
        "metastatic_sites": ["liver"],
        "ecog": 1,
        "labs": {"chromogranin_a_x_uln": 3.1},
    }
    assert fc.sources["primary_site"] == ["Condition/sigmoid-net"]
    assert fc.sources["labs.chromogranin_a_x_uln"] == ["Observation/chromogranin-a"]
    # the mesenteric nodes are coded C77.2: regional or distant is not said, so not guessed
    assert "regional or distant" in reasons(fc)["Condition/nodal-metastases"]
    answer = recommend(load_case(fc.case), kb=kb).to_dict()
    assert answer["case_id"] == "example-sigmoid-g2"
    assert answer["classification"]["who_2019"] == "net_g2"


def test_the_problem_bundle_reports_each_problem(kb: KnowledgeBase) -> None:
    fc = read_fhir(str(EXAMPLES / "problems.json"), kb=kb, today=TODAY)
    assert fc.case == {
        "id": "problem-patient",
        "age_years": 66,
        "sex": "female",
        "differentiation": "well",
        "metastatic_sites": ["liver"],
        "disease_status": "progressive",
        "prior_treatments": ["somatostatin_analog"],
        "progressed_on": ["somatostatin_analog"],
        "ecog": 1,
    }
    why = reasons(fc)
    # a bilirubin of 2024-11-01 is older than the 28 days netboard reads as current
    assert "from 2024-11-01 is 2 months old" in why["Observation/bilirubin-si"]
    assert why["Observation/ki67-wrong-unit"] == "Ki-67 in unit 'mg' cannot be read as %"
    assert why["Condition/hypertension"] == "SNOMED 38341003 is not in the mapping table"
    assert why["Condition/net-ileum, Condition/net-pancreas"].startswith(
        "conflicting primary_site: ileum (Condition/net-ileum); pancreas (Condition/net-pancreas)"
    )
    assert "LOINC 98979-8 is not in the mapping table" in why["Observation/egfr"]
    assert "Karnofsky" in why["Observation/karnofsky"]
    assert "no reference range upper limit" in why["Observation/cga-no-range"]
    assert "completes no regimen" in why["MedicationRequest/capecitabine-alone"]
    assert "intent 'plan'" in why["MedicationRequest/everolimus-planned"]
    assert "primary site is not known" in why["Procedure/hemicolectomy"]
    # the entered-in-error ECOG 3 is ignored; of the two final ECOGs the newer one is used
    assert fc.sources["ecog"] == ["Observation/ecog-recent"]
    assert any("ecog-entered-in-error ignored" in n for n in fc.notes)
    assert any("refuted" in n for n in fc.notes)
    assert any("OperationOutcome" in n for n in fc.notes)
    # the fields left out are named by the engine
    answer = recommend(load_case(fc.case), kb=kb).to_dict()
    missing = {m["field"] for m in answer["missing_information"]}
    assert "primary_site" in missing


def test_the_prefetch_example_reads_with_a_patient_id(kb: KnowledgeBase) -> None:
    fc = read_fhir(str(EXAMPLES / "prefetch.json"), kb=kb, today=TODAY, patient_id="cds-pnet-1")
    assert fc.case["primary_site"] == "pancreas"
    assert fc.case["pancreas_region"] == "tail"
    assert fc.case["grade"] == "g2"
    assert fc.case["prior_treatments"] == ["somatostatin_analog"]
    assert not fc.unmapped


def test_the_example_bundles_are_valid_fhir_r4b() -> None:
    bundle_module = pytest.importorskip("fhir.resources.R4B.bundle")
    for name in ("sigmoid.json", "problems.json"):
        bundle_module.Bundle.model_validate(json.loads((EXAMPLES / name).read_text()))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    if not NETBOARD.is_file():
        pytest.skip(f"installed netboard script not found next to {sys.executable}")
    return subprocess.run(
        [str(NETBOARD), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_cli_recommend_fhir_json_adds_the_fhir_block() -> None:
    p = run("recommend", "--fhir", str(EXAMPLES / "problems.json"), "--format", "json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert set(data) - {"fhir"} >= ANSWER_KEYS
    assert data["case_id"] == "problem-patient"
    assert set(data["fhir"]) == {"neoplasm", "neoplasm_detail", "sources", "unmapped", "notes"}
    unmapped = {u["resource"]: u for u in data["fhir"]["unmapped"]}
    assert (
        unmapped["Observation/ki67-wrong-unit"]["reason"]
        == "Ki-67 in unit 'mg' cannot be read as %"
    )
    assert set(unmapped["Observation/ki67-wrong-unit"]) >= {"resource", "element", "code", "reason"}
    assert data["fhir"]["sources"]["metastatic_sites"] == ["Condition/liver-mets"]


@pytest.mark.parametrize(
    ("fmt", "heading"), [("markdown", "## FHIR input not used"), ("html", 'id="fhir-unmapped"')]
)
def test_cli_reports_show_what_was_not_used(fmt: str, heading: str) -> None:
    p = run("recommend", "--fhir", str(EXAMPLES / "problems.json"), "--format", fmt)
    assert p.returncode == 0, p.stderr
    assert heading in p.stdout
    assert "cannot be read as %" in p.stdout


def test_cli_needs_exactly_one_input(tmp_path: Path) -> None:
    case = tmp_path / "case.yaml"
    case.write_text("primary_site: ileum\n")
    for args in ((), (str(case), "--fhir", str(EXAMPLES / "sigmoid.json"))):
        p = run("recommend", *args)
        assert p.returncode == 2
        assert p.stdout == ""
        assert p.stderr.strip().splitlines() == [
            "netboard: give exactly one of CASE or --fhir BUNDLE (see 'netboard --help')"
        ]


def test_cli_refuses_bad_fhir_json_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceType": ')
    p = run("recommend", "--fhir", str(bad))
    assert p.returncode == 2
    assert p.stdout == ""
    assert len(p.stderr.strip().splitlines()) == 1
    assert p.stderr.startswith(f"netboard: {bad}: not valid JSON")
    notfhir = tmp_path / "notfhir.json"
    notfhir.write_text('{"resourceType": "Bundle", "entry": [{"resource": {"id": 1}}]}')
    p = run("recommend", "--fhir", str(notfhir))
    assert p.returncode == 2
    assert (
        p.stderr.strip()
        == f"netboard: {notfhir}: entry[0].resource: not a FHIR resource (no resourceType)"
    )
