"""The FHIR R4 -> case mapping table (``kb/fhir.yaml``): its typed model and its reader."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from netboard import vocab as v
from netboard.fields import Choice, ChoiceList, Flag, Number, registry
from netboard.kb.reader import Reader, entries

FHIR_RESOURCE_TYPES = (
    "Patient",
    "Condition",
    "Observation",
    "MedicationRequest",
    "MedicationStatement",
    "MedicationAdministration",
    "Medication",
    "Procedure",
    "List",
)
_CONDITION_ROLES = ("primary", "secondary", "other")
_OBSERVATION_KINDS = ("quantity", "integer", "coded", "boolean", "ratio_to_uln", "morphology")
_ROW_KEYS = ("system", "code", "display", "source", "verified", "note", "definition")
_PREFIX_SYSTEMS = ("icd10cm", "icd10")
#: What a code or a morphology says about the neoplasm (``netboard.vocab.Neoplasm`` values).
NEOPLASM_KINDS = ("neuroendocrine", "unconfirmed", "non_neuroendocrine")
_ICD10_SYSTEMS = ("http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10")

#: The statuses a resource must have to be read (docs/fhir.md "What is read"); the CDS Hooks
#: prefetch queries ask the EHR for these only.
READ_STATUSES: Mapping[str, tuple[str, ...]] = {
    "MedicationRequest": ("active", "completed", "stopped", "on-hold"),
    "MedicationStatement": ("active", "completed", "stopped", "on-hold"),
    "MedicationAdministration": ("completed", "in-progress", "stopped", "on-hold"),
    "Procedure": ("completed",),
    "List": ("current",),
}
#: MedicationRequest intents that are orders (not proposals or plans).
ORDER_INTENTS = ("order", "original-order", "reflex-order", "filler-order", "instance-order")
#: Resource types a medication resource may reference (fetched with ``_include``).
_MEDICATION_TYPES = ("MedicationRequest", "MedicationStatement", "MedicationAdministration")


def normalize_code(system: str, code: str) -> str:
    """A code as tables hold it: ICD codes upper-case, ICD-10-CM with its dot (C7A012 -> C7A.012).

    >>> normalize_code("http://hl7.org/fhir/sid/icd-10-cm", "c7a012")
    'C7A.012'
    """
    code = code.strip()
    if system in _ICD10_SYSTEMS:
        code = code.upper()
        if "." not in code and len(code) > 3:
            code = f"{code[:3]}.{code[3:]}"
    elif system == "http://terminology.hl7.org/CodeSystem/icd-o-3":
        code = code.upper()
    return code


@dataclass(frozen=True, slots=True, kw_only=True)
class FhirCode:
    """One row of the mapping table: a code and the case fields it gives (or why it is not read)."""

    system: str
    code: str
    display: str
    source: str
    verified: bool
    note: str = ""
    prefix: bool = False
    sets: tuple[tuple[str, Any], ...] = ()
    unmapped: str | None = None
    role: str | None = None
    due_to_primary: bool = False
    treatment: v.Intervention | None = None
    component: str | None = None
    sites: tuple[v.Site, ...] = ()
    any_site: bool = False
    value: Any = None
    field: str | None = None
    definition: str = ""
    #: what the code says about the neoplasm (conditions and morphologies): NEOPLASM_KINDS
    neoplasm: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Recency:
    """How old an observed value may be and still be read as current."""

    field: str
    max_age_days: int
    source: str
    rationale: str


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class CodeTable:
    """Rows of one table with exact and prefix look-up (see fhir.yaml's matching rules)."""

    rows: tuple[FhirCode, ...]
    exact: Mapping[tuple[str, str], FhirCode]
    prefixes: Mapping[str, tuple[FhirCode, ...]]

    def lookup(self, system: str, code: str) -> FhirCode | None:
        """The row for a coding: exact match first, then the longest prefix row."""
        code = normalize_code(system, code)
        row = self.exact.get((system, code))
        if row is not None:
            return row
        for candidate in self.prefixes.get(system, ()):
            if code.startswith(candidate.code):
                return candidate
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnitRule:
    """A unit an observation may carry and the factor to the case unit."""

    unit: str
    factor: float


@dataclass(frozen=True, slots=True, kw_only=True)
class FhirObservation:
    """An observation code, the case field it fills and how its value is read."""

    row: FhirCode
    field: str | None
    kind: str | None
    units: tuple[UnitRule, ...] = ()
    decimals: int | None = None
    values: CodeTable | None = None
    #: read the value from the component with this (system, code) instead of value[x]
    component: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NameRule:
    """Name fallback: all ``words`` in a text give the treatment, component and extra fields."""

    words: tuple[str, ...]
    treatment: v.Intervention | None = None
    component: str | None = None
    sites: tuple[v.Site, ...] = ()
    sets: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Regimen:
    """A combination treatment: one component of every group must be recorded."""

    treatment: v.Intervention
    all_of: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class FhirMap:
    """The parsed fhir.yaml."""

    systems: Mapping[str, str]
    profiles: Mapping[str, str]
    extensions: Mapping[str, str]
    reads: Mapping[str, tuple[str, ...]]
    site_refinements: Mapping[v.Site, tuple[v.Site, ...]]
    conditions: CodeTable
    morphology: CodeTable
    primary_body_sites: CodeTable
    secondary_body_sites: CodeTable
    observations: Mapping[tuple[str, str], FhirObservation]
    medications: CodeTable
    medication_names: tuple[NameRule, ...]
    medication_exclude_words: frozenset[str]
    regimens: tuple[Regimen, ...]
    progression_reasons: CodeTable
    procedures: CodeTable
    procedure_names: tuple[NameRule, ...]
    procedure_exclude_words: frozenset[str]
    local_system: str
    lists: CodeTable
    list_empty_reasons: CodeTable
    recency: Mapping[str, Recency]
    individual_sex: CodeTable
    #: prefetch key -> resource type (the queries are built by ``prefetch_templates``)
    prefetch_types: Mapping[str, str]

    def prefetch_templates(self) -> dict[str, str]:
        """The CDS Hooks prefetch templates, derived from the table (key -> FHIR query).

        Observations and Lists are asked for by the codes the table reads; medications and
        procedures by the statuses (and intents) that are read, with the referenced
        Medication included.
        """
        out: dict[str, str] = {}
        for key, rtype in self.prefetch_types.items():
            if rtype == "Patient":
                out[key] = "Patient/{{context.patientId}}"
                continue
            params = ["patient={{context.patientId}}"]
            if rtype == "Observation":
                params.append("code=" + ",".join(f"{s}|{c}" for s, c in self.observations))
            if rtype == "List":
                params.append("code=" + ",".join(f"{r.system}|{r.code}" for r in self.lists.rows))
            if rtype == "MedicationRequest":
                params.append("intent=" + ",".join(ORDER_INTENTS))
            if rtype in READ_STATUSES:
                params.append("status=" + ",".join(READ_STATUSES[rtype]))
            if rtype in _MEDICATION_TYPES:
                params.append(f"_include={rtype}:medication")
            out[key] = f"{rtype}?" + "&".join(params)
        return out

    def all_codes(self) -> list[FhirCode]:
        """Every code row of every table (observation answers included)."""
        out: list[FhirCode] = []
        for table in (
            self.conditions,
            self.morphology,
            self.primary_body_sites,
            self.secondary_body_sites,
            self.medications,
            self.progression_reasons,
            self.procedures,
            self.lists,
            self.list_empty_reasons,
            self.individual_sex,
        ):
            out.extend(table.rows)
        for obs in self.observations.values():
            out.append(obs.row)
            if obs.values is not None:
                out.extend(obs.values.rows)
        return out


def check_field_value(path: str, value: Any) -> str | None:
    """Why ``value`` is not a contract value for case field ``path`` (None when it is).

    A list field takes one item (the table adds it to the list).

    >>> check_field_value("primary_site", "ileum") is None
    True
    >>> check_field_value("metastatic_sites", "spleen")
    "'spleen' is not a contract value of metastatic_sites"
    """
    spec = registry().spec(path)
    if spec is None:
        return f"{path!r} is not a case field"
    if isinstance(spec, Choice | ChoiceList):
        if isinstance(value, str) and value in spec.enum._value2member_map_:
            return None
        return f"{value!r} is not a contract value of {path}"
    if isinstance(spec, Flag):
        return None if isinstance(value, bool) else f"{path} takes true or false, not {value!r}"
    if isinstance(spec, Number):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{path} takes a number, not {value!r}"
        if value < spec.lo or (spec.hi is not None and value > spec.hi):
            return f"{value!r} is outside the range of {path}"
        return None
    return f"{path} cannot be set from the mapping table"


class _FhirReader:
    """Reads fhir.yaml, reporting problems through the file's ``Reader``."""

    def __init__(self, r: Reader, systems: Mapping[str, str], local: str | None = None) -> None:
        self.r = r
        self.systems = systems
        self.local = local

    def sets(self, raw: Any, where: str) -> tuple[tuple[str, Any], ...]:
        if raw is None:
            return ()
        if not isinstance(raw, Mapping):
            self.r.fail(where, "expected a mapping of case field -> value")
            return ()
        out: list[tuple[str, Any]] = []
        for key, value in raw.items():
            problem = check_field_value(str(key), value)
            if problem:
                self.r.fail(f"{where}.{key}", problem)
            else:
                out.append((str(key), value))
        return tuple(out)

    def words(self, raw: Any, where: str) -> tuple[str, ...]:
        if not isinstance(raw, list) or not raw:
            self.r.fail(where, "expected a non-empty list of words")
            return ()
        out: list[str] = []
        for w in raw:
            if not isinstance(w, str) or not w.isalnum() or w != w.lower():
                self.r.fail(where, f"{w!r} is not a lower-case word of letters and digits")
            else:
                out.append(w)
        return tuple(out)

    def sites(self, raw: Any, where: str) -> tuple[v.Site, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.r.fail(where, "expected a list of primary sites")
            return ()
        return tuple(s for s in (self.r.enum(v.Site, x, where) for x in raw) if s)

    def row(self, e: Any, where: str, extra: Iterable[str]) -> FhirCode | None:
        extra = list(extra)
        if not self.r.mapping(
            e, where, [*_ROW_KEYS, *extra], ["system", "code", "display", "source", "verified"]
        ):
            return None
        system = self.systems.get(str(e["system"]))
        if system is None:
            self.r.fail(f"{where}.system", f"unknown system alias {e['system']!r}")
            return None
        code = e["code"]
        if not isinstance(code, str) or not code.strip():
            self.r.fail(f"{where}.code", f"codes are text (quote it): {code!r}")
            return None
        if not isinstance(e["verified"], bool):
            self.r.fail(f"{where}.verified", "expected true or false")
        prefix = e.get("prefix", False)
        if prefix is not False and (prefix is not True or e["system"] not in _PREFIX_SYSTEMS):
            self.r.fail(f"{where}.prefix", f"prefix: true is allowed for {_PREFIX_SYSTEMS} only")
            prefix = False
        role = e.get("role")
        if role is not None and role not in _CONDITION_ROLES:
            self.r.fail(f"{where}.role", f"expected one of {', '.join(_CONDITION_ROLES)}")
        treatment = None
        if "treatment" in e:
            treatment = self.r.enum(v.Intervention, e["treatment"], f"{where}.treatment")
        component = e.get("component")
        if component is not None and not isinstance(component, str):
            self.r.fail(f"{where}.component", "expected a component name")
            component = None
        unmapped = e.get("unmapped")
        if unmapped is not None:
            unmapped = self.r.text(unmapped, f"{where}.unmapped")
        definition = " ".join(str(e.get("definition", "")).split())
        if system == self.local and not definition:
            self.r.fail(f"{where}.definition", "a local code needs its definition")
        if system != self.local and "definition" in e:
            self.r.fail(f"{where}.definition", "only local codes take a definition")
        any_site = e.get("any_site", False)
        if not isinstance(any_site, bool):
            self.r.fail(f"{where}.any_site", "expected true or false")
            any_site = False
        field_path = e.get("field")
        if field_path is not None and not isinstance(field_path, str):
            self.r.fail(f"{where}.field", f"{field_path!r} is not a case field")
            field_path = None
        neoplasm = e.get("neoplasm")
        if neoplasm is not None and neoplasm not in NEOPLASM_KINDS:
            self.r.fail(f"{where}.neoplasm", f"expected one of {', '.join(NEOPLASM_KINDS)}")
            neoplasm = None
        return FhirCode(
            system=system,
            code=normalize_code(system, code),
            display=self.r.text(e["display"], f"{where}.display"),
            source=self.r.text(e["source"], f"{where}.source"),
            verified=bool(e["verified"]),
            note=" ".join(str(e.get("note", "")).split()),
            prefix=bool(prefix),
            sets=self.sets(e.get("set"), f"{where}.set")
            + self.sets(e.get("also"), f"{where}.also"),
            unmapped=unmapped,
            role=role,
            due_to_primary=bool(e.get("due_to_primary", False)),
            treatment=treatment,
            component=component,
            sites=self.sites(e.get("sites"), f"{where}.sites"),
            any_site=any_site,
            value=e.get("value"),
            field=field_path,
            definition=definition,
            neoplasm=neoplasm,
        )

    def table(
        self, raw: Any, name: str, extra: Iterable[str], check: Callable[[FhirCode, str], None]
    ) -> CodeTable:
        extra = list(extra)
        rows: list[FhirCode] = []
        exact: dict[tuple[str, str], FhirCode] = {}
        prefixes: dict[str, list[FhirCode]] = {}
        for i, e in enumerate(entries(raw, self.r) if raw is not None else []):
            where = f"{name}[{i}]"
            row = self.row(e, where, extra)
            if row is None:
                continue
            check(row, where)
            key = (row.system, row.code)
            same = [x for x in rows if (x.system, x.code, x.prefix) == (*key, row.prefix)]
            if same:
                old = same[0]
                differs = (old.sets, old.unmapped, old.treatment, old.component, old.role) != (
                    row.sets,
                    row.unmapped,
                    row.treatment,
                    row.component,
                    row.role,
                )
                what = "to a different value" if differs else "twice"
                self.r.fail(where, f"code {row.code} of {row.system} is mapped {what}")
                continue
            rows.append(row)
            if row.prefix:
                prefixes.setdefault(row.system, []).append(row)
            else:
                exact[key] = row
        return CodeTable(
            rows=tuple(rows),
            exact=exact,
            prefixes={
                s: tuple(sorted(rs, key=lambda x: len(x.code), reverse=True))
                for s, rs in prefixes.items()
            },
        )

    def names(self, raw: Any, name: str) -> tuple[NameRule, ...]:
        rules: list[NameRule] = []
        seen: set[tuple[str, ...]] = set()
        for i, e in enumerate(entries(raw, self.r) if raw is not None else []):
            where = f"{name}[{i}]"
            if not self.r.mapping(
                e, where, ["words", "treatment", "component", "sites", "also"], ["words"]
            ):
                continue
            words = self.words(e["words"], f"{where}.words")
            if words in seen:
                self.r.fail(where, f"words {list(words)} are listed twice")
            seen.add(words)
            treatment = None
            if "treatment" in e:
                treatment = self.r.enum(v.Intervention, e["treatment"], f"{where}.treatment")
            component = e.get("component")
            rule = NameRule(
                words=words,
                treatment=treatment,
                component=str(component) if component is not None else None,
                sites=self.sites(e.get("sites"), f"{where}.sites"),
                sets=self.sets(e.get("also"), f"{where}.also"),
            )
            self.check_treatment(rule.treatment, rule.component, rule.sites, rule.sets, where)
            rules.append(rule)
        return tuple(rules)

    def check_treatment(
        self,
        treatment: v.Intervention | None,
        component: str | None,
        sites: tuple[v.Site, ...],
        sets: tuple[tuple[str, Any], ...],
        where: str,
        any_site: bool = False,
    ) -> None:
        if (treatment is None) == (component is None) and not (treatment is None and sets):
            self.r.fail(where, "give exactly one of treatment and component (or only also)")
        if treatment is v.Intervention.PRIMARY_RESECTION and not sites and not any_site:
            self.r.fail(
                where,
                "primary_resection needs the primary sites it resects (sites) or any_site: true",
            )
        if (sites or any_site) and treatment is not v.Intervention.PRIMARY_RESECTION:
            self.r.fail(where, "sites and any_site are for primary_resection only")
        if sites and any_site:
            self.r.fail(where, "give sites or any_site, not both")


def parse_fhir_table(doc: Any, r: Reader) -> FhirMap | None:
    """Parse and check fhir.yaml; problems go to ``r``."""
    keys = [
        "systems",
        "profiles",
        "extensions",
        "reads",
        "prefetch",
        "site_refinements",
        "conditions",
        "morphology",
        "primary_body_sites",
        "secondary_body_sites",
        "observations",
        "medications",
        "medication_names",
        "medication_exclude_words",
        "regimens",
        "progression_reasons",
        "procedures",
        "procedure_names",
        "procedure_exclude_words",
        "local_system",
        "lists",
        "list_empty_reasons",
        "recency",
        "individual_sex",
    ]
    if not r.mapping(doc, "(top)", keys, keys):
        return None

    def strings(raw: Any, where: str) -> dict[str, str]:
        if not isinstance(raw, Mapping) or not all(
            isinstance(k, str) and isinstance(x, str) for k, x in raw.items()
        ):
            r.fail(where, "expected a mapping of names to text")
            return {}
        return dict(raw)

    systems = strings(doc["systems"], "systems")
    profiles = strings(doc["profiles"], "profiles")
    extensions = strings(doc["extensions"], "extensions")
    for name, got, required in (
        ("profiles", profiles, ("primary_cancer_condition", "secondary_cancer_condition")),
        ("extensions", extensions, ("histology", "due_to", "individual_sex")),
    ):
        for wanted in required:
            if wanted not in got:
                r.fail(name, f"missing {wanted!r}")
    local_alias = doc["local_system"]
    local = systems.get(local_alias) if isinstance(local_alias, str) else None
    if local is None:
        r.fail("local_system", f"not a system alias of systems: {local_alias!r}")
    fr = _FhirReader(r, systems, local)

    reads: dict[str, tuple[str, ...]] = {}
    raw_reads = doc["reads"]
    if isinstance(raw_reads, Mapping):
        for key, paths in raw_reads.items():
            if key not in FHIR_RESOURCE_TYPES:
                r.fail(f"reads.{key}", f"not a resource type netboard reads: {FHIR_RESOURCE_TYPES}")
            if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
                r.fail(f"reads.{key}", "expected a list of element paths")
                continue
            reads[str(key)] = tuple(paths)
        for needed in FHIR_RESOURCE_TYPES:
            if needed not in reads:
                r.fail("reads", f"resource type {needed} is read but not listed")
    else:
        r.fail("reads", "expected a mapping of resource type -> element paths")

    prefetch = strings(doc["prefetch"], "prefetch")
    for key, rtype in prefetch.items():
        if rtype not in FHIR_RESOURCE_TYPES or rtype == "Medication":
            r.fail(f"prefetch.{key}", f"{rtype!r} is not a resource type netboard searches for")
    # Every resource type a case field is read from (fields.yaml `fhir`) must be prefetched.
    needed_types = {"Patient", "Condition"} | {
        t for f in registry().fields.values() for t in f.fhir
    }
    for rtype in sorted(needed_types - set(prefetch.values())):
        r.fail("prefetch", f"no prefetch key asks for {rtype}, which fields.yaml reads from")

    refinements: dict[v.Site, tuple[v.Site, ...]] = {}
    raw_ref = doc["site_refinements"]
    if isinstance(raw_ref, Mapping):
        for key, subs in raw_ref.items():
            broad = r.enum(v.Site, key, f"site_refinements.{key}")
            narrow = fr.sites(subs, f"site_refinements.{key}")
            if broad:
                refinements[broad] = narrow
    else:
        r.fail("site_refinements", "expected a mapping of site -> narrower sites")

    def condition_check(row: FhirCode, where: str) -> None:
        if row.role is None:
            r.fail(where, "a condition row needs a role")
        if row.role in ("primary", "secondary") and row.neoplasm is None:
            r.fail(where, "a cancer row needs neoplasm (what it says about the neoplasm)")
        if row.role == "other" and row.neoplasm is not None:
            r.fail(where, "neoplasm is for primary and secondary cancer rows")
        if row.unmapped is None and "set" not in _raw_keys(doc["conditions"], where):
            r.fail(where, "give set (possibly {}) or unmapped")
        if row.unmapped is not None and row.sets:
            r.fail(where, "give set or unmapped, not both")
        if row.due_to_primary and row.role != "other":
            r.fail(where, "due_to_primary is for role other")
        if row.treatment is not None or row.component is not None:
            r.fail(where, "conditions give case fields with set, not treatments")

    def plain_check(row: FhirCode, where: str) -> None:
        if (row.unmapped is None) == (not row.sets):
            r.fail(where, "give set (with at least one field) or unmapped")

    def morphology_check(row: FhirCode, where: str) -> None:
        if row.neoplasm is None:
            r.fail(where, "a morphology row needs neoplasm (neuroendocrine or not)")
        elif row.neoplasm == "non_neuroendocrine":
            if row.sets or row.unmapped is not None:
                r.fail(where, "a non-neuroendocrine morphology gives no case field")
        else:
            plain_check(row, where)

    conditions = fr.table(
        doc["conditions"],
        "conditions",
        ["role", "set", "unmapped", "prefix", "due_to_primary", "neoplasm"],
        condition_check,
    )
    morphology = fr.table(
        doc["morphology"], "morphology", ["set", "unmapped", "neoplasm"], morphology_check
    )
    primary_sites = fr.table(
        doc["primary_body_sites"], "primary_body_sites", ["set", "unmapped"], plain_check
    )
    secondary_sites = fr.table(
        doc["secondary_body_sites"], "secondary_body_sites", ["set", "unmapped"], plain_check
    )

    observations: dict[tuple[str, str], FhirObservation] = {}
    for i, e in enumerate(entries(doc["observations"], r)):
        where = f"observations[{i}]"
        row = fr.row(
            e,
            where,
            ["field", "kind", "units", "decimals", "values", "unmapped", "value_component"],
        )
        if row is None:
            continue
        obs = _parse_observation(e, row, where, r, fr)
        obs_key = (row.system, row.code)
        if obs_key in observations:
            r.fail(where, f"code {row.code} of {row.system} is mapped twice")
            continue
        observations[obs_key] = obs

    def med_check(row: FhirCode, where: str) -> None:
        fr.check_treatment(row.treatment, row.component, row.sites, row.sets, where)
        if row.any_site:
            r.fail(where, "any_site is for procedures")

    medications = fr.table(doc["medications"], "medications", ["treatment", "component"], med_check)
    medication_names = fr.names(doc["medication_names"], "medication_names")
    regimens: list[Regimen] = []
    for i, e in enumerate(entries(doc["regimens"], r)):
        where = f"regimens[{i}]"
        if not r.mapping(e, where, ["treatment", "all_of"], ["treatment", "all_of"]):
            continue
        treatment = r.enum(v.Intervention, e["treatment"], f"{where}.treatment")
        groups = e["all_of"]
        if (
            not isinstance(groups, list)
            or not groups
            or not all(
                isinstance(g, list) and g and all(isinstance(x, str) for x in g) for g in groups
            )
        ):
            r.fail(f"{where}.all_of", "expected a list of non-empty lists of component names")
            continue
        if treatment:
            regimens.append(Regimen(treatment=treatment, all_of=tuple(tuple(g) for g in groups)))
    defined = {x.component for x in medications.rows if x.component} | {
        x.component for x in medication_names if x.component
    }
    used = {c for reg in regimens for group in reg.all_of for c in group}
    for name in sorted(used - defined):
        r.fail("regimens", f"component {name!r} is given by no medication row")
    for name in sorted(defined - used):
        r.fail("medications", f"component {name!r} belongs to no regimen")

    progression = fr.table(
        doc["progression_reasons"], "progression_reasons", [], lambda row, where: None
    )

    def proc_check(row: FhirCode, where: str) -> None:
        fr.check_treatment(
            row.treatment, row.component, row.sites, row.sets, where, any_site=row.any_site
        )

    procedures = fr.table(
        doc["procedures"], "procedures", ["treatment", "sites", "any_site", "also"], proc_check
    )

    def list_check(row: FhirCode, where: str) -> None:
        if row.field is None or not isinstance(registry().spec(row.field), ChoiceList):
            r.fail(f"{where}.field", f"{row.field!r} is not a list field of the case")

    lists = fr.table(doc["lists"], "lists", ["field"], list_check)
    for name, f in registry().fields.items():
        if isinstance(f.spec, ChoiceList) and not any(x.field == name for x in lists.rows):
            r.fail("lists", f"no List code for the list field {name}")
    empty_reasons = fr.table(
        doc["list_empty_reasons"], "list_empty_reasons", ["unmapped"], lambda row, where: None
    )
    if not any(x.unmapped is None for x in empty_reasons.rows):
        r.fail("list_empty_reasons", "no empty reason means 'nothing to list'")
    procedure_names = fr.names(doc["procedure_names"], "procedure_names")

    def sex_check(row: FhirCode, where: str) -> None:
        problem = check_field_value("sex", row.value)
        if problem:
            r.fail(f"{where}.value", problem)

    individual_sex = fr.table(doc["individual_sex"], "individual_sex", ["value"], sex_check)

    def word_set(raw: Any, where: str) -> frozenset[str]:
        return frozenset(fr.words(raw, where))

    fmap = FhirMap(
        systems=systems,
        profiles=profiles,
        extensions=extensions,
        reads=reads,
        site_refinements=refinements,
        conditions=conditions,
        morphology=morphology,
        primary_body_sites=primary_sites,
        secondary_body_sites=secondary_sites,
        observations=observations,
        medications=medications,
        medication_names=medication_names,
        medication_exclude_words=word_set(
            doc["medication_exclude_words"], "medication_exclude_words"
        ),
        regimens=tuple(regimens),
        progression_reasons=progression,
        procedures=procedures,
        procedure_names=procedure_names,
        procedure_exclude_words=word_set(doc["procedure_exclude_words"], "procedure_exclude_words"),
        local_system=local or "",
        lists=lists,
        list_empty_reasons=empty_reasons,
        recency=_parse_recency(doc["recency"], r),
        individual_sex=individual_sex,
        prefetch_types=prefetch,
    )
    return fmap


def _parse_recency(raw: Any, r: Reader) -> dict[str, Recency]:
    """``recency``: groups of fields with the largest age (days) of a value read as current."""
    out: dict[str, Recency] = {}
    for i, e in enumerate(entries(raw, r)):
        where = f"recency[{i}]"
        keys = ["fields", "max_age_days", "source", "rationale"]
        if not r.mapping(e, where, keys, ["fields", "max_age_days", "rationale"]):
            continue
        days = e["max_age_days"]
        if isinstance(days, bool) or not isinstance(days, int) or days <= 0:
            r.fail(f"{where}.max_age_days", "expected a positive whole number of days")
            continue
        fields = e["fields"]
        if not isinstance(fields, list) or not fields:
            r.fail(f"{where}.fields", "expected a list of case fields")
            continue
        for name in fields:
            if not isinstance(name, str) or registry().spec(name) is None:
                r.fail(f"{where}.fields", f"{name!r} is not a case field")
            elif name in out:
                r.fail(f"{where}.fields", f"{name} has two recency windows")
            else:
                out[name] = Recency(
                    field=name,
                    max_age_days=days,
                    source=" ".join(str(e.get("source", "")).split()),
                    rationale=" ".join(str(e["rationale"]).split()),
                )
    return out


def _raw_keys(raw: Any, where: str) -> set[str]:
    """The keys of the raw entry named by ``where`` (``table[i]``), for presence checks."""
    try:
        index = int(where.rsplit("[", 1)[1].rstrip("]"))
        entry = raw[index]
        return set(entry) if isinstance(entry, Mapping) else set()
    except (IndexError, ValueError, TypeError, KeyError):
        return set()


def _parse_observation(
    e: Mapping[str, Any], row: FhirCode, where: str, r: Reader, fr: _FhirReader
) -> FhirObservation:
    kind = e.get("kind")
    field_path = e.get("field")
    if row.unmapped is not None:
        if kind is not None or field_path is not None:
            r.fail(where, "an unmapped observation takes no field or kind")
        return FhirObservation(row=row, field=None, kind=None)
    if kind not in _OBSERVATION_KINDS:
        r.fail(f"{where}.kind", f"expected one of {', '.join(_OBSERVATION_KINDS)}")
        return FhirObservation(row=row, field=None, kind=None)
    if kind == "morphology":
        if field_path is not None:
            r.fail(where, "a morphology observation is read through the morphology table")
        return FhirObservation(row=row, field=None, kind=kind)
    if not isinstance(field_path, str) or registry().spec(field_path) is None:
        r.fail(f"{where}.field", f"{field_path!r} is not a case field")
        return FhirObservation(row=row, field=None, kind=None)
    spec = registry().spec(field_path)
    numeric = isinstance(spec, Number)
    if kind in ("quantity", "integer", "ratio_to_uln") and not numeric:
        r.fail(where, f"kind {kind} needs a numeric field, not {field_path}")
    if kind == "boolean" and not isinstance(spec, Flag):
        r.fail(where, f"kind boolean needs a true/false field, not {field_path}")
    units: list[UnitRule] = []
    if kind == "quantity":
        raw_units = e.get("units")
        if not isinstance(raw_units, list) or not raw_units:
            r.fail(f"{where}.units", "a quantity needs its units")
        else:
            for j, u in enumerate(raw_units):
                uw = f"{where}.units[{j}]"
                if r.mapping(u, uw, ["unit", "factor"], ["unit", "factor"]):
                    factor = u["factor"]
                    if (
                        isinstance(factor, bool)
                        or not isinstance(factor, int | float)
                        or factor <= 0
                    ):
                        r.fail(f"{uw}.factor", "expected a positive number")
                        continue
                    units.append(UnitRule(unit=str(u["unit"]), factor=float(factor)))
    elif "units" in e:
        r.fail(f"{where}.units", f"units are for kind quantity, not {kind}")
    decimals = e.get("decimals")
    if decimals is not None and (not isinstance(decimals, int) or isinstance(decimals, bool)):
        r.fail(f"{where}.decimals", "expected a whole number")
        decimals = None
    values: CodeTable | None = None
    if kind == "coded":

        def value_check(vrow: FhirCode, vwhere: str) -> None:
            if vrow.unmapped is None:
                problem = check_field_value(field_path, vrow.value)
                if problem:
                    r.fail(f"{vwhere}.value", problem)
            elif vrow.value is not None:
                r.fail(vwhere, "give value or unmapped, not both")

        values = fr.table(e.get("values"), f"{where}.values", ["value", "unmapped"], value_check)
        if not values.rows:
            r.fail(f"{where}.values", "a coded observation needs its answer codes")
    elif "values" in e:
        r.fail(f"{where}.values", f"values are for kind coded, not {kind}")
    component: tuple[str, str] | None = None
    raw_component = e.get("value_component")
    if raw_component is not None:
        at = f"{where}.value_component"
        if r.mapping(raw_component, at, ["system", "code"], ["system", "code"]):
            system = fr.systems.get(str(raw_component["system"]))
            if system is None or kind != "quantity":
                r.fail(at, "a known system alias, for a quantity")
            else:
                component = (system, str(raw_component["code"]))
    return FhirObservation(
        row=row,
        field=field_path,
        kind=kind,
        units=tuple(units),
        decimals=decimals,
        values=values,
        component=component,
    )
