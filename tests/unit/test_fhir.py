"""netboard.fhir: reading FHIR R4 resources into a case, one rule at a time."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest

from netboard.case import load_case
from netboard.errors import CaseError, KnowledgeBaseError
from netboard.fhir import (
    FhirCase,
    case_from_fhir,
    prefetch_templates,
    read_fhir,
    resources_from,
)
from netboard.kb import KnowledgeBase
from netboard.kb.loader import parse_kb, read_kb_files

ROOT = Path(__file__).resolve().parents[2]
TODAY = dt.date(2025, 1, 15)
SCT = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
PRIMARY = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-primary-cancer-condition"
SECONDARY = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-secondary-cancer-condition"
HISTOLOGY = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-histology-morphology-behavior"
DUE_TO = "http://hl7.org/fhir/StructureDefinition/condition-dueTo"


# --- builders --------------------------------------------------------------------------------


def cc(system: str, code: str, display: str = "") -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def patient(pid: str = "p1", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, **extra}


def condition(rid: str, code: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Condition",
        "id": rid,
        "subject": {"reference": "Patient/p1"},
    }
    if code is not None:
        res["code"] = code
    res.update(extra)
    return res


def obs(rid: str, code: str, system: str = LOINC, **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": cc(system, code),
        "subject": {"reference": "Patient/p1"},
        **extra,
    }
    if not any(k.startswith("effective") or k == "issued" for k in extra):
        res["effectiveDateTime"] = (TODAY - dt.timedelta(days=3)).isoformat()  # current
    return res


def qty(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def med(
    rid: str, concept: dict[str, Any], kind: str = "MedicationRequest", **extra: Any
) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": kind,
        "id": rid,
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": concept,
    }
    if kind == "MedicationRequest":
        res["intent"] = "order"
    res.update(extra)
    return res


def proc(rid: str, code: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": rid,
        "status": status,
        "code": code,
        "subject": {"reference": "Patient/p1"},
    }


def read(kb: KnowledgeBase, *resources: dict[str, Any], **kw: Any) -> FhirCase:
    return case_from_fhir(list(resources), kb=kb, today=TODAY, **kw)


def reasons(fc: FhirCase) -> str:
    return " | ".join(u.reason for u in fc.unmapped)


# --- resources_from ---------------------------------------------------------------------------


def test_a_bundle_of_any_type_gives_its_resources_and_skips_entries_without_one() -> None:
    for kind in ("collection", "searchset", "transaction", "batch-response"):
        bundle = {
            "resourceType": "Bundle",
            "type": kind,
            "entry": [
                {"resource": patient()},
                {"request": {"method": "GET", "url": "Observation"}},
                {"resource": obs("o1", "89247-1", valueInteger=1)},
            ],
        }
        assert [r["resourceType"] for r in resources_from(bundle)] == ["Patient", "Observation"]


def test_a_single_resource_a_list_and_a_prefetch_are_accepted() -> None:
    assert resources_from(patient())[0]["id"] == "p1"
    assert len(resources_from([patient(), obs("o", "89247-1")])) == 2
    prefetch = {
        "patient": patient(),
        "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": []},
        "observations": {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": obs("o", "89247-1")}],
        },
        "medicationStatements": None,
    }
    assert [r["resourceType"] for r in resources_from(prefetch)] == ["Patient", "Observation"]


def test_a_missing_id_is_taken_from_the_entry_full_url() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"fullUrl": "urn:uuid:abc-123", "resource": {"resourceType": "Patient"}}],
    }
    assert resources_from(bundle)[0]["id"] == "abc-123"


def test_what_is_not_fhir_is_refused_with_its_json_path() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": patient()},
            "nonsense",
            {"resource": [1, 2]},
            {"resource": {"id": "x"}},
        ],
    }
    with pytest.raises(CaseError) as err:
        resources_from(bundle)
    fields = [p.field for p in err.value.problems]
    assert fields == ["entry[1]", "entry[2].resource", "entry[3].resource"]
    with pytest.raises(CaseError) as err:
        resources_from({"observations": {"entry": []}})
    assert err.value.problems[0].field == "observations"
    with pytest.raises(CaseError):
        resources_from(42)
    with pytest.raises(CaseError) as err:
        resources_from({"resourceType": 7})
    assert err.value.problems[0].field == "resourceType"


def test_operation_outcomes_are_noted_not_mapped(kb: KnowledgeBase) -> None:
    oo = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "not-found", "diagnostics": "no such search"}],
    }
    fc = read(kb, patient(), oo)
    assert fc.case == {"id": "p1"}
    assert any("OperationOutcome" in n and "no such search" in n for n in fc.notes)


# --- read_fhir --------------------------------------------------------------------------------


def test_read_fhir_refuses_bad_json_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"resourceType": "Bundle",', encoding="utf-8")
    with pytest.raises(CaseError) as err:
        read_fhir(str(path))
    assert err.value.problems[0].field == str(path)
    assert "not valid JSON" in err.value.problems[0].message
    dup = tmp_path / "dup.json"
    dup.write_text('{"resourceType": "Patient", "id": "a", "id": "b"}', encoding="utf-8")
    with pytest.raises(CaseError, match="duplicate key"):
        read_fhir(str(dup))
    with pytest.raises(CaseError, match="cannot read"):
        read_fhir(str(tmp_path / "absent.json"))


def test_read_fhir_refuses_files_over_10_mb(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b" " * 10_000_001)
    with pytest.raises(CaseError, match="larger than 10000000 bytes"):
        read_fhir(str(path))


def test_read_fhir_names_the_file_in_structural_problems(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "entry": [{"resource": 3}]}))
    with pytest.raises(CaseError) as err:
        read_fhir(str(path))
    assert err.value.problems[0].field == f"{path}: entry[0].resource"


# --- Patient ----------------------------------------------------------------------------------


def test_age_is_completed_years_on_the_reference_date(kb: KnowledgeBase) -> None:
    assert read(kb, patient(birthDate="1960-01-15")).case["age_years"] == 65
    assert read(kb, patient(birthDate="1960-01-16")).case["age_years"] == 64
    assert read(kb, patient(birthDate="1960-06")).case["age_years"] == 64


def test_an_age_a_partial_birth_date_cannot_fix_is_reported_not_guessed(kb: KnowledgeBase) -> None:
    fc = read(kb, patient(birthDate="1960"))
    assert "age_years" not in fc.case
    assert "64 or 65" in reasons(fc)
    fc = read(kb, patient(birthDate="1960-01"))
    assert "age_years" not in fc.case


def test_sex_comes_from_gender_and_unknown_is_reported(kb: KnowledgeBase) -> None:
    assert read(kb, patient(gender="other")).case["sex"] == "other"
    fc = read(kb, patient(gender="unknown"))
    assert "sex" not in fc.case
    assert fc.unmapped[0].element == "Patient.gender"


def test_a_deceased_patient_gets_no_age(kb: KnowledgeBase) -> None:
    fc = read(kb, patient(birthDate="1960-01-01", deceasedBoolean=True))
    assert "age_years" not in fc.case
    assert "deceased" in reasons(fc)


# --- Condition: the primary -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "site"),
    [
        ("C7A.012", "ileum"),
        ("C7A012", "ileum"),
        ("c7a.025", "sigmoid_colon"),
        ("C7A.090", "lung"),
        ("C25.4", "pancreas"),
        ("C7A.029", "colon"),
    ],
)
def test_icd_10_cm_codes_give_the_primary_site(kb: KnowledgeBase, code: str, site: str) -> None:
    assert read(kb, condition("c", cc(ICD, code))).case["primary_site"] == site


def test_a_prefix_row_covers_the_codes_below_it(kb: KnowledgeBase) -> None:
    fc = read(kb, condition("d", cc(ICD, "E11.65")), condition("k", cc(ICD, "K80.20")))
    assert fc.case["comorbidities"] == ["diabetes", "cholelithiasis"]


def test_an_unspecified_site_is_not_read_as_an_unknown_primary(kb: KnowledgeBase) -> None:
    fc = read(kb, condition("c", cc(ICD, "C7A.00")))
    assert "primary_site" not in fc.case


def test_icd_o_3_unknown_primary_site_in_body_site(kb: KnowledgeBase) -> None:
    fc = read(
        kb,
        condition("c", cc(ICD, "C7A.8"), bodySite=[cc(ICDO3, "C80.9", "Unknown primary site")]),
    )
    assert fc.case["primary_site"] == "unknown_primary"


def test_body_site_refines_a_broad_site_and_gives_the_pancreas_region(kb: KnowledgeBase) -> None:
    fc = read(kb, condition("c", cc(ICD, "C7A.019"), bodySite=[cc(SCT, "34516001")]))
    assert fc.case["primary_site"] == "ileum"
    assert fc.sources["primary_site"] == ["Condition/c"]
    fc = read(kb, condition("c", cc(ICD, "C25.4"), bodySite=[cc(SCT, "73239005")]))
    assert (fc.case["primary_site"], fc.case["pancreas_region"]) == ("pancreas", "tail")


def test_the_histology_extension_gives_differentiation_and_grade(kb: KnowledgeBase) -> None:
    ext = [{"url": HISTOLOGY, "valueCodeableConcept": cc(SCT, "1286770005")}]
    fc = read(kb, condition("c", cc(ICD, "C7A.012"), extension=ext))
    assert (fc.case["differentiation"], fc.case["grade"]) == ("well", "g2")
    nec = [{"url": HISTOLOGY, "valueCodeableConcept": cc(SCT, "1286767006")}]
    fc = read(kb, condition("c", cc(ICD, "C7A.090"), extension=nec))
    assert fc.case["differentiation"] == "poor"


def test_a_primary_by_mcode_profile_with_a_generic_code(kb: KnowledgeBase) -> None:
    fc = read(
        kb,
        condition(
            "c",
            cc(SCT, "363346000"),
            meta={"profile": [PRIMARY]},
            bodySite=[cc(SCT, "15776009")],
        ),
    )
    assert fc.case["primary_site"] == "pancreas"
    assert fc.neoplasm.value == "unconfirmed"  # a site, no neuroendocrine histology
    assert "363346000" in fc.neoplasm_detail


def test_conflicting_primaries_leave_the_site_out_and_say_so(kb: KnowledgeBase) -> None:
    fc = read(kb, condition("a", cc(ICD, "C7A.012")), condition("b", cc(SCT, "1287665004")))
    assert "primary_site" not in fc.case
    assert fc.case["differentiation"] == "well"
    conflict = [u for u in fc.unmapped if u.reason.startswith("conflicting primary_site")]
    assert conflict
    assert conflict[0].resource == "Condition/a, Condition/b"


def test_refuted_and_entered_in_error_conditions_are_ignored(kb: KnowledgeBase) -> None:
    refuted = {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "code": "refuted",
            }
        ]
    }
    fc = read(kb, condition("a", cc(SCT, "35868009"), verificationStatus=refuted))
    assert "functional_syndrome" not in fc.case
    assert not fc.unmapped
    assert any("refuted" in n for n in fc.notes)


def test_an_unconfirmed_diagnosis_is_reported_not_used(kb: KnowledgeBase) -> None:
    status = {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                "code": "provisional",
            }
        ]
    }
    fc = read(kb, condition("a", cc(ICD, "C7A.012"), verificationStatus=status))
    assert "primary_site" not in fc.case
    assert "provisional" in reasons(fc)


def test_a_resolved_comorbidity_is_not_current(kb: KnowledgeBase) -> None:
    resolved = {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                "code": "resolved",
            }
        ]
    }
    fc = read(kb, condition("a", cc(ICD, "K80.20"), clinicalStatus=resolved))
    assert "comorbidities" not in fc.case


def test_unknown_codes_are_named_in_unmapped(kb: KnowledgeBase) -> None:
    fc = read(kb, condition("h", cc(SCT, "12345")))
    assert fc.unmapped[0].reason == "SNOMED 12345 is not in the mapping table"
    assert fc.unmapped[0].resource == "Condition/h"
    fc = read(kb, condition("t", {"text": "carcinoid of the gut"}))
    assert "free text is not interpreted" in reasons(fc)


# --- Condition: syndromes, metastases, complications ------------------------------------------


def test_functional_syndromes_from_conditions_and_morphology(kb: KnowledgeBase) -> None:
    assert (
        read(kb, condition("s", cc(ICD, "E34.0"))).case["functional_syndrome"]
        == "carcinoid_syndrome"
    )
    morph = obs("m", "31206-6", valueCodeableConcept=cc(ICDO3, "8151/3"))
    assert read(kb, morph).case["functional_syndrome"] == "insulinoma"


def test_metastases_from_codes_and_from_body_sites(kb: KnowledgeBase) -> None:
    fc = read(
        kb,
        condition("l", cc(ICD, "C7B.02")),
        condition("b", cc(ICD, "C79.51")),
        condition("p", cc(SCT, "128462008"), bodySite=[cc(SCT, "15425007")]),
        condition("n", cc(ICD, "C7B.01")),
    )
    assert fc.case["metastatic_sites"] == ["liver", "distant_lymph_nodes", "peritoneum", "bone"]


def test_a_lymph_node_metastasis_is_not_guessed_regional_or_distant(kb: KnowledgeBase) -> None:
    fc = read(kb, condition("n", cc(ICD, "C77.2"), meta={"profile": [SECONDARY]}))
    assert "metastatic_sites" not in fc.case
    assert "regional or distant" in reasons(fc)


def test_a_secondary_without_a_site_is_reported(kb: KnowledgeBase) -> None:
    fc = read(kb, condition("s", cc(SCT, "128462008")))
    assert "metastatic_sites" not in fc.case
    assert "without a site" in reasons(fc)


def test_a_complication_needs_condition_due_to_the_primary(kb: KnowledgeBase) -> None:
    primary = condition("net", cc(ICD, "C7A.012"))
    loose = condition("obs1", cc(ICD, "K56.699"))
    fc = read(kb, primary, loose)
    assert "primary_complications" not in fc.case
    assert "condition-dueTo" in reasons(fc)
    linked = condition(
        "obs2",
        cc(ICD, "K56.699"),
        extension=[{"url": DUE_TO, "valueReference": {"reference": "Condition/net"}}],
    )
    assert read(kb, primary, linked).case["primary_complications"] == ["obstruction"]


# --- Observation ------------------------------------------------------------------------------


def test_ki67_in_percent_and_in_a_wrong_unit(kb: KnowledgeBase) -> None:
    assert read(kb, obs("k", "29593-1", valueQuantity=qty(8, "%"))).case["ki67_percent"] == 8
    fc = read(kb, obs("k", "29593-1", valueQuantity=qty(8, "mg")))
    assert "ki67_percent" not in fc.case
    assert "Ki-67 in unit 'mg' cannot be read as %" in reasons(fc)


@pytest.mark.parametrize(
    ("code", "value", "unit", "path", "want"),
    [
        ("1975-2", 20.5, "umol/L", "bilirubin_mg_dl", 1.2),
        ("1975-2", 0.9, "mg/dL", "bilirubin_mg_dl", 0.9),
        ("1751-7", 36, "g/L", "albumin_g_dl", 3.6),
        ("718-7", 8.1, "mmol/L", "hemoglobin_g_dl", 13.1),
        ("718-7", 131, "g/L", "hemoglobin_g_dl", 13.1),
        ("777-3", 210, "10*3/uL", "platelets_10e9_l", 210),
        ("751-8", 3.5, "10*9/L", "neutrophils_10e9_l", 3.5),
        ("2164-2", 85, "mL/min", "creatinine_clearance_ml_min", 85),
        ("35591-7", 70, "mL/min", "creatinine_clearance_ml_min", 70),
        ("33762-6", 400, "ng/L", "nt_probnp_pg_ml", 400),
    ],
)
def test_laboratory_units_are_converted(
    kb: KnowledgeBase, code: str, value: float, unit: str, path: str, want: float
) -> None:
    fc = read(kb, obs("x", code, valueQuantity=qty(value, unit)))
    assert fc.case["labs"][path] == pytest.approx(want)


def test_the_micro_sign_is_read_as_u(kb: KnowledgeBase) -> None:
    value = {"value": 20.5, "unit": "µmol/L"}
    assert read(kb, obs("b", "1975-2", valueQuantity=value)).case["labs"]["bilirubin_mg_dl"] == 1.2


def test_markers_are_times_the_upper_limit_only_with_a_reference_range(kb: KnowledgeBase) -> None:
    ranged = obs(
        "c", "9811-1", valueQuantity=qty(480, "ng/mL"), referenceRange=[{"high": qty(120, "ng/mL")}]
    )
    assert read(kb, ranged).case["labs"]["chromogranin_a_x_uln"] == 4
    fc = read(kb, obs("c", "9811-1", valueQuantity=qty(480, "ng/mL")))
    assert "labs" not in fc.case
    assert "no reference range upper limit" in reasons(fc)
    other_unit = obs(
        "c",
        "1695-6",
        valueQuantity=qty(60, "mg/(24.h)"),
        referenceRange=[{"high": qty(40, "umol/(24.h)")}],
    )
    fc = read(kb, other_unit)
    assert "labs" not in fc.case
    assert "different units" in reasons(fc)


def test_codes_known_but_not_read_say_why(kb: KnowledgeBase) -> None:
    fc = read(
        kb,
        obs("e", "62238-1", valueQuantity=qty(64, "mL/min/{1.73_m2}")),
        obs("k", "89243-0", valueInteger=80),
        obs("s", "1693-1", valueQuantity=qty(30, "ng/mL")),
    )
    assert fc.case == {}
    text = reasons(fc)
    assert "LOINC 62238-1 is not in the mapping table" in text  # eGFR is never clearance
    assert "Karnofsky is not converted to ECOG" in text
    assert "plasma 5-HIAA" in text


def test_the_most_recent_observation_wins(kb: KnowledgeBase) -> None:
    fc = read(
        kb,
        obs("old", "89247-1", valueInteger=2, effectiveDateTime="2024-10-01"),
        obs("new", "89247-1", valueInteger=1, effectiveDateTime="2024-11-01T08:00:00+01:00"),
        obs("mid", "89247-1", valueInteger=3, effectivePeriod={"start": "2024-10-15"}),
    )
    assert fc.case["ecog"] == 1
    assert fc.sources["ecog"] == ["Observation/new"]


def test_undated_or_simultaneous_disagreeing_observations_conflict(kb: KnowledgeBase) -> None:
    fc = read(kb, obs("a", "89247-1", valueInteger=1), obs("b", "89247-1", valueInteger=2))
    assert "ecog" not in fc.case
    assert "conflicting ecog" in reasons(fc)
    same = "2024-11-01"
    fc = read(
        kb,
        obs("a", "89247-1", valueInteger=1, effectiveDateTime=same),
        obs("b", "89247-1", valueInteger=2, effectiveDateTime=same),
    )
    assert "ecog" not in fc.case


def test_only_final_results_are_read(kb: KnowledgeBase) -> None:
    fc = read(kb, obs("e", "89247-1", valueInteger=3, status="entered-in-error"))
    assert fc.case == {}
    assert not fc.unmapped
    assert fc.notes
    fc = read(kb, obs("p", "89247-1", valueInteger=3, status="preliminary"))
    assert fc.case == {}
    assert "only final results" in reasons(fc)
    absent = obs("d", "29593-1", dataAbsentReason={"text": "not performed"})
    assert "no value (not performed)" in reasons(read(kb, absent))
    bound = obs("b", "29593-1", valueQuantity={**qty(1, "%"), "comparator": "<"})
    assert "a bound" in reasons(read(kb, bound))


def test_coded_observations(kb: KnowledgeBase) -> None:
    pregnant = obs("p", "82810-3", valueCodeableConcept=cc(SCT, "77386006"))
    progressing = obs("d", "97509-4", valueCodeableConcept=cc(SCT, "271299001"))
    grade = obs(
        "g",
        "C18000",
        system="http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl",
        valueCodeableConcept=cc(SCT, "61026006"),
    )
    fc = read(kb, pregnant, progressing, grade)
    assert fc.case == {"grade": "g3", "disease_status": "progressive", "pregnant": True}
    improved = obs("i", "97509-4", valueCodeableConcept=cc(SCT, "268910001"))
    assert "neither stable nor progressive" in reasons(read(kb, improved))


# --- medications and procedures -----------------------------------------------------------------


def test_medications_by_rxnorm_and_by_name(kb: KnowledgeBase) -> None:
    fc = read(
        kb,
        med("a", cc(RXNORM, "7617", "octreotide")),
        med("b", {"text": "Lanreotide 120 mg deep s.c. every 28 days"}, kind="MedicationStatement"),
        med("c", {"text": "Lutetium Lu 177 dotatate 7.4 GBq"}, kind="MedicationAdministration"),
    )
    assert fc.case["prior_treatments"] == ["somatostatin_analog", "prrt"]
    assert sum("matched by name" in n for n in fc.notes) == 3  # RxNorm 7617 is not in the table


def test_a_diagnostic_tracer_is_not_read_as_a_treatment(kb: KnowledgeBase) -> None:
    fc = read(kb, med("a", {"text": "Octreoscan (indium In-111 pentetreotide) scintigraphy"}))
    assert "prior_treatments" not in fc.case


def test_medication_reference_and_contained_medication(kb: KnowledgeBase) -> None:
    medication = {
        "resourceType": "Medication",
        "id": "m1",
        "code": cc(RXNORM, "357977", "sunitinib"),
    }
    ref = med("a", {}, medicationReference={"reference": "Medication/m1"})
    del ref["medicationCodeableConcept"]
    contained = med("b", {}, medicationReference={"reference": "#c1"})
    del contained["medicationCodeableConcept"]
    contained["contained"] = [
        {"resourceType": "Medication", "id": "c1", "code": cc(RXNORM, "141704", "everolimus")}
    ]
    fc = read(kb, medication, ref, contained)
    assert fc.case["prior_treatments"] == ["everolimus", "sunitinib"]


def test_regimens_need_every_component(kb: KnowledgeBase) -> None:
    fc = read(kb, med("c", cc(RXNORM, "194000")), med("t", cc(RXNORM, "37776", "temozolomide")))
    assert fc.case["prior_treatments"] == ["capecitabine_temozolomide"]
    fc = read(kb, med("carbo", cc(RXNORM, "40048")), med("eto", cc(RXNORM, "4179")))
    assert fc.case["prior_treatments"] == ["platinum_etoposide"]
    fc = read(kb, med("c", cc(RXNORM, "194000")))
    assert "prior_treatments" not in fc.case
    assert "completes no regimen" in reasons(fc)


def test_progression_is_read_from_the_status_reason(kb: KnowledgeBase) -> None:
    stopped = med(
        "a", cc(RXNORM, "7617", "octreotide"), status="stopped", statusReason=cc(SCT, "271299001")
    )
    fc = read(kb, stopped, med("b", cc(RXNORM, "141704", "everolimus")))
    assert fc.case["prior_treatments"] == ["somatostatin_analog", "everolimus"]
    assert fc.case["progressed_on"] == ["somatostatin_analog"]
    load_case(fc.case)


def test_orders_not_given_are_not_treatments(kb: KnowledgeBase) -> None:
    fc = read(
        kb,
        med("plan", cc(RXNORM, "7617", "octreotide"), intent="plan"),
        med("draft", cc(RXNORM, "141704", "everolimus"), status="draft"),
        med("nt", cc(RXNORM, "357977"), kind="MedicationStatement", status="not-taken"),
        med("cx", cc(RXNORM, "357977"), status="cancelled"),
    )
    assert "prior_treatments" not in fc.case
    assert "intent 'plan'" in reasons(fc)


def test_a_whipple_resects_a_pancreatic_primary_and_leaves_an_anastomosis(
    kb: KnowledgeBase,
) -> None:
    fc = read(kb, condition("net", cc(ICD, "C25.4")), proc("w", {"text": "Whipple procedure"}))
    assert fc.case["primary_resected"] is True
    assert fc.case["prior_treatments"] == ["primary_resection"]
    assert fc.case["comorbidities"] == ["biliary_enteric_anastomosis"]


def test_a_resection_of_another_organ_is_not_the_primary_resection(kb: KnowledgeBase) -> None:
    fc = read(kb, condition("net", cc(ICD, "C25.4")), proc("h", {"text": "Right hemicolectomy"}))
    assert "primary_resected" not in fc.case
    assert "does not resect a primary of the pancreas" in reasons(fc)
    fc = read(kb, proc("h", {"text": "Right hemicolectomy"}))
    assert "primary site is not known" in reasons(fc)


def test_procedures_by_code_and_status(kb: KnowledgeBase) -> None:
    fc = read(
        kb,
        proc("c", cc(SCT, "38102005", "Cholecystectomy")),
        proc("t", {"text": "Transarterial chemoembolization of liver"}),
        proc("nd", cc(SCT, "18027006", "Transplantation of liver"), status="not-done"),
        proc("ip", {"text": "Hepatectomy"}, status="in-progress"),
    )
    assert fc.case["prior_treatments"] == ["tace", "prophylactic_cholecystectomy"]
    assert "only completed procedures" in reasons(fc)
    assert any("not-done" in n for n in fc.notes)


def test_a_liver_transplant_evaluation_is_not_a_transplant(kb: KnowledgeBase) -> None:
    fc = read(kb, proc("e", {"text": "Liver transplant evaluation"}))
    assert "prior_treatments" not in fc.case


# --- patients, validation ---------------------------------------------------------------------


def test_only_the_given_patient_is_read(kb: KnowledgeBase) -> None:
    other = obs("o2", "89247-1", valueInteger=3)
    other["subject"] = {"reference": "Patient/p2"}
    fc = read(
        kb, patient(), patient("p2"), obs("o1", "89247-1", valueInteger=1), other, patient_id="p1"
    )
    assert fc.case == {"id": "p1", "ecog": 1}
    assert any("another patient" in n for n in fc.notes)


def test_several_patients_without_an_id_are_refused_naming_them(kb: KnowledgeBase) -> None:
    with pytest.raises(CaseError) as err:
        read(kb, patient(), patient("p2"), obs("o1", "89247-1", valueInteger=1))
    assert "several patients (p1, p2)" in str(err.value.problems[0])


def test_urn_uuid_references_match_the_patient(kb: KnowledgeBase) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:1111", "resource": {"resourceType": "Patient", "gender": "male"}},
            {
                "fullUrl": "urn:uuid:2222",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": cc(LOINC, "89247-1"),
                    "subject": {"reference": "urn:uuid:1111"},
                    "effectiveDateTime": "2025-01-10",
                    "valueInteger": 0,
                },
            },
        ],
    }
    fc = case_from_fhir(resources_from(bundle), kb=kb, today=TODAY)
    assert fc.case == {"id": "1111", "sex": "male", "ecog": 0}


def test_urn_uuid_references_resolve_by_full_url_not_by_id(kb: KnowledgeBase) -> None:
    """FHIR resolves a urn:uuid reference by the entry's fullUrl, whatever the resource id."""
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:9f1c", "resource": patient("mrn-7", gender="female")},
            {
                "fullUrl": "urn:uuid:77aa",
                "resource": {
                    **obs("e1", "89247-1", valueInteger=2),
                    "subject": {"reference": "urn:uuid:9f1c"},
                },
            },
        ],
    }
    fc = case_from_fhir(resources_from(bundle), kb=kb, today=TODAY)
    assert fc.case == {"id": "mrn-7", "sex": "female", "ecog": 2}


