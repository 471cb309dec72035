"""The patient case (contract v1): a frozen value, validated with every problem collected.

``load_case`` takes a mapping (already parsed JSON/YAML) and either returns a
``Case`` or raises ``CaseError`` listing every problem, one per field.
``read_case`` reads a file or standard input safely (size limit, YAML 1.2
booleans, duplicate keys refused) and then calls ``load_case``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

from netboard import vocab as v
from netboard.errors import CaseError, Problem, ProblemsError

MAX_CASE_BYTES = 1_000_000


@dataclass(frozen=True, slots=True)
class Number:
    """A numeric field with inclusive bounds (``hi`` None: no upper bound)."""

    lo: float
    hi: float | None
    integer: bool = False


@dataclass(frozen=True, slots=True)
class Choice:
    """A field taking one word of an enum."""

    enum: type[StrEnum]


@dataclass(frozen=True, slots=True)
class ChoiceList:
    """A field taking a list of words of an enum."""

    enum: type[StrEnum]


@dataclass(frozen=True, slots=True)
class Text:
    """A free string (the case id)."""


@dataclass(frozen=True, slots=True)
class Flag:
    """A boolean field."""


Spec = Number | Choice | ChoiceList | Text | Flag

#: The case fields of contract v1, in contract order.
FIELDS: dict[str, Spec] = {
    "id": Text(),
    "age_years": Number(0, 120),
    "sex": Choice(v.Sex),
    "primary_site": Choice(v.Site),
    "pancreas_region": Choice(v.PancreasRegion),
    "primary_resected": Flag(),
    "primary_complications": ChoiceList(v.Complication),
    "differentiation": Choice(v.Differentiation),
    "ki67_percent": Number(0, 100),
    "mitoses_per_2mm2": Number(0, None),
    "grade": Choice(v.Grade),
    "functional_syndrome": Choice(v.FunctionalSyndrome),
    "sstr_imaging": Choice(v.Imaging),
    "fdg_pet": Choice(v.Imaging),
    "metastatic_sites": ChoiceList(v.MetastaticSite),
    "liver_tumor_burden_percent": Number(0, 100),
    "liver_resectable": Choice(v.Resectable),
    "liver_resectable_fraction_percent": Number(0, 100),
    "liver_distribution": Choice(v.LiverDistribution),
    "disease_status": Choice(v.DiseaseStatus),
    "months_stable": Number(0, None),
    "prior_treatments": ChoiceList(v.Intervention),
    "progressed_on": ChoiceList(v.Intervention),
    "ecog": Number(0, 4, integer=True),
    "comorbidities": ChoiceList(v.Comorbidity),
    "pregnant": Flag(),
}

#: Laboratory fields (``labs.*``) with physiologically possible bounds.
LAB_FIELDS: dict[str, Number] = {
    "creatinine_clearance_ml_min": Number(0, 300),
    "platelets_10e9_l": Number(0, 5000),
    "neutrophils_10e9_l": Number(0, 500),
    "hemoglobin_g_dl": Number(0, 30),
    "bilirubin_mg_dl": Number(0, 80),
    "albumin_g_dl": Number(0, 10),
    "chromogranin_a_x_uln": Number(0, 1_000_000),
    "urine_5hiaa_x_uln": Number(0, 100_000),
    "nt_probnp_pg_ml": Number(0, 1_000_000),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Labs:
    """Laboratory values; None means not given."""

    creatinine_clearance_ml_min: float | None = None
    platelets_10e9_l: float | None = None
    neutrophils_10e9_l: float | None = None
    hemoglobin_g_dl: float | None = None
    bilirubin_mg_dl: float | None = None
    albumin_g_dl: float | None = None
    chromogranin_a_x_uln: float | None = None
    urine_5hiaa_x_uln: float | None = None
    nt_probnp_pg_ml: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """A patient case. Every field is optional; None (or an absent list) means unknown."""

    id: str | None = None
    age_years: float | None = None
    sex: v.Sex | None = None
    primary_site: v.Site | None = None
    pancreas_region: v.PancreasRegion | None = None
    primary_resected: bool | None = None
    primary_complications: tuple[v.Complication, ...] | None = None
    differentiation: v.Differentiation | None = None
    ki67_percent: float | None = None
    mitoses_per_2mm2: float | None = None
    grade: v.Grade | None = None
    functional_syndrome: v.FunctionalSyndrome | None = None
    sstr_imaging: v.Imaging | None = None
    fdg_pet: v.Imaging | None = None
    metastatic_sites: tuple[v.MetastaticSite, ...] | None = None
    liver_tumor_burden_percent: float | None = None
    liver_resectable: v.Resectable | None = None
    liver_resectable_fraction_percent: float | None = None
    liver_distribution: v.LiverDistribution | None = None
    disease_status: v.DiseaseStatus | None = None
    months_stable: float | None = None
    prior_treatments: tuple[v.Intervention, ...] | None = None
    progressed_on: tuple[v.Intervention, ...] | None = None
    ecog: int | None = None
    comorbidities: tuple[v.Comorbidity, ...] | None = None
    pregnant: bool | None = None
    labs: Labs = Labs()

    def value(self, path: str) -> Any:
        """Return the value at a field path (``labs.x`` for labs); None when unknown.

        >>> Case(ki67_percent=8.0).value("ki67_percent")
        8.0
        """
        if path.startswith("labs."):
            return getattr(self.labs, path[5:])
        return getattr(self, path)

    def to_dict(self) -> dict[str, Any]:
        """The case as contract JSON, only the fields that were given."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "labs":
                labs = {lf.name: getattr(value, lf.name) for lf in fields(value)}
                labs = {k: x for k, x in labs.items() if x is not None}
                if labs:
                    out["labs"] = labs
            elif value is not None:
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


