"""Free text -> mentions: lean phrase and number extractors driven by ``lexicon.yaml``.

No NLP library: the text is normalised (same length, so every span points back into the
original), cut into sentences and comma segments, and read with regular expressions that
are compiled once from the lexicon. Each extractor returns ``Mention`` values: a field, a
contract value (or None when the words are recognised but give no usable value, with a
note saying why) and the span of the words. Whether a mention is negated, uncertain or
historical is decided afterwards, in ``negation.py``; which mentions become the case, in
``ask.py``.

Precision comes first: a number after "<" or ">" is a bound, a "15-20%" is a range, a
bilirubin of 12 without a unit could be mg/dL or umol/L: such mentions carry no value.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from itertools import pairwise
from typing import Any

from netboard.fields import Number, registry

#: Every pattern is ASCII (the text is normalised first) and ignores case unless a
#: lexicon phrase asks otherwise ("=NET").
FLAGS = re.IGNORECASE | re.ASCII

# Numbers start at a digit boundary and are bounded in length, so a long run of digits is
# read in linear time (an unbounded [0-9]+ tried at every position of it would not be).
NUM = r"(?<![0-9])[0-9]{1,9}(?:[.,][0-9]{1,6})?(?![0-9])"
LAB_NUM = r"(?<![0-9])(?:[0-9]{1,3}(?:,[0-9]{3}){1,3}|[0-9]{1,9}(?:\.[0-9]{1,6})?)(?![0-9])"

# One-to-one character replacements, so that offsets in the normalised text are offsets in
# the original: dashes, multiplication sign, micro, superscripts, bullets, odd spaces.
_NORMALIZE = str.maketrans(
    {
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2015": "-",
        "\u2212": "-",
        "\u00d7": "x",
        "\u00b5": "u",
        "\u03bc": "u",
        "\u00b2": "2",
        "\u00b3": "3",
        "\u2264": "<",
        "\u2265": ">",
        "\u00a0": " ",
        "\u2002": " ",
        "\u2003": " ",
        "\u2007": " ",
        "\u2009": " ",
        "\u202f": " ",
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2022": ";",
        "\u25cf": ";",
        "\u25aa": ";",
        "\uff05": "%",
        "\u03b2": "b",
        "\r": "\n",
        "\t": " ",
        "|": ";",
    }
)


def normalize(text: str) -> str:
    """Map typographic characters to ASCII one for one (the length never changes).

    >>> normalize("Ki\u201167 \u2264 2%")
    'Ki-67 < 2%'
    """
    return text.translate(_NORMALIZE)


# --- phrases -------------------------------------------------------------------------------


def _phrase_units(phrase: str) -> tuple[list[str], bool, bool, bool]:
    """(pattern units, case-sensitive, boundary before, boundary after) of one phrase."""
    if phrase.startswith("re:"):
        return [f"(?:{phrase[3:]})"], False, False, False
    case_sensitive = phrase.startswith("=") and len(phrase) > 1
    body = phrase[1:] if case_sensitive else phrase.lower()
    star = body.endswith("*") and len(body) > 1
    if star:
        body = body[:-1]
    units: list[str] = []
    for i, ch in enumerate(body):
        if ch == " ":
            units.append(r"[\s-]+")
        elif (
            ch == "-" and 0 < i < len(body) - 1 and body[i - 1].isalnum() and body[i + 1].isalnum()
        ):
            units.append(r"[\s-]?")
        else:
            units.append(re.escape(ch))
    if star:
        units.append(r"[A-Za-z0-9]*")
    pre = body[:1].isalnum()
    post = not star and (body[-1:].isalnum() or body[-1:] in "+-")
    return units, case_sensitive, pre, post


_PRE = r"(?<![A-Za-z0-9])"
_POST = r"(?![A-Za-z0-9])"


def _trie(sequences: list[list[str]]) -> str:
    """A regex matching any unit sequence, prefixes shared; longer continuations first."""
    end = ""
    root: dict[str, Any] = {}
    for seq in sequences:
        node = root
        for unit in seq:
            node = node.setdefault(unit, {})
        node[end] = {}
    depth: dict[int, int] = {}

    def height(node: dict[str, Any]) -> int:
        key = id(node)
        if key not in depth:
            depth[key] = max((1 + height(n) for u, n in node.items() if u != end), default=0)
        return depth[key]

    def emit(node: dict[str, Any]) -> str:
        children = sorted(
            ((u, n) for u, n in node.items() if u != end), key=lambda x: -height(x[1])
        )
        alts = [u + emit(n) for u, n in children]
        if not alts:
            return ""
        if len(alts) == 1 and end not in node:
            return alts[0]
        return "(?:" + "|".join(alts) + ")" + ("?" if end in node else "")

    return emit(root)


def phrase_pattern(phrase: str) -> str:
    """Compile one lexicon phrase to a regular expression (syntax in ``lexicon.yaml``).

    >>> bool(re.fullmatch(phrase_pattern("ki-67"), "Ki 67", FLAGS))
    True
    >>> re.search(phrase_pattern("=NET"), "net benefit", FLAGS) is None
    True
    """
    return alternation([phrase])


def alternation(phrases: Iterable[str]) -> str:
    """One non-capturing group matching any of ``phrases``, the longest tried first.

    The phrases are merged into a prefix tree (one per kind of boundary check), which
    keeps the compiled patterns small: compiling is most of the start-up time. The same
    phrase list is built once (the lexicon reuses its lists in several patterns).
    """
    return _alternation(tuple(sorted(set(phrases), key=lambda p: (-len(p), p))))


@lru_cache(maxsize=2048)
def _alternation(items: tuple[str, ...]) -> str:
    if not items:
        return r"(?!)"
    groups: dict[tuple[bool, bool, bool], list[list[str]]] = {}
    for p in items:
        units, cs, pre, post = _phrase_units(p)
        groups.setdefault((cs, pre, post), []).append(units)
    parts = []
    for (cs, pre, post), sequences in groups.items():
        body = _trie(sequences)
        body = f"(?-i:{body})" if cs else f"(?:{body})"
        parts.append((_PRE if pre else "") + body + (_POST if post else ""))
    return "(?:" + "|".join(parts) + ")"


def phrase_key(text: str) -> str:
    """The lookup key of a phrase or of matched words: lower case, no spaces or hyphens.

    >>> phrase_key("Small-bowel") == phrase_key("small bowel")
    True
    """
    return re.sub(r"[\s-]+", "", text.lower())


def _strs(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError(f"lexicon: expected a list of phrases, got {value!r}")
    return list(value)


def _map(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"lexicon: expected a mapping, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class Entry:
    """One value of a phrase table: the value (None: recognised only), its strength."""

    value: Any
    strength: int


class ValueTable:
    """Phrases grouped by the value they stand for; ``regex`` finds any of them."""

    def __init__(self, groups: Sequence[tuple[Any, int, list[str]]]) -> None:
        self.keys: dict[str, Entry] = {}
        self.patterns: list[tuple[re.Pattern[str], Entry]] = []
        for value, strength, phrases in groups:
            entry = Entry(value, strength)
            for p in phrases:
                if p.startswith("re:") or (p.endswith("*") and len(p) > 1):
                    self.patterns.append((re.compile(phrase_pattern(p), FLAGS), entry))
                else:
                    self.keys.setdefault(phrase_key(p[1:] if p.startswith("=") else p), entry)
        self.source = alternation(p for _, _, phrases in groups for p in phrases)
        self.regex = re.compile(self.source, FLAGS)

    def lookup(self, text: str) -> Entry | None:
        """The entry of the phrase that matched ``text``."""
        entry = self.keys.get(phrase_key(text))
        if entry is not None:
            return entry
        for pattern, entry in self.patterns:
            if pattern.fullmatch(text):
                return entry
        return None

    @classmethod
    def from_spec(cls, spec: Any, convert: Any = str) -> ValueTable:
        """Build from ``{value: [phrases], unmapped: [...], implied: {value: [...]}}``."""
        groups: list[tuple[Any, int, list[str]]] = []
        implied: list[tuple[Any, int, list[str]]] = []
        for key, phrases in _map(spec).items():
            if key == "implied":
                for value, more in _map(phrases).items():
                    implied.append((convert(value), 1, _strs(more)))
            elif key == "unmapped":
                groups.append((None, 2, _strs(phrases)))
            else:
                groups.append((convert(key), 2, _strs(phrases)))
        return cls(groups + implied)


def _bool_word(word: str) -> bool:
    return word == "true"


# --- the document --------------------------------------------------------------------------


Span = tuple[int, int]


class Doc:
    """Normalised text cut into sentences and comma segments (each a partition of the text)."""

    _BOUNDARY = re.compile(r"(?P<dot>\.+)(?=\s|$)|(?P<q>[!?]+)(?=\s|$)|;|\n", FLAGS)
    _TOKEN_BEFORE = re.compile(r"([A-Za-z][A-Za-z.]*)$", FLAGS)
    _COMMA = re.compile(r"(?<![0-9]),|,(?![0-9])")

    def __init__(self, text: str, abbreviations: frozenset[str]) -> None:
        self.text = normalize(text)
        n = len(self.text)
        cuts = [0]
        for m in self._BOUNDARY.finditer(self.text):
            if m.group("dot"):
                before = self._TOKEN_BEFORE.search(self.text, max(0, m.start() - 12), m.start())
                if before and (
                    len(before.group(1)) == 1 or before.group(1).lower() in abbreviations
                ):
                    continue
            elif m.group(0) == "\n":
                nxt = re.match(r"[ ]*(\S)", self.text[m.end() : m.end() + 40])
                if nxt and nxt.group(1).islower():
                    continue
            if m.end() > cuts[-1]:
                cuts.append(m.end())
        if cuts[-1] != n:
            cuts.append(n)
        self.sentences: tuple[Span, ...] = tuple((a, b) for a, b in pairwise(cuts) if b > a) or (
            (0, n),
        )
        segments: list[Span] = []
        for s, e in self.sentences:
            start = s
            for m in self._COMMA.finditer(self.text, s, e):
                segments.append((start, m.end()))
                start = m.end()
            segments.append((start, e))
        self.segments: tuple[Span, ...] = tuple(segments)
        self._sentence_starts = [s for s, _ in self.sentences]
        self._segment_starts = [s for s, _ in self.segments]
        self._questions: dict[Span, bool] = {}

    def sentence(self, pos: int) -> Span:
        """The sentence holding position ``pos``."""
        return self.sentences[max(0, bisect_right(self._sentence_starts, pos) - 1)]

    def segment(self, pos: int) -> Span:
        """The comma segment holding position ``pos``."""
        return self.segments[max(0, bisect_right(self._segment_starts, pos) - 1)]

    def segment_index(self, pos: int) -> int:
        """The index of the comma segment holding ``pos``."""
        return max(0, bisect_right(self._segment_starts, pos) - 1)

    def is_question(self, sentence: Span) -> bool:
        """True when the sentence ends with a question mark."""
        if sentence not in self._questions:
            tail = re.search(
                r"\S\s*\Z", self.text[max(sentence[0], sentence[1] - 200) : sentence[1]]
            )
            self._questions[sentence] = tail is not None and tail.group(0)[0] == "?"
        return self._questions[sentence]


# --- mentions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mention:
    """Words that state a field value.

    Attributes:
        field: the case field (``labs.NAME`` for labs); "" for context words.
        value: the contract value; None when the words are recognised but unusable.
        start: start offset in the text.
        end: end offset in the text.
        strength: 2 stated, 1 implied (a stated value overrides an implied one).
        kind: "fact", "treatment" (history is its meaning, so "h/o" does not block it)
            or "context" (e.g. "stage IV": no field of its own).
        note: why a recognised mention has no value.
        hedged: an "or" list ("liver or bone mets"): never a fact unless negated.
    """

    field: str
    value: Any
    start: int
    end: int
    strength: int = 2
    kind: str = "fact"
    note: str = ""
    hedged: bool = False


def _contains(outer: Span, inner: Span) -> bool:
    return outer[0] <= inner[0] and inner[1] <= outer[1]


class Intervals:
    """A union of spans, asked in O(log n) whether a span overlaps or lies inside it."""

    def __init__(self, spans: Iterable[Span]) -> None:
        merged: list[list[int]] = []
        for s, e in sorted(spans):
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        self.starts = [s for s, _ in merged]
        self.ends = [e for _, e in merged]

    def overlaps(self, span: Span) -> bool:
        """True when ``span`` shares at least one character with the union."""
        i = bisect_right(self.starts, span[1] - 1) - 1
        return i >= 0 and self.ends[i] > span[0] and span[1] > span[0]

    def covers(self, span: Span) -> bool:
        """True when ``span`` lies inside one merged piece of the union."""
        i = bisect_right(self.starts, span[0]) - 1
        return i >= 0 and span[1] <= self.ends[i]


def parse_number(text: str) -> float:
    """Parse "60,000", "2,5" (decimal comma) or "8.5".

    >>> parse_number("60,000"), parse_number("2,5"), parse_number("8")
    (60000.0, 2.5, 8.0)
    """
    if re.fullmatch(r"[0-9]{1,3}(?:,[0-9]{3})+", text):
        return float(text.replace(",", ""))
    return float(text.replace(",", "."))


def _clean(value: float) -> float | int:
    rounded = round(value, 2)
    return int(rounded) if rounded == int(rounded) else rounded


# --- the compiled lexicon ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Treatment:
    """One treatment entry: its code, what it implies, whether its name says it was given."""

    code: str
    implies: tuple[tuple[str, Any], ...]
    self_cued: bool


@dataclass(frozen=True, slots=True)
class LabSpec:
    """How one laboratory value is read."""

    name: str
    regex: re.Pattern[str]
    units: tuple[tuple[re.Pattern[str], float | None], ...]
    unitless: tuple[tuple[float, float, float], ...]
    uln_only: bool


class Lexicon:
    """``lexicon.yaml`` compiled once: phrase tables and the extractor patterns."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        d = data
        self.abbreviations = frozenset(x.lower() for x in _strs(d["abbreviations"]))
        tumor = alternation(_strs(d["tumor_nouns"]))
        self.tumor = re.compile(tumor, FLAGS)
        self.context = re.compile(alternation(_strs(d["metastatic_context"])), FLAGS)

        # Simple phrase fields.
        self.tables: dict[str, ValueTable] = {
            "functional_syndrome": ValueTable.from_spec(d["functional_syndrome"]),
            "disease_status": ValueTable.from_spec(d["disease_status"]),
            "pregnant": ValueTable.from_spec(d["pregnant"], _bool_word),
            "sex": ValueTable.from_spec(d["sex"]),
            "comorbidities": ValueTable.from_spec(d["comorbidities"]),
            "primary_complications": ValueTable.from_spec(d["primary_complications"]),
            "primary_resected": ValueTable.from_spec(d["primary_resected"], _bool_word),
            "liver_distribution": ValueTable.from_spec(d["liver_distribution"]),
            "differentiation": ValueTable.from_spec(
                {k: v for k, v in _map(d["differentiation"]).items()}
            ),
            "pancreas_region": ValueTable.from_spec(d["pancreas_region"]),
            "resection_margin": ValueTable.from_spec(d["resection_margin"]),
            "hereditary_syndrome": ValueTable.from_spec(d["hereditary_syndrome"]),
        }
        self.who_terms = ValueTable.from_spec(d["who_terms"])
        self.findings = re.compile(
            alternation(p for v in _map(d["unmapped_findings"]).values() for p in _strs(v)), FLAGS
        )
        self.non_neuroendocrine = re.compile(
            alternation(_strs(_map(d["unmapped_findings"])["non_neuroendocrine"])), FLAGS
        )
        self.neuroendocrine_words = re.compile(alternation(_strs(d["neuroendocrine_words"])), FLAGS)
        # Findings whose denial still says something no field holds ("no distant disease").
        self.denied_findings = re.compile(
            alternation(_strs(_map(d["unmapped_findings"])["distant"])), FLAGS
        )
        self.current = re.compile(alternation(_strs(d["current_words"])), FLAGS)
        self.sequence_words = re.compile(alternation(_strs(d["sequence_words"])), FLAGS)
        self.worst_wins = {k: tuple(_strs(v)) for k, v in _map(d["worst_wins"]).items()}
        self.exclude = re.compile(alternation(_strs(d["exclude"])), FLAGS)

        # Primary site: words that need a tumour word, compounds, implied names.
        ps = _map(d["primary_site"])
        words = dict(_map(ps["words"]))
        region_phrases = [p for k, v in _map(d["pancreas_region"]).items() for p in _strs(v)]
        words["pancreas"] = _strs(words["pancreas"]) + [p for p in region_phrases if "pancrea" in p]
        self.site_words = ValueTable.from_spec(words)
        self.site_compounds = ValueTable.from_spec(
            {**_map(ps["compounds"]), "implied": _map(ps["implied"])}
        )
        w = f"(?P<w>{self.site_words.source})"
        # A filler word; a decimal number counts as one ("insulinoma 1.5 cm in the body").
        fill = (
            r"(?:(?!(?:no|not|without|and|or|with|of|in|to)\b)"
            r"[A-Za-z0-9][A-Za-z0-9/'-]*(?:[.,][0-9]+)?\s+)"
        )
        after_site = alternation(_strs(d["tumor_nouns"]) + _strs(d["tumor_nouns_after_site"]))
        self.primary_patterns = (
            re.compile(rf"{w}[\s-]+{fill}{{0,2}}?{after_site}", FLAGS),
            re.compile(
                rf"{tumor}[\s,]+{fill}{{0,3}}?(?:of|in|from|at|within|involving|arising\s+(?:in|from)"
                rf"|originating\s+(?:in|from)|located\s+in)\s+(?:the\s+)?{fill}??{w}",
                FLAGS,
            ),
            re.compile(rf"primary(?:\s+(?:site|tumou?r))?\s*[:=]\s*(?:the\s+)?{w}", FLAGS),
        )
        lesion = alternation(_strs(d["lesion_nouns"]))
        self.lesion_sites = frozenset(_strs(d["lesion_sites"]))
        self.primary_lesion_patterns = (
            re.compile(rf"{w}[\s-]+{fill}{{0,1}}?{lesion}", FLAGS),
            re.compile(
                rf"{lesion}[\s,]+{fill}{{0,2}}?(?:of|in|at|within|arising\s+(?:in|from))\s+"
                rf"(?:the\s+)?{fill}??{w}",
                FLAGS,
            ),
        )

        # Metastatic sites.
        ms = _map(d["metastatic_sites"])
        site_words = {k: _strs(v) for k, v in _map(ms["site_words"]).items()}
        node_words = _strs(ms["node_words"])
        for value, prefixes in _map(ms["node_sites"]).items():
            # One raw phrase per value: where the nodes are, then a node word (a cross
            # product of phrases would make the site pattern several times larger).
            site_words[value] = [
                *site_words.get(value, []),
                f"re:{alternation(_strs(prefixes))}[\\s-]+{alternation(node_words)}",
            ]
        self.met_sites = ValueTable.from_spec(site_words)
        self.lesion_met_sites = frozenset(_strs(ms["lesion_sites"]))
        ctx_data = _map(d["context"])
        self.lesion_doubt = re.compile(
            alternation(
                _strs(ms["lesion_doubt"])
                + _strs(_map(ctx_data["uncertain"])["forward"])
                + _strs(_map(ctx_data["uncertain"])["backward"])
            ),
            FLAGS,
        )
        self.met_none = ValueTable.from_spec({"none": _strs(ms["none"])})
        self.met_biopsy = ValueTable.from_spec(ms["biopsy"])
        verbs = alternation(_strs(ms["biopsy_verbs"]))
        tumor_words = alternation(_strs(d["tumor_nouns"]) + _strs(d["tumor_nouns_after_site"]))
        self.met_imaging = ValueTable.from_spec(ms["organ_imaging"])
        found_words = alternation(_strs(ms["nouns"]) + _strs(ms["lesion_nouns"]))
        self.met_imaging_pattern = re.compile(
            rf"(?P<b>{self.met_imaging.source})\s*(?:{verbs})?\s*"
            rf"(?P<gap>(?:[A-Za-z0-9-]+[\s,]+){{0,4}}?)(?:{found_words})(?![A-Za-z])",
            FLAGS,
        )
        self.met_biopsy_pattern = re.compile(
            rf"(?P<b>{self.met_biopsy.source})\s*(?:{verbs})?\s*"
            rf"(?P<gap>(?:[A-Za-z0-9-]+[\s,]+){{0,4}}?)(?:{tumor_words})",
            FLAGS,
        )
        self.met_standalone = ValueTable.from_spec(ms["standalone"])
        self.disease_sites = frozenset(_strs(ms["disease_sites"]))
        site = self.met_sites.source
        sep = (
            r"(?:\s*,\s*(?:and\s+|or\s+)?|\s+(?:and|or|nor|&|as\s+well\s+as)\s+|\s*[/+&]\s*)"
            r"(?:the\s+|to\s+(?:the\s+)?|in\s+(?:the\s+)?)?"
        )
        # At most eight sites in one list: bounded, so a long run of commas stays linear.
        paren = r"(?:\s*\([^()]{0,40}\))?"
        site_list = rf"(?P<list>{site}(?:{paren}{sep}{site}){{0,7}})"
        self.met_site_regex = re.compile(site, FLAGS)
        far_fill = (
            r"(?:(?!(?:no|not|without|and|or|but|with|nor|a|an|this|that)\b)"
            r"[A-Za-z0-9][A-Za-z0-9/'-]*\s+)"
        )
        self.met_patterns = (
            re.compile(
                rf"{site_list}[\s-]*(?:(?P<noun>{alternation(_strs(ms['nouns']))})"
                rf"|(?P<dnoun>{alternation(_strs(ms['disease_nouns']) + _strs(ms['node_nouns']))})"
                rf"|(?P<lnoun>{alternation(_strs(ms['lesion_nouns']))}))",
                FLAGS,
            ),
            re.compile(
                rf"{alternation(_strs(ms['lead_words']))}\s+"
                rf"(?:to|in|into|involving|within|of|including|affecting)\s+"
                rf"(?:both\s+)?(?:the\s+)?{site_list}",
                FLAGS,
            ),
            # "metastatic small bowel NET to the liver" (index 2)
            re.compile(
                rf"{alternation(_strs(ms['far_lead_words']))}\s+{far_fill}{{1,6}}?"
                rf"(?P<prep>to|in|into|involving)\s+(?:both\s+)?(?:the\s+)?{site_list}",
                FLAGS,
            ),
            # "several enhancing lesions in the liver" (index 3: read as lesion words)
            re.compile(
                rf"(?P<lnoun>{alternation(_strs(ms['lesion_nouns']))})\s+"
                rf"(?:to|in|within|of|involving|throughout)\s+(?:both\s+)?"
                r"(?:segments?\s+[0-9IVXivx][0-9IVXivx/,\s-]{0,10}?\s*(?:and\s+[0-9IVXivx]{1,4}\s+)?of\s+)?"
                rf"(?:the\s+)?{site_list}",
                FLAGS,
            ),
        )

        self.near_liver = ValueTable.from_spec(d["liver_distribution_near_liver"])
        self.near_pancreas = ValueTable.from_spec(d["pancreas_region_near_pancreas"])
        not_liver = rf"(?![\s-]+{alternation(_strs(d['liver_words_not_before']))})"
        self.liver_word = re.compile(
            alternation(_strs(d["liver_words"]) + _strs(_map(ms["site_words"])["liver"]))
            + not_liver,
            FLAGS,
        )

        # Resectability, tumour burden.
        liver = alternation(_strs(d["liver_words"])) + not_liver
        self.resectable = ValueTable.from_spec(d["resectable"])
        res = f"(?P<res>{self.resectable.source})"
        fill_r = (
            r"(?:(?!(?:no|not|non|un[a-z]*|without|and|or|but|with|partially|partly|potentially"
            r"|borderline)\b)[A-Za-z][A-Za-z/'-]*\s+)"
        )
        not_c = (
            r"(?!(?:no|not|non|un[a-z]*|without|and|or|but|with|partially|partly|potentially"
            r"|borderline)\b)"
        )
        word_c = rf"{not_c}[A-Za-z0-9][A-Za-z0-9/'.-]*"
        fill_c = rf"(?:{word_c}\s+)"
        self.resectable_patterns = (
            re.compile(rf"{res}\s+{fill_r}{{0,3}}?{liver}", FLAGS),
            re.compile(rf"{liver}\s+{fill_r}{{0,4}}?{res}", FLAGS),
            # "liver mets bilobar, unresectable.", "liver met 3 cm, resectable." (the word
            # closes its clause)
            re.compile(
                rf"{liver}(?:\s+{fill_c}{{0,3}}?{word_c})?\s*,(?:\s*[^,.;:()]{{1,30}},)?"
                rf"\s*{res}(?=\s*(?:[,.;:)]|\Z))",
                FLAGS,
            ),
        )
        conn = alternation(_strs(d["connectors"]))
        bound = alternation(_strs(d["bounds"]))
        self.connectors = conn
        self.bounds = bound
        burden = alternation(_strs(d["burden_words"]))
        self.burden_patterns = (
            re.compile(rf"(?P<bound>{bound}\s*)?(?P<num>{NUM})\s*%\s*{burden}", FLAGS),
            re.compile(
                rf"{burden}(?:\s*{conn})*\s*(?P<bound>{bound}\s*)?(?P<num>{NUM})\s*%", FLAGS
            ),
        )
        self.burden = re.compile(burden, FLAGS)

        # Grade, Ki-67, mitoses, ECOG.
        # "grade 2 NET", and "grade 2 pancreatic NET" (a site word, then a tumour word).
        follow = (
            f"(?:{alternation(_strs(d['grade_followers']))}"
            rf"|{self.site_words.source}[\s-]+{after_site})"
        )
        adverse = alternation(_strs(d["grade_not_before"]))
        self.grade_patterns = (
            re.compile(
                r"(?<!CTCAE\s)(?<![A-Za-z0-9])(?:WHO\s+)?G(?P<g>[1-3])"
                r"(?:\s*(?:-|/|to|or)\s*G?(?P<g2>[1-3]))?(?![A-Za-z0-9]|[.,][0-9])"
                rf"(?![\s-]*{adverse})",
                FLAGS,
            ),
            re.compile(
                r"(?<![A-Za-z])grade\s*:?\s*(?P<g>iii|ii|i|[1-3])"
                r"(?:\s*(?:-|/|to|or)\s*(?P<g2>iii|ii|i|[1-3]))?(?![A-Za-z0-9]|[.,][0-9])"
                rf"(?=\s*(?:$|[,.;:)(\]/]|{follow}))",
                FLAGS,
            ),
        )
        self.grade_words = ValueTable.from_spec(d["grade_words"])
        self.grade_follow = re.compile(rf"\s*(?:$|[,.;:)(\]/]|{follow})", FLAGS)
        ki = alternation(_strs(d["ki67_labels"]))
        ksuf = alternation(_strs(d["ki67_suffixes"]))
        value = (
            rf"(?P<bound>{bound}\s*)?(?P<num>{NUM})"
            rf"(?:\s*(?:-|to)\s*(?P<num2>{NUM}))?"
        )
        self.ki67_patterns = (
            re.compile(
                rf"{ki}(?:[\s-]*{ksuf})?(?:\s*{conn})*\s*{value}\s*(?P<pct>%|percent|per\s+cent|pct)?",
                FLAGS,
            ),
            re.compile(
                rf"(?P<bound>{bound}\s*)?(?P<num>{NUM})\s*%\s*{ki}"
                rf"(?!(?:[\s-]*{ksuf})?(?:\s*{conn})*\s*(?:{bound}\s*)?{NUM})",
                FLAGS,
            ),
        )
        self.burden_after = re.compile(rf"\s*{burden}", FLAGS)
        self.percent = re.compile(rf"{NUM}\s*%", FLAGS)
        mit = alternation(_strs(d["mitoses_labels"]))
        area = (
            r"(?P<area>2\s*mm\s*\^?\s*2|2\s*mm\b|2\s*square\s*mm|10\s*hpf|hpf"
            r"|10\s*high[\s-]power\s*fields?|mm\s*\^?\s*2)"
        )
        self.mitoses_patterns = (
            re.compile(
                rf"(?P<bound>{bound}\s*)?(?P<num>{NUM})\s*{mit}\s*(?:/|per|in)\s*{area}", FLAGS
            ),
            re.compile(
                rf"{mit}(?:\s*{conn})*\s*{value}\s*(?:mitos[ie]s\s*)?(?:(?:/|per|in)\s*{area})?",
                FLAGS,
            ),
        )
        ecog = alternation(_strs(d["ecog_labels"]))
        self.ecog = re.compile(
            rf"{ecog}(?:\s*{conn})*\s*(?P<num>[0-9]{{1,3}})(?:\s*(?:-|to|/|or)\s*(?P<num2>[0-9]))?"
            r"(?![0-9]|[.,][0-9])",
            FLAGS,
        )
        # Where a Ki-67 statement ends: the next label of another value.
        self.other_labels = re.compile(
            alternation(
                [p for spec in _map(d["labs"]).values() for p in _strs(_map(spec)["labels"])]
                + _strs(d["ecog_labels"])
                + _strs(d["mitoses_labels"])
                + _strs(d["burden_words"])
                + _strs(d["ki67_labels"])
                + [p for ph in _map(d["unusable_labels"]).values() for p in _strs(ph)]
            )
            + "|;",
            FLAGS,
        )
        self.unusable = tuple(
            (
                name,
                re.compile(
                    rf"{alternation(_strs(phrases))}(?:\s*{conn})*\s*(?:{bound}\s*)?(?:{NUM}\s*%?)?",
                    FLAGS,
                ),
            )
            for name, phrases in _map(d["unusable_labels"]).items()
        )

        # Imaging.
        tails = alternation(_strs(d["modality_tails"]))
        self.sstr_modality = re.compile(
            rf"{alternation(_strs(d['sstr_modalities']))}(?:[\s-]*{tails})*", FLAGS
        )
        self.fdg_modality = re.compile(
            rf"{alternation(_strs(d['fdg_modalities']))}(?:[\s-]*{tails})*", FLAGS
        )
        result = dict(_map(d["imaging_result"]))
        self.not_done_before = re.compile(
            rf"(?P<pol>{alternation(_strs(result.pop('not_done_before')))})"
            r"(?:\s+(?:a|an|the|prior|any))*\s*\Z",
            FLAGS,
        )
        self.imaging_result = ValueTable.from_spec(result)
        self.result_before = re.compile(
            rf"(?P<pol>{self.imaging_result.source})(?:\s+(?:on|at|in|by|with|the|a|an|of))*\s*\Z",
            FLAGS,
        )
        self.sstr_standalone = ValueTable.from_spec(d["sstr_standalone"])
        self.fdg_standalone = ValueTable.from_spec(d["fdg_standalone"])
        self.ihc = re.compile(alternation(_strs(d["ihc_words"])), FLAGS)
        self.negation_word = re.compile(
            r"(?<![A-Za-z])(?:no|not|without|never|neither|nor|absent|non)(?![A-Za-z])", FLAGS
        )
        negators = alternation(_strs(d["imaging_negators"]))
        fillers = alternation(_strs(d["imaging_negator_fillers"]))
        # "no <positive result>" after the modality; "no <modality> <positive result>".
        self.no_result = re.compile(rf"[\s:=,-]*{negators}\s+(?:{fillers}\s+)?", FLAGS)
        self.no_modality = re.compile(rf"{negators}\s+(?:{fillers}\s+)?\Z", FLAGS)

        # Age and sex.
        self.age_patterns = (
            re.compile(
                r"(?<![A-Za-z0-9.])(?P<age>[1-9][0-9]{1,2})\s?"
                r"(?:-?\s?(?:yo|y/o|y\.o\.?|yrs?|years?|year[\s-]old|years?[\s-]old|yr[\s-]old)\s?)?"
                r"-?\s?(?P<sex>(?-i:M|F))(?![A-Za-z0-9])"
                r"(?![\s-]*(?:FDG|DOPA|fluor|choline|PSMA|PET|-|stent|catheter|cath|drain|sheath"
                r"|tube|french|fr\b|needle|gauge|pigtail))",
                FLAGS,
            ),
            re.compile(
                r"(?<![A-Za-z0-9])(?P<sex>(?-i:M|F))\s?[/,]?\s?(?P<age>[1-9][0-9]{1,2})(?![0-9.,%])"
                r"(?![\s-]*(?:%|mm|cm|kg|mg|ml|mci|gbq|FDG|DOPA|fluor|PSMA|PET))",
                FLAGS,
            ),
            re.compile(
                r"(?<![A-Za-z0-9.])(?P<age>[0-9]{1,3})[\s-]*(?:year|yr)s?[\s-]*old"
                r"(?:\s+(?P<sexw>man|woman|male|female|gentleman|lady|boy|girl))?(?![A-Za-z])",
                FLAGS,
            ),
            re.compile(
                r"(?<![A-Za-z0-9.])(?P<age>[0-9]{1,3})\s*(?:yo|y/o|y\.o\.?)"
                r"(?:\s+(?P<sexw>man|woman|male|female|gentleman|lady|boy|girl|m|f))?(?![A-Za-z])",
                FLAGS,
            ),
            re.compile(
                r"(?<![A-Za-z0-9.])(?P<age>[0-9]{1,3})\s*years?\s+of\s+age(?![A-Za-z])", FLAGS
            ),
            # "Female, 52, with ...": the number closes its clause (not "female, 52 kg").
            re.compile(
                r"(?<![A-Za-z])(?P<sexw>male|female|man|woman)\s*,\s*(?P<age>[1-9][0-9]{1,2})"
                r"(?=\s*(?:[,.;:)]|\Z))",
                FLAGS,
            ),
            re.compile(
                r"(?<![A-Za-z])aged?\s*:?\s*(?P<age>[0-9]{1,3})(?![0-9]|[.,][0-9])"
                r"(?!\s*(?:%|months?|mos?\b|weeks?|days?|wks?))",
                FLAGS,
            ),
        )
        self.months_stable = re.compile(
            r"stable\s+(?:disease\s+)?(?:(?:on|with|under)\s+(?:[A-Za-z0-9/-]+\s+){0,3}?)?"
            r"(?:for|x|over\s+the\s+(?:last|past)|for\s+the\s+(?:last|past)|during\s+the\s+(?:last|past))"
            rf"\s*(?P<bound>{bound}\s*)?(?P<num>{NUM})\s*"
            r"(?P<unit>months?|mos?\.?|mo\.?|m|years?|yrs?|y)(?![A-Za-z])",
            FLAGS,
        )

        # Contract v2: primary size and gastric type.
        sz = _map(d["sizes"])
        self.size_units = {str(k).lower(): float(v) for k, v in _map(sz["units"]).items()}
        size_units = alternation(list(self.size_units))
        self.size = re.compile(
            rf"(?P<bound>{bound}\s*)?(?P<num>{NUM})(?P<more>(?:\s*(?:x|by|\*)\s*{NUM}){{0,2}})"
            rf"[\s-]*(?P<unit>{size_units})(?![\^A-Za-z0-9])",
            FLAGS,
        )
        self.size_range = re.compile(
            rf"(?:{NUM}\s*(?:{size_units})?\s*(?:-|to)\s*\Z)|(?:per|/)\s*\Z", FLAGS
        )
        self.size_range_after = re.compile(r"\s*(?:-|to)\s*[0-9]", FLAGS)
        self.size_not_after = re.compile(rf"\s*(?:{alternation(_strs(sz['not_after']))})", FLAGS)
        self.size_not_before = re.compile(
            rf"(?:{alternation(_strs(sz['not_before']))})\s*\Z", FLAGS
        )
        self.size_met = re.compile(alternation(_strs(sz["metastasis_words"])), FLAGS)
        gt = _map(d["gastric_type"])
        self.gastric_words = re.compile(alternation(_strs(gt["gastric_words"])), FLAGS)
        self.gastric_types = ValueTable.from_spec(_map(gt["types"]))
        self.gastric_not_before = re.compile(
            rf"[\s-]*(?:{alternation(_strs(gt['not_before']))})", FLAGS
        )
        self.gastric_not_after = re.compile(
            rf"(?:{alternation(_strs(gt['not_after']))})[\s-]*\Z", FLAGS
        )

        # Labs.
        uln = alternation(_strs(d["uln_words"]))
        labs: list[LabSpec] = []
        for name, spec_raw in _map(d["labs"]).items():
            spec = _map(spec_raw)
            labels = alternation(_strs(spec["labels"]))
            uln_only = bool(spec.get("uln_only", False))
            if uln_only:
                regex = re.compile(
                    rf"{labels}(?:\s*(?:{conn}|elevated|raised|high|increased))*\s*"
                    rf"(?P<bound>{bound}\s*)?(?P<num>{NUM})"
                    rf"(?:\s*(?P<uln>(?:x|times|-?fold)\s*(?:(?:above|over|the|upper)\s+)*{uln}))?",
                    FLAGS,
                )
                units: tuple[tuple[re.Pattern[str], float | None], ...] = ()
                unitless: tuple[tuple[float, float, float], ...] = ()
            else:
                unit_map = _map(spec.get("units", {}))
                unit_alt = "|".join(
                    _unit_pattern(u) for u in sorted(unit_map, key=lambda u: (-len(u), u))
                )
                regex = re.compile(
                    rf"{labels}(?:\s*{conn})*\s*(?P<bound>{bound}\s*)?(?P<num>{LAB_NUM})"
                    rf"(?:\s*(?:-|to)\s*(?P<num2>{LAB_NUM}))?"
                    rf"(?:\s*(?P<unit>{unit_alt})(?![A-Za-z0-9]))?",
                    FLAGS,
                )
                units = tuple(
                    (re.compile(_unit_pattern(u), FLAGS), None if f is None else float(f))
                    for u, f in unit_map.items()
                )
                unitless = tuple(
                    (float(lo), float(hi), float(f)) for lo, hi, f in spec.get("unitless", [])
                )
            labs.append(LabSpec(name, regex, units, unitless, uln_only))
        self.labs = tuple(labs)

        # Treatments.
        self.organ_primary = re.compile(
            alternation(
                _strs(d["tumor_nouns"])
                + _strs(d["lesion_nouns"])
                + [p for k, v in _map(ps["words"]).items() if k != "unmapped" for p in _strs(v)]
                + [p for v in _map(ps["compounds"]).values() for p in _strs(v)]
            ),
            FLAGS,
        )
        self.organ_liver = re.compile(
            liver,
            FLAGS,
        )
        self.treatment_keys: dict[str, Treatment] = {}
        for item in d["treatments"]:
            entry = _map(item)
            implies = tuple(_map(entry.get("implies", {})).items())
            treatment = Treatment(str(entry["code"]), implies, bool(entry.get("self_cued", False)))
            for p in _strs(entry["phrases"]):
                self.treatment_keys.setdefault(phrase_key(p.lstrip("=")), treatment)
        self.treatment_any = re.compile(
            alternation(p for item in d["treatments"] for p in _strs(_map(item)["phrases"])), FLAGS
        )
        cues = _map(d["treatment_cues"])
        fill_t = r"(?:(?!(?:no|not|without|but|if)\b)[A-Za-z0-9~.#(][A-Za-z0-9/.'():-]*\s+)"
        self.cue_before = {
            kind: re.compile(
                rf"(?P<cue>{alternation(_strs(cues[kind]))})[\s:-]+{fill_t}{{0,3}}\Z", FLAGS
            )
            for kind in ("progressed", "prior", "prior_weak")
        }
        on_mods = alternation(_strs(cues["on_modifiers"]))
        self.cue_before["prior_on"] = re.compile(
            rf"(?P<cue>{alternation(_strs(cues['prior_on']))})\s+(?:{on_mods}\s+){{0,2}}\Z", FLAGS
        )
        self.on_not_after = frozenset(x.lower() for x in _strs(cues["on_not_after"]))
        self.cue_after_progressed = re.compile(
            rf"[\s-]*(?P<cue>{alternation(_strs(cues['after_progressed']))})", FLAGS
        )
        self.cue_after_prior = re.compile(
            rf"[\s-]*(?P<cue>{alternation(_strs(cues['after_prior']))})", FLAGS
        )
        self.symptom_after = re.compile(
            rf"[\s-]*(?:{alternation(_strs(cues['symptom_words']))})", FLAGS
        )
        self.not_after = frozenset(x.lower() for x in _strs(cues["not_after"]))
        self.progressed_later = re.compile(alternation(_strs(cues["progressed_later"])), FLAGS)
        self.progressed_later_codes = frozenset(_strs(cues["progressed_later_codes"]))
        self.specific_resections = frozenset(_strs(cues["specific_resections"]))
        ctx = _map(d["context"])
        self.doubt = re.compile(
            alternation(
                _strs(_map(ctx["negated"])["forward"])
                + _strs(_map(ctx["uncertain"])["forward"])
                + _strs(_map(ctx["other_person"])["forward"])
            ),
            FLAGS,
        )
        self.sequence_separator = re.compile(alternation(_strs(d["sequence_separators"])), FLAGS)
        seps = _strs(d["treatment_separators"])
        self.treatment_separator = re.compile(
            rf"\s*(?:{alternation(seps)}\s*)*(?:(?:x\s*[0-9]+|\(?[0-9]+\s*(?:cycles?|doses?)\)?)\s*)?"
            rf"(?:{alternation(seps)}\s*)*",
            FLAGS,
        )

        # Recognised terms (only to tell which words were read; never a value on their own).
        term_sources = [
            tumor,
            self.site_words.source,
            self.met_sites.source,
            self.treatment_any.pattern,
            self.sstr_modality.pattern,
            self.fdg_modality.pattern,
            ki,
            mit,
            ecog,
            alternation(
                [p for spec in _map(d["labs"]).values() for p in _strs(_map(spec)["labels"])]
                + [p for v in _map(d["unusable_labels"]).values() for p in _strs(v)]
                + ["grade", "differentiated", "metastases", "metastasis", "mets", "syndrome"]
            ),
        ]
        self.terms = tuple(re.compile(src, FLAGS) for src in term_sources)
        # Clinical concepts of the knowledge base: a clause naming one is read into the case
        # or reported, never dropped (tumour nouns name the topic, not a decisive fact).
        concept_sources = [
            self.site_words.source,
            self.site_compounds.source,
            self.met_sites.source,
            self.met_standalone.source,
            self.treatment_any.pattern,
            self.sstr_modality.pattern,
            self.fdg_modality.pattern,
            ki,
            mit,
            ecog,
            self.findings.pattern,
            self.grade_words.source,
            self.gastric_types.source,
            self.sstr_standalone.source,
            self.fdg_standalone.source,
            alternation(
                [p for spec in _map(d["labs"]).values() for p in _strs(_map(spec)["labels"])]
                + [p for v in _map(d["unusable_labels"]).values() for p in _strs(v)]
            ),
        ] + [t.source for name, t in self.tables.items() if name not in ("sex",)]
        self.concepts = tuple(re.compile(src, FLAGS) for src in concept_sources)


