"""The ``netboard`` command line (contract v1).

Exit status: 0 an answer was given; 2 the input is unusable (one line per
problem on standard error, nothing on standard output).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from netboard import __version__

if TYPE_CHECKING:
    from netboard.fhir import FhirCase

EXIT_OK = 0
EXIT_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one clean line instead of usage noise on bad arguments."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"netboard: {message} (see 'netboard --help')\n")
        raise SystemExit(EXIT_INPUT)


def _version_text() -> str:
    from netboard.kb import load_kb
    from netboard.vocab import CONTRACT_VERSION

    kb = load_kb()
    return (
        f"netboard {__version__}\n"
        f"knowledge base {kb.version} (released {kb.released})\n"
        f"contract {CONTRACT_VERSION}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="netboard",
        description="Guideline-based decision support for metastatic neuroendocrine neoplasms.",
    )
    parser.add_argument(
        "--version", action="store_true", help="print package, knowledge base and contract versions"
    )
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    rec = sub.add_parser(
        "recommend",
        help="answer a structured case (JSON or YAML file, or - for stdin) or a FHIR R4 bundle",
    )
    rec.add_argument("case", nargs="?", help="case file (JSON or YAML), or - for standard input")
    rec.add_argument(
        "--fhir",
        metavar="BUNDLE",
        help="read the case from FHIR R4 JSON (Bundle, resource list or CDS Hooks prefetch)",
    )
    rec.add_argument(
        "--patient", metavar="ID", help="with --fhir: read only this patient's resources"
    )
    rec.add_argument("--format", choices=["json", "markdown", "html"], default="markdown")
    rec.add_argument(
        "--kb", help="use the knowledge base in this directory instead of the packaged one"
    )

    ask = sub.add_parser("ask", help="answer a free-text question or clinical note (- for stdin)")
    ask.add_argument("text", help="the question or note, or - to read it from standard input")
    ask.add_argument("--format", choices=["json", "markdown"], default="markdown")
    ask.add_argument("--case-out", help="also write the parsed case to this YAML file")
    ask.add_argument(
        "--kb", help="use the knowledge base in this directory instead of the packaged one"
    )

    serve = sub.add_parser(
        "serve", help="run the HTTP API, the CDS Hooks service and the web page (needs [service])"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--trust", help="trust file of allowed CDS clients (JWT issuers and keys); see docs"
    )
    serve.add_argument(
        "--public-url", help="base URL clients use (JWT audience, card links), e.g. https://cds.x"
    )
    serve.add_argument(
        "--feedback-db",
        default="netboard-feedback.sqlite3",
        help="SQLite file for CDS Hooks feedback (default ./netboard-feedback.sqlite3)",
    )
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument(
        "--kb", help="use the knowledge base in this directory instead of the packaged one"
    )

    kb = sub.add_parser("kb", help="knowledge-base tools")
    kb_sub = kb.add_subparsers(dest="kb_command", parser_class=_Parser)
    check = kb_sub.add_parser("check", help="check the knowledge base and print its statistics")
    check.add_argument(
        "path", nargs="?", help="knowledge-base directory (default: the packaged one)"
    )
    comp = kb_sub.add_parser("compile", help="write compiled.json (the start-up snapshot) for a KB")
    comp.add_argument("path", help="knowledge-base directory, e.g. src/netboard/kb")
    return parser


def _problems(problems: Sequence[object]) -> int:
    for p in problems:
        sys.stderr.write(f"{p}\n")
    return EXIT_INPUT


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    from netboard.errors import CaseError, KnowledgeBaseError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.version:
            sys.stdout.write(_version_text() + "\n")
            return EXIT_OK
        if args.command == "recommend":
            return _recommend(args)
        if args.command == "ask":
            from netboard.parse.ask import run_ask

            return run_ask(args)
        if args.command == "serve":
            return _serve(args)
        if args.command == "kb" and args.kb_command == "check":
            return _kb_check(args.path)
        if args.command == "kb" and args.kb_command == "compile":
            return _kb_compile(args.path)
    except CaseError as exc:
        return _problems(exc.problems)
    except KnowledgeBaseError as exc:
        return _problems(exc.problems)
    except KeyboardInterrupt:  # pragma: no cover
        return 130
    needed = (
        "a knowledge-base command (check, compile)"
        if args.command == "kb"
        else ("a command (recommend, ask, serve, kb)")
    )
    sys.stderr.write(f"netboard: {needed} is needed (see 'netboard --help')\n")
    return EXIT_INPUT


def _recommend(args: argparse.Namespace) -> int:
    from netboard.case import load_case, read_case
    from netboard.engine.recommend import recommend
    from netboard.kb import load_kb
    from netboard.render import render

    if (args.case is None) == (args.fhir is None):
        sys.stderr.write(
            "netboard: give exactly one of CASE or --fhir BUNDLE (see 'netboard --help')\n"
        )
        return EXIT_INPUT
    if args.patient is not None and args.fhir is None:
        sys.stderr.write("netboard: --patient is for --fhir (see 'netboard --help')\n")
        return EXIT_INPUT
    kb = load_kb(args.kb)
    if args.fhir is None:
        case = read_case(args.case)
        sys.stdout.write(render(recommend(case, kb=kb), args.format, labels=kb.labels))
        return EXIT_OK
    from netboard.fhir import read_fhir

    read = read_fhir(args.fhir, kb=kb, patient_id=args.patient)
    answer = recommend(load_case(read.case), kb=kb)
    if args.format == "json":
        import json

        data = answer.to_dict()
        data["fhir"] = read.report()
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return EXIT_OK
    text = render(answer, args.format, labels=kb.labels)
    sys.stdout.write(_with_unmapped(text, read, args.format))
    return EXIT_OK


def _with_unmapped(text: str, read: FhirCase, fmt: str) -> str:
    """The report with a closing section listing the FHIR input that was not used."""
    if not read.unmapped:
        return text
    if fmt == "markdown":
        rows = "".join(
            f"| {_md_cell(u.resource)} | {_md_cell(u.code)} | {_md_cell(u.reason)} |\n"
            for u in read.unmapped
        )
        section = "\n## FHIR input not used\n\n| Resource | Code | Why |\n|---|---|---|\n" + rows
        return text.rstrip("\n") + "\n" + section
    from html import escape

    items = "".join(
        f"<li><code>{escape(u.resource)}</code> {escape(u.code)}: {escape(u.reason)}</li>\n"
        for u in read.unmapped
    )
    section = (
        '<section id="fhir-unmapped">\n<h2>FHIR input not used</h2>\n<ul>\n'
        + items
        + "</ul>\n</section>\n"
    )
    head, sep, tail = text.rpartition("</main>")
    return head + section + sep + tail if sep else text + section


def _md_cell(value: str) -> str:
    return " ".join(value.split()).replace("|", "\\|")


def _serve(args: argparse.Namespace) -> int:
    import json
    import os

    if not 1 <= args.port <= 65535:
        return _problems(["--port: expected a port number 1-65535"])
    if args.workers < 1:
        return _problems(["--workers: expected at least 1"])
    try:
        import uvicorn

        from netboard.service.app import SETTINGS_ENV
        from netboard.service.security import require_loopback_without_trust
    except ImportError as exc:
        return _problems(
            [
                f"serve: the service extra is not installed ({exc.name}); "
                "pip install 'netboard[service]'"
            ]
        )
    settings = {
        "kb_path": args.kb,
        "trust_file": args.trust,
        "public_url": args.public_url,
        "feedback_db": args.feedback_db,
    }
    # Check the settings (trust file, knowledge base) once here, so that a mistake is one
    # clean line instead of a failing worker.
    from netboard.errors import ProblemsError
    from netboard.service.app import Settings, create_app

    try:
        if args.trust is None:  # refuses a non-loopback address; warns loudly otherwise
            require_loopback_without_trust(args.host)
        create_app(Settings(**settings))
    except ProblemsError as exc:
        return _problems(exc.problems)
    os.environ[SETTINGS_ENV] = json.dumps(settings)
    sys.stderr.write(f"netboard: serving on http://{args.host}:{args.port}/ (Ctrl-C stops)\n")
    uvicorn.run(
        "netboard.service.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=False,
        log_level="info",
    )
    return EXIT_OK


def _kb_check(path: str | None) -> int:
    from netboard.kb import check_kb_dir

    kb, problems = check_kb_dir(path)
    if problems or kb is None:
        return _problems(problems)
    sys.stdout.write(
        f"knowledge base {kb.version} (released {kb.released}): OK\n"
        f"  {len(kb.references)} references, {len(kb.facts)} facts, {len(kb.rules)} rules, "
        f"{len(kb.alerts)} alerts, {len(kb.eligibility)} eligibility sets "
        f"({sum(len(e.criteria) for e in kb.eligibility)} criteria), {len(kb.dosing)} dosing "
        f"statements, {len(kb.monitoring)} monitoring items, "
        f"{len(kb.disagreements)} disagreements\n"
    )
    return EXIT_OK


def _kb_compile(path: str) -> int:
    from netboard.kb import check_kb_dir, compile_kb

    kb, problems = check_kb_dir(path)
    if problems or kb is None:
        return _problems(problems)
    sys.stdout.write(f"wrote {compile_kb(path)}\n")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
