"""ConText-style modifiers: is a mention stated, negated, uncertain or historical?

This follows ConText (Harkema et al., J Biomed Inform 2009), as medspacy implements it:
trigger phrases from the lexicon modify the mentions in their scope.

- A *forward* trigger ("no", "possible", "history of") modifies the mentions after it; a
  *backward* trigger ("ruled out", "cannot be excluded") the mentions before it.
- Scope ends at the sentence end, at ";", at a terminator ("but", "however"; "now" for
  history) and at a comma, except that a short comma list closed by "or"/"nor", or by "and"
  over mentions of the same field, stays in scope: "no bone, lung or brain mets",
  "no diabetes, cirrhosis and gallstones". So "no extrahepatic disease, ECOG 1" keeps ECOG.
- Pseudo-triggers ("no change", "with or without") are not triggers; a trigger inside a
  fact's own words ("not pregnant", "non-avid", "no uptake on DOTATATE") belongs to that
  fact and modifies nothing else.
- Words about someone else ("mother had pancreatic cancer") are not the patient's.
- Treatments are history by meaning, so "h/o TACE" still reads as a prior treatment;
  negation and uncertainty still apply to them ("no prior PRRT").
- Questions: in "Does he have bone mets?" the bone metastases are asked, not stated (see
  the ``question`` section of the lexicon).
- A parenthesis is an aside: a trigger outside it does not reach into it, nor one inside it
  out ("No flushing or diarrhoea (unknown primary)" keeps the unknown primary).

Whatever is not plainly stated never becomes a positive field: wrong is worse than missing.
"""

from __future__ import annotations

import heapq
import re
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from netboard.parse.extract import (
    FLAGS,
    Doc,
    Intervals,
    Lexicon,
    Mention,
    Span,
    _map,
    _strs,
    alternation,
)

AFFIRMED = "affirmed"
NEGATED = "negated"
UNCERTAIN = "uncertain"
HISTORICAL = "historical"
OTHER_PERSON = "other_person"
#: A plan ("is proposed"): uncertain, for the fields of what is done to the patient only.
PLANNED = "planned"

#: The category that wins when several triggers reach one mention.
_PRIORITY = {NEGATED: 4, OTHER_PERSON: 3, UNCERTAIN: 2, PLANNED: 2, HISTORICAL: 1}
_WORD = re.compile(r"[A-Za-z]+")
_LIST_OR = re.compile(r"(?<![A-Za-z])(?:or|nor)(?![A-Za-z])", FLAGS)
_LIST_AND = re.compile(r"(?<![A-Za-z])and(?![A-Za-z])", FLAGS)
_MAX_LIST_WORDS = 6
_MAX_LIST_SEGMENTS = 5
_AT_END = re.compile(r"[\s)\].,:=/'\"-]*\?+\s*")
_PAREN = re.compile(r"\([^()]{0,200}\)")


@dataclass(frozen=True, slots=True)
class Trigger:
    """A trigger phrase found in the text."""

    category: str
    forward: bool
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Assertion:
    """How a mention is asserted, and the words that decide it (for reporting)."""

    status: str
    start: int
    end: int


class ContextRules:
    """The ``context`` and ``question`` sections of the lexicon, compiled."""

    def __init__(self, lex: Lexicon) -> None:
        ctx = _map(lex.data["context"])
        self.triggers: list[tuple[str, bool, re.Pattern[str]]] = []
        for category in (NEGATED, UNCERTAIN, HISTORICAL, OTHER_PERSON, PLANNED):
            spec = _map(ctx[category])
            for direction in ("forward", "backward"):
                phrases = _strs(spec.get(direction))
                if phrases:
                    self.triggers.append(
                        (category, direction == "forward", re.compile(alternation(phrases), FLAGS))
                    )
        self.planned_fields = frozenset(_strs(_map(ctx[PLANNED])["fields"]))
        self.pseudo = re.compile(alternation(_strs(ctx["pseudo"])), FLAGS)
        terms = _map(ctx["terminators"])
        self.terminate_all = re.compile(alternation(_strs(terms["all"])), FLAGS)
        self.terminate_historical = re.compile(alternation(_strs(terms["historical"])), FLAGS)
        q = _map(lex.data["question"])
        self.yes_no = frozenset(w.lower() for w in _strs(q["yes_no_openers"]))
        self.object_verbs = frozenset(w.lower() for w in _strs(q["object_verbs"]))
        self.object_nouns = frozenset(w.lower() for w in _strs(q["object_nouns"]))
        self.wh = frozenset(w.lower() for w in _strs(q["wh_openers"]))
        self.asserting = frozenset(w.lower() for w in _strs(q["asserting_words"]))


