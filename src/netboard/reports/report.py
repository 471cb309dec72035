"""The report view shared by the Markdown and HTML renderers.

:func:`build_report` turns an :class:`~netboard.answer.Answer` into plain, typed rows (labels
looked up in the knowledge base, evidence ids turned into reference numbers, recommendations
grouped by phase and by step); the Jinja2 templates only lay them out. Nothing here decides
anything clinical: every row comes from a field of the answer, in the answer's own order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from netboard.answer import Alert, Answer, AppliesIf, MissingInfo, PlanStep, Recommendation
from netboard.vocab import Phase, Severity
from netboard.words import capfirst, join_words, value_words

if TYPE_CHECKING:
    import jinja2
    from markupsafe import Markup

__all__ = [
    "DISCLAIMER",
    "Labels",
    "Report",
    "build_report",
    "default_labels",
    "template_environment",
]

#: Reader labels, grouped as in ``kb/fields.yaml`` (``labels:``): group -> code -> label.
Labels = Mapping[str, Mapping[str, str]]

DISCLAIMER = (
    "Decision support for a neuroendocrine tumour multidisciplinary team; "
    "not a substitute for clinical judgement."
)
TITLE = "netboard tumour board report"

# Presentation words for contract values. A knowledge base may override any of them with a
# label group of the same name (``statuses``, ``severities``, ``eligibility_statuses``).
_STATUS_LABELS = {
    "recommended": "Recommended",
    "consider": "Consider",
    "not_recommended": "Not recommended",
    "contraindicated": "Contraindicated",
}
_SEVERITY_LABELS = {"critical": "Critical", "warning": "Warning", "info": "Info"}
_ELIGIBILITY_LABELS = {
    "eligible": "Eligible",
    "not_eligible": "Not eligible",
    "undetermined": "Undetermined",
}
_REFERENCE_GROUPS = {
    "guideline": "Guidelines",
    "drug_label": "Drug labels",
    "trial": "Trials",
    "review": "Reviews and other",
    "other": "Reviews and other",
}


# --- the report view ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cite:
    """One citation marker: the reference's 1-based number, or None when it is not listed."""

    number: int | None
    ref_id: str


@dataclass(frozen=True, slots=True)
class ClassificationRow:
    """One classification field: contract key, row heading, reader value and contract code."""

    key: str
    label: str
    value: str
    code: str


@dataclass(frozen=True, slots=True)
class DoseView:
    """One dosing line with its own citation markers."""

    text: str
    cites: tuple[Cite, ...]


@dataclass(frozen=True, slots=True)
class RecommendationView:
    """One recommendation; ``index`` is its 1-based position in ``answer.recommendations``."""

    index: int
    code: str
    title: str
    status: str
    status_label: str
    phase: str
    order: int
    rationale: str
    cites: tuple[Cite, ...]
    rule_id: str
    applies_if: AppliesIf | None
    dosing: tuple[DoseView, ...]


@dataclass(frozen=True, slots=True)
class PhaseView:
    """A phase section: its code, its reader label and its recommendations in answer order."""

    code: str
    label: str
    recommendations: tuple[RecommendationView, ...]


@dataclass(frozen=True, slots=True)
class StepOption:
    """One option of a sequencing step; ``condition`` is set for branch options."""

    code: str
    label: str
    condition: str | None


@dataclass(frozen=True, slots=True)
class StepView:
    """One step of the sequencing algorithm: the positive options that share an ``order``."""

    order: int
    options: tuple[StepOption, ...]


@dataclass(frozen=True, slots=True)
class AlertView:
    """One alert with its severity word and citation markers."""

    code: str
    severity: str
    severity_label: str
    message: str
    cites: tuple[Cite, ...]
    rule_id: str


@dataclass(frozen=True, slots=True)
class CriterionView:
    """One eligibility criterion; ``met`` is ``yes``, ``no`` or ``unknown`` (a CSS/data word)."""

    name: str
    met: str
    met_label: str
    detail: str
    cites: tuple[Cite, ...]


