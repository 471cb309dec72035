"""A YAML flow-style case file is YAML, not bad JSON (issue 14); real JSON stays strict."""

from __future__ import annotations

import pytest

from netboard.case import load_case
from netboard.documents import parse_document, yaml_flow_mapping
from netboard.errors import CaseError


def test_a_yaml_flow_mapping_is_read_as_yaml() -> None:
    text = "{primary_site: ileum, ki67_percent: 2, metastatic_sites: [liver, bone]}\n"
    assert parse_document(text) == {
        "primary_site": "ileum",
        "ki67_percent": 2,
        "metastatic_sites": ["liver", "bone"],
    }
    assert load_case(parse_document(text)).primary_site == "ileum"


def test_yaml_flow_keeps_yaml_1_2_words_and_refuses_duplicate_keys() -> None:
    assert parse_document("{liver_resectable: no, pregnant: false}") == {
        "liver_resectable": "no",
        "pregnant": False,
    }
    with pytest.raises(CaseError, match="not valid JSON"):
        parse_document("{grade: g1, grade: g2}")


@pytest.mark.parametrize(
    "text",
    [
        '{"primary_site": }',  # a missing value: JSON, never a silent null
        '{"primary_site": "ileum",}',  # a trailing comma
        "{'primary_site': 'ileum'}",  # single quotes are not JSON (nor meant as YAML keys)
        '{"ki67_percent": NaN}',
        "[primary_site, ileum]",  # a flow sequence is no case
        "{primary_site: [ileum}",  # broken YAML too
    ],
)
def test_json_errors_stay_json_errors(text: str) -> None:
    with pytest.raises(CaseError, match="not valid JSON"):
        parse_document(text)


def test_strict_json_is_unchanged() -> None:
    assert parse_document('{"primary_site": "ileum"}') == {"primary_site": "ileum"}
    assert yaml_flow_mapping('{"primary_site": "ileum"}') is None
