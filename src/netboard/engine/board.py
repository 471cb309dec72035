"""The tumour board's answer: one plan on stated presumptions, and what changes if each is wrong.

The strict answer (``recommend``'s recommendations) keeps every branch the case leaves open. A
board instead presumes the usual values for what the question leaves out, builds one plan on
them, and says what changes when a presumption is wrong. Here:

1. **Presumptions** (``presumptions.yaml``): for each field the case leaves out, the first
   presumption whose ``when`` holds gives its value (a contract word, or a representative of a
   numeric band, kept within what the stated facts allow). Pre-treatment **checks** (pregnancy,
   kidney function, blood counts) are presumed adequate and listed under the steps that need
   them, never forks of the plan.
2. **The plan** is the case plus its presumptions, decided by the same rules (``decide``): every
   option that holds, minus any that a not-advised rule holding in the same decision blocks,
   grouped into steps by the rules' ``step`` ranks (``plan.yaml``).
3. **What if**: each presumed field takes each of its other plausible values (for a number,
   each band of the knowledge base's own cut-offs), the plan is decided again, and the options
   that enter, leave or move are reported. Only presumptions whose alternatives change the plan
   are shown.

Nothing here reads a clock or the environment; the same case gives the same plan.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from netboard.answer import PlanStep, Presumption, WhatIf
from netboard.case import Case, coerce
from netboard.conditions import TRUE_CONDITION
from netboard.engine.classify import computed_fields
from netboard.engine.derive import COMPUTED
from netboard.engine.evaluate import Context, evaluate, implausible
from netboard.engine.explain import label_code, label_field
from netboard.engine.reads import cut_offs, depends_on, static_fields
from netboard.fields import Choice, Flag, Number, registry
from netboard.kb.model import KnowledgeBase, MonitoringDef, PresumptionDef, Rule
from netboard.logic import Truth
from netboard.vocab import Intervention, Status
from netboard.words import join_words, sentence

if TYPE_CHECKING:  # pragma: no cover
    from netboard.engine.recommend import Decision

__all__ = ["Board", "board"]

_CODE_ORDER = {c.value: i for i, c in enumerate(Intervention)}


@dataclass(frozen=True, slots=True)
class _Presumed:
    """A presumption applied to a case: its definition, value and how it is shown."""

    d: PresumptionDef
    value: Any
    shown: Any
    words: str | None = None


@dataclass(frozen=True, slots=True)
class _Option:
    """One option of a plan: the code, the rule that puts it there, its step rank."""

    code: str
    rule: Rule

    @property
    def rank(self) -> int:
        return self.rule.step

    @property
    def key(self) -> tuple[int, int]:
        return (self.rule.step, 0 if self.rule.status is Status.RECOMMENDED else 1)

    @property
    def preference(self) -> tuple[int, int, int]:
        """Which rule speaks for a code within a step: the earliest step, recommended before
        consider, and a rule for this kind of case before one that holds for every case (the
        tumour board with obstetrics in pregnancy, rather than the board in general)."""
        return (*self.key, 1 if self.rule.when == TRUE_CONDITION else 0)


@dataclass(frozen=True, slots=True)
class Board:
    """The board part of an answer (contract v2): plan, presumptions, what-ifs, bottom line."""

    plan: tuple[PlanStep, ...]
    presumptions: tuple[Presumption, ...]
    what_if: tuple[WhatIf, ...]
    bottom_line: str
    #: The follow-up the plan needs: monitoring items that hold on the presumed case with the
    #: plan's options (an under-specified question still gets its follow-up).
    monitoring: tuple[MonitoringDef, ...] = ()
    #: Fields the plan lists as checks before a step (creatinine clearance before PRRT): not
    #: forks of the plan, so the reader's view does not ask for them again as missing.
    checked: tuple[str, ...] = ()


# --- presumptions ---------------------------------------------------------------------------


def _holds(node: Any, case: Case, kb: KnowledgeBase) -> bool:
    ctx = Context(case=case, computed=computed_fields(case, kb), facts=kb.facts, kb=kb)
    return evaluate(node, ctx).truth is Truth.TRUE


def _number_range(kb: KnowledgeBase, case: Case, path: str) -> tuple[float, float]:
    """The range a number can take given the stated facts (a stated grade bounds Ki-67 and
    the mitotic count under the site's grading scheme)."""
    spec = registry().spec(path)
    assert isinstance(spec, Number)
    lo, hi = spec.lo, spec.hi if spec.hi is not None else spec.lo + 1000
    grade, site = case.grade, case.primary_site
    if grade is None or site is None or path not in ("ki67_percent", "mitoses_per_2mm2"):
        return lo, hi
    scheme = kb.grading["thoracic" if kb.sites[site].thoracic else "digestive"]
    g1, g2 = (
        (scheme.ki67_g1_below, scheme.ki67_g2_upto)
        if path == "ki67_percent"
        else (scheme.mitoses_g1_below, scheme.mitoses_g2_upto)
    )
    if g1 is None or g2 is None:
        return lo, hi
    return {"g1": (lo, g1), "g2": (g1, g2), "g3": (g2, hi)}[grade.value]


def _bands(kb: KnowledgeBase, case: Case, path: str) -> list[tuple[float, float]]:
    """The bands the knowledge base's cut-offs split a number into, within its range."""
    spec = registry().spec(path)
    assert isinstance(spec, Number)
    lo, hi = _number_range(kb, case, path)
    if spec.integer:
        return [(float(n), float(n)) for n in range(int(lo), int(hi) + 1)]
    cuts = sorted({c for c in cut_offs(kb).get(path, []) if lo < c < hi})
    edges = [lo, *cuts, hi]
    return list(pairwise(edges))


def _middle(band: tuple[float, float], integer: bool) -> float:
    mid = (band[0] + band[1]) / 2
    return float(round(mid)) if integer else round(mid, 2)


def _band_words(bands: Sequence[tuple[float, float]], path: str) -> str:
    """A run of adjacent bands in words: ``below 3``, ``10-20``, ``above 55``, ``3``."""
    spec = registry().spec(path)
    assert isinstance(spec, Number)
    lo, hi = bands[0][0], bands[-1][1]
    if spec.integer:
        return f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"
    if lo <= spec.lo:
        return f"below {hi:g}"
    if spec.hi is None or hi >= spec.hi:
        return f"above {lo:g}"
    return f"{lo:g}-{hi:g}"


def _presumed_number(kb: KnowledgeBase, case: Case, d: PresumptionDef) -> tuple[float, str]:
    """The representative value of a presumed band, kept within what the stated facts allow."""
    assert d.band is not None
    spec = registry().spec(d.field)
    assert isinstance(spec, Number)
    band_lo, band_hi, _ = d.band
    lo, hi = _number_range(kb, case, d.field)
    a = max(lo, band_lo if band_lo is not None else lo)
    b = min(hi, band_hi if band_hi is not None else hi)
    if a > b:  # the stated facts rule the presumed band out: the nearest possible band
        a, b = _bands(kb, case, d.field)[0]
    return _middle((a, b), spec.integer), d.shown or _band_words([(a, b)], d.field)


def _unaffected(d: PresumptionDef, changed: set[str], kb: KnowledgeBase) -> bool:
    """Whether nothing a presumption's decision reads is among the ``changed`` fields."""
    if d.field in changed:
        return False
    if d.when is not None and not changed.isdisjoint(depends_on(d.when, kb)):
        return False
    return d.band is None or changed.isdisjoint(("grade", "primary_site"))


def presume(
    case: Case,
    kb: KnowledgeBase,
    implied: Mapping[str, tuple[Any, str]],
    fixed: Mapping[str, Any] | None = None,
    base: Sequence[_Presumed] | None = None,
) -> tuple[Case, list[_Presumed], dict[str, Any]]:
    """The case with its presumptions and checks applied (``fixed`` values first).

    Returns the presumed case, the presumptions applied (in the knowledge base's order) and the
    check values applied, by field path. With ``base`` (the presumptions applied to ``case``
    without ``fixed``), a presumption whose condition reads nothing that changed is decided as
    it was there.
    """
    current = case.with_values(fixed) if fixed else case
    applied: list[_Presumed] = []
    done: set[str] = set(fixed or ())
    before = {p.d: p for p in base} if base is not None else None
    changed: set[str] = set(fixed or ())
    ctx: Context | None = None  # rebuilt only after a presumption changed the case
    for d in kb.presumptions:
        if d.field in done or current.value(d.field) is not None:
            continue
        if before is not None and _unaffected(d, changed, kb):
            # Decided as without ``fixed``: nothing it reads has changed.
            kept = before.get(d)
            if kept is not None:
                current = current.with_values({d.field: kept.value})
                ctx = None
                applied.append(kept)
                done.add(d.field)
            continue
        words: str | None = None
        if d.source == "words":
            hint = implied.get(d.field)
            if hint is None or str(hint[0]) != str(d.value):
                continue
            words = hint[1]
        elif d.when is not None:
            if ctx is None:
                ctx = Context(
                    case=current, computed=computed_fields(current, kb), facts=kb.facts, kb=kb
                )
            if evaluate(d.when, ctx).truth is not Truth.TRUE:
                if before is not None and d in before:
                    changed.add(d.field)  # applied without ``fixed``, not with it
                continue
        if d.band is not None:
            value, shown = _presumed_number(kb, current, d)
        else:
            value, shown = coerce(d.field, d.value), d.value
        if before is not None and (d not in before or before[d].value != value):
            changed.add(d.field)
        current = current.with_values({d.field: value})
        ctx = None
        applied.append(_Presumed(d, value, shown, words))
        done.add(d.field)
    # A check feeding a computed field that the case already settles (pregnancy status of a
    # man or of a woman past the childbearing age limit) is not needed.
    check_fields = {c.field for c in kb.checks}
    feeding = [name for name, (_, sources) in COMPUTED.items() if check_fields & set(sources)]
    computed = computed_fields(current, kb, names=feeding)
    settled = {
        source for name in feeding if computed[name] is not None for source in COMPUTED[name][1]
    }
    checks = {
        c.field: coerce(c.field, c.value)
        for c in kb.checks
        if current.value(c.field) is None and c.field not in done and c.field not in settled
    }
    return (current.with_values(checks) if checks else current), applied, checks


# --- the plan -------------------------------------------------------------------------------


def _changed(a: Case, b: Case) -> frozenset[str]:
    """The field paths whose values differ between two cases."""
    paths = set(a.paths()) | set(b.paths())
    return frozenset(p for p in paths if a.value(p) != b.value(p))


def options(
    case: Case, kb: KnowledgeBase, base: tuple[Case, Decision] | None = None
) -> tuple[dict[str, _Option], Decision]:
    """The plan's options for a (presumed) case: each code that a positive rule puts on the
    plan, unless a not-advised rule for the code holds in the same decision; a code found in
    several phases keeps its earliest step. With ``base`` (another case and its decision) only
    what reads the fields that differ is decided again; ``test_board.py`` checks that this
    gives what a decision from scratch gives."""
    from netboard.engine.recommend import best_decided, decide

    if base is None:
        decision = decide(case, kb, residuals=False)
    else:
        changed = _changed(base[0], case)
        decision = decide(case, kb, base=base[1], changed=changed, residuals=False)
    blocked: set[tuple[str, str | None]] = set()
    for c in decision.candidates:
        if not c.rule.status.positive and c.result.truth is Truth.TRUE:
            blocked.add((c.code, None if c.rule.scope == "all" else c.rule.phase.value))
    out: dict[str, _Option] = {}
    for c in best_decided(decision.candidates).values():
        if not c.rule.status.positive:
            continue
        if (c.code, None) in blocked or (c.code, c.rule.phase.value) in blocked:
            continue
        option = _Option(c.code, c.rule)
        if c.code not in out or option.preference < out[c.code].preference:
            out[c.code] = option
    return out, decision


@dataclass(slots=True)
class _Step:
    rank: int
    status: Status
    options: list[_Option]


def _steps(opts: Mapping[str, _Option]) -> list[_Step]:
    """Options grouped into steps by rank; in a rank, what is recommended comes first."""
    groups: dict[tuple[int, int], list[_Option]] = {}
    for o in sorted(opts.values(), key=lambda o: (o.key, _CODE_ORDER[o.code])):
        groups.setdefault(o.key, []).append(o)
    return [
        _Step(rank, Status.RECOMMENDED if kind == 0 else Status.CONSIDER, found)
        for (rank, kind), found in sorted(groups.items())
    ]


def _step_text(kb: KnowledgeBase, step: _Step, confirm: Sequence[str]) -> str:
    rules = list(dict.fromkeys(o.rule.id for o in step.options))
    by_id = {o.rule.id: o.rule for o in step.options}
    plan_step = kb.plan_steps[step.rank]
    codes = {o.code for o in step.options}
    if len(rules) == 1 and codes == {str(c) for c in by_id[rules[0]].codes}:
        text = by_id[rules[0]].action
    else:
        # Several rules, or a rule some of whose options a stated fact rules out (its action
        # would name them): the step's lead and the options that remain.
        text = f"{plan_step.lead}: " + join_words(
            [label_code(kb, o.code) for o in step.options], plan_step.join
        )
    if step.status is Status.CONSIDER and len(rules) == 1:
        text = f"consider {text}"
    if confirm and any(o.code == Intervention.MULTIDISCIPLINARY_REVIEW for o in step.options):
        text += "; before treatment, confirm " + join_words(list(confirm), "and")
    return sentence(text)


def _checks(kb: KnowledgeBase, step: _Step, applied_checks: Mapping[str, Any]) -> tuple[str, ...]:
    """The pre-treatment checks presumed for this case that the step's options read."""
    if not applied_checks:
        return ()
    from netboard.engine.recommend import compile_plan

    plan = compile_plan(kb)
    guards = {g.id: g for g in plan.soft_guards}
    reads: set[str] = set()
    for o in step.options:
        for s in plan.steps:
            if s.rule.id == o.rule.id and s.code == o.code:
                reads |= static_fields(s.condition, kb)
                for gid in s.soft_ids:
                    reads |= static_fields(guards[gid].when, kb)
    texts = [c.check for c in kb.checks if c.field in applied_checks and c.field in reads]
    return tuple(dict.fromkeys(texts))


# --- what if --------------------------------------------------------------------------------


def _alternatives(
    case: Case, kb: KnowledgeBase, p: _Presumed
) -> list[tuple[Any, str, list[tuple[float, float]]]]:
    """Each other value a presumed field can take: (representative, words, bands).

    ``case`` is the stated case: a value is ruled out only by what is stated, never by another
    presumption (a presumed Ki-67 below 10 % does not rule out a carcinoma: it rests on the
    presumption that the tumour is well differentiated)."""
    path, spec = p.d.field, registry().spec(p.d.field)
    if isinstance(spec, Number):
        out = []
        band = p.d.band
        assert band is not None
        lo_p = band[0] if band[0] is not None else spec.lo
        hi_p = band[1] if band[1] is not None else float("inf")
        for b in _bands(kb, case, path):
            mid = _middle(b, spec.integer)
            inside = lo_p <= mid <= hi_p if band[2] else lo_p <= mid < hi_p
            if not inside:
                out.append((mid, _band_words([b], path), [b]))
        return out
    if p.d.alternatives:
        return [(coerce(path, x), _words(x), []) for x in p.d.alternatives]
    if isinstance(spec, Flag):
        return [(not p.value, str(not p.value).lower(), [])]
    if isinstance(spec, Choice):
        ctx = Context(case=case, computed=computed_fields(case, kb), facts=kb.facts, kb=kb)
        excluded = {str(x) for x in p.d.excluded}
        return [
            (spec.enum(m.value), m.value, [])
            for m in spec.enum
            if m.value != str(p.value)
            and m.value not in excluded
            and not implausible(ctx, path, m.value)
        ]
    return []


def _words(value: Any) -> str:
    """A value as the contract words of a what-if ("liver" or "liver,bone" for a list)."""
    if isinstance(value, list | tuple):
        return ",".join(str(x) for x in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _phrase(kb: KnowledgeBase, path: str, value: Any, words: str) -> str:
    phrases = kb.phrases.get(path, {})
    if "band" in phrases:
        return phrases["band"].replace("{band}", words)
    return phrases.get(_words(value), f"{registry().fields[path].label} {words}")


@dataclass(frozen=True, slots=True)
class _Change:
    adds: tuple[str, ...]
    drops: tuple[str, ...]
    moves: tuple[tuple[str, _Option], ...]
    #: the plan's options with the alternative value (where the added options sit)
    alt: Mapping[str, _Option]
    #: fields presumed for the base plan that can no longer be presumed (their labels)
    unpresumed: tuple[str, ...] = ()

    def same_as(self, other: _Change) -> bool:
        return (self.adds, self.drops, self.moves, self.unpresumed) == (
            other.adds,
            other.drops,
            other.moves,
            other.unpresumed,
        )

    @property
    def size(self) -> int:
        """How much of the plan changes (presumptions lost alone change no step of it)."""
        return len(self.adds) + len(self.drops) + len(self.moves)


def _change(base: Mapping[str, _Option], alt: Mapping[str, _Option]) -> _Change:
    order = _CODE_ORDER.__getitem__
    adds = tuple(sorted(set(alt) - set(base), key=order))
    drops = tuple(sorted(set(base) - set(alt), key=order))
    moves = tuple(
        (code, alt[code])
        for code in sorted(set(base) & set(alt), key=order)
        if alt[code].key != base[code].key
    )
    return _Change(adds, drops, moves, alt)


def _summary(
    kb: KnowledgeBase,
    phrase: str,
    change: _Change,
    base: Mapping[str, _Option],
    alt: Mapping[str, _Option],
) -> str:
    """One sentence: what enters the plan, what leaves it, what moves."""
    # Options that end up the same way are named together: "TAE and TACE only as options".
    grouped: dict[str, list[str]] = {}
    for code in change.adds:
        opt = alt[code]
        how = "" if opt.rule.status is Status.RECOMMENDED else " (as an option)"
        grouped.setdefault(f"{kb.plan_steps[opt.rank].as_}{how}", []).append(code)
    for code, opt in change.moves:
        if opt.rank != base[code].rank:
            how = "" if opt.rule.status is Status.RECOMMENDED else " (as an option)"
            grouped.setdefault(f"{kb.plan_steps[opt.rank].as_}{how}", []).append(code)
        elif opt.rule.status is Status.CONSIDER:
            grouped.setdefault("only as an option", []).append(code)
        else:
            grouped.setdefault("recommended", []).append(code)
    parts = []
    for where, codes in grouped.items():
        if len(codes) > 1:
            where = where.replace("(as an option)", "(as options)").replace(
                "only as an option", "only as options"
            )
        parts.append(f"{join_words([label_code(kb, c, short=True) for c in codes], 'and')} {where}")
    # An option with its own bottom-line words ("nothing more (no follow-up)") is no treatment to
    # drop: when others take its place it goes unsaid, otherwise it is named as not holding.
    worded = [c for c in change.drops if base[c].rule.short]
    dropped = [c for c in change.drops if not base[c].rule.short]
    if dropped:
        parts.append("no " + join_words([label_code(kb, c, short=True) for c in dropped], "or"))
    if worded and not parts:
        parts.append("not " + join_words([base[c].rule.short for c in worded], "or"))
    if change.unpresumed:
        parts.append(join_words(list(change.unpresumed), "and") + " can then no longer be presumed")
    return f"If {phrase}: " + "; ".join(parts) + "."


# --- the board ------------------------------------------------------------------------------


def board(
    case: Case,
    kb: KnowledgeBase,
    implied: Mapping[str, tuple[Any, str]] | None = None,
    strict: Decision | None = None,
) -> Board:
    """The plan, presumptions, what-ifs and bottom line for a case.

    Args:
        case: the validated case (what the user stated).
        kb: the knowledge base.
        implied: values the words of a question imply, by field path, with the words
            (``{"differentiation": ("well", "neuroendocrine tumor")}``).
        strict: the decision for the stated case, when the caller has it: a presumed field
            that none of its open questions reads cannot change the plan, so its
            alternatives are not decided again (the answer is the same, only faster).
    """
    implied = implied or {}
    presumed_case, applied, checks = presume(case, kb, implied)
    base, decision = options(presumed_case, kb, (case, strict) if strict is not None else None)
    settled = _settled(kb, strict) if strict is not None else frozenset()
    changes: dict[str, list[tuple[str, str, _Change]]] = {}
    for p in applied:
        if p.d.field in settled:
            continue
        found: list[tuple[list[tuple[float, float]], str, str, _Change]] = []
        for value, words, bands in _alternatives(case, kb, p):
            alt_case, alt_applied, _ = presume(case, kb, implied, {p.d.field: value}, applied)
            change = _change(base, options(alt_case, kb, (presumed_case, decision))[0])
            kept = {q.d.field for q in alt_applied}
            lost = tuple(
                registry().fields[q.d.field].label
                for q in applied
                if q.d.field not in kept and q.d.field != p.d.field
            )
            if lost:
                change = replace(change, unpresumed=lost)
            if change.size == 0:
                continue
            last = found[-1] if found else None
            if (
                bands
                and last
                and last[0]
                and last[0][-1][1] == bands[0][0]
                and last[3].same_as(change)
            ):
                # Adjacent bands that change the plan the same way are one what-if.
                merged = [*last[0], *bands]
                words = _band_words(merged, p.d.field)
                found[-1] = (merged, words, _phrase(kb, p.d.field, value, words), change)
                continue
            found.append((bands, words, _phrase(kb, p.d.field, value, words), change))
        if found:
            changes[p.d.field] = [(w, phrase, c) for _, w, phrase, c in found]
    shown = [p for p in applied if p.d.field in changes]
    presumptions = tuple(
        Presumption(
            field=p.d.field,
            value=p.shown,
            why=p.d.why.replace("{words}", p.words or ""),
            evidence=p.d.evidence,
            phrase=p.d.phrase,
            confirm=p.d.confirm,
            words=p.words or "",
        )
        for p in shown
    )
    what_if = tuple(
        WhatIf(
            field=path,
            value=words,
            summary=_summary(kb, phrase, change, base, change.alt),
            adds=tuple(Intervention(c) for c in change.adds),
            drops=tuple(Intervention(c) for c in change.drops),
        )
        for path, found_changes in changes.items()
        for words, phrase, change in found_changes
    )
    confirm = [p.d.confirm for p in shown]
    plan: list[PlanStep] = []
    for order, step in enumerate(_steps(base), start=1):
        codes = tuple(dict.fromkeys(o.code for o in step.options))
        rests_on = [
            path
            for path, found_changes in changes.items()
            if any(
                c in ch.drops or any(m == c for m, _ in ch.moves)
                for _, _, ch in found_changes
                for c in codes
            )
        ]
        plan.append(
            PlanStep(
                order=order,
                codes=tuple(Intervention(c) for c in codes),
                join=kb.plan_steps[step.rank].join,
                status=step.status,
                phase=step.options[0].rule.phase,
                text=_step_text(kb, step, confirm),
                presumes=tuple(rests_on),
                checks=_checks(kb, step, checks),
                evidence=tuple(dict.fromkeys(e for o in step.options for e in o.rule.evidence)),
            )
        )
    biggest = max(
        ((phrase, ch) for found_changes in changes.values() for _, phrase, ch in found_changes),
        key=lambda x: x[1].size,
        default=None,
    )
    ctx, planned = decision.ctx, decision.ctx.planned
    ctx.planned = frozenset(base)
    monitoring = tuple(m for m in kb.monitoring if evaluate(m.when, ctx).truth is Truth.TRUE)
    ctx.planned = planned
    listed = {text for step in plan for text in step.checks}
    waiting: tuple[str, ...] = ()
    if all(c is Intervention.MULTIDISCIPLINARY_REVIEW for step in plan for c in step.codes):
        waiting = _waiting(presumed_case, kb, (case, strict) if strict is not None else None)
    return Board(
        plan=tuple(plan),
        presumptions=presumptions,
        what_if=what_if,
        bottom_line=_bottom_line(kb, plan, shown, biggest, base, waiting),
        monitoring=monitoring,
        checked=tuple(c.field for c in kb.checks if c.field in checks and c.check in listed),
    )


def _waiting(
    presumed: Case, kb: KnowledgeBase, stated: tuple[Case, Decision] | None
) -> tuple[str, ...]:
    """The unknown fields of the presumed case that open positive rules read (stating them
    could put a treatment on a plan that has none yet): those read by at least half as many
    open options as the most read one, the most read first. ``stated``: the stated case and
    its decision, from which the presumed case is decided incrementally."""
    from netboard.engine.recommend import decide

    if stated is None:
        decision = decide(presumed, kb)
    else:
        # From the stated case's decision: only what reads a presumed field is decided again.
        changed = _changed(stated[0], presumed)
        decision = decide(presumed, kb, base=stated[1], changed=changed)
    reads = Counter(
        f
        for c in decision.candidates
        if c.rule.status.positive and c.result.truth is Truth.UNKNOWN
        for f in c.result.unknown
    )
    top = max(reads.values(), default=0)
    # Only the fields that decide much of what is open (not a comorbidity one option reads).
    return tuple(sorted((f for f in reads if 2 * reads[f] >= top), key=lambda f: (-reads[f], f)))


def _settled(kb: KnowledgeBase, strict: Decision) -> frozenset[str]:
    """Presumed fields that no value could make change the plan, read from the decision for
    the stated case: three-valued evaluation leaves a field among a result's unknown fields
    whenever some value of it could change that result, so a field that no open rule,
    eligibility criterion or not-advised rule reads is settled whatever its value. Fields
    that a pre-treatment check, a soft guard or another presumption reads are never settled
    (those are decided outside the strict decision's open questions)."""
    from netboard.engine.recommend import compile_plan

    always_open = compile_plan(kb).read_by_checks_and_presumptions
    return frozenset(
        d.field
        for d in kb.presumptions
        if d.field not in strict.decides and d.field not in always_open
    )


#: The stated fields a grade comes from (the site only picks the grading scheme): named once,
#: as the grade, when the plan waits for them.
_GRADE_FIELDS = frozenset(COMPUTED["grade"][1]) - {"primary_site"}
_GRADE_WORDS = "the grade (Ki-67 index or mitotic count)"


def _bottom_line(
    kb: KnowledgeBase,
    plan: Sequence[PlanStep],
    shown: Sequence[_Presumed],
    biggest: tuple[str, _Change] | None,
    base: Mapping[str, _Option],
    waiting: Sequence[str] = (),
) -> str:
    """The plan in a sentence (with what it waits for, when it holds no treatment yet), the
    presumptions in one, the biggest what-if in one."""
    parts: list[str] = []
    for s in plan:
        if Intervention.MULTIDISCIPLINARY_REVIEW in s.codes and len(plan) > 1:
            continue
        step = kb.plan_steps[base[s.codes[0].value].rank]
        rules = {base[c.value].rule for c in s.codes}
        short = next(iter(rules)).short if len(rules) == 1 else ""
        labels = short or join_words([label_code(kb, c.value, short=True) for c in s.codes], s.join)
        where = f" {step.as_}" if step.say else ""
        option = "" if s.status is Status.RECOMMENDED else " (to consider)"
        parts.append(f"{labels}{where}{option}")
    sentences = []
    if parts:
        sentences.append("Plan: " + "; ".join(parts) + ".")
        needed = list(
            dict.fromkeys(
                _GRADE_WORDS if f in _GRADE_FIELDS else label_field(kb, f) for f in waiting
            )
        )
        if needed:
            sentences.append(f"A treatment plan needs {join_words(needed[:2])} first.")
    else:
        sentences.append(
            "No treatment can be proposed yet: the tumour board needs the facts below."
        )
    if shown:
        phrases = join_words([p.d.phrase for p in shown], "and")
        sentences.append(f"This presumes {phrases}.")
    if biggest is not None:
        text = _summary(kb, biggest[0], biggest[1], base, biggest[1].alt)
        sentences.append("The answer changes most " + text[0].lower() + text[1:])
    return " ".join(sentences)
