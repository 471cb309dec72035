"""load_case / parse_document: the case is taken as given, or refused with every problem."""

from __future__ import annotations

import math
from typing import Any

import pytest

from netboard.case import Case, load_case
from netboard.documents import parse_document
from netboard.errors import CaseError, Problem
from netboard.fields import registry
from netboard.vocab import Grade, MetastaticSite, Site

FIELDS = {path: f.spec for path, f in registry().top.items()}
LAB_FIELDS = {name: f.spec for name, f in registry().members["labs"].items()}

FULL_CASE: dict[str, Any] = {
    "id": "unit-full-1",
    "age_years": 58.5,
    "sex": "female",
    "primary_site": "pancreas",
    "pancreas_region": "tail",
    "primary_resected": False,
    "primary_complications": ["bleeding", "obstruction"],
    "differentiation": "well",
    "ki67_percent": 7.5,
    "mitoses_per_2mm2": 3,
    "grade": "g2",
    "functional_syndrome": "none",
    "sstr_imaging": "positive",
    "fdg_pet": "negative",
    "metastatic_sites": ["regional_lymph_nodes", "liver", "bone"],
    "liver_tumor_burden_percent": 30,
    "liver_resectable": "partial",
    "liver_resectable_fraction_percent": 90,
    "liver_distribution": "bilobar",
    "disease_status": "progressive",
    "months_stable": 0,
    "prior_treatments": ["somatostatin_analog", "everolimus"],
    "progressed_on": ["everolimus", "somatostatin_analog"],
    "ecog": 1,
    "comorbidities": ["diabetes", "cholelithiasis"],
    "pregnant": False,
    "primary_size_mm": 18,
    "resection_margin": "r0",
    "hereditary_syndrome": "none",
    "labs": {
        "creatinine_clearance_ml_min": 72,
        "platelets_10e9_l": 210,
        "neutrophils_10e9_l": 3.1,
        "hemoglobin_g_dl": 12.4,
        "bilirubin_mg_dl": 0.8,
        "albumin_g_dl": 4.1,
        "chromogranin_a_x_uln": 3.5,
        "urine_5hiaa_x_uln": 1.2,
        "nt_probnp_pg_ml": 140,
    },
}


def problems_of(data: Any) -> list[Problem]:
    with pytest.raises(CaseError) as info:
        load_case(data)
    return list(info.value.problems)


def fields_of(data: Any) -> list[str]:
    return [p.field for p in problems_of(data)]


# --- round trip -------------------------------------------------------------------------------


def test_full_case_covers_every_contract_field() -> None:
    # gastric_type needs a gastric primary; the full case is pancreatic.
    assert set(FULL_CASE) | {"gastric_type"} == {*FIELDS, "labs"}
    assert set(FULL_CASE["labs"]) == set(LAB_FIELDS)


def test_to_dict_returns_exactly_the_given_fields_of_a_full_case() -> None:
    out = load_case(FULL_CASE).to_dict()
    assert out == FULL_CASE
    assert list(out["metastatic_sites"]) == ["regional_lymph_nodes", "liver", "bone"]
    assert list(out["progressed_on"]) == ["everolimus", "somatostatin_analog"]


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"primary_site": "ileum"},
        {"ki67_percent": 0, "labs": {"platelets_10e9_l": 90}},
        {"metastatic_sites": []},
        {"prior_treatments": [], "progressed_on": []},
        {"metastatic_sites": ["bone", "liver", "bone"]},
        {"primary_resected": True, "pregnant": False},
    ],
    ids=["empty", "one-field", "with-labs", "empty-list", "empty-lists", "repeated-item", "flags"],
)
def test_to_dict_adds_nothing_and_alters_nothing(data: dict[str, Any]) -> None:
    assert load_case(data).to_dict() == data


def test_null_values_mean_not_given() -> None:
    case = load_case({"ki67_percent": None, "labs": {"platelets_10e9_l": None}, "sex": None})
    assert case == Case()
    assert case.to_dict() == {}


def test_loaded_values_are_contract_enums_and_tuples() -> None:
    case = load_case({"primary_site": "ileum", "grade": "g1", "metastatic_sites": ["liver"]})
    assert case.primary_site is Site.ILEUM
    assert case.grade is Grade.G1
    assert case.metastatic_sites == (MetastaticSite.LIVER,)


def test_case_is_frozen() -> None:
    case = load_case({"ki67_percent": 5})
    with pytest.raises(AttributeError):
        case.ki67_percent = 6  # type: ignore[misc]


def test_value_reads_labs_by_dotted_path() -> None:
    case = load_case({"labs": {"bilirubin_mg_dl": 1.4}})
    assert case.value("labs.bilirubin_mg_dl") == 1.4
    assert case.value("labs.albumin_g_dl") is None
    assert case.value("ki67_percent") is None


# --- every problem at once --------------------------------------------------------------------


