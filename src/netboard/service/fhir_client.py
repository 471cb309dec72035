"""Fetch what a CDS Hooks prefetch lacks from the EHR's FHIR server (``fhirServer``).

Only the service's own prefetch queries are sent, only to a ``fhirServer`` the caller is
allowed to name (the issuer's ``fhir_servers`` in the trust file, or ``--fhir-server``
without one: ``app.py`` checks this before calling here), with the bearer token the EHR gave
(``fhirAuthorization``). Search results are followed through their ``next`` links while
those stay on the same server, up to a page limit. Nothing fetched is logged.

Every answer is streamed and counted as it arrives: at most ``MAX_RESPONSE_BYTES`` per answer
and ``MAX_FETCH_BYTES`` for the whole call, counted *after* decompression (gzip and deflate
are decoded here, in bounded steps, so a compression bomb stops at the cap; other encodings
are refused). ``timeout`` bounds the whole fetch by the wall clock, all pages included.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from netboard.service.cds_hooks import fill_template

if TYPE_CHECKING:
    import httpx

MAX_PAGES = 10
#: Largest answer accepted from the FHIR server, decompressed.
MAX_RESPONSE_BYTES = 10_000_000
#: Largest total of all answers of one hook call, decompressed.
MAX_FETCH_BYTES = 25_000_000


class FetchRefused(Exception):
    """An answer that is not read on: the message is for the missing-data card."""


class _Budget:
    """Bytes left for the whole call, taken as they arrive (the parallel queries of one
    event loop share it, so together they never hold more than the total)."""

    def __init__(self, total: int) -> None:
        self.left = total


def _decoder(encoding: str) -> Any:
    """A zlib decompressor for ``Content-Encoding`` (None for identity)."""
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return None
    if name in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if name == "deflate":
        return zlib.decompressobj()
    raise FetchRefused(f"the FHIR server answered in an encoding netboard does not read ({name})")


async def read_capped(
    response: httpx.Response, cap: int, budget: _Budget | None = None
) -> bytearray:
    """The body of a streamed response, decompressed, refused past ``cap`` bytes.

    Decompression is done in steps of at most the bytes still allowed, so a small
    compressed body that would expand to gigabytes costs no more than ``cap``; with a
    ``budget``, each step is also taken from it at once.

    Raises:
        FetchRefused: the body is too large, in an unknown encoding, or corrupt.
    """
    budget = budget if budget is not None else _Budget(cap)
    decoder = _decoder(response.headers.get("content-encoding", ""))
    out = bytearray()

    def room() -> int:
        return min(cap - len(out), budget.left)

    def take(data: bytes) -> None:
        out.extend(data)
        budget.left -= len(data)
        if len(out) > cap or budget.left < 0:
            raise FetchRefused("the FHIR server's answer is too large")

    try:
        async for chunk in response.aiter_raw():
            if decoder is None:
                take(chunk)
                continue
            data = chunk
            while data:
                # max_length 0 would mean "no limit": ask for at least one byte past the room.
                take(decoder.decompress(data, max(room(), 0) + 1))
                data = decoder.unconsumed_tail
        if decoder is not None:
            take(decoder.flush())
    except zlib.error:
        raise FetchRefused("the FHIR server's answer is not validly compressed") from None
    return out


async def fetch_prefetch(
    server: str,
    templates: Mapping[str, str],
    context: Mapping[str, Any],
    access_token: str | None,
    *,
    timeout: float,
) -> tuple[dict[str, Any], list[str]]:
    """Run each template against ``server``; return the data by key and reader-facing errors.

    A key whose query fails is left out (the caller decides whether that means 412). The
    whole fetch ends within ``timeout`` seconds of wall-clock time.
    """
    import httpx

    from netboard.documents import parse_json
    from netboard.errors import CaseError

    headers = {"Accept": "application/fhir+json", "Accept-Encoding": "gzip, deflate"}
    if access_token:
        headers["Authorization"] = f"Bearer {access_token}"
    base = server.rstrip("/") + "/"
    out: dict[str, Any] = {}
    errors: list[str] = []
    budget = _Budget(MAX_FETCH_BYTES)

    async def one(client: httpx.AsyncClient, key: str, template: str) -> None:
        query = fill_template(template, context)
        if query is None:
            errors.append(f"{key}: the prefetch template needs context the hook did not give")
            return
        url: str | None = base + encode_query(query)
        pages: list[Any] = []
        while url is not None and len(pages) < MAX_PAGES:
            async with client.stream("GET", url) as response:
                if response.status_code != 200:
                    errors.append(f"{key}: the FHIR server answered {response.status_code}")
                    return
                try:
                    raw = await read_capped(response, MAX_RESPONSE_BYTES, budget)
                except FetchRefused as exc:
                    errors.append(f"{key}: {exc}")
                    return
            try:
                text = raw.decode("utf-8-sig")
                del raw
                # Parsing up to 10 MB is CPU work: off the event loop.
                page = await asyncio.to_thread(parse_json, text, source=key)
            except (UnicodeDecodeError, CaseError):
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
        async with (
            asyncio.timeout(timeout),
            httpx.AsyncClient(headers=headers, timeout=timeout, follow_redirects=False) as c,
        ):
            await asyncio.gather(*(one(c, k, t) for k, t in templates.items()))
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