_FIELD_PATHS = (*FIELDS, *(f"labs.{k}" for k in LAB_FIELDS))


def field_paths() -> tuple[str, ...]:
    """Every case field path of the contract, labs flattened as ``labs.NAME``."""
    return _FIELD_PATHS


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
    """JSON Schema of a contract v1 case (for the OpenAPI document and form builders).

    ``load_case`` stays the judge: it also checks what a schema cannot say (cross-field
    contradictions), and null counts as absent.

    Example:
        >>> case_json_schema()["properties"]["ecog"]
        {'type': ['integer', 'null'], 'minimum': 0, 'maximum': 4}
    """

    def nullable(schema: dict[str, Any]) -> dict[str, Any]:
        out = {**schema, "type": [schema["type"], "null"]}
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        return out

    labs = {
        "type": ["object", "null"],
        "additionalProperties": False,
        "properties": {name: nullable(_spec_schema(s)) for name, s in LAB_FIELDS.items()},
    }
    return {
        "title": "Case",
        "description": "A patient case (contract v1); every field is optional.",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **{name: nullable(_spec_schema(s)) for name, s in FIELDS.items()},
            "labs": labs,
        },
    }


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_number(name: str, spec: Number, raw: Any, problems: list[Problem]) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        problems.append(Problem(name, f"expected a number, got {_describe(raw)}"))
        return None
    if isinstance(raw, int) and abs(raw) > 10**15:
        # Beyond any field's range, and too large for a float: say so without converting it.
        problems.append(Problem(name, f"{str(raw)[:20]}... is outside the possible range"))
        return None
    if not math.isfinite(raw):
        problems.append(Problem(name, f"expected a finite number, got {_describe(raw)}"))
        return None
    bound = f"{spec.lo:g}-{spec.hi:g}" if spec.hi is not None else f">= {spec.lo:g}"
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
    """A field name fit for a one-line message: plain names as they are, others quoted."""
    text = str(key)
    if text.isprintable() and text.strip() == text and 0 < len(text) <= 60:
        return text
    return _describe(text)


def _words(enum: type[StrEnum]) -> str:
    return ", ".join(m.value for m in enum)


