"""Share links for sample posts: in the email (both parts), on the archive's pages, and in Chromium."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import html5lib
import lxml.html
import pytest

from newsletter import public
from newsletter.archive import Archive
from newsletter.project import open_project
from newsletter.share import share_text

from .support import SEED, write_issue

ARCHIVE = "https://example.org/roundup/"
# Everything that could break a URL, an attribute, a script or the text's direction: quotes, markup, &, #, %,
# +, =, ?, /, a template, emoji with a skin tone, right-to-left marks and Arabic, and a line break.
HOSTILE = (
    'She said "stop" & <script>alert(1)</script> #Tag 100% ✊🏽 a+b=c? /x?y=z#frag '
    "\u200fمرحبا\u202e{{ 7*7 }}\u202c 'q'\nline two"
)
HOSTILE_SHARED = HOSTILE + " #Extra"  # #tag is there (another letter case); #Extra is not
PLAIN = "Thinking of everyone who stands up #Extra"
PLAIN_SHARED = PLAIN + " #tag"
ISSUE = f"""
id: hostile
published: true
title: "Share test"
date: 2021-06-07
items:
  - status: new
    title: "An item <b>with</b> \\"quotes\\" & posts"
    hashtags: [tag, Extra]
    sample_posts:
      - {json.dumps(HOSTILE, ensure_ascii=False)}
      - {json.dumps(PLAIN)}
  - status: ongoing
    title: "No posts here"
"""
TEXT_NETWORKS = {"x": "https://x.com/intent/tweet", "bluesky": "https://bsky.app/intent/compose"}
TEXT_NETWORKS |= {"threads": "https://www.threads.com/intent/post", "whatsapp": "https://wa.me/"}


def _write(project: Path, text: str = ISSUE, name: str = "hostile.yaml") -> Path:
    return write_issue(project, text, name)


def _drop_archive(project: Path) -> None:
    site = project / "newsletter.yaml"
    site.write_text(site.read_text().replace(f"archive_url: {ARCHIVE}\n", ""))


def _share_lines(html: str) -> list[dict[str, str]]:
    """Each sample post's share line: {label: href}, in order."""
    tree = lxml.html.fromstring(html)
    return [{a.text_content(): a.get("href") for a in line.iter("a")} for line in tree.find_class("share")]


def _text_of(href: str) -> str:
    """The text a compose link carries, decoded as the network decodes it."""
    (value,) = parse_qs(urlsplit(href).query, keep_blank_values=True, strict_parsing=True)["text"]
    return value


# -- the text that is posted ---------------------------------------------------------


@pytest.mark.parametrize(
    ("post", "hashtags", "shared"),
    [
        ("Thinking of you #MyanmarSolidarity", ["MyanmarSolidarity"], "Thinking of you #MyanmarSolidarity"),
        # Letter case does not matter to the networks, nor here.
        ("Love #whatshappeninginmyanmar", ["WhatsHappeningInMyanmar"], "Love #whatshappeninginmyanmar"),
        # A whole tag: #Myanmar is not in #MyanmarSolidarity, nor in word#Myanmar.
        ("Care #MyanmarSolidarity", ["Myanmar"], "Care #MyanmarSolidarity #Myanmar"),
        ("Care for#Myanmar", ["Myanmar"], "Care for#Myanmar #Myanmar"),
        ("#Myanmar, always", ["Myanmar", "Free"], "#Myanmar, always #Free"),
        # A YAML `|` block's last line break and Windows line ends are nobody's text.
        ("Two\r\nlines\n", ["A", "a"], "Two\nlines #A"),
        ("No tags at all", [], "No tags at all"),
    ],
)
def test_the_item_hashtags_are_added_only_when_missing(post, hashtags, shared):
    assert share_text(post, hashtags) == shared


def test_a_blank_sample_post_is_an_error_at_its_line(project, run):
    # Nothing to post: an empty box in the email, and share links that open an empty compose window.
    path = _write(project, ISSUE.replace(json.dumps(PLAIN), '"   "'))
    result = run("check", path)
    assert result.exit_code == 1
    assert "error: issues/hostile.yaml:11:9: items[0].sample_posts[1]: is blank: write the post, or remove it" in (
        result.output
    )


# -- the email -------------------------------------------------------------------------


