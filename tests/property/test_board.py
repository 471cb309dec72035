"""Properties of the board answer (contract v2 ``plan``, ``presumptions``, ``what_if``).

Over the same generated cases as the safety invariants (every field independently present or
absent, so most cases leave something out and the board presumes it):

- a presumption only fills what the case leaves out: a stated value is never presumed over;
- no what-if uses a value that the stated facts make implausible (an insulinoma of the ileum);
- stating the presumed value leaves the plan as it was (the plan really rests on it);
- the share of generated cases that reach each state is measured, so no property holds
  vacuously.

That the plan never holds a code a stated fact rules out is a property per guard, in
``test_guards.py``; that the same input gives the same bytes is invariant 10.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import event, given

from netboard.case import Case, load_case
from netboard.engine.board import board, presume
from netboard.engine.classify import computed_fields
from netboard.engine.evaluate import Context, implausible
from netboard.fields import Choice, ChoiceList, flatten, registry
from property.test_invariants import LIGHT_SETTINGS, cases, kb

#: Share of generated cases that must carry at least one presumption (and one what-if). The
#: draw is derandomised, so the share is the same on every run (0.63 when set); over eight
#: random seeds it ranged 0.56-0.62, and one random CI draw gave 0.485, hence a fixed draw and
#: a floor with room below what is measured.
MIN_SHARE = 0.4


def plan_of(case: Case) -> list[tuple[int, tuple[str, ...], str]]:
    return [(s.order, tuple(map(str, s.codes)), s.status.value) for s in board(case, kb).plan]


def stated_paths(data: Mapping[str, Any]) -> set[str]:
    return {path for path, value in flatten(data).items() if value is not None}


@LIGHT_SETTINGS
@given(data=cases())
def test_a_stated_value_is_never_presumed_over(data: dict[str, Any]) -> None:
    case = load_case(data)
    b = board(case, kb)
    event(f"presumptions: {'some' if b.presumptions else 'none'}")
    stated = stated_paths(data)
    for p in b.presumptions:
        assert p.field not in stated, (p.field, p.value, data)
    presumed = {p.field for p in b.presumptions}
    for w in b.what_if:
        assert w.field in presumed, (w.field, w.value)


@LIGHT_SETTINGS
@given(data=cases())
def test_no_what_if_uses_an_implausible_value(data: dict[str, Any]) -> None:
    case = load_case(data)
    ctx = Context(case=case, computed=computed_fields(case, kb), facts=kb.facts, kb=kb)
    b = board(case, kb)
    event(f"what-ifs: {'some' if b.what_if else 'none'}")
    for w in b.what_if:
        spec = registry().spec(w.field)
        if isinstance(spec, Choice | ChoiceList):
            values = w.value if isinstance(w.value, list | tuple) else [w.value]
            for v in values:
                assert not implausible(ctx, w.field, str(v)), (w.field, v, data)


@LIGHT_SETTINGS
@given(data=cases())
def test_stating_the_presumed_value_leaves_the_plan_unchanged(data: dict[str, Any]) -> None:
    case = load_case(data)
    _, applied, _ = presume(case, kb, {})
    event(f"presumptions applied: {min(len(applied), 3)}{'+' if len(applied) >= 3 else ''}")
    before = plan_of(case)
    for p in applied:
        stated = case.with_values({p.d.field: p.value})
        assert plan_of(stated) == before, (p.d.field, p.value, data)
    if applied:
        everything = case.with_values({p.d.field: p.value for p in applied})
        assert plan_of(everything) == before, data


def test_generated_cases_reach_presumptions_and_what_ifs() -> None:
    """The properties above are not vacuous: most generated cases leave something out that
    the plan depends on, and most of those get a what-if."""
    from hypothesis import HealthCheck, settings
    from hypothesis import strategies as st

    seen = {"cases": 0, "presumed": 0, "what_if": 0}

    @settings(
        max_examples=200,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(data=st.data())
    def draw(data: st.DataObject) -> None:
        b = board(load_case(data.draw(cases())), kb)
        seen["cases"] += 1
        seen["presumed"] += bool(b.presumptions)
        seen["what_if"] += bool(b.what_if)

    draw()
    assert seen["presumed"] / seen["cases"] >= MIN_SHARE, seen
    assert seen["what_if"] / seen["cases"] >= MIN_SHARE, seen


@LIGHT_SETTINGS
@given(data=cases())
def test_skipping_settled_fields_changes_nothing(data: dict[str, Any]) -> None:
    """The shortcut that skips the alternatives of presumed fields the stated case settles
    (``board(..., strict=...)``) gives the same board answer as deciding every alternative."""
    from netboard.engine.recommend import decide

    case = load_case(data)
    assert board(case, kb, strict=decide(case, kb)) == board(case, kb), data


@LIGHT_SETTINGS
@given(data=cases())
def test_deciding_only_what_changed_gives_the_full_decision(data: dict[str, Any]) -> None:
    """The board decides the presumed case from the stated case's decision, and each what-if
    from the presumed case's decision, re-deciding only what reads a changed field (facts
    included): the options are those of a decision from scratch."""
    from netboard.engine.board import _alternatives, options
    from netboard.engine.recommend import decide

    case = load_case(data)
    presumed, applied, _ = presume(case, kb, {})
    full = options(presumed, kb)
    incremental = options(presumed, kb, (case, decide(case, kb)))
    assert incremental[0] == full[0], data
    for p in applied[:3]:
        for value, _words, _bands in _alternatives(presumed, kb, p)[:2]:
            alt, _, _ = presume(case, kb, {}, {p.d.field: value}, applied)
            assert options(alt, kb, (presumed, full[1]))[0] == options(alt, kb)[0], (
                p.d.field,
                value,
                data,
            )
