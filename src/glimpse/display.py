"""Text made safe to show on a terminal: the one function human (non-JSON) output passes paths and reasons to.

A file name may hold any byte but ``/`` and NUL: ESC sequences that recolour, move the cursor, retitle the
window or (on some terminals) answer back; ``\\r`` that overwrites the line it is on, ``\\n`` that forges
a second line ("failed x.jpg: ..."), bidi overrides that show text in another order. :func:`printable`
turns each such character into a visible escape, so a name is shown as what it is and cannot act on the
terminal. JSON output needs none of this: its encoder escapes control characters itself.
"""

from __future__ import annotations

import os
import unicodedata

__all__ = ["printable"]

# Categories shown escaped: controls (C0, DEL, C1), lone surrogates (undecodable bytes of a file name, as
# os.fsdecode gives them), and line/paragraph separators, which some terminals treat as a new line.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
# Bidi embedding/override/isolate marks (the "Trojan Source" characters): they reorder what follows.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SURROGATE_ESCAPES = range(0xDC80, 0xDD00)  # os.fsdecode's stand-ins for the bytes 0x80..0xFF


def _escape(char: str) -> str:
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if code in _SURROGATE_ESCAPES:
        return f"\\x{code - 0xDC00:02x}"  # the original byte of a non-UTF-8 name
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _unsafe(char: str) -> bool:
    return char in _BIDI_CONTROLS or unicodedata.category(char) in _ESCAPED_CATEGORIES


def printable(text: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """``text`` (a path as str, bytes or PathLike, or any message) with every character that could act on a
    terminal shown as an escape: ``"a\\x1b[2Jb.jpg"`` → ``a\\x1b[2Jb.jpg`` (the four characters ``\\x1b``),
    ``\\n`` → ``\\n``, the byte 0xE9 of a Latin-1 name → ``\\xe9``. Printable text, spaces and every script
    (emoji with zero-width joiners included) pass unchanged."""
    if not isinstance(text, str):
        text = os.fsdecode(text)
    if text.isprintable():  # the common case, in C: nothing to escape
        return text
    return "".join(_escape(c) if _unsafe(c) else c for c in text)
