"""Issue 12 (audit items 3, 6, 8): outputs never overwrite inputs, faults end in one line and
exit 2 with nothing left behind, bad bytes skip one row, CSV results escape formulas.

Kills, signals and the full disk are real: ``netboard audit`` runs in a child process that
gets SIGTERM, SIGKILL or SIGINT, or whose file-size limit (RLIMIT_FSIZE) makes writes fail as
a full disk does. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from netboard.batch.synth import write_synth
from netboard.cli import main

CHILD = [sys.executable, "-m", "netboard.cli"]
WAIT = 120.0


def run(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CHILD, *args], capture_output=True, text=True, timeout=WAIT, check=False, **kw
    )  # type: ignore[call-overload, no-any-return]


def partials(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.partial"))


def wait_for(check: Callable[[], bool], proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if proc.poll() is not None:
            _out, err = proc.communicate()
            pytest.fail(f"the audit ended before {what}: {proc.returncode} {err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry that takes a few seconds to audit on one thread."""
    path = tmp_path_factory.mktemp("faults") / "big.parquet"
    write_synth(path, 300_000, seed=12, given=True)
    return path


def csv_registry(path: Path, rows: list[str]) -> Path:
    path.write_bytes(b"id,primary_site,ki67_percent\n" + b"".join(r.encode() for r in rows))
    return path


# --- item 3: an output never resolves to an input --------------------------------------------


@pytest.mark.parametrize("option", ["--out", "--skipped", "--report"])
@pytest.mark.parametrize("how", ["same", "relative", "symlink", "hardlink"])
def test_output_that_is_the_registry_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, how: str
) -> None:
    reg = csv_registry(tmp_path / "reg.csv", ["p1,ileum,2\n", "p2,pancreas,5\n"])
    before = reg.read_bytes()
    (tmp_path / "sub").mkdir()
    target = {
        "same": str(reg),
        "relative": str(tmp_path / "sub" / ".." / "reg.csv"),
        "symlink": str(tmp_path / "link.csv"),
        "hardlink": str(tmp_path / "hard.csv"),
    }[how]
    if how == "symlink":
        (tmp_path / "link.csv").symlink_to(reg)
    if how == "hardlink":
        os.link(reg, tmp_path / "hard.csv")
    args = ["audit", str(reg), option, target]
    if option != "--out":
        args += ["--out", str(tmp_path / "res.parquet")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"netboard: {option}: ")
    assert "refusing to overwrite an input" in err[0]
    assert reg.read_bytes() == before
    assert not (tmp_path / "res.parquet").exists()
    assert partials(tmp_path) == []


def test_two_outputs_on_one_file_and_an_output_in_the_export_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = csv_registry(tmp_path / "reg.csv", ["p1,ileum,2\n"])
    out = tmp_path / "r.csv"
    assert main(["audit", str(reg), "--out", str(out), "--skipped", str(out)]) == 2
    assert "--skipped: " in capsys.readouterr().err
    export = tmp_path / "export"
    export.mkdir()
    (export / "Patient.ndjson").write_text('{"resourceType": "Patient", "id": "a"}\n', "utf-8")
    code = main(["audit", "--fhir-ndjson", str(export), "--out", str(export / "r.parquet")])
    assert code == 2
    assert "inside the input directory" in capsys.readouterr().err
    assert sorted(p.name for p in export.iterdir()) == ["Patient.ndjson"]


