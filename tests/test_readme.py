"""The README, followed as a new user would: every shell and Python block, in order, as written.

The repository's files are copied to a temporary folder (a fresh clone, without ``.venv``),
and the README's blocks run there in one shell: the set-up command makes a new virtual
environment and installs the package from the copy, ``. .venv/bin/activate`` puts
``netboard`` on the path, the extras are installed as the README says. Two things are adapted
to a test, and only these: ``netboard serve`` runs in the background on a free port until it
answers ``/healthz`` and is then stopped; the test command (the README's second set-up
command) is not run again from inside the tests, but must equal what ``.ci/run`` runs.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)

pytestmark = pytest.mark.slow

# A stand-in for `netboard serve ...`: the same command on a free port, in the background,
# until it answers; then SIGTERM, and it must end cleanly.
SERVE = r"""
serve_check() {
    local port pid
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("", 0))
print(s.getsockname()[1])')
    "$@" --port "$port" > serve.log 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do
        if python3 - "$port" <<'PY' 2>/dev/null
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
opener.open(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=1)
PY
        then
            # Stopped by SIGTERM: uvicorn ends gracefully, then re-raises the signal (143).
            kill -TERM "$pid"
            local status=0
            wait "$pid" || status=$?
            [ "$status" -eq 0 ] || [ "$status" -eq 143 ]
            return $?
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            cat serve.log >&2
            return 1
        fi
        sleep 0.2
    done
    kill -KILL "$pid"
    echo "netboard serve did not answer /healthz" >&2
    return 1
}
"""


def blocks() -> list[tuple[str, str]]:
    """(language, text) of every fenced block of the README, in order."""
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(README.read_text(encoding="utf-8"))]


def ci_command() -> str:
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    return lines[-1].strip()


def test_the_readme_opens_with_the_two_set_up_commands() -> None:
    shell = [text.strip() for lang, text in blocks() if lang == "sh"]
    assert shell[0] == (
        "python3 -m venv .venv && .venv/bin/pip install --quiet . && "
        ".venv/bin/netboard recommend examples/sigmoid.yaml"
    )
    assert shell[1] == ci_command(), "the README's test command is what .ci/run runs"


def test_no_readme_command_installs_into_the_system_python() -> None:
    for lang, text in blocks():
        if lang != "sh":
            continue
        for line in text.splitlines():
            assert not re.match(r"\s*(sudo\s+)?pip3?\s", line), line
            assert not re.match(r"\s*python3?\s+-m\s+pip\s", line), line


def script() -> str:
    """The README's blocks as one bash script (Python blocks through the venv's python)."""
    parts = ["set -euo pipefail", SERVE]
    test_command = ci_command()
    for n, (lang, text) in enumerate(blocks()):
        if text.strip() == test_command:
            continue
        if lang == "python":
            name = f"readme_block_{n}.py"
            parts.append(f"cat > {name} <<'NETBOARD_PY'\n{text}NETBOARD_PY")
            parts.append(f".venv/bin/python {name}")
            continue
        assert lang == "sh", f"a README block in {lang!r}: mark shell as sh"
        for line in text.splitlines():
            if line.strip().startswith("netboard serve"):
                command = line.split(" #", 1)[0].strip()
                line = f"serve_check {command}"
            parts.append(f"printf '%s\\n' {shlex.quote('+ ' + line.strip())} >&2\n{line}")
    return "\n".join(parts) + "\n"


def copy_repository(target: Path) -> None:
    """The tracked files of the repository (what a fresh clone holds)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False, timeout=60
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout: cannot tell which files a clone holds")
    for name in listed.stdout.decode("utf-8").split("\0"):
        if not name:
            continue
        source = ROOT / name
        if not source.is_file():  # deleted in the work tree
            continue
        dest = target / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest)


def test_every_readme_command_runs_as_written_in_order(tmp_path: Path) -> None:
    clone = tmp_path / "netboard"
    copy_repository(clone)
    (clone / "readme.sh").write_text(script(), encoding="utf-8")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VIRTUAL_ENV", "PYTHON", "NETBOARD_", "PYTEST_", "COV_"))
    }
    # The venv of this test run is not on the path: the README must make its own.
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != Path(sys.executable).parent
    )
    env["XDG_DATA_HOME"] = str(tmp_path / "data")  # the service's files, out of $HOME
    env["HOME"] = str(tmp_path / "home")
    env["TERM"] = "dumb"
    run = subprocess.run(
        ["bash", "readme.sh"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert run.returncode == 0, (
        f"a README command failed (exit {run.returncode}):\n{run.stderr[-4000:]}"
    )
    # What the commands were to make is there.
    for made in (
        "report.html",
        "case.yaml",
        "registry.parquet",
        "result.parquet",
        "audit.html",
        "changes.csv",
        "fhir-result.parquet",
        "rec-elig.parquet",
    ):
        assert (clone / made).is_file(), made
    assert run.stdout.startswith("# netboard tumour board report")
    assert "Traceback" not in run.stderr
