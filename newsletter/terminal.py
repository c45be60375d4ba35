"""Text from outside (a server's reply, an address from a list) made safe to print on a terminal."""

from __future__ import annotations


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
