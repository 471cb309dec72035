"""The registry table the batch engines read: one row per patient, one column per case field.

Column names are the field registry's paths (:func:`netboard.fields.field_paths`): ``id``, every
case field, ``OBJECT.FIELD`` for the fields of an object (``labs.albumin_g_dl``), and an optional
``given`` (the intervention codes received first-line). NULL is unknown; an empty list is a
known empty list. Values are contract words (the reader validates each row with ``load_case``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from netboard.case import Case
from netboard.fields import ChoiceList, Flag, Number, Spec, Text, field_paths, registry

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    import pyarrow as pa

__all__ = [
    "GIVEN",
    "case_row",
    "consistency_mask",
    "input_columns",
    "input_schema",
    "layout_fields",
    "list_has",
    "spark_ddl",
]

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


def _kind(spec: Spec) -> str:
    if isinstance(spec, Number):
        return "number"
    if isinstance(spec, Flag):
        return "flag"
    if isinstance(spec, ChoiceList):
        return "list"
    return "text" if isinstance(spec, Text) else "choice"


def layout_fields() -> dict[str, str]:
    """Input-layout column -> kind (number, flag, choice, list, text), from the registry.

    >>> kinds = layout_fields()
    >>> kinds["ecog"], kinds["metastatic_sites"], kinds["labs.albumin_g_dl"]
    ('number', 'list', 'number')
    """
    return {path: _kind(f.spec) for path, f in registry().fields.items()}


def consistency_mask(cols: Mapping[str, pa.Array]) -> np.ndarray:
    """Rows (of valid values, column by column) holding a contradiction of the registry's
    consistency rules: the column-wise twin of :func:`netboard.fields.check_consistency`."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    def mask(array: pa.Array) -> np.ndarray:
        out: np.ndarray = pc.fill_null(array, False).to_numpy(zero_copy_only=False)
        return out

    n = len(next(iter(cols.values())))
    bad = np.zeros(n, bool)
    reg = registry()
    # A column read as all-null (an empty CSV column) has the null type: give it its own.
    types = {"list": pa.list_(pa.string()), "number": pa.float64(), "flag": pa.bool_()}
    kinds = layout_fields()
    cols = {
        k: (c.cast(types.get(kinds.get(k, ""), pa.string())) if pa.types.is_null(c.type) else c)
        for k, c in cols.items()
    }
    for rule in reg.consistency:
        paths = (
            [p for p, f in reg.fields.items() if f.object == rule.field]
            if rule.field in reg.objects
            else [rule.field]
        )
        for path in paths:
            col = cols[path]
            if rule.value == "nonempty":
                given = pc.greater(pc.list_value_length(col), 0)
            elif rule.value is not None:
                given = pc.equal(col, pa.scalar(rule.value))
            else:
                given = pc.is_valid(col)
            if rule.requires is not None:
                other, words = rule.requires
                allowed = pc.is_in(cols[other], value_set=pa.array(list(words)))
                wrong = pc.and_(pc.is_valid(cols[other]), pc.invert(allowed))
                bad |= mask(pc.and_(given, wrong))
            elif rule.within is not None:
                pool = cols[rule.within]
                if rule.field in reg.objects:
                    member = pc.fill_null(list_has(pool, path.split(".", 1)[1]), False)
                    bad |= mask(pc.and_(pc.and_(given, pc.is_valid(pool)), pc.invert(member)))
                else:
                    bad |= _items_not_within(col, pool)
    return bad


def list_has(lists: pa.Array, word: str) -> pa.Array:
    """Per row: does the list hold ``word`` (NULL where the list is NULL)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    out = np.zeros(len(lists), bool)
    flat = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    hits = pc.fill_null(pc.equal(flat, pa.scalar(word)), False).to_numpy(zero_copy_only=False)
    out[parents[hits]] = True
    return pa.array(out, mask=pc.is_null(lists).to_numpy(zero_copy_only=False))


def _items_not_within(items: pa.Array, pool: pa.Array) -> np.ndarray:
    """Rows whose list ``items`` holds a word that the (stated) list ``pool`` lacks."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(items)
    words = pa.array(sorted({*pc.unique(pc.list_flatten(items)).to_pylist()} - {None}), pa.string())
    width = len(words) + 1

    def keys(lists: pa.Array) -> np.ndarray:
        flat = pc.list_flatten(lists)
        parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64)
        index = pc.fill_null(pc.index_in(flat, value_set=words), len(words))
        out: np.ndarray = parents * width + index.to_numpy(zero_copy_only=False)
        return out

    parents = pc.list_parent_indices(items).to_numpy(zero_copy_only=False)
    missing = ~np.isin(keys(items), keys(pool))
    has_pool: np.ndarray = pc.is_valid(pool).to_numpy(zero_copy_only=False)
    bad = np.zeros(n, bool)
    rows = parents[missing]
    bad[rows[has_pool[rows]]] = True
    return bad


def input_columns(*, given: bool = True) -> dict[str, str]:
    """The input columns and their SQL (DuckDB) types, in contract order.

    >>> cols = input_columns()
    >>> cols["id"], cols["ki67_percent"], cols["metastatic_sites"], cols["labs.albumin_g_dl"]
    ('VARCHAR', 'DOUBLE', 'VARCHAR[]', 'DOUBLE')
    """
    out = {path: _sql_type(f.spec) for path, f in registry().fields.items()}
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
