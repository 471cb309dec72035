"""The field registry (``kb/fields.yaml``): every case field once, and what is derived from it.

The case model, its JSON Schema, the web form, the synthetic registry, the audit columns, the
free-text reader's field list and the property-test strategies all read this registry; adding
a field is one entry in ``fields.yaml`` plus the rules that read it.

A field is named by its *path*: ``ki67_percent`` at the top of a case, ``labs.platelets_10e9_l``
for a member of an object. ``flatten`` and ``nest`` convert between a case as written (objects
nested) and paths, once for every caller; ``check_consistency`` applies the registry's
cross-field rules, once for every caller.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any

from netboard import vocab
from netboard.errors import KnowledgeBaseError, Problem

__all__ = [
    "Choice",
    "ChoiceList",
    "ConsistencyRule",
    "FieldDef",
    "Flag",
    "Number",
    "ObjectDef",
    "Registry",
    "Spec",
    "Text",
    "check_consistency",
    "describe_value",
    "field_paths",
    "flatten",
    "nest",
    "parse_registry",
    "registry",
]


# --- value specs ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Number:
    """A numeric field with inclusive bounds (``hi`` None: no upper bound)."""

    lo: float
    hi: float | None
    integer: bool = False

    def bounds(self) -> str:
        """The possible range in words: ``0-100`` or ``>= 0``."""
        return f"{self.lo:g}-{self.hi:g}" if self.hi is not None else f">= {self.lo:g}"


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


# --- the registry ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldDef:
    """One case field of the registry."""

    path: str
    spec: Spec
    label: str
    why: str
    group: str
    unit: str = ""
    since: str = "1"
    fhir: tuple[str, ...] = ()
    synth: Mapping[str, Any] | None = None
    personal: bool = False

    @property
    def object(self) -> str | None:
        """The object the field sits in (``labs``), or None at the top of a case."""
        return self.path.split(".", 1)[0] if "." in self.path else None

    @property
    def name(self) -> str:
        """The key of the field in its object (the path itself at the top)."""
        return self.path.split(".", 1)[-1]


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectDef:
    """A case field that holds other fields (``labs``)."""

    name: str
    label: str
    since: str = "1"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsistencyRule:
    """A contradiction a case may not hold (see ``consistency`` in fields.yaml)."""

    field: str
    message: str
    value: Any = None
    requires: tuple[str, tuple[str, ...]] | None = None
    within: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Registry:
    """The parsed registry: fields in contract order, objects, form groups, consistency."""

    fields: Mapping[str, FieldDef]
    objects: Mapping[str, ObjectDef]
    form_groups: tuple[str, ...]
    consistency: tuple[ConsistencyRule, ...]
    #: top-level fields (no object)
    top: Mapping[str, FieldDef] = field(default_factory=dict)
    #: object name -> member key -> field
    members: Mapping[str, Mapping[str, FieldDef]] = field(default_factory=dict)

    def spec(self, path: str) -> Spec | None:
        """The value spec of a field path, or None when it is not a case field."""
        f = self.fields.get(path)
        return f.spec if f else None


_TYPES = ("text", "number", "integer", "flag", "choice", "list")
_FIELD_KEYS = frozenset(
    {"type", "values", "min", "max", "unit", "label", "why", "group", "since", "fhir"}
    | {"synth", "personal"}
)


def _enum(name: Any) -> type[StrEnum] | None:
    enum = getattr(vocab, str(name), None)
    return enum if isinstance(enum, type) and issubclass(enum, StrEnum) else None


def parse_registry(doc: Any, where: str = "fields.yaml") -> tuple[Registry, list[Problem]]:
    """Build the registry from the parsed ``fields.yaml``; every problem is collected."""
    problems: list[Problem] = []

    def fail(at: str, message: str) -> None:
        problems.append(Problem(f"{where}:{at}", message))

    doc = doc if isinstance(doc, Mapping) else {}
    groups = tuple(str(g) for g in doc.get("form_groups") or ())
    objects: dict[str, ObjectDef] = {}
    for name, raw in (doc.get("objects") or {}).items():
        raw = raw if isinstance(raw, Mapping) else {}
        objects[str(name)] = ObjectDef(
            name=str(name), label=str(raw.get("label", name)), since=str(raw.get("since", "1"))
        )
    fields_: dict[str, FieldDef] = {}
    for path, raw in (doc.get("fields") or {}).items():
        path = str(path)
        at = f"fields.{path}"
        if not isinstance(raw, Mapping):
            fail(at, "expected a mapping")
            continue
        for key in raw:
            if key not in _FIELD_KEYS:
                fail(f"{at}.{key}", f"unknown key; allowed: {', '.join(sorted(_FIELD_KEYS))}")
        kind = raw.get("type")
        spec: Spec | None = None
        if kind in ("number", "integer"):
            lo, hi = raw.get("min"), raw.get("max")
            bad_hi = hi is not None and not isinstance(hi, int | float)
            if not isinstance(lo, int | float) or bad_hi:
                fail(at, "a number needs a numeric min (and max, when bounded)")
            else:
                spec = Number(float(lo), None if hi is None else float(hi), kind == "integer")
        elif kind in ("choice", "list"):
            enum = _enum(raw.get("values"))
            if enum is None:
                fail(f"{at}.values", f"{raw.get('values')!r} is not an enum of netboard.vocab")
            else:
                spec = Choice(enum) if kind == "choice" else ChoiceList(enum)
        elif kind == "flag":
            spec = Flag()
        elif kind == "text":
            spec = Text()
        else:
            fail(f"{at}.type", f"{kind!r} is not one of {', '.join(_TYPES)}")
        for key in ("label", "why", "group"):
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                fail(f"{at}.{key}", "expected non-empty text")
        if raw.get("group") not in groups:
            fail(f"{at}.group", f"{raw.get('group')!r} is not one of form_groups")
        if "." in path and path.split(".", 1)[0] not in objects:
            fail(at, f"object {path.split('.', 1)[0]!r} is not declared under objects")
        synth = raw.get("synth")
        if synth is not None and not isinstance(synth, Mapping):
            fail(f"{at}.synth", "expected a mapping")
        if spec is None:
            continue
        fields_[path] = FieldDef(
            path=path,
            spec=spec,
            label=" ".join(str(raw.get("label", "")).split()),
            why=" ".join(str(raw.get("why", "")).split()),
            group=str(raw.get("group", "")),
            unit=str(raw.get("unit", "") or ""),
            since=str(raw.get("since", "1")),
            fhir=tuple(str(x) for x in raw.get("fhir") or ()),
            synth=synth,
            personal=raw.get("personal") is True,
        )
    for name in objects:
        if not any(f.object == name for f in fields_.values()):
            fail(f"objects.{name}", "declares no member field")
    rules: list[ConsistencyRule] = []
    for i, raw in enumerate(doc.get("consistency") or ()):
        at = f"consistency[{i}]"
        if not isinstance(raw, Mapping) or not isinstance(raw.get("message"), str):
            fail(at, "expected a mapping with a message")
            continue
        target = str(raw.get("field"))
        if target not in fields_ and target not in objects:
            fail(f"{at}.field", f"{target!r} is not a case field")
        requires = None
        if "requires" in raw:
            (other, words), *rest = dict(raw["requires"]).items()
            if rest or other not in fields_ or not isinstance(words, list):
                fail(f"{at}.requires", "expected {field: [words]} naming one case field")
                continue
            requires = (str(other), tuple(str(w) for w in words))
        within = raw.get("within")
        if within is not None and not isinstance(fields_.get(str(within)), FieldDef):
            fail(f"{at}.within", f"{within!r} is not a case field")
        if (requires is None) == (within is None):
            fail(at, "give exactly one of requires and within")
            continue
        rules.append(
            ConsistencyRule(
                field=target,
                message=str(raw["message"]),
                value=raw.get("value"),
                requires=requires,
                within=None if within is None else str(within),
            )
        )
    top = {p: f for p, f in fields_.items() if f.object is None}
    members: dict[str, dict[str, FieldDef]] = {name: {} for name in objects}
    for f in fields_.values():
        if f.object is not None and f.object in members:
            members[f.object][f.name] = f
    return (
        Registry(
            fields=fields_,
            objects=objects,
            form_groups=groups,
            consistency=tuple(rules),
            top=top,
            members=members,
        ),
        problems,
    )


@lru_cache(maxsize=1)
def registry() -> Registry:
    """The packaged field registry (read once; from the knowledge-base snapshot when fresh).

    Raises:
        KnowledgeBaseError: the packaged fields.yaml is malformed.
    """
    from netboard.kb import packaged_document

    reg, problems = parse_registry(packaged_document("fields.yaml"))
    if problems:
        raise KnowledgeBaseError(problems)
    return reg


def field_paths() -> tuple[str, ...]:
    """Every case field path, in contract order (objects' members as ``object.member``).

    >>> field_paths()[:3]
    ('id', 'age_years', 'sex')
    """
    return tuple(registry().fields)


# --- nested <-> paths -------------------------------------------------------------------------


def flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """A case as written (objects nested) to field paths; other keys are kept as they are.

    An object that is not a mapping is kept under its own name for the validator to report.

    >>> flatten({"ki67_percent": 8, "labs": {"platelets_10e9_l": 90}})
    {'ki67_percent': 8, 'labs.platelets_10e9_l': 90}
    """
    objects = registry().objects
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in objects and isinstance(value, Mapping):
            for member, x in value.items():
                out[f"{key}.{member}"] = x
        else:
            out[key] = value
    return out


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Field paths to a case as written (objects nested), in the order given.

    >>> nest({"ki67_percent": 8, "labs.platelets_10e9_l": 90})
    {'ki67_percent': 8, 'labs': {'platelets_10e9_l': 90}}
    """
    objects = registry().objects
    out: dict[str, Any] = {}
    for path, value in flat.items():
        head, _, member = path.partition(".")
        if member and head in objects:
            out.setdefault(head, {})[member] = value
        else:
            out[path] = value
    return out


# --- consistency -----------------------------------------------------------------------------


def describe_value(value: Any) -> str:
    """A value as a problem message shows it: JSON, cut at 60 characters.

    >>> describe_value("rectum")
    '"rectum"'
    """
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _matches(rule_value: Any, value: Any) -> bool:
    if rule_value is None:
        return True
    if rule_value == "nonempty":
        return isinstance(value, list | tuple) and len(value) > 0
    return bool(value == rule_value) and type(value) is type(rule_value)


def check_consistency(flat: Mapping[str, Any]) -> list[Problem]:
    """The registry's cross-field contradictions held by a case (field paths, valid values).

    Unknown (absent or None) fields never contradict anything.

    >>> [str(p) for p in check_consistency({"primary_site": "ileum", "pancreas_region": "head"})]
    ['pancreas_region: given, but primary_site is "ileum", not pancreas']
    """
    problems: list[Problem] = []
    for rule in registry().consistency:
        if rule.field in registry().objects:
            prefix = rule.field + "."
            given = {p[len(prefix) :]: x for p, x in flat.items() if p.startswith(prefix)}
            given = {k: x for k, x in given.items() if x is not None}
            if not given:
                continue
            items: Iterable[tuple[str, Any]] = ((f"{rule.field}.{k}", k) for k in given)
        else:
            value = flat.get(rule.field)
            if value is None or not _matches(rule.value, value):
                continue
            items = (
                ((f"{rule.field}[{i}]", x) for i, x in enumerate(value))
                if isinstance(value, list | tuple)
                else ((rule.field, value),)
            )
        if rule.requires is not None:
            other, words = rule.requires
            got = flat.get(other)
            if got is not None and str(got) not in words:
                message = rule.message.replace("{other}", describe_value(str(got)))
                problems.append(Problem(rule.field, message))
        elif rule.within is not None:
            pool = flat.get(rule.within)
            if pool is None:
                continue
            have = {str(x) for x in pool}
            for where, item in items:
                if str(item) not in have:
                    problems.append(Problem(where, rule.message.replace("{item}", repr(str(item)))))
    return problems
