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
from netboard.words import capfirst

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

#: Form keys that are not case fields (and the prefixes of such keys: a lab's unit, a field
#: stated with a one-click button beside a text's answer).
_CONTROL_KEYS = frozenset({"mode", "text"})
UNIT_PREFIX = "unit."
STATED_PREFIX = "stated."


@dataclass(frozen=True, slots=True)
class OtherUnit:
    """A unit a lab value may be typed in besides the contract's: ``value / per`` converts it."""

    unit: str
    per: float
    #: the conversion in words, shown beside the converted value
    rule: str


#: Lab values commonly reported in SI units: the form accepts them and converts.
OTHER_UNITS: Mapping[str, tuple[OtherUnit, ...]] = {
    "labs.bilirubin_mg_dl": (OtherUnit("µmol/L", 17.1, "1 mg/dL = 17.1 µmol/L"),),
    "labs.albumin_g_dl": (OtherUnit("g/L", 10.0, "1 g/dL = 10 g/L"),),
    "labs.hemoglobin_g_dl": (OtherUnit("g/L", 10.0, "1 g/dL = 10 g/L"),),
}

#: The treatments the "treatments it progressed on" field offers: those under or after which a
#: tumour progresses (antitumour drugs, PRRT, liver-directed therapy). Other contract codes are
#: still accepted and shown when a case already holds them.
PROGRESSION_CHOICES = (
    Intervention.SOMATOSTATIN_ANALOG,
    Intervention.PRRT,
    Intervention.EVEROLIMUS,
    Intervention.SUNITINIB,
    Intervention.CABOZANTINIB,
    Intervention.CAPECITABINE_TEMOZOLOMIDE,
    Intervention.STREPTOZOCIN_FLUOROURACIL,
    Intervention.PLATINUM_ETOPOSIDE,
    Intervention.NEC_SECOND_LINE_CHEMOTHERAPY,
    Intervention.INTERFERON_ALPHA,
    Intervention.TAE,
    Intervention.TACE,
    Intervention.TARE,
    Intervention.LIVER_ABLATION,
)
#: The fields whose choices the form narrows (field path -> the choices offered).
OFFERED: Mapping[str, tuple[str, ...]] = {
    "progressed_on": tuple(c.value for c in PROGRESSION_CHOICES),
}

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
        if key in _CONTROL_KEYS or key.startswith((UNIT_PREFIX, STATED_PREFIX)):
            continue
        given = [x for x in values if x.strip()]
        if given:
            flat[key] = _convert(_spec(key), given)
    for conversion in conversions(form):
        flat[conversion.field] = conversion.value
    objects = registry().objects
    for name in objects:
        # A bare object key ("labs") cannot hold its fields: it is named as a field of its
        # own object when members are given too, so that load_case still reports it.
        if name in flat and any(k.startswith(name + ".") for k in flat):
            flat[f"{name}.{name}"] = flat.pop(name)
    return nest(flat)


@dataclass(frozen=True, slots=True)
class Conversion:
    """A lab value typed in another unit: what was typed and the contract value it became."""

    field: str
    given: str
    unit: str
    value: float
    contract_unit: str
    rule: str

    @property
    def words(self) -> str:
        """``34 µmol/L read as 1.99 mg/dL (1 mg/dL = 17.1 µmol/L)``."""
        return f"{self.given} {self.unit} read as {self.value:g} {self.contract_unit} ({self.rule})"