def test_what_load_case_refuses_is_dropped_and_reported(kb: KnowledgeBase) -> None:
    pregnant = obs("p", "82810-3", valueCodeableConcept=cc(SCT, "77386006"))
    fc = read(kb, patient(gender="male"), pregnant)
    assert "pregnant" not in fc.case
    assert fc.case["sex"] == "male"
    assert 'true, but sex is "male"' in reasons(fc)
    ki67 = obs("k", "29593-1", valueQuantity=qty(140, "%"))
    fc = read(kb, ki67)
    assert "ki67_percent" not in fc.case
    assert "outside the possible range" in reasons(fc)


def test_the_mapped_case_always_loads(kb: KnowledgeBase) -> None:
    doc = json.loads((ROOT / "examples" / "fhir" / "problems.json").read_text())
    load_case(case_from_fhir(resources_from(doc), kb=kb, today=TODAY).case)


def test_a_knowledge_base_without_a_fhir_table_is_refused(kb: KnowledgeBase) -> None:
    import dataclasses

    bare = dataclasses.replace(kb, fhir=None)
    with pytest.raises(KnowledgeBaseError):
        case_from_fhir([patient()], kb=bare)
    assert prefetch_templates(bare) == {}


# --- prefetch templates -------------------------------------------------------------------------


