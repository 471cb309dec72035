"""The web page at ``/``: a case form and a free-text box, answered with the HTML report.

Everything works without JavaScript and without any outside resource (no CDN, font or
image), so the page is usable offline and prints cleanly. Three functions make the page:

* :func:`form_page` renders the form, re-showing a rejected submission exactly as it was
  given, with each problem next to its field and in a summary at the top;
* :func:`case_from_form` turns posted form fields into the raw case mapping that
  :func:`netboard.case.load_case` judges (nothing is dropped or corrected here);
* :func:`submit` answers a POST: the report page (status 200) or the form with the
  problems (status 422).

The report itself is the standalone page of :func:`netboard.reports.render_html`; this module
only adds a navigation bar, what was read from a text, and an "Edit this case" form around it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from netboard.case import load_case
from netboard.errors import CaseError, Problem
from netboard.fields import Choice, ChoiceList, Flag, Number, Spec, flatten, nest, registry
from netboard.reports.report import ReferenceView
from netboard.vocab import CONTRACT_VERSION, Intervention

if TYPE_CHECKING:
    import jinja2
    from markupsafe import Markup

    from netboard.kb import KnowledgeBase
    from netboard.parse.ask import AskResult
    from netboard.parse.knowledge import KnowledgeAnswer

__all__ = ["NONE_OF_THESE", "case_from_form", "form_groups", "form_page", "submit"]


def form_groups() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The case fields on the form, grouped as the field registry groups them (every field
    path in exactly one group, in registry order)."""
    reg = registry()
    return tuple(
        (title, tuple(p for p, f in reg.fields.items() if f.group == title))
        for title in reg.form_groups
    )


#: The checkbox value that states an empty list ("none of these"); no box ticked means unknown.
NONE_OF_THESE = "none"

#: Form keys that are not case fields.
_CONTROL_KEYS = frozenset({"mode", "text"})

# A decimal number as a person types it ("8", "8.5", ".5", "8.", "1e3"); anything else
# ("8,5", "nan", "1_000", "eight") stays text so that load_case names the field.
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# The numbers an <input type="number"> keeps (HTML "valid floating-point number"); any other
# text is re-shown in a text input, because a number input would blank it.
_HTML_NUMBER = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][+-]?\d+)?")
_INDEX = re.compile(r"^(.*)\[(\d+)\]$")


# --- form -> case --------------------------------------------------------------------------


def _spec(path: str) -> Spec | None:
    return registry().spec(path)


def _number(text: str) -> int | float | str:
    """A number typed in a form field; text that is not one is returned unchanged."""
    stripped = text.strip()
    if not _NUMBER.fullmatch(stripped):
        return text
    if re.fullmatch(r"[+-]?\d{1,15}", stripped):
        return int(stripped)
    # Longer digit strings go through float, so a 400-digit "number" stays text.
    value = float(stripped)
    return value if math.isfinite(value) else text


def _convert(spec: Spec | None, given: list[str]) -> Any:
    """The raw case value for one form key (``given``: its non-blank values, in order)."""
    if isinstance(spec, ChoiceList):
        if given == [NONE_OF_THESE]:
            return []
        return given
    if len(given) > 1:
        # One field posted twice: both values go on, so load_case reports the field.
        return [_number(x) if isinstance(spec, Number) else x for x in given]
    value = given[0]
    if isinstance(spec, Number):
        return _number(value)
    if isinstance(spec, Flag):
        return {"true": True, "false": False}.get(value.strip(), value)
    return value


