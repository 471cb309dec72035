"""``netboard ask``: the phrasing corpus, negation rules, the lexicon, the command.

The corpus (``tests/parse_corpus.yaml``) compares the whole parsed case with the expected
one, so a negated, uncertain or historical mention that leaks into the case fails its item;
an item marked ``known_gap`` (the reader states less than the text) is not compared for
equality, but its ``not:`` values (negated or uncertain mentions) must never be extracted.
Precision and recall over the corpus are checked in ``test_ask_accuracy.py``.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from netboard import vocab as v
from netboard.case import load_case
from netboard.cli import main
from netboard.documents import yaml_loader
from netboard.engine.recommend import recommend
from netboard.fields import Choice, ChoiceList, Flag, registry
from netboard.kb import KnowledgeBase
from netboard.parse import parse_text
from netboard.parse.extract import ORGAN, ValueTable, lexicon, phrase_key
from netboard.reports import render_json

FIELDS = {path: f.spec for path, f in registry().top.items()}
LAB_FIELDS = {name: f.spec for name, f in registry().members["labs"].items()}

CORPUS = Path(__file__).resolve().parent.parent / "parse_corpus.yaml"
ITEMS: list[dict[str, Any]] = yaml.load(CORPUS.read_text(encoding="utf-8"), Loader=yaml_loader())


def _id(item: dict[str, Any]) -> str:
    return " ".join(item["text"].split())[:60]


# --- the corpus ------------------------------------------------------------------------------


ITEM_KEYS = {"text", "expect", "not", "unparsed", "known_gap"}


def test_corpus_has_at_least_220_phrasings() -> None:
    assert len(ITEMS) >= 220
    assert len({i["text"] for i in ITEMS}) == len(ITEMS), "parse_corpus.yaml: duplicate text"
    assert sum(1 for i in ITEMS if i.get("not")) >= 30, "too few negated/uncertain items"


@pytest.mark.parametrize("item", ITEMS, ids=[_id(i) for i in ITEMS])
def test_corpus_item_is_well_formed(item: dict[str, Any]) -> None:
    assert set(item) <= ITEM_KEYS, f"parse_corpus.yaml: unknown key in {item['text']!r}"
    load_case(item["expect"])  # the expected case speaks the contract
    expect = item["expect"]
    for field, values in (item.get("not") or {}).items():
        assert isinstance(values, list), field
        for value in values:
            # A "not" value is a contract value that the expected case does not hold.
            load_case({field: [value] if _is_list_field(field) else value})
            stated = expect.get(field)
            assert value not in (stated if isinstance(stated, list) else [stated]), (field, value)
    if "known_gap" in item:
        assert isinstance(item["known_gap"], str)
        assert item["known_gap"].strip()


def _is_list_field(field: str) -> bool:
    return isinstance(FIELDS[field], ChoiceList)


@pytest.mark.parametrize("item", ITEMS, ids=[_id(i) for i in ITEMS])
def test_corpus_text_gives_exactly_the_stated_fields(item: dict[str, Any]) -> None:
    parsed = parse_text(item["text"])
    load_case(parsed.case_dict)
    if "known_gap" not in item:
        assert parsed.case_dict == item["expect"], f"parse_corpus.yaml: {item['text']!r}"
    for piece in item.get("unparsed", []):
        assert piece in parsed.unparsed, f"parse_corpus.yaml: {item['text']!r}"


NEGATED_ITEMS = [i for i in ITEMS if i.get("not")]


@pytest.mark.parametrize("item", NEGATED_ITEMS, ids=[_id(i) for i in NEGATED_ITEMS])
def test_corpus_negated_and_uncertain_values_are_never_extracted(item: dict[str, Any]) -> None:
    case = parse_text(item["text"]).case_dict
    for field, values in item["not"].items():
        got = case.get(field)
        for value in values:
            leaked = value in got if isinstance(got, list) else got == value
            assert field not in case or not leaked, (item["text"], field, value)


# --- negation, uncertainty, history, conflicts ------------------------------------------------


def test_no_extrahepatic_disease_keeps_exactly_the_stated_sites() -> None:
    parsed = parse_text("bilobar liver mets, no extrahepatic disease, no bone or lung mets")
    assert parsed.case_dict["metastatic_sites"] == ["liver"]
    assert parsed.unparsed == ()


def test_comma_ends_negation_scope_so_later_facts_stay() -> None:
    parsed = parse_text("no carcinoid syndrome, ECOG 1, bilobar liver mets")
    assert parsed.case_dict == {
        "functional_syndrome": "none",
        "ecog": 1,
        "metastatic_sites": ["liver"],
        "liver_distribution": "bilobar",
    }


def test_negation_reaches_a_comma_list_closed_by_or() -> None:
    assert parse_text("no bone mets, lung mets or brain mets").case_dict == {}


def test_terminator_ends_negation_scope() -> None:
    parsed = parse_text("no bone mets but peritoneal carcinomatosis")
    assert parsed.case_dict == {"metastatic_sites": ["peritoneum"]}


def test_uncertain_and_hypothetical_mentions_are_reported_not_used() -> None:
    parsed = parse_text("suspected bone mets; if progressive, PRRT? Liver mets.")
    assert parsed.case_dict == {"metastatic_sites": ["liver"]}
    assert "suspected bone mets" in parsed.unparsed
    assert "if progressive" in parsed.unparsed


def test_history_blocks_a_condition_but_not_a_prior_treatment() -> None:
    parsed = parse_text("h/o TACE; history of carcinoid syndrome")
    assert parsed.case_dict == {"prior_treatments": ["tace"]}


def test_someone_elses_disease_is_not_the_patients() -> None:
    parsed = parse_text("Mother had a pancreatic NET. Patient: rectal NET G1.")
    assert parsed.case_dict == {"primary_site": "rectum", "grade": "g1"}


def test_conflicting_primary_sites_give_no_site() -> None:
    parsed = parse_text("sigmoid NET with liver mets; rectal NET on biopsy")
    assert "primary_site" not in parsed.case_dict
    assert {"sigmoid NET", "rectal NET"} <= set(parsed.unparsed)


def test_a_named_segment_refines_a_general_site() -> None:
    assert parse_text("small bowel NET of the terminal ileum").case_dict == {
        "primary_site": "ileum"
    }


def test_stated_values_that_contradict_each_other_are_dropped() -> None:
    parsed = parse_text("62M, pregnant, pNET")
    assert parsed.case_dict == {"age_years": 62, "primary_site": "pancreas"}
    load_case(parsed.case_dict)


def test_ki67_bound_or_range_is_never_a_value() -> None:
    for text in ("Ki-67 <2%", "Ki-67 >20%", "Ki-67 15-20%", "Ki-67 up to 5%"):
        parsed = parse_text(text)
        assert "ki67_percent" not in parsed.case_dict, text
        assert parsed.unparsed, text


def test_grade_words_and_thoracic_carcinoids_give_a_grade_a_stated_grade_wins() -> None:
    assert parse_text("low-grade typical carcinoid of the lung").case_dict["grade"] == "g1"
    assert parse_text("intermediate grade ileal NET").case_dict["grade"] == "g2"
    assert parse_text("atypical carcinoid").case_dict["grade"] == "g2"
    assert parse_text("atypical carcinoid, G1 per mitoses").case_dict["grade"] == "g1"
    # An adverse event or a high grade (NET G3 or NEC) is not a tumour grade.
    assert "grade" not in parse_text("low-grade fever").case_dict
    parsed = parse_text("high-grade pNET")
    assert "grade" not in parsed.case_dict
    assert "high-grade" in parsed.unparsed


def test_karnofsky_is_not_converted_to_ecog() -> None:
    parsed = parse_text("KPS 80")
    assert parsed.case_dict == {}
    assert parsed.unparsed == ("KPS 80",)


def test_whipple_implies_resected_primary_and_biliary_enteric_anastomosis() -> None:
    assert parse_text("s/p Whipple").case_dict == {
        "primary_resected": True,
        "prior_treatments": ["primary_resection"],
        "comorbidities": ["biliary_enteric_anastomosis"],
    }


def test_fragments_with_no_known_word_are_unparsed() -> None:
    parsed = parse_text("Dear colleague, pNET with liver mets, thanks a lot")
    assert parsed.unparsed == ("Dear colleague", "thanks a lot")


def test_spans_used_name_the_words() -> None:
    parsed = parse_text("Ki-67 index of 12 percent")
    assert [(u.field, u.value, u.text) for u in parsed.spans_used] == [
        ("ki67_percent", 12, "Ki-67 index of 12 percent")
    ]


@pytest.mark.parametrize(
    "text", ["liver, " * 14_000, "1234567890" * 10_000, "no liver mets, " * 6_600, "?" * 100_000]
)
def test_100_kb_adversarial_text_is_read_in_linear_time(text: str) -> None:
    start = time.perf_counter()
    parse_text(text[:100_000])
    assert time.perf_counter() - start < 10


# --- the lexicon -----------------------------------------------------------------------------


def _values(table: ValueTable) -> set[Any]:
    return {e.value for e in table.keys.values()} | {e.value for _, e in table.patterns}


def _allowed(field: str) -> set[Any]:
    spec = FIELDS[field]
    if isinstance(spec, Choice | ChoiceList):
        return {m.value for m in spec.enum}
    assert isinstance(spec, Flag)
    return {True, False}


def test_every_lexicon_value_is_a_contract_word() -> None:
    lex = lexicon()
    for field, table in lex.tables.items():
        assert _values(table) - {None} <= _allowed(field), field
    sites = {m.value for m in v.Site}
    assert _values(lex.site_words) - {None} <= sites
    assert _values(lex.site_compounds) - {None} <= sites
    mets = {m.value for m in v.MetastaticSite}
    assert _values(lex.met_sites) - {None} <= mets
    assert _values(lex.met_standalone) - {None} <= mets
    imaging = {m.value for m in v.Imaging}
    for table in (lex.imaging_result, lex.sstr_standalone, lex.fdg_standalone):
        assert _values(table) - {None} <= imaging
    assert _values(lex.resectable) <= {m.value for m in v.Resectable}
    codes = {m.value for m in v.Intervention}
    for treatment in lex.treatment_keys.values():
        assert treatment.code in codes | {ORGAN}
        for field, value in treatment.implies:
            assert value in _allowed(field), (field, value)
    assert {lab.name for lab in lex.labs} == set(LAB_FIELDS)


def _tables(data: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every {value: [phrases]} mapping of the raw lexicon."""
    names = [
        "functional_syndrome", "disease_status", "pregnant", "sex", "comorbidities",
        "primary_complications", "primary_resected", "liver_distribution", "differentiation",
        "pancreas_region", "resectable", "imaging_result", "sstr_standalone", "fdg_standalone",
    ]  # fmt: skip
    out = [(n, data[n]) for n in names]
    out += [
        ("primary_site", {**data["primary_site"]["words"], **data["primary_site"]["compounds"]})
    ]
    out += [("metastatic_sites", data["metastatic_sites"]["site_words"])]
    return out


