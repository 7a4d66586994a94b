"""Text that reaches a person: free of what a student's code could use to mislead them."""

from __future__ import annotations

import re

_ESCAPE_SEQUENCE = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|.)")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` without terminal escape sequences and control or bidi-override characters:
    what a student's code can put in a message must not drive a TA's terminal or a CSV."""
    return _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", str(text)))


def one_line(text: str, limit: int = 200) -> str:
    """``text`` printable, on one line, at most ``limit`` characters (cut with "…")."""
    text = " ".join(printable(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def utf8_head(text: str, limit: int) -> str:
    """The longest start of ``text`` that is at most ``limit`` bytes in UTF-8."""
    return text.encode()[:limit].decode("utf-8", "ignore")


def spreadsheet_cell(text: str) -> str:
    """``text`` printable, and never read as a formula when the CSV it goes to is opened in a
    spreadsheet (a cell starting with =, +, - or @ runs as one: "CSV injection"): such a cell
    starts with an apostrophe, as spreadsheets themselves write text."""
    text = printable(text)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
