"""General questions answered from the knowledge base's own statements.

A question that names no patient ("lanreotide dose for GEP-NET?", "side effects of
Lutathera") is answered with what the knowledge base itself says: its dosing lines, alert
messages, eligibility criteria, monitoring items, points of disagreement and rule
rationales, each with its references. The statements are found by a small BM25 ranking
over normalised words; synonyms and brand names (Lutathera -> prrt, "side effects" ->
toxicity) come from ``knowledge_aliases.yaml``. A question that no statement answers well
enough gets no statements: the knowledge base says it has none rather than guessing.

A statement answers only when it matches at least two of the question's words, one of them
about a subject (not only "dose" or "criteria"), one of the treatments the question names
(if it names any), covers most of the question (:data:`MIN_COVERAGE`, weighted by how rare
each word is) and scores at least :data:`MIN_SCORE`. Statements scoring under
:data:`RELATIVE_SCORE` of the best are left out; at most :data:`LIMIT` are given.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from netboard.conditions import All, AnyOf, Condition, Fact, Planned, walk
from netboard.kb.model import KnowledgeBase, ReferenceDef
from netboard.words import capfirst

__all__ = [
    "KnowledgeAnswer",
    "KnowledgeIndex",
    "Statement",
    "answer_question",
    "asks_for_knowledge",
    "knowledge_index",
    "knowledge_markdown",
    "search",
]

#: BM25 term-frequency saturation and length normalisation (the usual values).
K1 = 1.2
B = 0.75
#: The least score (BM25 times the priors and kind bonus below) of an answering statement.
MIN_SCORE = 4.5
#: The least share of the question (idf-weighted) an answering statement must match.
MIN_COVERAGE = 0.8
#: Statements scoring under this share of the best statement's score are left out.
RELATIVE_SCORE = 0.6
#: At most this many statements answer one question.
LIMIT = 5
#: A statement of a kind the question asks for (a dosing line for "dose") scores this much more.
KIND_BONUS = 1.5
#: Score weights by what a statement is: an intervention's first unconditional dosing line
#: is its standard dose; a line for a particular situation (it has a condition) comes after
#: the general ones; a whole eligibility set comes before its single criteria.
STANDARD_DOSE_PRIOR = 1.1
CONDITIONAL_DOSE_PRIOR = 0.8
CRITERIA_SET_PRIOR = 1.25
#: A rule rationale's score is weighted by its status: what to do before what not to do.
STATUS_PRIOR = {
    "recommended": 1.15,
    "consider": 1.05,
    "not_recommended": 0.9,
    "contraindicated": 0.9,
}

UNANSWERED = (
    "The knowledge base has no statement that answers this question; describe a patient "
    "(primary site, grade or Ki-67, where the metastases are) for a recommendation."
)

_WORD = re.compile(r"[^\W_]+")


def _stem(word: str) -> str:
    """Drop a final plural: "metastases" -> "metastase", "toxicities" -> "toxicity"."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _words(text: str) -> list[str]:
    return [_stem(w) for w in _WORD.findall(text.casefold())]


@dataclass(frozen=True, slots=True)
class Aliases:
    """The word tables of ``knowledge_aliases.yaml``, ready for matching.

    Attributes:
        phrases: a word sequence -> its canonical word.
        starts: first word of a phrase -> the phrase lengths starting with it, longest first.
        stopwords: words dropped before matching.
        intents: canonical words that say what kind of answer is asked for, each with the
            statement kinds that answer it best.
        subjects: canonical words that name a treatment or procedure.
        narrower: canonical word -> narrower words a statement using it is also found by.
        drugs: intervention code -> extra words its statements are found by.
        acronyms: display forms of words in titles built from codes.
    """

    phrases: Mapping[tuple[str, ...], str]
    starts: Mapping[str, tuple[int, ...]]
    stopwords: frozenset[str]
    intents: Mapping[str, frozenset[str]]
    subjects: frozenset[str]
    narrower: Mapping[str, tuple[str, ...]]
    drugs: Mapping[str, tuple[str, ...]]
    acronyms: Mapping[str, str]

    def code_words(self, code: str) -> str:
        """The words an intervention code is found by: the code's words and its drugs."""
        return " ".join([code.replace("_", " "), *self.drugs.get(code, ())])

    def tokens(self, text: str) -> list[str]:
        """The normalised words of ``text``: phrases replaced by their canonical word.

        Example:
            >>> aliases().tokens("How long to stop Sandostatin LAR before Lutathera?")
            ['washout', 'washout', 'octreotide', 'washout', 'prrt']
        """
        words = _words(text)
        out: list[str] = []
        i, n = 0, len(words)
        while i < n:
            word = words[i]
            for size in self.starts.get(word, ()):
                canonical = self.phrases.get(tuple(words[i : i + size])) if i + size <= n else None
                if canonical is not None:
                    out.append(canonical)
                    i += size
                    break
            else:
                if word not in self.stopwords:
                    out.append(word)
                i += 1
        return out

    def statement_tokens(self, text: str) -> list[str]:
        """The tokens a statement is indexed by: :meth:`tokens` plus the narrower words.

        Example:
            >>> aliases().statement_tokens("Stop long-acting SSA")
            ['washout', 'long', 'acting', 'ssa', 'lanreotide', 'octreotide']
        """
        out: list[str] = []
        for token in self.tokens(text):
            out.append(token)
            out.extend(self.narrower.get(token, ()))
        return out


