"""Shared fixtures: the packaged knowledge base, golden files, vignette loading."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from netboard.kb import KnowledgeBase, load_kb

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
#: The public vignettes and evaluator live beside the checkout (../shared), or where
#: NETBOARD_SHARED points.
SHARED = Path(os.environ.get("NETBOARD_SHARED", ROOT.parent / "shared"))


#: The top-level keys of a contract v1 answer.
ANSWER_KEYS = frozenset(
    {
        "contract_version",
        "knowledge_base",
        "case_id",
        "summary",
        "classification",
        "recommendations",
        "alerts",
        "eligibility",
        "monitoring",
        "missing_information",
        "references",
    }
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files instead of comparing against them",
    )


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return load_kb()


class Golden:
    """Compare text with a golden file, or rewrite it under --update-golden."""

    def __init__(self, update: bool, kb_version: str) -> None:
        self.update = update
        self.kb_version = kb_version

    def check(self, name: str, text: str) -> None:
        # Only the knowledge-base version is masked, so a KB bump alone rewrites no golden.
        text = text.replace(self.kb_version, "<kb-version>")
        path = GOLDEN / name
        if self.update or not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            if not self.update:
                pytest.fail(f"golden file {path} was missing and has been written; re-run")
            return
        expected = path.read_text(encoding="utf-8")
        if text != expected:
            diff = "".join(
                difflib.unified_diff(
                    expected.splitlines(True),
                    text.splitlines(True),
                    f"golden/{name}",
                    "actual",
                    n=2,
                )
            )
            pytest.fail(
                f"{name} differs from its golden file (pytest --update-golden rewrites it):\n"
                + diff[:4000]
            )


@pytest.fixture
def golden(request: pytest.FixtureRequest, kb: KnowledgeBase) -> Golden:
    return Golden(bool(request.config.getoption("--update-golden")), kb.version)
