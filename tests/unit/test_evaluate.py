"""evaluate(): three-valued results with residuals and unknown fields; describe() in words."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from netboard.case import Case, load_case
from netboard.conditions import (
    TRUE_CONDITION,
    All,
    AnyOf,
    Compare,
    Condition,
    EligibilityIs,
    Fact,
    Not,
    Planned,
    parse_condition,
)
from netboard.engine.classify import classify
from netboard.engine.evaluate import Context, Result, compare, evaluate, sources
from netboard.engine.explain import describe
from netboard.kb import KnowledgeBase
from netboard.kb.model import FactDef
from netboard.logic import Truth

T, F, U = Truth.TRUE, Truth.FALSE, Truth.UNKNOWN

KI67_LOW = Compare("ki67_percent", "lt", 10)
SSTR_POS = Compare("sstr_imaging", "is", "positive")
ECOG_FIT = Compare("ecog", "le", 2)


def ctx_for(
    kb: KnowledgeBase,
    case: Case | Mapping[str, Any] | None = None,
    *,
    facts: Mapping[str, FactDef] | None = None,
    eligibility: Mapping[str, str] | None = None,
    eligibility_unknown: Mapping[str, frozenset[str]] | None = None,
    planned: frozenset[str] = frozenset(),
) -> Context:
    if case is None:
        case = Case()
    elif not isinstance(case, Case):
        case = load_case(case)
    return Context(
        case=case,
        computed=classify(case, kb).computed,
        facts=kb.facts if facts is None else facts,
        eligibility=dict(eligibility or {}),
        eligibility_unknown=dict(eligibility_unknown or {}),
        planned=planned,
        kb=kb,
    )


def truth(node: Condition, ctx: Context) -> Truth:
    return evaluate(node, ctx).truth


# --- Compare --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (Compare("ki67_percent", "lt", 10), T),
        (Compare("ki67_percent", "lt", 8), F),
        (Compare("ki67_percent", "le", 8), T),
        (Compare("ki67_percent", "le", 7.9), F),
        (Compare("ki67_percent", "gt", 7), T),
        (Compare("ki67_percent", "gt", 8), F),
        (Compare("ki67_percent", "ge", 8), T),
        (Compare("ki67_percent", "ge", 8.1), F),
        (Compare("primary_site", "is", "ileum"), T),
        (Compare("primary_site", "is", "pancreas"), F),
        (Compare("primary_site", "in", ("jejunum", "ileum")), T),
        (Compare("primary_site", "in", ("pancreas",)), F),
        (Compare("metastatic_sites", "has", "liver"), T),
        (Compare("metastatic_sites", "has", "lung"), F),
        (Compare("metastatic_sites", "has_any", ("lung", "bone")), T),
        (Compare("metastatic_sites", "has_any", ("lung", "brain")), F),
        (Compare("primary_resected", "is", False), T),
        (Compare("labs.platelets_10e9_l", "ge", 75), T),
        (Compare("labs.platelets_10e9_l", "lt", 75), F),
        (Compare("grade", "is", "g2"), T),
        (Compare("site_group", "is", "small_intestine"), T),
        (Compare("thoracic_primary", "is", True), F),
    ],
    ids=lambda x: f"{x.field}-{x.op}-{x.value}" if isinstance(x, Compare) else x.name,
)
def test_compare_on_known_values_is_true_or_false(
    kb: KnowledgeBase, node: Compare, expected: Truth
) -> None:
    ctx = ctx_for(
        kb,
        {
            "primary_site": "ileum",
            "ki67_percent": 8,
            "metastatic_sites": ["liver", "bone"],
            "primary_resected": False,
            "labs": {"platelets_10e9_l": 150},
        },
    )
    result = evaluate(node, ctx)
    assert result.truth is expected
    assert result.residual is None
    assert result.unknown == frozenset()


@pytest.mark.parametrize(
    "node",
    [
        Compare("ki67_percent", "lt", 10),
        Compare("sstr_imaging", "is", "positive"),
        Compare("metastatic_sites", "has", "liver"),
        Compare("metastatic_sites", "has_any", ("liver", "bone")),
        Compare("labs.bilirubin_mg_dl", "gt", 3),
    ],
    ids=lambda n: f"{n.field}-{n.op}",
)
def test_compare_on_a_missing_field_is_unknown_with_itself_as_residual(
    kb: KnowledgeBase, node: Compare
) -> None:
    result = evaluate(node, ctx_for(kb))
    assert result == Result(U, node, frozenset({node.field}))


def test_an_empty_list_is_known_and_has_nothing(kb: KnowledgeBase) -> None:
    ctx = ctx_for(kb, {"metastatic_sites": []})
    assert truth(Compare("metastatic_sites", "has", "liver"), ctx) is F


@pytest.mark.parametrize(
    ("op", "value", "operand", "expected"),
    [
        ("is", "a", "a", True),
        ("is", "a", "b", False),
        ("in", "a", ("a", "b"), True),
        ("in", "c", ("a", "b"), False),
        ("lt", 1, 2, True),
        ("lt", 2, 2, False),
        ("le", 2, 2, True),
        ("le", 3, 2, False),
        ("gt", 3, 2, True),
        ("gt", 2, 2, False),
        ("ge", 2, 2, True),
        ("ge", 1, 2, False),
        ("has", ("a", "b"), "b", True),
        ("has", ("a",), "b", False),
        ("has_any", ("a",), ("c", "a"), True),
        ("has_any", (), ("a",), False),
    ],
)
def test_compare_applies_each_operator(op: str, value: Any, operand: Any, expected: bool) -> None:
    assert compare(op, value, operand) is expected


# --- the `known` operator -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "wanted", "expected"),
    [
        ({"ecog": 1}, True, T),
        ({"ecog": 1}, False, F),
        ({}, True, F),
        ({}, False, T),
        ({"ecog": 0}, True, T),
    ],
    ids=[
        "given-known-true",
        "given-known-false",
        "absent-known-true",
        "absent-known-false",
        "zero-is-given",
    ],
)
def test_known_looks_at_presence_and_is_never_unknown(
    kb: KnowledgeBase, fields: dict[str, Any], wanted: bool, expected: Truth
) -> None:
    result = evaluate(Compare("ecog", "known", wanted), ctx_for(kb, fields))
    assert result.truth is expected
    assert result.unknown == frozenset()


def test_known_on_a_computed_field(kb: KnowledgeBase) -> None:
    node = Compare("pregnancy_status", "known", False)
    assert truth(node, ctx_for(kb, {"sex": "female", "age_years": 30})) is T
    assert truth(node, ctx_for(kb, {"sex": "male"})) is F


# --- All / AnyOf / Not ------------------------------------------------------------------------


def test_all_of_true_leaves_is_true(kb: KnowledgeBase) -> None:
    ctx = ctx_for(kb, {"ki67_percent": 2, "sstr_imaging": "positive"})
    assert evaluate(All((KI67_LOW, SSTR_POS)), ctx) == Result(T)


def test_all_with_a_false_leaf_is_false_even_beside_an_unknown(kb: KnowledgeBase) -> None:
    ctx = ctx_for(kb, {"ki67_percent": 30})
    assert evaluate(All((SSTR_POS, KI67_LOW)), ctx) == Result(F)
    assert evaluate(All((KI67_LOW, SSTR_POS)), ctx) == Result(F)


def test_all_with_one_unknown_leaf_has_that_leaf_as_residual(kb: KnowledgeBase) -> None:
    ctx = ctx_for(kb, {"ki67_percent": 2})
    result = evaluate(All((KI67_LOW, SSTR_POS)), ctx)
    assert result == Result(U, SSTR_POS, frozenset({"sstr_imaging"}))


def test_all_with_two_unknown_leaves_keeps_both_in_an_all(kb: KnowledgeBase) -> None:
    ctx = ctx_for(kb, {"ki67_percent": 2})
    result = evaluate(All((SSTR_POS, KI67_LOW, ECOG_FIT)), ctx)
    assert result.truth is U
    assert result.residual == All((SSTR_POS, ECOG_FIT))
    assert result.unknown == frozenset({"sstr_imaging", "ecog"})


def test_empty_all_is_true_and_empty_any_is_false(kb: KnowledgeBase) -> None:
    ctx = ctx_for(kb)
    assert evaluate(All(()), ctx) == Result(T)
    assert evaluate(TRUE_CONDITION, ctx) == Result(T)
    assert evaluate(AnyOf(()), ctx) == Result(F)


def test_any_with_a_true_leaf_is_true_even_beside_an_unknown(kb: KnowledgeBase) -> None:
    ctx = ctx_for(kb, {"ki67_percent": 2})
    assert evaluate(AnyOf((SSTR_POS, KI67_LOW)), ctx) == Result(T)


def test_any_of_false_leaves_is_false(kb: KnowledgeBase) -> None:
    ctx = ctx_for(kb, {"ki67_percent": 30, "sstr_imaging": "negative"})
    assert evaluate(AnyOf((SSTR_POS, KI67_LOW)), ctx) == Result(F)


def test_any_with_false_and_unknown_leaves_has_the_unknown_as_residual(
    kb: KnowledgeBase,
) -> None:
    ctx = ctx_for(kb, {"ki67_percent": 30})
    result = evaluate(AnyOf((KI67_LOW, SSTR_POS)), ctx)
    assert result == Result(U, SSTR_POS, frozenset({"sstr_imaging"}))


def test_any_with_two_unknown_leaves_keeps_both_in_an_any(kb: KnowledgeBase) -> None:
    result = evaluate(AnyOf((SSTR_POS, ECOG_FIT)), ctx_for(kb))
    assert result == Result(U, AnyOf((SSTR_POS, ECOG_FIT)), frozenset({"sstr_imaging", "ecog"}))


def test_nested_residual_keeps_only_the_undecided_parts(kb: KnowledgeBase) -> None:
    ctx = ctx_for(kb, {"ki67_percent": 2, "sstr_imaging": "negative"})
    node = All((KI67_LOW, AnyOf((SSTR_POS, ECOG_FIT))))
    result = evaluate(node, ctx)
    assert result == Result(U, ECOG_FIT, frozenset({"ecog"}))


@pytest.mark.parametrize(("inner", "outer"), [(T, F), (F, T)])
def test_not_flips_true_and_false(kb: KnowledgeBase, inner: Truth, outer: Truth) -> None:
    ctx = ctx_for(kb, {"ki67_percent": 2 if inner is T else 30})
    assert evaluate(Not(KI67_LOW), ctx) == Result(outer)


def test_not_of_unknown_is_unknown_with_negated_residual(kb: KnowledgeBase) -> None:
    result = evaluate(Not(SSTR_POS), ctx_for(kb))
    assert result == Result(U, Not(SSTR_POS), frozenset({"sstr_imaging"}))


def test_kleene_tables_hold_for_all_and_any(kb: KnowledgeBase) -> None:
    # One leaf per truth value, on separate fields so that they are independent.
    ctx = ctx_for(kb, {"ki67_percent": 2, "sstr_imaging": "negative"})
    leaf = {T: KI67_LOW, F: SSTR_POS, U: ECOG_FIT}
    for a in (T, F, U):
        for b in (T, F, U):
            expected_and = F if F in (a, b) else U if U in (a, b) else T
            expected_or = T if T in (a, b) else U if U in (a, b) else F
            assert truth(All((leaf[a], leaf[b])), ctx) is expected_and, (a, b)
            assert truth(AnyOf((leaf[a], leaf[b])), ctx) is expected_or, (a, b)


# --- computed fields map back to case fields ----------------------------------------------------


def test_unknown_grade_names_ki67_mitoses_and_grade(kb: KnowledgeBase) -> None:
    result = evaluate(Compare("grade", "in", ("g1", "g2")), ctx_for(kb, {"primary_site": "ileum"}))
    assert result.truth is U
    assert result.unknown == frozenset({"ki67_percent", "mitoses_per_2mm2", "grade"})


def test_lung_grade_unknown_with_ki67_given_names_only_the_missing_sources(
    kb: KnowledgeBase,
) -> None:
    ctx = ctx_for(kb, {"primary_site": "lung", "ki67_percent": 30})
    result = evaluate(Compare("grade", "is", "g1"), ctx)
    assert result.truth is U
    assert result.unknown == frozenset({"mitoses_per_2mm2", "grade"})


def test_derived_grade_is_known_without_a_stated_grade(kb: KnowledgeBase) -> None:
    assert (
        truth(
            Compare("grade", "is", "g1"), ctx_for(kb, {"primary_site": "ileum", "ki67_percent": 1})
        )
        is T
    )


def test_unknown_site_group_names_primary_site(kb: KnowledgeBase) -> None:
    result = evaluate(Compare("site_group", "is", "pancreas"), ctx_for(kb))
    assert result.unknown == frozenset({"primary_site"})


def test_unknown_pregnancy_status_names_pregnant(kb: KnowledgeBase) -> None:
    ctx = ctx_for(kb, {"sex": "female", "age_years": 30})
    result = evaluate(Compare("pregnancy_status", "is", "not_pregnant"), ctx)
    assert result == Result(
        U, Compare("pregnancy_status", "is", "not_pregnant"), frozenset({"pregnant"})
    )


def test_unknown_who_2019_with_grade_known_names_differentiation(kb: KnowledgeBase) -> None:
    ctx = ctx_for(kb, {"grade": "g3", "ki67_percent": 30, "mitoses_per_2mm2": 25})
    result = evaluate(Compare("who_2019", "is", "net_g3"), ctx)
    assert result.truth is U
    assert result.unknown == frozenset({"differentiation"})


def test_sources_of_a_plain_field_is_the_field(kb: KnowledgeBase) -> None:
    assert sources("ecog", ctx_for(kb)) == frozenset({"ecog"})
    assert sources("labs.albumin_g_dl", ctx_for(kb)) == frozenset({"labs.albumin_g_dl"})


def test_unknown_treatment_history_names_prior_treatments(kb: KnowledgeBase) -> None:
    ctx = ctx_for(kb, {"disease_status": "progressive"})
    result = evaluate(Compare("treatments_received", "has", "prrt"), ctx)
    assert result.unknown == frozenset({"prior_treatments"})


# --- facts ----------------------------------------------------------------------------------


class CountingFacts(dict[str, FactDef]):
    """A facts mapping that counts look-ups, to see memoisation."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.reads = 0

    def __getitem__(self, key: str) -> FactDef:
        self.reads += 1
        return super().__getitem__(key)


