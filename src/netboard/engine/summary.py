"""The bottom line: a few sentences assembled from the answer itself (no new clinical logic)."""

from __future__ import annotations

from netboard.answer import Answer
from netboard.kb.schema import KnowledgeBase
from netboard.vocab import Severity


def _code(kb: KnowledgeBase, code: str) -> str:
    return kb.labels.get("interventions", {}).get(code, code.replace("_", " "))


def describe_tumor(answer: Answer, kb: KnowledgeBase) -> str:
    """'Well-differentiated NET G2 of the sigmoid colon, stage IV (...)'."""
    c = answer.classification
    who = kb.labels.get("who_2019", {}).get(c.who_2019, "Neuroendocrine neoplasm (type not stated)")
    site = kb.labels.get("site_groups", {}).get(c.site_group, c.site_group.replace("_", " "))
    parts = [f"{who} ({site})", f"stage {c.stage}"]
    if c.functional not in ("none", "unknown"):
        parts.append(kb.labels.get("values", {}).get(c.functional, c.functional.replace("_", " ")))
    return ", ".join(parts) + "."


def summarize(answer: Answer, kb: KnowledgeBase) -> str:
    """Compose the summary from the sequenced plan, the critical alerts and what is missing."""
    sentences = [describe_tumor(answer, kb)]
    steps: dict[int, list[str]] = {}
    for r in answer.recommendations:
        if r.status.positive and r.applies_if is None:
            steps.setdefault(r.order, [])
            label = _code(kb, r.code.value)
            if label not in steps[r.order]:
                steps[r.order].append(label)
    if steps:
        plan = "; ".join(
            f"({n}) " + " or ".join(steps[n]) for n in sorted(steps)[:6]
        )
        sentences.append(f"Plan in sequence: {plan}.")
    branches = sorted({
        _code(kb, r.code.value) for r in answer.recommendations if r.status.positive and r.applies_if
    })
    if branches:
        sentences.append(
            "Depending on data not yet given, also: " + ", ".join(branches[:8])
            + (" and more" if len(branches) > 8 else "") + "."
        )
    blocked = sorted({
        _code(kb, r.code.value) for r in answer.recommendations
        if not r.status.positive and r.applies_if is None
    })
    if blocked:
        sentences.append("Not for this patient: " + ", ".join(blocked) + ".")
    critical = [a for a in answer.alerts if a.severity is Severity.CRITICAL]
    if critical:
        sentences.append("Critical: " + " ".join(a.message for a in critical[:2]))
    if answer.missing_information:
        fields = [m.field for m in answer.missing_information[:5]]
        sentences.append("Would change or firm up the answer: " + ", ".join(fields) + ".")
    return " ".join(sentences)