def _unit_pattern(unit: str) -> str:
    """A unit as written; a space in it may be left out ("x 10^9/l" also reads "x10^9/L")."""
    parts = [re.escape(ch) if ch != " " else r"\s*" for ch in unit]
    return "(?:" + "".join(parts) + ")"


@lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    """The packaged lexicon, read and compiled once per process."""
    import yaml

    from netboard.documents import yaml_loader

    # YAML 1.2 booleans (an unquoted "on" or "no" stays a word) and no duplicate keys.
    text = files("netboard.parse").joinpath("lexicon.yaml").read_text(encoding="utf-8")
    return Lexicon(_map(yaml.load(text, Loader=yaml_loader())))


# --- extractors ----------------------------------------------------------------------------


def _phrase_mentions(doc: Doc, field: str, table: ValueTable) -> Iterator[Mention]:
    for m in table.regex.finditer(doc.text):
        entry = table.lookup(m.group(0))
        if entry is None:
            continue
        note = "" if entry.value is not None else "recognised, but names no single value"
        yield Mention(field, entry.value, m.start(), m.end(), entry.strength, note=note)


_PAREN = re.compile(r"\([^()]*\)")


def _metastatic_sites(doc: Doc, lex: Lexicon) -> list[Mention]:
    text = doc.text
    out: list[Mention] = []
    for i, pattern in enumerate(lex.met_patterns):
        for m in pattern.finditer(doc.text):
            disease_only = i == 0 and m.group("dnoun") is not None
            lesion_only = i in (0, 3) and m.group("lnoun") is not None
            # "liver lesions, likely metastases", "liver lesion, probably a cyst": what the
            # lesions are is in doubt.
            stop = min(doc.sentence(m.start())[1], m.end() + 50)
            doubted = lesion_only and lex.lesion_doubt.search(text, m.end(), stop) is not None
            # "metastatic small bowel NET to the liver": the site words are the mention (the
            # words between name the primary).
            start = m.start("prep") if i == 2 else m.start()
            list_text = m.group("list")
            hedged = re.search(r"(?<![A-Za-z])or(?![A-Za-z])", list_text, FLAGS) is not None
            # A site word inside a parenthesis of the list ("bone (not liver)") is not read.
            aside = Intervals((p.start(), p.end()) for p in _PAREN.finditer(list_text))
            for s in lex.met_site_regex.finditer(list_text):
                if aside.overlaps((s.start(), s.end())):
                    continue
                entry = lex.met_sites.lookup(s.group(0))
                if entry is None:
                    continue
                key = "unmapped" if entry.value is None else entry.value
                if disease_only and key not in lex.disease_sites:
                    continue
                if lesion_only and key not in lex.lesion_met_sites:
                    continue
                note = "" if entry.value is not None else "does not say which site"
                out.append(
                    Mention(
                        "metastatic_sites",
                        entry.value,
                        start,
                        m.end(),
                        note=note,
                        hedged=hedged or doubted,
                    )
                )
    out.extend(
        Mention(
            "metastatic_sites",
            x.value,
            x.start,
            x.end,
            note="" if x.value is not None else "does not say which site",
        )
        for x in _phrase_mentions(doc, "metastatic_sites", lex.met_standalone)
    )
    organ_patterns = (
        (lex.met_biopsy_pattern, lex.met_biopsy),
        (lex.met_imaging_pattern, lex.met_imaging),
    )
    for m, table in (
        (m, table) for pattern, table in organ_patterns for m in pattern.finditer(text)
    ):
        entry = table.lookup(m.group("b"))
        if entry is None or entry.value is None or lex.doubt.search(m.group("gap")):
            continue
        if lex.negation_word.search(m.group("gap")) or "negative" in m.group("gap").lower():
            continue
        stop = min(doc.sentence(m.start())[1], m.end() + 50)
        doubted = table is lex.met_imaging and bool(lex.lesion_doubt.search(text, m.end(), stop))
        out.append(Mention("metastatic_sites", entry.value, m.start(), m.end(), hedged=doubted))
    # "no metastases", "localised disease": metastatic_sites is stated empty.
    out.extend(_phrase_mentions(doc, "metastatic_sites", lex.met_none))
    return out


