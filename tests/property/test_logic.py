"""Kleene logic laws (exhaustive) and monotonicity of ``evaluate`` (generated conditions).

Monotonicity is what makes "unknown" safe: learning less about a patient can turn a decided
condition into UNKNOWN, never into the opposite answer.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netboard.case import Case, load_case
from netboard.conditions import All, AnyOf, Compare, Condition, Not
from netboard.engine.evaluate import Context, evaluate
from netboard.logic import Truth, and_, not_, or_

T, U, F = Truth.TRUE, Truth.UNKNOWN, Truth.FALSE
VALUES = (F, U, T)
PAIRS = list(itertools.product(VALUES, repeat=2))
TRIPLES = list(itertools.product(VALUES, repeat=3))

EXAMPLES = int(os.environ.get("NETBOARD_HYPOTHESIS_EXAMPLES", "1000"))

# --- Kleene laws, over every truth value ------------------------------------------------------


def test_truth_tables_are_kleene_min_and_max() -> None:
    # With FALSE < UNKNOWN < TRUE, Kleene AND is the minimum, OR the maximum.
    for xs in itertools.chain([()], ((a,) for a in VALUES), PAIRS, TRIPLES):
        assert and_(xs) is min(xs, key=lambda x: x.value, default=T), xs
        assert or_(xs) is max(xs, key=lambda x: x.value, default=F), xs
    assert (not_(T), not_(U), not_(F)) == (F, U, T)


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_de_morgan(a: Truth, b: Truth) -> None:
    assert not_(and_([a, b])) is or_([not_(a), not_(b)])
    assert not_(or_([a, b])) is and_([not_(a), not_(b)])


@pytest.mark.parametrize("xs", TRIPLES)
def test_de_morgan_n_ary(xs: tuple[Truth, ...]) -> None:
    assert not_(and_(xs)) is or_([not_(x) for x in xs])
    assert not_(or_(xs)) is and_([not_(x) for x in xs])


@pytest.mark.parametrize("a", VALUES)
def test_identity_and_double_negation(a: Truth) -> None:
    assert and_([a, T]) is a
    assert and_([T, a]) is a
    assert or_([a, F]) is a
    assert or_([F, a]) is a
    assert and_([a]) is a
    assert or_([a]) is a
    assert not_(not_(a)) is a
    # Annihilators.
    assert and_([a, F]) is F
    assert or_([a, T]) is T


def test_empty_conjunction_and_disjunction_are_the_identities() -> None:
    assert and_([]) is T
    assert or_([]) is F


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_absorption(a: Truth, b: Truth) -> None:
    assert and_([a, or_([a, b])]) is a
    assert or_([a, and_([a, b])]) is a


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_commutativity(a: Truth, b: Truth) -> None:
    assert and_([a, b]) is and_([b, a])
    assert or_([a, b]) is or_([b, a])


@pytest.mark.parametrize(("a", "b", "c"), TRIPLES)
def test_associativity_and_distributivity(a: Truth, b: Truth, c: Truth) -> None:
    assert and_([a, and_([b, c])]) is and_([and_([a, b]), c]) is and_([a, b, c])
    assert or_([a, or_([b, c])]) is or_([or_([a, b]), c]) is or_([a, b, c])
    assert and_([a, or_([b, c])]) is or_([and_([a, b]), and_([a, c])])
    assert or_([a, and_([b, c])]) is and_([or_([a, b]), or_([a, c])])


@pytest.mark.parametrize("a", VALUES)
def test_idempotence_and_no_excluded_middle_for_unknown(a: Truth) -> None:
    assert and_([a, a]) is a
    assert or_([a, a]) is a
    # Kleene logic has no law of excluded middle: "x or not x" is UNKNOWN when x is.
    assert or_([a, not_(a)]) is (U if a is U else T)
    assert and_([a, not_(a)]) is (U if a is U else F)


def test_truth_refuses_python_truthiness() -> None:
    for a in VALUES:
        with pytest.raises(TypeError):
            bool(a)


# --- monotonicity of evaluate -----------------------------------------------------------------

SITES = ("pancreas", "ileum", "rectum", "lung", "unknown_primary")
SPREAD = ("liver", "regional_lymph_nodes", "bone", "peritoneum")
COMORBIDITIES = ("diabetes", "cirrhosis", "biliary_enteric_anastomosis")

#: Case fields and the values they may take (None: absent), each drawn in one step.
FIELD_VALUES: dict[str, list[Any]] = {
    "ki67_percent": [0, 2.9, 3, 10, 20, 20.1, 55, 80],
    "ecog": [0, 1, 2, 3, 4],
    "age_years": [30, 54.9, 55, 60, 61, 80],
    "sstr_imaging": ["positive", "negative", "not_done"],
    "primary_site": list(SITES),
    "primary_resected": [False, True],
    "metastatic_sites": [list(c) for n in range(4) for c in itertools.combinations(SPREAD, n)],
    "comorbidities": [list(c) for n in range(3) for c in itertools.combinations(COMORBIDITIES, n)],
    "labs.platelets_10e9_l": [50, 74.9, 75, 150],
    "labs.creatinine_clearance_ml_min": [20, 30, 49.9, 50, 90],
}
FIELD_STRATEGIES = {path: st.sampled_from([None, *values]) for path, values in FIELD_VALUES.items()}
NUMERIC = {
    "ki67_percent": [3, 10, 20, 55],
    "ecog": [1, 2, 3],
    "age_years": [55, 60],
    "labs.platelets_10e9_l": [75, 100],
    "labs.creatinine_clearance_ml_min": [30, 50],
}
CHOICES = {
    "sstr_imaging": ("positive", "negative", "not_done"),
    "primary_site": SITES,
    "primary_resected": (True, False),
}
LISTS = {"metastatic_sites": SPREAD, "comorbidities": COMORBIDITIES}


def _subsets(values: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return [c for n in range(1, len(values) + 1) for c in itertools.combinations(values, n)]


#: Every comparison over the fields above, drawn in one step.
COMPARES = st.sampled_from(
    [Compare(f, op, x) for f, xs in NUMERIC.items() for op in ("lt", "le", "gt", "ge") for x in xs]
    + [Compare(f, "is", x) for f, xs in CHOICES.items() for x in xs]
    + [Compare(f, "in", xs) for f, values in CHOICES.items() for xs in _subsets(values)]
    + [Compare(f, "has", x) for f, xs in LISTS.items() for x in xs]
    + [Compare(f, "has_any", xs) for f, values in LISTS.items() for xs in _subsets(values)]
)
CONDITIONS: st.SearchStrategy[Condition] = st.recursive(
    COMPARES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: All(tuple(xs))),
        st.lists(inner, max_size=3).map(lambda xs: AnyOf(tuple(xs))),
        inner.map(Not),
    ),
    max_leaves=8,
)


@st.composite
def partial_cases(draw: st.DrawFn) -> dict[str, Any]:
    """A case over the fields above, each present or absent."""
    data: dict[str, Any] = {}
    for path, values in FIELD_STRATEGIES.items():
        value = draw(values)
        if value is not None and path.startswith("labs."):
            data.setdefault("labs", {})[path[5:]] = value
        elif value is not None:
            data[path] = value
    return data


def remove(case: Case, path: str) -> Case:
    return case.with_values({path: None})


def fields_of(node: Condition) -> set[str]:
    if isinstance(node, Compare):
        return {node.field}
    if isinstance(node, Not):
        return fields_of(node.item)
    assert isinstance(node, All | AnyOf)
    return set().union(*(fields_of(x) for x in node.items))


def run(node: Condition, case: Case) -> Any:
    return evaluate(node, Context(case=case, computed={}, facts={}))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(node=CONDITIONS, data=partial_cases())
def test_evaluate_is_monotone_in_the_data(node: Condition, data: dict[str, Any]) -> None:
    case = load_case(data)
    present = [p for p in FIELD_VALUES if case.value(p) is not None]
    full = run(node, case)
    if full.truth is U:
        # An open answer names the missing fields that would decide it, and only those.
        assert full.unknown, full
        assert full.unknown <= set(FIELD_VALUES) - set(present), full
    for path in present:
        less = run(node, remove(case, path))
        if full.truth is not U:
            assert less.truth in (full.truth, U), (path, full, less)
        if path not in fields_of(node):
            assert less == full, (path, full, less)
