"""The installed ``netboard`` command: exit codes, stdout/stderr discipline (contract v1).

Every test runs the console script that ``pip install`` put beside the interpreter, so a
broken entry point or a file missing from the package fails here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ANSWER_KEYS

NETBOARD = Path(sys.executable).parent / "netboard"
KB_DIR = Path(__file__).resolve().parent.parent / "src" / "netboard" / "kb"

ELIGIBILITY_NAMES = {"hepatic_resection", "liver_transplant", "prrt", "embolization"}

MIDGUT_CASE = {
    "id": "cli-midgut-1",
    "age_years": 61,
    "sex": "female",
    "primary_site": "ileum",
    "ki67_percent": 4,
    "metastatic_sites": ["liver", "regional_lymph_nodes"],
    "sstr_imaging": "positive",
    "disease_status": "newly_diagnosed",
}


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stderr.splitlines()


def netboard(*args: str, stdin: bytes | None = None) -> Run:
    proc = subprocess.run(
        [str(NETBOARD), *args], input=stdin, capture_output=True, timeout=60, check=False
    )
    return Run(
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )


def assert_refused(run: Run, *fields: str, lines: int | None = 1) -> None:
    """Exit 2, nothing on stdout, no traceback, and each field named on stderr."""
    assert run.code == 2, f"exit {run.code}; stderr: {run.stderr!r}"
    assert run.stdout == "", f"stdout must be empty on unusable input, got {run.stdout[:200]!r}"
    assert "Traceback" not in run.stderr, run.stderr
    if lines is not None:
        assert len(run.lines) == lines, f"expected {lines} stderr line(s): {run.lines!r}"
    for name in fields:
        assert any(name in line for line in run.lines), f"{name!r} not named in {run.lines!r}"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def recommend_file(path: Path) -> Run:
    return netboard("recommend", str(path), "--format", "json")


def test_console_script_is_installed() -> None:
    assert NETBOARD.exists(), f"console script missing at {NETBOARD}"


# --- --version ------------------------------------------------------------------------------


def test_version_prints_package_knowledge_base_and_contract() -> None:
    run = netboard("--version")
    assert run.code == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 3, lines
    assert re.fullmatch(r"netboard \d+\.\d+\.\d+\S*", lines[0]), lines[0]
    assert re.fullmatch(
        r"knowledge base \d{4}\.\d+\.\d+ \(released \d{4}-\d{2}-\d{2}\)", lines[1]
    ), lines[1]
    assert lines[2] == "contract 2"


# --- recommend: good input --------------------------------------------------------------------


def check_answer(run: Run, case_id: str | None) -> dict[str, object]:
    assert run.code == 0, run.stderr
    answer = json.loads(run.stdout)
    assert isinstance(answer, dict)
    assert set(answer) >= ANSWER_KEYS, sorted(ANSWER_KEYS - set(answer))
    assert answer["contract_version"] == "2"
    assert answer["case_id"] == case_id
    kb = answer["knowledge_base"]
    assert isinstance(kb, dict)
    assert {"version", "released"} <= set(kb)
    eligibility = answer["eligibility"]
    assert isinstance(eligibility, dict)
    assert set(eligibility) == ELIGIBILITY_NAMES
    for name, block in eligibility.items():
        assert block["status"] in {"eligible", "not_eligible", "undetermined"}, name
        for criterion in block["criteria"]:
            assert {"name", "met", "detail"} <= set(criterion)
            assert criterion["met"] in (True, False, None)
    for key in ("recommendations", "alerts", "monitoring", "missing_information", "references"):
        assert isinstance(answer[key], list), key
    classification = answer["classification"]
    assert isinstance(classification, dict)
    assert {"who_2019", "grade", "stage", "site_group", "functional"} <= set(classification)
    return answer


def test_recommend_json_file_gives_contract_answer(tmp_path: Path) -> None:
    path = write(tmp_path, "case.json", json.dumps(MIDGUT_CASE))
    answer = check_answer(recommend_file(path), "cli-midgut-1")
    refs = {r["id"] for r in answer["references"]}  # type: ignore[attr-defined]
    cited = {e for r in answer["recommendations"] for e in r["evidence"]}  # type: ignore[attr-defined]
    assert cited <= refs, f"evidence ids missing from references: {sorted(cited - refs)}"


def test_recommend_reads_json_from_stdin() -> None:
    run = netboard("recommend", "-", "--format", "json", stdin=json.dumps(MIDGUT_CASE).encode())
    check_answer(run, "cli-midgut-1")


def test_recommend_reads_yaml_from_stdin() -> None:
    text = "id: cli-yaml\nprimary_site: pancreas\nki67_percent: 12\nmetastatic_sites: [liver]\n"
    run = netboard("recommend", "-", "--format", "json", stdin=text.encode())
    check_answer(run, "cli-yaml")


def test_unquoted_no_in_yaml_is_the_word_no_not_false(tmp_path: Path) -> None:
    path = write(tmp_path, "case.yaml", "id: yaml12\nliver_resectable: no\n")
    check_answer(recommend_file(path), "yaml12")


def test_an_empty_case_is_answered_with_missing_information(tmp_path: Path) -> None:
    answer = check_answer(recommend_file(write(tmp_path, "case.json", "{}")), None)
    assert answer["missing_information"], "an empty case must list what is missing"


# --- recommend: unusable input, one stderr line per problem ----------------------------------


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ({"primary_sight": "ileum"}, "primary_sight"),
        ({"sex": "unknown"}, "sex"),
        ({"age_years": "sixty"}, "age_years"),
        ({"ki67_percent": 140}, "ki67_percent"),
        ({"liver_tumor_burden_percent": -5}, "liver_tumor_burden_percent"),
        ({"ecog": 1.5}, "ecog"),
        ({"metastatic_sites": ["liver", "moon"]}, "metastatic_sites[1]"),
        ({"labs": {"platelets": 150}}, "labs.platelets"),
        ({"pregnant": "yes"}, "pregnant"),
        ({"primary_resected": "true"}, "primary_resected"),
        ({"labs": [1, 2]}, "labs"),
        (
            {"prior_treatments": ["somatostatin_analog"], "progressed_on": ["everolimus"]},
            "progressed_on[0]",
        ),
        ({"primary_site": "ileum", "pancreas_region": "head"}, "pancreas_region"),
        ({"pregnant": True, "sex": "male"}, "pregnant"),
        (
            {"disease_status": "newly_diagnosed", "progressed_on": ["somatostatin_analog"]},
            "progressed_on",
        ),
    ],
    ids=[
        "unknown-key",
        "value-outside-list",
        "wrong-type",
        "ki67-140",
        "negative-liver-burden",
        "ecog-1.5",
        "list-item-invalid",
        "labs-unknown-key",
        "pregnant-yes-string",
        "boolean-as-string",
        "labs-not-object",
        "progressed-on-not-in-prior",
        "pancreas-region-non-pancreas",
        "pregnant-male",
        "progressed-on-newly-diagnosed",
    ],
)
def test_each_invalid_field_is_refused_on_one_line_naming_it(
    tmp_path: Path, content: dict[str, object], field: str
) -> None:
    run = recommend_file(write(tmp_path, "case.json", json.dumps(content)))
    assert_refused(run, field)


def test_pregnant_yes_unquoted_in_yaml_is_refused_with_a_message(tmp_path: Path) -> None:
    run = recommend_file(write(tmp_path, "case.yaml", "pregnant: yes\n"))
    assert_refused(run, "pregnant")
    assert "true or false" in run.stderr


def test_several_problems_give_one_line_each(tmp_path: Path) -> None:
    case = {
        "primary_sight": "ileum",
        "sex": "x",
        "ki67_percent": 140,
        "ecog": 7,
        "metastatic_sites": ["liver", "moon"],
        "labs": {"platelets": 1},
    }
    run = recommend_file(write(tmp_path, "case.json", json.dumps(case)))
    assert_refused(
        run,
        "primary_sight",
        "sex",
        "ki67_percent",
        "ecog",
        "metastatic_sites[1]",
        "labs.platelets",
        lines=6,
    )


@pytest.mark.parametrize(
    ("content", "name"),
    [
        ("- liver\n- bone\n", "yaml-list"),
        ("just some words\n", "yaml-scalar"),
        ("[1, 2]", "json-list"),
        ("42", "json-number"),
    ],
    ids=["yaml-list", "yaml-scalar", "json-list", "json-number"],
)
def test_a_document_that_is_not_an_object_is_refused(
    tmp_path: Path, content: str, name: str
) -> None:
    run = recommend_file(write(tmp_path, f"{name}.yaml", content))
    assert_refused(run, "(case)")


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "no-such-case.json"
    assert_refused(recommend_file(path), "no-such-case.json")


def test_a_directory_is_refused_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert_refused(recommend_file(folder), "a-folder")


def test_an_unreadable_path_is_refused(tmp_path: Path) -> None:
    # A path through a regular file cannot be opened whatever the user's permissions.
    blocker = write(tmp_path, "blocker.json", "{}")
    assert_refused(recommend_file(blocker / "case.json"), "blocker.json")


def test_a_dangling_symlink_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "gone.json")
    assert_refused(recommend_file(link), "link.json")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.json", ""),
        ("blank.yaml", "  \n\n"),
        ("invalid.yaml", "primary_site: [ileum\nki67_percent: 3\n"),
        ("invalid-tab.yaml", "primary_site: ileum\n\tki67_percent: 3\n"),
        ("invalid.json", '{"primary_site": "ileum"'),
        ("invalid-array.json", '["liver", '),
        ("duplicate.yaml", "sex: male\nsex: female\n"),
        ("duplicate-nested.yaml", "labs:\n  hemoglobin_g_dl: 12\n  hemoglobin_g_dl: 9\n"),
        ("duplicate.json", '{"sex": "male", "sex": "female"}'),
        ("duplicate-nested.json", '{"labs": {"hemoglobin_g_dl": 12, "hemoglobin_g_dl": 9}}'),
        ("latin1.yaml", b"id: caf\xe9\n"),
        ("binary.json", b"\xff\xfe\x00\x01"),
    ],
    ids=lambda x: x if isinstance(x, str) and x.endswith((".json", ".yaml")) else "-",
)
def test_an_unusable_document_is_refused_on_one_line_naming_the_file(
    tmp_path: Path, name: str, content: str | bytes
) -> None:
    assert_refused(recommend_file(write(tmp_path, name, content)), name)


def test_a_duplicate_key_is_named_in_the_message(tmp_path: Path) -> None:
    for name, text in (("d.yaml", "ecog: 1\necog: 2\n"), ("d.json", '{"ecog": 1, "ecog": 2}')):
        run = recommend_file(write(tmp_path, name, text))
        assert_refused(run, name)
        assert "duplicate key 'ecog'" in run.stderr, run.stderr


def test_a_file_over_one_megabyte_is_refused(tmp_path: Path) -> None:
    text = "id: big\n" + "# padding\n" * 100_001
    path = write(tmp_path, "big.yaml", text)
    assert path.stat().st_size > 1_000_000
    run = recommend_file(path)
    assert_refused(run, "big.yaml")
    assert "larger than" in run.stderr


def test_standard_input_over_one_megabyte_is_refused() -> None:
    text = ("id: big\n" + "# padding\n" * 100_001).encode()
    run = netboard("recommend", "-", "--format", "json", stdin=text)
    assert_refused(run, "(stdin)")


def test_invalid_input_on_stdin_is_named_stdin() -> None:
    run = netboard("recommend", "-", "--format", "json", stdin=b'{"sex": ')
    assert_refused(run, "(stdin)")


def test_json_with_a_missing_value_is_refused_not_read_as_yaml_null(tmp_path: Path) -> None:
    # Not valid JSON; the YAML fallback reads it as {"ki67_percent": null}, so the Ki-67
    # the user meant to give silently becomes "unknown" and an answer is returned.
    path = write(tmp_path, "case.json", '{"primary_site": "ileum", "ki67_percent": }')
    assert_refused(recommend_file(path), "case.json")


def test_a_field_name_with_a_line_break_still_gives_one_stderr_line(tmp_path: Path) -> None:
    path = write(tmp_path, "case.json", json.dumps({"bad\nkey": 1, "labs": {"x\ny": 1}}))
    assert_refused(recommend_file(path), lines=2)


# --- argument errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("frobnicate",),
        ("--bogus",),
        ("recommend",),
        ("recommend", "case.json", "--format", "pdf"),
        ("recommend", "case.json", "--frmat", "json"),
        ("kb", "frobnicate"),
    ],
    ids=[
        "unknown-subcommand",
        "unknown-flag",
        "missing-case",
        "bad-format",
        "misspelt-flag",
        "unknown-kb-subcommand",
    ],
)
def test_bad_arguments_exit_2_with_one_clean_line(args: tuple[str, ...]) -> None:
    run = netboard(*args)
    assert_refused(run)
    assert run.lines[0].startswith("netboard: "), run.lines


# --- kb check ---------------------------------------------------------------------------------


def test_kb_check_on_the_packaged_knowledge_base_prints_counts() -> None:
    run = netboard("kb", "check")
    assert run.code == 0, run.stderr
    assert run.stderr == ""
    assert "OK" in run.stdout
    for what in ("references", "facts", "rules", "alerts", "eligibility sets", "monitoring items"):
        match = re.search(rf"(\d+) {what}", run.stdout)
        assert match, f"no count of {what} in {run.stdout!r}"
        assert int(match.group(1)) > 0, what


def test_kb_check_counts_rules_by_topic_and_by_phase() -> None:
    run = netboard("kb", "check")
    assert run.code == 0, run.stderr
    topics = run.stdout.split("rules by topic:")[1].split("rules by phase:")
    assert re.search(r"^\s+primary_tumor\s+\d+\s+\(\d+ recommended", topics[0], re.M), run.stdout
    for phase in ("primary_tumor", "progression", "supportive"):
        assert re.search(rf"^\s+{phase}\s+\d+\s+\(", topics[1], re.M), run.stdout


def test_kb_check_on_a_knowledge_base_with_a_dangling_evidence_id_names_it(
    tmp_path: Path,
) -> None:
    kb_dir = tmp_path / "kb"
    shutil.copytree(KB_DIR, kb_dir, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    alerts = kb_dir / "alerts.yaml"
    text = alerts.read_text(encoding="utf-8")
    patched = re.sub(r"evidence: \[", "evidence: [no_such_reference_2099, ", text, count=1)
    assert patched != text
    alerts.write_text(patched, encoding="utf-8")
    run = netboard("kb", "check", str(kb_dir))
    assert_refused(run, "no_such_reference_2099", lines=None)
    assert len(run.lines) >= 1


def test_kb_check_on_a_missing_directory_is_refused(tmp_path: Path) -> None:
    run = netboard("kb", "check", str(tmp_path / "nowhere"))
    assert_refused(run, "nowhere", lines=None)
