"""The bottom line: a few sentences assembled from the answer itself (no new clinical logic)."""

from __future__ import annotations

from collections.abc import Callable

from netboard.answer import Answer, Recommendation
from netboard.case import Case
from netboard.engine.explain import label_code, label_field, label_value
from netboard.kb.model import KnowledgeBase
from netboard.vocab import Severity, Status


def _labels(kb: KnowledgeBase, answer: Answer, keep: Callable[[Recommendation], bool]) -> str:
    names = sorted({label_code(kb, r.code.value) for r in answer.recommendations if keep(r)})
    return ", ".join(names[:8]) + (" and others" if len(names) > 8 else "")


def describe_tumor(answer: Answer, kb: KnowledgeBase, case: Case) -> str:
    """'Well-differentiated NET G2 (Ki-67 8%) of the sigmoid colon, stage IV (...)'."""
    c = answer.classification
    who = kb.labels.get("who_2019", {}).get(c.who_2019, "Neuroendocrine neoplasm (type not stated)")
    ki67 = f" (Ki-67 {case.ki67_percent:g}%)" if case.ki67_percent is not None else ""
    if case.primary_site is None:
        site = "primary site not stated"
    else:
        site = "of the " + kb.sites[case.primary_site].label
        if case.primary_site.value == "unknown_primary":
            site = "of unknown primary"
        if case.pancreas_region is not None:
            site = f"of the pancreatic {case.pancreas_region.value}"
    if c.who_2019 == "unknown":
        # A word such as "NET" in the question is a presumption of its own (well-differentiated);
        # name the tumour as the question did, and say what is still not stated.
        words = any(
            p.field == "differentiation" and p.value == "well" and p.words
            for p in answer.presumptions
        )
        noun = "Neuroendocrine tumour" if words else "Neuroendocrine neoplasm"
        if c.grade is not None:
            noun += f" {c.grade.upper()}"
        missing = [
            what
            for what, unknown in (("grade", c.grade is None), ("differentiation", not words))
            if unknown
        ]
        who = f"{noun}{ki67} {site}"
        site = f"({' or '.join(missing)} not stated)" if missing else ""
    else:
        who += ki67
    parts = [f"{who} {site}".strip(), f"stage {c.stage}"]
    if c.functional not in ("none", "unknown"):
        parts.append(label_value(kb, c.functional))
    return ", ".join(parts) + "."


def summarize(answer: Answer, kb: KnowledgeBase, case: Case, bottom_line: str = "") -> str:
    """The summary: the tumour, then the board's bottom line (the plan, what it presumes,
    what changes it most) and the critical alerts."""
    sentences = [describe_tumor(answer, kb, case)]
    if bottom_line:
        sentences.append(bottom_line)
        critical = [a for a in answer.alerts if a.severity is Severity.CRITICAL]
        if critical:
            sentences.append("Critical: " + " ".join(a.message for a in critical[:2]))
        return " ".join(sentences)
    steps: dict[int, list[str]] = {}
    for r in answer.recommendations:
        if r.status is Status.RECOMMENDED and r.applies_if is None:
            label = label_code(kb, r.code.value)
            if label not in steps.setdefault(r.order, []):
                steps[r.order].append(label)
    if steps:
        plan = "; ".join(f"({n}) " + " or ".join(steps[n]) for n in sorted(steps)[:6])
        sentences.append(f"Plan in sequence: {plan}.")
    options = _labels(kb, answer, lambda r: r.status is Status.CONSIDER and r.applies_if is None)
    if options:
        sentences.append("Also to consider: " + options + ".")
    branches = _labels(kb, answer, lambda r: r.status.positive and r.applies_if is not None)
    if branches:
        sentences.append("Depending on data not yet given: " + branches + ".")
    blocked = _labels(
        kb, answer, lambda r: r.status is Status.CONTRAINDICATED and r.applies_if is None
    )
    if blocked:
        sentences.append("Contraindicated: " + blocked + ".")
    critical = [a for a in answer.alerts if a.severity is Severity.CRITICAL]
    if critical:
        sentences.append("Critical: " + " ".join(a.message for a in critical[:2]))
    if answer.missing_information:
        fields = [label_field(kb, m.field) for m in answer.missing_information[:5]]
        sentences.append("Would change or firm up the answer: " + ", ".join(fields) + ".")
    return " ".join(sentences)
