"""Write the "## The table" section of docs/fhir.md from kb/fhir.yaml (run after editing it).

    .venv/bin/python tools/fhir_table_doc.py          # rewrite docs/fhir.md in place
    .venv/bin/python tools/fhir_table_doc.py --check  # exit 1 when the document is out of step

The section runs from the heading "## The table" to the end of the document.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from netboard.fhir import elements as el
from netboard.fhir.table import CodeTable, FhirCode, FhirMap, NameRule
from netboard.kb import load_kb

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "fhir.md"
HEADING = "## The table"


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _system(row: FhirCode) -> str:
    return {"http://hl7.org/fhir/sid/icd-10": "ICD-10 (WHO)"}.get(
        row.system, el.system_label(row.system)
    )


def _code(row: FhirCode) -> str:
    return f"`{row.code}`" + (" (prefix)" if row.prefix else "")


def _yes(row: FhirCode) -> str:
    return "yes" if row.verified else "no"


def _sets(sets: Iterable[tuple[str, Any]]) -> str:
    return ", ".join(
        f"{k} = {str(v).lower() if isinstance(v, bool) else v}" for k, v in sorted(sets)
    )


def _value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _gives(row: FhirCode, empty: str = "(site from bodySite)") -> str:
    if row.unmapped is not None:
        return f"not read: {row.unmapped}"
    if row.neoplasm == "non_neuroendocrine" and not row.sets:
        return "not a neuroendocrine neoplasm: stops the mapping"
    return _sets(row.sets) or empty


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += [
        "| " + " | ".join(_cell(c) if not str(c).startswith("`") else c for c in r) + " |"
        for r in rows
    ]
    return out


def _treatment(row: FhirCode | NameRule) -> str:
    parts = []
    if row.treatment is not None:
        text = f"prior_treatments: {row.treatment.value}"
        if row.sites:
            text += f" (primary sites: {', '.join(s.value for s in row.sites)})"
        elif isinstance(row, FhirCode) and row.any_site:
            text += " (any primary site)"
        parts.append(text)
    if row.component is not None:
        parts.append(f"regimen component: {row.component}")
    for k, v in row.sets:
        parts.append(f"{k}: {v}")
    return "; ".join(parts)


def _coded(table: CodeTable, gives: Any, empty: str = "(site from bodySite)") -> list[list[str]]:
    return [
        [_system(r), _code(r), r.display, gives(r, empty), _yes(r), r.source] for r in table.rows
    ]


def section(fmap: FhirMap) -> str:
    lines = [HEADING, "", "### Condition.code", ""]

    def cond_gives(r: FhirCode, _empty: str) -> str:
        if r.role == "primary" and not r.sets and r.unmapped is None:
            if r.neoplasm == "non_neuroendocrine":
                return "not a neuroendocrine neoplasm: stops the mapping"
            return "(marks the primary; site from bodySite)"
        return _gives(r)

    lines += _table(
        ["system", "code", "display", "role", "neoplasm", "gives", "verified", "source"],
        [
            [
                _system(r),
                _code(r),
                r.display,
                r.role or "",
                r.neoplasm or "",
                cond_gives(r, ""),
                _yes(r),
                r.source,
            ]
            for r in fmap.conditions.rows
        ],
    )
    lines += ["", "### Morphology (histology extension, Observation 31206-6)", ""]
    lines += _table(
        ["system", "code", "display", "neoplasm", "gives", "verified", "source"],
        [
            [_system(r), _code(r), r.display, r.neoplasm or "", _gives(r), _yes(r), r.source]
            for r in fmap.morphology.rows
        ],
    )
    for title, table in (
        ("bodySite of the primary", fmap.primary_body_sites),
        ("bodySite of a metastasis", fmap.secondary_body_sites),
    ):
        lines += ["", f"### {title}", ""]
        lines += _table(
            ["system", "code", "display", "gives", "verified", "source"],
            _coded(table, lambda r, e: _gives(r, e)),
        )
    lines += ["", "### Observation.code", ""]
    obs_rows = []
    answers = []
    for obs in fmap.observations.values():
        r = obs.row
        if r.unmapped is not None:
            gives = f"not read: {r.unmapped}"
        elif obs.kind == "morphology":
            gives = "value looked up in the morphology table"
        elif obs.kind == "coded":
            gives = f"{obs.field} from the answer codes below"
        elif obs.kind == "ratio_to_uln":
            gives = f"{obs.field} = value / referenceRange.high (same unit)"
        elif obs.kind == "quantity":
            units = ", ".join(
                f"`{u.unit}`" + (f" \u00d7 {u.factor:g}" if u.factor != 1 else "")
                for u in obs.units
            )
            gives = f"{obs.field}; units {units}"
            if obs.component is not None:
                gives += (
                    f"; from the component {el.system_label(obs.component[0])} `{obs.component[1]}`"
                )
        else:
            gives = f"{obs.field} ({obs.kind})"
        window = fmap.recency.get(obs.field or "")
        if window is not None:
            gives += f"; current for {window.max_age_days} days"
        obs_rows.append([_system(r), _code(r), r.display, gives, _yes(r), r.source])
        if obs.values is not None:
            for a in obs.values.rows:
                answers.append(
                    [
                        f"`{r.code}`",
                        _system(a),
                        _code(a),
                        a.display,
                        f"not read: {a.unmapped}"
                        if a.unmapped
                        else f"{obs.field} = {_value(a.value)}",
                        _yes(a),
                        a.source,
                    ]
                )
    lines += _table(["system", "code", "display", "gives", "verified", "source"], obs_rows)
    lines += ["", "Answer codes (valueCodeableConcept):", ""]
    lines += _table(
        ["observation", "system", "code", "display", "gives", "verified", "source"], answers
    )
    lines += ["", "### Recency windows", ""]
    lines += _table(
        ["field", "read as current for", "source or rationale"],
        [
            [
                f"`{w.field}`",
                f"{w.max_age_days} days",
                (w.source + ". " if w.source else "") + w.rationale,
            ]
            for w in fmap.recency.values()
        ],
    )
    lines += ["", "### Patient sex (us-core-individual-sex, when gender is absent)", ""]
    lines += _table(
        ["system", "code", "display", "gives", "verified", "source"],
        [
            [_system(r), _code(r), r.display, f"sex = {r.value}", _yes(r), r.source]
            for r in fmap.individual_sex.rows
        ],
    )
    lines += ["", "### Medications", ""]
    lines += _table(
        ["system", "code", "display", "gives", "verified", "source"],
        [
            [_system(r), _code(r), r.display, _treatment(r), _yes(r), r.source]
            for r in fmap.medications.rows
        ],
    )
    lines += ["", "Name rules:", ""]
    lines += _table(
        ["words", "gives"],
        [[f"`{' '.join(n.words)}`", _treatment(n)] for n in fmap.medication_names],
    )
    lines += ["", "Regimens:", ""]
    lines += _table(
        ["treatment", "needs one of each group"],
        [
            [g.treatment.value, " + ".join("(" + " or ".join(grp) + ")" for grp in g.all_of)]
            for g in fmap.regimens
        ],
    )
    lines += ["", "### Progression reasons", ""]
    lines += _table(
        ["system", "code", "display", "verified", "source"],
        [
            [_system(r), _code(r), r.display, _yes(r), r.source]
            for r in fmap.progression_reasons.rows
        ],
    )
    lines += ["", "### Procedure.code", ""]
    lines += _table(
        ["system", "code", "display", "gives", "verified", "source"],
        [
            [_system(r), _code(r), r.display, _treatment(r), _yes(r), r.source]
            for r in fmap.procedures.rows
        ],
    )
    lines += ["", "Name rules:", ""]
    lines += _table(
        ["words", "gives"],
        [[f"`{' '.join(n.words)}`", _treatment(n)] for n in fmap.procedure_names],
    )
    lines += ["", "### List.code", ""]
    lines += _table(
        ["system", "code", "display", "gives", "verified", "source"],
        [
            [_system(r), _code(r), r.display, f"{r.field} = []", _yes(r), r.source]
            for r in fmap.lists.rows
        ],
    )
    lines += ["", "### List.emptyReason", ""]
    lines += _table(
        ["system", "code", "display", "gives", "verified", "source"],
        [
            [
                _system(r),
                _code(r),
                r.display,
                f"not read: {r.unmapped}" if r.unmapped else "nothing to list: the field is []",
                _yes(r),
                r.source,
            ]
            for r in fmap.list_empty_reasons.rows
        ],
    )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> int:
    fmap = load_kb().fhir
    assert fmap is not None
    text = DOC.read_text(encoding="utf-8")
    head, sep, _ = text.partition(HEADING)
    if not sep:
        sys.stderr.write(f"{DOC}: no '{HEADING}' heading\n")
        return 2
    new = head + section(fmap)
    if "--check" in argv:
        return 0 if new == text else 1
    DOC.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
