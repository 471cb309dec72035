"""What reading FHIR gives back: the case mapping, where each field came from, what was left out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from netboard.vocab import Neoplasm


@dataclass(frozen=True, slots=True)
class Unmapped:
    """Something in the FHIR input that did not become a case field, and why.

    ``resource`` is ``ResourceType/id``, ``element`` the element path read (``Observation.code``),
    ``code`` the coding or value as text, ``reason`` plain words for the reader. ``field`` is
    the case field the item would have given (when a row of the table matched), ``date`` the
    date of a value too old to be current (ISO), and ``relevant`` says whether the item bears
    on the NEN plan (a code of the mapping table, a conflict, an old value); items the table
    does not know (a sinusitis, an employment finding) are not relevant: the CDS Hooks card
    counts them and the report lists them.
    """

    resource: str
    element: str
    code: str
    reason: str
    field: str = ""
    date: str = ""
    relevant: bool = True


@dataclass(frozen=True, slots=True)
class FhirCase:
    """A case read from FHIR resources.

    ``case`` is a raw mapping in contract form, ready for ``load_case``; ``sources`` maps each
    case field to the ``ResourceType/id`` references it came from; ``unmapped`` lists what could
    not be read (a field that cannot be read stays out of the case, so the engine names it in
    missing_information); ``notes`` records what was ignored on purpose. ``neoplasm`` is what
    the record says about the neoplasm (pass it to ``recommend``) and ``neoplasm_detail`` what
    showed it, in words.
    """

    case: dict[str, Any]
    sources: dict[str, list[str]] = field(default_factory=dict)
    unmapped: list[Unmapped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    neoplasm: Neoplasm = Neoplasm.NONE
    neoplasm_detail: str = ""

    @property
    def answers(self) -> bool:
        """Whether a plan is shown for this record (CDS Hooks cards, audit rows).

        A neuroendocrine neoplasm is recorded, or a neoplasm at a primary site where NENs
        arise whose histology is not recorded (the plan then says that it presumes a NEN).
        """
        if self.neoplasm is Neoplasm.NEUROENDOCRINE:
            return True
        return self.neoplasm is Neoplasm.UNCONFIRMED and "primary_site" in self.case

    def report(self) -> dict[str, Any]:
        """The ``fhir`` block of a JSON answer: neoplasm, sources, unmapped items and notes."""
        return {
            "neoplasm": self.neoplasm.value,
            "neoplasm_detail": self.neoplasm_detail,
            "sources": {k: list(v) for k, v in self.sources.items()},
            "unmapped": [asdict(u) for u in self.unmapped],
            "notes": list(self.notes),
        }
