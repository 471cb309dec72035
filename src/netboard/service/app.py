"""The HTTP application: contract routes, CDS Hooks 2.0 and the web page, on FastAPI.

``create_app(Settings(...))`` builds it; ``netboard serve`` runs it on uvicorn. Every route
answers from the same engine and knowledge base as the command line. Bodies are read as raw
bytes and validated by ``load_case`` (not by a second schema), so the problems a client gets
are the CLI's, one per field. The OpenAPI document still describes the bodies, generated from
the same contract field specs.

Errors: 422 ``{"problems": [{"field", "message"}]}`` for a bad body, 413 over the size limit,
415 for a body that is not declared JSON, 408 for a body that does not arrive in time,
404/405 from the router, a bare 401 for a bad token, 412 when a hook cannot get its FHIR data,
and a generic 500 whose details go only to the server log.

The engine (parsing, ``recommend``, rendering) and the SQLite files run in a thread pool, so
a large request never stalls the event loop (``/healthz`` answers meanwhile). Every response
carries a Content-Security-Policy and the nosniff, frame and referrer headers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from netboard import __version__
from netboard.case import MAX_CASE_BYTES, case_json_schema, load_case
from netboard.documents import parse_json
from netboard.errors import CaseError, ConfigError, Problem, display_field
from netboard.service import cds_hooks
from netboard.vocab import CONTRACT_VERSION

if TYPE_CHECKING:
    from netboard.answer import Answer
    from netboard.fhir import FhirCase
    from netboard.kb import KnowledgeBase
    from netboard.service.feedback import FeedbackStore
    from netboard.service.security import Claims, TokenVerifier
    from netboard.service.storage import ReportStore

log = logging.getLogger("netboard.service")

MAX_BODY_BYTES = MAX_CASE_BYTES
MAX_TEXT_BYTES = 100_000
#: Largest CDS Hooks call: a real chart's prefetch runs to tens of MB (a Synthea oncology
#: patient sends 1.2 MB of Conditions, medications and procedures before any Observation).
MAX_HOOK_BODY_BYTES = 32_000_000


@dataclass(frozen=True, slots=True)
class Settings:
    """How the service runs (``netboard serve`` options)."""

    kb_path: str | None = None
    #: The public base URL clients call (for JWT ``aud`` and card links); required with a
    #: trust file; without one, links use the address of the socket (never the Host header).
    public_url: str | None = None
    #: The trust file of allowed issuers (``--trust``); without one, hook calls are not
    #: authenticated and ``netboard serve`` binds to loopback only.
    trust_file: str | None = None
    #: A ready verifier (tests); takes precedence over ``trust_file``.
    verifier: TokenVerifier | None = None
    #: Where the feedback, replay and report files live (``--data-dir``); default
    #: ``$XDG_DATA_HOME/netboard`` (``storage.default_data_dir``).
    data_dir: str | None = None
    #: The feedback file (``--feedback-db``); default ``DATA_DIR/feedback.sqlite3``.
    #: ``:memory:`` without a data directory keeps every store in memory (tests).
    feedback_db: str | None = None
    feedback_retention_days: int = 365
    #: FHIR servers hook calls may name when there is no trust file (``--fhir-server``);
    #: with one, each issuer's ``fhir_servers`` apply instead.
    fhir_servers: tuple[str, ...] = ()
    fhir_timeout_seconds: float = 5.0
    max_body_bytes: int = MAX_BODY_BYTES
    #: Seconds a client has to send a request body (``--client-timeout``), else 408.
    body_timeout_seconds: float = 15.0
    report_ttl_seconds: float = 3600.0
    #: Report links kept at most (rows of ``reports.sqlite3``, all workers together).
    report_capacity: int = 50_000
    #: Answers kept by request body (``POST /v1/recommend``); 0 turns the cache off.
    answer_cache_size: int = 512
    #: Body limit of the CDS Hooks routes (``/cds-services/...``): real prefetch is large.
    max_hook_body_bytes: int = MAX_HOOK_BODY_BYTES
    #: Browser origins allowed to call the CDS Hooks routes (CORS), e.g. the CDS Hooks
    #: sandbox ``https://sandbox.cds-hooks.org``; empty: no CORS headers.
    cors_origins: tuple[str, ...] = ()

    def file(self, name: str) -> str:
        """The path of one of the service's SQLite files (``:memory:`` in memory mode)."""
        if self.data_dir is None and self.feedback_db == ":memory:":
            return ":memory:"
        if name == "feedback.sqlite3" and self.feedback_db is not None:
            return self.feedback_db
        from netboard.service.storage import default_data_dir

        folder = Path(self.data_dir) if self.data_dir is not None else default_data_dir()
        return str(folder / name)


# --- small parts ---------------------------------------------------------------------------


