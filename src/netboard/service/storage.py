"""Where the service keeps its files, and the report links every worker can open.

``netboard serve`` keeps three SQLite files in one data directory (``--data-dir``; default
``$XDG_DATA_HOME/netboard``, else ``~/.local/share/netboard``): ``feedback.sqlite3`` (issued
cards and feedback), ``replay.sqlite3`` (the JWT replay cache) and ``reports.sqlite3`` (the
report links of the cards). All worker processes share them. Each file, and SQLite's ``-wal``
and ``-shm`` files beside it, is created readable by its owner only (0600), and a directory
netboard creates is 0700.

``ReportStore`` keeps what a card's report link needs: the case the hook mapped from the
record and the knowledge-base version. The row is encrypted with a key derived from the
link's token, and stored under a hash of the token, so the file alone does not give the
reports away; it expires after ``ttl`` seconds (wall clock) and is deleted then, and the file
holds at most ``capacity`` rows (the soonest to expire go first when it is full).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import sqlite3
import stat
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("netboard.service")

DATA_DIR_ENV = "XDG_DATA_HOME"
#: Largest report row (compressed, encrypted); a larger case gets cards without a report link.
MAX_REPORT_BYTES = 256_000


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/netboard``, else ``~/.local/share/netboard`` (XDG base directories)."""
    base = os.environ.get(DATA_DIR_ENV, "").strip()
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"
    return root / "netboard"


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) readable by the owner only; keep existing ones."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another worker made it first
            folder.mkdir(mode=0o700)


def _owner_only(path: str) -> None:
    """Create ``path`` as 0600 if absent; take group/other rights away if present."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_IMODE(mode) & 0o077:
            os.fchmod(fd, stat.S_IMODE(mode) & 0o700)
    finally:
        os.close(fd)


def private_sqlite(path: str | Path) -> sqlite3.Connection:
    """A SQLite connection to a file only its owner can read (``:memory:`` passes through).

    The database is created 0600 before SQLite opens it; SQLite gives its ``-wal`` and
    ``-shm`` files the database file's mode. Existing files with wider rights are narrowed.
    """
    name = str(path)
    if name != ":memory:":
        ensure_private_dir(Path(name).parent)
        _owner_only(name)
        for extra in (name + "-wal", name + "-shm"):
            if os.path.exists(extra):
                _owner_only(extra)
    db = sqlite3.connect(name, check_same_thread=False, isolation_level=None, timeout=10)
    if name != ":memory:":
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA busy_timeout=10000")
    return db


_REPORTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    id       BLOB PRIMARY KEY,
    expires  REAL NOT NULL,
    data     BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reports_expires ON reports (expires);
CREATE TABLE IF NOT EXISTS report_count (one INTEGER PRIMARY KEY CHECK (one = 1), n INTEGER);
INSERT OR IGNORE INTO report_count VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS reports_added AFTER INSERT ON reports
    BEGIN UPDATE report_count SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS reports_removed AFTER DELETE ON reports
    BEGIN UPDATE report_count SET n = n - 1; END;
"""


def _derive(token: str, purpose: bytes, size: int) -> bytes:
    return hashlib.blake2b(token.encode("ascii"), digest_size=size, person=purpose).digest()


class ReportStore:
    """Report links in a SQLite file shared by every worker: a real expiry and a bound.

    ``put`` keeps a JSON-able record (the case and the knowledge-base version) and returns
    the link token; ``get`` gives the record back until it expires. Expired rows are deleted
    on every ``put`` through an index on the expiry time, and a row counter kept by triggers
    makes the capacity check cost the same at any size.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        ttl: float,
        capacity: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._clock = clock
        self._lock = threading.Lock()
        self._db = private_sqlite(path)
        with self._lock:
            self._db.executescript(_REPORTS_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def __len__(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT n FROM report_count").fetchone()
        return int(n)

    def put(self, record: Mapping[str, Any]) -> str | None:
        """Keep ``record`` for ``ttl`` seconds; return its token (None if it is too large)."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        token = secrets.token_urlsafe(24)
        plain = zlib.compress(json.dumps(record, separators=(",", ":")).encode("utf-8"))
        nonce = secrets.token_bytes(12)
        sealed = nonce + AESGCM(_derive(token, b"netboard-rkey", 32)).encrypt(nonce, plain, None)
        if len(sealed) > MAX_REPORT_BYTES:
            log.warning("report not kept: %d bytes (limit %d)", len(sealed), MAX_REPORT_BYTES)
            return None
        now = self._clock()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM reports WHERE expires < ?", (now,))
                (n,) = self._db.execute("SELECT n FROM report_count").fetchone()
                if n >= self.capacity:
                    # Full of live links: the ones closest to expiry make room.
                    self._db.execute(
                        "DELETE FROM reports WHERE id IN "
                        "(SELECT id FROM reports ORDER BY expires LIMIT ?)",
                        (n - self.capacity + 1,),
                    )
                self._db.execute(
                    "INSERT INTO reports VALUES (?, ?, ?)",
                    (_derive(token, b"netboard-rid", 16), now + self.ttl, sealed),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return token

    def get(self, token: str) -> dict[str, Any] | None:
        """The record behind ``token``, or None when unknown or expired."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not token.isascii() or not 16 <= len(token) <= 64:
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM reports WHERE id = ? AND expires >= ?",
                (_derive(token, b"netboard-rid", 16), self._clock()),
            ).fetchone()
        if row is None:
            return None
        sealed: bytes = row[0]
        try:
            plain = AESGCM(_derive(token, b"netboard-rkey", 32)).decrypt(
                sealed[:12], sealed[12:], None
            )
        except InvalidTag:
            return None
        record: dict[str, Any] = json.loads(zlib.decompress(plain))
        return record
