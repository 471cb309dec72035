"""The registry table the batch engines read: one row per patient, one column per case field.

Column names are the contract's registry columns: ``id``, every case field of
:data:`netboard.case.FIELDS`, ``labs.FIELD`` for each laboratory field, and an optional
``given`` (the intervention codes received first-line). NULL is unknown; an empty list is a
known empty list. Values are contract words (the reader validates each row with ``load_case``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from netboard.case import FIELDS, LAB_FIELDS, Case, ChoiceList, Flag, Number, Spec, field_paths

if TYPE_CHECKING:  # pragma: no cover - typing only
    import pyarrow as pa

__all__ = ["GIVEN", "case_row", "input_columns", "input_schema", "spark_ddl"]

#: The optional column of codes received first-line (for ``concordant``).
GIVEN = "given"


def _sql_type(spec: Spec) -> str:
    if isinstance(spec, Number):
        return "INTEGER" if spec.integer else "DOUBLE"
    if isinstance(spec, Flag):
        return "BOOLEAN"
    if isinstance(spec, ChoiceList):
        return "VARCHAR[]"
    return "VARCHAR"


def input_columns(*, given: bool = True) -> dict[str, str]:
    """The input columns and their SQL (DuckDB) types, in contract order.

    >>> cols = input_columns()
    >>> cols["id"], cols["ki67_percent"], cols["metastatic_sites"], cols["labs.albumin_g_dl"]
    ('VARCHAR', 'DOUBLE', 'VARCHAR[]', 'DOUBLE')
    """
    out = {name: _sql_type(spec) for name, spec in FIELDS.items()}
    out.update({f"labs.{name}": _sql_type(spec) for name, spec in LAB_FIELDS.items()})
    if given:
        out[GIVEN] = "VARCHAR[]"
    return out


def input_schema(*, given: bool = True) -> pa.Schema:
    """The input columns as an Arrow schema (``ecog`` int32, lists of strings)."""
    import pyarrow as pa

    kinds: Mapping[str, pa.DataType] = {
        "INTEGER": pa.int32(),
        "DOUBLE": pa.float64(),
        "BOOLEAN": pa.bool_(),
        "VARCHAR": pa.string(),
        "VARCHAR[]": pa.list_(pa.string()),
    }
    return pa.schema([(name, kinds[t]) for name, t in input_columns(given=given).items()])


def spark_ddl(*, given: bool = True) -> str:
    """The input columns as a Spark DDL schema string (for ``createDataFrame``).

    >>> spark_ddl().split(", ")[:2]
    ['`id` STRING', '`age_years` DOUBLE']
    """
    kinds = {
        "INTEGER": "INT",
        "DOUBLE": "DOUBLE",
        "BOOLEAN": "BOOLEAN",
        "VARCHAR": "STRING",
        "VARCHAR[]": "ARRAY<STRING>",
    }
    return ", ".join(f"`{n}` {kinds[t]}" for n, t in input_columns(given=given).items())


def case_row(case: Case, given: Sequence[str] | None = None) -> dict[str, Any]:
    """One input row for a case: contract words, lists as lists, None for unknown.

    >>> from netboard.case import load_case
    >>> row = case_row(load_case({"id": "p1", "metastatic_sites": ["liver"]}), given=[])
    >>> row["id"], row["metastatic_sites"], row["ki67_percent"], row["given"]
    ('p1', ['liver'], None, [])
    """
    row: dict[str, Any] = {}
    for path in field_paths():
        value = case.value(path)
        if isinstance(value, tuple):
            value = [str(x) for x in value]
        elif value is not None and not isinstance(value, bool | int | float):
            value = str(value)
        row[path] = value
    row[GIVEN] = None if given is None else list(given)
    return row
