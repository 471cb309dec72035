"""WHO 2019 grade, discordance, differentiation, WHO category, stage and pregnancy status."""

from __future__ import annotations

from typing import Any

import pytest

from netboard.case import Case, load_case
from netboard.engine.classify import Classified, classify, stage_of
from netboard.engine.derive import GRADE_WORDS, PyOps, derived_grade_rank
from netboard.kb import KnowledgeBase, load_kb
from netboard.kb.model import Grading
from netboard.vocab import Differentiation, Grade, MetastaticSite, Who2019

G1, G2, G3 = Grade.G1, Grade.G2, Grade.G3


def derive_grade(ki67: float | None, mitoses: float | None, grading: Grading) -> Grade | None:
    """The measured grade under one scheme (a lung primary for the thoracic scheme)."""
    kb = load_kb()
    site = "lung" if grading is kb.grading["thoracic"] else "ileum"
    case = load_case(
        {
            k: v
            for k, v in {
                "primary_site": site,
                "ki67_percent": ki67,
                "mitoses_per_2mm2": mitoses,
            }.items()
            if v is not None
        }
    )
    rank = derived_grade_rank(PyOps(case.value), kb)
    return Grade(GRADE_WORDS[rank - 1]) if rank else None


def run(kb: KnowledgeBase, **fields: Any) -> Classified:
    """Classify a case; the primary defaults to the ileum (digestive grading) unless given,
    and ``primary_site=None`` leaves it unstated."""
    fields.setdefault("primary_site", "ileum")
    return classify(load_case({k: v for k, v in fields.items() if v is not None}), kb)


@pytest.fixture(scope="module")
def digestive(kb: KnowledgeBase) -> Grading:
    return kb.grading["digestive"]


@pytest.fixture(scope="module")
def thoracic(kb: KnowledgeBase) -> Grading:
    return kb.grading["thoracic"]


# --- derive_grade at the WHO 2019 cut-offs ----------------------------------------------------


@pytest.mark.parametrize(
    ("ki67", "grade"),
    [(0, G1), (2.9, G1), (2.99, G1), (3, G2), (10, G2), (20, G2), (20.1, G3), (55, G3), (100, G3)],
)
def test_ki67_cut_offs_are_below_3_and_up_to_20(
    digestive: Grading, ki67: float, grade: Grade
) -> None:
    assert derive_grade(ki67, None, digestive) is grade


@pytest.mark.parametrize(
    ("mitoses", "grade"),
    [(0, G1), (1.9, G1), (2, G2), (10, G2), (20, G2), (20.5, G3), (21, G3), (80, G3)],
)
def test_mitotic_cut_offs_are_below_2_and_up_to_20(
    digestive: Grading, mitoses: float, grade: Grade
) -> None:
    assert derive_grade(None, mitoses, digestive) is grade


@pytest.mark.parametrize(
    ("ki67", "mitoses", "grade"),
    [
        (1, 1, G1),
        (1, 5, G2),
        (8, 1, G2),
        (2, 25, G3),
        (30, 1, G3),
        (15, 15, G2),
        (25, 25, G3),
    ],
)
def test_the_higher_of_ki67_and_mitotic_grade_wins(
    digestive: Grading, ki67: float, mitoses: float, grade: Grade
) -> None:
    assert derive_grade(ki67, mitoses, digestive) is grade


def test_no_measurement_gives_no_grade(digestive: Grading) -> None:
    assert derive_grade(None, None, digestive) is None


def test_thoracic_grading_ignores_ki67(thoracic: Grading) -> None:
    assert derive_grade(80, None, thoracic) is None
    assert derive_grade(80, 1, thoracic) is G1
    assert derive_grade(1, 5, thoracic) is G2


def test_thoracic_mitotic_cut_offs_are_below_2_and_up_to_10(thoracic: Grading) -> None:
    assert derive_grade(None, 1.9, thoracic) is G1
    assert derive_grade(None, 2, thoracic) is G2
    assert derive_grade(None, 10, thoracic) is G2
    assert derive_grade(None, 11, thoracic) is G3


