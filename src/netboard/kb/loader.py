"""Knowledge-base loader: YAML files in, a ``KnowledgeBase`` of typed frozen values out.

Every file is checked as it is read: unknown keys, unknown contract codes, malformed
conditions, unknown fields in conditions, duplicate ids, rules without evidence and evidence
ids that resolve to no reference are all reported together as ``Problem``s (file and key
named). Cross-file checks live in ``netboard.kb.checks``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from importlib.resources.abc import Traversable
from typing import Any

from netboard import vocab as v
from netboard.conditions import All, Holds, Not
from netboard.errors import Problem
from netboard.fields import Choice, Number, parse_registry, registry
from netboard.kb.checks import check_kb
from netboard.kb.model import (
    ABOUT_KEYS,
    HTI1_INPUTS,
    AlertRule,
    CheckDef,
    CriterionDef,
    DisagreementDef,
    DoseDef,
    EligibilitySet,
    FactDef,
    Grading,
    KnowledgeBase,
    MonitoringDef,
    PlanStepDef,
    PlausibleDef,
    PresumptionDef,
    ReferenceDef,
    Rule,
    SiteInfo,
    TopicDef,
)
from netboard.kb.reader import Reader, entries


def parse_kb(files: Mapping[str, Any]) -> tuple[KnowledgeBase | None, list[Problem]]:
    """Build a ``KnowledgeBase`` from parsed YAML documents keyed by relative path."""
    problems: list[Problem] = []

    def reader(name: str) -> Reader:
        r = Reader(name)
        readers.append(r)
        return r

    readers: list[Reader] = []

    # manifest
    r = reader("manifest.yaml")
    man = files.get("manifest.yaml") or {}
    r.mapping(
        man,
        "(top)",
        ["version", "released", "covers", "contract_version", "about"],
        ["version", "released"],
    )
    version = str(man.get("version", ""))
    released = man.get("released", "")
    if isinstance(released, dt.date):
        released = released.isoformat()
    covers = tuple(str(x) for x in man.get("covers", []) or [])
    about = man.get("about") or {}
    if r.mapping(about, "about", list(ABOUT_KEYS), ["developer", "funding", "intended_use"]):
        inputs = about.get("inputs") or {}
        if r.mapping(inputs, "about.inputs", list(HTI1_INPUTS), list(HTI1_INPUTS)):
            for key, used in inputs.items():
                if not isinstance(used, bool):
                    r.fail(f"about.inputs.{key}", "expected true or false")
    if str(man.get("contract_version", v.CONTRACT_VERSION)) != v.CONTRACT_VERSION:
        r.fail("contract_version", f"knowledge base targets contract {man.get('contract_version')}")

    # references
    r = reader("references.yaml")
    references: dict[str, ReferenceDef] = {}
    for i, e in enumerate(entries(files.get("references.yaml"), r)):
        w = f"[{i}]"
        if not r.mapping(
            e,
            w,
            ["id", "citation", "year", "kind", "verified", "url", "note"],
            ["id", "citation", "kind", "verified"],
        ):
            continue
        rid = str(e["id"])
        if rid in references:
            r.fail(w, f"duplicate reference id {rid!r}")
        kind = r.enum(v.ReferenceKind, e["kind"], f"{w}.kind")
        year = e.get("year")
        if year is not None and (not isinstance(year, int) or isinstance(year, bool)):
            r.fail(f"{w}.year", "expected a year")
            year = None
        verified = e["verified"]
        if not isinstance(verified, bool):
            r.fail(f"{rid}.verified", "expected true or false")
            verified = False
        note = e.get("note")
        if verified and str(note or "").lstrip().upper().startswith("UNVERIFIED"):
            r.fail(f"{rid}.verified", "true, but the note says UNVERIFIED: name the record checked")
        if not verified and not str(note or "").strip():
            r.fail(f"{rid}.note", "an unverified reference needs a note saying what was tried")
        if kind is not None:
            references[rid] = ReferenceDef(
                id=rid,
                citation=r.text(e["citation"], f"{w}.citation"),
                year=year,
                kind=kind,
                verified=verified,
                url=e.get("url"),
                note=note,
            )

    # classification: sites and grading
    r = reader("classification.yaml")
    cls = files.get("classification.yaml") or {}
    r.mapping(cls, "(top)", ["sites", "grading", "pregnancy"], ["sites", "grading", "pregnancy"])
    preg = cls.get("pregnancy") or {}
    r.mapping(
        preg,
        "pregnancy",
        ["childbearing_age_limit", "evidence"],
        ["childbearing_age_limit", "evidence"],
    )
    childbearing_age_limit = float(preg.get("childbearing_age_limit", 55))
    preg_evidence = r.ids(preg.get("evidence", []), "pregnancy.evidence")
    sites: dict[v.Site, SiteInfo] = {}
    for key, e in (cls.get("sites") or {}).items():
        site = r.enum(v.Site, key, f"sites.{key}")
        if site is None or not r.mapping(
            e,
            f"sites.{key}",
            ["group", "label", "region", "portal_drained", "thoracic"],
            ["group", "label", "region", "portal_drained", "thoracic"],
        ):
            continue
        sites[site] = SiteInfo(
            group=str(e["group"]),
            label=str(e["label"]),
            region=str(e["region"]),
            portal_drained=bool(e["portal_drained"]),
            thoracic=bool(e["thoracic"]),
        )
    for site in v.Site:
        if site not in sites:
            r.fail("sites", f"site {site.value!r} has no entry")
    grading: dict[str, Grading] = {}
    for key, e in (cls.get("grading") or {}).items():
        keys = ["ki67_g1_below", "ki67_g2_upto", "mitoses_g1_below", "mitoses_g2_upto", "evidence"]
        if r.mapping(
            e, f"grading.{key}", keys, ["mitoses_g1_below", "mitoses_g2_upto", "evidence"]
        ):
            grading[str(key)] = Grading(
                ki67_g1_below=e.get("ki67_g1_below"),
                ki67_g2_upto=e.get("ki67_g2_upto"),
                mitoses_g1_below=e["mitoses_g1_below"],
                mitoses_g2_upto=e["mitoses_g2_upto"],
                evidence=r.ids(e["evidence"], f"grading.{key}.evidence"),
            )
    for needed in ("digestive", "thoracic"):
        if needed not in grading:
            r.fail("grading", f"missing grading scheme {needed!r}")

    # the field registry (its own copy in this directory), and the reader labels
    r = reader("fields.yaml")
    labels: dict[str, dict[str, str]] = {}
    fdoc = files.get("fields.yaml") or {}
    r.mapping(
        fdoc,
        "(top)",
        ["form_groups", "objects", "consistency", "fields", "labels"],
        ["fields", "labels"],
    )
    own, registry_problems = parse_registry(fdoc)
    problems.extend(registry_problems)
    packaged = registry()
    for path, f in packaged.fields.items():
        mine = own.fields.get(path)
        if mine is None:
            r.fail("fields", f"case field {path!r} is missing")
        elif mine.spec != f.spec:
            r.fail(f"fields.{path}", "its type or bounds differ from netboard's field registry")
    for path in own.fields:
        if path not in packaged.fields:
            r.fail(f"fields.{path}", "not a case field of netboard's field registry")
    fields_info = own.fields
    for group, mapping in (fdoc.get("labels") or {}).items():
        labels[str(group)] = {str(k): str(x) for k, x in (mapping or {}).items()}
    # Field labels too, so that renderers name fields as the registry does.
    labels["fields"] = {path: f.label for path, f in own.fields.items()}
    labels["fields"].update(labels.get("computed", {}))

    # facts
    r = reader("facts.yaml")
    facts: dict[str, FactDef] = {}
    for i, e in enumerate(entries(files.get("facts.yaml"), r)):
        w = f"[{i}]"
        if not r.mapping(e, w, ["name", "label", "label_not", "when"], ["name", "label", "when"]):
            continue
        if e["name"] in facts:
            r.fail(w, f"duplicate fact {e['name']!r}")
        facts[str(e["name"])] = FactDef(
            name=str(e["name"]),
            label=r.text(e["label"], f"{w}.label"),
            when=r.condition(e["when"], f"{w}.when"),
            label_not=r.text(e["label_not"], f"{w}.label_not") if "label_not" in e else "",
        )

    # rules
    rules: list[Rule] = []
    rule_keys = [
        "id",
        "code",
        "phase",
        "status",
        "step",
        "when",
        "rationale",
        "evidence",
        "on_unknown",
        "scope",
        "unless",
        "passes",
        "overrides_guards",
        "unknown_blocks",
        "dossier",
        "action",
        "short",
    ]
    for name in sorted(k for k in files if k.startswith("rules/")):
        r = reader(name)
        for i, e in enumerate(entries(files[name], r)):
            w = f"[{i}]"
            if not r.mapping(
                e,
                w,
                rule_keys,
                ["id", "code", "phase", "status", "step", "when", "rationale", "evidence"],
            ):
                continue
            w = str(e["id"])
            raw_codes = e["code"] if isinstance(e["code"], list) else [e["code"]]
            codes = tuple(
                c for c in (r.enum(v.Intervention, x, f"{w}.code") for x in raw_codes) if c
            )
            phase = r.enum(v.Phase, e["phase"], f"{w}.phase")
            status = r.enum(v.Status, e["status"], f"{w}.status")
            if not isinstance(e["step"], int) or isinstance(e["step"], bool) or e["step"] < 1:
                r.fail(f"{w}.step", "expected a positive integer")
            on_unknown = e.get("on_unknown", "branch")
            if on_unknown not in ("branch", "omit"):
                r.fail(f"{w}.on_unknown", "expected branch or omit")
            scope = e.get("scope", "phase")
            if scope not in ("phase", "all"):
                r.fail(f"{w}.scope", "expected phase or all")
            when = r.condition(e["when"], f"{w}.when")
            unless = r.condition(e["unless"], f"{w}.unless") if "unless" in e else None
            if unless is not None:
                if status is not None and status.positive:
                    r.fail(f"{w}.unless", "only a not_recommended or contraindicated rule has one")
                # The guard lifts only when its exception is known to hold.
                when = All((when, Not(Holds(unless))))
            passes = r.ids(e.get("passes", []), f"{w}.passes")
            if passes and status is not None and not status.positive:
                r.fail(f"{w}.passes", "only a recommended or consider rule passes guards")
            if phase and status and codes:
                rules.append(
                    Rule(
                        id=w,
                        codes=codes,
                        phase=phase,
                        status=status,
                        step=int(e["step"]),
                        when=when,
                        unless=unless,
                        passes=passes,
                        rationale=r.text(e["rationale"], f"{w}.rationale"),
                        evidence=r.ids(e["evidence"], f"{w}.evidence"),
                        on_unknown=on_unknown,
                        scope=scope,
                        overrides_guards=bool(e.get("overrides_guards", False)),
                        unknown_blocks=bool(e.get("unknown_blocks", True)),
                        dossier=tuple(str(x) for x in e.get("dossier", []) or []),
                        action=r.text(e["action"], f"{w}.action") if "action" in e else "",
                        short=r.text(e["short"], f"{w}.short") if "short" in e else "",
                        topic=name.removeprefix("rules/").removesuffix(".yaml"),
                    )
                )
                if status.positive and "action" not in e:
                    r.fail(w, "a recommended or consider rule needs an action (its plan words)")

    # alerts
    r = reader("alerts.yaml")
    alerts: list[AlertRule] = []
    for i, e in enumerate(entries(files.get("alerts.yaml"), r)):
        w = f"[{i}]"
        if not r.mapping(
            e,
            w,
            ["id", "code", "severity", "when", "message", "evidence", "dossier"],
            ["id", "code", "severity", "when", "message", "evidence"],
        ):
            continue
        w = str(e["id"])
        code = r.enum(v.AlertCode, e["code"], f"{w}.code")
        sev = r.enum(v.Severity, e["severity"], f"{w}.severity")
        if code and sev:
            alerts.append(
                AlertRule(
                    id=w,
                    code=code,
                    severity=sev,
                    when=r.condition(e["when"], f"{w}.when"),
                    message=r.text(e["message"], f"{w}.message"),
                    evidence=r.ids(e["evidence"], f"{w}.evidence"),
                    dossier=tuple(str(x) for x in e.get("dossier", []) or []),
                )
            )

    # eligibility
    eligibility: list[EligibilitySet] = []
    for name in sorted(k for k in files if k.startswith("eligibility/")):
        r = reader(name)
        e = files[name]
        if not r.mapping(
            e, "(top)", ["name", "title", "note", "criteria"], ["name", "title", "criteria"]
        ):
            continue
        ename = r.enum(v.EligibilityName, e["name"], "name")
        crits: list[CriterionDef] = []
        for i, c in enumerate(e.get("criteria") or []):
            w = f"criteria[{i}]"
            if r.mapping(
                c,
                w,
                ["name", "when", "detail", "evidence", "check"],
                ["name", "when", "detail", "evidence"],
            ):
                check = c.get("check", False)
                if not isinstance(check, bool):
                    r.fail(f"{w}.check", f"must be true or false, got {check!r}")
                crits.append(
                    CriterionDef(
                        name=r.text(c["name"], f"{w}.name"),
                        when=r.condition(c["when"], f"{w}.when"),
                        detail=r.text(c["detail"], f"{w}.detail"),
                        evidence=r.ids(c["evidence"], f"{w}.evidence"),
                        check=check is True,
                    )
                )
        if ename:
            eligibility.append(
                EligibilitySet(
                    name=ename,
                    title=r.text(e["title"], "title"),
                    note=" ".join(str(e.get("note", "")).split()),
                    criteria=tuple(crits),
                )
            )
    found = {x.name for x in eligibility}
    for en in sorted(found, key=list(v.EligibilityName).index):
        if sum(x.name is en for x in eligibility) > 1:
            problems.append(Problem("eligibility/", f"criteria set {en.value!r} is defined twice"))
    for en in v.EligibilityName:
        if en not in found:
            problems.append(Problem("eligibility/", f"no criteria set for {en.value!r}"))
    eligibility.sort(key=lambda x: list(v.EligibilityName).index(x.name))

    # dosing
    r = reader("dosing.yaml")
    dosing: list[DoseDef] = []
    for i, e in enumerate(entries(files.get("dosing.yaml"), r)):
        w = f"[{i}]"
        if not r.mapping(e, w, ["code", "text", "evidence", "when"], ["code", "text", "evidence"]):
            continue
        dose_code = r.enum(v.Intervention, e["code"], f"{w}.code")
        if dose_code:
            dosing.append(
                DoseDef(
                    code=dose_code,
                    text=r.text(e["text"], f"{w}.text"),
                    evidence=r.ids(e["evidence"], f"{w}.evidence"),
                    when=r.condition(e["when"], f"{w}.when") if "when" in e else None,
                )
            )

    # monitoring and disagreements share a shape
    def notes(
        file: str, keys: list[str], build: Callable[[Reader, str, Mapping[str, Any]], Any]
    ) -> list[Any]:
        rr = reader(file)
        out: list[Any] = []
        for i, e in enumerate(entries(files.get(file), rr)):
            if rr.mapping(e, f"[{i}]", keys, keys):
                out.append(build(rr, str(e["id"]), e))
        return out

    monitoring = notes(
        "monitoring.yaml",
        ["id", "what", "interval", "reason", "evidence", "when"],
        lambda rr, w, e: MonitoringDef(
            id=w,
            what=rr.text(e["what"], f"{w}.what"),
            interval=rr.text(e["interval"], f"{w}.interval"),
            reason=rr.text(e["reason"], f"{w}.reason"),
            evidence=rr.ids(e["evidence"], f"{w}.evidence"),
            when=rr.condition(e["when"], f"{w}.when"),
        ),
    )
    disagreements = notes(
        "disagreements.yaml",
        ["id", "topic", "text", "evidence", "when"],
        lambda rr, w, e: DisagreementDef(
            id=w,
            topic=rr.text(e["topic"], f"{w}.topic"),
            text=rr.text(e["text"], f"{w}.text"),
            evidence=rr.ids(e["evidence"], f"{w}.evidence"),
            when=rr.condition(e["when"], f"{w}.when"),
        ),
    )

    from netboard.fhir.table import parse_fhir_table

    fhir_map = (
        parse_fhir_table(files["fhir.yaml"], reader("fhir.yaml")) if "fhir.yaml" in files else None
    )

    # scope: what the answer says about the neoplasm, and topics not covered
    r = reader("scope.yaml")
    sdoc = files.get("scope.yaml") or {}
    r.mapping(sdoc, "(top)", ["neoplasm", "topics"], ["neoplasm", "topics"])
    scope_reasons: dict[str, str] = {}
    neo = sdoc.get("neoplasm") or {}
    if r.mapping(neo, "neoplasm", [n.value for n in v.Neoplasm], [n.value for n in v.Neoplasm]):
        scope_reasons = {str(k): r.text(x, f"neoplasm.{k}") for k, x in neo.items()}
    topics: list[TopicDef] = []
    for i, e in enumerate(entries(sdoc.get("topics") or [], r)):
        keys = ["id", "when", "reason", "evidence"]
        if r.mapping(e, f"topics[{i}]", keys, keys):
            w = str(e["id"])
            topics.append(
                TopicDef(
                    id=w,
                    when=r.condition(e["when"], f"{w}.when"),
                    reason=r.text(e["reason"], f"{w}.reason"),
                    evidence=r.ids(e["evidence"], f"{w}.evidence"),
                )
            )

    plausible, presumptions, checks, phrases = _presumptions(files.get("presumptions.yaml"), reader)
    r = reader("plan.yaml")
    pdoc = files.get("plan.yaml") or {}
    r.mapping(pdoc, "(top)", ["steps"], ["steps"])
    plan_steps: dict[int, PlanStepDef] = {}
    for i, e in enumerate(entries(pdoc.get("steps") or [], r)):
        keys = ["rank", "lead", "join", "as", "say"]
        if r.mapping(e, f"steps[{i}]", keys, keys):
            if e["join"] not in ("and", "or"):
                r.fail(f"steps[{i}].join", "expected and or or")
            plan_steps[int(e["rank"])] = PlanStepDef(
                rank=int(e["rank"]),
                lead=r.text(e["lead"], f"steps[{i}].lead"),
                join=e["join"],
                as_=r.text(e["as"], f"steps[{i}].as"),
                say=e["say"] is True,
            )
    for rule in rules:
        if rule.status.positive and rule.step not in plan_steps:
            r.fail("steps", f"rule {rule.id} has step {rule.step}, which plan.yaml does not name")

    for rd in readers:
        problems.extend(rd.problems)
    kb = KnowledgeBase(
        version=version,
        released=str(released),
        covers=covers,
        about=about,
        references=references,
        facts=facts,
        fields=fields_info,
        sites=sites,
        grading=grading,
        childbearing_age_limit=childbearing_age_limit,
        rules=tuple(rules),
        alerts=tuple(alerts),
        eligibility=tuple(eligibility),
        dosing=tuple(dosing),
        monitoring=tuple(monitoring),
        disagreements=tuple(disagreements),
        labels=labels,
        fhir=fhir_map,
        scope_reasons=scope_reasons,
        topics=tuple(topics),
        plausible=plausible,
        presumptions=presumptions,
        checks=checks,
        phrases=phrases,
        plan_steps=plan_steps,
        plausibility={
            f: {p.value: p.when for p in plausible if p.field == f}
            for f in dict.fromkeys(p.field for p in plausible)
        },
    )
    problems.extend(check_kb(kb))
    problems.extend(
        Problem(
            "classification.yaml:pregnancy.evidence", f"evidence id {x!r} resolves to no reference"
        )
        for x in preg_evidence
        if x not in references
    )
    return kb, problems


def yaml_sources(root: Traversable) -> list[tuple[str, Traversable]]:
    """Every YAML file under ``root`` as (relative path, entry), sorted by path."""
    out: list[tuple[str, Traversable]] = []

    def walk_dir(d: Traversable, prefix: str) -> None:
        for entry in d.iterdir():
            if entry.is_dir():
                walk_dir(entry, f"{prefix}{entry.name}/")
            elif entry.name.endswith(".yaml"):
                out.append((f"{prefix}{entry.name}", entry))

    walk_dir(root, "")
    return sorted(out, key=lambda x: x[0])


def read_kb_files(root: Traversable) -> dict[str, Any]:
    """Parse every YAML file under ``root`` (a package directory) keyed by relative path."""
    import yaml

    from netboard.documents import yaml_loader

    loader = yaml_loader()
    out: dict[str, Any] = {}
    for rel, entry in yaml_sources(root):
        try:
            doc = yaml.load(entry.read_text("utf-8"), Loader=loader)
        except yaml.YAMLError as exc:
            raise ValueError(f"{rel}: {' '.join(str(exc).split())}") from None
        out[rel] = _plain(doc)
    return out


def _plain(value: Any) -> Any:
    """YAML dates become ISO strings, so YAML and the JSON snapshot give the same documents."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(x) for k, x in value.items()}
    if isinstance(value, list):
        return [_plain(x) for x in value]
    return value