def test_no_phrase_stands_for_two_values() -> None:
    data = lexicon().data
    for name, table in _tables(data):
        seen: dict[str, str] = {}
        for key_, phrases in table.items():
            if not isinstance(phrases, list):
                continue
            value = "not_done" if key_ == "not_done_before" else key_
            for p in phrases:
                key = phrase_key(p.lstrip("="))
                assert seen.setdefault(key, value) == value, f"lexicon {name}: {p!r}"


# --- the command -----------------------------------------------------------------------------


def test_ask_json_is_the_recommend_answer_plus_parsed_case_and_unparsed(
    capsys: pytest.CaptureFixture[str], kb: KnowledgeBase
) -> None:
    text = "62M sigmoid NET G2 Ki67 8%, bilobar liver mets, no extrahepatic disease. Hello."
    assert main(["ask", text, "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    data = json.loads(out)
    parsed = data.pop("parsed_case")
    assert data.pop("unparsed") == ["Hello"]
    assert parsed == parse_text(text).case_dict
    # The board answer presumes what the words imply ("NET": well differentiated) and says so.
    implied = parse_text(text).implied
    assert implied == {"differentiation": ("well", "NET")}
    assert data == json.loads(render_json(recommend(load_case(parsed), kb=kb, implied=implied)))


def test_ask_markdown_starts_with_what_i_understood(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "pNET G2 with liver mets | thanks"]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("## What I understood\n\n| field | value | from the words |\n")
    assert '| primary_site | pancreas | "pNET" |' in out
    assert 'Not used: "thanks"\n\n' in out


def test_ask_markdown_falls_back_to_json_without_the_renderer(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import netboard.reports

    def missing(answer: Any, fmt: str = "markdown", **options: Any) -> str:
        raise ImportError("no markdown renderer")

    monkeypatch.setattr(netboard.reports, "render", missing)
    assert main(["ask", "pNET with liver mets"]) == 0
    out, _ = capsys.readouterr()
    assert "\n```json\n{" in out
    assert out.endswith("```\n")


def test_case_out_writes_a_yaml_case_that_load_case_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "case.yaml"
    text = "unresectable bilobar liver mets from a pNET, CrCl 40"
    assert main(["ask", text, "--format", "json", "--case-out", str(target)]) == 0
    capsys.readouterr()
    written = yaml.load(target.read_text(encoding="utf-8"), Loader=yaml_loader())
    assert written == parse_text(text).case_dict
    assert written["liver_resectable"] == "no"
    load_case(written)


def test_case_out_that_cannot_be_written_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing" / "case.yaml"
    assert main(["ask", "pNET", "--case-out", str(target)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("netboard: --case-out: the folder ")
    assert "does not exist" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "netboard: text: empty"),
        ("  \n\t", "netboard: text: empty"),
        ("x" * 100_001, "netboard: text: larger than 100000 bytes"),
    ],
)
def test_unusable_text_exits_2_with_one_line(
    text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ask", text, "--format", "json"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == message + "\n"


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_dash_reads_the_text_from_standard_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stdin(monkeypatch, b"pNET with liver mets\n")
    assert main(["ask", "-", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["parsed_case"] == {"primary_site": "pancreas", "metastatic_sites": ["liver"]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe liver", "netboard: text: not UTF-8"),
        (b"a" * 100_001, "netboard: text: larger than 100000 bytes"),
    ],
)
def test_unusable_standard_input_exits_2(
    data: bytes, message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:

    _stdin(monkeypatch, data)
    assert main(["ask", "-"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == message + "\n"


def test_unpaired_surrogate_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "liver mets \udcff"]) == 2
    assert capsys.readouterr().err == "netboard: text: not valid UTF-8\n"
