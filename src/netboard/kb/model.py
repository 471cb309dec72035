"""The knowledge base as typed, frozen values (what ``netboard.kb.loader`` builds from YAML)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from netboard import vocab as v
from netboard.conditions import (
    Condition,
)
from netboard.fields import FieldDef

if TYPE_CHECKING:  # pragma: no cover
    from netboard.fhir.table import FhirMap

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
    #: a negative rule's exception: the guard lifts when this is known to hold (already folded
    #: into ``when``; kept for the reader)
    unless: Condition | None = None
    #: guard rule ids this positive rule may pass (a named exception)
    passes: tuple[str, ...] = ()
    #: deprecated blanket escape from every guard of the code; ``kb check`` warns on each use
    overrides_guards: bool = False
    unknown_blocks: bool = True
    dossier: tuple[str, ...] = ()
    #: the plan step's words for this option (positive rules), a clause without a full stop
    action: str = ""
    #: the bottom line's words for this option when the code's label would mislead ("nothing
    #: more" for an observation that needs no follow-up); empty: the code's short label
    short: str = ""
    #: the rule file it comes from (``rules/<topic>.yaml``): a phase, or a clinical topic
    topic: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanStepDef:
    """How a rule ``step`` rank shows in the plan (``plan.yaml``)."""

    rank: int
    lead: str
    join: str
    #: where an option sits when a what-if moves it to this step ("first line")
    as_: str = ""
    #: whether the bottom line says ``as_`` after the step's options
    say: bool = False


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
    """One eligibility criterion. A ``check`` criterion is a pre-treatment check (kidney
    function, blood counts, pregnancy test): it makes the option not eligible when it fails,
    and while it is not stated it is to be checked before treatment rather than a fork."""

    name: str
    when: Condition
    detail: str
    evidence: tuple[str, ...]
    check: bool = False


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
class TopicDef:
    """A part of a case the knowledge base does not cover (``scope.yaml``)."""

    id: str
    when: Condition
    reason: str
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlausibleDef:
    """A value an unknown field can take only where ``when`` is not false."""

    field: str
    value: str
    when: Condition
    why: str
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PresumptionDef:
    """What the plan presumes for a field the case leaves out (``presumptions.yaml``).

    ``value`` is a contract word (or boolean); a number is a band ``[lo, hi)`` given by
    ``below``/``upto``/``above``, shown in words by ``shown``.
    """

    field: str
    when: Condition | None
    phrase: str
    why: str
    confirm: str
    evidence: tuple[str, ...]
    value: Any = None
    band: tuple[float | None, float | None, bool] | None = None
    shown: str = ""
    source: str = "prevalence"
    alternatives: tuple[Any, ...] = ()
    excluded: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckDef:
    """A pre-treatment fact the plan presumes adequate and lists as a check of its steps."""

    field: str
    value: Any
    check: str
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FactDef:
    name: str
    label: str
    when: Condition
    label_not: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferenceDef:
    """One source. ``verified`` is true only when the citation was checked against a primary
    record (PubMed/PMC, DOI record, the journal's, society's or regulator's own page) and the
    source is itself primary; ``note`` says which record, or what was tried."""

    id: str
    citation: str
    year: int | None
    kind: v.ReferenceKind
    verified: bool
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
    #: the field registry as this knowledge base's fields.yaml words it (labels, why)
    fields: Mapping[str, FieldDef]
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
    #: scope.yaml: the reason shown for each ``Neoplasm`` value, and the topics not covered
    scope_reasons: Mapping[str, str] = field(default_factory=dict)
    topics: tuple[TopicDef, ...] = ()
    #: presumptions.yaml
    plausible: tuple[PlausibleDef, ...] = ()
    presumptions: tuple[PresumptionDef, ...] = ()
    checks: tuple[CheckDef, ...] = ()
    #: field -> value -> the condition under which the value is possible (from ``plausible``)
    plausibility: Mapping[str, Mapping[str, Condition]] = field(default_factory=dict)
    #: field -> value -> how a what-if names that value ("SSTR-negative"); numbers: {band}
    phrases: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: plan.yaml: step rank -> lead and join
    plan_steps: Mapping[int, PlanStepDef] = field(default_factory=dict)


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
