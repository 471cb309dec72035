"""FHIR R4 resources -> a netboard case, driven by the knowledge base's table (kb/fhir.yaml).

Nothing here knows a code: every code, unit and name rule comes from ``KnowledgeBase.fhir``.
The rules for reading (statuses, conflicts, recency) are described in docs/fhir.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from netboard import vocab as v
from netboard.case import load_case
from netboard.errors import CaseError, KnowledgeBaseError, Problem
from netboard.fhir import elements as el
from netboard.fhir.model import FhirCase, Unmapped
from netboard.fhir.table import (
    ORDER_INTENTS,
    READ_STATUSES,
    CodeTable,
    FhirCode,
    FhirMap,
    FhirObservation,
    NameRule,
    normalize_code,
)
from netboard.fields import ChoiceList, field_paths, nest, registry
from netboard.kb.model import KnowledgeBase
from netboard.vocab import Neoplasm

_CONDITION_VER = "condition-ver-status"
_CONDITION_CLINICAL = "condition-clinical"
_OBS_USED = {"final", "amended", "corrected"}
_IGNORED = {"entered-in-error", "cancelled", "not-done", "refuted"}
_REQUEST_GIVEN = set(READ_STATUSES["MedicationRequest"])
_REQUEST_INTENTS = set(ORDER_INTENTS)
_STATEMENT_GIVEN = set(READ_STATUSES["MedicationStatement"])
_ADMIN_GIVEN = set(READ_STATUSES["MedicationAdministration"])
#: Resource types whose subject says whose they are (a resource without one is not read).
_SUBJECT_TYPES = (
    "Condition",
    "Observation",
    "MedicationRequest",
    "MedicationStatement",
    "MedicationAdministration",
    "Procedure",
    "List",
)
#: Average month length (days) for months_since (365.25 / 12).
_MONTH_DAYS = 30.4375
_NOT_CURRENT = {"inactive", "remission", "resolved"}
_UNCONFIRMED = {"unconfirmed", "provisional", "differential"}
_MEDICATION_TYPES = ("MedicationRequest", "MedicationStatement", "MedicationAdministration")


@dataclass(frozen=True, slots=True)
class _Claim:
    """A value a resource gives for a single-valued case field."""

    value: Any
    ref: str
    element: str
    observed: bool  # from an Observation (then the most recent may win)
    when: tuple[float, ...] | None


@dataclass(slots=True)
class _Given:
    """A treatment or regimen component found for the patient."""

    refs: list[str] = field(default_factory=list)
    progressed: bool = False


@dataclass(slots=True)
class _Resection:
    """A resection whose meaning (primary or not) waits for the primary site."""

    ref: str
    element: str
    label: str
    sites: tuple[v.Site, ...]
    any_site: bool = False
    progressed: bool = False


class _Reader:
    """Collects claims from resources, then resolves them into one case mapping."""

    def __init__(
        self, fmap: FhirMap, today: dt.date, aliases: Mapping[str, tuple[str, str]] | None = None
    ) -> None:
        self.fmap = fmap
        self.today = today
        self.aliases: Mapping[str, tuple[str, str]] = aliases or {}
        #: what the conditions say about the neoplasm: kind -> descriptions (first = shown)
        self.neoplasm: dict[Neoplasm, list[str]] = {}
        #: months_since field -> dates of the treatment given
        self.given_dates: dict[str, list[tuple[dt.date, str]]] = {}
        self.claims: dict[str, list[_Claim]] = {}
        self.list_items: dict[str, dict[str, list[str]]] = {}
        self.treatments: dict[v.Intervention, _Given] = {}
        self.components: dict[str, _Given] = {}
        self.component_labels: dict[str, str] = {}
        self.resections: list[_Resection] = []
        self.unmapped: list[Unmapped] = []
        self.notes: list[str] = []
        self.sources: dict[str, list[str]] = {}
        self.primary_ids: set[str] = set()
        self.medications: dict[str, Mapping[str, Any]] = {}
        self.empty_lists: dict[str, list[str]] = {}
        self.conflicted: set[str] = set()

    # --- recording ---------------------------------------------------------------------------

    def miss(
        self,
        ref: str,
        element: str,
        code: str,
        reason: str,
        *,
        field: str = "",
        date: str = "",
        relevant: bool = True,
    ) -> None:
        self.unmapped.append(
            Unmapped(
                resource=ref,
                element=element,
                code=code,
                reason=reason,
                field=field,
                date=date,
                relevant=relevant,
            )
        )

    def unknown(self, ref: str, element: str, concept: Any) -> None:
        """A code the table does not hold: reported, but not relevant to the NEN plan."""
        self.miss(ref, element, el.describe(concept), _not_in_table(concept), relevant=False)

    def evidence(self, kind: Neoplasm, what: str) -> None:
        """Record what a resource says about the neoplasm."""
        self.neoplasm.setdefault(kind, []).append(what)

    def target(self, reference: Any) -> tuple[str | None, str | None]:
        """(type, id) of a Reference: a Bundle entry's fullUrl first, as FHIR resolves them."""
        raw = el.text(el.obj(reference).get("reference"))
        if raw is not None and raw.strip() in self.aliases:
            return self.aliases[raw.strip()]
        return el.ref_target(reference)

    def source(self, path: str, ref: str) -> None:
        refs = self.sources.setdefault(path, [])
        if ref not in refs:
            refs.append(ref)

    def give(
        self,
        sets: Iterable[tuple[str, Any]],
        ref: str,
        element: str,
        *,
        observed: bool = False,
        when: tuple[float, ...] | None = None,
    ) -> None:
        for path, value in sets:
            if observed and not self.current(path, value, ref, element, when):
                continue
            spec = registry().spec(path)
            if isinstance(spec, ChoiceList):
                self.list_items.setdefault(path, {}).setdefault(str(value), []).append(ref)
            else:
                self.claims.setdefault(path, []).append(_Claim(value, ref, element, observed, when))

    def current(
        self, path: str, value: Any, ref: str, element: str, when: tuple[float, ...] | None
    ) -> bool:
        """Whether an observed value is recent enough for its field's window (kb recency)."""
        window = self.fmap.recency.get(path)
        if window is None:
            return True
        label = registry().fields[path].label
        if when is None:
            self.miss(
                ref,
                element,
                f"{label} {value}",
                f"{label}: the observation has no date, so it cannot be read as current "
                f"(netboard reads {label} of the last {window.max_age_days} days)",
                field=path,
            )
            return False
        day = dt.date(int(when[0]), int(when[1]), int(when[2]))
        age = (self.today - day).days
        if age <= window.max_age_days:
            return True
        self.miss(
            ref,
            element,
            f"{label} {value} on {day.isoformat()}",
            f"{label} from {day.isoformat()} is {_age_words(age)} old: older than the "
            f"{window.max_age_days} days netboard reads as current, so it is not used",
            field=path,
            date=day.isoformat(),
        )
        return False

    def lookup(self, table: CodeTable, concept: Any) -> tuple[FhirCode, el.Coding] | None:
        for coding in el.codings(concept):
            row = table.lookup(coding[0], coding[1])
            if row is not None:
                return row, coding
        return None

    def apply_row(
        self,
        row: FhirCode,
        coding: el.Coding,
        ref: str,
        element: str,
        *,
        observed: bool = False,
        when: tuple[float, ...] | None = None,
    ) -> bool:
        """Give a row's fields, or report it unmapped; True when fields were given."""
        if row.unmapped is not None:
            self.miss(ref, element, el.describe_coding(coding), row.unmapped)
            return False
        self.give(row.sets, ref, element, observed=observed, when=when)
        return bool(row.sets)

    # --- Patient ------------------------------------------------------------------------------

    def patient(self, res: Mapping[str, Any], ref: str) -> None:
        pid = el.text(res.get("id"))
        if pid:
            self.give([("id", pid)], ref, "Patient.id")
        gender = res.get("gender")
        if gender is None:
            self.individual_sex(res, ref)
        elif gender in ("male", "female", "other"):
            self.give([("sex", gender)], ref, "Patient.gender")
        else:
            self.miss(
                ref,
                "Patient.gender",
                str(gender),
                "the sex is not recorded as male, female or other",
            )
        self.age(res, ref)

    def individual_sex(self, res: Mapping[str, Any], ref: str) -> None:
        """US Core 8 ``us-core-individual-sex`` (valueCoding), read when gender is absent."""
        url = self.fmap.extensions.get("individual_sex")
        for ext in el.items(res.get("extension")):
            ext = el.obj(ext)
            if ext.get("url") != url:
                continue
            concept = {"coding": [ext.get("valueCoding")]}
            hit = self.lookup(self.fmap.individual_sex, concept)
            element = "Patient.extension(us-core-individual-sex)"
            if hit is None:
                self.miss(ref, element, el.describe(concept), _not_in_table(concept), field="sex")
            else:
                self.give([("sex", hit[0].value)], ref, element)

    def age(self, res: Mapping[str, Any], ref: str) -> None:
        raw = res.get("birthDate")
        if raw is None:
            return
        if res.get("deceasedBoolean") is True or el.text(res.get("deceasedDateTime")):
            self.miss(
                ref,
                "Patient.deceased[x]",
                "deceased",
                "the patient is recorded as deceased; no age is given",
            )
            return
        birth = el.partial_date(raw)
        if birth is None:
            self.miss(ref, "Patient.birthDate", str(raw), "the birth date is not a FHIR date")
            return
        low, high = el.age_range(birth, self.today)
        if low != high:
            self.miss(
                ref,
                "Patient.birthDate",
                str(raw),
                f"a partial birth date gives an age of {low} or {high} on {self.today.isoformat()}",
            )
            return
        if low < 0:
            self.miss(
                ref, "Patient.birthDate", str(raw), "the birth date is after the reference date"
            )
            return
        self.give([("age_years", low)], ref, "Patient.birthDate")

    # --- Condition ----------------------------------------------------------------------------

    def profile_role(self, res: Mapping[str, Any]) -> str | None:
        """The role the mCODE profile in meta.profile gives (a ``|version`` suffix ignored)."""
        profiles = {
            p.split("|", 1)[0].strip()
            for p in el.items(el.obj(res.get("meta")).get("profile"))
            if isinstance(p, str)
        }
        if self.fmap.profiles.get("primary_cancer_condition") in profiles:
            return "primary"
        if self.fmap.profiles.get("secondary_cancer_condition") in profiles:
            return "secondary"
        return None

    def condition_role(
        self, res: Mapping[str, Any]
    ) -> tuple[str | None, tuple[FhirCode, el.Coding] | None]:
        found = self.lookup(self.fmap.conditions, res.get("code"))
        profile = self.profile_role(res)
        if found is not None and found[0].role:
            role = found[0].role
            if profile == "primary" and role == "secondary":
                # mCODE's "nonspecific" primary uses a metastasis code: the profile says primary.
                return "primary", None
            return role, found
        return profile, found

    def condition(self, res: Mapping[str, Any], ref: str) -> None:
        verification = el.status_code(res.get("verificationStatus"), _CONDITION_VER)
        if verification in _IGNORED:
            self.notes.append(f"{ref} ignored: verification status {verification}")
            return
        role, found = self.condition_role(res)
        if role is None:
            self.unknown(ref, "Condition.code", res.get("code"))
            return
        if verification in _UNCONFIRMED:
            self.miss(
                ref,
                "Condition.verificationStatus",
                el.describe(res.get("code")),
                f"the diagnosis is {verification}, not confirmed",
            )
            return
        clinical = el.status_code(res.get("clinicalStatus"), _CONDITION_CLINICAL)
        if role != "primary" and clinical in _NOT_CURRENT:
            self.notes.append(f"{ref} not used: clinical status {clinical}")
            return
        if found is None:
            table_row = self.lookup(self.fmap.conditions, res.get("code"))
            if table_row is not None and table_row[0].role == "secondary":
                self.miss(
                    ref,
                    "Condition.code",
                    el.describe_coding(table_row[1]),
                    "profiled as a primary cancer condition, but the code means a metastasis: "
                    "read as a primary whose site and histology are not recorded",
                )
            else:
                self.miss(
                    ref,
                    "Condition.code",
                    el.describe(res.get("code")),
                    _not_in_table(res.get("code")),
                )
        if role == "primary":
            self.primary(res, ref, found)
        elif role == "secondary":
            self.secondary(res, ref, found)
        elif found is not None:
            self.other(res, ref, found)

    def histology(self, res: Mapping[str, Any]) -> tuple[Any, tuple[FhirCode, el.Coding] | None]:
        """The mCODE histology extension's concept and its row (None when absent or unknown)."""
        url = self.fmap.extensions.get("histology")
        for ext in el.items(res.get("extension")):
            ext = el.obj(ext)
            if ext.get("url") == url:
                value = ext.get("valueCodeableConcept")
                return value, self.lookup(self.fmap.morphology, value)
        return None, None

    def primary(
        self, res: Mapping[str, Any], ref: str, found: tuple[FhirCode, el.Coding] | None
    ) -> None:
        morph, hit = self.histology(res)
        element = "Condition.extension(histology-morphology-behavior)"
        code_text = el.describe(res.get("code"))
        kind = Neoplasm(found[0].neoplasm) if found and found[0].neoplasm else Neoplasm.UNCONFIRMED
        if hit is not None and hit[0].neoplasm:
            morph_kind = Neoplasm(hit[0].neoplasm)
            if morph_kind is Neoplasm.NON_NEUROENDOCRINE and kind is Neoplasm.NEUROENDOCRINE:
                self.miss(
                    ref,
                    element,
                    el.describe_coding(hit[1]),
                    f"a neuroendocrine code ({code_text}) with a non-neuroendocrine histology: "
                    "the histology decides",
                )
            kind = morph_kind
        if kind is Neoplasm.NON_NEUROENDOCRINE:
            what = el.describe_coding(hit[1]) if hit is not None else code_text
            self.evidence(kind, f"{what}, {ref}")
            self.miss(
                ref,
                element if hit is not None else "Condition.code",
                what,
                "a cancer that is not neuroendocrine: netboard reads nothing of it",
                field="primary_site",
            )
            return
        if found is not None:
            row, coding = found
            self.apply_row(row, coding, ref, "Condition.code")
        for i, site in enumerate(el.items(res.get("bodySite"))):
            bhit = self.lookup(self.fmap.primary_body_sites, site)
            at = f"Condition.bodySite[{i}]"
            if bhit is None:
                self.miss(ref, at, el.describe(site), _not_in_table(site))
            else:
                self.apply_row(bhit[0], bhit[1], ref, at)
        if morph is not None and hit is None:
            self.miss(ref, element, el.describe(morph), _not_in_table(morph))
        elif hit is not None:
            self.apply_row(hit[0], hit[1], ref, element)
        shown = el.describe_coding(hit[1]) if hit is not None else code_text
        self.evidence(kind, f"{shown}, {ref}")

    def secondary(
        self, res: Mapping[str, Any], ref: str, found: tuple[FhirCode, el.Coding] | None
    ) -> None:
        gave = False
        kind = Neoplasm(found[0].neoplasm) if found and found[0].neoplasm else Neoplasm.UNCONFIRMED
        self.evidence(kind, f"a metastasis ({el.describe(res.get('code'))}), {ref}")
        if found is not None:
            row, coding = found
            if row.unmapped is not None:
                self.apply_row(row, coding, ref, "Condition.code")
                return
            gave = self.apply_row(row, coding, ref, "Condition.code")
        for i, site in enumerate(el.items(res.get("bodySite"))):
            hit = self.lookup(self.fmap.secondary_body_sites, site)
            element = f"Condition.bodySite[{i}]"
            if hit is None:
                self.miss(ref, element, el.describe(site), _not_in_table(site))
            else:
                gave = self.apply_row(hit[0], hit[1], ref, element) or gave
        if not gave and not self.unmapped_for(ref):
            self.miss(
                ref,
                "Condition.bodySite",
                el.describe(res.get("code")),
                "a metastasis without a site that maps",
            )

    def unmapped_for(self, ref: str) -> bool:
        return any(u.resource == ref for u in self.unmapped)

    def other(self, res: Mapping[str, Any], ref: str, found: tuple[FhirCode, el.Coding]) -> None:
        row, coding = found
        if row.due_to_primary and not self.due_to_primary(res):
            self.miss(
                ref,
                "Condition.extension(condition-dueTo)",
                el.describe_coding(coding),
                "not recorded as caused by the primary tumour (extension condition-dueTo)",
            )
            return
        self.apply_row(row, coding, ref, "Condition.code")

    def due_to_primary(self, res: Mapping[str, Any]) -> bool:
        url = self.fmap.extensions.get("due_to")
        for ext in el.items(res.get("extension")):
            ext = el.obj(ext)
            if ext.get("url") != url:
                continue
            _, target = self.target(ext.get("valueReference"))
            if target is not None and target in self.primary_ids:
                return True
            hit = self.lookup(self.fmap.conditions, ext.get("valueCodeableConcept"))
            if hit is not None and hit[0].role == "primary":
                return True
        return False

    # --- Observation --------------------------------------------------------------------------

    def observation(self, res: Mapping[str, Any], ref: str) -> None:
        status = el.text(res.get("status"))
        if status in _IGNORED:
            self.notes.append(f"{ref} ignored: status {status}")
            return
        entry: FhirObservation | None = None
        coding: el.Coding | None = None
        for c in el.codings(res.get("code")):
            entry = self.fmap.observations.get((c[0], _norm(c)))
            if entry is not None:
                coding = c
                break
        if entry is None or coding is None:
            self.unknown(ref, "Observation.code", res.get("code"))
            return
        label = el.describe_coding(coding)
        if entry.row.unmapped is not None:
            self.miss(ref, "Observation.code", label, entry.row.unmapped)
            return
        if status not in _OBS_USED:
            self.miss(
                ref, "Observation.status", label, f"status {status!r}: only final results are read"
            )
            return
        absent = res.get("dataAbsentReason")
        if absent is not None:
            why = next(iter(el.concept_texts(absent)), None) or next(
                (c[1] for c in el.codings(absent)), "absent"
            )
            self.miss(ref, "Observation.dataAbsentReason", label, f"no value ({why})")
            return
        when = el.observation_time(res)
        name = _short(entry)
        if entry.kind == "morphology":
            value = res.get("valueCodeableConcept")
            hit = self.lookup(self.fmap.morphology, value)
            if hit is None:
                self.miss(
                    ref,
                    "Observation.valueCodeableConcept",
                    el.describe(value),
                    _not_in_table(value),
                )
            else:
                kind = Neoplasm(hit[0].neoplasm or Neoplasm.UNCONFIRMED.value)
                self.evidence(kind, f"{el.describe_coding(hit[1])}, {ref}")
                if kind is Neoplasm.NON_NEUROENDOCRINE:
                    self.miss(
                        ref,
                        "Observation.valueCodeableConcept",
                        el.describe_coding(hit[1]),
                        "a histology that is not neuroendocrine",
                    )
                else:
                    self.apply_row(
                        hit[0],
                        hit[1],
                        ref,
                        "Observation.valueCodeableConcept",
                        observed=True,
                        when=when,
                    )
            return
        assert entry.field is not None
        if entry.kind == "coded":
            value = res.get("valueCodeableConcept")
            hit = self.lookup(entry.values, value) if entry.values is not None else None
            if hit is None:
                self.miss(
                    ref,
                    "Observation.valueCodeableConcept",
                    el.describe(value),
                    f"this answer to {label} is not in the mapping table",
                )
                return
            if hit[0].unmapped is not None:
                self.miss(
                    ref,
                    "Observation.valueCodeableConcept",
                    el.describe_coding(hit[1]),
                    hit[0].unmapped,
                )
                return
            self.give(
                [(entry.field, hit[0].value)],
                ref,
                "Observation.valueCodeableConcept",
                observed=True,
                when=when,
            )
            return
        if entry.kind == "integer":
            self.integer(res, ref, entry, label, when)
            return
        if entry.kind == "boolean":
            flag = res.get("valueBoolean")
            if not isinstance(flag, bool):
                self.miss(ref, "Observation.valueBoolean", label, f"{name}: no valueBoolean")
                return
            self.give(
                [(entry.field, flag)], ref, "Observation.valueBoolean", observed=True, when=when
            )
            return
        quantity = el.obj(res.get("valueQuantity"))
        if entry.component is not None:
            for comp in el.items(res.get("component")):
                comp = el.obj(comp)
                if any((c[0], c[1]) == entry.component for c in el.codings(comp.get("code"))):
                    quantity = el.obj(comp.get("valueQuantity"))
                    break
        amount = el.number(quantity.get("value"))
        if amount is None:
            self.miss(
                ref,
                "Observation.value[x]",
                label,
                f"{name}: no numeric valueQuantity",
                field=entry.field,
            )
            return
        if el.text(quantity.get("comparator")):
            self.miss(
                ref,
                "Observation.valueQuantity",
                label,
                f"{name}: the value is a bound ({quantity.get('comparator')} {amount:g}), "
                "not a measurement",
            )
            return
        unit = el.quantity_unit(quantity)
        if entry.kind == "ratio_to_uln":
            self.ratio(res, ref, entry, label, amount, unit, when)
            return
        rule = next(
            (
                u
                for u in entry.units
                if unit is not None and el.unit_key(u.unit) == el.unit_key(unit)
            ),
            None,
        )
        if rule is None:
            wanted = ", ".join(u.unit for u in entry.units)
            self.miss(
                ref,
                "Observation.valueQuantity",
                f"{label} {amount:g} {unit or '(no unit)'}",
                f"{_short(entry)} in unit {unit!r} cannot be read as {wanted}"
                if unit
                else f"{_short(entry)} has no unit; expected {wanted}",
            )
            return
        value = amount
        if rule.factor != 1:
            value = amount * rule.factor
            if entry.decimals is not None:
                value = round(value, entry.decimals)
        self.give(
            [(entry.field, value)], ref, "Observation.valueQuantity", observed=True, when=when
        )

    def integer(
        self,
        res: Mapping[str, Any],
        ref: str,
        entry: FhirObservation,
        label: str,
        when: tuple[float, ...] | None,
    ) -> None:
        assert entry.field is not None
        raw = res.get("valueInteger")
        if raw is None:
            quantity = el.obj(res.get("valueQuantity"))
            unit = el.quantity_unit(quantity)
            if unit in (None, "{score}", "1"):
                raw = quantity.get("value")
        amount = el.number(raw)
        if amount is None or amount != int(amount):
            self.miss(
                ref, "Observation.valueInteger", label, f"{_short(entry)}: no whole-number value"
            )
            return
        self.give(
            [(entry.field, int(amount))], ref, "Observation.valueInteger", observed=True, when=when
        )

    def ratio(
        self,
        res: Mapping[str, Any],
        ref: str,
        entry: FhirObservation,
        label: str,
        amount: float,
        unit: str | None,
        when: tuple[float, ...] | None,
    ) -> None:
        assert entry.field is not None
        highs = []
        for rr in el.items(res.get("referenceRange")):
            high = el.obj(el.obj(rr).get("high"))
            limit = el.number(high.get("value"))
            if limit is not None:
                highs.append((limit, el.quantity_unit(high)))
        text = f"{label} {amount:g} {unit or ''}".strip()
        if not highs:
            self.miss(
                ref,
                "Observation.referenceRange",
                text,
                f"{_short(entry)}: no reference range upper limit, so it cannot be read as "
                "times the upper limit of normal",
            )
            return
        if len({h for h in highs}) > 1:
            self.miss(
                ref,
                "Observation.referenceRange",
                text,
                f"{_short(entry)}: several upper limits; cannot tell which applies",
            )
            return
        limit, limit_unit = highs[0]
        if limit <= 0:
            self.miss(
                ref,
                "Observation.referenceRange",
                text,
                f"{_short(entry)}: the upper limit is not positive",
            )
            return
        if (
            limit_unit is not None
            and unit is not None
            and el.unit_key(limit_unit) != el.unit_key(unit)
        ):
            self.miss(
                ref,
                "Observation.referenceRange",
                text,
                f"{_short(entry)}: the value ({unit}) and the upper limit ({limit_unit}) "
                "are in different units",
            )
            return
        self.give(
            [(entry.field, round(amount / limit, 2))],
            ref,
            "Observation.valueQuantity",
            observed=True,
            when=when,
        )

    # --- medications ----------------------------------------------------------------------------

    def medication(self, res: Mapping[str, Any], ref: str, rtype: str) -> None:
        status = el.text(res.get("status"))
        if status in _IGNORED or status in ("not-taken", "draft"):
            self.notes.append(f"{ref} ignored: status {status}")
            return
        given = {"MedicationRequest": _REQUEST_GIVEN, "MedicationStatement": _STATEMENT_GIVEN}.get(
            rtype, _ADMIN_GIVEN
        )
        element = f"{rtype}.medication[x]"
        concepts = self.medication_concepts(res)
        label = "; ".join(el.describe(c) for c in concepts) or "(no medication)"
        rows: list[FhirCode | NameRule] = []
        for concept in concepts:
            hit = self.lookup(self.fmap.medications, concept)
            if hit is not None:
                rows.append(hit[0])
        matched_by_name = False
        if not rows:
            rule = _by_name(
                self.fmap.medication_names, self.fmap.medication_exclude_words, concepts
            )
            if rule is not None:
                rows.append(rule)
                matched_by_name = True
        if not rows:
            self.miss(
                ref, element, label, "this medication is not in the mapping table", relevant=False
            )
            return
        if status not in given:
            self.miss(
                ref,
                f"{rtype}.status",
                label,
                f"status {status!r} does not say the drug was given",
                field="prior_treatments",
            )
            return
        if rtype == "MedicationRequest" and el.text(res.get("intent")) not in _REQUEST_INTENTS:
            self.miss(
                ref,
                "MedicationRequest.intent",
                label,
                f"intent {res.get('intent')!r} is not an order",
                field="prior_treatments",
            )
            return
        if matched_by_name and isinstance(rows[0], NameRule):
            self.notes.append(
                f"{ref}: medication matched by name ({' '.join(rows[0].words)}), "
                "no code of the table"
            )
        # An administration's statusReason says why a dose was not given, not why a drug stopped.
        progressed = rtype != "MedicationAdministration" and any(
            self.lookup(self.fmap.progression_reasons, reason) is not None
            for reason in el.items(res.get("statusReason"))
        )
        for row in rows:
            if row.treatment is not None:
                self.add_treatment(row.treatment, ref, progressed)
                self.given_on(row.treatment, rtype, res, ref)
            elif row.component is not None:
                got = self.components.setdefault(row.component, _Given())
                got.refs.append(ref)
                got.progressed = got.progressed or progressed
                self.component_labels.setdefault(row.component, label)

    def given_on(
        self, treatment: v.Intervention, rtype: str, res: Mapping[str, Any], ref: str
    ) -> None:
        """Keep the date a treatment was given, for ``months_since.<treatment>``."""
        path = f"months_since.{treatment.value}"
        spec = registry().fields.get(path)
        if spec is None or rtype not in spec.fhir:
            return
        when = el.given_time(res)
        if when is None:
            self.miss(
                ref,
                f"{rtype}.effective[x]",
                treatment.value,
                f"no date, so the {registry().fields[path].label} cannot be counted",
                field=path,
            )
            return
        day = dt.date(int(when[0]), int(when[1]), int(when[2]))
        if day <= self.today:
            self.given_dates.setdefault(path, []).append((day, ref))

    def medication_concepts(self, res: Mapping[str, Any]) -> list[Any]:
        if "medicationCodeableConcept" in res:
            return [res.get("medicationCodeableConcept")]
        kind, target = self.target(res.get("medicationReference"))
        med: Mapping[str, Any] | None = None
        if kind == "#":
            med = next(
                (
                    el.obj(c)
                    for c in el.items(res.get("contained"))
                    if el.obj(c).get("id") == target
                ),
                None,
            )
        elif target is not None:
            med = self.medications.get(target)
        if med is None:
            display = el.text(el.obj(res.get("medicationReference")).get("display"))
            return [{"text": display}] if display else []
        concepts = [med.get("code")]
        concepts.extend(
            el.obj(i).get("itemCodeableConcept") for i in el.items(med.get("ingredient"))
        )
        return [c for c in concepts if c is not None]

    def add_treatment(self, code: v.Intervention, ref: str, progressed: bool) -> None:
        got = self.treatments.setdefault(code, _Given())
        if ref not in got.refs:
            got.refs.append(ref)
        got.progressed = got.progressed or progressed

    # --- Procedure ------------------------------------------------------------------------------

    def procedure(self, res: Mapping[str, Any], ref: str) -> None:
        status = el.text(res.get("status"))
        label = el.describe(res.get("code"))
        if status in _IGNORED:
            self.notes.append(f"{ref} ignored: status {status}")
            return
        hit = self.lookup(self.fmap.procedures, res.get("code"))
        row: FhirCode | NameRule | None = hit[0] if hit is not None else None
        by_name = False
        if row is None:
            row = _by_name(
                self.fmap.procedure_names, self.fmap.procedure_exclude_words, [res.get("code")]
            )
            by_name = row is not None
        if row is None:
            self.unknown(ref, "Procedure.code", res.get("code"))
            return
        if status != "completed":
            self.miss(
                ref,
                "Procedure.status",
                label,
                f"status {status!r}: only completed procedures are read",
                field="prior_treatments",
            )
            return
        if by_name and isinstance(row, NameRule):
            self.notes.append(
                f"{ref}: procedure matched by name ({' '.join(row.words)}), no code of the table"
            )
        # Procedure.outcome: a progression code of the table says the disease progressed after it.
        progressed = any(
            self.lookup(self.fmap.progression_reasons, outcome) is not None
            for outcome in el.items(res.get("outcome"))
        )
        if row.sets:
            self.give(row.sets, ref, "Procedure.code")
        if row.treatment is v.Intervention.PRIMARY_RESECTION:
            any_site = isinstance(row, FhirCode) and row.any_site
            self.resections.append(
                _Resection(ref, "Procedure.code", label, row.sites, any_site, progressed)
            )
        elif row.treatment is not None:
            self.add_treatment(row.treatment, ref, progressed)
            self.given_on(row.treatment, "Procedure", res, ref)

    # --- List -----------------------------------------------------------------------------------

    def list_resource(self, res: Mapping[str, Any], ref: str) -> None:
        status = el.text(res.get("status"))
        if status == "entered-in-error":
            self.notes.append(f"{ref} ignored: status {status}")
            return
        hit = self.lookup(self.fmap.lists, res.get("code"))
        if hit is None:
            self.notes.append(f"{ref} not read: a List whose code is not in the mapping table")
            return
        row, coding = hit
        label = el.describe_coding(coding)
        if status != "current":
            self.miss(ref, "List.status", label, f"status {status!r}: only current lists are read")
            return
        if el.items(res.get("entry")):
            self.notes.append(
                f"{ref} not read: the entries of a List are read from their resources"
            )
            return
        reason = res.get("emptyReason")
        found = self.lookup(self.fmap.list_empty_reasons, reason)
        if found is None:
            self.miss(
                ref,
                "List.emptyReason",
                el.describe(reason),
                "an empty List without an emptyReason saying there is nothing to list (nilknown)",
            )
            return
        if found[0].unmapped is not None:
            self.miss(ref, "List.emptyReason", el.describe_coding(found[1]), found[0].unmapped)
            return
        assert row.field is not None
        self.empty_lists.setdefault(row.field, []).append(ref)

    # --- resolution -----------------------------------------------------------------------------

    def resolve(self) -> dict[str, Any]:
        raw: dict[str, Any] = {}
        for path, claims in self.claims.items():
            value = self.resolve_one(path, claims)
            if value is not None:
                raw[path] = value
        site = raw.get("primary_site")
        for r in self.resections:
            if r.any_site or (site is not None and site in r.sites):
                self.add_treatment(v.Intervention.PRIMARY_RESECTION, r.ref, r.progressed)
                if raw.get("primary_resected") is False:
                    refs = self.sources.pop("primary_resected", [])
                    del raw["primary_resected"]
                    self.miss(
                        ", ".join([*refs, r.ref]),
                        "Procedure.code",
                        r.label,
                        "conflicting primary_resected: the primary is recorded in place "
                        f"({', '.join(refs)}) and resected ({r.ref})",
                    )
                elif "primary_resected" not in self.conflicted:
                    raw["primary_resected"] = True
                    self.source("primary_resected", r.ref)
            elif site is None:
                self.miss(
                    r.ref,
                    r.element,
                    r.label,
                    "cannot tell whether this resection removed the primary: "
                    "the primary site is not known",
                )
            else:
                self.miss(
                    r.ref,
                    r.element,
                    r.label,
                    f"this operation does not resect a primary of the {site}",
                )
        self.resolve_regimens()
        for code in v.Intervention:
            got = self.treatments.get(code)
            if got is None:
                continue
            raw.setdefault("prior_treatments", []).append(code.value)
            for ref in got.refs:
                self.source("prior_treatments", ref)
            if got.progressed:
                raw.setdefault("progressed_on", []).append(code.value)
                for ref in got.refs:
                    self.source("progressed_on", ref)
        for path, found in self.list_items.items():
            spec = registry().spec(path)
            assert isinstance(spec, ChoiceList)
            raw[path] = [m.value for m in spec.enum if m.value in found]
            for item in raw[path]:
                for ref in found[item]:
                    self.source(path, ref)
        self.resolve_empty_lists(raw)
        for path, dates in self.given_dates.items():
            day, ref = max(dates)
            months = round((self.today - day).days / _MONTH_DAYS, 1)
            raw[path] = int(months) if months == int(months) else months
            self.source(path, ref)
        return raw

    def decide_neoplasm(self) -> tuple[Neoplasm, str]:
        """What the record says about the neoplasm, and what showed it."""
        for kind in (Neoplasm.NEUROENDOCRINE, Neoplasm.NON_NEUROENDOCRINE, Neoplasm.UNCONFIRMED):
            shown = self.neoplasm.get(kind)
            if shown:
                other = self.neoplasm.get(Neoplasm.NON_NEUROENDOCRINE)
                if kind is Neoplasm.NEUROENDOCRINE and other:
                    self.notes.append(
                        f"a cancer that is not neuroendocrine is recorded too ({other[0]}); "
                        "the plan is for the neuroendocrine neoplasm"
                    )
                return kind, shown[0]
        return Neoplasm.NONE, ""

    def resolve_empty_lists(self, raw: dict[str, Any]) -> None:
        """A List saying 'nil known' gives [], unless other resources give items (conflict)."""
        for path, refs in self.empty_lists.items():
            for ref in refs:
                self.source(path, ref)
            items = raw.get(path)
            if not items:
                raw[path] = []
                continue
            given = self.sources.pop(path, [])
            del raw[path]
            self.miss(
                ", ".join(given),
                "List.emptyReason",
                ", ".join(str(x) for x in items),
                f"conflicting {path}: recorded as none ({', '.join(refs)}) and as "
                f"{', '.join(str(x) for x in items)} "
                f"({', '.join(x for x in given if x not in refs)})",
            )

    def resolve_one(self, path: str, claims: Sequence[_Claim]) -> Any:
        values = list(dict.fromkeys(_key(c.value) for c in claims))
        winners: Sequence[_Claim] = claims
        if len(values) > 1 and path == "primary_site":
            narrow = self.refined_site(claims)
            if narrow is not None:
                winners = [c for c in claims if c.value == narrow] or list(claims)
                values = [_key(narrow)]
        if (
            len(values) > 1
            and all(c.observed for c in claims)
            and all(c.when is not None for c in claims)
        ):
            latest = max(c.when for c in claims if c.when is not None)
            recent = [c for c in claims if c.when == latest]
            if len({_key(c.value) for c in recent}) == 1:
                winners, values = recent, [_key(recent[0].value)]
                self.notes.append(f"{path}: the most recent observation is used ({recent[0].ref})")
        if len(values) > 1:
            detail = "; ".join(f"{c.value} ({c.ref})" for c in claims)
            refs = list(dict.fromkeys(c.ref for c in claims))
            shown = ", ".join(str(x) for x in dict.fromkeys(c.value for c in claims))
            self.miss(", ".join(refs), claims[0].element, shown, f"conflicting {path}: {detail}")
            self.conflicted.add(path)
            return None
        for c in winners:
            self.source(path, c.ref)
        return winners[0].value

    def refined_site(self, claims: Sequence[_Claim]) -> str | None:
        """The claimed site refining every other claimed site (ileum within small intestine)."""
        sites = {str(c.value) for c in claims}
        for candidate in sorted(sites):
            others = sites - {candidate}
            if all(
                b in v.Site._value2member_map_
                and candidate in self.fmap.site_refinements.get(v.Site(b), ())
                for b in others
            ):
                return candidate
        return None

    def resolve_regimens(self) -> None:
        used: set[str] = set()
        for regimen in self.fmap.regimens:
            chosen: list[str] = []
            for group in regimen.all_of:
                hit = next((c for c in group if c in self.components), None)
                if hit is None:
                    break
                chosen.append(hit)
            else:
                for name in chosen:
                    used.add(name)
                    got = self.components[name]
                    for ref in got.refs:
                        self.add_treatment(regimen.treatment, ref, got.progressed)
        for name, got in self.components.items():
            if name not in used:
                self.miss(
                    ", ".join(got.refs),
                    "medication[x]",
                    self.component_labels.get(name, name),
                    f"{name} alone completes no regimen of the contract "
                    "(e.g. capecitabine with temozolomide)",
                )


