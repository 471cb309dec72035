"""Per-field precision and recall of ``netboard ask`` over the phrasing corpus.

Shared by ``tests/unit/test_ask_accuracy.py`` and ``bench/ask_accuracy.py`` (which puts this
folder on ``sys.path``), so the test and the published figures count the same way.

Counting, per field (``labs`` is one field per laboratory value, ``labs.NAME``):

- list fields are scored per element: a predicted element is a true positive when the
  corpus expects it, a false positive otherwise; an expected element not predicted is a
  false negative; an empty list ("no metastases": ``metastatic_sites: []``) is one element;
- single-valued fields: equal is a true positive; a wrong value is a false positive and a
  false negative; a value where none is expected is a false positive; an expected value
  that is missing is a false negative.

A *negation error* is a value the corpus lists under ``not:`` (a negated, uncertain,
hypothetical or someone else's mention) that was extracted anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CORPUS = Path(__file__).resolve().parent.parent / "parse_corpus.yaml"
#: Phrasings the extractors were not tuned on (an estimate for unseen wording).
HELDOUT = Path(__file__).resolve().parent.parent / "parse_heldout.yaml"
#: The second held-out set (issue 14): phrasings paraphrased from published case reports,
#: written before the extractors were tuned for that issue.
HELDOUT_V2 = Path(__file__).resolve().parent.parent / "parse_heldout_v2.yaml"
#: Keys an item of the corpus may have.
ITEM_KEYS = frozenset({"text", "expect", "not", "unparsed", "known_gap"})
TARGET_PRECISION = 0.98
TARGET_RECALL = 0.95


def load_corpus(path: Path = CORPUS) -> list[dict[str, Any]]:
    """The corpus items, read with the project's YAML 1.2 loader."""
    from netboard.documents import yaml_loader

    items = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml_loader())
    assert isinstance(items, list)
    return items


def flatten(case: Mapping[str, Any]) -> dict[str, Any]:
    """A case with ``labs`` spread into ``labs.NAME`` fields."""
    out: dict[str, Any] = {}
    for key, value in case.items():
        if key == "labs" and isinstance(value, Mapping):
            out.update({f"labs.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


@dataclass
class FieldScore:
    """True positives, false positives and false negatives of one field."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def support(self) -> int:
        """How many values the corpus expects for the field."""
        return self.tp + self.fn

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


@dataclass(frozen=True)
class NegationError:
    """A value the corpus marks as not stated that was extracted."""

    text: str
    field: str
    value: Any


@dataclass
class Score:
    """The figures over a whole corpus."""

    fields: dict[str, FieldScore] = field(default_factory=dict)
    negation_errors: list[NegationError] = field(default_factory=list)
    negations_checked: int = 0
    items: int = 0
    exact: int = 0
    misses: list[tuple[str, str, Any, Any]] = field(default_factory=list)

    def of(self, name: str) -> FieldScore:
        return self.fields.setdefault(name, FieldScore())

    @property
    def total(self) -> FieldScore:
        """Micro-average: the counts of all fields added up."""
        total = FieldScore()
        for s in self.fields.values():
            total.tp += s.tp
            total.fp += s.fp
            total.fn += s.fn
        return total


def _same(a: Any, b: Any) -> bool:
    # 1 == True in Python: a boolean matches only a boolean.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


#: An empty list states that there is none (``metastatic_sites: []`` is localised disease):
#: it is scored as one value of its own.
NONE = "(none)"


def _elements(value: Any) -> list[Any]:
    """The scored elements of a list field: its items, or ``NONE`` for a stated empty list."""
    if value is None:
        return []
    items = list(value)
    return items if items else [NONE]


def v1_fields(case: Mapping[str, Any]) -> dict[str, Any]:
    """A case cut to what a contract version 1 annotation can state: no version 2 field and
    no empty list (version 1 had no way to say "no metastases")."""
    from netboard.fields import registry

    fields = registry().fields
    out: dict[str, Any] = {}
    for name, value in flatten(case).items():
        spec = fields.get(name)
        if spec is not None and str(getattr(spec, "since", "1")) != "1":
            continue
        if isinstance(value, list) and not value:
            continue
        out[name] = value
    return out


def score_item(
    item: Mapping[str, Any],
    predicted: Mapping[str, Any],
    score: Score,
    cut: Callable[[Mapping[str, Any]], dict[str, Any]] = flatten,
) -> None:
    """Add one corpus item's counts to ``score`` (both cases cut by ``cut`` first)."""
    expected = cut(item["expect"])
    got = cut(predicted)
    text = str(item["text"])
    score.items += 1
    if expected == got:
        score.exact += 1
    for name in sorted(set(expected) | set(got)):
        s = score.of(name)
        want, have = expected.get(name), got.get(name)
        if isinstance(want, list) or isinstance(have, list):
            want_l, have_l = _elements(want), _elements(have)
            for v in have_l:
                if v in want_l:
                    s.tp += 1
                else:
                    s.fp += 1
                    score.misses.append((text, name, None, v))
            for v in want_l:
                if v not in have_l:
                    s.fn += 1
                    score.misses.append((text, name, v, None))
            continue
        if name in expected and name in got and _same(want, have):
            s.tp += 1
            continue
        if name in got:
            s.fp += 1
        if name in expected:
            s.fn += 1
        score.misses.append((text, name, want, have))
    for name, values in dict(item.get("not") or {}).items():
        have = got.get(name)
        for v in values if isinstance(values, list) else [values]:
            score.negations_checked += 1
            found = any(_same(v, x) for x in have) if isinstance(have, list) else _same(v, have)
            if name in got and found:
                score.negation_errors.append(NegationError(text, name, v))


def score_corpus(
    items: Iterable[Mapping[str, Any]],
    parse: Callable[[str], Mapping[str, Any]],
    cut: Callable[[Mapping[str, Any]], dict[str, Any]] = flatten,
) -> Score:
    """Run ``parse`` (text -> case dict) over the corpus and count (``cut``: see
    :func:`v1_fields`, for a set annotated before contract version 2)."""
    score = Score()
    for item in items:
        score_item(item, parse(str(item["text"])), score, cut)
    return score


def negation_items(items: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The items that carry a negated or uncertain mention (a ``not:`` key)."""
    return [i for i in items if i.get("not")]
