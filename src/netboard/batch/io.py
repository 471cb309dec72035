"""Registry files in, result files out, in bounded chunks (docs/audit.md).

A registry is CSV, Parquet or NDJSON (``.ndjson``/``.jsonl``), one patient a row; columns are the
contract's case fields, ``labs.FIELD`` and an optional ``given``. :func:`read_registry` reads it
chunk by chunk (about ``chunk_rows`` rows at a time, so memory stays bounded whatever the file
size) and yields :class:`Chunk` objects: the valid rows normalised into the Arrow input layout of
the batch engines, and one problem line per fault of each bad row (``row N: field: message``).

Row numbers count data rows from 1 as a user counts them: in CSV the header is not counted (row 1
is the line after the header, when no cell holds a line break); in NDJSON row N is line N of the
file (blank lines are skipped but counted); in Parquet row N is the N-th row.

Validation agrees with ``load_case``: CSV and Parquet rows are checked column by column with
Arrow compute (ranges, words, list items, the cross-field checks) and only the rows found at fault
go through ``load_case``, which writes their problem lines (and has the last word). NDJSON rows are
each read with ``load_case``. A column that is not a case field is an error for the whole file
(:class:`RegistryError`), never ignored.
"""

from __future__ import annotations

import csv
import difflib
import json
import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netboard import vocab as v
from netboard.batch.columns import consistency_mask, layout_fields
from netboard.batch.reference import audit_table, result_schema
from netboard.case import Case, load_case
from netboard.documents import parse_json
from netboard.errors import CaseError, Problem, ProblemsError
from netboard.fields import Choice, ChoiceList, Number, flatten, nest, registry
from netboard.kb import KnowledgeBase

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

__all__ = [
    "CHUNK_ROWS",
    "AuditStats",
    "Chunk",
    "Registry",
    "RegistryError",
    "ResultWriter",
    "audit_chunks",
    "input_schema",
    "layout_row",
    "open_registry",
    "read_registry",
    "registry_format",
]

#: Rows per chunk (a chunk's input, result and working copies stay far below 1 GB).
CHUNK_ROWS = 100_000

#: A number as text: what ``float`` reads, without nan, inf or digit separators.
NUMBER_RE = r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"
_NUMBER = re.compile(NUMBER_RE)
#: The CSV cell for a list known to be empty (an empty cell is unknown).
EMPTY_LIST = "[]"

_FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
}


class RegistryError(ProblemsError):
    """The registry (or the result path) is unusable as a whole: unknown format or column, ..."""


@dataclass(slots=True)
class Chunk:
    """Valid rows in the input layout, the problem lines of the bad rows, and rows read."""

    table: pa.Table
    problems: list[str] = field(default_factory=list)
    rows: int = 0
    skipped: int = 0


def registry_format(path: str | Path) -> str:
    """``csv``, ``parquet`` or ``ndjson`` from the file extension.

    Raises:
        RegistryError: another extension.
    """
    suffix = Path(path).suffix.lower()
    fmt = _FORMATS.get(suffix)
    if fmt is None:
        raise RegistryError(
            [
                Problem(
                    str(path),
                    f"unknown format {suffix or '(no extension)'!r}: expected .csv, .parquet, "
                    ".ndjson or .jsonl",
                )
            ]
        )
    return fmt


def input_schema(with_given: bool = True) -> pa.Schema:
    """The Arrow input layout: ``id``, every case field, ``labs.FIELD``, optional ``given``."""
    import pyarrow as pa

    kinds = {
        "number": pa.float64(),
        "flag": pa.bool_(),
        "choice": pa.string(),
        "text": pa.string(),
        "list": pa.list_(pa.string()),
    }
    cols = [pa.field(name, kinds[kind]) for name, kind in layout_fields().items()]
    if with_given:
        cols.append(pa.field("given", pa.list_(pa.string())))
    return pa.schema(cols)


def _allowed_columns() -> set[str]:
    return {*layout_fields(), "given"}


