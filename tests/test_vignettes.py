"""Clinical vignettes: expectations a NET tumour board would hold, checked by run_eval.py.

Each file in ``tests/vignettes/`` holds ``case:`` (a contract case) and ``expect:`` (the keys
of the shared evaluator ``../shared/eval/run_eval.py``). The in-process answers are scored
with that evaluator's own ``check`` function, loaded from its file, and the installed CLI with
the evaluator itself, so both are held to exactly the outside standard.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import SHARED
from netboard.answer import Answer
from netboard.case import load_case
from netboard.engine.recommend import recommend
from netboard.kb import KnowledgeBase

VIGNETTES = Path(__file__).resolve().parent / "vignettes"
VIGNETTE_FILES = sorted(VIGNETTES.glob("*.yaml"))
RUN_EVAL = SHARED / "eval" / "run_eval.py"
PUBLIC_CASES = SHARED / "cases"


def _shared_check() -> Callable[[dict[str, Any], dict[str, Any]], tuple[int, list[str], list[str]]]:
    """The shared evaluator's own ``check`` (run_eval.py), loaded from its file."""
    if not RUN_EVAL.is_file():
        pytest.skip(f"shared evaluator not found at {RUN_EVAL} (set NETBOARD_SHARED)")
    spec = importlib.util.spec_from_file_location("netboard_shared_run_eval", RUN_EVAL)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    check: Callable[[dict[str, Any], dict[str, Any]], tuple[int, list[str], list[str]]]
    check = module.check
    return check


def load_vignette(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name}: not a mapping"
    return data


def answer_for(path: Path) -> Answer:
    return recommend(load_case(load_vignette(path)["case"]))


def netboard_script() -> Path:
    """The installed ``netboard`` console script of the running interpreter's environment."""
    return Path(sys.executable).parent / ("netboard.exe" if sys.platform == "win32" else "netboard")


def run_eval(folder: Path) -> subprocess.CompletedProcess[str]:
    if not RUN_EVAL.is_file():
        pytest.skip(f"shared evaluator not found at {RUN_EVAL} (set NETBOARD_SHARED)")
    script = netboard_script()
    if not script.is_file():
        pytest.skip(f"installed netboard script not found next to {sys.executable}")
    return subprocess.run(
        [sys.executable, str(RUN_EVAL), str(folder), "--netboard", str(script), "--verbose"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )


def test_there_are_enough_vignettes() -> None:
    assert len(VIGNETTE_FILES) >= 45, f"only {len(VIGNETTE_FILES)} vignettes in {VIGNETTES}"


@pytest.mark.parametrize("path", VIGNETTE_FILES, ids=[p.stem for p in VIGNETTE_FILES])
def test_vignette(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# "), (
        f"{path.name}: first line must be a comment stating the clinical point"
    )
    v = load_vignette(path)
    assert set(v) == {"case", "expect"}, (
        f"{path.name}: keys must be exactly case and expect, got {sorted(v)}"
    )
    out = recommend(load_case(v["case"])).to_dict()
    n, fails, _ = _shared_check()(v, out)
    assert n > 0, f"{path.name}: expects nothing"
    assert not fails, f"{path.name}: {len(fails)} of {n} checks failed:\n  " + "\n  ".join(fails)


def test_public_vignettes_through_installed_cli() -> None:
    if not PUBLIC_CASES.is_dir():
        pytest.skip(f"shared public cases not found at {PUBLIC_CASES} (set NETBOARD_SHARED)")
    p = run_eval(PUBLIC_CASES)
    assert p.returncode == 0, (
        f"run_eval.py over {PUBLIC_CASES} exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    )


#: Public contract-v2 vignettes that pass, added as the issues that make them pass land.
PUBLIC_V2 = (
    "01-seed-sigmoid-question.yaml",
    "03-seed-pancreas-tail-question.yaml",
    "16-small-bowel-question-plausible.yaml",
    "17-appendix-localised-25mm.yaml",
    "18-pregnant-pnet-progressive.yaml",
    "19-ecog3-elderly-ileal.yaml",
    "20-small-pnet-surveillance.yaml",
)


def test_public_v2_vignettes_through_installed_cli(tmp_path: Path) -> None:
    folder = PUBLIC_CASES / "v2"
    if not folder.is_dir():
        pytest.skip(f"shared v2 cases not found at {folder} (set NETBOARD_SHARED)")
    for name in PUBLIC_V2:
        (tmp_path / name).symlink_to(folder / name)
    p = run_eval(tmp_path)
    assert p.returncode == 0, f"run_eval.py over {PUBLIC_V2} exited {p.returncode}:\n{p.stdout}"


@pytest.mark.parametrize("part", range(4))
def test_own_vignettes_through_installed_cli(part: int, tmp_path: Path) -> None:
    """Every own vignette through the installed CLI, in four parts that run in parallel (one
    process per vignette makes the whole folder the suite's longest single test)."""
    for path in VIGNETTE_FILES[part::4]:
        (tmp_path / path.name).symlink_to(path)
    p = run_eval(tmp_path)
    assert p.returncode == 0, (
        f"run_eval.py over part {part} of {VIGNETTES} exited {p.returncode}:\n{p.stdout}\n"
        f"{p.stderr}"
    )


def test_vignettes_cover_every_rule_and_alert(kb: KnowledgeBase) -> None:
    fired: set[str] = set()
    for path in VIGNETTE_FILES:
        answer = answer_for(path)
        fired.update(r.rule_id for r in answer.recommendations)
        fired.update(a.rule_id for a in answer.alerts)
    rules = {r.id for r in kb.rules}
    alerts = {a.id for a in kb.alerts}
    uncovered = [f"rule {r}" for r in sorted(rules - fired)]
    uncovered += [f"alert {a}" for a in sorted(alerts - fired)]
    assert not uncovered, (
        f"{len(uncovered)} rule/alert id(s) never fired by any vignette:\n  "
        + "\n  ".join(uncovered)
    )


def test_vignettes_reach_every_eligibility_status(kb: KnowledgeBase) -> None:
    reached: set[tuple[str, str]] = set()
    for path in VIGNETTE_FILES:
        for e in answer_for(path).eligibility:
            reached.add((e.name.value, e.status.value))
    wanted = {
        (e.name.value, status)
        for e in kb.eligibility
        for status in ("eligible", "not_eligible", "undetermined")
    }
    assert not wanted - reached, f"eligibility statuses never reached: {sorted(wanted - reached)}"
