"""Authentication of CDS Hooks 2.0 calls: the trust file and JWT verification.

A CDS client (an EHR) signs a short-lived JWT for every call and sends it as
``Authorization: Bearer <jwt>``. ``TrustStore`` holds the clients we accept (their ``iss``,
where their public keys live, an optional ``tenant``); ``TokenVerifier`` checks one token
against it and returns the verified ``Claims`` or raises ``AuthError``. ``AuthError.reason``
is an internal code for logs only: callers answer every failure with a bare 401.

Nothing here logs or keeps a token: logs carry the reason code, the ``iss`` (only when it is
on the allowlist), the ``kid`` (only when it names a trusted key) and the time taken; the
replay cache keeps a hash of ``iss`` and ``jti``, not the values.
"""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jwt
from jwt.exceptions import (
    DecodeError,
    InvalidAlgorithmError,
    InvalidAudienceError,
    InvalidKeyError,
    InvalidSignatureError,
    MissingRequiredClaimError,
    PyJWTError,
)
from jwt.types import Options

from netboard.documents import parse_document, read_text
from netboard.errors import CaseError, ConfigError, NetboardError, Problem

if TYPE_CHECKING:
    import httpx
    from starlette.requests import Request

__all__ = [
    "ALLOWED_ALGORITHMS",
    "MAX_TOKEN_CHARS",
    "AuthError",
    "Claims",
    "Issuer",
    "Reason",
    "TokenVerifier",
    "TrustStore",
    "check_request",
    "fhir_base",
    "fhir_server_problems",
    "http_jwks_fetcher",
    "request_audience",
    "require_loopback_without_trust",
]

_log = logging.getLogger("netboard.service.security")

#: Signature algorithms a token may use (CDS Hooks 2.0: no ``none``, no HMAC).
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGORITHM_BY_CURVE = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
ALLOWED_ALGORITHMS = _RSA_ALGORITHMS | frozenset(_EC_ALGORITHM_BY_CURVE.values())

#: Longest bearer token accepted; longer ones are refused before any decoding.
MAX_TOKEN_CHARS = 8192
MAX_TRUST_FILE_BYTES = 1_000_000
MAX_JWKS_BYTES = 1_000_000
MAX_JWKS_KEYS = 100
MIN_RSA_BITS = 2048

_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

#: PyJWT checks signature, ``aud`` and the presence of exp/iat/jti; the time checks use our
#: clock (PyJWT reads the system clock), so they are done after ``jwt.decode``.
_DECODE_OPTIONS: Options = {
    "verify_signature": True,
    "verify_aud": True,
    "strict_aud": False,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_iss": False,
    "verify_sub": True,
    "verify_jti": True,
    "require": ["exp", "iat", "jti"],
    "enforce_minimum_key_length": True,
}


class Reason(StrEnum):
    """Why a token was refused (for logs and tests; never sent to the caller)."""

    MISSING_TOKEN = "missing_token"
    MALFORMED = "malformed"
    TOKEN_TOO_LARGE = "token_too_large"
    ALG_NOT_ALLOWED = "alg_not_allowed"
    TYP_NOT_ALLOWED = "typ_not_allowed"
    ISS_NOT_ALLOWED = "iss_not_allowed"
    JKU_NOT_ALLOWED = "jku_not_allowed"
    KID_MISSING = "kid_missing"
    KID_UNKNOWN = "kid_unknown"
    JWKS_UNAVAILABLE = "jwks_unavailable"
    KEY_ALG_MISMATCH = "key_alg_mismatch"
    KEY_INVALID = "key_invalid"
    SIGNATURE_INVALID = "signature_invalid"
    AUD_MISSING = "aud_missing"
    AUD_MISMATCH = "aud_mismatch"
    EXP_MISSING = "exp_missing"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    IAT_MISSING = "iat_missing"
    IAT_IN_FUTURE = "iat_in_future"
    IAT_TOO_OLD = "iat_too_old"
    JTI_MISSING = "jti_missing"
    REPLAY = "replay"
    REPLAY_CACHE_FULL = "replay_cache_full"
    TENANT_MISMATCH = "tenant_mismatch"
    CLAIM_INVALID = "claim_invalid"
    TOKEN_INVALID = "token_invalid"


