"""Running the service on uvicorn with limits on what a client may hold or send.

``netboard serve`` runs uvicorn with ``GuardedH11Protocol`` (h11, which bounds the request
head) and these limits, per worker process:

- a request head (request line and headers) of at most ``max_header_bytes``: past it the
  client gets 431 and the connection is closed, before the rest is read;
- ``client_timeout`` seconds to send a request head, counted from the connection's opening
  or from the previous response (so a client dribbling one byte at a time is cut off), and as
  long again for the body (``app.py``), else 408;
- ``keep_alive`` seconds for an idle keep-alive connection (uvicorn's own timer);
- at most ``max_connections`` open connections (never more than the process's file
  descriptor limit allows): when a new one would pass it, the connection idle the longest is
  closed to make room, so idle connections can never lock other clients out; when none is
  idle, the new connection gets 503;
- a graceful stop: on SIGTERM the listening socket closes, requests in flight finish (up to
  ``graceful_timeout`` seconds) and are answered with ``Connection: close``, and an idle
  keep-alive connection is kept ``drain_seconds`` longer, so that a request already on its
  way is answered with ``Connection: close`` instead of finding the connection reset;
- worker processes watch their supervisor (``--workers`` > 1): if it dies, even by SIGKILL,
  they stop too (Linux ``PR_SET_PDEATHSIG``, and a thread that checks the parent process
  id on every platform), so no orphan keeps the port.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("netboard.service")

LIMITS_ENV = "NETBOARD_SERVE_LIMITS"
SUPERVISOR_ENV = "NETBOARD_SERVE_SUPERVISOR"
#: File descriptors kept free for the process's own files (SQLite, the KB, logs).
_RESERVED_FDS = 64


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client may hold or send (``netboard serve`` options; docs/service.md)."""

    max_header_bytes: int = 32_768
    client_timeout: float = 15.0
    keep_alive: int = 5
    max_connections: int = 1000
    graceful_timeout: int = 30
    drain_seconds: float = 1.0


