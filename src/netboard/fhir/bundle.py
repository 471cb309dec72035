"""From FHIR JSON (a Bundle, a resource, a list, a CDS Hooks prefetch) to a flat resource list."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from netboard.documents import parse_json, read_text
from netboard.errors import CaseError, Problem

#: Largest FHIR file ``read_fhir`` accepts.
MAX_FHIR_BYTES = 10_000_000


def _id_from_full_url(full_url: Any) -> str | None:
    if not isinstance(full_url, str) or not full_url.strip():
        return None
    url = full_url.strip()
    for prefix in ("urn:uuid:", "urn:oid:"):
        if url.startswith(prefix):
            return url[len(prefix) :] or None
    tail = url.rstrip("/").rsplit("/", 1)[-1]
    return tail or None


class Resources(list[dict[str, Any]]):
    """The resources of some FHIR JSON, with the ``fullUrl`` of each Bundle entry.

    ``aliases`` maps a Bundle entry's ``fullUrl`` to the ``(type, id)`` of its resource, so that
    a reference written as that fullUrl (``urn:uuid:...``, or an absolute URL) resolves to it
    as the FHIR specification says (Bundle "Resolving references in Bundles"), even when the
    resource's own id differs.
    """

    aliases: dict[str, tuple[str, str]]

    def __init__(self, items: list[dict[str, Any]] | None = None) -> None:
        super().__init__(items or [])
        self.aliases = {}


def _collect(data: Any, path: str, out: Resources, problems: list[Problem], *, top: bool) -> None:
    where = path or "(input)"
    if isinstance(data, list):
        for i, item in enumerate(data):
            _collect(item, f"{path}[{i}]", out, problems, top=False)
        return
    if not isinstance(data, Mapping):
        problems.append(Problem(where, "not a FHIR resource (expected a JSON object)"))
        return
    if "resourceType" not in data:
        if top:  # a CDS Hooks prefetch: key -> Bundle, resource or null
            for key, value in data.items():
                if value is not None:
                    sub = f"{path}.{key}" if path else str(key)
                    _collect(value, sub, out, problems, top=False)
            return
        problems.append(Problem(where, "not a FHIR resource (no resourceType)"))
        return
    rtype = data.get("resourceType")
    if not isinstance(rtype, str) or not rtype.strip():
        problems.append(Problem(f"{path}.resourceType" if path else "resourceType", "not a name"))
        return
    if rtype != "Bundle":
        out.append(dict(data))
        return
    entries = data.get("entry")
    if entries is None:
        return
    if not isinstance(entries, list):
        problems.append(Problem(f"{path}.entry" if path else "entry", "expected a list"))
        return
    for i, entry in enumerate(entries):
        at = f"{path}.entry[{i}]" if path else f"entry[{i}]"
        if not isinstance(entry, Mapping):
            problems.append(Problem(at, "not a Bundle entry (expected a JSON object)"))
            continue
        resource = entry.get("resource")
        if resource is None:  # a request-only or search-only entry carries no data
            continue
        if not isinstance(resource, Mapping):
            problems.append(Problem(f"{at}.resource", "not a FHIR resource (expected an object)"))
            continue
        if "resourceType" not in resource:
            problems.append(Problem(f"{at}.resource", "not a FHIR resource (no resourceType)"))
            continue
        if resource.get("id") is None and resource.get("resourceType") != "Bundle":
            filled = _id_from_full_url(entry.get("fullUrl"))
            if filled is not None:
                resource = {**resource, "id": filled}
        full_url = entry.get("fullUrl")
        rid = resource.get("id")
        if isinstance(full_url, str) and full_url.strip() and isinstance(rid, str):
            out.aliases.setdefault(full_url.strip(), (str(resource.get("resourceType")), rid))
        _collect(resource, f"{at}.resource", out, problems, top=False)


def resources_from(data: object) -> Resources:
    """The resources in FHIR JSON, in document order.

    Accepts a Bundle of any type (nested Bundles are flattened), a single resource, a list of
    resources, or a CDS Hooks ``prefetch`` mapping whose values are Bundles, resources or null.
    Entries without a resource are skipped; a resource without ``id`` takes it from its entry's
    ``fullUrl`` (``urn:uuid:...``) so references to it resolve; every entry's ``fullUrl`` is
    kept in ``aliases`` (references written as a fullUrl resolve by it). Resources are
    shallow copies.

    Raises:
        CaseError: something is not FHIR at all; each problem names its JSON path
            (``entry[3].resource``).
    """
    out = Resources()
    problems: list[Problem] = []
    _collect(data, "", out, problems, top=True)
    if problems:
        raise CaseError(problems)
    return out


def load_json(path: str) -> Any:
    """Read FHIR JSON from a file (or standard input for ``-``), refusing what is not JSON.

    Raises:
        CaseError: unreadable, larger than 10 MB, not UTF-8, or not valid JSON; the problem
            names the file.
    """
    text, source = read_text(path, limit=MAX_FHIR_BYTES, expected="FHIR JSON")
    return parse_json(text, source=source)
