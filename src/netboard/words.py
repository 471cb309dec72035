"""Small helpers for writing clinical text in plain words, shared by the engine, the parser and
the reports (each exists once)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


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


def value_words(labels: Mapping[str, Mapping[str, str]], value: object) -> str:
    """A case value in words: yes or no, a number as written, a contract word by its label
    (``labels["values"]``), a list as a list in words ("none" when empty).

    >>> value_words({"values": {"sigmoid_colon": "sigmoid colon"}}, ("sigmoid_colon", "liver"))
    'sigmoid colon and liver'
    >>> value_words({}, ()), value_words({}, True), value_words({}, 2.0)
    ('none', 'yes', '2')
    """
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return join_words([value_words(labels, x) for x in value]) or "none"
    text = str(value)
    return labels.get("values", {}).get(text, text.replace("_", " "))
