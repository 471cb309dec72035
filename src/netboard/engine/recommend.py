"""recommend(case) -> Answer: rules, eligibility, alerts, monitoring, in a fixed order.

The engine reads no clock and no environment: the same case and knowledge base
always give the same answer, byte for byte once rendered.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from netboard.answer import (
    Alert,
    Answer,
    AppliesIf,
    Classification,
    Criterion,
    Disagreement,
    Dose,
    Eligibility,
    MissingInfo,
    Monitoring,
    Recommendation,
    Reference,
    Scope,
)
from netboard.case import Case
from netboard.conditions import (
    TRUE_CONDITION,
    All,
    AnyOf,
    Condition,
    Not,
    Planned,
    Shared,
    walk,
)
from netboard.engine.classify import classify, computed_fields
from netboard.engine.derive import COMPUTED
from netboard.engine.evaluate import Context, Evaluator, Result, compiled, evaluate
from netboard.engine.explain import (
    describe,
    label_code,
    label_field,
    label_value,
    missing_information,
    order_fields,
)
from netboard.engine.reads import depends_on
from netboard.engine.summary import summarize
from netboard.kb import load_kb
from netboard.kb.model import AlertRule, DoseDef, KnowledgeBase, Rule
from netboard.logic import Truth
from netboard.vocab import (
    CONTRACT_VERSION,
    PHASE_ORDER,
    STATUS_RANK,
    EligibilityStatus,
    Intervention,
    Neoplasm,
    ReferenceKind,
    Severity,
)
from netboard.words import capfirst, join_words

_KIND_ORDER = {k: i for i, k in enumerate(ReferenceKind)}
SEVERITY_ORDER = {s: i for i, s in enumerate(Severity)}


@dataclass(frozen=True, slots=True)
class _Candidate:
    rule: Rule
    code: str
    result: Result


def _label(kb: KnowledgeBase, rule: Rule, code: str) -> str:
    """How a rule is named in missing_information: the intervention and the phase, in words."""
    code_label = label_code(kb, code)
    phase_label = kb.labels.get("phases", {}).get(rule.phase.value, rule.phase.value)
    return f"{code_label} [{phase_label}]"


def recommend(
    case: Case,
    *,
    kb: KnowledgeBase | None = None,
    neoplasm: Neoplasm = Neoplasm.NEUROENDOCRINE,
    neoplasm_detail: str = "",
    implied: Mapping[str, tuple[Any, str]] | None = None,
    board_answer: bool = True,
) -> Answer:
    """Answer one case.

    Args:
        case: the validated case.
        kb: the knowledge base (default: the packaged one).
        neoplasm: what the record says about the neoplasm (a structured case is a
            neuroendocrine neoplasm; FHIR records and free text may say otherwise). For no
            neoplasm or a non-neuroendocrine cancer the answer holds no recommendation.
        neoplasm_detail: what the record showed, in words, for ``scope.reason``.
        implied: values the words of a free-text question imply, by field path, with the
            words (``{"differentiation": ("well", "neuroendocrine tumor")}``); the board
            answer presumes them and says why.
        board_answer: False leaves out the board part (plan, presumptions, what-ifs), for
            audits and comparisons that read only the strict answer (contract 1 keys).

    Returns:
        The full answer; what the case leaves open is in ``missing_information``
        and in the ``applies_if`` of branch recommendations.

    Example:
        >>> from netboard.case import load_case
        >>> a = recommend(load_case({"primary_site": "ileum", "differentiation": "poor",
        ...                          "metastatic_sites": ["liver"]}))
        >>> a.classification.who_2019
        'nec'
    """
    kb = kb or load_kb()
    cls = classify(case, kb)
    ctx = Context(case=case, computed=cls.computed, facts=kb.facts, kb=kb)
    scope = _scope(kb, ctx, neoplasm, neoplasm_detail)
    if scope.applies is False:
        return _out_of_scope(case, kb, scope)
    decision = decide(case, kb, ctx)
    ctx, eligibility, chosen, decides = (
        decision.ctx,
        decision.eligibility,
        decision.chosen,
        decision.decides,
    )
    plan = compile_plan(kb)

    positive_steps = sorted({c.rule.step for c in chosen if c.rule.status.positive})
    dense = {step: i + 1 for i, step in enumerate(positive_steps)}

    def order_of(step: int) -> int:
        later = [s for s in positive_steps if s >= step]
        return dense[later[0]] if later else len(positive_steps) + 1

    # Alerts and monitoring follow the decided plan, not hypothetical branches.
    ctx.planned = frozenset(
        c.code for c in chosen if c.rule.status.positive and c.result.truth is Truth.TRUE
    )

    recommendations: list[Recommendation] = []
    for cand in chosen:
        dosing: tuple[Dose, ...] = ()
        if cand.rule.status.positive:
            dosing = tuple(
                Dose(text=d.text, evidence=d.evidence)
                for d in plan.dosing.get(cand.code, ())
                if d.when is None or evaluate(d.when, ctx).truth is Truth.TRUE
            )
        applies_if = None
        if cand.result.truth is Truth.UNKNOWN:
            applies_if = AppliesIf(
                fields=order_fields(cand.result.unknown),
                condition=describe(cand.result.residual, kb) if cand.result.residual else "",
            )
        recommendations.append(
            Recommendation(
                code=Intervention(cand.code),
                status=cand.rule.status,
                phase=cand.rule.phase,
                order=order_of(cand.rule.step),
                rationale=cand.rule.rationale,
                evidence=cand.rule.evidence,
                rule_id=cand.rule.id,
                dosing=dosing,
                applies_if=applies_if,
            )
        )
    recommendations.sort(
        key=lambda r: (PHASE_ORDER[r.phase], r.order, STATUS_RANK[r.status], r.code.value)
    )

    # 3. Alerts: one per code, the most severe rule that holds. An alert of an option offered
    # only on an open branch travels with it: it holds with the branch (`applies_if`).
    branch_codes: dict[str, list[Recommendation]] = {}
    for rec in recommendations:
        if rec.status.positive and rec.applies_if is not None:
            branch_codes.setdefault(rec.code.value, []).append(rec)
    definite = ctx.planned
    with_branches = definite | frozenset(branch_codes)
    alerts: dict[str, Alert] = {}
    for a in plan.alerts:
        r = evaluate(a.when, ctx)
        branch: AppliesIf | None = None
        if r.truth is not Truth.TRUE and branch_codes:
            ctx.planned = with_branches
            if evaluate(a.when, ctx).truth is Truth.TRUE:
                branch = _alert_branch(kb, a.when, definite, branch_codes)
            ctx.planned = definite
        held = alerts.get(a.code.value)
        if (r.truth is Truth.TRUE or branch is not None) and (
            held is None
            or (held.applies_if is not None and branch is None and held.severity is a.severity)
        ):
            alerts[a.code.value] = Alert(
                code=a.code,
                severity=a.severity,
                message=a.message,
                evidence=a.evidence,
                rule_id=a.id,
                applies_if=branch,
            )
        if r.truth is Truth.UNKNOWN and a.severity is Severity.CRITICAL:
            for f in r.unknown:
                decides[f].add(f"the {a.code.value.replace('_', ' ')} alert")
    alert_list = sorted(alerts.values(), key=lambda a: (SEVERITY_ORDER[a.severity], a.code.value))

    strict_monitoring = [m for m in kb.monitoring if evaluate(m.when, ctx).truth is Truth.TRUE]
    disagreements = [
        Disagreement(topic=d.topic, text=d.text, evidence=d.evidence)
        for d in kb.disagreements
        if evaluate(d.when, ctx).truth is Truth.TRUE
    ]
    missing = [MissingInfo(field=f, why=w) for f, w in missing_information(kb, decides)]

    from netboard.engine.board import Board, board

    b = (
        board(case, kb, implied, strict=decision)
        if board_answer
        else Board(plan=(), presumptions=(), what_if=(), bottom_line="")
    )
    # Monitoring: what the stated facts need, and what the plan's options need.
    monitoring = [
        Monitoring(what=m.what, interval=m.interval, reason=m.reason, evidence=m.evidence)
        for m in kb.monitoring
        if m in strict_monitoring or m in b.monitoring
    ]
    grading = kb.grading["thoracic" if cls.computed.get("thoracic_primary") else "digestive"]
    cited: set[str] = set(grading.evidence)
    for plan_step in b.plan:
        cited.update(plan_step.evidence)
    for presumption in b.presumptions:
        cited.update(presumption.evidence)
    for rec in recommendations:
        cited.update(rec.evidence)
        for dose in rec.dosing:
            cited.update(dose.evidence)
    for al in alert_list:
        cited.update(al.evidence)
    for el in eligibility:
        for crit in el.criteria:
            cited.update(crit.evidence)
    for mon in monitoring:
        cited.update(mon.evidence)
    for dis in disagreements:
        cited.update(dis.evidence)
    ref_index = plan.ref_index
    references = [
        Reference(
            id=x.id,
            citation=x.citation,
            year=x.year,
            kind=x.kind,
            verified=x.verified,
            url=x.url,
            note=x.note,
        )
        for x in sorted(
            (kb.references[rid] for rid in cited),
            key=lambda x: (_KIND_ORDER[x.kind], ref_index[x.id]),
        )
    ]

    grade = cls.computed["grade"]
    who = cls.computed["who_2019"]
    classification = Classification(
        who_2019=who.value if who else "unknown",
        grade=grade.value if grade else None,
        stage=cls.stage,
        site_group=cls.computed["site_group"] or "unknown",
        functional=case.functional_syndrome.value if case.functional_syndrome else "unknown",
        notes=cls.notes + _unusual(case, kb, ctx),
    )
    answer = Answer(
        contract_version=CONTRACT_VERSION,
        kb_version=kb.version,
        kb_released=kb.released,
        case_id=case.id,
        summary="",
        classification=classification,
        recommendations=tuple(recommendations),
        alerts=tuple(alert_list),
        eligibility=tuple(eligibility),
        monitoring=tuple(monitoring),
        missing_information=tuple(missing),
        references=tuple(references),
        disagreements=tuple(disagreements),
        scope=scope,
        plan=b.plan,
        presumptions=b.presumptions,
        what_if=b.what_if,
        checked=b.checked,
    )
    return replace(answer, summary=summarize(answer, kb, case, b.bottom_line))


def _unusual(case: Case, kb: KnowledgeBase, ctx: Context) -> tuple[str, ...]:
    """Stated values the knowledge base thinks implausible here (an insulinoma of the rectum):
    kept as stated, and named so that the reader checks them."""
    notes = []
    for p in kb.plausible:
        stated = case.value(p.field)
        if stated is None or str(getattr(stated, "value", stated)) != p.value:
            continue
        if evaluate(p.when, ctx).truth is Truth.FALSE:
            notes.append(
                f"{capfirst(label_field(kb, p.field))} is stated as "
                f"{label_value(kb, p.value)}, which is unusual here: "
                f"{p.why} The answer keeps it as stated; please check it."
            )
    return tuple(notes)


def _alert_branch(
    kb: KnowledgeBase,
    when: Condition,
    definite: frozenset[str],
    branch_codes: Mapping[str, Sequence[Recommendation]],
) -> AppliesIf:
    """The branch an alert holds on: that of the options it names that are offered only on a
    branch (their open fields; the options in words)."""
    codes = [
        c
        for node in walk(when)
        if isinstance(node, Planned)
        for c in node.codes
        if c in branch_codes and c not in definite
    ]
    codes = list(dict.fromkeys(codes))
    fields = tuple(
        dict.fromkeys(
            f
            for c in codes
            for rec in branch_codes[c]
            if rec.applies_if
            for f in rec.applies_if.fields
        )
    )
    labels = [label_code(kb, c) for c in codes]
    return AppliesIf(fields=fields, condition=f"if {join_words(labels, 'or')} goes ahead")


def _scope(kb: KnowledgeBase, ctx: Context, neoplasm: Neoplasm, detail: str) -> Scope:
    """``scope``: the neoplasm's reason from scope.yaml, then every topic not covered here."""
    text = kb.scope_reasons.get(neoplasm.value, "")
    reasons = [text.replace("{detail}", f" ({detail})" if detail else "")]
    if neoplasm in (Neoplasm.NEUROENDOCRINE, Neoplasm.UNCONFIRMED):
        reasons += [t.reason for t in kb.topics if evaluate(t.when, ctx).truth is Truth.TRUE]
    applies = {Neoplasm.NEUROENDOCRINE: True, Neoplasm.UNCONFIRMED: None}.get(neoplasm, False)
    return Scope(applies=applies, reason=" ".join(r for r in reasons if r))


