"""Write the Synthea-shaped Bulk Data export of the corpus (``synthea-shaped/``), deterministically.

Synthea (https://github.com/synthetichealth/synthea) writes one NDJSON file per resource type,
SNOMED-coded Conditions (findings such as employment among them), LOINC Observations,
RxNorm MedicationRequests, SNOMED Procedures, and the Practitioner, Organization and Location
resources of the care sites, with a ``log.ndjson`` beside them in some exporters. These files
have that shape; every resource was written here for netboard (no Synthea output is copied).

    python tests/fhir/corpus/synthea_shaped.py   # rewrites tests/fhir/corpus/synthea-shaped/

``large_chart`` builds, in memory, the prefetch of a Synthea-sized oncology chart (over 1 MB
before any Observation) for the CDS Hooks body-limit test.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent / "synthea-shaped"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
#: The reference date the corpus tests read the export with.
TODAY = dt.date(2026, 3, 1)

HEALTHY = "6f1c9a52-0b7e-4d3e-9c1a-2f4b8e7d1a01"
BREAST = "6f1c9a52-0b7e-4d3e-9c1a-2f4b8e7d1a02"
NET = "6f1c9a52-0b7e-4d3e-9c1a-2f4b8e7d1a03"


def _id(*parts: object) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "netboard-corpus:" + ":".join(map(str, parts))))


def _cc(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _day(days_before: int) -> str:
    return (TODAY - dt.timedelta(days=days_before)).isoformat() + "T09:30:00-05:00"


def patient(pid: str, gender: str, birth: str, family: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
        "identifier": [{"system": "https://github.com/synthetichealth/synthea", "value": pid}],
        "name": [{"use": "official", "family": family, "given": ["Sam"]}],
        "gender": gender,
        "birthDate": birth,
    }


def condition(pid: str, n: int, code: str, display: str, days_before: int) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": _id(pid, "Condition", n),
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "confirmed",
                }
            ]
        },
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "encounter-diagnosis",
                    }
                ]
            }
        ],
        "code": _cc(SCT, code, display),
        "subject": {"reference": f"Patient/{pid}"},
        "encounter": {"reference": f"Encounter/{_id(pid, 'Encounter', n)}"},
        "onsetDateTime": _day(days_before),
        "recordedDate": _day(days_before),
    }


def observation(
    pid: str, n: int, code: str, display: str, value: float, unit: str, days_before: int
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": _id(pid, "Observation", n),
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": _cc(LOINC, code, display),
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": _day(days_before),
        "issued": _day(days_before),
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }


def medication_request(
    pid: str, n: int, code: str, display: str, days_before: int
) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": _id(pid, "MedicationRequest", n),
        "status": "stopped",
        "intent": "order",
        "medicationCodeableConcept": _cc(RXNORM, code, display),
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": _day(days_before),
        "requester": {"reference": f"Practitioner/{_id('practitioner', 1)}"},
        "dosageInstruction": [{"sequence": 1, "asNeededBoolean": False}],
    }


def procedure(pid: str, n: int, code: str, display: str, days_before: int) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": _id(pid, "Procedure", n),
        "status": "completed",
        "code": _cc(SCT, code, display),
        "subject": {"reference": f"Patient/{pid}"},
        "performedPeriod": {"start": _day(days_before), "end": _day(days_before)},
    }


def export() -> dict[str, list[dict[str, Any]]]:
    """The resources of the export by file name."""
    files: dict[str, list[dict[str, Any]]] = {
        "Patient": [
            patient(HEALTHY, "female", "1984-06-02", "Healthy"),
            patient(BREAST, "female", "1961-11-23", "Oncology"),
            patient(NET, "male", "1958-04-17", "Carcinoid"),
        ],
        "Condition": [],
        "Observation": [],
        "MedicationRequest": [],
        "Procedure": [],
    }
    noise = [
        ("160903007", "Full-time employment (finding)"),
        ("444814009", "Viral sinusitis (disorder)"),
        ("314529007", "Medication review due (situation)"),
        ("73595000", "Stress (finding)"),
    ]
    for pid in (HEALTHY, BREAST, NET):
        for n, (code, display) in enumerate(noise):
            files["Condition"].append(condition(pid, n, code, display, 400 + 30 * n))
        files["Observation"].append(observation(pid, 0, "29463-7", "Body Weight", 71.3, "kg", 20))
        # a platelet count from long ago (Synthea keeps a lifetime of results)
        files["Observation"].append(
            observation(
                pid,
                1,
                "777-3",
                "Platelets [#/volume] in Blood by Automated count",
                212,
                "10*3/uL",
                7000,
            )
        )
        files["Procedure"].append(
            procedure(pid, 0, "430193006", "Medication reconciliation (procedure)", 60)
        )
    files["Condition"].append(
        condition(BREAST, 10, "254837009", "Malignant neoplasm of breast (disorder)", 300)
    )
    for n in range(221):  # weekly paclitaxel, as a Synthea breast-cancer module orders it
        files["MedicationRequest"].append(
            medication_request(
                BREAST, n, "583214", "PACLitaxel 100 MG per 16.7 ML Injection", 290 - n
            )
        )
    files["Condition"].append(
        condition(
            NET,
            10,
            "1287667007",
            "Primary well-differentiated neuroendocrine tumor of small intestine (disorder)",
            200,
        )
    )
    files["Condition"].append(
        condition(NET, 11, "94381002", "Secondary malignant neoplasm of liver (disorder)", 190)
    )
    files["Observation"].append(
        observation(
            NET, 2, "777-3", "Platelets [#/volume] in Blood by Automated count", 188, "10*3/uL", 6
        )
    )
    files["Observation"].append(
        observation(
            NET, 3, "29593-1", "Cells.Ki-67 nuclear Ag/cells in Tissue by Immune stain", 4, "%", 190
        )
    )
    for n in range(40):
        files["MedicationRequest"].append(
            medication_request(NET, n, "308182", "Amoxicillin 250 MG Oral Capsule", 3000 - 30 * n)
        )
    files["Practitioner"] = [
        {
            "resourceType": "Practitioner",
            "id": _id("practitioner", 1),
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "9999950199"}],
            "name": [{"family": "Cruickshank", "given": ["Lino"], "prefix": ["Dr."]}],
            "gender": "male",
        }
    ]
    files["Organization"] = [
        {
            "resourceType": "Organization",
            "id": _id("organization", 1),
            "name": "GENERAL HOSPITAL",
            "type": [
                _cc(
                    "http://terminology.hl7.org/CodeSystem/organization-type",
                    "prov",
                    "Healthcare Provider",
                )
            ],
        }
    ]
    files["Location"] = [
        {
            "resourceType": "Location",
            "id": _id("location", 1),
            "status": "active",
            "name": "GENERAL HOSPITAL",
            "managingOrganization": {"reference": f"Organization/{_id('organization', 1)}"},
        }
    ]
    files["Group"] = [
        {
            "resourceType": "Group",
            "id": _id("group", 1),
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/{p}"}} for p in (HEALTHY, BREAST, NET)],
        }
    ]
    return files


LOG = [
    {"level": "info", "message": "export started", "time": "2026-03-01T08:00:00Z"},
    {"level": "info", "message": "3 patients written", "time": "2026-03-01T08:00:02Z"},
]


def write(directory: Path = HERE) -> None:
    """Write the export (one NDJSON file per resource type, and log.ndjson)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, resources in export().items():
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in resources)
        (directory / f"{name}.ndjson").write_text(text, encoding="utf-8")
    log = "".join(json.dumps(x) + "\n" for x in LOG)
    (directory / "log.ndjson").write_text(log, encoding="utf-8")


