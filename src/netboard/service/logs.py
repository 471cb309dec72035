"""The service's logs: one access line per request, timestamps and request ids everywhere.

``netboard serve`` configures logging with :func:`log_config` (in the supervisor and in every
uvicorn worker): each line has a UTC timestamp, the level, the logger and, inside a request,
the request's id. ``--log-format json`` writes one JSON object per line instead (for a log
shipper). :class:`AccessLog`, the outermost ASGI middleware, logs each request once it is
answered, on the logger ``netboard.access``:

* the method, the route *template* (``/reports/{token}``, never the token; ``-`` for a path
  that matched no route), the status, the milliseconds, the request id (a client's
  ``X-Request-ID`` when it is a plain token, else a new one; sent back in the response) and the
  rule ids that fired when an answer was made;
* never a query string, a body, a header value, a client address, a patient value or a token.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "REQUEST_ID",
    "AccessLog",
    "JsonFormatter",
    "RequestIdFilter",
    "TextFormatter",
    "log_config",
]

access_log = logging.getLogger("netboard.access")

#: The id of the request being answered (None outside a request).
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "netboard_request_id", default=None
)
_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _name(record: logging.LogRecord) -> str:
    # uvicorn logs its ordinary start and stop lines on "uvicorn.error".
    return "uvicorn" if record.name == "uvicorn.error" else record.name


def _timestamp(record: logging.LogRecord) -> str:
    moment = dt.datetime.fromtimestamp(record.created, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class RequestIdFilter(logging.Filter):
    """Gives every record the current request id (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get() or "-"
        return True


class TextFormatter(logging.Formatter):
    """``2026-11-22T10:00:00.123Z INFO netboard.access [3f2a...] message``."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        rid = getattr(record, "request_id", "-")
        where = f" [{rid}]" if rid and rid != "-" else ""
        return f"{_timestamp(record)} {record.levelname} {_name(record)}{where} {text}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, ``request_id``
    and, on access lines, ``method``, ``route``, ``status``, ``ms`` and ``rules``."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": _name(record),
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", "-")
        if rid and rid != "-":
            data["request_id"] = rid
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            data.update(access)
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def log_config(fmt: str = "text", level: str = "INFO") -> dict[str, Any]:
    """The ``logging.config.dictConfig`` of ``netboard serve`` (uvicorn's loggers included).

    Args:
        fmt: ``text`` or ``json``.
        level: the level of netboard's and uvicorn's loggers.
    """
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": "netboard",
        "filters": ["request_id"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": f"{__name__}.RequestIdFilter"}},
        "formatters": {"netboard": {"()": f"{formatter.__module__}.{formatter.__name__}"}},
        "handlers": {"netboard": handler},
        "loggers": {
            "netboard": {"handlers": ["netboard"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["netboard"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            # Requests are logged once, by AccessLog, without addresses or query strings.
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
        },
    }


def _rules(scope: Scope) -> list[str]:
    state = scope.get("state")
    raw = state.get("rules") if isinstance(state, dict) else None
    if not raw or not isinstance(raw, str) or raw.startswith("-"):
        return []
    return [r for r in raw.split(",") if r]


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "-"


class AccessLog:
    """Log every HTTP request once it is answered (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _CLIENT_ID.fullmatch(given) else secrets.token_hex(8)
        token = REQUEST_ID.set(rid)
        start = time.perf_counter()
        status = [500]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
                headers = [
                    (k, v) for k, v in message.get("headers") or [] if k.lower() != b"x-request-id"
                ]
                headers.append((b"x-request-id", rid.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            ms = (time.perf_counter() - start) * 1000
            method = str(scope.get("method", "-"))
            route = _route(scope)
            rules = _rules(scope)
            text = f"{method} {route} {status[0]} {ms:.1f} ms"
            if rules:
                text += " rules=" + ",".join(rules)
            access_log.info(
                text,
                extra={
                    "request_id": rid,
                    "access": {
                        "method": method,
                        "route": route,
                        "status": status[0],
                        "ms": round(ms, 1),
                        "rules": rules,
                    },
                },
            )
            REQUEST_ID.reset(token)