def test_prefetch_templates_cover_the_read_resources_and_only_our_codes(kb: KnowledgeBase) -> None:
    templates = prefetch_templates(kb)
    assert templates["patient"] == "Patient/{{context.patientId}}"
    assert templates["conditions"] == "Condition?patient={{context.patientId}}"
    for key in (
        "medicationRequests",
        "medicationStatements",
        "medicationAdministrations",
        "procedures",
    ):
        assert key in templates
    assert kb.fhir is not None
    codes = templates["observations"].split("&code=", 1)[1].split(",")
    assert {tuple(c.rsplit("|", 1)) for c in codes} == set(kb.fhir.observations)


# --- the table itself ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def documents() -> dict[str, Any]:
    return read_kb_files(ROOT / "src" / "netboard" / "kb")


def problems_with(documents: dict[str, Any], change: Any) -> list[str]:
    docs = copy.deepcopy(documents)
    change(docs["fhir.yaml"])
    _, problems = parse_kb(docs)
    return [str(p) for p in problems]


def test_the_packaged_table_has_no_problems(documents: dict[str, Any]) -> None:
    assert problems_with(documents, lambda d: None) == []


def test_the_table_refuses_unknown_keys_fields_and_values(documents: dict[str, Any]) -> None:
    def unknown_key(d: dict[str, Any]) -> None:
        d["conditions"][0]["colour"] = "red"

    def bad_value(d: dict[str, Any]) -> None:
        d["conditions"][1]["set"] = {"primary_site": "spleen"}

    def bad_field(d: dict[str, Any]) -> None:
        d["primary_body_sites"][0]["set"] = {"primary_place": "pancreas"}

    def bad_top(d: dict[str, Any]) -> None:
        d["extras"] = []

    assert any("colour: unknown key" in p for p in problems_with(documents, unknown_key))
    assert any("'spleen' is not a contract value" in p for p in problems_with(documents, bad_value))
    assert any(
        "'primary_place' is not a case field" in p for p in problems_with(documents, bad_field)
    )
    assert any("extras: unknown key" in p for p in problems_with(documents, bad_top))


