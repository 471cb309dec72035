"""The answer (contract v1): frozen values built by the engine, turned into JSON at the edge."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netboard.vocab import (
    AlertCode,
    EligibilityName,
    EligibilityStatus,
    Intervention,
    Phase,
    ReferenceKind,
    Severity,
    Status,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Dose:
    """One dosing statement from a label or trial, with its sources."""

    text: str
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AppliesIf:
    """The open branch a recommendation depends on: the missing fields and the condition."""

    fields: tuple[str, ...]
    condition: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Recommendation:
    code: Intervention
    status: Status
    phase: Phase
    order: int
    rationale: str
    evidence: tuple[str, ...]
    rule_id: str
    dosing: tuple[Dose, ...] = ()
    applies_if: AppliesIf | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """``applies_if``: the alert belongs to options offered only on an open branch, and holds
    with them (the branch's fields, and the options in words)."""

    code: AlertCode
    severity: Severity
    message: str
    evidence: tuple[str, ...]
    rule_id: str
    applies_if: AppliesIf | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Criterion:
    """``check``: a pre-treatment check; not stated (``met`` None), it does not leave the
    eligibility undetermined but is to be confirmed before treatment."""

    name: str
    met: bool | None
    detail: str
    evidence: tuple[str, ...] = ()
    check: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Eligibility:
    name: EligibilityName
    title: str
    status: EligibilityStatus
    criteria: tuple[Criterion, ...]
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Monitoring:
    what: str
    interval: str
    reason: str
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MissingInfo:
    field: str
    why: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Reference:
    id: str
    citation: str
    year: int | None
    kind: ReferenceKind
    #: checked against a primary record (``references.yaml`` ``verified``)
    verified: bool = True
    url: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Disagreement:
    """Where the sources disagree on a point that this plan touches."""

    topic: str
    text: str
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Scope:
    """Whether netboard answers for this patient (contract v2 ``scope``).

    ``applies`` is True for a neuroendocrine neoplasm the knowledge base covers, False when the
    record shows no neoplasm or a non-neuroendocrine cancer, None when a neoplasm is recorded
    without its neuroendocrine histology. ``reason`` says why, in words, and names the topics
    of this case that the knowledge base does not cover.
    """

    applies: bool | None
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanStep:
    """One step of the board's plan (contract v2 ``plan``)."""

    order: int
    codes: tuple[Intervention, ...]
    join: str
    status: Status
    phase: Phase
    text: str
    presumes: tuple[str, ...]
    checks: tuple[str, ...]
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Presumption:
    """A field the question leaves out and the plan presumes (contract v2 ``presumptions``).

    ``value`` is a contract word, or a range in words for a number; ``phrase`` names it in the
    bottom line; ``confirm`` is the work-up that would turn it into a fact; ``words`` are the
    question's own words it rests on ("NET"), empty when it rests on prevalence.
    """

    field: str
    value: Any
    why: str
    evidence: tuple[str, ...]
    phrase: str = ""
    confirm: str = ""
    words: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class WhatIf:
    """What changes if a presumption is wrong (contract v2 ``what_if``)."""

    field: str
    value: Any
    summary: str
    adds: tuple[Intervention, ...]
    drops: tuple[Intervention, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Classification:
    who_2019: str
    grade: str | None
    stage: str
    site_group: str
    functional: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """Everything netboard says about one case, in deterministic order."""

    contract_version: str
    kb_version: str
    kb_released: str
    case_id: str | None
    summary: str
    classification: Classification
    recommendations: tuple[Recommendation, ...]
    alerts: tuple[Alert, ...]
    eligibility: tuple[Eligibility, ...]
    monitoring: tuple[Monitoring, ...]
    missing_information: tuple[MissingInfo, ...]
    references: tuple[Reference, ...]
    disagreements: tuple[Disagreement, ...] = field(default=())
    scope: Scope = Scope(applies=True, reason="")
    plan: tuple[PlanStep, ...] = ()
    presumptions: tuple[Presumption, ...] = ()
    what_if: tuple[WhatIf, ...] = ()
    #: Fields the plan lists as checks before a step. Not part of the contract JSON (the
    #: strict ``missing_information`` keeps them); reports do not list them as missing.
    checked: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The answer as contract JSON (plain dicts and lists, stable key order)."""

        def ref(r: Reference) -> dict[str, Any]:
            d: dict[str, Any] = {
                "id": r.id,
                "citation": r.citation,
                "year": r.year,
                "kind": str(r.kind),
                "verified": r.verified,
            }
            if r.url:
                d["url"] = r.url
            if r.note:
                d["note"] = r.note
            return d

        def rec(r: Recommendation) -> dict[str, Any]:
            d: dict[str, Any] = {
                "code": str(r.code),
                "status": str(r.status),
                "phase": str(r.phase),
                "order": r.order,
                "rationale": r.rationale,
                "evidence": list(r.evidence),
                "rule_id": r.rule_id,
            }
            if r.dosing:
                d["dosing"] = [{"text": x.text, "evidence": list(x.evidence)} for x in r.dosing]
            if r.applies_if:
                d["applies_if"] = {
                    "fields": list(r.applies_if.fields),
                    "condition": r.applies_if.condition,
                }
            return d

        c = self.classification
        return {
            "contract_version": self.contract_version,
            "knowledge_base": {"version": self.kb_version, "released": self.kb_released},
            "case_id": self.case_id,
            "summary": self.summary,
            "classification": {
                "who_2019": c.who_2019,
                "grade": c.grade,
                "stage": c.stage,
                "site_group": c.site_group,
                "functional": c.functional,
                "notes": list(c.notes),
            },
            "recommendations": [rec(r) for r in self.recommendations],
            "alerts": [
                {
                    "code": str(a.code),
                    "severity": str(a.severity),
                    "message": a.message,
                    "evidence": list(a.evidence),
                    "rule_id": a.rule_id,
                    **(
                        {
                            "applies_if": {
                                "fields": list(a.applies_if.fields),
                                "condition": a.applies_if.condition,
                            }
                        }
                        if a.applies_if
                        else {}
                    ),
                }
                for a in self.alerts
            ],
            "eligibility": {
                str(e.name): {
                    "status": str(e.status),
                    "title": e.title,
                    "criteria": [
                        {
                            "name": k.name,
                            "met": k.met,
                            "detail": k.detail,
                            "evidence": list(k.evidence),
                            **({"check": True} if k.check else {}),
                        }
                        for k in e.criteria
                    ],
                    **({"note": e.note} if e.note else {}),
                }
                for e in self.eligibility
            },
            "monitoring": [
                {
                    "what": m.what,
                    "interval": m.interval,
                    "reason": m.reason,
                    "evidence": list(m.evidence),
                }
                for m in self.monitoring
            ],
            "missing_information": [
                {"field": m.field, "why": m.why} for m in self.missing_information
            ],
            "disagreements": [
                {"topic": d.topic, "text": d.text, "evidence": list(d.evidence)}
                for d in self.disagreements
            ],
            "references": [ref(r) for r in self.references],
            "scope": {"applies": self.scope.applies, "reason": self.scope.reason},
            "plan": [
                {
                    "order": st.order,
                    "codes": [str(c) for c in st.codes],
                    "join": st.join,
                    "status": str(st.status),
                    "phase": str(st.phase),
                    "text": st.text,
                    "presumes": list(st.presumes),
                    "checks": list(st.checks),
                    "evidence": list(st.evidence),
                }
                for st in self.plan
            ],
            "presumptions": [
                {"field": p.field, "value": p.value, "why": p.why, "evidence": list(p.evidence)}
                for p in self.presumptions
            ],
            "what_if": [
                {
                    "field": w.field,
                    "value": w.value,
                    "summary": w.summary,
                    "adds": [str(c) for c in w.adds],
                    "drops": [str(c) for c in w.drops],
                }
                for w in self.what_if
            ],
        }
