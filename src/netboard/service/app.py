"""The HTTP application: contract routes, CDS Hooks 2.0 and the web page, on FastAPI.

``create_app(Settings(...))`` builds it; ``netboard serve`` runs it on uvicorn. Every route
answers from the same engine and knowledge base as the command line. Bodies are read as raw
bytes and validated by ``load_case`` (not by a second schema), so the problems a client gets
are the CLI's, one per field. The OpenAPI document still describes the bodies, generated from
the same contract field specs.

Errors: 422 ``{"problems": [{"field", "message"}]}`` for a bad body, 413 over the size limit,
404/405 from the router, a bare 401 for a bad token, 412 when a hook cannot get its FHIR data,
and a generic 500 whose details go only to the server log.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from netboard import __version__
from netboard.case import MAX_CASE_BYTES, case_json_schema, load_case
from netboard.documents import parse_json
from netboard.errors import CaseError, Problem
from netboard.service import cds_hooks

if TYPE_CHECKING:
    from netboard.answer import Answer
    from netboard.fhir import FhirCase
    from netboard.kb import KnowledgeBase
    from netboard.service.feedback import FeedbackStore
    from netboard.service.security import TokenVerifier

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
    #: The public base URL clients call (for JWT ``aud`` and card links); default: from the
    #: request's Host header.
    public_url: str | None = None
    #: The trust file of allowed issuers (``--trust``); without one, hook calls are not
    #: authenticated and ``netboard serve`` binds to loopback only.
    trust_file: str | None = None
    #: A ready verifier (tests); takes precedence over ``trust_file``.
    verifier: TokenVerifier | None = None
    feedback_db: str = "netboard-feedback.sqlite3"
    fhir_timeout_seconds: float = 5.0
    max_body_bytes: int = MAX_BODY_BYTES
    report_ttl_seconds: float = 3600.0
    report_capacity: int = 1000
    #: Answers kept by request body (``POST /v1/recommend``); 0 turns the cache off.
    answer_cache_size: int = 512
    #: Body limit of the CDS Hooks routes (``/cds-services/...``): real prefetch is large.
    max_hook_body_bytes: int = MAX_HOOK_BODY_BYTES
    #: Browser origins allowed to call the CDS Hooks routes (CORS), e.g. the CDS Hooks
    #: sandbox ``https://sandbox.cds-hooks.org``; empty: no CORS headers.
    cors_origins: tuple[str, ...] = ()


# --- small parts ---------------------------------------------------------------------------


def problems_response(problems: Any, status: int = 422) -> JSONResponse:
    """The contract's error body: one ``{field, message}`` per problem."""
    return JSONResponse(
        {"problems": [{"field": p.field, "message": p.message} for p in problems]},
        status_code=status,
    )


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, before any parsing.

    ``prefixes`` gives other limits by path prefix (the CDS Hooks routes take real prefetch).
    """

    def __init__(self, app: ASGIApp, limit: int, prefixes: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.prefixes = dict(prefixes or {})

    def limit_for(self, path: str) -> int:
        """The body limit of a request path."""
        return next((n for p, n in self.prefixes.items() if path.startswith(p)), self.limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(str(scope.get("path", "")))
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit:
                await self._refuse(scope, receive, send, limit)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

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


class ReportStore:
    """Answers behind unguessable report links, kept in memory for a limited time.

    The card link of a CDS Hooks answer points here. The answer is kept, not its HTML: the
    report is rendered only when someone opens the link. Nothing is written to disk; an
    entry expires after ``ttl`` seconds, and the least recently used goes when ``capacity``
    is reached.
    """

    def __init__(self, ttl: float, capacity: int) -> None:
        self.ttl = ttl
        self._items: Lru[str, tuple[float, Answer, FhirCase | None]] = Lru(capacity)

    def put(self, answer: Answer, fhir: FhirCase | None = None) -> str:
        """Keep an answer (and the FHIR reading it came from); return its token."""
        token = secrets.token_urlsafe(18)
        self._items.put(token, (time.monotonic() + self.ttl, answer, fhir))
        return token

    def get(self, token: str) -> Answer | None:
        """The answer, or None when unknown or expired."""
        item = self._items.get(token)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1]

    def fhir(self, token: str) -> FhirCase | None:
        """The FHIR reading behind a report (its items not used), or None."""
        item = self._items.get(token)
        if item is None or item[0] < time.monotonic():
            return None
        return item[2]


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
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


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


def _json_body_doc(schema: Mapping[str, Any], *, extra: Mapping[str, Any] | None = None) -> Any:
    def json_content(description: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": body}}}

    responses: dict[str, Any] = {
        "200": json_content("the answer", _ANSWER_SCHEMA),
        "413": json_content("body larger than the limit (1 MB)", _PROBLEMS_SCHEMA),
        "422": json_content("the problems, one per field", _PROBLEMS_SCHEMA),
    }
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {**responses, **(extra or {})},
    }


# --- the app -------------------------------------------------------------------------------


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the HTTP application (the knowledge base is loaded and checked here)."""
    from netboard.kb import load_kb
    from netboard.service.feedback import FeedbackStore

    settings = settings or Settings()
    if settings.verifier is None and settings.trust_file is not None:
        from dataclasses import replace

        from netboard.service.security import TokenVerifier, TrustStore

        # One replay cache for all worker processes: a SQLite file beside the feedback file.
        replay = (
            ":memory:" if settings.feedback_db == ":memory:" else settings.feedback_db + ".replay"
        )
        verifier = TokenVerifier(TrustStore.from_file(settings.trust_file), replay_db=replay)
        settings = replace(settings, verifier=verifier)
    kb = load_kb(settings.kb_path)
    feedback: FeedbackStore = FeedbackStore(settings.feedback_db)
    reports = ReportStore(settings.report_ttl_seconds, settings.report_capacity)
    app = FastAPI(
        servers=[{"url": settings.public_url.rstrip("/")}] if settings.public_url else None,
        title="netboard",
        version=__version__,
        summary="Guideline-based decision support for metastatic neuroendocrine neoplasms",
        description=(
            f"Knowledge base {kb.version} (released {kb.released}), contract 1. "
            "Decision support for health professionals; every statement carries its sources."
        ),
    )
    app.state.kb = kb
    app.state.settings = settings
    app.state.feedback = feedback
    app.state.reports = reports
    app.add_middleware(
        BodyLimit,
        limit=settings.max_body_bytes,
        prefixes={"/cds-services": settings.max_hook_body_bytes},
    )
    _add_cors(app, settings)

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

    _add_core_routes(app, kb, settings, reports)
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
    """The app factory uvicorn's workers call: settings from ``NETBOARD_SERVE_SETTINGS``."""
    import os

    raw = json.loads(os.environ.get(SETTINGS_ENV, "{}"))
    return create_app(Settings(**raw))