def test_the_table_refuses_a_code_mapped_twice_to_different_values(
    documents: dict[str, Any],
) -> None:
    def duplicate(d: dict[str, Any]) -> None:
        row = dict(d["conditions"][3])
        row["set"] = {"primary_site": "jejunum"}
        d["conditions"].append(row)

    assert any("mapped to a different value" in p for p in problems_with(documents, duplicate))


def test_the_table_refuses_a_prefetch_without_a_read_resource_type(
    documents: dict[str, Any],
) -> None:
    def drop_procedures(d: dict[str, Any]) -> None:
        del d["prefetch"]["procedures"]

    assert any(
        "no prefetch key asks for Procedure" in p for p in problems_with(documents, drop_procedures)
    )


def test_the_table_refuses_prefix_rows_outside_icd_10_cm(documents: dict[str, Any]) -> None:
    def prefix(d: dict[str, Any]) -> None:
        d["primary_body_sites"][0]["prefix"] = True

    assert any("prefix" in p for p in problems_with(documents, prefix))


def test_every_code_of_the_table_is_in_the_documentation(kb: KnowledgeBase) -> None:
    assert kb.fhir is not None
    docs = (ROOT / "docs" / "fhir.md").read_text(encoding="utf-8")
    cells = set(re.findall(r"`([^`\n]+)`", docs))
    missing = sorted({row.code for row in kb.fhir.all_codes()} - cells)
    assert not missing, f"codes of kb/fhir.yaml missing from docs/fhir.md: {missing}"
    words = {" ".join(rule.words) for rule in (*kb.fhir.medication_names, *kb.fhir.procedure_names)}
    missing_words = sorted(words - cells)
    assert not missing_words, f"name rules missing from docs/fhir.md: {missing_words}"