def test_a_fact_evaluates_its_definition(kb: KnowledgeBase) -> None:
    assert truth(Fact("nec"), ctx_for(kb, {"differentiation": "poor"})) is T
    assert truth(Fact("nec"), ctx_for(kb, {"differentiation": "well"})) is F


def test_an_unknown_fact_keeps_its_name_as_residual(kb: KnowledgeBase) -> None:
    facts = {"low_ki67": FactDef(name="low_ki67", label="Ki-67 low", when=KI67_LOW)}
    result = evaluate(Fact("low_ki67"), ctx_for(kb, facts=facts))
    assert result == Result(U, Fact("low_ki67"), frozenset({"ki67_percent"}))


def test_a_fact_is_evaluated_once_per_context(kb: KnowledgeBase) -> None:
    facts = CountingFacts({"low_ki67": FactDef(name="low_ki67", label="x", when=KI67_LOW)})
    ctx = ctx_for(kb, {"ki67_percent": 2}, facts=facts)
    first = evaluate(Fact("low_ki67"), ctx)
    second = evaluate(All((Fact("low_ki67"), Not(Fact("low_ki67")))), ctx)
    assert first.truth is T
    assert second.truth is F
    assert facts.reads == 1
    assert ctx._memo["low_ki67"] is first


def test_memoised_unknown_fact_is_reused(kb: KnowledgeBase) -> None:
    facts = CountingFacts({"fit": FactDef(name="fit", label="fit", when=ECOG_FIT)})
    ctx = ctx_for(kb, facts=facts)
    a = evaluate(Fact("fit"), ctx)
    b = evaluate(Fact("fit"), ctx)
    assert a is b
    assert facts.reads == 1


