"""Issue 12 against a real ``netboard serve`` process on loopback: workers, sockets, signals.

Each test reproduces a defect of the review with a real client over TCP, bounded in time:
report links on a second worker, oversized heads, idle and slow clients, requests lost on
SIGTERM, orphaned workers after SIGKILL, and an ``ask`` stalling ``/healthz``.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .test_serve import NETBOARD, free_port, run_cli

HOOK = "/cds-services/netboard-net-plan"


class Server:
    """A ``netboard serve`` subprocess on a free loopback port."""

    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str, timeout: float = 10) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def post(self, path: str, body: Any, timeout: float = 30) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, e.read()


@contextmanager
def serve(
    tmp_path: Path, *args: str, preexec: Callable[[], None] | None = None
) -> Iterator[Server]:
    port = free_port()
    # The log goes to a file: a pipe nobody reads would fill up (every request is logged)
    # and stall the server.
    log = (tmp_path / "serve.log").open("w", encoding="utf-8")
    proc = subprocess.Popen(
        [str(NETBOARD), "serve", "--port", str(port), "--data-dir", str(tmp_path), *args],
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
        preexec_fn=preexec,
    )
    log.close()
    server = Server(proc, port)
    deadline = time.monotonic() + 60
    while True:
        try:
            if server.get("/healthz", timeout=1)[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            proc.communicate(timeout=10)
            err = (tmp_path / "serve.log").read_text(encoding="utf-8")
            pytest.fail(f"netboard serve did not start: {err[-2000:]}")
        time.sleep(0.1)
    try:
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=10)


def hook_body(server: Server) -> dict[str, Any]:
    """A hook call whose prefetch holds a neuroendocrine neoplasm (the sigmoid example)."""
    import datetime as dt
    import uuid

    import yaml

    from conftest import ROOT
    from fhir_bundles import bundle_for_case, prefetch_for

    case = yaml.safe_load((ROOT / "examples" / "sigmoid.yaml").read_text())
    bundle = bundle_for_case(case, today=dt.date.today())
    pid = next(
        e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    templates = json.loads(server.get("/cds-services")[1])["services"][0]["prefetch"]
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/1", "patientId": pid},
        "prefetch": prefetch_for(bundle, templates),
    }


def status_line(sock: socket.socket, timeout: float) -> bytes:
    """The first line the server sends, or b"" when it closes without one."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    return data.split(b"\r\n")[0]


# --- 2. report links open on every worker ----------------------------------------------------


def test_report_links_open_on_every_worker(tmp_path: Path) -> None:
    """The review: with --workers 2, 23 of 50 link openings gave 404."""
    with serve(tmp_path, "--workers", "2") as server:
        links = []
        call = hook_body(server)
        for _ in range(50):
            status, body = server.post(HOOK, call)
            assert status == 200, body
            links.append(body["cards"][0]["links"][0]["url"])
        opened = [server.get(link.removeprefix(server.url))[0] for link in links]
    assert opened == [200] * 50


