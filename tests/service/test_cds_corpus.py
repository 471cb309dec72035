"""CDS Hooks on the public example corpus: the NEN gate, real-sized charts, conformance.

patient-view runs on every chart: a patient without a neuroendocrine neoplasm gets
``{"cards": []}``; a presumed NEN gets a warning saying so; a real-sized chart (over 1 MB of
prefetch) is answered; the missing-data card stays small; an OperationOutcome in a prefetch
key is fetched again or named; the fhirServer queries are percent-encoded; browsers of the
allowed origins get CORS headers; feedback follows the specification's SHALLs.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from corpus_charts import (
    ICD10CM,
    entries,
    for_patient,
    load,
    non_nen_charts,
    nsclc_primary,
    recoded,
    synthea,
    synthea_patient,
)
from netboard.service.app import Settings, create_app

from .cds_schemas import RESPONSE, validate
from .test_cds_hooks import FhirServer

SERVICE = "/cds-services/netboard-net-plan"
NON_NEN = non_nen_charts()


def hook(pid: str, prefetch: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/dr-1", "patientId": pid},
        **extra,
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def as_prefetch(chart: list[dict[str, Any]], pid: str) -> dict[str, Any]:
    """A chart as an EHR fills netboard's prefetch keys (one searchset per resource type)."""
    keys = {
        "Condition": "conditions",
        "Observation": "observations",
        "MedicationRequest": "medicationRequests",
        "MedicationStatement": "medicationStatements",
        "MedicationAdministration": "medicationAdministrations",
        "Procedure": "procedures",
        "List": "lists",
    }
    out: dict[str, Any] = {k: None for k in keys.values()}
    out["patient"] = next(
        (r for r in chart if r["resourceType"] == "Patient" and r["id"] == pid),
        {"resourceType": "Patient", "id": pid},
    )
    for r in chart:
        key = keys.get(r["resourceType"])
        if key is None:
            continue
        if out[key] is None:
            out[key] = {"resourceType": "Bundle", "type": "searchset", "entry": []}
        out[key]["entry"].append({"resource": r})
    return out


