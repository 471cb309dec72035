"""CDS Hooks 2.0: the discovery document, the hook request, and the answer as cards.

This module is pure (no HTTP): ``app.py`` reads the request, fetches what prefetch lacks and
calls these functions. The cards show what the answer JSON carries, never more:

- a **plan** card (info): the sequenced options with their status and the eligibility checks;
- one card per **critical or warning alert**, with that indicator; info alerts stay in the plan;
- a **missing data** card: the fields that would change the plan and what FHIR could not map,
  with an order suggestion where the knowledge base names an orderable test.

Every card's ``source`` names netboard and the knowledge-base version and links to the
``/about`` page with the source attributes (citation, developer, funding, release date, the
input variables used).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from netboard.errors import CaseError, Problem
from netboard.service.feedback import IssuedCard

if TYPE_CHECKING:
    from netboard.answer import Answer
    from netboard.fhir import FhirCase
    from netboard.kb import KnowledgeBase

SERVICE_ID = "netboard-net-plan"
HOOK = "patient-view"
SUMMARY_LIMIT = 139  # the spec asks for fewer than 140 characters
#: Prefetch keys without which no plan can be given (the spec's 412 when they cannot be had).
REQUIRED_PREFETCH = ("patient", "conditions")
OVERRIDE_SYSTEM = "urn:netboard:override-reason"
OVERRIDE_REASONS = (
    ("clinical-judgement", "Clinical judgement differs for this patient"),
    ("patient-preference", "Patient preference"),
    ("data-incorrect", "The patient data shown are incorrect or out of date"),
    ("already-addressed", "Already addressed (for example at a tumour board)"),
)
_TOKEN = re.compile(r"\{\{\s*([A-Za-z.]+)\s*\}\}")

_CODING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["code"],
    "properties": {
        "system": {"type": "string"},
        "code": {"type": "string"},
        "display": {"type": "string"},
    },
}
#: The card this service sends (CDS Hooks 2.0 "Card Attributes"), for the OpenAPI document.
CARD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["summary", "indicator", "source"],
    "properties": {
        "uuid": {"type": "string"},
        "summary": {"type": "string", "maxLength": 139},
        "detail": {"type": "string", "description": "GitHub-flavoured Markdown"},
        "indicator": {"type": "string", "enum": ["info", "warning", "critical"]},
        "source": {
            "type": "object",
            "required": ["label"],
            "properties": {
                "label": {"type": "string"},
                "url": {"type": "string"},
                "icon": {"type": "string"},
                "topic": _CODING_SCHEMA,
            },
        },
        "suggestions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["label"],
                "properties": {
                    "label": {"type": "string"},
                    "uuid": {"type": "string"},
                    "isRecommended": {"type": "boolean"},
                    "actions": {"type": "array", "items": {"type": "object"}},
                },
            },
        },
        "selectionBehavior": {"type": "string", "enum": ["at-most-one", "any"]},
        "overrideReasons": {"type": "array", "items": _CODING_SCHEMA},
        "links": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["label", "url", "type"],
                "properties": {
                    "label": {"type": "string"},
                    "url": {"type": "string"},
                    "type": {"type": "string", "enum": ["absolute", "smart"]},
                    "appContext": {"type": "string"},
                },
            },
        },
    },
}
#: The hook's answer: the cards (none when no neuroendocrine neoplasm is recorded).
RESPONSE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["cards"],
    "properties": {
        "cards": {"type": "array", "items": CARD_SCHEMA},
        "systemActions": {"type": "array", "items": {"type": "object"}},
    },
}
#: An OperationOutcome as this service sends it (412).
OPERATION_OUTCOME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"const": "OperationOutcome"},
        "issue": {"type": "array", "items": {"type": "object", "required": ["severity", "code"]}},
    },
}


def discovery(kb: KnowledgeBase, templates: Mapping[str, str]) -> dict[str, Any]:
    """The ``GET /cds-services`` document."""
    return {
        "services": [
            {
                "hook": HOOK,
                "id": SERVICE_ID,
                "title": "netboard: NET tumour board plan",
                "description": (
                    "Guideline-based plan for a patient with a neuroendocrine neoplasm: "
                    "sequenced options with their sources, eligibility checks, alerts, and "
                    f"the missing data that would change the plan (knowledge base {kb.version})."
                ),
                "prefetch": dict(templates),
                "usageRequirements": (
                    "FHIR R4 Patient, Condition, Observation, MedicationRequest/Statement/"
                    "Administration and Procedure read access for the patient in context."
                ),
            }
        ]
    }


@dataclass(frozen=True, slots=True)
class HookRequest:
    """The parts of a CDS Hooks request this service uses (validated)."""

    hook_instance: str
    patient_id: str
    context: Mapping[str, Any]
    prefetch: Mapping[str, Any]
    fhir_server: str | None
    access_token: str | None = field(default=None, repr=False)


def parse_hook_request(body: Any) -> HookRequest:
    """Validate a hook call; raise ``CaseError`` naming every field at fault."""
    problems: list[Problem] = []
    if not isinstance(body, Mapping):
        raise CaseError([Problem("(body)", "expected a CDS Hooks request object")])
    if body.get("hook") != HOOK:
        problems.append(Problem("hook", f"expected {HOOK!r}"))
    instance = body.get("hookInstance")
    if not isinstance(instance, str) or not instance.strip():
        problems.append(Problem("hookInstance", "expected a string (a UUID)"))
    context = body.get("context")
    patient_id = None
    if not isinstance(context, Mapping):
        problems.append(Problem("context", "expected an object"))
        context = {}
    else:
        patient_id = context.get("patientId")
        if not isinstance(patient_id, str) or not patient_id.strip():
            problems.append(Problem("context.patientId", "expected the patient's FHIR id"))
        if not isinstance(context.get("userId"), str):
            problems.append(Problem("context.userId", "expected a string such as Practitioner/1"))
    prefetch = body.get("prefetch")
    if prefetch is None:
        prefetch = {}
    elif not isinstance(prefetch, Mapping):
        problems.append(Problem("prefetch", "expected an object"))
        prefetch = {}
    server = body.get("fhirServer")
    if server is not None and not (
        isinstance(server, str) and server.startswith(("https://", "http://"))
    ):
        problems.append(Problem("fhirServer", "expected an http(s) URL"))
        server = None
    token = None
    auth = body.get("fhirAuthorization")
    if auth is not None:
        if server is None:
            problems.append(Problem("fhirAuthorization", "given without fhirServer"))
        if not isinstance(auth, Mapping) or not isinstance(auth.get("access_token"), str):
            problems.append(Problem("fhirAuthorization.access_token", "expected a string"))
        elif str(auth.get("token_type", "Bearer")).lower() != "bearer":
            problems.append(Problem("fhirAuthorization.token_type", "expected 'Bearer'"))
        else:
            token = auth["access_token"]
    if problems:
        raise CaseError(problems)
    return HookRequest(
        hook_instance=str(instance),
        patient_id=str(patient_id),
        context=context,
        prefetch=prefetch,
        fhir_server=server.rstrip("/") if isinstance(server, str) else None,
        access_token=token,
    )


def failed_prefetch(prefetch: Mapping[str, Any]) -> dict[str, str]:
    """Prefetch keys holding an OperationOutcome (the EHR's query failed), with its words.

    CDS Hooks 2.0: "If the CDS Client encounters errors prefetching the requested data,
    OperationOutcome(s) SHOULD be used to communicate those errors"; such a key is fetched
    again, and named on the card when that fails too. (A null value means "no data".)
    """
    out: dict[str, str] = {}
    for key, value in prefetch.items():
        if isinstance(value, Mapping) and value.get("resourceType") == "OperationOutcome":
            texts = []
            for issue in value.get("issue") or []:
                if isinstance(issue, Mapping):
                    text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
                    if isinstance(text, str) and text.strip():
                        texts.append(" ".join(text.split()))
            out[str(key)] = ("; ".join(texts) or "an OperationOutcome without details")[:200]
    return out


def fill_template(template: str, context: Mapping[str, Any]) -> str | None:
    """A prefetch template with its ``{{context.x}}`` tokens filled; None if one is missing.

    Example:
        >>> fill_template("Condition?patient={{context.patientId}}", {"patientId": "p1"})
        'Condition?patient=p1'
        >>> fill_template("Encounter/{{context.encounterId}}", {"patientId": "p1"}) is None
        True
    """
    missing = False

    def value(m: re.Match[str]) -> str:
        nonlocal missing
        name = m.group(1)
        if name.startswith("context."):
            v = context.get(name.removeprefix("context."))
            if isinstance(v, str | int) and not isinstance(v, bool):
                return str(v)
        elif name == "userPractitionerId":
            user = context.get("userId")
            if isinstance(user, str) and user.startswith("Practitioner/"):
                return user.removeprefix("Practitioner/")
        missing = True
        return ""

    filled = _TOKEN.sub(value, template)
    return None if missing else filled


def orders(kb: KnowledgeBase) -> dict[str, dict[str, Any]]:
    """An orderable laboratory test per case field, read from the FHIR mapping table.

    A missing ``ki67_percent`` or ``labs.*`` value can be ordered with the first verified
    LOINC code the table reads it from; other missing data (imaging, the surgeon's judgement)
    is named on the card but gets no draft order.
    """
    out: dict[str, dict[str, Any]] = {}
    if kb.fhir is None:
        return out
    loinc = kb.fhir.systems.get("loinc")
    for (system, code), obs in kb.fhir.observations.items():
        field_ = obs.field
        if (
            field_ is None
            or field_ in out
            or system != loinc
            or not obs.row.verified
            or not (field_ == "ki67_percent" or field_.startswith("labs."))
        ):
            continue
        out[field_] = {"system": system, "code": code, "display": obs.row.display}
    return out


# --- cards ---------------------------------------------------------------------------------


def _short(text: str, limit: int = SUMMARY_LIMIT) -> str:
    """``text`` on one line, cut at a word boundary to at most ``limit`` characters."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


def _source(kb: KnowledgeBase, base_url: str) -> dict[str, Any]:
    return {"label": f"netboard (knowledge base {kb.version})", "url": f"{base_url}/about"}


def _label(kb: KnowledgeBase, group: str, code: str) -> str:
    return kb.labels.get(group, {}).get(code, code.replace("_", " "))


def _cites(ids: Sequence[str], numbers: Mapping[str, int]) -> str:
    return "".join(f"[{numbers[i]}]" for i in ids if i in numbers)


def _references_md(answer: Answer, numbers: Mapping[str, int], used: set[str]) -> str:
    from netboard.reports.markdown import escape_inline

    lines = [
        f"{numbers[r.id]}. {escape_inline(r.citation)}"
        + (f" ({r.year})" if r.year else "")
        + (f" <{r.url}>" if r.url else "")
        for r in answer.references
        if r.id in used
    ]
    return "**Sources**\n\n" + "\n".join(lines) if lines else ""


#: The plan card's detail stays about this long (characters); the full report is linked.
PLAN_DETAIL_LIMIT = 4000


def _short_citation(citation: str, year: int | None) -> str:
    """A citation as first author (or issuer) and year: the card's sources are numbered as in
    the report, which has them in full."""
    author = re.split(r"[,.;(]", citation, maxsplit=1)[0].strip()
    etal = " et al." if "," in citation.split(".", 1)[0] else ""
    return f"{author}{etal}" + (f" {year}" if year else "")


def _plan_detail(answer: Answer, kb: KnowledgeBase, numbers: Mapping[str, int]) -> str:
    """The board answer for a card: bottom line, plan, presumptions, what-ifs, sources.

    Citation numbers are those of the full report (the answer's reference list), so a number
    means the same source on the card and in the report. What does not fit in about 4 kB is
    left to the report link, least important first: options not advised, then what-ifs.
    """
    from netboard.reports.markdown import escape_inline, escape_markdown
    from netboard.reports.report import split_checks
    from netboard.words import value_words

    used: set[str] = set()

    def cite(ids: Sequence[str]) -> str:
        found = sorted({numbers[i] for i in ids if i in numbers})
        used.update(i for i in ids if i in numbers)
        return "".join(f"[{n}]" for n in found)

    head = escape_markdown(answer.summary)
    own_checks, plan_checks = split_checks(answer.plan)
    plan = [
        f"{st.order}. {escape_inline(st.text)}{cite(st.evidence)}"
        + (
            f" *Check first: {escape_inline(', '.join(own_checks[st.order]))}.*"
            if own_checks.get(st.order)
            else ""
        )
        for st in answer.plan
    ]
    before = " ".join(f"*{escape_inline(line)}*" for line in plan_checks)

    presumed = [
        f"{escape_inline(_label(kb, 'fields', p.field))}: "
        f"{escape_inline(value_words(kb.labels, p.value))}"
        for p in answer.presumptions
    ]
    what_if = [f"- {escape_inline(w.summary)}" for w in answer.what_if]
    avoid: dict[str, list[str]] = {}
    for r in answer.recommendations:
        if not r.status.positive and r.applies_if is None:
            avoid.setdefault(r.rule_id, []).append(_label(kb, "interventions_short", r.code))
    not_advised = [
        f"- {escape_inline(', '.join(dict.fromkeys(labels)))}: "
        + _label(kb, "statuses", next(r.status for r in answer.recommendations if r.rule_id == rid))
        for rid, labels in avoid.items()
    ]
    tail = (
        f"Knowledge base {kb.version} (released {kb.released}). Decision support for health "
        "professionals; it does not replace a NET multidisciplinary tumour board."
    )

    def compose(whatifs: int, avoid_n: int) -> str:
        parts = [head]
        if plan:
            parts.append("**Plan**\n\n" + "\n".join(plan) + (f"\n\n{before}" if before else ""))
        if presumed:
            parts.append("**Presumed** (not stated): " + "; ".join(presumed) + ".")
        if what_if[:whatifs]:
            more = len(what_if) - whatifs
            extra = [f"- and {more} more in the report"] if more > 0 else []
            parts.append("**If a presumption is wrong**\n\n" + "\n".join(what_if[:whatifs] + extra))
        if not_advised[:avoid_n]:
            parts.append("**Not advised**\n\n" + "\n".join(not_advised[:avoid_n]))
        refs = [
            f"[{numbers[r.id]}] {escape_inline(_short_citation(r.citation, r.year))}"
            for r in answer.references
            if r.id in used
        ]
        if refs:
            parts.append("**Sources** (numbered as in the full report): " + "; ".join(refs) + ".")
        parts.append(tail)
        return "\n\n".join(parts)

    whatifs, avoid_n = len(what_if), len(not_advised)
    text = compose(whatifs, avoid_n)
    while len(text) > PLAN_DETAIL_LIMIT and (avoid_n or whatifs > 2):
        if avoid_n:
            avoid_n = 0
        else:
            whatifs -= 1
        text = compose(whatifs, avoid_n)
    return text


#: Items of a group shown on the missing-data card; the rest are counted (the report has all).
ITEMS_PER_GROUP = 3


def _group_of(u: Any) -> str:
    """The heading an unmapped item is grouped under: its case field, else its resource type."""
    from netboard.fields import registry

    if u.field:
        f = registry().fields.get(u.field)
        return f.label if f is not None else u.field.replace("_", " ")
    return u.element.split(".", 1)[0] or "record"


def _unmapped_md(fhir: FhirCase) -> list[str]:
    """The NEN-relevant unmapped items grouped and counted; the others counted only."""
    from netboard.reports.markdown import escape_inline

    groups: dict[str, list[Any]] = {}
    for u in fhir.unmapped:
        if u.relevant:
            groups.setdefault(_group_of(u), []).append(u)
    parts = []
    if groups:
        lines = []
        for name, items in groups.items():
            shown = "; ".join(
                f"{escape_inline(u.reason)} ({escape_inline(u.resource)})"
                for u in items[:ITEMS_PER_GROUP]
            )
            more = len(items) - ITEMS_PER_GROUP
            tail = f"; and {more} more" if more > 0 else ""
            lines.append(f"- **{escape_inline(name)}** ({len(items)}): {shown}{tail}")
        total = sum(len(x) for x in groups.values())
        parts.append(f"**Found in the record but not used** ({total})\n\n" + "\n".join(lines))
    others = sum(1 for u in fhir.unmapped if not u.relevant)
    if others:
        parts.append(
            f"{others} other record item{'s' if others != 1 else ''} (codes netboard does not "
            "read for a NEN plan) are listed in the full report."
        )
    return parts


def _missing_detail(answer: Answer, fhir: FhirCase | None, notes: Sequence[str]) -> str:
    from netboard.reports.markdown import escape_inline

    parts = []
    if answer.missing_information:
        parts.append(
            "**Would change or firm up the plan**\n\n"
            + "\n".join(
                f"- `{m.field}`: {escape_inline(m.why)}" for m in answer.missing_information
            )
        )
    if fhir is not None:
        parts.extend(_unmapped_md(fhir))
    if notes:
        parts.append("\n".join(f"- {escape_inline(n)}" for n in notes))
    return "\n\n".join(parts)


def scope_card(answer: Answer) -> dict[str, Any] | None:
    """A warning card when the plan presumes a NEN (``scope.applies`` null), else None."""
    if answer.scope.applies is not None or not answer.scope.reason:
        return None
    return {
        "summary": _short(
            "netboard presumes a neuroendocrine neoplasm: no neuroendocrine histology is recorded"
        ),
        "indicator": "warning",
        "detail": answer.scope.reason,
    }


def build_cards(
    answer: Answer,
    kb: KnowledgeBase,
    *,
    base_url: str,
    report_url: str | None,
    fhir: FhirCase | None = None,
    notes: Sequence[str] = (),
    orders: Mapping[str, Mapping[str, Any]] | None = None,
    patient_id: str | None = None,
) -> tuple[list[dict[str, Any]], list[IssuedCard]]:
    """The cards for an answer, and what the feedback store keeps of each."""
    numbers = {r.id: i for i, r in enumerate(answer.references, 1)}
    source = _source(kb, base_url)
    links = (
        [{"label": "Full netboard report", "url": report_url, "type": "absolute"}]
        if report_url
        else []
    )
    cards: list[dict[str, Any]] = []
    issued: list[IssuedCard] = []

    def add(card: dict[str, Any], kind: str, codes: Sequence[str], rules: Sequence[str]) -> None:
        card_id = str(uuid.uuid4())
        cards.append({"uuid": card_id, **card, "source": source, "links": links})
        issued.append(IssuedCard(card_id, kind, tuple(codes), tuple(rules)))

    presumed = scope_card(answer)
    if presumed is not None:
        add(presumed, "scope", [], [])
    for alert in answer.alerts:
        if alert.severity == "info":
            continue
        detail = alert.message + _cites(alert.evidence, numbers)
        detail += "\n\n" + _references_md(answer, numbers, set(alert.evidence))
        add(
            {
                "summary": _short(alert.message),
                "indicator": alert.severity,
                "detail": detail.strip(),
            },
            "alert",
            [alert.code],
            [alert.rule_id],
        )

    positives = [r for r in answer.recommendations if r.status in ("recommended", "consider")]
    treatment = [
        st
        for st in answer.plan
        if "multidisciplinary_review" not in [str(c) for c in st.codes]
        and st.status == "recommended"
    ]
    if treatment:
        first = treatment[0]
        step = (" and " if first.join == "and" else " or ").join(
            _label(kb, "interventions_short", str(c)) for c in first.codes
        )
        then = (
            ", then " + _label(kb, "interventions_short", str(treatment[1].codes[0]))
            if len(treatment) > 1
            else ""
        )
        on = " (on stated presumptions)" if answer.presumptions else ""
        summary = f"netboard plan: first {step}{then}{on}"
    else:
        summary = "netboard plan: tumour board review first; no treatment step can be given yet"
    add(
        {
            "summary": _short(summary),
            "indicator": "info",
            "detail": _plan_detail(answer, kb, numbers),
            "overrideReasons": [
                {"system": OVERRIDE_SYSTEM, "code": c, "display": d} for c, d in OVERRIDE_REASONS
            ],
        },
        "plan",
        [r.code for r in positives],
        sorted({r.rule_id for r in answer.recommendations}),
    )

    unmapped = [u for u in fhir.unmapped if u.relevant] if fhir is not None else []
    if answer.missing_information or unmapped or notes:
        n = len(answer.missing_information)
        summary = (
            f"{n} missing data item{'s' if n != 1 else ''} would change or firm up this plan"
            if n
            else "Some record data could not be used for this plan"
        )
        card: dict[str, Any] = {
            "summary": _short(summary),
            "indicator": "info",
            "detail": _missing_detail(answer, fhir, notes),
        }
        suggestions = _order_suggestions(answer, orders or {}, patient_id)
        if suggestions:
            card["suggestions"] = suggestions
            card["selectionBehavior"] = "any"
        add(card, "missing", [m.field for m in answer.missing_information], [])
    return cards, issued


def _order_suggestions(
    answer: Answer, orders: Mapping[str, Mapping[str, Any]], patient_id: str | None
) -> list[dict[str, Any]]:
    """A draft ServiceRequest for each missing field the knowledge base can order a test for."""
    out = []
    for m in answer.missing_information:
        order = orders.get(m.field)
        if order is None:
            continue
        code: dict[str, Any] = {"text": order["display"]}
        if order.get("code"):
            code["coding"] = [
                {"system": order["system"], "code": order["code"], "display": order["display"]}
            ]
        request: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": "proposal",
            "code": code,
        }
        if patient_id:
            request["subject"] = {"reference": f"Patient/{patient_id}"}
        out.append(
            {
                "label": f"Order {order['display']}",
                "uuid": str(uuid.uuid4()),
                "isRecommended": False,
                "actions": [
                    {
                        "type": "create",
                        "description": f"Draft order: {order['display']}",
                        "resource": request,
                    }
                ],
            }
        )
    return out