#: The value of a "no metastases" mention: no metastatic site is known (``[]``).
NO_SITES = "none"


def _primary_sites(doc: Doc, lex: Lexicon, met_spans: Sequence[Span]) -> list[Mention]:
    out: list[Mention] = []
    in_mets = Intervals(met_spans)
    for pattern in lex.primary_patterns:
        for m in pattern.finditer(doc.text):
            # "lung" in "lung mets" is a metastatic site, not the primary.
            if in_mets.overlaps((m.start("w"), m.end("w"))):
                continue
            entry = lex.site_words.lookup(m.group("w"))
            if entry is None:
                continue
            note = "" if entry.value is not None else "does not name one primary site"
            out.append(Mention("primary_site", entry.value, m.start(), m.end(), note=note))
    # "gastric mass", "a polyp in the gastric body": implied (a stated tumour site wins).
    for pattern in lex.primary_lesion_patterns:
        for m in pattern.finditer(doc.text):
            if in_mets.overlaps((m.start("w"), m.end("w"))):
                continue
            entry = lex.site_words.lookup(m.group("w"))
            if entry is None or entry.value not in lex.lesion_sites:
                continue
            out.append(
                Mention("primary_site", entry.value, m.start(), m.end(), strength=1, note=LESION)
            )
    for x in _phrase_mentions(doc, "primary_site", lex.site_compounds):
        out.append(x)
    return out