def _out_of_scope(case: Case, kb: KnowledgeBase, scope: Scope) -> Answer:
    """No neoplasm, or not a neuroendocrine one: no recommendation, alert or plan."""
    return Answer(
        contract_version=CONTRACT_VERSION,
        kb_version=kb.version,
        kb_released=kb.released,
        case_id=case.id,
        summary=scope.reason,
        classification=Classification(
            who_2019="unknown",
            grade=None,
            stage="not applicable",
            site_group="unknown",
            functional="unknown",
        ),
        recommendations=(),
        alerts=(),
        eligibility=tuple(
            Eligibility(
                name=es.name,
                title=es.title,
                status=EligibilityStatus.UNDETERMINED,
                criteria=(),
                note="Not assessed: netboard answers only for neuroendocrine neoplasms.",
            )
            for es in kb.eligibility
        ),
        monitoring=(),
        missing_information=(),
        references=(),
        scope=scope,
    )


@dataclass(slots=True)
class Decision:
    """What the rules decide for one case: eligibility, the candidates kept, what is open.

    ``results`` holds each plan step's result (None: skipped by a pre-treatment check that
    holds), so that a decision for a case differing in a few fields can reuse the rest.
    """

    ctx: Context
    eligibility: list[Eligibility]
    candidates: list[_Candidate]
    chosen: list[_Candidate]
    decides: dict[str, set[str]]
    results: list[Result | None]
    holding: frozenset[str]
    #: the candidate each plan step gives (None: it does not hold or is skipped), by index
    at: list[_Candidate | None]


