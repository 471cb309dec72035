"""Report renderers: golden files over the public vignettes, and properties of every report.

The Markdown and HTML reports show what the JSON answer carries and nothing else, so the
checks here are structural: every citation marker resolves, every recommendation appears, the
HTML is well formed, and the same answer always gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from conftest import SHARED, Golden
from netboard.answer import (
    Answer,
    AppliesIf,
    Classification,
    Criterion,
    Disagreement,
    Dose,
    Eligibility,
    Monitoring,
    Reference,
)
from netboard.case import load_case
from netboard.engine.recommend import recommend
from netboard.kb import KnowledgeBase
from netboard.reports import RENDERERS, render_json
from netboard.reports.html import render_html
from netboard.reports.markdown import render_markdown
from netboard.vocab import EligibilityName, EligibilityStatus, ReferenceKind

CASES_DIR = SHARED / "cases"


def _vignettes() -> list[Path]:
    if not CASES_DIR.is_dir():
        return []
    return [
        p
        for p in sorted(CASES_DIR.glob("*.yaml"))
        if isinstance(doc := yaml.safe_load(p.read_text(encoding="utf-8")), dict) and "case" in doc
    ]


VIGNETTES = _vignettes()
VIGNETTE_PARAMS = [pytest.param(p, id=p.stem) for p in VIGNETTES] or [
    pytest.param(None, id="no-vignettes", marks=pytest.mark.skip(reason=f"{CASES_DIR} is absent"))
]


def _answer(path: Path, kb: KnowledgeBase) -> Answer:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return recommend(load_case(doc["case"]), kb=kb)


@pytest.fixture(scope="module")
def answers(kb: KnowledgeBase) -> dict[str, Answer]:
    return {p.stem: _answer(p, kb) for p in VIGNETTES}


# --- golden files ------------------------------------------------------------------------


@pytest.mark.parametrize("path", VIGNETTE_PARAMS)
def test_reports_match_their_golden_files(
    path: Path, answers: dict[str, Answer], golden: Golden
) -> None:
    answer = answers[path.stem]
    golden.check(f"{path.stem}.json", render_json(answer))
    golden.check(f"{path.stem}.md", render_markdown(answer))
    golden.check(f"{path.stem}.html", render_html(answer))


# --- properties of every vignette's report -----------------------------------------------

MD_MARKER = re.compile(r"(?<![\\\[])\[(\d+)\](?!\()")
HTML_MARKER = re.compile(r'<a class="cite" href="#ref-(\d+)">\[(\d+)\]</a>')
HTML_REF = re.compile(r'<li id="ref-(\d+)" value="(\d+)" data-ref-id="([^"]+)"')


def _cited_numbers(answer: Answer) -> set[int]:
    """The reference numbers of every evidence id the report shows a statement for: plan
    steps, presumptions, every option, the doses of the plan's drugs, alerts, criteria,
    monitoring and disagreements."""
    number = {r.id: n for n, r in enumerate(answer.references, start=1)}
    ids: list[str] = []
    in_plan = {c for step in answer.plan for c in step.codes}
    for step in answer.plan:
        ids += step.evidence
    for p in answer.presumptions:
        ids += p.evidence
    for rec in answer.recommendations:
        ids += rec.evidence
        if rec.code in in_plan and rec.status.positive:
            for dose in rec.dosing:
                ids += dose.evidence
    for alert in answer.alerts:
        ids += alert.evidence
    for check in answer.eligibility:
        for criterion in check.criteria:
            ids += criterion.evidence
    for item in answer.monitoring:
        ids += item.evidence
    for d in answer.disagreements:
        ids += d.evidence
    return {number[i] for i in ids}


@pytest.mark.parametrize("path", VIGNETTE_PARAMS)
def test_every_markdown_marker_resolves_to_a_reference(
    path: Path, answers: dict[str, Answer]
) -> None:
    answer = answers[path.stem]
    text = render_markdown(answer)
    markers = {int(n) for n in MD_MARKER.findall(text)}
    n_refs = len(answer.references)
    assert markers <= set(range(1, n_refs + 1)), f"{path.name}: marker beyond the reference list"
    assert markers == _cited_numbers(answer), f"{path.name}: markers differ from the evidence"
    listed = [int(n) for n in re.findall(r"^(\d+)\. ", text.split("\n## References\n")[1], re.M)]
    assert listed == list(range(1, n_refs + 1)), f"{path.name}: reference list is not 1..N"
    assert "[?" not in text, f"{path.name}: unresolved citation"


@pytest.mark.parametrize("path", VIGNETTE_PARAMS)
def test_every_html_marker_resolves_to_a_reference(path: Path, answers: dict[str, Answer]) -> None:
    answer = answers[path.stem]
    text = render_html(answer)
    pairs = HTML_MARKER.findall(text)
    assert all(a == b for a, b in pairs), f"{path.name}: marker text and link disagree"
    markers = {int(a) for a, _ in pairs}
    assert markers == _cited_numbers(answer), f"{path.name}: markers differ from the evidence"
    refs = HTML_REF.findall(text)
    assert [(int(a), int(b), c) for a, b, c in refs] == [
        (n, n, r.id) for n, r in enumerate(answer.references, start=1)
    ], f"{path.name}: reference list does not follow answer.references"
    assert "unresolved" not in text.split("<style>")[0] + text.split("</style>")[1]


@pytest.mark.parametrize("path", VIGNETTE_PARAMS)
def test_every_recommendation_appears_in_both_reports(
    path: Path, answers: dict[str, Answer]
) -> None:
    answer = answers[path.stem]
    markdown, html = render_markdown(answer, verbose=True), render_html(answer)
    for rec in answer.recommendations:
        assert f"`{rec.code}`" in markdown, f"{path.name}: {rec.code} missing from Markdown"
        assert f'data-code="{rec.code}"' in html, f"{path.name}: {rec.code} missing from HTML"
    shown = re.findall(
        r'<article class="recommendation" id="rec-(\d+)" data-code="([a-z_]+)" '
        r'data-status="([a-z_]+)"',
        html,
    )
    # Phases are grouped in contract order; the answer is already sorted that way.
    assert [(c, s) for _, c, s in shown] == [
        (str(r.code), str(r.status)) for r in answer.recommendations
    ], f"{path.name}: HTML recommendations not in answer order"
    assert sorted(int(i) for i, _, _ in shown) == list(range(1, len(answer.recommendations) + 1))


class _TagBalance(HTMLParser):
    """Check that every opened element is closed in order (void elements excepted)."""

    VOID = frozenset({"meta", "link", "br", "hr", "img", "input", "col", "wbr", "source"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids += [v for k, v in attrs if k == "id" and v is not None]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()


@pytest.mark.parametrize("path", VIGNETTE_PARAMS)
def test_html_report_is_well_formed(path: Path, answers: dict[str, Answer]) -> None:
    answer = answers[path.stem]
    text = render_html(answer)
    parser = _TagBalance()
    parser.feed(text)
    parser.close()
    assert parser.problems == [], f"{path.name}: {parser.problems[:5]}"
    assert parser.stack == [], f"{path.name}: unclosed {parser.stack}"
    assert len(parser.ids) == len(set(parser.ids)), f"{path.name}: duplicate element ids"
    assert text.startswith('<!DOCTYPE html>\n<html lang="en">')
    assert '<meta charset="utf-8">' in text
    assert f"<title>netboard tumour board report: {answer.case_id}</title>" in text
    for leftover in ("{{", "}}", "{%", "%}", "{#"):
        assert leftover not in text, f"{path.name}: template leftover {leftover!r}"
    assert "<script" not in text
    assert "http" not in text.split("<body>")[0], f"{path.name}: external asset in <head>"


@pytest.mark.parametrize("path", VIGNETTE_PARAMS)
def test_markdown_report_has_no_raw_html_or_template_leftovers(
    path: Path, answers: dict[str, Answer]
) -> None:
    text = render_markdown(answers[path.stem])
    assert re.search(r"<(?!https?://)[A-Za-z/!?]", text) is None, f"{path.name}: raw HTML"
    for leftover in ("{{", "}}", "{%", "%}", "{#"):
        assert leftover not in text, f"{path.name}: template leftover {leftover!r}"


@pytest.mark.parametrize("path", VIGNETTE_PARAMS)
def test_markdown_sections_follow_the_board_order(path: Path, answers: dict[str, Answer]) -> None:
    """Plan first, then what it presumes and what changes, then the details; every branch in
    the appendix; the references last."""
    answer = answers[path.stem]
    text = render_markdown(answer)
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    expected = ["## Bottom line"]
    if answer.plan:
        expected.append("## Plan")
    if answer.presumptions:
        expected.append("## Presumed, because the case does not say")
    if answer.what_if:
        expected.append("## If a presumption is wrong")
    expected.append("## Alerts for the plan")
    if any(
        r.dosing
        for r in answer.recommendations
        if r.code in {c for s in answer.plan for c in s.codes}
    ):
        expected.append("## Doses of the plan's drugs")
    expected.append("## Eligibility in brief")
    if answer.monitoring:
        expected.append("## Monitoring")
    if answer.missing_information:
        expected.append("## Missing information")
    if any(not r.status.positive and r.applies_if is None for r in answer.recommendations):
        expected.append("## Not advised")
    if answer.disagreements:
        expected.append("## Where sources disagree")
    expected += ["## Appendix: every option, branch by branch", "## References"]
    assert headings == expected, f"{path.name}: sections out of order"


def test_the_seed_question_report_stays_short(kb: KnowledgeBase) -> None:
    """The board answer to the seed question, before the appendix, in under 2,500 words."""
    from netboard.parse.ask import ask

    result = ask(
        "Treatment of stage 4 neuroendocrine tumor of sigmoid with liver metastases", kb=kb
    )
    main_part = render_markdown(result.answer).split("## Appendix")[0]
    assert len(main_part.split()) < 2500


def test_rule_ids_and_codes_stay_out_of_the_readers_view(answers: dict[str, Answer]) -> None:
    answer = answers["02-seed-sigmoid-case"]
    text = render_markdown(answer)
    assert "rule `" not in text
    assert "labs.platelets_10e9_l" not in text
    assert "not ((" not in text
    assert all(r.rule_id not in text for r in answer.recommendations)
    verbose = render_markdown(answer, verbose=True)
    assert all(r.rule_id in verbose for r in answer.recommendations)


@pytest.mark.parametrize("path", VIGNETTE_PARAMS)
def test_rendering_twice_gives_identical_bytes(path: Path, answers: dict[str, Answer]) -> None:
    answer = answers[path.stem]
    for fmt, render in RENDERERS.items():
        first, second = render(answer), render(answer)
        assert first.encode() == second.encode(), f"{path.name}: {fmt} output varies"
        assert first.endswith("\n"), f"{path.name}: {fmt} lacks a final newline"
        assert not first.endswith("\n\n"), f"{path.name}: {fmt} ends with a blank line"


# --- edge cases on a hand-made answer ----------------------------------------------------


@pytest.fixture
def tricky() -> Answer:
    """A small answer whose text would break naive Markdown or HTML output."""
    refs = (
        Reference(
            id="g1", citation="Guideline | with a pipe", year=2020, kind=ReferenceKind.GUIDELINE
        ),
        Reference(
            id="t1",
            citation="Trial *stars* and <b>tags</b>",
            year=None,
            kind=ReferenceKind.TRIAL,
            url="https://example.org/t1?a=1&b=2",
            note="check me",
        ),
    )
    return Answer(
        contract_version="1",
        kb_version="9.9.9",
        kb_released="2099-01-01",
        case_id=None,
        summary="1. Not a list <script>alert(1)</script>",
        classification=Classification(
            who_2019="net_g1",
            grade=None,
            stage="IV",
            site_group="small_intestine",
            functional="carcinoid_syndrome",
            notes=("Grade derived | from Ki-67",),
        ),
        recommendations=(),
        alerts=(),
        eligibility=(
            Eligibility(
                name=EligibilityName.PRRT,
                title="PRRT",
                status=EligibilityStatus.UNDETERMINED,
                criteria=(
                    Criterion(name="a | b", met=None, detail="x", evidence=("g1", "nowhere")),
                ),
            ),
        ),
        monitoring=(
            Monitoring(what="CT | MRI", interval="3 months", reason="r", evidence=("t1",)),
        ),
        missing_information=(),
        references=refs,
        disagreements=(Disagreement(topic="Topic", text="Text", evidence=("t1", "g1")),),
    )


def test_markdown_escapes_table_pipes_and_markup(tricky: Answer, kb: KnowledgeBase) -> None:
    text = render_markdown(tricky, labels=kb.labels)
    assert "| a \\| b | Unknown |" in text
    assert "| CT \\| MRI | 3 months |" in text
    assert "Guideline \\| with a pipe" not in text  # references are not a table: kept verbatim
    assert "1. Guideline | with a pipe (2020)" in text
    assert "2. Trial \\*stars\\* and \\<b>tags\\</b> <https://example.org/t1?a=1&b=2>" in text
    assert "1\\. Not a list \\<script>" in text
    assert "# netboard tumour board report: (no case id)" in text
    assert "| Grade | not stated |" in text
    assert "| Functional status | carcinoid syndrome |" in text
    assert "- Grade derived | from Ki-67" in text
    assert "## Plan" not in text  # no plan, no empty plan table
    assert "\\[? nowhere\\]" in text  # an id missing from the references stays visible
    assert "## Where sources disagree\n\n- **Topic:** Text [1][2]" in text


def test_html_escapes_text_and_marks_unresolved_citations(
    tricky: Answer, kb: KnowledgeBase
) -> None:
    text = render_html(tricky, labels=kb.labels)
    assert "<script>" not in text
    assert "1. Not a list &lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert 'href="https://example.org/t1?a=1&amp;b=2"' in text
    assert '<span class="cite unresolved" data-ref-id="nowhere">[? nowhere]</span>' in text
    assert "<title>netboard tumour board report: (no case id)</title>" in text
    assert 'data-met="unknown"' in text
    assert "@media print" in text
    assert "size: A4" in text


def test_branch_options_read_as_plain_conditions(tricky: Answer, kb: KnowledgeBase) -> None:
    from netboard.answer import Recommendation
    from netboard.vocab import Intervention, Phase, Status

    def rec(code: Intervention, status: Status, order: int, branch: str | None) -> Recommendation:
        return Recommendation(
            code=code,
            status=status,
            phase=Phase.LIVER_DIRECTED,
            order=order,
            rationale="because",
            evidence=("g1",),
            rule_id=f"test.{code}",
            dosing=(Dose(text="dose", evidence=("t1",)),) if code is Intervention.TAE else (),
            applies_if=AppliesIf(fields=("comorbidities",), condition=branch) if branch else None,
        )

    answer = dataclasses.replace(
        tricky,
        recommendations=(
            rec(Intervention.TACE, Status.RECOMMENDED, 4, "no cirrhosis"),
            rec(Intervention.TAE, Status.CONSIDER, 4, None),
            rec(Intervention.TARE, Status.CONTRAINDICATED, 4, None),
            rec(Intervention.LIVER_ABLATION, Status.RECOMMENDED, 2, None),
        ),
    )
    markdown = render_markdown(answer, labels=kb.labels)
    assert "**Transarterial chemoembolization (TACE): Recommended**, if no cirrhosis" in markdown
    assert "- **Contraindicated: Radioembolization (Y-90, TARE).** because [1]" in markdown
    assert "`tare`" not in markdown
    assert "`tare`" in render_markdown(answer, labels=kb.labels, verbose=True)
    html = render_html(answer, labels=kb.labels)
    assert (
        '<p class="applies-if" data-missing="comorbidities"><strong>If</strong> no cirrhosis'
        in html
    )
    assert 'data-code="tare" data-status="contraindicated"' in html


def test_a_check_before_several_steps_is_said_once() -> None:
    """The pregnancy test before steps 3 to 5 is one line under the plan; a check before one
    step stays in its row; the answer keeps every check per step (contract v2)."""
    from netboard.answer import PlanStep
    from netboard.reports.report import split_checks
    from netboard.vocab import Phase, Status

    def step(order: int, *checks: str) -> PlanStep:
        return PlanStep(
            order=order,
            codes=(),
            join="or",
            status=Status.RECOMMENDED,
            phase=Phase.SYSTEMIC_FIRST_LINE,
            text="",
            presumes=(),
            checks=checks,
            evidence=(),
        )

    pregnancy, counts = "a pregnancy test", "blood counts"
    plan = [step(1), step(3, pregnancy), step(4, pregnancy, counts), step(5, pregnancy)]
    own, lines = split_checks(plan)
    assert own == {3: (), 4: (counts,), 5: ()}
    assert lines == ("Before steps 3 to 5: a pregnancy test.",)
    own, lines = split_checks([step(2, pregnancy, counts), step(5, pregnancy, counts)])
    assert own == {2: (), 5: ()}
    assert lines == ("Before steps 2 and 5: a pregnancy test, blood counts.",)