# --- local codes, lists, progression after procedures ---------------------------------------

NETBOARD = "https://netboard.dev/fhir/CodeSystem/netboard"
EMPTY = "http://terminology.hl7.org/CodeSystem/list-empty-reason"


def nil_list(rid: str, code: str, reason: str = "nilknown", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "List",
        "id": rid,
        "status": "current",
        "mode": "snapshot",
        "code": cc(NETBOARD, code),
        "emptyReason": cc(EMPTY, reason),
        "subject": {"reference": "Patient/p1"},
        **extra,
    }


def test_local_observations_give_the_fields_without_standard_codes(kb: KnowledgeBase) -> None:
    def local(rid: str, code: str, answer: str, system: str = NETBOARD) -> dict[str, Any]:
        return obs(rid, code, NETBOARD, valueCodeableConcept=cc(system, answer))

    fc = read(
        kb,
        obs("b", "liver-tumor-burden", NETBOARD, valueQuantity=qty(35, "%")),
        local("r", "liver-resectability", "unresectable"),
        local("d", "liver-metastasis-distribution", "bilobar"),
        local("s", "sstr-imaging", "10828004", SCT),
        local("f", "fdg-pet", "385660001", SCT),
        obs("m", "mitotic-count", NETBOARD, valueQuantity=qty(3, "/(2.mm2)")),
        obs("t", "months-stable", NETBOARD, valueQuantity=qty(14, "mo")),
        local("n", "disease-status", "newly-diagnosed"),
        local("x", "functional-syndrome", "no-functional-syndrome"),
        obs("p", "primary-tumor-resected", NETBOARD, valueBoolean=False),
    )
    assert not fc.unmapped
    assert fc.case == {
        "primary_resected": False,
        "functional_syndrome": "none",
        "mitoses_per_2mm2": 3,
        "sstr_imaging": "positive",
        "fdg_pet": "not_done",
        "liver_tumor_burden_percent": 35,
        "liver_resectable": "no",
        "liver_distribution": "bilobar",
        "disease_status": "newly_diagnosed",
        "months_stable": 14,
    }


