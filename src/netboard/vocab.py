"""The contract's words (contract v1) as string enums.

Every value that crosses the contract boundary is one of these members; the
knowledge-base check rejects any code that is not listed here.
"""

from __future__ import annotations

from enum import StrEnum

CONTRACT_VERSION = "2"


class Site(StrEnum):
    """Primary tumour site."""

    PANCREAS = "pancreas"
    STOMACH = "stomach"
    DUODENUM = "duodenum"
    JEJUNUM = "jejunum"
    ILEUM = "ileum"
    SMALL_INTESTINE = "small_intestine"
    APPENDIX = "appendix"
    CECUM = "cecum"
    COLON = "colon"
    ASCENDING_COLON = "ascending_colon"
    TRANSVERSE_COLON = "transverse_colon"
    DESCENDING_COLON = "descending_colon"
    SIGMOID_COLON = "sigmoid_colon"
    RECTUM = "rectum"
    LUNG = "lung"
    THYMUS = "thymus"
    UNKNOWN_PRIMARY = "unknown_primary"


class PancreasRegion(StrEnum):
    HEAD = "head"
    NECK = "neck"
    BODY = "body"
    TAIL = "tail"


class Sex(StrEnum):
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"


class Complication(StrEnum):
    OBSTRUCTION = "obstruction"
    BLEEDING = "bleeding"
    ISCHEMIA = "ischemia"
    PERFORATION = "perforation"
    MESENTERIC_FIBROSIS = "mesenteric_fibrosis"


class Differentiation(StrEnum):
    WELL = "well"
    POOR = "poor"


class Grade(StrEnum):
    G1 = "g1"
    G2 = "g2"
    G3 = "g3"


class FunctionalSyndrome(StrEnum):
    NONE = "none"
    CARCINOID_SYNDROME = "carcinoid_syndrome"
    INSULINOMA = "insulinoma"
    GASTRINOMA = "gastrinoma"
    VIPOMA = "vipoma"
    GLUCAGONOMA = "glucagonoma"
    SOMATOSTATINOMA = "somatostatinoma"
    ECTOPIC_ACTH = "ectopic_acth"
    OTHER = "other"


class Imaging(StrEnum):
    POSITIVE = "positive"
    NEGATIVE = "negative"
    NOT_DONE = "not_done"


class MetastaticSite(StrEnum):
    LIVER = "liver"
    REGIONAL_LYMPH_NODES = "regional_lymph_nodes"
    DISTANT_LYMPH_NODES = "distant_lymph_nodes"
    PERITONEUM = "peritoneum"
    BONE = "bone"
    LUNG = "lung"
    BRAIN = "brain"
    OVARY = "ovary"
    OTHER_EXTRA_ABDOMINAL = "other_extra_abdominal"


class Resectable(StrEnum):
    YES = "yes"
    NO = "no"
    PARTIAL = "partial"


class LiverDistribution(StrEnum):
    UNILOBAR = "unilobar"
    BILOBAR = "bilobar"
    DIFFUSE = "diffuse"


class DiseaseStatus(StrEnum):
    NEWLY_DIAGNOSED = "newly_diagnosed"
    STABLE = "stable"
    PROGRESSIVE = "progressive"


class Comorbidity(StrEnum):
    DIABETES = "diabetes"
    CHOLELITHIASIS = "cholelithiasis"
    BILIARY_ENTERIC_ANASTOMOSIS = "biliary_enteric_anastomosis"
    CARCINOID_HEART_DISEASE = "carcinoid_heart_disease"
    CIRRHOSIS = "cirrhosis"
    RENAL_IMPAIRMENT = "renal_impairment"
    PORTAL_VEIN_THROMBOSIS = "portal_vein_thrombosis"


class ResectionMargin(StrEnum):
    """Margin after the primary was removed (contract v2)."""

    R0 = "r0"
    R1 = "r1"
    R2 = "r2"


class GastricType(StrEnum):
    """Gastric NET type (contract v2): atrophic gastritis; MEN1 gastrinoma; sporadic."""

    TYPE_1 = "type_1"
    TYPE_2 = "type_2"
    TYPE_3 = "type_3"


class HereditarySyndrome(StrEnum):
    """Hereditary tumour syndrome (contract v2)."""

    NONE = "none"
    MEN1 = "men1"
    VHL = "vhl"
    NF1 = "nf1"
    TSC = "tsc"


