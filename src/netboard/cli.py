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
    import datetime as dt
    from pathlib import Path

    from netboard.answer import Answer
    from netboard.batch.fhir_ndjson import FhirStats
    from netboard.fhir import FhirCase

EXIT_OK = 0
EXIT_INPUT = 2


#: Every line netboard writes to standard error starts with this.
PREFIX = "netboard: "


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one clean line instead of usage noise on bad arguments."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{PREFIX}{message} (see '{self.prog} --help')\n")
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


def _add_kb_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kb",
        metavar="DIR",
        help="use the knowledge base in this directory instead of the packaged one",
    )


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


_REPORT_FORMATS = ("markdown", "json", "html")
_OUT_HELP = (
    "write the answer to this file instead of standard output (its folder must exist; "
    "the file is replaced whole)"
)


def build_parser() -> argparse.ArgumentParser:
    """The ``netboard`` argument parser, every subcommand with a description and examples."""
    parser = _Parser(
        prog="netboard",
        description="Guideline-based decision support for metastatic neuroendocrine neoplasms:"
        " a tumour board's answer (plan, presumptions, what-ifs), every statement cited.",
        epilog=_examples(
            "netboard recommend examples/sigmoid.yaml",
            'netboard ask "62M sigmoid NET G2 Ki67 8%, liver mets" --format json',
            "netboard serve",
            "netboard audit registry.parquet --out result.parquet --report audit.html",
            "netboard SUBCOMMAND --help",
        ),
    )
    parser.add_argument(
        "--version", action="store_true", help="print package, knowledge base and contract versions"
    )
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="SUBCOMMAND")

    rec = sub.add_parser(
        "recommend",
        help="answer a structured case (JSON or YAML file, or - for stdin) or a FHIR R4 bundle",
        description="Answer one case as a NET tumour board would: the plan, the presumptions "
        "it rests on, what changes if they are wrong, eligibility, alerts, doses, monitoring "
        "and references. Every field of the case is optional (contract: "
        "../shared/spec/contract.md). Bad input exits 2 with one line per problem.",
        epilog=_examples(
            "netboard recommend examples/sigmoid.yaml",
            "netboard recommend examples/sigmoid.json --format json",
            "netboard recommend examples/sigmoid.yaml --format html --out report.html",
            "cat examples/sigmoid.json | netboard recommend -",
            "netboard recommend --fhir examples/fhir/sigmoid.json --format json",
        ),
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
    rec.add_argument(
        "--format",
        choices=_REPORT_FORMATS,
        default="markdown",
        help="markdown (the report; the default), json (the contract answer) or html "
        "(a standalone, printable page)",
    )
    rec.add_argument("--out", metavar="FILE", help=_OUT_HELP)
    rec.add_argument(
        "--verbose",
        action="store_true",
        help="show rule ids and contract codes in the report (for review)",
    )
    _add_kb_option(rec)

    ask = sub.add_parser(
        "ask",
        help="answer a free-text question or clinical note (- for stdin)",
        description="Read a question or a pasted clinic note into a case and answer it as "
        "'recommend' would; the report opens with what was understood, word by word, and "
        "what was not used. A general question (no patient) is answered from the knowledge "
        "base's own statements.",
        epilog=_examples(
            'netboard ask "62M sigmoid NET G2 Ki67 8%, DOTATATE avid, bilobar liver mets"',
            "netboard ask - --case-out case.yaml < examples/note.txt",
            'netboard ask "how long to stop octreotide LAR before PRRT?"',
            "netboard ask - --format html --out answer.html < examples/note.txt",
        ),
    )
    ask.add_argument("text", help="the question or note, or - to read it from standard input")
    ask.add_argument(
        "--format",
        choices=_REPORT_FORMATS,
        default="markdown",
        help="markdown (the default), json (the answer with parsed_case and unparsed) or "
        "html (a standalone page)",
    )
    ask.add_argument("--out", metavar="FILE", help=_OUT_HELP)
    ask.add_argument(
        "--case-out", metavar="FILE", help="also write the parsed case to this YAML file"
    )
    ask.add_argument(
        "--verbose",
        action="store_true",
        help="show rule ids and contract codes in the report (for review)",
    )
    _add_kb_option(ask)

    serve = sub.add_parser(
        "serve",
        help="run the HTTP API, the CDS Hooks service and the web page (needs [service])",
        description="Run the web page, the /v1 API and the CDS Hooks service on uvicorn. "
        "Without --trust it listens on loopback only and says loudly that hook calls are "
        "unauthenticated. Each request is logged (route, status, time, request id, rule ids; "
        "never patient values or tokens). Details: docs/service.md.",
        epilog=_examples(
            "netboard serve",
            "netboard serve --port 8080 --log-format json",
            "netboard serve --host 0.0.0.0 --trust examples/trust.yaml "
            "--public-url https://cds.example.org --workers 2",
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--trust", metavar="FILE", help="trust file of allowed CDS clients (JWT issuers and keys)"
    )
    serve.add_argument(
        "--public-url",
        metavar="URL",
        help="base URL clients use (JWT audience, card links), e.g. https://cds.x; "
        "required with --trust",
    )
    serve.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder of the feedback, replay and report files, created 0700 "
        "(default $XDG_DATA_HOME/netboard, else ~/.local/share/netboard)",
    )
    serve.add_argument(
        "--feedback-db",
        metavar="FILE",
        help="SQLite file for CDS Hooks feedback (default DATA_DIR/feedback.sqlite3)",
    )
    serve.add_argument(
        "--feedback-retention-days",
        type=int,
        default=365,
        metavar="N",
        help="days cards and feedback are kept (default 365)",
    )
    serve.add_argument(
        "--fhir-server",
        action="append",
        default=[],
        metavar="URL",
        help="without --trust: a FHIR base URL hook calls may name as fhirServer (repeatable; "
        "with --trust, list fhir_servers per issuer in the trust file)",
    )
    serve.add_argument(
        "--workers", type=int, default=1, metavar="N", help="worker processes (default 1)"
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        default=1000,
        metavar="N",
        help="open connections per worker (default 1000); the longest idle is closed past it",
    )
    serve.add_argument(
        "--client-timeout",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="seconds a client has to send a request head, and again its body (default 15)",
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser origin allowed to call the CDS Hooks routes (CORS), e.g. "
        "https://sandbox.cds-hooks.org; repeat for several",
    )
    serve.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="text lines (the default) or JSON lines, one object per event, for a log shipper",
    )
    _add_kb_option(serve)

    kb = sub.add_parser(
        "kb",
        help="knowledge-base tools",
        description="Check a knowledge base (dangling evidence ids, unknown keys, fields or "
        "codes, duplicate ids, rules without evidence) or compile its start-up snapshot.",
        epilog=_examples(
            "netboard kb check",
            "netboard kb check path/to/kb",
            "netboard kb compile src/netboard/kb",
        ),
    )
    kb_sub = kb.add_subparsers(dest="kb_command", parser_class=_Parser, metavar="COMMAND")
    check = kb_sub.add_parser(
        "check",
        help="check the knowledge base and print its statistics",
        description="Check a knowledge base directory and print its size; exit 2 with one "
        "line per problem.",
        epilog=_examples("netboard kb check", "netboard kb check path/to/kb"),
    )
    check.add_argument(
        "path", nargs="?", help="knowledge-base directory (default: the packaged one)"
    )
    comp = kb_sub.add_parser(
        "compile",
        help="write compiled.json (the start-up snapshot) for a KB",
        description="Check a knowledge base and write its compiled.json (loaded at start-up).",
        epilog=_examples("netboard kb compile src/netboard/kb"),
    )
    comp.add_argument("path", help="knowledge-base directory, e.g. src/netboard/kb")
    _add_batch_commands(sub)
    return parser


