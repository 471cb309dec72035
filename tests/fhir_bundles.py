"""Write a realistic FHIR R4 Bundle (mCODE style) for any contract case, from the mapping table.

``bundle_for_case`` runs the knowledge base's FHIR table (kb/fhir.yaml) in reverse: for each
case value it looks for the row that gives exactly that value and writes the resource that
row reads (an mCODE primary cancer condition with ICD-10-CM code, SNOMED body site and the
histology extension; secondary cancer conditions; LOINC observations; medication requests;
procedures; netboard local-code observations; List resources with emptyReason for empty
lists). A value no row can give is left out and, when a ``skipped`` list is passed, recorded
there as ``(field, value)``.

``prefetch_for`` splits such a bundle into CDS Hooks prefetch values as an EHR would fill them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs

from netboard.fhir.table import CodeTable, FhirCode, FhirMap, NameRule
from netboard.kb import KnowledgeBase, load_kb

#: The FHIR base of the EHR that ``prefetch_for`` plays (search Bundles need absolute URLs).
EHR_BASE = "https://ehr.example.org/fhir"

#: The reference date of generated bundles (the age is written as a birth date before it).
TODAY = dt.date(2025, 1, 15)

_SYSTEM_PREFERENCE = (
    "http://hl7.org/fhir/sid/icd-10-cm",
    "http://snomed.info/sct",
    "http://terminology.hl7.org/CodeSystem/icd-o-3",
    "http://loinc.org",
    "http://www.nlm.nih.gov/research/umls/rxnorm",
)
_PREFERRED = {
    ("primary_site", "pancreas"): "C25.4",
    ("differentiation", "well"): "1286768001",
    ("differentiation", "poor"): "1286767006",
}


def _rank(row: FhirCode) -> tuple[int, int, int, int, str]:
    system = _SYSTEM_PREFERENCE.index(row.system) if row.system in _SYSTEM_PREFERENCE else 9
    # A code that says "neuroendocrine" first: a site-only cancer code leaves the NEN unconfirmed.
    vague = row.neoplasm not in (None, "neuroendocrine")
    return (vague, row.prefix, not row.verified, system, row.code)


def _exact(table: CodeTable, wanted: Mapping[str, Any], **where: Any) -> FhirCode | None:
    """The preferred row whose fields are exactly ``wanted`` (and matching ``where`` attributes)."""
    target = set(wanted.items())
    rows = [
        r
        for r in table.rows
        if r.unmapped is None
        and set(r.sets) == target
        and all(getattr(r, k) == x for k, x in where.items())
    ]
    if not rows:
        return None
    for (path, value), code in _PREFERRED.items():
        if wanted == {path: value}:
            for r in rows:
                if r.code == code:
                    return r
    return min(rows, key=_rank)


def _coding(row: FhirCode) -> dict[str, Any]:
    return {"system": row.system, "code": row.code, "display": row.display}


def _concept(row: FhirCode) -> dict[str, Any]:
    return {"coding": [_coding(row)], "text": row.display}


class _Writer:
    def __init__(self, fmap: FhirMap, case_id: str, today: dt.date, skipped: list[Any]) -> None:
        self.fmap = fmap
        self.pid = case_id
        self.today = today
        self.skipped = skipped
        self.resources: list[dict[str, Any]] = []
        self.primary_id: str | None = None

    def skip(self, path: str, value: Any) -> None:
        self.skipped.append((path, value))

    def local(self, code: str) -> dict[str, Any]:
        """The concept of a row of the netboard local code system (lists, procedures)."""
        for table in (self.fmap.lists, self.fmap.procedures):
            for row in table.rows:
                if row.system == self.fmap.local_system and row.code == code:
                    return _concept(row)
        raise KeyError(code)

    def add(self, resource: dict[str, Any]) -> dict[str, Any]:
        resource.setdefault("id", f"{resource['resourceType'].lower()}-{len(self.resources)}")
        if resource["resourceType"] != "Patient":
            resource["subject"] = {"reference": f"Patient/{self.pid}"}
        self.resources.append(resource)
        return resource

    def when(self, days_before: int = 7) -> str:
        return (self.today - dt.timedelta(days=days_before)).isoformat()

    # --- patient --------------------------------------------------------------------------

    def patient(self, case: Mapping[str, Any]) -> None:
        resource: dict[str, Any] = {"resourceType": "Patient", "id": self.pid}
        if case.get("sex") is not None:
            resource["gender"] = case["sex"]
        age = case.get("age_years")
        if age is not None:
            if age != int(age):
                self.skip("age_years", age)
            else:
                year = self.today.year - int(age)
                day = self.today.day
                if (self.today.month, day) == (2, 29):
                    day = 28
                resource["birthDate"] = dt.date(year, self.today.month, day).isoformat()
        self.add(resource)

    # --- the primary ------------------------------------------------------------------------

    def primary(self, case: Mapping[str, Any]) -> None:
        site = case.get("primary_site")
        region = case.get("pancreas_region")
        diff = case.get("differentiation")
        grade = case.get("grade")
        complications = case.get("primary_complications") or []
        if not any((site, region, diff, grade, complications)):
            return
        conds = self.fmap.conditions
        code = None
        if site is not None:
            code = _exact(conds, {"primary_site": site}, role="primary")
        if code is None:
            code = _exact(conds, {}, role="primary", system="http://hl7.org/fhir/sid/icd-10-cm")
        resource: dict[str, Any] = {
            "resourceType": "Condition",
            "id": "primary-net",
            "meta": {"profile": [self.fmap.profiles["primary_cancer_condition"]]},
            "clinicalStatus": _status("condition-clinical", "active"),
            "verificationStatus": _status("condition-ver-status", "confirmed"),
            "category": [_category("problem-list-item")],
            "code": _concept(code) if code else {"text": "Neuroendocrine tumour"},
            "recordedDate": self.when(120),
        }
        if site is not None:
            wanted = {"primary_site": site}
            if region is not None:
                wanted["pancreas_region"] = region
            body = _exact(self.fmap.primary_body_sites, wanted)
            if body is None and region is not None:
                self.skip("pancreas_region", region)
                body = _exact(self.fmap.primary_body_sites, {"primary_site": site})
            if body is not None:
                resource["bodySite"] = [_concept(body)]
            elif code is None or dict(code.sets).get("primary_site") != site:
                self.skip("primary_site", site)
        elif region is not None:
            self.skip("pancreas_region", region)
        morph = None
        if diff is not None and grade is not None:
            morph = _exact(self.fmap.morphology, {"differentiation": diff, "grade": grade})
        grade_written = morph is not None
        if morph is None and diff is not None:
            morph = _exact(self.fmap.morphology, {"differentiation": diff})
        if morph is not None:
            resource["extension"] = [
                {"url": self.fmap.extensions["histology"], "valueCodeableConcept": _concept(morph)}
            ]
        elif diff is not None:
            self.skip("differentiation", diff)
        self.add(resource)
        self.primary_id = resource["id"]
        if grade is not None and not grade_written:
            self.grade(grade)
        for item in complications:
            self.complication(item)

    def grade(self, grade: str) -> None:
        for (_system, _code), obs in self.fmap.observations.items():
            if obs.field == "grade" and obs.values is not None:
                answer = next((r for r in obs.values.rows if r.value == grade), None)
                if answer is None:
                    continue
                self.add(
                    {
                        "resourceType": "Observation",
                        "status": "final",
                        "category": [_obs_category("laboratory")],
                        "code": _concept(obs.row),
                        "effectiveDateTime": self.when(110),
                        "valueCodeableConcept": _concept(answer),
                        "focus": [{"reference": f"Condition/{self.primary_id}"}],
                    }
                )
                return
        self.skip("grade", grade)

    def complication(self, item: str) -> None:
        row = _exact(self.fmap.conditions, {"primary_complications": item}, role="other")
        if row is None or self.primary_id is None:
            self.skip("primary_complications", item)
            return
        self.add(
            {
                "resourceType": "Condition",
                "clinicalStatus": _status("condition-clinical", "active"),
                "verificationStatus": _status("condition-ver-status", "confirmed"),
                "category": [_category("problem-list-item")],
                "code": _concept(row),
                "extension": [
                    {
                        "url": self.fmap.extensions["due_to"],
                        "valueReference": {"reference": f"Condition/{self.primary_id}"},
                    }
                ],
            }
        )

    # --- other conditions ---------------------------------------------------------------------

    def condition(self, path: str, value: str, *, role: str) -> bool:
        row = _exact(self.fmap.conditions, {path: value}, role=role)
        if row is None:
            return False
        resource: dict[str, Any] = {
            "resourceType": "Condition",
            "clinicalStatus": _status("condition-clinical", "active"),
            "verificationStatus": _status("condition-ver-status", "confirmed"),
            "category": [_category("problem-list-item")],
            "code": _concept(row),
        }
        if role == "secondary":
            resource["meta"] = {"profile": [self.fmap.profiles["secondary_cancer_condition"]]}
            if self.primary_id is not None:
                resource["extension"] = [
                    {
                        "url": "http://hl7.org/fhir/us/mcode/StructureDefinition/"
                        "mcode-related-primary-cancer-condition",
                        "valueReference": {"reference": f"Condition/{self.primary_id}"},
                    }
                ]
        self.add(resource)
        return True

    def morphology_observation(self, path: str, value: str) -> bool:
        row = _exact(self.fmap.morphology, {path: value})
        obs = next((o for o in self.fmap.observations.values() if o.kind == "morphology"), None)
        if row is None or obs is None:
            return False
        self.add(
            {
                "resourceType": "Observation",
                "status": "final",
                "category": [_obs_category("laboratory")],
                "code": _concept(obs.row),
                "effectiveDateTime": self.when(110),
                "valueCodeableConcept": _concept(row),
            }
        )
        return True

    # --- observations -------------------------------------------------------------------------

    def observation(self, path: str, value: Any) -> None:
        for obs in self.fmap.observations.values():
            if obs.field != path or obs.row.unmapped is not None:
                continue
            resource: dict[str, Any] = {
                "resourceType": "Observation",
                "status": "final",
                "category": [_obs_category(_category_of(path))],
                "code": _concept(obs.row),
                "effectiveDateTime": self.when(),
            }
            if obs.kind == "quantity" and obs.component is not None:
                rule = obs.units[0]
                system, code = obs.component
                resource["component"] = [
                    {
                        "code": {"coding": [{"system": system, "code": code}]},
                        "valueQuantity": _quantity(value / rule.factor, rule.unit),
                    }
                ]
            elif obs.kind == "quantity":
                rule = obs.units[0]
                resource["valueQuantity"] = _quantity(value / rule.factor, rule.unit)
            elif obs.kind == "integer":
                resource["valueInteger"] = int(value)
            elif obs.kind == "boolean":
                resource["valueBoolean"] = bool(value)
            elif obs.kind == "ratio_to_uln":
                unit = "ng/mL" if "chromogranin" in path else "mg/(24.h)"
                resource["valueQuantity"] = _quantity(value * 100, unit)
                resource["referenceRange"] = [{"high": _quantity(100, unit)}]
            elif obs.kind == "coded" and obs.values is not None:
                answer = next(
                    (r for r in sorted(obs.values.rows, key=_rank) if r.value == value), None
                )
                if answer is None:
                    continue
                resource["valueCodeableConcept"] = _concept(answer)
            else:
                continue
            self.add(resource)
            return
        self.skip(path, value)

    # --- treatments ---------------------------------------------------------------------------

    def medication(self, concept: dict[str, Any], progressed: bool) -> None:
        resource: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "status": "stopped" if progressed else "completed",
            "intent": "order",
            "medicationCodeableConcept": concept,
            "authoredOn": self.when(200),
        }
        if progressed:
            reason = min(self.fmap.progression_reasons.rows, key=_rank)
            resource["statusReason"] = _concept(reason)
        self.add(resource)

    def drug(
        self, *, treatment: str | None = None, component: str | None = None
    ) -> dict[str, Any] | None:
        rows = [
            r
            for r in self.fmap.medications.rows
            if (treatment and r.treatment == treatment) or (component and r.component == component)
        ]
        if rows:
            return _concept(min(rows, key=_rank))
        rule = next(
            (
                n
                for n in self.fmap.medication_names
                if (treatment and n.treatment == treatment)
                or (component and n.component == component)
            ),
            None,
        )
        return {"text": " ".join(rule.words)} if rule else None

    def treatment(self, code: str, progressed: bool, case: Mapping[str, Any]) -> None:
        concept = self.drug(treatment=code)
        if concept is not None:
            self.medication(concept, progressed)
            return
        regimen = next((r for r in self.fmap.regimens if r.treatment == code), None)
        if regimen is not None:
            for group in regimen.all_of:
                part = self.drug(component=group[0])
                assert part is not None, f"no row gives component {group[0]}"
                self.medication(part, progressed)
            return
        if code == "primary_resection":
            if not self.resection(case, progressed):
                self.skip("prior_treatments", code)
            return
        procedure = self.procedure_for(code)
        if procedure is None:
            self.skip("prior_treatments", code)
            return
        resource: dict[str, Any] = {
            "resourceType": "Procedure",
            "status": "completed",
            "code": procedure,
            "performedDateTime": self.when(300),
        }
        if progressed:
            resource["outcome"] = self.progression()
        self.add(resource)

    def months_since(self, code: str, months: float) -> None:
        """The last dose of a treatment, ``months`` before the reference date."""
        day = self.today - dt.timedelta(days=round(months * 30.4375))
        concept = self.drug(treatment=code)
        if concept is not None:
            self.add(
                {
                    "resourceType": "MedicationAdministration",
                    "status": "completed",
                    "medicationCodeableConcept": concept,
                    "effectiveDateTime": day.isoformat(),
                }
            )
            return
        procedure = self.procedure_for(code)
        if procedure is None:
            self.skip(f"months_since.{code}", months)
            return
        self.add(
            {
                "resourceType": "Procedure",
                "status": "completed",
                "code": procedure,
                "performedDateTime": day.isoformat(),
            }
        )

    def progression(self) -> dict[str, Any]:
        return _concept(min(self.fmap.progression_reasons.rows, key=_rank))

    def procedure_for(self, code: str) -> dict[str, Any] | None:
        rows = [r for r in self.fmap.procedures.rows if r.treatment == code]
        if rows:
            return _concept(min(rows, key=_rank))
        rule = _rule(self.fmap.procedure_names, lambda n: n.treatment == code and not n.sets)
        return {"text": _phrase(rule)} if rule else None

    def resection(self, case: Mapping[str, Any], progressed: bool = False) -> bool:
        site = case.get("primary_site")
        rows = [r for r in self.fmap.procedures.rows if r.treatment == "primary_resection"]
        row = next(
            (r for r in sorted(rows, key=_rank) if site in r.sites and not r.sets),
            None,
        )
        concept: dict[str, Any] | None = _concept(row) if row is not None else None
        if concept is None and site is not None:
            rule = _rule(
                self.fmap.procedure_names,
                lambda n: n.treatment == "primary_resection" and site in n.sites and not n.sets,
            )
            concept = {"text": _phrase(rule)} if rule is not None else None
        if concept is None:
            any_site = next((r for r in rows if r.any_site and not r.sets), None)
            if any_site is None:
                return False
            concept = _concept(any_site)
        resource: dict[str, Any] = {
            "resourceType": "Procedure",
            "status": "completed",
            "code": concept,
            "performedDateTime": self.when(300),
        }
        if self.primary_id:
            resource["reasonReference"] = [{"reference": f"Condition/{self.primary_id}"}]
        if progressed:
            resource["outcome"] = self.progression()
        self.add(resource)
        return True

    def empty_list(self, path: str) -> None:
        row = next((r for r in self.fmap.lists.rows if r.field == path), None)
        nil = next((r for r in self.fmap.list_empty_reasons.rows if r.unmapped is None), None)
        if row is None or nil is None:
            self.skip(path, [])
            return
        self.add(
            {
                "resourceType": "List",
                "status": "current",
                "mode": "snapshot",
                "title": row.display,
                "code": _concept(row),
                "date": f"{self.today.isoformat()}T08:00:00Z",
                "emptyReason": _concept(nil),
            }
        )

    def comorbidity(self, item: str) -> None:
        if self.condition("comorbidities", item, role="other"):
            return
        rule = _rule(
            self.fmap.procedure_names,
            lambda n: n.treatment is None and ("comorbidities", item) in n.sets,
        )
        if rule is None:
            self.skip("comorbidities", item)
            return
        self.add(
            {
                "resourceType": "Procedure",
                "status": "completed",
                "code": {"text": _phrase(rule)},
                "performedDateTime": self.when(400),
            }
        )


def _rule(rules: Iterable[NameRule], ok: Any) -> NameRule | None:
    found = [n for n in rules if ok(n)]
    return min(found, key=lambda n: (len(n.words), n.words)) if found else None


def _phrase(rule: NameRule) -> str:
    return " ".join(rule.words).capitalize()


def _quantity(value: float, unit: str) -> dict[str, Any]:
    amount = round(value, 6)
    return {
        "value": int(amount) if amount == int(amount) else amount,
        "unit": unit,
        "system": "http://unitsofmeasure.org",
        "code": unit,
    }


def _status(kind: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": f"http://terminology.hl7.org/CodeSystem/{kind}", "code": code}]}


def _category(code: str) -> dict[str, Any]:
    return {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": code}
        ]
    }


def _obs_category(code: str) -> dict[str, Any]:
    return {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": code}
        ]
    }


def _category_of(path: str) -> str:
    if path in ("ecog", "disease_status", "pregnant"):
        return "survey" if path == "ecog" else "exam"
    return "laboratory"


#: Case fields written as Observations (a coded, quantity or boolean row of the table).
OBSERVED = (
    "ki67_percent",
    "mitoses_per_2mm2",
    "sstr_imaging",
    "fdg_pet",
    "liver_tumor_burden_percent",
    "liver_resectable",
    "liver_resectable_fraction_percent",
    "liver_distribution",
    "disease_status",
    "months_stable",
    "ecog",
    "pregnant",
    "primary_size_mm",
    "resection_margin",
    "gastric_type",
    "hereditary_syndrome",
)
LIST_FIELDS = (
    "metastatic_sites",
    "prior_treatments",
    "progressed_on",
    "comorbidities",
    "primary_complications",
)


def bundle_for_case(
    case: Mapping[str, Any],
    *,
    kb: KnowledgeBase | None = None,
    today: dt.date | None = None,
    skipped: list[Any] | None = None,
) -> dict[str, Any]:
    """A FHIR R4 collection Bundle saying what ``case`` says, as far as the table allows.

    Args:
        case: a contract-v1 case (a mapping as in the vignettes).
        kb: the knowledge base whose FHIR table is run in reverse (default: packaged).
        today: the reference date (default ``TODAY``, 2025-01-15); the birth date is written so
            that the age holds on it, so read the bundle back with the same date.
        skipped: when given, receives ``(field, value)`` for every value no row can express.
    """
    today = TODAY if today is None else today
    fmap = (kb or load_kb()).fhir
    assert fmap is not None
    gaps: list[Any] = [] if skipped is None else skipped
    w = _Writer(fmap, str(case.get("id") or "example-patient"), today, gaps)
    w.patient(case)
    w.primary(case)
    syndrome = case.get("functional_syndrome")
    if syndrome is not None and not (
        w.condition("functional_syndrome", syndrome, role="other")
        or w.morphology_observation("functional_syndrome", syndrome)
    ):
        w.observation("functional_syndrome", syndrome)
    for site in case.get("metastatic_sites") or []:
        if not w.condition("metastatic_sites", site, role="secondary"):
            w.skip("metastatic_sites", site)
    for path in OBSERVED:
        if case.get(path) is not None:
            w.observation(path, case[path])
    for name, value in (case.get("labs") or {}).items():
        if value is not None:
            w.observation(f"labs.{name}", value)
    prior = list(case.get("prior_treatments") or [])
    progressed = set(case.get("progressed_on") or [])
    resected = case.get("primary_resected")
    if resected is False or (resected is True and "primary_resection" not in prior):
        # Without a resection among the treatments, the fact itself is written.
        w.observation("primary_resected", resected)
    for code in prior:
        w.treatment(code, code in progressed, case)
    for name, months in (case.get("months_since") or {}).items():
        if months is not None:
            w.months_since(name, months)
    for code in sorted(progressed - set(prior)):
        w.skip("progressed_on", code)
    for item in case.get("comorbidities") or []:
        w.comorbidity(item)
    for path in LIST_FIELDS:
        if case.get(path) == []:
            w.empty_list(path)
    written = {"id", "age_years", "sex", "primary_site", "pancreas_region", "differentiation"}
    written |= {"grade", "functional_syndrome", "labs", "primary_resected", *OBSERVED}
    written |= set(LIST_FIELDS) | {"months_since"}
    for path, value in case.items():
        if value is not None and path not in written:
            w.skip(path, value)
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"netboard:{w.pid}")
    return {
        "resourceType": "Bundle",
        "id": f"bundle-{w.pid}"[:64],
        "type": "collection",
        "timestamp": f"{today.isoformat()}T09:00:00Z",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid5(namespace, r['resourceType'] + '/' + r['id'])}",
                "resource": r,
            }
            for r in w.resources
        ],
    }


def prefetch_for(bundle: Mapping[str, Any], templates: Mapping[str, str]) -> dict[str, Any]:
    """Split ``bundle`` into CDS Hooks prefetch values, as an EHR would fill ``templates``.

    A read template (``Patient/{{context.patientId}}``) gets the one resource of that type (or
    None); a search template (``Condition?patient=...``) gets a searchset Bundle of the
    resources of that type, keeping only those whose ``code`` matches a ``code=`` filter
    (``system|code`` or a bare code) when the template has one.
    """
    resources = [
        e["resource"]
        for e in bundle.get("entry", [])
        if isinstance(e, Mapping) and isinstance(e.get("resource"), Mapping)
    ]
    out: dict[str, Any] = {}
    for key, template in templates.items():
        path, _, query = template.partition("?")
        rtype = path.split("/", 1)[0]
        of_type = [r for r in resources if r.get("resourceType") == rtype]
        if not query:
            out[key] = of_type[0] if of_type else None
            continue
        codes = [c for v in parse_qs(query).get("code", []) for c in v.split(",") if c]
        if codes:
            of_type = [r for r in of_type if _matches(r.get("code"), codes)]
        out[key] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(of_type),
            "entry": [
                {
                    "fullUrl": f"{EHR_BASE}/{r['resourceType']}/{r.get('id', '')}",
                    "resource": r,
                    "search": {"mode": "match"},
                }
                for r in of_type
            ],
        }
    return out


def _matches(concept: Any, tokens: list[str]) -> bool:
    codings = concept.get("coding", []) if isinstance(concept, Mapping) else []
    for coding in codings:
        if not isinstance(coding, Mapping):
            continue
        system, code = coding.get("system"), coding.get("code")
        for token in tokens:
            want_system, bar, want_code = token.rpartition("|")
            if code == want_code and (not bar or want_system in ("", system)):
                return True
    return False
