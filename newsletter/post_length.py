"""How long a post is as each social network counts it, and how long each allows.

Each network counts in its own way, and a post that fits one can be refused
by another:

- X: twitter-text's weighted length (config v3, the one X uses since 2018,
  https://github.com/twitter/twitter-text/blob/master/config/v3.json and
  parseTweet in its js/src/parseTweet.js): the text in Unicode NFC; every URL,
  with or without http(s)://, counts 23; an emoji, however many code points,
  counts 2; any other code point counts 1 in the ranges U+0000-U+10FF,
  U+2000-U+200D, U+2010-U+201F and U+2032-U+2037 (Latin, Greek, Cyrillic,
  Hebrew, Arabic, Indic scripts, general punctuation) and 2 elsewhere (CJK,
  Hangul, most symbols). 280 at most. (twitter-text's Python port on PyPI,
  twitter-text-parser, imports pkg_resources, which setuptools no longer has.)
- Bluesky: 300 graphemes (the app.bsky.feed.post lexicon's maxGraphemes),
  counted after the Bluesky app shortens each http(s) link to its host and
  the path's first 13 characters and "..." (toShortUrl in
  bluesky-social/social-app's src/lib/strings/url-helpers.ts).
- Mastodon: 500 grapheme clusters, every http(s) link as 23 and a remote
  mention @user@server as @user (StatusLengthValidator in
  mastodon/mastodon's app/validators/status_length_validator.rb).
- Threads: 500 characters, an emoji counting as many as its UTF-8 bytes
  (the Threads API's limits for posts).

Graphemes come from the `regex` module's \\X (Unicode's extended grapheme clusters).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import regex

URL_LENGTH = 23  # what X and Mastodon count any link as
_LIGHT = ((0x0000, 0x10FF), (0x2000, 0x200D), (0x2010, 0x201F), (0x2032, 0x2037))  # weight 1 on X; the rest 2
_GRAPHEME = regex.compile(r"\X")
# A link written in full, or (X counts these too) a bare domain such as amnesty.ca/belarus; not an email address.
_FULL_URL = r"https?://[^\s<>\"]+"
_BARE_URL = r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}(?::[0-9]{1,5})?(?:/[^\s<>\"]*)?"
_URLS = {
    bare: regex.compile(rf"(?<![\w@./#-])(?:{_FULL_URL}{'|' + _BARE_URL if bare else ''})", regex.IGNORECASE)
    for bare in (False, True)
}
# What ends a sentence around a link rather than the link itself.
_TRAILING = ".,:;!?'\"*"
_REMOTE_MENTION = regex.compile(r"(?<![\w/@])(@\w+)@[\w.-]*\w")
# An emoji, as twitter-text's list of them (Unicode's emoji-test.txt) has it: text-style ones like (c) included.
_EMOJI = regex.compile(r"\p{Extended_Pictographic}|\p{Emoji_Presentation}|\uFE0F|\p{Regional_Indicator}")


@dataclass(frozen=True)
class Network:
    key: str  # as the project's settings name it
    name: str
    limit: int
    length: Callable[[str], int]
    counting: str  # how it counts, for the warning


def x_length(text: str) -> int:
    text = unicodedata.normalize("NFC", text)
    total = 0
    for piece, is_url in _split_urls(text, bare=True):
        total += URL_LENGTH if is_url else sum(_x_weight(cluster) for cluster in _GRAPHEME.findall(piece))
    return total


def bluesky_length(text: str) -> int:
    return _graphemes("".join(_short_url(p) if is_url else p for p, is_url in _split_urls(text, bare=False)))


def mastodon_length(text: str) -> int:
    text = _REMOTE_MENTION.sub(r"\1", text)
    return _graphemes("".join("x" * URL_LENGTH if is_url else p for p, is_url in _split_urls(text, bare=False)))


def threads_length(text: str) -> int:
    text = unicodedata.normalize("NFC", text)
    return sum(len(c.encode()) if _is_emoji(c) else len(c) for c in _GRAPHEME.findall(text))


NETWORKS = {
    n.key: n
    for n in (
        Network("x", "X", 280, x_length, "every link counts 23, CJK characters and emoji 2"),
        Network("bluesky", "Bluesky", 300, bluesky_length, "graphemes, links shortened as the Bluesky app does"),
        Network("mastodon", "Mastodon", 500, mastodon_length, "every link counts 23"),
        Network("threads", "Threads", 500, threads_length, "an emoji counts its UTF-8 bytes"),
    )
}


def length_limited(keys: Iterable[str] | None = None) -> list[Network]:
    """The networks among `keys` (every one when None) whose posts have a length limit, in that order.

    Others that the project may share to (WhatsApp, Facebook) allow far longer posts than a sample post is.
    """
    return [NETWORKS[key] for key in (NETWORKS if keys is None else keys) if key in NETWORKS]


def too_long(text: str, networks: Iterable[Network]) -> list[tuple[Network, int]]:
    """Each of `networks` that would refuse `text`, with the length it counts."""
    found = []
    for network in networks:
        length = network.length(text)
        if length > network.limit:
            found.append((network, length))
    return found


def _split_urls(text: str, *, bare: bool) -> list[tuple[str, bool]]:
    """`text` in pieces, each a link (True) or not."""
    pieces: list[tuple[str, bool]] = []
    at = 0
    for match in _URLS[bare].finditer(text):
        url = _trim(match[0])
        pieces += [(text[at : match.start()], False), (url, True)]
        at = match.start() + len(url)
    pieces.append((text[at:], False))
    return pieces


def _trim(url: str) -> str:
    # "(see https://example.org/a)." ends the link at "a"; a ) that closes a ( inside the link stays.
    while url and (url[-1] in _TRAILING or (url[-1] == ")" and url.count("(") < url.count(")"))):
        url = url[:-1]
    return url


def _short_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # as the app's URL() throws: the text stays as written
        return url
    host = (parts.hostname or "") + (f":{port}" if port not in (None, 80, 443) else "")
    path = ("" if parts.path in ("", "/") else parts.path) + (f"?{parts.query}" if parts.query else "")
    path += f"#{parts.fragment}" if parts.fragment else ""
    return host + (path[:13] + "..." if len(path) > 15 else path)


def _graphemes(text: str) -> int:
    return len(_GRAPHEME.findall(text))


def _is_emoji(cluster: str) -> bool:
    return _EMOJI.search(cluster) is not None


def _x_weight(cluster: str) -> int:
    if _is_emoji(cluster):
        return 2
    return sum(1 if any(lo <= ord(c) <= hi for lo, hi in _LIGHT) else 2 for c in cluster)