def _engines() -> tuple[list[str], str]:
    """The batch engines ``--engine`` accepts, and the words of its help."""
    return (
        ["duckdb", "spark", "python", "polars"],
        "duckdb (the default when installed: [audit]), spark ([spark]) or python (the "
        "reference, one row at a time); polars is a development engine that no extra installs",
    )


def _add_batch_commands(sub: argparse._SubParsersAction[_Parser]) -> None:
    """The ``audit`` and ``synth`` subcommands (cohort audit; see docs/audit.md)."""
    audit = sub.add_parser(
        "audit",
        help="evaluate every patient of a registry (CSV, Parquet, NDJSON or FHIR Bulk NDJSON)",
        description="Run the knowledge base over a whole registry and write one row per "
        "patient (every option's status, eligibility, alerts, missing data, concordance with "
        "a 'given' first line). Bad rows are reported by row and field and skipped; faults "
        "stop the run with no partial output. On a terminal a progress line shows rows done, "
        "rate and time left. Needs the [audit] extra. Details: docs/audit.md.",
        epilog=_examples(
            "netboard synth --n 10000 --out registry.parquet --given",
            "netboard audit registry.parquet --out result.parquet --report audit.html",
            "netboard audit registry.parquet --compare-kb new-kb --out changes.csv",
            "netboard audit --fhir-ndjson examples/fhir-bulk --today 2025-01-15 "
            "--out fhir-result.parquet",
            "netboard audit registry.parquet --out rec-elig.parquet --only rec,elig",
        ),
    )
    audit.add_argument("registry", nargs="?", help="registry file: .csv, .parquet, .ndjson/.jsonl")
    audit.add_argument(
        "--fhir-ndjson", metavar="DIR", help="read a FHIR Bulk Data export directory instead"
    )
    audit.add_argument(
        "--out",
        metavar="RESULT",
        help="result file (.parquet or .csv); with --compare-kb, the changes; its folder must "
        "exist",
    )
    engines, engine_help = _engines()
    audit.add_argument(
        "--engine",
        choices=engines,
        metavar="{duckdb,spark,python}",
        help=engine_help,
    )
    _add_kb_option(audit)
    audit.add_argument(
        "--compare-kb",
        metavar="OTHER_KB",
        help="list the patients whose recommendations or eligibility change with this KB",
    )
    audit.add_argument(
        "--report", metavar="HTML", help="also write a summary page (HTML); its folder must exist"
    )
    audit.add_argument("--skipped", metavar="FILE", help="write every skipped-row problem here")
    audit.add_argument(
        "--show",
        type=int,
        default=20,
        metavar="N",
        help="problem lines shown on standard error (default 20)",
    )
    audit.add_argument(
        "--today", metavar="YYYY-MM-DD", help="with --fhir-ndjson: reference date for ages"
    )
    audit.add_argument(
        "--chunk-rows",
        type=int,
        default=100_000,
        metavar="N",
        help="rows per chunk (default 100000)",
    )
    audit.add_argument(
        "--only",
        metavar="FAMILIES",
        help="write only these result families: rec,elig,alerts,missing,concordant "
        "(id always); the rest of the query is not computed",
    )
    audit.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="DuckDB threads (default: every core)",
    )
    audit.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress line (it is shown only on a terminal anyway)",
    )
    synth = sub.add_parser(
        "synth",
        help="write a synthetic registry (demos, tests, benchmarks)",
        description="Write a registry of synthetic patients (plausible NEN cases, none real) "
        "for demonstrations, tests and benchmarks. Needs the [audit] extra.",
        epilog=_examples(
            "netboard synth --n 10000 --out registry.parquet --given",
            "netboard synth --n 500 --out registry.csv --seed 7",
        ),
    )
    synth.add_argument("--n", type=int, required=True, help="number of patients")
    synth.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="file: .parquet, .csv, .ndjson or .jsonl; its folder must exist",
    )
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument(
        "--given", action="store_true", help="add a given first-line column (for concordance)"
    )