def test_every_problem_is_collected_at_once() -> None:
    data = {
        "primary_sight": "ileum",
        "sex": "x",
        "age_years": "old",
        "ki67_percent": 140,
        "ecog": 1.5,
        "metastatic_sites": ["liver", "moon", "sun"],
        "pregnant": "yes",
        "labs": {"platelets": 1, "hemoglobin_g_dl": -1},
    }
    found = fields_of(data)
    assert sorted(found) == sorted(
        [
            "primary_sight",
            "sex",
            "age_years",
            "ki67_percent",
            "ecog",
            "metastatic_sites[1]",
            "metastatic_sites[2]",
            "pregnant",
            "labs.platelets",
            "labs.hemoglobin_g_dl",
        ]
    )


def test_case_error_message_lists_every_problem() -> None:
    with pytest.raises(CaseError) as info:
        load_case({"sex": "x", "ecog": 9})
    assert "sex:" in str(info.value)
    assert "ecog:" in str(info.value)
    assert len(info.value.problems) == 2


@pytest.mark.parametrize("data", [[], ["primary_site"], "ileum", 42, None, True], ids=repr)
def test_a_document_that_is_not_an_object_is_one_problem(data: Any) -> None:
    assert fields_of(data) == ["(case)"]


def test_a_non_string_key_is_an_unknown_field() -> None:
    assert fields_of({1: "x"}) == ["1"]


def test_labs_must_be_an_object() -> None:
    assert fields_of({"labs": [1]}) == ["labs"]


def test_a_list_field_given_a_single_word_is_refused() -> None:
    assert fields_of({"metastatic_sites": "liver"}) == ["metastatic_sites"]


# --- numeric boundaries -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("age_years", 0),
        ("age_years", 120),
        ("age_years", 119.9),
        ("ki67_percent", 0),
        ("ki67_percent", 100),
        ("ki67_percent", 0.5),
        ("mitoses_per_2mm2", 0),
        ("mitoses_per_2mm2", 10_000),
        ("liver_tumor_burden_percent", 0),
        ("liver_tumor_burden_percent", 100),
        ("liver_resectable_fraction_percent", 100),
        ("months_stable", 0),
        ("months_stable", 240),
        *(("ecog", n) for n in range(5)),
    ],
)
def test_values_at_and_inside_the_bounds_are_accepted(field: str, value: float) -> None:
    case = load_case({field: value})
    assert case.value(field) == value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("age_years", -1),
        ("age_years", 120.5),
        ("age_years", 121),
        ("ki67_percent", -0.1),
        ("ki67_percent", 100.1),
        ("ki67_percent", 140),
        ("mitoses_per_2mm2", -1),
        ("liver_tumor_burden_percent", -5),
        ("liver_tumor_burden_percent", 101),
        ("liver_resectable_fraction_percent", 100.5),
        ("months_stable", -2),
        ("ecog", -1),
        ("ecog", 5),
        ("ecog", 1.5),
        ("ecog", 0.1),
    ],
)
def test_values_outside_the_bounds_are_refused(field: str, value: float) -> None:
    assert fields_of({field: value}) == [field]


def test_ecog_given_as_a_whole_float_is_stored_as_an_int() -> None:
    case = load_case({"ecog": 2.0})
    assert case.ecog == 2
    assert isinstance(case.ecog, int)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ki67_percent", True),
        ("ki67_percent", False),
        ("age_years", True),
        ("ecog", True),
        ("ecog", False),
        ("mitoses_per_2mm2", "3"),
        ("ki67_percent", [5]),
        ("ki67_percent", {"value": 5}),
    ],
)
def test_booleans_and_strings_are_not_numbers(field: str, value: Any) -> None:
    problems = problems_of({field: value})
    assert [p.field for p in problems] == [field]
    assert "number" in problems[0].message


def test_a_boolean_lab_value_is_not_a_number() -> None:
    assert fields_of({"labs": {"platelets_10e9_l": True}}) == ["labs.platelets_10e9_l"]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("field", ["ki67_percent", "mitoses_per_2mm2", "months_stable", "ecog"])
def test_nan_and_infinity_are_refused(field: str, value: float) -> None:
    problems = problems_of({field: value})
    assert [p.field for p in problems] == [field]
    assert "finite" in problems[0].message


@pytest.mark.parametrize("value", [math.nan, math.inf], ids=["nan", "inf"])
def test_nan_and_infinity_are_refused_in_labs(value: float) -> None:
    assert fields_of({"labs": {"bilirubin_mg_dl": value}}) == ["labs.bilirubin_mg_dl"]


@pytest.mark.parametrize(
    ("lab", "value"),
    [("hemoglobin_g_dl", 31), ("platelets_10e9_l", -1), ("creatinine_clearance_ml_min", 301)],
)
def test_impossible_lab_values_are_refused(lab: str, value: float) -> None:
    assert fields_of({"labs": {lab: value}}) == [f"labs.{lab}"]


# --- flags and words ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["yes", "no", "true", 1, 0])
def test_flags_take_only_true_or_false(value: Any) -> None:
    problems = problems_of({"pregnant": value})
    assert [p.field for p in problems] == ["pregnant"]
    assert "true or false" in problems[0].message