def test_each_post_links_to_every_network_in_the_order_of_newsletter_yaml(project, run):
    site = project / "newsletter.yaml"
    site.write_text(site.read_text() + "share: [whatsapp, mastodon, x, linkedin, bluesky, facebook, threads]\n")
    _write(project)
    assert run("build", "issues/hostile.yaml").exit_code == 0
    html = (project / "outbox" / "hostile" / "email.html").read_text(encoding="utf-8")
    lines = _share_lines(html)
    assert [list(line) for line in lines] == [
        ["WhatsApp", "Mastodon", "X", "LinkedIn", "Bluesky", "Facebook", "Threads"]
    ] * 2
    for line, text, number in zip(lines, [HOSTILE_SHARED, PLAIN_SHARED], ["1-1", "1-2"], strict=True):
        page = f"{ARCHIVE}hostile/share/{number}.html"
        for label, network in [("X", "x"), ("Bluesky", "bluesky"), ("Threads", "threads"), ("WhatsApp", "whatsapp")]:
            assert line[label].startswith(TEXT_NETWORKS[network] + "?text=")
            assert _text_of(line[label]) == text
            # Percent-encoded through and through: nothing a network could read as a space or a new parameter.
            assert not re.search(r"[ +&#<>\"']", line[label].partition("?text=")[2])
        assert line["Mastodon"] == f"{page}#mastodon"
        assert parse_qs(urlsplit(line["Facebook"]).query) == {"u": [page]}
        assert line["Facebook"].startswith("https://www.facebook.com/sharer/sharer.php?u=")
        assert parse_qs(urlsplit(line["LinkedIn"]).query) == {"url": [page]}
        assert line["LinkedIn"].startswith("https://www.linkedin.com/sharing/share-offsite/?url=")
    # The post shows as it is posted, as text: the markup in it is escaped, its line break a <br>.
    posts = lxml.html.fromstring(html).find_class("post")
    assert [p.text_content() for p in posts] == [HOSTILE_SHARED.replace("\n", ""), PLAIN_SHARED]
    assert "<script>alert" not in html and "49" not in posts[0].text_content()