def conversions(form: Mapping[str, list[str]]) -> list[Conversion]:
    """The lab values of a posted form that were typed in another unit, converted.

    A value that is not a number, or a unit that is not offered, is left alone (the number
    is kept as typed, so ``load_case`` names the field; an unknown unit key is rejected by
    name). Converted values are rounded to three significant digits.

    Example:
        >>> [c.words for c in conversions({"labs.bilirubin_mg_dl": ["34"],
        ...                               "unit.labs.bilirubin_mg_dl": ["µmol/L"]})]
        ['34 µmol/L read as 1.99 mg/dL (1 mg/dL = 17.1 µmol/L)']
    """
    out = []
    for path, units in OTHER_UNITS.items():
        chosen = [u for u in form.get(UNIT_PREFIX + path, []) if u.strip()]
        given = [x for x in form.get(path, []) if x.strip()]
        if len(chosen) != 1 or len(given) != 1:
            continue
        unit = next((u for u in units if u.unit == chosen[0]), None)
        number = _number(given[0])
        if unit is None or isinstance(number, str):
            continue
        value = float(f"{number / unit.per:.3g}")
        contract_unit = registry().fields[path].unit
        out.append(Conversion(path, given[0].strip(), unit.unit, value, contract_unit, unit.rule))
    return out


def _unit_problems(form: Mapping[str, list[str]]) -> list[Problem]:
    """A unit key for a field that takes no other unit, or a unit that is not offered."""
    problems = []
    for key, values in form.items():
        if not key.startswith(UNIT_PREFIX):
            continue
        path = key[len(UNIT_PREFIX) :]
        units = OTHER_UNITS.get(path)
        if units is None:
            problems.append(Problem(key, "unknown field (no other unit is offered for it)"))
            continue
        contract = registry().fields[path].unit
        offered = [contract, *(u.unit for u in units)]
        for v in values:
            if v.strip() and v not in offered:
                problems.append(Problem(key, f"{v!r} is not one of: {', '.join(offered)}"))
    return problems


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
    #: the units the value may be typed in (empty: only the contract's ``unit``)
    units: tuple[OptionView, ...] = ()


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


def _value_label(kb: KnowledgeBase, enum: type[StrEnum], code: str) -> str:
    groups = ("interventions", "values") if enum is Intervention else ("values",)
    for group in groups:
        label = kb.labels.get(group, {}).get(code)
        if label:
            return capfirst(label)
    return capfirst(code.replace("_", " "))


def _field_label(kb: KnowledgeBase, path: str) -> str:
    info = kb.fields.get(path)
    return capfirst(info.label if info is not None else path)


def _base_field(field: str) -> str:
    """The form field a problem is about: ``progressed_on[1]`` is about ``progressed_on``."""
    m = _INDEX.match(field)
    return m.group(1) if m else field


def _choices(
    kb: KnowledgeBase,
    field_id: str,
    enum: type[StrEnum],
    given: list[str],
    *,
    multiple: bool,
    offered: Sequence[str] | None = None,
) -> tuple[OptionView, ...]:
    words = [m.value for m in enum]
    chosen = set(given)
    shown = [w for w in words if offered is None or w in offered or w in chosen]
    options = [
        OptionView(w, _value_label(kb, enum, w), w in chosen, f"{field_id}-{w}") for w in shown
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
    kb: KnowledgeBase,
    path: str,
    given: list[str],
    problems: tuple[str, ...],
    unit_given: str = "",
) -> FieldView:
    spec = _spec(path)
    fid = _field_id(path)
    value = given[0] if given else ""
    contract_unit = registry().fields[path].unit if path in registry().fields else ""
    units: tuple[OptionView, ...] = ()
    if path in OTHER_UNITS:
        offered = [contract_unit, *(u.unit for u in OTHER_UNITS[path])]
        picked = unit_given if unit_given in offered else contract_unit
        units = tuple(
            OptionView(u, u, u == picked, f"{fid}--unit-{i}") for i, u in enumerate(offered)
        )
        if unit_given.strip() and unit_given not in offered:  # a hand-made request: kept
            units += (OptionView(unit_given, f"{unit_given} (not a choice)", True),)

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
            unit="" if units else contract_unit,
            kind=kind,
            input_type=input_type,
            value=value,
            options=options,
            min=bounds[0],
            max=bounds[1],
            step=bounds[2],
            problems=problems,
            units=units,
        )

    if isinstance(spec, Number):
        number = value.strip() == "" or _HTML_NUMBER.fullmatch(value) is not None
        # With another unit on offer the browser cannot know the bound: the server checks it.
        hi = "" if spec.hi is None or units else _bound(spec.hi)
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
        options = _choices(kb, fid, spec.enum, given, multiple=True, offered=OFFERED.get(path))
        return view("checkboxes", "checkbox", options)
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
        if base.startswith(UNIT_PREFIX):  # a lab's unit: shown beside the lab
            base = base[len(UNIT_PREFIX) :]
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
                _field_view(
                    kb,
                    path,
                    list(values.get(path, [])),
                    tuple(by_field.get(path, [])),
                    next(iter(values.get(UNIT_PREFIX + path, [])), ""),
                )
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