@dataclass(frozen=True, slots=True)
class EligibilityView:
    """One eligibility check (hepatic resection, transplant, PRRT, embolization)."""

    name: str
    title: str
    status: str
    status_label: str
    criteria: tuple[CriterionView, ...]
    note: str


@dataclass(frozen=True, slots=True)
class DisagreementView:
    """A point where the sources disagree, with its citation markers."""

    topic: str
    text: str
    cites: tuple[Cite, ...]


@dataclass(frozen=True, slots=True)
class MonitoringView:
    """One monitoring item, with its citation markers."""

    what: str
    interval: str
    reason: str
    cites: tuple[Cite, ...]


@dataclass(frozen=True, slots=True)
class ReferenceView:
    """One reference; ``number`` is its 1-based position in ``answer.references``."""

    number: int
    id: str
    kind: str
    citation: str
    year: int | None
    url: str | None
    note: str | None
    #: False when the reference is not verified against a primary record (None: not said)
    verified: bool | None = None
    #: the citation already names what the URL points to (its DOI, PMID, PMCID or label set
    #: id): the printed page leaves the URL out, the screen keeps the link
    url_in_citation: bool = False


_URL_IDS = (
    re.compile(r"https?://(?:dx\.)?doi\.org/(?P<id>\S+)", re.IGNORECASE),
    re.compile(r"https?://pubmed\.ncbi\.nlm\.nih\.gov/(?P<id>\d+)/?$"),
    re.compile(
        r"https?://(?:www\.)?(?:pmc\.)?ncbi\.nlm\.nih\.gov/(?:pmc/)?articles/(?P<id>PMC\d+)/?$"
    ),
    re.compile(
        r"https?://dailymed\.nlm\.nih\.gov/dailymed/drugInfo\.cfm\?setid=(?P<id>[0-9a-f-]+)$"
    ),
)


def url_in_citation(url: str | None, citation: str) -> bool:
    """True when ``citation`` already names the identifier that ``url`` resolves.

    Example:
        >>> url_in_citation("https://doi.org/10.1056/NEJMoa1607427", "DOI 10.1056/NEJMoa1607427")
        True
        >>> url_in_citation("https://pubmed.ncbi.nlm.nih.gov/123/", "PMID 124")
        False
    """
    if not url:
        return False
    for pattern in _URL_IDS:
        match = pattern.match(url)
        if match:
            return match.group("id").lower() in citation.lower()
    return False


@dataclass(frozen=True, slots=True)
class ReferenceGroup:
    """A run of references of one group (Guidelines, Drug labels, Trials, Reviews and other)."""

    heading: str
    slug: str
    references: tuple[ReferenceView, ...]


@dataclass(frozen=True, slots=True)
class PlanStepView:
    """One plan step: its words, the options' labels, what it rests on, its checks."""

    order: int
    codes: tuple[str, ...]
    text: str
    status: str
    status_label: str
    rests_on: tuple[str, ...]
    #: the checks before this step alone (those before several steps are in ``plan_checks``)
    checks: tuple[str, ...]
    cites: tuple[Cite, ...]


@dataclass(frozen=True, slots=True)
class PresumptionView:
    """A presumption: the field's label, the presumed value in words, why, sources."""

    field: str
    label: str
    value: str
    why: str
    cites: tuple[Cite, ...]


@dataclass(frozen=True, slots=True)
class WhatIfView:
    """What changes if a presumption is wrong, in one sentence."""

    field: str
    value: str
    summary: str


@dataclass(frozen=True, slots=True)
class DoseGroupView:
    """The doses of one drug of the plan."""

    code: str
    label: str
    doses: tuple[DoseView, ...]


