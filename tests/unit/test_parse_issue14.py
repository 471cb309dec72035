"""Issue 14: free text that never drops a decisive word.

The reviews' misses, each read (or reported) by general lexicon entries, with negation and
uncertainty still respected; the ``implied`` and ``topics`` interfaces of ``ParsedText``.
"""

from __future__ import annotations

from netboard.case import load_case
from netboard.engine.recommend import recommend
from netboard.kb import KnowledgeBase
from netboard.parse import parse_text
from netboard.parse.ask import ask, understood_markdown

NOTE = (
    "Ga-68 DOTATATE PET: avid liver lesions (multiple, both lobes). No flushing or diarrhoea. "
    "Previously on lanreotide 120 mg for 14 months, now progression on CT."
)


def test_the_new_user_note_is_stage_iv_non_functioning_progressing_on_ssa(
    kb: KnowledgeBase,
) -> None:
    parsed = parse_text(NOTE)
    assert parsed.case_dict == {
        "functional_syndrome": "none",
        "sstr_imaging": "positive",
        "metastatic_sites": ["liver"],
        "liver_distribution": "bilobar",
        "disease_status": "progressive",
        "prior_treatments": ["somatostatin_analog"],
        "progressed_on": ["somatostatin_analog"],
    }
    assert parsed.unparsed == ()
    answer = recommend(load_case(parsed.case_dict), kb=kb).to_dict()
    assert "stage IV" in answer["summary"]


def test_the_public_vignette_question() -> None:
    parsed = parse_text("Metastatic small bowel NET to the liver - what first-line therapy?")
    assert parsed.case_dict == {"primary_site": "small_intestine", "metastatic_sites": ["liver"]}


def test_metastases_in_the_words_of_the_reviews() -> None:
    assert parse_text("liver lesions").case_dict == {"metastatic_sites": ["liver"]}
    assert parse_text("metastatic ileal NET in the liver").case_dict["metastatic_sites"] == [
        "liver"
    ]
    assert parse_text("Metastatic gastrinoma to liver").case_dict == {
        "functional_syndrome": "gastrinoma",
        "metastatic_sites": ["liver"],
    }
    assert parse_text("perigastric lymph node metastases").case_dict == {
        "metastatic_sites": ["regional_lymph_nodes"]
    }
    # A lesion whose nature is in doubt, or benign, is no metastasis.
    assert parse_text("liver lesions, probably cysts").case_dict == {}
    assert parse_text("benign liver lesion").case_dict == {}
    assert parse_text("indeterminate liver lesion").case_dict == {}


def test_no_metastases_is_localised_disease_and_never_hides_a_site() -> None:
    assert parse_text("no metastases").case_dict == {"metastatic_sites": []}
    assert parse_text("localised disease").case_dict == {"metastatic_sites": []}
    assert parse_text("no metastases to the liver").case_dict == {}
    assert parse_text("no distant metastases").case_dict == {}
    assert parse_text("Any metastases?").case_dict == {}
    parsed = parse_text("localised disease; bone mets on MRI")
    assert parsed.case_dict == {"metastatic_sites": ["bone"]}
    assert "localised disease" in parsed.unparsed


def test_sites_named_by_a_lesion_or_a_segment() -> None:
    assert parse_text("gastric mass").case_dict == {"primary_site": "stomach"}
    assert parse_text("NET in the gastric body").case_dict == {"primary_site": "stomach"}
    assert parse_text("hepatic flexure NET").case_dict == {"primary_site": "colon"}
    # A stated tumour site wins over a lesion; the lesion is reported.
    parsed = parse_text("ileal NET; gastric mass")
    assert parsed.case_dict["primary_site"] == "ileum"
    assert "gastric mass" in parsed.unparsed
    # A lesion names no primary when every tumour word of the text is doubted.
    parsed = parse_text("gastric polyp, likely a NET")
    assert parsed.case_dict == {}
    assert "gastric polyp" in parsed.unparsed
    assert parse_text("gastric mass; biopsy NET").case_dict["primary_site"] == "stomach"
    # An aside keeps its own words out of a negation.
    assert parse_text("No flushing or diarrhoea (unknown primary)").case_dict == {
        "primary_site": "unknown_primary",
        "functional_syndrome": "none",
    }