def parse_aliases(doc: Mapping[str, Any]) -> Aliases:
    """Build the word tables from the parsed YAML; raise ``ValueError`` on a clash.

    Example:
        >>> a = parse_aliases({"aliases": {"prrt": ["lutathera"]}, "stopwords": ["of"]})
        >>> a.tokens("side effects of Lutathera")
        ['side', 'effect', 'prrt']
        >>> parse_aliases({"aliases": {"a1": ["x"], "b1": ["x"]}})
        Traceback (most recent call last):
        ValueError: knowledge aliases: 'x' means both 'a1' and 'b1'
    """
    phrases: dict[tuple[str, ...], str] = {}
    groups: Mapping[str, Any] = doc.get("aliases") or {}
    for canonical, variants in groups.items():
        for variant in [canonical, *(variants or [])]:
            key = tuple(_words(str(variant)))
            if not key:
                raise ValueError(f"knowledge aliases: {variant!r} has no words")
            if phrases.get(key, canonical) != canonical:
                raise ValueError(
                    f"knowledge aliases: {variant!r} means both {phrases[key]!r} and {canonical!r}"
                )
            phrases[key] = str(canonical)
    sizes: dict[str, set[int]] = {}
    for key in phrases:
        sizes.setdefault(key[0], set()).add(len(key))
    stopwords = frozenset(w for s in doc.get("stopwords") or [] for w in _words(str(s)))
    clash = sorted(set(phrases.values()) & stopwords)
    if clash:
        raise ValueError(f"knowledge aliases: canonical words listed as stopwords: {clash}")
    return Aliases(
        phrases=phrases,
        starts={w: tuple(sorted(s, reverse=True)) for w, s in sizes.items()},
        stopwords=stopwords,
        intents={
            str(k): frozenset(str(x) for x in kinds or [])
            for k, kinds in (doc.get("intents") or {}).items()
        },
        subjects=frozenset(str(x) for x in doc.get("subjects") or []),
        narrower={
            str(k): tuple(str(w) for w in x or []) for k, x in (doc.get("narrower") or {}).items()
        },
        drugs={str(k): tuple(str(w) for w in x or []) for k, x in (doc.get("drugs") or {}).items()},
        acronyms={str(k): str(x) for k, x in (doc.get("acronyms") or {}).items()},
    )


@lru_cache(maxsize=1)
def aliases() -> Aliases:
    """The packaged ``knowledge_aliases.yaml``, read once."""
    from importlib.resources import files

    import yaml

    from netboard.documents import yaml_loader

    text = files("netboard.parse").joinpath("knowledge_aliases.yaml").read_text("utf-8")
    return parse_aliases(yaml.load(text, Loader=yaml_loader()))