def test_lung_primary_is_graded_by_mitoses_only(kb: KnowledgeBase) -> None:
    result = run(kb, primary_site="lung", ki67_percent=40, mitoses_per_2mm2=1)
    assert result.computed["grade"] is G1
    assert result.computed["thoracic_primary"] is True


def test_lung_primary_with_ki67_only_has_no_grade_and_a_note(kb: KnowledgeBase) -> None:
    result = run(kb, primary_site="thymus", ki67_percent=40)
    assert result.computed["grade"] is None
    assert any("mitoses" in n for n in result.notes)


def test_ileal_primary_is_graded_by_ki67(kb: KnowledgeBase) -> None:
    assert run(kb, primary_site="ileum", ki67_percent=40).computed["grade"] is G3


def test_unknown_primary_uses_the_digestive_cut_offs(kb: KnowledgeBase) -> None:
    assert run(kb, primary_site="unknown_primary", ki67_percent=12).computed["grade"] is G2


def test_unstated_site_grades_only_where_digestive_and_thoracic_schemes_agree(
    kb: KnowledgeBase,
) -> None:
    # Ki-67 does not grade lung/thymic tumours, so without a site Ki-67 alone cannot grade.
    assert run(kb, primary_site=None, ki67_percent=12).computed["grade"] is None
    # Mitoses 15 are G2 in the digestive scheme but G3 in the thoracic one.
    assert run(kb, primary_site=None, mitoses_per_2mm2=15).computed["grade"] is None
    # Mitoses 1 are G1 in both schemes.
    assert run(kb, primary_site=None, mitoses_per_2mm2=1).computed["grade"] is G1
    # A stated grade stands on its own.
    assert run(kb, primary_site=None, grade="g2").computed["grade"] is G2


# --- stated grade versus measured grade -------------------------------------------------------


def test_stated_g1_with_ki67_8_becomes_g2_and_discordant(kb: KnowledgeBase) -> None:
    result = run(kb, grade="g1", ki67_percent=8)
    assert result.computed["grade"] is G2
    assert result.discordant is True
    assert result.computed["grade_discordant"] is True
    assert result.stated_grade is G1
    assert result.derived_grade is G2
    assert any("G1" in n and "G2" in n for n in result.notes)


def test_stated_g3_with_ki67_15_and_mitoses_unknown_stays_g3_not_discordant(
    kb: KnowledgeBase,
) -> None:
    # Mitoses not counted: they may be what made the pathologist call it G3.
    result = run(kb, grade="g3", ki67_percent=15)
    assert result.computed["grade"] is G3
    assert result.discordant is False


def test_stated_g3_with_ki67_15_and_mitoses_3_is_discordant(kb: KnowledgeBase) -> None:
    result = run(kb, grade="g3", ki67_percent=15, mitoses_per_2mm2=3)
    assert result.computed["grade"] is G3
    assert result.discordant is True


def test_stated_grade_matching_the_measurement_is_not_discordant(kb: KnowledgeBase) -> None:
    result = run(kb, grade="g2", ki67_percent=15, mitoses_per_2mm2=3)
    assert result.computed["grade"] is G2
    assert result.discordant is False
    assert result.notes == () or all("disagrees" not in n for n in result.notes)


def test_stated_grade_without_measurements_is_used_as_given(kb: KnowledgeBase) -> None:
    result = run(kb, grade="g2")
    assert result.computed["grade"] is G2
    assert result.derived_grade is None
    assert result.discordant is False


def test_stated_grade_below_mitotic_grade_is_discordant_even_without_ki67(
    kb: KnowledgeBase,
) -> None:
    result = run(kb, grade="g1", mitoses_per_2mm2=25)
    assert result.computed["grade"] is G3
    assert result.discordant is True


