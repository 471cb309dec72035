"""JWT verification for CDS Hooks calls: one test per attack, plus the trust file.

Keys are generated here (session-scoped, so RSA generation runs twice per run); the JWK Set
endpoint is a fake fetcher that counts its calls, and the clock is a settable number.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.requests import Request

from netboard.errors import ConfigError
from netboard.service import security
from netboard.service.security import (
    AuthError,
    Reason,
    TokenVerifier,
    TrustStore,
    check_request,
    http_jwks_fetcher,
    request_audience,
    require_loopback_without_trust,
)

ISS = "https://ehr.example.org/fhir"
JWKS_URL = "https://ehr.example.org/.well-known/jwks.json"
ISS_OOB = "https://other.example.org/fhir"  # keys exchanged out of band, tenant pinned
TENANT = "hospital-7"
BASE = "https://cds.example.org"
PATH = "/cds-services/netboard-patient-view"
AUD = BASE + PATH
NOW = 1_800_000_000.0


# --- keys and helpers -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def rsa_key_next() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="session")
def oob_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def public_jwk(private: Any, kid: str, **extra: Any) -> dict[str, Any]:
    public = private.public_key()
    algorithm = RSAAlgorithm if isinstance(public, rsa.RSAPublicKey) else ECAlgorithm
    jwk: dict[str, Any] = algorithm.to_jwk(public, as_dict=True)
    return {**jwk, "kid": kid, **extra}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes: Any) -> dict[str, Any]:
    """A valid payload at NOW; a change of None removes the claim."""
    payload: dict[str, Any] = {
        "iss": ISS,
        "aud": AUD,
        "exp": int(NOW) + 300,
        "iat": int(NOW) - 5,
        "jti": "4f1c2a9e-jti-value-7d3b",
        "sub": "epic-client-id",
    }
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def sign(private: Any, alg: str = "RS384", kid: str | None = "rsa-1", **changes: Any) -> str:
    headers: dict[str, Any] = {"jku": JWKS_URL} if changes.pop("_jku", True) else {}
    headers.update(changes.pop("_headers", {}))
    if kid is not None:
        headers["kid"] = kid
    return jwt.encode(claims(**changes), private, algorithm=alg, headers=headers)


def unsigned(header: Mapping[str, Any], payload: Mapping[str, Any], signature: bytes) -> str:
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)]
    )


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeFetcher:
    """A JWK Set endpoint: URL -> set (or an exception to raise), with a call log."""

    def __init__(self, sets: dict[str, Any]) -> None:
        self.sets = sets
        self.calls: list[str] = []

    def __call__(self, url: str) -> Mapping[str, Any]:
        self.calls.append(url)
        answer = self.sets.get(url, OSError("not found"))
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]


@pytest.fixture
def fetcher(rsa_key: Any, ec_key: Any) -> FakeFetcher:
    return FakeFetcher(
        {JWKS_URL: {"keys": [public_jwk(rsa_key, "rsa-1"), public_jwk(ec_key, "ec-1")]}}
    )


@pytest.fixture
def trust_data(oob_key: Any) -> dict[str, Any]:
    return {
        "audience_base": BASE,
        "issuers": [
            {"iss": ISS, "jwks_url": JWKS_URL},
            {"iss": ISS_OOB, "jwks": {"keys": [public_jwk(oob_key, "oob-1")]}, "tenant": TENANT},
        ],
    }


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(trust_data: dict[str, Any], fetcher: FakeFetcher, clock: Clock) -> TokenVerifier:
    return TokenVerifier(TrustStore.from_mapping(trust_data), fetch_jwks=fetcher, clock=clock)


def reason_of(verifier: TokenVerifier, token: str, audience: str = AUD) -> Reason:
    with pytest.raises(AuthError) as info:
        verifier.verify(f"Bearer {token}", audience)
    return info.value.reason


# --- accepted tokens --------------------------------------------------------------------------


def test_valid_rs384_token_accepted(verifier: TokenVerifier, rsa_key: Any) -> None:
    result = verifier.verify(f"Bearer {sign(rsa_key)}", AUD)
    assert (result.iss, result.kid, result.alg, result.sub) == (
        ISS,
        "rsa-1",
        "RS384",
        "epic-client-id",
    )


@pytest.mark.parametrize("alg", ["RS256", "RS512", "PS256", "PS384", "PS512"])
def test_other_rsa_algorithms_accepted(verifier: TokenVerifier, rsa_key: Any, alg: str) -> None:
    assert verifier.verify(f"Bearer {sign(rsa_key, alg)}", AUD).alg == alg


def test_valid_es384_token_accepted(verifier: TokenVerifier, ec_key: Any) -> None:
    result = verifier.verify(f"Bearer {sign(ec_key, 'ES384', 'ec-1')}", AUD)
    assert (result.kid, result.alg) == ("ec-1", "ES384")


def test_valid_token_with_epic_style_nbf_and_no_jku(verifier: TokenVerifier, rsa_key: Any) -> None:
    token = sign(rsa_key, nbf=int(NOW) - 300, _jku=False)
    assert verifier.verify(f"bearer  {token} ", AUD).iss == ISS


def test_out_of_band_keys_and_tenant_accepted(verifier: TokenVerifier, oob_key: Any) -> None:
    token = sign(oob_key, "ES384", "oob-1", iss=ISS_OOB, tenant=TENANT, _jku=False)
    assert verifier.verify(f"Bearer {token}", AUD).tenant == TENANT


def test_aud_list_containing_ours_accepted(verifier: TokenVerifier, rsa_key: Any) -> None:
    token = sign(rsa_key, aud=["https://elsewhere.example.org/x", AUD])
    assert verifier.verify(f"Bearer {token}", AUD).iss == ISS


def test_jwks_is_cached(verifier: TokenVerifier, fetcher: FakeFetcher, rsa_key: Any) -> None:
    for n in range(3):
        verifier.verify(f"Bearer {sign(rsa_key, jti=f'j{n}')}", AUD)
    assert fetcher.calls == [JWKS_URL]


# --- header attacks ---------------------------------------------------------------------------


def test_alg_none_rejected(verifier: TokenVerifier) -> None:
    token = unsigned({"alg": "none", "typ": "JWT", "kid": "rsa-1"}, claims(), b"")
    assert reason_of(verifier, token) == Reason.ALG_NOT_ALLOWED


def test_hs256_signed_with_public_key_as_secret_rejected(
    verifier: TokenVerifier, rsa_key: Any
) -> None:
    """Key confusion: the attacker HMACs with the public key the service would load."""
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    body = b64(json.dumps(claims()).encode())
    mac = hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    assert reason_of(verifier, f"{header}.{body}.{b64(mac)}") == Reason.ALG_NOT_ALLOWED


@pytest.mark.parametrize("alg", ["HS384", "EdDSA", "ES256K", "RS1", "", None])
def test_alg_outside_allowlist_rejected(verifier: TokenVerifier, alg: Any) -> None:
    token = unsigned({"alg": alg, "kid": "rsa-1"}, claims(), b"x" * 64)
    assert reason_of(verifier, token) == Reason.ALG_NOT_ALLOWED


def test_typ_other_than_jwt_rejected(verifier: TokenVerifier, rsa_key: Any) -> None:
    token = sign(rsa_key, _headers={"typ": "at+jwt"})
    assert reason_of(verifier, token) == Reason.TYP_NOT_ALLOWED


@pytest.mark.parametrize(
    "extra",
    [{"crit": ["exp"], "exp": 1}, {"crit": ["b64"], "b64": False}, {"crit": "b64"}],
    ids=["unknown-extension", "detached-payload", "not-a-list"],
)
def test_crit_header_rejected(verifier: TokenVerifier, extra: dict[str, Any]) -> None:
    header = {"alg": "RS384", "typ": "JWT", "kid": "rsa-1", **extra}
    assert reason_of(verifier, unsigned(header, claims(), b"x" * 64)) == Reason.MALFORMED


def test_missing_kid_rejected(verifier: TokenVerifier, rsa_key: Any) -> None:
    assert reason_of(verifier, sign(rsa_key, kid=None)) == Reason.KID_MISSING


def test_unknown_kid_rejected_after_one_refetch(
    verifier: TokenVerifier, fetcher: FakeFetcher, rsa_key: Any, clock: Clock
) -> None:
    assert reason_of(verifier, sign(rsa_key, kid="nope")) == Reason.KID_UNKNOWN
    assert fetcher.calls == [JWKS_URL]  # first fetch; the refetch waits for the interval
    clock.now += 31
    assert reason_of(verifier, sign(rsa_key, kid="nope", jti="b")) == Reason.KID_UNKNOWN
    assert reason_of(verifier, sign(rsa_key, kid="nope", jti="c")) == Reason.KID_UNKNOWN
    assert fetcher.calls == [JWKS_URL, JWKS_URL]  # one refetch, then rate-limited


def test_kid_of_another_issuer_rejected(verifier: TokenVerifier, oob_key: Any) -> None:
    """A key trusted for one issuer cannot sign for another."""
    token = sign(oob_key, "ES384", "oob-1")  # iss is ISS, key belongs to ISS_OOB
    assert reason_of(verifier, token) == Reason.KID_UNKNOWN


@pytest.mark.parametrize("iss", ["https://evil.example.org/fhir", ISS + "/", None, 7])
def test_iss_not_allowlisted_rejected(
    verifier: TokenVerifier, fetcher: FakeFetcher, iss: Any
) -> None:
    token = unsigned({"alg": "RS384", "kid": "rsa-1"}, {**claims(), "iss": iss}, b"x" * 64)
    assert reason_of(verifier, token) == Reason.ISS_NOT_ALLOWED
    assert fetcher.calls == []


def test_jku_not_allowlisted_rejected_and_never_fetched(
    verifier: TokenVerifier, fetcher: FakeFetcher, rsa_key: Any
) -> None:
    evil = "https://evil.example.org/jwks.json"
    fetcher.sets[evil] = {"keys": [public_jwk(rsa_key, "rsa-1")]}
    token = sign(rsa_key, _headers={"jku": evil})
    assert reason_of(verifier, token) == Reason.JKU_NOT_ALLOWED
    assert evil not in fetcher.calls


def test_jku_for_an_issuer_with_pinned_keys_is_accepted_and_never_fetched(
    verifier: TokenVerifier, fetcher: FakeFetcher, oob_key: Any
) -> None:
    """The CDS Hooks sandbox always sends jku; with pinned keys the signature decides."""
    token = sign(oob_key, "ES384", "oob-1", iss=ISS_OOB, tenant=TENANT)  # sends a jku
    assert verifier.verify(f"Bearer {token}", AUD).iss == ISS_OOB
    assert fetcher.calls == []


def test_jku_with_pinned_keys_can_be_restricted_to_a_list(
    trust_data: dict[str, Any], fetcher: FakeFetcher, clock: Clock, oob_key: Any
) -> None:
    sandbox = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
    trust_data["issuers"][1]["jku"] = [sandbox]
    verifier = TokenVerifier(TrustStore.from_mapping(trust_data), fetch_jwks=fetcher, clock=clock)
    listed = sign(oob_key, "ES384", "oob-1", iss=ISS_OOB, tenant=TENANT, _headers={"jku": sandbox})
    assert verifier.verify(f"Bearer {listed}", AUD).iss == ISS_OOB
    other = sign(oob_key, "ES384", "oob-1", iss=ISS_OOB, tenant=TENANT)  # the EHR's jku
    assert reason_of(verifier, other) == Reason.JKU_NOT_ALLOWED
    assert fetcher.calls == []


def test_es384_header_with_rsa_key_rejected(verifier: TokenVerifier, ec_key: Any) -> None:
    """Wrong key type for the algorithm: ES384 claimed, kid names the RSA key."""
    assert reason_of(verifier, sign(ec_key, "ES384", "rsa-1")) == Reason.KEY_ALG_MISMATCH


def test_alg_in_jwk_overrides_family(
    trust_data: dict[str, Any], clock: Clock, rsa_key: Any
) -> None:
    fetch = FakeFetcher({JWKS_URL: {"keys": [public_jwk(rsa_key, "rsa-1", alg="RS256")]}})
    verifier = TokenVerifier(TrustStore.from_mapping(trust_data), fetch_jwks=fetch, clock=clock)
    assert reason_of(verifier, sign(rsa_key, "RS384")) == Reason.KEY_ALG_MISMATCH
    assert verifier.verify(f"Bearer {sign(rsa_key, 'RS256')}", AUD).alg == "RS256"


# --- signature attacks ------------------------------------------------------------------------


def test_tampered_payload_rejected(verifier: TokenVerifier, rsa_key: Any) -> None:
    header, _, signature = sign(rsa_key).split(".")
    forged = b64(json.dumps(claims(sub="someone-else")).encode())
    assert reason_of(verifier, f"{header}.{forged}.{signature}") == Reason.SIGNATURE_INVALID


def test_tampered_signature_rejected(verifier: TokenVerifier, rsa_key: Any) -> None:
    header, body, signature = sign(rsa_key).split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[10] ^= 0x01
    assert reason_of(verifier, f"{header}.{body}.{b64(bytes(raw))}") == Reason.SIGNATURE_INVALID


def test_signature_by_untrusted_key_rejected(verifier: TokenVerifier, rsa_key_next: Any) -> None:
    assert reason_of(verifier, sign(rsa_key_next)) == Reason.SIGNATURE_INVALID


# --- claim attacks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aud", "reason"),
    [
        (None, Reason.AUD_MISSING),
        ("https://evil.example.org" + PATH, Reason.AUD_MISMATCH),
        (BASE + "/cds-services/another-service", Reason.AUD_MISMATCH),
        (AUD + "/", Reason.AUD_MISMATCH),
        (BASE, Reason.AUD_MISMATCH),
        (["https://a.example.org", BASE + "/cds-services"], Reason.AUD_MISMATCH),
    ],
    ids=["missing", "wrong-host", "wrong-path", "trailing-slash", "base-only", "list-without-ours"],
)
def test_aud_not_this_endpoint_rejected(
    verifier: TokenVerifier, rsa_key: Any, aud: Any, reason: Reason
) -> None:
    assert reason_of(verifier, sign(rsa_key, aud=aud)) == reason


def test_exp_missing_rejected(verifier: TokenVerifier, rsa_key: Any) -> None:
    assert reason_of(verifier, sign(rsa_key, exp=None)) == Reason.EXP_MISSING


def test_exp_passed_rejected(verifier: TokenVerifier, rsa_key: Any) -> None:
    token = sign(rsa_key, exp=int(NOW) - 31, iat=int(NOW) - 400)  # beyond the 30 s leeway
    assert reason_of(verifier, token) == Reason.EXPIRED


def test_exp_within_leeway_accepted(verifier: TokenVerifier, rsa_key: Any) -> None:
    assert verifier.verify(f"Bearer {sign(rsa_key, exp=int(NOW) - 10)}", AUD).iss == ISS


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 10**400, "1900000000", True, None])
def test_non_numeric_or_infinite_time_claims_rejected(
    verifier: TokenVerifier, rsa_key: Any, value: Any
) -> None:
    if value is not None:
        assert reason_of(verifier, sign(rsa_key, exp=value)) == Reason.CLAIM_INVALID
        assert reason_of(verifier, sign(rsa_key, iat=value)) == Reason.CLAIM_INVALID
    token = jwt.encode(
        {**claims(), "nbf": value}, rsa_key, algorithm="RS384", headers={"kid": "rsa-1"}
    )
    assert reason_of(verifier, token) == Reason.CLAIM_INVALID


def test_nbf_in_future_rejected(verifier: TokenVerifier, rsa_key: Any) -> None:
    assert reason_of(verifier, sign(rsa_key, nbf=int(NOW) + 120)) == Reason.NOT_YET_VALID


def test_iat_missing_rejected(verifier: TokenVerifier, rsa_key: Any) -> None:
    assert reason_of(verifier, sign(rsa_key, iat=None)) == Reason.IAT_MISSING


def test_iat_in_future_rejected(verifier: TokenVerifier, rsa_key: Any) -> None:
    assert reason_of(verifier, sign(rsa_key, iat=int(NOW) + 120)) == Reason.IAT_IN_FUTURE


def test_iat_too_old_rejected(verifier: TokenVerifier, rsa_key: Any) -> None:
    """A long-lived token (exp a day away) is refused once iat is past the maximum age."""
    token = sign(rsa_key, iat=int(NOW) - 3700, exp=int(NOW) + 86_400)
    assert reason_of(verifier, token) == Reason.IAT_TOO_OLD


@pytest.mark.parametrize("jti", [None, ""])
def test_jti_missing_rejected(verifier: TokenVerifier, rsa_key: Any, jti: Any) -> None:
    assert reason_of(verifier, sign(rsa_key, jti=jti)) == Reason.JTI_MISSING


def test_jti_replay_rejected(verifier: TokenVerifier, rsa_key: Any) -> None:
    token = sign(rsa_key)
    verifier.verify(f"Bearer {token}", AUD)
    assert reason_of(verifier, token) == Reason.REPLAY
    # A fresh token that reuses the jti is a replay as well.
    assert reason_of(verifier, sign(rsa_key, iat=int(NOW))) == Reason.REPLAY


def test_concurrent_replay_accepts_exactly_one(verifier: TokenVerifier, rsa_key: Any) -> None:
    token = sign(rsa_key)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def call() -> None:
        barrier.wait()
        try:
            verifier.verify(f"Bearer {token}", AUD)
            outcomes.append("ok")
        except AuthError as exc:
            outcomes.append(exc.reason)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] + [Reason.REPLAY] * 7


def test_rejected_token_does_not_burn_its_jti(verifier: TokenVerifier, rsa_key: Any) -> None:
    assert reason_of(verifier, sign(rsa_key), audience=BASE + "/other") == Reason.AUD_MISMATCH
    assert verifier.verify(f"Bearer {sign(rsa_key)}", AUD).iss == ISS


@pytest.mark.parametrize("tenant", ["hospital-8", None])
def test_tenant_mismatch_rejected(verifier: TokenVerifier, oob_key: Any, tenant: Any) -> None:
    token = sign(oob_key, "ES384", "oob-1", iss=ISS_OOB, tenant=tenant, _jku=False)
    assert reason_of(verifier, token) == Reason.TENANT_MISMATCH


# --- malformed input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, Reason.MISSING_TOKEN),
        ("", Reason.MISSING_TOKEN),
        ("   ", Reason.MISSING_TOKEN),
        ("Basic dXNlcjpwYXNz", Reason.MALFORMED),
        ("Bearer", Reason.MALFORMED),
        ("Bearer garbage", Reason.MALFORMED),
        ("Bearer ...", Reason.MALFORMED),
        ("Bearer a.b", Reason.MALFORMED),
        ("Bearer a.b.c.d", Reason.MALFORMED),
        ("Bearer a b.c.d", Reason.MALFORMED),
        ("Bearer !!!.***.###", Reason.MALFORMED),
        ("Bearer eyJhbGciOiJSUzM4NCJ9.bm90IGpzb24.c2ln", Reason.MALFORMED),
        ("Bearer bm90IGpzb24.e30.c2ln", Reason.MALFORMED),
    ],
)
def test_malformed_authorization_header_rejected(
    verifier: TokenVerifier, header: Any, reason: Reason
) -> None:
    with pytest.raises(AuthError) as info:
        verifier.verify(header, AUD)
    assert info.value.reason == reason


def test_huge_token_rejected_before_parsing(
    verifier: TokenVerifier, rsa_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_parse(*_: Any, **__: Any) -> Any:
        raise AssertionError("the token was parsed")

    token = sign(rsa_key, padding="x" * 9000)
    monkeypatch.setattr(jwt, "get_unverified_header", must_not_parse)
    monkeypatch.setattr(jwt, "decode", must_not_parse)
    assert reason_of(verifier, token) == Reason.TOKEN_TOO_LARGE
    assert reason_of(verifier, "a" * 5000 + "." + "b" * 5000 + ".c") == Reason.TOKEN_TOO_LARGE
    just_over = "a" * 4000 + "." + "b" * 4000 + "." + "c" * (security.MAX_TOKEN_CHARS - 8001)
    assert len(just_over) == security.MAX_TOKEN_CHARS + 1
    assert reason_of(verifier, just_over) == Reason.TOKEN_TOO_LARGE


# --- key sets ---------------------------------------------------------------------------------


def test_jwks_fetch_failure_rejected(
    trust_data: dict[str, Any], clock: Clock, rsa_key: Any
) -> None:
    fetch = FakeFetcher({JWKS_URL: OSError("connection refused")})
    verifier = TokenVerifier(TrustStore.from_mapping(trust_data), fetch_jwks=fetch, clock=clock)
    assert reason_of(verifier, sign(rsa_key)) == Reason.JWKS_UNAVAILABLE
    assert reason_of(verifier, sign(rsa_key, jti="2")) == Reason.JWKS_UNAVAILABLE
    assert len(fetch.calls) == 1  # retries are rate-limited
    fetch.sets[JWKS_URL] = {"keys": [public_jwk(rsa_key, "rsa-1")]}
    clock.now += 31
    assert verifier.verify(f"Bearer {sign(rsa_key, jti='3')}", AUD).iss == ISS


@pytest.mark.parametrize("answer", [{"nokeys": []}, {"keys": "x"}, ValueError("bad json")])
def test_jwks_not_a_key_set_rejected(
    trust_data: dict[str, Any], clock: Clock, rsa_key: Any, answer: Any
) -> None:
    fetch = FakeFetcher({JWKS_URL: answer})
    verifier = TokenVerifier(TrustStore.from_mapping(trust_data), fetch_jwks=fetch, clock=clock)
    assert reason_of(verifier, sign(rsa_key)) == Reason.JWKS_UNAVAILABLE


def test_jwks_refreshed_after_ttl_and_fails_closed(
    verifier: TokenVerifier, fetcher: FakeFetcher, rsa_key: Any, clock: Clock
) -> None:
    verifier.verify(f"Bearer {sign(rsa_key)}", AUD)
    clock.now += 301
    fetcher.sets[JWKS_URL] = OSError("down")
    token = sign(rsa_key, jti="2", iat=int(clock.now), exp=int(clock.now) + 60)
    assert reason_of(verifier, token) == Reason.JWKS_UNAVAILABLE
    assert fetcher.calls == [JWKS_URL, JWKS_URL]


def test_key_rotation_picks_up_new_kid(
    verifier: TokenVerifier, fetcher: FakeFetcher, rsa_key: Any, rsa_key_next: Any, clock: Clock
) -> None:
    verifier.verify(f"Bearer {sign(rsa_key)}", AUD)
    fetcher.sets[JWKS_URL] = {"keys": [public_jwk(rsa_key_next, "rsa-2")]}
    clock.now += 31
    token = sign(rsa_key_next, kid="rsa-2", jti="2", iat=int(clock.now))
    assert verifier.verify(f"Bearer {token}", AUD).kid == "rsa-2"
    assert fetcher.calls == [JWKS_URL, JWKS_URL]
    # The retired key is gone with the refreshed set.
    assert reason_of(verifier, sign(rsa_key, jti="3", iat=int(clock.now))) == Reason.KID_UNKNOWN


def test_fetched_jwks_bad_keys_skipped(
    trust_data: dict[str, Any], clock: Clock, rsa_key: Any, ec_key: Any
) -> None:
    private_jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key))
    fetch = FakeFetcher(
        {
            JWKS_URL: {
                "keys": [
                    {**private_jwk, "kid": "rsa-1"},  # private material: never used
                    {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
                    public_jwk(ec_key, "ec-1"),
                    public_jwk(ec_key, "twice"),
                    public_jwk(ec_key, "twice"),
                ]
            }
        }
    )
    verifier = TokenVerifier(TrustStore.from_mapping(trust_data), fetch_jwks=fetch, clock=clock)
    assert reason_of(verifier, sign(rsa_key)) == Reason.KID_UNKNOWN
    assert reason_of(verifier, sign(ec_key, "ES384", "twice", jti="2")) == Reason.KID_UNKNOWN
    assert verifier.verify(f"Bearer {sign(ec_key, 'ES384', 'ec-1', jti='3')}", AUD).iss == ISS


# --- replay cache bounds ----------------------------------------------------------------------


def test_replay_cache_stays_bounded(
    trust_data: dict[str, Any], fetcher: FakeFetcher, clock: Clock, rsa_key: Any
) -> None:
    verifier = TokenVerifier(
        TrustStore.from_mapping(trust_data),
        fetch_jwks=fetcher,
        clock=clock,
        max_replay_entries=3,
    )

    def fresh(jti: str) -> str:
        return sign(rsa_key, jti=jti, iat=int(clock.now), exp=int(clock.now) + 60)

    for n in range(3):
        verifier.verify(f"Bearer {fresh(f'a{n}')}", AUD)
    assert verifier.replay_entries == 3
    # Full of live entries: fail closed rather than forget a jti that could still be replayed.
    assert reason_of(verifier, fresh("b0")) == Reason.REPLAY_CACHE_FULL
    # Once those tokens can no longer pass the exp check, their entries are dropped.
    clock.now += 60 + 30 + 1
    for n in range(3):
        verifier.verify(f"Bearer {fresh(f'c{n}')}", AUD)
    assert verifier.replay_entries == 3


# --- logging ----------------------------------------------------------------------------------


def test_logs_carry_reason_but_no_token_or_jti(
    verifier: TokenVerifier, rsa_key: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="netboard.service.security")
    good = sign(rsa_key, jti="secret-jti-1")
    verifier.verify(f"Bearer {good}", AUD)
    with pytest.raises(AuthError):
        verifier.verify(f"Bearer {good}", AUD)
    bad_aud = sign(rsa_key, jti="secret-jti-2", aud="https://x.example.org")
    with pytest.raises(AuthError):
        verifier.verify(f"Bearer {bad_aud}", AUD)
    evil = sign(rsa_key, jti="secret-jti-3", iss="https://evil.example.org/<script>")
    with pytest.raises(AuthError) as info:
        verifier.verify(f"Bearer {evil}", AUD)
    assert "secret" not in str(info.value)
    text = caplog.text
    for token in (good, bad_aud, evil):
        for part in token.split("."):
            assert part not in text
    assert "secret-jti" not in text
    assert "evil.example.org" not in text  # an iss off the allowlist is not echoed
    assert "epic-client-id" not in text  # nor any other claim
    assert "reason=replay" in text
    assert "reason=aud_mismatch" in text
    assert f"iss={ISS}" in text
    assert " ms" in text


# --- HTTP wiring ------------------------------------------------------------------------------


def make_request(
    headers: list[tuple[bytes, bytes]], path: str = PATH, root_path: str = ""
) -> Request:
    return Request(
        {
            "type": "http",
            "method": "POST",
            "scheme": "http",
            "server": ("127.0.0.1", 8080),
            "path": path,
            "root_path": root_path,
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1:8080"), *headers],
        }
    )


def test_check_request_uses_trust_audience_base(verifier: TokenVerifier, rsa_key: Any) -> None:
    request = make_request([(b"authorization", f"Bearer {sign(rsa_key)}".encode())])
    result = asyncio.run(check_request(request, verifier, "https://ignored.example.org"))
    assert result.iss == ISS


def test_check_request_falls_back_to_public_base_then_request_url(
    trust_data: dict[str, Any], fetcher: FakeFetcher, clock: Clock, rsa_key: Any
) -> None:
    del trust_data["audience_base"]
    verifier = TokenVerifier(TrustStore.from_mapping(trust_data), fetch_jwks=fetcher, clock=clock)
    request = make_request([(b"authorization", f"Bearer {sign(rsa_key)}".encode())])
    assert asyncio.run(check_request(request, verifier, BASE)).iss == ISS
    local = make_request([(b"authorization", f"Bearer {sign(rsa_key, jti='2')}".encode())])
    with pytest.raises(AuthError) as info:
        asyncio.run(check_request(local, verifier, None))
    assert info.value.reason == Reason.AUD_MISMATCH
    token = sign(rsa_key, jti="3", aud="http://127.0.0.1:8080" + PATH)
    local = make_request([(b"authorization", f"Bearer {token}".encode())])
    assert asyncio.run(check_request(local, verifier, None)).iss == ISS


def test_check_request_refuses_two_authorization_headers(
    verifier: TokenVerifier, rsa_key: Any
) -> None:
    value = f"Bearer {sign(rsa_key)}".encode()
    request = make_request([(b"authorization", value), (b"authorization", value)])
    with pytest.raises(AuthError) as info:
        asyncio.run(check_request(request, verifier, None))
    assert info.value.reason == Reason.MALFORMED


def test_check_request_without_token_rejected(verifier: TokenVerifier) -> None:
    with pytest.raises(AuthError) as info:
        asyncio.run(check_request(make_request([]), verifier, None))
    assert info.value.reason == Reason.MISSING_TOKEN


def test_request_audience_under_root_path() -> None:
    request = make_request([], path="/netboard" + PATH, root_path="/netboard")
    assert request_audience(request, "https://h.example.org/netboard/") == (
        "https://h.example.org/netboard" + PATH
    )
    assert request_audience(request, None) == "http://127.0.0.1:8080/netboard" + PATH


def test_no_trust_file_allowed_only_on_loopback(caplog: pytest.LogCaptureFixture) -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        require_loopback_without_trust(host)
    assert "NOT authenticated" in caplog.text
    for host in ("0.0.0.0", "192.168.1.10", "cds.example.org", "::"):
        with pytest.raises(ConfigError):
            require_loopback_without_trust(host)


# --- the default fetcher ----------------------------------------------------------------------


def transport(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


def test_http_fetcher_returns_json(rsa_key: Any) -> None:
    jwks = {"keys": [public_jwk(rsa_key, "rsa-1")]}
    fetch = http_jwks_fetcher(transport=transport(lambda r: httpx.Response(200, json=jwks)))
    assert fetch(JWKS_URL) == jwks


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(500, json={}),
        httpx.Response(302, headers={"location": "https://evil.example.org/jwks"}),
        httpx.Response(200, content=b"not json"),
        httpx.Response(200, json=[1, 2]),
        httpx.Response(200, content=b" " * (security.MAX_JWKS_BYTES + 1)),
    ],
    ids=["server-error", "redirect", "not-json", "not-object", "too-large"],
)
def test_http_fetcher_failures_raise(response: httpx.Response) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return response

    fetch = http_jwks_fetcher(transport=transport(handler))
    with pytest.raises(Exception):  # noqa: B017, PT011  (any failure maps to jwks_unavailable)
        fetch(JWKS_URL)
    assert seen == [JWKS_URL]  # redirects are not followed


# --- the trust file ---------------------------------------------------------------------------


def problems_of(data: Any, base_dir: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        TrustStore.from_mapping(data, base_dir)
    return [str(p) for p in info.value.problems]


def test_trust_file_defaults(trust_data: dict[str, Any]) -> None:
    store = TrustStore.from_mapping(trust_data)
    assert (store.max_token_age_seconds, store.leeway_seconds) == (3600, 30)
    assert store.audience_base == BASE
    assert set(store.issuers) == {ISS, ISS_OOB}


def test_trust_file_yaml_with_relative_jwks_file(tmp_path: Path, oob_key: Any) -> None:
    (tmp_path / "keys.json").write_text(json.dumps({"keys": [public_jwk(oob_key, "oob-1")]}))
    (tmp_path / "trust.yaml").write_text(
        "audience_base: https://cds.example.org/\n"
        "leeway_seconds: 10\n"
        "issuers:\n"
        f"  - iss: {ISS_OOB}\n"
        "    jwks_file: keys.json\n"
        "    tenant: hospital-7\n"
    )
    store = TrustStore.from_file(tmp_path / "trust.yaml")
    assert store.audience_base == "https://cds.example.org"
    assert store.leeway_seconds == 10
    issuer = store.issuers[ISS_OOB]
    assert issuer.keys is not None
    assert set(issuer.keys) == {"oob-1"}
    assert issuer.tenant == TENANT


def test_trust_file_unknown_key_refused(trust_data: dict[str, Any]) -> None:
    trust_data["issuer"] = []
    trust_data["issuers"][0]["jku"] = JWKS_URL
    found = problems_of(trust_data)
    assert any(p.startswith("issuer: unknown key") for p in found)
    assert any(p.startswith("issuers[0].jku: only for pinned keys") for p in found)


def test_trust_file_missing_iss_refused() -> None:
    assert problems_of({"issuers": [{"jwks_url": JWKS_URL}]}) == [
        "issuers[0].iss: required: the issuer's iss value"
    ]


def test_trust_file_both_jwks_and_jwks_url_refused(trust_data: dict[str, Any]) -> None:
    trust_data["issuers"][1]["jwks_url"] = JWKS_URL
    assert problems_of(trust_data) == [
        "issuers[1]: give exactly one of jwks_url, jwks, jwks_file (found 2)"
    ]


def test_trust_file_no_key_source_refused() -> None:
    assert problems_of({"issuers": [{"iss": ISS}]}) == [
        "issuers[0]: give exactly one of jwks_url, jwks, jwks_file (found 0)"
    ]


@pytest.mark.parametrize(
    "url",
    [
        "http://ehr.example.org/jwks.json",
        "ftp://ehr.example.org/jwks.json",
        "file:///etc/passwd",
        "https:///jwks.json",
        "https://user:pw@ehr.example.org/jwks.json",
        "https://ehr.example.org/jwks.json#frag",
        "jwks.json",
    ],
)
def test_trust_file_bad_url_scheme_refused(url: str) -> None:
    found = problems_of({"issuers": [{"iss": ISS, "jwks_url": url}]})
    assert len(found) == 1
    assert found[0].startswith("issuers[0].jwks_url: must")


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9000/jwks.json", "http://localhost/jwks", "http://[::1]:80/j"]
)
def test_trust_file_http_allowed_for_loopback(url: str) -> None:
    assert TrustStore.from_mapping({"issuers": [{"iss": ISS, "jwks_url": url}]}).issuers


def test_trust_file_duplicate_iss_refused(trust_data: dict[str, Any]) -> None:
    trust_data["issuers"].append({"iss": ISS, "jwks_url": JWKS_URL})
    assert problems_of(trust_data) == [f"issuers[2].iss: duplicate issuer '{ISS}'"]


def test_trust_file_duplicate_yaml_key_refused(tmp_path: Path) -> None:
    path = tmp_path / "trust.yaml"
    path.write_text(f"issuers:\n  - iss: {ISS}\n    iss: {ISS_OOB}\n    jwks_url: {JWKS_URL}\n")
    with pytest.raises(ConfigError, match="duplicate key"):
        TrustStore.from_file(path)


def test_trust_file_duplicate_json_key_refused(tmp_path: Path) -> None:
    path = tmp_path / "trust.json"
    path.write_text('{"issuers": [], "issuers": []}')
    with pytest.raises(ConfigError, match="duplicate key"):
        TrustStore.from_file(path)


def test_trust_file_missing_file_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        TrustStore.from_file(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"max_token_age_seconds": 0}, "max_token_age_seconds"),
        ({"max_token_age_seconds": True}, "max_token_age_seconds"),
        ({"leeway_seconds": -1}, "leeway_seconds"),
        ({"leeway_seconds": 1.5}, "leeway_seconds"),
        ({"audience_base": "https://cds.example.org/?x=1"}, "audience_base"),
        ({"issuers": []}, "issuers"),
    ],
)
def test_trust_file_bad_settings_refused(
    trust_data: dict[str, Any], changes: dict[str, Any], field: str
) -> None:
    found = problems_of({**trust_data, **changes})
    assert [p.split(":")[0] for p in found] == [field]


def test_trust_file_unsafe_inline_keys_refused(rsa_key: Any) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    keys = [
        json.loads(RSAAlgorithm.to_jwk(rsa_key)) | {"kid": "private"},
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        public_jwk(weak, "weak"),
        public_jwk(rsa_key, "es", alg="ES384"),
        public_jwk(rsa_key, "enc", use="enc"),
        {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
    ]
    found = problems_of({"issuers": [{"iss": ISS, "jwks": {"keys": keys}}]})
    assert found == [
        "issuers[0].jwks.keys[0]: key 'private': contains private key material; "
        "give the public key only",
        "issuers[0].jwks.keys[1]: key 'hmac': kty must be RSA or EC (symmetric keys are refused)",
        "issuers[0].jwks.keys[2]: key 'weak': RSA key shorter than 2048 bits",
        "issuers[0].jwks.keys[3]: key 'es': alg 'ES384' does not fit this key "
        "(use PS256, PS384, PS512, RS256, RS384, RS512)",
        "issuers[0].jwks.keys[4]: key 'enc': use must be \"sig\"",
        "issuers[0].jwks.keys[5]: kid is required (a non-empty string)",
    ]


def test_trust_file_not_a_mapping_refused() -> None:
    assert problems_of(["issuers"]) == ["(trust file): must be a mapping with an issuers list"]


def test_sqlite_replay_cache_is_shared_between_verifiers(tmp_path: Path) -> None:
    """Two worker processes (two verifiers on one file) refuse each other's replays."""
    from netboard.service.security import SqliteReplayCache

    db = str(tmp_path / "replay.sqlite3")
    first, second = SqliteReplayCache(db, 10), SqliteReplayCache(db, 10)
    assert first.add("iss", "jti-1", until=200.0, now=100.0) is None
    assert second.add("iss", "jti-1", until=200.0, now=100.0) == Reason.REPLAY
    assert second.add("iss", "jti-2", until=150.0, now=100.0) is None
    assert len(first) == 2
    # Expired entries go; a full cache fails closed.
    assert first.add("iss", "jti-3", until=400.0, now=300.0) is None
    assert len(second) == 1
    small = SqliteReplayCache(str(tmp_path / "small.sqlite3"), 1)
    assert small.add("iss", "a", until=200.0, now=100.0) is None
    assert small.add("iss", "b", until=200.0, now=100.0) == Reason.REPLAY_CACHE_FULL
