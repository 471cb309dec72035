"""General questions answered from the knowledge base's own statements (``parse.knowledge``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ANSWER_KEYS
from netboard.cli import main
from netboard.kb import KnowledgeBase
from netboard.parse.ask import is_general_question, parse_text
from netboard.parse.knowledge import (
    UNANSWERED,
    KnowledgeIndex,
    Statement,
    aliases,
    answer_question,
    asks_for_knowledge,
    knowledge_index,
    parse_aliases,
    search,
)


def _top(question: str, kb: KnowledgeBase) -> list[Statement]:
    found = search(question, kb)
    assert found, f"no statement answers {question!r}"
    return found


# --- the four questions of the issue ---------------------------------------------------------


def test_lanreotide_dose_is_the_labelled_dosing_line(kb: KnowledgeBase) -> None:
    top = _top("lanreotide dose for GEP-NET?", kb)[0]
    assert top.kind == "dosing"
    assert "Lanreotide 120 mg" in top.text
    assert "every 4 weeks" in top.text
    assert top.evidence == ("label_somatuline",)


def test_lutathera_side_effects_are_marrow_and_renal(kb: KnowledgeBase) -> None:
    found = _top("side effects of Lutathera", kb)
    assert found[0].kind == "alert"
    assert "marrow" in found[0].title.lower()
    texts = " ".join(s.text for s in found)
    assert "myelodysplasia" in texts
    assert "renal" in texts.lower()


def test_milan_criteria_are_the_whole_milan_net_set(kb: KnowledgeBase) -> None:
    top = _top("Milan criteria for NET transplant", kb)[0]
    assert top.kind == "criteria"
    assert "Milan-NET" in top.title
    for fact in ("55 years", "60", "Ki-67 below 10%", "Liver involvement 50% or less"):
        assert fact in top.text, fact


def test_octreotide_washout_before_prrt(kb: KnowledgeBase) -> None:
    found = _top("how long to stop octreotide LAR before PRRT", kb)
    assert found[0].kind in ("alert", "dosing")
    for s in found[:2]:
        assert "long-acting SSA at least 4 weeks" in s.text
        assert "at least 24 hours" in s.text


# --- more general questions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "kind", "fact"),
    [
        ("everolimus dose in hepatic impairment", "dosing", "Child-Pugh A 7.5 mg"),
        ("Afinitor dose?", "dosing", "Everolimus 10 mg orally once daily"),
        ("sunitinib dose", "dosing", "Sunitinib 37.5 mg"),
        ("how long before surgery do I stop cabozantinib?", "dosing", "3 weeks before"),
        ("telotristat dose", "dosing", "250 mg orally three times daily"),
        ("CAPTEM schedule", "dosing", "temozolomide 200 mg/m2"),
        ("octreotide dose in dialysis", "dosing", "10 mg every 4 weeks"),
        ("first-line treatment for NEC?", "rationale", "platinum plus etoposide"),
        ("carcinoid crisis prophylaxis", "disagreement", "vasopressor"),
        ("PRRT renal function", "alert", "50 mL/min"),
        ("embolization after Whipple", "alert", "liver abscess"),
        ("do somatostatin analogs cause gallstones?", "alert", "Gallstones and biliary sludge"),
        ("SSA in insulinoma", "alert", "worsen hypoglycaemia"),
        ("follow-up imaging interval for NET G2", "monitoring", "every 3-6 months"),
        ("sunitinib monitoring", "monitoring", "thyroid"),
        ("PRRT eligibility criteria", "criteria", "SSTR imaging positive"),
        ("Ki-67 limit for PRRT", "criterion", "55%"),
        ("immunotherapy for NEC", "disagreement", "nivolumab"),
        ("carcinoid heart disease screening", "alert", "echocardiography"),
    ],
)
def test_general_questions_find_the_right_statement(
    question: str, kind: str, fact: str, kb: KnowledgeBase
) -> None:
    top = _top(question, kb)[0]
    assert top.kind == kind
    assert fact in top.text


def test_brand_names_and_synonyms_come_from_the_alias_file(kb: KnowledgeBase) -> None:
    assert search("Somatuline dosing", kb)[0] == search("lanreotide dose", kb)[0]
    assert search("Sutent dosage", kb)[0] == search("sunitinib dose", kb)[0]
    assert search("Xermelo how much", kb)[0] == search("telotristat dose", kb)[0]
    assert search("Lutathera toxicity", kb) == search("side effects of 177Lu-DOTATATE", kb)
    assert search("when to stop lanreotide before Lutathera", kb)[0].kind == "alert"


@pytest.mark.parametrize(
    "question",
    [
        "what is the capital of France",
        "best pizza in Rome",
        "asdf qwerty",
        "dose of paracetamol for headache",
        "side effects of aspirin",
        "side effects of chemotherapy in breast cancer",
        "what is the dose?",
        "lanreotide in pregnancy",
        "Stage IV",
    ],
)
def test_questions_the_knowledge_base_cannot_answer_say_so(
    question: str, kb: KnowledgeBase
) -> None:
    answer = answer_question(question, kb)
    assert not answer.answered
    data = answer.to_dict()
    assert data["answered"] is False
    assert data["message"] == UNANSWERED
    assert data["statements"] == []
    assert data["references"] == []


# --- references, determinism, speed ----------------------------------------------------------


def test_every_statement_cites_references_that_resolve(kb: KnowledgeBase) -> None:
    index = knowledge_index(kb)
    kinds = {s.kind for s in index.statements}
    assert kinds == {
        "dosing",
        "alert",
        "criteria",
        "criterion",
        "monitoring",
        "disagreement",
        "rationale",
    }
    for s in index.statements:
        assert s.evidence, s.title
        assert all(x in kb.references for x in s.evidence), s.title


@pytest.mark.parametrize(
    "question",
    [
        "side effects of Lutathera",
        "Milan criteria for NET transplant",
        "embolization after Whipple",
    ],
)
def test_answer_references_are_the_cited_ones_in_kb_order(question: str, kb: KnowledgeBase) -> None:
    answer = answer_question(question, kb)
    cited = {x for s in answer.statements for x in s.evidence}
    ids = [r.id for r in answer.references]
    assert set(ids) == cited
    order = list(kb.references)
    assert ids == sorted(ids, key=order.index)
    data = answer.to_dict()
    assert data["answered"] is True
    assert "message" not in data
    assert {"id", "citation", "year", "kind"} <= set(data["references"][0])


def test_same_question_same_bytes(kb: KnowledgeBase) -> None:
    question = "how long to stop octreotide LAR before PRRT"
    first = json.dumps(answer_question(question, kb).to_dict())
    fresh = KnowledgeIndex.build(kb, aliases())
    assert [h.statement for h in fresh.search(question)] == search(question, kb)
    assert json.dumps(answer_question(question, kb).to_dict()) == first


def test_index_is_built_once_per_kb_and_is_fast(kb: KnowledgeBase) -> None:
    aliases()
    start = time.perf_counter()
    KnowledgeIndex.build(kb, aliases())
    build = time.perf_counter() - start
    assert knowledge_index(kb) is knowledge_index(kb)
    questions = ["lanreotide dose for GEP-NET?", "side effects of Lutathera", "asdf qwerty"]
    start = time.perf_counter()
    for _ in range(10):
        for q in questions:
            search(q, kb)
    per_query = (time.perf_counter() - start) / 30
    assert build < 0.5  # about 30 ms here
    assert per_query < 0.02  # about 1 ms here


def test_a_long_text_is_searched_quickly(kb: KnowledgeBase) -> None:
    text = "lanreotide dose for GEP-NET with liver mets and carcinoid syndrome " * 1500
    start = time.perf_counter()
    search(text, kb)
    assert time.perf_counter() - start < 1.0


# --- the alias file ---------------------------------------------------------------------------


def test_alias_tables_refuse_a_word_with_two_meanings() -> None:
    with pytest.raises(ValueError, match="means both"):
        parse_aliases({"aliases": {"a1": ["same word"], "b1": ["Same  Word"]}})
    with pytest.raises(ValueError, match="stopwords"):
        parse_aliases({"aliases": {"of": ["x"]}, "stopwords": ["of"]})
    with pytest.raises(ValueError, match="no words"):
        parse_aliases({"aliases": {"a1": ["--"]}})


def test_intents_subjects_and_kinds_are_consistent() -> None:
    words = aliases()
    canonical = set(words.phrases.values())
    assert set(words.intents) <= canonical
    assert not set(words.intents) & words.subjects
    kinds = {"dosing", "alert", "criteria", "criterion", "monitoring", "disagreement", "rationale"}
    assert all(k <= kinds for k in words.intents.values())
    assert asks_for_knowledge("what are the side effects of PRRT")
    assert not asks_for_knowledge("pNET G2 with liver mets")


# --- which texts are general questions -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "general"),
    [
        ("lanreotide dose for GEP-NET?", True),
        ("side effects of Lutathera", True),
        ("Milan criteria for NET transplant", True),
        ("how long to stop octreotide LAR before PRRT", True),
        ("what is the capital of France", True),
        ("follow-up imaging interval for NET G2", True),
        ("Can SSA be used in insulinoma?", True),
        ("insulinoma", False),
        ("pNET G2 with liver mets", False),
        ("62M sigmoid NET G2, bilobar liver mets. Lanreotide dose?", False),
    ],
)
def test_general_question_or_patient(text: str, general: bool) -> None:
    assert is_general_question(parse_text(text).case_dict, text) is general


# --- the command -------------------------------------------------------------------------------


def test_ask_json_carries_knowledge_for_a_general_question(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["ask", "side effects of Lutathera", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= ANSWER_KEYS
    assert data["parsed_case"] == {}
    knowledge = data["knowledge"]
    assert knowledge["question"] == "side effects of Lutathera"
    assert knowledge["answered"] is True
    assert list(knowledge["statements"][0]) == ["kind", "title", "text", "evidence"]
    cited = {x for s in knowledge["statements"] for x in s["evidence"]}
    assert {r["id"] for r in knowledge["references"]} == cited


def test_ask_markdown_shows_the_knowledge_base_instead_of_the_report(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["ask", "lanreotide dose for GEP-NET?"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## From the knowledge base\n")
    assert "What I understood" not in out
    assert "Lanreotide 120 mg" in out
    assert "[1]" in out
    assert "\n### References\n\n1. SOMATULINE DEPOT" in out


def test_ask_markdown_says_when_the_knowledge_base_has_no_answer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["ask", "best pizza in Rome"]) == 0
    out = capsys.readouterr().out
    assert out == "## From the knowledge base\n\n" + UNANSWERED + "\n"


def test_a_patient_keeps_the_patient_answer(capsys: pytest.CaptureFixture[str]) -> None:
    text = "62M sigmoid NET G2 Ki67 8%, bilobar liver mets, no extrahepatic disease."
    assert main(["ask", text, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "knowledge" not in data
    assert main(["ask", text]) == 0
    assert capsys.readouterr().out.startswith("## What I understood\n")


def test_a_patient_asking_for_a_dose_also_gets_the_dosing_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = "pancreatic NET G2 Ki-67 5%, liver mets, what lanreotide dose?"
    assert main(["ask", text, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["parsed_case"]["metastatic_sites"] == ["liver"]
    assert data["recommendations"]
    assert "Lanreotide 120 mg" in data["knowledge"]["statements"][0]["text"]
    assert main(["ask", text]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## What I understood\n")
    assert "\n## From the knowledge base\n" in out


def _netboard() -> str:
    script = Path(sys.executable).parent / "netboard"
    if not script.exists():
        pytest.skip("the netboard script is not installed beside this Python")
    return str(script)


@pytest.mark.parametrize(
    ("question", "answered"),
    [("lanreotide dose for GEP-NET?", True), ("what is the capital of France", False)],
)
def test_installed_script_answers_general_questions(question: str, answered: bool) -> None:
    proc = subprocess.run(
        [_netboard(), "ask", question, "--format", "json"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    data = json.loads(proc.stdout)
    assert set(data) >= ANSWER_KEYS
    assert data["knowledge"]["answered"] is answered
    assert bool(data["knowledge"]["statements"]) is answered
    if not answered:
        assert data["knowledge"]["message"] == UNANSWERED