def today_shift(chart: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chart's dates moved so that the corpus date (2026-03-01) is today."""
    days = (dt.date.today() - synthea.TODAY).days
    text = json.dumps(chart)
    out = json.loads(text)
    for r in out:
        for key in ("effectiveDateTime", "issued", "onsetDateTime", "recordedDate"):
            value = r.get(key)
            if isinstance(value, str) and len(value) >= 10:
                moved = dt.date.fromisoformat(value[:10]) + dt.timedelta(days=days)
                r[key] = moved.isoformat() + value[10:]
    return out


def net_chart() -> tuple[list[dict[str, Any]], str]:
    return today_shift(synthea_patient(synthea.NET)), synthea.NET


@pytest.mark.parametrize(("name", "chart", "pid"), NON_NEN, ids=[n for n, _, _ in NON_NEN])
def test_no_cards_without_a_neuroendocrine_neoplasm(
    client: TestClient, name: str, chart: list[dict[str, Any]], pid: str | None
) -> None:
    pid = pid or next(r["id"] for r in chart if r["resourceType"] == "Patient")
    r = client.post(SERVICE, json=hook(pid, as_prefetch(chart, pid)))
    assert r.status_code == 200, r.text
    assert r.json() == {"cards": []}, name


def test_false_positive_rate_of_the_service_over_the_corpus_is_zero(client: TestClient) -> None:
    carded = []
    for name, chart, pid in NON_NEN:
        pid = pid or next(r["id"] for r in chart if r["resourceType"] == "Patient")
        if client.post(SERVICE, json=hook(pid, as_prefetch(chart, pid))).json()["cards"]:
            carded.append(name)
    assert carded == []


def test_a_presumed_nen_gets_a_warning_card_saying_so(client: TestClient) -> None:
    chart = entries("mcode/nsclc-john-anyperson.json")[:1]
    chart.append(recoded(nsclc_primary(), (ICD10CM, "C34.90", "Malignant neoplasm of lung"), None))
    pid = chart[0]["id"]
    body = client.post(SERVICE, json=hook(pid, as_prefetch(chart, pid))).json()
    validate(RESPONSE, body)
    warning = body["cards"][0]
    assert warning["indicator"] == "warning"
    assert "presumes a neuroendocrine neoplasm" in warning["summary"]
    assert "C34.90" in warning["detail"]
    assert any(c["summary"].startswith("netboard plan") for c in body["cards"])


def test_the_nen_patient_gets_cards_and_a_small_missing_data_card(client: TestClient) -> None:
    chart, pid = net_chart()
    body = client.post(SERVICE, json=hook(pid, as_prefetch(chart, pid))).json()
    validate(RESPONSE, body)
    cards = body["cards"]
    assert any(c["summary"].startswith("netboard plan") for c in cards)
    (missing,) = [c for c in cards if "missing data" in c["summary"] or "could not" in c["summary"]]
    detail = missing["detail"]
    record_part = detail[detail.index("**Found in the record") :]
    assert len(record_part) < 1500  # grouped and counted, not 46 lines
    assert "Viral sinusitis" not in detail
    assert "employment" not in detail.lower()
    assert "other record items" in detail
    # the 2007 platelet count is named with its date, grouped under its field
    assert "**platelets** (1): platelets from 20" in detail


def test_a_real_sized_chart_over_1_mb_is_answered(client: TestClient) -> None:
    prefetch = synthea.large_chart()
    size = len(json.dumps(prefetch).encode())
    assert size > 1_100_000
    r = client.post(SERVICE, json=hook(synthea.NET, prefetch))
    assert r.status_code == 200, r.text[:300]
    cards = r.json()["cards"]
    assert cards
    (missing,) = [c for c in cards if "missing data" in c["summary"]]
    record_part = missing["detail"][missing["detail"].index("other record items") - 10 :]
    assert len(record_part) < 300
    assert (
        "1721 other record items" in missing["detail"]
    )  # 300 findings, 221 orders, 1200 procedures


def test_the_hook_limit_is_tens_of_mb_and_the_rest_stays_small(client: TestClient) -> None:
    big = b'{"hook": "patient-view", "pad": "' + b"x" * 33_000_000 + b'"}'
    json_type = {"Content-Type": "application/json"}
    assert client.post(SERVICE, content=big, headers=json_type).status_code == 413
    small = b'{"pad": "' + b"x" * 1_100_000 + b'"}'
    assert client.post("/v1/recommend", content=small, headers=json_type).status_code == 413


def test_an_operation_outcome_in_an_optional_key_is_named_on_the_card(client: TestClient) -> None:
    chart, pid = net_chart()
    prefetch = as_prefetch(chart, pid)
    prefetch["medicationRequests"] = load("r4-core/operationoutcome-example.json")
    body = client.post(SERVICE, json=hook(pid, prefetch)).json()
    text = json.dumps(body)
    assert "The EHR could not give the record's medicationRequests" in text


def test_an_operation_outcome_in_a_required_key_is_412(client: TestClient) -> None:
    chart, pid = net_chart()
    prefetch = as_prefetch(chart, pid)
    prefetch["conditions"] = load("r4-core/operationoutcome-example.json")
    r = client.post(SERVICE, json=hook(pid, prefetch))
    assert r.status_code == 412
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "conditions" in outcome["issue"][0]["diagnostics"]


def test_an_operation_outcome_is_fetched_again_from_the_fhir_server(
    app_settings: Settings,
) -> None:
    from dataclasses import replace

    chart, pid = net_chart()
    server = FhirServer({"resourceType": "Bundle", "entry": [{"resource": r} for r in chart]})
    # fhirServer is fetched from only when it is on the allowlist (--fhir-server).
    app = create_app(replace(app_settings, fhir_servers=(server.url,)))
    try:
        with TestClient(app) as client:
            prefetch = as_prefetch(chart, pid)
            prefetch["conditions"] = load("r4-core/operationoutcome-example.json")
            del prefetch["observations"]
            r = client.post(SERVICE, json=hook(pid, prefetch, fhirServer=server.url))
        assert r.status_code == 200, r.text
        asked = [p for p, _ in server.requests]
        assert any(p.startswith("/fhir/Condition?patient=") for p in asked)
        # the queries are percent-encoded: the | between system and code is %7C
        (obs,) = [p for p in asked if p.startswith("/fhir/Observation?")]
        assert "http://loinc.org%7C29593-1" in obs
        assert "|" not in obs
        assert r.json()["cards"]
    finally:
        server.close()


@pytest.fixture(scope="module")
def cors_client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("cors")
    settings = Settings(data_dir=str(folder), cors_origins=("https://sandbox.cds-hooks.org",))
    with TestClient(create_app(settings)) as c:
        yield c


def test_cors_answers_the_allowed_origin_only(cors_client: TestClient) -> None:
    preflight = {
        "Origin": "https://sandbox.cds-hooks.org",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    r = cors_client.options(SERVICE, headers=preflight)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://sandbox.cds-hooks.org"
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    other = cors_client.get("/cds-services", headers={"Origin": "https://evil.example.org"})
    assert "access-control-allow-origin" not in other.headers
    allowed = cors_client.get("/cds-services", headers={"Origin": preflight["Origin"]})
    assert allowed.headers["access-control-allow-origin"] == preflight["Origin"]


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"outcome": "accepted"}, "acceptedSuggestions"),
        ({"outcome": "overridden", "outcomeTimestamp": "2026-03-01"}, "outcomeTimestamp"),
        (
            {"outcome": "overridden", "outcomeTimestamp": "2026-03-01T10:00:00"},
            "outcomeTimestamp",
        ),
        (
            {"outcome": "accepted", "acceptedSuggestions": [{"id": "s"}], "overrideReason": {}},
            "overrideReason",
        ),
        (
            {"outcome": "overridden", "overrideReason": {"userComment": 7}},
            "overrideReason.userComment",
        ),
    ],
)
def test_feedback_follows_the_specification(
    client: TestClient, entry: dict[str, Any], field: str
) -> None:
    item = {"card": str(uuid.uuid4()), "outcomeTimestamp": "2026-03-01T10:00:00Z", **entry}
    r = client.post(f"{SERVICE}/feedback", json={"feedback": [item]})
    assert r.status_code == 422
    assert any(p["field"].endswith(field) for p in r.json()["problems"]), r.json()