def _say(line: str) -> None:
    """One line on standard error, with the netboard prefix."""
    sys.stderr.write(line if line.startswith(PREFIX) else PREFIX + line)
    sys.stderr.write("\n")


def _problems(problems: Sequence[object]) -> int:
    for p in problems:
        _say(str(p))
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
            return run_ask(args)
        if args.command == "serve":
            return _serve(args)
        if args.command == "kb" and args.kb_command == "check":
            return _kb_check(args.path)
        if args.command == "kb" and args.kb_command == "compile":
            return _kb_compile(args.path)
        if args.command == "audit":
            return _audit(args)
        if args.command == "synth":
            return _synth(args)
    except CaseError as exc:
        return _problems(exc.problems)
    except KnowledgeBaseError as exc:
        return _problems(exc.problems)
    except KeyboardInterrupt:  # pragma: no cover
        return 130
    needed = (
        "a knowledge-base command (check, compile)"
        if args.command == "kb"
        else ("a command (recommend, ask, serve, kb, audit, synth)")
    )
    _say(f"{needed} is needed (see 'netboard --help')")
    return EXIT_INPUT


# --- writing an answer ---------------------------------------------------------------------


def output_problem(option: str, path: str) -> str | None:
    """Why ``path`` cannot be an output file (named by ``option``), or None.

    netboard never creates folders: a mistyped path is an error naming it, not a new tree.

    Example:
        >>> output_problem("--out", "/no/such/folder/report.html")
        '--out: the folder /no/such/folder does not exist (netboard creates no folders)'
    """
    import os

    if not path or path.endswith(("/", os.sep)):
        return f"{option}: {path!r} is not a file name"
    if os.path.isdir(path):
        return f"{option}: {path} is a directory, not a file"
    folder = os.path.dirname(path) or "."
    if not os.path.exists(folder):
        return f"{option}: the folder {folder} does not exist (netboard creates no folders)"
    if not os.path.isdir(folder):
        return f"{option}: {folder} is not a folder"
    return None