def test_an_issue_and_an_item_narrow_the_networks_and_check_names_what_it_leaves_out(project, run):
    text = ISSUE.replace("id: hostile\n", "id: hostile\nshare: [bluesky, x, linkedin]\n")
    text = text.replace("    hashtags: [tag, Extra]\n", "    hashtags: [tag, Extra]\n    share: [x]\n")
    path = _write(project, text)
    assert run("build", path).exit_code == 0
    html = (project / "outbox" / "hostile" / "email.html").read_text(encoding="utf-8")
    assert [list(line) for line in _share_lines(html)] == [["X"], ["X"]]
    result = run("check", path)
    assert result.exit_code == 0
    # linkedin is not in newsletter.yaml's list: an issue can only narrow it. Said where it is written.
    lines = [line for line in result.output.splitlines() if "linkedin" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: issues/hostile.yaml:2:")
    assert "not in newsletter.yaml's share:" in lines[0]


def test_share_nothing_turns_the_links_off(project, run):
    site = project / "newsletter.yaml"
    site.write_text(site.read_text() + "share: []\n")
    assert run("build", f"issues/{SEED}.yaml").exit_code == 0
    out = project / "outbox" / SEED
    assert _share_lines((out / "email.html").read_text(encoding="utf-8")) == []
    assert "Share:" not in (out / "email.txt").read_text(encoding="utf-8")


def test_without_archive_url_the_email_keeps_the_direct_links_and_check_says_why_once(project, run):
    _drop_archive(project)
    path = _write(project)
    assert run("build", path).exit_code == 0
    out = project / "outbox" / "hostile"
    lines = _share_lines((out / "email.html").read_text(encoding="utf-8"))
    assert [list(line) for line in lines] == [["X", "Bluesky", "Threads", "WhatsApp"]] * 2
    assert _text_of(lines[0]["X"]) == HOSTILE_SHARED
    assert "Share:" not in (out / "email.txt").read_text(encoding="utf-8")  # no share page to send anyone to
    result = run("check", path)
    warned = [line for line in result.output.splitlines() if line.startswith("warning:") and "archive_url" in line]
    assert len(warned) == 1
    assert warned[0].startswith("warning: issues/hostile.yaml:10:") and "mastodon, facebook" in warned[0]
    # Networks that take the text alone need nothing more: no warning.
    site = project / "newsletter.yaml"
    site.write_text(site.read_text() + "share: [x, whatsapp]\n")
    assert "need archive_url" not in run("check", path).output


def test_an_issue_kept_off_the_web_links_to_no_page_of_it_and_check_says_why_once(project, run):
    path = _write(project, ISSUE.replace("published: true", "published: false"))
    assert run("build", path).exit_code == 0
    out = project / "outbox" / "hostile"
    html = (out / "email.html").read_text(encoding="utf-8")
    # The archive never shows it: no share page for Mastodon, Facebook or LinkedIn, no web version.
    assert [list(line) for line in _share_lines(html)] == [["X", "Bluesky", "Threads", "WhatsApp"]] * 2
    assert f"{ARCHIVE}hostile/" not in html and "View in your browser" not in html
    text = (out / "email.txt").read_text(encoding="utf-8")
    assert f"{ARCHIVE}hostile/" not in text and "Share:" not in text
    assert Archive(open_project(project)).page("hostile/share/1-1.html") is None
    warned = [line for line in run("check", path).output.splitlines() if "published: false" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: issues/hostile.yaml:10:")
    assert "mastodon, facebook" in warned[0]


def test_the_text_part_has_one_short_link_per_post(project, run):
    assert run("build", f"issues/{SEED}.yaml").exit_code == 0
    text = (project / "outbox" / SEED / "email.txt").read_text(encoding="utf-8")
    shares = re.findall(r"^  Share: (\S+)$", text, re.M)
    assert shares == [f"{ARCHIVE}{SEED}/share/2-{n}.html" for n in range(1, 6)]
    assert "intent" not in text and "wa.me" not in text and "sharer" not in text
    # Each follows its post, whose added hashtags are there too.
    assert "  > Sending the people of #Myanmar my love and care #MyanmarSolidarity\n" in text
    assert "  > #WhatsHappeningInMyanmar #MyanmarNeverSilenced\n  Share: " in text


def test_every_kind_of_line_break_in_a_post_is_a_line_break_in_both_parts_and_the_links(project, run):
    # A line or paragraph separator, or NEL, pasted from a word processor: YAML reads each as a line break,
    # and so must the email, or the text part's quoting ("  > ") stops at the first.
    post = "one\u2028two\u2029three\x85four\r\nfive"
    _write(project, ISSUE.replace(json.dumps(PLAIN), json.dumps(post)))
    assert run("build", "issues/hostile.yaml").exit_code == 0
    out = project / "outbox" / "hostile"
    text = (out / "email.txt").read_text(encoding="utf-8")
    assert "  > one\n  > two\n  > three\n  > four\n  > five #tag #Extra\n" in text
    html = (out / "email.html").read_text(encoding="utf-8")
    assert _text_of(_share_lines(html)[1]["X"]) == "one\ntwo\nthree\nfour\nfive #tag #Extra"
    assert lxml.html.fromstring(html).find_class("post")[1].findall("br") != []


@pytest.mark.parametrize(
    ("archive_url", "why"),
    [
        ("https://example.org/road map/", "must not contain a space: "),
        ('https://example.org/a"b/', "must not contain '\"': "),
        ("https://example.org/<x>/", "must not contain '<': "),
        ("https://ann:secret@example.org/roundup/", "must not hold a user name or password: "),
    ],
)
def test_an_archive_url_that_breaks_where_it_is_written_out_is_refused_at_its_line(project, run, archive_url, why):
    # The text part writes it out whole, below every post (its share page) and in the footer.
    site = project / "newsletter.yaml"
    site.write_text(site.read_text().replace(f"archive_url: {ARCHIVE}", f"archive_url: '{archive_url}'"))
    result = run("check", f"issues/{SEED}.yaml")
    assert result.exit_code == 1
    assert f"error: newsletter.yaml:14:14: archive_url: {why}" in result.output, result.output


# -- the archive's share pages ---------------------------------------------------------


def _pages(project: Path) -> dict:
    return Archive(open_project(project)).pages()


def test_a_share_page_carries_open_graph_and_card_tags_for_its_post(project):
    with_image = ISSUE.replace(
        "    hashtags: [tag, Extra]\n",
        "    hashtags: [tag, Extra]\n    image: {src: 'https://example.org/a.png?x=1&y=2', alt: 'A \"flower\"'}\n",
    )
    _write(project, with_image)
    pages = _pages(project)
    assert {name for name in pages if "/share/" in name} == {"hostile/share/1-1.html", "hostile/share/1-2.html"}
    body = pages["hostile/share/1-1.html"].body
    # Valid HTML as the HTML5 spec parses it, the first error raising.
    html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(body)
    tree = lxml.html.fromstring(body)
    meta = {m.get("property") or m.get("name"): m.get("content") for m in tree.iter("meta") if m.get("content")}
    url = f"{ARCHIVE}hostile/share/1-1.html"
    assert meta["og:title"] == meta["twitter:title"] == 'An item <b>with</b> "quotes" & posts'
    assert meta["og:description"] == meta["twitter:description"] == meta["description"] == HOSTILE_SHARED
    assert meta["og:url"] == url and tree.find(".//link[@rel='canonical']").get("href") == url
    assert meta["og:image"] == meta["twitter:image"] == "https://example.org/a.png?x=1&y=2"
    assert meta["og:image:alt"] == 'A "flower"'
    assert meta["og:type"] == "article" and meta["twitter:card"] == "summary_large_image"
    (post,) = tree.find_class("post")
    assert post.text_content() == unquote(post.get("data-encoded")) == HOSTILE_SHARED
    assert len(tree.findall(".//script")) == 1  # the archive's own; the post's <script> is text
    # Without an image, the small card and no image tags.
    _write(project)
    plain = lxml.html.fromstring(_pages(project)["hostile/share/1-2.html"].body)
    names = {m.get("property") or m.get("name"): m.get("content") for m in plain.iter("meta")}
    assert names["twitter:card"] == "summary" and "og:image" not in names and "twitter:image" not in names


def test_the_archives_pages_print_the_postal_address_as_the_email_does_without_stray_commas(project):
    site = project / "newsletter.yaml"
    site.write_text(site.read_text().replace("  312 Laurier Avenue East\n", "  312 Laurier Avenue East,\n\n"))
    _write(project)
    pages = _pages(project)
    for name in ("", "hostile/share/1-1.html"):
        (footer,) = lxml.html.fromstring(pages[name].body).iter("footer")
        assert "312 Laurier Avenue East, Ottawa, Ontario K1N 1H9, Canada" in footer.text_content(), name
        assert ",," not in footer.text_content() and ", ," not in footer.text_content()
    # serve's own pages (unsubscribe), one line each.
    page = public.Pages(open_project(project)).render("other", "A page", message="Something")
    (footer,) = lxml.html.fromstring(page).iter("footer")
    assert footer.text_content().endswith("\n312 Laurier Avenue East\nOttawa, Ontario K1N 1H9\nCanada")


def test_an_id_that_needs_encoding_has_its_share_pages_at_either_form_of_the_address(project, run):
    _write(project, ISSUE.replace("id: hostile", 'id: "été 2021"'))
    archive = Archive(open_project(project))
    encoded = archive.page("%C3%A9t%C3%A9%202021/share/1-2.html")
    assert encoded is not None and b'data-encoded="Thinking%20of%20' in encoded.body
    assert archive.page("été 2021/share/1-2.html", decoded=True) is encoded  # as serve's framework passes it
    assert archive.page("été 2021/share/9-9.html", decoded=True) is None
    out = project / "public"
    assert run("archive", "--out", out).exit_code == 0
    assert (out / "été 2021" / "share" / "1-2.html").read_bytes() == encoded.body


def test_archive_out_writes_the_share_pages_and_takes_them_away_with_their_issue(project, run):
    issue = _write(project)
    out = project / "public"
    assert run("archive", "--out", out).exit_code == 0
    pages = _pages(project)
    for number in ("1-1", "1-2"):
        assert (out / "hostile" / "share" / f"{number}.html").read_bytes() == pages[f"hostile/share/{number}.html"].body
    issue.write_text(issue.read_text().replace("published: true", "published: false"))
    assert run("archive", "--out", out).exit_code == 0
    assert not (out / "hostile").exists()


# -- in Chromium ------------------------------------------------------------------------


class MastodonStandIn:
    """A plain HTTP server on 127.0.0.1 playing a Mastodon server: it records the paths it is asked for."""

    def __init__(self) -> None:
        asked = self.asked = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                asked.append(self.path)
                body = b"<!doctype html><title>compose</title><p>compose"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> MastodonStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def texts(self) -> list[str]:
        """The text of each /share request, decoded as Mastodon decodes it; percent-encoded through and through."""
        asked = [path for path in self.asked if path.startswith("/share?text=")]
        assert all(re.fullmatch(r"[A-Za-z0-9._~%-]*", path.removeprefix("/share?text=")) for path in asked), asked
        return [_text_of(path) for path in asked]


@pytest.fixture
def chromium():
    """Launches Chromium with news.test mapped to `serve` (when given its port) and every other name unresolved:
    a link followed by mistake fails at once instead of reaching the internet."""
    from playwright.sync_api import sync_playwright

    from .test_preview import launch_chromium
    from .test_serve import HOST

    with sync_playwright() as playwright:

        def launch(port: int | None = None, *args: str):
            rules = ([f"MAP {HOST} 127.0.0.1:{port}"] if port else []) + ["MAP * ~NOTFOUND", "EXCLUDE 127.0.0.1"]
            return launch_chromium(
                playwright,
                extra_args=[f"--host-resolver-rules={', '.join(rules)}", "--disable-features=HttpsUpgrades", *args],
            )

        yield launch


def _links_in_browser(page) -> list[dict[str, str]]:
    """Each share line's links as Chromium resolved them: {label: href}."""
    return page.eval_on_selector_all(
        ".share",
        "lines => lines.map(l => Object.fromEntries([...l.querySelectorAll('a')].map(a => [a.textContent, a.href])))",
    )


def test_in_chromium_the_built_email_links_carry_exactly_each_post(project, run, chromium):
    _write(project)
    assert run("build", "issues/hostile.yaml").exit_code == 0
    email_html = project / "outbox" / "hostile" / "email.html"
    browser = chromium()
    try:
        page = browser.new_page()
        page.goto(email_html.as_uri())
        lines = _links_in_browser(page)
        assert len(lines) == 2
        for line, text in zip(lines, [HOSTILE_SHARED, PLAIN_SHARED], strict=True):
            for label in ("X", "Bluesky", "Threads", "WhatsApp"):
                # Decoded by the browser's own URL parser, as the network's page will decode it.
                assert page.evaluate("href => new URL(href).searchParams.get('text')", line[label]) == text
            assert urlsplit(line["Mastodon"]).fragment == "mastodon"
            assert page.evaluate("href => new URL(href).searchParams.get('u')", line["Facebook"]) == line[
                "Mastodon"
            ].removesuffix("#mastodon")
        # What the reader sees is what is posted; the post's markup never became an element.
        assert page.eval_on_selector_all(".post", "ps => ps.map(p => p.innerText)") == [HOSTILE_SHARED, PLAIN_SHARED]
        assert page.eval_on_selector_all("script", "s => s.length") == 0
    finally:
        browser.close()


@pytest.fixture
def served_archive(project):
    """`newsletter serve` of the project with the hostile issue published, at http://news.test/roundup/."""
    from .test_serve import Served, on_news_test

    on_news_test(project)
    _write(project)
    server = Served(project)
    yield server
    server.stop()


def test_in_chromium_the_archive_copies_and_mastodon_asks_once_then_forwards(served_archive, chromium):
    from .test_serve import HOST

    base = f"http://{HOST}/roundup/hostile/"
    # The clipboard is for secure contexts; the real archive is https, this one plain http.
    browser = chromium(served_archive.port, f"--unsafely-treat-insecure-origin-as-secure=http://{HOST}")
    problems: list[str] = []
    try:
        context = browser.new_context()
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=f"http://{HOST}")
        page = context.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)

        # The issue's page: the email's links, and a Copy button per post that copies it exactly.
        page.goto(base)
        lines = _links_in_browser(page)
        assert [page.evaluate("h => new URL(h).searchParams.get('text')", line["X"]) for line in lines] == [
            HOSTILE_SHARED,
            PLAIN_SHARED,
        ]
        copies = page.get_by_role("button", name="Copy")
        assert copies.count() == 2
        copies.nth(0).click()
        page.get_by_role("button", name="Copied").wait_for(timeout=10_000)
        assert page.evaluate("navigator.clipboard.readText()") == HOSTILE_SHARED

        with MastodonStandIn() as mastodon:
            # The Mastodon link: the post's share page asks for the server (nothing else is accepted) ...
            page.goto(lines[0]["Mastodon"])
            server = page.get_by_label("Your Mastodon server")
            assert server.evaluate("e => e === document.activeElement")
            for bad in ["javascript:alert(1)", "http://mastodon.example", "https://me:pw@mastodon.example", "a b"]:
                server.fill(bad)
                page.get_by_role("button", name="Post on Mastodon").click()
                assert "not a server name" in page.get_by_role("alert").text_content()
            assert page.url == lines[0]["Mastodon"] and mastodon.asked == []
            # ... and forwards the text to it,
            server.fill(mastodon.origin)
            page.get_by_role("button", name="Post on Mastodon").click()
            page.wait_for_url(f"{mastodon.origin}/share?**", timeout=10_000)
            assert mastodon.texts() == [HOSTILE_SHARED]
            # then remembers it: the next post's Mastodon link goes straight there.
            page.goto(lines[1]["Mastodon"])
            page.wait_for_url(f"{mastodon.origin}/share?**", timeout=10_000)
            assert mastodon.texts() == [HOSTILE_SHARED, PLAIN_SHARED]
            # On the share page itself, its Mastodon link does the same, and the page's Copy button copies.
            page.goto(f"{base}share/1-2.html")
            page.get_by_role("button", name="Copy").click()
            page.get_by_role("button", name="Copied").wait_for(timeout=10_000)
            assert page.evaluate("navigator.clipboard.readText()") == PLAIN_SHARED
            page.get_by_role("link", name="Mastodon").click()
            page.wait_for_url(f"{mastodon.origin}/share?**", timeout=10_000)
            assert mastodon.texts()[-1] == PLAIN_SHARED
        assert problems == []  # no CSP violation: the script ran by its hash, and nothing else tried to
    finally:
        browser.close()


