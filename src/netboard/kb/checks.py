"""Cross-file checks of a parsed knowledge base: references, fields, facts and codes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from netboard import vocab as v
from netboard.conditions import (
    LIST_OPERATORS,
    NUMERIC_OPERATORS,
    PRESENCE_OPERATORS,
    All,
    Compare,
    Condition,
    EligibilityIs,
    Fact,
    Planned,
    walk,
)
from netboard.errors import Problem
from netboard.fields import Choice, ChoiceList, Flag, Number, Spec, Text, registry
from netboard.kb.model import KnowledgeBase, Rule, Words


def _check_compare(node: Compare, specs: Mapping[str, Spec | Words], where: str) -> list[Problem]:
    spec = specs.get(node.field)
    if spec is None:
        return [Problem(where, f"condition names unknown field {node.field!r}")]
    out: list[Problem] = []
    values = node.value if isinstance(node.value, tuple) else (node.value,)
    if node.op in PRESENCE_OPERATORS:
        return (
            [] if isinstance(node.value, bool) else [Problem(where, "'known' takes true or false")]
        )
    if node.op in NUMERIC_OPERATORS:
        if not isinstance(spec, Number) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in values
        ):
            out.append(
                Problem(where, f"{node.op!r} needs a numeric field and number ({node.field})")
            )
        return out
    if node.op in LIST_OPERATORS:
        if not isinstance(spec, ChoiceList):
            return [Problem(where, f"{node.op!r} needs a list field ({node.field})")]
        for x in values:
            if x not in spec.enum._value2member_map_:
                out.append(Problem(where, f"{x!r} is not a valid value of {node.field}"))
        return out
    # is / in
    for x in values:
        bad_choice = isinstance(spec, Choice) and x not in spec.enum._value2member_map_
        if bad_choice or (isinstance(spec, Words) and x not in spec.words):
            out.append(Problem(where, f"{x!r} is not a valid value of {node.field}"))
        elif isinstance(spec, Flag) and not isinstance(x, bool):
            out.append(Problem(where, f"{node.field} takes true/false, got {x!r}"))
        elif isinstance(spec, Number | ChoiceList | Text):
            out.append(Problem(where, f"{node.op!r} is not usable on {node.field}"))
    return out


def check_kb(kb: KnowledgeBase) -> list[Problem]:
    """Cross-file integrity: references, fields, facts and codes named in conditions."""
    problems: list[Problem] = []
    specs: dict[str, Spec | Words] = {p: f.spec for p, f in registry().fields.items()}
    from netboard.engine.derive import computed_specs

    specs.update(computed_specs(kb))

    def cite(where: str, ids: Iterable[str], required: bool = True) -> None:
        ids = list(ids)
        if required and not ids:
            problems.append(Problem(where, "has no evidence"))
        for rid in ids:
            if rid not in kb.references:
                problems.append(Problem(where, f"evidence id {rid!r} resolves to no reference"))

    def cond(where: str, c: Condition) -> None:
        for node in walk(c):
            if isinstance(node, Compare):
                problems.extend(_check_compare(node, specs, where))
            elif isinstance(node, Fact) and node.name not in kb.facts:
                problems.append(Problem(where, f"unknown fact {node.name!r}"))
            elif isinstance(node, EligibilityIs):
                if node.name not in v.EligibilityName._value2member_map_:
                    problems.append(Problem(where, f"unknown eligibility {node.name!r}"))
                if node.status not in v.EligibilityStatus._value2member_map_:
                    problems.append(Problem(where, f"unknown eligibility status {node.status!r}"))
            elif isinstance(node, Planned):
                for code in node.codes:
                    if code not in v.Intervention._value2member_map_:
                        problems.append(Problem(where, f"unknown intervention {code!r}"))

    seen: dict[str, str] = {}
    for kind, items in (
        ("rule", kb.rules),
        ("alert", kb.alerts),
        ("monitoring", kb.monitoring),
        ("disagreement", kb.disagreements),
        ("scope topic", kb.topics),
    ):
        for item in items:
            if item.id in seen:
                problems.append(
                    Problem(f"{kind} {item.id}", f"duplicate id (also a {seen[item.id]})")
                )
            seen[item.id] = kind
            cite(f"{kind} {item.id}", item.evidence)
            cond(f"{kind} {item.id}", item.when)

    def monotone(where: str, c: Condition) -> None:
        for node in walk(c):
            if isinstance(node, Compare) and node.op in PRESENCE_OPERATORS:
                problems.append(Problem(where, f"{node.op!r} is for alerts and notes only"))

    for rule in kb.rules:
        monotone(f"rule {rule.id}", rule.when)
        for node in walk(rule.when):
            if isinstance(node, Planned):
                problems.append(
                    Problem(f"rule {rule.id}", "rules may not depend on the plan itself")
                )
    for fact in kb.facts.values():
        cond(f"fact {fact.name}", fact.when)
        monotone(f"fact {fact.name}", fact.when)
        for node in walk(fact.when):
            if isinstance(node, Planned | EligibilityIs):
                problems.append(
                    Problem(f"fact {fact.name}", "facts may use case fields and facts only")
                )
    for es in kb.eligibility:
        for c in es.criteria:
            cite(f"eligibility {es.name.value}: {c.name}", c.evidence)
            cond(f"eligibility {es.name.value}: {c.name}", c.when)
            monotone(f"eligibility {es.name.value}: {c.name}", c.when)
            for node in walk(c.when):
                if isinstance(node, Planned | EligibilityIs):
                    problems.append(
                        Problem(f"eligibility {es.name.value}", "criteria use case data only")
                    )
    for pl in kb.plausible:
        cite(f"plausible {pl.field} {pl.value}", pl.evidence)
        cond(f"plausible {pl.field} {pl.value}", pl.when)
    for pr in kb.presumptions:
        cite(f"presumption {pr.field}", pr.evidence)
        if pr.when is not None:
            cond(f"presumption {pr.field}", pr.when)
    for ch in kb.checks:
        cite(f"check {ch.field}", ch.evidence)
    for d in kb.dosing:
        cite(f"dosing {d.code.value}", d.evidence)
        if d.when is not None:
            cond(f"dosing {d.code.value}", d.when)
    for name, g in kb.grading.items():
        cite(f"grading {name}", g.evidence)
    _check_fact_cycles(kb, problems)
    problems.extend(_check_passes(kb))
    problems.extend(_check_verified_evidence(kb))
    return problems


def _unverified_only(kb: KnowledgeBase, rule: Rule) -> bool:
    """True when none of the rule's (resolvable) references is verified."""
    refs = [kb.references[x] for x in rule.evidence if x in kb.references]
    return bool(refs) and not any(r.verified for r in refs)


