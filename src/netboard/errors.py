"""The netboard error tree: every failure a caller can meet is one of these."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass


def _plain(char: str) -> bool:
    """True for a character shown as it is: printable ASCII, or a Latin letter (``é``)."""
    if char.isascii():
        return char.isprintable()
    return unicodedata.category(char).startswith("L") and unicodedata.name(char, "").startswith(
        "LATIN "
    )


def display_field(field: str) -> str:
    r"""A field name safe to show: invisible and look-alike characters escaped.

    A Cyrillic a (U+0430) or a zero-width space in a key would otherwise make an unknown field
    look exactly like a known one. Printable ASCII and Latin letters (a file named
    ``josé.yaml``) stay as they are; anything else is shown as ``\uXXXX``.

    Example:
        >>> display_field("prim\u0430ry_site")
        'prim\\u0430ry_site'
        >>> display_field("primary\u200b_site")
        'primary\\u200b_site'
        >>> display_field("labs.platelets")
        'labs.platelets'
    """
    if all(_plain(c) for c in field):
        return field
    return "".join(
        c if _plain(c) else (f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}")
        for c in field
    )


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input: the field (dotted path) and what is wrong."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{display_field(self.field)}: {self.message}"


class NetboardError(Exception):
    """Base of every error netboard raises on purpose."""


class ProblemsError(NetboardError):
    """An input is unusable; ``problems`` lists every problem found, not only the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = tuple(problems)


class CaseError(ProblemsError):
    """The case (or another request body) is unusable, one ``Problem`` per field at fault."""


class KnowledgeBaseError(ProblemsError):
    """The knowledge base is malformed; ``problems`` names each file and key at fault."""


class ConfigError(ProblemsError):
    """A configuration file (such as the trust file) is invalid; ``problems`` lists each fault."""
