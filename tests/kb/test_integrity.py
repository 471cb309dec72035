"""Knowledge-base integrity: the packaged KB is clean, and the checker catches each mistake.

The mutation tests copy the packaged KB to a temporary directory, break one thing, and
check that ``check_kb_dir`` names it (file, rule or id at fault).
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import yaml

from netboard import vocab as v
from netboard.errors import Problem
from netboard.kb import KnowledgeBase, check_kb_dir
from netboard.kb.loader import read_kb_files

KB_DIR = Path(str(files("netboard.kb")))

#: Intervention codes no rule produces yet. Extend deliberately, with a reason.
#: (None today: every contract code has a rule.)
UNUSED_INTERVENTIONS: frozenset[str] = frozenset()

DOTTED_ID = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+")


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """The packaged KB as parsed YAML, keyed by relative path."""
    return read_kb_files(files("netboard.kb"))


def cited_items(kb: KnowledgeBase) -> Iterator[tuple[str, tuple[str, ...]]]:
    for rule in kb.rules:
        yield f"rule {rule.id}", rule.evidence
    for alert in kb.alerts:
        yield f"alert {alert.id}", alert.evidence
    for es in kb.eligibility:
        for c in es.criteria:
            yield f"eligibility {es.name.value}: {c.name}", c.evidence
    for d in kb.dosing:
        yield f"dosing {d.code.value}: {d.text[:40]}", d.evidence
    for m in kb.monitoring:
        yield f"monitoring {m.id}", m.evidence
    for note in kb.disagreements:
        yield f"disagreement {note.id}", note.evidence
    for name, g in kb.grading.items():
        yield f"grading {name}", g.evidence


# --- the packaged knowledge base ------------------------------------------------------------


def test_packaged_knowledge_base_has_no_problems() -> None:
    kb, problems = check_kb_dir()
    assert kb is not None
    assert problems == [], "\n".join(map(str, problems))


def test_packaged_knowledge_base_is_not_empty(kb: KnowledgeBase) -> None:
    assert kb.rules
    assert kb.alerts
    assert kb.references
    assert kb.monitoring
    assert kb.dosing


def test_manifest_has_calver_version_and_release_date(kb: KnowledgeBase) -> None:
    assert re.fullmatch(r"\d{4}\.\d+\.\d+", kb.version), kb.version
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", kb.released), kb.released


def test_every_reference_has_id_citation_year_and_contract_kind(raw: dict[str, Any]) -> None:
    kinds = {k.value for k in v.ReferenceKind}
    bad: list[str] = []
    for i, ref in enumerate(raw["references.yaml"]):
        where = f"references.yaml[{i}] {ref.get('id')!r}"
        if not isinstance(ref.get("id"), str) or not ref["id"]:
            bad.append(f"{where}: no id")
        if not isinstance(ref.get("citation"), str) or not ref["citation"].strip():
            bad.append(f"{where}: no citation")
        if "year" not in ref:
            bad.append(f"{where}: no year key")
        year = ref.get("year")
        if year is not None and (isinstance(year, bool) or not isinstance(year, int)):
            bad.append(f"{where}: year {year!r} is not an int or null")
        if ref.get("kind") not in kinds:
            bad.append(f"{where}: kind {ref.get('kind')!r}")
    assert bad == [], "\n".join(bad)


def test_reference_years_are_plausible(kb: KnowledgeBase) -> None:
    odd = [
        r.id for r in kb.references.values() if r.year is not None and not 1950 <= r.year <= 2100
    ]
    assert odd == []


def test_reference_ids_are_unique(raw: dict[str, Any]) -> None:
    counts = Counter(ref["id"] for ref in raw["references.yaml"])
    assert [rid for rid, n in counts.items() if n > 1] == []


def test_fact_names_are_unique(raw: dict[str, Any]) -> None:
    counts = Counter(f["name"] for f in raw["facts.yaml"])
    assert [name for name, n in counts.items() if n > 1] == []


def test_criterion_names_are_unique_within_each_eligibility_set(kb: KnowledgeBase) -> None:
    for es in kb.eligibility:
        counts = Counter(c.name for c in es.criteria)
        assert [n for n, k in counts.items() if k > 1] == [], es.name


def test_rule_ids_are_dotted_lowercase(kb: KnowledgeBase) -> None:
    bad = [r.id for r in kb.rules if not DOTTED_ID.fullmatch(r.id)]
    assert bad == []


def test_alert_monitoring_and_disagreement_ids_are_dotted_lowercase(kb: KnowledgeBase) -> None:
    ids = [
        *(a.id for a in kb.alerts),
        *(m.id for m in kb.monitoring),
        *(d.id for d in kb.disagreements),
    ]
    assert [i for i in ids if not DOTTED_ID.fullmatch(i)] == []


def test_unused_intervention_codes_are_exactly_the_allow_list(kb: KnowledgeBase) -> None:
    used = {code.value for rule in kb.rules for code in rule.codes}
    unused = {code.value for code in v.Intervention} - used
    assert unused == UNUSED_INTERVENTIONS, (
        f"now unused: {sorted(unused - UNUSED_INTERVENTIONS)}; "
        f"allow-listed but used: {sorted(UNUSED_INTERVENTIONS - unused)}"
    )


def test_every_contract_alert_code_has_an_alert_rule(kb: KnowledgeBase) -> None:
    missing = {c.value for c in v.AlertCode} - {a.code.value for a in kb.alerts}
    assert missing == set()


def test_every_rule_phase_and_status_are_contract_words(raw: dict[str, Any]) -> None:
    phases = {p.value for p in v.Phase}
    statuses = {s.value for s in v.Status}
    for name, doc in raw.items():
        if name.startswith("rules/"):
            for rule in doc:
                assert rule["phase"] in phases, f"{name}: {rule['id']}"
                assert rule["status"] in statuses, f"{name}: {rule['id']}"


PHASE_FILES = frozenset(f"rules/{p.value}.yaml" for p in v.Phase)


def test_phase_files_hold_only_rules_of_their_phase(raw: dict[str, Any]) -> None:
    """A file named after a phase holds that phase only; any other rule file is a clinical
    topic (localised disease, hereditary syndromes, ...) and may span phases."""
    misplaced = [
        f"{name}: {rule['id']} ({rule['phase']})"
        for name, doc in raw.items()
        if name in PHASE_FILES
        for rule in doc
        if name != f"rules/{rule['phase']}.yaml"
    ]
    assert misplaced == []


def test_every_rule_knows_its_topic_file(kb: KnowledgeBase, raw: dict[str, Any]) -> None:
    files = {
        rule["id"]: name for name, doc in raw.items() if name.startswith("rules/") for rule in doc
    }
    assert {r.id: f"rules/{r.topic}.yaml" for r in kb.rules} == files


def copy_kb(tmp_path: Path) -> Path:
    target = tmp_path / "kb"
    shutil.copytree(KB_DIR, target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return target


def edit_yaml(path: Path, change: Callable[[Any], None]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def problems_in(kb_dir: Path) -> list[Problem]:
    _, problems = check_kb_dir(kb_dir)
    return problems


def texts(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems]


def assert_reported(problems: list[Problem], *needles: str) -> None:
    lines = texts(problems)
    assert any(all(n in line for n in needles) for line in lines), (
        f"no problem mentions all of {needles}; got:\n" + "\n".join(lines)
    )


@pytest.fixture
def kb_copy(tmp_path: Path) -> Path:
    return copy_kb(tmp_path)


@pytest.fixture
def first_rule(kb_copy: Path) -> tuple[Path, str]:
    path = kb_copy / "rules" / "progression.yaml"
    rules = yaml.safe_load(path.read_text(encoding="utf-8"))
    return path, rules[0]["id"]


def test_an_unchanged_copy_has_no_problems(kb_copy: Path) -> None:
    assert problems_in(kb_copy) == []


# What the loader enforces is tested here by planting the mistake in a copy: a test of the
# packaged knowledge base alone could never fail, because loading would refuse it first.


def test_a_case_field_missing_from_the_registry_copy_is_reported(kb_copy: Path) -> None:
    edit_yaml(kb_copy / "fields.yaml", lambda d: d["fields"].pop("ecog"))
    assert_reported(problems_in(kb_copy), "fields.yaml", "'ecog'", "missing")


def test_a_field_whose_type_differs_from_the_registry_is_reported(kb_copy: Path) -> None:
    edit_yaml(kb_copy / "fields.yaml", lambda d: d["fields"]["ecog"].update(max=9))
    assert_reported(problems_in(kb_copy), "fields.yaml:fields.ecog", "differ")


def test_a_site_without_its_entry_is_reported(kb_copy: Path) -> None:
    edit_yaml(kb_copy / "classification.yaml", lambda d: d["sites"].pop("thymus"))
    assert_reported(problems_in(kb_copy), "classification.yaml", "'thymus' has no entry")


def test_a_guard_passed_by_a_rule_of_another_code_is_reported(
    first_rule: tuple[Path, str],
) -> None:
    path, rid = first_rule
    edit_yaml(path, lambda rules: rules[0].update(passes=["first_line.no_ssa_nec"]))
    assert_reported(problems_in(path.parent.parent), rid, "guards none of its codes")


def test_a_dangling_evidence_id_in_a_rule_is_reported(first_rule: tuple[Path, str]) -> None:
    path, rid = first_rule
    edit_yaml(path, lambda rules: rules[0]["evidence"].append("no_such_reference_2099"))
    assert_reported(problems_in(path.parent.parent), rid, "no_such_reference_2099")


def test_a_dangling_evidence_id_in_an_alert_is_reported(kb_copy: Path) -> None:
    path = kb_copy / "alerts.yaml"
    edit_yaml(path, lambda alerts: alerts[0].__setitem__("evidence", ["ghost_2001"]))
    alert_id = yaml.safe_load(path.read_text(encoding="utf-8"))[0]["id"]
    assert_reported(problems_in(kb_copy), alert_id, "ghost_2001")


def test_a_dangling_evidence_id_in_a_criterion_is_reported(kb_copy: Path) -> None:
    path = kb_copy / "eligibility" / "prrt.yaml"
    edit_yaml(path, lambda doc: doc["criteria"][0]["evidence"].append("ghost_2002"))
    assert_reported(problems_in(kb_copy), "eligibility prrt", "ghost_2002")


def test_an_unknown_key_in_a_rule_is_reported(first_rule: tuple[Path, str]) -> None:
    path, _ = first_rule
    edit_yaml(path, lambda rules: rules[0].__setitem__("colour", "red"))
    assert_reported(
        problems_in(path.parent.parent), "rules/progression.yaml", "colour", "unknown key"
    )


def test_an_unknown_intervention_code_is_reported(first_rule: tuple[Path, str]) -> None:
    path, rid = first_rule
    edit_yaml(path, lambda rules: rules[0].__setitem__("code", "magic_pill"))
    assert_reported(problems_in(path.parent.parent), rid, "magic_pill")


def test_an_unknown_field_in_a_condition_is_reported(first_rule: tuple[Path, str]) -> None:
    path, rid = first_rule
    edit_yaml(
        path,
        lambda rules: rules[0].__setitem__(
            "when", {"all": [{"field": "tumour_mood", "is": "calm"}]}
        ),
    )
    assert_reported(problems_in(path.parent.parent), rid, "tumour_mood")


def test_a_wrong_value_for_a_field_is_reported(first_rule: tuple[Path, str]) -> None:
    path, rid = first_rule
    edit_yaml(
        path, lambda rules: rules[0].__setitem__("when", {"field": "sstr_imaging", "is": "glowing"})
    )
    assert_reported(problems_in(path.parent.parent), rid, "glowing", "sstr_imaging")


def test_a_wrong_value_in_a_list_field_condition_is_reported(first_rule: tuple[Path, str]) -> None:
    path, rid = first_rule
    edit_yaml(
        path,
        lambda rules: rules[0].__setitem__("when", {"field": "metastatic_sites", "has": "spleen"}),
    )
    assert_reported(problems_in(path.parent.parent), rid, "spleen")


def test_a_numeric_operator_on_a_word_field_is_reported(first_rule: tuple[Path, str]) -> None:
    path, rid = first_rule
    edit_yaml(path, lambda rules: rules[0].__setitem__("when", {"field": "sstr_imaging", "lt": 3}))
    assert_reported(problems_in(path.parent.parent), rid, "sstr_imaging")


def test_an_unknown_operator_is_reported(first_rule: tuple[Path, str]) -> None:
    path, rid = first_rule
    edit_yaml(
        path, lambda rules: rules[0].__setitem__("when", {"field": "ki67_percent", "about": 10})
    )
    assert_reported(problems_in(path.parent.parent), rid, "about")


def test_a_duplicate_rule_id_is_reported(kb_copy: Path) -> None:
    source = kb_copy / "rules" / "progression.yaml"
    rule = yaml.safe_load(source.read_text(encoding="utf-8"))[0]
    edit_yaml(kb_copy / "rules" / "supportive.yaml", lambda rules: rules.append(rule))
    assert_reported(problems_in(kb_copy), rule["id"], "duplicate")


def test_an_id_shared_by_a_rule_and_an_alert_is_reported(
    kb_copy: Path, first_rule: tuple[Path, str]
) -> None:
    _, rid = first_rule
    edit_yaml(kb_copy / "alerts.yaml", lambda alerts: alerts[0].__setitem__("id", rid))
    assert_reported(problems_in(kb_copy), rid, "duplicate")


def test_a_rule_with_an_empty_evidence_list_is_reported(first_rule: tuple[Path, str]) -> None:
    path, rid = first_rule
    edit_yaml(path, lambda rules: rules[0].__setitem__("evidence", []))
    assert_reported(problems_in(path.parent.parent), rid, "no evidence")


def test_a_rule_without_an_evidence_key_is_reported(first_rule: tuple[Path, str]) -> None:
    path, _ = first_rule
    edit_yaml(path, lambda rules: rules[0].pop("evidence"))
    assert_reported(problems_in(path.parent.parent), "rules/progression.yaml", "evidence")


def test_a_criterion_without_evidence_is_reported(kb_copy: Path) -> None:
    path = kb_copy / "eligibility" / "embolization.yaml"
    edit_yaml(path, lambda doc: doc["criteria"][0].__setitem__("evidence", []))
    assert_reported(problems_in(kb_copy), "eligibility embolization", "no evidence")


def test_a_fact_cycle_is_reported(kb_copy: Path) -> None:
    def add_cycle(facts: list[dict[str, Any]]) -> None:
        facts.append({"name": "chicken", "label": "chicken", "when": {"fact": "egg"}})
        facts.append(
            {"name": "egg", "label": "egg", "when": {"all": [{"fact": "chicken"}, {"fact": "nec"}]}}
        )

    edit_yaml(kb_copy / "facts.yaml", add_cycle)
    assert_reported(problems_in(kb_copy), "cycle", "chicken", "egg")


def test_a_fact_referring_to_itself_is_reported(kb_copy: Path) -> None:
    edit_yaml(
        kb_copy / "facts.yaml",
        lambda facts: facts.append(
            {"name": "ouroboros", "label": "x", "when": {"not": {"fact": "ouroboros"}}}
        ),
    )
    assert_reported(problems_in(kb_copy), "ouroboros", "cycle")


def test_an_unknown_fact_is_reported(first_rule: tuple[Path, str]) -> None:
    path, rid = first_rule
    edit_yaml(path, lambda rules: rules[0].__setitem__("when", {"fact": "no_such_fact"}))
    assert_reported(problems_in(path.parent.parent), rid, "no_such_fact")


def test_the_known_operator_inside_a_rule_is_reported(first_rule: tuple[Path, str]) -> None:
    path, rid = first_rule
    edit_yaml(
        path,
        lambda rules: rules[0].__setitem__(
            "when", {"all": [{"fact": "nec"}, {"field": "ecog", "known": False}]}
        ),
    )
    assert_reported(problems_in(path.parent.parent), rid, "known")


def test_the_known_operator_inside_a_criterion_is_reported(kb_copy: Path) -> None:
    path = kb_copy / "eligibility" / "prrt.yaml"
    edit_yaml(
        path,
        lambda doc: doc["criteria"][0].__setitem__(
            "when", {"field": "sstr_imaging", "known": True}
        ),
    )
    assert_reported(problems_in(kb_copy), "eligibility prrt", "known")


def test_the_known_operator_inside_a_fact_is_reported(kb_copy: Path) -> None:
    edit_yaml(
        kb_copy / "facts.yaml",
        lambda facts: facts.append(
            {"name": "ecog_stated", "label": "x", "when": {"field": "ecog", "known": True}}
        ),
    )
    assert_reported(problems_in(kb_copy), "ecog_stated", "known")


def test_a_rule_depending_on_the_plan_is_reported(first_rule: tuple[Path, str]) -> None:
    path, rid = first_rule
    edit_yaml(path, lambda rules: rules[0].__setitem__("when", {"planned": "tae"}))
    assert_reported(problems_in(path.parent.parent), rid, "plan")


def test_an_unknown_intervention_in_planned_is_reported(kb_copy: Path) -> None:
    path = kb_copy / "alerts.yaml"
    edit_yaml(path, lambda alerts: alerts[0].__setitem__("when", {"planned": "teleportation"}))
    assert_reported(problems_in(kb_copy), "teleportation")


def test_an_unknown_alert_code_is_reported(kb_copy: Path) -> None:
    edit_yaml(kb_copy / "alerts.yaml", lambda alerts: alerts[0].__setitem__("code", "be_careful"))
    assert_reported(problems_in(kb_copy), "alerts.yaml", "be_careful")


def test_a_missing_eligibility_set_is_reported(kb_copy: Path) -> None:
    (kb_copy / "eligibility" / "prrt.yaml").unlink()
    assert_reported(problems_in(kb_copy), "eligibility", "prrt")


def test_an_eligibility_set_given_twice_is_reported(kb_copy: Path) -> None:
    shutil.copy(kb_copy / "eligibility" / "prrt.yaml", kb_copy / "eligibility" / "prrt_bis.yaml")
    assert_reported(problems_in(kb_copy), "prrt")


def test_a_duplicate_key_in_a_rule_is_reported(first_rule: tuple[Path, str]) -> None:
    # PyYAML keeps the last of two equal keys silently: a second `status:` would flip a
    # recommendation without any warning. The case loader refuses duplicates; the KB should too.
    path, _ = first_rule
    text = path.read_text(encoding="utf-8")
    patched = re.sub(r"(\n  status: (\w+)\n)", r"\1  status: contraindicated\n", text, count=1)
    assert patched != text
    path.write_text(patched, encoding="utf-8")
    assert_reported(problems_in(path.parent.parent), "progression.yaml", "status")


def test_a_missing_reference_file_is_reported(kb_copy: Path) -> None:
    (kb_copy / "references.yaml").unlink()
    assert_reported(problems_in(kb_copy), "references.yaml")


def test_invalid_yaml_is_reported_not_raised(kb_copy: Path) -> None:
    (kb_copy / "alerts.yaml").write_text("- id: [unclosed\n", encoding="utf-8")
    kb, problems = check_kb_dir(kb_copy)
    assert kb is None
    assert problems


def test_a_missing_directory_is_reported_not_raised(tmp_path: Path) -> None:
    kb, problems = check_kb_dir(tmp_path / "nowhere")
    assert kb is None
    assert_reported(problems, "nowhere")


#: Recommended rules whose every source is still UNVERIFIED (pre-existing; to be re-sourced by
#: the owners of those rules). No new rule may join this list.
RECOMMENDED_ON_UNVERIFIED_ONLY: frozenset[str] = frozenset(
    {"supportive.lung_nec_lung_cancer_pathway", "supportive.best_supportive_care_ecog_4"}
)


def test_no_recommended_option_rests_on_unverified_sources_alone(kb: KnowledgeBase) -> None:
    """A reference whose note starts with UNVERIFIED may support a recommended option only
    beside a verified one (docs/authoring-rules.md, references.yaml header)."""
    alone = {
        r.id
        for r in kb.rules
        if r.status is v.Status.RECOMMENDED
        and all((kb.references[e].note or "").startswith("UNVERIFIED") for e in r.evidence)
    }
    assert alone <= RECOMMENDED_ON_UNVERIFIED_ONLY, sorted(alone - RECOMMENDED_ON_UNVERIFIED_ONLY)
