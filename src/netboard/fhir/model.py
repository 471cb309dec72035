"""What reading FHIR gives back: the case mapping, where each field came from, what was left out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Unmapped:
    """Something in the FHIR input that did not become a case field, and why.

    ``resource`` is ``ResourceType/id``, ``element`` the element path read (``Observation.code``),
    ``code`` the coding or value as text, ``reason`` plain words for the reader.
    """

    resource: str
    element: str
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class FhirCase:
    """A case read from FHIR resources.

    ``case`` is a raw mapping in contract form, ready for ``load_case``; ``sources`` maps each
    case field to the ``ResourceType/id`` references it came from; ``unmapped`` lists what could
    not be read (a field that cannot be read stays out of the case, so the engine names it in
    missing_information); ``notes`` records what was ignored on purpose.
    """

    case: dict[str, Any]
    sources: dict[str, list[str]] = field(default_factory=dict)
    unmapped: list[Unmapped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        """The ``fhir`` block of a JSON answer: sources, unmapped items and notes."""
        return {
            "sources": {k: list(v) for k, v in self.sources.items()},
            "unmapped": [asdict(u) for u in self.unmapped],
            "notes": list(self.notes),
        }
