"""Safety properties generated from the knowledge base: one per guard, over cases that reach it.

Every not_recommended or contraindicated rule guards its code: while it holds, no positive
recommendation of that code may come from a rule that does not name the guard in its
``passes``. The cases are generated to make the guard hold (``reach``), and the engine decides
whether it really does: the share reached is asserted, so a property cannot pass vacuously.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from netboard.conditions import EligibilityIs
from netboard.engine.recommend import recommend
from netboard.kb import load_kb
from netboard.kb.model import Rule
from property.reach import holds, reach

KB = load_kb()
RULES = {r.id: r for r in KB.rules}
GUARDS = [r for r in KB.rules if not r.status.positive]
#: Seeds tried per guard when measuring how often generation reaches it.
TRIES = 40
#: The share of generated cases that must reach each guard.
MIN_REACH = 0.5


def reached(guard: Rule, rnd: random.Random) -> tuple[object, object] | None:
    """A generated case that makes ``guard`` hold, with its answer; None when it does not."""
    case = reach(guard.when, True, KB, rnd)
    if case is None:
        return None
    answer = recommend(case, kb=KB)
    eligibility = {e.name.value: e.status.value for e in answer.eligibility}
    return (case, answer) if holds(guard.when, case, KB, eligibility) else None


def violations(guard: Rule, answer: object) -> list[str]:
    out = []
    for r in answer.recommendations:  # type: ignore[attr-defined]
        if r.code.value not in guard.codes or not r.status.positive:
            continue
        if guard.scope != "all" and r.phase is not guard.phase:
            continue
        if guard.id in RULES[r.rule_id].passes:
            continue
        out.append(f"{r.code.value} {r.status.value} by {r.rule_id}")
    return out


@pytest.mark.parametrize("guard", GUARDS, ids=[g.id for g in GUARDS])
def test_generation_reaches_the_guarded_state(guard: Rule) -> None:
    hits = sum(reached(guard, random.Random(seed)) is not None for seed in range(TRIES))
    assert hits / TRIES >= MIN_REACH, f"{guard.id}: reached in {hits} of {TRIES} generated cases"


@pytest.mark.parametrize("guard", GUARDS, ids=[g.id for g in GUARDS])
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(rnd=st.randoms(use_true_random=False))
def test_no_positive_recommendation_while_its_guard_holds(guard: Rule, rnd: random.Random) -> None:
    hit = reached(guard, rnd)
    assume(hit is not None)
    assert hit is not None
    case, answer = hit
    assert not violations(guard, answer), (guard.id, case, violations(guard, answer))
    assert not plan_violations(guard, answer), (guard.id, case, plan_violations(guard, answer))


def plan_violations(guard: Rule, answer: object) -> list[str]:
    """Codes the board's plan holds while a stated fact makes them not advised: the plan is
    built on presumptions that only fill what the case leaves out, so the guard still holds."""
    passing = {
        r.code.value
        for r in answer.recommendations  # type: ignore[attr-defined]
        if r.status.positive and guard.id in RULES[r.rule_id].passes
    }
    return [
        f"plan step {step.order} holds {code}"
        for step in answer.plan  # type: ignore[attr-defined]
        for code in map(str, step.codes)
        if code in guard.codes
        and (guard.scope == "all" or step.phase is guard.phase)
        and code not in passing
    ]


#: Pre-treatment checks that decide whether PRRT can be given now (issue 11, defect 4).
PRRT_GATES = ["progression.no_prrt_renal_impairment", "progression.no_prrt_low_blood_counts"]


@pytest.mark.parametrize("gate", PRRT_GATES)
def test_prrt_is_never_eligible_while_a_kidney_or_marrow_gate_fails(gate: str) -> None:
    hits = 0
    for seed in range(TRIES):
        hit = reached(RULES[gate], random.Random(seed))
        if hit is None:
            continue
        hits += 1
        case, answer = hit
        prrt = next(e for e in answer.eligibility if e.name.value == "prrt")  # type: ignore[attr-defined]
        assert prrt.status.value != "eligible", (case, prrt)
        assert not any(
            "prrt" in map(str, step.codes)
            for step in answer.plan  # type: ignore[attr-defined]
        ), case
    assert hits / TRIES >= MIN_REACH, f"{gate}: reached in {hits} of {TRIES} generated cases"


MILAN = EligibilityIs("liver_transplant", "eligible")


def test_generation_reaches_milan_net_eligibility() -> None:
    hits = 0
    for seed in range(TRIES):
        case = reach(MILAN, True, KB, random.Random(seed))
        if case is None:
            continue
        answer = recommend(case, kb=KB)
        hits += any(
            e.name.value == "liver_transplant" and e.status.value == "eligible"
            for e in answer.eligibility
        )
    assert hits / TRIES >= MIN_REACH, f"Milan-NET eligible in {hits} of {TRIES} generated cases"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(rnd=st.randoms(use_true_random=False), want=st.booleans())
def test_transplant_only_when_every_milan_criterion_is_met(rnd: random.Random, want: bool) -> None:
    case = reach(MILAN, want, KB, rnd)
    assume(case is not None)
    assert case is not None
    answer = recommend(case, kb=KB)
    transplant = next(e for e in answer.eligibility if e.name.value == "liver_transplant")
    offered = [
        r
        for r in answer.recommendations
        if r.code.value == "liver_transplant" and r.status.positive and r.applies_if is None
    ]
    if offered:
        assert transplant.status.value == "eligible", transplant
        assert all(c.met is True for c in transplant.criteria), transplant.criteria
