"""Any text at all through ``netboard ask``: never a traceback, exit 0 or a clean exit 2.

Texts are arbitrary Unicode, clinical words in random order (so the extractors and the
negation scopes actually run), and long repetitions up to and past the 100 kB limit.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netboard.case import load_case
from netboard.cli import main
from netboard.parse import parse_text
from netboard.parse.ask import MAX_TEXT_BYTES

WORDS = [
    "62M",
    "F 45",
    "58-year-old",
    "woman",
    "sigmoid",
    "NET",
    "pNET",
    "SI-NET",
    "tail of the pancreas",
    "ileal",
    "G2",
    "G1-2",
    "grade 3",
    "Ki-67",
    "Ki67 8%",
    "<2%",
    "15-20%",
    "MIB-1",
    "mitoses",
    "3/2mm2",
    "liver",
    "bone",
    "lung",
    "mets",
    "metastases",
    "to the",
    "bilobar",
    "unresectable",
    "30% liver involvement",
    "no",
    "not",
    "without",
    "possible",
    "?",
    "history of",
    "h/o",
    "if",
    "but",
    "however",
    "now",
    ",",
    ";",
    ".",
    "and",
    "or",
    "Ga-68 DOTATATE",
    "avid",
    "negative",
    "FDG",
    "Krenning 3",
    "octreoscan",
    "progressing on",
    "lanreotide",
    "s/p",
    "Whipple",
    "TACE",
    "PRRT",
    "everolimus",
    "refractory",
    "ECOG 1",
    "PS 2",
    "KPS 80",
    "CrCl 40",
    "plt 60k",
    "bilirubin 2.1",
    "NT-proBNP 450",
    "5-HIAA 3x ULN",
    "pregnant",
    "not pregnant",
    "diabetes",
    "cirrhosis",
    "carcinoid syndrome",
    "non-functioning",
    "insulinoma",
    "stage IV",
    "metastatic",
    "stable for 18 months",
    "newly diagnosed",
    "Does he have",
    "Is",
    "with",
    "\n",
    "-",
    "\u2013",
    "\u00d7",
    "\u2264",
    "\u00e9",
    "\U0001f600",
    "\x00",
]

clinical = st.lists(st.sampled_from(WORDS), max_size=40).map(" ".join)
texts = st.one_of(st.text(), clinical)
#: Long repetitions, up to and just past the limit (few examples: each is a full 100 kB read).
long_texts = st.builds(
    lambda unit, n: (unit * n)[: MAX_TEXT_BYTES + 10],
    st.one_of(clinical, st.text(min_size=1, max_size=30)).filter(bool),
    st.integers(min_value=1, max_value=40_000),
)


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _check_parse(text: str) -> None:
    parsed = parse_text(text)
    load_case(parsed.case_dict)
    flat = _collapse(text)
    for piece in parsed.unparsed:
        assert piece
        assert _collapse(piece) in flat


def _check_ask(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc: int | str | None
    try:
        rc = main(["ask", text, "--format", "json"])
    except SystemExit as exc:  # argparse: a text starting with "-" reads as an option
        rc = exc.code
    out, err = capsys.readouterr()
    assert rc in (0, 2)
    if rc == 0:
        data = json.loads(out)
        assert {"parsed_case", "unparsed", "recommendations"} <= set(data)
        load_case(data["parsed_case"])
        assert err == ""
    else:
        assert out == ""
        assert len(err.strip().splitlines()) == 1
    if len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        assert rc == 2


@settings(max_examples=200, deadline=None)
@given(text=texts)
def test_parse_text_never_raises_and_gives_a_valid_case(text: str) -> None:
    _check_parse(text)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=texts)
def test_ask_exits_0_with_json_or_2_with_one_line(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _check_ask(text, capsys)


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=long_texts)
def test_long_texts_up_to_and_past_100_kb(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    if len(text.encode("utf-8", "surrogatepass")) <= MAX_TEXT_BYTES:
        _check_parse(text)
    _check_ask(text, capsys)


def test_text_over_100_kb_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "liver mets " * 10_000, "--format", "json"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == "netboard: text: larger than 100000 bytes"
