"""Benchmark the HTTP service under load on this machine (2 cores): ``python bench/service.py``.

A real ``netboard serve`` process (uvicorn, ``--workers``) on loopback, loaded by wrk (closed
loop, for throughput and latency) and by hey (a fixed offered rate, for the soak test). The
load generator shares the two cores with the server, as it would on a small VM.

1. ``POST /v1/recommend`` throughput and p50/p99 latency, over distinct cases (each request
   carries a different case, so no cache of any kind can help).
2. ``POST /cds-services/netboard-net-plan`` with a 50-resource FHIR prefetch: p50/p99.
3. Soak: 60 s at twice the target rate (2,000 requests/s offered) with the errors counted and
   the server's memory (RSS of every process) sampled each second.

Results go to the ``service`` section of ``docs/benchmarks.md``. Needs ``wrk`` and ``hey``
(Debian packages).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from run import ROOT, generated_cases, vignette_cases, write_section

from fhir_bundles import bundle_for_case, prefetch_for

TARGET_RPS = 1000
TARGET_P99_MS = 50
TARGET_HOOK_P99_MS = 100

_LUA = """
local bodies = {}
for line in io.lines("%s") do bodies[#bodies + 1] = line end
local i = 0
request = function()
  i = i %% #bodies + 1
  return wrk.format("POST", "%s", {["Content-Type"] = "application/json"}, bodies[i])
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``netboard serve`` in a child process."""

    def __init__(self, workers: int, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).parent / "netboard"
        self.proc = subprocess.Popen(
            [
                str(exe),
                "serve",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                "--data-dir",
                str(tmp),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            self.stop()
            raise SystemExit("the server did not start")
        time.sleep(1.0 * workers)  # every worker up, not only the first

    def pids(self) -> list[int]:
        out = [self.proc.pid]
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        if children.exists():
            out += [int(x) for x in children.read_text().split()]
        return out

    def rss_mb(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            m = re.search(r"VmRSS:\s+(\d+) kB", status)
            total += int(m.group(1)) if m else 0
        return total / 1024

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(text)
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def run_wrk(
    url: str, path: str, bodies: list[str], seconds: int, connections: int
) -> dict[str, Any]:
    """wrk over rotating bodies; requests/s, p50 and p99 (ms), errors."""
    with tempfile.TemporaryDirectory() as tmp:
        lines = Path(tmp) / "bodies.ndjson"
        lines.write_text("\n".join(bodies) + "\n", encoding="utf-8")
        script = Path(tmp) / "post.lua"
        script.write_text(_LUA % (lines, path), encoding="utf-8")
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{seconds}s",
                "--latency",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50_ms": _ms(lat["50"]),
        "p99_ms": _ms(lat["99"]),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "none",
        "connections": connections,
        "seconds": seconds,
    }


def run_soak(server: Server, body: str, seconds: int, rate: int) -> dict[str, Any]:
    """hey at a fixed offered rate; status counts and the server's RSS every second."""
    workers = 40
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(server.rss_mb())
            stop.wait(1.0)

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        fh.write(body)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out = subprocess.run(
            ["hey", "-z", f"{seconds}s", "-c", str(workers), "-q", str(rate // workers),
             "-m", "POST", "-T", "application/json", "-D", fh.name, "-t", "20",
             f"{server.url}/v1/recommend"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    finally:
        stop.set()
        sampler.join()
        os.unlink(fh.name)
    statuses = {int(a): int(b) for a, b in re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)}
    errors = re.search(r"Error distribution:(.*)", out, re.S)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%+ in ([\d.]+) secs", out)
    third = max(1, len(samples) // 3)
    return {
        "seconds": seconds,
        "offered_rps": rate,
        "achieved_rps": rps,
        "statuses": statuses,
        "errors": " ".join(errors.group(1).split()) if errors else "none",
        "p99_ms": float(p99.group(1)) * 1000 if p99 else None,
        "rss_mb_first_third": round(sum(samples[:third]) / third, 1),
        "rss_mb_last_third": round(sum(samples[-third:]) / third, 1),
        "rss_mb_max": round(max(samples), 1),
    }


def distinct_bodies(n: int) -> list[str]:
    cases = [dict(c) for c in vignette_cases()] + generated_cases(n)
    out = []
    for i, case in enumerate(cases):
        case["id"] = f"bench-{i}"
        out.append(json.dumps(case, separators=(",", ":")))
    return out


def hook_body(case: dict[str, Any], templates: dict[str, str], size: int = 50) -> str:
    """A patient-view call whose prefetch carries ``size`` FHIR resources."""
    bundle = bundle_for_case(case, today=date.today())
    resources = [e["resource"] for e in bundle["entry"]]
    ki67 = next(
        r for r in resources
        if r["resourceType"] == "Observation"
        and any(c.get("code") == "29593-1" for c in r["code"].get("coding", []))
    )  # fmt: skip
    i = 0
    while len(resources) < size:  # an older result history, as a real chart has
        i += 1
        old = json.loads(json.dumps(ki67))
        old["id"] = f"{ki67['id']}-hist{i}"
        old["effectiveDateTime"] = f"{2015 + i % 10}-0{1 + i % 9}-15"
        resources.append(old)
    bundle["entry"] = [{"resource": r} for r in resources]
    pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    body = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/bench", "patientId": pid},
        "prefetch": prefetch_for(bundle, templates),
    }
    return json.dumps(body, separators=(",", ":"))


def verdict(ok: bool) -> str:
    return "meets" if ok else "**misses**"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--soak-seconds", type=int, default=60)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    for tool in ("wrk", "hey"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed (apt-get install {tool})")

    with tempfile.TemporaryDirectory() as tmp:
        server = Server(args.workers, Path(tmp))
        try:
            bodies = distinct_bodies(5000)
            rec = run_wrk(server.url, "/v1/recommend", bodies, args.seconds, args.connections)
            print("recommend", rec, flush=True)
            sigmoid = json.loads(bodies[0])
            with urllib.request.urlopen(server.url + "/cds-services") as r:
                templates = json.load(r)["services"][0]["prefetch"]
            with_ki67 = [json.loads(b) for b in bodies if '"ki67_percent"' in b][:200]
            hook_bodies = [hook_body(c, templates) for c in with_ki67]
            hook = run_wrk(
                server.url,
                "/cds-services/netboard-net-plan",
                hook_bodies,
                args.seconds,
                8,
            )
            hook["resources"] = 50
            print("hook", hook, flush=True)
            soak = run_soak(server, json.dumps(sigmoid), args.soak_seconds, 2 * TARGET_RPS)
            print("soak", soak, flush=True)
        finally:
            server.stop()

    cpu = os.cpu_count()
    body = f"""## Service (`bench/service.py`)

`netboard serve --workers {args.workers}` on loopback, {cpu} cores shared with the load
generator. Distinct case in every request (vignettes plus generated cases, unique ids).

| measure | result | target | verdict |
|---|---|---|---|
| `/v1/recommend` throughput (wrk, {rec["connections"]} connections, {rec["seconds"]} s) | {rec["rps"]:.0f} req/s | >= {TARGET_RPS} req/s | {verdict(rec["rps"] >= TARGET_RPS)} |
| `/v1/recommend` latency p50 / p99 | {rec["p50_ms"]:.1f} / {rec["p99_ms"]:.1f} ms | p99 <= {TARGET_P99_MS} ms | {verdict(rec["p99_ms"] <= TARGET_P99_MS)} |
| CDS Hooks call, 50-resource prefetch, p50 / p99 ({hook["connections"]} connections) | {hook["p50_ms"]:.1f} / {hook["p99_ms"]:.1f} ms ({hook["rps"]:.0f} calls/s) | p99 <= {TARGET_HOOK_P99_MS} ms | {verdict(hook["p99_ms"] <= TARGET_HOOK_P99_MS)} |
| soak: {soak["seconds"]} s at {soak["offered_rps"]} req/s offered (hey) | {soak["achieved_rps"]:.0f} req/s served; statuses {soak["statuses"]}; errors: {soak["errors"]} | 0 errors | {verdict(soak["errors"] == "none" and set(soak["statuses"]) == {200})} |
| soak memory (RSS of all server processes) | first third {soak["rss_mb_first_third"]} MB, last third {soak["rss_mb_last_third"]} MB, max {soak["rss_mb_max"]} MB | flat | {verdict(soak["rss_mb_last_third"] <= soak["rss_mb_first_third"] * 1.05 + 5)} |

The soak repeats one case, so its answers come from the per-worker answer cache: it shows
that the HTTP stack holds twice the target rate for a minute without an error or memory
growth. The capacity for distinct cases is the wrk line, bound by the engine. It was
580-760 req/s with contract 1 answers; every answer now also carries the board answer
(plan, presumptions, what-ifs), which re-decides about 7 what-ifs per sparse case (see
"The board answer" above), and wrk shares the two cores. Measured one after the other on
the same machine (2026-12-05, `--soak-seconds 5`), the release before the truth-only
what-ifs served 384 req/s and the speed-up 454 req/s (hooks 210 and 234 calls/s); the
final code of 0.2.1 served 437 req/s in the run above (the machine ran slower then). The figure
of 192 req/s recorded here for the release before could not be reproduced (384 re-measured);
most likely other work was running on the machine then.

Non-2xx in the wrk runs: recommend {rec["non_2xx"]}, hook {hook["non_2xx"]}; socket errors:
recommend {rec["socket_errors"]}, hook {hook["socket_errors"]}.
"""  # noqa: E501
    write_section(Path(args.out), "service", body)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