def _norm(coding: el.Coding) -> str:
    return normalize_code(coding[0], coding[1])


def _key(value: Any) -> Any:
    """A comparison key that keeps True apart from 1 and 1.0 apart from '1'."""
    return (type(value).__name__ if isinstance(value, bool | str) else "num", value)


def _short(entry: FhirObservation) -> str:
    field_name = entry.field or entry.row.display
    return {
        "ki67_percent": "Ki-67",
        "labs.platelets_10e9_l": "platelets",
        "labs.neutrophils_10e9_l": "neutrophils",
        "labs.hemoglobin_g_dl": "hemoglobin",
        "labs.bilirubin_mg_dl": "bilirubin",
        "labs.albumin_g_dl": "albumin",
        "labs.creatinine_clearance_ml_min": "creatinine clearance",
        "labs.chromogranin_a_x_uln": "chromogranin A",
        "labs.urine_5hiaa_x_uln": "urinary 5-HIAA",
        "labs.nt_probnp_pg_ml": "NT-proBNP",
        "ecog": "ECOG",
    }.get(field_name, field_name)


def _not_in_table(concept: Any) -> str:
    found = el.codings(concept)
    if not found:
        return "no code: only coded data are read (free text is not interpreted)"
    if len(found) == 1:
        system, code, _ = found[0]
        return f"{el.system_label(system)} {code} is not in the mapping table"
    return "none of its codes is in the mapping table"


