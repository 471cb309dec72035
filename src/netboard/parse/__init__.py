"""Free text to a partial case for ``netboard ask`` (lexicon as data, ConText-style negation).

Example:
    >>> from netboard.parse import parse_text
    >>> parse_text("pNET G2 with liver mets").case_dict["primary_site"]
    'pancreas'
"""

from __future__ import annotations

from netboard.parse.ask import ParsedText, Used, parse_text

__all__ = ["ParsedText", "Used", "parse_text"]