def test_facts_are_not_shared_between_contexts(kb: KnowledgeBase) -> None:
    facts = {"low_ki67": FactDef(name="low_ki67", label="x", when=KI67_LOW)}
    assert truth(Fact("low_ki67"), ctx_for(kb, {"ki67_percent": 2}, facts=facts)) is T
    assert truth(Fact("low_ki67"), ctx_for(kb, {"ki67_percent": 40}, facts=facts)) is F


def test_nested_facts_resolve_through_the_knowledge_base(kb: KnowledgeBase) -> None:
    ctx = ctx_for(kb, {"primary_site": "ileum", "ki67_percent": 2})
    assert truth(Fact("low_grade"), ctx) is T
    assert truth(Fact("high_grade"), ctx) is F


# --- eligibility and plan ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "asked", "expected"),
    [
        ("eligible", "eligible", T),
        ("eligible", "not_eligible", F),
        ("not_eligible", "not_eligible", T),
        ("not_eligible", "eligible", F),
        ("undetermined", "undetermined", T),
        ("eligible", "undetermined", F),
        (None, "undetermined", F),
    ],
)
def test_eligibility_is_true_or_false_when_decided(
    kb: KnowledgeBase, status: str | None, asked: str, expected: Truth
) -> None:
    eligibility = {} if status is None else {"prrt": status}
    result = evaluate(EligibilityIs("prrt", asked), ctx_for(kb, eligibility=eligibility))
    assert result == Result(expected)


