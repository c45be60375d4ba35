"""Sample posts measured as each network measures them, and `check`'s warning for one that is too long."""

from __future__ import annotations

import pytest

from newsletter.model import Item
from newsletter.post_length import bluesky_length, length_limited, mastodon_length, threads_length, x_length
from newsletter.share import share_text

from .support import write_issue

LONG_URL = "https://example.org/campaigns/2021/belarus/solidarity-cards-and-other-actions-you-can-take?ref=roundup"
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one emoji of five code points


def test_x_counts_as_twitter_text_does():
    # twitter-text's own example (its README and conformance suite): Latin 1, CJK 2, emoji 2, a URL 23.
    assert x_length("english text 日本語 😷 https://example.com") == 46
    assert x_length("a" * 280) == 280
    assert x_length("日本語" * 50) == 300
    assert x_length(f"Sign: {LONG_URL}") == 6 + 23
    assert x_length("Read amnesty.ca/belarus now") == 5 + 23 + 4  # a link without https:// is a link to X
    assert x_length("Write to hhomes@amnesty.ca") == 26  # an address is not
    assert x_length(f"{FAMILY} \U0001f1e8\U0001f1e6 \U0001f44d\U0001f3fd") == 2 + 1 + 2 + 1 + 2
    assert x_length("e\u0301" * 10) == 10  # counted in NFC, where é is one code point
    assert x_length("(see https://example.org/a_(b)).") == len("(see ") + 23 + len(").")


def test_bluesky_counts_graphemes_with_links_shortened_as_its_app_posts_them():
    assert bluesky_length("e\u0301" * 300) == 300
    assert bluesky_length(FAMILY * 10) == 10
    # toShortUrl: the host and the path's first 13 characters, then "...".
    assert bluesky_length(LONG_URL) == len("example.org" + "/campaigns/20" + "...")
    assert bluesky_length("https://example.org/short") == len("example.org/short")


def test_mastodon_counts_graphemes_links_as_23_and_a_remote_mention_by_its_name():
    assert mastodon_length(f"{FAMILY} {LONG_URL}") == 1 + 1 + 23
    assert mastodon_length("Thanks @amnesty@mastodon.social") == len("Thanks @amnesty")
    assert mastodon_length("amnesty.ca/belarus") == len("amnesty.ca/belarus")  # a link only with https://


def test_threads_counts_an_emoji_by_its_utf8_bytes():
    assert threads_length("abc") == 3
    assert threads_length(FAMILY) == len(FAMILY.encode())
    assert threads_length(LONG_URL) == len(LONG_URL)


def test_the_text_to_post_carries_the_items_hashtags_once():
    item = Item(status="new", title="T", hashtags=["Myanmar", "WhatsHappeningInMyanmar", "MyanmarNeverSilenced"])
    post = "Thinking of #MyanmarSolidarity and #whatshappeninginmyanmar"
    # #Myanmar is not in #MyanmarSolidarity; a hashtag in another case is the same hashtag.
    assert share_text(post, item.hashtags) == f"{post} #Myanmar #MyanmarNeverSilenced"
    assert share_text("#Myanmar #WhatsHappeningInMyanmar #MyanmarNeverSilenced", item.hashtags) == (
        "#Myanmar #WhatsHappeningInMyanmar #MyanmarNeverSilenced"
    )


def _issue(posts: list[str], hashtags: str = "[]") -> str:
    lines = "\n".join(f'      - "{post}"' for post in posts)
    return f"""
title: "A roundup"
date: 2021-05-03
preheader: "What to do"
items:
  - status: new
    title: "An action"
    hashtags: {hashtags}
    body: "Something is happening."
    sample_posts:
{lines}
"""


def _post_warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if "sample_posts" in line]


def test_check_names_each_post_too_long_and_the_networks_that_refuse_it(project, run):
    posts = [
        "a" * 280,  # the most X takes
        "b" * 281,
        "日本" * 71,  # 142 characters: X counts 284, the others 142
        f"{'c' * 250} {LONG_URL}",  # 360 as written, 274 on X and Mastodon, short enough on Bluesky
        "d" * 301,
        "e" * 501,
    ]
    path = write_issue(project, _issue(posts))
    result = run("check", path)
    assert result.exit_code == 0, result.output
    assert _post_warnings(result.output) == [
        "warning: issues/test.yaml:11:9: items[0].sample_posts[1]: sample post is too long for "
        "X (281 of 280: every link counts 23, CJK characters and emoji 2)",
        "warning: issues/test.yaml:12:9: items[0].sample_posts[2]: sample post is too long for "
        "X (284 of 280: every link counts 23, CJK characters and emoji 2)",
        "warning: issues/test.yaml:14:9: items[0].sample_posts[4]: sample post is too long for "
        "X (301 of 280: every link counts 23, CJK characters and emoji 2) and "
        "Bluesky (301 of 300: graphemes, links shortened as the Bluesky app does)",
        "warning: issues/test.yaml:15:9: items[0].sample_posts[5]: sample post is too long for "
        "X (501 of 280: every link counts 23, CJK characters and emoji 2) and "
        "Bluesky (501 of 300: graphemes, links shortened as the Bluesky app does) and "
        "Mastodon (501 of 500: every link counts 23) and Threads (501 of 500: an emoji counts its UTF-8 bytes)",
    ]
    assert run("check", "--strict", path).exit_code == 1


def test_the_hashtags_that_would_be_appended_count(project, run):
    posts = ["a" * 270, "b" * 260 + " #LongHashtag"]
    result = run("check", write_issue(project, _issue(posts, "[LongHashtag]")))
    # 270 + " #LongHashtag" is 283; the second carries it already (273).
    assert _post_warnings(result.output) == [
        "warning: issues/test.yaml:10:9: items[0].sample_posts[0]: sample post with its hashtags is too long for "
        "X (283 of 280: every link counts 23, CJK characters and emoji 2)"
    ]


def test_a_post_without_hashtags_to_add_is_not_said_to_carry_them(project, run):
    # The white space a YAML block or a careless paste leaves at the end is no hashtag.
    result = run("check", write_issue(project, _issue(["a" * 281 + "   "], "[]")))
    assert _post_warnings(result.output) == [
        "warning: issues/test.yaml:10:9: items[0].sample_posts[0]: sample post is too long for "
        "X (281 of 280: every link counts 23, CJK characters and emoji 2)"
    ]


def test_only_the_networks_shared_to_are_measured(project, run):
    path = write_issue(project, _issue(["a" * 400]))
    site = project / "newsletter.yaml"
    original = site.read_text(encoding="utf-8")
    site.write_text(original + "share: [mastodon, whatsapp]\n", encoding="utf-8")
    assert "sample post" not in run("check", path).output
    site.write_text(original + "share: [bluesky]\n", encoding="utf-8")
    assert "for Bluesky (400 of 300" in run("check", path).output


@pytest.mark.parametrize(
    ("keys", "names"),
    [(None, ["X", "Bluesky", "Mastodon", "Threads"]), (["whatsapp", "threads", "x", "facebook"], ["Threads", "X"])],
)
def test_networks_without_a_length_limit_are_left_out(keys, names):
    assert [n.name for n in length_limited(keys)] == names