def _check_columns(names: Sequence[str], source: str) -> None:
    allowed = _allowed_columns()
    problems: list[Problem] = []
    seen: set[str] = set()
    for name in names:
        if name in seen:
            problems.append(Problem(source, f"column {name!r} appears twice"))
        seen.add(name)
        if name not in allowed:
            close = difflib.get_close_matches(name, sorted(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(
                Problem(
                    source,
                    f"unknown column {name!r}: not a contract case field, labs.FIELD or "
                    f"given{hint}",
                )
            )
    if problems:
        raise RegistryError(problems)


def _enum_values(name: str) -> list[str]:
    spec = registry().spec(name)
    if name == "given":
        return [m.value for m in v.Intervention]
    if isinstance(spec, Choice | ChoiceList):
        return [m.value for m in spec.enum]
    return []


# --- the fast path: Arrow compute over a whole chunk -----------------------------------------


def _mask(arr: Any) -> np.ndarray:
    import pyarrow.compute as pc

    out: np.ndarray = pc.fill_null(arr, False).to_numpy(zero_copy_only=False)
    return out


def _strings(col: pa.Array, csv_text: bool) -> pa.Array | None:
    """The column as strings (CSV cells trimmed, blank = null); None when it is not text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    if pa.types.is_null(t):
        return pa.nulls(len(col), pa.string())
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return None
    col = col.cast(pa.string())
    if csv_text:
        col = pc.utf8_trim_whitespace(col)
        col = pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)
    return col


def _number(col: pa.Array, spec: Number, csv_text: bool) -> tuple[pa.Array, np.ndarray]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(col)
    t = col.type
    if pa.types.is_null(t):
        return pa.nulls(n, pa.float64()), np.zeros(n, bool)
    if csv_text:
        text = _strings(col, True)
        assert text is not None
        ok = pc.match_substring_regex(text, NUMBER_RE)
        values = pc.cast(pc.if_else(ok, text, pa.scalar(None, pa.string())), pa.float64())
        bad = _mask(pc.and_(pc.is_valid(text), pc.invert(ok)))
    elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        values = pc.cast(col, pa.float64(), safe=False)
        bad = np.zeros(n, bool)
    else:
        return pa.nulls(n, pa.float64()), _mask(pc.is_valid(col))
    wrong = pc.or_(pc.invert(pc.is_finite(values)), pc.less(values, spec.lo))
    if spec.hi is not None:
        wrong = pc.or_(wrong, pc.greater(values, spec.hi))
    if spec.integer:
        wrong = pc.or_(wrong, pc.not_equal(values, pc.floor(values)))
    bad = bad | _mask(wrong)
    return values, bad


def _flag(col: pa.Array, csv_text: bool) -> tuple[pa.Array, np.ndarray]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(col)
    if pa.types.is_null(col.type):
        return pa.nulls(n, pa.bool_()), np.zeros(n, bool)
    if csv_text:
        text = _strings(col, True)
        assert text is not None
        low = pc.utf8_lower(text)
        ok = pc.is_in(low, value_set=pa.array(["true", "false"]))
        values = pc.if_else(ok, pc.equal(low, "true"), pa.scalar(None, pa.bool_()))
        return values, _mask(pc.and_(pc.is_valid(text), pc.invert(ok)))
    if pa.types.is_boolean(col.type):
        return col, np.zeros(n, bool)
    return pa.nulls(n, pa.bool_()), _mask(pc.is_valid(col))


def _choice(col: pa.Array, words: list[str] | None, csv_text: bool) -> tuple[pa.Array, np.ndarray]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(col)
    text = _strings(col, csv_text)
    if text is None:
        return pa.nulls(n, pa.string()), _mask(pc.is_valid(col))
    if words is None:
        return text, np.zeros(n, bool)
    ok = pc.is_in(text, value_set=pa.array(words))
    bad = _mask(pc.and_(pc.is_valid(text), pc.invert(ok)))
    return text, bad


def _list(col: pa.Array, words: list[str], csv_text: bool) -> tuple[pa.Array, np.ndarray]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(col)
    list_type = pa.list_(pa.string())
    t = col.type
    if pa.types.is_null(t):
        return pa.nulls(n, list_type), np.zeros(n, bool)
    if csv_text:
        text = _strings(col, True)
        assert text is not None
        empty = pc.equal(text, EMPTY_LIST)
        split = pc.split_pattern(pc.if_else(empty, pa.scalar(None, pa.string()), text), ";")
        items = pc.utf8_trim_whitespace(pc.list_flatten(split))
        offsets = pc.list_value_length(split)
        lists = pa.ListArray.from_arrays(
            _offsets(offsets), items, type=list_type, mask=pc.is_null(split)
        )
        lists = pc.if_else(empty, pa.scalar([], list_type), lists)
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        value_type = t.value_type
        if pa.types.is_dictionary(value_type):
            value_type = value_type.value_type
        if not (pa.types.is_string(value_type) or pa.types.is_large_string(value_type)):
            nonempty = pc.greater(pc.list_value_length(col), 0)
            return pa.nulls(n, list_type), _mask(nonempty)
        lists = col.cast(list_type)
    else:
        return pa.nulls(n, list_type), _mask(pc.is_valid(col))
    flat = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists)
    item_ok = pc.fill_null(pc.is_in(flat, value_set=pa.array(words)), False)
    bad = np.zeros(n, bool)
    wrong_rows = pc.filter(parents, pc.invert(item_ok)).to_numpy(zero_copy_only=False)
    bad[wrong_rows] = True
    return lists, bad


def _offsets(lengths: pa.Array) -> pa.Array:
    """List offsets from per-row lengths (null rows have length 0)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    counts = pc.fill_null(lengths, 0).to_numpy(zero_copy_only=False).astype(np.int32)
    return pa.array(np.concatenate([np.zeros(1, np.int32), np.cumsum(counts, dtype=np.int32)]))


def _normalise(
    table: pa.Table, csv_text: bool, has_given: bool
) -> tuple[dict[str, pa.Array], np.ndarray]:
    """Columns of the input layout and the mask of rows found at fault."""
    import numpy as np
    import pyarrow as pa

    n = table.num_rows
    schema = input_schema(has_given)
    bad = np.zeros(n, bool)
    cols: dict[str, pa.Array] = {}
    for f in schema:
        name = f.name
        if name not in table.column_names:
            cols[name] = pa.nulls(n, f.type)
            continue
        col = table.column(name).combine_chunks()
        spec = registry().spec(name)
        kind = layout_fields().get(name, "list")
        if kind == "number":
            assert isinstance(spec, Number)
            values, wrong = _number(col, spec, csv_text)
        elif kind == "flag":
            values, wrong = _flag(col, csv_text)
        elif kind == "choice":
            values, wrong = _choice(col, _enum_values(name), csv_text)
        elif kind == "text":
            values, wrong = _choice(col, None, csv_text)
        else:
            values, wrong = _list(col, _enum_values(name), csv_text)
        cols[name] = values
        bad |= wrong
    bad |= consistency_mask(cols)
    return cols, bad


# --- the slow path: one row through load_case -----------------------------------------------


def _csv_value(kind: str, cell: Any) -> Any:
    """A CSV cell as ``load_case`` should see it (the fast path's reading, value by value)."""
    if not isinstance(cell, str):
        return cell
    text = cell.strip()
    if text == "":
        return None
    if kind == "number":
        return float(text) if _NUMBER.match(text) else text
    if kind == "flag":
        return {"true": True, "false": False}.get(text.lower(), text)
    if kind == "list":
        return [] if text == EMPTY_LIST else [item.strip() for item in text.split(";")]
    return text


def given_problems(given: Any) -> list[Problem]:
    """Problems of a ``given`` value (a list of intervention codes), as ``load_case`` words them."""
    codes = [m.value for m in v.Intervention]
    if given is None:
        return []
    if not isinstance(given, list):
        return [Problem("given", f"expected a list of intervention codes; got {given!r}"[:200])]
    return [
        Problem(f"given[{i}]", f"{json.dumps(code)} is not an intervention code")
        for i, code in enumerate(given)
        if not (isinstance(code, str) and code in codes)
    ]


def layout_row(case: Case, given: Sequence[str] | None = None) -> dict[str, Any]:
    """One row of the input layout from a valid case (and what was given)."""
    row: dict[str, Any] = {}
    for name in layout_fields():
        value = case.value(name)
        if isinstance(value, tuple):
            value = [str(x) for x in value]
        elif isinstance(value, str):
            value = str(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        row[name] = value
    row["given"] = None if given is None else list(given)
    return row


def check_row(raw: Mapping[str, Any]) -> tuple[Case | None, list[Problem]]:
    """A flat registry row (``labs.X``, optional ``given``) checked with ``load_case``."""
    problems: list[Problem] = []
    flat = flatten({k: x for k, x in raw.items() if k != "given"})
    data = nest({k: x for k, x in flat.items() if x is not None})
    case: Case | None = None
    try:
        case = load_case(data)
    except CaseError as exc:
        problems.extend(exc.problems)
    problems.extend(given_problems(raw.get("given")))
    return (case if not problems else None), problems


def _slow_rows(
    table: pa.Table, indices: Iterable[int], csv_text: bool, number: Callable[[int], int]
) -> tuple[list[dict[str, Any]], list[str]]:
    kinds = {**layout_fields(), "given": "list"}
    good: list[dict[str, Any]] = []
    lines: list[str] = []
    for i in indices:
        record = table.slice(i, 1).to_pylist()[0]
        if csv_text:
            record = {k: _csv_value(kinds.get(k, "text"), x) for k, x in record.items()}
        case, problems = check_row(record)
        if case is None:
            lines.extend(f"row {number(i)}: {p}" for p in problems)
        else:
            good.append(layout_row(case, record.get("given")))
    return good, lines


def _chunk_from_table(
    table: pa.Table,
    csv_text: bool,
    offset: int,
    has_given: bool,
    skipped_before: Sequence[int] = (),
    numbers: Sequence[int] | None = None,
) -> Chunk:
    """Check and normalise one chunk; ``offset`` rows came before it in the file.

    ``skipped_before``: data-row numbers (ascending) the CSV parser already dropped as malformed,
    so that row numbers still count every data row of the file. ``numbers``: the row number of
    each row, when the caller knows them (then ``offset`` and ``skipped_before`` are unused).
    """

    def number(i: int) -> int:
        if numbers is not None:
            return numbers[i]
        n = offset + i + 1
        for dropped in skipped_before:
            if dropped <= n:
                n += 1
        return n

    import numpy as np
    import pyarrow as pa

    cols, bad = _normalise(table, csv_text, has_given)
    schema = input_schema(has_given)
    normal = pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)
    bad_rows = np.flatnonzero(bad)
    if len(bad_rows) == 0:
        return Chunk(normal, [], table.num_rows, 0)
    good, lines = _slow_rows(table, bad_rows.tolist(), csv_text, number)
    valid = normal.filter(pa.array(~bad))
    if good:
        for row in good:
            if not has_given:
                row.pop("given", None)
        valid = pa.concat_tables([valid, pa.Table.from_pylist(good, schema=schema)])
    return Chunk(valid, lines, table.num_rows, len(bad_rows) - len(good))


def check_table(
    table: pa.Table,
    *,
    csv_text: bool = False,
    offset: int = 0,
    has_given: bool | None = None,
    numbers: Sequence[int] | None = None,
) -> Chunk:
    """Check and normalise registry rows as ``netboard audit`` does (the Spark tasks use it).

    Args:
        table: registry columns (CSV text when ``csv_text``).
        offset: rows before these (row numbers start at ``offset + 1``).
        has_given: whether the result layout has ``given`` (default: the table has it).
        numbers: each row's number, when known (e.g. a Parquet row index).
    """
    if has_given is None:
        has_given = "given" in table.column_names
    return _chunk_from_table(table, csv_text, offset, has_given, numbers=numbers)


def check_columns(names: Sequence[str], source: str) -> None:
    """Refuse column names that are not case fields, ``labs.FIELD`` or ``given``.

    Raises:
        RegistryError: one problem per unknown or repeated column (with a close match).
    """
    _check_columns(names, source)


# --- readers -------------------------------------------------------------------------------

_UTF16 = (b"\xff\xfe", b"\xfe\xff")


def _check_encoding(path: Path, head: bytes) -> None:
    """Refuse a text registry that is plainly not UTF-8 (UTF-16/32 byte-order mark or NULs)."""
    if head.startswith(_UTF16) or (len(head) >= 4 and head[1:4:2] == b"\0\0"):
        raise RegistryError(
            [
                Problem(
                    str(path),
                    "encoded as UTF-16 (or UTF-32): save the file as UTF-8 and run again",
                )
            ]
        )
    if b"\0" in head:
        raise RegistryError([Problem(str(path), "holds NUL bytes: not a UTF-8 text file")])


def _utf8_fault(raw: bytes) -> str:
    """Where and why ``raw`` is not UTF-8, as a short phrase."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 1].hex()
        return f"not valid UTF-8 text (byte 0x{bad} at position {exc.start + 1})"
    return "not valid UTF-8 text"


def _surrogates(value: Any, where: str) -> list[Problem]:
    """Problems for strings holding a lone surrogate (``"\ud800"`` in JSON): not Unicode text."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            code = ord(value[exc.start])
            return [
                Problem(where, f"holds a lone surrogate (U+{code:04X}), which is not Unicode text")
            ]
        return []
    if isinstance(value, dict):
        return [p for k, x in value.items() for p in _surrogates(x, f"{where}.{k}" if where else k)]
    if isinstance(value, list):
        return [p for i, x in enumerate(value) for p in _surrogates(x, f"{where}[{i}]")]
    return []


def _csv_header(path: Path) -> list[str]:
    with path.open("rb") as fh:
        head = fh.read(4096)
        line = head + (fh.readline() if b"\n" not in head else b"")
    _check_encoding(path, head)
    first_line = line.split(b"\n", 1)[0]
    try:
        text = first_line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RegistryError(
            [Problem(str(path), f"header row: {_utf8_fault(first_line)}")]
        ) from None
    try:
        first = next(csv.reader([text]), None)
    except csv.Error as exc:
        raise RegistryError(
            [Problem(str(path), f"header row: not readable as CSV: {exc}")]
        ) from None
    if not first or first == [""]:
        raise RegistryError([Problem(str(path), "empty file: expected a header row")])
    return first


def _one_line(exc: BaseException) -> str:
    """An exception's text on one line."""
    return " ".join(str(exc).split())


def _row_numbers(offset: int, n: int, skipped_before: Sequence[int]) -> list[int]:
    """Data-row numbers of ``n`` rows after ``offset`` parsed rows, past the dropped ones."""
    out = []
    dropped = list(skipped_before)
    for i in range(n):
        number = offset + i + 1
        for d in dropped:
            if d <= number:
                number += 1
        out.append(number)
    return out


def _decode_csv(table: pa.Table, numbers: list[int]) -> tuple[pa.Table, list[int], list[str]]:
    """Binary CSV cells as text; rows with a cell that is not UTF-8 are dropped and named."""
    import numpy as np
    import pyarrow as pa

    bad = np.zeros(table.num_rows, bool)
    lines: dict[int, list[str]] = {}
    cols = []
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        try:
            cols.append(col.cast(pa.string()))
            continue
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
        values = col.to_pylist()
        text: list[str | None] = []
        for i, raw in enumerate(values):
            if raw is None:
                text.append(None)
                continue
            try:
                text.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                bad[i] = True
                lines.setdefault(i, []).append(f"row {numbers[i]}: {name}: {_utf8_fault(raw)}")
                text.append(None)
        cols.append(pa.array(text, pa.string()))
    decoded = pa.Table.from_arrays(cols, names=table.column_names)
    if not bad.any():
        return decoded, numbers, []
    keep = ~bad
    problems = [line for i in sorted(lines) for line in lines[i]]
    kept = [n for n, k in zip(numbers, keep.tolist(), strict=True) if k]
    return decoded.filter(pa.array(keep)), kept, problems


@dataclass(slots=True)
class Registry:
    """A registry whose header or schema has been checked; :meth:`chunks` reads it."""

    path: Path
    format: str
    columns: list[str]
    chunk_rows: int = CHUNK_ROWS

    @property
    def has_given(self) -> bool:
        """Whether the registry has a ``given`` column (NDJSON: assumed)."""
        return self.format == "ndjson" or "given" in self.columns

    def row_count(self) -> int | None:
        """The number of rows, for a progress display: exact for Parquet (its footer); the
        number of lines for CSV (less the header) and NDJSON, which a quoted line break can
        make a little high; None when the file cannot be read."""
        try:
            if self.format == "parquet":
                import pyarrow.parquet as pq

                return int(pq.ParquetFile(self.path).metadata.num_rows)
            lines = 0
            last = b"\n"
            with self.path.open("rb") as fh:
                while block := fh.read(1 << 20):
                    lines += block.count(b"\n")
                    last = block[-1:]
            lines += last != b"\n"
            return max(0, lines - 1) if self.format == "csv" else lines
        except (OSError, ValueError):
            return None

    def chunks(self) -> Iterator[Chunk]:
        """The registry chunk by chunk (see :func:`read_registry`)."""
        if self.format == "csv":
            return _read_csv(self.path, self.columns, self.chunk_rows)
        if self.format == "parquet":
            return _read_parquet(self.path, self.chunk_rows)
        return _read_ndjson(self.path, self.chunk_rows)


def _read_csv(path: Path, names: list[str], chunk_rows: int) -> Iterator[Chunk]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    has_given = "given" in names
    read = pacsv.ReadOptions(
        column_names=names,
        skip_rows=1,
        block_size=max(1 << 20, min(chunk_rows * 256, 64 << 20)),
        use_threads=False,  # so that a malformed row's line number is known
    )
    convert = pacsv.ConvertOptions(
        # Bytes, not text: a cell that is not UTF-8 is then one bad row, not a bad file.
        column_types={n: pa.binary() for n in names},
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    malformed: list[tuple[int, str]] = []

    def invalid(row: Any) -> str:
        # ``number`` is the physical line (the header is line 1): data row = line - 1.
        number = int(row.number) - 1 if row.number is not None else -1
        malformed.append(
            (number, f"expected {row.expected_columns} cells, got {row.actual_columns}")
        )
        return "skip"

    parse = pacsv.ParseOptions(invalid_row_handler=invalid)
    offset = 0
    try:
        reader = pacsv.open_csv(
            path, read_options=read, convert_options=convert, parse_options=parse
        )
        reported = 0
        for batch in reader:
            dropped = sorted(n for n, _ in malformed)
            for start in range(0, batch.num_rows, chunk_rows):
                part = pa.Table.from_batches([batch.slice(start, chunk_rows)])
                numbers = _row_numbers(offset, part.num_rows, dropped)
                text, kept, faults = _decode_csv(part, numbers)
                chunk = _chunk_from_table(text, True, offset, has_given, numbers=kept)
                chunk.problems[:0] = faults
                chunk.rows += len(numbers) - len(kept)
                chunk.skipped += len(numbers) - len(kept)
                offset += part.num_rows
                yield chunk
            fresh = malformed[reported:]
            reported = len(malformed)
            if fresh:
                yield Chunk(
                    input_schema(has_given).empty_table(),
                    [f"row {n}: (row): {msg}" for n, msg in sorted(fresh)],
                    len(fresh),
                    len(fresh),
                )
    except pa.ArrowInvalid as exc:
        raise RegistryError(
            [Problem(str(path), f"not readable as CSV after data row {offset}: {_one_line(exc)}")]
        ) from None


def _parquet_file(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise RegistryError([Problem(str(path), f"not a Parquet file: {_one_line(exc)}")]) from None


def _parquet_columns(path: Path) -> list[str]:
    import pyarrow as pa

    pf = _parquet_file(path)
    probe = pa.Table.from_batches([], schema=pf.schema_arrow).flatten()
    names: list[str] = probe.column_names
    return names


def _read_parquet(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    import pyarrow as pa

    pf = _parquet_file(path)
    has_given = "given" in pa.Table.from_batches([], schema=pf.schema_arrow).column_names
    offset = 0
    batches = pf.iter_batches(batch_size=chunk_rows)
    while True:
        try:
            batch = next(batches, None)
        except (pa.ArrowException, OSError) as exc:
            raise RegistryError(
                [Problem(str(path), f"corrupt Parquet data after row {offset}: {_one_line(exc)}")]
            ) from None
        if batch is None:
            return
        table = pa.Table.from_batches([batch]).flatten()
        yield _chunk_from_table(table, False, offset, has_given)
        offset += table.num_rows


def _read_ndjson(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    import pyarrow as pa

    allowed = _allowed_columns() | {"labs"}
    rows: list[dict[str, Any]] = []
    lines: list[str] = []
    read = skipped = 0
    has_given = True

    def flush() -> Chunk:
        nonlocal rows, lines, read, skipped
        out = Chunk(
            pa.Table.from_pylist(rows, schema=input_schema(has_given)), lines, read, skipped
        )
        rows, lines, read, skipped = [], [], 0, 0
        return out

    def bad(number: int, problems: Iterable[Problem | str]) -> None:
        nonlocal skipped
        lines.extend(f"row {number}: {p}" for p in problems)
        skipped += 1

    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            read += 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                bad(number, [f"(row): {_utf8_fault(raw)}"])
                line = None
            record: Any = None
            if line is not None:
                try:
                    record = parse_json(line, source="(row)")
                    if not isinstance(record, dict):
                        bad(number, ["(row): expected a JSON object of case fields"])
                        record = None
                except CaseError as exc:
                    bad(number, exc.problems[:1])
            if record is not None:
                unknown = [k for k in record if k not in allowed]
                if unknown:
                    _check_columns(unknown, f"{path} (line {number})")
                faults = _surrogates(record, "")
                case, problems = (None, faults) if faults else check_row(record)
                if case is None:
                    bad(number, problems)
                else:
                    rows.append(layout_row(case, record.get("given")))
            if read >= chunk_rows:
                yield flush()
    if read:
        yield flush()


def open_registry(path: str | Path, *, chunk_rows: int = CHUNK_ROWS) -> Registry:
    """Check a registry file before anything is read from it or written.

    The file must exist and not be empty; its extension gives the format; CSV must be UTF-8
    with a header of known columns; Parquet must have a readable footer and known columns;
    NDJSON must not be UTF-16 (its keys are checked line by line while reading).

    Raises:
        RegistryError: one problem per fault, naming the file and the fault.
    """
    p = Path(path)
    fmt = registry_format(p)
    if not p.is_file():
        raise RegistryError([Problem(str(p), "no such file")])
    try:
        size = p.stat().st_size
        with p.open("rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise RegistryError([Problem(str(p), f"cannot read: {exc.strerror or exc}")]) from None
    if size == 0:
        raise RegistryError([Problem(str(p), "empty file")])
    if fmt == "csv":
        columns = _csv_header(p)
    elif fmt == "parquet":
        columns = _parquet_columns(p)
    else:
        _check_encoding(p, head)
        columns = []
    if columns:
        _check_columns(columns, str(p))
    return Registry(p, fmt, columns, chunk_rows)


def read_registry(path: str | Path, *, chunk_rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
    """Read a registry chunk by chunk: valid rows normalised, bad rows as problem lines.

    Raises:
        RegistryError: the file is missing, empty, of unknown format, not UTF-8, or has an
            unknown column (raised here, before the first chunk, except for an NDJSON key first
            met further down or a Parquet page found corrupt while reading).
    """
    return open_registry(path, chunk_rows=chunk_rows).chunks()


# --- writing -------------------------------------------------------------------------------


#: Characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_formulas(col: pa.Array) -> pa.Array:
    """Text cells starting with ``= + - @``, tab or CR get a leading ``'`` (spreadsheets then
    show the text instead of running it); other cells are unchanged.

    >>> import pyarrow as pa
    >>> escape_formulas(pa.array(["=1+1", "p1", None, "-3", "@x"])).to_pylist()
    ["'=1+1", 'p1', None, "'-3", "'@x"]
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return col
    risky = pc.fill_null(pc.match_substring_regex(col, r"^[=+\-@\t\r]"), False)
    if not pc.any(risky).as_py():
        return col
    out: pa.Array = pc.if_else(risky, pc.binary_join_element_wise("'", col, ""), col)
    return out


def _for_csv(table: pa.Table, empty_list: str = "", *, formulas: bool = False) -> pa.Table:
    """List columns joined with ``;`` (an empty list as ``empty_list``), the rest unchanged.

    ``formulas``: escape cells a spreadsheet would run (:func:`escape_formulas`).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    cols = []
    for col in table.columns:
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            joined = pc.binary_join(col, ";")
            if empty_list:
                empty = pc.equal(pc.list_value_length(col), 0)
                joined = pc.if_else(empty, pa.scalar(empty_list), joined)
            col = joined
        if formulas:
            col = escape_formulas(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
        cols.append(col)
    return pa.Table.from_arrays(cols, names=table.column_names)


class TableWriter:
    """Writes tables chunk by chunk to Parquet, CSV or NDJSON (by extension), atomically.

    The data go to ``PATH.netboard-PID.partial`` and are renamed to PATH by :meth:`close`, so a
    failed run leaves no half-written result (``netboard.batch.outputs``). In CSV, lists are
    ``;``-joined; ``csv_empty_list`` is written for an empty list (a registry needs ``[]``; a
    result leaves the cell empty); with ``csv_formulas`` cells a spreadsheet would run as a
    formula get a leading ``'`` (results; never in Parquet or NDJSON).

    Raises:
        RegistryError: unknown extension; :class:`netboard.batch.outputs.OutputError` when the
            file cannot be written (permission, full disk, ...).
    """

    def __init__(
        self,
        path: str | Path,
        schema: pa.Schema,
        *,
        formats: Sequence[str] = ("parquet", "csv"),
        csv_empty_list: str = "",
        csv_formulas: bool = False,
    ) -> None:
        from netboard.batch.outputs import cannot_write, partial_path

        self.path = Path(path)
        suffix = self.path.suffix.lower()
        fmt = _FORMATS.get(suffix)
        if fmt is None or fmt not in formats:
            wanted = ", ".join(k for k, f in _FORMATS.items() if f in formats)
            raise RegistryError(
                [Problem(str(path), f"unknown output format {suffix!r}: expected {wanted}")]
            )
        self.format = fmt
        self.schema = schema
        self.csv_empty_list = csv_empty_list
        self.csv_formulas = csv_formulas
        self.tmp = partial_path(self.path)
        self._writer: Any = None
        self._fh: Any = None
        self.rows = 0
        try:
            self._open()
        except OSError as exc:
            self.tmp.unlink(missing_ok=True)
            raise cannot_write(path, exc) from None

    def _open(self) -> None:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        if self.format == "parquet":
            self._writer = pq.ParquetWriter(self.tmp, self.schema, compression="zstd")
        elif self.format == "csv":
            probe = _for_csv(self.schema.empty_table(), self.csv_empty_list)
            self._writer = pacsv.CSVWriter(self.tmp, probe.schema)
        else:
            self._fh = self.tmp.open("w", encoding="utf-8")

    def write(self, table: pa.Table) -> None:
        """Append a table with this writer's schema."""
        from netboard.batch.outputs import cannot_write

        table = table.cast(self.schema)
        self.rows += table.num_rows
        try:
            if self.format == "parquet":
                self._writer.write_table(table)
            elif self.format == "csv":
                self._writer.write_table(
                    _for_csv(table, self.csv_empty_list, formulas=self.csv_formulas)
                )
            else:
                for start in range(0, table.num_rows, 20_000):
                    part = table.slice(start, 20_000).to_pylist()
                    self._fh.write(
                        "".join(
                            json.dumps({k: x for k, x in row.items() if x is not None}) + "\n"
                            for row in part
                        )
                    )
        except OSError as exc:
            raise cannot_write(self.path, exc) from None

    def close(self) -> Path:
        """Finish the file, flush it to disk and move it into place."""
        from netboard.batch.outputs import cannot_write

        try:
            if self._writer is not None:
                writer, self._writer = self._writer, None
                writer.close()
            if self._fh is not None:
                fh, self._fh = self._fh, None
                fh.close()
            fd = os.open(self.tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.tmp.unlink(missing_ok=True)
            raise cannot_write(self.path, exc) from None
        return self.path

    def abort(self) -> None:
        """Drop the partial file."""
        try:
            if self._writer is not None:
                self._writer.close()
            if self._fh is not None:
                self._fh.close()
        except OSError:
            pass
        finally:
            self._writer = self._fh = None
            self.tmp.unlink(missing_ok=True)


class ResultWriter(TableWriter):
    """A result file (Parquet, or CSV by extension) with ``result_schema()`` or a part of it.

    In CSV, cells a spreadsheet would run as formulas get a leading ``'`` (docs/audit.md).
    """

    def __init__(self, path: str | Path, schema: pa.Schema | None = None) -> None:
        super().__init__(
            path,
            result_schema() if schema is None else schema,
            formats=("parquet", "csv"),
            csv_formulas=True,
        )


# --- the audit loop ------------------------------------------------------------------------


@dataclass(slots=True)
class AuditStats:
    """What an audit run did."""

    rows: int = 0
    audited: int = 0
    skipped: int = 0


#: Rows per batch DuckDB pulls from the stream (small enough to spread over the threads).
STREAM_BATCH_ROWS = 16_384


def audit_chunks(
    chunks: Iterable[Chunk],
    *,
    kb: KnowledgeBase,
    engine: str,
    writer: TableWriter | None = None,
    on_problem: Callable[[str], None] | None = None,
    on_result: Callable[[pa.Table, pa.Table], None] | None = None,
    only: Collection[str] | None = None,
    threads: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> AuditStats:
    """Audit chunk by chunk: each chunk's valid rows through the engine, then out.

    ``on_problem`` receives each problem line, ``on_result`` each (input, result) pair (the
    report's statistics; it needs every result family); ``writer`` receives the results, the
    columns of ``only`` (``netboard.batch.run.FAMILIES``; None for all); ``on_progress`` the
    number of input rows done so far (audited or skipped), after each batch. On DuckDB the
    whole stream is one query on ``threads`` threads (default: every core) with a few batches
    in memory at a time; the other engines take one chunk at a time.
    """
    if engine == "duckdb":
        return _audit_streamed(
            chunks, kb, writer, on_problem, on_result, only, threads, on_progress
        )
    stats = AuditStats()
    for chunk in chunks:
        stats.rows += chunk.rows
        stats.skipped += chunk.skipped
        if on_problem is not None:
            for line in chunk.problems:
                on_problem(line)
        if chunk.table.num_rows == 0:
            if on_progress is not None:
                on_progress(stats.audited + stats.skipped)
            continue
        result = audit_table(chunk.table, kb, engine=engine, only=None if on_result else only)
        stats.audited += result.num_rows
        if writer is not None:
            writer.write(result.select(writer.schema.names))
        if on_result is not None:
            on_result(chunk.table, result)
        if on_progress is not None:
            on_progress(stats.audited + stats.skipped)
    return stats


def _audit_streamed(
    chunks: Iterable[Chunk],
    kb: KnowledgeBase,
    writer: TableWriter | None,
    on_problem: Callable[[str], None] | None,
    on_result: Callable[[pa.Table, pa.Table], None] | None,
    only: Collection[str] | None,
    threads: int | None,
    on_progress: Callable[[int], None] | None = None,
) -> AuditStats:

    from netboard.batch.run import CARRY, audit_tables

    stats = AuditStats()
    it = iter(chunks)

    def take(chunk: Chunk) -> pa.Table:
        stats.rows += chunk.rows
        stats.skipped += chunk.skipped
        if on_problem is not None:
            for line in chunk.problems:
                on_problem(line)
        return chunk.table

    first = next(it, None)
    if first is None:
        return stats
    head = take(first)
    schema = head.schema

    def tables() -> Iterator[pa.Table]:
        yield head
        for chunk in it:
            table = take(chunk)
            if table.num_rows:
                yield table.cast(schema)

    def consume(table: pa.Table) -> None:
        stats.audited += table.num_rows
        inputs = [n for n in table.column_names if n.startswith(CARRY)]
        result = table.drop_columns(inputs)
        if writer is not None:
            writer.write(result.select(writer.schema.names))
        if on_result is not None:
            ins = table.select(inputs).rename_columns([n[len(CARRY) :] for n in inputs])
            on_result(ins, result)
        if on_progress is not None:
            on_progress(stats.audited + stats.skipped)

    # The report reads the inputs beside each result row (its grade groups run the engine's
    # computed fields, which may read any case field): they travel through the query.
    carry = tuple(schema.names) if on_result is not None else ()
    families = None if on_result is not None else only
    audit_tables(tables(), schema, kb, consume=consume, only=families, carry=carry, threads=threads)
    return stats
