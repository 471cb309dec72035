"""CDS Hooks feedback, kept in a local SQLite file without patient data or free text.

Two tables: ``cards`` records each card the service issued (its uuid, kind, the contract codes
and rule ids it carries, the knowledge-base version, the day), and ``feedback`` records what
the clinician did with it (accepted or overridden, the accepted suggestion ids, the override
reason code, the outcome day).

Nothing a person typed is stored: the free-text ``userComment`` of an override may name the
patient, so only whether one was given is kept; the override reason must be one of the codes
the card offered (its ``display`` is not kept), and card and suggestion ids must be the UUIDs
the service issued. Times are kept to the day (UTC), so a row cannot be matched to one
patient's visit by its time. Rows older than the retention period (365 days by default) are
deleted when the store opens and once a day after that. The file is created 0600.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from netboard.errors import Problem

#: Days a card or feedback row is kept (``--feedback-retention-days``).
DEFAULT_RETENTION_DAYS = 365
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: ``PRAGMA user_version`` of the current layout; 0 is the first one (second-level times,
#: the override display kept).
_LAYOUT = 2

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
    override_display     TEXT,  -- no longer filled (free text), kept for old files
    had_comment          INTEGER NOT NULL,
    outcome_timestamp    TEXT NOT NULL,
    received_at          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_card ON feedback (card);
CREATE INDEX IF NOT EXISTS cards_issued ON cards (issued_at);
CREATE INDEX IF NOT EXISTS feedback_received ON feedback (received_at);
"""

