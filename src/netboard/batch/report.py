"""The audit summary for a quality team: one standalone HTML page (``--report audit.html``).

:class:`AuditReport` gathers counts chunk by chunk with Arrow compute while the audit runs
(``add(input, result)``), so a registry of millions of rows never needs to be in memory; the
page is rendered at the end from the counts alone. No JavaScript, no external asset: the charts
are inline SVG bar charts.

Every figure of the page is in an element with ``data-stat="KEY"`` (for instance
``data-stat="concordance.site.ileum.percent"``), so tests and scripts can read them back.

The grade group of a row is the engine's own WHO 2019 category (see :func:`grade_groups`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netboard.vocab import EligibilityName, Intervention, Status
from netboard.words import capfirst

if TYPE_CHECKING:
    import pyarrow as pa

    from netboard.kb.model import KnowledgeBase

__all__ = ["AuditReport", "grade_groups"]

NONE = "(none)"
UNKNOWN = "(unknown)"


def grade_groups(table: pa.Table, kb: KnowledgeBase | None = None) -> pa.Array:
    """The grade group of each input row, as the engine classifies it: the WHO 2019 category
    (NEC, NET G1-G3; lung and thymus graded by their own scheme); a grade whose
    differentiation is not stated; or (unknown). Computed by the engine's own computations
    (``engine.derive``) compiled to SQL and run on DuckDB."""
    import duckdb
    import pyarrow as pa
    import pyarrow.compute as pc

    from netboard.batch.compile import compile_computed
    from netboard.kb import load_kb

    query = compile_computed(kb or load_kb(), ["who_2019", "grade"])
    con = duckdb.connect()
    try:
        con.register("report_input", table)
        out = con.sql(query.sql("report_input", "duckdb")).to_arrow_table()
    finally:
        con.close()
    who = out.column("who_2019").combine_chunks().cast(pa.string())
    grade = out.column("grade").combine_chunks().cast(pa.string())
    by_who = pc.if_else(
        pc.equal(who, "nec"),
        "NEC",
        pc.binary_join_element_wise("NET ", pc.utf8_upper(pc.utf8_slice_codeunits(who, 4)), ""),
    )
    by_grade = pc.binary_join_element_wise(pc.utf8_upper(grade), ", differentiation not stated", "")
    result: pa.Array = pc.coalesce(by_who, by_grade, pa.scalar(UNKNOWN))
    return result


def _counts(arr: Any) -> Counter[str]:
    import pyarrow.compute as pc

    out: Counter[str] = Counter()
    for item in pc.value_counts(arr).to_pylist():
        key = item["values"]
        out[NONE if key is None else str(key)] += int(item["counts"])
    return out


@dataclass(slots=True)
class _Concordance:
    concordant: int = 0
    total: int = 0

    @property
    def percent(self) -> float:
        return 100.0 * self.concordant / self.total if self.total else 0.0


@dataclass
class AuditReport:
    """Counts for the summary page, gathered chunk by chunk."""

    source: str = ""
    kb_version: str = ""
    #: the knowledge base audited (its classification groups the grades); default: packaged
    kb: KnowledgeBase | None = field(default=None, repr=False)
    engine: str = ""
    audited: int = 0
    skipped: int = 0
    overall: _Concordance = field(default_factory=_Concordance)
    by_site: dict[str, _Concordance] = field(default_factory=dict)
    by_grade: dict[str, _Concordance] = field(default_factory=dict)
    patients_by_site: Counter[str] = field(default_factory=Counter)
    patients_by_grade: Counter[str] = field(default_factory=Counter)
    eligibility: dict[str, Counter[str]] = field(default_factory=dict)
    recommendations: dict[str, Counter[str]] = field(default_factory=dict)
    alerts: Counter[str] = field(default_factory=Counter)
    missing: Counter[str] = field(default_factory=Counter)
    patients_with_alerts: int = 0
    patients_with_missing: int = 0
    #: when the audit ran (shown on the page; the caller passes it, nothing here reads a clock)
    generated: str = ""

    def add(self, inputs: pa.Table, result: pa.Table) -> None:
        """Count one chunk (its input rows and their result rows, in the same order)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        self.audited += result.num_rows
        site = pc.fill_null(inputs.column("primary_site"), UNKNOWN)
        grade = grade_groups(inputs, self.kb)
        self.patients_by_site.update(_counts(site))
        self.patients_by_grade.update(_counts(grade))
        concordant = result.column("concordant")
        known = pc.is_valid(concordant)
        if pc.any(known).as_py():
            part = pa.table(
                {
                    "site": pc.filter(site, known),
                    "grade": pc.filter(grade, known),
                    "c": pc.cast(pc.filter(concordant, known), pa.int64()),
                }
            )
            self._group(part, None, {"": self.overall})
            self._group(part, "site", self.by_site)
            self._group(part, "grade", self.by_grade)
        for name in EligibilityName:
            col = f"elig.{name.value}"
            self.eligibility.setdefault(name.value, Counter()).update(_counts(result.column(col)))
        for code in Intervention:
            col = f"rec.{code.value}"
            self.recommendations.setdefault(code.value, Counter()).update(
                _counts(result.column(col))
            )
        alerts, missing = result.column("alerts"), result.column("missing")
        self.alerts.update(_counts(pc.list_flatten(alerts)))
        self.missing.update(_counts(pc.list_flatten(missing)))
        self.patients_with_alerts += (
            pc.sum(pc.greater(pc.fill_null(pc.list_value_length(alerts), 0), 0)).as_py() or 0
        )
        self.patients_with_missing += (
            pc.sum(pc.greater(pc.fill_null(pc.list_value_length(missing), 0), 0)).as_py() or 0
        )

    @staticmethod
    def _group(part: pa.Table, key: str | None, into: dict[str, _Concordance]) -> None:
        if key is None:
            import pyarrow.compute as pc

            slot = into[""]
            slot.total += part.num_rows
            slot.concordant += int(pc.sum(part.column("c")).as_py() or 0)
            return
        grouped = part.group_by(key).aggregate([("c", "sum"), ("c", "count")])
        for row in grouped.to_pylist():
            slot = into.setdefault(str(row[key]), _Concordance())
            slot.total += int(row["c_count"])
            slot.concordant += int(row["c_sum"] or 0)

    # --- rendering ----------------------------------------------------------------------------

    def _label(self, group: str, code: str) -> str:
        """The reader label of a code (the knowledge base's labels), else the code in words."""
        from netboard.kb import load_kb

        if code in (NONE, UNKNOWN):
            return code
        labels = (self.kb or load_kb()).labels
        found = labels.get(group, {}).get(code) or code.replace("_", " ")
        return capfirst(found)

    def view(self) -> dict[str, Any]:
        """The plain data the template renders (sorted, with percentages and reader labels)."""
        from netboard import __version__

        total = self.audited + self.skipped

        def pct(part: int, whole: int) -> float:
            return round(100.0 * part / whole, 1) if whole else 0.0

        def conc_rows(groups: dict[str, _Concordance], patients: Counter[str]) -> list[Any]:
            rows = [
                {
                    "key": key,
                    "label": self._label("values", key),
                    "patients": patients.get(key, 0),
                    "total": c.total,
                    "concordant": c.concordant,
                    "percent": round(c.percent, 1),
                }
                for key, c in groups.items()
            ]
            return sorted(rows, key=lambda r: (-r["total"], r["key"]))

        statuses = [s.value for s in Status]
        recs: list[dict[str, Any]] = []
        for code, counts in self.recommendations.items():
            row: dict[str, Any] = {s: counts.get(s, 0) for s in statuses}
            row["code"] = code
            row["label"] = self._label("interventions_short", code)
            row["positive"] = row["recommended"] + row["consider"]
            row["positive_percent"] = pct(row["positive"], self.audited)
            recs.append(row)
        recs.sort(key=lambda r: (-r["positive"], r["code"]))
        elig: list[dict[str, Any]] = []
        for name, counts in self.eligibility.items():
            row = {s: counts.get(s, 0) for s in ("eligible", "not_eligible", "undetermined")}
            row["name"] = name
            row["label"] = self._label("eligibility", name)
            row["eligible_percent"] = pct(row["eligible"], self.audited)
            row["undetermined_percent"] = pct(row["undetermined"], self.audited)
            elig.append(row)

        def top(counter: Counter[str], group: str, limit: int = 25) -> list[dict[str, Any]]:
            items = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
            return [
                {
                    "key": k,
                    "label": self._label(group, k),
                    "count": c,
                    "percent": pct(c, self.audited),
                }
                for k, c in items
            ]

        return {
            "source": self.source,
            "kb_version": self.kb_version,
            "engine": self.engine,
            "generated": self.generated,
            "version": __version__,
            "total": total,
            "audited": self.audited,
            "skipped": self.skipped,
            "audited_percent": pct(self.audited, total),
            "skipped_percent": pct(self.skipped, total),
            "overall": {
                "total": self.overall.total,
                "concordant": self.overall.concordant,
                "percent": round(self.overall.percent, 1),
            },
            "by_site": conc_rows(self.by_site, self.patients_by_site),
            "by_grade": conc_rows(self.by_grade, self.patients_by_grade),
            "eligibility": elig,
            "recommendations": recs,
            "alerts": top(self.alerts, "alerts"),
            "missing": top(self.missing, "fields"),
            "patients_with_alerts": self.patients_with_alerts,
            "patients_with_missing": self.patients_with_missing,
            "patients_with_missing_percent": pct(self.patients_with_missing, self.audited),
        }

    def render(self) -> str:
        """The standalone HTML page."""
        from jinja2 import Environment, PackageLoader, select_autoescape

        env = Environment(
            loader=PackageLoader("netboard.batch", "templates"),
            autoescape=select_autoescape(["html", "j2"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        text = env.get_template("audit.html.j2").render(v=self.view())
        return text.rstrip("\n") + "\n"

    def write(self, path: str | Path) -> Path:
        """Write the page to ``path``."""
        out = Path(path)
        out.write_text(self.render(), encoding="utf-8")
        return out
