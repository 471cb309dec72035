"""Patient charts built from the public FHIR examples of ``tests/fhir/corpus`` (see its README).

Each chart is a list of resources as an EHR would hold them for one patient; a few are the
examples re-coded to reproduce a defect of issue 13 (a pancreatic adenocarcinoma as C25.0, a
site-only lung code, a NET histology on a site code), and each says so in its name.
``NON_NEN`` are the charts of patients without a neuroendocrine neoplasm: netboard must give
them no plan (the false-positive rate over them is the measure of the NEN gate).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).resolve().parent / "fhir" / "corpus"
#: The reference date the corpus is read with (the "request date").
TODAY = dt.date(2026, 3, 1)
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
SCT = "http://snomed.info/sct"
HISTOLOGY = "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-histology-morphology-behavior"


def _synthea() -> Any:
    """The generator module of the Synthea-shaped export (it lives beside the files)."""
    import importlib.util
    import sys

    name = "netboard_corpus_synthea_shaped"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, CORPUS / "synthea_shaped.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


synthea = _synthea()


def load(name: str) -> Any:
    """A corpus file (``us-core/patient-example.json``)."""
    return json.loads((CORPUS / name).read_text(encoding="utf-8"))


def entries(name: str) -> list[dict[str, Any]]:
    """The resources of a corpus Bundle."""
    return [e["resource"] for e in load(name)["entry"]]


def ndjson(name: str) -> list[dict[str, Any]]:
    """The resources of a corpus NDJSON file (``synthea-shaped/Condition.ndjson``)."""
    text = (CORPUS / name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def synthea_patient(pid: str) -> list[dict[str, Any]]:
    """Every resource of one patient of the Synthea-shaped export."""
    out = []
    for path in sorted((CORPUS / "synthea-shaped").glob("*.ndjson")):
        if path.stem in ("log", "Practitioner", "Organization", "Location", "Group"):
            continue
        for r in ndjson(f"synthea-shaped/{path.name}"):
            subject = (r.get("subject") or {}).get("reference")
            if r.get("id") == pid or subject == f"Patient/{pid}":
                out.append(r)
    return out


def for_patient(resource: dict[str, Any], pid: str) -> dict[str, Any]:
    """A copy of an example resource filed under another patient (the examples use several)."""
    out = copy.deepcopy(resource)
    out["subject"] = {"reference": f"Patient/{pid}"}
    return out


def recoded(
    condition: dict[str, Any], code: tuple[str, str, str], histology: tuple[str, str, str] | None
) -> dict[str, Any]:
    """The mCODE primary cancer condition example with another code and histology."""
    out = copy.deepcopy(condition)
    system, value, display = code
    out["code"] = {"coding": [{"system": system, "code": value, "display": display}]}
    out["extension"] = [e for e in out.get("extension", []) if e.get("url") != HISTOLOGY]
    if histology is not None:
        system, value, display = histology
        out["extension"].append(
            {
                "url": HISTOLOGY,
                "valueCodeableConcept": {
                    "coding": [{"system": system, "code": value, "display": display}]
                },
            }
        )
    out.pop("bodySite", None)
    return out


def us_core_chart() -> list[dict[str, Any]]:
    """US Core: the example patient, a burn of the ear, a duodenal ulcer, 2005 blood counts
    and a 2022 pregnancy status (all filed under Patient/example)."""
    return [
        load("us-core/patient-example.json"),
        load("us-core/condition-encounter-diagnosis-example1.json"),
        load("us-core/condition-duodenal-ulcer.json"),
        load("us-core/observation-cbc-platelets.json"),
        load("us-core/observation-cbc-hemoglobin.json"),
        load("us-core/observation-pregnancy-status.json"),
    ]


def r4_core_chart() -> list[dict[str, Any]]:
    """FHIR R4 core examples: Patient/example with its burn, body weight and a List, and the
    practitioner, organization, location, group and OperationOutcome examples."""
    return [
        load(f"r4-core/{name}.json")
        for name in (
            "patient-example",
            "condition-example",
            "observation-example",
            "list-example",
            "practitioner-example",
            "organization-example",
            "location-example",
            "group-example",
            "operationoutcome-example",
        )
    ]


def r4_medication_chart() -> list[dict[str, Any]]:
    """FHIR R4 core: the medication examples of Patient/pat1 (no Patient resource)."""
    return [
        load("r4-core/medicationrequest0301.json"),
        load("r4-core/medicationstatementexample1.json"),
    ]


def nsclc_primary() -> dict[str, Any]:
    return entries("mcode/nsclc-john-anyperson.json")[1]


def pancreatic_adenocarcinoma() -> list[dict[str, Any]]:
    """The mCODE NSCLC patient re-coded as issue 13's reproducer: C25.0 with adenocarcinoma."""
    chart = entries("mcode/nsclc-john-anyperson.json")
    chart[1] = recoded(
        chart[1],
        (ICD10CM, "C25.0", "Malignant neoplasm of head of pancreas"),
        (ICDO3, "8140/3", "Adenocarcinoma, NOS"),
    )
    return chart


#: Charts of patients without a neuroendocrine neoplasm: (name, resources, patient id).
def non_nen_charts() -> list[tuple[str, list[dict[str, Any]], str | None]]:
    healthy, breast = synthea.HEALTHY, synthea.BREAST
    return [
        ("us-core: burn, ulcer, old labs, 2022 pregnancy", us_core_chart(), "example"),
        ("us-core: child", [load("us-core/patient-child-example.json")], "child-example"),
        ("r4-core: burn of ear and non-patient resources", r4_core_chart(), "example"),
        ("r4-core: medications of pat1", r4_medication_chart(), "pat1"),
        ("mcode: NSCLC, adenocarcinoma", entries("mcode/nsclc-john-anyperson.json"), None),
        ("mcode: CLL and the nonspecific primary", entries("mcode/cll-adam-everyman.json"), None),
        (
            "mcode: breast, lobular carcinoma in situ",
            entries("mcode/breast-eve-anyperson.json"),
            None,
        ),
        (
            "mcode re-coded: pancreatic adenocarcinoma C25.0 + 8140/3",
            pancreatic_adenocarcinoma(),
            None,
        ),
        ("synthea-shaped: no cancer", synthea_patient(healthy), healthy),
        ("synthea-shaped: breast cancer, 221 paclitaxel orders", synthea_patient(breast), breast),
    ]
