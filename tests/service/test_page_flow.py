"""The web page as a product: an answer has its own address, one click changes a presumption,
lab values in SI units are converted and say so, "Progressed on" offers treatments only."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from netboard.case import load_case
from netboard.engine.recommend import recommend
from netboard.kb import KnowledgeBase
from netboard.parse.ask import ask
from netboard.service.app import Settings, create_app
from netboard.service.page import (
    PROGRESSION_CHOICES,
    conversions,
    form_page,
    representative,
    submit,
)

SEED = "Treatment of stage 4 neuroendocrine tumor of sigmoid with liver metastases"
FORM = {"content-type": "application/x-www-form-urlencoded"}


class OneClicks(HTMLParser):
    """The one-click forms of a page: their data-* attributes, hidden inputs and button."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict[str, Any]] = []
        self._form: dict[str, Any] | None = None
        self._button = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and "oneclick" in a.get("class", "").split():
            self._form = {**a, "inputs": [], "button": ""}
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None:
            self._form["inputs"].append((a["name"], a["value"]))
        elif tag == "button" and self._form is not None:
            self._button = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "button":
            self._button = False

    def handle_data(self, data: str) -> None:
        if self._button and self._form is not None:
            self._form["button"] += data

    def get(self, field: str, value: str) -> dict[str, Any]:
        (found,) = [f for f in self.forms if f["data-field"] == field and f["data-value"] == value]
        return found


def as_form(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in pairs:
        out.setdefault(k, []).append(v)
    return out


def plan_codes(answer: Any) -> set[str]:
    return {str(c) for step in answer.plan for c in step.codes}


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("flow")
    with TestClient(create_app(Settings(data_dir=str(folder))), raise_server_exceptions=False) as c:
        yield c


# --- POST, redirect, GET ----------------------------------------------------------------------


def test_a_submission_is_redirected_to_its_own_address(app_client: TestClient) -> None:
    body = "mode=case&id=flow-1&primary_site=ileum&ki67_percent=2&metastatic_sites=liver"
    r = app_client.post("/", content=body, headers=FORM, follow_redirects=False)
    assert r.status_code == 303
    location = r.headers["location"]
    assert location.startswith("/answers/")
    assert "ileum" not in location
    assert "flow-1" not in location
    page = app_client.get(location)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert '<span class="case-id">flow-1</span>' in page.text
    assert 'id="plan"' in page.text
    # Reloading (or opening the link again) shows the same answer; nothing is posted again.
    again = app_client.get(location)
    assert again.text == page.text
    assert 'generated <time class="generated">' in page.text


def test_a_rejected_submission_stays_on_the_form(app_client: TestClient) -> None:
    r = app_client.post("/", content="mode=case&ki67_percent=150", headers=FORM)
    assert r.status_code == 422
    assert "150 is outside the possible range 0-100" in r.text


def test_an_unknown_or_expired_answer_link_says_so(app_client: TestClient) -> None:
    r = app_client.get("/answers/" + "x" * 32)
    assert r.status_code == 404
    assert "This answer link has expired" in r.text
    assert '<a href="/">New case</a>' in r.text


def test_a_text_is_answered_at_its_own_address(app_client: TestClient) -> None:
    r = app_client.post("/", content=urlencode({"mode": "text", "text": SEED}), headers=FORM)
    assert r.status_code == 200
    assert str(r.url).split("/")[-2] == "answers"
    assert 'id="understood"' in r.text


# --- one click ------------------------------------------------------------------------------


def test_the_seed_question_offers_a_button_for_every_what_if(kb: KnowledgeBase) -> None:
    status, html = submit({"mode": ["text"], "text": [SEED]}, kb)
    assert status == 200
    result = ask(SEED, kb)
    clicks = OneClicks(html)
    what_if = [f for f in clicks.forms if f.get("data-value") and f["button"] != "Confirm"]
    assert len(what_if) == len(result.answer.what_if)
    negative = clicks.get("sstr_imaging", "negative")
    assert negative["button"].strip() == "It is SSTR-negative"
    assert negative["method"] == "post"
    assert negative["action"] == "/"
    inputs = as_form(negative["inputs"])
    assert inputs == {"mode": ["text"], "text": [SEED], "stated.sstr_imaging": ["negative"]}
    ki67 = clicks.get("ki67_percent", "15")
    assert "Ki-67 is 10-20 %" in ki67["button"]
    assert "answered as 15 %" in ki67["button"]


def test_clicking_sstr_negative_gives_a_plan_without_the_somatostatin_analog(
    kb: KnowledgeBase,
) -> None:
    _, html = submit({"mode": ["text"], "text": [SEED]}, kb)
    base = ask(SEED, kb).answer
    assert "somatostatin_analog" in plan_codes(base)
    form = as_form(OneClicks(html).get("sstr_imaging", "negative")["inputs"])
    status, after = submit(form, kb)
    assert status == 200
    assert 'data-codes="somatostatin_analog"' not in after
    assert "Stated on this page:" in after
    assert "SSTR imaging: Negative" in after or "SSTR imaging: negative" in after
    # The answer is the engine's for the note with that field stated (its implied
    # differentiation kept), and the next click keeps the first.
    parsed = ask(SEED, kb).parsed
    case = load_case({**parsed.case_dict, "sstr_imaging": "negative"})
    expected = recommend(case, kb=kb, implied=parsed.implied)
    assert "somatostatin_analog" not in plan_codes(expected)
    for step in expected.plan:
        assert f'data-codes="{" ".join(str(c) for c in step.codes)}"' in after
    second = OneClicks(after).get("liver_resectable", "yes")
    assert as_form(second["inputs"])["stated.sstr_imaging"] == ["negative"]
    assert as_form(second["inputs"])["stated.liver_resectable"] == ["yes"]


def test_a_case_answer_re_asks_with_the_case_fields(kb: KnowledgeBase) -> None:
    form = {
        "mode": ["case"],
        "primary_site": ["sigmoid_colon"],
        "differentiation": ["well"],
        "metastatic_sites": ["liver"],
        "labs.bilirubin_mg_dl": ["17.1"],
        "unit.labs.bilirubin_mg_dl": ["µmol/L"],
    }
    status, html = submit(form, kb)
    assert status == 200
    clicks = OneClicks(html)
    assert clicks.forms
    click = clicks.get("sstr_imaging", "negative")
    inputs = as_form(click["inputs"])
    assert inputs["mode"] == ["case"]
    assert inputs["sstr_imaging"] == ["negative"]
    assert inputs["labs.bilirubin_mg_dl"] == ["17.1"]
    assert inputs["unit.labs.bilirubin_mg_dl"] == ["µmol/L"]
    status, after = submit(inputs, kb)
    assert status == 200
    assert 'data-codes="somatostatin_analog"' not in after
    confirm = [f for f in clicks.forms if f["button"] == "Confirm"]
    assert confirm, "a presumption of a word value has a Confirm button"
    for f in confirm:
        assert as_form(f["inputs"])[f["data-field"]] == [f["data-value"]]


@pytest.mark.parametrize(
    ("path", "words", "value"),
    [
        ("ki67_percent", "10-20", "15"),
        ("ki67_percent", "20-55", "37.5"),
        ("ki67_percent", "above 55", "77.5"),
        ("ki67_percent", "below 10", "5"),
        ("ecog", "3", "3"),
        ("ecog", "3-4", "4"),
        ("primary_site", "ileum", None),
    ],
)
def test_representatives_are_the_middle_of_their_band(
    path: str, words: str, value: str | None
) -> None:
    assert representative(path, words) == value


def test_buttons_are_left_out_of_the_printout(kb: KnowledgeBase) -> None:
    _, html = submit({"mode": ["text"], "text": [SEED]}, kb)
    printed = [block.split("}\n}")[0] for block in html.split("@media print")[1:]]
    assert any("form.oneclick { display: none !important; }" in block for block in printed)


# --- SI units ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "given", "unit", "value"),
    [
        ("labs.bilirubin_mg_dl", "34", "µmol/L", 1.99),
        ("labs.albumin_g_dl", "38", "g/L", 3.8),
        ("labs.hemoglobin_g_dl", "125", "g/L", 12.5),
    ],
)
def test_si_lab_values_are_converted_and_the_conversion_is_shown(
    kb: KnowledgeBase, path: str, given: str, unit: str, value: float
) -> None:
    form = {"mode": ["case"], "primary_site": ["ileum"], path: [given], f"unit.{path}": [unit]}
    (conversion,) = conversions(form)
    assert conversion.value == value
    status, html = submit(form, kb)
    assert status == 200
    assert f"{given} {unit} read as {value:g}" in html
    # What the user typed is kept as typed in the edit form, with its unit.
    assert f'value="{given}"' in html
    assert f'<option value="{unit}" selected>' in html


