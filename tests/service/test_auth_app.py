"""The running app with a trust file: every CDS Hooks call needs a valid JWT.

The issuer's key set is served by a real HTTP server on loopback, and the trust file is a real
file, so the whole path runs: trust file, JWKS fetch, verification, SQLite replay cache.
The attacks one by one are in ``test_security.py``; here the wiring is checked.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm

from netboard.service.app import Settings, create_app

PUBLIC = "https://cds.example.org"
ISS = "https://ehr.example.org/fhir"
HOOK = "/cds-services/netboard-net-plan"


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="module")
def jwks_url(key: ec.EllipticCurvePrivateKey) -> Iterator[str]:
    jwk = {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "ehr-1", "use": "sig"}
    body = json.dumps({"keys": [jwk]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/jwks.json"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, jwks_url: str) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("auth")
    trust = folder / "trust.yaml"
    trust.write_text(f"issuers:\n  - iss: {ISS}\n    jwks_url: {jwks_url}\n")
    settings = Settings(trust_file=str(trust), public_url=PUBLIC, data_dir=str(folder))
    with TestClient(create_app(settings)) as c:
        yield c


def token(key: Any, path: str, jwks_url: str, **changes: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISS,
        "aud": PUBLIC + path,
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
        **changes,
    }
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": "ehr-1", "jku": jwks_url})


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.mark.parametrize(
    ("method", "path"), [("get", "/cds-services"), ("post", HOOK), ("post", HOOK + "/feedback")]
)
def test_hook_routes_need_a_token(client: TestClient, method: str, path: str) -> None:
    r = client.request(method, path, json={})
    assert r.status_code == 401
    assert r.content == b""
    assert r.headers["www-authenticate"] == "Bearer"


def test_valid_token_is_accepted_once(client: TestClient, key: Any, jwks_url: str) -> None:
    t = token(key, "/cds-services", jwks_url)
    assert client.get("/cds-services", headers=bearer(t)).status_code == 200
    replay = client.get("/cds-services", headers=bearer(t))
    assert replay.status_code == 401
    assert replay.content == b""


def test_token_for_another_endpoint_is_refused(client: TestClient, key: Any, jwks_url: str) -> None:
    t = token(key, "/cds-services", jwks_url)
    assert client.post(HOOK, json={}, headers=bearer(t)).status_code == 401


def test_hook_call_with_a_valid_token_gets_cards(
    client: TestClient, key: Any, jwks_url: str
) -> None:
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/1", "patientId": "p1"},
        "prefetch": {
            "patient": {"resourceType": "Patient", "id": "p1", "gender": "female"},
            "conditions": {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [
                    {
                        "resource": {
                            "resourceType": "Condition",
                            "id": "net",
                            "subject": {"reference": "Patient/p1"},
                            "code": {
                                "coding": [
                                    {
                                        "system": "http://hl7.org/fhir/sid/icd-10-cm",
                                        "code": "C7A.012",
                                    }
                                ]
                            },
                        }
                    }
                ],
            },
        },
    }
    r = client.post(HOOK, json=body, headers=bearer(token(key, HOOK, jwks_url)))
    assert r.status_code == 200, r.text
    assert r.json()["cards"]


def test_hmac_token_signed_with_the_public_key_is_refused(
    client: TestClient, key: Any, jwks_url: str
) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {
        "iss": ISS,
        "aud": PUBLIC + "/cds-services",
        "exp": int(time.time()) + 300,
        "iat": int(time.time()),
        "jti": str(uuid.uuid4()),
    }
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "kid": "ehr-1", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims).encode())
    mac = hmac.new(pem, f"{head}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{head}.{payload}.{b64(mac)}"
    assert client.get("/cds-services", headers=bearer(forged)).status_code == 401


def test_contract_api_and_health_do_not_need_a_token(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.post("/v1/recommend", json={"primary_site": "ileum"}).status_code == 200


def test_logs_never_carry_the_token(
    client: TestClient, key: Any, jwks_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    t = token(key, "/cds-services", jwks_url, aud="https://elsewhere.example.org/cds-services")
    with caplog.at_level(logging.DEBUG):
        assert client.get("/cds-services", headers=bearer(t)).status_code == 401
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "aud" in text
    for part in t.split("."):
        assert part not in text


def test_replay_cache_is_in_sqlite_in_the_data_directory(client: TestClient) -> None:
    settings: Settings = client.app.state.settings  # type: ignore[attr-defined]
    assert Path(settings.file("replay.sqlite3")).exists()
