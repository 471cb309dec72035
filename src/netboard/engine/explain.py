"""Turn conditions into words (``applies_if``) and unknowns into ``missing_information``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from netboard.case import field_paths
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
from netboard.kb.model import KnowledgeBase
from netboard.words import value_words

_OPS = {"lt": "<", "le": "≤", "gt": ">", "ge": "≥"}


def label_value(kb: KnowledgeBase, value: Any) -> str:
    """A reader's label for a contract word (``labels.values`` in fields.yaml)."""
    return value_words(kb.labels, value)


def label_code(kb: KnowledgeBase, code: str, short: bool = False) -> str:
    """A reader's label for an intervention code (``labels.interventions``, or the short
    forms of ``labels.interventions_short`` for lists in a sentence)."""
    group = "interventions_short" if short else "interventions"
    return kb.labels.get(group, {}).get(code, code.replace("_", " "))


def label_field(kb: KnowledgeBase, name: str) -> str:
    info = kb.fields.get(name)
    if info:
        return info.label
    return kb.labels.get("computed", {}).get(name, name.replace("_", " "))


def describe(node: Condition, kb: KnowledgeBase, nested: bool = False) -> str:
    """A condition in plain words, simplified: a list of the clauses that must all hold,
    negations pushed down and said in words ("ECOG 0-2" for not ECOG 3-4), each clause once.

    >>> from netboard.kb import load_kb
    >>> describe(Compare("ki67_percent", "lt", 10), load_kb())
    'Ki-67 index < 10%'
    >>> describe(All((Fact("low_grade"), Not(AnyOf((Fact("nec"), Fact("poor_performance")))))),
    ...          load_kb())
    'well-differentiated NET G1 or G2; not a neuroendocrine carcinoma (NEC); ECOG 0-2'
    """
    if not nested:
        return _plain(node, kb)
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
        return "the plan includes " + " or ".join(label_code(kb, c) for c in node.codes)
    if isinstance(node, Not):
        return f"not ({describe(node.item, kb, True)})"
    if isinstance(node, Shared | Holds):
        return describe(node.item, kb, nested)
    parts = [describe(x, kb, True) for x in node.items]
    if not parts:
        return "always"
    text = (" and " if isinstance(node, All) else " or ").join(parts)
    return f"({text})" if nested and len(parts) > 1 else text


_NEGATED_OPS = {"lt": "ge", "le": "gt", "gt": "le", "ge": "lt"}


def _plain(node: Condition, kb: KnowledgeBase) -> str:
    """Top-level words of a condition: its clauses joined with '; '."""
    cache = _PLAIN.setdefault(id(kb), (kb, {}))
    if cache[0] is not kb:
        cache = _PLAIN[id(kb)] = (kb, {})
    text = cache[1].get(node)
    if text is None:
        positive: set[Condition] = set()
        _collect(node, False, positive)
        clauses = list(dict.fromkeys(_clauses(node, False, kb, frozenset(positive))))
        text = cache[1][node] = "; ".join(clauses) if clauses else "always"
    return text


_PLAIN: dict[int, tuple[KnowledgeBase, dict[Condition, str]]] = {}


def _collect(node: Condition, negate: bool, out: set[Condition]) -> None:
    """The leaves the condition asserts outright (top-level conjuncts)."""
    if isinstance(node, Shared | Holds):
        _collect(node.item, negate, out)
    elif isinstance(node, Not):
        _collect(node.item, not negate, out)
    elif (isinstance(node, All) and not negate) or (isinstance(node, AnyOf) and negate):
        for item in node.items:
            _collect(item, negate, out)
    elif not negate and not isinstance(node, All | AnyOf):
        out.add(node)


def _clauses(
    node: Condition, negate: bool, kb: KnowledgeBase, asserted: frozenset[Condition]
) -> list[str]:
    """The conjunct clauses of ``node`` (or of its negation), in words."""
    if isinstance(node, Shared | Holds):
        return _clauses(node.item, negate, kb, asserted)
    if isinstance(node, Not):
        return _clauses(node.item, not negate, kb, asserted)
    if (isinstance(node, All) and not negate) or (isinstance(node, AnyOf) and negate):
        return [c for item in node.items for c in _clauses(item, negate, kb, asserted)]
    if isinstance(node, All):  # not all of these: drop what is asserted elsewhere
        if any(_excludes(x, a, kb) for x in node.items for a in asserted):
            return []  # one of them contradicts what is asserted: the negation already holds
        rest = [x for x in node.items if x not in asserted]
        if len(rest) == 1:
            return _clauses(rest[0], True, kb, asserted)
        if not rest:
            return []
        words = [_phrase(x, False, kb) for x in rest]
        if len(words) == 2:
            return [f"not both {words[0]} and {words[1]}"]
        return ["not all of: " + ", ".join(words)]
    if isinstance(node, AnyOf):
        return [" or ".join(dict.fromkeys(_phrase(x, False, kb) for x in node.items))]
    return [_phrase(node, negate, kb)]


def _word_test(node: Condition, kb: KnowledgeBase) -> tuple[str, str] | None:
    """(field, word) when the node is, or names a fact that is, ``field is word``."""
    if isinstance(node, Fact):
        return _word_test(kb.facts[node.name].when, kb)
    if isinstance(node, Compare) and node.op == "is" and isinstance(node.value, str):
        return node.field, node.value
    return None


def _excludes(a: Condition, b: Condition, kb: KnowledgeBase) -> bool:
    """Whether ``a`` and ``b`` cannot both hold (one field, two different words)."""
    ta, tb = _word_test(a, kb), _word_test(b, kb)
    return ta is not None and tb is not None and ta[0] == tb[0] and ta[1] != tb[1]


def _phrase(node: Condition, negate: bool, kb: KnowledgeBase) -> str:
    """One clause in words (a leaf, or a nested junction in parentheses)."""
    if isinstance(node, Shared | Holds):
        return _phrase(node.item, negate, kb)
    if isinstance(node, Not):
        return _phrase(node.item, not negate, kb)
    if isinstance(node, Fact):
        fact = kb.facts[node.name]
        if not negate:
            return fact.label
        return fact.label_not or f"not {fact.label}"
    if isinstance(node, Compare) and negate and node.op in _NEGATED_OPS:
        return describe(Compare(node.field, _NEGATED_OPS[node.op], node.value), kb, True)
    if isinstance(node, Compare) and negate and node.op in ("is", "in"):
        values = node.value if isinstance(node.value, tuple) else (node.value,)
        words = " nor ".join(label_value(kb, x) for x in values)
        return (
            f"{label_field(kb, node.field)} is {'neither ' if len(values) > 1 else 'not '}{words}"
        )
    if isinstance(node, EligibilityIs):
        name = kb.labels.get("eligibility", {}).get(node.name, node.name.replace("_", " "))
        eligible = (node.status == "eligible") != negate
        return f"{'eligible' if eligible else 'not eligible'} for {name}"
    if isinstance(node, All | AnyOf):
        parts = _clauses(node, negate, kb, frozenset())
        joiner = " or " if isinstance(node, AnyOf) != negate else " and "
        inner = joiner.join(dict.fromkeys(parts))
        return f"({inner})" if len(parts) > 1 else inner
    text = describe(node, kb, True)
    return f"not {text}" if negate else text


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
        shown = ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")
        info = kb.fields.get(f)
        base = info.why if info else f"{f} is not stated."
        out.append((f, f"{base} Here it decides: {shown}."))
    return out
