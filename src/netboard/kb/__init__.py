"""The packaged knowledge base: load it, check it."""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from netboard.errors import KnowledgeBaseError, Problem
from netboard.kb.schema import KnowledgeBase, parse_kb, read_kb_files

__all__ = ["KnowledgeBase", "check_kb_dir", "load_kb"]


def check_kb_dir(path: str | Path | None = None) -> tuple[KnowledgeBase | None, list[Problem]]:
    """Read and check a knowledge-base directory (default: the packaged one)."""
    root = files("netboard.kb") if path is None else Path(path)
    try:
        docs = read_kb_files(root)
    except Exception as exc:
        return None, [Problem(str(path or "netboard.kb"), f"cannot read: {exc}")]
    return parse_kb(docs)


@lru_cache(maxsize=4)
def load_kb(path: str | None = None) -> KnowledgeBase:
    """Load and check a knowledge base; raise ``KnowledgeBaseError`` when it has problems.

    Args:
        path: a directory holding a knowledge base; None for the packaged one.
    """
    kb, problems = check_kb_dir(path)
    if problems or kb is None:
        raise KnowledgeBaseError(problems or [Problem("(kb)", "empty knowledge base")])
    return kb