@dataclass(frozen=True, slots=True)
class EligibilityBrief:
    """One eligibility check in a line: status, criteria not met, criteria not known."""

    name: str
    title: str
    status: str
    status_label: str
    unmet: tuple[str, ...]
    unknown: tuple[str, ...]
    #: Pre-treatment checks not yet stated: confirmed before treatment, not open questions.
    to_check: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NotAdvisedView:
    """Options not advised for one reason (one line per reason, not one card per option)."""

    codes: tuple[str, ...]
    labels: str
    status: str
    status_label: str
    reason: str
    cites: tuple[Cite, ...]
    rule_id: str


@dataclass(frozen=True, slots=True)
class MissingView:
    """A missing field: its reader label and why it matters."""

    field: str
    label: str
    why: str


@dataclass(frozen=True, slots=True)
class Report:
    """Everything a report template shows, in report order."""

    title: str
    case_id: str | None
    case_label: str
    kb_version: str
    kb_released: str
    contract_version: str
    disclaimer: str
    summary: str
    classification: tuple[ClassificationRow, ...]
    classification_notes: tuple[str, ...]
    critical_alerts: tuple[AlertView, ...]
    phases: tuple[PhaseView, ...]
    steps: tuple[StepView, ...]
    alerts: tuple[AlertView, ...]
    eligibility: tuple[EligibilityView, ...]
    disagreements: tuple[DisagreementView, ...]
    monitoring: tuple[MonitoringView, ...]
    missing_information: tuple[MissingInfo, ...]
    reference_groups: tuple[ReferenceGroup, ...]
    reference_count: int
    scope_applies: bool | None = True
    scope_reason: str = ""
    plan: tuple[PlanStepView, ...] = ()
    #: checks before several steps, one line per set of steps
    plan_checks: tuple[str, ...] = ()
    presumptions: tuple[PresumptionView, ...] = ()
    what_if: tuple[WhatIfView, ...] = ()
    doses: tuple[DoseGroupView, ...] = ()
    eligibility_brief: tuple[EligibilityBrief, ...] = ()
    not_advised: tuple[NotAdvisedView, ...] = ()
    missing: tuple[MissingView, ...] = ()
    verbose: bool = False
    generated: str | None = None


def _label(labels: Labels, group: str, code: str, default: str | None = None) -> str:
    """The reader label of ``code`` in ``group``; else ``default``; else the code in words."""
    found = labels.get(group, {}).get(code)
    if found is not None:
        return found
    return default if default is not None else code.replace("_", " ")


def _steps_words(orders: Sequence[int]) -> str:
    """'step 5', 'steps 5 and 6', 'steps 3 to 6', 'steps 2, 4 and 5'."""
    if len(orders) == 1:
        return f"step {orders[0]}"
    if len(orders) > 2 and list(orders) == list(range(orders[0], orders[-1] + 1)):
        return f"steps {orders[0]} to {orders[-1]}"
    return "steps " + join_words([str(n) for n in orders])


def split_checks(
    plan: Sequence[PlanStep],
) -> tuple[dict[int, tuple[str, ...]], tuple[str, ...]]:
    """The plan's pre-treatment checks said once each: a check that comes before one step
    stays with it (by step order); checks before several steps become one line per set of
    steps ("Before steps 5, 6 and 7: a pregnancy test in women who could be pregnant.").
    The answer's ``checks`` keep the full list per step (contract v2)."""
    before: dict[str, list[int]] = {}
    for st in plan:
        for check in st.checks:
            before.setdefault(check, []).append(st.order)
    own = {st.order: tuple(c for c in st.checks if len(before[c]) == 1) for st in plan if st.checks}
    shared: dict[tuple[int, ...], list[str]] = {}
    for check, orders in before.items():
        if len(orders) > 1:
            shared.setdefault(tuple(orders), []).append(check)
    lines = tuple(
        f"Before {_steps_words(orders)}: {', '.join(checks)}." for orders, checks in shared.items()
    )
    return own, lines