def _is_terminal(stream: object) -> bool:
    """Whether ``stream`` is a terminal (a closed or replaced stream is not)."""
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False


def _terminal_width() -> int | None:
    """The width to wrap Markdown at when standard output is a terminal, else None."""
    import os
    import shutil

    if not _is_terminal(sys.stdout) or os.environ.get("TERM") == "dumb":
        return None
    return max(40, min(shutil.get_terminal_size((100, 24)).columns, 100))


def emit(text: str, fmt: str, out: str | None) -> int:
    """Write an answer to ``out`` (whole, replaced atomically) or to standard output.

    Markdown on a terminal is wrapped for reading; a pipe or a file gets it unchanged.
    """
    if out is not None:
        problem = output_problem("--out", out)
        if problem is not None:
            return _problems([problem])
        import os
        import tempfile

        folder = os.path.dirname(out) or "."
        try:
            fd, tmp = tempfile.mkstemp(prefix=".netboard-", suffix=".partial", dir=folder)
            try:
                with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                    fh.write(text)
                os.chmod(tmp, 0o644 & ~_umask())
                os.replace(tmp, out)
            except BaseException:
                import contextlib

                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            return _problems([f"--out: cannot write {out}: {exc.strerror or exc}"])
        return EXIT_OK
    if fmt == "markdown":
        width = _terminal_width()
        if width is not None:
            from netboard.reports.markdown import wrap_markdown

            text = wrap_markdown(text, width)
    try:
        sys.stdout.write(text)
    except UnicodeEncodeError:
        # A terminal that is not UTF-8 still gets the answer.
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode("utf-8"))
    return EXIT_OK


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def _recommend(args: argparse.Namespace) -> int:
    from netboard.case import load_case, read_case
    from netboard.engine.recommend import recommend
    from netboard.kb import load_kb
    from netboard.reports import generated_now, render

    if (args.case is None) == (args.fhir is None):
        return _problems(["give exactly one of CASE or --fhir BUNDLE (see 'netboard --help')"])
    if args.patient is not None and args.fhir is None:
        return _problems(["--patient is for --fhir (see 'netboard --help')"])
    if args.out is not None and (problem := output_problem("--out", args.out)):
        return _problems([problem])
    kb = load_kb(args.kb)
    options = {"labels": kb.labels, "verbose": args.verbose, "generated": generated_now()}
    if args.fhir is None:
        case = read_case(args.case)
        return emit(render(recommend(case, kb=kb), args.format, **options), args.format, args.out)
    from netboard.fhir import read_fhir

    read = read_fhir(args.fhir, kb=kb, patient_id=args.patient)
    answer = recommend(
        load_case(read.case),
        kb=kb,
        neoplasm=read.neoplasm,
        neoplasm_detail=read.neoplasm_detail,
    )
    if args.format == "json":
        import json

        data = answer.to_dict()
        data["fhir"] = read.report()
        return emit(json.dumps(data, indent=2, ensure_ascii=False) + "\n", "json", args.out)
    text = render(answer, args.format, **options)
    text = _with_unmapped(_with_scope(text, answer, args.format), read, args.format)
    return emit(text, args.format, args.out)


def run_ask(args: argparse.Namespace) -> int:
    """``netboard ask``: print (or write) the answer for the case read from the text.

    Returns:
        0 when an answer was given; 2 when the text is unusable (empty, over 100 kB, not
        UTF-8) or an output cannot be written, with one line on standard error.
    """
    from netboard.kb import load_kb
    from netboard.parse.ask import ask, read_text
    from netboard.reports import generated_now

    for option, path in (("--out", args.out), ("--case-out", args.case_out)):
        if path is not None and (problem := output_problem(option, path)):
            return _problems([problem])
    text, problem = read_text(args.text)
    if problem:
        return _problems([problem])
    kb = load_kb(args.kb)
    result = ask(text, kb)
    generated = generated_now()
    if args.format == "json":
        import json

        out = json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"
    elif args.format == "html":
        from netboard.service.page import ask_report_html

        out = ask_report_html(kb, text, result, generated=generated, verbose=args.verbose)
    else:
        out = result.markdown(generated=generated, verbose=args.verbose)
    if args.case_out:
        import yaml

        try:
            with open(args.case_out, "w", encoding="utf-8") as fh:
                yaml.safe_dump(result.parsed.case_dict, fh, sort_keys=False, allow_unicode=True)
        except OSError as exc:
            return _problems([f"--case-out: cannot write {args.case_out}: {exc.strerror or exc}"])
    return emit(out, args.format, args.out)