def test_a_boolean_observation_needs_a_value_boolean(kb: KnowledgeBase) -> None:
    fc = read(kb, obs("p", "primary-tumor-resected", NETBOARD, valueString="yes"))
    assert "primary_resected" not in fc.case
    assert "valueBoolean" in reasons(fc)


def test_a_primary_in_place_contradicted_by_a_resection_is_left_out(kb: KnowledgeBase) -> None:
    fc = read(
        kb,
        condition("net", cc(ICD, "C7A.092")),
        obs("p", "primary-tumor-resected", NETBOARD, valueBoolean=False),
        proc("g", {"text": "Gastrectomy"}),
    )
    assert "primary_resected" not in fc.case
    assert "conflicting primary_resected" in reasons(fc)


def test_the_local_resection_code_needs_no_primary_site(kb: KnowledgeBase) -> None:
    fc = read(kb, proc("r", cc(NETBOARD, "primary-tumor-resection")))
    assert fc.case == {"primary_resected": True, "prior_treatments": ["primary_resection"]}


def test_progression_after_a_procedure_is_read_from_its_outcome(kb: KnowledgeBase) -> None:
    tace = proc("t", {"text": "Chemoembolization of liver"})
    tace["outcome"] = cc(SCT, "271299001")
    fc = read(
        kb, tace, proc("m", cc("http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl", "C93304"))
    )
    assert fc.case["prior_treatments"] == ["tace", "multidisciplinary_review"]
    assert fc.case["progressed_on"] == ["tace"]