def build_report(
    answer: Answer, labels: Labels, *, verbose: bool = False, generated: str | None = None
) -> Report:
    """Lay the answer out as report rows, without adding or dropping anything clinical.

    Args:
        answer: the engine's answer.
        labels: reader labels (``KnowledgeBase.labels``; ``fields`` holds the field labels).
        verbose: show rule ids and contract codes (for review), not only words.
        generated: when the report was made (shown in its header); None leaves it out.

    Returns:
        The report view that both the Markdown and the HTML templates render.
    """
    numbers = {ref.id: n for n, ref in enumerate(answer.references, start=1)}

    def cites(ids: Iterable[str]) -> tuple[Cite, ...]:
        # The same source cited twice gets one marker; markers read in reference-list order
        # (an id missing from the list, which the engine never produces, sorts last).
        unique = dict.fromkeys(ids)
        found = (Cite(numbers.get(i), i) for i in unique)
        return tuple(sorted(found, key=lambda c: (c.number is None, c.number or 0)))

    def alert_view(a: Alert) -> AlertView:
        severity = str(a.severity)
        return AlertView(
            code=str(a.code),
            severity=severity,
            severity_label=_label(labels, "severities", severity, _SEVERITY_LABELS.get(severity)),
            message=a.message,
            cites=cites(a.evidence),
            rule_id=a.rule_id,
        )

    c = answer.classification
    classification = (
        ClassificationRow(
            "who_2019", "WHO 2019", _label(labels, "who_2019", c.who_2019), c.who_2019
        ),
        ClassificationRow(
            "grade",
            "Grade",
            "not stated" if c.grade is None else _label(labels, "values", c.grade),
            c.grade or "",
        ),
        ClassificationRow("stage", "Stage", c.stage, c.stage),
        ClassificationRow(
            "site_group", "Site group", _label(labels, "site_groups", c.site_group), c.site_group
        ),
        ClassificationRow(
            "functional",
            "Functional status",
            _label(labels, "values", c.functional),
            c.functional,
        ),
    )

    def rec_view(index: int, r: Recommendation) -> RecommendationView:
        status = str(r.status)
        return RecommendationView(
            index=index,
            code=str(r.code),
            title=capfirst(_label(labels, "interventions", str(r.code))),
            status=status,
            status_label=_label(labels, "statuses", status, _STATUS_LABELS.get(status)),
            phase=str(r.phase),
            order=r.order,
            rationale=r.rationale,
            cites=cites(r.evidence),
            rule_id=r.rule_id,
            applies_if=r.applies_if,
            dosing=tuple(DoseView(d.text, cites(d.evidence)) for d in r.dosing),
        )

    recs = [rec_view(i, r) for i, r in enumerate(answer.recommendations, start=1)]
    phases = tuple(
        PhaseView(str(p), _label(labels, "phases", str(p)), members)
        for p in Phase
        if (members := tuple(r for r in recs if r.phase == str(p)))
    )

    # Sequencing: the positive options by step (stable sort keeps the answer's order within
    # a step); an option repeated with the same branch condition is listed once.
    steps: dict[int, dict[tuple[str, str | None], StepOption]] = {}
    pairs = zip(recs, answer.recommendations, strict=True)
    for view, rec in sorted(pairs, key=lambda pair: pair[0].order):
        if not rec.status.positive:
            continue
        condition = rec.applies_if.condition if rec.applies_if else None
        option = StepOption(view.code, _label(labels, "interventions", view.code), condition)
        steps.setdefault(view.order, {}).setdefault((view.code, condition), option)
    step_views = tuple(
        StepView(order, tuple(options.values())) for order, options in sorted(steps.items())
    )

    alerts = tuple(alert_view(a) for a in answer.alerts)
    critical = tuple(a for a in alerts if a.severity == Severity.CRITICAL.value)

    met_words = {True: ("yes", "Yes"), False: ("no", "No"), None: ("unknown", "Unknown")}
    eligibility = tuple(
        EligibilityView(
            name=str(e.name),
            title=e.title,
            status=str(e.status),
            status_label=_label(
                labels,
                "eligibility_statuses",
                str(e.status),
                _ELIGIBILITY_LABELS.get(str(e.status)),
            ),
            criteria=tuple(
                CriterionView(
                    k.name,
                    *(
                        ("check", "To check before treatment")
                        if k.met is None and k.check
                        else met_words[k.met]
                    ),
                    k.detail,
                    cites(k.evidence),
                )
                for k in e.criteria
            ),
            note=e.note,
        )
        for e in answer.eligibility
    )

    groups: list[ReferenceGroup] = []
    for n, ref in enumerate(answer.references, start=1):
        heading = _REFERENCE_GROUPS.get(str(ref.kind), "Reviews and other")
        ref_view = ReferenceView(
            n,
            ref.id,
            str(ref.kind),
            ref.citation,
            ref.year,
            ref.url,
            ref.note,
            ref.verified,
            url_in_citation(ref.url, ref.citation),
        )
        if groups and groups[-1].heading == heading:
            last = groups.pop()
            groups.append(ReferenceGroup(heading, last.slug, (*last.references, ref_view)))
        else:
            slug = re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")
            groups.append(ReferenceGroup(heading, slug, (ref_view,)))

    def field_label(path: str) -> str:
        return _label(labels, "fields", path)

    def option_label(code: str) -> str:
        return _label(labels, "interventions", code)

    own_checks, plan_checks = split_checks(answer.plan)
    plan = tuple(
        PlanStepView(
            order=st.order,
            codes=tuple(str(c) for c in st.codes),
            text=st.text,
            status=str(st.status),
            status_label=_label(
                labels, "statuses", str(st.status), _STATUS_LABELS.get(str(st.status))
            ),
            rests_on=tuple(field_label(f) for f in st.presumes),
            checks=own_checks.get(st.order, ()),
            cites=cites(st.evidence),
        )
        for st in answer.plan
    )
    presumptions = tuple(
        PresumptionView(
            field=p.field,
            label=capfirst(field_label(p.field)),
            value=value_words(labels, p.value),
            why=p.why,
            cites=cites(p.evidence),
        )
        for p in answer.presumptions
    )
    what_if = tuple(WhatIfView(w.field, str(w.value), w.summary) for w in answer.what_if)
    in_plan = [c for st in answer.plan for c in st.codes]
    doses: list[DoseGroupView] = []
    for code in dict.fromkeys(in_plan):
        lines = {
            d.text: d
            for r in answer.recommendations
            if r.code == code and r.status.positive
            for d in r.dosing
        }
        if lines:
            doses.append(
                DoseGroupView(
                    str(code),
                    capfirst(option_label(str(code))),
                    tuple(DoseView(d.text, cites(d.evidence)) for d in lines.values()),
                )
            )
    brief = tuple(
        EligibilityBrief(
            name=str(e.name),
            title=e.title,
            status=str(e.status),
            status_label=_label(
                labels,
                "eligibility_statuses",
                str(e.status),
                _ELIGIBILITY_LABELS.get(str(e.status)),
            ),
            unmet=tuple(k.name for k in e.criteria if k.met is False),
            unknown=tuple(k.name for k in e.criteria if k.met is None and not k.check),
            to_check=tuple(k.name for k in e.criteria if k.met is None and k.check),
        )
        for e in answer.eligibility
    )
    not_advised: dict[str, list[Recommendation]] = {}
    for r in answer.recommendations:
        if not r.status.positive and r.applies_if is None:
            not_advised.setdefault(r.rule_id, []).append(r)
    advised_against = tuple(
        NotAdvisedView(
            codes=tuple(str(r.code) for r in recs),
            labels=capfirst(", ".join(dict.fromkeys(option_label(str(r.code)) for r in recs))),
            status=str(recs[0].status),
            status_label=_label(
                labels, "statuses", str(recs[0].status), _STATUS_LABELS.get(str(recs[0].status))
            ),
            reason=recs[0].rationale,
            cites=cites(recs[0].evidence),
            rule_id=rule_id,
        )
        for rule_id, recs in sorted(
            not_advised.items(), key=lambda item: str(item[1][0].status) != "contraindicated"
        )
    )
    # The reader gets why a field matters; what it decides here, option by option, is for
    # review (verbose) and the JSON. A field the plan already lists as a check before a step
    # is not asked for again (verbose keeps the strict list).
    missing = tuple(
        MissingView(
            m.field,
            capfirst(field_label(m.field)),
            m.why if verbose else m.why.split(" Here it decides:", 1)[0],
        )
        for m in answer.missing_information
        if verbose or m.field not in answer.checked
    )

    return Report(
        scope_applies=answer.scope.applies,
        scope_reason=answer.scope.reason,
        plan=plan,
        plan_checks=plan_checks,
        presumptions=presumptions,
        what_if=what_if,
        doses=tuple(doses),
        eligibility_brief=brief,
        not_advised=advised_against,
        missing=missing,
        verbose=verbose,
        generated=generated,
        title=TITLE,
        case_id=answer.case_id,
        case_label=answer.case_id if answer.case_id else "(no case id)",
        kb_version=answer.kb_version,
        kb_released=answer.kb_released,
        contract_version=answer.contract_version,
        disclaimer=DISCLAIMER,
        summary=answer.summary,
        classification=classification,
        classification_notes=c.notes,
        critical_alerts=critical,
        phases=phases,
        steps=step_views,
        alerts=alerts,
        eligibility=eligibility,
        disagreements=tuple(
            DisagreementView(d.topic, d.text, cites(d.evidence)) for d in answer.disagreements
        ),
        monitoring=tuple(
            MonitoringView(m.what, m.interval, m.reason, cites(m.evidence))
            for m in answer.monitoring
        ),
        missing_information=answer.missing_information,
        reference_groups=tuple(groups),
        reference_count=len(answer.references),
    )