def _timed(route: str) -> Callable[[Callable[..., Awaitable[Response]]], Any]:
    """Log each call: route, status, milliseconds and the rule ids set by the handler."""

    def wrap(fn: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
        import functools

        @functools.wraps(fn)
        async def inner(*args: Any, **kwargs: Any) -> Response:
            start = time.perf_counter()
            response = await fn(*args, **kwargs)
            request = kwargs.get("request") or args[0]
            log.info(
                "%s status=%d ms=%.2f rules=%s",
                route,
                response.status_code,
                (time.perf_counter() - start) * 1000,
                getattr(request.state, "rules", "-"),
            )
            return response

        return inner

    return wrap


def _add_core_routes(
    app: FastAPI, kb: KnowledgeBase, settings: Settings, reports: ReportStore
) -> None:
    import hashlib

    import orjson

    from netboard.engine.recommend import recommend
    from netboard.render import render

    answers: Lru[bytes, tuple[Answer, bytes, str]] = Lru(settings.answer_cache_size)

    @app.get("/healthz", response_class=PlainTextResponse, summary="200 when ready")
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    @app.post(
        "/v1/recommend",
        summary="Answer a structured case",
        description="Answer JSON by default; the report with `Accept: text/markdown` or "
        "`text/html`.",
        openapi_extra=_json_body_doc(case_json_schema()),
    )
    @_timed("/v1/recommend")
    async def recommend_route(request: Request) -> Response:
        raw = await request.body()
        # The engine is deterministic: the same body always gives the same answer, so the
        # last answers are kept by a digest of the exact bytes (not of the parsed case, which
        # would merge 8 and 8.0).
        key = hashlib.blake2b(raw, digest_size=16).digest()
        hit = answers.get(key)
        if hit is None:
            answer = recommend(load_case(_parse_body(raw)), kb=kb)
            hit = answers.put(key, (answer, orjson.dumps(answer.to_dict()), _rules(answer)))
        answer, data, request.state.rules = hit
        fmt = _wants(request)
        if fmt == "json":
            return Response(data, media_type="application/json")
        text = render(answer, fmt, labels=kb.labels)
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
        "`Accept: text/markdown`.",
        openapi_extra=_json_body_doc(ask_schema),
    )
    @_timed("/v1/ask")
    async def ask_route(request: Request) -> Response:
        from netboard.parse.ask import ask

        body = await _json_body(request)
        problems = [Problem(str(k), "unknown field") for k in body if k != "text"]
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            problems.append(Problem("text", "expected a non-empty string"))
        elif len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
            problems.append(Problem("text", f"larger than {MAX_TEXT_BYTES} bytes"))
        if problems:
            raise CaseError(problems)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise CaseError([Problem("text", "not valid UTF-8 text")]) from None
        result = ask(text, kb)
        request.state.rules = _rules(result.answer)
        if _wants(request) == "markdown":
            return Response(result.markdown(), media_type="text/markdown; charset=utf-8")
        return _json(result.to_dict())

    @app.get("/", response_class=HTMLResponse, summary="The web page")
    async def page(request: Request) -> HTMLResponse:
        from netboard.service.page import form_page

        return HTMLResponse(form_page(kb))

    @app.post("/", response_class=HTMLResponse, summary="Submit the web page's form")
    @_timed("/ (form)")
    async def page_submit(request: Request) -> Response:
        from urllib.parse import parse_qs

        from netboard.service.page import form_page, submit

        raw = await request.body()
        try:
            form = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            problem = Problem("(form)", "the form data is not UTF-8 text")
            return HTMLResponse(form_page(kb, problems=[problem]), status_code=422)
        status, html = submit(form, kb)
        return HTMLResponse(html, status_code=status)

    @app.get("/reports/{token}", response_class=HTMLResponse, summary="A report linked from a card")
    async def report(token: str) -> Response:
        answer = reports.get(token)
        if answer is None:
            return PlainTextResponse("This report link is unknown or has expired.\n", 404)
        html = render(answer, "html", labels=kb.labels)
        read = reports.fhir(token)
        if read is not None:
            from netboard.fhir.report import scope_section, unmapped_section

            html = scope_section(html, answer.scope.applies, answer.scope.reason, "html")
            html = unmapped_section(html, read, "html")
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    @app.get("/about", summary="Source attributes of the decision support")
    async def about(request: Request) -> Response:
        data = {
            "name": "netboard",
            "version": __version__,
            "knowledge_base": {"version": kb.version, "released": kb.released},
            "contract_version": "1",
            "bibliographic_citations": list(kb.covers),
            **kb.about,
        }
        if _wants(request) == "html":
            from netboard.service.page import about_page

            return HTMLResponse(about_page(data))
        return JSONResponse(data)


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

    async def guard(request: Request) -> None:
        if settings.verifier is not None:
            await check_request(request, settings.verifier, settings.public_url)

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
            "fhirServer": {"type": "string"},
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
                        "description": "the FHIR data cannot be obtained",
                        "content": {
                            "application/json": {"schema": cds_hooks.OPERATION_OUTCOME_SCHEMA}
                        },
                    },
                },
            ),
            **security,
        },
    )
    @_timed("/cds-services/netboard-net-plan")
    async def hook(request: Request) -> Response:
        await guard(request)
        call = cds_hooks.parse_hook_request(await _json_body(request))
        prefetch, notes = await _gather(call, templates, settings)
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
        resources = resources_from(prefetch)
        mapped = case_from_fhir(resources, kb=kb, patient_id=call.patient_id)
        if not mapped.answers:
            # No neuroendocrine neoplasm in this chart: patient-view runs on every chart, and
            # a plan for a patient without a NEN is noise (docs/service.md "The NEN gate").
            request.state.rules = f"-(neoplasm {mapped.neoplasm.value})"
            return _json({"cards": []})
        case = load_case(mapped.case)
        answer = recommend(
            case, kb=kb, neoplasm=mapped.neoplasm, neoplasm_detail=mapped.neoplasm_detail
        )
        request.state.rules = _rules(answer)
        base = _base_url(request, settings)
        token = reports.put(answer, mapped)
        cards, issued = cds_hooks.build_cards(
            answer,
            kb,
            base_url=base,
            report_url=f"{base}/reports/{token}",
            fhir=mapped,
            notes=notes,
            orders=orders,
            patient_id=call.patient_id,
        )
        feedback.record_cards(cds_hooks.SERVICE_ID, kb.version, issued)
        return _json({"cards": cards})

    @app.post(
        f"/cds-services/{cds_hooks.SERVICE_ID}/feedback",
        summary="CDS Hooks feedback: accepted or overridden cards",
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
    @_timed("/cds-services/netboard-net-plan/feedback")
    async def feedback_route(request: Request) -> Response:
        from netboard.service.feedback import parse_feedback

        await guard(request)
        items = parse_feedback(await _json_body(request))
        feedback.record_feedback(cds_hooks.SERVICE_ID, items)
        return JSONResponse({})


async def _gather(
    call: cds_hooks.HookRequest, templates: Mapping[str, str], settings: Settings
) -> tuple[dict[str, Any] | None, list[str]]:
    """The prefetch, completed from ``fhirServer`` where keys are absent or failed.

    A key the EHR left out, or filled with an OperationOutcome (its prefetch query failed), is
    fetched from ``fhirServer``. Returns the data and notes for the missing-data card, or None
    (and the reasons) when the required keys cannot be had: the caller answers 412.
    """
    data: dict[str, Any] = dict(call.prefetch)
    notes: list[str] = []
    failed = cds_hooks.failed_prefetch(data)
    for key in failed:
        del data[key]
    absent = [k for k in templates if k not in data]
    if absent and call.fhir_server is not None:
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
        how = "could not be fetched" if call.fhir_server else "no fhirServer was given"
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