class Intervention(StrEnum):
    """Intervention codes of the contract."""

    PRIMARY_RESECTION = "primary_resection"
    HEPATIC_RESECTION = "hepatic_resection"
    LIVER_ABLATION = "liver_ablation"
    TAE = "tae"
    TACE = "tace"
    TARE = "tare"
    LIVER_TRANSPLANT = "liver_transplant"
    SOMATOSTATIN_ANALOG = "somatostatin_analog"
    PRRT = "prrt"
    EVEROLIMUS = "everolimus"
    SUNITINIB = "sunitinib"
    CABOZANTINIB = "cabozantinib"
    CAPECITABINE_TEMOZOLOMIDE = "capecitabine_temozolomide"
    STREPTOZOCIN_FLUOROURACIL = "streptozocin_fluorouracil"
    PLATINUM_ETOPOSIDE = "platinum_etoposide"
    NEC_SECOND_LINE_CHEMOTHERAPY = "nec_second_line_chemotherapy"
    TELOTRISTAT = "telotristat"
    INTERFERON_ALPHA = "interferon_alpha"
    DIAZOXIDE = "diazoxide"
    PROTON_PUMP_INHIBITOR = "proton_pump_inhibitor"
    PROPHYLACTIC_CHOLECYSTECTOMY = "prophylactic_cholecystectomy"
    OBSERVATION = "observation"
    BEST_SUPPORTIVE_CARE = "best_supportive_care"
    MULTIDISCIPLINARY_REVIEW = "multidisciplinary_review"
    ENDOSCOPIC_RESECTION = "endoscopic_resection"
    VALVE_REPLACEMENT = "valve_replacement"


class AlertCode(StrEnum):
    """Alert codes of the contract."""

    NO_FIRST_LINE_CHEMOTHERAPY = "no_first_line_chemotherapy"
    NO_UPFRONT_SURGERY = "no_upfront_surgery"
    PREFER_TAE_TACE_BEFORE_PRRT = "prefer_tae_tace_before_prrt"
    EMBOLIZATION_ABSCESS_RISK = "embolization_abscess_risk"
    EMBOLIZATION_LIVER_FUNCTION = "embolization_liver_function"
    CARCINOID_CRISIS_PROPHYLAXIS = "carcinoid_crisis_prophylaxis"
    CARCINOID_HEART_DISEASE = "carcinoid_heart_disease"
    SSA_GALLSTONES = "ssa_gallstones"
    SSA_GLUCOSE = "ssa_glucose"
    SSA_INSULINOMA_HYPOGLYCEMIA = "ssa_insulinoma_hypoglycemia"
    PRRT_MARROW_TOXICITY = "prrt_marrow_toxicity"
    PRRT_RENAL_FUNCTION = "prrt_renal_function"
    PRRT_SSA_WASHOUT = "prrt_ssa_washout"
    PRRT_PREGNANCY = "prrt_pregnancy"
    GRADE_KI67_DISCORDANT = "grade_ki67_discordant"
    NEC_NOT_NET = "nec_not_net"
    SSTR_IMAGING_NEEDED = "sstr_imaging_needed"
    TRANSPLANT_HIGH_RECURRENCE = "transplant_high_recurrence"


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class Status(StrEnum):
    """Recommendation status, best first."""

    RECOMMENDED = "recommended"
    CONSIDER = "consider"
    NOT_RECOMMENDED = "not_recommended"
    CONTRAINDICATED = "contraindicated"

    @property
    def positive(self) -> bool:
        """True for the statuses that put an option on the plan."""
        return self in (Status.RECOMMENDED, Status.CONSIDER)


class Phase(StrEnum):
    """Recommendation phases, in report order."""

    PRIMARY_TUMOR = "primary_tumor"
    LIVER_METASTASES = "liver_metastases"
    SYSTEMIC_FIRST_LINE = "systemic_first_line"
    LIVER_DIRECTED = "liver_directed"
    PROGRESSION = "progression"
    SYMPTOM_CONTROL = "symptom_control"
    SUPPORTIVE = "supportive"


class EligibilityName(StrEnum):
    HEPATIC_RESECTION = "hepatic_resection"
    LIVER_TRANSPLANT = "liver_transplant"
    PRRT = "prrt"
    EMBOLIZATION = "embolization"


class EligibilityStatus(StrEnum):
    ELIGIBLE = "eligible"
    NOT_ELIGIBLE = "not_eligible"
    UNDETERMINED = "undetermined"


class Who2019(StrEnum):
    NET_G1 = "net_g1"
    NET_G2 = "net_g2"
    NET_G3 = "net_g3"
    NEC = "nec"
    MIXED_NEN = "mixed_nen"
    UNKNOWN = "unknown"


class Neoplasm(StrEnum):
    """What the record says about the neoplasm itself (``scope`` of contract v2).

    A structured case is a neuroendocrine neoplasm by definition; FHIR records and free text
    can say otherwise, and then netboard does not answer for the patient.
    """

    #: a neuroendocrine neoplasm is recorded (histology or an NEN-specific code)
    NEUROENDOCRINE = "neuroendocrine"
    #: a neoplasm is recorded (a site-only cancer code) but not its neuroendocrine histology
    UNCONFIRMED = "unconfirmed"
    #: a cancer with non-neuroendocrine histology (adenocarcinoma, squamous ...)
    NON_NEUROENDOCRINE = "non_neuroendocrine"
    #: no neoplasm is recorded at all
    NONE = "none"


class ReferenceKind(StrEnum):
    GUIDELINE = "guideline"
    DRUG_LABEL = "drug_label"
    TRIAL = "trial"
    REVIEW = "review"
    OTHER = "other"


PHASE_ORDER: dict[Phase, int] = {p: i for i, p in enumerate(Phase)}
STATUS_RANK: dict[Status, int] = {s: i for i, s in enumerate(Status)}
