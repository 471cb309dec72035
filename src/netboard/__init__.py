"""netboard: offline, rule-based clinical decision support for metastatic neuroendocrine neoplasms.

The public API is small: load or validate a case, answer it, render the answer.

Example:
    >>> from netboard import load_case, recommend, render
    >>> answer = recommend(load_case({"primary_site": "ileum", "ki67_percent": 2}))
    >>> answer.classification.grade
    'g1'
    >>> render(answer, "markdown").startswith("# netboard tumour board report")
    True

The renderers live in the subpackage ``netboard.reports``; ``netboard.render`` is always the
function, never a module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.1"

__all__ = [
    "Answer",
    "Case",
    "CaseError",
    "KnowledgeBase",
    "KnowledgeBaseError",
    "NetboardError",
    "Problem",
    "__version__",
    "load_case",
    "load_kb",
    "read_case",
    "recommend",
    "render",
]

if TYPE_CHECKING:  # pragma: no cover
    from netboard.answer import Answer
    from netboard.case import Case, load_case, read_case
    from netboard.engine.recommend import recommend
    from netboard.errors import CaseError, KnowledgeBaseError, NetboardError, Problem
    from netboard.kb import KnowledgeBase, load_kb
    from netboard.reports import render

_LAZY = {
    "Answer": "netboard.answer",
    "Case": "netboard.case",
    "load_case": "netboard.case",
    "read_case": "netboard.case",
    "recommend": "netboard.engine.recommend",
    "CaseError": "netboard.errors",
    "KnowledgeBaseError": "netboard.errors",
    "NetboardError": "netboard.errors",
    "Problem": "netboard.errors",
    "KnowledgeBase": "netboard.kb",
    "load_kb": "netboard.kb",
    "render": "netboard.reports",
}


def __getattr__(name: str) -> Any:
    """Import public names on first use, to keep command start-up light."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'netboard' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