# --- statements -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Statement:
    """One thing the knowledge base says.

    Attributes:
        kind: dosing, alert, criteria (a whole eligibility set), criterion, monitoring,
            disagreement or rationale.
        title: a short heading (what the statement is about).
        text: the knowledge base's own words.
        evidence: reference ids.
    """

    kind: str
    title: str
    text: str
    evidence: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The statement as JSON: kind, title, text, evidence."""
        return {
            "kind": self.kind,
            "title": self.title,
            "text": self.text,
            "evidence": list(self.evidence),
        }


def _code_words(code: str, acronyms: Mapping[str, str]) -> str:
    return " ".join(acronyms.get(w, w) for w in code.split("_"))


def _shorten(text: str, limit: int = 70) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:(")
    return cut + "..."


@dataclass(frozen=True, slots=True)
class _Entry:
    statement: Statement
    found_by: str
    prior: float = 1.0


def _statements(kb: KnowledgeBase, words: Aliases) -> list[_Entry]:
    """Every statement with the text it is found by (its words, codes, labels and drugs).

    A single eligibility criterion is found by its own words and its set's name, not by the
    set's title. A monitoring item or a disagreement is also found by the treatments and
    facts its condition names ("sunitinib monitoring"), an alert by the treatments. Each
    carries a prior (:data:`STATUS_PRIOR`, :data:`STANDARD_DOSE_PRIOR` and the like).
    """
    label = kb.labels.get("interventions", {})
    phases = kb.labels.get("phases", {})

    def name(code: str) -> str:
        return label.get(code, code.replace("_", " "))

    def about(when: Condition) -> str:
        """The treatments a condition plans and the facts it requires (not those it denies)."""
        found: list[str] = []

        def visit(node: Condition) -> None:
            if isinstance(node, Planned):
                found.extend(f"{name(c)} {words.code_words(c)}" for c in node.codes)
            elif isinstance(node, Fact) and node.name in kb.facts:
                found.append(kb.facts[node.name].label)
            elif isinstance(node, All | AnyOf):
                for item in node.items:
                    visit(item)

        visit(when)
        return " ".join(found)

    out: list[_Entry] = []
    standard: set[str] = set()
    for d in kb.dosing:
        s = Statement("dosing", f"Dosing: {name(d.code.value)}", d.text, d.evidence)
        found_by = f"{s.title} {s.text} dose {words.code_words(d.code.value)}"
        prior = 1.0
        if d.when is not None:
            prior = CONDITIONAL_DOSE_PRIOR
        elif d.code.value not in standard:
            standard.add(d.code.value)
            prior = STANDARD_DOSE_PRIOR
        out.append(_Entry(s, found_by, prior))
    for a in kb.alerts:
        title = f"Alert ({a.severity.value}): {_code_words(a.code.value, words.acronyms)}"
        s = Statement("alert", title, a.message, a.evidence)
        planned = " ".join(
            words.code_words(c) for n in walk(a.when) if isinstance(n, Planned) for c in n.codes
        )
        out.append(_Entry(s, f"{a.code.value.replace('_', ' ')} {s.text} {planned}"))
    for es in kb.eligibility:
        names = "; ".join(c.name for c in es.criteria)
        text = f"{es.note} Criteria: {names}." if es.note else f"Criteria: {names}."
        evidence = tuple(dict.fromkeys(x for c in es.criteria for x in c.evidence))
        s = Statement("criteria", f"Criteria: {es.title}", text, evidence)
        found_by = f"{s.title} {s.text} criteria {words.code_words(es.name.value)}"
        out.append(_Entry(s, found_by, CRITERIA_SET_PRIOR))
        for c in es.criteria:
            s = Statement("criterion", f"{es.title}: {c.name}", c.detail, c.evidence)
            found_by = f"{c.name} {c.detail} criteria {es.name.value.replace('_', ' ')}"
            out.append(_Entry(s, found_by))
    for m in kb.monitoring:
        text = f"{m.what}: {m.interval}. {m.reason}"
        s = Statement("monitoring", f"Monitoring: {_shorten(m.what)}", text, m.evidence)
        out.append(_Entry(s, f"{s.text} monitoring interval {about(m.when)}"))
    for g in kb.disagreements:
        s = Statement("disagreement", f"Where sources disagree: {g.topic}", g.text, g.evidence)
        out.append(_Entry(s, f"{g.topic} {g.text} disagreement {about(g.when)}"))
    for r in kb.rules:
        names = ", ".join(name(c.value) for c in r.codes)
        status = capfirst(r.status.value.replace("_", " "))
        phase = phases.get(r.phase.value, r.phase.value.replace("_", " "))
        s = Statement("rationale", f"{status}: {names} ({phase})", r.rationale, r.evidence)
        codes = " ".join(words.code_words(c.value) for c in r.codes)
        out.append(_Entry(s, f"{s.title} {s.text} {codes}", STATUS_PRIOR.get(r.status.value, 1.0)))
    seen: set[tuple[str, str]] = set()
    unique: list[_Entry] = []
    for e in out:
        if (e.statement.kind, e.statement.text) not in seen:
            seen.add((e.statement.kind, e.statement.text))
            unique.append(e)
    return unique


# --- the index ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hit:
    """A statement found for a question.

    Attributes:
        statement: the statement.
        score: its BM25 score times its prior and kind bonus.
        coverage: the idf-weighted share of the question's words it matches.
        matched: the question's words it matches.
        answers: whether it is good enough to answer (see the module docstring).
    """

    statement: Statement
    score: float
    coverage: float
    matched: tuple[str, ...]
    answers: bool


@dataclass(slots=True)
class KnowledgeIndex:
    """BM25 over the knowledge base's statements (built by :func:`knowledge_index`)."""

    statements: tuple[Statement, ...]
    words: Aliases
    priors: tuple[float, ...]
    postings: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    lengths: list[int] = field(default_factory=list)

    @classmethod
    def build(cls, kb: KnowledgeBase, words: Aliases) -> KnowledgeIndex:
        """Index every statement of ``kb``."""
        entries = _statements(kb, words)
        index = cls(tuple(e.statement for e in entries), words, tuple(e.prior for e in entries))
        for i, e in enumerate(entries):
            tokens = words.statement_tokens(e.found_by)
            index.lengths.append(len(tokens))
            for token, tf in Counter(tokens).items():
                index.postings.setdefault(token, []).append((i, tf))
        return index

    def idf(self, token: str) -> float:
        """Inverse document frequency; a word in no statement gets the highest value."""
        n = len(self.statements)
        df = len(self.postings.get(token, ()))
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def rank(self, question: str) -> list[Hit]:
        """Every statement matching a word of ``question``, best first (ties: KB order)."""
        query = list(dict.fromkeys(self.words.tokens(question)))
        if not query or not self.statements:
            return []
        intents = self.words.intents
        kinds = frozenset(k for t in query for k in intents.get(t, ()))
        subjects = self.words.subjects.intersection(query)
        avg = sum(self.lengths) / len(self.lengths)
        weights = {t: self.idf(t) for t in query}
        total = sum(weights.values())
        scores: dict[int, float] = {}
        matched: dict[int, list[str]] = {}
        for token in query:
            for i, tf in self.postings.get(token, ()):
                norm = K1 * (1.0 - B + B * self.lengths[i] / avg)
                scores[i] = scores.get(i, 0.0) + weights[token] * tf * (K1 + 1.0) / (tf + norm)
                matched.setdefault(i, []).append(token)
        hits: list[Hit] = []
        for i, bm25 in scores.items():
            s = self.statements[i]
            score = bm25 * self.priors[i] * (KIND_BONUS if s.kind in kinds else 1.0)
            found = tuple(matched[i])
            coverage = sum(weights[t] for t in found) / total
            answers = (
                len(found) >= 2
                and any(t not in intents for t in found)
                and (not subjects or not subjects.isdisjoint(found))
                and coverage >= MIN_COVERAGE
                and score >= MIN_SCORE
            )
            hits.append(Hit(s, score, coverage, found, answers))
        order = {id(s): i for i, s in enumerate(self.statements)}
        hits.sort(key=lambda h: (-h.score, order[id(h.statement)]))
        return hits

    def search(self, question: str, limit: int = LIMIT) -> list[Hit]:
        """The statements that answer ``question``, best first; empty when none does."""
        good = [h for h in self.rank(question) if h.answers]
        if not good:
            return []
        floor = good[0].score * RELATIVE_SCORE
        return [h for h in good if h.score >= floor][:limit]


