"""The HTML summary: its numbers against counts computed here, independently, row by row."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from netboard.batch.io import audit_chunks, check_row, read_registry
from netboard.batch.reference import case_from_layout
from netboard.batch.report import AuditReport, grade_groups
from netboard.batch.synth import write_synth
from netboard.engine.classify import classify
from netboard.kb import KnowledgeBase, load_kb


def stats_of(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-stat="([^"]+)">([^<]*)<', html))


def grade_of(record: dict) -> str:
    """The grade group as the per-patient engine classifies the row."""
    case = case_from_layout(record)
    computed = classify(case, load_kb()).computed
    who, grade = computed["who_2019"], computed["grade"]
    if who is not None:
        return "NEC" if who.value == "nec" else "NET " + who.value[4:].upper()
    return f"{grade.value.upper()}, differentiation not stated" if grade else "(unknown)"


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory, kb: KnowledgeBase) -> tuple[str, list, list]:
    tmp = tmp_path_factory.mktemp("report")
    path = tmp / "reg.csv"
    write_synth(path, 400, seed=21, given=True)
    with path.open("a", encoding="utf-8") as fh:  # two bad rows at the end
        columns = path.read_text(encoding="utf-8").splitlines()[0].count(",") + 1
        fh.write("bad-1" + ",,,,,,,,140" + "," * (columns - 9) + "\n")
        fh.write("bad-2,,,unknown_site" + "," * (columns - 4) + "\n")
    report = AuditReport(source=path.name, kb_version=kb.version, engine="python")
    inputs: list = []
    results: list = []

    def keep(inp, res) -> None:
        report.add(inp, res)
        inputs.extend(inp.to_pylist())
        results.extend(res.to_pylist())

    stats = audit_chunks(
        read_registry(path, chunk_rows=150), kb=kb, engine="python", on_result=keep
    )
    report.skipped = stats.skipped
    return report.render(), inputs, results


def test_counts_and_skipped(audited: tuple[str, list, list]) -> None:
    html, inputs, _ = audited
    s = stats_of(html)
    assert s["audited"] == str(len(inputs)) == "400"
    assert s["skipped"] == "2"
    assert s["rows"] == "402"
    assert s["skipped.percent"] == "0.5"


def test_concordance_overall_site_grade(audited: tuple[str, list, list]) -> None:
    html, inputs, results = audited
    s = stats_of(html)
    known = [(i, r) for i, r in zip(inputs, results, strict=True) if r["concordant"] is not None]
    yes = sum(r["concordant"] for _, r in known)
    assert s["concordance.overall.total"] == str(len(known))
    assert s["concordance.overall.concordant"] == str(yes)
    assert s["concordance.overall.percent"] == f"{100 * yes / len(known):.1f}"
    by_site: dict[str, list[bool]] = {}
    by_grade: dict[str, list[bool]] = {}
    for i, r in known:
        by_site.setdefault(i["primary_site"], []).append(r["concordant"])
        by_grade.setdefault(grade_of(i), []).append(r["concordant"])
    for site, values in by_site.items():
        assert s[f"concordance.site.{site}.total"] == str(len(values))
        assert s[f"concordance.site.{site}.concordant"] == str(sum(values))
        assert s[f"concordance.site.{site}.percent"] == f"{100 * sum(values) / len(values):.1f}"
    for grade, values in by_grade.items():
        assert s[f"concordance.grade.{grade}.total"] == str(len(values))
        assert s[f"concordance.grade.{grade}.concordant"] == str(sum(values))


def test_eligibility_recommendations_alerts_missing(audited: tuple[str, list, list]) -> None:
    html, _inputs, results = audited
    s = stats_of(html)
    n = len(results)
    for name in ("prrt", "hepatic_resection", "liver_transplant", "embolization"):
        counts = Counter(r[f"elig.{name}"] for r in results)
        for status in ("eligible", "not_eligible", "undetermined"):
            assert s[f"elig.{name}.{status}"] == str(counts[status])
        assert s[f"elig.{name}.eligible.percent"] == f"{100 * counts['eligible'] / n:.1f}"
    for code in ("prrt", "somatostatin_analog", "platinum_etoposide", "everolimus"):
        counts = Counter(r[f"rec.{code}"] for r in results)
        for status in ("recommended", "consider", "not_recommended", "contraindicated"):
            assert s[f"rec.{code}.{status}"] == str(counts[status])
        assert s[f"rec.{code}.none"] == str(counts[None])
    alerts = Counter(a for r in results for a in r["alerts"])
    for code, count in alerts.most_common(5):
        assert s[f"alert.{code}"] == str(count)
    missing = Counter(m for r in results for m in r["missing"])
    top = missing.most_common(3)
    for field, count in top:
        assert s[f"missing.{field}"] == str(count)
        assert s[f"missing.{field}.percent"] == f"{100 * count / n:.1f}"
    assert s["patients_with_missing"] == str(sum(1 for r in results if r["missing"]))
    # the most frequent missing field comes first in the table
    first = re.search(r'data-stat="missing\.([^".]+)">', html)
    assert first is not None
    assert missing[first.group(1)] == top[0][1]


def test_page_is_standalone_with_charts(audited: tuple[str, list, list]) -> None:
    html = audited[0]
    assert html.count("<svg") >= 5
    assert "<script" not in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html


def test_without_given_no_concordance(tmp_path: Path, kb: KnowledgeBase) -> None:
    path = tmp_path / "reg.parquet"
    write_synth(path, 30, seed=2, given=False)
    report = AuditReport()
    audit_chunks(read_registry(path), kb=kb, engine="python", on_result=report.add)
    html = report.render()
    assert "concordance was not measured" in html
    assert stats_of(html)["audited"] == "30"
    assert all(check_row(r)[0] is not None for r in [])


def test_lung_and_thymus_grade_groups_follow_the_thoracic_scheme(kb: KnowledgeBase) -> None:
    """Ki-67 25 % with 1 mitosis is a typical carcinoid (G1) in the lung, G3 in the gut."""
    import pyarrow as pa

    from netboard.batch.io import input_schema

    rows = [
        {"primary_site": site, "ki67_percent": 25.0, "mitoses_per_2mm2": 1.0}
        for site in ("lung", "thymus", "ileum")
    ]
    schema = input_schema(False)
    table = pa.Table.from_pylist(rows, schema=schema)
    assert grade_groups(table, kb).to_pylist() == [
        "NET G1",
        "NET G1",
        "G3, differentiation not stated",
    ]
    assert [grade_of({n: r.get(n) for n in schema.names}) for r in rows] == [
        "NET G1",
        "NET G1",
        "G3, differentiation not stated",
    ]


def test_the_page_reads_in_labels_with_its_run_date_and_version(
    tmp_path: Path, kb: KnowledgeBase
) -> None:
    from netboard import __version__
    from netboard.cli import main

    registry = tmp_path / "reg.parquet"
    write_synth(registry, 3000, seed=4, given=True)
    page = tmp_path / "audit.html"
    assert main(["audit", str(registry), "--report", str(page), "--quiet"]) == 0
    html = page.read_text(encoding="utf-8")
    shown = re.sub(r"<[^>]+>", " ", html.split("</header>", 1)[1])
    shown = re.sub(r'\b(data-stat|title)="[^"]*"', "", shown)
    # No internal code is shown as text: labels from the knowledge base instead.
    for code in (
        "sigmoid_colon",
        "prrt_ssa_washout",
        "labs.neutrophils_10e9_l",
        "capecitabine_temozolomide",
        "hepatic_resection",
        "unknown_primary",
    ):
        assert code not in shown, code
    assert kb.labels["interventions_short"]["capecitabine_temozolomide"][1:] in html
    assert kb.labels["alerts"]["prrt_ssa_washout"][1:] in html
    assert re.search(r'run <time data-stat="generated">\d{4}-\d{2}-\d{2} \d{2}:\d{2} ', html)
    assert f'netboard <span data-stat="version">{__version__}</span>' in html
    assert "later lines included" in html
    # The figures keep their codes for scripts.
    assert 'data-stat="rec.prrt.positive.percent"' in html


def test_every_alert_has_a_reader_label(kb: KnowledgeBase) -> None:
    from netboard.vocab import AlertCode

    assert set(kb.labels["alerts"]) == {a.value for a in AlertCode}