class AuthError(NetboardError):
    """A call is not authenticated. ``reason`` is for logs; the caller only sees a bare 401.

    ``iss`` is set only when the token named an allowlisted issuer. The message never
    contains the token or its claims.
    """

    def __init__(self, reason: Reason | str, iss: str | None = None) -> None:
        super().__init__(f"unauthorized ({reason})")
        self.reason = Reason(reason)
        self.iss = iss


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says about the caller."""

    iss: str
    kid: str
    alg: str
    jti: str
    exp: float
    iat: float
    sub: str | None = None
    tenant: str | None = None


# --- keys ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Key:
    """One trusted public key: its ``kid``, the algorithms it may verify, the JWK."""

    kid: str
    algorithms: frozenset[str]
    jwk: Mapping[str, Any]
    _built: dict[str, jwt.PyJWK] = field(default_factory=dict, compare=False, repr=False)

    def for_algorithm(self, alg: str) -> jwt.PyJWK:
        """The key bound to ``alg`` (which must be one of ``algorithms``)."""
        built = self._built.get(alg)
        if built is None:
            built = jwt.PyJWK(dict(self.jwk), algorithm=alg)
            self._built[alg] = built
        return built


def _parse_key(raw: Any) -> _Key:
    """Check one JWK and bind it to the algorithms its type allows.

    Raises:
        ValueError: the key is unusable (the message says why).
    """
    if not isinstance(raw, Mapping):
        raise ValueError("a key must be an object")
    kid = raw.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ValueError("kid is required (a non-empty string)")
    kty = raw.get("kty")
    if kty == "RSA":
        family = _RSA_ALGORITHMS
    elif kty == "EC":
        crv = raw.get("crv")
        curve_alg = _EC_ALGORITHM_BY_CURVE.get(crv) if isinstance(crv, str) else None
        if curve_alg is None:
            raise ValueError(f"key {kid!r}: EC curve must be P-256, P-384 or P-521")
        family = frozenset({curve_alg})
    else:
        raise ValueError(f"key {kid!r}: kty must be RSA or EC (symmetric keys are refused)")
    if _PRIVATE_MEMBERS & raw.keys():
        raise ValueError(f"key {kid!r}: contains private key material; give the public key only")
    use = raw.get("use")
    if use is not None and use != "sig":
        raise ValueError(f'key {kid!r}: use must be "sig"')
    ops = raw.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise ValueError(f'key {kid!r}: key_ops must include "verify"')
    alg = raw.get("alg")
    if alg is not None:
        if alg not in family:
            allowed = ", ".join(sorted(family))
            raise ValueError(f"key {kid!r}: alg {alg!r} does not fit this key (use {allowed})")
        family = frozenset({alg})
    key = _Key(kid=kid, algorithms=family, jwk=dict(raw))
    try:
        built = key.for_algorithm(min(family))
    except PyJWTError:
        raise ValueError(f"key {kid!r}: not a valid {kty} public key") from None
    if kty == "RSA" and getattr(built.key, "key_size", 0) < MIN_RSA_BITS:
        raise ValueError(f"key {kid!r}: RSA key shorter than {MIN_RSA_BITS} bits")
    return key


def _parse_jwks(raw: Any) -> tuple[dict[str, _Key], list[tuple[int, str]]]:
    """The usable keys of a JWK Set by ``kid``, and (index, message) for each key refused.

    A ``kid`` that occurs twice is ambiguous: neither key is kept.

    Raises:
        ValueError: ``raw`` is not a JWK Set at all.
    """
    if not isinstance(raw, Mapping) or not isinstance(raw.get("keys"), list):
        raise ValueError('expected a JWK Set: an object with a "keys" list')
    items: list[Any] = raw["keys"]
    if len(items) > MAX_JWKS_KEYS:
        raise ValueError(f"more than {MAX_JWKS_KEYS} keys")
    keys: dict[str, _Key] = {}
    problems: list[tuple[int, str]] = []
    duplicated: set[str] = set()
    for index, item in enumerate(items):
        try:
            key = _parse_key(item)
        except ValueError as exc:
            problems.append((index, str(exc)))
            continue
        if key.kid in keys:
            duplicated.add(key.kid)
            problems.append((index, f"duplicate kid {key.kid!r}"))
        keys[key.kid] = key
    for kid in duplicated:
        del keys[kid]
    return keys, problems


# --- the trust file ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Issuer:
    """A trusted CDS client: its ``iss``, where its keys are, and its tenant if pinned.

    Exactly one of ``jwks_url`` (fetched and cached) and ``keys`` (given in the trust file
    or a file beside it) is set.
    """

    iss: str
    jwks_url: str | None = None
    keys: Mapping[str, _Key] | None = field(default=None, repr=False)
    tenant: str | None = None
    #: The FHIR servers (``fhirServer`` base URLs, normalised by ``fhir_base``) that hook
    #: calls of this issuer may make the service fetch from; empty: prefetch only.
    fhir_servers: frozenset[str] = frozenset()
    #: ``jku`` header values accepted with pinned keys (never fetched); empty: any jku.
    jku: tuple[str, ...] = ()


_TOP_KEYS = ("audience_base", "max_token_age_seconds", "leeway_seconds", "issuers")
_ISSUER_KEYS = ("iss", "jwks_url", "jwks", "jwks_file", "tenant", "jku", "fhir_servers")


def jku_allowed(issuer: Issuer, jku: Any) -> bool:
    """Whether a token's ``jku`` header is acceptable for this issuer (it is never fetched).

    With a ``jwks_url`` the header must name that URL. With keys pinned in the trust file
    (``jwks``/``jwks_file``) the signature is checked against the pinned keys whatever the
    header says (the CDS Hooks sandbox always sends one), so any jku is accepted, or only
    those listed in the issuer's ``jku`` when the trust file lists some.
    """
    if jku is None:
        return True
    if issuer.jwks_url is not None:
        return bool(jku == issuer.jwks_url)
    return isinstance(jku, str) and (not issuer.jku or jku in issuer.jku)


def _load_jku(raw: Mapping[str, Any], where: str, problems: list[Problem]) -> tuple[str, ...]:
    """The optional ``jku`` list of an issuer with pinned keys."""
    urls = raw.get("jku")
    if urls is None:
        return ()
    if raw.get("jwks_url") is not None:
        problems.append(Problem(f"{where}.jku", "only for pinned keys (jwks or jwks_file)"))
        return ()
    if not isinstance(urls, list) or not urls:
        problems.append(Problem(f"{where}.jku", "expected a list of URLs"))
        return ()
    for i, url in enumerate(urls):
        message = _url_problem(url, allow_query=True)
        if message:
            problems.append(Problem(f"{where}.jku[{i}]", message))
    return tuple(u for u in urls if isinstance(u, str))


def fhir_base(url: str) -> str:
    """A FHIR base URL in the form allowlists compare: scheme and host in lower case, no
    default port, no trailing slash.

    Example:
        >>> fhir_base("HTTPS://EHR.example.org:443/fhir/")
        'https://ehr.example.org/fhir'
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default = {"https": 443, "http": 80}.get(scheme)
    netloc = host if port is None or port == default else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path.rstrip('/')}"