def case_from_form(form: Mapping[str, list[str]]) -> dict[str, Any]:
    """Build the raw case mapping (contract form) from posted form fields.

    Blank values are left out (unknown); numbers are parsed, and text that is not a number
    is kept as given so that ``load_case`` names the field; list fields come from repeated
    keys, and the lone :data:`NONE_OF_THESE` box states an empty list; booleans come from
    ``true``/``false``. Keys that are not case fields (other than ``mode`` and ``text``)
    are passed on, so ``load_case`` rejects them by name.

    Args:
        form: the posted fields, each key with its values in order.

    Returns:
        The case mapping, fields in form order, labs nested under ``labs``.

    Example:
        >>> case = case_from_form({"mode": ["case"], "ki67_percent": ["8"], "sex": [""],
        ...                        "metastatic_sites": ["liver", "bone"], "pregnant": ["false"],
        ...                        "labs.platelets_10e9_l": ["2,5"]})
        >>> case["ki67_percent"], case["metastatic_sites"], case["pregnant"], case["labs"]
        (8, ['liver', 'bone'], False, {'platelets_10e9_l': '2,5'})
        >>> "sex" in case
        False
    """
    flat: dict[str, Any] = {}
    for key, values in form.items():
        if key in _CONTROL_KEYS:
            continue
        given = [x for x in values if x.strip()]
        if given:
            flat[key] = _convert(_spec(key), given)
    objects = registry().objects
    for name in objects:
        # A bare object key ("labs") cannot hold its fields: it is named as a field of its
        # own object when members are given too, so that load_case still reports it.
        if name in flat and any(k.startswith(name + ".") for k in flat):
            flat[f"{name}.{name}"] = flat.pop(name)
    return nest(flat)


