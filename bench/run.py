"""netboard benchmarks: in-process recommend latency and whole-process CLI wall time.

Run with ``python bench/run.py`` (or ``make bench``) from the checkout, with netboard installed
in the same environment. Results are printed and written to ``docs/benchmarks.md``.
Targets (issue 2): median in-process recommend <= 1 ms per case; whole-process
``netboard recommend`` on one case <= 0.3 s. Issue 10: the whole answer with its board part
(plan, presumptions, what-ifs) on sparse cases, median <= 2 ms and at most 3x the strict
answer alone, measured side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from netboard.case import load_case
from netboard.engine.recommend import recommend
from netboard.kb import load_kb
from netboard.vocab import (
    Comorbidity,
    Differentiation,
    DiseaseStatus,
    FunctionalSyndrome,
    Imaging,
    Intervention,
    LiverDistribution,
    MetastaticSite,
    Resectable,
    Site,
)

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("NETBOARD_SHARED", ROOT.parent / "shared"))
TARGET_MS = 1.0
TARGET_WALL_S = 0.3
TARGET_BOARD_MS = 2.0
TARGET_BOARD_RATIO = 3.0


def generated_cases(n: int, seed: int = 20261121, present: float = 0.7) -> list[dict[str, Any]]:
    """Seeded random contract cases; each field present with probability ``present``."""
    rng = random.Random(seed)

    def maybe(value: Any) -> Any:
        return value if rng.random() < present else None

    out = []
    for i in range(n):
        site = rng.choice(list(Site)).value
        ki67 = round(rng.choice([rng.uniform(0.5, 3), rng.uniform(3, 20), rng.uniform(20, 90)]), 1)
        diff = Differentiation.POOR.value if ki67 > 55 and rng.random() < 0.7 else "well"
        prior = rng.sample([c.value for c in Intervention], k=rng.randint(0, 3))
        case: dict[str, Any] = {
            "id": f"gen-{i}",
            "age_years": maybe(rng.randint(18, 85)),
            "sex": maybe(rng.choice(["female", "male"])),
            "primary_site": maybe(site),
            "differentiation": maybe(diff),
            "ki67_percent": maybe(ki67),
            "functional_syndrome": maybe(rng.choice(list(FunctionalSyndrome)).value),
            "sstr_imaging": maybe(rng.choice(list(Imaging)).value),
            "metastatic_sites": maybe(
                rng.sample([m.value for m in MetastaticSite], k=rng.randint(0, 3))
            ),
            "liver_tumor_burden_percent": maybe(rng.randint(0, 90)),
            "liver_resectable": maybe(rng.choice(list(Resectable)).value),
            "liver_distribution": maybe(rng.choice(list(LiverDistribution)).value),
            "disease_status": maybe(
                rng.choice([DiseaseStatus.STABLE.value, DiseaseStatus.PROGRESSIVE.value])
            ),
            "prior_treatments": maybe(prior),
            "progressed_on": maybe(prior[:1]) if prior else None,
            "ecog": maybe(rng.randint(0, 4)),
            "comorbidities": maybe(rng.sample([c.value for c in Comorbidity], k=rng.randint(0, 2))),
            "primary_resected": maybe(rng.random() < 0.4),
        }
        if case["primary_site"] == "pancreas":
            case["pancreas_region"] = maybe(rng.choice(["head", "neck", "body", "tail"]))
        if case.get("progressed_on") and case.get("prior_treatments") is None:
            case["progressed_on"] = None
        out.append({k: v for k, v in case.items() if v is not None})
    return out


def vignette_cases() -> list[dict[str, Any]]:
    folders = [SHARED / "cases", ROOT / "tests" / "vignettes"]
    cases = []
    for folder in folders:
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            doc = yaml.safe_load(path.read_text())
            if isinstance(doc, dict) and "case" in doc:
                cases.append(doc["case"])
    return cases


def bench_in_process(raw_cases: list[dict[str, Any]], repeat: int) -> dict[str, float]:
    kb = load_kb()
    cases = [load_case(c) for c in raw_cases]
    for c in cases[:20]:  # warm-up: builds the per-KB plan once
        recommend(c, kb=kb)
    times = []
    for _ in range(repeat):
        for c in cases:
            t0 = time.perf_counter()
            recommend(c, kb=kb)
            times.append(time.perf_counter() - t0)
    times.sort()
    return {
        "cases": len(cases),
        "runs": len(times),
        "median_ms": statistics.median(times) * 1000,
        "p95_ms": times[int(0.95 * (len(times) - 1))] * 1000,
        "mean_ms": statistics.fmean(times) * 1000,
    }


def bench_board(raw_cases: list[dict[str, Any]], repeat: int) -> dict[str, float]:
    """The whole answer against the strict answer alone (``board_answer=False``), case by
    case in alternation so that both see the same machine state."""
    kb = load_kb()
    cases = [load_case(c) for c in raw_cases]
    for c in cases[:20]:
        recommend(c, kb=kb)
    whole: list[float] = []
    strict: list[float] = []
    ratios: list[float] = []
    presumed = 0
    for _ in range(repeat):
        for c in cases:
            t0 = time.perf_counter()
            recommend(c, kb=kb, board_answer=False)
            t1 = time.perf_counter()
            answer = recommend(c, kb=kb)
            t2 = time.perf_counter()
            strict.append(t1 - t0)
            whole.append(t2 - t1)
            ratios.append((t2 - t1) / (t1 - t0))
            presumed += bool(answer.presumptions)
    whole.sort()
    strict.sort()
    return {
        "cases": len(cases),
        "runs": len(whole),
        "presumed_share": presumed / len(whole),
        "median_ms": statistics.median(whole) * 1000,
        "p95_ms": whole[int(0.95 * (len(whole) - 1))] * 1000,
        "strict_median_ms": statistics.median(strict) * 1000,
        "ratio_of_medians": statistics.median(whole) / statistics.median(strict),
        "median_ratio": statistics.median(ratios),
    }


def bench_whole_process(runs: int) -> dict[str, float]:
    exe = Path(sys.executable).parent / "netboard"
    case = ROOT / "examples" / "sigmoid.yaml"
    argv = [str(exe), "recommend", str(case), "--format", "json"]
    subprocess.run(argv, check=True, capture_output=True)  # warm the file cache
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    times.sort()
    return {
        "runs": runs,
        "median_s": statistics.median(times),
        "p95_s": times[int(0.95 * (len(times) - 1))],
        "min_s": times[0],
    }


HEADER = """# Benchmarks