def test_who_terms_imply_differentiation_without_stating_it() -> None:
    parsed = parse_text("neuroendocrine tumour of the pancreas")
    assert "differentiation" not in parsed.case_dict
    assert parsed.implied == {"differentiation": ("well", "neuroendocrine tumour")}
    assert "implied by the term" in understood_markdown(parsed)
    assert parse_text("well-differentiated NET").implied == {}
    assert parse_text("pancreatic NEC").case_dict["differentiation"] == "poor"
    assert parse_text("pancreatic NEC").implied == {}
    assert parse_text("NET or NEC?").implied == {}
    assert parse_text("no NET").implied == {}
    assert parse_text("carcinoid syndrome").implied == {}


def test_small_and_large_cell_are_poorly_differentiated() -> None:
    assert parse_text("small cell NEC of the rectum").case_dict["differentiation"] == "poor"
    assert parse_text("large cell carcinoma of the lung").case_dict["differentiation"] == "poor"
    assert "differentiation" not in parse_text("non-small cell lung cancer").case_dict


def test_function_words() -> None:
    assert parse_text("No flushing or diarrhoea").case_dict == {"functional_syndrome": "none"}
    # A stated syndrome wins over the implied non-functioning.
    assert parse_text("insulinoma; no flushing or diarrhoea").case_dict == {
        "functional_syndrome": "insulinoma"
    }
    parsed = parse_text("hypoglycaemia despite diazoxide")
    assert parsed.case_dict == {"prior_treatments": ["diazoxide"]}
    assert "hypoglycaemia" in parsed.unparsed


def test_progression_after_a_treatment_given() -> None:
    parsed = parse_text("on octreotide LAR since 2021; CT now shows progression")
    assert parsed.case_dict["progressed_on"] == ["somatostatin_analog"]
    for text in (
        "on lanreotide, no progression",
        "on lanreotide; possible progression on the last MRI",
        "s/p hemicolectomy, now progression in the liver",
        "on lanreotide. Progression?",
    ):
        assert "progressed_on" not in parse_text(text).case_dict, text
    # "then" puts the next treatment after the progression.
    parsed = parse_text("progressed on cisplatin/etoposide, then FOLFIRI")
    assert parsed.case_dict["progressed_on"] == ["platinum_etoposide"]


def test_a_bare_resection_takes_the_organ_named_before() -> None:
    assert parse_text("Ileal NET. s/p resection 2019.").case_dict["prior_treatments"] == [
        "primary_resection"
    ]
    assert parse_text("liver metastases were resected in 2021").case_dict["prior_treatments"] == [
        "hepatic_resection"
    ]
    parsed = parse_text("s/p resection")
    assert parsed.case_dict == {}
    assert parsed.unparsed == ("s/p resection",)
    assert "prior_treatments" not in parse_text("the NET should be resected").case_dict


def test_a_treatment_named_but_not_given_is_the_question(kb: KnowledgeBase) -> None:
    parsed = parse_text("Radioembolization of the liver metastases is proposed.")
    assert parsed.case_dict == {"metastatic_sites": ["liver"]}
    assert parsed.topics == ("tare",)
    assert parse_text("no prior PRRT").topics == ()
    result = ask("Ileal NET, Ki-67 4%, liver metastases. Radioembolization proposed.", kb)
    assert not result.general
    assert result.knowledge is not None
    assert result.knowledge.answered
    assert any("adioembolization" in s.text for s in result.knowledge.statements)