# --- one-click presumption changes -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resubmit:
    """How the page re-asks the current question: the case fields (``mode`` case) or the
    text with the fields stated by earlier clicks (``mode`` text)."""

    mode: str
    values: Mapping[str, list[str]]
    text: str = ""

    def hidden(self, field: str, value: str) -> list[tuple[str, str]]:
        """The hidden inputs of a form that re-asks with ``field`` stated as ``value``."""
        out: list[tuple[str, str]] = [("mode", self.mode)]
        if self.mode == "text":
            out.append(("text", self.text))
            stated = {k: v for k, v in self.values.items() if k != field}
            out += [(STATED_PREFIX + k, x) for k, xs in stated.items() for x in xs]
            out.append((STATED_PREFIX + field, value))
            return out
        for key, xs in self.values.items():
            if key in (field, UNIT_PREFIX + field) or key in _CONTROL_KEYS:
                continue
            out += [(key, x) for x in xs]
        out.append((field, value))
        return out


def representative(path: str, words: str) -> str | None:
    """The value a one-click button states for a band of a number given in words.

    The middle of the band, as the engine takes it (``10-20`` -> 15, ``below 10`` -> 5,
    ``above 55`` -> 77.5 for a field of 0-100); a whole number for an integer field. None when
    the words are not a band.

    Example:
        >>> representative("ki67_percent", "10-20"), representative("ki67_percent", "above 55")
        ('15', '77.5')
        >>> representative("ecog", "3"), representative("ki67_percent", "high")
        ('3', None)
    """
    spec = _spec(path)
    if not isinstance(spec, Number):
        return None
    number = r"(\d+(?:\.\d+)?)"
    if m := re.fullmatch(number, words):
        lo = hi = float(m.group(1))
    elif m := re.fullmatch(number + "-" + number, words):
        lo, hi = float(m.group(1)), float(m.group(2))
    elif m := re.fullmatch("below " + number, words):
        lo, hi = spec.lo, float(m.group(1))
    elif m := re.fullmatch("above " + number, words):
        lo = float(m.group(1))
        hi = spec.hi if spec.hi is not None else 2 * lo
    else:
        return None
    mid = (lo + hi) / 2
    mid = float(round(mid)) if spec.integer else round(mid, 2)
    return f"{mid:g}"


@dataclass(frozen=True, slots=True)
class OneClick:
    """A button beside a presumption or a what-if: re-ask with ``field`` stated as ``value``."""

    field: str
    value: str
    label: str
    hint: str
    title: str
    hidden: tuple[tuple[str, str], ...]


def _what_if_phrase(summary: str, fallback: str) -> str:
    """The condition of a what-if sentence ("If it is SSTR-negative: ..." -> its words)."""
    if summary.startswith("If ") and ": " in summary:
        return summary[3 : summary.index(": ")]
    return fallback


