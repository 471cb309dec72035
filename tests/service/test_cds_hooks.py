"""CDS Hooks 2.0: discovery, the patient-view service, prefetch or fhirServer, feedback."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from conftest import ROOT, SHARED
from fhir_bundles import bundle_for_case, prefetch_for
from netboard.case import load_case
from netboard.engine.recommend import recommend
from netboard.kb import KnowledgeBase
from netboard.service.app import Settings, create_app

from .cds_schemas import DISCOVERY, FEEDBACK, RESPONSE, validate

SERVICE = "/cds-services/netboard-net-plan"
PUBLIC = [
    p
    for p in sorted((SHARED / "cases").glob("*.yaml"))
    if (yaml.safe_load(p.read_text(encoding="utf-8")).get("case"))
]


def case_of(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))["case"]
    return case


def templates(client: TestClient) -> dict[str, str]:
    found: dict[str, str] = client.get("/cds-services").json()["services"][0]["prefetch"]
    return found


def hook_request(patient_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/dr-1", "patientId": patient_id},
        **extra,
    }


def patient_id_of(bundle: Mapping[str, Any]) -> str:
    for e in bundle["entry"]:
        if e["resource"]["resourceType"] == "Patient":
            return str(e["resource"]["id"])
    raise AssertionError("bundle without a Patient")


def test_discovery_follows_the_spec(client: TestClient) -> None:
    doc = client.get("/cds-services").json()
    validate(DISCOVERY, doc)
    (service,) = doc["services"]
    assert service["id"] == "netboard-net-plan"
    assert service["hook"] == "patient-view"
    for key in ("patient", "conditions"):
        assert "{{context.patientId}}" in service["prefetch"][key]


@pytest.mark.parametrize("path", PUBLIC, ids=lambda p: p.stem)
def test_hook_answers_like_the_structured_case(
    client: TestClient, kb: KnowledgeBase, path: Path
) -> None:
    case = case_of(path)
    bundle = bundle_for_case(case, today=date.today())
    pid = patient_id_of(bundle)
    r = client.post(
        SERVICE, json=hook_request(pid, prefetch=prefetch_for(bundle, templates(client)))
    )
    assert r.status_code == 200, r.text
    body = r.json()
    validate(RESPONSE, body)
    expected = recommend(load_case(case), kb=kb)
    cards = body["cards"]
    plan = [c for c in cards if c["summary"].startswith("netboard plan")]
    assert len(plan) == 1
    # The linked full report is the same answer as the structured case's.
    link = plan[0]["links"][0]["url"]
    report = client.get(link.replace("http://testserver", ""))
    assert report.status_code == 200
    codes = re.findall(r'data-code="([a-z_]+)" data-status="([a-z_]+)"', report.text)
    assert codes == [(x.code.value, x.status.value) for x in expected.recommendations]
    # Warning and critical alerts have cards of their own, with their indicator.
    severe = sorted((a.severity.value, a.message) for a in expected.alerts if a.severity != "info")
    alert_cards = sorted((c["indicator"], c["detail"]) for c in cards if c["indicator"] != "info")
    assert [s for s, _ in severe] == [s for s, _ in alert_cards]
    for card in cards:
        assert kb.version in card["source"]["label"]
        assert card["source"]["url"].endswith("/about")


def test_missing_data_card_names_fields_and_suggests_orders(client: TestClient) -> None:
    case = {"id": "p-sparse", "primary_site": "ileum", "metastatic_sites": ["liver"]}
    bundle = bundle_for_case(case, today=date.today())
    pid = patient_id_of(bundle)
    body = client.post(
        SERVICE, json=hook_request(pid, prefetch=prefetch_for(bundle, templates(client)))
    ).json()
    validate(RESPONSE, body)
    missing = [c for c in body["cards"] if "missing data" in c["summary"]]
    assert len(missing) == 1
    assert "`ki67_percent`" in missing[0]["detail"]
    suggestions = missing[0]["suggestions"]
    assert missing[0]["selectionBehavior"] == "any"
    ordered = {s["actions"][0]["resource"]["code"]["coding"][0]["code"] for s in suggestions}
    assert "29593-1" in ordered  # Ki-67, from the FHIR mapping table
    for s in suggestions:
        request = s["actions"][0]["resource"]
        assert request["subject"]["reference"] == f"Patient/{pid}"
        assert (request["status"], request["intent"]) == ("draft", "proposal")


def test_prefetch_absent_without_fhir_server_is_412(client: TestClient) -> None:
    r = client.post(SERVICE, json=hook_request("p1"))
    assert r.status_code == 412
    assert r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"hook": "order-select", "hookInstance": "x", "context": {}}, "hook"),
        ({"hook": "patient-view", "context": {"userId": "Practitioner/1"}}, "context.patientId"),
        ({"hook": "patient-view", "hookInstance": "x"}, "context"),
        (
            {
                "hook": "patient-view",
                "hookInstance": "x",
                "context": {"userId": "Practitioner/1", "patientId": "p"},
                "fhirAuthorization": {"access_token": "t", "token_type": "Bearer"},
            },
            "fhirAuthorization",
        ),
        (
            {
                "hook": "patient-view",
                "hookInstance": "x",
                "context": {"userId": "Practitioner/1", "patientId": "p"},
                "prefetch": [],
            },
            "prefetch",
        ),
    ],
)
def test_bad_hook_request_is_422(client: TestClient, body: dict[str, Any], field: str) -> None:
    r = client.post(SERVICE, json=body)
    assert r.status_code == 422
    assert field in [p["field"] for p in r.json()["problems"]]


# --- fetching from fhirServer: a real HTTP FHIR server on loopback ----------------------------


class FhirServer:
    """A small FHIR read/search server over a bundle, recording what it was asked."""

    def __init__(self, bundle: Mapping[str, Any], *, delay: float = 0.0, status: int = 200):
        self.resources = [e["resource"] for e in bundle["entry"]]
        self.delay = delay
        self.status = status
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append((self.path, self.headers.get("Authorization")))
                time.sleep(outer.delay)
                body = json.dumps(outer.answer(self.path)).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, path: str) -> Any:
        path = path.removeprefix("/fhir/")
        rtype, _, rest = path.partition("?") if "?" in path else path.partition("/")
        if "?" not in path:  # a read: Type/id
            found = [r for r in self.resources if r["resourceType"] == rtype and r["id"] == rest]
            return found[0] if found else {"resourceType": "OperationOutcome", "issue": []}
        entries = [{"resource": r} for r in self.resources if r["resourceType"] == rtype]
        return {"resourceType": "Bundle", "type": "searchset", "entry": entries}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def sigmoid_bundle() -> dict[str, Any]:
    case = yaml.safe_load((ROOT / "examples" / "sigmoid.yaml").read_text())
    return bundle_for_case(case, today=date.today())


@pytest.fixture
def fhir_server(sigmoid_bundle: dict[str, Any]) -> Iterator[FhirServer]:
    server = FhirServer(sigmoid_bundle)
    yield server
    server.close()


@pytest.fixture
def fetching(app_settings: Settings, fhir_server: FhirServer) -> Iterator[TestClient]:
    """The app with the stub FHIR server on its allowlist (``--fhir-server``)."""
    from dataclasses import replace

    app = create_app(replace(app_settings, fhir_servers=(fhir_server.url,)))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_without_prefetch_the_service_fetches_from_fhir_server(
    fetching: TestClient, fhir_server: FhirServer, sigmoid_bundle: dict[str, Any]
) -> None:
    client = fetching
    pid = patient_id_of(sigmoid_bundle)
    auth = {"access_token": "abc.def", "token_type": "Bearer", "scope": "patient/*.read"}
    fetched = client.post(
        SERVICE, json=hook_request(pid, fhirServer=fhir_server.url, fhirAuthorization=auth)
    )
    assert fetched.status_code == 200, fetched.text
    assert fhir_server.requests
    assert all(a == "Bearer abc.def" for _, a in fhir_server.requests)
    prefetched = client.post(
        SERVICE, json=hook_request(pid, prefetch=prefetch_for(sigmoid_bundle, templates(client)))
    )

    def summaries(r: Any) -> list[str]:
        return [c["summary"] for c in r.json()["cards"]]

    assert summaries(fetched) == summaries(prefetched)


def test_partial_prefetch_is_completed_from_fhir_server(
    fetching: TestClient, fhir_server: FhirServer, sigmoid_bundle: dict[str, Any]
) -> None:
    client = fetching
    pid = patient_id_of(sigmoid_bundle)
    prefetch = prefetch_for(sigmoid_bundle, templates(client))
    kept = {"patient": prefetch["patient"]}
    r = client.post(SERVICE, json=hook_request(pid, prefetch=kept, fhirServer=fhir_server.url))
    assert r.status_code == 200
    asked = {p.split("?")[0].split("/")[2] for p, _ in fhir_server.requests}
    assert "Patient" not in asked
    assert "Condition" in asked


@pytest.mark.parametrize(("delay", "status"), [(2.0, 200), (0.0, 500)])
def test_fhir_server_slow_or_failing_gives_412(
    app_settings: Settings, sigmoid_bundle: dict[str, Any], delay: float, status: int
) -> None:
    from dataclasses import replace

    server = FhirServer(sigmoid_bundle, delay=delay, status=status)
    try:
        app = create_app(
            replace(app_settings, fhir_timeout_seconds=0.5, fhir_servers=(server.url,))
        )
        with TestClient(app) as c:
            started = time.monotonic()
            r = c.post(
                SERVICE,
                json=hook_request(patient_id_of(sigmoid_bundle), fhirServer=server.url),
            )
            assert time.monotonic() - started < 1.9
        assert r.status_code == 412
        assert r.json()["issue"][0]["diagnostics"]
    finally:
        server.close()


# --- feedback -------------------------------------------------------------------------------


def test_feedback_is_recorded_without_patient_data(
    client: TestClient, app_settings: Settings, sigmoid_bundle: dict[str, Any]
) -> None:
    pid = patient_id_of(sigmoid_bundle)
    cards = client.post(
        SERVICE, json=hook_request(pid, prefetch=prefetch_for(sigmoid_bundle, templates(client)))
    ).json()["cards"]
    plan = next(c for c in cards if c["summary"].startswith("netboard plan"))
    body = {
        "feedback": [
            {
                "card": plan["uuid"],
                "outcome": "overridden",
                "overrideReason": {
                    "reason": plan["overrideReasons"][0],
                    "userComment": "Mr Example prefers to wait",
                },
                "outcomeTimestamp": "2026-11-21T10:00:00Z",
            }
        ]
    }
    validate(FEEDBACK, body)
    r = client.post(f"{SERVICE}/feedback", json=body)
    assert r.status_code == 200, r.text
    with sqlite3.connect(app_settings.file("feedback.sqlite3")) as db:
        row = db.execute(
            "SELECT f.outcome, f.override_code, f.had_comment, c.kind FROM feedback f "
            "JOIN cards c ON c.uuid = f.card WHERE f.card = ?",
            (plan["uuid"],),
        ).fetchone()
        dump = "\n".join(db.iterdump())
    assert row == ("overridden", plan["overrideReasons"][0]["code"], 1, "plan")
    assert "Mr Example" not in dump
    assert pid not in dump


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "feedback"),
        (
            {"feedback": [{"outcome": "accepted", "outcomeTimestamp": "2026-11-21"}]},
            "feedback[0].card",
        ),
        (
            {"feedback": [{"card": "c", "outcome": "maybe", "outcomeTimestamp": "2026-11-21"}]},
            "feedback[0].outcome",
        ),
        (
            {"feedback": [{"card": "c", "outcome": "accepted", "outcomeTimestamp": "soon"}]},
            "feedback[0].outcomeTimestamp",
        ),
    ],
)
def test_bad_feedback_is_422(client: TestClient, body: dict[str, Any], field: str) -> None:
    r = client.post(f"{SERVICE}/feedback", json=body)
    assert r.status_code == 422
    assert field in [p["field"] for p in r.json()["problems"]]


def test_report_links_expire_and_unknown_ones_are_404(client: TestClient) -> None:
    assert client.get("/reports/not-a-token").status_code == 404


@pytest.mark.parametrize("path", PUBLIC, ids=lambda p: p.stem)
def test_the_plan_card_is_the_board_answer_in_brief(
    client: TestClient, kb: KnowledgeBase, path: Path
) -> None:
    from netboard.service.cds_hooks import PLAN_DETAIL_LIMIT

    case = case_of(path)
    bundle = bundle_for_case(case, today=date.today())
    pid = patient_id_of(bundle)
    body = client.post(
        SERVICE, json=hook_request(pid, prefetch=prefetch_for(bundle, templates(client)))
    ).json()
    (card,) = [c for c in body["cards"] if c["summary"].startswith("netboard plan")]
    detail = card["detail"]
    assert len(card["summary"]) <= 140
    assert len(detail) <= PLAN_DETAIL_LIMIT + 200
    expected = recommend(load_case(case), kb=kb)
    # The plan is numbered in the board's order, and the card says what it presumed.
    numbered = re.findall(r"^(\d+)\. ", detail, flags=re.M)
    assert [int(n) for n in numbered] == [st.order for st in expected.plan]
    assert ("**Presumed**" in detail) == bool(expected.presumptions)
    # Every number cited on the card is listed in its sources, numbered as in the report.
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", detail.split("**Sources**")[0])}
    listed = {int(n) for n in re.findall(r"\[(\d+)\] ", detail.split("**Sources**")[-1])}
    assert cited <= listed
    # No rule ids or field names in the clinician's view.
    assert not re.search(r"\b[a-z]+_[a-z_]+\b", detail)
