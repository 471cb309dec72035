"""The ``netboard`` command line (contract v1).

Exit status: 0 an answer was given; 2 the input is unusable (one line per
problem on standard error, nothing on standard output).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from netboard import __version__

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
        "recommend", help="answer a structured case (JSON or YAML file, or - for stdin)"
    )
    rec.add_argument("case", help="case file (JSON or YAML), or - for standard input")
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
        else ("a command (recommend, ask, kb)")
    )
    sys.stderr.write(f"netboard: {needed} is needed (see 'netboard --help')\n")
    return EXIT_INPUT


def _recommend(args: argparse.Namespace) -> int:
    from netboard.case import read_case
    from netboard.engine.recommend import recommend
    from netboard.kb import load_kb
    from netboard.render import render

    kb = load_kb(args.kb)
    case = read_case(args.case)
    text = render(recommend(case, kb=kb), args.format, labels=kb.labels)
    sys.stdout.write(text)
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
