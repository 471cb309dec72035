"""The patient case: a frozen value, validated against the field registry, every problem collected.

``load_case`` takes a mapping (already parsed JSON/YAML) and either returns a ``Case`` or
raises ``CaseError`` listing every problem, one per field. ``read_case`` reads a file or
standard input safely (size limit, YAML 1.2 booleans, duplicate keys refused) and then calls
``load_case``. Which fields exist, their types, bounds and contradictions come from the field
registry (``kb/fields.yaml``, read by :mod:`netboard.fields`), not from this module.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Any

from netboard.documents import parse_document, read_text
from netboard.errors import CaseError, Problem
from netboard.fields import (
    Choice,
    ChoiceList,
    Flag,
    Number,
    Spec,
    Text,
    check_consistency,
    describe_value,
    field_paths,
    flatten,
    nest,
    registry,
)
from netboard.vocab import CONTRACT_VERSION

__all__ = [
    "MAX_CASE_BYTES",
    "Case",
    "case_json_schema",
    "coerce",
    "field_paths",
    "load_case",
    "read_case",
]

MAX_CASE_BYTES = 1_000_000


class _Object:
    """The members of one object of a case (``case.labs.platelets_10e9_l``); None: unknown."""

    __slots__ = ("_case", "_name")

    def __init__(self, case: Case, name: str) -> None:
        self._case = case
        self._name = name

    def __getattr__(self, member: str) -> Any:
        path = f"{self._name}.{member}"
        if path not in registry().fields:
            raise AttributeError(f"{self._name} has no field {member!r}")
        return self._case.value(path)


class Case:
    """A patient case. Every field is optional; an absent field is unknown.

    Fields are read as attributes (``case.primary_site``, ``case.labs.platelets_10e9_l``) or
    by path (``case.value("labs.platelets_10e9_l")``). Values are contract-typed: enum members
    for words, tuples for lists, numbers, booleans. A case is immutable and hashable.

    Example:
        >>> Case(ki67_percent=8.0, labs={"platelets_10e9_l": 90}).labs.platelets_10e9_l
        90
    """

    __slots__ = ("_values",)
    _values: dict[str, Any]

    def __init__(self, **fields: Any) -> None:
        object.__setattr__(self, "_values", {})
        for path, value in flatten(fields).items():
            if path not in registry().fields:
                raise TypeError(f"Case has no field {path!r}")
            if value is not None:
                self._values[path] = coerce(path, value)

    @classmethod
    def from_paths(cls, values: Mapping[str, Any]) -> Case:
        """A case from field paths (``labs.x``) to contract-typed values; None is unknown."""
        return cls(**nest(values))

    def with_values(self, changes: Mapping[str, Any]) -> Case:
        """A copy with the given field paths set (None removes a field)."""
        out = Case()
        values = dict(self._values)
        fields_ = registry().fields
        for path, x in changes.items():
            if path not in fields_:
                raise TypeError(f"Case has no field {path!r}")
            if x is None:
                values.pop(path, None)
            else:
                values[path] = coerce(path, x)
        object.__setattr__(out, "_values", values)
        return out

    def value(self, path: str) -> Any:
        """The value at a field path; None when unknown.

        >>> Case(ki67_percent=8.0).value("ki67_percent")
        8.0
        """
        return self._values.get(path)

    def paths(self) -> Iterator[str]:
        """The paths of the fields the case states, in contract order."""
        return (p for p in field_paths() if p in self._values)

    def to_dict(self) -> dict[str, Any]:
        """The case as contract JSON: only the fields that were given, objects nested."""
        return nest(
            {
                p: list(x) if isinstance(x, tuple) else x
                for p, x in ((p, self._values[p]) for p in self.paths())
            }
        )

    def __getattr__(self, name: str) -> Any:
        reg = registry()
        if name in reg.top:
            return self._values.get(name)
        if name in reg.objects:
            return _Object(self, name)
        raise AttributeError(f"Case has no field {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Case is immutable; use with_values()")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Case) and self._values == other._values

    def __hash__(self) -> int:
        return hash(frozenset(self._values.items()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{p}={self._values[p]!r}" for p in self.paths())
        return f"Case({inner})"


def coerce(path: str, value: Any) -> Any:
    """A valid value of field ``path`` in its contract type (words to enums, lists to tuples).

    >>> coerce("metastatic_sites", ["liver"])
    (<MetastaticSite.LIVER: 'liver'>,)
    """
    spec = registry().spec(path)
    if isinstance(spec, Choice):
        return spec.enum(value)
    if isinstance(spec, ChoiceList):
        return tuple(spec.enum(x) for x in value)
    if isinstance(spec, Number) and spec.integer and not isinstance(value, bool):
        return int(value)
    return value


# --- JSON Schema -----------------------------------------------------------------------------


def _spec_schema(spec: Spec) -> dict[str, Any]:
    if isinstance(spec, Number):
        out: dict[str, Any] = {"type": "integer" if spec.integer else "number", "minimum": spec.lo}
        if spec.hi is not None:
            out["maximum"] = spec.hi
        return out
    if isinstance(spec, Choice):
        return {"type": "string", "enum": [m.value for m in spec.enum]}
    if isinstance(spec, ChoiceList):
        return {"type": "array", "items": {"type": "string", "enum": [m.value for m in spec.enum]}}
    if isinstance(spec, Flag):
        return {"type": "boolean"}
    return {"type": "string"}


def case_json_schema() -> dict[str, Any]:
    """JSON Schema of a case (for the OpenAPI document and form builders), from the registry.

    ``load_case`` stays the judge: it also checks what a schema cannot say (cross-field
    contradictions), and null counts as absent.

    Example:
        >>> case_json_schema()["properties"]["ecog"]["type"]
        ['integer', 'null']
    """

    def nullable(schema: dict[str, Any]) -> dict[str, Any]:
        out = {**schema, "type": [schema["type"], "null"]}
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        return out

    def describe(f: Any) -> dict[str, Any]:
        unit = f" ({f.unit})" if f.unit else ""
        return {"title": f.label, "description": f"{f.why}{unit}"}

    reg = registry()
    properties: dict[str, Any] = {}
    for path in field_paths():
        f = reg.fields[path]
        if f.object is None:
            properties[path] = {**nullable(_spec_schema(f.spec)), **describe(f)}
        elif f.object not in properties:
            members = reg.members[f.object]
            properties[f.object] = {
                "type": ["object", "null"],
                "title": reg.objects[f.object].label,
                "additionalProperties": False,
                "properties": {
                    name: {**nullable(_spec_schema(m.spec)), **describe(m)}
                    for name, m in members.items()
                },
            }
    return {
        "title": "Case",
        "description": (
            f"A patient case (contract v{CONTRACT_VERSION}); every field is optional. "
            "Cross-field rules: " + "; ".join(r.message for r in reg.consistency) + "."
        ),
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }


# --- validation ------------------------------------------------------------------------------


def _check_number(name: str, spec: Number, raw: Any, problems: list[Problem]) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        problems.append(Problem(name, f"expected a number, got {describe_value(raw)}"))
        return None
    if isinstance(raw, int) and abs(raw) > 10**15:
        # Beyond any field's range, and too large for a float: say so without converting it.
        problems.append(Problem(name, f"{str(raw)[:20]}... is outside the possible range"))
        return None
    if not math.isfinite(raw):
        problems.append(Problem(name, f"expected a finite number, got {describe_value(raw)}"))
        return None
    bound = spec.bounds()
    if raw < spec.lo or (spec.hi is not None and raw > spec.hi):
        problems.append(Problem(name, f"{raw:g} is outside the possible range {bound}"))
        return None
    if spec.integer:
        if raw != int(raw):
            problems.append(Problem(name, f"expected a whole number {bound}, got {raw:g}"))
            return None
        return int(raw)
    return raw


def _field_name(key: Any) -> str:
    """A field name fit for a one-line message: plain ASCII names as they are, others escaped.

    Look-alike and invisible characters are shown as escapes, so that the reader sees why a
    name that looks right is not.
    """
    text = str(key)
    if text.isascii() and text.isprintable() and text.strip() == text and 0 < len(text) <= 60:
        return text
    return describe_value(text).encode("ascii", "backslashreplace").decode("ascii")


def _words(enum: type[StrEnum]) -> str:
    return ", ".join(m.value for m in enum)


def _suggest(word: str, choices: list[str]) -> str:
    """' (did you mean X?)' for a near miss, else ''."""
    close = difflib.get_close_matches(word.lower(), choices, n=1, cutoff=0.75)
    if not close:
        close = [c for c in choices if c.startswith(word.lower()) and len(word) >= 3][:1]
    return f" (did you mean {close[0]}?)" if close else ""


def _word(enum: type[StrEnum], raw: Any) -> StrEnum | None:
    """The enum member a word names, letter case ignored (``G2`` is ``g2``); None otherwise."""
    if not isinstance(raw, str):
        return None
    members = enum._value2member_map_
    hit = members.get(raw) or members.get(raw.lower())
    return hit if isinstance(hit, StrEnum) else None


def _check(name: str, spec: Spec, raw: Any, problems: list[Problem]) -> Any:
    if isinstance(spec, Number):
        return _check_number(name, spec, raw, problems)
    if isinstance(spec, Text):
        if not isinstance(raw, str):
            problems.append(
                Problem(name, f"expected a string (quote it), got {describe_value(raw)}")
            )
            return None
        return raw
    if isinstance(spec, Flag):
        if not isinstance(raw, bool):
            problems.append(Problem(name, f"expected true or false, got {describe_value(raw)}"))
            return None
        return raw
    words = [m.value for m in spec.enum]
    if isinstance(spec, Choice):
        hit = _word(spec.enum, raw)
        if hit is not None:
            return hit
        hint = _suggest(raw, words) if isinstance(raw, str) else ""
        problems.append(
            Problem(name, f"{describe_value(raw)} is not one of: {_words(spec.enum)}{hint}")
        )
        return None
    if not isinstance(raw, list):
        problems.append(
            Problem(name, f"expected a list of: {_words(spec.enum)}; got {describe_value(raw)}")
        )
        return None
    items: list[StrEnum] = []
    ok = True
    for i, item in enumerate(raw):
        hit = _word(spec.enum, item)
        if hit is not None:
            items.append(hit)
        else:
            ok = False
            hint = _suggest(item, words) if isinstance(item, str) else ""
            problems.append(
                Problem(
                    f"{name}[{i}]",
                    f"{describe_value(item)} is not one of: {_words(spec.enum)}{hint}",
                )
            )
    return tuple(items) if ok else None


def load_case(data: Any) -> Case:
    """Validate a parsed case and build a ``Case``; every problem is collected.

    Args:
        data: the parsed JSON/YAML document.

    Returns:
        The case.

    Raises:
        CaseError: listing one ``Problem`` per field at fault.

    Example:
        >>> load_case({"primary_site": "ileum", "ki67_percent": 2}).primary_site
        <Site.ILEUM: 'ileum'>
        >>> load_case({"ki67_percent": 140})
        Traceback (most recent call last):
        ...
        netboard.errors.CaseError: ki67_percent: 140 is outside the possible range 0-100
    """
    if not isinstance(data, Mapping):
        raise CaseError(
            [Problem("(case)", f"expected an object of case fields, got {describe_value(data)}")]
        )
    reg = registry()
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    top_names = [*reg.top, *reg.objects]
    for key in data:
        if not isinstance(key, str) or key not in top_names:
            hint = _suggest(key, top_names) if isinstance(key, str) else ""
            problems.append(
                Problem(
                    _field_name(key),
                    f"unknown field (not in contract v{CONTRACT_VERSION}){hint}",
                )
            )
    # Fields in registry order, so that problems come in the same order whatever the input's.
    checked: set[str] = set()
    for path, f in reg.fields.items():
        name = f.object or path
        raw = data.get(name)
        if raw is None or (f.object is None and not isinstance(name, str)):
            continue
        if f.object is None:
            values[path] = _check(path, f.spec, raw, problems)
            continue
        if name in checked:
            continue
        checked.add(name)
        if not isinstance(raw, Mapping):
            problems.append(Problem(name, f"expected an object, got {describe_value(raw)}"))
            continue
        members = reg.members[name]
        for member in raw:
            if member not in members:
                hint = _suggest(member, list(members)) if isinstance(member, str) else ""
                label = reg.objects[name].label
                problems.append(
                    Problem(f"{name}.{_field_name(member)}", f"unknown {label} field{hint}")
                )
        for member, m in members.items():
            if raw.get(member) is not None:
                values[m.path] = _check(m.path, m.spec, raw[member], problems)
    valid = {p: x for p, x in values.items() if x is not None}
    problems.extend(check_consistency(valid))
    if problems:
        raise CaseError(problems)
    return Case.from_paths(valid)


def read_case(path: str) -> Case:
    """Read a case from a JSON/YAML file, or from standard input when ``path`` is ``-``.

    Raises:
        CaseError: the file is unreadable, too large, not JSON/YAML, or the case is invalid.
    """
    text, source = read_text(path, limit=MAX_CASE_BYTES, expected="a JSON or YAML case")
    return load_case(parse_document(text, source=source))