def test_openapi_names_the_security_scheme_servers_and_card_schema(tmp_path: Any) -> None:
    settings = Settings(data_dir=str(tmp_path), public_url="https://cds.x.org")
    with TestClient(create_app(settings)) as c:
        doc = c.get("/openapi.json").json()
    assert doc["servers"] == [{"url": "https://cds.x.org"}]
    assert doc["components"]["securitySchemes"]["cdsHooksJwt"]["bearerFormat"] == "JWT"
    ok = doc["paths"][SERVICE]["post"]["responses"]["200"]["content"]["application/json"]
    card = ok["schema"]["properties"]["cards"]["items"]
    assert card["properties"]["indicator"]["enum"] == ["info", "warning", "critical"]


def test_the_report_link_lists_what_the_card_leaves_out(client: TestClient) -> None:
    chart, pid = net_chart()
    body = client.post(SERVICE, json=hook(pid, as_prefetch(chart, pid))).json()
    link = body["cards"][0]["links"][0]["url"].replace("http://testserver", "")
    html = client.get(link).text
    assert "FHIR input not used" in html
    assert "Viral sinusitis" in html


def test_old_observations_do_not_make_critical_cards(client: TestClient) -> None:
    """A 2022 pregnancy status makes no 'PRRT contraindicated' card years later."""
    chart, pid = net_chart()
    chart[0]["gender"] = "female"
    chart.append(for_patient(load("us-core/observation-pregnancy-status.json"), pid))
    body = client.post(SERVICE, json=hook(pid, as_prefetch(chart, pid))).json()
    assert not [c for c in body["cards"] if c["indicator"] == "critical"]
    assert "pregnancy from 2022-08-24 is 4 years old" in json.dumps(body)
