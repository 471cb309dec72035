"""Seeded synthetic cases that reach every branch of the knowledge base (parity tests, benches).

Each case is a valid contract case (``load_case`` accepts it). Fields are present with a
per-case probability between ``sparse`` and 1, so many cases leave much unknown, which is
where ``missing_information`` and open branches come from. Numbers cluster at the cut-offs the
knowledge base itself uses (grading thresholds, rule thresholds, the childbearing age limit).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from netboard.engine.reads import cut_offs
from netboard.fields import (
    Choice,
    ChoiceList,
    Flag,
    Number,
    check_consistency,
    nest,
    registry,
)
from netboard.kb.model import KnowledgeBase

__all__ = ["repair", "sample_cases"]


def repair(
    flat: dict[str, Any], rng: random.Random, keep: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Make a generated case consistent by the registry's rules, keeping most of what it says.

    A field that needs another one's word (a pancreatic region needs a pancreatic primary)
    mostly brings that word along, else it goes; items that must lie within a list
    (progressed_on within prior_treatments) are added to it. Fields in ``keep`` are never
    changed: what contradicts them goes instead.
    """
    rules = registry().consistency
    for attempt in range(4 * len(rules) + 1):
        problems = check_consistency(flat)
        if not problems:
            return flat
        path = problems[0].field.split("[", 1)[0]
        rule = next(r for r in rules if path == r.field or path.startswith(r.field + "."))
        if attempt >= 2 * len(rules):
            # Rules pulling one field two ways (a pancreatic region and a gastric type):
            # the field at fault goes.
            flat.pop(path, None)
        elif rule.requires is not None:
            other, words = rule.requires
            if other not in keep and (path in keep or rng.random() < 0.7):
                flat[other] = words[0]
            else:
                del flat[path]
        elif rule.within is not None:
            item = path.split(".", 1)[1] if "." in path else None
            pool = flat[rule.within]
            extra = [item] if item else [x for x in flat[path] if x not in pool]
            flat[rule.within] = pool + [x for x in extra if x not in pool]
    return flat


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
    reg = registry()
    for i in range(n):
        present = rng.uniform(sparse, 1.0)
        flat: dict[str, Any] = {"id": f"s-{i}"}
        objects = {name for name in reg.objects if rng.random() < present}
        for path, f in reg.fields.items():
            if path == "id" or rng.random() >= present:
                continue
            if f.object is not None and f.object not in objects:
                continue
            spec = f.spec
            if isinstance(spec, Number):
                flat[path] = _number(rng, spec, edges.get(path, []))
            elif isinstance(spec, Choice):
                flat[path] = rng.choice(list(spec.enum)).value
            elif isinstance(spec, ChoiceList):
                pool = [m.value for m in spec.enum]
                k = (
                    rng.choice([0, 1, 1, 2, 2, 3])
                    if path != "prior_treatments"
                    else rng.randint(0, 4)
                )
                flat[path] = rng.sample(pool, k=min(k, len(pool)))
            elif isinstance(spec, Flag):
                flat[path] = rng.random() < 0.5
        if "prior_treatments" in flat and "progressed_on" not in flat and rng.random() < 0.3:
            # Progression on part of what was received: the common history.
            prior = flat["prior_treatments"]
            if prior:
                flat["progressed_on"] = rng.sample(prior, k=rng.randint(1, len(prior)))
        case = nest(repair(flat, rng))
        for name in objects:
            case.setdefault(name, {})
        yield case
