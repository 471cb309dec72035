"""Reading documents safely: strict JSON, YAML 1.2 with duplicate keys refused, bounded files.

Shared by every way in: case files, FHIR files, trust files, NDJSON registries and the
knowledge base itself.
"""

from __future__ import annotations

import json
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

from netboard.errors import CaseError, Problem, ProblemsError


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
    otherwise turn into a silent null. A YAML flow mapping (``{primary_site: ileum}``) is
    YAML, not bad JSON: see :func:`yaml_flow_mapping`.

    Raises:
        CaseError: the text is not valid JSON/YAML.
    """
    if text.lstrip().startswith(("{", "[")):
        try:
            return parse_json(text, source=source)
        except CaseError:
            flow = yaml_flow_mapping(text)
            if flow is None:
                raise
            return flow
    import yaml

    try:
        return yaml.load(text, Loader=yaml_loader())
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise CaseError([Problem(source, f"not valid YAML: {detail}")]) from None


_FLOW_KEY = re.compile(r"\s*\{\s*(?![\"'}])[^\s:,{}\[\]]")


def yaml_flow_mapping(text: str) -> dict[Any, Any] | None:
    """The mapping of a YAML flow-style document (``{primary_site: ileum, grade: g2}``), or
    None when the text is meant as JSON.

    Told apart by its first key: JSON quotes every key, so text whose first key is quoted
    (``{"grade": }``, or ``{'grade': 1}`` as a JSON typo) is JSON and keeps its strict JSON
    error; an unquoted first key is YAML written inline, read as YAML only when the whole
    text is one YAML mapping.

    Example:
        >>> yaml_flow_mapping("{primary_site: ileum, ki67_percent: 2}")
        {'primary_site': 'ileum', 'ki67_percent': 2}
        >>> yaml_flow_mapping('{"primary_site": }') is None
        True
    """
    if _FLOW_KEY.match(text) is None:
        return None
    import yaml

    try:
        data = yaml.load(text, Loader=yaml_loader())
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


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
