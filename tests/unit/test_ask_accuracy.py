"""``netboard ask`` over the phrasing corpus: per-field precision and recall, negation errors.

Targets (free-text issue): precision >= 0.98 and recall >= 0.95, micro-averaged over every
field value the corpus states, and no negated or uncertain mention read as a fact. The
counting is in ``ask_scoring.py``, which ``bench/ask_accuracy.py`` uses for the published
figures in ``docs/benchmarks.md``.
"""

from __future__ import annotations

from typing import Any

import pytest
from ask_scoring import (
    HELDOUT,
    HELDOUT_V2,
    TARGET_PRECISION,
    TARGET_RECALL,
    FieldScore,
    Score,
    load_corpus,
    negation_items,
    score_corpus,
    score_item,
)

from netboard.case import load_case
from netboard.parse import parse_text

ITEMS = load_corpus()


@pytest.fixture(scope="module")
def score() -> Score:
    return score_corpus(ITEMS, lambda text: parse_text(text).case_dict)


def _misses(score: Score) -> str:
    return "\n".join(f"{t!r}: {f} expected {w!r}, got {h!r}" for t, f, w, h in score.misses[:40])


def test_corpus_size_and_negations() -> None:
    assert len(ITEMS) >= 220
    assert len(negation_items(ITEMS)) >= 30


def test_overall_precision_and_recall_meet_the_targets(score: Score) -> None:
    total = score.total
    assert total.precision >= TARGET_PRECISION, _misses(score)
    assert total.recall >= TARGET_RECALL, _misses(score)


def test_no_negated_or_uncertain_mention_is_extracted(score: Score) -> None:
    assert score.negations_checked >= 30
    assert score.negation_errors == []


def test_every_field_the_corpus_states_is_scored(score: Score) -> None:
    fields = {f for f, s in score.fields.items() if s.support}
    assert {"primary_site", "metastatic_sites", "ki67_percent", "grade", "sstr_imaging"} <= fields
    assert any(f.startswith("labs.") for f in fields)


def test_heldout_phrasings_are_valid_and_leak_no_negation() -> None:
    # Only well-formedness and negation here: the held-out set is for the published
    # estimate (bench/ask_accuracy.py), not a target to tune on.
    heldout = load_corpus(HELDOUT)
    assert len(heldout) >= 30
    assert not {i["text"] for i in heldout} & {i["text"] for i in ITEMS}
    for item in heldout:
        load_case(item["expect"])
    score = score_corpus(heldout, lambda text: parse_text(text).case_dict)
    assert score.negation_errors == []


def test_case_report_heldout_set_is_valid_disjoint_and_leaks_no_negation() -> None:
    # Issue 14: at least 60 notes and questions from published case reports, written before
    # the tuning; scored by bench/ask_accuracy.py, never asserted value by value here.
    heldout = load_corpus(HELDOUT_V2)
    assert len(heldout) >= 60
    texts = {i["text"] for i in heldout}
    assert not texts & {i["text"] for i in ITEMS}
    assert not texts & {i["text"] for i in load_corpus(HELDOUT)}
    for item in heldout:
        load_case(item["expect"])
    assert score_corpus(heldout, lambda text: parse_text(text).case_dict).negation_errors == []


def test_an_empty_list_is_one_scored_value() -> None:
    s = _score({"metastatic_sites": []}, {"metastatic_sites": []})
    assert _counts(s.fields["metastatic_sites"]) == (1, 0, 0)
    s = _score({"metastatic_sites": []}, {"metastatic_sites": ["liver"]})
    assert _counts(s.fields["metastatic_sites"]) == (0, 1, 1)
    s = _score({}, {"metastatic_sites": []})
    assert _counts(s.fields["metastatic_sites"]) == (0, 1, 0)


# --- the counting itself ------------------------------------------------------------------


def _score(expect: dict[str, Any], got: dict[str, Any], **extra: Any) -> Score:
    s = Score()
    score_item({"text": "t", "expect": expect, **extra}, got, s)
    return s


def _counts(s: FieldScore) -> tuple[int, int, int]:
    return s.tp, s.fp, s.fn


def test_list_fields_are_scored_per_element() -> None:
    s = _score({"metastatic_sites": ["liver", "bone"]}, {"metastatic_sites": ["liver", "lung"]})
    assert _counts(s.fields["metastatic_sites"]) == (1, 1, 1)


def test_a_wrong_single_value_is_a_false_positive_and_a_false_negative() -> None:
    s = _score({"grade": "g2", "ecog": 1}, {"grade": "g3", "sex": "male"})
    assert _counts(s.fields["grade"]) == (0, 1, 1)
    assert _counts(s.fields["ecog"]) == (0, 0, 1)
    assert _counts(s.fields["sex"]) == (0, 1, 0)


def test_labs_are_scored_per_value_and_booleans_only_match_booleans() -> None:
    s = _score(
        {"labs": {"platelets_10e9_l": 60}, "pregnant": True},
        {"labs": {"platelets_10e9_l": 60, "hemoglobin_g_dl": 9}, "pregnant": 1},
    )
    assert _counts(s.fields["labs.platelets_10e9_l"]) == (1, 0, 0)
    assert _counts(s.fields["labs.hemoglobin_g_dl"]) == (0, 1, 0)
    assert _counts(s.fields["pregnant"]) == (0, 1, 1)
    assert s.exact == 0


def test_a_value_marked_not_that_is_extracted_is_a_negation_error() -> None:
    s = _score({}, {"metastatic_sites": ["bone"]}, **{"not": {"metastatic_sites": ["bone"]}})
    assert [(e.field, e.value) for e in s.negation_errors] == [("metastatic_sites", "bone")]
    s = _score({}, {}, **{"not": {"pregnant": [True]}})
    assert s.negation_errors == []
    assert s.negations_checked == 1
    total = s.total
    assert (total.precision, total.recall) == (1.0, 1.0)


def test_a_stated_false_is_not_a_negated_true() -> None:
    s = _score({"pregnant": False}, {"pregnant": False}, **{"not": {"pregnant": [True]}})
    assert s.negation_errors == []
    assert _counts(s.fields["pregnant"]) == (1, 0, 0)
