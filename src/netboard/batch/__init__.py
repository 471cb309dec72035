"""Cohort audit: the knowledge base's rules over a whole registry (contract "Cohort audit").

One result row per patient: ``id``; ``rec.CODE`` for every intervention code (that code's best
status for the patient, recommended > consider > not_recommended > contraindicated, None when it
does not come up); ``elig.NAME`` for each eligibility set; ``alerts`` and ``missing`` (lists, in
answer order); ``concordant`` where the registry says what was ``given`` first-line.

:func:`audit_row` is the reference: it derives the row from ``recommend``'s answer. The batch
engines compile the same rules to column expressions and must agree with it field for field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from netboard.answer import Answer
from netboard.case import Case
from netboard.kb import KnowledgeBase
from netboard.vocab import STATUS_RANK, EligibilityName, Intervention, Status

__all__ = ["POSITIVE", "audit_row", "result_columns", "row_from_answer"]

#: Statuses under which a given code counts as concordant care.
POSITIVE = frozenset({Status.RECOMMENDED.value, Status.CONSIDER.value})


def result_columns() -> list[str]:
    """The result columns, in order (``concordant`` last)."""
    return [
        "id",
        *(f"rec.{code.value}" for code in Intervention),
        *(f"elig.{name.value}" for name in EligibilityName),
        "alerts",
        "missing",
        "concordant",
    ]


def row_from_answer(answer: Answer, given: Sequence[str] | None = None) -> dict[str, Any]:
    """The audit row of one answer (``given``: codes received first-line, if known)."""
    best: dict[str, Status] = {}
    for r in answer.recommendations:
        held = best.get(r.code.value)
        if held is None or STATUS_RANK[r.status] < STATUS_RANK[held]:
            best[r.code.value] = r.status
    row: dict[str, Any] = {"id": answer.case_id}
    for code in Intervention:
        status = best.get(code.value)
        row[f"rec.{code.value}"] = status.value if status is not None else None
    statuses = {e.name.value: e.status.value for e in answer.eligibility}
    for name in EligibilityName:
        row[f"elig.{name.value}"] = statuses.get(name.value)
    row["alerts"] = [a.code.value for a in answer.alerts]
    row["missing"] = [m.field for m in answer.missing_information]
    row["concordant"] = (
        None if given is None else all(row.get(f"rec.{code}") in POSITIVE for code in given)
    )
    return row


def audit_row(case: Case, kb: KnowledgeBase, given: Sequence[str] | None = None) -> dict[str, Any]:
    """The reference audit row: ``recommend`` on the case, reduced to the result columns."""
    from netboard.engine.recommend import recommend

    return row_from_answer(recommend(case, kb=kb, board_answer=False), given)