@pytest.mark.parametrize("option", ["--report", "--skipped"])
def test_bad_report_or_skipped_path_exits_2_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    reg = csv_registry(tmp_path / "reg.csv", ["p1,ileum,2\n"])
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x", "utf-8")
    for bad, message in (
        (tmp_path / "adir", "is a directory"),
        (tmp_path / "afile" / "x.txt", "is not a directory"),
    ):
        out = tmp_path / "res.parquet"
        assert main(["audit", str(reg), "--out", str(out), option, str(bad)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        assert message in err[0]
        assert not out.exists()


def test_inputs_are_checked_before_any_output_is_opened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("id,ki_67\np1,3\n", "utf-8")
    skipped = tmp_path / "skipped.txt"
    skipped.write_text("kept\n", "utf-8")
    assert main(["audit", str(bad), "--out", str(tmp_path / "r.csv"), "--skipped", str(skipped)])
    assert "unknown column 'ki_67'" in capsys.readouterr().err
    assert skipped.read_text("utf-8") == "kept\n"
    assert not (tmp_path / "r.csv").exists()


# --- item 6: nothing left behind after a signal; stale leftovers removed at the next start --


def test_sigterm_removes_the_partial_result(big: Path, tmp_path: Path) -> None:
    out = tmp_path / "res.parquet"
    proc = subprocess.Popen(
        [*CHILD, "audit", str(big), "--out", str(out), "--threads", "1"],
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: bool(partials(tmp_path)), proc, "the partial result appeared")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 2
    assert err.strip().splitlines()[-1] == "netboard: stopped by SIGTERM; no output written"
    assert partials(tmp_path) == []
    assert not out.exists()


def test_ctrl_c_removes_the_partial_result(big: Path, tmp_path: Path) -> None:
    out = tmp_path / "res.csv"
    proc = subprocess.Popen(
        [*CHILD, "audit", str(big), "--out", str(out), "--threads", "1"],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for(lambda: bool(partials(tmp_path)), proc, "the partial result appeared")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 2
    assert "interrupted (Ctrl-C); no output written" in err
    assert partials(tmp_path) == []
    assert not out.exists()


def test_sigkill_leftover_is_removed_by_the_next_run(big: Path, tmp_path: Path) -> None:
    out = tmp_path / "res.parquet"
    proc = subprocess.Popen(
        [*CHILD, "audit", str(big), "--out", str(out), "--threads", "1"],
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: bool(partials(tmp_path)), proc, "the partial result appeared")  # type: ignore[arg-type]
    proc.kill()
    proc.wait(timeout=WAIT)
    left = partials(tmp_path)
    assert len(left) == 1  # SIGKILL cannot be handled: the next start cleans up
    small = csv_registry(tmp_path / "small.csv", ["p1,ileum,2\n"])
    done = run("audit", str(small), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert partials(tmp_path) == []
    assert pq.read_table(out).num_rows == 1


def _slow_export(root: Path, observations: int) -> Path:
    root.mkdir()
    with (root / "Patient.ndjson").open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"resourceType": "Patient", "id": "p1", "gender": "female"}) + "\n")
    line = {
        "resourceType": "Observation",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "0000-0"}]},
    }
    with (root / "Observation.ndjson").open("w", encoding="utf-8") as fh:
        for i in range(observations):
            fh.write(json.dumps({**line, "id": f"o{i}"}) + "\n")
    return root


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_fhir_buckets_are_removed_on_sigterm_and_after_sigkill(
    tmp_path: Path, sig: signal.Signals
) -> None:
    export = _slow_export(tmp_path / "export", 400_000)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    out = tmp_path / "res.parquet"
    proc = subprocess.Popen(
        [*CHILD, "audit", "--fhir-ndjson", str(export), "--out", str(out)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )

    def buckets_written() -> bool:
        dirs = list(tmp.glob("netboard-fhir-*"))
        return bool(dirs) and any(f.stat().st_size > 1 << 20 for f in dirs[0].iterdir())

    wait_for(buckets_written, proc, "the bucket files were written")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=WAIT)
    if sig == signal.SIGTERM:
        assert proc.returncode == 2
        assert "stopped by SIGTERM" in err
        assert list(tmp.iterdir()) == []
    else:
        assert len(list(tmp.glob("netboard-fhir-*"))) == 1
        small = _slow_export(tmp_path / "small", 2)
        done = run("audit", "--fhir-ndjson", str(small), "--out", str(out), env=env)
        assert done.returncode == 0, done.stderr
        assert list(tmp.iterdir()) == []
    assert partials(tmp_path) == []


# --- item 8: faults end in one line and exit 2, or one skipped row ---------------------------


