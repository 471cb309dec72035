"""Seeded synthetic cases that reach every branch of the knowledge base (parity tests, benches).

Each case is a valid contract case (``load_case`` accepts it). Fields are present with a
per-case probability between ``sparse`` and 1, so many cases leave much unknown, which is
where ``missing_information`` and open branches come from. Numbers cluster at the cut-offs the
knowledge base itself uses (grading thresholds, rule thresholds, the childbearing age limit).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from netboard.case import FIELDS, LAB_FIELDS, Choice, ChoiceList, Flag, Number
from netboard.conditions import Compare, walk
from netboard.kb.model import KnowledgeBase
from netboard.vocab import DiseaseStatus, Sex, Site

__all__ = ["cut_offs", "sample_cases"]


def cut_offs(kb: KnowledgeBase) -> dict[str, list[float]]:
    """The numbers each case field is compared with somewhere in the knowledge base."""
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
    return {k: sorted(v) for k, v in out.items()}


def _number(rng: random.Random, spec: Number, edges: list[float]) -> float | int:
    hi = spec.hi if spec.hi is not None else max([spec.lo + 50, *(e * 2 for e in edges)])
    if edges and rng.random() < 0.6:
        e = rng.choice(edges)
        value = e + rng.choice([-1.0, -0.5, 0.0, 0.0, 0.5, 1.0])
    else:
        value = rng.uniform(spec.lo, hi)
    value = min(max(value, spec.lo), hi)
    if spec.integer:
        return round(value)
    return round(value, 1) if rng.random() < 0.8 else value


def sample_cases(
    n: int, kb: KnowledgeBase, *, seed: int = 20261121, sparse: float = 0.15
) -> Iterator[dict[str, Any]]:
    """``n`` seeded random cases (raw contract mappings, ids ``s-0``, ``s-1``, ...).

    Args:
        n: how many.
        kb: the knowledge base whose cut-offs the numbers cluster at.
        seed: the random seed (same seed, same cases).
        sparse: the lowest per-case probability that a field is present.
    """
    rng = random.Random(seed)
    edges = cut_offs(kb)
    for i in range(n):
        present = rng.uniform(sparse, 1.0)
        case: dict[str, Any] = {"id": f"s-{i}"}
        for name, spec in FIELDS.items():
            if name == "id" or rng.random() >= present:
                continue
            if isinstance(spec, Number):
                case[name] = _number(rng, spec, edges.get(name, []))
            elif isinstance(spec, Choice):
                case[name] = rng.choice(list(spec.enum)).value
            elif isinstance(spec, ChoiceList):
                pool = [m.value for m in spec.enum]
                k = (
                    rng.choice([0, 1, 1, 2, 2, 3])
                    if name != "prior_treatments"
                    else rng.randint(0, 4)
                )
                case[name] = rng.sample(pool, k=min(k, len(pool)))
            elif isinstance(spec, Flag):
                case[name] = rng.random() < 0.5
        if rng.random() < present:
            labs = {
                lab: _number(rng, spec, edges.get(f"labs.{lab}", []))
                for lab, spec in LAB_FIELDS.items()
                if rng.random() < present
            }
            case["labs"] = labs
        # Keep the case valid: no contradictions load_case refuses.
        if case.get("primary_site") != Site.PANCREAS.value:
            if "pancreas_region" in case and rng.random() < 0.7:
                case["primary_site"] = Site.PANCREAS.value
            else:
                case.pop("pancreas_region", None)
        if case.get("primary_site") != Site.STOMACH.value:
            case.pop("gastric_type", None)
        if case.get("pregnant") is True and case.get("sex") == Sex.MALE.value:
            case["sex"] = Sex.FEMALE.value
        progressed = case.get("progressed_on")
        if progressed:
            if case.get("disease_status") == DiseaseStatus.NEWLY_DIAGNOSED.value:
                case["disease_status"] = DiseaseStatus.PROGRESSIVE.value
            if "prior_treatments" in case:
                prior = case["prior_treatments"]
                case["prior_treatments"] = prior + [c for c in progressed if c not in prior]
        elif "prior_treatments" in case and rng.random() < 0.3 and case["prior_treatments"]:
            # Progression on part of what was received: the common history.
            prior = case["prior_treatments"]
            case["progressed_on"] = rng.sample(prior, k=rng.randint(1, len(prior)))
            if case.get("disease_status") == DiseaseStatus.NEWLY_DIAGNOSED.value:
                case["disease_status"] = DiseaseStatus.PROGRESSIVE.value
        yield case
