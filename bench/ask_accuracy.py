"""netboard ask: per-field precision and recall over the phrasing corpus, and its speed.

Run with ``python bench/ask_accuracy.py`` from the checkout, netboard installed in the same
environment. Writes the ``ask`` section of ``docs/benchmarks.md``:

- precision and recall per field and micro-averaged over ``tests/parse_corpus.yaml``
  (targets of the free-text issue: precision >= 0.98, recall >= 0.95), and the count of
  negation errors (a value the corpus lists under ``not:`` that was extracted anyway);
- the same on the two held-out sets: ``tests/parse_heldout.yaml`` (annotated for contract
  version 1, so scored on version 1 fields) and ``tests/parse_heldout_v2.yaml`` (issue 14:
  paraphrased from published case reports, written before that issue's tuning);
- whole-process wall time of ``netboard ask`` on a typical note (target < 1 s), with
  ``netboard recommend`` for comparison;
- the measurement behind the choice of lean extractors over a clinical NLP library:
  ``--medspacy-python PATH`` (a Python interpreter of a throwaway environment with medspacy
  installed) measures medspacy and stores the numbers in ``bench/medspacy.json``; without
  it the stored numbers are reported.

The counting is shared with the tests (``tests/unit/ask_scoring.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "unit"))

from ask_scoring import (  # noqa: E402
    HELDOUT,
    HELDOUT_V2,
    TARGET_PRECISION,
    TARGET_RECALL,
    Score,
    load_corpus,
    negation_items,
    score_corpus,
    v1_fields,
)
from run import write_section  # noqa: E402

from netboard.parse import parse_text  # noqa: E402

TARGET_ASK_S = 1.0
TARGET_RECOMMEND_S = 0.3
MEDSPACY_JSON = ROOT / "bench" / "medspacy.json"
#: A typical short note (one of the corpus texts).
NOTE = (
    "Hx: 67yo M with well-differentiated ileal NET, G2 (Ki-67 7%), s/p ileocecal resection "
    "2019. Now bilobar liver mets, Ga-68 DOTATATE avid. Carcinoid syndrome with flushing and "
    "diarrhea. On lanreotide 120mg since 2020, radiological progression per RECIST. ECOG 1. "
    "CrCl 65, plt 180."
)

# Run by the medspacy interpreter: import, load the default pipeline (sentence splitter,
# target matcher, ConText), add target rules for the lexicon's site and tumour words, then
# read the note.
_MEDSPACY_SNIPPET = r"""
import json, statistics, sys, time
t0 = time.perf_counter()
import medspacy
from medspacy.ner import TargetRule
t1 = time.perf_counter()
nlp = medspacy.load()
t2 = time.perf_counter()
rules = json.loads(sys.stdin.read())
nlp.get_pipe("medspacy_target_matcher").add(
    [TargetRule(p, label) for label, phrases in rules["rules"].items() for p in phrases]
)
t3 = time.perf_counter()
doc = nlp(rules["note"])
t4 = time.perf_counter()
if sys.argv[1:] == ["once"]:
    raise SystemExit(0)
runs = []
for _ in range(20):
    s = time.perf_counter()
    nlp(rules["note"])
    runs.append(time.perf_counter() - s)