def _frozen(value: Any) -> Any:
    """A YAML list as a tuple (a presumption is hashable; a list value stays a list value)."""
    return tuple(_frozen(x) for x in value) if isinstance(value, list) else value


def _presumptions(
    doc: Any, reader: Callable[[str], Reader]
) -> tuple[
    tuple[PlausibleDef, ...],
    tuple[PresumptionDef, ...],
    tuple[CheckDef, ...],
    dict[str, dict[str, str]],
]:
    """Read presumptions.yaml: plausible values, presumptions, checks, what-if phrases."""
    from netboard.case import coerce

    r = reader("presumptions.yaml")
    doc = doc or {}
    r.mapping(doc, "(top)", ["plausible", "presumptions", "checks", "phrases"], [])
    reg = registry()

    def value_ok(path: str, value: Any, where: str) -> bool:
        if path not in reg.fields:
            r.fail(where, f"{path!r} is not a case field")
            return False
        try:
            coerce(path, value)
        except (ValueError, TypeError):
            r.fail(where, f"{value!r} is not a value of {path}")
            return False
        spec = reg.fields[path].spec
        if isinstance(spec, Choice) and value not in spec.enum._value2member_map_:
            r.fail(where, f"{value!r} is not a value of {path}")
            return False
        return True

    plausible: list[PlausibleDef] = []
    for i, e in enumerate(entries(doc.get("plausible") or [], r)):
        w = f"plausible[{i}]"
        keys = ["field", "value", "when", "why", "evidence"]
        if r.mapping(e, w, keys, keys) and value_ok(str(e["field"]), e["value"], f"{w}.value"):
            plausible.append(
                PlausibleDef(
                    field=str(e["field"]),
                    value=str(e["value"]),
                    when=r.condition(e["when"], f"{w}.when"),
                    why=r.text(e["why"], f"{w}.why"),
                    evidence=r.ids(e["evidence"], f"{w}.evidence"),
                )
            )
    presumptions: list[PresumptionDef] = []
    keys = ["field", "value", "below", "upto", "above", "shown", "when", "phrase", "why"]
    keys += ["confirm", "evidence", "source", "alternatives", "except"]
    for i, e in enumerate(entries(doc.get("presumptions") or [], r)):
        w = f"presumptions[{i}]"
        if not r.mapping(e, w, keys, ["field", "phrase", "why", "confirm", "evidence"]):
            continue
        path = str(e["field"])
        band = None
        if any(k in e for k in ("below", "upto", "above")):
            spec = reg.spec(path)
            if not isinstance(spec, Number):
                r.fail(w, f"a band needs a number field, not {path}")
                continue
            lo = e.get("above")
            hi = e.get("below", e.get("upto"))
            band = (lo, hi, "upto" in e)
        elif "value" not in e or not value_ok(path, e["value"], f"{w}.value"):
            r.fail(w, "give a value, or a band (below, upto or above)")
            continue
        source = str(e.get("source", "prevalence"))
        if source not in ("prevalence", "words"):
            r.fail(f"{w}.source", "expected prevalence or words")
        alts = tuple(_frozen(x) for x in e.get("alternatives") or ())
        for x in alts:
            value_ok(path, x, f"{w}.alternatives")
        presumptions.append(
            PresumptionDef(
                field=path,
                when=r.condition(e["when"], f"{w}.when") if "when" in e else None,
                phrase=r.text(e["phrase"], f"{w}.phrase"),
                why=r.text(e["why"], f"{w}.why"),
                confirm=r.text(e["confirm"], f"{w}.confirm"),
                evidence=r.ids(e["evidence"], f"{w}.evidence"),
                value=_frozen(e.get("value")),
                band=band,
                shown=str(e.get("shown", "")),
                source=source,
                alternatives=alts,
                excluded=tuple(e.get("except") or ()),
            )
        )
    checks: list[CheckDef] = []
    for i, e in enumerate(entries(doc.get("checks") or [], r)):
        w = f"checks[{i}]"
        keys2 = ["field", "value", "check", "evidence"]
        if r.mapping(e, w, keys2, keys2) and value_ok(str(e["field"]), e["value"], f"{w}.value"):
            checks.append(
                CheckDef(
                    field=str(e["field"]),
                    value=e["value"],
                    check=r.text(e["check"], f"{w}.check"),
                    evidence=r.ids(e["evidence"], f"{w}.evidence"),
                )
            )
    phrases: dict[str, dict[str, str]] = {}
    for path, mapping in (doc.get("phrases") or {}).items():
        if str(path) not in reg.fields or not isinstance(mapping, dict):
            r.fail(f"phrases.{path}", "expected a case field with a mapping of value -> words")
            continue
        phrases[str(path)] = {
            (str(k).lower() if isinstance(k, bool) else str(k)): str(x) for k, x in mapping.items()
        }
    return tuple(plausible), tuple(presumptions), tuple(checks), phrases