def _by_name(
    rules: Sequence[NameRule], exclude: frozenset[str], concepts: Iterable[Any]
) -> NameRule | None:
    best: NameRule | None = None
    for concept in concepts:
        for text in el.concept_texts(concept):
            words = el.words(text)
            if words & exclude:
                continue
            for rule in rules:
                if set(rule.words) <= words and (best is None or len(rule.words) > len(best.words)):
                    best = rule
    return best


def _subject(
    res: Mapping[str, Any], aliases: Mapping[str, tuple[str, str]] | None = None
) -> tuple[str | None, str | None]:
    """(type, id) of the resource's subject (or patient); a fullUrl resolves through aliases."""
    for key in ("subject", "patient"):
        if key in res:
            raw = el.text(el.obj(res.get(key)).get("reference"))
            if raw is not None and aliases and raw.strip() in aliases:
                return aliases[raw.strip()]
            return el.ref_target(res.get(key))
    return None, None


def _unattributed(res: Mapping[str, Any]) -> str | None:
    """Why a resource of a read type cannot be attributed to a patient (None when it can)."""
    if res.get("resourceType") not in _SUBJECT_TYPES:
        return None
    subject = res.get("subject", res.get("patient"))
    if subject is None:
        return "without a subject"
    if el.text(el.obj(subject).get("reference")) is None:
        if el.obj(subject).get("identifier") is not None:
            return "whose subject is given by an identifier only"
        return "whose subject has no reference"
    return None


