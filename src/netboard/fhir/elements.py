"""Defensive readers for FHIR JSON elements: any value may be missing or of the wrong type."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from typing import Any

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"

_SYSTEM_LABELS = {
    SNOMED: "SNOMED",
    ICD10CM: "ICD-10-CM",
    LOINC: "LOINC",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://terminology.hl7.org/CodeSystem/icd-o-3": "ICD-O-3",
    "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl": "NCIt",
    UCUM: "UCUM",
    "https://netboard.dev/fhir/CodeSystem/netboard": "netboard",
    "http://terminology.hl7.org/CodeSystem/list-empty-reason": "list-empty-reason",
}

Coding = tuple[str, str, str]  # system, code, display


def obj(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def items(value: Any) -> list[Any]:
    """``value`` when it is a JSON array, ``[value]`` for a single object, else empty."""
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping):
        return [value]
    return []


def text(value: Any) -> str | None:
    """``value`` when it is a non-empty string."""
    return value if isinstance(value, str) and value.strip() else None


def number(value: Any) -> float | None:
    """``value`` when it is a finite JSON number (not a boolean); ints stay ints."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int):
        return value if abs(value) < 10**300 else None
    return value if math.isfinite(value) else None


def codings(concept: Any) -> list[Coding]:
    """The (system, code, display) of every well-formed coding of a CodeableConcept."""
    out: list[Coding] = []
    for c in items(obj(concept).get("coding")):
        c = obj(c)
        system, code = text(c.get("system")), text(c.get("code"))
        if system and code:
            out.append((system.strip(), code.strip(), text(c.get("display")) or ""))
    return out


def concept_texts(concept: Any) -> list[str]:
    """The human texts of a CodeableConcept: its text and every coding display."""
    c = obj(concept)
    out = [t for t in [text(c.get("text"))] if t]
    out.extend(t for t in (text(obj(x).get("display")) for x in items(c.get("coding"))) if t)
    return out


def describe(concept: Any) -> str:
    """A concept as one short text for the reader, e.g. ``SNOMED 1286770005 'WD NET G2'``."""
    found = codings(concept)
    if found:
        return "; ".join(describe_coding(c) for c in found)
    return next(iter(concept_texts(concept)), "(no code)")


def describe_coding(coding: Coding) -> str:
    """One coding as text: system label, code and display."""
    system, code, display = coding
    label = _SYSTEM_LABELS.get(system, system)
    return f"{label} {code}" + (f" '{display}'" if display else "")


def system_label(system: str) -> str:
    """A short name for a code system URI (SNOMED, LOINC, ...)."""
    return _SYSTEM_LABELS.get(system, system)


def status_code(concept: Any, system_tail: str) -> str | None:
    """The code of a status CodeableConcept (clinicalStatus, verificationStatus)."""
    for system, code, _ in codings(concept):
        if system.endswith(system_tail):
            return code
    return None


_REF = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


def ref_target(reference: Any) -> tuple[str | None, str | None]:
    """(type, id) named by a Reference: ``Patient/1``, an absolute URL, or ``urn:uuid:x``."""
    ref = text(obj(reference).get("reference"))
    if ref is None:
        return None, None
    ref = ref.strip()
    for prefix in ("urn:uuid:", "urn:oid:"):
        if ref.startswith(prefix):
            return None, ref[len(prefix) :]
    if ref.startswith("#"):
        return "#", ref[1:]
    m = _REF.search(ref)
    return (m.group(1), m.group(2)) if m else (None, None)


def words(value: str) -> frozenset[str]:
    """The lower-case words (runs of letters and digits) of a text."""
    return frozenset(re.findall(r"[a-z0-9]+", value.lower()))


def unit_key(unit: str) -> str:
    """A unit string compared loosely: micro sign as u, case folded, spaces dropped."""
    return unit.replace("µ", "u").replace("μ", "u").replace(" ", "").lower()


def quantity_unit(quantity: Mapping[str, Any]) -> str | None:
    """The unit of a Quantity: its UCUM code when given, else its human unit."""
    code = text(quantity.get("code"))
    system = text(quantity.get("system"))
    if code and (system is None or system == UCUM):
        return code
    return text(quantity.get("unit")) or code


# --- dates -----------------------------------------------------------------------------------

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def partial_date(value: Any) -> tuple[int, int | None, int | None] | None:
    """A FHIR date (YYYY, YYYY-MM or YYYY-MM-DD) as (year, month, day); None when malformed."""
    s = text(value)
    if s is None:
        return None
    m = _DATE.match(s.strip()[:10] if "T" in s else s.strip())
    if not m:
        return None
    year = int(m.group(1))
    month = int(m.group(2)) if m.group(2) else None
    day = int(m.group(3)) if m.group(3) else None
    try:
        dt.date(year, month or 1, day or 1)
    except ValueError:
        return None
    if year < 1:
        return None
    return year, month, day


def age_range(birth: tuple[int, int | None, int | None], today: dt.date) -> tuple[int, int]:
    """The smallest and largest completed age in years for a (possibly partial) birth date."""
    year, month, day = birth

    def age(m: int, d: int) -> int:
        return today.year - year - ((today.month, today.day) < (m, d))

    if month is None:
        return age(12, 31), age(1, 1)
    if day is None:
        last = 31
        while True:
            try:
                dt.date(year, month, last)
                break
            except ValueError:
                last -= 1
        return age(month, last), age(month, 1)
    return age(month, day), age(month, day)


def instant(value: Any) -> tuple[float, ...] | None:
    """A sortable key for a FHIR date, dateTime or instant (UTC when a zone is given)."""
    s = text(value)
    if s is None:
        return None
    s = s.strip()
    if "T" not in s:
        d = partial_date(s)
        if d is None:
            return None
        return (float(d[0]), float(d[1] or 1), float(d[2] or 1), 0.0)
    try:
        parsed = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    seconds = parsed.hour * 3600 + parsed.minute * 60 + parsed.second + parsed.microsecond / 1e6
    return (float(parsed.year), float(parsed.month), float(parsed.day), seconds)


def observation_time(resource: Mapping[str, Any]) -> tuple[float, ...] | None:
    """When an observation holds: effective[x] (a period's end, else its start), else issued."""
    for key in ("effectiveDateTime", "effectiveInstant"):
        when = instant(resource.get(key))
        if when is not None:
            return when
    period = obj(resource.get("effectivePeriod"))
    when = instant(period.get("end")) or instant(period.get("start"))
    if when is not None:
        return when
    return instant(resource.get("issued"))


def given_time(resource: Mapping[str, Any]) -> tuple[float, ...] | None:
    """When a treatment was given: performed[x] or effective[x] (a period's end, else start)."""
    for key in ("performedDateTime", "effectiveDateTime", "occurrenceDateTime"):
        when = instant(resource.get(key))
        if when is not None:
            return when
    for key in ("performedPeriod", "effectivePeriod"):
        period = obj(resource.get(key))
        when = instant(period.get("end")) or instant(period.get("start"))
        if when is not None:
            return when
    return None