def fhir_server_problems(values: Any, where: str) -> tuple[frozenset[str], list[Problem]]:
    """Check an allowlist of FHIR base URLs (https; http only on loopback); normalise them."""
    if not isinstance(values, list) or not values:
        return frozenset(), [Problem(where, "must be a non-empty list of FHIR base URLs")]
    found: set[str] = set()
    problems: list[Problem] = []
    for index, value in enumerate(values):
        message = _url_problem(value, allow_query=False)
        if message:
            problems.append(Problem(f"{where}[{index}]", message))
        else:
            found.add(fhir_base(value))
    return frozenset(found), problems


def _is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _url_problem(value: Any, *, allow_query: bool) -> str | None:
    """Why ``value`` is not an acceptable URL (https; http only to a loopback host)."""
    if not isinstance(value, str) or not value:
        return "must be a URL"
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("https", "http"):
        return "must use https"
    if not host:
        return "must be an absolute URL with a host"
    if parts.scheme == "http" and not _is_loopback(host):
        return "must use https (http is allowed only for localhost/127.0.0.1)"
    if parts.username is not None or parts.password is not None:
        return "must not contain credentials"
    if parts.fragment:
        return "must not have a fragment"
    if parts.query and not allow_query:
        return "must not have a query"
    return None


def _whole_number(
    data: Mapping[str, Any], name: str, default: int, lo: int, hi: int, problems: list[Problem]
) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        problems.append(Problem(name, f"must be a whole number from {lo} to {hi}"))
        return default
    return value


def _read_json_file(path: Path, source: str) -> Any:
    """Read a small JSON/YAML file, reporting failures as ``ConfigError``."""
    text, _ = read_text(
        str(path), limit=MAX_TRUST_FILE_BYTES, expected="a JSON or YAML file", error=ConfigError
    )
    try:
        return parse_document(text, source=source)
    except CaseError as exc:
        raise ConfigError(exc.problems) from None


