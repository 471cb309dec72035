"""Synthetic registries for demos, tests and benchmarks (``netboard synth``).

Every column is drawn with numpy, a chunk of rows at a time (no Python loop per row): 1M rows
take a few seconds. The output is deterministic for a seed and a row count, and every row is a
valid contract case (``load_case`` accepts it; tests/batch/test_synth.py checks a sample).

The mixes follow the clinical dossier (../shared/knowledge/clinical-dossier.md) where it gives a
figure, cited by its ids below; where it gives none the figure is an explicit assumption, marked
"assumption" (docs/audit.md lists them all). The synthetic patients are plausible, not a
population estimate: do not read incidence from them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from netboard import vocab as v

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

__all__ = ["SITE_MIX", "synth_table", "synth_tables", "write_synth"]

#: Primary-site mix of a registry of advanced NEN, in percent. Unknown primary 12% (W-40:
#: 10-14% of new NETs); pancreas and small intestine the two large groups (S-16: 29.2% small
#: intestine in NETTER-2; S-33: 38% pNET in the CLARINET extension); the split of the rest is an
#: assumption (lung, rectum S-44, stomach C-30..C-32, duodenum S-54, colon S-43, appendix S-62).
SITE_MIX: dict[str, float] = {
    "pancreas": 32,
    "ileum": 19,
    "jejunum": 4,
    "small_intestine": 4,
    "unknown_primary": 12,
    "lung": 8,
    "rectum": 5,
    "stomach": 4,
    "duodenum": 3,
    "colon": 2,
    "cecum": 2,
    "sigmoid_colon": 1,
    "ascending_colon": 1,
    "appendix": 2,
    "thymus": 1,
}

#: Share of poorly differentiated NEC per site (assumption, shaped by S-43: colon NENs are often
#: NEC; S-62: appendix NETs almost never metastasise as NEC; G3-01/G3-02: NEC outnumber NET G3
#: about 4 to 1 among high-grade digestive NEN).
NEC_SHARE: dict[str, float] = {
    "colon": 0.40,
    "cecum": 0.35,
    "sigmoid_colon": 0.35,
    "ascending_colon": 0.35,
    "rectum": 0.20,
    "stomach": 0.20,
    "unknown_primary": 0.15,
    "pancreas": 0.08,
    "lung": 0.05,
    "appendix": 0.01,
}
DEFAULT_NEC_SHARE = 0.04
#: Grade of well-differentiated NET: G1 40%, G2 50%, G3 10% (assumption; G3-01: NET G3 is
#: 12-18% of high-grade digestive NEN).
WELL_GRADES = {"g1": 0.40, "g2": 0.50, "g3": 0.10}
SMALL_INTESTINE = ("ileum", "jejunum", "small_intestine")


def _rng(seed: int, part: int) -> np.random.Generator:
    import numpy as np

    return np.random.default_rng([seed, part])


def _pick(rng: np.random.Generator, n: int, mix: dict[str, float]) -> np.ndarray:
    import numpy as np

    p = np.array(list(mix.values()), dtype=float)
    out: np.ndarray = rng.choice(len(mix), size=n, p=p / p.sum())
    return out


def _choice(words: Sequence[str], index: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    import pyarrow as pa
    import pyarrow.compute as pc

    idx = pa.array(index.astype("int32"), mask=null)
    return pc.take(pa.array(list(words)), idx)


def _number(values: np.ndarray, null: np.ndarray | None = None, digits: int = 1) -> pa.Array:
    import numpy as np
    import pyarrow as pa

    return pa.array(np.round(values, digits), mask=null)


def _lists(matrix: np.ndarray, words: Sequence[str], null: np.ndarray | None = None) -> pa.Array:
    """A list<string> column from a rows x words boolean matrix (row order kept)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    m = matrix.copy()
    if null is not None:
        m[null] = False
    _, cols = np.nonzero(m)
    offsets = np.concatenate([[0], np.cumsum(m.sum(axis=1))]).astype(np.int32)
    values = pc.take(pa.array(list(words)), pa.array(cols.astype(np.int32)))
    mask = pa.array(null) if null is not None else None
    return pa.ListArray.from_arrays(pa.array(offsets), values, mask=mask)


