"""Knowledge-base model and loader: YAML files in, typed frozen values out.

Every file is checked as it is read: unknown keys, unknown contract codes,
malformed conditions, unknown fields in conditions, duplicate ids, rules
without evidence and evidence ids that resolve to no reference are all
reported together as ``Problem``s (file and key named).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from importlib.resources.abc import Traversable
from typing import Any, TypeVar

from netboard import vocab as v
from netboard.case import FIELDS, LAB_FIELDS, Choice, ChoiceList, Flag, Number, Spec, Text
from netboard.conditions import (
    LIST_OPERATORS,
    NUMERIC_OPERATORS,
    PRESENCE_OPERATORS,
    Compare,
    Condition,
    ConditionSyntaxError,
    EligibilityIs,
    Fact,
    Planned,
    parse_condition,
    walk,
)
from netboard.errors import Problem

E = TypeVar("E", bound=StrEnum)


@dataclass(frozen=True, slots=True)
class Words:
    """A computed field taking one of a fixed set of words (from the KB itself)."""

    words: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    id: str
    codes: tuple[v.Intervention, ...]
    phase: v.Phase
    status: v.Status
    step: int
    when: Condition
    rationale: str
    evidence: tuple[str, ...]
    on_unknown: str = "branch"
    scope: str = "phase"
    overrides_guards: bool = False
    unknown_blocks: bool = True
    dossier: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRule:
    id: str
    code: v.AlertCode
    severity: v.Severity
    when: Condition
    message: str
    evidence: tuple[str, ...]
    dossier: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CriterionDef:
    name: str
    when: Condition
    detail: str
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class EligibilitySet:
    name: v.EligibilityName
    title: str
    note: str
    criteria: tuple[CriterionDef, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DoseDef:
    code: v.Intervention
    text: str
    evidence: tuple[str, ...]
    when: Condition | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitoringDef:
    id: str
    what: str
    interval: str
    reason: str
    evidence: tuple[str, ...]
    when: Condition


@dataclass(frozen=True, slots=True, kw_only=True)
class DisagreementDef:
    id: str
    topic: str
    text: str
    evidence: tuple[str, ...]
    when: Condition


@dataclass(frozen=True, slots=True, kw_only=True)
class FactDef:
    name: str
    label: str
    when: Condition


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldInfo:
    label: str
    why: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferenceDef:
    id: str
    citation: str
    year: int | None
    kind: v.ReferenceKind
    url: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteInfo:
    group: str
    label: str
    region: str
    portal_drained: bool
    thoracic: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Grading:
    """Ki-67 and mitotic cut-offs: ``g1_below`` and ``g2_upto`` (inclusive)."""

    ki67_g1_below: float | None
    ki67_g2_upto: float | None
    mitoses_g1_below: float
    mitoses_g2_upto: float
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class KnowledgeBase:
    version: str
    released: str
    covers: tuple[str, ...]
    about: Mapping[str, Any]
    references: Mapping[str, ReferenceDef]
    facts: Mapping[str, FactDef]
    fields: Mapping[str, FieldInfo]
    sites: Mapping[v.Site, SiteInfo]
    grading: Mapping[str, Grading]
    childbearing_age_limit: float
    rules: tuple[Rule, ...]
    alerts: tuple[AlertRule, ...]
    eligibility: tuple[EligibilitySet, ...]
    dosing: tuple[DoseDef, ...]
    monitoring: tuple[MonitoringDef, ...]
    disagreements: tuple[DisagreementDef, ...]
    labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    fhir: FhirMap | None = None


#: Keys of the manifest's ``about`` block: the source attributes an EHR shows for a decision
#: support intervention (ONC HTI-1, 45 CFR 170.315(b)(11)) and the FDA CDS labelling items.
ABOUT_KEYS = (
    "developer",
    "funding",
    "intended_use",
    "intended_users",
    "population",
    "not_for",
    "inputs",
    "homepage",
)
#: HTI-1 "use of ... as an input variable" flags, each answered true or false.
HTI1_INPUTS = (
    "race",
    "ethnicity",
    "language",
    "sexual_orientation",
    "gender_identity",
    "sex",
    "date_of_birth",
    "social_determinants_of_health",
    "health_status_assessments",
)


# --- computed fields: values the engine derives, usable in conditions ----------------------

#: Computed fields and the case fields each is derived from (for missing_information).
COMPUTED_SOURCES: dict[str, tuple[str, ...]] = {
    "grade": ("ki67_percent", "mitoses_per_2mm2", "grade", "primary_site"),
    "who_2019": ("differentiation", "ki67_percent", "mitoses_per_2mm2", "grade", "primary_site"),
    "differentiation_inferred": (
        "differentiation",
        "ki67_percent",
        "mitoses_per_2mm2",
        "grade",
        "primary_site",
    ),
    "site_group": ("primary_site",),
    "gut_region": ("primary_site",),
    "portal_drained": ("primary_site",),
    "thoracic_primary": ("primary_site",),
    "pregnancy_status": ("pregnant",),
    "grade_discordant": ("grade", "ki67_percent", "mitoses_per_2mm2"),
    "treatments_received": ("prior_treatments",),
    "treatments_failed": ("progressed_on",),
}


def computed_specs(sites: Mapping[v.Site, SiteInfo]) -> dict[str, Spec | Words]:
    return {
        "grade": Choice(v.Grade),
        "who_2019": Choice(v.Who2019),
        "differentiation_inferred": Choice(v.Differentiation),
        "site_group": Words(tuple(sorted({s.group for s in sites.values()}))),
        "gut_region": Words(tuple(sorted({s.region for s in sites.values()}))),
        "portal_drained": Flag(),
        "thoracic_primary": Flag(),
        "pregnancy_status": Words(("pregnant", "not_pregnant")),
        "grade_discordant": Flag(),
        "treatments_received": ChoiceList(v.Intervention),
        "treatments_failed": ChoiceList(v.Intervention),
    }


# --- parsing helpers ------------------------------------------------------------------------


class _Reader:
    """Collects problems while reading one file's entries."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def fail(self, where: str, message: str) -> None:
        self.problems.append(Problem(f"{self.file}:{where}", message))

    def mapping(
        self, data: Any, where: str, allowed: Iterable[str], required: Iterable[str]
    ) -> bool:
        if not isinstance(data, Mapping):
            self.fail(where, f"expected a mapping, got {type(data).__name__}")
            return False
        allowed_set = set(allowed)
        for key in data:
            if key not in allowed_set:
                self.fail(
                    f"{where}.{key}", f"unknown key; allowed: {', '.join(sorted(allowed_set))}"
                )
        ok = True
        for key in required:
            if key not in data:
                self.fail(where, f"missing required key {key!r}")
                ok = False
        return ok

    def enum(self, enum: type[E], value: Any, where: str) -> E | None:
        if isinstance(value, str) and value in enum._value2member_map_:
            return enum(value)
        self.fail(where, f"{value!r} is not a {enum.__name__} code")
        return None

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(where, "expected non-empty text")
            return ""
        return " ".join(value.split())

    def ids(self, value: Any, where: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            self.fail(where, "expected a list of ids")
            return ()
        return tuple(value)

    def condition(self, value: Any, where: str) -> Condition:
        try:
            return parse_condition(value, where)
        except ConditionSyntaxError as exc:
            for p in exc.problems:
                self.fail(p.field, p.message)
            return parse_condition({"all": [{"field": "id", "is": "__invalid__"}]})


def _entries(data: Any, reader: _Reader) -> list[Any]:
    if not isinstance(data, list):
        reader.fail("(top)", "expected a list of entries")
        return []
    return data


def parse_kb(files: Mapping[str, Any]) -> tuple[KnowledgeBase | None, list[Problem]]:
    """Build a ``KnowledgeBase`` from parsed YAML documents keyed by relative path."""
    problems: list[Problem] = []

    def reader(name: str) -> _Reader:
        r = _Reader(name)
        readers.append(r)
        return r

    readers: list[_Reader] = []

    # manifest
    r = reader("manifest.yaml")
    man = files.get("manifest.yaml") or {}
    r.mapping(
        man,
        "(top)",
        ["version", "released", "covers", "contract_version", "about"],
        ["version", "released"],
    )
    version = str(man.get("version", ""))
    released = man.get("released", "")
    if isinstance(released, dt.date):
        released = released.isoformat()
    covers = tuple(str(x) for x in man.get("covers", []) or [])
    about = man.get("about") or {}
    if r.mapping(about, "about", list(ABOUT_KEYS), ["developer", "funding", "intended_use"]):
        inputs = about.get("inputs") or {}
        if r.mapping(inputs, "about.inputs", list(HTI1_INPUTS), list(HTI1_INPUTS)):
            for key, used in inputs.items():
                if not isinstance(used, bool):
                    r.fail(f"about.inputs.{key}", "expected true or false")
    if str(man.get("contract_version", v.CONTRACT_VERSION)) != v.CONTRACT_VERSION:
        r.fail("contract_version", f"knowledge base targets contract {man.get('contract_version')}")

    # references
    r = reader("references.yaml")
    references: dict[str, ReferenceDef] = {}
    for i, e in enumerate(_entries(files.get("references.yaml"), r)):
        w = f"[{i}]"
        if not r.mapping(
            e, w, ["id", "citation", "year", "kind", "url", "note"], ["id", "citation", "kind"]
        ):
            continue
        rid = str(e["id"])
        if rid in references:
            r.fail(w, f"duplicate reference id {rid!r}")
        kind = r.enum(v.ReferenceKind, e["kind"], f"{w}.kind")
        year = e.get("year")
        if year is not None and (not isinstance(year, int) or isinstance(year, bool)):
            r.fail(f"{w}.year", "expected a year")
            year = None
        if kind is not None:
            references[rid] = ReferenceDef(
                id=rid,
                citation=r.text(e["citation"], f"{w}.citation"),
                year=year,
                kind=kind,
                url=e.get("url"),
                note=e.get("note"),
            )

    # classification: sites and grading
    r = reader("classification.yaml")
    cls = files.get("classification.yaml") or {}
    r.mapping(cls, "(top)", ["sites", "grading", "pregnancy"], ["sites", "grading", "pregnancy"])
    preg = cls.get("pregnancy") or {}
    r.mapping(
        preg,
        "pregnancy",
        ["childbearing_age_limit", "evidence"],
        ["childbearing_age_limit", "evidence"],
    )
    childbearing_age_limit = float(preg.get("childbearing_age_limit", 55))
    preg_evidence = r.ids(preg.get("evidence", []), "pregnancy.evidence")
    sites: dict[v.Site, SiteInfo] = {}
    for key, e in (cls.get("sites") or {}).items():
        site = r.enum(v.Site, key, f"sites.{key}")
        if site is None or not r.mapping(
            e,
            f"sites.{key}",
            ["group", "label", "region", "portal_drained", "thoracic"],
            ["group", "label", "region", "portal_drained", "thoracic"],
        ):
            continue
        sites[site] = SiteInfo(
            group=str(e["group"]),
            label=str(e["label"]),
            region=str(e["region"]),
            portal_drained=bool(e["portal_drained"]),
            thoracic=bool(e["thoracic"]),
        )
    for site in v.Site:
        if site not in sites:
            r.fail("sites", f"site {site.value!r} has no entry")
    grading: dict[str, Grading] = {}
    for key, e in (cls.get("grading") or {}).items():
        keys = ["ki67_g1_below", "ki67_g2_upto", "mitoses_g1_below", "mitoses_g2_upto", "evidence"]
        if r.mapping(
            e, f"grading.{key}", keys, ["mitoses_g1_below", "mitoses_g2_upto", "evidence"]
        ):
            grading[str(key)] = Grading(
                ki67_g1_below=e.get("ki67_g1_below"),
                ki67_g2_upto=e.get("ki67_g2_upto"),
                mitoses_g1_below=e["mitoses_g1_below"],
                mitoses_g2_upto=e["mitoses_g2_upto"],
                evidence=r.ids(e["evidence"], f"grading.{key}.evidence"),
            )
    for needed in ("digestive", "thoracic"):
        if needed not in grading:
            r.fail("grading", f"missing grading scheme {needed!r}")

    # field labels
    r = reader("fields.yaml")
    fields_info: dict[str, FieldInfo] = {}
    labels: dict[str, dict[str, str]] = {}
    fdoc = files.get("fields.yaml") or {}
    r.mapping(fdoc, "(top)", ["fields", "labels"], ["fields", "labels"])
    for key, e in (fdoc.get("fields") or {}).items():
        if r.mapping(e, f"fields.{key}", ["label", "why"], ["label", "why"]):
            fields_info[str(key)] = FieldInfo(
                label=r.text(e["label"], f"fields.{key}.label"),
                why=r.text(e["why"], f"fields.{key}.why"),
            )
    for path in [*FIELDS, *(f"labs.{k}" for k in LAB_FIELDS)]:
        if path not in fields_info:
            r.fail("fields", f"case field {path!r} has no label")
    for group, mapping in (fdoc.get("labels") or {}).items():
        labels[str(group)] = {str(k): str(x) for k, x in (mapping or {}).items()}

    # facts
    r = reader("facts.yaml")
    facts: dict[str, FactDef] = {}
    for i, e in enumerate(_entries(files.get("facts.yaml"), r)):
        w = f"[{i}]"
        if not r.mapping(e, w, ["name", "label", "when"], ["name", "label", "when"]):
            continue
        if e["name"] in facts:
            r.fail(w, f"duplicate fact {e['name']!r}")
        facts[str(e["name"])] = FactDef(
            name=str(e["name"]),
            label=r.text(e["label"], f"{w}.label"),
            when=r.condition(e["when"], f"{w}.when"),
        )

    # rules
    rules: list[Rule] = []
    rule_keys = [
        "id",
        "code",
        "phase",
        "status",
        "step",
        "when",
        "rationale",
        "evidence",
        "on_unknown",
        "scope",
        "overrides_guards",
        "unknown_blocks",
        "dossier",
    ]
    for name in sorted(k for k in files if k.startswith("rules/")):
        r = reader(name)
        for i, e in enumerate(_entries(files[name], r)):
            w = f"[{i}]"
            if not r.mapping(
                e,
                w,
                rule_keys,
                ["id", "code", "phase", "status", "step", "when", "rationale", "evidence"],
            ):
                continue
            w = str(e["id"])
            raw_codes = e["code"] if isinstance(e["code"], list) else [e["code"]]
            codes = tuple(
                c for c in (r.enum(v.Intervention, x, f"{w}.code") for x in raw_codes) if c
            )
            phase = r.enum(v.Phase, e["phase"], f"{w}.phase")
            status = r.enum(v.Status, e["status"], f"{w}.status")
            if not isinstance(e["step"], int) or isinstance(e["step"], bool) or e["step"] < 1:
                r.fail(f"{w}.step", "expected a positive integer")
            on_unknown = e.get("on_unknown", "branch")
            if on_unknown not in ("branch", "omit"):
                r.fail(f"{w}.on_unknown", "expected branch or omit")
            scope = e.get("scope", "phase")
            if scope not in ("phase", "all"):
                r.fail(f"{w}.scope", "expected phase or all")
            if phase and status and codes:
                rules.append(
                    Rule(
                        id=w,
                        codes=codes,
                        phase=phase,
                        status=status,
                        step=int(e["step"]),
                        when=r.condition(e["when"], f"{w}.when"),
                        rationale=r.text(e["rationale"], f"{w}.rationale"),
                        evidence=r.ids(e["evidence"], f"{w}.evidence"),
                        on_unknown=on_unknown,
                        scope=scope,
                        overrides_guards=bool(e.get("overrides_guards", False)),
                        unknown_blocks=bool(e.get("unknown_blocks", True)),
                        dossier=tuple(str(x) for x in e.get("dossier", []) or []),
                    )
                )

    # alerts
    r = reader("alerts.yaml")
    alerts: list[AlertRule] = []
    for i, e in enumerate(_entries(files.get("alerts.yaml"), r)):
        w = f"[{i}]"
        if not r.mapping(
            e,
            w,
            ["id", "code", "severity", "when", "message", "evidence", "dossier"],
            ["id", "code", "severity", "when", "message", "evidence"],
        ):
            continue
        w = str(e["id"])
        code = r.enum(v.AlertCode, e["code"], f"{w}.code")
        sev = r.enum(v.Severity, e["severity"], f"{w}.severity")
        if code and sev:
            alerts.append(
                AlertRule(
                    id=w,
                    code=code,
                    severity=sev,
                    when=r.condition(e["when"], f"{w}.when"),
                    message=r.text(e["message"], f"{w}.message"),
                    evidence=r.ids(e["evidence"], f"{w}.evidence"),
                    dossier=tuple(str(x) for x in e.get("dossier", []) or []),
                )
            )

    # eligibility
    eligibility: list[EligibilitySet] = []
    for name in sorted(k for k in files if k.startswith("eligibility/")):
        r = reader(name)
        e = files[name]
        if not r.mapping(
            e, "(top)", ["name", "title", "note", "criteria"], ["name", "title", "criteria"]
        ):
            continue
        ename = r.enum(v.EligibilityName, e["name"], "name")
        crits: list[CriterionDef] = []
        for i, c in enumerate(e.get("criteria") or []):
            w = f"criteria[{i}]"
            if r.mapping(
                c, w, ["name", "when", "detail", "evidence"], ["name", "when", "detail", "evidence"]
            ):
                crits.append(
                    CriterionDef(
                        name=r.text(c["name"], f"{w}.name"),
                        when=r.condition(c["when"], f"{w}.when"),
                        detail=r.text(c["detail"], f"{w}.detail"),
                        evidence=r.ids(c["evidence"], f"{w}.evidence"),
                    )
                )
        if ename:
            eligibility.append(
                EligibilitySet(
                    name=ename,
                    title=r.text(e["title"], "title"),
                    note=" ".join(str(e.get("note", "")).split()),
                    criteria=tuple(crits),
                )
            )
    found = {x.name for x in eligibility}
    for en in sorted(found, key=list(v.EligibilityName).index):
        if sum(x.name is en for x in eligibility) > 1:
            problems.append(Problem("eligibility/", f"criteria set {en.value!r} is defined twice"))
    for en in v.EligibilityName:
        if en not in found:
            problems.append(Problem("eligibility/", f"no criteria set for {en.value!r}"))
    eligibility.sort(key=lambda x: list(v.EligibilityName).index(x.name))

    # dosing
    r = reader("dosing.yaml")
    dosing: list[DoseDef] = []
    for i, e in enumerate(_entries(files.get("dosing.yaml"), r)):
        w = f"[{i}]"
        if not r.mapping(e, w, ["code", "text", "evidence", "when"], ["code", "text", "evidence"]):
            continue
        dose_code = r.enum(v.Intervention, e["code"], f"{w}.code")
        if dose_code:
            dosing.append(
                DoseDef(
                    code=dose_code,
                    text=r.text(e["text"], f"{w}.text"),
                    evidence=r.ids(e["evidence"], f"{w}.evidence"),
                    when=r.condition(e["when"], f"{w}.when") if "when" in e else None,
                )
            )

    # monitoring and disagreements share a shape
    def notes(
        file: str, keys: list[str], build: Callable[[_Reader, str, Mapping[str, Any]], Any]
    ) -> list[Any]:
        rr = reader(file)
        out: list[Any] = []
        for i, e in enumerate(_entries(files.get(file), rr)):
            if rr.mapping(e, f"[{i}]", keys, keys):
                out.append(build(rr, str(e["id"]), e))
        return out

    monitoring = notes(
        "monitoring.yaml",
        ["id", "what", "interval", "reason", "evidence", "when"],
        lambda rr, w, e: MonitoringDef(
            id=w,
            what=rr.text(e["what"], f"{w}.what"),
            interval=rr.text(e["interval"], f"{w}.interval"),
            reason=rr.text(e["reason"], f"{w}.reason"),
            evidence=rr.ids(e["evidence"], f"{w}.evidence"),
            when=rr.condition(e["when"], f"{w}.when"),
        ),
    )
    disagreements = notes(
        "disagreements.yaml",
        ["id", "topic", "text", "evidence", "when"],
        lambda rr, w, e: DisagreementDef(
            id=w,
            topic=rr.text(e["topic"], f"{w}.topic"),
            text=rr.text(e["text"], f"{w}.text"),
            evidence=rr.ids(e["evidence"], f"{w}.evidence"),
            when=rr.condition(e["when"], f"{w}.when"),
        ),
    )

    fhir_map = (
        _parse_fhir(files["fhir.yaml"], reader("fhir.yaml")) if "fhir.yaml" in files else None
    )

    for rd in readers:
        problems.extend(rd.problems)
    kb = KnowledgeBase(
        version=version,
        released=str(released),
        covers=covers,
        about=about,
        references=references,
        facts=facts,
        fields=fields_info,
        sites=sites,
        grading=grading,
        childbearing_age_limit=childbearing_age_limit,
        rules=tuple(rules),
        alerts=tuple(alerts),
        eligibility=tuple(eligibility),
        dosing=tuple(dosing),
        monitoring=tuple(monitoring),
        disagreements=tuple(disagreements),
        labels=labels,
        fhir=fhir_map,
    )
    problems.extend(check_kb(kb))
    problems.extend(
        Problem(
            "classification.yaml:pregnancy.evidence", f"evidence id {x!r} resolves to no reference"
        )
        for x in preg_evidence
        if x not in references
    )
    return kb, problems


# --- cross-file checks ----------------------------------------------------------------------


def _check_compare(node: Compare, specs: Mapping[str, Spec | Words], where: str) -> list[Problem]:
    spec = specs.get(node.field)
    if spec is None:
        return [Problem(where, f"condition names unknown field {node.field!r}")]
    out: list[Problem] = []
    values = node.value if isinstance(node.value, tuple) else (node.value,)
    if node.op in PRESENCE_OPERATORS:
        return (
            [] if isinstance(node.value, bool) else [Problem(where, "'known' takes true or false")]
        )
    if node.op in NUMERIC_OPERATORS:
        if not isinstance(spec, Number) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in values
        ):
            out.append(
                Problem(where, f"{node.op!r} needs a numeric field and number ({node.field})")
            )
        return out
    if node.op in LIST_OPERATORS:
        if not isinstance(spec, ChoiceList):
            return [Problem(where, f"{node.op!r} needs a list field ({node.field})")]
        for x in values:
            if x not in spec.enum._value2member_map_:
                out.append(Problem(where, f"{x!r} is not a valid value of {node.field}"))
        return out
    # is / in
    for x in values:
        bad_choice = isinstance(spec, Choice) and x not in spec.enum._value2member_map_
        if bad_choice or (isinstance(spec, Words) and x not in spec.words):
            out.append(Problem(where, f"{x!r} is not a valid value of {node.field}"))
        elif isinstance(spec, Flag) and not isinstance(x, bool):
            out.append(Problem(where, f"{node.field} takes true/false, got {x!r}"))
        elif isinstance(spec, Number | ChoiceList | Text):
            out.append(Problem(where, f"{node.op!r} is not usable on {node.field}"))
    return out