def _load_issuer(
    raw: Any, where: str, base_dir: Path | None, problems: list[Problem]
) -> Issuer | None:
    if not isinstance(raw, Mapping):
        problems.append(Problem(where, "must be a mapping with iss and one of jwks_url/jwks"))
        return None
    start = len(problems)
    for key in raw:
        if key not in _ISSUER_KEYS:
            allowed = ", ".join(_ISSUER_KEYS)
            problems.append(Problem(f"{where}.{key}", f"unknown key (allowed: {allowed})"))
    iss = raw.get("iss")
    if not isinstance(iss, str) or not iss.strip():
        problems.append(Problem(f"{where}.iss", "required: the issuer's iss value"))
    tenant = raw.get("tenant")
    if tenant is not None and (not isinstance(tenant, str) or not tenant):
        problems.append(Problem(f"{where}.tenant", "must be a non-empty string"))
    sources = [k for k in ("jwks_url", "jwks", "jwks_file") if raw.get(k) is not None]
    if len(sources) != 1:
        problems.append(
            Problem(where, f"give exactly one of jwks_url, jwks, jwks_file (found {len(sources)})")
        )
    jwks_url = raw.get("jwks_url")
    if jwks_url is not None:
        message = _url_problem(jwks_url, allow_query=True)
        if message:
            problems.append(Problem(f"{where}.jwks_url", message))
    keys: dict[str, _Key] | None = None
    if raw.get("jwks") is not None or raw.get("jwks_file") is not None:
        keys = _load_static_keys(raw, where, base_dir, problems)
    servers: frozenset[str] = frozenset()
    if raw.get("fhir_servers") is not None:
        servers, bad = fhir_server_problems(raw["fhir_servers"], f"{where}.fhir_servers")
        problems.extend(bad)
    jku = _load_jku(raw, where, problems)
    if len(problems) > start or not isinstance(iss, str):
        return None
    return Issuer(
        iss=iss,
        jwks_url=jwks_url if isinstance(jwks_url, str) else None,
        keys=keys,
        tenant=tenant if isinstance(tenant, str) else None,
        fhir_servers=servers,
        jku=jku,
    )


def _load_static_keys(
    raw: Mapping[str, Any], where: str, base_dir: Path | None, problems: list[Problem]
) -> dict[str, _Key] | None:
    if raw.get("jwks") is not None:
        place, data = f"{where}.jwks", raw["jwks"]
    else:
        place = f"{where}.jwks_file"
        name = raw["jwks_file"]
        if not isinstance(name, str) or not name:
            problems.append(Problem(place, "must be a file name"))
            return None
        path = Path(name) if base_dir is None else base_dir / name
        try:
            data = _read_json_file(path, str(path))
        except ConfigError as exc:
            problems.extend(Problem(place, str(p)) for p in exc.problems)
            return None
    try:
        keys, bad = _parse_jwks(data)
    except ValueError as exc:
        problems.append(Problem(place, str(exc)))
        return None
    problems.extend(Problem(f"{place}.keys[{i}]", message) for i, message in bad)
    if not keys and not bad:
        problems.append(Problem(place, "holds no keys"))
    return keys


@dataclass(frozen=True, slots=True)
class TrustStore:
    """The CDS clients this service accepts, with the token-time limits."""

    issuers: Mapping[str, Issuer]
    audience_base: str | None = None
    max_token_age_seconds: int = 3600
    leeway_seconds: int = 30

    @classmethod
    def from_file(cls, path: str | Path) -> TrustStore:
        """Read a trust file (JSON or YAML); ``jwks_file`` names are relative to it.

        Raises:
            ConfigError: the file is unreadable or invalid (every problem listed).
        """
        p = Path(path)
        return cls.from_mapping(_read_json_file(p, str(p)), base_dir=p.parent)

    @classmethod
    def from_mapping(cls, data: Any, base_dir: str | Path | None = None) -> TrustStore:
        """Build a trust store from parsed trust-file data.

        Raises:
            ConfigError: the data is invalid (every problem listed).
        """
        if not isinstance(data, Mapping):
            raise ConfigError([Problem("(trust file)", "must be a mapping with an issuers list")])
        problems: list[Problem] = []
        for key in data:
            if key not in _TOP_KEYS:
                allowed = ", ".join(_TOP_KEYS)
                problems.append(Problem(str(key), f"unknown key (allowed: {allowed})"))
        base = data.get("audience_base")
        if base is not None:
            message = _url_problem(base, allow_query=False)
            if message:
                problems.append(Problem("audience_base", message))
        max_age = _whole_number(data, "max_token_age_seconds", 3600, 1, 86_400, problems)
        leeway = _whole_number(data, "leeway_seconds", 30, 0, 600, problems)
        folder = None if base_dir is None else Path(base_dir)
        issuers: dict[str, Issuer] = {}
        raw_issuers = data.get("issuers")
        if not isinstance(raw_issuers, list) or not raw_issuers:
            problems.append(Problem("issuers", "required: a non-empty list of trusted issuers"))
            raw_issuers = []
        for index, raw in enumerate(raw_issuers):
            where = f"issuers[{index}]"
            issuer = _load_issuer(raw, where, folder, problems)
            if issuer is None:
                continue
            if issuer.iss in issuers:
                problems.append(Problem(f"{where}.iss", f"duplicate issuer {issuer.iss!r}"))
                continue
            issuers[issuer.iss] = issuer
        if problems:
            raise ConfigError(problems)
        return cls(
            issuers=issuers,
            audience_base=base.rstrip("/") if isinstance(base, str) else None,
            max_token_age_seconds=max_age,
            leeway_seconds=leeway,
        )