def test_labs_and_marrow() -> None:
    assert parse_text("Platelets are 33 x10^9/L").case_dict == {"labs": {"platelets_10e9_l": 33}}
    parsed = parse_text("bone marrow shows therapy-related MDS")
    assert parsed.case_dict == {}
    assert parsed.unparsed == ("bone marrow shows therapy-related MDS",)
    assert parse_text("no MDS").unparsed == ()


def test_primary_size() -> None:
    assert parse_text("rectal NET 9 mm").case_dict["primary_size_mm"] == 9
    assert parse_text("a 1.5 cm appendiceal NET").case_dict["primary_size_mm"] == 15
    assert parse_text("pNET 3.4 x 2.8 cm").case_dict["primary_size_mm"] == 34
    parsed = parse_text("ileal NET with a 4 cm liver metastasis")
    assert "primary_size_mm" not in parsed.case_dict
    assert "4 cm" in parsed.unparsed
    for text in ("rectal NET < 1 cm", "rectal NET 1-2 cm", "clear margin of 2 mm", "grade 1.5 cm"):
        assert "primary_size_mm" not in parse_text(text).case_dict, text
    assert "grade" not in parse_text("grade 1.5 cm").case_dict


def test_resection_margin() -> None:
    # A margin is only had once the primary is out.
    assert parse_text("positive deep margin").case_dict == {
        "primary_resected": True,
        "resection_margin": "r1",
    }
    assert parse_text("margins clear").case_dict["resection_margin"] == "r0"
    assert parse_text("Surgical margins: negative").case_dict["resection_margin"] == "r0"
    parsed = parse_text("lateral margins free, deep margin positive")
    assert parsed.case_dict["resection_margin"] == "r1"
    assert parse_text("R0 resection is planned").case_dict == {}
    assert parse_text("rectal NET, EMR, R1").case_dict["prior_treatments"] == [
        "endoscopic_resection"
    ]
    # The margin of a liver resection is not the primary's.
    assert "resection_margin" not in parse_text("liver resection (R1)").case_dict


def test_gastric_type_and_hereditary_syndrome() -> None:
    assert parse_text("type 1 gastric NET").case_dict == {
        "primary_site": "stomach",
        "gastric_type": "type_1",
    }
    assert "gastric_type" not in parse_text("type 2 diabetes, gastric NET").case_dict
    assert parse_text("MEN1").case_dict == {"hereditary_syndrome": "men1"}
    assert parse_text("her mother had MEN1").case_dict == {}
    assert parse_text("MEN1 testing pending").case_dict == {}
    assert parse_text("von Hippel-Lindau disease").case_dict == {"hereditary_syndrome": "vhl"}


def test_grade_words() -> None:
    assert parse_text("low-grade ileal NET").case_dict["grade"] == "g1"
    assert parse_text("intermediate grade NET").case_dict["grade"] == "g2"
    assert parse_text("typical carcinoid").case_dict["grade"] == "g1"
    assert parse_text("atypical carcinoid").case_dict["grade"] == "g2"


def test_a_text_naming_only_a_non_neuroendocrine_cancer_gets_no_plan() -> None:
    """Free text, like a FHIR record (issue 13): a cancer that is not neuroendocrine, with no
    neuroendocrine word, is out of scope; a MiNEN or a second, earlier cancer is not."""
    from netboard.kb import load_kb
    from netboard.parse.ask import ask

    kb = load_kb()
    for text in (
        "lung adenocarcinoma with liver metastases",
        "non-small cell carcinoma of the lung, stage IV",
        "pancreatic ductal adenocarcinoma",
        "goblet cell adenocarcinoma of the appendix",
    ):
        answer = ask(text, kb).answer
        assert answer.scope.applies is False, text
        assert answer.plan == (), text
    for text in (
        "MiNEN of the colon with an adenocarcinoma component",
        "history of prostate adenocarcinoma, now ileal NET with liver metastases",
        "ileal NET; no adenocarcinoma component",
        "small cell carcinoma of the pancreas with liver metastases",
    ):
        assert ask(text, kb).answer.scope.applies is True, text
