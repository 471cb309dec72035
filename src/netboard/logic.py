"""Three-valued (Kleene) logic: a missing fact is UNKNOWN, never FALSE.

This mirrors SQL NULL and CQL null semantics, so the per-patient engine and a
batch engine can agree on every answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum


class Truth(Enum):
    """A three-valued truth value."""

    FALSE = 0
    UNKNOWN = 1
    TRUE = 2

    def __bool__(self) -> bool:  # pragma: no cover - guard against accidental use
        raise TypeError("Truth has three values; compare with Truth.TRUE explicitly")

    @classmethod
    def of(cls, value: bool | None) -> Truth:
        """Map a Python boolean (or None for unknown) to a Truth.

        >>> Truth.of(None)
        <Truth.UNKNOWN: 1>
        """
        if value is None:
            return cls.UNKNOWN
        return cls.TRUE if value else cls.FALSE


def and_(xs: Iterable[Truth]) -> Truth:
    """Kleene conjunction: FALSE wins, then UNKNOWN.

    >>> and_([Truth.TRUE, Truth.UNKNOWN])
    <Truth.UNKNOWN: 1>
    >>> and_([Truth.UNKNOWN, Truth.FALSE])
    <Truth.FALSE: 0>
    """
    result = Truth.TRUE
    for x in xs:
        if x is Truth.FALSE:
            return Truth.FALSE
        if x is Truth.UNKNOWN:
            result = Truth.UNKNOWN
    return result


def or_(xs: Iterable[Truth]) -> Truth:
    """Kleene disjunction: TRUE wins, then UNKNOWN.

    >>> or_([Truth.FALSE, Truth.UNKNOWN])
    <Truth.UNKNOWN: 1>
    """
    result = Truth.FALSE
    for x in xs:
        if x is Truth.TRUE:
            return Truth.TRUE
        if x is Truth.UNKNOWN:
            result = Truth.UNKNOWN
    return result


def not_(x: Truth) -> Truth:
    """Kleene negation: UNKNOWN stays UNKNOWN.

    >>> not_(Truth.UNKNOWN)
    <Truth.UNKNOWN: 1>
    """
    return {Truth.TRUE: Truth.FALSE, Truth.FALSE: Truth.TRUE}.get(x, Truth.UNKNOWN)