#: The note of a primary site named by a lesion word ("gastric mass"): it stands only when the
#: text does not doubt every tumour word it has ("pancreatic lesion, suspicious for a NET").
LESION = "named by a lesion"


def _tumour_words(doc: Doc, lex: Lexicon) -> Iterator[Mention]:
    """Each tumour word, as evidence that a neoplasm is stated (never a field value)."""
    for m in lex.tumor.finditer(doc.text):
        yield Mention("", True, m.start(), m.end(), kind="evidence")


def _resectable(doc: Doc, lex: Lexicon) -> list[Mention]:
    out: list[Mention] = []
    for pattern in lex.resectable_patterns:
        for m in pattern.finditer(doc.text):
            entry = lex.resectable.lookup(m.group("res"))
            if entry is not None and entry.value is not None:
                out.append(Mention("liver_resectable", entry.value, m.start(), m.end()))
    return out


def _preceded_by_range(text: str, pos: int) -> bool:
    return re.search(r"[0-9]\s*(?:-|to)\s*\Z", text[max(0, pos - 8) : pos], FLAGS) is not None


def _number_mention(
    field: str,
    m: re.Match[str],
    text: str,
    lo: float,
    hi: float | None,
    *,
    integer: bool = False,
) -> Mention:
    """A number with its checks: bound, range, possible range."""
    start, end = m.start(), m.end()
    groups = m.groupdict()
    if groups.get("bound"):
        return Mention(field, None, start, end, note="a bound, not a value")
    if groups.get("num2") or _preceded_by_range(text, m.start("num")):
        return Mention(field, None, start, end, note="a range, not a value")
    value = parse_number(m.group("num"))
    if value < lo or (hi is not None and value > hi):
        return Mention(field, None, start, end, note="outside the possible range")
    if integer and value != int(value):
        return Mention(field, None, start, end, note="not a whole number")
    return Mention(field, int(value) if integer else _clean(value), start, end)