def _check_verified_evidence(kb: KnowledgeBase) -> list[Problem]:
    """A recommended rule rests on at least one reference verified against a primary record."""
    return [
        Problem(
            f"rule {rule.id}",
            "a recommended rule needs at least one verified reference; "
            f"{', '.join(rule.evidence)} {'is' if len(rule.evidence) == 1 else 'are'} "
            "not verified against a primary record",
        )
        for rule in kb.rules
        if rule.status is v.Status.RECOMMENDED and _unverified_only(kb, rule)
    ]


def _guards_of(kb: KnowledgeBase, rule: Rule, code: str) -> list[Rule]:
    """The negative rules that guard ``code`` for a positive ``rule`` (its phase, or all)."""
    return [
        g
        for g in kb.rules
        if not g.status.positive and code in g.codes and (g.scope == "all" or g.phase is rule.phase)
    ]


def _check_passes(kb: KnowledgeBase) -> list[Problem]:
    """Each guard a rule passes must be a guard of one of its codes."""
    problems: list[Problem] = []
    for rule in kb.rules:
        guards = {g.id for code in rule.codes for g in _guards_of(kb, rule, code)}
        for gid in rule.passes:
            if gid not in guards:
                problems.append(
                    Problem(f"rule {rule.id}", f"passes {gid!r}, which guards none of its codes")
                )
    return problems