# --- fetching key sets ------------------------------------------------------------------------

JwksFetcher = Callable[[str], Mapping[str, Any]]


def http_jwks_fetcher(
    *, timeout: float = 3.0, transport: httpx.BaseTransport | None = None
) -> JwksFetcher:
    """A fetcher that GETs a JWK Set over HTTP(S): no redirects, size-capped, JSON only."""
    import httpx

    def fetch(url: str) -> Mapping[str, Any]:
        with (
            httpx.Client(timeout=timeout, follow_redirects=False, transport=transport) as client,
            client.stream("GET", url, headers={"Accept": "application/json"}) as response,
        ):
            response.raise_for_status()
            body = bytearray()
            for chunk in response.iter_bytes():
                body.extend(chunk)
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError("JWK Set too large")
        data = json.loads(bytes(body))
        if not isinstance(data, Mapping):
            raise ValueError("JWK Set is not a JSON object")
        return data

    return fetch


class _RemoteKeys:
    """The cached JWK Set of one issuer, fetched only from its trust-file URL."""

    def __init__(self, issuer: Issuer, url: str) -> None:
        self.issuer = issuer
        self.url = url
        self.lock = threading.Lock()
        self.keys: dict[str, _Key] | None = None
        self.fetched_at = -math.inf
        self.attempted_at = -math.inf


# --- the replay cache -------------------------------------------------------------------------


def _replay_keys(iss: str, jti: str) -> tuple[bytes, bytes]:
    """The stored keys of a token id: a hash of (iss, jti), and a hash of the issuer."""
    digest = hashlib.sha256(f"{iss}\x00{jti}".encode()).digest()
    return digest, hashlib.sha256(iss.encode()).digest()[:16]


