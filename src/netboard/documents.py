"""Reading documents safely: strict JSON, YAML 1.2 with duplicate keys refused, bounded files.

Shared by every way in: case files, FHIR files, trust files, NDJSON registries and the
knowledge base itself. Every read is bounded before anything is parsed:

- ``read_text`` reads at most ``limit`` bytes, and only from a regular file or standard
  input: a FIFO, a device or a directory is refused at once (opened non-blocking, so a FIFO
  without a writer cannot hang the command);
- YAML aliases may not expand a document beyond ``MAX_YAML_EXPANDED_NODES`` nodes, and a
  recursive alias is refused (the "billion laughs" bomb costs nothing);
- YAML mapping keys must be plain values, integers are bounded by Python's digit limit, and a
  lone surrogate escape (``"\\ud800"``, not a character) is refused in JSON and YAML alike,
  each with a problem instead of a traceback.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from functools import lru_cache
from typing import Any

from netboard.errors import CaseError, Problem, ProblemsError

#: How many nodes a YAML document may have once its aliases are expanded (a document without
#: aliases is bounded by its size alone and is not counted against this).
MAX_YAML_EXPANDED_NODES = 100_000


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
        def get_single_node(self) -> Any:
            # The node graph shares aliased nodes; count what building it would expand to
            # before any Python object is built.
            node = super().get_single_node()
            if node is not None:
                _check_expansion(node, yaml)
            return node

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
        try:
            if text.startswith(("0o", "0x")):
                return int(text[2:], 8 if text[1] == "o" else 16)
            return int(text, 10)
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of {len(text)} digits is too long", node.start_mark
            ) from None

    def construct_float(loader: Any, node: Any) -> float:
        text = loader.construct_scalar(node).lower()
        if text.endswith(".inf"):
            return float("-inf") if text.startswith("-") else float("inf")
        return float("nan") if text == ".nan" else float(text)

    def construct_mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value", key_node.start_mark
                )
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


def _check_expansion(root: Any, yaml: Any) -> None:
    """Refuse a recursive alias, or aliases that expand the document too far.

    Sizes are computed once per distinct node (iteratively: no recursion limit), so checking
    a document costs as much as its text, not as much as its expansion.
    """
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            children = _children(node, yaml)
            size[key] = 1 + sum(size[id(c)] for c in children)
            if size[key] > MAX_YAML_EXPANDED_NODES and len(size) < size[key]:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"aliases expand the document beyond {MAX_YAML_EXPANDED_NODES} values",
                    node.start_mark,
                )
            continue
        if key in size:
            continue
        if key in on_path:
            raise yaml.constructor.ConstructorError(
                None, None, "an alias refers to itself (a recursive document)", node.start_mark
            )
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node, yaml) if id(c) not in size)


def _children(node: Any, yaml: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


#: A JSON or YAML escape that may stand for a UTF-16 surrogate (``\ud800``, ``\U0000dfff``).
_SURROGATE_ESCAPE = re.compile(r"\\(?:u|U0000)[dD][89a-fA-F]")


def _lone_surrogate_at(data: Any) -> str | None:
    """The path of the first key or string holding a lone surrogate, or None."""
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if not _encodable(value):
                return path or "(top level)"
        elif isinstance(value, dict):
            for k, v in value.items():
                name = f"{path}.{k}" if path else str(k)
                if isinstance(k, str) and not _encodable(k):
                    return name
                stack.append((v, name))
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(value))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _refuse_surrogates(text: str, data: Any, source: str, kind: str) -> None:
    """Raise ``CaseError`` when an escape decoded to a lone surrogate (not a character)."""
    if not _SURROGATE_ESCAPE.search(text):
        return
    where = _lone_surrogate_at(data)
    if where is not None:
        shown = where.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        raise CaseError(
            [
                Problem(
                    source,
                    f"not valid {kind}: {shown} holds a lone surrogate escape (such as "
                    "\\ud800), which is not a character",
                )
            ]
        )


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
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise CaseError([Problem(source, "not valid JSON: nested too deeply")]) from None
    except ValueError as exc:
        detail = str(exc)
        if "integer string conversion" in detail:  # Python's own advice is no use to a user
            detail = f"a number has more than {sys.get_int_max_str_digits()} digits"
        raise CaseError([Problem(source, f"not valid JSON: {detail}")]) from None
    _refuse_surrogates(text, data, source, "JSON")
    return data


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
        data = yaml.load(text, Loader=yaml_loader())
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise CaseError([Problem(source, f"not valid YAML: {detail}")]) from None
    except RecursionError:
        raise CaseError([Problem(source, "not valid YAML: nested too deeply")]) from None
    _refuse_surrogates(text, data, source, "YAML")
    return data


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
            raw = _read_regular_file(path, limit, source, error)
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


_NOT_REGULAR = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def _read_regular_file(path: str, limit: int, source: str, error: type[ProblemsError]) -> bytes:
    """At most ``limit + 1`` bytes of a regular file; anything else is refused at once.

    The file is opened non-blocking (a FIFO without a writer would block ``open`` itself) and
    its type is checked on the open descriptor, so it cannot change between check and read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _NOT_REGULAR if test(mode)), "not a regular file")
            raise error(
                [Problem(source, f"is {kind}, not a regular file: give a file, or - for stdin")]
            )
        if os.fstat(fd).st_size > limit:
            raise error([Problem(source, f"file is larger than {limit} bytes")])
        chunks: list[bytes] = []
        size = 0
        while size <= limit:  # the file may have grown since fstat: still read no more
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
