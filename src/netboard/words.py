"""Small helpers for writing clinical text in plain words, shared by the engine, the parser and
the reports (each exists once)."""

from __future__ import annotations

from collections.abc import Sequence


def capfirst(text: str) -> str:
    """Upper-case the first character only ('177Lu-DOTATATE' and 'NET ...' stay as they are).

    >>> capfirst("everolimus on progression")
    'Everolimus on progression'
    """
    return text[:1].upper() + text[1:]


def join_words(items: Sequence[str], word: str = "and") -> str:
    """A list in words: ``a, b and c`` (or ``a, b or c``).

    >>> join_words(["5", "6", "7"])
    '5, 6 and 7'
    >>> join_words(["TAE", "TACE"], "or")
    'TAE or TACE'
    """
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {word} {items[-1]}"


def sentence(text: str) -> str:
    """``text`` as a sentence: first letter upper-case, a full stop at the end.

    >>> sentence(" resect the primary")
    'Resect the primary.'
    """
    text = text.strip()
    return capfirst(text) + ("" if text.endswith(".") else ".")