def test_standard_codes_for_surveillance_and_tumour_board(kb: KnowledgeBase) -> None:
    fc = read(kb, proc("a", cc(SCT, "424313000")), proc("b", cc(NETBOARD, "best-supportive-care")))
    assert fc.case["prior_treatments"] == ["observation", "best_supportive_care"]


def test_a_nil_known_list_gives_an_empty_list(kb: KnowledgeBase) -> None:
    fc = read(kb, nil_list("c", "comorbidities"), nil_list("t", "prior-treatments"))
    assert fc.case == {"prior_treatments": [], "comorbidities": []}
    assert fc.sources["comorbidities"] == ["List/c"]


def test_a_nil_known_list_contradicted_by_an_item_is_left_out(kb: KnowledgeBase) -> None:
    fc = read(kb, nil_list("c", "comorbidities"), condition("d", cc(SCT, "73211009")))
    assert "comorbidities" not in fc.case
    assert "conflicting comorbidities" in reasons(fc)


def test_lists_empty_for_another_reason_or_with_entries_are_not_read(kb: KnowledgeBase) -> None:
    fc = read(
        kb,
        nil_list("a", "comorbidities", "notasked"),
        nil_list("b", "metastatic-sites", entry=[{"item": {"reference": "Condition/x"}}]),
        nil_list("c", "progressed-on", status="retired"),
    )
    assert fc.case == {}
    assert "nobody asked" in reasons(fc)
    assert "only current lists" in reasons(fc)
    assert any("entries of a List" in n for n in fc.notes)


def test_the_prefetch_asks_for_lists(kb: KnowledgeBase) -> None:
    lists = prefetch_templates(kb)["lists"]
    assert lists.startswith("List?patient={{context.patientId}}&code=")
    assert f"{NETBOARD}|metastatic-sites" in lists
    assert lists.endswith("&status=current")


def test_the_table_refuses_local_codes_without_a_definition(documents: dict[str, Any]) -> None:
    def no_definition(d: dict[str, Any]) -> None:
        row = next(r for r in d["conditions"] if r["system"] == "netboard")
        del row["definition"]

    def definition_on_standard(d: dict[str, Any]) -> None:
        d["conditions"][0]["definition"] = "made up"

    def bad_list(d: dict[str, Any]) -> None:
        d["lists"][0]["field"] = "primary_site"

    def missing_list(d: dict[str, Any]) -> None:
        d["lists"].pop()

    assert any("needs its definition" in p for p in problems_with(documents, no_definition))
    assert any("only local codes" in p for p in problems_with(documents, definition_on_standard))
    assert any("not a list field" in p for p in problems_with(documents, bad_list))
    assert any("no List code" in p for p in problems_with(documents, missing_list))