def synth_table(
    n: int, *, seed: int = 0, part: int = 0, start: int = 0, given: bool = True
) -> pa.Table:
    """``n`` synthetic patients (ids from ``start + 1``), deterministic for (seed, part)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = _rng(seed, part)
    u = rng.random

    def miss(p: float) -> np.ndarray:
        out: np.ndarray = u(n) < p
        return out

    sites = list(SITE_MIX)
    site_i = _pick(rng, n, SITE_MIX)
    site = np.array(sites, dtype=object)[site_i]
    is_panc = site == "pancreas"
    is_si = np.isin(site, SMALL_INTESTINE)
    is_lung = np.isin(site, ("lung", "thymus"))

    # Differentiation and grade.
    nec_p = np.array([NEC_SHARE.get(s, DEFAULT_NEC_SHARE) for s in sites])[site_i]
    nec = u(n) < nec_p
    grade_i = _pick(rng, n, WELL_GRADES)  # 0 g1, 1 g2, 2 g3
    ki67 = np.where(
        grade_i == 0,
        rng.uniform(0.5, 2.9, n),
        np.where(
            grade_i == 1,
            np.where(u(n) < 0.6, rng.uniform(3, 9.9, n), rng.uniform(10, 20, n)),  # C-40, C-41
            rng.uniform(21, 55, n),
        ),
    )
    ki67 = np.where(nec, rng.uniform(25, 95, n), ki67)  # C-43: split at 55 within NEC
    diff_null = miss(0.03)
    ki67_null = miss(0.05)
    grade_known = ~nec & (u(n) < 0.7)
    # A few grades disagree with Ki-67 (the engine then alerts grade_ki67_discordant).
    shifted = np.where(u(n) < 0.02, np.minimum(grade_i + 1, 2), grade_i)
    grade_i = np.where(grade_known, shifted, 0)
    mitoses_null = ~(u(n) < 0.2)
    mitoses = np.where(
        ki67 < 3, rng.uniform(0, 1.9, n), np.where(ki67 <= 20, 2 + 8 * u(n), 21 + 30 * u(n))
    )

    # Metastases (C-20 M1a/M1b/M1c; S-10 nodes and liver in small-intestinal NET).
    metastatic = u(n) < 0.9
    words = [m.value for m in v.MetastaticSite]
    probs = {
        "liver": 0.82,
        "regional_lymph_nodes": 0.55,
        "distant_lymph_nodes": 0.2,
        "peritoneum": 0.1,
        "bone": 0.12,
        "lung": 0.06,
        "brain": 0.01,
        "ovary": 0.01,
        "other_extra_abdominal": 0.03,
    }
    sites_m = np.column_stack([u(n) < probs[w] for w in words])
    sites_m[is_si, 1] |= u(int(is_si.sum())) < 0.8  # S-10: mesenteric nodes in >80%
    sites_m[nec, 6] |= u(int(nec.sum())) < 0.05
    sites_m[~metastatic] = False
    sites_m[~metastatic, 1] = u(int((~metastatic).sum())) < 0.5
    no_distant = ~sites_m[:, [0, 2, 3, 4, 5, 6, 7, 8]].any(axis=1)
    fix = metastatic & no_distant
    sites_m[fix, 0] = True
    liver = sites_m[:, 0]
    sites_null = miss(0.03)

    # Functional syndromes (F-01..F-41; F-31: 70-80% of gastrinomas are duodenal).
    syndromes = [m.value for m in v.FunctionalSyndrome]
    syn = np.zeros(n, dtype=np.int64)  # none
    carcinoid = (is_si | (site == "unknown_primary")) & liver & (u(n) < 0.35)
    syn[carcinoid] = syndromes.index("carcinoid_syndrome")
    panc_codes = [0] + [syndromes.index(s) for s in ("insulinoma", "gastrinoma", "vipoma")]
    panc_codes.append(syndromes.index("glucagonoma"))
    panc_syn = rng.choice(
        panc_codes,
        size=n,
        p=[0.90, 0.035, 0.035, 0.015, 0.015],
    )
    syn = np.where(is_panc & ~nec, panc_syn, syn)
    syn = np.where((site == "duodenum") & (u(n) < 0.3), syndromes.index("gastrinoma"), syn)
    syn = np.where(is_lung & (u(n) < 0.03), syndromes.index("ectopic_acth"), syn)
    syn_null = miss(0.05)

    # Imaging.
    sstr = np.where(
        nec, rng.choice(3, n, p=[0.3, 0.55, 0.15]), rng.choice(3, n, p=[0.8, 0.14, 0.06])
    )
    sstr = np.where((syn == syndromes.index("insulinoma")) & (u(n) < 0.5), 1, sstr)
    sstr_null = miss(0.05)
    fdg = np.where(
        nec | (grade_i == 2),
        rng.choice(3, n, p=[0.8, 0.1, 0.1]),
        rng.choice(3, n, p=[0.1, 0.2, 0.7]),
    )
    fdg_null = miss(0.4)

    # Liver disease (W-17 burden bands <10, 10-25, 25-50, >50%; S-10 R0 in about 20%).
    band = rng.choice(4, n, p=[0.3, 0.3, 0.25, 0.15])
    lo, hi = np.array([1, 10, 25, 50])[band], np.array([10, 25, 50, 90])[band]
    burden = rng.uniform(lo, hi)
    burden_null = ~liver | miss(0.15)
    resect = rng.choice(3, n, p=[0.15, 0.7, 0.15])  # yes, no, partial
    resect_null = ~liver | miss(0.1)
    fraction = np.where(resect == 0, 100.0, np.where(resect == 2, rng.uniform(30, 90, n), 0.0))
    fraction_null = resect_null | (resect == 1) | miss(0.3)
    distrib = rng.choice(3, n, p=[0.25, 0.6, 0.15])
    distrib_null = ~liver | miss(0.1)

    # Course and treatments.
    status = rng.choice(3, n, p=[0.5, 0.2, 0.3])  # newly_diagnosed, stable, progressive
    status_null = miss(0.03)
    months = rng.integers(3, 37, n).astype(float)
    months_null = (status != 1) | miss(0.2)
    interventions = [m.value for m in v.Intervention]
    treated = (status != 0) & ~status_null
    prior_m = np.zeros((n, len(interventions)), dtype=bool)
    ssa_i = interventions.index("somatostatin_analog")
    pe_i = interventions.index("platinum_etoposide")
    prior_m[:, ssa_i] = treated & ~nec & (u(n) < 0.85)
    prior_m[:, pe_i] = treated & nec
    prior_m[:, interventions.index("everolimus")] = treated & ~nec & (u(n) < 0.15)
    prior_m[:, interventions.index("prrt")] = treated & ~nec & (u(n) < 0.1)
    primary_resected = u(n) < 0.4
    prior_m[:, interventions.index("primary_resection")] = primary_resected & (u(n) < 0.5)
    prior_null = (status_null & miss(0.5)) | miss(0.04)
    progressed_m = prior_m & (status == 2)[:, None] & (u((n, len(interventions))) < 0.8)
    progressed_m[:, interventions.index("primary_resection")] = False
    progressed_null = (status != 2) | prior_null | miss(0.05)
    resected_null = miss(0.08)

    complications = [m.value for m in v.Complication]
    comp_p = {"obstruction": 0.1, "bleeding": 0.03, "ischemia": 0.03, "perforation": 0.01}
    comp_p["mesenteric_fibrosis"] = 0.15  # S-10: up to 25% need emergency surgery
    comp_m = np.column_stack([is_si & (u(n) < comp_p[c]) for c in complications])
    comp_null = miss(0.3)

    # Patient.
    age = np.clip(rng.normal(62, 12, n), 18, 95).round()
    age_null = miss(0.02)
    sex = rng.choice(2, n)  # female, male
    pregnant = np.where((sex == 0) & (age < 45), u(n) < 0.01, False)
    pregnant_null = ~((sex == 0) & (age < 45)) | miss(0.3)
    sex_words = ["female", "male"]
    ecog = rng.choice(5, n, p=[0.4, 0.4, 0.12, 0.06, 0.02]).astype(float)
    ecog_null = miss(0.05)
    comorb = [m.value for m in v.Comorbidity]
    comorb_p = {
        "diabetes": 0.15,
        "cholelithiasis": 0.1,
        "biliary_enteric_anastomosis": 0.02,
        "carcinoid_heart_disease": 0.0,
        "cirrhosis": 0.02,
        "renal_impairment": 0.05,
        "portal_vein_thrombosis": 0.01,
    }
    comorb_m = np.column_stack([u(n) < comorb_p[c] for c in comorb])
    # F-06: carcinoid heart disease in about 1 in 5 with carcinoid syndrome (19.5%).
    comorb_m[:, comorb.index("carcinoid_heart_disease")] = carcinoid & (u(n) < 0.195)
    comorb_null = miss(0.1)
    region_i = rng.choice(4, n, p=[0.45, 0.05, 0.2, 0.3])

    cols: dict[str, pa.Array] = {}
    ids = pa.array(np.arange(start + 1, start + n + 1, dtype=np.int64)).cast(pa.string())
    cols["id"] = pc.binary_join_element_wise("SYN-", pc.utf8_lpad(ids, 8, "0"), "")
    cols["age_years"] = _number(age, age_null, 0)
    cols["sex"] = _choice(sex_words, sex, miss(0.01))
    cols["primary_site"] = _choice(sites, site_i)
    cols["pancreas_region"] = _choice(
        [m.value for m in v.PancreasRegion], region_i, ~is_panc | miss(0.2)
    )
    cols["primary_resected"] = pa.array(primary_resected, mask=resected_null)
    cols["primary_complications"] = _lists(comp_m, complications, comp_null)
    cols["differentiation"] = _choice(["well", "poor"], nec.astype(int), diff_null)
    cols["ki67_percent"] = _number(ki67, ki67_null)
    cols["mitoses_per_2mm2"] = _number(mitoses, mitoses_null, 0)
    cols["grade"] = _choice(["g1", "g2", "g3"], grade_i, ~grade_known)
    cols["functional_syndrome"] = _choice(syndromes, syn, syn_null)
    cols["sstr_imaging"] = _choice(["positive", "negative", "not_done"], sstr, sstr_null)
    cols["fdg_pet"] = _choice(["positive", "negative", "not_done"], fdg, fdg_null)
    cols["metastatic_sites"] = _lists(sites_m, words, sites_null)
    cols["liver_tumor_burden_percent"] = _number(burden, burden_null, 0)
    cols["liver_resectable"] = _choice(["yes", "no", "partial"], resect, resect_null)
    cols["liver_resectable_fraction_percent"] = _number(fraction, fraction_null, 0)
    cols["liver_distribution"] = _choice(["unilobar", "bilobar", "diffuse"], distrib, distrib_null)
    cols["disease_status"] = _choice(
        ["newly_diagnosed", "stable", "progressive"], status, status_null
    )
    cols["months_stable"] = _number(months, months_null, 0)
    cols["prior_treatments"] = _lists(prior_m, interventions, prior_null)
    cols["progressed_on"] = _lists(progressed_m, interventions, progressed_null)
    cols["ecog"] = _number(ecog, ecog_null, 0)
    cols["comorbidities"] = _lists(comorb_m, comorb, comorb_null)
    cols["pregnant"] = pa.array(pregnant.astype(bool), mask=pregnant_null)
    labs = {
        "creatinine_clearance_ml_min": (np.clip(rng.normal(85, 25, n), 10, 200), 0.2, 0),
        "platelets_10e9_l": (np.clip(rng.normal(250, 70, n), 20, 800), 0.15, 0),
        "neutrophils_10e9_l": (np.clip(rng.normal(4.5, 1.5, n), 0.3, 20), 0.2, 1),
        "hemoglobin_g_dl": (np.clip(rng.normal(12.8, 1.6, n), 6, 18), 0.15, 1),
        "bilirubin_mg_dl": (np.clip(rng.lognormal(-0.4, 0.5, n), 0.1, 15), 0.25, 1),
        "albumin_g_dl": (np.clip(rng.normal(3.9, 0.5, n), 1.5, 5.5), 0.3, 1),
        "chromogranin_a_x_uln": (np.clip(rng.lognormal(1, 1.2, n), 0.1, 5000), 0.4, 1),
        "urine_5hiaa_x_uln": (np.clip(rng.lognormal(1.2, 1, n), 0.1, 500), 0.5, 1),
        "nt_probnp_pg_ml": (np.clip(rng.lognormal(5, 1, n), 10, 30000), 0.6, 0),
    }
    for name, (values, p_missing, digits) in labs.items():
        null = miss(p_missing)
        if name == "urine_5hiaa_x_uln":
            null |= ~carcinoid & (u(n) < 0.8)
        cols[f"labs.{name}"] = _number(values, null, digits)
    _registry_columns(cols, n, np.random.default_rng([seed, part, 1]))
    if given:
        cols["given"] = _given(rng, n, nec, ki67, grade_i, grade_known, site, sstr, metastatic)
    return pa.table(cols)


def _registry_columns(cols: dict[str, pa.Array], n: int, rng: np.random.Generator) -> None:
    """The fields the correlated model above does not draw, from the registry's ``synth`` specs
    (their own random stream, so that adding a field leaves every other column as it was)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from netboard.batch.columns import list_has
    from netboard.fields import Choice, ChoiceList, Flag, Number, registry

    reg = registry()
    for path, f in reg.fields.items():
        if path in cols:
            continue
        spec, syn = f.spec, dict(f.synth or {})
        null = rng.random(n) < float(syn.get("missing", 1.0))
        if isinstance(spec, Choice) and "weights" in syn:
            words = list(syn["weights"])
            p = np.array([float(syn["weights"][w]) for w in words])
            cols[path] = _choice(words, rng.choice(len(words), n, p=p / p.sum()), null)
        elif isinstance(spec, Number) and syn:
            a, b = syn.get("normal") or syn.get("lognormal") or syn.get("uniform") or (0, 1)
            if "normal" in syn:
                values = rng.normal(a, b, n)
            elif "lognormal" in syn:
                values = rng.lognormal(a, b, n)
            else:
                values = rng.uniform(a, b, n)
            lo, hi = syn.get("min", spec.lo), syn.get("max", spec.hi)
            values = np.clip(values, lo, hi if hi is not None else np.inf)
            cols[path] = _number(values, null, int(syn.get("digits", 1)))
        elif isinstance(spec, Flag) and syn:
            cols[path] = pa.array(rng.random(n) < float(syn.get("p", 0.5)), mask=null)
        else:
            kind = pa.list_(pa.string()) if isinstance(spec, ChoiceList) else pa.string()
            cols[path] = pa.nulls(n, pa.float64() if isinstance(spec, Number) else kind)
    # Keep every row consistent: a field the registry ties to another is left out where the
    # other says otherwise (a gastric type only for a gastric primary).
    for rule in reg.consistency:
        paths = [p for p in reg.fields if p == rule.field or p.startswith(rule.field + ".")]
        for path in (p for p in paths if p in cols):
            col = cols[path]
            if rule.requires is not None:
                other, allowed = rule.requires
                ok = pc.fill_null(pc.is_in(cols[other], value_set=pa.array(list(allowed))), False)
                ok = pc.or_(ok, pc.is_null(cols[other]))
            elif rule.within is not None and "." in path:
                ok = pc.fill_null(list_has(cols[rule.within], path.split(".", 1)[1]), False)
            else:
                continue
            cols[path] = pc.if_else(ok, col, pa.nulls(n, col.type))