def _check(name: str, spec: Spec, raw: Any, problems: list[Problem]) -> Any:
    if isinstance(spec, Number):
        return _check_number(name, spec, raw, problems)
    if isinstance(spec, Text):
        if not isinstance(raw, str):
            problems.append(Problem(name, f"expected a string (quote it), got {_describe(raw)}"))
            return None
        return raw
    if isinstance(spec, Flag):
        if not isinstance(raw, bool):
            problems.append(Problem(name, f"expected true or false, got {_describe(raw)}"))
            return None
        return raw
    if isinstance(spec, Choice):
        if isinstance(raw, str) and raw in spec.enum._value2member_map_:
            return spec.enum(raw)
        problems.append(Problem(name, f"{_describe(raw)} is not one of: {_words(spec.enum)}"))
        return None
    # ChoiceList
    if not isinstance(raw, list):
        problems.append(
            Problem(name, f"expected a list of: {_words(spec.enum)}; got {_describe(raw)}")
        )
        return None
    items: list[StrEnum] = []
    ok = True
    for i, item in enumerate(raw):
        if isinstance(item, str) and item in spec.enum._value2member_map_:
            items.append(spec.enum(item))
        else:
            ok = False
            problems.append(
                Problem(f"{name}[{i}]", f"{_describe(item)} is not one of: {_words(spec.enum)}")
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
            [Problem("(case)", f"expected an object of case fields, got {_describe(data)}")]
        )
    problems: list[Problem] = []
    values: dict[str, Any] = {}
    for key in data:
        if not isinstance(key, str) or (key not in FIELDS and key != "labs"):
            problems.append(Problem(_field_name(key), "unknown field (not in contract v1)"))
    for name, spec in FIELDS.items():
        if name in data and data[name] is not None:
            values[name] = _check(name, spec, data[name], problems)
    labs_raw = data.get("labs")
    labs = Labs()
    if labs_raw is not None:
        if not isinstance(labs_raw, Mapping):
            problems.append(Problem("labs", f"expected an object, got {_describe(labs_raw)}"))
        else:
            lab_values: dict[str, Any] = {}
            for key in labs_raw:
                if key not in LAB_FIELDS:
                    problems.append(Problem(f"labs.{_field_name(key)}", "unknown laboratory field"))
            for name, spec in LAB_FIELDS.items():
                if labs_raw.get(name) is not None:
                    lab_values[name] = _check_number(f"labs.{name}", spec, labs_raw[name], problems)
            labs = Labs(**lab_values)
    _check_consistency(data, problems)
    if problems:
        raise CaseError(problems)
    return Case(**values, labs=labs)


def _check_consistency(data: Mapping[str, Any], problems: list[Problem]) -> None:
    """Cross-field contradictions that no guideline could resolve."""
    site = data.get("primary_site")
    if data.get("pancreas_region") is not None and site not in (None, "pancreas"):
        problems.append(
            Problem(
                "pancreas_region", f"given, but primary_site is {_describe(site)}, not pancreas"
            )
        )
    if data.get("pregnant") is True and data.get("sex") == "male":
        problems.append(Problem("pregnant", "true, but sex is male"))
    prior, progressed = data.get("prior_treatments"), data.get("progressed_on")
    if isinstance(progressed, list) and progressed:
        if data.get("disease_status") == "newly_diagnosed":
            problems.append(
                Problem("progressed_on", "lists treatments, but disease_status is newly_diagnosed")
            )
        if isinstance(prior, list):
            for i, code in enumerate(progressed):
                if isinstance(code, str) and code not in prior:
                    problems.append(
                        Problem(
                            f"progressed_on[{i}]",
                            f"{code!r} is not in prior_treatments "
                            "(list every treatment received there)",
                        )
                    )


# --- reading files -------------------------------------------------------------------------


