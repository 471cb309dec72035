"""What the knowledge base's conditions read: the case fields behind a condition, and the
numbers each field is compared with (the cut-offs that split it into bands)."""

from __future__ import annotations

from collections import defaultdict

from netboard.conditions import Compare, Condition, EligibilityIs, Fact, walk
from netboard.engine.derive import COMPUTED, READS
from netboard.kb.model import KnowledgeBase

__all__ = ["cut_offs", "depends_on", "static_fields"]


_STATIC: dict[int, tuple[KnowledgeBase, dict[int, tuple[Condition, frozenset[str]]]]] = {}


def static_fields(node: Condition, kb: KnowledgeBase) -> frozenset[str]:
    """Every case field that can ever be in ``node``'s unknown set (bounds ``missing``), and so
    every field the node's truth can depend on; cached per knowledge base and node."""
    hit = _STATIC.get(id(kb))
    if hit is None or hit[0] is not kb:
        hit = _STATIC[id(kb)] = (kb, {})
    cached = hit[1].get(id(node))
    if cached is not None and cached[0] is node:
        return cached[1]
    found = _static_fields(node, kb)
    hit[1][id(node)] = (node, found)
    return found


def _static_fields(node: Condition, kb: KnowledgeBase) -> frozenset[str]:
    out: set[str] = set()
    for n in walk(node):
        if isinstance(n, Compare) and n.op != "known":
            out.update(COMPUTED[n.field][1] if n.field in COMPUTED else (n.field,))
        elif isinstance(n, Fact):
            out |= static_fields(kb.facts[n.name].when, kb)
        elif isinstance(n, EligibilityIs):
            for es in kb.eligibility:
                if es.name.value == n.name:
                    for c in es.criteria:
                        out |= static_fields(c.when, kb)
    return frozenset(out)


_CUT_OFFS: dict[int, tuple[KnowledgeBase, dict[str, list[float]]]] = {}


def cut_offs(kb: KnowledgeBase) -> dict[str, list[float]]:
    """The numbers each case field is compared with somewhere in the knowledge base (cached
    per knowledge base; do not change the result)."""
    hit = _CUT_OFFS.get(id(kb))
    if hit is not None and hit[0] is kb:
        return hit[1]
    out: dict[str, set[float]] = defaultdict(set)
    conditions = [r.when for r in kb.rules] + [a.when for a in kb.alerts]
    conditions += [f.when for f in kb.facts.values()]
    conditions += [c.when for es in kb.eligibility for c in es.criteria]
    for cond in conditions:
        for node in walk(cond):
            value = node.value if isinstance(node, Compare) else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[node.field].add(float(value))  # type: ignore[union-attr]
    for g in kb.grading.values():
        for name, value in (
            ("ki67_percent", g.ki67_g1_below),
            ("ki67_percent", g.ki67_g2_upto),
            ("mitoses_per_2mm2", g.mitoses_g1_below),
            ("mitoses_per_2mm2", g.mitoses_g2_upto),
        ):
            if value is not None:
                out[name].add(float(value))
    out["age_years"].add(float(kb.childbearing_age_limit))
    found = {k: sorted(v) for k, v in out.items()}
    _CUT_OFFS[id(kb)] = (kb, found)
    return found


_DEPENDS: dict[int, tuple[KnowledgeBase, dict[int, tuple[Condition, frozenset[str]]]]] = {}


def depends_on(node: Condition, kb: KnowledgeBase) -> frozenset[str]:
    """Every case field whose value can change ``node``'s truth: the fields it reads, those its
    computed fields, facts and eligibility criteria read, and those that decide which values
    of a field are plausible. Cached per knowledge base and node."""
    hit = _DEPENDS.get(id(kb))
    if hit is None or hit[0] is not kb:
        hit = _DEPENDS[id(kb)] = (kb, {})
    cached = hit[1].get(id(node))
    if cached is not None and cached[0] is node:
        return cached[1]
    out: set[str] = set()
    for n in walk(node):
        if isinstance(n, Compare):
            out.update(READS.get(n.field, (n.field,)))
            for when in kb.plausibility.get(n.field, {}).values():
                out |= depends_on(when, kb)
        elif isinstance(n, Fact):
            out |= depends_on(kb.facts[n.name].when, kb)
        elif isinstance(n, EligibilityIs):
            for es in kb.eligibility:
                if es.name.value == n.name:
                    for c in es.criteria:
                        out |= depends_on(c.when, kb)
    found = frozenset(out)
    hit[1][id(node)] = (node, found)
    return found