def decide(
    case: Case,
    kb: KnowledgeBase,
    ctx: Context | None = None,
    *,
    base: Decision | None = None,
    changed: frozenset[str] | None = None,
    residuals: bool = True,
) -> Decision:
    """Eligibility criterion by criterion, then every rule with its guards, then the choice
    per (code, phase): the part of ``recommend`` that the board answer re-runs on a case with
    presumptions or with one alternative value.

    With ``base`` (the decision for a case that differs only in the ``changed`` field paths),
    what reads none of them is taken from it: re-deciding one what-if costs the rules that read
    the changed fields, and the facts that read none of them keep their values. ``decides``
    then holds only what was evaluated again. ``residuals=False`` skips building the
    residual conditions of open results, ``decides`` and the choice among open branches
    (``chosen`` is then empty): the board needs only what holds, read with ``best_decided``.
    """
    plan = compile_plan(kb)
    reuse = base is not None and changed is not None
    changed = changed or frozenset()
    if ctx is None:
        computed = computed_fields(case, kb, base.ctx.computed if base else None, changed)
        ctx = Context(case=case, computed=computed, facts=kb.facts, kb=kb)
    ctx.truth_only = not residuals
    if reuse and base is not None and residuals and base.ctx.truth_only:
        raise ValueError("a decision with residuals cannot reuse one decided for truth only")
    if reuse and base is not None:
        for name, result in base.ctx._memo.items():
            reads = plan.fact_reads.get(name)
            if reads is not None and reads.isdisjoint(changed):
                ctx._memo.setdefault(name, result)
    decides: dict[str, set[str]] = defaultdict(set)

    def note_unknown(result: Result, what: str) -> None:
        if residuals:  # the board reads only truth values, never what an open result decides
            for f in result.unknown:
                decides[f].add(what)

    # 1. Eligibility, criterion by criterion.
    eligibility: list[Eligibility] = []
    eligibility_unknown: dict[str, frozenset[str]] = {}
    for i, es in enumerate(kb.eligibility):
        if reuse and base is not None and plan.eligibility_reads[i].isdisjoint(changed):
            eligibility.append(base.eligibility[i])
            eligibility_unknown[es.name.value] = base.ctx.eligibility_unknown[es.name.value]
            continue
        criteria: list[Criterion] = []
        unknown: set[str] = set()
        for c in es.criteria:
            r = evaluate(c.when, ctx)
            met = None if r.truth is Truth.UNKNOWN else r.truth is Truth.TRUE
            if met is None and not c.check:
                unknown |= r.unknown
                note_unknown(r, f"{es.title} ({c.name})")
            criteria.append(
                Criterion(name=c.name, met=met, detail=c.detail, evidence=c.evidence, check=c.check)
            )
        # A pre-treatment check not yet stated is confirmed before treatment, not a fork.
        mets = [c.met for c in criteria if c.met is not None or not c.check]
        status = (
            EligibilityStatus.NOT_ELIGIBLE
            if False in mets
            else EligibilityStatus.UNDETERMINED
            if None in mets
            else EligibilityStatus.ELIGIBLE
        )
        eligibility_unknown[es.name.value] = frozenset(unknown)
        eligibility.append(
            Eligibility(
                name=es.name, title=es.title, status=status, criteria=tuple(criteria), note=es.note
            )
        )
    ctx.eligibility = {e.name.value: e.status.value for e in eligibility}
    ctx.eligibility_unknown = eligibility_unknown

    # 2. Rules, each positive one combined with the guards of its code (see compile_plan).
    # Pre-treatment checks (unknown_blocks: false) hold or not once per case.
    holding = frozenset(
        g.id
        for g, reads in zip(plan.soft_guards, plan.soft_guard_reads, strict=True)
        if (
            g.id in base.holding
            if reuse and base is not None and reads.isdisjoint(changed)
            else evaluate(g.when, ctx).truth is Truth.TRUE
        )
    )
    if reuse and base is not None and holding == base.holding:
        # Only the steps that read a changed field are evaluated again.
        results = list(base.results)
        at = list(base.at)
        for j in sorted({j for f in changed for j in plan.steps_reading.get(f, ())}):
            step = plan.steps[j]
            if results[j] is None:
                continue  # a pre-treatment check holds, as in the base decision
            r = step.run(ctx)
            if r.truth is Truth.UNKNOWN:
                note_unknown(r, step.label)
            results[j] = r
            at[j] = _candidate(step, r)
    else:
        results = []
        at = []
        for j, step in enumerate(plan.steps):
            if step.soft_ids and not holding.isdisjoint(step.soft_ids):
                results.append(None)
                at.append(None)
                continue
            previous = base.results[j] if reuse and base is not None else None
            if previous is not None and step.reads.isdisjoint(changed):
                r = previous
            else:
                r = step.run(ctx)
                if r.truth is Truth.UNKNOWN:
                    note_unknown(r, step.label)
            results.append(r)
            at.append(_candidate(step, r))
    candidates = [c for c in at if c is not None]
    chosen = _choose(candidates) if residuals else []
    return Decision(ctx, eligibility, candidates, chosen, decides, results, holding, at)


