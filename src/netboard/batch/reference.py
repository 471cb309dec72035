"""The reference batch engine (``engine="python"``): one ``recommend`` per patient.

It takes the normalised Arrow input layout (see :mod:`netboard.batch.io`), rebuilds each case
with ``load_case`` and derives its row with :func:`netboard.batch.audit_row`. It is slow (about
a millisecond a patient) and is the oracle the compiled engines are tested against.

:func:`audit_table` dispatches to an engine by name; the compiled engines live in
``netboard.batch.compile`` (``audit_arrow``) and are imported only when asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from netboard.batch import audit_row, result_columns
from netboard.case import Case, load_case
from netboard.errors import CaseError, Problem
from netboard.fields import nest
from netboard.kb import KnowledgeBase

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "ENGINES",
    "audit_python",
    "audit_table",
    "available_engines",
    "case_from_layout",
    "default_engine",
    "result_schema",
]

#: Every engine name the command line knows; ``available_engines`` says which are installed.
ENGINES = ("duckdb", "polars", "spark", "python")


def result_schema() -> pa.Schema:
    """The Arrow schema of a result table (columns of ``result_columns()``)."""
    import pyarrow as pa

    types: list[pa.Field] = []
    for name in result_columns():
        if name in ("alerts", "missing"):
            types.append(pa.field(name, pa.list_(pa.string())))
        elif name == "concordant":
            types.append(pa.field(name, pa.bool_()))
        else:
            types.append(pa.field(name, pa.string()))
    return pa.schema(types)


def case_from_layout(row: Mapping[str, Any]) -> Case:
    """The case of one input-layout row (``labs.X`` keys; ``given`` and nulls left out).

    Raises:
        CaseError: the row is not a valid case (the reader lets no such row through).
    """
    return load_case(nest({k: x for k, x in row.items() if x is not None and k != "given"}))


def audit_python(table: pa.Table, kb: KnowledgeBase) -> pa.Table:
    """Audit an input-layout table patient by patient with ``recommend`` (the reference)."""
    import pyarrow as pa

    has_given = "given" in table.column_names
    rows: list[dict[str, Any]] = []
    for record in table.to_pylist():
        given: Sequence[str] | None = record.get("given") if has_given else None
        rows.append(audit_row(case_from_layout(record), kb, given))
    return pa.Table.from_pylist(rows, schema=result_schema())


def _compiled() -> Any:
    """The compiled engines' module (``audit_arrow`` and ``ENGINES``), imported lazily."""
    import importlib

    try:
        return importlib.import_module("netboard.batch.run")
    except ImportError:
        return importlib.import_module("netboard.batch.compile")


def available_engines() -> list[str]:
    """The engines that can run here: the compiled ones when importable, then ``python``."""
    out: list[str] = []
    try:
        mod = _compiled()
    except ImportError:
        mod = None
    if mod is not None and hasattr(mod, "audit_arrow"):
        engines = getattr(mod, "ENGINES", ("duckdb",))
        out.extend(str(e) for e in engines if str(e) in ENGINES)
    out.append("python")
    return out


def default_engine() -> str:
    """``duckdb`` when the compiled engine is installed, else ``python``."""
    return available_engines()[0]


def audit_table(
    table: pa.Table,
    kb: KnowledgeBase,
    *,
    engine: str = "python",
    only: Collection[str] | None = None,
) -> pa.Table:
    """Audit an input-layout table with the named engine; the result has ``result_schema()``.

    ``only``: the result families to compute and return (``netboard.batch.run.FAMILIES``);
    None for all.

    Raises:
        CaseError: the engine is unknown or not installed.
    """
    if engine == "python":
        full = audit_python(table, kb)
        if only is None:
            return full
        from netboard.batch.run import output_columns

        return full.select(output_columns(only))
    if engine not in available_engines():
        raise CaseError(
            [
                Problem(
                    "--engine",
                    f"{engine} is not available here (available: {', '.join(available_engines())})",
                )
            ]
        )
    run: Callable[..., pa.Table] = _compiled().audit_arrow
    if only is None:
        out = run(table, kb, engine=engine)
        return out.select(result_columns()).cast(result_schema())
    import pyarrow as pa

    from netboard.batch.run import output_columns

    names = output_columns(only)
    full = result_schema()
    out = run(table, kb, engine=engine, only=only)
    return out.select(names).cast(pa.schema([full.field(n) for n in names]))


# --- knowledge-base impact (--compare-kb) ---------------------------------------------------


