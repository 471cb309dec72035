"""``netboard serve``: a real uvicorn process, its start-up checks and its warnings."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT

NETBOARD = Path(sys.executable).parent / "netboard"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(NETBOARD), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    folder = tmp_path_factory.mktemp("serve")
    proc = subprocess.Popen(
        [str(NETBOARD), "serve", "--port", str(port), "--data-dir", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(
                    "netboard serve did not start: " + (proc.stderr.read() if proc.stderr else "")
                )
            time.sleep(0.1)
    yield url, proc
    proc.terminate()
    proc.communicate(timeout=10)  # also closes the pipes (an open one is a ResourceWarning)


def test_serve_answers_over_real_http(server: tuple[str, subprocess.Popen[str]]) -> None:
    url, _ = server
    case = (ROOT / "examples" / "sigmoid.yaml").read_text()
    import yaml

    body = json.dumps(yaml.safe_load(case)).encode()
    request = urllib.request.Request(
        url + "/v1/recommend", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        answer = json.load(r)
    assert answer["contract_version"] == "2"
    assert answer["recommendations"]


def test_serve_warns_loudly_without_trust(server: tuple[str, subprocess.Popen[str]]) -> None:
    _, proc = server
    proc.terminate()
    _, err = proc.communicate(timeout=10)
    assert "NO TRUST FILE" in err
    assert "NOT authenticated" in err


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--host", "0.0.0.0"], "--trust"),
        (["--port", "70000"], "--port"),
        (["--workers", "0"], "--workers"),
        (["--max-connections", "0"], "--max-connections"),
        (["--client-timeout", "0"], "--client-timeout"),
        (["--feedback-retention-days", "0"], "--feedback-retention-days"),
        (["--fhir-server", "http://192.168.1.1/fhir"], "--fhir-server[0]"),
    ],
)
def test_serve_refuses_unsafe_or_bad_options(args: list[str], field: str) -> None:
    r = run_cli("serve", *args)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith(f"netboard: {field}")
    assert "Traceback" not in r.stderr


def test_serve_reports_a_bad_trust_file_cleanly(tmp_path: Path) -> None:
    trust = tmp_path / "trust.yaml"
    trust.write_text("issuers:\n  - iss: ftp://ehr.example.org\n    jwks_url: nope\n")
    r = run_cli("serve", "--trust", str(trust), "--port", str(free_port()))
    assert r.returncode == 2
    assert "issuers" in r.stderr
    assert "Traceback" not in r.stderr