@pytest.mark.parametrize("value", [" pancreas", "pancreatic", "pancreas_", 1, None])
def test_words_must_match_the_contract_list(value: Any) -> None:
    if value is None:
        assert load_case({"primary_site": value}).primary_site is None
    else:
        assert fields_of({"primary_site": value}) == ["primary_site"]


@pytest.mark.parametrize(("field", "value"), [("primary_site", "PANCREAS"), ("grade", "G2")])
def test_a_contract_word_in_capitals_is_the_word(field: str, value: str) -> None:
    assert load_case({field: value}).value(field) == value.lower()


def test_a_near_miss_gets_a_did_you_mean() -> None:
    (field_problem,) = problems_of({"ki67": 8})
    assert "did you mean ki67_percent?" in field_problem.message
    (word_problem,) = problems_of({"primary_site": "sigmoid"})
    assert "did you mean sigmoid_colon?" in word_problem.message


def test_the_problem_for_a_wrong_word_lists_the_allowed_words() -> None:
    (problem,) = problems_of({"sstr_imaging": "weak"})
    assert "positive" in problem.message
    assert "not_done" in problem.message


# --- cross-field consistency ------------------------------------------------------------------


def test_progressed_on_must_be_within_prior_treatments() -> None:
    data = {
        "prior_treatments": ["somatostatin_analog"],
        "progressed_on": ["somatostatin_analog", "prrt"],
    }
    assert fields_of(data) == ["progressed_on[1]"]


def test_progressed_on_without_prior_treatments_is_accepted() -> None:
    case = load_case({"progressed_on": ["prrt"], "disease_status": "progressive"})
    assert case.progressed_on is not None


def test_progressed_on_conflicts_with_newly_diagnosed() -> None:
    data = {"disease_status": "newly_diagnosed", "progressed_on": ["everolimus"]}
    assert fields_of(data) == ["progressed_on"]


def test_pancreas_region_needs_a_pancreatic_primary() -> None:
    assert fields_of({"primary_site": "ileum", "pancreas_region": "head"}) == ["pancreas_region"]
    assert load_case({"pancreas_region": "head"}).pancreas_region is not None
    assert load_case({"primary_site": "pancreas", "pancreas_region": "head"}).pancreas_region


def test_a_pregnant_man_is_refused() -> None:
    assert fields_of({"pregnant": True, "sex": "male"}) == ["pregnant"]
    assert load_case({"pregnant": False, "sex": "male"}).pregnant is False


# --- parse_document -------------------------------------------------------------------------


def test_yaml_reads_yes_and_no_as_words_yaml_1_2() -> None:
    assert parse_document("liver_resectable: no\npregnant: yes\nx: on\n") == {
        "liver_resectable": "no",
        "pregnant": "yes",
        "x": "on",
    }


def test_unquoted_no_is_accepted_as_liver_resectable_no() -> None:
    case = load_case(parse_document("liver_resectable: no\n"))
    assert case.liver_resectable is not None
    assert case.liver_resectable.value == "no"


@pytest.mark.parametrize("text", ["pregnant: true", "pregnant: True", "pregnant: TRUE"])
def test_yaml_true_spellings_are_booleans(text: str) -> None:
    assert parse_document(text) == {"pregnant": True}


def test_json_and_yaml_give_the_same_case() -> None:
    from_json = parse_document('{"primary_site": "ileum", "metastatic_sites": ["liver"]}')
    from_yaml = parse_document("primary_site: ileum\nmetastatic_sites:\n  - liver\n")
    assert from_json == from_yaml


@pytest.mark.parametrize(
    "text",
    ["a: 1\na: 2\n", '{"a": 1, "a": 2}', "labs:\n  x: 1\n  x: 2\n", '{"labs": {"x": 1, "x": 2}}'],
    ids=["yaml", "json", "yaml-nested", "json-nested"],
)
def test_duplicate_keys_are_refused(text: str) -> None:
    with pytest.raises(CaseError) as info:
        parse_document(text, source="dup")
    (problem,) = info.value.problems
    assert problem.field == "dup"
    assert "duplicate key" in problem.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ki67_percent: 021\n", {"ki67_percent": 21}),
        ("age_years: 1:05\n", {"age_years": "1:05"}),
        ("id: 2024-01-05\n", {"id": "2024-01-05"}),
    ],
    ids=["leading-zero-is-decimal", "no-sexagesimal", "no-timestamps"],
)
def test_yaml_numbers_and_dates_follow_yaml_1_2_core(text: str, expected: dict[str, Any]) -> None:
    # YAML 1.1 (PyYAML's default resolvers) reads 021 as octal 17, 1:05 as 65 and an
    # unquoted date as a date; YAML 1.2 core reads 21, the text "1:05" and the text.
    assert parse_document(text) == expected


@pytest.mark.parametrize("value", [10**400, -(10**30), 10**16])
def test_huge_integers_are_a_problem_not_a_crash(value: int) -> None:
    with pytest.raises(CaseError) as err:
        load_case({"ki67_percent": value})
    assert err.value.problems[0].field == "ki67_percent"
