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
        man, "(top)", ["version", "released", "covers", "contract_version"], ["version", "released"]
    )
    version = str(man.get("version", ""))
    released = man.get("released", "")
    if isinstance(released, dt.date):
        released = released.isoformat()
    covers = tuple(str(x) for x in man.get("covers", []) or [])
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

    for rd in readers:
        problems.extend(rd.problems)
    kb = KnowledgeBase(
        version=version,
        released=str(released),
        covers=covers,
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