def check_kb(kb: KnowledgeBase) -> list[Problem]:
    """Cross-file integrity: references, fields, facts and codes named in conditions."""
    problems: list[Problem] = []
    specs: dict[str, Spec | Words] = {**FIELDS, **{f"labs.{k}": s for k, s in LAB_FIELDS.items()}}
    specs.update(computed_specs(kb.sites))

    def cite(where: str, ids: Iterable[str], required: bool = True) -> None:
        ids = list(ids)
        if required and not ids:
            problems.append(Problem(where, "has no evidence"))
        for rid in ids:
            if rid not in kb.references:
                problems.append(Problem(where, f"evidence id {rid!r} resolves to no reference"))

    def cond(where: str, c: Condition) -> None:
        for node in walk(c):
            if isinstance(node, Compare):
                problems.extend(_check_compare(node, specs, where))
            elif isinstance(node, Fact) and node.name not in kb.facts:
                problems.append(Problem(where, f"unknown fact {node.name!r}"))
            elif isinstance(node, EligibilityIs):
                if node.name not in v.EligibilityName._value2member_map_:
                    problems.append(Problem(where, f"unknown eligibility {node.name!r}"))
                if node.status not in v.EligibilityStatus._value2member_map_:
                    problems.append(Problem(where, f"unknown eligibility status {node.status!r}"))
            elif isinstance(node, Planned):
                for code in node.codes:
                    if code not in v.Intervention._value2member_map_:
                        problems.append(Problem(where, f"unknown intervention {code!r}"))

    seen: dict[str, str] = {}
    for kind, items in (
        ("rule", kb.rules),
        ("alert", kb.alerts),
        ("monitoring", kb.monitoring),
        ("disagreement", kb.disagreements),
    ):
        for item in items:
            if item.id in seen:
                problems.append(
                    Problem(f"{kind} {item.id}", f"duplicate id (also a {seen[item.id]})")
                )
            seen[item.id] = kind
            cite(f"{kind} {item.id}", item.evidence)
            cond(f"{kind} {item.id}", item.when)

    def monotone(where: str, c: Condition) -> None:
        for node in walk(c):
            if isinstance(node, Compare) and node.op in PRESENCE_OPERATORS:
                problems.append(Problem(where, f"{node.op!r} is for alerts and notes only"))

    for rule in kb.rules:
        monotone(f"rule {rule.id}", rule.when)
        for node in walk(rule.when):
            if isinstance(node, Planned):
                problems.append(
                    Problem(f"rule {rule.id}", "rules may not depend on the plan itself")
                )
    for fact in kb.facts.values():
        cond(f"fact {fact.name}", fact.when)
        monotone(f"fact {fact.name}", fact.when)
        for node in walk(fact.when):
            if isinstance(node, Planned | EligibilityIs):
                problems.append(
                    Problem(f"fact {fact.name}", "facts may use case fields and facts only")
                )
    for es in kb.eligibility:
        for c in es.criteria:
            cite(f"eligibility {es.name.value}: {c.name}", c.evidence)
            cond(f"eligibility {es.name.value}: {c.name}", c.when)
            monotone(f"eligibility {es.name.value}: {c.name}", c.when)
            for node in walk(c.when):
                if isinstance(node, Planned | EligibilityIs):
                    problems.append(
                        Problem(f"eligibility {es.name.value}", "criteria use case data only")
                    )
    for d in kb.dosing:
        cite(f"dosing {d.code.value}", d.evidence)
        if d.when is not None:
            cond(f"dosing {d.code.value}", d.when)
    for name, g in kb.grading.items():
        cite(f"grading {name}", g.evidence)
    _check_fact_cycles(kb, problems)
    return problems