class _ReplayCache:
    """Seen (iss, jti) pairs until the token could no longer be accepted anyway (one process).

    Bounded per issuer: expired entries are dropped on every insert (a heap ordered by
    expiry, so the cost does not grow with the size); when one issuer holds
    ``max_entries`` live entries, its new tokens are refused (fail closed) rather than
    forgetting a live one, and the other issuers are not affected.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._until: dict[bytes, tuple[float, bytes]] = {}
        self._per_issuer: dict[bytes, int] = {}
        self._heap: list[tuple[float, bytes]] = []

    def __len__(self) -> int:
        with self._lock:
            return len(self._until)

    def add(self, iss: str, jti: str, until: float, now: float) -> Reason | None:
        """Record a token; return why it is refused (replay, cache full) or None."""
        digest, issuer = _replay_keys(iss, jti)
        with self._lock:
            while self._heap and self._heap[0][0] < now:
                _, old = heapq.heappop(self._heap)
                entry = self._until.get(old)
                if entry is not None and entry[0] < now:
                    del self._until[old]
                    self._per_issuer[entry[1]] -= 1
            if digest in self._until:
                return Reason.REPLAY
            if self._per_issuer.get(issuer, 0) >= self.max_entries:
                return Reason.REPLAY_CACHE_FULL
            self._until[digest] = (until, issuer)
            self._per_issuer[issuer] = self._per_issuer.get(issuer, 0) + 1
            heapq.heappush(self._heap, (until, digest))
            return None


_REPLAY_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS seen_jti (digest BLOB PRIMARY KEY, issuer BLOB NOT NULL, "
    "until REAL NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS seen_jti_until ON seen_jti (until)",
    "CREATE TABLE IF NOT EXISTS issuer_count (issuer BLOB PRIMARY KEY, n INTEGER NOT NULL) "
    "WITHOUT ROWID",
    "CREATE TRIGGER IF NOT EXISTS seen_jti_added AFTER INSERT ON seen_jti BEGIN "
    "INSERT INTO issuer_count VALUES (NEW.issuer, 1) "
    "ON CONFLICT (issuer) DO UPDATE SET n = n + 1; END",
    "CREATE TRIGGER IF NOT EXISTS seen_jti_removed AFTER DELETE ON seen_jti BEGIN "
    "UPDATE issuer_count SET n = n - 1 WHERE issuer = OLD.issuer; END",
)
#: The statements run for every token: each must use an index, never scan the table.
REPLAY_STATEMENTS = {
    "expire": "DELETE FROM seen_jti WHERE until < ?",
    "count": "SELECT n FROM issuer_count WHERE issuer = ?",
    "insert": "INSERT INTO seen_jti VALUES (?, ?, ?)",
}


class SqliteReplayCache:
    """The replay cache in a SQLite file, shared by every worker process of the service.

    Same contract as the in-memory cache: a hash of (iss, jti) is kept until the token
    could no longer be accepted anyway, and an issuer whose ``max_entries`` live entries fill
    its share is refused new tokens (fail closed) without affecting the others. Rows are
    indexed by the hash and by expiry, and a per-issuer counter kept by triggers replaces a
    ``count(*)``, so a check costs the same whether the file holds 10 or 100,000 token ids.
    A file of the first layout (one ``seen_tokens`` table) is carried over on opening.
    """

    def __init__(self, path: str, max_entries: int) -> None:
        from netboard.service.storage import private_sqlite

        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._db = private_sqlite(path)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for statement in _REPLAY_SCHEMA:
                self._db.execute(statement)
            old = self._db.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'seen_tokens'"
            ).fetchone()[0]
            if old:  # the first layout had no issuer: keep its ids in a bucket of their own
                self._db.execute(
                    "INSERT OR IGNORE INTO seen_jti SELECT digest, x'', until FROM seen_tokens"
                )
                self._db.execute("DROP TABLE seen_tokens")
            self._db.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT coalesce(sum(n), 0) FROM issuer_count").fetchone()
        return int(row[0])

    def add(self, iss: str, jti: str, until: float, now: float) -> Reason | None:
        """Record a token; return why it is refused (replay, cache full) or None."""
        import sqlite3

        digest, issuer = _replay_keys(iss, jti)
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(REPLAY_STATEMENTS["expire"], (now,))
                row = self._db.execute(REPLAY_STATEMENTS["count"], (issuer,)).fetchone()
                if row is not None and row[0] >= self.max_entries:
                    refused: Reason | None = Reason.REPLAY_CACHE_FULL
                else:
                    self._db.execute(REPLAY_STATEMENTS["insert"], (digest, issuer, until))
                    refused = None
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError:
                self._db.execute("ROLLBACK")
                return Reason.REPLAY
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                return Reason.REPLAY_CACHE_FULL
            return refused

    def query_plans(self) -> dict[str, str]:
        """SQLite's plan for each per-token statement (tests check that none scans)."""
        args: dict[str, tuple[Any, ...]] = {
            "expire": (0.0,),
            "count": (b"",),
            "insert": (b"", b"", 0.0),
        }
        with self._lock:
            return {
                name: " | ".join(
                    str(r[-1])
                    for r in self._db.execute(f"EXPLAIN QUERY PLAN {sql}", args[name]).fetchall()
                )
                for name, sql in REPLAY_STATEMENTS.items()
            }


# --- verification -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Seen:
    """What may be logged about the token being checked (trusted values only)."""

    iss: str | None = None
    kid: str | None = None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) else None


def _bearer_token(header: str | None) -> str:
    if not header or not header.strip():
        raise AuthError(Reason.MISSING_TOKEN)
    if len(header) > MAX_TOKEN_CHARS + 64:
        raise AuthError(Reason.TOKEN_TOO_LARGE)
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise AuthError(Reason.MALFORMED)
    token = token.strip()
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthError(Reason.TOKEN_TOO_LARGE)
    if not _COMPACT_JWS.fullmatch(token):
        raise AuthError(Reason.MALFORMED)
    return token