def test_in_chromium_the_mastodon_prompt_takes_a_server_as_people_write_it(served_archive, chromium):
    from .test_serve import HOST

    browser = chromium(served_archive.port)
    try:
        page = browser.new_page()
        asked: list[str] = []

        def answer(route) -> None:
            asked.append(route.request.url)
            route.fulfill(status=200, content_type="text/html", body="<!doctype html><title>compose</title>")

        # No Mastodon server runs here: Chromium answers for them, and says where it was sent.
        page.route("https://*.example/**", answer)
        written = ["mastodon.example.", "MASTODON.EXAMPLE", "@me@mastodon.example.", "https://mastodon.example./@me"]
        for server in written:
            page.goto(f"http://{HOST}/roundup/hostile/share/1-2.html")
            page.evaluate("localStorage.clear()")  # each asked afresh, not forwarded to the last one
            page.get_by_label("Your Mastodon server").fill(server)
            page.get_by_role("button", name="Post on Mastodon").click()
            page.wait_for_url("https://mastodon.example/share?**", timeout=10_000)
        assert [url.partition("?")[0] for url in asked] == ["https://mastodon.example/share"] * len(written)
    finally:
        browser.close()


def test_in_chromium_without_javascript_the_share_page_explains_and_the_text_is_there(served_archive, chromium):
    from .test_serve import HOST

    browser = chromium(served_archive.port)
    try:
        page = browser.new_context(java_script_enabled=False).new_page()
        page.goto(f"http://{HOST}/roundup/hostile/share/1-1.html#mastodon")
        assert page.locator(".post").inner_text() == HOSTILE_SHARED
        assert page.get_by_role("button", name="Copy").count() == 0  # a button that could not work is not shown
        assert not page.get_by_label("Your Mastodon server").is_visible()
        assert "paste it into a new post on your Mastodon server" in page.locator("#mastodon").inner_text()
        assert page.get_by_role("link", name="X").get_attribute("href").startswith("https://x.com/intent/tweet?text=")
    finally:
        browser.close()
