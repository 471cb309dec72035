"""Renderers: pure ``Answer -> str`` functions, no clinical logic.

Markdown and HTML show exactly what the JSON carries, in the same order.
"""

from __future__ import annotations

from collections.abc import Callable

from netboard.answer import Answer

FORMATS = ("json", "markdown", "html")


def render_json(answer: Answer) -> str:
    """The contract JSON: UTF-8, stable key order, two-space indent, trailing newline."""
    import json

    return json.dumps(answer.to_dict(), indent=2, ensure_ascii=False) + "\n"


def render_markdown(answer: Answer) -> str:
    from netboard.render.markdown import render_markdown as _render

    return _render(answer)


def render_html(answer: Answer) -> str:
    from netboard.render.html import render_html as _render

    return _render(answer)


RENDERERS: dict[str, Callable[[Answer], str]] = {
    "json": render_json,
    "markdown": render_markdown,
    "html": render_html,
}


def render(answer: Answer, fmt: str = "markdown") -> str:
    """Render ``answer`` in one of ``FORMATS``."""
    return RENDERERS[fmt](answer)
