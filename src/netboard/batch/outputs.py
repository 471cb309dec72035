"""Safe outputs for ``netboard audit``: never an input, always whole, never left behind.

* :func:`check_outputs` refuses an output that resolves to an input (the same file through a
  symlink, a hard link or another relative path), an output inside a FHIR export directory, two
  options naming one file, and a path that is a directory or whose folder is missing or not
  one (netboard creates no folders). It runs after the inputs are checked and before any
  output is opened.
* Every output is written to ``NAME.netboard-PID.partial`` beside it and renamed over NAME only
  when the run succeeded (:func:`partial_path`, :class:`AtomicText`); a failed or interrupted
  run removes its partial files.
* A killed run (SIGKILL) cannot clean up: :func:`remove_stale` removes, on the next start,
  partial files and temporary directories whose process is gone.
* :func:`stop_on_signals` turns SIGTERM and SIGHUP into :class:`Interrupted` (as Ctrl-C is a
  ``KeyboardInterrupt``), so the ``finally`` blocks that remove partial files run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import IO

from netboard.errors import Problem, ProblemsError

__all__ = [
    "AtomicText",
    "Interrupted",
    "OutputError",
    "check_outputs",
    "partial_path",
    "pid_alive",
    "remove_stale",
    "stop_on_signals",
]

_PARTIAL = re.compile(r"\.netboard-(\d+)\.partial$")


class OutputError(ProblemsError):
    """An output cannot be written (refused path, full disk, permission, ...)."""


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (SIGTERM, SIGHUP) or Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        """The signal's name, e.g. ``SIGTERM``."""
        return signal.Signals(self.signum).name


def cannot_write(path: str | Path, exc: OSError) -> OutputError:
    """The one-line error for an output that could not be written (the system's reason)."""
    return OutputError([Problem(str(path), f"cannot write: {os_reason(exc)}")])


def os_reason(exc: OSError) -> str:
    """The system's words for an OSError (Arrow's errors carry the errno in their text)."""
    if exc.errno:
        return os.strerror(exc.errno)
    m = re.search(r"\[errno (\d+)\]", str(exc))
    return os.strerror(int(m.group(1))) if m else str(exc)


def partial_path(path: Path) -> Path:
    """Where ``path`` is written until the run succeeds: ``NAME.netboard-PID.partial``."""
    return path.with_name(f"{path.name}.netboard-{os.getpid()}.partial")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs netboard (a reused pid running another program is not).

    >>> pid_alive(os.getpid())
    True
    """
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: the process exists, assume it is ours
    return b"netboard" in cmdline


def remove_stale(folder: Path, pattern: str, pid_of: re.Pattern[str]) -> list[Path]:
    """Remove entries of ``folder`` matching ``pattern`` whose process (``pid_of``) is gone."""
    removed: list[Path] = []
    try:
        entries = list(folder.glob(pattern))
    except OSError:
        return removed
    for entry in entries:
        m = pid_of.search(entry.name)
        if m is None or pid_alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    return removed


def remove_stale_partials(path: Path) -> list[Path]:
    """Partial files of ``path`` left by killed runs (``NAME.netboard-PID.partial``)."""
    return remove_stale(path.parent, f"{glob_escape(path.name)}.netboard-*.partial", _PARTIAL)


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters escaped."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def _same(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(
    outputs: Sequence[tuple[str, str | None]],
    *,
    inputs: Sequence[Path] = (),
    input_dirs: Sequence[Path] = (),
) -> dict[str, Path]:
    """Check output paths (``(option, path)``; None: not asked) against the inputs.

    Returns the paths by option. Removes partial files of earlier killed runs of these outputs.

    Raises:
        OutputError: one problem per refused output.
    """
    problems: list[Problem] = []
    chosen: dict[str, Path] = {}
    for option, raw in outputs:
        if raw is None:
            continue
        path = Path(raw)
        clash = next((str(i) for i in inputs if _same(path, i)), None)
        if raw == "" or raw.endswith(("/", os.sep)):
            problems.append(Problem(option, f"{raw!r} is not a file name"))
        elif clash is not None:
            problems.append(
                Problem(option, f"{raw} is the input {clash}: refusing to overwrite an input")
            )
        elif any(_inside(path, d) for d in input_dirs):
            problems.append(
                Problem(option, f"{raw} is inside the input directory: write it elsewhere")
            )
        elif path.is_dir():
            problems.append(Problem(option, f"{raw} is a directory, not a file"))
        elif not path.parent.exists():
            # A mistyped path must not build a tree of folders (once, one at /).
            problems.append(
                Problem(
                    option,
                    f"the folder {path.parent} does not exist (netboard creates no folders)",
                )
            )
        elif not path.parent.is_dir():
            problems.append(Problem(option, f"{path.parent} is not a directory"))
        else:
            other = next((o for o, p in chosen.items() if _same(path, p)), None)
            if other is not None:
                problems.append(Problem(option, f"{raw} is also the {other} file"))
            chosen[option] = path
    if problems:
        raise OutputError(problems)
    for path in chosen.values():
        remove_stale_partials(path)
    return chosen


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


class AtomicText:
    """A text output written to its partial file and moved into place by :meth:`commit`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = partial_path(path)
        try:
            self._fh: IO[str] | None = self.tmp.open("w", encoding="utf-8", newline="\n")
        except OSError as exc:
            raise cannot_write(path, exc) from None

    def write(self, text: str) -> None:
        """Append text."""
        assert self._fh is not None
        try:
            self._fh.write(text)
        except OSError as exc:
            raise cannot_write(self.path, exc) from None

    def commit(self) -> Path:
        """Flush to disk and rename over the destination."""
        assert self._fh is not None
        fh, self._fh = self._fh, None
        try:
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            os.replace(self.tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                fh.close()
            self.tmp.unlink(missing_ok=True)
            raise cannot_write(self.path, exc) from None
        return self.path

    def abort(self) -> None:
        """Drop the partial file."""
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None
        self.tmp.unlink(missing_ok=True)


def write_atomic(path: Path, text: str) -> Path:
    """Write a whole text file atomically (partial file, fsync, rename)."""
    out = AtomicText(path)
    try:
        out.write(text)
        return out.commit()
    except BaseException:
        out.abort()
        raise


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals(signals: Sequence[int] = (signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Within the block, the given signals raise :class:`Interrupted` in the main thread."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
