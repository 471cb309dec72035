"""The tumour-board report as GitHub-flavoured Markdown (no raw HTML).

The layout is ``templates/report.md.j2`` over the shared view of
:func:`netboard.reports.report.build_report`; this module adds the Markdown escaping.
"""

from __future__ import annotations

import re

from netboard.answer import Answer
from netboard.reports.report import Labels, render_report

__all__ = [
    "code_span",
    "escape_cell",
    "escape_inline",
    "escape_markdown",
    "render_markdown",
    "wrap_markdown",
]


# --- Markdown text helpers ---------------------------------------------------------------

# Characters that would start Markdown syntax inside running text: backslash, code, emphasis,
# links, strikethrough; an underscore only at a word edge (GFM ignores intraword ones); '<'
# only where it could open an HTML tag or autolink; '&' only where it could form an entity.
_INLINE = re.compile(r"[\\`*\[\]~]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])|<(?=[A-Za-z/!?])|&(?=#?\w+;)")
# Text that would open a block (heading, quote, list item, setext line) at the start of a line.
_BLOCK_START = re.compile(r"^(?:[#>+=-]|\d+(?=[.)]))")


def escape_inline(text: str) -> str:
    r"""Make text safe as plain text in the middle of a Markdown line.

    Line breaks are folded into spaces, so every value stays on its own line or table cell.

    Example:
        >>> escape_inline("Ki-67 <10% and *not* [177Lu] <b>")
        'Ki-67 <10% and \\*not\\* \\[177Lu\\] \\<b>'
    """
    return _INLINE.sub(lambda m: "\\" + m.group(0), " ".join(text.split()))


def escape_markdown(text: str) -> str:
    r"""Make text safe as plain text anywhere in Markdown, the start of a line included.

    Example:
        >>> escape_markdown("1. first")
        '1\\. first'
        >>> escape_markdown("# not a heading")
        '\\# not a heading'
    """
    text = escape_inline(text)
    match = _BLOCK_START.match(text)
    if match is None:
        return text
    if match.group(0).isdigit():
        return text[: match.end()] + "\\" + text[match.end() :]
    return "\\" + text


def escape_cell(text: str) -> str:
    r"""Escape text for a GFM table cell (pipes included).

    Example:
        >>> escape_cell("a | b")
        'a \\| b'
    """
    return escape_inline(text).replace("|", "\\|")


def code_span(text: str) -> str:
    """A Markdown code span holding ``text`` verbatim (pipes escaped for table cells).

    Example:
        >>> code_span("labs.platelets_10e9_l")
        '`labs.platelets_10e9_l`'
    """
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}".replace("|", "\\|")


def render_markdown(
    answer: Answer,
    *,
    labels: Labels | None = None,
    verbose: bool = False,
    generated: str | None = None,
) -> str:
    """Render the answer as a GitHub-flavoured Markdown report (no raw HTML).

    Args:
        answer: the engine's answer.
        labels: reader labels; default those of the packaged knowledge base.
        verbose: show rule ids and contract codes (for review).
        generated: the date and time shown in the header; None leaves it out.

    Returns:
        The report, ending with exactly one newline; the same answer gives the same bytes.
    """
    text = render_report(answer, labels, html=False, verbose=verbose, generated=generated)
    # Conditional blocks can leave blank-line runs; Markdown treats them as one blank line.
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.rstrip("\n") + "\n"


_LIST_ITEM = re.compile(r"^(\s*)([-*+]|\d+[.)])\s+")


def wrap_markdown(text: str, width: int) -> str:
    """Wrap the long lines of a Markdown report for reading in a terminal ``width`` wide.

    Paragraphs, list items (continued under their text) and quotes (continued with ``>``)
    are wrapped at spaces; headings, table rows, code blocks and lines without a space to
    break at are kept as they are, so the text stays the same Markdown.

    Example:
        >>> print(wrap_markdown("- one two three four five six", 16))
        - one two three
          four five six
    """
    import textwrap

    out: list[str] = []
    fenced = False
    for line in text.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
        if fenced or len(line) <= width or line.startswith(("|", "#", "    ", "\t", "```")):
            out.append(line)
            continue
        first = rest = ""
        body = line
        if line.startswith(">"):
            first = rest = "> "
            body = line[1:].lstrip()
        match = _LIST_ITEM.match(body)
        if match:
            first += match.group(0)
            rest += " " * len(match.group(0))
            body = body[match.end() :]
        out.extend(
            textwrap.wrap(
                body,
                width=width,
                initial_indent=first,
                subsequent_indent=rest,
                break_long_words=False,
                break_on_hyphens=False,
            )
            or [line]
        )
    return "\n".join(out)