def _conjuncts(node: Condition) -> frozenset[Condition]:
    """The parts a condition needs all of (nested ``all`` flattened)."""
    if isinstance(node, All):
        return frozenset().union(*(_conjuncts(x) for x in node.items))
    return frozenset({node})


def kb_warnings(kb: KnowledgeBase) -> list[Problem]:
    """What a knowledge base may hold but a reviewer should see.

    * a blanket ``overrides_guards``, which lets a rule pass every guard of its code (a
      renal or marrow guard included): name the guards it may pass instead (``passes``);
    * a positive rule that a guard always blocks: every part of the guard's condition is
      also a part of the rule's, so whenever the rule holds, so does the guard;
    * a consider rule whose references are all unverified (its rationale should say what is
      uncertain; a recommended rule in that state is an error, see ``check_kb``).
    """
    out: list[Problem] = []
    for rule in kb.rules:
        if rule.status is v.Status.CONSIDER and _unverified_only(kb, rule):
            out.append(
                Problem(
                    f"rule {rule.id}",
                    "a consider rule resting only on unverified references "
                    f"({', '.join(rule.evidence)}); say in its rationale what is uncertain",
                )
            )
        if not rule.status.positive:
            continue
        if rule.overrides_guards:
            out.append(
                Problem(
                    f"rule {rule.id}",
                    "overrides every guard of its code (overrides_guards); "
                    "name the guards it may pass with `passes`",
                )
            )
            continue
        needs = _conjuncts(rule.when)
        for code in rule.codes:
            for g in _guards_of(kb, rule, code):
                if g.id not in rule.passes and _conjuncts(g.when) <= needs:
                    out.append(
                        Problem(
                            f"rule {rule.id}",
                            f"can never put {code} on the plan: guard {g.id} holds whenever "
                            "it does (pass it by name, or narrow one of them)",
                        )
                    )
    return out


def _check_fact_cycles(kb: KnowledgeBase, problems: list[Problem]) -> None:
    state: dict[str, int] = {}

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if state.get(name) == 2 or name not in kb.facts:
            return
        if state.get(name) == 1:
            problems.append(
                Problem(
                    f"fact {name}", f"facts refer to each other in a cycle: {' -> '.join(trail)}"
                )
            )
            return
        state[name] = 1
        for node in walk(kb.facts[name].when):
            if isinstance(node, Fact):
                visit(node.name, (*trail, node.name))
        state[name] = 2

    for name in sorted(kb.facts):
        visit(name, (name,))


def rule_counts(kb: KnowledgeBase) -> dict[str, dict[str, dict[str, int]]]:
    """Rules counted by topic (their file) and by phase, each split by status.

    Returns ``{"topic": {name: {status: n}}, "phase": {name: {status: n}}}``; topics in file
    order, phases in report order, statuses in contract order (only those that occur).

    >>> from netboard.kb import load_kb
    >>> counts = rule_counts(load_kb())
    >>> sum(sum(s.values()) for s in counts["topic"].values()) == len(load_kb().rules)
    True
    """
    out: dict[str, dict[str, dict[str, int]]] = {"topic": {}, "phase": {}}
    for rule in kb.rules:
        for by, key in (("topic", rule.topic or "(none)"), ("phase", rule.phase.value)):
            statuses = out[by].setdefault(key, {})
            statuses[rule.status.value] = statuses.get(rule.status.value, 0) + 1
    order = {s.value: i for i, s in enumerate(v.Status)}
    phases = {p.value: i for i, p in enumerate(v.Phase)}
    out["phase"] = dict(sorted(out["phase"].items(), key=lambda kv: phases[kv[0]]))
    return {
        by: {
            key: dict(sorted(statuses.items(), key=lambda kv: order[kv[0]]))
            for key, statuses in groups.items()
        }
        for by, groups in out.items()
    }