def _candidate(step: _Step, r: Result) -> _Candidate | None:
    """The step as a candidate of the choice: when its rule holds, or is open and branches."""
    if r.truth is Truth.TRUE or (r.truth is Truth.UNKNOWN and step.rule.on_unknown == "branch"):
        return _Candidate(step.rule, step.code, r)
    return None


@dataclass(frozen=True, slots=True)
class _Step:
    """One (rule, code) pair ready to evaluate: its condition with the strict guards folded in."""

    rule: Rule
    code: str
    condition: Condition
    soft_ids: frozenset[str]
    label: str
    #: every case field whose value can change the step's truth
    reads: frozenset[str]
    #: the condition compiled (``evaluate.compiled``)
    run: Evaluator


@dataclass(frozen=True, slots=True)
class Plan:
    """Per-knowledge-base indexes built once: rule steps, dosing by code, sorted alerts."""

    steps: tuple[_Step, ...]
    soft_guards: tuple[Rule, ...]
    #: fields each soft guard, each eligibility set and each fact reads (for incremental
    #: decisions)
    soft_guard_reads: tuple[frozenset[str], ...]
    eligibility_reads: tuple[frozenset[str], ...]
    fact_reads: dict[str, frozenset[str]]
    #: field -> indexes of the steps whose truth it can change
    steps_reading: dict[str, tuple[int, ...]]
    #: fields that soft guards, pre-treatment check criteria and presumptions read: decided
    #: outside a decision's open questions, so the board never takes them as settled
    read_by_checks_and_presumptions: frozenset[str]
    dosing: dict[str, tuple[DoseDef, ...]]
    alerts: tuple[AlertRule, ...]
    ref_index: dict[str, int]


