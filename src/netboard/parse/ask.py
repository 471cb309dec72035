"""``netboard ask``: free text becomes a partial case, then the answer ``recommend`` gives.

``parse_text`` reads the text (``extract``), decides what is stated (``negation``), keeps
one value per single-valued field (a conflict keeps none), validates the result with
``load_case`` and reports what it could not use. ``ask`` answers a text (the CLI and the
service share it); ``run_ask`` is the command.

A general question that describes no patient ("lanreotide dose for GEP-NET?") is answered
from the knowledge base's own statements (:mod:`netboard.parse.knowledge`): the JSON answer
gains a ``knowledge`` object and the Markdown shows "From the knowledge base" instead of the
patient report. See :func:`is_general_question`.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netboard.case import load_case
from netboard.errors import CaseError
from netboard.fields import ChoiceList, field_paths, flatten, nest, registry
from netboard.parse.extract import (
    LESION,
    NO_SITES,
    Doc,
    Intervals,
    Lexicon,
    Mention,
    Span,
    concept_spans,
    extract,
    lexicon,
    recognised_spans,
)
from netboard.parse.negation import AFFIRMED, NEGATED, assert_mentions
from netboard.vocab import Neoplasm

if TYPE_CHECKING:
    from netboard.answer import Answer
    from netboard.kb import KnowledgeBase
    from netboard.parse.knowledge import KnowledgeAnswer

MAX_TEXT_BYTES = 100_000
_ALNUM = re.compile(r"[^\W_]")
EXIT_OK = 0
EXIT_INPUT = 2

#: A general site and the sites that refine it ("small bowel ... terminal ileum": ileum).
_REFINES: dict[str, frozenset[str]] = {
    "small_intestine": frozenset({"ileum", "jejunum"}),
    "colon": frozenset(
        {"ascending_colon", "transverse_colon", "descending_colon", "sigmoid_colon"}
    ),
}


@dataclass(frozen=True, slots=True)
class Used:
    """One field value taken from the text, with the words it was read from."""

    field: str
    value: Any
    text: str


@dataclass(frozen=True, slots=True)
class ParsedText:
    """What ``parse_text`` read.

    Attributes:
        case_dict: contract case fields only, exactly what ``load_case`` accepts (lists as
            lists, labs nested), in contract order.
        spans_used: the field values taken, each with the words it came from.
        unparsed: text it could not use, in text order: fragments with no known word,
            clauses naming a clinical concept that no field holds, and mentions that were
            uncertain, historical, conflicting or not a usable value.
        implied: values a term implies by convention but the text does not state, never in
            ``case_dict``: field -> (value, the words it came from). A "neuroendocrine tumour"
            (NET) with no differentiation stated gives ``{"differentiation": ("well",
            "neuroendocrine tumour")}`` (WHO 2019: NET is well differentiated), so an answer
            that presumes the differentiation can cite the words.
        topics: treatment codes the text names without saying they were given (asked about,
            proposed or planned: "radioembolization proposed"), in text order.
    """

    case_dict: dict[str, Any]
    spans_used: tuple[Used, ...]
    unparsed: tuple[str, ...]
    implied: dict[str, tuple[Any, str]] = dataclasses.field(default_factory=dict)
    topics: tuple[str, ...] = ()
    #: the words naming a cancer that is not neuroendocrine, when the text names no
    #: neuroendocrine neoplasm ("lung adenocarcinoma"): netboard then gives no plan
    non_neuroendocrine: str = ""

    def scope_args(self) -> dict[str, Any]:
        """``recommend`` keyword arguments for what the text says about the neoplasm."""
        if not self.non_neuroendocrine:
            return {}
        return {
            "neoplasm": Neoplasm.NON_NEUROENDOCRINE,
            "neoplasm_detail": f"the text names {self.non_neuroendocrine}",
        }


def _is_list(field: str) -> bool:
    return isinstance(registry().spec(field), ChoiceList)


def _list_order(field: str, values: list[Any]) -> list[Any]:
    spec = registry().spec(field)
    assert isinstance(spec, ChoiceList)
    order = {m.value: i for i, m in enumerate(spec.enum)}
    return sorted(set(values), key=lambda v: order.get(v, len(order)))


def _resolve(
    field: str,
    mentions: list[Mention],
    doc: Doc,
    current: Any,
    ranked: tuple[str, ...] = (),
    sequence: Any = None,
) -> tuple[Any, list[Mention]] | None:
    """One value for a single-valued field, or None when the text disagrees with itself
    (for a ``ranked`` field, such as the margin, the worst value stated wins; for the disease
    status, the current statement, or the later one after a ``sequence`` word)."""
    top = max(m.strength for m in mentions)
    strongest = [m for m in mentions if m.strength == top]
    values = {m.value for m in strongest}
    if len(values) > 1 and values <= set(ranked):
        values = {max(values, key=ranked.index)}
    if len(values) > 1 and field == "primary_site":
        for general, specific in _REFINES.items():
            rest = values - {general}
            if general in values and len(rest) == 1 and rest <= specific:
                values = rest
    if len(values) > 1 and field == "disease_status":
        # "stable for two years, now progressing": the current statement wins.
        now = {
            m.value
            for m in strongest
            if current.search(doc.text, *doc.segment(m.start)) is not None
        }
        if len(now) == 1:
            values = now
        elif sequence is not None and values == {"stable", "progressive"}:
            # "stable for 3 years on octreotide before progressing": the later one.
            stable_end = max(m.end for m in strongest if m.value == "stable")
            progressive_start = min(m.start for m in strongest if m.value == "progressive")
            if stable_end <= progressive_start and sequence.search(
                doc.text, stable_end, progressive_start
            ):
                values = {"progressive"}
    if len(values) != 1:
        return None
    value = next(iter(values))
    return value, [m for m in strongest if m.value == value]


def _merge(spans: list[Span]) -> list[Span]:
    merged: list[Span] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def _trim(text: str) -> str:
    return " ".join(text.split()).strip(" ,;:").rstrip(".").rstrip(" ,;:")


def parse_text(text: str) -> ParsedText:
    """Read free text (a question or a note) into a partial case.

    Only what the text states becomes a field: negated, uncertain, hypothetical and
    historical mentions do not, nor bounds ("Ki-67 <2%"), ranges or conflicting values;
    those are listed in ``unparsed``.

    Args:
        text: the question or note.

    Returns:
        The parsed case (validated by ``load_case``), the words each value came from, and
        the text that could not be used.

    Example:
        >>> p = parse_text("62M sigmoid NET G2, bilobar liver mets, no bone mets. ECOG 1")
        >>> p.case_dict["primary_site"], p.case_dict["metastatic_sites"], p.case_dict["ecog"]
        ('sigmoid_colon', ['liver'], 1)
        >>> parse_text("Possible bone mets? Ki-67 <2%").unparsed
        ('Possible bone mets', 'Ki-67 <2%')
    """
    lex = lexicon()
    doc = Doc(text, lex.abbreviations)
    mentions = extract(doc, lex)
    assertions = assert_mentions(doc, lex, mentions)

    unusable: list[Span] = []
    context: list[Span] = []
    candidates: dict[str, list[Mention]] = {}
    implied_found: list[Mention] = []
    topics: list[str] = []
    # Every value a field is given anywhere, asked and doubted included: an implied value
    # stands only when no other value is named ("NET or NEC?" implies nothing).
    named: dict[str, set[Any]] = {}
    # A lesion names the primary's site only when a neoplasm is not doubted: some tumour
    # word is stated, or there is none ("gastric mass"; not "pancreatic lesion, suspicious
    # for a NET").
    evidence = [a.status for m, a in zip(mentions, assertions, strict=True) if m.kind == "evidence"]
    doubted = bool(evidence) and AFFIRMED not in evidence
    non_ne: list[str] = []
    for m, a in zip(mentions, assertions, strict=True):
        if m.kind == "evidence":
            continue
        if (
            a.status == AFFIRMED
            and not m.field
            and lex.non_neuroendocrine.fullmatch(text, m.start, m.end)
        ):
            non_ne.append(text[m.start : m.end])
        if doubted and m.note == LESION:
            unusable.append((m.start, m.end))
            continue
        if a.status != NEGATED and m.value is not None and m.kind != "topic":
            named.setdefault(m.field, set()).add(m.value)
        if m.kind == "topic":
            # Asked or planned: the question's subject, never a fact.
            if a.status != NEGATED and m.value not in topics:
                topics.append(m.value)
            continue
        if m.kind == "implied":
            if a.status == AFFIRMED:
                implied_found.append(m)
            continue
        if a.status == NEGATED:
            if not m.field and lex.denied_findings.fullmatch(text, m.start, m.end):
                # "No distant disease" leaves the nodes open: no field holds it.
                unusable.append((a.start, a.end))
            continue
        if a.status != AFFIRMED:
            unusable.append((a.start, a.end))
        elif m.value is None:
            unusable.append((m.start, m.end))
        elif m.kind == "context":
            context.append((m.start, m.end))
        else:
            candidates.setdefault(m.field, []).append(m)

    values: dict[str, Any] = {}
    used: dict[str, list[Mention]] = {}
    outvoted: list[Mention] = []
    for name, found in candidates.items():
        if _is_list(name):
            sites = [m for m in found if m.value != NO_SITES]
            if len(sites) < len(found) and sites:
                # "localised" and a named metastasis: the named site is the fact.
                unusable.extend((m.start, m.end) for m in found if m.value == NO_SITES)
                found = sites
            values[name] = _list_order(name, [m.value for m in sites])
            used[name] = found
            continue
        resolved = _resolve(
            name, found, doc, lex.current, lex.worst_wins.get(name, ()), lex.sequence_words
        )
        if resolved is None:
            unusable.extend((m.start, m.end) for m in found)
        else:
            values[name] = value = resolved[0]
            # Every mention agreeing with the value supports it ("small bowel NET ... terminal
            # ileum": ileum); a weaker reading of another value is reported ("gastric mass"
            # beside a stated ileal NET).
            general = {g for g, specific in _REFINES.items() if value in specific}
            used[name] = [m for m in found if m.value == value or m.value in general]
            outvoted.extend(m for m in found if m.value != value and m.value not in general)
    if "months_stable" in values and values.get("disease_status") != "stable":
        # "Stable for 18 months, now progressing": the stable time is history.
        del values["months_stable"]
        unusable.extend((m.start, m.end) for m in used.pop("months_stable"))

    case_dict = _validated(values, used, unusable)
    taken = Intervals((m.start, m.end) for found in used.values() for m in found)
    unusable.extend((m.start, m.end) for m in outvoted if not taken.covers((m.start, m.end)))
    if "metastatic_sites" not in case_dict:
        # "Stage IV" or "metastatic" with no site named: no site is invented.
        unusable.extend(context)

    known = Intervals(recognised_spans(doc, lex) + [(m.start, m.end) for m in mentions])
    for s, e in doc.segments:
        if _ALNUM.search(doc.text, s, e) and not known.overlaps((s, e)):
            unusable.append((s, e))
    # Nothing decisive is dropped: a clinical concept that no mention read (read, negated,
    # asked or reported) is reported with its clause.
    read = Intervals((m.start, m.end) for m in mentions if m.kind != "evidence")
    for s, e in concept_spans(doc, lex):
        if not read.overlaps((s, e)):
            unusable.append(doc.segment(s))

    unparsed: list[str] = []
    seen: set[str] = set()
    for s, e in _merge(unusable):
        piece = _trim(text[s:e])
        if piece and piece not in seen:
            seen.add(piece)
            unparsed.append(piece)
    spans_used = tuple(
        Used(name, m.value, _trim(text[m.start : m.end]))
        for name in _field_order(case_dict)
        for m in used.get(name, [])
    )
    return ParsedText(
        case_dict,
        spans_used,
        tuple(unparsed),
        _implied(case_dict, implied_found, named, text),
        tuple(topics),
        _non_neuroendocrine(non_ne, text, lex),
    )


def _non_neuroendocrine(found: list[str], text: str, lex: Lexicon) -> str:
    """The non-neuroendocrine cancers the text names, when it names no neuroendocrine
    neoplasm at all (a MiNEN, or "history of prostate adenocarcinoma, now ileal NET", is one)."""
    if not found or lex.neuroendocrine_words.search(text):
        return ""
    return ", ".join(dict.fromkeys(found))


def _implied(
    case_dict: dict[str, Any], found: list[Mention], named: dict[str, set[Any]], text: str
) -> dict[str, tuple[Any, str]]:
    """What the terms imply for the fields the case leaves unstated: one value, named by no
    other words of the text, or nothing."""
    out: dict[str, tuple[Any, str]] = {}
    by_field: dict[str, list[Mention]] = {}
    for m in found:
        by_field.setdefault(m.field, []).append(m)
    for name, group in by_field.items():
        if name in case_dict or len(named.get(name, set())) != 1:
            continue
        out[name] = (group[0].value, _trim(text[group[0].start : group[0].end]))
    return out


def _field_order(case_dict: dict[str, Any]) -> list[str]:
    given = flatten(case_dict)
    return [f for f in field_paths() if f in given]


def _build(values: dict[str, Any]) -> dict[str, Any]:
    return nest({f: values[f] for f in field_paths() if f in values})


def _validated(
    values: dict[str, Any], used: dict[str, list[Mention]], unusable: list[Span]
) -> dict[str, Any]:
    """Drop whatever ``load_case`` refuses (a contradiction between stated values)."""
    for _ in range(len(values) + 1):
        case = _build(values)
        try:
            load_case(case)
        except CaseError as exc:
            drop: set[str] = set()
            for problem in exc.problems:
                name = problem.field.split("[", 1)[0]
                drop.add(name)
                if name == "pregnant":
                    drop.add("sex")
                if name == "progressed_on":
                    drop.add("disease_status")
            drop &= set(values)
            if not drop:  # pragma: no cover - every problem names a field we set
                return {}
            for name in drop:
                del values[name]
                unusable.extend((m.start, m.end) for m in used.pop(name, []))
            continue
        return case
    return {}  # pragma: no cover


# --- general questions ---------------------------------------------------------------------

_QUESTION_WORD = re.compile(
    r"^\W*(?:what|which|when|how|why|is|are|can|could|should|does|do|will|may)\b", re.I
)


def describes_patient(case_dict: dict[str, Any]) -> bool:
    """Whether the parsed case states something only a particular patient has.

    A site, grade, syndrome, treatment or comorbidity alone names a topic ("SSA in
    insulinoma"); an age, a lab value, a Ki-67 or the metastatic sites describe a patient.

    Example:
        >>> describes_patient({"functional_syndrome": "insulinoma"})
        False
        >>> describes_patient({"primary_site": "pancreas", "metastatic_sites": ["liver"]})
        True
    """
    fields_ = registry().fields
    return any(fields_[p].personal for p in flatten(case_dict) if p in fields_)


def is_question(text: str) -> bool:
    """Whether the text asks something: a question mark, a question word first, or a request
    for a dose, side effects, criteria, a washout or monitoring.

    Example:
        >>> is_question("Can SSA be used in insulinoma"), is_question("insulinoma, liver mets")
        (True, False)
    """
    from netboard.parse.knowledge import asks_for_knowledge

    return (
        text.rstrip().endswith("?")
        or _QUESTION_WORD.match(text) is not None
        or asks_for_knowledge(text)
    )


def is_general_question(case_dict: dict[str, Any], text: str) -> bool:
    """Whether the text is a general question rather than a patient to answer.

    It is when nothing in it became a case field, or when it asks something and states only
    topic fields (site, grade, syndrome, treatment, comorbidity; see :func:`describes_patient`).

    Example:
        >>> is_general_question({}, "side effects of Lutathera")
        True
        >>> is_general_question({"grade": "g2"}, "follow-up imaging interval for NET G2?")
        True
        >>> is_general_question({"grade": "g2", "ki67_percent": 5}, "NET G2 Ki-67 5%: dose?")
        False
    """
    if not case_dict:
        return True
    return not describes_patient(case_dict) and is_question(text)


def question_part(text: str, parsed: ParsedText) -> str:
    """The text without the words that became case fields: what is asked about the patient.

    Example:
        >>> t = "pNET G2, liver mets: lanreotide dose?"
        >>> " ".join(question_part(t, parse_text(t)).split())
        ', : lanreotide dose?'
    """
    for used in sorted(parsed.spans_used, key=lambda u: -len(u.text)):
        text = text.replace(used.text, " ")
    return text


def topic_question(parsed: ParsedText) -> str:
    """The question a text asks by naming treatments it does not say were given: their
    names and the metastatic sites ("radioembolization proposed" + liver mets: "tare liver").

    Example:
        >>> topic_question(parse_text("Liver mets. Radioembolization proposed."))
        'tare liver'
    """
    sites = parsed.case_dict.get("metastatic_sites") or []
    return " ".join([t.replace("_", " ") for t in parsed.topics] + [str(x) for x in sites])


# --- the command ---------------------------------------------------------------------------


def read_text(arg: str) -> tuple[str, str]:
    """The text (``-``: standard input), or an error message naming the problem."""
    if arg == "-":
        try:
            stream = getattr(sys.stdin, "buffer", None)
            if stream is not None:
                raw: bytes = stream.read(MAX_TEXT_BYTES + 1)
            else:
                raw = sys.stdin.read(MAX_TEXT_BYTES + 1).encode("utf-8", "surrogatepass")
        except (OSError, ValueError, AttributeError):
            return "", "text: cannot read standard input"
        if len(raw) > MAX_TEXT_BYTES:
            return "", f"text: larger than {MAX_TEXT_BYTES} bytes"
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            return "", "text: not UTF-8"
    else:
        text = arg
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            return "", "text: not valid UTF-8"
        if size > MAX_TEXT_BYTES:
            return "", f"text: larger than {MAX_TEXT_BYTES} bytes"
    if not text.strip():
        return "", "text: empty"
    return text, ""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|").replace("`", "'")


def understood_markdown(parsed: ParsedText) -> str:
    """The "What I understood" table (field | value | from the words) and what was not used."""
    lines = ["## What I understood", ""]
    if parsed.spans_used:
        lines += ["| field | value | from the words |", "|---|---|---|"]
        rows: dict[str, tuple[Any, list[str]]] = {}
        for u in parsed.spans_used:
            shown = _shown_value(parsed.case_dict, u.field)
            words = rows.setdefault(u.field, (shown, []))[1]
            if u.text not in words:
                words.append(u.text)
        for field, (value, words) in rows.items():
            # "DOTATATE avid" inside "Ga-68 DOTATATE avid" says nothing more.
            words = [w for w in words if not any(w != o and w in o for o in words)]
            quoted = "; ".join(f'"{_cell(w)}"' for w in words)
            lines.append(f"| {field} | {_cell(str(value))} | {quoted} |")
    else:
        lines.append("Nothing in the text matched a case field.")
    for name, (value, term) in parsed.implied.items():
        lines += [
            "",
            f'Not stated, implied by the term "{_cell(term)}": {name} {_cell(str(value))}'
            " (WHO 2019 convention; not put into the case).",
        ]
    if parsed.unparsed:
        lines += ["", "Not used: " + "; ".join(f'"{_cell(u)}"' for u in parsed.unparsed)]
    return "\n".join(lines) + "\n"


def _shown_value(case_dict: dict[str, Any], field: str) -> Any:
    if field.startswith("labs."):
        return case_dict["labs"][field[5:]]
    value = case_dict[field]
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


@dataclass(frozen=True, slots=True)
class AskResult:
    """What ``netboard ask`` found in a text and answered: shared by the CLI and the service."""

    parsed: ParsedText
    answer: Answer
    knowledge: KnowledgeAnswer | None
    general: bool

    def to_dict(self) -> dict[str, Any]:
        """The contract answer JSON plus ``parsed_case``, ``unparsed`` and ``knowledge``."""
        data = self.answer.to_dict()
        data["parsed_case"] = self.parsed.case_dict
        data["unparsed"] = list(self.parsed.unparsed)
        if self.knowledge is not None:
            data["knowledge"] = self.knowledge.to_dict()
        return data

    def markdown(self, *, generated: str | None = None, verbose: bool = False) -> str:
        """What was understood, then the report (or only the knowledge answer).

        ``generated`` (the date and time shown in the report) and ``verbose`` (rule ids and
        codes) are passed to the report renderer.
        """
        from netboard.parse.knowledge import knowledge_markdown

        if self.general and self.knowledge is not None:
            return knowledge_markdown(self.knowledge)
        report = _report_markdown(self.answer, generated=generated, verbose=verbose)
        out = understood_markdown(self.parsed) + "\n" + report
        if self.knowledge is not None:
            out += "\n" + knowledge_markdown(self.knowledge)
        return out


def ask(text: str, kb: KnowledgeBase) -> AskResult:
    """Read ``text`` into a case and answer it (or answer the general question it asks)."""
    from netboard.engine.recommend import recommend
    from netboard.parse.knowledge import answer_question, asks_for_knowledge

    parsed = parse_text(text)
    case = load_case(parsed.case_dict)
    # A general question is answered from the knowledge base; a patient keeps the patient
    # answer, with the matching statements too when the text asks for a dose, criteria...
    general = is_general_question(parsed.case_dict, text)
    knowledge = None
    if general:
        knowledge = answer_question(text, kb)
    elif asks_for_knowledge(text):
        knowledge = answer_question(question_part(text, parsed), kb)
    elif parsed.topics:
        # A treatment named but not given ("radioembolization proposed"): what the knowledge
        # base says about it for these metastatic sites, beside the patient answer.
        knowledge = answer_question(topic_question(parsed), kb)
    if knowledge is not None and not knowledge.answered and parsed.case_dict:
        general, knowledge = False, None
    # The words of the question can imply what it does not state ("neuroendocrine tumour"
    # names a well-differentiated neoplasm): the board answer presumes it and says so.
    implied = getattr(parsed, "implied", None) or {}
    answer = recommend(case, kb=kb, implied=implied, **parsed.scope_args())
    return AskResult(parsed, answer, knowledge, general)


def run_ask(args: argparse.Namespace) -> int:
    """Run ``netboard ask`` (the command itself lives in :func:`netboard.cli.run_ask`)."""
    from netboard.cli import run_ask as command

    return command(args)


def _report_markdown(answer: Any, *, generated: str | None = None, verbose: bool = False) -> str:
    from netboard.reports import render, render_json

    try:
        return render(answer, "markdown", generated=generated, verbose=verbose)
    except (ImportError, AttributeError):
        # The markdown renderer is not there yet: show the JSON answer.
        return "```json\n" + render_json(answer) + "```\n"
