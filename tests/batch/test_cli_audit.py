"""``netboard audit`` and ``netboard synth`` from the command line, and --compare-kb."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from netboard.batch import result_columns
from netboard.cli import main

KB = Path(__file__).resolve().parents[2] / "src" / "netboard" / "kb"


def test_synth_then_audit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg = tmp_path / "reg.csv"
    assert main(["synth", "--n", "50", "--out", str(reg), "--seed", "2", "--given"]) == 0
    with reg.open("a", encoding="utf-8") as fh:
        columns = reg.read_text(encoding="utf-8").splitlines()[0].count(",") + 1
        fh.write("bad,,,ileon" + "," * (columns - 4) + "\n")
    out, html, skipped = tmp_path / "res.parquet", tmp_path / "a.html", tmp_path / "skipped.txt"
    args = ["audit", str(reg), "--out", str(out), "--report", str(html)]
    code = main([*args, "--skipped", str(skipped), "--engine", "python"])
    err = capsys.readouterr().err
    assert code == 0
    assert "50 patients audited, 1 rows skipped (see" in err
    assert "row 51: primary_site:" in err
    assert skipped.read_text(encoding="utf-8").startswith("row 51: primary_site:")
    result = pq.read_table(out)
    assert result.num_rows == 50
    assert result.column_names == result_columns()
    assert 'data-stat="audited">50<' in html.read_text(encoding="utf-8")


def test_problem_lines_are_capped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg = tmp_path / "reg.csv"
    reg.write_text("id,ki67_percent\n" + "".join(f"p{i},200\n" for i in range(30)), "utf-8")
    assert main(["audit", str(reg), "--out", str(tmp_path / "r.csv"), "--show", "5"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len([line for line in err if line.startswith("netboard: row ")]) == 5
    assert "netboard: 25 more problem lines not shown" in err
    assert err[-1].startswith("netboard: 0 patients audited, 30 rows skipped")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv"], "no such file"),
        (["reg.xlsx"], "unknown format"),
        (["bad.csv"], "unknown column 'ki_67'"),
    ],
)
def test_unusable_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    (tmp_path / "reg.xlsx").write_text("x", encoding="utf-8")
    (tmp_path / "bad.csv").write_text("id,ki_67\n", encoding="utf-8")
    out = tmp_path / "res.parquet"
    code = main(["audit", str(tmp_path / args[0]), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    assert message in captured.err
    assert captured.out == ""
    assert not out.exists()


def test_compare_kb_names_patients_and_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "kb"
    shutil.copytree(KB, other)
    (other / "compiled.json").unlink(missing_ok=True)
    rules = other / "rules" / "systemic_first_line.yaml"
    text = rules.read_text(encoding="utf-8")
    # NETTER-2 first-line PRRT on Ki-67 10-55% alone (no SSTR, untreated or eligibility check).
    old = "      - {fact: netter2_population}\n      - {eligibility: prrt, is: eligible}\n"
    assert text.count(old) == 2
    rules.write_text(text.replace(old, "      - {fact: ki67_10_to_55}\n", 1), "utf-8")
    reg = tmp_path / "reg.parquet"
    assert main(["synth", "--n", "400", "--out", str(reg), "--seed", "8"]) == 0
    out = tmp_path / "changes.csv"
    code = main(
        ["audit", str(reg), "--compare-kb", str(other), "--out", str(out), "--engine", "python"]
    )
    captured = capsys.readouterr()
    assert code == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0].replace('"', "") == "id,column,before,after,rules"
    assert len(lines) > 1
    assert all("first_line.prrt_netter2" in line for line in lines[1:] if "rec.prrt" in line)
    assert any("rec.prrt" in line for line in lines[1:])
    assert "patients change" in captured.out.splitlines()[0]
    assert "become prrt candidates" in captured.out
    # the same KB twice: nothing changes
    out2 = tmp_path / "none.parquet"
    args = ["audit", str(reg), "--compare-kb", str(KB), "--out", str(out2), "--engine", "python"]
    assert main(args) == 0
    assert pq.read_table(out2).num_rows == 0
    assert capsys.readouterr().out.startswith("0 patients change")