def _check_fact_cycles(kb: KnowledgeBase, problems: list[Problem]) -> None:
    state: dict[str, int] = {}

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if state.get(name) == 2 or name not in kb.facts:
            return
        if state.get(name) == 1:
            problems.append(
                Problem(
                    f"fact {name}", f"facts refer to each other in a cycle: {' -> '.join(trail)}"
                )
            )
            return
        state[name] = 1
        for node in walk(kb.facts[name].when):
            if isinstance(node, Fact):
                visit(node.name, (*trail, node.name))
        state[name] = 2

    for name in sorted(kb.facts):
        visit(name, (name,))


def yaml_sources(root: Traversable) -> list[tuple[str, Traversable]]:
    """Every YAML file under ``root`` as (relative path, entry), sorted by path."""
    out: list[tuple[str, Traversable]] = []

    def walk_dir(d: Traversable, prefix: str) -> None:
        for entry in d.iterdir():
            if entry.is_dir():
                walk_dir(entry, f"{prefix}{entry.name}/")
            elif entry.name.endswith(".yaml"):
                out.append((f"{prefix}{entry.name}", entry))

    walk_dir(root, "")
    return sorted(out, key=lambda x: x[0])


def read_kb_files(root: Traversable) -> dict[str, Any]:
    """Parse every YAML file under ``root`` (a package directory) keyed by relative path."""
    import yaml

    from netboard.case import yaml_loader

    loader = yaml_loader()
    out: dict[str, Any] = {}
    for rel, entry in yaml_sources(root):
        try:
            doc = yaml.load(entry.read_text("utf-8"), Loader=loader)
        except yaml.YAMLError as exc:
            raise ValueError(f"{rel}: {' '.join(str(exc).split())}") from None
        out[rel] = _plain(doc)
    return out


