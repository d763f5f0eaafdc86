"""Names made safe to print on a terminal.

A remote name is chosen by whoever wrote it, who may be someone sharing a folder with you: its
characters must not reach the terminal as commands. `shown(text)` writes the characters that a
terminal acts on or that reorder what follows, escaped as Python writes them: C0 controls
(ESC as ``\\x1b``, CR, BEL, tab, newline), DEL, C1 controls (U+0080-U+009F), the Unicode bidi
controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069), the line and paragraph
separators U+2028/U+2029, and the bytes of a local name that is not valid UTF-8 (Python holds
them as lone surrogates; shown as ``\\xff``), and a backslash that would read as the start of
such an escape is doubled. Everything else is shown as it is. Every command
that prints a name (or a message holding one) passes it through here; JSON output does not, so
that it stays exact.
"""
from __future__ import annotations

import re

_UNSAFE_CLASS = ("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
                 "\u2066-\u2069\ud800-\udfff]")
# A backslash that would read as the start of an escape (before x, u, another backslash or an
# escaped character) is itself written \\, so a name holding the text "\x1b" never reads
# like one holding ESC; other backslashes are shown as they are.
_UNSAFE = re.compile(f"{_UNSAFE_CLASS}|\\\\(?=[xu\\\\]|{_UNSAFE_CLASS})")


def _escape(match: re.Match) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:          # a byte of a name that is not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def shown(text: object) -> str:
    """`text` (any object, as str()) with every character a terminal could act on escaped."""
    return _UNSAFE.sub(_escape, str(text))


def plural(count: int, noun: str) -> str:
    """'1 share', '2 shares'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
