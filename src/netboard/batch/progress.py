"""The progress line of ``netboard audit`` on a terminal: rows done, rate, time left.

Shown only when standard error is a terminal and ``--quiet`` is not given, so logs, pipes and
CI output get the summary lines alone. It uses ``rich`` (part of the ``[audit]`` extra),
imported only when a progress line is shown; without it, a plain line is rewritten in place.
The line is removed when the audit ends, leaving the summary.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import IO, Any

__all__ = ["AuditProgress", "describe"]


def describe(done: int, total: int | None, rate: float, unit: str = "rows") -> str:
    """The progress words: rows done (of the total), rate and time left.

    Example:
        >>> describe(250_000, 1_000_000, 50_000.0)
        '250,000 of 1,000,000 rows (25 %), 50,000 rows/s, about 15 s left'
        >>> describe(1200, None, 0.0)
        '1,200 rows'
    """
    if total:
        parts = [f"{done:,} of {total:,} {unit} ({100 * done // total} %)"]
    else:
        parts = [f"{done:,} {unit}"]
    if rate > 0:
        parts.append(f"{rate:,.0f} {unit}/s")
        if total and total > done:
            parts.append(f"about {_duration((total - done) / rate)} left")
    return ", ".join(parts)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class AuditProgress:
    """A context manager that shows the audit's progress while ``enabled``.

    :meth:`update` takes the number of rows done so far; it may be called from any thread.
    """

    def __init__(
        self,
        total: int | None,
        *,
        enabled: bool,
        unit: str = "rows",
        stream: IO[str] | None = None,
    ) -> None:
        self.total = total if total else None
        self.enabled = enabled
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self._rich: Any = None
        self._task: Any = None
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._last_shown = 0.0
        self._plain_width = 0

    def __enter__(self) -> AuditProgress:
        if not self.enabled:
            return self
        self._start = time.monotonic()
        try:
            self._rich, self._task = _rich_progress(self.stream, self.total, self.unit)
        except ImportError:
            self._rich = None
            self._plain(0)
        return self

    def update(self, done: int) -> None:
        """Show that ``done`` rows are done."""
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.update(self._task, completed=done)
            return
        now = time.monotonic()
        if now - self._last_shown >= 0.25:
            self._plain(done)

    def _plain(self, done: int) -> None:
        with self._lock:
            elapsed = time.monotonic() - self._start
            rate = done / elapsed if elapsed > 0.5 and done else 0.0
            line = "netboard: audit: " + describe(done, self.total, rate, self.unit)
            pad = " " * max(0, self._plain_width - len(line))
            self.stream.write("\r" + line + pad)
            self.stream.flush()
            self._plain_width = len(line)
            self._last_shown = time.monotonic()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.stop()
        elif self._plain_width:
            self.stream.write("\r" + " " * self._plain_width + "\r")
            self.stream.flush()


def _rich_progress(stream: IO[str], total: int | None, unit: str) -> tuple[Any, Any]:
    """A started rich progress display on ``stream`` and its one task."""
    from rich.console import Console
    from rich.progress import Progress, ProgressColumn, Task, TextColumn
    from rich.text import Text

    class Words(ProgressColumn):
        """Rows done (of the total), rate and time left, in words."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed or 0.0
            words = describe(int(task.completed), total, speed, unit)
            return Text(words, no_wrap=True, overflow="ellipsis")

    # Words only, no bar: the line fits an 80-column terminal.
    progress = Progress(
        TextColumn("netboard: audit"),
        Words(),
        console=Console(file=stream, stderr=stream is sys.stderr),
        transient=True,
        refresh_per_second=4,
        speed_estimate_period=10.0,
    )
    task = progress.add_task("audit", total=total)
    progress.start()
    return progress, task
