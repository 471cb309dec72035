"""What a hospital operator meets running ``netboard serve``: request logs, a taken port.

A real ``netboard serve`` process on loopback; its standard error goes to a file that the
tests read back line by line.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT

from .test_serve import NETBOARD, free_port, run_cli

SECRET_ID = "patient-7f3a9c"
SECRET_TEXT = "Mrs Zorbalinska"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z ")


class Running:
    def __init__(self, proc: subprocess.Popen[str], port: int, log: Path) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    def request(
        self, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(self.url + path, data=body, headers=headers or {})
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(req, timeout=30) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def lines(self) -> list[str]:
        return self.log.read_text(encoding="utf-8").splitlines()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@contextmanager
def serve(tmp_path: Path, *args: str) -> Iterator[Running]:
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w", encoding="utf-8") as err:
        proc = subprocess.Popen(
            [str(NETBOARD), "serve", "--port", str(port), "--data-dir", str(tmp_path), *args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
    server = Running(proc, port, log)
    deadline = time.monotonic() + 60
    while True:
        try:
            if server.request("/healthz")[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            proc.communicate(timeout=10)
            pytest.fail("netboard serve did not start: " + log.read_text()[-2000:])
        time.sleep(0.1)
    try:
        yield server
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=10)


def wait_for(server: Running, pattern: str, timeout: float = 10) -> list[str]:
    """The log lines once one matches ``pattern`` (the access line follows the answer)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = server.lines()
        if any(re.search(pattern, line) for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_every_request_is_logged_as_a_json_line_without_patient_values(tmp_path: Path) -> None:
    case = {"id": SECRET_ID, "primary_site": "ileum", "ki67_percent": 3.7, "age_years": 61}
    json_body = {"Content-Type": "application/json"}
    with serve(tmp_path, "--log-format", "json") as server:
        status, headers, _ = server.request(
            "/v1/recommend", json.dumps(case).encode(), {**json_body, "X-Request-ID": "abc-123"}
        )
        assert status == 200
        assert headers["x-request-id"] == "abc-123"
        status, headers, _ = server.request(
            "/v1/ask",
            json.dumps({"text": f"{SECRET_TEXT}, pNET G2, liver mets"}).encode(),
            json_body,
        )
        assert status == 200
        form = f"mode=case&id={SECRET_ID}&primary_site=ileum&metastatic_sites=liver".encode()
        status, headers, _ = server.request("/", form)
        assert status == 303
        answer = headers["location"]
        token = answer.rsplit("/", 1)[1]
        assert server.request(answer)[0] == 200
        assert server.request(f"/reports/{token}?q={SECRET_ID}")[0] == 404
        assert server.request("/no/such/page")[0] == 404
        lines = wait_for(server, r'"route":"-"')
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    access = [r for r in records if r["logger"] == "netboard.access"]
    by_route = {(r["method"], r["route"]): r for r in access}
    assert {
        ("GET", "/healthz"),
        ("POST", "/v1/recommend"),
        ("POST", "/v1/ask"),
        ("POST", "/"),
        ("GET", "/answers/{token}"),
        ("GET", "/reports/{token}"),
        ("GET", "-"),
    } <= set(by_route)
    for r in access:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", r["ts"])
        assert isinstance(r["status"], int)
        assert isinstance(r["ms"], float | int)
        assert r["request_id"]
    assert by_route[("POST", "/v1/recommend")]["request_id"] == "abc-123"
    assert by_route[("POST", "/v1/recommend")]["rules"]
    assert by_route[("GET", "/answers/{token}")]["rules"]
    assert by_route[("POST", "/")]["status"] == 303
    # Timings and timestamps are numbers of their own (a request can take 13.7 ms, in the
    # "ms" key and in the message): the patient's Ki-67 of 3.7 is looked for in the rest.
    everything = re.sub(
        r"\d+\.\d ms|\"ms\": [\d.]+",
        "",
        "\n".join(
            json.dumps({k: v for k, v in r.items() if k not in ("ms", "ts")}) for r in records
        ),
    )
    for secret in (SECRET_ID, SECRET_TEXT, token, "3.7", "ileum", "/no/such/page"):
        assert secret not in everything, secret


def test_text_lines_have_a_timestamp_and_the_401_too(tmp_path: Path) -> None:
    trust = ROOT / "examples" / "trust.yaml"
    with serve(
        tmp_path, "--trust", str(trust), "--public-url", "https://cds.example.org"
    ) as server:
        status, _, _ = server.request(
            "/cds-services/netboard-net-plan",
            b'{"hook": "patient-view"}',
            {"Content-Type": "application/json", "Authorization": "Bearer not.a.token"},
        )
        assert status == 401
        lines = wait_for(server, r"POST /cds-services/netboard-net-plan 401")
    assert lines
    for line in lines:
        assert TIMESTAMP.match(line), line
    assert any(
        " INFO netboard.service netboard " in line and "serving on" in line for line in lines
    )
    warning = next(line for line in lines if "401 on" in line)
    assert " WARNING netboard.service " in warning
    access = next(line for line in lines if "POST /cds-services/netboard-net-plan 401" in line)
    assert re.search(r"\[[0-9a-f]{16}\]", warning)
    assert warning.split("[")[1][:16] == access.split("[")[1][:16]  # the same request id
    assert "not.a.token" not in "\n".join(lines)


def test_a_taken_port_is_one_clear_line_before_anything_else(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        r = run_cli("serve", "--port", str(port), "--data-dir", str(tmp_path))
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr == (
        f"netboard: --port: 127.0.0.1:{port} is already in use (another server listens "
        "there); stop it or choose another --port\n"
    )