def test_lung_stated_g2_with_low_mitoses_is_discordant(kb: KnowledgeBase) -> None:
    # Thoracic grading rests on mitoses alone, so a mitotic count is a full measurement.
    result = run(kb, primary_site="lung", grade="g2", mitoses_per_2mm2=1)
    assert result.computed["grade"] is G2
    assert result.discordant is True


# --- differentiation and WHO 2019 ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "inferred", "who"),
    [
        ({"ki67_percent": 2}, Differentiation.WELL, Who2019.NET_G1),
        ({"ki67_percent": 10}, Differentiation.WELL, Who2019.NET_G2),
        ({"grade": "g2"}, Differentiation.WELL, Who2019.NET_G2),
        ({"ki67_percent": 30}, None, None),
        ({"differentiation": "well", "ki67_percent": 30}, Differentiation.WELL, Who2019.NET_G3),
        ({"differentiation": "poor", "ki67_percent": 70}, Differentiation.POOR, Who2019.NEC),
        ({"differentiation": "poor"}, Differentiation.POOR, Who2019.NEC),
        ({"differentiation": "poor", "ki67_percent": 5}, Differentiation.POOR, Who2019.NEC),
        ({"differentiation": "well"}, Differentiation.WELL, None),
        ({}, None, None),
    ],
    ids=[
        "g1-implies-well",
        "g2-implies-well",
        "stated-g2-implies-well",
        "g3-alone-is-unknown",
        "well-g3-is-net-g3",
        "poor-is-nec",
        "poor-without-grade-is-nec",
        "poor-wins-over-low-ki67",
        "well-without-grade-is-unknown",
        "nothing-is-unknown",
    ],
)
def test_differentiation_inference_and_who_2019(
    kb: KnowledgeBase,
    fields: dict[str, Any],
    inferred: Differentiation | None,
    who: Who2019 | None,
) -> None:
    result = run(kb, **fields)
    assert result.computed["differentiation_inferred"] is inferred
    assert result.computed["who_2019"] is who


def test_inferring_well_differentiation_leaves_a_note(kb: KnowledgeBase) -> None:
    assert any("well-differentiated" in n for n in run(kb, ki67_percent=2).notes)


def test_poor_differentiation_with_low_ki67_asks_for_pathology_review(kb: KnowledgeBase) -> None:
    """The note comes from the knowledge base's plausibility limits (a carcinoma is high grade),
    once, in the answer's classification notes."""
    from netboard.case import load_case
    from netboard.engine.recommend import recommend

    case = {"differentiation": "poor", "ki67_percent": 5, "primary_site": "ileum"}
    notes = recommend(load_case(case), kb=kb)
    found = [n for n in notes.classification.notes if "stated as poor" in n]
    assert len(found) == 1
    assert "please check it" in found[0]


def test_who_2019_values_are_contract_words(kb: KnowledgeBase) -> None:
    seen = {
        run(kb, **f).computed["who_2019"]
        for f in (
            {"ki67_percent": 1},
            {"ki67_percent": 5},
            {"ki67_percent": 25, "differentiation": "well"},
            {"differentiation": "poor"},
        )
    }
    assert seen == {Who2019.NET_G1, Who2019.NET_G2, Who2019.NET_G3, Who2019.NEC}


# --- site facts -----------------------------------------------------------------------------


def test_site_facts_come_from_the_knowledge_base(kb: KnowledgeBase) -> None:
    computed = run(kb, primary_site="rectum").computed
    assert computed["site_group"] == "colorectal"
    assert computed["portal_drained"] is False
    assert computed["thoracic_primary"] is False
    assert computed["gut_region"] == "hindgut"


def test_site_facts_are_unknown_without_a_primary_site(kb: KnowledgeBase) -> None:
    computed = run(kb, primary_site=None).computed
    for name in ("site_group", "gut_region", "portal_drained", "thoracic_primary"):
        assert computed[name] is None, name


# --- stage ----------------------------------------------------------------------------------


