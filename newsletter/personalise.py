"""Per-subscriber values in a message rendered once for everyone.

Templates are rendered once per issue. Where a template asks for something
that differs per subscriber (`subscriber.name`, the unsubscribe link), it
gets a token instead; `Slotted` splits the finished text at the tokens so
that filling them in for one subscriber is a cheap join, not a re-render.
`slot_values` says what fills them for one `Recipient`;
`message.Composer.personalise` puts the two together, for every command.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from markupsafe import Markup

from .model import HEADER_LINE_MAX, Site
from .unsubscribe import make_token, unsubscribe_url


@dataclass(frozen=True)
class Recipient:
    email: str
    name: str = ""
    fields: Mapping[str, str] | None = None  # every column of the subscriber list


def slot_values(site: Site, recipient: Recipient, key: str, issue: str | None = None) -> dict[str, str]:
    """What fills the slots for `recipient`: their fields, name, address and unsubscribe link signed with `key`,
    which names `issue` (its identity) so that the suppression can say which issue they left from."""
    return {
        **(recipient.fields or {}),
        "email": recipient.email,
        "name": recipient.name,
        "unsubscribe_url": _unsubscribe_link(site, key, recipient.email, issue),
        # Always set, so that a column of the list by this name never reaches the List-Unsubscribe header.
        "unsubscribe_mailto": _unsubscribe_mailto(site, key, recipient.email, issue),
    }


def _unsubscribe_mailto(site: Site, key: str, email: str, issue: str | None) -> str:
    """The `mailto:` target of List-Unsubscribe, its subject carrying the recipient's signed token (the same as the
    link's), so that `inbox` can trust a mailed unsubscribe; "" without `unsubscribe_mailto`."""
    if not site.unsubscribe_mailto:
        return ""
    # The address is a dot-atom (model.is_email_address); RFC 6068 wants its URI-reserved characters encoded.
    to = quote(site.unsubscribe_mailto, safe="@!$'*+=._~-")
    url = f"mailto:{to}?subject=unsubscribe%20{make_token(key, site.list_identifier, email, issue)}"
    # As for the link: one that would not fit on a header line of its own does without the issue.
    if issue is not None and len("List-Unsubscribe: <>") + len(url) > HEADER_LINE_MAX:
        url = f"mailto:{to}?subject=unsubscribe%20{make_token(key, site.list_identifier, email)}"
    return url


def _unsubscribe_link(site: Site, key: str, email: str, issue: str | None) -> str:
    url = unsubscribe_url(site.unsubscribe_url, key, site.list_identifier, email, issue)
    # newsletter.yaml's check (model._unsubscribe_pattern) makes room in the List-Unsubscribe line for the longest
    # address, not for an issue id too: a link that would not fit does without the issue, which serve then
    # records as unknown, rather than making a message no server takes.
    if issue is not None and len("List-Unsubscribe: <>,") + len(url) > HEADER_LINE_MAX:
        url = unsubscribe_url(site.unsubscribe_url, key, site.list_identifier, email)
    return url


@dataclass(frozen=True)
class Slot:
    key: str
    fallback: str = ""


@dataclass
class SlotRegistry:
    slots: list[Slot] = field(default_factory=list)
    # Tokens are plain letters and digits, so that no step (lxml escapes
    # non-ASCII in href) alters them; the random part keeps issue text from
    # forging one.
    nonce: str = field(default_factory=lambda: secrets.token_hex(8))

    def token(self, key: str, fallback: str = "") -> Markup:
        slot = Slot(key, fallback)
        if slot not in self.slots:
            self.slots.append(slot)
        return Markup(f"slot{self.nonce}n{self.slots.index(slot)}x")

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(f"slot{self.nonce}n(\\d+)x")


class SubscriberFields:
    """What templates see as `subscriber`: `subscriber.name`, `subscriber.get("name", "friend")`."""

    def __init__(self, registry: SlotRegistry) -> None:
        self._registry = registry

    def get(self, key: str, fallback: str = "") -> Markup:
        return self._registry.token(key, fallback)

    def __getattr__(self, key: str) -> Markup:
        if key.startswith("_"):
            raise AttributeError(key)
        return self.get(key)

    __getitem__ = get


@dataclass(frozen=True)
class Slotted:
    """Text split at its slots: literal, slot, literal, slot, ..., literal."""

    literals: tuple[str, ...]
    slots: tuple[Slot, ...]
    escape: Callable[[str], str]

    @classmethod
    def split(cls, text: str, registry: SlotRegistry, *, is_html: bool) -> Slotted:
        pieces = registry.pattern.split(text)
        literals = tuple(pieces[0::2])
        slots = tuple(registry.slots[int(i)] for i in pieces[1::2])
        return cls(literals, slots, _escape_html if is_html else str)

    def values(self, values: Mapping[str, str]) -> list[str]:
        """What goes into each slot, in order, escaped for this text."""
        return [self.escape(values.get(slot.key) or slot.fallback) for slot in self.slots]

    def fill(self, values: Mapping[str, str]) -> str:
        out = [self.literals[0]]
        for value, literal in zip(self.values(values), self.literals[1:], strict=True):
            out += (value, literal)
        return "".join(out)


def _escape_html(value: str) -> str:
    return html.escape(value, quote=True)