@pytest.mark.parametrize("status", ["undetermined", None])
@pytest.mark.parametrize("asked", ["eligible", "not_eligible"])
def test_undetermined_eligibility_is_unknown_with_its_fields(
    kb: KnowledgeBase, status: str | None, asked: str
) -> None:
    eligibility = {} if status is None else {"prrt": status}
    ctx = ctx_for(
        kb,
        eligibility=eligibility,
        eligibility_unknown={"prrt": frozenset({"sstr_imaging", "ecog"})},
    )
    node = EligibilityIs("prrt", asked)
    assert evaluate(node, ctx) == Result(U, node, frozenset({"sstr_imaging", "ecog"}))


def test_planned_is_true_when_any_code_is_planned(kb: KnowledgeBase) -> None:
    ctx = ctx_for(kb, planned=frozenset({"tace", "somatostatin_analog"}))
    assert evaluate(Planned(("tae", "tace")), ctx) == Result(T)
    assert evaluate(Planned(("prrt",)), ctx) == Result(F)


def test_planned_is_false_not_unknown_on_an_empty_plan(kb: KnowledgeBase) -> None:
    assert evaluate(Planned(("prrt",)), ctx_for(kb)) == Result(F)


# --- describe -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "text"),
    [
        (Compare("ki67_percent", "lt", 10), "Ki-67 index < 10%"),
        (Compare("ki67_percent", "ge", 2.5), "Ki-67 index ≥ 2.5%"),
        (Compare("sstr_imaging", "is", "positive"), "SSTR imaging is positive"),
        (Compare("grade", "in", ("g1", "g2")), "grade is G1 or G2"),
        (Compare("metastatic_sites", "has", "liver"), "metastatic sites include liver"),
        (
            Compare("metastatic_sites", "has_any", ("bone", "lung")),
            "metastatic sites include bone or lung",
        ),
        (Compare("ecog", "known", True), "ECOG performance status is stated"),
        (Compare("ecog", "known", False), "ECOG performance status is not stated"),
        (
            EligibilityIs("liver_transplant", "not_eligible"),
            "liver transplant eligibility is not eligible",
        ),
        (
            Planned(("tae", "tace")),
            "the plan includes bland transarterial embolization (TAE) or "
            "transarterial chemoembolization (TACE)",
        ),
        (All(()), "always"),
    ],
    ids=[
        "lt",
        "ge",
        "is",
        "in",
        "has",
        "has_any",
        "known",
        "not-known",
        "eligibility",
        "planned",
        "empty-all",
    ],
)
def test_describe_reads_each_leaf(kb: KnowledgeBase, node: Condition, text: str) -> None:
    assert describe(node, kb) == text


