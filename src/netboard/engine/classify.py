"""WHO 2019 grade, differentiation, site group and stage, derived from the case.

Cut-offs come from the knowledge base (``classification.yaml``), not from code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netboard.case import Case
from netboard.kb.model import Grading, KnowledgeBase
from netboard.vocab import Differentiation, DiseaseStatus, Grade, MetastaticSite, Sex, Who2019

GRADE_RANK = {Grade.G1: 1, Grade.G2: 2, Grade.G3: 3}


def grade_from(value: float | None, g1_below: float | None, g2_upto: float | None) -> Grade | None:
    """Grade one measurement: below ``g1_below`` is G1, up to ``g2_upto`` G2, above G3.

    >>> grade_from(2.5, 3, 20), grade_from(20, 3, 20), grade_from(20.5, 3, 20)
    (<Grade.G1: 'g1'>, <Grade.G2: 'g2'>, <Grade.G3: 'g3'>)
    """
    if value is None or g1_below is None or g2_upto is None:
        return None
    if value < g1_below:
        return Grade.G1
    return Grade.G2 if value <= g2_upto else Grade.G3


def derive_grade(ki67: float | None, mitoses: float | None, grading: Grading) -> Grade | None:
    """Derive the WHO grade; when Ki-67 and mitoses disagree the higher grade wins.

    >>> g = Grading(ki67_g1_below=3, ki67_g2_upto=20, mitoses_g1_below=2,
    ...             mitoses_g2_upto=20, evidence=())
    >>> derive_grade(12.0, 1.0, g)
    <Grade.G2: 'g2'>
    >>> derive_grade(2.0, 25.0, g)
    <Grade.G3: 'g3'>
    """
    grades = [
        g
        for g in (
            grade_from(ki67, grading.ki67_g1_below, grading.ki67_g2_upto),
            grade_from(mitoses, grading.mitoses_g1_below, grading.mitoses_g2_upto),
        )
        if g is not None
    ]
    return max(grades, key=GRADE_RANK.__getitem__) if grades else None


@dataclass(frozen=True, slots=True)
class Classified:
    """What classification adds to a case: computed fields and notes."""

    computed: dict[str, Any]
    stated_grade: Grade | None
    derived_grade: Grade | None
    discordant: bool
    notes: tuple[str, ...]
    stage: str


def classify(case: Case, kb: KnowledgeBase) -> Classified:
    """Compute grade, WHO 2019 category, site facts and stage (None where unknown)."""
    site = kb.sites.get(case.primary_site) if case.primary_site else None
    thoracic = site.thoracic if site else False
    if site is None:
        # Without a primary site the grading scheme is open (digestive WHO 2019 or thoracic):
        # a grade is derived only where both schemes agree.
        both = {
            derive_grade(case.ki67_percent, case.mitoses_per_2mm2, kb.grading[name])
            for name in ("digestive", "thoracic")
        }
        derived = both.pop() if len(both) == 1 else None
    else:
        grading = kb.grading["thoracic" if thoracic else "digestive"]
        derived = derive_grade(case.ki67_percent, case.mitoses_per_2mm2, grading)
    stated = case.grade
    notes: list[str] = []
    final: Grade | None
    if stated and derived:
        final = max(stated, derived, key=GRADE_RANK.__getitem__)
        all_measured = case.mitoses_per_2mm2 is not None and (
            thoracic or case.ki67_percent is not None
        )
        lower = GRADE_RANK[stated] < GRADE_RANK[derived]
        discordant = stated != derived and (lower or all_measured)
        if discordant:
            notes.append(
                f"Stated grade {stated.value.upper()} disagrees with the measured "
                f"{derived.value.upper()}; the higher grade ({final.value.upper()}) is used."
            )
    else:
        final = stated or derived
        discordant = False
    if thoracic and case.ki67_percent is not None and case.mitoses_per_2mm2 is None and not stated:
        notes.append(
            "Lung/thymic grade rests on mitoses and necrosis; Ki-67 alone does not grade it."
        )

    if case.differentiation is Differentiation.POOR:
        inferred: Differentiation | None = Differentiation.POOR
        if final in (Grade.G1, Grade.G2):
            notes.append(
                "Poorly differentiated with a low-grade proliferation index: review the pathology."
            )
    elif case.differentiation is Differentiation.WELL:
        inferred = Differentiation.WELL
    elif final in (Grade.G1, Grade.G2):
        # NEC is high grade by definition (WHO 2019), so a G1/G2 neoplasm is a NET.
        inferred = Differentiation.WELL
        notes.append(
            "Differentiation not stated; G1/G2 implies a well-differentiated NET (WHO 2019)."
        )
    else:
        inferred = None

    if inferred is Differentiation.POOR:
        who = Who2019.NEC
    elif inferred is Differentiation.WELL and final is not None:
        who = Who2019(f"net_{final.value}")
    else:
        who = Who2019.UNKNOWN

    computed: dict[str, Any] = {
        "grade": final,
        "who_2019": None if who is Who2019.UNKNOWN else who,
        "differentiation_inferred": inferred,
        "site_group": site.group if site else None,
        "gut_region": site.region if site else None,
        "portal_drained": site.portal_drained if site else None,
        "thoracic_primary": thoracic if site else None,
        "pregnancy_status": pregnancy_status(case, kb.childbearing_age_limit),
        "grade_discordant": discordant,
        "treatments_received": treatments_received(case),
        "treatments_failed": treatments_failed(case),
    }
    return Classified(
        computed=computed,
        stated_grade=stated,
        derived_grade=derived,
        discordant=discordant,
        notes=tuple(notes),
        stage=stage_of(case, thoracic),
    )


def treatments_received(case: Case) -> tuple[str, ...] | None:
    """Every treatment the patient has had, when the case lets us know the full list.

    ``prior_treatments`` is the complete list (``progressed_on`` is validated to be within it);
    a newly diagnosed patient has had none; otherwise the list is unknown (None).

    >>> treatments_received(Case(disease_status=DiseaseStatus.NEWLY_DIAGNOSED))
    ()
    """
    if case.prior_treatments is not None:
        return tuple(
            sorted({t.value for t in (*case.prior_treatments, *(case.progressed_on or ()))})
        )
    if case.disease_status is DiseaseStatus.NEWLY_DIAGNOSED:
        return ()
    return None


def treatments_failed(case: Case) -> tuple[str, ...] | None:
    """What the disease progressed on: ``progressed_on``, or nothing when newly diagnosed.

    >>> treatments_failed(Case()) is None
    True
    """
    if case.progressed_on is not None:
        return tuple(sorted({t.value for t in case.progressed_on}))
    if case.disease_status is DiseaseStatus.NEWLY_DIAGNOSED:
        return ()
    return None


def pregnancy_status(case: Case, age_limit: float = 55) -> str | None:
    """'pregnant', 'not_pregnant', or None when a woman under ``age_limit`` does not say.

    A stated ``pregnant`` always wins. Men, and women at or above ``age_limit`` (set in the
    KB's ``classification.yaml``), count as not pregnant when the case is silent: the
    Lutathera label asks for pregnancy to be excluded in women of reproductive potential.

    >>> pregnancy_status(Case(sex=Sex.FEMALE, age_years=34)) is None
    True
    >>> pregnancy_status(Case(sex=Sex.FEMALE, age_years=60))
    'not_pregnant'
    """
    if case.pregnant is not None:
        return "pregnant" if case.pregnant else "not_pregnant"
    if case.sex is Sex.MALE or (case.age_years is not None and case.age_years >= age_limit):
        return "not_pregnant"
    return None


_DISTANT = frozenset(MetastaticSite) - {MetastaticSite.REGIONAL_LYMPH_NODES}


def stage_of(case: Case, thoracic: bool) -> str:
    """A stage label from the metastatic sites (AJCC 8th M categories for GEP-NET).

    >>> stage_of(Case(metastatic_sites=(MetastaticSite.LIVER,)), False)
    'IV (M1a: liver only)'
    """
    sites = case.metastatic_sites
    if sites is None:
        return "unknown (metastatic sites not stated)"
    distant = set(sites) & _DISTANT
    if distant:
        if thoracic:
            return "IV (distant metastases)"
        hepatic = MetastaticSite.LIVER in distant
        if hepatic and len(distant) == 1:
            return "IV (M1a: liver only)"
        return "IV (M1c: hepatic and extrahepatic)" if hepatic else "IV (M1b: extrahepatic only)"
    if MetastaticSite.REGIONAL_LYMPH_NODES in sites:
        return "III (regional nodes, no distant metastases)"
    return "I-II (no metastases stated; T category decides)"