_PLANS: dict[int, tuple[KnowledgeBase, Plan]] = {}


def compile_plan(kb: KnowledgeBase) -> Plan:
    """Fold each code's guards into its positive rules, once per knowledge base.

    A negative rule (not_recommended/contraindicated) guards its code: while it holds, no
    positive rule for that code (in its phase, or in every phase with ``scope: all``) can put
    the code on the plan. Exceptions are named: a guard's ``unless`` lifts it (it is folded
    into the guard's condition), and a positive rule may ``pass`` guards it lists by id. A
    guard whose data are missing keeps the option open as a branch, except a pre-treatment
    check (``unknown_blocks: false``), which removes the option only when it holds.
    """
    cached = _PLANS.get(id(kb))
    if cached is not None and cached[0] is kb:
        return cached[1]
    guards: dict[tuple[str, str | None], list[Rule]] = defaultdict(list)
    for rule in kb.rules:
        if not rule.status.positive:
            for code in rule.codes:
                guards[(code, rule.phase.value if rule.scope == "phase" else None)].append(rule)
    steps: list[_Step] = []
    for rule in kb.rules:
        for code in rule.codes:
            cond: Condition = rule.when
            soft: tuple[Rule, ...] = ()
            if rule.status.positive and not rule.overrides_guards:
                blocking = [
                    g
                    for g in guards[(code, rule.phase.value)] + guards[(code, None)]
                    if g.id not in rule.passes
                ]
                strict = tuple(Shared(g.id, g.when) for g in blocking if g.unknown_blocks)
                if strict:
                    cond = All((rule.when, Not(AnyOf(strict))))
                soft = tuple(g for g in blocking if not g.unknown_blocks)
            steps.append(
                _Step(
                    rule,
                    code,
                    cond,
                    frozenset(g.id for g in soft),
                    _label(kb, rule, code),
                    depends_on(cond, kb),
                    compiled(cond),
                )
            )
    dosing: dict[str, list[DoseDef]] = defaultdict(list)
    for d in kb.dosing:
        dosing[d.code.value].append(d)
    soft_guards = tuple(r for r in kb.rules if not r.status.positive and not r.unknown_blocks)
    soft_guard_reads = tuple(depends_on(g.when, kb) for g in soft_guards)
    plan = Plan(
        steps=tuple(steps),
        soft_guards=soft_guards,
        soft_guard_reads=soft_guard_reads,
        eligibility_reads=tuple(
            frozenset().union(*(depends_on(c.when, kb) for c in es.criteria))
            for es in kb.eligibility
        ),
        fact_reads={name: depends_on(f.when, kb) for name, f in kb.facts.items()},
        steps_reading=_index_reads(steps),
        read_by_checks_and_presumptions=_read_by_checks_and_presumptions(kb, soft_guard_reads),
        dosing={k: tuple(x) for k, x in dosing.items()},
        alerts=tuple(sorted(kb.alerts, key=lambda a: SEVERITY_ORDER[a.severity])),
        ref_index={rid: i for i, rid in enumerate(kb.references)},
    )
    _PLANS[id(kb)] = (kb, plan)
    return plan