def _with_scope(text: str, answer: Answer, fmt: str) -> str:
    """The report opened by the scope note when the plan presumes a NEN or gives none."""
    from netboard.fhir.report import scope_section

    return scope_section(text, answer.scope.applies, answer.scope.reason, fmt)


def _with_unmapped(text: str, read: FhirCase, fmt: str) -> str:
    """The report with a closing section listing the FHIR input that was not used."""
    from netboard.fhir.report import unmapped_section

    return unmapped_section(text, read, fmt)


def _serve(args: argparse.Namespace) -> int:
    import json
    import os
    import sqlite3

    if not 1 <= args.port <= 65535:
        return _problems(["--port: expected a port number 1-65535"])
    if args.workers < 1:
        return _problems(["--workers: expected at least 1"])
    if args.max_connections < 1:
        return _problems(["--max-connections: expected at least 1"])
    if not 0.1 <= args.client_timeout <= 3600:
        return _problems(["--client-timeout: expected seconds from 0.1 to 3600"])
    if not 1 <= args.feedback_retention_days <= 36500:
        return _problems(["--feedback-retention-days: expected days from 1 to 36500"])
    try:
        from netboard.service.app import SETTINGS_ENV
        from netboard.service.logs import log_config
        from netboard.service.security import require_loopback_without_trust
        from netboard.service.server import Limits, run
    except ImportError as exc:
        return _problems(
            [
                f"serve: the service extra is not installed ({exc.name}); "
                "pip install 'netboard[service]'"
            ]
        )
    # The port first: if another server holds it, one line says so, before anything else.
    taken = port_problem(args.host, args.port)
    if taken is not None:
        return _problems([taken])
    import logging.config

    logging.config.dictConfig(log_config(args.log_format))
    data_dir = args.data_dir
    if data_dir is not None:
        data_dir = os.path.abspath(data_dir)  # workers may start elsewhere
    settings = {
        "kb_path": args.kb,
        "trust_file": args.trust,
        "public_url": args.public_url,
        "data_dir": data_dir,
        "feedback_db": os.path.abspath(args.feedback_db) if args.feedback_db else None,
        "feedback_retention_days": args.feedback_retention_days,
        "fhir_servers": list(args.fhir_server),
        "body_timeout_seconds": args.client_timeout,
        "cors_origins": list(args.cors_origin),
    }
    # Check the settings (trust file, knowledge base) once here, so that a mistake is one
    # clean line instead of a failing worker.
    from netboard.errors import ProblemsError
    from netboard.service.app import Settings, create_app, origin_problems
    from netboard.service.security import fhir_server_problems

    bad_origins = origin_problems(args.cors_origin)
    if bad_origins:
        return _problems(bad_origins)
    if args.fhir_server:
        _, bad = fhir_server_problems(list(args.fhir_server), "--fhir-server")
        if bad:
            return _problems(bad)
    try:
        if args.trust is None:  # refuses a non-loopback address; warns loudly otherwise
            require_loopback_without_trust(args.host)
        create_app(
            Settings(
                **{
                    **settings,
                    "fhir_servers": tuple(args.fhir_server),
                    "cors_origins": tuple(args.cors_origin),
                }
            )
        )
    except ProblemsError as exc:
        return _problems(exc.problems)
    except (OSError, sqlite3.Error) as exc:
        where = args.feedback_db or data_dir or "the data directory"
        return _problems([f"--data-dir: cannot use {where}: {getattr(exc, 'strerror', '') or exc}"])
    os.environ[SETTINGS_ENV] = json.dumps(settings)
    import logging

    # Through the log, so that --log-format json gives JSON lines only.
    logging.getLogger("netboard.service").info(
        "netboard %s serving on http://%s:%d/ (Ctrl-C stops)", __version__, args.host, args.port
    )
    run(
        host=args.host,
        port=args.port,
        workers=args.workers,
        limits=Limits(max_connections=args.max_connections, client_timeout=args.client_timeout),
        log_format=args.log_format,
    )
    return EXIT_OK


