"""The HTTP API: the same answers as the CLI, and clean errors for every bad request."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from conftest import ANSWER_KEYS, ROOT, SHARED
from netboard.case import load_case
from netboard.engine.recommend import recommend
from netboard.kb import KnowledgeBase

PUBLIC = sorted((SHARED / "cases").glob("*.yaml"))
OWN = sorted((ROOT / "tests" / "vignettes").glob("*.yaml"))


def vignette_case(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    case: dict[str, Any] = data.get("case") or {}
    return case


def test_healthz(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.text == "ok\n"


@pytest.mark.parametrize("path", PUBLIC + OWN[:10], ids=lambda p: p.stem)
def test_recommend_gives_the_cli_answer(client: TestClient, kb: KnowledgeBase, path: Path) -> None:
    case = vignette_case(path)
    if not case:
        pytest.skip("question-only vignette")
    r = client.post("/v1/recommend", json=case)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) >= ANSWER_KEYS
    assert body == recommend(load_case(case), kb=kb).to_dict()


@pytest.mark.parametrize(
    ("accept", "media", "marker"),
    [
        ("text/markdown", "text/markdown", "# netboard"),
        ("text/html", "text/html", "<!DOCTYPE html>"),
        ("application/json", "application/json", '"contract_version"'),
        ("*/*", "application/json", '"contract_version"'),
        ("text/html;q=0.9, text/markdown", "text/html", "<!DOCTYPE html>"),
    ],
)
def test_recommend_formats_by_accept(
    client: TestClient, accept: str, media: str, marker: str
) -> None:
    case = yaml.safe_load((ROOT / "examples" / "sigmoid.yaml").read_text())
    r = client.post("/v1/recommend", json=case, headers={"Accept": accept})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(media)
    assert marker in r.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"ki67_percent": 140}', "ki67_percent"),
        (b'{"primary_site": "liver"}', "primary_site"),
        (b'{"primary_sight": "ileum"}', "primary_sight"),
        (b'{"labs": {"platelets": 100}}', "labs.platelets"),
        (b'{"sex": "male", "pregnant": true}', "pregnant"),
        (b'{"ki67_percent": 5, "ki67_percent": 6}', "(body)"),
        (b'{"ki67_percent": NaN}', "(body)"),
        (b"[1, 2]", "(body)"),
        (b"primary_site: ileum", "(body)"),
        (b"", "(body)"),
        (b"\xff\xfe{}", "(body)"),
        (b'{"ki67_percent": ', "(body)"),
        (b"[" * 50_000, "(body)"),
    ],
)
def test_bad_case_gets_422_with_problems(client: TestClient, body: bytes, field: str) -> None:
    r = client.post("/v1/recommend", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    problems = r.json()["problems"]
    assert problems
    assert all(set(p) == {"field", "message"} for p in problems)
    assert field in [p["field"] for p in problems]
    assert "Traceback" not in r.text


def test_every_problem_is_listed(client: TestClient) -> None:
    r = client.post("/v1/recommend", json={"ki67_percent": -1, "ecog": 7, "sex": "x"})
    assert r.status_code == 422
    assert sorted(p["field"] for p in r.json()["problems"]) == ["ecog", "ki67_percent", "sex"]


def test_body_over_the_limit_gets_413(client: TestClient) -> None:
    big = b'{"id": "' + b"x" * 1_000_001 + b'"}'
    r = client.post("/v1/recommend", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["problems"][0]["field"] == "(body)"


def test_chunked_body_over_the_limit_gets_413(client: TestClient) -> None:
    def chunks():  # no Content-Length: the limit is counted as the body streams in
        for _ in range(20):
            yield b"x" * 100_000

    r = client.post("/v1/recommend", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_unknown_route_404_and_wrong_method_405(client: TestClient) -> None:
    assert client.get("/v1/nothing").status_code == 404
    assert client.get("/v1/recommend").status_code == 405


def test_server_error_is_500_without_details(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import netboard.service.app as app_module

    def boom(data: Any) -> Any:
        raise RuntimeError("secret internal state")

    monkeypatch.setattr(app_module, "load_case", boom)
    with caplog.at_level(logging.ERROR, logger="netboard.service"):
        r = client.post("/v1/recommend", json={"ki67_percent": 3})
    assert r.status_code == 500
    assert "secret" not in r.text
    assert "Traceback" not in r.text
    assert r.json()["problems"][0]["field"] == "(server)"


def test_ask_answers_free_text(client: TestClient) -> None:
    text = "stage 4 NET of the sigmoid with liver metastases, Ki-67 8 %"
    r = client.post("/v1/ask", json={"text": text})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= ANSWER_KEYS
    assert body["parsed_case"]["primary_site"] == "sigmoid_colon"
    assert body["parsed_case"]["ki67_percent"] == 8
    assert "unparsed" in body
    md = client.post("/v1/ask", json={"text": text}, headers={"Accept": "text/markdown"})
    assert md.headers["content-type"].startswith("text/markdown")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "text"),
        ({"text": ""}, "text"),
        ({"text": "   "}, "text"),
        ({"text": 5}, "text"),
        ({"text": "ileal NET", "case": {}}, "case"),
        ({"text": "x" * 100_001}, "text"),
    ],
)
def test_bad_ask_gets_422(client: TestClient, body: dict[str, Any], field: str) -> None:
    r = client.post("/v1/ask", json=body)
    assert r.status_code == 422
    assert field in [p["field"] for p in r.json()["problems"]]


def test_openapi_document_lists_the_contract_routes(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    for path, method in [
        ("/v1/recommend", "post"),
        ("/v1/ask", "post"),
        ("/cds-services", "get"),
        ("/cds-services/netboard-net-plan", "post"),
        ("/", "get"),
        ("/healthz", "get"),
    ]:
        assert method in paths[path], path
    body = paths["/v1/recommend"]["post"]["requestBody"]["content"]["application/json"]
    assert "ki67_percent" in body["schema"]["properties"]


def test_about_gives_the_source_attributes(client: TestClient, kb: KnowledgeBase) -> None:
    data = client.get("/about").json()
    assert data["knowledge_base"]["version"] == kb.version
    for key in ("developer", "funding", "intended_use", "inputs", "bibliographic_citations"):
        assert data[key], key
    assert data["inputs"]["race"] is False


def test_logs_carry_rule_ids_and_timings_not_patient_values(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    case = {"id": "patient-7f3a", "primary_site": "ileum", "ki67_percent": 3.7, "age_years": 61}
    with caplog.at_level(logging.DEBUG):
        assert client.post("/v1/recommend", json=case).status_code == 200
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "rules=" in text
    assert re.search(r"POST /v1/recommend 200 [\d.]+ ms rules=", text), text
    for value in ("patient-7f3a", "3.7", "ileum", "61"):
        assert value not in text, value


def test_json_answer_is_deterministic(client: TestClient) -> None:
    case = yaml.safe_load((ROOT / "examples" / "pancreas-tail.yaml").read_text())
    a = client.post("/v1/recommend", json=case).content
    b = client.post("/v1/recommend", json=case).content
    assert a == b
    assert json.loads(a)["case_id"] == case.get("id")


def test_cached_answers_are_byte_identical_and_keyed_by_exact_body(
    client: TestClient, kb: KnowledgeBase
) -> None:
    bodies = [b'{"primary_site": "ileum", "ki67_percent": 8}'] * 2
    bodies.append(b'{"primary_site": "ileum", "ki67_percent": 8.0}')
    json_type = {"Content-Type": "application/json"}
    first, again, as_float = (
        client.post("/v1/recommend", content=b, headers=json_type) for b in bodies
    )
    assert first.content == again.content
    for r, body in ((first, bodies[0]), (as_float, bodies[2])):
        assert r.json() == recommend(load_case(json.loads(body)), kb=kb).to_dict()


def test_lru_and_report_store_bounds() -> None:
    from netboard.service.app import Lru
    from netboard.service.storage import ReportStore

    lru: Lru[str, int] = Lru(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # a is now the most recent
    lru.put("c", 3)
    assert lru.get("b") is None
    assert (lru.get("a"), lru.get("c")) == (1, 3)
    assert Lru[str, int](0).put("x", 1) == 1
    store = ReportStore(":memory:", ttl=-1.0, capacity=5)
    token = store.put({"kb": "x", "case": {"primary_site": "ileum"}})
    assert token is not None
    assert store.get(token) is None  # expired at once


def test_about_page_in_a_browser_is_html(client: TestClient, kb: KnowledgeBase) -> None:
    r = client.get("/about", headers={"Accept": "text/html,application/xhtml+xml"})
    assert r.headers["content-type"].startswith("text/html")
    assert kb.version in r.text
    assert 'id="source-attributes"' in r.text
    assert "race</td><td>no" in r.text