# --- 4. header size, idle and slow clients, connection cap ----------------------------------


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with a 1 s client timeout and at most 192 connections (256 descriptors)."""

    def few_descriptors() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    with serve(
        tmp_path_factory.mktemp("limited"), "--client-timeout", "1", preexec=few_descriptors
    ) as server:
        yield server


def test_a_huge_request_head_is_refused_with_431(limited: Server) -> None:
    """The review: a 200 MB header was accepted (+330 MB, /healthz stalled 4.8 s)."""
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            while sent < 20_000_000:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        line = status_line(sock, 10)
    assert line.startswith(b"HTTP/1.1 431"), line
    assert sent < 20_000_000  # the server stopped reading long before the end
    assert limited.get("/healthz", timeout=5)[0] == 200


def test_a_head_arriving_whole_is_measured_too(limited: Server) -> None:
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n")
        assert status_line(sock, 10).startswith(b"HTTP/1.1 431")


def test_idle_connections_cannot_lock_other_clients_out(limited: Server) -> None:
    """The review: 1,100 idle connections locked out every other client."""
    idle = []
    try:
        for _ in range(300):  # more than the server's 256 file descriptors
            idle.append(socket.create_connection(("127.0.0.1", limited.port), timeout=5))
        started = time.monotonic()
        assert limited.get("/healthz", timeout=5)[0] == 200
        assert time.monotonic() - started < 5
    finally:
        for s in idle:
            s.close()


def test_a_client_dribbling_its_head_is_cut_off(limited: Server) -> None:
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        try:
            for _ in range(30):  # one byte every 0.2 s: no single read ever times out
                sock.sendall(b"X")
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        line = status_line(sock, 5)
        assert line.startswith(b"HTTP/1.1 408") or line == b""
        assert time.monotonic() - started < 5.5


def test_a_silent_connection_is_closed(limited: Server) -> None:
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as sock:
        started = time.monotonic()
        assert status_line(sock, 8) == b""  # closed without a word
        assert time.monotonic() - started < 5


def test_a_body_that_does_not_arrive_gets_408(limited: Server) -> None:
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"id": '
        )
        started = time.monotonic()
        assert status_line(sock, 8).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < 5


# --- 11. graceful stop, orphaned workers, the event loop ------------------------------------


def test_sigterm_drops_no_request_on_keep_alive_connections(tmp_path: Path) -> None:
    """The review: SIGTERM dropped one request per keep-alive connection."""
    outcomes: dict[str, int] = {"ok": 0, "refused": 0, "dropped": 0}
    lock = threading.Lock()
    stop_at = time.monotonic() + 15

    def client(port: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < stop_at:
            try:
                conn.request("GET", "/healthz")
            except ConnectionRefusedError:
                kind = "refused"  # never sent: safe to send elsewhere
            except OSError:
                kind = "dropped"
            else:
                try:
                    conn.getresponse().read()
                    kind = "ok"
                except (http.client.RemoteDisconnected, OSError):
                    kind = "dropped"  # sent, and no answer
            with lock:
                outcomes[kind] += 1
            if kind != "ok":
                conn.close()
                if kind == "refused":
                    return
            time.sleep(0.1)
        conn.close()

    with serve(tmp_path) as server:
        threads = [threading.Thread(target=client, args=(server.port,)) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        server.proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(timeout=20)
        server.proc.wait(timeout=30)
    assert outcomes["dropped"] == 0, outcomes
    assert outcomes["ok"] > 20
    assert outcomes["refused"] == 6


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_killing_the_supervisor_stops_its_workers(tmp_path: Path) -> None:
    """The review: SIGKILL of the supervisor orphaned workers that kept the port."""
    with serve(tmp_path, "--workers", "2") as server:
        workers = [
            p
            for p in _children(server.proc.pid)
            if b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
        assert len(workers) == 2
        server.proc.kill()
        server.proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [p for p in workers if _alive(p)]
        for p in left:
            os.kill(p, signal.SIGKILL)
        assert left == []
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


def test_a_large_ask_does_not_stall_healthz(tmp_path: Path) -> None:
    """The review: a large ask ran on the event loop and stalled /healthz for 1.3 s."""
    note = "62M sigmoid NET G2 Ki67 8%, DOTATATE avid, bilobar liver mets, no syndrome. "
    text = (note * 1300)[:99_000]
    done: dict[str, float] = {}
    with serve(tmp_path) as server:

        def ask() -> None:
            status, _ = server.post("/v1/ask", {"text": text}, timeout=60)
            assert status == 200
            done["ask"] = time.monotonic()

        worker = threading.Thread(target=ask)
        worker.start()
        time.sleep(0.3)  # the ask is being answered now
        assert server.get("/healthz", timeout=30)[0] == 200
        done["healthz"] = time.monotonic()
        worker.join(timeout=60)
    assert "ask" in done
    assert done["healthz"] < done["ask"]


# --- 10. card links with a trust file ----------------------------------------------------------


def test_serve_with_a_trust_file_needs_a_public_url(tmp_path: Path) -> None:
    trust = tmp_path / "trust.yaml"
    trust.write_text(
        "issuers:\n  - iss: https://ehr.example.org\n    jwks_url: https://ehr.example.org/k\n"
    )
    r = run_cli("serve", "--trust", str(trust), "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 2
    assert r.stderr.startswith("netboard: --public-url: required with --trust")
    assert "Traceback" not in r.stderr