def _ref(res: Mapping[str, Any], index: int) -> str:
    rid = el.text(res.get("id"))
    return f"{res.get('resourceType')}/{rid if rid else f'#{index}'}"


def case_from_fhir(
    resources: Sequence[Mapping[str, Any]],
    *,
    kb: KnowledgeBase,
    today: dt.date | None = None,
    patient_id: str | None = None,
) -> FhirCase:
    """Read a netboard case from FHIR R4 resources, never guessing.

    Args:
        resources: FHIR resources (see ``resources_from``); each must have a resourceType.
        kb: the knowledge base whose ``fhir`` table drives the mapping.
        today: reference date for the age (default: the current date).
        patient_id: read only this patient's resources; without it the resources must concern
            one patient. Resources of the read types without a subject, or whose subject is
            given only by an identifier, are skipped and counted in ``notes``.

    Returns:
        The case mapping (ready for ``load_case``), its sources, what was not mapped and why,
        and notes on what was ignored.

    Raises:
        KnowledgeBaseError: the knowledge base has no FHIR mapping table.
        CaseError: without ``patient_id``, the resources concern several patients (the
            problem names them).
    """
    fmap = kb.fhir
    if fmap is None:
        raise KnowledgeBaseError(
            [Problem("fhir.yaml", "the knowledge base has no FHIR mapping table")]
        )
    aliases: Mapping[str, tuple[str, str]] = getattr(resources, "aliases", {})
    reader = _Reader(fmap, today or dt.date.today(), aliases)
    chosen = _select_patient(resources, patient_id, reader)
    for _, res in chosen:
        if res.get("resourceType") == "Medication":
            mid = el.text(res.get("id"))
            if mid:
                reader.medications[mid] = res
    for _, res in chosen:
        if res.get("resourceType") == "Condition":
            role, _ = reader.condition_role(res)
            cid = el.text(res.get("id"))
            if role == "primary" and cid:
                reader.primary_ids.add(cid)
    for index, res in chosen:
        rtype = res.get("resourceType")
        ref = _ref(res, index)
        if rtype == "Patient":
            reader.patient(res, ref)
        elif rtype == "Condition":
            reader.condition(res, ref)
        elif rtype == "Observation":
            reader.observation(res, ref)
        elif rtype in _MEDICATION_TYPES:
            reader.medication(res, ref, str(rtype))
        elif rtype == "Procedure":
            reader.procedure(res, ref)
        elif rtype == "List":
            reader.list_resource(res, ref)
        elif rtype == "OperationOutcome":
            reader.notes.append(f"{ref} ignored: an OperationOutcome ({_outcome_text(res)})")
        elif rtype != "Medication":
            reader.notes.append(f"{ref} not read: netboard does not read {rtype} resources")
    raw = reader.resolve()
    neoplasm, detail = reader.decide_neoplasm()
    case = _validated(raw, reader)
    sources = {k: reader.sources[k] for k in _order(reader.sources)}
    return FhirCase(
        case=case,
        sources=sources,
        unmapped=reader.unmapped,
        notes=reader.notes,
        neoplasm=neoplasm,
        neoplasm_detail=detail,
    )


