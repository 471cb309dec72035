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


class CaseError(NetboardError):
    """The case is unusable; ``problems`` lists every problem found, not only the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = tuple(problems)


class KnowledgeBaseError(NetboardError):
    """The knowledge base is malformed; ``problems`` names each file and key at fault."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = tuple(problems)