# --- templates ---------------------------------------------------------------------------


def css_string(text: object) -> Markup:
    r"""Text made safe inside a double-quoted CSS string of a ``<style>`` element.

    Every character but letters, digits, space and ``.-_:`` becomes a CSS escape, so no value
    can end the string, the rule or the style element (HTML escaping does not apply there).

    Example:
        >>> print(css_string('case "7" </style>'))
        case \000022 7\000022  \00003C /style\00003E
    """
    from markupsafe import Markup

    def one(c: str) -> str:
        plain = (c.isalnum() and c.isascii()) or c in " .-_:/"
        return c if plain else f"\\{ord(c):06X} "

    return Markup("".join(one(c) for c in str(text)))


def render_report(
    answer: Answer,
    labels: Labels | None,
    *,
    html: bool,
    verbose: bool = False,
    generated: str | None = None,
) -> str:
    """The report view of ``answer`` through the packaged HTML or Markdown template."""
    report = build_report(
        answer,
        default_labels() if labels is None else labels,
        verbose=verbose,
        generated=generated,
    )
    template = "report.html.j2" if html else "report.md.j2"
    return template_environment(html).get_template(template).render(report=report)


@lru_cache(maxsize=2)
def template_environment(html: bool) -> jinja2.Environment:
    """The Jinja2 environment for the packaged report templates.

    Args:
        html: True for the HTML report (autoescape on), False for Markdown (autoescape off).

    Returns:
        A strict environment: an undefined name is an error, never an empty string.
    """
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("netboard.reports", "templates"),
        autoescape=html,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["capfirst"] = capfirst
    env.filters["css_string"] = css_string
    if not html:
        from netboard.reports.markdown import code_span, escape_cell, escape_inline, escape_markdown

        env.filters["md"] = escape_markdown
        env.filters["inline"] = escape_inline
        env.filters["cell"] = escape_cell
        env.filters["code"] = code_span
    return env


def default_labels() -> Labels:
    """The reader labels of the packaged knowledge base (loaded once, then cached)."""
    from netboard.kb import load_kb

    return load_kb().labels
