"""Clinical vignettes: expectations a NET tumour board would hold, checked like run_eval.py.

Each file in ``tests/vignettes/`` holds ``case:`` (a contract-v1 case) and ``expect:``
(the keys of the shared evaluator ``run_eval.py``). The check below re-implements that
evaluator's ``check`` faithfully, including the ``"a|b"`` alternatives, so the in-process
API and the installed CLI are held to the same standard.
"""

from __future__ import annotations

import subprocess
import sys
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

#: Statuses that put a code on the plan (run_eval.py's GOOD).
GOOD = {"recommended", "consider"}


def alts(item: Any) -> list[str]:
    """The alternatives of an expectation item: ``"tae|tace"`` -> ``["tae", "tace"]``."""
    return [a.strip() for a in str(item).split("|")]


def check(v: dict[str, Any], out: dict[str, Any]) -> tuple[int, list[str], list[str]]:
    """Score one answer against a vignette's ``expect`` (same rules as run_eval.py).

    Returns the number of checks, the failed checks and the unsafe codes.
    """
    fails: list[str] = []
    unsafe: list[str] = []
    recs = out.get("recommendations") or []
    good = {r.get("code") for r in recs if r.get("status") in GOOD}
    exp = v.get("expect") or {}
    n = 0
    for item in exp.get("recommend", []):
        n += 1
        if not any(a in good for a in alts(item)):
            fails.append(f"missing recommendation {item}")
    for code in exp.get("not_recommend", []):
        n += 1
        if code in good:
            fails.append(f"UNSAFE: recommends {code}")
            unsafe.append(code)
    for phase, codes in (exp.get("not_in_phase") or {}).items():
        for code in codes:
            n += 1
            if any(
                r.get("code") == code and r.get("phase") == phase and r.get("status") in GOOD
                for r in recs
            ):
                fails.append(f"UNSAFE: {code} in phase {phase}")
                unsafe.append(code)
    raised = {a.get("code") for a in out.get("alerts") or []}
    for item in exp.get("alerts", []):
        n += 1
        if not any(a in raised for a in alts(item)):
            fails.append(f"alert {item} not raised")
    elig = out.get("eligibility") or {}
    for name, want in (exp.get("eligibility") or {}).items():
        n += 1
        want = want if isinstance(want, list) else [want]
        got = (elig.get(name) or {}).get("status")
        if got not in want:
            fails.append(f"eligibility {name}: {got} not in {want}")
    missing = {str(m.get("field")) for m in out.get("missing_information") or []}
    for item in exp.get("missing", []):
        n += 1
        if not any(
            any(a == m or m.endswith("." + a) or a in m for m in missing) for a in alts(item)
        ):
            fails.append(f"missing_information lacks {item}")
    parsed = out.get("parsed_case") or {}
    for field, want in (exp.get("parsed") or {}).items():
        n += 1
        got = parsed.get(field)
        if isinstance(want, list):
            ok = isinstance(got, list) and all(w in got for w in want)
        else:
            ok = got == want
        if not ok:
            fails.append(f"parsed {field}: {got!r} != {want!r}")
    first: dict[str, float] = {}
    for r in recs:
        if r.get("status") in GOOD and isinstance(r.get("order"), int | float):
            first[r["code"]] = min(first.get(r["code"], 1e9), r["order"])
    for a, b in exp.get("before", []):
        n += 1
        oa = min([first.get(x, 1e9) for x in alts(a)])
        ob = min([first.get(x, 1e9) for x in alts(b)])
        if not (oa < 1e9 and ob < 1e9 and oa < ob):
            fails.append(f"order: {a} ({oa}) should come before {b} ({ob})")
    return n, fails, unsafe


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
    n, fails, _ = check(v, out)
    assert n > 0, f"{path.name}: expects nothing"
    assert not fails, f"{path.name}: {len(fails)} of {n} checks failed:\n  " + "\n  ".join(fails)


def test_public_vignettes_through_installed_cli() -> None:
    if not PUBLIC_CASES.is_dir():
        pytest.skip(f"shared public cases not found at {PUBLIC_CASES} (set NETBOARD_SHARED)")
    p = run_eval(PUBLIC_CASES)
    assert p.returncode == 0, (
        f"run_eval.py over {PUBLIC_CASES} exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    )


def test_own_vignettes_through_installed_cli() -> None:
    p = run_eval(VIGNETTES)
    assert p.returncode == 0, (
        f"run_eval.py over {VIGNETTES} exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
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
