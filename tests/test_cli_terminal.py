"""What a person at a terminal meets: help, error lines, outputs, wrapping, dates, progress.

Every test runs the installed console script; the terminal ones give it a real pseudo-terminal
(``pty``), so ``isatty`` is what a shell would give.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

NETBOARD = Path(sys.executable).parent / "netboard"
ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FIXED = {"SOURCE_DATE_EPOCH": "1767225600"}  # 2026-01-01 00:00 UTC
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NETBOARD), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def run_in_terminal(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal; the exit code and all it showed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(NETBOARD), *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env={**os.environ, "TERM": "xterm", **(env or {})},
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    code = proc.wait(timeout=30)
    return code, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


# --- help ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", ["recommend", "ask", "serve", "kb", "kb check", "kb compile", "audit", "synth"]
)
def test_every_subcommand_help_has_a_description_and_examples(command: str) -> None:
    r = run(*command.split(), "--help")
    assert r.returncode == 0, r.stderr
    usage, _, rest = r.stdout.partition("\n\n")
    assert usage.startswith("usage: netboard ")
    description = rest.split("\n\n", 1)[0]
    assert len(description.split()) >= 8, description
    assert "\nexamples:\n  netboard " in r.stdout


@pytest.mark.parametrize("command", ["recommend", "ask"])
def test_format_names_its_default_and_offers_html(command: str) -> None:
    help_text = " ".join(run(command, "--help").stdout.split())
    assert "--format {markdown,json,html}" in help_text
    assert "markdown (the default)" in help_text or "(the report; the default)" in help_text


def test_audit_engine_lists_only_what_its_extras_install() -> None:
    help_text = " ".join(run("audit", "--help").stdout.split())
    assert "--engine {duckdb,spark,python}" in help_text
    assert "polars is a development engine that no extra installs" in help_text


# --- error lines ------------------------------------------------------------------------------


def test_every_error_line_has_one_prefix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("ki67: 8\nprimary_site: sigmoid\n", encoding="utf-8")
    runs = [
        run("recommend", str(bad)),
        run("recommend"),
        run("ask", ""),
        run("serve", "--port", "0"),
        run("audit", "missing.csv", "--out", str(tmp_path / "r.csv")),
        run("synth", "--n", "-1", "--out", str(tmp_path / "r.csv")),
        run("nonsense"),
    ]
    for r in runs:
        assert r.returncode == 2, r
        assert r.stdout == ""
        assert r.stderr, r
        for line in r.stderr.splitlines():
            assert line.startswith("netboard: "), line


def test_did_you_mean_reaches_the_command_line_and_g2_is_read_as_g2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("ki67: 8\nprimary_site: sigmoid\n", encoding="utf-8")
    lines = run("recommend", str(bad)).stderr.splitlines()
    assert any(
        line.startswith("netboard: ki67: unknown field") and "did you mean ki67_percent?" in line
        for line in lines
    ), lines
    assert any(
        line.startswith("netboard: primary_site:") and "did you mean sigmoid_colon?" in line
        for line in lines
    ), lines
    good = tmp_path / "g2.yaml"
    good.write_text("primary_site: sigmoid_colon\ngrade: G2\n", encoding="utf-8")
    r = run("recommend", str(good), "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["classification"]["grade"] == "g2"


# --- outputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["recommend", str(EXAMPLES / "sigmoid.yaml"), "--out"],
        ["ask", "pNET G2 with liver mets", "--out"],
        ["ask", "pNET G2 with liver mets", "--case-out"],
        ["synth", "--n", "5", "--out"],
        ["audit", str(EXAMPLES / "fhir-bulk" / "Patient.ndjson"), "--out"],
        ["audit", "--fhir-ndjson", str(EXAMPLES / "fhir-bulk"), "--report"],
    ],
)
def test_no_output_creates_a_missing_folder(tmp_path: Path, args: list[str]) -> None:
    target = tmp_path / "typo" / "deeper" / ("out.parquet" if "synth" in args else "out.csv")
    r = run(*args, str(target))
    assert r.returncode == 2, r.stdout
    assert r.stdout == ""
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert str(target.parent) in r.stderr
    assert "does not exist" in r.stderr
    assert not (tmp_path / "typo").exists()


def test_out_writes_the_answer_to_a_file_and_nothing_to_stdout(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    r = run("recommend", str(EXAMPLES / "sigmoid.yaml"), "--format", "html", "--out", str(target))
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no partial file left


def test_ask_html_is_a_standalone_page_with_what_was_understood() -> None:
    note = (EXAMPLES / "note.txt").read_text(encoding="utf-8")
    r = run("ask", "-", "--format", "html", stdin=note, env=FIXED)
    assert r.returncode == 0, r.stderr
    page = r.stdout
    assert page.startswith("<!DOCTYPE html>")
    assert 'id="understood"' in page
    assert 'id="plan"' in page
    assert "<form" not in page  # the page's edit forms are not part of a file
    assert 'generated <time class="generated">2026-01-01 00:00 UTC</time>' in page


def test_general_question_as_html_has_no_forms() -> None:
    r = run("ask", "how long to stop octreotide LAR before PRRT?", "--format", "html")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("<!DOCTYPE html>")
    assert "From the knowledge base" in r.stdout
    assert "<form" not in r.stdout


# --- the generation date ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["markdown", "html"])
def test_reports_carry_their_generation_date(fmt: str) -> None:
    r = run("recommend", str(EXAMPLES / "sigmoid.yaml"), "--format", fmt, env=FIXED)
    assert r.returncode == 0, r.stderr
    assert "generated 2026-01-01 00:00 UTC" in ANSI.sub("", re.sub(r"<[^>]+>", "", r.stdout))
    if fmt == "html":
        assert (
            '@top-right { content: "generated 2026-01-01 00:00 UTC";'
            in r.stdout.replace("\\000020", " ")
            or "generated 2026-01-01 00:00 UTC" in r.stdout
        )


def test_without_a_fixed_date_the_report_is_dated_now() -> None:
    r = run("recommend", str(EXAMPLES / "sigmoid.yaml"))
    match = re.search(r"generated (\d{4}-\d{2}-\d{2}) \d{2}:\d{2} UTC", r.stdout)
    assert match, r.stdout[:400]
    assert abs(int(match.group(1)[:4]) - time.gmtime().tm_year) <= 1


# --- Markdown in a terminal -------------------------------------------------------------------


def test_markdown_is_wrapped_on_a_terminal_and_not_in_a_pipe() -> None:
    args = ("recommend", str(EXAMPLES / "sigmoid.yaml"))
    code, shown = run_in_terminal(*args, env={"COLUMNS": "72", "LINES": "40", **FIXED})
    assert code == 0, shown
    prose = [line for line in shown.splitlines() if not line.startswith(("|", "#"))]
    long = [line for line in prose if len(line) > 72 and " " in line.strip()]
    assert long == [], long[:3]
    piped = run(*args, env={"COLUMNS": "72", **FIXED}).stdout
    assert max(len(line) for line in piped.splitlines()) > 72
    # The same words, only the line breaks (and a quote's ">" on each line) differ.
    assert [w for w in shown.split() if w != ">"] == [w for w in piped.split() if w != ">"]
    assert "\n[1]: #" not in piped  # citation markers have no link definitions


# --- audit progress ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("duckdb", reason="the audit extra is not installed")
    path = tmp_path_factory.mktemp("progress") / "registry.parquet"
    r = run("synth", "--n", "60000", "--out", str(path), "--given")
    assert r.returncode == 0, r.stderr
    return path


def test_audit_shows_progress_on_a_terminal(registry: Path, tmp_path: Path) -> None:
    code, shown = run_in_terminal(
        "audit",
        str(registry),
        "--out",
        str(tmp_path / "r.parquet"),
        "--chunk-rows",
        "5000",
        "--threads",
        "1",
    )
    assert code == 0, shown
    plain = ANSI.sub("", shown)
    assert re.search(r"netboard: audit [\d,]+ of 60,000 rows \(\d+ %\)", plain), plain[-2000:]
    assert "netboard: 60000 patients audited, 0 rows skipped" in plain


def test_audit_is_quiet_in_a_pipe_and_with_quiet(registry: Path, tmp_path: Path) -> None:
    r = run("audit", str(registry), "--out", str(tmp_path / "r.parquet"))
    assert r.returncode == 0, r.stderr
    assert r.stderr == "netboard: 60000 patients audited, 0 rows skipped\n"
    code, shown = run_in_terminal(
        "audit", str(registry), "--out", str(tmp_path / "q.parquet"), "--quiet"
    )
    assert code == 0
    assert "netboard: audit " not in ANSI.sub("", shown)
