"""The web page without a browser: the form's fields and choices, form -> case, and submit."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from netboard.case import field_paths, load_case
from netboard.documents import yaml_loader
from netboard.engine.recommend import recommend
from netboard.errors import CaseError, Problem
from netboard.fields import Choice, ChoiceList, Flag, Number, Text, flatten, registry
from netboard.kb import KnowledgeBase
from netboard.parse.ask import MAX_TEXT_BYTES, ask
from netboard.reports import render_html
from netboard.service.page import (
    NONE_OF_THESE,
    OFFERED,
    OTHER_UNITS,
    UNIT_PREFIX,
    case_from_form,
    form_groups,
    form_page,
    submit,
)

FIELDS = {path: f.spec for path, f in registry().top.items()}
LAB_FIELDS = {name: f.spec for name, f in registry().members["labs"].items()}

ROOT = Path(__file__).resolve().parents[2]
VIGNETTES = sorted((ROOT / "tests" / "vignettes").glob("*.yaml"))
SIGMOID = ROOT / "examples" / "sigmoid.yaml"


# --- reading the page back -----------------------------------------------------------------


class Page(HTMLParser):
    """The controls, labels, ids, links and citations of an HTML page."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.controls: list[dict[str, Any]] = []
        self.labels_for: set[str] = set()
        self.ids: list[str] = []
        self.tags: list[str] = []
        self.hrefs: list[str] = []
        self.cites: list[str] = []
        self.recommendations: list[dict[str, str]] = []
        self.forms: list[dict[str, str]] = []
        self._select: dict[str, Any] | None = None
        self._textarea: dict[str, Any] | None = None
        self._open_fieldsets: list[dict[str, Any]] = []
        self.fieldsets: list[dict[str, Any]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
            if "cite" in a.get("class", "").split():
                self.cites.append(a["href"])
        if tag == "form":
            self.forms.append(a)
        if tag == "label" and "for" in a:
            self.labels_for.add(a["for"])
        if tag == "fieldset":
            entry = {**a, "legend": False}
            self._open_fieldsets.append(entry)
            self.fieldsets.append(entry)
        if tag == "legend" and self._open_fieldsets:
            self._open_fieldsets[-1]["legend"] = True
        if tag == "article" and "recommendation" in a.get("class", "").split():
            self.recommendations.append(a)
        if tag == "input":
            self.controls.append({"tag": "input", **a})
        elif tag == "select":
            self._select = {"tag": "select", **a, "options": [], "selected": []}
            self.controls.append(self._select)
        elif tag == "option" and self._select is not None:
            self._select["options"].append(a.get("value", ""))
            if "selected" in a:
                self._select["selected"].append(a.get("value", ""))
        elif tag == "textarea":
            self._textarea = {"tag": "textarea", **a, "text": ""}
            self.controls.append(self._textarea)

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            # HTML drops one newline right after <textarea> (html.parser does not).
            text = self._textarea["text"]
            self._textarea["text"] = text[1:] if text.startswith("\n") else text
            self._textarea = None
        elif tag == "fieldset" and self._open_fieldsets:
            self._open_fieldsets.pop()

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._textarea["text"] += data

    def named(self, name: str) -> list[dict[str, Any]]:
        return [c for c in self.controls if c.get("name") == name]

    def by_id(self, element_id: str) -> dict[str, Any]:
        (found,) = [c for c in self.controls if c.get("id") == element_id]
        return found


def case_controls(page: Page) -> Page:
    """Only the controls of the case form (the page also has the text form)."""
    page.controls = [c for c in page.controls if c.get("name") not in ("mode", "text")]
    return page


def load_yaml_case(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml_loader())
    return dict(data.get("case", data))


def form_of(case: dict[str, Any]) -> dict[str, list[str]]:
    """The form fields a person would fill for a contract case (the browser's encoding)."""

    def text(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    form: dict[str, list[str]] = {"mode": ["case"]}
    for key, value in flatten(case).items():
        if isinstance(value, list):
            form[key] = [text(x) for x in value] or [NONE_OF_THESE]
        else:
            form[key] = [text(value)]
    return form


# --- the form ------------------------------------------------------------------------------


def test_every_case_field_is_in_exactly_one_group() -> None:
    grouped = [path for _, paths in form_groups() for path in paths]
    assert sorted(grouped) == sorted(field_paths())
    assert len(grouped) == len(set(grouped))


def test_every_contract_and_lab_field_has_a_control_named_by_its_path(kb: KnowledgeBase) -> None:
    page = case_controls(Page(form_page(kb)))
    names = {c["name"] for c in page.controls}
    units = {n for n in names if n.startswith(UNIT_PREFIX)}
    assert units == {UNIT_PREFIX + path for path in OTHER_UNITS}
    assert names - units == set(field_paths())
    for name in field_paths():
        assert page.named(name), name


@pytest.mark.parametrize("name", list(FIELDS), ids=str)
def test_each_field_offers_the_contract_choices(kb: KnowledgeBase, name: str) -> None:
    spec = FIELDS[name]
    controls = Page(form_page(kb)).named(name)
    if isinstance(spec, Choice):
        (select,) = controls
        assert select["tag"] == "select"
        assert select["options"] == ["", *(m.value for m in spec.enum)]
        assert select["selected"] == [""]
    elif isinstance(spec, Flag):
        # Tri-state: an unticked box would turn "not known" into false.
        (select,) = controls
        assert select["tag"] == "select"
        assert select["options"] == ["", "true", "false"]
        assert select["selected"] == [""]
    elif isinstance(spec, ChoiceList):
        assert {c["type"] for c in controls} == {"checkbox"}
        offered = OFFERED.get(name, tuple(m.value for m in spec.enum))
        in_order = [m.value for m in spec.enum if m.value in offered]
        assert [c["value"] for c in controls] == [*in_order, NONE_OF_THESE]
        assert not any("checked" in c for c in controls)
    elif isinstance(spec, Number):
        (box,) = controls
        assert (box["type"], float(box["min"])) == ("number", spec.lo)
        assert float(box["max"]) == spec.hi if spec.hi is not None else "max" not in box
        assert box["step"] == ("1" if spec.integer else "any")
    else:
        assert isinstance(spec, Text)
        (box,) = controls
        assert box["type"] == "text"


@pytest.mark.parametrize("name", list(LAB_FIELDS), ids=str)
def test_each_lab_field_is_a_bounded_number(kb: KnowledgeBase, name: str) -> None:
    spec = LAB_FIELDS[name]
    page = Page(form_page(kb))
    (box,) = page.named(f"labs.{name}")
    assert box["type"] == "number"
    if f"labs.{name}" in OTHER_UNITS:
        # The browser cannot know the bound of a value typed in another unit.
        assert (float(box["min"]), box["step"], "max" in box) == (spec.lo, "any", False)
        (unit,) = page.named(f"{UNIT_PREFIX}labs.{name}")
        assert unit["tag"] == "select"
        assert unit["options"][0] == registry().fields[f"labs.{name}"].unit
        assert unit["selected"] == [unit["options"][0]]
    else:
        assert (float(box["min"]), float(box["max"]), box["step"]) == (spec.lo, spec.hi, "any")


def test_every_control_has_a_label_and_every_fieldset_a_legend(kb: KnowledgeBase) -> None:
    page = Page(form_page(kb))
    visible = [c for c in page.controls if c.get("type") != "hidden"]
    assert visible
    unlabelled = [c.get("name") for c in visible if c.get("id") not in page.labels_for]
    assert unlabelled == []
    assert page.fieldsets
    assert all(f["legend"] for f in page.fieldsets)
    assert len(page.ids) == len(set(page.ids)), "duplicate ids"


def test_field_labels_come_from_the_knowledge_base(kb: KnowledgeBase) -> None:
    html = form_page(kb)
    for path in field_paths():
        label = kb.fields[path].label
        assert label[:1].upper() + label[1:] in html, path
    assert "Sigmoid colon" in html  # value labels, not bare codes
    assert kb.labels["interventions"]["prrt"] in html


def test_both_forms_post_to_the_page_with_their_mode(kb: KnowledgeBase) -> None:
    page = Page(form_page(kb))
    assert [(f["id"], f["method"], f["action"]) for f in page.forms] == [
        ("text-form", "post", "/"),
        ("case-form", "post", "/"),
    ]
    modes = [c["value"] for c in page.named("mode")]
    assert modes == ["text", "case"]
    (box,) = page.named("text")
    assert box["tag"] == "textarea"


def test_page_needs_no_script_and_no_outside_resource(kb: KnowledgeBase) -> None:
    html = form_page(kb)
    page = Page(html)
    assert not {"script", "link", "img", "iframe", "object"} & set(page.tags)
    assert "src=" not in html
    assert "url(" not in html
    assert "@import" not in html
    assert not [h for h in page.hrefs if not h.startswith(("#", "/"))]
    assert "@media print" in html


# --- a rejected submission shown again -----------------------------------------------------


def test_rejected_values_are_shown_again_exactly_as_given(kb: KnowledgeBase) -> None:
    values = {
        "id": ['case "7" <b>'],
        "age_years": ["62"],
        "ki67_percent": ["150"],
        "mitoses_per_2mm2": ["8,5"],
        "primary_site": ["sigmoid"],
        "sex": ["male"],
        "pregnant": ["maybe"],
        "primary_resected": ["false"],
        "metastatic_sites": ["liver", "spleen"],
        "comorbidities": [NONE_OF_THESE],
        "labs.platelets_10e9_l": ["abc"],
    }
    page = Page(form_page(kb, values=values))
    assert page.by_id("f-id")["value"] == 'case "7" <b>'
    assert page.by_id("f-age_years")["value"] == "62"
    # Out of range is still a number: the number input keeps it.
    assert (page.by_id("f-ki67_percent")["type"], page.by_id("f-ki67_percent")["value"]) == (
        "number",
        "150",
    )
    # Not a number: a number input would blank it, so it comes back in a text input.
    for element_id, typed in [("f-mitoses_per_2mm2", "8,5"), ("f-labs-platelets_10e9_l", "abc")]:
        assert (page.by_id(element_id)["type"], page.by_id(element_id)["value"]) == ("text", typed)
    assert page.by_id("f-primary_site")["selected"] == ["sigmoid"]
    assert page.by_id("f-sex")["selected"] == ["male"]
    assert page.by_id("f-pregnant")["selected"] == ["maybe"]
    assert page.by_id("f-primary_resected")["selected"] == ["false"]
    ticked = [c["value"] for c in page.named("metastatic_sites") if "checked" in c]
    assert ticked == ["liver", "spleen"]
    assert [c["value"] for c in page.named("comorbidities") if "checked" in c] == [NONE_OF_THESE]


def test_problems_are_named_in_the_summary_and_beside_each_field(kb: KnowledgeBase) -> None:
    problems = [
        Problem("ki67_percent", "150 is outside the possible range 0-100"),
        Problem("progressed_on[0]", "'prrt' is not in prior_treatments"),
        Problem("labs.platelets_10e9_l", 'expected a number, got "abc"'),
        Problem("colour", "unknown field (not in contract v2)"),
    ]
    html = form_page(kb, values={"ki67_percent": ["150"]}, problems=problems)
    summary = re.search(r'<div class="problems" id="problems" role="alert".*?</div>', html, re.S)
    assert summary is not None
    for p in problems:
        assert p.field in summary.group(0)
        assert p.message.replace('"', "&#34;").replace("'", "&#39;") in summary.group(0)
    assert '<a href="#f-ki67_percent">Ki-67 index</a>' in summary.group(0)
    assert '<a href="#f-progressed_on">' in summary.group(0)
    page = Page(html)
    for element_id in ("f-ki67_percent", "f-labs-platelets_10e9_l"):
        control = page.by_id(element_id)
        assert control["aria-invalid"] == "true"
        assert control["aria-describedby"] == f"{element_id}-problem"
        assert f"{element_id}-problem" in page.ids
    assert "f-progressed_on-problem" in page.ids
    assert "<title>Problems to correct" in html


def test_a_page_without_problems_has_no_alert(kb: KnowledgeBase) -> None:
    html = form_page(kb)
    assert 'role="alert"' not in html
    assert "aria-invalid" not in html


# --- form -> case --------------------------------------------------------------------------


def test_blank_values_are_unknown_not_empty() -> None:
    form = {
        "mode": ["case"],
        "id": [""],
        "sex": [""],
        "ki67_percent": ["   "],
        "pregnant": [""],
        "metastatic_sites": [""],
        "labs.platelets_10e9_l": [""],
    }
    assert case_from_form(form) == {}


@pytest.mark.parametrize(
    ("given", "value"),
    [("8", 8), ("8.5", 8.5), (" 12 ", 12), (".5", 0.5), ("8.", 8.0), ("1e2", 100.0), ("-3", -3)],
)
def test_numbers_are_parsed(given: str, value: float) -> None:
    case = case_from_form({"ki67_percent": [given], "labs.albumin_g_dl": [given]})
    assert case == {"ki67_percent": value, "labs": {"albumin_g_dl": value}}
    assert type(case["ki67_percent"]) is type(value)


@pytest.mark.parametrize(
    "given", ["8,5", "eight", "nan", "inf", "1_000", "1e999", "0x10", "8 %", "9" * 400]
)
def test_a_word_in_a_number_field_is_kept_and_named_by_load_case(given: str) -> None:
    case = case_from_form({"ki67_percent": [given], "labs.platelets_10e9_l": [given]})
    assert case == {"ki67_percent": given, "labs": {"platelets_10e9_l": given}}
    with pytest.raises(CaseError) as caught:
        load_case(case)
    assert [p.field for p in caught.value.problems] == ["ki67_percent", "labs.platelets_10e9_l"]


def test_list_fields_come_from_repeated_keys_in_order() -> None:
    form = {"metastatic_sites": ["liver", "", "bone"], "prior_treatments": ["somatostatin_analog"]}
    assert case_from_form(form) == {
        "metastatic_sites": ["liver", "bone"],
        "prior_treatments": ["somatostatin_analog"],
    }


def test_none_of_these_alone_states_an_empty_list() -> None:
    case = case_from_form({"comorbidities": [NONE_OF_THESE], "metastatic_sites": []})
    assert case == {"comorbidities": []}
    assert load_case(case).comorbidities == ()


@pytest.mark.parametrize(("given", "value"), [("true", True), ("false", False), ("", None)])
def test_booleans_are_tri_state(given: str, value: bool | None) -> None:
    assert case_from_form({"pregnant": [given]}).get("pregnant") is value


def test_a_boolean_that_is_neither_is_kept_and_named() -> None:
    case = case_from_form({"primary_resected": ["yes"]})
    assert case == {"primary_resected": "yes"}
    with pytest.raises(CaseError, match="primary_resected: expected true or false"):
        load_case(case)


def test_unknown_keys_go_on_to_be_rejected_by_name() -> None:
    form = {"mode": ["case"], "text": ["ignored"], "colour": ["red"], "labs.sodium": ["140"]}
    case = case_from_form(form)
    assert case == {"colour": "red", "labs": {"sodium": "140"}}
    with pytest.raises(CaseError) as caught:
        load_case(case)
    assert [p.field for p in caught.value.problems] == ["colour", "labs.sodium"]


def test_a_single_field_sent_twice_is_not_silently_resolved() -> None:
    case = case_from_form({"ki67_percent": ["8", "12"], "sex": ["male", "female"]})
    assert case == {"ki67_percent": [8, 12], "sex": ["male", "female"]}
    with pytest.raises(CaseError) as caught:
        load_case(case)
    assert {p.field for p in caught.value.problems} == {"ki67_percent", "sex"}


def test_text_fields_are_kept_as_typed() -> None:
    assert case_from_form({"id": ["  case 7 "]}) == {"id": "  case 7 "}


@pytest.mark.parametrize("path", [SIGMOID, *VIGNETTES], ids=lambda p: p.stem)
def test_every_vignette_can_be_entered_on_the_form(path: Path) -> None:
    case = load_yaml_case(path)
    assert load_case(case_from_form(form_of(case))) == load_case(case), path.name


def _valid_value(spec: Any) -> st.SearchStrategy[Any]:
    if isinstance(spec, Number):
        if spec.integer:
            return st.integers(int(spec.lo), int(spec.hi or 1000))
        return st.floats(spec.lo, spec.hi if spec.hi is not None else 1e6, allow_nan=False)
    if isinstance(spec, Choice):
        return st.sampled_from([m.value for m in spec.enum])
    if isinstance(spec, ChoiceList):
        return st.lists(st.sampled_from([m.value for m in spec.enum]), unique=True, max_size=4)
    if isinstance(spec, Flag):
        return st.booleans()
    return st.text(min_size=1, max_size=20).filter(lambda s: s.strip() != "")


_SIMPLE = {
    k: s for k, s in FIELDS.items() if k not in ("pancreas_region", "gastric_type", "progressed_on")
}


@settings(max_examples=60, deadline=None)
@given(
    st.fixed_dictionaries({}, optional={k: _valid_value(s) for k, s in _SIMPLE.items()}),
    st.fixed_dictionaries({}, optional={k: _valid_value(s) for k, s in LAB_FIELDS.items()}),
)
def test_form_round_trip_keeps_every_valid_case(case: dict[str, Any], labs: dict[str, Any]) -> None:
    if case.get("sex") == "male":
        case.pop("pregnant", None)
    if labs:
        case["labs"] = labs
    form = form_of({k: (repr(v) if isinstance(v, float) else v) for k, v in case.items()})
    for key in [k for k in form if k.startswith("labs.")]:
        form[key] = [repr(labs[key[5:]]) if isinstance(labs[key[5:]], float) else form[key][0]]
    assert load_case(case_from_form(form)) == load_case(case)


# --- submit --------------------------------------------------------------------------------


def test_a_valid_case_gets_the_report_with_the_engine_recommendations(kb: KnowledgeBase) -> None:
    case = load_yaml_case(SIGMOID)
    status, html = submit(form_of(case), kb)
    assert status == 200
    page = Page(html)
    answer = recommend(load_case(case), kb=kb)
    got = [(a["data-code"], a["data-status"]) for a in page.recommendations]
    assert got == [(r.code.value, r.status.value) for r in answer.recommendations]
    assert page.cites
    assert all(c.startswith("#ref-") and c[1:] in page.ids for c in page.cites)
    assert '<a href="/">New case</a>' in html
    # The report is the renderer's own page, untouched between header and </main>.
    report = render_html(answer, labels=kb.labels)
    body = report[report.index('<header class="report-header">') : report.index("</main>")]
    assert body in html
    # The edit form comes prefilled with the case.
    assert page.by_id("f-ki67_percent")["value"] == "8"
    assert page.by_id("f-primary_site")["selected"] == ["sigmoid_colon"]
    assert [c["value"] for c in page.named("comorbidities") if "checked" in c] == [NONE_OF_THESE]
    assert len(page.ids) == len(set(page.ids)), "duplicate ids"


def test_an_impossible_value_gives_422_and_the_form_with_the_problem(kb: KnowledgeBase) -> None:
    form = {"mode": ["case"], "ki67_percent": ["150"], "age_years": ["62"], "sex": ["male"]}
    status, html = submit(form, kb)
    assert status == 422
    assert 'role="alert"' in html
    assert "150 is outside the possible range 0-100" in html
    page = Page(html)
    assert page.by_id("f-ki67_percent")["value"] == "150"
    assert page.by_id("f-age_years")["value"] == "62"
    assert page.by_id("f-sex")["selected"] == ["male"]
    assert 'class="recommendation"' not in html


def test_contradictions_across_fields_are_named(kb: KnowledgeBase) -> None:
    form = {"mode": ["case"], "sex": ["male"], "pregnant": ["true"]}
    status, html = submit(form, kb)
    assert status == 422
    assert "<code>pregnant</code>" in html
    assert "true, but sex is &#34;male&#34;" in html


def test_none_of_these_ticked_with_other_boxes_is_explained(kb: KnowledgeBase) -> None:
    form = {"mode": ["case"], "comorbidities": ["diabetes", NONE_OF_THESE]}
    status, html = submit(form, kb)
    assert status == 422
    assert "comorbidities[1]" in html
    assert "&#34;None of these&#34; is ticked together with other choices" in html
    ticked = [c["value"] for c in Page(html).named("comorbidities") if "checked" in c]
    assert ticked == ["diabetes", NONE_OF_THESE]


def test_unknown_form_field_is_rejected_by_name(kb: KnowledgeBase) -> None:
    status, html = submit({"mode": ["case"], "colour": ["red"]}, kb)
    assert status == 422
    assert "<code>colour</code>: unknown field (not in contract v2)" in html


def test_an_unknown_mode_is_a_problem(kb: KnowledgeBase) -> None:
    status, html = submit({"mode": ["fax"]}, kb)
    assert status == 422
    assert "<code>mode</code>: expected case or text" in html


def test_a_note_is_read_then_answered(kb: KnowledgeBase) -> None:
    note = "stage 4 NET of the sigmoid with liver metastases, Ki-67 8 %, no bone mets. ECOG 1"
    status, html = submit({"mode": ["text"], "text": [note]}, kb)
    assert status == 200
    result = ask(note, kb)
    page = Page(html)
    got = [(a["data-code"], a["data-status"]) for a in page.recommendations]
    assert got == [(r.code.value, r.status.value) for r in result.answer.recommendations]
    understood = html[html.index('<section id="understood"') : html.index("</section>")]
    for used in result.parsed.spans_used:
        assert f'data-field="{used.field}"' in understood
    assert "Sigmoid colon" in understood
    # The case read from the text is ready to be corrected, and the text to be edited.
    assert page.by_id("f-primary_site")["selected"] == ["sigmoid_colon"]
    assert page.by_id("f-text")["text"] == note
    assert html.index('id="understood"') < html.index('id="bottom-line"')


def test_text_that_is_not_used_is_listed(kb: KnowledgeBase) -> None:
    note = "Possible bone mets? Ki-67 <2%, ileal NET with liver metastases"
    status, html = submit({"mode": ["text"], "text": [note]}, kb)
    assert status == 200
    for piece in ask(note, kb).parsed.unparsed:
        assert piece.replace("<", "&lt;") in html


def test_a_general_question_gets_the_knowledge_base_statements(kb: KnowledgeBase) -> None:
    status, html = submit({"mode": ["text"], "text": ["side effects of Lutathera"]}, kb)
    assert status == 200
    page = Page(html)
    assert page.recommendations == []
    assert "From the knowledge base" in html
    assert '<section id="references"' in html
    assert page.cites
    assert all(c.startswith("#ref-") and c[1:] in page.ids for c in page.cites)


def test_a_patient_question_gets_the_report_and_the_statements(kb: KnowledgeBase) -> None:
    note = "sigmoid NET G2 liver mets, Ki-67 8%: lanreotide dose?"
    status, html = submit({"mode": ["text"], "text": [note]}, kb)
    assert status == 200
    page = Page(html)
    assert page.recommendations
    assert 'id="knowledge"' in html
    assert any(c.startswith("#knowledge-ref-") for c in page.cites)
    assert all(c[1:] in page.ids for c in page.cites)
    assert len(page.ids) == len(set(page.ids)), "duplicate ids"


@pytest.mark.parametrize("text", ["", "\n  \n  "], ids=["empty", "blank"])
def test_empty_text_gives_422(kb: KnowledgeBase, text: str) -> None:
    status, html = submit({"mode": ["text"], "text": [text]}, kb)
    assert status == 422
    assert 'role="alert"' in html
    assert "<code>text</code>" in html or 'href="#f-text"' in html
    box = Page(html).by_id("f-text")
    assert box["aria-invalid"] == "true"
    assert box["text"] == text


def test_text_over_100_kb_gives_422_and_is_kept(kb: KnowledgeBase) -> None:
    text = "ileal NET " * (MAX_TEXT_BYTES // 10 + 1)
    status, html = submit({"mode": ["text"], "text": [text]}, kb)
    assert status == 422
    assert f"larger than the limit of {MAX_TEXT_BYTES} bytes" in html
    assert Page(html).by_id("f-text")["text"] == text


def test_text_mode_without_text_key_is_empty(kb: KnowledgeBase) -> None:
    status, _ = submit({"mode": ["text"]}, kb)
    assert status == 422


def test_markup_in_the_text_is_escaped(kb: KnowledgeBase) -> None:
    status, html = submit({"mode": ["case"], "id": ["<script>alert(1)</script>"]}, kb)
    assert status == 200
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


# --- through the HTTP app ------------------------------------------------------------------


def test_the_app_serves_the_page_and_answers_the_form(client: Any) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'name="ki67_percent"' in page.text
    body = "mode=case&primary_site=ileum&ki67_percent=2&metastatic_sites=liver&sex="
    answer = client.post(
        "/", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert answer.status_code == 200
    assert 'class="recommendation"' in answer.text
    bad = client.post(
        "/",
        content="mode=case&ki67_percent=150",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert bad.status_code == 422
    assert "ki67_percent" in bad.text