def _read_by_checks_and_presumptions(
    kb: KnowledgeBase, soft_guard_reads: Sequence[frozenset[str]]
) -> frozenset[str]:
    """The fields soft guards, pre-treatment check criteria and presumptions read (a banded
    presumption reads the primary site and what the grade is computed from)."""
    out: set[str] = set().union(*soft_guard_reads)
    for es in kb.eligibility:
        for c in es.criteria:
            if c.check:
                out |= depends_on(c.when, kb)
    for d in kb.presumptions:
        if d.when is not None:
            out |= depends_on(d.when, kb)
        if d.band is not None:
            out |= {"primary_site", *COMPUTED["grade"][1]}
    return frozenset(out)


def _index_reads(steps: Sequence[_Step]) -> dict[str, tuple[int, ...]]:
    """Field -> the indexes of the steps that read it."""
    out: dict[str, list[int]] = defaultdict(list)
    for j, step in enumerate(steps):
        for f in step.reads:
            out[f].append(j)
    return {f: tuple(js) for f, js in out.items()}


def _rank(c: _Candidate) -> tuple[int, int, int, bool, str]:
    """The order of the candidates of one (code, phase): best status first; among open
    branches, the one closest to decided (fewest missing fields) speaks for the group; a rule
    for this kind of case before one that holds for every case (the board with obstetrics in
    pregnancy, not the board in general)."""
    return (
        STATUS_RANK[c.rule.status],
        len(c.result.unknown),
        c.rule.step,
        c.rule.when == TRUE_CONDITION,
        c.rule.id,
    )


