"""Registry reading: formats, row numbers of bad rows, unknown columns, empty files."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from netboard.batch import audit_row, result_columns
from netboard.batch.io import RegistryError, ResultWriter, audit_chunks, check_row, read_registry
from netboard.batch.synth import synth_table
from netboard.case import load_case
from netboard.kb import KnowledgeBase

HEADER = "id,primary_site,ki67_percent,metastatic_sites,sstr_imaging,disease_status,given\n"
GOOD = "p1,ileum,2,liver;regional_lymph_nodes,positive,newly_diagnosed,somatostatin_analog\n"


def read_all(path: Path) -> tuple[pa.Table, list[str], int]:
    tables, problems, skipped = [], [], 0
    for chunk in read_registry(path, chunk_rows=3):
        tables.append(chunk.table)
        problems.extend(chunk.problems)
        skipped += chunk.skipped
    return pa.concat_tables(tables), problems, skipped


def test_csv_bad_rows_are_numbered_and_kept_out(tmp_path: Path, kb: KnowledgeBase) -> None:
    path = tmp_path / "r.csv"
    path.write_text(
        HEADER
        + GOOD
        + "p2,ileum,140,liver,positive,stable,\n"  # row 2: Ki-67 out of range
        + "p3,ileun,5,liver; bone,positive,stable,prrt\n"  # row 3: misspelt site
        + "p4,pancreas, 12 ,liver,positive,stable,everolimus;aspirin\n"  # row 4: given
        + "p5,rectum,1.5,,negative,,\n"
        + "p6,lung,abc,liver,positive,stable,\n",  # row 6: not a number
        encoding="utf-8",
    )
    table, problems, skipped = read_all(path)
    assert skipped == 4
    assert table.column("id").to_pylist() == ["p1", "p5"]
    assert problems[0] == "row 2: ki67_percent: 140 is outside the possible range 0-100"
    assert problems[1].startswith('row 3: primary_site: "ileun" is not one of')
    assert problems[2].startswith('row 4: given[1]: "aspirin" is not an intervention code')
    assert problems[3] == 'row 6: ki67_percent: expected a number, got "abc"'
    stats = audit_chunks(read_registry(path), kb=kb, engine="python")
    assert (stats.rows, stats.audited, stats.skipped) == (6, 2, 4)


def test_csv_lists_empty_cells_and_known_empty(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(
        "id,metastatic_sites,prior_treatments,labs.platelets_10e9_l,pregnant,sex\n"
        "a, liver ; bone ,[],150,FALSE,female\n"
        "b,,,,,\n",
        encoding="utf-8",
    )
    table, problems, _ = read_all(path)
    assert problems == []
    rows = table.to_pylist()
    assert rows[0]["metastatic_sites"] == ["liver", "bone"]
    assert rows[0]["prior_treatments"] == []
    assert rows[0]["labs.platelets_10e9_l"] == 150.0
    assert rows[0]["pregnant"] is False
    assert rows[1]["metastatic_sites"] is None
    assert rows[1]["prior_treatments"] is None


def test_cross_field_problems_match_load_case(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(
        "id,primary_site,pancreas_region,sex,pregnant,disease_status,prior_treatments,progressed_on\n"
        "a,ileum,head,,,,,\n"
        "b,,,male,true,,,\n"
        "c,,,,,newly_diagnosed,prrt,prrt\n"
        "d,,,,,progressive,everolimus,prrt\n"
        "e,pancreas,head,female,true,progressive,prrt;everolimus,prrt\n",
        encoding="utf-8",
    )
    table, problems, skipped = read_all(path)
    assert skipped == 4
    assert table.column("id").to_pylist() == ["e"]
    fields = [p.split(": ")[1] for p in problems]
    assert fields == ["pancreas_region", "pregnant", "progressed_on", "progressed_on[0]"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".ndjson", ".jsonl"])
def test_round_trip_every_format(tmp_path: Path, suffix: str, kb: KnowledgeBase) -> None:
    from netboard.batch.synth import write_synth

    path = tmp_path / f"reg{suffix}"
    write_synth(path, 60, seed=5, given=True)
    table, problems, skipped = read_all(path)
    assert problems == []
    assert skipped == 0
    expected = synth_table(60, seed=5, given=True)
    assert table.column("id").to_pylist() == expected.column("id").to_pylist()
    for row, want in zip(table.to_pylist(), expected.to_pylist(), strict=True):
        assert row == {
            k: (float(x) if isinstance(x, int) and not isinstance(x, bool) else x)
            for k, x in want.items()
        }
    out = tmp_path / "result.parquet"
    writer = ResultWriter(out)
    audit_chunks(read_registry(path), kb=kb, engine="python", writer=writer)
    writer.close()
    result = pq.read_table(out)
    assert result.column_names == result_columns()
    for got, record in zip(result.to_pylist()[:15], expected.to_pylist()[:15], strict=False):
        case, _ = check_row(record)
        assert case is not None
        assert got == audit_row(case, kb, record["given"])


def test_result_csv_joins_lists(tmp_path: Path, kb: KnowledgeBase) -> None:
    src = tmp_path / "r.csv"
    src.write_text(HEADER + GOOD, encoding="utf-8")
    out = tmp_path / "result.csv"
    writer = ResultWriter(out)
    audit_chunks(read_registry(src), kb=kb, engine="python", writer=writer)
    writer.close()
    text = out.read_text(encoding="utf-8").splitlines()
    assert text[0].replace('"', "").split(",") == result_columns()
    expected = audit_row(
        load_case(
            {
                "id": "p1",
                "primary_site": "ileum",
                "ki67_percent": 2,
                "metastatic_sites": ["liver", "regional_lymph_nodes"],
                "sstr_imaging": "positive",
                "disease_status": "newly_diagnosed",
            }
        ),
        kb,
        ["somatostatin_analog"],
    )
    assert '"' + ";".join(expected["alerts"]) + '"' in text[1]
    assert not (tmp_path / "result.csv.partial").exists()


def test_ndjson_rows_are_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "r.ndjson"
    lines = [
        json.dumps({"id": "a", "primary_site": "ileum", "labs": {"platelets_10e9_l": 100}}),
        "",
        "{not json",
        json.dumps({"id": "c", "ki67_percent": "8"}),
        json.dumps(["x"]),
        json.dumps({"id": "d", "labs.platelets_10e9_l": 90, "given": ["prrt"]}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    table, problems, skipped = read_all(path)
    assert table.column("id").to_pylist() == ["a", "d"]
    assert skipped == 3
    assert problems[0].startswith("row 3: (row): not valid JSON")
    assert problems[1] == 'row 4: ki67_percent: expected a number, got "8"'
    assert problems[2].startswith("row 5: (row): expected a JSON object")


def test_parquet_typed_faults(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    pq.write_table(
        pa.table(
            {
                "id": ["a", "b", "c"],
                "ki67_percent": pa.array([5, None, 101], pa.int64()),
                "ecog": [1.0, 2.5, None],
                "metastatic_sites": [["liver"], ["livr"], []],
                "labs": [{"platelets_10e9_l": 1.0}, None, {"platelets_10e9_l": -1.0}],
            }
        ),
        path,
    )
    table, problems, _ = read_all(path)
    assert table.column("id").to_pylist() == ["a"]
    assert problems == [
        'row 2: metastatic_sites[0]: "livr" is not one of: liver, regional_lymph_nodes, '
        "distant_lymph_nodes, peritoneum, bone, lung, brain, ovary, other_extra_abdominal "
        "(did you mean liver?)",
        "row 2: ecog: expected a whole number 0-4, got 2.5",
        "row 3: ki67_percent: 101 is outside the possible range 0-100",
        "row 3: labs.platelets_10e9_l: -1 is outside the possible range 0-5000",
    ]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("r.csv", "id,ki67,primary_site\n", "unknown column 'ki67'"),
        ("r.csv", "", "empty file"),
        ("r.txt", "id\n", "unknown format '.txt'"),
        ("r.ndjson", '{"id": "a"}\n{"id": "b", "sitee": 1}\n', "unknown column 'sitee'"),
    ],
)
def test_unusable_files(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(RegistryError) as exc:
        list(read_registry(path))
    assert message in str(exc.value)


def test_header_only_is_zero_patients(tmp_path: Path, kb: KnowledgeBase) -> None:
    path = tmp_path / "r.csv"
    path.write_text(HEADER, encoding="utf-8")
    stats = audit_chunks(read_registry(path), kb=kb, engine="python")
    assert (stats.rows, stats.audited, stats.skipped) == (0, 0, 0)


def test_fast_validation_agrees_with_load_case(tmp_path: Path) -> None:
    """Fuzzed cells: the vectorised check flags exactly the rows load_case refuses."""
    import random

    rnd = random.Random(7)
    table = synth_table(300, seed=11, given=True)
    records = table.to_pylist()
    cells = {
        "ki67_percent": [-1, 100.5, 50, float("nan")],
        "ecog": [4, 5, 1.5, 0],
        "primary_site": ["ileum", "Ileum", "pancreas", ""],
        "pancreas_region": ["head", "tail", "nose"],
        "pregnant": [True, False],
        "sex": ["male", "female", "x"],
        "progressed_on": [["prrt"], ["somatostatin_analog"], []],
        "metastatic_sites": [["liver", "brain"], ["liver", "moon"], []],
        "labs.albumin_g_dl": [11.0, 3.0],
    }
    for record in records:
        for _ in range(2):
            key = rnd.choice(list(cells))
            record[key] = rnd.choice(cells[key])
    path = tmp_path / "fuzz.parquet"
    pq.write_table(pa.Table.from_pylist(records, schema=table.schema), path)
    valid, problems, _ = read_all(path)
    bad_rows = {int(p.split(":")[0].split()[1]) for p in problems}
    for number, record in enumerate(records, start=1):
        case, _ = check_row(record)
        assert (case is None) == (number in bad_rows), (number, record)
    assert valid.num_rows == len(records) - len(bad_rows)


def test_csv_row_with_wrong_cell_count_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(
        HEADER + GOOD + "p2,ileum\n" + GOOD.replace("p1", "p3") + "p4,ileum,140,,,,\n",
        encoding="utf-8",
    )
    table, problems, skipped = read_all(path)
    assert table.column("id").to_pylist() == ["p1", "p3"]
    assert skipped == 2
    assert sorted(problems) == [
        "row 2: (row): expected 7 cells, got 2",
        "row 4: ki67_percent: 140 is outside the possible range 0-100",
    ]
