"""The condition compiler: Kleene truth and unknown fields, node by node, through DuckDB.

Each compiled condition must give what ``engine.evaluate`` gives on the same case: the same
truth (SQL NULL for UNKNOWN) and, where UNKNOWN, the same case fields as missing.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest

from netboard.case import Case, load_case
from netboard.conditions import (
    All,
    AnyOf,
    Compare,
    Condition,
    EligibilityIs,
    Fact,
    Holds,
    Not,
    Planned,
    Shared,
)
from netboard.engine.classify import classify
from netboard.engine.evaluate import Context, evaluate
from netboard.kb import KnowledgeBase
from netboard.kb.model import FactDef
from netboard.logic import Truth, and_, not_, or_

pa = pytest.importorskip("pyarrow")
duckdb = pytest.importorskip("duckdb")
pytest.importorskip("sqlglot")

from netboard.batch import audit_row, result_columns  # noqa: E402
from netboard.batch.columns import case_row, input_schema  # noqa: E402
from netboard.batch.compile import (  # noqa: E402
    UnsupportedKnowledgeBase,
    compile_audit,
    compile_conditions,
    fields_of,
    mask_of,
    truth_of,
)
from netboard.batch.run import run_duckdb  # noqa: E402
from netboard.batch.sample import sample_cases  # noqa: E402


def run_conditions(
    kb: KnowledgeBase, named: dict[str, Condition], raws: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    rows = []
    for i, raw in enumerate(raws):
        row = case_row(load_case(raw))
        row["id"] = str(i)
        rows.append(row)
    con = duckdb.connect()
    con.register("cases", pa.Table.from_pylist(rows, schema=input_schema()))
    sql = compile_conditions(kb, named).sql("cases")
    out = con.sql(f"SELECT * FROM ({sql}) ORDER BY CAST(id AS INTEGER)").to_arrow_table()
    return out.to_pylist()


def expected(kb: KnowledgeBase, case: Case, node: Condition) -> tuple[Truth, frozenset[str]]:
    ctx = Context(case=case, computed=classify(case, kb).computed, facts=kb.facts, kb=kb)
    r = evaluate(node, ctx)
    return r.truth, r.unknown if r.truth is Truth.UNKNOWN else frozenset()


def as_truth(value: bool | None) -> Truth:
    return Truth.of(value)


def check_against_evaluate(
    kb: KnowledgeBase, named: dict[str, Condition], raws: list[dict[str, Any]]
) -> None:
    rows = run_conditions(kb, named, raws)
    problems = []
    for raw, row in zip(raws, rows, strict=True):
        case = load_case(raw)
        for name, node in named.items():
            want_truth, want_unknown = expected(kb, case, node)
            got_truth, got_unknown = (
                as_truth(row[name]),
                frozenset(fields_of(row[f"{name}.unknown"])),
            )
            if (want_truth, want_unknown) != (got_truth, got_unknown):
                problems.append(
                    f"{name} on {raw}: evaluate {want_truth.name} {sorted(want_unknown)}, "
                    f"compiled {got_truth.name} {sorted(got_unknown)}"
                )
    assert not problems, "\n".join(problems[:20])


def test_every_condition_node_has_a_truth_and_an_unknown_compiler() -> None:
    for kind in (All, AnyOf, Not, Compare, Fact, EligibilityIs, Planned, Shared, Holds):
        assert truth_of.dispatch(kind) is not truth_of.dispatch(object), kind
        assert mask_of.dispatch(kind) is not mask_of.dispatch(object), kind


# Three leaves whose truth each case sets: TRUE, FALSE or UNKNOWN (field absent).
A = Compare("ki67_percent", "lt", 10)
B = Compare("sex", "is", "male")
C = Compare("metastatic_sites", "has", "liver")
LEAF_VALUES = {
    "ki67_percent": {Truth.TRUE: 5, Truth.FALSE: 50, Truth.UNKNOWN: None},
    "sex": {Truth.TRUE: "male", Truth.FALSE: "female", Truth.UNKNOWN: None},
    "metastatic_sites": {Truth.TRUE: ["liver"], Truth.FALSE: ["bone"], Truth.UNKNOWN: None},
}


def truth_table_cases() -> list[tuple[tuple[Truth, Truth, Truth], dict[str, Any]]]:
    out = []
    for combo in itertools.product(Truth, repeat=3):
        raw = {
            f: LEAF_VALUES[f][t]
            for f, t in zip(("ki67_percent", "sex", "metastatic_sites"), combo, strict=True)
        }
        out.append((combo, {k: v for k, v in raw.items() if v is not None}))
    return out


JUNCTIONS: dict[str, tuple[Condition, Any]] = {
    "a_and_b": (All((A, B)), lambda a, b, c: and_([a, b])),
    "a_and_b_and_c": (All((A, B, C)), lambda a, b, c: and_([a, b, c])),
    "a_or_b": (AnyOf((A, B)), lambda a, b, c: or_([a, b])),
    "a_or_b_or_c": (AnyOf((A, B, C)), lambda a, b, c: or_([a, b, c])),
    "not_a": (Not(A), lambda a, b, c: not_(a)),
    "not_a_and_b": (Not(All((A, B))), lambda a, b, c: not_(and_([a, b]))),
    "a_and_b_or_not_c": (
        AnyOf((All((A, B)), Not(C))),
        lambda a, b, c: or_([and_([a, b]), not_(c)]),
    ),
    "a_or_b_and_c": (All((AnyOf((A, B)), C)), lambda a, b, c: and_([or_([a, b]), c])),
    "always": (All(()), lambda a, b, c: Truth.TRUE),
}


def test_kleene_truth_tables_match_netboard_logic(kb: KnowledgeBase) -> None:
    cases = truth_table_cases()
    named = {name: node for name, (node, _) in JUNCTIONS.items()}
    rows = run_conditions(kb, named, [raw for _, raw in cases])
    for (combo, raw), row in zip(cases, rows, strict=True):
        for name, (_, logic) in JUNCTIONS.items():
            assert as_truth(row[name]) is logic(*combo), (name, combo, raw)
    # ... and the unknown fields are evaluate's.
    check_against_evaluate(kb, named, [raw for _, raw in cases])


COMPARES: dict[str, Condition] = {
    "lt": Compare("ki67_percent", "lt", 3),
    "le": Compare("ki67_percent", "le", 20),
    "gt": Compare("ki67_percent", "gt", 20),
    "ge": Compare("ki67_percent", "ge", 55),
    "is_number": Compare("ecog", "is", 2),
    "is_word": Compare("primary_site", "is", "pancreas"),
    "is_bool": Compare("primary_resected", "is", True),
    "is_false": Compare("pregnant", "is", False),
    "in": Compare("primary_site", "in", ("ileum", "jejunum")),
    "has": Compare("metastatic_sites", "has", "liver"),
    "has_any": Compare("comorbidities", "has_any", ("diabetes", "cirrhosis")),
    "known": Compare("ki67_percent", "known", True),
    "not_known": Compare("metastatic_sites", "known", False),
    "lab": Compare("labs.platelets_10e9_l", "lt", 75),
    "grade": Compare("grade", "in", ("g1", "g2")),
    "who": Compare("who_2019", "is", "nec"),
    "who_net_g3": Compare("who_2019", "is", "net_g3"),
    "inferred": Compare("differentiation_inferred", "is", "well"),
    "site_group": Compare("site_group", "is", "small_intestine"),
    "gut_region": Compare("gut_region", "is", "midgut"),
    "portal": Compare("portal_drained", "is", False),
    "thoracic": Compare("thoracic_primary", "is", True),
    "pregnancy": Compare("pregnancy_status", "is", "not_pregnant"),
    "discordant": Compare("grade_discordant", "is", True),
    "received": Compare("treatments_received", "has", "somatostatin_analog"),
    "failed": Compare("treatments_failed", "has_any", ("everolimus", "prrt")),
    "received_known": Compare("treatments_received", "known", True),
}

EDGE_CASES: list[dict[str, Any]] = [
    {},
    {"ki67_percent": 3},
    {"ki67_percent": 2.9},
    {"ki67_percent": 20},
    {"ki67_percent": 20.1},
    {"ki67_percent": 55, "primary_site": "lung"},
    {"ki67_percent": 25, "primary_site": "lung", "mitoses_per_2mm2": 1},
    {"mitoses_per_2mm2": 10},
    {"mitoses_per_2mm2": 25},
    {"ki67_percent": 1, "mitoses_per_2mm2": 1},
    {"ki67_percent": 15, "mitoses_per_2mm2": 15},
    {"grade": "g1", "ki67_percent": 30},
    {"grade": "g3", "ki67_percent": 1},
    {"grade": "g3", "ki67_percent": 1, "mitoses_per_2mm2": 1},
    {"grade": "g2", "differentiation": "poor"},
    {"grade": "g3"},
    {"differentiation": "well"},
    {"ecog": 2, "primary_resected": True, "pregnant": False},
    {"ecog": 1, "primary_resected": False, "pregnant": True, "sex": "female"},
    {"metastatic_sites": [], "comorbidities": []},
    {"metastatic_sites": ["liver", "bone"], "comorbidities": ["cirrhosis"]},
    {"labs": {"platelets_10e9_l": 74.9}},
    {"labs": {"platelets_10e9_l": 75}},
    {"sex": "male"},
    {"sex": "female", "age_years": 55},
    {"sex": "female", "age_years": 54.9},
    {"primary_site": "ileum"},
    {"primary_site": "unknown_primary", "ki67_percent": 12},
    {"disease_status": "newly_diagnosed"},
    {"disease_status": "progressive"},
    {"prior_treatments": []},
    {"prior_treatments": ["somatostatin_analog", "everolimus"], "progressed_on": ["everolimus"]},
    {"progressed_on": ["prrt"], "disease_status": "progressive"},
]


def test_every_operator_and_computed_field_matches_evaluate(kb: KnowledgeBase) -> None:
    check_against_evaluate(kb, COMPARES, EDGE_CASES)


def test_null_lists_are_unknown_and_empty_lists_are_known(kb: KnowledgeBase) -> None:
    named = {"has": COMPARES["has"], "has_any": COMPARES["has_any"]}
    rows = run_conditions(kb, named, [{}, {"metastatic_sites": [], "comorbidities": []}])
    assert rows[0]["has"] is None
    assert rows[0]["has_any"] is None
    assert fields_of(rows[0]["has.unknown"]) == ("metastatic_sites",)
    assert rows[1]["has"] is False
    assert rows[1]["has_any"] is False
    assert rows[1]["has.unknown"] == 0


def test_every_fact_of_the_knowledge_base_matches_evaluate(kb: KnowledgeBase) -> None:
    named = {f"fact_{name}": Fact(name) for name in kb.facts}
    raws = EDGE_CASES + list(sample_cases(400, kb, seed=3, sparse=0.1))
    check_against_evaluate(kb, named, raws)


def test_a_fact_reading_the_plan_is_refused(kb: KnowledgeBase) -> None:
    facts = dict(kb.facts)
    facts["reads_plan"] = FactDef(name="reads_plan", label="x", when=Planned(("prrt",)))
    with pytest.raises(UnsupportedKnowledgeBase, match="reads_plan"):
        compile_audit(dataclasses.replace(kb, facts=facts))


def test_the_query_renders_for_spark_without_duckdb_functions(kb: KnowledgeBase) -> None:
    sql = compile_audit(kb).sql("registry", "spark")
    assert "LIST_" not in sql
    assert "LAMBDA" not in sql
    assert "ARRAY_CONTAINS" in sql
    assert "`rec.prrt`" in sql


def test_absent_columns_count_as_unknown(kb: KnowledgeBase) -> None:
    raw = {"id": "p", "primary_site": "ileum", "ki67_percent": 4.0, "metastatic_sites": ["liver"]}
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE sparse AS SELECT 'p' AS id, 'ileum' AS primary_site, "
        "4.0::DOUBLE AS ki67_percent, ['liver'] AS metastatic_sites"
    )
    rel = run_duckdb(con, "sparse", kb)
    assert rel.columns == result_columns()
    (row,) = rel.to_arrow_table().to_pylist()
    assert row == audit_row(load_case(raw), kb, None)


def test_a_relation_is_accepted_and_ecog_may_be_double(kb: KnowledgeBase) -> None:
    raw = {"id": "q", "ecog": 2, "primary_site": "pancreas", "ki67_percent": 12}
    con = duckdb.connect()
    rel = con.sql(
        "SELECT 'q' AS id, 2.0::DOUBLE AS ecog, 'pancreas' AS primary_site, 12.0 AS ki67_percent"
    )
    (row,) = run_duckdb(con, rel, kb).to_arrow_table().to_pylist()
    assert row == audit_row(load_case(raw), kb, None)