def best_decided(candidates: Sequence[_Candidate]) -> dict[tuple[str, str], _Candidate]:
    """Per (code, phase), in key order: the candidate that holds and that ``_choose`` keeps as
    the group's decided one (the first by ``_rank``)."""
    best: dict[tuple[str, str], _Candidate] = {}
    for c in candidates:
        if c.result.truth is Truth.TRUE:
            key = (c.code, c.rule.phase.value)
            held = best.get(key)
            if held is None or _rank(c) < _rank(held):
                best[key] = c
    return {key: best[key] for key in sorted(best)}


def _choose(candidates: list[_Candidate]) -> list[_Candidate]:
    """Per (code, phase): the best decided candidate, plus the best open branch of each
    polarity (positive, negative) whose status would rank above it."""
    groups: dict[tuple[str, str], list[_Candidate]] = defaultdict(list)
    for c in candidates:
        groups[(c.code, c.rule.phase.value)].append(c)
    chosen: list[_Candidate] = []
    for key in sorted(groups):
        group = groups[key]
        if len(group) == 1:
            chosen.append(group[0])
            continue
        ranked = sorted(group, key=_rank)
        decided = [c for c in ranked if c.result.truth is Truth.TRUE]
        if decided:
            chosen.append(decided[0])
        bar = STATUS_RANK[decided[0].rule.status] if decided else len(STATUS_RANK)
        for positive in (True, False):
            open_ = [
                c
                for c in ranked
                if c.result.truth is Truth.UNKNOWN
                and c.rule.status.positive is positive
                and STATUS_RANK[c.rule.status] < bar
            ]
            if open_:
                chosen.append(open_[0])
    return chosen