@lru_cache(maxsize=2)
def context_rules(lex: Lexicon) -> ContextRules:
    """The compiled ConText rules of a lexicon (once per process)."""
    return ContextRules(lex)


def find_triggers(doc: Doc, rules: ContextRules, owned: Sequence[Span]) -> list[Trigger]:
    """Trigger phrases in the text, minus pseudo-triggers and those inside ``owned`` spans."""
    text = doc.text
    pseudo = Intervals((m.start(), m.end()) for m in rules.pseudo.finditer(text))
    inside = Intervals(owned)
    out: list[Trigger] = []
    for category, forward, pattern in rules.triggers:
        for m in pattern.finditer(text):
            span = (m.start(), m.end())
            if pseudo.overlaps(span) or inside.covers(span):
                continue
            out.append(Trigger(category, forward, span[0], span[1]))
    return sorted(out, key=lambda t: (t.start, t.end))


class _Scopes:
    """Scope computation for one document."""

    def __init__(self, doc: Doc, rules: ContextRules, mentions: Sequence[Mention]) -> None:
        self.doc = doc
        text = doc.text
        found_all = [(m.start(), m.end()) for m in rules.terminate_all.finditer(text)]
        found_hist = found_all + [
            (m.start(), m.end()) for m in rules.terminate_historical.finditer(text)
        ]
        self.terminators = {
            False: (sorted(s for s, _ in found_all), sorted(e for _, e in found_all)),
            True: (sorted(s for s, _ in found_hist), sorted(e for _, e in found_hist)),
        }
        self.word_counts: dict[int, int] = {}
        self.fields_by_segment: dict[int, set[str]] = {}
        for m in mentions:
            if m.field:
                self.fields_by_segment.setdefault(doc.segment_index(m.start), set()).add(m.field)

    def forward_end(self, t: Trigger) -> int:
        doc = self.doc
        sentence = doc.sentence(t.start)
        idx = doc.segment_index(t.start)
        end = doc.segments[idx][1]
        here = self.fields_by_segment.get(idx, set())
        for j in range(idx + 1, min(idx + 1 + _MAX_LIST_SEGMENTS, len(doc.segments))):
            seg = doc.segments[j]
            if seg[0] >= sentence[1]:
                break
            if j not in self.word_counts:
                # Counting stops past the limit: a huge segment costs no more than a short one.
                count = 0
                for _ in _WORD.finditer(doc.text, seg[0], seg[1]):
                    count += 1
                    if count > _MAX_LIST_WORDS:
                        break
                self.word_counts[j] = count
            if self.word_counts[j] > _MAX_LIST_WORDS:
                break
            seg_text = doc.text[seg[0] : seg[1]]
            if _LIST_OR.search(seg_text):
                end = seg[1]
                break
            if _LIST_AND.search(seg_text):
                there: set[str] = set()
                for k in range(idx + 1, j + 1):
                    there |= self.fields_by_segment.get(k, set())
                if there and here and there <= here:
                    end = seg[1]
                break
        starts, _ = self.terminators[t.category == HISTORICAL]
        k = bisect_left(starts, t.end)
        if k < len(starts) and starts[k] < end:
            end = starts[k]
        return min(end, sentence[1])

    def backward_start(self, t: Trigger) -> int:
        start = self.doc.segment(t.start)[0]
        _, ends = self.terminators[t.category == HISTORICAL]
        k = bisect_right(ends, t.start) - 1
        if k >= 0 and ends[k] > start:
            start = ends[k]
        return start


