"""Nothing decisive is dropped (issue 14): every clinical concept a text names is read into
the case, denied (negated), named as the question's subject, or reported in ``unparsed``.

A concept is a word of the knowledge base's vocabulary in the lexicon: a primary or
metastatic site, a treatment, an imaging test, a grade, a syndrome, a comorbidity, a lab, a
margin, a hereditary syndrome, or a finding with no case field ("therapy-related MDS").
Checked on every phrasing of the corpus and both held-out sets, and on generated notes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netboard.parse import parse_text
from netboard.parse.ask import ParsedText
from netboard.parse.extract import Doc, concept_spans, extract, lexicon
from netboard.parse.negation import NEGATED, assert_mentions

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit"))
from ask_scoring import CORPUS, HELDOUT, HELDOUT_V2, load_corpus

TEXTS = [str(i["text"]) for path in (CORPUS, HELDOUT, HELDOUT_V2) for i in load_corpus(path)]

WORDS = [
    "62M",
    "ileal NET",
    "pNET G2",
    "gastric mass",
    "gastric body",
    "hepatic flexure",
    "(unknown primary)",
    "liver lesions",
    "avid liver lesions (multiple, both lobes)",
    "metastatic small bowel NET to the liver",
    "perigastric lymph node metastases",
    "no metastases",
    "localised",
    "low-grade",
    "intermediate grade",
    "high-grade",
    "typical carcinoid",
    "atypical carcinoid",
    "small cell",
    "large cell NEC",
    "neuroendocrine carcinoma",
    "neuroendocrine tumour",
    "No flushing or diarrhoea",
    "hypoglycaemia despite diazoxide",
    "previously on lanreotide 120 mg for 14 months",
    "now progression on CT",
    "radioembolization proposed",
    "s/p resection",
    "Platelets are 33 x10^9/L",
    "bone marrow shows therapy-related MDS",
    "1.5 cm",
    "9 mm",
    "positive deep margin",
    "R0",
    "type 1 gastric NET",
    "MEN1",
    "mother had MEN1",
    "VHL",
    "Ki-67 12%",
    "DOTATATE avid",
    "FDG negative",
    "everolimus",
    "TACE",
    "PRRT",
    "CAPTEM",
    "carcinoid syndrome",
    "diabetes",
    "cirrhosis",
    "ECOG 1",
    "CrCl 45",
    "bilirubin 2.1",
    "no",
    "not",
    "possible",
    "?",
    "history of",
    "but",
    "now",
    ",",
    ";",
    ".",
    "and",
    "or",
    "(",
    ")",
    "liver",
    "bone",
    "mets",
    "resectable",
    "Whipple",
    "pending",
]


def _normal(text: str) -> str:
    return " ".join(text.split()).lower()


def dropped(text: str, parsed: ParsedText) -> list[str]:
    """The concept words of ``text`` that are neither read, denied, asked nor reported."""
    lex = lexicon()
    doc = Doc(text, lex.abbreviations)
    mentions = extract(doc, lex)
    statuses = assert_mentions(doc, lex, mentions)
    accounted = [
        (m.start, m.end)
        for m, a in zip(mentions, statuses, strict=True)
        if a.status == NEGATED or m.kind == "topic"
    ]
    shown = [_normal(u.text) for u in parsed.spans_used] + [_normal(u) for u in parsed.unparsed]
    out = []
    for s, e in concept_spans(doc, lex):
        if any(a < e and s < b for a, b in accounted):
            continue
        words = _normal(text[s:e])
        if not any(words in piece for piece in shown):
            out.append(text[s:e])
    return out


@pytest.mark.parametrize("text", TEXTS, ids=[t[:50] for t in TEXTS])
def test_no_concept_of_a_phrasing_is_dropped(text: str) -> None:
    assert dropped(text, parse_text(text)) == []


def test_the_words_of_the_review_are_never_dropped() -> None:
    parsed = parse_text("liver lesions")
    assert parsed.case_dict == {"metastatic_sites": ["liver"]}
    parsed = parse_text("bone marrow shows therapy-related MDS")
    assert parsed.unparsed == ("bone marrow shows therapy-related MDS",)
    assert dropped("hepatic flexure", parse_text("hepatic flexure")) == []


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=30))
def test_no_concept_of_a_generated_note_is_dropped(words: list[str]) -> None:
    text = " ".join(words)
    assert dropped(text, parse_text(text)) == []