print(json.dumps({
    "medspacy": medspacy.__version__,
    "pipeline": nlp.pipe_names,
    "rules": sum(len(v) for v in rules["rules"].values()),
    "import_s": t1 - t0,
    "load_s": t2 - t1,
    "rules_s": t3 - t2,
    "first_note_s": t4 - t3,
    "note_median_s": statistics.median(runs),
    "entities": [[e.text, e.label_, bool(e._.is_negated)] for e in doc.ents],
}))
"""


def _median_wall(argv: list[str], runs: int, stdin: str | None = None) -> dict[str, float]:
    subprocess.run(argv, check=True, capture_output=True, input=stdin, text=True)  # warm cache
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, input=stdin, text=True)
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"runs": runs, "median_s": statistics.median(times), "min_s": times[0]}


def bench_cli(runs: int) -> dict[str, Any]:
    exe = str(Path(sys.executable).parent / "netboard")
    ask = _median_wall([exe, "ask", NOTE, "--format", "json"], runs)
    case = str(ROOT / "examples" / "sigmoid.yaml")
    rec = _median_wall([exe, "recommend", case, "--format", "json"], runs)
    return {"ask": ask, "recommend": rec, "load": os.getloadavg()[0]}


def bench_lean() -> dict[str, float]:
    """In-process: compiling the lexicon and ConText rules once, then one note."""
    from netboard.parse.extract import lexicon
    from netboard.parse.negation import context_rules

    lexicon.cache_clear()
    context_rules.cache_clear()
    t0 = time.perf_counter()
    context_rules(lexicon())
    t1 = time.perf_counter()
    parse_text(NOTE)
    t2 = time.perf_counter()
    times = []
    for _ in range(20):
        s = time.perf_counter()
        parse_text(NOTE)
        times.append(time.perf_counter() - s)
    return {
        "compile_s": t1 - t0,
        "first_note_ms": (t2 - t1) * 1000,
        "note_median_ms": statistics.median(times) * 1000,
    }


def _medspacy_rules() -> dict[str, list[str]]:
    """The lexicon's primary-site, metastatic-site and tumour words as medspacy target rules."""
    from netboard.parse.extract import lexicon

    data = lexicon().data
    rules: dict[str, list[str]] = {"TUMOR": [p.lstrip("=") for p in data["tumor_nouns"]]}
    for site, phrases in data["primary_site"]["words"].items():
        rules[f"SITE_{site.upper()}"] = [p for p in phrases if not p.startswith("re:")]
    for site, phrases in data["metastatic_sites"]["site_words"].items():
        rules[f"MET_{site.upper()}"] = [p.lstrip("=") for p in phrases]
    return rules


