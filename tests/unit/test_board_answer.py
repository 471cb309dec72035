"""The board answer on a few cases a clinic meets, one behaviour each (the general properties
are in ``tests/property/test_board.py``)."""

from __future__ import annotations

from netboard.case import load_case
from netboard.engine.board import board
from netboard.kb import load_kb

KB = load_kb()


def what_ifs(data: dict[str, object]) -> set[tuple[str, str]]:
    return {(w.field, str(w.value)) for w in board(load_case(data), KB).what_if}


def test_a_stated_low_grade_rules_out_a_carcinoma_what_if() -> None:
    """WHO 2019: every NEC is high grade, so a stated G1 (or a G2 Ki-67) leaves no
    'if it is a carcinoma' branch; without a grade the branch stays."""
    rectal = {
        "primary_site": "rectum",
        "grade": "g1",
        "primary_size_mm": 12,
        "resection_margin": "r1",
        "primary_resected": True,
        "metastatic_sites": [],
    }
    assert ("differentiation", "poor") not in what_ifs(rectal)
    assert ("differentiation", "poor") not in what_ifs(
        {"primary_site": "ileum", "ki67_percent": 15, "metastatic_sites": ["liver"]}
    )
    assert ("differentiation", "poor") in what_ifs(
        {"primary_site": "pancreas", "metastatic_sites": ["liver"]}
    )


def test_a_presumption_never_rules_out_another_value() -> None:
    """The presumed Ki-67 below 10 % rests on the presumed well-differentiated NET: it must
    not make the carcinoma what-if implausible (only stated facts do)."""
    b = board(load_case({"primary_site": "pancreas", "metastatic_sites": ["liver"]}), KB)
    assert {p.field for p in b.presumptions} >= {"differentiation", "ki67_percent"}
    nec = [w for w in b.what_if if w.field == "differentiation" and str(w.value) == "poor"]
    assert nec
    assert "platinum_etoposide" in {str(c) for c in nec[0].adds}


def test_a_plan_without_treatment_says_what_it_waits_for() -> None:
    """No treatment step yet: the bottom line names the decisive facts still missing (not the
    presumed ones, not the checks before a step), the grade's inputs once."""
    from netboard.engine.recommend import recommend

    summary = recommend(
        load_case({"primary_site": "sigmoid_colon", "metastatic_sites": ["liver"]}), kb=KB
    ).summary
    needed = summary.split("Plan: tumour board review. A treatment plan needs ", 1)[1]
    needed = needed.split(" first.", 1)[0]
    assert set(needed.split(" and ")) == {
        "differentiation",
        "the grade (Ki-67 index or mitotic count)",
    }
    g3 = recommend(
        load_case({"primary_site": "pancreas", "ki67_percent": 35, "metastatic_sites": ["liver"]}),
        kb=KB,
    ).summary
    assert g3.startswith("Neuroendocrine neoplasm G3 (Ki-67 35%) of the pancreas (differentiation")
    assert "A treatment plan needs differentiation first." in g3


def test_a_small_low_grade_rectal_net_is_presumed_localised() -> None:
    """Nothing said about spread: a rectal NET up to 20 mm, G1/G2, is presumed localised (with
    node and liver what-ifs); over 20 mm, or G3, it is not."""
    from netboard.parse.ask import ask

    answer = ask(
        "A 49-year-old woman with a 6 mm rectal NET G1 removed by cold snare polypectomy "
        "with clear margins.",
        KB,
    ).answer
    assert [str(c) for s in answer.plan for c in s.codes] == [
        "multidisciplinary_review",
        "observation",
    ]
    assert "Plan: nothing more (no follow-up)." in answer.summary
    assert {(w.field, str(w.value)) for w in answer.what_if} >= {
        ("metastatic_sites", "regional_lymph_nodes"),
        ("metastatic_sites", "liver"),
    }
    for data in (
        {"primary_site": "rectum", "grade": "g1", "primary_size_mm": 25},
        {
            "primary_site": "rectum",
            "ki67_percent": 30,
            "differentiation": "well",
            "primary_size_mm": 8,
        },
    ):
        presumed = {p.field for p in board(load_case(data), KB).presumptions}
        assert "metastatic_sites" not in presumed, data
