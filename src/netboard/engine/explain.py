"""Turn conditions into words (``applies_if``) and unknowns into ``missing_information``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from netboard.case import field_paths
from netboard.conditions import (
    All,
    Compare,
    Condition,
    EligibilityIs,
    Fact,
    Holds,
    Not,
    Planned,
    Shared,
)
from netboard.kb.model import KnowledgeBase

_OPS = {"lt": "<", "le": "≤", "gt": ">", "ge": "≥"}


def label_value(kb: KnowledgeBase, value: Any) -> str:
    """A reader's label for a contract word (``labels.values`` in fields.yaml)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:g}"
    text = str(value)
    return kb.labels.get("values", {}).get(text, text.replace("_", " "))


def label_field(kb: KnowledgeBase, name: str) -> str:
    info = kb.fields.get(name)
    if info:
        return info.label
    return kb.labels.get("computed", {}).get(name, name.replace("_", " "))


def describe(node: Condition, kb: KnowledgeBase, nested: bool = False) -> str:
    """A condition in plain words.

    >>> from netboard.kb import load_kb
    >>> describe(Compare("ki67_percent", "lt", 10), load_kb())
    'Ki-67 index < 10%'
    """
    key = (node, nested)
    cache = _DESCRIBED.setdefault(id(kb), (kb, {}))
    if cache[0] is not kb:
        cache = _DESCRIBED[id(kb)] = (kb, {})
    text = cache[1].get(key)
    if text is None:
        text = cache[1][key] = _describe(node, kb, nested)
    return text


#: Descriptions per knowledge base: the same residual recurs across cases.
_DESCRIBED: dict[int, tuple[KnowledgeBase, dict[tuple[Condition, bool], str]]] = {}


def _describe(node: Condition, kb: KnowledgeBase, nested: bool) -> str:
    if isinstance(node, Compare):
        name = label_field(kb, node.field)
        if node.op in _OPS:
            unit = "%" if node.field.endswith("percent") else ""
            return f"{name} {_OPS[node.op]} {label_value(kb, node.value)}{unit}"
        if node.op == "known":
            return f"{name} is {'stated' if node.value else 'not stated'}"
        if node.op == "is":
            return f"{name} is {label_value(kb, node.value)}"
        values = (
            [label_value(kb, x) for x in node.value]
            if isinstance(node.value, tuple)
            else [label_value(kb, node.value)]
        )
        joined = " or ".join(values)
        if node.op == "in":
            return f"{name} is {joined}"
        if node.op == "has":
            return f"{name} include {joined}"
        return f"{name} include {joined}"
    if isinstance(node, Fact):
        return kb.facts[node.name].label
    if isinstance(node, EligibilityIs):
        return f"{node.name.replace('_', ' ')} eligibility is {node.status.replace('_', ' ')}"
    if isinstance(node, Planned):
        names = kb.labels.get("interventions", {})
        return "the plan includes " + " or ".join(
            names.get(c, c.replace("_", " ")) for c in node.codes
        )
    if isinstance(node, Not):
        return f"not ({describe(node.item, kb, True)})"
    if isinstance(node, Shared | Holds):
        return describe(node.item, kb, nested)
    parts = [describe(x, kb, True) for x in node.items]
    if not parts:
        return "always"
    text = (" and " if isinstance(node, All) else " or ").join(parts)
    return f"({text})" if nested and len(parts) > 1 else text


_ORDER = {name: i for i, name in enumerate(field_paths())}


def order_fields(fields: Iterable[str]) -> tuple[str, ...]:
    """Case fields in contract order (unknown names last, alphabetically).

    >>> order_fields(["sstr_imaging", "ki67_percent"])
    ('ki67_percent', 'sstr_imaging')
    """
    order = _ORDER
    return tuple(sorted(set(fields), key=lambda f: (order.get(f, len(order)), f)))


def missing_information(
    kb: KnowledgeBase, decides: Mapping[str, set[str]]
) -> list[tuple[str, str]]:
    """Build (field, why) pairs: the field's own reason plus what it decides here.

    Fields that decide more come first; ties keep contract order.
    """
    ordered = order_fields(decides)
    rank = sorted(ordered, key=lambda f: -len(decides[f]))
    out: list[tuple[str, str]] = []
    for f in rank:
        items = sorted(decides[f])
        shown = ", ".join(items[:6]) + (f" and {len(items) - 6} more" if len(items) > 6 else "")
        info = kb.fields.get(f)
        base = info.why if info else f"{f} is not stated."
        out.append((f, f"{base} Here it decides: {shown}."))
    return out