def measure_medspacy(python: str, runs: int) -> dict[str, Any]:
    """Time medspacy in its own interpreter; whole-process wall time over ``runs`` runs."""
    pip = subprocess.run(
        [python, "-m", "pip", "--version"], capture_output=True, text=True, check=False
    )
    payload = json.dumps({"rules": _medspacy_rules(), "note": NOTE})
    proc = subprocess.run(
        [python, "-c", _MEDSPACY_SNIPPET],
        input=payload,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    wall = _median_wall([python, "-c", _MEDSPACY_SNIPPET, "once"], runs, stdin=payload)
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    size = sum(f.stat().st_size for f in Path(site).rglob("*") if f.is_file())
    result.update(
        whole_process_median_s=wall["median_s"],
        whole_process_runs=wall["runs"],
        installed_mb=round(size / 1e6),
        python=platform.python_version(),
        pip=pip.stdout.split(" from ")[0],
        measured=time.strftime("%Y-%m-%d"),
    )
    return result


def _para(text: str) -> list[str]:
    return textwrap.wrap(" ".join(text.split()), width=95)


def _pct(x: float) -> str:
    return f"{x:.3f}"


def _verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def _result_rows(label: str, score: Score) -> list[str]:
    total = score.total
    return [
        f"| {label}: precision ({total.tp + total.fp} values extracted) | "
        f"{_pct(total.precision)} | >= {TARGET_PRECISION} | "
        f"{_verdict(total.precision >= TARGET_PRECISION)} |",
        f"| {label}: recall ({total.support} values stated) | {_pct(total.recall)} | "
        f">= {TARGET_RECALL} | {_verdict(total.recall >= TARGET_RECALL)} |",
        f"| {label}: negation errors ({score.negations_checked} `not:` values checked) | "
        f"{len(score.negation_errors)} | 0 | {_verdict(not score.negation_errors)} |",
        f"| {label}: phrasings read exactly | {score.exact} of {score.items} | | |",
    ]


#: Measured at commit 2de0da2 (the second held-out set committed, before any issue-14 change),
#: with this script's counting: the reference for "before" in the benchmarks page.
BEFORE_ISSUE_14 = {
    "held out": {"precision": 0.988, "recall": 0.911},
    "held out v2": {"precision": 0.981, "recall": 0.619},
}


def section(
    score: Score,
    items: list[dict[str, Any]],
    heldout: Score,
    heldout_v2: Score,
    cli: dict[str, Any],
    lean: dict[str, float],
    med: dict[str, Any] | None,
) -> str:
    """The markdown of the ``ask`` section of the benchmarks page."""
    gaps = [i for i in items if i.get("known_gap")]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    ask, rec = cli["ask"], cli["recommend"]
    lines = ["## Free text: `netboard ask`", ""]
    lines += _para(
        f"`python bench/ask_accuracy.py` on the development machine ({machine}). Corpus "
        f"`tests/parse_corpus.yaml`: {len(items)} phrasings (clinicians' questions and short "
        f"note fragments, with negations, abbreviations and typos), "
        f"{len(negation_items(items))} of them with negated or uncertain mentions listed "
        f"under `not:`. Held out: `tests/parse_heldout.yaml`, {heldout.items} phrasings "
        "written before contract version 2 (scored on version 1 fields, as annotated), and "
        f"`tests/parse_heldout_v2.yaml`, {heldout_v2.items} notes and questions paraphrased "
        "from published NET case reports, written and committed before the tuning for issue "
        "14 and never used for it. A predicted list element is a true positive when the "
        "corpus lists it (an empty list, `metastatic_sites: []` for localised disease, is one "
        "element); a single value when it equals the stated one (a wrong value is a false "
        "positive and a false negative); the overall figures are micro-averaged over all "
        "field values."
    )
    lines += ["", "| measure | result | target | verdict |", "|---|---|---|---|"]
    lines += _result_rows("corpus", score)
    lines += _result_rows("held out v2 (case reports)", heldout_v2)
    lines += _result_rows("held out (v1 fields)", heldout)
    lines += [
        f"| whole process `netboard ask NOTE --format json` ({ask['runs']} runs): median "
        f"| {ask['median_s']:.3f} s (min {ask['min_s']:.3f} s) | < {TARGET_ASK_S:g} s "
        f"| {_verdict(ask['median_s'] < TARGET_ASK_S)} |",
        f"| for comparison, `netboard recommend examples/sigmoid.yaml --format json` "
        f"({rec['runs']} runs): median | {rec['median_s']:.3f} s (min {rec['min_s']:.3f} s) "
        f"| <= {TARGET_RECOMMEND_S:g} s | {_verdict(rec['median_s'] <= TARGET_RECOMMEND_S)} |",
        "",
    ]
    lines += _para(
        f'NOTE is the {len(NOTE)}-character clinic note of the corpus ("Hx: 67yo M with '
        'well-differentiated ileal NET ..."). The held-out figures are the better guide to '
        "new wording: the corpus is a development set. A mention is used only when plainly "
        "stated: bounds, ranges and negated, uncertain, asked, planned or someone else's "
        "mentions never become fields. The timings were taken with a load average of "
        f"{cli.get('load', 0.0):.1f} on the {os.cpu_count()} cores"
        + (
            " (other work running), so they are upper bounds."
            if cli.get("load", 0.0) >= 1.0
            else "."
        )
    )
    before = BEFORE_ISSUE_14
    lines += [""]
    lines += _para(
        "Before issue 14 (commit 2de0da2, same counting): held out v2 precision "
        f"{before['held out v2']['precision']:.3f}, recall {before['held out v2']['recall']:.3f}; "
        f"held out precision {before['held out']['precision']:.3f}, recall "
        f'{before["held out"]["recall"]:.3f}. The first set\'s "false positives" now are '
        "readings its annotation did not make under older conventions (liver lesions read as "
        "liver metastases, endoscopic removal as `endoscopic_resection`, an atypical carcinoid "
        "as well differentiated G2, a pancreatic tail mass as the primary, no symptoms of "
        "hormone excess as non-functioning); that file is kept as written."
    )
    lines += ["", "Per field, corpus:", "", "| field | support | precision | recall |"]
    lines += ["|---|---|---|---|"]
    for name in sorted(score.fields):
        f = score.fields[name]
        lines.append(f"| {name} | {f.support} | {_pct(f.precision)} | {_pct(f.recall)} |")
    if gaps:
        lines += ["", f"Known gaps of the corpus ({len(gaps)} phrasings read only in part):", ""]
        lines += [f'- "{i["text"]}": {i["known_gap"]}' for i in gaps]
    for label, held in (("v2 (case reports)", heldout_v2), ("(v1 fields)", heldout)):
        misses = sorted({text for text, *_ in held.misses})
        if misses:
            lines += ["", f"Held-out {label} phrasings read otherwise ({len(misses)}):", ""]
            lines += [f'- "{text}"' for text in misses]
    lines += ["", "### Why lean extractors and not medspaCy", ""]
    if med is None:
        lines += ["medspaCy was not measured (no `bench/medspacy.json`)."]
        return "\n".join(lines)
    start = med["import_s"] + med["load_s"]
    lines += _para(
        f"Measured in a throwaway virtual environment (`pip install medspacy`: medspacy "
        f"{med['medspacy']}, {med['installed_mb']} MB installed with its dependencies, Python "
        f"{med['python']}, {med['measured']}); pipeline `{', '.join(med['pipeline'])}` with "
        f"{med['rules']} target rules (the lexicon's tumour and site words) against the lean "
        "extractors of `src/netboard/parse/` on the same note:"
    )
    lines += [
        "",
        "| step | medspaCy | lean extractors |",
        "|---|---|---|",
        f"| import + load the pipeline | {med['import_s']:.2f} s + {med['load_s']:.2f} s "
        f"| compile the lexicon and ConText rules: {lean['compile_s']:.3f} s |",
        f"| add the target rules | {med['rules_s']:.3f} s | (in the compile) |",
        f"| first note | {med['first_note_s'] * 1000:.1f} ms | {lean['first_note_ms']:.1f} ms |",
        f"| one note, median of 20 | {med['note_median_s'] * 1000:.1f} ms "
        f"| {lean['note_median_ms']:.1f} ms |",
        f"| whole process: start, load, read one note ({med['whole_process_runs']} runs, "
        f"median) | {med['whole_process_median_s']:.2f} s | {ask['median_s']:.2f} s for all of "
        "`netboard ask`, the answer included |",
        "",
    ]
    budget = "exceed" if start >= TARGET_ASK_S else "take most of"
    lines += _para(
        f"medspaCy's import and pipeline load alone ({start:.2f} s) {budget} the {TARGET_ASK_S:g} "
        "s budget of `netboard ask`, and it brings spaCy and its dependencies into the "
        "install. It would give only the ConText step and a phrase matcher: the numbers "
        "(Ki-67, mitoses, labs with units, bounds and ranges), grades, imaging results and "
        "treatment cues would still be our own code. So `netboard ask` uses lean extractors "
        "driven by `lexicon.yaml` with a ConText-style negation step (`negation.py`): on the "
        f"corpus precision {_pct(score.total.precision)} and recall "
        f"{_pct(score.total.recall)}, on the case-report held-out phrasings precision "
        f"{_pct(heldout_v2.total.precision)} and recall {_pct(heldout_v2.total.recall)}, "
        f"{len(score.negation_errors) + len(heldout_v2.negation_errors)} negation errors, and a "
        f"whole `netboard ask` in {ask['median_s']:.2f} s. `netboard recommend` "
        "never imports the parser, so its start-up is unaffected."
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--medspacy-python", help="python of an environment with medspacy")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()

    def parse(text: str) -> dict[str, Any]:
        return parse_text(text).case_dict

    items = load_corpus()
    score = score_corpus(items, parse)
    heldout = score_corpus(load_corpus(HELDOUT), parse, v1_fields)
    heldout_v2 = score_corpus(load_corpus(HELDOUT_V2), parse)
    lean = bench_lean()
    cli = bench_cli(args.runs)
    med: dict[str, Any] | None
    if args.medspacy_python:
        med = measure_medspacy(args.medspacy_python, runs=5)
        MEDSPACY_JSON.write_text(json.dumps(med, indent=2) + "\n", encoding="utf-8")
    else:
        med = json.loads(MEDSPACY_JSON.read_text()) if MEDSPACY_JSON.exists() else None

    summary = {
        name: {
            "items": sc.items,
            "precision": sc.total.precision,
            "recall": sc.total.recall,
            "negation_errors": len(sc.negation_errors),
        }
        for name, sc in (("corpus", score), ("heldout", heldout), ("heldout_v2", heldout_v2))
    }
    print(json.dumps({**summary, "cli": cli, "lean": lean, "medspacy": med}, indent=2))
    for name, sc in (("corpus", score), ("heldout", heldout), ("heldout_v2", heldout_v2)):
        for text, field, want, have in sc.misses:
            print(
                f"{name} miss: {text!r}: {field} expected {want!r}, got {have!r}", file=sys.stderr
            )
    write_section(Path(args.out), "ask", section(score, items, heldout, heldout_v2, cli, lean, med))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
