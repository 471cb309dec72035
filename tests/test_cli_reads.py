"""Hostile files given to the command line: every read is bounded before parsing (issue 12).

Each case reproduces a defect of the review: a FIFO without a writer hung, ``/dev/zero`` ran
until MemoryError, a 514-byte YAML alias bomb took 27 s and 637 MB, complex keys and long
integers gave tracebacks, and a lone surrogate escape crashed the report. The same readers
serve case files, FHIR files and trust files, so each is tried through more than one of them.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from test_cli import NETBOARD, Run, assert_refused, netboard, write

#: Nine levels of nine aliases: 9**6 = 531,441 values from 300 bytes of YAML.
ALIAS_BOMB = (
    'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "metastatic_sites: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
)


def timed(*args: str, limit: float = 20.0) -> Run:
    """Run the CLI; a hang fails the test after ``limit`` seconds instead of blocking."""
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [str(NETBOARD), *args], capture_output=True, timeout=limit, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"netboard {' '.join(args)} still running after {limit} s")
    assert time.monotonic() - started < limit
    return Run(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


@pytest.mark.parametrize("option", [(), ("--fhir",)], ids=["case", "fhir"])
def test_a_fifo_without_a_writer_is_refused_at_once(tmp_path: Path, option: tuple[str]) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    run = timed("recommend", *option, str(fifo))
    assert_refused(run, "pipe.json", "FIFO")


@pytest.mark.parametrize("option", [(), ("--fhir",)], ids=["case", "fhir"])
def test_a_character_device_is_refused_without_reading_it(option: tuple[str]) -> None:
    run = timed("recommend", *option, "/dev/zero")
    assert_refused(run, "/dev/zero", "character device")


def test_a_fifo_trust_file_is_refused_by_serve(tmp_path: Path) -> None:
    fifo = tmp_path / "trust.yaml"
    os.mkfifo(fifo)
    run = timed("serve", "--trust", str(fifo), "--public-url", "https://cds.example.org")
    assert_refused(run, "trust.yaml", "FIFO")


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    run = timed("recommend", str(write(tmp_path, "bomb.yaml", ALIAS_BOMB)), limit=15)
    assert_refused(run, "bomb.yaml", "aliases expand")


def test_a_recursive_yaml_alias_is_refused(tmp_path: Path) -> None:
    run = timed("recommend", str(write(tmp_path, "loop.yaml", "metastatic_sites: &a [*a]\n")))
    assert_refused(run, "loop.yaml", "refers to itself")


def test_a_few_aliases_in_a_case_still_work(tmp_path: Path) -> None:
    text = "primary_site: &p ileum\nid: *p\nmetastatic_sites: [liver]\n"
    run = netboard("recommend", str(write(tmp_path, "alias.yaml", text)), "--format", "json")
    assert run.code == 0, run.stderr


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("complex-key.yaml", "? [primary_site, ileum]\n: 1\n", "plain value"),
        ("complex-key-map.yaml", "? {a: 1}\n: 1\n", "plain value"),
        ("long-int.yaml", "ki67_percent: " + "9" * 5000 + "\n", "5000 digits"),
        ("long-int.json", '{"ki67_percent": ' + "9" * 5000 + "}", "more than 4300 digits"),
        ("surrogate.json", '{"primary_site": "\\ud800"}', "primary_site"),
        ("surrogate-id.json", '{"id": "\\udfff x"}', "surrogate"),
        ("surrogate-key.json", '{"labs": {"\\ud83d": 1}}', "labs."),
        ("surrogate.yaml", 'id: "\\ud800"\n', "id"),
    ],
    ids=lambda x: x if isinstance(x, str) and x.endswith((".json", ".yaml")) else "",
)
def test_hostile_documents_get_one_line_not_a_traceback(
    tmp_path: Path, name: str, content: str, words: str
) -> None:
    run = timed("recommend", str(write(tmp_path, name, content)), "--format", "json")
    assert_refused(run, name, words)


def test_a_lone_surrogate_in_a_fhir_file_is_refused(tmp_path: Path) -> None:
    bundle = '{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": '
    bundle += '{"resourceType": "Patient", "id": "\\ud800"}}]}'
    run = timed("recommend", "--fhir", str(write(tmp_path, "b.json", bundle)))
    assert_refused(run, "b.json", "surrogate")


def test_standard_input_stays_allowed_and_bounded() -> None:
    run = netboard("recommend", "-", stdin=b'{"primary_site": "\\ud800"}')
    assert_refused(run, "(stdin)", "surrogate")