def _one_clicks(
    kb: KnowledgeBase, answer: Any, resubmit: Resubmit
) -> tuple[dict[tuple[str, str], OneClick], dict[str, OneClick]]:
    """The buttons of the what-ifs (by field and value words) and of the presumptions."""
    what_ifs: dict[tuple[str, str], OneClick] = {}
    for w in answer.what_if:
        spec = _spec(w.field)
        words = str(w.value)
        if spec is None or isinstance(spec, ChoiceList):
            continue
        hint = ""
        if isinstance(spec, Number):
            value = representative(w.field, words)
            if value is None:
                continue
            if value != words:  # a band: say which value of it is stated
                unit = registry().fields[w.field].unit
                hint = f"answered as {value}{' ' + unit if unit else ''}"
        else:
            value = words
        phrase = capfirst(_what_if_phrase(w.summary, f"{_field_label(kb, w.field)} {words}"))
        title = f"Answer again with {_field_label(kb, w.field).lower()} stated: {phrase}"
        what_ifs[(w.field, words)] = OneClick(
            w.field, value, phrase, hint, title, tuple(resubmit.hidden(w.field, value))
        )
    presumed: dict[str, OneClick] = {}
    for p in answer.presumptions:
        spec = _spec(p.field)
        if isinstance(spec, Flag) and isinstance(p.value, bool):
            value = "true" if p.value else "false"
        elif isinstance(spec, Choice) and isinstance(p.value, str):
            value = p.value
        else:  # a band of numbers: confirming it would invent a number
            continue
        shown = _shown(kb, p.field, p.value)
        title = f"Answer again with {_field_label(kb, p.field).lower()} stated: {shown}"
        presumed[p.field] = OneClick(
            p.field, value, "Confirm", "", title, tuple(resubmit.hidden(p.field, value))
        )
    return what_ifs, presumed


_WHAT_IF_ITEM = re.compile(
    r'(<li class="what-if" data-field="([^"]*)" data-value="([^"]*)">.*?)(</li>)', re.DOTALL
)
_PRESUMPTION_ITEM = re.compile(
    r'(<li class="presumption" data-field="([^"]*)">.*?)(</li>)', re.DOTALL
)


def _with_one_clicks(kb: KnowledgeBase, html: str, answer: Any, resubmit: Resubmit) -> str:
    """The report with a button beside each what-if and each presumption of a word value."""
    import html as html_lib

    what_ifs, presumed = _one_clicks(kb, answer, resubmit)
    button = _parts().one_click

    def add_what_if(m: re.Match[str]) -> str:
        key = (html_lib.unescape(m.group(2)), html_lib.unescape(m.group(3)))
        click = what_ifs.get(key)
        return m.group(1) + (str(button(click)) if click else "") + m.group(4)

    def add_presumption(m: re.Match[str]) -> str:
        click = presumed.get(html_lib.unescape(m.group(2)))
        return m.group(1) + (str(button(click)) if click else "") + m.group(3)

    html = _WHAT_IF_ITEM.sub(add_what_if, html)
    return _PRESUMPTION_ITEM.sub(add_presumption, html)


# --- the answer page -----------------------------------------------------------------------


def _answer_page(
    kb: KnowledgeBase,
    report_html: str,
    *,
    values: Mapping[str, list[str]],
    text: str = "",
    understood: Markup | None = None,
    extra: Markup | None = None,
    notes: Markup | None = None,
) -> str:
    parts = _parts()
    html = _inject(report_html, "</head>", str(parts.answer_style()))
    html = _inject(html, "<body>\n", str(parts.page_nav()), after=True)
    if understood is not None:
        html = _inject(html, "</header>\n", str(understood), after=True)
    if notes is not None:
        html = _inject(html, "</header>\n", str(notes), after=True)
    if extra is not None:
        html = _inject(html, "</main>\n", str(extra))
    edit = _edit_section(kb, values, text, open_text=bool(text))
    return _inject(html, "</main>\n", str(edit), after=True)


def _stated_rows(kb: KnowledgeBase, stated: Mapping[str, Any]) -> tuple[UnderstoodRow, ...]:
    flat = flatten(stated)
    return tuple(
        UnderstoodRow(path, _field_label(kb, path), _shown(kb, path, value), ())
        for path, value in flat.items()
    )


