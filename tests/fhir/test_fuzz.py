"""Property: case_from_fhir never raises on JSON-ish resources; its case loads or fails cleanly."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netboard.case import load_case
from netboard.errors import CaseError
from netboard.fhir import case_from_fhir
from netboard.kb import load_kb

KB = load_kb()
assert KB.fhir is not None
TYPES = [
    "Patient",
    "Condition",
    "Observation",
    "MedicationRequest",
    "MedicationStatement",
    "MedicationAdministration",
    "Medication",
    "Procedure",
    "List",
    "OperationOutcome",
    "Encounter",
]
SYSTEMS = sorted(KB.fhir.systems.values())
CODES = sorted({row.code for row in KB.fhir.all_codes()})
KEYS = [
    "id", "code", "status", "intent", "subject", "bodySite", "extension", "meta", "gender",
    "birthDate", "valueQuantity", "valueInteger", "valueCodeableConcept", "referenceRange",
    "effectiveDateTime", "effectivePeriod", "issued", "verificationStatus", "clinicalStatus",
    "medicationCodeableConcept", "medicationReference", "statusReason", "contained",
    "dataAbsentReason", "deceasedBoolean", "ingredient", "value", "unit", "system", "coding",
    "url", "reference", "high", "profile", "display", "text", "comparator", "valueBoolean",
    "outcome", "emptyReason", "entry", "item", "mode",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [*CODES, *SYSTEMS, "final", "completed", "order", "active", "stopped", "male", "%",
         "mg", "Patient/p1", "Patient/p2", "urn:uuid:x", "#c", "1960-01-02", "1960",
         "2024-11-01T10:00:00Z", "entered-in-error", "Medication/m", "Condition/c", "whipple",
         "lutetium dotatate", "current", "nilknown"]
    ),
    st.text(max_size=12),
)  # fmt: skip


def coding() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"system": st.sampled_from(SYSTEMS), "code": st.sampled_from(CODES)},
        optional={"display": st.text(max_size=20)},
    )


concept = st.fixed_dictionaries(
    {}, optional={"coding": st.lists(coding(), max_size=3), "text": st.text(max_size=30)}
)
json_values = st.recursive(
    st.one_of(scalars, concept),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=5),
    ),
    max_leaves=10,
)


@st.composite
def resources(draw: st.DrawFn) -> dict[str, Any]:
    body = draw(st.dictionaries(st.sampled_from(KEYS), json_values, max_size=8))
    body["resourceType"] = draw(st.sampled_from(TYPES))
    return body


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(resources(), max_size=8),
    st.one_of(st.none(), st.sampled_from(["p1", "p2"])),
)
def test_case_from_fhir_never_raises_and_its_case_loads(
    batch: list[dict[str, Any]], patient_id: str | None
) -> None:
    read = case_from_fhir(batch, kb=KB, today=dt.date(2025, 1, 15), patient_id=patient_id)
    with contextlib.suppress(CaseError):
        load_case(read.case)
    for u in read.unmapped:
        assert u.reason
        assert isinstance(u.resource, str)