def diff_schema() -> pa.Schema:
    """Columns of a ``--compare-kb`` output: one row per patient and changed column."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("column", pa.string()),
            pa.field("before", pa.string()),
            pa.field("after", pa.string()),
            pa.field("rules", pa.list_(pa.string())),
        ]
    )


def responsible_rules(
    case: Case, column: str, kb_before: KnowledgeBase, kb_after: KnowledgeBase
) -> list[str]:
    """The rules (or eligibility criteria) whose result differs for ``column`` between two KBs.

    For ``rec.CODE``: the rule ids of that code's recommendations whose status differs (or that
    fire in one knowledge base only). For ``elig.NAME``: the criteria whose ``met`` differs.
    """
    from netboard.engine.recommend import recommend

    before = recommend(case, kb=kb_before, board_answer=False)
    after = recommend(case, kb=kb_after, board_answer=False)
    kind, _, name = column.partition(".")
    if kind == "rec":
        a = {r.rule_id: r.status.value for r in before.recommendations if r.code.value == name}
        b = {r.rule_id: r.status.value for r in after.recommendations if r.code.value == name}
        return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    ea = next((e for e in before.eligibility if e.name.value == name), None)
    eb = next((e for e in after.eligibility if e.name.value == name), None)
    ca = {c.name: c.met for c in ea.criteria} if ea else {}
    cb = {c.name: c.met for c in eb.criteria} if eb else {}
    return sorted(k for k in ca.keys() | cb.keys() if ca.get(k) != cb.get(k))


def compare_table(
    table: pa.Table, kb_before: KnowledgeBase, kb_after: KnowledgeBase, *, engine: str
) -> pa.Table:
    """The changed (patient, column) pairs of an input-layout table, with the rules responsible."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    a = audit_table(table, kb_before, engine=engine)
    b = audit_table(table, kb_after, engine=engine)
    compared = [c for c in result_columns() if c.startswith(("rec.", "elig."))]
    changed: dict[str, np.ndarray] = {}
    for col in compared:
        x, y = pc.fill_null(a.column(col), ""), pc.fill_null(b.column(col), "")
        rows = np.flatnonzero(
            pc.fill_null(pc.not_equal(x, y), False).to_numpy(zero_copy_only=False)
        )
        if len(rows):
            changed[col] = rows
    out: list[dict[str, Any]] = []
    if not changed:
        return diff_schema().empty_table()
    all_rows = sorted({int(i) for rows in changed.values() for i in rows})
    records = table.take(pa.array(all_rows)).to_pylist()
    cases = {i: case_from_layout(r) for i, r in zip(all_rows, records, strict=True)}
    ids = a.column("id")
    changed_sets = {col: set(rows.tolist()) for col, rows in changed.items()}
    for i in all_rows:
        for col in compared:
            if i not in changed_sets.get(col, ()):
                continue
            out.append(
                {
                    "id": ids[i].as_py(),
                    "column": col,
                    "before": a.column(col)[i].as_py(),
                    "after": b.column(col)[i].as_py(),
                    "rules": responsible_rules(cases[i], col, kb_before, kb_after),
                }
            )
    return pa.Table.from_pylist(out, schema=diff_schema())


def compare_summary(
    changes: Sequence[Mapping[str, Any]], patients: int, limit: int = 12
) -> list[str]:
    """Plain lines for standard output: how many patients change, and the main moves."""
    groups: dict[tuple[str, str, str, str], set[str]] = {}
    for c in changes:
        key = (
            str(c["column"]),
            str(c["before"] or "none"),
            str(c["after"] or "none"),
            ", ".join(c["rules"]) or "-",
        )
        groups.setdefault(key, set()).add(str(c["id"]))
    lines = [f"{patients} patient{'s' if patients != 1 else ''} change"]
    ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    for (col, before, after, rules), who in ranked[:limit]:
        kind, _, name = col.partition(".")
        if (
            kind == "rec"
            and after in ("recommended", "consider")
            and before
            not in (
                "recommended",
                "consider",
            )
        ):
            what = f"become {name} candidates ({after}, was {before})"
        elif (
            kind == "rec"
            and before in ("recommended", "consider")
            and after
            not in (
                "recommended",
                "consider",
            )
        ):
            what = f"lose {name} ({before} -> {after})"
        else:
            what = f"{col}: {before} -> {after}"
        lines.append(f"  {len(who)} {what} (rule {rules})")
    if len(ranked) > limit:
        lines.append(f"  ... and {len(ranked) - limit} other kinds of change (see the output file)")
    return lines