def sites(*names: str) -> Case:
    return Case(metastatic_sites=tuple(MetastaticSite(n) for n in names))


@pytest.mark.parametrize(
    ("names", "label"),
    [
        (("liver",), "IV (M1a: liver only)"),
        (("liver", "regional_lymph_nodes"), "IV (M1a: liver only)"),
        (("bone",), "IV (M1b: extrahepatic only)"),
        (("distant_lymph_nodes", "peritoneum"), "IV (M1b: extrahepatic only)"),
        (("liver", "bone"), "IV (M1c: hepatic and extrahepatic)"),
        (("liver", "ovary", "regional_lymph_nodes"), "IV (M1c: hepatic and extrahepatic)"),
        (("regional_lymph_nodes",), "III (regional nodes, no distant metastases)"),
        ((), "I-II (no metastases stated; T category decides)"),
    ],
    ids=[
        "m1a",
        "m1a-with-nodes",
        "m1b",
        "m1b-nodes-peritoneum",
        "m1c",
        "m1c-ovary",
        "regional-nodes-only",
        "none",
    ],
)
def test_stage_labels_follow_ajcc_m_categories(names: tuple[str, ...], label: str) -> None:
    assert stage_of(sites(*names), thoracic=False) == label


def test_stage_is_unknown_when_metastatic_sites_are_not_stated() -> None:
    assert stage_of(Case(), thoracic=False) == "unknown (metastatic sites not stated)"


def test_thoracic_distant_disease_is_stage_iv_without_gep_m_categories() -> None:
    assert stage_of(sites("liver"), thoracic=True) == "IV (distant metastases)"


def test_classify_reports_the_stage(kb: KnowledgeBase) -> None:
    result = run(kb, primary_site="ileum", metastatic_sites=["liver", "bone"])
    assert result.stage == "IV (M1c: hepatic and extrahepatic)"


# --- pregnancy status -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"pregnant": True, "sex": "female", "age_years": 30}, "pregnant"),
        ({"pregnant": False, "sex": "female", "age_years": 30}, "not_pregnant"),
        ({"pregnant": True, "sex": "female", "age_years": 60}, "pregnant"),
        ({"sex": "male"}, "not_pregnant"),
        ({"sex": "female", "age_years": 60}, "not_pregnant"),
        ({"sex": "female", "age_years": 55}, "not_pregnant"),
        ({"sex": "female", "age_years": 54.9}, None),
        ({"sex": "female"}, None),
        ({"sex": "other", "age_years": 30}, None),
        ({}, None),
    ],
    ids=[
        "stated-pregnant",
        "stated-not-pregnant",
        "stated-wins-over-age",
        "male",
        "woman-60",
        "woman-at-limit",
        "woman-below-limit",
        "woman-age-unknown",
        "other-sex-30",
        "nothing",
    ],
)
def test_pregnancy_status(kb: KnowledgeBase, fields: dict[str, Any], status: str | None) -> None:
    case = load_case(fields)
    assert classify(case, kb).computed["pregnancy_status"] == status


# --- treatment history ----------------------------------------------------------------------


def test_newly_diagnosed_patient_has_received_and_failed_nothing(kb: KnowledgeBase) -> None:
    computed = run(kb, disease_status="newly_diagnosed").computed
    assert computed["treatments_received"] == ()
    assert computed["treatments_failed"] == ()


def test_treatment_history_is_unknown_when_not_stated(kb: KnowledgeBase) -> None:
    computed = run(kb, disease_status="progressive").computed
    assert computed["treatments_received"] is None
    assert computed["treatments_failed"] is None


def test_treatments_received_include_what_the_disease_progressed_on(kb: KnowledgeBase) -> None:
    computed = run(
        kb, prior_treatments=["somatostatin_analog", "everolimus"], progressed_on=["everolimus"]
    ).computed
    assert computed["treatments_received"] == ("everolimus", "somatostatin_analog")
    assert computed["treatments_failed"] == ("everolimus",)