def assert_mentions(doc: Doc, lex: Lexicon, mentions: Sequence[Mention]) -> list[Assertion]:
    """Decide, for each mention, whether the text states it.

    Args:
        doc: the cut-up document.
        lex: the compiled lexicon.
        mentions: the mentions, as ``extract`` returns them.

    Returns:
        One ``Assertion`` per mention, in the same order.
    """
    rules = context_rules(lex)
    owned = [(m.start, m.end) for m in mentions if m.kind == "fact"]
    triggers = find_triggers(doc, rules, owned)
    scopes = _Scopes(doc, rules, mentions)
    # One sweep per (category, direction): a trigger reaches the mentions whose start lies in
    # [lo, hi) (forward) or that lie inside [lo, hi] (backward). The reaching trigger with the
    # furthest hi is found with a heap, so long texts stay O(n log n).
    reach: dict[tuple[str, bool], list[tuple[int, int, Trigger]]] = {}
    for t in triggers:
        if t.forward:
            lo, hi = t.end, scopes.forward_end(t)
        else:
            lo, hi = scopes.backward_start(t), t.start
        reach.setdefault((t.category, t.forward), []).append((lo, hi, t))
    order = sorted(range(len(mentions)), key=lambda i: mentions[i].start)
    hits: list[dict[str, Trigger]] = [{} for _ in mentions]
    for (category, forward), items in reach.items():
        items.sort(key=lambda x: x[0])
        heap: list[tuple[int, int, Trigger]] = []
        k = 0
        for i in order:
            m = mentions[i]
            while k < len(items) and items[k][0] <= m.start:
                lo, hi, t = items[k]
                heapq.heappush(heap, (-hi, k, t))
                k += 1
            if not heap:
                continue
            hi = -heap[0][0]
            if (m.start < hi) if forward else (m.end <= hi):
                hits[i].setdefault(category, heap[0][2])

    parens = [(p.start(), p.end()) for p in _PAREN.finditer(doc.text)]
    starts = [s for s, _ in parens]
    for m, found in zip(mentions, hits, strict=True):
        if found and parens:
            aside = _enclosing(parens, starts, m.start, m.end)
            for category, t in list(found.items()):
                if _enclosing(parens, starts, t.start, t.end) != aside:
                    del found[category]

    questions = _QuestionReader(doc, rules)
    out: list[Assertion] = []
    for m, found in zip(mentions, hits, strict=True):
        if m.kind == "treatment":
            found.pop(HISTORICAL, None)
        if m.field not in rules.planned_fields and m.kind != "topic":
            found.pop(PLANNED, None)
        if found:
            category = max(found, key=lambda c: _PRIORITY[c])
            t = found[category]
            status = UNCERTAIN if category == PLANNED else category
            out.append(Assertion(status, min(t.start, m.start), max(t.end, m.end)))
        elif m.hedged or (m.kind != "context" and questions.asked(m)):
            out.append(Assertion(UNCERTAIN, m.start, m.end))
        else:
            out.append(Assertion(AFFIRMED, m.start, m.end))
    return out


def _enclosing(parens: list[Span], starts: list[int], start: int, end: int) -> Span | None:
    """The parenthesis holding ``[start, end)``, if any (parentheses do not nest here)."""
    i = bisect_right(starts, start) - 1
    if i >= 0 and parens[i][0] < start and end <= parens[i][1]:
        return parens[i]
    return None


class _QuestionReader:
    """Whether a question asks about a mention instead of stating it (words read once)."""

    def __init__(self, doc: Doc, rules: ContextRules) -> None:
        self.doc = doc
        self.rules = rules
        self._sentences: dict[Span, tuple[str, list[int], list[tuple[int, str]]]] = {}

    def _words(self, sentence: Span) -> tuple[str, list[int], list[tuple[int, str]]]:
        """(kind of question: "yes_no", "wh" or "", word starts, (position, word) of the
        last asserting word or verb up to and including each word; (-1, "") when there is
        none)."""
        if sentence not in self._sentences:
            rules = self.rules
            words = [
                (m.start(), m.group(0).lower()) for m in _WORD.finditer(self.doc.text, *sentence)
            ]
            opener = words[0][1] if words else ""
            kind = "yes_no" if opener in rules.yes_no else "wh" if opener in rules.wh else ""
            relevant = rules.asserting | rules.object_verbs
            last: list[tuple[int, str]] = []
            current = (-1, "")
            for i, (pos, w) in enumerate(words):
                # The opening verb itself does not count: "Have the liver mets grown?".
                if kind == "yes_no" and i == 0:
                    pass
                elif kind == "yes_no" and w in rules.object_nouns:
                    current = (pos, "there")
                elif w in relevant and not (
                    kind == "yes_no" and i > 0 and words[i - 1][1] in rules.object_nouns
                ):
                    current = (pos, w)
                last.append(current)
            self._sentences[sentence] = (kind, [p for p, _ in words], last)
        return self._sentences[sentence]

    def asked(self, m: Mention) -> bool:
        """True when the mention is asked about in a question, not stated."""
        doc = self.doc
        sentence = doc.sentence(m.start)
        if not doc.is_question(sentence):
            return False
        kind, starts, last = self._words(sentence)
        i = bisect_left(starts, m.start) - 1
        pos, word = last[i] if i >= 0 else (-1, "")
        at_end = _AT_END.fullmatch(doc.text, m.end, sentence[1]) is not None
        if kind == "yes_no":
            if word in self.rules.object_verbs:
                return True
            return not word and at_end
        segment = doc.segment(m.start)
        if kind == "wh" and segment[0] > sentence[0]:
            # "How should I manage a 60F with a duodenal NET, G1?": a clause of its own
            # after the question is a stated fact.
            return False
        # Otherwise only a bare phrase before the "?" is asked ("62M sigmoid NET, bone mets?").
        return at_end and pos < segment[0]