def port_problem(host: str, port: int) -> str | None:
    """Why ``serve`` cannot listen on ``host:port`` (already in use, no such address), or
    None. The socket is bound and closed again as uvicorn will bind it (``SO_REUSEADDR``)."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"--port: {where} is already in use (another server listens there); "
                    "stop it or choose another --port"
                )
            if exc.errno == errno.EACCES:
                return f"--port: {where}: permission denied (ports below 1024 need privileges)"
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"--host: {host} is not an address of this machine"
            return f"--host: cannot listen on {where}: {exc.strerror or exc}"
        except (OverflowError, socket.gaierror) as exc:
            return f"--host: cannot listen on {host}:{port}: {exc}"
    return None


def _kb_check(path: str | None) -> int:
    from netboard.kb import check_kb_dir
    from netboard.kb.checks import kb_warnings, rule_counts

    kb, problems = check_kb_dir(path)
    if problems or kb is None:
        return _problems(problems)
    for warning in kb_warnings(kb):
        sys.stdout.write(f"warning: {warning}\n")
    sys.stdout.write(
        f"knowledge base {kb.version} (released {kb.released}): OK\n"
        f"  {len(kb.references)} references, {len(kb.facts)} facts, {len(kb.rules)} rules, "
        f"{len(kb.alerts)} alerts, {len(kb.eligibility)} eligibility sets "
        f"({sum(len(e.criteria) for e in kb.eligibility)} criteria), {len(kb.dosing)} dosing "
        f"statements, {len(kb.monitoring)} monitoring items, "
        f"{len(kb.disagreements)} disagreements, {len(kb.topics)} scope topics\n"
    )
    counts = rule_counts(kb)
    for by, title in (("topic", "rules by topic"), ("phase", "rules by phase")):
        sys.stdout.write(f"  {title}:\n")
        width = max(len(k) for k in counts[by])
        for key, statuses in counts[by].items():
            total = sum(statuses.values())
            detail = ", ".join(f"{n} {status}" for status, n in statuses.items())
            sys.stdout.write(f"    {key:<{width}}  {total:>3}  ({detail})\n")
    return EXIT_OK


def _kb_compile(path: str) -> int:
    from netboard.kb import check_kb_dir, compile_kb

    kb, problems = check_kb_dir(path)
    if problems or kb is None:
        return _problems(problems)
    sys.stdout.write(f"wrote {compile_kb(path)}\n")
    return EXIT_OK


# --- cohort audit (docs/audit.md) -------------------------------------------------------------


def _audit(args: argparse.Namespace) -> int:
    """``netboard audit``: exit 0 when the audit ran (even with skipped rows), 2 when unusable.

    Every fault ends in one line per problem and exit 2, with no output left behind: a bad
    input or output path, an unreadable file, a full disk, Ctrl-C, SIGTERM or SIGHUP
    (docs/audit.md, "Faults").
    """
    import datetime as dt

    from netboard.batch.outputs import Interrupted, stop_on_signals
    from netboard.errors import ProblemsError

    if (args.registry is None) == (args.fhir_ndjson is None):
        return _problems(["give exactly one of REGISTRY or --fhir-ndjson DIR"])
    if args.out is None and args.report is None:
        return _problems(["--out: give the result file (.parquet or .csv), or --report"])
    if args.compare_kb is not None and args.out is None:
        return _problems(["--out: --compare-kb writes the changes to --out (.parquet or .csv)"])
    if args.chunk_rows < 1:
        return _problems(["--chunk-rows: expected at least 1"])
    if args.threads is not None and args.threads < 1:
        return _problems(["--threads: expected at least 1"])
    today = None
    if args.today is not None:
        try:
            today = dt.date.fromisoformat(args.today)
        except ValueError:
            return _problems([f"--today: {args.today!r} is not a date (YYYY-MM-DD)"])
    only = None
    if args.only is not None:
        try:
            from netboard.batch.run import parse_only

            only = parse_only(args.only)
        except ValueError as exc:
            return _problems([f"--only: {exc}"])
        except ImportError as exc:
            return _problems([f"audit: {exc.name} is not installed; pip install 'netboard[audit]'"])
        if args.compare_kb is not None:
            return _problems(["--only: not with --compare-kb (it compares rec and elig)"])
    try:
        with stop_on_signals():
            return _run_audit(args, today, only)
    except ProblemsError as exc:
        return _problems(exc.problems)
    except ImportError as exc:
        return _problems(
            [f"audit: {exc.name} is not installed; pip install 'netboard[audit]' (duckdb, pyarrow)"]
        )
    except Interrupted as exc:
        return _problems([f"stopped by {exc.name}; no output written"])
    except KeyboardInterrupt:
        return _problems(["interrupted (Ctrl-C); no output written"])
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _problems([f"{where}{exc.strerror or exc}; no output written"])
    except UnicodeDecodeError as exc:  # e.g. a FHIR Bulk file that is not UTF-8
        return _problems(
            [
                f"{args.registry or args.fhir_ndjson}: a file is not UTF-8 text "
                f"({exc.reason} at byte {exc.start}); no output written"
            ]
        )


def _audit_inputs(args: argparse.Namespace) -> tuple[list[Path], list[Path]]:
    """The input files and directories of an audit (outputs must be none of them)."""
    from pathlib import Path

    files: list[Path] = []
    dirs: list[Path] = []
    if args.registry is not None:
        files.append(Path(args.registry))
    if args.fhir_ndjson is not None:
        folder = Path(args.fhir_ndjson)
        dirs.append(folder)
        if folder.is_dir():
            files.extend(p for p in folder.iterdir() if p.is_file())
    if args.compare_kb is not None:
        dirs.append(Path(args.compare_kb))
    if args.kb is not None:
        dirs.append(Path(args.kb))
    return files, dirs


def _run_audit(args: argparse.Namespace, today: dt.date | None, only: frozenset[str] | None) -> int:
    from contextlib import ExitStack
    from pathlib import Path
    from typing import Any

    from netboard.batch import io
    from netboard.batch.outputs import AtomicText, check_outputs, write_atomic
    from netboard.batch.reference import default_engine, result_schema
    from netboard.kb import load_kb

    kb = load_kb(args.kb)
    engine = args.engine or default_engine()
    # 1. The inputs are checked before any output is touched.
    fhir_stats: Any = None
    if args.fhir_ndjson is not None:
        from netboard.batch.fhir_ndjson import FhirStats, check_export

        check_export(args.fhir_ndjson)
        source = args.fhir_ndjson
    else:
        registry = io.open_registry(args.registry, chunk_rows=args.chunk_rows)
        source = args.registry
    files, dirs = _audit_inputs(args)
    paths = check_outputs(
        [("--out", args.out), ("--report", args.report), ("--skipped", args.skipped)],
        inputs=files,
        input_dirs=dirs,
    )
    shown: list[str] = []
    count = [0]
    with ExitStack() as cleanup:
        skipped_file: AtomicText | None = None
        if "--skipped" in paths:
            skipped_file = AtomicText(paths["--skipped"])
            cleanup.callback(skipped_file.abort)

        def on_problem(line: str) -> None:
            count[0] += 1
            if len(shown) < args.show:
                shown.append(line)
            if skipped_file is not None:
                skipped_file.write(line + "\n")

        if args.fhir_ndjson is not None:
            from netboard.batch.fhir_ndjson import fhir_ndjson_chunks

            fhir_stats = FhirStats()
            chunks: Any = fhir_ndjson_chunks(
                args.fhir_ndjson, kb=kb, today=today, on_problem=on_problem, stats=fhir_stats
            )
        else:
            chunks = registry.chunks()
        cleanup.callback(_close, chunks)
        if args.compare_kb is not None:
            return _compare(args, chunks, kb, engine, on_problem, shown, count, skipped_file)
        report: Any = None
        if args.report is not None:
            from netboard.batch.report import AuditReport
            from netboard.reports import generated_now

            report = AuditReport(
                source=Path(source).name,
                kb_version=kb.version,
                engine=engine,
                kb=kb,
                generated=generated_now(),
            )
        writer = None
        if args.out is not None:
            schema = result_schema()
            if only is not None:
                import pyarrow as pa

                from netboard.batch.run import output_columns

                schema = pa.schema([schema.field(n) for n in output_columns(only)])
            writer = io.ResultWriter(paths["--out"], schema)
            cleanup.callback(writer.abort)
        from netboard.batch.progress import AuditProgress

        fhir = args.fhir_ndjson is not None
        progress = AuditProgress(
            None if fhir else registry.row_count(),
            enabled=not args.quiet and _is_terminal(sys.stderr),
            unit="patients" if fhir else "rows",
        )
        with progress:
            stats = io.audit_chunks(
                chunks,
                kb=kb,
                engine=engine,
                writer=writer,
                on_problem=on_problem,
                on_result=report.add if report is not None else None,
                only=only,
                threads=args.threads,
                on_progress=progress.update,
            )
        # 2. Everything was computed: the outputs are moved into place, the result last.
        if report is not None:
            report.skipped = stats.skipped
            write_atomic(paths["--report"], report.render())
        if skipped_file is not None:
            skipped_file.commit()
        if writer is not None:
            writer.close()
    _show_problems(shown, count[0])
    unit = "lines" if fhir_stats is not None else "rows"
    skipped = stats.skipped if fhir_stats is None else fhir_stats.bad_lines
    where = f" (see {args.skipped})" if args.skipped else ""
    if count[0] and not args.skipped:
        where = " (--skipped FILE writes every problem)"
    _say(f"{stats.audited} patients audited, {skipped} {unit} skipped{where}")
    if fhir_stats is not None:
        sys.stderr.write(_fhir_summary(fhir_stats))
    if fhir_stats is not None and fhir_stats.unmapped:
        reasons = fhir_stats.unmapped_by_reason
        common = max(reasons, key=lambda r: reasons[r])
        _say(f"{fhir_stats.unmapped} FHIR items not used (see docs/fhir.md); most often: {common}")
    return EXIT_OK


def _show_problems(shown: list[str], count: int) -> None:
    """The first problem lines of an audit, and how many more there were."""
    for line in shown:
        _say(line)
    if count > len(shown):
        _say(f"{count - len(shown)} more problem lines not shown")


def _close(chunks: object) -> None:
    """Close a chunk generator (its temporary files go with it); ignore one still running."""
    import contextlib

    close = getattr(chunks, "close", None)
    if close is not None:
        with contextlib.suppress(ValueError):  # still executing in an engine thread
            close()


def _fhir_summary(stats: FhirStats) -> str:
    """The NEN gate and the non-patient data of a Bulk export, one line each."""
    lines = []
    if stats.out_of_scope:
        words = {
            "none": "no neoplasm recorded",
            "non_neuroendocrine": "a cancer that is not neuroendocrine",
            "unconfirmed": "a neoplasm at no NEN site, histology not recorded",
        }
        parts = ", ".join(f"{n} {words.get(k, k)}" for k, n in sorted(stats.out_of_scope.items()))
        total = sum(stats.out_of_scope.values())
        lines.append(
            f"netboard: {total} patients not audited, no neuroendocrine neoplasm: {parts}\n"
        )
    if stats.presumed:
        lines.append(
            f"netboard: {stats.presumed} patients audited as presumed NENs "
            "(no neuroendocrine histology recorded)\n"
        )
    if stats.not_patient_data:
        parts = ", ".join(f"{k} {n}" for k, n in sorted(stats.not_patient_data.items()))
        lines.append(f"netboard: not patient data, not read: {parts}\n")
    return "".join(lines)


def _compare(
    args: argparse.Namespace,
    chunks: object,
    kb: object,
    engine: str,
    on_problem: object,
    shown: list[str],
    count: list[int],
    skipped_file: object,
) -> int:
    from collections.abc import Callable, Iterable
    from typing import Any, cast

    from netboard.batch import io
    from netboard.batch.outputs import AtomicText
    from netboard.batch.reference import compare_summary, compare_table, diff_schema
    from netboard.kb import KnowledgeBase, load_kb

    other = load_kb(args.compare_kb)
    base = cast(KnowledgeBase, kb)
    writer = io.TableWriter(args.out, diff_schema(), formats=("parquet", "csv"), csv_formulas=True)
    changes: list[dict[str, Any]] = []
    patients: set[str] = set()
    audited = skipped = 0
    report = cast(Callable[[str], None], on_problem)
    try:
        for chunk in cast(Iterable[io.Chunk], chunks):
            skipped += chunk.skipped
            for line in chunk.problems:
                report(line)
            if chunk.table.num_rows == 0:
                continue
            audited += chunk.table.num_rows
            diff = compare_table(chunk.table, base, other, engine=engine)
            writer.write(diff)
            for row in diff.to_pylist():
                patients.add(str(row["id"]))
                if len(changes) < 200_000:
                    changes.append(row)
        if isinstance(skipped_file, AtomicText):
            skipped_file.commit()
        writer.close()
    except BaseException:
        writer.abort()
        raise
    _show_problems(shown, count[0])
    _say(f"{audited} patients compared, {skipped} rows skipped")
    summary = compare_summary(changes, len(patients))
    summary[0] += (
        f" between knowledge base {base.version} and {other.version} ({args.compare_kb});"
        f" changes in {args.out}"
    )
    sys.stdout.write("\n".join(summary) + "\n")
    return EXIT_OK


def _synth(args: argparse.Namespace) -> int:
    """``netboard synth``: a synthetic registry; exit 2 on a bad argument."""
    from netboard.errors import ProblemsError

    if args.n < 0:
        return _problems(["--n: expected 0 or more patients"])
    problem = output_problem("--out", args.out)
    if problem is not None:
        return _problems([problem])
    try:
        from netboard.batch.synth import write_synth

        rows = write_synth(args.out, args.n, seed=args.seed, given=args.given)
    except ProblemsError as exc:
        return _problems(exc.problems)
    except ImportError as exc:
        return _problems(
            [f"synth: {exc.name} is not installed; pip install 'netboard[audit]' (numpy, pyarrow)"]
        )
    _say(f"wrote {rows} synthetic patients to {args.out}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