def _plain(value: Any) -> Any:
    """YAML dates become ISO strings, so YAML and the JSON snapshot give the same documents."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(x) for k, x in value.items()}
    if isinstance(value, list):
        return [_plain(x) for x in value]
    return value


# --- fhir.yaml: the FHIR R4 -> case mapping table ----------------------------------------------

#: Resource types netboard.fhir reads (fhir.yaml `reads` must list exactly these).
FHIR_RESOURCE_TYPES = (
    "Patient",
    "Condition",
    "Observation",
    "MedicationRequest",
    "MedicationStatement",
    "MedicationAdministration",
    "Medication",
    "Procedure",
    "List",
)
_CONDITION_ROLES = ("primary", "secondary", "other")
_OBSERVATION_KINDS = ("quantity", "integer", "coded", "boolean", "ratio_to_uln", "morphology")
_ROW_KEYS = ("system", "code", "display", "source", "verified", "note", "definition")
_PREFIX_SYSTEMS = ("icd10cm",)


def normalize_code(system: str, code: str) -> str:
    """A code as tables hold it: ICD codes upper-case, ICD-10-CM with its dot (C7A012 -> C7A.012).

    >>> normalize_code("http://hl7.org/fhir/sid/icd-10-cm", "c7a012")
    'C7A.012'
    """
    code = code.strip()
    if system == "http://hl7.org/fhir/sid/icd-10-cm":
        code = code.upper()
        if "." not in code and len(code) > 3:
            code = f"{code[:3]}.{code[3:]}"
    elif system == "http://terminology.hl7.org/CodeSystem/icd-o-3":
        code = code.upper()
    return code


@dataclass(frozen=True, slots=True, kw_only=True)
class FhirCode:
    """One row of the mapping table: a code and the case fields it gives (or why it is not read)."""

    system: str
    code: str
    display: str
    source: str
    verified: bool
    note: str = ""
    prefix: bool = False
    sets: tuple[tuple[str, Any], ...] = ()
    unmapped: str | None = None
    role: str | None = None
    due_to_primary: bool = False
    treatment: v.Intervention | None = None
    component: str | None = None
    sites: tuple[v.Site, ...] = ()
    any_site: bool = False
    value: Any = None
    field: str | None = None
    definition: str = ""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class CodeTable:
    """Rows of one table with exact and prefix look-up (see fhir.yaml's matching rules)."""

    rows: tuple[FhirCode, ...]
    exact: Mapping[tuple[str, str], FhirCode]
    prefixes: Mapping[str, tuple[FhirCode, ...]]

    def lookup(self, system: str, code: str) -> FhirCode | None:
        """The row for a coding: exact match first, then the longest prefix row."""
        code = normalize_code(system, code)
        row = self.exact.get((system, code))
        if row is not None:
            return row
        for candidate in self.prefixes.get(system, ()):
            if code.startswith(candidate.code):
                return candidate
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitRule:
    """A unit an observation may carry and the factor to the case unit."""

    unit: str
    factor: float


@dataclass(frozen=True, slots=True, kw_only=True)
class FhirObservation:
    """An observation code, the case field it fills and how its value is read."""

    row: FhirCode
    field: str | None
    kind: str | None
    units: tuple[UnitRule, ...] = ()
    decimals: int | None = None
    values: CodeTable | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NameRule:
    """Name fallback: all ``words`` in a text give the treatment, component and extra fields."""

    words: tuple[str, ...]
    treatment: v.Intervention | None = None
    component: str | None = None
    sites: tuple[v.Site, ...] = ()
    sets: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Regimen:
    """A combination treatment: one component of every group must be recorded."""

    treatment: v.Intervention
    all_of: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class FhirMap:
    """The parsed fhir.yaml."""

    systems: Mapping[str, str]
    profiles: Mapping[str, str]
    extensions: Mapping[str, str]
    reads: Mapping[str, tuple[str, ...]]
    prefetch: Mapping[str, str]
    site_refinements: Mapping[v.Site, tuple[v.Site, ...]]
    conditions: CodeTable
    morphology: CodeTable
    primary_body_sites: CodeTable
    secondary_body_sites: CodeTable
    observations: Mapping[tuple[str, str], FhirObservation]
    medications: CodeTable
    medication_names: tuple[NameRule, ...]
    medication_exclude_words: frozenset[str]
    regimens: tuple[Regimen, ...]
    progression_reasons: CodeTable
    procedures: CodeTable
    procedure_names: tuple[NameRule, ...]
    procedure_exclude_words: frozenset[str]
    local_system: str
    lists: CodeTable
    list_empty_reasons: CodeTable

    def all_codes(self) -> list[FhirCode]:
        """Every code row of every table (observation answers included)."""
        out: list[FhirCode] = []
        for table in (
            self.conditions,
            self.morphology,
            self.primary_body_sites,
            self.secondary_body_sites,
            self.medications,
            self.progression_reasons,
            self.procedures,
            self.lists,
            self.list_empty_reasons,
        ):
            out.extend(table.rows)
        for obs in self.observations.values():
            out.append(obs.row)
            if obs.values is not None:
                out.extend(obs.values.rows)
        return out


def _field_spec(path: str) -> Spec | None:
    if path.startswith("labs."):
        return LAB_FIELDS.get(path[5:])
    return FIELDS.get(path)


def check_field_value(path: str, value: Any) -> str | None:
    """Why ``value`` is not a contract value for case field ``path`` (None when it is).

    A list field takes one item (the table adds it to the list).

    >>> check_field_value("primary_site", "ileum") is None
    True
    >>> check_field_value("metastatic_sites", "spleen")
    "'spleen' is not a contract value of metastatic_sites"
    """
    spec = _field_spec(path)
    if spec is None:
        return f"{path!r} is not a case field"
    if isinstance(spec, Choice | ChoiceList):
        if isinstance(value, str) and value in spec.enum._value2member_map_:
            return None
        return f"{value!r} is not a contract value of {path}"
    if isinstance(spec, Flag):
        return None if isinstance(value, bool) else f"{path} takes true or false, not {value!r}"
    if isinstance(spec, Number):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{path} takes a number, not {value!r}"
        if value < spec.lo or (spec.hi is not None and value > spec.hi):
            return f"{value!r} is outside the range of {path}"
        return None
    return f"{path} cannot be set from the mapping table"


class _FhirReader:
    """Reads fhir.yaml, reporting problems through the file's ``_Reader``."""

    def __init__(self, r: _Reader, systems: Mapping[str, str], local: str | None = None) -> None:
        self.r = r
        self.systems = systems
        self.local = local

    def sets(self, raw: Any, where: str) -> tuple[tuple[str, Any], ...]:
        if raw is None:
            return ()
        if not isinstance(raw, Mapping):
            self.r.fail(where, "expected a mapping of case field -> value")
            return ()
        out: list[tuple[str, Any]] = []
        for key, value in raw.items():
            problem = check_field_value(str(key), value)
            if problem:
                self.r.fail(f"{where}.{key}", problem)
            else:
                out.append((str(key), value))
        return tuple(out)

    def words(self, raw: Any, where: str) -> tuple[str, ...]:
        if not isinstance(raw, list) or not raw:
            self.r.fail(where, "expected a non-empty list of words")
            return ()
        out: list[str] = []
        for w in raw:
            if not isinstance(w, str) or not w.isalnum() or w != w.lower():
                self.r.fail(where, f"{w!r} is not a lower-case word of letters and digits")
            else:
                out.append(w)
        return tuple(out)

    def sites(self, raw: Any, where: str) -> tuple[v.Site, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.r.fail(where, "expected a list of primary sites")
            return ()
        return tuple(s for s in (self.r.enum(v.Site, x, where) for x in raw) if s)

    def row(self, e: Any, where: str, extra: Iterable[str]) -> FhirCode | None:
        extra = list(extra)
        if not self.r.mapping(
            e, where, [*_ROW_KEYS, *extra], ["system", "code", "display", "source", "verified"]
        ):
            return None
        system = self.systems.get(str(e["system"]))
        if system is None:
            self.r.fail(f"{where}.system", f"unknown system alias {e['system']!r}")
            return None
        code = e["code"]
        if not isinstance(code, str) or not code.strip():
            self.r.fail(f"{where}.code", f"codes are text (quote it): {code!r}")
            return None
        if not isinstance(e["verified"], bool):
            self.r.fail(f"{where}.verified", "expected true or false")
        prefix = e.get("prefix", False)
        if prefix is not False and (prefix is not True or e["system"] not in _PREFIX_SYSTEMS):
            self.r.fail(f"{where}.prefix", f"prefix: true is allowed for {_PREFIX_SYSTEMS} only")
            prefix = False
        role = e.get("role")
        if role is not None and role not in _CONDITION_ROLES:
            self.r.fail(f"{where}.role", f"expected one of {', '.join(_CONDITION_ROLES)}")
        treatment = None
        if "treatment" in e:
            treatment = self.r.enum(v.Intervention, e["treatment"], f"{where}.treatment")
        component = e.get("component")
        if component is not None and not isinstance(component, str):
            self.r.fail(f"{where}.component", "expected a component name")
            component = None
        unmapped = e.get("unmapped")
        if unmapped is not None:
            unmapped = self.r.text(unmapped, f"{where}.unmapped")
        definition = " ".join(str(e.get("definition", "")).split())
        if system == self.local and not definition:
            self.r.fail(f"{where}.definition", "a local code needs its definition")
        if system != self.local and "definition" in e:
            self.r.fail(f"{where}.definition", "only local codes take a definition")
        any_site = e.get("any_site", False)
        if not isinstance(any_site, bool):
            self.r.fail(f"{where}.any_site", "expected true or false")
            any_site = False
        field_path = e.get("field")
        if field_path is not None and not isinstance(field_path, str):
            self.r.fail(f"{where}.field", f"{field_path!r} is not a case field")
            field_path = None
        return FhirCode(
            system=system,
            code=normalize_code(system, code),
            display=self.r.text(e["display"], f"{where}.display"),
            source=self.r.text(e["source"], f"{where}.source"),
            verified=bool(e["verified"]),
            note=" ".join(str(e.get("note", "")).split()),
            prefix=bool(prefix),
            sets=self.sets(e.get("set"), f"{where}.set")
            + self.sets(e.get("also"), f"{where}.also"),
            unmapped=unmapped,
            role=role,
            due_to_primary=bool(e.get("due_to_primary", False)),
            treatment=treatment,
            component=component,
            sites=self.sites(e.get("sites"), f"{where}.sites"),
            any_site=any_site,
            value=e.get("value"),
            field=field_path,
            definition=definition,
        )

    def table(
        self, raw: Any, name: str, extra: Iterable[str], check: Callable[[FhirCode, str], None]
    ) -> CodeTable:
        extra = list(extra)
        rows: list[FhirCode] = []
        exact: dict[tuple[str, str], FhirCode] = {}
        prefixes: dict[str, list[FhirCode]] = {}
        for i, e in enumerate(_entries(raw, self.r) if raw is not None else []):
            where = f"{name}[{i}]"
            row = self.row(e, where, extra)
            if row is None:
                continue
            check(row, where)
            key = (row.system, row.code)
            same = [x for x in rows if (x.system, x.code, x.prefix) == (*key, row.prefix)]
            if same:
                old = same[0]
                differs = (old.sets, old.unmapped, old.treatment, old.component, old.role) != (
                    row.sets,
                    row.unmapped,
                    row.treatment,
                    row.component,
                    row.role,
                )
                what = "to a different value" if differs else "twice"
                self.r.fail(where, f"code {row.code} of {row.system} is mapped {what}")
                continue
            rows.append(row)
            if row.prefix:
                prefixes.setdefault(row.system, []).append(row)
            else:
                exact[key] = row
        return CodeTable(
            rows=tuple(rows),
            exact=exact,
            prefixes={
                s: tuple(sorted(rs, key=lambda x: len(x.code), reverse=True))
                for s, rs in prefixes.items()
            },
        )

    def names(self, raw: Any, name: str) -> tuple[NameRule, ...]:
        rules: list[NameRule] = []
        seen: set[tuple[str, ...]] = set()
        for i, e in enumerate(_entries(raw, self.r) if raw is not None else []):
            where = f"{name}[{i}]"
            if not self.r.mapping(
                e, where, ["words", "treatment", "component", "sites", "also"], ["words"]
            ):
                continue
            words = self.words(e["words"], f"{where}.words")
            if words in seen:
                self.r.fail(where, f"words {list(words)} are listed twice")
            seen.add(words)
            treatment = None
            if "treatment" in e:
                treatment = self.r.enum(v.Intervention, e["treatment"], f"{where}.treatment")
            component = e.get("component")
            rule = NameRule(
                words=words,
                treatment=treatment,
                component=str(component) if component is not None else None,
                sites=self.sites(e.get("sites"), f"{where}.sites"),
                sets=self.sets(e.get("also"), f"{where}.also"),
            )
            self.check_treatment(rule.treatment, rule.component, rule.sites, rule.sets, where)
            rules.append(rule)
        return tuple(rules)

    def check_treatment(
        self,
        treatment: v.Intervention | None,
        component: str | None,
        sites: tuple[v.Site, ...],
        sets: tuple[tuple[str, Any], ...],
        where: str,
        any_site: bool = False,
    ) -> None:
        if (treatment is None) == (component is None) and not (treatment is None and sets):
            self.r.fail(where, "give exactly one of treatment and component (or only also)")
        if treatment is v.Intervention.PRIMARY_RESECTION and not sites and not any_site:
            self.r.fail(
                where,
                "primary_resection needs the primary sites it resects (sites) or any_site: true",
            )
        if (sites or any_site) and treatment is not v.Intervention.PRIMARY_RESECTION:
            self.r.fail(where, "sites and any_site are for primary_resection only")
        if sites and any_site:
            self.r.fail(where, "give sites or any_site, not both")


def _parse_fhir(doc: Any, r: _Reader) -> FhirMap | None:
    """Parse and check fhir.yaml; problems go to ``r``."""
    keys = [
        "systems",
        "profiles",
        "extensions",
        "reads",
        "prefetch",
        "site_refinements",
        "conditions",
        "morphology",
        "primary_body_sites",
        "secondary_body_sites",
        "observations",
        "medications",
        "medication_names",
        "medication_exclude_words",
        "regimens",
        "progression_reasons",
        "procedures",
        "procedure_names",
        "procedure_exclude_words",
        "local_system",
        "lists",
        "list_empty_reasons",
    ]
    if not r.mapping(doc, "(top)", keys, keys):
        return None

    def strings(raw: Any, where: str) -> dict[str, str]:
        if not isinstance(raw, Mapping) or not all(
            isinstance(k, str) and isinstance(x, str) for k, x in raw.items()
        ):
            r.fail(where, "expected a mapping of names to text")
            return {}
        return dict(raw)

    systems = strings(doc["systems"], "systems")
    profiles = strings(doc["profiles"], "profiles")
    extensions = strings(doc["extensions"], "extensions")
    for name, got, required in (
        ("profiles", profiles, ("primary_cancer_condition", "secondary_cancer_condition")),
        ("extensions", extensions, ("histology", "due_to")),
    ):
        for wanted in required:
            if wanted not in got:
                r.fail(name, f"missing {wanted!r}")
    local_alias = doc["local_system"]
    local = systems.get(local_alias) if isinstance(local_alias, str) else None
    if local is None:
        r.fail("local_system", f"not a system alias of systems: {local_alias!r}")
    fr = _FhirReader(r, systems, local)

    reads: dict[str, tuple[str, ...]] = {}
    raw_reads = doc["reads"]
    if isinstance(raw_reads, Mapping):
        for key, paths in raw_reads.items():
            if key not in FHIR_RESOURCE_TYPES:
                r.fail(f"reads.{key}", f"not a resource type netboard reads: {FHIR_RESOURCE_TYPES}")
            if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
                r.fail(f"reads.{key}", "expected a list of element paths")
                continue
            reads[str(key)] = tuple(paths)
        for needed in FHIR_RESOURCE_TYPES:
            if needed not in reads:
                r.fail("reads", f"resource type {needed} is read but not listed")
    else:
        r.fail("reads", "expected a mapping of resource type -> element paths")

    prefetch = strings(doc["prefetch"], "prefetch")
    for key, template in prefetch.items():
        if "{{context.patientId}}" not in template:
            r.fail(f"prefetch.{key}", "a prefetch template must name {{context.patientId}}")

    refinements: dict[v.Site, tuple[v.Site, ...]] = {}
    raw_ref = doc["site_refinements"]
    if isinstance(raw_ref, Mapping):
        for key, subs in raw_ref.items():
            broad = r.enum(v.Site, key, f"site_refinements.{key}")
            narrow = fr.sites(subs, f"site_refinements.{key}")
            if broad:
                refinements[broad] = narrow
    else:
        r.fail("site_refinements", "expected a mapping of site -> narrower sites")

    def condition_check(row: FhirCode, where: str) -> None:
        if row.role is None:
            r.fail(where, "a condition row needs a role")
        if row.unmapped is None and "set" not in _raw_keys(doc["conditions"], where):
            r.fail(where, "give set (possibly {}) or unmapped")
        if row.unmapped is not None and row.sets:
            r.fail(where, "give set or unmapped, not both")
        if row.due_to_primary and row.role != "other":
            r.fail(where, "due_to_primary is for role other")
        if row.treatment is not None or row.component is not None:
            r.fail(where, "conditions give case fields with set, not treatments")

    def plain_check(row: FhirCode, where: str) -> None:
        if (row.unmapped is None) == (not row.sets):
            r.fail(where, "give set (with at least one field) or unmapped")

    conditions = fr.table(
        doc["conditions"],
        "conditions",
        ["role", "set", "unmapped", "prefix", "due_to_primary"],
        condition_check,
    )
    morphology = fr.table(doc["morphology"], "morphology", ["set", "unmapped"], plain_check)
    primary_sites = fr.table(
        doc["primary_body_sites"], "primary_body_sites", ["set", "unmapped"], plain_check
    )
    secondary_sites = fr.table(
        doc["secondary_body_sites"], "secondary_body_sites", ["set", "unmapped"], plain_check
    )

    observations: dict[tuple[str, str], FhirObservation] = {}
    for i, e in enumerate(_entries(doc["observations"], r)):
        where = f"observations[{i}]"
        row = fr.row(e, where, ["field", "kind", "units", "decimals", "values", "unmapped"])
        if row is None:
            continue
        obs = _parse_observation(e, row, where, r, fr)
        obs_key = (row.system, row.code)
        if obs_key in observations:
            r.fail(where, f"code {row.code} of {row.system} is mapped twice")
            continue
        observations[obs_key] = obs

    def med_check(row: FhirCode, where: str) -> None:
        fr.check_treatment(row.treatment, row.component, row.sites, row.sets, where)
        if row.any_site:
            r.fail(where, "any_site is for procedures")

    medications = fr.table(doc["medications"], "medications", ["treatment", "component"], med_check)
    medication_names = fr.names(doc["medication_names"], "medication_names")
    regimens: list[Regimen] = []
    for i, e in enumerate(_entries(doc["regimens"], r)):
        where = f"regimens[{i}]"
        if not r.mapping(e, where, ["treatment", "all_of"], ["treatment", "all_of"]):
            continue
        treatment = r.enum(v.Intervention, e["treatment"], f"{where}.treatment")
        groups = e["all_of"]
        if (
            not isinstance(groups, list)
            or not groups
            or not all(
                isinstance(g, list) and g and all(isinstance(x, str) for x in g) for g in groups
            )
        ):
            r.fail(f"{where}.all_of", "expected a list of non-empty lists of component names")
            continue
        if treatment:
            regimens.append(Regimen(treatment=treatment, all_of=tuple(tuple(g) for g in groups)))
    defined = {x.component for x in medications.rows if x.component} | {
        x.component for x in medication_names if x.component
    }
    used = {c for reg in regimens for group in reg.all_of for c in group}
    for name in sorted(used - defined):
        r.fail("regimens", f"component {name!r} is given by no medication row")
    for name in sorted(defined - used):
        r.fail("medications", f"component {name!r} belongs to no regimen")

    progression = fr.table(
        doc["progression_reasons"], "progression_reasons", [], lambda row, where: None
    )

    def proc_check(row: FhirCode, where: str) -> None:
        fr.check_treatment(
            row.treatment, row.component, row.sites, row.sets, where, any_site=row.any_site
        )

    procedures = fr.table(
        doc["procedures"], "procedures", ["treatment", "sites", "any_site", "also"], proc_check
    )

    def list_check(row: FhirCode, where: str) -> None:
        if row.field is None or not isinstance(FIELDS.get(row.field), ChoiceList):
            r.fail(f"{where}.field", f"{row.field!r} is not a list field of the case")

    lists = fr.table(doc["lists"], "lists", ["field"], list_check)
    for name, spec in FIELDS.items():
        if isinstance(spec, ChoiceList) and not any(x.field == name for x in lists.rows):
            r.fail("lists", f"no List code for the list field {name}")
    empty_reasons = fr.table(
        doc["list_empty_reasons"], "list_empty_reasons", ["unmapped"], lambda row, where: None
    )
    if not any(x.unmapped is None for x in empty_reasons.rows):
        r.fail("list_empty_reasons", "no empty reason means 'nothing to list'")
    procedure_names = fr.names(doc["procedure_names"], "procedure_names")

    def word_set(raw: Any, where: str) -> frozenset[str]:
        return frozenset(fr.words(raw, where))

    fmap = FhirMap(
        systems=systems,
        profiles=profiles,
        extensions=extensions,
        reads=reads,
        prefetch=prefetch,
        site_refinements=refinements,
        conditions=conditions,
        morphology=morphology,
        primary_body_sites=primary_sites,
        secondary_body_sites=secondary_sites,
        observations=observations,
        medications=medications,
        medication_names=medication_names,
        medication_exclude_words=word_set(
            doc["medication_exclude_words"], "medication_exclude_words"
        ),
        regimens=tuple(regimens),
        progression_reasons=progression,
        procedures=procedures,
        procedure_names=procedure_names,
        procedure_exclude_words=word_set(doc["procedure_exclude_words"], "procedure_exclude_words"),
        local_system=local or "",
        lists=lists,
        list_empty_reasons=empty_reasons,
    )
    _check_observation_prefetch(fmap, r)
    return fmap


def _raw_keys(raw: Any, where: str) -> set[str]:
    """The keys of the raw entry named by ``where`` (``table[i]``), for presence checks."""
    try:
        index = int(where.rsplit("[", 1)[1].rstrip("]"))
        entry = raw[index]
        return set(entry) if isinstance(entry, Mapping) else set()
    except (IndexError, ValueError, TypeError, KeyError):
        return set()


def _parse_observation(
    e: Mapping[str, Any], row: FhirCode, where: str, r: _Reader, fr: _FhirReader
) -> FhirObservation:
    kind = e.get("kind")
    field_path = e.get("field")
    if row.unmapped is not None:
        if kind is not None or field_path is not None:
            r.fail(where, "an unmapped observation takes no field or kind")
        return FhirObservation(row=row, field=None, kind=None)
    if kind not in _OBSERVATION_KINDS:
        r.fail(f"{where}.kind", f"expected one of {', '.join(_OBSERVATION_KINDS)}")
        return FhirObservation(row=row, field=None, kind=None)
    if kind == "morphology":
        if field_path is not None:
            r.fail(where, "a morphology observation is read through the morphology table")
        return FhirObservation(row=row, field=None, kind=kind)
    if not isinstance(field_path, str) or _field_spec(field_path) is None:
        r.fail(f"{where}.field", f"{field_path!r} is not a case field")
        return FhirObservation(row=row, field=None, kind=None)
    spec = _field_spec(field_path)
    numeric = isinstance(spec, Number)
    if kind in ("quantity", "integer", "ratio_to_uln") and not numeric:
        r.fail(where, f"kind {kind} needs a numeric field, not {field_path}")
    if kind == "boolean" and not isinstance(spec, Flag):
        r.fail(where, f"kind boolean needs a true/false field, not {field_path}")
    units: list[UnitRule] = []
    if kind == "quantity":
        raw_units = e.get("units")
        if not isinstance(raw_units, list) or not raw_units:
            r.fail(f"{where}.units", "a quantity needs its units")
        else:
            for j, u in enumerate(raw_units):
                uw = f"{where}.units[{j}]"
                if r.mapping(u, uw, ["unit", "factor"], ["unit", "factor"]):
                    factor = u["factor"]
                    if (
                        isinstance(factor, bool)
                        or not isinstance(factor, int | float)
                        or factor <= 0
                    ):
                        r.fail(f"{uw}.factor", "expected a positive number")
                        continue
                    units.append(UnitRule(unit=str(u["unit"]), factor=float(factor)))
    elif "units" in e:
        r.fail(f"{where}.units", f"units are for kind quantity, not {kind}")
    decimals = e.get("decimals")
    if decimals is not None and (not isinstance(decimals, int) or isinstance(decimals, bool)):
        r.fail(f"{where}.decimals", "expected a whole number")
        decimals = None
    values: CodeTable | None = None
    if kind == "coded":

        def value_check(vrow: FhirCode, vwhere: str) -> None:
            if vrow.unmapped is None:
                problem = check_field_value(field_path, vrow.value)
                if problem:
                    r.fail(f"{vwhere}.value", problem)
            elif vrow.value is not None:
                r.fail(vwhere, "give value or unmapped, not both")

        values = fr.table(e.get("values"), f"{where}.values", ["value", "unmapped"], value_check)
        if not values.rows:
            r.fail(f"{where}.values", "a coded observation needs its answer codes")
    elif "values" in e:
        r.fail(f"{where}.values", f"values are for kind coded, not {kind}")
    return FhirObservation(
        row=row, field=field_path, kind=kind, units=tuple(units), decimals=decimals, values=values
    )


def _check_observation_prefetch(fmap: FhirMap, r: _Reader) -> None:
    """The Observation prefetch query must list exactly the observation codes of the table."""
    template = fmap.prefetch.get("observations")
    if template is None:
        r.fail("prefetch", "missing the observations template")
        return
    _, _, query = template.partition("&code=")
    listed = {tuple(item.rsplit("|", 1)) for item in query.split(",") if "|" in item}
    wanted = set(fmap.observations)
    for system, code in sorted(wanted - listed):
        r.fail("prefetch.observations", f"the query lacks {system}|{code}")
    for system, code in sorted(listed - wanted):
        r.fail("prefetch.observations", f"the query names {system}|{code}, not in observations")