def large_chart(pid: str = NET) -> dict[str, Any]:
    """A CDS Hooks prefetch the size of a Synthea oncology chart (> 1 MB before Observations).

    The small-intestine NET of the corpus, with years of unrelated orders, procedures and
    findings around it, as an EHR returns them for netboard's queries.
    """
    conditions = [
        condition(pid, n, "160903007", "Full-time employment (finding)", 30 * n) for n in range(300)
    ]
    conditions.append(
        condition(
            pid,
            999,
            "1287667007",
            "Primary well-differentiated neuroendocrine tumor of small intestine (disorder)",
            200,
        )
    )
    meds = [
        medication_request(pid, n, "583214", "PACLitaxel 100 MG per 16.7 ML Injection", 290 - n)
        for n in range(221)
    ]
    procedures = [
        procedure(pid, n, "430193006", "Medication reconciliation (procedure)", 10 * n)
        for n in range(1200)
    ]
    return {
        "patient": patient(pid, "male", "1958-04-17", "Carcinoid"),
        "conditions": _searchset(conditions),
        "medicationRequests": _searchset(meds),
        "procedures": _searchset(procedures),
        "observations": None,
        "medicationStatements": None,
        "medicationAdministrations": None,
        "lists": None,
    }


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {
                "fullUrl": f"https://ehr.example.org/fhir/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }


if __name__ == "__main__":
    write()
