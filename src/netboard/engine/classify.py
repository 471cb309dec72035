"""WHO 2019 grade, differentiation, site group and stage of a case, with notes for the reader.

The computed fields themselves are written once in :mod:`netboard.engine.derive` (shared with
the compiled audit); cut-offs come from the knowledge base (``classification.yaml``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from netboard.case import Case
from netboard.engine.derive import COMPUTED, GRADE_WORDS, READS, PyOps, derived_grade_rank
from netboard.kb.model import KnowledgeBase
from netboard.vocab import Differentiation, Grade, MetastaticSite, Who2019

GRADE_RANK = {Grade.G1: 1, Grade.G2: 2, Grade.G3: 3}


@dataclass(frozen=True, slots=True)
class Classified:
    """What classification adds to a case: computed fields and notes."""

    computed: dict[str, Any]
    stated_grade: Grade | None
    derived_grade: Grade | None
    discordant: bool
    notes: tuple[str, ...]
    stage: str


def computed_fields(
    case: Case,
    kb: KnowledgeBase,
    base: Mapping[str, Any] | None = None,
    changed: frozenset[str] = frozenset(),
    names: Collection[str] | None = None,
) -> dict[str, Any]:
    """Every computed field of :data:`netboard.engine.derive.COMPUTED` for one case (only
    ``names``, when given).

    Words become contract enums and lists sorted tuples of words; None is unknown. With
    ``base`` (the computed fields of a case that differs only in the ``changed`` paths), a
    field none of whose inputs changed is taken from it.

    >>> from netboard.kb import load_kb
    >>> computed_fields(Case(primary_site="lung", mitoses_per_2mm2=3), load_kb())["grade"]
    <Grade.G2: 'g2'>
    """
    ops = PyOps(case.value)
    out: dict[str, Any] = {}
    for name, (compute, _) in COMPUTED.items():
        if names is not None and name not in names:
            continue
        if base is not None and changed.isdisjoint(READS[name]):
            out[name] = base[name]
            continue
        value = compute(ops, kb)
        if isinstance(value, tuple):
            value = tuple(sorted({str(x) for x in value}))
        elif name == "grade":
            value = Grade(value) if value else None
        elif name == "who_2019":
            value = Who2019(value) if value else None
        elif name == "differentiation_inferred":
            value = Differentiation(value) if value else None
        elif name == "grade_discordant":
            value = bool(value)
        out[name] = value
    return out


def classify(case: Case, kb: KnowledgeBase) -> Classified:
    """Compute grade, WHO 2019 category, site facts and stage (None where unknown)."""
    computed = computed_fields(case, kb)
    ops = PyOps(case.value)
    derived_rank = derived_grade_rank(ops, kb)
    derived = Grade(GRADE_WORDS[derived_rank - 1]) if derived_rank else None
    stated = case.grade
    final = computed["grade"]
    thoracic = bool(computed["thoracic_primary"])
    notes: list[str] = []
    if computed["grade_discordant"] and stated and derived and final:
        notes.append(
            f"Stated grade {stated.value.upper()} disagrees with the measured "
            f"{derived.value.upper()}; the higher grade ({final.value.upper()}) is used."
        )
    if thoracic and case.ki67_percent is not None and case.mitoses_per_2mm2 is None and not stated:
        notes.append(
            "Lung/thymic grade rests on mitoses and necrosis; Ki-67 alone does not grade it."
        )
    # A stated carcinoma with a G1/G2 index is noted from the knowledge base's plausibility
    # limits (recommend._unusual), like every other stated-but-unusual value.
    if case.differentiation is None and final in (Grade.G1, Grade.G2):
        notes.append(
            "Differentiation not stated; G1/G2 implies a well-differentiated NET (WHO 2019)."
        )
    return Classified(
        computed=computed,
        stated_grade=stated,
        derived_grade=derived,
        discordant=computed["grade_discordant"],
        notes=tuple(notes),
        stage=stage_of(case, thoracic),
    )


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