def _numbers(doc: Doc, lex: Lexicon) -> list[Mention]:
    text = doc.text
    out: list[Mention] = []
    for pattern in lex.ki67_patterns:
        for m in pattern.finditer(text):
            mention = _number_mention("ki67_percent", m, text, 0, 100)
            if mention.value is not None and _second_percent(doc, lex, m.end()):
                mention = Mention(
                    "ki67_percent", None, m.start(), m.end(), note="more than one value"
                )
            out.append(mention)
    for pattern in lex.mitoses_patterns:
        for m in pattern.finditer(text):
            area = (m.group("area") or "").lower().replace(" ", "")
            if not area.startswith("2"):
                note = "not counted per 2 mm2" if area else "no area (per 2 mm2) stated"
                out.append(Mention("mitoses_per_2mm2", None, m.start(), m.end(), note=note))
            else:
                out.append(_number_mention("mitoses_per_2mm2", m, text, 0, None))
    for m in lex.ecog.finditer(text):
        out.append(_number_mention("ecog", m, text, 0, 4, integer=True))
    for name, pattern in lex.unusable:
        for m in pattern.finditer(text):
            notes = {
                "kps": "Karnofsky is not converted to ECOG",
                "egfr": "eGFR is not creatinine clearance",
                "creatinine": "serum creatinine is not creatinine clearance",
                "tnm": "TNM is not read",
            }
            out.append(Mention("", None, m.start(), m.end(), kind="context", note=notes[name]))
    for pattern in lex.burden_patterns:
        for m in pattern.finditer(text):
            out.append(_number_mention("liver_tumor_burden_percent", m, text, 0, 100))
    for m in lex.months_stable.finditer(text):
        mention = _number_mention("months_stable", m, text, 0, None)
        if mention.value is not None and m.group("unit").lower().startswith("y"):
            mention = Mention(
                "months_stable", _clean(float(mention.value) * 12), mention.start, mention.end
            )
        out.append(mention)
    out.extend(_grades(doc, lex))
    out.extend(_ages(doc, lex))
    out.extend(_labs(doc, lex))
    return out


