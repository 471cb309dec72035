"""The public FHIR example corpus (tests/fhir/corpus): the NEN gate, recency and attribution.

Issue 13's reproducers, each on public examples (mCODE STU4, US Core, FHIR R4 core) or on the
Synthea-shaped export: no plan for a patient without a neuroendocrine neoplasm, a
non-neuroendocrine histology stops the mapping, a site-only code is a presumed NEN, old
observations are reported with their dates and not used, resources that cannot be attributed
to the patient are skipped and counted.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from corpus_charts import (
    CORPUS,
    ICD10,
    ICD10CM,
    ICDO3,
    SCT,
    TODAY,
    entries,
    for_patient,
    load,
    non_nen_charts,
    nsclc_primary,
    recoded,
    synthea,
    synthea_patient,
)
from netboard.batch.fhir_ndjson import FhirStats, fhir_ndjson_rows
from netboard.case import load_case
from netboard.engine.recommend import recommend
from netboard.errors import CaseError
from netboard.fhir import FhirCase, case_from_fhir, resources_from
from netboard.kb import KnowledgeBase
from netboard.vocab import Neoplasm

NON_NEN = non_nen_charts()


def read(kb: KnowledgeBase, resources: list[dict[str, Any]], pid: str | None = None) -> FhirCase:
    return case_from_fhir(resources, kb=kb, today=TODAY, patient_id=pid)


def answer_of(kb: KnowledgeBase, fc: FhirCase) -> Any:
    return recommend(
        load_case(fc.case), kb=kb, neoplasm=fc.neoplasm, neoplasm_detail=fc.neoplasm_detail
    )


def reasons(fc: FhirCase) -> str:
    return " | ".join(u.reason for u in fc.unmapped)


def test_the_corpus_is_there_with_its_readme() -> None:
    readme = (CORPUS / "README.md").read_text(encoding="utf-8")
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "README.md")
    assert len(files) >= 30
    for path in files:
        assert path.name in readme, f"{path.name} has no origin in the corpus README"


@pytest.mark.parametrize(("name", "chart", "pid"), NON_NEN, ids=[n for n, _, _ in NON_NEN])
def test_no_plan_without_a_neuroendocrine_neoplasm(
    kb: KnowledgeBase, name: str, chart: list[dict[str, Any]], pid: str | None
) -> None:
    fc = read(kb, chart, pid)
    assert fc.neoplasm in (Neoplasm.NONE, Neoplasm.NON_NEUROENDOCRINE), name
    assert not fc.answers
    answer = answer_of(kb, fc)
    assert answer.scope.applies is False
    assert not answer.recommendations
    assert not answer.alerts


def test_the_false_positive_rate_over_the_non_nen_corpus_is_zero(kb: KnowledgeBase) -> None:
    planned = [name for name, chart, pid in NON_NEN if read(kb, chart, pid).answers]
    rate = len(planned) / len(NON_NEN)
    assert rate == 0, f"plans for non-NEN records: {planned}"


def test_nsclc_with_adenocarcinoma_is_not_a_nen_of_the_lung(kb: KnowledgeBase) -> None:
    fc = read(kb, entries("mcode/nsclc-john-anyperson.json"))
    assert fc.neoplasm is Neoplasm.NON_NEUROENDOCRINE
    assert "Adenocarcinoma" in fc.neoplasm_detail
    assert "primary_site" not in fc.case
    answer = answer_of(kb, fc)
    assert "not neuroendocrine" in answer.scope.reason
    assert not answer.recommendations


def test_pancreatic_adenocarcinoma_gets_no_sunitinib_or_prrt(kb: KnowledgeBase) -> None:
    from corpus_charts import pancreatic_adenocarcinoma

    fc = read(kb, pancreatic_adenocarcinoma())
    assert fc.neoplasm is Neoplasm.NON_NEUROENDOCRINE
    assert "8140/3" in fc.neoplasm_detail
    assert {r.code.value for r in answer_of(kb, fc).recommendations} == set()


def test_a_site_only_code_is_a_presumed_nen_and_says_so(kb: KnowledgeBase) -> None:
    chart = entries("mcode/nsclc-john-anyperson.json")[:1]
    chart.append(
        recoded(
            nsclc_primary(),
            (ICD10CM, "C34.90", "Malignant neoplasm of unspecified part of bronchus or lung"),
            None,
        )
    )
    fc = read(kb, chart)
    assert fc.neoplasm is Neoplasm.UNCONFIRMED
    assert fc.case["primary_site"] == "lung"
    assert fc.answers
    answer = answer_of(kb, fc)
    assert answer.scope.applies is None
    assert "presumes a neuroendocrine neoplasm" in answer.scope.reason
    assert "C34.90" in answer.scope.reason


@pytest.mark.parametrize(
    ("code", "histology", "site", "differentiation"),
    [
        ((ICD10CM, "C34.90", "lung"), (SCT, "1286769009", "WD NET G1"), "lung", "well"),
        ((ICD10CM, "C17.2", "ileum"), (ICDO3, "8240/3", "NET G1"), "ileum", "well"),
        ((ICD10, "C17.2", "Ileum (WHO)"), (ICDO3, "8240/3", "NET G1"), "ileum", "well"),
        ((ICD10, "C172", "Ileum, no dot"), (SCT, "1286767006", "NEC"), "ileum", "poor"),
    ],
)
def test_a_site_code_with_a_net_histology_is_a_nen_of_that_site(
    kb: KnowledgeBase,
    code: tuple[str, str, str],
    histology: tuple[str, str, str],
    site: str,
    differentiation: str,
) -> None:
    chart = entries("mcode/nsclc-john-anyperson.json")[:1]
    chart.append(recoded(nsclc_primary(), code, histology))
    fc = read(kb, chart)
    assert fc.neoplasm is Neoplasm.NEUROENDOCRINE
    assert fc.case["primary_site"] == site
    assert fc.case["differentiation"] == differentiation
    assert answer_of(kb, fc).scope.applies is True


def test_the_mcode_nonspecific_primary_is_not_a_metastasis(kb: KnowledgeBase) -> None:
    fc = read(kb, entries("mcode/cll-adam-everyman.json"))
    assert "metastatic_sites" not in fc.case
    assert "profiled as a primary cancer condition" in reasons(fc)
    # the versioned profile (|4.0.0) is read as the profile
    (nonspecific,) = [u for u in fc.unmapped if "128462008" in u.code]
    assert nonspecific.resource == "Condition/primary-cancer-condition-nonspecific"


def test_carcinoid_syndrome_codes_of_fy2024(kb: KnowledgeBase) -> None:
    chart = [{"resourceType": "Patient", "id": "p"}]
    for i, code in enumerate(("E34.00", "E34.01", "E34.09", "E34.0")):
        chart.append(
            {
                "resourceType": "Condition",
                "id": f"c{i}",
                "subject": {"reference": "Patient/p"},
                "code": {"coding": [{"system": ICD10CM, "code": code}]},
            }
        )
        fc = read(kb, chart[:1] + chart[-1:])
        assert fc.case.get("functional_syndrome") == "carcinoid_syndrome", code
        heart = "carcinoid_heart_disease" in fc.case.get("comorbidities", [])
        assert heart is (code == "E34.01"), code


def test_old_observations_are_reported_with_their_dates_not_used(kb: KnowledgeBase) -> None:
    """2005 platelets, a 2022 pregnancy and a 2018 ECOG do not decide anything in 2026."""
    net = synthea.NET
    chart = [
        r
        for r in synthea_patient(net)
        if not (r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "777-3")
    ]
    chart[0]["gender"] = "female"
    chart += [
        for_patient(load("us-core/observation-cbc-platelets.json"), net),
        for_patient(load("us-core/observation-pregnancy-status.json"), net),
    ]
    ecog = copy.deepcopy(entries("mcode/nsclc-john-anyperson.json")[5])
    ecog["effectiveDateTime"] = "2018-04-12"
    chart.append(for_patient(ecog, net))
    fc = read(kb, chart, net)
    assert fc.neoplasm is Neoplasm.NEUROENDOCRINE
    for field in ("pregnant", "ecog"):
        assert field not in fc.case
    assert "platelets_10e9_l" not in fc.case.get("labs", {})
    stale = {u.field: u for u in fc.unmapped if u.date}
    assert stale["labs.platelets_10e9_l"].date == "2005-07-05"
    assert stale["pregnant"].date == "2022-08-24"
    assert stale["ecog"].date == "2018-04-12"
    assert "from 2005-07-05 is 20 years old" in stale["labs.platelets_10e9_l"].reason
    answer = answer_of(kb, fc)
    assert not [a for a in answer.alerts if "pregnan" in a.message.lower()]
    assert "labs.platelets_10e9_l" in {m.field for m in answer.missing_information}


def test_a_recent_value_wins_and_an_old_one_is_still_reported(kb: KnowledgeBase) -> None:
    net = synthea.NET
    fc = read(kb, synthea_patient(net), net)
    assert fc.case["labs"]["platelets_10e9_l"] == 188
    assert any(u.field == "labs.platelets_10e9_l" and u.date for u in fc.unmapped)


def test_observations_of_no_one_or_of_an_identifier_are_skipped_and_counted(
    kb: KnowledgeBase,
) -> None:
    """ECOG 3 of another person (identifier subject) or of no one never lands in this chart."""
    net = synthea.NET
    ecog = copy.deepcopy(entries("mcode/nsclc-john-anyperson.json")[5])
    ecog["effectiveDateTime"] = "2026-02-20"
    ecog["valueInteger"] = 3
    by_identifier = {
        **ecog,
        "id": "ecog-other",
        "subject": {"identifier": {"system": "http://hospital.example.org", "value": "m999"}},
    }
    no_subject = {k: v for k, v in ecog.items() if k != "subject"}
    no_subject["id"] = "ecog-none"
    fc = read(kb, [*synthea_patient(net), by_identifier, no_subject], net)
    assert "ecog" not in fc.case
    why = reasons(fc)
    assert "1 resource(s) whose subject is given by an identifier only" in why
    assert "1 resource(s) without a subject" in why


def test_us_core_individual_sex_is_read_when_gender_is_absent(kb: KnowledgeBase) -> None:
    fc = read(kb, [load("us-core/patient-example.json")])
    assert fc.case["sex"] == "female"
    child = read(kb, [load("us-core/patient-child-example.json")])
    assert child.case["sex"] == "male"
    assert child.case["age_years"] == 10


def test_several_patients_are_refused_naming_them(kb: KnowledgeBase) -> None:
    with pytest.raises(CaseError) as err:
        read(kb, [*r4_core(), *entries("mcode/cll-adam-everyman.json")])
    assert "cancer-patient-adam-everyman, example" in str(err.value.problems[0])


def r4_core() -> list[dict[str, Any]]:
    return [load("r4-core/patient-example.json"), load("r4-core/condition-example.json")]


def test_the_tumour_size_of_mcode_is_read_in_mm(kb: KnowledgeBase) -> None:
    bundle = load("mcode/breast-eve-anyperson.json")
    size = bundle["entry"][2]["resource"]
    chart = [
        {"resourceType": "Patient", "id": "p"},
        {
            **for_patient(size, "p"),
            "effectiveDateTime": "2026-02-01",
        },
    ]
    assert read(kb, chart).case["primary_size_mm"] == 12


def test_months_since_prrt_and_ssa_come_from_dated_administrations(kb: KnowledgeBase) -> None:
    def given(rid: str, text: str, when: str) -> dict[str, Any]:
        return {
            "resourceType": "MedicationAdministration",
            "id": rid,
            "status": "completed",
            "subject": {"reference": "Patient/p"},
            "medicationCodeableConcept": {"text": text},
            "effectiveDateTime": when,
        }

    chart = [
        {"resourceType": "Patient", "id": "p"},
        given("a1", "Lutathera 7.4 GBq", "2024-09-01"),
        given("a2", "Lutathera 7.4 GBq", "2025-01-01"),
        given("a3", "lanreotide 120 mg", "2026-02-01"),
    ]
    fc = read(kb, chart)
    # 424 and 28 days before 2026-03-01, in months of 30.4375 days
    assert fc.case["months_since"] == {"prrt": 13.9, "somatostatin_analog": 0.9}
    assert fc.sources["months_since.prrt"] == ["MedicationAdministration/a2"]


def test_the_synthea_shaped_export_audits_only_the_nen_patient(kb: KnowledgeBase) -> None:
    stats = FhirStats()
    problems: list[str] = []
    rows = list(
        fhir_ndjson_rows(
            CORPUS / "synthea-shaped", kb=kb, today=TODAY, on_problem=problems.append, stats=stats
        )
    )
    assert [r["id"] for r in rows] == [synthea.NET]
    assert stats.out_of_scope == {"none": 2}
    assert stats.not_patient_data == {
        "Group": 1,
        "Location": 1,
        "Organization": 1,
        "Practitioner": 1,
        "log": 1,
    }
    assert problems == []
    assert stats.bad_lines == 0


def test_fhir_urn_uuid_and_absolute_full_urls_resolve(kb: KnowledgeBase) -> None:
    bundle = copy.deepcopy(load("mcode/nsclc-john-anyperson.json"))
    for entry in bundle["entry"]:
        entry["fullUrl"] = f"urn:uuid:{entry['resource']['id']}-0000"
        if "subject" in entry["resource"]:
            entry["resource"]["subject"] = {
                "reference": "urn:uuid:cancer-patient-john-anyperson-0000"
            }
    fc = case_from_fhir(resources_from(bundle), kb=kb, today=TODAY)
    assert fc.case["id"] == "cancer-patient-john-anyperson"
    assert fc.neoplasm is Neoplasm.NON_NEUROENDOCRINE
