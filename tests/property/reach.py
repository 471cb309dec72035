"""Generate cases that reach a given state of the knowledge base (a guard holding, a patient
eligible for a transplant), so that safety properties are tested where they matter.

``reach(condition, want, kb, rnd)`` picks field values, read from the field registry and the
condition tree itself, that make ``condition`` evaluate to ``want``; the rest of the case is
filled at random from the registry, and the registry's consistency rules are applied. Whether
the state was really reached is decided by the engine afterwards (``holds``), never assumed:
the tests count how often it was.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from netboard.batch.sample import repair
from netboard.case import Case, load_case
from netboard.conditions import (
    All,
    AnyOf,
    Compare,
    Condition,
    EligibilityIs,
    Fact,
    Holds,
    Not,
    Planned,
    Shared,
)
from netboard.engine.classify import classify
from netboard.engine.evaluate import Context, evaluate
from netboard.engine.reads import cut_offs
from netboard.errors import CaseError
from netboard.fields import Choice, ChoiceList, Flag, Number, Text, nest, registry
from netboard.kb.model import KnowledgeBase
from netboard.logic import Truth
from netboard.vocab import Intervention, Site

Flat = dict[str, Any]


class Conflict(Exception):
    """The condition cannot be met together with what is already chosen."""


def _number_for(spec: Number, op: str, value: float, want: bool, rnd: random.Random) -> float:
    """A number on the wanted side of ``value`` (``op`` as written, ``want`` its truth)."""
    hi = spec.hi if spec.hi is not None else max(value * 2, spec.lo + 50)
    below = (op in ("lt", "le")) == want
    inclusive = (op in ("le", "ge")) == want
    if below:
        top = value if inclusive else value - 0.5
        if top < spec.lo:
            raise Conflict(f"nothing below {value}")
        x = rnd.uniform(spec.lo, top)
    else:
        bottom = value if inclusive else value + 0.5
        if bottom > hi:
            raise Conflict(f"nothing above {value}")
        x = rnd.uniform(bottom, hi)
    return round(x) if spec.integer else round(x, 1)


def _site_with(kb: KnowledgeBase, attr: str, value: Any, want: bool, rnd: random.Random) -> str:
    sites = [s.value for s, info in kb.sites.items() if (getattr(info, attr) == value) == want]
    if not sites:
        raise Conflict(f"no site with {attr} {value}")
    return rnd.choice(sites)


_SITE_ATTRS = {
    "site_group": "group",
    "gut_region": "region",
    "portal_drained": "portal_drained",
    "thoracic_primary": "thoracic",
}


class Reacher:
    """Chooses field values that make conditions TRUE or FALSE."""

    def __init__(self, kb: KnowledgeBase, rnd: random.Random) -> None:
        self.kb = kb
        self.rnd = rnd
        self.out: Flat = {}

    def put(self, path: str, value: Any) -> None:
        if path in self.out and self.out[path] != value:
            raise Conflict(f"{path} already {self.out[path]!r}")
        self.out[path] = value

    def add_item(self, path: str, item: str) -> None:
        items = list(self.out.get(path) or [])
        if item not in items:
            items.append(item)
        self.out[path] = items

    def drop_item(self, path: str, item: str) -> None:
        items = [x for x in (self.out.get(path) or []) if x != item]
        self.out[path] = items

    def reach(self, node: Condition, want: bool) -> None:
        rnd = self.rnd
        if isinstance(node, All | AnyOf):
            conj = isinstance(node, All)
            if conj == want:  # every item must take `want`
                for item in node.items:
                    self.reach(item, want)
            else:  # one item suffices
                for item in rnd.sample(list(node.items), len(node.items)):
                    saved = dict(self.out)
                    try:
                        self.reach(item, want)
                        return
                    except Conflict:
                        self.out = saved
                raise Conflict("no item of the junction can be met")
        elif isinstance(node, Not):
            self.reach(node.item, not want)
        elif isinstance(node, Holds | Shared):
            self.reach(node.item, want)
        elif isinstance(node, Fact):
            self.reach(self.kb.facts[node.name].when, want)
        elif isinstance(node, EligibilityIs):
            es = next(e for e in self.kb.eligibility if e.name.value == node.name)
            eligible = (node.status == "eligible") == want
            if eligible:
                for c in es.criteria:
                    self.reach(c.when, True)
            else:
                self.reach(rnd.choice(es.criteria).when, False)
        elif isinstance(node, Planned):
            raise Conflict("the plan cannot be chosen directly")
        elif isinstance(node, Compare):
            self.compare(node, want)
        else:  # pragma: no cover
            raise TypeError(type(node).__name__)

    def compare(self, node: Compare, want: bool) -> None:
        name, op, value, rnd = node.field, node.op, node.value, self.rnd
        if op == "known":
            if want == bool(value):
                self.reach_any(name)
            return
        if name in _SITE_ATTRS:
            site = _site_with(self.kb, _SITE_ATTRS[name], value, want, rnd)
            self.put("primary_site", self.out.get("primary_site", site))
            got = self.kb.sites[Site(self.out["primary_site"])]
            if (getattr(got, _SITE_ATTRS[name]) == value) != want:
                raise Conflict("site chosen otherwise")
            return
        if name == "pregnancy_status":
            pregnant = (value == "pregnant") == want
            self.put("pregnant", pregnant)
            if pregnant:
                self.put("sex", "female")
                self.put("age_years", self.out.get("age_years", rnd.randint(20, 44)))
            return
        if name in ("treatments_received", "treatments_failed"):
            codes = [value] if op == "has" else list(value)
            if want:
                code = rnd.choice(codes)
                self.add_item("prior_treatments", code)
                if name == "treatments_failed":
                    self.add_item("progressed_on", code)
                    self.put("disease_status", "progressive")
            else:
                self.out.setdefault("prior_treatments", [])
                self.out.setdefault("progressed_on", [])
                for code in codes:
                    self.drop_item("prior_treatments", code)
                    self.drop_item("progressed_on", code)
            return
        if name in ("grade", "who_2019", "differentiation_inferred", "grade_discordant"):
            self.grade(name, op, value, want)
            return
        spec = registry().spec(name)
        if spec is None:
            raise Conflict(f"cannot choose {name}")
        if isinstance(spec, Number):
            if op == "is":
                raise Conflict("equality on a number")
            self.put(name, self.out.get(name, _number_for(spec, op, value, want, rnd)))
            if not _compare_ok(op, self.out[name], value, want):
                raise Conflict(f"{name} chosen otherwise")
        elif isinstance(spec, ChoiceList):
            codes = [value] if op == "has" else list(value)
            if want:
                self.add_item(name, rnd.choice(codes))
            else:
                self.out.setdefault(name, [])
                for code in codes:
                    self.drop_item(name, code)
        elif isinstance(spec, Flag):
            self.put(name, bool(value) == want)
        elif isinstance(spec, Choice):
            words = [m.value for m in spec.enum]
            allowed = [value] if op == "is" else list(value)
            pool = [w for w in words if (w in allowed) == want]
            if not pool:
                raise Conflict(f"no word for {name}")
            self.put(name, self.out.get(name, rnd.choice(pool)))
            if (self.out[name] in allowed) != want:
                raise Conflict(f"{name} chosen otherwise")
        else:
            raise Conflict(f"cannot choose text field {name}")

    def grade(self, name: str, op: str, value: Any, want: bool) -> None:
        """Grade, WHO class and differentiation through the stated grade and differentiation."""
        rnd = self.rnd
        words = [value] if op == "is" else list(value)
        if name == "grade":
            pool = [g for g in ("g1", "g2", "g3") if (g in words) == want]
            self.put("grade", self.out.get("grade", rnd.choice(pool)))
        elif name == "differentiation_inferred":
            pool = [d for d in ("well", "poor") if (d in words) == want]
            self.put("differentiation", self.out.get("differentiation", rnd.choice(pool)))
        elif name == "who_2019":
            pool = [w for w in ("net_g1", "net_g2", "net_g3", "nec") if (w in words) == want]
            who = rnd.choice(pool)
            if who == "nec":
                self.put("differentiation", "poor")
            else:
                self.put("differentiation", "well")
                self.put("grade", who[4:])
        else:
            raise Conflict("discordance is not chosen directly")

    def reach_any(self, name: str) -> None:
        spec = registry().spec(name)
        if spec is None:
            raise Conflict(name)
        self.out.setdefault(name, random_value(spec, self.rnd, cut_offs(self.kb).get(name, [])))


def _compare_ok(op: str, x: Any, value: Any, want: bool) -> bool:
    got = {"lt": x < value, "le": x <= value, "gt": x > value, "ge": x >= value}[op]
    return bool(got) == want


def random_value(spec: Any, rnd: random.Random, edges: list[float]) -> Any:
    """A random valid value of a field (numbers near the knowledge base's cut-offs)."""
    if isinstance(spec, Number):
        hi = spec.hi if spec.hi is not None else max([spec.lo + 50, *(e * 2 for e in edges)])
        x = rnd.choice(edges) + rnd.choice([-1, 0, 1]) if edges and rnd.random() < 0.5 else None
        x = rnd.uniform(spec.lo, hi) if x is None else x
        x = min(max(x, spec.lo), hi)
        return round(x) if spec.integer else round(x, 1)
    if isinstance(spec, Choice):
        return rnd.choice(list(spec.enum)).value
    if isinstance(spec, ChoiceList):
        pool = [m.value for m in spec.enum]
        return rnd.sample(pool, rnd.choice([0, 1, 1, 2]))
    if isinstance(spec, Flag):
        return rnd.random() < 0.5
    if isinstance(spec, Text):
        return f"case-{rnd.randint(1, 999)}"
    raise TypeError(spec)  # pragma: no cover


def _truth(node: Condition, case: Case, kb: KnowledgeBase) -> Truth:
    """The truth of ``node`` for ``case``, eligibility decided from the criteria as recommend
    decides it."""
    ctx = Context(case=case, computed=classify(case, kb).computed, facts=kb.facts, kb=kb)
    statuses: dict[str, str] = {}
    for es in kb.eligibility:
        truths = [evaluate(c.when, ctx).truth for c in es.criteria]
        statuses[es.name.value] = (
            "not_eligible"
            if Truth.FALSE in truths
            else "undetermined"
            if Truth.UNKNOWN in truths
            else "eligible"
        )
    ctx.eligibility = statuses
    return evaluate(node, ctx).truth


def reach(
    node: Condition, want: bool, kb: KnowledgeBase, rnd: random.Random, share: float = 0.4
) -> Case | None:
    """A valid case that makes ``node`` evaluate to ``want``; None when no choice fits.

    The fields chosen to reach the state come first; every other registry field is then added
    with probability ``share``, kept only if the state still holds, so the case is as full as
    a real one without leaving the state.
    """
    reacher = Reacher(kb, rnd)
    try:
        reacher.reach(node, want)
    except Conflict:
        return None
    chosen = frozenset(reacher.out)
    flat = repair(dict(reacher.out), rnd, keep=chosen)
    target = Truth.TRUE if want else Truth.FALSE

    def valid(candidate: Flat) -> Case | None:
        try:
            return load_case(nest(candidate))
        except CaseError:
            return None

    case = valid(flat)
    if case is None or _truth(node, case, kb) is not target:
        return None
    edges = cut_offs(kb)
    paths = [p for p in registry().fields if p not in flat]
    for path in rnd.sample(paths, len(paths)):
        if rnd.random() >= share:
            continue
        trial = repair(
            {**flat, path: random_value(registry().fields[path].spec, rnd, edges.get(path, []))},
            rnd,
            keep=chosen,
        )
        grown = valid(trial)
        if grown is not None and _truth(node, grown, kb) is target:
            flat, case = trial, grown
    return case


INTERVENTIONS = tuple(m.value for m in Intervention)


def holds(node: Condition, case: Case, kb: KnowledgeBase, eligibility: Mapping[str, str]) -> bool:
    """Whether ``node`` is TRUE for ``case`` as ``recommend`` evaluates it, given the
    eligibility statuses of its answer."""
    ctx = Context(
        case=case,
        computed=classify(case, kb).computed,
        facts=kb.facts,
        kb=kb,
        eligibility=dict(eligibility),
    )
    return evaluate(node, ctx).truth is Truth.TRUE