def _outcome_text(res: Mapping[str, Any]) -> str:
    texts = [
        el.text(el.obj(i).get("diagnostics"))
        or next(iter(el.concept_texts(el.obj(i).get("details"))), None)
        for i in el.items(res.get("issue"))
    ]
    shown = [t for t in texts if t]
    return "; ".join(shown)[:200] if shown else "no details"


def _order(paths: Iterable[str]) -> list[str]:
    order = {p: i for i, p in enumerate(field_paths())}
    return sorted(paths, key=lambda p: order.get(p, len(order)))


def _select_patient(
    resources: Sequence[Mapping[str, Any]], patient_id: str | None, reader: _Reader
) -> list[tuple[int, Mapping[str, Any]]]:
    indexed = [(i, r) for i, r in enumerate(resources) if isinstance(r, Mapping)]
    aliases = reader.aliases
    target = patient_id
    if target is None:
        ids = {el.text(r.get("id")) for _, r in indexed if r.get("resourceType") == "Patient"}
        ids.discard(None)
        for _, r in indexed:
            kind, sid = _subject(r, aliases)
            if sid is not None and kind in (None, "Patient"):
                ids.add(sid)
        if len(ids) > 1:
            shown = ", ".join(sorted(str(i) for i in ids))
            raise CaseError(
                [
                    Problem(
                        "patient",
                        f"the resources concern several patients ({shown}); "
                        "name one with --patient ID",
                    )
                ]
            )
        target = next(iter(ids), None)
    chosen: list[tuple[int, Mapping[str, Any]]] = []
    skipped = 0
    unattributed: dict[str, int] = {}
    found_patient = False
    for i, r in indexed:
        if r.get("resourceType") == "Patient":
            if target is None or el.text(r.get("id")) == target:
                if found_patient:
                    reader.notes.append(f"{_ref(r, i)} ignored: a second Patient resource")
                    continue
                found_patient = True
                chosen.append((i, r))
            else:
                skipped += 1
            continue
        why = _unattributed(r)
        if why is not None:
            unattributed[why] = unattributed.get(why, 0) + 1
            continue
        kind, sid = _subject(r, aliases)
        if (
            target is not None
            and sid is not None
            and (kind not in (None, "Patient") or sid != target)
        ):
            skipped += 1
            continue
        chosen.append((i, r))
    if skipped:
        reader.notes.append(f"{skipped} resource(s) of another patient or subject ignored")
    for why, count in unattributed.items():
        reader.miss(
            "(input)",
            "subject",
            f"{count} resource(s)",
            f"{count} resource(s) {why}: not read, since they cannot be attributed to this patient",
        )
    if patient_id is not None and not found_patient:
        reader.miss(
            f"Patient/{patient_id}",
            "Patient",
            patient_id,
            "no Patient resource with this id: no age, sex or id",
        )
    return chosen


def _validated(raw: dict[str, Any], reader: _Reader) -> dict[str, Any]:
    """Contract form, in field order; anything ``load_case`` refuses is dropped and reported."""
    flat = {path: raw[path] for path in _order(raw)}
    for _ in range(len(field_paths()) + 1):
        case = nest(flat)
        try:
            load_case(case)
            return case
        except CaseError as exc:
            for problem in exc.problems:
                name = problem.field.split("[", 1)[0]
                refs = reader.sources.pop(name, [])
                value = flat.pop(name, None)
                reader.miss(", ".join(refs) or "(case)", name, str(value), problem.message)
    return {}


def _age_words(days: int) -> str:
    """An age in days in words: ``3 weeks``, ``14 months``, ``21 years``."""
    if days < 60:
        return f"{days // 7} weeks" if days >= 14 else f"{days} days"
    if days < 730:
        return f"{round(days / _MONTH_DAYS)} months"
    return f"{days // 365} years"