def _second_percent(doc: Doc, lex: Lexicon, end: int) -> bool:
    """True when another percentage follows a Ki-67 value before the next label
    ("Ki-67 8% in the primary and 25% in the liver"): which one counts is not stated."""
    stop = min(doc.sentence(end)[1], end + 60)
    label = lex.other_labels.search(doc.text, end, stop)
    if label:
        stop = label.start()
    found = lex.percent.search(doc.text, end, stop)
    return found is not None and not lex.burden_after.match(doc.text, found.end())


_ROMAN = {"i": "1", "ii": "2", "iii": "3"}


def _grades(doc: Doc, lex: Lexicon) -> Iterator[Mention]:
    for pattern in lex.grade_patterns:
        for m in pattern.finditer(doc.text):
            if m.group("g2"):
                yield Mention("grade", None, m.start(), m.end(), note="a range of grades")
                continue
            g = m.group("g").lower()
            yield Mention("grade", f"g{_ROMAN.get(g, g)}", m.start(), m.end())


def _ages(doc: Doc, lex: Lexicon) -> Iterator[Mention]:
    for pattern in lex.age_patterns:
        for m in pattern.finditer(doc.text):
            age = int(m.group("age"))
            if age > 120:
                yield Mention("age_years", None, m.start(), m.end(), note="not a possible age")
            else:
                yield Mention("age_years", age, m.start(), m.end())
            sex = m.groupdict().get("sex") or m.groupdict().get("sexw")
            if sex:
                value = (
                    "male" if sex.lower() in {"m", "man", "male", "gentleman", "boy"} else "female"
                )
                yield Mention("sex", value, m.start(), m.end())


def _labs(doc: Doc, lex: Lexicon) -> Iterator[Mention]:
    text = doc.text
    for lab in lex.labs:
        field = f"labs.{lab.name}"
        bounds = registry().spec(field)
        assert isinstance(bounds, Number)
        for m in lab.regex.finditer(text):
            start, end = m.start(), m.end()
            if m.group("bound"):
                yield Mention(field, None, start, end, note="a bound, not a value")
                continue
            if m.groupdict().get("num2") or _preceded_by_range(text, m.start("num")):
                yield Mention(field, None, start, end, note="a range, not a value")
                continue
            value = parse_number(m.group("num"))
            factor, note = _lab_factor(lab, m, value)
            if factor is None:
                yield Mention(field, None, start, end, note=note)
                continue
            result = value * factor
            if result < bounds.lo or (bounds.hi is not None and result > bounds.hi):
                yield Mention(field, None, start, end, note="outside the possible range")
                continue
            yield Mention(field, _clean(result), start, end)


def _lab_factor(lab: LabSpec, m: re.Match[str], value: float) -> tuple[float | None, str]:
    """The factor to the contract unit, or None and why the value cannot be used."""
    if lab.uln_only:
        if m.group("uln"):
            return 1.0, ""
        return None, "not given as a multiple of ULN"
    unit = m.groupdict().get("unit")
    if unit:
        factor = next((f for p, f in lab.units if p.fullmatch(unit)), None)
        return factor, "" if factor is not None else f"unit {unit!r} not converted"
    factor = next((f for lo, hi, f in lab.unitless if lo <= value <= hi), None)
    return factor, "" if factor is not None else "no unit; the value is ambiguous"


def _modalities(doc: Doc, lex: Lexicon) -> list[tuple[str, int, int]]:
    spans = [("sstr_imaging", m.start(), m.end()) for m in lex.sstr_modality.finditer(doc.text)]
    spans += [("fdg_pet", m.start(), m.end()) for m in lex.fdg_modality.finditer(doc.text)]
    return sorted(spans, key=lambda s: (s[1], -s[2]))


_ALNUM_RE = re.compile(r"[A-Za-z0-9]")
_CLAUSE_END = re.compile(r"\s*(?:[,.;:)\]]|\Z)")


def _symbol_result(text: str, between: str, found: re.Match[str], end: int) -> bool:
    """Whether a "+" or "-ve" after a modality is its result: right after the name, or
    after a space when it ends the clause ("dotatate pet +") or is "+ve"/"-ve" (a "+"
    between two names joins them: "DOTATATE PET + FDG PET")."""
    if not between:
        return True
    if between.strip():
        return False
    word = found.group(0).lower()
    return word.endswith("ve") or _CLAUSE_END.match(text, end + found.end()) is not None


#: After an imaging result: "... negative for metastases / metastatic disease / spread".
_NEGATIVE_FOR_SPREAD = re.compile(
    r"\s+for\s+(?:any\s+)?(?:metasta|mets(?![A-Za-z])|spread|distant|nodal|lymph|disease)", FLAGS
)


def _imaging(doc: Doc, lex: Lexicon, modalities: Sequence[tuple[str, int, int]]) -> list[Mention]:
    text = doc.text
    out: list[Mention] = []
    for i, (field, start, end) in enumerate(modalities):
        seg_start, seg_end = doc.segment(start)
        nxt = modalities[i + 1][1] if i + 1 < len(modalities) else len(text)
        prev = modalities[i - 1][2] if i > 0 else 0
        limit = min(end + 60, seg_end, nxt)
        window = text[end:limit]
        term = re.search(
            r"(?<![A-Za-z])(?:but|however|whereas|although)(?![A-Za-z])", window, FLAGS
        )
        if term:
            window = window[: term.start()]
        found = lex.imaging_result.regex.search(window)
        if found and _NEGATIVE_FOR_SPREAD.match(text, end + found.end()):
            # "DOTATATE PET negative for metastatic disease" says where the disease is not,
            # not whether the tumour takes up the tracer (read as localised disease).
            continue
        if found:
            between = window[: found.start()]
            entry = lex.imaging_result.lookup(found.group(0))
            symbolic = not found.group(0)[:1].isalpha()
            if entry is None or (symbolic and not _symbol_result(text, between, found, end)):
                continue
            if lex.negation_word.search(between):
                if entry.value == "positive" and lex.no_result.fullmatch(between):
                    # "FDG-PET/CT: no avid disease"
                    out.append(Mention(field, "negative", start, end + found.end()))
                    continue
                out.append(
                    Mention(field, None, start, end + found.end(), note="result not clearly stated")
                )
                continue
            if entry.value == "positive" and not _ALNUM_RE.search(between):
                # "No FDG uptake", "without DOTATATE-avid disease": the finding is absent.
                no = lex.no_modality.search(text, max(seg_start, prev, start - 40), start)
                if no:
                    out.append(Mention(field, "negative", no.start(), end + found.end()))
                    continue
            note = "" if entry.value is not None else "uptake not classifiable as positive/negative"
            out.append(Mention(field, entry.value, start, end + found.end(), note=note))
            continue
        lo = max(start - 35, seg_start, prev)
        before = text[lo:start]
        found = lex.result_before.search(before)
        if found:
            entry = lex.imaging_result.lookup(found.group("pol"))
            if entry is not None and entry.value is not None:
                out.append(Mention(field, entry.value, lo + found.start(), end))
            continue
        found = lex.not_done_before.search(before)
        if found:
            out.append(Mention(field, "not_done", lo + found.start(), end))
    ihc: dict[Span, bool] = {}
    for field, table in (("sstr_imaging", lex.sstr_standalone), ("fdg_pet", lex.fdg_standalone)):
        for x in _phrase_mentions(doc, field, table):
            if field == "sstr_imaging" and x.value is not None:
                seg = doc.segment(x.start)
                if seg not in ihc:
                    ihc[seg] = lex.ihc.search(text, seg[0], seg[1]) is not None
                if ihc[seg]:
                    x = Mention(
                        field, None, x.start, x.end, note="immunohistochemistry, not imaging"
                    )
            out.append(x)
    return out


def _near_liver(doc: Doc, lex: Lexicon) -> Iterator[Mention]:
    """The liver distribution in words read only after a liver word ("both lobes")."""
    text = doc.text
    for m in lex.near_liver.regex.finditer(text):
        entry = lex.near_liver.lookup(m.group(0))
        if entry is None or entry.value is None:
            continue
        lo = max(doc.sentence(m.start())[0], m.start() - 60)
        if lex.liver_word.search(text, lo, m.start()):
            yield Mention("liver_distribution", entry.value, m.start(), m.end())


def _near_pancreas(doc: Doc, lex: Lexicon, primaries: Sequence[Mention]) -> Iterator[Mention]:
    """The pancreatic region in words read only after a pancreas primary in the sentence."""
    text = doc.text
    # Ends of the pancreas primaries, sorted: the last one before a region word is looked up.
    ends = sorted((p.end, p.start) for p in primaries if p.value == "pancreas")
    keys = [e for e, _ in ends]
    for m in lex.near_pancreas.regex.finditer(text):
        entry = lex.near_pancreas.lookup(m.group(0))
        if entry is None or entry.value is None:
            continue
        i = bisect_right(keys, m.start()) - 1
        if i >= 0 and ends[i][1] >= doc.sentence(m.start())[0]:
            yield Mention("pancreas_region", entry.value, m.start(), m.end())


