"""Filling one subscriber's copy from an issue rendered once: escaped where it is HTML, as typed where
it is text, fallbacks for what a list leaves empty, and a link signed with the key given."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from newsletter.message import Composer
from newsletter.personalise import Recipient, SlotRegistry, Slotted
from newsletter.pipeline import check
from newsletter.unsubscribe import read_token

from .support import MINIMAL, SECRET, write_issue

HOSTILE = '"><img src=x onerror=alert(1)> & Zoë'


@pytest.fixture
def composer(project: Path) -> Composer:
    return Composer.prepare(check(write_issue(project, MINIMAL)).rendered)


def test_a_name_is_escaped_in_the_html_and_kept_as_typed_in_the_text(composer):
    copy = composer.personalise(Recipient("zoe@example.com", HOSTILE), SECRET)
    assert "Hi &quot;&gt;&lt;img src=x onerror=alert(1)&gt; &amp; Zoë," in copy.html
    assert "<img src=x" not in copy.html
    assert f"Hi {HOSTILE}," in copy.text


def test_an_empty_name_takes_the_template_s_fallback(composer):
    copy = composer.personalise(Recipient("ann@example.com", ""), SECRET)
    assert "Hi there," in copy.text and "Hi there," in copy.html


def test_the_unsubscribe_link_is_signed_for_this_subscriber_with_the_key_given(composer):
    copy = composer.personalise(Recipient("Ann@Example.com", "Ann"), SECRET)
    token = copy.values["unsubscribe_url"].split("t=", 1)[1]
    list_id = composer.rendered.site.list_identifier
    assert read_token(SECRET, list_id, token) == "ann@example.com"
    assert read_token(SECRET + "x", list_id, token) is None
    assert f'href="{copy.values["unsubscribe_url"]}"' in copy.html


def test_the_message_decodes_back_to_the_filled_parts(composer):
    copy = composer.personalise(Recipient("zoe@example.com", HOSTILE), SECRET)
    message = email.message_from_bytes(copy.message(), policy=email.policy.strict)
    assert message["To"].addresses[0].display_name == HOSTILE
    assert message.get_body(("plain",)).get_content().replace("\r\n", "\n") == copy.text
    assert message.get_body(("html",)).get_content().replace("\r\n", "\n") == copy.html.replace("\r\n", "\n")


def test_every_column_of_the_list_reaches_its_slot():
    registry = SlotRegistry()
    text = f"{registry.token('city', 'everywhere')} / {registry.token('name', 'friend')}"
    html = Slotted.split(text, registry, is_html=True)
    plain = Slotted.split(text, registry, is_html=False)
    assert plain.fill({"city": "Montréal <QC>", "name": ""}) == "Montréal <QC> / friend"
    assert html.fill({"city": "Montréal <QC>"}) == "Montréal &lt;QC&gt; / friend"
    # Issue text cannot forge a slot: the token holds a random part the text cannot know.
    assert Slotted.split("slot0n0x", registry, is_html=False).literals == ("slot0n0x",)