def _form_values(case: Mapping[str, Any]) -> dict[str, list[str]]:
    """The form fields that show a (valid) case dictionary: the inverse of case_from_form."""

    def text(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return str(value)

    out: dict[str, list[str]] = {}
    for key, value in flatten(case).items():
        if isinstance(value, list):
            out[key] = [text(x) for x in value] or [NONE_OF_THESE]
        elif value is not None:
            out[key] = [text(value)]
    return out


# --- the form view -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OptionView:
    """One choice of a select or checkbox group."""

    value: str
    label: str
    selected: bool
    id: str = ""


@dataclass(frozen=True, slots=True)
class FieldView:
    """One form control: ``kind`` is text, number, select or checkboxes."""

    name: str
    id: str
    label: str
    unit: str
    kind: str
    input_type: str
    value: str
    options: tuple[OptionView, ...]
    min: str
    max: str
    step: str
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GroupView:
    """A fieldset of the case form."""

    title: str
    id: str
    fields: tuple[FieldView, ...]


@dataclass(frozen=True, slots=True)
class ProblemView:
    """One problem of the summary: the field it names, where it is on the form, the message."""

    field: str
    label: str
    target: str
    message: str


def _field_id(path: str) -> str:
    return "f-" + re.sub(r"[^A-Za-z0-9_-]", "-", path)


def _bound(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _capfirst(text: str) -> str:
    return text[:1].upper() + text[1:]


def _value_label(kb: KnowledgeBase, enum: type[StrEnum], code: str) -> str:
    groups = ("interventions", "values") if enum is Intervention else ("values",)
    for group in groups:
        label = kb.labels.get(group, {}).get(code)
        if label:
            return _capfirst(label)
    return _capfirst(code.replace("_", " "))


def _field_label(kb: KnowledgeBase, path: str) -> str:
    info = kb.fields.get(path)
    return _capfirst(info.label if info is not None else path)


def _base_field(field: str) -> str:
    """The form field a problem is about: ``progressed_on[1]`` is about ``progressed_on``."""
    m = _INDEX.match(field)
    return m.group(1) if m else field


def _choices(
    kb: KnowledgeBase, field_id: str, enum: type[StrEnum], given: list[str], *, multiple: bool
) -> tuple[OptionView, ...]:
    words = [m.value for m in enum]
    chosen = set(given)
    options = [
        OptionView(w, _value_label(kb, enum, w), w in chosen, f"{field_id}-{w}") for w in words
    ]
    if multiple:
        options.append(
            OptionView(NONE_OF_THESE, "None of these", NONE_OF_THESE in chosen, f"{field_id}--none")
        )
    known = {o.value for o in options}
    # A value that is not a choice (a hand-made request) is shown as given, not lost.
    for i, w in enumerate(dict.fromkeys(x for x in given if x not in known and x.strip())):
        options.append(OptionView(w, f"{w} (not a choice)", True, f"{field_id}--given-{i}"))
    return tuple(options)


def _field_view(
    kb: KnowledgeBase, path: str, given: list[str], problems: tuple[str, ...]
) -> FieldView:
    spec = _spec(path)
    fid = _field_id(path)
    value = given[0] if given else ""

    def view(
        kind: str,
        input_type: str,
        options: tuple[OptionView, ...] = (),
        bounds: tuple[str, str, str] = ("", "", ""),
    ) -> FieldView:
        return FieldView(
            name=path,
            id=fid,
            label=_field_label(kb, path),
            unit=registry().fields[path].unit if path in registry().fields else "",
            kind=kind,
            input_type=input_type,
            value=value,
            options=options,
            min=bounds[0],
            max=bounds[1],
            step=bounds[2],
            problems=problems,
        )

    if isinstance(spec, Number):
        number = value.strip() == "" or _HTML_NUMBER.fullmatch(value) is not None
        hi = "" if spec.hi is None else _bound(spec.hi)
        step = "1" if spec.integer else "any"
        return view("number", "number" if number else "text", bounds=(_bound(spec.lo), hi, step))
    if isinstance(spec, Flag):
        choices: tuple[OptionView, ...] = (
            OptionView("true", "Yes", value == "true"),
            OptionView("false", "No", value == "false"),
        )
        if value.strip() and value not in ("true", "false"):
            choices += (OptionView(value, f"{value} (not a choice)", True),)
    elif isinstance(spec, Choice):
        choices = _choices(kb, fid, spec.enum, given[:1], multiple=False)
    elif isinstance(spec, ChoiceList):
        return view("checkboxes", "checkbox", _choices(kb, fid, spec.enum, given, multiple=True))
    else:
        return view("text", "text")
    unknown = OptionView("", "Unknown", not any(o.selected for o in choices))
    return view("select", "", (unknown, *choices))


def _views(
    kb: KnowledgeBase, values: Mapping[str, list[str]], problems: Sequence[Problem]
) -> tuple[tuple[GroupView, ...], tuple[ProblemView, ...], tuple[str, ...]]:
    on_form = {path for _, paths in form_groups() for path in paths}
    by_field: dict[str, list[str]] = {}
    summary: list[ProblemView] = []
    for p in problems:
        base = _base_field(p.field)
        by_field.setdefault(base, []).append(p.message if base == p.field else str(p))
        if base in on_form:
            label, target = _field_label(kb, base), "#" + _field_id(base)
        elif base == "text":
            label, target = "Free text", "#f-text"
        else:
            label, target = "", ""
        summary.append(ProblemView(p.field, label, target, p.message))
    groups = tuple(
        GroupView(
            title,
            "g-" + re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-"),
            tuple(
                _field_view(kb, path, list(values.get(path, [])), tuple(by_field.get(path, [])))
                for path in paths
            ),
        )
        for title, paths in form_groups()
    )
    return groups, tuple(summary), tuple(by_field.get("text", []))


# --- templates -----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("netboard.service", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _page_info(kb: KnowledgeBase) -> dict[str, str]:
    from netboard.reports.report import DISCLAIMER

    return {
        "kb_version": kb.version,
        "kb_released": str(kb.released),
        "contract_version": CONTRACT_VERSION,
        "disclaimer": DISCLAIMER,
    }


def _parts() -> Any:
    """The macros of ``parts.html.j2`` (fragments added around the report)."""
    return _environment().get_template("parts.html.j2").module


def form_page(
    kb: KnowledgeBase,
    *,
    values: Mapping[str, list[str]] | None = None,
    problems: Sequence[Problem] = (),
    text: str = "",
) -> str:
    """Render the web page: the case form (grouped fields) and the free-text form.

    Args:
        kb: the knowledge base (field and value labels, version shown on the page).
        values: the posted fields of a rejected submission, re-shown exactly as given.
        problems: what was wrong; each appears next to its field and in the summary.
        text: the free text to re-show in the text box.

    Returns:
        The whole HTML page.
    """
    groups, summary, text_problems = _views(kb, values or {}, problems)
    page = _environment().get_template("form.html.j2")
    return page.render(
        **_page_info(kb),
        groups=groups,
        summary=summary,
        text=text,
        text_problems=text_problems,
    )


# --- the answer page -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnderstoodRow:
    """One field read from the free text: the value and the words it came from."""

    field: str
    label: str
    value: str
    words: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StatementView:
    """One knowledge-base statement with its reference numbers."""

    title: str
    text: str
    cites: tuple[int, ...]


def _shown(kb: KnowledgeBase, path: str, value: Any) -> str:
    spec = _spec(path)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_shown(kb, path, x) for x in value) or "none"
    if isinstance(spec, Choice | ChoiceList) and isinstance(value, str):
        return _value_label(kb, spec.enum, value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    unit = registry().fields[path].unit if path in registry().fields else ""
    return f"{value} {unit}".strip() if unit else str(value)


def _understood(kb: KnowledgeBase, result: AskResult) -> tuple[UnderstoodRow, ...]:
    case = result.parsed.case_dict
    rows: dict[str, list[str]] = {}
    for used in result.parsed.spans_used:
        words = rows.setdefault(used.field, [])
        if used.text not in words:
            words.append(used.text)
    out = []
    for path, words in rows.items():
        value = flatten(case)[path]
        # "DOTATATE avid" inside "Ga-68 DOTATATE avid" says nothing more.
        kept = tuple(w for w in words if not any(w != o and w in o for o in words))
        out.append(UnderstoodRow(path, _field_label(kb, path), _shown(kb, path, value), kept))
    return tuple(out)


def _knowledge_views(
    answer: KnowledgeAnswer,
) -> tuple[tuple[StatementView, ...], tuple[ReferenceView, ...]]:
    number = {r.id: n for n, r in enumerate(answer.references, start=1)}
    statements = tuple(
        StatementView(
            s.title,
            s.text,
            tuple(sorted({number[x] for x in s.evidence if x in number})),
        )
        for s in answer.statements
    )
    references = tuple(
        ReferenceView(n, r.id, str(r.kind), r.citation, r.year, r.url, r.note)
        for n, r in enumerate(answer.references, start=1)
    )
    return statements, references


def _inject(html: str, marker: str, fragment: str, *, after: bool = False) -> str:
    """Insert ``fragment`` before (or after) the first ``marker`` of the report page."""
    at = html.find(marker)
    if at < 0:
        raise ValueError(f"the report page has no {marker!r} to attach the page parts to")
    if after:
        at += len(marker)
    return html[:at] + fragment + html[at:]


def _edit_section(
    kb: KnowledgeBase, values: Mapping[str, list[str]], text: str, *, open_text: bool
) -> Markup:
    groups, _, _ = _views(kb, values, ())
    result: Markup = _parts().edit_section(groups, text, open_text)
    return result


def _answer_page(
    kb: KnowledgeBase,
    report_html: str,
    *,
    values: Mapping[str, list[str]],
    text: str = "",
    understood: Markup | None = None,
    extra: Markup | None = None,
) -> str:
    parts = _parts()
    html = _inject(report_html, "</head>", str(parts.answer_style()))
    html = _inject(html, "<body>\n", str(parts.page_nav()), after=True)
    if understood is not None:
        html = _inject(html, "</header>\n", str(understood), after=True)
    if extra is not None:
        html = _inject(html, "</main>\n", str(extra))
    edit = _edit_section(kb, values, text, open_text=bool(text))
    return _inject(html, "</main>\n", str(edit), after=True)


def _text_answer(kb: KnowledgeBase, text: str, result: AskResult) -> str:
    from netboard.parse.knowledge import UNANSWERED
    from netboard.reports import render_html

    parts = _parts()
    if result.general and result.knowledge is not None:
        statements, references = _knowledge_views(result.knowledge)
        page = _environment().get_template("knowledge.html.j2")
        return page.render(
            question=result.knowledge.question,
            answered=result.knowledge.answered,
            statements=statements,
            references=references,
            message=UNANSWERED,
            text=text,
            **_page_info(kb),
        )
    understood = parts.understood_section(_understood(kb, result), result.parsed.unparsed)
    extra = None
    if result.knowledge is not None:
        statements, references = _knowledge_views(result.knowledge)
        extra = parts.knowledge_section(
            result.knowledge.answered,
            UNANSWERED,
            statements,
            references,
            "knowledge-ref-",
            "knowledge-references",
        )
    return _answer_page(
        kb,
        render_html(result.answer, labels=kb.labels),
        values=_form_values(result.parsed.case_dict),
        text=text,
        understood=understood,
        extra=extra,
    )


def ask_report_html(
    kb: KnowledgeBase,
    text: str,
    result: AskResult,
    *,
    generated: str | None = None,
    verbose: bool = False,
) -> str:
    """The answer to a text as one standalone HTML page (``netboard ask --format html``).

    The page's report without its forms: what was understood (and what was not used), the
    report, and the knowledge base's statements when the text asks for them; for a general
    question, those statements alone.
    """
    from netboard.parse.knowledge import UNANSWERED
    from netboard.reports import render_html

    parts = _parts()
    if result.general and result.knowledge is not None:
        statements, references = _knowledge_views(result.knowledge)
        page = _environment().get_template("knowledge.html.j2")
        return page.render(
            question=result.knowledge.question,
            answered=result.knowledge.answered,
            statements=statements,
            references=references,
            message=UNANSWERED,
            text=text,
            standalone=True,
            generated=generated,
            **_page_info(kb),
        )
    html = render_html(result.answer, labels=kb.labels, verbose=verbose, generated=generated)
    understood = parts.understood_section(_understood(kb, result), result.parsed.unparsed)
    html = _inject(html, "</header>\n", str(understood), after=True)
    if result.knowledge is not None:
        statements, references = _knowledge_views(result.knowledge)
        extra = parts.knowledge_section(
            result.knowledge.answered,
            UNANSWERED,
            statements,
            references,
            "knowledge-ref-",
            "knowledge-references",
        )
        html = _inject(html, "</main>\n", str(extra))
    return html


def _explain_none(form: Mapping[str, list[str]], problems: Sequence[Problem]) -> list[Problem]:
    """Say plainly that "None of these" was ticked beside other boxes of the same list."""
    out = []
    for p in problems:
        m = _INDEX.match(p.field)
        if m and isinstance(_spec(m.group(1)), ChoiceList):
            given = [x for x in form.get(m.group(1), []) if x.strip()]
            index = int(m.group(2))
            if index < len(given) and given[index] == NONE_OF_THESE:
                p = Problem(p.field, '"None of these" is ticked together with other choices')
        out.append(p)
    return out


def _first(form: Mapping[str, list[str]], key: str) -> str:
    values = form.get(key) or []
    return values[0] if values else ""


def submit(form: Mapping[str, list[str]], kb: KnowledgeBase) -> tuple[int, str]:
    """Answer a POST to ``/``: the report page, or the form again with the problems.

    Args:
        form: the posted fields (``application/x-www-form-urlencoded``, decoded); ``mode``
            is ``case`` (the case fields) or ``text`` (the ``text`` box).
        kb: the knowledge base to answer with.

    Returns:
        ``(200, report page)``, or ``(422, form page)`` naming each problem.
    """
    from netboard.engine.recommend import recommend
    from netboard.parse.ask import MAX_TEXT_BYTES, ask
    from netboard.reports import render_html

    mode = _first(form, "mode") or ("text" if "text" in form else "case")
    if mode == "text":
        text = "\n".join(form.get("text") or [])
        if not text.strip():
            problem = Problem("text", "empty: paste a note or type a question")
            return 422, form_page(kb, problems=[problem], text=text)
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_TEXT_BYTES:
            problem = Problem(
                "text", f"{size} bytes is larger than the limit of {MAX_TEXT_BYTES} bytes"
            )
            return 422, form_page(kb, problems=[problem], text=text)
        try:
            result = ask(text, kb)
        except CaseError as exc:  # the reader validates what it keeps; kept as a safety net
            return 422, form_page(kb, problems=exc.problems, text=text)
        return 200, _text_answer(kb, text, result)
    if mode != "case":
        problem = Problem("mode", f"expected case or text, got {mode!r}")
        return 422, form_page(kb, values=form, problems=[problem])
    try:
        case = load_case(case_from_form(form))
    except CaseError as exc:
        return 422, form_page(kb, values=form, problems=_explain_none(form, exc.problems))
    answer = recommend(case, kb=kb)
    values = {k: list(v) for k, v in form.items() if k not in _CONTROL_KEYS}
    return 200, _answer_page(kb, render_html(answer, labels=kb.labels), values=values)


def about_page(about: Mapping[str, Any]) -> str:
    """The ``/about`` page: the source attributes of the decision support, readable."""
    return _environment().get_template("about.html.j2").render(about=about)
