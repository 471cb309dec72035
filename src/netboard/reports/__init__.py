"""Report renderers: pure ``Answer -> str`` functions, no clinical logic.

``netboard.render`` (the function, imported lazily by the top-level package) is
:func:`render` of this package; the package itself is ``netboard.reports`` so that the name
``netboard.render`` always means the function, whatever was imported before.

Markdown and HTML show exactly what the JSON carries, in the same order, with reader labels
from the knowledge base that produced the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from netboard.answer import Answer

if TYPE_CHECKING:  # the report view is imported only when a report is rendered
    from netboard.reports.report import Labels

FORMATS = ("json", "markdown", "html")


def render_json(
    answer: Answer,
    *,
    labels: Labels | None = None,
    verbose: bool = False,
    generated: str | None = None,
) -> str:
    """The contract JSON: UTF-8, stable key order, two-space indent, trailing newline."""
    import json

    del labels, verbose, generated  # the JSON is the contract answer itself

    return json.dumps(answer.to_dict(), indent=2, ensure_ascii=False) + "\n"


def render_markdown(
    answer: Answer,
    *,
    labels: Labels | None = None,
    verbose: bool = False,
    generated: str | None = None,
) -> str:
    """The Markdown report (see :mod:`netboard.reports.markdown`)."""
    from netboard.reports.markdown import render_markdown as _render

    return _render(answer, labels=labels, verbose=verbose, generated=generated)


def render_html(
    answer: Answer,
    *,
    labels: Labels | None = None,
    verbose: bool = False,
    generated: str | None = None,
) -> str:
    """The standalone HTML report (see :mod:`netboard.reports.html`)."""
    from netboard.reports.html import render_html as _render

    return _render(answer, labels=labels, verbose=verbose, generated=generated)


RENDERERS: dict[str, Callable[..., str]] = {
    "json": render_json,
    "markdown": render_markdown,
    "html": render_html,
}


def render(
    answer: Answer,
    fmt: str = "markdown",
    *,
    labels: Labels | None = None,
    verbose: bool = False,
    generated: str | None = None,
) -> str:
    """Render ``answer`` in one of ``FORMATS``; ``labels`` default to the packaged KB's.

    ``verbose`` shows rule ids and contract codes in the reports (for review); ``generated``
    is the date and time shown in a report's header.
    """
    return RENDERERS[fmt](answer, labels=labels, verbose=verbose, generated=generated)


def generated_now() -> str:
    """The date and time a report is made, for its header: local time with the UTC offset.

    The renderers never read a clock (the same answer gives the same bytes); the command line
    and the service call this and pass it as ``generated=``. ``SOURCE_DATE_EPOCH`` (seconds,
    the reproducible-builds convention) fixes it, in UTC.

    Example:
        >>> import os
        >>> os.environ["SOURCE_DATE_EPOCH"] = "1767225600"
        >>> generated_now()
        '2026-01-01 00:00 UTC'
        >>> del os.environ["SOURCE_DATE_EPOCH"]
    """
    import datetime as dt
    import os

    fixed = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if fixed.isdigit():
        now = dt.datetime.fromtimestamp(int(fixed), dt.UTC)
    else:
        now = dt.datetime.now().astimezone()
    offset = now.utcoffset() or dt.timedelta(0)
    if not offset:
        zone = "UTC"
    else:
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        zone = f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return f"{now:%Y-%m-%d %H:%M} {zone}"
