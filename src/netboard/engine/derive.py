"""Each computed field of a case, written once for every engine.

Grade, WHO 2019 category, site attributes, pregnancy status and treatment history are written
here once, as functions of an ``Ops`` object: the per-patient engine runs them on Python values
(:class:`PyOps`), the compiled cohort audit on sqlglot expressions (``batch.compile.SqlOps``),
so the two cannot drift apart. Both backends follow SQL's null semantics: a comparison with an
unknown value is unknown, ``case`` takes the first branch that is TRUE, and ``and_``/``or_``
are Kleene's. Cut-offs and the site table come from the knowledge base
(``classification.yaml``), never from here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

from netboard import vocab
from netboard.fields import Choice, ChoiceList, Flag, Spec
from netboard.kb.model import Grading, KnowledgeBase, Words

__all__ = [
    "COMPUTED",
    "GRADE_WORDS",
    "Ops",
    "PyOps",
    "computed_sources",
    "computed_specs",
    "derived_grade_rank",
    "grade_rank",
    "unknown_sources",
]

E = TypeVar("E")

#: Grade words by rank (1-3); the rank is what comparisons use.
GRADE_WORDS = ("g1", "g2", "g3")


class Ops(Protocol, Generic[E]):
    """The operations a computation may use; ``E`` is a value (Python) or an expression (SQL)."""

    def field(self, name: str) -> E: ...
    def lit(self, value: Any) -> E: ...
    def null(self) -> E: ...
    def is_null(self, x: E) -> E: ...
    def eq(self, a: E, b: E) -> E: ...
    def lt(self, a: E, b: E) -> E: ...
    def le(self, a: E, b: E) -> E: ...
    def ge(self, a: E, b: E) -> E: ...
    def in_(self, x: E, values: Sequence[Any]) -> E: ...
    def and_(self, *xs: E) -> E: ...
    def or_(self, *xs: E) -> E: ...
    def not_(self, x: E) -> E: ...
    def case(self, whens: Sequence[tuple[E, E]], default: E | None = None) -> E: ...
    def concat(self, a: E, b: E) -> E: ...
    def empty_list(self) -> E: ...
    def is_true(self, x: E) -> E: ...
    def let(self, name: str, build: Callable[[], E]) -> E: ...
    def null_set(self, fields: Sequence[str]) -> E: ...
    def lookup(self, x: E, table: Mapping[Any, Any]) -> E: ...


class PyOps:
    """``Ops`` on Python values of one case; None is unknown (SQL NULL)."""

    def __init__(self, value: Callable[[str], Any]) -> None:
        self._value = value
        self._lets: dict[str, Any] = {}

    def field(self, name: str) -> Any:
        return self._value(name)

    def lit(self, value: Any) -> Any:
        return value

    def null(self) -> Any:
        return None

    def is_null(self, x: Any) -> bool:
        return x is None

    def eq(self, a: Any, b: Any) -> bool | None:
        return None if a is None or b is None else bool(a == b)

    def lt(self, a: Any, b: Any) -> bool | None:
        return None if a is None or b is None else bool(a < b)

    def le(self, a: Any, b: Any) -> bool | None:
        return None if a is None or b is None else bool(a <= b)

    def ge(self, a: Any, b: Any) -> bool | None:
        return None if a is None or b is None else bool(a >= b)

    def in_(self, x: Any, values: Sequence[Any]) -> bool | None:
        return None if x is None else x in values

    def and_(self, *xs: Any) -> bool | None:
        if any(x is False for x in xs):
            return False
        return None if any(x is None for x in xs) else True

    def or_(self, *xs: Any) -> bool | None:
        if any(x is True for x in xs):
            return True
        return None if any(x is None for x in xs) else False

    def not_(self, x: Any) -> bool | None:
        return None if x is None else not x

    def case(self, whens: Sequence[tuple[Any, Any]], default: Any = None) -> Any:
        for cond, value in whens:
            if cond is True:
                return value
        return default

    def concat(self, a: Any, b: Any) -> Any:
        return None if a is None or b is None else (*a, *b)

    def empty_list(self) -> Any:
        return ()

    def is_true(self, x: Any) -> bool:
        return x is True

    def let(self, name: str, build: Callable[[], Any]) -> Any:
        """A named intermediate value, computed once per case."""
        if name not in self._lets:
            self._lets[name] = build()
        return self._lets[name]

    def null_set(self, fields: Sequence[str]) -> frozenset[str]:
        """The given case fields that are unknown."""
        return frozenset(f for f in fields if self._value(f) is None)

    def lookup(self, x: Any, table: Mapping[Any, Any]) -> Any:
        """``table[x]``; unknown when ``x`` is unknown or not in the table."""
        return None if x is None else table.get(x)


# --- the computations ------------------------------------------------------------------------


def _grade_of(ops: Ops[E], value: E, g1_below: float | None, g2_upto: float | None) -> E:
    """The grade rank one measurement gives: below ``g1_below`` 1, up to ``g2_upto`` 2, else 3."""
    if g1_below is None or g2_upto is None:
        return ops.null()
    return ops.case(
        [
            (ops.is_null(value), ops.null()),
            (ops.lt(value, ops.lit(g1_below)), ops.lit(1)),
            (ops.le(value, ops.lit(g2_upto)), ops.lit(2)),
        ],
        ops.lit(3),
    )


def _higher(ops: Ops[E], a: E, b: E) -> E:
    """The higher of two ranks, an unknown one ignored."""
    return ops.case(
        [(ops.is_null(a), b), (ops.is_null(b), a), (ops.is_true(ops.ge(a, b)), a)],
        b,
    )


def _scheme_rank(ops: Ops[E], grading: Grading) -> E:
    """The grade rank under one scheme: the higher of the Ki-67 and mitotic grades (WHO 2019)."""
    return _higher(
        ops,
        _grade_of(ops, ops.field("ki67_percent"), grading.ki67_g1_below, grading.ki67_g2_upto),
        _grade_of(
            ops, ops.field("mitoses_per_2mm2"), grading.mitoses_g1_below, grading.mitoses_g2_upto
        ),
    )


def site_attribute(ops: Ops[E], kb: KnowledgeBase, attribute: str) -> E:
    """A column of the site table (``group``, ``region``, ``portal_drained``, ``thoracic``)."""
    site = ops.field("primary_site")
    return ops.let(f"site_{attribute}", lambda: ops.lookup(site, _site_table(kb, attribute)))


_SITE_TABLES: dict[tuple[int, str], tuple[KnowledgeBase, dict[str, Any]]] = {}


def _site_table(kb: KnowledgeBase, attribute: str) -> dict[str, Any]:
    """Site word -> attribute, built once per knowledge base."""
    hit = _SITE_TABLES.get((id(kb), attribute))
    if hit is None or hit[0] is not kb:
        hit = (kb, {s.value: getattr(info, attribute) for s, info in kb.sites.items()})
        _SITE_TABLES[(id(kb), attribute)] = hit
    return hit[1]


def derived_grade_rank(ops: Ops[E], kb: KnowledgeBase) -> E:
    """The grade rank measured from Ki-67 and mitoses under the site's grading scheme.

    Without a primary site the scheme is open (digestive or thoracic): a grade is derived only
    where both schemes agree.
    """

    def build() -> E:
        digestive = ops.let("rank_digestive", lambda: _scheme_rank(ops, kb.grading["digestive"]))
        thoracic = ops.let("rank_thoracic", lambda: _scheme_rank(ops, kb.grading["thoracic"]))
        is_thoracic = site_attribute(ops, kb, "thoracic")
        return ops.case(
            [
                (ops.is_true(is_thoracic), thoracic),
                (ops.not_(ops.is_null(is_thoracic)), digestive),
                (ops.is_true(ops.eq(digestive, thoracic)), digestive),
            ]
        )

    return ops.let("rank_derived", build)


def stated_grade_rank(ops: Ops[E]) -> E:
    """The rank of the stated grade."""
    grade = ops.field("grade")
    ranks = {w: i + 1 for i, w in enumerate(GRADE_WORDS)}
    return ops.let("rank_stated", lambda: ops.lookup(grade, ranks))


def grade_rank(ops: Ops[E], kb: KnowledgeBase) -> E:
    """The grade used: the higher of the stated and the measured grade (WHO 2019)."""
    return ops.let(
        "rank", lambda: _higher(ops, stated_grade_rank(ops), derived_grade_rank(ops, kb))
    )


def grade_word(ops: Ops[E], rank: E) -> E:
    """A grade rank as its contract word."""
    return ops.lookup(rank, {i + 1: w for i, w in enumerate(GRADE_WORDS)})


def grade_discordant(ops: Ops[E], kb: KnowledgeBase) -> E:
    """The stated grade disagrees with the measured one: it is lower, or both measurements of
    the scheme were given (a higher stated grade can rest on something not stated, such as
    necrosis)."""
    stated, derived = stated_grade_rank(ops), derived_grade_rank(ops, kb)
    thoracic = ops.is_true(site_attribute(ops, kb, "thoracic"))
    all_measured = ops.and_(
        ops.not_(ops.is_null(ops.field("mitoses_per_2mm2"))),
        ops.or_(thoracic, ops.not_(ops.is_null(ops.field("ki67_percent")))),
    )
    both = ops.and_(ops.not_(ops.is_null(stated)), ops.not_(ops.is_null(derived)))
    differs = ops.and_(
        ops.not_(ops.eq(stated, derived)),
        ops.or_(ops.lt(stated, derived), all_measured),
    )
    return ops.case([(ops.is_true(both), ops.is_true(differs))], ops.lit(False))


def differentiation_inferred(ops: Ops[E], kb: KnowledgeBase) -> E:
    """The stated differentiation; else well-differentiated for G1/G2 (NEC is high grade by
    definition, WHO 2019); else unknown."""
    diff = ops.field("differentiation")
    return ops.let(
        "differentiation",
        lambda: ops.case(
            [
                (ops.is_true(ops.eq(diff, ops.lit("poor"))), ops.lit("poor")),
                (ops.is_true(ops.eq(diff, ops.lit("well"))), ops.lit("well")),
                (ops.is_true(ops.in_(grade_rank(ops, kb), [1, 2])), ops.lit("well")),
            ]
        ),
    )


def who_2019(ops: Ops[E], kb: KnowledgeBase) -> E:
    """The WHO 2019 category: nec, net_g1, net_g2, net_g3; unknown (NULL) otherwise."""
    inferred = differentiation_inferred(ops, kb)
    rank = grade_rank(ops, kb)
    well = ops.is_true(ops.eq(inferred, ops.lit("well")))
    return ops.case(
        [
            (ops.is_true(ops.eq(inferred, ops.lit("poor"))), ops.lit("nec")),
            *(
                (ops.and_(well, ops.is_true(ops.eq(rank, ops.lit(i + 1)))), ops.lit(f"net_{w}"))
                for i, w in enumerate(GRADE_WORDS)
            ),
        ]
    )


def pregnancy_status(ops: Ops[E], kb: KnowledgeBase) -> E:
    """'pregnant', 'not_pregnant', or unknown. A stated answer wins; men, and women at or above
    the KB's childbearing age limit, count as not pregnant when the case is silent (the
    Lutathera label asks to exclude pregnancy in women of reproductive potential)."""
    pregnant = ops.field("pregnant")
    past = ops.or_(
        ops.eq(ops.field("sex"), ops.lit("male")),
        ops.ge(ops.field("age_years"), ops.lit(kb.childbearing_age_limit)),
    )
    return ops.case(
        [
            (ops.is_true(ops.eq(pregnant, ops.lit(True))), ops.lit("pregnant")),
            (ops.is_true(ops.eq(pregnant, ops.lit(False))), ops.lit("not_pregnant")),
            (ops.is_true(past), ops.lit("not_pregnant")),
        ]
    )


def _newly_diagnosed(ops: Ops[E]) -> E:
    return ops.is_true(ops.eq(ops.field("disease_status"), ops.lit("newly_diagnosed")))


def treatments_received(ops: Ops[E], kb: KnowledgeBase) -> E:
    """Every treatment received when the case lets us know the full list: ``prior_treatments``
    (which holds ``progressed_on``), none when newly diagnosed, else unknown."""
    del kb
    prior, progressed = ops.field("prior_treatments"), ops.field("progressed_on")
    full = ops.concat(prior, ops.case([(ops.is_null(progressed), ops.empty_list())], progressed))
    return ops.case(
        [(ops.not_(ops.is_null(prior)), full), (_newly_diagnosed(ops), ops.empty_list())]
    )


def treatments_failed(ops: Ops[E], kb: KnowledgeBase) -> E:
    """What the disease progressed on: ``progressed_on``, none when newly diagnosed."""
    del kb
    progressed = ops.field("progressed_on")
    return ops.case(
        [(ops.not_(ops.is_null(progressed)), progressed), (_newly_diagnosed(ops), ops.empty_list())]
    )


def _site(attribute: str) -> Callable[[Ops[Any], KnowledgeBase], Any]:
    def compute(ops: Ops[Any], kb: KnowledgeBase) -> Any:
        return site_attribute(ops, kb, attribute)

    compute.__doc__ = f"The primary site's {attribute} (site table of classification.yaml)."
    return compute


def _grade(ops: Ops[Any], kb: KnowledgeBase) -> Any:
    """The grade used, as a contract word."""
    return grade_word(ops, grade_rank(ops, kb))


#: The computed fields rules may read: name -> (computation, the case fields it reads).
COMPUTED: dict[str, tuple[Callable[[Ops[Any], KnowledgeBase], Any], tuple[str, ...]]] = {
    "grade": (_grade, ("ki67_percent", "mitoses_per_2mm2", "grade", "primary_site")),
    "who_2019": (
        who_2019,
        ("differentiation", "ki67_percent", "mitoses_per_2mm2", "grade", "primary_site"),
    ),
    "differentiation_inferred": (
        differentiation_inferred,
        ("differentiation", "ki67_percent", "mitoses_per_2mm2", "grade", "primary_site"),
    ),
    "site_group": (_site("group"), ("primary_site",)),
    "gut_region": (_site("region"), ("primary_site",)),
    "portal_drained": (_site("portal_drained"), ("primary_site",)),
    "thoracic_primary": (_site("thoracic"), ("primary_site",)),
    "pregnancy_status": (pregnancy_status, ("pregnant",)),
    "grade_discordant": (grade_discordant, ("grade", "ki67_percent", "mitoses_per_2mm2")),
    "treatments_received": (treatments_received, ("prior_treatments",)),
    "treatments_failed": (treatments_failed, ("progressed_on",)),
}


#: Every case field each computation reads (its value can change only when one of them does).
READS: dict[str, tuple[str, ...]] = {
    "grade": ("ki67_percent", "mitoses_per_2mm2", "grade", "primary_site"),
    "who_2019": ("differentiation", "ki67_percent", "mitoses_per_2mm2", "grade", "primary_site"),
    "differentiation_inferred": (
        "differentiation",
        "ki67_percent",
        "mitoses_per_2mm2",
        "grade",
        "primary_site",
    ),
    "site_group": ("primary_site",),
    "gut_region": ("primary_site",),
    "portal_drained": ("primary_site",),
    "thoracic_primary": ("primary_site",),
    "pregnancy_status": ("pregnant", "sex", "age_years"),
    "grade_discordant": ("grade", "ki67_percent", "mitoses_per_2mm2", "primary_site"),
    "treatments_received": ("prior_treatments", "progressed_on", "disease_status"),
    "treatments_failed": ("progressed_on", "disease_status"),
}


def computed_sources(name: str) -> tuple[str, ...]:
    """The case fields whose absence can leave computed field ``name`` unknown."""
    return COMPUTED[name][1]


def unknown_sources(ops: Ops[E], kb: KnowledgeBase, name: str) -> E:
    """The case fields that would decide computed field ``name`` while it is unknown.

    Once the grade is known, only a stated differentiation can still tell NET from NEC.
    """
    sources = ops.null_set(COMPUTED[name][1])
    if name in ("who_2019", "differentiation_inferred"):
        known = ops.not_(ops.is_null(grade_rank(ops, kb)))
        return ops.case([(known, ops.null_set(("differentiation",)))], sources)
    return sources


def computed_specs(kb: KnowledgeBase) -> dict[str, Spec | Words]:
    """The value domain of each computed field (the knowledge-base check reads conditions
    against it)."""
    sites = kb.sites.values()
    specs: dict[str, Spec | Words] = {
        "grade": Choice(vocab.Grade),
        "who_2019": Choice(vocab.Who2019),
        "differentiation_inferred": Choice(vocab.Differentiation),
        "site_group": Words(tuple(sorted({s.group for s in sites}))),
        "gut_region": Words(tuple(sorted({s.region for s in sites}))),
        "portal_drained": Flag(),
        "thoracic_primary": Flag(),
        "pregnancy_status": Words(("pregnant", "not_pregnant")),
        "grade_discordant": Flag(),
        "treatments_received": ChoiceList(vocab.Intervention),
        "treatments_failed": ChoiceList(vocab.Intervention),
    }
    assert set(specs) == set(COMPUTED) == set(READS), "every computed field has a domain"
    return specs
