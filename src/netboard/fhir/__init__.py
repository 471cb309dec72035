"""FHIR R4 input: resources from a Bundle, a prefetch or a file -> a netboard case.

The mapping is data (``src/netboard/kb/fhir.yaml``, documented in docs/fhir.md); this package
only reads resources defensively and applies it. Only the standard library is used.

Example:
    >>> from netboard.kb import load_kb
    >>> bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
    ...     {"resource": {"resourceType": "Patient", "id": "p1", "gender": "female"}}]}
    >>> case_from_fhir(resources_from(bundle), kb=load_kb()).case
    {'id': 'p1', 'sex': 'female'}
"""

from __future__ import annotations

import datetime as dt

from netboard.fhir.bundle import MAX_FHIR_BYTES, load_json, resources_from
from netboard.fhir.mapping import case_from_fhir
from netboard.fhir.model import FhirCase, Unmapped
from netboard.kb.model import KnowledgeBase

__all__ = [
    "MAX_FHIR_BYTES",
    "FhirCase",
    "Unmapped",
    "case_from_fhir",
    "prefetch_templates",
    "read_fhir",
    "resources_from",
]


def read_fhir(
    path: str,
    *,
    kb: KnowledgeBase | None = None,
    today: dt.date | None = None,
    patient_id: str | None = None,
) -> FhirCase:
    """Read a FHIR JSON file (``-`` for standard input) into a case; size limit 10 MB.

    Raises:
        CaseError: the file is unreadable, too large, not JSON, or not FHIR (named in the
            problem).
    """
    from netboard.kb import load_kb

    data = load_json(path)
    source = "(stdin)" if path == "-" else path
    try:
        resources = resources_from(data)
    except Exception as exc:
        from netboard.errors import CaseError, Problem

        if isinstance(exc, CaseError):
            raise CaseError(
                [Problem(f"{source}: {p.field}", p.message) for p in exc.problems]
            ) from None
        raise
    return case_from_fhir(resources, kb=kb or load_kb(), today=today, patient_id=patient_id)


def prefetch_templates(kb: KnowledgeBase) -> dict[str, str]:
    """The CDS Hooks prefetch templates of the knowledge base (key -> FHIR query)."""
    if kb.fhir is None:
        return {}
    return kb.fhir.prefetch_templates()
