"""The packaged knowledge base: load it, check it, compile it.

The YAML files are the source of truth. ``compiled.json`` is a snapshot of the parsed YAML
documents with the SHA-256 of the sources it came from; it only spares start-up the YAML
parsing. A stale snapshot is ignored (the YAML is read instead) and a test keeps it fresh
(``netboard kb compile`` rewrites it).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from netboard.errors import KnowledgeBaseError, Problem
from netboard.kb.loader import parse_kb, read_kb_files, yaml_sources
from netboard.kb.model import KnowledgeBase

__all__ = [
    "KnowledgeBase",
    "check_kb_dir",
    "compile_kb",
    "load_kb",
    "packaged_document",
    "source_digest",
]

COMPILED = "compiled.json"


def _root(path: str | Path | None) -> Traversable:
    return files("netboard.kb") if path is None else Path(path)


def source_digest(root: Traversable) -> str:
    """SHA-256 over every YAML source (relative path and bytes), in path order."""
    h = hashlib.sha256()
    for rel, entry in yaml_sources(root):
        h.update(rel.encode())
        h.update(b"\0")
        h.update(entry.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def _documents(root: Traversable) -> dict[str, Any]:
    snapshot = root / COMPILED
    if snapshot.is_file():
        data = json.loads(snapshot.read_text("utf-8"))
        if data.get("source_sha256") == source_digest(root):
            docs: dict[str, Any] = data["documents"]
            return docs
    return read_kb_files(root)


@lru_cache(maxsize=1)
def _packaged_documents() -> dict[str, Any]:
    return _documents(_root(None))


def packaged_document(name: str) -> Any:
    """One parsed YAML document of the packaged knowledge base (``fields.yaml``), or None."""
    return _packaged_documents().get(name)


def check_kb_dir(path: str | Path | None = None) -> tuple[KnowledgeBase | None, list[Problem]]:
    """Read and check a knowledge-base directory (default: the packaged one)."""
    try:
        docs = _packaged_documents() if path is None else _documents(_root(path))
    except Exception as exc:  # any YAML, JSON or I/O failure becomes a reported problem
        return None, [Problem(str(path or "netboard.kb"), f"cannot read: {exc}")]
    return parse_kb(docs)


def compile_kb(path: str | Path) -> Path:
    """Write ``compiled.json`` for the knowledge base in directory ``path``; return its path.

    Mapping order is kept as the YAML gives it: the field registry's order is the contract's.
    """
    root = Path(path)
    docs = read_kb_files(root)
    payload = {"source_sha256": source_digest(root), "documents": docs}
    out = root / COMPILED
    out.write_text(
        json.dumps(payload, ensure_ascii=False, default=str, separators=(",", ":")) + "\n",
        encoding="utf-8",
    )
    return out


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