def _grade_words(doc: Doc, lex: Lexicon) -> Iterator[Mention]:
    """A grade in words: "low-grade ileal NET", "atypical carcinoid" (implied)."""
    table = lex.grade_words
    for m in table.regex.finditer(doc.text):
        entry = table.lookup(m.group(0))
        if entry is None:
            continue
        if entry.strength == 2 and not lex.grade_follow.match(doc.text, m.end()):
            # "low-grade fever": not said of the tumour (reported, never read).
            yield Mention("grade", None, m.start(), m.end(), note="not said of the tumour")
            continue
        note = "" if entry.value is not None else "does not name one grade"
        yield Mention("grade", entry.value, m.start(), m.end(), entry.strength, note=note)


def _who_terms(doc: Doc, lex: Lexicon) -> Iterator[Mention]:
    """WHO 2019 tumour words ("NET"): the differentiation they imply, never a stated value."""
    for x in _phrase_mentions(doc, "differentiation", lex.who_terms):
        if x.value is not None:
            yield Mention(x.field, x.value, x.start, x.end, strength=0, kind="implied")


def _gastric_types(doc: Doc, lex: Lexicon) -> Iterator[Mention]:
    """The gastric NET type: a type word ("type 1") in a sentence naming the stomach."""
    text = doc.text
    for m in lex.gastric_types.regex.finditer(text):
        entry = lex.gastric_types.lookup(m.group(0))
        if entry is None or entry.value is None:
            continue
        if lex.gastric_not_before.match(text, m.end()) or lex.gastric_not_after.search(
            text, max(0, m.start() - 30), m.start()
        ):
            continue
        if lex.gastric_words.search(text, *doc.sentence(m.start())):
            yield Mention("gastric_type", entry.value, m.start(), m.end(), entry.strength)


def _margin_of_primary(doc: Doc, lex: Lexicon, m: Mention) -> Mention:
    """A margin belongs to the resection named last before it: after a liver resection
    ("liver resection (R1)") it is not the primary's margin."""
    if m.field != "resection_margin" or m.value is None:
        return m
    text = doc.text
    lo = max(doc.sentence(m.start)[0], m.start - 200)
    last_liver = max((x.end() for x in lex.organ_liver.finditer(text, lo, m.start)), default=-1)
    last_primary = max((x.end() for x in lex.organ_primary.finditer(text, lo, m.start)), default=-1)
    if last_liver > last_primary:
        return Mention(m.field, None, m.start, m.end, note="the margin of a liver resection")
    return m


def _findings(doc: Doc, lex: Lexicon) -> Iterator[Mention]:
    """Findings with no case field ("therapy-related MDS"): reported, never dropped."""
    for m in lex.findings.finditer(doc.text):
        yield Mention("", None, m.start(), m.end(), kind="context", note="no case field for it")


def _sizes(doc: Doc, lex: Lexicon, met_spans: Sequence[Span]) -> list[Mention]:
    """The primary's size: a length in mm or cm whose nearest tumour word names the primary.

    The nearest anchor is looked for before the size (same sentence, 80 characters; the
    sentence before when the size opens its own) and after it (same clause, 40 characters).
    An anchor inside a metastasis mention or a metastasis word makes it a metastasis's size.
    """
    text = doc.text
    mets = Intervals(met_spans)
    out: list[Mention] = []
    for m in lex.size.finditer(text):
        start, end = m.start(), m.end()
        field = "primary_size_mm"
        if m.group("bound"):
            out.append(Mention(field, None, start, end, note="a bound, not a value"))
            continue
        if lex.size_range.search(text, max(0, start - 14), start) or lex.size_range_after.match(
            text, end
        ):
            out.append(Mention(field, None, start, end, note="a range, not a value"))
            continue
        if lex.size_not_after.match(text, end) or lex.size_not_before.search(
            text, max(0, start - 25), start
        ):
            continue
        anchor = _size_anchor(doc, lex, mets, start, end)
        if anchor != "primary":
            note = (
                "the size of a metastasis, not of the primary"
                if anchor == "metastasis"
                else "the size of what is not said"
            )
            out.append(Mention(field, None, start, end, note=note))
            continue
        nums = [m.group("num"), *re.findall(NUM, m.group("more") or "")]
        factor = lex.size_units[m.group("unit").lower()]
        value = max(parse_number(n) for n in nums) * factor
        if value <= 0 or value > 500:
            out.append(Mention(field, None, start, end, note="outside the possible range"))
            continue
        out.append(Mention(field, _clean(value), start, end))
    return out


_SIZE_NOUN_GAP = re.compile(
    r"\s*(?:(?!(?:with|and|or|of|in|at|from|on|for|to|by|than)\b)[A-Za-z-]+\s+){0,3}"
)


def _size_anchor(doc: Doc, lex: Lexicon, mets: Intervals, start: int, end: int) -> str:
    """The kind of the nearest tumour or metastasis word to a size: "primary",
    "metastasis", or "" when there is none."""
    text = doc.text
    sentence = doc.sentence(start)
    segment = doc.segment(start)

    def kind(a: int, b: int, word: str) -> str:
        if word == "met" or mets.overlaps((a, b)):
            return "metastasis"
        return "primary"

    def found(lo: int, hi: int) -> list[tuple[int, int, str]]:
        hits = [(x.start(), x.end(), "primary") for x in lex.organ_primary.finditer(text, lo, hi)]
        hits += [(x.start(), x.end(), "met") for x in lex.size_met.finditer(text, lo, hi)]
        return sorted(hits)

    before = found(max(sentence[0], start - 80), start)
    if not before and segment[0] == sentence[0] and sentence[0] > 0:
        prev = doc.sentence(sentence[0] - 1)
        before = found(max(prev[0], start - 100), prev[1])
    after = found(end, min(segment[1], end + 40))
    # "a 4 cm liver metastasis": a size right before its noun belongs to that noun.
    if after and _SIZE_NOUN_GAP.fullmatch(text, end, after[0][0]):
        before = []
    if before and (doc.segment(before[-1][0]) == segment or not after):
        a, b, word = before[-1]
        return kind(a, b, word)
    if after:
        a, b, word = after[0]
        # "a 3 cm lesion in the liver": a metastasis word right after the anchor.
        if word != "met" and lex.size_met.search(text, b, min(segment[1], b + 25)):
            return "metastasis"
        return kind(a, b, word)
    return ""


def _treatment_terms(doc: Doc, lex: Lexicon) -> list[tuple[Treatment, int, int]]:
    out: list[tuple[Treatment, int, int]] = []
    for m in lex.treatment_any.finditer(doc.text):
        t = lex.treatment_keys.get(phrase_key(m.group(0)))
        if t is not None:
            out.append((t, m.start(), m.end()))
    return out


def _beaten(
    span: Span, others: Sequence[tuple[Any, int, int]], starts: list[int], strict: bool
) -> bool:
    """True when a longer (``strict``) or as long span of ``others`` overlaps ``span``.

    ``others`` is sorted by start and its spans barely overlap one another, so only the
    few spans starting just before ``span`` ends need a look.
    """
    i = bisect_right(starts, span[1] - 1)
    for _, s, e in others[max(0, i - 8) : i]:
        if s < span[1] and span[0] < e:
            size, own = e - s, span[1] - span[0]
            if size > own or (not strict and size == own):
                return True
    return False


def _resolve_terms(
    terms: list[tuple[Treatment, int, int]], modalities: list[tuple[str, int, int]]
) -> tuple[list[tuple[Treatment, int, int]], list[tuple[str, int, int]]]:
    """Treatment names and imaging names that overlap: the longer wins
    ("octreotide scan" is imaging, "177Lu-DOTATATE" is PRRT)."""
    modalities = sorted(modalities, key=lambda x: (x[1], x[2]))
    m_starts = [x[1] for x in modalities]
    keep_t = [t for t in terms if not _beaten((t[1], t[2]), modalities, m_starts, strict=True)]
    t_starts = [t[1] for t in keep_t]
    keep_m = [x for x in modalities if not _beaten((x[1], x[2]), keep_t, t_starts, strict=False)]
    return keep_t, keep_m


def _treatments(
    doc: Doc,
    lex: Lexicon,
    terms: Sequence[tuple[Treatment, int, int]],
    margined: frozenset[Span] = frozenset(),
) -> list[Mention]:
    """Treatment mentions: given (a cue says so), progressed on, or named only (topics).

    A resection named with no cue in a sentence that states its margin ("EMR, R1") was done.
    """
    text = doc.text
    named = {doc.segment_index(s) for t, s, _ in terms if t.code in lex.specific_resections}
    terms = [t for t in terms if t[0].code != ORGAN or doc.segment_index(t[1]) not in named]
    term_starts = [s for _, s, _ in terms]
    groups: list[list[tuple[Treatment, int, int]]] = []
    for term in terms:
        if groups:
            last = groups[-1][-1]
            gap = text[last[2] : term[1]]
            if lex.treatment_separator.fullmatch(gap) and doc.sentence(last[1]) == doc.sentence(
                term[1]
            ):
                groups[-1].append(term)
                continue
        groups.append([term])
    out: list[Mention] = []
    previous_end = 0
    for group in groups:
        g_start, g_end = group[0][1], group[-1][2]
        sentence = doc.sentence(g_start)
        question = doc.is_question(sentence)
        # The cue is looked for after the previous treatment name only: in "progressed on
        # lanreotide after PRRT", "progressed on" belongs to lanreotide, "after" to PRRT.
        window_start = max(sentence[0], g_start - 70, previous_end)
        previous_end = g_end
        window = text[window_start:g_start]
        kind = ""
        cue_start = g_start
        for name in ("progressed", "prior", "prior_weak", "prior_on"):
            if name in ("prior_weak", "prior_on") and question:
                continue
            found = lex.cue_before[name].search(window)
            if not found:
                continue
            # "should be treated with", "to put her on": a plan, not a treatment given.
            words_before = re.findall(
                r"[A-Za-z']+",
                text[max(sentence[0], window_start - 30) : window_start + found.start()],
            )[-2:]
            blocked = lex.not_after | (lex.on_not_after if name == "prior_on" else frozenset())
            if words_before and (
                words_before[-1].lower() in blocked
                or (name == "prior_on" and any(w.lower() in blocked for w in words_before))
            ):
                continue
            kind = "progressed" if name == "progressed" else "prior"
            cue_start = window_start + found.start()
            break
        span_end = g_end
        after = text[g_end : min(len(text), g_end + 70)]
        post = lex.cue_after_progressed.match(after)
        if post:
            span_end = g_end + post.end()
            symptom = lex.symptom_after.match(text, span_end)
            if kind != "progressed":
                kind = "prior" if symptom else "progressed"
        elif not kind:
            post = lex.cue_after_prior.match(after)
            if post:
                kind = "prior"
                span_end = g_end + post.end()
        later = None
        if kind == "prior" and not question:
            later = _progressed_later(doc, lex, g_end, term_starts)
        after_sequence = False
        for i, (t, t_start, t_end) in enumerate(group):
            this = kind
            if (
                not this
                and t.code in lex.specific_resections
                and sentence in margined
                and not question
            ):
                this = "prior"
            if i and lex.sequence_separator.search(text, group[i - 1][2], t_start):
                # "progressed on X, then Y": Y came after the progression.
                after_sequence = True
            if this == "progressed" and after_sequence:
                this = "prior"
            if not this and t.self_cued and not _planned(doc, lex, t_start):
                this = "prior"
            if not this:
                if t.code != ORGAN:
                    # Named, not given: what the text asks or plans about ("TARE proposed").
                    out.append(Mention("", t.code, t_start, t_end, kind="topic"))
                continue
            code: str | None = t.code
            implies = t.implies
            if code == ORGAN:
                code, implies = _organ(doc, lex, t_start)
            if code is None:
                out.append(
                    Mention(
                        "prior_treatments",
                        None,
                        cue_start,
                        span_end,
                        kind="treatment",
                        note="which organ was operated on is not said",
                    )
                )
                continue
            out.append(Mention("prior_treatments", code, cue_start, span_end, kind="treatment"))
            if this == "progressed":
                out.append(Mention("progressed_on", code, cue_start, span_end, kind="treatment"))
            elif later is not None and i == len(group) - 1 and code in lex.progressed_later_codes:
                # "on lanreotide for 14 months, now progression": progressed on the last one.
                out.append(Mention("progressed_on", code, cue_start, later, kind="treatment"))
            for field, value in implies:
                out.append(Mention(field, value, cue_start, span_end, strength=1, kind="treatment"))
    return out