def effective_max_connections(wanted: int) -> int:
    """``wanted``, lowered to what the file descriptor limit of this process leaves."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return wanted
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft - _RESERVED_FDS))


_limits: Limits | None = None


def current_limits() -> Limits:
    """The limits ``netboard serve`` set for this process (defaults otherwise)."""
    global _limits
    if _limits is None:
        raw = json.loads(os.environ.get(LIMITS_ENV, "{}"))
        found = Limits(**raw)
        _limits = Limits(
            **{**asdict(found), "max_connections": effective_max_connections(found.max_connections)}
        )
    return _limits


_CLOSE = (b"connection", b"close")


def _raw_response(status: int, reason: str) -> bytes:
    body = f"{reason}\n".encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class _BoundedConnection(h11.Connection):
    """h11 with the head size checked on complete heads too.

    h11's ``max_incomplete_event_size`` stops a head that is still arriving; a head that
    arrives whole in one read (up to uvicorn's read size) would pass it, so the size of each
    complete request head is checked here as well.
    """

    def __init__(self, max_head: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_head)
        self.max_head = max_head
        self.head_too_large = False

    def next_event(self) -> Any:
        event = super().next_event()
        if isinstance(event, h11.Request):
            size = len(event.method) + len(event.target) + 12
            size += sum(len(name) + len(value) + 4 for name, value in event.headers)
            if size > self.max_head:
                self.head_too_large = True
                raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
        return event


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a head timeout, a connection cap and a draining stop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = current_limits()
        self.conn = _BoundedConnection(self.limits.max_header_bytes)
        self._head_timer: Any = None
        self._drain_timer: Any = None
        self._draining = False
        self._last_active = time.monotonic()

    # --- connection cap ---------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        """Count the connection; make room by closing the longest-idle one when over the cap."""
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            log.warning("connection refused: %d open (limit)", len(self.connections) - 1)
            self.transport.write(_raw_response(503, "Service Unavailable"))
            self.transport.close()
            return
        self._arm_head_timer()

    def _waiting_for_head(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _make_room(self) -> bool:
        idle = [
            c
            for c in self.connections
            if c is not self and isinstance(c, GuardedH11Protocol) and c._waiting_for_head()
        ]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c._last_active)
        log.info("closing the longest-idle connection: %d open (limit)", len(self.connections))
        oldest._close()
        self.connections.discard(oldest)
        return True

    def _close(self) -> None:
        self._cancel_timers()
        if not self.transport.is_closing():
            with contextlib.suppress(h11.LocalProtocolError):
                self.conn.send(h11.ConnectionClosed())
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the timers, then let uvicorn clean up."""
        self._cancel_timers()
        super().connection_lost(exc)

    # --- slow or idle clients ---------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.limits.client_timeout, self._head_timeout)

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._waiting_for_head():
            return
        started = bool(self.conn.trailing_data[0])
        if started:  # a request was begun and not finished in time
            self.transport.write(_raw_response(408, "Request Timeout"))
        self._close()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._drain_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._drain_timer = None

    def data_received(self, data: bytes) -> None:
        """Note the activity, then parse."""
        self._last_active = time.monotonic()
        super().data_received(data)

    def handle_events(self) -> None:
        """Parse; a request head that is complete stops the head timer."""
        before = self.cycle
        super().handle_events()
        if self.cycle is not before and self.cycle is not None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            if self._draining:
                self._close_after_response()

    def on_response_complete(self) -> None:
        """The next request head must come within the client timeout."""
        self._last_active = time.monotonic()
        super().on_response_complete()
        if not self.transport.is_closing() and self._head_timer is None:
            self._arm_head_timer()

    def send_400_response(self, msg: str) -> None:
        """A head over the size limit is 431 (h11 stops buffering it); other errors 400."""
        too_large = isinstance(self.conn, _BoundedConnection) and self.conn.head_too_large
        if too_large or len(self.conn.trailing_data[0]) > self.limits.max_header_bytes:
            log.warning("request head over %d bytes refused", self.limits.max_header_bytes)
            self.transport.write(_raw_response(431, "Request Header Fields Too Large"))
            self.transport.close()
            return
        super().send_400_response(msg)

    # --- graceful stop ------------------------------------------------------------------------

    def _close_after_response(self) -> None:
        cycle = self.cycle
        if cycle is None:
            return
        cycle.keep_alive = False
        if not cycle.response_started:
            # Tell the client, so that it does not send its next request here.
            cycle.default_headers = [*cycle.default_headers, _CLOSE]

    def shutdown(self) -> None:
        """Stop after the request in flight; give an idle connection a short drain."""
        if not self._waiting_for_head():
            self._close_after_response()
            return
        if self._draining:
            return
        self._draining = True
        self._drain_timer = self.loop.call_later(self.limits.drain_seconds, self._drain_done)

    def _drain_done(self) -> None:
        self._drain_timer = None
        if self._waiting_for_head():
            self._close()


# --- worker processes watch their supervisor -------------------------------------------------


def watch_supervisor() -> None:
    """In a worker process of ``--workers N``: stop when the supervisor dies.

    Called from the app factory in each worker. ``PR_SET_PDEATHSIG`` (Linux) has the kernel
    send SIGTERM when the parent goes; a daemon thread also polls the parent process id
    (every platform, and a fallback), sends SIGTERM to this process once, and exits it hard
    if the graceful stop has not ended within the graceful timeout.
    """
    raw = os.environ.get(SUPERVISOR_ENV)
    if not raw or not raw.isdigit() or int(raw) == os.getpid():
        return
    supervisor = int(raw)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            pr_set_pdeathsig = 1
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    grace = current_limits().graceful_timeout + 5

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(0.5)
        log.warning("supervisor %d is gone: stopping worker %d", supervisor, os.getpid())
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace)
        os._exit(1)

    threading.Thread(target=watch, name="netboard-supervisor-watch", daemon=True).start()


def run(*, host: str, port: int, workers: int, limits: Limits, log_format: str = "text") -> None:
    """Run the app (settings already in the environment) on uvicorn with ``limits``.

    Every process logs through :func:`netboard.service.logs.log_config` (``log_format``
    text or json): timestamps and request ids on every line, one access line per request.
    """
    import uvicorn

    from netboard.service.logs import log_config

    os.environ[LIMITS_ENV] = json.dumps(asdict(limits))
    if workers > 1:
        os.environ[SUPERVISOR_ENV] = str(os.getpid())
    max_connections = effective_max_connections(limits.max_connections)
    uvicorn.run(
        "netboard.service.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http=GuardedH11Protocol,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        timeout_keep_alive=limits.keep_alive,
        # A backstop: the protocol already keeps connections (hence requests) under the cap.
        limit_concurrency=max_connections + 1,
        timeout_graceful_shutdown=limits.graceful_timeout,
        server_header=False,
        access_log=False,
        log_config=log_config(log_format),
        log_level="info",
    )