def _text_answer(
    kb: KnowledgeBase,
    text: str,
    result: AskResult,
    *,
    stated: Mapping[str, list[str]] | None = None,
    generated: str | None = None,
) -> tuple[str, Any]:
    """The answer page of a text (and the answer, None for a general question)."""
    from netboard.parse.knowledge import UNANSWERED
    from netboard.reports import render_html

    parts = _parts()
    if result.general and result.knowledge is not None:
        statements, references = _knowledge_views(result.knowledge)
        page = _environment().get_template("knowledge.html.j2")
        html = page.render(
            question=result.knowledge.question,
            answered=result.knowledge.answered,
            statements=statements,
            references=references,
            message=UNANSWERED,
            text=text,
            generated=generated,
            **_page_info(kb),
        )
        return html, None
    stated = dict(stated or {})
    stated_case = case_from_form(stated)
    understood = parts.understood_section(
        _understood(kb, result), result.parsed.unparsed, _stated_rows(kb, stated_case)
    )
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
    report = render_html(result.answer, labels=kb.labels, generated=generated)
    report = _with_one_clicks(kb, report, result.answer, Resubmit("text", stated, text))
    merged = _merge(result.parsed.case_dict, stated_case)
    html = _answer_page(
        kb,
        report,
        values=_form_values(merged),
        text=text,
        understood=understood,
        extra=extra,
    )
    return html, result.answer