Each section is written by the benchmark script it names (`make bench` runs them). Benchmarks
are not tests: nothing fails on a slow run, but a regression shows here.
"""


def write_section(path: Path, name: str, body: str) -> None:
    """Replace the ``name`` section of the benchmarks page (between its markers) with ``body``."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def verdict(value: float, target: float) -> str:
    return "meets" if value <= target else "MISSES"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generated", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()

    vig = bench_in_process(vignette_cases(), args.repeat * 4)
    gen = bench_in_process(generated_cases(args.generated), args.repeat)
    sparse = bench_board(generated_cases(args.generated // 2, seed=7, present=0.4), args.repeat)
    wall = bench_whole_process(args.runs)
    kb = load_kb()
    result = {"vignettes": vig, "generated": gen, "board": sparse, "whole_process": wall}
    print(json.dumps(result, indent=2))

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = [
        "## Core engine (issue 2)",
        "",
        f"`python bench/run.py` on the development machine ({machine}), knowledge base",
        f"{kb.version}.",
        "",
        "| measure | result | target | verdict |",
        "|---|---|---|---|",
        f"| in-process `recommend`, public and own vignettes ({vig['cases']} cases, "
        f"{vig['runs']} runs): median | {vig['median_ms']:.3f} ms (p95 {vig['p95_ms']:.3f} ms) "
        f"| <= {TARGET_MS:g} ms | {verdict(vig['median_ms'], TARGET_MS)} |",
        f"| in-process `recommend`, generated cases ({gen['cases']} cases, {gen['runs']} runs): "
        f"median | {gen['median_ms']:.3f} ms (p95 {gen['p95_ms']:.3f} ms) | <= {TARGET_MS:g} ms "
        f"| {verdict(gen['median_ms'], TARGET_MS)} |",
        f"| whole process `netboard recommend examples/sigmoid.yaml --format json` "
        f"({wall['runs']} runs): median | {wall['median_s']:.3f} s (p95 {wall['p95_s']:.3f} s, "
        f"min {wall['min_s']:.3f} s) | <= {TARGET_WALL_S:g} s "
        f"| {verdict(wall['median_s'], TARGET_WALL_S)} |",
        "",
        "Since contract 2 `recommend` includes the board answer (plan, presumptions, what-ifs;",
        "next section), which the 1 ms target of issue 2 predates.",
        "The generated cases leave each field out with probability 0.3, so a typical one keeps",
        "about 19 of its 27 recommendations as open branches, each with its `applies_if` text and",
        "its share of `missing_information`: that is what puts them above the vignettes. Hot-path",
        "work so far: conditions compiled once into closures, guards folded into each code's rules",
        "once per knowledge base and evaluated once per case, `applies_if` texts memoised.",
        "",
        "Start-up is kept light by importing Jinja2, YAML and the renderers only when needed and",
        "by reading the knowledge base from `compiled.json` (a hash-checked snapshot of the YAML)",
        "instead of parsing YAML at every start.",
    ]
    write_section(Path(args.out), "core", "\n".join(lines))
    board_lines = [
        "## The board answer (issue 10)",
        "",
        f"`python bench/run.py`, same run. {sparse['cases']} sparse generated cases (each field",
        f"present with probability 0.4; {sparse['presumed_share']:.0%} of the answers state a",
        "presumption), each answered twice in alternation: the whole answer, and the strict",
        "answer alone (`recommend(..., board_answer=False)`).",
        "",
        "| measure | result | target | verdict |",
        "|---|---|---|---|",
        f"| whole answer with plan, presumptions and what-ifs ({sparse['runs']} runs): median "
        f"| {sparse['median_ms']:.3f} ms (p95 {sparse['p95_ms']:.3f} ms) "
        f"| <= {TARGET_BOARD_MS:g} ms | {verdict(sparse['median_ms'], TARGET_BOARD_MS)} |",
        f"| strict answer alone: median | {sparse['strict_median_ms']:.3f} ms | | |",
        f"| whole / strict, median of the per-case ratios | {sparse['median_ratio']:.2f}x "
        f"(ratio of medians {sparse['ratio_of_medians']:.2f}x) | <= {TARGET_BOARD_RATIO:g}x "
        f"| {verdict(sparse['median_ratio'], TARGET_BOARD_RATIO)} |",
        "",
        "The 2 ms target was set when the strict answer took about 0.7 ms; with the knowledge",
        "base of this release (125 rules, 98 facts) the strict answer alone takes about 2 ms on",
        "sparse cases, so the absolute target cannot be met by the board step; the ratio can.",
        "A sparse case carries about 7 what-ifs (a functional syndrome, a hereditary syndrome,",
        "performance status, disease status, Ki-67 bands, ...), each decided again from the",
        "presumed case's decision: only the rule steps and facts that read the changed field are",
        "evaluated again, presumed fields that the stated case already settles are skipped, and",
        "a what-if is decided for truth values only (no residual conditions, unknown-field sets",
        "or choice among open branches, which only the strict answer shows). Before these",
        "shortcuts: 8.2 ms, 4.3x; with the first two: 5.9 ms, 2.97x; with all three, 4.1 ms,",
        "2.21x earlier the same day. Measured side by side afterwards, that code took 4.4-4.6",
        "ms (2.25x) and this release 4.8 ms (2.47x), the strict answers alike (2.0 ms): the",
        "machine ran slower than in the earlier run, and this release adds a decision of what",
        "a plan without treatment waits for and the what-ifs of a new presumption. Splitting",
        "each rule step into its own condition and its folded guards, to skip a false rule",
        "when only a guard's field changed, was tried and measured no faster, so it was not",
        "kept. What remains is the",
        "evaluation of the steps that read common fields (an ECOG what-if re-evaluates about",
        "100 of the 180 rule steps, a syndrome about 50).",
    ]
    write_section(Path(args.out), "board", "\n".join(board_lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
