"""The tumour-board report as one standalone, printable HTML page.

The page carries its own CSS (no external assets, no JavaScript) and the same sections, in the
same order, as the Markdown report; both render the report view of
:func:`netboard.reports.report.build_report`. Recommendations, alerts, eligibility checks and
references carry stable classes and ``data-*`` attributes for browser tests:

* ``article.recommendation[data-code][data-status][data-phase][data-order]``, ``id="rec-N"``
  with N its 1-based position in ``answer.recommendations``;
* ``li.alert[data-code][data-severity]``;
* ``section.eligibility[data-name][data-status]`` with ``tr.criterion[data-met]``;
* ``section#references`` with ``li[id="ref-N"][data-ref-id][data-kind]``, where every
  ``a.cite[href="#ref-N"]`` points.
"""

from __future__ import annotations

from netboard.answer import Answer
from netboard.reports.report import Labels, render_report

__all__ = ["render_html"]


def render_html(
    answer: Answer,
    *,
    labels: Labels | None = None,
    verbose: bool = False,
    generated: str | None = None,
) -> str:
    """Render the answer as a standalone HTML page (autoescaped, UTF-8, ``lang="en"``).

    Args:
        answer: the engine's answer.
        labels: reader labels; default those of the packaged knowledge base.
        verbose: show rule ids and contract codes (for review).
        generated: the date and time shown in the header; None leaves it out.

    Returns:
        The page, ending with exactly one newline; the same answer gives the same bytes.
    """
    text = render_report(answer, labels, html=True, verbose=verbose, generated=generated)
    return text.rstrip("\n") + "\n"
