"""Fetch what a CDS Hooks prefetch lacks from the EHR's FHIR server (``fhirServer``).

Only the service's own prefetch queries are sent, only to ``fhirServer``, with the bearer
token the EHR gave (``fhirAuthorization``), within one overall timeout. Search results are
followed through their ``next`` links while those stay on the same server, up to a page limit.
Nothing fetched is logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from netboard.service.cds_hooks import fill_template

MAX_PAGES = 10
MAX_RESPONSE_BYTES = 10_000_000


async def fetch_prefetch(
    server: str,
    templates: Mapping[str, str],
    context: Mapping[str, Any],
    access_token: str | None,
    *,
    timeout: float,
) -> tuple[dict[str, Any], list[str]]:
    """Run each template against ``server``; return the data by key and reader-facing errors.

    A key whose query fails is left out (the caller decides whether that means 412).
    """
    import httpx

    headers = {"Accept": "application/fhir+json"}
    if access_token:
        headers["Authorization"] = f"Bearer {access_token}"
    base = server.rstrip("/") + "/"
    out: dict[str, Any] = {}
    errors: list[str] = []

    async def one(client: httpx.AsyncClient, key: str, template: str) -> None:
        query = fill_template(template, context)
        if query is None:
            errors.append(f"{key}: the prefetch template needs context the hook did not give")
            return
        url: str | None = base + encode_query(query)
        pages: list[Any] = []
        while url is not None and len(pages) < MAX_PAGES:
            response = await client.get(url)
            if response.status_code != 200:
                errors.append(f"{key}: the FHIR server answered {response.status_code}")
                return
            if len(response.content) > MAX_RESPONSE_BYTES:
                errors.append(f"{key}: the FHIR server's answer is too large")
                return
            try:
                page = response.json()
            except ValueError:
                errors.append(f"{key}: the FHIR server's answer is not JSON")
                return
            pages.append(page)
            url = _next_link(page, base)
        if len(pages) == 1:
            out[key] = pages[0]
        else:
            entries = [e for p in pages if isinstance(p, dict) for e in p.get("entry") or []]
            out[key] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}

    try:
        async with httpx.AsyncClient(headers=headers, timeout=timeout, follow_redirects=False) as c:
            await asyncio.wait_for(
                asyncio.gather(*(one(c, k, t) for k, t in templates.items())), timeout
            )
    except (TimeoutError, httpx.TimeoutException):
        errors.append(f"the FHIR server did not answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        errors.append(f"the FHIR server could not be reached ({type(exc).__name__})")
    return out, errors


def _next_link(page: Any, base: str) -> str | None:
    """The Bundle's ``next`` link when it stays on the same FHIR server."""
    if not isinstance(page, dict) or page.get("resourceType") != "Bundle":
        return None
    for link in page.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            if isinstance(url, str) and url.startswith(base):
                return url
    return None


def encode_query(query: str) -> str:
    """A filled prefetch query with its path and parameter values percent-encoded.

    The FHIR search separators stay as they are (``,`` between alternatives, ``:`` of a
    modifier or an ``_include``); everything else a URL may not carry literally, the ``|``
    between system and code included, is percent-encoded (RFC 3986).

    >>> encode_query("Observation?patient=a b&code=http://loinc.org|718-7,http://loinc.org|777-3")
    'Observation?patient=a%20b&code=http://loinc.org%7C718-7,http://loinc.org%7C777-3'
    """
    from urllib.parse import quote

    path, sep, params = query.partition("?")
    out = quote(path, safe="/")
    if not sep:
        return out
    parts = []
    for part in params.split("&"):
        name, eq, value = part.partition("=")
        parts.append(quote(name, safe="_:-.") + eq + quote(value, safe=",:/"))
    return out + "?" + "&".join(parts)