class TokenVerifier:
    """Verify CDS Hooks bearer tokens against a ``TrustStore``; thread-safe.

    ``fetch_jwks`` (URL -> JWK Set) is only ever called with a ``jwks_url`` from the trust
    file; the default uses httpx with a 3 s timeout. ``clock`` gives the time in seconds
    since the epoch (tokens and caches both use it). ``replay_db`` keeps the replay cache in
    that SQLite file instead of memory, so that several worker processes share it.
    """

    def __init__(
        self,
        trust: TrustStore,
        *,
        fetch_jwks: JwksFetcher | None = None,
        clock: Callable[[], float] = time.time,
        jwks_ttl_seconds: float = 300.0,
        jwks_min_refetch_seconds: float = 30.0,
        max_replay_entries: int = 100_000,  # per issuer
        replay_db: str | None = None,
    ) -> None:
        self.trust = trust
        self._fetch = fetch_jwks if fetch_jwks is not None else http_jwks_fetcher()
        self._clock = clock
        self._ttl = jwks_ttl_seconds
        self._min_refetch = min(jwks_min_refetch_seconds, jwks_ttl_seconds)
        self._replay: _ReplayCache | SqliteReplayCache = (
            SqliteReplayCache(replay_db, max_replay_entries)
            if replay_db is not None
            else _ReplayCache(max_replay_entries)
        )
        self._remote = {
            i.iss: _RemoteKeys(i, i.jwks_url)
            for i in trust.issuers.values()
            if i.jwks_url is not None
        }

    @property
    def replay_entries(self) -> int:
        """How many token ids the replay cache holds now."""
        return len(self._replay)

    def verify(self, authorization_header: str | None, audience: str) -> Claims:
        """Check the ``Authorization`` header of a call to the endpoint URL ``audience``.

        Raises:
            AuthError: the token is missing or not acceptable (``reason`` says why).
        """
        started = time.perf_counter()
        seen = _Seen()
        try:
            claims = self._verify(authorization_header, audience, seen)
        except AuthError as exc:
            exc.iss = seen.iss
            _log_rejection(exc.reason, seen, started)
            raise
        _log.debug(
            "token accepted iss=%s kid=%s in %.1f ms",
            claims.iss,
            claims.kid,
            (time.perf_counter() - started) * 1000,
        )
        return claims

    def _verify(self, authorization_header: str | None, audience: str, seen: _Seen) -> Claims:
        token = _bearer_token(authorization_header)
        try:  # PyJWT also refuses unknown ``crit`` extensions and ``b64: false`` here.
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except PyJWTError:
            raise AuthError(Reason.MALFORMED) from None

        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
            raise AuthError(Reason.ALG_NOT_ALLOWED)
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
            raise AuthError(Reason.TYP_NOT_ALLOWED)

        iss = unverified.get("iss")
        issuer = self.trust.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise AuthError(Reason.ISS_NOT_ALLOWED)
        seen.iss = issuer.iss

        if not jku_allowed(issuer, header.get("jku")):
            raise AuthError(Reason.JKU_NOT_ALLOWED)
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError(Reason.KID_MISSING)
        key = self._key(issuer, kid)
        seen.kid = kid
        if alg not in key.algorithms:
            raise AuthError(Reason.KEY_ALG_MISMATCH)

        try:
            payload = jwt.decode(
                token,
                key=key.for_algorithm(alg),
                algorithms=[alg],
                audience=audience,
                options=_DECODE_OPTIONS,
            )
        except MissingRequiredClaimError as exc:
            missing = {
                "aud": Reason.AUD_MISSING,
                "exp": Reason.EXP_MISSING,
                "iat": Reason.IAT_MISSING,
                "jti": Reason.JTI_MISSING,
            }
            raise AuthError(missing.get(exc.claim, Reason.CLAIM_INVALID)) from None
        except InvalidAudienceError:
            raise AuthError(Reason.AUD_MISMATCH) from None
        except InvalidSignatureError:
            raise AuthError(Reason.SIGNATURE_INVALID) from None
        except InvalidAlgorithmError:
            raise AuthError(Reason.KEY_ALG_MISMATCH) from None
        except (InvalidKeyError, jwt.PyJWKError):
            raise AuthError(Reason.KEY_INVALID) from None
        except DecodeError:
            raise AuthError(Reason.MALFORMED) from None
        except PyJWTError:
            raise AuthError(Reason.CLAIM_INVALID) from None
        return self._check_claims(payload, issuer, kid, alg)

    def _check_claims(
        self, payload: Mapping[str, Any], issuer: Issuer, kid: str, alg: str
    ) -> Claims:
        now = self._clock()
        leeway = self.trust.leeway_seconds
        max_age = self.trust.max_token_age_seconds
        exp = _number(payload["exp"])
        iat = _number(payload["iat"])
        if exp is None or iat is None:
            raise AuthError(Reason.CLAIM_INVALID)
        if now >= exp + leeway:
            raise AuthError(Reason.EXPIRED)
        if "nbf" in payload:
            nbf = _number(payload["nbf"])
            if nbf is None:
                raise AuthError(Reason.CLAIM_INVALID)
            if nbf > now + leeway:
                raise AuthError(Reason.NOT_YET_VALID)
        if iat > now + leeway:
            raise AuthError(Reason.IAT_IN_FUTURE)
        if now - iat > max_age + leeway:
            raise AuthError(Reason.IAT_TOO_OLD)
        jti = payload["jti"]
        if not isinstance(jti, str) or not jti:
            raise AuthError(Reason.JTI_MISSING)
        tenant = payload.get("tenant")
        if issuer.tenant is not None and tenant != issuer.tenant:
            raise AuthError(Reason.TENANT_MISMATCH)
        sub = payload.get("sub")
        # Past this moment the exp or iat check refuses the token, so the jti can go.
        until = min(exp + leeway, iat + max_age + leeway)
        refused = self._replay.add(issuer.iss, jti, until, now)
        if refused is not None:
            raise AuthError(refused)
        return Claims(
            iss=issuer.iss,
            kid=kid,
            alg=alg,
            jti=jti,
            exp=exp,
            iat=iat,
            sub=sub if isinstance(sub, str) else None,
            tenant=tenant if isinstance(tenant, str) else None,
        )

    def _key(self, issuer: Issuer, kid: str) -> _Key:
        if issuer.keys is not None:
            key = issuer.keys.get(kid)
            if key is None:
                raise AuthError(Reason.KID_UNKNOWN)
            return key
        remote = self._remote[issuer.iss]
        with remote.lock:
            now = self._clock()
            if remote.keys is None or now - remote.fetched_at >= self._ttl:
                if now - remote.attempted_at < self._min_refetch:
                    raise AuthError(Reason.JWKS_UNAVAILABLE)
                self._refresh(remote, now)
            assert remote.keys is not None
            key = remote.keys.get(kid)
            if key is None and now - remote.attempted_at >= self._min_refetch:
                # An unknown kid may be a rotated key: look again, at most once per interval.
                self._refresh(remote, now)
                key = remote.keys.get(kid)
        if key is None:
            raise AuthError(Reason.KID_UNKNOWN)
        return key

    def _refresh(self, remote: _RemoteKeys, now: float) -> None:
        """Fetch the issuer's JWK Set from its trust-file URL (caller holds the lock)."""
        remote.attempted_at = now
        started = time.perf_counter()
        try:
            keys, bad = _parse_jwks(self._fetch(remote.url))
        except Exception as exc:
            _log.warning(
                "JWK Set fetch failed iss=%s error=%s", remote.issuer.iss, type(exc).__name__
            )
            raise AuthError(Reason.JWKS_UNAVAILABLE) from None
        remote.keys = keys
        remote.fetched_at = now
        _log.info(
            "JWK Set fetched iss=%s keys=%d skipped=%d in %.1f ms",
            remote.issuer.iss,
            len(keys),
            len(bad),
            (time.perf_counter() - started) * 1000,
        )
        for index, message in bad:
            _log.warning("JWK Set iss=%s key %d skipped: %s", remote.issuer.iss, index, message)