def test_one_bad_byte_skips_one_csv_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg = tmp_path / "reg.csv"
    reg.write_bytes(
        b"id,primary_site,ki67_percent\n"
        b"p1,ileum,2\n"
        b"p\xff2,ileum,2\n"
        b"p3,ileum,\xed\xa0\x80\n"  # a UTF-8-encoded lone surrogate
        b"p4,pancreas,5\n"
    )
    out = tmp_path / "r.parquet"
    assert main(["audit", str(reg), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "row 2: id: not valid UTF-8 text (byte 0xff at position 2)" in err
    assert "row 3: ki67_percent: not valid UTF-8 text (byte 0xed at position 1)" in err
    assert "2 patients audited, 2 rows skipped" in err
    assert pq.read_table(out).column("id").to_pylist() == ["p1", "p4"]


@pytest.mark.parametrize("ext", [".csv", ".ndjson"])
def test_utf16_file_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ext: str
) -> None:
    reg = tmp_path / f"reg{ext}"
    text = "id,ki67_percent\np1,3\n" if ext == ".csv" else '{"id": "p1"}\n'
    reg.write_text(text, encoding="utf-16")
    assert main(["audit", str(reg), "--out", str(tmp_path / "r.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"netboard: {reg}: encoded as UTF-16 (or UTF-32): save the file as UTF-8 and run again"
    ]


def test_csv_header_not_utf8_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = tmp_path / "reg.csv"
    reg.write_bytes(b"id,ki67\xff_percent\np1,3\n")
    assert main(["audit", str(reg), "--out", str(tmp_path / "r.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "header row: not valid UTF-8 text (byte 0xff" in err[0]


def test_ndjson_null_surrogate_and_bad_bytes_are_named_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = tmp_path / "reg.ndjson"
    reg.write_bytes(
        b'{"id": "p1", "primary_site": "ileum"}\n'
        b"null\n"
        b'{"id": "p\\ud800"}\n'
        b'{"id": "p\xff4"}\n'
        b"[1]\n"
        b'{"id": "p6"}\n'
    )
    out = tmp_path / "r.csv"
    assert main(["audit", str(reg), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "row 2: (row): expected a JSON object of case fields" in err
    # The JSON reader (netboard.documents.parse_json) names the escape; the row is skipped.
    assert re.search(r"row 3: .*id.* lone surrogate", err), err
    assert "row 4: (row): not valid UTF-8 text (byte 0xff" in err
    assert "row 5: (row): expected a JSON object" in err
    assert "2 patients audited, 4 rows skipped" in err


def test_corrupt_parquet_page_is_one_line_and_no_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = tmp_path / "reg.parquet"
    write_synth(reg, 20_000, seed=3)
    meta = pq.ParquetFile(reg).metadata
    column = meta.row_group(0).column(0)
    data = bytearray(reg.read_bytes())
    start = column.data_page_offset + 16
    data[start : start + 200] = os.urandom(200)
    reg.write_bytes(bytes(data))
    out, skipped = tmp_path / "r.parquet", tmp_path / "s.txt"
    code = main(["audit", str(reg), "--out", str(out), "--skipped", str(skipped)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1
    assert err[0].startswith(f"netboard: {reg}: ")
    assert "Parquet" in err[0]
    assert not out.exists()
    assert not skipped.exists()
    assert partials(tmp_path) == []


def _limited(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("outputs", [["--out", "res.csv"], ["--report", "audit.html"]])
def test_full_disk_is_one_line_and_leaves_nothing(tmp_path: Path, outputs: list[str]) -> None:
    """Writes fail past 20 kB (RLIMIT_FSIZE: EFBIG, as ENOSPC on a full disk)."""
    reg = tmp_path / "reg.csv"
    write_synth(reg, 3_000, seed=5, given=True)
    target = tmp_path / outputs[1]
    done = subprocess.run(
        [*CHILD, "audit", str(reg), outputs[0], str(target)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        preexec_fn=_limited(20_000),
        check=False,
    )
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"netboard: {target}: cannot write: File too large")
    assert not target.exists()
    assert partials(tmp_path) == []


# --- CSV results escape spreadsheet formulas -------------------------------------------------


def test_csv_results_escape_formulas_parquet_keeps_values(tmp_path: Path) -> None:
    ids = ['=HYPERLINK("http://x","y")', "+1", "-2", "@SUM(A1)", "\tx", "plain", "a=b"]
    reg = tmp_path / "reg.parquet"
    pq.write_table(pa.table({"id": ids, "primary_site": ["ileum"] * len(ids)}), reg)
    assert main(["audit", str(reg), "--out", str(tmp_path / "r.csv")]) == 0
    assert main(["audit", str(reg), "--out", str(tmp_path / "r.parquet")]) == 0
    import csv

    with (tmp_path / "r.csv").open(encoding="utf-8", newline="") as fh:
        cells = [row["id"] for row in csv.DictReader(fh)]
    assert cells == [
        '\'=HYPERLINK("http://x","y")',
        "'+1",
        "'-2",
        "'@SUM(A1)",
        "'\tx",
        "plain",
        "a=b",
    ]
    assert pq.read_table(tmp_path / "r.parquet").column("id").to_pylist() == ids


def test_fhir_export_not_utf8_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (export / "Patient.ndjson").write_bytes(b'{"resourceType": "Patient", "id": "p\xff1"}\n')
    out = tmp_path / "r.parquet"
    assert main(["audit", "--fhir-ndjson", str(export), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "is not UTF-8 text" in err[0]
    assert not out.exists()
    assert partials(tmp_path) == []
