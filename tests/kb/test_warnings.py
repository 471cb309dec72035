"""`netboard kb check` names what a reviewer must see: blanket overrides and rules a guard
always blocks (issue: guards with named exceptions)."""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

import pytest

from netboard.cli import main
from netboard.kb import load_kb
from netboard.kb.checks import kb_warnings

RETREAT_BLOCKED = """
- id: progression.planted_prrt_again
  code: prrt
  phase: progression
  status: consider
  step: 55
  action: "177Lu-DOTATATE again"
  when:
    all:
      - {fact: had_prrt}
      - {fact: sstr_positive}
  rationale: Planted by a test.
  evidence: [label_lutathera]
"""

BLANKET = """
- id: progression.planted_blanket
  code: prrt
  phase: progression
  status: consider
  step: 55
  action: "177Lu-DOTATATE"
  overrides_guards: true
  when: {fact: sstr_positive}
  rationale: Planted by a test.
  evidence: [label_lutathera]
"""


def planted(tmp_path: Path, text: str) -> Path:
    root = tmp_path / "kb"
    shutil.copytree(str(files("netboard.kb")), root)
    (root / "compiled.json").unlink()
    with (root / "rules" / "progression.yaml").open("a", encoding="utf-8") as fh:
        fh.write(text)
    return root


def test_the_packaged_knowledge_base_has_no_warning() -> None:
    # Consider rules resting on unverified references are warnings too: the packaged ones are
    # an explicit list in tests/kb/test_verified.py.
    assert [w for w in kb_warnings(load_kb()) if "unverified" not in w.message] == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (RETREAT_BLOCKED, "progression.planted_prrt_again: can never put prrt on the plan"),
        (BLANKET, "progression.planted_blanket: overrides every guard of its code"),
    ],
    ids=["dead-rule", "blanket-override"],
)
def test_kb_check_names_a_planted_dead_rule_and_a_blanket_override(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, words: str
) -> None:
    assert main(["kb", "check", str(planted(tmp_path, text))]) == 0
    out = capsys.readouterr().out
    assert f"warning: rule {words}" in out


def test_a_rule_may_pass_only_a_guard_of_its_own_code(tmp_path: Path) -> None:
    text = RETREAT_BLOCKED.replace("  when:", "  passes: [first_line.no_ssa_nec]\n  when:", 1)
    assert main(["kb", "check", str(planted(tmp_path, text))]) == 2


def test_passing_the_guard_by_name_makes_the_rule_live(tmp_path: Path) -> None:
    text = RETREAT_BLOCKED.replace(
        "  when:", "  passes: [progression.prrt_already_given]\n  when:", 1
    )
    from netboard.kb import check_kb_dir

    kb, problems = check_kb_dir(planted(tmp_path, text))
    assert problems == []
    assert kb is not None
    assert not [w for w in kb_warnings(kb) if "planted" in w.field]