def test_describe_uses_a_fact_label(kb: KnowledgeBase) -> None:
    assert describe(Fact("nec"), kb) == kb.facts["nec"].label


def test_describe_negation(kb: KnowledgeBase) -> None:
    assert describe(Not(Fact("nec")), kb) == f"not ({kb.facts['nec'].label})"


def test_describe_joins_all_with_and_and_any_with_or(kb: KnowledgeBase) -> None:
    text = describe(All((SSTR_POS, AnyOf((KI67_LOW, ECOG_FIT)))), kb)
    assert text == "SSTR imaging is positive and (Ki-67 index < 10% or ECOG performance status ≤ 2)"
    assert describe(AnyOf((SSTR_POS, KI67_LOW)), kb) == (
        "SSTR imaging is positive or Ki-67 index < 10%"
    )


def test_describe_does_not_bracket_a_single_item(kb: KnowledgeBase) -> None:
    assert describe(All((AnyOf((SSTR_POS,)),)), kb) == "SSTR imaging is positive"


def test_describe_reads_every_condition_of_the_knowledge_base(kb: KnowledgeBase) -> None:
    conditions: list[tuple[str, Condition]] = [
        *((f"rule {r.id}", r.when) for r in kb.rules),
        *((f"alert {a.id}", a.when) for a in kb.alerts),
        *((f"fact {f.name}", f.when) for f in kb.facts.values()),
        *((f"{e.name}: {c.name}", c.when) for e in kb.eligibility for c in e.criteria),
    ]
    for where, cond in conditions:
        text = describe(cond, kb)
        assert text.strip(), where
        assert "Compare(" not in text, f"{where}: {text}"
        assert "None" not in text, f"{where}: {text}"


def test_parse_then_describe_round_trip(kb: KnowledgeBase) -> None:
    node = parse_condition(
        {"all": [{"field": "sstr_imaging", "is": "positive"}, {"not": {"fact": "nec"}}]}
    )
    assert describe(node, kb) == f"SSTR imaging is positive and not ({kb.facts['nec'].label})"