def _merge(base: Mapping[str, Any], stated: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with the ``stated`` fields put in (objects such as ``labs`` merged)."""
    out = dict(base)
    for key, value in stated.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


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


@dataclass(frozen=True, slots=True)
class Checked:
    """A submission of the page's form: rejected (``status`` 422 and the form again), or
    accepted (``record``: what the answer page needs, kept behind a short-lived link)."""

    status: int
    html: str = ""
    record: Mapping[str, Any] | None = None


def _stated(form: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """The fields stated by one-click buttons beside a text's answer (``stated.PATH``)."""
    return {
        k[len(STATED_PREFIX) :]: [x for x in v if x.strip()]
        for k, v in form.items()
        if k.startswith(STATED_PREFIX) and any(x.strip() for x in v)
    }


def check(form: Mapping[str, list[str]], kb: KnowledgeBase) -> Checked:
    """Judge a POST to ``/`` without answering it yet.

    Args:
        form: the posted fields (``application/x-www-form-urlencoded``, decoded); ``mode``
            is ``case`` (the case fields) or ``text`` (the ``text`` box, and the fields
            stated by one-click buttons as ``stated.PATH``).
        kb: the knowledge base.

    Returns:
        ``Checked(422, form page)`` naming each problem, or ``Checked(303, record=...)``:
        the submission as it was given, for :func:`answer_page`.
    """
    from netboard.parse.ask import MAX_TEXT_BYTES, parse_text

    mode = _first(form, "mode") or ("text" if "text" in form else "case")
    if mode == "text":
        text = "\n".join(form.get("text") or [])
        if not text.strip():
            problem = Problem("text", "empty: paste a note or type a question")
            return Checked(422, form_page(kb, problems=[problem], text=text))
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_TEXT_BYTES:
            problem = Problem(
                "text", f"{size} bytes is larger than the limit of {MAX_TEXT_BYTES} bytes"
            )
            return Checked(422, form_page(kb, problems=[problem], text=text))
        stated = _stated(form)
        if stated:
            try:
                merged = _merge(parse_text(text).case_dict, case_from_form(stated))
                load_case(merged)
            except CaseError as exc:
                return Checked(422, form_page(kb, problems=exc.problems, text=text))
        return Checked(303, record={"mode": "text", "text": text, "stated": stated})
    if mode != "case":
        problem = Problem("mode", f"expected case or text, got {mode!r}")
        return Checked(422, form_page(kb, values=form, problems=[problem]))
    problems = _unit_problems(form)
    try:
        load_case(case_from_form(form))
    except CaseError as exc:
        problems += _explain_none(form, _with_units(form, exc.problems))
    if problems:
        return Checked(422, form_page(kb, values=form, problems=problems))
    values = {k: list(v) for k, v in form.items() if k not in _CONTROL_KEYS}
    return Checked(303, record={"mode": "case", "form": values})


def _with_units(form: Mapping[str, list[str]], problems: Sequence[Problem]) -> list[Problem]:
    """Problems of converted lab values also name the value and unit as typed."""
    converted = {c.field: c for c in conversions(form)}
    out = []
    for p in problems:
        c = converted.get(p.field)
        out.append(Problem(p.field, f"{p.message} (typed as {c.given} {c.unit})") if c else p)
    return out


@dataclass(frozen=True, slots=True)
class AnswerPage:
    """The answer page of a kept submission: status, HTML and the rule ids that fired."""

    status: int
    html: str
    rules: str = "-"


def answer_page(
    kb: KnowledgeBase, record: Mapping[str, Any], *, generated: str | None = None
) -> AnswerPage:
    """Answer a submission that :func:`check` accepted (the page behind its link).

    Returns:
        The report page (200), or the form with the problems (422) should the record no
        longer be a valid case.
    """
    from netboard.engine.recommend import recommend
    from netboard.parse.ask import AskResult, ask
    from netboard.reports import render_html

    if record.get("mode") == "text":
        text = str(record.get("text", ""))
        stated: dict[str, list[str]] = {
            str(k): [str(x) for x in v] for k, v in dict(record.get("stated") or {}).items()
        }
        try:
            result = ask(text, kb)
            if stated and not result.general:
                case_dict = _merge(result.parsed.case_dict, case_from_form(stated))
                implied = {
                    k: v for k, v in result.parsed.implied.items() if k not in flatten(case_dict)
                }
                answer = recommend(
                    load_case(case_dict), kb=kb, implied=implied, **result.parsed.scope_args()
                )
                result = AskResult(result.parsed, answer, result.knowledge, result.general)
        except CaseError as exc:  # the reader validates what it keeps; kept as a safety net
            return AnswerPage(422, form_page(kb, problems=exc.problems, text=text))
        html, answer = _text_answer(kb, text, result, stated=stated, generated=generated)
        return AnswerPage(200, html, _rules_of(answer))
    form = {str(k): [str(x) for x in v] for k, v in dict(record.get("form") or {}).items()}
    try:
        case = load_case(case_from_form(form))
    except CaseError as exc:
        return AnswerPage(422, form_page(kb, values=form, problems=exc.problems))
    answer = recommend(case, kb=kb)
    report = render_html(answer, labels=kb.labels, generated=generated)
    report = _with_one_clicks(kb, report, answer, Resubmit("case", form))
    notes = None
    if converted := conversions(form):
        notes = _parts().conversions_note([c.words for c in converted])
    html = _answer_page(kb, report, values=form, notes=notes)
    return AnswerPage(200, html, _rules_of(answer))


def _rules_of(answer: Any) -> str:
    if answer is None:
        return "-"
    return ",".join(sorted({r.rule_id for r in answer.recommendations}))


def submit(
    form: Mapping[str, list[str]], kb: KnowledgeBase, *, generated: str | None = None
) -> tuple[int, str]:
    """Answer a POST to ``/`` at once: :func:`check`, then :func:`answer_page`.

    (The service keeps an accepted submission behind a short-lived link and redirects to it,
    so that the answer has its own URL; this is the same page without the link.)

    Returns:
        ``(200, report page)``, or ``(422, form page)`` naming each problem.
    """
    checked = check(form, kb)
    if checked.record is None:
        return checked.status, checked.html
    page = answer_page(kb, checked.record, generated=generated)
    return page.status, page.html


def expired_page(kb: KnowledgeBase) -> str:
    """The page of an answer link that is unknown or has expired."""
    return _environment().get_template("expired.html.j2").render(**_page_info(kb))


def about_page(about: Mapping[str, Any]) -> str:
    """The ``/about`` page: the source attributes of the decision support, readable."""
    return _environment().get_template("about.html.j2").render(about=about)