def _given(
    rng: np.random.Generator,
    n: int,
    nec: np.ndarray,
    ki67: np.ndarray,
    grade_i: np.ndarray,
    grade_known: np.ndarray,
    site: np.ndarray,
    sstr: np.ndarray,
    metastatic: np.ndarray,
) -> pa.Array:
    """First-line treatment as given: the guideline choice mostly, some deviations (12%)."""
    import numpy as np

    codes = [m.value for m in v.Intervention]
    pick = np.full(n, codes.index("somatostatin_analog"))
    positive = sstr == 0
    panc = site == "pancreas"
    gep = ~np.isin(site, ("lung", "thymus", "unknown_primary"))
    high = ki67 > 20
    mid = (ki67 >= 10) & (ki67 <= 55)
    u = rng.random
    pick = np.where(positive & mid & gep & (u(n) < 0.5), codes.index("prrt"), pick)
    pick = np.where(~positive & panc, codes.index("everolimus"), pick)
    pick = np.where(~positive & ~panc, codes.index("everolimus"), pick)
    pick = np.where(high & panc, codes.index("capecitabine_temozolomide"), pick)
    pick = np.where(
        high & ~panc & ~(positive & mid), codes.index("capecitabine_temozolomide"), pick
    )
    pick = np.where(nec, codes.index("platinum_etoposide"), pick)
    pick = np.where(~metastatic, codes.index("primary_resection"), pick)
    deviate = u(n) < 0.12
    others = np.array(
        [codes.index(c) for c in ("capecitabine_temozolomide", "everolimus", "platinum_etoposide")]
        + [codes.index("somatostatin_analog"), codes.index("sunitinib")]
    )
    pick = np.where(deviate, others[rng.integers(0, len(others), n)], pick)
    matrix = np.zeros((n, len(codes)), dtype=bool)
    matrix[np.arange(n), pick] = True
    return _lists(matrix, codes, u(n) < 0.05)


def synth_tables(
    n: int, *, seed: int = 0, given: bool = True, chunk_rows: int = 250_000
) -> Iterator[pa.Table]:
    """``n`` patients in chunks (each chunk drawn from its own stream of the seed)."""
    for part, start in enumerate(range(0, n, chunk_rows)):
        yield synth_table(
            min(chunk_rows, n - start), seed=seed, part=part, start=start, given=given
        )


def write_synth(
    path: str | Path, n: int, *, seed: int = 0, given: bool = False, chunk_rows: int = 250_000
) -> int:
    """Write ``n`` synthetic patients to Parquet, CSV or NDJSON (by extension); rows written."""
    from netboard.batch.io import TableWriter, input_schema

    writer = TableWriter(
        path,
        input_schema(given),
        formats=("parquet", "csv", "ndjson"),
        csv_empty_list="[]",
    )
    try:
        for table in synth_tables(n, seed=seed, given=given, chunk_rows=chunk_rows):
            writer.write(table.select(input_schema(given).names))
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return writer.rows