def _log_rejection(reason: Reason, seen: _Seen, started: float) -> None:
    _log.warning(
        "token rejected reason=%s iss=%s kid=%s in %.1f ms",
        reason.value,
        seen.iss or "-",
        seen.kid or "-",
        (time.perf_counter() - started) * 1000,
    )


# --- HTTP wiring ------------------------------------------------------------------------------


def request_audience(request: Request, base: str | None) -> str:
    """The URL a token for this request must name in ``aud``: the public base + the path.

    ``base`` is the public URL of the application root (``root_path`` included); without it
    the URL the request arrived at is used.
    """
    path = request.url.path
    root = str(request.scope.get("root_path") or "")
    if root and (path == root or path.startswith(root.rstrip("/") + "/")):
        path = path[len(root.rstrip("/")) :]
    prefix = base if base else str(request.base_url)
    return prefix.rstrip("/") + path


async def check_request(
    request: Request, verifier: TokenVerifier, public_base: str | None
) -> Claims:
    """Verify the bearer token of a hook call; the audience is this endpoint's public URL.

    The base is the trust file's ``audience_base``, else ``public_base``, else the URL the
    request came in on. Verification (which may fetch a JWK Set) runs in a worker thread.

    Raises:
        AuthError: the call is not authenticated; answer with a bare 401.
    """
    from starlette.concurrency import run_in_threadpool

    headers = request.headers.getlist("authorization")
    if len(headers) > 1:
        _log_rejection(Reason.MALFORMED, _Seen(), time.perf_counter())
        raise AuthError(Reason.MALFORMED)
    audience = request_audience(request, verifier.trust.audience_base or public_base)
    return await run_in_threadpool(verifier.verify, headers[0] if headers else None, audience)


def require_loopback_without_trust(host: str) -> None:
    """Allow serving hooks without a trust file only on a loopback address, loudly.

    Raises:
        ConfigError: ``host`` is not a loopback address.
    """
    if not _is_loopback(host):
        raise ConfigError(
            [
                Problem(
                    "--trust",
                    f"required when listening on {host!r}: without a trust file CDS Hooks "
                    "calls are not authenticated (listen on 127.0.0.1 or give --trust FILE)",
                )
            ]
        )
    _log.warning(
        "NO TRUST FILE: CDS Hooks calls are NOT authenticated. Listening on %s only; "
        "give --trust FILE before exposing this service.",
        host,
    )