def problems_response(problems: Any, status: int = 422) -> JSONResponse:
    """The contract's error body: one ``{field, message}`` per problem.

    Field names are shown with invisible and look-alike characters escaped
    (``errors.display_field``), so a key with a Cyrillic a (U+0430) cannot pass for
    ``primary_site``.
    """
    return JSONResponse(
        {"problems": [{"field": display_field(p.field), "message": p.message} for p in problems]},
        status_code=status,
    )


#: The routes whose body is JSON: anything else is refused with 415 before it is read, so a
#: cross-site "simple" POST (text/plain, a form) cannot reach them.
JSON_ROUTES = frozenset(
    {
        "/v1/recommend",
        "/v1/ask",
        f"/cds-services/{cds_hooks.SERVICE_ID}",
        f"/cds-services/{cds_hooks.SERVICE_ID}/feedback",
    }
)

#: The page, the reports and the JSON answers: no script, no plugin, no framing, nothing
#: loaded from elsewhere; the report's own inline style only.
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
#: The interactive API page (Swagger UI at /docs): its script and style come from this server
#: (the fastapi-offline wheel ships them), never from a CDN.
CSP_DOCS = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


def _is_json_type(value: str) -> bool:
    kind = value.split(";")[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


class RequestGuard:
    """Before any route: security headers on every response; for bodies, 415 unless a JSON
    route is sent JSON, 413 over the limit and 408 unless the body arrives within
    ``timeout`` seconds. The body is read here, once, and replayed to the app.

    ``prefixes`` gives other body limits by path prefix (the CDS Hooks routes take real
    prefetch).
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        timeout: float,
        prefixes: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout
        self.prefixes = dict(prefixes or {})

    def limit_for(self, path: str) -> int:
        """The body limit of a request path."""
        return next((n for p, n in self.prefixes.items() if path.startswith(p)), self.limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        root = str(scope.get("root_path") or "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        policy = (CSP_DOCS if path == "/docs" else CSP).encode()

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in _SECURITY_HEADERS if k not in names]
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", policy))
                if scope.get("method") == "POST" and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))  # answers hold patient data
                message = {**message, "headers": headers}
            await send(message)

        headers = dict(scope.get("headers") or [])
        if scope.get("method") == "POST" and path in JSON_ROUTES:
            declared_type = headers.get(b"content-type", b"").decode("latin-1")
            if not _is_json_type(declared_type):
                shown = declared_type or "none"
                problem = Problem("Content-Type", f"expected application/json, got {shown[:60]!r}")
                await problems_response([problem], 415)(scope, receive, guarded_send)
                return
        limit = self.limit_for(path)
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, guarded_send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        break
                    size += len(message.get("body", b""))
                    if size > limit:
                        await self._refuse(scope, receive, guarded_send, limit)
                        return
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            late = Problem("(body)", f"not received within {self.timeout:g} s")
            response = problems_response([late], 408)
            response.headers["connection"] = "close"
            await response(scope, receive, guarded_send)
            return
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, guarded_send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problems_response([Problem("(body)", f"larger than {limit} bytes")], status=413)
        await response(scope, receive, send)


K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """A small least-recently-used map (``capacity`` 0 keeps nothing)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The value, marked as recently used; None when absent."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> V:
        """Keep ``value`` (dropping the least recently used beyond capacity); return it."""
        if self.capacity > 0:
            with self._lock:
                self._items[key] = value
                while len(self._items) > self.capacity:
                    self._items.popitem(last=False)
        return value


def report_record(kb_version: str, read: FhirCase) -> dict[str, Any]:
    """What a report link keeps (JSON): the mapped case, what the record says about the
    neoplasm, the items not used, and the knowledge-base version it was answered with."""
    from dataclasses import asdict

    return {
        "kb": kb_version,
        "case": read.case,
        "neoplasm": read.neoplasm.value,
        "neoplasm_detail": read.neoplasm_detail,
        "unmapped": [asdict(u) for u in read.unmapped],
    }


def fhir_case_of(record: Mapping[str, Any]) -> FhirCase:
    """The FHIR reading behind a report link, rebuilt from ``report_record``."""
    from netboard.fhir.model import FhirCase, Unmapped
    from netboard.vocab import Neoplasm

    return FhirCase(
        case=dict(record["case"]),
        unmapped=[Unmapped(**u) for u in record.get("unmapped", ())],
        neoplasm=Neoplasm(record.get("neoplasm", Neoplasm.NEUROENDOCRINE.value)),
        neoplasm_detail=str(record.get("neoplasm_detail", "")),
    )


def _wants(request: Request) -> str:
    """The report format the Accept header asks for: json (default), markdown or html."""
    accept = request.headers.get("accept", "")
    for part in accept.split(","):
        kind = part.split(";")[0].strip().lower()
        if kind == "text/html":
            return "html"
        if kind == "text/markdown":
            return "markdown"
        if kind in ("application/json", "*/*", "application/*"):
            return "json"
    return "json"


async def _json_body(request: Request) -> Any:
    return _parse_body(await request.body())


def _parse_body(raw: bytes) -> Any:
    if not raw.strip():
        raise CaseError([Problem("(body)", "empty body: expected a JSON object")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CaseError([Problem("(body)", "not UTF-8 text")]) from None
    if not text.lstrip().startswith("{"):
        raise CaseError([Problem("(body)", "expected a JSON object")])
    return parse_json(text, source="(body)")


def _base_url(request: Request, settings: Settings) -> str:
    """The base of card and report links: ``--public-url``, else the socket the request came
    in on, never the ``Host`` header (which the client chooses)."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    server = request.scope.get("server")
    root = str(request.scope.get("root_path") or "").rstrip("/")
    if not server:
        return "http://127.0.0.1" + root
    host, port = server[0], server[1]
    host = f"[{host}]" if ":" in str(host) else str(host)
    scheme = str(request.scope.get("scheme", "http"))
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "") + root


def _json(data: Any, status: int = 200) -> Response:
    """A JSON response (orjson: the answer JSON is most of a request's cost)."""
    import orjson

    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _rules(answer: Answer) -> str:
    return ",".join(sorted({r.rule_id for r in answer.recommendations}))


# --- OpenAPI fragments ---------------------------------------------------------------------

_PROBLEMS_SCHEMA = {
    "type": "object",
    "required": ["problems"],
    "properties": {
        "problems": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        }
    },
}
_ANSWER_SCHEMA = {
    "type": "object",
    "required": [
        "contract_version",
        "knowledge_base",
        "summary",
        "classification",
        "recommendations",
        "alerts",
        "eligibility",
        "monitoring",
        "missing_information",
        "references",
    ],
}


def cross_field_rules() -> list[tuple[str, str]]:
    """What ``load_case`` refuses beyond the JSON Schema: (field, rule) from the field
    registry's ``consistency`` list (``kb/fields.yaml``), for the OpenAPI document."""
    from netboard.fields import registry

    out = []
    for rule in registry().consistency:
        if rule.requires is not None:
            other, words = rule.requires
            given = (
                "given"
                if rule.value is None
                else ("not empty" if rule.value == "nonempty" else json.dumps(rule.value))
            )
            text = f"when {given}, {other} must be unknown or one of: {', '.join(words)}"
        else:
            text = f"each item must also be listed in {rule.within}"
        out.append((rule.field, text))
    return out


def _cross_field_text() -> str:
    rules = "; ".join(f"`{field}`: {text}" for field, text in cross_field_rules())
    return "Rules across fields (a breach is a 422 naming the field): " + rules


def _json_content(description: str, body: Mapping[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": body}}}


def _not_found_doc(what: str) -> dict[str, Any]:
    return _json_content(what, {"type": "object"})


def _method_doc(allowed: str) -> dict[str, Any]:
    return {
        "description": f"method not allowed: the `Allow` header lists {allowed}",
        "headers": {"Allow": {"schema": {"type": "string", "example": allowed}}},
    }


def _json_body_doc(
    schema: Mapping[str, Any], *, extra: Mapping[str, Any] | None = None, allow: str = "POST"
) -> Any:
    responses: dict[str, Any] = {
        "200": _json_content("the answer", _ANSWER_SCHEMA),
        "405": _method_doc(allow),
        "408": _json_content("the body did not arrive in time", _PROBLEMS_SCHEMA),
        "413": _json_content("body larger than the limit (1 MB)", _PROBLEMS_SCHEMA),
        "415": _json_content("the body is not declared application/json", _PROBLEMS_SCHEMA),
        "422": _json_content("the problems, one per field", _PROBLEMS_SCHEMA),
    }
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {**responses, **(extra or {})},
    }


def _document_errors(app: FastAPI) -> None:
    """Add to the OpenAPI document what the router answers on its own: 404 and 405/Allow."""
    build = app.openapi
    done: list[bool] = []

    def openapi() -> dict[str, Any]:
        doc = build()
        if done:
            return doc
        for ops in doc.get("paths", {}).values():
            allowed = ", ".join(sorted(m.upper() for m in ops if m != "parameters"))
            for op in ops.values():
                if isinstance(op, dict) and "responses" in op:
                    op["responses"].setdefault("405", _method_doc(allowed))
        doc.setdefault("components", {}).setdefault("responses", {})["NotFound"] = {
            "description": "no such route (any path not listed here): 404 with a JSON body"
        }
        done.append(True)
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


# --- the app -------------------------------------------------------------------------------


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the HTTP application (the knowledge base is loaded and checked here)."""
    from dataclasses import replace

    from netboard.kb import load_kb
    from netboard.service.feedback import FeedbackStore
    from netboard.service.security import fhir_server_problems
    from netboard.service.storage import ReportStore

    settings = settings or Settings()
    if settings.verifier is None and settings.trust_file is not None:
        from netboard.service.security import TokenVerifier, TrustStore

        # One replay cache for all worker processes: a SQLite file in the data directory.
        verifier = TokenVerifier(
            TrustStore.from_file(settings.trust_file), replay_db=settings.file("replay.sqlite3")
        )
        settings = replace(settings, verifier=verifier)
    if settings.verifier is not None:
        if settings.fhir_servers:
            raise ConfigError(
                [
                    Problem(
                        "--fhir-server",
                        "not with --trust: list fhir_servers per issuer in the trust file",
                    )
                ]
            )
        if not settings.public_url:
            # Links built from the Host header would follow whatever the caller sent.
            raise ConfigError(
                [
                    Problem(
                        "--public-url",
                        "required with --trust: card and report links are built from it, "
                        "never from the request's Host header",
                    )
                ]
            )
    if settings.fhir_servers:
        allowed, problems = fhir_server_problems(list(settings.fhir_servers), "--fhir-server")
        if problems:
            raise ConfigError(problems)
        settings = replace(settings, fhir_servers=tuple(sorted(allowed)))
    kb = load_kb(settings.kb_path)
    feedback: FeedbackStore = FeedbackStore(
        settings.file("feedback.sqlite3"), retention_days=settings.feedback_retention_days
    )
    reports = ReportStore(
        settings.file("reports.sqlite3"),
        ttl=settings.report_ttl_seconds,
        capacity=settings.report_capacity,
    )
    app = FastAPI(
        servers=[{"url": settings.public_url.rstrip("/")}] if settings.public_url else None,
        docs_url=None,  # served by _add_docs_routes, from the package, with no CDN
        redoc_url=None,
        title="netboard",
        version=__version__,
        summary="Guideline-based decision support for metastatic neuroendocrine neoplasms",
        description=(
            f"Knowledge base {kb.version} (released {kb.released}), contract {CONTRACT_VERSION}. "
            "Decision support for health professionals; every statement carries its sources."
        ),
    )
    app.state.kb = kb
    app.state.settings = settings
    app.state.feedback = feedback
    app.state.reports = reports
    app.add_middleware(
        RequestGuard,
        limit=settings.max_body_bytes,
        timeout=settings.body_timeout_seconds,
        prefixes={"/cds-services": settings.max_hook_body_bytes},
    )
    _add_cors(app, settings)
    from netboard.service.logs import AccessLog

    app.add_middleware(AccessLog)  # outermost: every request is logged, refused ones too
    _document_errors(app)

    @app.exception_handler(404)
    async def not_found(request: Request, exc: Exception) -> Response:
        return problems_response([Problem("(route)", "no such route")], 404)

    @app.exception_handler(CaseError)
    async def case_error(request: Request, exc: CaseError) -> JSONResponse:
        return problems_response(exc.problems)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            Problem(".".join(str(x) for x in e.get("loc", ()) if x != "body") or "(body)", e["msg"])
            for e in exc.errors()
        ]
        return problems_response(problems)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the server log (code lines only); the client gets no details.
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return problems_response(
            [Problem("(server)", "internal error; the server log has the details")], 500
        )

    answers = ReportStore(
        settings.file("answers.sqlite3"),
        ttl=settings.report_ttl_seconds,
        capacity=settings.report_capacity,
    )
    app.state.answers = answers
    _add_core_routes(app, kb, settings, reports)
    _add_page_routes(app, kb, answers)
    _add_docs_routes(app)
    _add_cds_routes(app, kb, settings, feedback, reports)
    _document_security(app)
    return app


#: The OpenAPI security scheme of the CDS Hooks routes (a JWT from a trusted CDS client).
SECURITY_SCHEME = {
    "cdsHooksJwt": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "CDS Hooks 2.0 client JWT (asymmetric signature, iss/kid from the trust "
        "file, aud = this service's URL); required when the server runs with --trust.",
    }
}


def _document_security(app: FastAPI) -> None:
    """Add the security scheme to the OpenAPI document (the routes name it)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        doc = build()
        doc.setdefault("components", {}).setdefault("securitySchemes", {}).update(SECURITY_SCHEME)
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


SETTINGS_ENV = "NETBOARD_SERVE_SETTINGS"


def app_from_env() -> FastAPI:
    """The app factory uvicorn's workers call: settings from ``NETBOARD_SERVE_SETTINGS``.

    In a worker of ``--workers N`` this also starts watching the supervisor, so that the
    worker stops when the supervisor dies (``server.watch_supervisor``).
    """
    import os

    from netboard.service.server import watch_supervisor

    watch_supervisor()
    raw = json.loads(os.environ.get(SETTINGS_ENV, "{}"))
    for key in ("fhir_servers", "cors_origins"):
        if key in raw:
            raw[key] = tuple(raw[key])
    return create_app(Settings(**raw))


def _add_core_routes(
    app: FastAPI, kb: KnowledgeBase, settings: Settings, reports: ReportStore
) -> None:
    import hashlib

    import orjson

    from netboard.engine.recommend import recommend
    from netboard.reports import generated_now, render

    answers: Lru[bytes, tuple[Answer, bytes, str]] = Lru(settings.answer_cache_size)

    @app.get("/healthz", response_class=PlainTextResponse, summary="200 when ready")
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    @app.post(
        "/v1/recommend",
        summary="Answer a structured case",
        description="Answer JSON by default; the report with `Accept: text/markdown` or "
        "`text/html`. The body must be sent as `application/json`. " + _cross_field_text() + ".",
        openapi_extra=_json_body_doc(case_json_schema()),
    )
    async def recommend_route(request: Request) -> Response:
        raw = await request.body()
        fmt = _wants(request)

        # The engine is deterministic: the same body always gives the same answer, so the
        # last answers are kept by a digest of the exact bytes (not of the parsed case, which
        # would merge 8 and 8.0). A JSON answer already kept is sent from the event loop.
        key = hashlib.blake2b(raw, digest_size=16).digest()
        kept = answers.get(key)
        if kept is not None and fmt == "json":
            request.state.rules = kept[2]
            return Response(kept[1], media_type="application/json")

        def answer_of() -> tuple[tuple[Answer, bytes, str], str | None]:
            hit = answers.get(key)
            if hit is None:
                answer = recommend(load_case(_parse_body(raw)), kb=kb)
                hit = answers.put(key, (answer, orjson.dumps(answer.to_dict()), _rules(answer)))
            text = None
            if fmt != "json":
                text = render(hit[0], fmt, labels=kb.labels, generated=generated_now())
            return hit, text

        # The engine runs in the thread pool: a large case never stalls the event loop.
        (_, data, request.state.rules), text = await run_in_threadpool(answer_of)
        if text is None:
            return Response(data, media_type="application/json")
        media = "text/html" if fmt == "html" else "text/markdown"
        return Response(text, media_type=f"{media}; charset=utf-8")

    ask_schema = {
        "type": "object",
        "required": ["text"],
        "additionalProperties": False,
        "properties": {"text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_BYTES}},
    }

    @app.post(
        "/v1/ask",
        summary="Answer free text (a note or a question)",
        description="The answer JSON with `parsed_case` and `unparsed`; Markdown with "
        "`Accept: text/markdown`. The body must be sent as `application/json`.",
        openapi_extra=_json_body_doc(ask_schema),
    )
    async def ask_route(request: Request) -> Response:
        from netboard.parse.ask import ask

        raw = await request.body()
        markdown = _wants(request) == "markdown"

        def answer_of() -> tuple[str, bytes | str]:
            body = _parse_body(raw)
            problems = [Problem(str(k), "unknown field") for k in body if k != "text"]
            text = body.get("text")
            if not isinstance(text, str) or not text.strip():
                problems.append(Problem("text", "expected a non-empty string"))
            elif len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
                problems.append(Problem("text", f"larger than {MAX_TEXT_BYTES} bytes"))
            if problems:
                raise CaseError(problems)
            result = ask(text, kb)
            if markdown:
                out: str | bytes = result.markdown(generated=generated_now())
            else:
                out = orjson.dumps(result.to_dict())
            return _rules(result.answer), out

        request.state.rules, out = await run_in_threadpool(answer_of)
        if isinstance(out, str):
            return Response(out, media_type="text/markdown; charset=utf-8")
        return Response(out, media_type="application/json")

    @app.get(
        "/reports/{token}",
        response_class=HTMLResponse,
        summary="A report linked from a card",
        responses={
            404: {"description": "the link is unknown or has expired (after one hour)"},
            410: {"description": "the report was made with another knowledge-base version"},
        },
    )
    async def report(request: Request, token: str) -> Response:
        def page_of() -> tuple[int, str]:
            record = reports.get(token)
            if record is None:
                return 404, "This report link is unknown or has expired.\n"
            if record.get("kb") != kb.version:
                return 410, (
                    f"This report was made with knowledge base {record.get('kb')}; the "
                    f"service now runs {kb.version}. Open the patient's chart again.\n"
                )
            read = fhir_case_of(record)
            answer = recommend(
                load_case(read.case),
                kb=kb,
                neoplasm=read.neoplasm,
                neoplasm_detail=read.neoplasm_detail,
            )
            html = render(answer, "html", labels=kb.labels, generated=generated_now())
            from netboard.fhir.report import scope_section, unmapped_section

            html = scope_section(html, answer.scope.applies, answer.scope.reason, "html")
            request.state.rules = _rules(answer)
            return 200, unmapped_section(html, read, "html")

        status, text = await run_in_threadpool(page_of)
        if status != 200:
            return PlainTextResponse(text, status, headers={"Cache-Control": "no-store"})
        return HTMLResponse(text, headers={"Cache-Control": "no-store"})

    @app.get("/about", summary="Source attributes of the decision support")
    async def about(request: Request) -> Response:
        data = {
            "name": "netboard",
            "version": __version__,
            "knowledge_base": {"version": kb.version, "released": kb.released},
            "contract_version": CONTRACT_VERSION,
            "bibliographic_citations": list(kb.covers),
            **kb.about,
        }
        if _wants(request) == "html":
            from netboard.service.page import about_page

            return HTMLResponse(about_page(data))
        return JSONResponse(data)


def _add_page_routes(app: FastAPI, kb: KnowledgeBase, answers: ReportStore) -> None:
    """The web page: the form at ``/``; a submission is kept behind a short-lived link and
    the browser is sent there (POST, redirect, GET), so that an answer has its own address,
    a reload does not post again, and no patient value is ever in a URL or a log."""
    from fastapi.responses import RedirectResponse

    from netboard.reports import generated_now

    @app.get("/", response_class=HTMLResponse, summary="The web page")
    async def page(request: Request) -> HTMLResponse:
        from netboard.service.page import form_page

        return HTMLResponse(await run_in_threadpool(form_page, kb))

    @app.post(
        "/",
        response_class=HTMLResponse,
        summary="Submit the web page's form",
        responses={
            303: {"description": "accepted: the answer is at the Location (/answers/TOKEN)"},
            422: {"description": "the form again, each problem named beside its field"},
        },
    )
    async def page_submit(request: Request) -> Response:
        from urllib.parse import parse_qs

        from netboard.service.page import answer_page, check, form_page

        raw = await request.body()
        try:
            form = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            problem = Problem("(form)", "the form data is not UTF-8 text")
            return HTMLResponse(form_page(kb, problems=[problem]), status_code=422)
        checked = await run_in_threadpool(check, form, kb)
        if checked.record is None:
            return HTMLResponse(checked.html, status_code=checked.status)
        record = {**checked.record, "kb": kb.version, "generated": generated_now()}
        token = await run_in_threadpool(answers.put, record)
        if token is None:  # too large to keep: answered here, without its own address
            shown = await run_in_threadpool(answer_page, kb, record, generated=record["generated"])
            request.state.rules = shown.rules
            return HTMLResponse(shown.html, status_code=shown.status)
        root = str(request.scope.get("root_path") or "").rstrip("/")
        return RedirectResponse(f"{root}/answers/{token}", status_code=303)

    @app.get(
        "/answers/{token}",
        response_class=HTMLResponse,
        summary="The answer to a submission of the web page",
        responses={
            404: {"description": "the link is unknown or has expired (after one hour)"},
            410: {"description": "the answer was made with another knowledge-base version"},
        },
    )
    async def page_answer(request: Request, token: str) -> Response:
        from netboard.service.page import answer_page, expired_page

        headers = {"Cache-Control": "no-store"}
        record = await run_in_threadpool(answers.get, token)
        if record is None:
            return HTMLResponse(expired_page(kb), status_code=404, headers=headers)
        if record.get("kb") != kb.version:
            return PlainTextResponse(
                f"This answer was made with knowledge base {record.get('kb')}; the service "
                f"now runs {kb.version}. Ask again from the page.\n",
                410,
                headers=headers,
            )
        generated = str(record.get("generated") or "") or None
        shown = await run_in_threadpool(answer_page, kb, record, generated=generated)
        request.state.rules = shown.rules
        return HTMLResponse(shown.html, status_code=shown.status, headers=headers)


#: The files of Swagger UI that /docs loads (from the fastapi-offline wheel).
_DOCS_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}


def _add_docs_routes(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) with its assets served from the package, so that it works on a
    hospital network with no internet access. (ReDoc is not offered: its page fetches its
    logo from the vendor's CDN.)"""
    from fastapi.openapi.docs import get_swagger_ui_html

    assets: dict[str, bytes] = {}

    def asset(name: str) -> bytes | None:
        if name not in assets:
            from importlib import resources

            try:
                folder = resources.files("fastapi_offline") / "static"
                assets[name] = (folder / name).read_bytes()
            except (ImportError, OSError):
                return None
        return assets[name]

    def base(request: Request) -> str:
        return str(request.scope.get("root_path") or "").rstrip("/")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = base(request)
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json",
            title="netboard API",
            swagger_js_url=f"{root}/docs/assets/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs/assets/swagger-ui.css",
            swagger_favicon_url=f"{root}/docs/assets/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/docs/assets/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        media = _DOCS_ASSETS.get(name)
        data = await run_in_threadpool(asset, name) if media else None
        if media is None or data is None:
            return problems_response([Problem("(route)", "no such route")], 404)
        return Response(data, media_type=media, headers={"Cache-Control": "public, max-age=86400"})


def _add_cds_routes(
    app: FastAPI,
    kb: KnowledgeBase,
    settings: Settings,
    feedback: FeedbackStore,
    reports: ReportStore,
) -> None:
    from netboard.engine.recommend import recommend
    from netboard.fhir import case_from_fhir, prefetch_templates, resources_from
    from netboard.service.security import AuthError, check_request

    templates = prefetch_templates(kb)
    orders = cds_hooks.orders(kb)

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError) -> Response:
        log.warning("401 on %s: %s", request.url.path, exc.reason)
        return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})

    async def guard(request: Request) -> Claims | None:
        if settings.verifier is not None:
            return await check_request(request, settings.verifier, settings.public_url)
        return None

    def allowed_servers(claims: Claims | None) -> frozenset[str]:
        """The FHIR servers this caller may have the service fetch from."""
        if settings.verifier is None:
            return frozenset(settings.fhir_servers)
        assert claims is not None
        issuer = settings.verifier.trust.issuers.get(claims.iss)
        return issuer.fhir_servers if issuer is not None else frozenset()

    # With a trust file every CDS Hooks route needs the client's JWT; without, none does.
    security: dict[str, Any] = (
        {"security": [{"cdsHooksJwt": []}]} if settings.verifier is not None else {}
    )

    @app.get("/cds-services", summary="CDS Hooks discovery", openapi_extra=security)
    async def discovery(request: Request) -> JSONResponse:
        await guard(request)
        return JSONResponse(cds_hooks.discovery(kb, templates))

    hook_schema = {
        "type": "object",
        "required": ["hook", "hookInstance", "context"],
        "properties": {
            "hook": {"type": "string", "enum": [cds_hooks.HOOK]},
            "hookInstance": {"type": "string"},
            "fhirServer": {
                "type": "string",
                "description": "fetched from only when on the caller's allowlist "
                "(the issuer's fhir_servers in the trust file, or --fhir-server)",
            },
            "fhirAuthorization": {"type": "object"},
            "context": {
                "type": "object",
                "required": ["userId", "patientId"],
                "properties": {"userId": {"type": "string"}, "patientId": {"type": "string"}},
            },
            "prefetch": {"type": "object"},
        },
    }

    @app.post(
        f"/cds-services/{cds_hooks.SERVICE_ID}",
        summary="CDS Hooks patient-view: the NET plan as cards",
        description="The prefetch, completed from an allowlisted `fhirServer`. Rules across "
        "fields: `fhirAuthorization` only with `fhirServer`; `fhirAuthorization.token_type` "
        "is Bearer.",
        openapi_extra={
            **_json_body_doc(
                hook_schema,
                extra={
                    "200": {
                        "description": "CDS Hooks cards (none without a neuroendocrine neoplasm)",
                        "content": {"application/json": {"schema": cds_hooks.RESPONSE_SCHEMA}},
                    },
                    "401": {"description": "missing or invalid JWT (only with a trust file)"},
                    "412": {
                        "description": "the FHIR data cannot be obtained (no prefetch, and no "
                        "allowlisted fhirServer that answered)",
                        "content": {
                            "application/json": {"schema": cds_hooks.OPERATION_OUTCOME_SCHEMA}
                        },
                    },
                },
            ),
            **security,
        },
    )
    async def hook(request: Request) -> Response:
        claims = await guard(request)
        raw = await request.body()
        call = cds_hooks.parse_hook_request(await run_in_threadpool(_parse_body, raw))
        prefetch, notes = await _gather(call, templates, settings, allowed_servers(claims))
        if prefetch is None:
            return JSONResponse(
                {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {
                            "severity": "error",
                            "code": "required",
                            "diagnostics": "; ".join(notes),
                        }
                    ],
                },
                status_code=412,
            )
        base = _base_url(request, settings)

        def cards_of(data: dict[str, Any]) -> tuple[dict[str, Any], str]:
            resources = resources_from(data)
            mapped = case_from_fhir(resources, kb=kb, patient_id=call.patient_id)
            if not mapped.answers:
                # No neuroendocrine neoplasm in this chart: patient-view runs on every chart,
                # and a plan for a patient without a NEN is noise (docs/service.md "The NEN
                # gate").
                return {"cards": []}, f"-(neoplasm {mapped.neoplasm.value})"
            case = load_case(mapped.case)
            answer = recommend(
                case, kb=kb, neoplasm=mapped.neoplasm, neoplasm_detail=mapped.neoplasm_detail
            )
            # Every worker can open the link: it lives in the shared reports file.
            token = reports.put(report_record(kb.version, mapped))
            cards, issued = cds_hooks.build_cards(
                answer,
                kb,
                base_url=base,
                report_url=f"{base}/reports/{token}" if token else None,
                fhir=mapped,
                notes=notes,
                orders=orders,
                patient_id=call.patient_id,
            )
            feedback.record_cards(cds_hooks.SERVICE_ID, kb.version, issued)
            return {"cards": cards}, _rules(answer)

        body, request.state.rules = await run_in_threadpool(cards_of, prefetch)
        return _json(body)

    @app.post(
        f"/cds-services/{cds_hooks.SERVICE_ID}/feedback",
        summary="CDS Hooks feedback: accepted or overridden cards",
        description="Rules across fields: `card` and suggestion ids are the UUIDs the service "
        "issued; an overridden card accepts no suggestion; `overrideReason.reason` is one of "
        "the card's `overrideReasons`. `userComment` is never stored.",
        openapi_extra={
            **_json_body_doc(
                {
                    "type": "object",
                    "required": ["feedback"],
                    "properties": {"feedback": {"type": "array", "items": {"type": "object"}}},
                },
                extra={"200": {"description": "recorded"}},
            ),
            **security,
        },
    )
    async def feedback_route(request: Request) -> Response:
        from netboard.service.feedback import parse_feedback

        await guard(request)
        raw = await request.body()

        def store() -> None:
            items = parse_feedback(_parse_body(raw))
            feedback.record_feedback(cds_hooks.SERVICE_ID, items)

        await run_in_threadpool(store)
        return JSONResponse({})


async def _gather(
    call: cds_hooks.HookRequest,
    templates: Mapping[str, str],
    settings: Settings,
    allowed: frozenset[str],
) -> tuple[dict[str, Any] | None, list[str]]:
    """The prefetch, completed from ``fhirServer`` where keys are absent or failed.

    A key the EHR left out, or filled with an OperationOutcome (its prefetch query failed), is
    fetched from ``fhirServer``, but only when that server is on ``allowed`` (normalised base
    URLs); otherwise nothing is fetched and the reason is a note. Returns the data and notes
    for the missing-data card, or None (and the reasons) when the required keys cannot be
    had: the caller answers 412.
    """
    from netboard.service.security import fhir_base

    data: dict[str, Any] = dict(call.prefetch)
    notes: list[str] = []
    failed = cds_hooks.failed_prefetch(data)
    for key in failed:
        del data[key]
    absent = [k for k in templates if k not in data]
    refused = False
    if absent and call.fhir_server is not None:
        if fhir_base(call.fhir_server) not in allowed:
            refused = True
            log.warning("fhirServer not on the allowlist: nothing fetched")
            notes.append(
                "fhirServer is not on this client's allowlist of FHIR servers, so nothing "
                "was fetched (see docs/security.md: fhir_servers)"
            )
        else:
            from netboard.service.fhir_client import fetch_prefetch

            fetched, errors = await fetch_prefetch(
                call.fhir_server,
                {k: templates[k] for k in absent},
                call.context,
                call.access_token,
                timeout=settings.fhir_timeout_seconds,
            )
            data.update(fetched)
            notes.extend(errors)
            absent = [k for k in templates if k not in data]
    unfetched = {k: why for k, why in failed.items() if k not in data}
    lacking = [k for k in cds_hooks.REQUIRED_PREFETCH if k in absent]
    if lacking:
        if refused:
            how = "fhirServer is not allowed"
        elif call.fhir_server:
            how = "could not be fetched"
        else:
            how = "no fhirServer was given"
        said = [f"the EHR's prefetch {k} failed: {unfetched[k]}" for k in lacking if k in unfetched]
        return None, [f"prefetch {', '.join(lacking)} missing and {how}", *said, *notes]
    for k in absent:
        if k in unfetched:
            notes.append(f"The EHR could not give the record's {k} ({unfetched[k]}).")
        else:
            notes.append(f"The record's {k} were not provided to netboard.")
    return data, notes


def origin_problems(origins: Any) -> list[str]:
    """Why each ``--cors-origin`` is not an origin (scheme://host[:port], or ``*``).

    >>> origin_problems(["https://sandbox.cds-hooks.org", "*"])
    []
    >>> len(origin_problems(["https://x.org/path", "ftp://x.org"]))
    2
    """
    from urllib.parse import urlsplit

    out = []
    for origin in origins or ():
        if origin == "*":
            continue
        parts = urlsplit(str(origin))
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path
            or parts.query
            or parts.fragment
            or parts.username
        ):
            out.append(
                f"--cors-origin {origin}: expected an origin such as "
                "https://sandbox.cds-hooks.org (scheme, host and port only)"
            )
    return out


def _add_cors(app: FastAPI, settings: Settings) -> None:
    """CORS for the allowed browser origins (the CDS Hooks sandbox calls from a browser)."""
    if not settings.cors_origins:
        return
    from starlette.middleware.cors import CORSMiddleware

    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
