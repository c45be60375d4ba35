"""What characters are not text, in one place: for issue names, list entries, YAML values and the terminal.

`NOT_TEXT` is what no name, address or one-line value may hold; `NOT_TEXT_IN_LINES` is the same for
multi-line text (an issue's Markdown), which may also hold tabs and line breaks. `describe` names a
found character for a message, and `printable` escapes, for a terminal, all of those and also the
invisible characters a terminal would act on (bidi overrides): it escapes more than is refused.
"""

from __future__ import annotations

import re

# What str.splitlines and YAML take for line breaks, less VT, FF and the file separators, which are
# control characters to a reader.
LINE_BREAKS = "\n\r\x85\u2028\u2029"
# C0 controls, DEL, C1 controls (ESC and CSI start terminal sequences; HTML and mail headers forbid
# them), the line and paragraph separators, lone surrogates (how Python carries the undecodable bytes
# of a file name) and the non-characters U+FFFE and U+FFFF (MJML cannot parse them). Letters of any
# script, emoji, and joiners such as U+200D (emoji sequences) are text.
_NOT_TEXT = [(0x00, 0x1F), (0x7F, 0x9F), (0x2028, 0x2029), (0xD800, 0xDFFF), (0xFFFE, 0xFFFF)]


def _character_class(ranges: list[tuple[int, int]], allowed: str = "") -> re.Pattern[str]:
    """A pattern matching one character in `ranges` (inclusive) that is not in `allowed`."""
    parts = []
    for low, high in ranges:
        start = low
        for n in [*sorted(ord(c) for c in allowed if low <= ord(c) <= high), high + 1]:
            if start < n:
                parts.append(re.escape(chr(start)) + ("-" + re.escape(chr(n - 1)) if n - 1 > start else ""))
            start = n + 1
    return re.compile(f"[{''.join(parts)}]")


NOT_TEXT = _character_class(_NOT_TEXT)
# In multi-line text: the same, less tab and line breaks. (Built, not written out, to stay one set;
# a lookahead would make the check of a whole issue several times slower.)
NOT_TEXT_IN_LINES = _character_class(_NOT_TEXT, "\t" + LINE_BREAKS)

# Python reads a file name's byte that is not UTF-8 as one of these (the "surrogateescape" handler).
_ESCAPED_BYTES = range(0xDC80, 0xDD00)


def describe(char: str) -> str:
    """`char` (one found by NOT_TEXT) in words, for a message: "a control character (U+001B)"."""
    n = ord(char)
    if char in LINE_BREAKS:
        return f"a line break (U+{n:04X})"
    if n in _ESCAPED_BYTES:
        return f"a byte that is not valid UTF-8 (0x{n - 0xDC00:02X})"
    if 0xD800 <= n <= 0xDFFF:
        return f"a lone surrogate (U+{n:04X})"
    if n in (0xFFFE, 0xFFFF):
        return f"a non-character (U+{n:04X})"
    return f"a control character (U+{n:04X})"


def printable(text: str) -> str:
    r"""`text` with every character a terminal would act on instead of show written as an escape.

    Control characters (C0, DEL, C1, so ESC and every sequence it starts), line and paragraph
    separators, and invisible format characters such as the bidi overrides U+202A-202E and
    U+2066-2069 come out as `\x1b`, `\u202e`, `\U000e0041` (`\t`, `\n`, `\r` for short);
    letters of any script and emoji stay as they are. The escapes are themselves printable, so
    escaping twice changes nothing.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(c: str) -> str:
    if c in _SHORT:
        return _SHORT[c]
    n = ord(c)
    if n < 0x100:
        return f"\\x{n:02x}"
    if n < 0x10000:
        return f"\\u{n:04x}"
    return f"\\U{n:08x}"
