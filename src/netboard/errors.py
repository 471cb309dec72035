"""The netboard error tree: every failure a caller can meet is one of these."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input: the field (dotted path) and what is wrong."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


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