#: Bring a file of the first layout to this one: times to the day, no override display.
_MIGRATE = """
UPDATE cards SET issued_at = substr(issued_at, 1, 10);
UPDATE feedback SET outcome_timestamp = substr(outcome_timestamp, 1, 10),
                    received_at = substr(received_at, 1, 10),
                    override_display = NULL;
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
    had_comment: bool
    #: The outcome's day (UTC), ``YYYY-MM-DD``.
    outcome_day: str


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def _day_of(stamp: str) -> str | None:
    """The UTC day of an ISO 8601 instant (a bare date is taken as it is); None if invalid."""
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.date().isoformat()


def _uuid(value: Any, where: str, problems: list[Problem]) -> str | None:
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        problems.append(Problem(where, "expected the UUID the service gave (8-4-4-4-12 hex)"))
        return None
    return value.lower()


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
    from netboard.service.cds_hooks import OVERRIDE_REASONS, OVERRIDE_SYSTEM

    offered = {code for code, _ in OVERRIDE_REASONS}
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
        card = _uuid(entry.get("card"), f"{w}.card", problems)
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
        day = _day_of(stamp) if stamp is not None and _is_instant(stamp) else None
        accepted: list[str] = []
        raw_accepted = entry.get("acceptedSuggestions", [])
        if not isinstance(raw_accepted, list):
            problems.append(Problem(f"{w}.acceptedSuggestions", "expected a list"))
        else:
            for j, s in enumerate(raw_accepted):
                sid = _uuid(
                    s.get("id") if isinstance(s, Mapping) else None,
                    f"{w}.acceptedSuggestions[{j}].id",
                    problems,
                )
                if sid is not None:
                    accepted.append(sid)
        system = code = None
        had_comment = False
        reason = entry.get("overrideReason")
        if reason is not None:
            if not isinstance(reason, Mapping):
                problems.append(Problem(f"{w}.overrideReason", "expected an object"))
            else:
                coding = reason.get("reason")
                where = f"{w}.overrideReason.reason"
                if coding is not None and not isinstance(coding, Mapping):
                    problems.append(Problem(where, "expected a Coding"))
                elif coding is not None:
                    # Only the codes the card offered: a code is never free text.
                    system, code = coding.get("system"), coding.get("code")
                    if system != OVERRIDE_SYSTEM:
                        problems.append(Problem(f"{where}.system", f"expected {OVERRIDE_SYSTEM}"))
                    elif code not in offered:
                        problems.append(
                            Problem(
                                f"{where}.code", f"expected one of: {', '.join(sorted(offered))}"
                            )
                        )
                    display = coding.get("display")
                    if display is not None and not isinstance(display, str):
                        problems.append(Problem(f"{where}.display", "expected a string"))
                comment = reason.get("userComment")
                if comment is not None and not isinstance(comment, str):
                    problems.append(Problem(f"{w}.overrideReason.userComment", "expected a string"))
                had_comment = bool(isinstance(comment, str) and comment.strip())
        if outcome == "overridden" and accepted:
            problems.append(
                Problem(f"{w}.acceptedSuggestions", "an overridden card accepts no suggestion")
            )
        # CDS Hooks 2.0 Feedback: acceptedSuggestions is "Required for accepted outcomes".
        if outcome == "accepted" and "acceptedSuggestions" not in entry:
            problems.append(Problem(f"{w}.acceptedSuggestions", "required for an accepted outcome"))
        if reason is not None and outcome == "accepted":
            problems.append(Problem(f"{w}.overrideReason", "only an overridden card has one"))
        if len(problems) == before and card is not None and day is not None:
            items.append(
                FeedbackItem(
                    card=card,
                    outcome=str(outcome),
                    accepted_suggestions=tuple(accepted),
                    override_system=system if isinstance(system, str) else None,
                    override_code=code if isinstance(code, str) else None,
                    had_comment=had_comment,
                    outcome_day=day,
                )
            )
    if problems:
        raise CaseError(problems)
    return items


class FeedbackStore:
    """The SQLite file of issued cards and feedback (thread-safe, one connection, 0600)."""

    def __init__(self, path: str | Path, *, retention_days: int = DEFAULT_RETENTION_DAYS) -> None:
        from netboard.service.storage import private_sqlite

        self.path = str(path)
        self.retention_days = retention_days
        self._lock = threading.Lock()
        self._db = private_sqlite(self.path)
        self._purged_on: str | None = None
        with self._lock:
            (layout,) = self._db.execute("PRAGMA user_version").fetchone()
            old = self._db.execute(
                "SELECT count(*) FROM sqlite_master WHERE name = 'cards'"
            ).fetchone()[0]
            self._db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            if old and layout < _LAYOUT:
                for statement in _MIGRATE.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {_LAYOUT}")
            self._db.execute("COMMIT")
        self.purge()

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def purge(self, today: date | None = None) -> int:
        """Delete cards and feedback older than the retention period; return the rows gone."""
        day = today or datetime.now(UTC).date()
        cutoff = (day - timedelta(days=self.retention_days)).isoformat()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            gone = self._db.execute("DELETE FROM feedback WHERE received_at < ?", (cutoff,))
            n = gone.rowcount
            n += self._db.execute("DELETE FROM cards WHERE issued_at < ?", (cutoff,)).rowcount
            self._db.execute("COMMIT")
            self._purged_on = day.isoformat()
        return int(n)

    def _purge_daily(self) -> None:
        if self._purged_on != _today():
            self.purge()

    def record_cards(self, service: str, kb_version: str, cards: Iterable[IssuedCard]) -> None:
        """Remember the cards just sent (no patient data; the day only)."""
        self._purge_daily()
        today = _today()
        rows = [
            (c.uuid, service, c.kind, " ".join(c.codes), " ".join(c.rule_ids), kb_version, today)
            for c in cards
        ]
        with self._lock:
            self._db.executemany("INSERT OR IGNORE INTO cards VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def record_feedback(self, service: str, items: Sequence[FeedbackItem]) -> None:
        """Store feedback entries; a card may get feedback more than once."""
        self._purge_daily()
        today = _today()
        rows = [
            (
                f.card,
                service,
                f.outcome,
                " ".join(f.accepted_suggestions),
                f.override_system,
                f.override_code,
                None,
                int(f.had_comment),
                f.outcome_day,
                today,
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