def test_a_converted_value_out_of_range_names_what_was_typed(kb: KnowledgeBase) -> None:
    form = {
        "mode": ["case"],
        "labs.bilirubin_mg_dl": ["9000"],
        "unit.labs.bilirubin_mg_dl": ["µmol/L"],
    }
    status, html = submit(form, kb)
    assert status == 422
    assert "(typed as 9000 µmol/L)" in html


def test_an_unknown_unit_is_named(kb: KnowledgeBase) -> None:
    form = {
        "mode": ["case"],
        "labs.bilirubin_mg_dl": ["1"],
        "unit.labs.bilirubin_mg_dl": ["mmol/L"],
    }
    status, html = submit(form, kb)
    assert status == 422
    assert "&#39;mmol/L&#39; is not one of: mg/dL, µmol/L" in html


# --- Progressed on ------------------------------------------------------------------------


def test_progressed_on_offers_treatments_only(kb: KnowledgeBase) -> None:
    html = form_page(kb)
    offered = [v.split('value="')[1].split('"')[0] for v in html.split('name="progressed_on"')[1:]]
    assert sorted(offered[:-1]) == sorted(c.value for c in PROGRESSION_CHOICES)
    assert offered[-1] == "none"
    for code in (
        "observation",
        "multidisciplinary_review",
        "best_supportive_care",
        "prophylactic_cholecystectomy",
        "primary_resection",
    ):
        assert code not in offered


def test_a_case_that_progressed_on_another_code_keeps_it(kb: KnowledgeBase) -> None:
    form = {
        "mode": ["case"],
        "disease_status": ["progressive"],
        "prior_treatments": ["hepatic_resection"],
        "progressed_on": ["hepatic_resection"],
    }
    status, html = submit(form, kb)
    assert status == 200
    box = 'id="f-progressed_on-hepatic_resection" name="progressed_on" value="hepatic_resection"'
    assert box + " checked" in html


def test_units_round_trip_through_a_real_form(kb: KnowledgeBase, tmp_path: Path) -> None:
    form = {"mode": ["case"], "labs.hemoglobin_g_dl": ["125"], "unit.labs.hemoglobin_g_dl": ["g/L"]}
    assert submit(form, kb)[0] == 200


def test_about_and_the_api_page_name_the_contract_version(app_client: TestClient) -> None:
    from netboard.vocab import CONTRACT_VERSION

    assert app_client.get("/about").json()["contract_version"] == CONTRACT_VERSION
    assert (
        f"contract {CONTRACT_VERSION}."
        in app_client.get("/openapi.json").json()["info"]["description"]
    )
