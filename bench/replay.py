"""The JWT replay cache (SQLite, shared by workers): milliseconds per token as it fills.

    python bench/replay.py [--fill 60000] [--probe 2000]

The issue-12 review measured 0.3 ms per token on an empty cache and 2.5 ms at 60,000 entries
(a ``count(*)`` and an unindexed expiry scan on every token). Each check now uses the
indexes (jti hash, expiry) and a per-issuer counter kept by triggers: the time per token
should not grow with the fill. Prints one line per fill level; speed is measured here, not in
the tests (which check the query plans instead).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from netboard.service.security import SqliteReplayCache


def per_token_ms(cache: SqliteReplayCache, prefix: str, count: int, now: float) -> float:
    started = time.perf_counter()
    for n in range(count):
        cache.add("https://ehr.example.org", f"{prefix}-{n}", until=now + 3600, now=now)
    return (time.perf_counter() - started) * 1000 / count


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fill", type=int, default=60_000)
    parser.add_argument("--probe", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = SqliteReplayCache(str(Path(tmp) / "replay.sqlite3"), 1_000_000)
        now = 1_000_000.0
        print(f"empty: {per_token_ms(cache, 'a', args.probe, now):.3f} ms per token")
        filled = args.probe
        step = max(1, args.fill // 3)
        while filled < args.fill:
            per_token_ms(cache, f"f{filled}", min(step, args.fill - filled), now)
            filled = len(cache)
            ms = per_token_ms(cache, f"p{filled}", args.probe, now)
            print(f"{filled:>7} entries: {ms:.3f} ms per token")
            filled = len(cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