@lru_cache(maxsize=1)
def yaml_loader() -> type:
    """A safe YAML loader with the YAML 1.2 core schema and duplicate keys refused.

    PyYAML follows YAML 1.1, which silently changes values a clinician types: unquoted
    ``no`` becomes false, ``021`` an octal 17, ``1:05`` the number 65, and ``2024-01-05`` a
    date. Here only ``true``/``false`` are booleans, integers are decimal (``0o``/``0x``
    prefixes allowed), and dates stay text.
    """
    import re

    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Loader(base):  # type: ignore[valid-type,misc]
        pass

    replaced = {
        "tag:yaml.org,2002:bool",
        "tag:yaml.org,2002:int",
        "tag:yaml.org,2002:float",
        "tag:yaml.org,2002:timestamp",
    }
    Loader.yaml_implicit_resolvers = {
        k: [(tag, rx) for tag, rx in rs if tag not in replaced]
        for k, rs in base.yaml_implicit_resolvers.items()
    }
    core = {
        "tag:yaml.org,2002:bool": (r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
        "tag:yaml.org,2002:int": (r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
        "tag:yaml.org,2002:float": (
            r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
            "-+.0123456789",
        ),
    }
    for tag, (pattern, first) in core.items():
        Loader.add_implicit_resolver(tag, re.compile(pattern), list(first))

    def construct_int(loader: Any, node: Any) -> int:
        text = loader.construct_scalar(node)
        if text.startswith(("0o", "0x")):
            return int(text[2:], 8 if text[1] == "o" else 16)
        return int(text, 10)

    def construct_float(loader: Any, node: Any) -> float:
        text = loader.construct_scalar(node).lower()
        if text.endswith(".inf"):
            return float("-inf") if text.startswith("-") else float("inf")
        return float("nan") if text == ".nan" else float(text)

    def construct_mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return dict(loader.construct_pairs(node, deep=deep))

    Loader.add_constructor("tag:yaml.org,2002:int", construct_int)
    Loader.add_constructor("tag:yaml.org,2002:float", construct_float)
    Loader.add_constructor("tag:yaml.org,2002:map", construct_mapping)
    return Loader


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"duplicate key {dup[0]!r}")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str, *, source: str = "(case)") -> Any:
    """Parse strict JSON: duplicate keys and NaN/Infinity are refused.

    Raises:
        CaseError: the text is not valid JSON.
    """
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise CaseError([Problem(source, f"not valid JSON: {exc}")]) from None


def parse_document(text: str, *, source: str = "(case)") -> Any:
    """Parse case text: JSON when it starts with ``{`` or ``[`` (strictly), YAML otherwise.

    JSON-looking text is never re-read as YAML: a JSON typo such as a missing value would
    otherwise turn into a silent null.

    Raises:
        CaseError: the text is not valid JSON/YAML.
    """
    if text.lstrip().startswith(("{", "[")):
        return parse_json(text, source=source)
    import yaml

    try:
        return yaml.load(text, Loader=yaml_loader())
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise CaseError([Problem(source, f"not valid YAML: {detail}")]) from None


def read_text(
    path: str,
    *,
    limit: int,
    expected: str,
    error: type[ProblemsError] = CaseError,
) -> tuple[str, str]:
    """Read a UTF-8 text file (or standard input for ``-``) of at most ``limit`` bytes.

    Returns:
        The text and the name to report problems under (the path, or ``(stdin)``).

    Raises:
        ``error``: unreadable, too large, not UTF-8, or empty (``expected`` says what was
        expected instead), naming the file.
    """
    source = "(stdin)" if path == "-" else path
    try:
        if path == "-":
            raw = sys.stdin.buffer.read(limit + 1)
        else:
            p = Path(path)
            if p.is_file() and p.stat().st_size > limit:
                raise error([Problem(source, f"file is larger than {limit} bytes")])
            raw = p.read_bytes()
    except OSError as exc:
        raise error([Problem(source, f"cannot read: {exc.strerror or exc}")]) from None
    if len(raw) > limit:
        raise error([Problem(source, f"input is larger than {limit} bytes")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise error([Problem(source, "not UTF-8 text")]) from None
    if not text.strip():
        raise error([Problem(source, f"empty input: expected {expected}")])
    return text, source


def read_case(path: str) -> Case:
    """Read a case from a JSON/YAML file, or from standard input when ``path`` is ``-``.

    Raises:
        CaseError: the file is unreadable, too large, not JSON/YAML, or the case is invalid.
    """
    text, source = read_text(path, limit=MAX_CASE_BYTES, expected="a JSON or YAML case")
    return load_case(parse_document(text, source=source))