_INDEXES: dict[int, tuple[KnowledgeBase, KnowledgeIndex]] = {}


def knowledge_index(kb: KnowledgeBase) -> KnowledgeIndex:
    """The index of ``kb``'s statements, built on first use and kept (a few KBs at most)."""
    cached = _INDEXES.get(id(kb))
    if cached is not None and cached[0] is kb:
        return cached[1]
    if len(_INDEXES) >= 4:
        _INDEXES.clear()
    index = KnowledgeIndex.build(kb, aliases())
    _INDEXES[id(kb)] = (kb, index)
    return index


def search(question: str, kb: KnowledgeBase | None = None, limit: int = LIMIT) -> list[Statement]:
    """The knowledge-base statements that answer a general question, best first.

    Args:
        question: free text, for example "lanreotide dose for GEP-NET?".
        kb: the knowledge base (default: the packaged one).
        limit: at most this many statements.

    Returns:
        The answering statements; empty when the knowledge base has none.

    Example:
        >>> top = search("lanreotide dose for GEP-NET?")[0]
        >>> top.kind, "120 mg" in top.text and "every 4 weeks" in top.text
        ('dosing', True)
        >>> search("what is the capital of France")
        []
    """
    if kb is None:
        from netboard.kb import load_kb

        kb = load_kb()
    return [h.statement for h in knowledge_index(kb).search(question, limit)]


