"""CDS Hooks feedback, kept in a local SQLite file without patient data.

Two tables: ``cards`` records each card the service issued (its uuid, kind, the contract codes
and rule ids it carries, the knowledge-base version, the time), and ``feedback`` records what
the clinician did with it (accepted or overridden, the accepted suggestion ids, the override
reason as a coding, the outcome time). The free-text ``userComment`` of an override is never
stored, since it may name the patient; only whether one was given.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from netboard.errors import Problem

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cards (
    uuid        TEXT PRIMARY KEY,
    service     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    codes       TEXT NOT NULL,
    rule_ids    TEXT NOT NULL,
    kb_version  TEXT NOT NULL,
    issued_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    card                 TEXT NOT NULL,
    service              TEXT NOT NULL,
    outcome              TEXT NOT NULL CHECK (outcome IN ('accepted', 'overridden')),
    accepted_suggestions TEXT NOT NULL,
    override_system      TEXT,
    override_code        TEXT,
    override_display     TEXT,
    had_comment          INTEGER NOT NULL,
    outcome_timestamp    TEXT NOT NULL,
    received_at          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_card ON feedback (card);
"""


@dataclass(frozen=True, slots=True)
class IssuedCard:
    """What the service remembers of a card it sent: no patient data."""

    uuid: str
    kind: str
    codes: tuple[str, ...]
    rule_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FeedbackItem:
    """One validated feedback entry (CDS Hooks 2.0 "Feedback")."""

    card: str
    outcome: str
    accepted_suggestions: tuple[str, ...]
    override_system: str | None
    override_code: str | None
    override_display: str | None
    had_comment: bool
    outcome_timestamp: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _text(value: Any, where: str, problems: list[Problem], *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 500:
        problems.append(Problem(where, "expected a non-empty string (at most 500 characters)"))
        return None
    return value


def _is_instant(text: str) -> bool:
    """An RFC 3339 date-time (section 5.6): date, time and a time zone (Z or an offset)."""
    if "T" not in text.upper():
        return False
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return parsed.tzinfo is not None


def parse_feedback(body: Any) -> list[FeedbackItem]:
    """Validate a feedback request body; raise ``CaseError`` naming each field at fault."""
    from netboard.errors import CaseError

    problems: list[Problem] = []
    if not isinstance(body, Mapping) or not isinstance(body.get("feedback"), list):
        raise CaseError([Problem("feedback", "expected an object with a 'feedback' list")])
    items: list[FeedbackItem] = []
    for i, entry in enumerate(body["feedback"]):
        w = f"feedback[{i}]"
        if not isinstance(entry, Mapping):
            problems.append(Problem(w, "expected an object"))
            continue
        before = len(problems)
        card = _text(entry.get("card"), f"{w}.card", problems)
        outcome = entry.get("outcome")
        if outcome not in ("accepted", "overridden"):
            problems.append(Problem(f"{w}.outcome", "expected 'accepted' or 'overridden'"))
        stamp = _text(entry.get("outcomeTimestamp"), f"{w}.outcomeTimestamp", problems)
        if stamp is not None and not _is_instant(stamp):
            problems.append(
                Problem(
                    f"{w}.outcomeTimestamp",
                    "expected an RFC 3339 date-time with a time zone (1985-04-12T23:20:50.52Z)",
                )
            )
        accepted: list[str] = []
        raw_accepted = entry.get("acceptedSuggestions", [])
        if not isinstance(raw_accepted, list):
            problems.append(Problem(f"{w}.acceptedSuggestions", "expected a list"))
        else:
            for j, s in enumerate(raw_accepted):
                sid = _text(
                    s.get("id") if isinstance(s, Mapping) else None,
                    f"{w}.acceptedSuggestions[{j}].id",
                    problems,
                )
                if sid is not None:
                    accepted.append(sid)
        system = code = display = None
        had_comment = False
        reason = entry.get("overrideReason")
        if reason is not None:
            if not isinstance(reason, Mapping):
                problems.append(Problem(f"{w}.overrideReason", "expected an object"))
            else:
                coding = reason.get("reason")
                if coding is not None:
                    if not isinstance(coding, Mapping):
                        problems.append(Problem(f"{w}.overrideReason.reason", "expected a Coding"))
                    else:
                        where = f"{w}.overrideReason.reason"
                        system = _text(coding.get("system"), f"{where}.system", problems)
                        code = _text(coding.get("code"), f"{where}.code", problems)
                        display = _text(
                            coding.get("display"), f"{where}.display", problems, required=False
                        )
                had_comment = bool(reason.get("userComment"))
        if outcome == "overridden" and accepted:
            problems.append(
                Problem(f"{w}.acceptedSuggestions", "an overridden card accepts no suggestion")
            )
        # CDS Hooks 2.0 Feedback: acceptedSuggestions is "Required for accepted outcomes".
        if outcome == "accepted" and "acceptedSuggestions" not in entry:
            problems.append(Problem(f"{w}.acceptedSuggestions", "required for an accepted outcome"))
        if reason is not None and outcome == "accepted":
            problems.append(Problem(f"{w}.overrideReason", "only an overridden card has one"))
        if isinstance(reason, Mapping):
            comment = reason.get("userComment")
            if comment is not None and not isinstance(comment, str):
                problems.append(Problem(f"{w}.overrideReason.userComment", "expected a string"))
        if len(problems) == before and card is not None and stamp is not None:
            items.append(
                FeedbackItem(
                    card=card,
                    outcome=str(outcome),
                    accepted_suggestions=tuple(accepted),
                    override_system=system,
                    override_code=code,
                    override_display=display,
                    had_comment=had_comment,
                    outcome_timestamp=stamp,
                )
            )
    if problems:
        raise CaseError(problems)
    return items


class FeedbackStore:
    """The SQLite file of issued cards and feedback (thread-safe, one connection)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def record_cards(self, service: str, kb_version: str, cards: Iterable[IssuedCard]) -> None:
        """Remember the cards just sent (no patient data)."""
        rows = [
            (
                c.uuid,
                service,
                c.kind,
                " ".join(c.codes),
                " ".join(c.rule_ids),
                kb_version,
                _now(),
            )
            for c in cards
        ]
        with self._lock:
            self._db.executemany("INSERT OR IGNORE INTO cards VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def record_feedback(self, service: str, items: Sequence[FeedbackItem]) -> None:
        """Store feedback entries; a card may get feedback more than once."""
        rows = [
            (
                f.card,
                service,
                f.outcome,
                " ".join(f.accepted_suggestions),
                f.override_system,
                f.override_code,
                f.override_display,
                int(f.had_comment),
                f.outcome_timestamp,
                _now(),
            )
            for f in items
        ]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO feedback (card, service, outcome, accepted_suggestions, "
                "override_system, override_code, override_display, had_comment, "
                "outcome_timestamp, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._db.execute("COMMIT")

    def summary(self) -> list[dict[str, Any]]:
        """Accepted and overridden counts per card kind and code (for quality review)."""
        with self._lock:
            cur = self._db.execute(
                "SELECT c.kind, c.codes, f.outcome, count(*) FROM feedback f "
                "LEFT JOIN cards c ON c.uuid = f.card "
                "GROUP BY c.kind, c.codes, f.outcome ORDER BY c.kind, c.codes, f.outcome"
            )
            return [
                {"kind": k or "unknown", "codes": codes or "", "outcome": o, "count": n}
                for k, codes, o, n in cur.fetchall()
            ]