#: The code of the treatment words whose organ decides the code ("s/p resection").
ORGAN = "@organ"


def _organ(doc: Doc, lex: Lexicon, pos: int) -> tuple[str | None, tuple[tuple[str, Any], ...]]:
    """Which resection "resection" is: the nearest organ word before it in its clause; else
    the organ words of this sentence and the one before name the primary only
    (primary_resection), the liver only (hepatic_resection), or neither or both (None)."""
    text = doc.text
    clause = max(doc.segment(pos)[0], pos - 200)
    last_primary = max((x.end() for x in lex.organ_primary.finditer(text, clause, pos)), default=-1)
    last_liver = max((x.end() for x in lex.organ_liver.finditer(text, clause, pos)), default=-1)
    if last_primary != last_liver:
        # Named in the same clause ("the ileal NET was resected"): the nearest organ.
        if last_primary > last_liver:
            return "primary_resection", (("primary_resected", True),)
        return "hepatic_resection", ()
    sentence = doc.sentence(pos)
    lo = doc.sentence(sentence[0] - 1)[0] if sentence[0] > 0 else sentence[0]
    lo = max(lo, pos - 200)
    primary = lex.organ_primary.search(text, lo, pos) is not None
    liver = lex.organ_liver.search(text, lo, pos) is not None
    if not primary and not liver:
        # "Right middle lobectomy was performed; pathology: atypical carcinoid": after it.
        hi = doc.sentence(sentence[1])[1] if sentence[1] < len(text) else sentence[1]
        hi = min(hi, pos + 200)
        primary = lex.organ_primary.search(text, pos, hi) is not None
        liver = lex.organ_liver.search(text, pos, hi) is not None
    if primary and not liver:
        return "primary_resection", (("primary_resected", True),)
    if liver and not primary:
        return "hepatic_resection", ()
    return None, ()


def _planned(doc: Doc, lex: Lexicon, pos: int) -> bool:
    """True when a self-cued word is a plan: "to be resected", "should be excised"."""
    words = re.findall(r"[A-Za-z']+", doc.text[max(doc.sentence(pos)[0], pos - 30) : pos])[-2:]
    return any(w.lower() in lex.not_after for w in words)


def _progressed_later(doc: Doc, lex: Lexicon, end: int, starts: Sequence[int]) -> int | None:
    """Where "now progression" ends when it follows a treatment given (same sentence, or the
    start of the next) with nothing between that denies, doubts or names another treatment."""
    text = doc.text
    sentence = doc.sentence(end)
    limit = sentence[1]
    if sentence[1] < len(text) and sentence[1] - end < 60:
        # The treatment closes its sentence: the next one may say what happened on it.
        nxt = doc.sentence(sentence[1])
        if not doc.is_question(nxt):
            limit = nxt[1]
    limit = min(limit, end + 120)
    k = bisect_right(starts, end)
    if k < len(starts) and starts[k] < limit:
        limit = starts[k]
    found = lex.progressed_later.search(text, end, limit)
    if found is None:
        return None
    gap = text[end : found.start()]
    if "?" in gap or lex.doubt.search(gap):
        return None
    return found.end()


def _context(doc: Doc, lex: Lexicon) -> list[Mention]:
    return [
        Mention("", "metastatic", m.start(), m.end(), kind="context")
        for m in lex.context.finditer(doc.text)
    ]


def extract(doc: Doc, lex: Lexicon) -> list[Mention]:
    """Every mention in the document, before negation and conflicts are considered.

    Args:
        doc: the cut-up document.
        lex: the compiled lexicon.

    Returns:
        The mentions, sorted by position; those overlapping an ``exclude`` phrase ("at
        progression", "clinically stable") are already taken out.
    """
    mentions: list[Mention] = []
    for field in (
        "functional_syndrome",
        "disease_status",
        "pregnant",
        "sex",
        "comorbidities",
        "primary_complications",
        "primary_resected",
        "liver_distribution",
        "differentiation",
        "pancreas_region",
        "resection_margin",
        "hereditary_syndrome",
    ):
        mentions.extend(_phrase_mentions(doc, field, lex.tables[field]))
    mets = _metastatic_sites(doc, lex)
    mentions.extend(mets)
    met_spans = [(m.start, m.end) for m in mets if m.value != NO_SITES]
    primaries = _primary_sites(doc, lex, met_spans)
    mentions.extend(primaries)
    mentions.extend(_near_pancreas(doc, lex, primaries))
    mentions.extend(_near_liver(doc, lex))
    mentions.extend(_grade_words(doc, lex))
    mentions.extend(_who_terms(doc, lex))
    mentions.extend(_gastric_types(doc, lex))
    mentions.extend(_findings(doc, lex))
    mentions.extend(_tumour_words(doc, lex))
    mentions.extend(_sizes(doc, lex, met_spans))
    mentions = [_margin_of_primary(doc, lex, m) for m in mentions]
    # A margin is only had once the primary is out: it implies the primary was resected.
    margins = [m for m in mentions if m.field == "resection_margin" and m.value is not None]
    mentions.extend(Mention("primary_resected", True, m.start, m.end, strength=1) for m in margins)
    mentions.extend(_resectable(doc, lex))
    mentions.extend(_numbers(doc, lex))
    terms, modalities = _resolve_terms(_treatment_terms(doc, lex), _modalities(doc, lex))
    mentions.extend(_imaging(doc, lex, modalities))
    margined = frozenset(doc.sentence(m.start) for m in margins)
    mentions.extend(_treatments(doc, lex, terms, margined))
    mentions.extend(_context(doc, lex))

    excluded = Intervals((m.start(), m.end()) for m in lex.exclude.finditer(doc.text))
    mentions = [m for m in mentions if not excluded.overlaps((m.start, m.end))]
    # "no metastatic disease" states localised disease: its "metastatic" is no context.
    localised = Intervals(
        (m.start, m.end) for m in mentions if m.field == "metastatic_sites" and m.value == NO_SITES
    )
    mentions = [
        m for m in mentions if not (m.kind == "context" and localised.overlaps((m.start, m.end)))
    ]
    mentions = _drop_contained(mentions)
    return sorted(mentions, key=lambda m: (m.start, m.end, m.field, str(m.value)))


def _drop_contained(mentions: list[Mention]) -> list[Mention]:
    """Within one field, a mention inside a longer one with another value goes (the longer
    reading wins: "non-resectable liver" over "resectable liver"); a recognised-only mention
    overlapping a usable one goes ("creatinine" inside "creatinine clearance 40")."""
    by_field: dict[str, list[Mention]] = {}
    for m in sorted(mentions, key=lambda x: (x.start, -x.end)):
        by_field.setdefault(m.field, []).append(m)
    usable = Intervals(
        (m.start, m.end)
        for m in mentions
        if m.value is not None and m.kind not in ("context", "implied", "topic", "evidence")
    )
    keep: list[Mention] = []
    for field, group in by_field.items():
        for i, m in enumerate(group):
            span = (m.start, m.end)
            if m.value is None and usable.overlaps(span):
                continue
            # Containers start at or before m: look back a bounded number of mentions.
            if field and any(
                o.value != m.value
                and _contains((o.start, o.end), span)
                and (o.end - o.start) > (m.end - m.start)
                for o in group[max(0, i - 12) : i + 12]
            ):
                continue
            keep.append(m)
    return keep


def concept_spans(doc: Doc, lex: Lexicon) -> list[Span]:
    """Spans of the words that name a clinical concept of the knowledge base (a site, a
    metastasis, a treatment, a grade, a syndrome, a lab...), outside ``exclude`` phrases."""
    excluded = Intervals((m.start(), m.end()) for m in lex.exclude.finditer(doc.text))
    spans: list[Span] = []
    for pattern in lex.concepts:
        spans.extend(
            (m.start(), m.end())
            for m in pattern.finditer(doc.text)
            if m.end() > m.start() and not excluded.overlaps((m.start(), m.end()))
        )
    return spans


def recognised_spans(doc: Doc, lex: Lexicon) -> list[Span]:
    """Spans of every known word (tumour nouns, sites, drugs, labels), used or not."""
    spans: list[Span] = []
    for pattern in lex.terms:
        spans.extend((m.start(), m.end()) for m in pattern.finditer(doc.text))
    return spans
