"""What a report adds when its case came from FHIR: the scope note and the items not used.

The report itself (``netboard.reports``) knows nothing of FHIR; these functions wrap its text.
``scope_section`` opens the report with ``scope.reason`` when netboard presumes a neuroendocrine
neoplasm (``applies`` None) or gives no plan (False); ``unmapped_section`` closes it with every
FHIR item that was not used, with its reason (and its date when it was too old).
"""

from __future__ import annotations

from html import escape

from netboard.fhir.model import FhirCase


def _md_cell(value: str) -> str:
    return " ".join(value.split()).replace("|", "\\|")


def scope_section(text: str, applies: bool | None, reason: str, fmt: str) -> str:
    """``text`` opened by the scope note, unless netboard answers without reservation."""
    if applies is True or not reason or fmt not in ("markdown", "html"):
        return text
    title = "Presumed neuroendocrine neoplasm" if applies is None else "No plan for this record"
    if fmt == "markdown":
        note = f"> **{title}.** {' '.join(reason.split())}\n\n"
        head, sep, tail = text.partition("\n")
        if head.startswith("# ") and sep:
            return f"{head}\n\n{note}{tail.lstrip(chr(10))}"
        return note + text
    section = (
        f'<section id="scope" role="note"><h2>{escape(title)}</h2>'
        f"<p>{escape(reason)}</p></section>\n"
    )
    head, sep, tail = text.partition("<main>")
    return head + sep + "\n" + section + tail if sep else section + text


def unmapped_section(text: str, read: FhirCase, fmt: str) -> str:
    """The report with a closing section listing the FHIR input that was not used."""
    if not read.unmapped or fmt not in ("markdown", "html"):
        return text
    if fmt == "markdown":
        rows = "".join(
            f"| {_md_cell(u.resource)} | {_md_cell(u.code)} | {_md_cell(u.reason)} |\n"
            for u in read.unmapped
        )
        section = "\n## FHIR input not used\n\n| Resource | Code | Why |\n|---|---|---|\n" + rows
        return text.rstrip("\n") + "\n" + section
    items = "".join(
        f"<li><code>{escape(u.resource)}</code> {escape(u.code)}: {escape(u.reason)}</li>\n"
        for u in read.unmapped
    )
    section = (
        '<section id="fhir-unmapped">\n<h2>FHIR input not used</h2>\n<ul>\n'
        + items
        + "</ul>\n</section>\n"
    )
    head, sep, tail = text.rpartition("</main>")
    return head + section + sep + tail if sep else text + section