def asks_for_knowledge(text: str) -> bool:
    """Whether the text asks for a dose, side effects, criteria, a washout or monitoring.

    Example:
        >>> asks_for_knowledge("what lanreotide dose?"), asks_for_knowledge("pNET, liver mets")
        (True, False)
    """
    words = aliases()
    return any(t in words.intents for t in words.tokens(text))


# --- the answer -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KnowledgeAnswer:
    """What the knowledge base says about a general question."""

    question: str
    statements: tuple[Statement, ...]
    references: tuple[ReferenceDef, ...]

    @property
    def answered(self) -> bool:
        """True when at least one statement answers the question."""
        return bool(self.statements)

    def to_dict(self) -> dict[str, Any]:
        """The ``knowledge`` object of the ``ask`` JSON answer."""
        out: dict[str, Any] = {"question": self.question, "answered": self.answered}
        if not self.answered:
            out["message"] = UNANSWERED
        out["statements"] = [s.to_dict() for s in self.statements]
        out["references"] = [_reference(r) for r in self.references]
        return out


def _reference(r: ReferenceDef) -> dict[str, Any]:
    d: dict[str, Any] = {"id": r.id, "citation": r.citation, "year": r.year, "kind": str(r.kind)}
    if r.url:
        d["url"] = r.url
    if r.note:
        d["note"] = r.note
    return d


def answer_question(question: str, kb: KnowledgeBase) -> KnowledgeAnswer:
    """Answer a general question from ``kb``'s statements, with the references they cite.

    References are in the knowledge base's reference order.
    """
    statements = tuple(search(question, kb))
    cited = {x for s in statements for x in s.evidence}
    references = tuple(r for rid, r in kb.references.items() if rid in cited)
    return KnowledgeAnswer(" ".join(question.split()), statements, references)


def knowledge_markdown(answer: KnowledgeAnswer) -> str:
    """The "From the knowledge base" section: numbered statements, [n] markers, references."""
    from netboard.reports.markdown import escape_inline, escape_markdown

    lines = ["## From the knowledge base", ""]
    if not answer.answered:
        return "\n".join([*lines, UNANSWERED]) + "\n"
    number = {r.id: n for n, r in enumerate(answer.references, start=1)}
    lines += [
        "General statements of the knowledge base that match the question, with their sources;"
        " they are not a recommendation for a particular patient.",
        "",
    ]
    for n, s in enumerate(answer.statements, start=1):
        marks = "".join(f"[{number[x]}]" for x in _sorted_ids(s.evidence, number))
        lines.append(f"{n}. **{escape_inline(s.title)}**: {escape_inline(s.text)} {marks}".rstrip())
    lines += ["", "### References", ""]
    for n, r in enumerate(answer.references, start=1):
        entry = escape_markdown(r.citation)
        if r.year is not None:
            entry += f" ({r.year})"
        if r.url:
            entry += f" <{r.url}>"
        if r.note:
            entry += f" *Note: {escape_inline(r.note)}*"
        lines.append(f"{n}. {entry}")
    return "\n".join(lines) + "\n"


def _sorted_ids(ids: Iterable[str], number: Mapping[str, int]) -> Sequence[str]:
    return sorted((x for x in dict.fromkeys(ids) if x in number), key=number.__getitem__)
